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
export { checkSigner, init, Issuer, resolvePolicy, toPolicy } from "./policy.ts";
export type { Matcher, TrustPolicy } from "./policy.ts";
export { lockedSigner, Lockfile } from "./lockfile.ts";
export type { LockCheckOptions, LockedSigner, LockEntry, LockResult } from "./lockfile.ts";
