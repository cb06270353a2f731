/**
 * A local Sigstore instance for tests: `@sigstore/mock`'s Fulcio (with a CT
 * log), Rekor and TSA served over HTTP on 127.0.0.1, and a matching
 * `trusted_root.json`, so keyless signing and offline verification can be
 * tested without the public-good services.
 *
 * @module
 */

import { Buffer } from "node:buffer";
import { createHash, generateKeyPairSync, type KeyObject } from "node:crypto";
import {
  fulcioHandler,
  type HandlerFn,
  initializeCA,
  initializeCTLog,
  initializeTLog,
  initializeTSA,
  tsaHandler,
} from "@sigstore/mock";

/** A running local instance; see {@linkcode startLocalSigstore}. */
export interface LocalSigstore {
  /** Fulcio base URL (`…/fulcio`). */
  fulcioURL: string;
  /** Rekor base URL (`…/rekor`). */
  rekorURL: string;
  /**
   * Timestamp authority URL. `@sigstore/sign` appends `/api/v1/timestamp`
   * only to a URL without a path, so this is the full endpoint.
   */
  tsaURL: string;
  /** A `trusted_root.json` object trusting this instance's CA, logs and TSA. */
  trustedRoot: unknown;
  /** An unsigned test OIDC token for `identity` (an email) from `issuer`. */
  token(identity: string, issuer: string): string;
  /** Stops the server. */
  close(): Promise<void>;
}

function keyPair(): { publicKey: KeyObject; privateKey: KeyObject } {
  // The mock maps curve names as Node reports them ("prime256v1").
  return generateKeyPairSync("ec", { namedCurve: "prime256v1" });
}

function spki(key: KeyObject): Buffer {
  return key.export({ type: "spki", format: "der" });
}

function b64(bytes: ArrayBufferView): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("base64");
}

function b64url(text: string): string {
  return Buffer.from(text).toString("base64url");
}

function sha256(data: string | Uint8Array): Buffer {
  return createHash("sha256").update(data).digest();
}

/**
 * Rekor stores the canonical form of an entry, not the proposed one. For a
 * `dsse` 0.0.1 proposal (`proposedContent: { envelope, verifiers }`) that is
 * the envelope and payload hashes plus each signature with its verifier (the
 * base64 PEM certificate); verifiers compare the bundle against this body.
 */
function canonicalDsseEntry(proposed: unknown): unknown {
  const entry = proposed as {
    kind?: string;
    apiVersion?: string;
    spec?: { proposedContent?: { envelope?: string; verifiers?: string[] } };
  };
  const content = entry.spec?.proposedContent;
  if (entry.kind !== "dsse" || entry.apiVersion !== "0.0.1" || content === undefined) {
    throw new Error(`unsupported proposed entry ${entry.kind}/${entry.apiVersion}`);
  }
  const envelopeText = content.envelope ?? "";
  const envelope = JSON.parse(envelopeText) as {
    payload: string;
    signatures: { sig: string }[];
  };
  const verifier = content.verifiers?.[0];
  if (verifier === undefined || envelope.signatures.length !== 1) {
    throw new Error("expected one signature and one verifier");
  }
  return {
    apiVersion: "0.0.1",
    kind: "dsse",
    spec: {
      envelopeHash: { algorithm: "sha256", value: sha256(envelopeText).toString("hex") },
      payloadHash: {
        algorithm: "sha256",
        value: sha256(Buffer.from(envelope.payload, "base64")).toString("hex"),
      },
      signatures: envelope.signatures.map((s) => ({ signature: s.sig, verifier })),
    },
  };
}

/**
 * Starts Fulcio, Rekor and a TSA from `@sigstore/mock` on an ephemeral port
 * of 127.0.0.1. Fulcio puts the token's `email` claim in the certificate's
 * SAN (the mock encodes it as a URI SAN) and its `iss` in the issuer
 * extensions; Rekor logs the canonical `dsse` entry.
 */
export async function startLocalSigstore(): Promise<LocalSigstore> {
  const caKeys = keyPair();
  const ctKeys = keyPair();
  const rekorKeys = keyPair();
  const tsaKeys = keyPair();
  const routes = new Map<string, HandlerFn>();

  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen: () => {} },
    async (request) => {
      const fn = routes.get(new URL(request.url).pathname);
      if (fn === undefined || request.method !== "POST") {
        return new Response("not found", { status: 404 });
      }
      const result = await fn(await request.text());
      const body = typeof result.response === "string" ? result.response : new Uint8Array(
        result.response.buffer,
        result.response.byteOffset,
        result.response.byteLength,
      );
      return new Response(body, {
        status: result.statusCode,
        headers: { "content-type": result.contentType ?? "text/plain" },
      });
    },
  );
  const base = `http://127.0.0.1:${server.addr.port}`;
  const fulcioURL = `${base}/fulcio`;
  const rekorURL = `${base}/rekor`;
  const tsaURL = `${base}/tsa/api/v1/timestamp`;

  try {
    const ctLog = await initializeCTLog(ctKeys);
    const ca = await initializeCA(caKeys, ctLog);
    const fulcio = fulcioHandler(ca, { subjectClaim: "email" });
    routes.set(`/fulcio${fulcio.path}`, fulcio.fn);

    const tlog = await initializeTLog(rekorURL, rekorKeys);
    routes.set("/rekor/api/v1/log/entries", async (body) => {
      try {
        const entry = await tlog.log(canonicalDsseEntry(JSON.parse(body)) as object);
        return {
          statusCode: 201,
          response: JSON.stringify(entry),
          contentType: "application/json",
        };
      } catch (e) {
        return { statusCode: 400, response: e instanceof Error ? e.message : String(e) };
      }
    });

    const tsa = await initializeTSA(tsaKeys);
    // The mock writes genTime with milliseconds, trailing zeros trimmed
    // (".12Z"), which @sigstore/core's parser refuses: one timestamp in ten
    // would fail. Its clock is an instance field; make it read whole seconds.
    const clocked = tsa as unknown as { getCurrentTime?: () => Date };
    if (typeof clocked.getCurrentTime !== "function") {
      throw new Error(
        "@sigstore/mock TSA has no getCurrentTime: update the whole-second clock fix",
      );
    }
    clocked.getCurrentTime = () => new Date(Math.floor(Date.now() / 1000) * 1000);
    const timestamp = tsaHandler(tsa);
    routes.set(new URL(tsaURL).pathname, timestamp.fn);

    // Trust starts a minute back: the mock certificates are issued "now".
    const validFor = { start: new Date(Date.now() - 60_000).toISOString() };
    const ctKey = spki(ctKeys.publicKey);
    const rekorKey = spki(rekorKeys.publicKey);
    const trustedRoot = {
      mediaType: "application/vnd.dev.sigstore.trustedroot+json;version=0.1",
      tlogs: [{
        baseUrl: rekorURL,
        hashAlgorithm: "SHA2_256",
        publicKey: { rawBytes: b64(rekorKey), keyDetails: "PKIX_ECDSA_P256_SHA_256", validFor },
        logId: { keyId: sha256(rekorKey).toString("base64") },
      }],
      certificateAuthorities: [{
        subject: { organization: "sigstore.mock", commonName: "sigstore" },
        uri: fulcioURL,
        certChain: { certificates: [{ rawBytes: b64(ca.rootCertificate) }] },
        validFor,
      }],
      ctlogs: [{
        baseUrl: `${base}/ctlog`,
        hashAlgorithm: "SHA2_256",
        publicKey: { rawBytes: b64(ctKey), keyDetails: "PKIX_ECDSA_P256_SHA_256", validFor },
        logId: { keyId: sha256(ctKey).toString("base64") },
      }],
      timestampAuthorities: [{
        subject: { organization: "sigstore.mock", commonName: "tsa" },
        uri: tsaURL,
        certChain: {
          certificates: [{ rawBytes: b64(tsa.intCertificate) }, {
            rawBytes: b64(tsa.rootCertificate),
          }],
        },
        validFor,
      }],
    };

    return {
      fulcioURL,
      rekorURL,
      tsaURL,
      trustedRoot,
      token(identity, issuer) {
        const now = Math.floor(Date.now() / 1000);
        const header = b64url(JSON.stringify({ alg: "none", typ: "JWT" }));
        const claims = b64url(JSON.stringify({
          iss: issuer,
          sub: identity,
          aud: "sigstore",
          email: identity,
          email_verified: true,
          iat: now,
          exp: now + 600,
        }));
        return `${header}.${claims}.`;
      },
      close: () => server.shutdown(),
    };
  } catch (e) {
    await server.shutdown();
    throw e;
  }
}
