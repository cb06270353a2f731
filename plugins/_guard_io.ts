// Byte plumbing for the transformers.js guard: chunks of streams, reading
// while hashing, responses over verified bytes. No file system.
import { createSha256, toHex } from "../hash/_digest.ts";
import type { Chunks, GuardFiles, Stored } from "./_guard_types.ts";
import type { GuardCore } from "./_guard_core.ts";
import { TAG_HEADER } from "./_cache_tags.ts";

/** A length header is trusted for preallocation up to this; beyond, the buffer grows. */
const PREALLOCATE_MAX = 1 << 30;
/** Files other than weights (JSON, text) larger than this are refused. */
export const MAX_TEXT_FILE = 256 << 20;

/** Chunks of a stream (each chunk is the stream's own, never reused). */
export function streamChunks(stream: ReadableStream<Uint8Array>): Chunks {
  const reader = stream.getReader();
  let done = false;
  return {
    next: async () => {
      const r = await reader.read();
      if (r.done) done = true;
      return r.done ? null : r.value;
    },
    close: () => done ? Promise.resolve() : reader.cancel(),
  };
}

/** Chunks of a response, or of the local file under it. */
export async function chunksOf(core: GuardCore, response: Response): Promise<Chunks> {
  const local = core.localBodies.get(response);
  const files = core.platform.files;
  if (local !== undefined && files) {
    await response.body?.cancel();
    return await files.fileChunks(local);
  }
  return streamChunks(response.body ?? bytesStream(new Uint8Array(await response.arrayBuffer())));
}

/**
 * Reads chunks into one buffer (sized by `size` when known and sane),
 * hashing each as it arrives; more than `limit` bytes is a RangeError.
 * The digest is `sha256:<hex>`.
 */
export async function readHashed(
  chunks: Chunks,
  size: number | undefined,
  limit = Infinity,
  hash = true,
): Promise<{ bytes: Uint8Array; digest: string }> {
  // Not hashing (a tagged cache entry): the digest is the caller's.
  const hasher = hash ? await createSha256() : { update() {}, digest: () => new Uint8Array() };
  const sane = size !== undefined && Number.isSafeInteger(size) && size >= 0 &&
    size <= Math.min(limit, PREALLOCATE_MAX);
  let bytes = new Uint8Array(sane ? size : 0);
  const parts: Uint8Array[] = [];
  let at = 0;
  try {
    for (let chunk = await chunks.next(); chunk !== null; chunk = await chunks.next()) {
      if (at + chunk.byteLength > limit) {
        throw new RangeError(`it is larger than ${limit} bytes`);
      }
      hasher.update(chunk);
      if (parts.length === 0 && at + chunk.byteLength <= bytes.byteLength) {
        bytes.set(chunk, at);
      } else {
        if (parts.length === 0 && at > 0) parts.push(bytes.subarray(0, at));
        parts.push(chunk.slice());
      }
      at += chunk.byteLength;
    }
  } finally {
    await chunks.close().catch(() => {});
  }
  if (parts.length > 0) {
    bytes = new Uint8Array(at);
    let p = 0;
    for (const part of parts) {
      bytes.set(part, p);
      p += part.byteLength;
    }
  } else if (at < bytes.byteLength) {
    bytes = bytes.slice(0, at);
  }
  return { bytes, digest: hash ? `sha256:${toHex(hasher.digest())}` : "" };
}

export function bytesStream(bytes: Uint8Array): ReadableStream<Uint8Array> {
  return new ReadableStream({
    start(controller) {
      controller.enqueue(bytes);
      controller.close();
    },
  });
}

/** Bytes as a Response body (fetch types want an ArrayBuffer-backed view). */
export function asBody(bytes: Uint8Array): BodyInit {
  return bytes as Uint8Array<ArrayBuffer>;
}

/**
 * A response over bytes the guard verified, whose `arrayBuffer()` returns
 * that very buffer: transformers.js then hands it to onnxruntime without a
 * copy, and the gate knows it by identity without hashing it again.
 */
export class VerifiedResponse extends Response {
  readonly #bytes: Uint8Array;
  constructor(bytes: Uint8Array) {
    super(bytesStream(bytes), { headers: { "content-length": String(bytes.byteLength) } });
    this.#bytes = bytes;
  }
  override arrayBuffer(): Promise<ArrayBuffer> {
    const b = this.#bytes;
    const whole = b.byteOffset === 0 && b.byteLength === b.buffer.byteLength;
    return Promise.resolve((whole ? b.buffer : b.slice().buffer) as ArrayBuffer);
  }
}

/** The body of what a cache's `match` returned (a Response, a FileResponse or a path). */
export async function openBody(
  r: unknown,
  files: GuardFiles | undefined,
): Promise<ReadableStream<Uint8Array> | undefined> {
  if (r === undefined || r === null) return undefined;
  const path = typeof r === "string" ? r : (r as { filePath?: unknown }).filePath;
  if (typeof path === "string") return files?.fileBody(path);
  const res = r as {
    body?: ReadableStream<Uint8Array> | null;
    arrayBuffer(): Promise<ArrayBuffer>;
  };
  if (res.body) return res.body;
  return bytesStream(new Uint8Array(await res.arrayBuffer()));
}

/** Everything a stream holds, at most `limit` bytes (a RangeError beyond). */
export async function collect(
  stream: ReadableStream<Uint8Array>,
  limit = MAX_TEXT_FILE,
): Promise<Uint8Array> {
  return (await readHashed(streamChunks(stream), undefined, limit)).bytes;
}

export function storedResponse(
  data: Stored,
  type: string,
  files: GuardFiles | undefined,
  tag?: string,
): Response {
  const body = data instanceof Uint8Array ? asBody(data) : files!.fileBody(data.path);
  const length = data instanceof Uint8Array ? data.byteLength : data.size;
  return new Response(body, {
    headers: {
      "content-length": String(length),
      "content-type": type,
      ...(tag !== undefined ? { [TAG_HEADER]: tag } : {}),
    },
  });
}

export function sizeOf(response: Response): number | undefined {
  const n = Number(response.headers.get("content-length") ?? NaN);
  return Number.isSafeInteger(n) && n >= 0 ? n : undefined;
}

export function isUrl(s: string): boolean {
  return /^(?:https?|blob):/i.test(s);
}

/** A model file path that stays inside its folder once joined (no `..`, no absolute). */
export function safeRelative(file: string): boolean {
  return file.split("/").every((seg) =>
    seg !== "" && seg !== "." && seg !== ".." && !seg.includes("\\")
  );
}

/** Lets a timer not keep the process alive (Deno and Node). */
export function unrefTimer(timer: ReturnType<typeof setTimeout>): void {
  const unref = (globalThis as { Deno?: { unrefTimer(id: number): void } }).Deno?.unrefTimer;
  if (unref) unref(timer as unknown as number);
  else (timer as unknown as { unref?: () => void }).unref?.();
}
