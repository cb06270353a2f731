#!/usr/bin/env python3
"""Writes the ONNX files in this folder and what the `onnx` package reads from
each (expected.json). Run with Debian's python3 (onnx 1.12, numpy):

    /usr/bin/python3 tests/testdata/onnx/generate.py
    deno run --allow-read --allow-write --allow-env --allow-ffi tests/testdata/onnx/record_onnxruntime.ts

The second command adds what onnxruntime (onnxruntime-node, the version in
deno.json) reads. Every graph copies each tensor it holds to a graph output
(through Identity, an If or a ConstantOfShape), so that running it with no
inputs shows what onnxruntime read.

"onnx" below is the onnx package's view: `onnx.checker.check_model`, and
every tensor the model holds, read with `onnx.load` (external data included),
`numpy_helper.to_array` and `helper.get_attribute_value` (which picks an
attribute's value by its `type`, as onnxruntime does), named by the
safemodels-v1 scheme (see the README). Sparse tensors are listed in the
scheme's canonical form (values, linear indices, dense shape) and densified
(the form onnxruntime reads).
"""
import hashlib
import json
import os

import numpy as np
import onnx
from onnx import AttributeProto as A
from onnx import TensorProto as T
from onnx import helper as h
from onnx import numpy_helper as nh

HERE = os.path.dirname(os.path.abspath(__file__))
DTYPES = {
    np.dtype("float32"): "F32",
    np.dtype("float64"): "F64",
    np.dtype("int64"): "I64",
    np.dtype("int32"): "I32",
    np.dtype("bool"): "BOOL",
}
FILES = {}


def vi(name, elem, shape):
    return h.make_tensor_value_info(name, elem, shape)


def make(nodes, outputs, inits=(), sparse=(), inputs=(), functions=()):
    graph = h.make_graph(nodes, "g", list(inputs), outputs, list(inits), sparse_initializer=list(sparse))
    opsets = [h.make_opsetid("", 17)] + ([h.make_opsetid("local", 1)] if functions else [])
    model = h.make_model(graph, opset_imports=opsets, functions=list(functions), producer_name="safemodels-tests")
    model.ir_version = 8
    return model


def const(out, array=None, **attrs):
    if array is not None:
        attrs["value"] = nh.from_array(np.asarray(array))
    return h.make_node("Constant", [], [out], **attrs)


def ident(x, y):
    return h.make_node("Identity", [x], [y])


def external(tensor, location, offset, length):
    tensor.ClearField("raw_data")
    for k, v in (("location", location), ("offset", str(offset)), ("length", str(length))):
        e = tensor.external_data.add()
        e.key, e.value = k, v
    tensor.data_location = T.EXTERNAL
    return tensor


def add(name, what, model, outputs=None, data=None):
    FILES[name] = (what, model, outputs or {}, data or {})


# --- Files the reader hashes -------------------------------------------------

W = nh.from_array(np.arange(4, dtype=np.float32).reshape(2, 2), "W")
typed_i64 = h.make_tensor("ignored", T.INT64, [2], [-5, 7])  # int64_data, not raw_data
add(
    "constants.onnx",
    "an initializer, Constant nodes of every numeric kind, a ConstantOfShape value attribute",
    make(
        [
            const("c_tensor", np.array([1.5, -2], dtype=np.float32)),
            const("c_typed", value=typed_i64),
            const("c_float", value_float=0.25),
            const("c_floats", value_floats=[1.0, 2.0, 3.0]),
            const("c_int", value_int=-3),
            const("c_ints", value_ints=[1, -2]),
            const("one", value_ints=[1]),
            h.make_node("ConstantOfShape", ["one"], ["filled"], value=nh.from_array(np.array([4], dtype=np.int32))),
        ]
        + [ident(x, "o_" + x) for x in ["W", "c_tensor", "c_typed", "c_float", "c_floats", "c_int", "c_ints", "one"]],
        [
            vi("o_W", T.FLOAT, [2, 2]),
            vi("o_c_tensor", T.FLOAT, [2]),
            vi("o_c_typed", T.INT64, [2]),
            vi("o_c_float", T.FLOAT, []),
            vi("o_c_floats", T.FLOAT, [3]),
            vi("o_c_int", T.INT64, []),
            vi("o_c_ints", T.INT64, [2]),
            vi("o_one", T.INT64, [1]),
            vi("filled", T.INT32, [1]),
        ],
        [W],
    ),
    {
        "W": "o_W",
        "c_tensor": "o_c_tensor",
        "c_typed": "o_c_typed",
        "c_float": "o_c_float",
        "c_floats": "o_c_floats",
        "c_int": "o_c_int",
        "c_ints": "o_c_ints",
        "one": "o_one",
        # ConstantOfShape([1]) fills a [1] tensor with its value: the attribute itself.
        "filled:value": "filled",
    },
)


def branch(name, consts, inits=()):
    nodes = [const(n, v) for n, v in consts]
    outs = [f"{name}_{n}" for n, _ in consts] + [f"{name}_{t.name}" for t in inits]
    nodes += [ident(n, f"{name}_{n}") for n, _ in consts] + [ident(t.name, f"{name}_{t.name}") for t in inits]
    shapes = [[] for _ in consts] + [list(t.dims) for t in inits]
    return h.make_graph(nodes, name, [], [vi(o, T.FLOAT, s) for o, s in zip(outs, shapes)], list(inits))


f32 = np.float32
inner = h.make_node(
    "If",
    ["cond_t"],
    ["inner"],
    then_branch=branch("in_then", [("k", f32(7))]),
    else_branch=branch("in_else", [("k2", f32(8))]),
)
else_b = branch("b_else", [("c", f32(5))])
else_b.node.append(inner)
else_b.output.append(vi("inner", T.FLOAT, []))
add(
    "subgraphs.onnx",
    "If branches holding Constant nodes and an initializer, one If nested in another",
    make(
        [
            const("cond_t", np.array(True)),
            const("cond_f", np.array(False)),
            const("top", f32(1)),
            h.make_node(
                "If",
                ["cond_t"],
                ["a_c", "a_w"],
                then_branch=branch("a_then", [("c", f32(2))], [nh.from_array(np.array([3, 4], dtype=f32), "w")]),
                else_branch=branch("a_else", [("c", f32(-2)), ("d", f32(-4))]),
            ),
            h.make_node(
                "If",
                ["cond_f"],
                ["b_c", "b_inner"],
                then_branch=branch("b_then", [("c", f32(6)), ("d", f32(-6))]),
                else_branch=else_b,
            ),
            ident("top", "o_top"),
        ],
        [vi(n, T.FLOAT, [2] if n == "a_w" else []) for n in ["a_c", "a_w", "b_c", "b_inner", "o_top"]],
    ),
    {
        "top": "o_top",
        "a_c:then_branch/c": "a_c",
        "a_c:then_branch/w": "a_w",
        "b_c:else_branch/c": "b_c",
        "b_c:else_branch/inner:then_branch/k": "b_inner",
    },
)

values_s = nh.from_array(np.array([1, 2], dtype=np.float32), "S")
sparse_s = h.make_sparse_tensor(values_s, nh.from_array(np.array([1, 3], dtype=np.int64)), [2, 2])
values_t = nh.from_array(np.array([5, 6, 7], dtype=np.int64), "T")
sparse_t = h.make_sparse_tensor(values_t, nh.from_array(np.array([[0, 0, 1], [0, 2, 0], [1, 1, 1]], dtype=np.int64)), [2, 3, 2])
sparse_c = h.make_sparse_tensor(
    nh.from_array(np.array([9], dtype=np.float32), "ignored"), nh.from_array(np.array([[1, 0]], dtype=np.int64)), [2, 2]
)
add(
    "sparse.onnx",
    "sparse initializers with linear and coordinate indices, and a Constant sparse_value",
    make(
        [const("C", sparse_value=sparse_c), ident("S", "o_S"), ident("T", "o_T"), ident("C", "o_C")],
        [vi("o_S", T.FLOAT, [2, 2]), vi("o_T", T.INT64, [2, 3, 2]), vi("o_C", T.FLOAT, [2, 2])],
        sparse=[sparse_s, sparse_t],
    ),
    {"S": "o_S", "T": "o_T", "C": "o_C"},
)

ext_bytes = np.arange(8, dtype=np.float32).tobytes()
shared = [external(nh.from_array(np.zeros(4, dtype=np.float32), n), "external.data", 0, 16) for n in "abc"]
d_tensor = external(nh.from_array(np.zeros(2, dtype=np.float32), "d"), "external.data", 16, 8)
k_tensor = external(nh.from_array(np.zeros(2, dtype=np.float32)), "external.data", 24, 8)
add(
    "external.onnx",
    "three initializers sharing one external range, another range, a Constant with external data",
    make(
        [const("k", value=k_tensor)] + [ident(x, "o_" + x) for x in "abcdk"],
        [vi("o_" + x, T.FLOAT, [4 if x in "abc" else 2]) for x in "abcdk"],
        shared + [d_tensor],
    ),
    {x: "o_" + x for x in "abcdk"},
    {"external.data": ext_bytes},
)

add(
    "input_shadow.onnx",
    "an initializer that is also a graph input (a default the caller may override)",
    make([ident("W", "o_W")], [vi("o_W", T.FLOAT, [2, 2])], [W], inputs=[vi("W", T.FLOAT, [2, 2])]),
    {"W": "o_W"},
)

# --- Files the reader refuses --------------------------------------------------

one_f = nh.from_array(np.array([1], dtype=np.float32), "A")
raw_typed = nh.from_array(np.array([1, 2], dtype=np.float32), "A")
raw_typed.float_data.extend([9, 9])
add(
    "raw_and_typed.onnx",
    "an initializer with both raw_data and float_data",
    make([ident("A", "o_A")], [vi("o_A", T.FLOAT, [2])], [raw_typed]),
)

not_external = nh.from_array(np.array([1, 2], dtype=np.float32), "A")
for k, v in (("location", "external.data"), ("offset", "0"), ("length", "8")):
    e = not_external.external_data.add()
    e.key, e.value = k, v
add(
    "external_entries_not_external.onnx",
    "an initializer with raw_data and external_data entries but data_location DEFAULT",
    make([ident("A", "o_A")], [vi("o_A", T.FLOAT, [2])], [not_external]),
    data={"external.data": ext_bytes},
)

add(
    "duplicate_initializer.onnx",
    "two initializers named A",
    make([ident("A", "o_A")], [vi("o_A", T.FLOAT, [1])], [one_f, nh.from_array(np.array([2], dtype=np.float32), "A")]),
)

add(
    "constant_shadows_initializer.onnx",
    "a Constant whose output has an initializer's name",
    make([const("A", np.array([5], dtype=np.float32)), ident("A", "o_A")], [vi("o_A", T.FLOAT, [1])], [one_f]),
)

add(
    "constant_two_values.onnx",
    "a Constant with value_float and value_int",
    make([const("C", value_float=1.5, value_int=3), ident("C", "o_C")], [vi("o_C", T.FLOAT, [])]),
)

typed_float = const("C", np.array([7], dtype=np.float32))
typed_float.attribute[0].type = A.FLOAT
add(
    "constant_value_typed_float.onnx",
    "a Constant value attribute holding a tensor but typed FLOAT",
    make([typed_float, ident("C", "o_C")], [vi("o_C", T.FLOAT, [])]),
)

float_and_t = const("C", value_float=1.5)
float_and_t.attribute[0].t.CopyFrom(nh.from_array(np.array([7], dtype=np.float32)))
add(
    "constant_float_and_tensor.onnx",
    "a Constant value_float attribute that also holds a tensor",
    make([float_and_t, ident("C", "o_C")], [vi("o_C", T.FLOAT, [])]),
)

add(
    "constant_strings.onnx",
    "a Constant value_strings",
    make([const("C", value_strings=[b"a"]), ident("C", "o_C")], [vi("o_C", T.STRING, [1])]),
)

cos_typed = h.make_node("ConstantOfShape", ["one"], ["filled"], value=nh.from_array(np.array([4], dtype=np.int32)))
cos_typed.attribute[0].type = A.FLOAT
add(
    "attribute_type_mismatch.onnx",
    "a ConstantOfShape value attribute holding a tensor but typed FLOAT",
    make([const("one", value_ints=[1]), cos_typed], [vi("filled", T.INT32, [1])]),
)


def sparse_model(indices, dims=(2, 2)):
    sp = h.make_sparse_tensor(
        nh.from_array(np.array([1, 2], dtype=np.float32), "S"), nh.from_array(np.array(indices, dtype=np.int64)), list(dims)
    )
    return make([ident("S", "o_S")], [vi("o_S", T.FLOAT, list(dims))], sparse=[sp])


add("sparse_unsorted.onnx", "sparse indices [3, 1]", sparse_model([3, 1]))
add("sparse_duplicate.onnx", "sparse indices [1, 1]", sparse_model([1, 1]))
add("sparse_out_of_range.onnx", "sparse indices [1, 4] in a 2x2 tensor", sparse_model([1, 4]))

repeats = [external(nh.from_array(np.zeros(16, dtype=np.float32), f"r{i}"), "external_repeats.data", 0, 64) for i in range(17)]
add(
    "external_repeats.onnx",
    "17 initializers sharing one 64-byte external range (1088 bytes read from a 64-byte file)",
    make([ident("r0", "o_r0")], [vi("o_r0", T.FLOAT, [16])], repeats),
    data={"external_repeats.data": bytes(range(64))},
)

add_k = h.make_function(
    "local", "AddK", ["x"], ["y"], [const("k", np.float32(5)), h.make_node("Add", ["x", "k"], ["y"])], [h.make_opsetid("", 17)]
)
add(
    "function_constant.onnx",
    "a model-local function holding a Constant",
    make([const("z", np.float32(1)), h.make_node("AddK", ["z"], ["y"], domain="local")], [vi("y", T.FLOAT, [])], functions=[add_k]),
)

training = make([const("z", np.float32(1)), ident("z", "o_z")], [vi("o_z", T.FLOAT, [])])
info = training.training_info.add()
info.initialization.CopyFrom(h.make_graph([], "init", [], [], [nh.from_array(np.array([1], dtype=np.float32), "tw")]))
add("training_info.onnx", "a TrainingInfoProto whose initialization graph holds an initializer", training)


# --- The onnx package's view ----------------------------------------------------


def describe(array):
    array = np.array(array, order="C")  # not ascontiguousarray, which makes scalars 1-D
    little = array.astype(array.dtype.newbyteorder("<"), copy=False)
    return {
        "dtype": DTYPES[array.dtype],
        "shape": list(array.shape),
        "sha256": hashlib.sha256(little.tobytes()).hexdigest(),
    }


def sparse_view(base, sp, out):
    values = nh.to_array(sp.values)
    indices = nh.to_array(sp.indices)
    dims = tuple(sp.dims)
    linear = indices if indices.ndim == 1 else np.ravel_multi_index(tuple(indices.T), dims)
    out.append([base + ":values", describe(values)])
    out.append([base + ":indices", describe(linear.astype(np.int64))])
    out.append([base + ":shape", describe(np.array(dims, dtype=np.int64))])
    dense = np.zeros(dims, dtype=values.dtype)
    dense.flat[linear] = values
    return describe(dense)


def onnx_view(model):
    """Every tensor of the model, named by the safemodels-v1 scheme (duplicates kept)."""
    out, dense = [], {}

    def walk(graph, prefix):
        for t in graph.initializer:
            out.append([prefix + t.name, describe(nh.to_array(t))])
        for sp in graph.sparse_initializer:
            dense[prefix + sp.values.name] = sparse_view(prefix + sp.values.name, sp, out)
        for node in graph.node:
            if node.op_type == "Constant" and node.domain in ("", "ai.onnx"):
                name = prefix + node.output[0]
                for a in node.attribute:  # every attribute, as get_attribute_value reads it
                    v = h.get_attribute_value(a)
                    if a.type == A.TENSOR:
                        out.append([name, describe(nh.to_array(v))])
                    elif a.type == A.SPARSE_TENSOR:
                        dense[name] = sparse_view(name, v, out)
                    elif a.type in (A.FLOAT, A.FLOATS):
                        out.append([name, describe(np.array(v, dtype=np.float32))])
                    elif a.type in (A.INT, A.INTS):
                        out.append([name, describe(np.array(v, dtype=np.int64))])
                    else:
                        out.append([name, {"dtype": "STRING", "value": [s.decode() for s in v]}])
                continue
            key = next(o for o in node.output if o)
            for a in node.attribute:
                base = f"{prefix}{key}:{a.name}"
                if a.type == A.TENSOR:
                    out.append([base, describe(nh.to_array(a.t))])
                elif a.type == A.TENSORS:
                    out.extend([f"{base}.{i}", describe(nh.to_array(t))] for i, t in enumerate(a.tensors))
                elif a.type == A.GRAPH:
                    walk(a.g, base + "/")
                elif a.type == A.GRAPHS:
                    for i, g in enumerate(a.graphs):
                        walk(g, f"{base}.{i}/")

    walk(model.graph, "")
    return out, dense


def main():
    expected = {}
    for name, (what, model, outputs, data) in sorted(FILES.items()):
        with open(os.path.join(HERE, name), "wb") as f:
            f.write(model.SerializeToString())
        for file, content in data.items():
            with open(os.path.join(HERE, file), "wb") as f:
                f.write(content)
        entry = {"what": what, "outputs": outputs}
        loaded = onnx.load(os.path.join(HERE, name))
        view = {}
        try:
            onnx.checker.check_model(loaded)
            view["checker"] = "ok"
        except Exception as e:  # noqa: BLE001 (the message is the result)
            view["checker"] = str(e).strip().splitlines()[0]
        try:
            view["tensors"], dense = onnx_view(loaded)
            if dense:
                view["dense"] = dense
        except Exception as e:  # noqa: BLE001
            view["error"] = f"{type(e).__name__}: {str(e).strip().splitlines()[0]}"
        entry["onnx"] = view
        expected[name] = entry
    with open(os.path.join(HERE, "expected.json"), "w") as f:
        json.dump({"onnx_version": onnx.__version__, "files": expected}, f, indent=2, sort_keys=True)
        f.write("\n")


main()
