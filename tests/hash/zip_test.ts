import { concat, deflateRaw, prng } from "../_helpers.ts";
import assert from "node:assert/strict";
import zlib from "node:zlib";
import {
  entryChunks,
  entryDataOffset,
  readEntry,
  readZipDirectory,
  type ZipEntry,
} from "../../hash/_zip.ts";
import { type ByteSource, bytesSource } from "../../hash/_source.ts";
import { ModelFormatError } from "../../hash/errors.ts";

const FIXTURES = new URL("../../../shared/fixtures/", import.meta.url);
const fixture = (path: string) => Deno.readFileSync(new URL(path, FIXTURES));

// --- A small zip writer, independent of the reader under test -------------

class Writer {
  bytes: number[] = [];
  get length(): number {
    return this.bytes.length;
  }
  u16(v: number): this {
    this.bytes.push(v & 0xff, (v >>> 8) & 0xff);
    return this;
  }
  u32(v: number): this {
    return this.u16(v & 0xffff).u16(Math.floor(v / 0x10000) & 0xffff);
  }
  u64(v: number): this {
    return this.u32(v % 0x100000000).u32(Math.floor(v / 0x100000000));
  }
  raw(b: Uint8Array | number[]): this {
    for (const x of b) this.bytes.push(x);
    return this;
  }
  out(): Uint8Array {
    return new Uint8Array(this.bytes);
  }
}

interface Member {
  name: string;
  data: Uint8Array;
  method?: number;
  /** Compressed payload (defaults to the data, or its raw deflate). */
  payload?: Uint8Array;
  /** Declared uncompressed size (defaults to the data's length). */
  size?: number;
  crc?: number;
  /** Write sizes and CRC in a data descriptor, zeros in the local header. */
  descriptor?: boolean;
  flags?: number;
}

async function buildZip(
  members: Member[],
  options: { zip64?: boolean; comment?: string } = {},
): Promise<Uint8Array> {
  const w = new Writer();
  const central = new Writer();
  const enc = new TextEncoder();
  const zip64 = options.zip64 ?? false;
  for (const m of members) {
    const method = m.method ?? 0;
    const payload = m.payload ??
      (method === 8 ? await deflateRaw(m.data) : m.data);
    const size = m.size ?? m.data.byteLength;
    const crc = m.crc ?? zlib.crc32(m.data);
    const name = enc.encode(m.name);
    const flags = (m.flags ?? 0) | (m.descriptor ? 0x8 : 0);
    const offset = w.length;
    const localExtra = new Writer();
    if (zip64) localExtra.u16(1).u16(16).u64(size).u64(payload.byteLength);
    w.u32(0x04034b50).u16(zip64 ? 45 : 20).u16(flags).u16(method).u16(0).u16(0)
      .u32(m.descriptor ? 0 : crc)
      .u32(m.descriptor ? 0 : zip64 ? 0xffffffff : payload.byteLength)
      .u32(m.descriptor ? 0 : zip64 ? 0xffffffff : size)
      .u16(name.length).u16(localExtra.length).raw(name).raw(localExtra.bytes)
      .raw(payload);
    if (m.descriptor) {
      w.u32(0x08074b50).u32(crc);
      if (zip64) w.u64(payload.byteLength).u64(size);
      else w.u32(payload.byteLength).u32(size);
    }
    const extra = new Writer();
    if (zip64) {
      extra.u16(1).u16(24).u64(size).u64(payload.byteLength).u64(offset);
    }
    central.u32(0x02014b50).u16(45).u16(zip64 ? 45 : 20).u16(flags).u16(method)
      .u16(0).u16(0).u32(crc)
      .u32(zip64 ? 0xffffffff : payload.byteLength)
      .u32(zip64 ? 0xffffffff : size)
      .u16(name.length).u16(extra.length).u16(0).u16(0).u16(0).u32(0)
      .u32(zip64 ? 0xffffffff : offset)
      .raw(name).raw(extra.bytes);
  }
  const cdOffset = w.length;
  w.raw(central.bytes);
  const count = members.length;
  if (zip64) {
    const record = w.length;
    w.u32(0x06064b50).u64(44).u16(45).u16(45).u32(0).u32(0).u64(count)
      .u64(count).u64(central.length).u64(cdOffset);
    w.u32(0x07064b50).u32(0).u64(record).u32(1);
  }
  const comment = enc.encode(options.comment ?? "");
  w.u32(0x06054b50).u16(0).u16(0)
    .u16(zip64 ? 0xffff : count).u16(zip64 ? 0xffff : count)
    .u32(zip64 ? 0xffffffff : central.length)
    .u32(zip64 ? 0xffffffff : cdOffset)
    .u16(comment.length).raw(comment);
  return w.out();
}

async function drain(
  chunks: AsyncIterable<Uint8Array>,
  maxChunk = 8 << 20,
): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  for await (const c of chunks) {
    assert.ok(
      c.byteLength <= maxChunk,
      `chunk of ${c.byteLength} > ${maxChunk}`,
    );
    parts.push(c.slice());
  }
  const out = concat(parts);
  return out;
}

function isFormatError(code?: string) {
  return (e: unknown) => e instanceof ModelFormatError && (code === undefined || e.code === code);
}

const text = (s: string) => new TextEncoder().encode(s);
const sample = (n: number) => Uint8Array.from({ length: n }, (_, i) => (i * 7 + (i >> 5)) & 0xff);

// --- Reading ---------------------------------------------------------------

for (const zip64 of [false, true]) {
  Deno.test(`zip: stored and deflated entries${zip64 ? " (zip64)" : ""}`, async () => {
    const big = sample(100_000);
    const zip = await buildZip([
      { name: "a/stored.bin", data: big },
      { name: "a/deflated.bin", data: big, method: 8 },
      { name: "a/empty", data: new Uint8Array(0) },
      {
        name: "a/desc.bin",
        data: text("descriptor!"),
        method: 8,
        descriptor: true,
      },
    ], { zip64, comment: "a comment" });
    const source = bytesSource(zip, "test.zip");
    const entries = await readZipDirectory(source);
    assert.deepEqual(entries.map((e) => [e.name, e.method, e.size]), [
      ["a/stored.bin", 0, 100_000],
      ["a/deflated.bin", 8, 100_000],
      ["a/empty", 0, 0],
      ["a/desc.bin", 8, 11],
    ]);
    const [stored, deflated, empty, desc] = entries as [
      ZipEntry,
      ZipEntry,
      ZipEntry,
      ZipEntry,
    ];
    assert.ok(deflated.compressedSize < 100_000);
    assert.deepEqual(await readEntry(source, stored, 1 << 20), big);
    assert.deepEqual(await readEntry(source, deflated, 1 << 20), big);
    assert.deepEqual(await readEntry(source, empty, 0), new Uint8Array(0));
    assert.deepEqual(
      new TextDecoder().decode(await readEntry(source, desc, 100)),
      "descriptor!",
    );
    // Streaming respects the chunk limit.
    assert.deepEqual(
      await drain(entryChunks(source, stored, undefined, 4096), 4096),
      big,
    );
    assert.deepEqual(
      await drain(entryChunks(source, deflated, undefined, 1000), 1000),
      big,
    );
    // The data offset skips the local header's name and extra field.
    const at = await entryDataOffset(source, stored);
    assert.deepEqual(zip.subarray(at, at + 10), big.subarray(0, 10));
  });
}

Deno.test("zip: reads torch checkpoints, including zip64 end records", async () => {
  const mixed = bytesSource(fixture("tensors/mixed.bin"));
  const entries = await readZipDirectory(mixed, "pytorch-zip");
  assert.equal(entries.length, 13);
  assert.equal(entries[0]!.name, "mixed/data.pkl");
  const version = entries.find((e) => e.name === "mixed/version")!;
  assert.equal(
    new TextDecoder().decode(await readEntry(mixed, version, 10)).trim(),
    "3",
  );

  const evil = fixture("bad/evil_reduce.bin");
  // This one has zip64 end records (signature PK\x06\x06 before PK\x05\x06).
  assert.ok(new TextDecoder("latin1").decode(evil).includes("PK\x06\x06"));
  const names = (await readZipDirectory(bytesSource(evil))).map((e) => e.name);
  assert.deepEqual(names, [
    "archive/data.pkl",
    "archive/data/0",
    "archive/version",
  ]);
});

Deno.test("zip: refuses files that are not zips", async () => {
  await assert.rejects(
    readZipDirectory(bytesSource(fixture("bad/not_a_model.bin"))),
    isFormatError("bad-zip"),
  );
  for (
    const bytes of [new Uint8Array(0), text("PK\x03\x04"), new Uint8Array(5000)]
  ) {
    await assert.rejects(
      readZipDirectory(bytesSource(bytes)),
      isFormatError("bad-zip"),
    );
  }
});

Deno.test("zip: a zip bomb is refused without inflating past its declared size", async () => {
  // 64 MiB of zeros deflates to about 64 KiB; the entry claims 1000 bytes.
  const zeros = new Uint8Array(64 << 20);
  const payload = new Uint8Array(zlib.deflateRawSync(zeros, { level: 9 }));
  const zip = await buildZip([{
    name: "bomb",
    data: zeros,
    method: 8,
    payload,
    size: 1000,
  }]);
  const source = bytesSource(zip);
  const [entry] = await readZipDirectory(source);
  assert.equal(entry!.size, 1000);
  let seen = 0;
  const started = performance.now();
  await assert.rejects(
    (async () => {
      for await (const c of entryChunks(source, entry!)) seen += c.byteLength;
    })(),
    (e) =>
      isFormatError("bad-zip")(e) &&
      /past its declared size/.test((e as Error).message),
  );
  assert.ok(seen <= 1000, `yielded ${seen} bytes`);
  assert.ok(performance.now() - started < 2000);
  // readEntry refuses an entry larger than the caller's limit before reading.
  const honest = await buildZip([{
    name: "big",
    data: zeros.subarray(0, 1 << 20),
    method: 8,
  }]);
  const hs = bytesSource(honest);
  const [big] = await readZipDirectory(hs);
  await assert.rejects(readEntry(hs, big!, 1000), isFormatError("too-large"));
});

Deno.test("zip: refuses bad entries", async () => {
  const data = text("hello, world");
  const cases: [string, Member, string][] = [
    ["short inflate", { name: "x", data, method: 8, size: 20 }, "bad-zip"],
    ["bad crc", { name: "x", data, crc: 1234 }, "bad-zip"],
    ["bad crc deflated", { name: "x", data, method: 8, crc: 1234 }, "bad-zip"],
    ["stored size mismatch", { name: "x", data, size: 5 }, "bad-zip"],
    ["bzip2", { name: "x", data, method: 12 }, "bad-zip"],
    ["encrypted", { name: "x", data, flags: 1 }, "bad-zip"],
    ["bad deflate", {
      name: "x",
      data,
      method: 8,
      payload: new Uint8Array([0xff, 0xff, 0xff, 0xff]),
    }, "bad-zip"],
    [
      "truncated deflate",
      {
        name: "x",
        data: sample(5000),
        method: 8,
        payload: (await deflateRaw(sample(5000))).subarray(0, 100),
      },
      "bad-zip",
    ],
  ];
  for (const [label, member, code] of cases) {
    const source = bytesSource(await buildZip([member]));
    const [entry] = await readZipDirectory(source);
    await assert.rejects(
      readEntry(source, entry!, 1 << 20),
      isFormatError(code),
      label,
    );
  }
  // Duplicate names are ambiguous.
  await assert.rejects(
    readZipDirectory(
      bytesSource(await buildZip([{ name: "x", data }, { name: "x", data }])),
    ),
    isFormatError("bad-zip"),
  );
  // A local header whose name differs from the central directory's.
  const zip = await buildZip([{ name: "abc", data }]);
  zip[30] = "z".charCodeAt(0);
  const source = bytesSource(zip);
  await assert.rejects(
    readEntry(source, (await readZipDirectory(source))[0]!, 100),
    isFormatError("bad-zip"),
  );
});

Deno.test("zip: refuses offsets and counts that do not fit", async () => {
  const zip = await buildZip([{ name: "x", data: text("abc") }, {
    name: "y",
    data: text("def"),
  }]);
  const eocd = zip.byteLength - 22;
  const patch = (at: number, bytes: number[]) => {
    const copy = zip.slice();
    copy.set(bytes, at);
    return copy;
  };
  const bad = [
    patch(eocd + 10, [0xff, 0x00]), // total entries
    patch(eocd + 8, [0x01, 0x00]), // entries on this disk
    patch(eocd + 12, [0xff, 0xff, 0x00, 0x00]), // directory size
    patch(eocd + 16, [0xff, 0xff, 0xff, 0x7f]), // directory offset
    patch(eocd + 4, [0x01, 0x00]), // disk number
    patch(eocd - 4, [0xff, 0xff, 0xff, 0x0f]), // local header offset of "y"
  ];
  for (const bytes of bad) {
    await assert.rejects(readZipDirectory(bytesSource(bytes)), isFormatError());
  }
  // A zip64 locator pointing outside the file.
  const z64 = await buildZip([{ name: "x", data: text("abc") }], {
    zip64: true,
  });
  const locator = z64.byteLength - 22 - 20;
  const broken = z64.slice();
  broken.set([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x0f, 0x00], locator + 8);
  await assert.rejects(
    readZipDirectory(bytesSource(broken)),
    isFormatError("bad-zip"),
  );
});

// --- Fuzzing -----------------------------------------------------------------

function mutate(input: Uint8Array, rand: () => number): Uint8Array {
  let b = input.slice();
  const pos = () => {
    // Half the time aim at the headers at either end, where the structure is.
    const r = rand();
    if (r < 0.25) return Math.floor(rand() * Math.min(b.length, 128));
    if (r < 0.5) {
      return Math.max(
        0,
        b.length - 1 - Math.floor(rand() * Math.min(b.length, 256)),
      );
    }
    return Math.floor(rand() * b.length);
  };
  const n = 1 + Math.floor(rand() * 4);
  for (let i = 0; i < n && b.length > 0; i++) {
    const kind = Math.floor(rand() * 6);
    const at = pos();
    if (kind === 0) b[at] = Math.floor(rand() * 256);
    else if (kind === 1) b[at]! ^= 1 << Math.floor(rand() * 8);
    else if (kind === 2) {
      b.set([0xff, 0xff, 0xff, 0xff].slice(0, b.length - at), at);
    } else if (kind === 3) b.set([0, 0, 0, 0].slice(0, b.length - at), at);
    else if (kind === 4) b = b.slice(0, at);
    else {
      const len = Math.floor(rand() * 16);
      b = new Uint8Array([
        ...b.subarray(0, at),
        ...b.subarray(Math.min(b.length, at + len)),
      ]);
    }
  }
  return b;
}

async function readAll(source: ByteSource): Promise<void> {
  const entries = await readZipDirectory(source);
  for (const e of entries) {
    if (e.size > 1 << 20) continue;
    await drain(entryChunks(source, e, undefined, 4096), 4096);
  }
}

Deno.test("zip: fuzzed archives parse or throw ModelFormatError", async () => {
  const bases = [
    fixture("tensors/mixed.bin"),
    fixture("bad/evil_reduce.bin"),
    await buildZip([
      { name: "s", data: sample(3000) },
      { name: "d", data: sample(3000), method: 8 },
      { name: "e", data: sample(200), method: 8, descriptor: true },
    ], { zip64: true }),
  ];
  for (const base of bases) await readAll(bytesSource(base));
  const rand = prng(0x5eed);
  const deadline = performance.now() + 2500;
  let runs = 0;
  let parsed = 0;
  while (runs < 20_000 && performance.now() < deadline) {
    const bytes = mutate(bases[runs % bases.length]!, rand);
    runs++;
    try {
      await readAll(bytesSource(bytes, "fuzz.zip"));
      parsed++;
    } catch (e) {
      if (!(e instanceof ModelFormatError)) {
        throw new Error(`run ${runs}: unexpected ${e}`, { cause: e });
      }
    }
  }
  assert.ok(runs >= 1000, `only ${runs} runs`);
  assert.ok(parsed > 0 && parsed < runs, `${parsed} of ${runs} parsed`);
});
