/**
 * Signing with a local EC private key, as `model_signing sign key` does.
 *
 * @module
 */

import { loadEcPrivateKey, sha256Hex } from "./_pem.ts";
import { signDsseBundle } from "./_sign_dsse.ts";
import type { Signer } from "./types.ts";

/** Options for {@linkcode keySigner} and `certificateSigner`. */
export interface KeySignerOptions {
  /** The password of an encrypted PKCS#8 key (`ENCRYPTED PRIVATE KEY`). */
  password?: string;
}

/**
 * Creates a signer that signs DSSE envelopes with an EC private key (P-256
 * with SHA-256, P-384 with SHA-384 or P-521 with SHA-512), offline. The bundle is a Sigstore
 * v0.3 bundle as `model_signing` writes it: `verificationMaterial.publicKey`
 * holds only a `hint`, the SHA-256 hex of the public key's PEM, so verifiers
 * must be given the public key; the signature is DER ECDSA over the DSSE
 * pre-authentication encoding, with an empty `keyid`.
 *
 * @example Signing a statement
 * ```ts
 * import { keySigner } from "@safemodels/safemodels/sign";
 * import assert from "node:assert/strict";
 *
 * const pair = await crypto.subtle.generateKey({ name: "ECDSA", namedCurve: "P-256" }, true, [
 *   "sign",
 *   "verify",
 * ]);
 * const pkcs8 = new Uint8Array(await crypto.subtle.exportKey("pkcs8", pair.privateKey));
 * const pem = `-----BEGIN PRIVATE KEY-----\n${btoa(String.fromCharCode(...pkcs8))}\n-----END PRIVATE KEY-----\n`;
 *
 * const bundle = await keySigner(pem).sign(
 *   new TextEncoder().encode("{}"),
 *   "application/vnd.in-toto+json",
 * );
 * assert.equal(bundle.mediaType, "application/vnd.dev.sigstore.bundle.v0.3+json");
 * assert.match((bundle.verificationMaterial.publicKey as { hint: string }).hint, /^[0-9a-f]{64}$/);
 * ```
 *
 * @param privateKeyPem PEM text holding a PKCS#8 (`PRIVATE KEY`), encrypted
 * PKCS#8 (`ENCRYPTED PRIVATE KEY`, with `options.password`) or SEC1
 * (`EC PRIVATE KEY`) EC private key; text around the block is ignored.
 * @param options The password of an encrypted key.
 * @returns A {@linkcode Signer} whose `sign` resolves to the bundle.
 * @throws {TypeError} The PEM holds no private key, the key is encrypted and
 * the password missing or wrong, it is unparsable, or it is not an EC key on
 * P-256, P-384 or P-521.
 */
export function keySigner(privateKeyPem: string, options: KeySignerOptions = {}): Signer {
  const key = loadEcPrivateKey(privateKeyPem, "key signer", options.password);
  let hint: Promise<string> | undefined;
  return {
    async sign(payload, payloadType) {
      hint ??= sha256Hex(new TextEncoder().encode(key.publicKeyPem));
      return signDsseBundle(key, payload, payloadType, {
        publicKey: { hint: await hint },
        tlogEntries: [],
      });
    },
  };
}
