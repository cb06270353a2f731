// The statement safemodels signs for one model file (embedded signatures):
// an in-toto Statement v1 whose subject is the tensor hash and whose
// predicate names the model and version, so a signature cannot be moved to
// another model (substitution) or version (rollback) unnoticed.
import { HashMissing, VerificationError } from "./errors.ts";

/** The `__metadata__` keys embedded safetensors signatures use. */
export const METADATA_KEYS = {
  name: "safemodels.name",
  version: "safemodels.version",
  hash: "safemodels.hash",
  signature: "safemodels.signature",
} as const;

/** The tensor-hash algorithm a hash string was made with. */
export function hashAlgorithmOf(hash: string): "safemodels-v1" | "seed-xxh64" | "seed-blake2b160" {
  if (hash.startsWith("safemodels-v1:")) return "safemodels-v1";
  if (/^[0-9]+$/.test(hash)) return "seed-xxh64";
  if (/^[0-9a-f]{40}$/.test(hash)) return "seed-blake2b160";
  throw new HashMissing(
    `Cannot check hash: ${JSON.stringify(hash)} is not a hash safemodels knows`,
  );
}

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
    s = JSON.parse(new TextDecoder("utf-8", { fatal: true, ignoreBOM: true }).decode(payload));
  } catch (cause) {
    throw new VerificationError("bad-statement", "Cannot read signed statement: it is not JSON", {
      ...opts,
      cause,
    });
  }
  const p = s?.predicate;
  if (
    s?._type !== "https://in-toto.io/Statement/v1" || s.predicateType !== EMBEDDED_PREDICATE_TYPE ||
    typeof p?.name !== "string" || typeof p.version !== "string" || typeof p.hash !== "string"
  ) {
    throw new VerificationError(
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
    throw new VerificationError(
      "bad-statement",
      "Cannot read signed statement: its subject does not match its predicate",
      opts,
    );
  }
  return claim;
}
