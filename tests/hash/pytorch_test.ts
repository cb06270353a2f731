import { concat, prng } from "../_helpers.ts";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import zlib from "node:zlib";
import { isTarHeader, readPytorchLegacy, readPytorchZip } from "../../hash/_pytorch.ts";
import {
  NeedMoreInput,
  PyCall,
  PyOrderedDict,
  type PyValue,
  unpickle,
} from "../../hash/_pickle.ts";
import { readEntry, readZipDirectory } from "../../hash/_zip.ts";
import { BLOCK_BYTES, type ByteSource, bytesSource } from "../../hash/_source.ts";
import { ForbiddenGlobalError, ModelFormatError } from "../../hash/errors.ts";
import type { Tensor } from "../../hash/types.ts";

const FIXTURES = new URL("../../../shared/fixtures/", import.meta.url);
const fixture = (path: string) => Deno.readFileSync(new URL(path, FIXTURES));
const expected = JSON.parse(
  Deno.readTextFileSync(new URL("tensors/expected.json", FIXTURES)),
) as Record<
  string,
  {
    tensors: Record<string, { dtype: string; shape: number[]; sha256: string }>;
  }
>;

const MIXED_ORDER = [
  "embed.weight",
  "proj.weight_t",
  "proj.weight",
  "split.a",
  "split.b",
  "strided.every_other",
  "half.weight",
  "bf16.weight",
  "f64.bias",
  "ids",
  "i8",
  "mask",
  "scalar",
  "empty",
];

async function tensorBytes(t: Tensor): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  for await (const c of t.chunks()) {
    assert.ok(c.byteLength <= BLOCK_BYTES, `chunk of ${c.byteLength} bytes`);
    parts.push(c.slice());
  }
  const out = concat(parts);
  assert.equal(out.byteLength, t.byteLength, `${t.name}: byte length`);
  return out;
}

const sha256 = (b: Uint8Array) => createHash("sha256").update(b).digest("hex");

function isFormatError(code?: string) {
  return (e: unknown) => e instanceof ModelFormatError && (code === undefined || e.code === code);
}

/** A source that records every read, to check what a reader touches. */
function recording(
  bytes: Uint8Array,
): ByteSource & { reads: [number, number][] } {
  const inner = bytesSource(bytes, "recorded");
  const reads: [number, number][] = [];
  return {
    name: inner.name,
    size: inner.size,
    reads,
    read(offset, length) {
      reads.push([offset, length]);
      return inner.read(offset, length);
    },
    close: () => inner.close(),
  };
}

// --- Real checkpoints --------------------------------------------------------

for (
  const [file, read] of [["mixed.bin", readPytorchZip], [
    "mixed.legacy.bin",
    readPytorchLegacy,
  ]] as const
) {
  Deno.test(`pytorch: ${file} matches expected.json`, async () => {
    const tensors = await read(bytesSource(fixture(`tensors/${file}`), file));
    assert.deepEqual(tensors.map((t) => t.name), MIXED_ORDER);
    const want = expected[file]!.tensors;
    assert.equal(tensors.length, Object.keys(want).length);
    for (const t of tensors) {
      const w = want[t.name]!;
      assert.equal(t.dtype, w.dtype, t.name);
      assert.deepEqual(t.shape, w.shape, t.name);
      assert.equal(sha256(await tensorBytes(t)), w.sha256, t.name);
    }
  });
}

Deno.test("pytorch: tiny-bert pytorch_model.bin equals model.safetensors", async () => {
  const tensors = await readPytorchZip(
    bytesSource(fixture("tiny-bert/pytorch_model.bin")),
  );
  // Parse the safetensors file by hand: u64 header length, JSON header, data.
  const st = fixture("tiny-bert/model.safetensors");
  const n = Number(
    new DataView(st.buffer, st.byteOffset).getBigUint64(0, true),
  );
  const header = JSON.parse(
    new TextDecoder().decode(st.subarray(8, 8 + n)),
  ) as Record<
    string,
    { dtype: string; shape: number[]; data_offsets: [number, number] }
  >;
  delete header.__metadata__;
  assert.deepEqual(
    tensors.map((t) => t.name).sort(),
    Object.keys(header).sort(),
  );
  for (const t of tensors) {
    const h = header[t.name]!;
    assert.equal(t.dtype, h.dtype);
    assert.deepEqual(t.shape, h.shape);
    const [b, e] = h.data_offsets;
    assert.equal(
      sha256(await tensorBytes(t)),
      sha256(st.subarray(8 + n + b, 8 + n + e)),
      t.name,
    );
  }
});

Deno.test("pytorch: evil_reduce.bin is refused, naming posix.system, before any storage is read", async () => {
  const bytes = fixture("bad/evil_reduce.bin");
  const source = recording(bytes);
  await assert.rejects(
    readPytorchZip(source),
    (e) =>
      e instanceof ForbiddenGlobalError && e.global === "posix.system" &&
      e.code === "forbidden-global",
  );
  // Storage archive/data/0 holds 8 bytes at offset 384: never read.
  // (The first read is the end-record search over the file's last 64 KiB.)
  assert.ok(
    source.reads.slice(1).every(([o, l]) => o + l <= 384 || o >= 392),
    JSON.stringify(source.reads),
  );
});

Deno.test("pytorch: files that are not checkpoints are refused", async () => {
  const notModel = fixture("bad/not_a_model.bin");
  await assert.rejects(
    readPytorchZip(bytesSource(notModel)),
    isFormatError("bad-zip"),
  );
  await assert.rejects(
    readPytorchLegacy(bytesSource(notModel)),
    isFormatError(),
  );
  await assert.rejects(
    readPytorchLegacy(bytesSource(fixture("tensors/mixed.bin"))),
    isFormatError("bad-header"),
  );
  await assert.rejects(
    readPytorchZip(bytesSource(fixture("tensors/mixed.legacy.bin"))),
    isFormatError("bad-zip"),
  );
  await assert.rejects(
    readPytorchZip(bytesSource(fixture("tensors/mixed.npz"))),
    isFormatError("bad-zip"),
  );
  await assert.rejects(
    readPytorchLegacy(bytesSource(new Uint8Array(0))),
    isFormatError(),
  );
  const legacy = fixture("tensors/mixed.legacy.bin");
  for (const cut of [10, 500, 1500, 1600, legacy.byteLength - 1]) {
    await assert.rejects(
      (async () => {
        for (
          const t of await readPytorchLegacy(
            bytesSource(legacy.subarray(0, cut)),
          )
        ) await tensorBytes(t);
      })(),
      isFormatError(),
      `cut at ${cut}`,
    );
  }
});

Deno.test("pytorch: listing reads data.pkl and each storage's first 6 bytes only (the .npy magic check); chunks read only the tensor's storage", async () => {
  const bytes = fixture("tensors/mixed.bin");
  const source = recording(bytes);
  const tensors = await readPytorchZip(source);
  const entries = await readZipDirectory(bytesSource(bytes));
  // Where each storage's bytes are (after its local header's name and extra).
  const storageRanges: [string, number, number][] = [];
  for (const e of entries.filter((e) => e.name.startsWith("mixed/data/"))) {
    const data = findData(bytes, e.localHeaderOffset);
    storageRanges.push([e.name, data, data + e.size]);
  }
  const touches = (reads: [number, number][], name: string, skip = 0) => {
    const [, s0, e] = storageRanges.find((r) => r[0] === name)!;
    const s = s0 + skip;
    return reads.some(([o, l]) => o < e && o + l > s && e > s);
  };
  // The first read is the end-record search over the file's last 64 KiB.
  assert.deepEqual(source.reads[0], [0, bytes.byteLength]);
  for (const [name] of storageRanges) {
    assert.ok(!touches(source.reads.slice(1), name, 6), `listing read ${name} past its magic`);
  }
  source.reads.length = 0;
  await tensorBytes(tensors.find((t) => t.name === "half.weight")!);
  assert.ok(touches(source.reads, "mixed/data/3"));
  for (const [name] of storageRanges.filter((r) => r[0] !== "mixed/data/3")) {
    assert.ok(!touches(source.reads, name), `half.weight read ${name}`);
  }
});

function findData(bytes: Uint8Array, localHeaderOffset: number): number {
  const v = new DataView(bytes.buffer, bytes.byteOffset);
  return localHeaderOffset + 30 + v.getUint16(localHeaderOffset + 26, true) +
    v.getUint16(localHeaderOffset + 28, true);
}

// --- Hand-made checkpoints ----------------------------------------------------

/** Writes pickle opcodes. */
class Pickle {
  b: number[] = [];
  op(...x: number[]): this {
    for (const v of x) this.b.push(v);
    return this;
  }
  u32(v: number): this {
    return this.op(
      v & 0xff,
      (v >>> 8) & 0xff,
      (v >>> 16) & 0xff,
      (v >>> 24) & 0xff,
    );
  }
  str(s: string): this {
    const e = new TextEncoder().encode(s);
    this.op(0x58).u32(e.length);
    for (const v of e) this.b.push(v);
    return this;
  }
  int(n: number): this {
    if (n < 256) return this.op(0x4b, n);
    if (n < 65536) return this.op(0x4d, n & 0xff, n >> 8);
    return this.op(0x4a).u32(n);
  }
  global(module: string, name: string): this {
    return this.op(0x63, ...new TextEncoder().encode(`${module}\n${name}\n`));
  }
  ints(xs: number[]): this {
    this.op(0x28);
    for (const x of xs) this.int(x);
    return this.op(0x74);
  }
  bytes(): Uint8Array {
    return new Uint8Array(this.b);
  }
}

interface TensorSpec {
  cls?: string;
  key: string;
  numel: number;
  offset?: number;
  shape: number[];
  stride?: number[];
  param?: boolean;
  /** Extra element of a legacy persistent id (view metadata); omitted for zips. */
  view?: (p: Pickle) => void;
}

function cStrides(shape: number[]): number[] {
  const s = shape.map(() => 1);
  for (let i = shape.length - 2; i >= 0; i--) s[i] = s[i + 1]! * shape[i + 1]!;
  return s;
}

/** Emits `_rebuild_tensor_v2(storage, offset, size, stride, False, OrderedDict())`. */
function emitTensor(p: Pickle, t: TensorSpec, legacy = false): Pickle {
  if (t.param) p.global("torch._utils", "_rebuild_parameter");
  p.global("torch._utils", "_rebuild_tensor_v2").op(0x28);
  p.op(0x28).str("storage").global("torch", t.cls ?? "FloatStorage").str(t.key)
    .str("cpu").int(t.numel);
  if (legacy) t.view ? t.view(p) : p.op(0x4e);
  p.op(0x74, 0x51); // TUPLE, BINPERSID
  p.int(t.offset ?? 0).ints(t.shape).ints(t.stride ?? cStrides(t.shape)).op(
    0x89,
  );
  p.global("collections", "OrderedDict").op(0x29, 0x52); // OrderedDict()
  p.op(0x74, 0x52); // TUPLE, REDUCE
  if (t.param) {
    p.op(0x89).global("collections", "OrderedDict").op(0x29, 0x52, 0x87, 0x52);
  }
  return p;
}

/** A state-dict pickle: `{name: value, ...}` where values are emitted by callbacks. */
function stateDict(
  items: [string, (p: Pickle) => void][],
  proto = 2,
): Uint8Array {
  const p = new Pickle().op(0x80, proto, 0x7d, 0x28);
  for (const [name, emit] of items) {
    p.str(name);
    emit(p);
  }
  return p.op(0x75, 0x2e).bytes();
}

// A minimal stored/deflated zip writer: like torch, sizes and CRC go in the
// central directory and a data descriptor, zeros in the local header.
function buildZip(
  members: { name: string; data: Uint8Array; deflate?: boolean }[],
): Uint8Array {
  const parts: Uint8Array[] = [];
  const central: Uint8Array[] = [];
  let offset = 0;
  const fields = (spec: [number, 2 | 4][]): Uint8Array => {
    const b = new Uint8Array(spec.reduce((n, [, w]) => n + w, 0));
    const v = new DataView(b.buffer);
    let at = 0;
    for (const [x, w] of spec) {
      if (w === 2) v.setUint16(at, x, true);
      else v.setUint32(at, x, true);
      at += w;
    }
    return b;
  };
  const add = (b: Uint8Array) => {
    parts.push(b);
    offset += b.byteLength;
  };
  for (const m of members) {
    const payload = m.deflate ? new Uint8Array(zlib.deflateRawSync(m.data)) : m.data;
    const name = new TextEncoder().encode(m.name);
    const method = m.deflate ? 8 : 0;
    const crc = zlib.crc32(m.data);
    const at = offset;
    add(
      fields([
        [0x04034b50, 4],
        [20, 2],
        [8, 2],
        [method, 2],
        [0, 4],
        [0, 4],
        [0, 4],
        [0, 4],
        [name.length, 2],
        [0, 2],
      ]),
    );
    add(name);
    add(payload);
    add(
      fields([[0x08074b50, 4], [crc, 4], [payload.length, 4], [
        m.data.length,
        4,
      ]]),
    );
    central.push(
      fields([
        [0x02014b50, 4],
        [20, 2],
        [20, 2],
        [8, 2],
        [method, 2],
        [0, 4],
        [crc, 4],
        [payload.length, 4],
        [m.data.length, 4],
        [name.length, 2],
        [0, 2],
        [0, 2],
        [0, 2],
        [0, 2],
        [0, 4],
        [at, 4],
      ]),
      name,
    );
  }
  const cdOffset = offset;
  const cdSize = central.reduce((n, b) => n + b.byteLength, 0);
  central.forEach(add);
  add(
    fields([
      [0x06054b50, 4],
      [0, 2],
      [0, 2],
      [members.length, 2],
      [members.length, 2],
      [cdSize, 4],
      [cdOffset, 4],
      [0, 2],
    ]),
  );
  const out = new Uint8Array(offset);
  let pos = 0;
  for (const b of parts) {
    out.set(b, pos);
    pos += b.byteLength;
  }
  return out;
}

const f32 = (n: number, scale = 1) =>
  new Uint8Array(Float32Array.from({ length: n }, (_, i) => i * scale).buffer);

/** Reference gather of a strided view, element by element. */
function gather(
  storage: Uint8Array,
  es: number,
  offset: number,
  shape: number[],
  stride: number[],
): Uint8Array {
  const numel = shape.reduce((a, b) => a * b, 1);
  const out = new Uint8Array(numel * es);
  const idx = shape.map(() => 0);
  for (let n = 0; n < numel; n++) {
    let e = offset;
    for (let d = 0; d < shape.length; d++) e += idx[d]! * stride[d]!;
    out.set(storage.subarray(e * es, e * es + es), n * es);
    for (let d = shape.length - 1; d >= 0; d--) {
      if (++idx[d]! < shape[d]!) break;
      idx[d] = 0;
    }
  }
  return out;
}

function torchZip(
  pkl: Uint8Array,
  storages: Record<string, Uint8Array>,
  options: { deflate?: boolean; extra?: { name: string; data: Uint8Array }[] } = {},
): ByteSource {
  return bytesSource(
    buildZip([
      { name: "model/data.pkl", data: pkl },
      ...Object.entries(storages).map(([k, data]) => ({
        name: `model/data/${k}`,
        data,
        deflate: options.deflate ?? false,
      })),
      ...(options.extra ?? []),
      { name: "model/version", data: new TextEncoder().encode("3\n") },
    ]),
  );
}

for (const deflate of [false, true]) {
  Deno.test(`pytorch: views, parameters, tied weights and skipped values${deflate ? " (deflated storages)" : ""}`, async () => {
    const s0 = f32(60); // shared by several views
    const s1 = new Uint8Array(Float64Array.from([1.5, -2, 3]).buffer);
    const s2 = new Uint8Array([0x38, 0x40, 0x7f, 0x00]); // float8 bytes, untyped
    const pkl = stateDict([
      // 3-D permuted view with an offset: shape [3,4,2], strides [1,6,3] from 10.
      [
        "permuted",
        (p) =>
          emitTensor(p, {
            key: "0",
            numel: 60,
            offset: 10,
            shape: [3, 4, 2],
            stride: [1, 6, 3],
          }),
      ],
      ["param", (p) => {
        emitTensor(p, {
          key: "0",
          numel: 60,
          offset: 4,
          shape: [2, 5],
          param: true,
        });
        p.op(0x71, 200); // BINPUT 200: the same object again below
      }],
      ["tied", (p) => p.op(0x68, 200)], // BINGET 200
      ["count", (p) => p.int(7)],
      ["note", (p) => p.str("not a tensor")],
      ["list", (p) => p.op(0x5d, 0x28).int(1).str("x").op(0x65)],
      [
        "scalar",
        (p) =>
          emitTensor(p, {
            cls: "DoubleStorage",
            key: "1",
            numel: 3,
            offset: 2,
            shape: [],
          }),
      ],
      [
        "broadcast",
        (p) =>
          emitTensor(p, {
            cls: "DoubleStorage",
            key: "1",
            numel: 3,
            shape: [2, 3],
            stride: [0, 1],
          }),
      ],
      [
        "empty",
        (p) => emitTensor(p, { key: "0", numel: 60, offset: 60, shape: [0, 5] }),
      ],
      ["f8", (p) => {
        // _rebuild_tensor_v3(UntypedStorage, 1, (3,), (1,), False, {}, torch.float8_e4m3fn)
        p.global("torch._utils", "_rebuild_tensor_v3").op(0x28);
        p.op(0x28).str("storage").global("torch", "UntypedStorage").str("2")
          .str("cpu").int(4).op(0x74, 0x51);
        p.int(1).ints([3]).ints([1]).op(0x89, 0x7d).global(
          "torch",
          "float8_e4m3fn",
        ).op(0x74, 0x52);
      }],
    ]);
    const tensors = await readPytorchZip(
      torchZip(pkl, { "0": s0, "1": s1, "2": s2 }, { deflate }),
    );
    assert.deepEqual(tensors.map((t) => [t.name, t.dtype, t.shape]), [
      ["permuted", "F32", [3, 4, 2]],
      ["param", "F32", [2, 5]],
      ["tied", "F32", [2, 5]],
      ["scalar", "F64", []],
      ["broadcast", "F64", [2, 3]],
      ["empty", "F32", [0, 5]],
      ["f8", "F8_E4M3", [3]],
    ]);
    const bytes = await Promise.all(tensors.map(tensorBytes));
    assert.deepEqual(bytes[0], gather(s0, 4, 10, [3, 4, 2], [1, 6, 3]));
    assert.deepEqual(bytes[1], s0.subarray(16, 56));
    assert.deepEqual(bytes[2], bytes[1]);
    assert.deepEqual(bytes[3], s1.subarray(16, 24));
    assert.deepEqual(bytes[4], new Uint8Array([...s1, ...s1]));
    assert.deepEqual(bytes[5], new Uint8Array(0));
    assert.deepEqual(bytes[6], s2.subarray(1, 4));
  });
}

Deno.test("pytorch: large tensors stream in chunks of at most one block, transposed ones too", async () => {
  const n = 1500; // 1500 x 1500 f32 = 9 MB
  const storage = f32(n * n, 0.5);
  const pkl = stateDict([
    ["w", (p) => emitTensor(p, { key: "0", numel: n * n, shape: [n, n] })],
    [
      "w_t",
      (p) =>
        emitTensor(p, {
          key: "0",
          numel: n * n,
          shape: [n, n],
          stride: [1, n],
        }),
    ],
  ]);
  const [w, wt] = await readPytorchZip(torchZip(pkl, { "0": storage }));
  let chunks = 0;
  for await (const c of w!.chunks()) {
    assert.ok(c.byteLength <= BLOCK_BYTES);
    chunks++;
  }
  assert.equal(chunks, Math.ceil((n * n * 4) / BLOCK_BYTES));
  assert.deepEqual(await tensorBytes(w!), storage);
  assert.equal(
    sha256(await tensorBytes(wt!)),
    sha256(gather(storage, 4, 0, [n, n], [1, n])),
  );
});

Deno.test("pytorch: protocol 4 pickles (FRAME, SHORT_BINUNICODE, STACK_GLOBAL, MEMOIZE)", async () => {
  const enc = new TextEncoder();
  const short = (s: string) => [0x8c, enc.encode(s).length, ...enc.encode(s)];
  const body = [
    0x7d,
    0x94,
    0x28,
    ...short("w"),
    0x94,
    ...short("torch._utils"),
    ...short("_rebuild_tensor_v2"),
    0x93,
    0x94,
    0x28,
    0x28,
    ...short("storage"),
    ...short("torch"),
    ...short("HalfStorage"),
    0x93,
    0x94,
    ...short("k"),
    ...short("cpu"),
    0x4b,
    4,
    0x74,
    0x51,
    0x4b,
    1,
    0x4b,
    3,
    0x85,
    0x4b,
    1,
    0x85,
    0x89,
    ...short("collections"),
    ...short("OrderedDict"),
    0x93,
    0x29,
    0x52,
    0x74,
    0x52,
    0x75,
    0x2e,
  ];
  const frame = [0x95, body.length, 0, 0, 0, 0, 0, 0, 0];
  const pkl = new Uint8Array([0x80, 4, ...frame, ...body]);
  const storage = new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8]);
  const [t, ...rest] = await readPytorchZip(
    torchZip(pkl, { k: storage }),
  );
  assert.equal(rest.length, 0);
  assert.deepEqual([t!.name, t!.dtype, t!.shape], ["w", "F16", [3]]);
  assert.deepEqual(await tensorBytes(t!), storage.subarray(2, 8));
});

Deno.test("pytorch: malformed checkpoints are refused with precise codes", async () => {
  const ok = (spec: Partial<TensorSpec> = {}) => (p: Pickle) =>
    emitTensor(p, { key: "0", numel: 10, shape: [10], ...spec });
  const storage = { "0": f32(10) };
  const cases: [string, Uint8Array, Record<string, Uint8Array>, string][] = [
    [
      "view past storage",
      stateDict([["w", ok({ offset: 1 })]]),
      storage,
      "bad-offsets",
    ],
    [
      "strided past storage",
      stateDict([["w", ok({ shape: [4], stride: [4] })]]),
      storage,
      "bad-offsets",
    ],
    [
      "storage larger than entry",
      stateDict([["w", ok({ numel: 11, shape: [11] })]]),
      storage,
      "bad-offsets",
    ],
    [
      "missing storage",
      stateDict([["w", ok({ key: "9" })]]),
      storage,
      "bad-zip",
    ],
    [
      "quantized storage",
      stateDict([["w", ok({ cls: "QInt8Storage" })]]),
      storage,
      "unsupported-dtype",
    ],
    [
      "forbidden storage class",
      stateDict([["w", ok({ cls: "Evil" })]]),
      storage,
      "forbidden-global",
    ],
    [
      "stride rank mismatch",
      stateDict([["w", ok({ shape: [2, 5], stride: [5] })]]),
      storage,
      "bad-pickle",
    ],
    [
      "no STOP",
      stateDict([["w", ok()]]).subarray(0, 50),
      storage,
      "bad-pickle",
    ],
  ];
  for (const [label, pkl, storages, code] of cases) {
    await assert.rejects(
      (async () => {
        for (const t of await readPytorchZip(torchZip(pkl, storages))) {
          await tensorBytes(t);
        }
      })(),
      isFormatError(code),
      label,
    );
  }
  // Only a little-endian byte order is read.
  const bigEndian = torchZip(stateDict([["w", ok()]]), storage, {
    extra: [{ name: "model/byteorder", data: new TextEncoder().encode("big") }],
  });
  await assert.rejects(
    readPytorchZip(bigEndian),
    isFormatError("unsupported-dtype"),
  );
  const little = torchZip(stateDict([["w", ok()]]), storage, {
    extra: [{
      name: "model/byteorder",
      data: new TextEncoder().encode("little"),
    }],
  });
  assert.equal((await readPytorchZip(little)).length, 1);
  // An empty state dict is fine, and so is a root without tensors.
  assert.deepEqual(await readPytorchZip(torchZip(stateDict([]), {})), []);
  assert.deepEqual(
    await readPytorchZip(torchZip(new Pickle().op(0x80, 2, 0x5d, 0x2e).bytes(), {})),
    [],
  );
  // A state dict inside a dict is read, its tensors named by their path.
  const nested = await readPytorchZip(torchZip(
    stateDict([[
      "state_dict",
      (p) => p.op(0x7d, 0x28).str("w").op(...ok()(new Pickle()).b, 0x75),
    ]]),
    storage,
  ));
  assert.deepEqual(nested.map((t) => [t.name, t.shape]), [["state_dict.w", [10]]]);
});

// --- Legacy, hand-made ----------------------------------------------------------

function legacyFile(
  main: Uint8Array,
  keys: string[],
  storages: [number, Uint8Array][],
  littleEndian = true,
): Uint8Array {
  const magic = [
    0x80,
    2,
    0x8a,
    10,
    0x6c,
    0xfc,
    0x9c,
    0x46,
    0xf9,
    0x20,
    0x6a,
    0xa8,
    0x50,
    0x19,
    0x2e,
  ];
  const version = [0x80, 2, 0x4d, 0xe9, 0x03, 0x2e];
  const sys = new Pickle().op(0x80, 2, 0x7d, 0x28).str("little_endian").op(
    littleEndian ? 0x88 : 0x89,
    0x75,
    0x2e,
  );
  const list = new Pickle().op(0x80, 2, 0x5d, 0x28);
  for (const k of keys) list.str(k);
  list.op(0x65, 0x2e);
  const parts: number[] = [...magic, ...version, ...sys.b, ...main, ...list.b];
  for (const [count, data] of storages) {
    const c = new Uint8Array(8);
    new DataView(c.buffer).setBigUint64(0, BigInt(count), true);
    parts.push(...c, ...data);
  }
  return new Uint8Array(parts);
}

Deno.test("pytorch: legacy storage views and errors", async () => {
  const s = f32(12);
  const viewOf = (key: string, offset: number, size: number) => (p: Pickle) =>
    p.op(0x28).str(key).int(offset).int(size).op(0x74);
  const main = stateDict([
    [
      "whole",
      (p) => emitTensor(p, { key: "r", numel: 12, shape: [3, 4] }, true),
    ],
    [
      "view",
      (p) =>
        emitTensor(p, {
          key: "r",
          numel: 12,
          shape: [2, 2],
          stride: [1, 2],
          view: viewOf("v", 6, 4),
        }, true),
    ],
  ]);
  const tensors = await readPytorchLegacy(
    bytesSource(legacyFile(main, ["r"], [[12, s]])),
  );
  assert.deepEqual(tensors.map((t) => [t.name, t.shape]), [["whole", [3, 4]], [
    "view",
    [2, 2],
  ]]);
  assert.deepEqual(await tensorBytes(tensors[0]!), s);
  assert.deepEqual(
    await tensorBytes(tensors[1]!),
    gather(s.subarray(24), 4, 0, [2, 2], [1, 2]),
  );

  const cases: [string, Uint8Array, string][] = [
    ["count mismatch", legacyFile(main, ["r"], [[11, s]]), "bad-offsets"],
    [
      "storage past end",
      legacyFile(main, ["r"], [[12, s.subarray(0, 40)]]),
      "truncated",
    ],
    ["missing key", legacyFile(main, [], []), "bad-offsets"],
    ["unknown key", legacyFile(main, ["r", "zz"], [[12, s]]), "bad-pickle"],
    [
      "big endian",
      legacyFile(main, ["r"], [[12, s]], false),
      "unsupported-dtype",
    ],
    [
      "view outside root",
      legacyFile(
        stateDict([[
          "v",
          (p) =>
            emitTensor(p, {
              key: "r",
              numel: 12,
              shape: [4],
              view: viewOf("v", 10, 4),
            }, true),
        ]]),
        ["r"],
        [[12, s]],
      ),
      "bad-pickle",
    ],
  ];
  for (const [label, bytes, code] of cases) {
    await assert.rejects(
      readPytorchLegacy(bytesSource(bytes)),
      isFormatError(code),
      label,
    );
  }
});

// --- The unpickler ------------------------------------------------------------

const opts = { file: "<test>", format: "pytorch-zip" as const };
const run = (bytes: number[] | Uint8Array) => unpickle(new Uint8Array(bytes), 0, opts).value;

Deno.test("pickle: values and opcodes", () => {
  assert.equal(run([0x80, 2, 0x8a, 1, 0xff, 0x2e]), -1); // LONG1 -1
  assert.equal(run([0x8a, 0, 0x2e]), 0);
  assert.equal(run([0x4a, 0xfe, 0xff, 0xff, 0xff, 0x2e]), -2); // BININT
  assert.equal(run([0x8a, 9, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0x2e]), 1n << 64n);
  assert.equal(run([0x47, 0x3f, 0xf8, 0, 0, 0, 0, 0, 0, 0x2e]), 1.5); // BINFLOAT
  assert.equal(run([...new TextEncoder().encode("I42\n"), 0x2e]), 42);
  assert.equal(run([...new TextEncoder().encode("S'a\\nb'\n"), 0x2e]), "a\nb");
  assert.deepEqual(run([0x43, 2, 9, 8, 0x2e]), new Uint8Array([9, 8]));
  // _codecs.encode('\xff', 'latin1') is how protocol 2 pickles bytes.
  const codecs = new Pickle().global("_codecs", "encode").op(0x28).str("\xff")
    .str("latin1").op(0x74, 0x52, 0x2e);
  assert.deepEqual(run(codecs.bytes()), new Uint8Array([0xff]));
  const dict = run([
    0x7d,
    0x28,
    0x4b,
    1,
    0x4b,
    2,
    0x4b,
    3,
    0x4b,
    4,
    0x75,
    0x2e,
  ]) as Map<PyValue, PyValue>;
  assert.deepEqual([...dict], [[1, 2], [3, 4]]);
  const tuple = run([0x4b, 1, 0x4b, 2, 0x86, 0x2e]) as PyValue[];
  assert.ok(Object.isFrozen(tuple));
  assert.deepEqual(tuple, [1, 2]);
  const call = run(
    new Pickle().global("torch._utils", "_rebuild_tensor_v2").op(
      0x29,
      0x52,
      0x2e,
    ).bytes(),
  );
  assert.ok(
    call instanceof PyCall &&
      call.fn.qualified === "torch._utils._rebuild_tensor_v2",
  );
  // The pickle's end is reported, so pickles can follow each other.
  assert.equal(
    unpickle(new Uint8Array([0x4e, 0x2e, 0x4e, 0x2e]), 2, opts).end,
    4,
  );
});

Deno.test("pickle: forbidden globals are refused by name, via every opcode", () => {
  const enc = new TextEncoder();
  const short = (s: string) => [0x8c, s.length, ...enc.encode(s)];
  const cases: [number[], string][] = [
    [[...new Pickle().global("os", "system").b, 0x2e], "os.system"],
    [
      [0x80, 4, ...short("builtins"), ...short("eval"), 0x93, 0x2e],
      "builtins.eval",
    ],
    [[0x28, ...enc.encode("iposix\nsystem\n"), 0x2e], "posix.system"],
    [[...new Pickle().global("torch", "load").b, 0x2e], "torch.load"],
    [
      [...new Pickle().global("torch._utils", "_rebuild_tensor_v2x").b, 0x2e],
      "torch._utils._rebuild_tensor_v2x",
    ],
  ];
  for (const [bytes, global] of cases) {
    assert.throws(
      () => run(bytes),
      (e) => e instanceof ForbiddenGlobalError && e.global === global,
    );
  }
});

Deno.test("pickle: malformed input is refused without large allocations", () => {
  const cases: number[][] = [
    [0xff], // unknown opcode
    [0x58, 0xf0, 0xff, 0xff, 0xff], // BINUNICODE of 4 GB
    [0x8d, 0, 0, 0, 0, 0, 0, 0x10, 0], // BINUNICODE8 of 2^52
    [0x8e, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff], // BINBYTES8 beyond 2^53
    [0x68, 5, 0x2e], // BINGET of an empty memo
    [0x52, 0x2e], // REDUCE on an empty stack
    [0x28, 0x4e, 0x2e], // STOP inside a MARK
    [0x4e, 0x4e, 0x2e], // two values left
    [0x4e], // no STOP
    [0x8b, 0xff, 0xff, 0xff, 0x7f], // LONG4 too long
    [0x58, 2, 0, 0, 0, 0xc3, 0x28, 0x2e], // invalid UTF-8
    [0x4e, 0x29, 0x52, 0x2e], // calling None
    [0x4b, 1, 0x4b, 2, 0x61, 0x2e], // APPEND to an int
    [0x29, 0x4b, 2, 0x61, 0x2e], // APPEND to a tuple
    [0x80, 9], // unknown protocol
    [0x97], // out-of-band buffer
    [0x95, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0], // FRAME past the end
    [...new TextEncoder().encode("Fbad\n"), 0x2e],
    new Array(70_000).fill(0x28), // too many MARKs
    [0x51, 0x2e], // persistent id without a loader
  ];
  for (const bytes of cases) {
    assert.throws(
      () => run(bytes),
      isFormatError(),
      JSON.stringify(bytes.slice(0, 12)),
    );
  }
  // A window that ends mid-pickle asks for more instead.
  assert.throws(
    () =>
      unpickle(new Uint8Array([0x58, 10, 0, 0, 0, 0x61]), 0, {
        ...opts,
        partial: true,
      }),
    (e) => e instanceof NeedMoreInput,
  );
});

// --- Objects changed after they are built -------------------------------------

const tooLargeOrBad = (code: string, ...says: string[]) => (e: unknown) =>
  e instanceof ModelFormatError && e.code === code &&
  says.every((s) => e.message.includes(s));

Deno.test("pickle: BUILD on a call's result is refused, naming the call; an OrderedDict keeps its BUILD states", () => {
  const built = (
    fn: [string, string],
    state: number[],
  ) => [...new Pickle().global(...fn).op(0x29, 0x52).b, ...state, 0x62, 0x2e];
  for (
    const fn of [
      ["torch._utils", "_rebuild_tensor_v2"],
      ["torch._utils", "_rebuild_parameter"],
      ["torch", "Tensor"],
      ["torch.nn.parameter", "Parameter"],
      ["torch", "device"],
    ] as [string, string][]
  ) {
    assert.throws(
      () => run(built(fn, [0x4e])),
      tooLargeOrBad("bad-pickle", "BUILD", `${fn[0]}.${fn[1]}`),
      fn.join("."),
    );
  }
  // A state dict's _metadata: kept for the reader to check, twice if BUILD is.
  const od = run(built(["collections", "OrderedDict"], [0x7d, 0x62, 0x7d]));
  assert.ok(od instanceof PyOrderedDict);
  assert.equal(od.states.length, 2);
  // (dict, slots) pairs are what Python takes too; anything else is refused.
  assert.ok(
    run(built(["collections", "OrderedDict"], [0x4e, 0x7d, 0x86])) instanceof PyOrderedDict,
  );
  assert.throws(
    () => run(built(["collections", "OrderedDict"], [0x4b, 5])),
    tooLargeOrBad("bad-pickle", "BUILD"),
  );
  // A plain dict has no attributes: Python fails, and so do we.
  assert.throws(
    () => run([0x7d, 0x7d, 0x62, 0x2e]),
    tooLargeOrBad("bad-pickle", "BUILD", "plain dict"),
  );
});

Deno.test("pickle: a container cannot change after a call has read it", () => {
  const v2 = new Pickle().global("torch._utils", "_rebuild_tensor_v2").b;
  // list L (memo 0); _rebuild_tensor_v2((L,)); then an append to L.
  const after = (nested: boolean, change: number[]) => [
    0x5d,
    0x71,
    0,
    0x30, // EMPTY_LIST, BINPUT 0, POP
    ...v2,
    0x28,
    ...(nested ? [0x28, 0x68, 0, 0x74] : [0x68, 0]), // L or (L,)
    0x74,
    0x52,
    0x30, // TUPLE, REDUCE, POP
    0x68,
    0,
    ...change,
    0x2e,
  ];
  for (const nested of [false, true]) {
    assert.throws(
      () => run(after(nested, [0x4e, 0x61])),
      tooLargeOrBad("bad-pickle", "APPEND", "after passing it to torch._utils._rebuild_tensor_v2"),
    );
    assert.throws(
      () => run(after(nested, [0x28, 0x4e, 0x65])),
      tooLargeOrBad("bad-pickle", "APPENDS"),
    );
  }
  // A dict inside the arguments, changed later.
  assert.throws(
    () =>
      run([
        0x7d,
        0x71,
        0,
        0x30,
        ...v2,
        0x68,
        0,
        0x85,
        0x52,
        0x30,
        0x68,
        0,
        0x4b,
        1,
        0x4b,
        2,
        0x73,
        0x2e,
      ]),
    tooLargeOrBad("bad-pickle", "SETITEM"),
  );
  // Before the call, or for a list no call has read, changes are fine; a
  // set (or OrderedDict, torch.Size) copies its argument at the call.
  assert.deepEqual(run([0x5d, 0x4e, 0x61, 0x2e]), [null]);
  const set = run([
    0x5d,
    0x71,
    0,
    0x4b,
    1,
    0x61,
    0x30,
    ...new Pickle().global("builtins", "set").b,
    0x68,
    0,
    0x85,
    0x52,
    0x30,
    0x68,
    0,
    0x4b,
    2,
    0x61,
    0x2e,
  ]);
  assert.deepEqual(set, [1, 2]);
});

Deno.test("pickle: NEWOBJ instantiates only classes, and REDUCE takes only a tuple, as in Python", () => {
  const g = (m: string, n: string) => new Pickle().global(m, n).b;
  assert.throws(
    () => run([...g("torch._utils", "_rebuild_tensor_v2"), 0x29, 0x81, 0x2e]),
    tooLargeOrBad("bad-pickle", "NEWOBJ", "not a class"),
  );
  // OrderedDict.__new__ and set.__new__ ignore their arguments: refused.
  assert.throws(
    () => run([...g("collections", "OrderedDict"), 0x5d, 0x85, 0x81, 0x2e]),
    tooLargeOrBad("bad-pickle", "OrderedDict", "NEWOBJ"),
  );
  assert.throws(
    () => run([...g("builtins", "set"), 0x5d, 0x4b, 1, 0x61, 0x85, 0x81, 0x2e]),
    tooLargeOrBad("bad-pickle", "set", "NEWOBJ"),
  );
  assert.ok(run([...g("collections", "OrderedDict"), 0x29, 0x81, 0x2e]) instanceof PyOrderedDict);
  assert.ok(run([...g("torch.nn.parameter", "Parameter"), 0x29, 0x81, 0x2e]) instanceof PyCall);
  // REDUCE with a list of arguments: C pickle refuses it.
  assert.throws(
    () => run([...g("torch._utils", "_rebuild_tensor_v2"), 0x5d, 0x52, 0x2e]),
    tooLargeOrBad("bad-pickle", "not a tuple"),
  );
  // torch.Size holds integers only.
  assert.throws(
    () => run([...g("torch", "Size"), 0x4e, 0x85, 0x85, 0x52, 0x2e]),
    tooLargeOrBad("bad-pickle", "torch.Size"),
  );
});

Deno.test("pickle: Python 2 strings decode as UTF-8 like torch.load; True and False are the dict keys 1 and 0", () => {
  assert.equal(run([0x55, 2, 0xc3, 0xa9, 0x2e]), "é"); // SHORT_BINSTRING
  assert.equal(run([0x54, 2, 0, 0, 0, 0xc3, 0xa9, 0x2e]), "é"); // BINSTRING
  assert.equal(run([...new TextEncoder().encode("S'\\xc3\\xa9'\n"), 0x2e]), "é"); // STRING
  assert.throws(() => run([0x55, 1, 0xff, 0x2e]), tooLargeOrBad("bad-pickle", "UTF-8"));
  const d = run([0x7d, 0x28, 0x88, 0x4b, 7, 0x89, 0x4b, 8, 0x4b, 1, 0x4b, 9, 0x75, 0x2e]);
  assert.deepEqual([...(d as Map<PyValue, PyValue>)], [[1, 9], [0, 8]]);
});

Deno.test("pickle: copies count against the bounds, references do not (a 240 KB pickle stays small)", () => {
  // L holds itself 120,000 times (memo references: cheap), then set(L) is
  // called 300 times: each call copies L's 120,000 references.
  const p = new Pickle().op(0x80, 2, 0x5d, 0x71, 0, 0x28);
  for (let i = 0; i < 120_000; i++) p.op(0x68, 0);
  p.op(0x65).global("builtins", "set").op(0x71, 1, 0x30, 0x68, 0, 0x85, 0x71, 2, 0x30);
  const head = p.bytes();
  assert.equal(unpickle(new Uint8Array([...head, 0x2e]), 0, opts).end, head.length + 1);
  for (let i = 0; i < 300; i++) p.op(0x68, 1, 0x68, 2, 0x52, 0x30);
  const bomb = p.op(0x2e).bytes();
  assert.ok(bomb.length < 250_000);
  const t0 = performance.now();
  assert.throws(() => unpickle(bomb, 0, opts), tooLargeOrBad("too-large", "references"));
  assert.ok(performance.now() - t0 < 5000);
  // _codecs.encode of one 100 KB string, ten times: more bytes than the pickle.
  const text = "\xe9".repeat(100_000);
  const q = new Pickle().op(0x80, 2).str(text).op(0x71, 0, 0x30)
    .global("_codecs", "encode").op(0x71, 1, 0x30, 0x5d, 0x28);
  for (let i = 0; i < 10; i++) q.op(0x68, 1, 0x68, 0).str("latin1").op(0x86, 0x52);
  assert.throws(
    () => run(q.op(0x65, 0x2e).bytes()),
    tooLargeOrBad("too-large", "_codecs.encode"),
  );
});

// --- Every tensor reachable from the root, by path -----------------------------

type E = (p: Pickle) => void;
const S = (s: string): E => (p) => p.str(s);
const I = (n: number): E => (p) => p.int(n);
const dict = (...kv: [E, E][]): E => (p) => {
  p.op(0x7d, 0x28);
  for (const [k, v] of kv) {
    k(p);
    v(p);
  }
  p.op(0x75);
};
const list = (...xs: E[]): E => (p) => {
  p.op(0x5d, 0x28);
  xs.forEach((x) => x(p));
  p.op(0x65);
};
const tuple = (...xs: E[]): E => (p) => {
  p.op(0x28);
  xs.forEach((x) => x(p));
  p.op(0x74);
};
const raw = (...ops: number[]): E => (p) => p.op(...ops);
const T = (spec: Partial<TensorSpec> = {}): E => (p) =>
  emitTensor(p, { key: "0", numel: 10, shape: [10], ...spec });
const pickleOf = (root: E): Uint8Array => {
  const p = new Pickle().op(0x80, 2);
  root(p);
  return p.op(0x2e).bytes();
};
const readRoot = (root: E, storages: Record<string, Uint8Array> = { "0": f32(10) }) =>
  readPytorchZip(torchZip(pickleOf(root), storages));

Deno.test("pytorch: every tensor reachable from the root is listed, named by its path", async () => {
  const tensors = await readRoot(dict(
    [S("model"), dict([S("encoder.weight"), T({ shape: [2, 5] })], [S("bias"), T({ shape: [3] })])],
    [
      S("optimizer"),
      dict(
        [
          S("state"),
          dict([I(0), dict([S("step"), I(3)], [S("exp_avg"), T({ offset: 4, shape: [6] })])]),
        ],
        // A tuple shared by two param groups: walked once per path, no tensor.
        [
          S("param_groups"),
          list(
            dict([
              S("betas"),
              raw(0x47, 0x3f, 0xec, 0xcc, 0xcc, 0xcc, 0xcc, 0xcc, 0xcd, 0x85, 0x71, 90),
            ]),
            dict([S("betas"), raw(0x68, 90)]),
          ),
        ],
      ),
    ],
    [S("layers"), list(T({ shape: [1] }), tuple(T({ shape: [2] }), list(T({ shape: [] }))))],
    [raw(0x8a, 9, 0, 0, 0, 0, 0, 0, 0, 0, 1), T({ shape: [4] })], // the key 2**64
    [raw(0x88), T({ shape: [5] })], // the key True, which is 1
    [S("epoch"), I(3)],
    [S("device"), (p) => p.global("torch", "device").str("cpu").op(0x85, 0x52)],
    [S("dtype"), (p) => p.global("torch", "float32")],
  ));
  assert.deepEqual(tensors.map((t) => [t.name, t.shape]), [
    ["model.encoder.weight", [2, 5]],
    ["model.bias", [3]],
    ["optimizer.state.0.exp_avg", [6]],
    ["layers.0", [1]],
    ["layers.1.0", [2]],
    ["layers.1.1.0", []],
    ["18446744073709551616", [4]],
    ["1", [5]],
  ]);
  // A tensor that is the root is named like a .npy file's array.
  const root = await readRoot(T({ shape: [2] }));
  assert.deepEqual(root.map((t) => t.name), ["array"]);
  // Parameters and tensors wrapped by _rebuild_from_type_v2(…, torch.Tensor, …) are the tensor.
  const wrapped = await readRoot(dict(
    [S("p"), (p) => {
      p.global("torch.nn.parameter", "Parameter");
      T({ shape: [3] })(p);
      p.op(0x85, 0x81); // NEWOBJ Parameter(t): requires_grad defaults to True
    }],
    [S("f"), (p) => {
      p.global("torch._tensor", "_rebuild_from_type_v2").op(0x28);
      p.global("torch._utils", "_rebuild_tensor_v2").global("torch", "Tensor");
      p.op(0x28, 0x28).str("storage").global("torch", "FloatStorage").str("0").str("cpu").int(10)
        .op(0x74, 0x51).int(1).ints([2]).ints([1]).op(0x89).global("collections", "OrderedDict")
        .op(0x29, 0x52, 0x74, 0x7d, 0x74, 0x52);
    }],
  ));
  assert.deepEqual(wrapped.map((t) => [t.name, t.shape]), [["p", [3]], ["f", [2]]]);
  assert.deepEqual(await tensorBytes(wrapped[1]!), f32(10).subarray(4, 12));
});

Deno.test("pytorch: tensors without a name, and calls that are not tensors, are refused", async () => {
  const cases: [string, E, string, string[]][] = [
    ["float key", dict([raw(0x47, 0x3f, 0xf8, 0, 0, 0, 0, 0, 0), T()]), "bad-pickle", [
      "1.5",
      "key",
    ]],
    ["None key", dict([raw(0x4e), T()]), "bad-pickle", ["None"]],
    ["tuple key", dict([S("a"), dict([tuple(I(1)), T()])]), "bad-pickle", ['"a"', "key"]],
    ["tensor in a tuple key", dict([tuple(T()), I(1)]), "bad-pickle", ["dict key"]],
    [
      "set",
      dict([S("s"), (p) => {
        p.op(0x8f, 0x28);
        T()(p);
        p.op(0x90);
      }]),
      "bad-pickle",
      ['"s"', "set"],
    ],
    [
      "frozenset",
      dict([S("s"), (p) => {
        p.op(0x28);
        T()(p);
        p.op(0x91);
      }]),
      "bad-pickle",
      ["set"],
    ],
    ["collision", dict([S("a.b"), T()], [S("a"), dict([S("b"), T()])]), "bad-pickle", [
      '"a.b"',
      "twice",
    ]],
    ["int and str key", dict([S("0"), T()], [I(0), T()]), "bad-pickle", ['"0"', "twice"]],
    [
      "cycle",
      (p) => {
        p.op(0x5d, 0x71, 7, 0x68, 7, 0x61); // L = []; L.append(L)
        T()(p);
        p.op(0x61);
      },
      "bad-pickle",
      ["contains itself"],
    ],
    [
      "bare storage",
      dict([S("s"), (p) => {
        p.op(0x28).str("storage").global("torch", "FloatStorage").str("0").str("cpu").int(10).op(
          0x74,
          0x51,
        );
      }]),
      "bad-pickle",
      ['storage "0"', '"s"'],
    ],
    [
      "storage class call",
      dict([S("s"), (p) => p.global("torch", "FloatStorage").op(0x29, 0x52)]),
      "bad-pickle",
      [
        "torch.FloatStorage",
      ],
    ],
    [
      "torch.Tensor()",
      dict([S("t"), (p) => p.global("torch", "Tensor").op(0x29, 0x52)]),
      "bad-pickle",
      [
        '"t"',
        "torch.Tensor",
      ],
    ],
    [
      "device with a tensor",
      dict([S("d"), (p) => {
        p.global("torch", "device");
        T()(p);
        p.op(0x85, 0x52);
      }]),
      "bad-pickle",
      ["torch.device"],
    ],
    [
      "parameter of a non-tensor",
      dict([S("p"), (p) => {
        p.global("torch._utils", "_rebuild_parameter").int(3).op(0x89, 0x7d, 0x87, 0x52);
      }]),
      "bad-pickle",
      ['"p"', "not a tensor"],
    ],
    [
      "parameter of integers (requires_grad defaults to True)",
      dict([S("p"), (p) => {
        p.global("torch.nn.parameter", "Parameter");
        T({ cls: "LongStorage", numel: 3, shape: [3] })(p);
        p.op(0x85, 0x81);
      }]),
      "bad-pickle",
      ["requires_grad", "I64"],
    ],
    [
      "v2 with 5 arguments",
      dict([S("w"), (p) => {
        p.global("torch._utils", "_rebuild_tensor_v2").op(0x28, 0x28).str("storage").global(
          "torch",
          "FloatStorage",
        )
          .str("0").str("cpu").int(10).op(0x74, 0x51).int(0).ints([1]).ints([1]).op(
            0x89,
            0x74,
            0x52,
          );
      }]),
      "bad-pickle",
      ["5 arguments"],
    ],
  ];
  for (const [label, root, code, says] of cases) {
    await assert.rejects(
      readRoot(root, { "0": f32(10), "1": f32(10) }),
      tooLargeOrBad(code, ...says),
      label,
    );
  }
});

// --- Work bounded by the file's size ---------------------------------------------

Deno.test("pytorch: many names or views of one storage are refused before any storage is read", async () => {
  const n = 1 << 14; // a 64 KiB storage
  const storage = f32(n);
  // 1,000 names for one tensor (a memo reference each): 128 MB to hash.
  const names = (count: number): E => (p) => {
    p.op(0x7d, 0x28).str("w0");
    T({ numel: n, shape: [n] })(p);
    p.op(0x71, 200);
    for (let i = 1; i < count; i++) p.str(`w${i}`).op(0x68, 200);
    p.op(0x75);
  };
  const zip = buildZip([
    { name: "model/data.pkl", data: pickleOf(names(1000)) },
    { name: "model/data/0", data: storage },
  ]);
  const entry = (await readZipDirectory(bytesSource(zip))).find((e) => e.name === "model/data/0")!;
  const storageAt = findData(zip, entry.localHeaderOffset);
  const source = recording(zip);
  await assert.rejects(
    readPytorchZip(source),
    tooLargeOrBad("too-large", 'storage "0"', "16 times"),
  );
  // (The first read is the end-record search over the file's last 64 KiB.)
  assert.ok(
    source.reads.slice(1).every(([o, l]) =>
      o + l <= storageAt || o >= storageAt + storage.byteLength
    ),
    JSON.stringify(source.reads),
  );
  // A few names (tied weights) are fine.
  assert.equal((await readRoot(names(8), { "0": storage })).length, 8);
  // A strided view that touches the whole storage to gather 2 elements, 20 times.
  const strided: E = (p) => {
    p.op(0x7d, 0x28).str("s0");
    T({ numel: n, shape: [2], stride: [n - 1] })(p);
    p.op(0x71, 200);
    for (let i = 1; i < 20; i++) p.str(`s${i}`).op(0x68, 200);
    p.op(0x75);
  };
  await assert.rejects(
    readRoot(strided, { "0": storage }),
    tooLargeOrBad("too-large", 'storage "0"'),
  );
  // A broadcast view (stride 0) of 2^20 elements from one element.
  await assert.rejects(
    readRoot(dict([S("b"), T({ numel: 1, shape: [1 << 20], stride: [0] })]), { "0": f32(1) }),
    tooLargeOrBad("too-large", 'storage "0"'),
  );
  // Tiny views at the end of a deflated storage: one inflation is shared by them all.
  const tail: E = (p) => {
    p.op(0x7d, 0x28).str("t0");
    T({ numel: n, offset: n - 1, shape: [1] })(p);
    p.op(0x71, 200);
    for (let i = 1; i < 20; i++) p.str(`t${i}`).op(0x68, 200);
    p.op(0x75);
  };
  assert.equal((await readPytorchZip(torchZip(pickleOf(tail), { "0": storage }))).length, 20);
  const deflated = await readPytorchZip(
    torchZip(pickleOf(tail), { "0": storage }, { deflate: true }),
  );
  assert.equal(deflated.length, 20);
});

Deno.test("pytorch: shared containers, deep nesting and high ranks stay bounded", async () => {
  // L0 = [t]; L(i) = [L(i-1), L(i-1)]: 2^40 paths to t in a few hundred bytes.
  const doubling = (leaf: E): E => (p) => {
    p.op(0x5d);
    leaf(p);
    p.op(0x61, 0x71, 0, 0x30);
    for (let i = 1; i <= 40; i++) p.op(0x5d, 0x28, 0x68, i - 1, 0x68, i - 1, 0x65, 0x71, i, 0x30);
    p.op(0x68, 40);
  };
  const withW = (x: E) => dict([S("w"), T()], [S("x"), x]);
  await assert.rejects(
    readRoot(withW(doubling(T({ shape: [1] })))),
    tooLargeOrBad("too-large", 'storage "0"'),
  );
  const t0 = performance.now();
  await assert.rejects(
    readRoot(withW(doubling(T({ shape: [0] })))),
    tooLargeOrBad("too-large", "tensors"),
  );
  assert.ok(performance.now() - t0 < 10_000);
  // Without a tensor below, a shared container is walked once.
  assert.deepEqual((await readRoot(withW(doubling(I(1))))).map((t) => t.name), ["w"]);
  // 70 nested lists.
  const deep: E = (p) => {
    for (let i = 0; i < 70; i++) p.op(0x5d);
    T()(p);
    for (let i = 0; i < 70; i++) p.op(0x61);
  };
  await assert.rejects(readRoot(withW(deep)), tooLargeOrBad("too-large", "64 deep"));
  // 65 dimensions.
  await assert.rejects(
    readRoot(dict([S("r"), T({ numel: 1, shape: new Array(65).fill(1) })])),
    tooLargeOrBad("bad-pickle", "65 dimensions"),
  );
});

// --- Fuzzing ------------------------------------------------------------------

function mutate(
  input: Uint8Array,
  rand: () => number,
  focus = input.length,
): Uint8Array {
  let b = input.slice();
  const n = 1 + Math.floor(rand() * 3);
  for (let i = 0; i < n && b.length > 0; i++) {
    const at = Math.floor(rand() * Math.min(focus, b.length));
    const kind = Math.floor(rand() * 7);
    if (kind === 0) b[at] = Math.floor(rand() * 256);
    else if (kind === 1) b[at]! ^= 1 << Math.floor(rand() * 8);
    else if (kind === 2) {
      b.set([0xff, 0xff, 0xff, 0x7f].slice(0, b.length - at), at);
    } else if (kind === 3) {
      b[at] = [
        0x28,
        0x2e,
        0x52,
        0x51,
        0x62,
        0x68,
        0x71,
        0x74,
        0x75,
        0x85,
      ][Math.floor(rand() * 10)]!;
    } else if (kind === 4) b = b.slice(0, at);
    else if (kind === 5) {
      b = new Uint8Array([
        ...b.subarray(0, at),
        ...b.subarray(at + 1 + Math.floor(rand() * 8)),
      ]);
    } else {
      const from = Math.floor(rand() * b.length);
      const piece = b.slice(from, from + 1 + Math.floor(rand() * 16));
      b = new Uint8Array([...b.subarray(0, at), ...piece, ...b.subarray(at)]);
    }
  }
  return b;
}

async function readFully(
  read: (s: ByteSource) => Promise<Tensor[]>,
  source: ByteSource,
): Promise<void> {
  for (const t of await read(source)) {
    let n = 0;
    for await (const c of t.chunks()) n += c.byteLength;
    if (n !== t.byteLength) {
      throw new Error(`${t.name}: read ${n} of ${t.byteLength} bytes`);
    }
  }
}

async function fuzz(
  label: string,
  seed: number,
  budgetMs: number,
  next: (rand: () => number) => Promise<void>,
): Promise<void> {
  const rand = prng(seed);
  const deadline = performance.now() + budgetMs;
  let runs = 0;
  let passed = 0;
  while (runs < 50_000 && performance.now() < deadline) {
    runs++;
    try {
      await next(rand);
      passed++;
    } catch (e) {
      if (!(e instanceof ModelFormatError)) {
        throw new Error(`${label} run ${runs}: unexpected ${e}`, { cause: e });
      }
    }
  }
  assert.ok(runs >= 500, `${label}: only ${runs} runs`);
  assert.ok(passed < runs, `${label}: every mutation parsed`);
}

Deno.test("pytorch: fuzzed zip and legacy checkpoints parse or throw ModelFormatError", async () => {
  // Zip checkpoints: mutate data.pkl and re-zip it with a valid CRC, so the
  // mutations reach the unpickler and the tensor checks, not just the CRC.
  const zips = await Promise.all(
    ["tensors/mixed.bin", "tiny-bert/pytorch_model.bin"].map(async (path) => {
      const bytes = fixture(path);
      const source = bytesSource(bytes);
      const entries = await readZipDirectory(source);
      return await Promise.all(
        entries.map(async (e) => ({
          name: e.name,
          data: await readEntry(source, e, 1 << 20),
        })),
      );
    }),
  );
  let i = 0;
  await fuzz("zip", 1, 1200, async (rand) => {
    const members = zips[i++ % zips.length]!;
    const pkl = members[0]!;
    const data = rand() < 0.8 ? mutate(pkl.data, rand) : pkl.data;
    let zip = buildZip([{ name: pkl.name, data }, ...members.slice(1)]);
    if (data === pkl.data) zip = mutate(zip, rand);
    await readFully(readPytorchZip, bytesSource(zip, "fuzz.bin"));
  });
  // Legacy checkpoints have no CRC: mutate the file itself.
  const legacy = fixture("tensors/mixed.legacy.bin");
  await fuzz("legacy", 2, 1200, async (rand) => {
    await readFully(
      readPytorchLegacy,
      bytesSource(mutate(legacy, rand), "fuzz.legacy.bin"),
    );
  });
});

Deno.test("pickle: fuzzed pickles parse or throw ModelFormatError", async () => {
  const source = bytesSource(fixture("tensors/mixed.bin"));
  const [entry] = await readZipDirectory(source);
  const pkl = await readEntry(source, entry!, 1 << 20);
  await fuzz("pickle", 3, 500, (rand) => {
    unpickle(mutate(pkl, rand), 0, { ...opts, persistentLoad: (pid) => pid });
    return Promise.resolve();
  });
});

// --- Reading as Python reads ----------------------------------------------------

/** Unpickles one protocol 0 opcode line (`V...`, `S...`, `I...`) as a value. */
const line = (text: string) => run([...Array.from(text, (c) => c.charCodeAt(0)), 0x0a, 0x2e]);

Deno.test("pickle: protocol 0 strings decode as Python's C unpickler decodes them (values checked with Python 3.11)", () => {
  // UNICODE is raw-unicode-escape: only an odd run of backslashes escapes.
  const unicode: [string, string][] = [
    ["V\\u0041", "A"],
    ["V\\\\u0041", "\\\\u0041"],
    ["V\\\\\\u0041", "\\\\A"],
    ["Vcaf\\u00e9", "café"],
    ["V\\U0001f600", "😀"],
    ["Vend\\", "end\\"],
    ["V\\x", "\\x"],
    ["V\xe9", "é"], // a byte is its own code point
  ];
  for (const [text, want] of unicode) assert.equal(line(text), want, text);
  // STRING is a quoted str literal (codecs.escape_decode), then UTF-8.
  const strings: [string, string][] = [
    ["S'a\\012b'", "a\nb"],
    ["S'\\0'", "\0"],
    ["S'\\1234'", "S4"],
    ["S'\\x41\\t'", "A\t"],
    ["S'\\''", "'"],
    ['S"a"', "a"],
    ["S'\\303\\251'", "é"],
  ];
  for (const [text, want] of strings) assert.equal(line(text), want, text);
  const refused: [string, string][] = [
    ["V\\ud800", "surrogate"], // a lone surrogate in Python
    ["V\\ud83d\\ude00", "surrogate"], // two code points in Python, one here
    ["V\\udfff", "surrogate"],
    ["V\\u12", "hex digits"], // Python: truncated \uXXXX escape
    ["V\\u12g4", "hex digits"],
    ["V\\U00110000", "U+10FFFF"],
    ["S'\\400'", "\\400"], // Python keeps the low byte, with a warning
    ["S'\\q'", "\\q"], // Python keeps it as written, with a warning
    ["S'\\8'", "\\8"],
    ["S'\\x4'", "\\x"], // Python: invalid \x escape
    ["S'a\\'", "backslash"], // Python: trailing \ in string
    ["S'a\"", "quoted"],
  ];
  for (const [text, says] of refused) {
    assert.throws(() => line(text), tooLargeOrBad("bad-pickle", says), text);
  }
});

Deno.test("pickle: protocol 0 numbers read as Python's C unpickler reads them (values checked with Python 3.11)", () => {
  const values: [string, PyValue][] = [
    ["I00", false],
    ["I01", true],
    ["I+1", true], // strtol reads 1 from 2 characters: a bool
    ["I-0", false],
    ["I-1", -1],
    ["I000", 0],
    ["I+5", 5],
    ["I99999999999999999999999", 99999999999999999999999n],
    ["L00L", 0],
    ["L10L", 10],
    ["L10", 10],
    ["L-0L", 0],
    ["Finf", Infinity],
    ["F-Infinity", -Infinity],
    ["FINF", Infinity],
    ["F.5", 0.5],
    ["F5.", 5],
    ["F+.5", 0.5],
    ["F-1.5E-3", -0.0015],
    ["F1e-400", 0],
  ];
  for (const [text, want] of values) assert.deepEqual(line(text), want, text);
  assert.ok(Number.isNaN(line("Fnan")));
  // Read otherwise by Python (strtol's base 0: 010 is 8, 0x10 is 16, -01
  // is -1), or refused by Python: refused here.
  for (
    const text of ["I010", "I0x10", "I-01", "I 5", "I1_0", "L010L", "L0x10L", "I"]
  ) {
    assert.throws(() => line(text), tooLargeOrBad("bad-pickle", "decimal"), text);
  }
  for (const text of ["F0x10", "F 1.5", "F1_0", "Fe5", "F.e5", "F1e400", "F-1e400", "F"]) {
    assert.throws(() => line(text), tooLargeOrBad("bad-pickle", "FLOAT"), text);
  }
});

Deno.test("pickle: dict keys are one key exactly when Python's are", () => {
  const f64 = (x: number) => {
    const b = new Uint8Array(8);
    new DataView(b.buffer).setFloat64(0, x, false);
    return [0x47, ...b];
  };
  const keys = (...ops: number[][]) => {
    const p = new Pickle().op(0x7d, 0x28);
    ops.forEach((k, i) => p.op(...k).int(i));
    return [...(run(p.op(0x75, 0x2e).bytes()) as Map<PyValue, PyValue>)];
  };
  // 1, True and 1.0 are one key (the last value wins); so are 0, -0.0 and False.
  assert.deepEqual(keys([0x4b, 1], [0x88], f64(1)), [[1, 2]]);
  assert.deepEqual(keys([0x4b, 0], f64(-0), [0x89]), [[0, 2]]);
  // 2**53 - 1 as int and as float: one key.
  const long = (n: bigint) => {
    const b: number[] = [];
    for (let i = 0; i < 8; i++) b.push(Number((n >> BigInt(8 * i)) & 0xffn));
    return [0x8a, 8, ...b];
  };
  assert.deepEqual(keys(long(2n ** 53n - 1n), f64(2 ** 53 - 1)), [[2 ** 53 - 1, 1]]);
  // Floats that are no int: their own keys.
  assert.deepEqual(keys(f64(1.5), f64(Infinity), [0x4b, 1]), [[1.5, 0], [Infinity, 1], [1, 2]]);
  // 2**53 and 2.0**53, 10**20 and 1e20: one key in Python, refused here.
  assert.throws(
    () => keys(long(2n ** 53n), f64(2 ** 53)),
    tooLargeOrBad("bad-pickle", "float dict key 9007199254740992"),
  );
  assert.throws(() => keys(f64(1e20)), tooLargeOrBad("bad-pickle", "float dict key"));
  // Two NaN objects are two keys in Python, one in a Map.
  assert.throws(() => keys(f64(NaN), f64(NaN)), tooLargeOrBad("bad-pickle", "NaN"));
  // OrderedDict([(k, v), ...]) and SETITEM compare keys the same way.
  const od = new Pickle().global("collections", "OrderedDict").op(0x5d, 0x28)
    .op(...f64(2 ** 60)).op(0x4e, 0x86).op(0x65, 0x85, 0x52, 0x2e);
  assert.throws(() => run(od.bytes()), tooLargeOrBad("bad-pickle", "float dict key"));
  const setitem = new Pickle().op(0x7d, ...f64(NaN), 0x4e, 0x73, 0x2e);
  assert.throws(() => run(setitem.bytes()), tooLargeOrBad("bad-pickle", "NaN"));
});

Deno.test("pytorch: a legacy key names one storage, as in torch.load's one dict of roots and views", async () => {
  const s = f32(8);
  const viewOf = (key: string, offset: number, size: number) => (p: Pickle) =>
    p.op(0x28).str(key).int(offset).int(size).op(0x74);
  const tensor = (key: string, shape: number[], view?: [string, number, number]) => (p: Pickle) =>
    emitTensor(p, {
      key,
      numel: key === "V" && !view ? 4 : 8,
      shape,
      ...(view ? { view: viewOf(...view) } : {}),
    }, true);
  // Views under their own keys, one used twice: read.
  const ok = await readPytorchLegacy(bytesSource(legacyFile(
    stateDict([
      ["a", tensor("R", [4], ["V1", 4, 4])],
      ["b", tensor("R", [2], ["V2", 1, 2])],
      ["c", tensor("R", [4], ["V1", 4, 4])],
    ]),
    ["R"],
    [[8, s]],
  )));
  assert.deepEqual(
    await Promise.all(
      ok.map(async (t) => [t.name, [...new Float32Array((await tensorBytes(t)).buffer)]]),
    ),
    [["a", [4, 5, 6, 7]], ["b", [1, 2]], ["c", [4, 5, 6, 7]]],
  );
  const refused: [string, Uint8Array][] = [
    [
      "view key of another root",
      legacyFile(
        stateDict([["a", tensor("A", [4], undefined)], ["b", tensor("B", [4], ["A", 4, 4])]]),
        ["A", "B"],
        [[8, s], [8, s]],
      ),
    ],
    [
      "view key of its own root",
      legacyFile(stateDict([["b", tensor("B", [4], ["B", 4, 4])]]), ["B"], [[8, s]]),
    ],
    [
      "root key of an earlier view",
      legacyFile(
        stateDict([["a", tensor("B", [4], ["V", 4, 4])], ["b", tensor("V", [4], undefined)]]),
        ["B", "V"],
        [[8, s], [4, s.subarray(0, 16)]],
      ),
    ],
  ];
  for (const [label, bytes] of refused) {
    await assert.rejects(
      readPytorchLegacy(bytesSource(bytes)),
      tooLargeOrBad("bad-pickle", "both a root storage and a view"),
      label,
    );
  }
});

Deno.test("pytorch: a legacy file that is also a tar, or has bytes after its last storage, is refused", async () => {
  const main = stateDict([["w", (p) => emitTensor(p, { key: "r", numel: 4, shape: [4] }, true)]]);
  const good = legacyFile(main, ["r"], [[4, f32(4)]]);
  assert.equal((await readPytorchLegacy(bytesSource(good))).length, 1);
  await assert.rejects(
    readPytorchLegacy(bytesSource(concat([good, new Uint8Array(1)]))),
    tooLargeOrBad("bad-offsets", "1 bytes follow its last storage"),
  );
  // A 512-byte header passes tarfile's test when its checksum field, read as
  // tarfile.nti reads it, is the sum of the other bytes plus 256, the bytes
  // taken unsigned or signed.
  const block = (field: string | number[], fill: (i: number) => number) => {
    const b = Uint8Array.from({ length: 512 }, (_, i) => fill(i));
    const bytes = typeof field === "string" ? Array.from(field, (c) => c.charCodeAt(0)) : field;
    b.set([...bytes, 0, 0, 0, 0, 0, 0, 0, 0].slice(0, 8), 148);
    return b;
  };
  const sum = (b: Uint8Array, signed: boolean) =>
    b.reduce((n, x, i) => i >= 148 && i < 156 ? n : n + (signed && x >= 128 ? x - 256 : x), 256);
  const withSum = (
    text: (n: number) => string | number[],
    fill: (i: number) => number = () => 1,
    signed = false,
  ) => block(text(sum(block([], fill), signed)), fill);
  const oct = (n: number) => n.toString(8);
  const tar = [
    withSum((n) => `${oct(n).padStart(6, "0")}\0 `),
    withSum((n) => `0o${oct(n)}`),
    withSum((n) => ` +${oct(n)}\x1c`),
    withSum((n) => `${oct(n)[0]}_${oct(n).slice(1)}`),
    withSum((n) => [0x80, 0, 0, 0, 0, 0, n >> 8, n & 0xff]),
    withSum((n) => oct(n), (i) => i % 8 === 0 ? 0xff : 5, true), // the signed sum
    withSum((n) => `-${oct(-n)}`, () => 0xff, true), // a negative signed sum
  ];
  for (const [i, b] of tar.entries()) {
    assert.ok(isTarHeader(b), `tar ${i}`);
    await assert.rejects(
      readPytorchLegacy(bytesSource(concat([b, good]))),
      tooLargeOrBad("bad-header", "tar header"),
    );
  }
  const notTar = [
    withSum((n) => oct(n + 1)),
    withSum((n) => `${oct(n)}8`), // not octal
    withSum((n) => `${oct(n)}__`),
    withSum((n) => `${oct(n)}\x85`), // not ASCII
    withSum((n) => oct(n + 2 * 64), (i) => i % 8 === 0 ? 0xff : 5, true), // neither sum
    new Uint8Array(512),
    good.subarray(0, 512),
  ];
  for (const [i, b] of notTar.entries()) assert.ok(!isTarHeader(b), `not tar ${i}`);
});

Deno.test("pytorch: a zip holds only what torch.load reads, so no other loader reads another checkpoint from it", async () => {
  const storage = { "0": f32(10) };
  const pkl = pickleOf(dict([S("w"), T()]));
  const text = (s: string) => new TextEncoder().encode(s);
  // The records torch.save writes, from 1.6 to 2.x.
  const records = [
    { name: "model/byteorder", data: text("little") },
    { name: "model/.format_version", data: text("1") },
    { name: "model/.storage_alignment", data: text("64") },
    { name: "model/.data/serialization_id", data: text("0123456789".repeat(4)) },
    { name: "model/.data/version", data: text("3\n") },
  ];
  assert.equal((await readPytorchZip(torchZip(pkl, storage, { extra: records }))).length, 1);
  const npy = new Uint8Array([0x93, ...text("NUMPY"), 1, 0, 4, 0, ...text("{}  ")]);
  const refused: [string, ByteSource, string][] = [
    [
      "an .npy beside",
      torchZip(pkl, storage, { extra: [{ name: "model/w.npy", data: npy }] }),
      '"model/w.npy"',
    ],
    [
      "outside the prefix",
      torchZip(pkl, storage, { extra: [{ name: "other/w.npy", data: npy }] }),
      '"other/w.npy"',
    ],
    [
      "any other name",
      torchZip(pkl, storage, { extra: [{ name: "model/notes.txt", data: text("x") }] }),
      "notes.txt",
    ],
    ["a storage no tensor names", torchZip(pkl, { ...storage, "1": f32(2) }), "model/data/1"],
    [
      "an .npy as a record",
      torchZip(pkl, storage, { extra: [{ name: "model/.format_version", data: npy }] }),
      ".format_version",
    ],
    [
      "a long record",
      torchZip(pkl, storage, {
        extra: [{ name: "model/.data/serialization_id", data: text("1".repeat(65)) }],
      }),
      "serialization_id",
    ],
  ];
  for (const [label, source, says] of refused) {
    await assert.rejects(readPytorchZip(source), tooLargeOrBad("bad-zip", says), label);
  }
});
