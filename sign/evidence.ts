/**
 * The one trust decision: does the evidence found for a file vouch for it,
 * as a file of the model that was asked for, under the trust policy? Every
 * front end (`verifyModel`, `verifyOnnx`, `SafeModel`, the CLI's `verify`,
 * `check` and `lock`, and both transformers.js guards) gathers evidence its
 * own way and asks {@linkcode decideFile}; none keeps rules of its own.
 * Browser-safe: no file system, no `node:` modules.
 *
 * Precedence, for one file (the README has it as a table):
 * 1. Lockfile pins bind: a pinned digest that differs refuses the file
 *    (`HashMismatch`, `"pin-differs"`); a frozen lockfile refuses a file it
 *    does not pin (`PolicyError`, `"not-locked"`), whatever else vouches.
 * 2. The model root's `model.sig` (OMS), when there is one, speaks for every
 *    file of the model: if it fails to verify, or names another model, every
 *    file is refused; a file it lists must have the listed digest; a file it
 *    does not list is refused (`"not-in-manifest"`).
 * 3. Else the file's embedded signature (ONNX `metadata_props`, safetensors
 *    `__metadata__`): it must verify, name the model asked for (and the
 *    version, when one is expected), and match the content.
 * 4. Else a pin that matched in step 1 vouches for the file.
 * 5. Else nothing vouches: `unsigned` when the policy makes signatures
 *    optional for the model, else `SignatureMissing`.
 * 6. A signer pinned in the lockfile must be the signer found.
 *
 * @example Deciding from a verified model.sig
 * ```ts
 * import { decideFile } from "@safemodels/safemodels/sign";
 * import assert from "node:assert/strict";
 *
 * const signer = {
 *   kind: "key" as const, identities: [], issuer: undefined,
 *   keyFingerprint: "ab", pem: "", signedAt: undefined,
 * };
 * const verdict = decideFile({
 *   model: { name: "acme/tiny-bert" },
 *   file: "onnx/model.onnx",
 *   digest: "sha256:" + "0".repeat(64),
 *   oms: {
 *     $case: "verified", signer, modelName: "tiny-bert", where: "model.sig",
 *     resources: new Map([["onnx/model.onnx", "sha256:" + "0".repeat(64)]]),
 *   },
 *   policy: { publicKeys: ["…"] },
 * });
 * assert.equal(verdict.$case, "verified");
 * ```
 *
 * @module
 */

import {
  HashMismatch,
  PolicyError,
  SignatureMissing,
  SignError,
  VerificationError,
} from "./errors.ts";
import { ModelFormatError } from "../hash/errors.ts";
import { describeLocked, lockedSigner, type LockEntry, sameSigner } from "./lockfile.ts";
import { signatureRequirement, type TrustPolicy } from "./policy.ts";
import { sameModelName } from "./_names.ts";

export { sameModelName } from "./_names.ts";
import type { VerifiedSigner } from "./types.ts";

/** The model a caller asks for. */
export interface ModelRequest {
  /**
   * Its name: a hub repository (`"acme/tiny-bert"`) or a folder name. When
   * given, evidence that names another model is refused.
   */
  name?: string | undefined;
  /**
   * The version the caller expects (a release, tag or commit). When given,
   * an embedded signature that states another version is refused.
   */
  version?: string | undefined;
}

/**
 * Why evidence or a file was refused: one of the sign errors, or a
 * `ModelFormatError` when the file carrying the evidence is malformed.
 */
export type RefusalError = SignError | ModelFormatError;

/** What vouched for a file. */
export type EvidenceKind = "oms" | "onnx-embedded" | "safetensors-embedded" | "lockfile";

/** What the model root's `model.sig` (OMS) established. */
export type OmsFinding =
  | {
    /** There is no `model.sig` at the model root (or signatures were not looked at). */
    $case: "absent";
  }
  | {
    /** It is there but does not verify, or the policy refuses its signer. */
    $case: "refused";
    /** Why. */
    error: RefusalError;
  }
  | {
    /** It verifies and the policy accepts its signer. */
    $case: "verified";
    /** Who signed. */
    signer: VerifiedSigner;
    /**
     * The model name the statement records (`model_signing` writes the
     * folder's name); `undefined` for the v0.2 format, which records none.
     */
    modelName: string | undefined;
    /**
     * Every signed file: model-relative path to what its content must hash
     * to, `"<hash>:<hex>"` (`sha256`, `blake2b`, `blake3`), or for a sharded
     * statement `"<hash>-sharded-<N>:<start>-<end>=<hex>;…"`.
     */
    resources: ReadonlyMap<string, string>;
    /**
     * For a sharded statement, its label (`"<hash>-sharded-<N>"`): an empty
     * file has no shard, so it is not listed, and matches when its shards are
     * none.
     */
    shardLabel?: string | undefined;
    /** Where the signature was read, for messages. */
    where: string;
    /** Whether the signer followed symbolic links (`allow_symlinks`). @default {false} */
    allowSymlinks?: boolean | undefined;
  };

/** What a file's embedded signature established. */
export type EmbeddedFinding =
  | {
    /** The file carries no embedded signature. */
    $case: "absent";
  }
  | {
    /** It carries one that does not verify, or whose signer the policy refuses. */
    $case: "refused";
    /** Why. */
    error: RefusalError;
  }
  | {
    /** It verifies and the policy accepts its signer. */
    $case: "verified";
    /** Which kind of embedded signature. */
    kind: "onnx-embedded" | "safetensors-embedded";
    /** Who signed. */
    signer: VerifiedSigner;
    /** What the signature claims. */
    claim: { name: string; version: string; hash: string };
    /** The content's hash, measured the way `claim.hash` is. */
    actual: string;
  };

/** The lockfile's say about a model. */
export interface PinFinding {
  /** The model's entry, when the lockfile has one. */
  entry: LockEntry | undefined;
  /** The entry's key (`name@version`) or what was looked for, for messages. */
  key: string;
  /** Refuse every file the lockfile does not pin. */
  frozen: boolean;
  /** The entry could not be chosen (several versions pinned, none asked for): refuses every file. */
  error?: RefusalError | undefined;
}

/** One question for {@linkcode decideFile}. */
export interface FileQuestion {
  /** The model asked for. */
  model: ModelRequest;
  /** The file's model-relative POSIX path (`"."` for a single-file model). */
  file: string;
  /**
   * The file is reached through a symbolic link inside the model folder:
   * refused unless the model's `model.sig` says its signer followed links.
   */
  linked?: boolean | undefined;
  /**
   * `"sha256:<hex>"` of the file's bytes. Needed when a pin or `model.sig`
   * speaks about the file.
   */
  digest?: string | undefined;
  /**
   * The file's content measured as a `model.sig` with another hash or shards
   * expects it, keyed by label (`"blake2b"`, `"sha256-sharded-8"`), each
   * value spelled as in {@linkcode OmsFinding} resources.
   */
  digests?: Readonly<Record<string, string>> | undefined;
  /** The model root's `model.sig`. */
  oms: OmsFinding;
  /** The file's embedded signature; omitted for files that cannot carry one. */
  embedded?: EmbeddedFinding | undefined;
  /** The lockfile's entry for the model; omitted without a lockfile. */
  pins?: PinFinding | undefined;
  /** The trust policy (signature requirement). */
  policy: TrustPolicy;
  /** The file as messages name it. @default {file} */
  shown?: string | undefined;
}

/** What {@linkcode decideFile} decided. */
export type Verdict =
  | {
    /** The evidence vouches for the file. */
    $case: "verified";
    /** What vouched. */
    evidence: EvidenceKind;
    /** Who signed (`undefined` for a lockfile pin). */
    signer: VerifiedSigner | undefined;
    /** Whether a lockfile pin matched too. */
    pinned: boolean;
  }
  | {
    /** Nothing vouches, and the policy lets the model through unsigned. */
    $case: "unsigned";
  }
  | {
    /** The file must not be used. */
    $case: "refused";
    /** The evidence that refused it (`"none"`: there was none). */
    evidence: EvidenceKind | "none";
    /** Why, as a typed error naming the file. */
    error: RefusalError;
  };

const isSha256 = (d: string | undefined): d is string =>
  d !== undefined && /^sha256:[0-9a-f]{64}$/.test(d);

/**
 * Decides whether a file may be used: the one decision every front end
 * calls (see the module documentation for the order of precedence).
 *
 * @param q The model asked for, the file, its digest, the evidence found and the policy.
 * @returns `verified` (with the evidence and signer), `unsigned` (nothing
 * vouches; the policy makes signatures optional) or `refused` (with a typed
 * error naming the file).
 * @throws {TypeError} When a pin or `model.sig` speaks about the file but no
 * SHA-256 `digest` was given (a caller's mistake, not a verdict).
 *
 * @example A pin that differs refuses a signed file
 * ```ts
 * import { decideFile, HashMismatch } from "@safemodels/safemodels/sign";
 * import assert from "node:assert/strict";
 *
 * const v = decideFile({
 *   model: { name: "acme/tiny-bert" },
 *   file: "config.json",
 *   digest: "sha256:" + "1".repeat(64),
 *   oms: { $case: "absent" },
 *   pins: { entry: { digests: { "config.json": "sha256:" + "2".repeat(64) } }, key: "acme/tiny-bert@main", frozen: false },
 *   policy: {},
 * });
 * assert.equal(v.$case, "refused");
 * assert.ok(v.$case === "refused" && v.error instanceof HashMismatch && v.error.code === "pin-differs");
 * ```
 */
export function decideFile(q: FileQuestion): Verdict {
  const shown = q.shown ?? q.file;
  const refuse = (error: RefusalError, evidence: EvidenceKind | "none"): Verdict => ({
    $case: "refused",
    evidence,
    error,
  });
  const needDigest = (why: string): string => {
    if (!isSha256(q.digest)) {
      throw new TypeError(
        `Cannot decide on ${shown}: ${why} speaks about it, but no "sha256:<hex>" digest was given`,
      );
    }
    return q.digest;
  };

  // 0. Links: only where the signer followed them too (as model_signing).
  if (q.linked && !(q.oms.$case === "verified" && q.oms.allowSymlinks)) {
    return refuse(
      new PolicyError(
        "refused-file",
        `Cannot accept ${q.file}: it is a symbolic link, and no model.sig says its signer followed links (allow_symlinks)`,
        { file: shown },
      ),
      "none",
    );
  }

  // 1. Pins bind, whatever else vouches.
  let pinned = false;
  if (q.pins?.error !== undefined) return refuse(q.pins.error, "lockfile");
  if (q.pins !== undefined) {
    const pin = q.pins.entry?.digests[q.file];
    if (pin !== undefined) {
      const digest = needDigest(`the lockfile entry ${q.pins.key}`);
      if (pin !== digest) {
        return refuse(
          new HashMismatch(pin, digest, { file: shown, code: "pin-differs" }),
          "lockfile",
        );
      }
      pinned = true;
    } else if (q.pins.frozen) {
      return refuse(
        new PolicyError(
          "not-locked",
          q.pins.entry === undefined
            ? `Cannot accept ${q.file}: the lockfile is frozen and has no entry for ${q.pins.key}`
            : `Cannot accept ${q.file}: the lockfile is frozen and its entry ${q.pins.key} pins no digest for it`,
          { file: shown },
        ),
        "lockfile",
      );
    }
  }

  const accept = (evidence: EvidenceKind, signer: VerifiedSigner | undefined): Verdict => {
    // 6. A pinned signer must be the one found.
    const lockedBy = q.pins?.entry?.signer;
    if (signer !== undefined && lockedBy !== undefined) {
      const seen = lockedSigner(signer);
      if (!sameSigner(lockedBy, seen)) {
        return refuse(
          new PolicyError(
            "lock-mismatch",
            `Cannot accept ${q.file}: signed by ${describeLocked(seen)}, but the lockfile entry ${
              q.pins!.key
            } records ${describeLocked(lockedBy)}`,
            { file: shown },
          ),
          evidence,
        );
      }
    }
    return { $case: "verified", evidence, signer, pinned };
  };

  // 2. The model root's model.sig speaks for every file of the model.
  const oms = q.oms;
  if (oms.$case === "refused") return refuse(oms.error, "oms");
  if (oms.$case === "verified") {
    if (q.model.name !== undefined && oms.modelName === undefined) {
      // A v0.2 statement names no model: it cannot say it is the one asked for.
      return refuse(
        new PolicyError(
          "wrong-model",
          `Cannot accept ${q.file}: ${oms.where} names no model (a model_signing v0.2 statement), so it cannot vouch for "${q.model.name}"; verify it without a model name, or re-sign`,
          { file: shown },
        ),
        "oms",
      );
    }
    if (
      q.model.name !== undefined && oms.modelName !== undefined &&
      !sameModelName(q.model.name, oms.modelName, true)
    ) {
      return refuse(
        new PolicyError(
          "wrong-model",
          `Cannot accept ${q.file}: ${oms.where} is for model "${oms.modelName}", expected "${q.model.name}"`,
          { file: shown },
        ),
        "oms",
      );
    }
    const measured = (label: string, why: string): string => {
      if (label === "sha256") return needDigest(why);
      const value = q.digests?.[label];
      if (value === undefined) {
        throw new TypeError(
          `Cannot decide on ${shown}: ${why} expects a ${label} digest, but none was given`,
        );
      }
      return value;
    };
    const signed = oms.resources.get(q.file);
    if (signed === undefined) {
      // A sharded statement lists no shard for an empty file.
      if (
        oms.shardLabel !== undefined && measured(oms.shardLabel, oms.where) === `${oms.shardLabel}:`
      ) {
        return accept("oms", oms.signer);
      }
      return refuse(
        new SignatureMissing(
          `Cannot accept ${q.file}: it is not in the signed manifest of ${oms.where}`,
          { file: shown, code: "not-in-manifest" },
        ),
        "oms",
      );
    }
    const label = signed.slice(0, signed.indexOf(":"));
    const actual = measured(label, oms.where);
    if (signed !== actual) {
      return refuse(new HashMismatch(signed, actual, { file: shown }), "oms");
    }
    return accept("oms", oms.signer);
  }

  // 3. The file's own embedded signature.
  const emb = q.embedded;
  if (emb?.$case === "refused") {
    return refuse(emb.error, q.file.endsWith(".onnx") ? "onnx-embedded" : "safetensors-embedded");
  }
  if (emb?.$case === "verified") {
    const { claim } = emb;
    if (q.model.name !== undefined && !sameModelName(q.model.name, claim.name, false)) {
      return refuse(
        new PolicyError(
          "wrong-model",
          `Cannot accept ${q.file}: its embedded signature is for model "${claim.name}", expected "${q.model.name}"`,
          { file: shown },
        ),
        emb.kind,
      );
    }
    if (q.model.version !== undefined && claim.version !== q.model.version) {
      return refuse(
        new PolicyError(
          "wrong-version",
          `Cannot accept ${q.file}: its embedded signature is for version "${claim.version}" of ${claim.name}, expected "${q.model.version}"`,
          { file: shown },
        ),
        emb.kind,
      );
    }
    if (claim.hash !== emb.actual) {
      return refuse(new HashMismatch(claim.hash, emb.actual, { file: shown }), emb.kind);
    }
    return accept(emb.kind, emb.signer);
  }

  // 4. A pin that matched.
  if (pinned) return accept("lockfile", undefined);

  // 5. Nothing vouches.
  if (signatureRequirement(q.policy, q.model.name) === "optional") return { $case: "unsigned" };
  return refuse(
    new SignatureMissing(
      `Cannot accept ${q.file}: no model.sig at the model root, no embedded signature and no lockfile pin vouch for it`,
      { file: shown },
    ),
    "none",
  );
}

/**
 * A refused finding from anything thrown while reading or verifying
 * evidence: our errors as they are, anything else as a malformed bundle.
 *
 * @param error What was thrown.
 * @param file The evidence, for the message.
 * @returns The refused finding.
 *
 * @example
 * ```ts
 * import { refusal, VerificationError } from "@safemodels/safemodels/sign";
 * import assert from "node:assert/strict";
 *
 * const r = refusal(new SyntaxError("Unexpected token"), "model.sig");
 * assert.ok(r.error instanceof VerificationError);
 * ```
 */
export function refusal(error: unknown, file: string): { $case: "refused"; error: RefusalError } {
  if (error instanceof SignError || error instanceof ModelFormatError) {
    return { $case: "refused", error };
  }
  return {
    $case: "refused",
    error: new VerificationError(
      "bad-bundle",
      `Cannot verify: ${error instanceof Error ? error.message : String(error)}`,
      { file, cause: error },
    ),
  };
}
