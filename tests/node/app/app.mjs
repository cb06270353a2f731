// A Node app that runs a model only when its signature verifies: the README's
// Node example, run by CI from the packed npm package (tests/node/package.test.mjs).
//
//   node app.mjs MODELS_DIR MODEL_NAME PUBLIC_KEY.pem
import { readFileSync } from "node:fs";
import * as transformers from "@huggingface/transformers";
import { guardTransformers, HashMismatch, InvalidSignature } from "safemodels/plugins/transformers";

const [models, name, publicKey] = process.argv.slice(2);
transformers.env.localModelPath = models;
transformers.env.allowRemoteModels = false;

// Every file transformers.js reads is checked against the model's signature
// (model.sig) and this policy before onnxruntime sees a byte of it.
const guard = guardTransformers(transformers, {
  policy: { publicKeys: [readFileSync(publicKey, "utf8")] },
});
try {
  const embed = await transformers.pipeline("feature-extraction", name, { dtype: "fp32" });
  const vector = await embed("hello world", { pooling: "mean" });
  console.log(JSON.stringify({
    verdicts: guard.records.map((r) => r.verdict),
    embedding: Array.from(vector.data),
  }));
  await embed.dispose();
} catch (e) {
  // Typed errors with a stable code: tampered content, or a signer the policy does not trust.
  const kind = e instanceof HashMismatch
    ? "tampered"
    : e instanceof InvalidSignature
    ? "untrusted"
    : "error";
  console.error(`${kind}: ${e.code ?? e.name}: ${e.message}`);
  process.exitCode = 1;
} finally {
  guard.uninstall();
}
