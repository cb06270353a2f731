import { ModelFormatError } from "./errors.ts";
import { DETECT_BYTES, detectFormat } from "./detect_format.ts";
import { type ByteSource, isPathLike, openSource } from "./_source.ts";
import { readSafetensors } from "./_safetensors.ts";
import type { ModelFormat, ModelInput, Tensor } from "./types.ts";

/**
 * Options for {@linkcode openModel}.
 *
 * @example Resolving ONNX external data yourself
 * ```ts ignore
 * import { openModel, type OpenModelOptions } from "@safemodels/safemodels/hash";
 *
 * const options: OpenModelOptions = {
 *   openExternal: (location) => fetch(new URL(location, "https://example.com/onnx/")),
 * };
 * await using model = await openModel(await fetch("https://example.com/onnx/model.onnx"), options);
 * ```
 */
export interface OpenModelOptions {
  /**
   * Read the input as this format instead of detecting it from its content.
   * @default {undefined} (detect from the magic bytes)
   */
  format?: ModelFormat;
  /**
   * Opens an ONNX external-data file (such as `model.onnx_data`) named by a
   * tensor's `location`, which has already been checked to be a plain
   * relative path. For path inputs the default opens the file next to the
   * model and refuses any that resolves (through symlinks too) outside the
   * model's folder; for other inputs external data is refused by default.
   * @default {undefined}
   */
  openExternal?: (location: string) => ModelInput | Promise<ModelInput>;
  /**
   * For a folder or an index: read weights files that are links to files
   * outside the folder (a Hugging Face cache snapshot is a folder of links
   * into `blobs/`). By default such a link is refused, as `model_signing`
   * refuses symlinks unless told otherwise.
   * @default {false}
   */
  allowSymlinks?: boolean;
}

/**
 * A model file opened for reading; close it (or use `await using`) when done.
 *
 * @example Closing a model
 * ```ts ignore
 * import { openModel, type OpenedModel } from "@safemodels/safemodels/hash";
 *
 * const model: OpenedModel = await openModel("pytorch_model.bin");
 * try {
 *   console.log(model.format, model.tensors.length);
 * } finally {
 *   await model.close();
 * }
 * ```
 */
export interface OpenedModel extends AsyncDisposable {
  /** The file's name for messages (its path, or `<bytes>`, `<stream>`, …). */
  readonly file: string;
  /** The detected (or given) format. */
  readonly format: ModelFormat;
  /** The tensors, in file order; their bytes are read on demand. */
  readonly tensors: Tensor[];
  /** The safetensors `__metadata__`, for safetensors files that have it. */
  readonly metadata: Record<string, string> | undefined;
  /**
   * For a folder or a sharded checkpoint's index: the files read, relative
   * to the folder (the index first, then its shards).
   */
  readonly files?: string[];
  /** Releases open files. Idempotent. */
  close(): Promise<void>;
}

/**
 * Opens a model file of any supported format as one format-independent list
 * of tensors: safetensors, PyTorch zip (`torch.save` ≥ 1.6) and legacy
 * checkpoints, NumPy `.npy`/`.npz` and ONNX initializers. The format is
 * detected from the content, not the file name. PyTorch pickles are parsed by
 * a restricted reader and never executed. Tensor bytes are read lazily, in
 * logical C order and little-endian, whatever the layout in the file.
 *
 * Streams and responses are read into memory first unless they hold
 * safetensors and are hashed with {@linkcode safeHash}, which streams them.
 *
 * @param input A path or `file:` URL, bytes, a `Blob`, a byte stream or a `Response`.
 * @param options Format override and ONNX external-data resolution.
 * @returns The opened model.
 * @throws {ModelFormatError} When the file is not a model or is malformed.
 * @throws {ForbiddenGlobalError} When a pickle asks for a global outside the allow-list.
 *
 * @example Listing the tensors of a file
 * ```ts
 * import { openModel } from "@safemodels/safemodels/hash";
 * import assert from "node:assert/strict";
 *
 * const header = new TextEncoder().encode(
 *   '{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}',
 * );
 * const file = new Uint8Array(8 + header.length + 8);
 * new DataView(file.buffer).setBigUint64(0, BigInt(header.length), true);
 * file.set(header, 8);
 *
 * await using model = await openModel(file);
 * assert.equal(model.format, "safetensors");
 * assert.deepEqual(model.tensors.map((t) => [t.name, t.dtype, t.shape]), [["w", "F32", [2]]]);
 * ```
 */
export async function openModel(
  input: ModelInput,
  options: OpenModelOptions = {},
): Promise<OpenedModel> {
  if (isPathLike(input)) {
    const { toPath } = await import("./_source_fs.ts");
    const path = toPath(input);
    const sharded = await import("./_sharded_fs.ts");
    if (await sharded.isFolderModel(path)) {
      const m = await sharded.openFolderModel(path, async (file) => {
        const one = await openModelSource(await openSource(file), file, options);
        return { name: file, tensors: one.tensors, format: one.format, close: () => one.close() };
      }, options.allowSymlinks ?? false);
      return {
        file: m.file,
        format: m.format,
        tensors: m.tensors,
        metadata: undefined,
        files: m.files,
        close: m.close,
        [Symbol.asyncDispose]: m.close,
      };
    }
  }
  return await openModelSource(await openSource(input), input, options);
}

/** {@linkcode openModel} over an already opened source (internal). */
export async function openModelSource(
  source: ByteSource,
  input: ModelInput,
  options: OpenModelOptions,
): Promise<OpenedModel> {
  const externals: ByteSource[] = [];
  try {
    const format = options.format ?? await detect(source);
    const openExternal = externalOpener(input, options, externals);
    let metadata: Record<string, string> | undefined;
    let tensors: Tensor[];
    switch (format) {
      case "safetensors":
        ({ tensors, metadata } = await readSafetensors(source));
        break;
      // Other readers load on first use: safetensors users never load them.
      case "pytorch-zip":
        tensors = await (await import("./_pytorch.ts")).readPytorchZip(source);
        break;
      case "pytorch-legacy":
        tensors = await (await import("./_pytorch.ts")).readPytorchLegacy(
          source,
        );
        break;
      case "npy":
        tensors = await (await import("./_numpy.ts")).readNpy(source);
        break;
      case "npz":
        tensors = await (await import("./_numpy.ts")).readNpz(source);
        break;
      case "onnx":
        tensors = await (await import("./_onnx.ts")).readOnnx(
          source,
          openExternal ? { openExternal } : {},
        );
        break;
      default:
        throw new TypeError(
          `Cannot open model: unknown format ${JSON.stringify(format)}`,
        );
    }
    const close = async () => {
      await Promise.all([source, ...externals.splice(0)].map((s) => s.close()));
    };
    return {
      file: source.name,
      format,
      tensors,
      metadata,
      close,
      [Symbol.asyncDispose]: close,
    };
  } catch (e) {
    await Promise.all([source, ...externals].map((s) => s.close()));
    throw e;
  }
}

async function detect(source: ByteSource): Promise<ModelFormat> {
  if (source.size === 0) {
    throw new ModelFormatError(
      "unknown-format",
      "Cannot detect model format: the file is empty",
      { file: source.name },
    );
  }
  const head = await source.read(0, Math.min(DETECT_BYTES, source.size));
  const found = detectFormat(head);
  if (found === undefined) {
    throw new ModelFormatError(
      "unknown-format",
      `Cannot detect model format: the first bytes (${
        [...head.subarray(0, 8)].map((b) => b.toString(16).padStart(2, "0"))
          .join(" ")
      }) match none of safetensors, PyTorch, NumPy or ONNX`,
      { file: source.name },
    );
  }
  if (found !== "zip") return found;
  const { readZipDirectory } = await import("./_zip.ts");
  const entries = await readZipDirectory(source);
  if (
    entries.some((e) => e.name === "data.pkl" || e.name.endsWith("/data.pkl"))
  ) {
    return "pytorch-zip";
  }
  if (entries.length > 0 && entries.every((e) => e.name.endsWith(".npy"))) {
    return "npz";
  }
  throw new ModelFormatError(
    "unknown-format",
    `Cannot detect model format: a zip archive with neither a PyTorch data.pkl nor only .npy members (found ${
      entries.slice(0, 5).map((e) => e.name).join(", ") || "no entries"
    })`,
    { file: source.name },
  );
}

function externalOpener(
  input: ModelInput,
  options: OpenModelOptions,
  opened: ByteSource[],
): ((location: string) => Promise<ByteSource>) | undefined {
  const custom = options.openExternal;
  if (custom) {
    return async (location) => {
      const s = await openSource(await custom(location));
      opened.push(s);
      return s;
    };
  }
  if (!isPathLike(input)) return undefined;
  return async (location) => {
    const { fileSourceInside, toPath } = await import("./_source_fs.ts");
    const { dirname } = await import("node:path");
    const s = await fileSourceInside(dirname(toPath(input)), location);
    opened.push(s);
    return s;
  };
}
