// Embedded ONNX signatures verified with a given bundle verifier: the
// finding (_findings.ts) and the decision (evidence.ts). No node: modules
// (browsers pass the WebCrypto verifier); onnx_signature.ts adds signing and
// the full verifier.
import { openSource } from "../hash/_source.ts";
import { SignatureMissing } from "./errors.ts";
import { decideFile } from "./evidence.ts";
import { type Issuer, resolvePolicy, type TrustPolicy } from "./policy.ts";
import { onnxFinding } from "./_findings.ts";
import type { SignedTextVerifier } from "./_signed_text.ts";
import type { VerifiedSigner } from "./types.ts";

export { ONNX_SIGNATURE_KEY } from "./_findings.ts";

/** Options for {@linkcode verifyOnnx}. */
export interface VerifyOnnxOptions {
  /** The trust policy. @default {the policy set with init()} */
  policy?: TrustPolicy | Issuer | Issuer[];
  /** The model name the caller expects (a signature for another model is refused). */
  name?: string;
  /** The version the caller expects (a signature for another version is refused). */
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
    const embedded = await onnxFinding(source, policy, verifySigned, file);
    if (embedded.$case === "absent") {
      throw new SignatureMissing(`Cannot verify: no "safemodels.signature" in metadata_props`, {
        file,
      });
    }
    const verdict = decideFile({
      model: { name: options.name, version: options.version },
      file,
      oms: { $case: "absent" },
      embedded,
      // Asked to verify a signature: one is required.
      policy: { ...policy, signatures: "required", models: {} },
    });
    if (verdict.$case !== "verified" || embedded.$case !== "verified") {
      throw verdict.$case === "refused" ? verdict.error : new SignatureMissing("unreachable");
    }
    const { claim, signer, actual } = embedded;
    return { name: claim.name, version: claim.version, hash: actual, signer };
  } finally {
    await source.close();
  }
}
