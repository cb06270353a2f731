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

export {
  EvidenceError,
  HashMismatch,
  HashMissing,
  InvalidSignature,
  OidcError,
  PolicyError,
  SignatureMissing,
  SignError,
  VerificationError,
} from "./errors.ts";
export type {
  EvidenceErrorCode,
  HashMismatchCode,
  HashMismatchOptions,
  InvalidSignatureCode,
  OidcErrorCode,
  PolicyCode,
  SignatureMissingCode,
  SignatureMissingOptions,
  SignErrorCode,
  SignErrorOptions,
  VerificationCode,
} from "./errors.ts";
export { decideFile, refusal, sameModelName } from "./evidence.ts";
export type {
  EmbeddedFinding,
  EvidenceKind,
  FileQuestion,
  ModelRequest,
  OmsFinding,
  PinFinding,
  RefusalError,
  Verdict,
} from "./evidence.ts";
export type { Signer, SigstoreBundle, TrustMaterial, VerifiedSigner } from "./types.ts";
export {
  checkSigner,
  FULCIO_EXTENSIONS,
  init,
  Issuer,
  resolvePolicy,
  signatureRequirement,
  toPolicy,
} from "./policy.ts";
export type { FulcioExtension, Matcher, ModelPolicy, TrustPolicy } from "./policy.ts";
export { verifyBundle } from "./verify_bundle.ts";
export type { VerifiedBundleResult, VerifyBundleOptions } from "./verify_bundle.ts";
export { lockedSigner, Lockfile, normalizeDigest } from "./lockfile.ts";
export type {
  FoundEntry,
  LockCheckOptions,
  LockedSigner,
  LockEntry,
  LockResult,
} from "./lockfile.ts";
export { DEFAULT_HUB_URL, METADATA_KEYS, SafeModel } from "./safe_model.ts";
export type { FromHfOptions, FromSafetensorOptions, SignSafetensorOptions } from "./safe_model.ts";
export { modelDigest, signModel } from "./sign_model.ts";
export type { ModelDigestOptions, SignModelOptions } from "./sign_model.ts";
export { verifyModel } from "./verify_model.ts";
export type { VerifiedModel, VerifyModelOptions } from "./verify_model.ts";
export { keySigner } from "./key_signer.ts";
export type { KeySignerOptions } from "./key_signer.ts";
export { certificateSigner } from "./certificate_signer.ts";
export { DEFAULT_FULCIO_URL, DEFAULT_REKOR_URL, sigstoreSigner } from "./sigstore_signer.ts";
export type { SigstoreSignerOptions } from "./sigstore_signer.ts";
export {
  DEFAULT_OIDC_CLIENT_ID,
  DEFAULT_OIDC_ISSUER,
  interactiveIdentityToken,
} from "./_oidc_interactive.ts";
export type { InteractiveTokenOptions } from "./_oidc_interactive.ts";
export { DEFAULT_HUB_ENDPOINT, parseHubSpec, pinHubModel } from "./hub_pin.ts";
export type { HubPin, PinHubModelOptions } from "./hub_pin.ts";
export { ONNX_SIGNATURE_KEY, signOnnx, verifyOnnx } from "./onnx_signature.ts";
export type { SignOnnxOptions, VerifiedOnnx, VerifyOnnxOptions } from "./onnx_signature.ts";
export type { OmsResource } from "./_oms.ts";
