// Per-tensor SHA-256 leaf digests, on the main thread or spread over workers.
// Reads run one chunk ahead of hashing so that I/O and hashing overlap.
import { createSha256 } from "./_digest.ts";
import { adoptBlock, fileRangeOf, isPooled, recycle, trimPool } from "./_source.ts";
import { ModelFormatError } from "./errors.ts";
import type { Tensor } from "./types.ts";

/** Options shared by the leaf hashers. */
export interface LeafOptions {
  /** Worker lanes; 0 or 1 hashes on the calling thread (a single worker would only add overhead). */
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

/**
 * SHA-256 of every tensor's C-order bytes, in the order the tensors come.
 * An array of tensors (random access) is spread over `workers` lanes, each
 * reading its own tensors; an async iterable (a stream) is hashed in order on
 * the calling thread.
 */
export async function tensorLeaves(
  tensors: Tensor[] | AsyncIterable<Tensor>,
  options: LeafOptions,
): Promise<{ tensors: Tensor[]; leaves: Uint8Array[] }> {
  try {
    if (
      Array.isArray(tensors) && options.workers > 1 &&
      typeof Worker !== "undefined"
    ) {
      return { tensors, leaves: await onWorkers(tensors, options) };
    }
    const seen: Tensor[] = [];
    const leaves = await onMain(readAhead(events(tensors, seen)), options);
    return { tensors: seen, leaves };
  } finally {
    trimPool();
  }
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
      recycle(e.chunk);
    } else {
      leaves[e.tensor] = hasher.digest();
      hasher = await createSha256();
    }
  }
  return leaves;
}

/** Chunks that may wait at one worker before its lane stops reading. */
const MAX_IN_FLIGHT = 2;

/** One worker and the bookkeeping of what it has been sent. */
class Lane {
  readonly #worker: Worker;
  #inFlight = 0;
  #wake: (() => void) | undefined;
  #failure: Error | undefined;
  readonly #digests = new Map<number, (d: Uint8Array) => void>();

  constructor(onBytes: ((n: number) => void) | undefined) {
    this.#worker = new Worker(new URL("./_hash_worker.ts", import.meta.url), {
      type: "module",
    });
    this.#worker.onmessage = (m: MessageEvent) => {
      const { tensor, digest, done, read, error } = m.data as {
        tensor?: number;
        digest?: Uint8Array;
        done?: Uint8Array;
        read?: number;
        error?: string;
      };
      if (read !== undefined) onBytes?.(read);
      if (error !== undefined) {
        this.#failure = new ModelFormatError("truncated", error);
      }
      if (done !== undefined) {
        this.#inFlight--;
        onBytes?.(done.byteLength);
        if (done.buffer instanceof ArrayBuffer) adoptBlock(done.buffer);
      }
      if (tensor !== undefined && digest) {
        this.#digests.get(tensor)?.(digest);
        this.#digests.delete(tensor);
      }
      this.#wake?.();
    };
    this.#worker.onerror = (e: ErrorEvent) => {
      e.preventDefault();
      this.#failure = new Error(
        `Cannot hash tensors: a worker failed: ${e.message}`,
      );
      this.#wake?.();
    };
  }

  async #until(ready: () => boolean): Promise<void> {
    while (!ready()) {
      if (this.#failure) throw this.#failure;
      await new Promise<void>((r) => (this.#wake = r));
      this.#wake = undefined;
    }
    if (this.#failure) throw this.#failure;
  }

  /** Hashes one tensor on this lane's worker and returns its digest. */
  async hash(
    index: number,
    tensor: Tensor,
    signal?: AbortSignal,
  ): Promise<Uint8Array> {
    let digest: Uint8Array | undefined;
    this.#digests.set(index, (d) => (digest = d));
    const range = fileRangeOf(tensor);
    if (range) {
      // The bytes lie verbatim in a local file: the worker reads them itself
      // into one reused block; nothing crosses threads but the digest.
      this.#worker.postMessage({ tensor: index, range });
      await this.#until(() => digest !== undefined);
      return digest!;
    }
    // No read-ahead here: the next chunk is read while the worker hashes the
    // previous one, which is all the overlap a lane needs.
    for await (const chunk of tensor.chunks()) {
      signal?.throwIfAborted();
      await this.#until(() => this.#inFlight < MAX_IN_FLIGHT);
      this.#inFlight++;
      // Pooled blocks are transferred (and come back for reuse); anything
      // else is copied.
      this.#worker.postMessage(
        { tensor: index, chunk },
        isPooled(chunk) ? [chunk.buffer as ArrayBuffer] : [],
      );
    }
    this.#worker.postMessage({ tensor: index });
    await this.#until(() => digest !== undefined);
    return digest!;
  }

  terminate(): void {
    this.#worker.terminate();
  }
}

async function onWorkers(
  tensors: Tensor[],
  { workers, onBytes, signal }: LeafOptions,
): Promise<Uint8Array[]> {
  const leaves: Uint8Array[] = [];
  // One worker per lane. (Hashing on the calling thread as one more lane was
  // measured slower: it delays the other lanes' reads.)
  const lanes = Array.from({ length: workers }, () => new Lane(onBytes));
  let next = 0;
  try {
    // Each lane takes the next tensor as soon as it is free, so a large
    // tensor on one lane never stalls the others.
    await Promise.all(lanes.map(async (lane) => {
      while (next < tensors.length) {
        const i = next++;
        leaves[i] = await lane.hash(i, tensors[i]!, signal);
      }
    }));
    return leaves;
  } finally {
    for (const lane of lanes) lane.terminate();
  }
}
