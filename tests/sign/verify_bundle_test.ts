import assert from "node:assert/strict";
import nodeCrypto from "node:crypto";
import { verifyBundle } from "../../sign/_verify_bundle.ts";
import { dssePae } from "../../sign/_dsse.ts";
import { publicGoodTrustedRoot } from "../../sign/_trusted_root.ts";
import { InvalidSignature, type InvalidSignatureCode } from "../../sign/errors.ts";
import type { TrustMaterial } from "../../sign/types.ts";

const OMS = new URL("../../../shared/fixtures/oms/", import.meta.url);
const key = (name: string) => Deno.readTextFileSync(new URL(`keys/${name}`, OMS));
// deno-lint-ignore no-explicit-any
type Json = any;
const load = (dir: string): Json =>
  JSON.parse(Deno.readTextFileSync(new URL(`${dir}/model.sig`, OMS)));

const VERSIONS = ["v1.0.0", "v1.0.1"];
const KEY_TRUST: TrustMaterial = { publicKeys: [key("signing-key-pub.pem")] };
const CERT_TRUST: TrustMaterial = { certificateRoots: [key("ca-cert.pem")] };
const KEYLESS_TRUST: TrustMaterial = {};
const KEY_FPR = "c1e49d63327f85c7e2971aefd30b5a0d1c6b9b5e1a892e7f5fba995adace816d";

const b64 = (bytes: Uint8Array) => btoa(String.fromCharCode(...bytes));
const unb64 = (s: string) => Uint8Array.from(atob(s), (c) => c.charCodeAt(0));
const hex = (bytes: Uint8Array) =>
  Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
const sha256 = async (data: Uint8Array) =>
  hex(new Uint8Array(await crypto.subtle.digest("SHA-256", data as BufferSource)));

/** Flips one bit of a base64 field. */
function flip(field: string, index: number): string {
  const bytes = unb64(field);
  bytes[index % bytes.length]! ^= 0x01;
  return b64(bytes);
}

async function rejects(
  bundle: unknown,
  trust: TrustMaterial,
  code: InvalidSignatureCode,
  message?: RegExp,
): Promise<InvalidSignature> {
  try {
    await verifyBundle(bundle, trust, "model.sig");
  } catch (e) {
    assert.ok(e instanceof InvalidSignature, `expected InvalidSignature, got ${e}`);
    assert.equal(e.code, code, e.message);
    assert.equal(e.file, "model.sig");
    if (message) assert.match(e.message, message);
    return e;
  }
  assert.fail(`expected InvalidSignature(${code})`);
}

function assertInToto(payload: Uint8Array, payloadType: string) {
  assert.equal(payloadType, "application/vnd.in-toto+json");
  const statement = JSON.parse(new TextDecoder().decode(payload));
  assert.equal(statement._type, "https://in-toto.io/Statement/v1");
}

Deno.test("dssePae encodes type and body lengths", () => {
  const pae = dssePae("http://example.com/HelloWorld", new TextEncoder().encode("hello world"));
  assert.equal(
    new TextDecoder().decode(pae),
    "DSSEv1 29 http://example.com/HelloWorld 11 hello world",
  );
  // Lengths are byte lengths, not UTF-16 code units.
  assert.equal(new TextDecoder().decode(dssePae("é", new Uint8Array(0))), "DSSEv1 2 é 0 ");
});

Deno.test("publicGoodTrustedRoot reads the embedded root offline", async () => {
  const root = (await publicGoodTrustedRoot()) as Json;
  assert.match(root.mediaType, /trustedroot/);
  assert.ok(root.tlogs.length >= 1);
  assert.ok(root.certificateAuthorities.length >= 1);
  // Each call returns a fresh object.
  assert.notEqual(await publicGoodTrustedRoot(), root);
});

for (const v of VERSIONS) {
  Deno.test(`${v} elliptic-key bundle verifies with the public key`, async () => {
    const r = await verifyBundle(load(`${v}-elliptic-key`), KEY_TRUST);
    assertInToto(r.payload, r.payloadType);
    assert.equal(r.signer.kind, "key");
    assert.deepEqual(r.signer.identities, []);
    assert.equal(r.signer.issuer, undefined);
    assert.equal(r.signer.signedAt, undefined);
    assert.equal(r.signer.keyFingerprint, KEY_FPR);
    assert.match(r.signer.pem, /^-----BEGIN PUBLIC KEY-----\n/);
  });

  Deno.test(`${v} certificate bundle verifies to the root CA`, async () => {
    const r = await verifyBundle(load(`${v}-certificate`), CERT_TRUST);
    assertInToto(r.payload, r.payloadType);
    assert.equal(r.signer.kind, "certificate");
    assert.equal(r.signer.keyFingerprint, KEY_FPR);
    assert.match(r.signer.pem, /^-----BEGIN CERTIFICATE-----\n/);
    assert.equal(r.signer.issuer, undefined);
  });

  Deno.test(`${v} keyless bundle verifies offline with the public-good root`, async () => {
    const r = await verifyBundle(load(`${v}-sigstore`), KEYLESS_TRUST);
    assertInToto(r.payload, r.payloadType);
    assert.equal(r.signer.kind, "keyless");
    assert.deepEqual(r.signer.identities, ["stefanb@us.ibm.com"]);
    assert.equal(r.signer.issuer, "https://sigstore.verify.ibm.com/oauth2");
    assert.match(r.signer.keyFingerprint, /^[0-9a-f]{64}$/);
    const integrated = Number(
      load(`${v}-sigstore`).verificationMaterial.tlogEntries[0].integratedTime,
    );
    assert.equal(r.signer.signedAt?.getTime(), integrated * 1000);
    // The certificate is short-lived: valid at signing, long expired now.
    assert.ok(r.signer.signedAt! < new Date(Date.now() - 86400_000));
    // The same root passed explicitly works too.
    const again = await verifyBundle(load(`${v}-sigstore`), {
      trustedRoot: await publicGoodTrustedRoot(),
    });
    assert.equal(again.signer.keyFingerprint, r.signer.keyFingerprint);
  });

  Deno.test(`${v} flipped signature or payload bytes are bad-signature`, async () => {
    for (
      const [dir, trust] of [
        [`${v}-elliptic-key`, KEY_TRUST],
        [`${v}-certificate`, CERT_TRUST],
        [`${v}-sigstore`, KEYLESS_TRUST],
      ] as const
    ) {
      for (const at of [10, 40]) {
        const sig = load(dir);
        sig.dsseEnvelope.signatures[0].sig = flip(sig.dsseEnvelope.signatures[0].sig, at);
        await rejects(sig, trust, "bad-signature");
        const payload = load(dir);
        payload.dsseEnvelope.payload = flip(payload.dsseEnvelope.payload, at);
        await rejects(payload, trust, "bad-signature", /does not match the DSSE payload/);
      }
      const type = load(dir);
      type.dsseEnvelope.payloadType = "application/json";
      await rejects(type, trust, "bad-signature");
    }
  });
}

Deno.test("key bundles: wrong or missing trusted key is untrusted-key", async () => {
  const pair = await crypto.subtle.generateKey({ name: "ECDSA", namedCurve: "P-384" }, true, [
    "sign",
    "verify",
  ]);
  const spki = new Uint8Array(await crypto.subtle.exportKey("spki", pair.publicKey));
  const otherPem = `-----BEGIN PUBLIC KEY-----\n${b64(spki)}\n-----END PUBLIC KEY-----\n`;
  const bundle = load("v1.0.1-elliptic-key");
  await rejects(bundle, { publicKeys: [otherPem] }, "untrusted-key", /not among the 1 trusted/);
  await rejects(bundle, {}, "untrusted-key", /no trusted public keys/);
  await rejects(bundle, { publicKeys: ["not a pem"] }, "untrusted-key", /trusted public key 1/);
  // The right key among others is found.
  const r = await verifyBundle(bundle, { publicKeys: [otherPem, key("signing-key-pub.pem")] });
  assert.equal(r.signer.keyFingerprint, KEY_FPR);
});

Deno.test("key bundles: hint matching (PEM hash, SPKI hash, none)", async () => {
  const pem = key("signing-key-pub.pem");
  const canonicalPem = new TextDecoder().decode(
    unb64(load("v1.0.1-elliptic-key").verificationMaterial.publicKey.rawBytes),
  );
  const withHint = (hint: unknown) => {
    const b = load("v1.0.1-elliptic-key");
    b.verificationMaterial.publicKey = hint === undefined ? {} : { hint };
    return b;
  };
  const pemHash = await sha256(new TextEncoder().encode(canonicalPem));
  for (const hint of [pemHash, KEY_FPR, null, undefined]) {
    const r = await verifyBundle(withHint(hint), { publicKeys: [pem] });
    assert.equal(r.signer.keyFingerprint, KEY_FPR, String(hint));
  }
  await rejects(withHint("00".repeat(32)), { publicKeys: [pem] }, "untrusted-key", /hint 0000/);
  await rejects(withHint(42), { publicKeys: [pem] }, "bad-bundle");
  // No hint and two trusted keys of which none verifies.
  const pair = await crypto.subtle.generateKey({ name: "ECDSA", namedCurve: "P-256" }, true, [
    "sign",
  ]);
  const spki = new Uint8Array(await crypto.subtle.exportKey("spki", pair.publicKey));
  const other = `-----BEGIN PUBLIC KEY-----\n${b64(spki)}\n-----END PUBLIC KEY-----\n`;
  const bad = withHint(null);
  bad.dsseEnvelope.payload = flip(bad.dsseEnvelope.payload, 3);
  await rejects(bad, { publicKeys: [other, pem] }, "bad-signature", /none of the 2 trusted/);
});

Deno.test("certificate bundles: wrong root, missing intermediate, no roots", async () => {
  const bundle = load("v1.0.1-certificate");
  // The leaf itself (a CA:TRUE certificate) as the only root: not an issuer of itself.
  await rejects(
    bundle,
    { certificateRoots: [key("signing-key-cert.pem")] },
    "untrusted-certificate",
    /does not lead to any of the 1 trusted roots \(chain ending at CN=intermediate-ca, issued by CN=root-ca\)/,
  );
  const noIntermediate = load("v1.0.1-certificate");
  noIntermediate.verificationMaterial.x509CertificateChain.certificates.length = 1;
  await rejects(
    noIntermediate,
    CERT_TRUST,
    "untrusted-certificate",
    /any of the 1 trusted roots \(leaf issued by CN=intermediate-ca\)/,
  );
  await rejects(bundle, {}, "untrusted-certificate", /no trusted root certificates/);
  await rejects(bundle, { certificateRoots: ["junk"] }, "untrusted-certificate", /certificate 1/);
  // Trusting the intermediate directly is allowed (it is a trust anchor).
  const r = await verifyBundle(bundle, { certificateRoots: [key("int-ca-cert.pem")] });
  assert.equal(r.signer.kind, "certificate");
});

Deno.test("certificate bundles: validity is checked at the leaf's notBefore (expired Fulcio leaf)", async () => {
  // A chain whose leaf expired long ago: certificate mode checks the path when
  // the leaf was issued, as model_signing does, so it still verifies.
  const keyless = load("v1.0.1-sigstore");
  const root = (await publicGoodTrustedRoot()) as Json;
  const fulcio = root.certificateAuthorities.at(-1).certChain.certificates;
  const bundle = {
    mediaType: "application/vnd.dev.sigstore.bundle.v0.3+json",
    verificationMaterial: {
      x509CertificateChain: {
        certificates: [keyless.verificationMaterial.certificate, fulcio[0]],
      },
    },
    dsseEnvelope: keyless.dsseEnvelope,
  };
  const rootPem = `-----BEGIN CERTIFICATE-----\n${
    fulcio.at(-1).rawBytes
  }\n-----END CERTIFICATE-----\n`;
  const r = await verifyBundle(bundle, { certificateRoots: [rootPem] });
  assert.equal(r.signer.kind, "certificate");
});

// --- Generated certificates (hand-built DER, WebCrypto keys) ------------------

function tlv(tag: number, ...parts: Uint8Array[]): Uint8Array {
  const len = parts.reduce((n, p) => n + p.length, 0);
  const head = len < 128 ? [len] : len < 256 ? [0x81, len] : [0x82, len >> 8, len & 0xff];
  const out = new Uint8Array(1 + head.length + len);
  out.set([tag, ...head]);
  let at = 1 + head.length;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}
const seq = (...p: Uint8Array[]) => tlv(0x30, ...p);
const text = (s: string) => new TextEncoder().encode(s);
function oid(dotted: string): Uint8Array {
  const arcs = dotted.split(".").map(Number);
  const out = [40 * arcs[0]! + arcs[1]!];
  for (const arc of arcs.slice(2)) {
    const b = [arc & 0x7f];
    for (let v = arc >> 7; v > 0; v >>= 7) b.unshift(0x80 | (v & 0x7f));
    out.push(...b);
  }
  return tlv(0x06, new Uint8Array(out));
}
const name = (cn: string) => seq(tlv(0x31, seq(oid("2.5.4.3"), tlv(0x0c, text(cn)))));
const utc = (d: Date) => tlv(0x17, text(d.toISOString().replace(/[-:T]/g, "").slice(2, 14) + "Z"));
function derInt(b: Uint8Array): Uint8Array {
  let i = 0;
  while (i < b.length - 1 && b[i] === 0 && (b[i + 1]! & 0x80) === 0) i++;
  const v = b.subarray(i);
  return tlv(0x02, ...((v[0]! & 0x80) !== 0 ? [new Uint8Array([0]), v] : [v]));
}
async function ecSign(key: CryptoKey, data: Uint8Array): Promise<Uint8Array> {
  const raw = new Uint8Array(
    await crypto.subtle.sign({ name: "ECDSA", hash: "SHA-256" }, key, data as BufferSource),
  );
  return seq(derInt(raw.subarray(0, 32)), derInt(raw.subarray(32)));
}

interface Issued {
  der: Uint8Array;
  keys: CryptoKeyPair;
}

async function makeCert(
  subject: string,
  issuer: { cn: string; key: CryptoKey } | undefined,
  opts: { ca?: boolean; email?: string; days?: number } = {},
): Promise<Issued> {
  const keys = await crypto.subtle.generateKey({ name: "ECDSA", namedCurve: "P-256" }, true, [
    "sign",
    "verify",
  ]) as CryptoKeyPair;
  const spki = new Uint8Array(await crypto.subtle.exportKey("spki", keys.publicKey));
  const alg = seq(oid("1.2.840.10045.4.3.2"));
  const exts: Uint8Array[] = [];
  if (opts.ca !== undefined) {
    const value = opts.ca ? seq(tlv(0x01, new Uint8Array([0xff]))) : seq();
    exts.push(seq(oid("2.5.29.19"), tlv(0x04, value)));
  }
  if (opts.email) exts.push(seq(oid("2.5.29.17"), tlv(0x04, seq(tlv(0x81, text(opts.email))))));
  // Leaves may sign code (extendedKeyUsage codeSigning), as model_signing requires.
  if (!opts.ca) exts.push(seq(oid("2.5.29.37"), tlv(0x04, seq(oid("1.3.6.1.5.5.7.3.3")))));
  const now = Date.now();
  const tbs = seq(
    tlv(0xa0, tlv(0x02, new Uint8Array([2]))),
    tlv(0x02, new Uint8Array([1])),
    alg,
    name(issuer?.cn ?? subject),
    seq(utc(new Date(now - 86400_000)), utc(new Date(now + (opts.days ?? 1) * 86400_000))),
    name(subject),
    spki,
    ...(exts.length ? [tlv(0xa3, seq(...exts))] : []),
  );
  const signature = await ecSign(issuer?.key ?? keys.privateKey, tbs);
  return { der: seq(tbs, alg, tlv(0x03, new Uint8Array([0]), signature)), keys };
}

const certPem = (der: Uint8Array) =>
  `-----BEGIN CERTIFICATE-----\n${b64(der)}\n-----END CERTIFICATE-----\n`;

async function chainBundle(leaf: Issued, chain: Uint8Array[]): Promise<Json> {
  const payload = text('{"_type":"https://in-toto.io/Statement/v1"}');
  const payloadType = "application/vnd.in-toto+json";
  const sig = await ecSign(leaf.keys.privateKey, dssePae(payloadType, payload));
  return {
    mediaType: "application/vnd.dev.sigstore.bundle.v0.3+json",
    verificationMaterial: {
      x509CertificateChain: {
        certificates: [leaf.der, ...chain].map((d) => ({ rawBytes: b64(d) })),
      },
    },
    dsseEnvelope: { payload: b64(payload), payloadType, signatures: [{ sig: b64(sig) }] },
  };
}

Deno.test("certificate bundles: generated chains check CA flags", async () => {
  const root = await makeCert("test-root", undefined, { ca: true, days: 30 });
  const rootIssuer = { cn: "test-root", key: root.keys.privateKey };
  const inter = await makeCert("test-int", rootIssuer, { ca: true });
  const leaf = await makeCert("test-leaf", { cn: "test-int", key: inter.keys.privateKey }, {
    email: "dev@example.com",
  });
  const trust = { certificateRoots: [certPem(root.der)] };
  const ok = await verifyBundle(await chainBundle(leaf, [inter.der]), trust);
  assert.deepEqual(ok.signer.identities, ["dev@example.com"]);
  // Chains that also carry the root, or repeat certificates, still verify.
  await verifyBundle(await chainBundle(leaf, [inter.der, root.der, inter.der, leaf.der]), trust);
  // Signed directly by the root.
  const direct = await makeCert("leaf2", rootIssuer, {});
  await verifyBundle(await chainBundle(direct, []), trust);

  // An intermediate that is not a CA, and one without basicConstraints.
  for (const ca of [false, undefined]) {
    const notCa = await makeCert("not-ca", rootIssuer, ca === undefined ? {} : { ca });
    const leaf2 = await makeCert("leaf3", { cn: "not-ca", key: notCa.keys.privateKey });
    await rejects(
      await chainBundle(leaf2, [notCa.der]),
      trust,
      "untrusted-certificate",
      /issuer CN=not-ca is not a CA/,
    );
  }
  // A forged intermediate with the right name but another key.
  const forged = await makeCert("test-int", undefined, { ca: true });
  const leaf4 = await makeCert("leaf4", { cn: "test-int", key: forged.keys.privateKey });
  await rejects(
    await chainBundle(leaf4, [inter.der]),
    trust,
    "untrusted-certificate",
    /leaf issued by CN=test-int/,
  );
});

// --- keyless negatives -------------------------------------------------------

Deno.test("keyless: trusted root without CAs or tlogs, or with other keys", async () => {
  const bundle = load("v1.0.1-sigstore");
  const root = (await publicGoodTrustedRoot()) as Json;
  await rejects(
    bundle,
    { trustedRoot: { ...root, certificateAuthorities: [] } },
    "untrusted-certificate",
    /CERTIFICATE_ERROR/,
  );
  await rejects(bundle, { trustedRoot: { ...root, tlogs: [] } }, "bad-tlog");
  // Rekor's key replaced by the CT log's key under Rekor's log id.
  const swapped = structuredClone(root);
  swapped.tlogs[0].publicKey.rawBytes = root.ctlogs.at(-1).publicKey.rawBytes;
  await rejects(bundle, { trustedRoot: swapped }, "bad-tlog", /TLOG_INCLUSION_PROMISE_ERROR/);
  // A Fulcio CA replaced by a fresh one.
  const fake = await makeCert("sigstore", undefined, { ca: true });
  const other = structuredClone(root);
  for (const ca of other.certificateAuthorities) {
    ca.certChain.certificates = [{ rawBytes: b64(fake.der) }];
  }
  await rejects(bundle, { trustedRoot: other }, "untrusted-certificate");
  await rejects(bundle, { trustedRoot: "nope" }, "untrusted-certificate", /trusted root/);
  await rejects(bundle, { trustedRoot: { tlogs: [{}] } }, "untrusted-certificate", /tlogs\[0\]/);
});

Deno.test("keyless: tampered tlog entries are bad-tlog", async () => {
  const tamper = async (edit: (entry: Json) => void, message?: RegExp) => {
    const b = load("v1.0.1-sigstore");
    edit(b.verificationMaterial.tlogEntries[0]);
    await rejects(b, KEYLESS_TRUST, "bad-tlog", message);
  };
  await tamper((e) => e.integratedTime = String(Number(e.integratedTime) + 1));
  await tamper((e) => e.logIndex = String(Number(e.logIndex) + 1));
  await tamper((e) => {
    const body = JSON.parse(atob(e.canonicalizedBody));
    body.spec.payloadHash.value = "00".repeat(32);
    e.canonicalizedBody = btoa(JSON.stringify(body));
  });
  await tamper((e) => e.inclusionProof.hashes[0] = flip(e.inclusionProof.hashes[0], 0));
  await tamper((e) => e.inclusionProof.rootHash = flip(e.inclusionProof.rootHash, 5));
  await tamper((e) => e.kindVersion.kind = "intoto", /kind\/version mismatch/);
  await tamper((e) => delete e.inclusionPromise, /TIMESTAMP_ERROR/);
  const none = load("v1.0.1-sigstore");
  none.verificationMaterial.tlogEntries = [];
  await rejects(none, KEYLESS_TRUST, "bad-tlog");
});

Deno.test("keyless verification leaves node:crypto.verify untouched", async () => {
  const before = nodeCrypto.verify;
  await verifyBundle(load("v1.0.0-sigstore"), KEYLESS_TRUST);
  await rejects(load("v1.0.0-sigstore"), { trustedRoot: { tlogs: [] } }, "untrusted-certificate");
  assert.equal(nodeCrypto.verify, before);
});

// --- malformed bundles -------------------------------------------------------

Deno.test("malformed bundles are bad-bundle", async () => {
  const cases: [string, (b: Json) => unknown][] = [
    ["null", () => null],
    ["array", (b) => [b]],
    ["string", () => "model.sig"],
    ["empty object", () => ({})],
    ["no mediaType", (b) => (delete b.mediaType, b)],
    ["other mediaType", (b) => (b.mediaType = "application/json", b)],
    ["no envelope", (b) => (delete b.dsseEnvelope, b)],
    ["message signature", (b) => (delete b.dsseEnvelope, b.messageSignature = {}, b)],
    ["payload not base64", (b) => (b.dsseEnvelope.payload = "!!!", b)],
    ["payload number", (b) => (b.dsseEnvelope.payload = 5, b)],
    ["payloadType missing", (b) => (delete b.dsseEnvelope.payloadType, b)],
    ["no signatures", (b) => (b.dsseEnvelope.signatures = [], b)],
    ["two signatures", (b) => (b.dsseEnvelope.signatures.push(b.dsseEnvelope.signatures[0]), b)],
    ["sig not base64", (b) => (b.dsseEnvelope.signatures[0].sig = "a b", b)],
    ["signatures object", (b) => (b.dsseEnvelope.signatures = {}, b)],
    ["no material", (b) => (b.verificationMaterial = {}, b)],
    ["material array", (b) => (b.verificationMaterial = [], b)],
  ];
  for (const dir of ["v1.0.1-elliptic-key", "v1.0.1-certificate", "v1.0.1-sigstore"]) {
    for (const [what, make] of cases) {
      const e = await rejects(make(load(dir)), {
        ...KEY_TRUST,
        ...CERT_TRUST,
      }, "bad-bundle");
      assert.match(e.message, /Cannot read signature bundle: /, what);
    }
  }
  const specific: [string, (b: Json) => unknown][] = [
    ["key rawBytes not base64", (b) => (b.verificationMaterial.publicKey.rawBytes = "%%", b)],
    ["key and cert", (b) => (b.verificationMaterial.certificate = { rawBytes: "AA==" }, b)],
  ];
  for (const [what, make] of specific) {
    await rejects(make(load("v1.0.1-elliptic-key")), KEY_TRUST, "bad-bundle", undefined).catch((
      e,
    ) => assert.fail(`${what}: ${e}`));
  }
  const chain = (edit: (c: Json[]) => void) => {
    const b = load("v1.0.1-certificate");
    edit(b.verificationMaterial.x509CertificateChain.certificates);
    return b;
  };
  await rejects(chain((c) => c.length = 0), CERT_TRUST, "bad-bundle", /1 to 8 certificates/);
  await rejects(chain((c) => c[0].rawBytes = "AAAA"), CERT_TRUST, "bad-bundle", /X\.509/);
  await rejects(chain((c) => c[1] = {}), CERT_TRUST, "bad-bundle", /certificates\[1\]/);
  const truncated = load("v1.0.1-certificate");
  const der = unb64(truncated.verificationMaterial.x509CertificateChain.certificates[0].rawBytes);
  truncated.verificationMaterial.x509CertificateChain.certificates[0].rawBytes = b64(
    der.subarray(0, 300),
  );
  await rejects(truncated, CERT_TRUST, "bad-bundle");
  const keyless = load("v1.0.1-sigstore");
  keyless.verificationMaterial.certificate.rawBytes = "AAAA";
  await rejects(keyless, KEYLESS_TRUST, "bad-bundle");
  const tlog = load("v1.0.1-sigstore");
  tlog.verificationMaterial.tlogEntries = "x";
  await rejects(tlog, KEYLESS_TRUST, "bad-bundle");
});

Deno.test("mutated bundles never crash (seeded, time-bounded)", async () => {
  let seed = 0x5eed;
  const rand = (n: number) => {
    seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
    return (seed >>> 8) % n;
  };
  const trust: TrustMaterial = { ...KEY_TRUST, ...CERT_TRUST };
  const texts = ["v1.0.1-elliptic-key", "v1.0.1-certificate", "v1.0.1-sigstore"].map((d) =>
    Deno.readTextFileSync(new URL(`${d}/model.sig`, OMS))
  );
  const alphabet = 'AZaz09+/="{}[],:0 ';
  const deadline = Date.now() + 2500;
  let runs = 0;
  let parsed = 0;
  while (Date.now() < deadline) {
    const chars = [...texts[rand(texts.length)]!];
    for (let k = 1 + rand(3); k > 0; k--) {
      chars[rand(chars.length)] = alphabet[rand(alphabet.length)]!;
    }
    runs++;
    let json: unknown;
    try {
      json = JSON.parse(chars.join(""));
    } catch {
      continue;
    }
    parsed++;
    try {
      await verifyBundle(json, trust);
    } catch (e) {
      assert.ok(e instanceof InvalidSignature, `mutation ${runs} threw ${e}`);
    }
  }
  assert.ok(parsed > 50, `only ${parsed} of ${runs} mutations parsed`);
});
