/**
 * Keyless signing with Sigstore: an ephemeral key certified by Fulcio for an
 * OIDC identity, the signature logged in Rekor.
 *
 * @module
 */

import type { InteractiveTokenOptions } from "./_oidc_interactive.ts";
import { Buffer } from "node:buffer";
import type { Witness } from "@sigstore/sign";
import type { Signer, SigstoreBundle } from "./types.ts";

/** The public-good Fulcio instance `sigstoreSigner` uses by default. */
export const DEFAULT_FULCIO_URL = "https://fulcio.sigstore.dev";
/** The public-good Rekor instance `sigstoreSigner` uses by default. */
export const DEFAULT_REKOR_URL = "https://rekor.sigstore.dev";

/** Options of {@linkcode sigstoreSigner}. */
export interface SigstoreSignerOptions {
  /**
   * The OIDC identity token (a JWT) to exchange for a signing certificate.
   * Defaults to the `SIGSTORE_ID_TOKEN` environment variable, then to the
   * GitHub Actions ambient token (audience `sigstore`).
   */
  identityToken?: string;
  /** Fulcio base URL; defaults to {@linkcode DEFAULT_FULCIO_URL}. */
  fulcioURL?: string;
  /** Rekor base URL; defaults to {@linkcode DEFAULT_REKOR_URL}. */
  rekorURL?: string;
  /**
   * RFC 3161 timestamp authority: a base URL (`/api/v1/timestamp` is
   * appended when it has no path) or the full endpoint, e.g.
   * `https://timestamp.sigstore.dev/api/v1/timestamp`. No timestamp is
   * requested when absent.
   */
  tsaURL?: string;
  /**
   * When no token is found (option, `SIGSTORE_ID_TOKEN`, GitHub Actions):
   * sign in in a browser instead, as `cosign` and `model_signing` do on a
   * laptop (OIDC authorization code with PKCE, redirected to a loopback
   * server on 127.0.0.1). `true` uses the public-good Sigstore issuer; an
   * object chooses the issuer, client, browser opener and timeout. Off by
   * default: a library never opens a browser unasked.
   * @default {false}
   */
  interactive?: boolean | InteractiveTokenOptions;
  /**
   * The `fetch` used to request the GitHub Actions OIDC token (defaults to
   * the global one). Fulcio, Rekor and the TSA are reached by
   * `@sigstore/sign`'s own HTTP client.
   */
  fetch?: typeof fetch;
}

const NO_TOKEN =
  "Cannot sign with Sigstore: no OIDC identity token found; pass options.identityToken, " +
  "set the SIGSTORE_ID_TOKEN environment variable, or run in GitHub Actions with the " +
  "`id-token: write` permission (ACTIONS_ID_TOKEN_REQUEST_URL and ACTIONS_ID_TOKEN_REQUEST_TOKEN)";

/** Names of variables a missing `--allow-env` kept from being read. */
const denied = new Set<string>();

/** Reads an environment variable; a missing `--allow-env` reads as unset (and is remembered). */
function env(name: string): string | undefined {
  try {
    // Deno.env where it exists (a missing --allow-env throws), else process.env.
    const g = globalThis as {
      Deno?: { env: { get(n: string): string | undefined } };
      process?: { env: Record<string, string | undefined> };
    };
    const value = g.Deno ? g.Deno.env.get(name) : g.process?.env[name];
    return value === "" ? undefined : value;
  } catch {
    denied.add(name);
    return undefined;
  }
}

async function githubActionsToken(
  requestURL: string,
  requestToken: string,
  fetchFn: typeof fetch,
): Promise<string> {
  let url: URL;
  try {
    url = new URL(requestURL);
  } catch (cause) {
    throw new TypeError(
      `Cannot get the GitHub Actions OIDC token: ACTIONS_ID_TOKEN_REQUEST_URL is not a URL (${requestURL})`,
      { cause },
    );
  }
  url.searchParams.set("audience", "sigstore");
  const response = await fetchFn(url, {
    headers: { Accept: "application/json", Authorization: `Bearer ${requestToken}` },
  });
  if (!response.ok) {
    await response.body?.cancel();
    throw new Error(
      `Cannot get the GitHub Actions OIDC token: the token service answered HTTP ${response.status}`,
    );
  }
  const body: unknown = await response.json().catch(() => undefined);
  const value = typeof body === "object" && body !== null
    ? (body as Record<string, unknown>).value
    : undefined;
  if (typeof value !== "string" || value === "") {
    throw new Error(
      "Cannot get the GitHub Actions OIDC token: the token service answer has no `value` string",
    );
  }
  return value;
}

async function resolveToken(options: SigstoreSignerOptions): Promise<string> {
  if (options.identityToken !== undefined) {
    if (typeof options.identityToken !== "string" || options.identityToken === "") {
      throw new TypeError("Cannot sign with Sigstore: options.identityToken is empty");
    }
    return options.identityToken;
  }
  denied.clear();
  const fromEnv = env("SIGSTORE_ID_TOKEN");
  if (fromEnv !== undefined) return fromEnv;
  const requestURL = env("ACTIONS_ID_TOKEN_REQUEST_URL");
  const requestToken = env("ACTIONS_ID_TOKEN_REQUEST_TOKEN");
  if (requestURL !== undefined && requestToken !== undefined) {
    return await githubActionsToken(requestURL, requestToken, options.fetch ?? fetch);
  }
  if (denied.size > 0) {
    // The variables may be set: say it is the permission that is missing
    // (before any browser sign-in, which they might have made unneeded).
    throw new TypeError(
      `Cannot sign with Sigstore: reading ${
        [...denied].join(", ")
      } needs permission (deno run --allow-env=${
        [...denied].join(",")
      }), or pass an identity token`,
    );
  }
  if (options.interactive) {
    // Loaded only here: node:http and the flow stay out of other signers.
    const { interactiveIdentityToken } = await import("./_oidc_interactive.ts");
    return await interactiveIdentityToken(
      options.interactive === true ? {} : options.interactive,
    );
  }
  throw new TypeError(NO_TOKEN);
}

/** One line from a `@sigstore/sign` error: its code, message and cause, the token redacted. */
function describe(error: unknown, token: string): string {
  let text: string;
  if (error instanceof Error) {
    const code = (error as { code?: unknown }).code;
    const inner = error.cause instanceof Error ? error.cause.message : "";
    const cause = inner !== "" && !error.message.includes(inner) ? ` (${inner})` : "";
    text = `${typeof code === "string" ? `${code}: ` : ""}${error.message}${cause}`;
  } else {
    text = String(error);
  }
  // @sigstore/sign quotes an unparsable token in full; never echo a credential.
  return text.replaceAll(token, "<identity token>");
}

/**
 * Creates a keyless Sigstore signer: on each `sign`, `@sigstore/sign`
 * generates an ephemeral P-256 key, exchanges the OIDC identity token for a
 * short-lived Fulcio certificate naming that identity, signs the DSSE
 * envelope, logs it in Rekor (a `dsse` 0.0.1 entry) and, when `tsaURL` is
 * given, gets an RFC 3161 timestamp. The result is a v0.3 bundle with
 * `verificationMaterial.certificate`, `tlogEntries` and
 * `timestampVerificationData`. The token comes from `options.identityToken`,
 * else the `SIGSTORE_ID_TOKEN` environment variable, else the GitHub Actions
 * ambient OIDC token, else (with `interactive`) a browser sign-in; it is
 * resolved at each `sign`, as tokens are short-lived.
 *
 * @example Signing in a GitHub Actions workflow (`id-token: write`)
 * ```ts ignore
 * import { sigstoreSigner } from "@safemodels/safemodels/sign";
 *
 * const signer = sigstoreSigner({ tsaURL: "https://timestamp.sigstore.dev" });
 * const bundle = await signer.sign(new TextEncoder().encode("{}"), "application/vnd.in-toto+json");
 * console.log(bundle.verificationMaterial.tlogEntries);
 * ```
 *
 * @param options Identity token, service URLs and the `fetch` for the
 * GitHub Actions token; all optional.
 * @returns A {@linkcode Signer}. Its `sign` rejects with a `TypeError`
 * naming the three token sources when no token is found, and with an
 * `Error` saying which step failed (Fulcio, Rekor, TSA, token service),
 * the original error as `cause`, when a service refuses or is unreachable.
 * @throws {TypeError} A service URL is not a valid URL.
 */
export function sigstoreSigner(options: SigstoreSignerOptions = {}): Signer {
  const urls = {
    fulcio: options.fulcioURL ?? DEFAULT_FULCIO_URL,
    rekor: options.rekorURL ?? DEFAULT_REKOR_URL,
    tsa: options.tsaURL,
  };
  for (const [name, url] of Object.entries(urls)) {
    if (url !== undefined && !URL.canParse(url)) {
      throw new TypeError(`Cannot create Sigstore signer: the ${name} URL is not a URL (${url})`);
    }
  }
  return {
    async sign(payload: Uint8Array, payloadType: string): Promise<SigstoreBundle> {
      if (!(payload instanceof Uint8Array)) {
        throw new TypeError(
          `Cannot sign: expected the payload as a Uint8Array, found ${typeof payload}`,
        );
      }
      if (typeof payloadType !== "string" || payloadType === "") {
        throw new TypeError("Cannot sign: expected a non-empty payload type");
      }
      const token = await resolveToken(options);
      // Loaded on first use: @sigstore/sign pulls in an HTTP stack that reads
      // the environment at import time, which verification never needs.
      const { DSSEBundleBuilder, FulcioSigner, RekorWitness, TSAWitness } = await import(
        "@sigstore/sign"
      );
      const { bundleToJSON } = await import("@sigstore/bundle");
      const witnesses: Witness[] = [new RekorWitness({ rekorBaseURL: urls.rekor })];
      if (urls.tsa !== undefined) witnesses.push(new TSAWitness({ tsaBaseURL: urls.tsa }));
      const builder = new DSSEBundleBuilder({
        signer: new FulcioSigner({
          fulcioBaseURL: urls.fulcio,
          identityProvider: { getToken: () => Promise.resolve(token) },
        }),
        witnesses,
      });
      let bundle;
      try {
        bundle = await builder.create({ data: Buffer.from(payload), type: payloadType });
      } catch (cause) {
        throw new Error(`Cannot sign with Sigstore: ${describe(cause, token)}`, { cause });
      }
      return bundleToJSON(bundle) as unknown as SigstoreBundle;
    },
  };
}
