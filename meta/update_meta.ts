import { trackTempFile, untrackTempFile } from "../hash/_temp_files.ts";
import { rewriteMetadata, type RewriteMetadataOptions } from "./rewrite_metadata.ts";

/**
 * Options of {@linkcode updateMeta}.
 *
 * @example Reporting progress on a big file
 * ```ts ignore
 * import { updateMeta } from "@safemodels/safemodels/meta";
 *
 * await updateMeta("model.safetensors", { version: "2" }, {
 *   onProgress: (done, total) => console.error(`${Math.round((100 * done) / total)}%`),
 * });
 * ```
 */
export interface UpdateMetaOptions extends RewriteMetadataOptions {
  /**
   * Called as the new file is written, with the bytes written so far and the
   * original file's size (the new one differs only by the header).
   */
  onProgress?: (bytesWritten: number, totalBytes: number) => void;
}

/**
 * Rewrites a safetensors file's `__metadata__` in place, safely: the seed
 * project's `update_meta`. The new metadata is merged into the old (or
 * replaces it with `clobber`), every tensor entry and byte is kept (so the
 * tensor hash and any embedded signature over it stay valid), the header is
 * re-padded to 8 bytes, and the data is streamed into a temporary file in the
 * same folder that then atomically replaces the original. A crash or error
 * mid-write leaves the original untouched. Deno and Node only.
 *
 * @param path The safetensors file.
 * @param meta String keys to string values.
 * @param options Whether to replace rather than merge; progress.
 * @returns Resolves when the file has been replaced.
 * @throws {TypeError} When a metadata value is not a string.
 * @throws {ModelFormatError} When the file is not a valid safetensors file.
 *
 * @example Setting metadata on a file
 * ```ts ignore
 * import { extractMetadata, updateMeta } from "@safemodels/safemodels/meta";
 *
 * await updateMeta("model.safetensors", { version: "1.0" });
 * console.log(await extractMetadata("model.safetensors"));
 * ```
 */
export async function updateMeta(
  path: string | URL,
  meta: Record<string, string>,
  options: UpdateMetaOptions = {},
): Promise<void> {
  const fs = await import("node:fs/promises");
  const { dirname, basename, join } = await import("node:path");
  const { toPath } = await import("../hash/_source_fs.ts");
  const file = toPath(path);
  // Validates the metadata and the file before anything is written.
  const stream = await rewriteMetadata(file, meta, options);
  const tmp = join(
    dirname(file),
    `.${basename(file)}.${crypto.randomUUID().slice(0, 8)}.tmp`,
  );
  let out: Awaited<ReturnType<typeof fs.open>>;
  let mode: number;
  let total = 0;
  try {
    const info = await fs.stat(file);
    mode = info.mode & 0o7777;
    total = info.size;
    out = await fs.open(tmp, "wx", mode & 0o777);
    trackTempFile(tmp);
  } catch (e) {
    await stream.cancel().catch(() => {});
    throw e;
  }
  try {
    // The umask may have cut bits from the mode given to open.
    await out.chmod(mode);
    let written = 0;
    for await (const chunk of stream) {
      let at = 0;
      while (at < chunk.byteLength) {
        at += (await out.write(chunk, at, chunk.byteLength - at)).bytesWritten;
      }
      written += chunk.byteLength;
      options.onProgress?.(written, total);
    }
    await out.sync();
    await out.close();
    await fs.rename(tmp, file);
    untrackTempFile(tmp);
  } catch (e) {
    await out.close().catch(() => {});
    await fs.rm(tmp, { force: true });
    untrackTempFile(tmp);
    await stream.cancel().catch(() => {});
    throw e;
  }
}
