/**
 * Sign models and verify their signatures against a trust policy: Sigstore
 * keyless (OIDC), key and certificate signatures, embedded in the safetensors
 * header or detached in the OpenSSF Model Signing (OMS) format that Python's
 * `model_signing` writes.
 *
 * @example Telling failures apart
 * ```ts
 * import { HashMismatch, InvalidSignature } from "@safemodels/safemodels/sign";
 * import assert from "node:assert/strict";
 *
 * const e: Error = new HashMismatch("a", "b");
 * assert.ok(!(e instanceof InvalidSignature));
 * ```
 *
 * @module
 */

export { HashMismatch, HashMissing, InvalidSignature, SignatureMissing } from "./errors.ts";
export type { InvalidSignatureCode, SignErrorOptions } from "./errors.ts";
export type { Signer, SigstoreBundle, TrustMaterial, VerifiedSigner } from "./types.ts";
