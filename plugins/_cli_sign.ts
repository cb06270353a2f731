// `sign`, `verify` and `lock`: the signing half of the CLI, loaded on demand.
import type { CliIO } from "./cli.ts";
import { parse, UsageError } from "./_cli_args.ts";
import { certificateSigner } from "../sign/certificate_signer.ts";
import { keySigner } from "../sign/key_signer.ts";
import { sigstoreSigner } from "../sign/sigstore_signer.ts";
import { signModel } from "../sign/sign_model.ts";
import { verifyModel } from "../sign/verify_model.ts";
import { SafeModel } from "../sign/safe_model.ts";
import { Issuer, type TrustPolicy } from "../sign/policy.ts";
import { lockedSigner, Lockfile } from "../sign/lockfile.ts";
import type { Signer, VerifiedSigner } from "../sign/types.ts";
import { verifyOnnx } from "../sign/onnx_signature.ts";
import { signatureRequirement, toPolicy } from "../sign/policy.ts";
import { HashMismatch, InvalidSignature, SignatureMissing } from "../sign/errors.ts";
import { fileDigest } from "../hash/file_digest.ts";

const POLICY_OPTIONS = {
  identity: { type: "string", multiple: true },
  issuer: { type: "string", multiple: true },
  key: { type: "string", multiple: true },
  "cert-root": { type: "string", multiple: true },
  "trusted-root": { type: "string" },
  ignore: { type: "string", multiple: true },
  files: { type: "string", multiple: true },
  signature: { type: "string" },
  lock: { type: "string" },
  frozen: { type: "boolean" },
  "model-version": { type: "string" },
  name: { type: "string" },
  json: { type: "boolean" },
  "signatures-optional": { type: "boolean" },
} as const;

const read = (path: string) => Deno.readTextFile(path);

/** Runs `sign`, `verify`, `lock` or `check`. */
export async function signCommand(command: string, args: string[], io: CliIO): Promise<number> {
  if (command === "sign") return await sign(args, io);
  if (command === "check") return await check(args, io);
  const { values, positionals } = parse(args, POLICY_OPTIONS);
  if (positionals.length !== 1) throw new UsageError(`${command} needs exactly one file or folder`);
  const target = positionals[0]!;
  const policy = await policyFrom(values);
  const isSafetensors = (await Deno.stat(target)).isFile && target.endsWith(".safetensors") &&
    values.signature === undefined;
  let name: string;
  let version: string;
  let signer: VerifiedSigner | undefined;
  let digests: Record<string, string>;
  let checked: string[];
  if (isSafetensors) {
    const sm = await SafeModel.fromSafetensor(target, {
      policy,
      ...(values.name ? { name: values.name } : {}),
      ...(values["model-version"] ? { version: values["model-version"] } : {}),
    });
    ({ name, version, signer } = sm);
    digests = { tensors: sm.hash };
    checked = [target];
  } else {
    const v = await verifyModel(target, {
      policy,
      ...(values.signature ? { signature: values.signature } : {}),
      ...(values.ignore ? { ignorePaths: values.ignore } : {}),
      ...(values.files ? { files: values.files } : {}),
    });
    name = values.name ?? v.modelName;
    version = values["model-version"] ?? "unversioned";
    signer = v.signer;
    digests = Object.fromEntries(v.resources.map((r) => [r.name, `${r.algorithm}:${r.digest}`]));
    checked = v.checked;
  }
  let locked: string | undefined;
  if (command === "lock" || values.lock !== undefined || values.frozen) {
    const path = values.lock ?? "safemodels.lock";
    const lock = await Lockfile.load(path);
    locked = lock.check(name, version, {
      digests,
      ...(signer ? { signer: lockedSigner(signer) } : {}),
    }, { frozen: values.frozen ?? false });
    if (locked === "recorded") await lock.save(path);
  }
  const who = signer === undefined
    ? "unsigned (signatures optional)"
    : signer.identities.length > 0
    ? `${signer.identities.join(", ")}${signer.issuer ? ` (${signer.issuer})` : ""}`
    : `key ${signer.keyFingerprint.slice(0, 16)}…`;
  if (values.json) {
    io.out(
      JSON.stringify(
        { ok: true, target, name, version, signer, checked, lock: locked ?? null },
        null,
        2,
      ),
    );
  } else {
    io.out(
      `OK ${target}: ${name}@${version} signed by ${who}; ${checked.length} file(s) checked${
        locked ? `; lockfile ${locked}` : ""
      }`,
    );
  }
  return 0;
}

async function policyFrom(values: {
  identity?: string[];
  issuer?: string[];
  key?: string[];
  "cert-root"?: string[];
  "trusted-root"?: string;
  "signatures-optional"?: boolean;
}): Promise<TrustPolicy> {
  const ids = values.identity ?? [];
  const issuers = values.issuer ?? [];
  if (ids.length !== issuers.length) {
    throw new UsageError("give --identity and --issuer in pairs");
  }
  const policy: TrustPolicy = {
    signers: ids.map((identity, i) => Issuer({ identity, issuer: issuers[i]! })),
    publicKeys: await Promise.all((values.key ?? []).map(read)),
    certificateRoots: await Promise.all((values["cert-root"] ?? []).map(read)),
    signatures: values["signatures-optional"] ? "optional" : "required",
  };
  if (values["trusted-root"]) policy.trustedRoot = JSON.parse(await read(values["trusted-root"]));
  if (!policy.signers!.length && !policy.publicKeys!.length && !policy.certificateRoots!.length) {
    throw new UsageError(
      "verify needs a policy: --identity I --issuer U, --key PUB or --cert-root R",
    );
  }
  return policy;
}

async function sign(args: string[], io: CliIO): Promise<number> {
  const { values, positionals } = parse(args, {
    key: { type: "string" },
    cert: { type: "string" },
    chain: { type: "string", multiple: true },
    "identity-token": { type: "string" },
    "fulcio-url": { type: "string" },
    "rekor-url": { type: "string" },
    "tsa-url": { type: "string" },
    ignore: { type: "string", multiple: true },
    signature: { type: "string" },
    name: { type: "string" },
    "model-version": { type: "string" },
    detached: { type: "boolean" },
  });
  if (positionals.length !== 1) throw new UsageError("sign needs exactly one file or folder");
  const target = positionals[0]!;
  let signer: Signer;
  if (values.key && values.cert) throw new UsageError("give --key or --cert, not both");
  if (values.key) signer = keySigner(await read(values.key));
  else if (values.cert) {
    if (!values.chain?.length) {
      throw new UsageError("--cert needs --chain (the leaf certificate first)");
    }
    signer = certificateSigner(await read(values.cert), await Promise.all(values.chain.map(read)));
  } else {
    signer = sigstoreSigner({
      ...(values["identity-token"] ? { identityToken: values["identity-token"] } : {}),
      ...(values["fulcio-url"] ? { fulcioURL: values["fulcio-url"] } : {}),
      ...(values["rekor-url"] ? { rekorURL: values["rekor-url"] } : {}),
      ...(values["tsa-url"] ? { tsaURL: values["tsa-url"] } : {}),
    });
  }
  const isFile = (await Deno.stat(target)).isFile;
  if (isFile && target.endsWith(".safetensors") && !values.detached) {
    const version = values["model-version"];
    if (!version) {
      throw new UsageError("an embedded signature needs --model-version (or use --detached)");
    }
    const name = values.name ?? target.replace(/^.*[\\/]/, "").replace(/\.safetensors$/, "");
    const sm = await SafeModel.fromFile(name, version, target);
    await sm.signSafetensor(target, { signer });
    io.out(`Signed ${target} (${name}@${version}, embedded in __metadata__)`);
    return 0;
  }
  const signature = values.signature;
  await signModel(target, {
    signer,
    ...(values.ignore ? { ignorePaths: values.ignore } : {}),
    ...(signature ? { signature } : {}),
    ...(values.name ? { modelName: values.name } : {}),
  });
  io.out(`Signed ${target} (${signature ?? (isFile ? `${target}.sig` : `${target}/model.sig`)})`);
  return 0;
}

/**
 * Reads a policy file: JSON with `signers` ([{ identity, issuer }]),
 * `publicKeys` and `certificateRoots` (PEM text or paths relative to the
 * policy file), `trustedRoot` (a path), `signatures` and `models`.
 */
async function loadPolicyFile(path: string): Promise<TrustPolicy> {
  const { dirname, resolve } = await import("node:path");
  const base = dirname(path);
  let raw: Record<string, unknown>;
  try {
    raw = JSON.parse(await read(path));
  } catch (e) {
    throw new UsageError(`${path}: not a JSON policy (${(e as Error).message})`);
  }
  const pems = async (list: unknown, what: string): Promise<string[]> => {
    if (list === undefined) return [];
    if (!Array.isArray(list) || !list.every((x) => typeof x === "string")) {
      throw new UsageError(`${path}: ${what} must be a list of PEM texts or file paths`);
    }
    return await Promise.all(
      list.map((x: string) => x.includes("-----BEGIN") ? x : read(resolve(base, x))),
    );
  };
  const signers = raw.signers ?? [];
  if (!Array.isArray(signers)) throw new UsageError(`${path}: signers must be a list`);
  const policy: TrustPolicy = {
    signers: signers.map((s) => Issuer(s as { identity: string; issuer: string })),
    publicKeys: await pems(raw.publicKeys, "publicKeys"),
    certificateRoots: await pems(raw.certificateRoots, "certificateRoots"),
  };
  if (raw.signatures !== undefined) policy.signatures = raw.signatures as "required" | "optional";
  if (raw.models !== undefined) policy.models = raw.models as NonNullable<TrustPolicy["models"]>;
  if (typeof raw.trustedRoot === "string") {
    policy.trustedRoot = JSON.parse(await read(resolve(base, raw.trustedRoot)));
  }
  return toPolicy(policy);
}

/**
 * `check <model dir> --policy P`: the transformers.js guard's checks, without
 * loading the model. Evidence, in order: an OMS model.sig at the root (every
 * signed file, or --files); else each file's own evidence: an embedded
 * signature (.onnx, .safetensors) or a lockfile digest. A file with none fails
 * unless the policy makes signatures optional for the model.
 */
async function check(args: string[], io: CliIO): Promise<number> {
  const { values, positionals } = parse(args, {
    policy: { type: "string" },
    files: { type: "string", multiple: true },
    lock: { type: "string" },
    frozen: { type: "boolean" },
    name: { type: "string" },
    "model-version": { type: "string" },
    json: { type: "boolean" },
  });
  if (positionals.length !== 1) throw new UsageError("check needs exactly one model folder");
  if (!values.policy) throw new UsageError("check needs --policy FILE (JSON)");
  const dir = positionals[0]!.replace(/[\\/]+$/, "");
  const policy = await loadPolicyFile(values.policy);
  const { basename, join } = await import("node:path");
  const name = values.name ?? basename(dir);
  const version = values["model-version"] ?? "unversioned";
  const lock = values.lock ? await Lockfile.load(values.lock) : undefined;
  const results: { file: string; evidence: string; signer?: string }[] = [];
  const who = (s: VerifiedSigner) =>
    s.identities.join(", ") || `key ${s.keyFingerprint.slice(0, 16)}…`;
  let hasOms = true;
  try {
    await Deno.stat(join(dir, "model.sig"));
  } catch {
    hasOms = false;
  }
  if (hasOms) {
    const v = await verifyModel(dir, { policy, ...(values.files ? { files: values.files } : {}) });
    for (const f of v.checked) results.push({ file: f, evidence: "oms", signer: who(v.signer) });
  } else {
    const files = values.files ?? await listFiles(dir);
    const locked = lock?.get(name, version);
    if (!locked && values.frozen) {
      throw new InvalidSignature(
        "not-locked",
        `Cannot accept ${name}@${version}: the lockfile is frozen and has no entry for it`,
      );
    }
    for (const f of files) {
      const path = join(dir, f);
      if (f.endsWith(".onnx")) {
        try {
          const v = await verifyOnnx(path, { policy });
          results.push({ file: f, evidence: "onnx-embedded", signer: who(v.signer) });
          continue;
        } catch (e) {
          if (!(e instanceof SignatureMissing)) throw e;
        }
      } else if (f.endsWith(".safetensors")) {
        try {
          const sm = await SafeModel.fromSafetensor(path, { policy });
          if (sm.signer) {
            results.push({ file: f, evidence: "safetensors-embedded", signer: who(sm.signer) });
            continue;
          }
        } catch (e) {
          if (!(e instanceof SignatureMissing)) throw e;
        }
      }
      const pinned = locked?.digests[f];
      if (pinned !== undefined) {
        const now = `sha256:${await fileDigest(path)}`;
        if (now !== pinned) throw new HashMismatch(pinned, now, { file: path });
        results.push({ file: f, evidence: "lockfile" });
      } else if (signatureRequirement(policy, name) === "optional") {
        results.push({ file: f, evidence: "none" });
      } else {
        throw new SignatureMissing(
          `Cannot accept ${f}: no model.sig, no embedded signature and no lockfile digest vouch for it`,
          { file: path },
        );
      }
    }
  }
  if (values.json) io.out(JSON.stringify({ ok: true, model: dir, files: results }, null, 2));
  else {
    for (const r of results) {
      io.out(`OK ${r.file} (${r.evidence}${r.signer ? `, ${r.signer}` : ""})`);
    }
  }
  return 0;
}

async function listFiles(dir: string, prefix = ""): Promise<string[]> {
  const out: string[] = [];
  for await (const e of Deno.readDir(prefix ? `${dir}/${prefix}` : dir)) {
    const rel = prefix ? `${prefix}/${e.name}` : e.name;
    if (e.isDirectory) out.push(...await listFiles(dir, rel));
    else if (e.isFile && !e.name.startsWith(".")) out.push(rel);
  }
  return out.sort();
}
