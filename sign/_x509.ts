/**
 * Just enough X.509 and public-key handling for verification: reading
 * certificates and SPKI keys into plain values (DER via `@sigstore/core`'s
 * ASN.1 parser), PEM, and signature checks with WebCrypto.
 *
 * @module
 */

import { Buffer } from "node:buffer";
export { sha256Hex, toPem } from "./_pem.ts";
import { ASN1Obj } from "@sigstore/core";
import { DerError, type SignatureScheme } from "./_spki.ts";
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

/** Parses one DER object, turning every parser failure into a `DerError`. */
export function parseDer(der: Uint8Array): ASN1Obj {
  try {
    return ASN1Obj.parseBuffer(Buffer.from(der));
  } catch (e) {
    throw new DerError(`invalid DER (${e instanceof Error ? e.message : String(e)})`, {
      cause: e,
    });
  }
}

function sub(obj: ASN1Obj, index: number, what: string): ASN1Obj {
  const s = obj.subs[index];
  if (s === undefined) throw new DerError(`missing ${what}`);
  return s;
}

/** Runs a conversion (`toOID`, `toDate`, …) reporting failures as `DerError`. */
function field<T>(what: string, read: () => T): T {
  try {
    return read();
  } catch (e) {
    if (e instanceof DerError) throw e;
    throw new DerError(`invalid ${what}`, { cause: e });
  }
}

const bytes = (b: Uint8Array): Uint8Array => new Uint8Array(b);

/** Encoded size of an object (single-byte tag, minimal DER length as the parser enforces). */
function tlvSize(obj: ASN1Obj): number {
  const n = obj.value.length;
  let lenBytes = 1;
  if (n >= 128) { for (let v = n; v > 0; v = Math.floor(v / 256)) lenBytes++; }
  return 1 + lenBytes + n;
}

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

/** Formats a Name as `CN=x, O=y` (in encoded order), for messages. */
function formatName(name: ASN1Obj): string {
  const parts: string[] = [];
  for (const rdn of name.subs) {
    for (const attr of rdn.subs) {
      const oid = field("name attribute", () => sub(attr, 0, "attribute type").toOID());
      const value = utf8.decode(sub(attr, 1, "attribute value").value);
      parts.push(`${NAME_KEYS[oid] ?? oid}=${value}`);
    }
  }
  return parts.length === 0 ? "(empty name)" : parts.join(", ");
}

/** Parses a DER certificate; throws `DerError` when it is not one. */
export function parseCertificate(der: Uint8Array): Certificate {
  const root = parseDer(der);
  const tbsObj = sub(root, 0, "tbsCertificate");
  const sigAlg = sub(root, 1, "signatureAlgorithm");
  const sigValue = sub(root, 2, "signatureValue");
  // The version field is optional ([0] EXPLICIT), shifting the others.
  const first = sub(tbsObj, 0, "tbsCertificate fields");
  const off = first.tag.isContextSpecific(0) ? 1 : 0;
  const issuerObj = sub(tbsObj, 2 + off, "issuer");
  const validity = sub(tbsObj, 3 + off, "validity");
  const subjectObj = sub(tbsObj, 4 + off, "subject");
  const spkiObj = sub(tbsObj, 5 + off, "subjectPublicKeyInfo");
  if (!sigValue.tag.isBitString() || sigValue.value.length < 1) {
    throw new DerError("invalid signatureValue");
  }
  const cert: Certificate = {
    der: bytes(der),
    // The signed bytes exactly as encoded, not a re-encoding of the parse.
    tbs: bytes(der.subarray(tlvSize(root) - root.value.length).subarray(0, tlvSize(tbsObj))),
    issuer: bytes(issuerObj.toDER()),
    subject: bytes(subjectObj.toDER()),
    issuerName: formatName(issuerObj),
    subjectName: formatName(subjectObj),
    notBefore: field("notBefore", () => sub(validity, 0, "notBefore").toDate()),
    notAfter: field("notAfter", () => sub(validity, 1, "notAfter").toDate()),
    spki: bytes(spkiObj.toDER()),
    signatureAlgorithm: field("signature algorithm", () => sub(sigAlg, 0, "algorithm").toOID()),
    signature: bytes(sigValue.value.subarray(1)),
    basicConstraints: undefined,
    keyUsage: undefined,
    emails: [],
    uris: [],
    extensions: new Map(),
  };
  if (Number.isNaN(cert.notBefore.getTime()) || Number.isNaN(cert.notAfter.getTime())) {
    throw new DerError("invalid validity dates");
  }
  const extsWrapper = tbsObj.subs.find((s) => s.tag.isContextSpecific(3));
  for (const ext of extsWrapper?.subs[0]?.subs ?? []) {
    const oid = field("extension", () => sub(ext, 0, "extension id").toOID());
    const valueObj = sub(ext, ext.subs.length - 1, "extension value");
    if (!valueObj.tag.isOctetString()) throw new DerError(`invalid extension ${oid}`);
    if (cert.extensions.has(oid)) throw new DerError(`duplicate extension ${oid}`);
    cert.extensions.set(oid, bytes(valueObj.value));
    readExtension(cert, oid, valueObj.value);
  }
  return cert;
}

function readExtension(cert: Certificate, oid: string, value: Uint8Array): void {
  switch (oid) {
    case "2.5.29.19": { // basicConstraints
      const seq = parseDer(value);
      let ca = false;
      let pathLen: number | undefined;
      for (const s of seq.subs) {
        if (s.tag.isBoolean()) ca = field("basicConstraints", () => s.toBoolean());
        else if (s.tag.isInteger()) {
          pathLen = Number(field("basicConstraints", () => s.toInteger()));
        }
      }
      cert.basicConstraints = { ca, pathLen };
      break;
    }
    case "2.5.29.15": // keyUsage
      cert.keyUsage = field("keyUsage", () => parseDer(value).toBitString());
      break;
    case "2.5.29.17": // subjectAltName: [1] rfc822Name, [6] URI (IMPLICIT IA5String)
      for (const name of parseDer(value).subs) {
        if (name.tag.isContextSpecific(1)) cert.emails.push(utf8.decode(name.value));
        else if (name.tag.isContextSpecific(6)) cert.uris.push(utf8.decode(name.value));
      }
      break;
  }
}

/** Reads a DER UTF8String/IA5String/PrintableString as text, or `undefined`. */
export function derString(value: Uint8Array): string | undefined {
  try {
    const obj = parseDer(value);
    // UTF8String (12), PrintableString (19), IA5String (22)
    if (obj.tag.isUniversal() && [12, 19, 22].includes(obj.tag.number)) {
      return utf8.decode(obj.value);
    }
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
