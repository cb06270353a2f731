// A loopback Hugging Face hub on 127.0.0.1 answering the endpoints and
// response shapes of the real one that safemodels relies on (see
// sign/hub_pin.ts): revision → commit, the recursive tree listing (paged by
// a Link header, LFS entries with `lfs.oid` = SHA-256), and resolve (a
// non-LFS file: 200 with the git blob id as ETag; an LFS file: 302 to a
// "CDN" path with X-Linked-Etag and X-Linked-Size). Every request is logged,
// so tests can show that no weight byte moved.
import { createHash } from "node:crypto";

export interface HubFile {
  bytes: Uint8Array;
  lfs: boolean;
}

export interface LoopbackHub {
  url: string;
  /** Every request: `METHOD path?query`. */
  log: string[];
  /** Adds (or moves `revision` of) a model; returns the commit. */
  add(repo: string, files: Record<string, Uint8Array>, options?: {
    revision?: string;
    /** Files of this size and more go to LFS. @default {1024} */
    lfsFrom?: number;
  }): string;
  /** Replaces an answer: `(request) => Response | undefined` (undefined: the normal answer). */
  override: ((req: Request) => Response | undefined | Promise<Response | undefined>) | undefined;
  /** Tree entries per page. */
  pageSize: number;
  close(): Promise<void>;
}

const sha256 = (b: Uint8Array) => createHash("sha256").update(b).digest("hex");
const gitBlob = (b: Uint8Array) =>
  createHash("sha1").update(`blob ${b.byteLength}\0`).update(b).digest("hex");

export function startLoopbackHub(): LoopbackHub {
  const refs = new Map<string, Map<string, string>>(); // repo → revision → commit
  const commits = new Map<string, Map<string, HubFile>>(); // `${repo}@${commit}` → files
  const blobs = new Map<string, Uint8Array>(); // sha256 → bytes (the "CDN")
  const log: string[] = [];
  const hub: LoopbackHub = {
    url: "",
    log,
    override: undefined,
    pageSize: 1000,
    add(repo, files, options = {}) {
      const lfsFrom = options.lfsFrom ?? 1024;
      const listing = new Map<string, HubFile>();
      const h = createHash("sha1").update(repo);
      for (const [path, bytes] of Object.entries(files).sort(([a], [b]) => (a < b ? -1 : 1))) {
        const lfs = bytes.byteLength >= lfsFrom;
        listing.set(path, { bytes, lfs });
        if (lfs) blobs.set(sha256(bytes), bytes);
        h.update(path).update(bytes);
      }
      const commit = h.digest("hex");
      commits.set(`${repo}@${commit}`, listing);
      if (!refs.has(repo)) refs.set(repo, new Map());
      refs.get(repo)!.set(options.revision ?? "main", commit);
      refs.get(repo)!.set(commit, commit);
      return commit;
    },
    close: () => server.shutdown(),
  };
  const notFound = (code: string) =>
    new Response(JSON.stringify({ error: code }), {
      status: 404,
      headers: { "x-error-code": code, "content-type": "application/json" },
    });
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, async (req) => {
    const url = new URL(req.url);
    log.push(`${req.method} ${url.pathname}${url.search}`);
    const replaced = await hub.override?.(req);
    if (replaced) return replaced;
    let m = /^\/api\/models\/([^/]+\/[^/]+)\/revision\/([^/]+)$/.exec(url.pathname);
    if (m) {
      const repo = m[1]!;
      const commit = refs.get(repo)?.get(decodeURIComponent(m[2]!));
      if (!refs.has(repo)) return notFound("RepoNotFound");
      if (!commit) return notFound("RevisionNotFound");
      const files = commits.get(`${repo}@${commit}`)!;
      return Response.json({
        _id: "0".repeat(24),
        id: repo,
        sha: commit,
        private: false,
        siblings: [...files.keys()].map((rfilename) => ({ rfilename })),
      });
    }
    m = /^\/api\/models\/([^/]+\/[^/]+)\/tree\/([^/]+)$/.exec(url.pathname);
    if (m) {
      const repo = m[1]!;
      const commit = refs.get(repo)?.get(decodeURIComponent(m[2]!));
      if (!commit) return notFound(refs.has(repo) ? "RevisionNotFound" : "RepoNotFound");
      const files = commits.get(`${repo}@${commit}`)!;
      // Directories too, as the hub lists them.
      const entries: Record<string, unknown>[] = [];
      const dirs = new Set<string>();
      for (const [path, f] of files) {
        const parts = path.split("/");
        for (let i = 1; i < parts.length; i++) {
          const d = parts.slice(0, i).join("/");
          if (!dirs.has(d)) {
            dirs.add(d);
            entries.push({
              type: "directory",
              oid: gitBlob(new TextEncoder().encode(d)),
              size: 0,
              path: d,
            });
          }
        }
        entries.push({
          type: "file",
          oid: f.lfs
            ? gitBlob(new TextEncoder().encode(`oid sha256:${sha256(f.bytes)}`))
            : gitBlob(f.bytes),
          size: f.bytes.byteLength,
          path,
          ...(f.lfs
            ? { lfs: { oid: sha256(f.bytes), size: f.bytes.byteLength, pointerSize: 134 } }
            : {}),
        });
      }
      const cursor = Number(url.searchParams.get("cursor") ?? 0);
      const page = entries.slice(cursor, cursor + hub.pageSize);
      const headers: Record<string, string> = { "content-type": "application/json" };
      if (cursor + hub.pageSize < entries.length) {
        const next = new URL(url);
        next.searchParams.set("cursor", String(cursor + hub.pageSize));
        headers.link = `<${next.href}>; rel="next"`;
      }
      return new Response(JSON.stringify(page), { headers });
    }
    m = /^\/([^/]+\/[^/]+)\/resolve\/([^/]+)\/(.+)$/.exec(url.pathname);
    if (m) {
      const repo = m[1]!;
      const commit = refs.get(repo)?.get(decodeURIComponent(m[2]!));
      if (!commit) return notFound(refs.has(repo) ? "RevisionNotFound" : "RepoNotFound");
      const path = m[3]!.split("/").map(decodeURIComponent).join("/");
      const f = commits.get(`${repo}@${commit}`)!.get(path);
      if (!f) {
        return new Response("entry not found", {
          status: 404,
          headers: { "x-error-code": "EntryNotFound", "x-repo-commit": commit },
        });
      }
      if (f.lfs) {
        const oid = sha256(f.bytes);
        return new Response(`Found. Redirecting to /cdn/${oid}`, {
          status: 302,
          headers: {
            location: new URL(`/cdn/${oid}`, url).href,
            "x-repo-commit": commit,
            "x-linked-etag": `"${oid}"`,
            "x-linked-size": String(f.bytes.byteLength),
          },
        });
      }
      return new Response(req.method === "HEAD" ? null : f.bytes as Uint8Array<ArrayBuffer>, {
        headers: {
          etag: `"${gitBlob(f.bytes)}"`,
          "x-repo-commit": commit,
          "content-length": String(f.bytes.byteLength),
        },
      });
    }
    m = /^\/cdn\/([0-9a-f]{64})$/.exec(url.pathname);
    if (m && blobs.has(m[1]!)) {
      const bytes = blobs.get(m[1]!)!;
      return new Response(req.method === "HEAD" ? null : bytes as Uint8Array<ArrayBuffer>, {
        headers: { "content-length": String(bytes.byteLength) },
      });
    }
    return new Response("not found", { status: 404 });
  });
  hub.url = `http://127.0.0.1:${server.addr.port}`;
  return hub;
}
