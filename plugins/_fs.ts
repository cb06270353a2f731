// File-system calls on the guard's hot paths (every guarded load, and all a
// warm start does): Deno's own API in Deno, node:fs/promises elsewhere.
// Deno's node:fs/promises costs milliseconds at the first use of each call
// and several times Deno's own per call after that, which a warm start of
// about a hundred calls notices. Same answers either way; a missing file
// rejects as node:fs does (a NotFound error of Deno, code ENOENT in Node).
import * as node from "node:fs/promises";
import * as nodeSync from "node:fs";
import { join } from "node:path";

/** What the guard asks of a file's status. */
export interface Status {
  isFile: boolean;
  isDirectory: boolean;
  isSymlink: boolean;
  size: number;
  uid: number;
  mode: number;
  dev: number;
  ino: number;
}

interface DenoInfo {
  mtime: Date | null;
  ctime?: Date | null;
  isFile: boolean;
  isDirectory: boolean;
  isSymlink: boolean;
  size: number;
  uid: number | null;
  mode: number | null;
  dev: number;
  ino: number | null;
}

interface DenoFile {
  read(buffer: Uint8Array): Promise<number | null>;
  close(): void;
}

interface DenoFs {
  open(path: string, options: { read: true }): Promise<DenoFile>;
  makeTempDir(options: { dir: string; prefix: string }): Promise<string>;
  writeFile(
    path: string,
    data: Uint8Array,
    options: { mode: number; createNew: true },
  ): Promise<void>;
  remove(path: string): Promise<void>;
  lstat(path: string): Promise<DenoInfo>;
  realPath(path: string): Promise<string>;
  link(from: string, to: string): Promise<void>;
  rename(from: string, to: string): Promise<void>;
  statSync(path: string): DenoInfo;
  lstatSync(path: string): DenoInfo;
  realPathSync(path: string): string;
  mkdirSync(path: string, options: { recursive: boolean; mode: number }): void;
  readTextFileSync(path: string): string;
  linkSync(from: string, to: string): void;
  renameSync(from: string, to: string): void;
}

const deno = (globalThis as { Deno?: DenoFs }).Deno;

// Where Deno does not report an owner, mode or inode (Windows), the status
// fails every check made of it: an owner and inode equal to nothing (NaN),
// and a mode anyone may write.
const fromDeno = (s: DenoInfo): Status => ({
  isFile: s.isFile,
  isDirectory: s.isDirectory,
  isSymlink: s.isSymlink,
  size: s.size,
  uid: s.uid ?? NaN,
  mode: s.mode ?? 0o777,
  dev: s.dev,
  ino: s.ino ?? NaN,
});

const fromNode = (s: import("node:fs").Stats): Status => ({
  isFile: s.isFile(),
  isDirectory: s.isDirectory(),
  isSymlink: s.isSymbolicLink(),
  size: s.size,
  uid: s.uid,
  mode: s.mode,
  dev: s.dev,
  ino: s.ino,
});

/** The status of `path` itself (a link is not followed). */
export const lstatOf = (path: string): Promise<Status> =>
  deno ? deno.lstat(path).then(fromDeno) : node.lstat(path).then(fromNode);

/**
 * What identifies the content of a file: device, inode, size, and
 * modification and change times in whole milliseconds (Deno reports no
 * finer; elsewhere they are cut to that).
 */
export interface ContentIdentity {
  dev: string;
  ino: string;
  size: string;
  mtimeMs: string;
  ctimeMs: string;
}

function identityFromDeno(s: DenoInfo): ContentIdentity | undefined {
  const [m, c] = [s.mtime?.getTime(), s.ctime?.getTime()];
  if (!s.isFile || s.ino === null || m === undefined || c === undefined) return undefined;
  return {
    dev: String(s.dev),
    ino: String(s.ino),
    size: String(s.size),
    mtimeMs: String(m),
    ctimeMs: String(c),
  };
}

function identityFromNode(s: import("node:fs").BigIntStats): ContentIdentity | undefined {
  if (!s.isFile()) return undefined;
  return {
    dev: String(s.dev),
    ino: String(s.ino),
    size: String(s.size),
    mtimeMs: String(s.mtimeNs / 1_000_000n),
    ctimeMs: String(s.ctimeNs / 1_000_000n),
  };
}

// Calls at once (no promise): the checks and links of a warm start, a few
// dozen calls, each microseconds when made directly but about half a
// millisecond when awaited among a model load's other work. Only calls that
// never wait on a file's content (status, links, renames, folders: a FIFO
// or a device answers at once), and reads of the verified store's own small
// entries (regular files of this user, in folders only this user writes);
// other reads stay asynchronous and bounded.

/** What `call` answers, or `undefined` when it throws (missing, unreadable, not allowed). */
function orUndefined<T>(call: () => T | undefined): T | undefined {
  try {
    return call();
  } catch {
    return undefined;
  }
}

/** The status of what `path` names (links followed), now; `undefined` if it cannot be had. */
export const statNow = (path: string): Status | undefined =>
  orUndefined(() => {
    if (deno) return fromDeno(deno.statSync(path));
    const s = nodeSync.statSync(path, { throwIfNoEntry: false });
    return s && fromNode(s);
  });

/** The status of `path` itself (a link is not followed), now; `undefined` if it cannot be had. */
export const lstatNow = (path: string): Status | undefined =>
  orUndefined(() => {
    if (deno) return fromDeno(deno.lstatSync(path));
    const s = nodeSync.lstatSync(path, { throwIfNoEntry: false });
    return s && fromNode(s);
  });

/**
 * The content identity of the file `path` names (links followed), now;
 * `undefined` unless it is a regular file whose status reports all of it.
 */
export const contentIdentityNow = (path: string): ContentIdentity | undefined =>
  orUndefined(() => {
    if (deno) return identityFromDeno(deno.statSync(path));
    const s = nodeSync.statSync(path, { bigint: true, throwIfNoEntry: false });
    return s && identityFromNode(s);
  });

/**
 * A small file's text (UTF-8), now; `undefined` if it cannot be had. Only for
 * files checked to be regular files of this user in a folder no one else
 * writes (a pipe put there instead would block the read).
 */
export const readTextNow = (path: string): string | undefined =>
  orUndefined(() => deno ? deno.readTextFileSync(path) : nodeSync.readFileSync(path, "utf8"));

/** The real path of `path` (links resolved), now; `undefined` if it cannot be had. */
export const realPathNow = (path: string): string | undefined =>
  orUndefined(() => deno ? deno.realPathSync(path) : nodeSync.realpathSync(path));

/** {@linkcode hardLink}, now (throws as it rejects). */
export function hardLinkNow(from: string, to: string): void {
  if (deno) deno.linkSync(from, to);
  else nodeSync.linkSync(from, to);
}

/** {@linkcode renamePath}, now (throws as it rejects). */
export function renameNow(from: string, to: string): void {
  if (deno) deno.renameSync(from, to);
  else nodeSync.renameSync(from, to);
}

/** Makes a folder and those above it (mode for the ones made), now (throws on failure). */
export function makeDirNow(path: string, mode: number): void {
  if (deno) deno.mkdirSync(path, { recursive: true, mode });
  else nodeSync.mkdirSync(path, { recursive: true, mode });
}

/** The real path of `path` (links resolved). */
export const realPath = (path: string): Promise<string> =>
  deno ? deno.realPath(path) : node.realpath(path);

/** A file opened for reading from its start: `read` fills a buffer, 0 at the end. */
export interface Reader {
  read(buffer: Uint8Array): Promise<number>;
  close(): Promise<void>;
}

/** Opens `path` for reading. */
export async function openReader(path: string): Promise<Reader> {
  if (deno) {
    const file = await deno.open(path, { read: true });
    return {
      read: async (buffer) => (await file.read(buffer)) ?? 0,
      close: () => Promise.resolve(file.close()),
    };
  }
  const handle = await node.open(path, "r");
  return {
    read: async (buffer) => (await handle.read(buffer, 0, buffer.byteLength, null)).bytesRead,
    close: () => handle.close(),
  };
}

/** Makes a new folder (mode 0700) named `prefix` and a random tail, inside `dir`. */
export const makeTempFolder = (dir: string, prefix: string): Promise<string> =>
  deno ? deno.makeTempDir({ dir, prefix }) : node.mkdtemp(join(dir, prefix));

/** Writes a new file (`path` must not exist) with `mode`. */
export const writeNew = (path: string, data: Uint8Array, mode: number): Promise<void> =>
  deno
    ? deno.writeFile(path, data, { mode, createNew: true })
    : node.writeFile(path, data, { mode, flag: "wx" });

/** Removes a file, if it is there. */
export const removeFile = (path: string): Promise<void> =>
  (deno ? deno.remove(path) : node.rm(path)).catch((e: { code?: string; name?: string }) => {
    if (e?.code !== "ENOENT" && e?.name !== "NotFound") throw e;
  });

/** A hard link `to` of `from`. */
export const hardLink = (from: string, to: string): Promise<void> =>
  deno ? deno.link(from, to) : node.link(from, to);

/** Renames `from` to `to` (replacing it). */
export const renamePath = (from: string, to: string): Promise<void> =>
  deno ? deno.rename(from, to) : node.rename(from, to);
