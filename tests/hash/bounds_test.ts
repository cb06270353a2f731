// Work bounded by the file's size, for every reader: seeded mutants of real
// and crafted files either hash or throw our error, and whichever they do,
// the bytes hashed stay within a small multiple of the file's size and the
// heap within a fixed bound. (A loader that can be made to hash 10 TB from a
// 6 kB file, or to hold gigabytes for a 248 KB pickle, fails here.)
import assert from "node:assert/strict";
import { ModelFormatError, safeHash } from "../../hash/mod.ts";
import { fixture, prng } from "../_helpers.ts";

const TESTDATA = new URL("../testdata/", import.meta.url).pathname;

/** Bytes hashed may exceed the file this many times (strided gathers, typed ONNX fields, views). */
const WORK_FACTOR = 64;
/** …with this floor, for tiny files. */
const WORK_FLOOR = 1 << 20;
/** The heap may grow this much while one mutant is read. */
const HEAP_BOUND = 256 << 20;

function seeds(): { name: string; bytes: Uint8Array }[] {
  const out = [
    "tensors/mixed.safetensors",
    "tensors/mixed.bin",
    "tensors/mixed.legacy.bin",
    "tensors/mixed.npz",
    "tiny-bert/onnx/model.onnx",
    "tiny-bert/pytorch_model.bin",
  ].map((f) => ({ name: f, bytes: Deno.readFileSync(fixture(f)) }));
  // The crafted files of the reader tests (zip and pickle classes), a few of each.
  for (const folder of ["zip", "pytorch"]) {
    let taken = 0;
    for (
      const e of [...Deno.readDirSync(`${TESTDATA}${folder}`)].sort((a, b) =>
        a.name < b.name ? -1 : 1
      )
    ) {
      if (!/\.(bin|pt|npz|npy)$/.test(e.name) || taken++ % 4 !== 0) continue;
      out.push({
        name: `${folder}/${e.name}`,
        bytes: Deno.readFileSync(`${TESTDATA}${folder}/${e.name}`),
      });
    }
  }
  return out;
}

function heap(): number {
  const m = Deno.memoryUsage();
  return m.heapUsed + m.external;
}

Deno.test("every reader: mutants hash or throw ModelFormatError, within a bound of work and heap (seeded)", async () => {
  const next = prng(0xb0d5);
  const all = seeds();
  assert.ok(all.length >= 12, `only ${all.length} seed files`);
  let hashed = 0;
  let refused = 0;
  for (const seed of all) {
    for (let n = 0; n < 120; n++) {
      // A fifth of the mutants cut short; all with a few bytes changed.
      const cut = next() < 0.2 ? Math.floor(seed.bytes.length * next()) : seed.bytes.length;
      const m = seed.bytes.slice(0, Math.max(8, cut));
      for (let k = 0, c = 1 + Math.floor(next() * 4); k < c; k++) {
        m[Math.floor(next() * m.length)] = Math.floor(next() * 256);
      }
      let work = 0;
      let peak = 0;
      const base = heap();
      const sample = setInterval(() => (peak = Math.max(peak, heap() - base)), 1);
      try {
        for (const algorithm of ["safemodels-v1", "seed-xxh64"] as const) {
          await safeHash(m, {
            algorithm,
            workers: 0,
            onProgress: (p) => {
              work = Math.max(work, p.bytes);
              peak = Math.max(peak, heap() - base);
            },
          });
        }
        hashed++;
      } catch (e) {
        assert.ok(e instanceof ModelFormatError, `${seed.name} mutant ${n}: ${e}`);
        refused++;
      } finally {
        clearInterval(sample);
      }
      peak = Math.max(peak, heap() - base);
      assert.ok(
        work <= WORK_FACTOR * Math.max(m.length, WORK_FLOOR),
        `${seed.name} mutant ${n}: hashed ${work} bytes of a ${m.length}-byte file`,
      );
      assert.ok(peak <= HEAP_BOUND, `${seed.name} mutant ${n}: the heap grew by ${peak} bytes`);
    }
  }
  // Both outcomes are exercised.
  assert.ok(hashed > 20 && refused > 20, `hashed ${hashed}, refused ${refused}`);
});
