/**
 * The OpenSSF Model Signing (OMS) statement: an in-toto Statement v1 whose
 * predicate lists every file of a model with its digest, as the Python
 * `model_signing` tool (v1.0/v1.1) writes and reads it. Pure: no file system.
 *
 * Format facts (from `model_signing`'s `_signing/signing.py` and `manifest.py`
 * and the shared vectors):
 * - `subject` holds one entry: the model name (the folder's or file's base
 *   name, informative only) and `digest.sha256`, the root digest: SHA-256 over
 *   the raw digest bytes of every resource, in the order they are listed.
 * - `predicate.serialization` records how the manifest was built: for
 *   `method: "files"`, `hash_type`, `allow_symlinks` and (v1.1) `ignore_paths`.
 * - `predicate.resources` lists `{ name, algorithm, digest }` per file, the
 *   name a POSIX path relative to the model root (`"."` when the model is a
 *   single file), sorted by path components.
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
/** The experimental predicate of `model_signing` v0.2, which we refuse. */
const COMPAT_PREDICATE_TYPE = "https://model_signing/Digests/v0.1";

/** One signed file: its model-relative POSIX path and digest. */
export interface OmsResource {
  /** Model-relative POSIX path, or `"."` for a single-file model. */
  name: string;
  /** Digest algorithm, `"sha256"`. */
  algorithm: string;
  /** Lower-case hex digest of the file's bytes. */
  digest: string;
}

/** A parsed and self-consistent OMS statement. */
export interface OmsStatement {
  /** `subject[0].name`: the model name when signed (informative). */
  subjectName: string;
  /** `subject[0].digest.sha256`, checked against the resources. */
  rootDigest: string;
  /** The signed files, in statement order. */
  resources: OmsResource[];
  /** Paths the signer excluded (v1.1 `ignore_paths`), `[]` when absent. */
  ignorePaths: string[];
  /** The serialization method, `"files"`. */
  method: string;
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

/** Returns a copy of `resources` in `model_signing`'s canonical order. */
export function sortResources(resources: readonly OmsResource[]): OmsResource[] {
  return [...resources].sort((a, b) => comparePaths(a.name, b.name));
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
   * (model_signing v1.1 records them so verifiers ignore them too). Omitted
   * from the statement when not given, as v1.0 writes it.
   */
  ignorePaths?: string[];
  /** Whether symbolic links were followed. @default {false} */
  allowSymlinks?: boolean;
}

/**
 * Builds the OMS statement (the DSSE payload) for a hashed model.
 *
 * @param modelName The model's name, conventionally its folder or file name.
 * @param resources The files and their SHA-256 digests, in any order.
 * @param options Ignored paths and the symlink policy to record.
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
  checkResources(resources, (reason) => new TypeError(reason));
  const sorted = sortResources(resources).map((r) => ({
    algorithm: r.algorithm,
    digest: r.digest.toLowerCase(),
    name: r.name,
  }));
  const serialization: Record<string, unknown> = {
    method: "files",
    hash_type: "sha256",
    allow_symlinks: options.allowSymlinks ?? false,
  };
  if (options.ignorePaths !== undefined) {
    for (const p of options.ignorePaths) {
      const reason = typeof p === "string" ? unsafePathReason(p) : "it is not a string";
      if (reason !== undefined) {
        throw new TypeError(
          `Cannot build statement: ignored path ${JSON.stringify(p)} is unsafe: ${reason}`,
        );
      }
    }
    serialization.ignore_paths = [...new Set(options.ignorePaths)].sort(comparePaths);
  }
  const statement = {
    _type: OMS_STATEMENT_TYPE,
    subject: [{ name: modelName, digest: { sha256: await rootDigest(sorted) } }],
    predicateType: OMS_PREDICATE_TYPE,
    predicate: { serialization, resources: sorted },
  };
  return new TextEncoder().encode(JSON.stringify(statement, null, 2));
}

/**
 * Validates resource names and digests: safe relative paths, no duplicates,
 * `"."` only as the sole resource, SHA-256 hex digests.
 */
function checkResources(
  resources: readonly OmsResource[],
  fail: (message: string) => Error,
): void {
  if (resources.length === 0) throw fail("Cannot read statement: it lists no files");
  const seen = new Set<string>();
  for (const r of resources) {
    const reason = unsafePathReason(r.name, resources.length === 1);
    if (reason !== undefined) {
      throw fail(`Cannot read statement: file name ${JSON.stringify(r.name)} is unsafe: ${reason}`);
    }
    if (seen.has(r.name)) {
      throw fail(`Cannot read statement: file ${JSON.stringify(r.name)} is listed twice`);
    }
    seen.add(r.name);
    if (r.algorithm !== "sha256") {
      throw fail(
        `Cannot read statement: ${JSON.stringify(r.name)} uses algorithm ${
          JSON.stringify(r.algorithm)
        }, expected "sha256"`,
      );
    }
    if (!HEX_SHA256.test(r.digest)) {
      throw fail(
        `Cannot read statement: digest of ${JSON.stringify(r.name)} is not 64 hex digits`,
      );
    }
  }
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/**
 * Parses and checks an OMS statement (the DSSE payload, already
 * authenticated by the caller). Throws `VerificationError("bad-statement")`
 * when it is not an OMS v1.0 statement, is inconsistent (the subject digest is
 * not the root of the resources), names an unsafe path (`..`, absolute,
 * backslash, duplicate), or uses a serialization we cannot verify (`shards`,
 * hashes other than SHA-256).
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
    raw = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(payload));
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
  if (raw.predicateType === COMPAT_PREDICATE_TYPE) {
    throw bad(
      `Cannot read statement: predicate ${COMPAT_PREDICATE_TYPE} (model_signing v0.2) is not supported, expected ${OMS_PREDICATE_TYPE}`,
    );
  }
  if (raw.predicateType !== OMS_PREDICATE_TYPE) {
    throw bad(
      `Cannot read statement: predicateType is ${JSON.stringify(raw.predicateType)}, expected ${
        JSON.stringify(OMS_PREDICATE_TYPE)
      }`,
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
  const ser = predicate.serialization;
  if (ser.method === "shards") {
    throw bad(
      'Cannot verify model: serialization method "shards" is not supported, expected "files" (sign with model_signing\'s default file serialization)',
    );
  }
  if (ser.method !== "files") {
    throw bad(
      `Cannot read statement: serialization method is ${
        JSON.stringify(ser.method)
      }, expected "files"`,
    );
  }
  if (ser.hash_type !== "sha256") {
    throw bad(
      `Cannot verify model: hash type ${
        JSON.stringify(ser.hash_type)
      } is not supported, expected "sha256"`,
    );
  }
  if (typeof ser.allow_symlinks !== "boolean") {
    throw bad("Cannot read statement: serialization.allow_symlinks is not a boolean");
  }
  const ignorePaths: string[] = [];
  if (ser.ignore_paths !== undefined) {
    if (!Array.isArray(ser.ignore_paths)) {
      throw bad("Cannot read statement: serialization.ignore_paths is not a list");
    }
    for (const p of ser.ignore_paths) {
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
  checkResources(resources, bad);
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
    subjectName: subject.name,
    rootDigest: claimed,
    resources,
    ignorePaths,
    method: ser.method,
    allowSymlinks: ser.allow_symlinks,
    raw,
  };
}
