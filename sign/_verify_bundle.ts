/**
 * Offline verification of Sigstore bundles holding a DSSE envelope, for the
 * three kinds of signer `model_signing` writes: a public key, an X.509
 * certificate chain to a private CA, and keyless (Fulcio certificate plus
 * Rekor entry).
 *
 * @module
 */

import { fulcioExtensions } from "./_fulcio.ts";
import nodeCrypto from "node:crypto";
import { bundleFromJSON } from "@sigstore/bundle";
import { toSignedEntity, VerificationError, Verifier } from "@sigstore/verify";
import type { TrustMaterial as SigstoreTrustMaterial } from "@sigstore/verify";
import type { InvalidSignatureCode } from "./errors.ts";
import type { TrustMaterial } from "./types.ts";
import { decodeBase64 } from "./_dsse.ts";
import {
  checkDsse,
  errorText,
  type Fail,
  isRecord,
  sameBytes,
  type VerifiedBundle,
} from "./_verify_key.ts";
import { type KeylessVerifier, verifyBundleWith } from "./_verify_cert.ts";
export type { VerifiedBundle } from "./_verify_key.ts";
import { publicGoodTrustedRoot, toSigstoreTrustMaterial } from "./_trusted_root.ts";
import { type Certificate, derString, sha256Hex, toPem } from "./_x509.ts";

/**
 * Verifies a Sigstore bundle (parsed JSON) against `trust` and returns the
 * DSSE payload (uninterpreted) and the verified signer. Every failure is an
 * `InvalidSignature` whose code says what failed.
 */
export function verifyBundle(
  bundle: unknown,
  trust: TrustMaterial,
  file?: string,
): Promise<VerifiedBundle> {
  return verifyBundleWith(verifyKeyless, bundle, trust, file);
}

// --- keyless ----------------------------------------------------------------

const FULCIO_ISSUER_V2 = "1.3.6.1.4.1.57264.1.8";
const FULCIO_ISSUER_V1 = "1.3.6.1.4.1.57264.1.1";

function fulcioIssuer(cert: Certificate): string | undefined {
  const v2 = cert.extensions.get(FULCIO_ISSUER_V2);
  if (v2 !== undefined) return derString(v2);
  const v1 = cert.extensions.get(FULCIO_ISSUER_V1);
  return v1 === undefined ? undefined : new TextDecoder().decode(v1);
}

/** Node picks SHA-256 for ECDSA when no digest is given; Deno throws instead. */
function curveDigest(key: unknown): string | undefined {
  if (!(key instanceof nodeCrypto.KeyObject) || key.asymmetricKeyType !== "ec") return undefined;
  switch (key.asymmetricKeyDetails?.namedCurve) {
    case "secp384r1":
      return "sha384";
    case "secp521r1":
      return "sha512";
    default:
      return "sha256";
  }
}

/**
 * Runs `fn` (synchronous) with `node:crypto.verify` choosing the ECDSA digest
 * from the curve when the caller passes none, as `@sigstore/verify` does for
 * Rekor's SET and checkpoint signatures; in Deno that call otherwise throws
 * and the library reports every EC signature as invalid. Being synchronous,
 * no other code can observe the swap, and it is undone before returning.
 */
function withCurveDigests<T>(fn: () => T): T {
  const holder = nodeCrypto as unknown as { verify: (...args: unknown[]) => unknown };
  const original = holder.verify;
  holder.verify = (algorithm: unknown, data: unknown, key: unknown, ...rest: unknown[]) =>
    original.call(nodeCrypto, algorithm ?? curveDigest(key) ?? algorithm, data, key, ...rest);
  try {
    return fn();
  } finally {
    holder.verify = original;
  }
}

const CODE_FOR: Record<string, InvalidSignatureCode> = {
  CERTIFICATE_ERROR: "untrusted-certificate",
  UNTRUSTED_SIGNER_ERROR: "untrusted-certificate",
  PUBLIC_KEY_ERROR: "untrusted-key",
  SIGNATURE_ERROR: "bad-signature",
  TIMESTAMP_ERROR: "bad-tlog",
};

function causeChain(e: unknown): string {
  const parts: string[] = [];
  for (let c = e, i = 0; c instanceof Error && i < 4; c = c.cause, i++) {
    parts.push(c.message);
  }
  return parts.join(": ");
}

/**
 * `@sigstore/verify` checks inclusion proofs against the signed checkpoint
 * and ignores the proof's own `rootHash`/`treeSize`; refuse entries where
 * they disagree rather than carry unauthenticated, contradicting data.
 */
function checkProofsMatchCheckpoints(bundle: Record<string, unknown>, fail: Fail): void {
  const vm = bundle.verificationMaterial as Record<string, unknown>;
  for (const [i, entry] of (vm.tlogEntries as Record<string, unknown>[] ?? []).entries()) {
    const proof = entry.inclusionProof;
    if (!isRecord(proof) || !isRecord(proof.checkpoint)) continue;
    const envelope = proof.checkpoint.envelope;
    const lines = typeof envelope === "string" ? envelope.split("\n") : [];
    const [size, rootHash] = [lines[1], lines[2]];
    const mine = typeof proof.rootHash === "string" ? decodeBase64(proof.rootHash) : undefined;
    const theirs = rootHash === undefined ? undefined : decodeBase64(rootHash);
    if (
      size === undefined || String(proof.treeSize) !== size || mine === undefined ||
      theirs === undefined || !sameBytes(mine, theirs)
    ) {
      fail(
        "bad-tlog",
        `Cannot verify transparency log entry ${i}: its inclusion proof (tree size ${
          String(proof.treeSize)
        }, root ${String(proof.rootHash)}) does not match its checkpoint (tree size ${
          size ?? "missing"
        }, root ${rootHash ?? "missing"})`,
      );
    }
  }
}

const verifyKeyless: KeylessVerifier = async (bundle, leaf, envelope, trust, fail, bad) => {
  let parsed: ReturnType<typeof bundleFromJSON>;
  let entity: ReturnType<typeof toSignedEntity>;
  try {
    parsed = bundleFromJSON(bundle);
    entity = toSignedEntity(parsed);
  } catch (e) {
    return bad(causeChain(e), e);
  }
  // Our own WebCrypto check first, so a tampered payload or signature reads
  // as such rather than as a tlog body mismatch.
  const names = [...leaf.emails, ...leaf.uris];
  const label = names.length > 0 ? `for ${names.join(", ")}` : leaf.subjectName;
  await checkDsse(leaf.spki, envelope, fail, `the certificate ${label}`);

  checkProofsMatchCheckpoints(bundle, fail);

  let material: SigstoreTrustMaterial;
  try {
    material = toSigstoreTrustMaterial(trust.trustedRoot ?? await publicGoodTrustedRoot());
  } catch (e) {
    return fail("untrusted-certificate", `Cannot read trusted root: ${errorText(e)}`, e);
  }
  // What the trust and the bundle hold, for failure messages.
  const context = () => {
    const logs = entity.tlogEntries.map((t) =>
      `log ${t.logId?.keyId?.toString("base64") ?? "?"} at ${
        new Date(Number(t.integratedTime) * 1000).toISOString()
      }`
    );
    return `certificate issued by ${leaf.issuerName}; entries: ${
      logs.length ? logs.join(", ") : "none"
    }; trusted root: ${material.certificateAuthorities.length} CAs, ${material.tlogs.length} logs`;
  };
  try {
    withCurveDigests(() => new Verifier(material).verify(entity));
  } catch (e) {
    if (e instanceof VerificationError) {
      const code = CODE_FOR[e.code] ?? (e.code.startsWith("TLOG") ? "bad-tlog" : "bad-bundle");
      const what = code === "untrusted-certificate"
        ? "certificate chain to the trusted root's Fulcio CAs"
        : code === "bad-tlog"
        ? "transparency log entry"
        : "keyless signature";
      return fail(code, `Cannot verify ${what}: ${e.code}: ${causeChain(e)} (${context()})`, e);
    }
    return bad(causeChain(e), e);
  }

  // Timestamps the Verifier authenticated: SET-backed integrated times, TSA times.
  const times: Date[] = [];
  for (const t of entity.timestamps) {
    if (t.$case === "transparency-log" && t.tlogEntry.inclusionPromise !== undefined) {
      times.push(new Date(Number(t.tlogEntry.integratedTime) * 1000));
    } else if (t.$case === "timestamp-authority") {
      times.push(t.timestamp.signingTime);
    }
  }
  times.sort((a, b) => a.getTime() - b.getTime());
  return {
    payload: envelope.payload,
    payloadType: envelope.payloadType,
    signer: {
      kind: "keyless",
      identities: [...leaf.emails, ...leaf.uris],
      issuer: fulcioIssuer(leaf),
      keyFingerprint: await sha256Hex(leaf.spki),
      pem: toPem("CERTIFICATE", leaf.der),
      signedAt: times[0],
      extensions: fulcioExtensions(leaf),
    },
  };
};
