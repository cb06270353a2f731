/**
 * A guard for transformers.js (`@huggingface/transformers`) in Deno and Node:
 * every model file it loads is checked against the model's signature before
 * it is used, and onnxruntime only ever receives bytes that were checked.
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

import {
  copyFile,
  type FileHandle,
  mkdir,
  open,
  readFile,
  rename,
  rm,
  stat,
  writeFile,
} from "node:fs/promises";
import { dirname, join, relative, resolve, sep } from "node:path";
import * as ort from "onnxruntime-node";
import { BLOCK_BYTES } from "../hash/_source.ts";
import { createSha256, sha256Hex, toHex } from "../hash/_digest.ts";
import { SignatureMissing } from "../sign/errors.ts";
import { lockedSigner, Lockfile } from "../sign/lockfile.ts";
import { type Issuer, resolvePolicy, type TrustPolicy } from "../sign/policy.ts";
import type { VerifiedSigner } from "../sign/types.ts";
import {
  decide,
  type FileRef,
  type FileVerdict,
  isWeightFile,
  type ModelRef,
  type OmsEvidence,
  verifyOmsText,
} from "./_transformers_verify.ts";
import {
  externalizeOnnx,
  fileChunks,
  type NextChunk,
  PrivateDir,
  removeFiles,
  streamChunks,
  writeHashed,
} from "./_private_copy.ts";

// The sign types the guard's API mentions, so its documentation is complete.
export type { Issuer, Lockfile, TrustPolicy, VerifiedSigner };
export type { Matcher } from "../sign/policy.ts";
export type { TrustMaterial } from "../sign/types.ts";
export type { LockCheckOptions, LockedSigner, LockEntry, LockResult } from "../sign/lockfile.ts";

/**
 * Options for {@linkcode guardTransformers}.
 *
 * @example Warning instead of refusing, with a lockfile
 * ```ts
 * import type { GuardOptions } from "@safemodels/safemodels/plugins/transformers";
 *
 * const options: GuardOptions = { mode: "warn", lockfile: "safemodels.lock", onReport: console.log };
 * ```
 */
export interface GuardOptions {
  /** The trust policy. @default {the policy set with init()} */
  policy?: TrustPolicy | Issuer | Issuer[];
  /**
   * `"enforce"` refuses a file without valid evidence (the load rejects and no
   * onnxruntime session is created for the model); `"warn"` loads it and
   * reports each failure once (`console.warn` and a record).
   * @default {"enforce"}
   */
  mode?: "enforce" | "warn";
  /**
   * A lockfile (path or instance): its pinned digests are evidence for files
   * nothing else vouches for, and a pinned digest that differs refuses the
   * file. Models verified by signature are recorded on first use (and the
   * file saved, when a path is given) unless `frozen`.
   */
  lockfile?: string | Lockfile;
  /** Refuse files the lockfile does not pin. @default {false} */
  frozen?: boolean;
  /** Called with every record as it is made. */
  onReport?: (record: GuardRecord) => void;
  /**
   * Where the guard keeps its private, verified copies of weight files while
   * onnxruntime loads them (a folder only this process writes is made inside
   * it and removed by `uninstall()` or at exit). Needs free space for the
   * largest model being loaded; a folder on the model's file system lets the
   * copy be cheap.
   * @default {the system's temporary folder (os.tmpdir())}
   */
  workDir?: string;
}

/**
 * What the guard decided for one file of one model.
 *
 * @example Listing refusals
 * ```ts
 * import type { GuardRecord } from "@safemodels/safemodels/plugins/transformers";
 *
 * const refused = (records: readonly GuardRecord[]) => records.filter((r) => r.verdict === "refused");
 * ```
 */
export interface GuardRecord {
  /** The repository id (remote) or folder (local). */
  model: string;
  /** Model-relative path, e.g. `onnx/model.onnx`. */
  file: string;
  /** SHA-256 hex of the bytes that were checked. */
  digest: string;
  /** Who signed, when a signature vouched for the file. */
  signer?: VerifiedSigner;
  /** What vouched for the file (`"none"`: nothing did). */
  evidence: "oms" | "onnx-embedded" | "safetensors-embedded" | "lockfile" | "none";
  /** `"warned"`: let through in warn mode, or unsigned under an optional policy. */
  verdict: "verified" | "refused" | "warned";
  /** Why it was refused or warned about. */
  reason?: string;
}

/**
 * An installed guard.
 *
 * @example Removing the guard
 * ```ts ignore
 * const guard = guardTransformers(transformers, { policy });
 * try {
 *   await transformers.pipeline("feature-extraction", "acme/tiny-bert");
 * } finally {
 *   guard.uninstall();
 * }
 * ```
 */
export interface TransformersGuard {
  /** Every decision so far, oldest first. */
  readonly records: readonly GuardRecord[];
  /** Restores transformers.js and onnxruntime exactly as they were. */
  uninstall(): void;
}

/** The parts of transformers.js' `env` the guard reads or replaces. */
export interface TransformersEnv {
  /** The fetch transformers.js uses. */
  // deno-lint-ignore no-explicit-any
  fetch: (input: string | URL, init?: any) => Promise<any>;
  /** Read local files with `node:fs` (turned off while guarded). */
  useFS: boolean;
  /** Use `customCache` (turned on while guarded). */
  useCustomCache: boolean;
  /** The custom cache. */
  customCache: unknown;
  /** Use the Web Cache API. */
  useBrowserCache: boolean;
  /** Use the file cache. */
  useFSCache: boolean;
  /** The file cache folder. */
  cacheDir: string | null;
  /** The Web Cache API cache name. */
  cacheKey: string;
  /** The hub URL. */
  remoteHost: string;
  /** The hub path template, e.g. `{model}/resolve/{revision}/`. */
  remotePathTemplate: string;
  /** Whether remote files may be fetched. */
  allowRemoteModels: boolean;
}

// SHA-256 of the tensor-op graphs transformers.js 4.3.1 embeds (ops/registry.js)
// and runs through onnxruntime itself: the only buffers the gate lets through
// without a signature.
const TENSOR_OPS = new Set([
  "b21dfdb55f63bb28862eee536f553038c8c94dfb535f2fbf3d5014b59a11bb67",
  "e347f5dce9c5c5e6d94919ff633a6781bc3bf6ec312e85465869afbe29fe18aa",
  "0c13d523b5ac9f303482e60b8002b7d260d65243c56ea3b0b425c694c189e9ff",
  "6434577e4f88c7e2a2d6104f32403377b6d08fe64e6ce0ee3888101088087ffb",
  "69fe4fe6ed0caac937254cf0b3bd74bb850fdaeb3e4004299378fcb56a835c5a",
  "254de38be606291fee48e9ea5bd98da760e654e5602de8e0409e9dd7e466f11d",
  "79195acd6a86924e9d1f4139ce762b6a5fd989748dde01ce7d3a6127e52a8217",
  "07f1a48f57b8963d9fb4303807bcf1d804db6145cdcf9a927ecb83d80dceb89e",
]);

/** A model that saw no request for this long starts afresh (signature re-read). */
const IDLE_MS = 1500;
/** Verified weights wait this long for transformers.js to ask for them again. */
const RECENT_MS = 30_000;
const GUARDED = Symbol.for("safemodels.transformers.guard");
/** Files a local model folder is recognised by. */
const MARKERS = ["model.sig", "config.json", "tokenizer_config.json", "tokenizer.json"];
const MODEL_FILE = /\.(?:json|onnx|onnx_data(?:_\d+)?|txt|model|safetensors|bin|jinja|tiktoken)$/;

interface ModelState {
  ref: ModelRef;
  oms: Promise<OmsEvidence> | undefined;
  last: number;
  inflight: Set<Promise<unknown>>;
  refusals: Map<string, Error>;
  verified: Map<string, string>;
  signer: VerifiedSigner | undefined;
  reported: Set<string>;
}

/** A private copy of a weight file, or the marker of a refused one. */
interface PrivateCopy {
  ref: FileRef;
  verdict: FileVerdict;
  /** External-data locations its graph reads (`.onnx` only), relative to its folder. */
  locations: Set<string>;
  /** Other files that belong to it: the verified bytes a rewritten graph reads. */
  extra: string[];
}

/** What a cache holds for a file: its bytes, or a local file with them. */
type Stored = Uint8Array | { path: string; size: number };

/** A cache transformers.js would have used, minus verification. */
interface Store {
  open(key: string, ref: FileRef | undefined): Promise<ReadableStream<Uint8Array> | undefined>;
  put(key: string, ref: FileRef | undefined, data: Stored, type: string): Promise<void>;
  delete(key: string, ref: FileRef | undefined): Promise<void>;
}

type CacheLike = {
  match(key: string): Promise<unknown>;
  put(key: string, response: Response): Promise<unknown>;
  delete?(key: string): Promise<unknown>;
};

/** The body of what a cache's `match` returned (a Response, a FileResponse or a path). */
async function openBody(r: unknown): Promise<ReadableStream<Uint8Array> | undefined> {
  if (r === undefined || r === null) return undefined;
  if (typeof r === "string") return fileBody(r);
  const path = (r as { filePath?: unknown }).filePath;
  if (typeof path === "string") return fileBody(path);
  const res = r as {
    body?: ReadableStream<Uint8Array> | null;
    arrayBuffer(): Promise<ArrayBuffer>;
  };
  if (res.body) return res.body;
  return bytesStream(new Uint8Array(await res.arrayBuffer()));
}

function bytesStream(bytes: Uint8Array): ReadableStream<Uint8Array> {
  return new ReadableStream({
    start(controller) {
      controller.enqueue(bytes);
      controller.close();
    },
  });
}

async function collect(stream: ReadableStream<Uint8Array>): Promise<Uint8Array> {
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

function storedResponse(data: Stored, type: string): Response {
  const body = data instanceof Uint8Array ? asBody(data) : fileBody(data.path);
  const length = data instanceof Uint8Array ? data.byteLength : data.size;
  return new Response(body, {
    headers: { "content-length": String(length), "content-type": type },
  });
}

function cacheStore(open: () => Promise<CacheLike>): Store {
  let cache: Promise<CacheLike> | undefined;
  const get = () => (cache ??= open());
  return {
    open: async (key) => openBody(await (await get()).match(key)),
    put: async (key, _ref, data, type) => {
      await (await get()).put(key, storedResponse(data, type));
    },
    delete: async (key) => {
      await (await get()).delete?.(key);
    },
  };
}

/** The layout of transformers.js' FileCache, so its entries are reused (and checked). */
function fileStore(env: TransformersEnv): Store {
  const where = (ref: FileRef | undefined) => {
    if (!ref || ref.model.base === undefined || !env.cacheDir) return undefined;
    const { name, revision } = ref.model;
    return join(env.cacheDir, ...(revision === "main" ? [name] : [name, revision]), ref.file);
  };
  return {
    async open(_key, ref) {
      const path = where(ref);
      if (path === undefined) return undefined;
      const info = await stat(path).catch(() => undefined);
      return info?.isFile() ? fileBody(path) : undefined;
    },
    async put(_key, ref, data) {
      const path = where(ref);
      if (path === undefined) return;
      await mkdir(dirname(path), { recursive: true });
      const tmp = `${path}.${crypto.randomUUID().slice(0, 8)}.tmp`;
      try {
        if (data instanceof Uint8Array) await writeFile(tmp, data);
        else await copyFile(data.path, tmp);
        await rename(tmp, path);
      } catch (error) {
        await rm(tmp, { force: true });
        throw error;
      }
    },
    async delete(_key, ref) {
      const path = where(ref);
      if (path !== undefined) await rm(path, { force: true });
    },
  };
}

/**
 * The cache transformers.js would use now (read at each call, so `env` may be
 * changed after installing): the custom cache it had, the Web Cache API or
 * its file cache.
 */
function pickStore(
  env: TransformersEnv,
  custom: { use: boolean; cache: unknown },
  opened: Map<string, Store>,
): Store | undefined {
  if (custom.use && custom.cache) {
    const c = custom.cache as CacheLike;
    return cacheStore(() => Promise.resolve(c));
  }
  if (env.useBrowserCache && typeof caches !== "undefined") {
    const name = env.cacheKey;
    let s = opened.get(`web:${name}`);
    if (!s) {
      s = cacheStore(() => caches.open(name) as Promise<CacheLike>);
      opened.set(`web:${name}`, s);
    }
    return s;
  }
  if (env.useFSCache) return fileStore(env);
  return undefined;
}

/** Bytes as a Response body (fetch types want an ArrayBuffer-backed view). */
function asBody(bytes: Uint8Array): BodyInit {
  return bytes as Uint8Array<ArrayBuffer>;
}

function escapeRe(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

function isUrl(s: string): boolean {
  return /^(?:https?|blob):/i.test(s);
}

/** A file's bytes as a stream of 4 MiB chunks, opened on first read. */
function fileBody(path: string): ReadableStream<Uint8Array> {
  let handle: FileHandle | undefined;
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      handle ??= await open(path, "r");
      const buf = new Uint8Array(BLOCK_BYTES);
      const { bytesRead } = await handle.read(buf, 0, buf.length, null);
      if (bytesRead === 0) {
        await handle.close();
        controller.close();
        return;
      }
      controller.enqueue(buf.subarray(0, bytesRead));
    },
    async cancel() {
      await handle?.close();
    },
  }, { highWaterMark: 0 });
}

/** A model file path that stays inside its folder once joined (no `..`, no absolute). */
function safeRelative(file: string): boolean {
  return file.split("/").every((seg) =>
    seg !== "" && seg !== "." && seg !== ".." && !seg.includes("\\")
  );
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
 * @param options Policy, mode, lockfile, report callback.
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
  const env: TransformersEnv = "env" in transformers && typeof transformers.env === "object"
    ? transformers.env
    : transformers as TransformersEnv;
  const envRecord = env as unknown as Record<PropertyKey, unknown>;
  if (envRecord[GUARDED]) {
    throw new TypeError(
      "Cannot guard transformers.js: a guard is already installed (uninstall it first)",
    );
  }
  const policy = resolvePolicy(options.policy);
  const mode = options.mode ?? "enforce";
  if (mode !== "enforce" && mode !== "warn") {
    throw new TypeError(
      `Cannot guard transformers.js: mode must be "enforce" or "warn", got ${JSON.stringify(mode)}`,
    );
  }
  const frozen = options.frozen ?? false;
  const records: GuardRecord[] = [];
  const models = new Map<string, ModelState>();
  // Verified private copies waiting for transformers.js to ask for them, by cache key.
  const ready = new Map<string, { path: string; timer: ReturnType<typeof setTimeout> }>();
  // Every private copy (or refusal marker) by path: what onnxruntime may open.
  const copies = new Map<string, PrivateCopy>();
  const privateDir = new PrivateDir(options.workDir);
  // Responses over local files made by the guarded fetch: read from the file itself.
  const localBodies = new WeakMap<Response, string>();
  const warned = new Set<string>();

  const originalFetch = env.fetch;
  const saved = {
    fetch: env.fetch,
    useFS: env.useFS,
    useCustomCache: env.useCustomCache,
    customCache: env.customCache,
  };
  const opened = new Map<string, Store>();
  const currentStore = () =>
    pickStore(env, { use: saved.useCustomCache, cache: saved.customCache }, opened);
  const readLocalsDirectly = env.useFS;

  let lockfile: Promise<Lockfile | undefined> | undefined;
  const getLockfile = () =>
    lockfile ??= options.lockfile === undefined
      ? Promise.resolve(undefined)
      : typeof options.lockfile === "string"
      ? Lockfile.load(options.lockfile)
      : Promise.resolve(options.lockfile);

  // ---- which model a request belongs to ----

  function locateRemote(url: string): FileRef | undefined {
    const host = env.remoteHost.replace(/\/+$/, "");
    const template = env.remotePathTemplate.replace(/^\/+|\/+$/g, "");
    const pattern = escapeRe(template)
      .replaceAll(escapeRe("{model}"), "(?<model>.+?)")
      .replaceAll(escapeRe("{revision}"), "(?<revision>[^/]+)");
    const m = new RegExp(`^${escapeRe(host)}/(?<prefix>${pattern})/(?<file>[^?#]+)$`).exec(
      url.split(/[?#]/)[0]!,
    );
    if (!m?.groups) return undefined;
    const { model: name = "", revision = "main", prefix = "", file = "" } = m.groups;
    const base = `${host}/${prefix}`;
    return {
      model: {
        key: `remote:${base}`,
        name,
        revision: decodeURIComponent(revision),
        signature: `${base}/model.sig`,
        base,
      },
      file: file.split("/").map(decodeURIComponent).join("/"),
    };
  }

  const roots = new Map<string, string>();
  async function locateLocal(path: string): Promise<FileRef | undefined> {
    if (!MODEL_FILE.test(path)) return undefined;
    const abs = resolve(path);
    const start = dirname(abs);
    let root = roots.get(start);
    if (root === undefined) {
      let fallback: string | undefined;
      for (let dir = start, depth = 0; depth < 6; depth++) {
        const found = await Promise.all(
          MARKERS.map((m) => stat(`${dir}${sep}${m}`).then(() => m, () => undefined)),
        );
        if (found.includes("model.sig")) {
          root = dir;
          break;
        }
        if (fallback === undefined && found.some((m) => m !== undefined)) fallback = dir;
        const up = dirname(dir);
        if (up === dir) break;
        dir = up;
      }
      root ??= fallback ?? start;
      roots.set(start, root);
    }
    return {
      model: {
        key: `local:${root}`,
        name: root,
        revision: "local",
        signature: `${root}${sep}model.sig`,
      },
      file: relative(root, abs).split(sep).join("/"),
    };
  }

  const locate = (key: string) =>
    isUrl(key) ? Promise.resolve(locateRemote(key)) : locateLocal(key);

  // ---- evidence, verdicts and records ----

  function state(ref: ModelRef): ModelState {
    const now = Date.now();
    let st = models.get(ref.key);
    if (!st || (now - st.last > IDLE_MS && st.inflight.size === 0)) {
      st = {
        ref,
        oms: undefined,
        last: now,
        inflight: new Set(),
        refusals: new Map(),
        verified: new Map(),
        signer: undefined,
        reported: new Set(),
      };
      models.set(ref.key, st);
    }
    st.last = now;
    return st;
  }

  function track<T>(st: ModelState, p: Promise<T>): Promise<T> {
    st.inflight.add(p);
    const done = () => {
      st.inflight.delete(p);
      st.last = Date.now();
    };
    p.then(done, done);
    return p;
  }

  async function loadOms(ref: ModelRef): Promise<OmsEvidence> {
    if (ref.base === undefined) {
      let text: string;
      try {
        text = await readFile(ref.signature, "utf8");
      } catch (e) {
        if ((e as { code?: string }).code === "ENOENT") return { absent: true };
        return {
          absent: false,
          error: new SignatureMissing(`Cannot read ${ref.signature}`, { cause: e }),
        };
      }
      return verifyOmsText(text, policy, ref.signature);
    }
    const sigRef: FileRef = { model: ref, file: "model.sig" };
    const store = currentStore();
    const body = await store?.open(ref.signature, sigRef).catch(() => undefined);
    const cached = body && await collect(body).catch(() => undefined);
    if (cached !== undefined) {
      const v = await verifyOmsText(new TextDecoder().decode(cached), policy, ref.signature);
      if (!v.error) return v;
      await store?.delete(ref.signature, sigRef).catch(() => {});
    }
    if (!env.allowRemoteModels) return { absent: true };
    let res: Response;
    try {
      res = await originalFetch(ref.signature);
    } catch (cause) {
      return {
        absent: false,
        error: new SignatureMissing(`Cannot fetch ${ref.signature}`, {
          file: ref.signature,
          cause,
        }),
      };
    }
    if (res.status === 404) {
      await res.body?.cancel();
      return { absent: true };
    }
    if (!res.ok) {
      await res.body?.cancel();
      return {
        absent: false,
        error: new SignatureMissing(
          `Cannot fetch the signature: the server answered ${res.status}`,
          {
            file: ref.signature,
          },
        ),
      };
    }
    const text = await res.text();
    const v = await verifyOmsText(text, policy, ref.signature);
    if (!v.error) {
      await store?.put(ref.signature, sigRef, new TextEncoder().encode(text), "application/json")
        .catch(() => {});
    }
    return v;
  }

  function report(st: ModelState, ref: FileRef, v: FileVerdict): void {
    const verdict: GuardRecord["verdict"] = v.ok
      ? v.evidence === "none" ? "warned" : "verified"
      : mode === "warn"
      ? "warned"
      : "refused";
    const reason = v.error?.message ??
      (v.evidence === "none" ? "no evidence; the policy makes signatures optional" : undefined);
    const key = `${ref.file}\0${v.digest}\0${verdict}\0${reason ?? ""}`;
    if (v.ok && v.evidence !== "none") {
      st.verified.set(ref.file, v.digest);
      st.signer ??= v.signer;
    }
    if (v.ok) st.refusals.delete(ref.file);
    else if (mode === "enforce") st.refusals.set(ref.file, v.error!);
    if (st.reported.has(key)) return;
    st.reported.add(key);
    const record: GuardRecord = {
      model: ref.model.name,
      file: ref.file,
      digest: v.digest,
      ...(v.signer ? { signer: v.signer } : {}),
      evidence: v.evidence,
      verdict,
      ...(reason !== undefined ? { reason } : {}),
    };
    records.push(record);
    if (verdict === "warned" && !v.ok && !warned.has(key)) {
      warned.add(key);
      console.warn(
        `safemodels: loading ${ref.model.name}/${ref.file} anyway (warn mode): ${reason}`,
      );
    }
    options.onReport?.(record);
  }

  /** Checks bytes of a file; `allowed` is whether they may be used. */
  function check(
    ref: FileRef,
    digest: string,
    input?: Uint8Array | string,
  ): Promise<FileVerdict> {
    const st = state(ref.model);
    return track(
      st,
      (async () => {
        let v: FileVerdict;
        try {
          st.oms ??= loadOms(ref.model);
          const oms = await st.oms;
          v = await decide(ref, digest, input, {
            policy,
            oms,
            lockfile: await getLockfile(),
            frozen,
          });
        } catch (error) {
          v = { ok: false, digest, evidence: "none", error: error as Error };
        }
        report(st, ref, v);
        return v;
      })(),
    );
  }

  const allowed = (v: FileVerdict) => v.ok || mode === "warn";

  function unrefTimer(timer: ReturnType<typeof setTimeout>): void {
    const unref = (globalThis as { Deno?: { unrefTimer(id: number): void } }).Deno?.unrefTimer;
    if (unref) unref(timer as unknown as number);
    else (timer as unknown as { unref?: () => void }).unref?.();
  }

  /** Keeps a private copy's path for the next `match` of `key` (transformers.js asks twice). */
  function remember(key: string, path: string): void {
    const old = ready.get(key);
    if (old) clearTimeout(old.timer);
    const timer = setTimeout(() => {
      ready.delete(key);
      const copy = copies.get(path);
      if (copy) release(path, copy, 0);
    }, RECENT_MS);
    unrefTimer(timer);
    ready.set(key, { path, timer });
  }

  function take(key: string): string | undefined {
    const hit = ready.get(key);
    if (!hit) return undefined;
    clearTimeout(hit.timer);
    ready.delete(key);
    return hit.path;
  }

  /**
   * Removes a copy's files after `delay` ms (onnxruntime has mapped or read
   * them by then; a concurrent load of the same file may still be creating
   * its session). A path a newer copy took over is left to that copy.
   */
  function release(path: string, copy: PrivateCopy, delay: number): void {
    const timer = setTimeout(() => {
      const current = copies.get(path) === copy;
      if (current) copies.delete(path);
      removeFiles(current ? [path, ...copy.extra] : copy.extra);
    }, delay);
    unrefTimer(timer);
  }

  /**
   * Copies a weight file into the private folder while hashing it (one
   * pass), then checks the digest. Allowed bytes stay there for onnxruntime;
   * refused ones are deleted and the path is left as a marker that makes
   * the gate throw the refusal (failing the load inside transformers.js
   * instead could hang it).
   */
  function privatize(
    ref: FileRef,
    chunks: { next: NextChunk; close(): Promise<void> },
  ): Promise<{ path: string; copy: PrivateCopy }> {
    const st = state(ref.model);
    return track(
      st,
      (async () => {
        let path: string | undefined;
        let temp: string | undefined;
        let digest: string;
        try {
          if (!safeRelative(ref.file)) {
            throw new SignatureMissing(
              `Cannot load ${ref.file}: the file name leaves the model folder`,
              { file: `${ref.model.name}/${ref.file}` },
            );
          }
          const root = await privateDir.root();
          path = join(root, (await sha256Hex(ref.model.key)).slice(0, 16), ...ref.file.split("/"));
          await mkdir(dirname(path), { recursive: true, mode: 0o700 });
          temp = PrivateDir.sibling(path, "part");
          digest = (await writeHashed(chunks.next, temp)).digest;
        } catch (error) {
          const v: FileVerdict = { ok: false, digest: "", evidence: "none", error: error as Error };
          report(st, ref, v);
          path ??= join(await privateDir.root(), `refused-${crypto.randomUUID()}`);
          const copy: PrivateCopy = { ref, verdict: v, locations: new Set(), extra: [] };
          adopt(path, copy);
          return { path, copy };
        } finally {
          await chunks.close().catch(() => {});
        }
        const verdict = await check(ref, digest, temp);
        const copy: PrivateCopy = { ref, verdict, locations: new Set(), extra: [] };
        if (allowed(verdict)) await rename(temp, path);
        else await rm(temp, { force: true });
        adopt(path, copy);
        return { path, copy };
      })(),
    );
  }

  function adopt(path: string, copy: PrivateCopy): void {
    const old = copies.get(path);
    copies.set(path, copy);
    if (old) release(path, old, RECENT_MS);
  }

  /** Rewrites a verified private `.onnx` so onnxruntime maps its weights (see _private_copy.ts). */
  async function finishOnnx(path: string, copy: PrivateCopy): Promise<void> {
    if (!copy.ref.file.endsWith(".onnx") || !allowed(copy.verdict)) return;
    const done = await externalizeOnnx(path);
    copy.locations = done.locations;
    if (done.weights !== undefined) copy.extra.push(done.weights);
  }

  // ---- env.fetch ----

  function verifyingBody(
    ref: FileRef,
    source: ReadableStream<Uint8Array>,
  ): ReadableStream<Uint8Array> {
    const st = state(ref.model);
    let reader: ReadableStreamDefaultReader<Uint8Array> | undefined;
    let hasher: Awaited<ReturnType<typeof createSha256>> | undefined;
    let finish: (() => void) | undefined;
    return new ReadableStream<Uint8Array>({
      async pull(controller) {
        if (!reader) {
          reader = source.getReader();
          hasher = await createSha256();
          track(st, new Promise<void>((resolve) => (finish = resolve)));
        }
        const { value, done } = await reader.read();
        if (!done) {
          hasher!.update(value);
          controller.enqueue(value);
          return;
        }
        const v = await check(ref, toHex(hasher!.digest()));
        finish?.();
        if (allowed(v)) controller.close();
        else controller.error(v.error);
      },
      async cancel(reason) {
        finish?.();
        await (reader ? reader.cancel(reason) : source.cancel(reason));
      },
    }, { highWaterMark: 0 }); // pull only when read: metadata probes never start
  }

  // deno-lint-ignore no-explicit-any
  async function guardedFetch(input: string | URL | Request, init?: any): Promise<Response> {
    const url = typeof input === "string" ? input : input instanceof URL ? input.href : input.url;
    const headers = new Headers(init?.headers);
    const probe = headers.has("range") || (init?.method ?? "GET").toUpperCase() !== "GET";
    if (isUrl(url)) {
      const ref = locateRemote(url);
      const res: Response = await originalFetch(input as string, init);
      // Metadata probes and errors carry no model bytes; weights are checked by the cache.
      if (!ref || probe || !res.ok || !res.body || isWeightFile(ref.file)) return res;
      return new Response(verifyingBody(ref, res.body), {
        status: res.status,
        statusText: res.statusText,
        headers: res.headers,
      });
    }
    const ref = await locateLocal(url);
    let res: Response;
    if (readLocalsDirectly) {
      const info = await stat(url).catch(() => undefined);
      if (!info?.isFile()) return new Response(null, { status: 404, statusText: "Not Found" });
      res = new Response(fileBody(url), {
        status: 200,
        headers: { "content-length": String(info.size) },
      });
      // Weights are copied by the cache's put, which reads the file itself.
      localBodies.set(res, url);
    } else {
      res = await originalFetch(input as string, init);
    }
    if (!ref || probe || !res.ok || !res.body || isWeightFile(ref.file)) return res;
    return new Response(verifyingBody(ref, res.body), { status: res.status, headers: res.headers });
  }

  // ---- env.customCache ----

  /** Chunks of a response, or of the local file under it. */
  async function chunksOf(response: Response) {
    const local = localBodies.get(response);
    if (local !== undefined) {
      await response.body?.cancel();
      return await fileChunks(local);
    }
    const body = response.body ?? bytesStream(new Uint8Array(await response.arrayBuffer()));
    const { next, cancel } = streamChunks(body);
    let done = false;
    return {
      next: async () => {
        const chunk = await next();
        if (chunk === null) done = true;
        return chunk;
      },
      close: () => done ? Promise.resolve() : cancel(),
    };
  }

  const customCache = {
    async match(key: string): Promise<Response | string | undefined> {
      const store = currentStore();
      const ref = await locate(key);
      if (!ref) {
        const body = isUrl(key) ? await store?.open(key, undefined) : undefined;
        return body && new Response(body);
      }
      if (isWeightFile(ref.file)) {
        // Weights go to transformers.js as the path of their verified private
        // copy, which it hands to onnxruntime (through the gate).
        const fresh = take(key);
        if (fresh !== undefined) return fresh;
        // Local weights come through fetch and put; remote ones may be cached.
        if (!isUrl(key) || !store) return undefined;
        const body = await store.open(key, ref);
        if (body === undefined) return undefined;
        const { path, copy } = await privatize(ref, await chunksOf(new Response(body)));
        if (!allowed(copy.verdict)) {
          // A tampered cache entry is dropped: transformers.js fetches the file again.
          await store.delete(key, ref).catch(() => {});
          return undefined;
        }
        await finishOnnx(path, copy);
        remember(key, path);
        return path;
      }
      if (!isUrl(key) || !store) return undefined;
      const body = await store.open(key, ref);
      if (body === undefined) return undefined;
      const bytes = await collect(body);
      const v = await check(ref, await sha256Hex(bytes), bytes);
      if (!allowed(v)) {
        await store.delete(key, ref).catch(() => {});
        return undefined;
      }
      return new Response(asBody(bytes), {
        headers: { "content-length": String(bytes.byteLength) },
      });
    },
    async put(key: string, response: Response): Promise<void> {
      const store = currentStore();
      const ref = await locate(key);
      const type = response.headers.get("content-type") ?? "application/octet-stream";
      if (!ref) {
        const bytes = new Uint8Array(await response.arrayBuffer());
        if (isUrl(key)) await store?.put(key, undefined, bytes, type);
        return;
      }
      if (isWeightFile(ref.file)) {
        // One pass: each chunk is hashed and written to the private copy as it arrives.
        const { path, copy } = await privatize(ref, await chunksOf(response));
        // Only verified remote files are kept; local files are read where they are.
        if (copy.verdict.ok && isUrl(key) && store) {
          const { size } = await stat(path);
          await store.put(key, ref, { path, size }, type).catch((e) =>
            console.warn(`safemodels: cannot cache ${key}: ${e}`)
          );
        }
        await finishOnnx(path, copy);
        remember(key, path);
        return;
      }
      const bytes = new Uint8Array(await response.arrayBuffer());
      const v = await check(ref, await sha256Hex(bytes), bytes);
      if (!allowed(v)) throw v.error;
      if (v.ok && isUrl(key) && store) {
        await store.put(key, ref, bytes, type).catch((e) =>
          console.warn(`safemodels: cannot cache ${key}: ${e}`)
        );
      }
    },
    async delete(key: string): Promise<boolean> {
      const store = currentStore();
      const ref = await locate(key);
      take(key);
      await store?.delete(key, ref);
      return true;
    },
  };

  // ---- InferenceSession.create ----

  const classes = [ort.InferenceSession];
  const exposed =
    (globalThis as Record<symbol, { InferenceSession?: typeof ort.InferenceSession }>)[
      Symbol.for("onnxruntime")
    ]?.InferenceSession;
  if (exposed && exposed !== ort.InferenceSession) classes.push(exposed);
  const createDescriptors = classes.map((c) => Object.getOwnPropertyDescriptor(c, "create"));

  function refuseOrWarn(error: Error, key: string): void {
    if (mode === "enforce") throw error;
    if (!warned.has(key)) {
      warned.add(key);
      console.warn(
        `safemodels: creating the onnxruntime session anyway (warn mode): ${error.message}`,
      );
    }
  }

  async function gate(
    // deno-lint-ignore no-explicit-any
    original: (...args: any[]) => Promise<ort.InferenceSession>,
    self: unknown,
    args: unknown[],
  ): Promise<ort.InferenceSession> {
    const [model] = args;
    if (typeof model !== "string") {
      // Bytes: only the tensor-op graphs transformers.js builds itself.
      const buffer = model instanceof Uint8Array ? model : new Uint8Array(
        model as ArrayBuffer,
        typeof args[1] === "number" ? args[1] : 0,
        typeof args[2] === "number" ? args[2] : undefined,
      );
      const digest = await sha256Hex(buffer);
      if (!TENSOR_OPS.has(digest)) {
        refuseOrWarn(
          new SignatureMissing(
            `Cannot create an onnxruntime session: the model (sha256 ${digest}) was not loaded through the guarded transformers.js`,
          ),
          `unknown\0${digest}`,
        );
      }
      return original.apply(self, args);
    }
    const copy = copies.get(resolve(model));
    if (!copy) {
      refuseOrWarn(
        new SignatureMissing(
          "Cannot create an onnxruntime session from this path: it is not a copy the guard verified (load models through the guarded transformers.js)",
          { file: model },
        ),
        `path\0${model}`,
      );
      return original.apply(self, args);
    }
    const shown = `${copy.ref.model.name}/${copy.ref.file}`;
    if (!copy.verdict.ok && mode === "enforce") throw copy.verdict.error;
    const st = state(copy.ref.model);
    // Let requests for the model's other files (tokenizer, config) finish first.
    await new Promise((r) => setTimeout(r, 0));
    while (st.inflight.size > 0) await Promise.allSettled([...st.inflight]);
    const poisoned = [...st.refusals.values()][0];
    if (poisoned && mode === "enforce") throw poisoned;

    // Bytes given beside the path would reach onnxruntime unverified.
    const options = args[1] as ort.InferenceSession.SessionOptions | undefined;
    for (const entry of options?.externalData ?? []) {
      if (typeof entry === "string") continue;
      refuseOrWarn(
        new SignatureMissing(
          `Cannot create an onnxruntime session: external data ${entry.path} is given as bytes or a path of its own, so it was not verified`,
          { file: shown },
        ),
        `ext\0${entry.path}`,
      );
    }
    // onnxruntime opens external data beside the copy: each must be a verified copy too.
    const used = [[resolve(model), copy] as const];
    for (const location of copy.locations) {
      const path = join(dirname(resolve(model)), location);
      const ext = copies.get(path);
      if (!ext || ext.ref.model.key !== copy.ref.model.key) {
        refuseOrWarn(
          new SignatureMissing(
            `Cannot create an onnxruntime session: the model reads external data "${location}", which was not loaded and verified through transformers.js (set use_external_data_format)`,
            { file: shown },
          ),
          `graph\0${shown}\0${location}`,
        );
        continue;
      }
      if (!ext.verdict.ok && mode === "enforce") throw ext.verdict.error;
      used.push([path, ext]);
    }
    await lockOnFirstUse(st);
    try {
      return await original.apply(self, args);
    } finally {
      for (const [path, c] of used) release(path, c, RECENT_MS);
    }
  }

  async function lockOnFirstUse(st: ModelState): Promise<void> {
    const lock = await getLockfile();
    if (!lock || frozen || st.verified.size === 0) return;
    const { name, revision } = st.ref;
    if (lock.get(name, revision) !== undefined) return;
    lock.check(name, revision, {
      digests: Object.fromEntries(st.verified),
      ...(st.signer ? { signer: lockedSigner(st.signer) } : {}),
    });
    if (typeof options.lockfile === "string") await lock.save(options.lockfile);
  }

  // ---- install ----

  env.fetch = guardedFetch;
  env.useFS = false;
  env.useCustomCache = true;
  env.customCache = customCache;
  envRecord[GUARDED] = true;
  classes.forEach((cls, i) => {
    const original = createDescriptors[i]!.value as (
      ...args: unknown[]
    ) => Promise<ort.InferenceSession>;
    Object.defineProperty(cls, "create", {
      ...createDescriptors[i],
      value: function create(this: unknown, ...args: unknown[]) {
        return gate(original, this, args);
      },
    });
  });

  let installed = true;
  return {
    get records() {
      return records;
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
      for (const { timer } of ready.values()) clearTimeout(timer);
      ready.clear();
      copies.clear();
      privateDir.removeSync();
    },
  };
}
