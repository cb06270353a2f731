// `deno task demo`: safemodels at work on models this script makes itself
// (no downloads, nothing from ../shared), all offline.
// 1. Hashing: a transformer-shaped safetensors file is hashed three ways, its
//    metadata rewritten (the tensor hash does not move), one flipped bit caught.
// 2. Signing + the transformers.js guard: a tiny model transformers.js can run
//    is signed (OMS model.sig) with a fresh key, loaded and run through the
//    guard; then one byte of its ONNX file is flipped and the load is refused.
import * as transformers from "@huggingface/transformers";
import { hashManifest, ModelFormatError, safeHash } from "./hash/mod.ts";
import { extractMetadata, updateMeta } from "./meta/mod.ts";
import { keySigner, signModel } from "./sign/mod.ts";
import { guardTransformers } from "./plugins/transformers.ts";
import { freshKeyPem, writeTinyModel } from "./tests/_model_gen.ts";
import { buildSafetensors } from "./tests/_helpers.ts";

// Deterministic "weights" so every run prints the same hashes.
let seed = 42;
const rand = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31) - 0.5;
const f32 = (shape: number[]) => ({
  dtype: "F32",
  shape,
  data: new Uint8Array(Float32Array.from({ length: shape.reduce((a, b) => a * b) }, rand).buffer),
});

const dir = await Deno.makeTempDir({ prefix: "safemodels-demo-" });
const file = `${dir}/model.safetensors`;
try {
  await Deno.writeFile(
    file,
    buildSafetensors({
      "embed.weight": f32([64, 16]),
      "layer.0.attn.weight": f32([16, 16]),
      "layer.0.attn.bias": f32([16]),
      "norm.weight": f32([16]),
    }, { format: "pt" }),
  );
  console.log(`Wrote ${file}\n`);

  const hash = await safeHash(file);
  console.log("safeHash (safemodels-v1):", hash);
  console.log(
    "seed-xxh64:              ",
    await safeHash(file, { algorithm: "seed-xxh64" }),
  );
  console.log(
    "seed-blake2b160:         ",
    await safeHash(file, { algorithm: "seed-blake2b160" }),
  );

  await updateMeta(file, { name: "demo-model", version: "1.0.0" });
  console.log("\nMetadata after updateMeta:", await extractMetadata(file));
  const after = await safeHash(file);
  console.log("Tensor hash unchanged:    ", after === hash);
  if (after !== hash) {
    throw new Error("metadata rewrite changed the tensor hash");
  }

  const before = await hashManifest(file);
  const bytes = await Deno.readFile(file);
  bytes[bytes.length - 70]! ^= 0x01; // one bit of one weight
  await Deno.writeFile(file, bytes);
  const tampered = await hashManifest(file);
  console.log("\nAfter flipping one bit:   ", tampered.hash);
  const changed = tampered.tensors.filter((t, i) => t.sha256 !== before.tensors[i]!.sha256);
  console.log(
    "Tensors that changed:     ",
    changed.map((t) => t.name).join(", "),
  );
  if (tampered.hash === hash || changed.length !== 1) {
    throw new Error("tampering went unnoticed");
  }

  // Bad input is refused with a typed error that says what and where.
  await Deno.writeFile(file, bytes.subarray(0, bytes.length - 10));
  try {
    await safeHash(file);
  } catch (e) {
    if (!(e instanceof ModelFormatError)) throw e;
    console.log(`\nA truncated copy is refused (${e.code}):\n  ${e.message}`);
  }

  // --- 2. Sign a model, load it through the guarded transformers.js ---
  console.log("\n--- transformers.js guard ---");
  const { privatePem, publicPem } = await freshKeyPem();
  await writeTinyModel(`${dir}/tiny`);
  await signModel(`${dir}/tiny`, { signer: keySigner(privatePem) });
  console.log(`Signed ${dir}/tiny with a fresh P-256 key (model.sig, OMS format)`);

  transformers.env.localModelPath = `${dir}/`;
  transformers.env.allowRemoteModels = false;
  const guard = guardTransformers(transformers, { policy: { publicKeys: [publicPem] } });
  try {
    const extract = await transformers.pipeline("feature-extraction", "tiny", { dtype: "fp32" });
    const out = await extract("hello safe models", { pooling: "mean" });
    await extract.dispose();
    console.log(
      "Guarded load and run:    ",
      Array.from(out.data as Float32Array).slice(0, 4).map((v) => v.toFixed(4)).join(" "),
      "…",
    );
    for (const r of guard.records) console.log(`  ${r.verdict} ${r.file} (${r.evidence})`);

    const onnx = await Deno.readFile(`${dir}/tiny/onnx/model.onnx`);
    onnx[onnx.length - 100]! ^= 0x01;
    await Deno.writeFile(`${dir}/tiny/onnx/model.onnx`, onnx);
    try {
      await transformers.pipeline("feature-extraction", "tiny", { dtype: "fp32" });
      throw new Error("the tampered model loaded");
    } catch (e) {
      console.log(
        `After flipping one byte of onnx/model.onnx, pipeline() refuses (${(e as Error).name}):`,
      );
      console.log(`  ${(e as Error).message}`);
    }
  } finally {
    guard.uninstall();
  }
} finally {
  await Deno.remove(dir, { recursive: true });
}
