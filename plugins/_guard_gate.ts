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

/** Largest buffer taken for a tensor-op graph (transformers.js' own are under 200 bytes). */
const MAX_OP_GRAPH_BYTES = 4096;
/** Most nodes in a tensor-op graph (transformers.js' have one). */
const MAX_OP_GRAPH_NODES = 8;

type Field = { field: number; wire: number; bytes?: Uint8Array; value?: number };

/** The fields of one protobuf message (small inputs only); `undefined` when malformed. */
function fieldsOf(buf: Uint8Array): Field[] | undefined {
  const out: Field[] = [];
  let at = 0;
  const varint = (): number | undefined => {
    let v = 0;
    for (let shift = 0; shift < 35; shift += 7) {
      if (at >= buf.length) return undefined;
      const b = buf[at++]!;
      v += (b & 0x7f) * 2 ** shift;
      if (b < 0x80) return v;
    }
    return undefined;
  };
  while (at < buf.length) {
    const tag = varint();
    if (tag === undefined) return undefined;
    const field = Math.floor(tag / 8), wire = tag & 7;
    if (field === 0) return undefined;
    if (wire === 0) {
      const value = varint();
      if (value === undefined) return undefined;
      out.push({ field, wire, value });
    } else if (wire === 2) {
      const n = varint();
      if (n === undefined || at + n > buf.length) return undefined;
      out.push({ field, wire, bytes: buf.subarray(at, at + n) });
      at += n;
    } else if (wire === 5 || wire === 1) {
      at += wire === 5 ? 4 : 8;
      if (at > buf.length) return undefined;
      out.push({ field, wire });
    } else return undefined;
  }
  return out;
}

const text = (b: Uint8Array | undefined) => new TextDecoder().decode(b);
const defaultDomain = (d: string) => d === "" || d === "ai.onnx";

/**
 * Whether `bytes` is a graph like the tensor ops transformers.js builds and
 * runs through onnxruntime itself (Resize, MatMul, STFT, DFT, TopK, Slice):
 * tiny, a few nodes of the default ONNX domain, no tensor anywhere, no
 * functions, and no attribute that holds more than one value, so it carries
 * no weights whatever its ops. Derived from the bytes rather than a list of
 * one transformers.js version's graphs; the only buffers the gate lets
 * through without a signature.
 */
async function isWeightlessGraph(bytes: Uint8Array): Promise<boolean> {
  if (bytes.byteLength > MAX_OP_GRAPH_BYTES) return false;
  const model = fieldsOf(bytes);
  if (!model) return false;
  let graphs = 0, nodes = 0;
  // ModelProto: ir_version, producer, domain, model_version, doc, graph, opset_import, metadata.
  for (const f of model) {
    if (![1, 2, 3, 4, 5, 6, 7, 8, 14].includes(f.field)) return false;
    if (f.field === 8) {
      const opset = fieldsOf(f.bytes ?? new Uint8Array());
      if (!opset || opset.some((o) => o.field === 1 && !defaultDomain(text(o.bytes)))) return false;
    }
    if (f.field !== 7) continue;
    graphs++;
    const graph = fieldsOf(f.bytes ?? new Uint8Array());
    // GraphProto: node, name, doc, input, output, value_info (no initializers of any kind).
    if (!graph || graph.some((g) => ![1, 2, 10, 11, 12, 13].includes(g.field))) return false;
    for (const g of graph) {
      if (g.field !== 1) continue;
      if (++nodes > MAX_OP_GRAPH_NODES) return false;
      const node = fieldsOf(g.bytes ?? new Uint8Array());
      // NodeProto: input, output, name, op_type, attribute, doc, domain.
      if (!node || node.some((n) => ![1, 2, 3, 4, 5, 6, 7].includes(n.field))) return false;
      if (node.some((n) => n.field === 7 && !defaultDomain(text(n.bytes)))) return false;
      if (node.some((n) => n.field === 4 && /^Constant/.test(text(n.bytes)))) return false;
      for (const n of node) {
        if (n.field !== 5) continue;
        const attr = fieldsOf(n.bytes ?? new Uint8Array());
        // AttributeProto: name, one float, one int, a short string, type, doc, ref name.
        if (!attr || attr.some((a) => ![1, 2, 3, 4, 13, 20, 21].includes(a.field))) return false;
        if (attr.some((a) => a.field === 4 && (a.bytes?.byteLength ?? 0) > 64)) return false;
      }
    }
  }
  if (graphs !== 1) return false;
  // And, as the hash reads it, no tensor at all.
  try {
    return (await readOnnx(bytesSource(bytes, "a tensor-op graph"))).length === 0;
  } catch {
    return false;
  }
}

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
      // Bytes the guard has decided (verified or refused) go by that decision;
      // only unknown bytes may pass as a weightless tensor-op graph.
      copy = copies.ofDigest(`sha256:${hex}`);
      if (!copy && await isWeightlessGraph(bytes)) return original.apply(self, args);
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
