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
  let s = "";
  for (const b of bytes) s += b.toString(16).padStart(2, "0");
  return s;
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
