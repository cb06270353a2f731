// One matrix of models through three front ends: `safemodels verify` (trust
// flags), `safemodels check` (a policy file) and the transformers.js guard
// (a real pipeline load). Evidence kind × substitution × tampering ×
// lockfile state (192 models); every front end must reach the same verdict, and where the
// guard refuses, for a reason the CLI names too. The three once kept three
// copies of the decision, and disagreed.
import assert from "node:assert/strict";
import * as transformers from "@huggingface/transformers";
import { guardTransformers } from "../../plugins/transformers.ts";
import { main } from "../../plugins/cli.ts";
import { keySigner, Lockfile, signModel, signOnnx } from "../../sign/mod.ts";
import { fixture } from "../_helpers.ts";
import { writeTinyModel } from "../_model_gen.ts";
import { FILES, KEY, local, opts, resetEnv, sessions, within } from "./_guard_harness.ts";

const PUB_PATH = fixture("oms/keys/signing-key-pub.pem");
const PUB = await Deno.readTextFile(PUB_PATH);

type Evidence = "oms" | "embedded" | "pins" | "none";
type Substitution = "none" | "oms-other-name" | "embedded-other-name" | "subfolder-sig";
type Tamper = "none" | "weights" | "config" | "link";
type LockState = "none" | "tofu" | "pinned" | "pinned-frozen" | "bad-pin" | "frozen-empty";

const PAIRS: [Evidence, Substitution][] = [
  ["oms", "none"],
  ["oms", "oms-other-name"],
  ["embedded", "none"],
  ["embedded", "embedded-other-name"],
  ["pins", "none"],
  ["pins", "subfolder-sig"],
  ["none", "none"],
  ["none", "subfolder-sig"],
];
const TAMPERS: Tamper[] = ["none", "weights", "config", "link"];
const LOCKS: LockState[] = ["none", "tofu", "pinned", "pinned-frozen", "bad-pin", "frozen-empty"];

const hex = async (path: string) => {
  const d = await crypto.subtle.digest("SHA-256", await Deno.readFile(path));
  return `sha256:${[...new Uint8Array(d)].map((b) => b.toString(16).padStart(2, "0")).join("")}`;
};

async function flip(path: string, at: number): Promise<void> {
  const b = await Deno.readFile(path);
  b[at]! ^= 0x01;
  await Deno.writeFile(path, b);
}

interface Case {
  root: string;
  dir: string;
  /** The lockfile's content before any run (each front end starts from a copy). */
  lock: string | undefined;
  frozen: boolean;
}

async function build(
  evidence: Evidence,
  subst: Substitution,
  tamper: Tamper,
  lockState: LockState,
  other: string,
): Promise<Case> {
  const root = await Deno.makeTempDir({ prefix: "matrix-" });
  const dir = `${root}/tiny-bert`;
  await Deno.mkdir(`${dir}/onnx`, { recursive: true });
  for (const f of FILES) {
    await Deno.copyFile(fixture(`tiny-bert/${f}`), `${dir}/${f}`);
    await Deno.chmod(`${dir}/${f}`, 0o644);
  }
  const signer = keySigner(KEY);
  if (evidence === "oms") {
    await signModel(dir, {
      signer,
      ...(subst === "oms-other-name" ? { modelName: "other-model" } : {}),
    });
  } else if (evidence === "embedded") {
    await signOnnx(`${dir}/onnx/model.onnx`, {
      signer,
      name: subst === "embedded-other-name" ? "acme/other" : "tiny-bert",
      version: "1",
    });
  }
  // Pins of the model as published (before substitution or tampering).
  const good: Record<string, string> = {};
  for (const f of FILES) good[f] = await hex(`${dir}/${f}`);
  const lockfile = new Lockfile();
  if (lockState === "pinned" || lockState === "pinned-frozen") {
    lockfile.record("tiny-bert", "v1", { digests: good });
  } else if (lockState === "bad-pin") {
    lockfile.record("tiny-bert", "v1", {
      digests: { ...good, "onnx/model.onnx": `sha256:${"0".repeat(64)}` },
    });
  }
  if (subst === "subfolder-sig") {
    await Deno.copyFile(`${other}/onnx/model.onnx`, `${dir}/onnx/model.onnx`);
    await signModel(`${dir}/onnx`, { signer });
  }
  if (tamper === "weights") await flip(`${dir}/onnx/model.onnx`, 2000);
  if (tamper === "config") await flip(`${dir}/config.json`, 20);
  if (tamper === "link") {
    // The same bytes behind a symbolic link out of the folder.
    await Deno.rename(`${dir}/onnx/model.onnx`, `${root}/elsewhere.onnx`);
    await Deno.symlink(`${root}/elsewhere.onnx`, `${dir}/onnx/model.onnx`);
  }
  return {
    root,
    dir,
    lock: lockState === "none" ? undefined : JSON.stringify(lockfile.toJSON()),
    frozen: lockState === "pinned-frozen" || lockState === "frozen-empty",
  };
}

interface Outcome {
  ok: boolean;
  /** `name:code` of every refusal. */
  reasons: Set<string>;
  /** Per file: `verified` or `refused:<code>`. */
  files: Map<string, string>;
}

async function lockCopy(c: Case, tag: string): Promise<string[]> {
  if (c.lock === undefined) return c.frozen ? ["--frozen"] : [];
  const path = `${c.root}/${tag}.lock`;
  await Deno.writeTextFile(path, c.lock);
  return ["--lock", path, ...(c.frozen ? ["--frozen"] : [])];
}

async function cli(c: Case, command: "verify" | "check", policyFile: string): Promise<Outcome> {
  const out: string[] = [];
  const err: string[] = [];
  const io = {
    out: (s: string) => out.push(s),
    err: (s: string) => err.push(s),
    isTerminal: false,
  };
  const trust = command === "verify" ? ["--key", PUB_PATH] : ["--policy", policyFile];
  const code = await main([
    command,
    c.dir,
    ...trust,
    "--name",
    "tiny-bert",
    ...FILES.flatMap((f) => ["--files", f]),
    ...await lockCopy(c, command),
    "--json",
  ], io);
  assert.equal(out.length, 1, `${command}: ${err.join("\n")}`);
  const json = JSON.parse(out[0]!);
  assert.equal(code, json.ok ? 0 : 1);
  const files = new Map<string, string>();
  for (const f of json.files) {
    files.set(f.file, f.verdict === "refused" ? `refused:${f.error.code}` : f.verdict);
  }
  return {
    ok: json.ok,
    reasons: new Set(json.errors.map((e: { name: string; code: string }) => `${e.name}:${e.code}`)),
    files,
  };
}

async function guard(c: Case): Promise<Outcome> {
  const lockArgs = await lockCopy(c, "guard");
  const lockPath = lockArgs[0] === "--lock" ? lockArgs[1] : undefined;
  const g = guardTransformers(transformers, {
    policy: { publicKeys: [PUB] },
    ...(lockPath ? { lockfile: lockPath } : {}),
    frozen: c.frozen,
  });
  const before = sessions;
  try {
    local(c.root);
    let ok = true;
    const reasons = new Set<string>();
    try {
      const pipe = await within(
        transformers.pipeline("feature-extraction", "tiny-bert", { dtype: "fp32" }),
      );
      await pipe("hello world");
      await pipe.dispose();
    } catch (e) {
      ok = false;
      reasons.add(`${(e as Error).name}:${(e as { code?: string }).code}`);
      assert.equal(sessions, before, "a refused model got an onnxruntime session");
    }
    const files = new Map<string, string>();
    for (const r of g.records) {
      files.set(r.file, r.verdict === "refused" ? `refused:${r.code}` : r.verdict);
    }
    return { ok, reasons, files };
  } finally {
    g.uninstall();
    resetEnv();
  }
}

Deno.test(
  "verify, check and the guard reach the same verdict over the evidence × substitution × tampering × lockfile matrix",
  opts,
  async () => {
    const other = await Deno.makeTempDir({ prefix: "matrix-other-" });
    await writeTinyModel(other);
    const policyFile = `${other}/policy.json`;
    await Deno.writeTextFile(policyFile, JSON.stringify({ publicKeys: [PUB] }));
    const seen = new Map<string, number>();
    try {
      for (const [evidence, subst] of PAIRS) {
        for (const tamper of TAMPERS) {
          for (const lockState of LOCKS) {
            const name = `${evidence}/${subst}/${tamper}/${lockState}`;
            const c = await build(evidence, subst, tamper, lockState, other);
            try {
              const v = await cli(c, "verify", policyFile);
              const k = await cli(c, "check", policyFile);
              const g = await guard(c);
              assert.deepEqual(k, v, `${name}: check and verify differ`);
              assert.equal(
                g.ok,
                v.ok,
                `${name}: the guard ${g.ok ? "loaded" : "refused"}, verify ${
                  v.ok ? "accepted" : "refused"
                } (${[...v.reasons]})`,
              );
              for (const r of g.reasons) {
                assert.ok(
                  v.reasons.has(r),
                  `${name}: the guard refused with ${r}, verify with ${[...v.reasons]}`,
                );
              }
              for (const [file, verdict] of g.files) {
                assert.equal(verdict, v.files.get(file), `${name}: ${file}`);
              }
              const key = v.ok ? "accepted" : [...v.reasons].sort().join("+");
              seen.set(key, (seen.get(key) ?? 0) + 1);
            } finally {
              await Deno.remove(c.root, { recursive: true });
            }
          }
        }
      }
    } finally {
      await Deno.remove(other, { recursive: true });
    }
    // The matrix exercises acceptance and every kind of refusal.
    for (
      const want of [
        "accepted",
        "HashMismatch:content-changed",
        "HashMismatch:pin-differs",
        "PolicyError:not-locked",
        "PolicyError:wrong-model",
        "PolicyError:refused-file",
        "SignatureMissing:no-signature",
      ]
    ) {
      assert.ok(
        [...seen.keys()].some((k) => k.split("+").includes(want) || k === want),
        `no case ended in ${want}: ${[...seen.keys()]}`,
      );
    }
  },
);
