// A small streaming reader for the protobuf wire format. It walks tags and
// lengths through a window over a ByteSource, so a message of several GiB is
// never loaded whole: skipped fields (such as large `bytes`) are never read.
import { ModelFormatError, type ModelFormatErrorCode } from "./errors.ts";
import type { ByteSource } from "./_source.ts";
import type { ModelFormat } from "./types.ts";

/** Wire types that may appear; groups (3, 4) and 6, 7 are refused. */
export const WIRE_VARINT = 0;
export const WIRE_I64 = 1;
export const WIRE_LEN = 2;
export const WIRE_I32 = 5;

/** Encodes a non-negative safe integer as a protobuf varint. */
export function encodeVarint(n: number): number[] {
  const out: number[] = [];
  while (n > 0x7f) {
    out.push((n % 128) | 0x80);
    n = Math.floor(n / 128);
  }
  out.push(n);
  return out;
}

/**
 * A `StringStringEntryProto` (key = 1, value = 2) as field `field` of its
 * parent message: ONNX `metadata_props` (14) and `external_data` (13).
 */
export function encodeStringEntry(field: number, key: string, value: string): Uint8Array {
  const enc = new TextEncoder();
  const part = (
    n: number,
    s: Uint8Array,
  ) => [n << 3 | WIRE_LEN, ...encodeVarint(s.byteLength), ...s];
  const body = [...part(1, enc.encode(key)), ...part(2, enc.encode(value))];
  return Uint8Array.from([field << 3 | WIRE_LEN, ...encodeVarint(body.length), ...body]);
}

/** How much of the file one window holds. */
const WINDOW = 64 << 10;
/** Largest field number protobuf allows (2^29 - 1). */
const MAX_FIELD = 0x1fffffff;
/** Strings longer than this (names, metadata) are refused rather than decoded. */
export const MAX_STRING = 16 << 20;

/** A decoded varint as its low and high 32 bits, both unsigned. */
export interface Varint {
  lo: number;
  hi: number;
}

/**
 * Decodes the varint at `buf[i]`, stopping at `limit`, into `out`. Returns the
 * index after it, -1 when it does not end before `limit`, or -2 when it is
 * malformed (more than 10 bytes, or a 10th byte with bits beyond 64).
 */
export function decodeVarint(
  buf: Uint8Array,
  i: number,
  limit: number,
  out: Varint,
): number {
  let lo = 0;
  let hi = 0;
  for (let k = 0; k < 10; k++) {
    if (i + k >= limit) return -1;
    const b = buf[i + k]!;
    const v = b & 0x7f;
    if (k < 4) lo |= v << (7 * k);
    else if (k === 4) {
      lo |= (v & 0x0f) << 28;
      hi |= v >>> 4;
    } else if (k < 9) hi |= v << (7 * k - 32);
    else {
      // The 10th byte carries only bit 63.
      if (b > 1) return -2;
      hi |= v << 31;
    }
    if (b < 0x80) {
      out.lo = lo >>> 0;
      out.hi = hi >>> 0;
      return i + k + 1;
    }
  }
  return -2;
}

/** A field's tag: its number and wire type, and where the tag starts. */
export interface Tag {
  field: number;
  wire: number;
  start: number;
}

const utf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

/**
 * A cursor over a protobuf-encoded file. Positions are absolute byte offsets;
 * every method takes `end`, the end of the enclosing message, and refuses to
 * read past it ("truncated" when it is the end of the file, "bad-protobuf"
 * otherwise).
 */
export class ProtoCursor {
  readonly source: ByteSource;
  readonly format: ModelFormat;
  /** The next byte to read. */
  pos: number;
  #buf: Uint8Array = new Uint8Array(0);
  #bufStart = 0;

  /**
   * @param limit Where the bytes this cursor will read end (windows are not
   *   read past it: a cursor over one small message reads only that message).
   */
  constructor(source: ByteSource, format: ModelFormat, pos = 0, limit = source.size) {
    this.source = source;
    this.format = format;
    this.pos = pos;
    this.#limit = Math.min(limit, source.size);
  }
  readonly #limit: number;

  /** Throws a ModelFormatError about this file. */
  fail(code: ModelFormatErrorCode, message: string, offset = this.pos): never {
    throw new ModelFormatError(code, message, {
      file: this.source.name,
      format: this.format,
      offset,
    });
  }

  /** Refuses `n` bytes at `pos` that would pass `end`. */
  need(n: number, end: number, what: string): void {
    if (this.pos + n > end) {
      const atEof = this.pos + n > this.source.size;
      this.fail(
        atEof ? "truncated" : "bad-protobuf",
        `Cannot read ${what}: it needs ${n} bytes but only ${end - this.pos} remain in the ${
          atEof ? "file" : "enclosing message"
        }`,
      );
    }
  }

  /** Makes the window hold `[pos, pos + min(n, end - pos))`. */
  async #fill(n: number, end: number): Promise<number> {
    const want = Math.min(n, end - this.pos);
    const at = this.pos - this.#bufStart;
    if (at < 0 || at + want > this.#buf.byteLength) {
      const len = Math.min(Math.max(want, WINDOW), Math.max(this.#limit, end) - this.pos);
      this.#buf = await this.source.read(this.pos, len);
      this.#bufStart = this.pos;
    }
    return want;
  }

  async #varint(end: number, what: string): Promise<Varint> {
    if (this.pos >= end) this.need(1, end, what);
    const avail = await this.#fill(10, end);
    const out = { lo: 0, hi: 0 };
    const i = this.pos - this.#bufStart;
    const next = decodeVarint(this.#buf, i, i + avail, out);
    if (next === -1) this.need(avail + 1, end, what);
    if (next < 0) {
      this.fail(
        "bad-protobuf",
        `Cannot read ${what}: the varint is longer than 10 bytes`,
      );
    }
    this.pos += next - i;
    return out;
  }

  /** Reads a varint as an unsigned 64-bit integer. */
  async uint64(end: number, what: string): Promise<bigint> {
    const { lo, hi } = await this.#varint(end, what);
    return (BigInt(hi) << 32n) | BigInt(lo);
  }

  /** Reads a varint that must be a safe integer (a length, an enum, a count). */
  async uint(end: number, what: string): Promise<number> {
    const start = this.pos;
    const { lo, hi } = await this.#varint(end, what);
    if (hi >= 0x200000) {
      this.fail(
        "bad-protobuf",
        `Cannot read ${what}: the value ${(BigInt(hi) << 32n) | BigInt(lo)} is too large`,
        start,
      );
    }
    return hi * 2 ** 32 + lo;
  }

  /** Reads a tag, refusing field 0, groups and unknown wire types. */
  async tag(end: number): Promise<Tag> {
    const start = this.pos;
    const key = await this.uint(end, "field tag");
    const field = Math.floor(key / 8);
    const wire = key % 8;
    if (field === 0 || field > MAX_FIELD) {
      this.fail(
        "bad-protobuf",
        `Cannot read field tag: field number ${field} is out of range`,
        start,
      );
    }
    if (wire === 3 || wire === 4) {
      this.fail(
        "bad-protobuf",
        `Cannot read field ${field}: groups are not supported`,
        start,
      );
    }
    if (
      wire !== WIRE_VARINT && wire !== WIRE_I64 && wire !== WIRE_LEN &&
      wire !== WIRE_I32
    ) {
      this.fail(
        "bad-protobuf",
        `Cannot read field ${field}: unknown wire type ${wire}`,
        start,
      );
    }
    return { field, wire, start };
  }

  /**
   * Reads the length of a length-delimited field and checks it against `end`.
   * Leaves `pos` at the payload and returns the payload's end.
   */
  async len(end: number, what: string): Promise<number> {
    const n = await this.uint(end, `length of ${what}`);
    this.need(n, end, what);
    return this.pos + n;
  }

  /** Reads `n` bytes (already checked against the enclosing message). */
  async bytes(n: number): Promise<Uint8Array> {
    if (n > WINDOW) {
      const out = await this.source.read(this.pos, n);
      this.pos += n;
      return out;
    }
    await this.#fill(n, this.pos + n);
    const i = this.pos - this.#bufStart;
    this.pos += n;
    return this.#buf.slice(i, i + n);
  }

  /** Reads a length-delimited UTF-8 string. */
  async string(end: number, what: string): Promise<string> {
    const stop = await this.len(end, what);
    const n = stop - this.pos;
    if (n > MAX_STRING) {
      this.fail(
        "too-large",
        `Cannot read ${what}: it is ${n} bytes long, more than ${MAX_STRING}`,
      );
    }
    const start = this.pos;
    const raw = await this.bytes(n);
    try {
      return utf8.decode(raw);
    } catch {
      return this.fail(
        "bad-protobuf",
        `Cannot read ${what}: it is not valid UTF-8`,
        start,
      );
    }
  }

  /** Skips the value of a field whose tag was just read. */
  async skip(wire: number, end: number, what: string): Promise<void> {
    switch (wire) {
      case WIRE_VARINT:
        await this.#varint(end, what);
        return;
      case WIRE_I64:
        this.need(8, end, what);
        this.pos += 8;
        return;
      case WIRE_I32:
        this.need(4, end, what);
        this.pos += 4;
        return;
      default:
        this.pos = await this.len(end, what);
    }
  }

  /**
   * Yields `[start, end)` in windows of whole values: `width` bytes each, or
   * whole varints when `width` is 0. Used for packed repeated fields.
   */
  async *values(
    start: number,
    end: number,
    width: number,
    what: string,
  ): AsyncGenerator<Uint8Array> {
    if (width > 0 && (end - start) % width !== 0) {
      this.fail(
        "bad-protobuf",
        `Cannot read ${what}: ${end - start} bytes is not a multiple of ${width}`,
        start,
      );
    }
    let pos = start;
    while (pos < end) {
      let n = Math.min(WINDOW, end - pos);
      if (width > 0) n -= n % width;
      const buf = await this.source.read(pos, n);
      if (width === 0) {
        // Stop after the last varint that ends inside this window.
        let last = n - 1;
        while (last >= 0 && buf[last]! >= 0x80) last--;
        if (last < 0 || (pos + n === end && last !== n - 1)) {
          this.fail(
            "bad-protobuf",
            `Cannot read ${what}: a varint does not end`,
            pos + last + 1,
          );
        }
        n = last + 1;
      }
      yield buf.subarray(0, n);
      pos += n;
    }
  }

  /** Counts the varints of a packed field (validating that each one ends). */
  async countVarints(
    start: number,
    end: number,
    what: string,
  ): Promise<number> {
    let count = 0;
    let run = 0;
    let at = start;
    for await (const w of this.values(start, end, 0, what)) {
      for (let i = 0; i < w.byteLength; i++) {
        if (w[i]! >= 0x80) {
          if (++run >= 10) {
            this.fail(
              "bad-protobuf",
              `Cannot read ${what}: a varint is longer than 10 bytes`,
              at + i,
            );
          }
        } else {
          count++;
          run = 0;
        }
      }
      at += w.byteLength;
    }
    return count;
  }
}
