// Model shapes transformers.js loads, generated (tests/_model_gen.ts; the split
// model passes onnx.checker, see the generator), loaded guarded and run, and
// refused with no onnxruntime session when one of the files it loads is
// tampered with: external data split over model.onnx_data and
// model.onnx_data_1, and dtype variants where only the requested file is
// fetched and checked; text generation with a key/value cache; a T5-shaped
// encoder-decoder.
import assert from "node:assert/strict";
import { HashMismatch, keySigner, signModel } from "../../sign/mod.ts";
import * as transformers from "@huggingface/transformers";
import { writeTinyDecoder, writeTinyModel, writeTinySeq2Seq } from "../_model_gen.ts";
import {
  assertClose,
  assertRefused,
  embed,
  epoch,
  flip,
  guarded,
  KEY,
  local,
  opts,
  sessions,
  test,
} from "./_guard_harness.ts";

test(
  "external data in two chunks (model.onnx_data, model.onnx_data_1): loads as the inline model does; a flipped byte in the second chunk is refused",
  opts,
  async () => {
    const root = await Deno.makeTempDir({ prefix: "shapes-" });
    try {
      await writeTinyModel(`${root}/split`, { externalData: 2, extraRows: 2000 });
      await writeTinyModel(`${root}/inline`, { extraRows: 2000 });
      for (const m of ["split", "inline"]) {
        await signModel(`${root}/${m}`, { signer: keySigner(KEY) });
      }
      await guarded({}, async (guard) => {
        local(`${root}/`);
        const want = await embed("inline");
        assertClose(await embed("split"), want);
        const loaded = guard.records.filter((r) => r.model === "split").map((r) => r.file).sort();
        assert.deepEqual(
          loaded.filter((f) => f.startsWith("onnx/")),
          ["onnx/model.onnx", "onnx/model.onnx_data", "onnx/model.onnx_data_1"],
        );
        assert.ok(guard.records.every((r) => r.verdict === "verified"));
        await flip(`${root}/split/onnx/model.onnx_data_1`, 100);
        await epoch();
        await assertRefused("split", HashMismatch, /onnx\/model\.onnx_data_1/);
      });
    } finally {
      await Deno.remove(root, { recursive: true });
    }
  },
);

test(
  "dtype variants: only the requested file is fetched and checked; a tampered other variant does not matter, the requested one is refused",
  opts,
  async () => {
    const root = await Deno.makeTempDir({ prefix: "shapes-" });
    try {
      const dir = `${root}/variants`;
      await writeTinyModel(dir, { onnxName: "model.onnx", seed: 1 });
      await writeTinyModel(dir, { onnxName: "model_fp16.onnx", seed: 2 });
      await writeTinyModel(dir, { onnxName: "model_quantized.onnx", seed: 3 });
      await signModel(dir, { signer: keySigner(KEY) });
      await writeTinyModel(`${root}/plain3`, { seed: 3 });
      await guarded({ policy: { signatures: "optional" } }, async () => {
        local(`${root}/`);
        // What the q8 file holds, loaded as a plain model (no signature needed for the reference).
        return await embed("plain3");
      }).then(async (want) => {
        await flip(`${dir}/onnx/model_fp16.onnx`, 50); // not requested: never read
        await guarded({}, async (guard) => {
          local(`${root}/`);
          assertClose(await embed("variants", { dtype: "q8" }), want);
          const onnx = guard.records.filter((r) => r.file.startsWith("onnx/")).map((r) => r.file);
          assert.deepEqual([...new Set(onnx)], ["onnx/model_quantized.onnx"]);
          await flip(`${dir}/onnx/model_quantized.onnx`, 50);
          await epoch();
          await assertRefused("variants", HashMismatch, /onnx\/model_quantized\.onnx/, {
            dtype: "q8",
          });
        });
      });
    } finally {
      await Deno.remove(root, { recursive: true });
    }
  },
);

/**
 * The tiny decoder's greedy tokens, computed here from its weights: each step
 * attends to every token so far (the cache), as the graph does.
 */
function referenceTokens(
  w: { embeddings: Float32Array; lmHead: Float32Array; hidden: number; vocab: number },
  prompt: number[],
  steps: number,
  eos: number,
): number[] {
  const { embeddings: e, lmHead, hidden: h, vocab: v } = w;
  const seen = [...prompt];
  const out: number[] = [];
  for (let step = 0; step < steps; step++) {
    const context = new Float64Array(h);
    for (const t of seen) for (let j = 0; j < h; j++) context[j]! += e[t * h + j]! / seen.length;
    const last = seen.at(-1)!;
    const state = Array.from({ length: h }, (_, j) => Math.tanh(e[last * h + j]! + context[j]!));
    let best = 0, bestScore = -Infinity;
    for (let k = 0; k < v; k++) {
      let score = 0;
      for (let j = 0; j < h; j++) score += state[j]! * lmHead[j * v + k]!;
      if (score > bestScore) [best, bestScore] = [k, score];
    }
    out.push(best);
    if (best === eos) break;
    seen.push(best);
  }
  return out;
}

test(
  "text generation with a key/value cache (decoder-only): guarded generation matches the graph's own reference; a tampered model is refused",
  opts,
  async () => {
    const root = await Deno.makeTempDir({ prefix: "shapes-" });
    try {
      const weights = await writeTinyDecoder(`${root}/decoder`, { seed: 11 });
      await signModel(`${root}/decoder`, { signer: keySigner(KEY) });
      await guarded({}, async (guard) => {
        local(`${root}/`);
        const tokenizer = await transformers.AutoTokenizer.from_pretrained("decoder");
        const model = await transformers.AutoModelForCausalLM.from_pretrained("decoder", {
          dtype: "fp32",
        });
        try {
          const inputs = tokenizer("hello world", { add_special_tokens: false });
          const prompt = (inputs.input_ids.tolist() as bigint[][])[0]!.map(Number);
          const ids = await model.generate({ ...inputs, max_new_tokens: 6, do_sample: false });
          const generated = ((ids as transformers.Tensor).tolist() as bigint[][])[0]!.map(Number)
            .slice(prompt.length);
          assert.ok(generated.length >= 3, `too few tokens: ${generated}`);
          assert.deepEqual(generated, referenceTokens(weights, prompt, 6, 2));
        } finally {
          await model.dispose();
        }
        assert.ok(
          guard.records.some((r) => r.file === "onnx/model.onnx" && r.verdict === "verified"),
        );
        await flip(`${root}/decoder/onnx/model.onnx`, 400);
        await epoch();
        const before = sessions;
        await assert.rejects(
          transformers.AutoModelForCausalLM.from_pretrained("decoder", { dtype: "fp32" }),
          HashMismatch,
        );
        assert.equal(sessions, before, "a session was created for the tampered model");
      });
    } finally {
      await Deno.remove(root, { recursive: true });
    }
  },
);

test(
  "encoder-decoder (T5-shaped text2text-generation): guarded generation matches a reference of both graphs; tampering either file is refused with no session",
  opts,
  async () => {
    const root = await Deno.makeTempDir({ prefix: "shapes-" });
    try {
      const w = await writeTinySeq2Seq(`${root}/t5`, { seed: 5 });
      await signModel(`${root}/t5`, { signer: keySigner(KEY) });
      // The reference: encoder states, then greedy decoding from the start token.
      const reference = (ids: number[], steps: number): number[] => {
        const { hidden: h, vocab: v } = w;
        const ectx = new Float64Array(h);
        for (const t of ids) {
          for (let j = 0; j < h; j++) ectx[j]! += Math.tanh(w.encoder[t * h + j]!) / ids.length;
        }
        const seen = [0];
        const out: number[] = [];
        for (let step = 0; step < steps; step++) {
          const dctx = new Float64Array(h);
          for (const t of seen) {
            for (let j = 0; j < h; j++) {
              dctx[j]! += w.decoder[t * h + j]! / seen.length;
            }
          }
          const last = seen.at(-1)!;
          const state = Array.from(
            { length: h },
            (_, j) => Math.tanh(w.decoder[last * h + j]! + dctx[j]! + ectx[j]!),
          );
          let best = 0, bestScore = -Infinity;
          for (let k = 0; k < v; k++) {
            let score = 0;
            for (let j = 0; j < h; j++) score += state[j]! * w.lmHead[j * v + k]!;
            if (score > bestScore) [best, bestScore] = [k, score];
          }
          out.push(best);
          if (best === 2) break;
          seen.push(best);
        }
        return out;
      };
      await guarded({}, async (guard) => {
        local(`${root}/`);
        const tokenizer = await transformers.AutoTokenizer.from_pretrained("t5");
        const inputs = tokenizer("hello world");
        const ids = (inputs.input_ids.tolist() as bigint[][])[0]!.map(Number);
        const generate = await transformers.pipeline("text2text-generation", "t5", {
          dtype: "fp32",
        });
        try {
          const model = generate.model;
          const out = await model.generate({ ...inputs, max_new_tokens: 6, do_sample: false });
          const tokens = ((out as transformers.Tensor).tolist() as bigint[][])[0]!.map(Number);
          assert.equal(tokens[0], 0, "decoding starts at decoder_start_token_id");
          assert.ok(tokens.length >= 4, `too few tokens: ${tokens}`);
          assert.deepEqual(tokens.slice(1), reference(ids, 6));
          const [text] = await generate("hello world", { max_new_tokens: 6 }) as {
            generated_text: string;
          }[];
          assert.equal(
            text!.generated_text,
            tokenizer.decode(tokens, { skip_special_tokens: true }),
          );
        } finally {
          await generate.dispose();
        }
        const onnx = guard.records.filter((r) => r.model === "t5" && r.file.startsWith("onnx/"));
        assert.deepEqual(
          [...new Set(onnx.map((r) => r.file))].sort(),
          ["onnx/decoder_model_merged.onnx", "onnx/encoder_model.onnx"],
        );
        assert.ok(onnx.every((r) => r.verdict === "verified"));
        for (const file of ["onnx/encoder_model.onnx", "onnx/decoder_model_merged.onnx"]) {
          const path = `${root}/t5/${file}`;
          const good = await Deno.readFile(path);
          await flip(path, 300);
          await epoch();
          await assertRefused(
            "t5",
            HashMismatch,
            new RegExp(file.replace(".", "\\.")),
            {},
            "text2text-generation",
          );
          await Deno.writeFile(path, good);
        }
      });
    } finally {
      await Deno.remove(root, { recursive: true });
    }
  },
);
