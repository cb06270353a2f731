// Warm starts (GuardOptions.verifiedStore): an external-data file verified
// once is not read again while its identity (real path, device, inode, size,
// mtime/ctime in ns) is unchanged; any change to it is read, hashed and
// decided again (tampering refused); a store others can write is not used.
import assert from "node:assert/strict";
import { HashMismatch, keySigner, SignError, signModel } from "../../sign/mod.ts";
import { freshKeyPem, writeTinyModel } from "../_model_gen.ts";
import {
  assertClose,
  assertRefused,
  embed,
  epoch,
  guarded,
  KEY,
  local,
  opts,
  test,
} from "./_guard_harness.ts";

const DATA = "onnx/model.onnx_data";

/** A signed external-data model in a fresh folder, and where its store goes. */
async function withModel(fn: (root: string, store: string) => Promise<void>): Promise<void> {
  const root = await Deno.makeTempDir({ prefix: "warm-" });
  try {
    await writeTinyModel(`${root}/ext`, { externalData: true, extraRows: 20_000 });
    await signModel(`${root}/ext`, { signer: keySigner(KEY) });
    // Files changed within the clock's resolution are never recorded.
    await new Promise((r) => setTimeout(r, 2100));
    await fn(root, `${root}/store`);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
}

test(
  "warm start: a verified external-data file is not read again; any change to it is",
  opts,
  async () => {
    await withModel(async (root, store) => {
      await guarded({ verifiedStore: store }, async (guard) => {
        let mark = 0;
        local(`${root}/`);
        const want = await embed("ext");
        const cold = guard.records.slice(mark).find((r) => r.file === DATA);
        assert.equal(cold?.verdict, "verified");
        assert.equal(cold?.warm, undefined);
        // The weights and the graph.
        assert.equal([...Deno.readDirSync(`${store}/blobs`)].length, 2);

        await epoch();
        mark = guard.records.length;
        assertClose(await embed("ext"), want);
        const warm = guard.records.slice(mark).find((r) => r.file === DATA);
        assert.equal(warm?.verdict, "verified");
        assert.equal(warm?.warm, true, "the unchanged file was read again");
        assert.equal(warm?.digest, cold?.digest);

        // Same size, same content, but touched: its mtime/ctime changed, so it is read again.
        const path = `${root}/ext/${DATA}`;
        await Deno.writeFile(path, await Deno.readFile(path));
        await epoch();
        mark = guard.records.length;
        assertClose(await embed("ext"), want);
        assert.equal(guard.records.slice(mark).find((r) => r.file === DATA)?.warm, undefined);

        // Tampered in place (same size): read again, and refused.
        const bytes = await Deno.readFile(path);
        bytes[1000]! ^= 1;
        await Deno.writeFile(path, bytes);
        await epoch();
        await assertRefused("ext", HashMismatch, /model\.onnx_data/);

        // Replaced by a file with the good bytes (another inode): read again, verified.
        await Deno.remove(path);
        bytes[1000]! ^= 1;
        await Deno.writeFile(path, bytes);
        await epoch();
        mark = guard.records.length;
        assertClose(await embed("ext"), want);
        const again = guard.records.slice(mark).find((r) => r.file === DATA);
        assert.equal(again?.verdict, "verified");
        assert.equal(again?.warm, undefined);
      });
    });
  },
);

test(
  "warm start: a store others can write is not used (every load is verified in full)",
  opts,
  async () => {
    await withModel(async (root, store) => {
      await Deno.mkdir(store, { mode: 0o777 });
      await Deno.chmod(store, 0o777);
      await guarded({ verifiedStore: store }, async (guard) => {
        let mark = 0;
        local(`${root}/`);
        await embed("ext");
        await epoch();
        mark = guard.records.length;
        await embed("ext");
        assert.equal(guard.records.slice(mark).find((r) => r.file === DATA)?.warm, undefined);
        assert.deepEqual([...Deno.readDirSync(`${store}/blobs`)], []);
      });
    });
  },
);

test(
  "warm start: a store swapped after install, or under a folder others can write, is not trusted",
  opts,
  async () => {
    await withModel(async (root, store) => {
      await guarded({ verifiedStore: store }, async (guard) => {
        let mark = 0;
        local(`${root}/`);
        const want = await embed("ext");
        assert.equal([...Deno.readDirSync(`${store}/blobs`)].length, 2);
        // Another user swaps in a folder of their own holding forged weights
        // under the genuine digest and the genuine index entry.
        await Deno.rename(store, `${store}.old`);
        for (const d of ["", "/blobs", "/index"]) {
          await Deno.mkdir(`${store}${d}`, { recursive: true });
          await Deno.chmod(`${store}${d}`, 0o777);
        }
        for (const e of Deno.readDirSync(`${store}.old/index`)) {
          await Deno.copyFile(`${store}.old/index/${e.name}`, `${store}/index/${e.name}`);
        }
        for (const e of Deno.readDirSync(`${store}.old/blobs`)) {
          const size = (await Deno.stat(`${store}.old/blobs/${e.name}`)).size;
          await Deno.writeFile(`${store}/blobs/${e.name}`, new Uint8Array(size));
        }
        await epoch();
        mark = guard.records.length;
        assertClose(await embed("ext"), want);
        const r = guard.records.slice(mark).find((x) => x.file === DATA);
        assert.equal(r?.verdict, "verified");
        assert.equal(r?.warm, undefined, "the swapped store was used");
      });
      // A store below a folder any user can write (not sticky): never used.
      const shared = `${root}/shared`;
      await Deno.mkdir(shared);
      await Deno.chmod(shared, 0o777);
      await guarded({ verifiedStore: `${shared}/store` }, async (guard) => {
        let mark = 0;
        local(`${root}/`);
        await embed("ext");
        await epoch();
        mark = guard.records.length;
        await embed("ext");
        assert.equal(guard.records.slice(mark).find((x) => x.file === DATA)?.warm, undefined);
        assert.deepEqual([...Deno.readDirSync(`${shared}/store/blobs`)], []);
      });
    });
  },
);

const GRAPH = "onnx/model.onnx";
const memos = (store: string) =>
  [...Deno.readDirSync(`${store}/index`)].filter((e) => e.name.startsWith("memo-")).length;

test(
  "warm start: model.onnx is warm too and refused when changed; a remembered model.sig verification holds for its bytes and policy only",
  opts,
  async () => {
    await withModel(async (root, store) => {
      const want = await guarded({ verifiedStore: store }, async (guard) => {
        local(`${root}/`);
        const want = await embed("ext");
        // The model.sig's verification and the graph's external-data files.
        assert.equal(memos(store), 2);
        await epoch();
        let mark = guard.records.length;
        assertClose(await embed("ext"), want);
        const warm = guard.records.slice(mark);
        for (const file of [GRAPH, DATA]) {
          const r = warm.find((x) => x.file === file);
          assert.equal(r?.verdict, "verified", file);
          assert.equal(r?.warm, true, `${file} was read again`);
        }
        // The graph changed in place (same size): read again and refused.
        const path = `${root}/ext/${GRAPH}`;
        const good = await Deno.readFile(path);
        const bad = good.slice();
        bad[bad.length - 20]! ^= 1;
        await Deno.writeFile(path, bad);
        await epoch();
        await assertRefused("ext", HashMismatch, /model\.onnx/);
        await Deno.writeFile(path, good);
        await epoch();
        mark = guard.records.length;
        assertClose(await embed("ext"), want);
        const again = guard.records.slice(mark).find((x) => x.file === GRAPH);
        assert.equal(again?.verdict, "verified");
        assert.equal(again?.warm, undefined);
        return want;
      });
      // Another policy (another trusted key) over the same store: the
      // remembered verification is not its own, so model.sig is verified
      // again, and refused.
      const other = await freshKeyPem();
      await guarded(
        { verifiedStore: store, policy: { publicKeys: [other.publicPem] } },
        async () => {
          local(`${root}/`);
          await assertRefused("ext", SignError, /trusted public key/);
        },
      );
      // The model signed again by that other key, under the first policy:
      // new bytes, verified again, and refused.
      await signModel(`${root}/ext`, { signer: keySigner(other.privatePem) });
      await guarded({ verifiedStore: store }, async () => {
        local(`${root}/`);
        await assertRefused("ext", SignError, /trusted public key/);
      });
      // And under the other key's policy it loads (its own verification).
      await guarded(
        { verifiedStore: store, policy: { publicKeys: [other.publicPem] } },
        async () => {
          local(`${root}/`);
          assertClose(await embed("ext"), want);
        },
      );
    });
  },
);
