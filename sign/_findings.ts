// Gathering evidence for decideFile (evidence.ts): a model.sig's text, a
// file's embedded signature, a lockfile's entry, each turned into a finding.
// Verification of bundles comes in as a SignedTextVerifier, so this module
// runs anywhere (browsers pass the WebCrypto one). No rules here: what a
// finding means for a file is decided in evidence.ts.
import { createSha256, toHex } from "../hash/_digest.ts";
import { readOnnxMetadataProps } from "../hash/_onnx.ts";
import { type ByteSource, rangeChunks } from "../hash/_source.ts";
import { type PolicyError, VerificationError } from "./errors.ts";
import { type EmbeddedFinding, type OmsFinding, type PinFinding, refusal } from "./evidence.ts";
import type { Lockfile } from "./lockfile.ts";
import type { TrustPolicy } from "./policy.ts";
import {
  expectations,
  OMS_PAYLOAD_TYPE,
  type OmsStatement,
  parseStatement,
  shardAlgorithm,
} from "./_oms.ts";
import { checkJsonBounds, MAX_EMBEDDED_BYTES, MAX_EVIDENCE_BYTES, tooLarge } from "./_json.ts";
import type { SignedTextVerifier } from "./_signed_text.ts";
import { IN_TOTO_PAYLOAD_TYPE, type ModelClaim, parseClaim } from "./_statement.ts";

/** The `metadata_props` key that holds an embedded signature in an ONNX file. */
export const ONNX_SIGNATURE_KEY = "safemodels.signature";

/**
 * The finding for a model root's `model.sig`: `absent` when `text` is
 * `undefined`, else what verifying it against the policy established.
 * `singleFile` names a single-file model's file (OMS lists it as `"."`).
 */
export async function omsFinding(
  text: string | undefined,
  policy: TrustPolicy,
  verify: SignedTextVerifier,
  where: string,
  singleFile?: string,
): Promise<{ finding: OmsFinding; statement?: OmsStatement }> {
  if (text === undefined) return { finding: { $case: "absent" } };
  try {
    checkJsonBounds(text, "the signature", MAX_EVIDENCE_BYTES, where);
    const { payload, signer } = await verify(text, policy, OMS_PAYLOAD_TYPE, { file: where });
    const statement = await parseStatement(payload, where);
    return {
      finding: {
        $case: "verified",
        signer,
        modelName: statement.subjectName,
        resources: expectations(statement, singleFile),
        where,
        allowSymlinks: statement.allowSymlinks,
        ...(statement.method === "shards"
          ? { shardLabel: shardAlgorithm(statement.hashType, statement.shardSize!) }
          : {}),
      },
      statement,
    };
  } catch (error) {
    return { finding: refusal(error, where) };
  }
}

/** An embedded bundle's text, bounded and checked before it is parsed. */
function checkEmbedded(text: string, file: string): void {
  checkJsonBounds(text, "the embedded signature", MAX_EMBEDDED_BYTES, file);
}

/** Verifies an embedded bundle and parses its claim. */
async function verifyEmbedded(
  text: string,
  policy: TrustPolicy,
  verify: SignedTextVerifier,
  file: string,
): Promise<{ claim: ModelClaim; signer: import("./types.ts").VerifiedSigner }> {
  checkEmbedded(text, file);
  const { payload, signer } = await verify(text, policy, IN_TOTO_PAYLOAD_TYPE, { file });
  return { claim: parseClaim(payload, file), signer };
}

type Range = { offset: number; length: number };

/** The source's bytes in blocks, leaving out the given ranges. */
export async function* chunksWithout(
  source: ByteSource,
  skip: Range[],
): AsyncGenerator<Uint8Array> {
  let at = 0;
  for (const r of [...skip].sort((x, y) => x.offset - y.offset)) {
    yield* rangeChunks(source, at, r.offset - at);
    at = r.offset + r.length;
  }
  yield* rangeChunks(source, at, source.size - at);
}

/** `sha256:<hex>` of the source's bytes, skipping the given ranges. */
export async function digestWithout(source: ByteSource, skip: Range[]): Promise<string> {
  const h = await createSha256();
  for await (const chunk of chunksWithout(source, skip)) h.update(chunk);
  return `sha256:${toHex(h.digest())}`;
}

/**
 * The signature entries of an ONNX file's `metadata_props`; a value over
 * the embedded-evidence bound is not read (`value` is `undefined`).
 */
export function signatureEntries(
  source: ByteSource,
): Promise<{ key: string; value: string | undefined; offset: number; length: number }[]> {
  return readOnnxMetadataProps(source, { key: ONNX_SIGNATURE_KEY, maxValue: MAX_EMBEDDED_BYTES });
}

/**
 * The finding for an ONNX file's embedded signature: its claim and the
 * digest of every byte outside the signature entry.
 */
export async function onnxFinding(
  source: ByteSource,
  policy: TrustPolicy,
  verify: SignedTextVerifier,
  file: string,
): Promise<EmbeddedFinding> {
  try {
    const entries = await signatureEntries(source);
    if (entries.length === 0) return { $case: "absent" };
    if (entries.length > 1) {
      throw new VerificationError(
        "bad-bundle",
        `Cannot verify: ${entries.length} "${ONNX_SIGNATURE_KEY}" entries in metadata_props, expected one`,
        { file },
      );
    }
    const text = entries[0]!.value;
    if (text === undefined) throw tooLarge("the embedded signature", MAX_EMBEDDED_BYTES, file);
    const { claim, signer } = await verifyEmbedded(text, policy, verify, file);
    return {
      $case: "verified",
      kind: "onnx-embedded",
      signer,
      claim,
      actual: await digestWithout(source, entries),
    };
  } catch (error) {
    return refusal(error, file);
  }
}

/**
 * The finding for a safetensors file's embedded signature, from its
 * `__metadata__` and a way to hash its tensors the way the claim's hash
 * says. The metadata's own name, version and hash must agree with the
 * signed claim.
 */
export async function safetensorsFinding(
  metadata: Record<string, string>,
  keys: { name: string; version: string; hash: string; signature: string },
  hashTensors: (claimed: string) => Promise<string>,
  policy: TrustPolicy,
  verify: SignedTextVerifier,
  file: string,
): Promise<EmbeddedFinding> {
  const text = metadata[keys.signature];
  if (text === undefined) return { $case: "absent" };
  try {
    const { claim, signer } = await verifyEmbedded(text, policy, verify, file);
    const name = metadata[keys.name] ?? "";
    const version = metadata[keys.version] ?? "";
    if (claim.name !== name || claim.version !== version || metadata[keys.hash] !== claim.hash) {
      throw new VerificationError(
        "bad-statement",
        `Cannot verify: the signature is for ${claim.name}@${claim.version} (${claim.hash}) but the metadata says ${name}@${version} (${
          metadata[keys.hash] ?? "no hash"
        })`,
        { file },
      );
    }
    return {
      $case: "verified",
      kind: "safetensors-embedded",
      signer,
      claim,
      actual: await hashTensors(claim.hash),
    };
  } catch (error) {
    return refusal(error, file);
  }
}

/**
 * The lockfile's say about a model: its entry for `version`, or its only
 * entry when no version is known. An ambiguous lookup is carried as an
 * error, which refuses every file of the model.
 */
export function pinFinding(
  lockfile: Lockfile | undefined,
  name: string,
  version: string | undefined,
  frozen: boolean,
): PinFinding | undefined {
  if (lockfile === undefined) {
    if (!frozen) return undefined;
    return { entry: undefined, key: `${name}@${version ?? "(any version)"}`, frozen };
  }
  try {
    const { key, entry } = lockfile.find(name, version);
    return { key, entry, frozen };
  } catch (error) {
    return {
      key: `${name}@(ambiguous)`,
      entry: undefined,
      frozen,
      error: error as PolicyError,
    };
  }
}
