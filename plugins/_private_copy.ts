// Private copies for the transformers.js guard. Every weight file onnxruntime
// will open is first copied, and hashed while it is copied (one pass), into a
// folder only this process writes: made with mkdtemp (0700), files created
// exclusively (0600). onnxruntime is then given the copy's path, so what it
// reads is what was hashed, whatever happens to the original afterwards, and
// it resolves external data beside the copy: a file planted elsewhere (the
// working directory, the model folder) is never opened.
//
// A verified ONNX file whose weights are inline (`raw_data`) is rewritten into
// a small graph whose big initializers are external data pointing back into
// the verified copy, at the same offsets. onnxruntime memory-maps those
// instead of parsing them into its heap: the bytes are the ones that were
// hashed, and loading needs a fraction of the time and memory.
import type { FileIdentity } from "./_guard_types.ts";
import { open, rename, rm } from "node:fs/promises";
import { makeTempFolder } from "./_fs.ts";
import { rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { basename, dirname, join } from "node:path";
import { createSha256, toHex } from "../hash/_digest.ts";
import { onnxLayout, resolveExternalLocation } from "../hash/_onnx.ts";
import { encodeStringEntry, encodeVarint } from "../hash/_protobuf.ts";
import { BLOCK_BYTES } from "../hash/_source.ts";
import { fileSource } from "../hash/_source_fs.ts";

/** Produces the next chunk of a file, or `null` at its end. */
export type NextChunk = () => Promise<Uint8Array | null>;

/**
 * Chunks of a local file, read into three rotating blocks. A chunk stays
 * valid until two more have been requested, which is what
 * {@linkcode writeHashed} needs (it writes one chunk while reading the next).
 * The file is opened at the first read or identity (a warm start reads
 * neither), and its blocks made at the first read.
 */
// deno-lint-ignore require-await
export async function fileChunks(
  path: string,
): Promise<{ next: NextChunk; close(): Promise<void>; identity(): Promise<FileIdentity> }> {
  let opened: ReturnType<typeof open> | undefined;
  const handle = () => (opened ??= open(path, "r"));
  let blocks: Uint8Array[] | undefined;
  let i = 0;
  return {
    next: async () => {
      const h = await handle();
      blocks ??= [0, 1, 2].map(() => new Uint8Array(BLOCK_BYTES));
      const block = blocks[i++ % blocks.length]!;
      const { bytesRead } = await h.read(block, 0, block.byteLength, null);
      return bytesRead === 0 ? null : block.subarray(0, bytesRead);
    },
    close: async () => {
      if (opened) await (await opened).close();
    },
    // fstat of the very handle being read (not of whatever the path names now).
    identity: async () => identityOf(await (await handle()).stat({ bigint: true })),
  };
}

/** A file's identity from its (bigint) stats, for the verified store. */
export function identityOf(
  s: { dev: bigint; ino: bigint; size: bigint; mtimeNs: bigint; ctimeNs: bigint },
): FileIdentity {
  return {
    dev: String(s.dev),
    ino: String(s.ino),
    size: String(s.size),
    mtimeNs: String(s.mtimeNs),
    ctimeNs: String(s.ctimeNs),
  };
}

/** Chunks of a stream (each chunk is the stream's own, never reused). */
export function streamChunks(stream: ReadableStream<Uint8Array>): {
  next: NextChunk;
  cancel(reason?: unknown): Promise<void>;
} {
  const reader = stream.getReader();
  return {
    next: async () => {
      const { value, done } = await reader.read();
      return done ? null : value;
    },
    cancel: (reason) => reader.cancel(reason),
  };
}

/**
 * Writes chunks to a new file `dest` (created exclusively, mode 0600) while
 * hashing them: the next chunk is read while this one is hashed and the
 * previous one written, so the copy costs about what hashing alone does.
 * On failure the partial file is removed.
 *
 * @returns The SHA-256 (hex) and size of what was written.
 */
export async function writeHashed(
  next: NextChunk,
  dest: string,
): Promise<{ digest: string; size: number }> {
  const hasher = await createSha256();
  const out = await open(dest, "wx", 0o600);
  let size = 0;
  let pending: Promise<Uint8Array | null> | undefined;
  let writing: Promise<void> = Promise.resolve();
  // A read-ahead that fails while a write is awaited is handled when awaited.
  const ahead = () => {
    const p = next();
    p.catch(() => {});
    return p;
  };
  try {
    pending = ahead();
    for (;;) {
      const chunk = await pending;
      if (chunk === null) break;
      pending = ahead();
      hasher.update(chunk);
      size += chunk.byteLength;
      await writing;
      writing = writeAll(out, chunk);
    }
    await writing;
    await out.close();
  } catch (error) {
    await writing.catch(() => {});
    await out.close().catch(() => {});
    await rm(dest, { force: true });
    throw error;
  }
  return { digest: toHex(hasher.digest()), size };
}

async function writeAll(
  out: import("node:fs/promises").FileHandle,
  chunk: Uint8Array,
): Promise<void> {
  let at = 0;
  while (at < chunk.byteLength) {
    at += (await out.write(chunk, at, chunk.byteLength - at)).bytesWritten;
  }
}

/** The guard's private folder, made on first use and removed with everything in it. */
export class PrivateDir {
  readonly #parent: string | undefined;
  #root: Promise<string> | undefined;
  #made: string | undefined;
  #onExit = () => this.removeSync();

  constructor(parent?: string) {
    this.#parent = parent;
  }

  /** The folder (made on first call). */
  root(): Promise<string> {
    return this.#root ??= (async () => {
      const root = await makeTempFolder(this.#parent ?? tmpdir(), "safemodels-guard-");
      this.#made = root;
      const proc = (globalThis as {
        process?: { on?(e: string, f: () => void): void };
      }).process;
      // Deno runs "exit" handlers of node:process too; Node has no "unload".
      proc?.on?.("exit", this.#onExit);
      return root;
    })();
  }

  /** A fresh file name beside `path`. */
  static sibling(path: string, tag: string): string {
    return join(dirname(path), `.${basename(path)}.${crypto.randomUUID().slice(0, 8)}.${tag}`);
  }

  /** Removes the folder and all copies (ignoring files still in use on Windows). */
  removeSync(): void {
    const root = this.#made;
    this.#made = undefined;
    this.#root = undefined;
    const proc = (globalThis as {
      process?: { off?(e: string, f: () => void): void };
    }).process;
    proc?.off?.("exit", this.#onExit);
    if (root !== undefined) rmSync(root, { recursive: true, force: true, maxRetries: 2 });
  }
}

/** Removes files, ignoring those already gone (or still mapped on Windows). */
export async function removeFiles(paths: Iterable<string>): Promise<void> {
  await Promise.all([...paths].map((p) => rm(p, { force: true }).catch(() => {})));
}

/** Inline initializers at least this big move to external data. */
const MIN_TENSOR = 4096;
/** Rewrite only when this much would move (small graphs load fast anyway). */
const MIN_TOTAL = 1 << 20;

/** What {@linkcode externalizeOnnx} learned and did. */
export interface OnnxCopy {
  /** External-data locations the graph reads (relative to its folder). */
  locations: Set<string>;
  /** The verified original's bytes, now read by the rewritten graph; absent if not rewritten. */
  weights?: string;
}

const EXTERNAL_DATA = 13;
const DATA_LOCATION_EXTERNAL = [14 << 3, 1];
const GRAPH = 7 << 3 | 2;
const INITIALIZER = 5 << 3 | 2;

/** A piece of the rewritten file: literal bytes, or a range of the original. */
type Piece = Uint8Array | { from: number; to: number };
const size = (p: Piece) => p instanceof Uint8Array ? p.byteLength : p.to - p.from;

/**
 * Reads the layout of the verified ONNX copy at `path` and, when it holds
 * enough inline weights, rewrites it in place: the original bytes move to a
 * sibling file and `path` becomes the same model with those initializers as
 * external data into it (same bytes, same offsets). A file that cannot be
 * read as ONNX is left as it is (onnxruntime will say what is wrong).
 */
export async function externalizeOnnx(path: string): Promise<OnnxCopy> {
  const source = await fileSource(path);
  try {
    let layout;
    try {
      layout = await onnxLayout(source);
    } catch {
      return { locations: new Set() };
    }
    const locations = new Set<string>();
    for (const rec of layout.initializers) {
      const location = rec.external.get("location");
      if (rec.dataLocation === 1 && location !== undefined) {
        try {
          locations.add(resolveExternalLocation(location));
        } catch {
          locations.add(location);
        }
      }
    }
    const moving = layout.initializers.filter((r) =>
      r.raw !== undefined && r.raw.length >= MIN_TENSOR && r.tag !== undefined &&
      r.dataLocation !== 1 && r.external.size === 0
    );
    if (moving.reduce((a, r) => a + r.raw!.length, 0) < MIN_TOTAL) return { locations };

    const weights = PrivateDir.sibling(path, "weights");
    const graph: Piece[] = [];
    let at = layout.graph.start;
    for (const rec of moving) {
      const raw = rec.raw!;
      const body: Piece[] = [
        { from: rec.start, to: raw.tag },
        { from: raw.offset + raw.length, to: rec.end },
        encodeStringEntry(EXTERNAL_DATA, "location", basename(weights)),
        encodeStringEntry(EXTERNAL_DATA, "offset", String(raw.offset)),
        encodeStringEntry(EXTERNAL_DATA, "length", String(raw.length)),
        Uint8Array.from(DATA_LOCATION_EXTERNAL),
      ];
      const length = body.reduce((a, p) => a + size(p), 0);
      graph.push(
        { from: at, to: rec.tag! },
        Uint8Array.from([INITIALIZER, ...encodeVarint(length)]),
        ...body,
      );
      at = rec.end;
    }
    graph.push({ from: at, to: layout.graph.end });
    const graphLength = graph.reduce((a, p) => a + size(p), 0);
    const pieces: Piece[] = [
      { from: 0, to: layout.graph.tag },
      Uint8Array.from([GRAPH, ...encodeVarint(graphLength)]),
      ...graph,
      { from: layout.graph.end, to: source.size },
    ];

    const temp = PrivateDir.sibling(path, "graph");
    const out = await open(temp, "wx", 0o600);
    try {
      for (const piece of pieces) {
        if (piece instanceof Uint8Array) {
          await writeAll(out, piece);
          continue;
        }
        for (let p = piece.from; p < piece.to; p += BLOCK_BYTES) {
          await writeAll(out, await source.read(p, Math.min(BLOCK_BYTES, piece.to - p)));
        }
      }
      await out.close();
    } catch (error) {
      await out.close().catch(() => {});
      await rm(temp, { force: true });
      throw error;
    }
    await rename(path, weights);
    await rename(temp, path);
    return { locations, weights };
  } finally {
    await source.close();
  }
}
