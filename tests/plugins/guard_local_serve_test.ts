// Local model files served as the guard's cache answer (transformers.js 4
// asks its cache for a file's local path, then its hub key, and only then
// reads the local file): the guard answers the hub key with the local file,
// read once and checked (weights only when a verified store kept them),
// only when transformers.js would read that file next: the hub key asked at
// once, for that very file; the cache's own entry under the hub key still
// comes first, local models turned off stay off, a refused file is still
// refused, and presence checks answer as unguarded.
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { relative } from "node:path";
import * as transformers from "@huggingface/transformers";
import { HashMismatch, keySigner, PolicyError, signModel } from "../../sign/mod.ts";
import {
  assertClose,
  assertRefused,
  embed,
  env,
  EXPECTED,
  filesOnly,
  flip,
  guarded,
  KEY,
  local,
  opts,
  resetEnv,
  signedCopy,
  test,
} from "./_guard_harness.ts";

type Cache = {
  match(key: string): Promise<Response | string | undefined>;
  put(key: string, r: Response): Promise<void>;
};
const cacheOf = () => env.customCache as unknown as Cache;
const hubKey = (file: string) => `${env.remoteHost}tiny-bert/resolve/main/${file}`;
const { ModelRegistry } = transformers as unknown as {
  ModelRegistry: {
    is_cached(id: string): Promise<boolean>;
    get_available_dtypes(id: string): Promise<string[]>;
  };
};

/**
 * A signed tiny-bert whose weights a verified store kept (one guarded load,
 * of files unchanged for 2 s: see the warm start tests), as the local model.
 */
async function withKeptModel(
  fn: (dir: string, store: string) => Promise<void>,
): Promise<void> {
  const { root, dir } = await signedCopy();
  const store = `${root}/store`;
  try {
    await new Promise((r) => setTimeout(r, 2100));
    local(root);
    await guarded({ verifiedStore: store }, async () => {
      assertClose(await embed("tiny-bert"), EXPECTED);
    });
    local(root);
    await fn(dir, store);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
}

test(
  "a local file is the cache's answer under its hub key, right after its local key was asked",
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
        // Only the hub key asked at once: not one asked in a later turn.
        assert.equal(await cache.match(`${dir}/tokenizer.json`), undefined);
        await new Promise((r) => setTimeout(r, 5));
        assert.equal(await cache.match(hubKey("tokenizer.json")), undefined);
        // Only while the hub key names that very file (another localModelPath: not).
        assert.equal(await cache.match(`${dir}/tokenizer.json`), undefined);
        env.localModelPath = `${root}/elsewhere`;
        assert.equal(await cache.match(hubKey("tokenizer.json")), undefined);
        env.localModelPath = root;
        // Weights without a verified store: never copied here (a presence
        // check asks the same keys); the fetch copies them.
        assert.equal(await cache.match(`${dir}/onnx/model.onnx`), undefined);
        assert.equal(await cache.match(hubKey("onnx/model.onnx")), undefined);
      });
    } finally {
      await Deno.remove(root, { recursive: true });
    }
  },
);

test(
  "weights a verified store kept are the cache's answer under their hub key (linked, not read)",
  filesOnly,
  async () => {
    await withKeptModel(async (dir, store) => {
      await guarded({ verifiedStore: store }, async () => {
        const cache = cacheOf();
        // Its configuration first (weights belong to the model root it names).
        assert.equal(await cache.match(`${dir}/config.json`), undefined);
        assert.ok(await cache.match(hubKey("config.json")) instanceof Response);
        assert.equal(await cache.match(`${dir}/onnx/model.onnx`), undefined);
        // First a marker (a presence check asks no more, and copies nothing)...
        const first = await cache.match(hubKey("onnx/model.onnx"));
        assert.equal(typeof first, "string");
        assert.ok(!existsSync(first as string), "the marker is not a file");
        // ...then, asked for the path at once, the private copy.
        const path = await cache.match(hubKey("onnx/model.onnx"));
        assert.equal(typeof path, "string");
        assert.notEqual(path, `${dir}/onnx/model.onnx`, "the original, not a private copy");
        assert.ok(existsSync(path as string));
      });
    });
  },
);

test("presence checks (is_cached, get_available_dtypes) answer as unguarded", opts, async () => {
  const { root } = await signedCopy();
  local(root);
  try {
    const plain = [
      await ModelRegistry.is_cached("tiny-bert"),
      await ModelRegistry.get_available_dtypes("tiny-bert"),
    ];
    await guarded({}, async () => {
      assert.deepEqual([
        await ModelRegistry.is_cached("tiny-bert"),
        await ModelRegistry.get_available_dtypes("tiny-bert"),
      ], plain);
    });
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

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

test(
  "a presence check with kept weights leaves nothing for the next load's hub key (is_cached, then a load)",
  filesOnly,
  async () => {
    await withKeptModel(async (dir, store) => {
      await guarded({ verifiedStore: store }, async () => {
        await ModelRegistry.is_cached("tiny-bert");
        assertClose(await embed("tiny-bert"), EXPECTED);
        // And nothing waits under the hub key once local models are off.
        await ModelRegistry.is_cached("tiny-bert");
        await new Promise((r) => setTimeout(r, 5));
        env.allowLocalModels = false;
        assert.equal(await cacheOf().match(`${dir}/onnx/model.onnx`), undefined);
        assert.equal(await cacheOf().match(hubKey("onnx/model.onnx")), undefined);
      });
    });
  },
);

test(
  "weights are never decided by a model.sig of a subfolder asked for as another model",
  opts,
  async () => {
    // tiny-bert signed, its weights then changed, and its onnx/ folder signed
    // on its own (a signature that vouches for the changed weights).
    const { root, dir } = await signedCopy();
    await flip(`${dir}/onnx/model.onnx`, 2000);
    await signModel(`${dir}/onnx`, { signer: keySigner(KEY) });
    local(root);
    try {
      await guarded({}, async () => {
        // An id naming the subfolder, which has no configuration: no model root.
        await transformers.AutoConfig.from_pretrained("tiny-bert/onnx").catch(() => {});
        await assertRefused("tiny-bert", HashMismatch, /model\.onnx/);
      });
      // With a configuration there, two model folders hold the weights: refused.
      await Deno.copyFile(`${dir}/config.json`, `${dir}/onnx/config.json`);
      await signModel(`${dir}/onnx`, { signer: keySigner(KEY) });
      local(root);
      await guarded({}, async () => {
        await transformers.AutoConfig.from_pretrained("tiny-bert/onnx");
        await assertRefused("tiny-bert", PolicyError, /more than one model folder/);
      });
    } finally {
      await Deno.remove(root, { recursive: true });
    }
  },
);

test(
  "a relative env.localModelPath ending in a slash names the same local files (answered, and loaded)",
  opts,
  async () => {
    const { root, dir } = await signedCopy();
    local(root);
    env.localModelPath = `${relative(Deno.cwd(), root)}/`;
    try {
      await guarded({}, async () => {
        // transformers.js' local path for this id under that setting.
        const asked = `${env.localModelPath}tiny-bert/config.json`;
        assert.equal(await cacheOf().match(asked), undefined);
        const hit = await cacheOf().match(hubKey("config.json"));
        assert.ok(hit instanceof Response, `expected a response, got ${hit}`);
        assert.deepEqual(
          new Uint8Array(await hit.arrayBuffer()),
          await Deno.readFile(`${dir}/config.json`),
        );
        assertClose(await embed("tiny-bert"), EXPECTED);
      });
    } finally {
      await Deno.remove(root, { recursive: true });
    }
  },
);
