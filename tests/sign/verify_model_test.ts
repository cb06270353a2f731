import assert from "node:assert/strict";
import {
  certificateSigner,
  HashMismatch,
  InvalidSignature,
  Issuer,
  keySigner,
  SignatureMissing,
  signModel,
  verifyModel,
} from "../../sign/mod.ts";
import type { TrustPolicy } from "../../sign/mod.ts";
import { fixture } from "../_helpers.ts";

const keys = (f: string) => Deno.readTextFile(fixture(`oms/keys/${f}`));
const KEY_POLICY: TrustPolicy = { publicKeys: [await keys("signing-key-pub.pem")] };
const CERT_POLICY: TrustPolicy = { certificateRoots: [await keys("ca-cert.pem")] };
const KEYLESS_POLICY: TrustPolicy = {
  signers: [
    Issuer({ identity: "stefanb@us.ibm.com", issuer: "https://sigstore.verify.ibm.com/oauth2" }),
  ],
};

/** Each OMS vector: its folder, policy, and how model_signing was told to sign it. */
const VECTORS: { dir: string; policy: TrustPolicy; ignore?: string[]; file?: string }[] = [
  { dir: "v1.0.0-elliptic-key", policy: KEY_POLICY, file: "signme-1" },
  { dir: "v1.0.1-elliptic-key", policy: KEY_POLICY, ignore: ["ignore-me"] },
  { dir: "v1.0.0-certificate", policy: CERT_POLICY },
  { dir: "v1.0.1-certificate", policy: CERT_POLICY, ignore: ["ignore-me"] },
  { dir: "v1.0.0-sigstore", policy: KEYLESS_POLICY },
  { dir: "v1.0.1-sigstore", policy: KEYLESS_POLICY, ignore: ["ignore-me"] },
];

/** Copies a vector folder into a temp dir (so files can be changed). */
async function copyVector(dir: string): Promise<string> {
  const to = await Deno.makeTempDir();
  for await (const e of Deno.readDir(fixture(`oms/${dir}`))) {
    await Deno.copyFile(fixture(`oms/${dir}/${e.name}`), `${to}/${e.name}`);
    await Deno.chmod(`${to}/${e.name}`, 0o644);
  }
  return to;
}

function target(v: (typeof VECTORS)[number], root: string) {
  return v.file
    ? { path: `${root}/${v.file}`, signature: `${root}/model.sig` }
    : { path: root, signature: undefined };
}

for (const v of VECTORS) {
  Deno.test(`verifyModel() accepts the model_signing vector ${v.dir}`, async () => {
    const t = target(v, fixture(`oms/${v.dir}`));
    const result = await verifyModel(t.path, {
      policy: v.policy,
      ...(t.signature ? { signature: t.signature } : {}),
      ...(v.ignore ? { ignorePaths: v.ignore } : {}),
    });
    assert.ok(result.checked.length >= 1);
    if (v.policy === KEYLESS_POLICY) {
      assert.deepEqual(result.signer.identities, ["stefanb@us.ibm.com"]);
      assert.equal(result.signer.issuer, "https://sigstore.verify.ibm.com/oauth2");
    }
  });

  Deno.test(`verifyModel() refuses ${v.dir} when any signed file has one flipped byte`, async () => {
    const root = await copyVector(v.dir);
    try {
      const signed = v.file ? [v.file] : ["signme-1", "signme-2"];
      for (const name of signed) {
        const path = `${root}/${name}`;
        const original = await Deno.readFile(path);
        const flipped = original.slice();
        flipped[0]! ^= 0x01;
        await Deno.writeFile(path, flipped);
        const t = target(v, root);
        await assert.rejects(
          verifyModel(t.path, {
            policy: v.policy,
            ...(t.signature ? { signature: t.signature } : {}),
            ...(v.ignore ? { ignorePaths: v.ignore } : {}),
          }),
          (e) => e instanceof HashMismatch && e.message.includes(name),
        );
        await Deno.writeFile(path, original);
      }
    } finally {
      await Deno.remove(root, { recursive: true });
    }
  });
}

Deno.test("verifyModel() needs the vector's ignore rule: without it ignore-me is an unsigned file", async () => {
  await assert.rejects(
    verifyModel(fixture("oms/v1.0.1-elliptic-key"), { policy: KEY_POLICY }),
    (e) => e instanceof SignatureMissing && /ignore-me/.test(e.message),
  );
});

Deno.test("verifyModel() refuses a wrong identity, a wrong issuer and the wrong kind of trust", async () => {
  const dir = fixture("oms/v1.0.1-sigstore");
  const opts = { ignorePaths: ["ignore-me"] };
  await assert.rejects(
    verifyModel(dir, {
      ...opts,
      policy: Issuer({
        identity: "mallory@us.ibm.com",
        issuer: "https://sigstore.verify.ibm.com/oauth2",
      }),
    }),
    (e) =>
      e instanceof InvalidSignature && e.code === "wrong-signer" &&
      /got subjects \[stefanb@us\.ibm\.com\] with issuer https:\/\/sigstore\.verify\.ibm\.com\/oauth2/
        .test(e.message),
  );
  await assert.rejects(
    verifyModel(dir, {
      ...opts,
      policy: Issuer({ identity: "stefanb@us.ibm.com", issuer: "https://accounts.google.com" }),
    }),
    (e) => e instanceof InvalidSignature && e.code === "wrong-signer",
  );
  // A key-signed model is not accepted by a policy that trusts only certificates.
  await assert.rejects(
    verifyModel(fixture("oms/v1.0.1-elliptic-key"), {
      ignorePaths: ["ignore-me"],
      policy: CERT_POLICY,
    }),
    InvalidSignature,
  );
  await assert.rejects(verifyModel(fixture("tensors"), { policy: KEY_POLICY }), SignatureMissing);
});

Deno.test("verifyModel() with files checks only those files against a whole-model signature", async () => {
  const root = await copyVector("v1.0.1-elliptic-key");
  try {
    await Deno.writeTextFile(`${root}/signme-2`, "changed");
    await Deno.writeTextFile(`${root}/extra.onnx`, "not signed");
    const r = await verifyModel(root, { policy: KEY_POLICY, files: ["signme-1"] });
    assert.deepEqual(r.checked, ["signme-1"]);
    await assert.rejects(
      verifyModel(root, { policy: KEY_POLICY, files: ["signme-2"] }),
      HashMismatch,
    );
    await assert.rejects(
      verifyModel(root, { policy: KEY_POLICY, files: ["extra.onnx"] }),
      SignatureMissing,
    );
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("signModel() writes model.sig in the model_signing format that verifyModel() accepts (key and certificate)", async () => {
  for (
    const [signer, policy] of [
      [keySigner(await keys("signing-key.pem")), KEY_POLICY],
      [
        certificateSigner(await keys("signing-key.pem"), [
          await keys("signing-key-cert.pem"),
          await keys("int-ca-cert.pem"),
        ]),
        CERT_POLICY,
      ],
    ] as const
  ) {
    const root = await copyVector("v1.0.1-elliptic-key");
    try {
      await Deno.remove(`${root}/model.sig`);
      await signModel(root, { signer, ignorePaths: ["ignore-me"] });
      const bundle = JSON.parse(await Deno.readTextFile(`${root}/model.sig`));
      assert.equal(bundle.mediaType, "application/vnd.dev.sigstore.bundle.v0.3+json");
      const statement = JSON.parse(atob(bundle.dsseEnvelope.payload));
      assert.equal(statement.predicateType, "https://model_signing/signature/v1.0");
      // Same resources and root digest as model_signing computed for these files.
      const theirs = JSON.parse(
        atob(
          JSON.parse(await Deno.readTextFile(fixture("oms/v1.0.1-elliptic-key/model.sig")))
            .dsseEnvelope.payload,
        ),
      );
      assert.deepEqual(statement.predicate.resources, theirs.predicate.resources);
      assert.deepEqual(statement.subject[0].digest, theirs.subject[0].digest);
      // The ignore rule is recorded, so verification needs no --ignore.
      await verifyModel(root, { policy });
      await Deno.writeTextFile(`${root}/signme-1`, "tampered");
      await assert.rejects(verifyModel(root, { policy }), HashMismatch);
    } finally {
      await Deno.remove(root, { recursive: true });
    }
  }
});

Deno.test("verifyModel() refuses a stripped or garbled signature", async () => {
  const root = await copyVector("v1.0.1-elliptic-key");
  try {
    await Deno.writeTextFile(`${root}/model.sig`, "{not json");
    await assert.rejects(
      verifyModel(root, { policy: KEY_POLICY, ignorePaths: ["ignore-me"] }),
      (e) => e instanceof InvalidSignature && e.code === "bad-bundle",
    );
    await Deno.remove(`${root}/model.sig`);
    await assert.rejects(
      verifyModel(root, { policy: KEY_POLICY, ignorePaths: ["ignore-me"] }),
      SignatureMissing,
    );
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});
