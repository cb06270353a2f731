// Tests for meta/: extractMetadata, updateMeta and rewriteMetadata.
import assert from "node:assert/strict";
import { join } from "node:path";
import { extractMetadata, rewriteMetadata, updateMeta } from "../../meta/mod.ts";
import { ModelFormatError } from "../../hash/errors.ts";
import { type HashAlgorithm, safeHash } from "../../hash/safe_hash.ts";
import { buildSafetensors, collect, copyTo, fixture, listDir, prng } from "../_helpers.ts";

const MIXED = fixture("tensors/mixed.safetensors");
const MIXED_META = { format: "pt", hello: "world" };
const ALGORITHMS: HashAlgorithm[] = [
  "safemodels-v1",
  "seed-xxh64",
  "seed-blake2b160",
];
const BAD_SAFETENSORS = [
  "empty",
  "header_not_json",
  "header_too_big",
  "offsets_out_of_range",
  "truncated",
].map((n) => fixture(`bad/${n}.safetensors`));

/** Runs `fn` with a fresh temp dir, removed afterwards. */
async function withTempDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "safemodels_meta_" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/**
 * Open file descriptors of this process (Linux), to catch leaked handles (the
 * resource sanitizer does not see `node:fs` handles). Listed by a child
 * process because Deno reads `/proc/self` only with `--allow-all`.
 */
/**
 * How many of this process's file descriptors are open on `path` (Linux;
 * elsewhere 0). Counting the descriptors of this one file, not all of the
 * process's, keeps the check exact when other work opens files meanwhile.
 */
async function openFdsOf(path: string): Promise<number> {
  if (Deno.build.os !== "linux") return 0;
  const target = await Deno.realPath(path).catch(() => path);
  // Deno allows /proc/self only with --allow-all; `ls` reads it for us. It
  // exits 1 when a descriptor of ours closes while it lists them (the
  // runtime's own come and go, more so under load): what it did list counts.
  const { stdout } = await new Deno.Command("ls", {
    args: ["-l", `/proc/${Deno.pid}/fd`],
    stderr: "null",
  }).output();
  return new TextDecoder().decode(stdout).split("\n").filter((line) => {
    const link = line.split(" -> ")[1];
    return link === target || link === `${target} (deleted)`;
  }).length;
}

async function hashes(input: string | Uint8Array): Promise<string[]> {
  const out: string[] = [];
  for (const algorithm of ALGORITHMS) {
    out.push(await safeHash(input, { algorithm, workers: 0 }));
  }
  return out;
}

/** Header JSON of a safetensors file, and where its data section starts. */
function splitFile(bytes: Uint8Array): {
  json: Record<string, unknown>;
  headerBytes: Uint8Array;
  dataStart: number;
} {
  const n = Number(
    new DataView(bytes.buffer, bytes.byteOffset).getBigUint64(0, true),
  );
  const headerBytes = bytes.subarray(8, 8 + n);
  return {
    json: JSON.parse(new TextDecoder().decode(headerBytes)),
    headerBytes,
    dataStart: 8 + n,
  };
}

/** A stream over `bytes` in `chunk`-byte pieces that records what was pulled. */
function countingStream(bytes: Uint8Array, chunk: number) {
  const stats = { pulled: 0, cancelled: false };
  const stream = new ReadableStream<Uint8Array>({
    pull(controller) {
      if (stats.pulled >= bytes.byteLength) {
        controller.close();
        return;
      }
      const piece = bytes.slice(stats.pulled, stats.pulled + chunk);
      stats.pulled += piece.byteLength;
      controller.enqueue(piece);
    },
    cancel() {
      stats.cancelled = true;
    },
  }, { highWaterMark: 0 });
  return { stream, stats };
}

/** Writes a safetensors file with `mib` MiB of F32 data in 1 MiB tensors. */
async function writeLargeFile(
  path: string,
  mib: number,
  metadata?: Record<string, string>,
): Promise<number> {
  const header: Record<string, unknown> = {};
  if (metadata) header.__metadata__ = metadata;
  for (let i = 0; i < mib; i++) {
    header[`layer.${i}`] = {
      dtype: "F32",
      shape: [1 << 18],
      data_offsets: [i << 20, (i + 1) << 20],
    };
  }
  const json = new TextEncoder().encode(JSON.stringify(header));
  const n = Math.ceil(json.byteLength / 8) * 8;
  const head = new Uint8Array(8 + n).fill(0x20);
  new DataView(head.buffer).setBigUint64(0, BigInt(n), true);
  head.set(json, 8);
  using f = await Deno.open(path, {
    write: true,
    create: true,
    truncate: true,
  });
  await f.write(head);
  const block = new Uint8Array(1 << 20);
  const rand = prng(7);
  for (let i = 0; i < mib; i++) {
    for (let j = 0; j < 64; j++) block[(j << 14) + i] = (rand() * 256) | 0;
    let at = 0;
    while (at < block.byteLength) at += await f.write(block.subarray(at));
  }
  return 8 + n;
}

// ---------------------------------------------------------------- extract

Deno.test("extractMetadata: path, file: URL, bytes, Blob, stream and Response", async () => {
  const bytes = await Deno.readFile(MIXED);
  assert.deepEqual(await extractMetadata(MIXED), MIXED_META);
  assert.deepEqual(
    await extractMetadata(new URL(`file://${MIXED}`)),
    MIXED_META,
  );
  assert.deepEqual(await extractMetadata(bytes), MIXED_META);
  assert.deepEqual(await extractMetadata(new Blob([bytes])), MIXED_META);
  assert.deepEqual(
    await extractMetadata(new Blob([bytes]).stream()),
    MIXED_META,
  );
  assert.deepEqual(await extractMetadata(new Response(bytes)), MIXED_META);
  using f = await Deno.open(MIXED);
  assert.deepEqual(await extractMetadata(f.readable), MIXED_META);
});

Deno.test("extractMetadata: a file without __metadata__ gives {}", async () => {
  const file = buildSafetensors({
    w: { dtype: "U8", shape: [3], data: new Uint8Array([1, 2, 3]) },
  });
  assert.deepEqual(await extractMetadata(file), {});
  assert.deepEqual(
    await extractMetadata(new Blob([file as Uint8Array<ArrayBuffer>]).stream()),
    {},
  );
  // An empty header too.
  assert.deepEqual(await extractMetadata(buildSafetensors({})), {});
});

Deno.test("extractMetadata: a stream is cancelled right after the header", async () => {
  const bytes = await Deno.readFile(MIXED);
  const headerEnd = splitFile(bytes).dataStart;
  const { stream, stats } = countingStream(bytes, 32);
  assert.deepEqual(await extractMetadata(stream), MIXED_META);
  assert.ok(stats.cancelled, "the stream was not cancelled");
  assert.ok(
    stats.pulled <= headerEnd + 32,
    `pulled ${stats.pulled} bytes, the header ends at ${headerEnd}`,
  );
  assert.ok(stats.pulled < bytes.byteLength);
});

Deno.test("extractMetadata: a large file's tensor data is never read", async () => {
  await withTempDir(async (dir) => {
    const path = join(dir, "large.safetensors");
    const dataStart = await writeLargeFile(path, 32, { big: "yes" });
    assert.deepEqual(await extractMetadata(path), { big: "yes" });

    // From a file stream: cancelled long before the data ends.
    let pulled = 0;
    let cancelled = false;
    using f = await Deno.open(path);
    const reader = f.readable.getReader();
    const counted = new ReadableStream<Uint8Array>({
      async pull(c) {
        const r = await reader.read();
        if (r.done) c.close();
        else {
          pulled += r.value.byteLength;
          c.enqueue(r.value);
        }
      },
      async cancel(reason) {
        cancelled = true;
        await reader.cancel(reason);
      },
    }, { highWaterMark: 0 });
    assert.deepEqual(await extractMetadata(counted), { big: "yes" });
    assert.ok(cancelled, "the file stream was not cancelled");
    assert.ok(
      pulled < dataStart + (1 << 20),
      `pulled ${pulled} bytes of ${32 << 20}`,
    );

    // From a Blob: only the header's slices are read.
    class CountingBlob extends Blob {
      sliced = 0;
      override slice(start?: number, end?: number, type?: string): Blob {
        this.sliced += (end ?? this.size) - (start ?? 0);
        return super.slice(start, end, type);
      }
    }
    const blob = new CountingBlob([await Deno.readFile(path)]);
    assert.deepEqual(await extractMetadata(blob), { big: "yes" });
    assert.ok(blob.sliced <= dataStart, `read ${blob.sliced} bytes`);
  });
});

Deno.test("extractMetadata: bad files throw ModelFormatError", async () => {
  for (const path of BAD_SAFETENSORS) {
    const bytes = await Deno.readFile(path);
    for (const input of [path, bytes, new Blob([bytes])]) {
      await assert.rejects(
        extractMetadata(input),
        ModelFormatError,
        `${path} as ${input.constructor.name}`,
      );
    }
  }
  // Streams only see the header, so only header errors show there.
  for (const name of ["empty", "header_not_json", "header_too_big"]) {
    const bytes = await Deno.readFile(fixture(`bad/${name}.safetensors`));
    await assert.rejects(
      extractMetadata(new Blob([bytes]).stream()),
      ModelFormatError,
      name,
    );
  }
  // A missing file is not a format error.
  await assert.rejects(
    extractMetadata("/nonexistent/x.safetensors"),
    (e) => !(e instanceof ModelFormatError),
  );
});

// ---------------------------------------------------------------- update

Deno.test("updateMeta: merges, overrides and clobbers", async () => {
  await withTempDir(async (dir) => {
    const path = await copyTo(dir, MIXED);
    await updateMeta(path, { hello: "there", added: "1" });
    assert.deepEqual(await extractMetadata(path), {
      format: "pt",
      hello: "there",
      added: "1",
    });
    await updateMeta(new URL(`file://${path}`), { more: "x" });
    assert.deepEqual(await extractMetadata(path), {
      format: "pt",
      hello: "there",
      added: "1",
      more: "x",
    });
    await updateMeta(path, { only: "this" }, { clobber: true });
    assert.deepEqual(await extractMetadata(path), { only: "this" });
    // Clobbering with nothing drops __metadata__ entirely.
    await updateMeta(path, {}, { clobber: true });
    assert.deepEqual(await extractMetadata(path), {});
    const { json } = splitFile(await Deno.readFile(path));
    assert.equal("__metadata__" in json, false);
    // Merging nothing into nothing keeps it absent.
    await updateMeta(path, {});
    assert.equal(
      "__metadata__" in splitFile(await Deno.readFile(path)).json,
      false,
    );
    assert.deepEqual(await listDir(dir), ["model.safetensors"]);
  });
});

Deno.test("updateMeta: every tensor entry and byte is kept, data aligned to 8", async () => {
  await withTempDir(async (dir) => {
    const path = await copyTo(dir, MIXED);
    const before = await Deno.readFile(path);
    const beforeHashes = await hashes(path);
    // Odd lengths so that the padding has to change.
    for (const value of ["a", "bc", "def", "ghij", "k".repeat(13), ""]) {
      await updateMeta(path, { v: value });
      const after = await Deno.readFile(path);
      const a = splitFile(before);
      const b = splitFile(after);
      assert.equal(b.dataStart % 8, 0, `data starts at ${b.dataStart}`);
      // The JSON is followed only by spaces.
      const text = new TextDecoder().decode(b.headerBytes);
      assert.match(text, /^\{.*\} *$/s);
      delete a.json.__metadata__;
      const meta = b.json.__metadata__;
      delete b.json.__metadata__;
      assert.deepEqual(b.json, a.json);
      assert.deepEqual(meta, { ...MIXED_META, v: value });
      assert.deepEqual(
        after.subarray(b.dataStart),
        before.subarray(a.dataStart),
      );
      assert.deepEqual(await hashes(path), beforeHashes);
    }
  });
});

Deno.test("updateMeta: the file mode is preserved", async () => {
  await withTempDir(async (dir) => {
    const path = await copyTo(dir, MIXED);
    // 0o666 and 0o777 would be cut by a 022 umask if the mode were only
    // passed when creating the temporary file.
    for (const mode of [0o600, 0o640, 0o666, 0o755, 0o777]) {
      await Deno.chmod(path, mode);
      await updateMeta(path, { mode: mode.toString(8) });
      assert.equal(
        (await Deno.stat(path)).mode! & 0o777,
        mode,
        `mode ${mode.toString(8)}`,
      );
    }
  });
});

Deno.test("updateMeta: non-string values throw TypeError, file untouched", async () => {
  await withTempDir(async (dir) => {
    const path = await copyTo(dir, MIXED);
    const before = await Deno.readFile(path);
    const bad: unknown[] = [
      { n: 1 },
      { n: null },
      { n: { nested: "x" } },
      { ok: "x", n: ["a"] },
      { n: true },
      { n: undefined },
      null,
      ["a"],
      "k=v",
    ];
    for (const meta of bad) {
      await assert.rejects(
        updateMeta(path, meta as Record<string, string>),
        TypeError,
        JSON.stringify(meta),
      );
      await assert.rejects(
        rewriteMetadata(path, meta as Record<string, string>),
        TypeError,
      );
    }
    assert.deepEqual(await Deno.readFile(path), before);
    assert.deepEqual(await listDir(dir), ["model.safetensors"]);
  });
});

Deno.test("updateMeta: strings the reference parser would refuse are refused", async () => {
  await withTempDir(async (dir) => {
    const path = await copyTo(dir, MIXED);
    const before = await Deno.readFile(path);
    // JSON.stringify escapes lone surrogates as \ud800, which Rust's serde_json
    // (the safetensors reference) rejects.
    for (const meta of [{ k: "a\ud800b" }, { ["\udc00"]: "v" }]) {
      await assert.rejects(updateMeta(path, meta), TypeError);
    }
    assert.deepEqual(await Deno.readFile(path), before);
    assert.deepEqual(await listDir(dir), ["model.safetensors"]);
  });
});

Deno.test("updateMeta: bad safetensors files are refused and left unchanged", async () => {
  await withTempDir(async (dir) => {
    for (const src of BAD_SAFETENSORS) {
      const path = await copyTo(dir, src);
      const before = await Deno.readFile(path);
      await assert.rejects(updateMeta(path, { a: "b" }), ModelFormatError, src);
      await assert.rejects(rewriteMetadata(path, { a: "b" }), ModelFormatError);
      assert.deepEqual(await Deno.readFile(path), before, src);
      assert.deepEqual(await listDir(dir), ["model.safetensors"], src);
    }
    // Not safetensors at all.
    const bin = await copyTo(dir, fixture("tensors/mixed.bin"), "mixed.bin");
    const binBefore = await Deno.readFile(bin);
    await assert.rejects(updateMeta(bin, { a: "b" }), ModelFormatError);
    assert.deepEqual(await Deno.readFile(bin), binBefore);
    // A missing file.
    await assert.rejects(updateMeta(join(dir, "missing"), { a: "b" }));
    assert.deepEqual(await listDir(dir), ["mixed.bin", "model.safetensors"]);
  });
});

Deno.test("updateMeta: a file whose data section is cut short is refused before writing", async () => {
  await withTempDir(async (dir) => {
    const path = await copyTo(dir, MIXED);
    const full = await Deno.readFile(path);
    await Deno.truncate(path, full.byteLength - 5);
    const before = await Deno.readFile(path);
    await assert.rejects(
      updateMeta(path, { a: "b" }),
      (e) => e instanceof ModelFormatError && e.code === "truncated",
    );
    assert.deepEqual(await Deno.readFile(path), before);
    assert.deepEqual(await listDir(dir), ["model.safetensors"]);
  });
});

// A write failure after the source is open: the temporary file cannot be
// created. Running with write permission revoked works even as root, where a
// read-only directory would not stop anything.
let noWriteDir = "";
let noWriteBefore = new Uint8Array();
Deno.test("updateMeta: (setup for the write-failure test)", async () => {
  noWriteDir = await Deno.makeTempDir({ prefix: "safemodels_meta_" });
  noWriteBefore = await Deno.readFile(await copyTo(noWriteDir, MIXED));
});
Deno.test({
  name: "updateMeta: a failed write leaves the original intact (no write permission)",
  permissions: { read: true, write: false, run: true },
  async fn() {
    const path = join(noWriteDir, "model.safetensors");
    await assert.rejects(
      updateMeta(path, { a: "b" }),
      (e) => e instanceof Deno.errors.NotCapable,
    );
    assert.equal(await openFdsOf(path), 0, "the file was left open");
    assert.deepEqual(await Deno.readFile(path), noWriteBefore);
    assert.deepEqual(await listDir(noWriteDir), ["model.safetensors"]);
  },
});
Deno.test("updateMeta: (cleanup for the write-failure test)", async () => {
  await Deno.remove(noWriteDir, { recursive: true });
});

Deno.test({
  name: "updateMeta: a read-only folder leaves the original intact",
  ignore: Deno.build.os === "windows",
  async fn() {
    await withTempDir(async (dir) => {
      const path = await copyTo(dir, MIXED);
      const before = await Deno.readFile(path);
      await Deno.chmod(dir, 0o555);
      try {
        // Root ignores directory permissions: the test would prove nothing
        // (the no-write-permission test above covers this case).
        try {
          await Deno.writeFile(join(dir, "probe"), new Uint8Array());
          await Deno.remove(join(dir, "probe"));
          return;
        } catch { /* the folder is read-only: go on */ }
        await assert.rejects(updateMeta(path, { a: "b" }));
      } finally {
        await Deno.chmod(dir, 0o755);
      }
      assert.deepEqual(await Deno.readFile(path), before);
      assert.deepEqual(await listDir(dir), ["model.safetensors"]);
    });
  },
});

Deno.test("updateMeta: a large file is streamed, not read whole", async () => {
  await withTempDir(async (dir) => {
    const path = join(dir, "large.safetensors");
    // Big enough that reading it whole stands far above what garbage
    // collection timing adds to RSS on a busy machine (up to ~60 MiB seen).
    const mib = 256;
    await writeLargeFile(path, mib, { keep: "me" });
    const size = (await Deno.stat(path)).size;
    const hashBefore = await safeHash(path, {
      algorithm: "seed-xxh64",
      workers: 0,
    });
    const base = Deno.memoryUsage().rss;
    let peak = base;
    const timer = setInterval(() => {
      peak = Math.max(peak, Deno.memoryUsage().rss);
    }, 2);
    try {
      await updateMeta(path, { added: "yes" });
    } finally {
      clearInterval(timer);
    }
    peak = Math.max(peak, Deno.memoryUsage().rss);
    const growth = peak - base;
    assert.ok(
      growth < (mib / 2) * 2 ** 20,
      `RSS grew by ${(growth / 2 ** 20).toFixed(1)} MiB`,
    );
    assert.deepEqual(await extractMetadata(path), { keep: "me", added: "yes" });
    const after = (await Deno.stat(path)).size;
    assert.ok(Math.abs(after - size) <= 16, `${size} -> ${after}`);
    assert.equal(
      await safeHash(path, { algorithm: "seed-xxh64", workers: 0 }),
      hashBefore,
    );
    assert.deepEqual(await listDir(dir), ["large.safetensors"]);
  });
});

Deno.test("updateMeta: a tensor named __proto__ survives a rewrite", async () => {
  await withTempDir(async (dir) => {
    const path = join(dir, "model.safetensors");
    const header = new TextEncoder().encode(
      '{"__proto__":{"dtype":"U8","shape":[2],"data_offsets":[0,2]},' +
        '"b":{"dtype":"U8","shape":[1],"data_offsets":[2,3]}}',
    );
    const n = Math.ceil(header.byteLength / 8) * 8;
    const file = new Uint8Array(8 + n + 3).fill(0x20, 8, 8 + n);
    new DataView(file.buffer).setBigUint64(0, BigInt(n), true);
    file.set(header, 8);
    file.set([1, 2, 3], 8 + n);
    await Deno.writeFile(path, file);
    const before = await hashes(path);
    await updateMeta(path, { a: "b" });
    assert.deepEqual(await extractMetadata(path), { a: "b" });
    assert.deepEqual(await hashes(path), before);
  });
});

// ---------------------------------------------------------------- rewrite

Deno.test("rewriteMetadata: streams the bytes updateMeta writes", async () => {
  await withTempDir(async (dir) => {
    const path = await copyTo(dir, MIXED);
    const bytes = await Deno.readFile(path);
    for (
      const [meta, options] of [
        [{ hello: "there", x: "1" }, {}],
        [{ only: "one" }, { clobber: true }],
        [{}, {}],
      ] as const
    ) {
      const fromPath = await collect(
        await rewriteMetadata(path, meta, options),
      );
      const fromBytes = await collect(
        await rewriteMetadata(bytes, meta, options),
      );
      const fromBlob = await collect(
        await rewriteMetadata(new Blob([bytes]), meta, options),
      );
      assert.deepEqual(fromBytes, fromPath);
      assert.deepEqual(fromBlob, fromPath);
      // rewriteMetadata never touches the input.
      assert.deepEqual(await Deno.readFile(path), bytes);
      const copy = await copyTo(dir, MIXED, "copy.safetensors");
      await updateMeta(copy, meta, options);
      assert.deepEqual(await Deno.readFile(copy), fromPath);
      assert.deepEqual(await hashes(fromPath), await hashes(bytes));
    }
  });
});

Deno.test("rewriteMetadata: a cancelled stream closes the file", async () => {
  await withTempDir(async (dir) => {
    const path = join(dir, "large.safetensors");
    await writeLargeFile(path, 12);
    const stream = await rewriteMetadata(path, { a: "b" });
    const reader = stream.getReader();
    await reader.read();
    await reader.read();
    if (Deno.build.os === "linux") {
      assert.ok(await openFdsOf(path) >= 1, "the probe sees the file");
    }
    await reader.cancel();
    assert.equal(await openFdsOf(path), 0, "the file was left open");
  });
});

Deno.test("rewriteMetadata: a file cut short while streaming errors and is closed", async () => {
  await withTempDir(async (dir) => {
    const path = join(dir, "large.safetensors");
    const dataStart = await writeLargeFile(path, 12);
    const stream = await rewriteMetadata(path, { a: "b" });
    if (Deno.build.os === "linux") {
      assert.ok(await openFdsOf(path) >= 1, "the probe sees the file");
    }
    await Deno.truncate(path, dataStart + (6 << 20));
    await assert.rejects(
      collect(stream),
      (e) => e instanceof ModelFormatError && e.code === "truncated",
    );
    assert.equal(await openFdsOf(path), 0, "the file was left open");
  });
});

// ---------------------------------------------------------------- fuzz

const ALPHABET = [
  ..."abcXYZ019 _-.=:/",
  '"',
  "\\",
  "\\u0000",
  "\n",
  "\t",
  "\u0000",
  "\u001f",
  "\u007f",
  "é",
  "ß",
  "\u0301",
  "中文",
  "🙂",
  "𝄞",
  "\u2028",
  "\ufeff",
  "{",
  "}",
  "[",
  "'",
];

function randomString(rand: () => number): string {
  const len = Math.floor(rand() * rand() * 24);
  let s = "";
  for (let i = 0; i < len; i++) {
    s += ALPHABET[Math.floor(rand() * ALPHABET.length)];
  }
  return s;
}

Deno.test("updateMeta: seeded fuzz of metadata round-trips", async () => {
  await withTempDir(async (dir) => {
    const path = await copyTo(dir, MIXED);
    const expectedHashes = await hashes(path);
    const data = splitFile(await Deno.readFile(path));
    const dataBytes = (await Deno.readFile(path)).subarray(data.dataStart);
    const rand = prng(0x5afe);
    let model: Record<string, string> = { ...MIXED_META };
    const deadline = performance.now() + 1500;
    let rounds = 0;
    while (performance.now() < deadline || rounds < 20) {
      const meta: Record<string, string> = {};
      const count = Math.floor(rand() * 6);
      for (let i = 0; i < count; i++) {
        meta[randomString(rand)] = randomString(rand);
      }
      const clobber = rand() < 0.2;
      await updateMeta(path, meta, { clobber });
      model = clobber ? { ...meta } : { ...model, ...meta };
      assert.deepEqual(await extractMetadata(path), model, `round ${rounds}`);
      const bytes = await Deno.readFile(path);
      const { dataStart } = splitFile(bytes);
      assert.equal(dataStart % 8, 0);
      assert.deepEqual(bytes.subarray(dataStart), dataBytes);
      if (rounds % 25 === 0) {
        assert.deepEqual(await hashes(path), expectedHashes);
      }
      rounds++;
    }
    assert.deepEqual(await hashes(path), expectedHashes);
    assert.deepEqual(await listDir(dir), ["model.safetensors"]);
  });
});
