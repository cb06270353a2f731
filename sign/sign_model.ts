import { trackTempFile, untrackTempFile } from "../hash/_temp_files.ts";
import {
  buildStatement,
  OMS_PAYLOAD_TYPE,
  type OmsSerialization,
  rootDigest,
  shardAlgorithm,
  sortResources,
} from "./_oms.ts";
import { hashModelFolder, OMS_GIT_PATHS } from "./_oms_fs.ts";
import type { Signer, SigstoreBundle } from "./types.ts";

/** Options for {@linkcode signModel}. */
export interface SignModelOptions {
  /** Who signs: `keySigner`, `certificateSigner` or `sigstoreSigner`. */
  signer: Signer;
  /**
   * Paths left out of the signature (a folder leaves out everything under
   * it): relative to the model folder, or absolute. They are recorded in the
   * statement, as `model_signing` records them.
   * @default {[]}
   */
  ignorePaths?: string[];
  /**
   * Leave out (and record as ignored) `.git`, `.gitattributes`, `.github`
   * and `.gitignore`, as `model_signing` does by default.
   * @default {true}
   */
  ignoreGitPaths?: boolean;
  /**
   * Follow symbolic links to files (hashing the target's bytes under the
   * link's name) instead of refusing them; recorded as `allow_symlinks`.
   * @default {false}
   */
  allowSymlinks?: boolean;
  /**
   * Where to write the signature.
   * @default {"<dir>/model.sig", or "<file>.sig" for a single-file model}
   */
  signature?: string;
  /**
   * The model name in the statement.
   * @default {the folder's (or file's) name, resolved: never "." or ".."}
   */
  modelName?: string;
  /** The content hash: `sha256`, `blake2b` (BLAKE2b-512) or `blake3`. @default {"sha256"} */
  hashType?: "sha256" | "blake2b" | "blake3";
  /**
   * Sign shards of this many bytes instead of whole files (`model_signing`'s
   * shard serialization; `model_signing` uses 1,000,000,000). Shards of one
   * big file are hashed in parallel.
   */
  shardSize?: number;
  /** Called as files are hashed, with the bytes so far. */
  onProgress?: (bytes: number) => void;
}

/**
 * Signs a whole model folder (or one file) in the OpenSSF Model Signing (OMS)
 * format that Python's `model_signing` writes and verifies: every file's
 * digest (or every shard's) goes into an in-toto statement, which is signed
 * into a Sigstore bundle and written as `model.sig`. The statement records
 * what `model_signing` records, so its verifier accepts it with its default
 * settings: the ignored paths (yours, the signature file when it lies in the
 * folder, and the git paths), the symlink policy, and the folder's name.
 * Deno and Node.
 *
 * @param path The model folder or file.
 * @param options Signer, ignored paths, signature path, model name, serialization.
 * @returns The bundle that was written.
 *
 * @example Signing a folder with a key
 * ```ts ignore
 * import { keySigner, signModel } from "@safemodels/safemodels/sign";
 *
 * await signModel("./tiny-bert", { signer: keySigner(await Deno.readTextFile("key.pem")) });
 * ```
 */
export async function signModel(path: string, options: SignModelOptions): Promise<SigstoreBundle> {
  const { writeFile, rename, rm } = await import("node:fs/promises");
  const m = await measureModel(path, options);
  const payload = await buildStatement(m.name, m.resources, {
    ignorePaths: m.recorded,
    allowSymlinks: options.allowSymlinks ?? false,
    serialization: m.serialization,
  });
  // Verifiers (this one too) read at most 8 MiB of model.sig; the payload
  // is base64 in it, a third larger.
  if (payload.byteLength > MAX_STATEMENT_BYTES) {
    throw new TypeError(
      `Cannot sign model: its statement would be ${payload.byteLength} bytes (${m.resources.length} resources), more than the ${MAX_STATEMENT_BYTES} a verifier reads; use larger shards or sign subfolders`,
    );
  }
  const bundle = await options.signer.sign(payload, OMS_PAYLOAD_TYPE);
  const tmp = `${m.signature}.${crypto.randomUUID().slice(0, 8)}.tmp`;
  trackTempFile(tmp);
  try {
    await writeFile(tmp, JSON.stringify(bundle));
    await rename(tmp, m.signature);
  } catch (e) {
    await rm(tmp, { force: true });
    throw e;
  } finally {
    untrackTempFile(tmp);
  }
  return bundle;
}

/** The largest statement signed: its model.sig stays under the 8 MiB verifiers read. */
const MAX_STATEMENT_BYTES = 6 << 20;

/** Options for {@linkcode modelDigest}: how the folder is walked and hashed. */
export type ModelDigestOptions = Omit<SignModelOptions, "signer" | "modelName">;

/**
 * The OMS root digest of a model: SHA-256 over every file's (or shard's)
 * digest in statement order, walked as {@linkcode signModel} walks it. As
 * `model_signing digest` computes it, a `model.sig` in the folder is hashed
 * too unless `signature` names it (then the value is the one a signature
 * written there records as its subject). Deno and Node.
 *
 * @param path The model folder or file.
 * @param options Ignored paths, git paths, symlinks, hash and shards.
 * @returns `sha256:<hex>`.
 *
 * @example The digest of a folder
 * ```ts
 * import { modelDigest } from "@safemodels/safemodels/sign";
 * import assert from "node:assert/strict";
 *
 * const dir = await Deno.makeTempDir();
 * await Deno.writeTextFile(`${dir}/a.txt`, "a");
 * // One file: SHA-256 over that file's raw SHA-256.
 * assert.match(await modelDigest(dir), /^sha256:[0-9a-f]{64}$/);
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export async function modelDigest(path: string, options: ModelDigestOptions = {}): Promise<string> {
  // As `model_signing digest`: a model.sig in the folder is hashed too,
  // unless a signature path is given.
  const m = await measureModel(path, options, options.signature !== undefined);
  return `sha256:${await rootDigest(sortResources(m.resources))}`;
}

/** The resources of a model as signModel would sign them, and what it records. */
async function measureModel(
  path: string,
  options: ModelDigestOptions & { modelName?: string },
  skipSignature = true,
) {
  const { stat, realpath } = await import("node:fs/promises");
  const { basename, join } = await import("node:path");
  const root = path.replace(/[\\/]+$/, "") || path;
  const isDir = (await stat(root)).isDirectory();
  const signature = options.signature ?? (isDir ? join(root, "model.sig") : `${root}.sig`);
  const ignoreGitPaths = options.ignoreGitPaths ?? true;
  const allowSymlinks = options.allowSymlinks ?? false;
  const userIgnores = isDir ? await modelRelative(root, options.ignorePaths ?? []) : [];
  const inside = isDir && skipSignature ? await signatureWithin(root, signature) : undefined;
  const hashType = options.hashType ?? "sha256";
  if (!["sha256", "blake2b", "blake3"].includes(hashType)) {
    throw new TypeError(
      `Cannot hash model: unknown hash type ${
        JSON.stringify(hashType)
      }, expected sha256, blake2b or blake3`,
    );
  }
  const shardSize = options.shardSize;
  if (shardSize !== undefined && (!Number.isSafeInteger(shardSize) || shardSize <= 0)) {
    throw new TypeError(
      `Cannot hash model: shard size must be a positive integer, got ${shardSize}`,
    );
  }
  const serialization: OmsSerialization = shardSize === undefined
    ? { method: "files", hashType }
    : { method: "shards", hashType, shardSize };
  const label = shardSize === undefined ? hashType : shardAlgorithm(hashType, shardSize);
  const measured = await hashModelFolder(root, {
    ...(isDir ? { ignorePaths: userIgnores, signatureFile: inside ?? "" } : {}),
    ignoreGitPaths,
    allowSymlinks,
    label,
    ...(options.onProgress ? { onProgress: options.onProgress } : {}),
  });
  // Shards: one resource per `start-end=hex` part (an empty file has none).
  const resources = shardSize === undefined
    ? measured
    : measured.flatMap((f) =>
      f.digest === "" ? [] : f.digest.split(";").map((part) => {
        const [range, digest] = part.split("=") as [string, string];
        const [start, end] = range.split("-");
        return { name: `${f.name}:${start}:${end}`, algorithm: label, digest };
      })
    );
  // What model_signing records: the user's ignores, the signature file when it
  // lies in the folder, and the git paths (when ignored), existing or not.
  const recorded = isDir
    ? [...userIgnores, ...(inside ? [inside] : []), ...(ignoreGitPaths ? OMS_GIT_PATHS : [])]
    : [];
  let name = options.modelName ?? basename(root);
  if (options.modelName === undefined && (name === "" || name === "." || name === "..")) {
    name = basename(await realpath(root));
  }
  return { name, signature, resources, recorded, serialization };
}

/**
 * Ignore paths as the model folder sees them: relative ones are relative to
 * the folder (as `model_signing`'s API takes them), absolute ones are made
 * relative to it; a path outside the folder is refused. (The CLI also takes
 * paths relative to the working directory: see `cliIgnorePaths`.)
 */
export async function modelRelative(root: string, paths: readonly string[]): Promise<string[]> {
  const { isAbsolute, relative, resolve, sep } = await import("node:path");
  const out: string[] = [];
  for (const p of paths) {
    let rel = p.replaceAll("\\", "/");
    if (isAbsolute(p)) {
      rel = relative(resolve(root), resolve(p)).split(sep).join("/");
      if (rel === "" || rel.startsWith("../") || rel === "..") {
        throw new TypeError(
          `Cannot ignore ${JSON.stringify(p)}: it is not inside the model folder ${root}`,
        );
      }
    }
    while (rel.startsWith("./")) rel = rel.slice(2);
    rel = rel.replace(/\/+$/, "");
    out.push(rel);
  }
  return out;
}

/** The signature's path relative to the model folder, when it lies inside it. */
async function signatureWithin(root: string, signature: string): Promise<string | undefined> {
  const { relative, resolve, sep } = await import("node:path");
  const rel = relative(resolve(root), resolve(signature)).split(sep).join("/");
  return rel === "" || rel === ".." || rel.startsWith("../") || rel.startsWith("/")
    ? undefined
    : rel;
}
