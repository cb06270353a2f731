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
import { InvalidSignature, type InvalidSignatureCode } from "./errors.ts";
import type { TrustMaterial, VerifiedSigner } from "./types.ts";
import { decodeBase64, dssePae } from "./_dsse.ts";
import { publicGoodTrustedRoot, toSigstoreTrustMaterial } from "./_trusted_root.ts";
import {
  type Certificate,
  certSignatureScheme,
  curveHash,
  DerError,
  derString,
  parseCertificate,
  pemBlocks,
  sha256Hex,
  type SignatureScheme,
  spkiKeyType,
  toPem,
  verifyWithSpki,
} from "./_x509.ts";

/** What a verified bundle yields: the signed payload and who signed it. */
export interface VerifiedBundle {
  /** The DSSE payload, not interpreted here (an in-toto statement for OMS). */
  payload: Uint8Array;
  /** The DSSE payload type, e.g. `application/vnd.in-toto+json`. */
  payloadType: string;
  /** Who signed, as established by the verification. */
  signer: VerifiedSigner;
}

interface Envelope {
  payload: Uint8Array;
  payloadType: string;
  signature: Uint8Array;
  pae: Uint8Array;
}

type Fail = (code: InvalidSignatureCode, message: string, cause?: unknown) => never;

const MEDIA_TYPE_PREFIX = "application/vnd.dev.sigstore.bundle";
const MAX_CHAIN = 8;

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function describe(value: unknown): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return "an array";
  return typeof value === "object" ? "an object" : `a ${typeof value}`;
}

function errorText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

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
  const fail: Fail = (code, message, cause) => {
    throw new InvalidSignature(code, message, file === undefined ? { cause } : { file, cause });
  };
  const bad = (message: string, cause?: unknown): never =>
    fail("bad-bundle", `Cannot read signature bundle: ${message}`, cause);

  if (!isRecord(bundle)) return bad(`expected a JSON object, found ${describe(bundle)}`);
  const { mediaType, verificationMaterial: vm } = bundle;
  if (typeof mediaType !== "string" || !mediaType.startsWith(MEDIA_TYPE_PREFIX)) {
    return bad(
      `expected mediaType ${MEDIA_TYPE_PREFIX}.*, found ${
        typeof mediaType === "string" ? JSON.stringify(mediaType) : describe(mediaType)
      }`,
    );
  }
  if (!isRecord(vm)) return bad(`expected verificationMaterial object, found ${describe(vm)}`);
  const envelope = readEnvelope(bundle.dsseEnvelope, bad);

  const kinds = ["publicKey", "x509CertificateChain", "certificate"].filter((k) =>
    vm[k] !== undefined && vm[k] !== null
  );
  if (kinds.length !== 1) {
    return bad(
      `expected exactly one of publicKey, x509CertificateChain or certificate in verificationMaterial, found ${
        kinds.length === 0 ? "none" : kinds.join(" and ")
      }`,
    );
  }
  const tlogEntries = vm.tlogEntries ?? [];
  if (!Array.isArray(tlogEntries) || !tlogEntries.every(isRecord)) {
    return bad("expected verificationMaterial.tlogEntries to be an array of objects");
  }
  const tsa = vm.timestampVerificationData;
  if (tsa !== undefined && tsa !== null && !isRecord(tsa)) {
    return bad(`expected timestampVerificationData object, found ${describe(tsa)}`);
  }
  const hasTlog = tlogEntries.length > 0;
  switch (kinds[0]) {
    case "publicKey":
      return await verifyKey(vm.publicKey, envelope, trust, fail, bad);
    case "x509CertificateChain": {
      const certs = readChain(vm.x509CertificateChain, bad);
      // v0.1/v0.2 keyless bundles carry Fulcio chains with tlog entries;
      // model_signing's certificate mode writes v0.3 chains without them.
      if (hasTlog && !/v0\.3|version=0\.3/.test(mediaType)) {
        return await verifyKeyless(bundle, certs[0]!, envelope, trust, fail, bad);
      }
      return await verifyCertificateChain(certs, envelope, trust, fail);
    }
    default: {
      const c = vm.certificate;
      const cert = readCert(isRecord(c) ? c.rawBytes : undefined, "certificate", bad);
      return await verifyKeyless(bundle, cert, envelope, trust, fail, bad);
    }
  }
}

function readEnvelope(value: unknown, bad: (m: string) => never): Envelope {
  if (!isRecord(value)) return bad(`expected dsseEnvelope object, found ${describe(value)}`);
  const { payload, payloadType, signatures } = value;
  if (typeof payloadType !== "string") {
    return bad(`expected dsseEnvelope.payloadType string, found ${describe(payloadType)}`);
  }
  const body = typeof payload === "string" ? decodeBase64(payload) : undefined;
  if (body === undefined) return bad("expected dsseEnvelope.payload in base64");
  if (!Array.isArray(signatures) || signatures.length !== 1) {
    return bad(
      `expected exactly 1 DSSE signature, found ${
        Array.isArray(signatures) ? signatures.length : describe(signatures)
      }`,
    );
  }
  const s = signatures[0];
  const sig = isRecord(s) && typeof s.sig === "string" ? decodeBase64(s.sig) : undefined;
  if (sig === undefined || sig.length === 0) {
    return bad("expected dsseEnvelope.signatures[0].sig in base64");
  }
  return { payload: body, payloadType, signature: sig, pae: dssePae(payloadType, body) };
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

/** The scheme a DSSE signature by this key uses (the curve fixes the ECDSA hash). */
function dsseScheme(spki: Uint8Array, keyDetails?: unknown): SignatureScheme {
  const type = spkiKeyType(spki);
  switch (type.kind) {
    case "ec":
      return { kind: "ecdsa", hash: curveHash(type.curve) };
    case "ed25519":
      return { kind: "ed25519" };
    case "rsa":
      return typeof keyDetails === "string" && keyDetails.includes("PSS")
        ? { kind: "rsa-pss", hash: "SHA-256" }
        : { kind: "rsa-pkcs1", hash: "SHA-256" };
  }
}

async function checkDsse(
  spki: Uint8Array,
  envelope: Envelope,
  fail: Fail,
  whose: string,
  keyDetails?: unknown,
): Promise<void> {
  let scheme: SignatureScheme;
  try {
    scheme = dsseScheme(spki, keyDetails);
  } catch (e) {
    return fail("untrusted-key", `Cannot verify signature: ${whose} ${errorText(e)}`, e);
  }
  if (!await verifyWithSpki(spki, scheme, envelope.signature, envelope.pae)) {
    fail(
      "bad-signature",
      `Cannot verify signature: it does not match the DSSE payload under ${whose} (${
        scheme.kind === "ed25519" ? "Ed25519" : `${scheme.kind.toUpperCase()} ${scheme.hash}`
      })`,
    );
  }
}

// --- key mode ---------------------------------------------------------------

interface TrustedKey {
  der: Uint8Array;
  fingerprint: string;
  pemHashes: string[];
}

async function trustedKeys(pems: string[], fail: Fail): Promise<TrustedKey[]> {
  const out: TrustedKey[] = [];
  for (const [i, pem] of pems.entries()) {
    let der: Uint8Array | undefined;
    try {
      der = pemBlocks(pem, "PUBLIC KEY")[0];
      if (der !== undefined) spkiKeyType(der);
    } catch (e) {
      return fail("untrusted-key", `Cannot read trusted public key ${i + 1}: ${errorText(e)}`, e);
    }
    if (der === undefined) {
      return fail("untrusted-key", `Cannot read trusted public key ${i + 1}: no PUBLIC KEY PEM`);
    }
    // Hints hash the PEM text as the signer wrote it; also accept the
    // canonical re-encoding so line-ending differences do not matter.
    const pemHashes = [await sha256Hex(pem), await sha256Hex(toPem("PUBLIC KEY", der))];
    out.push({ der, fingerprint: await sha256Hex(der), pemHashes });
  }
  return out;
}

const sameBytes = (a: Uint8Array, b: Uint8Array) =>
  a.length === b.length && a.every((v, i) => v === b[i]);

async function verifyKey(
  material: unknown,
  envelope: Envelope,
  trust: TrustMaterial,
  fail: Fail,
  bad: (m: string) => never,
): Promise<VerifiedBundle> {
  if (!isRecord(material)) return bad(`expected publicKey object, found ${describe(material)}`);
  const keys = await trustedKeys(trust.publicKeys ?? [], fail);
  if (keys.length === 0) {
    return fail("untrusted-key", "Cannot verify key-signed bundle: no trusted public keys given");
  }
  const { hint, rawBytes, keyDetails } = material;
  let candidates: TrustedKey[];
  let described: string;
  if (rawBytes !== undefined && rawBytes !== null) {
    const raw = typeof rawBytes === "string" ? decodeBase64(rawBytes) : undefined;
    if (raw === undefined) return bad("expected publicKey.rawBytes in base64");
    // Older model_signing writes the PEM text here; the spec says DER.
    let der: Uint8Array = raw;
    const text = new TextDecoder().decode(raw);
    if (text.includes("-----BEGIN")) {
      try {
        der = pemBlocks(text, "PUBLIC KEY")[0] ?? bad("publicKey.rawBytes holds no PUBLIC KEY PEM");
      } catch (e) {
        if (e instanceof InvalidSignature) throw e;
        return bad(`publicKey.rawBytes is not a PEM public key (${errorText(e)})`);
      }
    }
    candidates = keys.filter((k) => sameBytes(k.der, der));
    described = `public key ${await sha256Hex(der)}`;
  } else if (typeof hint === "string" && hint !== "") {
    const h = hint.toLowerCase();
    candidates = keys.filter((k) => k.fingerprint === h || k.pemHashes.includes(h));
    described = `public key with hint ${hint}`;
  } else if (hint === undefined || hint === null || hint === "") {
    // No identification at all: any trusted key whose signature verifies.
    candidates = keys;
    described = "unidentified public key";
  } else {
    return bad(`expected publicKey.hint string, found ${describe(hint)}`);
  }
  if (candidates.length === 0) {
    return fail(
      "untrusted-key",
      `Cannot verify signature: the bundle's ${described} is not among the ${keys.length} trusted public keys`,
    );
  }
  let lastError: unknown;
  for (const key of candidates) {
    try {
      await checkDsse(key.der, envelope, fail, `trusted key ${key.fingerprint}`, keyDetails);
      return {
        payload: envelope.payload,
        payloadType: envelope.payloadType,
        signer: {
          kind: "key",
          identities: [],
          issuer: undefined,
          keyFingerprint: key.fingerprint,
          // Canonical PEM: trusted key files may carry extra text around it.
          pem: toPem("PUBLIC KEY", key.der),
          signedAt: undefined,
        },
      };
    } catch (e) {
      lastError = e;
    }
  }
  if (candidates.length > 1) {
    return fail(
      "bad-signature",
      `Cannot verify signature: it matches none of the ${candidates.length} trusted public keys`,
      lastError,
    );
  }
  throw lastError;
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
