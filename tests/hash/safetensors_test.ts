import assert from "node:assert/strict";
import { ModelFormatError, openModel, safeHash } from "../../hash/mod.ts";
import { buildSafetensors, collect, expected, fixture, prng, sha256hex } from "../_helpers.ts";

type Expected = Record<
  string,
  { dtype: string; shape: number[]; sha256: string }
>;

Deno.test("openModel() reads every safetensors tensor as in expected.json", async () => {
  const want = (expected("tensors")["mixed.safetensors"] as { tensors: Expected }).tensors;
  await using model = await openModel(fixture("tensors/mixed.safetensors"));
  assert.equal(model.format, "safetensors");
  assert.deepEqual(model.metadata, { format: "pt", hello: "world" });
  assert.deepEqual(
    model.tensors.map((t) => t.name).sort(),
    Object.keys(want).sort(),
  );
  for (const t of model.tensors) {
    const w = want[t.name]!;
    assert.equal(t.dtype, w.dtype, t.name);
    assert.deepEqual(t.shape, w.shape, t.name);
    assert.equal(sha256hex(await collect(t.chunks())), w.sha256, t.name);
  }
});

Deno.test("openModel() accepts a path, file: URL, bytes, Blob, stream and Response alike", async () => {
  const path = fixture("tensors/mixed.safetensors");
  const bytes = await Deno.readFile(path);
  const inputs = [
    path,
    new URL(`file://${path}`),
    bytes,
    new Blob([bytes]),
    new Blob([bytes]).stream(),
    new Response(bytes),
  ];
  const hashes = new Set<string>();
  for (const input of inputs) hashes.add(await safeHash(input));
  assert.equal(hashes.size, 1);
});

Deno.test("safeHash() streams a safetensors Response without buffering it", async () => {
  const path = fixture("tensors/mixed.safetensors");
  const bytes = await Deno.readFile(path);
  // A stream delivered one byte at a time still hashes the same.
  let i = 0;
  const trickle = new ReadableStream<Uint8Array>({
    pull(c) {
      if (i < bytes.length) c.enqueue(bytes.slice(i, ++i));
      else c.close();
    },
  });
  assert.equal(await safeHash(trickle), await safeHash(path));
  // A stream cut short is refused as truncated.
  await assert.rejects(
    safeHash(new Blob([bytes.subarray(0, bytes.length - 3)]).stream()),
    (e) => e instanceof ModelFormatError && e.code === "truncated",
  );
  // Extra bytes after the data section are refused.
  await assert.rejects(
    safeHash(new Blob([bytes, new Uint8Array(4)]).stream()),
    (e) => e instanceof ModelFormatError && e.code === "bad-header",
  );
});

const BAD: [string, string, RegExp][] = [
  ["empty.safetensors", "unknown-format", /empty/],
  ["header_too_big.safetensors", "too-large", /1099511627776 bytes/],
  ["header_not_json.safetensors", "bad-header", /JSON/],
  ["offsets_out_of_range.safetensors", "bad-offsets", /f64\.bias/],
  [
    "truncated.safetensors",
    "truncated",
    /need \d+ bytes of data but the file holds \d+/,
  ],
];

for (const [file, code, message] of BAD) {
  Deno.test(`openModel() refuses bad/${file} with code ${code}`, async () => {
    const path = fixture(`bad/${file}`);
    for (const input of [path, await Deno.readFile(path)]) {
      await assert.rejects(openModel(input), (e) => {
        assert.ok(e instanceof ModelFormatError, String(e));
        assert.equal(e.code, code);
        assert.match(e.message, message);
        if (typeof input === "string") {
          assert.ok(e.message.startsWith(path), e.message);
        }
        return true;
      });
    }
  });
}

Deno.test("openModel() refuses overlapping tensors, gaps and shape/size mismatches", async () => {
  const u8 = (n: number) => new Uint8Array(n);
  const make = (entries: Record<string, unknown>, dataLen: number) => {
    const json = new TextEncoder().encode(JSON.stringify(entries));
    const out = new Uint8Array(8 + json.length + dataLen);
    new DataView(out.buffer).setBigUint64(0, BigInt(json.length), true);
    out.set(json, 8);
    return out;
  };
  const cases: [Uint8Array, RegExp][] = [
    [
      make({
        a: { dtype: "U8", shape: [4], data_offsets: [0, 4] },
        b: { dtype: "U8", shape: [4], data_offsets: [2, 6] },
      }, 6),
      /overlaps/,
    ],
    [
      make({
        a: { dtype: "U8", shape: [2], data_offsets: [0, 2] },
        b: { dtype: "U8", shape: [2], data_offsets: [4, 6] },
      }, 6),
      /gap/,
    ],
    [
      make({ a: { dtype: "F32", shape: [2], data_offsets: [0, 4] } }, 4),
      /needs 8 bytes/,
    ],
    [
      make({ a: { dtype: "Q4", shape: [2], data_offsets: [0, 2] } }, 2),
      /unknown dtype/,
    ],
    [
      make({ a: { dtype: "U8", shape: [-1], data_offsets: [0, 2] } }, 2),
      /shape/,
    ],
    [make({ __metadata__: { n: 1 } }, 0), /"n" is a number/],
    [
      make({ a: { dtype: "U8", shape: [2], data_offsets: [0, 2] } }, 3),
      /trailing/,
    ],
  ];
  for (const [bytes, message] of cases) {
    await assert.rejects(
      openModel(bytes),
      (e) => e instanceof ModelFormatError && message.test(e.message),
    );
  }
  // And a well-formed file of every dtype, 0-d and empty tensors, reads.
  const ok = buildSafetensors({
    s: { dtype: "F8_E4M3", shape: [], data: u8(1) },
    e: { dtype: "C64", shape: [0, 2], data: u8(0) },
    b: { dtype: "BOOL", shape: [3], data: Uint8Array.of(1, 0, 1) },
  });
  await using m = await openModel(ok);
  assert.deepEqual(m.tensors.map((t) => t.byteLength), [1, 0, 3]);
});

Deno.test("openModel() fuzz: mutated safetensors headers parse or throw ModelFormatError", async () => {
  const base = await Deno.readFile(fixture("tensors/mixed.safetensors"));
  const n = Number(new DataView(base.buffer).getBigUint64(0, true));
  const rand = prng(0x5afe);
  const deadline = Date.now() + 2500;
  let runs = 0;
  let parsed = 0;
  const ascii = new TextEncoder().encode('{}[]",:0123456789-e. aZ');
  while (Date.now() < deadline && runs < 5000) {
    runs++;
    const m = base.slice();
    const edits = 1 + Math.floor(rand() * 4);
    for (let k = 0; k < edits; k++) {
      const at = Math.floor(rand() * (8 + n));
      m[at] = rand() < 0.7 ? ascii[Math.floor(rand() * ascii.length)]! : Math.floor(rand() * 256);
    }
    try {
      await using model = await openModel(m);
      for (const t of model.tensors) await collect(t.chunks());
      parsed++;
    } catch (e) {
      if (!(e instanceof ModelFormatError)) {
        throw new Error(`run ${runs}: ${e}`, { cause: e });
      }
    }
  }
  assert.ok(runs >= 1000, `only ${runs} runs`);
  assert.ok(parsed > 0 && parsed < runs, `parsed ${parsed} of ${runs}`);
});

Deno.test("parseHeader: a large header parsed in pieces reads exactly what JSON.parse reads, or falls back to it (seeded)", async () => {
  const { piecewise, PIECE_BYTES } = await import("../../hash/_safetensors.ts");
  const next = prng(0x5afe);
  const pick = <T>(xs: T[]) => xs[Math.floor(next() * xs.length)]!;
  const names = [
    "w",
    "a.b",
    "\\u0041x",
    "é",
    '\\"q',
    "__proto__",
    "constructor",
    "𝄞",
    "x,y",
    "{z}",
    "[0]",
  ];
  const ws = ["", " ", "\n", "\t ", "\r\n"];
  const member = (i: number) => {
    const name = next() < 0.05 ? pick(names) : `layer.${i}.${pick(names)}`;
    const value = next() < 0.05
      ? pick(['"s,t{r}"', "[1,[2,{}]]", '{"a":"}","b":[","]}', "null", "1e3"])
      : `{${pick(ws)}"dtype":"F32","shape":[${i % 7}],"data_offsets":[0,${4 * (i % 7)}]}`;
    return `${pick(ws)}"${name}"${pick(ws)}:${pick(ws)}${value}${pick(ws)}`;
  };
  const members = Array.from({ length: 3 * (PIECE_BYTES / 64) }, (_, i) => member(i));
  const base = `{${members.join(",")}}`;
  const enc = new TextEncoder();
  let agreed = 0;
  for (let n = 0; n < 200; n++) {
    let text = base;
    // A few mutations: delete, duplicate or insert characters that matter to a splitter.
    for (let k = 0, c = Math.floor(next() * 3); k < c; k++) {
      const at = Math.floor(next() * text.length);
      const op = next();
      text = op < 0.3
        ? text.slice(0, at) + text.slice(at + 1)
        : op < 0.6
        ? text.slice(0, at) + pick([",", '"', "\\", "{", "}", "[", "]", ":", " "]) + text.slice(at)
        : text.slice(0, at) + text.slice(at, at + 40) + text.slice(at);
    }
    const bytes = enc.encode(text);
    let whole: Map<string, unknown> | undefined;
    try {
      const raw = JSON.parse(text);
      if (typeof raw === "object" && raw !== null && !Array.isArray(raw)) {
        whole = new Map(Object.entries(raw));
      }
    } catch { /* invalid JSON: piecewise must not accept it */ }
    const pieces = new Map<string, unknown>();
    if (!piecewise(bytes, (name, value) => pieces.set(name, value))) continue;
    assert.ok(whole !== undefined, `mutant ${n}: pieces accepted what JSON.parse refuses`);
    assert.deepEqual(new Map([...pieces].sort()), new Map([...whole].sort()), `mutant ${n}`);
    agreed++;
  }
  assert.ok(agreed > 20, `only ${agreed} mutants were read in pieces`);
  // A byte order mark where a piece starts: JSON.parse (and serde_json) refuse it.
  const bom = `{\uFEFF${members.join(",")}}`;
  assert.throws(() => JSON.parse(bom));
  assert.equal(piecewise(enc.encode(bom), () => {}), false);
});
