// File-system calls on the guard's hot paths (every guarded load, and all a
// warm start does): Deno's own API in Deno, node:fs/promises elsewhere.
// Deno's node:fs/promises costs milliseconds at the first use of each call
// and several times Deno's own per call after that, which a warm start of
// about a hundred calls notices. Same answers either way; a missing file
// rejects as node:fs does (a NotFound error of Deno, code ENOENT in Node).
import * as node from "node:fs/promises";
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
  stat(path: string): Promise<DenoInfo>;
  lstat(path: string): Promise<DenoInfo>;
  realPath(path: string): Promise<string>;
  readTextFile(path: string): Promise<string>;
  mkdir(path: string, options: { recursive: boolean; mode: number }): Promise<void>;
  link(from: string, to: string): Promise<void>;
  rename(from: string, to: string): Promise<void>;
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

/** The status of what `path` names, following links. */
export const statOf = (path: string): Promise<Status> =>
  deno ? deno.stat(path).then(fromDeno) : node.stat(path).then(fromNode);

/** The status of `path` itself (a link is not followed). */
export const lstatOf = (path: string): Promise<Status> =>
  deno ? deno.lstat(path).then(fromDeno) : node.lstat(path).then(fromNode);

/**
 * What identifies the content of the file `path` names (links followed):
 * device, inode, size, and modification and change times in whole
 * milliseconds (Deno reports no finer; elsewhere they are cut to that);
 * `undefined` unless it is a regular file whose status reports all of them.
 */
export async function contentIdentity(path: string): Promise<
  { dev: string; ino: string; size: string; mtimeMs: string; ctimeMs: string } | undefined
> {
  if (deno) {
    const s = await deno.stat(path);
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
  const s = await node.stat(path, { bigint: true });
  if (!s.isFile()) return undefined;
  return {
    dev: String(s.dev),
    ino: String(s.ino),
    size: String(s.size),
    mtimeMs: String(s.mtimeNs / 1_000_000n),
    ctimeMs: String(s.ctimeNs / 1_000_000n),
  };
}

/** The real path of `path` (links resolved). */
export const realPath = (path: string): Promise<string> =>
  deno ? deno.realPath(path) : node.realpath(path);

/** A file's text (UTF-8). */
export const readText = (path: string): Promise<string> =>
  deno ? deno.readTextFile(path) : node.readFile(path, "utf8");

/** Makes a folder and those above it (mode for the ones made). */
export const makeDir = (path: string, mode: number): Promise<unknown> =>
  deno ? deno.mkdir(path, { recursive: true, mode }) : node.mkdir(path, { recursive: true, mode });

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
