// The guard's record of decisions per model: the evidence each model carries
// (its root model.sig, read once per load; each ONNX file's embedded
// signature; the lockfile's entry), each file decided by sign/'s decideFile,
// and what was decided (records, refusals that poison the model's session,
// what to pin on first use). No rules of its own: gathering evidence and
// keeping score.
import { type ByteSource, bytesSource, openSource } from "../hash/_source.ts";
import { EvidenceError, PolicyError } from "../sign/errors.ts";
import { decideFile, type OmsFinding, type Verdict } from "../sign/evidence.ts";
import { labelsFor, measureExpected, workersFor } from "../sign/_oms_digest.ts";
import { lockedSigner, Lockfile } from "../sign/lockfile.ts";
import type { TrustPolicy } from "../sign/policy.ts";
import type { VerifiedSigner } from "../sign/types.ts";
import { omsFinding, onnxFinding, pinFinding } from "../sign/_findings.ts";
import { findingFromJson, findingKey, findingToJson } from "../sign/_finding_memo.ts";
import { Locator } from "./_guard_locate.ts";
import { MAX_EVIDENCE_BYTES, readBoundedText } from "../sign/_json.ts";
import type {
  FileRef,
  FileVerdict,
  GuardFiles,
  GuardRecord,
  Memo,
  ModelRef,
  Store,
  TransformersEnv,
  Verifiers,
} from "./_guard_types.ts";

/** A model that saw no request for this long starts afresh (signature re-read). */
const IDLE_MS = 1500;

/** One load of one model: what was found and decided, and what is still running. */
export class ModelRecord {
  readonly ref: ModelRef;
  /** The model root's model.sig, read once per load. */
  oms: Promise<OmsFinding> | undefined;
  last: number;
  /** Reads and checks of this model's files still running (the gate waits for them). */
  readonly inflight: Set<Promise<unknown>> = new Set();
  /** Files refused in enforce mode: no session for this model while any is here. */
  readonly refusals: Map<string, Error> = new Map();
  /** Files vouched for by evidence, with their digests (for lock on first use). */
  readonly verified: Map<string, string> = new Map();
  signer: VerifiedSigner | undefined;
  readonly reported: Set<string> = new Set();
  /**
   * Verdicts of this load by file, digest, measurements and whether it is
   * reached through a link: transformers.js asks for a file more than once
   * (and through fetch and cache), and the same bytes under the same
   * evidence get the same verdict.
   */
  readonly decided: Map<string, Promise<FileVerdict>> = new Map();

  constructor(ref: ModelRef) {
    this.ref = ref;
    this.last = Date.now();
  }

  /** Runs `p` as part of this load (the gate waits for it). */
  track<T>(p: Promise<T>): Promise<T> {
    this.inflight.add(p);
    const done = () => {
      this.inflight.delete(p);
      this.last = Date.now();
    };
    p.then(done, done);
    return p;
  }
}

/** What {@linkcode Decisions} needs from the rest of the guard. */
export interface DecisionContext {
  env: TransformersEnv;
  policy: TrustPolicy;
  mode: "enforce" | "warn";
  frozen: boolean;
  lockfile: string | Lockfile | undefined;
  onReport: ((record: GuardRecord) => void) | undefined;
  files: GuardFiles | undefined;
  verifiers: Verifiers | undefined;
  /** The fetch transformers.js had before the guard. */
  fetch: TransformersEnv["fetch"];
  /** The cache transformers.js would use now. */
  store(): Store | undefined;
  /** Where verifications are remembered (the verified store), if anywhere. */
  memo?(): Promise<Memo | undefined> | undefined;
}

/** Decides files and keeps the record of each model's decisions. */
export class Decisions {
  readonly records: GuardRecord[] = [];
  readonly #models = new Map<string, ModelRecord>();
  readonly #warned = new Set<string>();
  readonly #ctx: DecisionContext;
  #lockfile: Promise<Lockfile | undefined> | undefined;

  constructor(ctx: DecisionContext) {
    this.#ctx = ctx;
  }

  /** Whether bytes with this verdict may be used (refusals pass in warn mode). */
  allowed(v: FileVerdict): boolean {
    return v.ok || this.#ctx.mode === "warn";
  }

  /** The current load of a model (a new one after a pause). */
  model(ref: ModelRef): ModelRecord {
    const now = Date.now();
    let rec = this.#models.get(ref.key);
    if (!rec || (now - rec.last > IDLE_MS && rec.inflight.size === 0)) {
      rec = new ModelRecord(ref);
      this.#models.set(ref.key, rec);
    }
    rec.last = now;
    return rec;
  }

  /**
   * Starts reading a model's evidence (its model.sig, verified or recalled)
   * when the model is first seen (a cache lookup of its first file), so it
   * overlaps transformers.js' own work instead of waiting for the first
   * byte. The same finding any later decision of this load would read.
   */
  prepare(ref: ModelRef): void {
    if (ref.unplaced !== undefined) return;
    // Awaited by each decision; not a rejection left unhandled meanwhile.
    this.#omsOf(this.model(ref), ref).catch(() => {});
  }

  /** The model's evidence for this load, read once (the first caller starts it). */
  #omsOf(rec: ModelRecord, ref: ModelRef): Promise<OmsFinding> {
    return rec.oms ??= this.#loadOms(ref);
  }

  lockfile(): Promise<Lockfile | undefined> {
    const l = this.#ctx.lockfile;
    return this.#lockfile ??= l === undefined
      ? Promise.resolve(undefined)
      : typeof l === "string"
      ? Lockfile.load(l)
      : Promise.resolve(l);
  }

  /** The model asked for, as the decision sees it. */
  #asked(ref: ModelRef): { name: string; version: string | undefined } {
    return { name: ref.name, version: this.#ctx.policy.models?.[ref.name]?.version };
  }

  /**
   * Decides a file from its digest (`sha256:<hex>`) and, for `.onnx` files
   * that may carry an embedded signature, its bytes or the path of the
   * private copy holding them.
   */
  check(
    ref: FileRef,
    digest: string,
    input?: Uint8Array | string,
    digests?: Record<string, string>,
    warm = false,
  ): Promise<FileVerdict> {
    const rec = this.model(ref.model);
    const { files } = this.#ctx;
    return rec.track((async () => {
      const linked = ref.model.root !== undefined && files !== undefined
        ? await files.isLinked(ref.model.root, ref.file)
        : false;
      const key = `${ref.file}\0${digest}\0${JSON.stringify(digests ?? null)}\0${warm}\0${linked}`;
      let decided = rec.decided.get(key);
      if (decided === undefined) {
        decided = (async () => {
          let v: FileVerdict;
          try {
            v = toFileVerdict(await this.#decide(rec, ref, digest, input, digests, linked), digest);
          } catch (error) {
            v = { ok: false, digest, evidence: "none", error: error as Error };
          }
          if (warm) v.warm = true;
          return v;
        })();
        rec.decided.set(key, decided);
      }
      const v = await decided;
      // Score is kept at every check (a reused refusal poisons the model
      // again); the record itself is made once.
      this.report(rec, ref, v);
      return v;
    })());
  }

  /** The lockfile's finding for a model as the decision asks for it. */
  async #pins(ref: ModelRef): Promise<ReturnType<typeof pinFinding>> {
    const asked = this.#asked(ref);
    return pinFinding(
      await this.lockfile(),
      asked.name,
      asked.version ?? ref.revision,
      this.#ctx.frozen,
    );
  }

  /**
   * What is known of a file before its bytes move: the SHA-256 digests a
   * lockfile pin and a verified model.sig (loaded here, so before any weight)
   * expect, and the hub commit a pin was read at (`lock hf://…`).
   */
  async expectation(ref: FileRef): Promise<{ sha256: string[]; pinned: boolean; commit?: string }> {
    if (ref.model.unplaced !== undefined) return { sha256: [], pinned: false };
    const rec = this.model(ref.model);
    const oms = await this.#omsOf(rec, ref.model);
    const pins = await this.#pins(ref.model);
    const pinned = pins?.entry?.digests[ref.file];
    const signed = oms.$case === "verified" ? oms.resources.get(ref.file) : undefined;
    const sha256 = [...new Set([pinned, signed].filter((d) => d?.startsWith("sha256:")))];
    return {
      sha256: sha256 as string[],
      pinned: pinned !== undefined,
      ...(pins?.entry?.commit ? { commit: pins.entry.commit } : {}),
    };
  }

  /**
   * What a file must be measured with beyond SHA-256 (the model's model.sig
   * may sign BLAKE2b digests or shards), and the signed value, so that a
   * stream can be measured as it passes.
   */
  async measureFor(ref: FileRef): Promise<{ label: string; expected: string | undefined }[]> {
    const rec = this.model(ref.model);
    if (ref.model.unplaced !== undefined) return [];
    const oms = await this.#omsOf(rec, ref.model);
    if (oms.$case !== "verified") return [];
    return labelsFor(oms, ref.file).map((label) => ({
      label,
      expected: oms.resources.get(ref.file),
    }));
  }

  async #decide(
    rec: ModelRecord,
    ref: FileRef,
    digest: string,
    input: Uint8Array | string | undefined,
    digests: Record<string, string> | undefined,
    linked: boolean,
  ): Promise<Verdict> {
    const { policy, verifiers } = this.#ctx;
    const shown = `${ref.model.name}/${ref.file}`;
    if (ref.model.unplaced !== undefined) {
      return {
        $case: "refused",
        evidence: "none",
        error: new PolicyError("refused-file", `Cannot load ${ref.file}: ${ref.model.unplaced}`, {
          file: shown,
        }),
      };
    }
    const oms = await this.#omsOf(rec, ref.model);
    const asked = this.#asked(ref.model);
    const pins = pinFinding(
      await this.lockfile(),
      asked.name,
      asked.version ?? ref.model.revision,
      this.#ctx.frozen,
    );
    let embedded;
    if (oms.$case === "absent" && verifiers && input !== undefined && ref.file.endsWith(".onnx")) {
      const source = typeof input === "string"
        ? named(await openSource(input), shown)
        : bytesSource(input, shown);
      try {
        embedded = await onnxFinding(source, policy, verifiers.signed, shown);
      } finally {
        await source.close();
      }
    }
    // A model.sig with BLAKE2b digests or shards: measure the bytes so.
    if (oms.$case === "verified" && digests === undefined && input !== undefined) {
      const labels = labelsFor(oms, ref.file);
      if (labels.length > 0) {
        const source = typeof input === "string"
          ? named(await openSource(input), shown)
          : bytesSource(input, shown);
        try {
          digests = {};
          for (const label of labels) {
            digests[label] = await measureExpected(label, source, oms.resources.get(ref.file), {
              workers: workersFor(source.size),
            });
          }
        } finally {
          await source.close();
        }
      }
    }
    return decideFile({
      model: asked,
      file: ref.file,
      linked,
      digest,
      digests,
      oms,
      embedded,
      pins,
      policy,
      shown,
    });
  }

  /** The model root's model.sig: from the folder, the cache or the hub, within bounds. */
  async #loadOms(ref: ModelRef): Promise<OmsFinding> {
    const { verifiers, files, policy, env } = this.#ctx;
    // Without signature checks, only the lockfile can vouch for a file.
    if (!verifiers) return { $case: "absent" };
    const verify = async (text: string | undefined): Promise<OmsFinding> => {
      // Warm starts: these very bytes verified under this policy before.
      const memo = text === undefined ? undefined : await this.#ctx.memo?.();
      const key = memo && await findingKey(text!, policy);
      if (memo && key) {
        const kept = findingFromJson(
          memo.recall("oms-finding", key),
          ref.signature,
        );
        if (kept) return kept;
      }
      const found = (await omsFinding(text, policy, verifiers.signed, ref.signature)).finding;
      if (memo && key && found.$case === "verified") {
        await memo.remember("oms-finding", key, findingToJson(found)).catch(() => {});
      }
      return found;
    };
    if (ref.base === undefined && files) {
      try {
        return await verify(
          await files.readEvidence(ref.signature, "the model's signature", MAX_EVIDENCE_BYTES),
        );
      } catch (error) {
        return { $case: "refused", error: error as EvidenceError };
      }
    }
    const sigRef = { model: ref, file: "model.sig" };
    const store = this.#ctx.store();
    const body = await store?.open(ref.signature, sigRef).catch(() => undefined);
    if (body) {
      const cached = await readBoundedText(body, "the model's signature", MAX_EVIDENCE_BYTES)
        .catch(() => undefined);
      if (cached !== undefined) {
        const v = await verify(cached);
        if (v.$case === "verified") return v;
      }
      await store?.delete(ref.signature, sigRef).catch(() => {});
    }
    if (!env.allowRemoteModels) return { $case: "absent" };
    let res: Response;
    try {
      // A model pinned at a hub commit: its signature at that commit too.
      const commit = (await this.#pins(ref).catch(() => undefined))?.entry?.commit;
      const url = commit !== undefined && commit !== ref.revision
        ? new Locator(this.#ctx.env, undefined).atRevision(
          ref.signature,
          { model: ref, file: "model.sig" },
          commit,
        ) ?? ref.signature
        : ref.signature;
      res = await this.#ctx.fetch(url);
    } catch (cause) {
      return {
        $case: "refused",
        error: new EvidenceError(
          "unreadable",
          `Cannot fetch the model's signature: ${(cause as Error)?.message ?? cause}`,
          { file: ref.signature, cause },
        ),
      };
    }
    if (res.status === 404) {
      await res.body?.cancel();
      return { $case: "absent" };
    }
    if (!res.ok || !res.body) {
      await res.body?.cancel();
      return {
        $case: "refused",
        error: new EvidenceError(
          "unreadable",
          `Cannot fetch the model's signature: the server answered ${res.status}`,
          { file: ref.signature },
        ),
      };
    }
    let text: string;
    try {
      text = await readBoundedText(
        res.body,
        "the model's signature",
        MAX_EVIDENCE_BYTES,
        ref.signature,
      );
    } catch (error) {
      return {
        $case: "refused",
        error: error instanceof EvidenceError ? error : new EvidenceError(
          "unreadable",
          `Cannot fetch the model's signature: ${(error as Error)?.message ?? error}`,
          { file: ref.signature, cause: error },
        ),
      };
    }
    const v = await verify(text);
    if (v.$case === "verified") {
      await store?.put(ref.signature, sigRef, new TextEncoder().encode(text), "application/json")
        .catch(() => {});
    }
    return v;
  }

  /** A file that could not be read in: its refusal, reported. */
  failure(ref: FileRef, error: Error): FileVerdict {
    const v: FileVerdict = { ok: false, digest: "", evidence: "none", error };
    this.report(this.model(ref.model), ref, v);
    return v;
  }

  /** Records a verdict (once per file, digest and outcome) and keeps score for the gate. */
  report(rec: ModelRecord, ref: FileRef, v: FileVerdict): void {
    const { mode } = this.#ctx;
    const verdict: GuardRecord["verdict"] = v.ok
      ? v.evidence === "none" ? "warned" : "verified"
      : mode === "warn"
      ? "warned"
      : "refused";
    const reason = v.error?.message ??
      (v.evidence === "none" ? "no evidence; the policy makes signatures optional" : undefined);
    const code = (v.error as { code?: unknown } | undefined)?.code;
    const key = `${ref.file}\0${v.digest}\0${verdict}\0${reason ?? ""}\0${v.warm ? "warm" : ""}`;
    if (v.ok && v.evidence !== "none") {
      rec.verified.set(ref.file, v.digest);
      rec.signer ??= v.signer;
    }
    if (v.ok) rec.refusals.delete(ref.file);
    else if (mode === "enforce") rec.refusals.set(ref.file, v.error!);
    if (rec.reported.has(key)) return;
    rec.reported.add(key);
    const record: GuardRecord = {
      model: ref.model.name,
      file: ref.file,
      digest: v.digest,
      ...(v.signer ? { signer: v.signer } : {}),
      evidence: v.evidence,
      verdict,
      ...(reason !== undefined ? { reason } : {}),
      ...(typeof code === "string" ? { code } : {}),
      ...(v.warm ? { warm: true as const } : {}),
    };
    this.records.push(record);
    if (verdict === "warned" && !v.ok && !this.#warned.has(key)) {
      this.#warned.add(key);
      console.warn(
        `safemodels: loading ${ref.model.name}/${ref.file} anyway (warn mode): ${reason}`,
      );
    }
    this.#ctx.onReport?.(record);
  }

  /** Waits for a model's other files (tokenizer, config) and throws if any was refused. */
  async settled(ref: ModelRef): Promise<ModelRecord> {
    const rec = this.model(ref);
    await afterPendingIo();
    while (rec.inflight.size > 0) await Promise.allSettled([...rec.inflight]);
    const poisoned = [...rec.refusals.values()][0];
    if (poisoned && this.#ctx.mode === "enforce") throw poisoned;
    return rec;
  }

  /** Records a model in the lockfile the first time it loads with evidence (unless frozen). */
  async lockOnFirstUse(rec: ModelRecord): Promise<void> {
    const lock = await this.lockfile();
    if (!lock || this.#ctx.frozen || rec.verified.size === 0) return;
    const asked = this.#asked(rec.ref);
    const version = asked.version ?? rec.ref.revision;
    let found;
    try {
      found = lock.find(asked.name, version);
    } catch {
      return; // Several versions pinned: the decision refused already.
    }
    if (found.entry !== undefined) return;
    lock.record(asked.name, version ?? "unversioned", {
      digests: Object.fromEntries(rec.verified),
      ...(rec.signer ? { signer: lockedSigner(rec.signer) } : {}),
    });
    if (typeof this.#ctx.lockfile === "string") await lock.save(this.#ctx.lockfile);
  }
}

function toFileVerdict(v: Verdict, digest: string): FileVerdict {
  switch (v.$case) {
    case "verified":
      return { ok: true, digest, evidence: v.evidence, signer: v.signer };
    case "unsigned":
      return { ok: true, digest, evidence: "none" };
    case "refused":
      return { ok: false, digest, evidence: v.evidence, error: v.error };
  }
}

/**
 * Resolves once callbacks of I/O already completed have run (so reads of the
 * model's other files that have progressed are tracked): setImmediate where
 * there is one (Deno, Node; setTimeout(0) waits about 2 ms in Deno),
 * otherwise setTimeout(0) (browsers).
 */
function afterPendingIo(): Promise<void> {
  const immediate = (globalThis as { setImmediate?: (f: () => void) => unknown }).setImmediate;
  return new Promise((r) => immediate ? immediate(r) : setTimeout(r, 0));
}

/** A source that names itself as the model file (not the private copy). */
function named(source: ByteSource, name: string): ByteSource {
  return {
    name,
    size: source.size,
    ...(source.path !== undefined ? { path: source.path } : {}),
    read: (offset, length) => source.read(offset, length),
    close: () => source.close(),
  };
}
