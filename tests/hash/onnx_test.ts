import assert from "node:assert/strict";
import {
  isMainInitializer,
  readOnnx,
  readOnnxMetadataProps,
  resolveExternalLocation,
} from "../../hash/_onnx.ts";
import { ModelFormatError } from "../../hash/errors.ts";
import { BLOCK_BYTES, type ByteSource, bytesSource } from "../../hash/_source.ts";
import { fileSource } from "../../hash/_source_fs.ts";
import type { Tensor } from "../../hash/types.ts";

const fixtures = new URL("../../../shared/fixtures/", import.meta.url);
const onnxUrl = new URL("tiny-bert/onnx/model.onnx", fixtures);
const safetensorsUrl = new URL("tiny-bert/model.safetensors", fixtures);

// --- A tiny protobuf encoder, enough to build ONNX test models by hand. ---

type Part = Uint8Array | number[];

function cat(...parts: Part[]): Uint8Array {
  const arrays = parts.map((p) => p instanceof Uint8Array ? p : Uint8Array.from(p));
  const out = new Uint8Array(arrays.reduce((n, a) => n + a.byteLength, 0));
  let at = 0;
  for (const a of arrays) {
    out.set(a, at);
    at += a.byteLength;
  }
  return out;
}

function varint(value: number | bigint): number[] {
  let v = BigInt.asUintN(64, BigInt(value));
  const out: number[] = [];
  do {
    const b = Number(v & 0x7fn);
    v >>= 7n;
    out.push(v > 0n ? b | 0x80 : b);
  } while (v > 0n);
  return out;
}

const key = (field: number, wire: number) => varint(field * 8 + wire);
const vint = (field: number, value: number | bigint) => cat(key(field, 0), varint(value));
const len = (field: number, ...payload: Part[]) => {
  const body = cat(...payload);
  return cat(key(field, 2), varint(body.byteLength), body);
};
const str = (field: number, s: string) => len(field, new TextEncoder().encode(s));
const packed = (field: number, values: (number | bigint)[]) => len(field, ...values.map(varint));
const entry = (field: number, k: string, v: string) => len(field, str(1, k), str(2, v));

function le(
  Ctor: Float32ArrayConstructor | Float64ArrayConstructor,
  values: number[],
): Uint8Array {
  return new Uint8Array(new Ctor(values).buffer);
}

/** A TensorProto: name, data type and dims, plus the data fields given. */
function tensor(
  name: string,
  dataType: number,
  dims: number[],
  ...data: Part[]
): Uint8Array {
  return cat(packed(1, dims), vint(2, dataType), str(8, name), ...data);
}

/** A ModelProto whose graph holds these initializers. */
function model(...initializers: Uint8Array[]): Uint8Array {
  return cat(
    vint(1, 8),
    str(2, "test"),
    len(7, str(2, "g"), ...initializers.map((t) => len(5, t))),
  );
}

// --- Helpers ---

async function bytesOf(t: Tensor): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  for await (const c of t.chunks()) {
    assert.ok(c.byteLength <= BLOCK_BYTES);
    parts.push(c.slice());
  }
  const out = cat(...parts);
  assert.equal(out.byteLength, t.byteLength);
  return out;
}

async function sha256(bytes: Uint8Array): Promise<string> {
  const d = await crypto.subtle.digest(
    "SHA-256",
    bytes as Uint8Array<ArrayBuffer>,
  );
  return [...new Uint8Array(d)].map((b) => b.toString(16).padStart(2, "0"))
    .join("");
}

async function rejectsWith(
  p: Promise<unknown>,
  code: string,
  text?: string | RegExp,
): Promise<void> {
  await assert.rejects(p, (e) => {
    assert.ok(
      e instanceof ModelFormatError,
      `expected ModelFormatError, got ${e}`,
    );
    assert.equal(e.code, code, e.message);
    if (typeof text === "string") {
      assert.ok(e.message.includes(text), e.message);
    } else if (text) assert.match(e.message, text);
    return true;
  });
}

/** Reads the model and all tensor bytes. */
async function readAll(bytes: Uint8Array, options = {}): Promise<Tensor[]> {
  const tensors = await readOnnx(bytesSource(bytes), options);
  for (const t of tensors) await bytesOf(t);
  return tensors;
}

// --- Tests ---

Deno.test("onnx: tiny-bert initializers match the safetensors weights, and its Constant nodes are read too", async () => {
  const st = await Deno.readFile(safetensorsUrl);
  const headerLen = Number(new DataView(st.buffer).getBigUint64(0, true));
  const header = JSON.parse(
    new TextDecoder().decode(st.subarray(8, 8 + headerLen)),
  ) as Record<
    string,
    { dtype: string; shape: number[]; data_offsets: [number, number] }
  >;
  const base = 8 + headerLen;

  const source = await fileSource(onnxUrl);
  try {
    const all = await readOnnx(source);
    const tensors = all.filter(isMainInitializer);
    assert.deepEqual(
      tensors.map((t) => [t.name, t.dtype, t.shape, t.byteLength]),
      [
        ["word_embeddings.weight", "F32", [32, 8], 1024],
        ["token_type_embeddings.weight", "F32", [2, 8], 64],
        ["LayerNorm.weight", "F32", [8], 32],
        ["LayerNorm.bias", "F32", [8], 32],
      ],
    );
    // The graph's three Constant nodes, named by their outputs.
    const constants = all.filter((t) => !isMainInitializer(t));
    assert.deepEqual(
      await Promise.all(constants.map(async (t) => [t.name, t.dtype, t.shape, await bytesOf(t)])),
      [
        ["/LayerNorm/Constant_output_0", "F32", [], le(Float32Array, [2])],
        ["/LayerNorm/Constant_1_output_0", "F32", [], le(Float32Array, [1e-5])],
        ["/Constant_output_0", "I64", [1], new Uint8Array(new BigInt64Array([-1n]).buffer)],
      ],
    );
    const matched: string[] = [];
    const unmatched: string[] = [];
    for (const t of tensors) {
      const h = header[t.name];
      if (h === undefined) {
        unmatched.push(t.name);
        continue;
      }
      matched.push(t.name);
      assert.equal(h.dtype, t.dtype);
      assert.deepEqual(h.shape, t.shape);
      const ref = st.subarray(
        base + h.data_offsets[0],
        base + h.data_offsets[1],
      );
      assert.equal(await sha256(await bytesOf(t)), await sha256(ref), t.name);
    }
    // Every initializer has a same-named safetensors tensor, and vice versa.
    assert.deepEqual(unmatched, []);
    assert.deepEqual(
      matched.sort(),
      Object.keys(header).filter((k) => k !== "__metadata__").sort(),
    );
    assert.deepEqual(await readOnnxMetadataProps(source), []);
  } finally {
    await source.close();
  }
});

Deno.test("onnx: typed fields are converted to little-endian bytes", async () => {
  const f16 = [0x3c00, 0xc000, 0x7bff]; // 1, -2, 65504 as float16 bit patterns
  const bytes = model(
    tensor("f32", 1, [2, 2], len(4, le(Float32Array, [1.5, -2, 3.25, 0]))),
    // Unpacked float_data: one fixed32 per tag.
    tensor(
      "f32u",
      1,
      [2],
      cat(key(4, 5), le(Float32Array, [7])),
      cat(key(4, 5), le(Float32Array, [-8])),
    ),
    tensor("f16", 10, [3], packed(5, f16)),
    tensor("bf16", 16, [1], packed(5, [0x3f80])),
    tensor("i8", 3, [4], packed(5, [-1, 127, -128, 5])),
    tensor("u8", 2, [2], vint(5, 255), vint(5, 0)),
    tensor("i16", 5, [2], packed(5, [-300, 300])),
    tensor("u16", 4, [1], packed(5, [65535])),
    tensor("i32", 6, [2], packed(5, [-2147483648, 2147483647])),
    tensor("bool", 9, [3], packed(5, [0, 1, 2])),
    tensor("f8", 17, [2], packed(5, [0x7e, 0x01])),
    tensor("i64", 7, [3], packed(7, [-1n, 2n ** 62n, -(2n ** 63n)])),
    tensor("f64", 11, [2], len(10, le(Float64Array, [Math.PI, -0.5]))),
    tensor("u64", 13, [2], packed(11, [2n ** 64n - 1n, 2n ** 53n + 1n])),
    tensor("u32", 12, [2], packed(11, [4294967295, 7])),
    tensor("c64", 14, [1], len(4, le(Float32Array, [1, -1]))),
    tensor("c128", 15, [1], len(10, le(Float64Array, [2, -2]))),
    tensor("scalar", 1, [], len(4, le(Float32Array, [42]))),
    tensor("empty", 1, [0, 3]),
  );
  const tensors = await readOnnx(bytesSource(bytes));
  const got = new Map<string, [string, number[], Uint8Array]>();
  for (const t of tensors) {
    got.set(t.name, [t.dtype, t.shape, await bytesOf(t)]);
  }

  const u8 = (a: { buffer: ArrayBufferLike }) => new Uint8Array(a.buffer);
  const expect: Record<string, [string, number[], Uint8Array]> = {
    f32: ["F32", [2, 2], le(Float32Array, [1.5, -2, 3.25, 0])],
    f32u: ["F32", [2], le(Float32Array, [7, -8])],
    f16: ["F16", [3], u8(new Uint16Array(f16))],
    bf16: ["BF16", [1], u8(new Uint16Array([0x3f80]))],
    i8: ["I8", [4], u8(new Int8Array([-1, 127, -128, 5]))],
    u8: ["U8", [2], Uint8Array.from([255, 0])],
    i16: ["I16", [2], u8(new Int16Array([-300, 300]))],
    u16: ["U16", [1], u8(new Uint16Array([65535]))],
    i32: ["I32", [2], u8(new Int32Array([-2147483648, 2147483647]))],
    bool: ["BOOL", [3], Uint8Array.from([0, 1, 1])],
    f8: ["F8_E4M3", [2], Uint8Array.from([0x7e, 0x01])],
    i64: ["I64", [3], u8(new BigInt64Array([-1n, 2n ** 62n, -(2n ** 63n)]))],
    f64: ["F64", [2], le(Float64Array, [Math.PI, -0.5])],
    u64: ["U64", [2], u8(new BigUint64Array([2n ** 64n - 1n, 2n ** 53n + 1n]))],
    u32: ["U32", [2], u8(new Uint32Array([4294967295, 7]))],
    c64: ["C64", [1], le(Float32Array, [1, -1])],
    c128: ["C128", [1], le(Float64Array, [2, -2])],
    scalar: ["F32", [], le(Float32Array, [42])],
    empty: ["F32", [0, 3], new Uint8Array(0)],
  };
  assert.deepEqual([...got.keys()], Object.keys(expect));
  for (const [name, want] of Object.entries(expect)) {
    assert.deepEqual(got.get(name), want, name);
  }
});

Deno.test("onnx: big raw_data is skipped when listing and streamed in block-sized chunks", async () => {
  const n = 5 << 20; // 5 Mi float32 = 20 MiB
  const data = new Uint8Array(n * 4);
  for (let i = 0; i < data.byteLength; i += 4093) data[i] = i & 0xff;
  const bytes = model(
    tensor("big", 1, [n], len(9, data)),
    tensor("small", 6, [1], packed(5, [3])),
  );
  const inner = bytesSource(bytes);
  const reads: number[] = [];
  const counting: ByteSource = {
    name: "<counting>",
    size: inner.size,
    read(offset, length) {
      reads.push(length);
      return inner.read(offset, length);
    },
    close: () => inner.close(),
  };
  const tensors = await readOnnx(counting);
  assert.deepEqual(tensors.map((t) => t.name), ["big", "small"]);
  assert.ok(
    reads.reduce((a, b) => a + b, 0) < 256 << 10,
    `listing read ${reads}`,
  );
  reads.length = 0;
  const sizes: number[] = [];
  const parts: Uint8Array[] = [];
  for await (const c of tensors[0]!.chunks()) {
    sizes.push(c.byteLength);
    parts.push(c);
  }
  assert.deepEqual(sizes, split(n * 4));
  assert.ok(reads.every((r) => r <= BLOCK_BYTES));
  assert.equal(await sha256(cat(...parts)), await sha256(data));
});

Deno.test("onnx: packed varints across read windows and block-sized chunks", async () => {
  const n = 1_100_000; // 8.8 MB of int64
  const values = new BigInt64Array(n);
  const payload: number[] = [];
  for (let i = 0; i < n; i++) {
    let v = (i * 2654435761) % 2 ** 31;
    values[i] = BigInt(v);
    while (v >= 0x80) {
      payload.push((v % 0x80) | 0x80);
      v = Math.floor(v / 0x80);
    }
    payload.push(v);
  }
  const bytes = model(tensor("big", 7, [n], len(7, payload)));
  const [t] = await readOnnx(bytesSource(bytes));
  const sizes: number[] = [];
  for await (const c of t!.chunks()) sizes.push(c.byteLength);
  assert.deepEqual(sizes, split(n * 8));
  assert.deepEqual(await bytesOf(t!), new Uint8Array(values.buffer));
});

Deno.test("onnx: external data is read through openExternal", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const weights = le(Float32Array, [0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8]); // first 16 bytes are padding
    await Deno.mkdir(`${dir}/sub`);
    await Deno.writeFile(`${dir}/sub/weights.bin`, weights);
    const ext = (name: string, offset: string, length: string) =>
      tensor(
        name,
        1,
        [2, 2],
        entry(13, "location", "./sub//weights.bin"),
        entry(13, "offset", offset),
        entry(13, "length", length),
        vint(14, 1),
      );
    const bytes = model(ext("a", "16", "16"), ext("b", "32", "16"));
    const opened: string[] = [];
    const sources: ByteSource[] = [];
    const openExternal = async (location: string) => {
      opened.push(location);
      const s = await fileSource(`${dir}/${location}`);
      sources.push(s);
      return s;
    };
    try {
      const tensors = await readOnnx(bytesSource(bytes), { openExternal });
      assert.deepEqual(opened, ["sub/weights.bin"]); // normalized, opened once
      assert.deepEqual(
        await bytesOf(tensors[0]!),
        le(Float32Array, [1, 2, 3, 4]),
      );
      assert.deepEqual(
        await bytesOf(tensors[1]!),
        le(Float32Array, [5, 6, 7, 8]),
      );

      // Length that does not match the tensor, and a range past the file's end.
      await rejectsWith(
        readOnnx(bytesSource(model(ext("a", "16", "12"))), { openExternal }),
        "bad-external-data",
        "length",
      );
      await rejectsWith(
        readOnnx(bytesSource(model(ext("a", "40", "16"))), { openExternal }),
        "bad-external-data",
        "48 bytes long",
      );
      await rejectsWith(
        readOnnx(bytesSource(model(ext("a", "-1", "16"))), { openExternal }),
        "bad-external-data",
        "offset",
      );
      // No opener: refused.
      await rejectsWith(
        readOnnx(bytesSource(bytes)),
        "bad-external-data",
        "no way to open",
      );
    } finally {
      for (const s of sources) await s.close();
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("onnx: external locations that leave the folder are refused", async () => {
  let called = 0;
  const openExternal = () => {
    called++;
    return Promise.resolve(bytesSource(new Uint8Array(64)));
  };
  for (
    const location of [
      "../evil",
      "/etc/passwd",
      "a/../../b",
      "C:/x",
      "a\\b",
      "a\0b",
      "",
      "./",
    ]
  ) {
    const bytes = model(
      tensor("w", 2, [4], entry(13, "location", location), vint(14, 1)),
    );
    await rejectsWith(
      readOnnx(bytesSource(bytes), { openExternal }),
      "bad-external-data",
      '"w"',
    );
    assert.throws(() => resolveExternalLocation(location), ModelFormatError);
  }
  assert.equal(called, 0);
  assert.equal(resolveExternalLocation("a/./b//c.bin"), "a/b/c.bin");
  assert.equal(resolveExternalLocation("model.onnx_data"), "model.onnx_data");
});

Deno.test("onnx: malformed and unsupported models are refused", async () => {
  const f32 = (...data: Part[]) => model(tensor("w", 1, [2], ...data));
  const two = len(9, le(Float32Array, [1, 2]));
  // Truncated inside raw_data (the real fixture, cut short).
  const real = await Deno.readFile(onnxUrl);
  for (
    const cut of [100, 1000, 2000, real.byteLength - 40, real.byteLength - 1]
  ) {
    await assert.rejects(readAll(real.subarray(0, cut)), ModelFormatError);
  }
  // Cut inside raw_data: the enclosing graph's length already runs past the end.
  const whole = f32(two);
  await rejectsWith(
    readAll(whole.subarray(0, whole.byteLength - 3)),
    "truncated",
  );
  await rejectsWith(
    readAll(f32(len(9, le(Float32Array, [1])))),
    "bad-protobuf",
    "raw_data is 4 bytes",
  );
  await rejectsWith(
    readAll(f32(packed(4, [1, 2]))),
    "bad-protobuf",
    "not a multiple",
  );
  await rejectsWith(
    readAll(f32(len(4, le(Float32Array, [1, 2, 3])))),
    "bad-protobuf",
    "holds 3 values",
  );
  await rejectsWith(
    readAll(f32(packed(5, [1, 2]))),
    "bad-protobuf",
    "float_data",
  );
  await rejectsWith(
    readAll(f32(two, len(4, le(Float32Array, [1, 2])))),
    "bad-protobuf",
    "both",
  );
  await rejectsWith(readAll(f32(two, two)), "bad-protobuf", "twice");
  await rejectsWith(readAll(f32()), "bad-protobuf", "no data");
  await rejectsWith(
    readAll(model(tensor("w", 1, [-1], two))),
    "bad-protobuf",
    "negative",
  );
  await rejectsWith(
    readAll(model(tensor("w", 1, [2 ** 40, 2 ** 40], two))),
    "too-large",
  );
  await rejectsWith(
    readAll(model(tensor("", 1, [2], two))),
    "bad-protobuf",
    "no name",
  );
  await rejectsWith(
    readAll(model(tensor("w", 1, [2], two), tensor("w", 1, [2], two))),
    "bad-protobuf",
    "twice",
  );
  await rejectsWith(
    readAll(f32(two, entry(13, "location", "x"))),
    "bad-external-data",
  );
  // String tensors and types we cannot represent name the tensor.
  await rejectsWith(
    readAll(model(tensor("s", 8, [1], len(6, [0x61])))),
    "unsupported-dtype",
    '"s": string',
  );
  await rejectsWith(
    readAll(model(tensor("s", 1, [1], len(6, [0x61])))),
    "unsupported-dtype",
    '"s"',
  );
  await rejectsWith(
    readAll(model(tensor("q", 22, [2], packed(5, [1])))),
    "unsupported-dtype",
    "INT4",
  );
  await rejectsWith(
    readAll(model(cat(vint(2, 1), str(8, "u"))).subarray(0)),
    "bad-protobuf",
    "no data",
  );
  // Sparse initializers without values, groups, bad varints, wrong wire types, no graph.
  await rejectsWith(
    readAll(cat(len(7, len(15, [])))),
    "bad-protobuf",
    "sparse initializer",
  );
  await rejectsWith(readAll(cat(key(3, 3))), "bad-protobuf", "groups");
  await rejectsWith(
    readAll(cat(key(3, 0), Array(11).fill(0xff), [0])),
    "bad-protobuf",
    "10 bytes",
  );
  await rejectsWith(readAll(cat(key(3, 0), [0xff, 0xff])), "truncated");
  await rejectsWith(readAll(cat(vint(7, 1))), "bad-protobuf", "wire type");
  await rejectsWith(readAll(cat(len(7), len(7))), "bad-protobuf", "two graphs");
  await rejectsWith(readAll(cat(vint(1, 8))), "bad-protobuf", "no graph");
  await rejectsWith(
    readAll(cat(len(7, len(5, [0x4a, 9, 1, 2, 3]), str(2, "padding-padding")))),
    "bad-protobuf",
    "enclosing message",
  );
  await rejectsWith(
    readAll(model(tensor("w", 7, [1], len(7, [0x80])))),
    "bad-protobuf",
    "varint",
  );
});

// --- Graph constants: a NodeProto and AttributeProto encoder. ---

const FLOAT = 1, INT = 2, TENSOR = 4, GRAPH = 5, FLOATS = 6, INTS = 7, TENSORS = 9, GRAPHS = 10;
const SPARSE_TENSOR = 11;

/** An AttributeProto: name, type and value fields. */
const attr = (name: string, type: number | undefined, ...fields: Part[]) =>
  cat(str(1, name), ...(type === undefined ? [] : [vint(20, type)]), ...fields);
const f32 = (field: number, x: number) => cat(key(field, 5), le(Float32Array, [x]));

/** A NodeProto, as a GraphProto `node` field. */
function node(op: string, outputs: string[], attrs: Uint8Array[], domain?: string): Uint8Array {
  return len(1, nodeProto(op, outputs, attrs, domain));
}

/** A NodeProto's bytes. */
function nodeProto(
  op: string,
  outputs: string[],
  attrs: Uint8Array[],
  domain?: string,
): Uint8Array {
  return cat(
    ...outputs.map((o) => str(2, o)),
    str(4, op),
    ...(domain === undefined ? [] : [str(7, domain)]),
    ...attrs.map((a) => len(5, a)),
  );
}

/** A GraphProto's fields (nodes, `len(5, tensor)` initializers, `len(15, sparse)`). */
const graph = (...fields: Part[]) => cat(str(2, "g"), ...fields);
/** A ModelProto around a graph's fields. */
const graphModel = (...fields: Part[]) => cat(vint(1, 8), len(7, graph(...fields)));
/** A SparseTensorProto: values, indices, dims. */
const sparse = (values: Uint8Array, indices: Uint8Array, dims: number[]) =>
  cat(len(1, values), len(2, indices), packed(3, dims));
const i64 = (values: (number | bigint)[]) =>
  new Uint8Array(new BigInt64Array(values.map(BigInt)).buffer);

async function listing(bytes: Uint8Array): Promise<[string, string, number[], Uint8Array][]> {
  const out: [string, string, number[], Uint8Array][] = [];
  for (const t of await readOnnx(bytesSource(bytes))) {
    out.push([t.name, t.dtype, t.shape, await bytesOf(t)]);
  }
  return out;
}

Deno.test("readOnnx() reads every kind of Constant, packed or not, named by its output", async () => {
  const bytes = graphModel(
    node("Constant", ["t"], [
      attr("value", TENSOR, len(5, tensor("ignored", 1, [2], len(4, le(Float32Array, [1, 2]))))),
    ]),
    node("Constant", ["f"], [attr("value_float", FLOAT, f32(2, -0.5))]),
    node("Constant", ["fs"], [
      attr("value_floats", FLOATS, f32(7, 1), len(7, le(Float32Array, [2, 3]))),
    ]),
    node("Constant", ["i"], [attr("value_int", INT, vint(3, -7))]),
    node("Constant", ["is"], [attr("value_ints", INTS, packed(8, [-1, 300]), vint(8, 2n ** 62n))]),
    node("Constant", ["none"], [attr("value_ints", INTS)]),
    node(
      "Constant",
      ["d"],
      [attr("value", TENSOR, len(5, tensor("", 7, [1], packed(7, [5]))))],
      "ai.onnx",
    ),
    // A Constant of another domain is an ordinary node: its attribute is named by the scheme.
    node(
      "Constant",
      ["x"],
      [attr("value", TENSOR, len(5, tensor("", 2, [1], len(9, [9]))))],
      "com.example",
    ),
  );
  assert.deepEqual(await listing(bytes), [
    ["t", "F32", [2], le(Float32Array, [1, 2])],
    ["f", "F32", [], le(Float32Array, [-0.5])],
    ["fs", "F32", [3], le(Float32Array, [1, 2, 3])],
    ["i", "I64", [], i64([-7])],
    ["is", "I64", [3], i64([-1, 300, 2n ** 62n])],
    ["none", "I64", [0], new Uint8Array(0)],
    ["d", "I64", [1], i64([5])],
    ["x:value", "U8", [1], Uint8Array.from([9])],
  ]);
});

Deno.test("readOnnx() names attribute tensors and subgraph tensors by node output, attribute and index", async () => {
  const t = (x: number) => tensor("ignored", 2, [1], len(9, [x]));
  const body = (x: number) =>
    graph(node("Constant", ["c"], [attr("value", TENSOR, len(5, t(x)))]), len(5, t(x + 1)));
  const bytes = graphModel(
    len(5, t(1)), // an initializer named "ignored"
    node("ConstantOfShape", ["", "y"], [attr("value", TENSOR, len(5, t(2)))]),
    node("Custom", ["z"], [attr("ts", TENSORS, len(10, t(3)), len(10, t(4)))]),
    node("If", ["out"], [
      attr("then_branch", GRAPH, len(6, body(5))),
      attr("else_branch", GRAPH, len(6, body(7))),
    ]),
    node("Custom", ["w"], [attr("gs", GRAPHS, len(11, body(9)), len(11, body(11)))]),
    node("Custom", ["v"], [
      attr("sp", SPARSE_TENSOR, len(22, sparse(t(13), tensor("", 7, [1], len(9, i64([2]))), [3]))),
    ]),
  );
  assert.deepEqual((await listing(bytes)).map(([n, , s, b]) => [n, s, [...b]]), [
    ["ignored", [1], [1]],
    ["y:value", [1], [2]],
    ["z:ts.0", [1], [3]],
    ["z:ts.1", [1], [4]],
    ["out:then_branch/c", [1], [5]],
    ["out:then_branch/ignored", [1], [6]],
    ["out:else_branch/c", [1], [7]],
    ["out:else_branch/ignored", [1], [8]],
    ["w:gs.0/c", [1], [9]],
    ["w:gs.0/ignored", [1], [10]],
    ["w:gs.1/c", [1], [11]],
    ["w:gs.1/ignored", [1], [12]],
    ["v:sp:values", [1], [13]],
    ["v:sp:indices", [1], [...i64([2])]],
    ["v:sp:shape", [1], [...i64([3])]],
  ]);
});

Deno.test("readOnnx() refuses Constants and attributes that loaders could read differently", async () => {
  const t = len(5, tensor("", 1, [1], len(4, le(Float32Array, [7]))));
  const cases: [Uint8Array, string, string][] = [
    // protobuf merges a repeated message field; we do not guess the merge.
    [node("Constant", ["c"], [attr("value", TENSOR, t, t)]), "bad-protobuf", "t appears twice"],
    [
      node("Constant", ["c"], [attr("value_float", FLOAT, f32(2, 1), f32(2, 2))]),
      "bad-protobuf",
      "f appears twice",
    ],
    [
      node("Constant", ["c"], [attr("value", TENSOR, t), attr("value", TENSOR, t)]),
      "bad-protobuf",
      "2 attributes",
    ],
    [node("Constant", ["c"], []), "bad-protobuf", "0 attributes"],
    [node("Constant", ["c", "d"], [attr("value", TENSOR, t)]), "bad-protobuf", "2 outputs"],
    [node("Constant", [""], [attr("value", TENSOR, t)]), "bad-protobuf", "unnamed"],
    [node("Constant", ["c"], [attr("value", undefined, t)]), "bad-protobuf", "type is missing"],
    [node("Constant", ["c"], [attr("value", FLOAT, t)]), "bad-protobuf", "type is FLOAT"],
    [node("Constant", ["c"], [attr("value_float", FLOAT)]), "bad-protobuf", "holds no value"],
    [
      node("Constant", ["c"], [attr("value_float", FLOAT, len(2, le(Float32Array, [1])))]),
      "bad-protobuf",
      "wire type",
    ],
    [node("Constant", ["c"], [attr("bogus", TENSOR, t)]), "bad-protobuf", '"bogus"'],
    [
      node("Constant", ["c"], [attr("value_string", 3, str(4, "s"))]),
      "unsupported-dtype",
      "string",
    ],
    [
      node("Gemm", ["y"], [attr("w", TENSORS, t)]),
      "bad-protobuf",
      "type is TENSORS but it holds t",
    ],
    [node("Gemm", ["y"], [attr("w", TENSOR, t, f32(2, 1))]), "bad-protobuf", "holds t and f"],
    [node("Gemm", [], [attr("w", TENSOR, t)]), "bad-protobuf", "no output"],
    [node("Gemm", ["y"], [attr("", TENSOR, t)]), "bad-protobuf", "no name"],
  ];
  for (const [n, code, text] of cases) await rejectsWith(readAll(graphModel(n)), code, text);
  // A Constant output and an attribute tensor that take an initializer's name.
  await rejectsWith(
    readAll(
      graphModel(
        len(5, tensor("y:w", 1, [1], len(4, le(Float32Array, [1])))),
        node("Gemm", ["y"], [attr("w", TENSOR, t)]),
      ),
    ),
    "bad-protobuf",
    "twice",
  );
  // Model-local functions and training graphs.
  const fn = (...fields: Part[]) =>
    cat(vint(1, 8), len(7, graph()), len(25, str(1, "F"), ...fields));
  await rejectsWith(
    readAll(fn(len(7, nodeProto("Constant", ["k"], [attr("value", TENSOR, t)])))),
    "unsupported-dtype",
    'function "F"',
  );
  await rejectsWith(readAll(fn(len(11, attr("d", TENSOR, t)))), "unsupported-dtype", "default");
  assert.deepEqual(await listing(fn(len(7, nodeProto("Add", ["y"], [])))), []);
  await rejectsWith(
    readAll(cat(len(7, graph()), len(20, []))),
    "unsupported-dtype",
    "training_info",
  );
});

Deno.test("readOnnx() bounds subgraph depth, tensor count and name length", async () => {
  let g = graph();
  for (let i = 0; i < 70; i++) {
    g = graph(node("If", ["o"], [attr("then_branch", GRAPH, len(6, g))]));
  }
  await rejectsWith(readAll(cat(len(7, g))), "too-large", "nested more than 64");
  // One long output name repeated by many attribute tensors.
  const empty = len(10, tensor("", 1, [0]));
  const names = graphModel(
    node("Custom", ["y".repeat(1 << 20)], [attr("a", TENSORS, ...Array(20).fill(empty))]),
  );
  await rejectsWith(readAll(names), "too-large", "names");
  // 2^18 + 1 empty TensorProtos (two bytes each: tag 10, length 0), refused while listing.
  const tensorsField = new Uint8Array(((1 << 18) + 1) * 2);
  for (let i = 0; i < tensorsField.byteLength; i += 2) tensorsField[i] = 0x52;
  const many = graphModel(node("Custom", ["y"], [attr("a", TENSORS, tensorsField)]));
  await rejectsWith(readOnnx(bytesSource(many)), "too-large", "tensors");
});

Deno.test("readOnnx() reads sparse tensors in canonical form, across chunk boundaries", async () => {
  // 200 000 values at coordinates of a [100, 100, 100] tensor: 4.8 MB of
  // indices, so rows of 24 bytes straddle the 4 MiB read blocks.
  const n = 200_000;
  const coords = new BigInt64Array(n * 3);
  const linear = new BigInt64Array(n);
  for (let i = 0; i < n; i++) {
    const at = i * 5;
    linear[i] = BigInt(at);
    coords.set([
      BigInt(Math.floor(at / 10_000)),
      BigInt(Math.floor(at / 100) % 100),
      BigInt(at % 100),
    ], i * 3);
  }
  const values = new Float32Array(n).map((_, i) => i);
  const sp = (indices: Uint8Array, shape: number[]) =>
    sparse(
      tensor("S", 1, [n], len(9, new Uint8Array(values.buffer))),
      tensor("", 7, shape, len(9, indices)),
      [100, 100, 100],
    );
  const coo = await listing(graphModel(len(15, sp(new Uint8Array(coords.buffer), [n, 3]))));
  const lin = await listing(graphModel(len(15, sp(new Uint8Array(linear.buffer), [n]))));
  assert.deepEqual(coo, lin);
  assert.deepEqual(coo.map(([name, dtype, shape]) => [name, dtype, shape]), [
    ["S:values", "F32", [n]],
    ["S:indices", "I64", [n]],
    ["S:shape", "I64", [3]],
  ]);
  assert.deepEqual(coo[1]![3], new Uint8Array(linear.buffer));
  assert.deepEqual(coo[2]![3], i64([100, 100, 100]));
  // Refused: indices of another type or shape, values not 1-D, a dense shape past 2^53.
  const v = tensor("S", 1, [2], len(4, le(Float32Array, [1, 2])));
  const bad: [Uint8Array, string, string][] = [
    [sparse(v, tensor("", 6, [2], packed(5, [0, 1])), [4]), "bad-protobuf", "expected I64 [2]"],
    [
      sparse(v, tensor("", 7, [2, 2], packed(7, [0, 1, 0, 1])), [4]),
      "bad-protobuf",
      "expected I64 [2] or [2, 1]",
    ],
    [
      sparse(
        tensor("S", 1, [1, 2], len(4, le(Float32Array, [1, 2]))),
        tensor("", 7, [2], packed(7, [0, 1])),
        [4],
      ),
      "bad-protobuf",
      "one dimension",
    ],
    [sparse(v, tensor("", 7, [2], packed(7, [0, -1])), [4]), "bad-protobuf", "out of range"],
    [sparse(v, tensor("", 7, [2], packed(7, [0, 1])), [2 ** 30, 2 ** 30]), "too-large", "2^53"],
    [cat(len(1, v)), "bad-protobuf", "no indices"],
  ];
  for (const [s, code, text] of bad) await rejectsWith(readAll(graphModel(len(15, s))), code, text);
});

Deno.test("onnx: metadata_props entries with their byte ranges", async () => {
  const bytes = cat(
    vint(1, 8),
    entry(14, "a", "1"),
    len(7),
    entry(14, "sig", "x".repeat(300)),
  );
  const props = await readOnnxMetadataProps(bytesSource(bytes));
  assert.deepEqual(props.map((p) => [p.key, p.value]), [["a", "1"], [
    "sig",
    "x".repeat(300),
  ]]);
  assert.deepEqual(
    bytes.subarray(props[0]!.offset, props[0]!.offset + props[0]!.length),
    entry(14, "a", "1"),
  );
  const last = props[1]!;
  assert.equal(last.offset + last.length, bytes.byteLength);
  assert.deepEqual(
    bytes.subarray(last.offset),
    entry(14, "sig", "x".repeat(300)),
  );
  await rejectsWith(
    readOnnxMetadataProps(bytesSource(bytes.subarray(0, bytes.byteLength - 1))),
    "truncated",
  );
});

/** Mutates `original` with a seeded PRNG for `ms` milliseconds; returns [runs, parsed]. */
async function fuzz(
  original: Uint8Array,
  seed: number,
  ms: number,
): Promise<[number, number]> {
  const rand = () => {
    // mulberry32
    seed = (seed + 0x6d2b79f5) | 0;
    let t = seed;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const pick = (n: number) => Math.floor(rand() * n);
  const interesting = [
    0x00,
    0x01,
    0x7f,
    0x80,
    0xff,
    0x08,
    0x0a,
    0x12,
    0x2a,
    0x3a,
    0x4a,
    0x6a,
    0x70,
  ];
  const openExternal = () => Promise.resolve(bytesSource(new Uint8Array(4096)));
  const deadline = Date.now() + ms;
  let runs = 0;
  let parsed = 0;
  while (Date.now() < deadline) {
    let m: Uint8Array = original.slice();
    for (let k = 1 + pick(4); k > 0 && m.byteLength > 0; k--) {
      const at = pick(m.byteLength);
      switch (pick(5)) {
        case 0:
          m[at] = pick(256);
          break;
        case 1:
          m[at] = interesting[pick(interesting.length)]!;
          break;
        case 2:
          m[at]! ^= 1 << pick(8);
          break;
        case 3:
          m = m.subarray(0, at);
          break;
        default:
          m = cat(m.subarray(0, at), [pick(256)], m.subarray(at));
      }
    }
    runs++;
    try {
      await readAll(m, { openExternal });
      parsed++;
    } catch (e) {
      if (!(e instanceof ModelFormatError)) {
        throw new Error(`Mutant ${runs} threw ${e}`, { cause: e });
      }
    }
  }
  return [runs, parsed];
}

Deno.test("onnx: seeded mutation fuzz over tiny-bert and a typed-field model", async () => {
  const real = await Deno.readFile(onnxUrl);
  const [runs, parsed] = await fuzz(real, 0x5eed0bb5, 1500);
  assert.ok(runs > 1000, `only ${runs} mutants`);
  assert.ok(parsed > 0, "no mutant parsed");
  const typed = model(
    tensor("i64", 7, [3], packed(7, [-1n, 300n, 5n])),
    tensor("u8", 2, [2], vint(5, 255), vint(5, 0)),
    tensor("f64", 11, [1], len(10, le(Float64Array, [0.5]))),
    tensor(
      "f32",
      1,
      [2],
      cat(key(4, 5), le(Float32Array, [7])),
      cat(key(4, 5), le(Float32Array, [-8])),
    ),
    tensor(
      "e",
      1,
      [1],
      entry(13, "location", "x.bin"),
      entry(13, "offset", "8"),
      vint(14, 1),
    ),
  );
  const [runs2, parsed2] = await fuzz(typed, 0x0badf00d, 1000);
  assert.ok(runs2 > 1000, `only ${runs2} mutants`);
  assert.ok(parsed2 > 0, "no mutant parsed");
});

Deno.test("onnx: seeded mutation fuzz over graph constants, subgraphs and sparse tensors", async () => {
  const t = (x: number) => tensor("", 1, [1], len(4, le(Float32Array, [x])));
  const bytes = graphModel(
    len(5, tensor("w", 1, [1], len(4, le(Float32Array, [1])))),
    node("Constant", ["c"], [attr("value", TENSOR, len(5, t(2)))]),
    node("Constant", ["fs"], [attr("value_floats", FLOATS, len(7, le(Float32Array, [3, 4])))]),
    node("Constant", ["is"], [attr("value_ints", INTS, packed(8, [-1, 300]))]),
    node("If", ["o"], [
      attr(
        "then_branch",
        GRAPH,
        len(6, graph(node("Constant", ["k"], [attr("value_int", INT, vint(3, 5))]))),
      ),
    ]),
    node("Custom", ["y"], [attr("ts", TENSORS, len(10, t(6)), len(10, t(7)))]),
    len(
      15,
      sparse(
        tensor("S", 1, [2], len(4, le(Float32Array, [8, 9]))),
        tensor("", 7, [2, 2], packed(7, [0, 1, 1, 0])),
        [2, 2],
      ),
    ),
  );
  assert.equal((await readAll(bytes)).length, 10);
  const [runs, parsed] = await fuzz(bytes, 0x5ca1ab1e, 1000);
  assert.ok(runs > 1000, `only ${runs} mutants`);
  assert.ok(parsed > 0, "no mutant parsed");
});

/** The chunk sizes expected for `total` bytes read in blocks. */
function split(total: number): number[] {
  const out: number[] = [];
  for (let at = 0; at < total; at += BLOCK_BYTES) {
    out.push(Math.min(BLOCK_BYTES, total - at));
  }
  return out;
}

Deno.test("readOnnx() refuses a sparse tensor that shares its name with a dense one (onnxruntime keeps the sparse one)", async () => {
  const dense = tensor("S", 1, [4], len(9, le(Float32Array, [1, 2, 3, 4])));
  const sp = sparse(
    tensor("S", 1, [1], len(9, le(Float32Array, [7]))),
    tensor("", 7, [1], len(9, i64([2]))),
    [4],
  );
  // Either order: a dense initializer and a sparse initializer.
  await rejectsWith(
    readAll(graphModel(len(5, dense), len(15, sp))),
    "bad-protobuf",
    '"S" is used twice',
  );
  await rejectsWith(
    readAll(graphModel(len(15, sp), len(5, dense))),
    "bad-protobuf",
    '"S" is used twice',
  );
  // A sparse initializer and a dense Constant of that name.
  await rejectsWith(
    readAll(
      graphModel(
        len(15, sp),
        node("Constant", ["S"], [
          attr("value", TENSOR, len(5, tensor("x", 1, [1], len(9, le(Float32Array, [1]))))),
        ]),
      ),
    ),
    "bad-protobuf",
    "used twice",
  );
});
