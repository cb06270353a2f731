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
import { filePath, Locator } from "./_guard_locate.ts";
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
/**
 * Whether transformers.js reads files as version 3 does: the global fetch
 * (it has no env.fetch; an app may set one, which version 3 ignores).
 */
export function isLegacy(env: TransformersEnv): boolean {
  const version = (env as { version?: unknown }).version;
  return typeof env.fetch !== "function" ||
    (typeof version === "string" && /^3\./.test(version));
}

/** A request of transformers.js 3's file reader (it names itself in the User-Agent). */
function isTransformers3(init: RequestInit | undefined): boolean {
  const agent = new Headers(init?.headers).get("user-agent");
  return agent !== null && /^transformers\.js\/3\./.test(agent);
}

/** The options, checked and with their defaults, once. */
function resolveOptions(options: GuardOptions, platform: GuardPlatform, buffers: boolean) {
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
    // Weights kept as private files (the default) or verified buffers
    // (always where transformers.js wants buffers: version 3 without its file
    // cache hands onnxruntime bytes, never paths).
    inMemory: options.weights === "memory" || platform.files === undefined || buffers,
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
  // transformers.js 4 reads every file through env.fetch. transformers.js 3
  // has no env.fetch: with useFS off it reads local files and the hub with
  // the global fetch, which the guard then wraps for its requests only
  // (Deno and Node, where they name themselves; in browsers they do not).
  const legacy = isLegacy(env);
  const version = (env as { version?: unknown }).version;
  const named = typeof version === "string" ? ` ${version}` : "";
  if (!("useCustomCache" in env)) {
    throw new TypeError(
      `Cannot guard transformers.js${named}: it has no env.customCache, so the files it reads cannot be checked. Upgrade to @huggingface/transformers 4 (or 3)`,
    );
  }
  if (legacy && (platform.files === undefined || typeof globalThis.fetch !== "function")) {
    throw new TypeError(
      `Cannot guard transformers.js${named} here: it has no env.fetch (transformers.js 4 and later have it), and in browsers its reads cannot be told from the page's own. Upgrade to @huggingface/transformers 4, or verify models with safemodels verify before loading them unguarded`,
    );
  }
  // transformers.js 3 without its file cache wants buffers: verified ones.
  const o = resolveOptions(options, platform, legacy && !env.useFSCache);
  const { files, verifiers } = platform;
  // transformers.js 3: where the global fetch passes requests that are not its own.
  let passOn = globalThis.fetch;
  const saved = {
    fetch: legacy ? (input: string | URL, init?: RequestInit) => passOn(input, init) : env.fetch,
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
    // Read at each call: env.fetch set while guarded replaces the one wrapped.
    fetch: (input, init) => saved.fetch(input, init),
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
    originalFetch: (input, init) => saved.fetch(input, init),
    store,
    localBodies: new WeakMap(),
    readLocalsDirectly: env.useFS && files !== undefined,
    warned: new Set(),
    legacy,
  };
  if (options.verifiedStore !== undefined && !o.inMemory && platform.openStore) {
    core.copies.store = platform.openStore(options.verifiedStore).catch((e) => {
      console.warn(`safemodels: not using the verified store ${options.verifiedStore}: ${e}`);
      return undefined;
    });
  }
  if (options.verifiedStore !== undefined && o.inMemory && platform.openTags) {
    core.tags = platform.openTags(options.verifiedStore).catch((e) => {
      console.warn(`safemodels: not tagging cached weights (${options.verifiedStore}): ${e}`);
      return undefined;
    });
  }
  const gate = new SessionGate(core);

  const guarded = guardedFetch(core);
  // transformers.js 3: only its own requests (its file reader sends them
  // with a "transformers.js/<version>" User-Agent) go through the guard, a
  // file: URL as the local path it names; every other request is the global
  // fetch's, untouched.
  let installed = true;
  const hook = function fetch(input: RequestInfo | URL, init?: RequestInit): Promise<Response> {
    if (installed && typeof input === "string" && isTransformers3(init)) {
      return guarded(/^file:/i.test(input) ? filePath(input) : input, init);
    }
    return passOn.call(globalThis, input, init);
  };
  /** Puts the hook back when someone replaced the global fetch (what they set is passed on). */
  const keepHook = () => {
    if (!legacy || !installed || globalThis.fetch === hook) return;
    passOn = globalThis.fetch;
    globalThis.fetch = hook;
  };
  if (legacy) globalThis.fetch = hook;
  // While installed, transformers.js reads these settings as the guard's;
  // what is set meanwhile is what the guard wraps (and what uninstall()
  // restores), so no setting turns the checks off.
  const own: Record<string, unknown> = {
    useFS: false,
    useCustomCache: true,
    customCache: verifyingCache(core, keepHook),
    ...(legacy ? {} : { fetch: guarded }),
  };
  const savedRecord = saved as Record<string, unknown>;
  const descriptors = new Map(
    Object.keys(own).map((k) => [k, Object.getOwnPropertyDescriptor(env, k)]),
  );
  for (const k of Object.keys(own)) {
    Object.defineProperty(env, k, {
      configurable: true,
      enumerable: true,
      get: () => own[k],
      set: (v) => {
        savedRecord[k] = v;
      },
    });
  }
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

  return {
    get records() {
      return decisions.records;
    },
    uninstall() {
      if (!installed) return;
      installed = false;
      // A fetch wrapped over ours later stays: ours then only passes requests on.
      if (legacy && globalThis.fetch === hook) globalThis.fetch = passOn;
      for (const [k, d] of descriptors) {
        if (d && !("value" in d)) {
          // An accessor of transformers.js' own: back, and told what was set meanwhile.
          Object.defineProperty(env, k, d);
          d.set?.call(env, savedRecord[k]);
        } else {
          Object.defineProperty(env, k, {
            configurable: true,
            enumerable: d?.enumerable ?? true,
            writable: true,
            value: savedRecord[k],
          });
        }
      }
      delete envRecord[GUARDED];
      classes.forEach((cls, i) => Object.defineProperty(cls, "create", createDescriptors[i]!));
      core.copies.clear();
    },
  };
}
