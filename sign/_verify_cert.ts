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
  type GeneralName,
  type GeneralSubtree,
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

export async function issuedBy(cert: Certificate, issuer: Certificate): Promise<boolean> {
  if (!sameName(issuer, cert)) return false;
  const scheme = certSignatureScheme(cert.signatureAlgorithm);
  if (scheme === undefined) return false;
  return await verifyWithSpki(issuer.spki, scheme, cert.signature, cert.tbs);
}

// --- path validation (RFC 5280 section 6, the parts that apply here) -------

/**
 * Extensions we act on, so they may be critical: basicConstraints, keyUsage,
 * extKeyUsage, subjectAltName and nameConstraints are processed below.
 * subjectKeyIdentifier and authorityKeyIdentifier are never critical by RFC
 * 5280 (4.2.1.1, 4.2.1.2), but we accept them marked so (OpenSSL does not):
 * they only name keys to help build paths, and we build paths by name and
 * signature, so ignoring them cannot let more through. Any other critical
 * extension (certificatePolicies, policyConstraints, CRL distribution points,
 * the CT precertificate poison, private ones) refuses the path (4.2).
 */
const KNOWN_CRITICAL = new Set([
  "2.5.29.19", // basicConstraints
  "2.5.29.15", // keyUsage
  "2.5.29.37", // extKeyUsage
  "2.5.29.17", // subjectAltName
  "2.5.29.30", // nameConstraints
  "2.5.29.14", // subjectKeyIdentifier
  "2.5.29.35", // authorityKeyIdentifier
]);

const CODE_SIGNING = "1.3.6.1.5.5.7.3.3";
const PURPOSES: Record<string, string> = {
  "1.3.6.1.5.5.7.3.1": "serverAuth",
  "1.3.6.1.5.5.7.3.2": "clientAuth",
  [CODE_SIGNING]: "codeSigning",
  "1.3.6.1.5.5.7.3.4": "emailProtection",
  "1.3.6.1.5.5.7.3.8": "timeStamping",
  "1.3.6.1.5.5.7.3.9": "OCSPSigning",
  "2.5.29.37.0": "anyExtendedKeyUsage",
};

const selfIssued = (c: Certificate) => sameBytes(c.subject, c.issuer);

/** How messages name the certificate at `depth` of a path of `length`. */
function role(cert: Certificate, depth: number, length: number): string {
  const what = depth === 0 ? "leaf" : depth === length - 1 ? "trusted root" : "intermediate";
  return `${what} certificate ${cert.subjectName}`;
}

/**
 * Why a path (leaf first, trust anchor last) is not acceptable at `at`, or
 * undefined. `now` only bounds `at` from above.
 */
function pathProblem(
  path: Certificate[],
  at: Date,
  now: Date,
  when: string,
  leafCheck: (leaf: Certificate, name: string) => string | undefined = leafUsageProblem,
): string | undefined {
  const name = (depth: number) => role(path[depth]!, depth, path.length);
  const leaf = path[0]!;
  if (at > now) {
    return `${
      name(0)
    } is not valid yet: it starts at ${at.toISOString()}, after now (${now.toISOString()}), so it cannot have made an existing signature`;
  }
  for (const [depth, cert] of path.entries()) {
    if (at < cert.notBefore || at > cert.notAfter) {
      return `${
        name(depth)
      } is not valid at ${at.toISOString()} (${when}): valid from ${cert.notBefore.toISOString()} to ${cert.notAfter.toISOString()}`;
    }
    const unknown = [...cert.critical].filter((oid) => !KNOWN_CRITICAL.has(oid));
    if (unknown.length > 0) {
      return `${name(depth)} has critical extension ${
        unknown.join(", ")
      } that this verifier does not process (RFC 5280 4.2: refuse)`;
    }
  }
  for (const [depth, issuer] of path.entries()) {
    if (depth === 0) continue;
    if (issuer.basicConstraints?.ca !== true) {
      return `issuer ${issuer.subjectName} is not a CA (${
        name(depth)
      }): expected basicConstraints cA=TRUE, found ${
        issuer.basicConstraints === undefined ? "no basicConstraints" : "cA=FALSE"
      }`;
    }
    if (issuer.keyUsage !== undefined && issuer.keyUsage[5] !== 1) {
      return `issuer ${issuer.subjectName} may not sign certificates (${
        name(depth)
      }): its keyUsage lacks keyCertSign`;
    }
    // RFC 5280 6.1.4 (l), (m): pathLenConstraint counts the intermediates
    // below this CA, leaving out the leaf and self-issued ones.
    const pathLen = issuer.basicConstraints.pathLen;
    const below = path.slice(1, depth).filter((c) => !selfIssued(c)).length;
    if (pathLen !== undefined && below > pathLen) {
      return `${name(depth)} allows ${pathLen} intermediate certificate${
        pathLen === 1 ? "" : "s"
      } below it (basicConstraints pathLenConstraint), found ${below}`;
    }
  }
  return leafCheck(leaf, name(0)) ?? nameConstraintsProblem(path, name);
}

/**
 * What the leaf may sign: keyUsage, when present, must have digitalSignature;
 * extendedKeyUsage, when present, must have codeSigning (anyExtendedKeyUsage
 * does not do: OpenSSL's codesign purpose refuses it too); and one of them
 * must be there, as model_signing accepts a signing certificate only with
 * digitalSignature or codeSigning (sign_certificate.py, Verifier).
 */
function leafUsageProblem(leaf: Certificate, name: string): string | undefined {
  if (leaf.keyUsage !== undefined && leaf.keyUsage[0] !== 1) {
    return `${name} may not sign: its keyUsage lacks digitalSignature`;
  }
  const eku = leaf.extKeyUsage;
  if (eku !== undefined && !eku.includes(CODE_SIGNING)) {
    return `${name} may not sign code: its extendedKeyUsage is ${
      eku.map((oid) => PURPOSES[oid] ?? oid).join(", ")
    }, expected codeSigning (${CODE_SIGNING})`;
  }
  if (leaf.keyUsage === undefined && eku === undefined) {
    return `${name} has neither keyUsage nor extendedKeyUsage: expected digitalSignature or codeSigning (as model_signing requires)`;
  }
  return undefined;
}

/**
 * nameConstraints (RFC 5280 4.2.1.10, 6.1.3 (b)/(c), 6.1.4 (g)) of every CA
 * on the path, the trust anchor's included (as OpenSSL does), applied to the
 * certificates below it, self-issued intermediates left out. Each CA is
 * checked in turn, which is the intersection of the permitted subtrees.
 * Names checked: the subject (directoryName), the subject's emailAddress
 * attributes (rfc822Name) and every subjectAltName. We compare rfc822Name,
 * dNSName, URI (its host), directoryName and iPAddress; a name of another
 * form that a subtree of the same form constrains is refused, critical or
 * not (fail closed), as are subtrees with minimum/maximum.
 */
function nameConstraintsProblem(
  path: Certificate[],
  name: (depth: number) => string,
): string | undefined {
  for (const [caDepth, ca] of path.entries()) {
    const nc = ca.nameConstraints;
    if (nc === undefined || caDepth === 0) continue;
    for (let depth = 0; depth < caDepth; depth++) {
      const cert = path[depth]!;
      if (depth > 0 && selfIssued(cert)) continue;
      for (const n of namesOf(cert)) {
        const permitted = nc.permitted.filter((t) => t.base.form === n.form);
        const excluded = nc.excluded.filter((t) => t.base.form === n.form);
        const where = `${name(depth)}: its ${n.form} ${n.text}`;
        const of = `the nameConstraints of ${name(caDepth)}`;
        if (permitted.length + excluded.length === 0) continue;
        if ([...permitted, ...excluded].some((t) => t.bounded)) {
          return `${where} is constrained by a subtree with minimum or maximum in ${of}, which RFC 5280 does not allow`;
        }
        const within = (t: GeneralSubtree) => nameWithin(n, t.base);
        const results = [...permitted, ...excluded].map(within);
        if (results.includes(undefined)) {
          return `${where} cannot be checked against ${n.form} subtrees (${
            [...permitted, ...excluded].map((t) => t.base.text).join(", ")
          }) in ${of}`;
        }
        if (permitted.length > 0 && !permitted.some(within)) {
          return `${where} is outside the permitted subtrees (${
            permitted.map((t) => t.base.text).join(", ")
          }) of ${of}`;
        }
        const hit = excluded.find(within);
        if (hit !== undefined) {
          return `${where} is inside the excluded subtree ${hit.base.text} of ${of}`;
        }
      }
    }
  }
  return undefined;
}

function namesOf(cert: Certificate): GeneralName[] {
  const names: GeneralName[] = [];
  if (cert.subjectRdns.length > 0) {
    names.push({ form: "directoryName", rdns: cert.subjectRdns, text: cert.subjectName });
  }
  for (const email of cert.subjectEmails) names.push({ form: "rfc822Name", text: email });
  return [...names, ...cert.altNames];
}

/** Whether `name` is within the subtree `base` (same form); undefined when it cannot tell. */
function nameWithin(name: GeneralName, base: GeneralName): boolean | undefined {
  const lower = (s: string) => s.toLowerCase();
  // A host within a domain constraint: ".example.com" means below it,
  // "example.com" the host itself (and for dNSName, below it too).
  const hostWithin = (host: string, domain: string, below: boolean) => {
    const h = lower(host), d = lower(domain);
    if (d === "") return true;
    if (d.startsWith(".")) return h.endsWith(d);
    return h === d || (below && h.endsWith(`.${d}`));
  };
  switch (name.form) {
    case "rfc822Name": {
      const at = name.text.lastIndexOf("@");
      if (at <= 0 || base.form !== name.form) return undefined;
      const host = name.text.slice(at + 1);
      // "a@example.com": that mailbox; "example.com": that host; ".example.com": below it.
      if (base.text.includes("@")) {
        const b = base.text.lastIndexOf("@");
        return name.text.slice(0, at) === base.text.slice(0, b) &&
          lower(host) === lower(base.text.slice(b + 1));
      }
      return hostWithin(host, base.text, false);
    }
    case "dNSName":
      return base.form === name.form ? hostWithin(name.text, base.text, true) : undefined;
    case "uniformResourceIdentifier": {
      const host = uriHost(name.text);
      if (host === undefined || base.form !== name.form) return undefined;
      return hostWithin(host, base.text, false);
    }
    case "directoryName":
      return base.form === name.form
        ? base.rdns.length <= name.rdns.length && base.rdns.every((r, i) => r === name.rdns[i])
        : undefined;
    case "iPAddress": {
      if (base.form !== name.form || base.bytes.length !== 2 * name.bytes.length) return false;
      const n = name.bytes.length;
      return name.bytes.every((b, i) =>
        (b & base.bytes[n + i]!) === (base.bytes[i]! & base.bytes[n + i]!)
      );
    }
    default:
      return undefined;
  }
}

/** The host of a URI with an authority (RFC 3986: after userinfo, before port); else undefined. */
function uriHost(uri: string): string | undefined {
  const authority = /^[a-z][a-z0-9+.-]*:\/\/([^/?#]*)/i.exec(uri)?.[1];
  if (authority === undefined) return undefined;
  const hostPort = authority.slice(authority.lastIndexOf("@") + 1);
  // An IP literal is no domain: such a URI cannot be checked against one.
  if (hostPort.startsWith("[")) return undefined;
  const host = hostPort.replace(/:\d*$/, "");
  return host === "" ? undefined : host;
}

/**
 * A certification path from `leaf` through certificates of `pool` to one of
 * `roots`, valid at `at` (`when` says what that time is, for messages), or
 * why there is none. Signature checks are cached and the search budgeted,
 * so crafted chains of look-alike certificates cannot explode it.
 */
export async function findPath(
  leaf: Certificate,
  pool: Certificate[],
  roots: Certificate[],
  at: Date,
  when: string,
  leafCheck: (leaf: Certificate, name: string) => string | undefined = leafUsageProblem,
): Promise<{ path: Certificate[] } | { problem: string }> {
  const now = new Date();
  const distinct = pool.filter((c, i, all) =>
    c !== leaf && all.findIndex((d) => sameBytes(c.der, d.der)) === i
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
        const p = pathProblem(full, at, now, when, leafCheck);
        if (p === undefined) return full;
        problem ??= p;
      }
    }
    if (path.length >= MAX_CHAIN) return undefined;
    for (const next of distinct) {
      if (path.includes(next) || !await signs(last, next)) continue;
      const found = await search([...path, next]);
      if (found !== undefined) return found;
    }
    return undefined;
  };
  const path = await search([leaf]);
  if (path !== undefined) return { path };
  if (problem !== undefined) return { problem: `Cannot verify certificate chain: ${problem}` };
  const deadEnd = deepest[deepest.length - 1]!;
  const end = deadEnd === leaf ? "leaf" : `chain ending at ${deadEnd.subjectName},`;
  return {
    problem:
      `Cannot verify certificate chain: it does not lead to any of the ${roots.length} trusted roots (${end} issued by ${deadEnd.issuerName})`,
  };
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
  await checkDsse(
    leaf.spki,
    envelope,
    fail,
    `the leaf certificate ${leaf.subjectName}`,
    undefined,
    "sha256",
  );

  // The time the path must be valid at. Certificate mode: the leaf's
  // notBefore, as model_signing's certificate verifier sets it
  // (sign_certificate.py: `X509Store.set_time(not_valid_before_utc)`), so a
  // signature outlives its short-lived certificate; and no later than now.
  // Keyless bundles are checked by @sigstore/verify at their tlog or TSA
  // time instead; key bundles have no certificate and no time.
  const at = leaf.notBefore;
  const found = await findPath(
    leaf,
    certs.slice(1),
    roots,
    at,
    "the leaf's notBefore, when it signed",
  );
  if ("problem" in found) return fail("untrusted-certificate", found.problem);
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
