// Sharded checkpoints and model folders: one model-level hash over every
// shard, equal to the hash of the same weights unsharded; the index and the
// shards must agree.
import assert from "node:assert/strict";
import { hashManifest, ModelFormatError, openModel, safeHash } from "../../hash/mod.ts";
import { main } from "../../plugins/cli.ts";
import { buildSafetensors, fixture } from "../_helpers.ts";

const SHARDED = new URL("../testdata/sharded/", import.meta.url).pathname;

/** The tensors of tiny-bert's safetensors file, split into two shards with an index. */
async function splitTinyBert(
  dir: string,
  edit: (map: Record<string, string>) => void = () => {},
  halve = (names: string[]) => [names.slice(0, 2), names.slice(2)],
): Promise<void> {
  const model = await openModel(fixture("tiny-bert/model.safetensors"));
  const tensors: Record<string, { dtype: string; shape: number[]; data: Uint8Array }> = {};
  for (const t of model.tensors) {
    const parts: Uint8Array[] = [];
    for await (const c of t.chunks()) parts.push(c.slice());
    const data = new Uint8Array(parts.reduce((n, p) => n + p.byteLength, 0));
    parts.reduce((at, p) => (data.set(p, at), at + p.byteLength), 0);
    tensors[t.name] = { dtype: t.dtype, shape: [...t.shape], data };
  }
  await model.close();
  const names = Object.keys(tensors).sort();
  const halves = halve(names);
  const map: Record<string, string> = {};
  for (const [i, half] of halves.entries()) {
    const shard = `model-0000${i + 1}-of-00002.safetensors`;
    await Deno.writeFile(
      `${dir}/${shard}`,
      buildSafetensors(Object.fromEntries(half.map((n) => [n, tensors[n]!]))),
    );
    for (const n of half) map[n] = shard;
  }
  edit(map);
  await Deno.writeTextFile(
    `${dir}/model.safetensors.index.json`,
    JSON.stringify({ metadata: { total_size: 0 }, weight_map: map }),
  );
}

async function withDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "sharded-" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("safeHash() of a sharded safetensors checkpoint equals the unsharded hash, by index or by folder", () =>
  withDir(async (dir) => {
    await splitTinyBert(dir);
    const whole = await safeHash(fixture("tiny-bert/model.safetensors"));
    assert.equal(await safeHash(`${dir}/model.safetensors.index.json`), whole);
    assert.equal(await safeHash(dir), whole);
    for (const algorithm of ["seed-xxh64", "seed-blake2b160"] as const) {
      assert.equal(
        await safeHash(dir, { algorithm }),
        await safeHash(fixture("tiny-bert/model.safetensors"), { algorithm }),
      );
    }
    const m = await hashManifest(dir);
    assert.deepEqual(m.files, [
      "model.safetensors.index.json",
      "model-00001-of-00002.safetensors",
      "model-00002-of-00002.safetensors",
    ]);
    assert.ok(m.tensors.every((t) => t.file?.startsWith("model-0000")));
  }));

Deno.test("safeHash() of torch's sharded .bin checkpoint equals tiny-bert's (shards written by torch.save)", async () => {
  const whole = await safeHash(fixture("tiny-bert/pytorch_model.bin"));
  assert.equal(await safeHash(`${SHARDED}pytorch_model.bin.index.json`), whole);
  assert.equal(await safeHash(SHARDED), whole);
  assert.equal(await safeHash(fixture("tiny-bert")), whole); // the folder: model.safetensors
});

Deno.test("a sharded checkpoint whose index and shards disagree is refused, naming the tensor", async (t) => {
  const cases: [string, (map: Record<string, string>) => void, RegExp][] = [
    ["a tensor in the wrong shard", (m) => {
      const [name] = Object.keys(m).sort();
      m[name!] = "model-00002-of-00002.safetensors";
    }, /which the index places in model-00002/],
    ["a tensor the index does not list", (m) => {
      delete m[Object.keys(m).sort()[0]!];
    }, /which the index does not list/],
    ["a tensor the shards do not hold", (m) => {
      m["ghost.weight"] = "model-00001-of-00002.safetensors";
    }, /"ghost\.weight" in model-00001.*which does not hold it/],
    ["a shard outside the folder", (m) => {
      m["ghost.weight"] = "../elsewhere.safetensors";
    }, /a file name inside the model's folder/],
  ];
  for (const [name, edit, message] of cases) {
    await t.step(name, () =>
      withDir(async (dir) => {
        await splitTinyBert(dir, edit);
        await assert.rejects(
          safeHash(dir),
          (e) => e instanceof ModelFormatError && e.code === "bad-index" && message.test(e.message),
        );
      }));
  }
  await t.step("a tensor in two shards", () =>
    withDir(async (dir) => {
      let twice = "";
      await splitTinyBert(dir, undefined, (names) => {
        twice = names[0]!;
        return [names.slice(0, 2), [names[0]!, ...names.slice(2)]];
      });
      await assert.rejects(
        safeHash(dir),
        (e) =>
          e instanceof ModelFormatError && e.code === "bad-index" &&
          e.message.includes(`"${twice}" is in both`),
      );
    }));
});

Deno.test("a folder holding both a weights file and its index is refused: loaders choose differently", () =>
  withDir(async (dir) => {
    await splitTinyBert(dir);
    await Deno.copyFile(fixture("tiny-bert/model.safetensors"), `${dir}/model.safetensors`);
    await assert.rejects(
      safeHash(dir),
      (e) =>
        e instanceof ModelFormatError && e.code === "ambiguous-folder" &&
        e.message.includes("model.safetensors.index.json"),
    );
    // The index itself can still be named.
    assert.equal(
      await safeHash(`${dir}/model.safetensors.index.json`),
      await safeHash(fixture("tiny-bert/model.safetensors")),
    );
  }));

Deno.test("a shard or weights file that links outside the folder is refused unless allowSymlinks", () =>
  withDir(async (dir) => {
    const whole = await safeHash(fixture("tiny-bert/model.safetensors"));
    await Deno.mkdir(`${dir}/model`);
    await Deno.mkdir(`${dir}/outside`);
    await splitTinyBert(`${dir}/model`);
    const shard = "model-00002-of-00002.safetensors";
    await Deno.rename(`${dir}/model/${shard}`, `${dir}/outside/${shard}`);
    await Deno.symlink(`../outside/${shard}`, `${dir}/model/${shard}`);
    await assert.rejects(
      safeHash(`${dir}/model`),
      (e) =>
        e instanceof ModelFormatError && e.code === "bad-index" &&
        /link to .*outside/.test(e.message),
    );
    assert.equal(await safeHash(`${dir}/model`, { allowSymlinks: true }), whole);
    // A link that stays inside the folder is read as usual.
    await Deno.mkdir(`${dir}/model/sub`);
    await Deno.rename(`${dir}/outside/${shard}`, `${dir}/model/sub/${shard}`);
    await Deno.remove(`${dir}/model/${shard}`);
    await Deno.symlink(`sub/${shard}`, `${dir}/model/${shard}`);
    assert.equal(await safeHash(`${dir}/model`), whole);
    // A Hugging Face cache snapshot: the single weights file links into blobs/.
    await Deno.mkdir(`${dir}/snap`);
    await Deno.symlink(fixture("tiny-bert/model.safetensors"), `${dir}/snap/model.safetensors`);
    await assert.rejects(
      safeHash(`${dir}/snap`),
      (e) => e instanceof ModelFormatError && e.code === "bad-index",
    );
    assert.equal(await safeHash(`${dir}/snap`, { allowSymlinks: true }), whole);
  }));

Deno.test("an index is bounded: a missing shard is a ModelFormatError, more than 2^18 tensors are refused before any shard is read", () =>
  withDir(async (dir) => {
    await splitTinyBert(dir);
    await Deno.remove(`${dir}/model-00002-of-00002.safetensors`);
    await assert.rejects(
      safeHash(dir),
      (e) =>
        e instanceof ModelFormatError && e.code === "bad-index" && e.message.includes("is missing"),
    );
    const map: Record<string, string> = {};
    for (let i = 0; i <= 1 << 18; i++) map[`t${i}`] = "model-00001-of-00002.safetensors";
    await Deno.writeTextFile(
      `${dir}/model.safetensors.index.json`,
      JSON.stringify({ weight_map: map }),
    );
    await assert.rejects(
      safeHash(dir),
      (e) =>
        e instanceof ModelFormatError && e.code === "bad-index" &&
        e.message.includes("more than 262144"),
    );
  }));

Deno.test("cli hash <dir> hashes the model in the folder and says which files it used", () =>
  withDir(async (dir) => {
    await splitTinyBert(dir);
    const out: string[] = [];
    const io = {
      out: (s: string) => out.push(s),
      err: (s: string) => out.push(s),
      isTerminal: false,
    };
    assert.equal(await main(["hash", dir], io), 0, out.join("\n"));
    assert.match(out.join("\n"), /^safemodels-v1:[0-9a-f]{64} {2}.*sharded-/m);
    assert.match(
      out.join("\n"),
      /model\.safetensors\.index\.json, model-00001-of-00002\.safetensors/,
    );
    out.length = 0;
    assert.equal(await main(["hash", dir, "--json"], io), 0);
    assert.deepEqual(JSON.parse(out[0]!)[0].files.length, 3);
  }));

Deno.test("a pipe or a folder where a shard should be is refused at once (no hang, a ModelFormatError)", () =>
  withDir(async (dir) => {
    await splitTinyBert(dir);
    const shard = `${dir}/model-00002-of-00002.safetensors`;
    await Deno.remove(shard);
    const made = await new Deno.Command("mkfifo", { args: [shard] }).output();
    assert.ok(made.success);
    await assert.rejects(
      safeHash(dir),
      (e) => e instanceof ModelFormatError && /not a regular file/.test(e.message),
    );
    await assert.rejects(
      safeHash(shard),
      (e) => e instanceof ModelFormatError && /not a regular file/.test(e.message),
    );
    await Deno.remove(shard);
    await Deno.mkdir(shard);
    await assert.rejects(
      safeHash(dir),
      (e) => e instanceof ModelFormatError && /a folder/.test(e.message),
    );
  }));
