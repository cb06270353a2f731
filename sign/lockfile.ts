import { trackTempFile, untrackTempFile } from "../hash/_temp_files.ts";
import { HashMismatch, PolicyError } from "./errors.ts";
import { checkJsonBounds, MAX_EVIDENCE_BYTES } from "./_json.ts";
import { sameModelName } from "./_names.ts";

/** The version of an entry recorded without one: it pins the model at every version. */
export const UNVERSIONED = "unversioned";
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
  /** `sha256:<hex>` per model-relative file path. */
  digests: Record<string, string>;
  /** Who signed it, when it was signed. */
  signer?: LockedSigner;
  /**
   * The hub commit the digests were read at (`safemodels lock hf://…`), so
   * that later loads can ask for exactly that commit.
   */
  commit?: string;
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

/** A model's entry found by {@linkcode Lockfile.find}. */
export interface FoundEntry {
  /** The entry's key, `name@version`, or what was looked for when there is none. */
  key: string;
  /** The entry, when the lockfile has one. */
  entry: LockEntry | undefined;
}

const sortKeys = (o: Record<string, string>) =>
  Object.fromEntries(Object.entries(o).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));

/**
 * The one spelling of a pinned digest: `sha256:<64 lower-case hex>`. Bare
 * hex (older lockfiles) is read as SHA-256.
 *
 * @param value A digest as written in a lockfile.
 * @param key Which entry and file, for the message.
 * @returns The digest as `sha256:<hex>`.
 * @throws {SyntaxError} When it is neither.
 */
export function normalizeDigest(value: unknown, key = "digest"): string {
  if (typeof value === "string") {
    const m = /^(?:sha256:)?([0-9a-fA-F]{64})$/.exec(value);
    if (m) return `sha256:${m[1]!.toLowerCase()}`;
  }
  throw new SyntaxError(
    `Cannot read lockfile: ${key} is ${
      JSON.stringify(value)?.slice(0, 80)
    }, expected "sha256:<64 hex digits>" (run safemodels lock again to rewrite it)`,
  );
}

/**
 * A version as entries are keyed (`name@version`, split at the last "@"):
 * one with "@" in it would name another entry, so it is refused.
 */
function checkVersion(name: string, version: string): void {
  if (typeof version !== "string" || version === "" || version.includes("@")) {
    throw new PolicyError(
      "not-locked",
      `Cannot look up ${name}@${version} in the lockfile: a version is a non-empty text without "@"`,
    );
  }
}

function readCommit(value: unknown, key: string): string {
  if (typeof value === "string" && /^[0-9a-f]{40}$/.test(value)) return value;
  throw new SyntaxError(
    `Cannot read lockfile: "${key}" commit is ${
      JSON.stringify(value)?.slice(0, 80)
    }, expected 40 lower-case hex digits`,
  );
}

function readSigner(value: unknown, key: string): LockedSigner {
  const s = value as Partial<LockedSigner>;
  if (
    typeof s !== "object" || s === null || !["keyless", "key", "certificate"].includes(s.kind!) ||
    !Array.isArray(s.identities) || !s.identities.every((i) => typeof i === "string") ||
    (s.issuer !== undefined && typeof s.issuer !== "string") ||
    (s.keyFingerprint !== undefined && typeof s.keyFingerprint !== "string")
  ) {
    throw new SyntaxError(
      `Cannot read lockfile: entry "${key}" has a signer that is not { kind, identities, issuer?, keyFingerprint? }`,
    );
  }
  return {
    kind: s.kind!,
    identities: [...s.identities],
    ...(s.issuer !== undefined ? { issuer: s.issuer } : {}),
    ...(s.keyFingerprint !== undefined ? { keyFingerprint: s.keyFingerprint } : {}),
  };
}

/**
 * The `safemodels.lock` file: per model name and version, the digest of
 * every file (`sha256:<hex>`) and the signer seen. Pins always bind: a file
 * whose digest differs from its pin is refused whatever signature vouches
 * for it, and a frozen lockfile refuses files it does not pin. Trust on first
 * use records a model; a later different digest or signer fails with a
 * readable diff. JSON with a stable key order, so it diffs well in version
 * control. Written by `safemodels lock`, read by `verify --lock`, `check
 * --lock` and the transformers.js guards (Deno, Node, browsers) alike.
 *
 * @example Trust on first use, then a refusal
 * ```ts
 * import { HashMismatch, Lockfile } from "@safemodels/safemodels/sign";
 * import assert from "node:assert/strict";
 *
 * const a = "sha256:" + "a".repeat(64);
 * const b = "sha256:" + "b".repeat(64);
 * const lock = new Lockfile();
 * assert.equal(lock.check("tiny", "1.0", { digests: { "model.onnx": a } }), "recorded");
 * assert.equal(lock.check("tiny", "1.0", { digests: { "model.onnx": a } }), "matched");
 * assert.throws(() => lock.check("tiny", "1.0", { digests: { "model.onnx": b } }), HashMismatch);
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
      d.models === null || Array.isArray(d.models)
    ) {
      throw new SyntaxError('Cannot read lockfile: expected {"version": 1, "models": {...}}');
    }
    for (const [key, entry] of Object.entries(d.models as Record<string, unknown>)) {
      const e = entry as LockEntry;
      if (!/^.+@[^@]+$/.test(key)) {
        throw new SyntaxError(`Cannot read lockfile: entry "${key}" is not named "name@version"`);
      }
      if (
        typeof e !== "object" || e === null || typeof e.digests !== "object" ||
        e.digests === null || Array.isArray(e.digests)
      ) {
        throw new SyntaxError(`Cannot read lockfile: entry "${key}" has no digests object`);
      }
      const digests: Record<string, string> = {};
      for (const [file, value] of Object.entries(e.digests)) {
        digests[file] = normalizeDigest(value, `"${key}" digest of ${JSON.stringify(file)}`);
      }
      this.#models.set(key, {
        digests,
        ...(e.signer !== undefined ? { signer: readSigner(e.signer, key) } : {}),
        ...(e.commit !== undefined ? { commit: readCommit(e.commit, key) } : {}),
      });
    }
  }

  /**
   * Parses a lockfile's text, within the evidence bounds (8 MiB, JSON nested
   * at most 32 levels).
   *
   * @param text The lockfile's JSON text.
   * @param where The file, for messages.
   * @returns The lockfile.
   * @throws {SyntaxError} When the text is not a lockfile.
   * @throws {EvidenceError} When it is over the bounds.
   *
   * @example
   * ```ts
   * import { Lockfile } from "@safemodels/safemodels/sign";
   * import assert from "node:assert/strict";
   *
   * const lock = Lockfile.parse('{"version":1,"models":{"tiny@1":{"digests":{"a.onnx":"' + "0".repeat(64) + '"}}}}');
   * assert.equal(lock.get("tiny", "1")?.digests["a.onnx"], "sha256:" + "0".repeat(64));
   * ```
   */
  static parse(text: string, where?: string): Lockfile {
    checkJsonBounds(text, "the lockfile", MAX_EVIDENCE_BYTES, where);
    try {
      return new Lockfile(JSON.parse(text));
    } catch (e) {
      const message = (e as Error).message;
      throw new SyntaxError(where === undefined ? message : `${where}: ${message}`, { cause: e });
    }
  }

  /**
   * Reads a lockfile; a missing file gives an empty lockfile. Deno and Node.
   *
   * @param path The lockfile path (e.g. `safemodels.lock`).
   * @returns The lockfile.
   * @throws {SyntaxError} When the file is not a lockfile.
   * @throws {EvidenceError} When it cannot be read (permission, I/O) or is over the bounds.
   */
  static async load(path: string): Promise<Lockfile> {
    const { readEvidenceFile } = await import("./_read_fs.ts");
    const text = await readEvidenceFile(path, "the lockfile", MAX_EVIDENCE_BYTES);
    return text === undefined ? new Lockfile() : Lockfile.parse(text, path);
  }

  /**
   * Writes the lockfile atomically (temporary file, then rename). Deno and Node.
   *
   * @param path The lockfile path.
   */
  async save(path: string): Promise<void> {
    const { writeFile, rename, rm } = await import("node:fs/promises");
    const tmp = `${path}.${crypto.randomUUID().slice(0, 8)}.tmp`;
    trackTempFile(tmp);
    try {
      await writeFile(tmp, JSON.stringify(this.toJSON(), null, 2) + "\n");
      await rename(tmp, path);
    } catch (e) {
      await rm(tmp, { force: true }).catch(() => {});
      throw e;
    } finally {
      untrackTempFile(tmp);
    }
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
      models[key] = {
        digests: sortKeys(e.digests),
        ...(e.signer ? { signer: e.signer } : {}),
        ...(e.commit ? { commit: e.commit } : {}),
      };
    }
    return { version: 1, models };
  }

  /**
   * The entry for a model at a version, if locked.
   *
   * @param name Model name.
   * @param version Model version.
   * @returns The entry or `undefined`.
   */
  get(name: string, version: string): LockEntry | undefined {
    checkVersion(name, version);
    return this.#models.get(`${name}@${version}`);
  }

  /**
   * Finds a model's entry. Entries are matched by name the way evidence is
   * (`tiny-bert` and `acme/tiny-bert` are one model; `evil/tiny-bert` is
   * another). With a version: that version's entry, else the model's entry
   * recorded without one (`name@unversioned`, which pins every version);
   * without a version: the model's only entry.
   *
   * @param name Model name.
   * @param version The version, when known (a hub revision, a release).
   * @returns The key and the entry (`undefined` when the lockfile has none for the model).
   * @throws {PolicyError} `"not-locked"` when the lockfile pins the model,
   * but not at this version, or at several versions and none is asked for:
   * pins bind, so a model the lockfile knows is never treated as unpinned.
   *
   * @example
   * ```ts
   * import { Lockfile, PolicyError } from "@safemodels/safemodels/sign";
   * import assert from "node:assert/strict";
   *
   * const lock = new Lockfile();
   * lock.record("acme/tiny-bert", "v1", { digests: {} });
   * assert.equal(lock.find("acme/tiny-bert").key, "acme/tiny-bert@v1");
   * assert.equal(lock.find("tiny-bert", "v1").key, "acme/tiny-bert@v1");
   * assert.throws(() => lock.find("acme/tiny-bert", "v2"), PolicyError);
   * assert.equal(lock.find("acme/other", "v2").entry, undefined);
   * ```
   */
  find(name: string, version?: string): FoundEntry {
    if (version !== undefined) checkVersion(name, version);
    const keys = [...this.#models.keys()].filter((k) =>
      sameModelName(name, k.slice(0, k.lastIndexOf("@")), true)
    );
    const versions = () => keys.map((k) => k).sort().join(", ");
    if (version !== undefined) {
      const exact = keys.filter((k) => k.slice(k.lastIndexOf("@") + 1) === version);
      const any = keys.filter((k) => k.endsWith(`@${UNVERSIONED}`));
      const chosen = exact.length > 0 ? exact : any;
      if (chosen.length === 1) return { key: chosen[0]!, entry: this.#models.get(chosen[0]!) };
      if (chosen.length > 1) {
        throw new PolicyError(
          "not-locked",
          `Cannot choose a lockfile entry for ${name}@${version}: ${versions()} all match; name the model exactly`,
        );
      }
      if (keys.length > 0) {
        throw new PolicyError(
          "not-locked",
          `Cannot accept ${name}@${version}: the lockfile pins this model at ${versions()}, not at ${version} (lock this version, or ask for a pinned one)`,
        );
      }
      return { key: `${name}@${version}`, entry: undefined };
    }
    if (keys.length > 1) {
      throw new PolicyError(
        "not-locked",
        `Cannot choose a lockfile entry for ${name}: it is pinned as ${versions()}; say which version`,
      );
    }
    if (keys.length === 0) return { key: `${name}@${UNVERSIONED}`, entry: undefined };
    return { key: keys[0]!, entry: this.#models.get(keys[0]!) };
  }

  /**
   * Records (or replaces) a model's entry.
   *
   * @param name Model name.
   * @param version Model version.
   * @param entry Digests (`sha256:<hex>`, bare hex accepted) and signer.
   * @throws {SyntaxError} When a digest is not SHA-256.
   */
  record(name: string, version: string, entry: LockEntry): void {
    checkVersion(name, version);
    const digests: Record<string, string> = {};
    for (const [file, value] of Object.entries(entry.digests)) {
      digests[file] = normalizeDigest(value, `digest of ${JSON.stringify(file)}`);
    }
    this.#models.set(`${name}@${version}`, {
      digests,
      ...(entry.signer ? { signer: { ...entry.signer } } : {}),
      ...(entry.commit !== undefined
        ? { commit: readCommit(entry.commit, `${name}@${version}`) }
        : {}),
    });
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
   * @throws {HashMismatch} `"pin-differs"` when a digest differs from the locked one (the message lists every difference).
   * @throws {PolicyError} `"lock-mismatch"` when the signer differs, `"not-locked"` when frozen and absent.
   */
  check(
    name: string,
    version: string,
    seen: LockEntry,
    options: LockCheckOptions = {},
  ): LockResult {
    checkVersion(name, version);
    const key = `${name}@${version}`;
    const locked = this.#models.get(key);
    if (!locked) {
      if (options.frozen) {
        throw new PolicyError(
          "not-locked",
          `Cannot accept ${key}: the lockfile is frozen and has no entry for it`,
        );
      }
      this.record(name, version, seen);
      return "recorded";
    }
    const diff: string[] = [];
    const now: Record<string, string> = {};
    for (const [file, value] of Object.entries(seen.digests)) {
      now[file] = normalizeDigest(value, `digest of ${JSON.stringify(file)}`);
    }
    for (const file of new Set([...Object.keys(locked.digests), ...Object.keys(now)])) {
      const was = locked.digests[file];
      const is = now[file];
      if (was !== is) diff.push(`  ${file}: locked ${was ?? "(absent)"}, now ${is ?? "(absent)"}`);
    }
    if (diff.length > 0) {
      const e = new HashMismatch(
        Object.values(locked.digests).join(","),
        Object.values(now).join(","),
        { code: "pin-differs" },
      );
      e.message = `Cannot accept ${key}: its digests differ from the lockfile:\n${diff.join("\n")}`;
      throw e;
    }
    if (locked.signer && seen.signer && !sameSigner(locked.signer, seen.signer)) {
      throw new PolicyError(
        "lock-mismatch",
        `Cannot accept ${key}: signed by ${describeLocked(seen.signer)}, but the lockfile records ${
          describeLocked(locked.signer)
        }`,
      );
    }
    return "matched";
  }
}

/**
 * Whether two recorded signers are the same signer.
 *
 * @param a One signer.
 * @param b The other.
 * @returns Whether kind, issuer, key and identities are equal.
 */
export function sameSigner(a: LockedSigner, b: LockedSigner): boolean {
  return a.kind === b.kind && a.issuer === b.issuer && a.keyFingerprint === b.keyFingerprint &&
    JSON.stringify([...a.identities].sort()) === JSON.stringify([...b.identities].sort());
}

/**
 * A recorded signer in words, for messages.
 *
 * @param s The signer.
 * @returns e.g. `key 3b1f…` or `keyless release@acme.example (issuer https://…)`.
 */
export function describeLocked(s: LockedSigner): string {
  const key = `key ${s.keyFingerprint?.slice(0, 16) ?? "?"}…`;
  if (s.kind === "key" || s.identities.length === 0) return key;
  return `${s.kind} ${s.identities.join(", ")}${s.issuer ? ` (issuer ${s.issuer})` : ""}`;
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
