/**
 * Read and rewrite safetensors `__metadata__` safely: {@linkcode extractMetadata}
 * reads only the header; {@linkcode updateMeta} rewrites a file in place
 * atomically, keeping every tensor byte (so the tensor hash is unchanged);
 * {@linkcode rewriteMetadata} does the same as a stream, for any runtime.
 *
 * @example Reading and updating metadata
 * ```ts ignore
 * import { extractMetadata, updateMeta } from "@safemodels/safemodels/meta";
 *
 * await updateMeta("model.safetensors", { name: "tiny-bert", version: "1" });
 * console.log(await extractMetadata("model.safetensors"));
 * ```
 *
 * @module
 */

export { extractMetadata } from "./extract_metadata.ts";
export { rewriteMetadata } from "./rewrite_metadata.ts";
export type { RewriteMetadataOptions } from "./rewrite_metadata.ts";
export { updateMeta } from "./update_meta.ts";
export type { UpdateMetaOptions } from "./update_meta.ts";
