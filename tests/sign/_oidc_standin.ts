// A minimal OIDC provider (authorization code with PKCE S256) on 127.0.0.1
// and a stand-in browser, for the interactive sign-in tests
// (tests/sign/oidc_interactive_test.ts) and the CLI's keyless sign
// (tests/plugins/cli_usage_test.ts).
import assert from "node:assert/strict";

const enc = new TextEncoder();

export function b64url(bytes: Uint8Array): string {
  let s = "";
  for (const b of bytes) s += String.fromCharCode(b);
  return btoa(s).replaceAll("+", "-").replaceAll("/", "_").replace(/=+$/, "");
}

export async function s256(verifier: string): Promise<string> {
  return b64url(new Uint8Array(await crypto.subtle.digest("SHA-256", enc.encode(verifier))));
}

/** An unsigned JWT with these claims (the flow does not verify signatures; Fulcio does). */
export function jwt(claims: Record<string, unknown>): string {
  const part = (v: unknown) => b64url(enc.encode(JSON.stringify(v)));
  return `${part({ alg: "RS256", typ: "JWT" })}.${part(claims)}.${b64url(enc.encode("sig"))}`;
}

export interface StandInOptions {
  /** Answer the authorization request with this `error` instead of a code. */
  deny?: { error: string; description: string };
  /** The nonce claim: the one sent (default), another, or none. */
  nonce?: "echo" | "other" | "none";
  /** The aud claim (default "sigstore"). */
  aud?: unknown;
  /** Replaces the discovery document. */
  discovery?: (issuer: string) => unknown;
}

export interface Grant {
  challenge: string;
  redirectURI: string;
  clientId: string;
  nonce: string;
}

export interface StandIn {
  issuer: string;
  /** Every authorization request URL seen. */
  authorizeRequests: URL[];
  /** Every token request form seen. */
  tokenRequests: URLSearchParams[];
  /** Why the token endpoint refused, per refusal. */
  refusals: string[];
  /** Every ID token issued. */
  issued: string[];
  close(): Promise<void>;
}

/** A minimal OIDC provider (authorization code + PKCE S256) on 127.0.0.1. */
export function standIn(opts: StandInOptions = {}): Promise<StandIn> {
  const grants = new Map<string, Grant>();
  const authorizeRequests: URL[] = [];
  const tokenRequests: URLSearchParams[] = [];
  const refusals: string[] = [];
  const issued: string[] = [];
  let issuer = "";
  const refuse = (why: string, error = "invalid_grant") => {
    refusals.push(why);
    return Response.json({ error, error_description: why }, { status: 400 });
  };
  return new Promise((resolve) => {
    const server = Deno.serve({
      hostname: "127.0.0.1",
      port: 0,
      onListen: ({ port }) => {
        issuer = `http://127.0.0.1:${port}/auth`;
        resolve({
          issuer,
          authorizeRequests,
          tokenRequests,
          refusals,
          issued,
          close: () => server.shutdown(),
        });
      },
    }, async (req) => {
      const url = new URL(req.url);
      if (req.method === "GET" && url.pathname === "/auth/.well-known/openid-configuration") {
        return Response.json(
          opts.discovery?.(issuer) ?? {
            issuer,
            authorization_endpoint: `${issuer}/authorize`,
            token_endpoint: `${issuer}/token`,
            code_challenge_methods_supported: ["S256", "plain"],
            scopes_supported: ["openid", "email"],
          },
        );
      }
      if (req.method === "GET" && url.pathname === "/auth/authorize") {
        authorizeRequests.push(url);
        const p = url.searchParams;
        const redirect = new URL(p.get("redirect_uri") ?? "");
        const state = p.get("state") ?? "";
        if (opts.deny) {
          redirect.searchParams.set("error", opts.deny.error);
          redirect.searchParams.set("error_description", opts.deny.description);
          redirect.searchParams.set("state", state);
          return Response.redirect(redirect, 302);
        }
        const code = crypto.randomUUID();
        grants.set(code, {
          challenge: p.get("code_challenge") ?? "",
          redirectURI: p.get("redirect_uri") ?? "",
          clientId: p.get("client_id") ?? "",
          nonce: p.get("nonce") ?? "",
        });
        redirect.searchParams.set("code", code);
        redirect.searchParams.set("state", state);
        return Response.redirect(redirect, 302);
      }
      if (req.method === "POST" && url.pathname === "/auth/token") {
        assert.equal(req.headers.get("content-type"), "application/x-www-form-urlencoded");
        const form = new URLSearchParams(await req.text());
        tokenRequests.push(form);
        if (form.get("grant_type") !== "authorization_code") {
          return refuse("grant_type", "unsupported_grant_type");
        }
        const grant = grants.get(form.get("code") ?? "");
        if (grant === undefined) return refuse("unknown code");
        grants.delete(form.get("code")!); // single use
        if (form.get("redirect_uri") !== grant.redirectURI) return refuse("redirect_uri differs");
        if (form.get("client_id") !== grant.clientId) return refuse("client_id differs");
        if (await s256(form.get("code_verifier") ?? "") !== grant.challenge) {
          return refuse("PKCE verification failed");
        }
        const claims: Record<string, unknown> = {
          iss: issuer,
          sub: "1234",
          aud: "aud" in opts ? opts.aud : "sigstore",
          email: "alice@example.com",
          email_verified: true,
          iat: Math.floor(Date.now() / 1000),
          exp: Math.floor(Date.now() / 1000) + 60,
        };
        if (opts.nonce === "other") claims.nonce = "not-the-nonce";
        else if (opts.nonce !== "none") claims.nonce = grant.nonce;
        const idToken = jwt(claims);
        issued.push(idToken);
        return Response.json({ access_token: idToken, token_type: "bearer", id_token: idToken });
      }
      return new Response("not found", { status: 404 });
    });
  });
}

export interface Visit {
  status: number;
  body: string;
}

export interface BrowserOptions {
  /** Rewrites the authorization URL before it is requested. */
  authorize?: (url: URL) => void;
  /** Rewrites the callback URL before it is requested. */
  callback?: (url: URL) => void;
  /** Paths requested on the loopback server before the callback. */
  before?: string[];
}

/**
 * A stand-in browser: requests the authorization URL, follows the redirect to
 * the loopback callback by hand (on 127.0.0.1, which `localhost` resolves to).
 */
export function browser(options: BrowserOptions = {}) {
  const urls: URL[] = [];
  const visits: Promise<Visit[]>[] = [];
  const openBrowser = (raw: string) => {
    const run = async (): Promise<Visit[]> => {
      const url = new URL(raw);
      urls.push(url);
      options.authorize?.(url);
      const r = await fetch(url, { redirect: "manual" });
      await r.body?.cancel();
      assert.equal(r.status, 302);
      const location = new URL(r.headers.get("location")!);
      assert.equal(location.hostname, "localhost");
      location.hostname = "127.0.0.1";
      const out: Visit[] = [];
      for (const path of options.before ?? []) {
        const w = await fetch(new URL(path, location));
        out.push({ status: w.status, body: await w.text() });
      }
      options.callback?.(location);
      const c = await fetch(location);
      out.push({ status: c.status, body: await c.text() });
      return out;
    };
    const visit = run();
    visit.catch(() => {}); // Rethrown where signIn awaits it.
    visits.push(visit);
  };
  return { openBrowser, urls, visits };
}

/** `promise`, or a failure if it takes longer than `ms` (a hang fails instead of stalling the run). */
export async function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    return await Promise.race([
      promise,
      new Promise<never>((_, reject) =>
        timer = setTimeout(() => reject(new Error(`${what} took over ${ms} ms`)), ms)
      ),
    ]);
  } finally {
    clearTimeout(timer);
  }
}
