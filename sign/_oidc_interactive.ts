/**
 * The interactive browser sign-in that gets an OIDC identity token for
 * Sigstore keyless signing on a laptop, as `cosign sign` and
 * `sigstore-python` (behind `model_signing`) do: OIDC discovery, a loopback
 * HTTP server on `127.0.0.1` for the redirect, an authorization-code request
 * with PKCE (S256), `state` and `nonce`, then the code exchanged at the token
 * endpoint for an ID token. The token is not verified here (Fulcio verifies
 * it); its `nonce` and `aud` are checked so a token from another sign-in is
 * refused.
 *
 * Runs under Deno (needs `--allow-net=127.0.0.1` and the issuer's host, and
 * `--allow-run` for the default browser opener) and Node 20+.
 *
 * @module
 */

import { spawn } from "node:child_process";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import process from "node:process";
import { OidcError } from "./errors.ts";
export { OidcError, type OidcErrorCode } from "./errors.ts";

/** The public-good Sigstore OIDC issuer (a Dex federating GitHub, Google and Microsoft). */
export const DEFAULT_OIDC_ISSUER = "https://oauth2.sigstore.dev/auth";
/** The public client the public-good Sigstore issuer knows. */
export const DEFAULT_OIDC_CLIENT_ID = "sigstore";

/** The path of the loopback redirect URI, as cosign and sigstore-python use. */
const CALLBACK_PATH = "/auth/callback";
/** Largest discovery document read. */
const MAX_DISCOVERY_BYTES = 256 * 1024;
/** Largest token endpoint answer read. */
const MAX_TOKEN_BYTES = 1024 * 1024;
/** Largest callback request target (path and query) accepted. */
const MAX_CALLBACK_CHARS = 8 * 1024;
/** How long closing waits for a response still being written before cutting connections. */
const CLOSE_GRACE_MS = 2_000;
/** Longest delay `setTimeout` honours. */
const MAX_TIMEOUT_MS = 2 ** 31 - 1;

/** Options of {@linkcode interactiveIdentityToken}. */
export interface InteractiveTokenOptions {
  /**
   * The OIDC issuer; its discovery document is read from
   * `${issuer}/.well-known/openid-configuration`. Must be `https`, or `http`
   * on `localhost`, `127.0.0.1` or `[::1]`.
   * @default {"https://oauth2.sigstore.dev/auth"}
   */
  issuer?: string;
  /**
   * The OAuth client; also the audience the ID token must carry.
   * @default {"sigstore"}
   */
  clientId?: string;
  /**
   * The client secret, sent to the token endpoint; empty for a public client.
   * @default {""}
   */
  clientSecret?: string;
  /**
   * Opens the authorization URL in a browser. Defaults to `open` (macOS),
   * `rundll32 url.dll,FileProtocolHandler` (Windows) or `xdg-open`; if it
   * throws or rejects, the user opens the printed URL themselves. `false`:
   * only print the URL (a remote shell, a machine without a browser).
   */
  openBrowser?: ((url: string) => void | Promise<void>) | false;
  /**
   * Where to tell the user the authorization URL, one line per call.
   * @default {console.error}
   */
  print?: (line: string) => void;
  /**
   * How long the whole sign-in (discovery, browser, token exchange) may take.
   * @default {300000}
   */
  timeoutMs?: number;
  /** The `fetch` used for discovery and the token endpoint (defaults to the global one). */
  fetch?: typeof fetch;
  /** Aborts the sign-in; it then rejects with the signal's reason. */
  signal?: AbortSignal;
}

/** The endpoints of the discovery document this flow uses. */
interface Discovery {
  authorizationEndpoint: URL;
  tokenEndpoint: URL;
}

/** Where the flow is, for a timeout message that says what did not answer. */
type Stage = "discovery" | "browser" | "token";

/**
 * Signs the user in through their browser and returns an OIDC identity token
 * (a JWT) for Sigstore keyless signing: the flow `cosign sign` and
 * `sigstore-python` run on a laptop.
 *
 * It reads the issuer's discovery document, listens on `127.0.0.1` (an
 * ephemeral port) for the redirect `http://localhost:<port>/auth/callback`,
 * prints the authorization URL (response type `code`, scope
 * `openid email`, PKCE S256, random `state` and `nonce`) and tries to open
 * it in a browser. When the browser comes back with a code and the right
 * `state`, it exchanges the code (with the PKCE verifier) at the token
 * endpoint, checks the ID token's `nonce` and `aud` (its signature is left
 * to Fulcio), tells the browser the outcome and returns the token. Requests
 * to other paths get 404 and the flow keeps waiting. The loopback server is
 * closed before the promise settles, whatever the outcome.
 *
 * @example Signing in to the public-good Sigstore (opens a browser)
 * ```ts ignore
 * import { interactiveIdentityToken } from "./_oidc_interactive.ts";
 *
 * const identityToken = await interactiveIdentityToken({ timeoutMs: 120_000 });
 * ```
 *
 * @param options Issuer, client, browser opener, output, timeout, `fetch`
 * and abort signal; all optional.
 * @returns The raw ID token (`header.payload.signature`).
 * @throws {OidcError} With `code` `"oidc-discovery"` (unusable issuer or
 * discovery document), `"oidc-callback"` (the loopback server cannot start,
 * or a malformed callback), `"oidc-state"` (the callback's `state` is not
 * ours; the browser gets 400), `"oidc-denied"` (the provider returned an
 * `error`, e.g. `access_denied`), `"oidc-token"` (the token endpoint refused,
 * or its answer has no usable `id_token`, or the token's `aud` lacks the
 * client), `"oidc-nonce"` (the token's `nonce` is not ours) or
 * `"oidc-timeout"` (not done within `timeoutMs`).
 * @throws {TypeError} An option has the wrong type or range.
 * @throws The signal's reason, when `options.signal` aborts.
 */
export async function interactiveIdentityToken(
  options: InteractiveTokenOptions = {},
): Promise<string> {
  const issuer = parseIssuer(options.issuer ?? DEFAULT_OIDC_ISSUER);
  const clientId = options.clientId ?? DEFAULT_OIDC_CLIENT_ID;
  if (typeof clientId !== "string" || clientId === "") {
    throw new TypeError("Cannot sign in to Sigstore: options.clientId must be a non-empty string");
  }
  const clientSecret = options.clientSecret ?? "";
  if (typeof clientSecret !== "string") {
    throw new TypeError("Cannot sign in to Sigstore: options.clientSecret must be a string");
  }
  const timeoutMs = options.timeoutMs ?? 300_000;
  if (typeof timeoutMs !== "number" || !(timeoutMs > 0) || timeoutMs > MAX_TIMEOUT_MS) {
    throw new TypeError(
      `Cannot sign in to Sigstore: options.timeoutMs must be a number of milliseconds from 1 to ${MAX_TIMEOUT_MS}, found ${
        String(timeoutMs)
      }`,
    );
  }
  for (const name of ["openBrowser", "print", "fetch"] as const) {
    if (name === "openBrowser" && options.openBrowser === false) continue;
    if (options[name] !== undefined && typeof options[name] !== "function") {
      throw new TypeError(`Cannot sign in to Sigstore: options.${name} must be a function`);
    }
  }
  const fetchFn = options.fetch ?? globalThis.fetch;
  const print = options.print ?? ((line: string) => console.error(line));
  const openBrowser = options.openBrowser ?? defaultOpenBrowser;
  options.signal?.throwIfAborted();

  // One signal for the whole flow: the caller's abort or our timeout.
  const controller = new AbortController();
  let stage: Stage = "discovery";
  let redirectURI = "";
  const timer = setTimeout(() => {
    const seconds = Math.round(timeoutMs / 100) / 10;
    controller.abort(
      new OidcError(
        "oidc-timeout",
        stage === "discovery"
          ? `the OIDC discovery at ${issuer.href} did not answer within ${seconds} s; check the issuer URL and the network, or raise timeoutMs`
          : stage === "browser"
          ? `the sign-in was not completed in the browser within ${seconds} s (nothing came back to ${redirectURI}); run again and finish signing in, or raise timeoutMs`
          : `the token endpoint did not answer within ${seconds} s; try again, or raise timeoutMs`,
      ),
    );
  }, timeoutMs);
  const onAbort = () => controller.abort(options.signal?.reason);
  options.signal?.addEventListener("abort", onAbort, { once: true });
  const signal = controller.signal;
  try {
    const discovery = await discover(issuer, fetchFn, signal);
    stage = "browser";
    const verifier = randomToken(48);
    const challenge = base64url(
      new Uint8Array(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(verifier))),
    );
    const state = randomToken(32);
    const nonce = randomToken(32);

    let settle!: { resolve: (token: string) => void; reject: (e: unknown) => void };
    const outcome = new Promise<string>((resolve, reject) => (settle = { resolve, reject }));
    let busy = false;
    let done = false;
    const loopback = await startLoopback((req, res) => {
      const target = req.url ?? "/";
      const query = target.indexOf("?");
      const path = query < 0 ? target : target.slice(0, query);
      if (path !== CALLBACK_PATH) return answer(res, 404, page("Not found", "Nothing here."));
      if (req.method !== "GET") {
        res.setHeader("Allow", "GET");
        return answer(res, 405, page("Method not allowed", "Only GET is answered here."));
      }
      if (busy || done) {
        return answer(
          res,
          409,
          page("Already handled", "This sign-in has already received its answer."),
        );
      }
      busy = true;
      const finish = async () => {
        if (target.length > MAX_CALLBACK_CHARS) {
          throw new OidcError(
            "oidc-callback",
            `the browser came back with a ${target.length}-character callback URL, expected at most ${MAX_CALLBACK_CHARS}`,
          );
        }
        const params = new URLSearchParams(query < 0 ? "" : target.slice(query + 1));
        const code = readCallback(params, state);
        stage = "token";
        const idToken = await exchange(discovery.tokenEndpoint, fetchFn, signal, {
          grant_type: "authorization_code",
          code,
          redirect_uri: redirectURI,
          code_verifier: verifier,
          client_id: clientId,
          client_secret: clientSecret,
        });
        checkIdToken(idToken, nonce, clientId);
        return idToken;
      };
      finish().then(
        (token) => {
          done = true;
          answer(
            res,
            200,
            page("Signed in", "You are signed in to Sigstore; you can close this window."),
          );
          settle.resolve(token);
        },
        (e: unknown) => {
          done = true;
          const why = signal.aborted && e === signal.reason && !(e instanceof OidcError)
            ? "the sign-in was cancelled"
            : e instanceof Error
            ? e.message
            : String(e);
          // The browser's request was wrong (400), or what came after it failed (502).
          const code: string = e instanceof OidcError ? e.code : "";
          const status = ["oidc-state", "oidc-callback", "oidc-denied"].includes(code) ? 400 : 502;
          answer(res, status, page("Sign-in failed", `${why}. Return to the terminal.`));
          settle.reject(e);
        },
      );
    });
    try {
      redirectURI = `http://localhost:${loopback.port}${CALLBACK_PATH}`;
      const url = new URL(discovery.authorizationEndpoint);
      const params: Record<string, string> = {
        response_type: "code",
        client_id: clientId,
        redirect_uri: redirectURI,
        scope: "openid email",
        code_challenge: challenge,
        code_challenge_method: "S256",
        state,
        nonce,
      };
      for (const [k, v] of Object.entries(params)) url.searchParams.set(k, v);
      const authURL = url.href;
      if (openBrowser === false) {
        print("Sign in to Sigstore: open this URL in a browser on this machine:");
        print(authURL);
        return await raceAbort(outcome, signal);
      }
      print("Sign in to Sigstore in your browser. If it does not open, go to:");
      print(authURL);
      Promise.resolve()
        .then(() => openBrowser(authURL))
        .catch((e: unknown) => {
          if (!done && !signal.aborted) {
            print(
              `Could not open a browser (${
                e instanceof Error ? e.message : String(e)
              }); open the URL above yourself.`,
            );
          }
        });
      return await raceAbort(outcome, signal);
    } finally {
      done = true;
      await loopback.close();
    }
  } finally {
    clearTimeout(timer);
    options.signal?.removeEventListener("abort", onAbort);
  }
}

/** The issuer as a URL: `https`, or `http` on a loopback host; no query or fragment. */
function parseIssuer(issuer: unknown): URL {
  if (typeof issuer !== "string") {
    throw new TypeError("Cannot sign in to Sigstore: options.issuer must be a string");
  }
  let url: URL;
  try {
    url = new URL(issuer);
  } catch (cause) {
    throw new OidcError("oidc-discovery", `the issuer is not a URL (${issuer})`, { cause });
  }
  if (!secureOrLoopback(url)) {
    throw new OidcError(
      "oidc-discovery",
      `the issuer must be an https URL (or http on localhost), found ${url.protocol}//${url.host}`,
    );
  }
  if (url.search !== "" || url.hash !== "" || url.username !== "" || url.password !== "") {
    throw new OidcError(
      "oidc-discovery",
      `the issuer URL must not have a query, fragment or credentials, found ${issuer}`,
    );
  }
  url.pathname = url.pathname.replace(/\/+$/, "");
  return url;
}

/** Whether `url` is https, or http on a loopback host. */
function secureOrLoopback(url: URL): boolean {
  return url.protocol === "https:" || (url.protocol === "http:" && isLoopback(url.hostname));
}

function isLoopback(hostname: string): boolean {
  return hostname === "localhost" || hostname === "127.0.0.1" || hostname === "[::1]";
}

/** Reads the discovery document and checks the endpoints this flow uses. */
async function discover(
  issuer: URL,
  fetchFn: typeof fetch,
  signal: AbortSignal,
): Promise<Discovery> {
  const where = `${issuer.href.replace(/\/$/, "")}/.well-known/openid-configuration`;
  let doc: unknown;
  try {
    const response = await raceAbort(
      fetchFn(where, { headers: { Accept: "application/json" }, signal }),
      signal,
    );
    if (response.url !== "" && URL.canParse(response.url)) {
      const final = new URL(response.url);
      if (!secureOrLoopback(final) || final.protocol !== issuer.protocol) {
        await response.body?.cancel().catch(() => {});
        throw new OidcError(
          "oidc-discovery",
          `the discovery request at ${where} was redirected to ${final.protocol}//${final.host}, expected ${issuer.protocol}`,
        );
      }
    }
    if (response.status !== 200) {
      await response.body?.cancel().catch(() => {});
      throw new OidcError(
        "oidc-discovery",
        `the discovery document at ${where} answered HTTP ${response.status}, expected 200; check the issuer URL`,
      );
    }
    const bytes = await readBounded(response, MAX_DISCOVERY_BYTES, signal, () =>
      new OidcError(
        "oidc-discovery",
        `the discovery document at ${where} is larger than ${MAX_DISCOVERY_BYTES} bytes`,
      ));
    try {
      doc = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(bytes));
    } catch (cause) {
      throw new OidcError(
        "oidc-discovery",
        `the discovery document at ${where} is not JSON`,
        { cause },
      );
    }
  } catch (e) {
    if (signal.aborted) throw signal.reason;
    if (e instanceof OidcError) throw e;
    throw new OidcError(
      "oidc-discovery",
      `could not read the discovery document at ${where} (${
        e instanceof Error ? e.message : String(e)
      }); check the issuer URL and the network`,
      { cause: e },
    );
  }
  if (typeof doc !== "object" || doc === null || Array.isArray(doc)) {
    throw new OidcError(
      "oidc-discovery",
      `the discovery document at ${where} is not a JSON object`,
    );
  }
  const d = doc as Record<string, unknown>;
  if (
    typeof d.issuer === "string" && d.issuer.replace(/\/+$/, "") !== issuer.href.replace(/\/+$/, "")
  ) {
    throw new OidcError(
      "oidc-discovery",
      `the discovery document at ${where} names the issuer ${
        clip(d.issuer)
      }, expected ${issuer.href}`,
    );
  }
  const methods = d.code_challenge_methods_supported;
  if (Array.isArray(methods) && !methods.includes("S256")) {
    throw new OidcError(
      "oidc-discovery",
      `the issuer does not support PKCE with S256 (code_challenge_methods_supported is ${
        clip(JSON.stringify(methods))
      })`,
    );
  }
  const endpoint = (name: string): URL => {
    const value = d[name];
    if (typeof value !== "string" || value === "") {
      throw new OidcError(
        "oidc-discovery",
        `the discovery document at ${where} has no ${name} string, found ${
          value === undefined ? "none" : typeof value
        }`,
      );
    }
    let url: URL;
    try {
      url = new URL(value);
    } catch (cause) {
      throw new OidcError("oidc-discovery", `the ${name} is not a URL (${clip(value)})`, {
        cause,
      });
    }
    if (!secureOrLoopback(url) || url.protocol !== issuer.protocol) {
      throw new OidcError(
        "oidc-discovery",
        `the ${name} must use ${issuer.protocol} like the issuer${
          issuer.protocol === "http:" ? " and be on a loopback host" : ""
        }, found ${url.protocol}//${url.host}`,
      );
    }
    if (url.hash !== "" || url.username !== "" || url.password !== "") {
      throw new OidcError(
        "oidc-discovery",
        `the ${name} must not have a fragment or credentials (${clip(value)})`,
      );
    }
    return url;
  };
  return {
    authorizationEndpoint: endpoint("authorization_endpoint"),
    tokenEndpoint: endpoint("token_endpoint"),
  };
}

/** The authorization code from the callback's query, once `state` and `error` are checked. */
function readCallback(params: URLSearchParams, state: string): string {
  const states = params.getAll("state");
  const stateOk = states.length === 1 && states[0] === state;
  const error = params.get("error");
  if (error !== null) {
    // A denial with a wrong state is a forged redirect, not the provider's word.
    if (states.length > 0 && !stateOk) throw stateError(states);
    const description = params.get("error_description");
    throw new OidcError(
      "oidc-denied",
      `the identity provider refused the sign-in: ${clip(error)}${
        description === null ? "" : ` (${clip(description)})`
      }`,
    );
  }
  if (!stateOk) throw stateError(states);
  const codes = params.getAll("code");
  if (codes.length !== 1 || codes[0] === "") {
    throw new OidcError(
      "oidc-callback",
      `the browser came back without an authorization code (expected one \`code\` parameter, found ${codes.length})`,
    );
  }
  return codes[0]!;
}

function stateError(states: string[]): OidcError {
  return new OidcError(
    "oidc-state",
    `the browser came back with ${
      states.length === 0
        ? "no state"
        : states.length > 1
        ? `${states.length} state parameters`
        : "a state this sign-in did not send"
    }, expected the one sent to the identity provider; the redirect is stale or forged, so the sign-in was abandoned`,
  );
}

/** Exchanges the code at the token endpoint; returns the `id_token`. */
async function exchange(
  endpoint: URL,
  fetchFn: typeof fetch,
  signal: AbortSignal,
  form: Record<string, string>,
): Promise<string> {
  let status: number;
  let body: unknown;
  try {
    const response = await raceAbort(
      fetchFn(endpoint.href, {
        method: "POST",
        headers: {
          "Content-Type": "application/x-www-form-urlencoded",
          Accept: "application/json",
        },
        body: new URLSearchParams(form).toString(),
        redirect: "manual",
        signal,
      }),
      signal,
    );
    status = response.status;
    const bytes = await readBounded(response, MAX_TOKEN_BYTES, signal, () =>
      new OidcError(
        "oidc-token",
        `the token endpoint's answer is larger than ${MAX_TOKEN_BYTES} bytes`,
      ));
    try {
      body = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(bytes));
    } catch {
      body = undefined;
    }
  } catch (e) {
    if (signal.aborted) throw signal.reason;
    if (e instanceof OidcError) throw e;
    throw new OidcError(
      "oidc-token",
      `could not reach the token endpoint ${endpoint.origin}${endpoint.pathname} (${
        e instanceof Error ? e.message : String(e)
      })`,
      { cause: e },
    );
  }
  const fields = typeof body === "object" && body !== null && !Array.isArray(body)
    ? body as Record<string, unknown>
    : undefined;
  const providerSays = () => {
    const error = fields?.error;
    const description = fields?.error_description;
    return typeof error === "string"
      ? `: ${clip(error)}${typeof description === "string" ? ` (${clip(description)})` : ""}`
      : "";
  };
  if (status !== 200) {
    throw new OidcError(
      "oidc-token",
      `the token endpoint refused the authorization code with HTTP ${status}, expected 200${providerSays()}`,
    );
  }
  if (fields === undefined) {
    throw new OidcError("oidc-token", "the token endpoint's answer is not a JSON object");
  }
  if (fields.error !== undefined) {
    throw new OidcError("oidc-token", `the token endpoint answered an error${providerSays()}`);
  }
  const idToken = fields.id_token;
  if (typeof idToken !== "string" || idToken === "") {
    throw new OidcError(
      "oidc-token",
      `the token endpoint's answer has no id_token string (found ${
        idToken === undefined ? "none" : typeof idToken
      }); the issuer must be an OpenID Connect provider and the scope include openid`,
    );
  }
  return idToken;
}

/** Checks the ID token's `nonce` and `aud`, without verifying its signature. */
function checkIdToken(idToken: string, nonce: string, clientId: string): void {
  const parts = idToken.split(".");
  const payload = parts.length === 3 ? decodeJSON(parts[1]!) : undefined;
  if (typeof payload !== "object" || payload === null || Array.isArray(payload)) {
    throw new OidcError(
      "oidc-token",
      `the id_token is not a signed JWT with a JSON payload (${parts.length} dot-separated parts, expected 3)`,
    );
  }
  const claims = payload as Record<string, unknown>;
  if (claims.nonce !== nonce) {
    throw new OidcError(
      "oidc-nonce",
      `the ID token ${
        claims.nonce === undefined ? "has no nonce" : "has a nonce this sign-in did not send"
      }, expected the one sent to the identity provider; the token belongs to another sign-in`,
    );
  }
  const aud = claims.aud;
  const audiences = typeof aud === "string" ? [aud] : Array.isArray(aud) ? aud : [];
  if (!audiences.includes(clientId)) {
    throw new OidcError(
      "oidc-token",
      `the ID token is for the audience ${
        aud === undefined ? "(none)" : clip(JSON.stringify(aud))
      }, expected it to include ${JSON.stringify(clientId)}`,
    );
  }
}

function decodeJSON(segment: string): unknown {
  if (!/^[A-Za-z0-9_-]*$/.test(segment)) return undefined;
  try {
    const binary = atob(
      segment.replaceAll("-", "+").replaceAll("_", "/") + "===".slice((segment.length + 3) % 4),
    );
    const bytes = Uint8Array.from(binary, (c) => c.charCodeAt(0));
    return JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(bytes));
  } catch {
    return undefined;
  }
}

/** Reads a response body, refusing more than `limit` bytes. */
async function readBounded(
  response: Response,
  limit: number,
  signal: AbortSignal,
  tooLarge: () => Error,
): Promise<Uint8Array> {
  const declared = Number(response.headers.get("content-length") ?? "0");
  if (declared > limit) {
    await response.body?.cancel().catch(() => {});
    throw tooLarge();
  }
  if (response.body === null) return new Uint8Array(0);
  const reader = response.body.getReader();
  const chunks: Uint8Array[] = [];
  let total = 0;
  try {
    for (;;) {
      const { done, value } = await raceAbort(reader.read(), signal);
      if (done) break;
      total += value.byteLength;
      if (total > limit) throw tooLarge();
      chunks.push(value);
    }
  } catch (e) {
    await reader.cancel().catch(() => {});
    throw e;
  } finally {
    reader.releaseLock();
  }
  const out = new Uint8Array(total);
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.byteLength;
  }
  return out;
}

/** `promise`, or a rejection with the signal's reason once it aborts. */
function raceAbort<T>(promise: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) {
    promise.catch(() => {});
    return Promise.reject(signal.reason);
  }
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener("abort", onAbort, { once: true });
    promise.then(
      (v) => {
        signal.removeEventListener("abort", onAbort);
        resolve(v);
      },
      (e) => {
        signal.removeEventListener("abort", onAbort);
        reject(e);
      },
    );
  });
}

/** The loopback server: its port, and a close that leaves no connection open. */
interface Loopback {
  port: number;
  close(): Promise<void>;
}

/** A Deno without permission to listen on 127.0.0.1 (undefined elsewhere, or when allowed). */
async function denoListenRefused(): Promise<string | undefined> {
  type State = { state: string };
  type Permissions = {
    query(d: { name: "net"; host: string }): Promise<State>;
    request(d: { name: "net"; host: string }): Promise<State>;
  };
  const permissions = (globalThis as { Deno?: { permissions?: Permissions } }).Deno?.permissions;
  if (permissions === undefined) return undefined;
  // What listening on an ephemeral port asks for.
  const descriptor = { name: "net", host: "127.0.0.1:0" } as const;
  let { state } = await permissions.query(descriptor);
  // Prompts on a terminal, as the listen would; refuses without one.
  if (state === "prompt") ({ state } = await permissions.request(descriptor));
  return state === "granted"
    ? undefined
    : "net access to 127.0.0.1 is not allowed; run with --allow-net=127.0.0.1 (and the issuer's host)";
}

async function startLoopback(
  handler: (req: IncomingMessage, res: ServerResponse) => void,
): Promise<Loopback> {
  // Deno's node:http throws a missing net permission from a later tick, out of
  // reach of the 'error' event: ask first.
  const refused = await denoListenRefused();
  if (refused !== undefined) {
    throw new OidcError(
      "oidc-callback",
      `could not listen on 127.0.0.1 for the browser's redirect: ${refused}`,
    );
  }
  const pending = new Set<ServerResponse>();
  const server = createServer((req, res) => {
    pending.add(res);
    const forget = () => pending.delete(res);
    res.once("finish", forget);
    res.once("close", forget);
    try {
      handler(req, res);
    } catch {
      answer(res, 500, page("Error", "The sign-in helper failed on this request."));
    }
  });
  try {
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(0, "127.0.0.1", () => {
        server.off("error", reject);
        resolve();
      });
    });
  } catch (cause) {
    const why = cause instanceof Error ? cause.message : String(cause);
    const deno = typeof (globalThis as { Deno?: unknown }).Deno !== "undefined";
    throw new OidcError(
      "oidc-callback",
      `could not listen on 127.0.0.1 for the browser's redirect (${why})${
        deno ? "; run with --allow-net=127.0.0.1" : ""
      }`,
      { cause },
    );
  }
  server.on("error", () => {}); // Errors after listening concern one connection, not the flow.
  const address = server.address();
  const port = typeof address === "object" && address !== null ? address.port : 0;
  let closing: Promise<void> | undefined;
  return {
    port,
    close() {
      closing ??= (async () => {
        const closed = new Promise<void>((resolve) => server.close(() => resolve()));
        // Let responses being written (the outcome page) reach the browser, within a bound.
        if (pending.size > 0) {
          let timer: ReturnType<typeof setTimeout> | undefined;
          await Promise.race([
            Promise.all(
              [...pending].map((res) =>
                new Promise<void>((resolve) => {
                  res.once("finish", resolve);
                  res.once("close", resolve);
                })
              ),
            ),
            new Promise<void>((resolve) => (timer = setTimeout(resolve, CLOSE_GRACE_MS))),
          ]);
          clearTimeout(timer);
        }
        // Keep-alive and preconnected sockets would otherwise hold the port open.
        server.closeAllConnections();
        await closed;
      })();
      return closing;
    },
  };
}

/** Sends a small HTML page that closes the connection. */
function answer(res: ServerResponse, status: number, html: string): void {
  if (res.headersSent || res.writableEnded) return;
  const body = new TextEncoder().encode(html);
  res.writeHead(status, {
    "Content-Type": "text/html; charset=utf-8",
    "Content-Length": String(body.byteLength),
    "Cache-Control": "no-store",
    "Content-Security-Policy": "default-src 'none'",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    Connection: "close",
  });
  res.end(body);
}

function page(title: string, text: string): string {
  return `<!DOCTYPE html><html><head><meta charset="utf-8"><title>Sigstore sign-in: ${
    escapeHTML(title)
  }</title></head><body><h1>${escapeHTML(title)}</h1><p>${escapeHTML(text)}</p></body></html>\n`;
}

function escapeHTML(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

/** A value from the network, safe to quote in a message: printable, at most 200 characters. */
function clip(text: string): string {
  // deno-lint-ignore no-control-regex
  const clean = text.replace(/[\u0000-\u001f\u007f-\u009f]/g, "?");
  return clean.length > 200 ? `${clean.slice(0, 200)}…` : clean;
}

function randomToken(bytes: number): string {
  return base64url(crypto.getRandomValues(new Uint8Array(bytes)));
}

function base64url(bytes: Uint8Array): string {
  let binary = "";
  for (const b of bytes) binary += String.fromCharCode(b);
  return btoa(binary).replaceAll("+", "-").replaceAll("/", "_").replace(/=+$/, "");
}

/**
 * Opens `url` with the platform's opener: `open` on macOS,
 * `rundll32 url.dll,FileProtocolHandler` on Windows (no `cmd` re-parsing of
 * the `&` and `%` in the URL), else `xdg-open`. Rejects when the opener cannot
 * be started or exits with a failure.
 */
function defaultOpenBrowser(url: string): Promise<void> {
  const [command, args]: [string, string[]] = process.platform === "darwin"
    ? ["open", [url]]
    : process.platform === "win32"
    ? ["rundll32", ["url.dll,FileProtocolHandler", url]]
    : ["xdg-open", [url]];
  return new Promise<void>((resolve, reject) => {
    try {
      const child = spawn(command, args, { stdio: "ignore", detached: true });
      child.once("error", (e) => reject(new Error(`${command}: ${e.message}`)));
      child.once("exit", (code, signal) =>
        code === 0 ? resolve() : reject(
          new Error(`${command} exited with ${code === null ? `signal ${signal}` : code}`),
        ));
      // Never keep the process alive for the opener (xdg-open may wait for the browser).
      child.unref();
    } catch (e) {
      reject(e);
    }
  });
}
