/**
 * Errors thrown by signing and verification. Each carries a stable `code` and,
 * where there is one, the underlying `cause`.
 *
 * @module
 */

/** Why a signature was refused; see {@linkcode InvalidSignature.code}. */
export type InvalidSignatureCode =
  | "bad-bundle"
  | "bad-signature"
  | "untrusted-key"
  | "untrusted-certificate"
  | "bad-tlog"
  | "wrong-signer"
  | "wrong-model"
  | "wrong-version"
  | "bad-statement"
  | "not-locked"
  | "lock-mismatch";

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

/**
 * A signature is not valid for this model: the cryptography fails, the signer
 * is not one the policy accepts, or the signed statement names another model
 * or version. The seed project's `InvalidSignature`.
 *
 * @example Telling a wrong signer apart
 * ```ts
 * import { InvalidSignature } from "@safemodels/safemodels/sign";
 * import assert from "node:assert/strict";
 *
 * const e = new InvalidSignature("wrong-signer", "none of the expected identities matched");
 * assert.equal(e.code, "wrong-signer");
 * assert.ok(e instanceof Error);
 * ```
 */
export class InvalidSignature extends Error {
  /** A stable, machine-readable reason. */
  readonly code: InvalidSignatureCode;
  /** The file or folder the error is about. */
  readonly file: string | undefined;

  /**
   * Creates the error.
   *
   * @param code Machine-readable reason.
   * @param message What was expected and what was found.
   * @param options File and cause.
   */
  constructor(code: InvalidSignatureCode, message: string, options: SignErrorOptions = {}) {
    super(`${where(options)}${message}`, { cause: options.cause });
    this.name = "InvalidSignature";
    this.code = code;
    this.file = options.file;
  }
}

/**
 * The weights (or a file) no longer match the digest that was signed.
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
export class HashMismatch extends Error {
  /** The signed (expected) digest. */
  readonly expected: string;
  /** The digest of what is there now. */
  readonly actual: string;
  /** The file the error is about. */
  readonly file: string | undefined;

  /**
   * Creates the error.
   *
   * @param expected The signed digest.
   * @param actual The digest found.
   * @param options File and cause.
   */
  constructor(expected: string, actual: string, options: SignErrorOptions = {}) {
    super(
      `${
        where(options)
      }Cannot verify model: its content changed since it was signed (expected ${expected}, found ${actual})`,
      { cause: options.cause },
    );
    this.name = "HashMismatch";
    this.expected = expected;
    this.actual = actual;
    this.file = options.file;
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
export class HashMissing extends Error {
  /** The file the error is about. */
  readonly file: string | undefined;

  /**
   * Creates the error.
   *
   * @param message What was looked for and where.
   * @param options File and cause.
   */
  constructor(message: string, options: SignErrorOptions = {}) {
    super(`${where(options)}${message}`, { cause: options.cause });
    this.name = "HashMissing";
    this.file = options.file;
  }
}

/**
 * A model has no signature where the policy requires one.
 *
 * @example
 * ```ts
 * import { SignatureMissing } from "@safemodels/safemodels/sign";
 * import assert from "node:assert/strict";
 *
 * assert.equal(new SignatureMissing("no model.sig").name, "SignatureMissing");
 * ```
 */
export class SignatureMissing extends Error {
  /** The file or folder the error is about. */
  readonly file: string | undefined;

  /**
   * Creates the error.
   *
   * @param message What was looked for and where.
   * @param options File and cause.
   */
  constructor(message: string, options: SignErrorOptions = {}) {
    super(`${where(options)}${message}`, { cause: options.cause });
    this.name = "SignatureMissing";
    this.file = options.file;
  }
}
