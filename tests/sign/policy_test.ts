import assert from "node:assert/strict";
import {
  checkSigner,
  HashMismatch,
  init,
  InvalidSignature,
  Issuer,
  Lockfile,
  resolvePolicy,
  signatureRequirement,
  toPolicy,
} from "../../sign/mod.ts";
import type { VerifiedSigner } from "../../sign/mod.ts";

const keyless = (identities: string[], issuer: string): VerifiedSigner => ({
  kind: "keyless",
  identities,
  issuer,
  keyFingerprint: "f".repeat(64),
  pem: "",
  signedAt: undefined,
});

Deno.test("checkSigner() accepts an exact identity and issuer, refuses near misses", () => {
  const policy = toPolicy(
    Issuer({ identity: "stefanb@us.ibm.com", issuer: "https://sigstore.verify.ibm.com/oauth2" }),
  );
  checkSigner(keyless(["stefanb@us.ibm.com"], "https://sigstore.verify.ibm.com/oauth2"), policy);
  for (
    const [ids, iss] of [
      [["stefanb@us.ibm.com.evil"], "https://sigstore.verify.ibm.com/oauth2"],
      [["Stefanb@us.ibm.com"], "https://sigstore.verify.ibm.com/oauth2"],
      [["stefanb@us.ibm.com"], "https://sigstore.verify.ibm.com/oauth2/"],
      [["stefanb@us.ibm.com"], "https://accounts.google.com"],
    ] as const
  ) {
    assert.throws(() => checkSigner(keyless([...ids], iss), policy), (e) => {
      assert.ok(e instanceof InvalidSignature);
      assert.equal(e.code, "wrong-signer");
      assert.match(
        e.message,
        /none of the expected identities matched what was in the certificate, got subjects \[.*\] with issuer /,
      );
      assert.match(
        e.message,
        /expected one of \[stefanb@us\.ibm\.com with issuer https:\/\/sigstore\.verify\.ibm\.com\/oauth2\]/,
      );
      return true;
    });
  }
});

Deno.test("checkSigner() RegExp matchers must match the whole value", () => {
  const policy = toPolicy([
    Issuer({ identity: /.*@example\.com/, issuer: "https://issuer.example" }),
  ]);
  checkSigner(keyless(["alice@example.com"], "https://issuer.example"), policy);
  // A partial match is not enough: the suffix must be the end of the value.
  assert.throws(
    () => checkSigner(keyless(["alice@example.com.evil.net"], "https://issuer.example"), policy),
    InvalidSignature,
  );
  // Global/sticky flags do not leak state between calls.
  const g = toPolicy([Issuer({ identity: /a@example\.com/g, issuer: "https://issuer.example" })]);
  for (let i = 0; i < 3; i++) checkSigner(keyless(["a@example.com"], "https://issuer.example"), g);
});

Deno.test("checkSigner() fails closed: no signers in the policy refuses keyless; keys and certificates pass through", () => {
  assert.throws(
    () => checkSigner(keyless(["a@example.com"], "https://i"), toPolicy({})),
    /accepts no keyless signers/,
  );
  checkSigner({ ...keyless([], "x"), kind: "key", issuer: undefined }, toPolicy({}));
});

Deno.test("Issuer(), toPolicy(), init() and resolvePolicy() validate and default", () => {
  assert.throws(() => Issuer({ identity: "", issuer: "https://i" }), TypeError);
  // @ts-expect-error: not a matcher
  assert.throws(() => Issuer({ identity: 3, issuer: "https://i" }), TypeError);
  // @ts-expect-error: bad mode
  assert.throws(() => toPolicy({ signatures: "maybe" }), TypeError);
  const p = init(Issuer({ identity: "a@example.com", issuer: "https://i" }));
  assert.equal(resolvePolicy(), p);
  assert.equal(p.signatures, "required");
  const explicit = resolvePolicy({ publicKeys: ["PEM"] });
  assert.deepEqual(explicit.publicKeys, ["PEM"]);
  assert.deepEqual(explicit.signers, []);
});

const hex = (c: string) => `sha256:${c.repeat(64)}`;

Deno.test("Lockfile records on first use, matches, and explains a different digest or signer", () => {
  const lock = new Lockfile();
  const [d1, d2, c1] = [hex("d"), hex("e"), hex("c")];
  const signer = {
    kind: "keyless" as const,
    identities: ["a@example.com"],
    issuer: "https://i",
    keyFingerprint: "k1",
  };
  assert.equal(
    lock.check("tiny", "abc123", { digests: { "model.onnx": d1, "config.json": c1 }, signer }),
    "recorded",
  );
  assert.equal(
    lock.check("tiny", "abc123", { digests: { "config.json": c1, "model.onnx": d1 }, signer }),
    "matched",
  );
  assert.throws(
    () =>
      lock.check("tiny", "abc123", {
        digests: { "model.onnx": d2, "config.json": c1 },
        signer,
      }),
    (e) =>
      e instanceof HashMismatch && e.code === "pin-differs" &&
      e.message.includes(`model.onnx: locked ${d1}, now ${d2}`) &&
      !/config\.json/.test(e.message),
  );
  assert.throws(
    () => lock.check("tiny", "abc123", { digests: { "model.onnx": d1 }, signer }),
    (e) =>
      e instanceof HashMismatch && e.message.includes(`config.json: locked ${c1}, now (absent)`),
  );
  assert.throws(
    () =>
      lock.check("tiny", "abc123", {
        digests: { "model.onnx": d1, "config.json": c1 },
        signer: { ...signer, identities: ["m@evil.com"] },
      }),
    (e) =>
      e instanceof InvalidSignature && e.code === "lock-mismatch" &&
      /m@evil\.com.*a@example\.com/.test(e.message),
  );
  // Frozen: known entries pass, unknown ones are refused.
  assert.equal(
    lock.check("tiny", "abc123", { digests: { "model.onnx": d1, "config.json": c1 } }, {
      frozen: true,
    }),
    "matched",
  );
  assert.throws(
    () => lock.check("tiny", "def456", { digests: { "model.onnx": d1 } }, { frozen: true }),
    (e) => e instanceof InvalidSignature && e.code === "not-locked",
  );
});

Deno.test("Lockfile saves in a stable order and loads back; a missing file is empty", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = `${dir}/safemodels.lock`;
    assert.deepEqual((await Lockfile.load(path)).toJSON(), { version: 1, models: {} });
    const a = new Lockfile();
    a.check("z", "1", { digests: { b: hex("2"), a: hex("1") } });
    a.check("a", "1", { digests: { x: "9".repeat(64) } }); // bare hex: read as SHA-256
    await a.save(path);
    const text = await Deno.readTextFile(path);
    assert.ok(text.indexOf('"a@1"') < text.indexOf('"z@1"'));
    assert.ok(text.indexOf(`"a": "${hex("1")}"`) < text.indexOf(`"b": "${hex("2")}"`));
    assert.ok(text.includes(`"x": "${hex("9")}"`));
    assert.deepEqual((await Lockfile.load(path)).toJSON(), a.toJSON());
    assert.deepEqual([...Deno.readDirSync(dir)].map((e) => e.name), ["safemodels.lock"]);
    await Deno.writeTextFile(path, "[]");
    await assert.rejects(Lockfile.load(path), SyntaxError);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("signatureRequirement() lets a per-model entry override the policy-wide setting", () => {
  const p = toPolicy({
    signatures: "optional",
    models: { "acme/prod": { signatures: "required" } },
  });
  assert.equal(signatureRequirement(p, "acme/prod"), "required");
  assert.equal(signatureRequirement(p, "acme/dev"), "optional");
  assert.equal(signatureRequirement(p), "optional");
  // @ts-expect-error: not a mode
  assert.throws(() => toPolicy({ models: { x: { signatures: "sometimes" } } }), TypeError);
});
