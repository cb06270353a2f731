// Verification tags (browsers, verifiedStore) are written and read only in
// the Web Cache the guard opens itself, never in an app's custom cache
// (which may live where others can swap a body under a genuine tag). The
// tags themselves are exercised in Chromium (transformers_browser_test.ts).
import assert from "node:assert/strict";
import { pickStore } from "../../plugins/_guard_cache.ts";
import { TAG_HEADER } from "../../plugins/_cache_tags.ts";
import type { TransformersEnv } from "../../plugins/_guard_types.ts";

const TAG = `v1 sha256:${"0".repeat(64)} 3 ${"A".repeat(43)}`;
const env = (over: Partial<TransformersEnv>) =>
  ({
    useBrowserCache: false,
    useFSCache: false,
    cacheKey: `safemodels-tags-${crypto.randomUUID()}`,
    ...over,
  }) as TransformersEnv;

Deno.test("tags: an app's custom cache neither stores nor reports them", async () => {
  const kept = new Map<string, Response>();
  const custom = {
    match: (k: string) => Promise.resolve(kept.get(k)?.clone()),
    put: (k: string, r: Response) => (kept.set(k, r), Promise.resolve()),
  };
  const store = pickStore(env({}), { use: true, cache: custom }, new Map(), undefined)!;
  assert.equal(store.tagOf, undefined);
  await store.put("https://hub/x.onnx", undefined, new Uint8Array([1, 2, 3]), "x", TAG);
  assert.equal(kept.get("https://hub/x.onnx")!.headers.get(TAG_HEADER), null);
  // An entry that carries one anyway (put there by anyone) is not read as tagged.
  kept.set("https://hub/y.onnx", new Response("abc", { headers: { [TAG_HEADER]: TAG } }));
  const body = await store.open("https://hub/y.onnx", undefined);
  assert.ok(body);
  await body.cancel();
});

Deno.test({
  name: "tags: the Web Cache the guard opens keeps and reports them",
  ignore: typeof caches === "undefined",
  async fn() {
    const e = env({ useBrowserCache: true });
    const store = pickStore(e, { use: false, cache: undefined }, new Map(), undefined)!;
    assert.equal(typeof store.tagOf, "function");
    try {
      await store.put("https://hub/x.onnx", undefined, new Uint8Array([1, 2, 3]), "x", TAG);
      const body = await store.open("https://hub/x.onnx", undefined);
      assert.equal(store.tagOf!(body!), TAG);
      await body!.cancel();
    } finally {
      await caches.delete(e.cacheKey);
    }
  },
});
