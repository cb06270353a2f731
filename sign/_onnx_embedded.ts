// Embedded ONNX signatures: the signature entry in `metadata_props`, the
// digest of every other byte, and verification with a given bundle verifier.
// No node: modules (browsers pass the WebCrypto key verifier);
// onnx_signature.ts adds signing and the full verifier.
import { openSource, rangeChunks } from "../hash/_source.ts";
import { readOnnxMetadataProps } from "../hash/_onnx.ts";
import { createSha256, toHex } from "../hash/_digest.ts";
import type { ByteSource } from "../hash/_source.ts";
import { HashMismatch, InvalidSignature, SignatureMissing } from "./errors.ts";
import { type Issuer, resolvePolicy, type TrustPolicy } from "./policy.ts";
import { verifyClaim } from "./_statement.ts";
import type { SignedTextVerifier } from "./_signed_text.ts";
import type { VerifiedSigner } from "./types.ts";

/** The `metadata_props` key that holds an embedded signature in an ONNX file. */
export const ONNX_SIGNATURE_KEY = "safemodels.signature";

/** Options for {@linkcode verifyOnnx}. */
export interface VerifyOnnxOptions {
  /** The trust policy. @default {the policy set with init()} */
  policy?: TrustPolicy | Issuer | Issuer[];
  /** The model name the caller expects. */
  name?: string;
  /** The version the caller expects. */
  version?: string;
}

/** What {@linkcode verifyOnnx} established. */
export interface VerifiedOnnx {
  /** Signed model name. */
  name: string;
  /** Signed version. */
  version: string;
  /** `sha256:<hex>` of the file without its signature entry. */
  hash: string;
  /** Who signed. */
  signer: VerifiedSigner;
}

type Range = { offset: number; length: number };

/** The source's bytes in blocks, leaving out the given ranges. */
export async function* chunksWithout(
  source: ByteSource,
  skip: Range[],
): AsyncGenerator<Uint8Array> {
  let at = 0;
  for (const r of [...skip].sort((x, y) => x.offset - y.offset)) {
    yield* rangeChunks(source, at, r.offset - at);
    at = r.offset + r.length;
  }
  yield* rangeChunks(source, at, source.size - at);
}

/** SHA-256 of the source's bytes, skipping the given ranges. */
async function digestWithout(source: ByteSource, skip: Range[]): Promise<string> {
  const h = await createSha256();
  for await (const chunk of chunksWithout(source, skip)) h.update(chunk);
  return `sha256:${toHex(h.digest())}`;
}

export async function signatureEntries(source: ByteSource) {
  return (await readOnnxMetadataProps(source)).filter((p) => p.key === ONNX_SIGNATURE_KEY);
}

/** {@linkcode verifyOnnx} with a given bundle verifier. */
export async function verifyOnnxWith(
  verifySigned: SignedTextVerifier,
  input: string | Uint8Array | Blob,
  options: VerifyOnnxOptions = {},
): Promise<VerifiedOnnx> {
  const policy = resolvePolicy(options.policy);
  const source = await openSource(input);
  const file = source.name;
  try {
    const entries = await signatureEntries(source);
    if (entries.length === 0) {
      throw new SignatureMissing(`Cannot verify: no "${ONNX_SIGNATURE_KEY}" in metadata_props`, {
        file,
      });
    }
    if (entries.length > 1) {
      throw new InvalidSignature(
        "bad-bundle",
        `Cannot verify: ${entries.length} "${ONNX_SIGNATURE_KEY}" entries`,
        {
          file,
        },
      );
    }
    const { claim, signer } = await verifyClaim(
      verifySigned,
      entries[0]!.value,
      policy,
      file,
      options,
    );
    const hash = await digestWithout(source, entries);
    if (claim.hash !== hash) throw new HashMismatch(claim.hash, hash, { file });
    return { name: claim.name, version: claim.version, hash, signer };
  } finally {
    await source.close();
  }
}
