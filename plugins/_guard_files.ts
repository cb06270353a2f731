// The file side of the transformers.js guard, for Deno and Node: local model
// folders, transformers.js' file cache, and the private copies onnxruntime
// opens. The guard's core (_guard.ts) has no file system and runs in
// browsers; the Node/Deno entry point hands it this.
import { copyFile, mkdir, open, readFile, rename, rm, stat, writeFile } from "node:fs/promises";
import { dirname, join, relative, resolve, sep } from "node:path";
import { sha256Hex } from "../hash/_digest.ts";
import { BLOCK_BYTES } from "../hash/_source.ts";
import type { FileRef } from "./_transformers_verify.ts";
import type { GuardFiles, Store, TransformersEnv } from "./_guard.ts";
import {
  externalizeOnnx,
  fileChunks,
  type NextChunk,
  PrivateDir,
  removeFiles,
  writeHashed,
} from "./_private_copy.ts";

/** Files a local model folder is recognised by. */
const MARKERS = ["model.sig", "config.json", "tokenizer_config.json", "tokenizer.json"];

/** A file's bytes as a stream of 4 MiB chunks, opened on first read. */
function fileBody(path: string): ReadableStream<Uint8Array> {
  let handle: import("node:fs/promises").FileHandle | undefined;
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      handle ??= await open(path, "r");
      const buf = new Uint8Array(BLOCK_BYTES);
      const { bytesRead } = await handle.read(buf, 0, buf.length, null);
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
    const { name, revision } = ref.model;
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
  const roots = new Map<string, string>();
  return {
    fileBody,
    fileStore,
    fileChunks,
    async fileSize(path) {
      const info = await stat(path).catch(() => undefined);
      return info?.isFile() ? info.size : undefined;
    },
    async readText(path) {
      try {
        return await readFile(path, "utf8");
      } catch (e) {
        if ((e as { code?: string }).code === "ENOENT") return undefined;
        throw e;
      }
    },
    async locateLocal(path) {
      const abs = resolve(path);
      const start = dirname(abs);
      let root = roots.get(start);
      if (root === undefined) {
        let fallback: string | undefined;
        for (let dir = start, depth = 0; depth < 6; depth++) {
          const found = await Promise.all(
            MARKERS.map((m) => stat(`${dir}${sep}${m}`).then(() => m, () => undefined)),
          );
          if (found.includes("model.sig")) {
            root = dir;
            break;
          }
          if (fallback === undefined && found.some((m) => m !== undefined)) fallback = dir;
          const up = dirname(dir);
          if (up === dir) break;
          dir = up;
        }
        root ??= fallback ?? start;
        roots.set(start, root);
      }
      return {
        model: {
          key: `local:${root}`,
          name: root,
          revision: "local",
          signature: `${root}${sep}model.sig`,
        },
        file: relative(root, abs).split(sep).join("/"),
      };
    },
    async copyPath(ref) {
      const root = await privateDir.root();
      const path = join(
        root,
        (await sha256Hex(ref.model.key)).slice(0, 16),
        ...ref.file.split("/"),
      );
      await mkdir(dirname(path), { recursive: true, mode: 0o700 });
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
