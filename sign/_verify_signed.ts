// verifySignedTextWith (_signed_text.ts) with the bundle verifier every
// runtime uses: key, certificate and keyless Sigstore bundles, all with
// WebCrypto (sign/_keyless.ts for keyless). @sigstore/verify stays available
// as `verifyBundle(…, { keyless: "sigstore-js" })` and as the tests' oracle.
import type { TrustPolicy } from "./policy.ts";
import type { VerifiedSigner } from "./types.ts";
import { verifyBundleWith } from "./_verify_cert.ts";
import { verifyKeylessWeb } from "./_keyless.ts";
import { type SignedAt, verifySignedTextWith } from "./_signed_text.ts";

export type { SignedAt } from "./_signed_text.ts";

/** Verifies a bundle's JSON text and returns its payload and signer. */
export function verifySignedText(
  text: string,
  policy: TrustPolicy,
  payloadType: string,
  at: SignedAt,
): Promise<{ payload: Uint8Array; signer: VerifiedSigner }> {
  return verifySignedTextWith(
    (b, t, f) => verifyBundleWith(verifyKeylessWeb, b, t, f),
    text,
    policy,
    payloadType,
    at,
  );
}
