// `deno task bench`: verifying one keyless bundle (model_signing's v1.1.0
// vector: Fulcio chain, SCT, Rekor v1 SET, inclusion proof and checkpoint)
// with the WebCrypto verifier browsers use, against @sigstore/verify.
import { verifyBundle } from "../../sign/mod.ts";

const text = await Deno.readTextFile(
  new URL("../testdata/model_signing/v1.1.0-sigstore/model.sig", import.meta.url),
);
const policy = {
  signers: [{ identity: "stefanb@us.ibm.com", issuer: "https://sigstore.verify.ibm.com/oauth2" }],
};
const group = "one keyless bundle";
Deno.bench({
  name: "@sigstore/verify (baseline)",
  group,
  baseline: true,
  fn: async () => void await verifyBundle(text, policy, { keyless: "sigstore-js" }),
});
Deno.bench({
  name: "WebCrypto verifier",
  group,
  fn: async () => void await verifyBundle(text, policy, { keyless: "webcrypto" }),
});
