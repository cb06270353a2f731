// Packaging: the release workflow (.github/workflows/release.yml) cannot run
// here, so what can be is checked (valid YAML, triggered by version tags, the
// OIDC permission provenance needs, commands that exist); the README's Node
// app is the one CI runs; a Deno app can use a local clone as documented.
import assert from "node:assert/strict";
import { parse } from "yaml";
import config from "../deno.json" with { type: "json" };

const root = new URL("../", import.meta.url);

Deno.test("release workflow: valid YAML, tag-triggered, id-token for provenance, real commands", async () => {
  const text = await Deno.readTextFile(new URL(".github/workflows/release.yml", root));
  const wf = parse(text);
  assert.deepEqual(wf.on.push.tags, ["v*"]);
  assert.deepEqual(wf.permissions, { contents: "read" });
  const job = wf.jobs.publish;
  assert.equal(job.permissions["id-token"], "write");
  const runs: string[] = job.steps.filter((s: { run?: string }) => s.run).map((
    s: { run: string },
  ) => s.run);
  const all = runs.join("\n");
  // Tests first, then both registries, npm with a provenance statement.
  const order = ["bash .ci/run", "deno@", " publish", "npm publish --provenance"].map((c) =>
    all.indexOf(c)
  );
  assert.ok(order.every((i) => i >= 0), all);
  assert.ok(all.indexOf("bash .ci/run") < all.indexOf(" publish"), "tests run before publishing");
  for (const [, task] of all.matchAll(/deno@[\d.]+ task (\S+)/g)) {
    assert.ok(task! in config.tasks, `deno task ${task} is not in deno.json`);
  }
  // The same Deno as CI.
  const ci = await Deno.readTextFile(new URL(".ci/run", root));
  const pinned = /DENO_VERSION=([\d.]+)/.exec(ci)?.[1];
  assert.ok(pinned);
  for (const [, v] of all.matchAll(/deno@([\d.]+)/g)) assert.equal(v, pinned);
});

Deno.test("README: the Node section's app is tests/node/app/app.mjs, which CI runs from the packed package", async () => {
  const readme = await Deno.readTextFile(new URL("README.md", root));
  const app = await Deno.readTextFile(new URL("tests/node/app/app.mjs", root));
  // The file without its leading comment (which says where it is run from).
  const body = app.replace(/^(\/\/.*\n)+/, "").trim();
  assert.ok(readme.includes(body), "README's Node app differs from tests/node/app/app.mjs");
});

Deno.test("a Deno app uses a local clone through `links`, as the README shows (no JSR needed)", async () => {
  const app = await Deno.makeTempDir();
  try {
    const clone = decodeURIComponent(root.pathname);
    await Deno.writeTextFile(
      `${app}/deno.json`,
      JSON.stringify({ links: [clone] }),
    );
    await Deno.writeTextFile(
      `${app}/main.ts`,
      [
        'import { safeHash } from "@safemodels/safemodels/hash";',
        'import { HashMismatch } from "@safemodels/safemodels/sign";',
        'import { HashMismatch as FromGuard } from "@safemodels/safemodels/plugins/transformers-web";',
        "console.log(await safeHash(Deno.args[0]!), HashMismatch === FromGuard);",
      ].join("\n"),
    );
    const model = new URL("../shared/fixtures/tensors/mixed.safetensors", root).pathname;
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["run", "--quiet", "--cached-only", "--allow-read", "--allow-env", "main.ts", model],
      cwd: app,
      stdout: "piped",
      stderr: "piped",
    }).output();
    const text = new TextDecoder().decode(out.stdout);
    assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
    assert.match(text, /^safemodels-v1:[0-9a-f]{64} true$/m);
  } finally {
    await Deno.remove(app, { recursive: true });
  }
});
