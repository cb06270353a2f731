/**
 * Signing with an EC private key and its X.509 certificate chain, as
 * `model_signing sign certificate` does.
 *
 * @module
 */

import { Buffer } from "node:buffer";
import { X509Certificate } from "@sigstore/core";
import { base64Encode, loadEcPrivateKey, pemBlocks } from "./_pem.ts";
import type { KeySignerOptions } from "./key_signer.ts";
import { signDsseBundle } from "./_sign_dsse.ts";
import type { Signer } from "./types.ts";

const WHAT = "certificate signer";

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((byte, i) => byte === b[i]);
}

/**
 * Creates a signer that signs DSSE envelopes with an EC private key (P-256
 * or P-384) and ships its certificate chain, offline. The bundle is a
 * Sigstore v0.3 bundle as `model_signing` writes it:
 * `verificationMaterial.x509CertificateChain.certificates` lists the DER
 * certificates leaf first, then the intermediates in the order given (the
 * root is normally left out: verifiers bring their own). Verifiers must
 * check the chain against their trusted roots; note that `@sigstore/bundle`
 * refuses v0.3 bundles with a chain, so use this library's verifier.
 *
 * @example Signing with a leaf and an intermediate
 * ```ts ignore
 * import { certificateSigner } from "@safemodels/safemodels/sign";
 *
 * const signer = certificateSigner(
 *   await Deno.readTextFile("signing-key.pem"),
 *   [await Deno.readTextFile("signing-cert.pem"), await Deno.readTextFile("int-ca-cert.pem")],
 * );
 * const bundle = await signer.sign(new TextEncoder().encode("{}"), "application/vnd.in-toto+json");
 * console.log(bundle.verificationMaterial.x509CertificateChain);
 * ```
 *
 * @param privateKeyPem PEM text holding a PKCS#8 (`PRIVATE KEY`), encrypted
 * PKCS#8 (`ENCRYPTED PRIVATE KEY`, with `options.password`) or SEC1
 * (`EC PRIVATE KEY`) EC private key on P-256, P-384 or P-521.
 * @param chainPems PEM texts, the signing (leaf) certificate first, then its
 * intermediates; a text may hold several `CERTIFICATE` blocks, taken in order.
 * @param options The password of an encrypted key.
 * @returns A {@linkcode Signer} whose `sign` resolves to the bundle.
 * @throws {TypeError} The key is not a usable EC private key, the chain is
 * empty or holds something other than certificates, a certificate cannot be
 * parsed, or the leaf certificate's public key is not the private key's.
 */
export function certificateSigner(
  privateKeyPem: string,
  chainPems: string[],
  options: KeySignerOptions = {},
): Signer {
  const key = loadEcPrivateKey(privateKeyPem, WHAT, options.password);
  if (!Array.isArray(chainPems)) {
    throw new TypeError(`Cannot create ${WHAT}: expected an array of PEM certificates`);
  }
  const ders: Uint8Array[] = [];
  for (const [index, pem] of chainPems.entries()) {
    if (typeof pem !== "string") {
      throw new TypeError(
        `Cannot create ${WHAT}: expected certificate ${index} as a PEM string, found ${typeof pem}`,
      );
    }
    const blocks = pemBlocks(pem);
    const other = blocks.find((b) => b.label !== "CERTIFICATE");
    if (blocks.length === 0 || other !== undefined) {
      throw new TypeError(
        `Cannot create ${WHAT}: expected "CERTIFICATE" PEM blocks in chain entry ${index}, found ${
          other === undefined ? "none" : `"${other.label}"`
        }`,
      );
    }
    for (const block of blocks) ders.push(block.der);
  }
  const leafDer = ders[0];
  if (leafDer === undefined) {
    throw new TypeError(`Cannot create ${WHAT}: expected at least the signing certificate`);
  }
  // `X509Certificate.parse` decodes lazily: touch the fields so a malformed
  // certificate fails here, not when the key is compared.
  const keys = ders.map((der, index) => {
    try {
      const cert = X509Certificate.parse(Buffer.from(der));
      const fields = [cert.subject, cert.issuer, cert.notAfter];
      return fields.length > 0 ? new Uint8Array(cert.publicKey) : undefined;
    } catch (cause) {
      throw new TypeError(`Cannot create ${WHAT}: certificate ${index} could not be parsed`, {
        cause,
      });
    }
  });
  const leafKey = keys[0];
  if (leafKey === undefined || !sameBytes(leafKey, key.spki)) {
    throw new TypeError(
      `Cannot create ${WHAT}: the signing certificate's public key does not match the private key`,
    );
  }
  const rawBytes = ders.map((der) => base64Encode(der));
  return {
    sign(payload, payloadType) {
      // Fresh material per bundle, so editing one bundle never changes another.
      return signDsseBundle(key, payload, payloadType, {
        x509CertificateChain: { certificates: rawBytes.map((b64) => ({ rawBytes: b64 })) },
        tlogEntries: [],
      });
    },
  };
}
