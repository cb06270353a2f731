// The CLI as a new user meets it: help for each command, the version, "did
// you mean" for typos, keygen from nothing, and regexp identities.
import assert from "node:assert/strict";
import nodeCrypto from "node:crypto";
import { writeSparseSafetensors } from "../_helpers.ts";
import { runCli } from "./_cli_run.ts";
import config from "../../deno.json" with { type: "json" };

const run = (args: string[]) => runCli(args);

Deno.test("cli: <command> --help prints that command's usage on stdout and exits 0", async () => {
  for (const command of ["hash", "digest", "meta", "sign", "verify", "lock", "check", "keygen"]) {
    const r = await run([command, "--help"]);
    assert.equal(r.code, 0, `${command}: ${r.err}`);
    assert.match(r.out, new RegExp(`^Usage: safemodels ${command}`));
    assert.match(r.out, new RegExp(`\\n  ${command}`), `${command}: ${r.out}`);
    assert.equal(r.err, "");
  }
  const all = await run(["--help"]);
  assert.equal(all.code, 0);
  assert.match(all.out, /keygen/);
});

Deno.test("cli: --version prints the package version", async () => {
  for (const flag of ["--version", "-V"]) {
    const r = await run([flag]);
    assert.equal(r.code, 0);
    assert.equal(r.out.trim(), `safemodels ${config.version}`);
  }
});

Deno.test("cli: a mistyped command or option says what was probably meant (exit 2)", async () => {
  const c = await run(["verfy", "x"]);
  assert.equal(c.code, 2);
  assert.match(c.err, /did you mean "verify"/);
  const o = await run(["hash", "--algoritm", "seed-xxh64", "x"]);
  assert.equal(o.code, 2);
  assert.match(o.err, /did you mean --algorithm\?/);
  // Two neighbouring letters swapped count as one slip.
  assert.match((await run(["hsah", "x"])).err, /did you mean "hash"/);
  assert.match((await run(["verify", "x", "--idnetity", "a"])).err, /did you mean --identity\?/);
  const far = await run(["zzzzzz"]);
  assert.doesNotMatch(far.err, /did you mean/);
});

Deno.test("cli: keygen writes a key pair that signs and verifies; encrypted with a password file; never overwrites", async () => {
  const dir = await Deno.makeTempDir({ prefix: "keygen-" });
  try {
    const key = `${dir}/k.pem`;
    const r = await run(["keygen", "--out", key]);
    assert.equal(r.code, 0, r.err);
    assert.equal((await Deno.stat(key)).mode! & 0o777, 0o600);
    const pub = await Deno.readTextFile(`${dir}/k.pub.pem`);
    assert.equal(nodeCrypto.createPublicKey(pub).asymmetricKeyDetails?.namedCurve, "prime256v1");
    // Sign and verify a folder with the pair.
    await Deno.mkdir(`${dir}/m`);
    await Deno.writeTextFile(`${dir}/m/w.bin`, "w");
    assert.equal((await run(["sign", `${dir}/m`, "--key", key])).code, 0);
    assert.equal((await run(["verify", `${dir}/m`, "--key", `${dir}/k.pub.pem`])).code, 0);
    // Never overwrites.
    const again = await run(["keygen", "--out", key]);
    assert.equal(again.code, 2);
    assert.match(again.err, /never overwrites/);
    // P-521, encrypted with a password from a file.
    await Deno.writeTextFile(`${dir}/pw`, "correct horse\n");
    const enc = await run([
      "keygen",
      "--curve",
      "P-521",
      "--encrypt",
      "--key-password-file",
      `${dir}/pw`,
      "--out",
      `${dir}/e.pem`,
    ]);
    assert.equal(enc.code, 0, enc.err);
    assert.match(await Deno.readTextFile(`${dir}/e.pem`), /ENCRYPTED PRIVATE KEY/);
    assert.equal(
      (await run(["sign", `${dir}/m`, "--key", `${dir}/e.pem`, "--key-password-file", `${dir}/pw`]))
        .code,
      0,
    );
    assert.equal((await run(["verify", `${dir}/m`, "--key", `${dir}/e.pub.pem`])).code, 0);
    assert.equal((await run(["keygen", "--curve", "P-999", "--out", `${dir}/x.pem`])).code, 2);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("cli: --identity-regexp and --issuer-regexp match whole values; one issuer serves several identities", async () => {
  const base = new URL("../testdata/model_signing/", import.meta.url).pathname;
  const args = (...policy: string[]) => [
    "verify",
    ...policy,
    "--ignore-paths",
    `${base}v1.1.0-sigstore/ignore-me`,
    "--signature",
    `${base}v1.1.0-sigstore/model.sig`,
    `${base}v1.1.0-sigstore`,
  ];
  const issuer = "https://sigstore.verify.ibm.com/oauth2";
  assert.equal(
    (await run(args("--identity-regexp", "stefanb@.*\\.com", "--issuer", issuer))).code,
    0,
  );
  // Anchored: a fragment does not match.
  assert.equal((await run(args("--identity-regexp", "stefanb", "--issuer", issuer))).code, 1);
  assert.equal(
    (await run(
      args(
        "--identity",
        "stefanb@us.ibm.com",
        "--issuer-regexp",
        "https://sigstore\\.verify\\.ibm\\.com/.*",
      ),
    )).code,
    0,
  );
  // Several identities, one issuer.
  assert.equal(
    (await run(
      args("--identity", "a@example.com", "--identity", "stefanb@us.ibm.com", "--issuer", issuer),
    )).code,
    0,
  );
  assert.equal((await run(args("--identity-regexp", "(", "--issuer", issuer))).code, 2);
});

Deno.test("cli: a private key given to verify --key, and a policy file with an unknown field, are usage errors (exit 2) that say so", async () => {
  const dir = await Deno.makeTempDir({ prefix: "cli-usage-" });
  try {
    assert.equal((await run(["keygen", "--out", `${dir}/k.pem`])).code, 0);
    await Deno.mkdir(`${dir}/m`);
    await Deno.writeTextFile(`${dir}/m/w.bin`, "w");
    assert.equal((await run(["sign", `${dir}/m`, "--key", `${dir}/k.pem`])).code, 0);
    const wrong = await run(["verify", `${dir}/m`, "--key", `${dir}/k.pem`]);
    assert.equal(wrong.code, 2);
    assert.match(wrong.err, /is a private key; verify takes the public key/);
    await Deno.writeTextFile(`${dir}/p.json`, JSON.stringify({ publicKey: ["k.pub.pem"] }));
    const typo = await run(["check", `${dir}/m`, "--policy", `${dir}/p.json`]);
    assert.equal(typo.code, 2);
    assert.match(typo.err, /unknown policy field "publicKey" \(did you mean "publicKeys"\?\)/);
    await Deno.writeTextFile(
      `${dir}/p.json`,
      JSON.stringify({ signers: [{ identity: "a@b.c", issuer: "https://x", isuer: "y" }] }),
    );
    assert.match(
      (await run(["check", `${dir}/m`, "--policy", `${dir}/p.json`])).err,
      /unknown field "isuer"/,
    );
    await Deno.writeTextFile(`${dir}/p.json`, JSON.stringify({ publicKeys: ["k.pub.pem"] }));
    assert.equal((await run(["check", `${dir}/m`, "--policy", `${dir}/p.json`])).code, 0);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("cli: lock does not write into the model folder unless told, and a lockfile there is never one of the model's files", async () => {
  const dir = await Deno.makeTempDir({ prefix: "cli-lock-" });
  const before = Deno.cwd();
  try {
    await Deno.writeTextFile(`${dir}/w.bin`, "w");
    Deno.chdir(dir);
    const r = await run([
      "lock",
      ".",
      "--signatures-optional",
      "--identity",
      "a@b.c",
      "--issuer",
      "https://x",
    ]);
    assert.equal(r.code, 2, r.out + r.err);
    assert.match(r.err, /into the model folder/);
    // Told to: it writes there, and verifying the folder later does not count it.
    const told = await run([
      "lock",
      ".",
      "--signatures-optional",
      "--lock",
      "safemodels.lock",
      "--identity",
      "a@b.c",
      "--issuer",
      "https://x",
    ]);
    assert.equal(told.code, 0, told.err);
    const again = await run([
      "verify",
      ".",
      "--signatures-optional",
      "--lock",
      "safemodels.lock",
      "--frozen",
      "--identity",
      "a@b.c",
      "--issuer",
      "https://x",
      "--json",
    ]);
    assert.equal(again.code, 0, again.err);
    assert.deepEqual(JSON.parse(again.out).checked, ["w.bin"]);
  } finally {
    Deno.chdir(before);
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("cli: `-` reads standard input for hash and digest", async () => {
  const cli = new URL("../../plugins/cli.ts", import.meta.url).pathname;
  const model =
    new URL("../../../shared/fixtures/tiny-bert/model.safetensors", import.meta.url).pathname;
  const piped = async (args: string[], input: Uint8Array) => {
    const child = new Deno.Command(Deno.execPath(), {
      args: ["run", "--allow-read", cli, ...args],
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const writer = child.stdin.getWriter();
    await writer.write(input);
    await writer.close();
    const out = await child.output();
    return { code: out.code, out: new TextDecoder().decode(out.stdout) };
  };
  const bytes = await Deno.readFile(model);
  const fromStdin = await piped(["hash", "-"], bytes);
  assert.equal(fromStdin.code, 0);
  const fromFile = await run(["hash", model]);
  assert.equal(fromStdin.out.split(/\s+/)[0], fromFile.out.split(/\s+/)[0]);
  const d = await piped(["digest", "-"], new TextEncoder().encode("abc"));
  assert.equal(d.out.trim(), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad  -");
});

/** Whether script(1) is here to give a command a terminal. */
const hasScript = () =>
  new Deno.Command("script", { args: ["--version"], stdout: "null", stderr: "null" })
    .output().then((o) => o.success, () => false);

Deno.test("cli: long sign, verify, lock, check and meta set show one progress line on a terminal, cut to its width and cleared at the end", async (t) => {
  if (!(await hasScript())) {
    await t.step("script(1) is missing: skipped", () => {});
    return;
  }
  const dir = await Deno.makeTempDir({ prefix: "cli-progress-" });
  try {
    const cli = new URL("../../plugins/cli.ts", import.meta.url).pathname;
    await Deno.mkdir(`${dir}/a-model-with-a-rather-long-folder-name-for-the-line`);
    const model = `${dir}/a-model-with-a-rather-long-folder-name-for-the-line`;
    const file = await Deno.open(`${model}/w.bin`, { write: true, create: true });
    const block = new Uint8Array(1 << 20).fill(7);
    for (let i = 0; i < 300; i++) await file.write(block);
    file.close();
    assert.equal((await run(["keygen", "--out", `${dir}/k.pem`])).code, 0);
    // A terminal 40 columns wide (script(1) gives the command a pty).
    const inTerminal = async (args: string[]) => {
      const command = [Deno.execPath(), "run", "-A", cli, ...args].map((a) => `'${a}'`).join(" ");
      const out = await new Deno.Command("script", {
        args: ["-qec", `stty cols 40; ${command}`, "/dev/null"],
        stdout: "piped",
        stderr: "piped",
      }).output();
      return new TextDecoder().decode(out.stdout);
    };
    // A 300 MiB safetensors file (sparse) for meta set.
    const big = `${dir}/a-big-file-with-a-rather-long-name.safetensors`;
    await writeSparseSafetensors(big, { w: 300 << 20 });
    await Deno.writeTextFile(
      `${dir}/policy.json`,
      JSON.stringify({ publicKeys: [await Deno.readTextFile(`${dir}/k.pub.pem`)] }),
    );
    const pub = `${dir}/k.pub.pem`;
    for (
      const args of [
        ["sign", model, "--key", `${dir}/k.pem`],
        ["verify", model, "--key", pub],
        ["lock", model, "--key", pub, "--lock", `${dir}/safemodels.lock`],
        ["check", model, "--policy", `${dir}/policy.json`],
        ["meta", "set", big, "note=progress"],
      ]
    ) {
      const text = await inTerminal(args);
      const lines = text.split("\r").filter((l) => l.includes("MiB") || /\d%/.test(l));
      assert.ok(
        lines.length > 0,
        `${args.join(" ")}: no progress shown: ${JSON.stringify(text.slice(0, 300))}`,
      );
      for (const l of lines) {
        const visible = l.replaceAll("\x1b[K", "").replace(/\n.*$/s, "");
        assert.ok(visible.length <= 39, `${args[0]}: ${visible.length} columns: ${visible}`);
      }
      assert.ok(text.includes("\r\x1b[K"), `${args[0]}: the line is not cleared`);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

for (const command of ["meta set", "sign"]) {
  Deno.test(`cli: Ctrl-C during ${command} leaves no temporary file and the original intact`, async () => {
    const dir = await Deno.makeTempDir({ prefix: "cli-sigint-" });
    const keys = await Deno.makeTempDir({ prefix: "cli-sigint-keys-" });
    try {
      const cli = new URL("../../plugins/cli.ts", import.meta.url).pathname;
      const path = `${dir}/big.safetensors`;
      await writeSparseSafetensors(path, { w: 768 << 20 });
      assert.equal((await run(["keygen", "--out", `${keys}/k.pem`])).code, 0);
      const before = await Deno.stat(path);
      const args = command === "meta set"
        ? ["meta", "set", path, "note=interrupted"]
        : ["sign", path, "--key", `${keys}/k.pem`, "--name", "big", "--model-version", "1"];
      const child = new Deno.Command(Deno.execPath(), {
        args: ["run", "-A", cli, ...args],
        stdout: "null",
        stderr: "null",
      }).spawn();
      // Wait for the temporary file, then interrupt.
      let seen = false;
      for (let i = 0; i < 1000 && !seen; i++) {
        seen = [...Deno.readDirSync(dir)].some((e) => e.name.endsWith(".tmp"));
        if (!seen) await new Promise((r) => setTimeout(r, 10));
      }
      assert.ok(seen, "the temporary file never appeared");
      child.kill("SIGINT");
      const status = await child.status;
      const left = [...Deno.readDirSync(dir)].map((e) => e.name);
      assert.deepEqual(left, ["big.safetensors"], `left behind: ${left}`);
      assert.equal(status.code, 130);
      const after = await Deno.stat(path);
      assert.equal(after.size, before.size);
      assert.equal(after.mtime?.getTime(), before.mtime?.getTime());
    } finally {
      await Deno.remove(dir, { recursive: true });
      await Deno.remove(keys, { recursive: true });
    }
  });
}

Deno.test("cli: lock --update replaces a model's entry after a deliberate change; plain lock refuses the change", async () => {
  const dir = await Deno.makeTempDir({ prefix: "cli-update-" });
  try {
    await Deno.mkdir(`${dir}/m`);
    await Deno.writeTextFile(`${dir}/m/w.bin`, "v1");
    const policy = ["--signatures-optional", "--identity", "a@b.c", "--issuer", "https://x"];
    const lock = `${dir}/safemodels.lock`;
    assert.equal((await run(["lock", `${dir}/m`, ...policy, "--lock", lock])).code, 0);
    await Deno.writeTextFile(`${dir}/m/w.bin`, "v2");
    const refused = await run(["lock", `${dir}/m`, ...policy, "--lock", lock]);
    assert.equal(refused.code, 1);
    assert.match(refused.err, /lockfile pins/);
    const updated = await run(["lock", `${dir}/m`, ...policy, "--lock", lock, "--update"]);
    assert.equal(updated.code, 0, updated.err);
    assert.match(updated.out, /lockfile updated/);
    assert.equal(
      (await run(["verify", `${dir}/m`, ...policy, "--lock", lock, "--frozen"])).code,
      0,
    );
    assert.equal(
      (await run(["verify", `${dir}/m`, ...policy, "--lock", lock, "--update"])).code,
      2,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("cli: a certificate-signed model is reported by the certificate's subject, a key-signed one by the key", async () => {
  const base = new URL("../testdata/model_signing/", import.meta.url).pathname;
  const cert = await run([
    "verify",
    "certificate",
    "--signature",
    `${base}v1.1.0-certificate/model.sig`,
    "--certificate_chain",
    `${base}keys/certificate/ca-cert.pem`,
    "--ignore-paths",
    `${base}v1.1.0-certificate/ignore-me`,
    `${base}v1.1.0-certificate`,
  ]);
  assert.equal(cert.code, 0, cert.err);
  assert.match(cert.out, /signed by certificate CN=intermediate-ca;/);
  const key = await run([
    "verify",
    "key",
    "--signature",
    `${base}v1.1.0-elliptic-key/model.sig`,
    "--public_key",
    `${base}keys/certificate/signing-key-pub.pem`,
    "--ignore-paths",
    `${base}v1.1.0-elliptic-key/ignore-me`,
    `${base}v1.1.0-elliptic-key`,
  ]);
  assert.equal(key.code, 0, key.err);
  assert.match(key.out, /signed by key [0-9a-f]{16}…/);
});

Deno.test("cli: keyless signing without --allow-env says the permission is missing, not that the token is unset", async () => {
  const dir = await Deno.makeTempDir({ prefix: "cli-env-" });
  try {
    await Deno.writeTextFile(`${dir}/w.bin`, "w");
    const cli = new URL("../../plugins/cli.ts", import.meta.url).pathname;
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["run", "--allow-read", "--allow-write", cli, "sign", dir],
      env: { SIGSTORE_ID_TOKEN: "set-but-unreadable" },
      stdout: "piped",
      stderr: "piped",
    }).output();
    assert.equal(out.code, 2);
    assert.match(
      new TextDecoder().decode(out.stderr),
      /SIGSTORE_ID_TOKEN needs permission|SIGSTORE_ID_TOKEN, .* needs permission/,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("the root module's bundle (an app that only hashes) carries neither the CLI nor Sigstore", async () => {
  const dir = await Deno.makeTempDir({ prefix: "bundle-" });
  try {
    const root = new URL("../../mod.ts", import.meta.url).pathname;
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["bundle", "--quiet", "--platform", "node", "-o", `${dir}/m.mjs`, root],
      stdout: "null",
      stderr: "piped",
    }).output();
    assert.ok(out.success, new TextDecoder().decode(out.stderr));
    const text = await Deno.readTextFile(`${dir}/m.mjs`);
    for (const marker of ["fulcio", "rekor", "parseArgs", "addSignalListener"]) {
      assert.ok(!text.includes(marker), `the bundle holds "${marker}"`);
    }
    assert.match(text, /safemodels-v1/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("cli: --allow-read scoped to the model works for files big enough for workers (hashed on one thread, same hash)", async () => {
  const dir = await Deno.makeTempDir({ prefix: "cli-scoped-" });
  try {
    const path = `${dir}/big.safetensors`;
    const n = 400 << 20;
    await writeSparseSafetensors(path, { a: n / 2, b: n / 2 });
    const cli = new URL("../../plugins/cli.ts", import.meta.url).pathname;
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["run", `--allow-read=${path}`, cli, "hash", path],
      stdout: "piped",
      stderr: "piped",
    }).output();
    const err = new TextDecoder().decode(out.stderr);
    assert.equal(out.code, 0, err);
    assert.equal(err, "");
    const full = await run(["hash", path]);
    assert.equal(new TextDecoder().decode(out.stdout), full.out);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("cli: a first run of hash and digest from a clone needs no npm package but hash-wasm (no lockfile snapshot, no Sigstore)", async () => {
  const { npmCache } = JSON.parse(
    new TextDecoder().decode(
      (await new Deno.Command(Deno.execPath(), { args: ["info", "--json"], stdout: "piped" })
        .output()).stdout,
    ),
  );
  const denoDir = await Deno.makeTempDir();
  try {
    // A cache holding hash-wasm and nothing else; --cached-only fails on any other package.
    const pkg = "registry.npmjs.org/hash-wasm";
    await Deno.mkdir(`${denoDir}/npm/registry.npmjs.org`, { recursive: true });
    const cp = await new Deno.Command("cp", {
      args: ["-r", `${npmCache}/${pkg}`, `${denoDir}/npm/${pkg}`],
    }).output();
    assert.equal(cp.code, 0);
    const cli = new URL("../../plugins/cli.ts", import.meta.url).pathname;
    const model = new URL("../../../shared/fixtures/tensors/mixed.safetensors", import.meta.url)
      .pathname;
    const run = async (...args: string[]) => {
      const out = await new Deno.Command(Deno.execPath(), {
        args: ["run", "--cached-only", "--quiet", "--allow-read", cli, ...args],
        env: { DENO_DIR: denoDir },
        stdout: "piped",
        stderr: "piped",
      }).output();
      return {
        code: out.code,
        text: new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr),
      };
    };
    const hashed = await run("hash", model);
    assert.equal(hashed.code, 0, hashed.text);
    assert.match(hashed.text, /^safemodels-v1:[0-9a-f]{64} /);
    const digested = await run("digest", model);
    assert.equal(digested.code, 0, digested.text);
    // The signing half does need Sigstore: the same cache cannot run it
    // (so this test would see a static import of it from the hashing path).
    const verified = await run("verify", model, "--key", model);
    assert.notEqual(verified.code, 0);
    assert.match(verified.text, /@sigstore|npm package/i);
  } finally {
    await Deno.remove(denoDir, { recursive: true });
  }
});

Deno.test("cli --json: every command prints one JSON document of the documented shape, errors included", async () => {
  const dir = await Deno.makeTempDir({ prefix: "cli-json-" });
  try {
    const fixtures = new URL("../../../shared/fixtures/", import.meta.url).pathname;
    const model = `${dir}/m.safetensors`;
    await Deno.copyFile(`${fixtures}tensors/mixed.safetensors`, model);
    const missing = `${dir}/missing.safetensors`;
    assert.equal((await run(["keygen", "--out", `${dir}/k.pem`])).code, 0);
    const json = async (args: string[], code: number) => {
      const r = await run([...args, "--json"]);
      assert.equal(r.code, code, `${args.join(" ")}: ${r.err}`);
      return JSON.parse(r.out);
    };
    const isError = (e: unknown) =>
      typeof e === "object" && e !== null && ["name", "code", "message"].every((k) => k in e);

    // Several files: a result for each, the failing one with its error, exit 1.
    for (const command of ["hash", "digest"]) {
      const results = await json([command, model, missing], 1);
      assert.equal(results.length, 2);
      assert.equal(results[0].file, model);
      assert.ok(typeof (results[0].hash ?? results[0].digest) === "string");
      assert.equal(results[1].file, missing);
      assert.ok(isError(results[1].error), JSON.stringify(results[1]));
    }
    const meta = await json(["meta", "get", model], 0);
    assert.ok(typeof meta === "object" && !Array.isArray(meta));
    const set = await json(["meta", "set", model, "note=json"], 0);
    assert.deepEqual([set.ok, set.file, set.metadata.note], [true, model, "json"]);
    const signed = await json(["sign", model, "--key", `${dir}/k.pem`, "--detached"], 0);
    assert.deepEqual([signed.ok, signed.embedded, signed.signature], [
      true,
      false,
      `${model}.sig`,
    ]);
    // verify finds m.safetensors.sig beside the file by itself.
    const verified = await json(["verify", model, "--key", `${dir}/k.pub.pem`], 0);
    assert.equal(verified.ok, true);
    assert.deepEqual(verified.files.map((f: { verdict: string }) => f.verdict), ["verified"]);
    const pub = `${fixtures}oms/keys/signing-key-pub.pem`;
    const refused = await json(["verify", model, "--key", pub], 1);
    assert.equal(refused.ok, false);
    assert.ok(refused.errors.length > 0 && refused.errors.every(isError));
    // Errors before any result: still one document on stdout.
    for (
      const [args, code] of [
        [["meta", "get", missing], 2],
        [["meta", "set", missing, "a=b"], 2],
        [["sign", missing, "--key", `${dir}/k.pem`], 2],
        [["verify", missing, "--key", pub], 2],
        [["hash", "--algorithm", "nope", model], 2],
      ] as const
    ) {
      const doc = await json([...args], code);
      assert.equal(doc.ok, false, args.join(" "));
      assert.ok(isError(doc.error), JSON.stringify(doc));
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("cli: the signing half loads only beside the CLI's own file (cli.ts / cli.js), never beside a bundle", async () => {
  const { sibling } = await import("../../plugins/_cli_runtime.ts");
  assert.equal(
    sibling("./_cli_sign", "file:///p/plugins/cli.ts"),
    "file:///p/plugins/_cli_sign.ts",
  );
  assert.equal(
    sibling("./_cli_sign", "file:///p/plugins/cli.js?v=1"),
    "file:///p/plugins/_cli_sign.js",
  );
  for (const base of ["file:///app/app.js", "file:///app/app.mjs", "https://x.example/bundle.js"]) {
    assert.throws(() => sibling("./_cli_sign", base), /run safemodels from its package/, base);
  }
});

Deno.test("cli: keygen --encrypt and sign ask for the password on a terminal (not echoed), twice for a new key", async (t) => {
  if (!(await hasScript())) {
    await t.step("script(1) is missing: skipped", () => {});
    return;
  }
  const dir = await Deno.makeTempDir({ prefix: "cli-password-" });
  try {
    const cli = new URL("../../plugins/cli.ts", import.meta.url).pathname;
    // script(1) gives the command a terminal and types our input into it.
    const inTerminal = async (args: string[], typed: string) => {
      const command = [Deno.execPath(), "run", "-A", cli, ...args].map((a) => `'${a}'`).join(" ");
      const child = new Deno.Command("script", {
        args: ["-qec", command, "/dev/null"],
        stdin: "piped",
        stdout: "piped",
        stderr: "piped",
        // Empty: unset, so the terminal is asked.
        env: { SAFEMODELS_KEY_PASSWORD: "" },
      }).spawn();
      const writer = child.stdin.getWriter();
      const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
      let text = "";
      // Each answer once its prompt is shown (echo is off by then).
      const answers = typed.split("\n").filter((l) => l !== "");
      let prompts = 0;
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        text += value;
        const shown = (text.match(/Password for|Again:/g) ?? []).length;
        while (prompts < shown && prompts < answers.length) {
          await writer.write(new TextEncoder().encode(`${answers[prompts++]}\r`)).catch(() => {});
        }
      }
      await writer.close().catch(() => {});
      await child.stderr.cancel();
      return { code: (await child.status).code, text };
    };
    const made = await inTerminal(
      ["keygen", "--encrypt", "--out", `${dir}/k.pem`],
      "s3cret\ns3cret\n",
    );
    assert.equal(made.code, 0, made.text);
    assert.match(made.text, /Password for the new key/);
    assert.doesNotMatch(made.text, /s3cret/, "the password was echoed");
    assert.match(await Deno.readTextFile(`${dir}/k.pem`), /ENCRYPTED PRIVATE KEY/);
    await Deno.writeFile(
      `${dir}/m.safetensors`,
      await Deno.readFile(
        new URL("../../../shared/fixtures/tensors/mixed.safetensors", import.meta.url),
      ),
    );
    const signed = await inTerminal(
      ["sign", `${dir}/m.safetensors`, "--key", `${dir}/k.pem`, "--detached"],
      "s3cret\n",
    );
    assert.equal(signed.code, 0, signed.text);
    assert.match(signed.text, /Password for the private key/);
    const wrong = await inTerminal(
      ["sign", `${dir}/m.safetensors`, "--key", `${dir}/k.pem`, "--signature", `${dir}/x.sig`],
      "nope\n",
    );
    assert.notEqual(wrong.code, 0, wrong.text);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("cli: keygen's keys read as openssl reads them: the encrypted key opens with its password only, and its public key is the one written", async (t) => {
  const openssl = await new Deno.Command("openssl", { args: ["version"], stdout: "null" })
    .output().then((o) => o.success, () => false);
  if (!openssl) {
    if (Deno.env.get("CI")) throw new Error("CI needs openssl for this oracle");
    await t.step("openssl is missing: skipped", () => {});
    return;
  }
  const dir = await Deno.makeTempDir({ prefix: "cli-openssl-" });
  try {
    await Deno.writeTextFile(`${dir}/pw`, "s3cret\n");
    for (const curve of ["P-256", "P-384", "P-521"]) {
      const out = `${dir}/${curve}.pem`;
      const made = await run([
        "keygen",
        "--curve",
        curve,
        "--encrypt",
        "--key-password-file",
        `${dir}/pw`,
        "--out",
        out,
      ]);
      assert.equal(made.code, 0, made.err);
      const pkey = (pass: string) =>
        new Deno.Command("openssl", {
          args: ["pkey", "-in", out, "-passin", `pass:${pass}`, "-pubout"],
          stdout: "piped",
          stderr: "null",
        }).output();
      const good = await pkey("s3cret");
      assert.ok(good.success, `${curve}: openssl cannot open the key with its password`);
      assert.equal(
        new TextDecoder().decode(good.stdout).trim(),
        (await Deno.readTextFile(`${dir}/${curve}.pub.pem`)).trim(),
        `${curve}: the public key file is not the private key's`,
      );
      assert.ok(!(await pkey("wrong")).success, `${curve}: a wrong password opened the key`);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
