// decideFile(): the one trust decision, rule by rule (pure: findings in,
// verdict out). Each rule here was broken somewhere on main before the
// decision had one home: the guard, `check` and `verify` each kept a copy.
import assert from "node:assert/strict";
import {
  decideFile,
  EvidenceError,
  type FileQuestion,
  HashMismatch,
  Lockfile,
  type OmsFinding,
  PolicyError,
  sameModelName,
  SignatureMissing,
  VerificationError,
  type VerifiedSigner,
} from "../../sign/mod.ts";
import { pinFinding } from "../../sign/_findings.ts";

const D = (c: string) => `sha256:${c.repeat(64)}`;
const signer = (fingerprint: string): VerifiedSigner => ({
  kind: "key",
  identities: [],
  issuer: undefined,
  keyFingerprint: fingerprint,
  pem: "",
  signedAt: undefined,
});
const KEY = signer("aa");
const oms = (resources: Record<string, string>, modelName = "tiny-bert"): OmsFinding => ({
  $case: "verified",
  signer: KEY,
  modelName,
  resources: new Map(Object.entries(resources)),
  where: "tiny-bert/model.sig",
});
const base: FileQuestion = {
  model: { name: "acme/tiny-bert" },
  file: "onnx/model.onnx",
  digest: D("1"),
  oms: { $case: "absent" },
  policy: { publicKeys: ["…"] },
};
const ask = (q: Partial<FileQuestion>) => decideFile({ ...base, ...q });
function refused(q: Partial<FileQuestion>) {
  const v = ask(q);
  assert.equal(v.$case, "refused", JSON.stringify(v));
  return (v as { error: Error }).error;
}

Deno.test("decideFile() accepts a file the root model.sig lists with its digest", () => {
  const v = ask({ oms: oms({ "onnx/model.onnx": D("1") }) });
  assert.deepEqual(v, { $case: "verified", evidence: "oms", signer: KEY, pinned: false });
});

Deno.test("decideFile(): a pin that differs refuses a file a valid model.sig vouches for", () => {
  const e = refused({
    oms: oms({ "onnx/model.onnx": D("1") }),
    pins: {
      entry: { digests: { "onnx/model.onnx": D("2") } },
      key: "acme/tiny-bert@v1",
      frozen: false,
    },
  });
  assert.ok(e instanceof HashMismatch && e.code === "pin-differs");
  assert.equal(e.expected, D("2"));
});

Deno.test("decideFile(): a frozen lockfile refuses unpinned files, signed or not", () => {
  const noEntry = refused({
    oms: oms({ "onnx/model.onnx": D("1") }),
    pins: { entry: undefined, key: "acme/tiny-bert@v1", frozen: true },
  });
  assert.ok(noEntry instanceof PolicyError && noEntry.code === "not-locked");
  assert.match(noEntry.message, /has no entry for acme\/tiny-bert@v1/);
  const notThisFile = refused({
    oms: oms({ "onnx/model.onnx": D("1") }),
    pins: { entry: { digests: { "config.json": D("3") } }, key: "acme/tiny-bert@v1", frozen: true },
  });
  assert.ok(
    notThisFile instanceof PolicyError && /pins no digest for it/.test(notThisFile.message),
  );
});

Deno.test("decideFile(): a matching pin vouches on its own, and is noted beside a signature", () => {
  const pins = {
    entry: { digests: { "onnx/model.onnx": D("1") } },
    key: "acme/tiny-bert@v1",
    frozen: true,
  };
  assert.deepEqual(ask({ pins }), {
    $case: "verified",
    evidence: "lockfile",
    signer: undefined,
    pinned: true,
  });
  const both = ask({ pins, oms: oms({ "onnx/model.onnx": D("1") }) });
  assert.ok(both.$case === "verified" && both.evidence === "oms" && both.pinned);
});

Deno.test("decideFile(): a model.sig that fails refuses every file, pins included", () => {
  const error = new VerificationError("bad-signature", "does not match");
  const v = ask({
    oms: { $case: "refused", error },
    pins: { entry: { digests: { "onnx/model.onnx": D("1") } }, key: "k", frozen: false },
  });
  assert.deepEqual(v, { $case: "refused", evidence: "oms", error });
});

Deno.test("decideFile(): the root model.sig speaks for every file (unlisted files are refused, embedded signatures not consulted)", () => {
  const e = refused({
    file: "onnx/model_fp16.onnx",
    oms: oms({ "onnx/model.onnx": D("1") }),
    embedded: {
      $case: "verified",
      kind: "onnx-embedded",
      signer: KEY,
      claim: { name: "acme/tiny-bert", version: "1", hash: D("9") },
      actual: D("9"),
    },
  });
  assert.ok(e instanceof SignatureMissing && e.code === "not-in-manifest");
  const changed = refused({ oms: oms({ "onnx/model.onnx": D("2") }) });
  assert.ok(changed instanceof HashMismatch && changed.code === "content-changed");
});

Deno.test("decideFile(): model.sig for another model is refused when a name is asked for", () => {
  const e = refused({ oms: oms({ "onnx/model.onnx": D("1") }, "other-model") });
  assert.ok(e instanceof PolicyError && e.code === "wrong-model");
  assert.match(e.message, /is for model "other-model", expected "acme\/tiny-bert"/);
  // The folder name model_signing records matches the hub id's last segment.
  assert.equal(ask({ oms: oms({ "onnx/model.onnx": D("1") }, "tiny-bert") }).$case, "verified");
  // No name asked for: nothing to compare.
  assert.equal(
    ask({ model: {}, oms: oms({ "onnx/model.onnx": D("1") }, "other-model") }).$case,
    "verified",
  );
});

Deno.test("decideFile(): an embedded signature vouches only for the model and version it names", () => {
  const embedded = (name: string, version = "1.0.0", hash = D("1")) => ({
    $case: "verified" as const,
    kind: "onnx-embedded" as const,
    signer: KEY,
    claim: { name, version, hash },
    actual: D("1"),
  });
  assert.equal(ask({ embedded: embedded("acme/tiny-bert") }).$case, "verified");
  const other = refused({ embedded: embedded("acme/other") });
  assert.ok(other instanceof PolicyError && other.code === "wrong-model");
  // A bare claim does not pass for a qualified model (a folder name from OMS would).
  assert.ok(refused({ embedded: embedded("tiny-bert") }) instanceof PolicyError);
  const old = refused({
    model: { name: "acme/tiny-bert", version: "1.1.0" },
    embedded: embedded("acme/tiny-bert", "1.0.0"),
  });
  assert.ok(old instanceof PolicyError && old.code === "wrong-version");
  assert.match(old.message, /version "1\.0\.0" of acme\/tiny-bert, expected "1\.1\.0"/);
  const tampered = refused({ embedded: embedded("acme/tiny-bert", "1.0.0", D("7")) });
  assert.ok(tampered instanceof HashMismatch);
});

Deno.test("decideFile(): nothing vouches: SignatureMissing, or unsigned when the policy allows", () => {
  assert.ok(refused({}) instanceof SignatureMissing);
  assert.deepEqual(ask({ policy: { signatures: "optional" } }), { $case: "unsigned" });
  assert.deepEqual(
    ask({ policy: { models: { "acme/tiny-bert": { signatures: "optional" } } } }),
    { $case: "unsigned" },
  );
  // The per-model entry is chosen by the name asked for, never by a name the file states.
  assert.ok(
    refused({
      model: {},
      policy: { models: { "acme/tiny-bert": { signatures: "optional" } } },
    }) instanceof
      SignatureMissing,
  );
});

Deno.test("decideFile(): the signer a lockfile records must be the signer found", () => {
  const e = refused({
    oms: oms({ "onnx/model.onnx": D("1") }),
    pins: {
      entry: {
        digests: { "onnx/model.onnx": D("1") },
        signer: { kind: "key", identities: [], keyFingerprint: "bb" },
      },
      key: "acme/tiny-bert@v1",
      frozen: false,
    },
  });
  assert.ok(e instanceof PolicyError && e.code === "lock-mismatch");
  assert.match(
    e.message,
    /signed by key aa…, but the lockfile entry acme\/tiny-bert@v1 records key bb…/,
  );
});

Deno.test("decideFile() insists on a SHA-256 digest when a pin or model.sig speaks about the file", () => {
  assert.throws(
    () => ask({ digest: undefined, oms: oms({ "onnx/model.onnx": D("1") }) }),
    TypeError,
  );
  assert.throws(
    () => ask({ digest: "1".repeat(64), oms: oms({ "onnx/model.onnx": D("1") }) }),
    TypeError,
  );
});

Deno.test("pinFinding(): a model pinned at several versions, none asked for, refuses every file", () => {
  const lock = new Lockfile();
  lock.record("acme/tiny-bert", "v1", { digests: { "onnx/model.onnx": D("1") } });
  lock.record("acme/tiny-bert", "v2", { digests: { "onnx/model.onnx": D("2") } });
  const pins = pinFinding(lock, "acme/tiny-bert", undefined, false);
  const e = refused({ pins });
  assert.ok(
    e instanceof PolicyError && /pinned as .*@v1, .*@v2; say which version/.test(e.message),
  );
  // Asked for a version: that entry.
  assert.equal(ask({ pins: pinFinding(lock, "acme/tiny-bert", "v1", true) }).$case, "verified");
  assert.ok(
    refused({ pins: pinFinding(lock, "acme/tiny-bert", "v2", true) }) instanceof HashMismatch,
  );
  // A frozen guard without a lockfile refuses everything.
  assert.ok(
    refused({ pins: pinFinding(undefined, "acme/tiny-bert", "v1", true) }) instanceof PolicyError,
  );
});

Deno.test("sameModelName(): equal names, or a bare name against a qualified one's last segment", () => {
  const table: [string, string, boolean, boolean][] = [
    ["acme/tiny-bert", "acme/tiny-bert", false, true],
    ["acme/tiny-bert", "tiny-bert", true, true], // OMS folder name
    ["acme/tiny-bert", "tiny-bert", false, false], // embedded claim must be qualified
    ["acme/tiny-bert", "evil/tiny-bert", true, false],
    ["tiny-bert", "acme/tiny-bert", false, true], // a bare local id
    ["tiny-bert", "tiny-bertx", true, false],
    ["acme/tiny-bert", "acme/tiny-bert/onnx", true, false],
  ];
  for (const [asked, stated, folder, want] of table) {
    assert.equal(sameModelName(asked, stated, folder), want, `${asked} vs ${stated}`);
  }
});

Deno.test("Lockfile: digests are read in one spelling; anything else is refused by name", () => {
  const lock = Lockfile.parse(JSON.stringify({
    version: 1,
    models: { "m@1": { digests: { a: "A".repeat(64), b: `sha256:${"b".repeat(64)}` } } },
  }));
  assert.deepEqual(lock.get("m", "1")?.digests, { a: D("a"), b: D("b") });
  assert.throws(
    () =>
      Lockfile.parse('{"version":1,"models":{"m@1":{"digests":{"tensors":"safemodels-v1:00"}}}}'),
    (e) =>
      e instanceof SyntaxError && /"tensors"/.test(e.message) && /safemodels lock/.test(e.message),
  );
});

Deno.test("Lockfile.parse() refuses lockfiles over the size and depth bounds before parsing them", () => {
  const deep = `{"version":1,"models":${"[".repeat(40)}${"]".repeat(40)}}`;
  assert.throws(
    () => Lockfile.parse(deep),
    (e) => e instanceof EvidenceError && e.code === "too-deep",
  );
  const big = `{"version":1,"models":{},"x":"${"a".repeat(9 << 20)}"}`;
  assert.throws(
    () => Lockfile.parse(big),
    (e) => e instanceof EvidenceError && e.code === "too-large",
  );
});

Deno.test("Lockfile.find(): one name rule with evidence; a model pinned at other versions is never unpinned", () => {
  const lock = new Lockfile();
  lock.record("acme/tiny-bert", "v1", { digests: { a: D("1") } });
  // The same model, however it is named.
  assert.equal(lock.find("tiny-bert", "v1").key, "acme/tiny-bert@v1");
  assert.equal(lock.find("/models/acme/tiny-bert", "v1").key, "acme/tiny-bert@v1");
  // Another model is not pinned.
  assert.equal(lock.find("evil/tiny-bert", "v1").entry, undefined);
  // Another version of a pinned model is refused, not treated as unpinned.
  assert.throws(
    () => lock.find("acme/tiny-bert", "main"),
    (e) =>
      e instanceof PolicyError &&
      /pins this model at acme\/tiny-bert@v1, not at main/.test(e.message),
  );
  // An entry recorded without a version pins every version.
  lock.record("acme/other", "unversioned", { digests: { a: D("2") } });
  assert.equal(lock.find("acme/other", "main").key, "acme/other@unversioned");
  assert.equal(lock.find("acme/other").key, "acme/other@unversioned");
});

Deno.test("decideFile(): a symbolic link is refused unless the model.sig's signer followed links", () => {
  const e = refused({ linked: true, oms: oms({ "onnx/model.onnx": D("1") }) });
  assert.ok(
    e instanceof PolicyError && e.code === "refused-file" && /symbolic link/.test(e.message),
  );
  assert.ok(
    refused({
      linked: true,
      pins: { entry: { digests: { "onnx/model.onnx": D("1") } }, key: "k", frozen: false },
    }) instanceof PolicyError,
  );
  const allowed = ask({
    linked: true,
    oms: { ...oms({ "onnx/model.onnx": D("1") }), allowSymlinks: true } as OmsFinding,
  });
  assert.equal(allowed.$case, "verified");
});

Deno.test("sameModelName(): a path names the model it ends with, never a bare name's namesake", () => {
  assert.ok(sameModelName("/m/acme/tiny-bert", "acme/tiny-bert", false));
  assert.ok(!sameModelName("/m/acme/tiny-bert", "evil/tiny-bert", false));
  assert.ok(!sameModelName("/m/acme/tiny-bert", "tiny-bert", false));
  assert.ok(sameModelName("/m/acme/tiny-bert", "tiny-bert", true));
  assert.ok(!sameModelName("/m/acme/tiny-bert", "bert", true));
  assert.ok(!sameModelName("acme/tiny-bert", "", true));
});
