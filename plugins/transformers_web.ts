/**
 * The transformers.js guard for browsers (no file system): every model file
 * transformers.js fetches is hashed as it streams and checked, before
 * onnxruntime-web sees it, against the model's OMS `model.sig` signed with a
 * key or a certificate chain (WebCrypto) or the digests pinned in a lockfile. transformers.js fetches
 * through `env.fetch` and caches with the Web Cache API, both wrapped by the
 * guard; a tampered file is never cached, and onnxruntime-web's
 * `InferenceSession.create` accepts only the very buffers the guard verified
 * (external data included), plus the tensor-op graphs transformers.js builds.
 *
 * Embedded ONNX signatures are checked too. Not in browsers yet: Sigstore
 * keyless signatures, whose checks need `node:crypto`. For those, pin the
 * digests with the CLI (`safemodels lock`) at build time and ship the
 * lockfile.
 *
 * @example Guarding a page
 * ```ts ignore
 * import * as transformers from "@huggingface/transformers";
 * import * as ort from "onnxruntime-web/webgpu"; // the instance transformers.js uses
 * import { guardTransformers, Lockfile } from "@safemodels/safemodels/plugins/transformers-web";
 *
 * const guard = guardTransformers(transformers, {
 *   ort,
 *   policy: { publicKeys: [await (await fetch("/release-pub.pem")).text()] },
 * });
 * const extractor = await transformers.pipeline("feature-extraction", "acme/tiny-bert");
 * ```
 *
 * @module
 */

import {
  type GuardOptions,
  installGuard,
  type SessionClass,
  type TransformersEnv,
  type TransformersGuard,
} from "./_guard.ts";
import type { Lockfile } from "../sign/lockfile.ts";
import { type SignedTextVerifier, verifySignedTextWith } from "../sign/_signed_text.ts";
import { verifyBundleWith } from "../sign/_verify_cert.ts";
import { verifyKeylessWeb } from "../sign/_keyless.ts";
import { verifyBundleUsing } from "../sign/_verify_bundle_core.ts";
import type { VerifiedBundleResult, VerifyBundleOptions } from "../sign/verify_bundle.ts";
import type { Issuer, TrustPolicy } from "../sign/policy.ts";
import { CacheTags } from "./_cache_tags.ts";

export type {
  GuardOptions,
  GuardRecord,
  SessionClass,
  TransformersEnv,
  TransformersGuard,
} from "./_guard.ts";
export type { Issuer, Matcher, ModelPolicy, TrustPolicy } from "../sign/policy.ts";
export type { VerifiedBundleResult, VerifyBundleOptions } from "../sign/verify_bundle.ts";
export type { EvidenceKind } from "../sign/evidence.ts";
export type { TrustMaterial, VerifiedSigner } from "../sign/types.ts";
export type {
  FoundEntry,
  LockCheckOptions,
  LockedSigner,
  LockEntry,
  LockResult,
} from "../sign/lockfile.ts";
export { Lockfile } from "../sign/lockfile.ts";
export {
  EvidenceError,
  HashMismatch,
  HashMissing,
  InvalidSignature,
  PolicyError,
  SignatureMissing,
  SignError,
  VerificationError,
} from "../sign/errors.ts";
export { ModelFormatError } from "../hash/errors.ts";

/**
 * Options for the browser guard.
 *
 * @example
 * ```ts ignore
 * import * as ort from "onnxruntime-web/webgpu";
 * const options: WebGuardOptions = { ort, lockfile, frozen: true };
 * ```
 */
export interface WebGuardOptions
  extends Omit<GuardOptions, "policy" | "lockfile" | "workDir" | "weights"> {
  /**
   * Who may sign: `publicKeys` and `certificateRoots` (PEM), and identities.
   * Without a policy, signatures are not looked at and only the lockfile vouches.
   */
  policy?: TrustPolicy | Issuer | Issuer[];
  /** The digests files must have (an instance: there is no file system to load one from). */
  lockfile?: Lockfile;
  /**
   * The onnxruntime module transformers.js uses (its web build imports
   * `onnxruntime-web/webgpu`). Optional when transformers.js takes its
   * onnxruntime from `globalThis[Symbol.for("onnxruntime")]`.
   */
  ort?: { InferenceSession: SessionClass };
}

/**
 * Verifies a Sigstore bundle against a trust policy in the browser: the
 * same as `verifyBundle` of `@safemodels/safemodels/sign`, with the WebCrypto
 * keyless verifier (Rekor v1 entries; see the README).
 *
 * @param bundle The bundle, parsed or as JSON text.
 * @param policy The trust policy (or accepted keyless signers).
 * @param options Payload type and file name for messages.
 * @returns The signer, the payload and the statement.
 * @throws {VerificationError} When the bundle does not verify.
 * @throws {PolicyError} When it verifies but the policy does not accept its signer.
 *
 * @example Checking a model.sig before fetching weights
 * ```ts ignore
 * import { verifyBundle } from "@safemodels/safemodels/plugins/transformers-web";
 *
 * const sig = await (await fetch("https://huggingface.co/acme/tiny/resolve/main/model.sig")).text();
 * const { signer } = await verifyBundle(sig, {
 *   signers: [{ identity: "release@acme.example", issuer: "https://accounts.google.com" }],
 * });
 * console.log(signer.identities);
 * ```
 */
export function verifyBundle(
  bundle: unknown,
  policy?: TrustPolicy | Issuer | Issuer[],
  options: Omit<VerifyBundleOptions, "keyless"> = {},
): Promise<VerifiedBundleResult> {
  return verifyBundleUsing(
    (b, t, f) => verifyBundleWith(verifyKeylessWeb, b, t, f),
    bundle,
    policy,
    options,
  );
}

/**
 * Bundle checks with WebCrypto alone: key, certificate-chain and Sigstore
 * keyless bundles (Rekor v1 entries; see sign/_keyless.ts).
 */
const keySigned: SignedTextVerifier = (text, trust, type, at) =>
  verifySignedTextWith(
    (b, t, f) => verifyBundleWith(verifyKeylessWeb, b, t, f),
    text,
    trust,
    type,
    at,
  );

/**
 * Installs the guard on transformers.js in a browser: every model file it
 * loads (config, tokenizer, weights, external data) must be in the model's
 * key-signed `model.sig` (with `policy`) or have the digest the lockfile
 * pins for it. A file that differs (`HashMismatch`), is not vouched for
 * (`SignatureMissing`), or is signed by someone else (`InvalidSignature`)
 * makes `pipeline()` reject, naming the file, and no onnxruntime session is
 * created for the model.
 *
 * @param transformers The `@huggingface/transformers` module (or its `env`).
 * @param options The lockfile, `ort`, mode, report callback.
 * @returns The guard: its records and `uninstall()`.
 * @throws {TypeError} When no onnxruntime is given or registered, neither a policy nor a lockfile is given, or a guard is already installed.
 *
 * @example
 * ```ts ignore
 * const guard = guardTransformers(transformers, { ort, lockfile, frozen: true });
 * try {
 *   await transformers.pipeline("feature-extraction", "acme/tiny-bert");
 * } finally {
 *   guard.uninstall();
 * }
 * ```
 */
export function guardTransformers(
  transformers: { env: TransformersEnv } | TransformersEnv,
  options: WebGuardOptions,
): TransformersGuard {
  const sessions: SessionClass[] = [];
  if (options.ort) sessions.push(options.ort.InferenceSession);
  const exposed = (globalThis as Record<symbol, { InferenceSession?: SessionClass }>)[
    Symbol.for("onnxruntime")
  ]?.InferenceSession;
  if (exposed && !sessions.includes(exposed)) sessions.push(exposed);
  if (sessions.length === 0) {
    throw new TypeError(
      "Cannot guard transformers.js: pass the onnxruntime-web module it uses as `ort`",
    );
  }
  if (options.policy === undefined && options.lockfile === undefined) {
    throw new TypeError(
      "Cannot guard transformers.js: give a policy (public keys), a lockfile, or both",
    );
  }
  const { ort: _, policy, ...rest } = options;
  return installGuard(transformers, { ...rest, policy: policy ?? { signers: [] } }, {
    sessions,
    openTags: (name) => CacheTags.open(name),
    // Key and certificate bundles: Sigstore keyless needs node:crypto.
    ...(policy === undefined ? {} : {
      verifiers: { signed: keySigned },
    }),
  });
}
