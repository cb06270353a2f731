// The PyTorch reader against the real loader: small checkpoints written with
// torch 1.13 (tests/testdata/pytorch/generate.py), and what `torch.load` read
// from each (expected.json). Where torch reads tensors, the reader lists the
// same tensors (names in the safemodels-v1 scheme, dtypes, shapes, bytes) or
// refuses the file; it never lists tensors torch does not read.
import assert from "node:assert/strict";
import { readPytorchLegacy, readPytorchZip } from "../../hash/_pytorch.ts";
import { bytesSource } from "../../hash/_source.ts";
import { ForbiddenGlobalError, ModelFormatError } from "../../hash/errors.ts";
import { hashManifest, safeHash } from "../../hash/mod.ts";
import type { Tensor } from "../../hash/types.ts";
import { collect, sha256hex } from "../_helpers.ts";

const DIR = new URL("../testdata/pytorch/", import.meta.url);

interface TorchTensor {
  dtype: string;
  shape: number[];
  sha256?: string;
  type: string;
}
interface TorchResult {
  tensors?: Record<string, TorchTensor>;
  unnamed?: string[];
  error?: string;
}
const oracle = JSON.parse(
  Deno.readTextFileSync(new URL("expected.json", DIR)),
) as {
  files: Record<
    string,
    {
      what: string;
      "torch.load": TorchResult;
      "torch.load(weights_only=True)": TorchResult;
    }
  >;
};

/** What our reader must do with a file: hash it, or refuse it saying why. */
type Want =
  | "hash"
  | { global: string }
  | { code: "bad-pickle" | "too-large" | "bad-header" | "bad-offsets" | "bad-zip"; says: string[] };

const bad = (...says: string[]): Want => ({ code: "bad-pickle", says });
const tooLarge = (...says: string[]): Want => ({ code: "too-large", says });
const badZip = (...says: string[]): Want => ({ code: "bad-zip", says });

const WANT: Record<string, Want> = {
  // 1. Opcodes that change a tensor after it is built.
  "c1_build_on_tensor.pt": bad("BUILD", "torch._utils._rebuild_tensor_v2"),
  "c1_build_on_tensor.legacy.pt": bad("BUILD", "torch._utils._rebuild_tensor_v2"),
  "c1_build_on_parameter.pt": bad("BUILD", "torch._utils._rebuild_parameter"),
  "c1_tensor_ctor_build.pt": bad("BUILD", "torch.Tensor"),
  "c1_tensor_ctor.pt": bad('"x"', "torch.Tensor"),
  "c1_from_type_parameter_data.pt": bad(
    "torch._tensor._rebuild_from_type_v2",
    "torch.nn.parameter.Parameter",
  ),
  "c1_hooks_hold_tensor.pt": bad('"w"', "backward hooks"),
  "c1_args_mutated_after_call.pt": bad("after", "torch._utils._rebuild_tensor_v2"),
  "c1_state_dict_metadata.pt": "hash",
  "c1_state_dict_metadata.legacy.pt": "hash",
  "c1_metadata_holds_tensor.pt": bad("BUILD", "OrderedDict", "tensor"),
  "c1_build_on_dict.pt": bad("BUILD", "dict"),
  // 2. Parameters: hashed as the tensor they wrap.
  "c2_parameters.pt": "hash",
  "c2_parameters.legacy.pt": "hash",
  "c2_parameter_newobj.pt": "hash",
  "c2_parameter_no_data.pt": bad('"p"', "torch.nn.parameter.Parameter", "without data"),
  "c2_parameter_with_state.pt": bad("torch._utils._rebuild_parameter_with_state"),
  "c2_whole_module.pt": { global: "torch.nn.modules.linear.Linear" },
  // 3. Nested containers.
  "c3_training_checkpoint.pt": "hash",
  "c3_training_checkpoint.legacy.pt": "hash",
  "c3_lists_and_tuples.pt": "hash",
  "c3_lists_and_tuples.legacy.pt": "hash",
  "c3_root_tensor.pt": "hash",
  "c3_int_keys.pt": "hash",
  "c3_tied.pt": "hash",
  "c3_dotted_keys.pt": "hash",
  "c3_name_collision.pt": bad('"a.b"', "twice"),
  "c3_float_key.pt": bad("1.5"),
  "c3_tuple_key.pt": bad("key"),
  "c3_set_of_tensors.pt": bad('"s"', "set"),
  "c3_tensor_as_key.pt": bad('"k"', "key"),
  "c3_no_tensors.pt": "hash",
  // 4. Tensor subclasses and other rebuild functions.
  "c4_quantized.pt": { global: "torch._utils._rebuild_qtensor" },
  "c4_sparse_coo.pt": { global: "torch._utils._rebuild_sparse_tensor" },
  "c4_sparse_csr.pt": { global: "torch._utils._rebuild_sparse_csr_tensor" },
  "c4_meta.pt": { global: "torch._utils._rebuild_meta_tensor_no_storage" },
  "c4_subclass.pt": { global: "__main__.MyTensor" },
  "c4_from_type_tensor.pt": "hash",
  "c4_requires_grad.pt": "hash",
  "c4_requires_grad_int.pt": bad("requires_grad", "I64"),
  "c4_v2_metadata_neg.pt": bad("torch._utils._rebuild_tensor_v2", "metadata"),
  "c4_rebuild_tensor_v1.pt": "hash",
  "c4_device_numpy.pt": { global: "torch._utils._rebuild_device_tensor_from_numpy" },
  "c4_wrapper_subclass.pt": { global: "torch._utils._rebuild_wrapper_subclass" },
  "c4_nested.pt": { global: "torch._utils._rebuild_nested_tensor" },
  // 5. Work bounded by the file's size.
  "c5_broadcast.pt": "hash",
  "c5_broadcast_large.pt": tooLarge("storage"),
  "c5_many_views.pt": tooLarge("storage"),
  // 6. One file, two readings: torch.load reads other tensors than the
  // reader would, or another loader (numpy.load, torch's tar loader) reads
  // the file too.
  "c6_legacy_view_key_is_root.legacy.pt": bad('"A"', "both a root storage and a view"),
  "c6_legacy_view_key_is_own_root.legacy.pt": bad('"B"', "both a root storage and a view"),
  "c6_legacy_root_key_is_view.legacy.pt": bad('"V"', "both a root storage and a view"),
  "c6_legacy_views.legacy.pt": "hash",
  "c6_tar_polyglot.legacy.pt": { code: "bad-header", says: ["tar header"] },
  "c6_legacy_trailing_bytes.legacy.pt": { code: "bad-offsets", says: ["16 bytes follow"] },
  "c6_unicode_surrogate_pair_key.pt": bad("surrogate", "\\ud83d"),
  "c6_unicode_lone_surrogate_key.pt": bad("surrogate", "\\ud800"),
  "c6_unicode_even_backslashes.pt": "hash",
  "c6_unicode_escapes.pt": "hash",
  "c6_string_escapes.pt": "hash",
  "c6_int_float_key_2_53.pt": bad("float dict key 9007199254740992"),
  "c6_int_float_key_1e20.pt": bad("float dict key 100000000000000000000"),
  "c6_int_bool_float_key_one.pt": "hash",
  "c6_nan_keys.pt": bad("NaN"),
  "c6_int_octal_key.pt": bad('"010"'),
  "c6_zip_extra_npy.pt": badZip('"archive/w.npy"', "numpy.load"),
  "c6_zip_extra_npy_outside.pt": badZip('"plain/w.npy"'),
  "c6_zip_unreferenced_storage.pt": badZip("archive/data/7", "not named"),
  "c6_zip_record_npy.pt": badZip("archive/.data/serialization_id", ".npy"),
  "c6_zip_storage_npy_magic.pt": badZip("archive/data/0", ".npy magic"),
  "c6_zip_new_records.pt": "hash",
};

function read(file: string): Promise<Tensor[]> {
  const bytes = Deno.readFileSync(new URL(file, DIR));
  const source = bytesSource(bytes, file);
  return bytes[0] === 0x50 && bytes[1] === 0x4b
    ? readPytorchZip(source)
    : readPytorchLegacy(source);
}

Deno.test("pytorch oracle: every committed checkpoint has an expectation", () => {
  const files = [...Deno.readDirSync(DIR)].map((e) => e.name).filter((n) => n.endsWith(".pt"));
  assert.deepEqual(files.sort(), Object.keys(oracle.files).sort());
  assert.deepEqual(Object.keys(WANT).sort(), Object.keys(oracle.files).sort());
});

for (const [file, want] of Object.entries(WANT)) {
  const torch = oracle.files[file]!;
  Deno.test(`pytorch oracle: ${file} (${torch.what})`, async () => {
    const loaded = torch["torch.load"];
    if (want === "hash") {
      assert.equal(loaded.error, undefined, "torch.load refused a file we hash");
      assert.equal(loaded.unnamed, undefined, "torch.load read a tensor our names cannot name");
      const tensors = await read(file);
      const got: Record<string, TorchTensor> = {};
      for (const t of tensors) {
        assert.equal(got[t.name], undefined, `${t.name} listed twice`);
        got[t.name] = {
          dtype: t.dtype,
          shape: t.shape,
          sha256: sha256hex(await collect(t.chunks())),
          type: "",
        };
      }
      const expected: Record<string, TorchTensor> = {};
      for (const [name, t] of Object.entries(loaded.tensors!)) {
        expected[name] = { dtype: t.dtype, shape: t.shape, sha256: t.sha256!, type: "" };
      }
      assert.deepEqual(got, expected);
      return;
    }
    await assert.rejects(
      async () => {
        for (const t of await read(file)) await collect(t.chunks());
      },
      (e: unknown) => {
        if ("global" in want) {
          assert.ok(e instanceof ForbiddenGlobalError, String(e));
          assert.equal(e.global, want.global);
          return true;
        }
        assert.ok(e instanceof ModelFormatError && !(e instanceof ForbiddenGlobalError), String(e));
        assert.equal(e.code, want.code, e.message);
        for (const s of want.says) assert.ok(e.message.includes(s), `"${s}" not in: ${e.message}`);
        return true;
      },
    );
  });
}

Deno.test("pytorch oracle: safeHash of the zip and legacy files of one checkpoint agree", async () => {
  for (const name of ["c3_training_checkpoint", "c2_parameters", "c3_lists_and_tuples"]) {
    const zip = Deno.readFileSync(new URL(`${name}.pt`, DIR));
    const legacy = Deno.readFileSync(new URL(`${name}.legacy.pt`, DIR));
    assert.equal(await safeHash(zip), await safeHash(legacy), name);
  }
  const manifest = await hashManifest(Deno.readFileSync(new URL("c3_training_checkpoint.pt", DIR)));
  assert.ok(manifest.tensors.some((t) => t.name === "optimizer.state.0.exp_avg"));
});
