// Measuring a file the way an OMS statement expects: the whole file with its
// hash (SHA-256, BLAKE2b-512, BLAKE3), or its shards ([0,N), [N,2N), … each
// hashed alone; SHA-256 shards of a local file are spread over workers, which
// is the point of shards). Browser-safe: byte sources only.
import { createBlake2b, createBlake3, createSha256, type Hasher, toHex } from "../hash/_digest.ts";
import { spanDigests, workersAllowed } from "../hash/_leaves.ts";
import { type ByteSource, rangeChunks, recycle } from "../hash/_source.ts";
import { type OmsHashType, shardRanges } from "./_oms.ts";

function hasher(hashType: OmsHashType): Promise<Hasher> {
  return hashType === "sha256"
    ? createSha256()
    : hashType === "blake2b"
    ? createBlake2b(512)
    : createBlake3();
}

async function digestRange(
  source: ByteSource,
  hashType: OmsHashType,
  offset: number,
  length: number,
): Promise<string> {
  const h = await hasher(hashType);
  for await (const chunk of rangeChunks(source, offset, length)) {
    h.update(chunk);
    recycle(chunk);
  }
  return toHex(h.digest());
}

/** The labels an OMS expectation can have: a hash, or `<hash>-sharded-<N>`. */
export function parseLabel(
  label: string,
): { hashType: OmsHashType; shardSize?: number } | undefined {
  const m = /^(sha256|blake2b|blake3)(?:-sharded-([1-9]\d*))?$/.exec(label);
  if (!m) return undefined;
  const shardSize = m[2] === undefined ? undefined : Number(m[2]);
  if (shardSize !== undefined && !Number.isSafeInteger(shardSize)) return undefined;
  return { hashType: m[1] as OmsHashType, ...(shardSize !== undefined ? { shardSize } : {}) };
}

/**
 * The file's content as an OMS expectation with `label` spells it (see
 * `OmsFinding.resources`), so the decision compares two strings.
 */
export async function measure(
  label: string,
  source: ByteSource,
  options: { workers?: number } = {},
): Promise<string> {
  const parsed = parseLabel(label);
  if (parsed === undefined) throw new TypeError(`Cannot measure file: unknown digest ${label}`);
  if (parsed.shardSize === undefined) {
    return `${label}:${await digestRange(source, parsed.hashType, 0, source.size)}`;
  }
  const shards = shardRanges(source.size, parsed.shardSize);
  let hexes: string[];
  if (parsed.hashType === "sha256") {
    const digests = await spanDigests(
      source,
      shards.map((s) => ({ offset: s.start, length: s.end - s.start })),
      { workers: options.workers ?? 0 },
    );
    hexes = digests.map(toHex);
  } else {
    hexes = [];
    for (const s of shards) {
      hexes.push(await digestRange(source, parsed.hashType, s.start, s.end - s.start));
    }
  }
  return `${label}:${shards.map((s, i) => `${s.start}-${s.end}=${hexes[i]}`).join(";")}`;
}

/**
 * The labels a verified OMS finding needs measured for `file` beyond SHA-256:
 * the file's own label, or the shard label (an unlisted empty file).
 */
export function labelsFor(
  oms: { resources: ReadonlyMap<string, string>; shardLabel?: string | undefined },
  file: string,
): string[] {
  const signed = oms.resources.get(file);
  const label = signed === undefined ? oms.shardLabel : signed.slice(0, signed.indexOf(":"));
  return label === undefined || label === "sha256" ? [] : [label];
}

/**
 * {@linkcode measure}, but a file whose size cannot match `expected` (the
 * signed value for it, when it has shards) is not read: the answer names its
 * size, which differs from the signed value. Keeps a huge file under a
 * statement of tiny shards from costing a string per shard.
 */
export async function measureExpected(
  label: string,
  source: ByteSource,
  expected: string | undefined,
  options: { workers?: number } = {},
): Promise<string> {
  const parsed = parseLabel(label);
  if (parsed?.shardSize !== undefined && !shardsFit(expected, source.size, parsed.shardSize)) {
    return `${label}:<${source.size} bytes>`;
  }
  return await measure(label, source, options);
}

/**
 * Whether a signed shard list can describe a file of `size` bytes: as many
 * shards as the size needs, the last ending at the size. Checked before any
 * shard is measured, so that a statement listing one tiny shard of a big
 * file cannot make the measure build millions of them.
 */
function shardsFit(expected: string | undefined, size: number, shardSize: number): boolean {
  const body = expected === undefined ? "" : expected.slice(expected.indexOf(":") + 1);
  const parts = body === "" ? 0 : body.split(";").length;
  return parts === Math.ceil(size / shardSize) &&
    (expected === undefined ? 0 : shardedEnd(expected)) === size;
}

/** The end of the last shard a signed value lists (0 for none). */
function shardedEnd(value: string): number {
  const body = value.slice(value.indexOf(":") + 1);
  if (body === "") return 0;
  const last = body.slice(body.lastIndexOf(";") + 1);
  const end = Number(last.slice(last.indexOf("-") + 1, last.indexOf("=")));
  return Number.isSafeInteger(end) ? end : -1;
}

/**
 * Measures a stream as it passes, for one label: the whole file, or its
 * shards as they complete. Memory is one hasher and one digest per shard.
 */
export class StreamMeasure {
  readonly #label: string;
  readonly #hashType: OmsHashType;
  readonly #shardSize: number | undefined;
  #hasher: Hasher | undefined;
  #limit = Infinity;
  #at = 0;
  #shardStart = 0;
  readonly #parts: string[] = [];

  private constructor(label: string, hashType: OmsHashType, shardSize: number | undefined) {
    this.#label = label;
    this.#hashType = hashType;
    this.#shardSize = shardSize;
  }

  /**
   * A measurer for `label` (`sha256`, `blake2b-sharded-8`, …). With the
   * signed value `expected`, shards past its end are not kept (the file is
   * then too long to match anyway).
   */
  static async create(label: string, expected?: string): Promise<StreamMeasure> {
    const parsed = parseLabel(label);
    if (parsed === undefined) throw new TypeError(`Cannot measure file: unknown digest ${label}`);
    const m = new StreamMeasure(label, parsed.hashType, parsed.shardSize);
    m.#hasher = await hasher(parsed.hashType);
    if (parsed.shardSize !== undefined) {
      const end = expected === undefined ? 0 : shardedEnd(expected);
      // A list that cannot describe a file of its last end: nothing fits.
      m.#limit = shardsFit(expected, end, parsed.shardSize) ? end : -1;
    }
    return m;
  }

  /** Takes the next bytes. */
  async update(chunk: Uint8Array): Promise<void> {
    if (this.#at + chunk.byteLength > this.#limit) {
      this.#at += chunk.byteLength;
      return;
    }
    let from = 0;
    while (from < chunk.byteLength) {
      const room = this.#shardSize === undefined
        ? chunk.byteLength - from
        : this.#shardStart + this.#shardSize - this.#at;
      const n = Math.min(room, chunk.byteLength - from);
      this.#hasher!.update(chunk.subarray(from, from + n));
      from += n;
      this.#at += n;
      if (this.#shardSize !== undefined && this.#at === this.#shardStart + this.#shardSize) {
        await this.#closeShard();
      }
    }
  }

  async #closeShard(): Promise<void> {
    this.#parts.push(`${this.#shardStart}-${this.#at}=${toHex(this.#hasher!.digest())}`);
    this.#shardStart = this.#at;
    this.#hasher = await hasher(this.#hashType);
  }

  /** The value {@linkcode measure} gives for the same bytes. */
  async digest(): Promise<string> {
    if (this.#at > this.#limit) return `${this.#label}:<${this.#at} bytes>`;
    if (this.#shardSize === undefined) return `${this.#label}:${toHex(this.#hasher!.digest())}`;
    if (this.#at > this.#shardStart) await this.#closeShard();
    return `${this.#label}:${this.#parts.join(";")}`;
  }
}

/** Worker lanes for measuring a file of `size` bytes (shards of a big file in parallel). */
export function workersFor(size: number): number {
  return size >= (384 << 20) && workersAllowed()
    ? Math.max(1, globalThis.navigator?.hardwareConcurrency ?? 1)
    : 0;
}
