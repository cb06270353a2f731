// Types shared by the transformers.js guard's units (see _guard.ts).
import type { Issuer, TrustPolicy } from "../sign/policy.ts";
import type { Lockfile } from "../sign/lockfile.ts";
import type { VerifiedSigner } from "../sign/types.ts";
import type { EvidenceKind } from "../sign/evidence.ts";
import type { SignedTextVerifier } from "../sign/_signed_text.ts";

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
   * A lockfile (path or instance), as `safemodels lock` writes it. Its pins
   * always bind: a file whose digest differs from its pin is refused whatever
   * signature vouches for it, and a pin vouches for a file nothing else does.
   * A model is found under `name@version`: the version the policy sets for it
   * (`models[name].version`), else the hub revision it is loaded at, else (a
   * local model) its only entry. Models loaded with evidence are recorded on
   * first use (and the file saved, when a path is given) unless `frozen`.
   */
  lockfile?: string | Lockfile;
  /** Refuse every file the lockfile does not pin, signed or not. @default {false} */
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
  /**
   * Warm starts (Deno and Node, `weights: "files"`): a folder, created mode
   * 0700, where verified weight files (`*.onnx`, `*.onnx_data`) are kept
   * under their SHA-256, indexed by the original file's real path, device,
   * inode, size and mtime/ctime (nanoseconds). A later load of an unchanged
   * file is not read or hashed again: its kept copy is linked into the
   * private folder (put the store on the same file system as `workDir`) and
   * decided on the recorded digest. Any change to the file misses. It also
   * remembers what depends only on bytes already verified: a `model.sig`'s
   * verification, keyed by its SHA-256 and the policy's trust material and
   * signer rules, and which external data a graph reads, keyed by the
   * graph's SHA-256. Refused (with a warning) unless only this user can
   * write it. Off by default.
   *
   * In browsers (`plugins/transformers-web`): the name of an IndexedDB
   * database holding this origin's tagging key (non-extractable HMAC). Weight
   * files the guard verified are put in the Web Cache with a tag of their
   * digest; a later hit with a valid tag is not hashed again (see the README
   * for what that trusts).
   */
  verifiedStore?: string;
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
  /** The model asked for: the hub repository id, or the local model's id. */
  model: string;
  /** Model-relative path, e.g. `onnx/model.onnx`. */
  file: string;
  /** `sha256:<hex>` of the bytes that were checked (`""` when they could not be read). */
  digest: string;
  /** Who signed, when a signature vouched for the file. */
  signer?: VerifiedSigner;
  /** What vouched for the file (`"none"`: nothing did). */
  evidence: EvidenceKind | "none";
  /** `"warned"`: let through in warn mode, or unsigned under an optional policy. */
  verdict: "verified" | "refused" | "warned";
  /** Why it was refused or warned about. */
  reason?: string;
  /** The refusal's `code` (e.g. `"pin-differs"`, `"wrong-model"`), when there is one. */
  code?: string;
  /** Decided on the verified store's recorded digest: the unchanged file was not read again. */
  warm?: true;
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
  /** Whether local models may be read (transformers.js' default: yes). */
  allowLocalModels?: boolean;
  /** Where local models live (`<localModelPath>/<model id>/…`). */
  localModelPath?: string;
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

/** One model: a hub repository at a revision, or a local folder. */
export interface ModelRef {
  /** Stable key: `remote:<base>` or `local:<root>`. */
  key: string;
  /** The model asked for: the repository id, or the local model's id. */
  name: string;
  /** The hub revision; `undefined` for local folders. */
  revision: string | undefined;
  /** Where the model root's `model.sig` lives: a URL or a path. */
  signature: string;
  /** Remote models: the URL prefix their files share. */
  base?: string;
  /** Local models: the root folder. */
  root?: string;
  /**
   * Why the model's root is unknown (weights whose configuration was not
   * loaded through transformers.js): such files are refused.
   */
  unplaced?: string;
}

/** One file of a model. */
export interface FileRef {
  model: ModelRef;
  /** Model-relative POSIX path, e.g. `onnx/model.onnx`. */
  file: string;
}

/** What the guard decided for a file's bytes. */
export interface FileVerdict {
  ok: boolean;
  /** `sha256:<hex>`, or `""` when the bytes could not be read. */
  digest: string;
  evidence: EvidenceKind | "none";
  signer?: VerifiedSigner | undefined;
  error?: Error | undefined;
  /** Decided on a digest the verified store recorded (warm start). */
  warm?: true;
}

/** What a cache holds for a file: its bytes, or a local file with them. */
export type Stored = Uint8Array | { path: string; size: number };

/** A cache transformers.js would have used, minus verification. */
export interface Store {
  open(key: string, ref: FileRef | undefined): Promise<ReadableStream<Uint8Array> | undefined>;
  /** Stores `data` under `key`, with a verification tag when given (browsers, see _cache_tags.ts). */
  put(
    key: string,
    ref: FileRef | undefined,
    data: Stored,
    type: string,
    tag?: string,
  ): Promise<void>;
  /** The verification tag the entry `open` last returned as `body` carries, if any. */
  tagOf?(body: ReadableStream<Uint8Array>): string | undefined;
  delete(key: string, ref: FileRef | undefined): Promise<void>;
}

/** Produces the next chunk of a file, or `null` at its end. */
export type NextChunk = () => Promise<Uint8Array | null>;

/** Chunks of a file, and a way to stop reading it. */
export interface Chunks {
  next: NextChunk;
  close(): Promise<void>;
  /** The open file's identity (local files): what was read, for the verified store. */
  identity?(): Promise<FileIdentity>;
}

/** What identifies an open file's content on disk (numbers as decimal strings). */
export interface FileIdentity {
  dev: string;
  ino: string;
  size: string;
  mtimeNs: string;
  ctimeNs: string;
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
  fileBody(path: string, size?: number): ReadableStream<Uint8Array>;
  fileChunks(path: string): Promise<Chunks>;
  /** A file's inode number (decimal), for the verified store. */
  inode?(path: string): Promise<string>;
  /** Size of a regular file; `undefined` when there is none. */
  fileSize(path: string): Promise<number | undefined>;
  /**
   * An evidence file's text (at most `max` bytes); `undefined` when it does
   * not exist. Throws `EvidenceError` when it cannot be read.
   */
  readEvidence(path: string, what: string, max: number): Promise<string | undefined>;
  /**
   * Whether `file` (model-relative) is reached through a symbolic link
   * below `root` (any component).
   */
  isLinked(root: string, file: string): Promise<boolean>;
  /** transformers.js' file cache. */
  fileStore(env: TransformersEnv): Store;
  /**
   * The model and model-relative name of a local file: its root is the
   * folder transformers.js asked a configuration file from, never one
   * chosen by where a `model.sig` happens to be.
   */
  locateLocal(path: string, env: TransformersEnv): FileRef;
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
 * Remembered results of work that depends only on what it is keyed by
 * (warm starts, Deno and Node): the verified store (_verified_store.ts).
 */
export interface Memo {
  recall(kind: string, key: string): unknown;
  remember(kind: string, key: string, value: unknown): Promise<void>;
}

/** The signature checks the runtime can do. */
export interface Verifiers {
  /** Verifies a signed envelope (a Sigstore bundle's JSON) against a policy. */
  signed: SignedTextVerifier;
}

/**
 * What the runtime provides: onnxruntime's session classes, file access
 * (Deno, Node) and signature checks (absent: lockfile pins only).
 */
export interface GuardPlatform {
  sessions: SessionClass[];
  files?: GuardFiles;
  verifiers?: Verifiers;
  /** Opens the verified store (warm starts), where the platform has files. */
  openStore?: (dir: string) => Promise<import("./_verified_store.ts").VerifiedStore | undefined>;
  /** Opens the Web Cache tagging key (warm starts in browsers), named by `verifiedStore`. */
  openTags?: (name: string) => Promise<import("./_cache_tags.ts").CacheTags | undefined>;
}

/** Files onnxruntime opens: failing them inside transformers.js can hang it. */
export function isWeightFile(file: string): boolean {
  return /\.onnx$|\.onnx_data(?:_\d+)?$/.test(file);
}
