# Small ONNX graphs that carry weights without an initializer (attributes of
# ai.onnx.ml ops, TfIdfVectorizer weights, a model-local function, constants,
# subgraph and sparse initializers), all under 4 KiB, each of which
# onnxruntime runs: the session gate must refuse every one as "not a
# weightless tensor-op graph" (tests/plugins/transformers_test.ts). Run with
# Debian's python3-onnx: /usr/bin/python3 make_gate_graphs.py
import onnx
import numpy as np
from onnx import helper, TensorProto, numpy_helper

weights = np.random.default_rng(7).standard_normal(1000).astype(np.float32)
f32 = lambda n: helper.make_tensor_value_info(n[0], TensorProto.FLOAT, n[1])


def save(name, nodes, inputs, outputs, opsets=(("", 13),), functions=(), **graph_kw):
    graph = helper.make_graph(nodes, name, inputs, outputs, **graph_kw)
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid(d, v) for d, v in opsets], functions=list(functions)
    )
    model.ir_version = 8
    data = model.SerializeToString()
    assert len(data) <= 4096, (name, len(data))
    open(f"{name}.onnx", "wb").write(data)
    print(name, len(data))


ml = (("", 13), ("ai.onnx.ml", 1))
save("linear_regressor", [helper.make_node("LinearRegressor", ["X"], ["Y"], domain="ai.onnx.ml",
     coefficients=weights[:780].tolist(), intercepts=[0.5])], [f32(("X", [1, 780]))], [f32(("Y", [1, 1]))], ml)
save("scaler", [helper.make_node("Scaler", ["X"], ["Y"], domain="ai.onnx.ml", offset=weights[:380].tolist(),
     scale=weights[380:760].tolist())], [f32(("X", [1, 380]))], [f32(("Y", [1, 380]))], ml)
save("tfidf", [helper.make_node("TfIdfVectorizer", ["X"], ["Y"], mode="TFIDF", min_gram_length=1,
     max_gram_length=1, max_skip_count=0, ngram_counts=[0], ngram_indexes=list(range(330)),
     pool_int64s=list(range(330)), weights=weights[:330].tolist())],
     [helper.make_tensor_value_info("X", TensorProto.INT64, [4])], [f32(("Y", [330]))])
inner = helper.make_function("local", "Lin", ["X"], ["Y"], [helper.make_node("LinearRegressor", ["X"], ["Y"],
        domain="ai.onnx.ml", coefficients=weights[:760].tolist(), intercepts=[0.0])],
        [helper.make_opsetid("", 13), helper.make_opsetid("ai.onnx.ml", 1)])
save("function_regressor", [helper.make_node("Lin", ["X"], ["Y"], domain="local")], [f32(("X", [1, 760]))],
     [f32(("Y", [1, 1]))], ml + (("local", 1),), functions=[inner])
save("constant_floats", [helper.make_node("Constant", [], ["c"], value_floats=weights[:4].tolist()),
     helper.make_node("Add", ["X", "c"], ["Y"])], [f32(("X", [4]))], [f32(("Y", [4]))])
branch = lambda name, w: helper.make_graph([helper.make_node("Identity", [name], [name + "_out"])], name + "_g",
                                          [], [f32((name + "_out", [4]))], initializer=[numpy_helper.from_array(w, name)])
save("if_initializers", [helper.make_node("If", ["C"], ["Y"], then_branch=branch("a", weights[:4]),
     else_branch=branch("b", weights[4:8]))], [helper.make_tensor_value_info("C", TensorProto.BOOL, [])],
     [f32(("Y", [4]))])
