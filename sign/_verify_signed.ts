// The steps every signature check shares, whatever was signed: parse the
// bundle's JSON, verify it against the policy's key material, check the
// signer against the policy's identities, and insist on the payload type.
import { InvalidSignature } from "./errors.ts";
import { checkSigner, type TrustPolicy } from "./policy.ts";
import type { VerifiedSigner } from "./types.ts";
import { verifyBundle } from "./_verify_bundle.ts";

/** Where a signature lives, for messages. */
export interface SignedAt {
  /** The signature file (or the file embedding it). */
  file: string;
  /** The model named in a wrong-signer message. @default {file} */
  model?: string;
}

/** Verifies a bundle's JSON text and returns its payload and signer. */
export async function verifySignedText(
  text: string,
  policy: TrustPolicy,
  payloadType: string,
  at: SignedAt,
): Promise<{ payload: Uint8Array; signer: VerifiedSigner }> {
  let bundle: unknown;
  try {
    bundle = JSON.parse(text);
  } catch (cause) {
    throw new InvalidSignature("bad-bundle", "Cannot verify: the signature is not JSON", {
      file: at.file,
      cause,
    });
  }
  const verified = await verifyBundle(bundle, policy, at.file);
  checkSigner(verified.signer, policy, at.model ?? at.file);
  if (verified.payloadType !== payloadType) {
    throw new InvalidSignature(
      "bad-statement",
      `Cannot verify: expected payload type ${payloadType}, found ${verified.payloadType}`,
      { file: at.file },
    );
  }
  return { payload: verified.payload, signer: verified.signer };
}
