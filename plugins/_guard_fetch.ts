// The guarded env.fetch: every model file transformers.js fetches (from the
// hub, or a local folder while the guard turns env.useFS off) is read,
// hashed and decided before anything is handed on.
import { StreamMeasure } from "../sign/_oms_digest.ts";
import { createSha256, toHex } from "../hash/_digest.ts";
import { EvidenceError, HashMismatch, SignError } from "../sign/errors.ts";
import type { GuardCore } from "./_guard_core.ts";
import { admitCached } from "./_guard_cache.ts";
import {
  asBody,
  chunksOf,
  MAX_TEXT_FILE,
  readHashed,
  sizeOf,
  streamChunks,
  VerifiedResponse,
} from "./_guard_io.ts";
import { type FileRef, isWeightFile } from "./_guard_types.ts";
import { filePath } from "./_guard_locate.ts";

/**
 * A body that hashes what passes through it and, at its end, errors instead
 * of closing when the file is refused (a local file transformers.js reads
 * as a stream).
 */
function verifyingBody(
  core: GuardCore,
  ref: FileRef,
  source: ReadableStream<Uint8Array>,
): ReadableStream<Uint8Array> {
  const rec = core.decisions.model(ref.model);
  let reader: ReadableStreamDefaultReader<Uint8Array> | undefined;
  let hasher: Awaited<ReturnType<typeof createSha256>> | undefined;
  let others: { label: string; m: StreamMeasure }[] = [];
  let finish: (() => void) | undefined;
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      if (!reader) {
        reader = source.getReader();
        hasher = await createSha256();
        rec.track(new Promise<void>((resolve) => (finish = resolve)));
        // The model.sig may sign BLAKE2b digests or shards: measure those too.
        others = await Promise.all(
          (await core.decisions.measureFor(ref)).map(async ({ label, expected }) => ({
            label,
            m: await StreamMeasure.create(label, expected),
          })),
        );
      }
      const { value, done } = await reader.read();
      if (!done) {
        hasher!.update(value);
        for (const o of others) await o.m.update(value);
        controller.enqueue(value);
        return;
      }
      const digests = others.length === 0 ? undefined : Object.fromEntries(
        await Promise.all(others.map(async (o) => [o.label, await o.m.digest()] as const)),
      );
      const v = await core.decisions.check(
        ref,
        `sha256:${toHex(hasher!.digest())}`,
        undefined,
        digests,
      );
      finish?.();
      if (core.decisions.allowed(v)) controller.close();
      else controller.error(v.error);
    },
    async cancel(reason) {
      finish?.();
      await (reader ? reader.cancel(reason) : source.cancel(reason));
    },
  }, { highWaterMark: 0 }); // pull only when read: metadata probes never start
}

/**
 * Weights kept in memory are taken in as they are fetched (one pass), and
 * transformers.js gets a response over the verified buffer itself, which it
 * hands to onnxruntime (the gate knows it by identity). A refused file
 * becomes a marker the gate refuses: failing the response could hang
 * transformers.js.
 */
async function admitFetched(
  core: GuardCore,
  key: string,
  ref: FileRef,
  res: Response,
): Promise<Response> {
  const { handle, copy } = await core.copies.admit(ref, await chunksOf(core, res), sizeOf(res));
  core.copies.remember(key, handle, copy, "fetched");
  return new VerifiedResponse(handle as Uint8Array);
}

/**
 * transformers.js 3 cannot take weights from a custom cache's first answer
 * (it then asks the cache again under an unset key), so the guard answers
 * it "not cached" and serves the cached weights from its fetch instead:
 * checked like any cache hit, kept for the `put` and `match` that follow,
 * and never written to the cache again. A refused entry is dropped and the
 * hub asked.
 */
async function cachedWeights(
  core: GuardCore,
  url: string,
  ref: FileRef,
): Promise<Response | undefined> {
  const store = core.store();
  const body = await store?.open(url, ref).catch(() => undefined);
  if (!store || body === undefined) return undefined;
  const hit = await admitCached(core, store, url, ref, body);
  if (hit === undefined) return undefined;
  const { handle, copy } = hit;
  copy.cached = true;
  core.copies.remember(url, handle, copy, "fetched");
  return typeof handle === "string"
    ? new Response(core.platform.files!.fileBody(handle))
    : new VerifiedResponse(handle);
}

/** The SHA-256 a hub announces for an LFS file (`X-Linked-Etag`, else `ETag`), if it is one. */
function announcedSha256(headers: Headers): string | undefined {
  const raw = headers.get("x-linked-etag") ?? headers.get("etag");
  const value = raw?.replace(/^W\//, "").replace(/^"|"$/g, "").toLowerCase();
  return value !== undefined && /^[0-9a-f]{64}$/.test(value) ? value : undefined;
}

/**
 * A hub file fetched as its evidence allows, before a byte of it moves: a
 * model pinned at a hub commit is fetched at that commit (an immutable URL,
 * whatever the branch now points to), and (Deno and Node: browsers cannot
 * read a redirect's headers) a file whose SHA-256 is pinned or signed is
 * refused when the hub announces another digest for it on the redirect to
 * its storage, so a model that will be refused moves no weight bytes. The
 * bytes are still hashed and decided as they arrive.
 */
async function fetchPinned(
  core: GuardCore,
  url: string,
  ref: FileRef,
  // deno-lint-ignore no-explicit-any
  init: any,
  probe: boolean,
): Promise<Response> {
  const known = await core.decisions.expectation(ref);
  const target = known.commit !== undefined && known.commit !== ref.model.revision
    ? core.locator.atRevision(url, ref, known.commit) ?? url
    : url;
  // Metadata probes carry no bytes to check: only the URL is pinned. Browsers
  // cannot read a redirect's headers: there the bytes are checked as they come.
  if (probe || known.sha256.length === 0 || !core.platform.files) {
    return await core.originalFetch(target, init);
  }
  const first: Response = await core.originalFetch(target, { ...init, redirect: "manual" });
  const announced = announcedSha256(first.headers);
  const differs = announced !== undefined &&
    known.sha256.some((d) => d !== `sha256:${announced}`);
  if (differs) {
    await first.body?.cancel();
    const shown = `${ref.model.name}/${ref.file}`;
    const expected = known.sha256.join(",");
    const error = new HashMismatch(expected, `sha256:${announced}`, {
      code: known.pinned ? "pin-differs" : "content-changed",
      file: shown,
    });
    error.message = `Cannot load ${shown}: the hub announces SHA-256 ${announced}, but the ${
      known.pinned ? "lockfile pins" : "model's signature signs"
    } ${expected} (refused before any byte was transferred)`;
    const v = core.decisions.failure(ref, error);
    if (!core.decisions.allowed(v)) throw error;
  }
  if (first.status < 300 || first.status >= 400) return first;
  const location = first.headers.get("location");
  await first.body?.cancel();
  if (location === null) return first;
  const next = new URL(location, target);
  if (next.protocol !== "https:" && next.protocol !== "http:") {
    // As fetch's own redirect handling: never a file: or data: URL.
    throw new EvidenceError(
      "unreadable",
      `Cannot load ${ref.model.name}/${ref.file}: the hub redirects it to a ${next.protocol} URL`,
      { file: `${ref.model.name}/${ref.file}` },
    );
  }
  // Credentials stay with the hub: never sent to the storage it redirects to.
  const headers = new Headers(init?.headers);
  if (next.origin !== new URL(target).origin) headers.delete("authorization");
  return await core.originalFetch(next.href, { ...init, headers });
}

/** The fetch the guard puts in `env.fetch`. */
export function guardedFetch(core: GuardCore) {
  const { locator, decisions } = core;
  // deno-lint-ignore no-explicit-any
  return async function fetch(input: string | URL | Request, init?: any): Promise<Response> {
    const url = typeof input === "string" ? input : input instanceof URL ? input.href : input.url;
    const given = init?.headers;
    const ranged = given instanceof Headers
      ? given.has("range")
      : given !== undefined && new Headers(given).has("range");
    const probe = ranged || (init?.method ?? "GET").toUpperCase() !== "GET";
    if (/^(?:https?|blob):/i.test(url)) {
      const ref = locator.remote(url);
      if (!ref) locator.refuseUnplaced(url);
      if (ref && core.legacy && !probe && isWeightFile(ref.file)) {
        const hit = await cachedWeights(core, url, ref);
        if (hit) return hit;
      }
      const res: Response = ref
        ? await fetchPinned(core, url, ref, init, probe)
        : await core.originalFetch(input as string, init);
      // Metadata probes and errors carry no model bytes.
      if (!ref || probe || !res.ok || !res.body) return res;
      if (isWeightFile(ref.file)) {
        return core.inMemory ? await admitFetched(core, url, ref, res) : res;
      }
      // Other files are small: read, hashed and checked before the response
      // is handed on, so a refusal rejects the fetch itself with our error
      // (browsers turn an errored body into a bare "Failed to fetch").
      // Tracked from the first byte: the gate waits for it before any session.
      const rec = decisions.model(ref.model);
      const { v, bytes } = await rec.track((async () => {
        try {
          const read = await readHashed(streamChunks(res.body!), sizeOf(res), MAX_TEXT_FILE);
          return { v: await decisions.check(ref, read.digest, read.bytes), bytes: read.bytes };
        } catch (cause) {
          const shown = `${ref.model.name}/${ref.file}`;
          const error = cause instanceof SignError ? cause : new EvidenceError(
            cause instanceof RangeError ? "too-large" : "unreadable",
            `Cannot load ${shown}: ${(cause as Error)?.message ?? cause}`,
            { file: shown, cause },
          );
          return { v: decisions.failure(ref, error), bytes: undefined };
        }
      })());
      // Unread bytes cannot be handed on, not even in warn mode.
      if (!decisions.allowed(v) || bytes === undefined) throw v.error;
      return new Response(asBody(bytes), {
        status: res.status,
        statusText: res.statusText,
        headers: res.headers,
      });
    }
    // A file: URL (env.localModelPath may be one) is the local path it names.
    const path = /^file:/i.test(url) ? filePath(url) : url;
    const ref = locator.local(path);
    const files = core.platform.files;
    let res: Response;
    if (core.readLocalsDirectly) {
      const size = await files!.fileSize(path);
      if (size === undefined) return new Response(null, { status: 404, statusText: "Not Found" });
      res = new Response(files!.fileBody(path, size), {
        status: 200,
        headers: { "content-length": String(size) },
      });
      // Weights are copied by the cache's put, which reads the file itself.
      core.localBodies.set(res, path);
    } else {
      res = await core.originalFetch(input as string, init);
    }
    if (!ref || probe || !res.ok || !res.body) return res;
    if (isWeightFile(ref.file)) {
      return core.inMemory ? await admitFetched(core, url, ref, res) : res;
    }
    return new Response(verifyingBody(core, ref, res.body), {
      status: res.status,
      headers: res.headers,
    });
  };
}
