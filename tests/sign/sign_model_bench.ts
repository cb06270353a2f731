// `deno task bench`: signing and verifying a model folder (OMS model.sig)
// against `openssl dgst -sha256` over the same files, in the same run.
//
// - 5,000 files of 20 KB (a tokenizer-heavy or many-shard folder): the issue's
//   target is at most 3x openssl for both sign and verify.
// - One file of SAFEMODELS_BENCH_SIGN_MIB MiB (default 1024): at most 1.0x.
import nodeCrypto from "node:crypto";
import { opensslBaseline } from "../_bench_helpers.ts";
import { keySigner, modelDigest, signModel, verifyModel } from "../../sign/mod.ts";

const dir = await Deno.makeTempDir({ prefix: "safemodels-sign-bench-" });
globalThis.addEventListener("unload", () => Deno.removeSync(dir, { recursive: true }));

const { privateKey, publicKey } = nodeCrypto.generateKeyPairSync("ec", {
  namedCurve: "prime256v1",
});
const signer = keySigner(privateKey.export({ type: "pkcs8", format: "pem" }) as string);
const policy = { publicKeys: [publicKey.export({ type: "spki", format: "pem" }) as string] };

function random(n: number): Uint8Array {
  const b = new Uint8Array(n);
  for (let i = 0; i < n; i += 65536) crypto.getRandomValues(b.subarray(i, Math.min(n, i + 65536)));
  return b;
}

{
  const model = `${dir}/many`;
  await Deno.mkdir(model);
  const names: string[] = [];
  for (let i = 0; i < 5000; i++) {
    const name = `${model}/f${String(i).padStart(5, "0")}.bin`;
    await Deno.writeFile(name, random(20_000));
    names.push(name);
  }
  await signModel(model, { signer }); // so that verify has a model.sig from the start
  const opts = { group: "5,000 files of 20 KB", n: 10, warmup: 2 };
  opensslBaseline(opts, names);
  Deno.bench({
    name: "signModel (P-256 key)",
    ...opts,
    fn: async () => void await signModel(model, { signer }),
  });
  Deno.bench({
    name: "verifyModel",
    ...opts,
    fn: async () => void await verifyModel(model, { policy }),
  });
  Deno.bench({ name: "modelDigest", ...opts, fn: async () => void await modelDigest(model) });
}

{
  const mib = Number(Deno.env.get("SAFEMODELS_BENCH_SIGN_MIB") ?? "1024");
  const model = `${dir}/big`;
  await Deno.mkdir(model);
  const path = `${model}/model.safetensors`;
  const file = await Deno.open(path, { write: true, create: true });
  for (let i = 0; i < mib; i++) await file.write(random(1 << 20));
  file.close();
  await signModel(model, { signer });
  const opts = { group: `one file of ${mib} MiB`, n: 5, warmup: 1 };
  opensslBaseline(opts, [path]);
  Deno.bench({
    name: "signModel",
    ...opts,
    fn: async () => void await signModel(model, { signer }),
  });
  Deno.bench({
    name: "verifyModel",
    ...opts,
    fn: async () => void await verifyModel(model, { policy }),
  });
  Deno.bench({
    name: "signModel, shards of 1 GB",
    ...opts,
    fn: async () =>
      void await signModel(model, {
        signer,
        shardSize: 1_000_000_000,
        signature: `${dir}/big-shards.sig`,
      }),
  });
}
