// The transformers.js guard, assembled. No file system and no onnxruntime
// here: both come in through GuardPlatform (plugins/transformers.ts passes
// onnxruntime-node and _guard_files.ts; plugins/transformers_web.ts passes
// onnxruntime-web and no files). The units:
// - _guard_locate.ts: which model (and model root) a request belongs to;
// - _guard_decisions.ts: the evidence of each model and the record of its
//   decisions (the decision itself is sign/evidence.ts' decideFile);
// - _guard_copies.ts: the store of verified private copies and buffers;
// - _guard_fetch.ts, _guard_cache.ts, _guard_gate.ts: the env.fetch,
//   env.customCache and InferenceSession.create wrappers.
import { resolvePolicy } from "../sign/policy.ts";
import { pickStore, verifyingCache } from "./_guard_cache.ts";
import { VerifiedCopies } from "./_guard_copies.ts";
import type { GuardCore } from "./_guard_core.ts";
import { Decisions } from "./_guard_decisions.ts";
import { guardedFetch } from "./_guard_fetch.ts";
import { SessionGate } from "./_guard_gate.ts";
import { Locator } from "./_guard_locate.ts";
import type {
  GuardOptions,
  GuardPlatform,
  SessionClass,
  Store,
  TransformersEnv,
  TransformersGuard,
} from "./_guard_types.ts";

export type {
  GuardOptions,
  GuardPlatform,
  GuardRecord,
  SessionClass,
  TransformersEnv,
  TransformersGuard,
} from "./_guard_types.ts";

const GUARDED = Symbol.for("safemodels.transformers.guard");

/** The options, checked and with their defaults, once. */
function resolveOptions(options: GuardOptions, platform: GuardPlatform) {
  const mode = options.mode ?? "enforce";
  if (mode !== "enforce" && mode !== "warn") {
    throw new TypeError(
      `Cannot guard transformers.js: mode must be "enforce" or "warn", got ${JSON.stringify(mode)}`,
    );
  }
  if (
    options.weights !== undefined && options.weights !== "files" && options.weights !== "memory"
  ) {
    throw new TypeError(
      `Cannot guard transformers.js: weights must be "files" or "memory", got ${
        JSON.stringify(options.weights)
      }`,
    );
  }
  return {
    policy: resolvePolicy(options.policy),
    mode,
    frozen: options.frozen ?? false,
    lockfile: options.lockfile,
    onReport: options.onReport,
    workDir: options.workDir,
    // Weights kept as private files (the default) or verified buffers.
    inMemory: options.weights === "memory" || platform.files === undefined,
  } as const;
}

/**
 * Installs the guard on the transformers.js `env` with what the platform
 * provides (see plugins/transformers.ts for the full description).
 */
export function installGuard(
  transformers: { env: TransformersEnv } | TransformersEnv,
  options: GuardOptions,
  platform: GuardPlatform,
): TransformersGuard {
  const env: TransformersEnv = "env" in transformers && typeof transformers.env === "object"
    ? transformers.env
    : transformers as TransformersEnv;
  const envRecord = env as unknown as Record<PropertyKey, unknown>;
  if (envRecord[GUARDED]) {
    throw new TypeError(
      "Cannot guard transformers.js: a guard is already installed (uninstall it first)",
    );
  }
  // transformers.js 3 reads files with the global fetch and its own file
  // reader: nothing the guard could check before onnxruntime sees a byte.
  // Refuse to install rather than guard nothing.
  if (typeof env.fetch !== "function" || !("useCustomCache" in env)) {
    const version = (env as { version?: unknown }).version;
    throw new TypeError(
      `Cannot guard transformers.js${
        typeof version === "string" ? ` ${version}` : ""
      }: it has no env.fetch (transformers.js 4 and later have it), so its file reads cannot be checked. Upgrade to @huggingface/transformers 4, or verify models with safemodels verify before loading them unguarded`,
    );
  }
  const o = resolveOptions(options, platform);
  const { files, verifiers } = platform;
  const saved = {
    fetch: env.fetch,
    useFS: env.useFS,
    useCustomCache: env.useCustomCache,
    customCache: env.customCache,
  };
  const opened = new Map<string, Store>();
  const store = () =>
    pickStore(env, { use: saved.useCustomCache, cache: saved.customCache }, opened, files);
  const decisions = new Decisions({
    env,
    policy: o.policy,
    mode: o.mode,
    frozen: o.frozen,
    lockfile: o.lockfile,
    onReport: o.onReport,
    files,
    verifiers,
    fetch: saved.fetch,
    store,
  });
  const core: GuardCore = {
    env,
    mode: o.mode,
    inMemory: o.inMemory,
    platform,
    decisions,
    copies: new VerifiedCopies(decisions, files, o.inMemory, o.workDir),
    locator: new Locator(env, files),
    originalFetch: saved.fetch,
    store,
    localBodies: new WeakMap(),
    readLocalsDirectly: env.useFS && files !== undefined,
    warned: new Set(),
  };
  if (options.verifiedStore !== undefined && !o.inMemory && platform.openStore) {
    core.copies.store = platform.openStore(options.verifiedStore).catch((e) => {
      console.warn(`safemodels: not using the verified store ${options.verifiedStore}: ${e}`);
      return undefined;
    });
  }
  const gate = new SessionGate(core);

  env.fetch = guardedFetch(core);
  env.useFS = false;
  env.useCustomCache = true;
  env.customCache = verifyingCache(core);
  envRecord[GUARDED] = true;
  const classes: SessionClass[] = platform.sessions;
  const createDescriptors = classes.map((c) => Object.getOwnPropertyDescriptor(c, "create"));
  classes.forEach((cls, i) => {
    const original = createDescriptors[i]!.value as SessionClass["create"];
    Object.defineProperty(cls, "create", {
      ...createDescriptors[i],
      value: function create(this: unknown, ...args: unknown[]) {
        return gate.create(original, this, args);
      },
    });
  });

  let installed = true;
  return {
    get records() {
      return decisions.records;
    },
    uninstall() {
      if (!installed) return;
      installed = false;
      env.fetch = saved.fetch;
      env.useFS = saved.useFS;
      env.useCustomCache = saved.useCustomCache;
      env.customCache = saved.customCache;
      delete envRecord[GUARDED];
      classes.forEach((cls, i) => Object.defineProperty(cls, "create", createDescriptors[i]!));
      core.copies.clear();
    },
  };
}
