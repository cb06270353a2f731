// The browser guard (plugins/transformers_web.ts, bundled for browsers) in
// headless Chromium, with transformers.js' web build and onnxruntime-web
// (wasm) from the npm cache, a loopback hub, and the Web Cache API. A model
// pinned in a lockfile, signed with a trusted key or a certificate chain to a
// trusted root (model.sig, checked with WebCrypto), or with an embedded ONNX
// signature, loads and embeds "hello world" as PyTorch did; tampered weights
// or tokenizer (pinned, in model.sig or signed inside the ONNX file), or a
// signer the policy does not trust, are refused with our
// error, no session, nothing cached; a hub gone bad is not asked again; the
// gate refuses bytes it did not verify. One page per scenario.
// Skipped where Chromium is missing, except in CI (.ci/run installs it).
import assert from "node:assert/strict";
import {
  certificateSigner,
  keySigner,
  signModel,
  signOnnx,
  sigstoreSigner,
} from "../../sign/mod.ts";
import { startLocalSigstore } from "../sign/_local_sigstore.ts";
import { main } from "../../plugins/cli.ts";
import { expected, fixture } from "../_helpers.ts";
import { freshKeyPem } from "../_model_gen.ts";
import {
  bundleWebGuard,
  chromiumPath,
  PAGE_HEAD,
  pageModule,
  pageModuleRoots,
  runPage,
} from "./_chromium.ts";

const EXPECTED = expected("tiny-bert").hello_world_mean_pooled as number[];
const FILES = ["config.json", "tokenizer.json", "tokenizer_config.json", "onnx/model.onnx"];
const chromium = chromiumPath();
if (!chromium && Deno.env.get("CI")) throw new Error("CI needs Chromium for the browser tests");

const PAGE = `${PAGE_HEAD}const unhandled = [];
addEventListener("unhandledrejection", (e) => { unhandled.push(String(e.reason)); e.preventDefault(); });
try {
  const ort = await import("onnxruntime-web/webgpu");
  // Every session transformers.js asks for, counted below the guard.
  let sessions = 0;
  const realCreate = ort.InferenceSession.create;
  ort.InferenceSession.create = function (model, ...rest) {
    if (typeof model === "string" || model.byteLength > 1000) sessions++;
    return realCreate.call(this, model, ...rest);
  };
  const transformers = await import("@huggingface/transformers");
  const { guardTransformers, Lockfile, SignError, verifyBundle } = await import("/guard.mjs");
  const { env } = transformers;
  env.remoteHost = location.origin + "/";
  env.allowLocalModels = false;
  env.backends.onnx.wasm.wasmPaths = location.origin + "/npm/ort/dist/";
  env.backends.onnx.wasm.numThreads = 1;
  env.cacheKey = "guard-" + crypto.randomUUID();
  const params = new URLSearchParams(location.search);
  const scenario = params.get("scenario");
  // Signed repositories are checked against a public key, pinned ones against the
  // lockfile; an embedded ONNX signature vouches for the weights, pins for the rest.
  // Keyless policies (identity, issuer, the loopback Sigstore's trusted root) come as JSON.
  const keyName = params.get("key");
  const policy = keyName.startsWith("sigstore")
    ? await (await fetch("/" + keyName + ".json")).json()
    : keyName === "ca"
    ? { certificateRoots: [await (await fetch("/ca.pem")).text()] }
    : { publicKeys: [await (await fetch("/" + keyName + ".pem")).text()] };
  const lockfile = new Lockfile(await (await fetch("/lock.json")).json());
  const guard = guardTransformers(
    transformers,
    scenario === "acme/signed-warm"
      ? { ort, policy, verifiedStore: "safemodels-" + env.cacheKey }
      : scenario.startsWith("acme/signed") || scenario.startsWith("acme/cert") ||
      scenario.startsWith("acme/keyless")
      ? { ort, policy }
      : scenario.startsWith("acme/embedded") || scenario.startsWith("acme/pinned")
      ? { ort, policy, lockfile }
      : scenario.startsWith("acme/frozen")
      ? { ort, policy, lockfile, frozen: true }
      : { ort, lockfile, frozen: true },
  );
  const cached = async () =>
    (await (await caches.open(env.cacheKey)).keys()).map((r) => new URL(r.url).pathname);
  const load = async (model) => {
    const pipe = await transformers.pipeline("feature-extraction", model, { dtype: "fp32", device: "wasm" });
    const r = await pipe("hello world", { pooling: "mean" });
    await pipe.dispose();
    return Array.from(r.data);
  };
  const refusal = async (model) => {
    const before = sessions;
    try {
      await load(model);
      return { loaded: true };
    } catch (e) {
      return {
        error: e instanceof SignError ? e.name : String(e),
        code: e.code,
        message: e.message,
        sessions: sessions - before,
      };
    }
  };
  const report = {};
  if (scenario === "conformance") {
    // The Sigstore conformance suite's DSSE cases, through the page's verifier.
    report.conformance = [];
    for (const c of await (await fetch("/conformance.json")).json()) {
      let verdict;
      try {
        const r = await verifyBundle(c.bundle, {
          signers: [{ identity: c.identity, issuer: c.issuer }],
          ...(c.trustedRoot ? { trustedRoot: c.trustedRoot } : {}),
        });
        const subjects = (r.statement?.subject ?? []).map((s) => s.digest?.sha256);
        verdict = subjects.includes(c.digest) ? "verified" : "not-the-artifact";
      } catch (e) {
        verdict = "refused " + (e instanceof SignError ? e.name : String(e));
      }
      report.conformance.push([c.name, verdict]);
    }
  }
  // One scenario per page: after a refused session, transformers.js' web build
  // fails every later session creation in the page (its webInitChain).
  if (["acme/signed", "acme/embedded", "acme/cert", "acme/keyless"].includes(scenario)) {
    const before = sessions;
    report.good = await load(scenario);
    report.goodSessions = sessions - before;
    if (scenario === "acme/keyless") {
      // What one keyless verification costs in the page (recorded, not asserted).
      const sig = await (await fetch("/acme/keyless/resolve/main/model.sig")).text();
      const times = [];
      for (let i = 0; i < 7; i++) {
        const t = performance.now();
        await verifyBundle(sig, policy);
        times.push(performance.now() - t);
      }
      report.verifyMs = times.sort((a, b) => a - b)[3];
    }
  } else if (scenario === "acme/signed-warm") {
    // verifiedStore: downloaded weights are cached with a tag of their digest;
    // the next load is decided on the tag (warm), not hashed again.
    const pause = () => new Promise((r) => setTimeout(r, 1600)); // a new load epoch
    report.good = await load(scenario);
    await pause();
    report.warm = await load(scenario);
    report.warmFiles = guard.records.filter((r) => r.warm).map((r) => r.file);
    // Writers without the key (the hub through an unguarded transformers.js, a
    // proxy): tampered weights under a made-up tag, then a truncated body under
    // the genuine tag. Each is hashed, refused, dropped, and fetched again.
    const cache = await caches.open(env.cacheKey);
    const url = (await cache.keys()).map((r) => r.url).find((u) => u.endsWith("onnx/model.onnx"));
    const genuine = await cache.match(url);
    const tag = genuine.headers.get("x-safemodels-verified");
    const bytes = new Uint8Array(await genuine.arrayBuffer());
    report.tagged = /^v1 sha256:[0-9a-f]{64} [0-9]+ [A-Za-z0-9_-]{43}$/.test(tag ?? "");
    const flipped = bytes.slice();
    flipped[2000] ^= 1;
    const madeUp = tag.slice(0, -8) + (tag.endsWith("AAAAAAAA") ? "BBBBBBBB" : "AAAAAAAA");
    report.afterForged = [];
    for (const [body, t] of [[flipped, madeUp], [bytes.slice(0, bytes.length - 1), tag]]) {
      await cache.put(url, new Response(body, { headers: { "x-safemodels-verified": t } }));
      await pause();
      const hitsBefore = (await (await fetch("/hits")).json()).length;
      const embedding = await load(scenario);
      const hitsAfter = await (await fetch("/hits")).json();
      report.afterForged.push({
        embedding,
        refetched: hitsAfter.slice(hitsBefore).filter((h) => h.endsWith("onnx/model.onnx")).length,
      });
    }
    report.records = guard.records.map((r) => [r.file, r.verdict, r.evidence, r.warm ?? false]);
  } else if (scenario === "conformance") {
    // Checked above, without loading a model.
  } else if (scenario !== "good") {
    report.refusal = await refusal(scenario);
    report.cached = await cached();
  } else {
    const before = sessions;
    report.good = await load("acme/tiny-bert");
    report.goodSessions = sessions - before;
    report.cached = await cached();
    // The hub turns bad: a later load (a new pipeline) is served from the verified cache.
    await fetch("/control");
    await new Promise((r) => setTimeout(r, 1600));
    report.fromCache = await load("acme/tiny-bert");
    report.hubHits = await (await fetch("/hits")).json();
    try {
      const bytes = await (await fetch("/acme/bad-onnx/resolve/main/onnx/model.onnx")).arrayBuffer();
      await ort.InferenceSession.create(new Uint8Array(bytes));
      report.gate = "created";
    } catch (e) {
      report.gate = e.constructor.name;
    }
  }
  report.records ??= guard.records.map((r) => [r.file, r.verdict, r.evidence, r.signer?.kind ?? ""]);
  guard.uninstall();
  report.restored = ort.InferenceSession.create.name;
  report.unhandled = unhandled;
  out.textContent = JSON.stringify({ ok: true, ...report });
} catch (e) {
  out.textContent = JSON.stringify({ ok: false, error: String(e), stack: e?.stack });
}
</script>`;

Deno.test({
  name:
    "browser: headless Chromium, transformers.js web + onnxruntime-web; lockfile pins, key and certificate signatures, embedded ONNX signatures",
  ignore: !chromium,
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const work = await Deno.makeTempDir({ prefix: "guard-browser-" });
    const source = await bundleWebGuard(`${work}/guard.mjs`);
    assert.doesNotMatch(
      source,
      // Static imports only (doc comments may show one; dynamic ones run only for paths).
      /^\s*import\s[^(\n]*from\s*"node:|require\("node:/m,
      "the browser bundle imports node: modules",
    );

    const roots = await pageModuleRoots();
    const model = new Map<string, Uint8Array>();
    for (const f of FILES) model.set(f, await Deno.readFile(fixture(`tiny-bert/${f}`)));
    const flipped = (file: string, at: number) => {
      const bytes = model.get(file)!.slice();
      bytes[at]! ^= 1;
      return bytes;
    };
    // The lockfile, written by `safemodels lock` (unsigned folders, pinned at
    // revision main): the pinned repositories pin every file, the
    // embedded-signature ones their JSON files only, and acme/pinned-bad pins
    // weights other than the ones the hub serves.
    const lockPath = `${work}/safemodels.lock`;
    const pin = async (repo: string, files: string[], change?: (dir: string) => Promise<void>) => {
      const dir = `${work}/pin/${repo}`;
      await Deno.mkdir(`${dir}/onnx`, { recursive: true });
      for (const f of files) await Deno.writeFile(`${dir}/${f}`, model.get(f)!);
      await change?.(dir);
      const quiet = { out: () => {}, err: (e: string) => console.error(e), isTerminal: false };
      const args = ["lock", dir, "--key", fixture("oms/keys/signing-key-pub.pem")];
      const code = await main([
        ...args,
        "--signatures-optional",
        "--name",
        repo,
        "--model-version",
        "main",
        "--lock",
        lockPath,
      ], quiet);
      assert.equal(code, 0, `safemodels lock ${repo}`);
    };
    for (const repo of ["acme/tiny-bert", "acme/bad-onnx", "acme/bad-tokenizer"]) {
      await pin(repo, FILES);
    }
    for (const repo of ["acme/embedded", "acme/embedded-bad", "acme/embedded-other"]) {
      await pin(repo, FILES.filter((f) => f.endsWith(".json")));
    }
    await pin(
      "acme/pinned-bad",
      FILES,
      (dir) => Deno.writeFile(`${dir}/onnx/model.onnx`, flipped("onnx/model.onnx", 2000)),
    );
    const lock = JSON.parse(await Deno.readTextFile(lockPath));
    assert.match(JSON.stringify(lock), /"sha256:[0-9a-f]{64}"/);
    // What each repository serves instead of the pinned file.
    // Copies signed with the OMS test key (P-384) or a certificate chain (leaf,
    // intermediate) to the test CA; each model.sig names the repository it is for.
    await Deno.mkdir(`${work}/signed/onnx`, { recursive: true });
    for (const f of FILES) await Deno.writeFile(`${work}/signed/${f}`, model.get(f)!);
    const KEY = await Deno.readTextFile(fixture("oms/keys/signing-key.pem"));
    const chain = [
      await Deno.readTextFile(fixture("oms/keys/signing-key-cert.pem")),
      await Deno.readTextFile(fixture("oms/keys/int-ca-cert.pem")),
    ];
    const sign = async (modelName: string, cert = false) => {
      await signModel(`${work}/signed`, {
        signer: cert ? certificateSigner(KEY, chain) : keySigner(KEY),
        modelName,
      });
      return await Deno.readFile(`${work}/signed/model.sig`);
    };
    // The weights with an embedded ONNX signature by the same key.
    await Deno.mkdir(`${work}/embedded`);
    const embeddedFor = async (name: string) => {
      await Deno.writeFile(`${work}/embedded/model.onnx`, model.get("onnx/model.onnx")!);
      await signOnnx(`${work}/embedded/model.onnx`, { signer: keySigner(KEY), name, version: "1" });
      return await Deno.readFile(`${work}/embedded/model.onnx`);
    };
    // Keyless: signed against a loopback Sigstore (Fulcio with a CT log,
    // Rekor); verified in the page with WebCrypto against its trusted root.
    const here = await startLocalSigstore();
    const other = await startLocalSigstore();
    const ME = "release@example.com";
    const ISSUER = "https://issuer.example.com";
    const signKeyless = async (modelName: string) => {
      await signModel(`${work}/signed`, {
        signer: sigstoreSigner({
          identityToken: here.token(ME, ISSUER),
          fulcioURL: here.fulcioURL,
          rekorURL: here.rekorURL,
        }),
        modelName,
      });
      return await Deno.readFile(`${work}/signed/model.sig`);
    };
    const keylessPolicy = (
      identity: string,
      issuer: string,
      trustedRoot: unknown,
      extensions?: Record<string, string>,
    ) =>
      JSON.stringify({
        signers: [{ identity, issuer, ...(extensions ? { extensions } : {}) }],
        trustedRoot,
      });
    const embeddedBad = await embeddedFor("acme/embedded-bad");
    embeddedBad[2000]! ^= 1;
    const keys: Record<string, string> = {
      "/release.pem": await Deno.readTextFile(fixture("oms/keys/signing-key-pub.pem")),
      "/foreign.pem": (await freshKeyPem()).publicPem,
      "/ca.pem": await Deno.readTextFile(fixture("oms/keys/ca-cert.pem")),
      "/sigstore.json": keylessPolicy(ME, ISSUER, here.trustedRoot),
      "/sigstore-other-identity.json": keylessPolicy(
        "mallory@example.com",
        ISSUER,
        here.trustedRoot,
      ),
      "/sigstore-other-issuer.json": keylessPolicy(
        ME,
        "https://other.example.com",
        here.trustedRoot,
      ),
      "/sigstore-other-root.json": keylessPolicy(ME, ISSUER, other.trustedRoot),
      // A CI policy: the certificate must name this workflow (it names none).
      "/sigstore-other-workflow.json": keylessPolicy(ME, ISSUER, here.trustedRoot, {
        buildSignerURI:
          "https://github.com/acme/models/.github/workflows/release.yml@refs/heads/main",
      }),
    };
    const overrides: Record<string, Map<string, Uint8Array>> = {
      "acme/signed": new Map([["model.sig", await sign("acme/signed")]]),
      "acme/signed-warm": new Map([["model.sig", await sign("acme/signed-warm")]]),
      "acme/signed-foreign": new Map([["model.sig", await sign("acme/signed-foreign")]]),
      "acme/signed-other-name": new Map([["model.sig", await sign("acme/other")]]),
      "acme/frozen-signed": new Map([["model.sig", await sign("acme/frozen-signed")]]),
      "acme/pinned-bad": new Map([["model.sig", await sign("acme/pinned-bad")]]),
      "acme/embedded": new Map([["onnx/model.onnx", await embeddedFor("acme/embedded")]]),
      "acme/embedded-other": new Map([["onnx/model.onnx", await embeddedFor("acme/other")]]),
      "acme/cert": new Map([["model.sig", await sign("cert", true)]]),
      "acme/cert-untrusted": new Map([["model.sig", await sign("cert-untrusted", true)]]),
      "acme/cert-bad": new Map([
        ["model.sig", await sign("cert-bad", true)],
        ["tokenizer.json", flipped("tokenizer.json", 100)],
      ]),
      "acme/embedded-bad": new Map([["onnx/model.onnx", embeddedBad]]),
      "acme/signed-bad": new Map([
        ["model.sig", await sign("acme/signed-bad")],
        ["onnx/model.onnx", flipped("onnx/model.onnx", 2000)],
      ]),
      "acme/keyless": new Map([["model.sig", await signKeyless("acme/keyless")]]),
      "acme/keyless-refused": new Map([["model.sig", await signKeyless("acme/keyless-refused")]]),
      "acme/keyless-bad": new Map([
        ["model.sig", await signKeyless("acme/keyless-bad")],
        ["onnx/model.onnx", flipped("onnx/model.onnx", 2000)],
      ]),
      "acme/tiny-bert": new Map(),
      "acme/bad-onnx": new Map([["onnx/model.onnx", flipped("onnx/model.onnx", 2000)]]),
      "acme/bad-tokenizer": new Map([["tokenizer.json", flipped("tokenizer.json", 100)]]),
    };
    // The vendored Sigstore conformance cases, as the page needs them.
    const CONF = new URL("../testdata/sigstore_conformance/", import.meta.url).pathname;
    const IDENTITY =
      "https://github.com/sigstore-conformance/extremely-dangerous-public-oidc-beacon/.github/workflows/extremely-dangerous-oidc-beacon.yml@refs/heads/main";
    const conformance: Record<string, unknown>[] = [];
    for (const e of [...Deno.readDirSync(CONF)].filter((e) => e.isDirectory)) {
      const dir = `${CONF}${e.name}`;
      const opt = (f: string) => Deno.readTextFile(`${dir}/${f}`).catch(() => undefined);
      const root = await opt("trusted_root.json");
      const artifact = await Deno.readFile(
        (await opt("artifact")) === undefined ? `${CONF}a.txt` : `${dir}/artifact`,
      );
      conformance.push({
        name: e.name,
        bundle: JSON.parse(await Deno.readTextFile(`${dir}/bundle.sigstore.json`)),
        trustedRoot: root === undefined ? undefined : JSON.parse(root),
        identity: (await opt("identity"))?.trim() ?? IDENTITY,
        issuer: (await opt("issuer"))?.trim() ?? "https://token.actions.githubusercontent.com",
        digest: [...new Uint8Array(await crypto.subtle.digest("SHA-256", artifact))]
          .map((b) => b.toString(16).padStart(2, "0")).join(""),
      });
    }
    const hits: string[] = [];
    const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, async (req) => {
      const path = decodeURIComponent(new URL(req.url).pathname);
      if (path === "/") return new Response(PAGE, { headers: { "content-type": "text/html" } });
      if (path === "/guard.mjs") {
        return new Response(source, { headers: { "content-type": "text/javascript" } });
      }
      if (path === "/lock.json") return Response.json(lock);
      if (path === "/conformance.json") return Response.json(conformance);
      if (keys[path]) return new Response(keys[path]);
      if (path === "/hits") return Response.json(hits);
      if (path === "/control") {
        // The good repository turns bad; hub requests are counted from here.
        overrides["acme/tiny-bert"]!.set("onnx/model.onnx", flipped("onnx/model.onnx", 2000));
        hits.length = 0;
        return new Response("ok");
      }
      const module = await pageModule(path, roots);
      if (module) return module;
      const hub = /^\/(acme\/[^/]+)\/resolve\/[^/]+\/(.+)$/.exec(path);
      const [repo, file] = [hub?.[1] ?? "", hub?.[2] ?? ""];
      const body = overrides[repo] && (overrides[repo].get(file) ?? model.get(file));
      if (!body) return new Response("missing", { status: 404 });
      hits.push(`${repo}/${file}`);
      // No HTTP caching: each load must reach the hub or the guard's cache.
      return new Response(body as Uint8Array<ArrayBuffer>, {
        headers: { "cache-control": "no-store" },
      });
    });
    try {
      const open = async (scenario: string, key = "release") => {
        const r = await runPage(
          `http://127.0.0.1:${server.addr.port}/?scenario=${scenario}&key=${key}`,
          120_000,
        ) as Record<string, unknown>;
        assert.equal(r.ok, true, `${scenario}: ${r.error}\n${r.stack}`);
        assert.deepEqual(r.unhandled, [], `${scenario}: unhandled rejections`);
        assert.notEqual(r.restored, "create"); // uninstall() put the page's own create back
        return r;
      };
      // Refusals: lockfile-pinned files tampered on the hub, a signed model with
      // tampered weights, a signed model whose key the policy does not trust.
      // The trust decision's rules hold in the browser too: an embedded
      // signature or a model.sig for another model, a frozen lockfile that
      // does not pin a signed model, a pin that differs from signed weights.
      const refusals = [
        ["acme/bad-onnx", "release", "HashMismatch:pin-differs", "acme/bad-onnx/onnx/model.onnx"],
        [
          "acme/bad-tokenizer",
          "release",
          "HashMismatch:pin-differs",
          "acme/bad-tokenizer/tokenizer.json",
        ],
        [
          "acme/signed-bad",
          "release",
          "HashMismatch:content-changed",
          "acme/signed-bad/onnx/model.onnx",
        ],
        ["acme/signed-foreign", "foreign", "VerificationError:untrusted-key", "model.sig"],
        [
          "acme/embedded-bad",
          "release",
          "HashMismatch:content-changed",
          "acme/embedded-bad/onnx/model.onnx",
        ],
        ["acme/cert-bad", "ca", "HashMismatch:content-changed", "acme/cert-bad/tokenizer.json"],
        ["acme/cert-untrusted", "release", "VerificationError:untrusted-certificate", "model.sig"],
        ["acme/signed-other-name", "release", "PolicyError:wrong-model", 'model "acme/other"'],
        [
          "acme/embedded-other",
          "release",
          "PolicyError:wrong-model",
          "acme/embedded-other/onnx/model.onnx",
        ],
        ["acme/frozen-signed", "release", "PolicyError:not-locked", "frozen"],
        // Keyless: another identity, another issuer, another instance's root, tampered weights.
        ["acme/keyless-refused", "sigstore-other-identity", "PolicyError:wrong-signer", "mallory"],
        [
          "acme/keyless-refused",
          "sigstore-other-issuer",
          "PolicyError:wrong-signer",
          "other.example.com",
        ],
        ["acme/keyless-refused", "sigstore-other-root", "VerificationError:bad-tlog", "model.sig"],
        [
          "acme/keyless-refused",
          "sigstore-other-workflow",
          "PolicyError:wrong-signer",
          "buildSignerURI",
        ],
        [
          "acme/keyless-bad",
          "sigstore",
          "HashMismatch:content-changed",
          "acme/keyless-bad/onnx/model.onnx",
        ],
        [
          "acme/pinned-bad",
          "release",
          "HashMismatch:pin-differs",
          "acme/pinned-bad/onnx/model.onnx",
        ],
      ];
      for (const [scenario, key, error, file] of refusals) {
        const r = await open(scenario!, key);
        const refusal = r.refusal as {
          error: string;
          code: string;
          message: string;
          sessions: number;
        };
        assert.equal(`${refusal.error}:${refusal.code}`, error, JSON.stringify(refusal));
        assert.ok(refusal.message.includes(file!), refusal.message);
        assert.equal(refusal.sessions, 0, `${scenario}: a session was created`);
        // Nothing refused is cached.
        const name = file!.startsWith(`${scenario}/`) ? file!.slice(scenario!.length + 1) : "";
        assert.ok(!(r.cached as string[]).includes(`/${scenario}/resolve/main/${name}`));
        assert.ok((r.records as string[][]).some(([, v]) => v === "refused"));
      }
      // Signed with a key the policy trusts: verified against model.sig with WebCrypto.
      const signed = await open("acme/signed");
      (signed.good as number[]).forEach((v, i) => assert.ok(Math.abs(v - EXPECTED[i]!) < 1e-5));
      assert.equal(signed.goodSessions, 1);
      assert.deepEqual(
        [...new Set((signed.records as string[][]).map((r) => r.join(" ")))].sort(),
        FILES.map((f) => `${f} verified oms key`).sort(),
      );
      // verifiedStore: the next load is decided on the Web Cache entry's tag
      // (the weights only: JSON files are hashed anyway), and a tag the page
      // could not have made, or a body the tag does not fit, is hashed,
      // refused, dropped and fetched again from the hub.
      const warm = await open("acme/signed-warm");
      assert.equal(warm.tagged, true);
      for (const e of [warm.good, warm.warm]) {
        (e as number[]).forEach((v, i) => assert.ok(Math.abs(v - EXPECTED[i]!) < 1e-5));
      }
      assert.deepEqual(warm.warmFiles, ["onnx/model.onnx"]);
      const forged = warm.afterForged as { embedding: number[]; refetched: number }[];
      assert.equal(forged.length, 2);
      for (const f of forged) {
        f.embedding.forEach((v, i) => assert.ok(Math.abs(v - EXPECTED[i]!) < 1e-5));
        assert.equal(f.refetched, 1);
      }
      const onnxVerdicts = (warm.records as [string, string, string, boolean][])
        .filter(([file]) => file === "onnx/model.onnx").map(([, v, , w]) =>
          `${v}${w ? " warm" : ""}`
        );
      assert.deepEqual(onnxVerdicts, [
        "verified",
        "verified warm",
        "refused",
        "verified",
        "refused",
        "verified",
      ]);
      // The Sigstore conformance suite's DSSE cases in Chromium: every *_fail
      // refused with a typed error, every happy path verified for its artifact.
      const conf = (await open("conformance")).conformance as [string, string][];
      assert.equal(conf.length, conformance.length);
      for (const [name, verdict] of conf) {
        if (name.endsWith("_fail")) {
          assert.match(verdict, /^refused (VerificationError|PolicyError)/, `${name}: ${verdict}`);
        } else assert.equal(verdict, "verified", name);
      }
      // Keyless (Sigstore), verified in the page with WebCrypto: no node:crypto there.
      const keyless = await open("acme/keyless", "sigstore");
      console.log(
        `browser: one keyless verification (median of 7) ${
          (keyless.verifyMs as number).toFixed(1)
        } ms`,
      );
      (keyless.good as number[]).forEach((v, i) => assert.ok(Math.abs(v - EXPECTED[i]!) < 1e-5));
      assert.deepEqual(
        [...new Set((keyless.records as string[][]).map((r) => r.join(" ")))].sort(),
        FILES.map((f) => `${f} verified oms keyless`).sort(),
      );
      // Signed with a certificate chain to a trusted root: checked with WebCrypto too.
      const cert = await open("acme/cert", "ca");
      (cert.good as number[]).forEach((v, i) => assert.ok(Math.abs(v - EXPECTED[i]!) < 1e-5));
      assert.deepEqual(
        [...new Set((cert.records as string[][]).map((r) => r.join(" ")))].sort(),
        FILES.map((f) => `${f} verified oms certificate`).sort(),
      );
      // An embedded ONNX signature (key) for the weights, lockfile pins for the JSON files.
      const inOnnx = await open("acme/embedded");
      (inOnnx.good as number[]).forEach((v, i) => assert.ok(Math.abs(v - EXPECTED[i]!) < 1e-5));
      assert.deepEqual(
        [...new Set((inOnnx.records as string[][]).map((r) => r.join(" ")))].sort(),
        FILES.map((f) =>
          f.endsWith(".onnx") ? `${f} verified onnx-embedded key` : `${f} verified lockfile `
        ).sort(),
      );
      const r = await open("good");
      const good = r.good as number[];
      assert.equal(good.length, EXPECTED.length);
      good.forEach((v, i) => assert.ok(Math.abs(v - EXPECTED[i]!) < 1e-5, `[${i}] ${v}`));
      assert.equal(r.goodSessions, 1);
      assert.ok((r.cached as string[]).includes("/acme/tiny-bert/resolve/main/onnx/model.onnx"));
      // The hub went bad: the verified cache served the weights, the hub was not asked.
      (r.fromCache as number[]).forEach((v, i) => assert.ok(Math.abs(v - EXPECTED[i]!) < 1e-5));
      assert.ok(!(r.hubHits as string[]).includes("acme/tiny-bert/onnx/model.onnx"));
      // Bytes that did not come through the guard are refused by the gate.
      assert.equal(r.gate, "SignatureMissing");
      assert.deepEqual(
        [...new Set((r.records as string[][]).map((r) => r.join(" ")))].sort(),
        FILES.map((f) => `${f} verified lockfile `).sort(),
      );
    } finally {
      await server.shutdown();
      await here.close();
      await other.close();
      await Deno.remove(work, { recursive: true });
    }
  },
});
