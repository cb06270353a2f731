// OpenSSF Model Signing interoperability, both directions:
// - every signature vector model_signing's own CI verifies (v0.2.0 to v1.1.0,
//   key, certificate and Sigstore keyless) verifies here, run with the very
//   command lines of upstream's scripts (its spellings, from its working
//   directory), and through verifyModel;
// - tampering gives the verdicts model_signing gives;
// - what is signed here reproduces upstream's serialization goldens (files,
//   shards of 1e9 and of 8 bytes, the whole statement), and a folder signed
//   here passes an independent re-implementation of model_signing's verifier
//   (below: node:crypto and node:fs only, none of our code), which refuses a
//   tampered copy.
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import nodeCrypto from "node:crypto";
import { runCli } from "../plugins/_cli_run.ts";
import { compatPae, pyBytesRepr } from "../../sign/_verify_key.ts";
import { keySigner, modelDigest, signModel, verifyModel } from "../../sign/mod.ts";
import { HashMismatch, SignatureMissing } from "../../sign/errors.ts";
import type { Signer, SigstoreBundle } from "../../sign/types.ts";
import { publicGoodTrustedRoot } from "../../sign/_trusted_root.ts";

const BASE = new URL("../testdata/model_signing/", import.meta.url).pathname;
const SER = `${BASE}serialization/`;

interface Run {
  cwd: string;
  argv: string[];
}
interface Vector {
  folder: string;
  mode: string;
  runs: Run[];
}
const VECTORS: { vectors: Vector[] } = JSON.parse(
  await Deno.readTextFile(`${BASE}vectors.json`),
);

const cli = (cwd: string, args: string[]) => runCli(args, cwd);

Deno.test("every model_signing vector verifies with upstream's own command lines (their spellings, their working directory)", async (t) => {
  let runs = 0;
  for (const v of VECTORS.vectors) {
    for (const run of v.runs) {
      // argv is `python -m model_signing verify <mode> …`.
      assert.deepEqual(run.argv.slice(0, 3), ["python", "-m", "model_signing"]);
      const args = run.argv.slice(3);
      await t.step(`${v.folder}: ${args.join(" ")}`, async () => {
        const r = await cli(`${BASE}${run.cwd}`, args);
        assert.equal(r.code, 0, r.err);
        assert.match(r.out, /^OK /);
      });
      runs++;
    }
  }
  assert.ok(runs >= 13, `only ${runs} runs`);
});

Deno.test("every model_signing vector verifies through verifyModel", async (t) => {
  const pub = await Deno.readTextFile(`${BASE}keys/certificate/signing-key-pub.pem`);
  const ca = await Deno.readTextFile(`${BASE}keys/certificate/ca-cert.pem`);
  for (const v of VECTORS.vectors) {
    await t.step(v.folder, async () => {
      const run = v.runs[0]!;
      const target = run.argv.at(-1)!.replace(/^\.\//, "");
      const model = `${BASE}${run.cwd === "." ? "" : `${run.cwd}/`}${target}`;
      const policy = v.mode === "sigstore"
        ? {
          signers: [{
            identity: "stefanb@us.ibm.com",
            issuer: "https://sigstore.verify.ibm.com/oauth2",
          }],
        }
        : v.mode === "certificate"
        ? { certificateRoots: [ca] }
        : { publicKeys: [pub] };
      const folder = `${BASE}${v.folder}`;
      const result = await verifyModel(model, {
        policy,
        signature: `${folder}/model.sig`,
        // Relative to the model, as the API takes them.
        ignorePaths: v.folder.startsWith("v1.0.1") ? ["ignore-me"] : [],
      });
      assert.ok(result.checked.length >= 1);
    });
  }
});

Deno.test("v0.2.0 signatures verify only through model_signing's compatibility encoding (Python's bytes repr, DSSEV1)", async () => {
  // Python's repr() of bytes, checked against CPython 3.11.
  const cases: [number[], string][] = [
    [[], "b''"],
    [[0x61, 0x27, 0x62], `b"a'b"`],
    [[0x27, 0x22], `b'\\'"'`],
    [[0x22], `b'"'`],
    [[0x5c, 0x00, 0xff, 0x0a, 0x09, 0x0d, 0x7f], "b'\\\\\\x00\\xff\\n\\t\\r\\x7f'"],
  ];
  for (const [bytes, repr] of cases) assert.equal(pyBytesRepr(new Uint8Array(bytes)), repr);
  assert.equal(
    new TextDecoder().decode(compatPae(new TextEncoder().encode('{"a":1}'))),
    `DSSEV1 28 application/vnd.in-toto+json 7 b'{"a":1}'`,
  );
  // The v0.2.0 vector's signature is over the compat text with SHA-256 (a P-384
  // key): the standard PAE does not verify, the compat one does.
  const bundle = JSON.parse(await Deno.readTextFile(`${BASE}v0.2.0-certificate/model.sig`));
  const payload = Uint8Array.from(atob(bundle.dsseEnvelope.payload), (c) => c.charCodeAt(0));
  const sig = Uint8Array.from(atob(bundle.dsseEnvelope.signatures[0].sig), (c) => c.charCodeAt(0));
  const leaf = bundle.verificationMaterial.x509CertificateChain.certificates[0].rawBytes;
  const key = new nodeCrypto.X509Certificate(Uint8Array.from(atob(leaf), (c) => c.charCodeAt(0)))
    .publicKey;
  const type = "application/vnd.in-toto+json";
  const pae = new Uint8Array([
    ...new TextEncoder().encode(`DSSEv1 ${type.length} ${type} ${payload.length} `),
    ...payload,
  ]);
  assert.equal(nodeCrypto.verify("sha384", pae, key, sig), false);
  assert.equal(nodeCrypto.verify("sha256", compatPae(payload), key, sig), true);
});

async function copyDir(from: string, to: string): Promise<void> {
  await Deno.mkdir(to, { recursive: true });
  for await (const e of Deno.readDir(from)) {
    if (e.isDirectory) await copyDir(`${from}/${e.name}`, `${to}/${e.name}`);
    else if (e.isSymlink) {
      await Deno.symlink(await Deno.readLink(`${from}/${e.name}`), `${to}/${e.name}`);
    } else await Deno.copyFile(`${from}/${e.name}`, `${to}/${e.name}`);
  }
}

Deno.test("tampering is refused as model_signing refuses it; --ignore-unsigned-files and --allow-symlinks as there", async (t) => {
  const ca = `${BASE}keys/certificate/ca-cert.pem`;
  const verify = (dir: string, ...extra: string[]) =>
    cli(dir, [
      "verify",
      "certificate",
      "--signature",
      "model.sig",
      "--certificate_chain",
      ca,
      ...extra,
      ".",
    ]);
  const cases: [string, (d: string) => Promise<void>, string[], RegExp | 0][] = [
    ["untouched", async () => {}, [], 0],
    [
      "a flipped byte",
      async (d) => {
        const b = await Deno.readFile(`${d}/signme-1`);
        b[0]! ^= 1;
        await Deno.writeFile(`${d}/signme-1`, b);
      },
      [],
      /signme-1.*(content|differs|changed)/i,
    ],
    ["a deleted file", (d) => Deno.remove(`${d}/signme-2`), [], /signme-2/],
    ["a renamed file", (d) => Deno.rename(`${d}/signme-2`, `${d}/signme-3`), [], /signme-[23]/],
    ["an extra file", (d) => Deno.writeTextFile(`${d}/extra`, "x"), [], /extra/],
    ["an extra empty file", (d) => Deno.writeTextFile(`${d}/extra`, ""), [], /extra/],
    ["an extra empty folder", (d) => Deno.mkdir(`${d}/extra`), [], 0],
    ["an extra symlink", (d) => Deno.symlink("signme-1", `${d}/link`), [], /link/],
    ["an extra file, --ignore-unsigned-files", (d) => Deno.writeTextFile(`${d}/extra`, "x"), [
      "--ignore-unsigned-files",
    ], 0],
    ["an extra symlink, --ignore-unsigned-files", (d) => Deno.symlink("signme-1", `${d}/link`), [
      "--ignore-unsigned-files",
    ], 0],
    ["a deleted file, --ignore-unsigned-files", (d) => Deno.remove(`${d}/signme-2`), [
      "--ignore-unsigned-files",
    ], /signme-2/],
    [
      "a flipped byte, --ignore-unsigned-files",
      async (d) => {
        const b = await Deno.readFile(`${d}/signme-1`);
        b[3]! ^= 1;
        await Deno.writeFile(`${d}/signme-1`, b);
      },
      ["--ignore-unsigned-files"],
      /signme-1/,
    ],
  ];
  for (const [name, edit, flags, expect] of cases) {
    await t.step(name, async () => {
      const dir = await Deno.makeTempDir({ prefix: "oms-tamper-" });
      try {
        await copyDir(`${BASE}v1.1.0-certificate`, `${dir}/v1.1.0-certificate`);
        const d = `${dir}/v1.1.0-certificate`;
        await edit(d);
        const r = await verify(d, ...flags);
        if (expect === 0) assert.equal(r.code, 0, r.err);
        else {
          assert.equal(r.code, 1, r.out + r.err);
          assert.match(r.err, expect);
        }
      } finally {
        await Deno.remove(dir, { recursive: true });
      }
    });
  }
});

// --- signed here -------------------------------------------------------------

/** A signer that keeps the payload and returns a bundle with no signature. */
function capture(): Signer & { payload?: Uint8Array } {
  const s: Signer & { payload?: Uint8Array } = {
    sign(payload: Uint8Array): Promise<SigstoreBundle> {
      s.payload = payload;
      return Promise.resolve({} as SigstoreBundle);
    },
  };
  return s;
}

interface Golden {
  fixture: string;
  model: string;
  file_golden: string;
  file_shard_golden: string;
  file_shard_small_golden: string;
  payload_files: string;
  payload_shards: string;
  payload_small_shards: string;
}

Deno.test("statements signed here equal upstream's serialization goldens (files, shards of 1e9 and 8 bytes)", async (t) => {
  const index: { goldens: Golden[] } = JSON.parse(await Deno.readTextFile(`${SER}index.json`));
  const tmp = await Deno.makeTempDir({ prefix: "oms-golden-" });
  try {
    // Git keeps no empty folder: make the empty model here.
    await Deno.mkdir(`${tmp}/empty_folder_model`);
    for (const g of index.goldens) {
      const model = g.model.startsWith("models/empty_folder_model")
        ? `${tmp}/empty_folder_model`
        : `${SER}${g.model}`;
      for (
        const [label, shardSize, payloadGolden, lines] of [
          ["files", undefined, g.payload_files, g.file_golden],
          ["shards", 1_000_000_000, g.payload_shards, g.file_shard_golden],
          ["small shards", 8, g.payload_small_shards, g.file_shard_small_golden],
        ] as const
      ) {
        await t.step(`${g.fixture}, ${label}`, async () => {
          const signer = capture();
          await signModel(model, {
            signer,
            signature: `${tmp}/${g.fixture}.sig`,
            allowSymlinks: true,
            ignoreGitPaths: false,
            ...(shardSize ? { shardSize } : {}),
          });
          const ours = JSON.parse(new TextDecoder().decode(signer.payload));
          const theirs = JSON.parse(await Deno.readTextFile(`${SER}${payloadGolden}`));
          assert.deepEqual(ours, theirs);
          // The serializer's lines: `name:digest` or `name:start:end:digest`.
          const expected = (await Deno.readTextFile(`${SER}${lines}`)).split("\n").filter(Boolean);
          const got = ours.predicate.resources.map((r: { name: string; digest: string }) =>
            `${r.name}:${r.digest}`
          );
          assert.deepEqual(got, expected);
          assert.equal(
            await modelDigest(model, {
              allowSymlinks: true,
              ignoreGitPaths: false,
              signature: `${tmp}/x.sig`,
              ...(shardSize ? { shardSize } : {}),
            }),
            `sha256:${theirs.subject[0].digest.sha256}`,
          );
        });
      }
    }
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});

/**
 * model_signing's verification, re-implemented from its published source for
 * this test: the DSSE signature by the public key, the subject digest over
 * the resources, then the folder hashed as the statement's serialization says
 * (its ignore paths, the signature file, the git paths unless told not to,
 * its symlink policy), and the two manifests compared exactly.
 */
async function modelSigningVerify(
  model: string,
  signaturePath: string,
  publicKeyPem: string,
  options: { ignoreGitPaths?: boolean } = {},
): Promise<void> {
  const bundle = JSON.parse(await Deno.readTextFile(signaturePath));
  const env = bundle.dsseEnvelope;
  const payload = Buffer.from(env.payload, "base64");
  const type = "application/vnd.in-toto+json";
  const pae = Buffer.concat([
    Buffer.from(`DSSEv1 ${type.length} ${type} ${payload.length} `),
    payload,
  ]);
  const key = nodeCrypto.createPublicKey(publicKeyPem);
  const curveHash = { "prime256v1": "sha256", "secp384r1": "sha384", "secp521r1": "sha512" }[
    key.asymmetricKeyDetails!.namedCurve as string
  ]!;
  if (!nodeCrypto.verify(curveHash, pae, key, Buffer.from(env.signatures[0].sig, "base64"))) {
    throw new Error("signature does not verify");
  }
  if (env.payloadType !== type) throw new Error(`payload type ${env.payloadType}`);
  const st = JSON.parse(payload.toString("utf8"));
  if (st._type !== "https://in-toto.io/Statement/v1") throw new Error("statement type");
  if (st.predicateType !== "https://model_signing/signature/v1.0") {
    throw new Error("predicate type");
  }
  const ser = st.predicate.serialization;
  const resources: { name: string; algorithm: string; digest: string }[] = st.predicate.resources;
  const root = nodeCrypto.createHash("sha256");
  for (const r of resources) root.update(Buffer.from(r.digest, "hex"));
  if (root.digest("hex") !== st.subject[0].digest.sha256) throw new Error("subject digest");
  // The hashing configuration the verifier rebuilds from the statement.
  const ignored = new Set<string>([...(ser.ignore_paths ?? [])]);
  const sigRel = signaturePath.startsWith(`${model}/`) ? signaturePath.slice(model.length + 1) : "";
  if (sigRel) ignored.add(sigRel);
  if (options.ignoreGitPaths ?? true) {
    for (const p of [".git", ".gitattributes", ".github", ".gitignore"]) ignored.add(p);
  }
  const files: string[] = [];
  const walk = async (rel: string) => {
    for await (const e of Deno.readDir(rel ? `${model}/${rel}` : model)) {
      const name = rel ? `${rel}/${e.name}` : e.name;
      if ([...ignored].some((p) => name === p || name.startsWith(`${p}/`))) continue;
      if (e.isSymlink && !ser.allow_symlinks) {
        throw new Error(`Cannot use '${name}' because it is a symlink`);
      }
      const info = await Deno.stat(`${model}/${name}`);
      if (info.isDirectory) await walk(name);
      else files.push(name);
    }
  };
  await walk("");
  const hashName = ser.hash_type === "sha256" ? "sha256" : "blake2b512";
  const actual = new Map<string, string>();
  for (const f of files) {
    const bytes = await Deno.readFile(`${model}/${f}`);
    if (ser.method === "files") {
      actual.set(f, nodeCrypto.createHash(hashName).update(bytes).digest("hex"));
    } else {
      const n = Number(ser.shard_size);
      for (let start = 0; start < bytes.length; start += n) {
        const end = Math.min(bytes.length, start + n);
        actual.set(
          `${f}:${start}:${end}`,
          nodeCrypto.createHash(hashName).update(bytes.subarray(start, end)).digest("hex"),
        );
      }
    }
  }
  const expected = new Map(resources.map((r) => [r.name, r.digest]));
  const extra = [...actual.keys()].filter((k) => !expected.has(k));
  const missing = [...expected.keys()].filter((k) => !actual.has(k));
  const differ = [...actual.keys()].filter((k) =>
    expected.has(k) && expected.get(k) !== actual.get(k)
  );
  if (extra.length || missing.length || differ.length) {
    throw new Error(`Signature mismatch: extra ${extra}, missing ${missing}, differ ${differ}`);
  }
  for (const r of resources) {
    const want = ser.method === "files"
      ? ser.hash_type
      : `${ser.hash_type}-sharded-${Number(ser.shard_size)}`;
    if (r.algorithm !== want) throw new Error(`algorithm ${r.algorithm}, expected ${want}`);
  }
}

function p256(curve = "P-256"): { pem: string; pub: string } {
  const { privateKey, publicKey } = nodeCrypto.generateKeyPairSync("ec", {
    namedCurve: { "P-256": "prime256v1", "P-384": "secp384r1", "P-521": "secp521r1" }[curve]!,
  });
  return {
    pem: privateKey.export({ type: "pkcs8", format: "pem" }) as string,
    pub: publicKey.export({ type: "spki", format: "pem" }) as string,
  };
}

// model_signing 1.1's CLI verifies files with SHA-256 only (it sets its own
// hashing configuration); its API takes the statement's, which reads SHA-256
// shards too. It writes "blake2b" but reads only "blake2", and cannot shard
// with BLAKE3: such statements verify here, not there.
Deno.test("a folder signed here passes model_signing's verification logic (files with its CLI, SHA-256 shards with its API), and a tampered copy does not", async (t) => {
  for (
    const [label, opts, curve] of [
      ["files, SHA-256, P-256", {}, "P-256"],
      ["shards of 8 bytes", { shardSize: 8 }, "P-384"],
      ["default shards", { shardSize: 1_000_000_000 }, "P-256"],
      ["P-521 key", {}, "P-521"],
    ] as const
  ) {
    await t.step(label, async () => {
      const dir = await Deno.makeTempDir({ prefix: "oms-signed-" });
      try {
        const model = `${dir}/my-model`;
        await Deno.mkdir(`${model}/onnx`, { recursive: true });
        await Deno.mkdir(`${model}/.git/objects`, { recursive: true });
        await Deno.writeTextFile(`${model}/config.json`, '{"a": 1}');
        await Deno.writeTextFile(`${model}/onnx/model.onnx`, "x".repeat(100));
        await Deno.writeTextFile(`${model}/empty`, "");
        await Deno.writeTextFile(`${model}/.gitattributes`, "*.onnx filter=lfs");
        await Deno.writeTextFile(`${model}/.git/HEAD`, "ref: main");
        await Deno.writeTextFile(`${model}/notes.txt`, "left out");
        const key = p256(curve);
        await signModel(model, {
          signer: keySigner(key.pem),
          ignorePaths: ["notes.txt"],
          ...opts,
        });
        const st = JSON.parse(
          atob(JSON.parse(await Deno.readTextFile(`${model}/model.sig`)).dsseEnvelope.payload),
        );
        assert.equal(st.subject[0].name, "my-model");
        assert.deepEqual(
          [...st.predicate.serialization.ignore_paths].sort(),
          [".git", ".gitattributes", ".github", ".gitignore", "model.sig", "notes.txt"],
        );
        await modelSigningVerify(model, `${model}/model.sig`, key.pub);
        await verifyModel(model, { policy: { publicKeys: [key.pub] } });
        // The checker can fail: a changed byte is refused by both.
        await Deno.writeTextFile(`${model}/onnx/model.onnx`, "x".repeat(99) + "y");
        await assert.rejects(modelSigningVerify(model, `${model}/model.sig`, key.pub), /differ/);
        await assert.rejects(
          verifyModel(model, { policy: { publicKeys: [key.pub] } }),
          HashMismatch,
        );
      } finally {
        await Deno.remove(dir, { recursive: true });
      }
    });
  }
});

Deno.test("sign '.' names the model after the resolved folder; empty and single-file models sign and verify", async () => {
  const dir = await Deno.makeTempDir({ prefix: "oms-names-" });
  const key = p256();
  try {
    await Deno.mkdir(`${dir}/resolved-name`);
    await Deno.writeTextFile(`${dir}/resolved-name/w.bin`, "w");
    const before = Deno.cwd();
    Deno.chdir(`${dir}/resolved-name`);
    try {
      await signModel(".", { signer: keySigner(key.pem) });
    } finally {
      Deno.chdir(before);
    }
    const st = JSON.parse(
      atob(
        JSON.parse(await Deno.readTextFile(`${dir}/resolved-name/model.sig`)).dsseEnvelope.payload,
      ),
    );
    assert.equal(st.subject[0].name, "resolved-name");
    // An empty model: resources [] (the subject digest is SHA-256 of nothing).
    await Deno.mkdir(`${dir}/empty`);
    await signModel(`${dir}/empty`, { signer: keySigner(key.pem) });
    await modelSigningVerify(`${dir}/empty`, `${dir}/empty/model.sig`, key.pub);
    const v = await verifyModel(`${dir}/empty`, { policy: { publicKeys: [key.pub] } });
    assert.deepEqual(v.resources, []);
    // A file added to an empty signed model is refused.
    await Deno.writeTextFile(`${dir}/empty/new`, "n");
    await assert.rejects(
      verifyModel(`${dir}/empty`, { policy: { publicKeys: [key.pub] } }),
      SignatureMissing,
    );
    // A single-file model, by CLI with model_signing's spelling, in shards.
    await Deno.writeTextFile(`${dir}/one.bin`, "0123456789abcdef0123");
    const r = await cli(dir, [
      "sign",
      "key",
      "--private_key",
      await writeKey(dir, key.pem),
      "--shards",
      "8",
      "one.bin",
    ]);
    assert.equal(r.code, 0, r.err);
    const pubPath = `${dir}/pub.pem`;
    await Deno.writeTextFile(pubPath, key.pub);
    const ok = await cli(dir, [
      "verify",
      "key",
      "--public_key",
      pubPath,
      "--signature",
      "one.bin.sig",
      "one.bin",
    ]);
    assert.equal(ok.code, 0, ok.err);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

async function writeKey(dir: string, pem: string): Promise<string> {
  await Deno.writeTextFile(`${dir}/key.pem`, pem);
  return `${dir}/key.pem`;
}

Deno.test("digest <dir> prints the OMS root digest model_signing prints; digest <file> the file's", async () => {
  const r = await cli(SER, [
    "digest",
    "models/sample_model",
    "--allow-symlinks",
    "--no-ignore-git-paths",
  ]);
  assert.equal(r.code, 0, r.err);
  const golden = JSON.parse(
    await Deno.readTextFile(`${SER}payload/TestPayload/sample_model_folder`),
  );
  assert.equal(r.out.split(/\s+/)[0], `sha256:${golden.subject[0].digest.sha256}`);
  const f = await cli(SER, ["digest", "models/file_model"]);
  assert.match(f.out, /^[0-9a-f]{64} {2}models\/file_model/);
});

Deno.test("--use-staging and --trust-config choose the trusted root; giving two is a usage error", async () => {
  const v = VECTORS.vectors.find((x) => x.folder === "v1.1.0-sigstore")!;
  const args = v.runs[0]!.argv.slice(3);
  // The public-good vector does not verify against staging's root.
  const staging = await cli(BASE, [...args.slice(0, -1), "--use-staging", args.at(-1)!]);
  assert.equal(staging.code, 1, staging.out);
  // A client trust configuration holding the public-good root verifies it;
  // upstream's example configuration (another log) does not.
  const tmp = await Deno.makeTempFile({ suffix: ".json" });
  try {
    await Deno.writeTextFile(
      tmp,
      JSON.stringify({
        mediaType: "application/vnd.dev.sigstore.clienttrustconfig.v0.1+json",
        trustedRoot: await publicGoodTrustedRoot(),
      }),
    );
    const config = await cli(BASE, [...args.slice(0, -1), "--trust-config", tmp, args.at(-1)!]);
    assert.equal(config.code, 0, config.err);
  } finally {
    await Deno.remove(tmp);
  }
  const example = await cli(BASE, [
    ...args.slice(0, -1),
    "--trust-config",
    `${BASE}trust_config/custom_trust_config.json`,
    args.at(-1)!,
  ]);
  assert.equal(example.code, 1, example.out);
  const both = await cli(BASE, [
    ...args.slice(0, -1),
    "--use-staging",
    "--trust-config",
    `${BASE}trust_config/custom_trust_config.json`,
    args.at(-1)!,
  ]);
  assert.equal(both.code, 2);
  const notConfig = await cli(BASE, [
    ...args.slice(0, -1),
    "--trust-config",
    `${BASE}vectors.json`,
    args.at(-1)!,
  ]);
  assert.equal(notConfig.code, 2);
  assert.match(notConfig.err, /client trust configuration/);
});
