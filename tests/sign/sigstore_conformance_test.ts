// The Sigstore conformance suite's DSSE bundle-verification cases (vendored
// under tests/testdata/sigstore_conformance, see its NOTICE), through the
// WebCrypto verifier (browsers) and @sigstore/verify (Deno, Node): every
// `*_fail` case refused, every happy path accepted with the expected signer
// and an in-toto subject that is the artifact's digest. Rekor v2 entries are
// not verified by the WebCrypto verifier yet: its Rekor v2 happy path is
// refused by name, and listed here.
import assert from "node:assert/strict";
import { verifyBundleWith } from "../../sign/_verify_cert.ts";
import { verifyKeylessWeb } from "../../sign/_keyless.ts";
import { verifyBundle } from "../../sign/_verify_bundle.ts";
import { InvalidSignature, PolicyError } from "../../sign/errors.ts";

const BASE = new URL("../testdata/sigstore_conformance/", import.meta.url).pathname;
const IDENTITY =
  "https://github.com/sigstore-conformance/extremely-dangerous-public-oidc-beacon/.github/workflows/extremely-dangerous-oidc-beacon.yml@refs/heads/main";
const ISSUER = "https://token.actions.githubusercontent.com";
/** Cases the WebCrypto verifier refuses by design for now (Rekor v2). */
const NOT_YET = new Set<string>();

const read = (path: string) => Deno.readTextFile(path).catch(() => undefined);
const cases = [...Deno.readDirSync(BASE)].filter((e) => e.isDirectory).map((e) => e.name).sort();

for (const name of cases) {
  Deno.test(`sigstore-conformance: ${name}`, async () => {
    const dir = `${BASE}${name}`;
    const bundle = JSON.parse(await Deno.readTextFile(`${dir}/bundle.sigstore.json`));
    const root = await read(`${dir}/trusted_root.json`);
    const trust = root === undefined ? {} : { trustedRoot: JSON.parse(root) };
    const identity = (await read(`${dir}/identity`))?.trim() ?? IDENTITY;
    const issuer = (await read(`${dir}/issuer`))?.trim() ?? ISSUER;
    const artifact = await Deno.readFile(
      (await read(`${dir}/artifact`)) === undefined ? `${BASE}a.txt` : `${dir}/artifact`,
    );
    const digest = [...new Uint8Array(await crypto.subtle.digest("SHA-256", artifact))]
      .map((b) => b.toString(16).padStart(2, "0")).join("");
    const check = async (f: typeof verifyBundle) => {
      const r = await f(bundle, trust);
      if (!r.signer.identities.includes(identity) || r.signer.issuer !== issuer) {
        throw new PolicyError("wrong-signer", `signer ${r.signer.identities} (${r.signer.issuer})`);
      }
      const st = JSON.parse(new TextDecoder().decode(r.payload));
      const subjects = (st.subject ?? []).map((s: { digest?: { sha256?: string } }) =>
        s.digest?.sha256
      );
      if (!subjects.includes(digest)) {
        throw new PolicyError("wrong-model", "the statement is not about the artifact");
      }
      return r;
    };
    const web = (b: unknown, t: typeof trust) => verifyBundleWith(verifyKeylessWeb, b, t);
    if (name.endsWith("_fail")) {
      await assert.rejects(check(web), InvalidSignature);
      await assert.rejects(check(verifyBundle), InvalidSignature);
    } else if (NOT_YET.has(name)) {
      await assert.rejects(
        check(web),
        (e) => e instanceof InvalidSignature && /Rekor v2/.test(e.message),
      );
      await check(verifyBundle);
    } else {
      await check(web);
      await check(verifyBundle);
    }
  });
}

Deno.test("sigstore-conformance: the vendored cases are all here", () => {
  assert.equal(cases.length, 14);
});

Deno.test("verifyBundle: a CI policy matches Fulcio extensions exactly (repository, ref, workflow), in both keyless verifiers", async () => {
  const { Issuer, verifyBundle } = await import("../../sign/mod.ts");
  const web = await import("../../plugins/transformers_web.ts");
  const text = await Deno.readTextFile(`${BASE}happy-path-intoto-in-dsse-v3/bundle.sigstore.json`);
  const ci = (ref: string) =>
    Issuer({
      identity: IDENTITY,
      issuer: ISSUER,
      extensions: {
        sourceRepositoryURI:
          "https://github.com/sigstore-conformance/extremely-dangerous-public-oidc-beacon",
        sourceRepositoryRef: ref,
        buildSignerURI: IDENTITY,
      },
    });
  for (
    const verify of [
      (p: unknown) => verifyBundle(text, p as never, { keyless: "webcrypto" }),
      (p: unknown) => verifyBundle(text, p as never, { keyless: "sigstore-js" }),
      (p: unknown) => web.verifyBundle(text, p as never),
    ]
  ) {
    const r = await verify(ci("refs/heads/main"));
    assert.equal(r.signer.extensions?.sourceRepositoryRef, "refs/heads/main");
    assert.ok(Array.isArray((r.statement as { subject: unknown[] }).subject));
    await assert.rejects(
      verify(ci("refs/heads/release")),
      (e) =>
        e instanceof PolicyError && e.code === "wrong-signer" &&
        /sourceRepositoryRef/.test(e.message),
    );
    // An anchored RegExp matches the whole value only.
    await assert.rejects(
      verify(Issuer({ identity: /extremely-dangerous/, issuer: ISSUER })),
      (e) => e instanceof PolicyError && e.code === "wrong-signer",
    );
    await verify(
      Issuer({
        identity: /https:\/\/github\.com\/sigstore-conformance\/.*@refs\/heads\/main/,
        issuer: ISSUER,
      }),
    );
  }
  assert.throws(
    () => Issuer({ identity: "a", issuer: "b", extensions: { nonsense: "x" } as never }),
    TypeError,
  );
});

Deno.test("sigstore-conformance: mutants of the Rekor v2 and custom-root happy paths never pass the WebCrypto verifier alone", async () => {
  let seed = 0xc0f;
  const next = () => ((seed = (seed * 48271) % 0x7fffffff) / 0x7fffffff);
  const mutate = (s: string): string => {
    if (/^\d+$/.test(s)) return String(BigInt(s) + 1n);
    try {
      const b = Uint8Array.from(atob(s), (c) => c.charCodeAt(0));
      if (b.length >= 6 && /^[A-Za-z0-9+/]+=*$/.test(s)) {
        b[Math.floor(next() * b.length)]! ^= 1 << Math.floor(next() * 8);
        return btoa(String.fromCharCode(...b));
      }
    } catch { /* text */ }
    const i = Math.floor(next() * Math.max(1, s.length));
    return s.slice(0, i) + String.fromCharCode((s.charCodeAt(i) || 65) ^ 1) + s.slice(i + 1);
  };
  const strings = (v: unknown, path: (string | number)[] = [], out: (string | number)[][] = []) => {
    if (typeof v === "string") out.push(path);
    else if (Array.isArray(v)) v.forEach((x, i) => strings(x, [...path, i], out));
    else if (v && typeof v === "object") {
      for (const [k, x] of Object.entries(v)) if (k !== "mediaType") strings(x, [...path, k], out);
    }
    return out;
  };
  let refused = 0, total = 0;
  for (const name of ["rekor2-dsse-happy-path", "intoto-with-custom-trust-root"]) {
    const dir = `${BASE}${name}`;
    const original = JSON.parse(await Deno.readTextFile(`${dir}/bundle.sigstore.json`));
    const trust = { trustedRoot: JSON.parse(await Deno.readTextFile(`${dir}/trusted_root.json`)) };
    const paths = strings(original);
    for (let n = 0; n < 150; n++) {
      const b = structuredClone(original);
      const p = paths[Math.floor(next() * paths.length)]!;
      const parent = p.slice(0, -1).reduce(
        (o: Record<string | number, unknown>, k) => o[k] as Record<string | number, unknown>,
        b,
      );
      parent[p[p.length - 1]!] = mutate(parent[p[p.length - 1]!] as string);
      const web = await verifyBundleWith(verifyKeylessWeb, b, trust).then(() => true, () => false);
      const js = await verifyBundle(b, trust).then(() => true, () => false);
      assert.ok(
        !(web && !js),
        `${name} ${p.join(".")}: the WebCrypto verifier accepts what @sigstore/verify refuses`,
      );
      total++;
      if (!web) refused++;
    }
  }
  assert.ok(refused > total / 2, `only ${refused} of ${total} refused`);
});
