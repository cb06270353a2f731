// `deno task bench`: safeHash against baselines measured in the same run.
// Each group's summary prints the ratios ("x times faster/slower than …");
// the README records them.
//
// - Throughput: SAFEMODELS_BENCH_MIB (default "64,1024") MiB of
//   transformer-like safetensors, against `openssl dgst -sha256` on the same
//   file; at 100 MiB also the default against `{ workers: 0 }` (small models
//   must not pay for workers).
// - Many tensors: 20,000 tensors of 10 KB (200 MB) against openssl, and
//   200,000 tensors of 160 B (31 MB) against the Python seed's loop (xxh64
//   over the tensors in name order, with Debian's python3-numpy and
//   python3-xxhash; the group says so when they are missing).
import { fileDigest, safeHash } from "../../hash/mod.ts";
import { writeBenchModel } from "../_gen.ts";
import { available, opensslBaseline, run } from "../_bench_helpers.ts";

const sizes = (Deno.env.get("SAFEMODELS_BENCH_MIB") ?? "64,1024")
  .split(",").map(Number).filter((n) => n > 0);
const dir = await Deno.makeTempDir({ prefix: "safemodels-bench-" });
globalThis.addEventListener("unload", () => Deno.removeSync(dir, { recursive: true }));

const PYTHON = "/usr/bin/python3";
const hasSeed = await available(PYTHON, ["-c", "import numpy, xxhash"]);
if (!hasSeed) {
  console.warn(
    "bench: /usr/bin/python3 with numpy and xxhash is missing (apt-get install python3-numpy python3-xxhash): the Python seed baseline is skipped",
  );
}

// The Python seed's safe_hash loop over a safetensors file (memory-mapped).
const SEED_PY = `
import json, struct, sys, numpy as np, xxhash
path = sys.argv[1]
with open(path, "rb") as f:
    n = struct.unpack("<Q", f.read(8))[0]
    header = json.loads(f.read(n))
header.pop("__metadata__", None)
data = np.memmap(path, dtype=np.uint8, mode="r", offset=8 + n)
h = xxhash.xxh64()
for name in sorted(header):
    b, e = header[name]["data_offsets"]
    h.update(data[b:e])
print(h.intdigest())
`;

/** A safetensors file of `count` F32 tensors of `bytes` each, named like MoE experts. */
async function writeManyTensors(path: string, count: number, bytes: number): Promise<void> {
  const header: Record<string, unknown> = {};
  for (let i = 0, at = 0; i < count; i++, at += bytes) {
    header[`model.layers.${Math.floor(i / 64)}.mlp.experts.${i % 64}.weight`] = {
      dtype: "F32",
      shape: [bytes / 4],
      data_offsets: [at, at + bytes],
    };
  }
  const json = new TextEncoder().encode(JSON.stringify(header));
  const n = Math.ceil(json.length / 8) * 8;
  const head = new Uint8Array(8 + n).fill(0x20);
  new DataView(head.buffer).setBigUint64(0, BigInt(n), true);
  head.set(json, 8);
  const data = new Uint8Array(count * bytes);
  for (let i = 0; i < data.length; i += 65536) {
    crypto.getRandomValues(data.subarray(i, Math.min(data.length, i + 65536)));
  }
  await Deno.writeFile(path, head);
  await Deno.writeFile(path, data, { append: true });
}

for (const mib of sizes) {
  const path = `${dir}/model-${mib}.safetensors`;
  await writeBenchModel(path, mib);
  const group = `${mib} MiB safetensors`;
  const opts = { group, n: mib >= 512 ? 5 : 20, warmup: 1 };
  opensslBaseline(opts, [path]);
  Deno.bench({
    name: "safeHash, one core (workers: 0)",
    ...opts,
    fn: async () => void await safeHash(path, { workers: 0 }),
  });
  Deno.bench({
    name: "safeHash, default",
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

{
  // Small models never pay for workers: the default against one core.
  const path = `${dir}/model-100.safetensors`;
  await writeBenchModel(path, 100);
  const opts = { group: "100 MiB: default vs one core", n: 20, warmup: 2 };
  Deno.bench({
    name: "safeHash, one core (baseline)",
    baseline: true,
    ...opts,
    fn: async () => void await safeHash(path, { workers: 0 }),
  });
  Deno.bench({
    name: "safeHash, default",
    ...opts,
    fn: async () => void await safeHash(path),
  });
}

{
  const path = `${dir}/tensors-20k.safetensors`;
  await writeManyTensors(path, 20_000, 10_000);
  const opts = { group: "20,000 tensors of 10 KB (200 MB)", n: 10, warmup: 2 };
  opensslBaseline(opts, [path]);
  Deno.bench({
    name: "safeHash, default",
    ...opts,
    fn: async () => void await safeHash(path),
  });
  Deno.bench({
    name: "safeHash, two cores",
    ...opts,
    fn: async () => void await safeHash(path, { workers: 2 }),
  });
}

{
  const path = `${dir}/tensors-200k.safetensors`;
  await writeManyTensors(path, 200_000, 160);
  const opts = { group: "200,000 tensors of 160 B (31 MB)", n: 5, warmup: 1 };
  if (hasSeed) {
    Deno.bench({
      name: "Python seed loop, xxh64 (baseline)",
      baseline: true,
      ...opts,
      fn: async () => await run(PYTHON, ["-c", SEED_PY, path]),
    });
  }
  for (const algorithm of ["safemodels-v1", "seed-xxh64", "seed-blake2b160"] as const) {
    Deno.bench({
      name: `safeHash ${algorithm}`,
      ...opts,
      fn: async () => void await safeHash(path, { algorithm }),
    });
  }
}
