// The statement safemodels signs for one model file (embedded signatures):
// an in-toto Statement v1 whose subject is the tensor hash and whose
// predicate names the model and version, so a signature cannot be moved to
// another model (substitution) or version (rollback) unnoticed.
import { InvalidSignature } from "./errors.ts";
import type { TrustPolicy } from "./policy.ts";
import type { VerifiedSigner } from "./types.ts";
import type { SignedTextVerifier } from "./_signed_text.ts";

/** In-toto payload type for DSSE. */
export const IN_TOTO_PAYLOAD_TYPE = "application/vnd.in-toto+json";
/** Predicate type of safemodels' embedded signatures. */
export const EMBEDDED_PREDICATE_TYPE = "https://github.com/safemodels/safemodels/embedded/v1";

/** What an embedded signature binds. */
export interface ModelClaim {
  name: string;
  version: string;
  /** The full hash string, e.g. `safemodels-v1:<hex>`. */
  hash: string;
}

function subjectDigest(hash: string): Record<string, string> {
  // The v1 tensor root and file digests are SHA-256; seed hashes are carried
  // in the predicate only.
  const m = /^(?:safemodels-v1|sha256):([0-9a-f]{64})$/.exec(hash);
  return m ? { sha256: m[1]! } : {};
}

/** The statement bytes for a claim (stable key order). */
export function claimStatement(claim: ModelClaim): Uint8Array {
  return new TextEncoder().encode(JSON.stringify({
    _type: "https://in-toto.io/Statement/v1",
    subject: [{ name: claim.name, digest: subjectDigest(claim.hash) }],
    predicateType: EMBEDDED_PREDICATE_TYPE,
    predicate: { name: claim.name, version: claim.version, hash: claim.hash },
  }));
}

/** Parses a signed statement back into its claim, refusing anything else. */
export function parseClaim(payload: Uint8Array, file?: string): ModelClaim {
  const opts = file === undefined ? {} : { file };
  let s: {
    _type?: unknown;
    predicateType?: unknown;
    subject?: { name?: unknown; digest?: Record<string, unknown> }[];
    predicate?: { name?: unknown; version?: unknown; hash?: unknown };
  };
  try {
    s = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(payload));
  } catch (cause) {
    throw new InvalidSignature("bad-statement", "Cannot read signed statement: it is not JSON", {
      ...opts,
      cause,
    });
  }
  const p = s?.predicate;
  if (
    s?._type !== "https://in-toto.io/Statement/v1" || s.predicateType !== EMBEDDED_PREDICATE_TYPE ||
    typeof p?.name !== "string" || typeof p.version !== "string" || typeof p.hash !== "string"
  ) {
    throw new InvalidSignature(
      "bad-statement",
      `Cannot read signed statement: expected an in-toto statement of type ${EMBEDDED_PREDICATE_TYPE} with name, version and hash`,
      opts,
    );
  }
  const claim = { name: p.name, version: p.version, hash: p.hash };
  const subject = s.subject?.[0];
  const want = subjectDigest(claim.hash);
  if (
    s.subject?.length !== 1 || subject?.name !== claim.name ||
    JSON.stringify(subject.digest ?? {}) !== JSON.stringify(want)
  ) {
    throw new InvalidSignature(
      "bad-statement",
      "Cannot read signed statement: its subject does not match its predicate",
      opts,
    );
  }
  return claim;
}

/** What the caller expects a signature to be for. */
export interface ClaimExpectation {
  name?: string | undefined;
  version?: string | undefined;
}

/**
 * Verifies an embedded signature (the bundle's JSON text) against the policy
 * and returns its claim, refusing another model name (substitution) or
 * version (rollback) than the caller expects. Comparing the claim's hash with
 * the content is left to the caller, who knows what the hash covers.
 */
export async function verifyClaim(
  verifySigned: SignedTextVerifier,
  bundleText: string,
  policy: TrustPolicy,
  file: string,
  expect: ClaimExpectation,
): Promise<{ claim: ModelClaim; signer: VerifiedSigner }> {
  const { payload, signer } = await verifySigned(bundleText, policy, IN_TOTO_PAYLOAD_TYPE, {
    file,
  });
  const claim = parseClaim(payload, file);
  if (expect.name !== undefined && expect.name !== claim.name) {
    throw new InvalidSignature(
      "wrong-model",
      `Cannot verify: expected model "${expect.name}", the signature is for "${claim.name}"`,
      { file },
    );
  }
  if (expect.version !== undefined && expect.version !== claim.version) {
    throw new InvalidSignature(
      "wrong-version",
      `Cannot verify: expected version "${expect.version}" of ${claim.name}, the signature is for "${claim.version}"`,
      { file },
    );
  }
  return { claim, signer };
}
