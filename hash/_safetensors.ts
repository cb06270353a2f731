// safetensors: an 8-byte little-endian header length, a JSON header, then the
// data section. Tensors must tile the data section exactly: no overlaps, no
// gaps, nothing past the end (a gap could hide bytes a different parser reads).
import { ModelFormatError } from "./errors.ts";
import { BLOCK_BYTES, type ByteSource, rangeChunks, type StreamReader } from "./_source.ts";
import { SPAN, type Span } from "./_sweep.ts";

export { rangeChunks };
import { DTYPE_SIZES } from "./types.ts";
import type { DType, Tensor } from "./types.ts";

/** The largest header we accept (the safetensors reference limit). */
export const MAX_HEADER_BYTES = 100_000_000;
/** Bytes per read when streaming tensor data. */
export const CHUNK_BYTES: number = BLOCK_BYTES;

/** One tensor entry of a safetensors header. */
export interface SafetensorsEntry {
  name: string;
  dtype: DType;
  shape: number[];
  /** Start of the tensor in the data section. */
  begin: number;
  /** End (exclusive) of the tensor in the data section. */
  end: number;
}

/** A parsed and validated safetensors header. */
export interface SafetensorsHeader {
  /** `__metadata__`, or `undefined` when absent. */
  metadata: Record<string, string> | undefined;
  /** Tensors in data-section order. */
  entries: SafetensorsEntry[];
  /** The header's byte length (without the 8-byte prefix). */
  headerLength: number;
  /** The data section's length (the end of the last tensor). */
  dataLength: number;
}

const FORMAT = "safetensors" as const;

/** Reads the 8-byte prefix: the header length, checked against limits. */
export function parseHeaderLength(
  prefix: Uint8Array,
  file: string,
  fileSize?: number,
): number {
  const view = new DataView(prefix.buffer, prefix.byteOffset, 8);
  const n = view.getBigUint64(0, true);
  if (n > BigInt(MAX_HEADER_BYTES)) {
    throw new ModelFormatError(
      "too-large",
      `Cannot read safetensors header: it declares ${n} bytes, more than the ${MAX_HEADER_BYTES}-byte limit`,
      { file, format: FORMAT, offset: 0 },
    );
  }
  const length = Number(n);
  if (fileSize !== undefined && 8 + length > fileSize) {
    throw new ModelFormatError(
      "truncated",
      `Cannot read safetensors header: it declares ${length} bytes but the file has only ${
        fileSize - 8
      } after the length prefix`,
      { file, format: FORMAT, offset: 0 },
    );
  }
  return length;
}

function fail(file: string, message: string, offset = 8): never {
  throw new ModelFormatError("bad-header", message, {
    file,
    format: FORMAT,
    offset,
  });
}

/** UTF-8 to text, strictly (a lenient decoder is several times faster, and ASCII is valid UTF-8). */
function decode(bytes: Uint8Array): string {
  // A byte order mark is kept (as U+FEFF), so that JSON.parse refuses it as
  // Rust's serde_json and Python's json do, wherever a piece starts.
  return new TextDecoder("utf-8", { fatal: !isAscii(bytes), ignoreBOM: true }).decode(bytes);
}

/** Headers from this size on are parsed in pieces (see {@linkcode piecewise}). */
const PIECEWISE_BYTES = 1 << 20;
/** The size of each piece. */
export const PIECE_BYTES = 64 << 10;

/**
 * Visits the members of a large header's top-level object in order, parsed
 * a few hundred at a time: JSON.parse over the whole header holds every
 * entry at once as objects, while pieces die young.
 * The header is cut at the commas that separate top-level members (depth 1,
 * outside strings), which JSON's grammar makes unambiguous. Anything unusual
 * (no object, an empty member, unbalanced brackets, a piece that does not
 * parse) returns `false`, possibly after visiting some members: the caller
 * then forgets them and parses the header whole, which yields JSON.parse's
 * own verdict.
 */
export function piecewise(
  json: Uint8Array,
  visit: (name: string, value: unknown) => void,
): boolean {
  const ws = (c: number) => c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09;
  let first = 0;
  while (first < json.length && ws(json[first]!)) first++;
  let last = json.length - 1;
  while (last >= 0 && ws(json[last]!)) last--;
  if (json[first] !== 0x7b || json[last] !== 0x7d) return false;
  const cuts: number[] = [];
  let depth = 0;
  for (let i = first; i <= last; i++) {
    const c = json[i]!;
    if (c === 0x22) {
      // A string: skip to its closing quote (escapes skip one character).
      for (i++; i <= last && json[i] !== 0x22; i++) if (json[i] === 0x5c) i++;
      if (i > last) return false;
    } else if (c === 0x7b || c === 0x5b) depth++;
    else if (c === 0x7d || c === 0x5d) {
      if (--depth === 0 && i !== last) return false;
    } else if (c === 0x2c && depth === 1) cuts.push(i);
  }
  if (depth !== 0) return false;
  cuts.push(last);
  let from = first + 1;
  let at = from;
  for (const cut of cuts) {
    // Every member between two commas must have content.
    let k = at;
    while (k < cut && ws(json[k]!)) k++;
    if (k === cut) return false;
    at = cut + 1;
    if (cut - from < PIECE_BYTES && cut !== last) continue;
    let piece: unknown;
    try {
      piece = JSON.parse(`{${decode(json.subarray(from, cut))}}`);
    } catch {
      return false;
    }
    for (const name in piece as Record<string, unknown>) {
      if (Object.hasOwn(piece as object, name)) {
        visit(name, (piece as Record<string, unknown>)[name]);
      }
    }
    from = cut + 1;
  }
  return true;
}

function isAscii(bytes: Uint8Array): boolean {
  for (let i = 0; i < bytes.length; i++) if (bytes[i]! > 0x7f) return false;
  return true;
}

function isCount(v: unknown): v is number {
  return typeof v === "number" && Number.isSafeInteger(v) && v >= 0;
}

/**
 * Parses and validates a header's JSON bytes. `dataLength`, when known (a
 * file), must equal the end of the last tensor.
 */
export function parseHeader(
  json: Uint8Array,
  file: string,
  dataLength?: number,
): SafetensorsHeader {
  // Each member read (and checked) as it is parsed; a later member of the
  // same name replaces an earlier one in its place, as in JSON.parse. A
  // malformed entry is kept as its error, so a valid later duplicate wins.
  type Read = SafetensorsEntry | { metadata: Record<string, string> } | ModelFormatError;
  let found = new Map<string, Read>();
  const visit = (name: string, value: unknown) => {
    let read: Read;
    try {
      read = name === "__metadata__"
        ? { metadata: parseMetadataObject(value, file) }
        : parseEntry(name, value, file);
    } catch (e) {
      if (!(e instanceof ModelFormatError)) throw e;
      read = e;
    }
    found.set(name, read);
  };
  if (json.byteLength < PIECEWISE_BYTES || !piecewise(json, visit)) {
    found = new Map();
    let raw: unknown;
    try {
      raw = JSON.parse(decode(json));
    } catch (e) {
      fail(
        file,
        `Cannot parse safetensors header: expected ${json.byteLength} bytes of UTF-8 JSON, found invalid ${
          e instanceof SyntaxError ? `JSON (${e.message})` : "UTF-8"
        }`,
      );
    }
    if (typeof raw !== "object" || raw === null || Array.isArray(raw)) {
      fail(file, "Cannot parse safetensors header: expected a JSON object");
    }
    const object = raw as Record<string, unknown>;
    for (const name in object) if (Object.hasOwn(object, name)) visit(name, object[name]);
  }
  let metadata: Record<string, string> | undefined;
  const entries: SafetensorsEntry[] = [];
  for (const read of found.values()) {
    if (read instanceof ModelFormatError) throw read;
    if ("metadata" in read) metadata = read.metadata;
    else entries.push(read);
  }
  found.clear();
  entries.sort((a, b) => a.begin - b.begin || a.end - b.end);
  let at = 0;
  for (const e of entries) {
    if (e.begin !== at) {
      fail(
        file,
        e.begin < at
          ? `Cannot read tensor "${e.name}": its data [${e.begin}, ${e.end}) overlaps the previous tensor, which ends at ${at}`
          : `Cannot read tensor "${e.name}": its data starts at ${e.begin}, leaving a gap after the previous tensor, which ends at ${at}`,
      );
    }
    at = e.end;
  }
  if (dataLength !== undefined && at !== dataLength) {
    throw new ModelFormatError(
      at > dataLength ? "truncated" : "bad-header",
      at > dataLength
        ? `Cannot read tensors: they need ${at} bytes of data but the file holds ${dataLength}`
        : `Cannot read tensors: they end at byte ${at} of the data section but the file holds ${dataLength} (${
          dataLength - at
        } trailing bytes)`,
      { file, format: FORMAT },
    );
  }
  return { metadata, entries, headerLength: json.byteLength, dataLength: at };
}

function parseMetadataObject(
  value: unknown,
  file: string,
): Record<string, string> {
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    fail(file, "Cannot read __metadata__: expected an object of strings");
  }
  // Object.fromEntries defines own properties, so a "__proto__" key survives.
  const out: [string, string][] = [];
  for (const [k, v] of Object.entries(value)) {
    if (typeof v !== "string") {
      fail(
        file,
        `Cannot read __metadata__: the value of "${k}" is a ${typeof v}, expected a string`,
      );
    }
    out.push([k, v]);
  }
  return Object.fromEntries(out);
}

function parseEntry(
  name: string,
  value: unknown,
  file: string,
): SafetensorsEntry {
  if (typeof value !== "object" || value === null) {
    fail(file, `Cannot read tensor "${name}": expected an object`);
  }
  const { dtype, shape, data_offsets: offsets } = value as Record<
    string,
    unknown
  >;
  if (typeof dtype !== "string" || !Object.hasOwn(DTYPE_SIZES, dtype)) {
    throw new ModelFormatError(
      "unsupported-dtype",
      `Cannot read tensor "${name}": unknown dtype ${JSON.stringify(dtype)}`,
      { file, format: FORMAT },
    );
  }
  if (!Array.isArray(shape) || !shape.every(isCount)) {
    fail(
      file,
      `Cannot read tensor "${name}": shape must be a list of non-negative integers, found ${
        JSON.stringify(shape)
      }`,
    );
  }
  if (
    !Array.isArray(offsets) || offsets.length !== 2 ||
    !offsets.every(isCount) || offsets[0]! > offsets[1]!
  ) {
    fail(
      file,
      `Cannot read tensor "${name}": data_offsets must be [begin, end] with begin <= end, found ${
        JSON.stringify(offsets)
      }`,
    );
  }
  const [begin, end] = offsets as [number, number];
  let elements = 1;
  for (const d of shape as number[]) elements *= d;
  const size = DTYPE_SIZES[dtype as DType];
  if (
    !Number.isSafeInteger(elements * size) || elements * size !== end - begin
  ) {
    throw new ModelFormatError(
      "bad-offsets",
      `Cannot read tensor "${name}": ${dtype}${JSON.stringify(shape)} needs ${
        elements * size
      } bytes but data_offsets span ${end - begin}`,
      { file, format: FORMAT },
    );
  }
  return { name, dtype: dtype as DType, shape: shape as number[], begin, end };
}

/** Reads and validates the header of a random-access safetensors file. */
export async function readHeader(
  source: ByteSource,
): Promise<SafetensorsHeader> {
  if (source.size < 8) {
    throw new ModelFormatError(
      "truncated",
      `Cannot read safetensors header: the file is ${source.size} bytes, shorter than the 8-byte length prefix`,
      { file: source.name, format: FORMAT, offset: 0 },
    );
  }
  const n = parseHeaderLength(
    await source.read(0, 8),
    source.name,
    source.size,
  );
  const json = await source.read(8, n);
  return parseHeader(json, source.name, source.size - 8 - n);
}

/** A tensor of a random-access safetensors file (a class: no closure per tensor). */
class SafetensorsTensor implements Tensor {
  readonly name: string;
  readonly dtype: DType;
  readonly shape: number[];
  readonly byteLength: number;
  readonly #source: ByteSource;
  readonly #offset: number;
  constructor(e: SafetensorsEntry, source: ByteSource, base: number) {
    this.name = e.name;
    this.dtype = e.dtype;
    this.shape = e.shape;
    this.byteLength = e.end - e.begin;
    this.#source = source;
    this.#offset = base + e.begin;
  }
  chunks(): AsyncIterable<Uint8Array> {
    return rangeChunks(this.#source, this.#offset, this.byteLength);
  }
  /** The bytes lie verbatim in the file (made on demand: no object per tensor kept). */
  get [SPAN](): Span {
    return { source: this.#source, offset: this.#offset, length: this.byteLength };
  }
}

/** The tensors of a random-access safetensors file, in file order. */
export async function readSafetensors(
  source: ByteSource,
): Promise<
  { tensors: Tensor[]; metadata: Record<string, string> | undefined }
> {
  const header = await readHeader(source);
  const base = 8 + header.headerLength;
  const tensors = header.entries.map((e): Tensor => new SafetensorsTensor(e, source, base));
  return { tensors, metadata: header.metadata };
}

/**
 * Reads a safetensors stream front to back: the header first, then each
 * tensor in data-section order. Each tensor's chunks must be consumed before
 * the next tensor is taken; the stream must end exactly after the data.
 */
export async function readSafetensorsStream(
  reader: StreamReader,
  prefix?: Uint8Array,
): Promise<{
  header: SafetensorsHeader;
  tensors: AsyncGenerator<Tensor>;
}> {
  const n = parseHeaderLength(prefix ?? await reader.readExact(8), reader.name);
  const header = parseHeader(await reader.readExact(n), reader.name);
  async function* tensors(): AsyncGenerator<Tensor> {
    for (const e of header.entries) {
      let taken = false;
      yield {
        name: e.name,
        dtype: e.dtype,
        shape: e.shape,
        byteLength: e.end - e.begin,
        chunks: () => {
          if (taken) {
            throw new TypeError(
              `Cannot read tensor "${e.name}" twice from a stream`,
            );
          }
          taken = true;
          return reader.take(e.end - e.begin, CHUNK_BYTES);
        },
      };
      if (!taken) {
        for await (const _ of reader.take(e.end - e.begin)) { /* skip */ }
      }
    }
    if (!(await reader.atEnd())) {
      throw new ModelFormatError(
        "bad-header",
        `Cannot read tensors: the stream has bytes after the last tensor, which ends at byte ${header.dataLength} of the data section`,
        { file: reader.name, format: FORMAT },
      );
    }
  }
  return { header, tensors: tensors() };
}
