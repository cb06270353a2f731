// Checking a model on disk (Deno and Node): the evidence a folder or file
// carries (its root model.sig, each file's embedded signature, the
// lockfile's pins) gathered into findings, and every file decided by
// decideFile (evidence.ts). verifyModel and the CLI's verify, check and lock
// are this with different inputs; the guards gather the same findings from
// what transformers.js loads and ask the same decision.
import { safeHash } from "../hash/safe_hash.ts";
import { openSource, rangeChunks, recycle } from "../hash/_source.ts";
import { extractMetadata } from "../meta/extract_metadata.ts";
import { HashMismatch, SignatureMissing } from "./errors.ts";
import {
  decideFile,
  type EmbeddedFinding,
  type OmsFinding,
  type PinFinding,
  refusal,
  type RefusalError,
  type Verdict,
} from "./evidence.ts";
import type { Lockfile } from "./lockfile.ts";
import type { TrustPolicy } from "./policy.ts";
import { comparePaths, type OmsStatement, unsafePathReason } from "./_oms.ts";
import { hashModelFolder } from "./_oms_fs.ts";
import { modelRelative } from "./sign_model.ts";
import { labelsFor, StreamMeasure } from "./_oms_digest.ts";
import { createSha256, toHex } from "../hash/_digest.ts";
import { MAX_EVIDENCE_BYTES } from "./_json.ts";
import { readEvidenceFile } from "./_read_fs.ts";
import { omsFinding, onnxFinding, pinFinding, safetensorsFinding } from "./_findings.ts";
import type { SignedTextVerifier } from "./_signed_text.ts";
import { hashAlgorithmOf, METADATA_KEYS } from "./_statement.ts";
import type { VerifiedSigner } from "./types.ts";

export interface CheckModelOptions {
  policy: TrustPolicy;
  verify: SignedTextVerifier;
  /** The model asked for (compared with what the evidence names). */
  name?: string | undefined;
  /** The version asked for (compared with embedded claims; the lockfile key). */
  version?: string | undefined;
  /** An explicit detached signature instead of `<dir>/model.sig` or `<file>.sig`. */
  signature?: string | undefined;
  /** Model-relative paths left out (with the statement's own). */
  ignorePaths?: string[] | undefined;
  /** Only these model-relative files. */
  files?: string[] | undefined;
  lockfile?: Lockfile | undefined;
  frozen?: boolean | undefined;
  onProgress?: ((bytes: number) => void) | undefined;
  /** Accept files that are symlinks (`model_signing --allow_symlinks`). */
  allowSymlinks?: boolean | undefined;
  /** Leave out `.git`, `.gitattributes`, `.github`, `.gitignore` (default true). */
  ignoreGitPaths?: boolean | undefined;
  /** Check only the files the signature lists; others are not refused. */
  ignoreUnsigned?: boolean | undefined;
}

export interface FileCheck {
  /** Model-relative path (a single-file model: its base name). */
  file: string;
  /** `sha256:<hex>`, or `""` for a signed file that is missing. */
  digest: string;
  verdict: Verdict;
}

export interface ModelCheck {
  root: string;
  isDir: boolean;
  /** Where the detached signature was looked for. */
  signature: string;
  oms: OmsFinding;
  statement: OmsStatement | undefined;
  /** The name and version the lockfile knows the model by. */
  lockName: string;
  lockVersion: string | undefined;
  pins: PinFinding | undefined;
  files: FileCheck[];
  /** The failures, most telling first (content changes, missing files, the rest). */
  failures: RefusalError[];
  /** The signer, when every file was vouched for by one signer. */
  signer: VerifiedSigner | undefined;
}

function normalizeRelative(path: string): string {
  let p = path.replaceAll("\\", "/");
  while (p.startsWith("./")) p = p.slice(2);
  return p.replace(/\/+$/, "");
}

/** Checks every file of a model (or `files`) against its evidence. */
export async function checkModel(path: string, options: CheckModelOptions): Promise<ModelCheck> {
  const { stat } = await import("node:fs/promises");
  const { basename, join } = await import("node:path");
  const root = path.replace(/[\\/]+$/, "") || path;
  const isDir = (await stat(root)).isDirectory();
  const single = isDir ? undefined : basename(root);
  const signature = options.signature ?? (isDir ? join(root, "model.sig") : `${root}.sig`);
  const text = await readEvidenceFile(signature, "the signature", MAX_EVIDENCE_BYTES);
  const { finding: oms, statement } = await omsFinding(
    text,
    options.policy,
    options.verify,
    signature,
    single,
  );

  // The files: those asked for, else the folder as model_signing walks it.
  // Ignore paths as model_signing takes them: model-relative, relative to
  // the working directory (`m/x` for model `m`) or absolute.
  const ignorePaths = [
    ...new Set([
      ...(isDir ? await modelRelative(root, options.ignorePaths ?? []) : options.ignorePaths ?? []),
      ...(statement?.ignorePaths ?? []),
    ]),
  ];
  const wanted = options.files?.map((f) => {
    const name = normalizeRelative(f);
    const reason = unsafePathReason(name);
    if (reason !== undefined) {
      throw new TypeError(`Cannot check file ${JSON.stringify(f)}: ${reason}`);
    }
    return name;
  });
  // Links to files are followed here and refused by the decision unless the
  // signer followed them too (links to folders are refused while walking).
  const links = new Set<string>();
  const hashed = await hashModelFolder(root, {
    ...(isDir ? { ignorePaths, signatureFile: signatureInside(root, signature) } : {}),
    ignoreGitPaths: options.ignoreGitPaths ?? true,
    ...(wanted && isDir ? { files: wanted } : {}),
    allowSymlinks: true,
    links,
    ...(options.onProgress ? { onProgress: options.onProgress } : {}),
  });
  const unsigned = (file: string) =>
    options.ignoreUnsigned === true && oms.$case === "verified" && isDir &&
    !oms.resources.has(file);
  const present = hashed.map((r) => ({
    file: r.name === "." ? single! : r.name,
    digest: `${r.algorithm}:${r.digest}`,
    linked: links.has(r.name) && options.allowSymlinks !== true,
  })).filter((p) => !unsigned(p.file));

  // Embedded signatures are evidence only where there is no model.sig.
  const embedded = new Map<string, EmbeddedFinding>();
  if (oms.$case === "absent") {
    for (const { file } of present) {
      const at = isDir ? join(root, file) : root;
      if (file.endsWith(".onnx")) {
        const source = await openSource(at);
        try {
          embedded.set(file, await onnxFinding(source, options.policy, options.verify, at));
        } finally {
          await source.close();
        }
      } else if (file.endsWith(".safetensors")) {
        let meta: Record<string, string>;
        try {
          meta = await extractMetadata(at);
        } catch (error) {
          embedded.set(file, refusal(error, at));
          continue;
        }
        embedded.set(
          file,
          await safetensorsFinding(
            meta,
            METADATA_KEYS,
            (claimed) => safeHash(at, { algorithm: hashAlgorithmOf(claimed) }),
            options.policy,
            options.verify,
            at,
          ),
        );
      }
    }
  }

  // The name and version the model goes by in the lockfile.
  const claim = single !== undefined ? embedded.get(single) : undefined;
  const claimed = claim?.$case === "verified" ? claim.claim : undefined;
  const lockName = options.name ??
    (oms.$case === "verified" ? oms.modelName : undefined) ?? claimed?.name ??
    basename(root);
  const lockVersion = options.version ?? claimed?.version;
  const pins = pinFinding(options.lockfile, lockName, lockVersion, options.frozen ?? false);

  const where = (file: string) => (isDir ? join(root, file) : root);
  // A model.sig made with another hash or with shards: measure each file so,
  // in one pass that also gives the SHA-256 reported (and pinned by lock), so
  // both describe the same bytes even if the file changes meanwhile.
  const measured = new Map<string, Record<string, string>>();
  if (oms.$case === "verified") {
    for (const entry of present) {
      const labels = labelsFor(oms, entry.file);
      if (labels.length === 0) continue;
      const source = await openSource(where(entry.file));
      try {
        const expected = oms.resources.get(entry.file);
        const digests: Record<string, string> = {};
        // A shard list that cannot fit the file keeps no shard (StreamMeasure).
        const streams: [string, StreamMeasure][] = [];
        for (const label of labels) {
          streams.push([label, await StreamMeasure.create(label, expected)]);
        }
        const sha = await createSha256();
        for await (const chunk of rangeChunks(source, 0, source.size)) {
          sha.update(chunk);
          for (const [, m] of streams) await m.update(chunk);
          recycle(chunk);
        }
        for (const [label, m] of streams) digests[label] = await m.digest();
        entry.digest = `sha256:${toHex(sha.digest())}`;
        measured.set(entry.file, digests);
      } finally {
        await source.close();
      }
    }
  }
  const files: FileCheck[] = present.map(({ file, digest, linked }) => ({
    file,
    digest,
    verdict: decideFile({
      model: { name: options.name, version: options.version },
      file,
      linked,
      digest,
      digests: measured.get(file),
      oms,
      embedded: embedded.get(file),
      pins,
      policy: options.policy,
      shown: where(file),
    }),
  }));

  // A signed file that is gone (when the whole model was checked, or asked for).
  const missing: FileCheck[] = [];
  if (oms.$case === "verified") {
    const seen = new Set(present.map((p) => p.file));
    // Every signed file, ignored or not: a signed file an ignore path covers
    // is not checked, so it counts as missing (as model_signing counts it).
    const expected = wanted ?? [...oms.resources.keys()];
    for (const file of expected) {
      if (seen.has(file)) continue;
      const signed = oms.resources.get(file);
      const error = signed === undefined
        ? new SignatureMissing(
          `Cannot accept ${file}: it is not in the signed manifest of ${oms.where} (and not there either)`,
          { file: where(file), code: "not-in-manifest" },
        )
        : new HashMismatch(signed, "(missing)", { file: where(file), code: "file-missing" });
      missing.push({ file, digest: "", verdict: { $case: "refused", evidence: "oms", error } });
    }
  } else if (wanted) {
    const seen = new Set(present.map((p) => p.file));
    for (const file of wanted) {
      if (!seen.has(file)) {
        throw Object.assign(new Error(`Cannot check ${where(file)}: no such file`), {
          code: "ENOENT",
        });
      }
    }
  }
  const all = [...files, ...missing].sort((a, b) => comparePaths(a.file, b.file));
  const refused = (c: FileCheck) => c.verdict.$case === "refused" ? [c.verdict.error] : [];
  const failures = [
    ...files.filter((c) => c.verdict.$case === "refused" && c.verdict.error instanceof HashMismatch)
      .flatMap(refused),
    ...missing.flatMap(refused),
    ...files.filter((c) =>
      c.verdict.$case === "refused" && !(c.verdict.error instanceof HashMismatch)
    ).flatMap(refused),
  ];
  if (oms.$case === "refused") failures.unshift(oms.error);
  const signers = new Set(
    all.flatMap((c) =>
      c.verdict.$case === "verified" && c.verdict.signer ? [c.verdict.signer] : []
    ),
  );
  return {
    root,
    isDir,
    signature,
    oms,
    statement,
    lockName,
    lockVersion,
    pins,
    files: all,
    failures: [...new Set(failures)],
    signer: signers.size === 1 ? [...signers][0] : undefined,
  };
}

/** The signature's model-relative name when it lies inside the model folder. */
export function signatureInside(root: string, signature: string): string {
  const norm = (p: string) => p.replaceAll("\\", "/").replace(/^\.\//, "");
  const r = norm(root).replace(/\/+$/, "");
  const s = norm(signature);
  return s.startsWith(`${r}/`) ? s.slice(r.length + 1) : "model.sig";
}
