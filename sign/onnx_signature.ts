import { trackTempFile, untrackTempFile } from "../hash/_temp_files.ts";
import { openSource } from "../hash/_source.ts";
import { encodeStringEntry } from "../hash/_protobuf.ts";
import { createSha256, toHex } from "../hash/_digest.ts";
import { claimStatement, IN_TOTO_PAYLOAD_TYPE } from "./_statement.ts";
import type { Signer, SigstoreBundle } from "./types.ts";
import { verifySignedText } from "./_verify_signed.ts";
import { type VerifiedOnnx, type VerifyOnnxOptions, verifyOnnxWith } from "./_onnx_embedded.ts";
import { chunksWithout, ONNX_SIGNATURE_KEY, signatureEntries } from "./_findings.ts";

export { ONNX_SIGNATURE_KEY } from "./_findings.ts";

/** ModelProto.metadata_props. */
const METADATA_PROPS = 14;
export type { VerifiedOnnx, VerifyOnnxOptions } from "./_onnx_embedded.ts";

/** Options for {@linkcode signOnnx}. */
export interface SignOnnxOptions {
  /** Who signs. */
  signer: Signer;
  /** The model name in the signed statement. */
  name: string;
  /** The model version in the signed statement. */
  version: string;
}

/**
 * Signs an ONNX file in place: the signature covers every byte of the file
 * (graph and weights) except the signature entry itself, which is appended
 * as a `metadata_props` entry, so onnxruntime and other readers still load
 * the file. Re-signing replaces an earlier signature. The file is replaced
 * atomically. Deno and Node.
 *
 * @param path The `.onnx` file.
 * @param options Signer, name and version.
 * @returns The bundle that was embedded.
 * @throws {ModelFormatError} When the file is not ONNX.
 *
 * @example Signing an ONNX model with a key
 * ```ts ignore
 * import { keySigner, signOnnx } from "@safemodels/safemodels/sign";
 *
 * await signOnnx("model.onnx", { signer: keySigner(await Deno.readTextFile("key.pem")), name: "tiny", version: "1" });
 * ```
 */
export async function signOnnx(path: string, options: SignOnnxOptions): Promise<SigstoreBundle> {
  const fs = await import("node:fs/promises");
  const source = await openSource(path);
  const tmp = `${path}.${crypto.randomUUID().slice(0, 8)}.tmp`;
  try {
    const old = await signatureEntries(source);
    const { mode } = await fs.stat(path);
    const out = await fs.open(tmp, "wx", mode & 0o777);
    trackTempFile(tmp);
    let bundle: SigstoreBundle;
    try {
      // One pass: the file without any old signature entry is hashed as it
      // is copied; the new entry, signed over that digest, goes last.
      const h = await createSha256();
      for await (const chunk of chunksWithout(source, old)) {
        h.update(chunk);
        await out.write(chunk);
      }
      const hash = `sha256:${toHex(h.digest())}`;
      bundle = await options.signer.sign(
        claimStatement({ name: options.name, version: options.version, hash }),
        IN_TOTO_PAYLOAD_TYPE,
      );
      await out.write(
        encodeStringEntry(METADATA_PROPS, ONNX_SIGNATURE_KEY, JSON.stringify(bundle)),
      );
      await out.sync();
    } finally {
      await out.close();
    }
    await fs.rename(tmp, path);
    return bundle;
  } catch (e) {
    await fs.rm(tmp, { force: true });
    throw e;
  } finally {
    untrackTempFile(tmp);
    await source.close();
  }
}

/**
 * Verifies an ONNX file's embedded signature (see {@linkcode signOnnx})
 * against the trust policy: the signer, the digest of every byte outside the
 * signature entry, and the expected name and version.
 *
 * @param input The `.onnx` file (a path, bytes or `Blob`).
 * @param options Policy, expected name and version.
 * @returns What was verified.
 * @throws {SignatureMissing} When the file has no signature entry.
 * @throws {InvalidSignature} When the signature, signer, name or version is wrong.
 * @throws {HashMismatch} When the file changed after signing.
 *
 * @example Verifying before loading
 * ```ts ignore
 * import { verifyOnnx } from "@safemodels/safemodels/sign";
 *
 * const v = await verifyOnnx("model.onnx", { policy: { publicKeys: [await Deno.readTextFile("key.pub.pem")] } });
 * console.log(v.name, v.version);
 * ```
 */
export function verifyOnnx(
  input: string | Uint8Array | Blob,
  options: VerifyOnnxOptions = {},
): Promise<VerifiedOnnx> {
  return verifyOnnxWith(verifySignedText, input, options);
}
