import assert from "node:assert/strict";
import * as ort from "onnxruntime-node";
import { safeHash } from "../../hash/mod.ts";
import {
  HashMismatch,
  InvalidSignature,
  keySigner,
  SignatureMissing,
  signOnnx,
  verifyOnnx,
} from "../../sign/mod.ts";
import { fixture } from "../_helpers.ts";

const KEY = await Deno.readTextFile(fixture("oms/keys/signing-key.pem"));
const policy = { publicKeys: [await Deno.readTextFile(fixture("oms/keys/signing-key-pub.pem"))] };

async function signedCopy(): Promise<{ dir: string; path: string }> {
  const dir = await Deno.makeTempDir();
  const path = `${dir}/model.onnx`;
  await Deno.copyFile(fixture("tiny-bert/onnx/model.onnx"), path);
  await Deno.chmod(path, 0o644);
  await signOnnx(path, { signer: keySigner(KEY), name: "tiny-bert", version: "1.0.0" });
  return { dir, path };
}

Deno.test("signOnnx() embeds a signature onnxruntime still loads and runs, and verifyOnnx() accepts", async () => {
  const { dir, path } = await signedCopy();
  try {
    const v = await verifyOnnx(path, { policy, name: "tiny-bert", version: "1.0.0" });
    assert.equal(v.signer.kind, "key");
    // Same initializers, same tensor hash.
    assert.equal(await safeHash(path), await safeHash(fixture("tiny-bert/onnx/model.onnx")));
    const session = await ort.InferenceSession.create(path);
    const ids = new ort.Tensor("int64", BigInt64Array.from([1n, 5n, 2n]), [1, 3]);
    const out = await session.run({
      input_ids: ids,
      attention_mask: new ort.Tensor("int64", BigInt64Array.from([1n, 1n, 1n]), [1, 3]),
      token_type_ids: new ort.Tensor("int64", new BigInt64Array(3), [1, 3]),
    });
    assert.deepEqual(out.last_hidden_state!.dims, [1, 3, 8]);
    await session.release();
    // Re-signing replaces the entry (never two signatures).
    await signOnnx(path, { signer: keySigner(KEY), name: "tiny-bert", version: "1.0.1" });
    assert.equal((await verifyOnnx(path, { policy })).version, "1.0.1");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("verifyOnnx() refuses a flipped byte anywhere, a missing signature, a wrong key or name", async () => {
  const { dir, path } = await signedCopy();
  try {
    const signed = await Deno.readFile(path);
    for (const at of [20, Math.floor(signed.length / 3), 2000]) {
      const bytes = signed.slice();
      bytes[at]! ^= 0x01;
      await assert.rejects(
        verifyOnnx(bytes, { policy }),
        (e) =>
          e instanceof HashMismatch || e instanceof InvalidSignature ||
          (e as Error).name === "ModelFormatError",
      );
    }
    await assert.rejects(
      verifyOnnx(fixture("tiny-bert/onnx/model.onnx"), { policy }),
      SignatureMissing,
    );
    await assert.rejects(
      verifyOnnx(path, { policy, name: "other" }),
      (e) => e instanceof InvalidSignature && e.code === "wrong-model",
    );
    await assert.rejects(
      verifyOnnx(path, { policy: { publicKeys: [] } }),
      (e) => e instanceof InvalidSignature && e.code === "untrusted-key",
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
