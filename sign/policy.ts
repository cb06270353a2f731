import { PolicyError } from "./errors.ts";
import type { TrustMaterial, VerifiedSigner } from "./types.ts";

/** A value to match: an exact string, or a `RegExp` that must match the whole value. */
export type Matcher = string | RegExp;

/**
 * An accepted keyless signer: the identity in the Fulcio certificate (an
 * email or URI subject alternative name) and the OIDC issuer that vouched for
 * it. Strings match exactly; a `RegExp` (only when you pass one) must match
 * the whole value.
 */
export interface Issuer {
  /** The certificate identity, e.g. `"release@example.com"` or a workflow URI. */
  readonly identity: Matcher;
  /** The OIDC issuer, e.g. `"https://token.actions.githubusercontent.com"`. */
  readonly issuer: Matcher;
  /**
   * Fulcio certificate extensions that must match too (a CI policy: the
   * repository, ref and workflow that ran), by name; see
   * {@linkcode FULCIO_EXTENSIONS}. A certificate without an extension named
   * here does not match.
   */
  readonly extensions?: Readonly<Partial<Record<FulcioExtension, Matcher>>>;
}

/**
 * The Fulcio certificate extensions a policy can match, by name, with their
 * OIDs (https://github.com/sigstore/fulcio/blob/main/docs/oid-info.md).
 *
 * @example Matching the repository and ref of a GitHub Actions run
 * ```ts
 * import { FULCIO_EXTENSIONS, Issuer } from "@safemodels/safemodels/sign";
 * import assert from "node:assert/strict";
 *
 * const ci = Issuer({
 *   identity: "https://github.com/acme/models/.github/workflows/release.yml@refs/heads/main",
 *   issuer: "https://token.actions.githubusercontent.com",
 *   extensions: {
 *     sourceRepositoryURI: "https://github.com/acme/models",
 *     sourceRepositoryRef: "refs/heads/main",
 *   },
 * });
 * assert.equal(FULCIO_EXTENSIONS.sourceRepositoryRef, "1.3.6.1.4.1.57264.1.14");
 * assert.equal(ci.extensions?.sourceRepositoryRef, "refs/heads/main");
 * ```
 */
export const FULCIO_EXTENSIONS = {
  githubWorkflowTrigger: "1.3.6.1.4.1.57264.1.2",
  githubWorkflowSha: "1.3.6.1.4.1.57264.1.3",
  githubWorkflowName: "1.3.6.1.4.1.57264.1.4",
  githubWorkflowRepository: "1.3.6.1.4.1.57264.1.5",
  githubWorkflowRef: "1.3.6.1.4.1.57264.1.6",
  buildSignerURI: "1.3.6.1.4.1.57264.1.9",
  buildSignerDigest: "1.3.6.1.4.1.57264.1.10",
  runnerEnvironment: "1.3.6.1.4.1.57264.1.11",
  sourceRepositoryURI: "1.3.6.1.4.1.57264.1.12",
  sourceRepositoryDigest: "1.3.6.1.4.1.57264.1.13",
  sourceRepositoryRef: "1.3.6.1.4.1.57264.1.14",
  sourceRepositoryIdentifier: "1.3.6.1.4.1.57264.1.15",
  sourceRepositoryOwnerURI: "1.3.6.1.4.1.57264.1.16",
  sourceRepositoryOwnerIdentifier: "1.3.6.1.4.1.57264.1.17",
  buildConfigURI: "1.3.6.1.4.1.57264.1.18",
  buildConfigDigest: "1.3.6.1.4.1.57264.1.19",
  buildTrigger: "1.3.6.1.4.1.57264.1.20",
  runInvocationURI: "1.3.6.1.4.1.57264.1.21",
} as const;

/** The name of a Fulcio extension a policy can match; see {@linkcode FULCIO_EXTENSIONS}. */
export type FulcioExtension = keyof typeof FULCIO_EXTENSIONS;

/**
 * Builds an accepted keyless signer, as the seed project's `Issuer(...)`.
 *
 * @param signer The identity and issuer to accept.
 * @returns A frozen {@linkcode Issuer}.
 * @throws {TypeError} When either field is empty or not a string or `RegExp`.
 *
 * @example Accepting a GitHub Actions workflow
 * ```ts
 * import { Issuer } from "@safemodels/safemodels/sign";
 * import assert from "node:assert/strict";
 *
 * const ci = Issuer({
 *   identity: /https:\/\/github\.com\/acme\/models\/\.github\/workflows\/release\.yml@refs\/tags\/v[0-9.]+$/,
 *   issuer: "https://token.actions.githubusercontent.com",
 * });
 * assert.equal(ci.issuer, "https://token.actions.githubusercontent.com");
 * ```
 */
export function Issuer(
  signer: {
    identity: Matcher;
    issuer: Matcher;
    extensions?: Readonly<Partial<Record<FulcioExtension, Matcher>>>;
  },
): Issuer {
  const extensions = signer?.extensions;
  if (extensions !== undefined) {
    for (const [name, v] of Object.entries(extensions)) {
      if (!Object.hasOwn(FULCIO_EXTENSIONS, name)) {
        throw new TypeError(
          `Cannot create Issuer: unknown Fulcio extension "${name}" (known: ${
            Object.keys(FULCIO_EXTENSIONS).join(", ")
          })`,
        );
      }
      if (!(v instanceof RegExp) && (typeof v !== "string" || v === "")) {
        throw new TypeError(
          `Cannot create Issuer: extension ${name} must be a non-empty string or a RegExp`,
        );
      }
    }
  }
  for (const key of ["identity", "issuer"] as const) {
    const v = signer?.[key];
    if (!(v instanceof RegExp) && (typeof v !== "string" || v === "")) {
      throw new TypeError(
        `Cannot create Issuer: ${key} must be a non-empty string or a RegExp, got ${
          v === "" ? "an empty string" : typeof v
        }`,
      );
    }
  }
  return Object.freeze({
    identity: signer.identity,
    issuer: signer.issuer,
    ...(extensions === undefined ? {} : { extensions: Object.freeze({ ...extensions }) }),
  });
}

/** What a trust policy accepts. Every field is optional; what is absent is not trusted. */
export interface TrustPolicy extends TrustMaterial {
  /**
   * Accepted keyless signers. A keyless signature is accepted only when its
   * certificate matches one of these.
   * @default {[]}
   */
  signers?: Issuer[];
  /**
   * Whether a model without any signature is refused (`"required"`) or let
   * through (`"optional"`). Present signatures are always checked.
   * @default {"required"}
   */
  signatures?: "required" | "optional";
  /**
   * Per-model settings, keyed by model name (a hub repository such as
   * `"acme/tiny-bert"`): `signatures` overrides the policy-wide requirement;
   * `version` is the version the model must be (an embedded signature that
   * states another is refused, and the lockfile entry of that version pins
   * it).
   * @default {{}}
   */
  models?: Record<string, ModelPolicy>;
}

/** What a trust policy says about one model. */
export interface ModelPolicy {
  /** Whether the model needs a signature. @default {the policy's `signatures`} */
  signatures?: "required" | "optional";
  /** The version the model must be, when the caller does not say. */
  version?: string;
}

/**
 * Whether a model needs a signature under `policy`: its entry in `models`,
 * else the policy-wide `signatures`.
 *
 * @param policy The trust policy.
 * @param model The model's name, when known.
 * @returns `"required"` or `"optional"`.
 *
 * @example A policy that lets one internal model through unsigned
 * ```ts
 * import { signatureRequirement, toPolicy } from "@safemodels/safemodels/sign";
 * import assert from "node:assert/strict";
 *
 * const policy = toPolicy({ models: { "acme/scratch": { signatures: "optional" } } });
 * assert.equal(signatureRequirement(policy, "acme/scratch"), "optional");
 * assert.equal(signatureRequirement(policy, "acme/prod"), "required");
 * ```
 */
export function signatureRequirement(policy: TrustPolicy, model?: string): "required" | "optional" {
  const own = model === undefined ? undefined : policy.models?.[model]?.signatures;
  return own ?? policy.signatures ?? "required";
}

let processDefault: TrustPolicy | undefined;

/**
 * Sets the process-wide default trust policy, used wherever a function takes
 * an optional `policy`: the seed project's `init(Issuer(...))`.
 *
 * @param policy A policy, one accepted signer or a list of them.
 * @returns The normalized policy now in force.
 * @throws {TypeError} When the policy is malformed.
 *
 * @example Trusting one release identity
 * ```ts
 * import { init, Issuer } from "@safemodels/safemodels/sign";
 * import assert from "node:assert/strict";
 *
 * const policy = init(Issuer({ identity: "release@example.com", issuer: "https://accounts.google.com" }));
 * assert.equal(policy.signers?.length, 1);
 * ```
 */
export function init(policy: TrustPolicy | Issuer | Issuer[]): TrustPolicy {
  processDefault = toPolicy(policy);
  return processDefault;
}

/**
 * Turns what `init` accepts into a {@linkcode TrustPolicy} (validated copy).
 *
 * @param policy A policy, one accepted signer or a list of them.
 * @returns The policy.
 * @throws {TypeError} When the policy is malformed.
 *
 * @example Normalizing a list of signers
 * ```ts
 * import { Issuer, toPolicy } from "@safemodels/safemodels/sign";
 * import assert from "node:assert/strict";
 *
 * const p = toPolicy([Issuer({ identity: "a@example.com", issuer: "https://issuer.example" })]);
 * assert.equal(p.signatures, "required");
 * ```
 */
export function toPolicy(policy: TrustPolicy | Issuer | Issuer[]): TrustPolicy {
  if (Array.isArray(policy)) return toPolicy({ signers: policy });
  if (typeof policy !== "object" || policy === null) {
    throw new TypeError(`Cannot use trust policy: expected an object, got ${typeof policy}`);
  }
  if ("identity" in policy && "issuer" in policy) {
    return toPolicy({ signers: [policy as Issuer] });
  }
  const p = policy as TrustPolicy;
  const out: TrustPolicy = {
    signers: (p.signers ?? []).map((s) => Issuer(s)),
    publicKeys: [...(p.publicKeys ?? [])],
    certificateRoots: [...(p.certificateRoots ?? [])],
    signatures: p.signatures ?? "required",
  };
  if (p.models !== undefined) {
    if (typeof p.models !== "object" || p.models === null || Array.isArray(p.models)) {
      throw new TypeError("Cannot use trust policy: models must be an object keyed by model name");
    }
    // No prototype: a model named "__proto__" or "constructor" is just a name.
    out.models = Object.create(null) as Record<string, ModelPolicy>;
    for (const [name, m] of Object.entries(p.models)) {
      if (typeof m !== "object" || m === null) {
        throw new TypeError(`Cannot use trust policy: models["${name}"] must be an object`);
      }
      const unknown = Object.keys(m).filter((k) => k !== "signatures" && k !== "version");
      if (unknown.length > 0) {
        throw new TypeError(
          `Cannot use trust policy: models["${name}"] has unknown field ${
            JSON.stringify(unknown[0])
          } (expected signatures, version)`,
        );
      }
      if (
        m.signatures !== undefined && m.signatures !== "required" && m.signatures !== "optional"
      ) {
        throw new TypeError(
          `Cannot use trust policy: models["${name}"].signatures must be "required" or "optional"`,
        );
      }
      if (m.version !== undefined && (typeof m.version !== "string" || m.version === "")) {
        throw new TypeError(
          `Cannot use trust policy: models["${name}"].version must be a non-empty string`,
        );
      }
      out.models[name] = {
        ...(m.signatures !== undefined ? { signatures: m.signatures } : {}),
        ...(m.version !== undefined ? { version: m.version } : {}),
      };
    }
  }
  if (p.trustedRoot !== undefined) out.trustedRoot = p.trustedRoot;
  if (out.signatures !== "required" && out.signatures !== "optional") {
    throw new TypeError(
      `Cannot use trust policy: signatures must be "required" or "optional", got ${
        JSON.stringify(p.signatures)
      }`,
    );
  }
  return out;
}

/**
 * The policy to use: the one given, else the process default set by
 * {@linkcode init}.
 *
 * @param policy An explicit policy, if any.
 * @returns The policy.
 * @throws {TypeError} When neither is set (verification fails closed).
 *
 * @example Falling back to the process default
 * ```ts
 * import { init, Issuer, resolvePolicy } from "@safemodels/safemodels/sign";
 * import assert from "node:assert/strict";
 *
 * init([Issuer({ identity: "a@example.com", issuer: "https://issuer.example" })]);
 * assert.equal(resolvePolicy().signers?.[0]?.identity, "a@example.com");
 * ```
 */
export function resolvePolicy(policy?: TrustPolicy | Issuer | Issuer[]): TrustPolicy {
  if (policy !== undefined) return toPolicy(policy);
  if (processDefault) return processDefault;
  throw new TypeError(
    "Cannot verify: no trust policy given and none set with init() (pass { policy } or call init(Issuer({ identity, issuer })))",
  );
}

function matches(m: Matcher, value: string): boolean {
  if (typeof m === "string") return m === value;
  const re = new RegExp(m.source, m.flags.replace(/[gy]/g, ""));
  const found = re.exec(value);
  return found !== null && found.index === 0 && found[0] === value;
}

function show(m: Matcher): string {
  return typeof m === "string" ? m : String(m);
}

/**
 * Checks that a verified signer is one the policy accepts. Keys and
 * certificate chains were already checked against the policy's key material
 * when the bundle was verified; keyless signers must match an
 * {@linkcode Issuer}.
 *
 * @param signer Who signed, from a verified bundle.
 * @param policy The trust policy.
 * @param file The model, for the message.
 * @throws {PolicyError} `"wrong-signer"`, listing what was expected and what the certificate holds.
 *
 * @example Refusing a stranger
 * ```ts
 * import { checkSigner, InvalidSignature, Issuer } from "@safemodels/safemodels/sign";
 * import assert from "node:assert/strict";
 *
 * const policy = { signers: [Issuer({ identity: "a@example.com", issuer: "https://issuer.example" })] };
 * const signer = {
 *   kind: "keyless" as const, identities: ["mallory@example.com"], issuer: "https://issuer.example",
 *   keyFingerprint: "", pem: "", signedAt: undefined,
 * };
 * assert.throws(() => checkSigner(signer, policy), InvalidSignature);
 * ```
 */
export function checkSigner(signer: VerifiedSigner, policy: TrustPolicy, file?: string): void {
  if (signer.kind !== "keyless") return;
  const accepted = policy.signers ?? [];
  const ok = accepted.some((a) =>
    signer.issuer !== undefined && matches(a.issuer, signer.issuer) &&
    signer.identities.some((id) => matches(a.identity, id)) &&
    Object.entries(a.extensions ?? {}).every(([name, m]) => {
      const have = signer.extensions?.[name as FulcioExtension];
      return m !== undefined && have !== undefined && matches(m, have);
    })
  );
  if (ok) return;
  const expected = accepted.length === 0
    ? "the policy accepts no keyless signers"
    : `expected one of [${
      accepted.map((a) =>
        `${show(a.identity)} with issuer ${show(a.issuer)}${
          a.extensions
            ? ` and ${Object.entries(a.extensions).map(([k, v]) => `${k} ${show(v!)}`).join(", ")}`
            : ""
        }`
      ).join("; ")
    }]`;
  throw new PolicyError(
    "wrong-signer",
    `Cannot verify signature: none of the expected identities matched what was in the certificate, got subjects [${
      signer.identities.join(", ")
    }] with issuer ${signer.issuer ?? "(none)"}${
      signer.extensions && Object.keys(signer.extensions).length
        ? ` and ${Object.entries(signer.extensions).map(([k, v]) => `${k} ${v}`).join(", ")}`
        : ""
    }; ${expected}`,
    file === undefined ? {} : { file },
  );
}
