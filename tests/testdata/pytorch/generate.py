#!/usr/bin/env python3
"""Oracle checkpoints for the PyTorch reader (tests/hash/pytorch_oracle_test.ts).

Writes small checkpoints into this folder, with torch.save where torch can make
them and hand-written pickle opcodes (saved through torch.save's own writer, so
storages and the zip or legacy layout are torch's) where it cannot, then loads
each with torch.load(f) and torch.load(f, weights_only=True) and records in
expected.json what torch returned: every tensor reachable from the root, named
with the safemodels-v1 scheme (see README, "The safemodels-v1 hash"), its dtype,
shape and the SHA-256 of its bytes in C order, or the error torch raised.

Files torch.save cannot write at all (legacy files with crafted storage keys,
a legacy file that is also a tar, zips with extra entries) are written byte by
byte (crafted()); for the zips, expected.json also records what numpy.load
reads from them.

Needs torch (written with Debian's python3-torch 1.13: `/usr/bin/python3
generate.py`). `generate.py FILE...` rewrites only the named files and their
entries of expected.json: the legacy files torch.save writes hold storage keys
that are memory addresses, so they differ on every run. The tests read the
committed files only; CI never runs this.
"""

import collections
import hashlib
import io
import json
import math
import os
import pickle
import re
import struct
import sys
import tarfile
import zipfile

import numpy
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
            try:
                name.encode("utf-8")
            except UnicodeEncodeError:  # JSON cannot hold it either: recorded as ascii(name)
                problems.append(f"{ascii(name)}: a name with a lone surrogate, which UTF-8 cannot encode")
                name = ascii(name)
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


# --- Crafted files: written byte by byte, where torch.save cannot make them --------

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
SYS_INFO = {
    "protocol_version": 1001,
    "little_endian": True,
    "type_sizes": {"short": 2, "int": 4, "long": 4},
}


def storage_pid(key, numel, view=None, cls="torch.FloatStorage"):
    """A legacy persistent id ('storage', cls, key, 'cpu', numel, view) by BINPERSID."""

    def fn(p):
        p.save(("storage", Emit(lambda q: glob(q, cls)), key, "cpu", numel, view))
        p.write(pickle.BINPERSID)

    return Emit(fn)


def legacy_tensor(key, numel, shape, offset=0, view=None):
    stride, n = [], 1
    for d in reversed(shape):
        stride.insert(0, n)
        n *= d
    return call(
        "torch._utils._rebuild_tensor_v2",
        storage_pid(key, numel, view),
        offset,
        tuple(shape),
        tuple(stride),
        False,
        OrderedDict(),
    )


def legacy_bytes(root, storages, sys_info=SYS_INFO):
    """A legacy checkpoint: magic, protocol, sys_info, the root, the key list, storages (f32)."""
    out = io.BytesIO()
    pickle.dump(LEGACY_MAGIC, out, protocol=2)
    pickle.dump(1001, out, protocol=2)
    _Pickler(out, 2).dump(sys_info)
    _Pickler(out, 2).dump(root)
    pickle.dump(list(storages), out, protocol=2)
    for values in storages.values():
        out.write(struct.pack("<q", len(values)))
        out.write(struct.pack(f"<{len(values)}f", *values))
    return out.getvalue()


def tar_era_members(name, values):
    """The members of an early PyTorch tar checkpoint {name: tensor(values)}."""
    storages = io.BytesIO()
    pickle.dump(1, storages, protocol=2)
    storages.write(pickle.PROTO + b"\x02")
    storages.write(b"X\x01\x00\x00\x00sX\x03\x00\x00\x00cpu")
    glob(storages, "torch.FloatStorage")
    storages.write(pickle.TUPLE3 + pickle.STOP)
    storages.write(struct.pack("<q", len(values)) + struct.pack(f"<{len(values)}f", *values))
    pickle.dump([], storages, protocol=2)
    tensors = io.BytesIO()
    pickle.dump(1, tensors, protocol=2)
    pickle.dump((0, "s", None), tensors, protocol=2)
    tensors.write(struct.pack("<ii", 1, 0) + struct.pack("<qqq", len(values), 1, 0))
    main = pickle.PROTO + b"\x02" + pickle.EMPTY_DICT + pickle.SHORT_BINUNICODE
    main += bytes([len(name)]) + name.encode() + b"P0\n" + pickle.SETITEM + pickle.STOP
    return [("storages", storages.getvalue()), ("tensors", tensors.getvalue()), ("pickle", main)]


def tar_polyglot(legacy_values, tar_values):
    """A legacy checkpoint whose first 512 bytes are also a tar header.

    The header's fields sit inside a string of the sys_info pickle; its member
    holds the rest of the legacy file, and the tar-era checkpoint's members
    follow the last storage.
    """
    pad = "\x00" * 520
    sys_info = dict(pad=pad, **SYS_INFO)  # pad first: its string starts before byte 100
    root = {"w": legacy_tensor("0", len(legacy_values), [len(legacy_values)])}
    legacy = bytearray(legacy_bytes(root, {"0": legacy_values}, sys_info))
    start = legacy.index(b"\x00" * 520)
    assert start < 100 and start + 520 > 512
    legacy += bytes(-len(legacy) % 512)
    tail = io.BytesIO()
    with tarfile.open(fileobj=tail, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name, data in tar_era_members("w", tar_values):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))

    # tarfile pads the archive with zero blocks; one reads as its end.
    tail = tail.getvalue()
    tail = tail[: -(-len(tail.rstrip(b"\0")) // 512) * 512 + 512]

    def field(offset, text):
        legacy[offset : offset + len(text)] = text.encode()

    field(100, "0000644\0")
    field(108, "0000000\0")
    field(116, "0000000\0")
    field(124, "%011o\0" % (len(legacy) - 512))
    field(136, "00000000000\0")
    field(156, "0")
    field(257, "ustar\x0000")
    block = bytes(legacy[:148]) + b" " * 8 + bytes(legacy[156:512])
    field(148, "%06o\0 " % sum(block))
    return bytes(legacy) + tail


def raw_dict(*pairs):
    """A dict from (key opcodes, value) pairs: EMPTY_DICT MARK ... SETITEMS."""

    def fn(p):
        p.write(pickle.EMPTY_DICT + pickle.MARK)
        for k, v in pairs:
            p.write(k)
            p.save(v)
        p.write(pickle.SETITEMS)

    return Emit(fn)


def zip_with(members, extra):
    """A torch.save zip rewritten by zipfile (stored), with extra (name, bytes) members."""
    z = zipfile.ZipFile(io.BytesIO(members))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as w:
        for name, data in [(i.filename, z.read(i)) for i in z.infolist()] + extra:
            w.writestr(zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0)), data)
    return out.getvalue()


def npy(values):
    buf = io.BytesIO()
    numpy.save(buf, numpy.asarray(values, dtype="<f4"))
    return buf.getvalue()


def torch_saved(obj):
    buf = io.BytesIO()
    torch.save(obj, buf, pickle_module=PickleModule)
    return buf.getvalue()


def crafted():
    """Files torch.save cannot write: name -> (what, bytes)."""
    w = f32(4)
    c = {}
    # 6. One file, two readings.
    c["c6_legacy_view_key_is_root.legacy.pt"] = (
        "legacy: a view whose view key is another root's key (torch.load keeps roots and views in one dict)",
        legacy_bytes(
            {
                "a": legacy_tensor("A", 4, [4]),
                "b": legacy_tensor("B", 8, [4], view=("A", 4, 4)),
            },
            {"A": [0, 1, 2, 3], "B": [9, 9, 9, 9, 5, 6, 7, 8]},
        ),
    )
    c["c6_legacy_view_key_is_own_root.legacy.pt"] = (
        "legacy: a view whose view key is its own root's key",
        legacy_bytes(
            {"b": legacy_tensor("B", 8, [4], view=("B", 4, 4))},
            {"B": [0, 1, 2, 3, 5, 6, 7, 8]},
        ),
    )
    c["c6_legacy_root_key_is_view.legacy.pt"] = (
        "legacy: a root key that an earlier view key named (the view's bytes are read into its root)",
        legacy_bytes(
            {
                "a": legacy_tensor("B", 8, [4], view=("V", 4, 4)),
                "b": legacy_tensor("V", 4, [4]),
            },
            {"B": [0, 1, 2, 3, 4, 5, 6, 7], "V": [9, 9, 9, 9]},
        ),
    )
    c["c6_legacy_views.legacy.pt"] = (
        "legacy: two views of one root under their own keys, as torch < 1.0 wrote them",
        legacy_bytes(
            {
                "a": legacy_tensor("R", 8, [2, 2], view=("V1", 0, 4)),
                "b": legacy_tensor("R", 8, [3], view=("V2", 5, 3)),
                "c": legacy_tensor("R", 8, [2], view=("V1", 0, 4), offset=2),
            },
            {"R": [0, 1, 2, 3, 4, 5, 6, 7]},
        ),
    )
    c["c6_tar_polyglot.legacy.pt"] = (
        "legacy checkpoint {w: [0, 1, 2, 3]} whose first 512 bytes are a tar header; "
        "the tar checkpoint {w: [7, 7, 7, 7]} follows its last storage",
        tar_polyglot([0, 1, 2, 3], [7, 7, 7, 7]),
    )
    legacy_w = io.BytesIO()
    torch.save({"w": w}, legacy_w, _use_new_zipfile_serialization=False)
    c["c6_legacy_trailing_bytes.legacy.pt"] = (
        "legacy torch.save output with 16 bytes appended",
        legacy_w.getvalue() + b"\x00" * 16,
    )
    c["c6_unicode_surrogate_pair_key.pt"] = (
        "UNICODE key \\ud83d\\ude00 (two code points in Python) holding a tensor, then the key 😀 holding None",
        torch_saved(
            raw_dict(
                (pickle.UNICODE + b"\\ud83d\\ude00\n", w),
                (pickle.SHORT_BINUNICODE + bytes([4]) + "😀".encode(), None),
            )
        ),
    )
    c["c6_unicode_lone_surrogate_key.pt"] = (
        "UNICODE key \\ud800 beside the key U+FFFD (both would hash as U+FFFD)",
        torch_saved(
            raw_dict(
                (pickle.UNICODE + b"\\ud800\n", w),
                (pickle.SHORT_BINUNICODE + bytes([3]) + "\ufffd".encode(), f32(2)),
            )
        ),
    )
    c["c6_unicode_even_backslashes.pt"] = (
        "UNICODE key \\\\u0041 (an even run of backslashes: no escape, 7 characters)",
        torch_saved(raw_dict((pickle.UNICODE + b"\\\\u0041\n", w))),
    )
    c["c6_unicode_escapes.pt"] = (
        "UNICODE keys with escapes Python decodes (\\u00e9, \\U0001f600, a trailing backslash)",
        torch_saved(
            raw_dict(
                (pickle.UNICODE + b"caf\\u00e9\n", w),
                (pickle.UNICODE + b"\\U0001f600\\x\n", f32(2)),
                (pickle.UNICODE + b"end\\\n", f32(3)),
            )
        ),
    )
    c["c6_string_escapes.pt"] = (
        "STRING keys with octal, hex and letter escapes ('a\\012b', 'c\\x41\\t', '\\303\\251')",
        torch_saved(
            raw_dict(
                (pickle.STRING + b"'a\\012b'\n", w),
                (pickle.STRING + b"'c\\x41\\t'\n", f32(2)),
                (pickle.STRING + b"'\\303\\251'\n", f32(3)),
            )
        ),
    )
    big = 2**53
    c["c6_int_float_key_2_53.pt"] = (
        "{2**53: tensor, 2.0**53: None}: Python makes the two keys one",
        torch_saved(
            raw_dict(
                (pickle.LONG1 + bytes([8]) + big.to_bytes(8, "little"), w),
                (pickle.BINFLOAT + struct.pack(">d", float(big)), None),
            )
        ),
    )
    c["c6_int_float_key_1e20.pt"] = (
        "{10**20: tensor, 1e20: None}: Python makes the two keys one",
        torch_saved(
            raw_dict(
                (pickle.LONG1 + bytes([9]) + (10**20).to_bytes(9, "little"), w),
                (pickle.BINFLOAT + struct.pack(">d", 1e20), None),
            )
        ),
    )
    c["c6_int_bool_float_key_one.pt"] = (
        "{1: tensor, True: tensor, 1.0: None}: Python makes the three keys one",
        torch_saved(
            raw_dict(
                (pickle.BININT1 + bytes([1]), w),
                (pickle.NEWTRUE, f32(2)),
                (pickle.BINFLOAT + struct.pack(">d", 1.0), None),
            )
        ),
    )
    c["c6_nan_keys.pt"] = (
        "{nan: tensor, nan: None} with two NaN objects: two keys in Python",
        torch_saved(
            raw_dict(
                (pickle.BINFLOAT + struct.pack(">d", math.nan), w),
                (pickle.BINFLOAT + struct.pack(">d", math.nan), None),
            )
        ),
    )
    c["c6_int_octal_key.pt"] = (
        "INT key 010 (strtol reads it in octal: 8)",
        torch_saved(raw_dict((pickle.INT + b"010\n", w))),
    )
    saved = torch_saved({"w": w})
    c["c6_zip_extra_npy.pt"] = (
        "torch.save zip {w: [0, 1, 2, 3]} plus the entry archive/w.npy ([9, 9, 9, 9])",
        zip_with(saved, [("archive/w.npy", npy([9, 9, 9, 9]))]),
    )
    c["c6_zip_extra_npy_outside.pt"] = (
        "torch.save zip {w: [0, 1, 2, 3]} plus the entry plain/w.npy ([9, 9, 9, 9]) outside archive/ "
        "(torch 1.13 refuses an entry outside archive/; the report this case comes from had a newer torch read w)",
        zip_with(saved, [("plain/w.npy", npy([9, 9, 9, 9]))]),
    )
    c["c6_zip_unreferenced_storage.pt"] = (
        "torch.save zip plus the storage entry archive/data/7, named by no tensor, holding a .npy",
        zip_with(saved, [("archive/data/7", npy([9, 9, 9, 9]))]),
    )
    c["c6_zip_record_npy.pt"] = (
        "torch.save zip plus archive/.data/serialization_id holding a .npy",
        zip_with(saved, [("archive/.data/serialization_id", npy([9, 9, 9, 9]))]),
    )
    # A storage whose bytes start with the .npy magic: torch reads the raw
    # bytes (the tensor views only its tail), numpy.load reads the entry as
    # the array [9, 9, 9, 9].
    head = npy([9, 9, 9, 9])
    magic_storage = torch.frombuffer(bytearray(head + bytes(range(8))), dtype=torch.uint8)
    c["c6_zip_storage_npy_magic.pt"] = (
        "torch.save zip {w: uint8 view of the storage's last 8 bytes}; the storage archive/data/0 "
        "begins with a whole .npy file, which numpy.load reads as an array",
        torch_saved({"w": magic_storage[len(head):]}),
    )
    c["c6_zip_new_records.pt"] = (
        "torch.save zip plus the records newer torch writes (byteorder, .format_version, "
        ".storage_alignment, .data/serialization_id, .data/version)",
        zip_with(
            saved,
            [
                ("archive/byteorder", b"little"),
                ("archive/.format_version", b"1"),
                ("archive/.storage_alignment", b"64"),
                ("archive/.data/serialization_id", b"1234567890123456789012345678901234567890"),
                ("archive/.data/version", b"3\n"),
            ],
        ),
    )
    return c


def load_numpy(path):
    """What numpy.load reads from a zip: arrays by key (members starting with the .npy magic)."""
    try:
        with numpy.load(path) as z:
            out = {}
            for k in z.files:
                v = z[k]
                if isinstance(v, numpy.ndarray):
                    out[k] = v.tolist()
            return {"arrays": out}
    except Exception as e:
        return {"error": f"{type(e).__name__}: {' '.join(str(e).split())[:200]}"}


# Legacy (pre-1.6, non-zip) versions of a few.
LEGACY = [
    "c1_build_on_tensor",
    "c1_state_dict_metadata",
    "c2_parameters",
    "c3_training_checkpoint",
    "c3_lists_and_tuples",
]


def main(only):
    """Writes every checkpoint, or only the files named on the command line
    (keeping the other entries of expected.json: the legacy files hold storage
    keys that are memory addresses, so they are never written twice alike)."""
    files = {}
    for name, (what, obj) in checkpoints().items():
        for legacy in (False, True):
            if legacy and name not in LEGACY:
                continue
            files[f"{name}{'.legacy' if legacy else ''}.pt"] = (what, obj, legacy)
    for file, (what, data) in crafted().items():
        files[file] = (what, data, None)
    unknown = set(only) - set(files)
    if unknown:
        sys.exit(f"unknown files: {sorted(unknown)}")
    path_json = os.path.join(HERE, "expected.json")
    expected = {}
    if only:
        with open(path_json) as f:
            expected = json.load(f)["files"]
    for file, (what, obj, legacy) in files.items():
        if only and file not in only:
            continue
        path = os.path.join(HERE, file)
        if legacy is None:
            with open(path, "wb") as f:
                f.write(obj)
        else:
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
        if zipfile.is_zipfile(path) and file.startswith("c6_zip"):
            expected[file]["numpy.load"] = load_numpy(path)
        print(file, os.path.getsize(path), file=sys.stderr)
    with open(path_json, "w") as f:
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
    main(sys.argv[1:])
