// The CLI's progress line (stderr, terminals only).
import type { CliIO } from "./cli.ts";
import { terminalColumns, writeStderr } from "./_cli_runtime.ts";

/** Work smaller than this shows no progress. */
const PROGRESS_MIN_BYTES = 256 << 20;

/**
 * One progress line on stderr, only on a terminal and only for long work
 * (256 MiB and more, or an unknown total once that much is done): it never
 * wraps (cut to the terminal's width) and is cleared at the end.
 */
export function progressBar(
  io: CliIO,
  file: string,
): ((bytes: number, total: number | undefined) => void) & { done(): void } {
  let shown = false;
  let last = 0;
  const update = (bytes: number, total: number | undefined) => {
    if (!io.isTerminal) return;
    const known = total !== undefined && total > 0;
    if (known ? total < PROGRESS_MIN_BYTES : bytes < PROGRESS_MIN_BYTES) return;
    const now = Date.now();
    if (now - last < 100 && (!known || bytes < total)) return;
    last = now;
    shown = true;
    const mib = (n: number) => (n / 2 ** 20).toFixed(0);
    let line: string;
    if (known) {
      const width = 30;
      const frac = Math.min(1, bytes / total);
      const fill = Math.round(frac * width);
      line = `${"#".repeat(fill)}${"-".repeat(width - fill)} ${
        (frac * 100).toFixed(0).padStart(3)
      }% ${mib(bytes)}/${mib(total)} MiB ${file}`;
    } else line = `${mib(bytes)} MiB hashed ${file}`;
    const max = Math.max(10, terminalColumns() - 1);
    if (line.length > max) line = `${line.slice(0, max - 1)}…`;
    writeStderr(`\r${line}\x1b[K`);
  };
  return Object.assign(update, {
    done() {
      if (shown) writeStderr("\r\x1b[K");
      shown = false;
    },
  });
}
