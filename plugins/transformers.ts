/**
 * A guard for transformers.js (`@huggingface/transformers`) in Deno and Node:
 * every model file it loads is checked against the model's signature before
 * it is used, and onnxruntime only ever reads bytes that were checked.
 *
 * How: transformers.js reads local files through `env.fetch` (the guard turns
 * `env.useFS` off) and caches through a verifying `env.customCache` that
 * wraps the cache it would have used (the Web Cache API, its file cache or
 * your custom cache). JSON files are hashed as they are read and fail there.
 * Weights (`.onnx`, `.onnx_data`) are copied, and hashed while they are
 * copied, into a private folder only this process writes; transformers.js
 * gets the copy's path, and `InferenceSession.create` of onnxruntime-node is
 * gated so that it opens nothing but such verified copies. What onnxruntime
 * reads is therefore exactly what was hashed, even if the original changes
 * afterwards. Inline weights of a verified `.onnx` are handed over as
 * external data into the copy, which onnxruntime memory-maps: a guarded load
 * needs less time and memory than an unguarded one (see the README).
 *
 * transformers.js 3 has no `env.fetch`: the guard then wraps the global
 * `fetch` for its model files only (other requests pass untouched) and
 * restores it on `uninstall()`; see the README for the differences.
 *
 * In browsers, use `@safemodels/safemodels/plugins/transformers-web`.
 *
 * @example Refusing anything not signed by your key
 * ```ts ignore
 * import * as transformers from "@huggingface/transformers";
 * import { guardTransformers } from "@safemodels/safemodels/plugins/transformers";
 *
 * const guard = guardTransformers(transformers, {
 *   policy: { publicKeys: [await Deno.readTextFile("release-pub.pem")] },
 * });
 * const extractor = await transformers.pipeline("feature-extraction", "acme/tiny-bert");
 * console.log(guard.records.map((r) => `${r.file}: ${r.verdict} (${r.evidence})`));
 * guard.uninstall();
 * ```
 *
 * @module
 */

import * as ort from "onnxruntime-node";
import { VerifiedStore } from "./_verified_store.ts";
import {
  envOf,
  type GuardOptions,
  installGuard,
  isLegacy,
  type SessionClass,
  type TransformersEnv,
  type TransformersGuard,
} from "./_guard.ts";
import { nodeFiles } from "./_guard_files.ts";
import { verifySignedText } from "../sign/_verify_signed.ts";

export type { GuardOptions, GuardRecord, TransformersEnv, TransformersGuard } from "./_guard.ts";
// The sign types the guard's API mentions, so its documentation is complete.
export type { Issuer, Matcher, ModelPolicy, TrustPolicy } from "../sign/policy.ts";
export type { Lockfile } from "../sign/lockfile.ts";
export type { TrustMaterial, VerifiedSigner } from "../sign/types.ts";
export type {
  FoundEntry,
  LockCheckOptions,
  LockedSigner,
  LockEntry,
  LockResult,
} from "../sign/lockfile.ts";
export type { EvidenceKind } from "../sign/evidence.ts";
// The errors a guarded load rejects with, so `instanceof` works from this entry.
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
 * transformers.js 3 keeps the first onnxruntime session it asks for and
 * awaits it before every later one: had the guard refused that one, no
 * session could ever be made again in this process. So its own first
 * session is one of its tensor ops (a weightless graph), asked for here,
 * before the gate is installed.
 */
function primeSessions(transformers: unknown, env: TransformersEnv): void {
  const mod = transformers as {
    matmul?: (a: unknown, b: unknown) => Promise<unknown>;
    Tensor?: new (type: string, data: Float32Array, dims: number[]) => unknown;
  };
  if (typeof mod.matmul !== "function" || typeof mod.Tensor !== "function") {
    const version = (env as { version?: unknown }).version;
    throw new TypeError(
      `Cannot guard transformers.js${
        typeof version === "string" ? ` ${version}` : ""
      } given its env alone: pass the module (import * as transformers from "@huggingface/transformers"), which the guard needs to start its first onnxruntime session`,
    );
  }
  const one = new mod.Tensor("float32", new Float32Array([1]), [1, 1]);
  mod.matmul(one, one).catch(() => {});
}

/**
 * Installs the guard on transformers.js: from now on every model file it
 * loads (config, tokenizer, weights, external data), from the hub, a local
 * folder or a cache, is checked against the model's evidence, in order: an
 * OpenSSF Model Signing `model.sig` at the model root (fetched the same way
 * as the model's files; only the files actually loaded are checked against
 * its manifest), an embedded ONNX signature, the lockfile's pinned digest.
 * A file with none fails in `enforce` mode: `pipeline()` rejects with
 * `SignatureMissing`, `InvalidSignature` or `HashMismatch` naming the file,
 * and no onnxruntime session is created for the model. A tampered file is
 * never stored in (or served from) a cache.
 *
 * While installed, `InferenceSession.create` of onnxruntime-node refuses
 * every model that was not loaded (and verified) through transformers.js,
 * except the small tensor-op graphs transformers.js embeds. Verified copies
 * are removed 30 s after their session is created (onnxruntime has mapped
 * them), by `uninstall()`, or at exit. Deno and Node.
 *
 * @param transformers The `@huggingface/transformers` module (or its `env`).
 * @param options Policy, mode, lockfile, report callback, work folder.
 * @returns The guard: its records and `uninstall()`.
 * @throws {TypeError} When a guard is already installed, or no policy is given or set with `init()`.
 *
 * @example Guarding local models
 * ```ts ignore
 * import * as transformers from "@huggingface/transformers";
 * import { guardTransformers } from "@safemodels/safemodels/plugins/transformers";
 *
 * transformers.env.localModelPath = "./models";
 * transformers.env.allowRemoteModels = false;
 * const guard = guardTransformers(transformers, { policy: { publicKeys: [pem] } });
 * const extractor = await transformers.pipeline("feature-extraction", "tiny-bert"); // ./models/tiny-bert/model.sig
 * ```
 */
export function guardTransformers(
  transformers: { env: TransformersEnv } | TransformersEnv,
  options: GuardOptions = {},
): TransformersGuard {
  const sessions: SessionClass[] = [ort.InferenceSession];
  // transformers.js uses the instance registered under this symbol, if any.
  const exposed = (globalThis as Record<symbol, { InferenceSession?: SessionClass }>)[
    Symbol.for("onnxruntime")
  ]?.InferenceSession;
  if (exposed && exposed !== ort.InferenceSession) sessions.push(exposed);
  // transformers.js 3 keeps its onnxruntime's env as env.backends.onnx: when
  // that is another copy than ours, its sessions could not be gated.
  const env = envOf(transformers) as TransformersEnv & {
    backends?: { onnx?: unknown };
    version?: unknown;
  };
  const onnx = env.backends?.onnx;
  if (isLegacy(env) && onnx !== undefined && onnx !== ort.env) {
    const exposedEnv = (globalThis as Record<symbol, { env?: unknown }>)[Symbol.for("onnxruntime")]
      ?.env;
    if (onnx !== exposedEnv) {
      throw new TypeError(
        `Cannot guard transformers.js${
          typeof env.version === "string" ? ` ${env.version}` : ""
        }: it runs another copy of onnxruntime-node than the one safemodels gates, so its sessions could not be checked; install a single onnxruntime-node (npm ls onnxruntime-node, npm dedupe)`,
      );
    }
  }
  if (isLegacy(env)) primeSessions(transformers, env);
  return installGuard(transformers, options, {
    sessions,
    files: nodeFiles(options.workDir),
    verifiers: { signed: verifySignedText },
    openStore: (dir) => VerifiedStore.open(dir),
  });
}
