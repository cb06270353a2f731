// A small, defensive zip reader over a random-access ByteSource: central
// directory (with zip64), local headers, and streaming of stored or deflated
// entries. It never trusts a size or offset before checking it against the
// file, and never inflates past an entry's declared size.
import { ModelFormatError, type ModelFormatErrorOptions } from "./errors.ts";
import { BLOCK_BYTES, type ByteSource } from "./_source.ts";
import type { ModelFormat } from "./types.ts";

/** One file in a zip archive, as described by the central directory. */
export interface ZipEntry {
  /** The entry's path inside the archive. */
  name: string;
  /** Compression method: 0 (stored) or 8 (deflate) are readable. */
  method: number;
  /** Size of the (possibly compressed) data in the file. */
  compressedSize: number;
  /** Size of the data once uncompressed. */
  size: number;
  /** CRC-32 of the uncompressed data. */
  crc32: number;
  /** Offset of the entry's local file header. */
  localHeaderOffset: number;
}

const EOCD_SIGNATURE = 0x06054b50;
const ZIP64_LOCATOR_SIGNATURE = 0x07064b50;
const ZIP64_EOCD_SIGNATURE = 0x06064b50;
const CENTRAL_SIGNATURE = 0x02014b50;
const LOCAL_SIGNATURE = 0x04034b50;
const EOCD_SIZE = 22;
const ZIP64_LOCATOR_SIZE = 20;
const ZIP64_EOCD_SIZE = 56;
const CENTRAL_SIZE = 46;
const LOCAL_SIZE = 30;
// The end record sits within its own size plus a 64 KiB comment of the end
// (65557 bytes).
const EOCD_SEARCH = EOCD_SIZE + 0xffff;
// A central directory larger than this is not a model checkpoint.
const MAX_CENTRAL_DIRECTORY = 256 << 20;
// Compressed input is fed in small pieces so one piece can inflate to at most
// about 1032 times its size (deflate's limit) before the size check runs.
const INFLATE_INPUT_CHUNK = 16 << 10;
const DEFAULT_CHUNK = BLOCK_BYTES;

function where(
  source: ByteSource,
  format: ModelFormat | undefined,
  offset?: number,
): ModelFormatErrorOptions {
  const options: ModelFormatErrorOptions = { file: source.name };
  if (format !== undefined) options.format = format;
  if (offset !== undefined) options.offset = offset;
  return options;
}

function badZip(
  source: ByteSource,
  format: ModelFormat | undefined,
  message: string,
  offset?: number,
): ModelFormatError {
  return new ModelFormatError(
    "bad-zip",
    message,
    where(source, format, offset),
  );
}

function u16(b: Uint8Array, at: number): number {
  return (b[at] ?? 0) | ((b[at + 1] ?? 0) << 8);
}

function u32(b: Uint8Array, at: number): number {
  return (u16(b, at) + u16(b, at + 2) * 0x10000) >>> 0;
}

/** A 64-bit little-endian value, or -1 when it does not fit a safe integer. */
function u64(b: Uint8Array, at: number): number {
  const lo = u32(b, at);
  const hi = u32(b, at + 4);
  if (hi >= 0x200000) return -1;
  return hi * 0x100000000 + lo;
}

/**
 * Reads the central directory of a zip archive. Supports zip64 end records and
 * zip64 extra fields; refuses multi-disk archives, duplicate names and any
 * count, size or offset that does not fit in the file.
 */
export async function readZipDirectory(
  source: ByteSource,
  format?: ModelFormat,
): Promise<ZipEntry[]> {
  if (source.size < EOCD_SIZE) {
    throw badZip(
      source,
      format,
      `Cannot read zip: the file is ${source.size} bytes long, shorter than an end-of-central-directory record (22 bytes)`,
    );
  }
  const tailStart = Math.max(0, source.size - EOCD_SEARCH);
  const tail = await source.read(tailStart, source.size - tailStart);
  let eocd = -1;
  for (let i = tail.byteLength - EOCD_SIZE; i >= 0; i--) {
    if (
      u32(tail, i) === EOCD_SIGNATURE &&
      i + EOCD_SIZE + u16(tail, i + 20) <= tail.byteLength
    ) {
      eocd = i;
      break;
    }
  }
  if (eocd < 0) {
    throw badZip(
      source,
      format,
      "Cannot read zip: no end-of-central-directory record in the last 65557 bytes",
    );
  }
  const eocdOffset = tailStart + eocd;
  const disk = u16(tail, eocd + 4);
  const cdDisk = u16(tail, eocd + 6);
  let diskEntries = u16(tail, eocd + 8);
  let count = u16(tail, eocd + 10);
  let cdSize = u32(tail, eocd + 12);
  let cdOffset = u32(tail, eocd + 16);
  // The central directory must end before this offset.
  let cdLimit = eocdOffset;

  const locator = eocdOffset - ZIP64_LOCATOR_SIZE;
  const locatorBytes = locator >= 0 ? await source.read(locator, ZIP64_LOCATOR_SIZE) : undefined;
  if (
    locatorBytes !== undefined &&
    u32(locatorBytes, 0) === ZIP64_LOCATOR_SIGNATURE
  ) {
    const recordOffset = u64(locatorBytes, 8);
    if (
      u32(locatorBytes, 4) !== 0 || u32(locatorBytes, 16) > 1 ||
      recordOffset < 0 ||
      recordOffset + ZIP64_EOCD_SIZE > locator
    ) {
      throw badZip(
        source,
        format,
        `Cannot read zip: the zip64 end-record locator points to offset ${recordOffset}, outside the file or on another disk`,
        locator,
      );
    }
    const record = await source.read(recordOffset, ZIP64_EOCD_SIZE);
    if (u32(record, 0) !== ZIP64_EOCD_SIGNATURE) {
      throw badZip(
        source,
        format,
        "Cannot read zip: the zip64 end-of-central-directory record has a bad signature",
        recordOffset,
      );
    }
    if (u32(record, 16) !== 0 || u32(record, 20) !== 0) {
      throw badZip(
        source,
        format,
        "Cannot read zip: multi-disk archives are not supported",
        recordOffset,
      );
    }
    diskEntries = u64(record, 24);
    count = u64(record, 32);
    cdSize = u64(record, 40);
    cdOffset = u64(record, 48);
    cdLimit = recordOffset;
  } else if (disk !== 0 || cdDisk !== 0) {
    throw badZip(
      source,
      format,
      "Cannot read zip: multi-disk archives are not supported",
      eocdOffset,
    );
  }

  if (
    count < 0 || cdSize < 0 || cdOffset < 0 || diskEntries !== count ||
    cdOffset + cdSize > cdLimit
  ) {
    throw badZip(
      source,
      format,
      `Cannot read zip: the central directory (${count} entries, ${cdSize} bytes at offset ${cdOffset}) does not fit before its end record at ${cdLimit}`,
      eocdOffset,
    );
  }
  if (count * CENTRAL_SIZE > cdSize) {
    throw badZip(
      source,
      format,
      `Cannot read zip: ${count} entries cannot fit in a ${cdSize}-byte central directory`,
      cdOffset,
    );
  }
  if (cdSize > MAX_CENTRAL_DIRECTORY) {
    throw new ModelFormatError(
      "too-large",
      `Cannot read zip: its central directory is ${cdSize} bytes, more than the ${MAX_CENTRAL_DIRECTORY} allowed`,
      where(source, format, cdOffset),
    );
  }
  const cd = await source.read(cdOffset, cdSize);
  const entries: ZipEntry[] = [];
  const names = new Set<string>();
  let at = 0;
  for (let i = 0; i < count; i++) {
    const offset = cdOffset + at;
    if (
      at + CENTRAL_SIZE > cd.byteLength || u32(cd, at) !== CENTRAL_SIGNATURE
    ) {
      throw badZip(
        source,
        format,
        `Cannot read zip: central directory entry ${i} is missing or has a bad signature`,
        offset,
      );
    }
    const method = u16(cd, at + 10);
    const crc32 = u32(cd, at + 16);
    let compressedSize = u32(cd, at + 20);
    let size = u32(cd, at + 24);
    const nameLength = u16(cd, at + 28);
    const extraLength = u16(cd, at + 30);
    const commentLength = u16(cd, at + 32);
    let diskStart = u16(cd, at + 34);
    let localHeaderOffset = u32(cd, at + 42);
    const end = at + CENTRAL_SIZE + nameLength + extraLength + commentLength;
    if (end > cd.byteLength) {
      throw badZip(
        source,
        format,
        `Cannot read zip: central directory entry ${i} runs past the directory's end`,
        offset,
      );
    }
    const name = decodeName(
      cd.subarray(at + CENTRAL_SIZE, at + CENTRAL_SIZE + nameLength),
    );
    if (name === undefined) {
      throw badZip(
        source,
        format,
        `Cannot read zip: the name of entry ${i} is not valid UTF-8`,
        offset,
      );
    }
    const extra = cd.subarray(
      at + CENTRAL_SIZE + nameLength,
      at + CENTRAL_SIZE + nameLength + extraLength,
    );
    if (
      size === 0xffffffff || compressedSize === 0xffffffff ||
      localHeaderOffset === 0xffffffff || diskStart === 0xffff
    ) {
      // The zip64 extra field holds, in this order, only the fields that
      // overflowed in the fixed header.
      const z = findExtra(extra, 0x0001);
      let p = 0;
      const next = (): number => {
        if (z === undefined || p + 8 > z.byteLength) return -1;
        const v = u64(z, p);
        p += 8;
        return v;
      };
      if (size === 0xffffffff) size = next();
      if (compressedSize === 0xffffffff) compressedSize = next();
      if (localHeaderOffset === 0xffffffff) localHeaderOffset = next();
      if (diskStart === 0xffff) {
        diskStart = z !== undefined && p + 4 <= z.byteLength ? u32(z, p) : -1;
      }
      if (
        size < 0 || compressedSize < 0 || localHeaderOffset < 0 || diskStart < 0
      ) {
        throw badZip(
          source,
          format,
          `Cannot read zip: entry "${name}" lacks a valid zip64 extra field`,
          offset,
        );
      }
    }
    if (diskStart !== 0) {
      throw badZip(
        source,
        format,
        "Cannot read zip: multi-disk archives are not supported",
        offset,
      );
    }
    if (
      localHeaderOffset + LOCAL_SIZE + nameLength + compressedSize > cdOffset
    ) {
      throw badZip(
        source,
        format,
        `Cannot read zip: entry "${name}" (${compressedSize} bytes at offset ${localHeaderOffset}) does not fit before the central directory at ${cdOffset}`,
        offset,
      );
    }
    if (names.has(name)) {
      throw badZip(
        source,
        format,
        `Cannot read zip: the name "${name}" appears twice`,
        offset,
      );
    }
    names.add(name);
    entries.push({
      name,
      method,
      compressedSize,
      size,
      crc32,
      localHeaderOffset,
    });
    at = end;
  }
  return entries;
}

function decodeName(bytes: Uint8Array): string | undefined {
  try {
    // Names without the UTF-8 flag are CP437 in theory but UTF-8 in practice;
    // decoding strictly keeps two different byte strings from one name.
    return new TextDecoder("utf-8", { fatal: true, ignoreBOM: true }).decode(
      bytes,
    );
  } catch {
    return undefined;
  }
}

function findExtra(extra: Uint8Array, id: number): Uint8Array | undefined {
  let at = 0;
  while (at + 4 <= extra.byteLength) {
    const tag = u16(extra, at);
    const length = u16(extra, at + 2);
    if (at + 4 + length > extra.byteLength) return undefined;
    if (tag === id) return extra.subarray(at + 4, at + 4 + length);
    at += 4 + length;
  }
  return undefined;
}

/**
 * Offset of an entry's data: parses its local header (whose name and extra
 * lengths may differ from the central directory's) and checks that the data
 * fits in the file. Refuses encrypted entries.
 */
export async function entryDataOffset(
  source: ByteSource,
  entry: ZipEntry,
  format?: ModelFormat,
): Promise<number> {
  const at = entry.localHeaderOffset;
  if (!Number.isSafeInteger(at) || at < 0 || at + LOCAL_SIZE > source.size) {
    throw badZip(
      source,
      format,
      `Cannot read zip entry "${entry.name}": its local header offset ${at} is outside the file`,
    );
  }
  const header = await source.read(at, LOCAL_SIZE);
  if (u32(header, 0) !== LOCAL_SIGNATURE) {
    throw badZip(
      source,
      format,
      `Cannot read zip entry "${entry.name}": no local file header at its offset`,
      at,
    );
  }
  const flags = u16(header, 6);
  if ((flags & 0x1) !== 0 || (flags & 0x40) !== 0) {
    throw badZip(
      source,
      format,
      `Cannot read zip entry "${entry.name}": it is encrypted`,
      at,
    );
  }
  const nameLength = u16(header, 26);
  const extraLength = u16(header, 28);
  const data = at + LOCAL_SIZE + nameLength + extraLength;
  if (data + entry.compressedSize > source.size) {
    throw badZip(
      source,
      format,
      `Cannot read zip entry "${entry.name}": its ${entry.compressedSize} bytes at offset ${data} run past the end of the ${source.size}-byte file`,
      at,
    );
  }
  const name = decodeName(await source.read(at + LOCAL_SIZE, nameLength));
  if (name !== entry.name) {
    throw badZip(
      source,
      format,
      `Cannot read zip entry "${entry.name}": its local header names "${name ?? "<invalid>"}"`,
      at,
    );
  }
  return data;
}

/**
 * Streams an entry's uncompressed bytes in pieces of at most `maxChunk` bytes.
 * Reads stored (0) and deflated (8) entries; checks the size and CRC-32, and
 * stops as soon as inflated data would pass the declared size.
 */
export async function* entryChunks(
  source: ByteSource,
  entry: ZipEntry,
  format?: ModelFormat,
  maxChunk: number = DEFAULT_CHUNK,
): AsyncGenerator<Uint8Array> {
  const chunk = Math.max(1, Math.floor(maxChunk));
  if (entry.method !== 0 && entry.method !== 8) {
    throw badZip(
      source,
      format,
      `Cannot read zip entry "${entry.name}": compression method ${entry.method} is not supported (only 0, stored, and 8, deflate)`,
    );
  }
  const start = await entryDataOffset(source, entry, format);
  let crc = 0xffffffff;
  if (entry.method === 0) {
    if (entry.compressedSize !== entry.size) {
      throw badZip(
        source,
        format,
        `Cannot read zip entry "${entry.name}": it is stored with ${entry.compressedSize} bytes but declares ${entry.size}`,
        entry.localHeaderOffset,
      );
    }
    for (let done = 0; done < entry.size;) {
      const n = Math.min(chunk, entry.size - done);
      const piece = await source.read(start + done, n);
      crc = crc32Update(crc, piece);
      done += n;
      yield piece;
    }
  } else {
    let total = 0;
    for await (const piece of inflate(source, entry, format, start)) {
      if (total + piece.byteLength > entry.size) {
        throw badZip(
          source,
          format,
          `Cannot read zip entry "${entry.name}": it inflates past its declared size of ${entry.size} bytes`,
          entry.localHeaderOffset,
        );
      }
      total += piece.byteLength;
      crc = crc32Update(crc, piece);
      for (let at = 0; at < piece.byteLength; at += chunk) {
        yield piece.subarray(at, Math.min(piece.byteLength, at + chunk));
      }
    }
    if (total !== entry.size) {
      throw badZip(
        source,
        format,
        `Cannot read zip entry "${entry.name}": it inflates to ${total} bytes but declares ${entry.size}`,
        entry.localHeaderOffset,
      );
    }
  }
  if (((crc ^ 0xffffffff) >>> 0) !== entry.crc32) {
    throw badZip(
      source,
      format,
      `Cannot read zip entry "${entry.name}": its CRC-32 does not match (the data is corrupt)`,
      entry.localHeaderOffset,
    );
  }
}

async function* inflate(
  source: ByteSource,
  entry: ZipEntry,
  format: ModelFormat | undefined,
  start: number,
): AsyncGenerator<Uint8Array> {
  let fed = 0;
  // Pull-based so compressed bytes are read only as inflated output is used.
  const input = new ReadableStream<BufferSource>({
    async pull(controller) {
      if (fed >= entry.compressedSize) {
        controller.close();
        return;
      }
      const n = Math.min(INFLATE_INPUT_CHUNK, entry.compressedSize - fed);
      // Copy: the stream takes ownership and in-memory sources return views.
      const piece = (await source.read(start + fed, n)).slice();
      fed += n;
      controller.enqueue(piece);
    },
  }, { highWaterMark: 0 });
  const reader = input.pipeThrough(new DecompressionStream("deflate-raw"))
    .getReader();
  let finished = false;
  try {
    while (true) {
      let result: ReadableStreamReadResult<Uint8Array>;
      try {
        result = await reader.read();
      } catch (e) {
        if (e instanceof ModelFormatError) throw e;
        throw new ModelFormatError(
          "bad-zip",
          `Cannot inflate zip entry "${entry.name}": the deflate data is invalid or truncated`,
          { ...where(source, format, entry.localHeaderOffset), cause: e },
        );
      }
      if (result.done) break;
      yield result.value;
    }
    finished = true;
  } finally {
    if (!finished) await reader.cancel().catch(() => {});
  }
}

/**
 * Reads a whole (small) entry into memory, refusing entries whose declared
 * size exceeds `maxBytes`.
 */
export async function readEntry(
  source: ByteSource,
  entry: ZipEntry,
  maxBytes: number,
  format?: ModelFormat,
): Promise<Uint8Array> {
  if (entry.size > maxBytes) {
    throw new ModelFormatError(
      "too-large",
      `Cannot read zip entry "${entry.name}": it is ${entry.size} bytes, more than the ${maxBytes} allowed`,
      where(source, format, entry.localHeaderOffset),
    );
  }
  const out = new Uint8Array(entry.size);
  let at = 0;
  for await (const piece of entryChunks(source, entry, format)) {
    out.set(piece, at);
    at += piece.byteLength;
  }
  return out;
}

let crcTable: Uint32Array | undefined;

function crc32Update(crc: number, bytes: Uint8Array): number {
  if (crcTable === undefined) {
    crcTable = new Uint32Array(256);
    for (let n = 0; n < 256; n++) {
      let c = n;
      for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
      crcTable[n] = c >>> 0;
    }
  }
  const table = crcTable;
  let c = crc;
  for (let i = 0; i < bytes.length; i++) {
    c = table[(c ^ bytes[i]!) & 0xff]! ^ (c >>> 8);
  }
  return c >>> 0;
}

/** CRC-32 (the zip/PNG polynomial) of some bytes. */
export function crc32(bytes: Uint8Array): number {
  return (crc32Update(0xffffffff, bytes) ^ 0xffffffff) >>> 0;
}
