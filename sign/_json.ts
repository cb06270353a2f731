// Evidence is read within bounds: a model.sig, a lockfile or an embedded
// bundle over the size bound is refused after reading at most that much,
// and JSON nested deeper than the depth bound is refused before it is
// parsed. Browser-safe (no node: modules).
import { EvidenceError } from "./errors.ts";

/**
 * The most bytes of a `model.sig` or lockfile read (8 MiB): a signed
 * manifest of 20,000 files is about 3 MiB; more is not evidence but a way to
 * exhaust memory.
 */
export const MAX_EVIDENCE_BYTES = 8 << 20;
/** The most bytes of a bundle embedded in a model file (1 MiB; ours are a few KiB). */
export const MAX_EMBEDDED_BYTES = 1 << 20;
/** The deepest JSON nesting accepted (bundles and statements nest 6 levels). */
export const MAX_JSON_DEPTH = 32;

const MIB = (n: number) => `${(n / 2 ** 20).toFixed(n % 2 ** 20 === 0 ? 0 : 1)} MiB`;

/** The error for evidence larger than `max` bytes. */
export function tooLarge(what: string, max: number, file?: string): EvidenceError {
  return new EvidenceError(
    "too-large",
    `Cannot read ${what}: it is larger than ${MIB(max)}, the most evidence safemodels reads`,
    file === undefined ? {} : { file },
  );
}

/**
 * Throws `EvidenceError` when `text` is longer than `max` UTF-8 bytes or its
 * JSON nests deeper than {@linkcode MAX_JSON_DEPTH} (a linear scan that
 * skips strings; JSON.parse reports any other problem).
 */
export function checkJsonBounds(text: string, what: string, max: number, file?: string): void {
  // A UTF-16 unit is at most 3 UTF-8 bytes; measure exactly only when it matters.
  if (text.length * 3 > max && new TextEncoder().encode(text).byteLength > max) {
    throw tooLarge(what, max, file);
  }
  let depth = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 0x5c) i++; // backslash: skip the escaped character
      else if (c === 0x22) inString = false;
    } else if (c === 0x22) inString = true;
    else if (c === 0x7b || c === 0x5b) {
      if (++depth > MAX_JSON_DEPTH) {
        throw new EvidenceError(
          "too-deep",
          `Cannot read ${what}: its JSON nests deeper than ${MAX_JSON_DEPTH} levels`,
          file === undefined ? {} : { file },
        );
      }
    } else if (c === 0x7d || c === 0x5d) depth--;
  }
}

/**
 * Reads a stream as UTF-8 text, at most `max` bytes: one byte more cancels
 * the stream and throws `EvidenceError("too-large")`.
 */
export async function readBoundedText(
  stream: ReadableStream<Uint8Array>,
  what: string,
  max: number,
  file?: string,
): Promise<string> {
  const reader = stream.getReader();
  const parts: Uint8Array[] = [];
  let size = 0;
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      size += value.byteLength;
      if (size > max) throw tooLarge(what, max, file);
      parts.push(value);
    }
  } catch (e) {
    await reader.cancel().catch(() => {});
    throw e;
  } finally {
    reader.releaseLock();
  }
  const all = new Uint8Array(size);
  let at = 0;
  for (const p of parts) {
    all.set(p, at);
    at += p.byteLength;
  }
  return new TextDecoder("utf-8", { ignoreBOM: true }).decode(all);
}
