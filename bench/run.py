#!/usr/bin/env python3
"""Conversion benchmark: prints a Markdown table of wall time and peak RSS
for modelconv conversions of a ~1 GB safetensors model that this script
generates, next to `cp` of the same file in the same run.

Usage: python3 bench/run.py [--size-mb 1024] [--runs 3]
Needs Python 3, cargo (it builds the release binary) and GNU time.
"""
import argparse
import array
import json
import os
import random
import statistics
import struct
import subprocess
import sys

import timing  # bench/timing.py

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORK = os.path.join(ROOT, "target", "bench")
BIN = os.path.join(ROOT, "target", "release", "modelconv")


def make_model(path, size_mb):
    """F32 safetensors of 16 MiB tensors (normal values), written directly."""
    n_tensors = max(1, size_mb // 16)
    elems = 4 << 20
    rnd = random.Random(1)
    block = array.array("f", (rnd.gauss(0.0, 0.02) for _ in range(elems))).tobytes()
    header, off = {"__metadata__": {"format": "pt"}}, 0
    for i in range(n_tensors):
        header[f"model.layers.{i}.weight"] = {"dtype": "F32", "shape": [2048, 2048], "data_offsets": [off, off + len(block)]}
        off += len(block)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - (8 + len(h)) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for _ in range(n_tensors):
            f.write(block)


def measure(cmd, out):
    return timing.measure(cmd, out, WORK)


def time_rows(rows, runs, results):
    """Runs each (name, cmd, output) `runs` times: median wall, largest RSS."""
    for name, cmd, out in rows:
        got = [measure(cmd, out) for _ in range(runs)]
        results[name] = (statistics.median(r[0] for r in got), max(r[1] for r in got))
        os.remove(out)


def derive(venv_py, src, dst, code):
    """The same tensors saved by a reference library (once), in the page cache."""
    if not os.path.exists(dst):
        subprocess.run([venv_py, "-c", code, src, dst], check=True)
    with open(dst, "rb") as f:
        while f.read(64 << 20):
            pass
    return dst


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--size-mb", type=int, default=1024)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    if not os.path.exists(timing.TIME):
        sys.exit("needs GNU time: apt-get install time")
    subprocess.run(["cargo", "build", "--release", "--quiet", "--bin", "modelconv"], cwd=ROOT, check=True)
    os.makedirs(WORK, exist_ok=True)
    src = os.path.join(WORK, f"model-{args.size_mb}mb.safetensors")
    if not os.path.exists(src):
        make_model(src, args.size_mb)
    size = os.path.getsize(src)
    with open(src, "rb") as f:  # warm the page cache for every contender alike
        while f.read(64 << 20):
            pass
    o = lambda name: os.path.join(WORK, name)
    rows = [
        ("cp (reference)", ["cp", src, o("cp.out")], o("cp.out")),
        ("cp + sync (reference, durable)", ["sh", "-c", f"cp {src} {o('cps.out')} && sync {o('cps.out')}"], o("cps.out")),
        ("safetensors → safetensors, cast to F16", [BIN, "-q", "convert", src, o("f16.safetensors"), "--dtype", "F16"], o("f16.safetensors")),
        ("safetensors → GGUF F32 (copy)", [BIN, "-q", "convert", src, o("f32.gguf")], o("f32.gguf")),
        ("safetensors → GGUF F32 (copy), --no-fsync", [BIN, "-q", "convert", src, o("nf.gguf"), "--no-fsync"], o("nf.gguf")),
        ("safetensors → GGUF F16", [BIN, "-q", "convert", src, o("f16.gguf"), "--dtype", "F16"], o("f16.gguf")),
        ("safetensors → safetensors (copy)", [BIN, "-q", "convert", src, o("copy.safetensors")], o("copy.safetensors")),
    ]
    results = {}
    time_rows(rows, args.runs, results)
    venv_py = os.path.join(ROOT, "target", "interop-venv", "bin", "python")
    ckpt = os.path.join(WORK, f"model-{args.size_mb}mb.pt")
    if os.path.exists(venv_py):
        derive(venv_py, src, ckpt, (
            "import torch, sys\n"
            "from safetensors.torch import load_file\n"
            "torch.save(load_file(sys.argv[1]), sys.argv[2])\n"
        ))
        py = ("import torch, sys\nfrom safetensors.torch import save_file\n"
              "save_file(torch.load(sys.argv[1], weights_only=True), sys.argv[2])\n")
        rows += [
            ("cp of the torch.save checkpoint (reference)", ["cp", ckpt, o("ckpt.cp")], o("ckpt.cp")),
            ("torch.save checkpoint → safetensors (ckpt-to-safetensors)", [BIN, "-q", "ckpt-to-safetensors", ckpt, "-o", o("ck.safetensors")], o("ck.safetensors")),
            ("torch.save checkpoint → safetensors, --no-fsync", [BIN, "-q", "ckpt-to-safetensors", ckpt, "-o", o("ckn.safetensors"), "--no-fsync"], o("ckn.safetensors")),
            ("Python: torch.load + safetensors save_file", [venv_py, "-c", py, ckpt, o("py.safetensors")], o("py.safetensors")),
        ]
        time_rows(rows[-4:], args.runs, results)
        # NumPy: the same tensors saved by np.savez (stored members).
        npz = derive(venv_py, src, os.path.join(WORK, f"model-{args.size_mb}mb.npz"), (
            "import numpy as np, sys\n"
            "from safetensors.numpy import load_file\n"
            "np.savez(sys.argv[2], **load_file(sys.argv[1]))\n"
        ))
        rows += [
            ("cp of the np.savez .npz (reference)", ["cp", npz, o("npz.cp")], o("npz.cp")),
            (".npz (stored) → safetensors", [BIN, "-q", "convert", npz, o("npz.safetensors")], o("npz.safetensors")),
            (".npz (stored) → safetensors, --no-fsync", [BIN, "-q", "convert", npz, o("npzn.safetensors"), "--no-fsync"], o("npzn.safetensors")),
        ]
        time_rows(rows[-3:], args.runs, results)
        # HDF5: the same tensors written by h5py, contiguous (as Keras writes
        # weights) and chunked with gzip + shuffle.
        save_h5 = ("import h5py, sys\nfrom safetensors.numpy import load_file\n"
                   "with h5py.File(sys.argv[2], 'w') as f:\n"
                   "    for k, v in load_file(sys.argv[1]).items():\n"
                   "        f.create_dataset(k, data=v%s)\n")
        h5 = derive(venv_py, src, os.path.join(WORK, f"model-{args.size_mb}mb.h5"), save_h5 % "")
        gz = derive(venv_py, src, os.path.join(WORK, f"model-{args.size_mb}mb-gzip.h5"),
                    save_h5 % ", chunks=True, compression='gzip', compression_opts=1, shuffle=True")
        py_h5 = ("import h5py, sys\nfrom safetensors.numpy import save_file\n"
                 "with h5py.File(sys.argv[1], 'r') as f:\n"
                 "    save_file({k: f[k][()] for k in f}, sys.argv[2])\n")
        rows += [
            ("cp of the h5py .h5 (reference)", ["cp", h5, o("h5.cp")], o("h5.cp")),
            (".h5 (contiguous) → safetensors", [BIN, "-q", "convert", h5, o("h5.safetensors")], o("h5.safetensors")),
            (".h5 (contiguous) → safetensors, --no-fsync", [BIN, "-q", "convert", h5, o("h5n.safetensors"), "--no-fsync"], o("h5n.safetensors")),
            (".h5 (chunked, gzip 1 + shuffle) → safetensors", [BIN, "-q", "convert", gz, o("gz.safetensors")], o("gz.safetensors")),
            ("Python: h5py read of the gzip .h5 + save_file", [venv_py, "-c", py_h5, gz, o("pygz.safetensors")], o("pygz.safetensors")),
        ]
        time_rows(rows[-5:], args.runs, results)
    else:
        print("(no target/interop-venv: run tests/interop/run.sh first for the checkpoint rows)")
    cp_wall = results["cp (reference)"][0]
    print(f"input: {size / 2**20:.0f} MiB F32 safetensors, {os.cpu_count()} cores, median of {args.runs} runs\n")
    sync_wall = results["cp + sync (reference, durable)"][0]
    print("| job | wall s | × cp | × (cp + sync) | peak RSS MiB |")
    print("|---|---:|---:|---:|---:|")
    for name, (wall, rss) in results.items():
        print(f"| {name} | {wall:.2f} | {wall / cp_wall:.2f} | {wall / sync_wall:.2f} | {rss:.0f} |")


if __name__ == "__main__":
    main()
