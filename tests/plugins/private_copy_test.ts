// The guard's private copies: hashing while copying, and rewriting a verified
// ONNX file so onnxruntime maps its inline weights instead of parsing them.
import assert from "node:assert/strict";
import * as ort from "onnxruntime-node";
import { basename, dirname } from "node:path";
import { safeHash } from "../../hash/mod.ts";
import {
  externalizeOnnx,
  fileChunks,
  PrivateDir,
  streamChunks,
  writeHashed,
} from "../../plugins/_private_copy.ts";
import { prng, sha256hex } from "../_helpers.ts";
import { tinyOnnx } from "../_model_gen.ts";

const opts = { sanitizeResources: false, sanitizeOps: false };

function randomBytes(n: number, seed: number): Uint8Array {
  const next = prng(seed);
  return Uint8Array.from({ length: n }, () => (next() * 256) | 0);
}

async function run(model: string): Promise<Float32Array> {
  const session = await ort.InferenceSession.create(model);
  try {
    const ids = new ort.Tensor("int64", BigInt64Array.from([1n, 5n, 6n, 2n]), [1, 4]);
    const mask = new ort.Tensor("int64", BigInt64Array.from([1n, 1n, 1n, 1n]), [1, 4]);
    const out = await session.run({ input_ids: ids, attention_mask: mask });
    return out.last_hidden_state!.data as Float32Array;
  } finally {
    await session.release();
  }
}

Deno.test("writeHashed copies a file and hashes it in one pass, exclusively, mode 0600", async () => {
  const dir = await Deno.makeTempDir();
  try {
    // Not a multiple of the 4 MiB block, so the last chunk is short.
    const bytes = randomBytes(9 << 20 | 12345, 7);
    await Deno.writeFile(`${dir}/src`, bytes);
    const chunks = await fileChunks(`${dir}/src`);
    const { digest, size } = await writeHashed(chunks.next, `${dir}/copy`);
    await chunks.close();
    assert.equal(size, bytes.byteLength);
    assert.equal(digest, sha256hex(bytes));
    assert.deepEqual(await Deno.readFile(`${dir}/copy`), bytes);
    assert.equal((await Deno.stat(`${dir}/copy`)).mode! & 0o777, 0o600);
    // An existing file (or a link planted there) is never written through.
    await Deno.symlink(`${dir}/src`, `${dir}/planted`);
    const again = await fileChunks(`${dir}/src`);
    await assert.rejects(writeHashed(again.next, `${dir}/planted`), /EEXIST|exists/i);
    await again.close();
    assert.deepEqual(await Deno.readFile(`${dir}/src`), bytes);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("writeHashed removes the partial copy when the source fails", async () => {
  const dir = await Deno.makeTempDir();
  try {
    let sent = 0;
    const stream = new ReadableStream<Uint8Array>({
      pull(controller) {
        if (sent++ < 3) controller.enqueue(new Uint8Array(1 << 20));
        else controller.error(new Error("connection reset"));
      },
    });
    await assert.rejects(writeHashed(streamChunks(stream).next, `${dir}/copy`), /connection reset/);
    assert.deepEqual([...Deno.readDirSync(dir)], []);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test(
  "externalizeOnnx: same tensors, same outputs, a small graph mapping the verified bytes",
  opts,
  async () => {
    const dir = await Deno.makeTempDir();
    try {
      const original = tinyOnnx({ extraRows: 1 << 16, seed: 3 }); // 2 MiB of embeddings
      await Deno.writeFile(`${dir}/reference.onnx`, original);
      await Deno.writeFile(`${dir}/model.onnx`, original);
      const want = await run(`${dir}/reference.onnx`);
      const hash = await safeHash(`${dir}/reference.onnx`);

      const done = await externalizeOnnx(`${dir}/model.onnx`);
      assert.ok(done.weights, "rewritten");
      assert.equal(dirname(done.weights), dir);
      assert.deepEqual([...done.locations], []);
      // The verified bytes moved, unchanged; the graph is small and reads them.
      assert.deepEqual(await Deno.readFile(done.weights), original);
      assert.ok((await Deno.stat(`${dir}/model.onnx`)).size < 2048);
      assert.equal(await safeHash(`${dir}/model.onnx`), hash);
      assert.deepEqual(await run(`${dir}/model.onnx`), want);

      // Already external: reported, not rewritten again.
      const again = await externalizeOnnx(`${dir}/model.onnx`);
      assert.equal(again.weights, undefined);
      assert.deepEqual([...again.locations], [basename(done.weights)]);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
);

Deno.test("externalizeOnnx leaves small models and non-ONNX bytes as they are", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const small = tinyOnnx();
    await Deno.writeFile(`${dir}/small.onnx`, small);
    assert.deepEqual(await externalizeOnnx(`${dir}/small.onnx`), { locations: new Set() });
    assert.deepEqual(await Deno.readFile(`${dir}/small.onnx`), small);
    const junk = randomBytes(3 << 20, 9);
    await Deno.writeFile(`${dir}/junk.onnx`, junk);
    assert.deepEqual(await externalizeOnnx(`${dir}/junk.onnx`), { locations: new Set() });
    assert.deepEqual(await Deno.readFile(`${dir}/junk.onnx`), junk);
    assert.deepEqual([...Deno.readDirSync(dir)].map((e) => e.name).sort(), [
      "junk.onnx",
      "small.onnx",
    ]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("PrivateDir is made 0700 on first use and removed with its files", async () => {
  const parent = await Deno.makeTempDir();
  try {
    const dir = new PrivateDir(parent);
    assert.deepEqual([...Deno.readDirSync(parent)], []);
    const root = await dir.root();
    assert.equal(await dir.root(), root);
    assert.equal((await Deno.stat(root)).mode! & 0o777, 0o700);
    await Deno.writeTextFile(`${root}/x`, "x");
    dir.removeSync();
    assert.deepEqual([...Deno.readDirSync(parent)], []);
    dir.removeSync(); // idempotent
  } finally {
    await Deno.remove(parent, { recursive: true });
  }
});
