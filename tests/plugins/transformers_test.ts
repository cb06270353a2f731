// The transformers.js guard against real transformers.js 4.3.1 and real
// onnxruntime-node: signed tiny-bert copies load (local, remote over a
// loopback hub, cache hits); tampered, unsigned or foreign-signed copies are
// refused promptly, with our error naming the file and no onnxruntime session.
import assert from "node:assert/strict";
import * as ort from "onnxruntime-node";
import * as transformers from "@huggingface/transformers";
import { guardTransformers } from "../../plugins/transformers.ts";
import {
  EvidenceError,
  HashMismatch,
  InvalidSignature,
  keySigner,
  Lockfile,
  SignatureMissing,
  signModel,
} from "../../sign/mod.ts";
import { fixture, sha256hex } from "../_helpers.ts";
import {
  assertClose,
  assertRefused,
  embed,
  env,
  epoch,
  EXPECTED,
  FILES,
  filesOnly,
  flip,
  guarded,
  hub,
  KEY,
  lastModel,
  local,
  opts,
  policy,
  realCreate,
  resetEnv,
  sessions,
  signedCopy,
  spyCreate,
  tampered,
  test,
  WEIGHTS,
  within,
} from "./_guard_harness.ts";
import { writeTinyModel } from "../_model_gen.ts";
import { onnxLayout } from "../../hash/_onnx.ts";
import { bytesSource } from "../../hash/_source.ts";

test("a signed local model loads and embeds hello world as expected", opts, async () => {
  const { root } = await signedCopy();
  await guarded({}, async (guard) => {
    local(root);
    const before = sessions;
    assertClose(await embed("tiny-bert"), EXPECTED);
    assert.equal(sessions, before + 1);
    // onnxruntime got a private copy's path, or the verified bytes themselves.
    if (WEIGHTS === "files") {
      assert.equal(typeof lastModel, "string");
      assert.ok(!(lastModel as string).startsWith(root));
    } else {
      assert.ok(lastModel instanceof Uint8Array);
      assert.deepEqual(lastModel, await Deno.readFile(`${root}/tiny-bert/onnx/model.onnx`));
    }
    assert.deepEqual(
      guard.records.map((r) => [r.file, r.verdict, r.evidence]).sort(),
      FILES.map((f) => [f, "verified", "oms"]).sort(),
    );
    assert.equal(guard.records[0]!.signer?.kind, "key");
  });
  await Deno.remove(root, { recursive: true });
});

test("tampered, unsigned or foreign-signed local models are refused", opts, async (t) => {
  const cases: [string, (dir: string) => Promise<void>, new (...a: never[]) => Error, RegExp][] = [
    [
      "flipped byte in onnx/model.onnx",
      (d) => flip(`${d}/onnx/model.onnx`, 2000),
      HashMismatch,
      /onnx\/model\.onnx/,
    ],
    [
      "flipped byte in config.json",
      (d) => flip(`${d}/config.json`, 20),
      HashMismatch,
      /config\.json/,
    ],
    [
      "flipped byte in tokenizer.json",
      (d) => flip(`${d}/tokenizer.json`),
      HashMismatch,
      /tokenizer\.json/,
    ],
    ["missing model.sig", (d) => Deno.remove(`${d}/model.sig`), SignatureMissing, /model\.sig/],
  ];
  for (const [name, tamper, cls, names] of cases) {
    await t.step(name, async () => {
      const { root, dir } = await signedCopy();
      await tamper(dir);
      await guarded({}, async (guard) => {
        local(root);
        await assertRefused("tiny-bert", cls, names);
        assert.ok(guard.records.some((r) => r.verdict === "refused"));
      });
      await Deno.remove(root, { recursive: true });
    });
  }
  await t.step("signed with a key the policy does not trust", async () => {
    const pair = await crypto.subtle.generateKey({ name: "ECDSA", namedCurve: "P-256" }, true, [
      "sign",
      "verify",
    ]);
    const pkcs8 = new Uint8Array(await crypto.subtle.exportKey("pkcs8", pair.privateKey));
    const pem = `-----BEGIN PRIVATE KEY-----\n${
      btoa(String.fromCharCode(...pkcs8))
    }\n-----END PRIVATE KEY-----\n`;
    const { root } = await signedCopy(undefined, pem);
    await guarded({}, async () => {
      local(root);
      await assertRefused("tiny-bert", InvalidSignature, /model\.sig/);
    });
    await Deno.remove(root, { recursive: true });
  });
});

for (const cache of ["web", "file"] as const) {
  test(
    `remote models: signed loads, cache hits, tampering never cached (${cache} cache)`,
    opts,
    async () => {
      const { root, dir } = await signedCopy();
      const server = hub({ "acme/tiny-bert": dir });
      const cacheDir = await Deno.makeTempDir({ prefix: "guard-cache-" });
      await guarded({}, async (guard) => {
        env.remoteHost = server.url;
        env.allowLocalModels = false;
        env.cacheKey = `guard-test-${crypto.randomUUID()}`;
        if (cache === "file") {
          env.useBrowserCache = false;
          env.cacheDir = cacheDir;
        }
        try {
          // Tampered weights first: refused, and not cached.
          server.overrides.set("onnx/model.onnx", await tampered(`${dir}/onnx/model.onnx`));
          await assertRefused("acme/tiny-bert", HashMismatch, /onnx\/model\.onnx/);
          // The good file is then fetched (not a cached tampered copy) and loads.
          server.overrides.clear();
          server.hits.length = 0;
          assertClose(await embed("acme/tiny-bert"), EXPECTED);
          assert.ok(server.hits.includes("onnx/model.onnx"));
          // Now the hub turns bad: the verified cache serves, the hub is not asked.
          server.overrides.set("onnx/model.onnx", await tampered(`${dir}/onnx/model.onnx`));
          server.overrides.set("tokenizer.json", await tampered(`${dir}/tokenizer.json`, 100));
          server.hits.length = 0;
          await epoch();
          assertClose(await embed("acme/tiny-bert"), EXPECTED);
          assert.deepEqual(server.hits, []);
          assert.ok(guard.records.every((r) => r.model === "acme/tiny-bert"));
          if (cache === "file") {
            // A cached copy tampered on disk is dropped and fetched again.
            server.overrides.clear();
            await flip(`${cacheDir}/acme/tiny-bert/onnx/model.onnx`, 2000);
            await epoch();
            assertClose(await embed("acme/tiny-bert"), EXPECTED);
            assert.ok(
              guard.records.some((r) => r.verdict === "refused" && r.file === "onnx/model.onnx"),
            );
          }
        } finally {
          if (cache === "web") await caches.delete(env.cacheKey);
          await server.close();
        }
      });
      await Deno.remove(root, { recursive: true });
      await Deno.remove(cacheDir, { recursive: true });
    },
  );
}

test(
  "remote: a tampered tokenizer.json or config.json, or no model.sig, is refused",
  opts,
  async () => {
    const { root, dir } = await signedCopy();
    const server = hub({ "acme/tiny-bert": dir });
    await guarded({}, async () => {
      env.remoteHost = server.url;
      env.allowLocalModels = false;
      env.cacheKey = `guard-test-${crypto.randomUUID()}`;
      const fresh = async () => {
        await caches.delete(env.cacheKey);
        env.cacheKey = `guard-test-${crypto.randomUUID()}`;
      };
      try {
        server.overrides.set("tokenizer.json", await tampered(`${dir}/tokenizer.json`, 100));
        await assertRefused("acme/tiny-bert", HashMismatch, /tokenizer\.json/);
        // Each case starts with an empty cache: verified files are cached.
        await fresh();
        server.overrides.clear();
        server.overrides.set("config.json", await tampered(`${dir}/config.json`, 20));
        await assertRefused("acme/tiny-bert", HashMismatch, /config\.json/);
        server.overrides.clear();
        await Deno.rename(`${dir}/model.sig`, `${dir}/model.sig.bak`);
        await epoch(); // a new load epoch re-reads model.sig
        await fresh();
        await assertRefused("acme/tiny-bert", SignatureMissing, /model\.sig/);
      } finally {
        await caches.delete(env.cacheKey);
        await server.close();
      }
    });
    await Deno.remove(root, { recursive: true });
  },
);

// ---- external data: tiny-bert with its initializers moved to model.onnx_data ----

function varint(b: Uint8Array, p: number): [number, number] {
  let v = 0;
  let s = 0;
  for (;;) {
    const x = b[p++]!;
    v += (x & 0x7f) * 2 ** s;
    s += 7;
    if (x < 0x80) return [v, p];
  }
}

function encVarint(n: number): number[] {
  const out: number[] = [];
  while (n > 0x7f) {
    out.push((n & 0x7f) | 0x80);
    n = Math.floor(n / 128);
  }
  out.push(n);
  return out;
}

type Field = { field: number; wire: number; raw: Uint8Array; body?: Uint8Array };

function fields(b: Uint8Array): Field[] {
  const out: Field[] = [];
  let p = 0;
  while (p < b.length) {
    const start = p;
    const [tag, q] = varint(b, p);
    p = q;
    const wire = tag & 7;
    let body: Uint8Array | undefined;
    if (wire === 0) p = varint(b, p)[1];
    else if (wire === 1) p += 8;
    else if (wire === 5) p += 4;
    else {
      const [len, r] = varint(b, p);
      body = b.subarray(r, r + len);
      p = r + len;
    }
    out.push({ field: tag >>> 3, wire, raw: b.subarray(start, p), ...(body ? { body } : {}) });
  }
  return out;
}

function len(field: number, body: Uint8Array | number[]): number[] {
  return [...encVarint(field << 3 | 2), ...encVarint(body.length), ...body];
}

/** Moves every `raw_data` initializer of an ONNX model to `model.onnx_data`. */
function externalize(model: Uint8Array): { onnx: Uint8Array; data: Uint8Array } {
  const enc = new TextEncoder();
  const data: number[] = [];
  const entry = (k: string, v: string) =>
    len(13, [...len(1, enc.encode(k)), ...len(2, enc.encode(v))]);
  const out: number[] = [];
  for (const top of fields(model)) {
    if (top.field !== 7) {
      out.push(...top.raw);
      continue;
    }
    const graph: number[] = [];
    for (const g of fields(top.body!)) {
      if (g.field !== 5) {
        graph.push(...g.raw);
        continue;
      }
      const tensor: number[] = [];
      for (const f of fields(g.body!)) {
        if (f.field !== 9) {
          tensor.push(...f.raw);
          continue;
        }
        const offset = data.length;
        data.push(...f.body!);
        tensor.push(
          ...entry("location", "model.onnx_data"),
          ...entry("offset", String(offset)),
          ...entry("length", String(f.body!.length)),
          ...encVarint(14 << 3),
          1,
        );
      }
      graph.push(...len(5, tensor));
    }
    out.push(...len(7, graph));
  }
  return { onnx: Uint8Array.from(out), data: Uint8Array.from(data) };
}

async function externalCopy(): Promise<{ root: string; dir: string }> {
  return await signedCopy(async (dir) => {
    const { onnx, data } = externalize(await Deno.readFile(`${dir}/onnx/model.onnx`));
    await Deno.writeFile(`${dir}/onnx/model.onnx`, onnx);
    await Deno.writeFile(`${dir}/onnx/model.onnx_data`, data);
  });
}

test(
  "external data: verified .onnx_data loads from its private copy; tampered refused, no hang",
  opts,
  async () => {
    const { root, dir } = await externalCopy();
    await guarded({}, async (guard) => {
      local(root);
      assertClose(await embed("tiny-bert", { use_external_data_format: true }), EXPECTED);
      assert.ok(
        guard.records.some((r) => r.file === "onnx/model.onnx_data" && r.verdict === "verified"),
      );
      await flip(`${dir}/onnx/model.onnx_data`, 40);
      await epoch();
      await assertRefused("tiny-bert", HashMismatch, /onnx\/model\.onnx_data/, {
        use_external_data_format: true,
      });
    });
    await Deno.remove(root, { recursive: true });
  },
);

test(
  "external data the loader did not fetch is never read from the working directory",
  opts,
  async () => {
    const { root, dir } = await externalCopy();
    const cwd = Deno.cwd();
    const planted = await Deno.makeTempDir({ prefix: "guard-cwd-" });
    // What onnxruntime opens (relative to the working directory) when a model
    // arrives as a buffer without its external data.
    await Deno.copyFile(`${dir}/onnx/model.onnx_data`, `${planted}/model.onnx_data`);
    Deno.chdir(planted);
    try {
      await guarded({}, async () => {
        local(root);
        await assertRefused("tiny-bert", SignatureMissing, /external data "model\.onnx_data"/);
      });
    } finally {
      Deno.chdir(cwd);
      await Deno.remove(planted, { recursive: true });
      await Deno.remove(root, { recursive: true });
    }
  },
);

test(
  "onnxruntime opens only the verified private copy: changing the original after it was hashed changes nothing",
  filesOnly,
  async () => {
    const { root, dir } = await signedCopy();
    const onnx = `${dir}/onnx/model.onnx`;
    // The same model with its biggest initializer overwritten: loads, but embeds differently.
    const swapped = await Deno.readFile(onnx);
    const { initializers } = await onnxLayout(bytesSource(swapped));
    const raw = initializers.map((r) => r.raw!).filter(Boolean)
      .sort((a, b) => b.length - a.length)[0]!;
    swapped.fill(0x3f, raw.offset, raw.offset + raw.length);
    let path: unknown;
    await guarded({
      onReport: (r) => {
        if (r.file === "onnx/model.onnx" && r.verdict === "verified") {
          Deno.writeFileSync(onnx, swapped);
        }
      },
    }, async () => {
      local(root);
      assertClose(await embed("tiny-bert"), EXPECTED);
      path = lastModel;
      assert.equal(typeof path, "string");
      assert.ok(!(path as string).startsWith(root), `onnxruntime opened ${path}`);
      assert.ok((await Deno.stat(path as string)).isFile);
    });
    // uninstall() removed the copy; the original really was swapped.
    await assert.rejects(Deno.stat(path as string), Deno.errors.NotFound);
    assert.deepEqual(await Deno.readFile(onnx), swapped);
    local(root);
    const unguarded = await embed("tiny-bert");
    resetEnv();
    assert.ok(unguarded.some((v, i) => Math.abs(v - EXPECTED[i]!) > 1e-3));
    await Deno.remove(root, { recursive: true });
  },
);

test(
  "inline weights reach onnxruntime as a small graph mapping the verified copy, with the same output",
  filesOnly,
  async () => {
    const root = await Deno.makeTempDir({ prefix: "guard-" });
    await writeTinyModel(`${root}/big`, { extraRows: 1 << 16, seed: 5 }); // 2 MiB inline
    await signModel(`${root}/big`, { signer: keySigner(KEY) });
    local(root);
    const want = await embed("big");
    const unguardedPath = lastModel;
    resetEnv();
    await guarded({}, async (guard) => {
      local(root);
      assert.deepEqual(await embed("big"), want);
      assert.notEqual(lastModel, unguardedPath);
      assert.ok((await Deno.stat(lastModel as string)).size < 2048);
      assert.deepEqual(
        guard.records.filter((r) => r.file === "onnx/model.onnx").map((r) => r.verdict),
        ["verified"],
      );
    });
    await Deno.remove(root, { recursive: true });
  },
);

test(
  "a work folder that cannot be used refuses the load with an error naming it",
  filesOnly,
  async () => {
    const { root } = await signedCopy();
    await guarded({ workDir: `${root}/no/such/folder` }, async () => {
      local(root);
      const error = await assertRefused("tiny-bert", EvidenceError, /onnx\/model\.onnx/);
      assert.match(error.message, /work folder: .*no\/such\/folder/);
      assert.equal((error as EvidenceError).code, "unreadable");
    });
    await Deno.remove(root, { recursive: true });
  },
);

test("remote: a JSON file larger than 256 MiB is refused without holding it", opts, async () => {
  const { root, dir } = await signedCopy();
  const server = hub({ "acme/tiny-bert": dir });
  // An endless tokenizer.json: the guard stops reading past its limit.
  let sent = 0;
  server.streams.set("tokenizer.json", () =>
    new ReadableStream<Uint8Array>({
      pull(controller) {
        sent += 4 << 20;
        controller.enqueue(new Uint8Array(4 << 20).fill(0x20));
      },
    }));
  await guarded({}, async () => {
    env.remoteHost = server.url;
    env.allowLocalModels = false;
    env.cacheKey = `guard-test-${crypto.randomUUID()}`;
    try {
      const error = await assertRefused("acme/tiny-bert", EvidenceError, /tokenizer\.json/);
      assert.match(error.message, /larger than/);
      assert.equal((error as EvidenceError).code, "too-large");
      assert.ok(sent < 300 << 20, `read ${sent} bytes`);
    } finally {
      await caches.delete(env.cacheKey);
      await server.close();
    }
  });
  await Deno.remove(root, { recursive: true });
});

test("warn mode loads a tampered model and reports the failure once", opts, async () => {
  const { root, dir } = await signedCopy();
  await flip(`${dir}/onnx/model.onnx`, 2000);
  const warnings: string[] = [];
  const warn = console.warn;
  console.warn = (...a: unknown[]) => warnings.push(a.join(" "));
  const reports: string[] = [];
  try {
    await guarded({ mode: "warn", onReport: (r) => reports.push(r.verdict) }, async (guard) => {
      local(root);
      const before = sessions;
      await embed("tiny-bert");
      await embed("tiny-bert");
      assert.equal(sessions, before + 2);
      const bad = guard.records.filter((r) => r.verdict === "warned");
      assert.equal(bad.length, 1);
      assert.equal(bad[0]!.file, "onnx/model.onnx");
      assert.match(bad[0]!.reason!, /changed since it was signed/);
      assert.equal(warnings.filter((w) => w.includes("onnx/model.onnx")).length, 1);
      assert.equal(reports.filter((v) => v === "warned").length, 1);
    });
  } finally {
    console.warn = warn;
    await Deno.remove(root, { recursive: true });
  }
});

test(
  "the gate refuses other models but lets transformers.js tensor ops (weightless graphs) through",
  opts,
  async () => {
    await guarded({}, async () => {
      const model = await Deno.readFile(fixture("tiny-bert/onnx/model.onnx"));
      await assert.rejects(ort.InferenceSession.create(model), SignatureMissing);
      await assert.rejects(
        ort.InferenceSession.create(fixture("tiny-bert/onnx/model.onnx")),
        SignatureMissing,
      );
      const a = new transformers.Tensor("float32", new Float32Array([1, 2, 3, 4]), [2, 2]);
      const product = await transformers.matmul(a, a);
      assert.deepEqual(Array.from(product.data as Float32Array), [7, 10, 15, 22]);
      // Tensor ops are recognised by what they are (tiny, no tensor at all),
      // not by a list of one transformers.js version's graphs: any weightless
      // graph passes, the smallest graph with weights does not.
      const { opGraph } = await import("../_model_gen.ts");
      const op = await ort.InferenceSession.create(opGraph());
      const y = await op.run({ x: new ort.Tensor("float32", new Float32Array([0, 0, 0, 0]), [4]) });
      assert.deepEqual(Array.from(y.y!.data as Float32Array), [0, 0, 0, 0]);
      await op.release();
      await assert.rejects(ort.InferenceSession.create(opGraph(true)), SignatureMissing);
      // Graphs under 4 KiB that carry weights without an initializer (ai.onnx.ml
      // attributes, TfIdfVectorizer weights, a local function, constants,
      // subgraph initializers; tests/testdata/onnx/gate): onnxruntime runs
      // each, the gate refuses each.
      const gate = new URL("../testdata/onnx/gate/", import.meta.url).pathname;
      for (
        const name of [
          "linear_regressor",
          "scaler",
          "tfidf",
          "function_regressor",
          "constant_floats",
          "if_initializers",
        ]
      ) {
        const bytes = await Deno.readFile(`${gate}${name}.onnx`);
        const runs = await (realCreate as (b: Uint8Array) => Promise<{ release(): Promise<void> }>)
          .call(ort.InferenceSession, bytes.slice());
        await runs.release();
        await assert.rejects(ort.InferenceSession.create(bytes), SignatureMissing, name);
      }
      // Over the size bound: refused even without tensors.
      const padded = new Uint8Array(5000);
      padded.set(opGraph());
      await assert.rejects(ort.InferenceSession.create(padded), SignatureMissing);
    });
  },
);

test("uninstall() restores transformers.js and onnxruntime exactly", opts, () => {
  const before = {
    fetch: env.fetch,
    useFS: env.useFS,
    useCustomCache: env.useCustomCache,
    customCache: env.customCache,
  };
  const guard = guardTransformers(transformers, { policy });
  assert.notEqual(env.fetch, before.fetch);
  assert.notEqual(ort.InferenceSession.create, spyCreate);
  assert.throws(() => guardTransformers(transformers, { policy }), TypeError);
  guard.uninstall();
  assert.equal(env.fetch, before.fetch);
  assert.equal(env.useFS, before.useFS);
  assert.equal(env.useCustomCache, before.useCustomCache);
  assert.equal(env.customCache, before.customCache);
  assert.equal(ort.InferenceSession.create, spyCreate);
  // And it can be installed again.
  guardTransformers(env, { policy }).uninstall();
  assert.equal(env.fetch, before.fetch);
});

/** An env shaped as transformers.js 3's: no env.fetch, its onnxruntime's env as backends.onnx. */
function legacyEnv(onnx: unknown = ort.env) {
  return {
    version: "3.8.1",
    useFS: true,
    useCustomCache: false,
    customCache: null,
    useBrowserCache: false,
    useFSCache: true,
    cacheDir: null,
    remoteHost: "https://huggingface.co/",
    remotePathTemplate: "{model}/resolve/{revision}/",
    allowRemoteModels: false,
    localModelPath: "/models/",
    backends: { onnx },
  };
}

test(
  "transformers.js 3 (no env.fetch): the global fetch is wrapped for its own requests only, and restored",
  opts,
  async () => {
    const before = globalThis.fetch;
    const seen: string[] = [];
    const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, (req) => {
      const path = new URL(req.url).pathname;
      seen.push(path);
      // The hub has the model's config but no model.sig.
      if (path.endsWith("/model.sig")) return new Response("missing", { status: 404 });
      return new Response(path.endsWith("config.json") ? "{}" : "plain");
    });
    const env = legacyEnv();
    const port = server.addr.port;
    env.remoteHost = `http://127.0.0.1:${port}/`;
    env.allowRemoteModels = true;
    // The module's two tensor-op pieces the guard uses to start its first session.
    let primed = 0;
    const module = { env, matmul: () => Promise.resolve(primed++), Tensor: class {} };
    const guard = guardTransformers(module as unknown as Parameters<typeof guardTransformers>[0], {
      policy,
    });
    try {
      assert.notEqual(globalThis.fetch, before);
      assert.equal(env.useFS, false);
      assert.equal(primed, 1);
      // The app's own requests, a hub model path included: untouched.
      const hubFile = `http://127.0.0.1:${port}/acme/m/resolve/main/config.json`;
      assert.equal(await (await fetch(`http://127.0.0.1:${port}/api/x.txt`)).text(), "plain");
      assert.equal(await (await fetch(hubFile)).text(), "{}");
      // transformers.js 3's own (its User-Agent): checked (no model.sig there: refused).
      const own = { headers: { "User-Agent": "transformers.js/3.8.1; is_ci/false;" } };
      await assert.rejects(
        (async () => {
          const r = await fetch(hubFile, own);
          await r.arrayBuffer();
        })(),
        SignatureMissing,
      );
      assert.ok(seen.includes("/acme/m/resolve/main/model.sig"), seen.join());
    } finally {
      guard.uninstall();
      await server.shutdown();
    }
    assert.equal(globalThis.fetch, before);
    assert.equal(env.useFS, true);
  },
);

test(
  "model files from an http(s) env.localModelPath are refused (they cannot be placed in a model), not passed unchecked",
  opts,
  async () => {
    // As transformers.js' web build reads them: through env.fetch, by URL.
    const asked: string[] = [];
    const env: Record<string, unknown> = {
      ...legacyEnv(),
      version: "4.3.1",
      fetch: (url: string) => (asked.push(url), Promise.resolve(new Response("{}"))),
      localModelPath: "http://127.0.0.1:9/models/",
    };
    const guard = guardTransformers(env as never, { policy });
    try {
      const fetch = env.fetch as (url: string) => Promise<Response>;
      for (const file of ["config.json", "tokenizer.json", "onnx/model.onnx"]) {
        await assert.rejects(
          fetch(`http://127.0.0.1:9/models/acme/tiny-bert/${file}`),
          (e) => e instanceof EvidenceError && /http\(s\) env\.localModelPath/.test(e.message),
        );
      }
      // A base with a query string (transformers.js joins it with "/" all the same).
      env.localModelPath = "http://127.0.0.1:9/get?p=";
      await assert.rejects(
        fetch("http://127.0.0.1:9/get?p=/acme/tiny-bert/tokenizer.json"),
        (e) => e instanceof EvidenceError && /http\(s\) env\.localModelPath/.test(e.message),
      );
      env.localModelPath = "http://127.0.0.1:9/models/";
      // Refused before any byte was asked for; other URLs pass as before.
      assert.deepEqual(asked, []);
      assert.equal(await (await fetch("http://127.0.0.1:9/models/README")).text(), "{}");
    } finally {
      guard.uninstall();
    }
  },
);

test(
  "an app wrapping env.customCache or env.fetch while guarded: loads go on, checked, no loop or hang",
  opts,
  async () => {
    const { root } = await signedCopy();
    const h = hub({ "acme/tiny-bert": `${root}/tiny-bert` });
    const before = { fetch: env.fetch, customCache: env.customCache, use: env.useCustomCache };
    try {
      await guarded({}, async (guard) => {
        Object.assign(env, { remoteHost: h.url, allowLocalModels: false, allowRemoteModels: true });
        env.useBrowserCache = false;
        // A logging cache over the guard's own, and an auth header over its fetch.
        type Cache = {
          match(k: string): Promise<unknown>;
          put(k: string, r: Response): Promise<unknown>;
        };
        const app = env as unknown as {
          customCache: Cache | undefined;
          useCustomCache: boolean;
          fetch: (u: string | URL, i?: RequestInit) => Promise<Response>;
        };
        const inner = app.customCache!;
        const calls: string[] = [];
        app.customCache = {
          match: (k) => (calls.push(`match ${k}`), inner.match(k)),
          put: (k, r) => (calls.push(`put ${k}`), inner.put(k, r)),
        };
        app.useCustomCache = true;
        const f = app.fetch;
        const fetched: string[] = [];
        app.fetch = (u, i) => (fetched.push(String(u)), f(u, i));
        assertClose(await embed("acme/tiny-bert"), EXPECTED);
        assert.ok(calls.length > 0 && calls.length < 100, `${calls.length} cache calls`);
        assert.ok(fetched.some((u) => u.endsWith("/model.sig")), fetched.join());
        assert.ok(guard.records.every((r) => r.verdict === "verified"));
        // Still checked: the hub turns bad, the cache is bypassed by a new key.
        h.overrides.set("onnx/model.onnx", await tampered(`${root}/tiny-bert/onnx/model.onnx`));
        env.cacheKey = `guard-test-${crypto.randomUUID()}`;
        app.customCache = undefined;
        app.useCustomCache = false;
        await epoch();
        await assertRefused("acme/tiny-bert", HashMismatch, /onnx\/model\.onnx/);
        // A wrapper that drops init loops back into the guard: an error, not a hang.
        app.fetch = (u) => f(u, {});
        h.overrides.clear();
        await epoch();
        const error = await within(
          transformers.pipeline("feature-extraction", "acme/tiny-bert", { dtype: "fp32" }).then(
            () => undefined,
            (e: Error) => e,
          ),
        );
        assert.ok(
          error instanceof EvidenceError && /calls the guard's fetch again/.test(error.message),
          String(error),
        );
      });
      // uninstall() gave back what the app set; the app's wrapper still holds
      // the guard's fetch, which now only passes requests on.
      const held = env.fetch as (u: string) => Promise<Response>;
      assert.equal((await held(`${h.url}acme/tiny-bert/resolve/main/config.json`)).status, 200);
    } finally {
      Object.assign(env, {
        fetch: before.fetch,
        customCache: before.customCache,
        useCustomCache: before.use,
      });
      await h.close();
      await Deno.remove(root, { recursive: true });
    }
  },
);

test(
  "a frozen env, or a setting that cannot be redefined: refused at install, nothing changed",
  opts,
  () => {
    const before = globalThis.fetch;
    const v4 = () => ({
      ...legacyEnv(),
      version: "4.3.1",
      fetch: () => Promise.resolve(new Response()),
    });
    const frozen = Object.freeze(v4());
    const pinned = v4();
    Object.defineProperty(pinned, "customCache", { value: null, configurable: false });
    const legacy = Object.freeze(legacyEnv());
    const module = { env: legacy, matmul: () => Promise.resolve(), Tensor: class {} };
    for (
      const [e, setting] of [[frozen, "useFS"], [pinned, "customCache"], [module, "useFS"]] as const
    ) {
      assert.throws(
        () => guardTransformers(e as never, { policy }),
        (err) =>
          err instanceof TypeError && err.message.includes(`env.${setting} cannot be redefined`),
      );
    }
    assert.equal(pinned.useFS, true);
    assert.equal(Object.getOwnPropertyDescriptor(pinned, "useFS")?.value, true);
    assert.equal(globalThis.fetch, before);
    // Not left half-installed: a guard installs on the same (unfrozen) env afterwards.
    const ok = v4();
    guardTransformers(ok as never, { policy }).uninstall();
  },
);

test(
  "settings set while guarded read as the guard's, and are what uninstall() restores (plain and accessor properties)",
  opts,
  () => {
    let backing = false;
    const fetchFn = () => Promise.resolve(new Response("x"));
    const env: Record<string, unknown> = { ...legacyEnv(), version: "4.3.1", fetch: fetchFn };
    Object.defineProperty(env, "useFS", {
      configurable: true,
      enumerable: true,
      get: () => backing,
      set: (v) => backing = v,
    });
    const guard = guardTransformers(env as never, { policy });
    const mine = { match: () => Promise.resolve(undefined), put: () => Promise.resolve() };
    const otherFetch = () => Promise.resolve(new Response("y"));
    try {
      assert.equal(env.useFS, false);
      env.useFS = true;
      env.customCache = mine;
      env.useCustomCache = true;
      env.fetch = otherFetch;
      // Still the guard's: files keep going through its fetch and cache.
      assert.equal(env.useFS, false);
      assert.notEqual(env.customCache, mine);
      assert.notEqual(env.fetch, otherFetch);
    } finally {
      guard.uninstall();
    }
    assert.equal(backing, true);
    assert.equal(env.useFS, true);
    assert.equal(env.customCache, mine);
    assert.equal(env.useCustomCache, true);
    assert.equal(env.fetch, otherFetch);
  },
);

test(
  "transformers.js 3 with another onnxruntime copy, given its env alone, or without env.customCache: refused at install, saying why",
  opts,
  () => {
    const before = globalThis.fetch;
    assert.throws(
      () => guardTransformers(legacyEnv({}) as never, { policy }),
      (e) =>
        e instanceof TypeError &&
        /3\.8\.1: it runs another copy of onnxruntime-node/.test(e.message),
    );
    assert.throws(
      () => guardTransformers(legacyEnv() as never, { policy }),
      (e) => e instanceof TypeError && /given its env alone: pass the module/.test(e.message),
    );
    const { useCustomCache: _, ...old } = legacyEnv();
    assert.throws(
      () =>
        guardTransformers(
          { env: old, matmul: () => Promise.resolve(), Tensor: class {} } as never,
          {
            policy,
          },
        ),
      (e) => e instanceof TypeError && /no env\.customCache/.test(e.message),
    );
    assert.equal(globalThis.fetch, before);
  },
);

test(
  "a lockfile vouches for an unsigned model; a pinned digest that differs is refused",
  opts,
  async () => {
    const { root, dir } = await signedCopy();
    await Deno.remove(`${dir}/model.sig`);
    const digests: Record<string, string> = {};
    for (const f of FILES) digests[f] = sha256hex(await Deno.readFile(`${dir}/${f}`));
    // Bare hex, as older lockfiles wrote it, is read as SHA-256.
    const lockfile = new Lockfile({ version: 1, models: { "tiny-bert@v1": { digests } } });
    await guarded({ lockfile, frozen: true }, async (guard) => {
      local(root);
      assertClose(await embed("tiny-bert"), EXPECTED);
      assert.ok(guard.records.every((r) => r.evidence === "lockfile" && r.verdict === "verified"));
      await flip(`${dir}/config.json`, 20);
      await epoch();
      await assertRefused("tiny-bert", HashMismatch, /config\.json/);
    });
    await Deno.remove(root, { recursive: true });
  },
);

test(
  "the gate decides bytes it has refused by that refusal, even when they look like a weightless op graph",
  opts,
  async () => {
    const { opGraph } = await import("../_model_gen.ts");
    const { root, dir } = await signedCopy();
    try {
      // The signed model's weights replaced by a tiny weightless graph.
      await Deno.writeFile(`${dir}/onnx/model.onnx`, opGraph());
      await guarded({}, async () => {
        local(`${root}/`);
        await assertRefused("tiny-bert", HashMismatch, /onnx\/model\.onnx/);
        // The same bytes, handed over directly: still the refused file.
        await assert.rejects(ort.InferenceSession.create(opGraph()), HashMismatch);
      });
    } finally {
      await Deno.remove(root, { recursive: true });
    }
  },
);
