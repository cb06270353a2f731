// The CLI's runtime layer: the few process facilities the command line needs
// (arguments, exit, signals, standard streams, the terminal, files,
// environment), from Deno's API under Deno and from Node's `process` and
// `node:` modules elsewhere. Nothing else in the CLI's path touches `Deno`.

import { isPermissionError } from "../sign/_io_errors.ts";

// deno-lint-ignore no-explicit-any
const deno: typeof Deno | undefined = (globalThis as any).Deno;
// deno-lint-ignore no-explicit-any
const proc: any = (globalThis as any).process;

/** The command-line arguments, without the program name. */
export function programArgs(): string[] {
  return deno ? deno.args : proc.argv.slice(2);
}

/** Ends the process with `code`. */
export function exitProcess(code: number): never {
  if (deno) deno.exit(code);
  proc.exit(code);
  throw new Error("unreachable");
}

/** Calls `handler` on Ctrl-C (SIGINT) instead of ending the process. */
export function onInterrupt(handler: () => void): void {
  if (deno) deno.addSignalListener("SIGINT", handler);
  else proc.on("SIGINT", handler);
}

/** Standard input as a byte stream. */
export async function stdinStream(): Promise<ReadableStream<Uint8Array>> {
  if (deno) return deno.stdin.readable;
  const { Readable } = await import("node:stream");
  return Readable.toWeb(proc.stdin) as unknown as ReadableStream<Uint8Array>;
}

/** Whether standard input (`"stdin"`) or standard error (`"stderr"`) is a terminal. */
export function isTerminal(stream: "stdin" | "stderr"): boolean {
  try {
    if (deno) return deno[stream].isTerminal();
    return proc[stream]?.isTTY === true;
  } catch {
    return false;
  }
}

/** The terminal's width in columns (80 when it cannot be told). */
export function terminalColumns(): number {
  try {
    if (deno) return deno.consoleSize().columns;
    return proc.stderr?.columns || 80;
  } catch {
    return 80;
  }
}

/** Writes `text` to standard error as is (no newline added). */
export function writeStderr(text: string): void {
  if (deno) deno.stderr.writeSync(new TextEncoder().encode(text));
  else proc.stderr.write(text);
}

/** A file's text (UTF-8). */
export async function readText(path: string): Promise<string> {
  if (deno) return await deno.readTextFile(path);
  const { readFile } = await import("node:fs/promises");
  return await readFile(path, "utf8");
}

/** What the CLI needs to know of a path (following symbolic links). */
export async function pathInfo(
  path: string,
): Promise<{ isFile: boolean; isDirectory: boolean; size: number }> {
  if (deno) {
    const s = await deno.stat(path);
    return { isFile: s.isFile, isDirectory: s.isDirectory, size: s.size };
  }
  const { stat } = await import("node:fs/promises");
  const s = await stat(path);
  return { isFile: s.isFile(), isDirectory: s.isDirectory(), size: s.size };
}

/** Thrown when the runtime's permissions forbid what was asked (Deno without `--allow-…`). */
export class PermissionNeeded extends Error {
  constructor(message: string) {
    super(message);
    this.name = "PermissionNeeded";
  }
}

/**
 * An environment variable, or undefined when unset. Under Deno without
 * `--allow-env` for it, throws {@link PermissionNeeded} naming the flag.
 */
export function envVar(name: string): string | undefined {
  if (!deno) return proc?.env?.[name];
  try {
    return deno.env.get(name);
  } catch (e) {
    if (isPermissionError(e)) {
      throw new PermissionNeeded(`reading ${name} needs --allow-env=${name}`);
    }
    throw e;
  }
}

/**
 * A line typed on the terminal, not echoed; Ctrl-C rejects with `interrupted`.
 * `prompt` is called once echo is off, so nothing typed after it shows.
 */
export async function readHidden(interrupted: () => Error, prompt: () => void): Promise<string> {
  const chars: number[] = [];
  // One byte at a time: Enter ends, Backspace/Delete removes, Ctrl-C aborts.
  const take = (byte: number): "more" | "done" | "abort" => {
    if (byte === 0x0d || byte === 0x0a) return "done";
    if (byte === 0x03) return "abort";
    if (byte === 0x7f || byte === 0x08) chars.pop();
    else chars.push(byte);
    return "more";
  };
  const text = () => new TextDecoder().decode(new Uint8Array(chars));
  if (deno) {
    deno.stdin.setRaw(true);
    prompt();
    const buf = new Uint8Array(1);
    try {
      for (;;) {
        const n = await deno.stdin.read(buf);
        if (n === null) return text();
        const next = take(buf[0]!);
        if (next === "done") return text();
        if (next === "abort") throw interrupted();
      }
    } finally {
      deno.stdin.setRaw(false);
    }
  }
  const stdin = proc.stdin;
  stdin.setRawMode?.(true);
  prompt();
  stdin.resume();
  try {
    return await new Promise<string>((resolve, reject) => {
      const onData = (data: Uint8Array) => {
        for (const byte of data) {
          const next = take(byte);
          if (next === "more") continue;
          stdin.off("data", onData);
          stdin.off("end", onEnd);
          if (next === "done") resolve(text());
          else reject(interrupted());
          return;
        }
      };
      const onEnd = () => {
        stdin.off("data", onData);
        resolve(text());
      };
      stdin.on("data", onData);
      stdin.on("end", onEnd);
    });
  } finally {
    stdin.setRawMode?.(false);
    stdin.pause();
  }
}

/**
 * The URL of a sibling module of the CLI, for `import()`: computed, so that
 * bundlers and Deno's first run leave the signing half (and the Sigstore
 * libraries it loads) out until a command needs it; `.js` in the npm build.
 */
export function sibling(path: string, base: string): string {
  const url = new URL(base);
  const file = url.pathname.slice(url.pathname.lastIndexOf("/") + 1);
  // Only from the CLI's own file, beside its own modules: a bundle that
  // inlined the CLI has no signing half beside it to load.
  const own = /^cli\.(ts|js)$/.exec(file);
  if (!own) {
    throw new Error(
      `the signing commands load modules beside plugins/cli.ts, but the CLI runs from ${file}: run safemodels from its package (npx safemodels, deno run jsr:@safemodels/safemodels/cli) rather than from a bundle`,
    );
  }
  return new URL(`${path}.${own[1]}`, url).href;
}
