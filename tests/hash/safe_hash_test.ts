import assert from "node:assert/strict";
import {
  hashFromManifest,
  hashManifest,
  ModelFormatError,
  openModel,
  safeHash,
} from "../../hash/mod.ts";
import type { HashAlgorithm } from "../../hash/mod.ts";
import {
  buildSafetensors,
  expected,
  fixture,
  sha256hex,
  writeSparseSafetensors,
} from "../_helpers.ts";

type Entry = {
  format: string;
  seed_xxh64: string;
  seed_blake2b160: string;
  tensors: Record<string, { dtype: string; shape: number[]; sha256: string }>;
};

const tensorsExpected = expected("tensors") as Record<string, Entry>;
const bert = expected("tiny-bert") as {
  seed_xxh64: string;
  seed_blake2b160: string;
};
const BERT_FILES = [
  "tiny-bert/model.safetensors",
  "tiny-bert/pytorch_model.bin",
  "tiny-bert/onnx/model.onnx",
];

for (const [file, want] of Object.entries(tensorsExpected)) {
  Deno.test(`safeHash() matches the seed hashes in expected.json for tensors/${file}`, async () => {
    const path = fixture(`tensors/${file}`);
    assert.equal(
      await safeHash(path, { algorithm: "seed-xxh64" }),
      want.seed_xxh64,
    );
    assert.equal(
      await safeHash(path, { algorithm: "seed-blake2b160" }),
      want.seed_blake2b160,
    );
  });

  Deno.test(`hashManifest() leaves equal the per-tensor SHA-256 of tensors/${file}`, async () => {
    const m = await hashManifest(fixture(`tensors/${file}`));
    assert.equal(m.format, want.format);
    assert.deepEqual(
      Object.fromEntries(
        m.tensors.map((
          t,
        ) => [t.name, { dtype: t.dtype, shape: t.shape, sha256: t.sha256 }]),
      ),
      want.tensors,
    );
    assert.equal(m.hash, await hashFromManifest(m.tensors));
  });
}

for (const file of BERT_FILES) {
  Deno.test(`safeHash() matches the seed hashes in expected.json for ${file}`, async () => {
    assert.equal(
      await safeHash(fixture(file), { algorithm: "seed-xxh64" }),
      bert.seed_xxh64,
    );
    assert.equal(
      await safeHash(fixture(file), { algorithm: "seed-blake2b160" }),
      bert.seed_blake2b160,
    );
  });
}

Deno.test("safeHash() gives one hash per weights across safetensors, PyTorch zip, legacy and ONNX", async () => {
  const mixed = new Set<string>();
  for (const f of ["mixed.safetensors", "mixed.bin", "mixed.legacy.bin"]) {
    mixed.add(await safeHash(fixture(`tensors/${f}`)));
  }
  assert.equal(mixed.size, 1);
  const tiny = new Set<string>();
  // Not tiny-bert's ONNX: its graph also holds Constant nodes, which its hash
  // binds (tests/hash/onnx_oracle_test.ts compares the leaves).
  for (const f of BERT_FILES.slice(0, 2)) tiny.add(await safeHash(fixture(f)));
  assert.equal(tiny.size, 1);
  assert.notDeepEqual([...mixed], [...tiny]);
  // npz lacks the bf16 tensor, so its hash differs.
  assert.ok(!mixed.has(await safeHash(fixture("tensors/mixed.npz"))));
});

// The contract every algorithm keeps, whatever the input's shape (after
// hash-wasm's api test): same bytes in any form and any parallelism, same hash.
const ALGORITHMS: HashAlgorithm[] = [
  "safemodels-v1",
  "seed-xxh64",
  "seed-blake2b160",
];
const FORMS = ["path", "url", "bytes", "blob", "stream", "response"] as const;
function asInput(
  form: (typeof FORMS)[number],
  path: string,
  bytes: Uint8Array<ArrayBuffer>,
) {
  switch (form) {
    case "path":
      return path;
    case "url":
      return new URL(`file://${path}`);
    case "bytes":
      return bytes;
    case "blob":
      return new Blob([bytes]);
    case "stream":
      return new Blob([bytes]).stream();
    case "response":
      return new Response(bytes);
  }
}

Deno.test("safeHash() contract: every algorithm, input form and worker count agrees, for every format", async () => {
  const files = [
    "tensors/mixed.safetensors",
    "tensors/mixed.bin",
    "tensors/mixed.legacy.bin",
    "tensors/mixed.npz",
    ...BERT_FILES,
  ];
  for (const file of files) {
    const path = fixture(file);
    const bytes = await Deno.readFile(path);
    for (const algorithm of ALGORITHMS) {
      const seen = new Set<string>();
      for (const form of FORMS) {
        seen.add(await safeHash(asInput(form, path, bytes), { algorithm }));
      }
      if (algorithm === "safemodels-v1") {
        for (const workers of [0, 1, 2, 3]) {
          seen.add(await safeHash(path, { workers }));
        }
      }
      assert.equal(
        seen.size,
        1,
        `${file} ${algorithm}: ${[...seen].join(" ")}`,
      );
    }
  }
});

Deno.test("safeHash() safemodels-v1 binds names, dtypes, shapes and bytes; seed-xxh64 only bytes", async () => {
  const data = new Uint8Array(16).map((_, i) => i);
  const base = {
    a: { dtype: "F32", shape: [4], data },
    b: { dtype: "U8", shape: [2], data: Uint8Array.of(1, 2) },
  };
  const variants = {
    base,
    renamed: { c: base.a, b: base.b },
    reshaped: { a: { ...base.a, shape: [2, 2] }, b: base.b },
    retyped: { a: { ...base.a, dtype: "I32" }, b: base.b },
    flipped: {
      a: { ...base.a, data: data.map((v, i) => (i === 5 ? v ^ 1 : v)) },
      b: base.b,
    },
    reordered: { b: base.b, a: base.a },
  };
  const v1: Record<string, string> = {};
  const xx: Record<string, string> = {};
  for (const [name, tensors] of Object.entries(variants)) {
    const file = buildSafetensors(tensors);
    v1[name] = await safeHash(file);
    xx[name] = await safeHash(file, { algorithm: "seed-xxh64" });
  }
  // File order does not matter; everything else does.
  assert.equal(v1.reordered, v1.base);
  assert.equal(new Set(Object.values(v1)).size, 5);
  // The seed hash sees only the concatenated bytes (a documented weakness).
  assert.equal(xx.reshaped, xx.base);
  assert.equal(xx.retyped, xx.base);
  assert.notEqual(xx.flipped, xx.base);
});

Deno.test("hashFromManifest() follows the README spec byte for byte", async () => {
  // The spec, computed independently here with node:crypto.
  const t = {
    name: "w",
    dtype: "F32" as const,
    shape: [2, 3],
    sha256: sha256hex(new Uint8Array(24)),
  };
  const enc = new TextEncoder();
  const parts: number[] = [...enc.encode("safemodels-v1\n")];
  const u32 = (
    n: number,
  ) => [n & 255, (n >>> 8) & 255, (n >>> 16) & 255, n >>> 24];
  const u64 = (n: number) => [...u32(n), 0, 0, 0, 0];
  parts.push(
    ...u64(1),
    ...u32(1),
    ...enc.encode("w"),
    3,
    ...enc.encode("F32"),
    ...u32(2),
    ...u64(2),
    ...u64(3),
  );
  parts.push(...t.sha256.match(/../g)!.map((x) => parseInt(x, 16)));
  assert.equal(
    await hashFromManifest([t]),
    `safemodels-v1:${sha256hex(Uint8Array.from(parts))}`,
  );
  await assert.rejects(hashFromManifest([t, t]), ModelFormatError);
  await assert.rejects(hashFromManifest([{ ...t, sha256: "xyz" }]), TypeError);
});

Deno.test("a tensor name with a lone surrogate is refused: UTF-8 would hash it as U+FFFD, another name", async () => {
  const t = { dtype: "F32" as const, shape: [1], sha256: sha256hex(new Uint8Array(4)) };
  const loneSurrogate = (e: unknown) =>
    e instanceof ModelFormatError && e.code === "bad-header" &&
    e.message.includes("lone surrogate");
  for (const name of ["\ud800", "a\udfff", "\ude00\ud83d"]) {
    await assert.rejects(hashFromManifest([{ ...t, name }]), loneSurrogate, JSON.stringify(name));
  }
  // A safetensors header may escape one ("\ud800"); serde_json refuses it, so do we.
  const data = { dtype: "F32" as const, shape: [1], data: new Uint8Array(4) };
  for (const algorithm of ["safemodels-v1", "seed-xxh64"] as const) {
    await assert.rejects(
      safeHash(buildSafetensors({ "\ud800": data }), { algorithm }),
      loneSurrogate,
      algorithm,
    );
  }
  // A surrogate pair is one code point, and hashes as it.
  const pair = await safeHash(buildSafetensors({ "\ud83d\ude00": data }));
  assert.equal(pair, await safeHash(buildSafetensors({ "😀": data })));
  assert.notEqual(pair, await safeHash(buildSafetensors({ "\ufffd": data })));
});

Deno.test("safeHash() sorts names by code point, as Python's sorted does", async () => {
  // U+FF5E sorts before U+1F600 by code point, after it by UTF-16 code unit.
  const file = buildSafetensors({
    "\u{1F600}": { dtype: "U8", shape: [1], data: Uint8Array.of(1) },
    "\uFF5E": { dtype: "U8", shape: [1], data: Uint8Array.of(2) },
  });
  const m = await hashManifest(file);
  assert.deepEqual(m.tensors.map((t) => t.name), ["\uFF5E", "\u{1F600}"]);
  // xxh64 over bytes 2 then 1 (code-point order), not 1 then 2.
  const swapped = buildSafetensors({
    a: { dtype: "U8", shape: [1], data: Uint8Array.of(2) },
    b: { dtype: "U8", shape: [1], data: Uint8Array.of(1) },
  });
  assert.equal(
    await safeHash(file, { algorithm: "seed-xxh64" }),
    await safeHash(swapped, { algorithm: "seed-xxh64" }),
  );
});

Deno.test("safeHash() reports progress, honours abort and refuses unknown algorithms", async () => {
  const file = buildSafetensors({
    w: { dtype: "U8", shape: [100], data: new Uint8Array(100) },
  });
  const seen: number[] = [];
  await safeHash(file, { onProgress: (p) => seen.push(p.bytes) });
  assert.deepEqual(seen, [100]);
  const ac = new AbortController();
  ac.abort();
  await assert.rejects(
    safeHash(file, { signal: ac.signal }),
    (e) => (e as Error).name === "AbortError",
  );
  // @ts-expect-error: not an algorithm
  await assert.rejects(safeHash(file, { algorithm: "md5" }), TypeError);
});

Deno.test("safeHash() hashes a multi-block model the same on the main thread and on workers", async () => {
  // 3 tensors spanning several 4 MiB blocks, so lanes interleave.
  const big = (n: number, seed: number) => new Uint8Array(n).map((_, i) => (i * seed) & 255);
  const file = buildSafetensors({
    a: { dtype: "U8", shape: [9 << 20], data: big(9 << 20, 7) },
    b: { dtype: "U8", shape: [5], data: big(5, 3) },
    c: { dtype: "U8", shape: [6 << 20], data: big(6 << 20, 11) },
  });
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeFile(`${dir}/m.safetensors`, file);
    const main = await hashManifest(`${dir}/m.safetensors`, { workers: 0 });
    const par = await hashManifest(`${dir}/m.safetensors`, { workers: 2 });
    assert.deepEqual(par, main);
    assert.equal(
      main.tensors.find((t) => t.name === "a")!.sha256,
      sha256hex(big(9 << 20, 7)),
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("openModel() refuses every file in bad/ with a ModelFormatError naming the file", async () => {
  for await (const entry of Deno.readDir(fixture("bad"))) {
    const path = fixture(`bad/${entry.name}`);
    await assert.rejects(safeHash(path), (e) => {
      assert.ok(e instanceof ModelFormatError, `${entry.name}: ${e}`);
      assert.ok(e.message.includes(path), e.message);
      return true;
    });
  }
  await assert.rejects(
    openModel(fixture("bad/evil_reduce.bin")),
    (e) => e instanceof ModelFormatError && /posix\.system/.test(e.message),
  );
});

Deno.test("safeHash() buffers a non-safetensors stream of many small chunks in linear time", async () => {
  // 8 MiB of ONNX in 512-byte chunks: 16384 chunks. Joining them by regrowing
  // one buffer would copy ~64 GiB; the reader keeps a list and copies once.
  const { tinyOnnx } = await import("../_model_gen.ts");
  const onnx = tinyOnnx({ extraRows: 262_144 });
  let at = 0;
  const trickle = new ReadableStream<Uint8Array>({
    pull(c) {
      if (at >= onnx.length) return c.close();
      c.enqueue(onnx.slice(at, at += 512));
    },
  });
  assert.equal(await safeHash(trickle), await safeHash(onnx));
});

Deno.test("safeHash() on workers: a file cut short mid-hash fails once, with one line naming the file and the shortfall", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = `${dir}/cut.safetensors`;
    const n = 512 << 20;
    await writeSparseSafetensors(path, { a: n / 2, b: n / 2 });
    let cut = false;
    const errors: unknown[] = [];
    try {
      await safeHash(path, {
        workers: 2,
        onProgress: () => {
          if (!cut) {
            cut = true;
            Deno.truncateSync(path, 1000);
          }
        },
      });
    } catch (e) {
      errors.push(e);
    }
    assert.ok(cut, "no progress was reported");
    assert.equal(errors.length, 1);
    const message = (errors[0] as Error).message;
    assert.doesNotMatch(message, /\n/);
    assert.match(message, /cut\.safetensors: /);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
