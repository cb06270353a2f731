// The transformers.js guard's core. No file system and no onnxruntime here:
// both come in through GuardPlatform (plugins/transformers.ts passes
// onnxruntime-node and _guard_files.ts). Weights reach onnxruntime either as
// private file copies or, with `weights: "memory"`, as verified buffers: the
// route a browser build would take (it still needs sign/ to verify without
// node:crypto, see the README).
import { createSha256, sha256Hex, toHex } from "../hash/_digest.ts";
import { readOnnx } from "../hash/_onnx.ts";
import { bytesSource } from "../hash/_source.ts";
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
  type Verifiers,
  verifyOmsText,
} from "./_transformers_verify.ts";

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
  /**
   * How verified weights reach onnxruntime: `"files"`, private copies it
   * opens by path, or `"memory"`, the verified buffers themselves (no disk;
   * onnxruntime copies them, so a load takes more memory and time).
   * @default {"files"}
   */
  weights?: "files" | "memory";
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
type Handle = string | Uint8Array;

interface PrivateCopy {
  ref: FileRef;
  verdict: FileVerdict;
  /** External-data locations its graph reads (`.onnx` only), relative to its folder. */
  locations: Set<string>;
  /** Other files that belong to it: the verified bytes a rewritten graph reads. */
  extra: string[];
}

/** What a cache holds for a file: its bytes, or a local file with them. */
export type Stored = Uint8Array | { path: string; size: number };

/** A cache transformers.js would have used, minus verification. */
export interface Store {
  open(key: string, ref: FileRef | undefined): Promise<ReadableStream<Uint8Array> | undefined>;
  put(key: string, ref: FileRef | undefined, data: Stored, type: string): Promise<void>;
  delete(key: string, ref: FileRef | undefined): Promise<void>;
}

type CacheLike = {
  match(key: string): Promise<unknown>;
  put(key: string, response: Response): Promise<unknown>;
  delete?(key: string): Promise<unknown>;
};

/** Produces the next chunk of a file, or `null` at its end. */
export type NextChunk = () => Promise<Uint8Array | null>;

/** Chunks of a file, and a way to stop reading it. */
export interface Chunks {
  next: NextChunk;
  close(): Promise<void>;
}

/** What became of a verified `.onnx` copy (see _private_copy.ts). */
export interface OnnxCopy {
  locations: Set<string>;
  weights?: string;
}

/**
 * File access for the guard (Deno and Node): local model folders, the file
 * cache, and private copies of weights. Browsers have none.
 */
export interface GuardFiles {
  fileBody(path: string): ReadableStream<Uint8Array>;
  fileChunks(path: string): Promise<Chunks>;
  /** Size of a regular file; `undefined` when there is none. */
  fileSize(path: string): Promise<number | undefined>;
  /** A file's text; `undefined` when it does not exist. */
  readText(path: string): Promise<string | undefined>;
  /** transformers.js' file cache. */
  fileStore(env: TransformersEnv): Store;
  /** The model folder and relative name of a local file. */
  locateLocal(path: string): Promise<FileRef>;
  /** Where the private copy of a file goes (its folder made). */
  copyPath(ref: FileRef): Promise<string>;
  /** A path that names a refusal (nothing is written there). */
  markerPath(): string;
  /** Writes chunks beside `path` while hashing them. */
  writeTemp(path: string, next: NextChunk): Promise<{ temp: string; digest: string }>;
  commit(temp: string, path: string): Promise<void>;
  discard(temp: string): Promise<void>;
  finishOnnx(path: string): Promise<OnnxCopy>;
  remove(paths: Iterable<string>): Promise<void>;
  resolve(path: string): string;
  /** Where onnxruntime looks for external data `location` of the model at `model`. */
  beside(model: string, location: string): string;
  /** Removes every private copy (uninstall, exit). */
  removeAll(): void;
}

/**
 * The `InferenceSession` class (its static `create`) of an onnxruntime
 * package, whose sessions the guard gates.
 *
 * @example
 * ```ts ignore
 * import * as ort from "onnxruntime-web/webgpu";
 * const sessions: SessionClass = ort.InferenceSession;
 * ```
 */
export interface SessionClass {
  /** Creates a session from a model's bytes (or path). */
  // deno-lint-ignore no-explicit-any
  create(...args: any[]): Promise<unknown>;
}

/**
 * What the runtime provides: onnxruntime's session classes, file access
 * (Deno, Node) and signature checks (absent: lockfile pins only).
 */
export interface GuardPlatform {
  sessions: SessionClass[];
  files?: GuardFiles;
  verifiers?: Verifiers;
}

/** Chunks of a stream (each chunk is the stream's own, never reused). */
function streamChunks(stream: ReadableStream<Uint8Array>): Chunks {
  const reader = stream.getReader();
  let done = false;
  return {
    next: async () => {
      const r = await reader.read();
      if (r.done) done = true;
      return r.done ? null : r.value;
    },
    close: () => done ? Promise.resolve() : reader.cancel(),
  };
}

/** A length header is trusted for preallocation up to this; beyond, the buffer grows. */
const PREALLOCATE_MAX = 1 << 30;
/** Files other than weights (JSON, text) larger than this are refused. */
const MAX_TEXT_FILE = 256 << 20;

/**
 * Reads chunks into one buffer (sized by `size` when known and sane),
 * hashing each as it arrives; more than `limit` bytes is a RangeError.
 */
async function readHashed(
  chunks: Chunks,
  size: number | undefined,
  limit = Infinity,
): Promise<{ bytes: Uint8Array; digest: string }> {
  const hasher = await createSha256();
  const sane = size !== undefined && Number.isSafeInteger(size) && size >= 0 &&
    size <= Math.min(limit, PREALLOCATE_MAX);
  let bytes = new Uint8Array(sane ? size : 0);
  const parts: Uint8Array[] = [];
  let at = 0;
  try {
    for (let chunk = await chunks.next(); chunk !== null; chunk = await chunks.next()) {
      if (at + chunk.byteLength > limit) {
        throw new RangeError(`it is larger than ${limit} bytes`);
      }
      hasher.update(chunk);
      if (parts.length === 0 && at + chunk.byteLength <= bytes.byteLength) {
        bytes.set(chunk, at);
      } else {
        if (parts.length === 0 && at > 0) parts.push(bytes.subarray(0, at));
        parts.push(chunk.slice());
      }
      at += chunk.byteLength;
    }
  } finally {
    await chunks.close().catch(() => {});
  }
  if (parts.length > 0) {
    bytes = new Uint8Array(at);
    let p = 0;
    for (const part of parts) {
      bytes.set(part, p);
      p += part.byteLength;
    }
  } else if (at < bytes.byteLength) {
    bytes = bytes.slice(0, at);
  }
  return { bytes, digest: toHex(hasher.digest()) };
}

/**
 * A response over bytes the guard verified, whose `arrayBuffer()` returns
 * that very buffer: transformers.js then hands it to onnxruntime without a
 * copy, and the gate knows it by identity without hashing it again.
 */
class VerifiedResponse extends Response {
  readonly #bytes: Uint8Array;
  constructor(bytes: Uint8Array) {
    super(bytesStream(bytes), { headers: { "content-length": String(bytes.byteLength) } });
    this.#bytes = bytes;
  }
  override arrayBuffer(): Promise<ArrayBuffer> {
    const b = this.#bytes;
    const whole = b.byteOffset === 0 && b.byteLength === b.buffer.byteLength;
    return Promise.resolve((whole ? b.buffer : b.slice().buffer) as ArrayBuffer);
  }
}

/** The body of what a cache's `match` returned (a Response, a FileResponse or a path). */
async function openBody(
  r: unknown,
  files: GuardFiles | undefined,
): Promise<ReadableStream<Uint8Array> | undefined> {
  if (r === undefined || r === null) return undefined;
  const path = typeof r === "string" ? r : (r as { filePath?: unknown }).filePath;
  if (typeof path === "string") return files?.fileBody(path);
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

function storedResponse(data: Stored, type: string, files: GuardFiles | undefined): Response {
  const body = data instanceof Uint8Array ? asBody(data) : files!.fileBody(data.path);
  const length = data instanceof Uint8Array ? data.byteLength : data.size;
  return new Response(body, {
    headers: { "content-length": String(length), "content-type": type },
  });
}

function cacheStore(open: () => Promise<CacheLike>, files: GuardFiles | undefined): Store {
  let cache: Promise<CacheLike> | undefined;
  const get = () => (cache ??= open());
  return {
    open: async (key) => openBody(await (await get()).match(key), files),
    put: async (key, _ref, data, type) => {
      await (await get()).put(key, storedResponse(data, type, files));
    },
    delete: async (key) => {
      await (await get()).delete?.(key);
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
  files: GuardFiles | undefined,
): Store | undefined {
  if (custom.use && custom.cache) {
    const c = custom.cache as CacheLike;
    return cacheStore(() => Promise.resolve(c), files);
  }
  if (env.useBrowserCache && typeof caches !== "undefined") {
    const name = env.cacheKey;
    let s = opened.get(`web:${name}`);
    if (!s) {
      s = cacheStore(() => caches.open(name) as Promise<CacheLike>, files);
      opened.set(`web:${name}`, s);
    }
    return s;
  }
  if (env.useFSCache && files) return files.fileStore(env);
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

/** A model file path that stays inside its folder once joined (no `..`, no absolute). */
function safeRelative(file: string): boolean {
  return file.split("/").every((seg) =>
    seg !== "" && seg !== "." && seg !== ".." && !seg.includes("\\")
  );
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
  const { files, verifiers } = platform;
  // Weights kept as private files (the default) or verified buffers.
  const inMemory = options.weights === "memory" || files === undefined;
  if (
    options.weights !== undefined && options.weights !== "files" && options.weights !== "memory"
  ) {
    throw new TypeError(
      `Cannot guard transformers.js: weights must be "files" or "memory", got ${
        JSON.stringify(options.weights)
      }`,
    );
  }
  // Verified weights waiting for transformers.js to ask for them, by cache key:
  // the path of a private copy, or verified bytes.
  type Kept = {
    handle: Handle;
    copy: PrivateCopy;
    epoch: ModelState;
    timer: ReturnType<typeof setTimeout>;
  };
  const ready = new Map<string, Kept>();
  // Weights the guarded fetch took in (memory mode), waiting for `put`.
  const fetched = new Map<string, Kept>();
  // Every private copy (or refusal marker) by path: what onnxruntime may open.
  const copies = new Map<string, PrivateCopy>();
  // Verified buffers (or refusal markers): by identity, and by digest.
  const known = new WeakMap<ArrayBufferLike, PrivateCopy>();
  const byDigest = new Map<string, PrivateCopy>();
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
    pickStore(env, { use: saved.useCustomCache, cache: saved.customCache }, opened, files);
  const readLocalsDirectly = env.useFS && files !== undefined;

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

  async function locateLocal(path: string): Promise<FileRef | undefined> {
    if (!MODEL_FILE.test(path)) return undefined;
    if (!files) {
      throw new SignatureMissing(
        `Cannot load ${path}: local model paths need a file system; serve the model over http(s) (env.remoteHost)`,
        { file: path },
      );
    }
    return await files.locateLocal(path);
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
    // Without signature checks, only the lockfile can vouch for a file.
    if (!verifiers) return { absent: true };
    if (ref.base === undefined && files) {
      let text: string | undefined;
      try {
        text = await files.readText(ref.signature);
      } catch (e) {
        return {
          absent: false,
          error: new SignatureMissing(`Cannot read ${ref.signature}`, { cause: e }),
        };
      }
      if (text === undefined) return { absent: true };
      return verifyOmsText(text, policy, ref.signature, verifiers);
    }
    const sigRef: FileRef = { model: ref, file: "model.sig" };
    const store = currentStore();
    const body = await store?.open(ref.signature, sigRef).catch(() => undefined);
    const cached = body && await collect(body).catch(() => undefined);
    if (cached !== undefined) {
      const v = await verifyOmsText(
        new TextDecoder().decode(cached),
        policy,
        ref.signature,
        verifiers,
      );
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
    const v = await verifyOmsText(text, policy, ref.signature, verifiers);
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
            verifiers,
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

  /** Keeps verified weights for the next `match` of `key` (transformers.js asks twice). */
  function remember(
    key: string,
    handle: Handle,
    copy: PrivateCopy,
    where: Map<string, Kept> = ready,
  ): void {
    const old = where.get(key);
    if (old) clearTimeout(old.timer);
    const timer = setTimeout(() => {
      where.delete(key);
      release(handle, copy, 0);
    }, RECENT_MS);
    unrefTimer(timer);
    where.set(key, { handle, copy, epoch: state(copy.ref.model), timer });
  }

  /**
   * Takes the weights kept for `key` in this load of the model (an older
   * load's are dropped).
   */
  function take(key: string, ref: FileRef, where: Map<string, Kept> = ready): Kept | undefined {
    const hit = where.get(key);
    if (!hit) return undefined;
    clearTimeout(hit.timer);
    where.delete(key);
    if (hit.epoch === state(ref.model)) return hit;
    release(hit.handle, hit.copy, 0);
    return undefined;
  }

  /** What `match` gives transformers.js for weights: a path, or a response over the bytes. */
  const served = (handle: Handle) =>
    typeof handle === "string" ? handle : new VerifiedResponse(handle);

  /**
   * Forgets a copy after `delay` ms and removes its files (onnxruntime has
   * mapped or read them by then; a concurrent load of the same file may still
   * be creating its session). A path a newer copy took over is left to it.
   */
  function release(handle: Handle, copy: PrivateCopy, delay: number): void {
    const timer = setTimeout(() => {
      if (typeof handle !== "string") {
        if (byDigest.get(copy.verdict.digest) === copy) byDigest.delete(copy.verdict.digest);
        return;
      }
      const current = copies.get(handle) === copy;
      if (current) copies.delete(handle);
      files?.remove(current ? [handle, ...copy.extra] : copy.extra);
    }, delay);
    unrefTimer(timer);
  }

  /**
   * Takes in a weight file: reads it once, hashing as it goes, into a
   * private copy (files) or one buffer (memory), then checks the digest.
   * Allowed bytes are kept for onnxruntime; refused ones are dropped and the
   * handle is a marker that makes the gate throw the refusal (failing the
   * load inside transformers.js instead could hang it).
   */
  function admit(
    ref: FileRef,
    chunks: Chunks,
    size: number | undefined,
  ): Promise<{ handle: Handle; copy: PrivateCopy }> {
    const st = state(ref.model);
    const copyOf = (verdict: FileVerdict): PrivateCopy => ({
      ref,
      verdict,
      locations: new Set(),
      extra: [],
    });
    const marker = () => new TextEncoder().encode(`refused ${crypto.randomUUID()}`);
    return track(
      st,
      (async () => {
        if (inMemory) {
          let read;
          try {
            read = await readHashed(chunks, size);
          } catch (error) {
            return adoptBytes(marker(), copyOf(failure(st, ref, copyFailure(ref, error))));
          }
          const copy = copyOf(await check(ref, read.digest, read.bytes));
          return adoptBytes(allowed(copy.verdict) ? read.bytes : marker(), copy);
        }
        let path: string | undefined;
        let written: { temp: string; digest: string };
        try {
          if (!safeRelative(ref.file)) {
            throw new SignatureMissing(
              `Cannot load ${ref.file}: the file name leaves the model folder`,
              { file: `${ref.model.name}/${ref.file}` },
            );
          }
          path = await files!.copyPath(ref);
          written = await files!.writeTemp(path, chunks.next);
        } catch (error) {
          const copy = copyOf(failure(st, ref, copyFailure(ref, error)));
          path ??= files!.markerPath();
          adopt(path, copy);
          return { handle: path, copy };
        } finally {
          await chunks.close().catch(() => {});
        }
        const verdict = await check(ref, written.digest, written.temp);
        const copy = copyOf(verdict);
        if (allowed(verdict)) await files!.commit(written.temp, path);
        else await files!.discard(written.temp);
        adopt(path, copy);
        return { handle: path, copy };
      })(),
    );
  }

  /** A file that could not be read in: its refusal, reported. */
  function failure(st: ModelState, ref: FileRef, error: Error): FileVerdict {
    const v: FileVerdict = { ok: false, digest: "", evidence: "none", error };
    report(st, ref, v);
    return v;
  }

  /** Our errors pass as they are; anything else (I/O, network) says what failed. */
  function copyFailure(ref: FileRef, error: unknown): Error {
    if (error instanceof SignatureMissing) return error;
    const message = error instanceof Error ? error.message : String(error);
    const where = inMemory
      ? ""
      : ` (work folder: ${options.workDir ?? "the system temporary folder"})`;
    return new SignatureMissing(
      `Cannot load ${ref.model.name}/${ref.file}: reading it into a verified copy failed${where}: ${message}`,
      { file: `${ref.model.name}/${ref.file}`, cause: error },
    );
  }

  function adoptBytes(bytes: Uint8Array, copy: PrivateCopy): { handle: Handle; copy: PrivateCopy } {
    known.set(bytes.buffer, copy);
    byDigest.set(copy.verdict.digest, copy);
    return { handle: bytes, copy };
  }

  function adopt(path: string, copy: PrivateCopy): void {
    const old = copies.get(path);
    copies.set(path, copy);
    if (old) release(path, old, RECENT_MS);
  }

  /** Rewrites a verified private `.onnx` so onnxruntime maps its weights (see _private_copy.ts). */
  async function finishOnnx(handle: Handle, copy: PrivateCopy): Promise<void> {
    if (typeof handle !== "string" || !copy.ref.file.endsWith(".onnx")) return;
    if (!allowed(copy.verdict)) return;
    const done = await files!.finishOnnx(handle);
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

  /**
   * Weights kept in memory are taken in as they are fetched (one pass), and
   * transformers.js gets a response over the verified buffer itself, which
   * it hands to onnxruntime (the gate knows it by identity). A refused file
   * becomes a marker the gate refuses: failing the response could hang
   * transformers.js.
   */
  async function admitFetched(key: string, ref: FileRef, res: Response): Promise<Response> {
    const { handle, copy } = await admit(ref, await chunksOf(res), sizeOf(res));
    remember(key, handle, copy, fetched);
    return new VerifiedResponse(handle as Uint8Array);
  }

  // deno-lint-ignore no-explicit-any
  async function guardedFetch(input: string | URL | Request, init?: any): Promise<Response> {
    const url = typeof input === "string" ? input : input instanceof URL ? input.href : input.url;
    const headers = new Headers(init?.headers);
    const probe = headers.has("range") || (init?.method ?? "GET").toUpperCase() !== "GET";
    if (isUrl(url)) {
      const ref = locateRemote(url);
      const res: Response = await originalFetch(input as string, init);
      // Metadata probes and errors carry no model bytes.
      if (!ref || probe || !res.ok || !res.body) return res;
      if (isWeightFile(ref.file)) return inMemory ? await admitFetched(url, ref, res) : res;
      // Other files are small: read, hashed and checked before the response
      // is handed on, so a refusal rejects the fetch itself with our error
      // (browsers turn an errored body into a bare "Failed to fetch").
      // Tracked from the first byte: the gate waits for it before any session.
      const st = state(ref.model);
      const { v, bytes } = await track(
        st,
        (async () => {
          try {
            const read = await readHashed(streamChunks(res.body!), sizeOf(res), MAX_TEXT_FILE);
            return { v: await check(ref, read.digest, read.bytes), bytes: read.bytes };
          } catch (cause) {
            const v = failure(
              st,
              ref,
              new SignatureMissing(
                `Cannot load ${ref.model.name}/${ref.file}: ${(cause as Error).message}`,
                { file: `${ref.model.name}/${ref.file}`, cause },
              ),
            );
            return { v, bytes: undefined };
          }
        })(),
      );
      // Unread bytes cannot be handed on, not even in warn mode.
      if (!allowed(v) || bytes === undefined) throw v.error;
      return new Response(asBody(bytes), {
        status: res.status,
        statusText: res.statusText,
        headers: res.headers,
      });
    }
    const ref = await locateLocal(url);
    let res: Response;
    if (readLocalsDirectly) {
      const size = await files!.fileSize(url);
      if (size === undefined) return new Response(null, { status: 404, statusText: "Not Found" });
      res = new Response(files!.fileBody(url), {
        status: 200,
        headers: { "content-length": String(size) },
      });
      // Weights are copied by the cache's put, which reads the file itself.
      localBodies.set(res, url);
    } else {
      res = await originalFetch(input as string, init);
    }
    if (!ref || probe || !res.ok || !res.body) return res;
    if (isWeightFile(ref.file)) return inMemory ? await admitFetched(url, ref, res) : res;
    return new Response(verifyingBody(ref, res.body), { status: res.status, headers: res.headers });
  }

  // ---- env.customCache ----

  /** Chunks of a response, or of the local file under it. */
  async function chunksOf(response: Response): Promise<Chunks> {
    const local = localBodies.get(response);
    if (local !== undefined && files) {
      await response.body?.cancel();
      return await files.fileChunks(local);
    }
    return streamChunks(response.body ?? bytesStream(new Uint8Array(await response.arrayBuffer())));
  }

  const sizeOf = (response: Response) => {
    const n = Number(response.headers.get("content-length") ?? NaN);
    return Number.isSafeInteger(n) && n >= 0 ? n : undefined;
  };

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
        // copy (or as the verified bytes), which it hands to onnxruntime
        // through the gate.
        const fresh = take(key, ref);
        if (fresh !== undefined) return served(fresh.handle);
        // Local weights come through fetch and put; remote ones may be cached.
        if (!isUrl(key) || !store) return undefined;
        const body = await store.open(key, ref);
        if (body === undefined) return undefined;
        const { handle, copy } = await admit(ref, streamChunks(body), undefined);
        if (!allowed(copy.verdict)) {
          // A tampered cache entry is dropped: transformers.js fetches the file again.
          await store.delete(key, ref).catch(() => {});
          return undefined;
        }
        await finishOnnx(handle, copy);
        remember(key, handle, copy);
        return served(handle);
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
        // One pass: each chunk is hashed and kept (private copy or buffer) as it
        // arrives; weights the guarded fetch already took in are not read again.
        const early = take(key, ref, fetched);
        // Deno/Node pass on the guarded fetch's own response and ask `match`
        // next; transformers.js' web build passes a copy and asks no more.
        const askedAgain = !early || response instanceof VerifiedResponse;
        if (early) await response.body?.cancel();
        const { handle, copy } = early ??
          await admit(ref, await chunksOf(response), sizeOf(response));
        // Only verified remote files are kept; local files are read where they are.
        if (copy.verdict.ok && isUrl(key) && store) {
          const data = typeof handle === "string"
            ? { path: handle, size: (await files!.fileSize(handle)) ?? 0 }
            : handle;
          await store.put(key, ref, data, type).catch((e) =>
            console.warn(`safemodels: cannot cache ${key}: ${e}`)
          );
        }
        await finishOnnx(handle, copy);
        if (askedAgain) remember(key, handle, copy);
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
      if (ref) take(key, ref);
      await store?.delete(key, ref);
      return true;
    },
  };

  // ---- InferenceSession.create ----

  const classes = platform.sessions;
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

  /** Waits for the model's other files (tokenizer, config) and fails if any was refused. */
  async function settled(copy: PrivateCopy): Promise<ModelState> {
    if (!copy.verdict.ok && mode === "enforce") throw copy.verdict.error;
    const st = state(copy.ref.model);
    await new Promise((r) => setTimeout(r, 0));
    while (st.inflight.size > 0) await Promise.allSettled([...st.inflight]);
    const poisoned = [...st.refusals.values()][0];
    if (poisoned && mode === "enforce") throw poisoned;
    return st;
  }

  const unverified = (what: string, file: string) =>
    new SignatureMissing(`Cannot create an onnxruntime session: ${what}`, { file });

  async function gate(
    original: SessionClass["create"],
    self: unknown,
    args: unknown[],
  ): Promise<unknown> {
    const [model] = args;
    if (typeof model === "string") return await gatePath(original, self, args, model);
    // Bytes: verified weights (by identity or digest), or transformers.js' own tensor ops.
    const bytes = model instanceof Uint8Array ? model : new Uint8Array(
      model as ArrayBuffer,
      typeof args[1] === "number" ? args[1] : 0,
      typeof args[2] === "number" ? args[2] : undefined,
    );
    const whole = bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength;
    let copy = whole ? known.get(bytes.buffer) : undefined;
    const digest = copy ? undefined : await sha256Hex(bytes);
    if (digest !== undefined) {
      if (TENSOR_OPS.has(digest)) return original.apply(self, args);
      copy = byDigest.get(digest);
    }
    if (!copy) {
      refuseOrWarn(
        new SignatureMissing(
          `Cannot create an onnxruntime session: the model (sha256 ${digest}) was not loaded through the guarded transformers.js`,
        ),
        `unknown\0${digest}`,
      );
      return original.apply(self, args);
    }
    const shown = `${copy.ref.model.name}/${copy.ref.file}`;
    const st = await settled(copy);
    const options =
      (model instanceof Uint8Array
        ? args[1]
        : args.find((a, i) => i > 0 && typeof a === "object")) as
          | { externalData?: unknown[] }
          | undefined;
    // External data must come as verified bytes of the same model; a path
    // would be opened (or fetched) by onnxruntime unverified.
    const external = new Map<string, Uint8Array>();
    for (const entry of options?.externalData ?? []) {
      const e = entry as { path?: unknown; data?: unknown };
      const name = typeof e.path === "string" ? e.path : String(entry);
      const data = e.data instanceof Uint8Array
        ? e.data
        : e.data instanceof ArrayBuffer
        ? new Uint8Array(e.data)
        : undefined;
      if (data === undefined) {
        refuseOrWarn(
          unverified(`external data ${name} is not in memory, so it was not verified`, shown),
          `ext\0${name}`,
        );
        continue;
      }
      const whole = data.byteOffset === 0 && data.byteLength === data.buffer.byteLength;
      const ext = (whole ? known.get(data.buffer) : undefined) ??
        byDigest.get(await sha256Hex(data));
      if (!ext || ext.ref.model.key !== copy.ref.model.key) {
        refuseOrWarn(
          unverified(
            `external data ${name} was not loaded through the guarded transformers.js`,
            shown,
          ),
          `ext\0${name}`,
        );
      } else if (!ext.verdict.ok && mode === "enforce") {
        throw ext.verdict.error;
      }
      external.set(name.replace(/^(?:\.\/)+/, ""), data);
    }
    // Every external-data file the graph names must be one of those; else
    // onnxruntime would look for it itself (the working directory, a URL).
    try {
      await readOnnx(bytesSource(bytes, shown), {
        openExternal: (location) => {
          const data = external.get(location);
          if (data) return Promise.resolve(bytesSource(data, location));
          return Promise.reject(
            unverified(
              `the model reads external data "${location}", which was not loaded and verified through transformers.js (set use_external_data_format)`,
              shown,
            ),
          );
        },
      });
    } catch (error) {
      refuseOrWarn(error as Error, `graph\0${shown}`);
    }
    await lockOnFirstUse(st);
    return original.apply(self, args);
  }

  async function gatePath(
    original: SessionClass["create"],
    self: unknown,
    args: unknown[],
    model: string,
  ): Promise<unknown> {
    const path = files?.resolve(model) ?? model;
    const copy = copies.get(path);
    if (!copy) {
      refuseOrWarn(
        unverified(
          "this path is not a copy the guard verified (load models through the guarded transformers.js)",
          model,
        ),
        `path\0${model}`,
      );
      return original.apply(self, args);
    }
    const shown = `${copy.ref.model.name}/${copy.ref.file}`;
    const st = await settled(copy);
    // Bytes given beside the path would reach onnxruntime unverified.
    const options = args[1] as { externalData?: unknown[] } | undefined;
    for (const entry of options?.externalData ?? []) {
      if (typeof entry === "string") continue;
      const name = String((entry as { path?: unknown }).path);
      refuseOrWarn(
        unverified(
          `external data ${name} is given as bytes or a path of its own, so it was not verified`,
          shown,
        ),
        `ext\0${name}`,
      );
    }
    // onnxruntime opens external data beside the copy: each must be a verified copy too.
    const used: [string, PrivateCopy][] = [[path, copy]];
    for (const location of copy.locations) {
      const beside = files!.beside(model, location);
      const ext = copies.get(beside);
      if (!ext || ext.ref.model.key !== copy.ref.model.key) {
        refuseOrWarn(
          unverified(
            `the model reads external data "${location}", which was not loaded and verified through transformers.js (set use_external_data_format)`,
            shown,
          ),
          `graph\0${shown}\0${location}`,
        );
        continue;
      }
      if (!ext.verdict.ok && mode === "enforce") throw ext.verdict.error;
      used.push([beside, ext]);
    }
    await lockOnFirstUse(st);
    try {
      return await original.apply(self, args);
    } finally {
      for (const [p, c] of used) release(p, c, RECENT_MS);
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
    const original = createDescriptors[i]!.value as SessionClass["create"];
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
      for (const { timer } of [...ready.values(), ...fetched.values()]) clearTimeout(timer);
      ready.clear();
      fetched.clear();
      copies.clear();
      byDigest.clear();
      files?.removeAll();
    },
  };
}
