// The file source's small-read window (hash/_source_fs.ts) against the file's
// own bytes: random, overlapping and concurrent reads near and at the end
// return exactly what the file holds, and a read past the end is refused.
import assert from "node:assert/strict";
import { fileSource } from "../../hash/_source_fs.ts";
import { ModelFormatError } from "../../hash/errors.ts";

Deno.test("fileSource: windowed small reads equal the file's bytes, whatever the order and concurrency", async () => {
  const dir = await Deno.makeTempDir({ prefix: "source-" });
  try {
    const size = 300_000;
    const bytes = new Uint8Array(size);
    crypto.getRandomValues(bytes.subarray(0, 65536));
    for (let i = 65536; i < size; i++) bytes[i] = (bytes[i - 65536]! * 31 + i) & 0xff;
    await Deno.writeFile(`${dir}/f.bin`, bytes);
    const source = await fileSource(`${dir}/f.bin`);
    let seed = 9;
    const next = (n: number) => Math.floor(((seed = (seed * 48271) % 0x7fffffff) / 0x7fffffff) * n);
    try {
      for (let round = 0; round < 1000; round++) {
        const reads = Array.from({ length: 4 }, () => {
          const length = next(4) === 0 ? next(40_000) : next(17_000);
          const offset = next(3) === 0
            ? Math.max(0, size - length - next(64))
            : next(size - length);
          return { offset, length };
        });
        const got = await Promise.all(reads.map((r) => source.read(r.offset, r.length)));
        for (const [i, r] of reads.entries()) {
          assert.deepEqual(got[i], bytes.subarray(r.offset, r.offset + r.length), `round ${round}`);
        }
      }
      // Reads that end just inside, at and just past the end of the window a
      // previous small read opened (64 KiB from its offset).
      for (let base = 0; base < size - 70_000; base += 9_973) {
        for (const over of [-1, 0, 1, 2]) {
          await source.read(base, 10);
          const offset = base + 65_536 - 100 + over;
          assert.deepEqual(await source.read(offset, 100), bytes.subarray(offset, offset + 100));
        }
      }
      await assert.rejects(source.read(size - 10, 11), ModelFormatError);
    } finally {
      await source.close();
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
