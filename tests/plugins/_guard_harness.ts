// The guard's test harness, shared by the transformers.js guard tests: real
// transformers.js 4.3.1 and onnxruntime-node, every onnxruntime session
// counted below the guard, signed copies of tiny-bert, a loopback hub.
// "memory" runs the same tests with weights kept as verified buffers (the
// browser route; transformers_memory_test.ts sets the global before importing).
import assert from "node:assert/strict";
import * as ort from "onnxruntime-node";
import * as transformers from "@huggingface/transformers";
import { type GuardOptions, guardTransformers } from "../../plugins/transformers.ts";
import { keySigner, signModel } from "../../sign/mod.ts";
import { expected, fixture } from "../_helpers.ts";

export const { env } = transformers;
export const KEY = await Deno.readTextFile(fixture("oms/keys/signing-key.pem"));
export const PUB = await Deno.readTextFile(fixture("oms/keys/signing-key-pub.pem"));
export const policy = { publicKeys: [PUB] };
export const EXPECTED = expected("tiny-bert").hello_world_mean_pooled as number[];
export const FILES = ["config.json", "tokenizer.json", "tokenizer_config.json", "onnx/model.onnx"];
export const opts = { sanitizeOps: false, sanitizeResources: false };
// "memory" runs the same tests with weights kept as verified buffers (the
// browser route; transformers_memory_test.ts sets it).
// A global, not an env var: the environment is shared by every test module.
export const WEIGHTS =
  (globalThis as { safemodelsGuardWeights?: string }).safemodelsGuardWeights ===
      "memory"
    ? "memory"
    : "files";
/** Tests that are about private file copies. */
export const filesOnly = { ...opts, ignore: WEIGHTS === "memory" };

export function test(
  name: string,
  options: Omit<Deno.TestDefinition, "name" | "fn">,
  fn: (t: Deno.TestContext) => void | Promise<void>,
): void {
  Deno.test(WEIGHTS === "memory" ? `${name} [weights in memory]` : name, options, fn);
}

// Every onnxruntime session transformers.js asks for, counted below the guard.
export const realCreate = ort.InferenceSession.create;
export let sessions = 0;
/** What onnxruntime was last asked to open. */
export let lastModel: unknown;
Object.defineProperty(ort.InferenceSession, "create", {
  configurable: true,
  writable: true,
  value: function (this: unknown, ...args: unknown[]) {
    const a = args[0];
    if (typeof a === "string" || (a as Uint8Array).byteLength > 1000) {
      sessions++;
      lastModel = a;
    }
    return (realCreate as (...a: unknown[]) => unknown).apply(this, args);
  },
});
export const spyCreate = ort.InferenceSession.create;

export const unhandled: unknown[] = [];
globalThis.addEventListener("unhandledrejection", (e) => {
  unhandled.push(e.reason);
  e.preventDefault();
});

export const saved = {
  localModelPath: env.localModelPath,
  allowRemoteModels: env.allowRemoteModels,
  allowLocalModels: env.allowLocalModels,
  remoteHost: env.remoteHost,
  useBrowserCache: env.useBrowserCache,
  useFSCache: env.useFSCache,
  cacheDir: env.cacheDir,
  cacheKey: env.cacheKey,
};
export function resetEnv(): void {
  Object.assign(env, saved);
}

/** A signed copy of tiny-bert at `<root>/tiny-bert`. */
export async function signedCopy(
  mutate?: (dir: string) => Promise<void>,
  key = KEY,
): Promise<{ root: string; dir: string }> {
  const root = await Deno.makeTempDir({ prefix: "guard-" });
  const dir = `${root}/tiny-bert`;
  await Deno.mkdir(`${dir}/onnx`, { recursive: true });
  for (const f of FILES) {
    await Deno.copyFile(fixture(`tiny-bert/${f}`), `${dir}/${f}`);
    await Deno.chmod(`${dir}/${f}`, 0o644);
  }
  await mutate?.(dir);
  await signModel(dir, { signer: keySigner(key) });
  return { root, dir };
}

export async function flip(path: string, at = 100): Promise<void> {
  const b = await Deno.readFile(path);
  b[Math.min(at, b.length - 1)]! ^= 0x01;
  await Deno.writeFile(path, b);
}

/** Waits past the guard's idle bound, so that the next load of a model is a new load (epoch). */
export const epoch = (): Promise<void> => new Promise((r) => setTimeout(r, 1600));

export function within<T>(p: Promise<T>, ms = 5000): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms (hang)`)), ms);
  });
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
}

export async function embed(model: string, extra: Record<string, unknown> = {}): Promise<number[]> {
  const pipe = await within(
    transformers.pipeline("feature-extraction", model, { dtype: "fp32", ...extra }),
  );
  const out = await pipe("hello world", { pooling: "mean" });
  await pipe.dispose();
  return Array.from(out.data as Float32Array);
}

export function assertClose(actual: number[], want: number[]): void {
  assert.equal(actual.length, want.length);
  actual.forEach((v, i) => assert.ok(Math.abs(v - want[i]!) < 1e-5, `[${i}] ${v} vs ${want[i]}`));
}

/** Loads and expects a clean, prompt refusal with no session and no stray rejection. */
export async function assertRefused(
  model: string,
  errorClass: new (...a: never[]) => Error,
  names: RegExp,
  extra: Record<string, unknown> = {},
  task: "feature-extraction" | "text2text-generation" | "text-generation" = "feature-extraction",
): Promise<Error> {
  const before = sessions;
  unhandled.length = 0;
  const error = await within(
    transformers.pipeline(task, model, { dtype: "fp32", ...extra }).then(
      () => assert.fail("the pipeline loaded"),
      (e: Error) => e,
    ),
  );
  assert.ok(error instanceof errorClass, `expected ${errorClass.name}, got ${error}`);
  assert.match(error.message, names);
  await new Promise((r) => setTimeout(r, 50));
  assert.deepEqual(unhandled, []);
  assert.equal(sessions, before, "an onnxruntime session was created");
  return error;
}

export async function guarded<T>(
  options: GuardOptions,
  fn: (guard: ReturnType<typeof guardTransformers>) => Promise<T>,
): Promise<T> {
  const guard = guardTransformers(transformers, { policy, weights: WEIGHTS, ...options });
  try {
    return await fn(guard);
  } finally {
    guard.uninstall();
    resetEnv();
    // A new model load epoch for the next test.
    await new Promise((r) => setTimeout(r, 10));
  }
}

export function local(root: string): void {
  env.localModelPath = root;
  env.allowRemoteModels = false;
  env.cacheKey = `guard-test-${crypto.randomUUID()}`;
}

/** A loopback hub serving `/{model}/resolve/{revision}/{file}` from folders. */
export function hub(folders: Record<string, string>) {
  const overrides = new Map<string, Uint8Array>();
  const streams = new Map<string, () => ReadableStream<Uint8Array>>();
  const hits: string[] = [];
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, async (req) => {
    const m = /^\/(.+?)\/resolve\/([^/]+)\/(.+)$/.exec(new URL(req.url).pathname);
    const folder = m && folders[m[1]!];
    if (!m || !folder) return new Response("no", { status: 404 });
    const file = decodeURIComponent(m[3]!);
    hits.push(file);
    const stream = streams.get(file);
    if (stream) return new Response(stream());
    const body = overrides.get(file) ??
      await Deno.readFile(`${folder}/${file}`).catch(() => undefined);
    return body
      ? new Response(body as Uint8Array<ArrayBuffer>)
      : new Response("missing", { status: 404 });
  });
  return {
    url: `http://127.0.0.1:${server.addr.port}/`,
    overrides,
    streams,
    hits,
    close: () => server.shutdown(),
  };
}

export async function tampered(path: string, at = 2000): Promise<Uint8Array> {
  const b = await Deno.readFile(path);
  b[at]! ^= 0x01;
  return b;
}
