// The store of verified weights: private file copies (or, in memory mode,
// verified buffers) that onnxruntime may open, the refusal markers that
// stand in for refused files, and the copies waiting for transformers.js to
// ask for them again. Invariant: a path or buffer the gate lets through is
// in this store with an allowed verdict, and its bytes are exactly the bytes
// that verdict was given for.
import { EvidenceError, SignatureMissing, SignError } from "../sign/errors.ts";
import { isPermissionError } from "../sign/_io_errors.ts";
import type { Decisions, ModelRecord } from "./_guard_decisions.ts";
import { readHashed, safeRelative, unrefTimer, VerifiedResponse } from "./_guard_io.ts";
import type { Chunks, FileRef, FileVerdict, GuardFiles } from "./_guard_types.ts";
import type { VerifiedStore } from "./_verified_store.ts";
import type { Tagged } from "./_cache_tags.ts";
import { sha256Hex } from "../hash/_digest.ts";

/** Verified weights wait this long for transformers.js to ask for them again. */
export const RECENT_MS = 30_000;

/** A private copy of a weight file, or the marker of a refused one. */
export type Handle = string | Uint8Array;

export interface PrivateCopy {
  ref: FileRef;
  verdict: FileVerdict;
  /** External-data locations its graph reads (`.onnx` only), relative to its folder. */
  locations: Set<string>;
  /** Other files that belong to it: the verified bytes a rewritten graph reads. */
  extra: string[];
  /** Read from transformers.js' cache (not to be written back to it). */
  cached?: boolean;
}

type Kept = {
  handle: Handle;
  copy: PrivateCopy;
  epoch: ModelRecord;
  timer: ReturnType<typeof setTimeout>;
};

/** Where kept weights wait: after a cache `put`, or after the guarded fetch (memory mode). */
export type Waiting = "ready" | "fetched";

/** Verified weights and refusal markers, by path, buffer and digest. */
export class VerifiedCopies {
  readonly #decisions: Decisions;
  readonly #files: GuardFiles | undefined;
  readonly #inMemory: boolean;
  readonly #workDir: string | undefined;
  /** Waiting for transformers.js to ask for them, by cache key. */
  readonly #waiting: Record<Waiting, Map<string, Kept>> = { ready: new Map(), fetched: new Map() };
  /** Every private copy (or refusal marker) by path: what onnxruntime may open. */
  readonly #byPath = new Map<string, PrivateCopy>();
  /** Verified buffers (or refusal markers): by identity, and by digest. */
  readonly #byBuffer = new WeakMap<ArrayBufferLike, PrivateCopy>();
  readonly #byDigest = new Map<string, PrivateCopy>();

  /** Warm starts: verified external-data files kept across processes. */
  store: Promise<VerifiedStore | undefined> | undefined;

  constructor(
    decisions: Decisions,
    files: GuardFiles | undefined,
    inMemory: boolean,
    workDir: string | undefined,
  ) {
    this.#decisions = decisions;
    this.#files = files;
    this.#inMemory = inMemory;
    this.#workDir = workDir;
  }

  /** The copy at a path onnxruntime was asked to open. */
  atPath(path: string): PrivateCopy | undefined {
    return this.#byPath.get(path);
  }

  /** The copy a buffer is (by identity), or holds the same bytes as (by digest). */
  ofBuffer(buffer: ArrayBufferLike): PrivateCopy | undefined {
    return this.#byBuffer.get(buffer);
  }

  ofDigest(digest: string): PrivateCopy | undefined {
    return this.#byDigest.get(digest);
  }

  /** Keeps verified weights for the next `match` of `key` (transformers.js asks twice). */
  remember(key: string, handle: Handle, copy: PrivateCopy, where: Waiting = "ready"): void {
    const map = this.#waiting[where];
    const old = map.get(key);
    if (old) clearTimeout(old.timer);
    const timer = setTimeout(() => {
      map.delete(key);
      this.release(handle, copy, 0);
    }, RECENT_MS);
    unrefTimer(timer);
    map.set(key, { handle, copy, epoch: this.#decisions.model(copy.ref.model), timer });
  }

  /** Takes the weights kept for `key` in this load of the model (an older load's are dropped). */
  take(key: string, where: Waiting = "ready"): Kept | undefined {
    const map = this.#waiting[where];
    const hit = map.get(key);
    if (!hit) return undefined;
    clearTimeout(hit.timer);
    map.delete(key);
    // (The copy's own model: a local file served under its hub key is the local model's.)
    if (hit.epoch === this.#decisions.model(hit.copy.ref.model)) return hit;
    this.release(hit.handle, hit.copy, 0);
    return undefined;
  }

  /** What `match` gives transformers.js for weights: a path, or a response over the bytes. */
  served(handle: Handle): string | Response {
    return typeof handle === "string" ? handle : new VerifiedResponse(handle);
  }

  /**
   * Forgets a copy after `delay` ms and removes its files (onnxruntime has
   * mapped or read them by then; a concurrent load of the same file may
   * still be creating its session). A path a newer copy took over is left to it.
   */
  release(handle: Handle, copy: PrivateCopy, delay: number): void {
    const timer = setTimeout(() => {
      if (typeof handle !== "string") {
        if (this.#byDigest.get(copy.verdict.digest) === copy) {
          this.#byDigest.delete(copy.verdict.digest);
        }
        return;
      }
      const current = this.#byPath.get(handle) === copy;
      if (current) this.#byPath.delete(handle);
      this.#files?.remove(current ? [handle, ...copy.extra] : copy.extra);
    }, delay);
    unrefTimer(timer);
  }

  /**
   * Takes in a weight file: reads it once, hashing as it goes, into a
   * private copy (files) or one buffer (memory), then decides it. Allowed
   * bytes are kept for onnxruntime; refused ones are dropped and the handle
   * is a marker that makes the gate throw the refusal (failing the load
   * inside transformers.js instead could hang it).
   */
  admit(
    ref: FileRef,
    chunks: Chunks,
    size: number | undefined,
    source?: string,
    tagged?: Tagged,
  ): Promise<{ handle: Handle; copy: PrivateCopy }> {
    const decisions = this.#decisions;
    const copyOf = (verdict: FileVerdict): PrivateCopy => ({
      ref,
      verdict,
      locations: new Set(),
      extra: [],
    });
    const marker = () => new TextEncoder().encode(`refused ${crypto.randomUUID()}`);
    return decisions.model(ref.model).track((async () => {
      if (this.#inMemory) {
        let read;
        try {
          // A tagged cache entry (browsers): read, not hashed, and decided
          // on the tagged digest; anything else about it is hashed after all.
          read = await readHashed(chunks, size, Infinity, tagged === undefined);
        } catch (error) {
          return this.#adoptBytes(
            marker(),
            copyOf(decisions.failure(ref, this.#readFailure(ref, error))),
          );
        }
        if (tagged !== undefined) {
          if (read.bytes.byteLength === tagged.size) {
            const v = await decisions.check(ref, tagged.digest, read.bytes, undefined, true);
            if (v.ok && v.evidence !== "none") return this.#adoptBytes(read.bytes, copyOf(v));
          }
          read.digest = `sha256:${await sha256Hex(read.bytes)}`;
        }
        const copy = copyOf(await decisions.check(ref, read.digest, read.bytes));
        return this.#adoptBytes(decisions.allowed(copy.verdict) ? read.bytes : marker(), copy);
      }
      const files = this.#files!;
      let path: string | undefined;
      let written: { temp: string; digest: string };
      const store = source !== undefined && safeRelative(ref.file) ? await this.store : undefined;
      const warm = store && await this.#warm(ref, source!);
      if (warm) {
        await chunks.close().catch(() => {});
        return warm;
      }
      const opened = store ? await chunks.identity?.().catch(() => undefined) : undefined;
      let read: Awaited<ReturnType<NonNullable<Chunks["identity"]>>> | undefined;
      let tempIno: string | undefined;
      try {
        if (!safeRelative(ref.file)) {
          throw new SignatureMissing(
            `Cannot load ${ref.file}: the file name leaves the model folder`,
            { file: `${ref.model.name}/${ref.file}` },
          );
        }
        path = await files.copyPath(ref);
        const raw = await files.writeTemp(path, chunks.next);
        written = { temp: raw.temp, digest: `sha256:${raw.digest}` };
        if (opened) {
          read = await chunks.identity?.().catch(() => undefined);
          tempIno = await files.inode?.(raw.temp).catch(() => undefined);
        }
      } catch (error) {
        const copy = copyOf(decisions.failure(ref, this.#readFailure(ref, error)));
        path ??= files.markerPath();
        this.#adopt(path, copy);
        return { handle: path, copy };
      } finally {
        await chunks.close().catch(() => {});
      }
      const verdict = await decisions.check(ref, written.digest, written.temp);
      const copy = copyOf(verdict);
      if (decisions.allowed(verdict)) await files.commit(written.temp, path);
      else await files.discard(written.temp);
      // Kept for warm starts only when verified (not merely let through).
      if (store && opened && read && tempIno && verdict.ok && verdict.evidence !== "none") {
        await store.record(
          ref.model.key,
          ref.file,
          source!,
          opened,
          read,
          written.digest,
          path,
          tempIno,
        ).catch(() => {});
      }
      this.#adopt(path, copy);
      return { handle: path, copy };
    })());
  }

  /**
   * Whether the verified store kept a copy of the weight file at `source`
   * (verified before, unchanged since): status calls only, nothing linked,
   * read or decided.
   */
  async kept(ref: FileRef, source: string): Promise<boolean> {
    if (this.#inMemory || !safeRelative(ref.file)) return false;
    return (await this.store)?.lookup(ref.model.key, ref.file, source) !== undefined;
  }

  /**
   * Warm start (private copies with a verified store): the kept copy of a
   * weight file at `source` verified before and unchanged since, linked into
   * the private folder and decided again on its recorded digest; `undefined`
   * (nothing read, nothing kept) when the store has none or the decision is
   * not a verification.
   */
  async #warm(
    ref: FileRef,
    source: string,
  ): Promise<{ handle: Handle; copy: PrivateCopy } | undefined> {
    const store = await this.store;
    const kept = store?.lookup(ref.model.key, ref.file, source);
    if (!store || !kept) return undefined;
    const files = this.#files!;
    let warmPath: string | undefined;
    try {
      warmPath = await files.copyPath(ref);
      await store.materialize(kept.blob, warmPath);
      const verdict = await this.#decisions.check(ref, kept.digest, warmPath, undefined, true);
      // Served only when evidence vouches for it; otherwise the cold path decides.
      if (verdict.ok && verdict.evidence !== "none") {
        const copy: PrivateCopy = { ref, verdict, locations: new Set(), extra: [] };
        this.#adopt(warmPath, copy);
        return { handle: warmPath, copy };
      }
      await files.remove([warmPath]);
    } catch {
      if (warmPath !== undefined) await files.remove([warmPath]);
    }
    return undefined;
  }

  /**
   * Our errors pass as they are; anything else (I/O, network, a missing
   * permission) is an `EvidenceError` that says what failed and what is needed.
   */
  #readFailure(ref: FileRef, error: unknown): Error {
    if (error instanceof SignError) return error;
    const message = error instanceof Error ? error.message : String(error);
    const folder = this.#workDir ?? "the system temporary folder";
    const where = this.#inMemory ? "" : ` (work folder: ${folder})`;
    const shown = `${ref.model.name}/${ref.file}`;
    if (isPermissionError(error)) {
      return new EvidenceError(
        "permission-denied",
        `Cannot load ${shown}: reading it into a verified copy failed${where}: ${message}; the guard needs to read the model${
          this.#inMemory ? "" : ` and to write the work folder`
        } (Deno: --allow-read${
          this.#inMemory ? "" : ` --allow-write=${this.#workDir ?? "<tmp>"}`
        })`,
        { file: shown, cause: error },
      );
    }
    return new EvidenceError(
      "unreadable",
      `Cannot load ${shown}: reading it into a verified copy failed${where}: ${message}`,
      { file: shown, cause: error },
    );
  }

  #adoptBytes(bytes: Uint8Array, copy: PrivateCopy): { handle: Handle; copy: PrivateCopy } {
    this.#byBuffer.set(bytes.buffer, copy);
    this.#byDigest.set(copy.verdict.digest, copy);
    return { handle: bytes, copy };
  }

  #adopt(path: string, copy: PrivateCopy): void {
    // Refused bytes are known by digest too: handed to onnxruntime as a
    // buffer, they are still the refused file (files mode passes verified
    // weights by path only).
    if (!copy.verdict.ok && copy.verdict.digest !== "") {
      this.#byDigest.set(copy.verdict.digest, copy);
    }
    const old = this.#byPath.get(path);
    this.#byPath.set(path, copy);
    if (old) this.release(path, old, RECENT_MS);
  }

  /** Rewrites a verified private `.onnx` so onnxruntime maps its weights (see _private_copy.ts). */
  async finishOnnx(handle: Handle, copy: PrivateCopy): Promise<void> {
    if (typeof handle !== "string" || !copy.ref.file.endsWith(".onnx")) return;
    if (!this.#decisions.allowed(copy.verdict)) return;
    // Warm starts: what a graph that needed no rewrite reads, by its digest
    // (a function of its bytes alone).
    const { ok, digest } = copy.verdict;
    const store = ok && digest !== "" ? await this.store : undefined;
    const known = store?.recall("onnx-locations", digest);
    if (Array.isArray(known) && known.every((l) => typeof l === "string")) {
      copy.locations = new Set(known);
      return;
    }
    const done = await this.#files!.finishOnnx(handle);
    copy.locations = done.locations;
    if (done.weights !== undefined) copy.extra.push(done.weights);
    else await store?.remember("onnx-locations", digest, [...done.locations]).catch(() => {});
  }

  /** Drops everything (uninstall). */
  clear(): void {
    for (const map of Object.values(this.#waiting)) {
      for (const { timer } of map.values()) clearTimeout(timer);
      map.clear();
    }
    this.#byPath.clear();
    this.#byDigest.clear();
    this.#files?.removeAll();
  }
}
