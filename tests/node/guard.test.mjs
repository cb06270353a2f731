// The transformers.js guard under Node (transformers.js 4 or 3 and
// onnxruntime-node from npm, see .ci/run): a signed tiny-bert loads and embeds
// "hello world" as PyTorch did; a flipped byte is refused with HashMismatch and
// no onnxruntime session for the model.
import { test } from "node:test";
import assert from "node:assert/strict";
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { fileURLToPath } from "node:url";

import { cliBin, load } from "./_package.mjs";

const fixtures = fileURLToPath(new URL("../../../shared/fixtures/", import.meta.url));
const sm = { ...await load("safemodels/sign"), ...await load("safemodels/plugins/transformers") };
const transformers = await load("@huggingface/transformers");
// CI runs these with the newest transformers.js 4 and the newest 3 (see
// .ci/run). transformers.js 3 has no env.fetch: the guard wraps the global
// fetch for its model files only.
const major = Number(transformers.env.version.split(".")[0]);
const v3 = { skip: major !== 3 ? `transformers.js ${transformers.env.version}` : false };

test(
  "transformers.js 3: the global fetch is wrapped for its own requests only, kept while installed, restored on uninstall",
  v3,
  async () => {
    const { createServer } = await import("node:http");
    const seen = [];
    const server = createServer((req, res) => {
      seen.push(`${req.method} ${req.url}`);
      if (req.url.endsWith("/model.sig")) return res.writeHead(404).end();
      res.writeHead(200, { "content-type": "application/json" }).end('{"hello":"world"}');
    });
    await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
    const base = `http://127.0.0.1:${server.address().port}`;
    const { env } = transformers;
    const saved = { ...env };
    env.remoteHost = `${base}/`;
    const before = globalThis.fetch;
    // An app setting env.fetch (which version 3 ignores) does not make it version 4.
    env.fetch = before;
    const guard = sm.guardTransformers(transformers, { policy: { publicKeys: [] } });
    try {
      assert.notEqual(globalThis.fetch, before);
      // The app's own requests, even to a hub model path, are untouched.
      const hubPath = `${base}/acme/m/resolve/main/config.json`;
      for (const r of [fetch(hubPath), fetch(new Request(hubPath, { method: "HEAD" }))]) {
        assert.equal((await r).status, 200);
      }
      assert.deepEqual(await (await fetch(`${base}/api/x.json`)).json(), { hello: "world" });
      assert.deepEqual(seen, [
        "GET /acme/m/resolve/main/config.json",
        "HEAD /acme/m/resolve/main/config.json",
        "GET /api/x.json",
      ]);
      assert.equal(await (await fetch("data:text/plain,ok")).text(), "ok");
      await assert.rejects(fetch("config.json"), TypeError);
      // transformers.js 3's own (its User-Agent): checked; no model.sig there, so refused.
      const own = { headers: { "user-agent": `transformers.js/${env.version}; is_ci/false;` } };
      await assert.rejects(
        fetch(hubPath, own).then((r) => r.arrayBuffer()),
        (e) => e instanceof sm.SignatureMissing,
      );
      // A library wrapping the global fetch over the guard's (a tracer, a mock):
      // transformers.js' requests still reach the guard, others pass, no loop.
      const hooked = globalThis.fetch;
      globalThis.fetch = (input, init) => hooked(input, init);
      await env.customCache.match("unrelated-key"); // a cache use leaves the wrapper be
      assert.deepEqual(await (await fetch(`${base}/api/x.json`)).json(), { hello: "world" });
      await assert.rejects(
        fetch(hubPath, own).then((r) => r.arrayBuffer()),
        (e) => e instanceof sm.SignatureMissing,
      );
      guard.uninstall();
      // The wrapper stays set (it holds the guard's fetch, which now passes everything on).
      assert.deepEqual(await (await fetch(`${base}/api/x.json`)).json(), { hello: "world" });
      // A library setting back the fetch it saved before the guard: wrapped again
      // at transformers.js' next cache use; uninstall() restores it.
      globalThis.fetch = before;
      const again = sm.guardTransformers(transformers, { policy: { publicKeys: [] } });
      globalThis.fetch = before;
      await env.customCache.match("unrelated-key");
      assert.notEqual(globalThis.fetch, before);
      again.uninstall();
      assert.equal(globalThis.fetch, before);
    } finally {
      guard.uninstall();
      globalThis.fetch = before;
      Object.assign(env, saved);
      delete env.fetch;
      server.close();
    }
  },
);

test(
  "transformers.js 3: a refused tokenizer or external-data file fails that load only; later models load",
  v3,
  async () => {
    const { externalizeWeights } = await import("./_external.mjs");
    const root = mkdtempSync(`${tmpdir()}/safemodels-node-guard-`);
    const { env } = transformers;
    const saved = { ...env };
    const key = readFileSync(`${fixtures}oms/keys/signing-key.pem`, "utf8");
    const copy = async (name, change) => {
      cpSync(`${fixtures}tiny-bert`, `${root}/${name}`, { recursive: true });
      change?.(`${root}/${name}`);
      await sm.signModel(`${root}/${name}`, { signer: sm.keySigner(key) });
    };
    const flip = (path, at) => {
      const bytes = readFileSync(path);
      bytes[at] ^= 1;
      writeFileSync(path, bytes);
    };
    await copy("bad-tokenizer");
    flip(`${root}/bad-tokenizer/tokenizer.json`, 100);
    await copy("good");
    await copy("external", externalizeWeights);
    Object.assign(env, { localModelPath: `${root}/`, allowRemoteModels: false });
    const guard = sm.guardTransformers(transformers, {
      policy: { publicKeys: [readFileSync(`${fixtures}oms/keys/signing-key-pub.pem`, "utf8")] },
    });
    const embed = async (name, options = {}) => {
      const pipe = await transformers.pipeline("feature-extraction", name, {
        dtype: "fp32",
        ...options,
      });
      const out = Array.from((await pipe("hello world", { pooling: "mean" })).data);
      await pipe.dispose();
      out.forEach((v, i) => assert.ok(Math.abs(v - expected[i]) < 1e-5, `[${i}] ${v}`));
    };
    try {
      // The first model of the process: its tokenizer is refused while its
      // weights verify (version 3 keeps a failed first session for all later ones).
      await assert.rejects(
        embed("bad-tokenizer"),
        (e) => e instanceof sm.HashMismatch && e.message.includes("bad-tokenizer/tokenizer.json"),
      );
      await embed("good");
      // External data read with use_external_data_format: signed loads; a
      // tampered model.onnx_data rejects the load (no hang, no crash).
      const ext = { use_external_data_format: true };
      await embed("external", ext);
      flip(`${root}/external/onnx/model.onnx_data`, 10);
      await new Promise((r) => setTimeout(r, 1600)); // a new load epoch
      await assert.rejects(
        embed("external", ext),
        (e) => e instanceof sm.HashMismatch && e.message.includes("onnx/model.onnx_data"),
      );
      // Setting env.useFS while guarded does not let files be read unchecked.
      env.useFS = true;
      await assert.rejects(
        embed("bad-tokenizer"),
        (e) => e instanceof sm.HashMismatch && e.message.includes("tokenizer.json"),
      );
      await embed("good");
    } finally {
      guard.uninstall();
      Object.assign(env, saved);
      rmSync(root, { recursive: true, force: true });
    }
    assert.equal(env.useFS, saved.useFS);
  },
);

test(
  "transformers.js 3 without its file cache: verified buffers; a refusal fails that load only",
  v3,
  async () => {
    const root = mkdtempSync(`${tmpdir()}/safemodels-node-guard-`);
    const { env } = transformers;
    const saved = { ...env };
    try {
      cpSync(`${fixtures}tiny-bert`, `${root}/tiny-bert`, { recursive: true });
      const key = readFileSync(`${fixtures}oms/keys/signing-key.pem`, "utf8");
      await sm.signModel(`${root}/tiny-bert`, { signer: sm.keySigner(key) });
      const onnx = `${root}/tiny-bert/onnx/model.onnx`;
      const good = readFileSync(onnx);
      const bad = Buffer.from(good);
      bad[100] ^= 1;
      writeFileSync(onnx, bad);
      Object.assign(env, {
        localModelPath: `${root}/`,
        allowRemoteModels: false,
        useFSCache: false,
      });
      const guard = sm.guardTransformers(transformers, {
        policy: { publicKeys: [readFileSync(`${fixtures}oms/keys/signing-key-pub.pem`, "utf8")] },
      });
      try {
        // Tampered first: refused with our error, before any session.
        await assert.rejects(
          transformers.pipeline("feature-extraction", "tiny-bert", { dtype: "fp32" }),
          (e) => e instanceof sm.HashMismatch && e.message.includes("onnx/model.onnx"),
        );
        // transformers.js 3 keeps a failed first session for every later one:
        // the refusal did not reach onnxruntime, so the repaired model loads.
        writeFileSync(onnx, good);
        await new Promise((r) => setTimeout(r, 1600)); // a new load epoch
        const pipe = await transformers.pipeline("feature-extraction", "tiny-bert", {
          dtype: "fp32",
        });
        const out = Array.from((await pipe("hello world", { pooling: "mean" })).data);
        await pipe.dispose();
        out.forEach((v, i) => assert.ok(Math.abs(v - expected[i]) < 1e-5, `[${i}] ${v}`));
        const onnxRecords = guard.records.filter((r) => r.file === "onnx/model.onnx");
        assert.deepEqual(onnxRecords.map((r) => r.verdict), ["refused", "verified"]);
      } finally {
        guard.uninstall();
      }
    } finally {
      Object.assign(env, saved);
      rmSync(root, { recursive: true, force: true });
    }
  },
);
const expected =
  JSON.parse(readFileSync(`${fixtures}tiny-bert/expected.json`, "utf8")).hello_world_mean_pooled;

test(
  "guardTransformers() under Node: signed loads and matches PyTorch, tampered is refused",
  async () => {
    const root = mkdtempSync(`${tmpdir()}/safemodels-node-guard-`);
    try {
      cpSync(`${fixtures}tiny-bert`, `${root}/tiny-bert`, { recursive: true });
      const key = readFileSync(`${fixtures}oms/keys/signing-key.pem`, "utf8");
      await sm.signModel(`${root}/tiny-bert`, { signer: sm.keySigner(key) });
      transformers.env.localModelPath = `${root}/`;
      transformers.env.allowRemoteModels = false;
      const guard = sm.guardTransformers(transformers, {
        policy: { publicKeys: [readFileSync(`${fixtures}oms/keys/signing-key-pub.pem`, "utf8")] },
      });
      try {
        const pipe = await transformers.pipeline("feature-extraction", "tiny-bert", {
          dtype: "fp32",
        });
        const out = Array.from((await pipe("hello world", { pooling: "mean" })).data);
        await pipe.dispose();
        out.forEach((v, i) => assert.ok(Math.abs(v - expected[i]) < 1e-5, `[${i}] ${v}`));
        assert.ok(guard.records.every((r) => r.verdict === "verified"));

        const onnx = `${root}/tiny-bert/onnx/model.onnx`;
        const bytes = readFileSync(onnx);
        bytes[100] ^= 1;
        writeFileSync(onnx, bytes);
        await assert.rejects(
          transformers.pipeline("feature-extraction", "tiny-bert", { dtype: "fp32" }),
          (e) => e instanceof sm.HashMismatch && e.message.includes("onnx/model.onnx"),
        );
      } finally {
        guard.uninstall();
      }
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  },
);

test(
  "guardTransformers() under Node: a remote model over a loopback hub, Node's file cache (a refusal first, then the verified load)",
  async () => {
    const { createServer } = await import("node:http");
    const root = mkdtempSync(`${tmpdir()}/safemodels-node-guard-`);
    const dir = `${root}/tiny-bert`;
    cpSync(`${fixtures}tiny-bert`, dir, { recursive: true });
    const key = readFileSync(`${fixtures}oms/keys/signing-key.pem`, "utf8");
    await sm.signModel(dir, { signer: sm.keySigner(key) });
    const overrides = new Map();
    const hits = [];
    const server = createServer((req, res) => {
      const m = /^\/acme\/tiny-bert\/resolve\/[^/]+\/(.+)$/.exec(
        new URL(req.url, "http://x").pathname,
      );
      const file = m && decodeURIComponent(m[1]);
      let body;
      try {
        body = file && (overrides.get(file) ?? readFileSync(`${dir}/${file}`));
      } catch {
        body = undefined;
      }
      if (file) hits.push(file);
      res.writeHead(body ? 200 : 404).end(body ?? "missing");
    });
    await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
    const { env } = transformers;
    const saved = { ...env };
    Object.assign(env, {
      remoteHost: `http://127.0.0.1:${server.address().port}/`,
      allowLocalModels: false,
      allowRemoteModels: true,
      useBrowserCache: false,
      useFSCache: true,
      cacheDir: `${root}/cache`,
    });
    const guard = sm.guardTransformers(transformers, {
      policy: { publicKeys: [readFileSync(`${fixtures}oms/keys/signing-key-pub.pem`, "utf8")] },
    });
    const embed = async () => {
      const pipe = await transformers.pipeline("feature-extraction", "acme/tiny-bert", {
        dtype: "fp32",
      });
      const out = Array.from((await pipe("hello world", { pooling: "mean" })).data);
      await pipe.dispose();
      return out;
    };
    try {
      // Tampered on the hub: refused, and nothing written to the cache.
      const onnx = readFileSync(`${dir}/onnx/model.onnx`);
      const bad = Buffer.from(onnx);
      bad[2000] ^= 1;
      overrides.set("onnx/model.onnx", bad);
      await assert.rejects(
        embed(),
        (e) => e instanceof sm.HashMismatch && e.message.includes("onnx/model.onnx"),
      );
      assert.throws(() => readFileSync(`${root}/cache/acme/tiny-bert/onnx/model.onnx`));
      // Good on the hub: loads, matches PyTorch, and is cached byte for byte.
      overrides.clear();
      (await embed()).forEach((v, i) => assert.ok(Math.abs(v - expected[i]) < 1e-5, `[${i}] ${v}`));
      assert.deepEqual(readFileSync(`${root}/cache/acme/tiny-bert/onnx/model.onnx`), onnx);
      // The hub turns bad: the verified cache serves, the hub is not asked for weights.
      overrides.set("onnx/model.onnx", bad);
      hits.length = 0;
      await new Promise((r) => setTimeout(r, 1600)); // a new load epoch
      (await embed()).forEach((v, i) => assert.ok(Math.abs(v - expected[i]) < 1e-5, `[${i}] ${v}`));
      assert.ok(!hits.includes("onnx/model.onnx"), hits.join());
    } finally {
      guard.uninstall();
      Object.assign(env, saved);
      server.close();
      rmSync(root, { recursive: true, force: true });
    }
  },
);

test(
  "guardTransformers() under Node reads a lockfile written by `safemodels lock`: pins vouch, bind and freeze",
  async () => {
    const { execFileSync } = await import("node:child_process");
    const root = mkdtempSync(`${tmpdir()}/safemodels-node-lock-`);
    const dir = `${root}/acme/tiny-bert`;
    cpSync(`${fixtures}tiny-bert`, dir, { recursive: true });
    const lock = `${root}/safemodels.lock`;
    // The package's own CLI, under Node.
    execFileSync(process.execPath, [
      cliBin,
      "lock",
      dir,
      "--key",
      `${fixtures}oms/keys/signing-key-pub.pem`,
      "--signatures-optional",
      "--name",
      "acme/tiny-bert",
      "--files",
      "config.json",
      "--files",
      "tokenizer.json",
      "--files",
      "tokenizer_config.json",
      "--files",
      "onnx/model.onnx",
      "--lock",
      lock,
    ]);
    assert.match(readFileSync(lock, "utf8"), /"acme\/tiny-bert@unversioned"/);
    const { env } = transformers;
    const saved = { ...env };
    Object.assign(env, { localModelPath: `${root}/`, allowRemoteModels: false });
    const guard = sm.guardTransformers(transformers, {
      policy: { publicKeys: [readFileSync(`${fixtures}oms/keys/signing-key-pub.pem`, "utf8")] },
      lockfile: lock,
      frozen: true,
    });
    try {
      const pipe = await transformers.pipeline("feature-extraction", "acme/tiny-bert", {
        dtype: "fp32",
      });
      await pipe.dispose();
      assert.ok(guard.records.every((r) => r.verdict === "verified" && r.evidence === "lockfile"));
      const config = `${dir}/config.json`;
      writeFileSync(config, readFileSync(config, "utf8").replace("{", '{"x":1,'));
      await new Promise((r) => setTimeout(r, 1600)); // a new load epoch
      await assert.rejects(
        transformers.pipeline("feature-extraction", "acme/tiny-bert", { dtype: "fp32" }),
        (e) => e instanceof sm.HashMismatch && e.code === "pin-differs",
      );
    } finally {
      guard.uninstall();
      Object.assign(env, saved);
      rmSync(root, { recursive: true, force: true });
    }
  },
);
