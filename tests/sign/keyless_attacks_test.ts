// deno-lint-ignore-file no-explicit-any
// Attacks on the WebCrypto keyless verifier, found by an independent review
// (bundles built with a self-contained Sigstore, ./_keyless_kit.ts): each is
// refused by it, and none is accepted by it while @sigstore/verify refuses.
// Cases: several SCTs where one fails, duplicate tlog entries, checkpoints
// signed by another or a retired log, non-minimal ECDSA integers, media types
// that only look like v0.1, a chain checked at every time, malformed fields
// (typed errors), loose trusted roots, a Rekor body logging another
// certificate, an entry without a SET resting on a TSA timestamp.
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import crypto from "node:crypto";
import { initializeTSA } from "@sigstore/mock";
import {
  b64,
  cat,
  leafCert,
  makeBundle,
  newKey,
  report,
  results,
  sctBytes,
  sha256,
  signSct,
  tlogEntry,
  world,
} from "./_keyless_kit.ts";

Deno.test("keyless attacks: every crafted case is refused by the WebCrypto verifier, with a typed error", async () => {
  // --- from t1_diffs.ts
  {
    // E1: two SCTs, the first verifies, the second is garbage from the same log
    {
      const w = world();
      const nb = new Date(Date.now() - 300_000);
      const b = makeBundle(w, {
        notBefore: nb,
        scts: (p) => [
          sctBytes({
            logId: w.ct.id,
            ts: BigInt(nb.getTime()),
            sig: signSct(w.ct, w.ca.spki, p, BigInt(nb.getTime())),
          }),
          sctBytes({
            logId: w.ct.id,
            ts: BigInt(nb.getTime()),
            sig: signSct(w.ct, w.ca.spki, cat(p, Uint8Array.of(0)), BigInt(nb.getTime())),
          }),
        ],
      });
      await report("E1 one good SCT + one bad SCT", b, w.trustedRoot);
    }
    // E1b: good SCT + SCT from an unknown log
    {
      const w = world();
      const nb = new Date(Date.now() - 300_000);
      const other = newKey();
      const b = makeBundle(w, {
        notBefore: nb,
        scts: (p) => [
          sctBytes({
            logId: w.ct.id,
            ts: BigInt(nb.getTime()),
            sig: signSct(w.ct, w.ca.spki, p, BigInt(nb.getTime())),
          }),
          sctBytes({
            logId: other.id,
            ts: BigInt(nb.getTime()),
            sig: signSct(other, w.ca.spki, p, BigInt(nb.getTime())),
          }),
        ],
      });
      await report("E1b good SCT + SCT from an untrusted log", b, w.trustedRoot);
    }
    // E2: same tlog entry twice
    {
      const w = world();
      const b = makeBundle(w, {
        entries: ({ envSig, payload, leaf }) => {
          const e = tlogEntry(w, envSig, payload, leaf);
          return [e, structuredClone(e)];
        },
      });
      await report("E2 duplicate tlog entry", b, w.trustedRoot);
    }
    // E3: checkpoint signed by a second trusted tlog, not the entry's log
    {
      const w = world();
      const other = newKey();
      const root = structuredClone(w.trustedRoot);
      root.tlogs.push({
        ...structuredClone(root.tlogs[0]),
        baseUrl: "https://other.example",
        publicKey: { ...root.tlogs[0].publicKey, rawBytes: b64(other.spki) },
        logId: { keyId: b64(other.id) },
      });
      const b = makeBundle(w, {
        entry: { checkpointSigner: { key: other, name: "other.example" } },
      });
      await report("E3 checkpoint signed by another trusted log", b, root);
    }
    // E3b: checkpoint signed by a log whose key validity ended long before the entry
    {
      const w = world();
      const other = newKey();
      const root = structuredClone(w.trustedRoot);
      root.tlogs.push({
        ...structuredClone(root.tlogs[0]),
        baseUrl: "https://rekor.example",
        publicKey: {
          ...root.tlogs[0].publicKey,
          rawBytes: b64(other.spki),
          validFor: { start: "2000-01-01T00:00:00Z", end: "2001-01-01T00:00:00Z" },
        },
        logId: { keyId: b64(other.id) },
      });
      const b = makeBundle(w, {
        entry: { checkpointSigner: { key: other, name: "rekor.example" } },
      });
      await report("E3b checkpoint signed by an expired (2000-2001) log key", b, root);
    }
    // E4: non-DER SET (extra 0x00 before r)
    {
      const w = world();
      const pad = (s: Uint8Array) => {
        // SEQ len INT rlen r... -> add a leading zero to r
        const rlen = s[3]!;
        const r = s.subarray(4, 4 + rlen);
        const rest = s.subarray(4 + rlen);
        const body = cat(Uint8Array.of(0x02, rlen + 1, 0), r, rest);
        return cat(Uint8Array.of(0x30, body.length), body);
      };
      const b = makeBundle(w, { entry: { mutateSet: pad } });
      await report("E4 SET with a non-minimal (BER) ECDSA integer", b, w.trustedRoot);
      const c = makeBundle(w, { mutateSig: pad });
      await report(
        "E4b leaf certificate signature with a non-minimal ECDSA integer",
        c,
        w.trustedRoot,
      );
    }
    // E6: garbage RFC3161 timestamp with a plausible genTime
    {
      const w = world();
      const g = new TextEncoder().encode(
        new Date(Date.now() - 200_000).toISOString().replace(/[-:T]/g, "").replace(/\.\d+Z/, "Z"),
      );
      const { seq, oid, tlv, int, octets } = await import("./_keyless_kit.ts");
      const tst = seq(
        int(1),
        oid("1.2.3"),
        seq(seq(oid("2.16.840.1.101.3.4.2.1")), octets(new Uint8Array(32))),
        int(5),
        tlv(0x18, g),
      );
      const ci = seq(
        oid("1.2.840.113549.1.7.2"),
        tlv(
          0xa0,
          seq(int(3), tlv(0x31), seq(oid("1.2.840.113549.1.9.16.1.4"), tlv(0xa0, octets(tst)))),
        ),
      );
      const b = makeBundle(w, { tsa: { rfc3161Timestamps: [{ signedTimestamp: b64(ci) }] } });
      await report("E6 unsigned RFC 3161 timestamp (genTime in validity)", b, w.trustedRoot);
    }
    // E7: media type that says v0.1 somewhere, no inclusion proof
    {
      const w = world();
      const b = makeBundle(w, {
        mediaType: "application/vnd.dev.sigstore.bundle.v0.3+json;v0.1",
        entry: { proof: "none" },
      });
      await report("E7 v0.3 media type with a 'v0.1' suffix, SET only", b, w.trustedRoot);
      const c = makeBundle(w, {
        mediaType: "application/vnd.dev.sigstore.bundle.v0.1+json",
        entry: { proof: "none" },
      });
      await report(
        "E7b 'bundle.v0.1+json' media type (not the registered v0.1 name), SET only",
        c,
        w.trustedRoot,
      );
    }
    // E8: two entries; the second after the CA's validFor end (inside leaf validity)
    {
      const now = Math.floor(Date.now() / 1000);
      const w = world({ caEnd: new Date((now - 200) * 1000) });
      const b = makeBundle(w, {
        entries: ({ envSig, payload, leaf }) => [
          tlogEntry(w, envSig, payload, leaf, { integratedTime: now - 250, logIndex: 0 }),
          tlogEntry(w, envSig, payload, leaf, { integratedTime: now - 100, logIndex: 1 }),
        ],
      });
      await report("E8 second entry after the CA's validFor.end", b, w.trustedRoot);
    }
  }

  // --- from t2_errors.ts
  {
    const w = world();
    // body with spec.signatures not a list (no valid SET needed: the body is read first)
    {
      const b = makeBundle(w, {
        entries: ({ envSig, payload, leaf }) => [
          tlogEntry(w, envSig, payload, leaf, {
            bodyOverride: { apiVersion: "0.0.1", kind: "dsse", spec: { signatures: "x" } },
          }),
        ],
      });
      await report("E12a body spec.signatures is a string", b, w.trustedRoot);
    }
    {
      const b = makeBundle(w, {
        entries: ({ envSig, payload, leaf }) => [
          tlogEntry(w, envSig, payload, leaf, {
            bodyOverride: {
              apiVersion: "0.0.2",
              kind: "intoto",
              spec: { content: { envelope: { signatures: {} } } },
            },
          }),
        ],
      });
      b.verificationMaterial.tlogEntries[0].kindVersion = { kind: "intoto", version: "0.0.2" };
      await report("E12b intoto envelope.signatures is an object", b, w.trustedRoot);
    }
    {
      const b: any = makeBundle(w);
      b.verificationMaterial.tlogEntries[0].inclusionProof.hashes = "abc";
      await report("E12c inclusionProof.hashes is a string", b, w.trustedRoot);
    }
    {
      const b: any = makeBundle(w);
      b.verificationMaterial.timestampVerificationData = { rfc3161Timestamps: "abc" };
      await report("E12d rfc3161Timestamps is a string", b, w.trustedRoot);
    }
    {
      const b: any = makeBundle(w);
      b.verificationMaterial.tlogEntries[0].inclusionProof.checkpoint = {
        envelope: "a\n\n\u2014 x AAAAAAAA",
      };
      await report("E12e checkpoint", b, w.trustedRoot);
    }
  }

  // --- from t4_root.ts
  {
    {
      const w = world();
      const root = structuredClone(w.trustedRoot);
      root.tlogs[0].publicKey.keyDetails = "PKCS1_RSA_PKCS1V5"; // but the bytes are an EC SPKI
      await report(
        "R1 tlog key labelled PKCS1_ but holding an EC SPKI (used by web)",
        makeBundle(w),
        root,
      );
    }
    {
      const w = world();
      const root = structuredClone(w.trustedRoot);
      root.ctlogs.push({
        ...structuredClone(root.ctlogs[0]),
        publicKey: {
          rawBytes: "AAAA",
          keyDetails: "PKCS1_RSA_PKCS1V5",
          validFor: root.ctlogs[0].publicKey.validFor,
        },
      });
      await report("R2 extra ctlog with a broken PKCS1 key", makeBundle(w), root);
    }
    {
      const w = world({ caEnd: new Date(Date.now() - 1000 * 1000) });
      const root = structuredClone(w.trustedRoot);
      root.certificateAuthorities[0].validFor.end = Date.now() - 1000 * 1000; // a number, not a string
      await report(
        "R3 CA validFor.end given as a number (web: no end; the CA ended 1000 s ago)",
        makeBundle(w),
        root,
      );
    }
    {
      const w = world();
      const root = JSON.parse(JSON.stringify(w.trustedRoot));
      root.tlogs[0].publicKey.validFor.end = 0; // epoch: the log key ended in 1970
      await report(
        "R4 tlog validFor.end = 0 (a number: the key ended in 1970; web: no end)",
        makeBundle(w),
        root,
      );
    }
  }

  // --- from t5_verifier.ts
  {
    const w = world();
    // The Rekor body names another certificate (another identity) as the verifier of the signature.
    const other = leafCert(w, newKey(), { email: "someone-else@example.com" });
    const b = makeBundle(w, {
      entries: ({ envSig, payload }) => [tlogEntry(w, envSig, payload, other)],
    });
    await report(
      "V1 Rekor body's verifier is a different certificate (someone-else@example.com)",
      b,
      w.trustedRoot,
    );
  }

  // --- from t6_wt_tsa.ts
  {
    // Work-tree only (uncommitted RFC 3161 support): an entry without a SET rests on
    // its inclusion proof + checkpoint and a TSA time. The checkpoint may be signed
    // by ANY trusted tlog key (another log, or one whose validity ended long ago).
    const tsaKeys = crypto.generateKeyPairSync("ec", { namedCurve: "prime256v1" });
    const tsa = await initializeTSA(tsaKeys as any);
    (tsa as any).getCurrentTime = () => new Date(Math.floor(Date.now() / 1000) * 1000);
    await new Promise((r) => setTimeout(r, 1100));
    const withTsa = async (w: any, entryOpts: any, root: any, label: string) => {
      let envSigSeen: Uint8Array | undefined;
      const b: any = makeBundle(w, {
        entries: ({ envSig, payload, leaf }) => {
          envSigSeen = envSig;
          const e = tlogEntry(w, envSig, payload, leaf, entryOpts);
          delete e.inclusionPromise;
          return [e];
        },
      });
      const tok = await tsa.timestamp(
        {
          artifactHash: Buffer.from(sha256(envSigSeen!)),
          hashAlgorithmOID: "2.16.840.1.101.3.4.2.1",
          nonce: 7,
          policyOID: "1.2.3.4",
          certReq: true,
        } as any,
      );
      b.verificationMaterial.timestampVerificationData = {
        rfc3161Timestamps: [{
          signedTimestamp: b64(new Uint8Array(tok.buffer, tok.byteOffset, tok.byteLength)),
        }],
      };
      const r = JSON.parse(JSON.stringify(root));
      r.timestampAuthorities = [{
        subject: { commonName: "tsa" },
        certChain: {
          certificates: [{
            rawBytes: b64(
              new Uint8Array(
                tsa.intCertificate.buffer,
                tsa.intCertificate.byteOffset,
                tsa.intCertificate.byteLength,
              ),
            ),
          }, {
            rawBytes: b64(
              new Uint8Array(
                tsa.rootCertificate.buffer,
                tsa.rootCertificate.byteOffset,
                tsa.rootCertificate.byteLength,
              ),
            ),
          }],
        },
        validFor: { start: new Date(Date.now() - 3600_000).toISOString() },
      }];
      await report(label, b, r);
    };
    const w = world();
    await withTsa(w, {}, w.trustedRoot, "T0 no SET, proof by the entry's log, TSA");
    {
      const old = newKey();
      const root = JSON.parse(JSON.stringify(w.trustedRoot));
      root.tlogs.push({
        baseUrl: "https://rekor.example",
        hashAlgorithm: "SHA2_256",
        publicKey: {
          rawBytes: b64(old.spki),
          keyDetails: "PKIX_ECDSA_P256_SHA_256",
          validFor: { start: "2000-01-01T00:00:00Z", end: "2001-01-01T00:00:00Z" },
        },
        logId: { keyId: b64(old.id) },
      });
      await withTsa(
        w,
        { checkpointSigner: { key: old, name: "rekor.example" } },
        root,
        "T1 no SET, checkpoint signed by a retired (2000-2001) key of another trusted log",
      );
    }
  }
  assert.ok(results.length >= 20, `only ${results.length} cases`);
  const accepted = results.filter((r) => r.web.startsWith("ACCEPT"));
  // The baselines (a plain valid bundle, an entry without SET resting on a
  // TSA timestamp) are the only accepted cases, and @sigstore/verify accepts them too.
  for (const r of accepted) {
    assert.ok(r.js.startsWith("ACCEPT"), `${r.label}: web accepts, sigstore-js refuses (${r.js})`);
    assert.match(r.label, /^(T0|B0|baseline)/, `${r.label}: accepted`);
  }
  for (const r of results.filter((r) => !r.web.startsWith("ACCEPT"))) {
    assert.match(r.web, /^REFUSE (VerificationError|PolicyError)/, `${r.label}: ${r.web}`);
  }
});
