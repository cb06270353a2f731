// The minimal DER reader behind key types and ECDSA signatures
// (sign/_spki.ts): known answers for every key type WebCrypto makes, and
// seeded mutations that must only ever yield DerError (keys) or undefined
// (signatures), never another exception or a hang.
import assert from "node:assert/strict";
import { DerError, ecdsaDerToP1363, spkiKeyType, verifyWithSpki } from "../../sign/_spki.ts";
import { prng } from "../_helpers.ts";

async function spkiOf(algorithm: EcKeyGenParams | RsaHashedKeyGenParams | { name: "Ed25519" }) {
  const pair = await crypto.subtle.generateKey(algorithm, true, [
    "sign",
    "verify",
  ]) as CryptoKeyPair;
  return { pair, spki: new Uint8Array(await crypto.subtle.exportKey("spki", pair.publicKey)) };
}

/** WebCrypto's raw r||s ECDSA signature as DER (SEQUENCE of two INTEGERs). */
function toDer(raw: Uint8Array): Uint8Array {
  const int = (v: Uint8Array) => {
    let i = 0;
    while (i < v.length - 1 && v[i] === 0) i++;
    const body = v[i]! & 0x80 ? [0, ...v.subarray(i)] : [...v.subarray(i)];
    return [0x02, body.length, ...body];
  };
  const half = raw.length / 2;
  const body = [...int(raw.subarray(0, half)), ...int(raw.subarray(half))];
  return Uint8Array.from([
    0x30,
    ...(body.length < 128 ? [body.length] : [0x81, body.length]),
    ...body,
  ]);
}

Deno.test("spkiKeyType reads every key type WebCrypto exports", async () => {
  for (const curve of ["P-256", "P-384", "P-521"] as const) {
    const { spki } = await spkiOf({ name: "ECDSA", namedCurve: curve });
    assert.deepEqual(spkiKeyType(spki), { kind: "ec", curve });
  }
  assert.deepEqual(spkiKeyType((await spkiOf({ name: "Ed25519" })).spki), { kind: "ed25519" });
  const rsa = await spkiOf({
    name: "RSASSA-PKCS1-v1_5",
    modulusLength: 2048,
    publicExponent: new Uint8Array([1, 0, 1]),
    hash: "SHA-256",
  });
  assert.deepEqual(spkiKeyType(rsa.spki), { kind: "rsa" }); // long-form lengths
});

Deno.test("ECDSA signatures round-trip through DER and verify with WebCrypto", async () => {
  for (const [curve, hash] of [["P-256", "SHA-256"], ["P-384", "SHA-384"]] as const) {
    const { pair, spki } = await spkiOf({ name: "ECDSA", namedCurve: curve });
    const data = new TextEncoder().encode(`signed with ${curve}`);
    const raw = new Uint8Array(
      await crypto.subtle.sign({ name: "ECDSA", hash }, pair.privateKey, data),
    );
    const der = toDer(raw);
    assert.deepEqual(ecdsaDerToP1363(der, curve), raw);
    assert.equal(await verifyWithSpki(spki, { kind: "ecdsa", hash }, der, data), true);
    const other = data.slice();
    other[0]! ^= 1;
    assert.equal(await verifyWithSpki(spki, { kind: "ecdsa", hash }, der, other), false);
  }
});

Deno.test("malformed DER is refused: trailing bytes, non-minimal or overlong lengths, unknown OIDs", async () => {
  const { spki } = await spkiOf({ name: "ECDSA", namedCurve: "P-256" });
  const refused = (bytes: Uint8Array | number[]) =>
    assert.throws(() => spkiKeyType(Uint8Array.from(bytes)), DerError);
  refused([...spki, 0]); // trailing byte
  refused(spki.subarray(0, spki.length - 1)); // truncated
  refused([0x30, 0x81, 0x05, 0x30, 0x00, 0x03, 0x01, 0x00]); // length 5 in long form
  refused([0x30, 0x84, 0xff, 0xff, 0xff, 0xff]); // far past the end
  refused([]);
  const curve = spki.slice();
  curve[curve.indexOf(0x07, 20)]! = 0x09; // prime256v1 → an unknown curve arc
  assert.throws(() => spkiKeyType(curve), /unsupported elliptic curve|invalid|missing/);
  assert.equal(
    ecdsaDerToP1363(Uint8Array.from([0x30, 0x03, 0x02, 0x01, 0x80]), "P-256"),
    undefined,
  );
  assert.equal(ecdsaDerToP1363(Uint8Array.from([0x30, 0x00]), "P-256"), undefined);
});

Deno.test("mutated keys and signatures never escape as anything but DerError / undefined (seeded)", async () => {
  const next = prng(0x5eed);
  const { spki } = await spkiOf({ name: "ECDSA", namedCurve: "P-384" });
  const sig = toDer(crypto.getRandomValues(new Uint8Array(96)));
  for (let i = 0; i < 20_000; i++) {
    const base = i % 2 === 0 ? spki : sig;
    const m = base.slice(0, Math.max(1, Math.floor(next() * (base.length + 8))));
    for (let k = 0, n = 1 + Math.floor(next() * 4); k < n; k++) {
      m[Math.floor(next() * m.length)] = Math.floor(next() * 256);
    }
    if (base === spki) {
      try {
        spkiKeyType(m);
      } catch (e) {
        assert.ok(e instanceof DerError, `mutant ${i}: ${e}`);
      }
    } else {
      const out = ecdsaDerToP1363(m, "P-384");
      assert.ok(out === undefined || out.length === 96);
    }
  }
});
