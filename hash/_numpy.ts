// NumPy `.npy` arrays and `.npz` archives (zips of `.npy` members). The npy
// header is a Python dict literal; it is parsed by a small strict grammar
// (never evaluated) and object/structured dtypes, which need pickle, are
// refused before any data is read.
import { ModelFormatError, type ModelFormatErrorCode } from "./errors.ts";
import { BLOCK_BYTES, type ByteSource, checkRange } from "./_source.ts";
import type { DType, ModelFormat, Tensor } from "./types.ts";
import { entryChunks, entryDataOffset, readZipDirectory, type ZipEntry } from "./_zip.ts";

/** Largest piece handed out by `chunks()` and largest single read. */
const CHUNK = BLOCK_BYTES;
/** numpy itself refuses headers over 10 kB by default; 1 MiB is generous. */
const MAX_HEADER = 1 << 20;
/** numpy's NPY_MAXDIMS. */
const MAX_DIMS = 64;
/** Nesting limit for header values (structured dtypes nest lists/tuples). */
const MAX_DEPTH = 32;
const MAGIC = [0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59]; // \x93NUMPY

/** Where an array lives, for error messages. */
interface Context {
  file: string;
  format: ModelFormat;
  /** The npz member name, when reading an archive. */
  member?: string;
  /** File offset of the array's first byte, when it is stored uncompressed. */
  base?: number;
}

/** What an npy header says about its array. */
interface NpyHeader {
  dtype: DType;
  itemSize: number;
  /** Byte-swap unit for big-endian data (0 when already little-endian). */
  swapUnit: number;
  /** True when the data is in Fortran order and must be transposed. */
  transpose: boolean;
  shape: number[];
  byteLength: number;
  /** Offset of the data from the start of the npy bytes. */
  dataStart: number;
}

/** Reads `length` bytes at `offset` within the npy bytes. */
type PrefixRead = (offset: number, length: number) => Promise<Uint8Array>;

function fail(
  ctx: Context,
  code: ModelFormatErrorCode,
  message: string,
  at?: number,
): never {
  const offset = ctx.base !== undefined && at !== undefined ? ctx.base + at : undefined;
  throw new ModelFormatError(
    code,
    message,
    offset === undefined
      ? { file: ctx.file, format: ctx.format }
      : { file: ctx.file, format: ctx.format, offset },
  );
}

function of(ctx: Context): string {
  return ctx.member === undefined ? "" : ` of member "${ctx.member}"`;
}

// ---------------------------------------------------------------------------
// Header literal parser: dicts, tuples, lists, strings, ints, True/False/None.

type PyValue =
  | { kind: "str"; value: string }
  | { kind: "int"; value: number }
  | { kind: "bool"; value: boolean }
  | { kind: "none" }
  | { kind: "tuple"; items: PyValue[] }
  | { kind: "list"; items: PyValue[] }
  | { kind: "dict"; entries: Map<string, PyValue> };

class LiteralParser {
  #text: string;
  #pos = 0;
  #ctx: Context;
  #headerOffset: number;

  constructor(text: string, ctx: Context, headerOffset: number) {
    this.#text = text;
    this.#ctx = ctx;
    this.#headerOffset = headerOffset;
  }

  #fail(expected: string): never {
    const found = this.#pos >= this.#text.length
      ? "the end of the header"
      : JSON.stringify(this.#text.slice(this.#pos, this.#pos + 12));
    fail(
      this.#ctx,
      "bad-header",
      `Cannot parse npy header${
        of(this.#ctx)
      }: expected ${expected} at character ${this.#pos}, found ${found}`,
      this.#headerOffset,
    );
  }

  #skipSpace(): void {
    while (
      this.#pos < this.#text.length &&
      " \t\n\r\f".includes(this.#text[this.#pos]!)
    ) {
      this.#pos++;
    }
  }

  #peek(): string | undefined {
    this.#skipSpace();
    return this.#text[this.#pos];
  }

  #expect(ch: string): void {
    if (this.#peek() !== ch) this.#fail(`"${ch}"`);
    this.#pos++;
  }

  /** Parses the whole header: one value, then only whitespace. */
  parseAll(): PyValue {
    const value = this.#value(0);
    this.#skipSpace();
    if (this.#pos !== this.#text.length) this.#fail("the end of the header");
    return value;
  }

  #value(depth: number): PyValue {
    if (depth > MAX_DEPTH) this.#fail(`at most ${MAX_DEPTH} levels of nesting`);
    const ch = this.#peek();
    if (ch === "{") return this.#dict(depth);
    if (ch === "(") return this.#sequence(depth, ")");
    if (ch === "[") return this.#sequence(depth, "]");
    if (ch === "'" || ch === '"') return { kind: "str", value: this.#string() };
    if (ch !== undefined && ch >= "0" && ch <= "9") return this.#int();
    for (
      const [word, value] of [["True", true], ["False", false], [
        "None",
        null,
      ]] as const
    ) {
      if (
        this.#text.startsWith(word, this.#pos) &&
        !isWordChar(this.#text[this.#pos + word.length])
      ) {
        this.#pos += word.length;
        return value === null ? { kind: "none" } : { kind: "bool", value };
      }
    }
    this.#fail(
      "a value (dict, tuple, list, string, integer, True, False or None)",
    );
  }

  #string(): string {
    const quote = this.#text[this.#pos]!;
    const start = ++this.#pos;
    while (this.#pos < this.#text.length) {
      const ch = this.#text[this.#pos]!;
      if (ch === quote) return this.#text.slice(start, this.#pos++);
      // Escapes never occur in numpy-written headers; refusing them keeps the
      // grammar small.
      if (ch === "\\" || ch === "\n" || ch === "\r") break;
      this.#pos++;
    }
    this.#fail(`a closing ${quote} without escapes or line breaks`);
  }

  #int(): PyValue {
    const start = this.#pos;
    while (this.#pos < this.#text.length && isDigit(this.#text[this.#pos]!)) {
      this.#pos++;
    }
    const digits = this.#text.slice(start, this.#pos);
    // Python 2 era numpy wrote dimensions as longs: `(10L, 4L)`.
    if (this.#text[this.#pos] === "L") this.#pos++;
    if (isWordChar(this.#text[this.#pos])) {
      this.#pos = start;
      this.#fail("a decimal integer");
    }
    const value = Number(digits);
    if (digits.length > 16 || !Number.isSafeInteger(value)) {
      this.#pos = start;
      this.#fail(`an integer of at most ${Number.MAX_SAFE_INTEGER}`);
    }
    if (digits.length > 1 && digits[0] === "0") {
      this.#pos = start;
      this.#fail("an integer without leading zeros");
    }
    return { kind: "int", value };
  }

  #sequence(depth: number, close: ")" | "]"): PyValue {
    this.#pos++;
    const items: PyValue[] = [];
    let sawComma = false;
    while (this.#peek() !== close) {
      items.push(this.#value(depth + 1));
      if (this.#peek() === ",") {
        this.#pos++;
        sawComma = true;
      } else if (this.#peek() !== close) {
        this.#fail(`"," or "${close}"`);
      }
    }
    this.#pos++;
    if (close === "]") return { kind: "list", items };
    // As in Python, `(x)` is just `x`; only a comma (or `()`) makes a tuple.
    if (items.length === 1 && !sawComma) return items[0]!;
    return { kind: "tuple", items };
  }

  #dict(depth: number): PyValue {
    this.#pos++;
    const entries = new Map<string, PyValue>();
    while (this.#peek() !== "}") {
      const ch = this.#peek();
      if (ch !== "'" && ch !== '"') this.#fail('a string key or "}"');
      const key = this.#string();
      if (entries.has(key)) {
        this.#fail(`no repeated key (${JSON.stringify(key)})`);
      }
      this.#expect(":");
      entries.set(key, this.#value(depth + 1));
      if (this.#peek() === ",") this.#pos++;
      else if (this.#peek() !== "}") this.#fail('"," or "}"');
    }
    this.#pos++;
    return { kind: "dict", entries };
  }
}

function isDigit(ch: string): boolean {
  return ch >= "0" && ch <= "9";
}

function isWordChar(ch: string | undefined): boolean {
  return ch !== undefined && /[A-Za-z0-9_]/.test(ch);
}

// ---------------------------------------------------------------------------
// Header semantics.

/** numpy kind + item size → our dtype. */
const DTYPES: Readonly<Record<string, DType>> = {
  f2: "F16",
  f4: "F32",
  f8: "F64",
  i1: "I8",
  i2: "I16",
  i4: "I32",
  i8: "I64",
  u1: "U8",
  u2: "U16",
  u4: "U32",
  u8: "U64",
  b1: "BOOL",
  c8: "C64",
  c16: "C128",
};

function describeValue(value: PyValue): string {
  switch (value.kind) {
    case "str":
      return JSON.stringify(value.value);
    case "int":
      return String(value.value);
    case "bool":
      return value.value ? "True" : "False";
    case "none":
      return "None";
    default:
      return `a ${value.kind}`;
  }
}

function parseDescr(
  value: PyValue,
  ctx: Context,
  at: number,
): { dtype: DType; itemSize: number; swapUnit: number } {
  if (value.kind !== "str") {
    fail(
      ctx,
      value.kind === "list" ? "unsupported-dtype" : "bad-header",
      value.kind === "list"
        ? `Cannot read array${
          of(ctx)
        }: structured dtypes (records with named fields) are not supported`
        : `Cannot read npy header${of(ctx)}: expected "descr" to be a dtype string, found ${
          describeValue(value)
        }`,
      at,
    );
  }
  const descr = value.value;
  const order = descr[0];
  const code = descr.slice(1);
  if (order === undefined || !"<>=|".includes(order) || code.length === 0) {
    fail(
      ctx,
      "bad-header",
      `Cannot read npy header${of(ctx)}: expected a dtype like "<f4", found ${
        JSON.stringify(descr)
      }`,
      at,
    );
  }
  const dtype = DTYPES[code];
  if (dtype === undefined) {
    const why = code.startsWith("O")
      ? " (Python objects, stored as a pickle, are never loaded)"
      : code.startsWith("V")
      ? " (raw void or structured records are not tensors)"
      : "";
    fail(
      ctx,
      "unsupported-dtype",
      `Cannot read array${of(ctx)}: dtype ${JSON.stringify(descr)} is not supported${why}`,
      at,
    );
  }
  const itemSize = Number(code.slice(1));
  // Complex numbers are pairs of floats: swap each half separately.
  const unit = dtype === "C64" || dtype === "C128" ? itemSize / 2 : itemSize;
  if (unit > 1 && order === "|") {
    fail(
      ctx,
      "bad-header",
      `Cannot read npy header${of(ctx)}: dtype ${
        JSON.stringify(descr)
      } has no byte order ("|" is only for 1-byte types)`,
      at,
    );
  }
  // "=" is native order; safemodels treats native as little-endian, like
  // every platform numpy runs on today.
  return { dtype, itemSize, swapUnit: order === ">" && unit > 1 ? unit : 0 };
}

function parseHeaderText(
  text: string,
  ctx: Context,
  headerOffset: number,
  dataStart: number,
  available: number,
): NpyHeader {
  const value = new LiteralParser(text, ctx, headerOffset).parseAll();
  const header = (message: string): never =>
    fail(
      ctx,
      "bad-header",
      `Cannot read npy header${of(ctx)}: ${message}`,
      headerOffset,
    );
  if (value.kind !== "dict") {
    header(`expected a dict, found ${describeValue(value)}`);
  }
  const entries = (value as Extract<PyValue, { kind: "dict" }>).entries;
  const keys = [...entries.keys()].sort();
  if (keys.join() !== "descr,fortran_order,shape") {
    header(
      `expected exactly the keys "descr", "fortran_order" and "shape", found ${
        keys.map((k) => JSON.stringify(k)).join(", ") || "none"
      }`,
    );
  }
  const { dtype, itemSize, swapUnit } = parseDescr(
    entries.get("descr")!,
    ctx,
    headerOffset,
  );
  const fortran = entries.get("fortran_order")!;
  if (fortran.kind !== "bool") {
    header(
      `expected "fortran_order" to be True or False, found ${describeValue(fortran)}`,
    );
  }
  const shapeValue = entries.get("shape")!;
  if (shapeValue.kind !== "tuple") {
    header(
      `expected "shape" to be a tuple, found ${describeValue(shapeValue)}`,
    );
  }
  const items = (shapeValue as Extract<PyValue, { kind: "tuple" }>).items;
  if (items.length > MAX_DIMS) {
    header(`expected at most ${MAX_DIMS} dimensions, found ${items.length}`);
  }
  const shape: number[] = [];
  for (const item of items) {
    if (item.kind !== "int") {
      header(`expected "shape" to hold integers, found ${describeValue(item)}`);
    }
    shape.push((item as Extract<PyValue, { kind: "int" }>).value);
  }
  // Multiply up, stopping as soon as the size passes what the file holds, so
  // the product never loses precision.
  const dataAvailable = available - dataStart;
  let byteLength = shape.includes(0) ? 0 : itemSize;
  if (byteLength !== 0) {
    for (const dim of shape) {
      byteLength *= dim;
      if (byteLength > dataAvailable) break;
    }
  }
  if (byteLength > dataAvailable) {
    fail(
      ctx,
      "truncated",
      `Cannot read array${of(ctx)}: shape (${shape.join(", ")}) of ${dtype} needs ${
        byteLength > Number.MAX_SAFE_INTEGER ? "more than 2^53" : byteLength
      } bytes but only ${dataAvailable} follow the header`,
      dataStart,
    );
  }
  if (byteLength < dataAvailable) {
    fail(
      ctx,
      "bad-offsets",
      `Cannot read array${of(ctx)}: shape (${
        shape.join(", ")
      }) of ${dtype} needs ${byteLength} bytes but ${dataAvailable} follow the header`,
      dataStart,
    );
  }
  // Fortran order only differs from C order when two or more axes are longer
  // than 1.
  const transpose = (fortran as Extract<PyValue, { kind: "bool" }>).value &&
    shape.filter((d) => d > 1).length > 1;
  return { dtype, itemSize, swapUnit, transpose, shape, byteLength, dataStart };
}

/** Reads and validates the npy preamble and header of `available` bytes. */
async function readNpyHeader(
  read: PrefixRead,
  available: number,
  ctx: Context,
): Promise<NpyHeader> {
  const head = await read(0, Math.min(available, 12));
  for (let i = 0; i < MAGIC.length; i++) {
    if (i >= head.length) {
      fail(
        ctx,
        "truncated",
        `Cannot read npy header${
          of(ctx)
        }: the array is ${available} bytes long, shorter than the magic`,
        0,
      );
    }
    if (head[i] !== MAGIC[i]) {
      const found = [...head.subarray(0, 6)].map((b) => b.toString(16).padStart(2, "0")).join(" ");
      fail(
        ctx,
        "bad-header",
        `Cannot read npy header${of(ctx)}: expected the magic "\\x93NUMPY", found bytes ${found}`,
        0,
      );
    }
  }
  if (head.length < 8) {
    fail(
      ctx,
      "truncated",
      `Cannot read npy header${
        of(ctx)
      }: the array is ${available} bytes long, ending inside the version`,
      6,
    );
  }
  const major = head[6]!;
  const minor = head[7]!;
  if ((major !== 1 && major !== 2 && major !== 3) || minor !== 0) {
    fail(
      ctx,
      "bad-header",
      `Cannot read npy header${
        of(ctx)
      }: expected format version 1.0, 2.0 or 3.0, found ${major}.${minor}`,
      6,
    );
  }
  const lengthSize = major === 1 ? 2 : 4;
  const headerOffset = 8 + lengthSize;
  if (head.length < headerOffset) {
    fail(
      ctx,
      "truncated",
      `Cannot read npy header${
        of(ctx)
      }: the array is ${available} bytes long, ending inside the header length`,
      8,
    );
  }
  const view = new DataView(head.buffer, head.byteOffset, head.byteLength);
  const headerLength = lengthSize === 2 ? view.getUint16(8, true) : view.getUint32(8, true);
  if (headerLength > MAX_HEADER) {
    fail(
      ctx,
      "too-large",
      `Cannot read npy header${
        of(ctx)
      }: it claims ${headerLength} bytes, more than the ${MAX_HEADER} allowed`,
      8,
    );
  }
  const dataStart = headerOffset + headerLength;
  if (dataStart > available) {
    fail(
      ctx,
      "truncated",
      `Cannot read npy header${
        of(ctx)
      }: it claims ${headerLength} bytes but the array is ${available} bytes long`,
      8,
    );
  }
  const bytes = await read(headerOffset, headerLength);
  let text: string;
  if (major === 3) {
    try {
      text = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true }).decode(bytes);
    } catch {
      fail(
        ctx,
        "bad-header",
        `Cannot read npy header${of(ctx)}: version 3.0 headers must be UTF-8, found invalid bytes`,
        headerOffset,
      );
    }
  } else {
    // Latin-1: each byte is one code point.
    text = "";
    for (let i = 0; i < bytes.length; i += 4096) {
      text += String.fromCharCode(...bytes.subarray(i, i + 4096));
    }
  }
  return parseHeaderText(text, ctx, headerOffset, dataStart, available);
}

// ---------------------------------------------------------------------------
// Data streaming.

/** Reverses the bytes of every `unit`-byte word of `bytes`, in place. */
function swapBytes(bytes: Uint8Array, unit: number): void {
  for (let i = 0; i + unit <= bytes.length; i += unit) {
    for (let a = i, b = i + unit - 1; a < b; a++, b--) {
      const t = bytes[a]!;
      bytes[a] = bytes[b]!;
      bytes[b] = t;
    }
  }
}

/** Yields `length` bytes at `offset` of `source` in ≤ 8 MiB reads. */
async function* sourceChunks(
  source: ByteSource,
  offset: number,
  length: number,
  swapUnit: number,
): AsyncGenerator<Uint8Array> {
  for (let at = 0; at < length; at += CHUNK) {
    let piece = await source.read(offset + at, Math.min(CHUNK, length - at));
    if (swapUnit > 0) {
      // In-memory sources hand out views of the caller's bytes: copy first.
      piece = piece.slice();
      swapBytes(piece, swapUnit);
    }
    yield piece;
  }
}

/**
 * Skips `skip` bytes of a decompressed stream, then yields exactly `length`
 * bytes in ≤ 8 MiB pieces whose lengths are multiples of the swap unit.
 */
async function* streamChunks(
  stream: AsyncIterable<Uint8Array>,
  skip: number,
  length: number,
  swapUnit: number,
  ctx: Context,
): AsyncGenerator<Uint8Array> {
  const unit = Math.max(swapUnit, 1);
  let toSkip = skip;
  let left = length;
  let carry = new Uint8Array(0); // a partial word waiting for its other bytes
  const finish = (piece: Uint8Array): Uint8Array => {
    if (swapUnit === 0) return piece;
    const own = piece.slice();
    swapBytes(own, swapUnit);
    return own;
  };
  for await (const raw of stream) {
    let chunk = raw;
    if (toSkip > 0) {
      const k = Math.min(toSkip, chunk.length);
      chunk = chunk.subarray(k);
      toSkip -= k;
    }
    if (chunk.length > left) {
      fail(
        ctx,
        "bad-zip",
        `Cannot read member "${ctx.member}": it decompresses to more than the ${
          skip + length
        } bytes it declares`,
      );
    }
    left -= chunk.length;
    if (carry.length > 0) {
      const take = Math.min(unit - carry.length, chunk.length);
      const joined = new Uint8Array(carry.length + take);
      joined.set(carry);
      joined.set(chunk.subarray(0, take), carry.length);
      chunk = chunk.subarray(take);
      carry = joined;
      if (carry.length < unit) continue;
      yield finish(carry);
      carry = new Uint8Array(0);
    }
    const aligned = chunk.length - (chunk.length % unit);
    for (let at = 0; at < aligned; at += CHUNK) {
      yield finish(chunk.subarray(at, Math.min(aligned, at + CHUNK)));
    }
    carry = chunk.slice(aligned);
  }
  if (toSkip > 0 || left > 0) {
    fail(
      ctx,
      "truncated",
      `Cannot read member "${ctx.member}": it decompressed to fewer than the ${
        skip + length
      } bytes it declares`,
    );
  }
}

/** Gathers a whole Fortran-order array into C-order pieces of ≤ 8 MiB. */
function* fortranToC(
  data: Uint8Array,
  header: NpyHeader,
): Generator<Uint8Array> {
  const { shape, itemSize, byteLength, swapUnit } = header;
  const n = shape.length;
  // Byte strides of the Fortran layout: the first axis varies fastest.
  const strides: number[] = [];
  let stride = itemSize;
  for (const dim of shape) {
    strides.push(stride);
    stride *= dim;
  }
  const index = new Array<number>(n).fill(0);
  let src = 0;
  const per = Math.floor(CHUNK / itemSize) * itemSize;
  for (let done = 0; done < byteLength;) {
    const out = new Uint8Array(Math.min(per, byteLength - done));
    for (let o = 0; o < out.length; o += itemSize) {
      for (let b = 0; b < itemSize; b++) out[o + b] = data[src + b]!;
      // Advance the C-order index (last axis fastest) and the source offset.
      for (let k = n - 1; k >= 0; k--) {
        src += strides[k]!;
        if (++index[k]! < shape[k]!) break;
        src -= strides[k]! * shape[k]!;
        index[k] = 0;
      }
    }
    if (swapUnit > 0) swapBytes(out, swapUnit);
    done += out.length;
    yield out;
  }
}

async function collect(
  pieces: AsyncIterable<Uint8Array>,
  length: number,
): Promise<Uint8Array> {
  // Grow as bytes arrive rather than trusting the declared length up front:
  // a tiny deflated member may claim gigabytes.
  let out = new Uint8Array(Math.min(length, 1 << 20));
  let at = 0;
  for await (const piece of pieces) {
    if (at + piece.length > out.length) {
      const grown = new Uint8Array(
        Math.min(length, Math.max(out.length * 2, at + piece.length)),
      );
      grown.set(out.subarray(0, at));
      out = grown;
    }
    out.set(piece, at);
    at += piece.length;
  }
  return out;
}

/** The most bytes of a Fortran-order array held in memory to reorder. */
const MAX_FORTRAN_BYTES = 1 << 30;

/** Builds a tensor whose `chunks()` reads the raw array bytes from `raw()`. */
function makeTensor(
  name: string,
  header: NpyHeader,
  raw: (swapUnit: number) => AsyncIterable<Uint8Array>,
): Tensor {
  const { dtype, shape, byteLength } = header;
  return {
    name,
    dtype,
    shape,
    byteLength,
    chunks: header.transpose
      ? async function* () {
        // Fortran order: read the array whole, then gather. A deflated member
        // can declare far more than its file holds: bounded, as PyTorch's
        // gathers are.
        if (byteLength > MAX_FORTRAN_BYTES) {
          throw new ModelFormatError(
            "too-large",
            `Cannot read array "${name}": it is in Fortran order and ${byteLength} bytes; at most ${MAX_FORTRAN_BYTES} bytes are gathered into memory to reorder (save it in C order)`,
          );
        }
        yield* fortranToC(await collect(raw(0), byteLength), header);
      }
      : () => raw(header.swapUnit),
  };
}

// ---------------------------------------------------------------------------
// Public readers.

/**
 * Reads a standalone `.npy` file as one tensor named `name`. Object and
 * structured dtypes are refused; big-endian and Fortran-order arrays are
 * streamed as little-endian C order.
 */
export async function readNpy(
  source: ByteSource,
  name = "array",
): Promise<Tensor[]> {
  const ctx: Context = { file: source.name, format: "npy", base: 0 };
  const header = await readNpyHeader(
    (offset, length) => source.read(offset, length),
    source.size,
    ctx,
  );
  const start = header.dataStart;
  return [
    makeTensor(
      name,
      header,
      (swap) => sourceChunks(source, start, header.byteLength, swap),
    ),
  ];
}

/**
 * Reads the `.npy` header at the start of a decompressed stream, then stops
 * the stream (only the header's bytes are inflated).
 */
async function streamHeader(
  stream: AsyncIterable<Uint8Array>,
  available: number,
  ctx: Context,
): Promise<NpyHeader> {
  const iterator = stream[Symbol.asyncIterator]();
  let buffer = new Uint8Array(0);
  let ended = false;
  const read: PrefixRead = async (offset, length) => {
    while (buffer.length < offset + length && !ended) {
      const next = await iterator.next();
      if (next.done) {
        ended = true;
        break;
      }
      // Never keep more than the largest header could need.
      const room = Math.max(0, 12 + MAX_HEADER - buffer.length);
      const add = next.value.subarray(0, room);
      const joined = new Uint8Array(buffer.length + add.length);
      joined.set(buffer);
      joined.set(add, buffer.length);
      buffer = joined;
    }
    if (buffer.length < offset + length) {
      fail(
        ctx,
        "truncated",
        `Cannot read npy header of member "${ctx.member}": it decompressed to only ${buffer.length} bytes`,
      );
    }
    return buffer.subarray(offset, offset + length);
  };
  try {
    return await readNpyHeader(read, available, ctx);
  } finally {
    if (!ended) await iterator.return?.();
  }
}

/**
 * Reads a `.npz` archive (from `np.savez` or `np.savez_compressed`) as one
 * tensor per `<name>.npy` member, named without the `.npy`. Listing parses
 * each member's npy header only; data is read when `chunks()` is iterated.
 */
export async function readNpz(source: ByteSource): Promise<Tensor[]> {
  const format: ModelFormat = "npz";
  const entries = await readZipDirectory(source, format);
  const tensors: Tensor[] = [];
  const seen = new Set<string>();
  for (const entry of entries) {
    const ctx: Context = { file: source.name, format, member: entry.name };
    if (!entry.name.endsWith(".npy")) {
      fail(
        ctx,
        "bad-zip",
        `Cannot read npz: expected only ".npy" members, found "${entry.name}"`,
      );
    }
    const name = entry.name.slice(0, -4);
    if (seen.has(name)) {
      fail(
        ctx,
        "bad-zip",
        `Cannot read npz: member "${entry.name}" appears more than once`,
      );
    }
    seen.add(name);
  }
  // numpy.load looks a key up as a member name first: with members "a.npy"
  // and "a.npy.npy", the key "a.npy" reads the member "a.npy", never the
  // array this reader would name "a.npy".
  const members = new Set(entries.map((e) => e.name));
  for (const entry of entries) {
    const name = entry.name.slice(0, -4);
    if (members.has(name)) {
      fail(
        { file: source.name, format, member: entry.name },
        "bad-zip",
        `Cannot read npz: the array "${name}" of member "${entry.name}" is also the name of member "${name}", which numpy.load reads for that key instead`,
      );
    }
  }
  for (const entry of entries) {
    tensors.push(
      await readMember(source, entry, { file: source.name, format, member: entry.name }),
    );
  }
  return tensors;
}

async function readMember(
  source: ByteSource,
  entry: ZipEntry,
  ctx: Context,
): Promise<Tensor> {
  const name = entry.name.slice(0, -4);
  if (entry.method === 0) {
    // Stored: the array bytes sit in the file as they are; read them directly.
    const base = await entryDataOffset(source, entry, ctx.format);
    if (entry.compressedSize !== entry.size) {
      fail(
        ctx,
        "bad-zip",
        `Cannot read member "${entry.name}": it is stored with ${entry.compressedSize} bytes but declares ${entry.size}`,
      );
    }
    checkRange(source, base, entry.size, ctx.format);
    const stored: Context = { ...ctx, base };
    const header = await readNpyHeader(
      (offset, length) => source.read(base + offset, length),
      entry.size,
      stored,
    );
    const start = base + header.dataStart;
    return makeTensor(
      name,
      header,
      (swap) => sourceChunks(source, start, header.byteLength, swap),
    );
  }
  if (entry.method === 8) {
    const header = await streamHeader(
      entryChunks(source, entry, ctx.format, CHUNK),
      entry.size,
      ctx,
    );
    return makeTensor(
      name,
      header,
      (swap) =>
        streamChunks(
          entryChunks(source, entry, ctx.format, CHUNK),
          header.dataStart,
          header.byteLength,
          swap,
          ctx,
        ),
    );
  }
  fail(
    ctx,
    "bad-zip",
    `Cannot read member "${entry.name}": expected compression method 0 (stored) or 8 (deflate), found ${entry.method}`,
  );
}
