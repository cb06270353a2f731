/**
 * Types shared by signers and verifiers.
 *
 * @module
 */

/**
 * A Sigstore bundle as parsed JSON (media types v0.1 to v0.3), holding a DSSE
 * envelope and its verification material: a public-key hint, an X.509
 * certificate or chain, and for keyless signatures transparency-log entries.
 */
export interface SigstoreBundle {
  /** e.g. `application/vnd.dev.sigstore.bundle.v0.3+json`. */
  mediaType: string;
  /** Key hint, certificate or chain, tlog entries, timestamps. */
  verificationMaterial: Record<string, unknown>;
  /** The signed envelope. */
  dsseEnvelope: {
    payload: string;
    payloadType: string;
    signatures: { sig: string; keyid?: string | null }[];
  };
}

/** Signs DSSE payloads; see `keySigner`, `certificateSigner`, `sigstoreSigner`. */
export interface Signer {
  /**
   * Signs `payload` (DSSE, over the pre-authentication encoding) and returns
   * the Sigstore bundle.
   */
  sign(payload: Uint8Array, payloadType: string): Promise<SigstoreBundle>;
}

/** Who signed, as established by a verified bundle. */
export interface VerifiedSigner {
  /** How the signature was made. */
  kind: "keyless" | "key" | "certificate";
  /** The leaf certificate's subject alternative names (emails, URIs); `[]` for keys. */
  identities: string[];
  /** The OIDC issuer recorded by Fulcio (keyless only). */
  issuer: string | undefined;
  /** SHA-256 hex of the public key's SPKI DER (all kinds). */
  keyFingerprint: string;
  /** PEM of the public key (key) or leaf certificate (keyless, certificate). */
  pem: string;
  /** When the signature was logged or timestamped (keyless), if known. */
  signedAt: Date | undefined;
  /**
   * The Fulcio extensions of a keyless signer's certificate, by name (see
   * `FULCIO_EXTENSIONS`): the repository, ref and workflow of a CI run.
   */
  extensions?: Record<string, string>;
}

/** Key material verification trusts, in addition to the identity policy. */
export interface TrustMaterial {
  /**
   * A Sigstore `trusted_root.json` (parsed) for keyless signatures. Defaults
   * to the public-good root embedded in `@sigstore/tuf`, so verification
   * works offline.
   */
  trustedRoot?: unknown;
  /** PEM public keys accepted for key-signed bundles. */
  publicKeys?: string[];
  /** PEM root certificates accepted for certificate-signed bundles. */
  certificateRoots?: string[];
}
