// The WebCrypto keyless verifier (sign/_keyless.ts, what browsers use)
// against @sigstore/verify (what Deno and Node use): the same verdict on
// every real keyless bundle we hold (model_signing's v0.3.1 to v1.1.0
// vectors, made with the public-good Sigstore) and on seeded mutations of
// each signed byte, proof hash, timestamp, index and trusted-root key.
// SAFEMODELS_KEYLESS_MUTANTS sets the number of mutants (default 400).
import assert from "node:assert/strict";
import { verifyBundleWith } from "../../sign/_verify_cert.ts";
import { verifyKeylessWeb } from "../../sign/_keyless.ts";
import { verifyBundle } from "../../sign/_verify_bundle.ts";
import { publicGoodTrustedRoot } from "../../sign/_trusted_root.ts";
import { InvalidSignature } from "../../sign/errors.ts";

const BASE = new URL("../testdata/model_signing/", import.meta.url).pathname;
const VECTORS = ["v0.3.1", "v1.0.0", "v1.0.1", "v1.1.0"].map((v) =>
  JSON.parse(Deno.readTextFileSync(`${BASE}${v}-sigstore/model.sig`))
);

const web = (b: unknown, trustedRoot?: unknown) =>
  verifyBundleWith(verifyKeylessWeb, b, trustedRoot === undefined ? {} : { trustedRoot });
const js = (b: unknown, trustedRoot?: unknown) =>
  verifyBundle(b, trustedRoot === undefined ? {} : { trustedRoot });

async function verdict(
  f: typeof web,
  b: unknown,
  root?: unknown,
): Promise<{ ok: true; who: string } | { ok: false; error: Error }> {
  try {
    const r = await f(b, root);
    return {
      ok: true,
      who: `${r.signer.identities} ${r.signer.issuer} ${r.signer.signedAt?.toISOString()}`,
    };
  } catch (error) {
    return { ok: false, error: error as Error };
  }
}

Deno.test("keyless: the WebCrypto verifier accepts every real keyless bundle, with the signer @sigstore/verify reports", async () => {
  for (const b of VECTORS) {
    const a = await verdict(web, b);
    const c = await verdict(js, b);
    assert.ok(a.ok, !a.ok ? a.error.message : "");
    assert.deepEqual(a, c);
  }
});

/** A seeded generator. */
function prng(seed: number): () => number {
  return () => ((seed = (seed * 48271) % 0x7fffffff) / 0x7fffffff);
}

type Json = Record<string, unknown>;

/** The string fields worth mutating, as paths into the bundle. */
function fields(b: Json): (string | number)[][] {
  const out: (string | number)[][] = [];
  const walk = (v: unknown, path: (string | number)[]) => {
    if (typeof v === "string" || typeof v === "number") out.push(path);
    else if (Array.isArray(v)) v.forEach((x, i) => walk(x, [...path, i]));
    else if (v && typeof v === "object") {
      for (const [k, x] of Object.entries(v)) if (k !== "mediaType") walk(x, [...path, k]);
    }
  };
  walk(b, []);
  return out;
}

function get(o: unknown, path: (string | number)[]): unknown {
  return path.reduce((v, k) => (v as Record<string | number, unknown>)[k], o);
}

function set(o: unknown, path: (string | number)[], value: unknown): void {
  const parent = get(o, path.slice(0, -1)) as Record<string | number, unknown>;
  parent[path[path.length - 1]!] = value;
}

/** One small change to a value: a flipped bit of base64 bytes, ±1 on a number, a changed character. */
function mutate(value: unknown, next: () => number): unknown {
  if (typeof value === "number") return value + (next() < 0.5 ? 1 : -1);
  const s = value as string;
  if (/^\d+$/.test(s)) return String(BigInt(s) + (next() < 0.5 ? 1n : -1n)).replace("-", "");
  if (/^[A-Za-z0-9+/]+=*$/.test(s) && s.length >= 8) {
    try {
      const bytes = Uint8Array.from(atob(s), (c) => c.charCodeAt(0));
      const i = Math.floor(next() * bytes.length);
      bytes[i]! ^= 1 << Math.floor(next() * 8);
      return btoa(String.fromCharCode(...bytes));
    } catch { /* not base64 after all */ }
  }
  if (s.length === 0) return "x";
  const i = Math.floor(next() * s.length);
  return s.slice(0, i) + String.fromCharCode(s.charCodeAt(i) ^ 1) + s.slice(i + 1);
}

Deno.test("keyless: on seeded mutations the WebCrypto verifier never accepts what @sigstore/verify refuses", async () => {
  const count = Number(Deno.env.get("SAFEMODELS_KEYLESS_MUTANTS") ?? "400");
  const next = prng(0x5157);
  const root = await publicGoodTrustedRoot() as Json;
  // The trusted material these bundles rely on: the Fulcio CA chains and the
  // Rekor logs that logged them (a broken key of an unused log is refused
  // whole by @sigstore/verify and ignored here).
  const usedLogs = new Set(
    VECTORS.flatMap((b) =>
      b.verificationMaterial.tlogEntries.map((e: Json) => (e.logId as Json).keyId)
    ),
  );
  // The CA that issued these bundles' certificates (the current Fulcio one).
  const fulcio = (root.certificateAuthorities as Json[]).findIndex((ca) =>
    !(ca.validFor as Json).end
  );
  const rootFields = fields(root).filter((p) =>
    (p[0] === "timestampAuthorities" && /rawBytes|validFor/.test(p.join("."))) ||
    (p[0] === "certificateAuthorities" && p[1] === fulcio &&
      /rawBytes|validFor/.test(p.join("."))) ||
    (p[0] === "tlogs" &&
      usedLogs.has(((root.tlogs as Json[])[p[1] as number]!.logId as Json).keyId) &&
      /rawBytes|keyId|validFor/.test(p.join(".")))
  );
  let refused = 0;
  const weaker: string[] = [];
  const stricter: string[] = [];
  for (let n = 0; n < count; n++) {
    const bundle = structuredClone(VECTORS[n % VECTORS.length]) as Json;
    let trusted: Json | undefined;
    let where: string;
    if (next() < 0.8) {
      const paths = fields(bundle);
      const p = paths[Math.floor(next() * paths.length)]!;
      set(bundle, p, mutate(get(bundle, p), next));
      where = `bundle ${p.join(".")}`;
    } else {
      trusted = structuredClone(root);
      const p = rootFields[Math.floor(next() * rootFields.length)]!;
      set(trusted, p, mutate(get(trusted, p), next));
      where = `trusted root ${p.join(".")}`;
    }
    const a = await verdict(web, bundle, trusted);
    const c = await verdict(js, bundle, trusted);
    if (!a.ok) {
      refused++;
      assert.ok(a.error instanceof InvalidSignature, `${where}: ${a.error}`);
    }
    const line = `${n} ${where}: web ${
      a.ok ? "accepts" : `refuses (${a.error.message})`
    }, sigstore-js ${c.ok ? "accepts" : `refuses (${c.error.message})`}`;
    if (a.ok && (!c.ok || a.who !== c.who)) weaker.push(line);
    if (!a.ok && c.ok) stricter.push(line);
  }
  assert.deepEqual(weaker, []);
  assert.ok(refused > count / 2, `only ${refused} of ${count} mutants refused`);
  // Where they differ the WebCrypto verifier is the stricter one; rarely.
  assert.ok(
    stricter.length <= count / 50,
    `stricter on ${stricter.length}:\n${stricter.join("\n")}`,
  );
  console.log(
    `${count} mutants: ${refused} refused, ${stricter.length} refused only by the WebCrypto verifier`,
  );
});

Deno.test("keyless: a bundle made against a loopback Sigstore (Fulcio, CT log, Rekor) verifies the same in both, and mutants never pass the WebCrypto verifier alone", async () => {
  const { startLocalSigstore } = await import("./_local_sigstore.ts");
  const { sigstoreSigner } = await import("../../sign/mod.ts");
  const here = await startLocalSigstore();
  const other = await startLocalSigstore();
  try {
    const signer = sigstoreSigner({
      identityToken: here.token("release@example.com", "https://issuer.example.com"),
      fulcioURL: here.fulcioURL,
      rekorURL: here.rekorURL,
    });
    const payload = new TextEncoder().encode(
      JSON.stringify({ _type: "https://in-toto.io/Statement/v1" }),
    );
    const bundle = JSON.parse(
      JSON.stringify(await signer.sign(payload, "application/vnd.in-toto+json")),
    );
    const a = await verdict(web, bundle, here.trustedRoot);
    const c = await verdict(js, bundle, here.trustedRoot);
    assert.ok(a.ok, !a.ok ? a.error.message : "");
    assert.deepEqual(a, c);
    // Another instance's root.
    const wrong = await verdict(web, bundle, other.trustedRoot);
    assert.ok(!wrong.ok && wrong.error instanceof InvalidSignature);
    const next = prng(0xbee);
    const paths = fields(bundle);
    for (let n = 0; n < 100; n++) {
      const b = structuredClone(bundle);
      const p = paths[Math.floor(next() * paths.length)]!;
      set(b, p, mutate(get(b, p), next));
      const x = await verdict(web, b, here.trustedRoot);
      const y = await verdict(js, b, here.trustedRoot);
      assert.ok(!(x.ok && !y.ok), `${p.join(".")}: web accepts what sigstore-js refuses`);
    }
  } finally {
    await here.close();
    await other.close();
  }
});

Deno.test("keyless: the CLI verifies model_signing's keyless vectors with the network denied", async () => {
  const cli = new URL("../../plugins/cli.ts", import.meta.url).pathname;
  const out = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--allow-read",
      "--allow-env",
      "--deny-net",
      cli,
      "verify",
      "sigstore",
      "--identity",
      "stefanb@us.ibm.com",
      "--identity_provider",
      "https://sigstore.verify.ibm.com/oauth2",
      "--ignore-paths",
      `${BASE}v1.1.0-sigstore/ignore-me`,
      "--signature",
      `${BASE}v1.1.0-sigstore/model.sig`,
      `${BASE}v1.1.0-sigstore`,
    ],
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
  assert.match(new TextDecoder().decode(out.stdout), /signed by stefanb@us\.ibm\.com/);
});

Deno.test("keyless: a checkpoint padded with thousands of signature lines, or an entry repeated, is refused at once", async () => {
  const b = structuredClone(VECTORS[3]);
  const cp = b.verificationMaterial.tlogEntries[0].inclusionProof.checkpoint;
  const line = cp.envelope.split("\n").find((l: string) => l.startsWith("\u2014"));
  cp.envelope = cp.envelope + `${line}\n`.repeat(5000);
  // Refused by counting the lines, before any signature work on them.
  const r = await verdict(web, b);
  assert.ok(!r.ok && /more than 16/.test(r.error.message), !r.ok ? r.error.message : "accepted");
  const twice = structuredClone(VECTORS[3]);
  twice.verificationMaterial.tlogEntries.push(
    structuredClone(twice.verificationMaterial.tlogEntries[0]),
  );
  const r2 = await verdict(web, twice);
  assert.ok(!r2.ok && /twice/.test(r2.error.message));
});
