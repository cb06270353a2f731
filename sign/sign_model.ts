import { buildStatement, OMS_PAYLOAD_TYPE } from "./_oms.ts";
import { hashModelFolder } from "./_oms_fs.ts";
import { signatureInside } from "./_check_model.ts";
import type { Signer, SigstoreBundle } from "./types.ts";

/** Options for {@linkcode signModel}. */
export interface SignModelOptions {
  /** Who signs: `keySigner`, `certificateSigner` or `sigstoreSigner`. */
  signer: Signer;
  /**
   * Model-relative paths left out of the signature (a folder leaves out
   * everything under it). They are recorded in the statement.
   * @default {[]}
   */
  ignorePaths?: string[];
  /**
   * Where to write the signature.
   * @default {"<dir>/model.sig", or "<file>.sig" for a single-file model}
   */
  signature?: string;
  /**
   * The model name in the statement.
   * @default {the folder's (or file's) base name}
   */
  modelName?: string;
  /** Called as files are hashed, with the bytes so far. */
  onProgress?: (bytes: number) => void;
}

/**
 * Signs a whole model folder (or one file) in the OpenSSF Model Signing (OMS)
 * format that Python's `model_signing` writes and verifies: every file's
 * SHA-256 goes into an in-toto statement, which is signed into a Sigstore
 * bundle and written as `model.sig`. Deno and Node.
 *
 * @param path The model folder or file.
 * @param options Signer, ignored paths, signature path, model name.
 * @returns The bundle that was written.
 *
 * @example Signing a folder with a key
 * ```ts ignore
 * import { keySigner, signModel } from "@safemodels/safemodels/sign";
 *
 * await signModel("./tiny-bert", { signer: keySigner(await Deno.readTextFile("key.pem")) });
 * ```
 */
export async function signModel(path: string, options: SignModelOptions): Promise<SigstoreBundle> {
  const { stat, writeFile, rename } = await import("node:fs/promises");
  const { basename, join } = await import("node:path");
  const root = path.replace(/[\\/]+$/, "") || path;
  const isDir = (await stat(root)).isDirectory();
  const signature = options.signature ?? (isDir ? join(root, "model.sig") : `${root}.sig`);
  const ignorePaths = options.ignorePaths ?? [];
  const resources = await hashModelFolder(root, {
    ...(isDir ? { ignorePaths, signatureFile: signatureInside(root, signature) } : {}),
    ...(options.onProgress ? { onProgress: options.onProgress } : {}),
  });
  const payload = await buildStatement(
    options.modelName ?? basename(root),
    resources,
    ignorePaths.length > 0 ? { ignorePaths } : {},
  );
  const bundle = await options.signer.sign(payload, OMS_PAYLOAD_TYPE);
  const tmp = `${signature}.${crypto.randomUUID().slice(0, 8)}.tmp`;
  await writeFile(tmp, JSON.stringify(bundle));
  await rename(tmp, signature);
  return bundle;
}
