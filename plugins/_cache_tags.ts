// Warm starts in browsers (opt-in: the web guard's `verifiedStore`): a weight
// file the guard verified and put in the Web Cache carries a tag, an HMAC of
// (cache key, SHA-256, size) under a key of this origin that never leaves
// IndexedDB (non-extractable). A later cache hit with a valid tag is decided
// on the tagged digest without hashing its bytes again (they are still read
// and their size checked); an untagged or badly tagged entry is hashed as
// before. What this trusts, and what not, is in the README ("Warm starts in
// browsers"): the hub, a proxy or transformers.js without the guard cannot
// make a valid tag (they do not hold the key); script running in this origin
// can (it can also replace the page's own code).

/** The response header the tag travels in. */
export const TAG_HEADER = "x-safemodels-verified";

const DOMAIN = "safemodels-verified-v1";
const STORE = "keys";
const KEY_ID = "cache-tag";

// The little of IndexedDB used here (Deno's types do not include it).
interface Req<T> {
  result: T;
  error: unknown;
  onsuccess: (() => void) | null;
  onerror: (() => void) | null;
}
interface Db {
  createObjectStore(name: string): unknown;
  transaction(store: string, mode: "readonly" | "readwrite"): {
    objectStore(
      name: string,
    ): { get(k: string): Req<unknown>; add(v: unknown, k: string): Req<unknown> };
  };
  close(): void;
}
type Idb = {
  open(name: string, version: number): Req<Db> & { onupgradeneeded: (() => void) | null };
};

function request<T>(r: Req<T>): Promise<T> {
  return new Promise((resolve, reject) => {
    r.onsuccess = () => resolve(r.result);
    r.onerror = () => reject(r.error);
  });
}

function base64url(bytes: Uint8Array): string {
  let s = "";
  for (const b of bytes) s += String.fromCharCode(b);
  return btoa(s).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

function fromBase64url(s: string): Uint8Array | undefined {
  try {
    const bin = atob(s.replace(/-/g, "+").replace(/_/g, "/"));
    return Uint8Array.from(bin, (c) => c.charCodeAt(0));
  } catch {
    return undefined;
  }
}

/** What a valid tag says: the digest and size the guard verified. */
export interface Tagged {
  digest: string;
  size: number;
}

/** The tagging key of this origin, and tags made and checked with it. */
export class CacheTags {
  readonly #key: CryptoKey;

  private constructor(key: CryptoKey) {
    this.#key = key;
  }

  /**
   * The key kept in the IndexedDB database `name` (made on first use;
   * another tab making it at the same time: the first one stored wins).
   * `undefined` where there is no IndexedDB or WebCrypto.
   */
  static open(name: string, timeoutMs = 5000): Promise<CacheTags | undefined> {
    // A database that never answers (blocked, a browser's private mode)
    // must not hold loads up: then no tags, and every load is hashed.
    let timer: ReturnType<typeof setTimeout> | undefined;
    const late = new Promise<undefined>((resolve) => {
      timer = setTimeout(() => {
        console.warn(
          `safemodels: not tagging cached weights: IndexedDB "${name}" did not open within ${timeoutMs} ms (every load is hashed)`,
        );
        resolve(undefined);
      }, timeoutMs);
    });
    return Promise.race([CacheTags.#open(name), late]).finally(() => clearTimeout(timer));
  }

  static async #open(name: string): Promise<CacheTags | undefined> {
    const idb = (globalThis as { indexedDB?: Idb }).indexedDB;
    if (idb === undefined || typeof crypto?.subtle === "undefined") return undefined;
    const opening = idb.open(name, 1);
    opening.onupgradeneeded = () => opening.result.createObjectStore(STORE);
    const db = await request(opening);
    try {
      const read = () => request(db.transaction(STORE, "readonly").objectStore(STORE).get(KEY_ID));
      let key = await read();
      if (!(key instanceof CryptoKey)) {
        const made = await crypto.subtle.generateKey(
          { name: "HMAC", hash: "SHA-256" },
          false,
          ["sign", "verify"],
        );
        // add(): never overwrites a key another tab stored first.
        await request(db.transaction(STORE, "readwrite").objectStore(STORE).add(made, KEY_ID))
          .catch(() => {});
        key = await read();
      }
      if (!(key instanceof CryptoKey) || key.algorithm.name !== "HMAC") return undefined;
      return new CacheTags(key);
    } finally {
      db.close();
    }
  }

  #message(url: string, digest: string, size: number): Uint8Array<ArrayBuffer> {
    return new TextEncoder().encode(`${DOMAIN}\n${url}\n${digest}\n${size}`);
  }

  /** The tag for a verified file stored under `url`. */
  async tag(url: string, digest: string, size: number): Promise<string> {
    const mac = await crypto.subtle.sign("HMAC", this.#key, this.#message(url, digest, size));
    return `v1 ${digest} ${size} ${base64url(new Uint8Array(mac))}`;
  }

  /** What a tag read from the entry stored under `url` vouches for, if it is valid. */
  async read(url: string, tag: string | null | undefined): Promise<Tagged | undefined> {
    const m = /^v1 (sha256:[0-9a-f]{64}) (0|[1-9][0-9]{0,15}) ([A-Za-z0-9_-]{43})$/.exec(tag ?? "");
    if (!m) return undefined;
    const size = Number(m[2]);
    const mac = fromBase64url(m[3]!);
    if (!Number.isSafeInteger(size) || mac?.byteLength !== 32) return undefined;
    const ok = await crypto.subtle.verify(
      "HMAC",
      this.#key,
      mac as Uint8Array<ArrayBuffer>,
      this.#message(url, m[1]!, size),
    ).catch(() => false);
    return ok ? { digest: m[1]!, size } : undefined;
  }
}
