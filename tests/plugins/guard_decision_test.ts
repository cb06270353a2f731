// The guard makes the one trust decision (sign/evidence.ts), and cannot be
// talked into running another model's weights: a model.sig planted in a
// subfolder, an embedded signature for another model or version, a model.sig
// for another model, pins that differ, a frozen lockfile, and a lockfile
// written by `safemodels lock` read back. Each case was accepted (or the
// lockfile refused) by the guard on main before the decision had one home.
import assert from "node:assert/strict";
import {
  EvidenceError,
  HashMismatch,
  keySigner,
  Lockfile,
  PolicyError,
  signModel,
  signOnnx,
} from "../../sign/mod.ts";
import { main } from "../../plugins/cli.ts";
import * as transformers from "@huggingface/transformers";
import { fixture } from "../_helpers.ts";
import { writeTinyModel } from "../_model_gen.ts";
import {
  assertClose,
  assertRefused,
  embed,
  env,
  EXPECTED,
  FILES,
  guarded,
  hub,
  KEY,
  local,
  opts,
  signedCopy,
  test,
  within,
} from "./_guard_harness.ts";

const PUB_PATH = fixture("oms/keys/signing-key-pub.pem");
const quiet = { out: () => {}, err: () => {}, isTerminal: false };

/** An unsigned copy of tiny-bert at `<root>/tiny-bert`. */
async function plainCopy(): Promise<{ root: string; dir: string }> {
  const { root, dir } = await signedCopy();
  await Deno.remove(`${dir}/model.sig`);
  return { root, dir };
}

/** A lockfile pinning the JSON files of `dir` (the weights left to other evidence). */
async function jsonPins(dir: string, name = "tiny-bert", version = "v1"): Promise<Lockfile> {
  const lock = new Lockfile();
  const digests: Record<string, string> = {};
  for (const f of FILES.filter((f) => f.endsWith(".json"))) {
    digests[f] = `sha256:${await sha(await Deno.readFile(`${dir}/${f}`))}`;
  }
  lock.record(name, version, { digests });
  return lock;
}

async function sha(bytes: Uint8Array): Promise<string> {
  const d = await crypto.subtle.digest("SHA-256", bytes as Uint8Array<ArrayBuffer>);
  return [...new Uint8Array(d)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

test(
  "guard: a model.sig in a subfolder is never evidence (another model's signed weights planted in onnx/)",
  opts,
  async () => {
    // The model is signed at its root; an attacker swaps in another model's
    // weights together with that model's (validly signed) model.sig in onnx/.
    const { root, dir } = await signedCopy();
    const other = await Deno.makeTempDir({ prefix: "other-" });
    await writeTinyModel(`${other}/m`);
    await Deno.copyFile(`${other}/m/onnx/model.onnx`, `${dir}/onnx/model.onnx`);
    await signModel(`${dir}/onnx`, { signer: keySigner(KEY) });
    await guarded({}, async () => {
      local(root);
      await assertRefused("tiny-bert", HashMismatch, /tiny-bert\/onnx\/model\.onnx/);
    });
    await Deno.remove(root, { recursive: true });
    await Deno.remove(other, { recursive: true });
  },
);

test(
  "guard: an embedded ONNX signature vouches only for the model and version it names",
  opts,
  async (t) => {
    for (
      const [what, name, version, policyVersion, refusal] of [
        ["another model", "acme/other", "1", undefined, "wrong-model"],
        ["an older version", "tiny-bert", "1", "2", "wrong-version"],
        ["this model", "tiny-bert", "2", "2", undefined],
        ["this model, any version", "acme/tiny-bert", "1", undefined, undefined],
      ] as const
    ) {
      await t.step(what, async () => {
        const { root, dir } = await plainCopy();
        await signOnnx(`${dir}/onnx/model.onnx`, { signer: keySigner(KEY), name, version });
        const lockfile = await jsonPins(dir, "tiny-bert", policyVersion ?? "v1");
        const policy = {
          publicKeys: [await Deno.readTextFile(PUB_PATH)],
          ...(policyVersion ? { models: { "tiny-bert": { version: policyVersion } } } : {}),
        };
        await guarded({ policy, lockfile }, async (guard) => {
          local(root);
          if (refusal === undefined) {
            assertClose(await embed("tiny-bert"), EXPECTED);
            const weights = guard.records.find((r) => r.file === "onnx/model.onnx");
            assert.equal(weights?.evidence, "onnx-embedded");
          } else {
            const e = await assertRefused("tiny-bert", PolicyError, /onnx\/model\.onnx/);
            assert.equal((e as PolicyError).code, refusal);
          }
        });
        await Deno.remove(root, { recursive: true });
      });
    }
  },
);

test("guard: a model.sig for another model is refused", opts, async () => {
  const { root, dir } = await plainCopy();
  await signModel(dir, { signer: keySigner(KEY), modelName: "other-model" });
  await guarded({}, async () => {
    local(root);
    const e = await assertRefused(
      "tiny-bert",
      PolicyError,
      /model "other-model", expected "tiny-bert"/,
    );
    assert.equal((e as PolicyError).code, "wrong-model");
  });
  await Deno.remove(root, { recursive: true });
});

test(
  "guard: a lockfile written by `safemodels lock` is read back; pins bind and frozen refuses the unpinned",
  opts,
  async () => {
    const { root, dir } = await signedCopy();
    const path = `${root}/safemodels.lock`;
    const code = await main(
      ["lock", dir, "--key", PUB_PATH, "--name", "tiny-bert", "--lock", path],
      quiet,
    );
    assert.equal(code, 0);
    // Signed and pinned: loads, frozen.
    await guarded({ lockfile: path, frozen: true }, async (guard) => {
      local(root);
      assertClose(await embed("tiny-bert"), EXPECTED);
      assert.ok(guard.records.every((r) => r.verdict === "verified" && r.evidence === "oms"));
    });
    // The signature gone, the pins alone vouch.
    await Deno.rename(`${dir}/model.sig`, `${root}/model.sig.bak`);
    await guarded({ lockfile: path, frozen: true }, async (guard) => {
      local(root);
      assertClose(await embed("tiny-bert"), EXPECTED);
      assert.ok(guard.records.every((r) => r.evidence === "lockfile"));
    });
    // Re-signed after a change: the signature vouches, the pin refuses.
    await Deno.rename(`${root}/model.sig.bak`, `${dir}/model.sig`);
    const config = JSON.parse(await Deno.readTextFile(`${dir}/config.json`));
    await Deno.writeTextFile(`${dir}/config.json`, JSON.stringify({ ...config, note: "changed" }));
    await signModel(dir, { signer: keySigner(KEY) });
    await guarded({ lockfile: path }, async () => {
      local(root);
      const e = await assertRefused("tiny-bert", HashMismatch, /config\.json/);
      assert.equal((e as HashMismatch).code, "pin-differs");
    });
    // A signed model the frozen lockfile does not know.
    const { root: root2 } = await signedCopy();
    await Deno.rename(`${root2}/tiny-bert`, `${root2}/tiny-bert-2`);
    await guarded({ lockfile: path, frozen: true }, async () => {
      local(root2);
      const e = await assertRefused("tiny-bert-2", PolicyError, /frozen/);
      assert.equal((e as PolicyError).code, "not-locked");
    });
    await Deno.remove(root, { recursive: true });
    await Deno.remove(root2, { recursive: true });
  },
);

test(
  "guard: a hub model pinned with `safemodels lock --model-version main` loads frozen from the hub",
  opts,
  async () => {
    const { root, dir } = await signedCopy();
    await Deno.remove(`${dir}/model.sig`);
    const path = `${root}/safemodels.lock`;
    // Unsigned: pinned with signatures optional.
    const code = await main([
      "lock",
      dir,
      "--key",
      PUB_PATH,
      "--signatures-optional",
      "--name",
      "acme/tiny-bert",
      "--model-version",
      "main",
      "--lock",
      path,
    ], quiet);
    assert.equal(code, 0);
    const server = hub({ "acme/tiny-bert": dir });
    try {
      await guarded({ lockfile: path, frozen: true }, async (guard) => {
        env.remoteHost = server.url;
        env.allowLocalModels = false;
        env.cacheKey = `guard-test-${crypto.randomUUID()}`;
        assertClose(await embed("acme/tiny-bert"), EXPECTED);
        assert.ok(guard.records.every((r) => r.evidence === "lockfile"));
        // Another revision is not pinned.
        await assertRefused("acme/tiny-bert", PolicyError, /acme\/tiny-bert@v2/, {
          revision: "v2",
        });
        await caches.delete(env.cacheKey);
      });
    } finally {
      await server.close();
    }
    await Deno.remove(root, { recursive: true });
  },
);

test(
  "guard: a hub that streams model.sig forever costs at most the evidence bound",
  opts,
  async () => {
    const { root, dir } = await signedCopy();
    const server = hub({ "acme/tiny-bert": dir });
    server.streams.set("model.sig", () =>
      new ReadableStream<Uint8Array>({
        pull(controller) {
          controller.enqueue(new Uint8Array(1 << 20).fill(0x20));
        },
      }));
    // What the guard reads of model.sig, counted between it and the network.
    let read = 0;
    const fetch = env.fetch;
    env.fetch = async (input: string | URL, init?: unknown) => {
      const res: Response = await fetch(input, init);
      if (!String(input).endsWith("/model.sig") || !res.body) return res;
      const counted = res.body.pipeThrough(
        new TransformStream<Uint8Array, Uint8Array>(
          {
            transform(chunk, controller) {
              read += chunk.byteLength;
              controller.enqueue(chunk);
            },
          },
          { highWaterMark: 1 },
          { highWaterMark: 0 },
        ),
      );
      return new Response(counted, { status: res.status, headers: res.headers });
    };
    try {
      await guarded({}, async () => {
        env.remoteHost = server.url;
        env.allowLocalModels = false;
        env.cacheKey = `guard-test-${crypto.randomUUID()}`;
        const e = await assertRefused("acme/tiny-bert", EvidenceError, /larger than 8 MiB/);
        assert.equal((e as EvidenceError).code, "too-large");
        assert.ok(read <= (8 << 20) + (2 << 20), `the guard read ${read} bytes of model.sig`);
        await caches.delete(env.cacheKey);
      });
    } finally {
      env.fetch = fetch;
      await server.close();
    }
    await Deno.remove(root, { recursive: true });
  },
);

test("guard: a model.sig nested deeper than the JSON bound is refused unparsed", opts, async () => {
  const { root, dir } = await signedCopy();
  await Deno.writeTextFile(`${dir}/model.sig`, "[".repeat(100_000) + "]".repeat(100_000));
  await guarded({}, async () => {
    local(root);
    const e = await assertRefused("tiny-bert", EvidenceError, /nests deeper than 32/);
    assert.equal((e as EvidenceError).code, "too-deep");
  });
  await Deno.remove(root, { recursive: true });
});

test(
  "guard: a model loaded by path is named by its whole path; an embedded signature for another org's namesake is refused",
  opts,
  async () => {
    const root = await Deno.makeTempDir({ prefix: "guard-path-" });
    const dir = `${root}/acme/tiny-bert`;
    await Deno.mkdir(`${dir}/onnx`, { recursive: true });
    for (const f of FILES) await Deno.copyFile(fixture(`tiny-bert/${f}`), `${dir}/${f}`);
    await signOnnx(`${dir}/onnx/model.onnx`, {
      signer: keySigner(KEY),
      name: "evil/tiny-bert",
      version: "1",
    });
    const name = dir; // a path as the model id (outside env.localModelPath)
    const lockfile = await jsonPins(dir, name);
    await guarded({ lockfile }, async (guard) => {
      env.allowRemoteModels = false;
      const e = await assertRefused(
        dir,
        PolicyError,
        /"evil\/tiny-bert", expected ".*\/acme\/tiny-bert"/,
      );
      assert.equal((e as PolicyError).code, "wrong-model");
      assert.ok(guard.records.every((r) => r.model === dir));
    });
    // Signed for acme/tiny-bert: the path ends with that name, so it passes.
    await signOnnx(`${dir}/onnx/model.onnx`, {
      signer: keySigner(KEY),
      name: "acme/tiny-bert",
      version: "1",
    });
    await guarded({ lockfile }, async () => {
      env.allowRemoteModels = false;
      assertClose(await embed(dir), EXPECTED);
    });
    await Deno.remove(root, { recursive: true });
  },
);

test(
  "guard: weights whose model root was never asked for are refused (no guessing from a subfolder)",
  opts,
  async () => {
    const { root, dir } = await signedCopy();
    await Deno.rename(`${dir}/onnx`, `${dir}/weights`);
    await signModel(dir, { signer: keySigner(KEY) });
    const config = await transformers.AutoConfig.from_pretrained(fixture("tiny-bert"), {
      local_files_only: true,
    });
    await guarded({}, async () => {
      local(root);
      const error = await within(
        transformers.AutoModel.from_pretrained("tiny-bert", {
          config,
          subfolder: "weights",
          dtype: "fp32",
        }).then(() => undefined, (e: Error) => e),
      );
      assert.ok(error instanceof PolicyError, String(error));
      assert.equal(error.code, "refused-file");
      assert.match(error.message, /model root \(and model\.sig\) is unknown/);
    });
    await Deno.remove(root, { recursive: true });
  },
);

test(
  "guard: a symbolic link in the model folder is refused, as verify refuses it",
  opts,
  async () => {
    const { root, dir } = await signedCopy();
    const outside = await Deno.makeTempDir({ prefix: "guard-link-" });
    // Same bytes, behind a link: the signature still matches, the link does not pass.
    await Deno.rename(`${dir}/onnx/model.onnx`, `${outside}/model.onnx`);
    await Deno.symlink(`${outside}/model.onnx`, `${dir}/onnx/model.onnx`);
    await guarded({}, async () => {
      local(root);
      const e = await assertRefused("tiny-bert", PolicyError, /symbolic link/);
      assert.equal((e as PolicyError).code, "refused-file");
    });
    const out = capture();
    assert.equal(
      await main(["verify", dir, "--key", PUB_PATH, "--name", "tiny-bert", "--json"], out.io),
      1,
    );
    assert.match(out.text(), /refused-file/);
    await Deno.remove(root, { recursive: true });
    await Deno.remove(outside, { recursive: true });
  },
);

test(
  "guard and verify: a model.sig that is a pipe is refused at once, not waited on",
  opts,
  async () => {
    const { root, dir } = await signedCopy();
    await Deno.remove(`${dir}/model.sig`);
    const mkfifo = await new Deno.Command("mkfifo", { args: [`${dir}/model.sig`] }).output();
    assert.ok(mkfifo.success);
    await guarded({}, async () => {
      local(root);
      const e = await assertRefused("tiny-bert", EvidenceError, /not a regular file/);
      assert.equal((e as EvidenceError).code, "unreadable");
    });
    const out = capture();
    assert.equal(await within(main(["verify", dir, "--key", PUB_PATH], out.io)), 2);
    assert.match(out.text(), /not a regular file/);
    await Deno.remove(root, { recursive: true });
  },
);

function capture() {
  const lines: string[] = [];
  return {
    io: { out: (s: string) => lines.push(s), err: (s: string) => lines.push(s), isTerminal: false },
    text: () => lines.join("\n"),
  };
}

test(
  "guard: a model.sig with shards or BLAKE2b digests (model_signing --shards, --hash) vouches locally and from the hub; a changed byte is refused",
  opts,
  async (t) => {
    for (
      const [label, options] of [
        ["shards of 1 KiB", { shardSize: 1024 }],
        ["default shards", { shardSize: 1_000_000_000 }],
        ["BLAKE2b", { hashType: "blake2b" as const }],
        ["BLAKE2b shards", { hashType: "blake2b" as const, shardSize: 4096 }],
      ] as const
    ) {
      await t.step(label, async () => {
        const { root, dir } = await signedCopy();
        await signModel(dir, { signer: keySigner(KEY), ...options });
        await guarded({}, async (guard) => {
          local(root);
          assertClose(await embed("tiny-bert"), EXPECTED);
          assert.ok(guard.records.length > 0 && guard.records.every((r) => r.evidence === "oms"));
        });
        const server = hub({ "acme/tiny-bert": dir });
        try {
          await guarded({}, async () => {
            env.remoteHost = server.url;
            env.allowLocalModels = false;
            env.cacheKey = `guard-test-${crypto.randomUUID()}`;
            assertClose(await embed("acme/tiny-bert"), EXPECTED);
            await caches.delete(env.cacheKey);
          });
        } finally {
          await server.close();
        }
        // One flipped byte in the weights (and in a small file).
        const weights = `${dir}/onnx/model.onnx`;
        const bytes = await Deno.readFile(weights);
        bytes[bytes.length - 5]! ^= 1;
        await Deno.writeFile(weights, bytes);
        await guarded({}, async () => {
          local(root);
          await assertRefused("tiny-bert", HashMismatch, /model\.onnx/);
        });
        bytes[bytes.length - 5]! ^= 1;
        await Deno.writeFile(weights, bytes);
        const config = await Deno.readTextFile(`${dir}/config.json`);
        await Deno.writeTextFile(`${dir}/config.json`, config.replace("{", "{ "));
        await guarded({}, async () => {
          local(root);
          await assertRefused("tiny-bert", HashMismatch, /config\.json/);
        });
        await Deno.remove(root, { recursive: true });
      });
    }
  },
);
