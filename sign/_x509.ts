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
  OBJECT_ID,
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

/**
 * A GeneralName (RFC 5280 4.2.1.6), as subjectAltName entries and
 * nameConstraints subtrees carry it. Text forms are IA5Strings; a
 * directoryName is its canonical RDNs ({@linkcode canonicalName}); the forms
 * we do not compare keep their encoding.
 */
export type GeneralName =
  | { form: "rfc822Name" | "dNSName" | "uniformResourceIdentifier"; text: string }
  | { form: "directoryName"; rdns: string[]; text: string }
  | { form: "iPAddress"; bytes: Uint8Array; text: string }
  | { form: "otherName" | "x400Address" | "ediPartyName" | "registeredID"; text: string };

/** One permitted or excluded subtree of a nameConstraints extension. */
export interface GeneralSubtree {
  base: GeneralName;
  /** `minimum` other than 0 or a `maximum`: RFC 5280 forbids both, we refuse them. */
  bounded: boolean;
}

/** A parsed certificate, reduced to what chain and signer checks need. */
export interface Certificate {
  der: Uint8Array;
  tbs: Uint8Array;
  issuer: Uint8Array;
  /** The serial number's content bytes (two's complement, as encoded). */
  serial: Uint8Array;
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
  /** extendedKeyUsage purpose OIDs, if present. */
  extKeyUsage: string[] | undefined;
  /** subjectAltName rfc822Names and URIs (the identities a signer has). */
  emails: string[];
  uris: string[];
  /** Every subjectAltName entry, in order. */
  altNames: GeneralName[];
  /** The subject as canonical RDNs ({@linkcode canonicalName}); empty for an empty name. */
  subjectRdns: string[];
  /** emailAddress attributes of the subject (legacy e-mail names, RFC 5280 4.1.2.6). */
  subjectEmails: string[];
  /** nameConstraints subtrees, if present. */
  nameConstraints: { permitted: GeneralSubtree[]; excluded: GeneralSubtree[] } | undefined;
  /** Extension OID to the raw `extnValue` contents. */
  extensions: Map<string, Uint8Array>;
  /** OIDs of the extensions marked critical. */
  critical: Set<string>;
}

const EMAIL_ADDRESS = "1.2.840.113549.1.9.1";

const NAME_KEYS: Record<string, string> = {
  "2.5.4.3": "CN",
  "2.5.4.5": "serialNumber",
  "2.5.4.6": "C",
  "2.5.4.7": "L",
  "2.5.4.8": "ST",
  "2.5.4.10": "O",
  "2.5.4.11": "OU",
  [EMAIL_ADDRESS]: "emailAddress",
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

/** A Name's attributes, RDN by RDN, as (type OID, value element) pairs. */
function nameAttributes(der: Uint8Array, name: Tlv): { oid: string; value: Tlv }[][] {
  return children(der, name).map((rdn) =>
    children(der, expect(rdn, SET, "name")).map((attr) => {
      const [type, value] = children(der, expect(attr, SEQUENCE, "name attribute"));
      const oid = readOid(der, type, "name attribute");
      if (value === undefined) throw new DerError("missing name attribute value");
      return { oid, value };
    })
  );
}

/** Formats a Name as `CN=x, O=y` (in encoded order), for messages. */
function formatName(der: Uint8Array, name: Tlv): string {
  const parts = nameAttributes(der, name).flat().map(({ oid, value }) =>
    `${NAME_KEYS[oid] ?? oid}=${utf8.decode(valueOf(der, value))}`
  );
  return parts.length === 0 ? "(empty name)" : parts.join(", ");
}

/** Text of a directory string (UTF8, Printable, IA5, Teletex as Latin-1, BMP), else undefined. */
function directoryString(der: Uint8Array, tlv: Tlv): string | undefined {
  const v = valueOf(der, tlv);
  switch (tlv.tag) {
    case 0x0c: // UTF8String
    case 0x13: // PrintableString
    case 0x16: // IA5String
      return utf8.decode(v);
    case 0x14: // TeletexString
      return Array.from(v, (c) => String.fromCharCode(c)).join("");
    case 0x1e: { // BMPString
      if (v.length % 2 !== 0) throw new DerError("invalid BMPString");
      let out = "";
      for (let i = 0; i < v.length; i += 2) out += String.fromCharCode(v[i]! * 256 + v[i + 1]!);
      return out;
    }
  }
  return undefined;
}

/**
 * A Name as canonical RDNs for comparison, after OpenSSL's canonical
 * encoding and RFC 4518 in spirit: each RDN is its `oid=value` attributes,
 * sorted and joined with `+`; string values are trimmed, inner white space
 * collapsed and lower-cased; other values compare as hex.
 */
function canonicalName(der: Uint8Array, name: Tlv): string[] {
  return nameAttributes(der, name).map((rdn) =>
    rdn.map(({ oid, value }) => {
      const text = directoryString(der, value);
      const canon = text === undefined
        ? "#" + Array.from(der.subarray(value.start, value.end), hexByte).join("")
        : JSON.stringify(text.trim().replace(/\s+/g, " ").toLowerCase());
      return `${oid}=${canon}`;
    }).sort().join("+")
  );
}

const hexByte = (b: number) => b.toString(16).padStart(2, "0");

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
    serial: new Uint8Array(
      der.subarray(expect(tbs[off], 0x02, "serialNumber").value, tbs[off]!.end),
    ),
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
    extKeyUsage: undefined,
    emails: [],
    uris: [],
    altNames: [],
    subjectRdns: canonicalName(der, subject),
    subjectEmails: nameAttributes(der, subject).flat()
      .filter((a) => a.oid === EMAIL_ADDRESS)
      .map((a) => directoryString(der, a.value) ?? ""),
    nameConstraints: undefined,
    extensions: new Map(),
    critical: new Set(),
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
    if (fields.length === 3) {
      // critical BOOLEAN DEFAULT FALSE: DER encodes only TRUE (0xff); FALSE is tolerated.
      const flag = expect(fields[1], BOOLEAN, `extension ${oid} critical flag`);
      const v = valueOf(der, flag);
      if (v.length !== 1 || (v[0] !== 0 && v[0] !== 0xff)) {
        throw new DerError(`invalid extension ${oid} critical flag`);
      }
      if (v[0] === 0xff) cert.critical.add(oid);
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
    case "2.5.29.37": { // extKeyUsage: SEQUENCE OF KeyPurposeId
      const list = children(value, expect(whole(value, "extKeyUsage"), SEQUENCE, "extKeyUsage"));
      if (list.length === 0) throw new DerError("invalid extKeyUsage (empty)");
      cert.extKeyUsage = list.map((t) => readOid(value, t, "extKeyUsage purpose"));
      break;
    }
    case "2.5.29.17": { // subjectAltName: SEQUENCE OF GeneralName
      const list = children(
        value,
        expect(whole(value, "subjectAltName"), SEQUENCE, "subjectAltName"),
      );
      for (const tlv of list) {
        const name = readGeneralName(value, tlv, "subjectAltName");
        if (name.form === "iPAddress" && name.bytes.length !== 4 && name.bytes.length !== 16) {
          throw new DerError("invalid subjectAltName iPAddress");
        }
        cert.altNames.push(name);
        if (name.form === "rfc822Name") cert.emails.push(name.text);
        if (name.form === "uniformResourceIdentifier") cert.uris.push(name.text);
      }
      break;
    }
    case "2.5.29.30": { // nameConstraints: [0] permittedSubtrees, [1] excludedSubtrees
      const nc = { permitted: [] as GeneralSubtree[], excluded: [] as GeneralSubtree[] };
      for (
        const part of children(
          value,
          expect(whole(value, "nameConstraints"), SEQUENCE, "nameConstraints"),
        )
      ) {
        const into = part.tag === explicit(0)
          ? nc.permitted
          : part.tag === explicit(1)
          ? nc.excluded
          : undefined;
        if (into === undefined) throw new DerError("invalid nameConstraints");
        const subtrees = children(value, part);
        if (subtrees.length === 0) throw new DerError("invalid nameConstraints (empty subtrees)");
        for (const subtree of subtrees) into.push(readSubtree(value, subtree));
      }
      if (nc.permitted.length === 0 && nc.excluded.length === 0) {
        throw new DerError("invalid nameConstraints (no subtrees)");
      }
      cert.nameConstraints = nc;
      break;
    }
  }
}

const NAME_FORMS = [
  "otherName",
  "rfc822Name",
  "dNSName",
  "x400Address",
  "directoryName",
  "ediPartyName",
  "uniformResourceIdentifier",
  "iPAddress",
  "registeredID",
] as const;

/** Reads one GeneralName (context tags [0]..[8], RFC 5280 4.2.1.6). */
function readGeneralName(der: Uint8Array, tlv: Tlv, what: string): GeneralName {
  const n = tlv.tag & 0x1f;
  const form = NAME_FORMS[n];
  // [0], [3], [4], [5] are constructed; [1], [2], [6], [7], [8] primitive.
  const constructed = n === 0 || n === 3 || n === 4 || n === 5;
  if (form === undefined || tlv.tag !== (constructed ? explicit(n) : implicit(n))) {
    throw new DerError(`invalid ${what} (GeneralName tag 0x${hexByte(tlv.tag)})`);
  }
  const v = valueOf(der, tlv);
  switch (form) {
    case "rfc822Name":
    case "dNSName":
    case "uniformResourceIdentifier":
      return { form, text: utf8.decode(v) };
    case "directoryName": {
      const name = children(der, tlv);
      if (name.length !== 1) throw new DerError(`invalid ${what} directoryName`);
      const seq = expect(name[0], SEQUENCE, `${what} directoryName`);
      return { form, rdns: canonicalName(der, seq), text: formatName(der, seq) };
    }
    case "iPAddress":
      return { form, bytes: new Uint8Array(v), text: ipText(v) };
    case "registeredID":
      return { form, text: readOid(der, { ...tlv, tag: OBJECT_ID }, `${what} registeredID`) };
    default:
      return { form, text: Array.from(v, hexByte).join("") };
  }
}

/** An address (4 or 16 bytes) or address and mask (8 or 32 bytes) for messages. */
function ipText(v: Uint8Array): string {
  const one = (b: Uint8Array) =>
    b.length === 4
      ? Array.from(b).join(".")
      : Array.from({ length: b.length / 2 }, (_, i) =>
        (b[2 * i]! * 256 + b[2 * i + 1]!).toString(16))
        .join(":");
  if (v.length === 4 || v.length === 16) return one(v);
  if (v.length === 8 || v.length === 32) {
    return `${one(v.subarray(0, v.length / 2))}/${one(v.subarray(v.length / 2))}`;
  }
  return Array.from(v, hexByte).join("");
}

/** GeneralSubtree ::= SEQUENCE { base, minimum [0] DEFAULT 0, maximum [1] OPTIONAL } */
function readSubtree(der: Uint8Array, tlv: Tlv): GeneralSubtree {
  const [baseTlv, ...bounds] = children(der, expect(tlv, SEQUENCE, "nameConstraints subtree"));
  if (baseTlv === undefined) throw new DerError("invalid nameConstraints subtree");
  const base = readGeneralName(der, baseTlv, "nameConstraints");
  if (base.form === "iPAddress" && base.bytes.length !== 8 && base.bytes.length !== 32) {
    throw new DerError("invalid nameConstraints iPAddress");
  }
  let bounded = false;
  for (const b of bounds) {
    const v = valueOf(der, b);
    if (b.tag === implicit(0)) bounded ||= v.some((byte) => byte !== 0);
    else if (b.tag === implicit(1)) bounded = true;
    else throw new DerError("invalid nameConstraints subtree");
  }
  return { base, bounded };
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
