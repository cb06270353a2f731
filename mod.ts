/**
 * safemodels proves where an ML model came from and that its weights are the
 * ones that were signed. This root module holds the everyday entry points;
 * the subpaths `./hash` and `./meta` hold the rest.
 *
 * @example Hashing the same weights in two formats
 * ```ts ignore
 * import { safeHash } from "@safemodels/safemodels";
 *
 * const a = await safeHash("model.safetensors");
 * const b = await safeHash("pytorch_model.bin");
 * console.log(a === b); // true when the weights are the same
 * ```
 *
 * @module
 */

export * from "./hash/mod.ts";
export * from "./meta/mod.ts";

if (import.meta.main) {
  const { main } = await import("./plugins/cli.ts");
  Deno.exit(await main(Deno.args));
}
