// Remembered model.sig verifications (warm starts): the key changes with
// anything that decides a verification (trust material, signer rules, the
// signature's bytes) and with nothing else; a policy that is not plain data
// is never keyed; a kept finding reads back as it was, and anything else
// reads back as nothing.
import assert from "node:assert/strict";
import { Issuer } from "../../sign/mod.ts";
import { publicGoodTrustedRootWeb as publicGoodTrustedRoot } from "../../sign/_trusted_root_web.ts";
import type { OmsFinding } from "../../sign/evidence.ts";
import type { TrustPolicy } from "../../sign/policy.ts";
import { findingFromJson, findingKey, findingToJson } from "../../sign/_finding_memo.ts";

const SIG = '{"mediaType":"application/vnd.dev.sigstore.bundle.v0.3+json"}';
const PEM_A = "-----BEGIN PUBLIC KEY-----\nA\n-----END PUBLIC KEY-----\n";
const PEM_B = "-----BEGIN PUBLIC KEY-----\nB\n-----END PUBLIC KEY-----\n";

Deno.test("findingKey: changes with the trust material, the signers and the bytes only", async () => {
  const base = await findingKey(SIG, { publicKeys: [PEM_A] });
  assert.match(base!, /^[0-9a-f]{64}$/);
  // Same data, other spelling (member order, undefined members, rules that do not verify).
  assert.equal(
    await findingKey(SIG, {
      signatures: "optional",
      models: { m: { version: "1" } },
      certificateRoots: undefined,
      publicKeys: [PEM_A],
    } as unknown as TrustPolicy),
    base,
  );
  const others = [
    await findingKey(SIG, { publicKeys: [PEM_B] }),
    await findingKey(SIG, { publicKeys: [PEM_A, PEM_B] }),
    await findingKey(SIG, { publicKeys: [PEM_A], certificateRoots: [PEM_B] }),
    await findingKey(SIG, { publicKeys: [PEM_A], trustedRoot: { tlogs: [] } }),
    await findingKey(SIG, {
      publicKeys: [PEM_A],
      signers: [Issuer({ identity: "a@example.com", issuer: "https://issuer.example" })],
    }),
    await findingKey(SIG, {
      publicKeys: [PEM_A],
      signers: [Issuer({ identity: /a@example\.com/, issuer: "https://issuer.example" })],
    }),
    await findingKey(SIG, {
      publicKeys: [PEM_A],
      signers: [Issuer({ identity: /a@example\.com/i, issuer: "https://issuer.example" })],
    }),
    await findingKey(`${SIG} `, { publicKeys: [PEM_A] }),
  ];
  assert.equal(new Set([base, ...others]).size, others.length + 1, "two policies shared a key");
});

Deno.test("findingKey: a keyless policy without a root of its own is keyed by the embedded root's content", async () => {
  const signers = [Issuer({ identity: "a@example.com", issuer: "https://issuer.example" })];
  const embedded = await publicGoodTrustedRoot();
  const implicit = await findingKey(SIG, { signers });
  assert.equal(await findingKey(SIG, { signers, trustedRoot: embedded }), implicit);
  const other = structuredClone(embedded) as { tlogs: unknown[] };
  other.tlogs = other.tlogs.slice(1);
  assert.notEqual(await findingKey(SIG, { signers, trustedRoot: other }), implicit);
});

Deno.test("findingKey: a policy holding more than data is never keyed", async () => {
  class Pem extends String {}
  assert.equal(
    await findingKey(SIG, { publicKeys: [new Pem(PEM_A) as unknown as string] }),
    undefined,
  );
  assert.equal(
    await findingKey(SIG, { trustedRoot: { check: () => true } }),
    undefined,
  );
  assert.equal(await findingKey(SIG, { trustedRoot: { n: Number.NaN } }), undefined);
});

Deno.test("findingToJson / findingFromJson: read back as kept; anything else is nothing", () => {
  const finding: Extract<OmsFinding, { $case: "verified" }> = {
    $case: "verified",
    signer: {
      kind: "keyless",
      identities: ["a@example.com"],
      issuer: "https://issuer.example",
      keyFingerprint: "ab".repeat(32),
      pem: PEM_A,
      signedAt: new Date("2026-11-30T12:00:00.123Z"),
      extensions: { issuerV2: "https://issuer.example" },
    },
    modelName: "tiny",
    resources: new Map([["config.json", `sha256:${"cd".repeat(32)}`]]),
    where: "old/model.sig",
    allowSymlinks: false,
  };
  const data = JSON.parse(JSON.stringify(findingToJson(finding)));
  assert.deepEqual(findingFromJson(data, "new/model.sig"), { ...finding, where: "new/model.sig" });
  for (
    const bad of [
      undefined,
      null,
      "x",
      { ...data, signer: undefined },
      { ...data, signer: { ...data.signer, kind: "other" } },
      { ...data, signer: { ...data.signer, signedAt: "not a date" } },
      { ...data, signer: { ...data.signer, identities: [1] } },
      { ...data, resources: [["config.json"]] },
      { ...data, resources: { "config.json": "x" } },
      { ...data, allowSymlinks: "yes" },
    ]
  ) {
    assert.equal(findingFromJson(bad, "m"), undefined, JSON.stringify(bad));
  }
});
