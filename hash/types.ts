/**
 * Types shared by every model-file reader: one format-independent view of a
 * model as a sequence of named tensors.
 *
 * @module
 */

/**
 * A tensor element type, spelled as in the safetensors header (`F32`, `BF16`,
 * `I64`, `BOOL`, …). Every reader maps its own type codes onto these names, so
 * the same weights get the same dtype whatever file they came from.
 *
 * @example Checking a dtype
 * ```ts
 * import type { DType } from "@safemodels/safemodels/hash";
 * import { DTYPE_SIZES } from "@safemodels/safemodels/hash";
 * import assert from "node:assert/strict";
 *
 * const dtype: DType = "BF16";
 * assert.equal(DTYPE_SIZES[dtype], 2);
 * ```
 */
export type DType =
  | "F64"
  | "F32"
  | "F16"
  | "BF16"
  | "F8_E4M3"
  | "F8_E5M2"
  | "F8_E4M3FNUZ"
  | "F8_E5M2FNUZ"
  | "F8_E8M0"
  | "I64"
  | "I32"
  | "I16"
  | "I8"
  | "U64"
  | "U32"
  | "U16"
  | "U8"
  | "BOOL"
  | "C64"
  | "C128";

/**
 * Size in bytes of one element of each {@linkcode DType}.
 *
 * @example Bytes of a tensor
 * ```ts
 * import { DTYPE_SIZES } from "@safemodels/safemodels/hash";
 * import assert from "node:assert/strict";
 *
 * assert.equal(DTYPE_SIZES.F32 * 10 * 4, 160);
 * ```
 */
export const DTYPE_SIZES: Readonly<Record<DType, number>> = {
  F64: 8,
  F32: 4,
  F16: 2,
  BF16: 2,
  F8_E4M3: 1,
  F8_E5M2: 1,
  F8_E4M3FNUZ: 1,
  F8_E5M2FNUZ: 1,
  F8_E8M0: 1,
  I64: 8,
  I32: 4,
  I16: 2,
  I8: 1,
  U64: 8,
  U32: 4,
  U16: 2,
  U8: 1,
  BOOL: 1,
  C64: 8,
  C128: 16,
};

/**
 * The model file formats that safemodels reads.
 *
 * @example Forcing a format
 * ```ts ignore
 * import { type ModelFormat, safeHash } from "@safemodels/safemodels/hash";
 *
 * const format: ModelFormat = "npz";
 * const hash = (file: string) => safeHash(file, { format });
 * ```
 */
export type ModelFormat =
  | "safetensors"
  | "pytorch-zip"
  | "pytorch-legacy"
  | "npy"
  | "npz"
  | "onnx";

/**
 * What is known about a tensor before its bytes are read.
 *
 * @example Describing a tensor
 * ```ts
 * import type { TensorInfo } from "@safemodels/safemodels/hash";
 * import assert from "node:assert/strict";
 *
 * const info: TensorInfo = { name: "w", dtype: "F16", shape: [3, 5], byteLength: 30 };
 * assert.equal(info.shape.reduce((a, b) => a * b) * 2, info.byteLength);
 * ```
 */
export interface TensorInfo {
  /** The tensor's name (state-dict key, npz member, ONNX initializer name). */
  name: string;
  /** Element type. */
  dtype: DType;
  /** Shape; `[]` for a 0-d scalar. */
  shape: number[];
  /** Byte length of the tensor in logical C order (elements × element size). */
  byteLength: number;
}

/**
 * A tensor whose bytes can be read, in logical C order and little-endian.
 *
 * @example Reading a tensor's bytes
 * ```ts ignore
 * import { openModel, type Tensor } from "@safemodels/safemodels/hash";
 *
 * async function bytesOf(t: Tensor): Promise<number> {
 *   let n = 0;
 *   for await (const chunk of t.chunks()) n += chunk.byteLength;
 *   return n;
 * }
 * await using model = await openModel("model.safetensors");
 * for (const t of model.tensors) console.log(t.name, await bytesOf(t));
 * ```
 */
export interface Tensor extends TensorInfo {
  /**
   * Streams the tensor's bytes in logical C order (row-major, little-endian),
   * whatever the strides or byte order in the file. The chunks together are
   * exactly {@linkcode TensorInfo.byteLength} bytes long. Chunks stay valid
   * after the next one is requested (readers never reuse a yielded buffer), so
   * a consumer may read ahead or hand a chunk to a worker.
   */
  chunks(): AsyncIterable<Uint8Array>;
}

/**
 * The inputs every safemodels function accepts: a path or `file:` URL (Deno
 * and Node only), bytes, a `Blob`/`File`, a byte stream or a fetch `Response`.
 *
 * @example Hashing a download as it streams
 * ```ts ignore
 * import { type ModelInput, safeHash } from "@safemodels/safemodels/hash";
 *
 * const input: ModelInput = await fetch("https://example.com/model.safetensors");
 * console.log(await safeHash(input));
 * ```
 */
export type ModelInput =
  | string
  | URL
  | Uint8Array
  | Blob
  | ReadableStream<Uint8Array>
  | Response;
