import assert from "node:assert/strict";
import { safeHash } from "../../hash/mod.ts";
import { extractMetadata, updateMeta } from "../../meta/mod.ts";
import {
  HashMismatch,
  HashMissing,
  InvalidSignature,
  keySigner,
  PolicyError,
  SafeModel,
  SignatureMissing,
  VerificationError,
} from "../../sign/mod.ts";
import { fixture } from "../_helpers.ts";
import { freshKeyPem } from "../_model_gen.ts";

const KEY = await Deno.readTextFile(fixture("oms/keys/signing-key.pem"));
const PUB = await Deno.readTextFile(fixture("oms/keys/signing-key-pub.pem"));
const policy = { publicKeys: [PUB] };

async function signedCopy(dir: string, name = "mixed", version = "1.0.0"): Promise<string> {
  const path = `${dir}/${name}.safetensors`;
  await Deno.copyFile(fixture("tensors/mixed.safetensors"), path);
  await Deno.chmod(path, 0o644);
  const sm = await SafeModel.fromFile(name, version, path);
  await sm.signSafetensor(path, { signer: keySigner(KEY) });
  return path;
}

async function withDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir();
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("SafeModel.signSafetensor() embeds a signature that fromSafetensor() verifies; the tensor hash is unchanged", () =>
  withDir(async (dir) => {
    const before = await safeHash(fixture("tensors/mixed.safetensors"));
    const path = await signedCopy(dir);
    assert.equal(await safeHash(path), before);
    const meta = await extractMetadata(path);
    assert.equal(meta.format, "pt"); // existing metadata kept
    assert.equal(meta["safemodels.hash"], before);
    const sm = await SafeModel.fromSafetensor(path, { policy, name: "mixed", version: "1.0.0" });
    assert.equal(sm.name, "mixed");
    assert.equal(sm.version, "1.0.0");
    assert.equal(sm.hash, before);
    assert.equal(sm.signer?.kind, "key");
  }));

Deno.test("SafeModel.fromSafetensor() refuses a tampered tensor with HashMismatch", () =>
  withDir(async (dir) => {
    const path = await signedCopy(dir);
    const bytes = await Deno.readFile(path);
    bytes[bytes.length - 1]! ^= 1;
    await Deno.writeFile(path, bytes);
    await assert.rejects(SafeModel.fromSafetensor(path, { policy }), HashMismatch);
  }));

Deno.test("SafeModel.fromSafetensor() refuses a stripped signature unless signatures are optional", () =>
  withDir(async (dir) => {
    const path = await signedCopy(dir);
    const meta = await extractMetadata(path);
    delete meta["safemodels.signature"];
    await updateMeta(path, meta, { clobber: true });
    await assert.rejects(SafeModel.fromSafetensor(path, { policy }), SignatureMissing);
    const sm = await SafeModel.fromSafetensor(path, {
      policy: { ...policy, signatures: "optional" },
    });
    assert.equal(sm.signer, undefined);
  }));

Deno.test("SafeModel.fromSafetensor() without a hash throws HashMissing", async () => {
  await assert.rejects(
    SafeModel.fromSafetensor(fixture("tensors/mixed.safetensors"), { policy }),
    HashMissing,
  );
});

Deno.test("SafeModel.fromSafetensor() refuses an untrusted key, another model (substitution) and another version (rollback)", () =>
  withDir(async (dir) => {
    const path = await signedCopy(dir, "mixed", "1.0.0");
    const otherPem = (await freshKeyPem()).publicPem;
    await assert.rejects(
      SafeModel.fromSafetensor(path, { policy: { publicKeys: [otherPem] } }),
      (e) => e instanceof InvalidSignature && e.code === "untrusted-key",
    );
    await assert.rejects(
      SafeModel.fromSafetensor(path, { policy, name: "llama" }),
      (e) =>
        e instanceof PolicyError && e.code === "wrong-model" &&
        /is for model "mixed", expected "llama"/.test(e.message),
    );
    await assert.rejects(
      SafeModel.fromSafetensor(path, { policy, version: "2.0.0" }),
      (e) => e instanceof PolicyError && e.code === "wrong-version" && /"1\.0\.0"/.test(e.message),
    );
    // Editing the (unsigned) metadata name does not move the signature.
    await updateMeta(path, { "safemodels.name": "llama" });
    await assert.rejects(
      SafeModel.fromSafetensor(path, { policy }),
      (e) => e instanceof VerificationError && e.code === "bad-statement",
    );
  }));

Deno.test("SafeModel.fromSafetensor() refuses a signature copied from another model", () =>
  withDir(async (dir) => {
    const signed = await signedCopy(dir, "mixed");
    const target = `${dir}/tiny.safetensors`;
    await Deno.copyFile(fixture("tiny-bert/model.safetensors"), target);
    await Deno.chmod(target, 0o644);
    const stolen = await extractMetadata(signed);
    await updateMeta(target, stolen);
    await assert.rejects(SafeModel.fromSafetensor(target, { policy }), HashMismatch);
  }));

Deno.test("SafeModel.signSafetensor() refuses to sign weights that do not match its hash", () =>
  withDir(async (dir) => {
    const path = `${dir}/m.safetensors`;
    await Deno.copyFile(fixture("tiny-bert/model.safetensors"), path);
    await Deno.chmod(path, 0o644);
    const sm = await SafeModel.fromFile("mixed", "1", fixture("tensors/mixed.safetensors"));
    await assert.rejects(sm.signSafetensor(path, { signer: keySigner(KEY) }), HashMismatch);
    assert.equal((await extractMetadata(path))["safemodels.signature"], undefined);
  }));

/** A loopback server with the hub's URL layout: /api/models/{repo}/revision/{rev} and /{repo}/resolve/{sha}/{file}. */
function startHub(files: Record<string, Uint8Array>, branches: Record<string, string>) {
  const seen: string[] = [];
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, (req) => {
    const url = new URL(req.url);
    seen.push(url.pathname);
    let m = /^\/api\/models\/(.+)\/revision\/([^/]+)$/.exec(url.pathname);
    if (m) {
      const rev = decodeURIComponent(m[2]!);
      const sha = branches[rev] ?? (Object.values(branches).includes(rev) ? rev : undefined);
      if (!sha) return new Response("not found", { status: 404 });
      return Response.json({
        id: m[1],
        sha,
        siblings: Object.keys(files).map((rfilename) => ({ rfilename })),
      });
    }
    m = /^\/(.+)\/resolve\/([0-9a-f]{40})\/(.+)$/.exec(url.pathname);
    if (m && Object.values(branches).includes(m[2]!) && files[m[3]!]) {
      return new Response(new Blob([files[m[3]!]! as Uint8Array<ArrayBuffer>]).stream());
    }
    return new Response("not found", { status: 404 });
  });
  return { url: `http://127.0.0.1:${server.addr.port}`, seen, close: () => server.shutdown() };
}

Deno.test("SafeModel.fromHf() resolves the revision to a commit and hashes the streamed weights", async () => {
  const weights = await Deno.readFile(fixture("tiny-bert/model.safetensors"));
  const sha = "0123456789abcdef0123456789abcdef01234567";
  const hub = startHub({ "model.safetensors": weights, "config.json": new Uint8Array(2) }, {
    main: sha,
  });
  try {
    const sm = await SafeModel.fromHf("acme/tiny-bert", { hubUrl: hub.url, revision: "main" });
    assert.equal(sm.name, "acme/tiny-bert");
    assert.equal(sm.version, sha); // the commit, not "main"
    assert.equal(sm.hash, await safeHash(fixture("tiny-bert/model.safetensors")));
    assert.ok(hub.seen.includes(`/acme/tiny-bert/resolve/${sha}/model.safetensors`));
    await assert.rejects(
      SafeModel.fromHf("acme/tiny-bert", { hubUrl: hub.url, revision: "nope" }),
      /answered 404/,
    );
    await assert.rejects(SafeModel.fromHf("../etc", { hubUrl: hub.url }), TypeError);
  } finally {
    await hub.close();
  }
});

Deno.test("SafeModel.fromHf() refuses a hub that does not give a commit", async () => {
  const hub = startHub({ "model.safetensors": new Uint8Array(8) }, { main: "main" });
  try {
    await assert.rejects(SafeModel.fromHf("acme/x", { hubUrl: hub.url }), /40 hex digits/);
  } finally {
    await hub.close();
  }
});
