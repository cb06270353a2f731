/**
 * DSSE signing with a local EC key, shared by `keySigner` and
 * `certificateSigner`.
 *
 * @module
 */

import { base64Encode, type EcKey } from "./_pem.ts";
import { dssePae } from "./_dsse.ts";
import type { SigstoreBundle } from "./types.ts";

/** The bundle media type `model_signing` writes for key and certificate signatures. */
export const BUNDLE_V03_MEDIA_TYPE = "application/vnd.dev.sigstore.bundle.v0.3+json";

/** DER INTEGER encoding of an unsigned big-endian scalar. */
function derInteger(scalar: Uint8Array): number[] {
  let start = 0;
  while (start < scalar.length - 1 && scalar[start] === 0) start++;
  const bytes = Array.from(scalar.subarray(start));
  // A set high bit would read as negative: prefix a zero byte.
  if ((bytes[0] ?? 0) & 0x80) bytes.unshift(0);
  return [0x02, bytes.length, ...bytes];
}

/**
 * Converts a WebCrypto ECDSA signature (IEEE P1363 `r || s`) to the DER
 * `ECDSA-Sig-Value` Sigstore bundles and `model_signing` carry.
 */
export function p1363ToDer(signature: Uint8Array): Uint8Array<ArrayBuffer> {
  const half = signature.length / 2;
  const body = [
    ...derInteger(signature.subarray(0, half)),
    ...derInteger(signature.subarray(half)),
  ];
  // P-256 and P-384 signatures stay under 128 bytes (short-form length);
  // P-521's can reach 139 (one length byte after 0x81).
  return new Uint8Array(
    body.length < 0x80 ? [0x30, body.length, ...body] : [0x30, 0x81, body.length, ...body],
  );
}

/**
 * Signs the PAE of `payload` and returns a v0.3 bundle with the given
 * verification material.
 */
export async function signDsseBundle(
  key: EcKey,
  payload: Uint8Array,
  payloadType: string,
  verificationMaterial: Record<string, unknown>,
): Promise<SigstoreBundle> {
  if (!(payload instanceof Uint8Array)) {
    throw new TypeError(
      `Cannot sign: expected the payload as a Uint8Array, found ${typeof payload}`,
    );
  }
  if (typeof payloadType !== "string" || payloadType === "") {
    throw new TypeError("Cannot sign: expected a non-empty payload type");
  }
  const raw = new Uint8Array(
    await crypto.subtle.sign(
      { name: "ECDSA", hash: key.hash },
      await key.cryptoKey(),
      dssePae(payloadType, payload) as Uint8Array<ArrayBuffer>,
    ),
  );
  return {
    mediaType: BUNDLE_V03_MEDIA_TYPE,
    verificationMaterial,
    dsseEnvelope: {
      payload: base64Encode(payload),
      payloadType,
      // `model_signing` sets an empty key id.
      signatures: [{ sig: base64Encode(p1363ToDer(raw)), keyid: "" }],
    },
  };
}
