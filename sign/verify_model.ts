import type { OmsResource } from "./_oms.ts";
import { SignatureMissing } from "./errors.ts";
import { type Issuer, resolvePolicy, type TrustPolicy } from "./policy.ts";
import { checkModel } from "./_check_model.ts";
import { verifySignedText } from "./_verify_signed.ts";
import type { VerifiedSigner } from "./types.ts";

/** Options for {@linkcode verifyModel}. */
export interface VerifyModelOptions {
  /**
   * The trust policy.
   * @default {the policy set with init()}
   */
  policy?: TrustPolicy | Issuer | Issuer[];
  /**
   * The signature file.
   * @default {"<dir>/model.sig", or "<file>.sig" for a single-file model}
   */
  signature?: string;
  /**
   * Model-relative paths that were left out when signing (as
   * `model_signing verify --ignore-paths`). Paths the statement itself records
   * as ignored are honoured too.
   * @default {[]}
   */
  ignorePaths?: string[];
  /**
   * Check only these model-relative files against the signed manifest (e.g.
   * the one ONNX variant an app downloaded); other files are not read.
   */
  files?: string[];
  /**
   * The model name the caller expects: a statement for another model is
   * refused (`PolicyError`, `"wrong-model"`). `model_signing` records the
   * signed folder's name, which matches the last segment of a hub id.
   */
  name?: string;
  /** Called as files are hashed, with the bytes so far. */
  onProgress?: (bytes: number) => void;
  /**
   * Accept files that are symlinks, as `model_signing verify --allow_symlinks`
   * (a Hugging Face cache snapshot is a folder of links into `blobs/`).
   * Without it a linked file is accepted only when the signer followed links
   * too (the statement says so).
   * @default {false}
   */
  allowSymlinks?: boolean;
  /**
   * Leave out `.git`, `.gitattributes`, `.github` and `.gitignore`, as
   * `model_signing` does unless given `--no-ignore-git-paths`.
   * @default {true}
   */
  ignoreGitPaths?: boolean;
  /**
   * Check only the files the signature lists: files the signer did not sign
   * are not refused (`model_signing verify --ignore_unsigned_files`).
   * @default {false}
   */
  ignoreUnsigned?: boolean;
}

/** What {@linkcode verifyModel} established. */
export interface VerifiedModel {
  /** Who signed. */
  signer: VerifiedSigner;
  /** The model name in the statement (`undefined` for the v0.2 format, which records none). */
  modelName: string | undefined;
  /** Every signed file with its digest. */
  resources: OmsResource[];
  /** The files that were checked (all signed files, or `files`). */
  checked: string[];
}

/**
 * Verifies a detached OMS signature (`model.sig`, as written by
 * {@linkcode signModel} or Python's `model_signing`) against a trust policy,
 * then checks that the model's files are exactly the signed ones. Deno and Node.
 *
 * @param path The model folder or file.
 * @param options Policy, signature path, ignored paths, file subset.
 * @returns The signer and the signed manifest.
 * @throws {SignatureMissing} When there is no signature file.
 * @throws {InvalidSignature} When the signature or signer is not accepted, or a signed file is missing.
 * @throws {HashMismatch} When a file's content differs from what was signed.
 *
 * @example Verifying a keyless signature
 * ```ts ignore
 * import { Issuer, verifyModel } from "@safemodels/safemodels/sign";
 *
 * await verifyModel("./tiny-bert", {
 *   policy: Issuer({ identity: "release@example.com", issuer: "https://accounts.google.com" }),
 * });
 * ```
 */
export async function verifyModel(
  path: string,
  options: VerifyModelOptions = {},
): Promise<VerifiedModel> {
  const policy = resolvePolicy(options.policy);
  const check = await checkModel(path, {
    policy,
    verify: verifySignedText,
    name: options.name,
    signature: options.signature,
    ignorePaths: options.ignorePaths,
    files: options.files,
    onProgress: options.onProgress,
    allowSymlinks: options.allowSymlinks,
    ignoreGitPaths: options.ignoreGitPaths,
    ignoreUnsigned: options.ignoreUnsigned,
  });
  if (check.oms.$case === "absent") {
    throw new SignatureMissing(`Cannot verify model: no signature at ${check.signature}`, {
      file: check.root,
    });
  }
  if (check.failures.length > 0) throw check.failures[0];
  if (check.oms.$case !== "verified" || check.statement === undefined) {
    throw new TypeError("unreachable: a refused model.sig is a failure");
  }
  return {
    signer: check.oms.signer,
    modelName: check.oms.modelName,
    resources: check.statement.resources,
    checked: options.files ?? check.statement.resources.map((r) => r.name),
  };
}
