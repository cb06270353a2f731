// `sign`, `verify` and `lock`: the signing half of the CLI, loaded on demand.
import type { CliIO } from "./cli.ts";
import { closest, parse, UsageError } from "./_cli_args.ts";
import { progressBar } from "./_cli_progress.ts";
import {
  envVar,
  isTerminal,
  pathInfo,
  PermissionNeeded,
  readHidden,
  readText,
} from "./_cli_runtime.ts";
import { givenPassword } from "./_cli_keygen.ts";
import { certificateSigner } from "../sign/certificate_signer.ts";
import { PolicyError } from "../sign/errors.ts";
import { keySigner } from "../sign/key_signer.ts";
import { sigstoreSigner } from "../sign/sigstore_signer.ts";
import { signModel } from "../sign/sign_model.ts";
import { SafeModel } from "../sign/safe_model.ts";
import { Issuer, toPolicy, type TrustPolicy } from "../sign/policy.ts";
import { lockedSigner, Lockfile } from "../sign/lockfile.ts";
import type { Signer, VerifiedSigner } from "../sign/types.ts";
import { checkModel, type FileCheck } from "../sign/_check_model.ts";
import { verifySignedText } from "../sign/_verify_signed.ts";
import { parseCertificate } from "../sign/_x509.ts";
import { pemBlocks } from "../sign/_spki.ts";
import {
  checkMode,
  cliIgnorePaths,
  dropModeWord,
  modelSigningArgs,
  trustChoice,
} from "./_cli_trust.ts";

const POLICY_OPTIONS = {
  identity: { type: "string", multiple: true },
  issuer: { type: "string", multiple: true },
  "identity-regexp": { type: "string", multiple: true },
  "issuer-regexp": { type: "string", multiple: true },
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
  policy: { type: "string" },
  "allow-symlinks": { type: "boolean" },
  "ignore-git-paths": { type: "boolean" },
  "no-ignore-git-paths": { type: "boolean" },
  "ignore-unsigned-files": { type: "boolean" },
  "use-staging": { type: "boolean" },
  "trust-config": { type: "string" },
  update: { type: "boolean" },
  "hub-url": { type: "string" },
} as const;

/** `model_signing verify`'s option names, as ours. */
const VERIFY_ALIASES: Record<string, string> = {
  "--ignore-paths": "--ignore",
  "--public-key": "--key",
  "--certificate-chain": "--cert-root",
  "--identity-provider": "--issuer",
};

/** `model_signing sign`'s option names, as ours. */
const SIGN_ALIASES: Record<string, string> = {
  "--ignore-paths": "--ignore",
  "--private-key": "--key",
  "--certificate-chain": "--chain",
  "--client-id": "--oidc-client-id",
  "--client-secret": "--oidc-client-secret",
  "--oauth-force-oob": "--no-browser",
};

/** `--ignore-git-paths` (the default) or `--no-ignore-git-paths`. */
function gitPaths(
  values: { "ignore-git-paths"?: boolean; "no-ignore-git-paths"?: boolean },
): boolean {
  if (values["ignore-git-paths"] && values["no-ignore-git-paths"]) {
    throw new UsageError("give --ignore-git-paths or --no-ignore-git-paths, not both");
  }
  return !values["no-ignore-git-paths"];
}

const read = readText;

/** Runs `sign`, `verify`, `lock` or `check`. */
export async function signCommand(command: string, args: string[], io: CliIO): Promise<number> {
  if (command === "sign") return await sign(args, io);
  const parsed = parse(modelSigningArgs(args, VERIFY_ALIASES), POLICY_OPTIONS);
  const values = parsed.values;
  const { positionals, mode } = dropModeWord(parsed.positionals);
  if (positionals.length !== 1) throw new UsageError(`${command} needs exactly one file or folder`);
  checkMode(mode, {
    key: (values.key?.length ?? 0) > 0,
    certificate: (values["cert-root"]?.length ?? 0) > 0,
    sigstore: (values.identity?.length ?? 0) + (values["identity-regexp"]?.length ?? 0) > 0,
  });
  const target = positionals[0]!;
  if (target.startsWith("hf://")) {
    if (command !== "lock") {
      throw new UsageError(
        `${command} reads a local model; pin a hub model with lock ${target}, then load it with the lockfile`,
      );
    }
    return await lockHub(target, values, io);
  }
  if (values["hub-url"] !== undefined) throw new UsageError("--hub-url goes with lock hf://…");
  const policy = await policyFrom(values, command);
  const lockPath = values.lock ??
    (command === "lock" || values.frozen ? "safemodels.lock" : undefined);
  // The lockfile inside the model folder: never one of the model's files,
  // and `lock` puts it there only when told to (--lock).
  const { isAbsolute, relative, resolve, sep } = await import("node:path");
  const lockRel = lockPath === undefined ? undefined : relative(resolve(target), resolve(lockPath));
  const lockInside = lockRel !== undefined && lockRel !== "" && !lockRel.startsWith("..") &&
      !isAbsolute(lockRel)
    ? lockRel.split(sep).join("/")
    : undefined;
  if (command === "lock" && values.lock === undefined && lockInside !== undefined) {
    throw new UsageError(
      `lock would write safemodels.lock into the model folder ${target}; give --lock PATH (inside the folder too, if you mean it)`,
    );
  }
  const lockfile = lockPath === undefined ? undefined : await Lockfile.load(lockPath);
  if (values.update && command !== "lock") throw new UsageError("--update is for lock");
  const updating = command === "lock" && values.update === true;
  const bar = progressBar(io, target);
  const check = await checkModel(target, {
    onProgress: (bytes) => bar(bytes, undefined),
    policy,
    verify: verifySignedText,
    name: values.name,
    // The version asked for: the flag, else the policy's for the model (as the guard reads it).
    version: values["model-version"] ??
      (values.name === undefined ? undefined : policy.models?.[values.name]?.version),
    signature: values.signature,
    ignorePaths: [
      ...(values.ignore && (await pathInfo(target)).isDirectory
        ? await cliIgnorePaths(target, values.ignore)
        : values.ignore ?? []),
      ...(lockInside !== undefined ? [lockInside] : []),
    ],
    files: values.files,
    // lock --update: the model is checked against its evidence alone, then
    // its entry replaced.
    lockfile: updating ? undefined : lockfile,
    frozen: values.frozen ?? false,
    allowSymlinks: values["allow-symlinks"] ?? false,
    ignoreGitPaths: gitPaths(values),
    ignoreUnsigned: values["ignore-unsigned-files"] ?? false,
  });
  bar.done();
  let locked: "recorded" | "matched" | "updated" | undefined;
  if (check.failures.length === 0 && lockfile !== undefined && lockPath !== undefined) {
    if (updating) {
      const had = lockfile.get(check.lockName, check.lockVersion ?? "unversioned") !== undefined;
      lockfile.record(check.lockName, check.lockVersion ?? "unversioned", {
        digests: Object.fromEntries(check.files.map((f) => [f.file, f.digest])),
        ...(check.signer ? { signer: lockedSigner(check.signer) } : {}),
      });
      await lockfile.save(lockPath);
      locked = had ? "updated" : "recorded";
    } else if (check.pins?.entry === undefined) {
      lockfile.record(check.lockName, check.lockVersion ?? "unversioned", {
        digests: Object.fromEntries(check.files.map((f) => [f.file, f.digest])),
        ...(check.signer ? { signer: lockedSigner(check.signer) } : {}),
      });
      await lockfile.save(lockPath);
      locked = "recorded";
    } else locked = "matched";
  }
  const version = check.lockVersion ?? "unversioned";
  if (values.json) {
    io.out(JSON.stringify(
      {
        ok: check.failures.length === 0,
        target,
        name: check.lockName,
        version,
        signer: check.signer ?? null,
        checked: check.files.map((f) => f.file),
        lock: locked ?? null,
        files: check.files.map(fileJson),
        errors: check.failures.map(errorJson),
      },
      null,
      2,
    ));
    return check.failures.length === 0 ? 0 : 1;
  }
  if (check.failures.length > 0) {
    // One line per distinct failure, in order; main prints the last one.
    for (const e of check.failures.slice(0, -1)) io.err(`safemodels: ${oneLine(e.message)}`);
    throw check.failures.at(-1);
  }
  if (command === "check") {
    for (const f of check.files) {
      const v = f.verdict;
      io.out(
        v.$case === "verified"
          ? `OK ${f.file} (${v.evidence}${v.signer ? `, ${describeSigner(v.signer)}` : ""})`
          : `OK ${f.file} (none: signatures optional)`,
      );
    }
    if (locked) io.out(`lockfile ${locked}`);
    return 0;
  }
  const who = check.signer === undefined
    ? check.files.every((f) => f.verdict.$case === "unsigned")
      ? "unsigned (signatures optional)"
      : "lockfile pins"
    : describeSigner(check.signer);
  io.out(
    `OK ${target}: ${check.lockName}@${version} signed by ${who}; ${check.files.length} file(s) checked${
      locked ? `; lockfile ${locked}` : ""
    }`,
  );
  return 0;
}

const oneLine = (s: string) => s.replace(/[\r\n]+/g, " ");

/**
 * `lock hf://ORG/NAME[@REVISION]`: pins a hub model without downloading its
 * weights (the hub's published LFS SHA-256s; small files hashed here) and
 * records the commit with the digests, under the name and the revision.
 */
async function lockHub(
  target: string,
  values: {
    files?: string[];
    lock?: string;
    update?: boolean;
    json?: boolean;
    "hub-url"?: string;
    [option: string]: unknown;
  },
  io: CliIO,
): Promise<number> {
  const { parseHubSpec, pinHubModel } = await import("../sign/hub_pin.ts");
  const allowed = new Set(["files", "lock", "update", "json", "hub-url"]);
  for (const [option, value] of Object.entries(values)) {
    if (value !== undefined && !allowed.has(option)) {
      throw new UsageError(
        `lock ${target} pins the hub's digests and verifies no signature here: --${option} does not apply`,
      );
    }
  }
  let repo: string, revision: string;
  try {
    ({ repo, revision } = parseHubSpec(target));
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
  // Not silently skipped: without them a mirror or a private model would be
  // looked up on the public hub instead.
  const env = (name: string) => {
    try {
      return envVar(name);
    } catch (e) {
      if (!(e instanceof PermissionNeeded)) throw e;
      throw new UsageError(
        `lock ${target} reads HF_ENDPOINT and HF_TOKEN: run with --allow-env=HF_ENDPOINT,HF_TOKEN (and --allow-net for the hub)`,
      );
    }
  };
  const endpoint = values["hub-url"] ?? env("HF_ENDPOINT");
  const token = env("HF_TOKEN");
  const lockPath = values.lock ?? "safemodels.lock";
  const lockfile = await Lockfile.load(lockPath);
  const pin = await pinHubModel(repo, {
    revision,
    ...(endpoint ? { endpoint } : {}),
    ...(token ? { token } : {}),
    ...(values.files ? { files: values.files } : {}),
  });
  const entry = { digests: pin.digests, commit: pin.commit };
  const had = lockfile.get(repo, revision);
  let locked: "recorded" | "matched" | "updated";
  if (had === undefined || values.update) {
    lockfile.record(repo, revision, entry);
    await lockfile.save(lockPath);
    locked = had === undefined ? "recorded" : "updated";
  } else {
    // The same check as for a local model: a changed pin is refused unless --update.
    lockfile.check(repo, revision, entry);
    if (had.commit !== undefined && had.commit !== pin.commit) {
      throw new PolicyError(
        "lock-mismatch",
        `Cannot accept ${repo}@${revision}: it is now commit ${pin.commit}, the lockfile records ${had.commit} (lock --update to move the pin)`,
      );
    }
    locked = "matched";
  }
  const published = new Set(pin.published);
  if (values.json) {
    io.out(JSON.stringify(
      {
        ok: true,
        target,
        name: repo,
        version: revision,
        commit: pin.commit,
        lock: locked,
        files: Object.entries(pin.digests).map(([file, digest]) => ({
          file,
          digest,
          verdict: "pinned",
          evidence: published.has(file) ? "hub-lfs" : "downloaded",
        })),
        errors: [],
      },
      null,
      2,
    ));
    return 0;
  }
  io.out(
    `OK ${target}: ${repo}@${revision} is commit ${pin.commit}; ${
      Object.keys(pin.digests).length
    } file(s) pinned (${pin.published.length} by the hub's LFS digests, ${pin.downloaded.length} downloaded and hashed); lockfile ${locked}`,
  );
  return 0;
}

function fileJson(f: FileCheck): Record<string, unknown> {
  const v = f.verdict;
  return {
    file: f.file,
    digest: f.digest,
    verdict: v.$case,
    evidence: v.$case === "unsigned" ? "none" : v.evidence,
    ...(v.$case === "verified" && v.signer ? { signer: describeSigner(v.signer) } : {}),
    ...(v.$case === "refused" ? { error: errorJson(v.error) } : {}),
  };
}

function errorJson(e: Error): Record<string, unknown> {
  return {
    name: e.name,
    code: (e as { code?: string }).code ?? null,
    file: (e as { file?: string }).file ?? null,
    message: e.message,
  };
}

/** A verified signer in words: identities (and issuer), or the key. */
function describeSigner(s: VerifiedSigner): string {
  if (s.kind === "keyless") {
    return `${s.identities.join(", ")}${s.issuer ? ` (${s.issuer})` : ""}`;
  }
  if (s.kind === "certificate") {
    // The certificate's subject (and its names), as the chain checks name it.
    try {
      const cert = parseCertificate(pemBlocks(s.pem, "CERTIFICATE")[0]!);
      const names = s.identities.length ? ` [${s.identities.join(", ")}]` : "";
      return `certificate ${cert.subjectName}${names}`;
    } catch {
      return `certificate for key ${s.keyFingerprint.slice(0, 16)}…`;
    }
  }
  return `key ${s.keyFingerprint.slice(0, 16)}…`;
}

async function policyFrom(values: {
  policy?: string;
  identity?: string[];
  issuer?: string[];
  "identity-regexp"?: string[];
  "issuer-regexp"?: string[];
  key?: string[];
  "cert-root"?: string[];
  "trusted-root"?: string;
  "signatures-optional"?: boolean;
  "use-staging"?: boolean;
  "trust-config"?: string;
}, command: string): Promise<TrustPolicy> {
  const chosen = await trustChoice(values, read);
  // Exact values and anchored regular expressions (the whole value must match).
  const regexp = (v: string, what: string) => {
    try {
      return new RegExp(v);
    } catch (e) {
      throw new UsageError(
        `${what} ${JSON.stringify(v)} is not a regular expression (${(e as Error).message})`,
      );
    }
  };
  const ids: (string | RegExp)[] = [
    ...(values.identity ?? []),
    ...(values["identity-regexp"] ?? []).map((v) => regexp(v, "--identity-regexp")),
  ];
  const issuers: (string | RegExp)[] = [
    ...(values.issuer ?? []),
    ...(values["issuer-regexp"] ?? []).map((v) => regexp(v, "--issuer-regexp")),
  ];
  const flags = ids.length + issuers.length + (values.key?.length ?? 0) +
    (values["cert-root"]?.length ?? 0);
  if (values.policy !== undefined) {
    if (
      flags > 0 || values["trusted-root"] !== undefined || values["use-staging"] ||
      values["trust-config"] !== undefined
    ) {
      throw new UsageError(
        "give --policy or trust options (--identity, --key, --trusted-root, --use-staging, --trust-config, …), not both",
      );
    }
    const policy = await loadPolicyFile(values.policy);
    return values["signatures-optional"] ? { ...policy, signatures: "optional" } : policy;
  }
  // One issuer for every identity, or one each, in order.
  if (ids.length !== issuers.length && !(issuers.length === 1 && ids.length > 1)) {
    throw new UsageError(
      "give one --issuer for all identities, or --identity and --issuer in pairs (and their -regexp forms)",
    );
  }
  const policy: TrustPolicy = {
    signers: ids.map((identity, i) =>
      Issuer({ identity, issuer: issuers[issuers.length === 1 ? 0 : i]! })
    ),
    publicKeys: await Promise.all((values.key ?? []).map(async (path) => {
      const text = await read(path);
      if (/-----BEGIN (?:[A-Z]+ )?PRIVATE KEY-----/.test(text)) {
        throw new UsageError(
          `${path} is a private key; verify takes the public key (${command} --key PUBLIC.pem; safemodels keygen writes both)`,
        );
      }
      return text;
    })),
    certificateRoots: await Promise.all((values["cert-root"] ?? []).map(read)),
    signatures: values["signatures-optional"] ? "optional" : "required",
  };
  if (values["trusted-root"]) policy.trustedRoot = JSON.parse(await read(values["trusted-root"]));
  if (chosen.trustedRoot !== undefined) policy.trustedRoot = chosen.trustedRoot;
  if (!policy.signers!.length && !policy.publicKeys!.length && !policy.certificateRoots!.length) {
    throw new UsageError(
      `${command} needs a policy: --identity I --issuer U, --key PUB, --cert-root R or --policy FILE`,
    );
  }
  return policy;
}

async function sign(args: string[], io: CliIO): Promise<number> {
  const parsed = parse(shardsValue(modelSigningArgs(args, SIGN_ALIASES)), {
    key: { type: "string" },
    "key-password-file": { type: "string" },
    cert: { type: "string" },
    "signing-certificate": { type: "string" },
    chain: { type: "string", multiple: true },
    "identity-token": { type: "string" },
    "oidc-issuer": { type: "string" },
    "oidc-client-id": { type: "string" },
    "oidc-client-secret": { type: "string" },
    "no-browser": { type: "boolean" },
    "fulcio-url": { type: "string" },
    "rekor-url": { type: "string" },
    "tsa-url": { type: "string" },
    "use-staging": { type: "boolean" },
    "trust-config": { type: "string" },
    ignore: { type: "string", multiple: true },
    signature: { type: "string" },
    name: { type: "string" },
    "model-version": { type: "string" },
    detached: { type: "boolean" },
    shards: { type: "string" },
    hash: { type: "string" },
    "allow-symlinks": { type: "boolean" },
    "ignore-git-paths": { type: "boolean" },
    "no-ignore-git-paths": { type: "boolean" },
    json: { type: "boolean" },
  });
  const values = parsed.values;
  const { positionals, mode } = dropModeWord(parsed.positionals);
  if (positionals.length !== 1) throw new UsageError("sign needs exactly one file or folder");
  const certMode = values.cert !== undefined || values["signing-certificate"] !== undefined;
  checkMode(mode, {
    key: values.key !== undefined && !certMode,
    certificate: certMode,
    sigstore: values.key === undefined && !certMode,
  });
  if ((values.key !== undefined || certMode) && (values["use-staging"] || values["trust-config"])) {
    throw new UsageError(
      "--use-staging and --trust-config choose Sigstore services: only for keyless signing",
    );
  }
  if (values.chain?.length && !certMode) {
    throw new UsageError(
      "--chain / --certificate_chain is for certificate signing (--cert or --signing_certificate)",
    );
  }
  const target = positionals[0]!;
  let signer: Signer;
  if (values.key && values.cert) throw new UsageError("give --key or --cert, not both");
  // model_signing's certificate mode: --private_key K --signing_certificate C
  // --certificate_chain CH…, which is ours with the leaf first in the chain.
  const certKey = values.cert ?? (values["signing-certificate"] ? values.key : undefined);
  if (certKey !== undefined) {
    const chain = [
      ...(values["signing-certificate"] ? [values["signing-certificate"]] : []),
      ...(values.chain ?? []),
    ];
    if (!chain.length) {
      throw new UsageError("--cert needs --chain (the leaf certificate first)");
    }
    const pem = await read(certKey);
    signer = certificateSigner(
      pem,
      await Promise.all(chain.map(read)),
      await keyPassword(pem, values["key-password-file"], io),
    );
  } else if (values.key) {
    const pem = await read(values.key);
    signer = keySigner(pem, await keyPassword(pem, values["key-password-file"], io));
  } else {
    const { urls } = await trustChoice(values, read);
    // No token given: the browser sign-in, on a terminal or when an issuer is named.
    const interactive = values["identity-token"] === undefined &&
      ((isTerminal("stdin") && isTerminal("stderr")) || values["oidc-issuer"] !== undefined);
    signer = sigstoreSigner({
      ...urls,
      ...(values["identity-token"] ? { identityToken: values["identity-token"] } : {}),
      ...(interactive
        ? {
          interactive: {
            ...(values["oidc-issuer"] ? { issuer: values["oidc-issuer"] } : {}),
            ...(values["oidc-client-id"] ? { clientId: values["oidc-client-id"] } : {}),
            ...(values["oidc-client-secret"] ? { clientSecret: values["oidc-client-secret"] } : {}),
            // --no-browser: only print the URL (a remote shell, a headless machine).
            ...(values["no-browser"] ? { openBrowser: false as const } : {}),
            print: (line: string) => io.err(line),
          },
        }
        : {}),
      ...(values["fulcio-url"] ? { fulcioURL: values["fulcio-url"] } : {}),
      ...(values["rekor-url"] ? { rekorURL: values["rekor-url"] } : {}),
      ...(values["tsa-url"] ? { tsaURL: values["tsa-url"] } : {}),
    });
  }
  const hashType = values.hash ?? "sha256";
  if (!["sha256", "blake2b", "blake3"].includes(hashType)) {
    throw new UsageError(`unknown --hash "${hashType}", expected sha256, blake2b or blake3`);
  }
  let shardSize: number | undefined;
  if (values.shards !== undefined) {
    shardSize = Number(values.shards);
    if (!/^[1-9]\d*$/.test(values.shards) || !Number.isSafeInteger(shardSize)) {
      throw new UsageError(
        `--shards takes a positive whole number of bytes, got "${values.shards}"`,
      );
    }
  }
  const isFile = (await pathInfo(target)).isFile;
  const omsOnly = values.shards !== undefined || values.hash !== undefined;
  if (isFile && target.endsWith(".safetensors") && !values.detached && !omsOnly) {
    const version = values["model-version"];
    if (!version) {
      throw new UsageError("an embedded signature needs --model-version (or use --detached)");
    }
    const name = values.name ?? target.replace(/^.*[\\/]/, "").replace(/\.safetensors$/, "");
    const sm = await SafeModel.fromFile(name, version, target);
    await sm.signSafetensor(target, { signer });
    io.out(
      values.json
        ? JSON.stringify({ ok: true, target, embedded: true, name, version }, null, 2)
        : `Signed ${target} (${name}@${version}, embedded in __metadata__)`,
    );
    return 0;
  }
  const signature = values.signature;
  const bar = progressBar(io, target);
  await signModel(target, {
    onProgress: (bytes) => bar(bytes, undefined),
    signer,
    ...(values.ignore && !isFile
      ? { ignorePaths: await cliIgnorePaths(target, values.ignore) }
      : {}),
    ...(signature ? { signature } : {}),
    ...(values.name ? { modelName: values.name } : {}),
    hashType: hashType as "sha256" | "blake2b" | "blake3",
    ...(shardSize !== undefined ? { shardSize } : {}),
    allowSymlinks: values["allow-symlinks"] ?? false,
    ignoreGitPaths: gitPaths(values),
  });
  bar.done();
  const written = signature ?? (isFile ? `${target}.sig` : `${target}/model.sig`);
  io.out(
    values.json
      ? JSON.stringify({ ok: true, target, embedded: false, signature: written }, null, 2)
      : `Signed ${target} (${written})`,
  );
  if (hashType !== "sha256" || shardSize !== undefined) {
    const how = hashType === "blake2b"
      ? 'not at all (it writes BLAKE2b as "blake2b" but reads only "blake2")'
      : hashType === "blake3" && shardSize !== undefined
      ? "not at all (it cannot shard with BLAKE3)"
      : "through its Python API only (its CLI checks files with SHA-256)";
    io.err(`note: model_signing 1.1 verifies this signature ${how}; safemodels verifies it`);
  }
  return 0;
}

/** `model_signing`'s shard size when `--shards` is given without one. */
export const DEFAULT_SHARD_SIZE = 1_000_000_000;

/** `--shards [SIZE]`: the size is optional, so give the option its value here. */
export function shardsValue(args: string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (a === "--") {
      out.push(...args.slice(i));
      break;
    }
    if (a !== "--shards") {
      out.push(a);
      continue;
    }
    const next = args[i + 1];
    if (next !== undefined && /^\d+$/.test(next)) {
      out.push(`--shards=${next}`);
      i++;
    } else out.push(`--shards=${DEFAULT_SHARD_SIZE}`);
  }
  return out;
}

/**
 * The password of an encrypted private key: from `--key-password-file`, else
 * `SAFEMODELS_KEY_PASSWORD`, else asked on the terminal (not echoed).
 */
async function keyPassword(
  pem: string,
  file: string | undefined,
  io: CliIO,
): Promise<{ password?: string }> {
  if (!pem.includes("ENCRYPTED PRIVATE KEY")) return {};
  const given = await givenPassword(
    file,
    "the private key is encrypted: give --key-password-file FILE or set SAFEMODELS_KEY_PASSWORD (no terminal to ask on)",
    "the private key is encrypted: reading SAFEMODELS_KEY_PASSWORD needs --allow-env=SAFEMODELS_KEY_PASSWORD (or give --key-password-file)",
  );
  if (given !== undefined) return { password: given };
  return {
    password: await readHidden(
      () => new UsageError("interrupted"),
      () => io.err("Password for the private key: "),
    ),
  };
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
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) {
    throw new UsageError(`${path}: a policy is a JSON object`);
  }
  const known = [
    "signers",
    "publicKeys",
    "certificateRoots",
    "trustedRoot",
    "signatures",
    "models",
  ];
  for (const field of Object.keys(raw)) {
    if (!known.includes(field)) {
      const guess = closest(field, known);
      throw new UsageError(
        `${path}: unknown policy field "${field}"${
          guess ? ` (did you mean "${guess}"?)` : ""
        }; known: ${known.join(", ")}`,
      );
    }
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
  for (const [i, signer] of signers.entries()) {
    for (const field of Object.keys(signer ?? {})) {
      if (!["identity", "issuer", "extensions"].includes(field)) {
        throw new UsageError(
          `${path}: unknown field "${field}" in signers[${i}] (known: identity, issuer, extensions)`,
        );
      }
    }
  }
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
