#!/usr/bin/env python3
"""Hostile inputs (issue 10): each file is built here (standard library
only) to hang, exhaust memory or explode a walk; every command that reads
it must end within 1 s, with exit 0, 1 or 2, under 256 MiB peak RSS (or
exit 2 naming a limit). Prints a Markdown table: case, command, wall
seconds, peak RSS, exit code, and whether it meets the target.

Issue 22 added the readers since: joblib (compressed too), chat
templates, SavedModel graphs, zips read as CPython reads them, npz, Flax
msgpack, and the HDF5 fixtures built to hurt its reader.

Usage: python3 bench/hostile.py [modelconv binary]
"""
import os
import struct
import subprocess
import sys
import tempfile
import time
import zipfile
import zlib
import io

BIN = sys.argv[1] if len(sys.argv) > 1 else "target/release/modelconv"
TIME = "/usr/bin/time"


def run(cmd, scratch):
    rss_file = os.path.join(scratch, "rss.txt")
    t0 = time.perf_counter()
    p = subprocess.run([TIME, "-f", "%M", "-o", rss_file, *cmd], stdout=subprocess.DEVNULL,
                       stderr=subprocess.PIPE, timeout=60)
    wall = time.perf_counter() - t0
    with open(rss_file) as f:
        rss = int(f.read().split()[-1]) / 1024
    return wall, rss, p.returncode, p.stderr.decode(errors="replace")


def pickles(d):
    """name → bytes of the pickle cases."""
    many = bytearray(b"\x80\x02}(")
    dup = bytearray(b"\x80\x02}(")
    for i in range(1_000_000):
        k = b"k%d" % i
        many += b"\x8c" + bytes([len(k)]) + k + b"N"
        dup += b"\x8c\x01kN"
    many += b"u."
    dup += b"u."
    dag = b"\x80\x02]q\x00" + b"h\x00h\x00\x86q\x00" * 64 + b"."
    n = 2 << 20
    arr = (b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85C\x01b\x87R(K\x01J" + struct.pack("<i", n)
           + b"\x85cnumpy\ndtype\nX\x02\x00\x00\x00f4\x89\x88\x87R(K\x03X\x01\x00\x00\x00<NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb\x89B"
           + struct.pack("<I", n * 4) + bytes(n * 4) + b"tbq\x01")
    shared = b"\x80\x02}(X\x01\x00\x00\x00a" + arr + b"".join(
        b"X" + struct.pack("<I", len(b"b%d" % i)) + b"b%d" % i + b"h\x01" for i in range(1000)) + b"u."
    return {
        "self-appended list": b"\x80\x02]q\x00h\x00ah\x00a.",
        "memo DAG 2^64 paths": dag,
        "dict key 1M tuples deep": b"\x80\x02})" + b"\x85" * 1_000_000 + b"Ns.",
        "list 1M deep": b"\x80\x02" + b"]" * 1_000_000 + b"a" * 999_999 + b".",
        "dict of 1M keys": bytes(many),
        "one key set 1M times": bytes(dup),
        "os.system named 2M times": b"\x80\x02" + b"cos\nsystem\n0" * 2_000_000 + b"N.",
        "8 MiB array under 1000 names": shared,
    }


def other_files(d):
    out = {}
    meta = ",".join('"k%d":"v"' % i for i in range(1_000_000))
    h = ('{"__metadata__":{%s},"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}' % meta).encode()
    out["safetensors, 1M metadata keys"] = ("m.safetensors", struct.pack("<Q", len(h)) + h + b"\0" * 4)
    g = bytearray(b"GGUF" + struct.pack("<IQQ", 3, 0, 1_000_000))
    for i in range(1_000_000):
        k = b"k.%d" % i
        g += struct.pack("<Q", len(k)) + k + struct.pack("<II", 4, 7)
    out["GGUF, 1M metadata keys"] = ("m.gguf", bytes(g))
    # 500 000 empty ONNX initializers (over the limit: exit 2 naming it).
    graph = bytearray()
    for i in range(500_000):
        name = b"t%d" % i
        t = b"\x08\x00\x10\x01\x42" + bytes([len(name)]) + name
        graph += b"\x2a" + bytes([len(t)]) + t
    model = bytearray(b"\x08\x08\x3a")
    v = len(graph)
    while v >= 0x80:
        model.append((v & 0x7f) | 0x80)
        v >>= 7
    model.append(v)
    out["ONNX, 500k empty initializers"] = ("m.onnx", bytes(model + graph))
    # 300 zip records sharing one deflate stream of 64 MiB of zeros.
    one = os.path.join(d, "one.zip")
    with zipfile.ZipFile(one, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("w.pkl", b"\0" * (64 << 20))
    b = open(one, "rb").read()
    cd, eocd = b.index(b"PK\x01\x02"), b.rindex(b"PK\x05\x06")
    rec = b[cd:eocd]
    end = bytearray(b[eocd:])
    end[8:10] = end[10:12] = struct.pack("<H", 300)
    end[12:16] = struct.pack("<I", len(rec) * 300)
    out["zip, 300 records on one 64 MiB stream"] = ("overlap.zip", b[:cd] + rec * 300 + bytes(end))
    # A torch zip with a 2^40-element stride-0 view of one float.
    pkl = (b"\x80\x02}X\x01\x00\x00\x00wctorch._utils\n_rebuild_tensor_v2\n((X\x07\x00\x00\x00storagectorch\nFloatStorage\n"
           b"X\x01\x00\x00\x000X\x03\x00\x00\x00cpuK\x01tQK\x00\x8a\x06\x00\x00\x00\x00\x00\x01\x85K\x00\x85\x89"
           b"ccollections\nOrderedDict\n)RtRs.")
    bc = os.path.join(d, "bcast.pt")
    with zipfile.ZipFile(bc, "w", zipfile.ZIP_STORED) as z:
        z.writestr("bcast/data.pkl", pkl)
        z.writestr("bcast/data/0", b"\0" * 4)
    out["torch zip, 2^40 x stride-0 view"] = ("bcast.pt", open(bc, "rb").read())
    return out


def varint(v):
    out = bytearray()
    while v >= 0x80:
        out.append((v & 0x7F) | 0x80)
        v >>= 7
    out.append(v)
    return bytes(out)


def field(num, payload):
    """A length-delimited protobuf field."""
    return varint(num << 3 | 2) + varint(len(payload)) + payload


def zeros_deflate(mib):
    """Raw deflate of `mib` MiB of zeros: one sync-flushed segment repeated."""
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    seg = c.compress(bytes(1 << 20)) + c.flush(zlib.Z_SYNC_FLUSH)
    return seg * mib + b"\x03\x00"


def readers_since_hardening_ii(d):
    """The readers added or widened for issue 22, and the older readers'
    files from fixtures/ built to hurt them."""
    out = {}
    # joblib: a gzip bomb whose stream starts like a pickle (2 GiB of zeros).
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    head = c.compress(b"\x80\x04") + c.flush(zlib.Z_SYNC_FLUSH)
    body = head + zeros_deflate(2048)
    out["joblib, gzip bomb to 2 GiB"] = ("bomb.joblib", b"\x1f\x8b\x08\x00\0\0\0\0\x00\xff" + body + b"\0" * 8)
    # joblib: an array record claiming 2^40 float32 elements.
    wrapper = (b"\x80\x04\x8c\x13joblib.numpy_pickle\x8c\x11NumpyArrayWrapper\x93)\x81}(\x8c\x05shape\x8a\x06\x00\x00\x00\x00\x00\x01\x85"
               b"\x8c\x05dtype\x8c\x05numpy\x8c\x05dtype\x93\x8c\x02f4\x89\x88\x87R(K\x03\x8c\x01<NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tbub.")
    out["joblib, 2^40-element array record"] = ("big.joblib", wrapper)
    # Chat templates: 1M distinct underscore attributes; 1M nested parentheses.
    attrs = "".join("{{ x._a%d }}" % i for i in range(1_000_000)).encode()
    out["chat template, 1M distinct underscore attributes"] = ("t.jinja", attrs)
    out["chat template, 1M nested parentheses"] = ("deep.jinja", b"{{ " + b"(" * 1_000_000 + b"x" + b")" * 1_000_000 + b" }}")
    cfg = b'{"chat_template": "' + b"{{ x.y }}" * 1_000_000 + b'"}'
    out["tokenizer_config.json, 9 MB template"] = ("tokenizer_config.json", cfg)
    # A SavedModel with 1M ReadFile nodes in one graph.
    node = field(1, b"n") + field(2, b"ReadFile")
    graph = field(1, node) * 1_000_000
    out["SavedModel, 1M ReadFile nodes"] = ("saved_model.pb", b"\x08\x01" + field(2, field(2, graph)))
    # A zip directory Python reads as 200 000 records, the end record counting one.
    zbuf = io.BytesIO()
    with zipfile.ZipFile(zbuf, "w", zipfile.ZIP_STORED) as z:
        for i in range(200_000):
            z.writestr(f"m{i}", b"")
    zb = bytearray(zbuf.getvalue())
    eocd = zb.rindex(b"PK\x05\x06")
    zb[eocd + 8 : eocd + 12] = struct.pack("<HH", 1, 1)
    out["zip, 200 000 records counted as 1"] = ("count.npz", bytes(zb))
    # npz of 100 000 members.
    nbuf = io.BytesIO()
    npy = b"\x93NUMPY\x01\x00v\x00{'descr': '<f4', 'fortran_order': False, 'shape': (0,), }" + b" " * 46 + b"\n"
    with zipfile.ZipFile(nbuf, "w", zipfile.ZIP_STORED) as z:
        for i in range(100_000):
            z.writestr(f"a{i}.npy", npy)
    out["npz, 100 000 members"] = ("many.npz", nbuf.getvalue())
    # Flax msgpack: 1M nested arrays, and a map claiming 2^32 entries.
    out["flax msgpack, 1M nested arrays"] = ("deep.msgpack", b"\x91" * 1_000_000 + b"\xc0")
    out["flax msgpack, 2^32-entry map"] = ("huge.msgpack", b"\xdf\xff\xff\xff\xff" + b"\xa1a\xc0")
    out["flax msgpack, ext of 2^32 bytes"] = ("ext.msgpack", b"\x81\xa1w\xc9\xff\xff\xff\xff\x01")
    # The HDF5 reader's hostile fixtures (cycles, huge dims, bombs).
    root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures", "hdf5")
    for f in ["header_loop.h5", "huge_dims.h5", "chunk_index_past_end.h5", "chunk_past_end.h5", "bad_deflate.h5", "links.h5"]:
        out[f"HDF5 fixture {f}"] = (f, open(os.path.join(root, f), "rb").read())
    return out


def main():
    scratch = tempfile.mkdtemp(prefix="modelconv-hostile-")
    cases = [(name, "p.pkl", data) for name, data in pickles(scratch).items()]
    cases += [(name, fname, data) for name, (fname, data) in other_files(scratch).items()]
    cases += [(name, fname, data) for name, (fname, data) in readers_since_hardening_ii(scratch).items()]
    print("| input | command | wall s | peak RSS MiB | exit | target met |")
    print("|---|---|---:|---:|---:|---|")
    for name, fname, data in cases:
        path = os.path.join(scratch, fname)
        with open(path, "wb") as f:
            f.write(data)
        out = os.path.join(scratch, "out.safetensors")
        for cmd in (["inspect", path], ["scan", path], ["convert", path, out, "--dedupe"]):
            wall, rss, code, err = run([BIN, "-q", *cmd], scratch)
            ok = wall < 1.0 and code in (0, 1, 2) and (rss < 256 or (code == 2 and "limit" in err))
            print(f"| {name} ({len(data) / 1e6:.1f} MB) | {cmd[0]} | {wall:.2f} | {rss:.0f} | {code} | {'yes' if ok else 'NO'} |")
            if os.path.exists(out):
                os.remove(out)
        os.remove(path)


if __name__ == "__main__":
    main()
