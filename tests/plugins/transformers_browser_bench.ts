// `deno task bench`: a guarded page load of a signed model from the Web Cache
// against the unguarded one, in headless Chromium (transformers.js web build,
// onnxruntime-web wasm), both in the same page, alternating, medians of 3.
// The guard streams the cached weights through hash-wasm as it reads them
// (and, with verifiedStore, decides a tagged entry without hashing it);
// the page also counts any native WebCrypto digests (hashing the whole buffer
// once with WebCrypto measured slower here: 1.73x against 1.61x at 256 MiB,
// see README). SAFEMODELS_BROWSER_BENCH_MIB sets the size (256 by default).
// Prints the ratio; skipped without Chromium.
import { keySigner, signModel } from "../../sign/mod.ts";
import { freshKeyPem, writeTinyModel } from "../_model_gen.ts";
import {
  bundleWebGuard,
  chromiumPath,
  PAGE_HEAD,
  pageModule,
  pageModuleRoots,
  runPage,
} from "./_chromium.ts";

const mib = Number(Deno.env.get("SAFEMODELS_BROWSER_BENCH_MIB") ?? 256);
const chromium = chromiumPath();

const PAGE = `${PAGE_HEAD}try {
  const ort = await import("onnxruntime-web/webgpu");
  const transformers = await import("@huggingface/transformers");
  const { guardTransformers } = await import("/guard.mjs");
  const { env } = transformers;
  env.remoteHost = location.origin + "/";
  env.allowLocalModels = false;
  env.backends.onnx.wasm.wasmPaths = location.origin + "/npm/ort/dist/";
  env.backends.onnx.wasm.numThreads = 1;
  env.cacheKey = "bench";
  const policy = { publicKeys: [await (await fetch("/key.pem")).text()] };
  const load = async () => {
    const t = performance.now();
    const pipe = await transformers.pipeline("feature-extraction", "acme/big", { dtype: "fp32", device: "wasm" });
    await pipe("hello world", { pooling: "mean" });
    const ms = performance.now() - t;
    await pipe.dispose();
    return ms;
  };
  await load(); // fills the Web Cache (and warms up)
  // What the guard hashes natively (calls and bytes), recorded for the report.
  const digests = { calls: 0, bytes: 0, ms: 0 };
  const realDigest = crypto.subtle.digest.bind(crypto.subtle);
  crypto.subtle.digest = async (alg, data) => {
    const t = performance.now();
    try {
      return await realDigest(alg, data);
    } finally {
      digests.calls++;
      digests.bytes += data.byteLength;
      digests.ms += performance.now() - t;
    }
  };
  const guardedLoad = async (options) => {
    const guard = guardTransformers(transformers, { ort, policy, ...options });
    try {
      const ms = await load();
      if (!guard.records.every((r) => r.verdict === "verified")) throw new Error("not verified");
      return { ms, warm: guard.records.some((r) => r.warm) };
    } finally {
      guard.uninstall();
    }
  };
  // Warm: verifiedStore tags the cached weights (on this first load), and
  // later loads are decided on the tag instead of hashing again.
  const store = { verifiedStore: "safemodels-bench" };
  if ((await guardedLoad(store)).warm) throw new Error("warm before any tag");
  const unguarded = [], guarded = [], warm = [];
  for (let i = 0; i < 3; i++) {
    unguarded.push(await load());
    guarded.push((await guardedLoad({})).ms);
    const w = await guardedLoad(store);
    if (!w.warm) throw new Error("the tagged load was not warm");
    warm.push(w.ms);
  }
  out.textContent = JSON.stringify({ ok: true, unguarded, guarded, warm, digests });
} catch (e) {
  out.textContent = JSON.stringify({ ok: false, error: String(e), stack: e?.stack });
}
</script>`;

if (chromium) {
  const work = await Deno.makeTempDir({ prefix: "guard-browser-bench-" });
  globalThis.addEventListener("unload", () => Deno.removeSync(work, { recursive: true }));
  const source = await bundleWebGuard(`${work}/guard.mjs`);
  const roots = await pageModuleRoots();
  const { privatePem, publicPem } = await freshKeyPem();
  const dir = `${work}/big`;
  await writeTinyModel(dir, { extraRows: Math.round((mib * 2 ** 20) / 32) });
  await signModel(dir, { signer: keySigner(privatePem) });
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, async (req) => {
    const path = decodeURIComponent(new URL(req.url).pathname);
    if (path === "/") return new Response(PAGE, { headers: { "content-type": "text/html" } });
    if (path === "/guard.mjs") {
      return new Response(source, { headers: { "content-type": "text/javascript" } });
    }
    if (path === "/key.pem") return new Response(publicPem);
    const module = await pageModule(path, roots);
    if (module) return module;
    const hub = /^\/acme\/big\/resolve\/[^/]+\/(.+)$/.exec(path);
    const file = hub && !hub[1]!.includes("..") ? hub[1]! : undefined;
    const body = file && await Deno.readFile(`${dir}/${file}`).catch(() => undefined);
    if (!body) return new Response("missing", { status: 404 });
    return new Response(body as Uint8Array<ArrayBuffer>, {
      headers: { "cache-control": "no-store" },
    });
  });
  globalThis.addEventListener("unload", () => void server.shutdown());
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
  let last:
    | {
      unguarded: number[];
      guarded: number[];
      warm: number[];
      digests: { calls: number; bytes: number; ms: number };
    }
    | undefined;
  Deno.bench({
    name: `browser: guarded vs unguarded page load of ${mib} MiB from the Web Cache`,
    n: 1,
    warmup: 0,
    async fn() {
      const r = await runPage(`http://127.0.0.1:${server.addr.port}/`, 600_000) as {
        ok: boolean;
        error?: string;
        unguarded: number[];
        guarded: number[];
        warm: number[];
        digests: { calls: number; bytes: number; ms: number };
      };
      if (!r.ok) throw new Error(r.error);
      last = r;
    },
  });
  globalThis.addEventListener("unload", () => {
    if (!last) return;
    const [g, u, w] = [median(last.guarded), median(last.unguarded), median(last.warm)];
    console.log(
      `browser bench (${mib} MiB, Web Cache, same page): guarded with verifiedStore (warm: tagged) ${
        w.toFixed(0)
      } ms vs unguarded ${u.toFixed(0)} ms = ${(w / u).toFixed(2)}x (runs: ${
        last.warm.map(Math.round)
      })`,
    );
    console.log(
      `browser bench (${mib} MiB, Web Cache, same page): guarded ${g.toFixed(0)} ms vs unguarded ${
        u.toFixed(0)
      } ms = ${(g / u).toFixed(2)}x (runs: guarded ${last.guarded.map(Math.round)}, unguarded ${
        last.unguarded.map(Math.round)
      }); native digests over 3 guarded loads: ${last.digests.calls} calls, ${
        (last.digests.bytes / 2 ** 20).toFixed(0)
      } MiB, ${last.digests.ms.toFixed(0)} ms`,
    );
  });
} else {
  console.log("browser bench: skipped (Chromium is not installed: apt-get install chromium)");
}
