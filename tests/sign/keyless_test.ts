// Keyless signing end to end: a local Sigstore instance (Fulcio, Rekor, TSA
// from @sigstore/mock on 127.0.0.1) signs; verification then runs offline
// against that instance's trusted root, through the public API.
import assert from "node:assert/strict";
import { extractMetadata, updateMeta } from "../../meta/mod.ts";
import {
  HashMismatch,
  InvalidSignature,
  Issuer,
  SafeModel,
  SignatureMissing,
  signModel,
  sigstoreSigner,
  verifyModel,
} from "../../sign/mod.ts";
import { startLocalSigstore } from "./_local_sigstore.ts";
import { fixture } from "../_helpers.ts";

const ME = "release@example.com";
const ISSUER = "https://issuer.example.com";

Deno.test("keyless: sign against a local Sigstore, verify offline; wrong signer, root, tensor, signature, name and version fail", async () => {
  const here = await startLocalSigstore();
  const other = await startLocalSigstore();
  const dir = await Deno.makeTempDir();
  try {
    const signer = sigstoreSigner({
      identityToken: here.token(ME, ISSUER),
      fulcioURL: here.fulcioURL,
      rekorURL: here.rekorURL,
      tsaURL: here.tsaURL,
    });
    const path = `${dir}/model.safetensors`;
    await Deno.copyFile(fixture("tensors/mixed.safetensors"), path);
    await Deno.chmod(path, 0o644);
    const v1 = await SafeModel.fromFile("acme/mixed", "1.0.0", path);
    await v1.signSafetensor(path, { signer });

    const policy = {
      signers: [Issuer({ identity: ME, issuer: ISSUER })],
      trustedRoot: here.trustedRoot,
    };
    const ok = await SafeModel.fromSafetensor(path, {
      policy,
      name: "acme/mixed",
      version: "1.0.0",
    });
    assert.deepEqual(ok.signer?.identities, [ME]);
    assert.equal(ok.signer?.issuer, ISSUER);
    assert.ok(ok.signer?.signedAt instanceof Date);

    // Wrong identity, wrong issuer.
    for (
      const wrong of [
        Issuer({ identity: "other@example.com", issuer: ISSUER }),
        Issuer({ identity: ME, issuer: "https://x" }),
      ]
    ) {
      await assert.rejects(
        SafeModel.fromSafetensor(path, {
          policy: { signers: [wrong], trustedRoot: here.trustedRoot },
        }),
        (e) =>
          e instanceof InvalidSignature && e.code === "wrong-signer" &&
          e.message.includes(`got subjects [${ME}] with issuer ${ISSUER}`),
      );
    }
    // Another instance's root: the certificate and log entries are not trusted.
    await assert.rejects(
      SafeModel.fromSafetensor(path, { policy: { ...policy, trustedRoot: other.trustedRoot } }),
      (e) =>
        e instanceof InvalidSignature && ["untrusted-certificate", "bad-tlog"].includes(e.code),
    );
    // The public-good root (the default) does not trust a private instance either.
    await assert.rejects(
      SafeModel.fromSafetensor(path, { policy: { signers: policy.signers } }),
      InvalidSignature,
    );
    // Substitution (another name) and rollback (an older version).
    await assert.rejects(
      SafeModel.fromSafetensor(path, { policy, name: "acme/other" }),
      (e) => e instanceof InvalidSignature && e.code === "wrong-model",
    );
    await assert.rejects(
      SafeModel.fromSafetensor(path, { policy, version: "2.0.0" }),
      (e) => e instanceof InvalidSignature && e.code === "wrong-version",
    );

    // A tampered tensor.
    const tampered = `${dir}/tampered.safetensors`;
    const bytes = await Deno.readFile(path);
    bytes[bytes.length - 5]! ^= 0x10;
    await Deno.writeFile(tampered, bytes);
    await assert.rejects(SafeModel.fromSafetensor(tampered, { policy }), HashMismatch);
    // A stripped signature.
    const meta = await extractMetadata(path);
    delete meta["safemodels.signature"];
    await updateMeta(path, meta, { clobber: true });
    await assert.rejects(SafeModel.fromSafetensor(path, { policy }), SignatureMissing);

    // The same instance signs a whole folder in the OMS format.
    const model = `${dir}/folder`;
    await Deno.mkdir(model);
    await Deno.copyFile(fixture("tiny-bert/config.json"), `${model}/config.json`);
    await Deno.copyFile(fixture("tiny-bert/onnx/model.onnx"), `${model}/model.onnx`);
    await signModel(model, { signer });
    const r = await verifyModel(model, { policy });
    assert.deepEqual(r.checked, ["config.json", "model.onnx"]);
    await Deno.writeTextFile(`${model}/config.json`, "{}");
    await assert.rejects(
      verifyModel(model, { policy }),
      (e) => e instanceof HashMismatch && /config\.json/.test(e.message),
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
    await here.close();
    await other.close();
  }
});
