// The public-good Sigstore trusted root, embedded (from @sigstore/tuf's seeds),
// with no node: imports, for the WebCrypto keyless verifier in browsers.
import { decodeBase64 } from "./_dsse.ts";

const SEED_MIRROR = "https://tuf-repo-cdn.sigstore.dev";

/** The public-good `trusted_root.json`, parsed; a fresh object on every call. Offline. */
export async function publicGoodTrustedRootWeb(): Promise<unknown> {
  const seeds = (await import("@sigstore/tuf/seeds.json", { with: { type: "json" } })).default;
  const target = (seeds as Record<string, { targets?: Record<string, string> }>)[SEED_MIRROR]
    ?.targets?.["trusted_root.json"];
  const bytes = target === undefined ? undefined : decodeBase64(target);
  if (bytes === undefined) {
    throw new Error("Cannot load the public-good trusted root: not found in @sigstore/tuf seeds");
  }
  return JSON.parse(new TextDecoder("utf-8", { ignoreBOM: true }).decode(bytes));
}
