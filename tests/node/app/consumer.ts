// Type-checked by CI against the packed package's .d.ts files
// (tests/node/package.test.mjs): the types are there and they are not `any`.
import { safeHash } from "safemodels/hash";
import { type HashMismatch as HashMismatchType, verifyModel } from "safemodels/sign";
import { guardTransformers } from "safemodels/plugins/transformers";
import { extractMetadata } from "safemodels/meta";
import { main } from "safemodels/cli";

export async function use(): Promise<number> {
  const hash: string = await safeHash("model.safetensors");
  // @ts-expect-error: a number is not a model input
  await safeHash(42);
  const verified = await verifyModel("model", { policy: { publicKeys: [] } });
  const files: number = verified.checked.length;
  // @ts-expect-error: the result has no such field
  verified.noSuchField;
  const meta: Record<string, string> = await extractMetadata("model.safetensors");
  const error: HashMismatchType | undefined = undefined;
  void [hash, files, meta, error, guardTransformers];
  return await main(["--version"]);
}
