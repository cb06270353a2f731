// Which shard of a sharded checkpoint a tensor came from (browser-safe; the
// shards are read by _sharded_fs.ts).
import type { Tensor } from "./types.ts";

const shards = new WeakMap<Tensor, string>();

/** Records the shard (folder-relative path) a tensor came from. */
export function setShard(tensor: Tensor, shard: string): void {
  shards.set(tensor, shard);
}

/** The shard a tensor of a sharded model came from. */
export function shardOf(tensor: Tensor): string | undefined {
  return shards.get(tensor);
}
