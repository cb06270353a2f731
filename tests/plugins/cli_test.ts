// Tests for the command line (plugins/cli.ts), in process and as a subprocess.
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { join } from "node:path";
import { type CliIO, main } from "../../plugins/cli.ts";
import { safeHash } from "../../hash/safe_hash.ts";
import { extractMetadata } from "../../meta/extract_metadata.ts";
import { copyTo, expected, fixture, listDir } from "../_helpers.ts";

const MIXED = fixture("tensors/mixed.safetensors");
const MIXED_BIN = fixture("tensors/mixed.bin");
const CONFIG = fixture("tiny-bert/config.json");
const EMPTY = fixture("bad/empty.safetensors");
const PROJECT = decodeURIComponent(new URL("../../", import.meta.url).pathname);

interface Run {
  code: number;
  out: string[];
  err: string[];
}

/** Runs the CLI in process, capturing what it prints. */
async function run(...args: string[]): Promise<Run> {
  const out: string[] = [];
  const err: string[] = [];
  const io: CliIO = {
    out: (s) => out.push(s),
    err: (s) => err.push(s),
    isTerminal: false,
  };
  const code = await main(args, io);
  return { code, out, err };
}

/** Asserts a usage/input error: status 2 and one `safemodels: ` line. */
function assertError(r: Run, pattern?: RegExp): string {
  assert.equal(r.code, 2, `status ${r.code}, stderr ${JSON.stringify(r.err)}`);
  assert.deepEqual(r.out, []);
  assert.equal(r.err.length, 1, JSON.stringify(r.err));
  const line = r.err[0]!;
  assert.ok(
    !/[\r\n]/.test(line),
    `more than one line: ${JSON.stringify(line)}`,
  );
  assert.ok(line.startsWith("safemodels: "), line);
  assert.ok(!/\n\s+at /.test(line) && !/\bat .*:\d+:\d+/.test(line), line);
  if (pattern) assert.match(line, pattern);
  return line;
}

async function withTempDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "safemodels_cli_" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

const mixedExpected = expected("tensors")["mixed.safetensors"] as Record<
  string,
  string
>;

// ---------------------------------------------------------------- hash

Deno.test("cli hash: prints '<hash>  <file>' and exits 0", async () => {
  const want = await safeHash(MIXED, { workers: 0 });
  const r = await run("hash", MIXED);
  assert.equal(r.code, 0);
  assert.deepEqual(r.err, []);
  assert.deepEqual(r.out, [`${want}  ${MIXED}`]);
  assert.match(want, /^safemodels-v1:[0-9a-f]{64}$/);
});

Deno.test("cli hash: several files, one line each in order", async () => {
  const files = [MIXED, MIXED_BIN, fixture("tensors/mixed.npz")];
  const r = await run("hash", ...files);
  assert.equal(r.code, 0);
  assert.deepEqual(r.err, []);
  const want = [];
  for (const f of files) {
    want.push(`${await safeHash(f, { workers: 0 })}  ${f}`);
  }
  assert.deepEqual(r.out, want);
  // Same weights as safetensors and as a torch zip give the same hash.
  assert.equal(r.out[0]!.split("  ")[0], r.out[1]!.split("  ")[0]);
});

Deno.test("cli hash: --algorithm seed-xxh64 and seed-blake2b160 match expected.json", async () => {
  const a = await run("hash", "--algorithm", "seed-xxh64", MIXED);
  assert.equal(a.code, 0);
  assert.deepEqual(a.out, [`${mixedExpected.seed_xxh64}  ${MIXED}`]);
  const b = await run("hash", "-a", "seed-blake2b160", MIXED);
  assert.equal(b.code, 0);
  assert.deepEqual(b.out, [`${mixedExpected.seed_blake2b160}  ${MIXED}`]);
  const c = await run("hash", `--algorithm=seed-xxh64`, MIXED_BIN);
  assert.deepEqual(c.out, [
    `${(expected("tensors")["mixed.bin"] as Record<string, string>).seed_xxh64}  ${MIXED_BIN}`,
  ]);
});

Deno.test("cli hash: --json prints a JSON array of file, algorithm and hash", async () => {
  const r = await run("hash", "--json", "-a", "seed-xxh64", MIXED, MIXED_BIN);
  assert.equal(r.code, 0);
  assert.deepEqual(r.err, []);
  const parsed = JSON.parse(r.out.join("\n"));
  assert.deepEqual(parsed, [
    {
      file: MIXED,
      algorithm: "seed-xxh64",
      hash: mixedExpected.seed_xxh64,
    },
    {
      file: MIXED_BIN,
      algorithm: "seed-xxh64",
      hash: (expected("tensors")["mixed.bin"] as Record<string, string>)
        .seed_xxh64,
    },
  ]);
  const v1 = JSON.parse((await run("hash", MIXED, "--json")).out.join("\n"));
  assert.equal(v1[0].algorithm, "safemodels-v1");
  assert.equal(v1[0].hash, await safeHash(MIXED, { workers: 0 }));
});

Deno.test("cli hash: --format overrides detection", async () => {
  const want = await safeHash(MIXED, { workers: 0 });
  const r = await run("hash", "--format", "safetensors", MIXED);
  assert.equal(r.code, 0);
  assert.deepEqual(r.out, [`${want}  ${MIXED}`]);
  // Forcing the wrong format is an input error, not a crash.
  assertError(await run("hash", "--format", "npy", MIXED));
  assertError(await run("hash", "--format", "onnx", MIXED));
  assertError(
    await run("hash", "--format", "gguf", MIXED),
    /unknown --format "gguf"/,
  );
});

Deno.test("cli hash: --workers 2 gives the same hash", async () => {
  const want = await safeHash(MIXED, { workers: 0 });
  for (const w of ["2", "0", "1"]) {
    const r = await run("hash", "--workers", w, MIXED, MIXED_BIN);
    assert.equal(r.code, 0, `--workers ${w}: ${r.err}`);
    assert.deepEqual(r.out, [`${want}  ${MIXED}`, `${want}  ${MIXED_BIN}`]);
  }
});

// ---------------------------------------------------------------- digest

Deno.test("cli digest: sha256 of config.json matches expected.json", async () => {
  const want = (expected("tiny-bert").files_sha256 as Record<string, string>)[
    "config.json"
  ];
  const r = await run("digest", CONFIG);
  assert.equal(r.code, 0);
  assert.deepEqual(r.err, []);
  assert.deepEqual(r.out, [`${want}  ${CONFIG}`]);
  const s = await run("digest", "--algorithm", "sha256", "--json", CONFIG);
  assert.deepEqual(JSON.parse(s.out.join("\n")), [
    { file: CONFIG, algorithm: "sha256", digest: want },
  ]);
});

Deno.test("cli digest: blake2b and blake3", async () => {
  const bytes = await Deno.readFile(CONFIG);
  const b2 = await run("digest", "-a", "blake2b", CONFIG);
  assert.equal(b2.code, 0);
  assert.deepEqual(b2.out, [
    `${createHash("blake2b512").update(bytes).digest("hex")}  ${CONFIG}`,
  ]);
  const b3 = await run("digest", "--algorithm", "blake3", CONFIG, EMPTY);
  assert.equal(b3.code, 0);
  assert.equal(b3.out.length, 2);
  assert.match(b3.out[0]!, new RegExp(`^[0-9a-f]{64}  ${CONFIG}$`));
  // BLAKE3 of no bytes (the reference test vector).
  assert.equal(
    b3.out[1],
    `af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262  ${EMPTY}`,
  );
  const e = await run("digest", EMPTY);
  assert.deepEqual(e.out, [
    `e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855  ${EMPTY}`,
  ]);
});

// ---------------------------------------------------------------- meta

Deno.test("cli meta get: prints the metadata as JSON", async () => {
  const r = await run("meta", "get", MIXED);
  assert.equal(r.code, 0);
  assert.deepEqual(r.err, []);
  assert.deepEqual(JSON.parse(r.out.join("\n")), {
    format: "pt",
    hello: "world",
  });
  const none = await run("meta", "get", fixture("tiny-bert/model.safetensors"));
  assert.deepEqual(JSON.parse(none.out.join("\n")), { format: "pt" });
});

Deno.test("cli meta set: merges, and replaces with --clobber", async () => {
  await withTempDir(async (dir) => {
    const path = await copyTo(dir, MIXED);
    const hash = await safeHash(path, { workers: 0 });
    let r = await run("meta", "set", path, "hello=there", "eq=a=b", "empty=");
    assert.equal(r.code, 0, r.err.join());
    assert.deepEqual(r.out, []);
    assert.deepEqual(r.err, []);
    assert.deepEqual(await extractMetadata(path), {
      format: "pt",
      hello: "there",
      eq: "a=b",
      empty: "",
    });
    r = await run("meta", "set", path, "only=this", "--clobber");
    assert.equal(r.code, 0, r.err.join());
    assert.deepEqual(await extractMetadata(path), { only: "this" });
    assert.equal(await safeHash(path, { workers: 0 }), hash);
    assert.deepEqual(await listDir(dir), ["model.safetensors"]);
  });
});

// ---------------------------------------------------------------- errors

Deno.test("cli errors: usage errors exit 2 with one line", async () => {
  assertError(await run("frobnicate"), /unknown command "frobnicate"/);
  assertError(await run("hash"), /at least one file/);
  assertError(await run("digest"), /at least one file/);
  assertError(await run("hash", "--bogus", MIXED));
  assertError(
    await run("hash", "--algorithm", "md5", MIXED),
    /unknown --algorithm "md5"/,
  );
  assertError(
    await run("digest", "--algorithm", "md5", CONFIG),
    /unknown --algorithm "md5"/,
  );
  assertError(await run("hash", "--algorithm"));
  for (const w of ["abc", "-1", "1.5", "", "65", "0x2", "1e1", " 2"]) {
    assertError(
      await run("hash", `--workers=${w}`, MIXED),
      /--workers must be an integer/,
    );
  }
  assertError(await run("meta"), /meta needs "get" or "set", got nothing/);
  assertError(await run("meta", "put", MIXED), /"put"/);
  assertError(await run("meta", "get"), /exactly one file/);
  assertError(await run("meta", "get", MIXED, MIXED), /exactly one file/);
});

Deno.test("cli errors: meta set without pairs or with a bad pair", async () => {
  await withTempDir(async (dir) => {
    const path = await copyTo(dir, MIXED);
    const before = await Deno.readFile(path);
    assertError(await run("meta", "set"), /a file and at least one key=value/);
    assertError(
      await run("meta", "set", path),
      /a file and at least one key=value/,
    );
    assertError(
      await run("meta", "set", path, "--clobber"),
      /at least one key=value/,
    );
    assertError(
      await run("meta", "set", path, "k"),
      /expected key=value, got "k"/,
    );
    assertError(await run("meta", "set", path, "a=1", "=v"), /got "=v"/);
    assertError(
      await run("meta", "set", fixture("bad/truncated.safetensors"), "a=b"),
    );
    assert.deepEqual(await Deno.readFile(path), before);
    assert.deepEqual(await listDir(dir), ["model.safetensors"]);
  });
});

Deno.test("cli errors: missing and bad files", async () => {
  const missing = "/nonexistent/model.safetensors";
  for (const cmd of [["hash"], ["digest"], ["meta", "get"]]) {
    assertError(await run(...cmd, missing), /no such file/i);
  }
  assertError(await run("meta", "set", missing, "a=b"), /no such file/i);
  // With several files, each gets its result; one failing makes the run exit 1.
  const r = await run("hash", MIXED, missing, MIXED);
  assert.equal(r.code, 1);
  assert.equal(r.out.length, 2);
  assert.equal(r.err.length, 1);
  assert.match(r.err[0]!, /nonexistent\/model\.safetensors.*no such file/);
  // In JSON the error is one of the results.
  const j = await run("digest", "--json", MIXED, missing);
  assert.equal(j.code, 1);
  const results = JSON.parse(j.out.join("\n"));
  assert.equal(results.length, 2);
  assert.match(results[0].digest, /^[0-9a-f]{64}$/);
  assert.equal(results[1].file, missing);
  assert.match(results[1].error.message, /no such file/);
  const line = assertError(
    await run("hash", fixture("bad/evil_reduce.bin")),
    /posix\.system/,
  );
  assert.match(line, /evil_reduce\.bin/);
  for (
    const name of [
      "empty.safetensors",
      "header_not_json.safetensors",
      "header_too_big.safetensors",
      "offsets_out_of_range.safetensors",
      "truncated.safetensors",
      "not_a_model.bin",
    ]
  ) {
    assertError(await run("hash", fixture(`bad/${name}`)));
  }
  assertError(
    await run("meta", "get", fixture("bad/header_not_json.safetensors")),
  );
  assertError(await run("meta", "get", MIXED_BIN));
});

Deno.test("cli errors: a message with a newline still prints one line", async () => {
  await withTempDir(async (dir) => {
    const path = join(dir, "model.safetensors");
    const header = new TextEncoder().encode(
      JSON.stringify({
        "evil\nname": { dtype: "Q9", shape: [1], data_offsets: [0, 1] },
      }),
    );
    const n = Math.ceil(header.byteLength / 8) * 8;
    const file = new Uint8Array(8 + n + 1).fill(0x20, 8, 8 + n);
    new DataView(file.buffer).setBigUint64(0, BigInt(n), true);
    file.set(header, 8);
    await Deno.writeFile(path, file);
    assertError(await run("hash", path), /evil name/);
  });
});

// ---------------------------------------------------------------- subprocess

async function deno(...args: string[]) {
  const { code, stdout, stderr } = await new Deno.Command(Deno.execPath(), {
    args,
    cwd: PROJECT,
    stdin: "null",
    env: { NO_COLOR: "1" },
  }).output();
  const dec = new TextDecoder();
  return { code, stdout: dec.decode(stdout), stderr: dec.decode(stderr) };
}

Deno.test("cli subprocess: plugins/cli.ts and mod.ts hash a file", async () => {
  const want = `${mixedExpected.seed_xxh64}  ${MIXED}\n`;
  const viaCli = await deno(
    "run",
    "--no-prompt",
    "--allow-read",
    join(PROJECT, "plugins/cli.ts"),
    "hash",
    "-a",
    "seed-xxh64",
    MIXED,
  );
  assert.equal(viaCli.code, 0, viaCli.stderr);
  assert.equal(viaCli.stdout, want);
  assert.equal(viaCli.stderr, "");

  const viaMod = await deno(
    "run",
    "--no-prompt",
    "--allow-read",
    "mod.ts",
    "hash",
    MIXED,
  );
  assert.equal(viaMod.code, 0, viaMod.stderr);
  assert.equal(
    viaMod.stdout,
    `${await safeHash(MIXED, { workers: 0 })}  ${MIXED}\n`,
  );
});

Deno.test("cli subprocess: a failing run exits 2 with one stderr line", async () => {
  const r = await deno(
    "run",
    "--no-prompt",
    "--allow-read",
    join(PROJECT, "plugins/cli.ts"),
    "hash",
    fixture("bad/evil_reduce.bin"),
  );
  assert.equal(r.code, 2);
  assert.equal(r.stdout, "");
  assert.match(r.stderr, /^safemodels: [^\n]*posix\.system[^\n]*\n$/);
});

Deno.test("cli subprocess: meta set without --allow-write exits 2, file intact", async () => {
  await withTempDir(async (dir) => {
    const path = await copyTo(dir, MIXED);
    const before = await Deno.readFile(path);
    const r = await deno(
      "run",
      "--no-prompt",
      "--allow-read",
      join(PROJECT, "plugins/cli.ts"),
      "meta",
      "set",
      path,
      "a=b",
    );
    assert.equal(r.code, 2, r.stderr);
    assert.equal(r.stdout, "");
    assert.match(r.stderr, /^safemodels: [^\n]*write access[^\n]*\n$/);
    assert.deepEqual(await Deno.readFile(path), before);
    assert.deepEqual(await listDir(dir), ["model.safetensors"]);
  });
});
