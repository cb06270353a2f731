// Which model a request of transformers.js belongs to: a hub URL is read
// with transformers.js' own path template (env.remoteHost,
// env.remotePathTemplate); a local path is placed by the file side
// (_guard_files.ts) at the model root transformers.js asked from. The model
// root, and so the only model.sig that counts, never depends on where a
// model.sig happens to be.
import { EvidenceError } from "../sign/errors.ts";
import type { FileRef, GuardFiles, TransformersEnv } from "./_guard_types.ts";
import { isUrl } from "./_guard_io.ts";

/** Files transformers.js loads for a model (others pass unguarded: they are not model files). */
const MODEL_FILE = /\.(?:json|onnx|onnx_data(?:_\d+)?|txt|model|safetensors|bin|jinja|tiktoken)$/;

function escapeRe(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

/** Places requests of transformers.js in their model. */
export class Locator {
  readonly #env: TransformersEnv;
  readonly #files: GuardFiles | undefined;
  /** The hub URL pattern of the last host and template seen (compiled once, not per request). */
  #pattern: { of: string; re: RegExp } | undefined;

  constructor(env: TransformersEnv, files: GuardFiles | undefined) {
    this.#env = env;
    this.#files = files;
  }

  /** A hub URL's model (repository and revision) and file, or `undefined`. */
  remote(url: string): FileRef | undefined {
    const env = this.#env;
    const host = env.remoteHost.replace(/\/+$/, "");
    const template = env.remotePathTemplate.replace(/^\/+|\/+$/g, "");
    const of = `${host}\0${template}`;
    if (this.#pattern?.of !== of) {
      const pattern = escapeRe(template)
        .replaceAll(escapeRe("{model}"), "(?<model>.+?)")
        .replaceAll(escapeRe("{revision}"), "(?<revision>[^/]+)");
      this.#pattern = {
        of,
        re: new RegExp(`^${escapeRe(host)}/(?<prefix>${pattern})/(?<file>[^?#]+)$`),
      };
    }
    const m = this.#pattern.re.exec(url.split(/[?#]/)[0]!);
    if (!m?.groups) return undefined;
    const { model: name = "", revision = "main", prefix = "", file = "" } = m.groups;
    const base = `${host}/${prefix}`;
    let decoded: string;
    try {
      decoded = file.split("/").map(decodeURIComponent).join("/");
    } catch {
      return undefined;
    }
    return {
      model: {
        key: `remote:${base}`,
        name,
        revision: safeDecode(revision),
        signature: `${base}/model.sig`,
        base,
      },
      file: decoded,
    };
  }

  /**
   * Throws for a model file transformers.js reads from an http(s)
   * env.localModelPath: such a URL does not say which model and file it is
   * (the hub's path template does), so it could not be checked.
   */
  refuseUnplaced(url: string): void {
    const base = this.#env.localModelPath;
    if (typeof base !== "string" || !/^https?:/i.test(base)) return;
    // transformers.js joins the base and the file with "/", whatever the
    // base holds (a query string included).
    const root = base.replace(/\/+$/, "");
    if (!url.startsWith(root)) return;
    const rest = url.slice(root.length).split(/[?#]/)[0]!;
    if (!rest.startsWith("/") || !MODEL_FILE.test(rest)) return;
    throw new EvidenceError(
      "unreadable",
      `Cannot load this file: model files under an http(s) env.localModelPath (${base}) cannot be placed in their model, so they cannot be checked; serve them as a hub does (env.remoteHost, env.remotePathTemplate)`,
      { file: url },
    );
  }

  /**
   * The same file's URL at another revision (a pinned commit), built from the
   * same host and path template; `undefined` when `url` is not `ref`'s.
   */
  atRevision(url: string, ref: FileRef, revision: string): string | undefined {
    const base = ref.model.base;
    if (base === undefined || !url.startsWith(`${base}/`)) return undefined;
    const env = this.#env;
    const host = env.remoteHost.replace(/\/+$/, "");
    const template = env.remotePathTemplate.replace(/^\/+|\/+$/g, "");
    const prefix = template.replaceAll("{model}", ref.model.name)
      .replaceAll("{revision}", encodeURIComponent(revision));
    return `${host}/${prefix}${url.slice(base.length)}`;
  }

  /** A local path's model and file, or `undefined` when it is not a model file. */
  local(path: string): FileRef | undefined {
    if (!MODEL_FILE.test(path)) return undefined;
    if (!this.#files) {
      throw new EvidenceError(
        "unreadable",
        `Cannot load ${path}: local model paths need a file system; serve the model over http(s) (env.remoteHost)`,
        { file: path },
      );
    }
    return this.#files.locateLocal(path, this.#env);
  }

  /** The model and file of a request or cache key. */
  locate(key: string): FileRef | undefined {
    if (isUrl(key)) return this.remote(key);
    return this.local(/^file:/i.test(key) ? filePath(key) : key);
  }
}

/** The local path a file: URL names (a Windows drive letter keeps no leading slash). */
export function filePath(url: string): string {
  const path = decodeURIComponent(new URL(url).pathname);
  return /^\/[A-Za-z]:\//.test(path) ? path.slice(1) : path;
}

function safeDecode(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
}
