// Remembering a model.sig's verification (warm starts). Verifying a
// signature against a policy is a function of the signature's bytes, the
// policy's trust material and signer rules, and this version of safemodels
// (keyless: the signing time the bundle proves, bounded above by a clock
// that only moves on). So a verified finding can be kept under a key made of
// exactly those, and taken again for the same bytes and policy without
// verifying. Only verified findings are kept; a key that cannot be made (a
// policy holding something other than data) keeps nothing.
import { sha256Hex } from "../hash/_digest.ts";
import type { OmsFinding } from "./evidence.ts";
import type { TrustPolicy } from "./policy.ts";
import type { VerifiedSigner } from "./types.ts";
import config from "../deno.json" with { type: "json" };
import { publicGoodTrustedRootWeb } from "./_trusted_root_web.ts";

/**
 * Bumped when what a kept finding means changes, and whenever verification
 * itself changes (development builds all carry one version number).
 */
const FORMAT = 2;

type Verified = Extract<OmsFinding, { $case: "verified" }>;

/**
 * Data as one canonical text (object keys sorted, `undefined` members left
 * out, regular expressions by source and flags), or `undefined` for anything
 * else (a function, a class instance): such a policy is never remembered.
 */
function canonical(value: unknown, depth = 0): string | undefined {
  if (depth > 64) return undefined;
  if (value === null || typeof value === "boolean" || typeof value === "string") {
    return JSON.stringify(value);
  }
  if (typeof value === "number") return Number.isFinite(value) ? JSON.stringify(value) : undefined;
  if (value instanceof RegExp) return `/${JSON.stringify([value.source, value.flags])}`;
  if (Array.isArray(value)) {
    const items = value.map((v) => canonical(v, depth + 1));
    return items.includes(undefined) ? undefined : `[${items.join(",")}]`;
  }
  if (typeof value !== "object") return undefined;
  const proto = Object.getPrototypeOf(value);
  if (proto !== Object.prototype && proto !== null) return undefined;
  const parts: string[] = [];
  for (const key of Object.keys(value).sort()) {
    const v = (value as Record<string, unknown>)[key];
    if (v === undefined) continue;
    const c = canonical(v, depth + 1);
    if (c === undefined) return undefined;
    parts.push(`${JSON.stringify(key)}:${c}`);
  }
  return `{${parts.join(",")}}`;
}

/**
 * The key a verification of `text` under `policy` is remembered by (hex), or
 * `undefined` when the policy cannot be keyed. What decides a verification
 * goes in: the trust material, the signer rules, the bytes, the version.
 */
export async function findingKey(text: string, policy: TrustPolicy): Promise<string | undefined> {
  // A keyless signature verifies only for a policy with signers; without a
  // root of its own, the embedded public-good one (whose package may be
  // updated on its own) decides it, so its content is part of the key.
  const root = policy.trustedRoot ??
    (policy.signers?.length ? await publicGoodTrustedRootWeb().catch(() => null) : undefined);
  if (root === null) return undefined;
  const rules = canonical({
    trustedRoot: root,
    publicKeys: policy.publicKeys,
    certificateRoots: policy.certificateRoots,
    signers: policy.signers,
  });
  if (rules === undefined) return undefined;
  return await sha256Hex(
    `safemodels oms finding ${FORMAT} ${config.version}\0${rules}\0${await sha256Hex(text)}`,
  );
}

/** A verified finding as JSON data (`where` is not kept: the caller's is used). */
export function findingToJson(f: Verified): unknown {
  return {
    signer: { ...f.signer, signedAt: f.signer.signedAt?.toISOString() },
    modelName: f.modelName,
    resources: [...f.resources],
    shardLabel: f.shardLabel,
    allowSymlinks: f.allowSymlinks,
  };
}

const isString = (v: unknown): v is string => typeof v === "string";
const optional = (v: unknown) => v === undefined || isString(v);

/** A kept finding read back, named by `where`; `undefined` when it is not one. */
export function findingFromJson(data: unknown, where: string): Verified | undefined {
  if (typeof data !== "object" || data === null) return undefined;
  const d = data as Record<string, unknown>;
  const s = d.signer as Record<string, unknown> | undefined;
  if (typeof s !== "object" || s === null) return undefined;
  if (
    !["keyless", "key", "certificate"].includes(s.kind as string) ||
    !Array.isArray(s.identities) || !s.identities.every(isString) || !optional(s.issuer) ||
    !isString(s.keyFingerprint) || !isString(s.pem) || !optional(s.signedAt) ||
    (s.extensions !== undefined &&
      (typeof s.extensions !== "object" || s.extensions === null ||
        !Object.values(s.extensions).every(isString)))
  ) {
    return undefined;
  }
  const signedAt = s.signedAt === undefined ? undefined : new Date(s.signedAt as string);
  if (signedAt !== undefined && Number.isNaN(signedAt.getTime())) return undefined;
  if (
    !optional(d.modelName) || !optional(d.shardLabel) ||
    (d.allowSymlinks !== undefined && typeof d.allowSymlinks !== "boolean") ||
    !Array.isArray(d.resources) ||
    !d.resources.every((r) => Array.isArray(r) && r.length === 2 && r.every(isString))
  ) {
    return undefined;
  }
  const signer: VerifiedSigner = {
    kind: s.kind as VerifiedSigner["kind"],
    identities: [...s.identities as string[]],
    issuer: s.issuer as string | undefined,
    keyFingerprint: s.keyFingerprint as string,
    pem: s.pem as string,
    signedAt,
    ...(s.extensions !== undefined
      ? { extensions: { ...s.extensions as Record<string, string> } }
      : {}),
  };
  return {
    $case: "verified",
    signer,
    modelName: d.modelName as string | undefined,
    resources: new Map(d.resources as [string, string][]),
    where,
    ...(d.shardLabel !== undefined ? { shardLabel: d.shardLabel as string } : {}),
    ...(d.allowSymlinks !== undefined ? { allowSymlinks: d.allowSymlinks as boolean } : {}),
  };
}
