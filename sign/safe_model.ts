import { safeHash, type SafeHashOptions } from "../hash/safe_hash.ts";
import { extractMetadata } from "../meta/extract_metadata.ts";
import { updateMeta } from "../meta/update_meta.ts";
import { HashMismatch, HashMissing } from "./errors.ts";
import { decideFile } from "./evidence.ts";
import { type Issuer, resolvePolicy, type TrustPolicy } from "./policy.ts";
import {
  claimStatement,
  hashAlgorithmOf,
  IN_TOTO_PAYLOAD_TYPE,
  METADATA_KEYS as KEYS,
} from "./_statement.ts";
import { safetensorsFinding } from "./_findings.ts";
import { verifySignedText } from "./_verify_signed.ts";
import type { Signer, SigstoreBundle, VerifiedSigner } from "./types.ts";

/** The `__metadata__` keys embedded signatures use. */
export const METADATA_KEYS: {
  readonly name: "safemodels.name";
  readonly version: "safemodels.version";
  readonly hash: "safemodels.hash";
  readonly signature: "safemodels.signature";
} = KEYS;

/** Options for {@linkcode SafeModel.fromSafetensor}. */
export interface FromSafetensorOptions {
  /**
   * The trust policy for the embedded signature.
   * @default {the policy set with init()}
   */
  policy?: TrustPolicy | Issuer | Issuer[];
  /**
   * Verify the embedded signature. `false` only re-checks the hash (the
   * result then has no `signer`).
   * @default {true}
   */
  verify?: boolean;
  /** The model name the caller expects (refuses a signature for another model). */
  name?: string;
  /** The version the caller expects (refuses an older or other version). */
  version?: string;
}

/** Options for {@linkcode SafeModel.fromHf}. */
export interface FromHfOptions {
  /**
   * A branch, tag or commit; it is resolved to the commit, which becomes the
   * model's version.
   * @default {"main"}
   */
  revision?: string;
  /**
   * The hub's base URL.
   * @default {"https://huggingface.co"}
   */
  hubUrl?: string;
  /**
   * The weights file to hash.
   * @default {the first of model.safetensors, pytorch_model.bin, model.onnx, onnx/model.onnx in the repository}
   */
  file?: string;
  /** The fetch to use (for a proxy, auth headers or tests). @default {globalThis.fetch} */
  fetch?: typeof fetch;
  /** Options for the hash (algorithm, progress). */
  hash?: SafeHashOptions;
}

/** The default Hugging Face hub. */
export const DEFAULT_HUB_URL = "https://huggingface.co";
const WEIGHT_FILES = ["model.safetensors", "pytorch_model.bin", "model.onnx", "onnx/model.onnx"];

/** Options for {@linkcode SafeModel.signSafetensor}. */
export interface SignSafetensorOptions {
  /** Who signs: `keySigner`, `certificateSigner` or `sigstoreSigner`. */
  signer: Signer;
}

/**
 * A model's identity: name, version and tensor hash. The seed project's
 * `SafeModel`: build one from a file, sign it into the safetensors header,
 * and load it back with the hash re-checked and the signature verified.
 *
 * @example Signing and loading a safetensors file
 * ```ts ignore
 * import { init, Issuer, keySigner, SafeModel } from "@safemodels/safemodels/sign";
 *
 * const sm = await SafeModel.fromFile("tiny-bert", "1.0.0", "model.safetensors");
 * await sm.signSafetensor("model.safetensors", { signer: keySigner(await Deno.readTextFile("key.pem")) });
 *
 * init({ publicKeys: [await Deno.readTextFile("key.pub.pem")] });
 * const loaded = await SafeModel.fromSafetensor("model.safetensors", { name: "tiny-bert" });
 * console.log(loaded.version, loaded.signer?.kind); // "1.0.0" "key"
 * ```
 */
export class SafeModel {
  /** Model name. */
  readonly name: string;
  /** Model version (a release, tag or commit; never a moving branch name). */
  readonly version: string;
  /** The tensor hash (`safemodels-v1:…` or a seed hash). */
  readonly hash: string;
  /** Who signed it, when it was loaded with verification. */
  readonly signer: VerifiedSigner | undefined;

  /**
   * Creates a model identity.
   *
   * @param name Model name.
   * @param version Model version.
   * @param hash Tensor hash.
   * @param signer Who signed it, if verified.
   * @throws {TypeError} When a field is empty.
   */
  constructor(name: string, version: string, hash: string, signer?: VerifiedSigner) {
    for (const [k, v] of [["name", name], ["version", version], ["hash", hash]]) {
      if (typeof v !== "string" || v === "") {
        throw new TypeError(`Cannot create SafeModel: ${k} must be a non-empty string`);
      }
    }
    this.name = name;
    this.version = version;
    this.hash = hash;
    this.signer = signer;
  }

  /**
   * Hashes a model file (any supported format) into a model identity.
   *
   * @param name Model name.
   * @param version Model version.
   * @param path The model file.
   * @param options Hash options (algorithm, workers, progress).
   * @returns The model identity.
   */
  static async fromFile(
    name: string,
    version: string,
    path: string | URL,
    options: SafeHashOptions = {},
  ): Promise<SafeModel> {
    return new SafeModel(name, version, await safeHash(path, options));
  }

  /**
   * Hashes a model's weights straight from a Hugging Face-style hub (streamed,
   * never saved): the name is the repository, the version the commit the
   * revision resolves to (never a moving branch name).
   *
   * @param repo The repository, e.g. `"acme/tiny-bert"`.
   * @param options Revision, hub URL, file, fetch and hash options.
   * @returns The model identity.
   * @throws {TypeError} When the hub answers with an error or an invalid commit.
   *
   * @example Pinning a model by commit
   * ```ts ignore
   * import { SafeModel } from "@safemodels/safemodels/sign";
   *
   * const sm = await SafeModel.fromHf("acme/tiny-bert", { revision: "main" });
   * console.log(sm.version); // "3f1c…" (40 hex digits)
   * ```
   */
  static async fromHf(repo: string, options: FromHfOptions = {}): Promise<SafeModel> {
    if (!/^[\w.-]+(\/[\w.-]+)?$/.test(repo) || repo.includes("..")) {
      throw new TypeError(
        `Cannot fetch model: ${JSON.stringify(repo)} is not a repository name like "org/name"`,
      );
    }
    const hub = (options.hubUrl ?? DEFAULT_HUB_URL).replace(/\/+$/, "");
    const get = options.fetch ?? fetch;
    const revision = options.revision ?? "main";
    const infoUrl = `${hub}/api/models/${repo}/revision/${encodeURIComponent(revision)}`;
    const res = await get(infoUrl);
    if (!res.ok) {
      await res.body?.cancel();
      throw new TypeError(`Cannot fetch model: ${infoUrl} answered ${res.status}`);
    }
    const info = await res.json() as { sha?: unknown; siblings?: { rfilename?: unknown }[] };
    const sha = info.sha;
    if (typeof sha !== "string" || !/^[0-9a-f]{40}$/.test(sha)) {
      throw new TypeError(
        `Cannot fetch model: ${infoUrl} gave no commit for revision "${revision}" (expected 40 hex digits, got ${
          JSON.stringify(sha)
        })`,
      );
    }
    const files = new Set(
      (info.siblings ?? []).map((s) => s.rfilename).filter((f) => typeof f === "string"),
    );
    const file = options.file ?? WEIGHT_FILES.find((f) => files.has(f));
    if (file === undefined) {
      throw new TypeError(
        `Cannot fetch model: ${repo}@${sha} has none of ${WEIGHT_FILES.join(", ")}`,
      );
    }
    const url = `${hub}/${repo}/resolve/${sha}/${
      file.split("/").map(encodeURIComponent).join("/")
    }`;
    const weights = await get(url);
    if (!weights.ok) {
      await weights.body?.cancel();
      throw new TypeError(`Cannot fetch model: ${url} answered ${weights.status}`);
    }
    return new SafeModel(repo, sha, await safeHash(weights, options.hash ?? {}));
  }

  /**
   * Loads a safetensors file's embedded identity: reads name, version and hash
   * from `__metadata__`, re-hashes the tensors, and verifies the embedded
   * signature against the trust policy.
   *
   * @param path The safetensors file.
   * @param options Policy, expected name and version, or `verify: false`.
   * @returns The verified model identity.
   * @throws {HashMissing} When the metadata has no `safemodels.hash`.
   * @throws {HashMismatch} When the tensors changed since the hash was written.
   * @throws {SignatureMissing} When there is no signature and the policy requires one.
   * @throws {InvalidSignature} When the signature, signer, name or version is wrong.
   */
  static async fromSafetensor(
    path: string | URL,
    options: FromSafetensorOptions = {},
  ): Promise<SafeModel> {
    const file = typeof path === "string" ? path : path.pathname;
    const meta = await extractMetadata(path);
    const hash = meta[METADATA_KEYS.hash];
    if (hash === undefined) {
      throw new HashMissing(
        `Cannot load model: its metadata has no "${METADATA_KEYS.hash}" (sign it first)`,
        {
          file,
        },
      );
    }
    const actual = await safeHash(path, { algorithm: hashAlgorithmOf(hash) });
    if (actual !== hash) throw new HashMismatch(hash, actual, { file });
    const name = meta[METADATA_KEYS.name] ?? "";
    const version = meta[METADATA_KEYS.version] ?? "";
    const unsigned = () => new SafeModel(name || file, version || "unknown", hash);
    if (options.verify === false) return unsigned();

    const policy = resolvePolicy(options.policy);
    const embedded = await safetensorsFinding(
      meta,
      METADATA_KEYS,
      async (claimed) =>
        hashAlgorithmOf(claimed) === hashAlgorithmOf(hash)
          ? actual
          : await safeHash(path, { algorithm: hashAlgorithmOf(claimed) }),
      policy,
      verifySignedText,
      file,
    );
    const verdict = decideFile({
      model: { name: options.name, version: options.version },
      file,
      oms: { $case: "absent" },
      embedded,
      policy,
    });
    if (verdict.$case === "refused") throw verdict.error;
    if (verdict.$case === "unsigned" || embedded.$case !== "verified") return unsigned();
    return new SafeModel(embedded.claim.name, embedded.claim.version, hash, verdict.signer);
  }

  /**
   * Signs this identity and embeds it in a safetensors file's `__metadata__`
   * (a backwards-compatible rewrite: the tensor bytes, and so the hash, do not
   * change). The file must hold the weights this identity's hash describes.
   *
   * @param path The safetensors file.
   * @param options The signer.
   * @returns The Sigstore bundle that was embedded.
   * @throws {HashMismatch} When the file's tensors do not match `hash`.
   */
  async signSafetensor(
    path: string | URL,
    options: SignSafetensorOptions,
  ): Promise<SigstoreBundle> {
    const file = typeof path === "string" ? path : path.pathname;
    const actual = await safeHash(path, { algorithm: hashAlgorithmOf(this.hash) });
    if (actual !== this.hash) throw new HashMismatch(this.hash, actual, { file });
    const bundle = await options.signer.sign(
      claimStatement({ name: this.name, version: this.version, hash: this.hash }),
      IN_TOTO_PAYLOAD_TYPE,
    );
    await updateMeta(path, {
      [METADATA_KEYS.name]: this.name,
      [METADATA_KEYS.version]: this.version,
      [METADATA_KEYS.hash]: this.hash,
      [METADATA_KEYS.signature]: JSON.stringify(bundle),
    });
    return bundle;
  }
}
