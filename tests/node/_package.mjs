// Where the node tests find safemodels: the packed npm package, installed with
// npm into $SAFEMODELS_NODE_DIR together with @huggingface/transformers (see
// .ci/run and `deno task test:node`). Modules are imported from inside that
// folder, so bare specifiers resolve exactly as they do in a user's app.
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";

export const dir = process.env.SAFEMODELS_NODE_DIR;
if (!dir) {
  throw new Error(
    "SAFEMODELS_NODE_DIR must name the folder where the packed package is installed (see .ci/run)",
  );
}
const loader = join(dir, "_load.mjs");
writeFileSync(loader, "export const load = (specifier) => import(specifier);\n");
const { load: loadFromDir } = await import(pathToFileURL(loader).href);

/** Imports `specifier` as an app in $SAFEMODELS_NODE_DIR would. */
export const load = (specifier) => loadFromDir(specifier);

/** The installed `safemodels` bin (run it with process.execPath). */
export const cliBin = join(dir, "node_modules", "safemodels", "bin", "safemodels.js");
