// PEM and base64 text helpers: no node: modules, so that verification with
// WebCrypto (browsers) can use them too.

/** One `-----BEGIN <label>-----` block of a PEM text, decoded. */
export interface PemBlock {
  /** The label, e.g. `CERTIFICATE` or `EC PRIVATE KEY`. */
  label: string;
  /** The decoded DER bytes. */
  der: Uint8Array<ArrayBuffer>;
}

const BLOCK = /-----BEGIN ([A-Z0-9 ]+)-----([\s\S]*?)-----END \1-----/g;

/**
 * Returns the PEM blocks of `text`, in order. Text around the blocks (such
 * as the human-readable dump GnuTLS writes before them) is ignored.
 */
export function pemBlocks(text: string): PemBlock[] {
  const blocks: PemBlock[] = [];
  for (const match of text.matchAll(BLOCK)) {
    const label = match[1] ?? "";
    const body = (match[2] ?? "").replace(/\s+/g, "");
    blocks.push({ label, der: base64Decode(body) });
  }
  return blocks;
}

/** Encodes DER as PEM: 64-character lines and a final newline, as OpenSSL writes. */
export function toPem(label: string, der: Uint8Array): string {
  const b64 = base64Encode(der);
  const lines = [`-----BEGIN ${label}-----`];
  for (let i = 0; i < b64.length; i += 64) lines.push(b64.slice(i, i + 64));
  lines.push(`-----END ${label}-----`, "");
  return lines.join("\n");
}

/** Standard base64 (with padding) of `bytes`. */
export function base64Encode(bytes: Uint8Array): string {
  // The native encoder where the runtime has one (Deno, browsers, Node 25).
  const native = (bytes as { toBase64?: () => string }).toBase64;
  if (typeof native === "function") return native.call(bytes);
  let binary = "";
  // Chunked so String.fromCharCode never gets too many arguments.
  for (let i = 0; i < bytes.length; i += 0x8000) {
    binary += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  }
  return btoa(binary);
}

/** Decodes standard base64; throws `TypeError` on malformed input. */
export function base64Decode(text: string): Uint8Array<ArrayBuffer> {
  let binary: string;
  try {
    binary = atob(text);
  } catch (cause) {
    throw new TypeError("Cannot decode base64: the text is not valid base64", { cause });
  }
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  return bytes;
}
