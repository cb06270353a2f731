// Reading evidence files (model.sig, lockfiles) in Deno and Node: at most
// the evidence bound, and failures that say what is wrong (a missing
// permission, an I/O error) instead of passing for missing evidence.
import { EvidenceError } from "./errors.ts";
import { tooLarge } from "./_json.ts";
import { isNotFound, unreadable } from "./_io_errors.ts";

/**
 * Reads an evidence file as UTF-8 text: `undefined` when it does not exist,
 * `EvidenceError` when it cannot be read or is larger than `max` bytes
 * (never reading more than `max + 1` bytes, whatever the file claims).
 */
export async function readEvidenceFile(
  path: string,
  what: string,
  max: number,
): Promise<string | undefined> {
  const deno = (globalThis as { Deno?: DenoFs }).Deno;
  if (deno) return await readInDeno(deno, path, what, max);
  const { open } = await import("node:fs/promises");
  const { constants } = await import("node:fs");
  let handle: import("node:fs/promises").FileHandle;
  try {
    // Non-blocking, so that a FIFO named model.sig cannot hang the open; a
    // regular file reads the same either way.
    handle = await open(path, constants.O_RDONLY | (constants.O_NONBLOCK ?? 0));
  } catch (e) {
    if (isNotFound(e)) return undefined;
    throw unreadable(e, path, what);
  }
  try {
    const info = await handle.stat();
    if (!info.isFile()) throw notRegularFile(what, path, info.isDirectory());
    return await readText(
      async (buf) => (await handle.read(buf, 0, buf.length, null)).bytesRead,
      what,
      path,
      max,
    );
  } catch (e) {
    if (e instanceof EvidenceError) throw e;
    throw unreadable(e, path, what);
  } finally {
    await handle.close().catch(() => {});
  }
}

interface DenoFs {
  statSync(path: string): { isFile: boolean; isDirectory: boolean };
  open(path: string, options: { read: true }): Promise<{
    statSync(): { isFile: boolean };
    read(buffer: Uint8Array): Promise<number | null>;
    close(): void;
  }>;
}

/** How long opening a regular file may take before it is taken for a pipe swapped in. */
const OPEN_MS = 5_000;

/**
 * Deno's own file API (its node:fs/promises costs milliseconds more on a
 * guarded load's path). Deno cannot open without blocking, and a FIFO named
 * like the evidence would hang the open: only a regular file is opened, the
 * open is bounded in time (a pipe swapped in between is refused, not waited
 * on), and the opened handle must be a regular file too. The status calls
 * are made at once (each awaited call costs about half a millisecond among a
 * model load's other work); the open and the reads wait on the event loop (a
 * file system may be slow to answer a read, which must not stop the process).
 */
async function readInDeno(
  deno: DenoFs,
  path: string,
  what: string,
  max: number,
): Promise<string | undefined> {
  const notRegular = (folder: boolean) => notRegularFile(what, path, folder);
  let file;
  try {
    const info = deno.statSync(path);
    if (!info.isFile) throw notRegular(info.isDirectory);
    let timer: ReturnType<typeof setTimeout> | undefined;
    // Not unref'd: a stuck open keeps the process until it is refused.
    const late = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(notRegular(false)), OPEN_MS);
    });
    const opening = deno.open(path, { read: true });
    try {
      file = await Promise.race([opening, late]);
    } catch (e) {
      // A pipe that gets a writer later: its handle is closed then.
      opening.then((f) => f.close(), () => {});
      throw e;
    } finally {
      clearTimeout(timer);
    }
  } catch (e) {
    if (e instanceof EvidenceError) throw e;
    if (isNotFound(e)) return undefined;
    throw unreadable(e, path, what);
  }
  try {
    if (!file.statSync().isFile) throw notRegular(false);
    return await readText(async (buf) => (await file.read(buf)) ?? 0, what, path, max);
  } catch (e) {
    if (e instanceof EvidenceError) throw e;
    throw unreadable(e, path, what);
  } finally {
    try {
      file.close();
    } catch {
      // already closed
    }
  }
}

function notRegularFile(what: string, path: string, folder: boolean): EvidenceError {
  return new EvidenceError(
    "unreadable",
    `Cannot read ${what}: it is not a regular file (${
      folder ? "a folder" : "a pipe, socket or device"
    })`,
    { file: path },
  );
}

/**
 * An open file's text (UTF-8, a byte order mark kept), read with `read`
 * (bytes read, 0 at the end) to its end but never past `max` bytes.
 */
async function readText(
  read: (buffer: Uint8Array) => Promise<number>,
  what: string,
  path: string,
  max: number,
): Promise<string> {
  const buf = new Uint8Array(Math.min(max + 1, 1 << 20));
  let bytes = new Uint8Array(0);
  for (;;) {
    const n = await read(buf);
    if (n === 0) break;
    if (bytes.byteLength + n > max) throw tooLarge(what, max, path);
    const grown = new Uint8Array(bytes.byteLength + n);
    grown.set(bytes);
    grown.set(buf.subarray(0, n), bytes.byteLength);
    bytes = grown;
  }
  return new TextDecoder("utf-8", { ignoreBOM: true }).decode(bytes);
}
