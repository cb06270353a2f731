/**
 * DSSE helpers: the pre-authentication encoding that signatures cover, and
 * strict base64 decoding for envelope and bundle fields.
 *
 * @module
 */

const encoder = new TextEncoder();

/**
 * The DSSE v1 pre-authentication encoding of a payload:
 * `"DSSEv1" SP len(type) SP type SP len(body) SP body`, lengths being the
 * ASCII decimal byte lengths. This is what a DSSE signature signs.
 */
export function dssePae(payloadType: string, payload: Uint8Array): Uint8Array {
  const type = encoder.encode(payloadType);
  const head = encoder.encode(`DSSEv1 ${type.length} `);
  const mid = encoder.encode(` ${payload.length} `);
  const out = new Uint8Array(head.length + type.length + mid.length + payload.length);
  out.set(head, 0);
  out.set(type, head.length);
  out.set(mid, head.length + type.length);
  out.set(payload, head.length + type.length + mid.length);
  return out;
}

const STANDARD = /^[A-Za-z0-9+/]*={0,2}$/;
const URL_SAFE = /^[A-Za-z0-9_-]*={0,2}$/;

/**
 * Decodes base64 (standard or URL-safe alphabet, padding optional, as DSSE
 * allows both), or returns `undefined` when `text` is not base64. Stricter
 * than `atob`, which skips whitespace.
 */
export function decodeBase64(text: string): Uint8Array | undefined {
  let s = text;
  if (!STANDARD.test(s)) {
    if (!URL_SAFE.test(s)) return undefined;
    s = s.replaceAll("-", "+").replaceAll("_", "/");
  }
  const body = s.replace(/=+$/, "");
  // A single leftover character cannot encode a byte.
  if (body.length % 4 === 1) return undefined;
  if (s.length !== body.length && s.length % 4 !== 0) return undefined;
  let binary: string;
  try {
    binary = atob(body + "=".repeat((4 - (body.length % 4)) % 4));
  } catch {
    return undefined;
  }
  const out = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) out[i] = binary.charCodeAt(i);
  return out;
}
