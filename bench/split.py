#!/usr/bin/env python3
"""Splitting and merging a ~1 GB GGUF, against cp and llama-gguf-split:
modelconv's split must cost what copying the file costs (≤ 1.3× cp). The
GGUF is written by gguf-py (64 F16 matrices of 2048×4096, seeded random),
split into 300 MB shards and merged back; jobs run round robin, outputs
are removed and `sync` run before each run; every job's output is checked byte-identical to
llama-gguf-split's. Prints a Markdown table: median wall time, peak RSS,
ratio to cp and to cp + sync (modelconv fsyncs by default; --no-fsync
compares with plain cp).

Usage: target/interop-venv/bin/python bench/split.py [--runs 5]
Needs the interop venv (gguf-py) and llama.cpp built by tests/interop/llama_cpp.sh.
"""
import argparse
import filecmp
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "target" / "bench" / "split"
BIN = ROOT / "target" / "release" / "modelconv"
LLAMA_BIN = ROOT / "target" / "llama.cpp-0.3.36" / "build" / "bin"
TIME = "/usr/bin/time"


def make_gguf(path):
    import gguf
    if path.exists():
        return
    rng = np.random.default_rng(0)
    w = gguf.GGUFWriter(path, "llama")
    w.add_block_count(64)
    for i in range(64):
        w.add_tensor(f"blk.{i}.ffn_up.weight", rng.standard_normal((2048, 4096), dtype=np.float32).astype(np.float16))
        w.add_tensor(f"blk.{i}.ffn_norm.weight", np.ones(4096, dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def run_once(cmd, out):
    """Removes `out` (a file or folder), syncs, runs `cmd` under GNU time:
    (wall seconds, peak RSS MiB)."""
    if out.is_dir():
        shutil.rmtree(out)
    elif out.exists():
        out.unlink()
    out.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["sync"])
    rss = WORK / "rss.txt"
    t0 = time.perf_counter()
    p = subprocess.run([TIME, "-f", "%M", "-o", rss, *map(str, cmd)], stdout=subprocess.DEVNULL,
                       stderr=subprocess.PIPE, text=True)
    wall = time.perf_counter() - t0
    if p.returncode != 0:
        sys.exit(f"failed: {' '.join(map(str, cmd))}\n{p.stderr}")
    return wall, int(rss.read_text().split()[-1]) / 1024


def same_tree(a, b):
    if a.is_file():
        return filecmp.cmp(a, b, shallow=False)
    names = sorted(os.listdir(a))
    return names == sorted(os.listdir(b)) and all(filecmp.cmp(a / n, b / n, shallow=False) for n in names)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    src = WORK / "big.gguf"
    make_gguf(src)
    size = src.stat().st_size
    ref_split, ref_merged = WORK / "ref-split", WORK / "ref-merged.gguf"
    first = lambda d: d / "big-00001-of-00004.gguf"  # noqa: E731
    jobs = [
        ("cp (reference)", ["cp", src, WORK / "cp.gguf"], WORK / "cp.gguf", None),
        ("cp + sync (reference, durable)", ["sh", "-c", f"cp {src} {WORK / 'cps.gguf'} && sync"], WORK / "cps.gguf", None),
        ("modelconv convert, one file (copy) --no-fsync", [BIN, "-q", "convert", src, WORK / "one.gguf", "--no-fsync"], WORK / "one.gguf", src),
        ("llama-gguf-split --split-max-size 300M", ["sh", "-c", f"mkdir -p {ref_split} && {LLAMA_BIN / 'llama-gguf-split'} --split-max-size 300M {src} {ref_split / 'big'}"], ref_split, None),
        ("modelconv convert --split-max-size 300M", [BIN, "-q", "convert", src, WORK / "ours-split" / "big.gguf", "--split-max-size", "300M"], WORK / "ours-split", ref_split),
        ("modelconv convert --split-max-size 300M --no-fsync", [BIN, "-q", "convert", src, WORK / "ours-split-nf" / "big.gguf", "--split-max-size", "300M", "--no-fsync"], WORK / "ours-split-nf", ref_split),
        ("llama-gguf-split --merge", [LLAMA_BIN / "llama-gguf-split", "--merge", first(ref_split), ref_merged], ref_merged, None),
        ("modelconv convert (merge)", [BIN, "-q", "convert", first(ref_split), WORK / "ours-merged.gguf"], WORK / "ours-merged.gguf", ref_merged),
        ("modelconv convert (merge) --no-fsync", [BIN, "-q", "convert", first(ref_split), WORK / "ours-merged-nf.gguf", "--no-fsync"], WORK / "ours-merged-nf.gguf", ref_merged),
    ]
    subprocess.run(["cat", src], stdout=subprocess.DEVNULL)  # warm the page cache
    # Round robin, so that a drift of the machine's state (writeback of
    # earlier outputs, other load) falls on every job alike.
    walls = {label: [] for label, *_ in jobs}
    peaks = {label: 0.0 for label, *_ in jobs}
    for _ in range(args.runs):
        for label, cmd, out, _ in jobs:
            w, r = run_once(cmd, out)
            walls[label].append(w)
            peaks[label] = max(peaks[label], r)
    rows = []
    for label, cmd, out, ref in jobs:
        run_once(cmd, out)  # the outputs the comparison reads (each run removed the last)
        same = "" if ref is None else ("yes" if same_tree(out, ref) else "NO")
        rows.append((label, statistics.median(walls[label]), peaks[label], same))
    cp, cps = rows[0][1], rows[1][1]
    print(f"{size / 1e9:.2f} GB GGUF, {args.runs} runs, median wall\n")
    print("| job | wall s | × cp | × (cp + sync) | peak RSS MiB | = llama-gguf-split |")
    print("|---|---:|---:|---:|---:|---|")
    for label, wall, rss, same in rows:
        print(f"| {label} | {wall:.2f} | {wall / cp:.2f} | {wall / cps:.2f} | {rss:.0f} | {same} |")


if __name__ == "__main__":
    main()
