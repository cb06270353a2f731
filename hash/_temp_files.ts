// Temporary files being written (a rewritten safetensors file, a signature
// about to be renamed into place), so that an interrupted command can remove
// them: the CLI's Ctrl-C handler calls removeTempFiles().
const live = new Set<string>();

/** Records a temporary file that exists until {@linkcode untrackTempFile}. */
export function trackTempFile(path: string): void {
  live.add(path);
}

/** Forgets a temporary file (renamed into place, or removed). */
export function untrackTempFile(path: string): void {
  live.delete(path);
}

/** Removes every temporary file still being written (synchronously: for signal handlers). */
export async function removeTempFiles(): Promise<void> {
  const { rmSync } = await import("node:fs");
  for (const path of live) {
    try {
      rmSync(path, { force: true });
    } catch { /* already gone */ }
  }
  live.clear();
}
