// The packed npm package as a Node user gets it (installed from the tarball
// into an empty folder, see .ci/run): the README's Node app guards a signed
// model (verified, tampered, wrong signer), the `safemodels` bin runs under
// Node, error classes are one instance whichever entry exports them, and the
// .d.ts types check.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { copyFileSync, cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { cliBin, dir, load } from "./_package.mjs";

const fixtures = fileURLToPath(new URL("../../../shared/fixtures/", import.meta.url));
const appSource = fileURLToPath(new URL("./app/", import.meta.url));
const expected =
  JSON.parse(readFileSync(`${fixtures}tiny-bert/expected.json`, "utf8")).hello_world_mean_pooled;

/** Runs the installed CLI under this Node. */
function cli(args, options = {}) {
  const r = spawnSync(process.execPath, [cliBin, ...args], { encoding: "utf8", ...options });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

test("every entry exports the same error classes (instanceof holds across entries)", async () => {
  const root = await load("safemodels");
  const hash = await load("safemodels/hash");
  const sign = await load("safemodels/sign");
  const guard = await load("safemodels/plugins/transformers");
  const web = await load("safemodels/plugins/transformers-web");
  assert.equal(root.ModelFormatError, hash.ModelFormatError);
  for (const name of ["HashMismatch", "InvalidSignature", "SignatureMissing", "PolicyError"]) {
    assert.ok(sign[name], name);
    assert.equal(guard[name], sign[name], `${name}: plugins/transformers`);
    assert.equal(web[name], sign[name], `${name}: plugins/transformers-web`);
  }
  assert.equal(guard.ModelFormatError, hash.ModelFormatError);
  // A hash-only app does not load the CLI or Sigstore through the root entry.
  assert.equal(root.main, undefined);
});

test(
  "the README's Node app: a signed model runs; tampered and wrong-signer models are refused",
  () => {
    const work = mkdtempSync(join(tmpdir(), "safemodels-npm-app-"));
    try {
      // The app lives beside node_modules, as in a user's project.
      const app = join(dir, "app.mjs");
      copyFileSync(join(appSource, "app.mjs"), app);
      cpSync(`${fixtures}tiny-bert`, join(work, "tiny-bert"), { recursive: true });
      // Keys from the CLI itself, then a detached OMS signature.
      let r = cli(["keygen", "--out", join(work, "key.pem")], { cwd: work });
      assert.equal(r.code, 0, r.err);
      r = cli(["keygen", "--out", join(work, "other.pem")], { cwd: work });
      assert.equal(r.code, 0, r.err);
      r = cli(["sign", join(work, "tiny-bert"), "--key", join(work, "key.pem")]);
      assert.equal(r.code, 0, r.err);
      const run = (pub) =>
        spawnSync(process.execPath, [app, `${work}/`, "tiny-bert", join(work, pub)], {
          encoding: "utf8",
          cwd: dir,
        });

      let out = run("key.pub.pem");
      assert.equal(out.status, 0, out.stderr);
      const result = JSON.parse(out.stdout);
      assert.ok(result.verdicts.length >= 3 && result.verdicts.every((v) => v === "verified"));
      result.embedding.forEach((v, i) =>
        assert.ok(Math.abs(v - expected[i]) < 1e-5, `[${i}] ${v}`)
      );

      out = run("other.pub.pem");
      assert.equal(out.status, 1);
      assert.match(out.stderr, /^untrusted: untrusted-key: .*model\.sig/);

      const onnx = join(work, "tiny-bert", "onnx", "model.onnx");
      const bytes = readFileSync(onnx);
      bytes[100] ^= 1;
      writeFileSync(onnx, bytes);
      out = run("key.pub.pem");
      assert.equal(out.status, 1);
      assert.match(out.stderr, /^tampered: content-changed: .*onnx\/model\.onnx/);
    } finally {
      rmSync(work, { recursive: true, force: true });
    }
  },
);

test("the safemodels bin under Node: version, help, hash (file and stdin), verify, exit codes", () => {
  const pkg = JSON.parse(readFileSync(join(dir, "node_modules", "safemodels", "package.json")));
  let r = cli(["--version"]);
  assert.equal(r.code, 0);
  assert.equal(r.out.trim(), `safemodels ${pkg.version}`);
  // As users run it: npx finds the package's bin in node_modules/.bin.
  const npx = spawnSync("npx", ["--no-install", "safemodels", "--version"], {
    cwd: dir,
    encoding: "utf8",
  });
  assert.equal(npx.status, 0, npx.stderr);
  assert.equal(npx.stdout.trim(), `safemodels ${pkg.version}`);
  r = cli(["verify", "--help"]);
  assert.equal(r.code, 0);
  assert.match(r.out, /^Usage: safemodels verify/);
  r = cli(["hsah"]);
  assert.equal(r.code, 2);
  assert.match(r.err, /did you mean "hash"/);

  const tensors = JSON.parse(readFileSync(`${fixtures}tensors/expected.json`, "utf8"));
  const [file, want] = Object.entries(tensors)[0];
  r = cli(["hash", "--algorithm", "seed-xxh64", `${fixtures}tensors/${file}`]);
  assert.equal(r.code, 0, r.err);
  assert.equal(r.out.split(" ")[0], want.seed_xxh64);
  if (file.endsWith(".safetensors")) {
    r = cli(["hash", "--algorithm", "seed-xxh64", "-"], {
      input: readFileSync(`${fixtures}tensors/${file}`),
    });
    assert.equal(r.code, 0, r.err);
    assert.equal(r.out.split(" ")[0], want.seed_xxh64);
  }

  const model = `${fixtures}oms/v1.0.1-elliptic-key`;
  const args = ["verify", model, "--ignore", "ignore-me", "--key"];
  r = cli([...args, `${fixtures}oms/keys/signing-key-pub.pem`, "--json"]);
  assert.equal(r.code, 0, r.err);
  assert.ok(Array.isArray(JSON.parse(r.out)) || typeof JSON.parse(r.out) === "object");
  // A private key where a public one belongs: a usage error (2), not a failed check.
  r = cli([...args, `${fixtures}oms/keys/signing-key.pem`]);
  assert.equal(r.code, 2, r.err);
  // A key the signature was not made with: a failed check (1).
  const work = mkdtempSync(join(tmpdir(), "safemodels-npm-cli-"));
  try {
    assert.equal(cli(["keygen", "--out", join(work, "k.pem")]).code, 0);
    r = cli([...args, join(work, "k.pub.pem")]);
    assert.equal(r.code, 1, r.err);
    assert.equal(r.err.trim().split("\n").length, 1, r.err);
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
});

test("the package's .d.ts types check in a strict TypeScript consumer", () => {
  copyFileSync(join(appSource, "consumer.ts"), join(dir, "consumer.ts"));
  const config = (file) =>
    JSON.stringify({
      compilerOptions: {
        strict: true,
        noEmit: true,
        module: "nodenext",
        moduleResolution: "nodenext",
        target: "es2022",
        lib: ["es2023", "dom"],
        types: [],
        skipLibCheck: true,
      },
      files: [file],
    });
  writeFileSync(join(dir, "tsconfig.json"), config("consumer.ts"));
  const tsc = join(dir, "node_modules", "typescript", "bin", "tsc");
  const r = spawnSync(process.execPath, [tsc, "-p", join(dir, "tsconfig.json")], {
    encoding: "utf8",
  });
  assert.equal(r.status, 0, r.stdout + r.stderr);
  // The check can fail: a wrong type in a consumer is reported.
  writeFileSync(
    join(dir, "bad.ts"),
    'import { safeHash } from "safemodels/hash";\nexport const n: number = await safeHash("m");\n',
  );
  writeFileSync(join(dir, "tsconfig.bad.json"), config("bad.ts"));
  const bad = spawnSync(process.execPath, [tsc, "-p", join(dir, "tsconfig.bad.json")], {
    encoding: "utf8",
  });
  assert.notEqual(bad.status, 0);
  assert.match(bad.stdout, /Type 'string' is not assignable to type 'number'/);
});

test("the CLI's code inlined into another entry file (a bundler's output) does not run as the CLI", () => {
  // Node 24+ sets import.meta.main for the entry; a bundler that inlines the
  // CLI module into an app keeps its import.meta. A copy of the CLI module
  // under another name, run as the entry, stands in for such a bundle.
  const plugins = join(dir, "node_modules", "safemodels", "plugins");
  const entry = join(plugins, "app-entry.js");
  copyFileSync(join(plugins, "cli.js"), entry);
  try {
    const r = spawnSync(process.execPath, [entry, "--version"], { encoding: "utf8" });
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stdout, "");
    // The real entry does run (Node 24+; older Node has no import.meta.main).
    const cliFile = spawnSync(process.execPath, [join(plugins, "cli.js"), "--version"], {
      encoding: "utf8",
    });
    if (import.meta.main !== undefined) assert.match(cliFile.stdout, /^safemodels /);
  } finally {
    rmSync(entry, { force: true });
  }
});
