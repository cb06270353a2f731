/**
 * Pins a model on a Hugging Face-compatible hub without downloading its
 * weights: the revision is resolved to its commit, the commit's file listing
 * gives, for every LFS file, the SHA-256 the hub already publishes (the LFS
 * object id is the file's SHA-256), and only the small non-LFS files
 * (configs, tokenizers) are downloaded and hashed here. Runs wherever
 * `fetch` does.
 *
 * Hub endpoints relied on (as `huggingface_hub` and `@huggingface/hub` use them):
 * - `GET /api/models/{repo}/revision/{revision}`: JSON `{ sha }` (the commit);
 * - `GET /api/models/{repo}/tree/{commit}?recursive=true`: a JSON array of
 *   `{ type: "file" | "directory", path, size, oid, lfs?: { oid, size } }`,
 *   paged by a `Link: <…>; rel="next"` header;
 * - `GET /{repo}/resolve/{commit}/{path}`: a non-LFS file's bytes.
 *
 * @module
 */

import { createSha256, toHex } from "../hash/_digest.ts";
import { EvidenceError } from "./errors.ts";
import { unsafePathReason } from "./_oms.ts";

/** The public Hugging Face hub. */
export const DEFAULT_HUB_ENDPOINT = "https://huggingface.co";

/** Options of {@linkcode pinHubModel}. */
export interface PinHubModelOptions {
  /** The revision: a branch, tag or commit. @default {"main"} */
  revision?: string;
  /** The hub. @default {"https://huggingface.co"} */
  endpoint?: string;
  /** Only these files (paths in the repository); all files when absent. */
  files?: string[];
  /** A hub access token, sent to the hub's own origin only. */
  token?: string;
  /** The `fetch` used (defaults to the global one). */
  fetch?: typeof fetch;
  /**
   * Largest non-LFS file downloaded and hashed; the hub keeps bigger files
   * in LFS, so a larger one is refused.
   * @default {10485760}
   */
  maxSmallFileBytes?: number;
  /** Called after each non-LFS file is hashed, with its path. */
  onFile?: (path: string) => void;
  /** Aborts the pinning; it then rejects with the signal's reason. */
  signal?: AbortSignal;
  /**
   * How long the whole pinning may take (a hub that answers a byte a second
   * never finishes otherwise).
   * @default {300000}
   */
  timeoutMs?: number;
}

/** What {@linkcode pinHubModel} found. */
export interface HubPin {
  /** The repository, `org/name`. */
  repo: string;
  /** The revision asked for. */
  revision: string;
  /** The commit the revision resolved to (40 hex digits). */
  commit: string;
  /** `sha256:<hex>` per file path. */
  digests: Record<string, string>;
  /** The files whose digest the hub published (LFS); the others were downloaded and hashed. */
  published: string[];
  /** The files downloaded and hashed here (non-LFS). */
  downloaded: string[];
}

/** Most entries read from one repository's listing. */
const MAX_ENTRIES = 1 << 18;
/** Most listing pages followed. */
const MAX_PAGES = 1024;
/** Largest JSON answer read (revision info, one listing page). */
const MAX_JSON_BYTES = 8 << 20;
/** Most bytes of listing read in all (about 2^18 entries at ~250 bytes each). */
const MAX_LISTING_BYTES = 64 << 20;

const REPO = /^[A-Za-z0-9][A-Za-z0-9._-]{0,95}(\/[A-Za-z0-9][A-Za-z0-9._-]{0,95})?$/;
const COMMIT = /^[0-9a-f]{40}$/;
const SHA256 = /^[0-9a-f]{64}$/;

function fail(repo: string, message: string, cause?: unknown): EvidenceError {
  return new EvidenceError("hub-error", `Cannot pin ${repo}: ${message}`, {
    file: `hf://${repo}`,
    ...(cause === undefined ? {} : { cause }),
  });
}

/**
 * Parses `hf://org/name[@revision]` (or `org/name[@revision]`).
 *
 * @param spec The model reference.
 * @returns The repository and the revision (`main` when none is given).
 * @throws {TypeError} When it is not a repository id.
 *
 * @example
 * ```ts
 * import { parseHubSpec } from "@safemodels/safemodels/sign";
 * import assert from "node:assert/strict";
 *
 * assert.deepEqual(parseHubSpec("hf://acme/tiny-bert@v1.0"), { repo: "acme/tiny-bert", revision: "v1.0" });
 * ```
 */
export function parseHubSpec(spec: string): { repo: string; revision: string } {
  const rest = spec.startsWith("hf://") ? spec.slice(5) : spec;
  const at = rest.indexOf("@");
  const repo = at < 0 ? rest : rest.slice(0, at);
  const revision = at < 0 ? "main" : rest.slice(at + 1);
  if (!REPO.test(repo) || repo.includes("..") || repo.endsWith(".") || repo.endsWith("-")) {
    throw new TypeError(
      `Cannot read ${
        JSON.stringify(spec)
      }: expected hf://ORG/NAME[@REVISION] (letters, digits, "-", "_", ".")`,
    );
  }
  if (
    revision === "" || revision.length > 256 || revision.includes("@") ||
    revision === "unversioned" ||
    revision.split("/").some((part) => part === "" || part === "." || part === "..") ||
    [...revision].some((c) => c.charCodeAt(0) < 0x20 || c.charCodeAt(0) === 0x7f)
  ) {
    throw new TypeError(
      `Cannot read ${
        JSON.stringify(spec)
      }: the revision after "@" is empty, "unversioned" (the lockfile's any-version key), has "@", "." or ".." parts, or control characters`,
    );
  }
  return { repo, revision };
}

/** Reads a JSON answer within the bound; names what was asked on failure. */
async function readJson(
  repo: string,
  response: Response,
  what: string,
  budget: { left: number } = { left: MAX_JSON_BYTES },
): Promise<unknown> {
  const declared = Number(response.headers.get("content-length") ?? NaN);
  if (declared > MAX_JSON_BYTES) {
    await response.body?.cancel();
    throw fail(repo, `the hub's ${what} is ${declared} bytes, over the ${MAX_JSON_BYTES} read`);
  }
  const chunks: Uint8Array[] = [];
  let total = 0;
  for await (const chunk of response.body ?? new ReadableStream<Uint8Array>()) {
    total += chunk.byteLength;
    budget.left -= chunk.byteLength;
    if (total > MAX_JSON_BYTES || budget.left < 0) {
      await response.body?.cancel().catch(() => {});
      throw fail(
        repo,
        total > MAX_JSON_BYTES
          ? `the hub's ${what} is over ${MAX_JSON_BYTES} bytes`
          : `the hub's listing is over ${MAX_LISTING_BYTES} bytes in all`,
      );
    }
    chunks.push(chunk);
  }
  const bytes = new Uint8Array(total);
  let at = 0;
  for (const c of chunks) bytes.set(c, (at += c.byteLength) - c.byteLength);
  try {
    return JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(bytes));
  } catch (cause) {
    throw fail(repo, `the hub's ${what} is not JSON`, cause);
  }
}

/** The `rel="next"` URL of a `Link` header, if any. */
function nextLink(header: string | null): string | undefined {
  if (!header) return undefined;
  for (const part of header.split(",")) {
    const m = /^\s*<([^>]*)>\s*;(.*)$/.exec(part);
    if (m && /(^|;)\s*rel\s*=\s*"?next"?\s*(;|$)/i.test(m[2]!)) return m[1];
  }
  return undefined;
}

/** A path of the repository as a URL path (each segment encoded). */
const urlPath = (path: string) => path.split("/").map(encodeURIComponent).join("/");

/**
 * Pins a hub model without downloading its weights; see the module
 * documentation for the endpoints used.
 *
 * @param repo The repository, `org/name`.
 * @param options Revision, hub, files, token.
 * @returns The commit and every file's SHA-256.
 * @throws {EvidenceError} When the hub cannot be read, answers unlike a hub,
 * lacks a file asked for, or lists an unsafe path or a malformed digest.
 *
 * @example Pinning a model's ONNX files
 * ```ts ignore
 * import { Lockfile, pinHubModel } from "@safemodels/safemodels/sign";
 *
 * const pin = await pinHubModel("Xenova/all-MiniLM-L6-v2", { files: ["onnx/model.onnx"] });
 * const lock = await Lockfile.load("safemodels.lock");
 * lock.record(pin.repo, pin.revision, { digests: pin.digests, commit: pin.commit });
 * await lock.save("safemodels.lock");
 * ```
 */
export async function pinHubModel(repo: string, options: PinHubModelOptions = {}): Promise<HubPin> {
  parseHubSpec(repo);
  const revision = options.revision ?? "main";
  parseHubSpec(`${repo}@${revision}`);
  let base: URL;
  try {
    base = new URL(options.endpoint ?? DEFAULT_HUB_ENDPOINT);
  } catch (cause) {
    throw new TypeError(`Cannot pin ${repo}: the hub endpoint is not a URL`, { cause });
  }
  if (base.protocol !== "https:" && base.protocol !== "http:") {
    throw new TypeError(
      `Cannot pin ${repo}: the hub endpoint must be http(s), found ${base.protocol}`,
    );
  }
  const root = base.href.replace(/[?#].*$/, "").replace(/\/+$/, "");
  const fetchFn = options.fetch ?? globalThis.fetch;
  const timeoutMs = options.timeoutMs ?? 300_000;
  if (!(timeoutMs > 0)) throw new TypeError(`Cannot pin ${repo}: timeoutMs must be positive`);
  const deadline = AbortSignal.timeout(timeoutMs);
  const signal = options.signal ? AbortSignal.any([options.signal, deadline]) : deadline;
  signal.throwIfAborted();
  try {
    const maxSmall = options.maxSmallFileBytes ?? 10 << 20;
    const get = async (url: string, what: string): Promise<Response> => {
      const headers: Record<string, string> = { Accept: "application/json" };
      // The token goes to the hub's own URLs only (its origin and path).
      if (options.token && url.startsWith(`${root}/`)) {
        headers.Authorization = `Bearer ${options.token}`;
      }
      let response: Response;
      try {
        response = await fetchFn(url, { headers, signal });
      } catch (cause) {
        if (options.signal?.aborted) throw options.signal.reason;
        throw fail(
          repo,
          deadline.aborted
            ? `the hub at ${base.host} did not answer the ${what} within ${timeoutMs} ms`
            : `cannot reach the hub at ${base.host} for the ${what} (${(cause as Error).message})`,
          cause,
        );
      }
      if (!response.ok) {
        await response.body?.cancel();
        const code = response.headers.get("x-error-code");
        throw fail(
          repo,
          `the hub answered HTTP ${response.status}${code ? ` (${code})` : ""} for the ${what}`,
        );
      }
      return response;
    };

    // 1. The revision's commit.
    const info = await readJson(
      repo,
      await get(`${root}/api/models/${repo}/revision/${encodeURIComponent(revision)}`, "revision"),
      "revision information",
    ) as { sha?: unknown };
    const commit = typeof info === "object" && info !== null ? info.sha : undefined;
    if (typeof commit !== "string" || !COMMIT.test(commit)) {
      throw fail(
        repo,
        `the hub named no commit (40 hex digits) for revision ${JSON.stringify(revision)}`,
      );
    }

    // 2. The commit's files (immutable), page by page.
    type Entry = {
      type?: unknown;
      path?: unknown;
      size?: unknown;
      lfs?: { oid?: unknown; size?: unknown };
    };
    const files = new Map<string, { size: number; sha256?: string }>();
    const budget = { left: MAX_LISTING_BYTES };
    let entriesSeen = 0;
    let url: string | undefined = `${root}/api/models/${repo}/tree/${commit}?recursive=true`;
    for (let page = 0; url !== undefined; page++) {
      if (page >= MAX_PAGES) throw fail(repo, `the listing runs past ${MAX_PAGES} pages`);
      const response = await get(url, "file listing");
      const next = nextLink(response.headers.get("link"));
      const entries = await readJson(repo, response, "file listing", budget);
      if (!Array.isArray(entries)) throw fail(repo, "the hub's file listing is not a JSON array");
      entriesSeen += entries.length;
      if (entriesSeen > MAX_ENTRIES) {
        throw fail(repo, `the listing holds over ${MAX_ENTRIES} entries`);
      }
      for (const e of entries as Entry[]) {
        if (typeof e !== "object" || e === null || e.type !== "file") continue;
        if (typeof e.path !== "string" || typeof e.size !== "number" || !(e.size >= 0)) {
          throw fail(repo, `the listing has a file entry without a path and size`);
        }
        const unsafe = unsafePathReason(e.path);
        if (unsafe) {
          throw fail(
            repo,
            `the listing names an unsafe path ${JSON.stringify(e.path)} (${unsafe})`,
          );
        }
        if (files.has(e.path)) {
          throw fail(repo, `the listing names ${JSON.stringify(e.path)} twice`);
        }
        if (files.size >= MAX_ENTRIES) {
          throw fail(repo, `the listing holds over ${MAX_ENTRIES} files`);
        }
        if (e.lfs !== undefined) {
          const oid = e.lfs?.oid;
          if (typeof oid !== "string" || !SHA256.test(oid) || e.lfs.size !== e.size) {
            throw fail(
              repo,
              `the listing's LFS entry for ${
                JSON.stringify(e.path)
              } has no SHA-256 object id of its size`,
            );
          }
          files.set(e.path, { size: e.size, sha256: oid });
        } else files.set(e.path, { size: e.size });
      }
      // Later pages only from the hub itself (its origin and path).
      if (next !== undefined) {
        const n: URL = new URL(next, url);
        if (n.origin !== base.origin) {
          throw fail(repo, `the listing's next page is on another origin (${n.origin})`);
        }
        if (!n.href.startsWith(`${root}/api/models/${repo}/tree/`)) {
          throw fail(repo, `the listing's next page is not the hub's listing (${n.pathname})`);
        }
        url = n.href;
      } else url = undefined;
    }

    // 3. The files asked for: published digests, or small files hashed here.
    const wanted = options.files ?? [...files.keys()].sort();
    const digests: Record<string, string> = {};
    const published: string[] = [];
    const downloaded: string[] = [];
    for (const path of wanted) {
      const file = files.get(path);
      if (file === undefined) {
        throw fail(
          repo,
          `${JSON.stringify(path)} is not a file of the model at ${commit.slice(0, 12)}`,
        );
      }
      if (file.sha256 !== undefined) {
        digests[path] = `sha256:${file.sha256}`;
        published.push(path);
        continue;
      }
      if (file.size > maxSmall) {
        throw fail(
          repo,
          `${path} is ${file.size} bytes and not in LFS, over the ${maxSmall} bytes downloaded to hash`,
        );
      }
      const response = await get(`${root}/${repo}/resolve/${commit}/${urlPath(path)}`, path);
      const hasher = await createSha256();
      let size = 0;
      for await (const chunk of response.body ?? new ReadableStream<Uint8Array>()) {
        size += chunk.byteLength;
        if (size > file.size) {
          await response.body?.cancel().catch(() => {});
          break;
        }
        hasher.update(chunk);
      }
      if (size !== file.size) {
        throw fail(
          repo,
          `${path}: the hub sent ${
            size > file.size ? "more than " : ""
          }${size} bytes, its listing says ${file.size}`,
        );
      }
      digests[path] = `sha256:${toHex(hasher.digest())}`;
      downloaded.push(path);
      options.onFile?.(path);
    }
    return { repo, revision, commit, digests, published, downloaded };
  } catch (e) {
    if (options.signal?.aborted) throw options.signal.reason;
    if (deadline.aborted && !(e instanceof EvidenceError)) {
      throw fail(repo, `the hub at ${base.host} did not finish within ${timeoutMs} ms`, e);
    }
    throw e;
  }
}
