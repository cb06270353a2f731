// The gate on onnxruntime's InferenceSession.create: it opens only verified
// private copies (by path) or verified buffers (by identity or digest), plus
// the tensor-op graphs transformers.js embeds; external data must be
// verified bytes of the same model; and no session is created for a model
// while any of its files is refused.
import { sha256Hex } from "../hash/_digest.ts";
import { readOnnx } from "../hash/_onnx.ts";
import { bytesSource } from "../hash/_source.ts";
import { SignatureMissing } from "../sign/errors.ts";
import type { GuardCore } from "./_guard_core.ts";
import { type PrivateCopy, RECENT_MS } from "./_guard_copies.ts";
import type { ModelRecord } from "./_guard_decisions.ts";
import type { SessionClass } from "./_guard_types.ts";

// SHA-256 of the tensor-op graphs transformers.js 4.3.1 embeds (ops/registry.js)
// and runs through onnxruntime itself: the only buffers the gate lets through
// without a signature.
const TENSOR_OPS = new Set([
  "b21dfdb55f63bb28862eee536f553038c8c94dfb535f2fbf3d5014b59a11bb67",
  "e347f5dce9c5c5e6d94919ff633a6781bc3bf6ec312e85465869afbe29fe18aa",
  "0c13d523b5ac9f303482e60b8002b7d260d65243c56ea3b0b425c694c189e9ff",
  "6434577e4f88c7e2a2d6104f32403377b6d08fe64e6ce0ee3888101088087ffb",
  "69fe4fe6ed0caac937254cf0b3bd74bb850fdaeb3e4004299378fcb56a835c5a",
  "254de38be606291fee48e9ea5bd98da760e654e5602de8e0409e9dd7e466f11d",
  "79195acd6a86924e9d1f4139ce762b6a5fd989748dde01ce7d3a6127e52a8217",
  "07f1a48f57b8963d9fb4303807bcf1d804db6145cdcf9a927ecb83d80dceb89e",
]);

const unverified = (what: string, file: string) =>
  new SignatureMissing(`Cannot create an onnxruntime session: ${what}`, { file });

/** The `create` the guard puts on each InferenceSession class. */
export class SessionGate {
  readonly #core: GuardCore;

  constructor(core: GuardCore) {
    this.#core = core;
  }

  #refuseOrWarn(error: Error, key: string): void {
    if (this.#core.mode === "enforce") throw error;
    if (!this.#core.warned.has(key)) {
      this.#core.warned.add(key);
      console.warn(
        `safemodels: creating the onnxruntime session anyway (warn mode): ${error.message}`,
      );
    }
  }

  /** Waits for the model's other files and fails if any (or this one) was refused. */
  async #settled(copy: PrivateCopy): Promise<ModelRecord> {
    if (!copy.verdict.ok && this.#core.mode === "enforce") throw copy.verdict.error;
    return await this.#core.decisions.settled(copy.ref.model);
  }

  /** Gates one `create` call. */
  async create(
    original: SessionClass["create"],
    self: unknown,
    args: unknown[],
  ): Promise<unknown> {
    const [model] = args;
    if (typeof model === "string") return await this.#createFromPath(original, self, args, model);
    // Bytes: verified weights (by identity or digest), or transformers.js' own tensor ops.
    const { copies } = this.#core;
    const bytes = model instanceof Uint8Array ? model : new Uint8Array(
      model as ArrayBuffer,
      typeof args[1] === "number" ? args[1] : 0,
      typeof args[2] === "number" ? args[2] : undefined,
    );
    const whole = bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength;
    let copy = whole ? copies.ofBuffer(bytes.buffer) : undefined;
    const hex = copy ? undefined : await sha256Hex(bytes);
    if (hex !== undefined) {
      if (TENSOR_OPS.has(hex)) return original.apply(self, args);
      copy = copies.ofDigest(`sha256:${hex}`);
    }
    if (!copy) {
      this.#refuseOrWarn(
        new SignatureMissing(
          `Cannot create an onnxruntime session: the model (sha256 ${hex}) was not loaded through the guarded transformers.js`,
        ),
        `unknown\0${hex}`,
      );
      return original.apply(self, args);
    }
    const shown = `${copy.ref.model.name}/${copy.ref.file}`;
    const rec = await this.#settled(copy);
    const options =
      (model instanceof Uint8Array
        ? args[1]
        : args.find((a, i) => i > 0 && typeof a === "object")) as
          | { externalData?: unknown[] }
          | undefined;
    // External data must come as verified bytes of the same model; a path
    // would be opened (or fetched) by onnxruntime unverified.
    const external = new Map<string, Uint8Array>();
    for (const entry of options?.externalData ?? []) {
      const e = entry as { path?: unknown; data?: unknown };
      const name = typeof e.path === "string" ? e.path : String(entry);
      const data = e.data instanceof Uint8Array
        ? e.data
        : e.data instanceof ArrayBuffer
        ? new Uint8Array(e.data)
        : undefined;
      if (data === undefined) {
        this.#refuseOrWarn(
          unverified(`external data ${name} is not in memory, so it was not verified`, shown),
          `ext\0${name}`,
        );
        continue;
      }
      const whole = data.byteOffset === 0 && data.byteLength === data.buffer.byteLength;
      const ext = (whole ? copies.ofBuffer(data.buffer) : undefined) ??
        copies.ofDigest(`sha256:${await sha256Hex(data)}`);
      if (!ext || ext.ref.model.key !== copy.ref.model.key) {
        this.#refuseOrWarn(
          unverified(
            `external data ${name} was not loaded through the guarded transformers.js`,
            shown,
          ),
          `ext\0${name}`,
        );
      } else if (!ext.verdict.ok && this.#core.mode === "enforce") {
        throw ext.verdict.error;
      }
      external.set(name.replace(/^(?:\.\/)+/, ""), data);
    }
    // Every external-data file the graph names must be one of those; else
    // onnxruntime would look for it itself (the working directory, a URL).
    try {
      await readOnnx(bytesSource(bytes, shown), {
        openExternal: (location) => {
          const data = external.get(location);
          if (data) return Promise.resolve(bytesSource(data, location));
          return Promise.reject(
            unverified(
              `the model reads external data "${location}", which was not loaded and verified through transformers.js (set use_external_data_format)`,
              shown,
            ),
          );
        },
      });
    } catch (error) {
      this.#refuseOrWarn(error as Error, `graph\0${shown}`);
    }
    await this.#core.decisions.lockOnFirstUse(rec);
    return original.apply(self, args);
  }

  async #createFromPath(
    original: SessionClass["create"],
    self: unknown,
    args: unknown[],
    model: string,
  ): Promise<unknown> {
    const { copies } = this.#core;
    const files = this.#core.platform.files;
    const path = files?.resolve(model) ?? model;
    const copy = copies.atPath(path);
    if (!copy) {
      this.#refuseOrWarn(
        unverified(
          "this path is not a copy the guard verified (load models through the guarded transformers.js)",
          model,
        ),
        `path\0${model}`,
      );
      return original.apply(self, args);
    }
    const shown = `${copy.ref.model.name}/${copy.ref.file}`;
    const rec = await this.#settled(copy);
    // Bytes given beside the path would reach onnxruntime unverified.
    const options = args[1] as { externalData?: unknown[] } | undefined;
    for (const entry of options?.externalData ?? []) {
      if (typeof entry === "string") continue;
      const name = String((entry as { path?: unknown }).path);
      this.#refuseOrWarn(
        unverified(
          `external data ${name} is given as bytes or a path of its own, so it was not verified`,
          shown,
        ),
        `ext\0${name}`,
      );
    }
    // onnxruntime opens external data beside the copy: each must be a verified copy too.
    const used: [string, PrivateCopy][] = [[path, copy]];
    for (const location of copy.locations) {
      const beside = files!.beside(model, location);
      const ext = copies.atPath(beside);
      if (!ext || ext.ref.model.key !== copy.ref.model.key) {
        this.#refuseOrWarn(
          unverified(
            `the model reads external data "${location}", which was not loaded and verified through transformers.js (set use_external_data_format)`,
            shown,
          ),
          `graph\0${shown}\0${location}`,
        );
        continue;
      }
      if (!ext.verdict.ok && this.#core.mode === "enforce") throw ext.verdict.error;
      used.push([beside, ext]);
    }
    await this.#core.decisions.lockOnFirstUse(rec);
    try {
      return await original.apply(self, args);
    } finally {
      for (const [p, c] of used) copies.release(p, c, RECENT_MS);
    }
  }
}
