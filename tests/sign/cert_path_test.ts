// Certificate path validation (RFC 5280 section 6) of certificate-chain
// bundles, with OpenSSL as the oracle: tests/testdata/cert_paths/generate.sh
// makes a chain per case and records in expected.json what
//   openssl verify -x509_strict [-purpose codesign] -attime <leaf notBefore> …
// said, so these tests need no openssl. Each case is signed into a
// certificate-mode bundle and verified through both entry points.
import assert from "node:assert/strict";
import { certificateSigner } from "../../sign/certificate_signer.ts";
import { verifyBundle } from "../../sign/_verify_bundle.ts";
import { verifyBundleWith } from "../../sign/_verify_cert.ts";
import { publicGoodTrustedRoot, toSigstoreTrustMaterial } from "../../sign/_trusted_root.ts";
import { InvalidSignature } from "../../sign/errors.ts";
import type { TrustMaterial } from "../../sign/types.ts";
import { DerError, parseCertificate, pemBlocks } from "../../sign/_x509.ts";
import { prng } from "../_helpers.ts";

const DIR = new URL("../testdata/cert_paths/", import.meta.url);
const read = (path: string) => Deno.readTextFileSync(new URL(path, DIR));

interface Oracle {
  openssl: string;
  purpose: "none" | "codesign";
  cases: Record<string, { attime: string; ok: boolean; openssl: string }>;
}
const ORACLE: Oracle = JSON.parse(read("expected.json"));

/** What we say about each case: `true` verifies, a pattern is the refusal message. */
const OURS: Record<string, true | RegExp> = {
  "good": true,
  "direct": true,
  "leaf-eku-only": true,
  "leaf-no-digital-signature":
    /leaf certificate CN=Test Leaf may not sign: its keyUsage lacks digitalSignature/,
  "leaf-no-key-usage-or-eku":
    /leaf certificate CN=Test Leaf has neither keyUsage nor extendedKeyUsage: expected digitalSignature or codeSigning/,
  "leaf-eku-server-auth":
    /leaf certificate CN=Test Leaf may not sign code: its extendedKeyUsage is serverAuth, expected codeSigning \(1\.3\.6\.1\.5\.5\.7\.3\.3\)/,
  "leaf-eku-any": /its extendedKeyUsage is anyExtendedKeyUsage, expected codeSigning/,
  "leaf-critical-skid": true,
  "ca-not-ca":
    /issuer CN=Test Intermediate is not a CA \(intermediate certificate CN=Test Intermediate\): expected basicConstraints cA=TRUE, found cA=FALSE/,
  "ca-no-basic-constraints":
    /issuer CN=Test Intermediate is not a CA \(intermediate certificate CN=Test Intermediate\): expected basicConstraints cA=TRUE, found no basicConstraints/,
  "ca-no-keycertsign":
    /issuer CN=Test Intermediate may not sign certificates \(intermediate certificate CN=Test Intermediate\): its keyUsage lacks keyCertSign/,
  "pathlen0-direct": true,
  "pathlen0-intermediate":
    /intermediate certificate CN=Test Intermediate allows 0 intermediate certificates below it \(basicConstraints pathLenConstraint\), found 1/,
  "pathlen0-self-issued": true,
  "root-pathlen0": /trusted root certificate CN=Test Root allows 0 intermediate certificates/,
  "critical-unknown-leaf":
    /leaf certificate CN=Test Leaf has critical extension 1\.3\.6\.1\.4\.1\.99999\.1 that this verifier does not process/,
  "critical-unknown-int": /intermediate certificate CN=Test Intermediate has critical extension/,
  "critical-unknown-root": /trusted root certificate CN=Test Root has critical extension/,
  "nc-email-permitted": true,
  "nc-email-not-permitted":
    /leaf certificate CN=Test Leaf: its rfc822Name a@evil\.com is outside the permitted subtrees \(example\.com\) of the nameConstraints of intermediate certificate CN=Test Intermediate/,
  "nc-email-excluded": /its rfc822Name a@evil\.com is inside the excluded subtree evil\.com/,
  "nc-email-subdomain": true,
  "nc-email-mailbox": /rfc822Name a@example\.com is outside the permitted subtrees \(ci@example/,
  "nc-subject-email": /its rfc822Name x@evil\.com is outside the permitted subtrees/,
  "nc-uri-permitted": true,
  "nc-uri-not-permitted":
    /uniformResourceIdentifier https:\/\/gitlab\.com\/\S+ is outside the permitted subtrees \(github\.com\)/,
  "nc-uri-not-subdomain":
    /https:\/\/example\.com\/ci is outside the permitted subtrees \(\.example/,
  "nc-uri-excluded":
    /https:\/\/evil\.example\.com\/ci is inside the excluded subtree evil\.example/,
  "nc-uri-excluded-userinfo": /is inside the excluded subtree evil\.example\.com/,
  "nc-dns-permitted": true,
  "nc-dns-excluded":
    /its dNSName host\.evil\.example\.com is inside the excluded subtree evil\.example\.com/,
  "nc-dirname-permitted": true,
  "nc-dirname-not-permitted":
    /its directoryName O=Other, CN=Test Leaf is outside the permitted subtrees \(O=Acme\)/,
  "nc-intermediate-subject":
    /intermediate certificate O=Other, CN=Test Intermediate 2: its directoryName .* outside the permitted subtrees \(O=Acme\) of the nameConstraints of intermediate certificate CN=Test Intermediate$/,
  "nc-ip-permitted": true,
  "nc-ip-not-permitted":
    /its iPAddress 192\.168\.1\.1 is outside the permitted subtrees \(10\.0\.0\.0\/255\.0\.0\.0\)/,
  "nc-unsupported-form":
    /its registeredID 1\.2\.3\.4 cannot be checked against registeredID subtrees/,
  "nc-unsupported-absent": true,
  "nc-root":
    /rfc822Name a@evil\.com is outside .* nameConstraints of trusted root certificate CN=Test Root/,
  "time-leaf-expired-now": true,
  "time-leaf-future":
    /leaf certificate CN=Test Leaf is not valid yet: it starts at 2098-01-01T00:00:00\.000Z, after now/,
  "time-leaf-inverted":
    /leaf certificate CN=Test Leaf is not valid at 2025-01-01T00:00:00\.000Z \(the leaf's notBefore, when it signed\): valid from 2025-01-01T00:00:00\.000Z to 2024-12-31/,
  "time-int-expired":
    /intermediate certificate CN=Test Intermediate is not valid at 2024-07-01T00:00:00\.000Z .*: valid from 2024-01-01T00:00:00\.000Z to 2024-06-30T00:00:00\.000Z/,
  "time-int-not-yet-valid":
    /intermediate certificate CN=Test Intermediate is not valid at 2024-06-01T00:00:00\.000Z/,
  "time-root-expired": /trusted root certificate CN=Test Root is not valid at 2024-07-01/,
};

/**
 * Where we differ from OpenSSL on purpose. `purpose`: only because OpenSSL
 * before 3.2 has no `-purpose codesign`, so that oracle checks no leaf usage.
 */
const DISAGREE: Record<string, { why: string; purpose?: true }> = {
  "leaf-no-digital-signature": {
    why: "a leaf's keyUsage must allow digitalSignature (OpenSSL's codesign purpose agrees)",
    purpose: true,
  },
  "leaf-eku-server-auth": {
    why: "a leaf's extendedKeyUsage must include codeSigning (OpenSSL's codesign purpose agrees)",
    purpose: true,
  },
  "leaf-eku-any": {
    why: "anyExtendedKeyUsage is not codeSigning (OpenSSL's codesign purpose refuses it too)",
    purpose: true,
  },
  "leaf-no-key-usage-or-eku": {
    why: "model_signing refuses a signing certificate without digitalSignature or codeSigning",
    purpose: true,
  },
  "leaf-critical-skid": {
    why: "subjectKeyIdentifier only helps path building, so we accept it marked critical; " +
      "OpenSSL does not know it as a critical extension",
  },
  "nc-uri-excluded-userinfo": {
    why: "the host of https://user@evil.example.com:8443/ci is evil.example.com (RFC 3986); " +
      "OpenSSL compares user@evil.example.com and misses the excluded subtree",
  },
  "time-leaf-future": {
    why: "a leaf whose validity starts after now cannot have made a signature that exists now; " +
      "the oracle only sees the leaf's notBefore",
  },
};

/** The case list of generate.sh (its `CASES=( … )`). */
function generatorCases(): string[] {
  const block = /^CASES=\(\n([\s\S]*?)\n\)$/m.exec(read("generate.sh"))?.[1];
  assert.ok(block, "no CASES=( … ) in generate.sh");
  return block.split("\n").map((line) => line.trim()).filter((line) => line !== "");
}

const pem = (name: string, file: string) => read(`${name}/${file}`);

async function bundleFor(name: string): Promise<unknown> {
  const intermediates = pem(name, "int.pem");
  const chain = [pem(name, "leaf.pem"), ...(intermediates.trim() === "" ? [] : [intermediates])];
  const signer = certificateSigner(read("leaf.key"), chain);
  return await signer.sign(
    new TextEncoder().encode('{"_type":"https://in-toto.io/Statement/v1"}'),
    "application/vnd.in-toto+json",
  );
}

/** The verdict of one entry point: true, or the refusal message. */
async function verdict(
  verify: (bundle: unknown, trust: TrustMaterial) => Promise<unknown>,
  bundle: unknown,
  trust: TrustMaterial,
): Promise<true | string> {
  try {
    await verify(bundle, trust);
    return true;
  } catch (e) {
    assert.ok(e instanceof InvalidSignature, `expected InvalidSignature, got ${e}`);
    assert.equal(e.code, "untrusted-certificate", e.message);
    return e.message;
  }
}

Deno.test("cert_paths: expected.json, the folders and the tests list generate.sh's cases", () => {
  const cases = generatorCases();
  assert.ok(cases.length >= 40, `only ${cases.length} cases`);
  assert.deepEqual(Object.keys(ORACLE.cases), cases);
  assert.deepEqual(Object.keys(OURS).sort(), [...cases].sort());
  const folders = [...Deno.readDirSync(DIR)].filter((e) => e.isDirectory).map((e) => e.name);
  assert.deepEqual(folders.sort(), [...cases].sort());
  for (const name of Object.keys(DISAGREE)) assert.ok(cases.includes(name), name);
  assert.match(ORACLE.purpose, /^(none|codesign)$/);
});

for (const [name, ours] of Object.entries(OURS)) {
  const oracle = ORACLE.cases[name];
  const disagree = DISAGREE[name];
  const title = ours === true ? "verifies" : "is refused";
  Deno.test(`verifyBundle() certificate path ${name} ${title}`, async () => {
    assert.ok(oracle, `${name} missing from expected.json`);
    if (disagree === undefined) {
      assert.equal(ours === true, oracle.ok, `OpenSSL said: ${oracle.openssl}`);
    } else if (!disagree.purpose || ORACLE.purpose === "none") {
      // A declared disagreement must be one with the recorded oracle.
      assert.notEqual(ours === true, oracle.ok, `no longer a disagreement: ${disagree.why}`);
    }
    const bundle = await bundleFor(name);
    const trust = { certificateRoots: [pem(name, "root.pem")] };
    const node = await verdict((b, t) => verifyBundle(b, t), bundle, trust);
    // The browser path (WebCrypto and our DER reader only) says the same.
    const web = await verdict((b, t) => verifyBundleWith(undefined, b, t), bundle, trust);
    const stable = (v: true | string) => v === true ? v : v.replace(/now \([^)]*\)/, "now (…)");
    assert.equal(stable(web), stable(node));
    if (ours === true) assert.equal(node, true, `refused: ${node}`);
    else {
      assert.notEqual(node, true, "verified, expected a refusal");
      assert.match(node as string, /^Cannot verify certificate chain: /);
      assert.match(node as string, ours);
    }
  });
}

const der = (name: string, file: string) => pemBlocks(pem(name, file), "CERTIFICATE");

Deno.test("parseCertificate() reads critical flags, extendedKeyUsage, names and nameConstraints", () => {
  const leaf = parseCertificate(der("good", "leaf.pem")[0]!);
  assert.deepEqual([...leaf.critical].sort(), ["2.5.29.15"]); // keyUsage only
  assert.deepEqual(leaf.extKeyUsage, ["1.3.6.1.5.5.7.3.3"]);
  assert.deepEqual(leaf.altNames, [{ form: "rfc822Name", text: "a@example.com" }]);
  assert.deepEqual(leaf.emails, ["a@example.com"]);
  const int = parseCertificate(der("nc-dirname-permitted", "int.pem")[0]!);
  assert.deepEqual([...int.critical].sort(), ["2.5.29.15", "2.5.29.19", "2.5.29.30"]);
  assert.equal(int.nameConstraints?.excluded.length, 0);
  assert.deepEqual(int.nameConstraints?.permitted.map((t) => [t.base.form, t.base.text]), [[
    "directoryName",
    "O=Acme",
  ]]);
  const ip = parseCertificate(der("nc-ip-permitted", "int.pem")[0]!);
  assert.equal(ip.nameConstraints?.permitted[0]?.base.text, "10.0.0.0/255.0.0.0");
  const rid = parseCertificate(der("nc-unsupported-form", "leaf.pem")[0]!);
  assert.deepEqual(rid.altNames.map((n) => `${n.form} ${n.text}`), [
    "registeredID 1.2.3.4",
    "rfc822Name a@example.com",
  ]);
  const subject = parseCertificate(der("nc-subject-email", "leaf.pem")[0]!);
  assert.deepEqual(subject.subjectEmails, ["x@evil.com"]);
});

Deno.test("parseCertificate() mutants of the path certificates only ever throw DerError (seeded)", () => {
  const next = prng(0x5280);
  const bases = [
    der("nc-dirname-permitted", "int.pem")[0]!,
    der("nc-ip-permitted", "int.pem")[0]!,
    der("nc-ip-permitted", "leaf.pem")[0]!,
    der("nc-unsupported-form", "leaf.pem")[0]!,
    der("nc-unsupported-form", "int.pem")[0]!,
    der("nc-subject-email", "leaf.pem")[0]!,
  ];
  for (let n = 0; n < 10_000; n++) {
    const base = bases[n % bases.length]!;
    const m = base.slice(0, Math.max(1, Math.floor(next() * (base.length + 8))));
    for (let k = 0, c = 1 + Math.floor(next() * 4); k < c; k++) {
      m[Math.floor(next() * m.length)] = Math.floor(next() * 256);
    }
    try {
      parseCertificate(m);
    } catch (e) {
      assert.ok(e instanceof DerError, `mutant ${n}: ${e}`);
    }
  }
});

Deno.test("verifyBundle() certificate mode checks the path at the leaf's notBefore", async () => {
  // time-leaf-expired-now: the leaf expired in 2024, but was valid when it signed.
  const bundle = await bundleFor("time-leaf-expired-now");
  const trust = { certificateRoots: [pem("time-leaf-expired-now", "root.pem")] };
  const r = await verifyBundle(bundle, trust);
  assert.equal(r.signer.kind, "certificate");
  assert.deepEqual(r.signer.identities, ["a@example.com"]);
});

Deno.test("toSigstoreTrustMaterial() refuses entries without validFor.start", async () => {
  const root = await publicGoodTrustedRoot() as {
    tlogs: { publicKey: { validFor?: { start?: string } } }[];
    ctlogs: { publicKey: { validFor?: { start?: string } } }[];
    certificateAuthorities: { validFor?: { start?: string } }[];
    timestampAuthorities?: { validFor?: { start?: string } }[];
  };
  // The public-good root gives every entry a start, and loads.
  const tm = toSigstoreTrustMaterial(root);
  assert.ok(tm.tlogs.length > 0 && tm.ctlogs.length > 0 && tm.certificateAuthorities.length > 0);
  for (const t of [...tm.tlogs, ...tm.ctlogs, ...tm.certificateAuthorities]) {
    assert.ok(t.validFor.start.getTime() > 0);
  }
  const edits: [string, (r: typeof root) => void, RegExp][] = [
    [
      "tlog",
      (r) => delete r.tlogs[0]!.publicKey.validFor!.start,
      /tlogs\[0\]\.publicKey\.validFor\.start is missing/,
    ],
    [
      "ctlog",
      (r) => delete r.ctlogs[0]!.publicKey.validFor,
      /ctlogs\[0\]\.publicKey\.validFor\.start is missing/,
    ],
    [
      "CA",
      (r) => delete r.certificateAuthorities[0]!.validFor!.start,
      /certificateAuthorities\[0\]\.validFor\.start is missing/,
    ],
  ];
  if (root.timestampAuthorities?.length) {
    edits.push([
      "TSA",
      (r) => delete r.timestampAuthorities![0]!.validFor!.start,
      /timestampAuthorities\[0\]\.validFor\.start is missing/,
    ]);
  }
  for (const [what, edit, message] of edits) {
    const copy = structuredClone(root);
    edit(copy);
    assert.throws(() => toSigstoreTrustMaterial(copy), message, what);
  }
  // A start that is not a date is refused by name too.
  const bad = structuredClone(root);
  bad.tlogs[0]!.publicKey.validFor!.start = "yesterday";
  assert.throws(
    () => toSigstoreTrustMaterial(bad),
    /tlogs\[0\]\.publicKey\.validFor\.start is not a date/,
  );
});
