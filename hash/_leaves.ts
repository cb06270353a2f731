// Per-tensor SHA-256 leaf digests, on the main thread or spread over workers.
// Reads run one chunk ahead of hashing so that I/O and hashing overlap.
import { createSha256, type Hasher, sha256Factory } from "./_digest.ts";
import { adoptBlock, type ByteSource, isPooled, recycle, trimPool } from "./_source.ts";
import { spanOf, sweep } from "./_sweep.ts";
import { ModelFormatError } from "./errors.ts";
import type { Tensor } from "./types.ts";

/**
 * Whether hash workers can run here. In Deno a worker's local modules need
 * read permission (a run scoped to the model file, `--allow-read=FILE`, has
 * none): then the work stays on this thread rather than failing.
 */
export function workersAllowed(): boolean {
  if (typeof Worker === "undefined") return false;
  const here = new URL("./", import.meta.url);
  const deno = (globalThis as {
    Deno?: { permissions?: { querySync?(d: { name: "read"; path: URL }): { state: string } } };
  }).Deno;
  if (here.protocol !== "file:" || deno?.permissions?.querySync === undefined) return true;
  try {
    return deno.permissions.querySync({ name: "read", path: here }).state === "granted";
  } catch {
    return false;
  }
}

/** The 32-byte leaves of `n` tensors, in one buffer (no object per tensor). */
export class Leaves {
  readonly bytes: Uint8Array;
  constructor(readonly count: number) {
    this.bytes = new Uint8Array(32 * count);
  }
  set(i: number, digest: Uint8Array): void {
    this.bytes.set(digest, 32 * i);
  }
  get(i: number): Uint8Array {
    return this.bytes.subarray(32 * i, 32 * i + 32);
  }
}

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
 * Tensors whose bytes lie verbatim in their source (spans) are read in long
 * sequential runs ({@linkcode sweep}): on the calling thread, or, with
 * `workers` lanes and a local file, split into contiguous parts, one per
 * worker, that read the file themselves. Other tensors of an array are spread
 * over the lanes one at a time; an async iterable (a stream) is hashed in
 * order on the calling thread.
 */
export async function tensorLeaves(
  tensors: Tensor[] | AsyncIterable<Tensor>,
  options: LeafOptions,
): Promise<{ tensors: Tensor[]; leaves: Leaves }> {
  try {
    if (!Array.isArray(tensors)) {
      const seen: Tensor[] = [];
      const list = await onMain(readAhead(events(tensors, seen)), options);
      const leaves = new Leaves(seen.length);
      list.forEach((d, i) => leaves.set(i, d));
      return { tensors: seen, leaves };
    }
    const leaves = new Leaves(tensors.length);
    const useWorkers = options.workers > 1 && workersAllowed();
    const newHasher = await sha256Factory();
    // Spans by source, in file order; the rest one by one.
    const bySource = new Map<ByteSource, { index: number; offset: number; length: number }[]>();
    const rest: number[] = [];
    tensors.forEach((t, index) => {
      const span = spanOf(t);
      if (span === undefined) return rest.push(index);
      if (span.length === 0) {
        leaves.set(index, newHasher(0).digest());
        return;
      }
      let list = bySource.get(span.source);
      if (!list) bySource.set(span.source, list = []);
      list.push({ index, offset: span.offset, length: span.length });
    });
    const jobs: Promise<void>[] = [];
    for (const [source, items] of bySource) {
      items.sort((a, b) => a.offset - b.offset);
      if (useWorkers && source.path !== undefined) {
        jobs.push(onSweepWorkers(source.path, items, leaves, options));
      } else {
        await sweepLeaves(source, items, leaves, newHasher, options);
      }
    }
    if (rest.length > 0) {
      const others = rest.map((i) => tensors[i]!);
      if (useWorkers) {
        jobs.push(
          onWorkers(others, options).then((l) => l.forEach((d, k) => leaves.set(rest[k]!, d))),
        );
      } else {
        const l = await onMain(readAhead(events(others, [])), options);
        l.forEach((d, k) => leaves.set(rest[k]!, d));
      }
    }
    await Promise.all(jobs);
    return { tensors, leaves };
  } finally {
    trimPool();
  }
}

/**
 * SHA-256 of byte ranges of one source (OMS shards, say), in one sweep: on
 * the calling thread, or cut into contiguous parts over `workers` lanes when
 * the source is a local file. Results follow `items`' order.
 */
export async function spanDigests(
  source: ByteSource,
  items: readonly { offset: number; length: number }[],
  options: LeafOptions,
): Promise<Uint8Array[]> {
  try {
    const leaves = new Leaves(items.length);
    const indexed = items.map((it, index) => ({ index, offset: it.offset, length: it.length }))
      .filter((it) => it.length > 0)
      .sort((a, b) => a.offset - b.offset);
    const newHasher = await sha256Factory();
    for (let i = 0; i < items.length; i++) {
      if (items[i]!.length === 0) leaves.set(i, newHasher(0).digest());
    }
    if (options.workers > 1 && workersAllowed() && source.path !== undefined) {
      await onSweepWorkers(source.path, indexed, leaves, options);
    } else {
      await sweepLeaves(source, indexed, leaves, newHasher, options);
    }
    return items.map((_, i) => leaves.get(i).slice());
  } finally {
    trimPool();
  }
}

/** Leaves of spanned tensors on the calling thread, one sweep of their source. */
async function sweepLeaves(
  source: ByteSource,
  items: { index: number; offset: number; length: number }[],
  leaves: Leaves,
  newHasher: (size?: number) => Hasher,
  { onBytes, signal }: LeafOptions,
): Promise<void> {
  let hasher: Hasher | undefined;
  await sweep(source, items, (item, bytes, last) => {
    signal?.throwIfAborted();
    hasher ??= newHasher(items[item]!.length);
    hasher.update(bytes);
    onBytes?.(bytes.byteLength);
    if (last) {
      leaves.set(items[item]!.index, hasher.digest());
      hasher = undefined;
    }
  });
}

/**
 * Leaves of spanned tensors of a local file on workers: the tensors, in file
 * order, are cut into contiguous parts of about equal bytes, one per lane; each
 * worker sweeps its part of the file itself and sends back only digests.
 */
async function onSweepWorkers(
  path: string,
  items: { index: number; offset: number; length: number }[],
  leaves: Leaves,
  { workers, onBytes, signal }: LeafOptions,
): Promise<void> {
  const total = items.reduce((n, it) => n + it.length, 0);
  const parts: (typeof items)[] = [];
  let part: typeof items = [];
  let bytes = 0;
  for (const it of items) {
    part.push(it);
    bytes += it.length;
    if (bytes >= (total * (parts.length + 1)) / workers && parts.length < workers - 1) {
      parts.push(part);
      part = [];
    }
  }
  if (part.length > 0) parts.push(part);
  await Promise.all(parts.map(async (p) => {
    const worker = new Worker(new URL("./_hash_worker.ts", import.meta.url), { type: "module" });
    try {
      const digests = await new Promise<Uint8Array>((resolve, reject) => {
        const abort = () => reject(signal?.reason);
        signal?.addEventListener("abort", abort, { once: true });
        worker.onmessage = (m: MessageEvent) => {
          const { read, digests, error } = m.data as {
            read?: number;
            digests?: Uint8Array;
            error?: string;
          };
          if (read !== undefined) onBytes?.(read);
          if (error !== undefined) reject(new ModelFormatError("truncated", error));
          if (digests !== undefined) resolve(digests);
        };
        worker.onerror = (e: ErrorEvent) => {
          e.preventDefault();
          reject(new Error(`Cannot hash tensors: a worker failed: ${e.message}`));
        };
        worker.postMessage({
          sweep: {
            path,
            offsets: p.map((it) => it.offset),
            lengths: p.map((it) => it.length),
          },
        });
      });
      p.forEach((it, k) => leaves.set(it.index, digests.subarray(32 * k, 32 * k + 32)));
    } finally {
      worker.terminate();
    }
  }));
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
