/**
 * Errors thrown by signing and verification. Every one is a
 * {@linkcode SignError} with a stable `code`, the file it is about and, where
 * there is one, the underlying `cause`. The classes say which phase refused:
 *
 * - {@linkcode VerificationError} (an {@linkcode InvalidSignature}): the
 *   evidence itself does not verify: bad signature, untrusted key or
 *   certificate chain, bad transparency-log entry, malformed bundle or
 *   statement.
 * - {@linkcode PolicyError} (an {@linkcode InvalidSignature}): the evidence
 *   verifies, but the policy refuses it: wrong signer, wrong model or
 *   version, not pinned in a frozen lockfile, signer differs from the pin.
 * - {@linkcode HashMismatch}: the content is not what the evidence says
 *   (`code` `"content-changed"` against a signature, `"pin-differs"` against
 *   a lockfile pin, `"file-missing"` for a signed file that is gone).
 * - {@linkcode SignatureMissing} and {@linkcode HashMissing}: there is no
 *   evidence where the policy requires some.
 * - {@linkcode EvidenceError}: the evidence could not be read (permission,
 *   I/O, over the size or depth bound); not a verdict about the model.
 *
 * @module
 */

/** Why the evidence does not verify; see {@linkcode VerificationError}. */
export type VerificationCode =
  | "bad-bundle"
  | "bad-signature"
  | "untrusted-key"
  | "untrusted-certificate"
  | "bad-tlog"
  | "bad-statement";

/** Why valid evidence was refused; see {@linkcode PolicyError}. */
export type PolicyCode =
  | "wrong-signer"
  | "wrong-model"
  | "wrong-version"
  | "not-locked"
  | "lock-mismatch"
  | "refused-file";

/** Why a signature was refused: {@linkcode VerificationCode} or {@linkcode PolicyCode}. */
export type InvalidSignatureCode = VerificationCode | PolicyCode;

/** Why content was refused; see {@linkcode HashMismatch}. */
export type HashMismatchCode = "content-changed" | "pin-differs" | "file-missing";

/** Why there was no evidence; see {@linkcode SignatureMissing}. */
export type SignatureMissingCode = "no-signature" | "not-in-manifest";

/** Why evidence could not be read; see {@linkcode EvidenceError}. */
export type EvidenceErrorCode =
  | "permission-denied"
  | "unreadable"
  | "too-large"
  | "too-deep"
  /** A model hub could not be reached or answered unlike a hub (pinning a hub model). */
  | "hub-error";

/** Every code a {@linkcode SignError} can carry. */
export type SignErrorCode =
  | InvalidSignatureCode
  | HashMismatchCode
  | SignatureMissingCode
  | "hash-missing"
  | EvidenceErrorCode
  | OidcErrorCode;

/** Options shared by the error classes. */
export interface SignErrorOptions {
  /** The file or folder the error is about. */
  file?: string;
  /** The underlying error. */
  cause?: unknown;
}

function where(options: SignErrorOptions): string {
  return options.file === undefined ? "" : `${options.file}: `;
}

const POLICY_CODES: ReadonlySet<string> = new Set<PolicyCode>([
  "wrong-signer",
  "wrong-model",
  "wrong-version",
  "not-locked",
  "lock-mismatch",
  "refused-file",
]);

/**
 * The base of every signing and verification error: a stable `code`, the
 * file it is about, and the cause.
 *
 * @example Catching every refusal at once
 * ```ts
 * import { HashMismatch, SignError } from "@safemodels/safemodels/sign";
 * import assert from "node:assert/strict";
 *
 * const e: unknown = new HashMismatch("sha256:aa", "sha256:bb", { file: "model.onnx" });
 * assert.ok(e instanceof SignError);
 * assert.equal(e.code, "content-changed");
 * ```
 */
export class SignError extends Error {
  /** A stable, machine-readable reason. */
  readonly code: SignErrorCode;
  /** The file or folder the error is about. */
  file: string | undefined;

  /**
   * Creates the error.
   *
   * @param code Machine-readable reason.
   * @param message What was expected and what was found.
   * @param options File and cause.
   */
  constructor(code: SignErrorCode, message: string, options: SignErrorOptions = {}) {
    super(`${where(options)}${message}`, { cause: options.cause });
    this.name = "SignError";
    this.code = code;
    this.file = options.file;
  }

  /**
   * Names the file in the message and `file` (for errors raised where the
   * file's name was not known, e.g. over bytes).
   *
   * @param file The file, as the caller knows it.
   * @param old The name the message used instead, if any.
   * @returns This error.
   */
  renamed(file: string, old?: string): this {
    let message = this.message;
    if (old !== undefined && message.startsWith(`${old}: `)) {
      message = message.slice(old.length + 2);
    } else if (this.file !== undefined && message.startsWith(`${this.file}: `)) {
      message = message.slice(this.file.length + 2);
    }
    if (old !== undefined && old !== "") message = message.replaceAll(old, file);
    this.message = `${file}: ${message}`;
    this.file = file;
    return this;
  }
}

/**
 * A signature is not valid for this model: the cryptography fails
 * ({@linkcode VerificationError}), or the signer, model or version is not
 * what the policy accepts ({@linkcode PolicyError}). The seed project's
 * `InvalidSignature`; catch it to catch both.
 *
 * @example Telling a wrong signer apart
 * ```ts
 * import { InvalidSignature, PolicyError } from "@safemodels/safemodels/sign";
 * import assert from "node:assert/strict";
 *
 * const e = new PolicyError("wrong-signer", "none of the expected identities matched");
 * assert.equal(e.code, "wrong-signer");
 * assert.ok(e instanceof InvalidSignature);
 * ```
 */
export class InvalidSignature extends SignError {
  /** A stable, machine-readable reason. */
  declare readonly code: InvalidSignatureCode;

  /**
   * Creates the error. Prefer {@linkcode PolicyError} or
   * {@linkcode VerificationError}, which say the phase.
   *
   * @param code Machine-readable reason.
   * @param message What was expected and what was found.
   * @param options File and cause.
   */
  constructor(code: InvalidSignatureCode, message: string, options: SignErrorOptions = {}) {
    super(code, message, options);
    this.name = "InvalidSignature";
  }
}

/**
 * The evidence does not verify: the signature does not match, the key or
 * certificate chain is not trusted, a transparency-log entry is bad, or the
 * bundle or signed statement is malformed.
 *
 * @example
 * ```ts
 * import { InvalidSignature, VerificationError } from "@safemodels/safemodels/sign";
 * import assert from "node:assert/strict";
 *
 * const e = new VerificationError("bad-signature", "it does not match the payload");
 * assert.ok(e instanceof InvalidSignature);
 * assert.equal(e.name, "VerificationError");
 * ```
 */
export class VerificationError extends InvalidSignature {
  /** A stable, machine-readable reason. */
  declare readonly code: VerificationCode;

  /**
   * Creates the error.
   *
   * @param code Machine-readable reason.
   * @param message What was expected and what was found.
   * @param options File and cause.
   */
  constructor(code: VerificationCode, message: string, options: SignErrorOptions = {}) {
    super(code, message, options);
    this.name = "VerificationError";
  }
}

/**
 * The evidence verifies, but the trust policy refuses it: the signer is not
 * one it accepts, the signature is for another model or version, the
 * lockfile is frozen and does not pin the model, or the signer differs from
 * the one pinned.
 *
 * @example
 * ```ts
 * import { InvalidSignature, PolicyError } from "@safemodels/safemodels/sign";
 * import assert from "node:assert/strict";
 *
 * const e = new PolicyError("wrong-model", 'expected model "acme/tiny-bert", found "acme/other"');
 * assert.ok(e instanceof InvalidSignature);
 * ```
 */
export class PolicyError extends InvalidSignature {
  /** A stable, machine-readable reason. */
  declare readonly code: PolicyCode;

  /**
   * Creates the error.
   *
   * @param code Machine-readable reason.
   * @param message What was expected and what was found.
   * @param options File and cause.
   */
  constructor(code: PolicyCode, message: string, options: SignErrorOptions = {}) {
    super(code, message, options);
    this.name = "PolicyError";
  }
}

/**
 * The right class for a signature refusal code: {@linkcode PolicyError} or
 * {@linkcode VerificationError}.
 */
export function signatureError(
  code: InvalidSignatureCode,
  message: string,
  options: SignErrorOptions = {},
): InvalidSignature {
  return POLICY_CODES.has(code)
    ? new PolicyError(code as PolicyCode, message, options)
    : new VerificationError(code as VerificationCode, message, options);
}

/** Options of {@linkcode HashMismatch}. */
export interface HashMismatchOptions extends SignErrorOptions {
  /**
   * What the expected digest came from.
   * @default {"content-changed"}
   */
  code?: HashMismatchCode;
}

/**
 * The content is not what the evidence says: it changed since it was signed
 * (`"content-changed"`), differs from the digest a lockfile pins
 * (`"pin-differs"`), or a signed file is missing (`"file-missing"`).
 *
 * @example Reading the digests
 * ```ts
 * import { HashMismatch } from "@safemodels/safemodels/sign";
 * import assert from "node:assert/strict";
 *
 * const e = new HashMismatch("a", "b", { file: "model.safetensors" });
 * assert.match(e.message, /expected a, found b/);
 * ```
 */
export class HashMismatch extends SignError {
  /** A stable, machine-readable reason. */
  declare readonly code: HashMismatchCode;
  /** The signed or pinned (expected) digest. */
  readonly expected: string;
  /** The digest of what is there now (`"(missing)"` for a missing file). */
  readonly actual: string;

  /**
   * Creates the error.
   *
   * @param expected The signed or pinned digest.
   * @param actual The digest found.
   * @param options File, cause and code.
   */
  constructor(expected: string, actual: string, options: HashMismatchOptions = {}) {
    const code = options.code ?? "content-changed";
    // Shard lists can be long: the message shows their start.
    const short = (v: string) =>
      v.length > 200 ? `${v.slice(0, 200)}… (${v.length} characters)` : v;
    super(
      code,
      code === "pin-differs"
        ? `Cannot accept file: its content differs from the digest the lockfile pins (expected ${
          short(expected)
        }, found ${short(actual)})`
        : code === "file-missing"
        ? `Cannot verify model: a signed file is missing (expected ${
          short(expected)
        }, found nothing)`
        : `Cannot verify model: its content changed since it was signed (expected ${
          short(expected)
        }, found ${short(actual)})`,
      options,
    );
    this.name = "HashMismatch";
    this.expected = expected;
    this.actual = actual;
  }
}

/**
 * A model carries no hash where one was required (e.g. a safetensors file
 * whose metadata has no `safemodels.hash`).
 *
 * @example
 * ```ts
 * import { HashMissing } from "@safemodels/safemodels/sign";
 * import assert from "node:assert/strict";
 *
 * assert.match(new HashMissing("no hash in metadata").message, /no hash/);
 * ```
 */
export class HashMissing extends SignError {
  /** A stable, machine-readable reason. */
  declare readonly code: "hash-missing";

  /**
   * Creates the error.
   *
   * @param message What was looked for and where.
   * @param options File and cause.
   */
  constructor(message: string, options: SignErrorOptions = {}) {
    super("hash-missing", message, options);
    this.name = "HashMissing";
  }
}

/** Options of {@linkcode SignatureMissing}. */
export interface SignatureMissingOptions extends SignErrorOptions {
  /**
   * `"no-signature"`: nothing vouches for it; `"not-in-manifest"`: the
   * model's signature does not cover this file.
   * @default {"no-signature"}
   */
  code?: SignatureMissingCode;
}

/**
 * A model or file has no evidence where the policy requires some: no
 * signature, no pin, or a signature that does not cover the file.
 *
 * @example
 * ```ts
 * import { SignatureMissing } from "@safemodels/safemodels/sign";
 * import assert from "node:assert/strict";
 *
 * assert.equal(new SignatureMissing("no model.sig").code, "no-signature");
 * ```
 */
export class SignatureMissing extends SignError {
  /** A stable, machine-readable reason. */
  declare readonly code: SignatureMissingCode;

  /**
   * Creates the error.
   *
   * @param message What was looked for and where.
   * @param options File, cause and code.
   */
  constructor(message: string, options: SignatureMissingOptions = {}) {
    super(options.code ?? "no-signature", message, options);
    this.name = "SignatureMissing";
  }
}

/**
 * Evidence (a signature, a lockfile) could not be read: a missing
 * permission, an I/O or network failure, or it is over the size or nesting
 * bound. Not a verdict about the model; fix the cause and try again.
 *
 * @example
 * ```ts
 * import { EvidenceError } from "@safemodels/safemodels/sign";
 * import assert from "node:assert/strict";
 *
 * const e = new EvidenceError("too-large", "model.sig is larger than 8 MiB");
 * assert.equal(e.code, "too-large");
 * ```
 */
export class EvidenceError extends SignError {
  /** A stable, machine-readable reason. */
  declare readonly code: EvidenceErrorCode;

  /**
   * Creates the error.
   *
   * @param code Machine-readable reason.
   * @param message What could not be read, and what to do.
   * @param options File and cause.
   */
  constructor(code: EvidenceErrorCode, message: string, options: SignErrorOptions = {}) {
    super(code, message, options);
    this.name = "EvidenceError";
  }
}

/** Why the interactive sign-in failed; the `code` of an {@linkcode OidcError}. */
export type OidcErrorCode =
  /** The issuer URL, discovery request or discovery document is unusable. */
  | "oidc-discovery"
  /** The loopback callback server could not start, or the callback is malformed. */
  | "oidc-callback"
  /** The callback's `state` is not the one sent (a forged or stale redirect). */
  | "oidc-state"
  /** The identity provider answered the callback with an `error` (e.g. `access_denied`). */
  | "oidc-denied"
  /** The token endpoint refused the code or answered without a usable `id_token`. */
  | "oidc-token"
  /** The ID token's `nonce` is not the one sent (a token from another sign-in). */
  | "oidc-nonce"
  /** The sign-in did not complete within `timeoutMs`. */
  | "oidc-timeout";

/**
 * The interactive sign-in (the browser OIDC flow of keyless signing) failed. A {@linkcode SignError} whose `code` is an
 * {@linkcode OidcErrorCode}; the message says what was expected and what was
 * found, and never contains a token, code or verifier.
 *
 * @example
 * ```ts ignore
 * import { OidcError, sigstoreSigner } from "@safemodels/safemodels/sign";
 *
 * try {
 *   await sigstoreSigner({ interactive: true }).sign(new Uint8Array());
 * } catch (e) {
 *   if (e instanceof OidcError && e.code === "oidc-denied") console.error("sign-in cancelled");
 * }
 * ```
 */
export class OidcError extends SignError {
  /**
   * Creates the error.
   *
   * @param code Machine-readable reason.
   * @param message What was expected and what was found.
   * @param options Cause.
   */
  constructor(code: OidcErrorCode, message: string, options: SignErrorOptions = {}) {
    super(code, `Cannot sign in to Sigstore: ${message}`, options);
    this.name = "OidcError";
  }
}
