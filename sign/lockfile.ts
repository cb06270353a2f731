import { HashMismatch, InvalidSignature } from "./errors.ts";
import type { VerifiedSigner } from "./types.ts";

/** The signer recorded in a lockfile (what identifies it, nothing secret). */
export interface LockedSigner {
  /** How it signed. */
  kind: VerifiedSigner["kind"];
  /** Certificate identities (keyless, certificate). */
  identities: string[];
  /** OIDC issuer (keyless). */
  issuer?: string;
  /** SHA-256 of the public key (key) or, for certificates, of the leaf key. */
  keyFingerprint?: string;
}

/** What was seen for one model name and version. */
export interface LockEntry {
  /** Digest per file (relative name) or per hash kind (e.g. `"tensors"`). */
  digests: Record<string, string>;
  /** Who signed it, when it was signed. */
  signer?: LockedSigner;
}

/** Options for {@linkcode Lockfile.check}. */
export interface LockCheckOptions {
  /**
   * Refuse any model not already in the lockfile instead of recording it.
   * @default {false}
   */
  frozen?: boolean;
}

/** Outcome of {@linkcode Lockfile.check}. */
export type LockResult = "matched" | "recorded";

const sortKeys = (o: Record<string, string>) =>
  Object.fromEntries(Object.entries(o).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));

/**
 * The `safemodels.lock` file: per model name and version, the digests and the
 * signer seen. Trust on first use records a model; a later different digest or
 * signer fails with a readable diff; a frozen lockfile refuses anything not
 * already locked. The seed project's hash database, done right. JSON with a
 * stable key order, so it diffs well in version control.
 *
 * @example Trust on first use, then a refusal
 * ```ts
 * import { HashMismatch, Lockfile } from "@safemodels/safemodels/sign";
 * import assert from "node:assert/strict";
 *
 * const lock = new Lockfile();
 * assert.equal(lock.check("tiny", "1.0", { digests: { "model.onnx": "aa" } }), "recorded");
 * assert.equal(lock.check("tiny", "1.0", { digests: { "model.onnx": "aa" } }), "matched");
 * assert.throws(() => lock.check("tiny", "1.0", { digests: { "model.onnx": "bb" } }), HashMismatch);
 * ```
 */
export class Lockfile {
  readonly #models = new Map<string, LockEntry>();

  /**
   * Creates a lockfile, empty or from parsed JSON.
   *
   * @param data Parsed lockfile JSON.
   * @throws {SyntaxError} When `data` is not a lockfile.
   */
  constructor(data?: unknown) {
    if (data === undefined) return;
    const d = data as { version?: unknown; models?: unknown };
    if (
      typeof d !== "object" || d === null || d.version !== 1 || typeof d.models !== "object" ||
      d.models === null
    ) {
      throw new SyntaxError('Cannot read lockfile: expected {"version": 1, "models": {...}}');
    }
    for (const [key, entry] of Object.entries(d.models as Record<string, unknown>)) {
      const e = entry as LockEntry;
      if (
        typeof e !== "object" || e === null || typeof e.digests !== "object" ||
        e.digests === null ||
        !Object.values(e.digests).every((v) => typeof v === "string")
      ) {
        throw new SyntaxError(
          `Cannot read lockfile: entry "${key}" has no digests object of strings`,
        );
      }
      this.#models.set(key, {
        digests: { ...e.digests },
        ...(e.signer ? { signer: e.signer } : {}),
      });
    }
  }

  /**
   * Reads a lockfile; a missing file gives an empty lockfile. Deno and Node.
   *
   * @param path The lockfile path (e.g. `safemodels.lock`).
   * @returns The lockfile.
   * @throws {SyntaxError} When the file is not a lockfile.
   */
  static async load(path: string): Promise<Lockfile> {
    const { readFile } = await import("node:fs/promises");
    let text: string;
    try {
      text = await readFile(path, "utf8");
    } catch (e) {
      if ((e as { code?: string }).code === "ENOENT") return new Lockfile();
      throw e;
    }
    try {
      return new Lockfile(JSON.parse(text));
    } catch (e) {
      throw new SyntaxError(`${path}: ${(e as Error).message}`, { cause: e });
    }
  }

  /**
   * Writes the lockfile atomically (temporary file, then rename). Deno and Node.
   *
   * @param path The lockfile path.
   */
  async save(path: string): Promise<void> {
    const { writeFile, rename } = await import("node:fs/promises");
    const tmp = `${path}.${crypto.randomUUID().slice(0, 8)}.tmp`;
    await writeFile(tmp, JSON.stringify(this.toJSON(), null, 2) + "\n");
    await rename(tmp, path);
  }

  /**
   * The lockfile as JSON, keys sorted.
   *
   * @returns `{ version: 1, models: { "name@version": { digests, signer? } } }`.
   */
  toJSON(): { version: 1; models: Record<string, LockEntry> } {
    const models: Record<string, LockEntry> = {};
    for (const key of [...this.#models.keys()].sort()) {
      const e = this.#models.get(key)!;
      models[key] = { digests: sortKeys(e.digests), ...(e.signer ? { signer: e.signer } : {}) };
    }
    return { version: 1, models };
  }

  /**
   * The entry for a model, if locked.
   *
   * @param name Model name.
   * @param version Model version.
   * @returns The entry or `undefined`.
   */
  get(name: string, version: string): LockEntry | undefined {
    return this.#models.get(`${name}@${version}`);
  }

  /**
   * Checks what was seen against the lockfile, recording it on first use
   * (unless frozen).
   *
   * @param name Model name.
   * @param version Model version (a commit, tag or release).
   * @param seen The digests (and signer) seen now.
   * @param options `frozen` refuses unknown models.
   * @returns `"matched"` or `"recorded"`.
   * @throws {HashMismatch} When a digest differs from the locked one (the message lists every difference).
   * @throws {InvalidSignature} `"lock-mismatch"` when the signer differs, `"not-locked"` when frozen and absent.
   */
  check(
    name: string,
    version: string,
    seen: LockEntry,
    options: LockCheckOptions = {},
  ): LockResult {
    const key = `${name}@${version}`;
    const locked = this.#models.get(key);
    if (!locked) {
      if (options.frozen) {
        throw new InvalidSignature(
          "not-locked",
          `Cannot accept ${key}: the lockfile is frozen and has no entry for it`,
        );
      }
      this.#models.set(key, {
        digests: { ...seen.digests },
        ...(seen.signer ? { signer: seen.signer } : {}),
      });
      return "recorded";
    }
    const diff: string[] = [];
    for (const file of new Set([...Object.keys(locked.digests), ...Object.keys(seen.digests)])) {
      const was = locked.digests[file];
      const now = seen.digests[file];
      if (was !== now) {
        diff.push(`  ${file}: locked ${was ?? "(absent)"}, now ${now ?? "(absent)"}`);
      }
    }
    if (diff.length > 0) {
      const e = new HashMismatch(
        Object.values(locked.digests).join(","),
        Object.values(seen.digests).join(","),
      );
      e.message = `Cannot accept ${key}: its digests differ from the lockfile:\n${diff.join("\n")}`;
      throw e;
    }
    if (locked.signer && seen.signer && !sameSigner(locked.signer, seen.signer)) {
      throw new InvalidSignature(
        "lock-mismatch",
        `Cannot accept ${key}: signed by ${describe(seen.signer)}, but the lockfile records ${
          describe(locked.signer)
        }`,
      );
    }
    return "matched";
  }
}

function sameSigner(a: LockedSigner, b: LockedSigner): boolean {
  return a.kind === b.kind && a.issuer === b.issuer && a.keyFingerprint === b.keyFingerprint &&
    JSON.stringify([...a.identities].sort()) === JSON.stringify([...b.identities].sort());
}

function describe(s: LockedSigner): string {
  const who = s.identities.length > 0 ? s.identities.join(", ") : `key ${s.keyFingerprint ?? "?"}`;
  return `${s.kind} ${who}${s.issuer ? ` (issuer ${s.issuer})` : ""}`;
}

/**
 * The part of a verified signer a lockfile records.
 *
 * @param signer A verified signer.
 * @returns What identifies it.
 *
 * @example
 * ```ts
 * import { lockedSigner } from "@safemodels/safemodels/sign";
 * import assert from "node:assert/strict";
 *
 * const s = lockedSigner({ kind: "key", identities: [], issuer: undefined, keyFingerprint: "ab", pem: "", signedAt: undefined });
 * assert.deepEqual(s, { kind: "key", identities: [], keyFingerprint: "ab" });
 * ```
 */
export function lockedSigner(signer: VerifiedSigner): LockedSigner {
  return {
    kind: signer.kind,
    identities: [...signer.identities],
    ...(signer.issuer !== undefined ? { issuer: signer.issuer } : {}),
    keyFingerprint: signer.keyFingerprint,
  };
}
