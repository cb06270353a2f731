// The Fulcio extensions of a keyless signer's certificate, by name (shared by
// both keyless verifiers). Browser-safe.
import { FULCIO_EXTENSIONS } from "./policy.ts";
import { type Certificate, derString } from "./_x509.ts";

/** v1 extensions (…1.2 to …1.6) hold raw text; later ones a DER UTF8String. */
const RAW = new Set(["2", "3", "4", "5", "6"]);

/** Every Fulcio extension the certificate carries, by name. */
export function fulcioExtensions(cert: Certificate): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, oid] of Object.entries(FULCIO_EXTENSIONS)) {
    const value = cert.extensions.get(oid);
    if (value === undefined) continue;
    const text = RAW.has(oid.slice(oid.lastIndexOf(".") + 1))
      ? new TextDecoder("utf-8", { fatal: false }).decode(value)
      : derString(value);
    if (text !== undefined) out[name] = text;
  }
  return out;
}
