// The interactive browser sign-in (sign/_oidc_interactive.ts) against a
// local OIDC stand-in on 127.0.0.1: discovery, an authorization endpoint that
// redirects to the loopback callback with a code and the state, and a token
// endpoint that checks the code, redirect_uri, client_id and PKCE verifier
// and returns an unsigned JWT. The "browser" is a fetch that follows the
// stand-in's redirect to the callback (on 127.0.0.1: what `localhost`
// resolves to), optionally tampering with it on the way.
import assert from "node:assert/strict";
import {
  interactiveIdentityToken,
  type InteractiveTokenOptions,
  OidcError,
} from "../../sign/_oidc_interactive.ts";
import { SignError } from "../../sign/errors.ts";

import { browser, s256, type StandIn, standIn, type Visit, within } from "./_oidc_standin.ts";

/** A response whose body is `total` bytes of spaces, in 64 KiB chunks. */
function oversized(total: number): Response {
  let left = total;
  return new Response(
    new ReadableStream({
      pull(c) {
        if (left <= 0) return c.close();
        const n = Math.min(left, 64 * 1024);
        left -= n;
        c.enqueue(new Uint8Array(n).fill(0x20));
      },
    }),
  );
}

/** Runs the flow against the stand-in; returns the outcome and what the browser saw. */
async function signIn(
  idp: StandIn,
  b: ReturnType<typeof browser>,
  extra: Partial<InteractiveTokenOptions> = {},
): Promise<{ token?: string; error?: unknown; lines: string[]; visits: Visit[] }> {
  const lines: string[] = [];
  let token: string | undefined;
  let error: unknown;
  // A "browser" that fails (an assertion on the redirect) ends the flow at once.
  const browserFailed = new AbortController();
  try {
    token = await within(
      interactiveIdentityToken({
        issuer: idp.issuer,
        openBrowser: (url) => {
          b.openBrowser(url);
          b.visits.at(-1)?.catch((e) => browserFailed.abort(e));
        },
        signal: browserFailed.signal,
        print: (l) => lines.push(l),
        timeoutMs: 10_000,
        ...extra,
      }),
      15_000,
      "the sign-in",
    );
  } catch (e) {
    error = e;
  }
  const visits = (await Promise.all(b.visits)).flat();
  return { ...(token === undefined ? {} : { token }), error, lines, visits };
}

function assertOidc(error: unknown, code: string, pattern?: RegExp): OidcError {
  assert.ok(error instanceof OidcError, `expected an OidcError, found ${String(error)}`);
  assert.ok(error instanceof SignError);
  assert.equal(error.code as string, code, error.message);
  if (pattern) assert.match(error.message, pattern);
  return error;
}

/** The loopback port the flow printed (from the redirect_uri of the authorization URL). */
function loopbackPort(lines: string[]): number {
  const auth = lines.find((l) => l.startsWith("http"));
  assert.ok(auth, `no URL printed: ${lines.join("\n")}`);
  return Number(new URL(new URL(auth).searchParams.get("redirect_uri")!).port);
}

async function assertClosed(port: number): Promise<void> {
  assert.ok(port > 0);
  await assert.rejects(
    Deno.connect({ hostname: "127.0.0.1", port }).then((c) => {
      c.close();
      throw new Error(`port ${port} still accepts connections`);
    }),
    (e: Error) => e.name === "ConnectionRefused",
  );
}

Deno.test("oidc: the happy path returns exactly the issued ID token; the request has every parameter", async () => {
  const idp = await standIn();
  try {
    const b = browser();
    const { token, error, lines, visits } = await signIn(idp, b);
    assert.equal(error, undefined);
    assert.equal(idp.issued.length, 1);
    assert.equal(token, idp.issued[0]);

    // What the user was told, and what the browser was sent to.
    assert.equal(b.urls.length, 1);
    const url = b.urls[0]!;
    assert.ok(lines.includes(url.href), "the authorization URL is printed");
    assert.equal(`${url.origin}${url.pathname}`, `${idp.issuer}/authorize`);
    const p = url.searchParams;
    assert.equal(p.get("response_type"), "code");
    assert.equal(p.get("client_id"), "sigstore");
    assert.equal(p.get("scope"), "openid email");
    assert.equal(p.get("code_challenge_method"), "S256");
    assert.match(p.get("redirect_uri")!, /^http:\/\/localhost:[1-9][0-9]*\/auth\/callback$/);
    assert.match(p.get("code_challenge")!, /^[A-Za-z0-9_-]{43}$/);
    assert.match(p.get("state")!, /^[A-Za-z0-9_-]{43,}$/);
    assert.match(p.get("nonce")!, /^[A-Za-z0-9_-]{43,}$/);
    assert.notEqual(p.get("state"), p.get("nonce"));
    assert.equal(p.get("client_secret"), null, "no secret in the browser's URL");

    // The exchange: the same redirect_uri, the verifier of the challenge, the client.
    assert.equal(idp.tokenRequests.length, 1);
    const form = idp.tokenRequests[0]!;
    assert.equal(form.get("grant_type"), "authorization_code");
    assert.equal(form.get("redirect_uri"), p.get("redirect_uri"));
    assert.equal(form.get("client_id"), "sigstore");
    assert.equal(form.get("client_secret"), "");
    assert.match(form.get("code_verifier")!, /^[A-Za-z0-9_-]{43,128}$/);
    assert.equal(await s256(form.get("code_verifier")!), p.get("code_challenge"));

    // The browser was told it worked.
    assert.equal(visits.length, 1);
    assert.equal(visits[0]!.status, 200);
    assert.match(visits[0]!.body, /signed in/i);
    assert.match(visits[0]!.body, /close this window/);

    // A second sign-in uses fresh state, nonce and challenge.
    const b2 = browser();
    const again = await signIn(idp, b2);
    assert.equal(again.token, idp.issued[1]);
    for (const k of ["state", "nonce", "code_challenge"]) {
      assert.notEqual(b2.urls[0]!.searchParams.get(k), p.get(k), k);
    }
  } finally {
    await idp.close();
  }
});

Deno.test("oidc: a callback with another state is answered 400 and refused (oidc-state), the code never exchanged", async () => {
  const idp = await standIn();
  try {
    const { token, error, visits } = await signIn(
      idp,
      browser({ callback: (u) => u.searchParams.set("state", "forged") }),
    );
    assert.equal(token, undefined);
    assertOidc(error, "oidc-state", /state/);
    assert.equal(visits[0]!.status, 400);
    assert.match(visits[0]!.body, /failed/i);
    assert.equal(idp.tokenRequests.length, 0);

    const none = await signIn(idp, browser({ callback: (u) => u.searchParams.delete("state") }));
    assertOidc(none.error, "oidc-state", /no state/);
    const two = await signIn(
      idp,
      browser({ callback: (u) => u.searchParams.append("state", "forged") }),
    );
    assertOidc(two.error, "oidc-state", /2 state parameters/);
    assert.equal(idp.tokenRequests.length, 0);
  } finally {
    await idp.close();
  }
});

Deno.test("oidc: a callback without exactly one code, or over the size bound, is refused (oidc-callback)", async () => {
  const idp = await standIn();
  try {
    for (
      const [tamper, pattern] of [
        [(u: URL) => u.searchParams.delete("code"), /without an authorization code .*found 0/],
        [(u: URL) => u.searchParams.append("code", "x"), /found 2/],
        [(u: URL) => u.searchParams.set("code", ""), /found 1/],
        [(u: URL) => u.searchParams.set("pad", "x".repeat(9000)), /expected at most 8192/],
      ] as const
    ) {
      const { token, error, visits } = await signIn(idp, browser({ callback: tamper }));
      assert.equal(token, undefined);
      assertOidc(error, "oidc-callback", pattern);
      assert.equal(visits.at(-1)!.status, 400);
    }
    assert.equal(idp.tokenRequests.length, 0);
  } finally {
    await idp.close();
  }
});

Deno.test("oidc: access_denied from the provider is refused (oidc-denied) with its description", async () => {
  const idp = await standIn({
    deny: { error: "access_denied", description: "The user <b>declined</b>" },
  });
  try {
    const { token, error, visits } = await signIn(idp, browser());
    assert.equal(token, undefined);
    assertOidc(error, "oidc-denied", /access_denied \(The user <b>declined<\/b>\)/);
    assert.equal(visits[0]!.status, 400);
    assert.ok(!visits[0]!.body.includes("<b>"), "the description is escaped in the page");
    assert.match(visits[0]!.body, /&#60;b&#62;declined/);
    assert.equal(idp.tokenRequests.length, 0);

    // A denial carrying another state is a forged redirect.
    const forged = await signIn(
      idp,
      browser({ callback: (u) => u.searchParams.set("state", "forged") }),
    );
    assertOidc(forged.error, "oidc-state");
  } finally {
    await idp.close();
  }
});

Deno.test("oidc: a verifier that does not match the challenge is refused by the provider (oidc-token)", async () => {
  const idp = await standIn();
  try {
    // Someone swapped the challenge in the authorization request for their own.
    const theirs = await s256("an attacker's verifier, long enough to be a verifier");
    const { token, error, visits } = await signIn(
      idp,
      browser({ authorize: (u) => u.searchParams.set("code_challenge", theirs) }),
    );
    assert.equal(token, undefined);
    const e = assertOidc(error, "oidc-token", /HTTP 400, expected 200: invalid_grant/);
    assert.match(e.message, /PKCE verification failed/);
    assert.deepEqual(idp.refusals, ["PKCE verification failed"]);
    assert.equal(idp.issued.length, 0);
    assert.equal(visits[0]!.status, 502);
    // The verifier and code are not in the message.
    const form = idp.tokenRequests[0]!;
    assert.ok(!e.message.includes(form.get("code_verifier")!));
    assert.ok(!e.message.includes(form.get("code")!));
  } finally {
    await idp.close();
  }
});

Deno.test("oidc: an ID token with another nonce, no nonce, or another audience is refused", async () => {
  for (
    const [opts, code, pattern] of [
      [{ nonce: "other" }, "oidc-nonce", /nonce this sign-in did not send/],
      [{ nonce: "none" }, "oidc-nonce", /has no nonce/],
      [
        { aud: "someone-else" },
        "oidc-token",
        /audience "someone-else", expected it to include "sigstore"/,
      ],
      [{ aud: ["a", "b"] }, "oidc-token", /audience/],
    ] as const
  ) {
    const idp = await standIn(opts);
    try {
      const { token, error, visits } = await signIn(idp, browser());
      assert.equal(token, undefined);
      const e = assertOidc(error, code, pattern);
      assert.equal(idp.issued.length, 1);
      assert.ok(!e.message.includes(idp.issued[0]!), "the token is never echoed");
      assert.ok(!visits[0]!.body.includes(idp.issued[0]!));
      assert.equal(visits[0]!.status, 502);
    } finally {
      await idp.close();
    }
  }
  // An audience list that includes the client is accepted.
  const idp = await standIn({ aud: ["other", "sigstore"] });
  try {
    const { token } = await signIn(idp, browser());
    assert.equal(token, idp.issued[0]);
  } finally {
    await idp.close();
  }
});

Deno.test("oidc: an issuer over plain http off loopback is refused before any request", async () => {
  let requests = 0;
  const spy: typeof fetch = () => {
    requests++;
    return Promise.reject(new Error("no request expected"));
  };
  for (const issuer of ["http://oauth2.sigstore.dev/auth", "http://127.0.0.2/auth", "ftp://x/y"]) {
    await assert.rejects(
      interactiveIdentityToken({ issuer, fetch: spy, openBrowser: () => {}, print: () => {} }),
      (e) => (assertOidc(e, "oidc-discovery", /must be an https URL/), true),
    );
  }
  await assert.rejects(
    interactiveIdentityToken({ issuer: "not a url", fetch: spy, print: () => {} }),
    (e) => (assertOidc(e, "oidc-discovery", /not a URL/), true),
  );
  assert.equal(requests, 0);
});

Deno.test("oidc: discovery must name both endpoints over the issuer's scheme, within the size bound", async () => {
  const lines: string[] = [];
  const fake = (doc: unknown | (() => Response)): typeof fetch => (input) => {
    assert.equal(String(input), "https://issuer.example/auth/.well-known/openid-configuration");
    return Promise.resolve(
      typeof doc === "function" ? (doc as () => Response)() : Response.json(doc),
    );
  };
  const run = (f: typeof fetch) =>
    interactiveIdentityToken({
      issuer: "https://issuer.example/auth/",
      fetch: f,
      openBrowser: () => {},
      print: (l) => lines.push(l),
      timeoutMs: 2_000, // A check that let the document through would time out instead.
    });
  const ok = {
    issuer: "https://issuer.example/auth",
    authorization_endpoint: "https://issuer.example/auth/authorize",
    token_endpoint: "https://issuer.example/auth/token",
  };
  for (
    const [doc, pattern] of [
      [{ ...ok, token_endpoint: undefined }, /no token_endpoint string, found none/],
      [{ ...ok, authorization_endpoint: 42 }, /no authorization_endpoint string, found number/],
      [
        { ...ok, token_endpoint: "http://issuer.example/auth/token" },
        /token_endpoint must use https:/,
      ],
      [
        { ...ok, authorization_endpoint: "http://127.0.0.1/a" },
        /authorization_endpoint must use https:/,
      ],
      [{ ...ok, issuer: "https://evil.example" }, /names the issuer https:\/\/evil\.example/],
      [{ ...ok, code_challenge_methods_supported: ["plain"] }, /S256/],
      [[ok], /not a JSON object/],
      [() => new Response("nope", { status: 500 }), /answered HTTP 500, expected 200/],
      [() => new Response("{", { status: 200 }), /is not JSON/],
      [() => oversized(256 * 1024 + 1), /larger than 262144 bytes/],
      [
        () => new Response("{}", { headers: { "content-length": String(256 * 1024 + 1) } }),
        /larger than 262144 bytes/,
      ],
    ] as const
  ) {
    await assert.rejects(run(fake(doc)), (e) => (assertOidc(e, "oidc-discovery", pattern), true));
  }
  assert.deepEqual(lines, [], "nothing is printed before discovery succeeds");
});

Deno.test("oidc: a token answer over 1 MiB is refused (oidc-token)", async () => {
  const idp = await standIn();
  try {
    const f: typeof fetch = (input, init) =>
      String(input).endsWith("/token")
        ? Promise.resolve(oversized(1024 * 1024 + 1))
        : fetch(input, init);
    const { error, visits } = await signIn(idp, browser(), { fetch: f });
    assertOidc(error, "oidc-token", /larger than 1048576 bytes/);
    assert.equal(visits[0]!.status, 502);
  } finally {
    await idp.close();
  }
});

Deno.test("oidc: nobody calling back times out quickly (oidc-timeout), the port closed", async () => {
  const idp = await standIn();
  try {
    const lines: string[] = [];
    const started = Date.now();
    await assert.rejects(
      within(
        interactiveIdentityToken({
          issuer: idp.issuer,
          openBrowser: () => {},
          print: (l) => lines.push(l),
          timeoutMs: 300,
        }),
        5_000,
        "the timeout",
      ),
      (e) => (assertOidc(e, "oidc-timeout", /not completed in the browser within 0\.3 s/), true),
    );
    const took = Date.now() - started;
    assert.ok(took >= 290 && took < 3000, `took ${took} ms`);
    await assertClosed(loopbackPort(lines));
  } finally {
    await idp.close();
  }
});

Deno.test("oidc: other paths on the loopback server get 404 and the flow still completes", async () => {
  const idp = await standIn();
  try {
    const b = browser({ before: ["/", "/favicon.ico", "/auth/callback/x", "/auth/callbackx"] });
    const { token, error, visits } = await signIn(idp, b);
    assert.equal(error, undefined);
    assert.equal(token, idp.issued[0]);
    assert.deepEqual(visits.map((v) => v.status), [404, 404, 404, 404, 200]);
  } finally {
    await idp.close();
  }
});

Deno.test("oidc: the loopback port is closed afterwards: success, refusal, abort, idle connections", async () => {
  const idp = await standIn();
  try {
    // Success, with an idle (preconnected) socket held open by the "browser".
    let idle: Deno.TcpConn | undefined;
    const b = browser();
    const open = b.openBrowser;
    b.openBrowser = (url: string) => {
      const port = Number(new URL(new URL(url).searchParams.get("redirect_uri")!).port);
      b.visits.push(
        Deno.connect({ hostname: "127.0.0.1", port }).then((c) => {
          idle = c;
          return [];
        }),
      );
      open(url);
    };
    const ok = await signIn(idp, b);
    assert.equal(ok.token, idp.issued[0]);
    assert.ok(idle);
    // The server hung up on the idle socket.
    assert.equal(await idle.read(new Uint8Array(1)), null);
    idle.close();
    await assertClosed(loopbackPort(ok.lines));

    // Refusal.
    const refused = await signIn(
      idp,
      browser({ callback: (u) => u.searchParams.set("state", "x") }),
    );
    assertOidc(refused.error, "oidc-state");
    await assertClosed(loopbackPort(refused.lines));

    // Abort while waiting for the browser: rejects with the signal's reason.
    const controller = new AbortController();
    const reason = new Error("user pressed Ctrl-C");
    const lines: string[] = [];
    await assert.rejects(
      interactiveIdentityToken({
        issuer: idp.issuer,
        openBrowser: () => void setTimeout(() => controller.abort(reason), 20),
        print: (l) => lines.push(l),
        signal: controller.signal,
      }),
      (e) => e === reason,
    );
    await assertClosed(loopbackPort(lines));

    // An already aborted signal: nothing is started.
    await assert.rejects(
      interactiveIdentityToken({ issuer: idp.issuer, signal: AbortSignal.abort(reason) }),
      (e) => e === reason,
    );
  } finally {
    await idp.close();
  }
});

Deno.test("oidc: a browser opener that fails leaves the printed URL to the user", async () => {
  const idp = await standIn();
  try {
    const lines: string[] = [];
    await assert.rejects(
      within(
        interactiveIdentityToken({
          issuer: idp.issuer,
          openBrowser: () => Promise.reject(new Error("no display")),
          print: (l) => lines.push(l),
          timeoutMs: 200,
        }),
        5_000,
        "the timeout",
      ),
      (e) => (assertOidc(e, "oidc-timeout"), true),
    );
    assert.ok(lines.some((l) => l.startsWith(`${idp.issuer}/authorize?`)));
    assert.ok(
      lines.some((l) => /Could not open a browser \(no display\)/.test(l)),
      lines.join("\n"),
    );
  } finally {
    await idp.close();
  }
});

Deno.test("oidc: options of the wrong type are refused", async () => {
  for (const bad of [{ clientId: "" }, { timeoutMs: 0 }, { timeoutMs: Number.NaN }, { print: 1 }]) {
    await assert.rejects(
      interactiveIdentityToken(bad as unknown as InteractiveTokenOptions),
      TypeError,
    );
  }
});

Deno.test({
  name:
    "oidc: without permission to listen on 127.0.0.1 the flow is refused (oidc-callback), not crashed",
  permissions: { net: false },
  fn: async () => {
    const doc = {
      authorization_endpoint: "https://issuer.example/authorize",
      token_endpoint: "https://issuer.example/token",
    };
    const lines: string[] = [];
    await assert.rejects(
      interactiveIdentityToken({
        issuer: "https://issuer.example",
        fetch: () => Promise.resolve(Response.json(doc)),
        openBrowser: () => {},
        print: (l) => lines.push(l),
        timeoutMs: 5_000,
      }),
      (e) => (assertOidc(e, "oidc-callback", /--allow-net=127\.0\.0\.1/), true),
    );
    assert.deepEqual(lines, [], "no URL is printed when nothing can receive the redirect");
  },
});
