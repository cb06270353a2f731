// `keygen`: a new EC signing key for `sign --key` and its public key for
// `verify --key`, so the README's key examples start from nothing.
import type { CliIO } from "./cli.ts";
import { parse, UsageError } from "./_cli_args.ts";
import { envVar, isTerminal, PermissionNeeded, readHidden, readText } from "./_cli_runtime.ts";

const CURVES: Record<string, string> = {
  "P-256": "prime256v1",
  "P-384": "secp384r1",
  "P-521": "secp521r1",
};

/** Runs `keygen`. */
export async function keygenCommand(args: string[], io: CliIO): Promise<number> {
  const { values, positionals } = parse(args, {
    curve: { type: "string" },
    out: { type: "string" },
    pub: { type: "string" },
    encrypt: { type: "boolean" },
    "key-password-file": { type: "string" },
  });
  if (positionals.length > 0) throw new UsageError("keygen takes no file arguments (use --out)");
  const curve = values.curve ?? "P-256";
  const named = CURVES[curve];
  if (named === undefined) {
    throw new UsageError(`unknown --curve "${curve}", expected P-256, P-384 or P-521`);
  }
  const out = values.out ?? "signing-key.pem";
  const pub = values.pub ?? out.replace(/(\.pem)?$/, ".pub.pem");
  if (pub === out) throw new UsageError("--pub must differ from --out");
  let password: string | undefined;
  if (values.encrypt) password = await newPassword(values["key-password-file"], io);
  else if (values["key-password-file"] !== undefined) {
    throw new UsageError("--key-password-file goes with --encrypt");
  }
  const { generateKeyPairSync } = await import("node:crypto");
  const { privateKey, publicKey } = generateKeyPairSync("ec", { namedCurve: named });
  const keyPem = privateKey.export(
    password === undefined
      ? { type: "pkcs8", format: "pem" }
      : { type: "pkcs8", format: "pem", cipher: "aes-256-cbc", passphrase: password },
  ) as string;
  const pubPem = publicKey.export({ type: "spki", format: "pem" }) as string;
  // Never overwrite: a lost signing key cannot be recovered.
  const { open } = await import("node:fs/promises");
  for (const [path, text, mode] of [[out, keyPem, 0o600], [pub, pubPem, 0o644]] as const) {
    let handle;
    try {
      handle = await open(path, "wx", mode);
    } catch (e) {
      if ((e as { code?: string }).code === "EEXIST") {
        throw new UsageError(`${path} exists: keygen never overwrites a key (choose --out/--pub)`);
      }
      throw e;
    }
    try {
      await handle.writeFile(text);
    } finally {
      await handle.close();
    }
  }
  io.out(
    `Wrote ${out} (${curve} private key${
      password === undefined ? "" : ", encrypted"
    }, mode 0600) and ${pub} (public key)`,
  );
  return 0;
}

/**
 * A password given without asking: `--key-password-file`, else
 * SAFEMODELS_KEY_PASSWORD (empty counts as unset); `undefined` when the
 * terminal is to ask, and a usage error `noTerminal` when there is none.
 * Without --allow-env the variable is skipped, or with `denied` a usage error.
 */
export async function givenPassword(
  file: string | undefined,
  noTerminal: string,
  denied?: string,
): Promise<string | undefined> {
  if (file !== undefined) return (await readText(file)).replace(/\r?\n$/, "");
  let fromEnv: string | undefined;
  try {
    fromEnv = envVar("SAFEMODELS_KEY_PASSWORD");
  } catch (e) {
    if (!(e instanceof PermissionNeeded)) throw e;
    if (denied !== undefined) throw new UsageError(denied);
  }
  if (fromEnv !== undefined && fromEnv !== "") return fromEnv;
  if (!isTerminal("stdin")) throw new UsageError(noTerminal);
  return undefined;
}

/** A password for a new key: a file, SAFEMODELS_KEY_PASSWORD, or asked twice on the terminal. */
async function newPassword(file: string | undefined, io: CliIO): Promise<string> {
  const given = await givenPassword(
    file,
    "--encrypt needs a password: give --key-password-file FILE or set SAFEMODELS_KEY_PASSWORD (no terminal to ask on)",
  );
  if (given !== undefined) return given;
  const interrupted = () => new UsageError("interrupted");
  const first = await readHidden(interrupted, () => io.err("Password for the new key: "));
  if (await readHidden(interrupted, () => io.err("Again: ")) !== first) {
    throw new UsageError("the two passwords differ");
  }
  if (first === "") throw new UsageError("an empty password encrypts nothing");
  return first;
}
