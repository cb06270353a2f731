import type { Issuer, TrustPolicy } from "./policy.ts";
import type { VerifiedSigner } from "./types.ts";
import type { BundleVerifier } from "./_signed_text.ts";
import { verifyBundleUsing } from "./_verify_bundle_core.ts";
import { verifyBundleWith } from "./_verify_cert.ts";
import { verifyKeylessWeb } from "./_keyless.ts";

/** Options for {@linkcode verifyBundle}. */
export interface VerifyBundleOptions {
  /**
   * The payload type the envelope must carry.
   * @default {"application/vnd.in-toto+json"}
   */
  payloadType?: string;
  /**
   * Which keyless verifier checks Sigstore bundles: `"webcrypto"` (ours, in
   * every runtime, what `verifyModel`, the CLI and the guards use) or
   * `"sigstore-js"` (`@sigstore/verify`, Deno and Node, loaded on demand).
   * Key and certificate bundles are checked the same way by both.
   * @default {"webcrypto"}
   */
  keyless?: "webcrypto" | "sigstore-js";
  /** The file the bundle came from, for messages. */
  file?: string;
}

/** What {@linkcode verifyBundle} established. */
export interface VerifiedBundleResult {
  /** Who signed, accepted by the policy. */
  signer: VerifiedSigner;
  /** The signed payload's bytes. */
  payload: Uint8Array;
  /** Its type. */
  payloadType: string;
  /** The payload parsed as JSON (an in-toto statement), or `undefined` if it is not JSON. */
  statement: unknown;
}

/**
 * Verifies a Sigstore bundle holding a DSSE envelope (parsed JSON, or its
 * text) against a trust policy: the signature, the key, certificate chain
 * or keyless material (Fulcio chain, SCTs, Rekor entries, times), then the
 * signer against the policy's keys, roots and identities (Fulcio extensions
 * included). Offline. Deno and Node; the browser entry
 * (`plugins/transformers-web`) exports the same function with the WebCrypto
 * keyless verifier.
 *
 * @param bundle The bundle, parsed or as JSON text.
 * @param policy The trust policy (or accepted keyless signers).
 * @param options Payload type, keyless verifier, file name for messages.
 * @returns The signer, the payload and the statement.
 * @throws {VerificationError} When the bundle does not verify.
 * @throws {PolicyError} When it verifies but the policy does not accept its signer.
 *
 * @example Verifying a model_signing keyless signature
 * ```ts ignore
 * import { Issuer, verifyBundle } from "@safemodels/safemodels/sign";
 *
 * const { signer, statement } = await verifyBundle(
 *   await Deno.readTextFile("model.sig"),
 *   Issuer({ identity: "release@acme.example", issuer: "https://accounts.google.com" }),
 * );
 * console.log(signer.identities, (statement as { subject: unknown[] }).subject);
 * ```
 */
export async function verifyBundle(
  bundle: unknown,
  policy?: TrustPolicy | Issuer | Issuer[],
  options: VerifyBundleOptions = {},
): Promise<VerifiedBundleResult> {
  const verify: BundleVerifier = options.keyless === "sigstore-js"
    ? async (b, t, f) => (await import("./_verify_bundle.ts")).verifyBundle(b, t, f)
    : (b, t, f) => verifyBundleWith(verifyKeylessWeb, b, t, f);
  return await verifyBundleUsing(verify, bundle, policy, options);
}
