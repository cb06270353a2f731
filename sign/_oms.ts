/**
 * The OpenSSF Model Signing (OMS) statement: an in-toto Statement v1 whose
 * predicate lists every file (or every shard of every file) of a model with
 * its digest, as the Python `model_signing` tool writes and reads it. Pure:
 * no file system.
 *
 * Format facts (from `model_signing`'s source and test data, vendored under
 * tests/testdata/model_signing/):
 * - v1.0 (`https://model_signing/signature/v1.0`): `subject` holds one entry,
 *   the model name (the signed folder's or file's name, informative) and
 *   `digest.sha256`, the root digest: SHA-256 over the raw digest bytes of
 *   every resource, in the order they are listed. `predicate.serialization`
 *   records the method (`files` or `shards`), `hash_type` (`sha256`,
 *   `blake2b` (BLAKE2b-512) or `blake3`), `allow_symlinks`, for shards
 *   `shard_size` (written `8.0` by protobuf, read as the integer), and
 *   `ignore_paths` (v1.1). `predicate.resources` lists `{ name, algorithm,
 *   digest }`: the name a POSIX path relative to the model root (`"."` for a
 *   single-file model), or `path:start:end` for a shard, whose algorithm is
 *   `<hash_type>-sharded-<shard_size>`. Files are sorted by path components,
 *   shards by path, then start and end as integers. A model may have no files.
 * - v0.2 (`https://model_signing/Digests/v0.1`, verify only): one subject per
 *   file (name and SHA-256), no model name, no root digest.
 *
 * @module
 */

import { VerificationError } from "./errors.ts";
import { sha256Hex } from "../hash/_digest.ts";

/** The DSSE payload type of an OMS statement. */
export const OMS_PAYLOAD_TYPE = "application/vnd.in-toto+json";
/** The in-toto statement type. */
export const OMS_STATEMENT_TYPE = "https://in-toto.io/Statement/v1";
/** The predicate type written by `model_signing` v1.0 and later. */
export const OMS_PREDICATE_TYPE = "https://model_signing/signature/v1.0";
/** The predicate of `model_signing` v0.2 (per-file subjects, no root digest). */
export const COMPAT_PREDICATE_TYPE = "https://model_signing/Digests/v0.1";

/** The content hashes `model_signing` writes. */
export type OmsHashType = "sha256" | "blake2b" | "blake3";

/** Hex digits of each hash type's digest. */
const HEX_LENGTH: Record<OmsHashType, number> = { sha256: 64, blake2b: 128, blake3: 64 };

/** One signed file (or shard): its model-relative POSIX name and digest. */
export interface OmsResource {
  /** Model-relative POSIX path (`"."` for a single-file model), or `path:start:end` for a shard. */
  name: string;
  /** `sha256`, `blake2b`, `blake3`, or `<hash>-sharded-<N>` for a shard. */
  algorithm: string;
  /** Lower-case hex digest. */
  digest: string;
}

/** How a statement's resources were made. */
export interface OmsSerialization {
  /** One digest per file, or one per shard of each file. */
  method: "files" | "shards";
  /** The content hash. */
  hashType: OmsHashType;
  /** The shard size in bytes (`shards` only). */
  shardSize?: number | undefined;
}

/** A parsed and self-consistent OMS statement. */
export interface OmsStatement extends OmsSerialization {
  /** `"v1.0"`, or `"v0.2"` for the old per-file format. */
  version: "v1.0" | "v0.2";
  /** `subject[0].name`: the model name when signed (informative); v0.2 has none. */
  subjectName: string | undefined;
  /** `subject[0].digest.sha256`, checked against the resources (v0.2 has none). */
  rootDigest: string | undefined;
  /** The signed files or shards, in statement order. */
  resources: OmsResource[];
  /** Paths the signer excluded (v1.1 `ignore_paths`), `[]` when absent. */
  ignorePaths: string[];
  /** Whether the signer followed symbolic links. */
  allowSymlinks: boolean;
  /** The decoded JSON statement. */
  raw: unknown;
}

const HEX_SHA256 = /^[0-9a-fA-F]{64}$/;

/**
 * Why `name` is not a safe model-relative POSIX path, or `undefined` if it is.
 * `"."` (the whole single-file model) is accepted only when `allowDot`.
 */
export function unsafePathReason(name: string, allowDot = false): string | undefined {
  if (name === ".") return allowDot ? undefined : "it names the model root";
  if (name === "") return "it is empty";
  if (name.includes("\0")) return "it contains a NUL character";
  if (name.includes("\\")) return "it contains a backslash";
  if (name.startsWith("/")) return "it is absolute";
  if (/^[A-Za-z]:/.test(name)) return "it starts with a drive letter";
  for (const part of name.split("/")) {
    if (part === "") return "it has an empty path component";
    if (part === "..") return "it climbs out of the model folder";
    if (part === ".") return "it has a '.' path component";
  }
  return undefined;
}

/**
 * Orders model-relative paths the way `model_signing` sorts its manifest:
 * component by component (so `a/b` comes before `a-b`), each component by
 * Unicode code point.
 */
export function comparePaths(a: string, b: string): number {
  const pa = a.split("/");
  const pb = b.split("/");
  const n = Math.min(pa.length, pb.length);
  for (let i = 0; i < n; i++) {
    const c = compareCodePoints(pa[i]!, pb[i]!);
    if (c !== 0) return c;
  }
  return pa.length - pb.length;
}

function compareCodePoints(a: string, b: string): number {
  if (a === b) return 0;
  // JS `<` compares UTF-16 units, which misorders astral characters against
  // U+E000..U+FFFF; Python compares code points.
  const ia = a[Symbol.iterator]();
  const ib = b[Symbol.iterator]();
  for (;;) {
    const x = ia.next();
    const y = ib.next();
    if (x.done || y.done) return x.done ? (y.done ? 0 : -1) : 1;
    const d = x.value.codePointAt(0)! - y.value.codePointAt(0)!;
    if (d !== 0) return d;
  }
}

/** A shard resource's parts, or `undefined` when the name is not `path:start:end`. */
export function parseShardName(
  name: string,
): { path: string; start: number; end: number } | undefined {
  const parts = name.split(":");
  if (
    parts.length !== 3 || !/^(?:0|[1-9]\d*)$/.test(parts[1]!) || !/^(?:0|[1-9]\d*)$/.test(parts[2]!)
  ) {
    return undefined;
  }
  const start = Number(parts[1]);
  const end = Number(parts[2]);
  if (!Number.isSafeInteger(start) || !Number.isSafeInteger(end)) return undefined;
  return { path: parts[0]!, start, end };
}

/** The algorithm name of a shard resource. */
export function shardAlgorithm(hashType: OmsHashType, shardSize: number): string {
  return `${hashType}-sharded-${shardSize}`;
}

/** Orders resources as `model_signing` lists them: by path components, then shard start and end. */
export function compareResources(a: OmsResource, b: OmsResource): number {
  const sa = parseShardName(a.name);
  const sb = parseShardName(b.name);
  const c = comparePaths(sa?.path ?? a.name, sb?.path ?? b.name);
  if (c !== 0) return c;
  return (sa?.start ?? 0) - (sb?.start ?? 0) || (sa?.end ?? 0) - (sb?.end ?? 0);
}

/** Returns a copy of `resources` in `model_signing`'s canonical order. */
export function sortResources(resources: readonly OmsResource[]): OmsResource[] {
  return [...resources].sort(compareResources);
}

/**
 * What a statement expects of each file, as one comparable string per file:
 * `<hash>:<hex>` for the files method, and for shards
 * `<hash>-sharded-<N>:<start>-<end>=<hex>;…` in start order (the value an
 * empty file, which has no shard, has is `<hash>-sharded-<N>:`). `singleFile`
 * names a single-file model's file (listed as `"."`).
 */
export function expectations(statement: OmsStatement, singleFile?: string): Map<string, string> {
  const out = new Map<string, string>();
  const rename = (n: string) => (n === "." && singleFile !== undefined ? singleFile : n);
  if (statement.method === "files") {
    for (const r of statement.resources) out.set(rename(r.name), `${r.algorithm}:${r.digest}`);
    return out;
  }
  const label = shardAlgorithm(statement.hashType, statement.shardSize!);
  const byFile = new Map<string, { start: number; end: number; digest: string }[]>();
  for (const r of statement.resources) {
    const s = parseShardName(r.name)!;
    const list = byFile.get(s.path) ?? [];
    list.push({ start: s.start, end: s.end, digest: r.digest });
    byFile.set(s.path, list);
  }
  for (const [path, shards] of byFile) {
    shards.sort((a, b) => a.start - b.start);
    out.set(
      rename(path),
      `${label}:${shards.map((s) => `${s.start}-${s.end}=${s.digest}`).join(";")}`,
    );
  }
  return out;
}

/** The shards `model_signing` cuts a file of `size` bytes into: [0,N), [N,2N), … up to the size; none when empty. */
export function shardRanges(size: number, shardSize: number): { start: number; end: number }[] {
  const out: { start: number; end: number }[] = [];
  for (let start = 0; start < size; start += shardSize) {
    out.push({ start, end: Math.min(size, start + shardSize) });
  }
  return out;
}

function hexToBytes(hex: string): Uint8Array {
  const out = new Uint8Array(hex.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(hex.slice(2 * i, 2 * i + 2), 16);
  return out;
}

/**
 * The root digest: SHA-256 over the concatenated raw digests of `resources`,
 * in the order given (sort first with {@linkcode sortResources} when building).
 *
 * @param resources The signed files.
 * @returns Lower-case hex.
 */
export async function rootDigest(resources: readonly OmsResource[]): Promise<string> {
  const parts = resources.map((r) => {
    if (!/^(?:[0-9a-fA-F]{2})+$/.test(r.digest)) {
      throw new TypeError(
        `Cannot compute root digest: digest of ${JSON.stringify(r.name)} is not hex`,
      );
    }
    return hexToBytes(r.digest);
  });
  const all = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    all.set(p, at);
    at += p.length;
  }
  return await sha256Hex(all);
}

/** Options for {@linkcode buildStatement}. */
export interface BuildStatementOptions {
  /**
   * Paths excluded when hashing, recorded as `serialization.ignore_paths`
   * (as `model_signing` v1.1 records them: the user's ignores, the signature
   * file and the git paths). Omitted when empty.
   */
  ignorePaths?: string[];
  /** Whether symbolic links were followed. @default {false} */
  allowSymlinks?: boolean;
  /** The method and hash the resources were made with. @default {files, sha256} */
  serialization?: OmsSerialization;
}

/**
 * Builds the OMS statement (the DSSE payload) for a hashed model.
 *
 * @param modelName The model's name, conventionally its folder or file name.
 * @param resources The files (or shards) and their digests, in any order.
 * @param options Serialization, ignored paths and the symlink policy to record.
 * @returns The UTF-8 JSON payload, laid out as `model_signing` writes it.
 */
export async function buildStatement(
  modelName: string,
  resources: readonly OmsResource[],
  options: BuildStatementOptions = {},
): Promise<Uint8Array> {
  if (typeof modelName !== "string" || modelName === "") {
    throw new TypeError("Cannot build statement: the model name is empty");
  }
  const ser: OmsSerialization = options.serialization ?? { method: "files", hashType: "sha256" };
  checkResources(resources, ser, (reason) => new TypeError(reason));
  const sorted = sortResources(resources).map((r) => ({
    algorithm: r.algorithm,
    digest: r.digest.toLowerCase(),
    name: r.name,
  }));
  const serialization: Record<string, unknown> = {
    method: ser.method,
    hash_type: ser.hashType,
    allow_symlinks: options.allowSymlinks ?? false,
  };
  if (ser.method === "shards") serialization.shard_size = ser.shardSize;
  const ignorePaths = [...new Set(options.ignorePaths ?? [])];
  for (const p of ignorePaths) {
    const reason = typeof p === "string" ? unsafePathReason(p) : "it is not a string";
    if (reason !== undefined) {
      throw new TypeError(
        `Cannot build statement: ignored path ${JSON.stringify(p)} is unsafe: ${reason}`,
      );
    }
  }
  if (ignorePaths.length > 0) serialization.ignore_paths = ignorePaths.sort(comparePaths);
  const statement = {
    _type: OMS_STATEMENT_TYPE,
    subject: [{ name: modelName, digest: { sha256: await rootDigest(sorted) } }],
    predicateType: OMS_PREDICATE_TYPE,
    predicate: { serialization, resources: sorted },
  };
  return new TextEncoder().encode(JSON.stringify(statement, null, 2));
}

/**
 * Validates resource names and digests: safe relative paths (or shards of
 * them), no duplicates, `"."` only for a single-file model, digests of the
 * hash's length, and for shards the algorithm `<hash>-sharded-<N>`, ranges
 * within one shard size.
 */
function checkResources(
  resources: readonly OmsResource[],
  ser: OmsSerialization,
  fail: (message: string) => Error,
): void {
  const seen = new Set<string>();
  const paths = new Set<string>();
  for (const r of resources) {
    let path = r.name;
    if (ser.method === "shards") {
      const s = parseShardName(r.name);
      if (s === undefined) {
        throw fail(
          `Cannot read statement: shard name ${JSON.stringify(r.name)} is not path:start:end`,
        );
      }
      if (s.end <= s.start || s.end - s.start > ser.shardSize!) {
        throw fail(
          `Cannot read statement: shard ${
            JSON.stringify(r.name)
          } is not a range of at most ${ser.shardSize} bytes`,
        );
      }
      const want = shardAlgorithm(ser.hashType, ser.shardSize!);
      if (r.algorithm !== want) {
        throw fail(
          `Cannot read statement: shard ${JSON.stringify(r.name)} uses algorithm ${
            JSON.stringify(r.algorithm)
          }, expected ${JSON.stringify(want)}`,
        );
      }
      path = s.path;
    } else if (r.algorithm !== ser.hashType) {
      throw fail(
        `Cannot read statement: ${JSON.stringify(r.name)} uses algorithm ${
          JSON.stringify(r.algorithm)
        }, expected ${JSON.stringify(ser.hashType)}`,
      );
    }
    paths.add(path);
    if (seen.has(r.name)) {
      throw fail(`Cannot read statement: ${JSON.stringify(r.name)} is listed twice`);
    }
    seen.add(r.name);
    if (!new RegExp(`^[0-9a-fA-F]{${HEX_LENGTH[ser.hashType]}}$`).test(r.digest)) {
      throw fail(
        `Cannot read statement: digest of ${JSON.stringify(r.name)} is not ${
          HEX_LENGTH[ser.hashType]
        } hex digits (${ser.hashType})`,
      );
    }
  }
  for (const path of paths) {
    const reason = unsafePathReason(path, paths.size === 1);
    if (reason !== undefined) {
      throw fail(`Cannot read statement: file name ${JSON.stringify(path)} is unsafe: ${reason}`);
    }
  }
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/**
 * Parses and checks an OMS statement (the DSSE payload, already
 * authenticated by the caller): v1.0 (files or shards; SHA-256, BLAKE2b or
 * BLAKE3) or the v0.2 per-file format. Throws `VerificationError
 * ("bad-statement")` when it is neither, is inconsistent (the subject digest
 * is not the root of the resources), names an unsafe path (`..`, absolute,
 * backslash, duplicate), or records something we cannot verify.
 *
 * @param payload The DSSE payload bytes.
 * @param file The signature file, for error messages.
 * @returns The statement's parts.
 */
export async function parseStatement(payload: Uint8Array, file?: string): Promise<OmsStatement> {
  const opts = file === undefined ? {} : { file };
  const bad = (message: string) => new VerificationError("bad-statement", message, opts);
  let raw: unknown;
  try {
    raw = JSON.parse(new TextDecoder("utf-8", { fatal: true, ignoreBOM: true }).decode(payload));
  } catch (cause) {
    throw new VerificationError("bad-statement", "Cannot read statement: it is not UTF-8 JSON", {
      ...opts,
      cause,
    });
  }
  if (!isObject(raw)) throw bad("Cannot read statement: it is not a JSON object");
  if (raw._type !== OMS_STATEMENT_TYPE) {
    throw bad(
      `Cannot read statement: _type is ${JSON.stringify(raw._type)}, expected ${
        JSON.stringify(OMS_STATEMENT_TYPE)
      }`,
    );
  }
  if (raw.predicateType === COMPAT_PREDICATE_TYPE) return parseCompat(raw, bad);
  if (raw.predicateType !== OMS_PREDICATE_TYPE) {
    throw bad(
      `Cannot read statement: predicateType is ${JSON.stringify(raw.predicateType)}, expected ${
        JSON.stringify(OMS_PREDICATE_TYPE)
      } or ${JSON.stringify(COMPAT_PREDICATE_TYPE)}`,
    );
  }
  const subjects = raw.subject;
  if (!Array.isArray(subjects) || subjects.length !== 1) {
    throw bad("Cannot read statement: subject must hold exactly one entry");
  }
  const subject: unknown = subjects[0];
  if (
    !isObject(subject) || typeof subject.name !== "string" || !isObject(subject.digest) ||
    typeof subject.digest.sha256 !== "string" || !HEX_SHA256.test(subject.digest.sha256)
  ) {
    throw bad("Cannot read statement: subject needs a name and a sha256 digest");
  }
  const predicate = raw.predicate;
  if (!isObject(predicate) || !isObject(predicate.serialization)) {
    throw bad("Cannot read statement: predicate.serialization is missing");
  }
  const s = predicate.serialization;
  if (s.method !== "files" && s.method !== "shards") {
    throw bad(
      `Cannot read statement: serialization method is ${
        JSON.stringify(s.method)
      }, expected "files" or "shards"`,
    );
  }
  if (s.hash_type !== "sha256" && s.hash_type !== "blake2b" && s.hash_type !== "blake3") {
    throw bad(
      `Cannot verify model: hash type ${
        JSON.stringify(s.hash_type)
      } is not supported, expected "sha256", "blake2b" or "blake3"`,
    );
  }
  if (typeof s.allow_symlinks !== "boolean") {
    throw bad("Cannot read statement: serialization.allow_symlinks is not a boolean");
  }
  let shardSize: number | undefined;
  if (s.method === "shards") {
    // Protobuf writes it as a double (8.0); JSON reads that as the integer.
    if (
      typeof s.shard_size !== "number" || !Number.isSafeInteger(s.shard_size) || s.shard_size <= 0
    ) {
      throw bad(
        `Cannot read statement: shard_size is ${
          JSON.stringify(s.shard_size)
        }, expected a positive integer`,
      );
    }
    shardSize = s.shard_size;
  }
  const ignorePaths: string[] = [];
  if (s.ignore_paths !== undefined) {
    if (!Array.isArray(s.ignore_paths)) {
      throw bad("Cannot read statement: serialization.ignore_paths is not a list");
    }
    for (const p of s.ignore_paths) {
      const reason = typeof p === "string" ? unsafePathReason(p) : "it is not a string";
      if (reason !== undefined) {
        throw bad(`Cannot read statement: ignored path ${JSON.stringify(p)} is unsafe: ${reason}`);
      }
      ignorePaths.push(p as string);
    }
  }
  if (!Array.isArray(predicate.resources)) {
    throw bad("Cannot read statement: predicate.resources is not a list");
  }
  const resources: OmsResource[] = predicate.resources.map((r: unknown) => {
    if (
      !isObject(r) || typeof r.name !== "string" || typeof r.algorithm !== "string" ||
      typeof r.digest !== "string"
    ) {
      throw bad("Cannot read statement: each resource needs a name, algorithm and digest");
    }
    return { name: r.name, algorithm: r.algorithm, digest: r.digest };
  });
  const ser: OmsSerialization = { method: s.method, hashType: s.hash_type, shardSize };
  checkResources(resources, ser, bad);
  for (const r of resources) r.digest = r.digest.toLowerCase();
  // Statement order, as model_signing checks it.
  const root = await rootDigest(resources);
  const claimed = subject.digest.sha256.toLowerCase();
  if (root !== claimed) {
    throw bad(
      `Cannot read statement: subject digest is ${claimed}, but the listed files hash to ${root}`,
    );
  }
  return {
    version: "v1.0",
    subjectName: subject.name,
    rootDigest: claimed,
    resources,
    ignorePaths,
    ...ser,
    allowSymlinks: s.allow_symlinks,
    raw,
  };
}

/** The v0.2 format: one subject per file (name and SHA-256), nothing else. */
function parseCompat(raw: Record<string, unknown>, bad: (m: string) => Error): OmsStatement {
  const subjects = raw.subject;
  if (!Array.isArray(subjects)) throw bad("Cannot read statement: subject is not a list");
  const resources: OmsResource[] = subjects.map((x: unknown) => {
    if (
      !isObject(x) || typeof x.name !== "string" || !isObject(x.digest) ||
      typeof x.digest.sha256 !== "string"
    ) {
      throw bad("Cannot read statement: each subject needs a name and a sha256 digest");
    }
    return { name: x.name, algorithm: "sha256", digest: x.digest.sha256.toLowerCase() };
  });
  const ser: OmsSerialization = { method: "files", hashType: "sha256" };
  checkResources(resources, ser, bad);
  return {
    version: "v0.2",
    subjectName: undefined,
    rootDigest: undefined,
    resources,
    ignorePaths: [],
    ...ser,
    allowSymlinks: false,
    raw,
  };
}
