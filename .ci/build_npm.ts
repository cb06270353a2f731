// Builds the npm package from the same source as the JSR one
// (`deno task npm:build`): ES modules and `.d.ts` types emitted one to one by
// TypeScript (so every entry shares one instance of each module, and
// `instanceof HashMismatch` holds whichever entry a caller imported), a
// package.json whose subpath exports mirror deno.json's, and a `safemodels`
// bin for `npx safemodels …`. Output: .npm/package (and, with --pack, the
// tarball `npm pack` makes of it, .npm/safemodels.tgz).
//
// Needs: node and npm (TypeScript is fetched by npx, pinned below).

const TYPESCRIPT = "typescript@5.9.3";
const root = new URL("../", import.meta.url);
const path = (rel: string) => decodeURIComponent(new URL(rel, root).pathname);
const config = JSON.parse(await Deno.readTextFile(path("deno.json")));
const out = path(".npm/");
const stage = `${out}stage/`;
const pkgDir = `${out}package/`;

async function run(cmd: string, args: string[], cwd: string): Promise<string> {
  const result = await new Deno.Command(cmd, { args, cwd, stdout: "piped", stderr: "inherit" })
    .output();
  const text = new TextDecoder().decode(result.stdout);
  if (!result.success) {
    console.error(text);
    throw new Error(`${cmd} ${args.join(" ")} failed (exit ${result.code})`);
  }
  return text;
}

async function copyTree(from: string, to: string): Promise<void> {
  await Deno.mkdir(to, { recursive: true });
  for await (const entry of Deno.readDir(from)) {
    if (entry.isDirectory) await copyTree(`${from}/${entry.name}`, `${to}/${entry.name}`);
    else if (entry.isFile && entry.name.endsWith(".ts")) {
      await Deno.copyFile(`${from}/${entry.name}`, `${to}/${entry.name}`);
    }
  }
}

await Deno.remove(out, { recursive: true }).catch(() => {});
await Deno.mkdir(stage, { recursive: true });
for (const dir of ["hash", "meta", "sign", "plugins"]) await copyTree(path(dir), stage + dir);
await Deno.copyFile(path("mod.ts"), `${stage}mod.ts`);
// The CLI reads its version from deno.json: only name and version go along.
await Deno.writeTextFile(
  `${stage}deno.json`,
  JSON.stringify({ name: config.name, version: config.version }) + "\n",
);
await Deno.writeTextFile(`${stage}package.json`, JSON.stringify({ type: "module" }) + "\n");
await Deno.writeTextFile(
  `${stage}tsconfig.json`,
  JSON.stringify(
    {
      compilerOptions: {
        target: "es2022",
        module: "nodenext",
        moduleResolution: "nodenext",
        allowImportingTsExtensions: true,
        rewriteRelativeImportExtensions: true,
        resolveJsonModule: true,
        declaration: true,
        // Types are checked by `deno check`; this run only emits.
        noCheck: true,
        skipLibCheck: true,
        removeComments: false,
        outDir: "../package",
        rootDir: ".",
        lib: ["es2023", "dom", "dom.iterable"],
        types: [],
      },
      include: ["**/*.ts", "deno.json"],
    },
    null,
    2,
  ),
);
await run("npx", ["--yes", "-p", TYPESCRIPT, "tsc", "-p", "tsconfig.json"], stage);

// Module URLs built at run time (workers, the CLI's lazy half) name .ts
// files in the source; the package holds .js.
let rewritten = 0;
async function rewriteUrls(dir: string): Promise<void> {
  for await (const entry of Deno.readDir(dir)) {
    const file = `${dir}/${entry.name}`;
    if (entry.isDirectory) await rewriteUrls(file);
    else if (entry.name.endsWith(".d.ts")) {
      // Declarations keep the source's specifiers: name the .js (and so .d.ts) files.
      const text = await Deno.readTextFile(file);
      const next = text.replace(
        /((?:from|import\()\s*["']\.{1,2}\/[^"']*?)\.ts(["'])/g,
        (_, head, quote) => `${head}.js${quote}`,
      );
      if (next !== text) await Deno.writeTextFile(file, next);
    } else if (entry.name.endsWith(".js")) {
      const text = await Deno.readTextFile(file);
      const next = text.replace(
        /(new URL\(\s*["'`]\.{1,2}\/[^"'`]*?)\.ts(["'`])/g,
        (_, head, quote) => (rewritten++, `${head}.js${quote}`),
      );
      if (next !== text) await Deno.writeTextFile(file, next);
    }
  }
}
await rewriteUrls(pkgDir.slice(0, -1));
if (rewritten < 3) throw new Error(`expected to rewrite the worker and CLI URLs, did ${rewritten}`);

await Deno.mkdir(`${pkgDir}bin`, { recursive: true });
await Deno.writeTextFile(
  `${pkgDir}bin/safemodels.js`,
  `#!/usr/bin/env node
// \`npx safemodels …\`: the CLI under Node.
import { main } from "../plugins/cli.js";
import { removeTempFiles } from "../hash/_temp_files.js";

// Ctrl-C: no temporary file (meta set, sign) is left behind.
process.on("SIGINT", () => {
  removeTempFiles().finally(() => process.exit(130));
});
process.exitCode = await main(process.argv.slice(2));
`,
);
await Deno.chmod(`${pkgDir}bin/safemodels.js`, 0o755);

const entry = (file: string) => ({
  types: `./${file.replace(/\.ts$/, ".d.ts")}`,
  default: `./${file.replace(/\.ts$/, ".js")}`,
});
const exportsMap: Record<string, unknown> = {};
for (const [name, file] of Object.entries(config.exports as Record<string, string>)) {
  exportsMap[name] = entry(file.replace(/^\.\//, ""));
}
exportsMap["./package.json"] = "./package.json";
const version = (name: string) => {
  const spec: string = config.imports[name];
  return spec.slice(spec.lastIndexOf("@") + 1);
};
const pkg = {
  name: "safemodels",
  version: config.version,
  description:
    "Proves where an ML model came from and that its weights are the ones that were signed: " +
    "format-independent tensor hashes, Sigstore and key signing (OpenSSF Model Signing), " +
    "and a transformers.js guard.",
  license: config.license,
  type: "module",
  engines: { node: ">=20.10" },
  exports: exportsMap,
  bin: { safemodels: "./bin/safemodels.js" },
  dependencies: Object.fromEntries(
    ["hash-wasm", "@sigstore/bundle", "@sigstore/core", "@sigstore/sign", "@sigstore/tuf"]
      .concat("@sigstore/verify").map((n) => [n, version(n)]),
  ),
  peerDependencies: {
    "@huggingface/transformers": ">=3.0.0 <5",
    "onnxruntime-node": "*",
    "onnxruntime-web": "*",
  },
  peerDependenciesMeta: {
    "@huggingface/transformers": { optional: true },
    "onnxruntime-node": { optional: true },
    "onnxruntime-web": { optional: true },
  },
  keywords: ["model-signing", "sigstore", "safetensors", "onnx", "transformers.js", "supply-chain"],
  repository: { type: "git", url: "git+https://github.com/safemodels/safemodels.git" },
};
await Deno.writeTextFile(`${pkgDir}package.json`, JSON.stringify(pkg, null, 2) + "\n");
for (const file of ["README.md", "LICENSE"]) await Deno.copyFile(path(file), pkgDir + file);
await Deno.remove(stage, { recursive: true });

if (Deno.args.includes("--pack")) {
  const name = (await run("npm", ["pack", "--silent", "--pack-destination", out], pkgDir)).trim();
  // One name whatever the version, for the scripts that install it.
  await Deno.rename(`${out}${name.split("\n").at(-1)}`, `${out}safemodels.tgz`);
  console.log(`${out}safemodels.tgz`);
} else console.log(pkgDir);
