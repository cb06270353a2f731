// File-system calls on the guard's hot paths (every guarded load, and all a
// warm start does): Deno's own API in Deno, node:fs/promises elsewhere.
// Deno's node:fs/promises costs milliseconds at the first use of each call
// and several times Deno's own per call after that, which a warm start of
// about a hundred calls notices. Same answers either way; a missing file
// rejects as node:fs does (a NotFound error of Deno, code ENOENT in Node).
import * as node from "node:fs/promises";

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
  isFile: boolean;
  isDirectory: boolean;
  isSymlink: boolean;
  size: number;
  uid: number | null;
  mode: number | null;
  dev: number;
  ino: number | null;
}

interface DenoFs {
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

/** The real path of `path` (links resolved). */
export const realPath = (path: string): Promise<string> =>
  deno ? deno.realPath(path) : node.realpath(path);

/** A file's text (UTF-8). */
export const readText = (path: string): Promise<string> =>
  deno ? deno.readTextFile(path) : node.readFile(path, "utf8");

/** Makes a folder and those above it (mode for the ones made). */
export const makeDir = (path: string, mode: number): Promise<unknown> =>
  deno ? deno.mkdir(path, { recursive: true, mode }) : node.mkdir(path, { recursive: true, mode });

/** A hard link `to` of `from`. */
export const hardLink = (from: string, to: string): Promise<void> =>
  deno ? deno.link(from, to) : node.link(from, to);

/** Renames `from` to `to` (replacing it). */
export const renamePath = (from: string, to: string): Promise<void> =>
  deno ? deno.rename(from, to) : node.rename(from, to);
