// Worker side of `_leaves.ts`: SHA-256 per tensor, chunks in arrival order.
import { createSha256, type Hasher } from "./_digest.ts";

const hashers = new Map<number, Hasher>();
let queue: Promise<void> = Promise.resolve();
const scope = self as unknown as {
  onmessage: ((e: MessageEvent) => void) | null;
  postMessage(m: unknown, transfer?: Transferable[]): void;
};

scope.onmessage = (e: MessageEvent) => {
  const { tensor, chunk } = e.data as { tensor: number; chunk?: Uint8Array };
  queue = queue.then(async () => {
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
