/**
 * Format-independent model hashing. {@linkcode openModel} reads safetensors,
 * PyTorch (zip and legacy pickle checkpoints, parsed, never executed), NumPy
 * `.npy`/`.npz` and ONNX initializers as one list of tensors in logical C
 * order; {@linkcode safeHash} hashes them so that the same weights give the
 * same hash in every format; {@linkcode fileDigest} digests any file.
 *
 * @example Hashing a model file
 * ```ts ignore
 * import { safeHash } from "@safemodels/safemodels/hash";
 *
 * console.log(await safeHash("model.safetensors")); // safemodels-v1:…
 * console.log(await safeHash("pytorch_model.bin", { algorithm: "seed-xxh64" }));
 * ```
 *
 * @module
 */

export { hashFromManifest, hashManifest, safeHash } from "./safe_hash.ts";
export type {
  HashAlgorithm,
  HashManifest,
  HashProgress,
  ManifestTensor,
  SafeHashOptions,
} from "./safe_hash.ts";
export { openModel } from "./open_model.ts";
export type { OpenedModel, OpenModelOptions } from "./open_model.ts";
export { fileDigest } from "./file_digest.ts";
export type { FileDigestAlgorithm, FileDigestOptions } from "./file_digest.ts";
export { DETECT_BYTES, detectFormat } from "./detect_format.ts";
export { ForbiddenGlobalError, ModelFormatError } from "./errors.ts";
export type { ModelFormatErrorCode, ModelFormatErrorOptions } from "./errors.ts";
export { DTYPE_SIZES } from "./types.ts";
export type { DType, ModelFormat, ModelInput, Tensor, TensorInfo } from "./types.ts";
