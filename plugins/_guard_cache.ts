// The verifying env.customCache: it wraps the cache transformers.js would
// have used (its custom cache, the Web Cache API or its file cache), stores
// only verified files, re-checks every hit, drops a tampered entry, and
// hands weights over as verified private copies (or buffers).
import { sha256Hex } from "../hash/_digest.ts";
import type { GuardCore } from "./_guard_core.ts";
import type { Handle, PrivateCopy } from "./_guard_copies.ts";
import {
  asBody,
  chunksOf,
  collect,
  isUrl,
  MAX_TEXT_FILE,
  openBody,
  readHashed,
  sizeOf,
  storedResponse,
  streamChunks,
  VerifiedResponse,
} from "./_guard_io.ts";
import {
  type FileRef,
  type GuardFiles,
  isWeightFile,
  type Store,
  type TransformersEnv,
} from "./_guard_types.ts";
import { TAG_HEADER } from "./_cache_tags.ts";
import { filePath } from "./_guard_locate.ts";

type CacheLike = {
  match(key: string): Promise<unknown>;
  put(key: string, response: Response): Promise<unknown>;
  delete?(key: string): Promise<unknown>;
};

/**
 * A cache as a Store. `tagging`: verification tags are written and read
 * (only in the Web Cache the guard opens itself: an app's custom cache may be
 * stored where others can swap bodies under genuine tags).
 */
function cacheStore(
  open: () => Promise<CacheLike>,
  files: GuardFiles | undefined,
  tagging = false,
  busy: Map<string, number> = new Map(),
): Store {
  let cache: Promise<CacheLike> | undefined;
  const get = () => (cache ??= open());
  const tags = new WeakMap<ReadableStream<Uint8Array>, string>();
  // Marks a key while the guard calls the cache with it: an app cache that
  // calls the guard's own cache back (a wrapper of env.customCache) is
  // answered "not cached" there instead of looping (see verifyingCache).
  const during = async <T>(key: string, f: () => Promise<T>): Promise<T> => {
    busy.set(key, (busy.get(key) ?? 0) + 1);
    try {
      return await f();
    } finally {
      const n = busy.get(key)! - 1;
      if (n === 0) busy.delete(key);
      else busy.set(key, n);
    }
  };
  return {
    open: async (key) => {
      const hit = await during(key, async () => (await get()).match(key));
      const body = await openBody(hit, files);
      const tag = tagging
        ? (hit as { headers?: Headers } | undefined)?.headers?.get?.(TAG_HEADER)
        : undefined;
      if (body && tag) tags.set(body, tag);
      return body;
    },
    ...(tagging ? { tagOf: (body: ReadableStream<Uint8Array>) => tags.get(body) } : {}),
    put: async (key, _ref, data, type, tag) => {
      const response = storedResponse(data, type, files, tagging ? tag : undefined);
      await during(key, async () => (await get()).put(key, response));
    },
    delete: async (key) => {
      await during(key, async () => (await get()).delete?.(key));
    },
  };
}

/**
 * The cache transformers.js would use now (read at each call, so `env` may be
 * changed after installing): the custom cache it had, the Web Cache API or
 * its file cache.
 */
export function pickStore(
  env: TransformersEnv,
  custom: { use: boolean; cache: unknown },
  opened: Map<string, Store>,
  files: GuardFiles | undefined,
  busy?: Map<string, number>,
): Store | undefined {
  if (custom.use && custom.cache) {
    const c = custom.cache as CacheLike;
    return cacheStore(() => Promise.resolve(c), files, false, busy);
  }
  if (env.useBrowserCache && typeof caches !== "undefined") {
    const name = env.cacheKey;
    let s = opened.get(`web:${name}`);
    if (!s) {
      s = cacheStore(() => caches.open(name) as Promise<CacheLike>, files, true);
      opened.set(`web:${name}`, s);
    }
    return s;
  }
  if (env.useFSCache && files) return files.fileStore(env);
  return undefined;
}

/**
 * Puts verified weights in transformers.js' cache, tagged with their digest
 * when tags are on (browsers, `verifiedStore`) and evidence vouched for them.
 */
async function putVerified(
  core: GuardCore,
  store: Store,
  key: string,
  ref: FileRef,
  handle: Handle,
  copy: PrivateCopy,
  type = "application/octet-stream",
): Promise<void> {
  const files = core.platform.files;
  const data = typeof handle === "string"
    ? { path: handle, size: (await files!.fileSize(handle)) ?? 0 }
    : handle;
  const size = data instanceof Uint8Array ? data.byteLength : data.size;
  const tags = copy.verdict.evidence !== "none" && store.tagOf ? await core.tags : undefined;
  const tag = await tags?.tag(key, copy.verdict.digest, size);
  await store.put(key, ref, data, type, tag).catch((e) =>
    console.warn(`safemodels: cannot cache ${key}: ${e}`)
  );
}

/**
 * Takes in weights found in transformers.js' cache (the opened `body` of
 * `key`): decided like any read (on its tag, browsers with verifiedStore),
 * ready for onnxruntime; `undefined`, with the entry dropped, when refused
 * (transformers.js then fetches the file again).
 */
export async function admitCached(
  core: GuardCore,
  store: Store,
  key: string,
  ref: FileRef,
  body: ReadableStream<Uint8Array>,
): Promise<{ handle: Handle; copy: PrivateCopy } | undefined> {
  // Browsers (verifiedStore): a tag the guard made vouches for the digest
  // (in the Web Cache the guard opens itself only).
  const tags = store.tagOf ? await core.tags : undefined;
  const tagged = tags && await tags.read(key, store.tagOf?.(body));
  const { handle, copy } = await core.copies.admit(
    ref,
    streamChunks(body),
    tagged?.size,
    undefined,
    tagged,
  );
  if (!core.decisions.allowed(copy.verdict)) {
    // A tampered cache entry is dropped: transformers.js fetches the file again.
    await store.delete(key, ref).catch(() => {});
    return undefined;
  }
  // Verified by hashing, untagged: tagged now, so the next load is warm.
  if (tags && !tagged && copy.verdict.ok && copy.verdict.evidence !== "none") {
    await putVerified(core, store, key, ref, handle, copy);
  }
  await core.copies.finishOnnx(handle, copy);
  return { handle, copy };
}

/**
 * A local model file served as a cache hit under its hub key: JSON files
 * read, hashed and decided; weights only when the verified store kept a
 * copy of them, answered first with a marker (a presence check, such as
 * `is_cached`, asks no more) and admitted when transformers.js asks the same
 * key again for the path (see `verifyingCache`). `undefined` otherwise
 * (weights not kept, a file that cannot be read, a JSON file refused):
 * transformers.js then reads the file through the guarded fetch as before,
 * which copies and hashes weights and fails a refused or unreadable file.
 */
async function servedLocally(
  core: GuardCore,
  key: string,
  local: { path: string; ref: FileRef },
  asked: Map<string, { path: string; ref: FileRef; key: string }>,
): Promise<Response | string | undefined> {
  const files = core.platform.files!;
  const { path, ref } = local;
  if (isWeightFile(ref.file)) {
    if (!await core.copies.kept(ref, path)) return undefined;
    const entry = { ...local, key };
    const k = `${ref.model.name}\0${ref.file}`;
    asked.set(k, entry);
    setTimeout(() => asked.get(k) === entry && asked.delete(k), 0);
    // Never opened: the path is asked for at once, and the gate refuses this.
    return files.markerPath();
  }
  const size = await files.fileSize(path);
  // Over the bound: the fetch reads it and fails with the error that says so.
  if (size === undefined || size > MAX_TEXT_FILE) return undefined;
  const got = await core.decisions.model(ref.model).track((async () => {
    try {
      // Buffers of the file's measured size (not the weights' 4 MiB blocks).
      const read = await readHashed(
        streamChunks(files.fileBody(path, size)),
        size,
        MAX_TEXT_FILE,
      );
      return { v: await core.decisions.check(ref, read.digest, read.bytes), bytes: read.bytes };
    } catch {
      return undefined;
    }
  })());
  if (!got || !core.decisions.allowed(got.v)) return undefined;
  return new Response(asBody(got.bytes), {
    headers: { "content-length": String(got.bytes.byteLength) },
  });
}

/** Local files waiting for their hub key's `match` (see verifyingCache). */
const MAX_PENDING = 256;

/**
 * The cache the guard puts in `env.customCache`; `onUse` runs first at each
 * call (transformers.js 3: the guard's fetch hook is put back if replaced)
 * and says whether the guard is still installed: once it is not (an app's
 * wrapper may still hold this cache), the cache holds nothing.
 */
export function verifyingCache(
  core: GuardCore,
  onUse: () => boolean = () => true,
  busy: Map<string, number> = new Map(),
): {
  match(key: string): Promise<Response | string | undefined>;
  put(key: string, response: Response): Promise<void>;
  delete(key: string): Promise<boolean>;
} {
  const { locator, decisions, copies } = core;
  const files = core.platform.files;
  const pending = new Map<string, { path: string; ref: FileRef }>();
  // Kept weights answered under a hub key, waiting for transformers.js' ask
  // for their path, which comes at once (before any other lookup of the file).
  const asked = new Map<string, { path: string; ref: FileRef; key: string }>();
  // Where transformers.js 4 would read the local file itself next (its file
  // reads are the guard's to make, local models are allowed).
  const servesLocals = () =>
    files !== undefined && core.readLocalsDirectly && !core.legacy &&
    core.env.allowLocalModels !== false;
  // transformers.js' local path for a hub file: <localModelPath>/<model id>/<file>.
  const localFor = (ref: FileRef) => {
    const base = core.env.localModelPath;
    if (!files || !base || isUrl(base)) return undefined;
    return files.resolve(
      `${/^file:/i.test(base) ? filePath(base) : base}/${ref.model.name}/${ref.file}`,
    );
  };
  return {
    async match(key: string): Promise<Response | string | undefined> {
      // Asked back by the app's cache while the guard asks it: not cached here.
      if (!onUse() || busy.has(key)) return undefined;
      const store = core.store();
      const ref = locator.locate(key);
      if (!ref) {
        const body = isUrl(key) ? await store?.open(key, undefined) : undefined;
        return body && new Response(body);
      }
      // Local answers wait under the model's name and file, which the local
      // path and the hub key share.
      const fileKey = `${ref.model.name}\0${ref.file}`;
      if (!isUrl(key)) {
        // transformers.js 4 asks the cache for a file's local path, then its
        // hub key, and only then reads the local file. A local file that is
        // there waits for the hub key's answer: when the cache has nothing
        // under that key either, the local file is served from here as the
        // hit (see servedLocally: JSON read once and checked, weights only
        // when the verified store kept them) instead of going on to a fetch
        // and a put; what transformers.js would read is unchanged.
        // A new lookup of the file: an answer no one asked the path of is void.
        asked.delete(fileKey);
        // A model's evidence is read from the first sight of a file of it.
        if (files !== undefined && await files.fileSize(key) !== undefined) {
          if (ref.model.root !== undefined) decisions.prepare(ref.model);
          if (servesLocals()) {
            const entry = { path: key, ref };
            if (pending.size >= MAX_PENDING) pending.delete(pending.keys().next().value!);
            pending.set(fileKey, entry);
            // Only for the hub key asked next, in the same turn of the event
            // loop (transformers.js asks it at once): never a later load's.
            setTimeout(() => pending.get(fileKey) === entry && pending.delete(fileKey), 0);
          }
        }
      }
      const waiting = isUrl(key) ? pending.get(fileKey) : undefined;
      if (waiting) pending.delete(fileKey);
      // The local file transformers.js would read for this hub key now.
      const local = waiting && servesLocals() && localFor(ref) === files!.resolve(waiting.path)
        ? waiting
        : undefined;
      if (isWeightFile(ref.file)) {
        // Weights go to transformers.js as the path of their verified private
        // copy (or as the verified bytes), which it hands to onnxruntime
        // through the gate.
        const fresh = copies.take(key);
        if (fresh !== undefined) return copies.served(fresh.handle);
        // The path of local weights answered under this hub key just now:
        // admitted now (the warm path; copied and hashed if the store's copy
        // no longer serves).
        const answered = asked.get(fileKey);
        if (answered) asked.delete(fileKey);
        if (answered?.key === key) {
          const size = await files!.fileSize(answered.path);
          const { handle, copy } = await copies.admit(
            answered.ref,
            await files!.fileChunks(answered.path),
            size,
            answered.path,
          );
          await copies.finishOnnx(handle, copy);
          return copies.served(handle);
        }
        // Other local weights come through fetch and put; remote ones may be
        // cached (transformers.js 3: served by the guarded fetch, see
        // _guard_fetch.ts).
        if (!isUrl(key) || core.legacy) return undefined;
        const body = await store?.open(key, ref);
        if (store === undefined || body === undefined) {
          return local && await servedLocally(core, key, local, asked);
        }
        const hit = await admitCached(core, store, key, ref, body);
        if (hit === undefined) return undefined;
        copies.remember(key, hit.handle, hit.copy);
        return copies.served(hit.handle);
      }
      if (!isUrl(key)) return undefined;
      const body = await store?.open(key, ref);
      if (store === undefined || body === undefined) {
        return local && await servedLocally(core, key, local, asked);
      }
      let bytes: Uint8Array;
      try {
        bytes = await collect(body);
      } catch {
        // An entry over the bound is not served: fetched (and checked) again.
        await store.delete(key, ref).catch(() => {});
        return undefined;
      }
      const v = await decisions.check(ref, `sha256:${await sha256Hex(bytes)}`, bytes);
      if (!decisions.allowed(v)) {
        await store.delete(key, ref).catch(() => {});
        return undefined;
      }
      return new Response(asBody(bytes), {
        headers: { "content-length": String(bytes.byteLength) },
      });
    },
    async put(key: string, response: Response): Promise<void> {
      if (!onUse() || busy.has(key)) return;
      const store = core.store();
      const ref = locator.locate(key);
      const type = response.headers.get("content-type") ?? "application/octet-stream";
      if (!ref) {
        const bytes = new Uint8Array(await response.arrayBuffer());
        if (isUrl(key)) await store?.put(key, undefined, bytes, type);
        return;
      }
      if (isWeightFile(ref.file)) {
        // One pass: each chunk is hashed and kept (private copy or buffer) as it
        // arrives; weights the guarded fetch already took in are not read again.
        const early = copies.take(key, "fetched");
        // Deno/Node pass on the guarded fetch's own response and ask `match`
        // next; transformers.js' web build passes a copy and asks no more.
        // transformers.js 3 asks `match` again for the path (Node's file cache on).
        const askedAgain = !early || response instanceof VerifiedResponse || core.legacy;
        if (early) await response.body?.cancel();
        const { handle, copy } = early ??
          await copies.admit(
            ref,
            await chunksOf(core, response),
            sizeOf(response),
            core.localBodies.get(response),
          );
        // Only verified remote files are kept; local files are read where they are.
        if (copy.verdict.ok && !copy.cached && isUrl(key) && store) {
          await putVerified(core, store, key, ref, handle, copy, type);
        }
        await copies.finishOnnx(handle, copy);
        if (askedAgain) copies.remember(key, handle, copy);
        return;
      }
      // Decided again (for a local file read by the guarded fetch, the same
      // bytes get this load's verdict again without deciding anew).
      const bytes = new Uint8Array(await response.arrayBuffer());
      const v = await decisions.check(ref, `sha256:${await sha256Hex(bytes)}`, bytes);
      if (!decisions.allowed(v)) throw v.error;
      if (v.ok && isUrl(key) && store) {
        await store.put(key, ref, bytes, type).catch((e) =>
          console.warn(`safemodels: cannot cache ${key}: ${e}`)
        );
      }
    },
    async delete(key: string): Promise<boolean> {
      if (!onUse() || busy.has(key)) return true;
      const store = core.store();
      const ref = locator.locate(key);
      if (ref) copies.take(key);
      await store?.delete(key, ref);
      return true;
    },
  };
}
