// The ONNX reader against the real loaders: small models written with the
// onnx package 1.12 (tests/testdata/onnx/generate.py), what onnx read from
// each and what onnxruntime-node read from each (expected.json, the latter
// recorded by record_onnxruntime.ts and checked again here). Where the reader
// hashes a file, it lists exactly the tensors onnx lists under the
// safemodels-v1 names, with the bytes onnxruntime reads; where loaders
// disagree with each other or with the reader, it refuses the file.
import assert from "node:assert/strict";
import { readOnnx } from "../../hash/_onnx.ts";
import type { ByteSource } from "../../hash/_source.ts";
import { fileSource } from "../../hash/_source_fs.ts";
import { ModelFormatError, type ModelFormatErrorCode } from "../../hash/errors.ts";
import { hashManifest, safeHash } from "../../hash/mod.ts";
import { collect, fixture, sha256hex } from "../_helpers.ts";
import { type OnnxruntimeView, onnxruntimeView } from "../testdata/onnx/record_onnxruntime.ts";

const DIR = new URL("../testdata/onnx/", import.meta.url);

interface Described {
  dtype: string;
  shape: number[];
  sha256: string;
}
interface Entry {
  what: string;
  outputs: Record<string, string>;
  onnx: {
    checker: string;
    tensors?: [string, Described][];
    dense?: Record<string, Described>;
    error?: string;
  };
  onnxruntime: OnnxruntimeView;
}
const oracle = JSON.parse(
  Deno.readTextFileSync(new URL("expected.json", DIR)),
) as { files: Record<string, Entry> };

/** What the reader must do with a file: hash it, or refuse it saying why. */
type Want = "hash" | { code: ModelFormatErrorCode; says: string[] };
const refuse = (code: ModelFormatErrorCode, ...says: string[]): Want => ({ code, says });

const WANT: Record<string, Want> = {
  "constants.onnx": "hash",
  "subgraphs.onnx": "hash",
  "sparse.onnx": "hash",
  "external.onnx": "hash",
  "input_shadow.onnx": "hash",
  // onnxruntime reads raw_data, the checker refuses.
  "raw_and_typed.onnx": refuse("bad-protobuf", '"A"', "both raw_data and float_data"),
  // onnxruntime reads raw_data and ignores the entries.
  "external_entries_not_external.onnx": refuse("bad-external-data", "not EXTERNAL"),
  // onnxruntime keeps the last of two tensors with one name, the checker refuses.
  "duplicate_initializer.onnx": refuse("bad-protobuf", '"A"', "twice"),
  "constant_shadows_initializer.onnx": refuse("bad-protobuf", 'Constant "A"', "twice"),
  // onnxruntime reads the first attribute, the checker accepts the file.
  "constant_two_values.onnx": refuse("bad-protobuf", 'Constant "C"', "2 attributes"),
  // onnxruntime and get_attribute_value read the value the type names (0.0 here).
  "constant_value_typed_float.onnx": refuse("bad-protobuf", "type is FLOAT", "holds t"),
  "constant_float_and_tensor.onnx": refuse("bad-protobuf", "holds f and t"),
  "attribute_type_mismatch.onnx": refuse("bad-protobuf", '"filled"', "type is FLOAT"),
  "constant_strings.onnx": refuse("unsupported-dtype", 'Constant "C"', "string"),
  // onnxruntime scatters unsorted and repeated indices (the last one wins).
  "sparse_unsorted.onnx": refuse("bad-protobuf", '"S"', "smaller than the one before"),
  "sparse_duplicate.onnx": refuse("bad-protobuf", '"S"', "repeats"),
  "sparse_out_of_range.onnx": refuse("bad-protobuf", '"S"', "out of range"),
  "external_repeats.onnx": refuse("too-large", "external_repeats.data", "16 times"),
  "function_constant.onnx": refuse("unsupported-dtype", 'function "AddK"', 'Constant "k"'),
  "training_info.onnx": refuse("unsupported-dtype", "training_info"),
};

/** Reads a file of the folder with its external data, hashing every tensor. */
async function read(file: string): Promise<Map<string, Described & { bytes: Uint8Array }>> {
  const opened: ByteSource[] = [];
  const source = await fileSource(new URL(file, DIR));
  opened.push(source);
  try {
    const tensors = await readOnnx(source, {
      openExternal: async (location) => {
        const s = await fileSource(new URL(location, DIR));
        opened.push(s);
        return s;
      },
    });
    const out = new Map<string, Described & { bytes: Uint8Array }>();
    for (const t of tensors) {
      const bytes = await collect(t.chunks());
      assert.equal(bytes.byteLength, t.byteLength, t.name);
      out.set(t.name, { dtype: t.dtype, shape: t.shape, sha256: sha256hex(bytes), bytes });
    }
    return out;
  } finally {
    for (const s of opened) await s.close();
  }
}

/** The dense tensor of a sparse tensor's canonical form. */
function densify(tensors: Map<string, Described & { bytes: Uint8Array }>, base: string): Described {
  const values = tensors.get(`${base}:values`)!;
  const indices = new BigInt64Array(tensors.get(`${base}:indices`)!.bytes.slice().buffer);
  const shape = [...new BigInt64Array(tensors.get(`${base}:shape`)!.bytes.slice().buffer)].map(
    Number,
  );
  const size = values.bytes.byteLength / values.shape[0]!;
  const dense = new Uint8Array(shape.reduce((a, b) => a * b, 1) * size);
  indices.forEach((at, i) =>
    dense.set(values.bytes.subarray(i * size, (i + 1) * size), Number(at) * size)
  );
  return { dtype: values.dtype, shape, sha256: sha256hex(dense) };
}

const described = ({ dtype, shape, sha256 }: Described): Described => ({ dtype, shape, sha256 });
const byName = (a: [string, unknown], b: [string, unknown]) =>
  a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0;

Deno.test("onnx oracle: every file has a verdict", () => {
  assert.deepEqual(Object.keys(WANT).sort(), Object.keys(oracle.files).sort());
});

for (const [file, entry] of Object.entries(oracle.files)) {
  const want = WANT[file];
  if (want === undefined) continue;
  Deno.test(`readOnnx() on ${file} (${entry.what}) agrees with onnx and onnxruntime`, async () => {
    if (want !== "hash") {
      await assert.rejects(read(file), (e) => {
        assert.ok(e instanceof ModelFormatError, `${e}`);
        assert.equal(e.code, want.code, e.message);
        for (const s of want.says) assert.ok(e.message.includes(s), `${s}: ${e.message}`);
        return true;
      });
      return;
    }
    // Both loaders read the file.
    assert.equal(entry.onnx.checker, "ok");
    assert.ok("outputs" in entry.onnxruntime, JSON.stringify(entry.onnxruntime));
    const ours = await read(file);
    // The same tensors as the onnx package, under the same names.
    assert.deepEqual(
      [...ours].map(([n, t]): [string, Described] => [n, described(t)]).sort(byName),
      [...entry.onnx.tensors!].sort(byName),
    );
    // The same bytes as onnxruntime reads (sparse tensors densified).
    const { outputs } = entry.onnxruntime as Extract<OnnxruntimeView, { outputs: unknown }>;
    for (const [name, output] of Object.entries(entry.outputs)) {
      const mine = ours.has(name) ? described(ours.get(name)!) : densify(ours, name);
      assert.deepEqual(mine, outputs[output], `${name} → ${output}`);
      if (entry.onnx.dense?.[name]) assert.deepEqual(mine, entry.onnx.dense[name]);
    }
  });
}

Deno.test(
  "onnx oracle: expected.json's onnxruntime results are what onnxruntime-node does",
  { sanitizeOps: false, sanitizeResources: false },
  async () => {
    for (const [file, entry] of Object.entries(oracle.files)) {
      assert.deepEqual(await onnxruntimeView(file), entry.onnxruntime, file);
    }
  },
);

Deno.test("safeHash() of an ONNX file with graph constants: the initializers' leaves are the other formats' leaves", async () => {
  // tiny-bert's graph holds three Constant nodes besides its four
  // initializers: the safetensors tensors reappear with the same leaves, and
  // the ONNX hash also binds the constants.
  const onnx = await hashManifest(fixture("tiny-bert/onnx/model.onnx"));
  const st = await hashManifest(fixture("tiny-bert/model.safetensors"));
  const names = new Set(st.tensors.map((t) => t.name));
  assert.deepEqual(onnx.tensors.filter((t) => names.has(t.name)), st.tensors);
  assert.deepEqual(
    onnx.tensors.filter((t) => !names.has(t.name)).map((t) => [t.name, t.dtype, t.shape]),
    [
      ["/Constant_output_0", "I64", [1]],
      ["/LayerNorm/Constant_1_output_0", "F32", []],
      ["/LayerNorm/Constant_output_0", "F32", []],
    ],
  );
  assert.notEqual(onnx.hash, st.hash);
  // The seed hashes read main-graph initializers only, as the seed project did.
  const seed = await safeHash(fixture("tiny-bert/onnx/model.onnx"), { algorithm: "seed-xxh64" });
  assert.equal(
    seed,
    await safeHash(fixture("tiny-bert/model.safetensors"), { algorithm: "seed-xxh64" }),
  );
});
