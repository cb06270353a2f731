// Incremental hashers. SHA-256 prefers the runtime's native implementation
// (node:crypto in Deno, Node and Bun: SHA-NI, ~1.6 GB/s here) and falls back
// to hash-wasm in browsers. BLAKE2b, BLAKE3 and xxh64 come from hash-wasm.
// hash-wasm is imported on first use only, so hashing workers (SHA-256 on
// node:crypto) never load it.
const wasm = () => import("hash-wasm");

/** The minimal incremental-hash contract shared by all algorithms. */
export interface Hasher {
  update(data: Uint8Array): void;
  digest(): Uint8Array;
}

type NodeCrypto = {
  createHash(name: string): {
    update(d: Uint8Array): unknown;
    digest(): Uint8Array;
  };
};

let nodeCrypto: Promise<NodeCrypto | undefined> | undefined;

function loadNodeCrypto(): Promise<NodeCrypto | undefined> {
  nodeCrypto ??= import("node:crypto").then(
    (m) => m as unknown as NodeCrypto,
    () => undefined,
  );
  return nodeCrypto;
}

/** A new SHA-256 hasher (native when the runtime has `node:crypto`). */
export async function createSha256(): Promise<Hasher> {
  const nc = await loadNodeCrypto();
  if (nc) {
    const h = nc.createHash("sha256");
    return {
      update: (d) => void h.update(d),
      digest: () => new Uint8Array(h.digest()),
    };
  }
  return wrap(await (await wasm()).createSHA256());
}

/**
 * A factory of SHA-256 hashers that makes each one synchronously (for
 * hashing many small tensors: no promise per tensor).
 */
export async function sha256Factory(small = true): Promise<(size?: number) => Hasher> {
  const nc = await loadNodeCrypto();
  // hash-wasm: one instance, reset for each hasher (they are used one at a
  // time). Its setup costs less per hasher than node:crypto's, which streams
  // faster: small inputs (a size hint) go to hash-wasm, when `small` says
  // there will be some (loading it costs a few milliseconds).
  const w = nc && !small ? undefined : await (await wasm()).createSHA256();
  if (nc) {
    return (size) => {
      if (w !== undefined && size !== undefined && size <= SMALL_INPUT) return wrap(w);
      const h = nc.createHash("sha256");
      return {
        update: (d) => void h.update(d),
        digest: () => new Uint8Array(h.digest()),
      };
    };
  }
  return () => wrap(w!);
}

/** Inputs up to this size hash faster on hash-wasm (setup) than on node:crypto (throughput). */
export const SMALL_INPUT = 512;

let syncFactory: ((size?: number) => Hasher) | undefined;

/** Makes {@linkcode sha256Sync} usable (loads the implementation once). */
export async function sha256Ready(): Promise<void> {
  syncFactory ??= await sha256Factory();
}

/** SHA-256 of `data`, synchronously; call {@linkcode sha256Ready} once before. */
export function sha256Sync(data: Uint8Array): Uint8Array {
  if (!syncFactory) throw new Error("sha256Sync() before sha256Ready()");
  const h = syncFactory(data.byteLength);
  h.update(data);
  return h.digest();
}

/** A new BLAKE2b hasher with a digest of `bits` bits. */
export async function createBlake2b(bits = 512): Promise<Hasher> {
  return wrap(await (await wasm()).createBLAKE2b(bits));
}

/** A new BLAKE3 hasher (256-bit digest). */
export async function createBlake3(): Promise<Hasher> {
  return wrap(await (await wasm()).createBLAKE3());
}

/** A new xxh64 hasher (seed 0); the digest is the 8-byte big-endian value. */
export async function createXxh64(): Promise<Hasher> {
  return wrap(await (await wasm()).createXXHash64(0, 0));
}

function wrap(
  h: {
    init(): unknown;
    update(d: Uint8Array): unknown;
    digest(f: "binary"): Uint8Array;
  },
): Hasher {
  h.init();
  return {
    update: (d) => void h.update(d),
    digest: () => h.digest("binary"),
  };
}

/** Lower-case hex SHA-256 of `data` (a string is hashed as UTF-8). */
export async function sha256Hex(data: Uint8Array | string): Promise<string> {
  const h = await createSha256();
  h.update(typeof data === "string" ? new TextEncoder().encode(data) : data);
  return toHex(h.digest());
}

/** Lower-case hex of `bytes`. */
export function toHex(bytes: Uint8Array): string {
  const codes = new Uint16Array(2 * bytes.length);
  for (let i = 0; i < bytes.length; i++) {
    const b = bytes[i]!;
    codes[2 * i] = HEX_CODES[b >> 4]!;
    codes[2 * i + 1] = HEX_CODES[b & 15]!;
  }
  // In slices: fromCharCode takes its arguments on the stack.
  let s = "";
  for (let i = 0; i < codes.length; i += 8192) {
    s += String.fromCharCode.apply(null, codes.subarray(i, i + 8192) as unknown as number[]);
  }
  return s;
}

const HEX_CODES = Uint16Array.from("0123456789abcdef", (c) => c.charCodeAt(0));

function nibble(c: number): number {
  if (c >= 48 && c <= 57) return c - 48; // 0-9
  if (c >= 97 && c <= 102) return c - 87; // a-f
  if (c >= 65 && c <= 70) return c - 55; // A-F
  return -1;
}

/** The bytes of hex (either case); `undefined` when it is not hex of `bytes` bytes. */
export function fromHex(hex: string, bytes: number): Uint8Array | undefined {
  if (hex.length !== 2 * bytes) return undefined;
  const out = new Uint8Array(bytes);
  for (let i = 0; i < bytes; i++) {
    const hi = nibble(hex.charCodeAt(2 * i));
    const lo = nibble(hex.charCodeAt(2 * i + 1));
    if (hi < 0 || lo < 0) return undefined;
    out[i] = (hi << 4) | lo;
  }
  return out;
}

/** Compares strings by Unicode code point (Python's `sorted` order). */
export function compareCodePoints(a: string, b: string): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const x = a.charCodeAt(i);
    const y = b.charCodeAt(i);
    if (x === y) continue;
    // Surrogates (0xD800-0xDFFF) encode code points above 0xFFFF, which must
    // sort after every BMP character, including 0xE000-0xFFFF.
    const xs = x >= 0xd800 && x <= 0xdfff;
    const ys = y >= 0xd800 && y <= 0xdfff;
    if (xs !== ys) return xs ? 1 : -1;
    return x - y;
  }
  return a.length - b.length;
}
