import { type ByteSource, openSource } from "../hash/_source.ts";
import { rangeChunks, readHeader, type SafetensorsHeader } from "../hash/_safetensors.ts";
import type { ModelInput } from "../hash/types.ts";

/**
 * Options for {@linkcode rewriteMetadata} and {@linkcode updateMeta}.
 *
 * @example Replacing all metadata
 * ```ts ignore
 * import { updateMeta, type RewriteMetadataOptions } from "@safemodels/safemodels/meta";
 *
 * const options: RewriteMetadataOptions = { clobber: true };
 * await updateMeta("model.safetensors", { format: "pt" }, options);
 * ```
 */
export interface RewriteMetadataOptions {
  /**
   * Replace the whole `__metadata__` instead of merging into it.
   * @default {false}
   */
  clobber?: boolean;
}

/**
 * Checks that `meta` is a plain object of string values.
 * @internal
 */
export function checkMetadata(
  meta: Record<string, string>,
  file: string,
): void {
  if (typeof meta !== "object" || meta === null || Array.isArray(meta)) {
    throw new TypeError(
      `Cannot update metadata of ${file}: expected an object of strings`,
    );
  }
  for (const [k, v] of Object.entries(meta)) {
    if (typeof v !== "string") {
      throw new TypeError(
        `Cannot update metadata of ${file}: the value of "${k}" is a ${
          v === null ? "null" : typeof v
        }, expected a string`,
      );
    }
    // JSON.stringify writes a lone surrogate as a `\ud800` escape, which the
    // reference safetensors parser (serde_json) refuses to load.
    if (!k.isWellFormed() || !v.isWellFormed()) {
      throw new TypeError(
        `Cannot update metadata of ${file}: the ${
          k.isWellFormed() ? `value of "${k}"` : "key"
        } contains a lone UTF-16 surrogate, expected well-formed Unicode`,
      );
    }
  }
}

/**
 * Builds the new header bytes (length prefix included): the merged metadata
 * first, then every tensor entry unchanged, padded with spaces so that the
 * data section starts on an 8-byte boundary.
 * @internal
 */
export function buildHeader(
  header: SafetensorsHeader,
  meta: Record<string, string>,
  clobber: boolean,
): Uint8Array {
  const merged = clobber ? { ...meta } : { ...header.metadata, ...meta };
  // No prototype, so that a tensor named "__proto__" stays an own key.
  const obj: Record<string, unknown> = Object.create(null);
  if (Object.keys(merged).length > 0) obj.__metadata__ = merged;
  for (const e of header.entries) {
    obj[e.name] = {
      dtype: e.dtype,
      shape: e.shape,
      data_offsets: [e.begin, e.end],
    };
  }
  const json = new TextEncoder().encode(JSON.stringify(obj));
  const padded = Math.ceil(json.byteLength / 8) * 8;
  const out = new Uint8Array(8 + padded).fill(0x20);
  new DataView(out.buffer).setBigUint64(0, BigInt(padded), true);
  out.set(json, 8);
  return out;
}

/**
 * Streams a copy of a safetensors file with new `__metadata__`: the header is
 * rebuilt (merged with the old metadata unless `clobber`), every tensor entry
 * and data byte is kept, so the tensor hash is unchanged. The data section is
 * streamed from the input, never buffered whole.
 *
 * @param input A path or `file:` URL, bytes or a `Blob` (random access is needed).
 * @param meta String keys to string values.
 * @param options Whether to replace rather than merge.
 * @returns The new file as a byte stream.
 * @throws {TypeError} When a metadata value is not a string.
 * @throws {ModelFormatError} When the input is not a valid safetensors file.
 *
 * @example Adding metadata in memory
 * ```ts
 * import { extractMetadata, rewriteMetadata } from "@safemodels/safemodels/meta";
 * import assert from "node:assert/strict";
 *
 * const header = new TextEncoder().encode('{"__metadata__":{"format":"pt"}}');
 * const file = new Uint8Array(8 + header.length);
 * new DataView(file.buffer).setBigUint64(0, BigInt(header.length), true);
 * file.set(header, 8);
 *
 * const out = await rewriteMetadata(file, { name: "tiny" });
 * const bytes = new Uint8Array(await new Response(out).arrayBuffer());
 * assert.deepEqual(await extractMetadata(bytes), { format: "pt", name: "tiny" });
 * ```
 */
export async function rewriteMetadata(
  input: string | URL | Uint8Array | Blob,
  meta: Record<string, string>,
  options: RewriteMetadataOptions = {},
): Promise<ReadableStream<Uint8Array>> {
  const source = await openSource(input as ModelInput);
  try {
    checkMetadata(meta, source.name);
    const header = await readHeader(source);
    return metadataStream(
      source,
      header,
      buildHeader(header, meta, options.clobber ?? false),
    );
  } catch (e) {
    await source.close();
    throw e;
  }
}

/** The new header, then the old data section; closes `source` at the end. */
export function metadataStream(
  source: ByteSource,
  header: SafetensorsHeader,
  newHeader: Uint8Array,
): ReadableStream<Uint8Array> {
  const data = rangeChunks(source, 8 + header.headerLength, header.dataLength);
  let sentHeader = false;
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      if (!sentHeader) {
        sentHeader = true;
        controller.enqueue(newHeader);
        return;
      }
      let r: IteratorResult<Uint8Array>;
      try {
        r = await data.next();
      } catch (e) {
        // An errored stream is never cancelled: close the file here.
        await source.close();
        throw e;
      }
      if (r.done) {
        await source.close();
        controller.close();
      } else controller.enqueue(r.value);
    },
    async cancel() {
      await source.close();
    },
  });
}
