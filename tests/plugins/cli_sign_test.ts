import assert from "node:assert/strict";
import { main } from "../../plugins/cli.ts";
import { fixture } from "../_helpers.ts";

function capture() {
  const out: string[] = [];
  const err: string[] = [];
  return {
    out,
    err,
    io: { out: (s: string) => out.push(s), err: (s: string) => err.push(s), isTerminal: false },
  };
}

async function copyDir(from: string): Promise<string> {
  const to = await Deno.makeTempDir();
  for await (const e of Deno.readDir(from)) {
    await Deno.copyFile(`${from}/${e.name}`, `${to}/${e.name}`);
    await Deno.chmod(`${to}/${e.name}`, 0o644);
  }
  return to;
}

const KEY = fixture("oms/keys/signing-key.pem");
const PUB = fixture("oms/keys/signing-key-pub.pem");

Deno.test("cli verify: the OMS vectors pass with --key, --cert-root and --identity/--issuer", async () => {
  const cases = [
    ["v1.0.1-elliptic-key", "--key", PUB],
    ["v1.0.1-certificate", "--cert-root", fixture("oms/keys/ca-cert.pem")],
    [
      "v1.0.1-sigstore",
      "--identity",
      "stefanb@us.ibm.com",
      "--issuer",
      "https://sigstore.verify.ibm.com/oauth2",
    ],
  ];
  for (const [dir, ...policy] of cases) {
    const c = capture();
    const code = await main(
      ["verify", fixture(`oms/${dir}`), ...policy, "--ignore", "ignore-me"],
      c.io,
    );
    assert.equal(code, 0, c.err.join("\n"));
    assert.match(c.out[0]!, /^OK .*2 file\(s\) checked/);
  }
});

Deno.test("cli verify: a failed check exits 1 with one line naming the reason", async () => {
  const c = capture();
  const code = await main([
    "verify",
    fixture("oms/v1.0.1-sigstore"),
    "--identity",
    "mallory@evil.com",
    "--issuer",
    "https://sigstore.verify.ibm.com/oauth2",
    "--ignore",
    "ignore-me",
  ], c.io);
  assert.equal(code, 1);
  assert.equal(c.err.length, 1);
  assert.match(
    c.err[0]!,
    /^safemodels: .*none of the expected identities matched.*got subjects \[stefanb@us\.ibm\.com\]/,
  );
  const d = capture();
  assert.equal(await main(["verify", fixture("oms/v1.0.1-sigstore")], d.io), 2); // no policy: usage
  assert.match(d.err[0]!, /needs a policy/);
});

Deno.test("cli sign then verify: a folder (detached model.sig) and a safetensors file (embedded)", async () => {
  const dir = await copyDir(fixture("oms/v1.0.1-elliptic-key"));
  try {
    await Deno.remove(`${dir}/model.sig`);
    const s = capture();
    assert.equal(
      await main(["sign", dir, "--key", KEY, "--ignore", "ignore-me"], s.io),
      0,
      s.err.join(),
    );
    const v = capture();
    assert.equal(await main(["verify", dir, "--key", PUB, "--json"], v.io), 0, v.err.join());
    assert.equal(JSON.parse(v.out[0]!).signer.kind, "key");

    const st = `${dir}/model.safetensors`;
    await Deno.copyFile(fixture("tensors/mixed.safetensors"), st);
    await Deno.chmod(st, 0o644);
    const e = capture();
    assert.equal(await main(["sign", st, "--key", KEY], e.io), 2); // needs --model-version
    assert.equal(
      await main(["sign", st, "--key", KEY, "--model-version", "1.2.0"], e.io),
      0,
      e.err.join(),
    );
    const ve = capture();
    assert.equal(
      await main(["verify", st, "--key", PUB, "--model-version", "1.2.0"], ve.io),
      0,
      ve.err.join(),
    );
    assert.match(ve.out[0]!, /model@1\.2\.0/);
    assert.equal(
      await main(["verify", st, "--key", PUB, "--model-version", "1.1.0"], capture().io),
      1,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("cli lock records on first use; verify --frozen refuses what is not locked; a changed file fails", async () => {
  const dir = await copyDir(fixture("oms/v1.0.1-elliptic-key"));
  const lock = `${dir}.lock`;
  try {
    const policy = ["--key", PUB, "--ignore", "ignore-me", "--lock", lock, "--model-version", "v1"];
    const a = capture();
    assert.equal(await main(["lock", dir, ...policy], a.io), 0, a.err.join());
    assert.match(a.out[0]!, /lockfile recorded/);
    const locked = JSON.parse(await Deno.readTextFile(lock));
    assert.deepEqual(Object.keys(locked.models), ["v1.0.1-elliptic-key@v1"]);
    const b = capture();
    assert.equal(await main(["verify", dir, ...policy, "--frozen"], b.io), 0, b.err.join());
    assert.match(b.out[0]!, /lockfile matched/);
    const c = capture();
    assert.equal(
      await main([
        "verify",
        dir,
        "--key",
        PUB,
        "--ignore",
        "ignore-me",
        "--lock",
        lock,
        "--model-version",
        "v2",
        "--frozen",
      ], c.io),
      1,
    );
    // The model is pinned at v1: v2 is refused, not treated as unpinned.
    assert.match(c.err[0]!, /pins this model at v1\.0\.1-elliptic-key@v1, not at v2/);
    // A validly re-signed but different model under the same name and version
    // is caught by the lockfile, with the changed file named.
    await Deno.writeTextFile(`${dir}/signme-2`, "new weights");
    assert.equal(
      await main([
        "sign",
        dir,
        "--key",
        KEY,
        "--ignore",
        "ignore-me",
        "--name",
        "v1.0.1-elliptic-key",
      ], capture().io),
      0,
    );
    const d = capture();
    assert.equal(await main(["verify", dir, ...policy], d.io), 1);
    assert.match(
      d.err[0]!,
      /signme-2: Cannot accept file: its content differs from the digest the lockfile pins \(expected sha256:32dc/,
    );
    assert.equal(d.err.length, 1);
  } finally {
    await Deno.remove(dir, { recursive: true });
    await Deno.remove(lock).catch(() => {});
  }
});

Deno.test("cli check: the guard's checks without loading (model.sig, embedded ONNX signature, lockfile)", async () => {
  const { writeTinyModel } = await import("../_model_gen.ts");
  const { keySigner, signModel, signOnnx } = await import("../../sign/mod.ts");
  const root = await Deno.makeTempDir();
  try {
    const policyFile = `${root}/policy.json`;
    await Deno.writeTextFile(policyFile, JSON.stringify({ publicKeys: [PUB] }));
    const model = `${root}/tiny`;
    await writeTinyModel(model);
    // No evidence at all: refused (exit 1), naming the file.
    const a = capture();
    assert.equal(await main(["check", model, "--policy", policyFile], a.io), 1);
    assert.match(a.err[0]!, /config\.json: Cannot accept config\.json: no model\.sig/);
    // An OMS signature covers every file.
    await signModel(model, { signer: keySigner(await Deno.readTextFile(KEY)) });
    const b = capture();
    assert.equal(await main(["check", model, "--policy", policyFile], b.io), 0, b.err.join());
    assert.equal(b.out.length, 4);
    await Deno.writeTextFile(`${model}/tokenizer_config.json`, "{}");
    assert.equal(await main(["check", model, "--policy", policyFile], capture().io), 1);
    // Without model.sig: the ONNX file's embedded signature vouches for it, the
    // JSON files need a lockfile digest.
    await Deno.remove(`${model}/model.sig`);
    await signOnnx(`${model}/onnx/model.onnx`, {
      signer: keySigner(await Deno.readTextFile(KEY)),
      name: "tiny",
      version: "1",
    });
    const c = capture();
    assert.equal(
      await main(
        ["check", model, "--policy", policyFile, "--files", "onnx/model.onnx", "--json"],
        c.io,
      ),
      0,
      c.err.join(),
    );
    assert.equal(JSON.parse(c.out[0]!).files[0].evidence, "onnx-embedded");
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("cli verify --name and check --name compare the name with the model.sig's, not just print it", async () => {
  const { keySigner, signModel } = await import("../../sign/mod.ts");
  const dir = await copyDir(fixture("oms/v1.0.1-elliptic-key"));
  try {
    await signModel(dir, {
      signer: keySigner(await Deno.readTextFile(KEY)),
      modelName: "other-model",
      ignorePaths: ["ignore-me"],
    });
    const policyFile = `${dir}.policy.json`;
    await Deno.writeTextFile(policyFile, JSON.stringify({ publicKeys: [PUB] }));
    for (const args of [["verify", dir, "--key", PUB], ["check", dir, "--policy", policyFile]]) {
      const c = capture();
      assert.equal(await main([...args, "--name", "acme/tiny-bert"], c.io), 1, args[0]!);
      assert.match(c.err.at(-1)!, /is for model "other-model", expected "acme\/tiny-bert"/);
      // The model.sig's own name, or its last segment, is accepted.
      assert.equal(await main([...args, "--name", "acme/other-model"], capture().io), 0);
      assert.equal(await main(args, capture().io), 0);
    }
    await Deno.remove(policyFile);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("cli check and verify give the same verdict for the same flags (lockfile, frozen, version)", async () => {
  const dir = await copyDir(fixture("oms/v1.0.1-elliptic-key"));
  const lock = `${dir}.lock`;
  const policyFile = `${dir}.policy.json`;
  await Deno.writeTextFile(policyFile, JSON.stringify({ publicKeys: [PUB] }));
  try {
    const common = ["--ignore", "ignore-me", "--lock", lock, "--json"];
    const run = async (cmd: string, extra: string[]) => {
      const c = capture();
      const trust = cmd === "verify" ? ["--key", PUB] : ["--policy", policyFile];
      const code = await main([cmd, dir, ...trust, ...common, ...extra], c.io);
      const out = JSON.parse(c.out[0]!);
      return {
        code,
        files: out.files.map((f: { file: string; verdict: string; error?: { code: string } }) =>
          `${f.file}:${f.verdict}:${f.error?.code ?? ""}`
        ),
      };
    };
    // Frozen, nothing locked: both refuse every file as not locked.
    for (const extra of [["--frozen", "--model-version", "v1"], ["--model-version", "v1"]]) {
      await Deno.remove(lock).catch(() => {});
      const v = await run("verify", extra);
      await Deno.remove(lock).catch(() => {});
      const c = await run("check", extra);
      assert.deepEqual(v, c, extra.join(" "));
    }
    // Locked at v1 (by the last run); a changed file: both refuse it as pin-differs.
    await Deno.writeTextFile(`${dir}/signme-1`, "changed");
    const v = await run("verify", ["--model-version", "v1"]);
    const c = await run("check", ["--model-version", "v1"]);
    assert.deepEqual(v, c);
    assert.equal(v.code, 1);
    assert.ok(v.files.includes("signme-1:refused:pin-differs"), v.files.join());
  } finally {
    await Deno.remove(dir, { recursive: true });
    await Deno.remove(lock).catch(() => {});
    await Deno.remove(policyFile).catch(() => {});
  }
});

Deno.test("cli verify: a missing read permission is a usage error naming --allow-read, not a missing signature", async () => {
  const dir = await copyDir(fixture("oms/v1.0.1-elliptic-key"));
  try {
    const cli = new URL("../../plugins/cli.ts", import.meta.url).pathname;
    // Read access to the model, the key and safemodels' own modules (which the
    // CLI loads on demand), but not to the signature beside the model.
    await Deno.rename(`${dir}/model.sig`, `${dir}.sig`);
    const own = ["plugins", "sign", "hash", "deno.json"].map((p) =>
      new URL(`../../${p}`, import.meta.url).pathname
    );
    const allowed = [dir, PUB, ...own].join(",");
    const out = await new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "--quiet",
        "--no-prompt",
        `--allow-read=${allowed}`,
        cli,
        "verify",
        dir,
        "--key",
        PUB,
        "--ignore",
        "ignore-me",
        "--signature",
        `${dir}.sig`,
      ],
      stdout: "piped",
      stderr: "piped",
    }).output();
    const err = new TextDecoder().decode(out.stderr);
    assert.equal(out.code, 2, err);
    assert.match(err, /permission denied/i);
    assert.match(err, /--allow-read=.*\.sig/);
  } finally {
    await Deno.remove(`${dir}.sig`).catch(() => {});
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("cli verify: read access to the model only names the folder the signing half loads from", async () => {
  const dir = await copyDir(fixture("oms/v1.0.1-elliptic-key"));
  try {
    const cli = new URL("../../plugins/cli.ts", import.meta.url).pathname;
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["run", "--quiet", "--no-prompt", `--allow-read=${dir},${PUB}`, cli, "verify", dir],
      stdout: "piped",
      stderr: "piped",
    }).output();
    const err = new TextDecoder().decode(out.stderr);
    assert.equal(out.code, 2, err);
    assert.match(
      err,
      /^safemodels: this command loads more of safemodels from \/.*: allow reading it/,
    );
    assert.equal(err.trim().split("\n").length, 1, err);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("cli check: the policy's models[name].version is the version asked for, as in the guard", async () => {
  const { writeTinyModel } = await import("../_model_gen.ts");
  const { keySigner, signOnnx } = await import("../../sign/mod.ts");
  const root = await Deno.makeTempDir();
  try {
    const model = `${root}/tiny`;
    await writeTinyModel(model);
    await signOnnx(`${model}/onnx/model.onnx`, {
      signer: keySigner(await Deno.readTextFile(KEY)),
      name: "tiny",
      version: "1",
    });
    const policy = (version: string) => {
      const path = `${root}/policy-${version}.json`;
      Deno.writeTextFileSync(
        path,
        JSON.stringify({ publicKeys: [PUB], models: { tiny: { version } } }),
      );
      return path;
    };
    const run = async (version: string) => {
      const c = capture();
      const code = await main(
        [
          "check",
          model,
          "--policy",
          policy(version),
          "--name",
          "tiny",
          "--files",
          "onnx/model.onnx",
        ],
        c.io,
      );
      return { code, err: c.err.join("\n") };
    };
    assert.equal((await run("1")).code, 0);
    const old = await run("2");
    assert.equal(old.code, 1);
    assert.match(old.err, /version "1" of tiny, expected "2"/);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("cli sign: an encrypted key's password comes from --key-password-file or SAFEMODELS_KEY_PASSWORD", async () => {
  const { generateKeyPairSync } = await import("node:crypto");
  const dir = await copyDir(fixture("oms/v1.0.1-elliptic-key"));
  try {
    await Deno.remove(`${dir}/model.sig`);
    const { privateKey, publicKey } = generateKeyPairSync("ec", { namedCurve: "secp521r1" });
    const key = `${dir}.key.pem`;
    const pub = `${dir}.pub.pem`;
    const pw = `${dir}.pw`;
    await Deno.writeTextFile(
      key,
      privateKey.export({
        type: "pkcs8",
        format: "pem",
        cipher: "aes-256-cbc",
        passphrase: "s3cret",
      }) as string,
    );
    await Deno.writeTextFile(pub, publicKey.export({ type: "spki", format: "pem" }) as string);
    await Deno.writeTextFile(pw, "s3cret\n");
    const base = ["sign", dir, "--key", key, "--ignore", "ignore-me"];
    if (!Deno.stdin.isTerminal()) {
      // Without a terminal to ask on, the CLI says where a password can come from.
      const noPassword = capture();
      assert.equal(await main(base, noPassword.io), 2);
      assert.match(noPassword.err.join(), /encrypted.*--key-password-file/);
    }
    const a = capture();
    assert.equal(await main([...base, "--key-password-file", pw], a.io), 0, a.err.join());
    assert.equal(
      await main(["verify", dir, "--key", pub, "--ignore", "ignore-me"], capture().io),
      0,
    );
    Deno.env.set("SAFEMODELS_KEY_PASSWORD", "wrong");
    try {
      const b = capture();
      assert.equal(await main(base, b.io), 2);
      assert.match(b.err.join(), /wrong password/);
    } finally {
      Deno.env.delete("SAFEMODELS_KEY_PASSWORD");
    }
    for (const f of [key, pub, pw]) await Deno.remove(f);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
