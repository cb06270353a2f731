// Shared test helpers: the reference fixtures and a safetensors builder.
import { createHash } from "node:crypto";

/** `../shared/fixtures/` beside the project root. */
export const FIXTURES = new URL("../../shared/fixtures/", import.meta.url);

/** Path of a fixture file. */
export function fixture(rel: string): string {
  return decodeURIComponent(new URL(rel, FIXTURES).pathname);
}

/** Parsed `expected.json` of a fixture folder. */
export function expected(folder: string): Record<string, unknown> {
  return JSON.parse(Deno.readTextFileSync(fixture(`${folder}/expected.json`)));
}

/** Hex SHA-256 of bytes. */
export function sha256hex(bytes: Uint8Array): string {
  return createHash("sha256").update(bytes).digest("hex");
}

/** Reads every chunk of an async iterable into one array. */
export async function collect(
  chunks: AsyncIterable<Uint8Array>,
): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  for await (const c of chunks) parts.push(c.slice());
  const out = new Uint8Array(parts.reduce((n, p) => n + p.byteLength, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.byteLength;
  }
  return out;
}

/** A tensor for {@linkcode buildSafetensors}. */
export interface TestTensor {
  dtype: string;
  shape: number[];
  data: Uint8Array;
}

/** Builds a safetensors file (tensors in the given order, header padded to 8). */
export function buildSafetensors(
  tensors: Record<string, TestTensor>,
  metadata?: Record<string, string>,
): Uint8Array {
  const header: Record<string, unknown> = {};
  if (metadata) header.__metadata__ = metadata;
  let at = 0;
  for (const [name, t] of Object.entries(tensors)) {
    header[name] = {
      dtype: t.dtype,
      shape: t.shape,
      data_offsets: [at, at + t.data.byteLength],
    };
    at += t.data.byteLength;
  }
  const json = new TextEncoder().encode(JSON.stringify(header));
  const n = Math.ceil(json.byteLength / 8) * 8;
  const out = new Uint8Array(8 + n + at).fill(0x20, 8, 8 + n);
  new DataView(out.buffer).setBigUint64(0, BigInt(n), true);
  out.set(json, 8);
  let p = 8 + n;
  for (const t of Object.values(tensors)) {
    out.set(t.data, p);
    p += t.data.byteLength;
  }
  return out;
}

/** A small seeded PRNG (mulberry32) for reproducible fuzzing. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Raw DEFLATE of `bytes` (as zip entries hold it). */
export async function deflateRaw(bytes: Uint8Array): Promise<Uint8Array> {
  const stream = new Blob([new Uint8Array(bytes)]).stream().pipeThrough(
    new CompressionStream("deflate-raw"),
  );
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

/** Concatenates byte arrays. */
export function concat(parts: Uint8Array[]): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** Copies a fixture into `dir` (writable) and returns the copy's path. */
export async function copyTo(
  dir: string,
  src: string,
  name = "model.safetensors",
): Promise<string> {
  const dest = `${dir}/${name}`;
  await Deno.writeFile(dest, await Deno.readFile(src));
  await Deno.chmod(dest, 0o644);
  return dest;
}

/** The names in a folder, sorted. */
export async function listDir(dir: string): Promise<string[]> {
  const names: string[] = [];
  for await (const e of Deno.readDir(dir)) names.push(e.name);
  return names.sort();
}

/**
 * Writes a sparse safetensors file of U8 tensors of the given sizes (zeros,
 * no disk used for them): big inputs for progress, workers and interrupts.
 */
export async function writeSparseSafetensors(
  path: string,
  sizes: Record<string, number>,
): Promise<void> {
  const entries: Record<string, unknown> = {};
  let at = 0;
  for (const [name, n] of Object.entries(sizes)) {
    entries[name] = { dtype: "U8", shape: [n], data_offsets: [at, at + n] };
    at += n;
  }
  const json = JSON.stringify(entries);
  const header = new TextEncoder().encode(json.padEnd(Math.ceil(json.length / 8) * 8, " "));
  const head = new Uint8Array(8 + header.length);
  new DataView(head.buffer).setBigUint64(0, BigInt(header.length), true);
  head.set(header, 8);
  const f = await Deno.open(path, { write: true, create: true });
  try {
    await f.write(head);
    await f.truncate(head.length + at);
  } finally {
    f.close();
  }
}
