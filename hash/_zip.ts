// A small, defensive zip reader over a random-access ByteSource: central
// directory (with zip64), local headers, and streaming of stored or deflated
// entries. It never trusts a size or offset before checking it against the
// file, and never inflates past an entry's declared size.
//
// Two loaders read the zips we hash: torch.load (PyTorch's PyTorchFileReader,
// built on miniz) and numpy.load (Python's zipfile). They find the directory
// and the entries in different ways, so a crafted file can show each of them
// different tensors. The directory is accepted only when every way of reading
// it gives one answer; tests/testdata/zip/ holds a file per case with what the
// real loaders did with it (torch 1.13, Python 3.11's zipfile, numpy 1.24).
import { ModelFormatError, type ModelFormatErrorOptions } from "./errors.ts";
import { BLOCK_BYTES, type ByteSource, recycle } from "./_source.ts";
import type { ModelFormat } from "./types.ts";

/** One file in a zip archive, as described by the central directory. */
export interface ZipEntry {
  /** The entry's path inside the archive. */
  name: string;
  /** Compression method: 0 (stored) or 8 (deflate) are readable. */
  method: number;
  /** General-purpose flags (bit 0: encrypted, bit 3: data descriptor, …). */
  flags: number;
  /** Size of the (possibly compressed) data in the file. */
  compressedSize: number;
  /** Size of the data once uncompressed. */
  size: number;
  /** CRC-32 of the uncompressed data. */
  crc32: number;
  /** Offset of the entry's local file header. */
  localHeaderOffset: number;
  /** Offset of the entry's data, after its local header. */
  dataOffset: number;
}

const EOCD_SIGNATURE = 0x06054b50;
const ZIP64_LOCATOR_SIGNATURE = 0x07064b50;
const ZIP64_EOCD_SIGNATURE = 0x06064b50;
const CENTRAL_SIGNATURE = 0x02014b50;
const LOCAL_SIGNATURE = 0x04034b50;
const DESCRIPTOR_SIGNATURE = 0x08074b50;
const EOCD_SIZE = 22;
const ZIP64_LOCATOR_SIZE = 20;
const ZIP64_EOCD_SIZE = 56;
const CENTRAL_SIZE = 46;
const LOCAL_SIZE = 30;
const ZIP64_EXTRA = 0x0001;
// The end record sits within its own size plus a 64 KiB comment of the end
// (65557 bytes).
const EOCD_SEARCH = EOCD_SIZE + 0xffff;
// A central directory larger than this is not a model checkpoint.
const MAX_CENTRAL_DIRECTORY = 256 << 20;
// Python's zipfile refuses entries that need a later zip version than 6.3.
const MAX_VERSION_NEEDED = 63;
// Flag bits whose meaning a reader cannot ignore: encrypted (0), data
// descriptor (3), patched data (5), strong encryption (6), UTF-8 name (11),
// masked local header (13). Local header and directory must agree on them.
const MEANINGFUL_FLAGS = 0x1 | 0x8 | 0x20 | 0x40 | 0x800 | 0x2000;
const SENTINEL_16 = 0xffff;
const SENTINEL_32 = 0xffffffff;
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

/** Reads a few header bytes into a fresh array and gives the read buffer back. */
async function readSmall(
  source: ByteSource,
  offset: number,
  length: number,
): Promise<Uint8Array> {
  const piece = await source.read(offset, length);
  const copy = piece.slice();
  recycle(piece);
  return copy;
}

/** What the end records say about the central directory. */
interface DirectoryEnd {
  count: number;
  size: number;
  offset: number;
  /** Where the central directory must end: the zip64 record or the end record. */
  limit: number;
  /** Offset of the (32-bit) end-of-central-directory record. */
  eocd: number;
}

/**
 * Finds the end-of-central-directory record as miniz does (the last signature
 * with 22 bytes after it, in the last 65557 bytes), then refuses any file on
 * which Python's zipfile (the last 22 bytes, else the last signature anywhere
 * in that window) or a reader that checks the comment length could land on
 * another record, and any bytes after the archive's comment.
 */
async function findEnd(
  source: ByteSource,
  format: ModelFormat | undefined,
): Promise<DirectoryEnd> {
  if (source.size < EOCD_SIZE) {
    throw badZip(
      source,
      format,
      `Cannot read zip: the file is ${source.size} bytes long, shorter than an end-of-central-directory record (22 bytes)`,
    );
  }
  const tailStart = Math.max(0, source.size - EOCD_SEARCH);
  const tail = await readSmall(source, tailStart, source.size - tailStart);
  const signatures: number[] = [];
  for (let i = tail.byteLength - 4; i >= 0; i--) {
    if (u32(tail, i) === EOCD_SIGNATURE) signatures.push(i);
  }
  const at = signatures.find((i) => i + EOCD_SIZE <= tail.byteLength);
  if (at === undefined) {
    throw badZip(
      source,
      format,
      "Cannot read zip: no end-of-central-directory record in the last 65557 bytes",
    );
  }
  const eocd = tailStart + at;
  const commentLength = u16(tail, at + 20);
  const follows = source.size - eocd - EOCD_SIZE;
  if (commentLength > follows) {
    throw badZip(
      source,
      format,
      `Cannot read zip: its end record declares a ${commentLength}-byte comment but the file ends ${follows} bytes after the record`,
      eocd,
    );
  }
  if (commentLength < follows) {
    throw badZip(
      source,
      format,
      `Cannot read zip: ${
        follows - commentLength
      } bytes follow the end of the archive (its comment is ${commentLength} bytes); appended data can be read as another archive, so it is refused`,
      eocd + EOCD_SIZE + commentLength,
    );
  }
  for (const i of signatures) {
    if (i > at) {
      // Python's zipfile takes this one (the last signature) when there is a
      // comment; miniz skips it (fewer than 22 bytes follow).
      throw badZip(
        source,
        format,
        `Cannot read zip: its comment holds an end-of-central-directory signature at offset ${
          tailStart + i
        }, after the record at ${eocd}; zip readers would disagree on which one ends the archive`,
        tailStart + i,
      );
    }
    if (i < at && i + EOCD_SIZE + u16(tail, i + 20) === tail.byteLength) {
      throw badZip(
        source,
        format,
        `Cannot read zip: it has two end-of-central-directory records whose comments both reach the end of the file (at offsets ${
          tailStart + i
        } and ${eocd}); zip readers would disagree on which one to use`,
        tailStart + i,
      );
    }
  }
  const disk = u16(tail, at + 4);
  const cdDisk = u16(tail, at + 6);
  const end: DirectoryEnd = {
    count: u16(tail, at + 10),
    size: u32(tail, at + 12),
    offset: u32(tail, at + 16),
    limit: eocd,
    eocd,
  };
  const diskEntries = u16(tail, at + 8);
  const locator = eocd - ZIP64_LOCATOR_SIZE;
  const locatorBytes = locator >= 0
    ? await readSmall(source, locator, ZIP64_LOCATOR_SIZE)
    : undefined;
  if (
    locatorBytes !== undefined &&
    u32(locatorBytes, 0) === ZIP64_LOCATOR_SIGNATURE
  ) {
    const zip64 = await readZip64(source, format, locatorBytes, locator);
    // The 32-bit fields must be the zip64 values or say "see zip64": a reader
    // that uses the zip64 record only when they overflow sees the same.
    const pairs: [string, number, number, number][] = [
      ["disk number", disk, 0, SENTINEL_16],
      ["directory's disk number", cdDisk, 0, SENTINEL_16],
      ["entries on this disk", diskEntries, zip64.count, SENTINEL_16],
      ["entry count", end.count, zip64.count, SENTINEL_16],
      ["directory size", end.size, zip64.size, SENTINEL_32],
      ["directory offset", end.offset, zip64.offset, SENTINEL_32],
    ];
    for (const [what, short, long, sentinel] of pairs) {
      if (short !== long && short !== sentinel) {
        throw badZip(
          source,
          format,
          `Cannot read zip: its end record gives the ${what} as ${short} but its zip64 end record as ${long}`,
          eocd,
        );
      }
    }
    return { ...zip64, eocd };
  }
  if (disk !== 0 || cdDisk !== 0) {
    throw badZip(
      source,
      format,
      "Cannot read zip: multi-disk archives are not supported",
      eocd,
    );
  }
  if (diskEntries !== end.count) {
    throw badZip(
      source,
      format,
      `Cannot read zip: its end record counts ${diskEntries} entries on this disk but ${end.count} in all`,
      eocd,
    );
  }
  return end;
}

/**
 * Reads the zip64 end record. miniz reads it where the locator points;
 * Python's zipfile reads the 56 bytes before the locator whatever the locator
 * says, so the two must be the same place, with no extensible data.
 */
async function readZip64(
  source: ByteSource,
  format: ModelFormat | undefined,
  locatorBytes: Uint8Array,
  locator: number,
): Promise<Omit<DirectoryEnd, "eocd">> {
  const recordOffset = u64(locatorBytes, 8);
  const disks = u32(locatorBytes, 16);
  if (u32(locatorBytes, 4) !== 0 || disks !== 1) {
    throw badZip(
      source,
      format,
      `Cannot read zip: its zip64 locator says the archive spans ${disks} disks with the zip64 record on disk ${
        u32(locatorBytes, 4)
      } (expected 1 disk, number 0; miniz refuses anything else)`,
      locator,
    );
  }
  const expected = locator - ZIP64_EOCD_SIZE;
  if (recordOffset !== expected) {
    throw badZip(
      source,
      format,
      `Cannot read zip: its zip64 locator points to offset ${recordOffset}, but the zip64 end record must sit right before the locator, at ${expected} (Python's zipfile reads it there, miniz where the locator points)`,
      locator,
    );
  }
  const record = await readSmall(source, recordOffset, ZIP64_EOCD_SIZE);
  if (u32(record, 0) !== ZIP64_EOCD_SIGNATURE) {
    throw badZip(
      source,
      format,
      "Cannot read zip: the zip64 end-of-central-directory record has a bad signature",
      recordOffset,
    );
  }
  if (u64(record, 4) !== ZIP64_EOCD_SIZE - 12) {
    throw badZip(
      source,
      format,
      `Cannot read zip: its zip64 end record declares ${
        u64(record, 4)
      } bytes, expected 44 (extensible data moves the record away from where Python's zipfile reads it)`,
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
  const diskEntries = u64(record, 24);
  const count = u64(record, 32);
  if (diskEntries !== count) {
    throw badZip(
      source,
      format,
      `Cannot read zip: its zip64 end record counts ${diskEntries} entries on this disk but ${count} in all`,
      recordOffset,
    );
  }
  return {
    count,
    size: u64(record, 40),
    offset: u64(record, 48),
    limit: recordOffset,
  };
}

/**
 * Reads the central directory of a zip archive and checks it against every
 * local header. Supports zip64 end records and extra fields and data
 * descriptors (as torch.save writes them). Refuses anything that two zip
 * readers could read differently:
 *
 * - a second end record, bytes after the archive's comment, or a comment
 *   length that runs past the end of the file;
 * - a zip64 locator that does not point right before itself, or zip64 values
 *   that disagree with the 32-bit ones;
 * - a central directory that does not end at its end record (Python's zipfile
 *   would shift every offset by the gap), or that holds more or fewer bytes
 *   than its entries;
 * - entries that do not tile the file from offset 0 to the central directory
 *   in directory order (overlaps, gaps, prepended data, reordering);
 * - a local header whose method, flags, sizes or CRC-32 differ from the
 *   directory's, and data descriptors that differ or are missing;
 * - duplicate names, names a loader or extraction tool would rewrite (NUL,
 *   `\`, `.` and `..` segments, empty segments, leading `/`), non-ASCII names
 *   without the UTF-8 flag (Python decodes them as CP437), and for PyTorch
 *   checkpoints names that differ only by ASCII case (miniz finds entries
 *   without regard to case).
 *
 * An entry's local name is compared with the directory's when it is read
 * ({@linkcode entryDataOffset}).
 */
export async function readZipDirectory(
  source: ByteSource,
  format?: ModelFormat,
): Promise<ZipEntry[]> {
  const end = await findEnd(source, format);
  const { count, size: cdSize, offset: cdOffset } = end;
  if (
    count < 0 || cdSize < 0 || cdOffset < 0 || cdOffset + cdSize !== end.limit
  ) {
    throw badZip(
      source,
      format,
      `Cannot read zip: the central directory (${count} entries, ${cdSize} bytes at offset ${cdOffset}) must end where its end record starts, at ${end.limit}${
        cdOffset >= 0 && cdSize >= 0 && cdOffset + cdSize < end.limit
          ? ` (Python's zipfile would shift every offset by the ${
            end.limit - cdOffset - cdSize
          }-byte gap, miniz would not)`
          : ""
      }`,
      end.eocd,
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
  try {
    return await readEntries(source, format, cd, end);
  } finally {
    recycle(cd);
  }
}

/** Parses the central directory's entries and checks each local header. */
async function readEntries(
  source: ByteSource,
  format: ModelFormat | undefined,
  cd: Uint8Array,
  end: DirectoryEnd,
): Promise<ZipEntry[]> {
  const { count, size: cdSize, offset: cdOffset } = end;
  const entries: ZipEntry[] = [];
  const names = new Set<string>();
  // miniz looks names up with ASCII case folded; torch asks it for each one.
  const folded = format === "pytorch-zip" ? new Map<string, string>() : undefined;
  let at = 0;
  // Entries must follow each other from the start of the file.
  let next = 0;
  for (let i = 0; i < count; i++) {
    const offset = cdOffset + at;
    const { entry, end: entryEnd } = centralEntry(source, format, cd, at, i, offset);
    const { name, localHeaderOffset } = entry;
    if (names.has(name)) {
      throw badZip(
        source,
        format,
        `Cannot read zip: the name "${name}" appears twice (loaders would read one of the two)`,
        offset,
      );
    }
    names.add(name);
    if (folded !== undefined) {
      const key = name.replace(/[A-Z]+/g, (s) => s.toLowerCase());
      const other = folded.get(key);
      if (other !== undefined) {
        throw badZip(
          source,
          format,
          `Cannot read zip: the names "${other}" and "${name}" differ only by case, and torch.load (miniz) finds entries without regard to case`,
          offset,
        );
      }
      folded.set(key, name);
    }
    if (localHeaderOffset !== next) {
      throw badZip(
        source,
        format,
        `Cannot read zip entry "${name}": its local header is at offset ${localHeaderOffset}, expected ${next} (${
          i === 0 ? "the start of the file" : "right after the previous entry"
        }); entries must follow each other in directory order, with no gap or overlap`,
        offset,
      );
    }
    next = await checkLocal(source, format, entry, cdOffset);
    entries.push(entry);
    at = entryEnd;
  }
  if (at !== cdSize) {
    throw badZip(
      source,
      format,
      `Cannot read zip: its central directory is ${cdSize} bytes but its ${count} entries take ${at} (Python's zipfile reads entries up to the size, miniz up to the count)`,
      cdOffset + at,
    );
  }
  if (next !== cdOffset) {
    throw badZip(
      source,
      format,
      `Cannot read zip: its last entry ends at offset ${next}, expected the central directory's start at ${cdOffset}; unlisted bytes can hide other entries`,
      next,
    );
  }
  return entries;
}

/** One central directory entry at `at`, its zip64 values resolved. */
function centralEntry(
  source: ByteSource,
  format: ModelFormat | undefined,
  cd: Uint8Array,
  at: number,
  i: number,
  offset: number,
): { entry: ZipEntry; end: number } {
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
  const versionNeeded = cd[at + 6]!;
  const flags = u16(cd, at + 8);
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
  const nameBytes = cd.subarray(at + CENTRAL_SIZE, at + CENTRAL_SIZE + nameLength);
  const name = decodeName(nameBytes);
  if (name === undefined) {
    throw badZip(
      source,
      format,
      `Cannot read zip: the name of entry ${i} is not valid UTF-8`,
      offset,
    );
  }
  checkName(source, format, name, nameBytes, flags, offset);
  if (versionNeeded > MAX_VERSION_NEEDED) {
    throw badZip(
      source,
      format,
      `Cannot read zip entry "${name}": it needs zip version ${
        versionNeeded / 10
      }, expected at most 6.3 (Python's zipfile refuses later ones)`,
      offset,
    );
  }
  const extra = cd.subarray(
    at + CENTRAL_SIZE + nameLength,
    at + CENTRAL_SIZE + nameLength + extraLength,
  );
  const z = zip64Extra(source, format, name, extra, offset);
  // The zip64 extra field holds, in this order, exactly the fields that
  // overflowed in the fixed header: readers that look at it only for those
  // (miniz, Python) and readers that trust it always then agree.
  const needed = (size === SENTINEL_32 ? 8 : 0) + (compressedSize === SENTINEL_32 ? 8 : 0) +
    (localHeaderOffset === SENTINEL_32 ? 8 : 0) + (diskStart === SENTINEL_16 ? 4 : 0);
  if ((z?.byteLength ?? 0) !== needed) {
    throw badZip(
      source,
      format,
      `Cannot read zip entry "${name}": its zip64 extra field holds ${
        z?.byteLength ?? 0
      } bytes, expected ${needed} (8 for each size or offset that is 0xFFFFFFFF in its directory entry)`,
      offset,
    );
  }
  if (z !== undefined) {
    let p = 0;
    const take = (): number => {
      const v = u64(z, p);
      p += 8;
      return v;
    };
    if (size === SENTINEL_32) size = take();
    if (compressedSize === SENTINEL_32) compressedSize = take();
    if (localHeaderOffset === SENTINEL_32) localHeaderOffset = take();
    if (diskStart === SENTINEL_16) diskStart = u32(z, p);
    if (size < 0 || compressedSize < 0 || localHeaderOffset < 0) {
      throw badZip(
        source,
        format,
        `Cannot read zip: entry "${name}" has a zip64 size or offset past 2^53`,
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
  return {
    entry: {
      name,
      method,
      flags,
      compressedSize,
      size,
      crc32,
      localHeaderOffset,
      dataOffset: 0,
    },
    end,
  };
}

function decodeName(bytes: Uint8Array): string | undefined {
  try {
    // Strict UTF-8 keeps two different byte strings from one name (names
    // without the UTF-8 flag must be ASCII: see checkName).
    return new TextDecoder("utf-8", { fatal: true, ignoreBOM: true }).decode(
      bytes,
    );
  } catch {
    return undefined;
  }
}

/** Refuses names that some reader would decode, cut or rewrite. */
function checkName(
  source: ByteSource,
  format: ModelFormat | undefined,
  name: string,
  bytes: Uint8Array,
  flags: number,
  offset: number,
): void {
  const fail = (why: string) =>
    badZip(
      source,
      format,
      `Cannot read zip entry ${JSON.stringify(name)}: ${why}`,
      offset,
    );
  if ((flags & 0x800) === 0 && bytes.some((b) => b >= 0x80)) {
    throw fail(
      "its name is not ASCII and lacks the UTF-8 flag, so Python's zipfile decodes it as CP437 (another name)",
    );
  }
  if (name.includes("\0")) {
    throw fail("its name holds a NUL byte, where Python's zipfile cuts it");
  }
  if (name.includes("\\")) {
    throw fail(
      "its name holds a backslash, which Python's zipfile turns into / on Windows only",
    );
  }
  const segments = name.split("/");
  // A trailing "/" marks a folder entry; every other segment is a plain name.
  if (name.endsWith("/")) segments.pop();
  if (
    name.startsWith("/") ||
    segments.some((s) => s === "" || s === "." || s === "..")
  ) {
    throw fail(
      "its path is not canonical (a leading /, or an empty, . or .. segment), and extraction tools rewrite it to another entry's path",
    );
  }
}

/** The zip64 extra field's data, refusing malformed or repeated fields. */
function zip64Extra(
  source: ByteSource,
  format: ModelFormat | undefined,
  name: string,
  extra: Uint8Array,
  offset: number,
): Uint8Array | undefined {
  let found: Uint8Array | undefined;
  let at = 0;
  while (at < extra.byteLength) {
    const tag = u16(extra, at);
    const length = u16(extra, at + 2);
    if (at + 4 > extra.byteLength || at + 4 + length > extra.byteLength) {
      throw badZip(
        source,
        format,
        `Cannot read zip entry "${name}": its extra field ${
          tag.toString(16).padStart(4, "0")
        } runs past the end of the extra data (Python's zipfile refuses it)`,
        offset,
      );
    }
    if (tag === ZIP64_EXTRA) {
      if (found !== undefined) {
        throw badZip(
          source,
          format,
          `Cannot read zip entry "${name}": it has two zip64 extra fields (readers would use either)`,
          offset,
        );
      }
      found = extra.subarray(at + 4, at + 4 + length);
    }
    at += 4 + length;
  }
  return found;
}

/**
 * Checks an entry's local header against its directory entry and returns the
 * offset where the next entry must start: after the data, and after the data
 * descriptor when flag bit 3 is set (torch.save writes one for every entry
 * with data, signed, with 32-bit sizes; zeros in the local header). Sets the
 * entry's data offset.
 */
async function checkLocal(
  source: ByteSource,
  format: ModelFormat | undefined,
  entry: ZipEntry,
  limit: number,
): Promise<number> {
  const at = entry.localHeaderOffset;
  const fail = (what: string, offset = at) =>
    badZip(
      source,
      format,
      `Cannot read zip entry "${entry.name}": ${what}`,
      offset,
    );
  if (at + LOCAL_SIZE > limit) {
    throw fail(
      `its local header at offset ${at} does not fit before the central directory at ${limit}`,
    );
  }
  const header = await readSmall(source, at, LOCAL_SIZE);
  if (u32(header, 0) !== LOCAL_SIGNATURE) {
    throw fail("no local file header at its offset");
  }
  const flags = u16(header, 6);
  const method = u16(header, 8);
  const crc = u32(header, 14);
  const compressedSize = u32(header, 18);
  const size = u32(header, 22);
  const nameLength = u16(header, 26);
  const extraLength = u16(header, 28);
  const data = at + LOCAL_SIZE + nameLength + extraLength;
  const dataEnd = data + entry.compressedSize;
  if (dataEnd > limit) {
    throw fail(
      `its ${entry.compressedSize} bytes of data at offset ${data} run into the central directory at ${limit}`,
    );
  }
  entry.dataOffset = data;
  if ((flags & MEANINGFUL_FLAGS) !== (entry.flags & MEANINGFUL_FLAGS)) {
    throw fail(
      `its local header has flags 0x${flags.toString(16)}, the central directory 0x${
        entry.flags.toString(16)
      }`,
    );
  }
  if (method !== entry.method) {
    throw fail(
      `its local header says compression method ${method}, the central directory ${entry.method}`,
    );
  }
  const z = extraLength > 0
    ? zip64Extra(
      source,
      format,
      entry.name,
      await readSmall(source, at + LOCAL_SIZE + nameLength, extraLength),
      at,
    )
    : undefined;
  const descriptor = (entry.flags & 0x8) !== 0;
  // A local size of 0xFFFFFFFF is in the zip64 extra field (uncompressed,
  // then compressed size). Other local zip64 data is not read by anyone (miniz
  // puts the header's own offset there), so it is not compared.
  const z64 = (p: number) => z !== undefined && z.byteLength >= p + 8 ? u64(z, p) : undefined;
  const agrees = (what: string, local: number, value: number, wide?: number) => {
    const found = local === SENTINEL_32 && wide !== undefined ? wide : local;
    // With a data descriptor the local header may hold zeros instead.
    if (found !== value && !(descriptor && found === 0)) {
      throw fail(
        `its local header gives the ${what} as ${
          found === SENTINEL_32 ? "0xFFFFFFFF without a zip64 value" : found
        }, the central directory ${value}`,
      );
    }
  };
  agrees("CRC-32", crc, entry.crc32);
  agrees("uncompressed size", size, entry.size, z64(0));
  agrees(
    "compressed size",
    compressedSize,
    entry.compressedSize,
    z64(size === SENTINEL_32 ? 8 : 0),
  );
  if (!descriptor) return dataEnd;
  return await checkDescriptor(source, entry, dataEnd, limit, fail);
}

/**
 * A data descriptor after the data: optional signature, CRC-32, then both
 * sizes in 4 or 8 bytes each. It must repeat the directory's values.
 */
async function checkDescriptor(
  source: ByteSource,
  entry: ZipEntry,
  dataEnd: number,
  limit: number,
  fail: (what: string, offset?: number) => ModelFormatError,
): Promise<number> {
  const bytes = await readSmall(source, dataEnd, Math.min(24, limit - dataEnd));
  const signed = bytes.byteLength >= 4 && u32(bytes, 0) === DESCRIPTOR_SIGNATURE;
  const p = signed ? 4 : 0;
  const matches = (wide: boolean): boolean => {
    const w = wide ? 8 : 4;
    if (bytes.byteLength < p + 4 + 2 * w) return false;
    const read = wide ? u64 : u32;
    return u32(bytes, p) === entry.crc32 &&
      read(bytes, p + 4) === entry.compressedSize &&
      read(bytes, p + 4 + w) === entry.size;
  };
  // The narrow form first: torch writes it; a wide match would need the next
  // header's signature to read as zeros.
  for (const wide of [false, true]) {
    if (matches(wide)) return dataEnd + p + 4 + (wide ? 16 : 8);
  }
  throw fail(
    `flag bit 3 announces a data descriptor after its data, but the bytes at offset ${dataEnd} are none that repeats the central directory's CRC-32 and sizes`,
    dataEnd,
  );
}

/**
 * Offset of an entry's data. Checks its local header's name against the
 * central directory's, and refuses encrypted entries.
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
  const header = await readSmall(source, at, LOCAL_SIZE);
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
  const name = decodeName(await readSmall(source, at + LOCAL_SIZE, nameLength));
  if (name !== entry.name) {
    throw badZip(
      source,
      format,
      `Cannot read zip entry "${entry.name}": its local header names "${
        name ?? "<invalid>"
      }" (Python's zipfile refuses the entry, miniz reads it)`,
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
