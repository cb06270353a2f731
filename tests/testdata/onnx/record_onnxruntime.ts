// Adds what onnxruntime reads from each file of this folder to expected.json
// (after generate.py has written both). Each graph copies every tensor it
// holds to a graph output, so running it with no inputs shows what
// onnxruntime read:
//
//   deno run --allow-read --allow-write --allow-env --allow-ffi tests/testdata/onnx/record_onnxruntime.ts
//
// tests/hash/onnx_oracle_test.ts runs the same function and checks that the
// recorded results are still what onnxruntime does.
import * as ort from "onnxruntime-node";
import { createHash } from "node:crypto";

const HERE = new URL("./", import.meta.url);

/** onnxruntime's tensor types, spelled as our dtypes. */
const DTYPES: Record<string, string> = {
  float32: "F32",
  float64: "F64",
  int64: "I64",
  int32: "I32",
  bool: "BOOL",
  string: "STRING",
};

/** What onnxruntime read from one file: its outputs, or why it refused the file. */
export type OnnxruntimeView =
  | { outputs: Record<string, { dtype: string; shape: number[]; sha256: string }> }
  | { error: string };

/** Opens `file` in onnxruntime and runs it with no inputs. */
export async function onnxruntimeView(file: string): Promise<OnnxruntimeView> {
  const path = decodeURIComponent(new URL(file, HERE).pathname);
  let session: ort.InferenceSession;
  try {
    session = await ort.InferenceSession.create(path, { logSeverityLevel: 3 });
  } catch (e) {
    return { error: firstLine(e) };
  }
  try {
    const results = await session.run({});
    const outputs: Record<string, { dtype: string; shape: number[]; sha256: string }> = {};
    for (const [name, t] of Object.entries(results)) {
      const data = t.data as ArrayBufferView | string[];
      const bytes = Array.isArray(data)
        ? new TextEncoder().encode(JSON.stringify(data))
        : new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
      outputs[name] = {
        dtype: DTYPES[t.type] ?? t.type,
        shape: t.dims.map(Number),
        sha256: createHash("sha256").update(bytes).digest("hex"),
      };
    }
    return { outputs };
  } catch (e) {
    return { error: firstLine(e) };
  } finally {
    await session.release();
  }
}

/** The first line of an error's message, without the machine-specific path. */
function firstLine(e: unknown): string {
  const text = e instanceof Error ? e.message : String(e);
  return text.split("\n")[0]!.replace(decodeURIComponent(HERE.pathname), "");
}

if (import.meta.main) {
  const path = new URL("expected.json", HERE);
  const expected = JSON.parse(await Deno.readTextFile(path)) as {
    files: Record<string, Record<string, unknown>>;
    onnxruntime_version?: string;
  };
  for (const [file, entry] of Object.entries(expected.files)) {
    entry.onnxruntime = await onnxruntimeView(file);
  }
  expected.onnxruntime_version = ort.env.versions.common;
  await Deno.writeTextFile(path, JSON.stringify(sortKeys(expected), null, 2) + "\n");
}

function sortKeys(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(sortKeys);
  if (v === null || typeof v !== "object") return v;
  return Object.fromEntries(
    Object.keys(v).sort().map((k) => [k, sortKeys((v as Record<string, unknown>)[k])]),
  );
}
