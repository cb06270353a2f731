// Argument parsing shared by the CLI's commands.
import { parseArgs, type ParseArgsConfig } from "node:util";

/** A usage or input error: printed as one line, exit status 2. */
export class UsageError extends Error {}

/**
 * `node:util` parseArgs in strict mode, with errors turned into usage errors
 * (an unknown option says which known one was probably meant).
 */
export function parse<O extends NonNullable<ParseArgsConfig["options"]>>(
  args: string[],
  options: O,
): ReturnType<
  typeof parseArgs<{ args: string[]; options: O; allowPositionals: true; strict: true }>
> {
  try {
    return parseArgs({ args, options, allowPositionals: true, strict: true });
  } catch (e) {
    const message = (e as Error).message;
    const unknown = /Unknown option '(--?[^']+)'/.exec(message)?.[1];
    const guess = unknown === undefined
      ? undefined
      : closest(unknown.replace(/^-+/, ""), Object.keys(options));
    throw new UsageError(
      guess === undefined ? message : `${message.replace(/\.?\s*$/, "")}; did you mean --${guess}?`,
    );
  }
}

/** The candidate nearest to `word` (edit distance at most a third of its length), if any. */
export function closest(word: string, candidates: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestDistance = Math.max(1, Math.floor(word.length / 3)) + 1;
  for (const c of candidates) {
    const d = distance(word, c);
    if (d < bestDistance) {
      best = c;
      bestDistance = d;
    }
  }
  return best;
}

/** Levenshtein distance. */
function distance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++) {
      cur[j] = Math.min(
        prev[j]! + 1,
        cur[j - 1]! + 1,
        prev[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1),
      );
    }
    prev = cur;
  }
  return prev[b.length]!;
}
