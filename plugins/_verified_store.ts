// The verified store (GuardOptions.verifiedStore; Deno and Node): warm starts
// for weight files (graphs and external data). After a file has been verified, the guard's
// private copy of it is kept here (a hard link) under its SHA-256, with an
// index entry for the model, the file and its real path naming the file by
// what identifies its content on disk: device, inode, size, and modification
// and change times in nanoseconds, taken from the very handle that was read.
// A later load whose file still has exactly that identity gets the kept copy
// linked into its private folder, and the decision is retaken on the recorded
// digest: nothing is read or hashed. Any change to the file misses. The store
// and every folder above it must be this user's alone (checked at every use).
// It also remembers, as small entries, results that depend only on what they
// are keyed by (`recall`/`remember`): a model.sig's verification (keyed by
// its bytes and the policy: sign/_finding_memo.ts) and a graph's
// external-data files (keyed by its digest). See the README's threat model.
import { createHash } from "node:crypto";
import { constants } from "node:fs";
import { copyFile, lstat, rm, stat } from "node:fs/promises";
import { dirname, join, resolve } from "node:path";
import type { FileIdentity } from "./_guard_types.ts";
import { identityOf } from "./_private_copy.ts";
import {
  type ContentIdentity,
  contentIdentityNow,
  hardLink,
  hardLinkNow,
  lstatNow,
  lstatOf,
  makeDirNow,
  readTextNow,
  realPath,
  realPathNow,
  removeFile,
  renameNow,
  renamePath,
  type Status,
  writeNew,
} from "./_fs.ts";
import config from "../deno.json" with { type: "json" };

/**
 * The user this process writes files as, where that can be known without
 * asking for anything: Node's effective uid, Deno's uid when --allow-sys
 * already grants it (querying never prompts); otherwise `undefined`.
 */
function processUid(): number | undefined {
  const g = globalThis as {
    Deno?: {
      uid(): number | null;
      permissions?: { querySync?(d: { name: "sys"; kind: "uid" }): { state: string } };
    };
    process?: { geteuid?(): number };
  };
  if (g.Deno) {
    try {
      const granted = g.Deno.permissions?.querySync?.({ name: "sys", kind: "uid" }).state;
      return granted === "granted" ? g.Deno.uid() ?? undefined : undefined;
    } catch {
      return undefined;
    }
  }
  return g.process?.geteuid?.();
}

/** A file changed this recently may change again within the clock's resolution: not recorded. */
const RACY_MS = 2_000;

const sameFile = (a: FileIdentity, b: FileIdentity) =>
  a.dev === b.dev && a.ino === b.ino && a.size === b.size && a.mtimeNs === b.mtimeNs &&
  a.ctimeNs === b.ctimeNs;

/**
 * Whether a recorded identity (times in ns) is the file's identity now
 * (times in ms: see contentIdentityNow). Whole milliseconds are enough: an entry
 * is recorded only for a file unchanged for 2 s, so any later change moves
 * its ctime by more than that.
 */
function stillSame(
  entry: FileIdentity,
  now: ContentIdentity,
): boolean {
  const ms = (ns: string) => /^\d{1,30}$/.test(ns) ? String(BigInt(ns) / 1_000_000n) : undefined;
  return entry.dev === now.dev && entry.ino === now.ino && entry.size === now.size &&
    ms(entry.mtimeNs) === now.mtimeMs && ms(entry.ctimeNs) === now.ctimeMs;
}

async function pathIdentity(path: string): Promise<FileIdentity | undefined> {
  const s = await stat(path, { bigint: true }).catch(() => undefined);
  return s?.isFile() ? identityOf(s) : undefined;
}

const hex = (text: string) => createHash("sha256").update(text).digest("hex");

/** Bumped when the meaning of a remembered entry changes (so is the version). */
const MEMO_FORMAT = 1;
/** A remembered entry larger than this is not read. */
const MAX_MEMO = 4 << 20;

/** The store of verified copies; see the module comment. */
export class VerifiedStore {
  readonly #dir: string;
  readonly #uid: number;
  readonly #id: { dev: number; ino: number };

  private constructor(dir: string, uid: number, id: { dev: number; ino: number }) {
    this.#dir = dir;
    this.#uid = uid;
    this.#id = id;
  }

  /**
   * Opens (creating, mode 0700) the store at `dir` (made absolute and real
   * once, here), or `undefined` with a warning when it is unsafe to trust.
   */
  static async open(dir: string): Promise<VerifiedStore | undefined> {
    const wanted = resolve(dir);
    // At once where it can be (the guard opens the store as it is installed).
    for (const d of ["blobs", "index"]) makeDirNow(join(wanted, d), 0o700);
    const real = realPathNow(wanted) ?? await realPath(wanted);
    const known = processUid();
    const here = known === undefined ? undefined : lstatNow(real);
    const [uid, s] = known !== undefined && here ? [known, here] : await (async () => {
      // Otherwise, without asking for --allow-sys: the owner of a file we create.
      const probe = join(real, `.owner-${crypto.randomUUID().slice(0, 8)}`);
      await writeNew(probe, new Uint8Array(), 0o600);
      return await Promise.all([lstatOf(probe).then((p) => p.uid), lstatOf(real)])
        .finally(() => removeFile(probe));
    })();
    const store = new VerifiedStore(real, uid, { dev: s.dev, ino: s.ino });
    const unsafe = store.#unsafe(true);
    if (unsafe !== undefined) {
      console.warn(
        `safemodels: not using the verified store ${dir}: ${unsafe} (every load is verified in full)`,
      );
      return undefined;
    }
    return store;
  }

  /**
   * Why the store cannot be trusted now, if it cannot; checked at every
   * lookup, record and recall (status calls made at once: see _fs.ts).
   */
  #unsafe(ancestors = false): string | undefined {
    const mine = (s: Status) => s.isDirectory && s.uid === this.#uid && (s.mode & 0o022) === 0;
    const [top, ...parts] = [this.#dir, join(this.#dir, "blobs"), join(this.#dir, "index")].map(
      lstatNow,
    );
    if (!top || top.dev !== this.#id.dev || top.ino !== this.#id.ino || !mine(top)) {
      return `${this.#dir} must stay the folder it was, this user's, writable by no one else`;
    }
    for (const [i, d] of ["blobs", "index"].entries()) {
      const s = parts[i];
      if (!s || s.isSymlink || !mine(s)) {
        return `${join(this.#dir, d)} must be a folder of this user that only this user can write`;
      }
    }
    if (!ancestors) return undefined;
    // Every folder above: this user's or root's, and writable by no one else
    // (a sticky shared folder, like /tmp, only when the next one down is ours).
    let child: Status = top;
    for (let d = dirname(this.#dir);; d = dirname(d)) {
      const s = lstatNow(d);
      if (!s) return `${d} (above the store) cannot be read`;
      const owner = s.uid === this.#uid || s.uid === 0;
      const open = (s.mode & 0o022) !== 0;
      if (!owner || (open && !((s.mode & 0o1000) !== 0 && child.uid === this.#uid))) {
        return `${d} (above the store) can be changed by another user`;
      }
      if (d === dirname(d)) break;
      child = s;
    }
    return undefined;
  }

  #indexPath(model: string, file: string, real: string): string {
    return join(this.#dir, "index", `${hex(`${model}\0${file}\0${real}`)}.json`);
  }

  /**
   * The recorded digest and kept copy of `file` of `model` at `source`, when
   * the file there still has the identity it had when it was verified.
   */
  lookup(
    model: string,
    file: string,
    source: string,
  ): { digest: string; blob: string } | undefined {
    if (this.#unsafe() !== undefined) return undefined;
    const real = realPathNow(source);
    const now = real === undefined ? undefined : contentIdentityNow(real);
    if (real === undefined || now === undefined) return undefined;
    const index = this.#indexPath(model, file, real);
    const info = lstatNow(index);
    if (!info?.isFile || info.uid !== this.#uid || (info.mode & 0o022) !== 0) return undefined;
    const text = readTextNow(index);
    if (text === undefined || text.length > 4096) return undefined;
    let entry: FileIdentity & { sha256?: unknown };
    try {
      entry = JSON.parse(text);
    } catch {
      return undefined;
    }
    if (typeof entry?.sha256 !== "string" || !/^[0-9a-f]{64}$/.test(entry.sha256)) return undefined;
    if (typeof entry !== "object" || entry === null || !stillSame(entry, now)) return undefined;
    const blob = join(this.#dir, "blobs", entry.sha256);
    const kept = lstatNow(blob);
    if (
      !kept?.isFile || kept.uid !== this.#uid || (kept.mode & 0o022) !== 0 ||
      String(kept.size) !== now.size
    ) {
      return undefined;
    }
    return { digest: `sha256:${entry.sha256}`, blob };
  }

  /**
   * Records that `file` of `model` at `source` has the verified private copy
   * `copy` with `digest`, given the identities of the handle that was read
   * when reading began (`opened`) and ended (`read`), and the inode the copy
   * was written to (`copyIno`). Skipped unless the file did not change while
   * it was read, `source` still names that very file, the copy is still the
   * one written, and the file did not change within the last 2 s.
   */
  async record(
    model: string,
    file: string,
    source: string,
    opened: FileIdentity,
    read: FileIdentity,
    digest: string,
    copy: string,
    copyIno: string,
  ): Promise<void> {
    if (!sameFile(opened, read)) return;
    if (this.#unsafe() !== undefined) return;
    const real = await realPath(source).catch(() => undefined);
    const now = real === undefined ? undefined : await pathIdentity(real);
    if (real === undefined || now === undefined || !sameFile(now, read)) return;
    if (Date.now() - Number(BigInt(read.ctimeNs) / 1_000_000n) < RACY_MS) return;
    const written = await lstat(copy, { bigint: true }).catch(() => undefined);
    if (!written?.isFile() || String(written.ino) !== copyIno) return;
    const sha = digest.replace(/^sha256:/, "");
    if (!/^[0-9a-f]{64}$/.test(sha)) return;
    const blob = join(this.#dir, "blobs", sha);
    if (!(await lstatOf(blob).catch(() => undefined))) {
      const temp = `${blob}.${crypto.randomUUID().slice(0, 8)}.part`;
      await hardLink(copy, temp).catch(() => copyFile(copy, temp, constants.COPYFILE_EXCL));
      await renamePath(temp, blob);
    }
    const index = this.#indexPath(model, file, real);
    const temp = `${index}.${crypto.randomUUID().slice(0, 8)}.part`;
    await writeNew(temp, new TextEncoder().encode(JSON.stringify({ ...read, sha256: sha })), 0o600);
    await renamePath(temp, index);
  }

  #memoPath(kind: string, key: string): string {
    const name = hex(`${MEMO_FORMAT}\0${config.version}\0${kind}\0${key}`);
    return join(this.#dir, "index", `memo-${name}.json`);
  }

  /**
   * What was remembered as `kind` for `key` (a content digest or a key made
   * of one: see sign/_finding_memo.ts), by this user, with this version of
   * safemodels; `undefined` when nothing usable was.
   */
  recall(kind: string, key: string): unknown {
    if (this.#unsafe() !== undefined) return undefined;
    const path = this.#memoPath(kind, key);
    const info = lstatNow(path);
    if (
      !info?.isFile || info.uid !== this.#uid || (info.mode & 0o022) !== 0 ||
      info.size > MAX_MEMO
    ) {
      return undefined;
    }
    const text = readTextNow(path);
    if (text === undefined || text.length > MAX_MEMO) return undefined;
    try {
      return JSON.parse(text);
    } catch {
      return undefined;
    }
  }

  /** Remembers `value` (JSON data) as `kind` for `key` (see `recall`). */
  async remember(kind: string, key: string, value: unknown): Promise<void> {
    const text = JSON.stringify(value);
    if (text === undefined || text.length > MAX_MEMO) return;
    if (this.#unsafe() !== undefined) return;
    const path = this.#memoPath(kind, key);
    const temp = `${path}.${crypto.randomUUID().slice(0, 8)}.part`;
    try {
      await writeNew(temp, new TextEncoder().encode(text), 0o600);
      await renamePath(temp, path);
    } catch (e) {
      await rm(temp, { force: true });
      throw e;
    }
  }

  /** Puts the kept copy `blob` at `path` (a hard link; a copy across file systems). */
  async materialize(blob: string, path: string): Promise<void> {
    const temp = `${path}.${crypto.randomUUID().slice(0, 8)}.part`;
    try {
      try {
        hardLinkNow(blob, temp);
      } catch {
        await copyFile(blob, temp, constants.COPYFILE_EXCL);
      }
      renameNow(temp, path);
    } catch (e) {
      await rm(temp, { force: true });
      throw e;
    }
  }
}
