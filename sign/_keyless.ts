// Sigstore keyless verification with WebCrypto only (browsers, Deno, Node):
// the Fulcio certificate's chain to a CA of the trusted root, its signed
// certificate timestamps (RFC 6962), and Rekor v1 entries: the signed entry
// timestamp, the inclusion proof (RFC 9162) with its signed checkpoint, and
// the entry body against the bundle (dsse 0.0.1, intoto 0.0.2). Time comes
// from verified entry timestamps. RFC 3161 timestamps and Rekor v2 entries
// are not verified here yet: a bundle that needs them is refused by name.
import { fulcioExtensions } from "./_fulcio.ts";
import type { TrustMaterial } from "./types.ts";
import { SignError } from "./errors.ts";
import { decodeBase64 } from "./_dsse.ts";
import {
  checkDsse,
  type Envelope,
  errorText,
  isRecord,
  keyScheme,
  sameBytes,
  type VerifiedBundle,
} from "./_verify_key.ts";
import { findPath, issuedBy, type KeylessVerifier } from "./_verify_cert.ts";
import { type Certificate, derString, parseCertificate, sha256Hex, toPem } from "./_x509.ts";
import { children, pemBlocks, readOid, readTlv, spkiKeyType, verifyWithSpki } from "./_spki.ts";
import { toHex } from "../hash/_digest.ts";
import { publicGoodTrustedRootWeb } from "./_trusted_root_web.ts";
import { type TimestampAuthority, verifyTimestamp } from "./_rfc3161.ts";

const FULCIO_ISSUER_V2 = "1.3.6.1.4.1.57264.1.8";
const FULCIO_ISSUER_V1 = "1.3.6.1.4.1.57264.1.1";
const SCT_LIST = "1.3.6.1.4.1.11129.2.4.2";
/** The most signatures a checkpoint may carry (the log's and witnesses'). */
const MAX_NOTE_SIGNATURES = 16;
/** The most transparency log entries a bundle may carry. */
const MAX_ENTRIES = 8;

/** A log or CA of the trusted root, with the window it may be used in. */
interface Authority {
  keyId: Uint8Array;
  spki: Uint8Array;
  /** An RSA key given as PKCS #1, not SPKI (old CT logs): kept, never used. */
  pkcs1: boolean;
  baseUrl: string;
  start: Date;
  end: Date;
}

interface CertAuthority {
  certs: Certificate[];
  start: Date;
  end: Date;
}

interface Trust {
  tlogs: Authority[];
  ctlogs: Authority[];
  cas: CertAuthority[];
  tsas: TimestampAuthority[];
}

const END_OF_TIME = new Date(8640000000000000);

function window(v: unknown): { start: Date; end: Date } {
  const w = isRecord(v) ? v : {};
  const start = typeof w.start === "string" ? new Date(w.start) : new Date(NaN);
  if (w.end !== undefined && typeof w.end !== "string") {
    throw new Error("validFor.end is not a date");
  }
  const end = typeof w.end === "string" ? new Date(w.end) : END_OF_TIME;
  if (Number.isNaN(start.getTime()) || Number.isNaN(end.getTime())) {
    throw new Error("validFor is not a time window");
  }
  return { start, end };
}

function bytes(v: unknown, what: string): Uint8Array {
  const b = typeof v === "string" ? decodeBase64(v) : undefined;
  if (b === undefined) throw new Error(`${what} is not base64`);
  return b;
}

function list(v: unknown, what: string): unknown[] {
  if (v === undefined) return [];
  if (!Array.isArray(v)) throw new Error(`${what} is not a list`);
  return v;
}

/**
 * Reads the parts of a `trusted_root.json` this verifier uses. Every key must
 * import (a trusted root with a broken key is refused whole, as
 * @sigstore/verify refuses it).
 */
async function readTrust(root: unknown): Promise<Trust> {
  const trust = readTrustShape(root);
  for (const [what, logs] of [["tlogs", trust.tlogs], ["ctlogs", trust.ctlogs]] as const) {
    for (const [i, log] of logs.entries()) {
      if (log.pkcs1 ? !isPkcs1Rsa(log.spki) : !await importable(log.spki)) {
        throw new Error(`${what}[${i}] has an invalid public key`);
      }
    }
  }
  return trust;
}

/** A PKCS #1 RSAPublicKey: a SEQUENCE of exactly two INTEGERs. */
function isPkcs1Rsa(der: Uint8Array): boolean {
  try {
    const seq = readTlv(der, 0, der.length);
    const parts = children(der, seq);
    return seq.tag === 0x30 && seq.end === der.length && parts.length === 2 &&
      parts.every((p) => p.tag === 0x02);
  } catch {
    return false;
  }
}

async function importable(spki: Uint8Array): Promise<boolean> {
  try {
    const type = spkiKeyType(spki);
    const alg = type.kind === "ec"
      ? { name: "ECDSA", namedCurve: type.curve }
      : type.kind === "ed25519"
      ? { name: "Ed25519" }
      : { name: "RSASSA-PKCS1-v1_5", hash: "SHA-256" };
    await crypto.subtle.importKey("spki", spki as BufferSource, alg, false, ["verify"]);
    return true;
  } catch {
    return false;
  }
}

function readTrustShape(root: unknown): Trust {
  if (!isRecord(root)) throw new Error("the trusted root is not an object");
  const logs = (key: string): Authority[] =>
    list(root[key], key).map((raw, i) => {
      const t = isRecord(raw) ? raw : {};
      const pk = isRecord(t.publicKey) ? t.publicKey : {};
      const id = isRecord(t.logId) ? t.logId : {};
      return {
        keyId: bytes(id.keyId, `${key}[${i}].logId.keyId`),
        spki: bytes(pk.rawBytes, `${key}[${i}].publicKey.rawBytes`),
        pkcs1: typeof pk.keyDetails === "string" && pk.keyDetails.startsWith("PKCS1_"),
        baseUrl: typeof t.baseUrl === "string" ? t.baseUrl : "",
        ...window(pk.validFor),
      };
    });
  const cas = list(root.certificateAuthorities, "certificateAuthorities").map((raw, i) => {
    const ca = isRecord(raw) ? raw : {};
    const chain = isRecord(ca.certChain) ? ca.certChain : {};
    const certs = list(chain.certificates, `certificateAuthorities[${i}].certChain.certificates`)
      .map((c, j) =>
        parseCertificate(
          bytes(
            isRecord(c) ? c.rawBytes : undefined,
            `certificateAuthorities[${i}] certificate ${j}`,
          ),
        )
      );
    if (certs.length === 0) throw new Error(`certificateAuthorities[${i}] has no certificates`);
    return { certs, ...window(ca.validFor) };
  });
  const tsas = list(root.timestampAuthorities, "timestampAuthorities").map((raw, i) => {
    const ta = isRecord(raw) ? raw : {};
    const chain = isRecord(ta.certChain) ? ta.certChain : {};
    const certs = list(chain.certificates, `timestampAuthorities[${i}].certChain.certificates`)
      .map((c, j) =>
        parseCertificate(
          bytes(
            isRecord(c) ? c.rawBytes : undefined,
            `timestampAuthorities[${i}] certificate ${j}`,
          ),
        )
      );
    return { certs, ...window(ta.validFor) };
  });
  return { tlogs: logs("tlogs"), ctlogs: logs("ctlogs"), cas, tsas };
}

const within = (a: { start: Date; end: Date }, t: Date) => t >= a.start && t <= a.end;

// --- Rekor v1 entries ---------------------------------------------------------

/** JSON with sorted keys and no spaces (what Rekor signs in a SET). */
function canonical(value: Record<string, string | number>): string {
  return `{${
    Object.keys(value).sort().map((k) => `${JSON.stringify(k)}:${JSON.stringify(value[k])}`).join(
      ",",
    )
  }}`;
}

async function sha256(data: Uint8Array): Promise<Uint8Array> {
  return new Uint8Array(await crypto.subtle.digest("SHA-256", data as BufferSource));
}

function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.byteLength, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.byteLength;
  }
  return out;
}

/** An integer field written as a JSON string or number; `undefined` if it is neither. */
function int(v: unknown): bigint | undefined {
  if (typeof v === "number" && Number.isSafeInteger(v) && v >= 0) return BigInt(v);
  if (typeof v === "string" && /^(0|[1-9]\d{0,18})$/.test(v)) return BigInt(v);
  return undefined;
}

/** RFC 9162 2.1.3.2: the root a leaf's audit path leads to. */
async function rootFromPath(
  index: bigint,
  size: bigint,
  leafHash: Uint8Array,
  path: Uint8Array[],
): Promise<Uint8Array | undefined> {
  if (index >= size) return undefined;
  let fn = index;
  let sn = size - 1n;
  let r = leafHash;
  for (const p of path) {
    if (sn === 0n) return undefined;
    if ((fn & 1n) === 1n || fn === sn) {
      r = await sha256(concat(Uint8Array.of(1), p, r));
      if ((fn & 1n) === 0n) {
        while ((fn & 1n) === 0n && fn !== 0n) {
          fn >>= 1n;
          sn >>= 1n;
        }
      }
    } else {
      r = await sha256(concat(Uint8Array.of(1), r, p));
    }
    fn >>= 1n;
    sn >>= 1n;
  }
  return sn === 0n ? r : undefined;
}

/** A signed note (checkpoint): its text, and its signatures' names, key hints and bytes. */
function signedNote(text: string): {
  note: string;
  lines: string[];
  sigs: { name: string; hint: Uint8Array; sig: Uint8Array }[];
} | undefined {
  const cut = text.indexOf("\n\n");
  if (cut < 0) return undefined;
  const note = text.slice(0, cut + 1);
  const sigs: { name: string; hint: Uint8Array; sig: Uint8Array }[] = [];
  for (const line of text.slice(cut + 2).split("\n")) {
    if (line === "") continue;
    const m = /^\u2014 (\S+) (\S+)$/.exec(line);
    const raw = m ? decodeBase64(m[2]!) : undefined;
    if (!m || raw === undefined || raw.length < 5) return undefined;
    sigs.push({ name: m[1]!, hint: raw.subarray(0, 4), sig: raw.subarray(4) });
  }
  return { note, lines: note.split("\n"), sigs };
}

/** What a tlog entry's body says about the envelope it logged. */
function bodyProblem(
  body: Record<string, unknown>,
  kind: string,
  version: string,
  envelope: Envelope,
  payloadHash: string,
  paeHash: string,
  leaf: Certificate,
): string | undefined {
  if (body.kind !== kind || body.apiVersion !== version) {
    return `its body is a ${String(body.kind)} ${
      String(body.apiVersion)
    } entry, but the bundle says ${kind} ${version}`;
  }
  const spec = isRecord(body.spec) ? body.spec : {};
  let sigs: unknown[];
  let hash: unknown;
  // What each logged signature names as its verifier: PEM text or DER.
  const verifiers: (string | Uint8Array | null)[] = [];
  if (kind === "dsse" && version === "0.0.1") {
    sigs = list(spec.signatures, "signatures").map((s) =>
      isRecord(s) && typeof s.signature === "string" ? decodeBase64(s.signature) : undefined
    );
    for (const x of list(spec.signatures, "signatures")) {
      if (isRecord(x) && x.verifier !== undefined) verifiers.push(pemOf(x.verifier));
    }
    hash = isRecord(spec.payloadHash) ? spec.payloadHash : undefined;
  } else if (kind === "intoto" && version === "0.0.2") {
    const content = isRecord(spec.content) ? spec.content : {};
    const env = isRecord(content.envelope) ? content.envelope : {};
    // The signature is base64 twice over in intoto entries.
    sigs = list(env.signatures, "signatures").map((s) => {
      const once = isRecord(s) && typeof s.sig === "string" ? decodeBase64(s.sig) : undefined;
      return once === undefined ? undefined : decodeBase64(new TextDecoder().decode(once));
    });
    hash = isRecord(content.payloadHash) ? content.payloadHash : undefined;
    for (const x of list(env.signatures, "signatures")) {
      if (isRecord(x) && x.publicKey !== undefined) verifiers.push(pemOf(x.publicKey));
    }
  } else if ((kind === "dsse" || kind === "hashedrekord") && version === "0.0.2") {
    // Rekor v2: protobuf JSON, digests in base64. A DSSE envelope is logged
    // as a dsse entry (the payload's digest) or a hashedrekord entry (the
    // digest of the signed PAE).
    const v2 = kind === "dsse" ? spec.dsseV002 : spec.hashedRekordV002;
    if (!isRecord(v2)) {
      return `its body has no ${kind === "dsse" ? "dsseV002" : "hashedRekordV002"} spec`;
    }
    const raw = kind === "dsse"
      ? list(v2.signatures, "signatures")
      : v2.signature === undefined
      ? []
      : [v2.signature];
    sigs = raw.map((x) =>
      isRecord(x) && typeof x.content === "string" ? decodeBase64(x.content) : undefined
    );
    for (const x of raw) {
      const v = isRecord(x) && isRecord(x.verifier) ? x.verifier : undefined;
      const holder = v && isRecord(v.x509Certificate)
        ? v.x509Certificate
        : v && isRecord(v.publicKey)
        ? v.publicKey
        : undefined;
      if (v !== undefined) {
        verifiers.push(
          holder && typeof holder.rawBytes === "string"
            ? decodeBase64(holder.rawBytes) ?? null
            : null,
        );
      }
    }
    const h = kind === "dsse" ? v2.payloadHash : v2.data;
    const digest = isRecord(h) && typeof h.digest === "string" ? decodeBase64(h.digest) : undefined;
    hash = isRecord(h) && h.algorithm === "SHA2_256" && digest !== undefined
      ? { algorithm: "sha256", value: toHex(digest) }
      : undefined;
    if (kind === "hashedrekord") {
      if (!isRecord(hash) || hash.value !== paeHash) {
        return "the digest it logs is not the envelope's signed bytes'";
      }
      hash = { algorithm: "sha256", value: payloadHash };
    }
  } else {
    return `its kind ${kind} ${version} is not one this verifier reads (dsse 0.0.1 and 0.0.2, intoto 0.0.2, hashedrekord 0.0.2)`;
  }
  if (sigs.length !== 1) return `it logs ${sigs.length} signatures, the envelope has 1`;
  // The key or certificate it logs, where it logs one, is the bundle's.
  if (verifiers.length > 1) return "it logs more than one verifier";
  const logged0 = verifiers[0];
  if (logged0 !== undefined && !sameLeaf(logged0, leaf)) {
    return "the certificate it logs is not the bundle's";
  }
  const logged = sigs[0];
  if (!(logged instanceof Uint8Array) || !sameBytes(logged, envelope.signature)) {
    return "the signature it logs is not the envelope's";
  }
  if (
    !isRecord(hash) || hash.algorithm !== "sha256" || typeof hash.value !== "string" ||
    hash.value.toLowerCase() !== payloadHash
  ) {
    return "the payload digest it logs is not the envelope payload's";
  }
  return undefined;
}

/** A logged verifier given as base64 of PEM text: the text, or null. */
function pemOf(v: unknown): string | null {
  const raw = typeof v === "string" ? decodeBase64(v) : undefined;
  return raw === undefined ? null : new TextDecoder().decode(raw);
}

/** Whether a logged verifier (PEM text or DER) is the leaf certificate or its key. */
function sameLeaf(v: string | Uint8Array | null, leaf: Certificate): boolean {
  if (v === null) return false;
  if (v instanceof Uint8Array) return sameBytes(v, leaf.der) || sameBytes(v, leaf.spki);
  try {
    const certs = pemBlocks(v, "CERTIFICATE");
    const keys = pemBlocks(v, "PUBLIC KEY");
    if (certs.length + keys.length !== 1) return false;
    return certs.length === 1 ? sameBytes(certs[0]!, leaf.der) : sameBytes(keys[0]!, leaf.spki);
  } catch {
    return false;
  }
}

// --- signed certificate timestamps ------------------------------------------

function derLength(n: number): Uint8Array {
  if (n < 0x80) return Uint8Array.of(n);
  const out: number[] = [];
  for (let v = n; v > 0; v = Math.floor(v / 256)) out.unshift(v % 256);
  return Uint8Array.of(0x80 | out.length, ...out);
}

function tlv(tag: number, value: Uint8Array): Uint8Array {
  return concat(Uint8Array.of(tag), derLength(value.byteLength), value);
}

/** The leaf's TBSCertificate without its SCT list extension (the precertificate Fulcio logged). */
function tbsWithoutScts(tbs: Uint8Array): Uint8Array {
  const top = readTlv(tbs, 0, tbs.length);
  const parts = children(tbs, top);
  const out: Uint8Array[] = [];
  for (const p of parts) {
    if (p.tag !== 0xa3) {
      out.push(tbs.subarray(p.start, p.end));
      continue;
    }
    const seq = children(tbs, p)[0]!;
    const kept = children(tbs, seq).filter((ext) => {
      const oid = children(tbs, ext)[0]!;
      return readOid(tbs, oid, "extension id") !== SCT_LIST;
    }).map((ext) => tbs.subarray(ext.start, ext.end));
    out.push(tlv(0xa3, tlv(0x30, concat(...kept))));
  }
  return tlv(0x30, concat(...out));
}

interface Sct {
  logId: Uint8Array;
  timestamp: bigint;
  extensions: Uint8Array;
  hashAlg: number;
  sigAlg: number;
  signature: Uint8Array;
}

/** The SCTs of a TLS-encoded SignedCertificateTimestampList. */
function readScts(ext: Uint8Array): Sct[] {
  // The extension's value is an OCTET STRING holding the TLS list.
  const os = readTlv(ext, 0, ext.length);
  if (os.tag !== 0x04 || os.end !== ext.length) {
    throw new Error("the SCT list is not an OCTET STRING");
  }
  const b = ext.subarray(os.value, os.end);
  const u16 = (at: number) => (b[at]! << 8) | b[at + 1]!;
  if (b.length < 2 || u16(0) !== b.length - 2) throw new Error("the SCT list's length is wrong");
  const out: Sct[] = [];
  for (let at = 2; at < b.length;) {
    const len = u16(at);
    const s = b.subarray(at + 2, at + 2 + len);
    if (s.length !== len || len < 47 || s[0] !== 0) throw new Error("an SCT is malformed");
    const extLen = (s[41]! << 8) | s[42]!;
    const sigAt = 43 + extLen;
    if (sigAt + 4 > s.length) throw new Error("an SCT is malformed");
    const sigLen = (s[sigAt + 2]! << 8) | s[sigAt + 3]!;
    if (sigAt + 4 + sigLen !== s.length) throw new Error("an SCT's signature length is wrong");
    out.push({
      logId: s.subarray(1, 33),
      timestamp: new DataView(s.buffer, s.byteOffset + 33, 8).getBigUint64(0),
      extensions: s.subarray(41, 43 + extLen),
      hashAlg: s[sigAt]!,
      sigAlg: s[sigAt + 1]!,
      signature: s.subarray(sigAt + 4),
    });
    at += 2 + len;
  }
  return out;
}

/** Whether one SCT of the leaf verifies against a CT log of the trust root. */
async function verifyScts(
  leaf: Certificate,
  issuer: Certificate,
  ctlogs: Authority[],
): Promise<string | undefined> {
  const ext = leaf.extensions.get(SCT_LIST);
  if (ext === undefined) return "the certificate has no signed certificate timestamp";
  let scts: Sct[];
  try {
    scts = readScts(ext);
  } catch (e) {
    return `its signed certificate timestamps cannot be read: ${errorText(e)}`;
  }
  const issuerKeyHash = await sha256(issuer.spki);
  const tbs = tbsWithoutScts(leaf.tbs);
  if (scts.length === 0) return "its signed certificate timestamp list is empty";
  // Every SCT must verify (as @sigstore/verify requires), each by a CT log
  // of the trusted root valid at its time.
  for (const [i, sct] of scts.entries()) {
    const time = new Date(Number(sct.timestamp));
    const logs = ctlogs.filter((l) => !l.pkcs1 && sameBytes(l.keyId, sct.logId) && within(l, time));
    // hash 4 = SHA-256; signature 3 = ECDSA, 1 = RSA.
    if (sct.hashAlg !== 4 || (sct.sigAlg !== 3 && sct.sigAlg !== 1)) {
      return `its signed certificate timestamp ${i} uses an algorithm this verifier does not take`;
    }
    const ts = new Uint8Array(8);
    new DataView(ts.buffer).setBigUint64(0, sct.timestamp);
    const tbsLen = Uint8Array.of(tbs.length >> 16, (tbs.length >> 8) & 0xff, tbs.length & 0xff);
    const data = concat(
      Uint8Array.of(0, 0), // v1, certificate_timestamp
      ts,
      Uint8Array.of(0, 1), // precert_entry
      issuerKeyHash,
      tbsLen,
      tbs,
      sct.extensions,
    );
    const scheme = sct.sigAlg === 3
      ? { kind: "ecdsa" as const, hash: "SHA-256" as const }
      : { kind: "rsa-pkcs1" as const, hash: "SHA-256" as const };
    let ok = false;
    for (const log of logs) {
      if (await verifyWithSpki(log.spki, scheme, sct.signature, data)) {
        ok = true;
        break;
      }
    }
    if (!ok) {
      return `its signed certificate timestamp ${i} does not verify against a CT log of the trusted root (${ctlogs.length} logs)`;
    }
  }
  return undefined;
}

// --- the verifier -------------------------------------------------------------

function fulcioIssuer(cert: Certificate): string | undefined {
  const v2 = cert.extensions.get(FULCIO_ISSUER_V2);
  if (v2 !== undefined) return derString(v2);
  const v1 = cert.extensions.get(FULCIO_ISSUER_V1);
  return v1 === undefined ? undefined : new TextDecoder().decode(v1);
}

/**
 * Keyless verification with WebCrypto (see the module comment). The same
 * shape as the node:crypto verifier, so both plug into `verifyBundleWith`.
 */
const keylessWeb: KeylessVerifier = async (
  bundle,
  leaf,
  envelope,
  trustIn: TrustMaterial,
  fail,
  bad,
) => {
  const names = [...leaf.emails, ...leaf.uris];
  await checkDsse(
    leaf.spki,
    envelope,
    fail,
    `the certificate ${names.length ? `for ${names.join(", ")}` : leaf.subjectName}`,
  );
  let trust: Trust;
  try {
    trust = await readTrust(trustIn.trustedRoot ?? await publicGoodTrustedRootWeb());
  } catch (e) {
    return fail("untrusted-certificate", `Cannot read trusted root: ${errorText(e)}`, e);
  }
  const vm = isRecord(bundle.verificationMaterial) ? bundle.verificationMaterial : {};
  const entries = list(vm.tlogEntries, "tlogEntries");
  const tsa = isRecord(vm.timestampVerificationData)
    ? list(vm.timestampVerificationData.rfc3161Timestamps, "rfc3161Timestamps")
    : [];
  if (entries.length === 0) {
    return fail(
      "bad-tlog",
      "Cannot verify keyless signature: it has no transparency log entry (a keyless signature needs one)",
    );
  }
  if (entries.length > MAX_ENTRIES || tsa.length > MAX_ENTRIES) {
    return bad(
      `it has ${entries.length} log entries and ${tsa.length} timestamps, more than ${MAX_ENTRIES}`,
    );
  }
  const seenEntries = new Set<string>();
  for (const e of entries) {
    const r = isRecord(e) ? e : {};
    const key = `${JSON.stringify(isRecord(r.logId) ? r.logId.keyId : null)} ${String(r.logIndex)}`;
    if (seenEntries.has(key)) return bad("it carries the same transparency log entry twice");
    seenEntries.add(key);
  }
  // RFC 3161 timestamps over the envelope's signature: each must verify
  // against a timestamp authority of the trusted root.
  const tsaTimes: Date[] = [];
  for (const [i, raw] of tsa.entries()) {
    const der = isRecord(raw) && typeof raw.signedTimestamp === "string"
      ? decodeBase64(raw.signedTimestamp)
      : undefined;
    if (der === undefined) return bad(`RFC 3161 timestamp ${i} is not base64`);
    try {
      tsaTimes.push(await verifyTimestamp(der, envelope.signature, trust.tsas));
    } catch (e) {
      return fail("bad-tlog", `Cannot verify RFC 3161 timestamp ${i}: ${errorText(e)}`, e);
    }
  }
  const payloadHash = toHex(await sha256(envelope.payload));
  const paeHash = toHex(await sha256(envelope.pae));
  const times: Date[] = [];
  for (const [i, raw] of entries.entries()) {
    const what = `transparency log entry ${i}`;
    const e = isRecord(raw) ? raw : {};
    const kv = isRecord(e.kindVersion) ? e.kindVersion : {};
    const logId = isRecord(e.logId) && typeof e.logId.keyId === "string"
      ? decodeBase64(e.logId.keyId)
      : undefined;
    const logIndex = int(e.logIndex);
    // Rekor v2 entries carry no integrated time (their time is a TSA's).
    const rekorV2 = kv.version === "0.0.2" && (kv.kind === "dsse" || kv.kind === "hashedrekord");
    const integrated = int(e.integratedTime ?? (rekorV2 ? "0" : undefined));
    const body = typeof e.canonicalizedBody === "string"
      ? decodeBase64(e.canonicalizedBody)
      : undefined;
    if (
      typeof kv.kind !== "string" || typeof kv.version !== "string" || logId === undefined ||
      logIndex === undefined || integrated === undefined || body === undefined
    ) {
      return bad(`${what} lacks kindVersion, logId, logIndex, integratedTime or canonicalizedBody`);
    }
    if (kv.kind === "dsse" && kv.version === "0.0.2") {
      return fail("bad-tlog", `Cannot verify ${what}: Rekor v2 entries are not verified here yet`);
    }
    let parsed: unknown;
    try {
      parsed = JSON.parse(new TextDecoder("utf-8", { fatal: true, ignoreBOM: true }).decode(body));
    } catch (err) {
      return fail("bad-tlog", `Cannot verify ${what}: its body is not JSON`, err);
    }
    const problem = isRecord(parsed)
      ? bodyProblem(parsed, kv.kind, kv.version, envelope, payloadHash, paeHash, leaf)
      : "its body is not an object";
    if (problem) return fail("bad-tlog", `Cannot verify ${what}: ${problem}`);
    // The log must be trusted at the entry's time: its integrated time, or
    // for Rekor v2 the earliest verified RFC 3161 time.
    if (rekorV2 && (integrated !== 0n || e.inclusionPromise !== undefined)) {
      return bad(
        `${what} is a Rekor v2 entry with an integrated time or a promise, which v2 has not`,
      );
    }
    if (rekorV2 && tsaTimes.length === 0) {
      return fail(
        "bad-tlog",
        `Cannot verify ${what}: a Rekor v2 entry needs an RFC 3161 timestamp, and the bundle has none`,
      );
    }
    const time = rekorV2
      ? new Date(Math.min(...tsaTimes.map((t) => t.getTime())))
      : new Date(Number(integrated) * 1000);
    const logs = trust.tlogs.filter((l) => sameBytes(l.keyId, logId) && within(l, time));
    if (logs.length === 0) {
      return fail(
        "bad-tlog",
        `Cannot verify ${what}: its log ${
          e.logId && (e.logId as Record<string, unknown>).keyId
        } is not in the trusted root at ${time.toISOString()}`,
      );
    }
    // The signed entry timestamp: the log's promise, with the time.
    const promise = isRecord(e.inclusionPromise) ? e.inclusionPromise : undefined;
    let promised = false;
    if (promise !== undefined) {
      const set = typeof promise.signedEntryTimestamp === "string"
        ? decodeBase64(promise.signedEntryTimestamp)
        : undefined;
      const data = new TextEncoder().encode(canonical({
        body: e.canonicalizedBody as string,
        integratedTime: Number(integrated),
        logID: toHex(logId),
        logIndex: Number(logIndex),
      }));
      for (const log of logs) {
        if (set && await verifyWithSpki(log.spki, keyScheme(log.spki), set, data)) promised = true;
      }
      if (!promised) {
        return fail(
          "bad-tlog",
          `Cannot verify ${what}: its signed entry timestamp does not verify`,
        );
      }
    }
    // The inclusion proof and its signed checkpoint.
    const proof = isRecord(e.inclusionProof) ? e.inclusionProof : undefined;
    if (proof !== undefined) {
      // Protobuf JSON leaves out zero values: a missing index is 0.
      const index = int(proof.logIndex ?? "0");
      const size = int(proof.treeSize);
      const root = typeof proof.rootHash === "string" ? decodeBase64(proof.rootHash) : undefined;
      const hashes = list(proof.hashes, "hashes").map((h) =>
        typeof h === "string" ? decodeBase64(h) : undefined
      );
      if (
        index === undefined || size === undefined || root === undefined ||
        hashes.some((h) => h === undefined || h.length !== 32)
      ) {
        return bad(`${what}'s inclusion proof is malformed`);
      }
      const computed = await rootFromPath(
        index,
        size,
        await sha256(concat(Uint8Array.of(0), body)),
        hashes as Uint8Array[],
      );
      if (computed === undefined || !sameBytes(computed, root)) {
        return fail(
          "bad-tlog",
          `Cannot verify ${what}: its inclusion proof does not lead to its root hash`,
        );
      }
      const cp = isRecord(proof.checkpoint) && typeof proof.checkpoint.envelope === "string"
        ? signedNote(proof.checkpoint.envelope)
        : undefined;
      if (cp === undefined) {
        return fail("bad-tlog", `Cannot verify ${what}: its checkpoint is malformed`);
      }
      const cpRoot = cp.lines[2] === undefined ? undefined : decodeBase64(cp.lines[2]);
      if (cp.lines[1] !== String(size) || cpRoot === undefined || !sameBytes(cpRoot, root)) {
        return fail(
          "bad-tlog",
          `Cannot verify ${what}: its checkpoint (tree size ${
            cp.lines[1]
          }) is not the inclusion proof's (tree size ${size})`,
        );
      }
      let signed = false;
      const note = new TextEncoder().encode(cp.note);
      if (cp.sigs.length > MAX_NOTE_SIGNATURES) {
        return fail(
          "bad-tlog",
          `Cannot verify ${what}: its checkpoint has ${cp.sigs.length} signatures, more than ${MAX_NOTE_SIGNATURES}`,
        );
      }
      // Signed by the entry's own log (the one valid at the entry's time).
      for (const s of cp.sigs) {
        for (const log of logs) {
          if (!sameBytes(log.keyId.subarray(0, 4), s.hint) || !log.baseUrl.includes(s.name)) {
            continue;
          }
          if (await verifyWithSpki(log.spki, keyScheme(log.spki), s.sig, note)) {
            signed = true;
            break;
          }
        }
        if (signed) break;
      }
      if (!signed) {
        return fail(
          "bad-tlog",
          `Cannot verify ${what}: its checkpoint is not signed by a trusted log`,
        );
      }
    }
    // Bundles from v0.2 on must carry the proof; v0.1 bundles may rest on the promise.
    const v01 = bundle.mediaType === "application/vnd.dev.sigstore.bundle+json;version=0.1";
    if (proof === undefined && !v01) {
      return fail(
        "bad-tlog",
        `Cannot verify ${what}: it has no inclusion proof, which a ${
          String(bundle.mediaType)
        } bundle must carry`,
      );
    }
    if (!promised && proof === undefined) {
      return fail(
        "bad-tlog",
        `Cannot verify ${what}: it has neither a signed entry timestamp nor an inclusion proof`,
      );
    }
    if (!promised && tsaTimes.length === 0) {
      return fail(
        "bad-tlog",
        `Cannot verify ${what}: without a signed entry timestamp its time needs an RFC 3161 timestamp, and the bundle has none`,
      );
    }
    if (promised) times.push(time);
  }
  // The certificate at each verified time, and its path to a Fulcio CA then.
  times.push(...tsaTimes);
  times.sort((a, b) => a.getTime() - b.getTime());
  for (const t of times) {
    if (t < leaf.notBefore || t > leaf.notAfter) {
      return fail(
        "untrusted-certificate",
        `Cannot verify keyless signature: it was logged at ${t.toISOString()}, outside its certificate's validity (${leaf.notBefore.toISOString()} to ${leaf.notAfter.toISOString()})`,
      );
    }
  }
  // The chain must hold at every verified time, each through a CA valid then.
  let path: Certificate[] | undefined;
  for (const at of times) {
    path = undefined;
    let problem = `no certificate authority of the trusted root is valid at ${at.toISOString()}`;
    for (const ca of trust.cas.filter((c) => within(c, at))) {
      // The chain must end at a validly self-signed certificate (a damaged
      // trusted root is refused, as @sigstore/verify refuses it).
      const anchor = ca.certs[ca.certs.length - 1]!;
      if (!sameBytes(anchor.subject, anchor.issuer) || !await issuedBy(anchor, anchor)) {
        problem =
          `the trusted root's CA chain ends at ${anchor.subjectName}, which is not a validly self-signed certificate`;
        continue;
      }
      // The chain's last certificate is the anchor; the others must lead to it.
      const found = await findPath(
        leaf,
        ca.certs.slice(0, -1),
        ca.certs.slice(-1),
        at,
        "when the signature was logged",
      );
      if ("path" in found) {
        path = found.path;
        break;
      }
      problem = found.problem;
    }
    if (path === undefined) return fail("untrusted-certificate", problem);
  }
  if (path === undefined) {
    return fail("untrusted-certificate", "Cannot verify certificate: no verified time");
  }
  const at = times[0]!;
  const sct = await verifyScts(leaf, path[1]!, trust.ctlogs);
  if (sct !== undefined) return fail("untrusted-certificate", `Cannot verify certificate: ${sct}`);
  return {
    payload: envelope.payload,
    payloadType: envelope.payloadType,
    signer: {
      kind: "keyless",
      identities: names,
      issuer: fulcioIssuer(leaf),
      keyFingerprint: await sha256Hex(leaf.spki),
      pem: toPem("CERTIFICATE", leaf.der),
      signedAt: at,
      extensions: fulcioExtensions(leaf),
    },
  } satisfies VerifiedBundle;
};

/**
 * Keyless verification with WebCrypto (see the module comment). The same
 * shape as the node:crypto verifier, so both plug into `verifyBundleWith`.
 * Anything malformed that slips past the checks above is still a typed
 * `VerificationError` (`bad-bundle`), never a plain `Error`.
 */
export const verifyKeylessWeb: KeylessVerifier = async (
  bundle,
  leaf,
  envelope,
  trust,
  fail,
  bad,
) => {
  try {
    return await keylessWeb(bundle, leaf, envelope, trust, fail, bad);
  } catch (e) {
    if (e instanceof SignError) throw e;
    return bad(errorText(e), e);
  }
};
