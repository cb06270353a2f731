// Local model files served as the guard's cache answer (transformers.js 4
// asks its cache for a file's local path, then its hub key, and only then
// reads the local file): the guard answers the hub key with the local file,
// read once and checked, only when transformers.js would read that file
// next; the cache's own entry under the hub key still comes first, local
// models turned off stay off, and a refused file is still refused.
import assert from "node:assert/strict";
import * as transformers from "@huggingface/transformers";
import { HashMismatch } from "../../sign/mod.ts";
import {
  assertRefused,
  env,
  flip,
  guarded,
  local,
  opts,
  resetEnv,
  signedCopy,
  test,
  WEIGHTS,
} from "./_guard_harness.ts";

type Cache = {
  match(key: string): Promise<Response | string | undefined>;
  put(key: string, r: Response): Promise<void>;
};
const cacheOf = () => env.customCache as unknown as Cache;
const hubKey = (file: string) => `${env.remoteHost}tiny-bert/resolve/main/${file}`;

test(
  "a local file is the cache's answer under its hub key, after its local key was asked",
  opts,
  async () => {
    const { root, dir } = await signedCopy();
    local(root);
    try {
      await guarded({}, async () => {
        const cache = cacheOf();
        // The hub key alone (no local file asked for): nothing.
        assert.equal(await cache.match(hubKey("config.json")), undefined);
        assert.equal(await cache.match(`${dir}/config.json`), undefined);
        const hit = await cache.match(hubKey("config.json"));
        assert.ok(hit instanceof Response, `expected a response, got ${hit}`);
        assert.deepEqual(
          new Uint8Array(await hit.arrayBuffer()),
          await Deno.readFile(`${dir}/config.json`),
        );
        // Weights: a verified copy (files) or buffer (memory), asked for twice.
        assert.equal(await cache.match(`${dir}/onnx/model.onnx`), undefined);
        const weights = await cache.match(hubKey("onnx/model.onnx"));
        if (WEIGHTS === "files") {
          assert.equal(typeof weights, "string");
          assert.notEqual(weights, `${dir}/onnx/model.onnx`, "the original, not a private copy");
          assert.equal(await cache.match(hubKey("onnx/model.onnx")), weights);
        } else {
          assert.ok(weights instanceof Response);
        }
      });
    } finally {
      await Deno.remove(root, { recursive: true });
    }
  },
);

test(
  "local models turned off (env.allowLocalModels = false) are not served from the cache",
  opts,
  async () => {
    const { root, dir } = await signedCopy();
    local(root);
    env.allowLocalModels = false;
    try {
      await guarded({}, async () => {
        const cache = cacheOf();
        assert.equal(await cache.match(`${dir}/config.json`), undefined);
        assert.equal(await cache.match(hubKey("config.json")), undefined);
      });
    } finally {
      await Deno.remove(root, { recursive: true });
    }
  },
);

test(
  "a refused local file is not served from the cache, and the load is refused as before",
  opts,
  async () => {
    const { root, dir } = await signedCopy();
    await flip(`${dir}/config.json`, 5);
    local(root);
    try {
      await guarded({}, async () => {
        const cache = cacheOf();
        assert.equal(await cache.match(`${dir}/config.json`), undefined);
        assert.equal(await cache.match(hubKey("config.json")), undefined);
        await assertRefused("tiny-bert", HashMismatch, /config\.json/);
      });
    } finally {
      await Deno.remove(root, { recursive: true });
    }
  },
);

test(
  "the app cache's entry under the hub key comes before the local file, guarded as unguarded",
  opts,
  async () => {
    const { root, dir } = await signedCopy();
    local(root);
    const cachedConfig = JSON.stringify({
      ...JSON.parse(await Deno.readTextFile(`${dir}/config.json`)),
      safemodels_marker: "cached",
    });
    const entries = new Map([[hubKey("config.json"), cachedConfig]]);
    const appCache: Cache = {
      match: (key) =>
        Promise.resolve(entries.has(key) ? new Response(entries.get(key)) : undefined),
      put: () => Promise.resolve(),
    };
    const marker = async () =>
      ((await transformers.AutoConfig.from_pretrained("tiny-bert")) as unknown as {
        safemodels_marker?: string;
      }).safemodels_marker;
    env.useCustomCache = true;
    env.customCache = appCache as never;
    try {
      // transformers.js itself: the cached entry wins over the local file.
      assert.equal(await marker(), "cached");
      // Guarded (warn: the entry is not the signed model's), the same one.
      const warned = console.warn;
      console.warn = () => {};
      try {
        await guarded({ mode: "warn" }, async () => {
          const cache = cacheOf();
          assert.equal(await cache.match(`${dir}/config.json`), undefined);
          const hit = await cache.match(hubKey("config.json"));
          assert.ok(hit instanceof Response);
          assert.equal(await hit.text(), cachedConfig);
          assert.equal(await marker(), "cached");
        });
      } finally {
        console.warn = warned;
      }
    } finally {
      env.useCustomCache = false;
      env.customCache = null as never;
      resetEnv();
      await Deno.remove(root, { recursive: true });
    }
  },
);
