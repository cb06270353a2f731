// `safemodels lock hf://ORG/NAME[@REVISION]` against the loopback hub: the
// pins come from the hub's published LFS digests (no weight moves), equal the
// digests of the same files read locally, move only with --update, and the
// guard, frozen on that lockfile, loads the model from the hub and refuses a
// changed weight with no onnxruntime session.
import assert from "node:assert/strict";
import { EvidenceError, HashMismatch } from "../../sign/mod.ts";
import { Lockfile } from "../../sign/lockfile.ts";
import { fixture } from "../_helpers.ts";
import { startLoopbackHub } from "../_loopback_hub.ts";
import { runCli as run } from "./_cli_run.ts";
import {
  assertClose,
  assertRefused,
  embed,
  env,
  EXPECTED,
  FILES,
  guarded,
  opts,
  signedCopy,
  test,
} from "./_guard_harness.ts";

async function tinyBert(): Promise<Record<string, Uint8Array>> {
  const files: Record<string, Uint8Array> = {};
  for (const f of FILES) files[f] = await Deno.readFile(fixture(`tiny-bert/${f}`));
  return files;
}

/** transformers.js loads from the loopback hub only, with no cache of its own; the log restarts. */
function fromHub(hub: { url: string; log: string[] }, cacheKey: string): void {
  env.remoteHost = `${hub.url}/`;
  env.allowLocalModels = false;
  env.useBrowserCache = false;
  env.useFSCache = false;
  env.cacheKey = `${cacheKey}-${crypto.randomUUID()}`;
  hub.log.length = 0;
}

test(
  "cli lock hf://: pins from the hub's listing, no weight fetched; equal to the local files' digests",
  opts,
  async () => {
    const hub = startLoopbackHub();
    const dir = await Deno.makeTempDir({ prefix: "cli-hub-" });
    try {
      const files = await tinyBert();
      const commit = hub.add("acme/tiny-bert", files);
      const lock = `${dir}/safemodels.lock`;
      const r = await run(["lock", "hf://acme/tiny-bert", "--hub-url", hub.url, "--lock", lock]);
      assert.equal(r.code, 0, r.err);
      assert.match(r.out, new RegExp(`is commit ${commit}; 4 file\\(s\\) pinned`));
      assert.ok(
        !hub.log.some((l) => l.includes("/cdn/") || l.includes("model.onnx")),
        hub.log.join("\n"),
      );
      const entry = (await Lockfile.load(lock)).get("acme/tiny-bert", "main");
      assert.equal(entry?.commit, commit);

      // The same files on disk, verified against the pins by the local path.
      const local = `${dir}/acme/tiny-bert`;
      for (const [path, bytes] of Object.entries(files)) {
        await Deno.mkdir(`${local}/${path}`.replace(/\/[^/]+$/, ""), { recursive: true });
        await Deno.writeFile(`${local}/${path}`, bytes);
      }
      const verify = () =>
        run([
          "verify",
          local,
          "--lock",
          lock,
          "--frozen",
          "--name",
          "acme/tiny-bert",
          "--model-version",
          "main",
          "--signatures-optional",
          // verify needs a policy; the model is unsigned, the pins vouch.
          "--key",
          fixture("oms/keys/signing-key-pub.pem"),
        ]);
      let v = await verify();
      assert.equal(v.code, 0, v.err);
      const bytes = await Deno.readFile(`${local}/onnx/model.onnx`);
      bytes[2000]! ^= 1;
      await Deno.writeFile(`${local}/onnx/model.onnx`, bytes);
      v = await verify();
      assert.equal(v.code, 1, v.err);
      assert.match(v.err, /pin|differ/);

      // The hub's main moves: lock again refuses, --update moves the pin.
      const moved = hub.add("acme/tiny-bert", {
        ...files,
        "config.json": new TextEncoder().encode("{}"),
      });
      const again = await run([
        "lock",
        "hf://acme/tiny-bert",
        "--hub-url",
        hub.url,
        "--lock",
        lock,
      ]);
      assert.equal(again.code, 1, again.err);
      assert.match(again.err, /config\.json/);
      const updated = await run([
        "lock",
        "hf://acme/tiny-bert@main",
        "--hub-url",
        hub.url,
        "--lock",
        lock,
        "--update",
        "--json",
      ]);
      assert.equal(updated.code, 0, updated.err);
      const doc = JSON.parse(updated.out);
      assert.equal(doc.lock, "updated");
      assert.equal(doc.commit, moved);
      assert.deepEqual(
        doc.files.map((f: { file: string; evidence: string }) => `${f.file}:${f.evidence}`).sort(),
        [
          "config.json:downloaded",
          "onnx/model.onnx:hub-lfs",
          "tokenizer.json:hub-lfs",
          "tokenizer_config.json:downloaded",
        ],
      );
    } finally {
      await hub.close();
      await Deno.remove(dir, { recursive: true });
    }
  },
);

test(
  "cli lock hf://: options that would verify a signature, and verify hf://, are usage errors",
  opts,
  async () => {
    const k = await run(["lock", "hf://acme/tiny-bert", "--key", "k.pub.pem"]);
    assert.equal(k.code, 2);
    assert.match(k.err, /--key does not apply/);
    const v = await run(["verify", "hf://acme/tiny-bert", "--key", "k.pub.pem"]);
    assert.equal(v.code, 2);
    assert.match(v.err, /pin a hub model with lock/);
    const bad = await run(["lock", "hf://../x"]);
    assert.equal(bad.code, 2);
    assert.match(bad.err, /expected hf:\/\/ORG\/NAME/);
    const url = await run(["verify", ".", "--hub-url", "http://x", "--key", "k"]);
    assert.equal(url.code, 2);
  },
);

test(
  "guard on a hub-pinned lockfile (frozen): loads the pinned commit whatever main now is; a hub announcing another digest is refused before any weight byte moves",
  opts,
  async () => {
    const hub = startLoopbackHub();
    const dir = await Deno.makeTempDir({ prefix: "cli-hub-guard-" });
    try {
      const files = await tinyBert();
      const commit = hub.add("acme/tiny-bert", files, { lfsFrom: 4096 });
      const lock = `${dir}/safemodels.lock`;
      const r = await run(["lock", "hf://acme/tiny-bert", "--hub-url", hub.url, "--lock", lock]);
      assert.equal(r.code, 0, r.err);
      // main moves on to other weights after the pin.
      const weights = new Uint8Array(files["onnx/model.onnx"]!);
      weights[3000]! ^= 1;
      hub.add("acme/tiny-bert", { ...files, "onnx/model.onnx": weights }, { lfsFrom: 4096 });
      await guarded(
        { policy: { signatures: "optional" }, lockfile: lock, frozen: true },
        async (guard) => {
          fromHub(hub, "hub-pin");
          // Immutable URLs: the pinned commit is what loads.
          assertClose(await embed("acme/tiny-bert"), EXPECTED);
          assert.ok(
            guard.records.every((x) => x.verdict === "verified" && x.evidence === "lockfile"),
          );
          const resolves = hub.log.filter((l) => l.includes("/resolve/"));
          assert.ok(resolves.length >= 4, hub.log.join("\n"));
          assert.ok(resolves.every((l) => l.includes(`/resolve/${commit}/`)), resolves.join("\n"));

          // A hub that lies at the pinned commit: its redirect announces another
          // SHA-256. Refused on the redirect, the storage never asked.
          hub.override = (req) => {
            const path = new URL(req.url).pathname;
            if (!path.endsWith(`/resolve/${commit}/onnx/model.onnx`)) return undefined;
            return new Response(null, {
              status: 302,
              headers: {
                location: `${hub.url}/cdn/${"e".repeat(64)}`,
                "x-linked-etag": `"${"e".repeat(64)}"`,
                "x-linked-size": "1",
              },
            });
          };
          hub.log.length = 0;
          await new Promise((res) => setTimeout(res, 1600)); // a new load epoch
          const error = await assertRefused("acme/tiny-bert", HashMismatch, /onnx\/model\.onnx/);
          assert.match(error.message, /refused before any byte was transferred/);
          assert.equal((error as HashMismatch).code, "pin-differs");
          assert.ok(!hub.log.some((l) => l.includes("/cdn/")), hub.log.join("\n"));

          // A redirect to a local file is never followed (fetch itself refuses those).
          const secret = `${dir}/secret.json`;
          await Deno.writeTextFile(secret, '{"model_type":"bert"}');
          hub.override = (req) =>
            new URL(req.url).pathname.endsWith(`/resolve/${commit}/onnx/model.onnx`)
              ? new Response(null, { status: 302, headers: { location: `file://${secret}` } })
              : undefined;
          await new Promise((res) => setTimeout(res, 1600));
          await assertRefused("acme/tiny-bert", EvidenceError, /redirects it to a file: URL/);
        },
      );
    } finally {
      hub.override = undefined;
      await hub.close();
      await Deno.remove(dir, { recursive: true });
    }
  },
);

test(
  "guard on a signed hub model: model.sig is verified before any weight is asked for; a hub announcing another digest moves no weight byte",
  opts,
  async () => {
    const hub = startLoopbackHub();
    const { root, dir } = await signedCopy();
    try {
      const files: Record<string, Uint8Array> = {};
      for (const f of [...FILES, "model.sig"]) files[f] = await Deno.readFile(`${dir}/${f}`);
      hub.add("acme/tiny-bert", files, { lfsFrom: 4096 });
      await guarded({}, async () => {
        fromHub(hub, "hub-signed");
        assertClose(await embed("acme/tiny-bert"), EXPECTED);
        const sig = hub.log.findIndex((l) => l.endsWith("/model.sig"));
        const weight = hub.log.findIndex((l) =>
          l.includes("onnx/model.onnx") && !l.startsWith("HEAD")
        );
        assert.ok(sig >= 0 && weight > sig, hub.log.join("\n"));

        hub.override = (req) =>
          new URL(req.url).pathname.endsWith("/onnx/model.onnx")
            ? new Response(null, {
              status: 302,
              headers: {
                location: `${hub.url}/cdn/${"d".repeat(64)}`,
                "x-linked-etag": `"${"d".repeat(64)}"`,
              },
            })
            : undefined;
        hub.log.length = 0;
        await new Promise((res) => setTimeout(res, 1600)); // a new load epoch
        const error = await assertRefused("acme/tiny-bert", HashMismatch, /onnx\/model\.onnx/);
        assert.equal((error as HashMismatch).code, "content-changed");
        assert.match(error.message, /model's signature signs .*before any byte was transferred/);
        assert.ok(!hub.log.some((l) => l.includes("/cdn/")), hub.log.join("\n"));
      });
    } finally {
      hub.override = undefined;
      await hub.close();
      await Deno.remove(root, { recursive: true });
    }
  },
);
