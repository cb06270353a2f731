/**
 * Errors thrown while reading model files.
 *
 * @module
 */

import type { ModelFormat } from "./types.ts";

/**
 * Why a model file was refused; see {@linkcode ModelFormatError.code}.
 *
 * @example Branching on the reason
 * ```ts
 * import { ModelFormatError, type ModelFormatErrorCode } from "@safemodels/safemodels/hash";
 * import assert from "node:assert/strict";
 *
 * const code: ModelFormatErrorCode = new ModelFormatError("truncated", "Cannot read").code;
 * assert.equal(code, "truncated");
 * ```
 */
export type ModelFormatErrorCode =
  | "unknown-format"
  | "truncated"
  | "too-large"
  | "bad-header"
  | "bad-offsets"
  | "unsupported-dtype"
  | "bad-pickle"
  | "forbidden-global"
  | "bad-zip"
  | "bad-protobuf"
  | "bad-external-data"
  | "bad-index"
  | "ambiguous-folder";

/**
 * Options for {@linkcode ModelFormatError}.
 *
 * @example Naming the file and offset
 * ```ts
 * import { ModelFormatError } from "@safemodels/safemodels/hash";
 * import assert from "node:assert/strict";
 *
 * const e = new ModelFormatError("bad-header", "Cannot parse header", { file: "m.safetensors", offset: 8 });
 * assert.equal(e.message, "m.safetensors: Cannot parse header (at byte 8)");
 * ```
 */
export interface ModelFormatErrorOptions {
  /** The file (path or description) the error is about. */
  file?: string;
  /** The format being read, when known. */
  format?: ModelFormat;
  /** Byte offset in the file where the problem was found, when known. */
  offset?: number;
  /** The underlying error, if any. */
  cause?: unknown;
}

/**
 * A model file is malformed, truncated, of an unknown format, or asks for
 * something safemodels refuses to do. The message names the file and says what
 * was expected and what was found.
 *
 * @example Catching a refused file
 * ```ts
 * import { ModelFormatError, safeHash } from "@safemodels/safemodels/hash";
 * import assert from "node:assert/strict";
 *
 * await assert.rejects(
 *   safeHash(new Uint8Array([1, 2, 3])),
 *   (e) => e instanceof ModelFormatError && e.code === "unknown-format",
 * );
 * ```
 */
export class ModelFormatError extends SyntaxError {
  /** A stable, machine-readable reason. */
  readonly code: ModelFormatErrorCode;
  /** The file the error is about (a path, or `<bytes>`, `<stream>`, …). */
  readonly file: string | undefined;
  /** The format being read, when known. */
  readonly format: ModelFormat | undefined;
  /** Byte offset where the problem was found, when known. */
  readonly offset: number | undefined;

  /**
   * Creates an error; the message is prefixed with the file name when given.
   *
   * @param code Machine-readable reason.
   * @param message What was expected and what was found.
   * @param options File, format, offset and cause.
   */
  constructor(
    code: ModelFormatErrorCode,
    message: string,
    options: ModelFormatErrorOptions = {},
  ) {
    const where = options.file === undefined ? "" : `${options.file}: `;
    const at = options.offset === undefined ? "" : ` (at byte ${options.offset})`;
    super(`${where}${message}${at}`, { cause: options.cause });
    this.name = "ModelFormatError";
    this.code = code;
    this.file = options.file;
    this.format = options.format;
    this.offset = options.offset;
  }
}

/**
 * A pickle (PyTorch checkpoint) asks for a Python global that safemodels does
 * not allow, such as `posix.system`. Nothing from the pickle is ever executed:
 * the file is refused and the global is named.
 *
 * @example Refusing a malicious checkpoint
 * ```ts ignore
 * import { ForbiddenGlobalError, safeHash } from "@safemodels/safemodels/hash";
 *
 * try {
 *   await safeHash("evil.bin");
 * } catch (e) {
 *   if (e instanceof ForbiddenGlobalError) console.error(e.global); // "posix.system"
 * }
 * ```
 */
export class ForbiddenGlobalError extends ModelFormatError {
  /** The refused global, as `module.name`. */
  readonly global: string;

  /**
   * Creates the error for a refused global.
   *
   * @param global The refused global as `module.name`.
   * @param options File, format, offset.
   */
  constructor(global: string, options: ModelFormatErrorOptions = {}) {
    super(
      "forbidden-global",
      `Cannot load pickle: it calls the forbidden global "${global}" ` +
        `(only PyTorch tensor-rebuild globals are allowed; nothing was executed)`,
      options,
    );
    this.name = "ForbiddenGlobalError";
    this.global = global;
  }
}
