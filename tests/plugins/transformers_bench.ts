// `deno task bench`: transformers.js load time and peak memory, guarded vs
// unguarded, on a generated model with ~256 MiB of weights, signed here.
// Each load runs in a fresh process (so caches and memory do not carry over);
// the bench group's summary gives the time ratio and the RSS ratio is printed
// from the same runs. SAFEMODELS_GUARD_BENCH_MIB sets the size (default 256).
import { keySigner, signModel } from "../../sign/mod.ts";
import { freshKeyPem, writeTinyModel } from "../_model_gen.ts";

const mib = Number(Deno.env.get("SAFEMODELS_GUARD_BENCH_MIB") ?? 256);
const root = await Deno.makeTempDir({ prefix: "safemodels-guard-bench-" });
globalThis.addEventListener("unload", () => Deno.removeSync(root, { recursive: true }));

// A fresh P-256 key for this run.
const { privatePem: keyPem, publicPem } = await freshKeyPem();
const pubPath = `${root}/key.pub.pem`;
await Deno.writeTextFile(pubPath, publicPem);

// hidden 8 × 4 bytes per row.
await writeTinyModel(`${root}/big`, { extraRows: Math.round((mib * 2 ** 20) / 32) });
await signModel(`${root}/big`, { signer: keySigner(keyPem) });

const script = new URL("./_load_model.ts", import.meta.url).pathname;
async function load(guarded: boolean): Promise<{ ms: number; peakRssKiB: number }> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", script, `${root}/`, "big", guarded ? "1" : "0", pubPath],
    stdout: "piped",
    stderr: "inherit",
  }).output();
  if (!out.success) throw new Error(`load (guarded: ${guarded}) failed`);
  return JSON.parse(new TextDecoder().decode(out.stdout));
}

const rss = { guarded: [] as number[], unguarded: [] as number[] };
const ms = { guarded: [] as number[], unguarded: [] as number[] };
const group = `${mib} MiB model, load + one embedding (fresh process each)`;
Deno.bench({
  name: "unguarded transformers.js (baseline)",
  group,
  baseline: true,
  n: 5,
  warmup: 1,
  fn: async () => {
    const r = await load(false);
    rss.unguarded.push(r.peakRssKiB);
    ms.unguarded.push(r.ms);
  },
});
Deno.bench({
  name: "guardTransformers (OMS model.sig, key policy)",
  group,
  n: 5,
  warmup: 1,
  fn: async () => {
    const r = await load(true);
    rss.guarded.push(r.peakRssKiB);
    ms.guarded.push(r.ms);
  },
});

globalThis.addEventListener("unload", () => {
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? NaN;
  if (rss.guarded.length === 0 || rss.unguarded.length === 0) return;
  console.log(
    `guard bench (${mib} MiB): in-process load ${median(ms.guarded).toFixed(0)} ms vs ${
      median(ms.unguarded).toFixed(0)
    } ms = ${(median(ms.guarded) / median(ms.unguarded)).toFixed(2)}x; peak RSS ${
      (median(rss.guarded) / 1024).toFixed(0)
    } MiB vs ${(median(rss.unguarded) / 1024).toFixed(0)} MiB = ${
      (median(rss.guarded) / median(rss.unguarded)).toFixed(2)
    }x`,
  );
});
