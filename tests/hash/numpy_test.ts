import { crc32 } from "../../hash/_zip.ts";
import { concat, deflateRaw, prng } from "../_helpers.ts";
import assert from "node:assert/strict";
import { readNpy, readNpz } from "../../hash/_numpy.ts";
import { ModelFormatError } from "../../hash/errors.ts";
import { BLOCK_BYTES, type ByteSource, bytesSource } from "../../hash/_source.ts";
import type { Tensor } from "../../hash/types.ts";

const FIXTURES = new URL("../../../shared/fixtures/", import.meta.url);
const CHUNK = BLOCK_BYTES;

// ---------------------------------------------------------------------------
// Helpers: build npy and zip bytes by hand, read tensors fully.

interface ExpectedTensor {
  dtype: string;
  shape: number[];
  sha256: string;
}

/** An npy file: `{'descr': …, 'fortran_order': …, 'shape': …, }` padded to 64 bytes. */
function npy(
  descr: string,
  shape: number[],
  data: Uint8Array,
  { fortran = false, version = 1, dict }: {
    fortran?: boolean;
    version?: number;
    dict?: string;
  } = {},
): Uint8Array {
  const shapeText = shape.length === 1 ? `(${shape[0]},)` : `(${shape.join(", ")})`;
  let text = dict ??
    `{'descr': '${descr}', 'fortran_order': ${
      fortran ? "True" : "False"
    }, 'shape': ${shapeText}, }`;
  const prelude = version === 1 ? 10 : 12;
  const encoded = () => new TextEncoder().encode(text);
  while ((prelude + encoded().length + 1) % 64 !== 0) text += " ";
  text += "\n";
  const header = encoded();
  const out = new Uint8Array(prelude + header.length + data.length);
  out.set([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, version, 0]);
  const view = new DataView(out.buffer);
  if (version === 1) view.setUint16(8, header.length, true);
  else view.setUint32(8, header.length, true);
  out.set(header, prelude);
  out.set(data, prelude + header.length);
  return out;
}

/** A zip of the given members, deflated (method 8) unless `stored`. */
async function zip(
  members: [string, Uint8Array][],
  stored = false,
  declaredSize?: number,
): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  const central: Uint8Array[] = [];
  let offset = 0;
  for (const [name, data] of members) {
    const nameBytes = new TextEncoder().encode(name);
    const body = stored ? data : await deflateRaw(data);
    const crc = crc32(data);
    const local = new Uint8Array(30 + nameBytes.length);
    const lv = new DataView(local.buffer);
    lv.setUint32(0, 0x04034b50, true);
    lv.setUint16(4, 20, true);
    lv.setUint16(8, stored ? 0 : 8, true);
    lv.setUint16(12, 0x21, true); // date 1980-01-01
    lv.setUint32(14, crc, true);
    lv.setUint32(18, body.length, true);
    lv.setUint32(22, declaredSize ?? data.length, true);
    lv.setUint16(26, nameBytes.length, true);
    local.set(nameBytes, 30);
    const entry = new Uint8Array(46 + nameBytes.length);
    const cv = new DataView(entry.buffer);
    cv.setUint32(0, 0x02014b50, true);
    cv.setUint16(4, 20, true);
    cv.setUint16(6, 20, true);
    cv.setUint16(10, stored ? 0 : 8, true);
    cv.setUint16(14, 0x21, true);
    cv.setUint32(16, crc, true);
    cv.setUint32(20, body.length, true);
    cv.setUint32(24, declaredSize ?? data.length, true);
    cv.setUint16(28, nameBytes.length, true);
    cv.setUint32(42, offset, true);
    entry.set(nameBytes, 46);
    parts.push(local, body);
    central.push(entry);
    offset += local.length + body.length;
  }
  const centralSize = central.reduce((n, e) => n + e.length, 0);
  const end = new Uint8Array(22);
  const ev = new DataView(end.buffer);
  ev.setUint32(0, 0x06054b50, true);
  ev.setUint16(8, members.length, true);
  ev.setUint16(10, members.length, true);
  ev.setUint32(12, centralSize, true);
  ev.setUint32(16, offset, true);
  return concat([...parts, ...central, end]);
}

/** Reads all of a tensor's chunks, checking sizes and the block-size limit. */
async function readAll(tensor: Tensor): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  for await (const chunk of tensor.chunks()) {
    assert.ok(chunk.length <= CHUNK, `chunk of ${chunk.length} bytes`);
    parts.push(chunk.slice());
  }
  const all = concat(parts);
  assert.equal(all.length, tensor.byteLength);
  return all;
}

async function sha256(bytes: Uint8Array): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", new Uint8Array(bytes));
  return [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, "0"))
    .join("");
}

/** A source that counts the bytes read from it. */
function counting(bytes: Uint8Array): ByteSource & { bytesRead: number } {
  const inner = bytesSource(bytes);
  const source = {
    name: "<counted>",
    size: inner.size,
    bytesRead: 0,
    read(offset: number, length: number) {
      source.bytesRead += length;
      return inner.read(offset, length);
    },
    close: () => inner.close(),
  };
  return source;
}

/** Test data: `count` little-endian values written by `set`. */
function littleEndian(
  size: number,
  count: number,
  set: (view: DataView, at: number, i: number) => void,
): Uint8Array {
  const out = new Uint8Array(size * count);
  const view = new DataView(out.buffer);
  for (let i = 0; i < count; i++) set(view, i * size, i);
  return out;
}

/** The big-endian twin of little-endian data: every `unit` bytes reversed. */
function swapped(bytes: Uint8Array, unit: number): Uint8Array {
  const out = bytes.slice();
  for (let i = 0; i < out.length; i += unit) {
    out.subarray(i, i + unit).reverse();
  }
  return out;
}

/** Rewrites C-order data of `shape` in Fortran order (first axis fastest). */
function toFortran(
  c: Uint8Array,
  shape: number[],
  itemSize: number,
): Uint8Array {
  const out = new Uint8Array(c.length);
  const count = c.length / itemSize;
  for (let i = 0; i < count; i++) {
    // Unravel the C-order index, ravel it in Fortran order.
    let rest = i;
    const index: number[] = [];
    for (let k = shape.length - 1; k >= 0; k--) {
      index[k] = rest % shape[k]!;
      rest = Math.floor(rest / shape[k]!);
    }
    let f = 0;
    for (let k = shape.length - 1; k >= 0; k--) f = f * shape[k]! + index[k]!;
    out.set(c.subarray(i * itemSize, (i + 1) * itemSize), f * itemSize);
  }
  return out;
}

async function rejects(
  promise: Promise<unknown>,
  code: string,
  pattern?: RegExp,
): Promise<void> {
  await assert.rejects(promise, (e) => {
    assert.ok(e instanceof ModelFormatError, `not a ModelFormatError: ${e}`);
    assert.equal(e.code, code, e.message);
    if (pattern) assert.match(e.message, pattern);
    return true;
  });
}

async function readNpyBytes(bytes: Uint8Array, name?: string) {
  return await readNpy(bytesSource(bytes, "<test.npy>"), name);
}

// ---------------------------------------------------------------------------
// Fixtures.

Deno.test("readNpz: mixed.npz matches expected.json", async () => {
  const expected = JSON.parse(
    await Deno.readTextFile(new URL("tensors/expected.json", FIXTURES)),
  )["mixed.npz"].tensors as Record<string, ExpectedTensor>;
  const bytes = await Deno.readFile(new URL("tensors/mixed.npz", FIXTURES));
  const tensors = await readNpz(bytesSource(bytes, "mixed.npz"));
  assert.deepEqual(
    tensors.map((t) => t.name).sort(),
    Object.keys(expected).sort(),
  );
  for (const tensor of tensors) {
    const want = expected[tensor.name]!;
    assert.equal(tensor.dtype, want.dtype, tensor.name);
    assert.deepEqual(tensor.shape, want.shape, tensor.name);
    assert.equal(await sha256(await readAll(tensor)), want.sha256, tensor.name);
  }
});

Deno.test("readNpz: listing reads headers, not data", async () => {
  const data = littleEndian(
    4,
    1 << 20,
    (v, at, i) => v.setFloat32(at, i, true),
  );
  const bytes = await zip([["big.npy", npy("<f4", [1 << 20], data)]], true);
  const source = counting(bytes);
  const [tensor] = await readNpz(source);
  // The zip reader reads the last 64 KiB looking for the end record.
  assert.ok(
    source.bytesRead < 70_000,
    `listing read ${source.bytesRead} bytes`,
  );
  assert.deepEqual(await readAll(tensor!), data);
});

// ---------------------------------------------------------------------------
// Hand-built archives and arrays.

Deno.test("readNpz: deflated members (np.savez_compressed)", async () => {
  const f32 = littleEndian(
    4,
    12,
    (v, at, i) => v.setFloat32(at, i * 0.5 - 3, true),
  );
  const i16 = littleEndian(
    2,
    7,
    (v, at, i) => v.setInt16(at, i * 1000 - 3000, true),
  );
  // 9 MiB of f64 so the data spans several inflate chunks and two 8 MiB pieces.
  const count = (9 << 20) / 8;
  const f64 = littleEndian(
    8,
    count,
    (v, at, i) => v.setFloat64(at, Math.sin(i), true),
  );
  const bytes = await zip([
    ["w.npy", npy("<f4", [3, 4], f32)],
    ["be.npy", npy(">i2", [7], swapped(i16, 2))],
    ["big.npy", npy(">f8", [count], swapped(f64, 8))],
    [
      "fortran.npy",
      npy("<f4", [3, 4], toFortran(f32, [3, 4], 4), { fortran: true }),
    ],
    ["empty.npy", npy("<f4", [0, 3], new Uint8Array(0))],
  ]);
  const tensors = await readNpz(bytesSource(bytes, "<deflated.npz>"));
  assert.deepEqual(
    tensors.map((t) => [t.name, t.dtype, t.shape]),
    [
      ["w", "F32", [3, 4]],
      ["be", "I16", [7]],
      ["big", "F64", [count]],
      ["fortran", "F32", [3, 4]],
      ["empty", "F32", [0, 3]],
    ],
  );
  const [w, be, big, fortran, empty] = tensors;
  assert.deepEqual(await readAll(w!), f32);
  assert.deepEqual(await readAll(be!), i16);
  assert.equal(await sha256(await readAll(big!)), await sha256(f64));
  assert.deepEqual(await readAll(fortran!), f32);
  assert.equal((await readAll(empty!)).length, 0);
  // chunks() can be read again.
  assert.deepEqual(await readAll(w!), f32);
});

Deno.test("readNpy: standalone files with v1, v2 and v3 headers", async () => {
  const data = littleEndian(4, 6, (v, at, i) => v.setInt32(at, i - 2, true));
  for (const version of [1, 2, 3]) {
    const [t] = await readNpyBytes(npy("<i4", [2, 3], data, { version }));
    assert.equal(t!.name, "array");
    assert.equal(t!.dtype, "I32");
    assert.deepEqual(t!.shape, [2, 3]);
    assert.deepEqual(await readAll(t!), data);
  }
  const [named] = await readNpyBytes(npy("<i4", [6], data), "x");
  assert.equal(named!.name, "x");
  // A 0-d scalar, double quotes, Python 2 longs and no trailing comma.
  const [scalar] = await readNpyBytes(
    npy("", [], data.subarray(0, 4), {
      dict: `{"shape": (), "fortran_order": False, "descr": "<i4"}`,
    }),
  );
  assert.deepEqual(scalar!.shape, []);
  assert.deepEqual(await readAll(scalar!), data.subarray(0, 4));
  const [longs] = await readNpyBytes(
    npy("", [], data, {
      dict: `{'descr': '=i4', 'fortran_order': False, 'shape': (2L, 3L)}`,
    }),
  );
  assert.deepEqual(longs!.shape, [2, 3]);
});

Deno.test("readNpy: every dtype maps to its name", async () => {
  const cases: [string, string, number][] = [
    ["<f8", "F64", 8],
    ["<f4", "F32", 4],
    ["<f2", "F16", 2],
    ["<i8", "I64", 8],
    ["<i4", "I32", 4],
    ["<i2", "I16", 2],
    ["|i1", "I8", 1],
    ["|u1", "U8", 1],
    ["<u2", "U16", 2],
    ["<u4", "U32", 4],
    ["<u8", "U64", 8],
    ["|b1", "BOOL", 1],
    ["<c8", "C64", 8],
    ["<c16", "C128", 16],
  ];
  for (const [descr, dtype, size] of cases) {
    const data = littleEndian(size, 3, (v, at, i) => v.setUint8(at, i + 1));
    const [t] = await readNpyBytes(npy(descr, [3], data));
    assert.equal(t!.dtype, dtype, descr);
    assert.equal(t!.byteLength, 3 * size, descr);
    assert.deepEqual(await readAll(t!), data, descr);
  }
});

Deno.test("readNpy: big-endian arrays are swapped to little-endian", async () => {
  const f32 = littleEndian(4, 6, (v, at, i) => v.setFloat32(at, i / 3, true));
  const u64 = littleEndian(
    8,
    4,
    (v, at, i) => v.setBigUint64(at, BigInt(i) << 40n | 7n, true),
  );
  // Complex numbers swap each float half on its own.
  const c8 = littleEndian(4, 8, (v, at, i) => v.setFloat32(at, i + 0.25, true));
  const c16 = littleEndian(
    8,
    4,
    (v, at, i) => v.setFloat64(at, -i - 0.5, true),
  );
  const i1 = new Uint8Array([1, 2, 255]);
  const cases: [string, number[], Uint8Array, number][] = [
    [">f4", [2, 3], f32, 4],
    [">u8", [4], u64, 8],
    [">c8", [4], c8, 4],
    [">c16", [2], c16, 8],
    [">i1", [3], i1, 1],
  ];
  for (const [descr, shape, little, unit] of cases) {
    const bytes = npy(descr, shape, swapped(little, unit));
    const copy = bytes.slice();
    const [t] = await readNpyBytes(bytes);
    assert.deepEqual(await readAll(t!), little, descr);
    assert.deepEqual(
      bytes,
      copy,
      "the caller's bytes are not swapped in place",
    );
  }
});

Deno.test("readNpy: Fortran-order arrays are transposed to C order", async () => {
  const shape = [3, 4, 5];
  const c = littleEndian(2, 60, (v, at, i) => v.setUint16(at, i * 7, true));
  const f = toFortran(c, shape, 2);
  assert.notDeepEqual(f, c);
  const [t] = await readNpyBytes(npy("<u2", shape, f, { fortran: true }));
  assert.deepEqual(t!.shape, shape);
  assert.deepEqual(await readAll(t!), c);
  // Big-endian and Fortran order together.
  const [be] = await readNpyBytes(
    npy(">u2", shape, swapped(f, 2), { fortran: true }),
  );
  assert.deepEqual(await readAll(be!), c);
  // A vector is the same in both orders.
  const [v] = await readNpyBytes(npy("<u2", [60], c, { fortran: true }));
  assert.deepEqual(await readAll(v!), c);
});

Deno.test("readNpy: big arrays stream in block-sized pieces, listing reads only the header", async () => {
  const data = new Uint8Array(CHUNK * 2 + 12);
  for (let i = 0; i < data.length; i += 4093) data[i] = i & 0xff;
  const source = counting(npy("|u1", [data.length], data));
  const [t] = await readNpy(source);
  assert.ok(source.bytesRead <= 256, `listing read ${source.bytesRead} bytes`);
  const sizes: number[] = [];
  for await (const chunk of t!.chunks()) sizes.push(chunk.length);
  assert.deepEqual(sizes, [CHUNK, CHUNK, 12]);
});

// ---------------------------------------------------------------------------
// Refusals.

Deno.test("readNpy/readNpz: object and structured dtypes are refused", async () => {
  const pickle = new Uint8Array([0x80, 0x02, 0x5d, 0x71, 0x00, 0x2e]);
  await rejects(
    readNpyBytes(npy("|O", [1], pickle)),
    "unsupported-dtype",
    /"\|O".*pickle/,
  );
  const npz = await zip([
    ["ok.npy", npy("<f4", [1], new Uint8Array(4))],
    ["evil.npy", npy("|O", [1], pickle)],
  ]);
  await rejects(readNpz(bytesSource(npz)), "unsupported-dtype", /"evil\.npy"/);
  await rejects(
    readNpyBytes(
      npy("", [], new Uint8Array(8), {
        dict: `{'descr': [('a', '<f4'), ('b', '<i4')], 'fortran_order': False, 'shape': (1,), }`,
      }),
    ),
    "unsupported-dtype",
    /structured/,
  );
  for (const descr of ["<U5", "|S3", "<M8[ns]", "|V8", "<f16", "<c32"]) {
    await rejects(
      readNpyBytes(npy(descr, [0], new Uint8Array(0))),
      "unsupported-dtype",
    );
  }
});

Deno.test("readNpy: malformed headers are refused with precise codes", async () => {
  const data = new Uint8Array(8);
  const bad = async (dict: string, code = "bad-header", pattern?: RegExp) =>
    await rejects(readNpyBytes(npy("", [], data, { dict })), code, pattern);
  await bad(`{'descr': '<f4', 'fortran_order': False}`, "bad-header", /keys/);
  await bad(`{'descr': '<f4', 'fortran_order': False, 'shape': (2,), 'x': 1}`);
  await bad(
    `{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': (2,)}`,
  );
  await bad(`{'descr': '<f4', 'fortran_order': 0, 'shape': (2,)}`);
  await bad(
    `{'descr': '<f4', 'fortran_order': False, 'shape': (2)}`,
    "bad-header",
    /tuple/,
  );
  await bad(`{'descr': '<f4', 'fortran_order': False, 'shape': (-2,)}`);
  await bad(`{'descr': '<f4', 'fortran_order': False, 'shape': [2]}`);
  await bad(`{'descr': '|f4', 'fortran_order': False, 'shape': (2,)}`);
  await bad(`{'descr': 'f4', 'fortran_order': False, 'shape': (2,)}`);
  await bad(`{'descr': '<f4', 'fortran_order': False, 'shape': (2,)} x`);
  await bad(`{'descr': '<f\\x34', 'fortran_order': False, 'shape': (2,)}`);
  await bad(`__import__('os').system('id')`);
  await bad(
    `{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999,)}`,
  );
  await bad(`${"(".repeat(100)}${")".repeat(100)}`, "bad-header", /nesting/);
  // Data length must match shape × item size exactly.
  await bad(
    `{'descr': '<f4', 'fortran_order': False, 'shape': (3,)}`,
    "truncated",
  );
  await bad(
    `{'descr': '<f4', 'fortran_order': False, 'shape': (1,)}`,
    "bad-offsets",
  );
  await bad(
    `{'descr': '<f4', 'fortran_order': False, 'shape': (9007199254740991, 9007199254740991)}`,
    "truncated",
  );
  // Preamble problems.
  const good = npy("<f4", [2], data);
  await rejects(readNpyBytes(new Uint8Array(0)), "truncated");
  await rejects(readNpyBytes(good.subarray(0, 9)), "truncated");
  await rejects(readNpyBytes(good.subarray(0, 40)), "truncated");
  const magic = good.slice();
  magic[1] = 0x4f;
  await rejects(readNpyBytes(magic), "bad-header", /magic/);
  const version = good.slice();
  version[6] = 4;
  await rejects(readNpyBytes(version), "bad-header", /version/);
  const huge = npy("<f4", [2], data, { version: 2 });
  new DataView(huge.buffer).setUint32(8, 0xfffffff0, true);
  await rejects(readNpyBytes(huge), "too-large");
  const latin = npy("<f4", [2], data, { version: 3 });
  latin[20] = 0xff;
  await rejects(readNpyBytes(latin), "bad-header", /UTF-8/);
});

Deno.test("readNpz: a member claiming more than it inflates to is refused", async () => {
  // A Fortran-order header for 512 MiB followed by 100 bytes: the declared
  // size matches the header, the deflated data does not.
  const shape = [1 << 14, 1 << 15];
  const member = npy("|u1", shape, new Uint8Array(100), { fortran: true });
  const header = member.length - 100;
  const bytes = await zip([["bomb.npy", member]], false, header + (1 << 29));
  const [tensor] = await readNpz(bytesSource(bytes));
  assert.deepEqual(tensor!.shape, shape);
  await rejects(readAll(tensor!), "bad-zip", /bomb\.npy/);
  // Past 1 GiB a Fortran-order array is refused before anything is inflated
  // (a 1.5 MB deflated member can declare 1.5 GB of zeros).
  const big = npy("|u1", [1 << 15, (1 << 15) + 1], new Uint8Array(100), { fortran: true });
  const huge = await zip(
    [["huge.npy", big]],
    false,
    big.length - 100 + (1 << 15) * ((1 << 15) + 1),
  );
  const [h] = await readNpz(bytesSource(huge));
  await rejects(readAll(h!), "too-large", /Fortran order/);
});

Deno.test("readNpz: non-npy and duplicate members are refused", async () => {
  const member = npy("<f4", [1], new Uint8Array(4));
  await rejects(
    readNpz(bytesSource(await zip([["notes.txt", member]]))),
    "bad-zip",
    /notes\.txt/,
  );
  await rejects(
    readNpz(
      bytesSource(await zip([["a.npy", member], ["a.npy", member]], true)),
    ),
    "bad-zip",
  );
  // numpy.load(...)["a.npy"] reads the member "a.npy" (np.savez writes these
  // two for the keys "a" and "a.npy"): the array of "a.npy.npy" is never read.
  await rejects(
    readNpz(
      bytesSource(
        await zip([["a.npy", member], [
          "a.npy.npy",
          npy("<f4", [1], new Uint8Array([0, 0, 0x10, 0x41])),
        ]], true),
      ),
    ),
    "bad-zip",
    /numpy\.load reads for that key instead/,
  );
});

// ---------------------------------------------------------------------------
// Mutation fuzz.

function mutate(
  base: Uint8Array,
  random: () => number,
  focus: number,
): Uint8Array {
  let bytes: Uint8Array = base.slice();
  const edits = 1 + Math.floor(random() * 4);
  for (let e = 0; e < edits; e++) {
    const at = Math.floor(random() * Math.min(bytes.length, focus));
    const kind = random();
    if (kind < 0.5) bytes[at] = Math.floor(random() * 256);
    else if (kind < 0.65) {
      bytes[at] = " (),:'0123456789{}[]<>|TF\n"[Math.floor(random() * 26)]!
        .charCodeAt(0);
    } else if (kind < 0.8) {
      bytes = bytes.slice(0, Math.floor(random() * bytes.length));
    } else if (kind < 0.9) {
      bytes = concat([bytes.subarray(0, at), bytes.subarray(at + 1)]);
    } else {bytes = concat([
        bytes.subarray(0, at),
        new Uint8Array([random() * 256]),
        bytes.subarray(at),
      ]);}
  }
  return bytes;
}

async function fuzz(
  bases: Uint8Array[],
  read: (bytes: Uint8Array) => Promise<Tensor[]>,
  seed: number,
  millis: number,
): Promise<number> {
  const random = prng(seed);
  const stop = Date.now() + millis;
  let runs = 0;
  while (Date.now() < stop) {
    const base = bases[runs % bases.length]!;
    const bytes = mutate(base, random, random() < 0.7 ? 200 : base.length);
    runs++;
    try {
      for (const tensor of await read(bytes)) await readAll(tensor);
    } catch (e) {
      if (!(e instanceof ModelFormatError)) {
        throw new Error(`run ${runs} (seed ${seed}): ${e}`, { cause: e });
      }
    }
  }
  return runs;
}

Deno.test("readNpy: seeded mutation fuzz of headers", async () => {
  const data = littleEndian(4, 24, (v, at, i) => v.setFloat32(at, i, true));
  const bases = [
    npy("<f4", [2, 3, 4], data),
    npy(">f4", [4, 6], data, { fortran: true, version: 2 }),
    npy("<c8", [12], data, { version: 3 }),
  ];
  const runs = await fuzz(bases, (b) => readNpyBytes(b), 0x5eed, 1200);
  assert.ok(runs > 1000, `only ${runs} runs`);
  console.log(`${runs} runs`);
});

Deno.test("readNpz: seeded mutation fuzz of archives", async () => {
  const fixture = await Deno.readFile(new URL("tensors/mixed.npz", FIXTURES));
  const data = littleEndian(4, 24, (v, at, i) => v.setFloat32(at, i, true));
  const deflated = await zip([
    ["a.npy", npy("<f4", [2, 3, 4], data)],
    ["b.npy", npy(">f4", [4, 6], data, { fortran: true })],
  ]);
  const read = (b: Uint8Array) => readNpz(bytesSource(b, "<fuzz.npz>"));
  const runs = await fuzz([fixture, deflated], read, 0xbeef, 1500);
  assert.ok(runs > 200, `only ${runs} runs`);
  console.log(`${runs} runs`);
});
