// ONNX reader: walks ModelProto → graph → initializer with the streaming
// protobuf cursor and exposes each initializer (a TensorProto) as a Tensor.
// Tensor bytes come from `raw_data` (streamed from the file), from external
// data files (streamed), or from typed repeated fields such as `float_data`
// (decoded window by window while streaming). Listing reads tags, lengths and
// the few small fields only; `raw_data` is skipped without being read.
//
// Refused rather than ignored, so that no weight is silently left out of a
// hash: `GraphProto.sparse_initializer`, `TensorProto.segment`, string tensors
// and 2/4-bit types. Tensors held by `Constant` nodes or in subgraphs are not
// initializers and are not returned.
import { ModelFormatError } from "./errors.ts";
import {
  decodeVarint,
  ProtoCursor,
  type Varint,
  WIRE_I32,
  WIRE_I64,
  WIRE_LEN,
  WIRE_VARINT,
} from "./_protobuf.ts";
import { BLOCK_BYTES, type ByteSource, rangeChunks } from "./_source.ts";
import { type DType, DTYPE_SIZES, type Tensor } from "./types.ts";

/** Options for {@linkcode readOnnx}. */
export interface OnnxReadOptions {
  /**
   * Opens an external-data file named by a tensor's `location` (relative,
   * already checked by {@linkcode resolveExternalLocation}; the caller must
   * still keep it inside the model folder). Each location is opened at most
   * once per {@linkcode readOnnx} call and never closed by the reader: the
   * caller owns the sources it returns and closes them when done with the
   * tensors (or when `readOnnx` throws). Absent → external data is refused
   * with `ModelFormatError("bad-external-data")`.
   */
  openExternal?: (location: string) => Promise<ByteSource>;
}

/** Largest piece `chunks()` yields and largest single read of tensor data. */
const CHUNK = BLOCK_BYTES;
/** ONNX has no rank limit; this only bounds memory for hostile files. */
const MAX_RANK = 1024;

/** ONNX TensorProto.DataType → our dtype. */
const ONNX_DTYPES: Readonly<Record<number, DType>> = {
  1: "F32",
  2: "U8",
  3: "I8",
  4: "U16",
  5: "I16",
  6: "I32",
  7: "I64",
  9: "BOOL",
  10: "F16",
  11: "F64",
  12: "U32",
  13: "U64",
  14: "C64",
  15: "C128",
  16: "BF16",
  17: "F8_E4M3",
  18: "F8_E4M3FNUZ",
  19: "F8_E5M2",
  20: "F8_E5M2FNUZ",
  24: "F8_E8M0",
};

const ONNX_TYPE_NAMES: Readonly<Record<number, string>> = {
  0: "UNDEFINED",
  8: "STRING",
  21: "UINT4",
  22: "INT4",
  23: "FLOAT4E2M1",
  25: "UINT2",
  26: "INT2",
};

/** TensorProto fields holding typed values, with their element encoding. */
const TYPED_FIELDS: Readonly<
  Record<number, { name: string; width: number; wire: number }>
> = {
  4: { name: "float_data", width: 4, wire: WIRE_I32 },
  5: { name: "int32_data", width: 0, wire: WIRE_VARINT },
  7: { name: "int64_data", width: 0, wire: WIRE_VARINT },
  10: { name: "double_data", width: 8, wire: WIRE_I64 },
  11: { name: "uint64_data", width: 0, wire: WIRE_VARINT },
};

/** Which typed field holds each dtype's values (ONNX onnx.proto comments). */
function typedFieldFor(dtype: DType): number {
  switch (dtype) {
    case "F32":
    case "C64":
      return 4;
    case "F64":
    case "C128":
      return 10;
    case "I64":
      return 7;
    case "U32":
    case "U64":
      return 11;
    default:
      return 5;
  }
}

/** Where the graph and its initializers are in an ONNX file. */
export interface OnnxLayout {
  /** The `graph` field: its tag's offset, and its value's start and end. */
  graph: { tag: number; start: number; end: number };
  /** Every `GraphProto.initializer`, in file order. */
  initializers: TensorRecord[];
}

/** Walks ModelProto → graph → initializers, reading tags and small fields only. */
async function walkModel(cur: ProtoCursor): Promise<OnnxLayout> {
  const source = cur.source;
  const records: TensorRecord[] = [];
  let graph: OnnxLayout["graph"] | undefined;
  while (cur.pos < source.size) {
    const tag = await cur.tag(source.size);
    if (tag.field !== 7) {
      await cur.skip(tag.wire, source.size, `ModelProto field ${tag.field}`);
      continue;
    }
    if (tag.wire !== WIRE_LEN || graph) {
      cur.fail(
        "bad-protobuf",
        graph
          ? "Cannot read graph: the model has two graphs"
          : `Cannot read graph: wire type ${tag.wire}`,
        tag.start,
      );
    }
    const graphEnd = await cur.len(source.size, "graph");
    graph = { tag: tag.start, start: cur.pos, end: graphEnd };
    while (cur.pos < graphEnd) {
      const t = await cur.tag(graphEnd);
      if (t.field === 15) {
        cur.fail(
          "unsupported-dtype",
          "Cannot read sparse initializer: sparse initializers are not supported (densify them)",
          t.start,
        );
      }
      if (t.field !== 5) {
        await cur.skip(t.wire, graphEnd, `GraphProto field ${t.field}`);
        continue;
      }
      if (t.wire !== WIRE_LEN) {
        cur.fail(
          "bad-protobuf",
          `Cannot read initializer: wire type ${t.wire}`,
          t.start,
        );
      }
      const end = await cur.len(graphEnd, "initializer");
      const rec = await walkTensor(cur, end);
      rec.tag = t.start;
      records.push(rec);
    }
  }
  if (!graph) {
    cur.fail("bad-protobuf", "Cannot read ONNX model: it has no graph", 0);
  }
  return { graph, initializers: records };
}

/**
 * The layout of an ONNX file: where its graph is and, for each initializer,
 * where its message, its `raw_data` and its external-data entries are. Reads
 * tags and small fields only (never tensor bytes).
 *
 * @throws {ModelFormatError} When the file is malformed.
 */
export function onnxLayout(source: ByteSource): Promise<OnnxLayout> {
  return walkModel(new ProtoCursor(source, "onnx"));
}

/** What the walk learned about one TensorProto. */
export interface TensorRecord {
  /** Offset of the initializer's tag (set by the graph walk). */
  tag?: number;
  /** The message's value: start and end offsets. */
  start: number;
  end: number;
  name?: string;
  dataType?: number;
  dims: bigint[];
  /** `raw_data`: its tag's offset, and its value's offset and length. */
  raw?: { tag: number; offset: number; length: number };
  /** The typed field in use: from its first tag to the end of its last value. */
  typed?: { field: number; start: number; end: number; count: number };
  external: Map<string, string>;
  dataLocation?: number;
  hasStrings: boolean;
  hasSegment: boolean;
}

/** Main-graph initializers among the tensors {@linkcode readOnnx} returned. */
const mainInitializers = new WeakSet<Tensor>();

/**
 * Whether `tensor` (from {@linkcode readOnnx}) is an initializer of the main
 * graph, the only tensors the seed project's hashes read from ONNX files.
 */
export function isMainInitializer(tensor: Tensor): boolean {
  return mainInitializers.has(tensor);
}

/**
 * Reads the initializers of an ONNX model as tensors, in file order.
 *
 * @param source The `.onnx` file.
 * @param options How to open external-data files.
 * @returns One tensor per `GraphProto.initializer`.
 * @throws {ModelFormatError} When the file is malformed or uses something refused.
 */
export async function readOnnx(
  source: ByteSource,
  options: OnnxReadOptions = {},
): Promise<Tensor[]> {
  const cur = new ProtoCursor(source, "onnx");
  const { initializers: records } = await walkModel(cur);
  const externals = new Map<string, ByteSource>();
  const names = new Set<string>();
  const tensors: Tensor[] = [];
  for (const rec of records) {
    const tensor = await toTensor(cur, rec, options, externals);
    if (names.has(tensor.name)) {
      cur.fail(
        "bad-protobuf",
        `Cannot read initializer "${tensor.name}": the name is used twice`,
        rec.start,
      );
    }
    names.add(tensor.name);
    mainInitializers.add(tensor);
    tensors.push(tensor);
  }
  return tensors;
}

/** Walks one TensorProto from `cur.pos` to `end`. */
async function walkTensor(
  cur: ProtoCursor,
  end: number,
): Promise<TensorRecord> {
  const rec: TensorRecord = {
    start: cur.pos,
    end,
    dims: [],
    external: new Map(),
    hasStrings: false,
    hasSegment: false,
  };
  const once = (have: unknown, what: string, at: number) => {
    if (have !== undefined) {
      cur.fail("bad-protobuf", `Cannot read tensor: ${what} appears twice`, at);
    }
  };
  while (cur.pos < end) {
    const tag = await cur.tag(end);
    const { field, wire } = tag;
    const wrongWire = (what: string): never =>
      cur.fail(
        "bad-protobuf",
        `Cannot read tensor ${what}: unexpected wire type ${wire}`,
        tag.start,
      );
    const typed = TYPED_FIELDS[field];
    if (field === 1) {
      if (wire === WIRE_LEN) {
        const stop = await cur.len(end, "dims");
        while (cur.pos < stop) rec.dims.push(await cur.uint64(stop, "dims"));
      } else if (wire === WIRE_VARINT) {
        rec.dims.push(await cur.uint64(end, "dims"));
      } else wrongWire("dims");
      if (rec.dims.length > MAX_RANK) {
        cur.fail(
          "bad-protobuf",
          `Cannot read tensor: it has more than ${MAX_RANK} dims`,
          tag.start,
        );
      }
    } else if (field === 2) {
      if (wire !== WIRE_VARINT) wrongWire("data_type");
      once(rec.dataType, "data_type", tag.start);
      rec.dataType = Number(
        BigInt.asIntN(32, await cur.uint64(end, "data_type")),
      );
    } else if (field === 3) {
      rec.hasSegment = true;
      await cur.skip(wire, end, "segment");
    } else if (field === 6) {
      rec.hasStrings = true;
      await cur.skip(wire, end, "string_data");
    } else if (field === 8) {
      if (wire !== WIRE_LEN) wrongWire("name");
      once(rec.name, "name", tag.start);
      rec.name = await cur.string(end, "tensor name");
    } else if (field === 9) {
      if (wire !== WIRE_LEN) wrongWire("raw_data");
      once(rec.raw, "raw_data", tag.start);
      const stop = await cur.len(end, "raw_data");
      rec.raw = { tag: tag.start, offset: cur.pos, length: stop - cur.pos };
      cur.pos = stop;
    } else if (field === 13) {
      if (wire !== WIRE_LEN) wrongWire("external_data");
      const [key, value] = await readEntry(
        cur,
        await cur.len(end, "external_data"),
        "external_data",
      );
      if (rec.external.has(key)) {
        cur.fail(
          "bad-external-data",
          `Cannot read external_data: the key "${key}" appears twice`,
          tag.start,
        );
      }
      rec.external.set(key, value ?? "");
    } else if (field === 14) {
      if (wire !== WIRE_VARINT) wrongWire("data_location");
      once(rec.dataLocation, "data_location", tag.start);
      rec.dataLocation = Number(
        BigInt.asIntN(32, await cur.uint64(end, "data_location")),
      );
    } else if (typed !== undefined) {
      let count: number;
      if (wire === WIRE_LEN) {
        const stop = await cur.len(end, typed.name);
        count = typed.width > 0
          ? (stop - cur.pos) / typed.width
          : await cur.countVarints(cur.pos, stop, typed.name);
        if (!Number.isInteger(count)) {
          cur.fail(
            "bad-protobuf",
            `Cannot read ${typed.name}: ${
              stop - cur.pos
            } bytes is not a multiple of ${typed.width}`,
          );
        }
        cur.pos = stop;
      } else if (wire === typed.wire) {
        await cur.skip(wire, end, typed.name);
        count = 1;
      } else {
        return wrongWire(typed.name);
      }
      if (count === 0) continue;
      if (rec.typed === undefined) {
        rec.typed = { field, start: tag.start, end: cur.pos, count };
      } else if (rec.typed.field !== field) {
        cur.fail(
          "bad-protobuf",
          `Cannot read tensor: it holds values in both ${
            TYPED_FIELDS[rec.typed.field]!.name
          } and ${typed.name}`,
          tag.start,
        );
      } else {
        rec.typed.end = cur.pos;
        rec.typed.count += count;
      }
    } else {
      await cur.skip(wire, end, `TensorProto field ${field}`);
    }
  }
  return rec;
}

/** Reads a StringStringEntryProto (key 1, value 2) ending at `end`. */
async function readEntry(
  cur: ProtoCursor,
  end: number,
  what: string,
  maxValue = Infinity,
): Promise<[string, string | undefined]> {
  let key = "";
  let value: string | undefined = "";
  while (cur.pos < end) {
    const tag = await cur.tag(end);
    if (tag.field === 2 && tag.wire === WIRE_LEN && maxValue !== Infinity) {
      // Measure before reading: a value over the bound is skipped, not held.
      const start = cur.pos;
      const stop = await cur.len(end, `${what} value`);
      if (stop - cur.pos > maxValue) {
        cur.pos = stop;
        value = undefined;
        continue;
      }
      cur.pos = start;
    }
    if ((tag.field === 1 || tag.field === 2) && tag.wire === WIRE_LEN) {
      const s = await cur.string(
        end,
        `${what} ${tag.field === 1 ? "key" : "value"}`,
      );
      if (tag.field === 1) key = s;
      else value = s;
    } else {
      await cur.skip(tag.wire, end, `${what} field ${tag.field}`);
    }
  }
  return [key, value];
}

/** Turns a walked TensorProto into a Tensor, validating everything it claims. */
async function toTensor(
  cur: ProtoCursor,
  rec: TensorRecord,
  options: OnnxReadOptions,
  externals: Map<string, ByteSource>,
): Promise<Tensor> {
  const source = cur.source;
  const fail = (
    code: Parameters<ProtoCursor["fail"]>[0],
    message: string,
  ): never => cur.fail(code, message, rec.start);
  const name = rec.name ?? "";
  if (name === "") {
    fail("bad-protobuf", "Cannot read initializer: it has no name");
  }
  const label = `initializer "${name}"`;
  const code = rec.dataType ?? 0;
  const dtype = ONNX_DTYPES[code];
  if (dtype === undefined || rec.hasStrings) {
    const typeName = ONNX_TYPE_NAMES[code] ?? `data type ${code}`;
    return fail(
      "unsupported-dtype",
      `Cannot read ${label}: ${rec.hasStrings ? "string tensors" : typeName} are not supported`,
    );
  }
  if (rec.hasSegment) {
    fail(
      "unsupported-dtype",
      `Cannot read ${label}: segmented tensors are not supported`,
    );
  }
  const size = DTYPE_SIZES[dtype];
  const shape: number[] = [];
  let bigCount = 1n;
  for (const d of rec.dims) {
    const v = BigInt.asIntN(64, d);
    if (v < 0n) {
      fail("bad-protobuf", `Cannot read ${label}: dimension ${v} is negative`);
    }
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) {
      fail("too-large", `Cannot read ${label}: dimension ${v} is too large`);
    }
    shape.push(Number(v));
    bigCount *= v;
  }
  if (bigCount * BigInt(size) > BigInt(Number.MAX_SAFE_INTEGER)) {
    fail(
      "too-large",
      `Cannot read ${label}: shape [${shape.join(", ")}] is too large`,
    );
  }
  const count = Number(bigCount);
  const byteLength = count * size;
  const info = { name, dtype, shape, byteLength };

  const isExternal = rec.dataLocation === 1;
  if (rec.dataLocation !== undefined && rec.dataLocation !== 0 && !isExternal) {
    fail(
      "bad-protobuf",
      `Cannot read ${label}: unknown data_location ${rec.dataLocation}`,
    );
  }
  if (!isExternal && rec.external.size > 0) {
    fail(
      "bad-external-data",
      `Cannot read ${label}: it has external_data but data_location is not EXTERNAL`,
    );
  }
  const holders = [
    rec.raw && "raw_data",
    rec.typed && TYPED_FIELDS[rec.typed.field]!.name,
    isExternal && "external data",
  ]
    .filter((x): x is string => typeof x === "string");
  if (holders.length > 1) {
    fail(
      "bad-protobuf",
      `Cannot read ${label}: its data is in both ${holders.join(" and ")}`,
    );
  }

  if (isExternal) {
    const ext = await openExternalData(
      cur,
      rec,
      label,
      byteLength,
      options,
      externals,
    );
    return {
      ...info,
      chunks: () => rangeChunks(ext.source, ext.offset, byteLength),
    };
  }
  if (rec.raw !== undefined) {
    if (rec.raw.length !== byteLength) {
      fail(
        "bad-protobuf",
        `Cannot read ${label}: raw_data is ${rec.raw.length} bytes but ${dtype} [${
          shape.join(", ")
        }] needs ${byteLength}`,
      );
    }
    const offset = rec.raw.offset;
    return { ...info, chunks: () => rangeChunks(source, offset, byteLength) };
  }
  if (rec.typed !== undefined) {
    const typed = rec.typed;
    const want = typedFieldFor(dtype);
    const fieldName = TYPED_FIELDS[typed.field]!.name;
    if (typed.field !== want) {
      fail(
        "bad-protobuf",
        `Cannot read ${label}: ${dtype} values belong in ${
          TYPED_FIELDS[want]!.name
        }, found ${fieldName}`,
      );
    }
    const perElement = dtype === "C64" || dtype === "C128" ? 2 : 1;
    if (typed.count !== count * perElement) {
      fail(
        "bad-protobuf",
        `Cannot read ${label}: ${fieldName} holds ${typed.count} values but shape [${
          shape.join(", ")
        }] needs ${count * perElement}`,
      );
    }
    const end = rec.end;
    return {
      ...info,
      chunks: () => typedChunks(cur, typed, end, dtype, byteLength, label),
    };
  }
  if (byteLength > 0) {
    fail(
      "bad-protobuf",
      `Cannot read ${label}: it holds no data for ${count} elements`,
    );
  }
  return { ...info, chunks: () => rangeChunks(source, 0, 0) };
}

/** Checks a tensor's external_data entries and opens (or reuses) its file. */
async function openExternalData(
  cur: ProtoCursor,
  rec: TensorRecord,
  label: string,
  byteLength: number,
  options: OnnxReadOptions,
  externals: Map<string, ByteSource>,
): Promise<{ source: ByteSource; offset: number }> {
  const fail = (message: string): never => cur.fail("bad-external-data", message, rec.start);
  const raw = rec.external.get("location");
  if (raw === undefined) {
    fail(`Cannot read ${label}: its external_data has no location`);
  }
  const [location, why] = checkLocation(raw!);
  if (why !== undefined) {
    fail(
      `Cannot read ${label}: its external data location ${JSON.stringify(raw)} is refused (${why})`,
    );
  }
  const number = (key: string, dflt: number | undefined): number => {
    const text = rec.external.get(key);
    if (text === undefined) {
      if (dflt === undefined) {
        fail(`Cannot read ${label}: its external_data has no ${key}`);
      }
      return dflt!;
    }
    const v = /^[0-9]{1,16}$/.test(text) ? Number(text) : NaN;
    if (!Number.isSafeInteger(v)) {
      fail(
        `Cannot read ${label}: external_data ${key} ${JSON.stringify(text)} is not a byte count`,
      );
    }
    return v;
  };
  const offset = number("offset", 0);
  const length = number("length", byteLength);
  if (length !== byteLength) {
    fail(
      `Cannot read ${label}: external_data length is ${length} bytes but the tensor needs ${byteLength}`,
    );
  }
  if (options.openExternal === undefined) {
    fail(
      `Cannot read ${label}: it is stored in external file "${location}" and no way to open it was given`,
    );
  }
  let source = externals.get(location);
  if (source === undefined) {
    source = await options.openExternal!(location);
    externals.set(location, source);
  }
  if (offset + length > source.size) {
    fail(
      `Cannot read ${label}: it needs ${length} bytes at offset ${offset} of "${location}", which is ${source.size} bytes long`,
    );
  }
  return { source, offset };
}

/**
 * Validates an external-data `location` and returns it normalized (`.` and
 * empty segments dropped). Refuses absolute paths, `..` segments, backslashes,
 * drive letters, NUL and empty locations.
 *
 * @param location The `location` value of a tensor's external_data.
 * @returns The normalized relative path, with `/` separators.
 * @throws {ModelFormatError} With code "bad-external-data".
 */
export function resolveExternalLocation(location: string): string {
  const [path, why] = checkLocation(location);
  if (why !== undefined) {
    throw new ModelFormatError(
      "bad-external-data",
      `Cannot use external data location ${JSON.stringify(location)}: ${why}`,
      { format: "onnx" },
    );
  }
  return path;
}

/** The normalized location, or why it is refused. */
function checkLocation(location: string): [string, string | undefined] {
  if (location.includes("\0")) return ["", "it contains a NUL character"];
  if (location.includes("\\")) return ["", "it contains a backslash"];
  if (location.startsWith("/")) return ["", "it is an absolute path"];
  if (/^[A-Za-z]:/.test(location)) return ["", "it starts with a drive letter"];
  const parts = location.split("/").filter((p) => p !== "" && p !== ".");
  if (parts.includes("..")) return ["", "it has a `..` segment"];
  if (parts.length === 0) return ["", "it names no file"];
  return [parts.join("/"), undefined];
}

/**
 * Decodes a typed field into the dtype's little-endian bytes, window by
 * window, re-walking the TensorProto between the field's first and last tag.
 */
async function* typedChunks(
  walker: ProtoCursor,
  typed: { field: number; start: number; end: number },
  msgEnd: number,
  dtype: DType,
  byteLength: number,
  label: string,
): AsyncGenerator<Uint8Array> {
  const { name: fieldName, width } = TYPED_FIELDS[typed.field]!;
  const cur = new ProtoCursor(walker.source, "onnx", typed.start);
  // Bytes written per value: complex types hold two values per element.
  const valueSize = dtype === "C64" || dtype === "C128"
    ? DTYPE_SIZES[dtype] / 2
    : DTYPE_SIZES[dtype];
  const isBool = dtype === "BOOL";
  let out = new Uint8Array(Math.min(CHUNK, byteLength));
  let view = new DataView(out.buffer);
  let o = 0;
  let written = 0;
  const ready: Uint8Array[] = [];
  const tooMany = (at: number): never =>
    cur.fail(
      "bad-protobuf",
      `Cannot read ${label}: ${fieldName} holds more values than its shape needs`,
      at,
    );
  const v: Varint = { lo: 0, hi: 0 };
  // Writes one value; varints are truncated to the element size like ONNX
  // Runtime's static_cast, and BOOL is 1 for any non-zero int32.
  const put = (buf: Uint8Array, i: number) => {
    if (written + valueSize > byteLength) tooMany(cur.pos);
    if (width > 0) out.set(buf.subarray(i, i + width), o);
    else if (valueSize === 8) {
      view.setUint32(o, v.lo, true);
      view.setUint32(o + 4, v.hi, true);
    } else if (valueSize === 4) view.setUint32(o, v.lo, true);
    else if (valueSize === 2) view.setUint16(o, v.lo & 0xffff, true);
    else out[o] = isBool ? (v.lo !== 0 ? 1 : 0) : v.lo & 0xff;
    o += valueSize;
    written += valueSize;
    if (o === out.byteLength) {
      ready.push(out);
      out = new Uint8Array(Math.min(CHUNK, byteLength - written));
      view = new DataView(out.buffer);
      o = 0;
    }
  };
  while (cur.pos < typed.end) {
    const tag = await cur.tag(msgEnd);
    if (tag.field !== typed.field) {
      await cur.skip(tag.wire, msgEnd, `TensorProto field ${tag.field}`);
      continue;
    }
    let start = cur.pos;
    let stop: number;
    if (tag.wire === WIRE_LEN) {
      stop = await cur.len(msgEnd, fieldName);
      start = cur.pos;
    } else {
      await cur.skip(tag.wire, msgEnd, fieldName);
      stop = cur.pos;
    }
    cur.pos = stop;
    let at = start;
    for await (const w of cur.values(start, stop, width, fieldName)) {
      for (let i = 0; i < w.byteLength;) {
        if (width > 0) {
          put(w, i);
          i += width;
        } else {
          const next = decodeVarint(w, i, w.byteLength, v);
          if (next < 0) {
            cur.fail(
              "bad-protobuf",
              `Cannot read ${label}: a ${fieldName} varint is malformed`,
              at + i,
            );
          }
          put(w, i);
          i = next;
        }
      }
      at += w.byteLength;
      yield* ready.splice(0);
    }
  }
  if (written !== byteLength) {
    cur.fail(
      "bad-protobuf",
      `Cannot read ${label}: ${fieldName} holds ${written} of ${byteLength} bytes`,
    );
  }
}

/**
 * Reads `ModelProto.metadata_props` (field 14), with the byte range of each
 * entry's field in the file (from its tag to its end), for signing code.
 * With `key`, only the entries with that key keep their value; with
 * `maxValue`, a longer value is not read (its `value` is `undefined`), so
 * evidence bounds hold before anything is held in memory.
 *
 * @param source The `.onnx` file.
 * @param options Which key's values to keep, and the longest value to read.
 * @returns The entries in file order.
 * @throws {ModelFormatError} When the top-level message is malformed.
 */
export async function readOnnxMetadataProps(
  source: ByteSource,
  options: { key?: string; maxValue?: number } = {},
): Promise<{ key: string; value: string | undefined; offset: number; length: number }[]> {
  const cur = new ProtoCursor(source, "onnx");
  const out: { key: string; value: string | undefined; offset: number; length: number }[] = [];
  while (cur.pos < source.size) {
    const tag = await cur.tag(source.size);
    if (tag.field === 14 && tag.wire === WIRE_LEN) {
      const end = await cur.len(source.size, "metadata_props");
      const [key, value] = await readEntry(cur, end, "metadata_props", options.maxValue);
      if (options.key === undefined || key === options.key) {
        out.push({ key, value, offset: tag.start, length: end - tag.start });
      }
    } else {
      await cur.skip(tag.wire, source.size, `ModelProto field ${tag.field}`);
    }
  }
  return out;
}
