/**
 * Just enough X.509 for verification: reading certificates into plain values
 * with the minimal DER reader of `_spki.ts` (no node: modules, no ASN.1
 * library), so that certificate chains check in browsers too.
 *
 * @module
 */

export { sha256Hex } from "../hash/_digest.ts";
export { toPem } from "./_pem_text.ts";
import {
  BIT_STRING,
  children,
  DerError,
  INTEGER,
  readOid,
  readTlv,
  SEQUENCE,
  type SignatureScheme,
  type Tlv,
} from "./_spki.ts";
export {
  curveHash,
  DerError,
  ecdsaDerToP1363,
  type Hash,
  type KeyType,
  pemBlocks,
  type SignatureScheme,
  spkiKeyType,
  verifyWithSpki,
} from "./_spki.ts";

/** A parsed certificate, reduced to what chain and signer checks need. */
export interface Certificate {
  der: Uint8Array;
  tbs: Uint8Array;
  issuer: Uint8Array;
  subject: Uint8Array;
  issuerName: string;
  subjectName: string;
  notBefore: Date;
  notAfter: Date;
  spki: Uint8Array;
  signatureAlgorithm: string;
  signature: Uint8Array;
  /** `undefined` when there is no basicConstraints extension. */
  basicConstraints: { ca: boolean; pathLen: number | undefined } | undefined;
  /** Key usage bits (index 0 = digitalSignature, 5 = keyCertSign), if present. */
  keyUsage: number[] | undefined;
  emails: string[];
  uris: string[];
  /** Extension OID to the raw `extnValue` contents. */
  extensions: Map<string, Uint8Array>;
}

const NAME_KEYS: Record<string, string> = {
  "2.5.4.3": "CN",
  "2.5.4.5": "serialNumber",
  "2.5.4.6": "C",
  "2.5.4.7": "L",
  "2.5.4.8": "ST",
  "2.5.4.10": "O",
  "2.5.4.11": "OU",
  "1.2.840.113549.1.9.1": "emailAddress",
};

const utf8 = new TextDecoder("utf-8", { fatal: false });

const BOOLEAN = 0x01;
const OCTET_STRING = 0x04;
const SET = 0x31;
const UTC_TIME = 0x17;
const GENERALIZED_TIME = 0x18;
/** Context-specific tags: constructed [n] and primitive [n]. */
const explicit = (n: number) => 0xa0 | n;
const implicit = (n: number) => 0x80 | n;

/** Reads `der` as exactly one element (nothing after it). */
function whole(der: Uint8Array, what: string): Tlv {
  const tlv = readTlv(der, 0, der.length);
  if (tlv.end !== der.length) throw new DerError(`invalid ${what} (trailing bytes)`);
  return tlv;
}

function expect(tlv: Tlv | undefined, tag: number, what: string): Tlv {
  if (tlv === undefined) throw new DerError(`missing ${what}`);
  if (tlv.tag !== tag) throw new DerError(`invalid ${what}`);
  return tlv;
}

const valueOf = (der: Uint8Array, tlv: Tlv) => der.subarray(tlv.value, tlv.end);
const encodingOf = (der: Uint8Array, tlv: Tlv) => new Uint8Array(der.subarray(tlv.start, tlv.end));

/** A UTCTime (two-digit year, 1950–2049) or GeneralizedTime, in UTC (`Z`). */
function readTime(der: Uint8Array, tlv: Tlv | undefined, what: string): Date {
  if (tlv === undefined) throw new DerError(`missing ${what}`);
  const text = String.fromCharCode(...valueOf(der, tlv));
  const m = tlv.tag === UTC_TIME
    ? /^(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})Z$/.exec(text)
    : tlv.tag === GENERALIZED_TIME
    ? /^(\d{4})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})Z$/.exec(text)
    : null;
  if (!m) throw new DerError(`invalid ${what}`);
  const [year, month, day, hour, minute, second] = m.slice(1).map(Number) as [
    number,
    number,
    number,
    number,
    number,
    number,
  ];
  const fullYear = tlv.tag === UTC_TIME ? year + (year >= 50 ? 1900 : 2000) : year;
  const date = new Date(Date.UTC(fullYear, month - 1, day, hour, minute, second));
  // Out-of-range fields (month 13, second 61, …) would roll over: refuse them.
  if (
    date.getUTCFullYear() !== fullYear || date.getUTCMonth() !== month - 1 ||
    date.getUTCDate() !== day || date.getUTCHours() !== hour ||
    date.getUTCMinutes() !== minute || date.getUTCSeconds() !== second
  ) {
    throw new DerError(`invalid ${what}`);
  }
  return date;
}

/** Formats a Name as `CN=x, O=y` (in encoded order), for messages. */
function formatName(der: Uint8Array, name: Tlv): string {
  const parts: string[] = [];
  for (const rdn of children(der, name)) {
    expect(rdn, SET, "name");
    for (const attr of children(der, rdn)) {
      const [type, value] = children(der, expect(attr, SEQUENCE, "name attribute"));
      const oid = readOid(der, type, "name attribute");
      if (value === undefined) throw new DerError("missing name attribute value");
      parts.push(`${NAME_KEYS[oid] ?? oid}=${utf8.decode(valueOf(der, value))}`);
    }
  }
  return parts.length === 0 ? "(empty name)" : parts.join(", ");
}

/** Parses a DER certificate; throws `DerError` when it is not one. */
export function parseCertificate(der: Uint8Array): Certificate {
  const root = expect(whole(der, "certificate"), SEQUENCE, "certificate");
  const parts = children(der, root);
  if (parts.length !== 3) throw new DerError("invalid certificate (expected 3 parts)");
  const [tbsTlv, sigAlg, sigValue] = parts as [Tlv, Tlv, Tlv];
  expect(tbsTlv, SEQUENCE, "tbsCertificate");
  const tbs = children(der, tbsTlv);
  // The version field is optional ([0] EXPLICIT), shifting the others.
  const off = tbs[0]?.tag === explicit(0) ? 1 : 0;
  const issuer = expect(tbs[2 + off], SEQUENCE, "issuer");
  const validity = children(der, expect(tbs[3 + off], SEQUENCE, "validity"));
  const subject = expect(tbs[4 + off], SEQUENCE, "subject");
  const spki = expect(tbs[5 + off], SEQUENCE, "subjectPublicKeyInfo");
  expect(sigValue, BIT_STRING, "signatureValue");
  if (sigValue.end - sigValue.value < 1 || der[sigValue.value] !== 0) {
    throw new DerError("invalid signatureValue");
  }
  const cert: Certificate = {
    der: new Uint8Array(der),
    // The signed bytes exactly as encoded.
    tbs: encodingOf(der, tbsTlv),
    issuer: encodingOf(der, issuer),
    subject: encodingOf(der, subject),
    issuerName: formatName(der, issuer),
    subjectName: formatName(der, subject),
    notBefore: readTime(der, validity[0], "notBefore"),
    notAfter: readTime(der, validity[1], "notAfter"),
    spki: encodingOf(der, spki),
    signatureAlgorithm: readOid(
      der,
      children(der, expect(sigAlg, SEQUENCE, "signatureAlgorithm"))[0],
      "signature algorithm",
    ),
    signature: new Uint8Array(der.subarray(sigValue.value + 1, sigValue.end)),
    basicConstraints: undefined,
    keyUsage: undefined,
    emails: [],
    uris: [],
    extensions: new Map(),
  };
  const wrapper = tbs.slice(6 + off).find((t) => t.tag === explicit(3));
  const list = wrapper === undefined
    ? []
    : children(der, expect(children(der, wrapper)[0], SEQUENCE, "extensions"));
  for (const ext of list) {
    const fields = children(der, expect(ext, SEQUENCE, "extension"));
    const oid = readOid(der, fields[0], "extension id");
    const valueTlv = fields[fields.length - 1];
    if (fields.length < 2 || fields.length > 3 || valueTlv?.tag !== OCTET_STRING) {
      throw new DerError(`invalid extension ${oid}`);
    }
    if (cert.extensions.has(oid)) throw new DerError(`duplicate extension ${oid}`);
    const value = new Uint8Array(valueOf(der, valueTlv));
    cert.extensions.set(oid, value);
    readExtension(cert, oid, value);
  }
  return cert;
}

function readExtension(cert: Certificate, oid: string, value: Uint8Array): void {
  switch (oid) {
    case "2.5.29.19": { // basicConstraints
      let ca = false;
      let pathLen: number | undefined;
      for (
        const f of children(
          value,
          expect(whole(value, "basicConstraints"), SEQUENCE, "basicConstraints"),
        )
      ) {
        const v = valueOf(value, f);
        if (f.tag === BOOLEAN) {
          // DER: one byte, 0x00 or 0xff.
          if (v.length !== 1 || (v[0] !== 0 && v[0] !== 0xff)) {
            throw new DerError("invalid basicConstraints");
          }
          ca = v[0] === 0xff;
        } else if (f.tag === INTEGER) {
          if (v.length === 0 || v.length > 4 || (v[0]! & 0x80) !== 0) {
            throw new DerError("invalid basicConstraints pathLen");
          }
          pathLen = v.reduce((n, b) => n * 256 + b, 0);
        }
      }
      cert.basicConstraints = { ca, pathLen };
      break;
    }
    case "2.5.29.15": { // keyUsage: one value per bit, most significant first
      const bits = valueOf(value, expect(whole(value, "keyUsage"), BIT_STRING, "keyUsage"));
      const unused = bits[0];
      if (unused === undefined || unused > 7 || (bits.length === 1 && unused !== 0)) {
        throw new DerError("invalid keyUsage");
      }
      const out: number[] = [];
      for (let i = 1; i < bits.length; i++) {
        const last = i === bits.length - 1 ? unused : 0;
        for (let j = 7; j >= last; j--) out.push((bits[i]! >> j) & 1);
      }
      cert.keyUsage = out;
      break;
    }
    case "2.5.29.17": // subjectAltName: [1] rfc822Name, [6] URI (IMPLICIT IA5String)
      for (
        const name of children(
          value,
          expect(whole(value, "subjectAltName"), SEQUENCE, "subjectAltName"),
        )
      ) {
        if (name.tag === implicit(1)) cert.emails.push(utf8.decode(valueOf(value, name)));
        else if (name.tag === implicit(6)) cert.uris.push(utf8.decode(valueOf(value, name)));
      }
      break;
  }
}

/** Reads a DER UTF8String/IA5String/PrintableString as text, or `undefined`. */
export function derString(value: Uint8Array): string | undefined {
  try {
    const tlv = whole(value, "string");
    // UTF8String (12), PrintableString (19), IA5String (22)
    if ([12, 19, 22].includes(tlv.tag)) return utf8.decode(valueOf(value, tlv));
  } catch {
    // fall through
  }
  return undefined;
}

const CERT_SIGNATURES: Record<string, SignatureScheme> = {
  "1.2.840.10045.4.3.2": { kind: "ecdsa", hash: "SHA-256" },
  "1.2.840.10045.4.3.3": { kind: "ecdsa", hash: "SHA-384" },
  "1.2.840.10045.4.3.4": { kind: "ecdsa", hash: "SHA-512" },
  "1.2.840.113549.1.1.11": { kind: "rsa-pkcs1", hash: "SHA-256" },
  "1.2.840.113549.1.1.12": { kind: "rsa-pkcs1", hash: "SHA-384" },
  "1.2.840.113549.1.1.13": { kind: "rsa-pkcs1", hash: "SHA-512" },
  "1.3.101.112": { kind: "ed25519" },
};

/** The scheme of a certificate signature algorithm OID, if supported. */
export function certSignatureScheme(oid: string): SignatureScheme | undefined {
  return CERT_SIGNATURES[oid];
}
