// What an attacker's review of the OMS interop found, each case refused (or
// made unambiguous) the way model_signing refuses it.
import assert from "node:assert/strict";
import nodeCrypto from "node:crypto";
import { runCli } from "../plugins/_cli_run.ts";
import { HashMismatch, keySigner, PolicyError, signModel, verifyModel } from "../../sign/mod.ts";
import { buildStatement, OMS_PAYLOAD_TYPE } from "../../sign/_oms.ts";
import { hashModelFolder } from "../../sign/_oms_fs.ts";

const BASE = new URL("../testdata/model_signing/", import.meta.url).pathname;

const cli = (cwd: string, args: string[]) => runCli(args, cwd);

function keyPair(): { pem: string; pub: string } {
  const { privateKey, publicKey } = nodeCrypto.generateKeyPairSync("ec", {
    namedCurve: "prime256v1",
  });
  return {
    pem: privateKey.export({ type: "pkcs8", format: "pem" }) as string,
    pub: publicKey.export({ type: "spki", format: "pem" }) as string,
  };
}

async function withModel(
  fn: (dir: string, model: string, key: { pem: string; pub: string }) => Promise<void>,
) {
  const dir = await Deno.makeTempDir({ prefix: "oms-review-" });
  try {
    const model = `${dir}/m`;
    await Deno.mkdir(model);
    await Deno.writeTextFile(`${model}/config.json`, '{"a": 1}');
    await Deno.writeTextFile(`${model}/w.bin`, "weights");
    const key = keyPair();
    await Deno.writeTextFile(`${dir}/pub.pem`, key.pub);
    await Deno.writeTextFile(`${dir}/key.pem`, key.pem);
    await fn(dir, model, key);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("a signed file an ignore path covers counts as missing (the verifier's ignores or the statement's)", () =>
  withModel(async (dir, model, key) => {
    await signModel(model, { signer: keySigner(key.pem) });
    await Deno.writeTextFile(`${model}/config.json`, '{"a": 2}');
    const r = await cli(dir, [
      "verify",
      "key",
      "--public_key",
      "pub.pem",
      "--ignore_paths",
      "config.json",
      "m",
    ]);
    assert.equal(r.code, 1, r.out);
    assert.match(r.err, /config\.json/);
    // A statement (signed by the trusted key) that lists config.json as a
    // resource and in ignore_paths: still checked, so refused.
    const resources = await hashModelFolder(model, { signatureFile: "" });
    const payload = await buildStatement("m", resources, {
      ignorePaths: ["config.json", "model.sig"],
    });
    const bundle = await keySigner(key.pem).sign(payload, OMS_PAYLOAD_TYPE);
    await Deno.writeTextFile(`${model}/model.sig`, JSON.stringify(bundle));
    await Deno.writeTextFile(`${model}/config.json`, '{"a": 3}');
    await assert.rejects(
      verifyModel(model, { policy: { publicKeys: [key.pub] } }),
      (e) => e instanceof HashMismatch && e.code === "file-missing",
    );
  }));

Deno.test("a v0.2 statement names no model: refused when a model name is asked for", async () => {
  const args = [
    "verify",
    "certificate",
    "--signature",
    "./v0.2.0-certificate/model.sig",
    "--certificate_chain",
    "./keys/certificate/ca-cert.pem",
  ];
  assert.equal((await cli(BASE, [...args, "./v0.2.0-certificate/"])).code, 0);
  const named = await cli(BASE, [...args, "--name", "acme/other-model", "./v0.2.0-certificate/"]);
  assert.equal(named.code, 1);
  assert.match(named.err, /names no model/);
  await assert.rejects(
    verifyModel(`${BASE}v0.2.0-certificate`, {
      policy: {
        certificateRoots: [await Deno.readTextFile(`${BASE}keys/certificate/ca-cert.pem`)],
      },
      name: "v0.2.0-certificate",
    }),
    (e) => e instanceof PolicyError && e.code === "wrong-model",
  );
});

Deno.test("ignore paths: the API takes them model-relative; the CLI refuses one that names two files", () =>
  withModel(async (dir, model, key) => {
    await Deno.mkdir(`${model}/m`);
    await Deno.writeTextFile(`${model}/m/config.json`, "nested");
    const before = Deno.cwd();
    Deno.chdir(dir);
    try {
      await signModel("m", { signer: keySigner(key.pem), ignorePaths: ["m/config.json"] });
    } finally {
      Deno.chdir(before);
    }
    const st = JSON.parse(
      atob(JSON.parse(await Deno.readTextFile(`${model}/model.sig`)).dsseEnvelope.payload),
    );
    const names = st.predicate.resources.map((r: { name: string }) => r.name);
    assert.ok(names.includes("config.json") && !names.includes("m/config.json"), names.join(","));
    const r = await cli(dir, [
      "sign",
      "key",
      "--private_key",
      "key.pem",
      "--ignore-paths",
      "m/config.json",
      "m",
    ]);
    assert.equal(r.code, 2);
    assert.match(r.err, /names both/);
    // Unambiguous: only the working-directory reading exists.
    await Deno.remove(`${model}/m`, { recursive: true });
    const ok = await cli(dir, [
      "sign",
      "key",
      "--private_key",
      "key.pem",
      "--ignore-paths",
      "m/config.json",
      "m",
    ]);
    assert.equal(ok.code, 0, ok.err);
    const st2 = JSON.parse(
      atob(JSON.parse(await Deno.readTextFile(`${model}/model.sig`)).dsseEnvelope.payload),
    );
    assert.ok(st2.predicate.serialization.ignore_paths.includes("config.json"));
  }));

Deno.test("digest <dir> hashes a model.sig in the folder too, as model_signing digest does", () =>
  withModel(async (dir, model, key) => {
    const before = (await cli(dir, ["digest", "m"])).out.split(/\s+/)[0];
    await signModel(model, { signer: keySigner(key.pem) });
    const st = JSON.parse(
      atob(JSON.parse(await Deno.readTextFile(`${model}/model.sig`)).dsseEnvelope.payload),
    );
    assert.equal(before, `sha256:${st.subject[0].digest.sha256}`);
    const after = (await cli(dir, ["digest", "m"])).out.split(/\s+/)[0];
    assert.notEqual(after, before);
  }));

Deno.test("a statement of tiny shards for a big file is refused without measuring every shard; sign refuses a statement verifiers would not read", () =>
  withModel(async (_dir, model, key) => {
    await Deno.writeFile(`${model}/big`, new Uint8Array(1 << 20));
    const payload = await buildStatement("m", [
      { name: "big:1048575:1048576", algorithm: "sha256-sharded-1", digest: "00".repeat(32) },
    ], {
      serialization: { method: "shards", hashType: "sha256", shardSize: 1 },
      ignorePaths: ["model.sig"],
    });
    await Deno.writeTextFile(
      `${model}/model.sig`,
      JSON.stringify(await keySigner(key.pem).sign(payload, OMS_PAYLOAD_TYPE)),
    );
    await assert.rejects(
      verifyModel(model, { policy: { publicKeys: [key.pub] }, files: ["big"] }),
      (e) => e instanceof HashMismatch && e.message.length < 1000,
    );
    await Deno.remove(`${model}/model.sig`);
    await assert.rejects(
      signModel(model, { signer: keySigner(key.pem), shardSize: 1 }),
      /statement would be \d+ bytes/,
    );
  }));

Deno.test("CLI options that would be ignored are usage errors", () =>
  withModel(async (dir) => {
    const cases = [
      ["sign", "key", "--private_key", "key.pem", "--use-staging", "m"],
      ["sign", "key", "--private_key", "key.pem", "--certificate_chain", "pub.pem", "m"],
      ["verify", "certificate", "--public_key", "pub.pem", "m"],
      ["verify", "key", "--identity", "a@b.c", "--identity_provider", "https://x", "m"],
    ];
    for (const args of cases) assert.equal((await cli(dir, args)).code, 2, args.join(" "));
    await Deno.writeTextFile(`${dir}/policy.json`, JSON.stringify({ publicKeys: ["pub.pem"] }));
    assert.equal(
      (await cli(dir, ["verify", "--policy", "policy.json", "--use-staging", "m"])).code,
      2,
    );
  }));

Deno.test("under a shard statement, the SHA-256 reported (and pinned by lock) comes from the pass that checks the shards", () =>
  withModel(async (_dir, model, key) => {
    await signModel(model, { signer: keySigner(key.pem), shardSize: 4 });
    const { checkModel } = await import("../../sign/_check_model.ts");
    const { verifySignedText } = await import("../../sign/_verify_signed.ts");
    let swapped = false;
    const check = await checkModel(model, {
      policy: { publicKeys: [key.pub] },
      verify: verifySignedText,
      // A writer racing the verifier: after the first read, w.bin changes.
      onProgress: (bytes) => {
        // Once both files (8 + 7 bytes) have been read the first time.
        if (!swapped && bytes >= 15) {
          swapped = true;
          Deno.writeTextFileSync(`${model}/w.bin`, "WEIGHTS");
        }
      },
    });
    const w = check.files.find((f) => f.file === "w.bin")!;
    const evil = new Uint8Array(
      await crypto.subtle.digest("SHA-256", new TextEncoder().encode("WEIGHTS")),
    );
    const evilHex = [...evil].map((b) => b.toString(16).padStart(2, "0")).join("");
    // Whatever the verdict, it is about the bytes reported.
    if (w.verdict.$case === "verified") assert.notEqual(w.digest, `sha256:${evilHex}`);
    else assert.equal(w.digest, `sha256:${evilHex}`);
    assert.ok(swapped);
  }));
