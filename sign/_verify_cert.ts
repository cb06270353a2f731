// Certificate-chain bundles (model_signing's certificate mode) and the
// dispatch over the three kinds of bundle, with WebCrypto and the minimal DER
// reader only. Keyless Sigstore comes in as a KeylessVerifier from
// _verify_bundle.ts (node:crypto); browsers go without it.
import type { TrustMaterial } from "./types.ts";
import { decodeBase64 } from "./_dsse.ts";
import {
  checkDsse,
  describe,
  type Envelope,
  errorText,
  type Fail,
  isRecord,
  readBundle,
  sameBytes,
  type VerifiedBundle,
  verifyKey,
} from "./_verify_key.ts";
import {
  type Certificate,
  certSignatureScheme,
  DerError,
  parseCertificate,
  pemBlocks,
  sha256Hex,
  toPem,
  verifyWithSpki,
} from "./_x509.ts";

const MAX_CHAIN = 8;

/** Checks a Sigstore keyless bundle (Fulcio certificate, Rekor entries). */
export type KeylessVerifier = (
  bundle: Record<string, unknown>,
  leaf: Certificate,
  envelope: Envelope,
  trust: TrustMaterial,
  fail: Fail,
  bad: (message: string, cause?: unknown) => never,
) => Promise<VerifiedBundle>;

/**
 * Verifies a Sigstore bundle (parsed JSON) against `trust`: key and
 * certificate-chain bundles here, keyless ones with `keyless` (which needs
 * node:crypto; without it they are refused by name).
 */
export async function verifyBundleWith(
  keyless: KeylessVerifier | undefined,
  bundle: unknown,
  trust: TrustMaterial,
  file?: string,
): Promise<VerifiedBundle> {
  const { record, mediaType, vm, envelope, kind, hasTlog, fail, bad } = readBundle(bundle, file);
  const noKeyless = (): never =>
    fail(
      "untrusted-certificate",
      "Cannot verify a Sigstore (keyless) bundle in this runtime: it needs node:crypto (use a key or certificate signature, or pin digests in a lockfile)",
    );
  switch (kind) {
    case "publicKey":
      return await verifyKey(vm.publicKey, envelope, trust, fail, bad);
    case "x509CertificateChain": {
      const certs = readChain(vm.x509CertificateChain, bad);
      // v0.1/v0.2 keyless bundles carry Fulcio chains with tlog entries;
      // model_signing's certificate mode writes v0.3 chains without them.
      if (hasTlog && !/v0\.3|version=0\.3/.test(mediaType)) {
        if (!keyless) return noKeyless();
        return await keyless(record, certs[0]!, envelope, trust, fail, bad);
      }
      return await verifyCertificateChain(certs, envelope, trust, fail);
    }
    default: {
      const c = vm.certificate;
      const cert = readCert(isRecord(c) ? c.rawBytes : undefined, "certificate", bad);
      if (!keyless) return noKeyless();
      return await keyless(record, cert, envelope, trust, fail, bad);
    }
  }
}

export function readCert(rawBytes: unknown, what: string, bad: (m: string, c?: unknown) => never) {
  const der = typeof rawBytes === "string" ? decodeBase64(rawBytes) : undefined;
  if (der === undefined) return bad(`expected ${what}.rawBytes in base64`);
  try {
    return parseCertificate(der);
  } catch (e) {
    return bad(`${what} is not an X.509 certificate (${errorText(e)})`, e);
  }
}

export function readChain(value: unknown, bad: (m: string) => never): Certificate[] {
  const certs = isRecord(value) ? value.certificates : undefined;
  if (!Array.isArray(certs) || certs.length === 0 || certs.length > MAX_CHAIN) {
    return bad(
      `expected x509CertificateChain.certificates with 1 to ${MAX_CHAIN} certificates, found ${
        Array.isArray(certs) ? certs.length : describe(certs)
      }`,
    );
  }
  return certs.map((c, i) =>
    readCert(isRecord(c) ? c.rawBytes : undefined, `x509CertificateChain.certificates[${i}]`, bad)
  );
}

// --- certificate mode -------------------------------------------------------

function readRoots(pems: string[], fail: Fail): Certificate[] {
  const roots: Certificate[] = [];
  for (const [i, pem] of pems.entries()) {
    try {
      const blocks = pemBlocks(pem, "CERTIFICATE");
      if (blocks.length === 0) throw new DerError("no CERTIFICATE PEM");
      for (const der of blocks) roots.push(parseCertificate(der));
    } catch (e) {
      return fail(
        "untrusted-certificate",
        `Cannot read trusted root certificate ${i + 1}: ${errorText(e)}`,
        e,
      );
    }
  }
  return roots;
}

const sameName = (a: Certificate, issuerOf: Certificate) => sameBytes(a.subject, issuerOf.issuer);

async function issuedBy(cert: Certificate, issuer: Certificate): Promise<boolean> {
  if (!sameName(issuer, cert)) return false;
  const scheme = certSignatureScheme(cert.signatureAlgorithm);
  if (scheme === undefined) return false;
  return await verifyWithSpki(issuer.spki, scheme, cert.signature, cert.tbs);
}

/** Why a path (leaf first, trust anchor last) is not acceptable now, or undefined. */
function pathProblem(path: Certificate[], now: Date): string | undefined {
  for (const cert of path) {
    if (now < cert.notBefore || now > cert.notAfter) {
      return `certificate ${cert.subjectName} is not valid at ${now.toISOString()} (valid from ${cert.notBefore.toISOString()} to ${cert.notAfter.toISOString()})`;
    }
  }
  for (const [depth, issuer] of path.entries()) {
    if (depth === 0) continue;
    if (issuer.basicConstraints?.ca !== true) {
      return `issuer ${issuer.subjectName} is not a CA (no basicConstraints cA=TRUE)`;
    }
    if (issuer.keyUsage !== undefined && issuer.keyUsage[5] !== 1) {
      return `issuer ${issuer.subjectName} may not sign certificates (keyUsage lacks keyCertSign)`;
    }
    // pathLen counts the intermediates below this issuer (excluding the leaf).
    const pathLen = issuer.basicConstraints.pathLen;
    if (pathLen !== undefined && depth - 1 > pathLen) {
      return `issuer ${issuer.subjectName} allows ${pathLen} intermediate certificates below it, found ${
        depth - 1
      }`;
    }
  }
  const leaf = path[0]!;
  if (leaf.keyUsage !== undefined && leaf.keyUsage[0] !== 1) {
    return `leaf certificate ${leaf.subjectName} may not sign (keyUsage lacks digitalSignature)`;
  }
  return undefined;
}

async function verifyCertificateChain(
  certs: Certificate[],
  envelope: Envelope,
  trust: TrustMaterial,
  fail: Fail,
): Promise<VerifiedBundle> {
  const leaf = certs[0]!;
  const roots = readRoots(trust.certificateRoots ?? [], fail);
  if (roots.length === 0) {
    return fail(
      "untrusted-certificate",
      "Cannot verify certificate-signed bundle: no trusted root certificates given",
    );
  }
  await checkDsse(leaf.spki, envelope, fail, `the leaf certificate ${leaf.subjectName}`);

  const now = new Date();
  // Distinct chain certificates; signature checks are cached and the search
  // is budgeted, so crafted chains of look-alike certificates cannot make it
  // explode combinatorially.
  const pool = certs.filter((c, i, all) =>
    i > 0 && all.findIndex((d) => sameBytes(c.der, d.der)) === i
  );
  const cache = new Map<Certificate, Map<Certificate, Promise<boolean>>>();
  const signs = (cert: Certificate, issuer: Certificate): Promise<boolean> => {
    let row = cache.get(cert);
    if (row === undefined) cache.set(cert, row = new Map());
    let result = row.get(issuer);
    if (result === undefined) row.set(issuer, result = issuedBy(cert, issuer));
    return result;
  };
  let budget = 256;
  let problem: string | undefined;
  let deepest = [leaf];
  // Depth-first search over issuers: trusted roots end a path, chain
  // certificates extend it (each used at most once).
  const search = async (path: Certificate[]): Promise<Certificate[] | undefined> => {
    const last = path[path.length - 1]!;
    if (path.length > deepest.length) deepest = path;
    if (--budget < 0) return undefined;
    for (const root of roots) {
      if (await signs(last, root)) {
        const full = [...path, root];
        const p = pathProblem(full, now);
        if (p === undefined) return full;
        problem ??= p;
      }
    }
    if (path.length >= MAX_CHAIN) return undefined;
    for (const next of pool) {
      if (path.includes(next) || !await signs(last, next)) continue;
      const found = await search([...path, next]);
      if (found !== undefined) return found;
    }
    return undefined;
  };
  const path = await search([leaf]);
  if (path === undefined) {
    if (problem !== undefined) {
      return fail("untrusted-certificate", `Cannot verify certificate chain: ${problem}`);
    }
    const deadEnd = deepest[deepest.length - 1]!;
    const end = deadEnd === leaf ? "leaf" : `chain ending at ${deadEnd.subjectName},`;
    return fail(
      "untrusted-certificate",
      `Cannot verify certificate chain: it does not lead to any of the ${roots.length} trusted roots (${end} issued by ${deadEnd.issuerName})`,
    );
  }
  return {
    payload: envelope.payload,
    payloadType: envelope.payloadType,
    signer: {
      kind: "certificate",
      identities: [...leaf.emails, ...leaf.uris],
      issuer: undefined,
      keyFingerprint: await sha256Hex(leaf.spki),
      pem: toPem("CERTIFICATE", leaf.der),
      signedAt: undefined,
    },
  };
}
