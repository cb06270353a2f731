// What I/O failures mean, for messages a user can act on. Browser-safe.
import { EvidenceError } from "./errors.ts";

/** Whether `e` says the process may not read or write (Deno permissions or the OS). */
export function isPermissionError(e: unknown): boolean {
  const name = (e as { name?: string })?.name;
  const code = (e as { code?: string })?.code;
  return name === "NotCapable" || name === "PermissionDenied" || code === "EACCES" ||
    code === "EPERM" || code === "ERR_ACCESS_DENIED";
}

/** Whether `e` says there is no such file. */
export function isNotFound(e: unknown): boolean {
  const name = (e as { name?: string })?.name;
  const code = (e as { code?: string })?.code;
  return name === "NotFound" || name === "NotADirectory" || code === "ENOENT" ||
    code === "ENOTDIR";
}

/**
 * The error for evidence that could not be read: a permission (naming the
 * Deno flag that grants it) or an I/O failure.
 */
export function unreadable(e: unknown, path: string, what: string): EvidenceError {
  const why = e instanceof Error ? e.message : String(e);
  if (isPermissionError(e)) {
    const deno = typeof (globalThis as { Deno?: unknown }).Deno !== "undefined";
    return new EvidenceError(
      "permission-denied",
      `Cannot read ${what}: permission denied (${why})${
        deno ? `; run with --allow-read=${path}` : "; check the file's permissions"
      }`,
      { file: path, cause: e },
    );
  }
  return new EvidenceError("unreadable", `Cannot read ${what}: ${why}`, { file: path, cause: e });
}
