// What a guarded load reuses must never change a verdict (attacker review of
// the warm-start speed-ups): a verdict reused within one load still keeps
// score (a refusal poisons the model again) and is not reused once the file
// is reached through a link; a file: URL env.localModelPath places files in
// their real model (its model.sig decides them); a store on a file system
// that reports no owner, mode or inode is not trusted.
import assert from "node:assert/strict";
import * as transformers from "@huggingface/transformers";
import { Decisions } from "../../plugins/_guard_decisions.ts";
import { nodeFiles } from "../../plugins/_guard_files.ts";
import { VerifiedStore } from "../../plugins/_verified_store.ts";
import { verifySignedText } from "../../sign/_verify_signed.ts";
import { HashMismatch, keySigner, signModel } from "../../sign/mod.ts";
import { sha256hex } from "../_helpers.ts";
import { assertRefused, guarded, KEY, opts, PUB, signedCopy, test } from "./_guard_harness.ts";

/** Decisions over a signed one-file model; its `config.json` ref and a digest helper. */
async function signedConfig(root: string) {
  const dir = `${root}/m`;
  await Deno.mkdir(dir);
  const good = new TextEncoder().encode('{"hidden_size":8}');
  await Deno.writeFile(`${dir}/config.json`, good);
  await signModel(dir, { signer: keySigner(KEY) });
  const files = nodeFiles();
  const ref = files.locateLocal(`${dir}/config.json`, { localModelPath: "" } as never)!;
  const records: { verdict: string }[] = [];
  const decisions = new Decisions({
    env: { allowRemoteModels: false } as never,
    policy: { publicKeys: [PUB] },
    mode: "enforce",
    frozen: false,
    lockfile: undefined,
    onReport: (r) => records.push(r),
    files,
    verifiers: { signed: verifySignedText },
    fetch: fetch as never,
    store: () => undefined,
  });
  const digest = (b: Uint8Array) => `sha256:${sha256hex(b)}`;
  return { dir, good, ref, decisions, records, digest };
}

test(
  "a verdict reused within one load keeps score: refused, verified, refused again poisons the model",
  opts,
  async () => {
    const root = await Deno.makeTempDir({ prefix: "reuse-" });
    try {
      const { good, ref, decisions, records, digest } = await signedConfig(root);
      const bad = new TextEncoder().encode('{"hidden_size":9}');
      assert.equal((await decisions.check(ref, digest(bad), bad)).ok, false);
      assert.equal((await decisions.check(ref, digest(good), good)).ok, true);
      await decisions.settled(ref.model);
      assert.equal((await decisions.check(ref, digest(bad), bad)).ok, false);
      await assert.rejects(decisions.settled(ref.model), HashMismatch);
      // Each verdict recorded once.
      assert.deepEqual(records.map((r) => r.verdict), ["refused", "verified"]);
    } finally {
      await Deno.remove(root, { recursive: true });
    }
  },
);

test(
  "a verdict is not reused once the file is reached through a link (same bytes)",
  opts,
  async () => {
    const root = await Deno.makeTempDir({ prefix: "reuse-" });
    try {
      const { dir, good, ref, decisions, digest } = await signedConfig(root);
      assert.equal((await decisions.check(ref, digest(good), good)).ok, true);
      await Deno.writeFile(`${root}/elsewhere.json`, good);
      await Deno.remove(`${dir}/config.json`);
      await Deno.symlink(`${root}/elsewhere.json`, `${dir}/config.json`);
      const linked = await decisions.check(ref, digest(good), good);
      assert.equal(linked.ok, false);
      assert.match(linked.error!.message, /symbolic link/);
    } finally {
      await Deno.remove(root, { recursive: true });
    }
  },
);

test(
  "a file: URL env.localModelPath: files are decided in their real model (a tampered tokenizer is refused with signatures optional)",
  opts,
  async () => {
    const { root, dir } = await signedCopy();
    try {
      const tokenizer = JSON.parse(await Deno.readTextFile(`${dir}/tokenizer.json`));
      tokenizer.truncation = {
        max_length: 3,
        strategy: "LongestFirst",
        stride: 0,
        direction: "Right",
      };
      await Deno.writeTextFile(`${dir}/tokenizer.json`, JSON.stringify(tokenizer));
      // Deno's fetch reads file: URLs, so transformers.js may be given one.
      transformers.env.useFS = false;
      await guarded({ policy: { publicKeys: [PUB], signatures: "optional" } }, async () => {
        transformers.env.localModelPath = `file://${root}/`;
        transformers.env.allowRemoteModels = false;
        transformers.env.cacheKey = `reuse-${crypto.randomUUID()}`;
        await assertRefused("tiny-bert", HashMismatch, /tokenizer\.json/);
      });
    } finally {
      transformers.env.useFS = true;
      await Deno.remove(root, { recursive: true });
    }
  },
);

test(
  "a verified store is not trusted where the file system reports no owner, mode or inode",
  opts,
  async () => {
    const root = await Deno.makeTempDir({ prefix: "reuse-" });
    const deno = Deno as unknown as Record<"lstat" | "stat", typeof Deno.lstat>;
    const { lstat, stat } = deno;
    const blank = (f: typeof Deno.lstat) => async (p: string | URL) => ({
      ...(await f(p)),
      mode: null,
      uid: null,
      ino: null,
    });
    try {
      assert.notEqual(await VerifiedStore.open(`${root}/store`), undefined);
      // As Deno reports on Windows.
      deno.lstat = blank(lstat);
      deno.stat = blank(stat);
      const warned: unknown[] = [];
      const warn = console.warn;
      console.warn = (...a: unknown[]) => warned.push(a.join(" "));
      try {
        assert.equal(await VerifiedStore.open(`${root}/store`), undefined);
      } finally {
        console.warn = warn;
      }
      assert.match(String(warned[0]), /not using the verified store/);
    } finally {
      deno.lstat = lstat;
      deno.stat = stat;
      await Deno.remove(root, { recursive: true });
    }
  },
);

test(
  "a local file read in buffers its measured size is still read to its end when it grew",
  opts,
  async () => {
    const root = await Deno.makeTempDir({ prefix: "reuse-" });
    try {
      const bytes = new Uint8Array(10_000).map((_, i) => i % 251);
      await Deno.writeFile(`${root}/config.json`, bytes);
      // Measured at 10 bytes (the file grew after its size was taken).
      const read = new Uint8Array(
        await new Response(nodeFiles().fileBody(`${root}/config.json`, 10)).arrayBuffer(),
      );
      assert.deepEqual(read, bytes);
    } finally {
      await Deno.remove(root, { recursive: true });
    }
  },
);
