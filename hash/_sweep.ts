// Tensors whose bytes lie verbatim in a source (a span: offset and length)
// are read in long sequential runs instead of one read per tensor: a model of
// 200,000 small tensors costs a few hundred block reads, not 200,000 reads and
// as many buffers. Used for the per-tensor SHA-256 leaves (in file order, on
// the calling thread or in a worker) and for the seed hashes (in name order).
import { BLOCK_BYTES, type ByteSource, recycle } from "./_source.ts";

/** Where a tensor's C-order bytes lie verbatim in a source. */
export interface Span {
  source: ByteSource;
  offset: number;
  length: number;
}

// A symbol-keyed property rather than a WeakMap: models have hundreds of
// thousands of tensors, and a property costs a fraction of a WeakMap entry.
// A reader's tensor class may define it as a getter instead.
export const SPAN: unique symbol = Symbol("safemodels.span");

/** Records that `tensor`'s bytes are exactly `length` bytes at `offset` of `source`. */
export function setSpan(tensor: object, source: ByteSource, offset: number, length: number): void {
  (tensor as { [SPAN]?: Span })[SPAN] = { source, offset, length };
}

/** The span recorded for `tensor`, if any. */
export function spanOf(tensor: object): Span | undefined {
  return (tensor as { [SPAN]?: Span })[SPAN];
}

/**
 * Bytes skipped between two spans of one run: a larger gap starts a new run
 * (so the bytes read never exceed the tensors' bytes by more than this per
 * run, and work stays bounded by the file size).
 */
export const MAX_GAP = 256 << 10;

/**
 * Hands the bytes of `items` (offset and length in `source`, each length > 0),
 * in the given order, to `onPiece` (the item's index in `items`, the bytes,
 * and whether it is the item's last piece). Consecutive items that lie in
 * ascending order with small gaps are read as one run of block reads (with
 * one read in flight ahead of the hashing); an item that goes back (an
 * overlap, or a tensor sharing bytes with another) starts a new run. The
 * bytes are valid only during the call (the block is then reused).
 */
export async function sweep(
  source: ByteSource,
  items: readonly { offset: number; length: number }[],
  onPiece: (item: number, bytes: Uint8Array, last: boolean) => void,
): Promise<void> {
  let i = 0;
  while (i < items.length) {
    // The run: items[i, j) in ascending order with gaps of at most MAX_GAP.
    const start = items[i]!.offset;
    let end = start + items[i]!.length;
    let j = i + 1;
    while (j < items.length) {
      const next = items[j]!;
      if (next.offset < end || next.offset - end > MAX_GAP) break;
      end = next.offset + next.length;
      j++;
    }
    let k = i;
    let pending: Promise<Uint8Array> | undefined;
    for (let at = start; at < end;) {
      const want = Math.min(BLOCK_BYTES, end - at);
      const block = await (pending ?? source.read(at, want));
      const blockEnd = at + want;
      pending = blockEnd < end
        ? source.read(blockEnd, Math.min(BLOCK_BYTES, end - blockEnd))
        : undefined;
      // A failed read-ahead surfaces when it is awaited.
      pending?.catch(() => {});
      try {
        while (k < j && items[k]!.offset < blockEnd) {
          const it = items[k]!;
          const itEnd = it.offset + it.length;
          const from = Math.max(at, it.offset);
          const to = Math.min(itEnd, blockEnd);
          onPiece(k, block.subarray(from - at, to - at), to === itEnd);
          if (to < itEnd) break;
          k++;
        }
      } finally {
        recycle(block);
      }
      at = blockEnd;
    }
    i = j;
  }
}
