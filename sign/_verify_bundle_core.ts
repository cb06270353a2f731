// The steps of verifyBundle with a given bundle verifier (browser-safe: the
// web entry passes the WebCrypto keyless verifier).
import { type Issuer, resolvePolicy, type TrustPolicy } from "./policy.ts";
import { checkSigner } from "./policy.ts";
import { VerificationError } from "./errors.ts";
import type { BundleVerifier } from "./_signed_text.ts";
import type { VerifiedBundleResult, VerifyBundleOptions } from "./verify_bundle.ts";

/** {@linkcode verifyBundle}'s steps with `verify` checking the bundle. */
export async function verifyBundleUsing(
  verify: BundleVerifier,
  bundle: unknown,
  policy: TrustPolicy | Issuer | Issuer[] | undefined,
  options: VerifyBundleOptions,
): Promise<VerifiedBundleResult> {
  const p = resolvePolicy(policy);
  const file = options.file;
  let parsed = bundle;
  if (typeof bundle === "string") {
    try {
      parsed = JSON.parse(bundle);
    } catch (cause) {
      throw new VerificationError("bad-bundle", "Cannot verify: the bundle is not JSON", {
        ...(file === undefined ? {} : { file }),
        cause,
      });
    }
  }
  const verified = await verify(parsed, p, file);
  checkSigner(verified.signer, p, file);
  const want = options.payloadType ?? "application/vnd.in-toto+json";
  if (verified.payloadType !== want) {
    throw new VerificationError(
      "bad-statement",
      `Cannot verify: expected payload type ${want}, found ${verified.payloadType}`,
      file === undefined ? {} : { file },
    );
  }
  let statement: unknown;
  try {
    statement = JSON.parse(
      new TextDecoder("utf-8", { fatal: true, ignoreBOM: true }).decode(verified.payload),
    );
  } catch {
    statement = undefined;
  }
  return {
    signer: verified.signer,
    payload: verified.payload,
    payloadType: verified.payloadType,
    statement,
  };
}
