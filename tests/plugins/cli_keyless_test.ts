// Keyless signing from a laptop: with no identity token, `safemodels sign`
// runs the browser sign-in (an OIDC stand-in on 127.0.0.1, a loopback
// redirect) and signs with a local Sigstore (Fulcio, Rekor); the model then
// verifies for the identity the provider vouched for, and only for it.
import assert from "node:assert/strict";
import { startLocalSigstore } from "../sign/_local_sigstore.ts";
import { standIn, within } from "../sign/_oidc_standin.ts";

const CLI = new URL("../../plugins/cli.ts", import.meta.url).pathname;
const MODEL = new URL("../../../shared/fixtures/tensors/mixed.safetensors", import.meta.url)
  .pathname;
// No ambient token may short-cut the sign-in.
const NO_TOKEN = {
  SIGSTORE_ID_TOKEN: "",
  ACTIONS_ID_TOKEN_REQUEST_URL: "",
  ACTIONS_ID_TOKEN_REQUEST_TOKEN: "",
};

async function cli(args: string[]): Promise<{ code: number; err: string; out: string }> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--quiet", "--allow-all", CLI, ...args],
    env: NO_TOKEN,
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = (b: Uint8Array) => new TextDecoder().decode(b);
  return { code: out.code, out: text(out.stdout), err: text(out.stderr) };
}

Deno.test("cli sign: no token, so the browser sign-in gets one; the model verifies for that identity only", async () => {
  const sigstore = await startLocalSigstore();
  const idp = await standIn();
  const dir = await Deno.makeTempDir();
  try {
    await Deno.mkdir(`${dir}/model`);
    await Deno.copyFile(MODEL, `${dir}/model/model.safetensors`);
    await Deno.writeTextFile(`${dir}/root.json`, JSON.stringify(sigstore.trustedRoot));
    const child = new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "--quiet",
        "--allow-all",
        CLI,
        "sign",
        `${dir}/model`,
        "--oidc-issuer",
        idp.issuer,
        "--no-browser",
        "--fulcio-url",
        sigstore.fulcioURL,
        "--rekor-url",
        sigstore.rekorURL,
      ],
      env: NO_TOKEN,
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    // The user's part: read the printed URL, sign in, get redirected back.
    const lines: string[] = [];
    const reader = child.stderr.pipeThrough(new TextDecoderStream()).getReader();
    let buffered = "";
    const url = await within(
      (async () => {
        for (;;) {
          const { value, done } = await reader.read();
          if (done) throw new Error(`the CLI ended without a URL: ${lines.join("\n")}`);
          buffered += value;
          const parts = buffered.split("\n");
          buffered = parts.pop()!;
          lines.push(...parts);
          const found = parts.find((l) => l.startsWith(`${idp.issuer}/authorize?`));
          if (found) return new URL(found);
        }
      })(),
      30_000,
      "the sign-in URL",
    );
    const rest = (async () => {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) return;
        buffered += value;
      }
    })();
    const authorize = await fetch(url, { redirect: "manual" });
    await authorize.body?.cancel();
    assert.equal(authorize.status, 302);
    const callback = new URL(authorize.headers.get("location")!);
    assert.equal(callback.hostname, "localhost");
    callback.hostname = "127.0.0.1";
    const landed = await fetch(callback);
    await landed.body?.cancel();
    assert.equal(landed.status, 200);
    const status = await within(child.status, 30_000, "signing after the sign-in");
    await rest;
    await child.stdout.cancel();
    assert.equal(status.code, 0, [...lines, buffered].join("\n"));
    assert.equal(idp.issued.length, 1);
    assert.equal(idp.tokenRequests.length, 1);

    const verify = (identity: string) =>
      cli([
        "verify",
        `${dir}/model`,
        "--identity",
        identity,
        "--issuer",
        idp.issuer,
        "--trusted-root",
        `${dir}/root.json`,
      ]);
    const ok = await verify("alice@example.com");
    assert.equal(ok.code, 0, ok.err);
    assert.match(ok.out, /signed by alice@example\.com/);
    const other = await verify("mallory@example.com");
    assert.equal(other.code, 1, other.err);
    assert.match(other.err, /alice@example\.com/);
  } finally {
    await idp.close();
    await sigstore.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("cli sign: a sign-in the provider refuses ends the command (exit 2) with the provider's reason, no signature written", async () => {
  const idp = await standIn({ deny: { error: "access_denied", description: "user said no" } });
  const dir = await Deno.makeTempDir();
  try {
    await Deno.copyFile(MODEL, `${dir}/model.safetensors`);
    const child = new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "--quiet",
        "--allow-all",
        CLI,
        "sign",
        dir,
        "--oidc-issuer",
        idp.issuer,
        "--no-browser",
        "--fulcio-url",
        "http://127.0.0.1:9/fulcio",
        "--rekor-url",
        "http://127.0.0.1:9/rekor",
      ],
      env: NO_TOKEN,
      stdout: "null",
      stderr: "piped",
    }).spawn();
    const reader = child.stderr.pipeThrough(new TextDecoderStream()).getReader();
    let text = "";
    const url = await within(
      (async () => {
        for (;;) {
          const { value, done } = await reader.read();
          if (done) throw new Error(`no URL: ${text}`);
          text += value;
          const m = text.match(/^(http:\/\/127\.0\.0\.1:\d+\/auth\/authorize\?\S+)$/m);
          if (m) return new URL(m[1]!);
        }
      })(),
      30_000,
      "the sign-in URL",
    );
    const authorize = await fetch(url, { redirect: "manual" });
    await authorize.body?.cancel();
    const callback = new URL(authorize.headers.get("location")!);
    callback.hostname = "127.0.0.1";
    await (await fetch(callback)).body?.cancel();
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      text += value;
    }
    const status = await within(child.status, 30_000, "the CLI ending");
    assert.equal(status.code, 2, text);
    assert.match(text, /access_denied/);
    assert.match(text, /user said no/);
    // --no-browser: the URL is printed, no browser is tried.
    assert.doesNotMatch(text, /Could not open a browser/);
    await assert.rejects(Deno.stat(`${dir}/model.sig`));
  } finally {
    await idp.close();
    await Deno.remove(dir, { recursive: true });
  }
});
