/**
 * PEM, base64 and EC private-key helpers shared by the signers.
 *
 * @module
 */

import { Buffer } from "node:buffer";
export { sha256Hex } from "../hash/_digest.ts";
import { createPrivateKey, createPublicKey, type KeyObject } from "node:crypto";

/** One `-----BEGIN <label>-----` block of a PEM text, decoded. */
export interface PemBlock {
  /** The label, e.g. `CERTIFICATE` or `EC PRIVATE KEY`. */
  label: string;
  /** The decoded DER bytes. */
  der: Uint8Array<ArrayBuffer>;
}

const BLOCK = /-----BEGIN ([A-Z0-9 ]+)-----([\s\S]*?)-----END \1-----/g;

/**
 * Returns the PEM blocks of `text`, in order. Text around the blocks (such
 * as the human-readable dump GnuTLS writes before them) is ignored.
 */
export function pemBlocks(text: string): PemBlock[] {
  const blocks: PemBlock[] = [];
  for (const match of text.matchAll(BLOCK)) {
    const label = match[1] ?? "";
    const body = (match[2] ?? "").replace(/\s+/g, "");
    blocks.push({ label, der: base64Decode(body) });
  }
  return blocks;
}

/** Encodes DER as PEM: 64-character lines and a final newline, as OpenSSL writes. */
export function toPem(label: string, der: Uint8Array): string {
  const b64 = base64Encode(der);
  const lines = [`-----BEGIN ${label}-----`];
  for (let i = 0; i < b64.length; i += 64) lines.push(b64.slice(i, i + 64));
  lines.push(`-----END ${label}-----`, "");
  return lines.join("\n");
}

/** Standard base64 (with padding) of `bytes`. */
export function base64Encode(bytes: Uint8Array): string {
  let binary = "";
  // Chunked so String.fromCharCode never gets too many arguments.
  for (let i = 0; i < bytes.length; i += 0x8000) {
    binary += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  }
  return btoa(binary);
}

/** Decodes standard base64; throws `TypeError` on malformed input. */
export function base64Decode(text: string): Uint8Array<ArrayBuffer> {
  let binary: string;
  try {
    binary = atob(text);
  } catch (cause) {
    throw new TypeError("Cannot decode base64: the text is not valid base64", { cause });
  }
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  return bytes;
}

/** The curves the signers accept, with the hash each one signs with. */
const CURVES = {
  prime256v1: { curve: "P-256", hash: "SHA-256", details: "PKIX_ECDSA_P256_SHA_256", size: 32 },
  secp384r1: { curve: "P-384", hash: "SHA-384", details: "PKIX_ECDSA_P384_SHA_384", size: 48 },
} as const;

/** An EC private key ready for WebCrypto signing. */
export interface EcKey {
  /** WebCrypto curve name. */
  curve: "P-256" | "P-384";
  /** The hash ECDSA uses with this curve (Sigstore pairs P-256/SHA-256, P-384/SHA-384). */
  hash: "SHA-256" | "SHA-384";
  /** Sigstore `PublicKeyDetails` name. */
  keyDetails: "PKIX_ECDSA_P256_SHA_256" | "PKIX_ECDSA_P384_SHA_384";
  /** Byte length of r and s. */
  scalarSize: number;
  /** The public key's SubjectPublicKeyInfo DER. */
  spki: Uint8Array<ArrayBuffer>;
  /** The public key as `PUBLIC KEY` PEM (what `model_signing` hashes for the hint). */
  publicKeyPem: string;
  /** Imports the private key into WebCrypto (once). */
  cryptoKey(): Promise<CryptoKey>;
}

/**
 * Parses an EC private key PEM (PKCS#8 `PRIVATE KEY` or SEC1 `EC PRIVATE
 * KEY`) on P-256 or P-384. Parsing is synchronous so bad keys are refused
 * when a signer is created; the WebCrypto import happens on first use.
 *
 * @throws {TypeError} No private key block, an encrypted key, or another
 * algorithm or curve.
 */
export function loadEcPrivateKey(pem: string, what: string): EcKey {
  if (typeof pem !== "string") {
    throw new TypeError(`Cannot create ${what}: expected a PEM string, found ${typeof pem}`);
  }
  const block = pemBlocks(pem).find((b) =>
    b.label === "PRIVATE KEY" || b.label === "EC PRIVATE KEY"
  );
  if (block === undefined) {
    const labels = pemBlocks(pem).map((b) => b.label);
    throw new TypeError(
      `Cannot create ${what}: expected a "PRIVATE KEY" or "EC PRIVATE KEY" PEM block, found ${
        labels.length === 0 ? "none" : labels.map((l) => `"${l}"`).join(", ")
      }`,
    );
  }
  let key: KeyObject;
  try {
    key = createPrivateKey({
      key: Buffer.from(block.der),
      format: "der",
      type: block.label === "EC PRIVATE KEY" ? "sec1" : "pkcs8",
    });
  } catch (cause) {
    throw new TypeError(`Cannot create ${what}: the private key could not be parsed`, { cause });
  }
  if (key.asymmetricKeyType !== "ec") {
    throw new TypeError(
      `Cannot create ${what}: expected an EC key (P-256 or P-384), found ${key.asymmetricKeyType}`,
    );
  }
  const named = key.asymmetricKeyDetails?.namedCurve ?? "unknown";
  const info = named === "prime256v1" || named === "secp384r1" ? CURVES[named] : undefined;
  if (info === undefined) {
    throw new TypeError(`Cannot create ${what}: expected curve P-256 or P-384, found ${named}`);
  }
  const spki = new Uint8Array(createPublicKey(key).export({ type: "spki", format: "der" }));
  const pkcs8 = new Uint8Array(key.export({ type: "pkcs8", format: "der" }));
  let imported: Promise<CryptoKey> | undefined;
  return {
    curve: info.curve,
    hash: info.hash,
    keyDetails: info.details,
    scalarSize: info.size,
    spki,
    publicKeyPem: toPem("PUBLIC KEY", spki),
    cryptoKey() {
      imported ??= crypto.subtle.importKey(
        "pkcs8",
        pkcs8,
        { name: "ECDSA", namedCurve: info.curve },
        false,
        ["sign"],
      );
      return imported;
    },
  };
}
