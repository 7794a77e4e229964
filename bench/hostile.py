#!/usr/bin/env python3
"""Hostile inputs (issue 10): each file is built here (standard library
only) to hang, exhaust memory or explode a walk; every command that reads
it must end within 1 s, with exit 0, 1 or 2, under 256 MiB peak RSS (or
exit 2 naming a limit). Prints a Markdown table: case, command, wall
seconds, peak RSS, exit code, and whether it meets the target.

Usage: python3 bench/hostile.py [modelconv binary]
"""
import os
import struct
import subprocess
import sys
import tempfile
import time
import zipfile

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


def main():
    scratch = tempfile.mkdtemp(prefix="modelconv-hostile-")
    cases = [(name, "p.pkl", data) for name, data in pickles(scratch).items()]
    cases += [(name, fname, data) for name, (fname, data) in other_files(scratch).items()]
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
