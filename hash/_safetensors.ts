// safetensors: an 8-byte little-endian header length, a JSON header, then the
// data section. Tensors must tile the data section exactly: no overlaps, no
// gaps, nothing past the end (a gap could hide bytes a different parser reads).
import { ModelFormatError } from "./errors.ts";
import {
  BLOCK_BYTES,
  type ByteSource,
  rangeChunks,
  setFileRange,
  type StreamReader,
} from "./_source.ts";

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
  let text: string;
  let raw: unknown;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(json);
    raw = JSON.parse(text);
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
  let metadata: Record<string, string> | undefined;
  const entries: SafetensorsEntry[] = [];
  for (const [name, value] of Object.entries(raw)) {
    if (name === "__metadata__") {
      metadata = parseMetadataObject(value, file);
      continue;
    }
    entries.push(parseEntry(name, value, file));
  }
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

/** The tensors of a random-access safetensors file, in file order. */
export async function readSafetensors(
  source: ByteSource,
): Promise<
  { tensors: Tensor[]; metadata: Record<string, string> | undefined }
> {
  const header = await readHeader(source);
  const base = 8 + header.headerLength;
  const tensors = header.entries.map((e): Tensor => {
    const t: Tensor = {
      name: e.name,
      dtype: e.dtype,
      shape: e.shape,
      byteLength: e.end - e.begin,
      chunks: () => rangeChunks(source, base + e.begin, e.end - e.begin),
    };
    if (source.path !== undefined) {
      setFileRange(t, {
        path: source.path,
        offset: base + e.begin,
        length: e.end - e.begin,
      });
    }
    return t;
  });
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
