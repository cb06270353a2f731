// Byte sources: one random-access interface over bytes, Blobs and files, and a
// sequential reader over streams. File access is loaded lazily from
// `_source_fs.ts` so that browsers never import `node:` modules.
import { ModelFormatError } from "./errors.ts";
import type { ModelFormat, ModelInput } from "./types.ts";

/** Random access to the bytes of one file. */
export interface ByteSource {
  /** A name for messages: the path, or `<bytes>`, `<blob>`, `<stream>`. */
  readonly name: string;
  /** Total size in bytes. */
  readonly size: number;
  /** The local file's path, for file sources (a worker may open it itself). */
  readonly path?: string;
  /**
   * Reads exactly `length` bytes at `offset`. The result is a fresh array the
   * caller owns (its buffer may be transferred), except for in-memory sources,
   * which return a view. Throws `ModelFormatError("truncated")` past the end.
   */
  read(offset: number, length: number): Promise<Uint8Array>;
  /** Releases the file handle, if any. Idempotent. */
  close(): Promise<void>;
}

/** Size of the reusable read buffers (the block size of every streaming read). */
export const BLOCK_BYTES = 4 << 20;
// Allocating (and zero-filling) a fresh 8 MiB buffer per read costs as much as
// the read itself and leaves garbage that inflates the RSS, so every read of up
// to a block is served from a small pool of blocks. A consumer that is done
// with a chunk hands it back with `recycle`.
const handedOut = new WeakMap<ArrayBuffer, number>();
const freeBlocks: ArrayBuffer[] = [];
// Blocks only come back after use, so the pool grows to the number of blocks in
// flight at once (a few per worker) and stays there; `trimPool` empties it.
const MAX_FREE_BLOCKS = 32;

/**
 * Reads shorter than this get a buffer of their own size: a small read (a
 * protobuf window, a header) is rarely given back, and handing each one a
 * fresh zero-filled block made thousands of tiny tensors cost gigabytes.
 */
const SMALL_READ = 1 << 20;

/** A buffer of `length` bytes for a read; from 1 MiB up to a block, it is a pooled block's prefix. */
export function takeBuffer(length: number): Uint8Array {
  if (length > BLOCK_BYTES || length < SMALL_READ) return new Uint8Array(length);
  const block = freeBlocks.pop() ?? new ArrayBuffer(BLOCK_BYTES);
  handedOut.set(block, length);
  return new Uint8Array(block, 0, length);
}

/** Whether `chunk` is exactly a buffer handed out by {@linkcode takeBuffer}. */
export function isPooled(chunk: Uint8Array): boolean {
  const b = chunk.buffer;
  return b instanceof ArrayBuffer && chunk.byteOffset === 0 &&
    handedOut.get(b) === chunk.byteLength;
}

/**
 * Gives a chunk's block back to the pool once its consumer is done with it.
 * Only a chunk that is exactly what `takeBuffer` handed out is taken back (a
 * reader that re-cuts a read yields pieces that are not), so no block can be
 * reused while a reader still yields parts of it.
 */
export function recycle(chunk: Uint8Array): void {
  if (!isPooled(chunk)) return;
  const b = chunk.buffer as ArrayBuffer;
  handedOut.delete(b);
  if (freeBlocks.length < MAX_FREE_BLOCKS) freeBlocks.push(b);
}

/** Drops the free blocks (call when a long operation ends). */
export function trimPool(): void {
  freeBlocks.length = 0;
}

/**
 * Takes back a block that was transferred to a worker and returned: the
 * returned `ArrayBuffer` is a new object over the same memory, and no one else
 * can hold it (transferring detached every other view).
 */
export function adoptBlock(buffer: ArrayBuffer): void {
  if (
    buffer.byteLength === BLOCK_BYTES && freeBlocks.length < MAX_FREE_BLOCKS
  ) {
    freeBlocks.push(buffer);
  }
}

/** Streams `length` bytes at `offset` of `source` in reads of at most one block. */
export async function* rangeChunks(
  source: ByteSource,
  offset: number,
  length: number,
): AsyncGenerator<Uint8Array> {
  const end = offset + length;
  for (let at = offset; at < end; at += BLOCK_BYTES) {
    yield await source.read(at, Math.min(BLOCK_BYTES, end - at));
  }
}

/** Throws the standard "truncated" error when `offset + length` passes `size`. */
export function checkRange(
  source: { name: string; size: number },
  offset: number,
  length: number,
  format?: ModelFormat,
): void {
  if (
    !Number.isSafeInteger(offset) || !Number.isSafeInteger(length) ||
    offset < 0 || length < 0 || offset + length > source.size
  ) {
    throw new ModelFormatError(
      "truncated",
      `Cannot read ${length} bytes at offset ${offset}: the file is ${source.size} bytes long`,
      format === undefined ? { file: source.name } : { file: source.name, format },
    );
  }
}

/** A source over bytes already in memory (views, no copies). */
export function bytesSource(bytes: Uint8Array, name = "<bytes>"): ByteSource {
  const source: ByteSource = {
    name,
    size: bytes.byteLength,
    read(offset, length) {
      checkRange(source, offset, length);
      return Promise.resolve(bytes.subarray(offset, offset + length));
    },
    close: () => Promise.resolve(),
  };
  return source;
}

/** A source over a `Blob` or `File` (read lazily, slice by slice). */
export function blobSource(blob: Blob, name = "<blob>"): ByteSource {
  const source: ByteSource = {
    name: (blob as File).name ? (blob as File).name : name,
    size: blob.size,
    async read(offset, length) {
      checkRange(source, offset, length);
      return new Uint8Array(
        await blob.slice(offset, offset + length).arrayBuffer(),
      );
    },
    close: () => Promise.resolve(),
  };
  return source;
}

/** Reads all of a stream into memory (used only where a format needs random access). */
export async function collectStream(
  stream: ReadableStream<Uint8Array>,
  maxBytes = Number.MAX_SAFE_INTEGER,
): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  let total = 0;
  for await (const chunk of stream) {
    total += chunk.byteLength;
    if (total > maxBytes) {
      throw new RangeError(
        `Cannot buffer stream: it is longer than ${maxBytes} bytes`,
      );
    }
    parts.push(chunk);
  }
  const out = new Uint8Array(total);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.byteLength;
  }
  return out;
}

/** A path-like input: a string path or a `file:` URL. */
export function isPathLike(input: unknown): input is string | URL {
  return typeof input === "string" || input instanceof URL;
}

/** A display name for an input, for error messages. */
export function inputName(input: ModelInput): string {
  if (typeof input === "string") return input;
  if (input instanceof URL) {
    return input.protocol === "file:" ? decodeURIComponent(input.pathname) : input.href;
  }
  if (input instanceof Uint8Array) return "<bytes>";
  if (typeof Blob !== "undefined" && input instanceof Blob) {
    return (input as File).name || "<blob>";
  }
  if (typeof Response !== "undefined" && input instanceof Response) {
    return input.url || "<response>";
  }
  return "<stream>";
}

/**
 * Opens a random-access source for any input. Paths open the file; streams
 * and responses are read into memory (formats that need random access, such
 * as zip, cannot be read from a stream otherwise).
 */
export async function openSource(input: ModelInput): Promise<ByteSource> {
  if (isPathLike(input)) {
    const { fileSource } = await import("./_source_fs.ts");
    return await fileSource(input);
  }
  if (input instanceof Uint8Array) return bytesSource(input);
  if (typeof Blob !== "undefined" && input instanceof Blob) {
    return blobSource(input);
  }
  const name = inputName(input);
  const stream = typeof Response !== "undefined" && input instanceof Response
    ? responseBody(input)
    : input as ReadableStream<Uint8Array>;
  return bytesSource(await collectStream(stream), name);
}

/** The body of a response, refusing error statuses. */
export function responseBody(res: Response): ReadableStream<Uint8Array> {
  if (!res.ok) {
    throw new TypeError(
      `Cannot read response from ${res.url || "<response>"}: status ${res.status}`,
    );
  }
  if (res.body === null) return new Blob([]).stream();
  return res.body;
}

/**
 * A sequential reader over a byte stream that hands out exact-length pieces.
 * Used for formats that can be read front to back (safetensors).
 */
export class StreamReader {
  readonly name: string;
  #reader: ReadableStreamDefaultReader<Uint8Array>;
  // Arrived but unconsumed chunks. Kept as a list (not one growing buffer) so
  // that a stream of many small chunks costs linear, not quadratic, copying.
  #parts: Uint8Array[] = [];
  #buffered = 0;
  #position = 0;

  constructor(stream: ReadableStream<Uint8Array>, name = "<stream>") {
    this.#reader = stream.getReader();
    this.name = name;
  }

  /** Bytes consumed so far. */
  get position(): number {
    return this.#position;
  }

  async #fill(): Promise<boolean> {
    const { value, done } = await this.#reader.read();
    if (done) return false;
    if (value.byteLength > 0) {
      this.#parts.push(value);
      this.#buffered += value.byteLength;
    }
    return true;
  }

  /** Makes the first part at least `n` bytes long (n <= buffered), copying once. */
  #gather(n: number): Uint8Array {
    const first = this.#parts[0]!;
    if (first.byteLength >= n) return first;
    let count = 0;
    let size = 0;
    while (size < n) size += this.#parts[count++]!.byteLength;
    const merged = new Uint8Array(size);
    let at = 0;
    for (const p of this.#parts.splice(0, count, merged)) {
      merged.set(p, at);
      at += p.byteLength;
    }
    return merged;
  }

  #consume(k: number): Uint8Array {
    const first = this.#parts[0]!;
    const out = first.subarray(0, k);
    if (k === first.byteLength) this.#parts.shift();
    else this.#parts[0] = first.subarray(k);
    this.#buffered -= k;
    this.#position += k;
    return out;
  }

  /** Reads exactly `n` bytes, or throws "truncated" if the stream ends first. */
  async readExact(n: number): Promise<Uint8Array> {
    while (this.#buffered < n) {
      if (!(await this.#fill())) {
        throw new ModelFormatError(
          "truncated",
          `Cannot read ${n} bytes at offset ${this.#position}: the stream ended after ${
            this.#position + this.#buffered
          } bytes`,
          { file: this.name },
        );
      }
    }
    if (n === 0) return new Uint8Array(0);
    this.#gather(n);
    return this.#consume(n);
  }

  /** Yields exactly `n` bytes as they arrive, in pieces of at most `max` bytes. */
  async *take(n: number, max = 8 << 20): AsyncGenerator<Uint8Array> {
    let left = n;
    while (left > 0) {
      if (this.#buffered === 0 && !(await this.#fill())) {
        throw new ModelFormatError(
          "truncated",
          `Cannot read ${left} more bytes at offset ${this.#position}: the stream ended`,
          { file: this.name },
        );
      }
      if (this.#buffered === 0) continue; // an empty chunk
      const piece = this.#consume(Math.min(left, this.#parts[0]!.byteLength, max));
      left -= piece.byteLength;
      yield piece;
    }
  }

  /** Returns (without consuming) up to `n` bytes: fewer only at the end. */
  async peek(n: number): Promise<Uint8Array> {
    while (this.#buffered < n && await this.#fill()) { /* fill */ }
    const k = Math.min(n, this.#buffered);
    return k === 0 ? new Uint8Array(0) : this.#gather(k).slice(0, k);
  }

  /** Reads everything left in the stream into one array. */
  async readRest(): Promise<Uint8Array> {
    while (await this.#fill()) { /* accumulate */ }
    if (this.#buffered === 0) return new Uint8Array(0);
    return this.#consume(this.#gather(this.#buffered).byteLength);
  }

  /** True if the stream has no bytes left. */
  async atEnd(): Promise<boolean> {
    while (this.#buffered === 0) {
      if (!(await this.#fill())) return true;
    }
    return false;
  }

  /** Cancels the underlying stream. */
  async cancel(): Promise<void> {
    await this.#reader.cancel().catch(() => {});
  }
}
