// `deno task bench`: safeHash throughput against `openssl dgst -sha256` on the
// same file, measured in the same run. Each group's summary prints the ratio
// ("x times faster/slower than openssl"); the README records them.
//
// Sizes: SAFEMODELS_BENCH_MIB (default "64,1024") MiB of transformer-like
// safetensors, generated once per run into a temporary folder.
import { fileDigest, safeHash } from "../../hash/mod.ts";
import { writeBenchModel } from "../_gen.ts";

const sizes = (Deno.env.get("SAFEMODELS_BENCH_MIB") ?? "64,1024")
  .split(",").map(Number).filter((n) => n > 0);
const dir = await Deno.makeTempDir({ prefix: "safemodels-bench-" });
globalThis.addEventListener(
  "unload",
  () => Deno.removeSync(dir, { recursive: true }),
);

async function openssl(path: string): Promise<void> {
  const out = await new Deno.Command("openssl", {
    args: ["dgst", "-sha256", path],
    stdout: "null",
    stderr: "null",
  }).output();
  if (!out.success) throw new Error("openssl dgst failed");
}

let hasOpenssl = true;
try {
  await new Deno.Command("openssl", { args: ["version"], stdout: "null" })
    .output();
} catch {
  hasOpenssl = false;
}

for (const mib of sizes) {
  const path = `${dir}/model-${mib}.safetensors`;
  await writeBenchModel(path, mib);
  const group = `${mib} MiB safetensors`;
  const opts = { group, n: mib >= 512 ? 5 : 20, warmup: 1 };
  if (hasOpenssl) {
    Deno.bench({
      name: "openssl dgst -sha256 (baseline)",
      baseline: true,
      ...opts,
      fn: async () => await openssl(path),
    });
  }
  Deno.bench({
    name: "safeHash, one core (workers: 0)",
    ...opts,
    fn: async () => void await safeHash(path, { workers: 0 }),
  });
  Deno.bench({
    name: "safeHash, all cores (default)",
    ...opts,
    fn: async () => void await safeHash(path),
  });
  Deno.bench({
    name: "fileDigest sha256",
    ...opts,
    fn: async () => void await fileDigest(path),
  });
  Deno.bench({
    name: "safeHash seed-xxh64",
    ...opts,
    fn: async () => void await safeHash(path, { algorithm: "seed-xxh64" }),
  });
}
