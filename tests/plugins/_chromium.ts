// Headless Chromium for the browser tests, driven over the DevTools protocol
// with Deno's own WebSocket (no Playwright): open a page, wait until it puts
// its JSON result in <pre id="result">, return it. The flags keep Chromium off
// the network (this machine's is closed; background requests would hang).
import assert from "node:assert/strict";

/** The Chromium binary: $CHROMIUM, or Debian's /usr/bin/chromium. */
export function chromiumPath(): string | undefined {
  const candidates = [Deno.env.get("CHROMIUM"), "/usr/bin/chromium", "/usr/bin/chromium-browser"];
  return candidates.find((p) => {
    try {
      return p !== undefined && Deno.statSync(p).isFile;
    } catch {
      return false;
    }
  });
}

/** Opens `url` in a fresh headless Chromium and returns what the page reports. */
export async function runPage(url: string, timeoutMs = 60_000): Promise<unknown> {
  const binary = chromiumPath();
  if (!binary) throw new Error("Chromium is not installed (apt-get install chromium)");
  const profile = await Deno.makeTempDir({ prefix: "safemodels-chromium-" });
  const child = new Deno.Command(binary, {
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      `--user-data-dir=${profile}`,
      "--remote-debugging-address=127.0.0.1",
      "--remote-debugging-port=0",
      "about:blank",
    ],
    stdout: "null",
    stderr: "piped",
  }).spawn();
  const log: string[] = [];
  try {
    const reader = child.stderr.pipeThrough(new TextDecoderStream()).getReader();
    let endpoint: string | undefined;
    while (endpoint === undefined) {
      const { value, done } = await reader.read();
      if (done) throw new Error(`Chromium exited before listening:\n${log.join("")}`);
      log.push(value);
      endpoint = /DevTools listening on (ws:\/\/\S+)/.exec(log.join(""))?.[1];
    }
    (async () => {
      for (;;) if ((await reader.read()).done) break;
    })();
    const ws = new WebSocket(endpoint);
    await new Promise((resolve, reject) => {
      ws.onopen = resolve;
      ws.onerror = reject;
    });
    let next = 0;
    const waiting = new Map<number, (m: { result?: unknown; error?: unknown }) => void>();
    ws.onmessage = (e) => {
      const m = JSON.parse(e.data);
      waiting.get(m.id)?.(m);
      waiting.delete(m.id);
    };
    const send = (method: string, params: unknown = {}, sessionId?: string) =>
      new Promise<Record<string, unknown>>((resolve, reject) => {
        const id = ++next;
        waiting.set(
          id,
          (m) =>
            m.error
              ? reject(new Error(`${method}: ${JSON.stringify(m.error)}`))
              : resolve(m.result as Record<string, unknown>),
        );
        ws.send(JSON.stringify({ id, method, params, ...(sessionId ? { sessionId } : {}) }));
      });
    try {
      const { targetId } = await send("Target.createTarget", { url });
      const { sessionId } = await send("Target.attachToTarget", { targetId, flatten: true });
      const deadline = Date.now() + timeoutMs;
      while (Date.now() < deadline) {
        const r = await send("Runtime.evaluate", {
          expression: "document.getElementById('result')?.textContent ?? 'pending'",
          returnByValue: true,
        }, sessionId as string).catch(() => undefined); // no context yet while navigating
        const text = (r?.result as { value?: string } | undefined)?.value ?? "pending";
        if (text !== "pending") return JSON.parse(text);
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
      throw new Error(`the page at ${url} did not finish within ${timeoutMs} ms`);
    } finally {
      await send("Browser.close").catch(() => {});
      ws.close();
    }
  } finally {
    try {
      child.kill("SIGTERM");
    } catch {
      // already gone
    }
    await child.status;
    await Deno.remove(profile, { recursive: true }).catch(() => {});
  }
}

/** Where Deno keeps an npm package's files. */
export async function npmDir(name: string, version: string): Promise<string> {
  const out = await new Deno.Command(Deno.execPath(), { args: ["info", "--json"] }).output();
  const { npmCache } = JSON.parse(new TextDecoder().decode(out.stdout));
  return `${npmCache}/registry.npmjs.org/${name}/${version}`;
}

/**
 * The folders the test pages serve as `/npm/<name>/…`: transformers.js' web
 * build and the onnxruntime-web and onnxruntime-common versions it depends on.
 */
export async function pageModuleRoots(): Promise<Record<string, string>> {
  const transformers = await npmDir("@huggingface/transformers", "4.3.1");
  const pkg = (dir: string) => Deno.readTextFile(`${dir}/package.json`).then(JSON.parse);
  const ort = await npmDir(
    "onnxruntime-web",
    (await pkg(transformers)).dependencies["onnxruntime-web"],
  );
  const common = await npmDir(
    "onnxruntime-common",
    (await pkg(ort)).dependencies["onnxruntime-common"],
  );
  return { transformers, ort, "ort-common": common };
}

/**
 * The start of a test page: the import map of transformers.js' web build and
 * onnxruntime-web (served by {@linkcode pageModule}), the result element, and
 * the opening of the page's module script with `out` bound to that element.
 */
export const PAGE_HEAD = `<!doctype html>
<meta charset="utf-8">
<script type="importmap">
{ "imports": {
  "@huggingface/transformers": "/npm/transformers/dist/transformers.web.js",
  "onnxruntime-web/webgpu": "/npm/ort/dist/ort.webgpu.bundle.min.mjs",
  "onnxruntime-common": "/npm/ort-common/dist/esm/index.js"
} }
</script>
<pre id="result">pending</pre>
<script type="module">
const out = document.getElementById("result");
`;

/** Bundles the browser guard (plugins/transformers_web.ts) into `out` and returns its source. */
export async function bundleWebGuard(out: string): Promise<string> {
  const built = await new Deno.Command(Deno.execPath(), {
    args: ["bundle", "--quiet", "--platform", "browser", "-o", out, "plugins/transformers_web.ts"],
    cwd: new URL("../../", import.meta.url).pathname,
  }).output();
  assert.ok(built.success, new TextDecoder().decode(built.stderr));
  return await Deno.readTextFile(out);
}

const TYPES: Record<string, string> = {
  js: "text/javascript",
  mjs: "text/javascript",
  wasm: "application/wasm",
  json: "application/json",
};

/** The answer to a page's `/npm/<name>/<file>` request from `roots`; `undefined` for other paths. */
export async function pageModule(
  path: string,
  roots: Record<string, string>,
): Promise<Response | undefined> {
  const npm = /^\/npm\/([^/]+)\/(.+)$/.exec(path);
  if (!npm || !roots[npm[1]!] || npm[2]!.includes("..")) return undefined;
  const bytes = await Deno.readFile(`${roots[npm[1]!]}/${npm[2]}`).catch(() => undefined);
  if (!bytes) return new Response("missing", { status: 404 });
  const type = TYPES[npm[2]!.split(".").pop()!] ?? "application/octet-stream";
  return new Response(bytes, { headers: { "content-type": type } });
}
