// Certificates read with our own DER reader (sign/_x509.ts): the fields chain
// checks use, compared with what OpenSSL prints for the fixture certificates,
// and seeded mutations that must only ever yield DerError.
import assert from "node:assert/strict";
import { DerError, parseCertificate, pemBlocks } from "../../sign/_x509.ts";
import { fixture, prng } from "../_helpers.ts";

const der = (name: string) =>
  pemBlocks(Deno.readTextFileSync(fixture(`oms/keys/${name}`)), "CERTIFICATE")[0]!;

Deno.test("parseCertificate reads what OpenSSL reads from the fixture certificates", () => {
  const ca = parseCertificate(der("int-ca-cert.pem"));
  assert.equal(ca.subjectName, "CN=intermediate-ca");
  assert.equal(ca.issuerName, "CN=root-ca");
  assert.equal(ca.notBefore.toISOString(), "2025-05-02T23:36:28.000Z");
  assert.equal(ca.notAfter.toISOString(), "2035-04-30T23:36:28.000Z");
  assert.deepEqual(ca.basicConstraints, { ca: true, pathLen: undefined });
  assert.equal(ca.keyUsage?.[5], 1); // keyCertSign
  assert.equal(ca.keyUsage?.[0], 0);
  assert.equal(ca.signatureAlgorithm, "1.2.840.113549.1.1.11"); // sha256WithRSAEncryption

  const leaf = parseCertificate(der("signing-key-cert.pem"));
  assert.equal(leaf.subjectName, "CN=intermediate-ca");
  assert.equal(leaf.keyUsage?.[0], 1); // digitalSignature
  // The signed part is a prefix-free slice of the certificate itself.
  const at = leaf.der.findIndex((_, i) => leaf.tbs.every((b, j) => leaf.der[i + j] === b));
  assert.ok(at > 0 && at < 8);
});

Deno.test("parseCertificate refuses trailing bytes, truncation and bad times", () => {
  const good = der("ca-cert.pem");
  assert.throws(() => parseCertificate(Uint8Array.from([...good, 0])), DerError);
  assert.throws(() => parseCertificate(good.subarray(0, good.length - 1)), DerError);
  // A validity date with month 13.
  const text = new TextDecoder("latin1").decode(good);
  const i = text.search(/\d{12}Z/);
  assert.ok(i > 0);
  const bad = good.slice();
  bad[i + 2] = 0x31; // month "1x"
  bad[i + 3] = 0x33; // → "13"
  assert.throws(() => parseCertificate(bad), DerError);
});

Deno.test("mutated certificates never escape as anything but DerError (seeded)", () => {
  const next = prng(0xce27);
  const bases = ["ca-cert.pem", "int-ca-cert.pem", "signing-key-cert.pem"].map(der);
  for (let n = 0; n < 20_000; n++) {
    const base = bases[n % bases.length]!;
    const m = base.slice(0, Math.max(1, Math.floor(next() * (base.length + 8))));
    for (let k = 0, c = 1 + Math.floor(next() * 4); k < c; k++) {
      m[Math.floor(next() * m.length)] = Math.floor(next() * 256);
    }
    try {
      parseCertificate(m);
    } catch (e) {
      assert.ok(e instanceof DerError, `mutant ${n}: ${e}`);
    }
  }
});
