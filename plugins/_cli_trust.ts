// Trust and argument conveniences the CLI shares with `model_signing`: its
// option spellings, `--use-staging` and `--trust-config` (a Sigstore client
// trust configuration: a trusted root and, for signing, the service URLs).
import { UsageError } from "./_cli_args.ts";
import { STAGING_URLS, stagingTrustedRoot } from "../sign/_staging_root.ts";

/** Keyless service URLs for signing. */
export interface ServiceUrls {
  fulcioURL?: string;
  rekorURL?: string;
  tsaURL?: string;
}

/** What `--use-staging` or `--trust-config` selects. */
export interface TrustChoice {
  trustedRoot?: unknown;
  urls: ServiceUrls;
}

/**
 * Rewrites `model_signing`'s spellings into ours: `--x_y` is `--x-y` (as its
 * CLI maps `_` to `-`), and `aliases` maps its option names to ours (say
 * `--public-key` to `--key`). A leading mode word (`key`, `certificate`,
 * `sigstore`) before the model is dropped when two positionals would remain.
 */
export function modelSigningArgs(args: string[], aliases: Record<string, string>): string[] {
  const out: string[] = [];
  let rest = false;
  for (const a of args) {
    if (rest || !a.startsWith("--")) {
      out.push(a);
      if (a === "--") rest = true;
      continue;
    }
    const eq = a.indexOf("=");
    let name = (eq < 0 ? a : a.slice(0, eq)).replaceAll("_", "-");
    name = aliases[name] ?? name;
    out.push(eq < 0 ? name : `${name}${a.slice(eq)}`);
  }
  return out;
}

/** `model_signing`'s mode word (`verify key …`), when it precedes the model. */
export type ModeWord = "key" | "certificate" | "sigstore";

/** Splits off `model_signing`'s mode word (`verify key …`) when it precedes the model. */
export function dropModeWord(positionals: string[]): { positionals: string[]; mode?: ModeWord } {
  return positionals.length === 2 && ["key", "certificate", "sigstore"].includes(positionals[0]!)
    ? { positionals: positionals.slice(1), mode: positionals[0] as ModeWord }
    : { positionals };
}

/**
 * The options a mode word asks for must be the ones given: `key` takes a
 * public or private key, `certificate` a chain, `sigstore` neither.
 */
export function checkMode(mode: ModeWord | undefined, given: Record<string, boolean>): void {
  if (mode === undefined) return;
  const wanted: Record<ModeWord, string[]> = {
    key: ["key"],
    certificate: ["certificate"],
    sigstore: ["sigstore"],
  };
  const kinds = Object.entries(given).filter(([, v]) => v).map(([k]) => k);
  if (kinds.some((k) => !wanted[mode].includes(k)) || !kinds.includes(mode)) {
    throw new UsageError(
      `"${mode}" mode takes ${
        mode === "key"
          ? "--key / --public_key / --private_key"
          : mode === "certificate"
          ? "--certificate_chain (and, to sign, --signing_certificate)"
          : "--identity and --identity_provider (to verify) or an identity token (to sign)"
      } only; found ${kinds.length ? kinds.join(" and ") + " options" : "none"}`,
    );
  }
}

/** Reads `--use-staging` / `--trust-config FILE` (at most one of them). */
export async function trustChoice(
  values: { "use-staging"?: boolean; "trust-config"?: string; "trusted-root"?: string },
  read: (path: string) => Promise<string>,
): Promise<TrustChoice> {
  const given = [values["use-staging"], values["trust-config"], values["trusted-root"]]
    .filter((v) => v !== undefined && v !== false).length;
  if (given > 1) {
    throw new UsageError("give one of --use-staging, --trust-config and --trusted-root");
  }
  if (values["use-staging"]) {
    return { trustedRoot: stagingTrustedRoot(), urls: { ...STAGING_URLS } };
  }
  const path = values["trust-config"];
  if (path === undefined) return { urls: {} };
  let raw: unknown;
  try {
    raw = JSON.parse(await read(path));
  } catch (e) {
    throw new UsageError(
      `${path}: not a JSON client trust configuration (${(e as Error).message})`,
    );
  }
  const config = raw as Record<string, unknown> | null;
  const mediaType = config?.mediaType;
  if (
    typeof config !== "object" || config === null ||
    typeof mediaType !== "string" ||
    !mediaType.startsWith("application/vnd.dev.sigstore.clienttrustconfig.")
  ) {
    throw new UsageError(
      `${path}: expected a Sigstore client trust configuration (mediaType application/vnd.dev.sigstore.clienttrustconfig.v0.1+json), found ${
        typeof mediaType === "string" ? mediaType : "no mediaType"
      }`,
    );
  }
  const trustedRoot = config.trustedRoot ?? config.trusted_root;
  if (typeof trustedRoot !== "object" || trustedRoot === null) {
    throw new UsageError(`${path}: the client trust configuration has no trustedRoot`);
  }
  const signing = (config.signingConfig ?? config.signing_config) as
    | Record<string, unknown>
    | undefined;
  const now = Date.now();
  const pick = (list: unknown): string | undefined => {
    if (!Array.isArray(list)) return undefined;
    for (const s of list as Record<string, unknown>[]) {
      const valid = (s?.validFor ?? {}) as { start?: string; end?: string };
      const start = valid.start === undefined ? -Infinity : Date.parse(valid.start);
      const end = valid.end === undefined ? Infinity : Date.parse(valid.end);
      // Version 1 APIs only: the signer speaks Fulcio v1, Rekor v1 and RFC 3161.
      const major = s?.majorApiVersion;
      if (major !== undefined && major !== 1) continue;
      if (typeof s?.url === "string" && start <= now && now < end) return s.url;
    }
    return undefined;
  };
  const urls: ServiceUrls = {};
  const fulcio = pick(signing?.caUrls);
  const rekor = pick(signing?.rekorTlogUrls);
  const tsa = pick(signing?.tsaUrls);
  if (fulcio) urls.fulcioURL = fulcio;
  if (rekor) urls.rekorURL = rekor;
  if (tsa) urls.tsaURL = tsa;
  return { trustedRoot, urls };
}

/**
 * Ignore paths as the CLI takes them: absolute, relative to the working
 * directory when that names something inside the model (as `model_signing`'s
 * scripts pass them, `m/notes.txt` for model `m`), else relative to the
 * model. A path that names two different existing files the two ways is
 * refused rather than guessed.
 */
export async function cliIgnorePaths(model: string, paths: readonly string[]): Promise<string[]> {
  const { isAbsolute, join, relative, resolve, sep } = await import("node:path");
  const { stat } = await import("node:fs/promises");
  const exists = (p: string) => stat(p).then(() => true, () => false);
  const out: string[] = [];
  for (const p of paths) {
    if (isAbsolute(p)) {
      out.push(p);
      continue;
    }
    const modelRel = p.replaceAll("\\", "/").replace(/^(?:\.\/)+/, "").replace(/\/+$/, "");
    const fromCwd = relative(resolve(model), resolve(p)).split(sep).join("/");
    const inside = fromCwd !== "" && fromCwd !== ".." && !fromCwd.startsWith("../") &&
      !isAbsolute(fromCwd);
    if (!inside || fromCwd === modelRel) {
      out.push(modelRel);
      continue;
    }
    const [cwdHas, modelHas] = await Promise.all([
      exists(resolve(p)),
      exists(join(model, modelRel)),
    ]);
    if (cwdHas && modelHas) {
      throw new UsageError(
        `--ignore-paths ${p} names both ${join(model, modelRel)} and ${
          join(model, fromCwd)
        }; give it as an absolute path`,
      );
    }
    out.push(cwdHas ? fromCwd : modelRel);
  }
  return out;
}
