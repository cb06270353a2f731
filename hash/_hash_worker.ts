// Worker side of `_leaves.ts`: SHA-256 per tensor. A tensor arrives either as
// chunks (hashed in arrival order, each buffer handed back for reuse) or as a
// file range, which the worker reads itself into one reused block.
import { createSha256, type Hasher } from "./_digest.ts";
import { BLOCK_BYTES as BLOCK, type FileRange } from "./_source.ts";

const hashers = new Map<number, Hasher>();
let block: Uint8Array | undefined;
let queue: Promise<void> = Promise.resolve();
const scope = self as unknown as {
  onmessage: ((e: MessageEvent) => void) | null;
  postMessage(m: unknown, transfer?: Transferable[]): void;
};

async function hashRange(tensor: number, range: FileRange): Promise<void> {
  // One open per tensor: cheap next to hashing it, and nothing stays open
  // when the worker is terminated.
  const { open } = await import("node:fs/promises");
  const fh = await open(range.path, "r");
  block ??= new Uint8Array(BLOCK);
  const h = await createSha256();
  const end = range.offset + range.length;
  try {
    for (let at = range.offset; at < end;) {
      const want = Math.min(BLOCK, end - at);
      const { bytesRead } = await fh.read(block, 0, want, at);
      if (bytesRead === 0) {
        throw new Error(
          `${range.path}: Cannot read ${
            end - at
          } bytes at offset ${at}: the file ended (was it truncated while being hashed?)`,
        );
      }
      h.update(block.subarray(0, bytesRead));
      at += bytesRead;
      scope.postMessage({ read: bytesRead });
    }
  } finally {
    await fh.close();
  }
  const digest = h.digest();
  scope.postMessage({ tensor, digest }, [digest.buffer as ArrayBuffer]);
}

scope.onmessage = (e: MessageEvent) => {
  const { tensor, chunk, range } = e.data as {
    tensor: number;
    chunk?: Uint8Array;
    range?: FileRange;
  };
  queue = queue.then(async () => {
    if (range) {
      try {
        await hashRange(tensor, range);
      } catch (err) {
        scope.postMessage({ error: (err as Error).message });
      }
      return;
    }
    let h = hashers.get(tensor);
    if (!h) {
      h = await createSha256();
      hashers.set(tensor, h);
    }
    if (chunk) {
      h.update(chunk);
      // Hand the buffer back (transferred) so the reader can reuse it.
      scope.postMessage({ done: chunk }, [chunk.buffer as ArrayBuffer]);
    } else {
      hashers.delete(tensor);
      const digest = h.digest();
      scope.postMessage({ tensor, digest }, [digest.buffer as ArrayBuffer]);
    }
  });
};
