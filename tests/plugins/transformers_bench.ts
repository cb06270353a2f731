// `deno task bench`: transformers.js load time and peak memory, guarded vs
// unguarded, on generated models with ~256 MiB of weights signed here, in
// both ONNX layouts: weights inline in model.onnx, and in model.onnx_data
// (external data, which onnxruntime memory-maps). Each load runs in a fresh
// process (so caches and memory do not carry over). The guard runs with its
// default work folder (os.tmpdir()), with /dev/shm where there is one, and
// with weights: "memory" (verified buffers, no files).
// Each bench group's summary gives the time ratios; the RSS ratios are
// printed from the same runs. SAFEMODELS_GUARD_BENCH_MIB sets the size.
import { keySigner, signModel } from "../../sign/mod.ts";
import { freshKeyPem, writeTinyModel } from "../_model_gen.ts";

const mib = Number(Deno.env.get("SAFEMODELS_GUARD_BENCH_MIB") ?? 256);
const root = await Deno.makeTempDir({ prefix: "safemodels-guard-bench-" });
globalThis.addEventListener("unload", () => Deno.removeSync(root, { recursive: true }));

// A fresh P-256 key for this run.
const { privatePem: keyPem, publicPem } = await freshKeyPem();
const pubPath = `${root}/key.pub.pem`;
await Deno.writeTextFile(pubPath, publicPem);

const layouts = { inline: false, external: true } as const;
for (const [name, externalData] of Object.entries(layouts)) {
  // hidden 8 × 4 bytes per row.
  await writeTinyModel(`${root}/${name}`, {
    extraRows: Math.round((mib * 2 ** 20) / 32),
    externalData,
  });
  await signModel(`${root}/${name}`, { signer: keySigner(keyPem) });
}
// Deno asks for --allow-all to stat /dev paths (the bench task gives it); a
// column that cannot run says why rather than vanishing.
let shmSkipped: string | undefined;
const shm = await Deno.stat("/dev/shm").then(
  (s) => s.isDirectory || (shmSkipped = "/dev/shm is not a folder", false),
  (e) => (shmSkipped = String(e), false),
);
if (shmSkipped) console.log(`guard bench: the /dev/shm column is skipped (${shmSkipped})`);

const script = new URL("./_load_model.ts", import.meta.url).pathname;
// The store keeps only files older than the clock's resolution: wait, then
// fill it with one guarded load of each layout (the "warm" column's baseline
// state: a model verified once before).
await new Promise((r) => setTimeout(r, 2100));
for (const name of Object.keys(layouts)) {
  const filled = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", script, `${root}/`, name, "1", pubPath, `store=${root}/store`],
    stdout: "null",
    stderr: "inherit",
  }).output();
  if (!filled.success) throw new Error(`filling the verified store with ${name} failed`);
}
async function load(
  model: string,
  guard: "none" | "default" | "shm" | "memory" | "warm",
): Promise<{ ms: number; peakRssKiB: number }> {
  const args = ["run", "-A", script, `${root}/`, model, guard === "none" ? "0" : "1", pubPath];
  if (guard === "shm") args.push("/dev/shm");
  if (guard === "memory") args.push("memory");
  // Warm: the verified store was filled by a first guarded load (below).
  if (guard === "warm") args.push(`store=${root}/store`);
  const out = await new Deno.Command(Deno.execPath(), {
    args,
    stdout: "piped",
    stderr: "inherit",
  }).output();
  if (!out.success) throw new Error(`load ${model} (guard: ${guard}) failed`);
  return JSON.parse(new TextDecoder().decode(out.stdout));
}

type Runs = { ms: number[]; rss: number[] };
const results = new Map<string, Runs>();
for (const model of Object.keys(layouts)) {
  const group = `${mib} MiB, weights ${model}: load + one embedding (fresh process each)`;
  type Guard = Parameters<typeof load>[1];
  const configs: [Guard, string][] = [
    ["none", "unguarded transformers.js (baseline)"],
    ["default", "guardTransformers (OMS model.sig, key policy)"],
    ...(shm ? [["shm", "guardTransformers, workDir /dev/shm"] as [Guard, string]] : []),
    ["memory", 'guardTransformers, weights: "memory"'],
    ["warm", "guardTransformers, verifiedStore (warm: verified by an earlier load)"],
  ];
  for (const [guard, name] of configs) {
    const runs: Runs = { ms: [], rss: [] };
    results.set(`${model}/${guard}`, runs);
    Deno.bench({
      name,
      group,
      baseline: guard === "none",
      n: 5,
      warmup: 1,
      fn: async () => {
        const r = await load(model, guard);
        runs.ms.push(r.ms);
        runs.rss.push(r.peakRssKiB);
      },
    });
  }
}

globalThis.addEventListener("unload", () => {
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? NaN;
  if (shmSkipped) console.log(`guard bench: /dev/shm column skipped (${shmSkipped})`);
  for (const model of Object.keys(layouts)) {
    const base = results.get(`${model}/none`);
    if (!base?.ms.length) continue;
    for (const guard of ["default", "shm", "memory", "warm"]) {
      const g = results.get(`${model}/${guard}`);
      if (!g?.ms.length) continue;
      const [gm, bm] = [median(g.ms), median(base.ms)];
      const [gr, br] = [median(g.rss) / 1024, median(base.rss) / 1024];
      console.log(
        `guard bench (${mib} MiB, ${model}, ${guard}): load ${gm.toFixed(0)} ms vs ${
          bm.toFixed(0)
        } ms = ${(gm / bm).toFixed(2)}x; peak RSS ${gr.toFixed(0)} MiB vs ${br.toFixed(0)} MiB = ${
          (gr / br).toFixed(2)
        }x`,
      );
    }
  }
});
