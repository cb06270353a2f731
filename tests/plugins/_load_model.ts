// Child process for the guard bench: loads a model with transformers.js
// (guarded or not), embeds one sentence, and prints the load time and the
// process's peak RSS (VmHWM) as JSON.
// Usage: <models root> <model> <guard: 0|1> <public key PEM path> [work folder | "memory" | "store=DIR"]
import * as transformers from "@huggingface/transformers";
import { guardTransformers } from "../../plugins/transformers.ts";

const [root, model, guarded, pub, workDir] = Deno.args;
transformers.env.localModelPath = root!;
transformers.env.allowRemoteModels = false;
const guard = guarded === "1"
  ? guardTransformers(transformers, {
    policy: { publicKeys: [await Deno.readTextFile(pub!)] },
    ...(workDir === "memory"
      ? { weights: "memory" as const }
      : workDir?.startsWith("store=")
      ? { verifiedStore: workDir.slice("store=".length) }
      : workDir
      ? { workDir }
      : {}),
  })
  : undefined;
const started = performance.now();
const pipe = await transformers.pipeline("feature-extraction", model!, { dtype: "fp32" });
await pipe("hello world", { pooling: "mean" });
const ms = performance.now() - started;
await pipe.dispose();
guard?.uninstall();
const status = await Deno.readTextFile("/proc/self/status").catch(() => "");
const peak = Number(/VmHWM:\s+(\d+) kB/.exec(status)?.[1] ?? NaN);
console.log(JSON.stringify({ ms, peakRssKiB: peak }));
