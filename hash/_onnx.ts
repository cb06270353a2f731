// ONNX reader: walks ModelProto → graph (and every subgraph) with the
// streaming protobuf cursor and exposes every tensor a loader reads as a
// Tensor: initializers, `Constant` node values, tensor attributes of other
// nodes and sparse tensors (in a canonical sparse form), each under a name
// from the scheme in the README ("The safemodels-v1 hash"). Tensor bytes come
// from `raw_data` (streamed from the file), from external data files
// (streamed), or from typed repeated fields such as `float_data` or a
// Constant's `value_floats` (decoded window by window while streaming).
// Listing reads tags, lengths and the few small fields only; `raw_data` is
// skipped without being read (sparse indices are read once, to check them).
//
// Refused rather than ignored or guessed, so that no weight is silently left
// out of a hash and no two loaders could read different weights from a file
// that gets a hash: see "What the ONNX reader refuses and why" in the README.
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
/**
 * Subgraphs (If, Loop, Scan bodies) nested deeper than this are refused:
 * onnxruntime's protobuf parser already stops at about 33 levels, and the
 * walk recurses once per level.
 */
const MAX_DEPTH = 64;
/**
 * Tensors one model may hold, all kinds together (a sparse tensor counts
 * three): bounds the memory of the listing for files of tiny tensors.
 */
const MAX_TENSORS = 1 << 18;
/**
 * Characters of tensor names beyond the file's own size: subgraph and
 * attribute names repeat their node's output name, so a hostile file could
 * otherwise make names far longer than itself.
 */
const MAX_EXTRA_NAME_CHARS = 1 << 24;
/**
 * The tensors stored in one external-data file may read at most this many
 * times its size (at least {@linkcode EXTERNAL_MIN_READ} bytes): a range
 * shared by a few tensors is fine, a range repeated thousands of times would
 * make hashing cost far more than the data.
 */
const EXTERNAL_READS_PER_BYTE = 16;
const EXTERNAL_MIN_READ = 1 << 10;

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

/** A repeated numeric field: its name, element width (0 = varint) and unpacked wire type. */
interface FieldSpec {
  name: string;
  width: number;
  wire: number;
}

/** TensorProto fields holding typed values, with their element encoding. */
const TYPED_FIELDS: Readonly<Record<number, FieldSpec>> = {
  4: { name: "float_data", width: 4, wire: WIRE_I32 },
  5: { name: "int32_data", width: 0, wire: WIRE_VARINT },
  7: { name: "int64_data", width: 0, wire: WIRE_VARINT },
  10: { name: "double_data", width: 8, wire: WIRE_I64 },
  11: { name: "uint64_data", width: 0, wire: WIRE_VARINT },
};

/** AttributeProto value fields that a Constant turns into a tensor. */
const ATTR_NUMBERS: Readonly<Record<number, FieldSpec>> = {
  2: { name: "f", width: 4, wire: WIRE_I32 },
  3: { name: "i", width: 0, wire: WIRE_VARINT },
  7: { name: "floats", width: 4, wire: WIRE_I32 },
  8: { name: "ints", width: 0, wire: WIRE_VARINT },
};

/** AttributeProto.AttributeType values. */
const ATTR = {
  FLOAT: 1,
  INT: 2,
  STRING: 3,
  TENSOR: 4,
  GRAPH: 5,
  FLOATS: 6,
  INTS: 7,
  STRINGS: 8,
  TENSORS: 9,
  GRAPHS: 10,
  SPARSE_TENSOR: 11,
  SPARSE_TENSORS: 12,
  TYPE_PROTO: 13,
  TYPE_PROTOS: 14,
} as const;

/** AttributeType names, for messages. */
const ATTR_TYPE_NAMES: Readonly<Record<number, string>> = Object.fromEntries(
  Object.entries(ATTR).map(([k, v]) => [v, k]),
);

/** AttributeProto value fields by field number: the type each one belongs to. */
const ATTR_VALUE_FIELDS: Readonly<Record<number, { name: string; type: number }>> = {
  2: { name: "f", type: ATTR.FLOAT },
  3: { name: "i", type: ATTR.INT },
  4: { name: "s", type: ATTR.STRING },
  5: { name: "t", type: ATTR.TENSOR },
  6: { name: "g", type: ATTR.GRAPH },
  7: { name: "floats", type: ATTR.FLOATS },
  8: { name: "ints", type: ATTR.INTS },
  9: { name: "strings", type: ATTR.STRINGS },
  10: { name: "tensors", type: ATTR.TENSORS },
  11: { name: "graphs", type: ATTR.GRAPHS },
  14: { name: "tp", type: ATTR.TYPE_PROTO },
  15: { name: "type_protos", type: ATTR.TYPE_PROTOS },
  22: { name: "sparse_tensor", type: ATTR.SPARSE_TENSOR },
  23: { name: "sparse_tensors", type: ATTR.SPARSE_TENSORS },
};

/** Value fields that hold tensors or graphs: an attribute with one is hashed or walked. */
const TENSOR_OR_GRAPH_FIELDS = new Set([5, 6, 10, 11, 22, 23]);

/** What a `Constant` node's attribute must be, by name. */
const CONSTANT_VALUES: Readonly<
  Record<string, { type: number; field: number; repeated: boolean }>
> = {
  value: { type: ATTR.TENSOR, field: 5, repeated: false },
  value_float: { type: ATTR.FLOAT, field: 2, repeated: false },
  value_floats: { type: ATTR.FLOATS, field: 7, repeated: true },
  value_int: { type: ATTR.INT, field: 3, repeated: false },
  value_ints: { type: ATTR.INTS, field: 8, repeated: true },
  value_string: { type: ATTR.STRING, field: 4, repeated: false },
  value_strings: { type: ATTR.STRINGS, field: 9, repeated: true },
  sparse_value: { type: ATTR.SPARSE_TENSOR, field: 22, repeated: false },
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
  /** Every `GraphProto.initializer` of the main graph, in file order. */
  initializers: TensorRecord[];
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

/** A repeated (or single) numeric field of a message: first tag to last value. */
interface FieldRange {
  field: number;
  start: number;
  end: number;
  count: number;
}

/** What the walk learned about one SparseTensorProto. */
interface SparseRecord {
  start: number;
  values?: TensorRecord;
  indices?: TensorRecord;
  dims: bigint[];
}

/** What the walk learned about one AttributeProto. */
interface AttributeRecord {
  start: number;
  end: number;
  name?: string;
  type?: number;
  /** Field numbers of the value fields present (see ATTR_VALUE_FIELDS). */
  present: Set<number>;
  t?: TensorRecord;
  tensors: TensorRecord[];
  sparse?: SparseRecord;
  sparses: SparseRecord[];
  graphs: { start: number; end: number }[];
  /** `f`, `i`, `floats` or `ints`, by field number. */
  numbers: Map<number, FieldRange>;
}

/** One tensor the graph holds, found by the walk and named by the scheme. */
type Found =
  | { $case: "tensor"; name: string; label: string; rec: TensorRecord; main: boolean }
  | {
    $case: "numbers";
    name: string;
    label: string;
    dtype: "F32" | "I64";
    shape: number[];
    spec: FieldSpec;
    range: FieldRange | undefined;
    msgEnd: number;
  }
  | { $case: "sparse"; name: string; label: string; rec: SparseRecord };

/** Where names come from, and what is refused, in the graph being walked. */
interface Scope {
  /** Prepended to every name in this graph (`""` in the main graph). */
  prefix: string;
  /** Subgraph nesting level (0 for the main graph). */
  depth: number;
  /** Set inside a model-local function: a tensor found there is refused. */
  refuse?: string;
}

/**
 * Walks a model once: the main graph's layout (for the guard's private
 * copies) and every tensor a loader reads, named by the scheme.
 */
class ModelWalk {
  readonly cur: ProtoCursor;
  readonly found: Found[] = [];
  readonly initializers: TensorRecord[] = [];
  graph: OnnxLayout["graph"] | undefined;
  #nameChars = 0;

  constructor(cur: ProtoCursor) {
    this.cur = cur;
  }

  fail(
    code: Parameters<ProtoCursor["fail"]>[0],
    message: string,
    at?: number,
  ): never {
    return this.cur.fail(code, message, at);
  }

  async model(): Promise<void> {
    const { cur } = this;
    const size = cur.source.size;
    while (cur.pos < size) {
      const tag = await cur.tag(size);
      if (tag.field === 7) {
        if (tag.wire !== WIRE_LEN || this.graph) {
          this.fail(
            "bad-protobuf",
            this.graph
              ? "Cannot read graph: the model has two graphs"
              : `Cannot read graph: wire type ${tag.wire}`,
            tag.start,
          );
        }
        const end = await cur.len(size, "graph");
        this.graph = { tag: tag.start, start: cur.pos, end };
        await this.#graph(end, { prefix: "", depth: 0 });
      } else if (tag.field === 20) {
        this.fail(
          "unsupported-dtype",
          "Cannot read training_info: training graphs hold tensors that onnxruntime does not read for inference and training runtimes do; they are not supported",
          tag.start,
        );
      } else if (tag.field === 25 && tag.wire === WIRE_LEN) {
        await this.#function(await cur.len(size, "function"));
      } else {
        await cur.skip(tag.wire, size, `ModelProto field ${tag.field}`);
      }
    }
    if (!this.graph) {
      this.fail("bad-protobuf", "Cannot read ONNX model: it has no graph", 0);
    }
  }

  /** Records a found tensor, within the bounds on count and name length. */
  #add(found: Found, scope: Scope, at: number): void {
    if (scope.refuse !== undefined) {
      this.fail(
        "unsupported-dtype",
        `Cannot read ${scope.refuse}: tensors in model-local functions (${found.label}) are not supported`,
        at,
      );
    }
    if (this.found.length >= MAX_TENSORS) {
      this.fail("too-large", `Cannot read model: it holds more than ${MAX_TENSORS} tensors`, at);
    }
    this.#nameChars += found.name.length;
    if (this.#nameChars > this.cur.source.size + MAX_EXTRA_NAME_CHARS) {
      this.fail(
        "too-large",
        `Cannot read model: its tensor names are more than ${MAX_EXTRA_NAME_CHARS} characters longer than the file`,
        at,
      );
    }
    this.found.push(found);
  }

  /** Walks a GraphProto from `cur.pos` to `end`. */
  async #graph(end: number, scope: Scope): Promise<void> {
    const { cur } = this;
    if (scope.depth > MAX_DEPTH) {
      this.fail("too-large", `Cannot read graph: subgraphs are nested more than ${MAX_DEPTH} deep`);
    }
    while (cur.pos < end) {
      const t = await cur.tag(end);
      if (t.field !== 1 && t.field !== 5 && t.field !== 15) {
        await cur.skip(t.wire, end, `GraphProto field ${t.field}`);
        continue;
      }
      const what = t.field === 1 ? "node" : t.field === 5 ? "initializer" : "sparse initializer";
      if (t.wire !== WIRE_LEN) {
        this.fail("bad-protobuf", `Cannot read ${what}: wire type ${t.wire}`, t.start);
      }
      const stop = await cur.len(end, what);
      if (t.field === 1) {
        await this.#node(stop, scope);
      } else if (t.field === 5) {
        const rec = await walkTensor(cur, stop);
        if (!rec.name) {
          this.fail("bad-protobuf", "Cannot read initializer: it has no name", t.start);
        }
        const name = scope.prefix + rec.name;
        if (scope.depth === 0) {
          rec.tag = t.start;
          this.initializers.push(rec);
        }
        this.#add(
          {
            $case: "tensor",
            name,
            label: `initializer "${name}"`,
            rec,
            main: scope.depth === 0 && scope.refuse === undefined,
          },
          scope,
          t.start,
        );
      } else {
        const rec = await walkSparse(cur, stop);
        const base = rec.values?.name;
        if (!base) {
          this.fail(
            "bad-protobuf",
            "Cannot read sparse initializer: its values have no name",
            t.start,
          );
        }
        const name = scope.prefix + base;
        this.#add(
          { $case: "sparse", name, label: `sparse initializer "${name}"`, rec },
          scope,
          t.start,
        );
      }
    }
  }

  /** Walks a NodeProto from `cur.pos` to `end`, then its subgraphs. */
  async #node(end: number, scope: Scope): Promise<void> {
    const { cur } = this;
    const start = cur.pos;
    const outputs: string[] = [];
    const attrs: AttributeRecord[] = [];
    let opType: string | undefined;
    let domain: string | undefined;
    while (cur.pos < end) {
      const tag = await cur.tag(end);
      if (tag.field === 2 || tag.field === 4 || tag.field === 7) {
        const what = tag.field === 2 ? "node output" : tag.field === 4 ? "op_type" : "domain";
        if (tag.wire !== WIRE_LEN) {
          this.fail("bad-protobuf", `Cannot read ${what}: wire type ${tag.wire}`, tag.start);
        }
        const s = await cur.string(end, what);
        if (tag.field === 2) outputs.push(s);
        else if ((tag.field === 4 ? opType : domain) !== undefined) {
          this.fail("bad-protobuf", `Cannot read node: ${what} appears twice`, tag.start);
        } else if (tag.field === 4) opType = s;
        else domain = s;
      } else if (tag.field === 5) {
        if (tag.wire !== WIRE_LEN) {
          this.fail("bad-protobuf", `Cannot read attribute: wire type ${tag.wire}`, tag.start);
        }
        attrs.push(await walkAttribute(cur, await cur.len(end, "attribute")));
      } else {
        await cur.skip(tag.wire, end, `NodeProto field ${tag.field}`);
      }
    }
    const op = opType ?? "";
    if (op === "Constant" && (domain === undefined || domain === "" || domain === "ai.onnx")) {
      this.#constant(outputs, attrs, scope, start);
      return;
    }
    const key = outputs.find((o) => o !== "");
    const subgraphs: { prefix: string; start: number; end: number }[] = [];
    for (const a of attrs) {
      const kinds = [...a.present].filter((f) => TENSOR_OR_GRAPH_FIELDS.has(f));
      if (kinds.length === 0) continue;
      const attrName = a.name ?? "";
      const label = `attribute "${attrName}" of ${op || "a"} node${key ? ` "${key}"` : ""}`;
      checkOnlyField(this.cur, a, kinds[0]!, label);
      if (attrName === "") {
        this.fail("bad-protobuf", `Cannot read ${label}: it has no name`, a.start);
      }
      if (key === undefined) {
        this.fail(
          "bad-protobuf",
          `Cannot read ${label}: the node has no output to name its tensors or graphs by`,
          a.start,
        );
      }
      const base = `${scope.prefix}${key}:${attrName}`;
      switch (kinds[0]) {
        case 5:
          this.#add(
            {
              $case: "tensor",
              name: base,
              label: `attribute tensor "${base}"`,
              rec: a.t!,
              main: false,
            },
            scope,
            a.start,
          );
          break;
        case 10:
          a.tensors.forEach((rec, i) => {
            const name = `${base}.${i}`;
            this.#add(
              { $case: "tensor", name, label: `attribute tensor "${name}"`, rec, main: false },
              scope,
              a.start,
            );
          });
          break;
        case 22:
          this.#add(
            { $case: "sparse", name: base, label: `sparse attribute "${base}"`, rec: a.sparse! },
            scope,
            a.start,
          );
          break;
        case 23:
          a.sparses.forEach((rec, i) => {
            const name = `${base}.${i}`;
            this.#add(
              { $case: "sparse", name, label: `sparse attribute "${name}"`, rec },
              scope,
              a.start,
            );
          });
          break;
        case 6:
          subgraphs.push({ prefix: `${base}/`, ...a.graphs[0]! });
          break;
        default:
          a.graphs.forEach((g, i) => subgraphs.push({ prefix: `${base}.${i}/`, ...g }));
      }
    }
    for (const g of subgraphs) {
      cur.pos = g.start;
      await this.#graph(g.end, { ...scope, prefix: g.prefix, depth: scope.depth + 1 });
    }
    cur.pos = end;
  }

  /** A `Constant` node: one output, one value attribute, named by the output. */
  #constant(
    outputs: string[],
    attrs: AttributeRecord[],
    scope: Scope,
    at: number,
  ): void {
    const out = outputs[0] ?? "";
    if (outputs.length !== 1 || out === "") {
      this.fail(
        "bad-protobuf",
        `Cannot read Constant node: it has ${outputs.length} outputs${
          out === "" && outputs.length === 1 ? " (unnamed)" : ""
        }, expected one named output`,
        at,
      );
    }
    const name = scope.prefix + out;
    const label = `Constant "${name}"`;
    if (attrs.length !== 1) {
      this.fail(
        "bad-protobuf",
        `Cannot read ${label}: it has ${attrs.length} attributes, expected exactly one value (loaders pick different ones)`,
        at,
      );
    }
    const a = attrs[0]!;
    const want = CONSTANT_VALUES[a.name ?? ""];
    if (want === undefined) {
      this.fail(
        "bad-protobuf",
        `Cannot read ${label}: its attribute is ${
          JSON.stringify(a.name ?? "")
        }, not a Constant value`,
        a.start,
      );
    }
    checkOnlyField(this.cur, a, want.field, `attribute "${a.name}" of ${label}`, want.type);
    if (!want.repeated && !a.present.has(want.field)) {
      this.fail(
        "bad-protobuf",
        `Cannot read ${label}: its attribute "${a.name}" holds no value (onnxruntime would read a default)`,
        a.start,
      );
    }
    if (want.type === ATTR.STRING || want.type === ATTR.STRINGS) {
      this.fail(
        "unsupported-dtype",
        `Cannot read ${label}: string tensors are not supported`,
        a.start,
      );
    }
    if (want.type === ATTR.TENSOR) {
      this.#add({ $case: "tensor", name, label, rec: a.t!, main: false }, scope, a.start);
    } else if (want.type === ATTR.SPARSE_TENSOR) {
      this.#add({ $case: "sparse", name, label, rec: a.sparse! }, scope, a.start);
    } else {
      const range = a.numbers.get(want.field);
      const float = want.type === ATTR.FLOAT || want.type === ATTR.FLOATS;
      this.#add(
        {
          $case: "numbers",
          name,
          label,
          dtype: float ? "F32" : "I64",
          shape: want.repeated ? [range?.count ?? 0] : [],
          spec: ATTR_NUMBERS[want.field]!,
          range,
          msgEnd: a.end,
        },
        scope,
        a.start,
      );
    }
  }

  /** A FunctionProto: walked so that any tensor it holds is refused. */
  async #function(end: number): Promise<void> {
    const { cur } = this;
    const nodes: { start: number; end: number }[] = [];
    let name = "";
    while (cur.pos < end) {
      const tag = await cur.tag(end);
      if (tag.field === 1 && tag.wire === WIRE_LEN) {
        name = await cur.string(end, "function name");
      } else if ((tag.field === 7 || tag.field === 11) && tag.wire === WIRE_LEN) {
        const stop = await cur.len(end, "function node");
        if (tag.field === 7) {
          nodes.push({ start: cur.pos, end: stop });
          cur.pos = stop;
        } else {
          const a = await walkAttribute(cur, stop);
          if ([...a.present].some((f) => TENSOR_OR_GRAPH_FIELDS.has(f))) {
            this.fail(
              "unsupported-dtype",
              `Cannot read function "${name}": tensors in model-local functions (the default of attribute "${
                a.name ?? ""
              }") are not supported`,
              tag.start,
            );
          }
        }
      } else {
        await cur.skip(tag.wire, end, `FunctionProto field ${tag.field}`);
      }
    }
    const scope: Scope = { prefix: "", depth: 1, refuse: `function "${name}"` };
    for (const n of nodes) {
      cur.pos = n.start;
      await this.#node(n.end, scope);
    }
    cur.pos = end;
  }
}

/**
 * Checks that an attribute holds exactly one kind of value, `field`, and that
 * its `type` names that kind. Loaders disagree otherwise: onnxruntime reads a
 * Constant's value by its `type` (a tensor under type FLOAT reads as 0), and
 * the ONNX checker refuses such attributes on other nodes.
 */
function checkOnlyField(
  cur: ProtoCursor,
  a: AttributeRecord,
  field: number,
  label: string,
  type = ATTR_VALUE_FIELDS[field]!.type,
): void {
  const names = [...a.present].map((f) => ATTR_VALUE_FIELDS[f]!.name);
  if (a.present.size > 1 || (a.present.size === 1 && !a.present.has(field))) {
    cur.fail(
      "bad-protobuf",
      `Cannot read ${label}: it holds ${names.join(" and ")}, expected only ${
        ATTR_VALUE_FIELDS[field]!.name
      }`,
      a.start,
    );
  }
  if (a.type !== type) {
    const typeName = (t: number | undefined) =>
      t === undefined ? "missing" : ATTR_TYPE_NAMES[t] ?? String(t);
    cur.fail(
      "bad-protobuf",
      `Cannot read ${label}: its type is ${typeName(a.type)} but it holds ${
        ATTR_VALUE_FIELDS[field]!.name
      } (a ${typeName(type)})`,
      a.start,
    );
  }
}

/** Walks one AttributeProto from `cur.pos` to `end`. */
async function walkAttribute(
  cur: ProtoCursor,
  end: number,
): Promise<AttributeRecord> {
  const a: AttributeRecord = {
    start: cur.pos,
    end,
    present: new Set(),
    tensors: [],
    sparses: [],
    graphs: [],
    numbers: new Map(),
  };
  const twice = (what: string, at: number): never =>
    cur.fail("bad-protobuf", `Cannot read attribute: ${what} appears twice`, at);
  while (cur.pos < end) {
    const tag = await cur.tag(end);
    const { field, wire } = tag;
    const value = ATTR_VALUE_FIELDS[field];
    if (field === 1 || field === 20) {
      const what = field === 1 ? "name" : "type";
      if (wire !== (field === 1 ? WIRE_LEN : WIRE_VARINT)) {
        cur.fail("bad-protobuf", `Cannot read attribute ${what}: wire type ${wire}`, tag.start);
      }
      if ((field === 1 ? a.name : a.type) !== undefined) twice(what, tag.start);
      if (field === 1) a.name = await cur.string(end, "attribute name");
      else a.type = Number(BigInt.asIntN(32, await cur.uint64(end, "attribute type")));
      continue;
    }
    if (value === undefined) {
      await cur.skip(wire, end, `AttributeProto field ${field}`);
      continue;
    }
    const single = field === 2 || field === 3 || field === 4 || field === 5 || field === 6 ||
      field === 14 || field === 22;
    if (single && a.present.has(field)) twice(value.name, tag.start);
    const numbers = ATTR_NUMBERS[field];
    if (single && numbers !== undefined && wire !== numbers.wire) {
      // A packed singular field is an unknown field to protobuf parsers.
      cur.fail("bad-protobuf", `Cannot read attribute ${value.name}: wire type ${wire}`, tag.start);
    }
    if (numbers !== undefined) {
      const count = await countValues(cur, tag, numbers, end, "attribute");
      const prev = a.numbers.get(field);
      if (prev === undefined) {
        a.numbers.set(field, { field, start: tag.start, end: cur.pos, count });
      } else {
        prev.end = cur.pos;
        prev.count += count;
      }
      if (count > 0) a.present.add(field);
      continue;
    }
    if (wire !== WIRE_LEN) {
      cur.fail("bad-protobuf", `Cannot read attribute ${value.name}: wire type ${wire}`, tag.start);
    }
    const stop = await cur.len(end, `attribute ${value.name}`);
    a.present.add(field);
    if (field === 5 || field === 10) {
      const rec = await walkTensor(cur, stop);
      if (field === 5) a.t = rec;
      else a.tensors.push(rec);
    } else if (field === 22 || field === 23) {
      const rec = await walkSparse(cur, stop);
      if (field === 22) a.sparse = rec;
      else a.sparses.push(rec);
    } else if (field === 6 || field === 11) {
      a.graphs.push({ start: cur.pos, end: stop });
    }
    cur.pos = stop;
  }
  return a;
}

/** Walks one SparseTensorProto (values 1, indices 2, dims 3) from `cur.pos` to `end`. */
async function walkSparse(cur: ProtoCursor, end: number): Promise<SparseRecord> {
  const rec: SparseRecord = { start: cur.pos, dims: [] };
  while (cur.pos < end) {
    const tag = await cur.tag(end);
    if (tag.field === 1 || tag.field === 2) {
      const what = tag.field === 1 ? "values" : "indices";
      if (tag.wire !== WIRE_LEN) {
        cur.fail(
          "bad-protobuf",
          `Cannot read sparse tensor ${what}: wire type ${tag.wire}`,
          tag.start,
        );
      }
      if ((tag.field === 1 ? rec.values : rec.indices) !== undefined) {
        cur.fail("bad-protobuf", `Cannot read sparse tensor: ${what} appears twice`, tag.start);
      }
      const t = await walkTensor(cur, await cur.len(end, `sparse tensor ${what}`));
      if (tag.field === 1) rec.values = t;
      else rec.indices = t;
    } else if (tag.field === 3) {
      await readDims(cur, tag.wire, end, rec.dims, tag.start);
    } else {
      await cur.skip(tag.wire, end, `SparseTensorProto field ${tag.field}`);
    }
  }
  return rec;
}

/** Reads packed or unpacked `dims` into `dims`, refusing more than MAX_RANK. */
async function readDims(
  cur: ProtoCursor,
  wire: number,
  end: number,
  dims: bigint[],
  at: number,
): Promise<void> {
  if (wire === WIRE_LEN) {
    const stop = await cur.len(end, "dims");
    while (cur.pos < stop) {
      dims.push(await cur.uint64(stop, "dims"));
      if (dims.length > MAX_RANK) break;
    }
  } else if (wire === WIRE_VARINT) {
    dims.push(await cur.uint64(end, "dims"));
  } else {
    cur.fail("bad-protobuf", `Cannot read dims: unexpected wire type ${wire}`, at);
  }
  if (dims.length > MAX_RANK) {
    cur.fail("bad-protobuf", `Cannot read tensor: it has more than ${MAX_RANK} dims`, at);
  }
}

/**
 * Counts the values of one occurrence of a repeated numeric field (packed or
 * not) whose tag was just read, leaving `cur.pos` after it.
 */
async function countValues(
  cur: ProtoCursor,
  tag: { wire: number; start: number },
  spec: FieldSpec,
  end: number,
  what: string,
): Promise<number> {
  if (tag.wire === WIRE_LEN) {
    const stop = await cur.len(end, spec.name);
    const count = spec.width > 0
      ? (stop - cur.pos) / spec.width
      : await cur.countVarints(cur.pos, stop, spec.name);
    if (!Number.isInteger(count)) {
      cur.fail(
        "bad-protobuf",
        `Cannot read ${spec.name}: ${stop - cur.pos} bytes is not a multiple of ${spec.width}`,
      );
    }
    cur.pos = stop;
    return count;
  }
  if (tag.wire === spec.wire) {
    await cur.skip(tag.wire, end, spec.name);
    return 1;
  }
  return cur.fail(
    "bad-protobuf",
    `Cannot read ${what} ${spec.name}: unexpected wire type ${tag.wire}`,
    tag.start,
  );
}

/**
 * The layout of an ONNX file: where its graph is and, for each initializer of
 * the main graph, where its message, its `raw_data` and its external-data
 * entries are. Reads tags and small fields only (never tensor bytes); walks
 * the whole graph, so it refuses what {@linkcode readOnnx} refuses while
 * walking.
 *
 * @throws {ModelFormatError} When the file is malformed.
 */
export async function onnxLayout(source: ByteSource): Promise<OnnxLayout> {
  const walk = new ModelWalk(new ProtoCursor(source, "onnx"));
  await walk.model();
  return { graph: walk.graph!, initializers: walk.initializers };
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

/** Per-call state shared by the tensors of one {@linkcode readOnnx}. */
interface ReadContext {
  cur: ProtoCursor;
  options: OnnxReadOptions;
  externals: Map<string, ByteSource>;
  /** Bytes the tensors read so far from each external file. */
  externalReads: Map<string, number>;
}

/**
 * Reads every tensor of an ONNX model, in file order: main-graph
 * initializers, Constant node values, tensor attributes, subgraph
 * initializers and sparse tensors (as three tensors each), named by the
 * safemodels-v1 scheme.
 *
 * @param source The `.onnx` file.
 * @param options How to open external-data files.
 * @returns The tensors; {@linkcode isMainInitializer} tells initializers apart.
 * @throws {ModelFormatError} When the file is malformed or uses something refused.
 */
export async function readOnnx(
  source: ByteSource,
  options: OnnxReadOptions = {},
): Promise<Tensor[]> {
  const cur = new ProtoCursor(source, "onnx");
  const walk = new ModelWalk(cur);
  await walk.model();
  const ctx: ReadContext = {
    cur,
    options,
    externals: new Map(),
    externalReads: new Map(),
  };
  const names = new Map<string, string>();
  const tensors: Tensor[] = [];
  const add = (t: Tensor, label: string, at: number) => {
    const other = names.get(t.name);
    if (other !== undefined) {
      cur.fail(
        "bad-protobuf",
        `Cannot read ${label}: the name "${t.name}" is used twice, also by ${other} (loaders keep only one of them)`,
        at,
      );
    }
    names.set(t.name, label);
    tensors.push(t);
  };
  for (const f of walk.found) {
    if (f.$case === "tensor") {
      const t = await toTensor(ctx, f.rec, f.name, f.label);
      if (f.main) mainInitializers.add(t);
      add(t, f.label, f.rec.start);
    } else if (f.$case === "numbers") {
      add(numbersTensor(cur, f), f.label, f.range?.start ?? 0);
    } else {
      // The sparse tensor's own name is taken too: onnxruntime keeps the
      // sparse tensor of a name that a dense one also has, and drops the other.
      const other = names.get(f.name);
      if (other !== undefined) {
        cur.fail(
          "bad-protobuf",
          `Cannot read ${f.label}: the name "${f.name}" is used twice, also by ${other} (loaders keep only one of them)`,
          f.rec.start,
        );
      }
      names.set(f.name, f.label);
      for (const t of await sparseTensors(ctx, f.rec, f.name, f.label)) {
        add(t, f.label, f.rec.start);
      }
    }
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
      await readDims(cur, wire, end, rec.dims, tag.start);
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
      const count = await countValues(cur, tag, typed, end, "tensor");
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
  ctx: ReadContext,
  rec: TensorRecord,
  name: string,
  label: string,
): Promise<Tensor> {
  const { cur } = ctx;
  const source = cur.source;
  const fail = (
    code: Parameters<ProtoCursor["fail"]>[0],
    message: string,
  ): never => cur.fail(code, message, rec.start);
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
    const ext = await openExternalData(ctx, rec, label, byteLength);
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
    const spec = TYPED_FIELDS[typed.field]!;
    return {
      ...info,
      chunks: () => typedChunks(cur, spec, typed, end, dtype, byteLength, label),
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

/** A Constant's `value_float(s)` or `value_int(s)` as an F32 or I64 tensor. */
function numbersTensor(
  cur: ProtoCursor,
  f: Extract<Found, { $case: "numbers" }>,
): Tensor {
  const count = f.range?.count ?? 0;
  const byteLength = count * DTYPE_SIZES[f.dtype];
  const { range, spec, msgEnd, dtype, label } = f;
  return {
    name: f.name,
    dtype,
    shape: f.shape,
    byteLength,
    chunks: () =>
      range === undefined
        ? rangeChunks(cur.source, 0, 0)
        : typedChunks(cur, spec, range, msgEnd, dtype, byteLength, label),
  };
}

/**
 * A sparse tensor in its canonical form: `<name>:values` (as stored, 1-D),
 * `<name>:indices` (I64, one linear row-major index per value, strictly
 * increasing) and `<name>:shape` (I64, the dense dims). The indices are read
 * and checked here, once; hashing reads them again.
 */
async function sparseTensors(
  ctx: ReadContext,
  rec: SparseRecord,
  name: string,
  label: string,
): Promise<Tensor[]> {
  const { cur } = ctx;
  const fail = (code: Parameters<ProtoCursor["fail"]>[0], message: string): never =>
    cur.fail(code, `Cannot read ${label}: ${message}`, rec.start);
  if (rec.values === undefined || rec.indices === undefined) {
    return fail("bad-protobuf", `it has no ${rec.values ? "indices" : "values"}`);
  }
  const values = await toTensor(ctx, rec.values, `${name}:values`, `values of ${label}`);
  const indices = await toTensor(ctx, rec.indices, `${name}:indices`, `indices of ${label}`);
  if (values.shape.length !== 1) {
    fail(
      "bad-protobuf",
      `its values have shape [${values.shape.join(", ")}], expected one dimension`,
    );
  }
  const nnz = values.shape[0]!;
  const dims: number[] = [];
  let dense = 1n;
  for (const d of rec.dims) {
    const v = BigInt.asIntN(64, d);
    if (v < 0n) fail("bad-protobuf", `dimension ${v} is negative`);
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) fail("too-large", `dimension ${v} is too large`);
    dims.push(Number(v));
    dense *= v;
  }
  if (dense > BigInt(Number.MAX_SAFE_INTEGER)) {
    fail("too-large", `its dense shape [${dims.join(", ")}] has more than 2^53 elements`);
  }
  const rank = dims.length;
  const linear = indices.shape.length === 1 && indices.shape[0] === nnz;
  const coordinates = rank > 0 && indices.shape.length === 2 && indices.shape[0] === nnz &&
    indices.shape[1] === rank;
  if (indices.dtype !== "I64" || (!linear && !coordinates)) {
    fail(
      "bad-protobuf",
      `its indices are ${indices.dtype} [${
        indices.shape.join(", ")
      }], expected I64 [${nnz}] or [${nnz}, ${rank}]`,
    );
  }
  const canonical = () => linearIndices(cur, indices, linear ? [Number(dense)] : dims, label);
  for await (const _ of canonical()) { /* checked as it is read */ }
  const shape = new Uint8Array(rank * 8);
  const view = new DataView(shape.buffer);
  dims.forEach((d, i) => view.setBigInt64(i * 8, BigInt(d), true));
  return [
    values,
    {
      name: `${name}:indices`,
      dtype: "I64",
      shape: [nnz],
      byteLength: nnz * 8,
      chunks: canonical,
    },
    {
      name: `${name}:shape`,
      dtype: "I64",
      shape: [rank],
      byteLength: rank * 8,
      chunks: async function* () {
        yield shape.slice();
      },
    },
  ];
}

/**
 * Reads sparse indices (rows of `dims.length` I64 coordinates, or one linear
 * index per row when `dims` is the dense element count alone) and yields one
 * linear row-major I64 index per row, refusing indices out of range, out of
 * order or repeated: onnxruntime scatters them in file order (the last of
 * two wins) while the ONNX checker refuses them.
 */
async function* linearIndices(
  cur: ProtoCursor,
  indices: Tensor,
  dims: number[],
  label: string,
): AsyncGenerator<Uint8Array> {
  const rowBytes = dims.length * 8;
  let carry = new Uint8Array(0);
  let prev = -1;
  let rows = 0;
  for await (const chunk of indices.chunks()) {
    let buf = chunk;
    if (carry.byteLength > 0) {
      buf = new Uint8Array(carry.byteLength + chunk.byteLength);
      buf.set(carry);
      buf.set(chunk, carry.byteLength);
    }
    const whole = buf.byteLength - (buf.byteLength % rowBytes);
    const view = new DataView(buf.buffer, buf.byteOffset, whole);
    const out = new Uint8Array((whole / rowBytes) * 8);
    const outView = new DataView(out.buffer);
    for (let o = 0, r = 0; o < whole; o += rowBytes, r++) {
      let index = 0;
      for (let j = 0; j < dims.length; j++) {
        const lo = view.getUint32(o + j * 8, true);
        const hi = view.getUint32(o + j * 8 + 4, true);
        const c = hi * 2 ** 32 + lo;
        if (hi >= 0x200000 || c >= dims[j]!) {
          cur.fail(
            "bad-protobuf",
            `Cannot read ${label}: index ${
              view.getBigInt64(o + j * 8, true)
            } of value ${rows} is out of range for ${dims[j]}`,
          );
        }
        index = index * dims[j]! + c;
      }
      if (index <= prev) {
        cur.fail(
          "bad-protobuf",
          `Cannot read ${label}: the index of value ${rows} ${
            index === prev ? "repeats the one before" : "is smaller than the one before"
          } (indices must be strictly increasing)`,
        );
      }
      prev = index;
      rows++;
      outView.setBigUint64(r * 8, BigInt(index), true);
    }
    carry = buf.slice(whole);
    if (out.byteLength > 0) yield out;
  }
}

/** Checks a tensor's external_data entries and opens (or reuses) its file. */
async function openExternalData(
  ctx: ReadContext,
  rec: TensorRecord,
  label: string,
  byteLength: number,
): Promise<{ source: ByteSource; offset: number }> {
  const { cur, options, externals } = ctx;
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
  const read = (ctx.externalReads.get(location) ?? 0) + length;
  const allowed = Math.max(EXTERNAL_READS_PER_BYTE * source.size, EXTERNAL_MIN_READ);
  if (read > allowed) {
    cur.fail(
      "too-large",
      `Cannot read ${label}: the tensors stored in "${location}" would read ${read} bytes of it, more than ${EXTERNAL_READS_PER_BYTE} times its ${source.size} bytes (ranges shared or overlapping too often)`,
      rec.start,
    );
  }
  ctx.externalReads.set(location, read);
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
 * Decodes a repeated numeric field (a TensorProto's `float_data`, a
 * Constant's `value_ints`, …) into the dtype's little-endian bytes, window by
 * window, re-walking its message between the field's first and last tag.
 */
async function* typedChunks(
  walker: ProtoCursor,
  spec: FieldSpec,
  typed: { field: number; start: number; end: number },
  msgEnd: number,
  dtype: DType,
  byteLength: number,
  label: string,
): AsyncGenerator<Uint8Array> {
  const { name: fieldName, width } = spec;
  const cur = new ProtoCursor(walker.source, "onnx", typed.start, msgEnd);
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
      await cur.skip(tag.wire, msgEnd, `field ${tag.field}`);
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
