/**
 * PEM, base64 and EC private-key helpers shared by the signers.
 *
 * @module
 */

import { Buffer } from "node:buffer";
export { sha256Hex } from "../hash/_digest.ts";
import { createPrivateKey, createPublicKey, type KeyObject } from "node:crypto";

export { base64Decode, base64Encode, type PemBlock, pemBlocks, toPem } from "./_pem_text.ts";
import { pemBlocks, toPem } from "./_pem_text.ts";

/** The curves the signers accept, with the hash each one signs with. */
const CURVES = {
  prime256v1: { curve: "P-256", hash: "SHA-256", details: "PKIX_ECDSA_P256_SHA_256", size: 32 },
  secp384r1: { curve: "P-384", hash: "SHA-384", details: "PKIX_ECDSA_P384_SHA_384", size: 48 },
  secp521r1: { curve: "P-521", hash: "SHA-512", details: "PKIX_ECDSA_P521_SHA_512", size: 66 },
} as const;

/** An EC private key ready for WebCrypto signing. */
export interface EcKey {
  /** WebCrypto curve name. */
  curve: "P-256" | "P-384" | "P-521";
  /** The hash ECDSA uses with this curve (Sigstore pairs P-256/SHA-256, P-384/SHA-384, P-521/SHA-512). */
  hash: "SHA-256" | "SHA-384" | "SHA-512";
  /** Sigstore `PublicKeyDetails` name. */
  keyDetails: "PKIX_ECDSA_P256_SHA_256" | "PKIX_ECDSA_P384_SHA_384" | "PKIX_ECDSA_P521_SHA_512";
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
 * Parses an EC private key PEM (PKCS#8 `PRIVATE KEY`, encrypted PKCS#8
 * `ENCRYPTED PRIVATE KEY` with `password`, or SEC1 `EC PRIVATE KEY`) on
 * P-256, P-384 or P-521. Parsing is synchronous so bad keys are refused when a
 * signer is created; the WebCrypto import happens on first use.
 *
 * @throws {TypeError} No private key block, an encrypted key without (or
 * with the wrong) password, or another algorithm or curve.
 */
export function loadEcPrivateKey(pem: string, what: string, password?: string): EcKey {
  if (typeof pem !== "string") {
    throw new TypeError(`Cannot create ${what}: expected a PEM string, found ${typeof pem}`);
  }
  const block = pemBlocks(pem).find((b) =>
    b.label === "PRIVATE KEY" || b.label === "EC PRIVATE KEY" ||
    b.label === "ENCRYPTED PRIVATE KEY"
  );
  if (block === undefined) {
    const labels = pemBlocks(pem).map((b) => b.label);
    throw new TypeError(
      `Cannot create ${what}: expected a "PRIVATE KEY", "ENCRYPTED PRIVATE KEY" or "EC PRIVATE KEY" PEM block, found ${
        labels.length === 0 ? "none" : labels.map((l) => `"${l}"`).join(", ")
      }`,
    );
  }
  const encrypted = block.label === "ENCRYPTED PRIVATE KEY";
  if (encrypted && (password === undefined || password === "")) {
    throw new TypeError(
      `Cannot create ${what}: the private key is encrypted; give its password (the CLI asks for it on a terminal, or reads SAFEMODELS_KEY_PASSWORD or --key-password-file)`,
    );
  }
  let key: KeyObject;
  try {
    key = createPrivateKey({
      key: Buffer.from(block.der),
      format: "der",
      type: block.label === "EC PRIVATE KEY" ? "sec1" : "pkcs8",
      ...(encrypted ? { passphrase: password } : {}),
    });
  } catch (cause) {
    throw new TypeError(
      encrypted
        ? `Cannot create ${what}: the private key could not be decrypted (wrong password?)`
        : `Cannot create ${what}: the private key could not be parsed`,
      { cause },
    );
  }
  if (key.asymmetricKeyType !== "ec") {
    throw new TypeError(
      `Cannot create ${what}: expected an EC key (P-256, P-384 or P-521), found ${key.asymmetricKeyType}`,
    );
  }
  const named = key.asymmetricKeyDetails?.namedCurve ?? "unknown";
  const info = Object.hasOwn(CURVES, named) ? CURVES[named as keyof typeof CURVES] : undefined;
  if (info === undefined) {
    throw new TypeError(
      `Cannot create ${what}: expected curve P-256, P-384 or P-521, found ${named}`,
    );
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
