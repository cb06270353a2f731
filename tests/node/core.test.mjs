// The core modules under Node, imported from the packed npm package installed
// in $SAFEMODELS_NODE_DIR (see .ci/run) and checked against the shared
// fixtures with node:test. Run: deno task test:node
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";

import { load } from "./_package.mjs";

const fixtures = fileURLToPath(new URL("../../../shared/fixtures/", import.meta.url));
const { safeHash, hashManifest, extractMetadata, fileDigest } = await load("safemodels");
const sign = await load("safemodels/sign");
const expected = JSON.parse(readFileSync(`${fixtures}tensors/expected.json`, "utf8"));

test("safeHash() matches the seed hashes for every format under Node", async () => {
  for (const [file, want] of Object.entries(expected)) {
    assert.equal(
      await safeHash(`${fixtures}tensors/${file}`, { algorithm: "seed-xxh64" }),
      want.seed_xxh64,
      file,
    );
    assert.equal(
      await safeHash(`${fixtures}tensors/${file}`, { algorithm: "seed-blake2b160" }),
      want.seed_blake2b160,
      file,
    );
  }
});

test("safeHash() is format-independent under Node, and streams work", async () => {
  const a = await safeHash(`${fixtures}tiny-bert/model.safetensors`);
  assert.equal(await safeHash(`${fixtures}tiny-bert/pytorch_model.bin`), a);
  // tiny-bert's ONNX graph also holds three Constant nodes: the same leaves
  // for the weights, plus the constants' (see the README).
  const onnx = await hashManifest(`${fixtures}tiny-bert/onnx/model.onnx`);
  const st = await hashManifest(`${fixtures}tiny-bert/model.safetensors`);
  const names = new Set(st.tensors.map((t) => t.name));
  assert.deepEqual(onnx.tensors.filter((t) => names.has(t.name)), st.tensors);
  assert.equal(onnx.tensors.length, st.tensors.length + 3);
  const bytes = readFileSync(`${fixtures}tiny-bert/model.safetensors`);
  assert.equal(await safeHash(new Response(bytes)), a);
  assert.equal((await hashManifest(new Blob([bytes]))).hash, a);
});

test("extractMetadata() and fileDigest() under Node", async () => {
  assert.deepEqual(await extractMetadata(`${fixtures}tensors/mixed.safetensors`), {
    format: "pt",
    hello: "world",
  });
  const files = JSON.parse(readFileSync(`${fixtures}tiny-bert/expected.json`, "utf8")).files_sha256;
  assert.equal(await fileDigest(`${fixtures}tiny-bert/config.json`), files["config.json"]);
});

test("verifyModel() accepts the model_signing vectors under Node (key, certificate, keyless)", async () => {
  const key = { publicKeys: [readFileSync(`${fixtures}oms/keys/signing-key-pub.pem`, "utf8")] };
  const cert = { certificateRoots: [readFileSync(`${fixtures}oms/keys/ca-cert.pem`, "utf8")] };
  const keyless = sign.Issuer({
    identity: "stefanb@us.ibm.com",
    issuer: "https://sigstore.verify.ibm.com/oauth2",
  });
  for (
    const [name, policy] of [["elliptic-key", key], ["certificate", cert], ["sigstore", keyless]]
  ) {
    const r = await sign.verifyModel(`${fixtures}oms/v1.0.1-${name}`, {
      policy,
      ignorePaths: ["ignore-me"],
    });
    assert.equal(r.checked.length, 2, name);
  }
  await assert.rejects(
    sign.verifyModel(`${fixtures}oms/v1.0.1-sigstore`, {
      policy: sign.Issuer({
        identity: "x@example.com",
        issuer: "https://sigstore.verify.ibm.com/oauth2",
      }),
      ignorePaths: ["ignore-me"],
    }),
    (e) => e instanceof sign.InvalidSignature && e.code === "wrong-signer",
  );
});
