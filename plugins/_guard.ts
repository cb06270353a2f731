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
import { createSha256 } from "../hash/_digest.ts";
import { resolvePolicy } from "../sign/policy.ts";
import { EvidenceError } from "../sign/errors.ts";
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
 * Marks the init of a request the guard passes on (kept by `{ ...init }`);
 * not a registered symbol, so no other code can make a request look like one.
 */
const FORWARDED = Symbol("safemodels.transformers.forwarded");
/** Nested passes of one URL through the guard's own fetch before it is called a loop. */
const MAX_FORWARDS = 8;
/** The transformers.js `env` of the module (or the `env` itself) the guard was given. */
export function envOf(transformers: { env: TransformersEnv } | TransformersEnv): TransformersEnv {
  return "env" in transformers && typeof transformers.env === "object"
    ? transformers.env
    : transformers as TransformersEnv;
}

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

/**
 * Makes `env`'s settings `keys` read as `own` (the guard's) while set values
 * go to `saved`; the returned function puts each setting back as it was
 * (a value, or transformers.js' own accessor), holding what was saved.
 */
function holdSettings(
  env: TransformersEnv,
  keys: string[],
  own: Record<string, unknown>,
  saved: Record<string, unknown>,
): () => void {
  const descriptors = new Map(keys.map((k) => [k, Object.getOwnPropertyDescriptor(env, k)]));
  for (const k of keys) {
    Object.defineProperty(env, k, {
      configurable: true,
      enumerable: true,
      get: () => own[k],
      set: (v) => {
        saved[k] = v;
      },
    });
  }
  return () => {
    for (const [k, d] of descriptors) {
      if (d && !("value" in d)) {
        // An accessor of transformers.js' own: back, and told what was set meanwhile.
        Object.defineProperty(env, k, d);
        d.set?.call(env, saved[k]);
      } else {
        Object.defineProperty(env, k, {
          configurable: true,
          enumerable: d?.enumerable ?? true,
          writable: true,
          value: saved[k],
        });
      }
    }
  };
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
  const env = envOf(transformers);
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
  // The settings the guard keeps while installed (see below), checked
  // before anything is changed: a frozen env could not keep them.
  const kept = ["useFS", "useCustomCache", "customCache", ...(legacy ? [] : ["fetch"])];
  for (const k of kept) {
    const d = Object.getOwnPropertyDescriptor(env, k);
    if (d ? !d.configurable : !Object.isExtensible(env)) {
      throw new TypeError(
        `Cannot guard transformers.js${named}: env.${k} cannot be redefined (the env is frozen or sealed, or the setting is not configurable), so the guard could not keep it while installed`,
      );
    }
  }
  // The fetch at install: transformers.js 3's global one, or env.fetch.
  const globalFetch = globalThis.fetch;
  const baseFetch: TransformersEnv["fetch"] = legacy
    ? (input, init) => globalFetch.call(globalThis, input, init)
    : env.fetch;
  const saved = {
    fetch: baseFetch,
    useFS: env.useFS,
    useCustomCache: env.useCustomCache,
    customCache: env.customCache,
  };
  // The guard's own requests, passed to the fetch set now (an app's env.fetch
  // set while guarded may wrap the guard's): marked, so that one coming back
  // goes on to the fetch at install; one coming back unmarked (a wrapper that
  // drops the init) is counted, and stopped with an error instead of looping.
  const forwarding = new Map<string, number>();
  const forward: TransformersEnv["fetch"] = async (input, init) => {
    const url = String(input);
    forwarding.set(url, (forwarding.get(url) ?? 0) + 1);
    try {
      return await saved.fetch(input, { ...init, [FORWARDED]: true });
    } finally {
      const n = forwarding.get(url)! - 1;
      if (n === 0) forwarding.delete(url);
      else forwarding.set(url, n);
    }
  };
  const busy = new Map<string, number>();
  const opened = new Map<string, Store>();
  const mine: { cache?: unknown } = {};
  const store = () =>
    pickStore(
      env,
      // The guard's own cache set back as the app's: there is no app cache.
      {
        use: saved.useCustomCache,
        cache: saved.customCache === mine.cache ? undefined : saved.customCache,
      },
      opened,
      files,
      busy,
    );
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
    fetch: forward,
    store,
    // The verified store, once opened (below): verifications it remembers.
    memo: () => core.copies.store,
  });
  const core: GuardCore = {
    env,
    mode: o.mode,
    inMemory: o.inMemory,
    platform,
    decisions,
    copies: new VerifiedCopies(decisions, files, o.inMemory, o.workDir),
    locator: new Locator(env, files),
    originalFetch: forward,
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
  // The hasher's implementation loads now, not at the first file's first byte.
  createSha256().catch(() => {});

  let installed = true;
  const checked = guardedFetch(core);
  // deno-lint-ignore no-explicit-any
  const guarded = (input: string | URL | Request, init?: any): Promise<Response> => {
    // Held by an app's wrapper after uninstall(): a plain pass-through.
    if (!installed) return baseFetch(input as string, init);
    if (init?.[FORWARDED]) {
      const { [FORWARDED]: _, ...rest } = init;
      return baseFetch(input as string, rest);
    }
    const url = typeof input === "string" ? input : input instanceof URL ? input.href : input.url;
    // A model.sig is evidence, fetched by the guard itself (it is checked as
    // a signature, not as a model file): never back through the checks.
    if (core.locator.remote(url)?.file === "model.sig") return baseFetch(url, init);
    if ((forwarding.get(url) ?? 0) >= MAX_FORWARDS) {
      return Promise.reject(
        new EvidenceError(
          "unreadable",
          `Cannot load this file: the fetch set as env.fetch while the guard is installed calls the guard's fetch again without passing its init on (a loop); pass init through, or set env.fetch before installing the guard`,
          { file: url },
        ),
      );
    }
    return checked(input, init);
  };
  // transformers.js 3: only its own requests (its file reader sends them
  // with a "transformers.js/<version>" User-Agent) go through the guard, a
  // file: URL as the local path it names; every other request is the global
  // fetch's, untouched.
  const hook = function fetch(input: RequestInfo | URL, init?: RequestInit): Promise<Response> {
    if (installed && typeof input === "string" && isTransformers3(init)) {
      return guarded(/^file:/i.test(input) ? filePath(input) : input, init);
    }
    return globalFetch.call(globalThis, input, init);
  };
  /**
   * Puts the hook back when the global fetch was set back to the one it
   * wraps (a library restoring what it saved before the guard). A fetch
   * wrapped over the hook is left alone: the hook still sees its requests.
   */
  const keepHook = () => {
    if (legacy && installed && globalThis.fetch === globalFetch) globalThis.fetch = hook;
    return installed;
  };
  // While installed, transformers.js reads these settings as the guard's;
  // what is set meanwhile is what the guard wraps (and what uninstall()
  // restores), so no setting turns the checks off.
  mine.cache = verifyingCache(core, keepHook, busy);
  const own: Record<string, unknown> = {
    useFS: false,
    useCustomCache: true,
    customCache: mine.cache,
    ...(legacy ? {} : { fetch: guarded }),
  };
  const releaseSettings = holdSettings(env, kept, own, saved as Record<string, unknown>);
  if (legacy) globalThis.fetch = hook;
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
      if (legacy && globalThis.fetch === hook) globalThis.fetch = globalFetch;
      releaseSettings();
      delete envRecord[GUARDED];
      classes.forEach((cls, i) => Object.defineProperty(cls, "create", createDescriptors[i]!));
      core.copies.clear();
    },
  };
}
