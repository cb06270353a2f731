/**
 * The transformers.js guard for browsers (no file system): every model file
 * transformers.js fetches is hashed as it streams and checked against the
 * digests pinned in a lockfile before onnxruntime-web sees it. transformers.js
 * fetches through `env.fetch` and caches with the Web Cache API, both wrapped
 * by the guard; a tampered file is never cached, and onnxruntime-web's
 * `InferenceSession.create` accepts only the very buffers the guard verified
 * (external data included), plus the tensor-op graphs transformers.js builds.
 *
 * Signatures (`model.sig`, embedded ONNX signatures) are not checked in the
 * browser yet: their verification needs `node:crypto`. Pin the digests with
 * the CLI (`safemodels lock`) at build time and ship the lockfile.
 *
 * @example Guarding a page
 * ```ts ignore
 * import * as transformers from "@huggingface/transformers";
 * import * as ort from "onnxruntime-web/webgpu"; // the instance transformers.js uses
 * import { guardTransformers, Lockfile } from "@safemodels/safemodels/plugins/transformers-web";
 *
 * const lockfile = new Lockfile(await (await fetch("/safemodels.lock")).json());
 * const guard = guardTransformers(transformers, { ort, lockfile, frozen: true });
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

export type {
  GuardOptions,
  GuardRecord,
  SessionClass,
  TransformersEnv,
  TransformersGuard,
} from "./_guard.ts";
export type { Issuer, Matcher, TrustPolicy } from "../sign/policy.ts";
export type { TrustMaterial, VerifiedSigner } from "../sign/types.ts";
export type { LockCheckOptions, LockedSigner, LockEntry, LockResult } from "../sign/lockfile.ts";
export { Lockfile } from "../sign/lockfile.ts";
export { HashMismatch, InvalidSignature, SignatureMissing } from "../sign/errors.ts";

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
  /** The digests files must have (an instance: there is no file system to load one from). */
  lockfile: Lockfile;
  /**
   * The onnxruntime module transformers.js uses (its web build imports
   * `onnxruntime-web/webgpu`). Optional when transformers.js takes its
   * onnxruntime from `globalThis[Symbol.for("onnxruntime")]`.
   */
  ort?: { InferenceSession: SessionClass };
}

/**
 * Installs the guard on transformers.js in a browser: every model file it
 * loads (config, tokenizer, weights, external data) must have the digest the
 * lockfile pins for it. A file that differs (`HashMismatch`) or that is not
 * pinned when `frozen` (`InvalidSignature`) makes `pipeline()` reject,
 * naming the file, and no onnxruntime session is created for the model.
 *
 * @param transformers The `@huggingface/transformers` module (or its `env`).
 * @param options The lockfile, `ort`, mode, report callback.
 * @returns The guard: its records and `uninstall()`.
 * @throws {TypeError} When no onnxruntime is given or registered, or a guard is already installed.
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
  // Signatures are not checked here, so the policy only has to exist.
  const { ort: _, ...rest } = options;
  return installGuard(transformers, { ...rest, policy: { signers: [] } }, { sessions });
}
