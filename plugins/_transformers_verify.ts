// Evidence and verdicts for the transformers.js guard: which model a request
// belongs to, what the model's signature (or lockfile) says each file must
// hash to, and the per-file verdict. No transformers.js or onnxruntime here.
// Signature checks come in as Verifiers (Deno and Node pass sign/'s; they
// need node:crypto), so that this module and the guard's core load anywhere.
import { OMS_PAYLOAD_TYPE, parseStatement } from "../sign/_oms.ts";
import type { verifySignedText } from "../sign/_verify_signed.ts";
import { HashMismatch, InvalidSignature, SignatureMissing } from "../sign/errors.ts";
import type { Lockfile } from "../sign/lockfile.ts";
import type { verifyOnnx } from "../sign/onnx_signature.ts";
import { signatureRequirement, type TrustPolicy } from "../sign/policy.ts";
import type { VerifiedSigner } from "../sign/types.ts";

/** The signature checks the runtime can do. */
export interface Verifiers {
  /** Verifies a signed envelope (a Sigstore bundle's JSON) against a policy. */
  signed: typeof verifySignedText;
  /** Verifies an ONNX file's embedded signature (absent: not checked). */
  onnx?: typeof verifyOnnx;
}

/** One model: a hub repository at a revision, or a local folder. */
export interface ModelRef {
  /** Stable key: `remote:<base>` or `local:<root>`. */
  key: string;
  /** The repository id or the folder path. */
  name: string;
  /** The revision (`"local"` for folders). */
  revision: string;
  /** Where `model.sig` lives: a URL or a path. */
  signature: string;
  /** Remote models: the URL prefix their files share. */
  base?: string;
}

/** One file of a model. */
export interface FileRef {
  model: ModelRef;
  /** Model-relative POSIX path, e.g. `onnx/model.onnx`. */
  file: string;
}

/** What the guard decided for a file's bytes. */
export interface FileVerdict {
  ok: boolean;
  digest: string;
  evidence: "oms" | "onnx-embedded" | "safetensors-embedded" | "lockfile" | "none";
  signer?: VerifiedSigner;
  error?: Error;
}

/** A model's detached signature, once verified (or why it was refused). */
export interface OmsEvidence {
  /** No `model.sig` at all. */
  absent: boolean;
  signer?: VerifiedSigner;
  digests?: Map<string, string>;
  error?: Error;
  /** The raw signature text, to store in a cache after verifying. */
  text?: string;
}

/** Files onnxruntime opens: failing them inside transformers.js can hang it. */
export function isWeightFile(file: string): boolean {
  return /\.onnx$|\.onnx_data(?:_\d+)?$/.test(file);
}

/** Verifies the text of a `model.sig` against the policy. */
export async function verifyOmsText(
  text: string,
  policy: TrustPolicy,
  where: string,
  verifiers: Verifiers,
): Promise<OmsEvidence> {
  try {
    const { payload, signer } = await verifiers.signed(text, policy, OMS_PAYLOAD_TYPE, {
      file: where,
    });
    const statement = await parseStatement(payload, where);
    const digests = new Map(statement.resources.map((r) => [r.name, r.digest]));
    return { absent: false, signer, digests, text };
  } catch (error) {
    return { absent: false, error: error as Error };
  }
}

/** Everything {@linkcode decide} needs besides the bytes. */
export interface DecideContext {
  policy: TrustPolicy;
  oms: OmsEvidence;
  lockfile: Lockfile | undefined;
  frozen: boolean;
  /** Absent: only lockfile pins can vouch for a file. */
  verifiers: Verifiers | undefined;
}

/**
 * The verdict for one file's bytes, in evidence order: the model's OMS
 * signature, an embedded ONNX signature, the lockfile's pinned digest. A
 * pinned digest that differs refuses the file whatever else vouches for it.
 */
export async function decide(
  ref: FileRef,
  digest: string,
  input: Uint8Array | string | undefined,
  ctx: DecideContext,
): Promise<FileVerdict> {
  const shown = `${ref.model.name}/${ref.file}`;
  const refuse = (error: Error, evidence: FileVerdict["evidence"] = "none"): FileVerdict => ({
    ok: false,
    digest,
    evidence,
    error,
  });
  if (ctx.oms.error) return refuse(ctx.oms.error, "oms");
  const pinned = ctx.lockfile?.get(ref.model.name, ref.model.revision)?.digests[ref.file];
  if (pinned !== undefined && pinned !== digest) {
    return refuse(new HashMismatch(pinned, digest, { file: shown }), "lockfile");
  }
  if (pinned === undefined && ctx.frozen) {
    return refuse(
      new InvalidSignature(
        "not-locked",
        `Cannot load ${ref.file}: the lockfile is frozen and pins no digest for it`,
        { file: shown },
      ),
      "lockfile",
    );
  }
  const signed = ctx.oms.digests?.get(ref.file);
  if (signed !== undefined) {
    if (signed !== digest) {
      return refuse(
        new HashMismatch(`sha256:${signed}`, `sha256:${digest}`, { file: shown }),
        "oms",
      );
    }
    return {
      ok: true,
      digest,
      evidence: "oms",
      ...(ctx.oms.signer ? { signer: ctx.oms.signer } : {}),
    };
  }
  if (input !== undefined && ref.file.endsWith(".onnx") && ctx.verifiers?.onnx) {
    try {
      const v = await ctx.verifiers.onnx(input, { policy: ctx.policy });
      return { ok: true, digest, evidence: "onnx-embedded", signer: v.signer };
    } catch (error) {
      if (!(error instanceof SignatureMissing)) {
        if (error instanceof Error) {
          const name = typeof input === "string" ? input : "<bytes>";
          const message = error.message.startsWith(`${name}: `)
            ? error.message.slice(name.length + 2)
            : error.message.replaceAll(name, shown);
          error.message = `${shown}: ${message}`;
          if ("file" in error) (error as { file?: string }).file = shown;
        }
        return refuse(error as Error, "onnx-embedded");
      }
    }
  }
  if (pinned !== undefined) return { ok: true, digest, evidence: "lockfile" };
  if (signatureRequirement(ctx.policy, ref.model.name) === "optional") {
    return { ok: true, digest, evidence: "none" };
  }
  const why = !ctx.verifiers
    ? "this runtime checks lockfile pins only, and the lockfile pins no digest for it"
    : ctx.oms.digests
    ? `it is not in the signed manifest of ${ref.model.signature}`
    : `there is no model.sig at ${ref.model.signature}, no embedded signature and no lockfile entry`;
  return refuse(new SignatureMissing(`Cannot load ${ref.file}: ${why}`, { file: shown }));
}
