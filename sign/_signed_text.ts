// The steps every signature check shares, whatever was signed and whatever
// checks the bundle: parse the bundle's JSON, verify it against the policy's
// key material, check the signer against the policy's identities, and insist
// on the payload type. No node: modules (browsers pass the verifier of _verify_cert.ts without keyless).
import { VerificationError } from "./errors.ts";
import { checkSigner, type TrustPolicy } from "./policy.ts";
import type { TrustMaterial, VerifiedSigner } from "./types.ts";
import type { VerifiedBundle } from "./_verify_key.ts";

/** Where a signature lives, for messages. */
export interface SignedAt {
  /** The signature file (or the file embedding it). */
  file: string;
  /** The model named in a wrong-signer message. @default {file} */
  model?: string;
}

/** Checks a bundle (parsed JSON) against trust material. */
export type BundleVerifier = (
  bundle: unknown,
  trust: TrustMaterial,
  file?: string,
) => Promise<VerifiedBundle>;

/** Checks a bundle's JSON text: what {@linkcode verifySignedTextWith} does with a fixed verifier. */
export type SignedTextVerifier = (
  text: string,
  policy: TrustPolicy,
  payloadType: string,
  at: SignedAt,
) => Promise<{ payload: Uint8Array; signer: VerifiedSigner }>;

/** Verifies a bundle's JSON text with `verify` and returns its payload and signer. */
export async function verifySignedTextWith(
  verify: BundleVerifier,
  text: string,
  policy: TrustPolicy,
  payloadType: string,
  at: SignedAt,
): Promise<{ payload: Uint8Array; signer: VerifiedSigner }> {
  let bundle: unknown;
  try {
    bundle = JSON.parse(text);
  } catch (cause) {
    throw new VerificationError("bad-bundle", "Cannot verify: the signature is not JSON", {
      file: at.file,
      cause,
    });
  }
  const verified = await verify(bundle, policy, at.file);
  checkSigner(verified.signer, policy, at.model ?? at.file);
  if (verified.payloadType !== payloadType) {
    throw new VerificationError(
      "bad-statement",
      `Cannot verify: expected payload type ${payloadType}, found ${verified.payloadType}`,
      { file: at.file },
    );
  }
  return { payload: verified.payload, signer: verified.signer };
}
