/**
 * The Sigstore trusted root: the public-good one embedded in `@sigstore/tuf`
 * (so keyless verification works offline) and its conversion to the trust
 * material `@sigstore/verify` works with.
 *
 * @module
 */

import { Buffer } from "node:buffer";
import nodeCrypto from "node:crypto";
import { X509Certificate } from "@sigstore/core";
import type { TrustMaterial as SigstoreTrustMaterial } from "@sigstore/verify";
import { decodeBase64 } from "./_dsse.ts";

/**
 * The public-good Sigstore `trusted_root.json`, parsed, as embedded in
 * `@sigstore/tuf`'s `seeds.json`. Offline: no TUF refresh. A fresh object on
 * every call, so callers may modify it.
 */
export { publicGoodTrustedRootWeb as publicGoodTrustedRoot } from "./_trusted_root_web.ts";

const END_OF_TIME = new Date(8640000000000000);

function record(value: unknown, what: string): Record<string, unknown> {
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new Error(`${what} is not an object`);
  }
  return value as Record<string, unknown>;
}

function list(value: unknown, what: string): unknown[] {
  if (value === undefined) return [];
  if (!Array.isArray(value)) throw new Error(`${what} is not an array`);
  return value;
}

function base64(value: unknown, what: string): Buffer<ArrayBuffer> {
  const bytes = typeof value === "string" ? decodeBase64(value) : undefined;
  if (bytes === undefined) throw new Error(`${what} is not base64`);
  return Buffer.from(bytes);
}

function date(value: unknown, what: string): Date {
  const d = typeof value === "string" ? new Date(value) : new Date(NaN);
  if (Number.isNaN(d.getTime())) throw new Error(`${what} is not a date`);
  return d;
}

/**
 * A `validFor` range. Its start is required: the specification leaves only
 * the end open ("a period that has started but has no known end"), and a
 * key or CA trusted from the beginning of time would vouch for anything
 * backdated (`@sigstore/verify`'s own conversion defaults it to 1970; we
 * refuse instead). A missing end means still valid.
 */
function validity(value: unknown, what: string): { start: Date; end: Date } {
  if (value === undefined || value === null) throw new Error(`${what}.start is missing`);
  const v = record(value, what);
  if (v.start === undefined || v.start === null) throw new Error(`${what}.start is missing`);
  return {
    start: date(v.start, `${what}.start`),
    end: v.end === undefined || v.end === null ? END_OF_TIME : date(v.end, `${what}.end`),
  };
}

function certAuthority(value: unknown, what: string) {
  const ca = record(value, what);
  const chain = record(ca.certChain, `${what}.certChain`);
  return {
    certChain: list(chain.certificates, `${what}.certChain.certificates`).map((c, i) => {
      const raw = base64(
        record(c, `${what} certificate ${i}`).rawBytes,
        `${what} certificate ${i}`,
      );
      const cert = X509Certificate.parse(raw);
      // Touch the fields chain checks read, so a malformed certificate fails here.
      void cert.subject, cert.issuer, cert.notBefore, cert.notAfter, cert.publicKey;
      return cert;
    }),
    validFor: validity(ca.validFor, `${what}.validFor`),
  };
}

function logAuthority(value: unknown, what: string) {
  const log = record(value, what);
  const key = record(log.publicKey, `${what}.publicKey`);
  const details = typeof key.keyDetails === "string" ? key.keyDetails : "";
  const id = log.checkpointKeyId ?? log.logId;
  return {
    baseURL: typeof log.baseUrl === "string" ? log.baseUrl : "",
    logID: base64(record(id, `${what}.logId`).keyId, `${what}.logId.keyId`),
    publicKey: nodeCrypto.createPublicKey({
      key: base64(key.rawBytes, `${what}.publicKey.rawBytes`),
      format: "der",
      type: details.startsWith("PKCS1_") ? "pkcs1" : "spki",
    }),
    validFor: validity(key.validFor, `${what}.publicKey.validFor`),
  };
}

/**
 * Converts a parsed `trusted_root.json` to `@sigstore/verify` trust material
 * (what its `toTrustMaterial` does from the protobuf form, which would need
 * `@sigstore/protobuf-specs`). Throws an `Error` naming the bad field.
 */
export function toSigstoreTrustMaterial(root: unknown): SigstoreTrustMaterial {
  const r = record(root, "trusted root");
  const tm: SigstoreTrustMaterial = {
    certificateAuthorities: list(r.certificateAuthorities, "certificateAuthorities").map((c, i) =>
      certAuthority(c, `certificateAuthorities[${i}]`)
    ),
    timestampAuthorities: list(r.timestampAuthorities, "timestampAuthorities").map((c, i) =>
      certAuthority(c, `timestampAuthorities[${i}]`)
    ),
    tlogs: list(r.tlogs, "tlogs").map((t, i) => logAuthority(t, `tlogs[${i}]`)),
    ctlogs: list(r.ctlogs, "ctlogs").map((t, i) => logAuthority(t, `ctlogs[${i}]`)),
    publicKey: (hint: string) => {
      throw new Error(`no public key ${hint} in a trusted root`);
    },
  };
  return tm;
}
