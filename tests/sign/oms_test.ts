import assert from "node:assert/strict";
import {
  buildStatement,
  comparePaths,
  OMS_PAYLOAD_TYPE,
  OMS_PREDICATE_TYPE,
  type OmsResource,
  parseStatement,
  rootDigest,
  sortResources,
} from "../../sign/_oms.ts";
import { hashModelFolder } from "../../sign/_oms_fs.ts";
import { HashMismatch, InvalidSignature, SignatureMissing } from "../../sign/errors.ts";
import { checkModel } from "../../sign/_check_model.ts";
import type { SignedTextVerifier } from "../../sign/_signed_text.ts";

/** A verifier that skips the cryptography: these tests are about the manifest. */
const unchecked: SignedTextVerifier = (text) => {
  const bundle = JSON.parse(text);
  return Promise.resolve({
    payload: Uint8Array.from(atob(bundle.dsseEnvelope.payload), (c) => c.charCodeAt(0)),
    signer: {
      kind: "key",
      identities: [],
      issuer: undefined,
      keyFingerprint: "00",
      pem: "",
      signedAt: undefined,
    },
  });
};

/** The model's files against its model.sig: the first failure, or undefined. */
async function firstFailure(
  dir: string,
  options: { files?: string[]; ignorePaths?: string[] } = {},
): Promise<Error | undefined> {
  const check = await checkModel(dir, { policy: {}, verify: unchecked, ...options });
  return check.failures[0];
}

const OMS = new URL("../../../shared/fixtures/oms/", import.meta.url);
const VECTORS = [
  "v1.0.0-certificate",
  "v1.0.0-elliptic-key",
  "v1.0.0-sigstore",
  "v1.0.1-certificate",
  "v1.0.1-elliptic-key",
  "v1.0.1-sigstore",
];

function vectorDir(name: string): string {
  return new URL(`${name}/`, OMS).pathname.replace(/\/$/, "");
}

async function readVector(name: string): Promise<{ payloadType: string; payload: Uint8Array }> {
  const bundle = JSON.parse(await Deno.readTextFile(`${vectorDir(name)}/model.sig`));
  const env = bundle.dsseEnvelope;
  return {
    payloadType: env.payloadType,
    payload: Uint8Array.from(atob(env.payload), (c) => c.charCodeAt(0)),
  };
}

/** Hashes a vector the way it was signed. */
function hashVector(name: string): Promise<OmsResource[]> {
  if (name === "v1.0.0-elliptic-key") return hashModelFolder(`${vectorDir(name)}/signme-1`);
  return hashModelFolder(vectorDir(name), {
    ignorePaths: name.startsWith("v1.0.1") ? ["ignore-me"] : [],
  });
}

/** A writable copy of a vector folder. */
async function copyVector(name: string): Promise<string> {
  const dir = await Deno.makeTempDir({ prefix: "oms_test_" });
  for await (const e of Deno.readDir(vectorDir(name))) {
    await Deno.copyFile(`${vectorDir(name)}/${e.name}`, `${dir}/${e.name}`);
  }
  return dir;
}

function statementJson(overrides: (s: Record<string, unknown>) => void): Uint8Array {
  const s: Record<string, unknown> = {
    _type: "https://in-toto.io/Statement/v1",
    subject: [{ name: "m", digest: { sha256: "00".repeat(32) } }],
    predicateType: OMS_PREDICATE_TYPE,
    predicate: {
      serialization: { method: "files", hash_type: "sha256", allow_symlinks: false },
      resources: [{ name: "a", algorithm: "sha256", digest: "11".repeat(32) }],
    },
  };
  overrides(s);
  return new TextEncoder().encode(JSON.stringify(s));
}

/** A statement whose subject digest matches its resources. */
async function consistent(resources: OmsResource[]): Promise<Uint8Array> {
  // Unusable digests cannot have a root; any value will do then.
  const root = await rootDigest(resources).catch(() => "00".repeat(32));
  return statementJson((s) => {
    s.subject = [{ name: "m", digest: { sha256: root } }];
    (s.predicate as Record<string, unknown>).resources = resources;
  });
}

const D1 = "11".repeat(32);
const D2 = "22".repeat(32);

for (const name of VECTORS) {
  Deno.test(`oms: ${name} parses and matches the folder`, async () => {
    const { payloadType, payload } = await readVector(name);
    assert.equal(payloadType, OMS_PAYLOAD_TYPE);
    const st = await parseStatement(payload, `${name}/model.sig`);
    assert.equal(st.method, "files");
    assert.equal(st.allowSymlinks, false);
    assert.deepEqual(st.ignorePaths, []);
    assert.equal(st.subjectName, name === "v1.0.0-elliptic-key" ? "signme-1" : name);

    const actual = await hashVector(name);
    assert.deepEqual(actual, sortResources(st.resources));
    assert.equal(await rootDigest(actual), st.rootDigest);
    if (name !== "v1.0.0-elliptic-key") {
      assert.equal(await firstFailure(vectorDir(name), { ignorePaths: ["ignore-me"] }), undefined);
    }

    // Building from what we hashed gives model_signing's statement back.
    const bytes = await buildStatement(st.subjectName, actual);
    // Byte for byte, except v1.0.0-elliptic-key, whose resource keys are in another order.
    if (name !== "v1.0.0-elliptic-key") assert.deepEqual(bytes, payload);
    const built = await parseStatement(bytes);
    assert.equal(built.rootDigest, st.rootDigest);
    assert.deepEqual(built.resources, st.resources);
    const raw = st.raw as { predicate: unknown };
    assert.deepEqual((built.raw as { predicate: unknown }).predicate, raw.predicate);
  });
}

Deno.test("oms: v1.0.1 folders fail without the ignored path", async () => {
  const e = await firstFailure(vectorDir("v1.0.1-sigstore"));
  assert.ok(e instanceof SignatureMissing && e.code === "not-in-manifest", String(e));
  assert.match(e.message, /ignore-me/);
});

Deno.test("oms: a flipped byte is a HashMismatch naming the file", async () => {
  const dir = await copyVector("v1.0.0-sigstore");
  try {
    const bytes = await Deno.readFile(`${dir}/signme-2`);
    bytes[3]! ^= 1;
    await Deno.writeFile(`${dir}/signme-2`, bytes);
    const st = await parseStatement((await readVector("v1.0.0-sigstore")).payload);
    const e = await firstFailure(dir);
    assert.ok(
      e instanceof HashMismatch && e.file === `${dir}/signme-2` &&
        e.expected === `sha256:${st.resources[1]!.digest}`,
      String(e),
    );
    // Checking only signme-1 passes even though signme-2 changed.
    assert.equal(await firstFailure(dir, { files: ["signme-1"] }), undefined);
    assert.ok(await firstFailure(dir, { files: ["signme-2"] }) instanceof HashMismatch);
    // A requested file that is neither signed nor there.
    const nope = await firstFailure(dir, { files: ["nope"] });
    assert.ok(nope instanceof SignatureMissing && /nope/.test(nope.message), String(nope));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("oms: extra and missing files are named", async () => {
  const dir = await copyVector("v1.0.0-certificate");
  try {
    await Deno.mkdir(`${dir}/sub`);
    await Deno.writeTextFile(`${dir}/sub/extra.bin`, "x");
    const extra = await firstFailure(dir);
    assert.ok(
      extra instanceof SignatureMissing && extra.file === `${dir}/sub/extra.bin` &&
        extra.code === "not-in-manifest",
      String(extra),
    );
    // Ignoring the folder ignores everything under it.
    assert.equal(await firstFailure(dir, { ignorePaths: ["sub/"] }), undefined);
    assert.equal(await firstFailure(dir, { ignorePaths: ["./sub"] }), undefined);

    await Deno.remove(`${dir}/sub`, { recursive: true });
    await Deno.remove(`${dir}/signme-1`);
    const missing = await firstFailure(dir);
    assert.ok(
      missing instanceof HashMismatch && missing.code === "file-missing" &&
        missing.file === `${dir}/signme-1` && /a signed file is missing/.test(missing.message),
      String(missing),
    );
    // With files, a missing requested file is still an error.
    const subset = await hashModelFolder(dir, { files: ["signme-1"] });
    assert.deepEqual(subset, []);
    assert.ok(await firstFailure(dir, { files: ["signme-1"] }) instanceof HashMismatch);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("oms: the signature file and git paths are skipped by default", async () => {
  const dir = await copyVector("v1.0.0-certificate");
  try {
    await Deno.mkdir(`${dir}/.git/objects`, { recursive: true });
    await Deno.writeTextFile(`${dir}/.git/objects/x`, "x");
    await Deno.writeTextFile(`${dir}/.gitattributes`, "x");
    await Deno.writeTextFile(`${dir}/other.sig`, "x");
    const names = (await hashModelFolder(dir, { signatureFile: "other.sig" })).map((r) => r.name);
    assert.deepEqual(names, ["model.sig", "signme-1", "signme-2"]);
    const all = (await hashModelFolder(dir, { ignoreGitPaths: false })).map((r) => r.name);
    assert.deepEqual(all, [
      ".git/objects/x",
      ".gitattributes",
      "other.sig",
      "signme-1",
      "signme-2",
    ]);
    const abs = await hashModelFolder(dir, {
      signatureFile: `${dir}/other.sig`,
      ignorePaths: ["model.sig"],
    });
    assert.deepEqual(abs.map((r) => r.name), ["signme-1", "signme-2"]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("oms: nested folders use POSIX names in model_signing order", async () => {
  const dir = await Deno.makeTempDir({ prefix: "oms_test_" });
  try {
    await Deno.mkdir(`${dir}/a/b`, { recursive: true });
    for (const f of ["a-b", "a/b/c", "a/z", "b"]) await Deno.writeTextFile(`${dir}/${f}`, f);
    let progress = 0;
    const res = await hashModelFolder(dir, { onProgress: (n) => (progress = n) });
    // Component order: "a/..." sorts before "a-b" although "/" > "-".
    assert.deepEqual(res.map((r) => r.name), ["a/b/c", "a/z", "a-b", "b"]);
    assert.equal(progress, 3 + 5 + 3 + 1);
    const payload = await buildStatement("m", [...res].reverse(), { ignorePaths: ["z", ".git"] });
    const st = await parseStatement(payload);
    assert.deepEqual(st.resources.map((r) => r.name), ["a/b/c", "a/z", "a-b", "b"]);
    assert.deepEqual(st.ignorePaths, [".git", "z"]);
    assert.equal(st.subjectName, "m");
    const text = new TextDecoder().decode(payload);
    assert.match(text, /^\{\n {2}"_type": "https:\/\/in-toto.io\/Statement\/v1",\n {2}"subject"/);
    assert.ok(comparePaths("\u{10000}", "\uffff") > 0); // code points, not UTF-16 units
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("oms: symbolic links are refused unless allowed", async () => {
  const dir = await Deno.makeTempDir({ prefix: "oms_test_" });
  try {
    await Deno.writeTextFile(`${dir}/real`, "data");
    await Deno.symlink(`${dir}/real`, `${dir}/link`);
    await assert.rejects(
      hashModelFolder(dir),
      (e) => e instanceof InvalidSignature && /link is a symbolic link/.test(e.message),
    );
    await assert.rejects(hashModelFolder(dir, { files: ["link"] }), InvalidSignature);
    await assert.rejects(hashModelFolder(`${dir}/link`), InvalidSignature);
    const res = await hashModelFolder(dir, { allowSymlinks: true });
    assert.deepEqual(res.map((r) => r.name), ["link", "real"]);
    assert.equal(res[0]!.digest, res[1]!.digest);
    // An ignored link is not looked at.
    assert.equal((await hashModelFolder(dir, { ignorePaths: ["link"] })).length, 1);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("oms: unsafe resource names are refused", async () => {
  for (
    const bad of [
      [{ name: "../x", algorithm: "sha256", digest: D1 }],
      [{ name: "/abs", algorithm: "sha256", digest: D1 }],
      [{ name: "a\\b", algorithm: "sha256", digest: D1 }],
      [{ name: "a/./b", algorithm: "sha256", digest: D1 }],
      [{ name: "a//b", algorithm: "sha256", digest: D1 }],
      [{ name: "C:/x", algorithm: "sha256", digest: D1 }],
      [{ name: "", algorithm: "sha256", digest: D1 }],
      [{ name: "a", algorithm: "sha256", digest: D1 }, {
        name: "a",
        algorithm: "sha256",
        digest: D2,
      }],
      [{ name: ".", algorithm: "sha256", digest: D1 }, {
        name: "b",
        algorithm: "sha256",
        digest: D2,
      }],
      [{ name: "a", algorithm: "md5", digest: D1 }],
      [{ name: "a", algorithm: "sha256", digest: "abc" }],
    ]
  ) {
    await assert.rejects(
      parseStatement(await consistent(bad)),
      (e) => e instanceof InvalidSignature && e.code === "bad-statement",
      JSON.stringify(bad),
    );
    await assert.rejects(buildStatement("m", bad), TypeError, JSON.stringify(bad));
  }
});

Deno.test("oms: inconsistent or foreign statements are refused", async () => {
  const good = [{ name: "a", algorithm: "sha256", digest: D1 }];
  await parseStatement(await consistent(good));
  const cases: [string, Uint8Array][] = [
    ["root mismatch", statementJson(() => {})],
    ["not json", new TextEncoder().encode("{")],
    ["not utf-8", new Uint8Array([0xff, 0xfe])],
    ["array", new TextEncoder().encode("[]")],
    ["type", statementJson((s) => (s._type = "https://in-toto.io/Statement/v0.1"))],
    ["predicate", statementJson((s) => (s.predicateType = "https://slsa.dev/provenance/v1"))],
    // v0.2 subjects must be files with digests.
    [
      "compat",
      statementJson((s) => {
        s.predicateType = "https://model_signing/Digests/v0.1";
        s.subject = [{ name: "../x", digest: { sha256: D1 } }];
      }),
    ],
    ["two subjects", statementJson((s) => (s.subject = [1, 2]))],
    ["no predicate", statementJson((s) => delete s.predicate)],
  ];
  const root = await rootDigest(good);
  const withSer = (ser: Record<string, unknown>) =>
    statementJson((s) => {
      s.subject = [{ name: "m", digest: { sha256: root } }];
      (s.predicate as Record<string, unknown>).serialization = ser;
    });
  cases.push(
    [
      "shards of a file that is not a shard",
      withSer({ method: "shards", hash_type: "sha256", shard_size: 1, allow_symlinks: false }),
    ],
    [
      "shard size 0.5",
      withSer({ method: "shards", hash_type: "sha256", shard_size: 0.5, allow_symlinks: false }),
    ],
    ["blake2", withSer({ method: "files", hash_type: "blake2", allow_symlinks: false })],
    [
      "blake2b digest as sha256",
      withSer({ method: "files", hash_type: "blake2b", allow_symlinks: false }),
    ],
    ["symlinks", withSer({ method: "files", hash_type: "sha256", allow_symlinks: "false" })],
    [
      "ignore ..",
      withSer({
        method: "files",
        hash_type: "sha256",
        allow_symlinks: false,
        ignore_paths: ["../x"],
      }),
    ],
  );
  for (const [label, payload] of cases) {
    await assert.rejects(
      parseStatement(payload, "model.sig"),
      (e) =>
        e instanceof InvalidSignature && e.code === "bad-statement" &&
        e.message.startsWith("model.sig: Cannot"),
      label,
    );
  }
  // An empty model has no resources; its root is SHA-256 of nothing.
  const empty = await parseStatement(await consistent([]));
  assert.deepEqual(empty.resources, []);
  const st = await parseStatement(
    withSer({ method: "files", hash_type: "sha256", allow_symlinks: true, ignore_paths: ["x/y"] }),
  );
  assert.deepEqual(st.ignorePaths, ["x/y"]);
  assert.equal(st.allowSymlinks, true);
});

Deno.test("oms: root digest is SHA-256 over the raw digests in order", async () => {
  // From the v1.0.0 vectors: signme-1 then signme-2.
  const a = "f6310066c7320497ea554260c32c43660bff648cb2a61194832cc086077085e1";
  const b = "32dcb1f8e1ae52d5963e56a6ba06ab58b424c15ed2a6b70d2feca1d089370028";
  const r = (name: string, digest: string) => ({ name, algorithm: "sha256", digest });
  assert.equal(
    await rootDigest([r("signme-1", a), r("signme-2", b)]),
    "61d4849d9d90076d6215f4d525f13d6574af8e3f67aef3e6f36fc40a14fdd226",
  );
  assert.notEqual(
    await rootDigest([r("signme-2", b), r("signme-1", a)]),
    "61d4849d9d90076d6215f4d525f13d6574af8e3f67aef3e6f36fc40a14fdd226",
  );
});

Deno.test("StreamMeasure gives what measure gives, whatever the chunking; measureExpected does not read a file whose size cannot match", async () => {
  const { measure, measureExpected, StreamMeasure } = await import("../../sign/_oms_digest.ts");
  const { bytesSource } = await import("../../hash/_source.ts");
  let seed = 42;
  const rnd = (n: number) => Math.floor(((seed = (seed * 48271) % 0x7fffffff) / 0x7fffffff) * n);
  for (
    const label of [
      "sha256",
      "blake2b",
      "blake3",
      "sha256-sharded-8",
      "blake2b-sharded-5",
      "sha256-sharded-1000",
    ]
  ) {
    for (const size of [0, 1, 7, 8, 9, 40, 1001, 3000]) {
      const bytes = new Uint8Array(size).map(() => rnd(256));
      const want = await measure(label, bytesSource(bytes, "x"));
      const m = await StreamMeasure.create(label, want);
      for (let at = 0; at < size;) {
        const n = Math.min(size - at, 1 + rnd(20));
        await m.update(bytes.subarray(at, at + n));
        at += n;
      }
      assert.equal(await m.digest(), want, `${label} ${size}`);
      if (label.includes("sharded") && size > 0) {
        // Signed for a shorter file: neither reads on past the signed end.
        const shorter = await measure(label, bytesSource(bytes.subarray(0, size - 1), "x"));
        const got = await measureExpected(label, bytesSource(bytes, "x"), shorter);
        assert.equal(got, `${label}:<${size} bytes>`);
        const s = await StreamMeasure.create(label, shorter);
        await s.update(bytes);
        assert.equal(await s.digest(), `${label}:<${size} bytes>`);
      }
    }
  }
});
