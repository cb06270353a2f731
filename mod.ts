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

// Run as a program (`deno run jsr:@safemodels/safemodels hash …`): the CLI.
// The specifier is computed on purpose, so that bundlers leave the CLI (and
// the Sigstore libraries it loads) out of apps that only import this module,
// and the hook does nothing where there is no Deno (Node 24 sets
// import.meta.main too) or inside an app's bundle (whose entry is not mod.ts).
if (
  import.meta.main && typeof Deno !== "undefined" &&
  /\/mod\.[jt]s$/.test(new URL(import.meta.url).pathname)
) {
  const cli = new URL("./plugins/cli.ts", import.meta.url).href;
  const { main } = await import(cli);
  Deno.exit(await main(Deno.args));
}
