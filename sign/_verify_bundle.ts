/**
 * Offline verification of Sigstore bundles holding a DSSE envelope, for the
 * three kinds of signer `model_signing` writes: a public key, an X.509
 * certificate chain to a private CA, and keyless (Fulcio certificate plus
 * Rekor entry).
 *
 * @module
 */

import nodeCrypto from "node:crypto";
import { bundleFromJSON } from "@sigstore/bundle";
import { toSignedEntity, VerificationError, Verifier } from "@sigstore/verify";
import type { TrustMaterial as SigstoreTrustMaterial } from "@sigstore/verify";
import type { InvalidSignatureCode } from "./errors.ts";
import type { TrustMaterial } from "./types.ts";
import { decodeBase64 } from "./_dsse.ts";
import {
  checkDsse,
  describe,
  type Envelope,
  errorText,
  type Fail,
  isRecord,
  readBundle,
  sameBytes,
  type VerifiedBundle,
  verifyKey,
} from "./_verify_key.ts";
export type { VerifiedBundle } from "./_verify_key.ts";
import { publicGoodTrustedRoot, toSigstoreTrustMaterial } from "./_trusted_root.ts";
import {
  type Certificate,
  certSignatureScheme,
  DerError,
  derString,
  parseCertificate,
  pemBlocks,
  sha256Hex,
  toPem,
  verifyWithSpki,
} from "./_x509.ts";

const MAX_CHAIN = 8;

/**
 * Verifies a Sigstore bundle (parsed JSON) against `trust` and returns the
 * DSSE payload (uninterpreted) and the verified signer. Every failure is an
 * `InvalidSignature` whose code says what failed.
 */
export async function verifyBundle(
  bundle: unknown,
  trust: TrustMaterial,
  file?: string,
): Promise<VerifiedBundle> {
  const { record, mediaType, vm, envelope, kind, hasTlog, fail, bad } = readBundle(bundle, file);
  switch (kind) {
    case "publicKey":
      return await verifyKey(vm.publicKey, envelope, trust, fail, bad);
    case "x509CertificateChain": {
      const certs = readChain(vm.x509CertificateChain, bad);
      // v0.1/v0.2 keyless bundles carry Fulcio chains with tlog entries;
      // model_signing's certificate mode writes v0.3 chains without them.
      if (hasTlog && !/v0\.3|version=0\.3/.test(mediaType)) {
        return await verifyKeyless(record, certs[0]!, envelope, trust, fail, bad);
      }
      return await verifyCertificateChain(certs, envelope, trust, fail);
    }
    default: {
      const c = vm.certificate;
      const cert = readCert(isRecord(c) ? c.rawBytes : undefined, "certificate", bad);
      return await verifyKeyless(record, cert, envelope, trust, fail, bad);
    }
  }
}

function readCert(rawBytes: unknown, what: string, bad: (m: string, c?: unknown) => never) {
  const der = typeof rawBytes === "string" ? decodeBase64(rawBytes) : undefined;
  if (der === undefined) return bad(`expected ${what}.rawBytes in base64`);
  try {
    return parseCertificate(der);
  } catch (e) {
    return bad(`${what} is not an X.509 certificate (${errorText(e)})`, e);
  }
}

function readChain(value: unknown, bad: (m: string) => never): Certificate[] {
  const certs = isRecord(value) ? value.certificates : undefined;
  if (!Array.isArray(certs) || certs.length === 0 || certs.length > MAX_CHAIN) {
    return bad(
      `expected x509CertificateChain.certificates with 1 to ${MAX_CHAIN} certificates, found ${
        Array.isArray(certs) ? certs.length : describe(certs)
      }`,
    );
  }
  return certs.map((c, i) =>
    readCert(isRecord(c) ? c.rawBytes : undefined, `x509CertificateChain.certificates[${i}]`, bad)
  );
}

// --- certificate mode -------------------------------------------------------

function readRoots(pems: string[], fail: Fail): Certificate[] {
  const roots: Certificate[] = [];
  for (const [i, pem] of pems.entries()) {
    try {
      const blocks = pemBlocks(pem, "CERTIFICATE");
      if (blocks.length === 0) throw new DerError("no CERTIFICATE PEM");
      for (const der of blocks) roots.push(parseCertificate(der));
    } catch (e) {
      return fail(
        "untrusted-certificate",
        `Cannot read trusted root certificate ${i + 1}: ${errorText(e)}`,
        e,
      );
    }
  }
  return roots;
}

const sameName = (a: Certificate, issuerOf: Certificate) => sameBytes(a.subject, issuerOf.issuer);

async function issuedBy(cert: Certificate, issuer: Certificate): Promise<boolean> {
  if (!sameName(issuer, cert)) return false;
  const scheme = certSignatureScheme(cert.signatureAlgorithm);
  if (scheme === undefined) return false;
  return await verifyWithSpki(issuer.spki, scheme, cert.signature, cert.tbs);
}

/** Why a path (leaf first, trust anchor last) is not acceptable now, or undefined. */
function pathProblem(path: Certificate[], now: Date): string | undefined {
  for (const cert of path) {
    if (now < cert.notBefore || now > cert.notAfter) {
      return `certificate ${cert.subjectName} is not valid at ${now.toISOString()} (valid from ${cert.notBefore.toISOString()} to ${cert.notAfter.toISOString()})`;
    }
  }
  for (const [depth, issuer] of path.entries()) {
    if (depth === 0) continue;
    if (issuer.basicConstraints?.ca !== true) {
      return `issuer ${issuer.subjectName} is not a CA (no basicConstraints cA=TRUE)`;
    }
    if (issuer.keyUsage !== undefined && issuer.keyUsage[5] !== 1) {
      return `issuer ${issuer.subjectName} may not sign certificates (keyUsage lacks keyCertSign)`;
    }
    // pathLen counts the intermediates below this issuer (excluding the leaf).
    const pathLen = issuer.basicConstraints.pathLen;
    if (pathLen !== undefined && depth - 1 > pathLen) {
      return `issuer ${issuer.subjectName} allows ${pathLen} intermediate certificates below it, found ${
        depth - 1
      }`;
    }
  }
  const leaf = path[0]!;
  if (leaf.keyUsage !== undefined && leaf.keyUsage[0] !== 1) {
    return `leaf certificate ${leaf.subjectName} may not sign (keyUsage lacks digitalSignature)`;
  }
  return undefined;
}

async function verifyCertificateChain(
  certs: Certificate[],
  envelope: Envelope,
  trust: TrustMaterial,
  fail: Fail,
): Promise<VerifiedBundle> {
  const leaf = certs[0]!;
  const roots = readRoots(trust.certificateRoots ?? [], fail);
  if (roots.length === 0) {
    return fail(
      "untrusted-certificate",
      "Cannot verify certificate-signed bundle: no trusted root certificates given",
    );
  }
  await checkDsse(leaf.spki, envelope, fail, `the leaf certificate ${leaf.subjectName}`);

  const now = new Date();
  // Distinct chain certificates; signature checks are cached and the search
  // is budgeted, so crafted chains of look-alike certificates cannot make it
  // explode combinatorially.
  const pool = certs.filter((c, i, all) =>
    i > 0 && all.findIndex((d) => sameBytes(c.der, d.der)) === i
  );
  const cache = new Map<Certificate, Map<Certificate, Promise<boolean>>>();
  const signs = (cert: Certificate, issuer: Certificate): Promise<boolean> => {
    let row = cache.get(cert);
    if (row === undefined) cache.set(cert, row = new Map());
    let result = row.get(issuer);
    if (result === undefined) row.set(issuer, result = issuedBy(cert, issuer));
    return result;
  };
  let budget = 256;
  let problem: string | undefined;
  let deepest = [leaf];
  // Depth-first search over issuers: trusted roots end a path, chain
  // certificates extend it (each used at most once).
  const search = async (path: Certificate[]): Promise<Certificate[] | undefined> => {
    const last = path[path.length - 1]!;
    if (path.length > deepest.length) deepest = path;
    if (--budget < 0) return undefined;
    for (const root of roots) {
      if (await signs(last, root)) {
        const full = [...path, root];
        const p = pathProblem(full, now);
        if (p === undefined) return full;
        problem ??= p;
      }
    }
    if (path.length >= MAX_CHAIN) return undefined;
    for (const next of pool) {
      if (path.includes(next) || !await signs(last, next)) continue;
      const found = await search([...path, next]);
      if (found !== undefined) return found;
    }
    return undefined;
  };
  const path = await search([leaf]);
  if (path === undefined) {
    if (problem !== undefined) {
      return fail("untrusted-certificate", `Cannot verify certificate chain: ${problem}`);
    }
    const deadEnd = deepest[deepest.length - 1]!;
    const end = deadEnd === leaf ? "leaf" : `chain ending at ${deadEnd.subjectName},`;
    return fail(
      "untrusted-certificate",
      `Cannot verify certificate chain: it does not lead to any of the ${roots.length} trusted roots (${end} issued by ${deadEnd.issuerName})`,
    );
  }
  return {
    payload: envelope.payload,
    payloadType: envelope.payloadType,
    signer: {
      kind: "certificate",
      identities: [...leaf.emails, ...leaf.uris],
      issuer: undefined,
      keyFingerprint: await sha256Hex(leaf.spki),
      pem: toPem("CERTIFICATE", leaf.der),
      signedAt: undefined,
    },
  };
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

async function verifyKeyless(
  bundle: Record<string, unknown>,
  leaf: Certificate,
  envelope: Envelope,
  trust: TrustMaterial,
  fail: Fail,
  bad: (m: string, cause?: unknown) => never,
): Promise<VerifiedBundle> {
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
    },
  };
}
