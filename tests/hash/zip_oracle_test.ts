// The zip layer against the real loaders: every crafted file in
// tests/testdata/zip/ (made by generate.py) with what torch.load (miniz),
// numpy.load (Python's zipfile) and zipfile itself did with it. Where the
// loaders could read different tensors, or refuse, we must refuse; where they
// all read the same tensors, we must read those tensors too.
import assert from "node:assert/strict";
import { hashManifest } from "../../hash/safe_hash.ts";
import { ModelFormatError } from "../../hash/errors.ts";
import { readEntry, readZipDirectory } from "../../hash/_zip.ts";
import { readPytorchZip } from "../../hash/_pytorch.ts";
import { readNpz } from "../../hash/_numpy.ts";
import { type ByteSource, bytesSource } from "../../hash/_source.ts";
import type { Tensor } from "../../hash/types.ts";
import { sha256hex } from "../_helpers.ts";

const DIR = new URL("../testdata/zip/", import.meta.url);
const path = (name: string) => decodeURIComponent(new URL(name, DIR).pathname);

interface OracleTensor {
  dtype: string;
  shape: number[];
  sha256: string;
}
type Verdict<T> = ({ ok: true } & T) | { ok: false; error: string };
interface Case {
  class: number;
  what: string;
  expect: "accept" | "refuse";
  torch?: Verdict<{ tensors: Record<string, OracleTensor> }>;
  miniz?: Verdict<{ records: Record<string, string> }>;
  numpy?: Verdict<{ keys: string[]; tensors: Record<string, OracleTensor> }>;
  zipfile: Verdict<{ entries: { name: string; sha256?: string; error?: string }[] }>;
}

const expected: { cases: Record<string, Case> } = JSON.parse(
  Deno.readTextFileSync(path("expected.json")),
);
const cases = Object.entries(expected.cases);

/** Whether every loader read the file, and read the same bytes. */
function loadersAgree(name: string, c: Case): boolean {
  if (!c.zipfile.ok) return false;
  const entries = c.zipfile.entries;
  if (entries.some((e) => e.sha256 === undefined)) return false;
  if (new Set(entries.map((e) => e.name)).size !== entries.length) return false;
  if (name.endsWith(".bin")) {
    if (!c.torch?.ok || !c.miniz?.ok) return false;
    // miniz lists records without the archive folder.
    const records = c.miniz.records;
    if (Object.keys(records).length !== entries.length) return false;
    return entries.every((e) => records[e.name.slice(e.name.indexOf("/") + 1)] === e.sha256);
  }
  return c.numpy?.ok === true &&
    c.numpy.keys.length === entries.length &&
    entries.every((e, i) => c.numpy!.ok && `${c.numpy!.keys[i]}.npy` === e.name);
}

Deno.test("zip oracle: expected.json refuses every file the loaders read differently or refuse", () => {
  assert.ok(cases.length >= 40, `only ${cases.length} cases`);
  for (const [name, c] of cases) {
    if (!loadersAgree(name, c)) assert.equal(c.expect, "refuse", name);
  }
  // Each class of the issue has files that must be refused.
  for (let k = 1; k <= 7; k++) {
    assert.ok(cases.some(([, c]) => c.class === k && c.expect === "refuse"), `class ${k}`);
  }
});

for (const [name, c] of cases) {
  const format = name.endsWith(".npz") ? "npz" : "pytorch-zip";
  Deno.test(`hashManifest() ${c.expect}s ${name} (class ${c.class}): ${c.what}`, async () => {
    const file = path(name);
    if (c.expect === "refuse") {
      await assert.rejects(hashManifest(file, { format, workers: 0 }), (e) => {
        assert.ok(e instanceof ModelFormatError, `${name}: ${e}`);
        assert.equal(e.code, "bad-zip", `${name}: ${e.message}`);
        assert.equal(e.file, file);
        assert.ok(e.message.startsWith(`${file}: Cannot `), e.message);
        return true;
      });
      return;
    }
    const manifest = await hashManifest(file, { format, workers: 0 });
    const oracle = (format === "npz" ? c.numpy : c.torch)!;
    assert.ok(oracle.ok);
    assert.deepEqual(
      Object.fromEntries(
        manifest.tensors.map((t) => [t.name, { dtype: t.dtype, shape: t.shape, sha256: t.sha256 }]),
      ),
      oracle.tensors,
    );
    // Entry by entry, our bytes are zipfile's (and miniz's) bytes.
    assert.ok(c.zipfile.ok);
    const source = bytesSource(Deno.readFileSync(file), name);
    const entries = await readZipDirectory(source, format);
    assert.deepEqual(
      await Promise.all(
        entries.map(async (e) => ({
          name: e.name,
          sha256: sha256hex(await readEntry(source, e, 1 << 24, format)),
        })),
      ),
      c.zipfile.entries.map((e) => ({ name: e.name, sha256: e.sha256 })),
    );
  });
}

// --- Class 7: work bounded by the file's size ----------------------------------

/** A source that counts the bytes read from it. */
function counting(bytes: Uint8Array): ByteSource & { bytesRead: number } {
  const inner = bytesSource(bytes, "counted");
  const source = {
    name: inner.name,
    size: inner.size,
    bytesRead: 0,
    read(offset: number, length: number) {
      source.bytesRead += length;
      return inner.read(offset, length);
    },
    close: () => inner.close(),
  };
  return source;
}

async function readAll(tensors: Tensor[]): Promise<number> {
  let n = 0;
  for (const t of tensors) for await (const c of t.chunks()) n += c.byteLength;
  return n;
}

Deno.test("readPytorchZip() inflates a deflated storage once, however many views read it", async () => {
  const bytes = Deno.readFileSync(path("shared_deflated.bin"));
  const source = counting(bytes);
  const tensors = await readPytorchZip(source);
  assert.equal(tensors.length, 64);
  // 64 views of the storage's tail: 1 + 2 + … + 64 floats.
  assert.equal(await readAll(tensors), 4 * (64 * 65) / 2);
  // Every byte of the file read a small number of times, not once per view.
  assert.ok(
    source.bytesRead <= 3 * bytes.byteLength,
    `read ${source.bytesRead} of ${bytes.byteLength}`,
  );
  // A second pass (another hash) inflates once more, no more.
  const before = source.bytesRead;
  await readAll(tensors);
  assert.ok(source.bytesRead - before <= 2 * bytes.byteLength);
});

Deno.test("readNpz() inflates each deflated member at most twice (npy header, then data)", async () => {
  const bytes = Deno.readFileSync(path("npz_compressed.npz"));
  const source = counting(bytes);
  await readAll(await readNpz(source));
  assert.ok(
    source.bytesRead <= 3 * bytes.byteLength,
    `read ${source.bytesRead} of ${bytes.byteLength}`,
  );
});
