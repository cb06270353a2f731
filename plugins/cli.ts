/**
 * The `safemodels` command line, for `deno run`:
 *
 * ```sh
 * deno run --allow-read jsr:@safemodels/safemodels/cli hash model.safetensors
 * deno run --allow-read jsr:@safemodels/safemodels/cli meta get model.safetensors
 * deno run --allow-read --allow-write jsr:@safemodels/safemodels/cli meta set model.safetensors name=tiny
 * ```
 *
 * Exit status: 0 on success, 1 when a check fails, 2 on a usage or input
 * error (a one-line message on stderr, no stack trace).
 *
 * @example Running the CLI from code
 * ```ts ignore
 * import { main } from "@safemodels/safemodels/cli";
 *
 * Deno.exit(await main(["hash", "model.safetensors", "--json"]));
 * ```
 *
 * @module
 */

import { closest, parse, UsageError } from "./_cli_args.ts";
import { progressBar } from "./_cli_progress.ts";
import {
  exitProcess,
  isTerminal,
  onInterrupt,
  pathInfo,
  programArgs,
  sibling,
  stdinStream,
} from "./_cli_runtime.ts";
import config from "../deno.json" with { type: "json" };

const VERSION: string = config.version;
type SignModule = typeof import("./_cli_sign.ts");
const COMMANDS = ["hash", "digest", "meta", "sign", "verify", "lock", "check", "keygen"];

/** The part of the usage about one command (its lines under "Commands:"). */
function commandUsage(command: string): string {
  const lines = USAGE.split("\n");
  const out: string[] = [];
  let inside = false;
  for (const line of lines) {
    const head = /^ {2}(\S+)/.exec(line)?.[1];
    if (head !== undefined) inside = head === command;
    else if (!line.startsWith("      ") && !line.startsWith("       ")) inside = false;
    if (inside) out.push(line);
  }
  return [`Usage: safemodels ${command} [options]`, "", ...out].join("\n");
}
import { ModelFormatError } from "../hash/errors.ts";
import { EvidenceError, OidcError, SignError } from "../sign/errors.ts";
import { isPermissionError } from "../sign/_io_errors.ts";
import { safeHash } from "../hash/safe_hash.ts";
import type { HashAlgorithm, HashProgress } from "../hash/safe_hash.ts";
import { fileDigest } from "../hash/file_digest.ts";
import type { FileDigestAlgorithm } from "../hash/file_digest.ts";
import type { ModelFormat } from "../hash/types.ts";
import { extractMetadata } from "../meta/extract_metadata.ts";
import { updateMeta } from "../meta/update_meta.ts";

const USAGE = `Usage: safemodels <command> [options]

Commands:
  hash <files or folders... | -> [--algorithm A] [--format F] [--workers N] [--allow-symlinks] [--json]
      Tensor hash of each model file, folder or sharded checkpoint (*.index.json: one hash
      over all shards). A: safemodels-v1 (default), seed-xxh64, seed-blake2b160.
  digest <files or folders... | -> [--algorithm sha256|blake2b|blake3] [--ignore-paths P...]
       [--no-ignore-git-paths] [--allow-symlinks] [--json]
      Digest of each file's bytes; of a folder, the OMS root digest model_signing prints
      (SHA-256 over every file's digest: the digest a model.sig signs).
  meta get <file>
      Print a safetensors file's __metadata__ as JSON.
  meta set <file> key=value... [--clobber]
      Merge (or with --clobber, replace) __metadata__, rewriting the file atomically.
  sign <file|dir> (--key K | --cert K --chain C... | --identity-token T | keyless) [--ignore P...]
       [--name N --model-version V] [--detached] [--signature S] [--shards [SIZE]]
       [--hash sha256|blake2b|blake3] [--allow-symlinks] [--no-ignore-git-paths]
       [--use-staging | --trust-config F] [--oidc-issuer U] [--oidc-client-id C] [--no-browser]
      Keyless with no token (--identity-token, SIGSTORE_ID_TOKEN, GitHub Actions): on a terminal
      (or with --oidc-issuer) a browser sign-in, redirected to a loopback port on 127.0.0.1.
      A folder or non-safetensors file: a detached OMS signature (model.sig). A .safetensors
      file: a signature embedded in its __metadata__ (needs --model-version), unless --detached
      (or --shards / --hash). --shards signs shards of SIZE bytes (default 1000000000).
  verify <file|dir> (--identity I --issuer U | --key PUB | --cert-root R | --policy P)...
       [--identity-regexp RE] [--issuer-regexp RE] (anchored: the whole value must match)
       [--trusted-root F] [--name N] [--model-version V] [--ignore P...] [--files F...]
       [--signature S] [--lock F [--frozen]] [--signatures-optional] [--json]
       [--allow-symlinks] [--no-ignore-git-paths] [--ignore-unsigned-files]
       [--use-staging | --trust-config F]
      Decide every file (or --files) by the model's evidence: the root model.sig, else each
      file's embedded signature, else its lockfile pin; --name and --model-version are the model
      asked for (evidence for another is refused). model_signing's spellings work too
      (verify key|certificate|sigstore, --public_key, --certificate_chain, --ignore-paths, …).
  lock <file|dir> (options as verify) [--lock F] [--update]
  lock hf://ORG/NAME[@REVISION] [--files F...] [--lock F] [--update] [--hub-url U]
      Verify, then record every file's digest and the signer (default safemodels.lock, never
      inside the model folder unless given); --update replaces the model's entry. hf://: pin a
      hub model without downloading its weights (the hub's LFS SHA-256s, the commit).
  check <file|dir> --policy P (options as verify)
      verify with a JSON policy file: the transformers.js guard's decision without loading.
  keygen [--curve P-256|P-384|P-521] [--out key.pem] [--pub key.pub.pem] [--encrypt]
      A new EC signing key (PKCS #8, mode 0600) and its public key for --key; --encrypt asks for a
      password (terminal, --key-password-file or SAFEMODELS_KEY_PASSWORD). Never overwrites.

Permissions: --allow-read (hash, digest, meta get, verify); plus --allow-write (meta set, sign, lock);\nkeyless sign also --allow-net and --allow-env; lock hf:// --allow-net and --allow-env=HF_ENDPOINT,HF_TOKEN.
Also: safemodels <command> --help, safemodels --version.
Exit status: 0 success, 1 failed check, 2 usage or input error.`;

/**
 * Where the CLI writes; replaced in tests.
 *
 * @example Capturing output
 * ```ts
 * import { type CliIO, main } from "@safemodels/safemodels/cli";
 *
 * const lines: string[] = [];
 * const io: CliIO = { out: (s) => lines.push(s), err: (s) => lines.push(s), isTerminal: false };
 * await main(["--help"], io);
 * ```
 */
export interface CliIO {
  /** Standard output. */
  out(line: string): void;
  /** Standard error. */
  err(line: string): void;
  /** Whether stderr is a terminal (enables the progress bar). */
  isTerminal: boolean;
}

const defaultIO: CliIO = {
  out: (s) => console.log(s),
  err: (s) => console.error(s),
  isTerminal: isTerminal("stderr"),
};

/**
 * Runs the CLI with `args` (without the program name).
 *
 * @param args The command-line arguments.
 * @param io Output sinks (defaults to the console).
 * @returns The exit status: 0 success, 1 failed check, 2 usage or input error.
 *
 * @example Hashing a file
 * ```ts ignore
 * import { main } from "@safemodels/safemodels/cli";
 *
 * const status = await main(["hash", "model.safetensors"]);
 * ```
 */
export async function main(
  args: string[],
  io: CliIO = defaultIO,
): Promise<number> {
  try {
    const [command, ...rest] = args;
    // `<command> --help`: that command's part of the usage, on stdout.
    const before = optionsOf(rest);
    if (
      command !== undefined && COMMANDS.includes(command) &&
      (before.includes("--help") || before.includes("-h"))
    ) {
      io.out(commandUsage(command));
      return 0;
    }
    switch (command) {
      case "--version":
      case "-V":
      case "version":
        io.out(`safemodels ${VERSION}`);
        return 0;
      case "keygen":
        return await (await import("./_cli_keygen.ts")).keygenCommand(rest, io);
      case "hash":
        return await hashCommand(rest, io);
      case "digest":
        return await digestCommand(rest, io);
      case "meta":
        return await metaCommand(rest, io);
      case "sign":
      case "verify":
      case "lock":
      case "check":
        // Loaded on demand, by a computed specifier: hashing never loads (nor
        // on a first run downloads) the Sigstore libraries.
        return await (await lazy<SignModule>("./_cli_sign")).signCommand(command, rest, io);
      case undefined:
      case "help":
      case "--help":
      case "-h":
        // Asked for help: stdout, success. No command at all: a usage error.
        if (command === undefined) {
          io.err(USAGE);
          return 2;
        }
        io.out(USAGE);
        return 0;
      default: {
        const guess = closest(command, COMMANDS);
        throw new UsageError(
          `unknown command "${command}"${guess ? `; did you mean "${guess}"?` : ""} (try --help)`,
        );
      }
    }
  } catch (e) {
    // One line, whatever the message holds (names can contain newlines).
    io.err(`safemodels: ${describe(e).replace(/[\r\n]+/g, " ")}`);
    // --json: the error is in the JSON on stdout too, so a script reading
    // stdout always gets one document.
    if (optionsOf(args).includes("--json")) {
      io.out(JSON.stringify({ ok: false, error: errorJson(e) }, null, 2));
    }
    return isFailedCheck(e) ? 1 : 2;
  }
}

/** The arguments before `--` (after it, everything is a file name). */
function optionsOf(args: string[]): string[] {
  const ends = args.indexOf("--");
  return ends < 0 ? args : args.slice(0, ends);
}

/**
 * Loads a module of the CLI's signing half by a computed specifier, so that
 * hashing neither loads nor (on a first run) downloads the Sigstore libraries.
 * Deno asks read permission for modules loaded this way from a local clone.
 */
async function lazy<T>(path: string): Promise<T> {
  const url = sibling(path, import.meta.url);
  try {
    return await import(url) as T;
  } catch (e) {
    if (!isPermissionError(e) && !/Requires read access/.test(String(e))) throw e;
    const dir = new URL("../", import.meta.url);
    throw new UsageError(
      `this command loads more of safemodels from ${
        dir.protocol === "file:" ? decodeURIComponent(dir.pathname) : dir.href
      }: allow reading it too (--allow-read=…,THAT_FOLDER), or run the published package`,
    );
  }
}

/**
 * A verification that ran and said no (exit 1), as opposed to bad input or
 * evidence that could not be read (exit 2).
 */
function isFailedCheck(e: unknown): boolean {
  return e instanceof SignError && !(e instanceof EvidenceError) && !(e instanceof OidcError);
}

function describe(e: unknown): string {
  if (e instanceof UsageError || e instanceof ModelFormatError) {
    return e.message;
  }
  if (e instanceof Error) {
    const code = (e as { code?: string }).code;
    if (e.name === "NotFound" || code === "ENOENT") {
      return `${e.message} (no such file)`;
    }
    return e.message;
  }
  return String(e);
}

const ALGORITHMS: HashAlgorithm[] = [
  "safemodels-v1",
  "seed-xxh64",
  "seed-blake2b160",
];
const FORMATS: ModelFormat[] = [
  "safetensors",
  "pytorch-zip",
  "pytorch-legacy",
  "npy",
  "npz",
  "onnx",
];

async function hashCommand(args: string[], io: CliIO): Promise<number> {
  const { values, positionals } = parse(args, {
    algorithm: { type: "string", short: "a" },
    format: { type: "string" },
    workers: { type: "string" },
    json: { type: "boolean" },
    "allow-symlinks": { type: "boolean" },
  });
  if (positionals.length === 0) {
    throw new UsageError("hash needs at least one file");
  }
  const algorithm = (values.algorithm ?? "safemodels-v1") as HashAlgorithm;
  if (!ALGORITHMS.includes(algorithm)) {
    throw new UsageError(
      `unknown --algorithm "${algorithm}", expected one of ${ALGORITHMS.join(", ")}`,
    );
  }
  const format = values.format as ModelFormat | undefined;
  if (format !== undefined && !FORMATS.includes(format)) {
    throw new UsageError(
      `unknown --format "${format}", expected one of ${FORMATS.join(", ")}`,
    );
  }
  let workers: number | undefined;
  if (values.workers !== undefined) {
    // Not just Number(): it reads "" as 0 and accepts "0x2" or "1e1".
    workers = /^\d{1,2}$/.test(values.workers) ? Number(values.workers) : NaN;
    if (!Number.isInteger(workers) || workers < 0 || workers > 64) {
      throw new UsageError(
        `--workers must be an integer from 0 to 64, got "${values.workers}"`,
      );
    }
  }
  const results: Record<string, unknown>[] = [];
  let failed = 0;
  for (const file of positionals as string[]) {
    const bar = progressBar(io, file);
    let files: string[] | undefined;
    try {
      // `-`: standard input (safetensors streams; other formats need --format).
      const hash = await safeHash(file === "-" ? await stdinStream() : file, {
        algorithm,
        ...(format ? { format } : {}),
        ...(workers !== undefined ? { workers } : {}),
        ...(values["allow-symlinks"] ? { allowSymlinks: true } : {}),
        onProgress: (p: HashProgress) => bar(p.bytes, p.totalBytes),
        onFiles: (f) => (files = f),
      });
      bar.done();
      results.push({ file, algorithm, hash, ...(files ? { files } : {}) });
      if (!values.json) {
        // A folder or index: say which files were read (to stderr, so stdout stays one line a model).
        io.out(`${hash}  ${file}`);
        if (files) io.err(`  read ${files.join(", ")}`);
      }
    } catch (e) {
      bar.done();
      // One file failing does not stop the others (exit 1 at the end).
      if (positionals.length === 1 && !values.json) throw e;
      failed++;
      results.push({ file, algorithm, error: errorJson(e) });
      if (!values.json) io.err(`safemodels: ${file}: ${describe(e).replace(/[\r\n]+/g, " ")}`);
    }
  }
  if (values.json) io.out(JSON.stringify(results, null, 2));
  return failed > 0 ? 1 : 0;
}

/** An error as the JSON outputs carry it. */
function errorJson(e: unknown): Record<string, unknown> {
  return {
    name: e instanceof Error ? e.name : "Error",
    code: (e as { code?: string }).code ?? null,
    message: describe(e),
  };
}

async function digestCommand(args: string[], io: CliIO): Promise<number> {
  const { values, positionals } = parse(args, {
    algorithm: { type: "string", short: "a" },
    json: { type: "boolean" },
    ignore: { type: "string", multiple: true },
    "ignore-paths": { type: "string", multiple: true },
    "ignore-git-paths": { type: "boolean" },
    "no-ignore-git-paths": { type: "boolean" },
    "allow-symlinks": { type: "boolean" },
  });
  if (positionals.length === 0) {
    throw new UsageError("digest needs at least one file or folder");
  }
  const algorithm = (values.algorithm ?? "sha256") as FileDigestAlgorithm;
  if (!["sha256", "blake2b", "blake3"].includes(algorithm)) {
    throw new UsageError(
      `unknown --algorithm "${algorithm}", expected sha256, blake2b or blake3`,
    );
  }
  if (values["ignore-git-paths"] && values["no-ignore-git-paths"]) {
    throw new UsageError("give --ignore-git-paths or --no-ignore-git-paths, not both");
  }
  const ignoreGiven = [...(values.ignore ?? []), ...(values["ignore-paths"] ?? [])];
  const results: Record<string, unknown>[] = [];
  let failed = 0;
  for (const file of positionals as string[]) {
    let digest: string;
    try {
      if (file === "-") {
        // Standard input: its bytes' digest.
        digest = await fileDigest(await stdinStream(), { algorithm });
        results.push({ file, algorithm, digest });
      } else if ((await pathInfo(file)).isDirectory) {
        // A folder: the OMS root digest, as `model_signing digest` prints it.
        // Static specifiers: neither module loads Sigstore.
        const { modelDigest } = await import("../sign/sign_model.ts");
        const { cliIgnorePaths } = await import("./_cli_trust.ts");
        const ignorePaths = await cliIgnorePaths(file, ignoreGiven);
        const bar = progressBar(io, file);
        digest = await modelDigest(file, {
          hashType: algorithm,
          ignorePaths,
          ignoreGitPaths: !values["no-ignore-git-paths"],
          allowSymlinks: values["allow-symlinks"] ?? false,
          onProgress: (b) => bar(b, 0),
        });
        bar.done();
        results.push({ file, algorithm: "oms-root", digest });
      } else {
        const size = (await pathInfo(file)).size;
        const bar = progressBar(io, file);
        digest = await fileDigest(file, {
          algorithm,
          onProgress: (b) => bar(b, size),
        });
        bar.done();
        results.push({ file, algorithm, digest });
      }
      if (!values.json) io.out(`${digest}  ${file}`);
    } catch (e) {
      if (positionals.length === 1 && !values.json) throw e;
      failed++;
      results.push({ file, algorithm, error: errorJson(e) });
      if (!values.json) io.err(`safemodels: ${file}: ${describe(e).replace(/[\r\n]+/g, " ")}`);
    }
  }
  if (values.json) io.out(JSON.stringify(results, null, 2));
  return failed > 0 ? 1 : 0;
}

async function metaCommand(args: string[], io: CliIO): Promise<number> {
  const [sub, ...rest] = args;
  if (sub === "get") {
    // The metadata is JSON already; --json is accepted for uniformity.
    const { positionals } = parse(rest, { json: { type: "boolean" } });
    if (positionals.length !== 1) {
      throw new UsageError("meta get needs exactly one file");
    }
    io.out(JSON.stringify(await extractMetadata(positionals[0]!), null, 2));
    return 0;
  }
  if (sub === "set") {
    const { values, positionals } = parse(rest, {
      clobber: { type: "boolean" },
      json: { type: "boolean" },
    });
    const [file, ...pairs] = positionals as string[];
    if (file === undefined || pairs.length === 0) {
      throw new UsageError("meta set needs a file and at least one key=value");
    }
    const meta: Record<string, string> = {};
    for (const pair of pairs) {
      const eq = pair.indexOf("=");
      if (eq <= 0) throw new UsageError(`expected key=value, got "${pair}"`);
      meta[pair.slice(0, eq)] = pair.slice(eq + 1);
    }
    const bar = progressBar(io, file);
    try {
      await updateMeta(file, meta, {
        clobber: values.clobber ?? false,
        onProgress: (bytes, total) => bar(bytes, total),
      });
    } finally {
      bar.done();
    }
    if (values.json) {
      io.out(JSON.stringify({ ok: true, file, metadata: await extractMetadata(file) }, null, 2));
    }
    return 0;
  }
  throw new UsageError(
    `meta needs "get" or "set", got ${sub === undefined ? "nothing" : `"${sub}"`}`,
  );
}

// Run as a program: only when this file itself is the entry, not when a
// bundler has inlined it into an app whose entry it now shares (Node 24+ and
// Deno set import.meta.main there too).
if (import.meta.main && /\/cli\.[jt]s$/.test(new URL(import.meta.url).pathname)) {
  // Ctrl-C: remove any temporary file being written (meta set, sign), then
  // exit as interrupted; the original files are untouched.
  onInterrupt(async () => {
    const { removeTempFiles } = await import("../hash/_temp_files.ts");
    await removeTempFiles();
    exitProcess(130);
  });
  exitProcess(await main(programArgs()));
}
