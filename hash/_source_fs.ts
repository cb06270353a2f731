// File-system edge: a ByteSource over a file, in Deno (Deno.FsFile) or Node
// (node:fs/promises). Imported lazily by `_source.ts`.
import { ModelFormatError } from "./errors.ts";
import { checkRange, takeBuffer } from "./_source.ts";
import type { ByteSource } from "./_source.ts";

/** Turns a string path or `file:` URL into a path string. */
export function toPath(path: string | URL): string {
  if (path instanceof URL) {
    if (path.protocol !== "file:") {
      throw new TypeError(
        `Cannot open ${path.href}: only file: URLs name local files (fetch it and pass the Response)`,
      );
    }
    return decodeURIComponent(path.pathname);
  }
  return path;
}

/** Reads of at most this many bytes are served from a cached window. */
const SMALL_READ = 16 << 10;
/** The size of that window. */
const WINDOW_BYTES = 64 << 10;

/** Opens `path` for random access. */
export async function fileSource(path: string | URL): Promise<ByteSource> {
  const name = toPath(path);
  const { open } = await import("node:fs/promises");
  const { constants } = await import("node:fs");
  // Non-blocking, then checked: a pipe or device where a file should be
  // must not hang the open or the reads, nor a folder fail untyped.
  const handle = await open(name, constants.O_RDONLY | (constants.O_NONBLOCK ?? 0));
  const info = await handle.stat().catch(async (e) => {
    await handle.close();
    throw e;
  });
  if (!info.isFile()) {
    await handle.close();
    throw new ModelFormatError(
      "unknown-format",
      `Cannot read the file: it is ${
        info.isDirectory() ? "a folder" : "not a regular file (a pipe, socket or device)"
      }, expected a model file`,
      { file: name },
    );
  }
  const size = info.size;
  let closed = false;
  const source: ByteSource = {
    name,
    size,
    path: name,
    async read(offset, length) {
      checkRange(source, offset, length);
      // Readers of many small things (ONNX initializers, zip members, npy
      // headers) ask for a few bytes at a time, mostly near the last read:
      // serve those from one cached window instead of a system call each.
      if (length <= SMALL_READ) {
        if (
          cached === undefined || offset < cachedAt ||
          offset + length > cachedAt + cached.byteLength
        ) {
          const n = Math.min(WINDOW_BYTES, size - offset);
          const next = await readAt(offset, Math.max(n, length));
          cached = next;
          cachedAt = offset;
        }
        return cached.slice(offset - cachedAt, offset - cachedAt + length);
      }
      return await readAt(offset, length);
    },
    async close() {
      if (!closed) {
        closed = true;
        cached = undefined;
        await handle.close();
      }
    },
  };
  let cached: Uint8Array | undefined;
  let cachedAt = 0;
  const readAt = async (offset: number, length: number) => {
    const out = takeBuffer(length);
    let got = 0;
    while (got < length) {
      const { bytesRead } = await handle.read(
        out,
        got,
        length - got,
        offset + got,
      );
      if (bytesRead === 0) {
        checkRange({ name, size: offset + got }, offset, length);
      }
      got += bytesRead;
    }
    return out;
  };
  return source;
}

/**
 * Opens `location` (relative, already validated) inside the folder `dir`,
 * refusing anything whose real path (after symlinks) leaves that folder.
 */
export async function fileSourceInside(
  dir: string,
  location: string,
): Promise<ByteSource> {
  const { realpath } = await import("node:fs/promises");
  const { join, sep } = await import("node:path");
  const root = await realpath(dir);
  let target: string;
  try {
    target = await realpath(join(root, location));
  } catch (cause) {
    throw new ModelFormatError(
      "bad-external-data",
      `Cannot open external data "${location}": no such file next to the model in ${root}`,
      { cause },
    );
  }
  if (!target.startsWith(root + sep)) {
    throw new ModelFormatError(
      "bad-external-data",
      `Cannot open external data "${location}": it resolves to ${target}, outside the model folder ${root}`,
    );
  }
  return await fileSource(target);
}
