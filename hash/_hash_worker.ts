// Worker side of `_leaves.ts`: SHA-256 per tensor. A tensor arrives as chunks
// (hashed in arrival order, each buffer handed back for reuse); or the worker
// is given a part of a local file (spans in file order), which it sweeps
// itself, sending back only the digests.
import { createSha256, type Hasher, sha256Factory, SMALL_INPUT } from "./_digest.ts";
import { BLOCK_BYTES as BLOCK } from "./_source.ts";
import { sweep } from "./_sweep.ts";

const hashers = new Map<number, Hasher>();
let queue: Promise<void> = Promise.resolve();
const scope = self as unknown as {
  onmessage: ((e: MessageEvent) => void) | null;
  postMessage(m: unknown, transfer?: Transferable[]): void;
};

/** Sweeps a part of a local file (spans in file order) and sends back their digests. */
async function hashSweep(part: { path: string; offsets: number[]; lengths: number[] }) {
  // Loaded here, not at the top: browsers run this worker for chunks only.
  const { fileSource } = await import("./_source_fs.ts");
  const source = await fileSource(part.path);
  try {
    const newHasher = await sha256Factory(part.lengths.some((n) => n <= SMALL_INPUT));
    const out = new Uint8Array(32 * part.offsets.length);
    const items = part.offsets.map((offset, i) => ({ offset, length: part.lengths[i]! }));
    let hasher: Hasher | undefined;
    let read = 0;
    await sweep(source, items, (item, bytes, last) => {
      hasher ??= newHasher(items[item]!.length);
      hasher.update(bytes);
      read += bytes.byteLength;
      if (read >= BLOCK) {
        scope.postMessage({ read });
        read = 0;
      }
      if (last) {
        out.set(hasher.digest(), 32 * item);
        hasher = undefined;
      }
    });
    if (read > 0) scope.postMessage({ read });
    scope.postMessage({ digests: out }, [out.buffer]);
  } catch (err) {
    scope.postMessage({ error: (err as Error).message });
  } finally {
    await source.close();
  }
}

scope.onmessage = (e: MessageEvent) => {
  const { tensor, chunk, sweep: part } = e.data as {
    tensor: number;
    chunk?: Uint8Array;
    sweep?: { path: string; offsets: number[]; lengths: number[] };
  };
  queue = queue.then(async () => {
    if (part) return await hashSweep(part);
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
