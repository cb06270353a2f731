import { ModelFormatError } from "./errors.ts";
import {
  type OpenedModel,
  openModel,
  type OpenModelOptions,
  openModelSource,
} from "./open_model.ts";
import { bytesSource, inputName, isPathLike, responseBody, StreamReader } from "./_source.ts";
import { detectFormat } from "./detect_format.ts";
import { readSafetensorsStream } from "./_safetensors.ts";
import { readAhead, tensorLeaves, workersAllowed } from "./_leaves.ts";
import { spanOf, sweep } from "./_sweep.ts";
import { shardOf } from "./_shards.ts";
import {
  compareCodePoints,
  createBlake2b,
  createXxh64,
  fromHex,
  sha256Ready,
  sha256Sync,
  toHex,
} from "./_digest.ts";
import type { DType, ModelFormat, ModelInput, Tensor } from "./types.ts";

/**
 * The tensor-hash algorithms:
 * - `"safemodels-v1"` (default): SHA-256 Merkle hash binding every tensor's
 *   name, dtype, shape and bytes; see the README for the spec.
 * - `"seed-xxh64"`: the seed project's hash: xxh64 (seed 0) over all tensors'
 *   bytes, sorted by name; an unsigned decimal string.
 * - `"seed-blake2b160"`: the same bytes through BLAKE2b-160, as hex.
 *
 * @example Choosing the seed hash
 * ```ts ignore
 * import { type HashAlgorithm, safeHash } from "@safemodels/safemodels/hash";
 *
 * const algorithm: HashAlgorithm = "seed-xxh64";
 * console.log(await safeHash("model.safetensors", { algorithm }));
 * ```
 */
export type HashAlgorithm = "safemodels-v1" | "seed-xxh64" | "seed-blake2b160";

/**
 * Progress of a running hash, reported to {@linkcode SafeHashOptions.onProgress}.
 *
 * @example Printing progress
 * ```ts ignore
 * import { type HashProgress, safeHash } from "@safemodels/safemodels/hash";
 *
 * const onProgress = (p: HashProgress) => console.log(`${p.bytes} / ${p.totalBytes ?? "?"}`);
 * await safeHash("model.safetensors", { onProgress });
 * ```
 */
export interface HashProgress {
  /** Tensor bytes hashed so far. */
  bytes: number;
  /** Total tensor bytes, when known before the end (not for streams). */
  totalBytes: number | undefined;
}

/**
 * Options for {@linkcode safeHash} and {@linkcode hashManifest}.
 *
 * @example Hashing on one thread with a time limit
 * ```ts ignore
 * import { safeHash, type SafeHashOptions } from "@safemodels/safemodels/hash";
 *
 * const options: SafeHashOptions = { workers: 0, signal: AbortSignal.timeout(60_000) };
 * await safeHash("model.safetensors", options);
 * ```
 */
export interface SafeHashOptions extends OpenModelOptions {
  /**
   * The hash algorithm.
   * @default {"safemodels-v1"}
   */
  algorithm?: HashAlgorithm;
  /**
   * Workers hashing tensors in parallel (`"safemodels-v1"` only; tensors are
   * the unit of parallelism). `0` hashes on the calling thread.
   * @default {navigator.hardwareConcurrency for 384 MiB of tensors or more where `Worker` exists, else 0}
   */
  workers?: number;
  /** Called as bytes are hashed (at most once per 8 MiB chunk). */
  onProgress?: (progress: HashProgress) => void;
  /**
   * Called, before hashing, with the files a folder or a sharded
   * checkpoint's index is read from (relative to the model's folder).
   */
  onFiles?: (files: string[]) => void;
  /** Stops the hash between chunks. */
  signal?: AbortSignal;
}

/**
 * One tensor in a {@linkcode HashManifest}.
 *
 * @example Finding what changed
 * ```ts ignore
 * import { hashManifest, type ManifestTensor } from "@safemodels/safemodels/hash";
 *
 * const before: ManifestTensor[] = (await hashManifest("old.safetensors")).tensors;
 * const after = (await hashManifest("new.safetensors")).tensors;
 * console.log(after.filter((t, i) => t.sha256 !== before[i]?.sha256).map((t) => t.name));
 * ```
 */
export interface ManifestTensor {
  /** Tensor name. */
  name: string;
  /** Element type. */
  dtype: DType;
  /** Shape (`[]` for scalars). */
  shape: number[];
  /** Hex SHA-256 of the tensor's bytes in logical C order, little-endian. */
  sha256: string;
  /** The shard the tensor came from (sharded checkpoints only), relative to the model's folder. */
  file?: string;
}

/**
 * The leaves of a `"safemodels-v1"` hash: enough to recompute and audit it.
 *
 * @example Saving a manifest
 * ```ts ignore
 * import { hashManifest, type HashManifest } from "@safemodels/safemodels/hash";
 *
 * const manifest: HashManifest = await hashManifest("model.safetensors");
 * await Deno.writeTextFile("model.manifest.json", JSON.stringify(manifest, null, 2));
 * ```
 */
export interface HashManifest {
  /** Always `"safemodels-v1"`. */
  algorithm: "safemodels-v1";
  /** The root hash, as {@linkcode safeHash} returns it. */
  hash: string;
  /** The format the tensors were read from. */
  format: ModelFormat;
  /** Every tensor, sorted by name in Unicode code-point order. */
  tensors: ManifestTensor[];
  /**
   * For a folder or a sharded checkpoint: the files hashed, relative to the
   * model's folder (the index first, then its shards).
   */
  files?: string[];
}

const V1 = "safemodels-v1";
/**
 * Inputs from this size on are hashed on worker lanes by default. Starting a
 * worker costs about 100 ms here, what one core hashes of 170 MB in that
 * time: below ~350 MB, two lanes would finish later than one.
 */
const AUTO_WORKER_BYTES = 384 << 20;

/**
 * Hashes a model's tensors, independently of the file format: the same
 * weights give the same hash as safetensors, PyTorch (zip or legacy), NumPy
 * `.npz` or ONNX (when the names match and the ONNX graph holds no
 * constants; see the README). The seed project's `safe_hash`.
 *
 * The default `"safemodels-v1"` result is self-describing
 * (`safemodels-v1:<64 hex digits>`) and changes when any tensor is renamed,
 * re-typed, reshaped or altered. Large files are read in 8 MiB blocks and
 * tensors are hashed on workers in parallel; memory stays flat.
 *
 * @param input A path or `file:` URL, bytes, a `Blob`, a byte stream or a `Response`.
 * @param options Algorithm, format override, workers, progress and abort.
 * @returns The hash string.
 * @throws {ModelFormatError} When the input is not a readable model.
 *
 * @example Hashing a safetensors file in memory
 * ```ts
 * import { safeHash } from "@safemodels/safemodels";
 * import assert from "node:assert/strict";
 *
 * const header = new TextEncoder().encode(
 *   '{"w":{"dtype":"U8","shape":[2],"data_offsets":[0,2]}}',
 * );
 * const file = new Uint8Array([...new Uint8Array(8), ...header, 1, 2]);
 * new DataView(file.buffer).setBigUint64(0, BigInt(header.length), true);
 *
 * const hash = await safeHash(file);
 * assert.match(hash, /^safemodels-v1:[0-9a-f]{64}$/);
 * assert.match(await safeHash(file, { algorithm: "seed-xxh64" }), /^[0-9]+$/);
 * ```
 */
export async function safeHash(
  input: ModelInput,
  options: SafeHashOptions = {},
): Promise<string> {
  const algorithm = options.algorithm ?? V1;
  if (algorithm === V1) return (await v1(input, options, false)).hash;
  if (algorithm !== "seed-xxh64" && algorithm !== "seed-blake2b160") {
    throw new TypeError(
      `Cannot hash model: unknown algorithm ${
        JSON.stringify(algorithm)
      }, expected "safemodels-v1", "seed-xxh64" or "seed-blake2b160"`,
    );
  }
  // try/finally rather than `await using`, which Node before 24 cannot parse.
  const model = await openModel(input, options);
  if (model.files) options.onFiles?.(model.files);
  let digest: Uint8Array;
  try {
    const hasher = algorithm === "seed-xxh64" ? await createXxh64() : await createBlake2b(160);
    // The seed project read an ONNX model's main-graph initializers only.
    const tensors = model.format === "onnx"
      ? model.tensors.filter((await import("./_onnx.ts")).isMainInitializer)
      : model.tensors;
    const sorted = sortedByName(tensors).map((i) => tensors[i]!);
    checkUnique(sorted, model.file);
    const progress = progressReporter(options, total(sorted));
    const feed = (bytes: Uint8Array) => {
      options.signal?.throwIfAborted();
      hasher.update(bytes);
      progress(bytes.byteLength);
    };
    // In name order: tensors lying in their source are read in runs (one
    // sweep for each stretch of them); others chunk by chunk.
    for (let i = 0; i < sorted.length;) {
      const first = spanOf(sorted[i]!);
      if (first === undefined) {
        for await (const chunk of readAhead(sorted[i]!.chunks())) feed(chunk);
        i++;
        continue;
      }
      const items: { offset: number; length: number }[] = [];
      for (; i < sorted.length; i++) {
        const span = spanOf(sorted[i]!);
        if (span === undefined || span.source !== first.source) break;
        if (span.length > 0) items.push(span);
      }
      await sweep(first.source, items, (_, bytes) => feed(bytes));
    }
    digest = hasher.digest();
  } finally {
    await model.close();
  }
  return algorithm === "seed-xxh64" ? BigInt(`0x${toHex(digest)}`).toString() : toHex(digest);
}

/**
 * Computes the `"safemodels-v1"` hash with its leaves: every tensor's name,
 * dtype, shape and SHA-256, sorted by name. A signer can publish the manifest
 * so that a verifier learns which tensor changed, not only that one did.
 *
 * @param input A path or `file:` URL, bytes, a `Blob`, a byte stream or a `Response`.
 * @param options Format override, workers, progress and abort (`algorithm` must be absent or `"safemodels-v1"`).
 * @returns The manifest; its `hash` equals {@linkcode safeHash}'s result.
 * @throws {ModelFormatError} When the input is not a readable model.
 *
 * @example Listing per-tensor digests
 * ```ts
 * import { hashManifest, safeHash } from "@safemodels/safemodels/hash";
 * import assert from "node:assert/strict";
 *
 * const header = new TextEncoder().encode(
 *   '{"b":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"a":{"dtype":"U8","shape":[],"data_offsets":[1,2]}}',
 * );
 * const file = new Uint8Array([...new Uint8Array(8), ...header, 7, 9]);
 * new DataView(file.buffer).setBigUint64(0, BigInt(header.length), true);
 *
 * const manifest = await hashManifest(file);
 * assert.deepEqual(manifest.tensors.map((t) => t.name), ["a", "b"]);
 * assert.equal(manifest.hash, await safeHash(file));
 * ```
 */
export async function hashManifest(
  input: ModelInput,
  options: SafeHashOptions = {},
): Promise<HashManifest> {
  if ((options.algorithm ?? V1) !== V1) {
    throw new TypeError(
      `Cannot build manifest: only "safemodels-v1" has leaves, got ${
        JSON.stringify(options.algorithm)
      }`,
    );
  }
  return await v1(input, options, true);
}

/** The `safemodels-v1` hash, with its per-tensor entries or not. */
async function v1(
  input: ModelInput,
  options: SafeHashOptions,
  withEntries: boolean,
): Promise<HashManifest> {
  const streamed = await openStreamed(input, options);
  if (streamed) return await manifestOf(streamed, options, withEntries);
  const model = await openModel(input, options);
  if (model.files) options.onFiles?.(model.files);
  try {
    return await manifestOf(model, options, withEntries);
  } finally {
    await model.close();
  }
}

interface TensorSet {
  file: string;
  format: ModelFormat;
  tensors: Tensor[] | AsyncIterable<Tensor>;
  files?: string[] | undefined;
}

async function manifestOf(
  set: TensorSet,
  options: SafeHashOptions,
  withEntries = true,
): Promise<HashManifest> {
  const known = Array.isArray(set.tensors) ? total(set.tensors) : undefined;
  const workers = options.workers ??
    (workersAllowed() && (known ?? 0) >= AUTO_WORKER_BYTES
      ? Math.max(1, globalThis.navigator?.hardwareConcurrency ?? 1)
      : 0);
  const onBytes = progressReporter(options, known);
  const { tensors, leaves } = await tensorLeaves(set.tensors, {
    workers,
    onBytes,
    ...(options.signal ? { signal: options.signal } : {}),
  });
  await sha256Ready();
  const order = sortedByName(tensors);
  checkUnique(order.map((i) => tensors[i]!), set.file);
  const hash = rootOf(
    order.length,
    (k) => tensors[order[k]!]!,
    (k, into, at) => into.set(leaves.bytes.subarray(32 * order[k]!, 32 * order[k]! + 32), at),
  );
  return {
    algorithm: V1,
    hash,
    format: set.format,
    // safeHash wants the root only: no hex leaf per tensor.
    tensors: withEntries
      ? order.map((i) => {
        const t = tensors[i]!;
        const shard = shardOf(t);
        return {
          name: t.name,
          dtype: t.dtype,
          shape: [...t.shape],
          sha256: toHex(leaves.get(i)),
          ...(shard !== undefined ? { file: shard } : {}),
        };
      })
      : [],
    ...(set.files !== undefined ? { files: set.files } : {}),
  };
}

function isAsciiText(s: string): boolean {
  for (let i = 0; i < s.length; i++) if (s.charCodeAt(i) > 0x7f) return false;
  return true;
}

/** Indices of `items` sorted by name in code-point order. */
function sortedByName(items: readonly { name: string }[]): number[] {
  const order = items.map((_, i) => i);
  // Without surrogates, UTF-16 order is code-point order: the fast comparison.
  const plain = items.every((t) => !/[\uD800-\uDFFF]/.test(t.name));
  return plain
    ? order.sort((a, b) => {
      const x = items[a]!.name;
      const y = items[b]!.name;
      return x < y ? -1 : x > y ? 1 : 0;
    })
    : order.sort((a, b) => compareCodePoints(items[a]!.name, items[b]!.name));
}

/**
 * The `safemodels-v1` root over `n` tensors already sorted by name and
 * checked unique, the i-th given by `tensor(i)` and its leaf written by
 * `leaf(i, into, at)`: the whole preimage is laid out in one buffer and
 * hashed once, with no object per tensor.
 */
function rootOf(
  n: number,
  tensor: (i: number) => { name: string; dtype: string; shape: readonly number[] },
  leaf: (i: number, into: Uint8Array, at: number) => void,
): string {
  const enc = new TextEncoder();
  const prefix = enc.encode(`${V1}\n`);
  // Non-ASCII names (rare) are encoded once; ASCII ones are copied as they are.
  const encoded = new Map<number, Uint8Array>();
  let size = prefix.byteLength + 8;
  for (let i = 0; i < n; i++) {
    const t = tensor(i);
    let nameBytes = t.name.length;
    if (!isAsciiText(t.name)) {
      const e = enc.encode(t.name);
      encoded.set(i, e);
      nameBytes = e.byteLength;
    }
    size += 4 + nameBytes + 1 + t.dtype.length + 4 + 8 * t.shape.length + 32;
  }
  const buf = new Uint8Array(size);
  const view = new DataView(buf.buffer);
  buf.set(prefix, 0);
  let at = prefix.byteLength;
  view.setBigUint64(at, BigInt(n), true);
  at += 8;
  for (let i = 0; i < n; i++) {
    const t = tensor(i);
    const e = encoded.get(i);
    if (e === undefined) {
      view.setUint32(at, t.name.length, true);
      at += 4;
      for (let c = 0; c < t.name.length; c++) buf[at++] = t.name.charCodeAt(c);
    } else {
      view.setUint32(at, e.byteLength, true);
      buf.set(e, at + 4);
      at += 4 + e.byteLength;
    }
    buf[at++] = t.dtype.length;
    for (let c = 0; c < t.dtype.length; c++) buf[at++] = t.dtype.charCodeAt(c);
    view.setUint32(at, t.shape.length, true);
    at += 4;
    for (const d of t.shape) {
      // Dimensions are safe integers: two 32-bit halves, no BigInt per value.
      view.setUint32(at, d % 0x1_0000_0000, true);
      view.setUint32(at + 4, Math.floor(d / 0x1_0000_0000), true);
      at += 8;
    }
    leaf(i, buf, at);
    at += 32;
  }
  return `${V1}:${toHex(sha256Sync(buf))}`;
}

/**
 * Recomputes a `"safemodels-v1"` root hash from its leaves (for instance a
 * manifest received with a signature), without reading any tensor bytes.
 *
 * Spec: tensors sorted by name in code-point order; the root is the SHA-256 of
 * `"safemodels-v1\n"`, the tensor count (u64 LE), then per tensor: the
 * UTF-8 name's length (u32 LE) and bytes, the dtype's length (u8) and ASCII
 * bytes, the rank (u32 LE), each dimension (u64 LE), and the 32-byte SHA-256
 * of the tensor's C-order little-endian bytes. The result is
 * `"safemodels-v1:"` followed by the root in lower-case hex.
 *
 * @param tensors The leaves, in any order.
 * @param file A name for error messages.
 * @returns The root hash string.
 * @throws {ModelFormatError} When two tensors share a name.
 * @throws {TypeError} When a leaf is not 64 hex digits.
 *
 * @example Recomputing a hash from a manifest
 * ```ts
 * import { hashFromManifest } from "@safemodels/safemodels/hash";
 * import assert from "node:assert/strict";
 *
 * const hash = await hashFromManifest([
 *   { name: "w", dtype: "U8", shape: [0], sha256: "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855" },
 * ]);
 * assert.match(hash, /^safemodels-v1:/);
 * ```
 */
export async function hashFromManifest(
  tensors: readonly ManifestTensor[],
  file = "<manifest>",
): Promise<string> {
  await sha256Ready();
  const order = sortedByName(tensors);
  const sorted = order.map((i) => tensors[i]!);
  checkUnique(sorted, file);
  const leaves = sorted.map((t) => {
    const leaf = /^[0-9a-f]{64}$/.test(t.sha256) ? fromHex(t.sha256, 32) : undefined;
    if (leaf === undefined) {
      throw new TypeError(
        `Cannot hash manifest: tensor "${t.name}" has sha256 ${
          JSON.stringify(t.sha256)
        }, expected 64 lower-case hex digits`,
      );
    }
    return leaf;
  });
  return rootOf(sorted.length, (i) => sorted[i]!, (i, into, at) => into.set(leaves[i]!, at));
}

/**
 * Refuses two tensors with one name, and a name that is not well-formed
 * UTF-16 (a lone surrogate): UTF-8 has no encoding of it, so it would be
 * hashed as U+FFFD, the name of another tensor.
 */
function checkUnique(sorted: readonly { name: string }[], file: string): void {
  for (const t of sorted) {
    if (!t.name.isWellFormed()) {
      throw new ModelFormatError(
        "bad-header",
        `Cannot hash model: the tensor name ${
          JSON.stringify(t.name)
        } holds a lone surrogate, which UTF-8 cannot encode (it would hash as U+FFFD, like another name)`,
        { file },
      );
    }
  }
  for (let i = 1; i < sorted.length; i++) {
    if (sorted[i]!.name === sorted[i - 1]!.name) {
      throw new ModelFormatError(
        "bad-header",
        `Cannot hash model: two tensors are named "${sorted[i]!.name}"`,
        { file },
      );
    }
  }
}

function total(tensors: readonly Tensor[]): number {
  return tensors.reduce((n, t) => n + t.byteLength, 0);
}

function progressReporter(
  options: SafeHashOptions,
  totalBytes: number | undefined,
): (n: number) => void {
  const report = options.onProgress;
  if (!report) return () => {};
  let bytes = 0;
  return (n) => {
    bytes += n;
    report({ bytes, totalBytes });
  };
}

/**
 * For stream and response inputs holding safetensors, a front-to-back reader
 * (no buffering); streams of other formats are buffered for random access.
 */
async function openStreamed(
  input: ModelInput,
  options: SafeHashOptions,
): Promise<TensorSet | OpenedModel | undefined> {
  if (isPathLike(input) || input instanceof Uint8Array) return undefined;
  if (typeof Blob !== "undefined" && input instanceof Blob) return undefined;
  const name = inputName(input);
  const stream = typeof Response !== "undefined" && input instanceof Response
    ? responseBody(input)
    : input as ReadableStream<Uint8Array>;
  const reader = new StreamReader(stream, name);
  const head = await reader.peek(9);
  if (
    options.format === "safetensors" ||
    (options.format === undefined && detectFormat(head) === "safetensors")
  ) {
    const { tensors } = await readSafetensorsStream(reader);
    return { file: name, format: "safetensors", tensors };
  }
  const bytes = await reader.readRest();
  return await openModelSource(bytesSource(bytes, name), bytes, options);
}
