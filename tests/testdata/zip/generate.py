#!/usr/bin/python3
"""Recreates the crafted zip files of tests/hash/zip_oracle_test.ts and the
oracle verdicts in expected.json. Run it with Debian's Python, which has the
oracles installed (torch 1.13, numpy, zipfile):

    /usr/bin/python3 tests/testdata/zip/generate.py

CI never runs this script: the tests read the committed files.

Each case is one small file, `<case>.bin` (a torch.save checkpoint, read by
torch's miniz-based PyTorchFileReader) or `<case>.npz` (read by numpy.load,
that is by Python's zipfile). For every file expected.json records what the
real loaders did:

- "torch": torch.load(f, weights_only=True), tensors by name (.bin only);
- "miniz": torch._C.PyTorchFileReader(f), the bytes of every record it lists,
  i.e. miniz's own view of the archive (.bin only);
- "numpy": numpy.load(f), arrays by key (.npz only);
- "zipfile": zipfile.ZipFile(f).infolist() and the bytes of every entry;

each either {"ok": true, ...} or {"ok": false, "error": "..."}, and "expect",
what our reader must do: "accept" only where every loader reads the same
tensors (and then the test checks that we read those tensors too), "refuse"
wherever two readers could see different tensors, or a loader refuses.
"""
import hashlib
import io
import json
import os
import struct
import sys
import zipfile
import zlib

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))

LOCAL_SIG = 0x04034B50
CENTRAL_SIG = 0x02014B50
EOCD_SIG = 0x06054B50
ZIP64_EOCD_SIG = 0x06064B50
ZIP64_LOCATOR_SIG = 0x07064B50
DESCRIPTOR_SIG = 0x08074B50


def deflate(data):
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    return c.compress(data) + c.flush()


# --- The members of the two base files -----------------------------------------


def torch_members(state_dict):
    """data.pkl, data/<key>... and version as torch.save writes them."""
    buf = io.BytesIO()
    torch.save(state_dict, buf)
    z = zipfile.ZipFile(io.BytesIO(buf.getvalue()))
    return buf.getvalue(), [(i.filename, z.read(i)) for i in z.infolist()]


def npy(array):
    buf = io.BytesIO()
    np.lib.format.write_array(buf, np.asarray(array), allow_pickle=False)
    return buf.getvalue()


A = torch.tensor([1.0, 2.0, 3.0, 4.0])
B = torch.tensor([9.0, 9.0, 9.0, 9.0])
TORCH_SAVED, TORCH_A = torch_members({"w": A})
_, TORCH_B = torch_members({"w": B})
_, TORCH_TWO = torch_members({"w": A, "v": B})
X = npy(np.arange(4, dtype="<f4"))
Y = npy(np.full(4, 9, dtype="<f4"))


# --- A zip writer in which every field can be set ----------------------------


class Member:
    """One entry: the data, how it is stored, and any field to falsify."""

    def __init__(self, name, data, method=0, torch_style=False, **fields):
        self.name = name.encode("utf-8") if isinstance(name, str) else name
        self.data = data
        self.method = method
        self.payload = deflate(data) if method == 8 else data
        self.crc = zlib.crc32(data)
        self.csize = len(self.payload)
        self.usize = len(data)
        # torch (miniz) sets "sizes in a data descriptor" and "UTF-8 names",
        # writes zeros in the local header and a signed 16-byte descriptor.
        self.flags = 0x808 if torch_style else 0
        self.descriptor = torch_style
        self.local = {}  # overrides of local header fields
        self.central = {}  # overrides of central directory fields
        self.descriptor_fields = {}
        self.local_extra = b""
        self.central_extra = b""
        self.after_data = b""  # bytes written between data and next header
        for k, v in fields.items():
            setattr(self, k, v)

    def local_header(self):
        f = dict(
            version=20,
            flags=self.flags,
            method=self.method,
            crc=0 if self.descriptor else self.crc,
            csize=0 if self.descriptor else self.csize,
            usize=0 if self.descriptor else self.usize,
            name=self.name,
            extra=self.local_extra,
        )
        f.update(self.local)
        return struct.pack(
            "<IHHHHHIIIHH", LOCAL_SIG, f["version"], f["flags"], f["method"],
            0, 0x21, f["crc"], f["csize"], f["usize"], len(f["name"]),
            len(f["extra"]),
        ) + f["name"] + f["extra"]

    def blob(self):
        """Local header, data, descriptor (if any) and any extra bytes."""
        out = self.local_header() + self.payload
        if self.descriptor:
            d = dict(crc=self.crc, csize=self.csize, usize=self.usize)
            d.update(self.descriptor_fields)
            out += struct.pack("<IIII", DESCRIPTOR_SIG, d["crc"], d["csize"], d["usize"])
        return out + self.after_data

    def central_header(self, offset):
        f = dict(
            flags=self.flags,
            method=self.method,
            crc=self.crc,
            csize=self.csize,
            usize=self.usize,
            name=self.name,
            extra=self.central_extra,
            offset=offset,
            version_needed=20,
        )
        f.update(self.central)
        return struct.pack(
            "<IHHHHHHIIIHHHHHII", CENTRAL_SIG, 20, f["version_needed"],
            f["flags"], f["method"], 0, 0x21, f["crc"], f["csize"],
            f["usize"], len(f["name"]), len(f["extra"]), 0, 0, 0, 0,
            f["offset"],
        ) + f["name"] + f["extra"]


def eocd(count, cd_size, cd_offset, comment=b"", comment_length=None):
    n = len(comment) if comment_length is None else comment_length
    return struct.pack(
        "<IHHHHIIH", EOCD_SIG, 0, 0, count, count, cd_size, cd_offset, n,
    ) + comment


def zip64_record(count, cd_size, cd_offset):
    return struct.pack(
        "<IQHHIIQQQQ", ZIP64_EOCD_SIG, 44, 45, 45, 0, 0, count, count,
        cd_size, cd_offset,
    )


def zip64_locator(record_offset, disks=1):
    return struct.pack("<IIQI", ZIP64_LOCATOR_SIG, 0, record_offset, disks)


def assemble(members, comment=b"", zip64=False, order=None):
    """Entries in file order, then the central directory (in `order`)."""
    out = b""
    offsets = []
    for m in members:
        offsets.append(len(out))
        out += m.blob()
    cd_offset = len(out)
    order = range(len(members)) if order is None else order
    cd = b"".join(members[i].central_header(offsets[i]) for i in order)
    out += cd
    if zip64:
        record = len(out)
        out += zip64_record(len(members), len(cd), cd_offset)
        out += zip64_locator(record)
    return out + eocd(len(members), len(cd), cd_offset, comment)


def torch_zip(members=TORCH_A, **options):
    return assemble([Member(n, d, torch_style=True) for n, d in members], **options)


def npz(members=(("x.npy", X),), method=0, **options):
    return assemble([Member(n, d, method=method) for n, d in members], **options)


# --- The cases ---------------------------------------------------------------

CASES = {}


def case(name, cls, what, expect):
    def register(make):
        CASES[name] = dict(cls=cls, what=what, expect=expect, make=make)
        return make

    return register


# Files every loader reads alike: they must keep hashing.


@case("torch_saved.bin", 0, "torch.save output as it is (zip64 end records, data descriptors)", "accept")
def _():
    return TORCH_SAVED


@case("torch_ok.bin", 0, "the same members written by our writer, torch style", "accept")
def _():
    return torch_zip()


@case("torch_comment.bin", 0, "an archive comment that accounts for every trailing byte", "accept")
def _():
    return torch_zip(comment=b"made by hand")


@case("npz_saved.npz", 0, "numpy.savez output as it is", "accept")
def _():
    buf = io.BytesIO()
    np.savez(buf, x=np.arange(4, dtype="<f4"))
    return buf.getvalue()


@case("npz_compressed.npz", 0, "numpy.savez_compressed output, a non-ASCII key (UTF-8 flag set)", "accept")
def _():
    buf = io.BytesIO()
    np.savez_compressed(buf, x=np.arange(4, dtype="<f4"), **{"\u00e9": np.ones(3, "<f4")})
    return buf.getvalue()


@case("npz_ok.npz", 0, "our writer, stored members", "accept")
def _():
    return npz((("x.npy", X), ("y.npy", Y)))


@case("npz_case.npz", 6, "W.npy and w.npy: Python's zipfile keeps both apart (numpy keys W and w)", "accept")
def _():
    return npz((("W.npy", X), ("w.npy", Y)))


@case("torch_zip64.bin", 5, "zip64 end records whose 32-bit fields are all 0xFFFF/0xFFFFFFFF", "accept")
def _():
    ms = [Member(n, d, torch_style=True) for n, d in TORCH_A]
    body = b"".join(m.blob() for m in ms)
    offsets, at = [], 0
    for m in ms:
        offsets.append(at)
        at += len(m.blob())
    cd = b"".join(m.central_header(o) for m, o in zip(ms, offsets))
    record = len(body) + len(cd)
    return (body + cd + zip64_record(len(ms), len(cd), len(body)) + zip64_locator(record)
            + struct.pack("<IHHHHIIH", EOCD_SIG, 0, 0, 0xFFFF, 0xFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0))


@case("torch_deflated.bin", 7, "a deflated storage (torch never writes one, but miniz reads it)", "accept")
def _():
    return assemble([Member(n, d, method=8 if "/data/" in n else 0, torch_style=True) for n, d in TORCH_A])


@case("shared_deflated.bin", 7, "64 views of one deflated 1 MiB storage: must be inflated once, not 64 times", "accept")
def _():
    base = torch.zeros(1 << 18)
    base[-1] = 1.0
    _, members = torch_members({f"v{i:02}": base[-1 - i:] for i in range(64)})
    return assemble([Member(n, d, method=8 if "/data/" in n else 0, torch_style=True) for n, d in members])


# 1. More than one end-of-central-directory record.


@case("eocd_sig_in_comment_tail.bin", 1, "comment ends with PK\\x05\\x06 + 4 bytes: miniz takes the real record, zipfile the one in the comment", "refuse")
def _():
    return torch_zip(comment=b"abPK\x05\x06wxyz")


@case("eocd_sig_in_comment_tail.npz", 1, "the same comment in an npz", "refuse")
def _():
    return npz(comment=b"abPK\x05\x06wxyz")


@case("eocd_fake_in_comment.bin", 1, "a second directory and end record inside the comment of the first: both loaders take the last, a reader taking the first sees other weights", "refuse")
def _():
    pkl, data_a, version = [Member(n, d, torch_style=True) for n, d in TORCH_A]
    data_b = Member(TORCH_B[1][0], TORCH_B[1][1], torch_style=True)
    parts = [pkl, data_a, version, data_b]
    body, offsets = b"", []
    for m in parts:
        offsets.append(len(body))
        body += m.blob()
    real_cd = b"".join(m.central_header(o) for m, o in zip(parts[:3], offsets[:3]))
    fake_cd = b"".join(m.central_header(offsets[i]) for i, m in ((0, pkl), (3, data_b), (2, version)))
    fake_cd_at = len(body) + len(real_cd) + 22
    tail = fake_cd + eocd(3, len(fake_cd), fake_cd_at)
    return body + real_cd + eocd(3, len(real_cd), len(body), tail)


@case("eocd_in_stored_tail.npz", 1, "a complete end record (its comment reaching the file's end) inside a stored member's data", "refuse")
def _():
    m = Member("x.npy", X)
    cd_len = 46 + len(m.name)
    # Trailing bytes after the array (numpy ignores them) hold an end record
    # whose comment covers the rest of the file.
    rest = cd_len + 22
    m.payload = X + struct.pack("<IHHHHIIH", EOCD_SIG, 0, 0, 1, 1, 0, 0, rest)
    m.data = m.payload
    m.crc, m.csize, m.usize = zlib.crc32(m.payload), len(m.payload), len(m.payload)
    return assemble([m])


# 2. Comment length against the file's end.


@case("comment_past_end.bin", 2, "the end record declares a 10-byte comment, none follows", "refuse")
def _():
    z = torch_zip()
    return z[:-2] + struct.pack("<H", 10)


@case("comment_past_end.npz", 2, "the same in an npz", "refuse")
def _():
    z = npz()
    return z[:-2] + struct.pack("<H", 10)


@case("trailing_bytes.bin", 2, "64 bytes after the end record, which declares no comment", "refuse")
def _():
    return torch_zip() + bytes(range(64))


@case("trailing_bytes.npz", 2, "the same in an npz", "refuse")
def _():
    return npz() + bytes(range(64))


@case("appended_archive.bin", 2, "a second archive appended (its offsets relative to its own start)", "refuse")
def _():
    return torch_zip() + torch_zip(TORCH_B)


# 3. Local headers against the central directory.


@case("local_name_differs.npz", 3, "local header names y.npy, the directory x.npy", "refuse")
def _():
    m = Member("x.npy", X, local={"name": b"y.npy"})
    return assemble([m])


@case("local_name_differs.bin", 3, "local header of archive/data/0 names archive/data/9", "refuse")
def _():
    ms = [Member(n, d, torch_style=True) for n, d in TORCH_A]
    ms[1].local = {"name": b"archive/data/9"}
    return assemble(ms)


@case("local_method_differs.bin", 3, "the storage is stored, its local header says deflated", "refuse")
def _():
    ms = [Member(n, d, torch_style=True) for n, d in TORCH_A]
    ms[1].local = {"method": 8}
    return assemble(ms)


@case("local_sizes_differ.npz", 3, "local header sizes 8 bytes larger than the directory's", "refuse")
def _():
    m = Member("x.npy", X)
    m.local = {"csize": len(X) + 8, "usize": len(X) + 8}
    return assemble([m])


@case("local_crc_differs.npz", 3, "local header CRC-32 differs from the directory's", "refuse")
def _():
    m = Member("x.npy", X)
    m.local = {"crc": m.crc ^ 1}
    return assemble([m])


@case("local_flags_differ.npz", 3, "local header says encrypted (flag bit 0), the directory does not", "refuse")
def _():
    m = Member("x.npy", X)
    m.local = {"flags": 1}
    return assemble([m])


@case("descriptor_crc_differs.bin", 3, "the storage's data descriptor has another CRC-32 than the directory", "refuse")
def _():
    ms = [Member(n, d, torch_style=True) for n, d in TORCH_A]
    ms[1].descriptor_fields = {"crc": ms[1].crc ^ 1}
    return assemble(ms)


@case("descriptor_missing.bin", 3, "flag bit 3 set but no data descriptor after the storage", "refuse")
def _():
    ms = [Member(n, d, torch_style=True) for n, d in TORCH_A]
    ms[1].descriptor = False
    ms[1].local = {"crc": 0, "csize": 0, "usize": 0}
    return assemble(ms)


# 4. Where the entries lie.


@case("overlap.npz", 4, "y.npy's local header and data lie inside x.npy's data (after the array numpy reads)", "refuse")
def _():
    inner = Member("y.npy", Y)
    outer = Member("x.npy", X + inner.blob())
    cd = outer.central_header(0) + inner.central_header(30 + 5 + len(X))
    body = outer.blob()
    return body + cd + eocd(2, len(cd), len(body))


@case("overlap.bin", 4, "archive/data/1 points at archive/data/0's local header (two tensors, one set of bytes)", "refuse")
def _():
    ms = [Member(n, d, torch_style=True) for n, d in TORCH_TWO]
    names = [m.name for m in ms]
    i0, i1 = names.index(b"archive/data/0"), names.index(b"archive/data/1")
    body, offsets = b"", []
    for i, m in enumerate(ms):
        offsets.append(len(body))
        if i != i1:
            body += m.blob()
    offsets[i1] = offsets[i0]
    cd = b"".join(m.central_header(o) for m, o in zip(ms, offsets))
    return body + cd + eocd(len(ms), len(cd), len(body))


@case("out_of_order.npz", 4, "the directory lists y.npy before x.npy, the file holds x.npy first", "refuse")
def _():
    return npz((("x.npy", X), ("y.npy", Y)), order=[1, 0])


@case("gap.npz", 4, "64 unlisted bytes (a local header of another entry) between two entries", "refuse")
def _():
    hidden = Member("x.npy", Y).blob()[:64]
    return assemble([Member("x.npy", X, after_data=hidden), Member("y.npy", Y)])


@case("gap_before_cd.bin", 4, "unlisted bytes between the last entry and the central directory", "refuse")
def _():
    ms = [Member(n, d, torch_style=True) for n, d in TORCH_A]
    ms[-1].after_data = b"\0" * 32
    return assemble(ms)


@case("prepended.npz", 4, "64 bytes before the first entry, offsets counted from the file's start", "refuse")
def _():
    pre = b"#!/bin/sh\n" + b"\0" * 54
    m = Member("x.npy", X)
    body = pre + m.blob()
    cd = m.central_header(len(pre))
    return body + cd + eocd(1, len(cd), len(body))


@case("concat_shift.bin", 4, "a directory offset that is short by the length of a hidden copy: miniz reads one copy, zipfile (which shifts offsets by the gap) the other", "refuse")
def _():
    a = torch_zip()
    b = torch_zip(TORCH_B)
    assert len(a) == len(b)
    cd_size, cd_offset = struct.unpack("<II", a[-10:-2])
    # Archive A, then B whose end record points at A's directory (offset
    # relative to A); zipfile adds the gap (len(a)) to every offset.
    return a[:-22] + b[:-22] + eocd(3, cd_size, cd_offset)


@case("entry_overlaps_cd.npz", 4, "the last member's compressed size runs into the central directory", "refuse")
def _():
    m = Member("x.npy", X)
    extra = 46 + len(m.name)
    m.central = {"csize": len(X) + extra, "usize": len(X) + extra}
    body = m.blob()
    cd = m.central_header(0)
    return body + cd + eocd(1, len(cd), len(body))


# 5. zip64 end records and fields.


@case("zip64_locator_elsewhere.bin", 5, "the zip64 locator points at another zip64 record than the one before it: miniz follows the locator, zipfile reads the record before the locator", "refuse")
def _():
    pkl, data_a, version = [Member(n, d, torch_style=True) for n, d in TORCH_A]
    data_b = Member(TORCH_B[1][0], TORCH_B[1][1], torch_style=True)
    parts = [pkl, data_a, version, data_b]
    body, offsets = b"", []
    for m in parts:
        offsets.append(len(body))
        body += m.blob()
    cd_a = b"".join(m.central_header(o) for m, o in zip(parts[:3], offsets[:3]))
    cd_b = b"".join(m.central_header(offsets[i]) for i, m in ((0, pkl), (3, data_b), (2, version)))
    cd_a_at = len(body)
    rec_a_at = cd_a_at + len(cd_a)
    cd_b_at = rec_a_at + 56
    rec_b_at = cd_b_at + len(cd_b)
    return (body + cd_a + zip64_record(3, len(cd_a), cd_a_at) + cd_b
            + zip64_record(3, len(cd_b), cd_b_at) + zip64_locator(rec_a_at)
            + struct.pack("<IHHHHIIH", EOCD_SIG, 0, 0, 0xFFFF, 0xFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0))


@case("zip64_count_differs.bin", 5, "the 32-bit end record says 2 entries, the zip64 record 3 (both loaders use the zip64 one)", "refuse")
def _():
    z = torch_zip(zip64=True)
    return z[:-22 + 8] + struct.pack("<HH", 2, 2) + z[-22 + 12:]


@case("zip64_extra_disagrees.npz", 5, "a zip64 extra field with sizes other than the 32-bit ones, which are not 0xFFFFFFFF", "refuse")
def _():
    m = Member("x.npy", X)
    m.central_extra = struct.pack("<HHQQ", 1, 16, 1 << 20, 1 << 20)
    return assemble([m])


@case("zip64_locator_disks0.bin", 5, "the zip64 locator says 0 disks: zipfile accepts it, miniz refuses", "refuse")
def _():
    z = torch_zip(zip64=True)
    at = len(z) - 22 - 20
    return z[:at + 16] + struct.pack("<I", 0) + z[at + 20:]


# 6. Names.


@case("duplicate_name.npz", 6, "two members named x.npy (numpy lists the key twice and reads the last)", "refuse")
def _():
    return npz((("x.npy", X), ("x.npy", Y)))


@case("duplicate_name.bin", 6, "two entries named archive/data/0", "refuse")
def _():
    pkl, data_a, version = [Member(n, d, torch_style=True) for n, d in TORCH_A]
    data_b = Member(TORCH_B[1][0], TORCH_B[1][1], torch_style=True)
    return assemble([pkl, data_a, data_b, version])


@case("case_collision.bin", 6, "archive/data.pkl and archive/DATA.pkl: miniz looks names up without regard to case", "refuse")
def _():
    # DATA.pkl holds two tensors, data.pkl one; in this order miniz's binary
    # search over names sorted without case finds DATA.pkl for data.pkl.
    _, two = torch_members({"w": B, "x": A})
    by = dict(two)
    ms = [
        Member("archive/data.pkl", dict(TORCH_A)["archive/data.pkl"], torch_style=True),
        Member("archive/DATA.pkl", by["archive/data.pkl"], torch_style=True),
        Member("archive/data/0", by["archive/data/0"], torch_style=True),
        Member("archive/data/1", by["archive/data/1"], torch_style=True),
        Member("archive/version", by["archive/version"], torch_style=True),
    ]
    return assemble(ms)


@case("backslash.npz", 6, "a member named a\\x.npy (zipfile turns \\ into / on Windows only)", "refuse")
def _():
    return npz((("a\\x.npy", X),))


@case("dot_slash.npz", 6, "members ./x.npy and x.npy (the same path once extracted)", "refuse")
def _():
    return npz((("./x.npy", X), ("x.npy", Y)))


@case("cp437_name.npz", 6, "the UTF-8 bytes of \u00e9.npy without the UTF-8 flag: zipfile decodes them as CP437", "refuse")
def _():
    return npz((("\u00e9.npy", X),))


@case("nul_name.npz", 6, "a member named x.npy\\0y.npy: zipfile cuts the name at the NUL", "refuse")
def _():
    return npz((("x.npy\0y.npy", X),))


# 7. Inflation.


@case("bomb.npz", 7, "a deflated member declaring 144 bytes that inflates to 1 MiB (zipfile stops at the declared size)", "refuse")
def _():
    m = Member("x.npy", X + bytes(1 << 20), method=8)
    m.crc, m.usize = zlib.crc32(X), len(X)
    return assemble([m])


@case("bomb.bin", 7, "a deflated storage declaring 16 bytes that inflates to 1 MiB", "refuse")
def _():
    ms = [Member(n, d, torch_style=True) for n, d in TORCH_A]
    data = TORCH_A[1][1]
    big = Member(TORCH_A[1][0], data + bytes(1 << 20), method=8, torch_style=True)
    big.crc, big.usize = zlib.crc32(data), len(data)
    ms[1] = big
    return assemble(ms)


# --- The oracles ---------------------------------------------------------------

DTYPES = {
    "float32": "F32", "float64": "F64", "float16": "F16", "int64": "I64",
    "int32": "I32", "int8": "I8", "uint8": "U8", "bool": "BOOL",
}


def err(e):
    return {"ok": False, "error": f"{type(e).__name__}: {e}"[:200]}


def sha(b):
    return hashlib.sha256(b).hexdigest()


def describe_array(a):
    a = np.ascontiguousarray(a)
    return {
        "dtype": DTYPES[a.dtype.name],
        "shape": list(a.shape),
        "sha256": sha(a.astype(a.dtype.newbyteorder("<")).tobytes()),
    }


def oracle_torch(data):
    try:
        sd = torch.load(io.BytesIO(data), weights_only=True)
        return {"ok": True, "tensors": {k: describe_array(v.numpy()) for k, v in sorted(sd.items())}}
    except Exception as e:  # noqa: BLE001 - any failure is the verdict
        return err(e)


def oracle_miniz(data):
    try:
        r = torch._C.PyTorchFileReader(io.BytesIO(data))
        return {"ok": True, "records": {n: sha(bytes(r.get_record(n))) for n in r.get_all_records()}}
    except Exception as e:  # noqa: BLE001
        return err(e)


def oracle_numpy(data):
    try:
        with np.load(io.BytesIO(data)) as f:
            arrays = [(k, describe_array(f[k])) for k in f.files]
        return {"ok": True, "keys": [k for k, _ in arrays], "tensors": dict(arrays)}
    except Exception as e:  # noqa: BLE001
        return err(e)


def oracle_zipfile(data):
    try:
        z = zipfile.ZipFile(io.BytesIO(data))
        entries = []
        for i in z.infolist():
            e = {"name": i.filename, "offset": i.header_offset}
            try:
                e["sha256"] = sha(z.read(i))
            except Exception as x:  # noqa: BLE001
                e["error"] = err(x)["error"]
            entries.append(e)
        return {"ok": True, "entries": entries}
    except Exception as e:  # noqa: BLE001
        return err(e)


def main():
    out = {
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "numpy": np.__version__,
        "cases": {},
    }
    for name, c in CASES.items():
        data = c["make"]()
        assert len(data) < 16 << 10, f"{name} is {len(data)} bytes"
        with open(os.path.join(HERE, name), "wb") as f:
            f.write(data)
        entry = {"class": c["cls"], "what": c["what"], "expect": c["expect"]}
        if name.endswith(".bin"):
            entry["torch"] = oracle_torch(data)
            entry["miniz"] = oracle_miniz(data)
        else:
            entry["numpy"] = oracle_numpy(data)
        entry["zipfile"] = oracle_zipfile(data)
        out["cases"][name] = entry
    with open(os.path.join(HERE, "expected.json"), "w") as f:
        json.dump(out, f, indent=2, ensure_ascii=False)
        f.write("\n")


if __name__ == "__main__":
    main()
