// Measuring a file the way an OMS statement expects: the whole file with its
// hash (SHA-256, BLAKE2b-512, BLAKE3), or its shards ([0,N), [N,2N), … each
// hashed alone; SHA-256 shards of a local file are spread over workers, which
// is the point of shards). Browser-safe: byte sources only.
import { createBlake2b, createBlake3, createSha256, type Hasher, toHex } from "../hash/_digest.ts";
import { spanDigests } from "../hash/_leaves.ts";
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

/** Worker lanes for measuring a file of `size` bytes (shards of a big file in parallel). */
export function workersFor(size: number): number {
  return size >= (384 << 20) && typeof Worker !== "undefined"
    ? Math.max(1, globalThis.navigator?.hardwareConcurrency ?? 1)
    : 0;
}
