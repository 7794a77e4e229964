#!/usr/bin/env python3
"""Benchmark of the architecture step (issue 9), with nothing but Python:

1. Non-contiguous torch tensors: a contiguous, a transposed (`x.t()`) and a
   sliced (`y[:, 1024:3072]`) 2048x2048 F32 tensor in torch.save's zip
   format, each converted to safetensors; the ratio is to the contiguous one
   (target: within 1.5x).
2. Peak RSS of `inspect` and `inspect --json` on inputs whose size is claimed in metadata or in
   storages: a GGUF with one 40 MB u8 array, one with 8 M one-letter
   strings (72 MB), and a sparse 3 GiB legacy torch checkpoint (target:
   under 256 MiB, or exit 2 naming a limit).

The checkpoints are pickled here the way torch.save writes them (a stand-in
`torch._utils._rebuild_tensor_v2` global, persistent ids for storages), so
torch need not be installed. Usage: python3 bench/views.py [modelconv binary]
"""
import os
import pickle
import struct
import sys
import tempfile
import types
import zipfile

sys.path.insert(0, os.path.dirname(__file__))
from timing import measure  # noqa: E402

BIN = sys.argv[1] if len(sys.argv) > 1 else "target/release/modelconv"


def fake_torch():
    """Just enough of torch's names for pickle to write torch's globals."""
    torch = types.ModuleType("torch")
    utils = types.ModuleType("torch._utils")

    def _rebuild_tensor_v2(*a):
        raise RuntimeError("never called")

    _rebuild_tensor_v2.__module__ = "torch._utils"
    _rebuild_tensor_v2.__qualname__ = "_rebuild_tensor_v2"
    utils._rebuild_tensor_v2 = _rebuild_tensor_v2

    class FloatStorage:
        pass

    FloatStorage.__module__ = "torch"
    FloatStorage.__qualname__ = "FloatStorage"
    torch.FloatStorage = FloatStorage
    torch._utils = utils
    sys.modules["torch"] = torch
    sys.modules["torch._utils"] = utils
    return torch, utils


TORCH, UTILS = fake_torch()


class Storage:
    def __init__(self, key, numel):
        self.key, self.numel = key, numel


class Tensor:
    def __init__(self, storage, offset, size, stride):
        self.storage, self.offset, self.size, self.stride = storage, offset, size, stride

    def __reduce__(self):
        from collections import OrderedDict

        return (UTILS._rebuild_tensor_v2, (self.storage, self.offset, self.size, self.stride, False, OrderedDict()))


class Pickler(pickle.Pickler):
    def persistent_id(self, obj):
        if isinstance(obj, Storage):
            return ("storage", TORCH.FloatStorage, obj.key, "cpu", obj.numel)
        return None


def dumps(obj):
    import io

    b = io.BytesIO()
    Pickler(b, protocol=2).dump(obj)
    return b.getvalue()


def torch_zip(path, tensor, numel):
    """torch.save's zip layout: archive/data.pkl + stored archive/data/0."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        z.writestr("archive/data.pkl", dumps({"w": tensor}))
        z.writestr("archive/version", "3\n")
        with z.open("archive/data/0", "w", force_zip64=True) as f:
            chunk = struct.pack("<f", 1.0) * (1 << 20)
            left = numel * 4
            while left:
                n = min(left, len(chunk))
                f.write(chunk[:n])
                left -= n


def legacy_sparse(path, numel):
    """torch's legacy format: magic, protocol, sys_info, the data pickle,
    the storage keys, then each storage's element count and bytes (left as
    a hole)."""
    s = Storage("0", numel)
    with open(path, "wb") as f:
        f.write(pickle.dumps(0x1950A86A20F9469CFC6C, protocol=2))
        f.write(pickle.dumps(1001, protocol=2))
        f.write(pickle.dumps({"protocol_version": 1001, "little_endian": True,
                              "type_sizes": {"short": 2, "int": 4, "long": 4}}, protocol=2))
        f.write(dumps({"w": Tensor(s, 0, (numel,), (1,))}))
        f.write(pickle.dumps(["0"], protocol=2))
        f.write(struct.pack("<q", numel))
        f.truncate(f.tell() + numel * 4)


def gguf(path, kvs):
    """A GGUF v3 with metadata only."""
    def s(x):
        b = x.encode()
        return struct.pack("<Q", len(b)) + b

    with open(path, "wb") as f:
        f.write(b"GGUF" + struct.pack("<IQQ", 3, 0, len(kvs)))
        for key, body in kvs:
            f.write(s(key) + body)


def main():
    scratch = tempfile.mkdtemp(prefix="modelconv-bench-")
    out = os.path.join(scratch, "out.safetensors")
    n = 2048
    cases = [
        ("contiguous 2048x2048", Tensor(Storage("0", n * n), 0, (n, n), (n, 1)), n * n),
        ("transposed (x.t())", Tensor(Storage("0", n * n), 0, (n, n), (1, n)), n * n),
        ("sliced (y[:, 1024:3072])", Tensor(Storage("0", n * 2 * n), 1024, (n, n), (2 * n, 1)), 2 * n * n),
    ]
    rows = []
    for name, t, numel in cases:
        src = os.path.join(scratch, "in.pt")
        torch_zip(src, t, numel)
        best = min(measure([BIN, "-q", "convert", src, out], out, scratch) for _ in range(5))
        rows.append((name, best))
    base = rows[0][1][0]
    print("| torch.save tensor → safetensors (fsync, the default) | modelconv | ratio to contiguous | peak RSS |")
    print("|---|---|---|---|")
    for name, (wall, rss) in rows:
        print(f"| {name} | {wall:.3f} s | {wall / base:.2f}× | {rss:.0f} MiB |")

    u8 = os.path.join(scratch, "u8.gguf")
    gguf(u8, [("big.u8", struct.pack("<IIQ", 9, 0, 40_000_000) + bytes(40_000_000))])
    strs = os.path.join(scratch, "strings.gguf")
    one = struct.pack("<Q", 1) + b"a"
    gguf(strs, [("big.strings", struct.pack("<IIQ", 9, 8, 8_000_000) + one * 8_000_000)])
    legacy = os.path.join(scratch, "legacy.pt")
    legacy_sparse(legacy, (3 << 30) // 4)
    print()
    print("| inspect | file | time | peak RSS |")
    print("|---|---|---|---|")
    for name, path in [("GGUF, one 40 MB u8 array", u8), ("GGUF, 8 M one-letter strings", strs),
                       ("sparse 3 GiB legacy checkpoint", legacy)]:
        size = os.path.getsize(path) / (1 << 20)
        for flags in ([], ["--json"]):
            wall, rss = measure([BIN, "inspect", *flags, path], os.path.join(scratch, "none"), scratch)
            print(f"| {name} {' '.join(flags)} | {size:.0f} MiB | {wall:.2f} s | {rss:.0f} MiB |")


if __name__ == "__main__":
    main()
