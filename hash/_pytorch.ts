// PyTorch checkpoints: the zip format of `torch.save` (PyTorch ≥ 1.6) and the
// older "legacy" format (a series of pickles followed by raw storages). Both
// are read with the restricted unpickler of `_pickle.ts`, which never runs
// code; the pickled calls that rebuild tensors are interpreted here. Every
// tensor reachable from the pickle's root is listed, named by its path
// (`optimizer.state.0.exp_avg`), or the file is refused: a tensor torch.load
// would read is never left out, and one this reader cannot read exactly as
// torch does (a subclass, a sparse or quantized tensor, a tensor changed after
// it is built) is refused by name.
import {
  ModelFormatError,
  type ModelFormatErrorCode,
  type ModelFormatErrorOptions,
} from "./errors.ts";
import {
  NeedMoreInput,
  PyCall,
  PyGlobal,
  PyOrderedDict,
  type PyPersistent,
  PySet,
  type PyValue,
  TORCH_DTYPES,
  unpickle,
} from "./_pickle.ts";
import { BLOCK_BYTES, type ByteSource, checkRange, rangeChunks } from "./_source.ts";
import {
  entryChunks,
  entryDataOffset,
  readEntry,
  readZipDirectory,
  type ZipEntry,
} from "./_zip.ts";
import { type DType, DTYPE_SIZES, type ModelFormat, type Tensor } from "./types.ts";

const CHUNK = BLOCK_BYTES;
// data.pkl, or a legacy pickle, larger than this is not a state dict.
const MAX_PICKLE = 256 << 20;
// The legacy magic number and protocol version pickles are a few bytes.
const SMALL_PICKLE = 64;
// A non-contiguous view is gathered from its storage span held in memory.
const MAX_GATHER_SPAN = 1 << 30;
const LEGACY_MAGIC = 0x1950a86a20f9469cfc6cn;
const LEGACY_PROTOCOL = 1001;
/** A tar header block (torch.load tries the tar format of early PyTorch first). */
const TAR_BLOCK = 512;
/** The records torch.save writes in a zip beside data.pkl and data/ (torch 1.6 to 2.x). */
const TORCH_RECORDS = new Set([
  "version",
  ".data/version",
  "byteorder",
  ".format_version",
  ".storage_alignment",
  ".data/serialization_id",
]);
/** torch.save's records are a few bytes of text ("3\n", "little", a 20-digit id). */
const TORCH_RECORD_BYTES = 64;
// Bounds on the walk from the pickle's root to its tensors. Real checkpoints
// nest a few levels and share little (tied weights), so these only stop
// hostile files from turning a small pickle into a lot of work.
/** Containers nested from the root to a tensor. */
const MAX_DEPTH = 64;
/** Values visited: a container reached by several paths is walked once per path. */
const MAX_VISITS = 1 << 24;
/** Tensors (paths to a tensor) in one checkpoint; real ones have thousands. */
const MAX_TENSORS = 1 << 18;
/** UTF-16 code units of all tensor names together. */
const MAX_NAME_CHARS = 1 << 24;
/** Dimensions of one tensor. */
const MAX_RANK = 64;
// The bytes read from the file and hashed for all the tensors that view one
// storage stay below this many times the storage's size (and at least
// VIEW_WORK_FLOOR bytes' worth): many names for one storage, or broadcast and
// strided views of it, cannot make a small file cost much more to hash.
const VIEW_WORK_FACTOR = 16;
const VIEW_WORK_FLOOR = 64;
/** The name of a tensor that is the pickle's root (`torch.save(tensor)`), as for a `.npy` file. */
const ROOT_NAME = "array";
/** Element types that may require gradients (torch.load fails for others). */
const GRAD_DTYPES = new Set<DType>([
  "F64",
  "F32",
  "F16",
  "BF16",
  "F8_E4M3",
  "F8_E5M2",
  "F8_E4M3FNUZ",
  "F8_E5M2FNUZ",
  "F8_E8M0",
  "C64",
  "C128",
]);

const STORAGE_DTYPES: Readonly<Record<string, DType>> = {
  DoubleStorage: "F64",
  FloatStorage: "F32",
  HalfStorage: "F16",
  BFloat16Storage: "BF16",
  LongStorage: "I64",
  IntStorage: "I32",
  ShortStorage: "I16",
  CharStorage: "I8",
  ByteStorage: "U8",
  BoolStorage: "BOOL",
  ComplexFloatStorage: "C64",
  ComplexDoubleStorage: "C128",
  // Untyped storages hold bytes; `_rebuild_tensor_v3` gives the dtype.
  UntypedStorage: "U8",
};

/** A storage as stored in the file; the storages of legacy views share one. */
interface StoredBytes {
  readonly key: string;
  readonly byteLength: number;
}

/** A storage named by a persistent id: a byte range read lazily. */
class Storage implements PyPersistent {
  readonly persistent = true as const;
  /** Tensors with elements that read this storage (once each per pass). */
  views = 0;
  constructor(
    readonly key: string,
    readonly dtype: DType,
    readonly byteLength: number,
    /** Streams `length` bytes at `offset` within the storage. */
    readonly read: (
      offset: number,
      length: number,
    ) => AsyncIterable<Uint8Array>,
    /** The stored bytes this storage is (or is a view of), for the work bound. */
    readonly stored: StoredBytes,
    /** Bytes handled to read `length` bytes at `offset` (a deflated entry inflates from its start). */
    readonly cost: (offset: number, length: number) => number = (_, length) => length,
  ) {}
}

/** A tensor as a view of a storage: offset and strides in elements. */
interface View {
  storage: Storage;
  dtype: DType;
  offset: number;
  shape: number[];
  stride: number[];
}

class Context {
  constructor(readonly source: ByteSource, readonly format: ModelFormat) {}

  where(offset?: number): ModelFormatErrorOptions {
    const options: ModelFormatErrorOptions = {
      file: this.source.name,
      format: this.format,
    };
    if (offset !== undefined) options.offset = offset;
    return options;
  }

  error(
    code: ModelFormatErrorCode,
    message: string,
    offset?: number,
  ): ModelFormatError {
    return new ModelFormatError(code, message, this.where(offset));
  }
}

/**
 * Reads a `torch.save` zip checkpoint (`<prefix>/data.pkl` plus one entry per
 * storage in `<prefix>/data/`). Returns the state dict's tensors in dict order;
 * only `data.pkl` is read here, storages are read when a tensor's chunks are.
 */
export async function readPytorchZip(source: ByteSource): Promise<Tensor[]> {
  const ctx = new Context(source, "pytorch-zip");
  const entries = await readZipDirectory(source, ctx.format);
  const byName = new Map(entries.map((e) => [e.name, e]));
  const pickles = entries.filter((e) => /^[^/]+\/data\.pkl$/.test(e.name));
  if (pickles.length !== 1) {
    throw ctx.error(
      "bad-zip",
      pickles.length === 0
        ? "Cannot read PyTorch checkpoint: the zip has no <name>/data.pkl entry (it is not a torch.save file)"
        : `Cannot read PyTorch checkpoint: the zip has ${pickles.length} <name>/data.pkl entries`,
    );
  }
  const pkl = pickles[0]!;
  const prefix = pkl.name.slice(0, -"data.pkl".length);
  // torch.load reads data.pkl, the storages it names and a few small records;
  // numpy.load reads any entry that starts with the .npy magic as an array
  // (`w.npy` by the name `w`). So every other entry is refused, and so is a
  // record that is not short ASCII text, lest one file be two checkpoints.
  for (const e of entries) {
    const rest = e.name.startsWith(prefix) ? e.name.slice(prefix.length) : undefined;
    if (rest === "data.pkl" || rest?.startsWith("data/")) continue;
    if (rest === undefined || !TORCH_RECORDS.has(rest)) {
      throw ctx.error(
        "bad-zip",
        `Cannot read PyTorch checkpoint: the zip has the entry ${
          JSON.stringify(e.name)
        }, which torch.load ignores but another reader may read (numpy.load reads "x.npy" as the array "x"); torch.save writes only ${prefix}data.pkl, the ${prefix}data/ storages it names, and records such as ${prefix}version and ${prefix}byteorder`,
        e.localHeaderOffset,
      );
    }
    const text = e.size <= TORCH_RECORD_BYTES
      ? await readEntry(source, e, TORCH_RECORD_BYTES, ctx.format)
      : undefined;
    if (text === undefined || !text.every((b) => (b >= 0x20 && b <= 0x7e) || b === 0x0a)) {
      throw ctx.error(
        "bad-zip",
        `Cannot read PyTorch checkpoint: its record ${e.name} is not ASCII text of at most ${TORCH_RECORD_BYTES} bytes, as torch.save writes (numpy.load reads an entry that starts with the .npy magic as an array)`,
        e.localHeaderOffset,
      );
    }
  }
  const byteorder = byName.get(`${prefix}byteorder`);
  if (byteorder !== undefined) {
    const order = new TextDecoder().decode(
      await readEntry(source, byteorder, 16, ctx.format),
    );
    if (order !== "little") {
      throw ctx.error(
        "unsupported-dtype",
        `Cannot read PyTorch checkpoint: its byte order is "${
          order.slice(0, 16)
        }" (only "little" is supported)`,
      );
    }
  }
  const bytes = await readEntry(source, pkl, MAX_PICKLE, ctx.format);
  const storages = new Map<string, Storage>();
  const persistentLoad = (pid: PyValue, offset: number): PyValue => {
    const { key, dtype, numel } = parseStorageId(ctx, pid, 5, offset);
    const byteLength = numel * DTYPE_SIZES[dtype];
    const known = storages.get(key);
    if (known !== undefined) {
      if (known.dtype !== dtype || known.byteLength !== byteLength) {
        throw ctx.error(
          "bad-pickle",
          `Cannot read PyTorch checkpoint: storage "${key}" is declared twice with different types or sizes`,
          offset,
        );
      }
      return known;
    }
    const entry = byName.get(`${prefix}data/${key}`);
    if (entry === undefined) {
      throw ctx.error(
        "bad-zip",
        `Cannot read PyTorch checkpoint: storage "${key}" has no entry ${prefix}data/${key}`,
        offset,
      );
    }
    if (!Number.isSafeInteger(byteLength) || byteLength > entry.size) {
      throw ctx.error(
        "bad-offsets",
        `Cannot read PyTorch checkpoint: storage "${key}" declares ${numel} ${dtype} elements but its entry holds ${entry.size} bytes`,
        offset,
      );
    }
    if (
      (entry.method !== 0 && entry.method !== 8) ||
      (entry.method === 0 && entry.compressedSize !== entry.size)
    ) {
      throw ctx.error(
        "bad-zip",
        `Cannot read PyTorch checkpoint: storage entry ${entry.name} uses compression method ${entry.method} with ${entry.compressedSize} of ${entry.size} bytes (expected stored or deflated)`,
        offset,
      );
    }
    const storage: Storage = new Storage(
      key,
      dtype,
      byteLength,
      zipStorageReader(ctx, entry, () => storage.views),
      { key, byteLength },
      entry.method === 0 ? undefined : inflateCost(entry.size),
    );
    storages.set(key, storage);
    return storage;
  };
  // Error offsets point into the file when the pickle is stored uncompressed.
  const baseOffset = pkl.method === 0 ? await entryDataOffset(source, pkl, ctx.format) : 0;
  const { value } = unpickle(bytes, 0, {
    file: source.name,
    format: ctx.format,
    baseOffset,
    persistentLoad,
  });
  // After the walk, whose refusals say more.
  const tensors = new Walk(ctx).run(value);
  for (const e of entries) {
    if (
      e.name.startsWith(`${prefix}data/`) && !storages.has(e.name.slice(`${prefix}data/`.length))
    ) {
      throw ctx.error(
        "bad-zip",
        `Cannot read PyTorch checkpoint: the storage entry ${e.name} is not named by ${prefix}data.pkl, so torch.load ignores it (and another reader, such as numpy.load, may read it)`,
        e.localHeaderOffset,
      );
    }
  }
  // numpy.load reads any entry that starts with the .npy magic as an array:
  // a storage that does is read one way by torch (raw elements, of which a
  // tensor may view only a part) and another by numpy. Its first bytes only.
  for (const storage of storages.values()) {
    const entry = byName.get(`${prefix}data/${storage.key}`)!;
    if (entry.size < NPY_MAGIC.length) continue;
    let head: Uint8Array | undefined;
    if (entry.method === 0) {
      head = await source.read(await entryDataOffset(source, entry, ctx.format), NPY_MAGIC.length);
    } else {
      const got: number[] = [];
      for await (const piece of entryChunks(source, entry, ctx.format, NPY_MAGIC.length)) {
        got.push(...piece.subarray(0, NPY_MAGIC.length - got.length));
        if (got.length >= NPY_MAGIC.length) break;
      }
      head = Uint8Array.from(got);
    }
    if (head !== undefined && NPY_MAGIC.every((b, k) => head![k] === b)) {
      throw ctx.error(
        "bad-zip",
        `Cannot read PyTorch checkpoint: the storage entry ${entry.name} starts with the .npy magic, so numpy.load reads it as an array while torch.load reads its raw elements`,
        entry.localHeaderOffset,
      );
    }
  }
  return tensors;
}

/** The magic a .npy file starts with (`\x93NUMPY`). */
const NPY_MAGIC = [0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59];

function zipStorageReader(
  ctx: Context,
  entry: ZipEntry,
  views: () => number,
): (offset: number, length: number) => AsyncIterable<Uint8Array> {
  let start: Promise<number> | undefined;
  if (entry.method === 0) {
    return async function* (offset, length) {
      start ??= entryDataOffset(ctx.source, entry, ctx.format);
      yield* rangeChunks(ctx.source, (await start) + offset, length);
    };
  }
  // Compressed storages (not written by torch, but valid zips) are inflated
  // from the start, skipping to the wanted range. One read by several views
  // is inflated once per pass and held until every view has read it:
  // inflating it per view would cost views × its size (64 views of a 1 MiB
  // storage from a 6 kB file inflate 64 MiB).
  let shared: Promise<Uint8Array> | undefined;
  let served = 0;
  return async function* (offset, length) {
    let at = 0;
    let left = length;
    if (left === 0) return;
    if (views() > 1) {
      if (entry.size > MAX_GATHER_SPAN) {
        throw ctx.error(
          "too-large",
          `Cannot read storage "${entry.name}": it is deflated, ${entry.size} bytes, and read by ${views()} tensors; at most ${MAX_GATHER_SPAN} bytes are inflated into memory to share (torch.save stores storages uncompressed)`,
        );
      }
      try {
        shared ??= inflated(ctx, entry);
        const bytes = await shared;
        for (let from = offset; from < offset + length; from += CHUNK) {
          yield bytes.subarray(from, Math.min(offset + length, from + CHUNK));
        }
      } finally {
        if (++served >= views()) {
          shared = undefined;
          served = 0;
        }
      }
      return;
    }
    for await (
      const piece of entryChunks(ctx.source, entry, ctx.format, CHUNK)
    ) {
      const from = Math.max(0, offset - at);
      at += piece.byteLength;
      if (from >= piece.byteLength) continue;
      const part = piece.subarray(
        from,
        Math.min(piece.byteLength, from + left),
      );
      left -= part.byteLength;
      yield part;
      if (left === 0) return;
    }
    throw ctx.error(
      "bad-zip",
      `Cannot read storage "${entry.name}": it ended before byte ${offset + length}`,
    );
  };
}

/**
 * Bytes handled per view of a deflated storage: the first view pays for
 * inflating the entry (the reader shares one inflation between the views
 * of a pass), every view for the bytes it hashes.
 */
function inflateCost(size: number): (offset: number, length: number) => number {
  let paid = false;
  return (_offset, length) => {
    const cost = paid ? length : size + length;
    paid = true;
    return cost;
  };
}

/** A deflated entry's bytes, grown as they inflate (a small entry may claim gigabytes). */
async function inflated(ctx: Context, entry: ZipEntry): Promise<Uint8Array> {
  let out = new Uint8Array(Math.min(entry.size, CHUNK));
  let at = 0;
  for await (const piece of entryChunks(ctx.source, entry, ctx.format, CHUNK)) {
    if (at + piece.byteLength > out.byteLength) {
      const grown = new Uint8Array(
        Math.min(entry.size, Math.max(2 * out.byteLength, at + piece.byteLength)),
      );
      grown.set(out.subarray(0, at));
      out = grown;
    }
    out.set(piece, at);
    at += piece.byteLength;
  }
  // entryChunks has checked that the entry inflates to exactly its size.
  return out;
}

/**
 * Reads a legacy (pre-1.6, non-zip) `torch.save` checkpoint: pickled magic
 * number, protocol version and system info, the main pickle, a pickled list of
 * storage keys, then each storage as an 8-byte element count and raw bytes.
 */
export async function readPytorchLegacy(source: ByteSource): Promise<Tensor[]> {
  const ctx = new Context(source, "pytorch-legacy");
  if (source.size >= TAR_BLOCK && isTarHeader(await source.read(0, TAR_BLOCK))) {
    throw ctx.error(
      "bad-header",
      "Cannot read legacy PyTorch checkpoint: its first 512 bytes are also a tar header with a valid checksum, and torch.load reads such a file as a tar checkpoint of early PyTorch (other tensors than the pickles at its start)",
      0,
    );
  }
  let magic: PyValue;
  let pos: number;
  try {
    ({ value: magic, end: pos } = await readPickleAt(ctx, 0, SMALL_PICKLE));
  } catch (e) {
    if (!(e instanceof ModelFormatError) || e.code === "forbidden-global") {
      throw e;
    }
    throw ctx.error(
      "bad-header",
      "Cannot read legacy PyTorch checkpoint: it does not start with a pickled magic number",
      0,
    );
  }
  if (magic !== LEGACY_MAGIC) {
    throw ctx.error(
      "bad-header",
      `Cannot read legacy PyTorch checkpoint: its magic number is ${describe(magic)}, expected 0x${
        LEGACY_MAGIC.toString(16)
      }`,
      0,
    );
  }
  const version = await readPickleAt(ctx, pos, SMALL_PICKLE);
  if (version.value !== LEGACY_PROTOCOL) {
    throw ctx.error(
      "bad-header",
      `Cannot read legacy PyTorch checkpoint: its protocol version is ${
        describe(version.value)
      }, expected ${LEGACY_PROTOCOL}`,
      pos,
    );
  }
  pos = version.end;
  const sysInfo = await readPickleAt(ctx, pos, 64 << 10);
  if (
    sysInfo.value instanceof Map && sysInfo.value.get("little_endian") === false
  ) {
    throw ctx.error(
      "unsupported-dtype",
      "Cannot read legacy PyTorch checkpoint: it was saved on a big-endian machine (only little-endian is supported)",
      pos,
    );
  }
  pos = sysInfo.end;

  // Root storages by key; their data offsets are known only after the key list.
  const roots = new Map<
    string,
    { dtype: DType; numel: number; stored: StoredBytes; data?: number }
  >();
  // Every storage by key, roots and views alike: torch.load keeps both in one
  // dict, so a view key that names a root is that root (and a root key that
  // names a view, that view), whatever offset and size the view says.
  const storages = new Map<string, Storage>();
  const viewKeys = new Set<string>();
  const rootReader =
    (key: string) => (offset: number, length: number): AsyncIterable<Uint8Array> => {
      const data = roots.get(key)?.data;
      if (data === undefined) {
        throw ctx.error(
          "bad-offsets",
          `Cannot read storage "${key}": it is not in the file`,
        );
      }
      return rangeChunks(ctx.source, data + offset, length);
    };
  const bothKinds = (key: string, offset: number) =>
    ctx.error(
      "bad-pickle",
      `Cannot read legacy PyTorch checkpoint: the key "${key}" names both a root storage and a view (torch.load keeps both in one dict, so one would stand for the other; torch.save never writes this)`,
      offset,
    );
  const persistentLoad = (pid: PyValue, offset: number): PyValue => {
    const { key, dtype, numel, rest } = parseStorageId(ctx, pid, 6, offset);
    const es = DTYPE_SIZES[dtype];
    if (viewKeys.has(key)) throw bothKinds(key, offset);
    let root = roots.get(key);
    if (root === undefined) {
      root = { dtype, numel, stored: { key, byteLength: numel * es } };
      roots.set(key, root);
      storages.set(key, new Storage(key, dtype, numel * es, rootReader(key), root.stored));
    } else if (root.dtype !== dtype || root.numel !== numel) {
      throw ctx.error(
        "bad-pickle",
        `Cannot read PyTorch checkpoint: storage "${key}" is declared twice with different types or sizes`,
        offset,
      );
    }
    const meta = rest[0] ?? null;
    if (meta === null) return storages.get(key)!;
    // A view of the root storage: (view_key, element offset, element count).
    const [viewKey, viewOffset, viewSize] = Array.isArray(meta) ? meta as PyValue[] : [];
    if (
      typeof viewKey !== "string" || !isCount(viewOffset) ||
      !isCount(viewSize) ||
      viewOffset + viewSize > numel
    ) {
      throw ctx.error(
        "bad-pickle",
        `Cannot read PyTorch checkpoint: storage "${key}" has an invalid view (expected (key, offset, size) inside ${numel} elements)`,
        offset,
      );
    }
    if (roots.has(viewKey)) throw bothKinds(viewKey, offset);
    // torch.load returns a view it has made before, whatever this one says.
    const known = storages.get(viewKey);
    if (known !== undefined) return known;
    const read = rootReader(key);
    const storage = new Storage(
      viewKey,
      dtype,
      viewSize * es,
      (o, l) => read(viewOffset * es + o, l),
      root.stored,
    );
    viewKeys.add(viewKey);
    storages.set(viewKey, storage);
    return storage;
  };
  const main = await readPickleAt(ctx, pos, MAX_PICKLE, persistentLoad);
  pos = main.end;
  const keysAt = pos;
  const keys = await readPickleAt(ctx, pos, MAX_PICKLE);
  pos = keys.end;
  if (
    !Array.isArray(keys.value) ||
    !keys.value.every((k) => typeof k === "string")
  ) {
    throw ctx.error(
      "bad-pickle",
      "Cannot read legacy PyTorch checkpoint: the storage key list is not a list of strings",
      keysAt,
    );
  }
  for (const key of keys.value as string[]) {
    const root = roots.get(key);
    if (root === undefined) {
      throw ctx.error(
        "bad-pickle",
        `Cannot read legacy PyTorch checkpoint: storage "${key}" is listed but never used, so its size is unknown`,
        keysAt,
      );
    }
    if (root.data !== undefined) {
      throw ctx.error(
        "bad-pickle",
        `Cannot read legacy PyTorch checkpoint: storage "${key}" is listed twice`,
        keysAt,
      );
    }
    checkRange(source, pos, 8, ctx.format);
    const count = readU64(await source.read(pos, 8));
    if (count !== root.numel) {
      throw ctx.error(
        "bad-offsets",
        `Cannot read legacy PyTorch checkpoint: storage "${key}" holds ${count} elements in the file but ${root.numel} in its pickle`,
        pos,
      );
    }
    const byteLength = count * DTYPE_SIZES[root.dtype];
    checkRange(source, pos + 8, byteLength, ctx.format);
    root.data = pos + 8;
    pos += 8 + byteLength;
  }
  for (const [key, root] of roots) {
    if (root.data === undefined) {
      throw ctx.error(
        "bad-offsets",
        `Cannot read legacy PyTorch checkpoint: storage "${key}" is used but not in the storage list`,
        keysAt,
      );
    }
  }
  if (pos !== source.size) {
    throw ctx.error(
      "bad-offsets",
      `Cannot read legacy PyTorch checkpoint: ${
        source.size - pos
      } bytes follow its last storage (torch.save writes none; another reader, such as the tar loader torch.load tries first, could read them)`,
      pos,
    );
  }
  return new Walk(ctx).run(main.value);
}

/**
 * Whether a 512-byte block passes the test Python's `tarfile` makes of a
 * header (`TarInfo.frombuf`): its checksum field, read as `tarfile.nti`
 * does, equals the sum of its other bytes plus 256 (8 spaces), the bytes
 * taken unsigned or signed (`tarfile.calc_chksums`). `torch.load` opens a
 * file with `tarfile` first and reads it as a tar checkpoint when this holds.
 */
export function isTarHeader(block: Uint8Array): boolean {
  if (block.byteLength !== TAR_BLOCK || block.every((b) => b === 0)) return false;
  let unsigned = 256;
  let signed = 256;
  for (let i = 0; i < TAR_BLOCK; i++) {
    if (i >= 148 && i < 156) continue;
    unsigned += block[i]!;
    signed += block[i]! < 128 ? block[i]! : block[i]! - 256;
  }
  const field = block.subarray(148, 156);
  let sum: number;
  if (field[0] === 0o200 || field[0] === 0o377) {
    // Base-256: the other 7 bytes, big-endian; negative after 0o377.
    sum = 0;
    for (let i = 1; i < 8; i++) sum = sum * 256 + field[i]!;
    if (field[0] === 0o377) sum -= 256 ** 7;
  } else {
    // Octal text up to the first NUL, ASCII only, stripped, as int(s, 8).
    const nul = field.indexOf(0);
    const raw = field.subarray(0, nul < 0 ? 8 : nul);
    if (raw.some((b) => b > 0x7f)) return false;
    // str.strip(): ASCII whitespace, and the separators \x1c to \x1f.
    const space = (b: number) => b === 0x20 || (b >= 0x09 && b <= 0x0d) || (b >= 0x1c && b <= 0x1f);
    let from = 0;
    let to = raw.length;
    while (from < to && space(raw[from]!)) from++;
    while (to > from && space(raw[to - 1]!)) to--;
    const text = String.fromCharCode(...raw.subarray(from, to));
    if (text === "") sum = 0;
    else {
      // int(text, 8): a sign, an optional 0o prefix, digits with single underscores.
      const m = /^([+-]?)(?:0[oO]_?)?([0-7](?:_?[0-7])*)$/.exec(text);
      if (m === null) return false;
      sum = (m[1] === "-" ? -1 : 1) * parseInt(m[2]!.replaceAll("_", ""), 8);
    }
  }
  return sum === unsigned || sum === signed;
}

/**
 * Unpickles at `offset`, reading a growing window of the file as needed, up
 * to `limit` bytes.
 */
async function readPickleAt(
  ctx: Context,
  offset: number,
  limit: number,
  persistentLoad?: (pid: PyValue, offset: number) => PyValue,
): Promise<{ value: PyValue; end: number }> {
  const remaining = ctx.source.size - offset;
  if (remaining <= 0) {
    throw ctx.error(
      "truncated",
      `Cannot read pickle at offset ${offset}: the file is ${ctx.source.size} bytes long`,
      offset,
    );
  }
  let window = Math.min(remaining, 64 << 10, limit);
  while (true) {
    const bytes = await ctx.source.read(offset, window);
    const options = {
      file: ctx.source.name,
      format: ctx.format,
      baseOffset: offset,
      partial: window < remaining,
    };
    try {
      const { value, end } = unpickle(
        bytes,
        0,
        persistentLoad ? { ...options, persistentLoad } : options,
      );
      return { value, end: offset + end };
    } catch (e) {
      if (!(e instanceof NeedMoreInput)) throw e;
    }
    if (window >= limit) {
      throw ctx.error(
        "too-large",
        `Cannot read pickle at offset ${offset}: it is longer than ${limit} bytes`,
        offset,
      );
    }
    window = Math.min(remaining, window * 4, limit);
  }
}

/** Validates a persistent id `('storage', cls, key, location, numel, …)`. */
function parseStorageId(
  ctx: Context,
  pid: PyValue,
  length: number,
  offset: number,
): { key: string; dtype: DType; numel: number; rest: PyValue[] } {
  const fail = (what: string) =>
    ctx.error(
      "bad-pickle",
      `Cannot read PyTorch checkpoint: persistent id ${what}`,
      offset,
    );
  if (!Array.isArray(pid) || pid.length !== length || pid[0] !== "storage") {
    throw fail(
      `is not a ('storage', type, key, location, size${length === 6 ? ", view" : ""}) tuple`,
    );
  }
  const [, cls, key, , numel, ...rest] = pid as PyValue[];
  if (!(cls instanceof PyGlobal) || cls.module !== "torch") {
    throw fail("has a storage type that is not a torch storage class");
  }
  const dtype = STORAGE_DTYPES[cls.name] ??
    (TORCH_DTYPES[cls.name] as DType | undefined);
  if (dtype === undefined) {
    throw ctx.error(
      "unsupported-dtype",
      `Cannot read PyTorch checkpoint: storage type torch.${cls.name} is not supported`,
      offset,
    );
  }
  if (typeof key !== "string") throw fail("has a key that is not a string");
  if (!isCount(numel) || !Number.isSafeInteger(numel * DTYPE_SIZES[dtype])) {
    throw fail(`has an invalid size ${describe(numel ?? null)}`);
  }
  return { key, dtype, numel, rest };
}

function isCount(v: PyValue | undefined): v is number {
  return typeof v === "number" && Number.isSafeInteger(v) && v >= 0;
}

function readU64(b: Uint8Array): number {
  const view = new DataView(b.buffer, b.byteOffset, 8);
  const hi = view.getUint32(4, true);
  // Anything past 2^53 cannot match a storage size anyway.
  return hi >= 0x200000 ? -1 : hi * 0x100000000 + view.getUint32(0, true);
}

function describe(v: PyValue): string {
  if (typeof v === "bigint") return v > 0xffffffffn ? `0x${v.toString(16)}` : String(v);
  if (typeof v === "number" || typeof v === "boolean") return String(v);
  if (typeof v === "string") return JSON.stringify(v.slice(0, 40));
  if (v === null) return "None";
  if (Array.isArray(v)) return "a tuple or list";
  if (v instanceof Map) return "a dict";
  return "an object";
}

/** A dict key as a name segment: a str as is, an int in decimal; else undefined. */
function segment(k: PyValue): string | undefined {
  if (typeof k === "string") return k;
  // 1.0 and True are the int 1 as dict keys; String(-0) is "0".
  if (typeof k === "number") return Number.isSafeInteger(k) ? String(k) : undefined;
  if (typeof k === "bigint") return k.toString();
  return undefined;
}

function isEmptyDict(v: PyValue | undefined): boolean {
  return v === null || v === undefined ||
    (v instanceof Map && v.size === 0 && !(v instanceof PyOrderedDict && v.states.length > 0));
}

/** Why a tensor found where the walk is would have no name (computed on failure). */
type Unnamed = () => string;

/**
 * Walks the unpickled objects from the root and lists every tensor, named by
 * its path: dict keys (str as is, int in decimal) and list or tuple indices,
 * joined with ".". A tensor that is the root is named {@linkcode ROOT_NAME}.
 * Refused: a tensor without such a path (under a key of another type, in a
 * set, in an OrderedDict's attributes, as a dict key), two paths with one
 * name, a container inside itself, a storage outside a tensor, and any call
 * that is not a tensor this reader reads exactly as torch.load does.
 */
class Walk {
  readonly #ctx: Context;
  readonly #tensors: Tensor[] = [];
  readonly #names = new Set<string>();
  readonly #path: string[] = [];
  readonly #open = new Set<object>();
  // Containers already walked that hold no tensor: walking them again (from
  // another path) would find none, so they are skipped.
  readonly #tensorFree = new WeakSet<object>();
  readonly #work = new Map<StoredBytes, number>();
  #visits = 0;
  #nameChars = 0;

  constructor(ctx: Context) {
    this.#ctx = ctx;
  }

  run(root: PyValue): Tensor[] {
    this.#visit(root, undefined);
    return this.#tensors;
  }

  #fail(
    message: string,
    offset?: number,
    code: ModelFormatErrorCode = "bad-pickle",
  ): ModelFormatError {
    return this.#ctx.error(code, `Cannot read PyTorch checkpoint: ${message}`, offset);
  }

  /** Where the walk is (or was, `depth` segments deep), for messages. */
  #at(depth = this.#path.length): string {
    if (depth === 0) return "the root";
    const name = this.#path.slice(0, depth).join(".");
    return JSON.stringify(name.length > 200 ? `${name.slice(0, 200)}…` : name);
  }

  /** `unnamed`, when set, says why a tensor found here would have no name. */
  #visit(v: PyValue, unnamed: Unnamed | undefined): void {
    if (++this.#visits > MAX_VISITS) {
      throw this.#fail(
        `reaching every tensor visits more than ${MAX_VISITS} values (its containers are shared by too many paths)`,
        undefined,
        "too-large",
      );
    }
    if (v === null || typeof v !== "object" || v instanceof Uint8Array || v instanceof PyGlobal) {
      return;
    }
    if (v instanceof PyCall) return this.#call(v, unnamed);
    if (v instanceof Storage) {
      throw this.#fail(
        `storage "${v.key}" is not part of a tensor at ${this.#at()} (torch.load would return the bare storage)`,
      );
    }
    if (!(Array.isArray(v) || v instanceof Map || v instanceof PySet)) {
      throw this.#fail(`an unexpected value at ${this.#at()}`);
    }
    if (this.#tensorFree.has(v)) return;
    if (this.#open.has(v)) {
      throw this.#fail(`the container at ${this.#at()} contains itself`);
    }
    if (this.#open.size >= MAX_DEPTH) {
      throw this.#fail(
        `containers nest more than ${MAX_DEPTH} deep at ${this.#at()}`,
        undefined,
        "too-large",
      );
    }
    this.#open.add(v);
    const before = this.#tensors.length;
    if (Array.isArray(v)) {
      for (let i = 0; i < v.length; i++) {
        this.#path.push(String(i));
        this.#visit(v[i]!, unnamed);
        this.#path.pop();
      }
    } else if (v instanceof Map) {
      const depth = this.#path.length;
      for (const [k, x] of v) {
        if (typeof k === "object" && k !== null) {
          this.#visit(k, unnamed ?? (() => `used as a dict key at ${this.#at(depth)}`));
        }
        const seg = segment(k);
        if (seg === undefined) {
          this.#visit(
            x,
            unnamed ??
              (() =>
                `under the key ${describe(k)} at ${
                  this.#at(depth)
                } (only str and int keys name a tensor)`),
          );
          continue;
        }
        this.#path.push(seg);
        this.#visit(x, unnamed);
        this.#path.pop();
      }
      if (v instanceof PyOrderedDict) {
        const why: Unnamed = () =>
          `in the attributes that BUILD gives the OrderedDict at ${this.#at(depth)}`;
        for (const state of v.states) this.#visit(state, unnamed ?? why);
      }
    } else {
      const depth = this.#path.length;
      const why: Unnamed = () =>
        `in a set at ${this.#at(depth)} (a set has no order to name it by)`;
      for (const x of v.items) this.#visit(x, unnamed ?? why);
    }
    this.#open.delete(v);
    if (this.#tensors.length === before) this.#tensorFree.add(v);
  }

  #call(call: PyCall, unnamed: Unnamed | undefined): void {
    if (call.fn.qualified === "torch.device") {
      if (!call.args.every((a) => typeof a === "string" || typeof a === "number")) {
        throw this.#fail(
          `torch.device at ${this.#at()} is called with unexpected arguments`,
          call.offset,
        );
      }
      return;
    }
    const view = this.#view(call, 0);
    if (unnamed !== undefined) {
      throw this.#fail(`a tensor (built by ${call.fn.qualified}) is ${unnamed()}`, call.offset);
    }
    const name = this.#path.length === 0 ? ROOT_NAME : this.#path.join(".");
    if (this.#names.has(name)) {
      throw this.#fail(
        `the tensor name ${
          JSON.stringify(name)
        } is used twice (two paths join to it; dict keys may contain ".")`,
        call.offset,
      );
    }
    this.#nameChars += name.length;
    if (this.#tensors.length >= MAX_TENSORS || this.#nameChars > MAX_NAME_CHARS) {
      throw this.#fail(
        `it has more than ${MAX_TENSORS} tensors, or their names are longer than ${MAX_NAME_CHARS} characters together`,
        call.offset,
        "too-large",
      );
    }
    this.#names.add(name);
    const { tensor, cost } = makeTensor(this.#ctx, name, view);
    const stored = view.storage.stored;
    const work = (this.#work.get(stored) ?? 0) + cost;
    const limit = VIEW_WORK_FACTOR * Math.max(stored.byteLength, VIEW_WORK_FLOOR);
    if (work > limit) {
      throw this.#fail(
        `the tensors that view storage "${stored.key}" (${stored.byteLength} bytes) need more than ${limit} bytes read and hashed (${VIEW_WORK_FACTOR} times the storage's size), at ${this.#at()}: too many names for it, or views that repeat its elements`,
        call.offset,
        "too-large",
      );
    }
    this.#work.set(stored, work);
    this.#tensors.push(tensor);
  }

  /** Interprets a tensor-building call, or refuses it saying why. */
  #view(call: PyCall, depth: number): View {
    const fn = call.fn.qualified;
    const args = call.args;
    const fail = (what: string) =>
      this.#fail(`the tensor at ${this.#at()} is built by ${fn} ${what}`, call.offset);
    if (depth > 4) throw fail("inside more than 4 other tensor wrappers");
    const inner = (v: PyValue | undefined): View => {
      if (!(v instanceof PyCall)) throw fail("with data that is not a tensor");
      return this.#view(v, depth + 1);
    };
    switch (fn) {
      case "torch._utils._rebuild_tensor":
        if (args.length !== 4) throw fail(`with ${args.length} arguments (expected 4)`);
        return this.#dense(fail, args, undefined);
      case "torch._utils._rebuild_tensor_v2": {
        // (storage, offset, size, stride, requires_grad, backward_hooks[, metadata])
        if (args.length !== 6 && args.length !== 7) {
          throw fail(`with ${args.length} arguments (expected 6, or 7 with metadata)`);
        }
        const view = this.#dense(fail, args, undefined);
        this.#gradAndHooks(fail, view.dtype, args[4], args[5]);
        if (!isEmptyDict(args[6])) {
          throw fail(
            "with tensor metadata (the conj and neg bits of torch ≥ 2.0, which change its values)",
          );
        }
        return view;
      }
      case "torch._utils._rebuild_tensor_v3": {
        // (storage, offset, size, stride, requires_grad, backward_hooks, dtype[, metadata])
        if (args.length !== 7 && args.length !== 8) {
          throw fail(`with ${args.length} arguments (expected 7, or 8 with metadata)`);
        }
        const d = args[6];
        const dtype = d instanceof PyGlobal && d.module === "torch"
          ? TORCH_DTYPES[d.name]
          : undefined;
        if (dtype === undefined) throw fail("with a dtype that is not a torch dtype");
        const view = this.#dense(fail, args, dtype as DType);
        this.#gradAndHooks(fail, view.dtype, args[4], args[5]);
        if (!isEmptyDict(args[7])) {
          throw fail(
            "with tensor metadata (the conj and neg bits of torch ≥ 2.0, which change its values)",
          );
        }
        return view;
      }
      case "torch._utils._rebuild_parameter": {
        // Parameter(data, requires_grad): its data is the tensor.
        if (args.length !== 3) throw fail(`with ${args.length} arguments (expected 3)`);
        const view = inner(args[0]);
        this.#gradAndHooks(fail, view.dtype, args[1], args[2]);
        return view;
      }
      case "torch.nn.parameter.Parameter": {
        if (args.length === 0 || args[0] === null) {
          throw fail("without data (torch.load would make an empty tensor of its default dtype)");
        }
        if (args.length > 2) {
          throw fail(`with ${args.length} arguments (expected data, requires_grad)`);
        }
        const view = inner(args[0]);
        this.#gradAndHooks(fail, view.dtype, args[1] ?? true, null);
        return view;
      }
      case "torch._utils._rebuild_parameter_with_state":
        throw fail(
          "(torch ≥ 2.0 writes it for a Parameter with Python attributes, which torch.load sets on it and which can replace its data)",
        );
      case "torch._tensor._rebuild_from_type_v2": {
        // (func, type, args, state): for type torch.Tensor, torch.load returns
        // func(*args) and ignores the state; for any other type it converts
        // the tensor and sets the state's attributes on it.
        const [func, type, funcArgs] = args;
        if (args.length !== 4) throw fail(`with ${args.length} arguments (expected 4)`);
        if (
          !(type instanceof PyGlobal) ||
          (type.qualified !== "torch.Tensor" && type.qualified !== "torch._tensor.Tensor")
        ) {
          throw fail(
            `with the type ${
              type instanceof PyGlobal ? type.qualified : describe(type ?? null)
            } (only torch.Tensor is read: a subclass's attributes can change the tensor)`,
          );
        }
        if (!(func instanceof PyGlobal) || !Array.isArray(funcArgs)) {
          throw fail("with a function or arguments that are not a global and a tuple");
        }
        return this.#view(new PyCall(func, funcArgs as readonly PyValue[], call.offset), depth + 1);
      }
      case "torch.Tensor":
      case "torch._tensor.Tensor":
        throw fail(
          "directly (a tensor made from Python values, or by the legacy set_ path), which is not read",
        );
      default:
        throw this.#fail(
          `the value at ${this.#at()} is made by calling ${fn}, which is neither a tensor nor a plain value`,
          call.offset,
        );
    }
  }

  /** requires_grad changes no byte, but torch.load fails for integer tensors; hooks must be empty. */
  #gradAndHooks(
    fail: (what: string) => ModelFormatError,
    dtype: DType,
    requiresGrad: PyValue | undefined,
    hooks: PyValue | undefined,
  ): void {
    if (typeof requiresGrad !== "boolean") throw fail("with a requires_grad that is not a bool");
    if (requiresGrad && !GRAD_DTYPES.has(dtype)) {
      throw fail(
        `with requires_grad=True on ${dtype} elements (torch.load fails: only floating point and complex tensors can require gradients)`,
      );
    }
    if (!isEmptyDict(hooks)) {
      throw fail(
        "with backward hooks (torch.load sets them on the tensor, and they can hold more tensors)",
      );
    }
  }

  /** `(storage, offset, size, stride, …)` as a view of the storage. */
  #dense(
    fail: (what: string) => ModelFormatError,
    args: readonly PyValue[],
    dtype: DType | undefined,
  ): View {
    const [storage, offset, shape, stride] = args;
    if (!(storage instanceof Storage)) {
      throw fail("with a first argument that is not a storage");
    }
    if (!isCount(offset)) {
      throw fail("with a storage offset that is not a non-negative integer");
    }
    if (!Array.isArray(shape) || !shape.every(isCount)) {
      throw fail("with a size that is not a tuple of non-negative integers");
    }
    if (shape.length > MAX_RANK) {
      throw fail(`with ${shape.length} dimensions (at most ${MAX_RANK} are read)`);
    }
    if (
      !Array.isArray(stride) || stride.length !== shape.length ||
      !stride.every(isCount)
    ) {
      throw fail("with a stride that does not match its size");
    }
    return {
      storage,
      dtype: dtype ?? storage.dtype,
      offset,
      shape: [...shape] as number[],
      stride: [...stride] as number[],
    };
  }
}

/**
 * The tensor a view reads, and its cost: the bytes read from the file for it
 * plus the bytes hashed.
 */
function makeTensor(
  ctx: Context,
  name: string,
  view: View,
): { tensor: Tensor; cost: number } {
  const es = DTYPE_SIZES[view.dtype];
  const tooBig = () =>
    ctx.error(
      "bad-offsets",
      `Cannot read tensor "${name}": its size or strides overflow`,
    );
  let numel = 1;
  for (const n of view.shape) {
    numel *= n;
    if (!Number.isSafeInteger(numel)) throw tooBig();
  }
  const byteLength = numel * es;
  if (!Number.isSafeInteger(byteLength)) throw tooBig();
  // Element span [first, last] the view touches in its storage.
  const first = view.offset;
  let last = first;
  for (let i = 0; i < view.shape.length && numel > 0; i++) {
    last += (view.shape[i]! - 1) * view.stride[i]!;
    if (!Number.isSafeInteger(last)) throw tooBig();
  }
  const spanBytes = numel === 0 ? 0 : (last - first + 1) * es;
  if (
    numel > 0 &&
    (!Number.isSafeInteger((last + 1) * es) ||
      (last + 1) * es > view.storage.byteLength)
  ) {
    throw ctx.error(
      "bad-offsets",
      `Cannot read tensor "${name}": it reaches element ${last} of its storage "${view.storage.key}", which has ${
        Math.floor(view.storage.byteLength / es)
      } ${view.dtype} elements`,
    );
  }
  if (numel > 0) view.storage.views++;
  const contiguous = isContiguous(view.shape, view.stride);
  if (!contiguous && spanBytes > MAX_GATHER_SPAN) {
    throw ctx.error(
      "too-large",
      `Cannot read tensor "${name}": it is a non-contiguous view spanning ${spanBytes} bytes (at most ${MAX_GATHER_SPAN} are gathered)`,
    );
  }
  const shape = [...view.shape];
  const read = byteLength === 0
    ? 0
    : view.storage.cost(first * es, contiguous ? byteLength : spanBytes);
  const tensor: Tensor = {
    name,
    dtype: view.dtype,
    shape,
    byteLength,
    chunks(): AsyncIterable<Uint8Array> {
      if (byteLength === 0) return empty();
      if (contiguous) return view.storage.read(first * es, byteLength);
      return gathered(view, es, first, spanBytes, byteLength);
    },
  };
  return { tensor, cost: read + byteLength };
}

async function* empty(): AsyncGenerator<Uint8Array> {}

function isContiguous(shape: number[], stride: number[]): boolean {
  let expected = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    if (shape[i] !== 1 && stride[i] !== expected) return false;
    expected *= shape[i]!;
  }
  return true;
}

/** Reads a strided view's storage span, then yields its elements in C order. */
async function* gathered(
  view: View,
  es: number,
  first: number,
  spanBytes: number,
  byteLength: number,
): AsyncGenerator<Uint8Array> {
  const span = new Uint8Array(spanBytes);
  let at = 0;
  for await (const piece of view.storage.read(first * es, spanBytes)) {
    span.set(piece, at);
    at += piece.byteLength;
  }
  // Copy in words of up to 4 bytes (integers, so NaN payloads survive); every
  // offset is a multiple of the element size, so the word views line up.
  const w = es >= 4 ? 4 : es;
  const k = es / w;
  const words = (bytes: Uint8Array): Uint8Array | Uint16Array | Uint32Array =>
    w === 4
      ? new Uint32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4)
      : w === 2
      ? new Uint16Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 2)
      : bytes;
  const src = words(span);
  const { shape } = view;
  const stride = view.stride.map((s) => s * k); // in words
  const rank = shape.length;
  const inner = shape[rank - 1]!;
  const innerStride = stride[rank - 1]!;
  const totalWords = byteLength / w;
  const chunkWords = Math.max(k, Math.floor(CHUNK / es) * k);
  let outBytes = new Uint8Array(Math.min(chunkWords, totalWords) * w);
  let out = words(outBytes);
  let filled = 0;
  let written = 0;
  // Index over all but the innermost dimension, odometer style.
  const index = new Array<number>(Math.max(0, rank - 1)).fill(0);
  let base = 0; // word offset in the span of the current innermost run
  while (written < totalWords) {
    for (let j = 0; j < inner;) {
      if (filled === out.length) {
        yield outBytes;
        outBytes = new Uint8Array(
          Math.min(chunkWords, totalWords - written) * w,
        );
        out = words(outBytes);
        filled = 0;
      }
      const from = base + j * innerStride;
      if (innerStride === k) {
        // A contiguous innermost run: copy as much of it as fits.
        const n = Math.min((inner - j) * k, out.length - filled);
        out.set(src.subarray(from, from + n), filled);
        filled += n;
        written += n;
        j += n / k;
      } else {
        for (let t = 0; t < k; t++) out[filled + t] = src[from + t]!;
        filled += k;
        written += k;
        j++;
      }
    }
    for (let d = rank - 2; d >= 0; d--) {
      index[d] = index[d]! + 1;
      base += stride[d]!;
      if (index[d]! < shape[d]!) break;
      base -= index[d]! * stride[d]!;
      index[d] = 0;
    }
  }
  if (filled > 0) yield outBytes.subarray(0, filled * w);
}
