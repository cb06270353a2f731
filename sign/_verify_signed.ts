// verifySignedTextWith (_signed_text.ts) with the full bundle verifier: key,
// certificate and keyless Sigstore bundles (needs node:crypto).
import type { TrustPolicy } from "./policy.ts";
import type { VerifiedSigner } from "./types.ts";
import { verifyBundle } from "./_verify_bundle.ts";
import { type SignedAt, verifySignedTextWith } from "./_signed_text.ts";

export type { SignedAt } from "./_signed_text.ts";

/** Verifies a bundle's JSON text and returns its payload and signer. */
export function verifySignedText(
  text: string,
  policy: TrustPolicy,
  payloadType: string,
  at: SignedAt,
): Promise<{ payload: Uint8Array; signer: VerifiedSigner }> {
  return verifySignedTextWith(verifyBundle, text, policy, payloadType, at);
}
