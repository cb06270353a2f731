// The transformers.js guard under Node (transformers.js 4.3.1 and
// onnxruntime-node from npm, see .ci/run): a signed tiny-bert loads and embeds
// "hello world" as PyTorch did; a flipped byte is refused with HashMismatch and
// no onnxruntime session for the model.
import { test } from "node:test";
import assert from "node:assert/strict";
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { fileURLToPath } from "node:url";

const dir = process.env.SAFEMODELS_NODE_DIR;
const fixtures = fileURLToPath(new URL("../../../shared/fixtures/", import.meta.url));
const sm = await import(`${dir}/safemodels-guard.mjs`);
const { transformers } = sm;
const expected =
  JSON.parse(readFileSync(`${fixtures}tiny-bert/expected.json`, "utf8")).hello_world_mean_pooled;

test("guardTransformers() under Node: signed loads and matches PyTorch, tampered is refused", async () => {
  const root = mkdtempSync(`${tmpdir()}/safemodels-node-guard-`);
  try {
    cpSync(`${fixtures}tiny-bert`, `${root}/tiny-bert`, { recursive: true });
    const key = readFileSync(`${fixtures}oms/keys/signing-key.pem`, "utf8");
    await sm.signModel(`${root}/tiny-bert`, { signer: sm.keySigner(key) });
    transformers.env.localModelPath = `${root}/`;
    transformers.env.allowRemoteModels = false;
    const guard = sm.guardTransformers(transformers, {
      policy: { publicKeys: [readFileSync(`${fixtures}oms/keys/signing-key-pub.pem`, "utf8")] },
    });
    try {
      const pipe = await transformers.pipeline("feature-extraction", "tiny-bert", {
        dtype: "fp32",
      });
      const out = Array.from((await pipe("hello world", { pooling: "mean" })).data);
      await pipe.dispose();
      out.forEach((v, i) => assert.ok(Math.abs(v - expected[i]) < 1e-5, `[${i}] ${v}`));
      assert.ok(guard.records.every((r) => r.verdict === "verified"));

      const onnx = `${root}/tiny-bert/onnx/model.onnx`;
      const bytes = readFileSync(onnx);
      bytes[100] ^= 1;
      writeFileSync(onnx, bytes);
      await assert.rejects(
        transformers.pipeline("feature-extraction", "tiny-bert", { dtype: "fp32" }),
        (e) => e instanceof sm.HashMismatch && e.message.includes("onnx/model.onnx"),
      );
    } finally {
      guard.uninstall();
    }
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});
