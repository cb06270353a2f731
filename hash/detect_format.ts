import type { ModelFormat } from "./types.ts";

/**
 * How many leading bytes {@linkcode detectFormat} looks at.
 *
 * @example Detecting from a file head
 * ```ts
 * import { DETECT_BYTES, detectFormat } from "@safemodels/safemodels/hash";
 * import assert from "node:assert/strict";
 *
 * const head = new Uint8Array(DETECT_BYTES);
 * assert.equal(detectFormat(head), undefined);
 * ```
 */
export const DETECT_BYTES = 16;

const LEGACY_TORCH = [
  // PROTO 2, LONG1 of 10 bytes: torch's legacy magic number 0x1950a86a20f9469cfc6c
  0x80,
  0x02,
  0x8a,
  0x0a,
  0x6c,
  0xfc,
  0x9c,
  0x46,
  0xf9,
  0x20,
  0x6a,
  0xa8,
  0x50,
  0x19,
];

function startsWith(bytes: Uint8Array, magic: ArrayLike<number>): boolean {
  if (bytes.byteLength < magic.length) return false;
  for (let i = 0; i < magic.length; i++) {
    if (bytes[i] !== magic[i]) return false;
  }
  return true;
}

/**
 * Guesses a model file's format from its first bytes (its magic numbers), never
 * from its name. Zip archives are reported as `"zip"`: whether one is a PyTorch
 * checkpoint or an `.npz` is decided from its entries.
 *
 * @param head At least the first {@linkcode DETECT_BYTES} bytes of the file (fewer if the file is shorter).
 * @returns The format, `"zip"`, or `undefined` when nothing matches.
 *
 * @example Detecting safetensors
 * ```ts
 * import { detectFormat } from "@safemodels/safemodels/hash";
 * import assert from "node:assert/strict";
 *
 * const head = new Uint8Array([2, 0, 0, 0, 0, 0, 0, 0, 0x7b, 0x7d]); // header "{}"
 * assert.equal(detectFormat(head), "safetensors");
 * assert.equal(detectFormat(new Uint8Array([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59])), "npy");
 * ```
 */
export function detectFormat(
  head: Uint8Array,
): ModelFormat | "zip" | undefined {
  if (startsWith(head, [0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59])) return "npy"; // \x93NUMPY
  if (
    startsWith(head, [0x50, 0x4b, 0x03, 0x04]) ||
    startsWith(head, [0x50, 0x4b, 0x05, 0x06])
  ) return "zip";
  if (startsWith(head, LEGACY_TORCH)) return "pytorch-legacy";
  // safetensors: u64 header length, then a JSON object. The length itself is
  // checked by the reader, which gives a better error than "unknown format".
  if (head.byteLength >= 9 && head[8] === 0x7b) return "safetensors";
  // ONNX ModelProto: field 1 (ir_version, varint) comes first in every
  // exporter's output, with a small version number.
  if (
    head.byteLength >= 3 && head[0] === 0x08 && head[1]! >= 1 &&
    head[1]! <= 0x20
  ) {
    return "onnx";
  }
  return undefined;
}
