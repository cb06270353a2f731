// deno-lint-ignore-file no-explicit-any
// A tiny self-contained Sigstore for the keyless attack tests: our own CA, CT
// log, Rekor and TSA keys; hand-written DER; bundles built field by field so
// each check can be attacked. Both keyless verifiers are driven on the result.
// (Written for an attacker's review of the WebCrypto verifier; test-only.)
import { Buffer } from "node:buffer";
import crypto from "node:crypto";
import { verifyBundleWith } from "../../sign/_verify_cert.ts";
import { verifyKeylessWeb } from "../../sign/_keyless.ts";
import { verifyBundle as verifyJs } from "../../sign/_verify_bundle.ts";

export type Bytes = Uint8Array;
export const cat = (...p: Bytes[]) => new Uint8Array(Buffer.concat(p.map((x) => Buffer.from(x))));
function len(n: number): Bytes {
  if (n < 0x80) return Uint8Array.of(n);
  const o: number[] = [];
  for (let v = n; v > 0; v = Math.floor(v / 256)) o.unshift(v % 256);
  return Uint8Array.of(0x80 | o.length, ...o);
}
export const tlv = (tag: number, ...v: Bytes[]) => {
  const b = cat(...v);
  return cat(Uint8Array.of(tag), len(b.length), b);
};
export const seq = (...v: Bytes[]) => tlv(0x30, ...v);
export const set = (...v: Bytes[]) => tlv(0x31, ...v);
export const octets = (b: Bytes) => tlv(0x04, b);
export const int = (n: number | Bytes) => {
  if (typeof n !== "number") return tlv(0x02, n);
  const o: number[] = [];
  let v = n;
  do {
    o.unshift(v & 0xff);
    v = Math.floor(v / 256);
  } while (v > 0);
  if (o[0]! & 0x80) o.unshift(0);
  return tlv(0x02, Uint8Array.from(o));
};
export function oid(s: string): Bytes {
  const a = s.split(".").map(Number);
  const out = [40 * a[0]! + a[1]!];
  for (const x of a.slice(2)) {
    const b: number[] = [];
    let v = x;
    b.unshift(v & 0x7f);
    v = Math.floor(v / 128);
    while (v > 0) {
      b.unshift(0x80 | (v & 0x7f));
      v = Math.floor(v / 128);
    }
    out.push(...b);
  }
  return tlv(0x06, Uint8Array.from(out));
}
export const utf8 = (s: string) => tlv(0x0c, new TextEncoder().encode(s));
export const bool = (b: boolean) => tlv(0x01, Uint8Array.of(b ? 0xff : 0));
export const bits = (b: Bytes, unused = 0) => tlv(0x03, Uint8Array.of(unused), b);
function time(d: Date): Bytes {
  const p = (n: number) => String(n).padStart(2, "0");
  const s = `${p(d.getUTCFullYear() % 100)}${p(d.getUTCMonth() + 1)}${p(d.getUTCDate())}${
    p(d.getUTCHours())
  }${p(d.getUTCMinutes())}${p(d.getUTCSeconds())}Z`;
  return tlv(0x17, new TextEncoder().encode(s));
}
export const name = (cn: string) => seq(set(seq(oid("2.5.4.3"), utf8(cn))));
export const ext = (o: string, value: Bytes, critical = false) =>
  seq(oid(o), ...(critical ? [bool(true)] : []), octets(value));
const ECDSA_SHA256 = seq(oid("1.2.840.10045.4.3.2"));

export interface Key {
  priv: crypto.KeyObject;
  spki: Bytes;
  id: Bytes; // sha256(spki)
}
export function newKey(): Key {
  const { privateKey, publicKey } = crypto.generateKeyPairSync("ec", { namedCurve: "prime256v1" });
  const spki = new Uint8Array(publicKey.export({ type: "spki", format: "der" }));
  return { priv: privateKey, spki, id: sha256(spki) };
}
export const sha256 = (b: Bytes | string) =>
  new Uint8Array(crypto.createHash("sha256").update(b).digest());
export const sign = (k: Key, data: Bytes) => new Uint8Array(crypto.sign("sha256", data, k.priv));
export const b64 = (b: Bytes) => Buffer.from(b).toString("base64");
export const hex = (b: Bytes) => Buffer.from(b).toString("hex");

export interface CertOpts {
  issuer: string;
  subject: string;
  spki: Bytes;
  notBefore: Date;
  notAfter: Date;
  exts: Bytes[];
  serial?: number;
}
export function tbsOf(o: CertOpts): Bytes {
  return seq(
    tlv(0xa0, int(2)),
    int(o.serial ?? 1),
    ECDSA_SHA256,
    name(o.issuer),
    seq(time(o.notBefore), time(o.notAfter)),
    name(o.subject),
    o.spki,
    tlv(0xa3, seq(...o.exts)),
  );
}
export const certOf = (tbs: Bytes, sig: Bytes) => seq(tbs, ECDSA_SHA256, bits(sig));

export const SCT_OID = "1.3.6.1.4.1.11129.2.4.2";
export interface Sct {
  logId: Bytes;
  ts: bigint;
  sig: Bytes;
  ext?: Bytes;
  hashAlg?: number;
  sigAlg?: number;
}
export function sctBytes(s: Sct): Bytes {
  const ts = new Uint8Array(8);
  new DataView(ts.buffer).setBigUint64(0, s.ts);
  const e = s.ext ?? new Uint8Array();
  return cat(
    Uint8Array.of(0),
    s.logId,
    ts,
    Uint8Array.of(e.length >> 8, e.length & 0xff),
    e,
    Uint8Array.of(s.hashAlg ?? 4, s.sigAlg ?? 3, s.sig.length >> 8, s.sig.length & 0xff),
    s.sig,
  );
}
export function sctList(scts: Bytes[]): Bytes {
  const body = cat(...scts.map((s) => cat(Uint8Array.of(s.length >> 8, s.length & 0xff), s)));
  return octets(cat(Uint8Array.of(body.length >> 8, body.length & 0xff), body));
}
export function signSct(
  ct: Key,
  issuerSpki: Bytes,
  precertTbs: Bytes,
  ts: bigint,
  ext = new Uint8Array(),
) {
  const t = new Uint8Array(8);
  new DataView(t.buffer).setBigUint64(0, ts);
  const data = cat(
    Uint8Array.of(0, 0),
    t,
    Uint8Array.of(0, 1),
    sha256(issuerSpki),
    Uint8Array.of(
      precertTbs.length >> 16,
      (precertTbs.length >> 8) & 0xff,
      precertTbs.length & 0xff,
    ),
    precertTbs,
    Uint8Array.of(ext.length >> 8, ext.length & 0xff),
    ext,
  );
  return sign(ct, data);
}

export interface World {
  ca: Key;
  ct: Key;
  rekor: Key;
  rootCert: Bytes;
  trustedRoot: any;
  start: Date;
}
export function world(opts: { caEnd?: Date } = {}): World {
  const ca = newKey(), ct = newKey(), rekor = newKey();
  const start = new Date(Date.now() - 3600_000);
  const tbs = tbsOf({
    issuer: "Root",
    subject: "Root",
    spki: ca.spki,
    notBefore: start,
    notAfter: new Date(Date.now() + 86400_000 * 365),
    exts: [
      ext("2.5.29.19", seq(bool(true)), true),
      ext("2.5.29.15", bits(Uint8Array.of(0x06), 1), true),
    ],
  });
  const rootCert = certOf(tbs, sign(ca, tbs));
  const validFor = { start: start.toISOString() };
  const trustedRoot = {
    mediaType: "application/vnd.dev.sigstore.trustedroot+json;version=0.1",
    tlogs: [{
      baseUrl: "https://rekor.example",
      hashAlgorithm: "SHA2_256",
      publicKey: { rawBytes: b64(rekor.spki), keyDetails: "PKIX_ECDSA_P256_SHA_256", validFor },
      logId: { keyId: b64(rekor.id) },
    }],
    certificateAuthorities: [{
      subject: { commonName: "Root" },
      uri: "https://fulcio.example",
      certChain: { certificates: [{ rawBytes: b64(rootCert) }] },
      validFor: opts.caEnd ? { ...validFor, end: opts.caEnd.toISOString() } : validFor,
    }],
    ctlogs: [{
      baseUrl: "https://ct.example",
      hashAlgorithm: "SHA2_256",
      publicKey: { rawBytes: b64(ct.spki), keyDetails: "PKIX_ECDSA_P256_SHA_256", validFor },
      logId: { keyId: b64(ct.id) },
    }],
    timestampAuthorities: [],
  };
  return { ca, ct, rekor, rootCert, trustedRoot, start };
}

export interface LeafOpts {
  email?: string;
  issuer?: string;
  notBefore?: Date;
  notAfter?: Date;
  extraExts?: Bytes[];
  /** Build the SCT list from the precert TBS; default: one good SCT. */
  scts?: (precert: Bytes) => Bytes[];
  mutateSig?: (sig: Bytes) => Bytes;
}
export function leafCert(w: World, key: Key, o: LeafOpts = {}): Bytes {
  const notBefore = o.notBefore ?? new Date(Date.now() - 300_000);
  const notAfter = o.notAfter ?? new Date(notBefore.getTime() + 600_000);
  const san = seq(tlv(0x81, new TextEncoder().encode(o.email ?? "alice@example.com")));
  const base = [
    ext("2.5.29.15", bits(Uint8Array.of(0x80), 7), true),
    ext("2.5.29.37", seq(oid("1.3.6.1.5.5.7.3.3"))),
    ext("2.5.29.17", san, true),
    ext("1.3.6.1.4.1.57264.1.1", new TextEncoder().encode(o.issuer ?? "https://issuer.example")),
    ext("1.3.6.1.4.1.57264.1.8", utf8(o.issuer ?? "https://issuer.example")),
    ...(o.extraExts ?? []),
  ];
  const common = { issuer: "Root", subject: "", spki: key.spki, notBefore, notAfter };
  const precert = tbsOf({ ...common, exts: base });
  const scts = (o.scts ?? ((p) => [
    sctBytes({
      logId: w.ct.id,
      ts: BigInt(notBefore.getTime()),
      sig: signSct(w.ct, w.ca.spki, p, BigInt(notBefore.getTime())),
    }),
  ]))(precert);
  const tbs = tbsOf({ ...common, exts: [...base, ext(SCT_OID, sctList(scts))] });
  let sig: Bytes = sign(w.ca, tbs);
  if (o.mutateSig) sig = o.mutateSig(sig);
  return certOf(tbs, sig);
}

export function pae(type: string, payload: Bytes): Bytes {
  const t = new TextEncoder().encode(type);
  return cat(
    new TextEncoder().encode(`DSSEv1 ${t.length} `),
    t,
    new TextEncoder().encode(` ${payload.length} `),
    payload,
  );
}

export interface EntryOpts {
  integratedTime?: number;
  logIndex?: number;
  rekor?: Key;
  bodyOverride?: any;
  proof?: "none" | "good";
  checkpointSigner?: { key: Key; name: string };
  checkpointExtraSigLines?: string[];
  mutateSet?: (s: Bytes) => Bytes;
}
export function tlogEntry(
  w: World,
  envSig: Bytes,
  payload: Bytes,
  leafDer: Bytes,
  o: EntryOpts = {},
) {
  const rekor = o.rekor ?? w.rekor;
  const body = o.bodyOverride ?? {
    apiVersion: "0.0.1",
    kind: "dsse",
    spec: {
      envelopeHash: { algorithm: "sha256", value: hex(sha256("x")) },
      payloadHash: { algorithm: "sha256", value: hex(sha256(payload)) },
      signatures: [{
        signature: b64(envSig),
        verifier: b64(
          new TextEncoder().encode(
            "-----BEGIN CERTIFICATE-----\n" + b64(leafDer) + "\n-----END CERTIFICATE-----\n",
          ),
        ),
      }],
    },
  };
  const bodyText = b64(new TextEncoder().encode(JSON.stringify(body)));
  const integratedTime = o.integratedTime ?? Math.floor(Date.now() / 1000) - 200;
  const logIndex = o.logIndex ?? 0;
  const setData = `{"body":${
    JSON.stringify(bodyText)
  },"integratedTime":${integratedTime},"logID":"${hex(rekor.id)}","logIndex":${logIndex}}`;
  let set: Bytes = sign(rekor, new TextEncoder().encode(setData));
  if (o.mutateSet) set = o.mutateSet(set);
  const entry: any = {
    logIndex: String(logIndex),
    logId: { keyId: b64(rekor.id) },
    kindVersion: { kind: "dsse", version: "0.0.1" },
    integratedTime: String(integratedTime),
    inclusionPromise: { signedEntryTimestamp: b64(set) },
    canonicalizedBody: bodyText,
  };
  if ((o.proof ?? "good") === "good") {
    const leafHash = sha256(cat(Uint8Array.of(0), Buffer.from(bodyText, "base64")));
    const note = `rekor.example - 1\n1\n${b64(leafHash)}\n`;
    const cs = o.checkpointSigner ?? { key: rekor, name: "rekor.example" };
    const sig = cat(cs.key.id.subarray(0, 4), sign(cs.key, new TextEncoder().encode(note)));
    const lines = [`\u2014 ${cs.name} ${b64(sig)}`, ...(o.checkpointExtraSigLines ?? [])];
    entry.inclusionProof = {
      logIndex: "0",
      rootHash: b64(leafHash),
      treeSize: "1",
      hashes: [],
      checkpoint: { envelope: `${note}\n${lines.join("\n")}\n` },
    };
  }
  return entry;
}

export interface BundleOpts extends LeafOpts {
  mediaType?: string;
  entries?: (ctx: { envSig: Bytes; payload: Bytes; leaf: Bytes }) => any[];
  entry?: EntryOpts;
  tsa?: any;
}
export function makeBundle(w: World, o: BundleOpts = {}) {
  const key = newKey();
  const leaf = leafCert(w, key, o);
  const payload = new TextEncoder().encode(
    JSON.stringify({ _type: "https://in-toto.io/Statement/v1", subject: [] }),
  );
  const type = "application/vnd.in-toto+json";
  const envSig = sign(key, pae(type, payload));
  const entries = o.entries
    ? o.entries({ envSig, payload, leaf })
    : [tlogEntry(w, envSig, payload, leaf, o.entry)];
  const vm: any = { certificate: { rawBytes: b64(leaf) }, tlogEntries: entries };
  if (o.tsa) vm.timestampVerificationData = o.tsa;
  return {
    mediaType: o.mediaType ?? "application/vnd.dev.sigstore.bundle.v0.3+json",
    verificationMaterial: vm,
    dsseEnvelope: { payload: b64(payload), payloadType: type, signatures: [{ sig: b64(envSig) }] },
  };
}

export async function both(bundle: unknown, trustedRoot: unknown) {
  const r = async (f: () => Promise<any>) => {
    try {
      const v = await f();
      return `ACCEPT (${v.signer.identities} ${v.signer.issuer} ${v.signer.signedAt?.toISOString()})`;
    } catch (e) {
      return `REFUSE ${(e as Error).constructor.name}: ${(e as Error).message.slice(0, 220)}`;
    }
  };
  const web = await r(() =>
    verifyBundleWith(verifyKeylessWeb, structuredClone(bundle), { trustedRoot })
  );
  const js = await r(() => verifyJs(structuredClone(bundle), { trustedRoot }));
  return { web, js };
}

/** Verdicts of both verifiers, collected by label. */
export const results: { label: string; web: string; js: string }[] = [];

export async function report(label: string, bundle: unknown, root: unknown) {
  const { web, js } = await both(bundle, root);
  results.push({ label, web, js });
}
