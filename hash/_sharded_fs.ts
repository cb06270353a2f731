// Sharded checkpoints and model folders (Deno and Node): a
// `model.safetensors.index.json` or `pytorch_model.bin.index.json` names, in
// its `weight_map`, the shard that holds each tensor; a folder holds one of
// those or a single weights file. The model is the union of the shards'
// tensors, so it hashes like the same weights unsharded. The index and the
// shards must agree: a tensor the index does not place in its shard, a
// tensor it places where it is not, or a tensor in two shards is refused, as
// is a shard path that leaves the folder.
import { ModelFormatError } from "./errors.ts";
import type { Tensor } from "./types.ts";
import { setShard } from "./_shards.ts";

/**
 * What a model folder is read from, in transformers' order of preference
 * (`from_pretrained` takes `model.safetensors` before its index, and
 * safetensors before PyTorch).
 */
export const MODEL_FILES: readonly string[] = [
  "model.safetensors",
  "model.safetensors.index.json",
  "pytorch_model.bin",
  "pytorch_model.bin.index.json",
];

/** The most bytes of an index read (one for a 200,000-tensor model is about 12 MB). */
const MAX_INDEX_BYTES = 32 << 20;
/** The most tensors an index may place (as many as a PyTorch checkpoint may hold). */
const MAX_INDEX_TENSORS = 1 << 18;

/** Whether a path names a folder or an index, which {@linkcode openFolderModel} reads. */
export async function isFolderModel(path: string): Promise<boolean> {
  if (path.endsWith(".index.json")) return true;
  const { stat } = await import("node:fs/promises");
  return (await stat(path).catch(() => undefined))?.isDirectory() ?? false;
}

/** One opened shard (or the single file of a folder). */
export interface OpenedShard {
  /** Its path relative to the folder. */
  name: string;
  tensors: Tensor[];
  format: import("./types.ts").ModelFormat;
  close(): Promise<void>;
}

/**
 * Opens the model of a folder or index: the files it is read from (relative
 * to the folder) and the tensors of all of them, checked against the index.
 */
export async function openFolderModel(
  path: string,
  open: (file: string) => Promise<OpenedShard>,
  allowSymlinks = false,
): Promise<
  {
    file: string;
    files: string[];
    tensors: Tensor[];
    format: OpenedShard["format"];
    close(): Promise<void>;
  }
> {
  const { readFile, stat } = await import("node:fs/promises");
  const { basename, dirname, join } = await import("node:path");
  let dir = path;
  let chosen: string | undefined;
  if (path.endsWith(".index.json")) {
    dir = dirname(path);
    chosen = basename(path);
  } else {
    const present: string[] = [];
    for (const name of MODEL_FILES) {
      if ((await stat(join(dir, name)).catch(() => undefined))?.isFile()) {
        present.push(name);
      }
    }
    chosen = present[0];
    // A single file beside an index of the same format is read one way by
    // transformers and the other by tools that prefer the index: refuse.
    const format = chosen?.replace(/\.index\.json$/, "");
    if (chosen !== undefined && present.filter((p) => p.startsWith(format!)).length > 1) {
      throw new ModelFormatError(
        "ambiguous-folder",
        `Cannot hash the model in this folder: it holds both ${format} and ${format}.index.json, ` +
          "which loaders choose between differently; remove the one that is not the model",
        { file: path },
      );
    }
    if (chosen === undefined) {
      throw new ModelFormatError(
        "unknown-format",
        `Cannot hash the model in this folder: it holds none of ${MODEL_FILES.join(", ")}`,
        { file: path },
      );
    }
  }
  const fail = (message: string): never => {
    throw new ModelFormatError("bad-index", message, { file: join(dir, chosen!) });
  };
  if (!chosen.endsWith(".index.json")) {
    const one = await open(await inside(dir, chosen, allowSymlinks));
    return {
      file: join(dir, chosen),
      files: [chosen],
      tensors: one.tensors,
      format: one.format,
      close: () => one.close(),
    };
  }
  const indexPath = join(dir, chosen);
  const info = await stat(indexPath);
  if (!info.isFile()) fail("Cannot read the index: it is not a regular file");
  if (info.size > MAX_INDEX_BYTES) {
    fail(`Cannot read the index: it is ${info.size} bytes, more than ${MAX_INDEX_BYTES}`);
  }
  let index: unknown;
  try {
    index = JSON.parse(await readFile(indexPath, "utf8"));
  } catch (e) {
    fail(`Cannot read the index: it is not JSON (${(e as Error).message})`);
  }
  const map = (index as { weight_map?: unknown })?.weight_map;
  if (typeof map !== "object" || map === null || Array.isArray(map)) {
    fail('Cannot read the index: expected {"weight_map": {"<tensor>": "<shard file>"}}');
  }
  const wanted = new Map<string, string>();
  const files = new Set<string>();
  for (const tensor in map as Record<string, unknown>) {
    const shard = (map as Record<string, unknown>)[tensor];
    if (wanted.size >= MAX_INDEX_TENSORS) {
      fail(`Cannot read the index: it places more than ${MAX_INDEX_TENSORS} tensors`);
    }
    if (typeof shard !== "string" || !safeName(shard)) {
      fail(
        `Cannot read the index: the shard of "${tensor}" is ${
          JSON.stringify(shard)
        }, expected a file name inside the model's folder`,
      );
    }
    wanted.set(tensor, shard as string);
    files.add(shard as string);
  }
  const opened: OpenedShard[] = [];
  const close = () => Promise.all(opened.map((o) => o.close())).then(() => {});
  try {
    const tensors: Tensor[] = [];
    const seen = new Map<string, string>();
    for (const shard of [...files].sort()) {
      const o = await open(await inside(dir, shard, allowSymlinks));
      opened.push(o);
      if (o.format !== opened[0]!.format) {
        fail(
          `Cannot read the shards: ${shard} is ${o.format}, ${opened[0]!.name} is ${
            opened[0]!.format
          }`,
        );
      }
      for (const t of o.tensors) {
        const other = seen.get(t.name);
        if (other !== undefined) {
          fail(`Cannot read the shards: tensor "${t.name}" is in both ${other} and ${shard}`);
        }
        seen.set(t.name, shard);
        setShard(t, shard);
        tensors.push(t);
      }
    }
    // Every tensor where the index says, once the shards are known (so that
    // a tensor in two shards reads as that).
    for (const t of tensors) {
      const shard = seen.get(t.name)!;
      const placed = wanted.get(t.name);
      if (placed !== shard) {
        fail(
          placed === undefined
            ? `Cannot read the shards: ${shard} holds tensor "${t.name}", which the index does not list`
            : `Cannot read the shards: ${shard} holds tensor "${t.name}", which the index places in ${placed}`,
        );
      }
    }
    for (const [tensor, shard] of wanted) {
      if (!seen.has(tensor)) {
        fail(
          `Cannot read the shards: the index places tensor "${tensor}" in ${shard}, which does not hold it`,
        );
      }
    }
    return {
      file: indexPath,
      files: [chosen, ...[...files].sort()],
      tensors,
      format: opened[0]?.format ?? "safetensors",
      close,
    };
  } catch (e) {
    await close();
    throw e;
  }
}

/**
 * The path of `name` in `dir`, once it is known to exist and, after symlinks,
 * to stay inside the folder (the index names shards as text; a link could
 * still lead elsewhere).
 */
async function inside(dir: string, name: string, allowSymlinks: boolean): Promise<string> {
  const { realpath } = await import("node:fs/promises");
  const { join, sep } = await import("node:path");
  const path = join(dir, name);
  let root: string, target: string;
  try {
    root = await realpath(dir);
    target = await realpath(path);
  } catch (cause) {
    throw new ModelFormatError(
      "bad-index",
      `Cannot read the model: ${name} is missing from ${dir}`,
      { file: path, cause },
    );
  }
  if (!allowSymlinks && !target.startsWith(root + sep)) {
    throw new ModelFormatError(
      "bad-index",
      `Cannot read the model: ${name} is a link to ${target}, outside the model's folder ${root} (allowSymlinks follows it)`,
      { file: path },
    );
  }
  return path;
}

/** A shard file name that stays in the folder: no `..`, absolute path or backslash. */
function safeName(name: string): boolean {
  return name !== "" && !name.startsWith("/") && !name.includes("\\") && !/^[A-Za-z]:/.test(name) &&
    name.split("/").every((p) => p !== "" && p !== "." && p !== "..");
}
