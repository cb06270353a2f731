// Key-signed Sigstore bundles, with WebCrypto only (no node: modules, no
// ASN.1 library): reading a bundle, the DSSE envelope and its signature
// check, and key mode. _verify_cert.ts adds certificate chains and the
// dispatch; _verify_bundle.ts adds keyless Sigstore (node:crypto).
import { InvalidSignature, type InvalidSignatureCode, signatureError } from "./errors.ts";
import type { TrustMaterial, VerifiedSigner } from "./types.ts";
import { decodeBase64, dssePae } from "./_dsse.ts";
import { sha256Hex } from "../hash/_digest.ts";
import { toPem } from "./_pem_text.ts";
import {
  curveHash,
  pemBlocks,
  type SignatureScheme,
  spkiKeyType,
  verifyWithSpki,
} from "./_spki.ts";

/** What a verified bundle yields: the signed payload and who signed it. */
export interface VerifiedBundle {
  /** The DSSE payload, not interpreted here (an in-toto statement for OMS). */
  payload: Uint8Array;
  /** The DSSE payload type, e.g. `application/vnd.in-toto+json`. */
  payloadType: string;
  /** Who signed, as established by the verification. */
  signer: VerifiedSigner;
}

export interface Envelope {
  payload: Uint8Array;
  payloadType: string;
  signature: Uint8Array;
  pae: Uint8Array;
}

export type Fail = (code: InvalidSignatureCode, message: string, cause?: unknown) => never;

const MEDIA_TYPE_PREFIX = "application/vnd.dev.sigstore.bundle";

export function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

export function describe(value: unknown): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return "an array";
  return typeof value === "object" ? "an object" : `a ${typeof value}`;
}

export function errorText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

function readEnvelope(value: unknown, bad: (m: string) => never): Envelope {
  if (!isRecord(value)) return bad(`expected dsseEnvelope object, found ${describe(value)}`);
  const { payload, payloadType, signatures } = value;
  if (typeof payloadType !== "string") {
    return bad(`expected dsseEnvelope.payloadType string, found ${describe(payloadType)}`);
  }
  const body = typeof payload === "string" ? decodeBase64(payload) : undefined;
  if (body === undefined) return bad("expected dsseEnvelope.payload in base64");
  if (!Array.isArray(signatures) || signatures.length !== 1) {
    return bad(
      `expected exactly 1 DSSE signature, found ${
        Array.isArray(signatures) ? signatures.length : describe(signatures)
      }`,
    );
  }
  const s = signatures[0];
  const sig = isRecord(s) && typeof s.sig === "string" ? decodeBase64(s.sig) : undefined;
  if (sig === undefined || sig.length === 0) {
    return bad("expected dsseEnvelope.signatures[0].sig in base64");
  }
  return { payload: body, payloadType, signature: sig, pae: dssePae(payloadType, body) };
}

/** What every bundle has, read and checked; `kind` says how it was signed. */
export function readBundle(bundle: unknown, file?: string): {
  record: Record<string, unknown>;
  mediaType: string;
  vm: Record<string, unknown>;
  envelope: Envelope;
  kind: "publicKey" | "x509CertificateChain" | "certificate";
  hasTlog: boolean;
  fail: Fail;
  bad: (message: string, cause?: unknown) => never;
} {
  const fail: Fail = (code, message, cause) => {
    throw signatureError(code, message, file === undefined ? { cause } : { file, cause });
  };
  const bad = (message: string, cause?: unknown): never =>
    fail("bad-bundle", `Cannot read signature bundle: ${message}`, cause);

  if (!isRecord(bundle)) return bad(`expected a JSON object, found ${describe(bundle)}`);
  const { mediaType, verificationMaterial: vm } = bundle;
  if (typeof mediaType !== "string" || !mediaType.startsWith(MEDIA_TYPE_PREFIX)) {
    return bad(
      `expected mediaType ${MEDIA_TYPE_PREFIX}.*, found ${
        typeof mediaType === "string" ? JSON.stringify(mediaType) : describe(mediaType)
      }`,
    );
  }
  if (!isRecord(vm)) return bad(`expected verificationMaterial object, found ${describe(vm)}`);
  const envelope = readEnvelope(bundle.dsseEnvelope, bad);

  const kinds = ["publicKey", "x509CertificateChain", "certificate"].filter((k) =>
    vm[k] !== undefined && vm[k] !== null
  );
  if (kinds.length !== 1) {
    return bad(
      `expected exactly one of publicKey, x509CertificateChain or certificate in verificationMaterial, found ${
        kinds.length === 0 ? "none" : kinds.join(" and ")
      }`,
    );
  }
  const tlogEntries = vm.tlogEntries ?? [];
  if (!Array.isArray(tlogEntries) || !tlogEntries.every(isRecord)) {
    return bad("expected verificationMaterial.tlogEntries to be an array of objects");
  }
  const tsa = vm.timestampVerificationData;
  if (tsa !== undefined && tsa !== null && !isRecord(tsa)) {
    return bad(`expected timestampVerificationData object, found ${describe(tsa)}`);
  }
  const hasTlog = tlogEntries.length > 0;
  const kind = kinds[0] as "publicKey" | "x509CertificateChain" | "certificate";
  return { record: bundle, mediaType, vm, envelope, kind, hasTlog, fail, bad };
}

/** The scheme a DSSE signature by this key uses (the curve fixes the ECDSA hash). */
export function keyScheme(spki: Uint8Array, keyDetails?: unknown): SignatureScheme {
  const type = spkiKeyType(spki);
  switch (type.kind) {
    case "ec":
      return { kind: "ecdsa", hash: curveHash(type.curve) };
    case "ed25519":
      return { kind: "ed25519" };
    case "rsa":
      return typeof keyDetails === "string" && keyDetails.includes("PSS")
        ? { kind: "rsa-pss", hash: "SHA-256" }
        : { kind: "rsa-pkcs1", hash: "SHA-256" };
  }
}

/**
 * Python's `repr()` of a bytes object, as `model_signing` v0.2 put it into
 * the text it signed: `b'…'` (double quotes when the bytes hold a single
 * quote and no double quote), `\\`, `\t`, `\n`, `\r`, the quote, and `\xhh`
 * for every other byte outside printable ASCII.
 */
export function pyBytesRepr(bytes: Uint8Array): string {
  const quote = bytes.includes(0x27) && !bytes.includes(0x22) ? '"' : "'";
  let out = "b" + quote;
  for (const b of bytes) {
    if (b === 0x5c) out += "\\\\";
    else if (b === 0x09) out += "\\t";
    else if (b === 0x0a) out += "\\n";
    else if (b === 0x0d) out += "\\r";
    else if (String.fromCharCode(b) === quote) out += "\\" + quote;
    else if (b < 0x20 || b >= 0x7f) out += "\\x" + b.toString(16).padStart(2, "0");
    else out += String.fromCharCode(b);
  }
  return out + quote;
}

/**
 * The text `model_signing` v0.2 signed instead of the DSSE PAE (its
 * `pae_compat`): `DSSEV1`, the in-toto payload type, and the payload's
 * Python repr. Later `model_signing` verifiers accept it for key and
 * certificate signatures, so this one does too.
 */
export function compatPae(payload: Uint8Array): Uint8Array {
  const type = "application/vnd.in-toto+json";
  return new TextEncoder().encode(
    `DSSEV1 ${type.length} ${type} ${payload.length} ${pyBytesRepr(payload)}`,
  );
}

/**
 * Checks the envelope's signature over the DSSE PAE. `compat` also accepts
 * the v0.2 encoding (see {@linkcode compatPae}): signed with the curve's
 * hash (`"curve"`, key mode) or with SHA-256 whatever the curve
 * (`"sha256"`, certificate mode), as `model_signing` v0.2 signed them.
 */
export async function checkDsse(
  spki: Uint8Array,
  envelope: Envelope,
  fail: Fail,
  whose: string,
  keyDetails?: unknown,
  compat?: "curve" | "sha256",
): Promise<void> {
  let scheme: SignatureScheme;
  try {
    scheme = keyScheme(spki, keyDetails);
  } catch (e) {
    return fail("untrusted-key", `Cannot verify signature: ${whose} ${errorText(e)}`, e);
  }
  if (await verifyWithSpki(spki, scheme, envelope.signature, envelope.pae)) return;
  // Only in-toto statements were ever signed that way (model_signing v0.2).
  if (
    compat !== undefined && scheme.kind === "ecdsa" &&
    envelope.payloadType === "application/vnd.in-toto+json"
  ) {
    const old = {
      kind: "ecdsa" as const,
      hash: compat === "sha256" ? "SHA-256" as const : scheme.hash,
    };
    if (await verifyWithSpki(spki, old, envelope.signature, compatPae(envelope.payload))) return;
  }
  fail(
    "bad-signature",
    `Cannot verify signature: it does not match the DSSE payload under ${whose} (${
      scheme.kind === "ed25519" ? "Ed25519" : `${scheme.kind.toUpperCase()} ${scheme.hash}`
    })`,
  );
}

// --- key mode ---------------------------------------------------------------

interface TrustedKey {
  der: Uint8Array;
  fingerprint: string;
  pemHashes: string[];
}

async function trustedKeys(pems: string[], fail: Fail): Promise<TrustedKey[]> {
  const out: TrustedKey[] = [];
  for (const [i, pem] of pems.entries()) {
    let der: Uint8Array | undefined;
    try {
      der = pemBlocks(pem, "PUBLIC KEY")[0];
      if (der !== undefined) spkiKeyType(der);
    } catch (e) {
      return fail("untrusted-key", `Cannot read trusted public key ${i + 1}: ${errorText(e)}`, e);
    }
    if (der === undefined) {
      return fail("untrusted-key", `Cannot read trusted public key ${i + 1}: no PUBLIC KEY PEM`);
    }
    // Hints hash the PEM text as the signer wrote it; also accept the
    // canonical re-encoding so line-ending differences do not matter.
    const pemHashes = [await sha256Hex(pem), await sha256Hex(toPem("PUBLIC KEY", der))];
    out.push({ der, fingerprint: await sha256Hex(der), pemHashes });
  }
  return out;
}

export const sameBytes = (a: Uint8Array, b: Uint8Array) =>
  a.length === b.length && a.every((v, i) => v === b[i]);

export async function verifyKey(
  material: unknown,
  envelope: Envelope,
  trust: TrustMaterial,
  fail: Fail,
  bad: (m: string) => never,
): Promise<VerifiedBundle> {
  if (!isRecord(material)) return bad(`expected publicKey object, found ${describe(material)}`);
  const keys = await trustedKeys(trust.publicKeys ?? [], fail);
  if (keys.length === 0) {
    return fail("untrusted-key", "Cannot verify key-signed bundle: no trusted public keys given");
  }
  const { hint, rawBytes, keyDetails } = material;
  let candidates: TrustedKey[];
  let described: string;
  if (rawBytes !== undefined && rawBytes !== null) {
    const raw = typeof rawBytes === "string" ? decodeBase64(rawBytes) : undefined;
    if (raw === undefined) return bad("expected publicKey.rawBytes in base64");
    // Older model_signing writes the PEM text here; the spec says DER.
    let der: Uint8Array = raw;
    const text = new TextDecoder().decode(raw);
    if (text.includes("-----BEGIN")) {
      try {
        der = pemBlocks(text, "PUBLIC KEY")[0] ?? bad("publicKey.rawBytes holds no PUBLIC KEY PEM");
      } catch (e) {
        if (e instanceof InvalidSignature) throw e;
        return bad(`publicKey.rawBytes is not a PEM public key (${errorText(e)})`);
      }
    }
    candidates = keys.filter((k) => sameBytes(k.der, der));
    described = `public key ${await sha256Hex(der)}`;
  } else if (typeof hint === "string" && hint !== "") {
    const h = hint.toLowerCase();
    candidates = keys.filter((k) => k.fingerprint === h || k.pemHashes.includes(h));
    described = `public key with hint ${hint}`;
  } else if (hint === undefined || hint === null || hint === "") {
    // No identification at all: any trusted key whose signature verifies.
    candidates = keys;
    described = "unidentified public key";
  } else {
    return bad(`expected publicKey.hint string, found ${describe(hint)}`);
  }
  if (candidates.length === 0) {
    return fail(
      "untrusted-key",
      `Cannot verify signature: the bundle's ${described} is not among the ${keys.length} trusted public keys`,
    );
  }
  let lastError: unknown;
  for (const key of candidates) {
    try {
      await checkDsse(
        key.der,
        envelope,
        fail,
        `trusted key ${key.fingerprint}`,
        keyDetails,
        "curve",
      );
      return {
        payload: envelope.payload,
        payloadType: envelope.payloadType,
        signer: {
          kind: "key",
          identities: [],
          issuer: undefined,
          keyFingerprint: key.fingerprint,
          // Canonical PEM: trusted key files may carry extra text around it.
          pem: toPem("PUBLIC KEY", key.der),
          signedAt: undefined,
        },
      };
    } catch (e) {
      lastError = e;
    }
  }
  if (candidates.length > 1) {
    return fail(
      "bad-signature",
      `Cannot verify signature: it matches none of the ${candidates.length} trusted public keys`,
      lastError,
    );
  }
  throw lastError;
}
