// The file side of the transformers.js guard, for Deno and Node: local model
// folders, transformers.js' file cache, and the private copies onnxruntime
// opens. The guard's core (_guard.ts) has no file system and runs in
// browsers; the Node/Deno entry point hands it this.
import { copyFile, lstat, mkdir, rename, rm, stat, writeFile } from "node:fs/promises";
import { lstatNow, makeDirNow, openReader, type Reader, statNow } from "./_fs.ts";
import { dirname, join, relative, resolve, sep } from "node:path";
import { createHash } from "node:crypto";
import { BLOCK_BYTES } from "../hash/_source.ts";
import { readEvidenceFile } from "../sign/_read_fs.ts";
import {
  type FileRef,
  type GuardFiles,
  isWeightFile,
  type Store,
  type TransformersEnv,
} from "./_guard_types.ts";
import {
  externalizeOnnx,
  fileChunks,
  type NextChunk,
  PrivateDir,
  removeFiles,
  writeHashed,
} from "./_private_copy.ts";

/**
 * A file's bytes as a stream of chunks of at most 4 MiB, opened on first
 * read; `size` (what the file measured) sizes the buffers, so a small file
 * does not take 4 MiB blocks (a file that grew is still read to its end).
 */
function fileBody(path: string, size?: number): ReadableStream<Uint8Array> {
  let handle: Reader | undefined;
  let left = size ?? BLOCK_BYTES;
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      handle ??= await openReader(path);
      const buf = new Uint8Array(Math.max(1, Math.min(BLOCK_BYTES, left + 1)));
      const bytesRead = await handle.read(buf);
      // Grown past what was measured: whole blocks from here.
      left = left >= bytesRead ? left - bytesRead : BLOCK_BYTES;
      if (bytesRead === 0) {
        await handle.close();
        controller.close();
        return;
      }
      controller.enqueue(buf.subarray(0, bytesRead));
    },
    async cancel() {
      await handle?.close();
    },
  }, { highWaterMark: 0 });
}

/** The layout of transformers.js' FileCache, so its entries are reused (and checked). */
function fileStore(env: TransformersEnv): Store {
  const where = (ref: FileRef | undefined) => {
    if (!ref || ref.model.base === undefined || !env.cacheDir) return undefined;
    const { name, revision = "main" } = ref.model;
    return join(env.cacheDir, ...(revision === "main" ? [name] : [name, revision]), ref.file);
  };
  return {
    async open(_key, ref) {
      const path = where(ref);
      if (path === undefined) return undefined;
      const info = await stat(path).catch(() => undefined);
      return info?.isFile() ? fileBody(path) : undefined;
    },
    async put(_key, ref, data) {
      const path = where(ref);
      if (path === undefined) return;
      await mkdir(dirname(path), { recursive: true });
      const tmp = `${path}.${crypto.randomUUID().slice(0, 8)}.tmp`;
      try {
        if (data instanceof Uint8Array) await writeFile(tmp, data);
        else await copyFile(data.path, tmp);
        await rename(tmp, path);
      } catch (error) {
        await rm(tmp, { force: true });
        throw error;
      }
    },
    async delete(_key, ref) {
      const path = where(ref);
      if (path !== undefined) await rm(path, { force: true });
    },
  };
}

/** Node and Deno file access for the guard; `workDir` holds the private copies. */
export function nodeFiles(workDir?: string): GuardFiles {
  const privateDir = new PrivateDir(workDir);
  // Model roots, learned from the configuration files transformers.js asks for.
  const roots = new Set<string>();
  // Each model's folder in the private folder, named by its key's SHA-256.
  const folders = new Map<string, string>();
  const folderOf = (key: string) => {
    let folder = folders.get(key);
    if (folder === undefined) {
      folder = createHash("sha256").update(key).digest("hex").slice(0, 16);
      folders.set(key, folder);
    }
    return folder;
  };
  return {
    fileBody,
    fileStore,
    fileChunks,
    inode: async (path) => String((await lstat(path, { bigint: true })).ino),
    fileSize(path) {
      const info = statNow(path);
      return Promise.resolve(info?.isFile ? info.size : undefined);
    },
    readEvidence: readEvidenceFile,
    isLinked(root, file) {
      let at = root;
      for (const part of file.split("/")) {
        at = join(at, part);
        if (lstatNow(at)?.isSymlink) return Promise.resolve(true);
      }
      return Promise.resolve(false);
    },
    locateLocal(path, env) {
      const abs = resolve(path);
      const dir = dirname(abs);
      let root: string | undefined;
      let unplaced =
        "no configuration file of its model was loaded through transformers.js, so its model root (and model.sig) is unknown; load the model by its id without passing `config`";
      if (!isWeightFile(abs)) {
        // Configuration, tokenizer and vocabulary files sit at the model root;
        // only one that is there makes its folder a root (asking for another
        // id that names a subfolder must not make that a model of its own).
        root = dir;
        if (statNow(abs)?.isFile) roots.add(dir);
      } else {
        // Weights: the root configuration was read from. Never a guess: inside
        // two roots (a model in another's subfolder), which model.sig decides
        // them is not known, and they are refused.
        const within = [...roots].filter((r) => abs.startsWith(`${r}${sep}`));
        if (within.length === 1) root = within[0];
        if (within.length > 1) {
          unplaced = `it lies inside more than one model folder loaded in this process (${
            within.join(", ")
          }), so which model.sig decides it is not known; do not load a model from a subfolder of another`;
        }
      }
      const base = env.localModelPath ? resolve(env.localModelPath) : undefined;
      const at = root ?? dir;
      // Inside localModelPath: the model id transformers.js was given. Elsewhere
      // (a path as the model id): the whole path, so a bare folder name never
      // stands for it.
      const name = base !== undefined && at.startsWith(`${base}${sep}`)
        ? relative(base, at).split(sep).join("/")
        : at.split(sep).join("/");
      return {
        model: {
          key: `local:${at}`,
          name,
          revision: undefined,
          signature: join(at, "model.sig"),
          root: at,
          ...(root === undefined ? { unplaced } : {}),
        },
        file: relative(at, abs).split(sep).join("/"),
      };
    },
    async copyPath(ref) {
      const root = await privateDir.root();
      const path = join(root, folderOf(ref.model.key), ...ref.file.split("/"));
      makeDirNow(dirname(path), 0o700);
      return path;
    },
    // Never created: the gate refuses it before onnxruntime could look.
    markerPath: () => resolve(`.safemodels-refused-${crypto.randomUUID()}`),
    async writeTemp(path: string, next: NextChunk) {
      const temp = PrivateDir.sibling(path, "part");
      return { temp, digest: (await writeHashed(next, temp)).digest };
    },
    commit: (temp, path) => rename(temp, path),
    discard: (temp) => rm(temp, { force: true }),
    finishOnnx: externalizeOnnx,
    remove: removeFiles,
    resolve: (path) => resolve(path),
    beside: (model, location) => join(dirname(resolve(model)), location),
    removeAll: () => privateDir.removeSync(),
  };
}
