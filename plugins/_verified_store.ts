// The verified store (GuardOptions.verifiedStore; Deno and Node): warm starts
// for external-data weight files. After a file has been verified, the guard's
// private copy of it is kept here (a hard link, read-only) under its SHA-256,
// with an index entry naming the original file by what identifies its
// content on disk: real path, device, inode, size, and modification and
// change times in nanoseconds. A later load whose file still has exactly that
// identity gets the kept copy linked into its private folder, and the
// decision is taken on the recorded digest: nothing is read or hashed. Any
// change to the file (content, size, inode, mtime or ctime) misses and the
// file is read, hashed and decided again. See the README's threat model.
import { createHash } from "node:crypto";
import { constants } from "node:fs";
import {
  copyFile,
  link,
  lstat,
  mkdir,
  readFile,
  realpath,
  rename,
  rm,
  stat,
  writeFile,
} from "node:fs/promises";
import { join } from "node:path";

/** What identifies a file's content on disk. */
export interface Identity {
  path: string;
  dev: string;
  ino: string;
  size: string;
  mtimeNs: string;
  ctimeNs: string;
}

/** A file changed this recently may change again within the clock's resolution: not recorded. */
const RACY_MS = 2_000;

async function identityOf(source: string): Promise<Identity | undefined> {
  const path = await realpath(source);
  const s = await stat(path, { bigint: true });
  if (!s.isFile()) return undefined;
  return {
    path,
    dev: String(s.dev),
    ino: String(s.ino),
    size: String(s.size),
    mtimeNs: String(s.mtimeNs),
    ctimeNs: String(s.ctimeNs),
  };
}

const same = (a: Identity, b: Identity) =>
  a.path === b.path && a.dev === b.dev && a.ino === b.ino && a.size === b.size &&
  a.mtimeNs === b.mtimeNs && a.ctimeNs === b.ctimeNs;

const hex = (text: string) => createHash("sha256").update(text).digest("hex");

/** The store of verified copies; see the module comment. */
export class VerifiedStore {
  readonly #dir: string;

  private constructor(dir: string) {
    this.#dir = dir;
  }

  /**
   * Opens (creating, mode 0700) the store at `dir`, or `undefined` with a
   * warning when it is unsafe to trust: a symbolic link, not a folder, owned
   * by another user, or writable by group or others.
   */
  static async open(dir: string): Promise<VerifiedStore | undefined> {
    await mkdir(join(dir, "blobs"), { recursive: true, mode: 0o700 });
    await mkdir(join(dir, "index"), { recursive: true, mode: 0o700 });
    // Who we are, without asking for --allow-sys: the owner of a file we create.
    const probe = join(dir, `.owner-${crypto.randomUUID().slice(0, 8)}`);
    await writeFile(probe, "", { mode: 0o600, flag: "wx" });
    const uid = (await lstat(probe)).uid;
    await rm(probe, { force: true });
    for (const d of [dir, join(dir, "blobs"), join(dir, "index")]) {
      const s = await lstat(d);
      if (
        !s.isDirectory() || s.isSymbolicLink() || (s.mode & 0o022) !== 0 ||
        s.uid !== uid
      ) {
        console.warn(
          `safemodels: not using the verified store ${dir}: ${d} must be a folder of this user that only this user can write (every load is verified in full)`,
        );
        return undefined;
      }
    }
    return new VerifiedStore(dir);
  }

  /** The identity of `source` now (`undefined` when it is not a regular file). */
  identity(source: string): Promise<Identity | undefined> {
    return identityOf(source).catch(() => undefined);
  }

  /**
   * The recorded digest and kept copy of `source`, when the file still has
   * the identity it had when it was verified.
   */
  async lookup(source: string): Promise<{ digest: string; blob: string } | undefined> {
    const now = await this.identity(source);
    if (now === undefined) return undefined;
    const text = await readFile(join(this.#dir, "index", `${hex(now.path)}.json`), "utf8")
      .catch(() => undefined);
    if (text === undefined || text.length > 4096) return undefined;
    let entry: Identity & { sha256: string };
    try {
      entry = JSON.parse(text);
    } catch {
      return undefined;
    }
    if (typeof entry?.sha256 !== "string" || !/^[0-9a-f]{64}$/.test(entry.sha256)) return undefined;
    if (!same(entry, now)) return undefined;
    const blob = join(this.#dir, "blobs", entry.sha256);
    const kept = await lstat(blob).catch(() => undefined);
    if (!kept?.isFile() || String(kept.size) !== now.size) return undefined;
    return { digest: `sha256:${entry.sha256}`, blob };
  }

  /**
   * Records that `source`, identified as `before` when its reading began,
   * has the verified private copy `copy` with `digest` (`sha256:<hex>`).
   * Skipped when the file changed meanwhile or changed too recently.
   */
  async record(source: string, before: Identity, digest: string, copy: string): Promise<void> {
    const after = await this.identity(source);
    if (after === undefined || !same(before, after)) return;
    if (Date.now() - Number(BigInt(before.ctimeNs) / 1_000_000n) < RACY_MS) return;
    const sha = digest.replace(/^sha256:/, "");
    const blob = join(this.#dir, "blobs", sha);
    if (!(await lstat(blob).catch(() => undefined))) {
      const temp = `${blob}.${crypto.randomUUID().slice(0, 8)}.part`;
      await link(copy, temp).catch(() => copyFile(copy, temp, constants.COPYFILE_EXCL));
      await rename(temp, blob);
    }
    const index = join(this.#dir, "index", `${hex(after.path)}.json`);
    const temp = `${index}.${crypto.randomUUID().slice(0, 8)}.part`;
    await writeFile(temp, JSON.stringify({ ...after, sha256: sha }), { mode: 0o600, flag: "wx" });
    await rename(temp, index);
  }

  /** Puts the kept copy `blob` at `path` (a hard link; a copy across file systems). */
  async materialize(blob: string, path: string): Promise<void> {
    const temp = `${path}.${crypto.randomUUID().slice(0, 8)}.part`;
    try {
      await link(blob, temp).catch(() => copyFile(blob, temp, constants.COPYFILE_EXCL));
      await rename(temp, path);
    } catch (e) {
      await rm(temp, { force: true });
      throw e;
    }
  }
}
