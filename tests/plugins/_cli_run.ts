// Runs the CLI in-process, collecting what it prints (optionally from another
// working directory, as scripts that pass relative paths run it).
import { main } from "../../plugins/cli.ts";

/** The CLI's exit code and its stdout and stderr, one "\n" after each line. */
export async function runCli(
  args: string[],
  cwd?: string,
): Promise<{ code: number; out: string; err: string }> {
  const before = Deno.cwd();
  let out = "", err = "";
  if (cwd !== undefined) Deno.chdir(cwd);
  try {
    const code = await main(args, {
      out: (s: string) => void (out += s + "\n"),
      err: (s: string) => void (err += s + "\n"),
      isTerminal: false,
    });
    return { code, out, err };
  } finally {
    if (cwd !== undefined) Deno.chdir(before);
  }
}
