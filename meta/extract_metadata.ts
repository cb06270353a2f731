import {
  type ByteSource,
  isPathLike,
  openSource,
  responseBody,
  StreamReader,
} from "../hash/_source.ts";
import { inputName } from "../hash/_source.ts";
import { parseHeader, parseHeaderLength, readHeader } from "../hash/_safetensors.ts";
import type { ModelInput } from "../hash/types.ts";

/**
 * Reads a safetensors file's `__metadata__` (string keys to string values),
 * reading only the header: the tensor data is never touched, and a stream is
 * cancelled once the header has arrived. The seed project's
 * `extract_metadata`.
 *
 * @param input A path or `file:` URL, bytes, a `Blob`, a byte stream or a `Response`.
 * @returns The metadata; `{}` when the file has none.
 * @throws {ModelFormatError} When the input is not a valid safetensors file
 * (for files and bytes the tensor offsets are checked against the file size too).
 *
 * @example Reading metadata
 * ```ts
 * import { extractMetadata } from "@safemodels/safemodels/meta";
 * import assert from "node:assert/strict";
 *
 * const header = new TextEncoder().encode('{"__metadata__":{"format":"pt"}}');
 * const file = new Uint8Array(8 + header.length);
 * new DataView(file.buffer).setBigUint64(0, BigInt(header.length), true);
 * file.set(header, 8);
 *
 * assert.deepEqual(await extractMetadata(file), { format: "pt" });
 * ```
 */
export async function extractMetadata(
  input: ModelInput,
): Promise<Record<string, string>> {
  if (
    !isPathLike(input) && !(input instanceof Uint8Array) &&
    !(typeof Blob !== "undefined" && input instanceof Blob)
  ) {
    const stream = typeof Response !== "undefined" && input instanceof Response
      ? responseBody(input)
      : input as ReadableStream<Uint8Array>;
    const reader = new StreamReader(stream, inputName(input));
    try {
      const n = parseHeaderLength(await reader.readExact(8), reader.name);
      return parseHeader(await reader.readExact(n), reader.name).metadata ?? {};
    } finally {
      await reader.cancel();
    }
  }
  const source: ByteSource = await openSource(input);
  try {
    return (await readHeader(source)).metadata ?? {};
  } finally {
    await source.close();
  }
}
