// Reading evidence files (model.sig, lockfiles): missing is `undefined`,
// a folder or pipe is refused without hanging, a file over the bound is
// refused, and in Deno (which cannot open without blocking) an open that
// does not return, as for a pipe swapped in after the check, is refused
// within its bound instead of waited on.
import assert from "node:assert/strict";
import { readEvidenceFile } from "../../sign/_read_fs.ts";
import { EvidenceError } from "../../sign/mod.ts";

Deno.test("readEvidenceFile: text, missing, a folder, a pipe, over the bound", async () => {
  const dir = await Deno.makeTempDir({ prefix: "read-fs-" });
  try {
    await Deno.writeTextFile(`${dir}/model.sig`, '{"a":1}');
    assert.equal(await readEvidenceFile(`${dir}/model.sig`, "the signature", 100), '{"a":1}');
    assert.equal(await readEvidenceFile(`${dir}/none.sig`, "the signature", 100), undefined);
    assert.equal(await readEvidenceFile(`${dir}/model.sig/x`, "the signature", 100), undefined);
    await assert.rejects(readEvidenceFile(dir, "the signature", 100), /a folder/);
    await assert.rejects(readEvidenceFile(`${dir}/model.sig`, "the signature", 3), EvidenceError);
    const fifo = await new Deno.Command("mkfifo", { args: [`${dir}/pipe.sig`] }).output();
    assert.ok(fifo.success);
    await assert.rejects(readEvidenceFile(`${dir}/pipe.sig`, "the signature", 100), /a pipe/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test(
  "readEvidenceFile: an open that never returns is refused after its bound (a pipe swapped in after the check)",
  { sanitizeOps: false },
  async () => {
    const dir = await Deno.makeTempDir({ prefix: "read-fs-" });
    const deno = Deno as unknown as { open: typeof Deno.open };
    const open = deno.open;
    try {
      await Deno.writeTextFile(`${dir}/model.sig`, '{"a":1}');
      deno.open = () => new Promise(() => {});
      const started = performance.now();
      await assert.rejects(
        readEvidenceFile(`${dir}/model.sig`, "the signature", 100),
        (e: Error) => e instanceof EvidenceError && /a pipe/.test(e.message),
      );
      const took = performance.now() - started;
      assert.ok(took >= 4_000 && took < 15_000, `refused after ${took} ms`);
    } finally {
      deno.open = open;
      await Deno.remove(dir, { recursive: true });
    }
  },
);
