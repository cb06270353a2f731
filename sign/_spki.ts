// Public keys and signatures with WebCrypto only: a public key's type from
// its SubjectPublicKeyInfo, ECDSA signature conversion, signature checks and
// PEM. No node: modules and no ASN.1 library (a minimal DER reader), so that
// key-signed bundles verify in browsers too. Certificates are in _x509.ts.
import { pemBlocks as pemText } from "./_pem_text.ts";

/** DER or PEM input that cannot be read. */
export class DerError extends Error {
  /** Creates the error. */
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "DerError";
  }
}

/** Universal tags this reader's users look for. */
export const SEQUENCE = 0x30;
export const BIT_STRING = 0x03;
export const INTEGER = 0x02;
export const OBJECT_ID = 0x06;

/** One DER element: its tag, where it starts, where its value starts, and where it ends. */
export interface Tlv {
  tag: number;
  start: number;
  value: number;
  end: number;
}

/** Reads the DER element at `at` (definite, minimal lengths; one-byte tags). */
export function readTlv(der: Uint8Array, at: number, end: number): Tlv {
  if (at + 2 > end) throw new DerError("invalid DER (truncated)");
  const tag = der[at]!;
  if ((tag & 0x1f) === 0x1f) throw new DerError("invalid DER (multi-byte tag)");
  let length = der[at + 1]!;
  let p = at + 2;
  if (length & 0x80) {
    const n = length & 0x7f;
    if (n === 0 || n > 4 || p + n > end) throw new DerError("invalid DER (length)");
    length = 0;
    for (let i = 0; i < n; i++) length = length * 256 + der[p++]!;
    if (length < 0x80 || der[at + 2] === 0) throw new DerError("invalid DER (non-minimal length)");
  }
  if (p + length > end) throw new DerError("invalid DER (truncated)");
  return { tag, start: at, value: p, end: p + length };
}

/** The elements inside a constructed one. */
export function children(der: Uint8Array, parent: Tlv): Tlv[] {
  const out: Tlv[] = [];
  for (let at = parent.value; at < parent.end;) {
    const tlv = readTlv(der, at, parent.end);
    out.push(tlv);
    at = tlv.end;
  }
  return out;
}

/** Decodes an OBJECT IDENTIFIER to its dotted form. */
export function readOid(der: Uint8Array, tlv: Tlv | undefined, what: string): string {
  if (tlv?.tag !== OBJECT_ID || tlv.end === tlv.value) throw new DerError(`missing ${what}`);
  const arcs: number[] = [];
  let v = 0;
  for (let i = tlv.value; i < tlv.end; i++) {
    const b = der[i]!;
    v = v * 128 + (b & 0x7f);
    if (v > Number.MAX_SAFE_INTEGER / 128) throw new DerError(`invalid ${what}`);
    if (b & 0x80) continue;
    if (arcs.length === 0) arcs.push(v < 80 ? Math.floor(v / 40) : 2, v < 80 ? v % 40 : v - 80);
    else arcs.push(v);
    v = 0;
  }
  if (der[tlv.end - 1]! & 0x80) throw new DerError(`invalid ${what}`);
  return arcs.join(".");
}

/** A public key's type, read from its SPKI. */
export type KeyType =
  | { kind: "ec"; curve: "P-256" | "P-384" | "P-521" }
  | { kind: "rsa" }
  | { kind: "ed25519" };

const CURVES: Record<string, "P-256" | "P-384" | "P-521"> = {
  "1.2.840.10045.3.1.7": "P-256",
  "1.3.132.0.34": "P-384",
  "1.3.132.0.35": "P-521",
};

/** Reads the key type of a DER SubjectPublicKeyInfo; throws `DerError`. */
export function spkiKeyType(spki: Uint8Array): KeyType {
  const root = readTlv(spki, 0, spki.length);
  if (root.tag !== SEQUENCE || root.end !== spki.length) throw new DerError("invalid SPKI");
  const [alg, key] = children(spki, root);
  if (alg?.tag !== SEQUENCE) throw new DerError("missing algorithm");
  if (key?.tag !== BIT_STRING) throw new DerError("invalid public key");
  const [id, params] = children(spki, alg);
  const oid = readOid(spki, id, "key algorithm");
  switch (oid) {
    case "1.2.840.10045.2.1": {
      const curveOid = readOid(spki, params, "curve");
      const curve = CURVES[curveOid];
      if (curve === undefined) throw new DerError(`unsupported elliptic curve ${curveOid}`);
      return { kind: "ec", curve };
    }
    case "1.2.840.113549.1.1.1":
      return { kind: "rsa" };
    case "1.3.101.112":
      return { kind: "ed25519" };
    default:
      throw new DerError(`unsupported key algorithm ${oid}`);
  }
}

/** The hash ECDSA signatures conventionally use with a curve. */
export function curveHash(curve: "P-256" | "P-384" | "P-521"): Hash {
  return curve === "P-256" ? "SHA-256" : curve === "P-384" ? "SHA-384" : "SHA-512";
}

/** A WebCrypto hash name. */
export type Hash = "SHA-256" | "SHA-384" | "SHA-512";

/** How a signature was made: scheme and hash. */
export type SignatureScheme =
  | { kind: "ecdsa"; hash: Hash }
  | { kind: "rsa-pkcs1"; hash: Hash }
  | { kind: "rsa-pss"; hash: Hash }
  | { kind: "ed25519" };

const FIELD_BYTES = { "P-256": 32, "P-384": 48, "P-521": 66 } as const;

/**
 * Converts a DER `ECDSA-Sig-Value` (SEQUENCE of r, s) to the fixed-width
 * `r || s` form WebCrypto expects; `undefined` if it is not one.
 */
export function ecdsaDerToP1363(
  sig: Uint8Array,
  curve: "P-256" | "P-384" | "P-521",
): Uint8Array | undefined {
  const size = FIELD_BYTES[curve];
  let ints: Tlv[];
  try {
    const seq = readTlv(sig, 0, sig.length);
    if (seq.tag !== SEQUENCE || seq.end !== sig.length) return undefined;
    ints = children(sig, seq);
  } catch {
    return undefined;
  }
  if (ints.length !== 2) return undefined;
  const out = new Uint8Array(2 * size);
  for (const [i, int] of ints.entries()) {
    let v = sig.subarray(int.value, int.end);
    if (int.tag !== INTEGER || v.length === 0 || (v[0]! & 0x80) !== 0) return undefined;
    // DER: one leading zero only, and only before a byte with its top bit set.
    if (v[0] === 0) {
      if (v.length < 2 || (v[1]! & 0x80) === 0) return undefined;
      v = v.subarray(1);
    }
    if (v.length > size) return undefined;
    out.set(v, i * size + size - v.length);
  }
  return out;
}

/**
 * Verifies `signature` over `data` with the SPKI key under `scheme`. Returns
 * false for a wrong signature, a malformed one, or a key that does not fit
 * the scheme; never throws.
 */
export async function verifyWithSpki(
  spki: Uint8Array,
  scheme: SignatureScheme,
  signature: Uint8Array,
  data: Uint8Array,
): Promise<boolean> {
  let type: KeyType;
  try {
    type = spkiKeyType(spki);
  } catch {
    return false;
  }
  const key = spki as BufferSource;
  const body = data as BufferSource;
  try {
    switch (scheme.kind) {
      case "ecdsa": {
        if (type.kind !== "ec") return false;
        const raw = ecdsaDerToP1363(signature, type.curve);
        if (raw === undefined) return false;
        const k = await crypto.subtle.importKey(
          "spki",
          key,
          { name: "ECDSA", namedCurve: type.curve },
          false,
          ["verify"],
        );
        return await crypto.subtle.verify(
          { name: "ECDSA", hash: scheme.hash },
          k,
          raw as BufferSource,
          body,
        );
      }
      case "rsa-pkcs1":
      case "rsa-pss": {
        if (type.kind !== "rsa") return false;
        const name = scheme.kind === "rsa-pss" ? "RSA-PSS" : "RSASSA-PKCS1-v1_5";
        const k = await crypto.subtle.importKey("spki", key, { name, hash: scheme.hash }, false, [
          "verify",
        ]);
        const saltLength = scheme.hash === "SHA-256" ? 32 : scheme.hash === "SHA-384" ? 48 : 64;
        return await crypto.subtle.verify(
          { name, saltLength },
          k,
          signature as BufferSource,
          body,
        );
      }
      case "ed25519": {
        if (type.kind !== "ed25519") return false;
        const k = await crypto.subtle.importKey("spki", key, { name: "Ed25519" }, false, [
          "verify",
        ]);
        return await crypto.subtle.verify({ name: "Ed25519" }, k, signature as BufferSource, body);
      }
    }
  } catch {
    return false;
  }
}

/** Decodes every `-----BEGIN <label>-----` block of a PEM text to DER. */
export function pemBlocks(text: string, label: string): Uint8Array[] {
  try {
    return pemText(text).filter((b) => b.label === label).map((b) => b.der);
  } catch (e) {
    throw new DerError(`invalid base64 in PEM ${label}`, { cause: e });
  }
}
