import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import nodeCrypto, { createPublicKey, generateKeyPairSync, type KeyObject } from "node:crypto";
import { bundleFromJSON } from "@sigstore/bundle";
import { X509Certificate } from "@sigstore/core";
import { toSignedEntity, toTrustMaterial, Verifier, type VerifierOptions } from "@sigstore/verify";
import { TrustedRoot } from "npm:@sigstore/protobuf-specs@0.5.2";
import { certificateSigner } from "../../sign/certificate_signer.ts";
import { keySigner } from "../../sign/key_signer.ts";
import {
  DEFAULT_FULCIO_URL,
  DEFAULT_REKOR_URL,
  sigstoreSigner,
} from "../../sign/sigstore_signer.ts";
import type { SigstoreBundle } from "../../sign/types.ts";
import { type LocalSigstore, startLocalSigstore } from "./_local_sigstore.ts";

const FIXTURES = new URL("../../../shared/fixtures/oms/", import.meta.url);
const read = (path: string) => Deno.readTextFileSync(new URL(path, FIXTURES));
const INTOTO = "application/vnd.in-toto+json";
const V03 = "application/vnd.dev.sigstore.bundle.v0.3+json";
const PAYLOAD = new TextEncoder().encode(
  '{"_type":"https://in-toto.io/Statement/v1","subject":[{"name":"m","digest":{"sha256":"00"}}]}',
);

// ---------------------------------------------------------------- helpers

/** The first PEM block of `text` with `label`, as PEM (fixtures carry a text dump before it). */
function pemBlock(text: string, label: string): string {
  const match = text.match(
    new RegExp(`-----BEGIN ${label}-----[\\s\\S]*?-----END ${label}-----\\n?`),
  );
  assert.ok(match, `no ${label} block`);
  return match[0];
}

function b64(text: string): Uint8Array<ArrayBuffer> {
  return new Uint8Array(Buffer.from(text, "base64"));
}

function hex(bytes: ArrayBuffer): string {
  return Buffer.from(bytes).toString("hex");
}

async function sha256Hex(data: Uint8Array<ArrayBuffer>): Promise<string> {
  return hex(await crypto.subtle.digest("SHA-256", data));
}

/** PAE written independently of the code under test. */
function pae(type: string, body: Uint8Array): Uint8Array<ArrayBuffer> {
  const head = Buffer.from(`DSSEv1 ${Buffer.byteLength(type)} ${type} ${body.length} `);
  return new Uint8Array(Buffer.concat([head, body]));
}

/** DER ECDSA-Sig-Value to P1363 `r || s` (scalars of `size` bytes). */
function derToP1363(der: Uint8Array, size: number): Uint8Array<ArrayBuffer> {
  assert.equal(der[0], 0x30, "signature is not a DER SEQUENCE");
  assert.equal(der[1], der.length - 2, "DER length mismatch");
  const out = new Uint8Array(2 * size);
  let at = 2;
  for (const slot of [0, 1]) {
    assert.equal(der[at], 0x02, "expected an INTEGER");
    const len = der[at + 1] ?? 0;
    let int = der.subarray(at + 2, at + 2 + len);
    while (int.length > size && int[0] === 0) int = int.subarray(1);
    assert.ok(int.length <= size, "integer too long");
    out.set(int, slot * size + size - int.length);
    at += 2 + len;
  }
  assert.equal(at, der.length, "trailing bytes after the signature");
  return out;
}

const CURVES = { "P-256": ["SHA-256", 32], "P-384": ["SHA-384", 48] } as const;

/** Verifies a bundle's DSSE signature with WebCrypto, given the signer's SPKI. */
async function dsseVerifies(
  bundle: SigstoreBundle,
  spki: Uint8Array<ArrayBuffer>,
  curve: "P-256" | "P-384",
): Promise<boolean> {
  const [hash, size] = CURVES[curve];
  const key = await crypto.subtle.importKey(
    "spki",
    spki,
    { name: "ECDSA", namedCurve: curve },
    false,
    [
      "verify",
    ],
  );
  const envelope = bundle.dsseEnvelope;
  assert.equal(envelope.signatures.length, 1);
  const sig = derToP1363(b64(envelope.signatures[0]?.sig ?? ""), size);
  return crypto.subtle.verify(
    { name: "ECDSA", hash },
    key,
    sig,
    pae(envelope.payloadType, b64(envelope.payload)),
  );
}

function spkiOfPem(pem: string): Uint8Array<ArrayBuffer> {
  return new Uint8Array(createPublicKey(pem).export({ type: "spki", format: "der" }));
}

async function freshP256Pem(): Promise<{ pem: string; spki: Uint8Array<ArrayBuffer> }> {
  const pair = await crypto.subtle.generateKey({ name: "ECDSA", namedCurve: "P-256" }, true, [
    "sign",
    "verify",
  ]);
  const pkcs8 = Buffer.from(await crypto.subtle.exportKey("pkcs8", pair.privateKey));
  const body = pkcs8.toString("base64").replace(/.{64}/g, "$&\n");
  return {
    pem: `-----BEGIN PRIVATE KEY-----\n${body}\n-----END PRIVATE KEY-----\n`,
    spki: new Uint8Array(await crypto.subtle.exportKey("spki", pair.publicKey)),
  };
}

function tamper(bundle: SigstoreBundle): SigstoreBundle {
  const copy = structuredClone(bundle);
  copy.dsseEnvelope.payload = Buffer.from('{"tampered":true}').toString("base64");
  return copy;
}

// Deno 2.9's node:crypto.verify(null, data, ecKey, sig) throws where Node
// picks a digest, and @sigstore/core swallows that as "invalid". While the
// verifier runs, choose the hash from the curve, as Sigstore pairs them.
const CURVE_HASH: Record<string, string> = {
  prime256v1: "sha256",
  secp384r1: "sha384",
  secp521r1: "sha512",
};

function withEcDigestWorkaround<T>(run: () => T): T {
  const original = nodeCrypto.verify;
  const patched = (
    algorithm: string | null | undefined,
    data: Uint8Array,
    key: KeyObject | string | Uint8Array,
    signature: Uint8Array,
  ) => {
    let digest = algorithm;
    if (digest === null || digest === undefined) {
      const keyObject = typeof key === "object" && "asymmetricKeyType" in key
        ? key
        : createPublicKey(key as string);
      if (keyObject.asymmetricKeyType === "ec") {
        digest = CURVE_HASH[keyObject.asymmetricKeyDetails?.namedCurve ?? ""];
      }
    }
    return (original as (...args: unknown[]) => boolean)(digest, data, key, signature);
  };
  (nodeCrypto as { verify: unknown }).verify = patched;
  try {
    return run();
  } finally {
    (nodeCrypto as { verify: unknown }).verify = original;
  }
}

/** Verifies a keyless bundle offline with @sigstore/verify against `trustedRoot`. */
function sigstoreVerify(
  bundle: SigstoreBundle,
  trustedRoot: unknown,
  policy: { email: string; issuer: string },
  options: VerifierOptions = {},
) {
  const trust = toTrustMaterial(TrustedRoot.fromJSON(trustedRoot));
  const entity = toSignedEntity(bundleFromJSON(bundle));
  return withEcDigestWorkaround(() =>
    new Verifier(trust, options).verify(entity, {
      subjectAlternativeName: policy.email,
      extensions: { issuer: policy.issuer },
    })
  );
}

// ---------------------------------------------------------------- keySigner

Deno.test("keySigner: P-384 SEC1 key makes a model_signing-shaped bundle that verifies", async () => {
  const pubPem = pemBlock(read("keys/signing-key-pub.pem"), "PUBLIC KEY");
  const bundle = await keySigner(read("keys/signing-key.pem")).sign(PAYLOAD, INTOTO);

  assert.equal(bundle.mediaType, V03);
  assert.deepEqual(Object.keys(bundle.verificationMaterial).sort(), ["publicKey", "tlogEntries"]);
  const hint = (bundle.verificationMaterial.publicKey as { hint: string }).hint;
  // model_signing's hint is the SHA-256 hex of the public key PEM ...
  assert.equal(hint, await sha256Hex(new TextEncoder().encode(pubPem)));
  // ... the same PEM older model_signing stored as rawBytes in the vectors.
  const vector = JSON.parse(read("v1.0.1-elliptic-key/model.sig"));
  assert.equal(hint, await sha256Hex(b64(vector.verificationMaterial.publicKey.rawBytes)));
  assert.equal(bundle.dsseEnvelope.payloadType, INTOTO);
  assert.deepEqual(b64(bundle.dsseEnvelope.payload), PAYLOAD);
  assert.equal(bundle.dsseEnvelope.signatures[0]?.keyid, "");

  assert.ok(await dsseVerifies(bundle, spkiOfPem(pubPem), "P-384"));
  assert.equal(await dsseVerifies(tamper(bundle), spkiOfPem(pubPem), "P-384"), false);
});

Deno.test("keySigner: the test verifier accepts the model_signing P-384 vectors (same format)", async () => {
  const spki = spkiOfPem(pemBlock(read("keys/signing-key-pub.pem"), "PUBLIC KEY"));
  for (const dir of ["v1.0.0-elliptic-key", "v1.0.1-elliptic-key"]) {
    const vector = JSON.parse(read(`${dir}/model.sig`)) as SigstoreBundle;
    assert.ok(await dsseVerifies(vector, spki, "P-384"), dir);
  }
});

Deno.test("keySigner: fresh P-256 PKCS#8 key signs with SHA-256", async () => {
  const { pem, spki } = await freshP256Pem();
  const signer = keySigner(pem);
  const a = await signer.sign(PAYLOAD, INTOTO);
  const b = await signer.sign(new TextEncoder().encode("other"), "text/plain");
  const pubPem = createPublicKey(pem).export({ type: "spki", format: "pem" }) as string;
  assert.equal(
    (a.verificationMaterial.publicKey as { hint: string }).hint,
    await sha256Hex(new TextEncoder().encode(pubPem)),
  );
  assert.ok(await dsseVerifies(a, spki, "P-256"));
  assert.ok(await dsseVerifies(b, spki, "P-256"));
  assert.equal(b.dsseEnvelope.payloadType, "text/plain");
  // Each bundle has its own material.
  assert.notEqual(a.verificationMaterial, b.verificationMaterial);
  // Signed with SHA-256, so a SHA-384 check must fail.
  const key = await crypto.subtle.importKey(
    "spki",
    spki,
    { name: "ECDSA", namedCurve: "P-256" },
    false,
    [
      "verify",
    ],
  );
  const sig = derToP1363(b64(a.dsseEnvelope.signatures[0]?.sig ?? ""), 32);
  assert.equal(
    await crypto.subtle.verify({ name: "ECDSA", hash: "SHA-384" }, key, sig, pae(INTOTO, PAYLOAD)),
    false,
  );
});

Deno.test("keySigner: refuses keys it cannot use", async () => {
  const k1 = generateKeyPairSync("ec", { namedCurve: "secp256k1" }).privateKey
    .export({ type: "pkcs8", format: "pem" }) as string;
  const ed = generateKeyPairSync("ed25519").privateKey.export({
    type: "pkcs8",
    format: "pem",
  }) as string;
  const cases: [string, RegExp][] = [
    [read("keys/ca-priv.pem"), /found "RSA PRIVATE KEY"/],
    [read("keys/signing-key-pub.pem"), /found "PUBLIC KEY"/],
    ["not a key", /found none/],
    ["-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n", /could not be parsed/],
    [k1, /expected curve P-256, P-384 or P-521, found secp256k1/],
    [ed, /expected an EC key/],
  ];
  for (const [pem, message] of cases) {
    assert.throws(
      () => keySigner(pem),
      (e: unknown) => e instanceof TypeError && message.test(e.message),
    );
  }
  const signer = keySigner((await freshP256Pem()).pem);
  await assert.rejects(signer.sign("text" as unknown as Uint8Array, INTOTO), TypeError);
  await assert.rejects(signer.sign(PAYLOAD, ""), TypeError);
});

// ---------------------------------------------------------------- certificateSigner

Deno.test("certificateSigner: writes the chain as model_signing does and the leaf key verifies", async () => {
  const leafPem = read("keys/signing-key-cert.pem");
  const signer = certificateSigner(read("keys/signing-key.pem"), [
    leafPem,
    read("keys/int-ca-cert.pem"),
  ]);
  const bundle = await signer.sign(PAYLOAD, INTOTO);

  assert.equal(bundle.mediaType, V03);
  const chain = bundle.verificationMaterial.x509CertificateChain as {
    certificates: { rawBytes: string }[];
  };
  // Byte-identical to the chain model_signing wrote for the same files.
  const vector = JSON.parse(read("v1.0.1-certificate/model.sig"));
  assert.deepEqual(chain, vector.verificationMaterial.x509CertificateChain);
  assert.equal(chain.certificates.length, 2);
  assert.equal(bundle.dsseEnvelope.signatures[0]?.keyid, "");

  const leaf = X509Certificate.parse(Buffer.from(b64(chain.certificates[0]?.rawBytes ?? "")));
  const spki = new Uint8Array(leaf.publicKey);
  assert.ok(await dsseVerifies(bundle, spki, "P-384"));
  assert.equal(await dsseVerifies(tamper(bundle), spki, "P-384"), false);
  // The intermediate really issued the leaf.
  const intermediate = X509Certificate.parse(
    Buffer.from(b64(chain.certificates[1]?.rawBytes ?? "")),
  );
  assert.ok(leaf.verify(intermediate));
  // And the vector's own signature verifies the same way.
  assert.ok(await dsseVerifies(vector, spki, "P-384"));
});

Deno.test("certificateSigner: one PEM text may hold the whole chain", async () => {
  const joined = read("keys/signing-key-cert.pem") + read("keys/int-ca-cert.pem");
  const bundle = await certificateSigner(read("keys/signing-key.pem"), [joined]).sign(
    PAYLOAD,
    INTOTO,
  );
  const vector = JSON.parse(read("v1.0.1-certificate/model.sig"));
  assert.deepEqual(
    bundle.verificationMaterial.x509CertificateChain,
    vector.verificationMaterial.x509CertificateChain,
  );
});

Deno.test("certificateSigner: refuses a leaf that is not the key's, and bad chains", async () => {
  const { pem } = await freshP256Pem();
  const leaf = read("keys/signing-key-cert.pem");
  assert.throws(
    () => certificateSigner(pem, [leaf]),
    (e: unknown) => e instanceof TypeError && /does not match the private key/.test(e.message),
  );
  // The intermediate first: its key is not the signing key either.
  assert.throws(
    () => certificateSigner(read("keys/signing-key.pem"), [read("keys/int-ca-cert.pem"), leaf]),
    /does not match the private key/,
  );
  assert.throws(
    () => certificateSigner(read("keys/signing-key.pem"), []),
    /at least the signing certificate/,
  );
  assert.throws(
    () => certificateSigner(read("keys/signing-key.pem"), [leaf, read("keys/signing-key-pub.pem")]),
    /found "PUBLIC KEY"/,
  );
  assert.throws(
    () =>
      certificateSigner(read("keys/signing-key.pem"), [
        "-----BEGIN CERTIFICATE-----\nMAA=\n-----END CERTIFICATE-----\n",
      ]),
    /could not be parsed/,
  );
  assert.throws(() => certificateSigner(read("keys/ca-priv.pem"), [leaf]), TypeError);
});

// ---------------------------------------------------------------- sigstoreSigner

const EMAIL = "alice@example.com";
const ISSUER = "https://issuer.example.com";
const ISSUER_V2_OID = "1.3.6.1.4.1.57264.1.8";
const TOKEN_ENV = [
  "SIGSTORE_ID_TOKEN",
  "ACTIONS_ID_TOKEN_REQUEST_URL",
  "ACTIONS_ID_TOKEN_REQUEST_TOKEN",
];

/** Runs `fn` with the token environment variables set as given (others unset). */
async function withTokenEnv(values: Record<string, string>, fn: () => Promise<void>) {
  const saved = TOKEN_ENV.map((name) => [name, Deno.env.get(name)] as const);
  try {
    for (const name of TOKEN_ENV) {
      const value = values[name];
      if (value === undefined) Deno.env.delete(name);
      else Deno.env.set(name, value);
    }
    await fn();
  } finally {
    for (const [name, value] of saved) {
      if (value === undefined) Deno.env.delete(name);
      else Deno.env.set(name, value);
    }
  }
}

async function withSigstore(fn: (s: LocalSigstore) => Promise<void>) {
  const local = await startLocalSigstore();
  try {
    await fn(local);
  } finally {
    await local.close();
  }
}

function leafOf(bundle: SigstoreBundle): X509Certificate {
  const cert = bundle.verificationMaterial.certificate as { rawBytes: string } | undefined;
  assert.ok(cert, "no certificate in the bundle");
  return X509Certificate.parse(Buffer.from(b64(cert.rawBytes)));
}

Deno.test("sigstoreSigner: exports the public-good URLs", () => {
  assert.equal(DEFAULT_FULCIO_URL, "https://fulcio.sigstore.dev");
  assert.equal(DEFAULT_REKOR_URL, "https://rekor.sigstore.dev");
  assert.throws(() => sigstoreSigner({ rekorURL: "not a url" }), TypeError);
});

Deno.test("sigstoreSigner: keyless bundle with Fulcio cert, tlog entry and RFC 3161 timestamp verifies offline", async () => {
  await withSigstore(async (local) => {
    const signer = sigstoreSigner({
      identityToken: local.token(EMAIL, ISSUER),
      fulcioURL: local.fulcioURL,
      rekorURL: local.rekorURL,
      tsaURL: local.tsaURL,
    });
    const bundle = await signer.sign(PAYLOAD, INTOTO);

    assert.equal(bundle.mediaType, V03);
    assert.deepEqual(b64(bundle.dsseEnvelope.payload), PAYLOAD);
    const leaf = leafOf(bundle);
    assert.equal(leaf.subjectAltName, EMAIL);
    const issuerExt = leaf.extension(ISSUER_V2_OID);
    assert.ok(issuerExt, "no issuer (v2) extension");
    assert.ok(Buffer.from(issuerExt.value).toString("latin1").endsWith(ISSUER));
    assert.ok(await dsseVerifies(bundle, new Uint8Array(leaf.publicKey), "P-256"));

    const tlog = bundle.verificationMaterial.tlogEntries as {
      kindVersion: { kind: string; version: string };
      canonicalizedBody: string;
      inclusionPromise?: unknown;
    }[];
    assert.equal(tlog.length, 1);
    assert.deepEqual(tlog[0]?.kindVersion, { kind: "dsse", version: "0.0.1" });
    assert.ok(tlog[0]?.inclusionPromise);
    const body = JSON.parse(Buffer.from(tlog[0]?.canonicalizedBody ?? "", "base64").toString());
    assert.equal(body.spec.payloadHash.value, await sha256Hex(PAYLOAD));
    assert.equal(body.spec.signatures[0].signature, bundle.dsseEnvelope.signatures[0]?.sig);
    const timestamps = (bundle.verificationMaterial.timestampVerificationData as {
      rfc3161Timestamps: unknown[];
    }).rfc3161Timestamps;
    assert.equal(timestamps.length, 1);

    // Offline verification: chain to the local CA, SCT, tlog SET, inclusion
    // proof, TSA timestamp, DSSE signature and identity policy. Two
    // timestamps required: the tlog's integrated time and the TSA's.
    const signerInfo = sigstoreVerify(bundle, local.trustedRoot, { email: EMAIL, issuer: ISSUER }, {
      timestampThreshold: 2,
    });
    assert.equal(signerInfo.identity?.subjectAlternativeName, EMAIL);
    assert.equal(signerInfo.identity?.extensions?.issuer, ISSUER);

    // Each of these must fail.
    assert.throws(
      () => sigstoreVerify(tamper(bundle), local.trustedRoot, { email: EMAIL, issuer: ISSUER }),
      /DSSE payload hash mismatch/,
    );
    assert.throws(
      () =>
        sigstoreVerify(bundle, local.trustedRoot, { email: "mallory@example.com", issuer: ISSUER }),
      /expected mallory@example\.com, got alice@example\.com/,
    );
    assert.throws(
      () => sigstoreVerify(bundle, local.trustedRoot, { email: EMAIL, issuer: "https://evil" }),
      /expected issuer=https:\/\/evil/,
    );
    await withSigstore((other) => {
      assert.throws(
        () => sigstoreVerify(bundle, other.trustedRoot, { email: EMAIL, issuer: ISSUER }),
        /timestamp could not be verified/,
      );
      return Promise.resolve();
    });
    const noTsa = structuredClone(bundle);
    (noTsa.verificationMaterial.timestampVerificationData as { rfc3161Timestamps: unknown[] })
      .rfc3161Timestamps = [];
    assert.throws(
      () =>
        sigstoreVerify(noTsa, local.trustedRoot, { email: EMAIL, issuer: ISSUER }, {
          timestampThreshold: 2,
        }),
      /timestamp/i,
    );
  });
});

Deno.test("sigstoreSigner: without tsaURL there is no RFC 3161 timestamp, still verifies", async () => {
  await withSigstore(async (local) => {
    const bundle = await sigstoreSigner({
      identityToken: local.token(EMAIL, ISSUER),
      fulcioURL: local.fulcioURL,
      rekorURL: local.rekorURL,
    }).sign(PAYLOAD, INTOTO);
    const data = bundle.verificationMaterial.timestampVerificationData as
      | { rfc3161Timestamps?: unknown[] }
      | undefined;
    assert.equal(data?.rfc3161Timestamps?.length ?? 0, 0);
    sigstoreVerify(bundle, local.trustedRoot, { email: EMAIL, issuer: ISSUER });
  });
});

Deno.test("sigstoreSigner: token from SIGSTORE_ID_TOKEN, then GitHub Actions, else TypeError", async () => {
  await withSigstore(async (local) => {
    const urls = { fulcioURL: local.fulcioURL, rekorURL: local.rekorURL };

    await withTokenEnv({}, async () => {
      const error = await sigstoreSigner(urls).sign(PAYLOAD, INTOTO).then(
        () => undefined,
        (e: unknown) => e,
      );
      assert.ok(error instanceof TypeError);
      for (const source of ["identityToken", "SIGSTORE_ID_TOKEN", "ACTIONS_ID_TOKEN_REQUEST_URL"]) {
        assert.match(error.message, new RegExp(source));
      }
    });

    await withTokenEnv({ SIGSTORE_ID_TOKEN: local.token("env@example.com", ISSUER) }, async () => {
      const bundle = await sigstoreSigner(urls).sign(PAYLOAD, INTOTO);
      assert.equal(leafOf(bundle).subjectAltName, "env@example.com");
      // An explicit token wins over the environment.
      const explicit = await sigstoreSigner({ ...urls, identityToken: local.token(EMAIL, ISSUER) })
        .sign(PAYLOAD, INTOTO);
      assert.equal(leafOf(explicit).subjectAltName, EMAIL);
    });

    const gha = {
      ACTIONS_ID_TOKEN_REQUEST_URL: "http://127.0.0.1:9/token?api-version=2.0",
      ACTIONS_ID_TOKEN_REQUEST_TOKEN: "runtime-secret",
    };
    await withTokenEnv(gha, async () => {
      const requests: { url: string; auth: string | null }[] = [];
      const fakeFetch = (input: RequestInfo | URL, init?: RequestInit) => {
        requests.push({
          url: String(input),
          auth: new Headers(init?.headers).get("authorization"),
        });
        const value = local.token("ci@example.com", "https://token.actions.githubusercontent.com");
        return Promise.resolve(Response.json({ value }));
      };
      const bundle = await sigstoreSigner({ ...urls, fetch: fakeFetch as typeof fetch })
        .sign(PAYLOAD, INTOTO);
      assert.equal(leafOf(bundle).subjectAltName, "ci@example.com");
      assert.equal(requests.length, 1);
      const url = new URL(requests[0]?.url ?? "");
      assert.equal(url.searchParams.get("audience"), "sigstore");
      assert.equal(url.searchParams.get("api-version"), "2.0");
      assert.equal(requests[0]?.auth, "Bearer runtime-secret");

      const failing = () => Promise.resolve(new Response("nope", { status: 403 }));
      await assert.rejects(
        sigstoreSigner({ ...urls, fetch: failing as typeof fetch }).sign(PAYLOAD, INTOTO),
        /GitHub Actions OIDC token: the token service answered HTTP 403/,
      );
    });
  });
});

Deno.test("sigstoreSigner: service failures are reported with the step", async () => {
  await withSigstore(async (local) => {
    const token = local.token(EMAIL, ISSUER);
    // A token without subject is refused, and the message does not echo it.
    const secret = `x.${Buffer.from('{"secret":1}').toString("base64url")}.`;
    await assert.rejects(
      sigstoreSigner({
        identityToken: secret,
        fulcioURL: local.fulcioURL,
        rekorURL: local.rekorURL,
      })
        .sign(PAYLOAD, INTOTO),
      (e: unknown) =>
        e instanceof Error &&
        /^Cannot sign with Sigstore: IDENTITY_TOKEN_PARSE_ERROR/.test(e.message) &&
        !e.message.includes(secret),
    );
    await assert.rejects(
      sigstoreSigner({
        identityToken: token,
        fulcioURL: `${local.fulcioURL}/missing`,
        rekorURL: local.rekorURL,
      })
        .sign(PAYLOAD, INTOTO),
      /Cannot sign with Sigstore: CA_CREATE_SIGNING_CERTIFICATE_ERROR/,
    );
    await assert.rejects(
      sigstoreSigner({
        identityToken: token,
        fulcioURL: local.fulcioURL,
        rekorURL: `${local.rekorURL}/missing`,
      })
        .sign(PAYLOAD, INTOTO),
      /Cannot sign with Sigstore: TLOG_CREATE_ENTRY_ERROR/,
    );
    await assert.rejects(
      sigstoreSigner({ identityToken: "", fulcioURL: local.fulcioURL }).sign(PAYLOAD, INTOTO),
      TypeError,
    );
  });
});

// ---------------------------------------------------------------- verifyBundle

Deno.test("verifyBundle accepts what the three signers produce", async () => {
  const { verifyBundle } = await import("../../sign/_verify_bundle.ts");
  const pubPem = pemBlock(read("keys/signing-key-pub.pem"), "PUBLIC KEY");

  const keyBundle = await keySigner(read("keys/signing-key.pem")).sign(PAYLOAD, INTOTO);
  const byKey = await verifyBundle(keyBundle, { publicKeys: [pubPem] });
  assert.deepEqual(byKey.payload, PAYLOAD);
  assert.equal(byKey.payloadType, INTOTO);
  assert.equal(byKey.signer.kind, "key");
  assert.equal(byKey.signer.keyFingerprint, await sha256Hex(spkiOfPem(pubPem)));
  await assert.rejects(verifyBundle(tamper(keyBundle), { publicKeys: [pubPem] }));

  const certBundle = await certificateSigner(read("keys/signing-key.pem"), [
    read("keys/signing-key-cert.pem"),
    read("keys/int-ca-cert.pem"),
  ]).sign(PAYLOAD, INTOTO);
  const byCert = await verifyBundle(certBundle, {
    certificateRoots: [pemBlock(read("keys/ca-cert.pem"), "CERTIFICATE")],
  });
  assert.equal(byCert.signer.kind, "certificate");
  assert.deepEqual(byCert.payload, PAYLOAD);

  await withSigstore(async (local) => {
    const bundle = await sigstoreSigner({
      identityToken: local.token(EMAIL, ISSUER),
      fulcioURL: local.fulcioURL,
      rekorURL: local.rekorURL,
      tsaURL: local.tsaURL,
    }).sign(PAYLOAD, INTOTO);
    const keyless = await verifyBundle(bundle, { trustedRoot: local.trustedRoot });
    assert.equal(keyless.signer.kind, "keyless");
    assert.deepEqual(keyless.signer.identities, [EMAIL]);
    assert.equal(keyless.signer.issuer, ISSUER);
    assert.ok(keyless.signer.signedAt instanceof Date);
    assert.deepEqual(keyless.payload, PAYLOAD);
    await assert.rejects(verifyBundle(tamper(bundle), { trustedRoot: local.trustedRoot }));
  });
});

Deno.test("keySigner(): P-521 keys (SHA-512) and encrypted PKCS#8 keys sign bundles that verify", async () => {
  const { keySigner, certificateSigner } = await import("../../sign/mod.ts");
  const { verifyBundle } = await import("../../sign/_verify_bundle.ts");
  const { generateKeyPairSync } = await import("node:crypto");
  const payload = new TextEncoder().encode('{"x":1}');
  for (let round = 0; round < 8; round++) {
    // Several keys: some P-521 signatures need a long-form DER length.
    const { privateKey, publicKey } = generateKeyPairSync("ec", { namedCurve: "secp521r1" });
    const pem = privateKey.export({ type: "pkcs8", format: "pem" }) as string;
    const pub = publicKey.export({ type: "spki", format: "pem" }) as string;
    const bundle = await keySigner(pem).sign(payload, "application/vnd.in-toto+json");
    const v = await verifyBundle(bundle, { publicKeys: [pub] });
    assert.equal(v.signer.kind, "key");
  }
  const { privateKey, publicKey } = generateKeyPairSync("ec", { namedCurve: "prime256v1" });
  const encrypted = privateKey.export({
    type: "pkcs8",
    format: "pem",
    cipher: "aes-256-cbc",
    passphrase: "hunter2",
  }) as string;
  assert.match(encrypted, /ENCRYPTED PRIVATE KEY/);
  assert.throws(
    () => keySigner(encrypted),
    (e) => e instanceof TypeError && /encrypted/.test(e.message),
  );
  assert.throws(
    () => keySigner(encrypted, { password: "wrong" }),
    (e) => e instanceof TypeError && /wrong password/.test(e.message),
  );
  const bundle = await keySigner(encrypted, { password: "hunter2" }).sign(
    payload,
    "application/vnd.in-toto+json",
  );
  const pub = publicKey.export({ type: "spki", format: "pem" }) as string;
  assert.equal((await verifyBundle(bundle, { publicKeys: [pub] })).signer.kind, "key");
  assert.throws(() => certificateSigner(encrypted, []), /encrypted/);
});
