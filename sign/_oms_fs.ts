/**
 * Hashes a model folder (or single file) into OMS resources, walking it the
 * way `model_signing`'s file serializer does.
 *
 * @module
 */

import { fileDigest } from "../hash/file_digest.ts";
import { sha256Ready, sha256Sync, toHex } from "../hash/_digest.ts";
import { openSource } from "../hash/_source.ts";
import { measure, workersFor } from "./_oms_digest.ts";
import { comparePaths, type OmsResource, unsafePathReason } from "./_oms.ts";
import { PolicyError } from "./errors.ts";

/**
 * Paths `model_signing` ignores by default (`ignore_git_paths=True`), relative
 * to the model root.
 */
export const OMS_GIT_PATHS: readonly string[] = [".git", ".gitattributes", ".github", ".gitignore"];

/** Options for {@linkcode hashModelFolder}. */
export interface HashModelFolderOptions {
  /**
   * Model-relative paths to skip; a folder skips everything under it. Only
   * apply to folders (a single-file model ignores nothing).
   */
  ignorePaths?: string[];
  /** The signature file, skipped (model-relative; `""`: none). @default {"model.sig"} */
  signatureFile?: string;
  /**
   * What each file is measured with: `sha256` (default), another OMS hash,
   * or `<hash>-sharded-<N>`; a resource's digest is then the value that
   * `measure` gives after the label (shards as `start-end=hex;…`).
   */
  label?: string;
  /** Skip `.git`, `.gitattributes`, `.github` and `.gitignore`. @default {true} */
  ignoreGitPaths?: boolean;
  /** Hash only these model-relative files (ignore rules do not apply to them). */
  files?: string[];
  /**
   * Follow symbolic links to files instead of refusing them (links to
   * folders are always refused). @default {false}
   */
  allowSymlinks?: boolean;
  /** Collects the names reached through a symbolic link (with `allowSymlinks`). */
  links?: Set<string>;
  /** Called after each block with the bytes hashed so far, over all files. */
  onProgress?: (bytes: number) => void;
}

/** Files hashed at once. */
const CONCURRENT_FILES = 8;

/** Strips `./` prefixes and trailing slashes so `"./ignore-me/"` matches `ignore-me`. */
function normalizeRelative(path: string): string {
  let p = path.replaceAll("\\", "/");
  while (p.startsWith("./")) p = p.slice(2);
  return p.replace(/\/+$/, "");
}

function isIgnored(name: string, ignored: ReadonlySet<string>): boolean {
  // A path is ignored if it or any parent folder is listed.
  let at = name.length;
  for (;;) {
    if (ignored.has(name.slice(0, at))) return true;
    at = name.lastIndexOf("/", at - 1);
    if (at <= 0) return false;
  }
}

function symlinkError(name: string, root: string): PolicyError {
  return new PolicyError(
    "refused-file",
    `Cannot hash model: ${name} is a symbolic link, which is refused unless allowSymlinks is set`,
    { file: name === "." ? root : `${root}/${name}` },
  );
}

/**
 * Hashes every file of a model with SHA-256 (streamed in large blocks), as
 * `model_signing` does for its `files` serialization: POSIX names relative
 * to the model folder, sorted by path components; a single file is the one
 * resource `"."`. Skips the signature file, the ignored paths and (by
 * default) git files; refuses symbolic links unless `allowSymlinks`, and
 * refuses special files.
 *
 * @param path The model folder or file.
 * @param options Ignored paths, a subset of files, symlink policy, progress.
 * @returns The resources, sorted.
 */
export async function hashModelFolder(
  path: string,
  options: HashModelFolderOptions = {},
): Promise<OmsResource[]> {
  const allowSymlinks = options.allowSymlinks ?? false;
  const root = path.length > 1 ? path.replace(/[\\/]+$/, "") : path;
  const label = options.label ?? "sha256";
  let done = 0;
  await sha256Ready();
  const fsSync = await import("node:fs");
  // Progress sums the bytes of every file, however many are hashed at once.
  const hash = async (file: string): Promise<string> => {
    if (label === "sha256") {
      // A small file in one synchronous read: for folders of thousands of
      // small files the per-file round trips of async I/O cost more than
      // the reading and hashing.
      const small = smallFileBytes(fsSync, file);
      if (small !== undefined) {
        done += small.byteLength;
        options.onProgress?.(done);
        return toHex(sha256Sync(small));
      }
      let last = 0;
      return await fileDigest(file, {
        onProgress: (bytes) => {
          done += bytes - last;
          last = bytes;
          options.onProgress?.(done);
        },
      });
    }
    const source = await openSource(file);
    try {
      const value = await measure(label, source, { workers: workersFor(source.size) });
      done += source.size;
      options.onProgress?.(done);
      return value.slice(label.length + 1);
    } finally {
      await source.close();
    }
  };

  const fs = await import("node:fs/promises");
  const top = await fs.lstat(root);
  if (top.isSymbolicLink() && !allowSymlinks) throw symlinkError(".", root);
  const topStat = top.isSymbolicLink() ? await fs.stat(root) : top;
  if (topStat.isFile()) {
    if (top.isSymbolicLink()) options.links?.add(".");
    return [{ name: ".", algorithm: label, digest: await hash(root) }];
  }
  if (!topStat.isDirectory()) {
    throw new PolicyError(
      "refused-file",
      "Cannot hash model: it is neither a regular file nor a folder",
      { file: root },
    );
  }

  const names: string[] = [];
  if (options.files !== undefined) {
    for (const raw of options.files) {
      const name = normalizeRelative(raw);
      const reason = unsafePathReason(name);
      if (reason !== undefined) {
        throw new TypeError(`Cannot hash model file ${JSON.stringify(raw)}: ${reason}`);
      }
      // Refuse links anywhere along the path, not just at the end.
      const parts = name.split("/");
      for (let i = 1; i <= parts.length; i++) {
        const sub = parts.slice(0, i).join("/");
        const info = await fs.lstat(`${root}/${sub}`).catch((e) => {
          if ((e as { code?: string }).code === "ENOENT") return undefined;
          throw e;
        });
        if (info === undefined) break; // Reported as missing by checkModel.
        if (info.isSymbolicLink() && (!allowSymlinks || i < parts.length)) {
          throw symlinkError(sub, root);
        }
        if (i === parts.length) {
          if (info.isSymbolicLink()) options.links?.add(name);
          const target = info.isSymbolicLink() ? await fs.stat(`${root}/${sub}`) : info;
          if (!target.isFile()) {
            throw new PolicyError(
              "refused-file",
              `Cannot hash model: ${name} is not a regular file`,
              { file: `${root}/${name}` },
            );
          }
          names.push(name);
        }
      }
    }
  } else {
    const ignored = new Set<string>();
    for (const p of options.ignorePaths ?? []) ignored.add(normalizeRelative(p));
    const sig = options.signatureFile ?? "model.sig";
    // A signature path inside the folder is accepted too; "" skips nothing.
    if (sig !== "") {
      ignored.add(normalizeRelative(sig.startsWith(`${root}/`) ? sig.slice(root.length + 1) : sig));
    }
    if (options.ignoreGitPaths ?? true) { for (const p of OMS_GIT_PATHS) ignored.add(p); }
    await walk(root, "", ignored, allowSymlinks, names, options.links);
  }

  names.sort(comparePaths);
  const unique = [...new Set(names)];
  // Several files at once: their reads overlap (a model of thousands of small
  // files is bound by opening and reading them, not by hashing).
  const resources: OmsResource[] = new Array(unique.length);
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(CONCURRENT_FILES, unique.length) }, async () => {
      while (next < unique.length) {
        const i = next++;
        const name = unique[i]!;
        resources[i] = { name, algorithm: label, digest: await hash(`${root}/${name}`) };
      }
    }),
  );
  return resources;
}

/** Files up to this size are read in one synchronous call. */
const SMALL_FILE = 1 << 20;

/**
 * The bytes of a small regular file, read synchronously, or `undefined` (not
 * a small regular file, changed while read, or an error: the caller's
 * asynchronous path then reads it and reports what is wrong).
 */
function smallFileBytes(fs: typeof import("node:fs"), path: string): Uint8Array | undefined {
  let fd: number | undefined;
  try {
    // Non-blocking: a pipe put in a file's place must not hang the open.
    fd = fs.openSync(path, fs.constants.O_RDONLY | (fs.constants.O_NONBLOCK ?? 0));
    const st = fs.fstatSync(fd);
    if (!st.isFile() || st.size > SMALL_FILE) return undefined;
    // One byte more than the size, to see that the file ends where it said.
    const buf = new Uint8Array(st.size + 1);
    let got = 0;
    while (got < buf.byteLength) {
      const n = fs.readSync(fd, buf, got, buf.byteLength - got, got);
      if (n === 0) break;
      got += n;
    }
    return got === st.size ? buf.subarray(0, got) : undefined;
  } catch {
    return undefined;
  } finally {
    if (fd !== undefined) fs.closeSync(fd);
  }
}

async function walk(
  root: string,
  prefix: string,
  ignored: ReadonlySet<string>,
  allowSymlinks: boolean,
  out: string[],
  links?: Set<string>,
): Promise<void> {
  const fs = await import("node:fs/promises");
  const dir = prefix === "" ? root : `${root}/${prefix}`;
  for (const entry of await fs.readdir(dir, { withFileTypes: true })) {
    const name = prefix === "" ? entry.name : `${prefix}/${entry.name}`;
    // Ignoring comes first, as in model_signing: an ignored link is fine.
    if (isIgnored(name, ignored)) continue;
    if (entry.isSymbolicLink()) {
      if (!allowSymlinks) throw symlinkError(name, root);
      const target = await fs.stat(`${root}/${name}`);
      if (!target.isFile()) {
        throw new PolicyError(
          "refused-file",
          `Cannot hash model: ${name} is a symbolic link to something other than a file`,
          { file: `${root}/${name}` },
        );
      }
      out.push(name);
      links?.add(name);
    } else if (entry.isDirectory()) {
      await walk(root, name, ignored, allowSymlinks, out, links);
    } else if (entry.isFile()) {
      out.push(name);
    } else {
      throw new PolicyError(
        "refused-file",
        `Cannot hash model: ${name} is a special file (socket, pipe or device)`,
        { file: `${root}/${name}` },
      );
    }
  }
}
