// Argument parsing shared by the CLI's commands.
import { parseArgs, type ParseArgsConfig } from "node:util";

/** A usage or input error: printed as one line, exit status 2. */
export class UsageError extends Error {}

/** `node:util` parseArgs in strict mode, with errors turned into usage errors. */
export function parse<O extends NonNullable<ParseArgsConfig["options"]>>(
  args: string[],
  options: O,
): ReturnType<
  typeof parseArgs<{ args: string[]; options: O; allowPositionals: true; strict: true }>
> {
  try {
    return parseArgs({ args, options, allowPositionals: true, strict: true });
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
}
