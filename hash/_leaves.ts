// Per-tensor SHA-256 leaf digests, on the main thread or spread over workers.
// Reads run one chunk ahead of hashing so that I/O and hashing overlap.
import { createSha256 } from "./_digest.ts";
import type { Tensor } from "./types.ts";

/** Options shared by the leaf hashers. */
export interface LeafOptions {
  /** Worker count; 0 hashes on the calling thread. */
  workers: number;
  /** Called after each chunk is handed to a hasher, with its byte count. */
  onBytes?: (n: number) => void;
  /** Aborts between chunks. */
  signal?: AbortSignal;
}

type Event =
  | { tensor: number; chunk: Uint8Array }
  | { tensor: number; chunk?: undefined };

/** Flattens tensors into chunk events, one `end` event (no chunk) per tensor. */
async function* events(
  tensors: Iterable<Tensor> | AsyncIterable<Tensor>,
  seen: Tensor[],
): AsyncGenerator<Event> {
  for await (const t of tensors) {
    const i = seen.push(t) - 1;
    for await (const chunk of t.chunks()) yield { tensor: i, chunk };
    yield { tensor: i };
  }
}

/** Keeps one `next()` in flight while the consumer works on the current value. */
export async function* readAhead<T>(it: AsyncIterable<T>): AsyncGenerator<T> {
  const iter = it[Symbol.asyncIterator]();
  let next = iter.next();
  try {
    while (true) {
      const r = await next;
      if (r.done) return;
      next = iter.next();
      yield r.value;
    }
  } finally {
    next.catch(() => {}); // a read error after an early exit has no reader left
  }
}

/** SHA-256 of every tensor's C-order bytes, in the order the tensors come. */
export async function tensorLeaves(
  tensors: Iterable<Tensor> | AsyncIterable<Tensor>,
  options: LeafOptions,
): Promise<{ tensors: Tensor[]; leaves: Uint8Array[] }> {
  const seen: Tensor[] = [];
  const stream = readAhead(events(tensors, seen));
  const leaves = options.workers > 0 && typeof Worker !== "undefined"
    ? await onWorkers(stream, options)
    : await onMain(stream, options);
  return { tensors: seen, leaves };
}

async function onMain(
  stream: AsyncIterable<Event>,
  { onBytes, signal }: LeafOptions,
): Promise<Uint8Array[]> {
  const leaves: Uint8Array[] = [];
  let hasher = await createSha256();
  for await (const e of stream) {
    signal?.throwIfAborted();
    if (e.chunk) {
      hasher.update(e.chunk);
      onBytes?.(e.chunk.byteLength);
    } else {
      leaves[e.tensor] = hasher.digest();
      hasher = await createSha256();
    }
  }
  return leaves;
}

/** Bytes that may be queued at one worker before the reader waits. */
const MAX_QUEUED = 48 << 20;

async function onWorkers(
  stream: AsyncIterable<Event>,
  { workers: count, onBytes, signal }: LeafOptions,
): Promise<Uint8Array[]> {
  const leaves: Uint8Array[] = [];
  const pool = Array.from({ length: count }, () => {
    const w = new Worker(new URL("./_hash_worker.ts", import.meta.url), {
      type: "module",
    });
    return { w, queued: 0, wake: undefined as (() => void) | undefined };
  });
  let failure: unknown;
  let pendingLeaves = 0;
  let allDone: (() => void) | undefined;
  for (const p of pool) {
    p.w.onmessage = (m: MessageEvent) => {
      const { tensor, digest, done } = m.data as {
        tensor?: number;
        digest?: Uint8Array;
        done?: number;
      };
      if (done !== undefined) {
        p.queued -= done;
        onBytes?.(done);
      }
      if (tensor !== undefined && digest) {
        leaves[tensor] = digest;
        if (--pendingLeaves === 0) allDone?.();
      }
      p.wake?.();
    };
    p.w.onerror = (e: ErrorEvent) => {
      e.preventDefault();
      failure ??= new Error(
        `Cannot hash tensors: a worker failed: ${e.message}`,
      );
      for (const q of pool) q.wake?.();
      allDone?.();
    };
  }
  const owner = new Map<number, (typeof pool)[number]>();
  try {
    for await (const e of stream) {
      signal?.throwIfAborted();
      if (failure) throw failure;
      let p = owner.get(e.tensor);
      if (!p) {
        // New tensor: give it to the least-loaded worker.
        p = pool.reduce((a, b) => (b.queued < a.queued ? b : a));
        owner.set(e.tensor, p);
        pendingLeaves++;
      }
      if (!e.chunk) {
        p.w.postMessage({ tensor: e.tensor });
        owner.delete(e.tensor);
        continue;
      }
      while (p.queued > MAX_QUEUED && !failure) {
        await new Promise<void>((r) => (p.wake = r));
        p.wake = undefined;
      }
      p.queued += e.chunk.byteLength;
      const c = e.chunk;
      // Transfer the buffer when the chunk owns all of it; otherwise copy.
      const owns = c.byteOffset === 0 && c.byteLength === c.buffer.byteLength &&
        c.buffer instanceof ArrayBuffer;
      p.w.postMessage(
        { tensor: e.tensor, chunk: c },
        owns ? [c.buffer as ArrayBuffer] : [],
      );
    }
    if (pendingLeaves > 0 && !failure) {
      await new Promise<void>((r) => (allDone = r));
    }
    if (failure) throw failure;
    return leaves;
  } finally {
    for (const p of pool) p.w.terminate();
  }
}
