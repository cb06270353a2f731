// Generates a safetensors file of ~`mib` MiB: transformer-like layers.
export async function writeBenchModel(
  path: string,
  mib: number,
): Promise<void> {
  const tensors: [string, number][] = [];
  let total = 0;
  let layer = 0;
  const target = mib * 2 ** 20;
  tensors.push(["embed.weight", 32 << 20]);
  total += 32 << 20;
  while (total < target) {
    for (
      const [n, size] of [["q", 8], ["k", 8], ["v", 8], ["o", 8], ["up", 22], [
        "down",
        22,
      ]] as const
    ) {
      tensors.push([`layers.${layer}.${n}.weight`, size << 20]);
      tensors.push([`layers.${layer}.${n}.bias`, 4096]);
      total += (size << 20) + 4096;
    }
    layer++;
  }
  const header: Record<string, unknown> = {};
  let at = 0;
  for (const [name, bytes] of tensors) {
    header[name] = {
      dtype: "F32",
      shape: [bytes / 4],
      data_offsets: [at, at + bytes],
    };
    at += bytes;
  }
  const json = new TextEncoder().encode(JSON.stringify(header));
  const n = Math.ceil(json.length / 8) * 8;
  const f = await Deno.open(path, {
    write: true,
    create: true,
    truncate: true,
  });
  const head = new Uint8Array(8 + n).fill(0x20);
  new DataView(head.buffer).setBigUint64(0, BigInt(n), true);
  head.set(json, 8);
  await f.write(head);
  const block = new Uint8Array(8 << 20);
  for (let i = 0; i < block.length; i += 65536) {
    crypto.getRandomValues(block.subarray(i, i + 65536));
  }
  let left = at;
  while (left > 0) {
    const k = Math.min(left, block.length);
    let w = 0;
    while (w < k) w += await f.write(block.subarray(w, k));
    left -= k;
  }
  f.close();
}
