#!/usr/bin/env python3
"""Oracle checkpoints for the PyTorch reader (tests/hash/pytorch_oracle_test.ts).

Writes small checkpoints into this folder, with torch.save where torch can make
them and hand-written pickle opcodes (saved through torch.save's own writer, so
storages and the zip or legacy layout are torch's) where it cannot, then loads
each with torch.load(f) and torch.load(f, weights_only=True) and records in
expected.json what torch returned: every tensor reachable from the root, named
with the safemodels-v1 scheme (see README, "The safemodels-v1 hash"), its dtype,
shape and the SHA-256 of its bytes in C order, or the error torch raised.

Needs torch (written with Debian's python3-torch 1.13: `/usr/bin/python3
generate.py`). The tests read the committed files only; CI never runs this.
"""

import collections
import hashlib
import json
import math
import os
import pickle
import re
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
OrderedDict = collections.OrderedDict

# --- Writing hand-made pickles through torch.save -----------------------------


class Emit:
    """An object that pickles as whatever opcodes `fn(pickler)` writes."""

    def __init__(self, fn):
        self.fn = fn


class _Pickler(pickle._Pickler):  # the pure-Python pickler, so save() can be hooked
    def save(self, obj, save_persistent_id=True):
        if isinstance(obj, Emit):
            obj.fn(self)
            return
        super().save(obj, save_persistent_id)


class PickleModule:
    """What torch.save calls `pickle_module`: our pickler, stock everything else."""

    Pickler = _Pickler
    Unpickler = pickle.Unpickler
    load = staticmethod(pickle.load)

    @staticmethod
    def dump(obj, f, protocol=2):
        _Pickler(f, protocol).dump(obj)


def glob(p, qualified):
    module, name = qualified.rsplit(".", 1)
    p.write(pickle.GLOBAL + f"{module}\n{name}\n".encode())


def call(qualified, *args, build=None, newobj=False, after=None):
    """`qualified(*args)` by REDUCE (or NEWOBJ), then BUILD with `build` if given."""

    def fn(p):
        glob(p, qualified)
        p.save(tuple(args))
        p.write(pickle.NEWOBJ if newobj else pickle.REDUCE)
        if build is not None:
            p.save(build)
            p.write(pickle.BUILD)
        if after is not None:
            after(p)

    return Emit(fn)


def v2_args(t, requires_grad=False, hooks=None):
    return (
        t.storage(),
        t.storage_offset(),
        tuple(t.size()),
        t.stride(),
        requires_grad,
        OrderedDict() if hooks is None else hooks,
    )


def rebuild_v2(t, *extra, requires_grad=False, hooks=None, build=None):
    return call(
        "torch._utils._rebuild_tensor_v2",
        *v2_args(t, requires_grad, hooks),
        *extra,
        build=build,
    )


def raw(*ops):
    """Literal opcode bytes."""
    return Emit(lambda p: p.write(b"".join(ops)))


# --- Reading what torch returned -----------------------------------------------

DTYPES = {
    torch.float64: "F64",
    torch.float32: "F32",
    torch.float16: "F16",
    torch.bfloat16: "BF16",
    torch.int64: "I64",
    torch.int32: "I32",
    torch.int16: "I16",
    torch.int8: "I8",
    torch.uint8: "U8",
    torch.bool: "BOOL",
    torch.complex64: "C64",
    torch.complex128: "C128",
}


def key_segment(k):
    """A dict key as a name segment (str as is, int in decimal), else None."""
    if isinstance(k, str):
        return k
    if isinstance(k, int):  # bool too: True == 1 as a dict key
        return str(int(k))
    if isinstance(k, float) and k.is_integer() and abs(k) <= 2**53:
        return str(int(k))  # 1.0 == 1 as a dict key
    return None


def tensor_record(t):
    rec = {"type": type(t).__name__, "requires_grad": bool(t.requires_grad)}
    if t.layout != torch.strided or t.is_quantized or t.device.type != "cpu":
        rec.update(
            dtype=str(t.dtype),
            layout=str(t.layout),
            device=str(t.device),
            quantized=bool(t.is_quantized),
            shape=list(t.shape),
        )
        return rec
    plain = t.detach().resolve_conj().resolve_neg().contiguous()
    if type(plain) is not torch.Tensor:
        plain = plain.as_subclass(torch.Tensor)
    if plain.dtype == torch.bfloat16:
        data = plain.view(torch.int16).numpy().tobytes()
    else:
        data = plain.numpy().tobytes()
    rec.update(
        dtype=DTYPES.get(t.dtype, str(t.dtype)),
        shape=list(t.shape),
        sha256=hashlib.sha256(data).hexdigest(),
    )
    return rec


def describe(root):
    """Every tensor reachable from `root`, by name, and why naming failed, if it did."""
    tensors, problems = {}, []

    def contains_tensor(v, seen):
        if isinstance(v, torch.Tensor):
            return True
        if id(v) in seen:
            return False
        seen.add(id(v))
        if isinstance(v, dict):
            return any(contains_tensor(x, seen) for kv in v.items() for x in kv)
        if isinstance(v, (list, tuple, set, frozenset)):
            return any(contains_tensor(x, seen) for x in v)
        return any(contains_tensor(x, seen) for x in getattr(v, "__dict__", {}).values())

    def walk(v, path):
        shown = ".".join(path) or "(root)"
        attrs = getattr(v, "__dict__", None) or {}
        if isinstance(v, torch.Tensor):
            hooks = attrs.get("_backward_hooks") or getattr(v, "_backward_hooks", None)
            if hooks and contains_tensor(hooks, set()):
                problems.append(f"{shown}: its _backward_hooks hold a tensor")
            name = ".".join(path) if path else "array"
            if name in tensors:
                problems.append(f"two paths are named {name!r}")
            tensors[name] = tensor_record(v)
            return
        if attrs and contains_tensor(attrs, set()):
            problems.append(f"{shown}: an attribute of the {type(v).__name__} holds a tensor")
        if isinstance(v, dict):
            for k, x in v.items():
                seg = key_segment(k)
                if seg is None:
                    if contains_tensor(k, set()):
                        problems.append(f"{shown}: a tensor as a dict key")
                    elif contains_tensor(x, set()):
                        problems.append(f"{shown}: a tensor under the key {k!r}")
                    continue
                walk(x, path + [seg])
        elif isinstance(v, (list, tuple)):
            for i, x in enumerate(v):
                walk(x, path + [str(i)])
        elif isinstance(v, (set, frozenset)):
            if contains_tensor(v, set()):
                problems.append(f"{shown}: a set holds a tensor")

    walk(root, [])
    out = {"tensors": tensors}
    if problems:
        out["unnamed"] = problems
    return out


def load(path, **kw):
    try:
        return describe(torch.load(path, **kw))
    except Exception as e:  # record what torch refused and why
        text = " ".join(str(e).split())
        text = text.split("WeightsUnpickler error: ")[-1]  # the reason, not the advice
        text = re.sub(r" from '[^']*'", "", text)  # no machine paths
        return {"error": f"{type(e).__name__}: {text[:200]}"}


# --- The checkpoints -------------------------------------------------------------


class MyTensor(torch.Tensor):
    """A Python tensor subclass (pickled by _rebuild_from_type_v2 with its class)."""


def f32(*shape, start=0.0):
    n = math.prod(shape)
    return (torch.arange(n, dtype=torch.float32) + start).reshape(shape)


def checkpoints():
    torch.manual_seed(0)
    c = {}
    w = f32(2, 3)
    other = f32(4, start=100.0)

    # 1. Opcodes that change a tensor after it is built.
    c["c1_build_on_tensor"] = (
        "_rebuild_tensor_v2 then BUILD (storage, offset, size, stride): Tensor.__setstate__ calls set_",
        {"w": rebuild_v2(w, build=(other.storage(), 1, (2,), (1,)))},
    )
    c["c1_build_on_parameter"] = (
        "_rebuild_parameter then BUILD (storage, offset, size, stride)",
        {
            "p": call(
                "torch._utils._rebuild_parameter",
                rebuild_v2(w),
                False,
                OrderedDict(),
                build=(other.storage(), 0, (3,), (1,)),
            )
        },
    )
    c["c1_tensor_ctor_build"] = (
        "torch.Tensor() by REDUCE, then BUILD (storage, offset, size, stride): the legacy set_ path",
        {"w": call("torch.Tensor", build=(other.storage(), 0, (4,), (1,)))},
    )
    c["c1_tensor_ctor"] = (
        "a tensor made by calling torch.Tensor([...]) beside a normal one",
        {"w": rebuild_v2(w), "x": call("torch.Tensor", [1.0, 2.0, 3.0])},
    )
    c["c1_from_type_parameter_data"] = (
        "_rebuild_from_type_v2(_rebuild_tensor_v2, Parameter, args, {'data': other}): setattr replaces the data",
        {
            "p": call(
                "torch._tensor._rebuild_from_type_v2",
                Emit(lambda p: glob(p, "torch._utils._rebuild_tensor_v2")),
                Emit(lambda p: glob(p, "torch.nn.parameter.Parameter")),
                v2_args(w),
                {"data": other},
            )
        },
    )
    c["c1_hooks_hold_tensor"] = (
        "_rebuild_tensor_v2 whose backward_hooks dict holds a tensor",
        {"w": rebuild_v2(w, hooks=OrderedDict([("h", other)]))},
    )

    def mutated_args(p):
        # size and stride are lists; after the call, more items are appended.
        p.write(pickle.EMPTY_LIST + pickle.BINPUT + bytes([200]))
        p.save(2)
        p.write(pickle.APPEND + pickle.EMPTY_LIST + pickle.BINPUT + bytes([201]))
        p.save(1)
        p.write(pickle.APPEND + pickle.POP + pickle.POP)
        glob(p, "torch._utils._rebuild_tensor_v2")
        p.write(pickle.MARK)
        p.save(other.storage())
        p.save(0)
        p.write(pickle.BINGET + bytes([200]) + pickle.BINGET + bytes([201]))
        p.save(False)
        p.save(OrderedDict())
        p.write(pickle.TUPLE + pickle.REDUCE)
        p.write(pickle.BINGET + bytes([200]))
        p.save(2)
        p.write(pickle.APPEND + pickle.POP + pickle.BINGET + bytes([201]))
        p.save(1)
        p.write(pickle.APPEND + pickle.POP)

    c["c1_args_mutated_after_call"] = (
        "_rebuild_tensor_v2 with size and stride lists that get items appended after the call",
        {"w": Emit(mutated_args)},
    )
    sd = torch.nn.Sequential(torch.nn.Linear(3, 2)).state_dict()
    c["c1_state_dict_metadata"] = (
        "torch.save(model.state_dict()): an OrderedDict with a _metadata BUILD",
        sd,
    )


    def od_with_state(state):
        def fn(p):
            glob(p, "collections.OrderedDict")
            p.write(pickle.EMPTY_TUPLE + pickle.REDUCE)
            p.save("w")
            p.save(rebuild_v2(w))
            p.write(pickle.SETITEM)
            p.save(state)
            p.write(pickle.BUILD)

        return Emit(fn)

    c["c1_metadata_holds_tensor"] = (
        "an OrderedDict whose BUILD state (its attributes) holds a tensor",
        od_with_state({"_metadata": OrderedDict(), "extra": other}),
    )

    def dict_build(p):
        p.write(pickle.EMPTY_DICT)
        p.save("w")
        p.save(rebuild_v2(w))
        p.write(pickle.SETITEM)
        p.save({"_metadata": {}})
        p.write(pickle.BUILD)

    c["c1_build_on_dict"] = ("BUILD on a plain dict", Emit(dict_build))

    # 2. Parameters.
    c["c2_parameters"] = (
        "torch.save of nn.Parameters (_rebuild_parameter), requires_grad True and False",
        {
            "p": torch.nn.Parameter(w.clone()),
            "q": torch.nn.Parameter(other.clone(), requires_grad=False),
        },
    )
    c["c2_parameter_newobj"] = (
        "NEWOBJ torch.nn.Parameter(tensor, True) beside a plain tensor",
        {
            "w": rebuild_v2(w),
            "p": call("torch.nn.parameter.Parameter", rebuild_v2(other), True, newobj=True),
        },
    )
    c["c2_parameter_no_data"] = (
        "NEWOBJ torch.nn.Parameter() without data",
        {"p": call("torch.nn.parameter.Parameter", newobj=True)},
    )
    c["c2_parameter_with_state"] = (
        "_rebuild_parameter_with_state(data, requires_grad, hooks, state) (written by torch >= 2.0)",
        {
            "p": call(
                "torch._utils._rebuild_parameter_with_state",
                rebuild_v2(w),
                True,
                OrderedDict(),
                {"tag": "x"},
            )
        },
    )
    c["c2_whole_module"] = ("torch.save of a whole nn.Module", torch.nn.Linear(2, 2))

    # 3. Nested containers.
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    model(torch.ones(5, 3)).sum().backward()
    opt.step()
    c["c3_training_checkpoint"] = (
        "{model: state_dict, optimizer: Adam state_dict, epoch, best}",
        {
            "model": model.state_dict(),
            "optimizer": opt.state_dict(),
            "epoch": 3,
            "best": 0.25,
        },
    )
    t3 = f32(3, start=7.0)
    c["c3_lists_and_tuples"] = (
        "a root list holding a tensor, a tuple of a tensor and a list, and a dict",
        [w, (other, [t3]), {"k": t3.to(torch.float16)}],
    )
    c["c3_root_tensor"] = ("torch.save(tensor)", w)
    c["c3_int_keys"] = ("a dict with int keys", {0: w, 1: other, "x": {2: t3}})
    c["c3_tied"] = ("one tensor under three paths", {"a": w, "b": [w, w]})
    c["c3_dotted_keys"] = (
        "a nested dict whose keys contain dots",
        {"model": {"encoder.weight": w}, "ema": {"encoder.weight": other}},
    )
    c["c3_name_collision"] = (
        "two paths with one name: {'a': {'b': w}, 'a.b': other}",
        {"a": {"b": w}, "a.b": other},
    )
    c["c3_float_key"] = ("a tensor under the key 1.5", {1.5: w})
    c["c3_tuple_key"] = ("a tensor under the key (1, 2)", {(1, 2): w})
    c["c3_set_of_tensors"] = ("a set holding a tensor", {"s": {w}})
    c["c3_tensor_as_key"] = ("a tensor as a dict key", {"k": {w: 1}})
    c["c3_no_tensors"] = ("a checkpoint without tensors", {"epoch": 3, "name": "x"})

    # 4. Tensor subclasses and other rebuild functions.
    c["c4_quantized"] = (
        "a quantized tensor (_rebuild_qtensor)",
        {"q": torch.quantize_per_tensor(w, 0.5, 1, torch.qint8)},
    )
    c["c4_sparse_coo"] = ("a sparse COO tensor (_rebuild_sparse_tensor)", {"s": w.to_sparse()})
    c["c4_sparse_csr"] = (
        "a sparse CSR tensor (_rebuild_sparse_csr_tensor)",
        {"s": w.to_sparse_csr()},
    )
    c["c4_meta"] = (
        "a meta tensor (_rebuild_meta_tensor_no_storage)",
        {"m": torch.empty(2, 3, device="meta")},
    )
    sub = w.clone().as_subclass(MyTensor)
    sub.tag = "x"  # torch 1.13 cannot load a subclass without attributes
    c["c4_subclass"] = (
        "a Python tensor subclass (_rebuild_from_type_v2 with __main__.MyTensor)",
        {"t": sub},
    )
    c["c4_from_type_tensor"] = (
        "_rebuild_from_type_v2(_rebuild_tensor_v2, torch.Tensor, args, state): a plain tensor",
        {
            "t": call(
                "torch._tensor._rebuild_from_type_v2",
                Emit(lambda p: glob(p, "torch._utils._rebuild_tensor_v2")),
                Emit(lambda p: glob(p, "torch._tensor.Tensor")),
                v2_args(w),
                {"note": "torch ignores this state for torch.Tensor"},
            )
        },
    )
    c["c4_requires_grad"] = (
        "_rebuild_tensor_v2 with requires_grad True",
        {"w": w.clone().requires_grad_()},
    )
    c["c4_requires_grad_int"] = (
        "_rebuild_tensor_v2 with requires_grad True on an int64 tensor",
        {"i": rebuild_v2(torch.arange(3), requires_grad=True)},
    )
    c["c4_v2_metadata_neg"] = (
        "_rebuild_tensor_v2 with a 7th metadata argument {'neg': True} (torch >= 2.0 sets the neg bit)",
        {"w": rebuild_v2(w, {"neg": True})},
    )
    c["c4_rebuild_tensor_v1"] = (
        "_rebuild_tensor(storage, offset, size, stride)",
        {
            "w": call(
                "torch._utils._rebuild_tensor",
                other.storage(),
                1,
                (3,),
                (1,),
            )
        },
    )
    c["c4_device_numpy"] = (
        "_rebuild_device_tensor_from_numpy(ndarray, dtype, device, requires_grad)",
        {
            "d": call(
                "torch._utils._rebuild_device_tensor_from_numpy",
                w.numpy(),
                torch.float32,
                "cpu",
                False,
            )
        },
    )
    c["c4_wrapper_subclass"] = (
        "_rebuild_wrapper_subclass(torch.Tensor, dtype, size, stride, offset, layout, device, requires_grad)",
        {
            "x": call(
                "torch._utils._rebuild_wrapper_subclass",
                Emit(lambda p: glob(p, "torch.Tensor")),
                torch.float32,
                (2,),
                (1,),
                0,
                torch.strided,
                torch.device("cpu"),
                False,
            )
        },
    )
    c["c4_nested"] = (
        "_rebuild_nested_tensor (torch >= 2.0)",
        {"n": call("torch._utils._rebuild_nested_tensor", w, torch.ones(2), torch.ones(2))},
    )

    # 5. Work bounded by the file's size.
    c["c5_broadcast"] = (
        "a stride-0 view: 64 elements from a 1-element storage",
        {"b": torch.ones(1).expand(64)},
    )
    c["c5_broadcast_large"] = (
        "a stride-0 view: 100,000 elements from a 1-element storage",
        {"b": torch.ones(1).expand(100_000)},
    )
    big = f32(256)
    c["c5_many_views"] = (
        "40 names for one 1 KiB storage",
        {f"v{i}": big for i in range(40)},
    )
    return c


# Legacy (pre-1.6, non-zip) versions of a few.
LEGACY = [
    "c1_build_on_tensor",
    "c1_state_dict_metadata",
    "c2_parameters",
    "c3_training_checkpoint",
    "c3_lists_and_tuples",
]


def main():
    expected = {}
    for name, (what, obj) in checkpoints().items():
        for legacy in (False, True):
            if legacy and name not in LEGACY:
                continue
            file = f"{name}{'.legacy' if legacy else ''}.pt"
            path = os.path.join(HERE, file)
            torch.save(
                obj,
                path,
                pickle_module=PickleModule,
                _use_new_zipfile_serialization=not legacy,
            )
            expected[file] = {
                "what": what,
                "torch.load": load(path),
                "torch.load(weights_only=True)": load(path, weights_only=True),
            }
            print(file, os.path.getsize(path), file=sys.stderr)
    with open(os.path.join(HERE, "expected.json"), "w") as f:
        json.dump(
            {
                "torch": torch.__version__,
                "python": sys.version.split()[0],
                "files": expected,
            },
            f,
            indent=2,
            sort_keys=True,
        )
        f.write("\n")


if __name__ == "__main__":
    main()
