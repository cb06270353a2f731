// Generates a small model that transformers.js runs as "feature-extraction":
// a BERT-typed config, a WordPiece tokenizer and an ONNX graph
//   last_hidden_state = tanh(embeddings[input_ids] * attention_mask[..., None])
// written with our own protobuf encoder. Used by the demo, the transformers.js
// guard tests and its bench (which asks for ~256 MiB of embeddings).

const enc = new TextEncoder();

function varint(n: number | bigint): number[] {
  let v = BigInt.asUintN(64, BigInt(n));
  const out: number[] = [];
  while (v > 0x7fn) {
    out.push(Number(v & 0x7fn) | 0x80);
    v >>= 7n;
  }
  out.push(Number(v));
  return out;
}

type Part = number[] | Uint8Array;
const join = (parts: Part[]): Uint8Array => {
  const n = parts.reduce((a, p) => a + p.length, 0);
  const out = new Uint8Array(n);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
};
const len = (
  field: number,
  body: Part,
): Part[] => [[...varint((field << 3) | 2), ...varint(body.length)], body];
const str = (field: number, s: string) => len(field, enc.encode(s));
const int = (field: number, v: number | bigint): Part[] => [[...varint(field << 3), ...varint(v)]];
const msg = (...fields: Part[][]): Uint8Array => join(fields.flat());

function tensor(name: string, dataType: number, dims: number[], raw: Uint8Array): Uint8Array {
  return msg(...dims.map((d) => int(1, d)), int(2, dataType), str(8, name), len(9, raw));
}

function valueInfo(name: string, elemType: number, dims: (number | string)[]): Uint8Array {
  const shape = msg(
    ...dims.map((d) => len(1, typeof d === "number" ? msg(int(1, d)) : msg(str(2, d)))),
  );
  const tensorType = msg(int(1, elemType), len(2, shape));
  return msg(str(1, name), len(2, msg(len(1, tensorType))));
}

function node(
  op: string,
  inputs: string[],
  outputs: string[],
  attrs: Part[][] = [],
  name = `${op}_0`,
): Uint8Array {
  return msg(
    ...inputs.map((i) => str(1, i)),
    ...outputs.map((o) => str(2, o)),
    str(3, name),
    str(4, op),
    ...attrs,
  );
}

/** Options for {@linkcode writeTinyModel}. */
export interface TinyModelOptions {
  /** Hidden size. @default {8} */
  hidden?: number;
  /** Extra embedding rows beyond the vocabulary (to make the weights big). @default {0} */
  extraRows?: number;
  /** Seed for the weights. @default {1} */
  seed?: number;
  /**
   * Store the embeddings in `onnx/model.onnx_data` (ONNX external data, and
   * `use_external_data_format` in config.json) instead of inline; a number
   * splits them over that many files (`model.onnx_data`, `model.onnx_data_1`,
   * …, joined by a Concat in the graph), as transformers.js loads chunks.
   * @default {false}
   */
  externalData?: boolean | number;
  /** The ONNX file's name under `onnx/` (a dtype variant: `model_fp16.onnx`, …). @default {"model.onnx"} */
  onnxName?: string;
}

const VOCAB = [
  "[PAD]",
  "[CLS]",
  "[SEP]",
  "[UNK]",
  "[MASK]",
  "hello",
  "world",
  "safe",
  "models",
  "sign",
  "verify",
  "the",
  "a",
  "model",
  "weights",
  "!",
  ".",
  ",",
];

/** The ONNX bytes of the tiny model. */
export function tinyOnnx(options: TinyModelOptions = {}): Uint8Array {
  return tinyOnnxParts(options).onnx;
}

/**
 * The ONNX bytes and, with `externalData`, the bytes of `model.onnx_data`
 * (and, split, of each chunk in order: `chunks`).
 */
export function tinyOnnxParts(
  options: TinyModelOptions = {},
): { onnx: Uint8Array; data?: Uint8Array; chunks?: Uint8Array[] } {
  const hidden = options.hidden ?? 8;
  const rows = VOCAB.length + (options.extraRows ?? 0);
  const weights = new Float32Array(rows * hidden);
  let s = options.seed ?? 1;
  for (let i = 0; i < VOCAB.length * hidden; i++) {
    s = (s * 1103515245 + 12345) % 2 ** 31;
    weights[i] = s / 2 ** 31 - 0.5;
  }
  const FLOAT = 1, INT64 = 7;
  const axes = new Uint8Array(new BigInt64Array([-1n]).buffer);
  const data = new Uint8Array(weights.buffer);
  const entry = (k: string, v: string) => len(13, msg(str(1, k), str(2, v)));
  const onnxName = options.onnxName ?? "model.onnx";
  const parts = options.externalData === true ? 1 : Number(options.externalData || 0);
  const external = (name: string, location: string, partRows: number, bytes: number) =>
    msg(
      int(1, partRows),
      int(1, hidden),
      int(2, FLOAT),
      str(8, name),
      entry("location", location),
      entry("offset", "0"),
      entry("length", String(bytes)),
      int(14, 1),
    );
  // Split: rows cut into `parts` runs, one initializer (and file) each.
  const cuts = Array.from(
    { length: parts + 1 },
    (_, i) => Math.round((rows * i) / Math.max(parts, 1)),
  );
  const chunkNames = Array.from(
    { length: parts },
    (_, i) => `${onnxName}_data${i === 0 ? "" : `_${i}`}`,
  );
  const initializers = parts === 0
    ? [tensor("embeddings", FLOAT, [rows, hidden], data)]
    : parts === 1
    ? [external("embeddings", chunkNames[0]!, rows, data.byteLength)]
    : chunkNames.map((name, i) =>
      external(
        `embeddings_${i}`,
        name,
        cuts[i + 1]! - cuts[i]!,
        (cuts[i + 1]! - cuts[i]!) * hidden * 4,
      )
    );
  const chunks = parts > 1
    ? chunkNames.map((_, i) => data.slice(cuts[i]! * hidden * 4, cuts[i + 1]! * hidden * 4))
    : undefined;
  const concat = parts > 1
    ? [len(
      1,
      node(
        "Concat",
        chunkNames.map((_, i) => `embeddings_${i}`),
        ["embeddings"],
        [len(5, msg(str(1, "axis"), int(3, 0), int(20, 2)))],
      ),
    )]
    : [];
  const graph = msg(
    ...concat,
    len(1, node("Gather", ["embeddings", "input_ids"], ["gathered"])),
    len(
      1,
      node("Cast", ["attention_mask"], ["mask_f"], [
        len(5, msg(str(1, "to"), int(3, FLOAT), int(20, 2))),
      ]),
    ),
    len(1, node("Unsqueeze", ["mask_f", "unsqueeze_axes"], ["mask_3d"])),
    len(1, node("Mul", ["gathered", "mask_3d"], ["masked"])),
    len(1, node("Tanh", ["masked"], ["last_hidden_state"])),
    str(2, "safemodels-tiny"),
    ...initializers.map((t) => len(5, t)),
    len(5, tensor("unsqueeze_axes", INT64, [1], axes)),
    len(11, valueInfo("input_ids", INT64, ["batch", "sequence"])),
    len(11, valueInfo("attention_mask", INT64, ["batch", "sequence"])),
    len(12, valueInfo("last_hidden_state", FLOAT, ["batch", "sequence", hidden])),
  );
  const onnx = onnxModel(graph);
  if (chunks) return { onnx, chunks };
  return parts === 1 ? { onnx, data } : { onnx };
}

/** The WordPiece tokenizer.json for the tiny vocabulary. */
export function tinyTokenizer(): string {
  const special = (id: number, content: string) => ({
    id,
    content,
    single_word: false,
    lstrip: false,
    rstrip: false,
    normalized: false,
    special: true,
  });
  return JSON.stringify({
    version: "1.0",
    truncation: null,
    padding: null,
    added_tokens: VOCAB.slice(0, 5).map((t, i) => special(i, t)),
    normalizer: {
      type: "BertNormalizer",
      clean_text: true,
      handle_chinese_chars: true,
      strip_accents: null,
      lowercase: true,
    },
    pre_tokenizer: { type: "BertPreTokenizer" },
    post_processor: {
      type: "TemplateProcessing",
      single: [
        { SpecialToken: { id: "[CLS]", type_id: 0 } },
        { Sequence: { id: "A", type_id: 0 } },
        {
          SpecialToken: { id: "[SEP]", type_id: 0 },
        },
      ],
      pair: [
        { SpecialToken: { id: "[CLS]", type_id: 0 } },
        { Sequence: { id: "A", type_id: 0 } },
        { SpecialToken: { id: "[SEP]", type_id: 0 } },
        { Sequence: { id: "B", type_id: 1 } },
        { SpecialToken: { id: "[SEP]", type_id: 1 } },
      ],
      special_tokens: Object.fromEntries(
        ["[CLS]", "[SEP]"].map((t) => [t, { id: t, ids: [VOCAB.indexOf(t)], tokens: [t] }]),
      ),
    },
    decoder: { type: "WordPiece", prefix: "##", cleanup: true },
    model: {
      type: "WordPiece",
      unk_token: "[UNK]",
      continuing_subword_prefix: "##",
      max_input_chars_per_word: 100,
      vocab: Object.fromEntries(VOCAB.map((t, i) => [t, i])),
    },
  });
}

/**
 * Writes the tiny model's files into `dir`: config.json, tokenizer.json,
 * tokenizer_config.json and onnx/model.onnx.
 */
export async function writeTinyModel(dir: string, options: TinyModelOptions = {}): Promise<void> {
  await Deno.mkdir(`${dir}/onnx`, { recursive: true });
  await Deno.writeTextFile(
    `${dir}/config.json`,
    JSON.stringify({
      model_type: "bert",
      architectures: ["BertModel"],
      vocab_size: VOCAB.length,
      hidden_size: options.hidden ?? 8,
      ...(options.externalData
        ? {
          "transformers.js_config": {
            use_external_data_format: options.externalData === true ? true : options.externalData,
          },
        }
        : {}),
    }),
  );
  await Deno.writeTextFile(`${dir}/tokenizer.json`, tinyTokenizer());
  await Deno.writeTextFile(
    `${dir}/tokenizer_config.json`,
    JSON.stringify({
      tokenizer_class: "BertTokenizer",
      do_lower_case: true,
      model_max_length: 512,
      cls_token: "[CLS]",
      sep_token: "[SEP]",
      unk_token: "[UNK]",
      pad_token: "[PAD]",
      mask_token: "[MASK]",
    }),
  );
  const { onnx, data, chunks } = tinyOnnxParts(options);
  const onnxName = options.onnxName ?? "model.onnx";
  await Deno.writeFile(`${dir}/onnx/${onnxName}`, onnx);
  if (data) await Deno.writeFile(`${dir}/onnx/${onnxName}_data`, data);
  for (const [i, chunk] of (chunks ?? []).entries()) {
    await Deno.writeFile(`${dir}/onnx/${onnxName}_data${i === 0 ? "" : `_${i}`}`, chunk);
  }
}

/** A fresh ECDSA P-256 key pair as PEM texts (PKCS#8 private, SPKI public). */
export async function freshKeyPem(): Promise<{ privatePem: string; publicPem: string }> {
  const pair = await crypto.subtle.generateKey({ name: "ECDSA", namedCurve: "P-256" }, true, [
    "sign",
    "verify",
  ]);
  const pem = (label: string, der: ArrayBuffer) =>
    `-----BEGIN ${label}-----\n${
      btoa(String.fromCharCode(...new Uint8Array(der))).match(/.{1,64}/g)!.join("\n")
    }\n-----END ${label}-----\n`;
  return {
    privatePem: pem("PRIVATE KEY", await crypto.subtle.exportKey("pkcs8", pair.privateKey)),
    publicPem: pem("PUBLIC KEY", await crypto.subtle.exportKey("spki", pair.publicKey)),
  };
}

/** A deterministic pseudo-random source of floats in [-0.5, 0.5) (a linear congruential generator). */
function seededFloats(seed: number): (n: number) => Float32Array {
  let s = seed;
  return (n) =>
    Float32Array.from({ length: n }, () => {
      s = (s * 1103515245 + 12345) % 2 ** 31;
      return s / 2 ** 31 - 0.5;
    });
}

const i64 = (values: bigint[]) => new Uint8Array(new BigInt64Array(values).buffer);
const f32 = (a: Float32Array) => new Uint8Array(a.buffer);
/** An INT attribute (type 2). */
const intAttr = (name: string, v: number) => len(5, msg(str(1, name), int(3, v), int(20, 2)));
/** An INTS attribute holding one value (type 7). */
const intsAttr = (name: string, v: number) => len(5, msg(str(1, name), int(8, v), int(20, 7)));
/** A ModelProto (IR version 8, opset 13) around a graph. */
const onnxModel = (graph: Uint8Array) =>
  msg(int(1, 8), str(2, "safemodels"), len(7, graph), len(8, msg(str(1, ""), int(2, 13))));

/**
 * The JSON files of a generated text model: config.json,
 * generation_config.json, tokenizer.json (the tiny vocabulary) and
 * tokenizer_config.json (a BertTokenizer with `tokens` added).
 */
async function writeTextModelFiles(
  dir: string,
  config: Record<string, unknown>,
  generation: Record<string, unknown>,
  tokens: Record<string, string>,
): Promise<void> {
  await Deno.writeTextFile(`${dir}/config.json`, JSON.stringify(config));
  await Deno.writeTextFile(`${dir}/generation_config.json`, JSON.stringify(generation));
  await Deno.writeTextFile(`${dir}/tokenizer.json`, tinyTokenizer());
  await Deno.writeTextFile(
    `${dir}/tokenizer_config.json`,
    JSON.stringify({
      tokenizer_class: "BertTokenizer",
      do_lower_case: true,
      model_max_length: 512,
      ...tokens,
    }),
  );
}

/**
 * Writes a tiny decoder-only text-generation model (GPT-2 typed, one layer,
 * one head) with a key/value cache: inputs `input_ids`, `attention_mask`,
 * `past_key_values.0.key` / `.value` ([batch, 1, past, hidden]); outputs
 * `logits` and `present.0.key` / `.value` (the past with this step's keys
 * appended). The logits depend on the whole cache, so generating with a
 * wrong or missing cache gives other tokens.
 */
export async function writeTinyDecoder(
  dir: string,
  options: { seed?: number } = {},
): Promise<{ embeddings: Float32Array; lmHead: Float32Array; hidden: number; vocab: number }> {
  const hidden = 8;
  const vocab = VOCAB.length;
  const rand = seededFloats(options.seed ?? 7);
  const FLOAT = 1, INT64 = 7;
  const embeddings = rand(vocab * hidden);
  const lmHead = rand(hidden * vocab);
  const kv = ["batch_size", 1, "past_sequence_length", hidden];
  const present = ["batch_size", 1, "total_sequence_length", hidden];
  const graph = msg(
    len(1, node("Gather", ["embeddings", "input_ids"], ["gathered"])),
    len(1, node("Unsqueeze", ["gathered", "axis1"], ["step"])),
    len(
      1,
      node(
        "Concat",
        ["past_key_values.0.key", "step"],
        ["present.0.key"],
        [intAttr("axis", 2)],
        "k",
      ),
    ),
    len(
      1,
      node("Concat", ["past_key_values.0.value", "step"], ["present.0.value"], [
        intAttr("axis", 2),
      ], "v"),
    ),
    len(
      1,
      node("ReduceMean", ["present.0.key"], ["context4"], [
        intAttr("keepdims", 1),
        intsAttr("axes", 2),
      ]),
    ),
    len(1, node("Squeeze", ["context4", "axis1"], ["context"])),
    len(1, node("Add", ["gathered", "context"], ["mixed"])),
    len(1, node("Tanh", ["mixed"], ["hidden_state"])),
    len(1, node("MatMul", ["hidden_state", "lm_head"], ["logits"])),
    str(2, "safemodels-tiny-decoder"),
    len(5, tensor("embeddings", FLOAT, [vocab, hidden], f32(embeddings))),
    len(5, tensor("lm_head", FLOAT, [hidden, vocab], f32(lmHead))),
    len(5, tensor("axis1", INT64, [1], i64([1n]))),
    len(11, valueInfo("input_ids", INT64, ["batch_size", "sequence_length"])),
    len(11, valueInfo("attention_mask", INT64, ["batch_size", "total_sequence_length"])),
    len(11, valueInfo("past_key_values.0.key", FLOAT, kv)),
    len(11, valueInfo("past_key_values.0.value", FLOAT, kv)),
    len(12, valueInfo("logits", FLOAT, ["batch_size", "sequence_length", vocab])),
    len(12, valueInfo("present.0.key", FLOAT, present)),
    len(12, valueInfo("present.0.value", FLOAT, present)),
  );
  await Deno.mkdir(`${dir}/onnx`, { recursive: true });
  await Deno.writeFile(`${dir}/onnx/model.onnx`, onnxModel(graph));
  await writeTextModelFiles(
    dir,
    {
      model_type: "gpt2",
      architectures: ["GPT2LMHeadModel"],
      vocab_size: vocab,
      n_embd: hidden,
      n_head: 1,
      n_layer: 1,
      bos_token_id: 1,
      eos_token_id: 2,
      pad_token_id: 0,
    },
    { bos_token_id: 1, eos_token_id: 2, pad_token_id: 0 },
    { unk_token: "[UNK]", pad_token: "[PAD]" },
  );
  return { embeddings, lmHead, hidden, vocab };
}

/**
 * Writes a tiny T5-typed encoder-decoder for `text2text-generation`:
 * `onnx/encoder_model.onnx` (`last_hidden_state = tanh(enc[input_ids])`) and
 * `onnx/decoder_model_merged.onnx`, whose logits depend on the decoder's own
 * cache (`past_key_values.0.decoder.*` → `present.0.decoder.*`) and on the
 * encoder's states (also returned as `present.0.encoder.*`).
 */
export async function writeTinySeq2Seq(
  dir: string,
  options: { seed?: number } = {},
): Promise<
  {
    encoder: Float32Array;
    decoder: Float32Array;
    lmHead: Float32Array;
    hidden: number;
    vocab: number;
  }
> {
  const hidden = 8;
  const vocab = VOCAB.length;
  const rand = seededFloats(options.seed ?? 5);
  const FLOAT = 1, INT64 = 7, BOOL = 9;
  const encoder = rand(vocab * hidden);
  const decoder = rand(vocab * hidden);
  const lmHead = rand(hidden * vocab);

  const encoderGraph = msg(
    len(1, node("Gather", ["embeddings", "input_ids"], ["gathered"])),
    len(1, node("Tanh", ["gathered"], ["last_hidden_state"])),
    str(2, "safemodels-tiny-encoder"),
    len(5, tensor("embeddings", FLOAT, [vocab, hidden], f32(encoder))),
    len(11, valueInfo("input_ids", INT64, ["batch_size", "encoder_sequence_length"])),
    len(11, valueInfo("attention_mask", INT64, ["batch_size", "encoder_sequence_length"])),
    len(
      12,
      valueInfo("last_hidden_state", FLOAT, ["batch_size", "encoder_sequence_length", hidden]),
    ),
  );
  const past = (kind: string, seq: string) =>
    valueInfo(`past_key_values.0.${kind}`, FLOAT, ["batch_size", 1, seq, hidden]);
  const decoderGraph = msg(
    len(1, node("Gather", ["embeddings", "input_ids"], ["gathered"])),
    len(1, node("Unsqueeze", ["gathered", "axis1"], ["step"])),
    len(
      1,
      node("Concat", ["past_key_values.0.decoder.key", "step"], ["present.0.decoder.key"], [
        intAttr("axis", 2),
      ], "dk"),
    ),
    len(
      1,
      node("Concat", ["past_key_values.0.decoder.value", "step"], ["present.0.decoder.value"], [
        intAttr("axis", 2),
      ], "dv"),
    ),
    len(
      1,
      node("Unsqueeze", ["encoder_hidden_states", "axis1"], ["present.0.encoder.key"], [], "ek"),
    ),
    len(
      1,
      node("Unsqueeze", ["encoder_hidden_states", "axis1"], ["present.0.encoder.value"], [], "ev"),
    ),
    len(
      1,
      node("ReduceMean", ["present.0.decoder.key"], ["dctx4"], [
        intAttr("keepdims", 1),
        intsAttr("axes", 2),
      ], "rd"),
    ),
    len(1, node("Squeeze", ["dctx4", "axis1"], ["dctx"])),
    len(
      1,
      node("ReduceMean", ["encoder_hidden_states"], ["ectx"], [
        intAttr("keepdims", 1),
        intsAttr("axes", 1),
      ], "re"),
    ),
    len(1, node("Add", ["gathered", "dctx"], ["mixed0"], [], "a0")),
    len(1, node("Add", ["mixed0", "ectx"], ["mixed"], [], "a1")),
    len(1, node("Tanh", ["mixed"], ["hidden_state"])),
    len(1, node("MatMul", ["hidden_state", "lm_head"], ["logits"])),
    str(2, "safemodels-tiny-decoder-merged"),
    len(5, tensor("embeddings", FLOAT, [vocab, hidden], f32(decoder))),
    len(5, tensor("lm_head", FLOAT, [hidden, vocab], f32(lmHead))),
    len(5, tensor("axis1", INT64, [1], i64([1n]))),
    len(11, valueInfo("encoder_attention_mask", INT64, ["batch_size", "encoder_sequence_length"])),
    len(11, valueInfo("input_ids", INT64, ["batch_size", "decoder_sequence_length"])),
    len(
      11,
      valueInfo("encoder_hidden_states", FLOAT, ["batch_size", "encoder_sequence_length", hidden]),
    ),
    len(11, past("decoder.key", "past_decoder_sequence_length")),
    len(11, past("decoder.value", "past_decoder_sequence_length")),
    len(11, past("encoder.key", "encoder_sequence_length_out")),
    len(11, past("encoder.value", "encoder_sequence_length_out")),
    len(11, valueInfo("use_cache_branch", BOOL, [1])),
    len(12, valueInfo("logits", FLOAT, ["batch_size", "decoder_sequence_length", vocab])),
    len(
      12,
      valueInfo("present.0.decoder.key", FLOAT, ["batch_size", 1, "total_decoder_length", hidden]),
    ),
    len(
      12,
      valueInfo("present.0.decoder.value", FLOAT, [
        "batch_size",
        1,
        "total_decoder_length",
        hidden,
      ]),
    ),
    len(
      12,
      valueInfo("present.0.encoder.key", FLOAT, [
        "batch_size",
        1,
        "encoder_sequence_length",
        hidden,
      ]),
    ),
    len(
      12,
      valueInfo("present.0.encoder.value", FLOAT, [
        "batch_size",
        1,
        "encoder_sequence_length",
        hidden,
      ]),
    ),
  );
  await Deno.mkdir(`${dir}/onnx`, { recursive: true });
  await Deno.writeFile(`${dir}/onnx/encoder_model.onnx`, onnxModel(encoderGraph));
  await Deno.writeFile(`${dir}/onnx/decoder_model_merged.onnx`, onnxModel(decoderGraph));
  await writeTextModelFiles(
    dir,
    {
      model_type: "t5",
      architectures: ["T5ForConditionalGeneration"],
      is_encoder_decoder: true,
      vocab_size: vocab,
      d_model: hidden,
      d_kv: hidden,
      num_heads: 1,
      num_layers: 1,
      num_decoder_layers: 1,
      decoder_start_token_id: 0,
      eos_token_id: 2,
      pad_token_id: 0,
    },
    { decoder_start_token_id: 0, eos_token_id: 2, pad_token_id: 0 },
    { unk_token: "[UNK]", pad_token: "[PAD]", cls_token: "[CLS]", sep_token: "[SEP]" },
  );
  return { encoder, decoder, lmHead, hidden, vocab };
}

/**
 * A tiny graph `y = tanh(x)` (float [n]); with `weight`, `y = tanh(x + w)`
 * with `w` a 4-value initializer: a weightless op graph, or the smallest
 * graph that carries weights.
 */
export function opGraph(weight = false): Uint8Array {
  const FLOAT = 1;
  const graph = msg(
    ...(weight
      ? [len(1, node("Add", ["x", "w"], ["xw"])), len(1, node("Tanh", ["xw"], ["y"]))]
      : [len(1, node("Tanh", ["x"], ["y"]))]),
    str(2, weight ? "weighted-op" : "op"),
    ...(weight
      ? [len(5, tensor("w", FLOAT, [4], new Uint8Array(new Float32Array([1, 2, 3, 4]).buffer)))]
      : []),
    len(11, valueInfo("x", FLOAT, [4])),
    len(12, valueInfo("y", FLOAT, [4])),
  );
  return msg(int(1, 8), str(2, "safemodels"), len(7, graph), len(8, msg(str(1, ""), int(2, 13))));
}
