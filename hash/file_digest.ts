import { openSource, recycle, responseBody } from "./_source.ts";
import { rangeChunks } from "./_safetensors.ts";
import { readAhead } from "./_leaves.ts";
import { createBlake2b, createBlake3, createSha256, type Hasher, toHex } from "./_digest.ts";
import type { ModelInput } from "./types.ts";

/**
 * Digest algorithms for whole files.
 *
 * @example BLAKE3 of a file
 * ```ts
 * import { type FileDigestAlgorithm, fileDigest } from "@safemodels/safemodels/hash";
 * import assert from "node:assert/strict";
 *
 * const algorithm: FileDigestAlgorithm = "blake3";
 * assert.equal((await fileDigest(new Uint8Array(), { algorithm })).length, 64);
 * ```
 */
export type FileDigestAlgorithm = "sha256" | "blake2b" | "blake3";

/**
 * Options for {@linkcode fileDigest}.
 *
 * @example Digest with progress
 * ```ts ignore
 * import { fileDigest, type FileDigestOptions } from "@safemodels/safemodels/hash";
 *
 * const options: FileDigestOptions = { algorithm: "sha256", onProgress: (b) => console.log(b) };
 * await fileDigest("model.onnx", options);
 * ```
 */
export interface FileDigestOptions {
  /**
   * The digest algorithm (`blake2b` is BLAKE2b-512, `blake3` 256-bit).
   * @default {"sha256"}
   */
  algorithm?: FileDigestAlgorithm;
  /** Called after each block with the bytes digested so far. */
  onProgress?: (bytes: number) => void;
  /** Stops between blocks. */
  signal?: AbortSignal;
}

/**
 * Digests any file's bytes, streaming in 8 MiB blocks (memory stays flat).
 * SHA-256 uses the runtime's native implementation where there is one.
 *
 * @param input A path or `file:` URL, bytes, a `Blob`, a byte stream or a `Response`.
 * @param options Algorithm, progress and abort.
 * @returns The digest in lower-case hex.
 *
 * @example SHA-256 of some bytes
 * ```ts
 * import { fileDigest } from "@safemodels/safemodels/hash";
 * import assert from "node:assert/strict";
 *
 * assert.equal(
 *   await fileDigest(new TextEncoder().encode("abc")),
 *   "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
 * );
 * ```
 */
export async function fileDigest(
  input: ModelInput,
  options: FileDigestOptions = {},
): Promise<string> {
  const algorithm = options.algorithm ?? "sha256";
  const hasher: Hasher = algorithm === "sha256"
    ? await createSha256()
    : algorithm === "blake2b"
    ? await createBlake2b(512)
    : algorithm === "blake3"
    ? await createBlake3()
    : (() => {
      throw new TypeError(
        `Cannot digest file: unknown algorithm ${
          JSON.stringify(algorithm)
        }, expected "sha256", "blake2b" or "blake3"`,
      );
    })();
  let bytes = 0;
  const consume = async (chunks: AsyncIterable<Uint8Array>) => {
    for await (const chunk of readAhead(chunks)) {
      options.signal?.throwIfAborted();
      hasher.update(chunk);
      bytes += chunk.byteLength;
      // The block goes back to the pool (thousands of small files would
      // otherwise each allocate a fresh 4 MiB block).
      recycle(chunk);
      options.onProgress?.(bytes);
    }
  };
  if (
    typeof ReadableStream !== "undefined" && input instanceof ReadableStream
  ) {
    await consume(input);
  } else if (typeof Response !== "undefined" && input instanceof Response) {
    await consume(responseBody(input));
  } else {
    const source = await openSource(input);
    try {
      await consume(rangeChunks(source, 0, source.size));
    } finally {
      await source.close();
    }
  }
  return toHex(hasher.digest());
}
