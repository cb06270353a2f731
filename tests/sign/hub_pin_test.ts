// Pinning a hub model without downloading its weights (sign/hub_pin.ts),
// against the loopback hub (tests/_loopback_hub.ts): the published LFS
// digests are the files' SHA-256, small files are hashed here, no weight byte
// moves, and a hub that answers unlike a hub is refused.
import assert from "node:assert/strict";
import { EvidenceError, parseHubSpec, pinHubModel } from "../../sign/mod.ts";
import { sha256hex } from "../_helpers.ts";
import { startLoopbackHub } from "../_loopback_hub.ts";

const enc = new TextEncoder();
function model(): Record<string, Uint8Array> {
  const weights = new Uint8Array(300_000);
  for (let i = 0; i < weights.length; i++) weights[i] = (i * 7919) & 0xff;
  const data = new Uint8Array(200_000).fill(3);
  return {
    "config.json": enc.encode('{"model_type":"bert"}'),
    "tokenizer.json": enc.encode('{"version":"1.0"}'),
    "onnx/model.onnx": weights,
    "onnx/model.onnx_data": data,
    "README.md": enc.encode("# tiny"),
  };
}

Deno.test("pinHubModel: LFS digests from the listing, small files hashed, no weight byte fetched", async () => {
  const hub = startLoopbackHub();
  try {
    const files = model();
    const commit = hub.add("acme/tiny", files);
    hub.pageSize = 2; // several pages, followed by the Link header
    const seen: string[] = [];
    const pin = await pinHubModel("acme/tiny", { endpoint: hub.url, onFile: (p) => seen.push(p) });
    assert.equal(pin.commit, commit);
    assert.equal(pin.revision, "main");
    for (const [path, bytes] of Object.entries(files)) {
      assert.equal(pin.digests[path], `sha256:${sha256hex(bytes)}`, path);
    }
    assert.deepEqual(pin.published.sort(), ["onnx/model.onnx", "onnx/model.onnx_data"]);
    assert.deepEqual(pin.downloaded.sort(), ["README.md", "config.json", "tokenizer.json"]);
    assert.deepEqual(seen.sort(), pin.downloaded);
    // No weight was asked for: neither the resolve URL nor the CDN.
    assert.ok(
      !hub.log.some((l) => l.includes("/cdn/") || l.includes("model.onnx")),
      hub.log.join("\n"),
    );
    assert.ok(hub.log.filter((l) => l.includes("/tree/")).length >= 3, "paged listing");
    // The listing and downloads used the commit (immutable), not the branch.
    assert.ok(hub.log.filter((l) => /\/(tree|resolve)\//.test(l)).every((l) => l.includes(commit)));

    const some = await pinHubModel("acme/tiny", {
      endpoint: hub.url,
      files: ["config.json", "onnx/model.onnx"],
    });
    assert.deepEqual(Object.keys(some.digests).sort(), ["config.json", "onnx/model.onnx"]);
  } finally {
    await hub.close();
  }
});

Deno.test("pinHubModel: a tag resolves to its own commit; a moved branch gives another commit", async () => {
  const hub = startLoopbackHub();
  try {
    const files = model();
    const v1 = hub.add("acme/tiny", files, { revision: "v1.0" });
    hub.add("acme/tiny", files);
    const changed = { ...files, "config.json": enc.encode('{"model_type":"evil"}') };
    const moved = hub.add("acme/tiny", changed);
    const tag = await pinHubModel("acme/tiny", { endpoint: hub.url, revision: "v1.0" });
    const main = await pinHubModel("acme/tiny", { endpoint: hub.url });
    assert.equal(tag.commit, v1);
    assert.equal(main.commit, moved);
    assert.notEqual(tag.digests["config.json"], main.digests["config.json"]);
  } finally {
    await hub.close();
  }
});

Deno.test("pinHubModel: a hub answering unlike a hub is refused, naming what was wrong", async () => {
  const hub = startLoopbackHub();
  try {
    hub.add("acme/tiny", model());
    const refused = async (pattern: RegExp, options = {}, repo = "acme/tiny") => {
      await assert.rejects(
        pinHubModel(repo, { endpoint: hub.url, ...options }),
        (e: unknown) => {
          assert.ok(e instanceof EvidenceError, String(e));
          assert.equal(e.code, "hub-error");
          assert.match(e.message, pattern);
          return true;
        },
      );
    };
    await refused(/HTTP 404 \(RepoNotFound\)/, {}, "acme/none");
    await refused(/HTTP 404 \(RevisionNotFound\)/, { revision: "v9" });
    await refused(/"missing.bin" is not a file/, { files: ["missing.bin"] });

    const answer = (pathPart: string, response: () => Response) => {
      hub.override = (req) => new URL(req.url).pathname.includes(pathPart) ? response() : undefined;
    };
    answer("/revision/", () => Response.json({ sha: "not-a-commit" }));
    await refused(/no commit/);
    answer("/revision/", () => new Response("<html>"));
    await refused(/not JSON/);
    const entry = (e: Record<string, unknown>) => () => Response.json([e]);
    answer("/tree/", entry({ type: "file", path: "../escape.bin", size: 1, oid: "x" }));
    await refused(/unsafe path/);
    answer(
      "/tree/",
      entry({ type: "file", path: "w.bin", size: 10, oid: "x", lfs: { oid: "abc", size: 10 } }),
    );
    await refused(/no SHA-256 object id/);
    answer(
      "/tree/",
      entry({
        type: "file",
        path: "w.bin",
        size: 10,
        oid: "x",
        lfs: { oid: "a".repeat(64), size: 11 },
      }),
    );
    await refused(/no SHA-256 object id of its size/);
    answer(
      "/tree/",
      () => new Response("[]", { headers: { link: '<http://evil.example/next>; rel="next"' } }),
    );
    await refused(/another origin/);
    answer("/tree/", () => Response.json({ entries: [] }));
    await refused(/not a JSON array/);
    // A small file bigger than the listing says, or bigger than the download bound.
    hub.override = (req) =>
      new URL(req.url).pathname.endsWith("/config.json")
        ? new Response(new Uint8Array(5000))
        : undefined;
    await refused(/config\.json: the hub sent more than/, { files: ["config.json"] });
    hub.override = undefined;
    await refused(/not in LFS, over the 8 bytes/, { files: ["config.json"], maxSmallFileBytes: 8 });
    // An endless listing is cut off.
    hub.override = (req) => {
      const url = new URL(req.url);
      if (!url.pathname.includes("/tree/")) return undefined;
      const n = Number(url.searchParams.get("cursor") ?? 0) + 1;
      return new Response("[]", {
        headers: { link: `<${url.origin}${url.pathname}?cursor=${n}>; rel="next"` },
      });
    };
    await refused(/past 1024 pages/);
    // A next page elsewhere on the hub's origin (where the token would go too).
    hub.override = (req) =>
      new URL(req.url).pathname.includes("/tree/")
        ? new Response("[]", { headers: { link: '</other-app/collect>; rel="next"' } })
        : undefined;
    await refused(/not the hub's listing/, { token: "hf_SECRET" });
    assert.ok(!hub.log.some((l) => l.includes("/other-app/")));
    // A page over the bound.
    hub.override = (req) =>
      new URL(req.url).pathname.includes("/tree/")
        ? new Response(`[${" ".repeat(9 << 20)}]`)
        : undefined;
    await refused(/over the 8388608 read|over 8388608 bytes/);
    // A hub that drips: the deadline ends it, naming the host.
    hub.override = (req) => {
      if (!new URL(req.url).pathname.includes("/tree/")) return undefined;
      let n = 0;
      return new Response(
        new ReadableStream({
          async pull(c) {
            await new Promise((r) => setTimeout(r, 50));
            if (n++ > 1000) c.close();
            else c.enqueue(new TextEncoder().encode(" "));
          },
        }),
      );
    };
    await refused(/did not (answer|finish) .*within 400 ms/, { timeoutMs: 400 });
    // The caller's abort wins, with its own reason.
    const controller = new AbortController();
    setTimeout(() => controller.abort(new Error("stop")), 100);
    await assert.rejects(
      pinHubModel("acme/tiny", { endpoint: hub.url, signal: controller.signal }),
      /stop/,
    );
  } finally {
    await hub.close();
  }
});

Deno.test("parseHubSpec: hf://ORG/NAME[@REVISION], nothing else", () => {
  assert.deepEqual(parseHubSpec("hf://acme/tiny"), { repo: "acme/tiny", revision: "main" });
  assert.deepEqual(parseHubSpec("acme/tiny@refs/pr/1"), {
    repo: "acme/tiny",
    revision: "refs/pr/1",
  });
  for (
    const bad of [
      "hf://",
      "hf://../x",
      "hf://a/b/c",
      "hf://acme/tiny@",
      "hf://a b/c",
      "hf://acme/..",
    ]
  ) {
    assert.throws(() => parseHubSpec(bad), TypeError, bad);
  }
});

Deno.test('Lockfile: a version with "@" is refused (entries are keyed name@version)', async () => {
  const { Lockfile } = await import("../../sign/lockfile.ts");
  const lock = new Lockfile();
  const d = { digests: { "a.onnx": "0".repeat(64) } };
  assert.throws(() => lock.record("acme/m", "1.0@rc", d), /without "@"/);
  assert.throws(() => lock.check("acme/m", "1.0@rc", d), /without "@"/);
  assert.throws(() => lock.find("acme/m", "v1@stable"), /without "@"/);
  lock.record("acme/m", "1.0", d);
  assert.equal(lock.find("acme/m", "1.0").entry?.digests["a.onnx"], `sha256:${"0".repeat(64)}`);
});
