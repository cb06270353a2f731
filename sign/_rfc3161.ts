// RFC 3161 timestamps of Sigstore bundles, verified with WebCrypto: the
// TimeStampResp's token is CMS SignedData over a TSTInfo whose message
// imprint is the digest of the timestamped bytes (the envelope's signature);
// the signer info's signed attributes carry the TSTInfo's digest and are
// signed by the timestamp authority's leaf certificate, which chains to its
// CA in the trusted root. Browser-safe.
import { children, readOid, readTlv, type Tlv, verifyWithSpki } from "./_spki.ts";
import type { Certificate } from "./_x509.ts";
import { findPath, issuedBy } from "./_verify_cert.ts";
import { sameBytes } from "./_verify_key.ts";

/** A timestamp authority of the trusted root: its chain (leaf first) and window. */
export interface TimestampAuthority {
  certs: Certificate[];
  start: Date;
  end: Date;
}

const SIGNED_DATA = "1.2.840.113549.1.7.2";
const TST_INFO = "1.2.840.113549.1.9.16.1.4";
const CONTENT_TYPE = "1.2.840.113549.1.9.3";
const MESSAGE_DIGEST = "1.2.840.113549.1.9.4";
const TIME_STAMPING = "1.3.6.1.5.5.7.3.8";

const HASHES: Record<string, "SHA-256" | "SHA-384" | "SHA-512"> = {
  "2.16.840.1.101.3.4.2.1": "SHA-256",
  "2.16.840.1.101.3.4.2.2": "SHA-384",
  "2.16.840.1.101.3.4.2.3": "SHA-512",
};
const ECDSA: Record<string, "SHA-256" | "SHA-384" | "SHA-512"> = {
  "1.2.840.10045.4.3.2": "SHA-256",
  "1.2.840.10045.4.3.3": "SHA-384",
  "1.2.840.10045.4.3.4": "SHA-512",
};

/** An OBJECT IDENTIFIER's dotted form (the shared DER reader's). */
const oid = (der: Uint8Array, t: Tlv | undefined) => readOid(der, t, "object identifier");

function kids(der: Uint8Array, t: Tlv | undefined, what: string): Tlv[] {
  if (t === undefined) throw new Error(`${what} is missing`);
  return children(der, t);
}

const value = (der: Uint8Array, t: Tlv) => der.subarray(t.value, t.end);

async function digest(hash: string, data: Uint8Array): Promise<Uint8Array> {
  return new Uint8Array(await crypto.subtle.digest(hash, data as BufferSource));
}

function generalizedTime(text: string): Date | undefined {
  const m = /^(\d{4})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})(\.\d+)?Z$/.exec(text);
  if (!m) return undefined;
  return new Date(
    Date.UTC(
      +m[1]!,
      +m[2]! - 1,
      +m[3]!,
      +m[4]!,
      +m[5]!,
      +m[6]!,
      m[7] ? Math.floor(Number(m[7]) * 1000) : 0,
    ),
  );
}

/**
 * Verifies one timestamp (the DER of a TimeStampResp) over `data` against
 * the trusted timestamp authorities, and returns the time it vouches for.
 * Throws an Error whose message says what did not hold.
 */
export async function verifyTimestamp(
  der: Uint8Array,
  data: Uint8Array,
  authorities: TimestampAuthority[],
): Promise<Date> {
  const top = readTlv(der, 0, der.length);
  if (top.end !== der.length) throw new Error("bytes follow the timestamp");
  // The whole token must be well-formed DER, not just the parts read here.
  wellFormed(der, top, 0);
  const parts = kids(der, top, "TimeStampResp");
  // A TimeStampResp (status, token) or a bare token (ContentInfo).
  let token: Tlv[] = parts;
  if (parts[0]?.tag === 0x30 && parts[1]?.tag === 0x30) {
    // PKIStatus granted (0) or grantedWithMods (1).
    const status = kids(der, parts[0], "status")[0];
    const code = status?.tag === 0x02 ? value(der, status) : undefined;
    if (code === undefined || code.length !== 1 || code[0]! > 1) {
      throw new Error("the timestamp's status is not granted");
    }
    token = kids(der, parts[1], "timeStampToken");
  }
  if (oid(der, token[0]) !== SIGNED_DATA) throw new Error("the token is not CMS SignedData");
  const explicit = token[1];
  if (explicit?.tag !== 0xa0) throw new Error("the token has no content");
  const sd = kids(der, kids(der, explicit, "content")[0], "SignedData");
  const encap = kids(der, sd[2], "encapContentInfo");
  if (oid(der, encap[0]) !== TST_INFO) throw new Error("the token does not hold a TSTInfo");
  const octets = kids(der, encap[1], "eContent")[0];
  if (octets?.tag !== 0x04) throw new Error("the TSTInfo is not an OCTET STRING");
  const tstDer = value(der, octets);
  const signerInfos = sd[sd.length - 1]!;
  const infos = kids(der, signerInfos, "signerInfos");
  if (infos.length !== 1) throw new Error(`the token has ${infos.length} signer infos, expected 1`);
  const si = kids(der, infos[0], "SignerInfo");
  // sid: IssuerAndSerialNumber.
  const sid = kids(der, si[1], "sid");
  const sidIssuer = der.subarray(sid[0]!.start, sid[0]!.end);
  const sidSerial = value(der, sid[1]!);
  const digestAlg = HASHES[oid(der, kids(der, si[2], "digestAlgorithm")[0])];
  if (digestAlg === undefined) throw new Error("the signer's digest algorithm is not SHA-2");
  const attrs = si[3];
  if (attrs?.tag !== 0xa0) throw new Error("the signer info has no signed attributes");
  let contentType: string | undefined;
  let messageDigest: Uint8Array | undefined;
  for (const a of kids(der, attrs, "signedAttrs")) {
    const [type, values] = kids(der, a, "attribute");
    const id = oid(der, type);
    const first = kids(der, values, "attribute values")[0]!;
    if (id === CONTENT_TYPE) contentType = oid(der, first);
    if (id === MESSAGE_DIGEST) messageDigest = value(der, first);
  }
  if (contentType !== TST_INFO) throw new Error("the signed content type is not TSTInfo");
  if (messageDigest === undefined || !sameBytes(messageDigest, await digest(digestAlg, tstDer))) {
    throw new Error("the signed attributes do not hold the TSTInfo's digest");
  }
  const sigAlg = oid(der, kids(der, si[4], "signatureAlgorithm")[0]);
  const sig = value(der, si[5]!);
  // TSTInfo: version, policy, messageImprint, serial, genTime, …
  const tst = children(tstDer, readTlv(tstDer, 0, tstDer.length));
  const imprint = kids(tstDer, tst[2], "messageImprint");
  const imprintAlg = HASHES[oid(tstDer, kids(tstDer, imprint[0], "hashAlgorithm")[0])];
  if (imprintAlg === undefined) throw new Error("the message imprint's hash is not SHA-2");
  if (!sameBytes(value(tstDer, imprint[1]!), await digest(imprintAlg, data))) {
    throw new Error("the timestamp is not over this signature (message imprint differs)");
  }
  const gen = tst[4];
  const time = gen?.tag === 0x18
    ? generalizedTime(new TextDecoder().decode(value(tstDer, gen)))
    : undefined;
  if (time === undefined) throw new Error("the timestamp's genTime cannot be read");
  // The signed attributes, as a SET, signed by the authority's leaf.
  const signed = der.slice(attrs.start, attrs.end);
  signed[0] = 0x31;
  const problems: string[] = [];
  for (const ta of authorities) {
    if (time < ta.start || time > ta.end) continue;
    const leaf = ta.certs[0];
    if (leaf === undefined || !sameBytes(leaf.issuer, sidIssuer)) continue;
    if (!sameBytes(stripZeros(leaf.serial), stripZeros(sidSerial))) continue;
    if (!(leaf.extKeyUsage ?? []).includes(TIME_STAMPING)) {
      problems.push(`${leaf.subjectName} is not a timestamping certificate`);
      continue;
    }
    // The chain must end at a validly self-signed certificate, as for Fulcio.
    const anchor = ta.certs[ta.certs.length - 1]!;
    if (!sameBytes(anchor.subject, anchor.issuer) || !await issuedBy(anchor, anchor)) {
      problems.push(
        `the authority's chain ends at ${anchor.subjectName}, not a validly self-signed certificate`,
      );
      continue;
    }
    const path = await findPath(
      leaf,
      ta.certs.slice(1, -1),
      ta.certs.length > 1 ? ta.certs.slice(-1) : [leaf],
      time,
      "the timestamp's time",
      () => undefined,
    );
    if ("problem" in path) {
      problems.push(path.problem);
      continue;
    }
    const scheme = ECDSA[sigAlg] !== undefined
      ? { kind: "ecdsa" as const, hash: ECDSA[sigAlg]! }
      : sigAlg === "1.2.840.10045.2.1"
      ? { kind: "ecdsa" as const, hash: digestAlg }
      : { kind: "rsa-pkcs1" as const, hash: digestAlg };
    if (await verifyWithSpki(leaf.spki, scheme, sig, signed)) return time;
    problems.push(`the signature by ${leaf.subjectName} does not verify`);
  }
  throw new Error(
    problems.length
      ? problems.join("; ")
      : "no timestamp authority of the trusted root signed it at that time",
  );
}

/** Walks every constructed element (depth-bounded), so malformed DER anywhere is refused. */
function wellFormed(der: Uint8Array, t: Tlv, depth: number): void {
  if (depth > 32) throw new Error("the timestamp nests too deep");
  if ((t.tag & 0x20) === 0) return;
  for (const c of children(der, t)) wellFormed(der, c, depth + 1);
}

function stripZeros(b: Uint8Array): Uint8Array {
  let i = 0;
  while (i < b.length - 1 && b[i] === 0) i++;
  return b.subarray(i);
}
