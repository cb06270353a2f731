// What the benches share: running a baseline command, and openssl's
// `dgst -sha256` as the baseline of a group.

/** Runs a command, its output discarded; throws with its stderr when it fails. */
export async function run(cmd: string, args: string[]): Promise<void> {
  const out = await new Deno.Command(cmd, { args, stdout: "null", stderr: "piped" }).output();
  if (!out.success) throw new Error(`${cmd} failed: ${new TextDecoder().decode(out.stderr)}`);
}

/** Whether a command runs here. */
export function available(cmd: string, args: string[]): Promise<boolean> {
  return run(cmd, args).then(() => true, () => false);
}

/** Whether openssl is here (the baselines are skipped, with a warning, when not). */
export const hasOpenssl: boolean = await available("openssl", ["version"]);
if (!hasOpenssl) console.warn("bench: openssl is missing: the openssl baselines are skipped");

/** `openssl dgst -sha256` over `paths` as the group's baseline (when openssl is here). */
export function opensslBaseline(
  opts: { group: string; n?: number; warmup?: number },
  paths: string[],
): void {
  if (!hasOpenssl) return;
  Deno.bench({
    name: "openssl dgst -sha256 (baseline)",
    baseline: true,
    ...opts,
    fn: async () => await run("openssl", ["dgst", "-sha256", ...paths]),
  });
}
