#!/usr/bin/env python3
"""Quantization benchmark: modelconv quantize vs llama.cpp's llama-quantize on
the same ~1 GB llama-shaped F16 GGUF (generated here with gguf-py), same
thread count, same run. Prints a Markdown table (wall time, elements/s,
peak RSS, ratio to llama-quantize) and whether the two outputs are
byte-identical.

A type written TYPE+imatrix (IQ4_XS+imatrix) runs both tools with
`--imatrix` on a synthetic importance matrix of the model
(tests/interop/synthetic_imatrix.py); TYPE+scalar runs modelconv with its
SIMD paths off (MODELCONV_SCALAR=1), the scalar reference; the two
combine (IQ4_XS+imatrix+scalar).

Usage: target/interop-venv/bin/python bench/quant.py --llama-quantize PATH [--threads 2] [--layers 9] [--types Q4_K_M,Q6_K,IQ4_XS+imatrix]
Needs numpy + gguf (the interop venv has them), cargo and GNU time.
BENCHMARKS.md says how the llama-quantize used there was built.
"""
import argparse
import filecmp
import os
import statistics
import subprocess
import sys

import numpy as np
from gguf import GGUFWriter

import timing  # bench/timing.py

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests", "interop"))
from synthetic_imatrix import synthetic_imatrix  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORK = os.path.join(ROOT, "target", "bench")
BIN = os.path.join(ROOT, "target", "release", "modelconv")


def make_model(path, n_layer):
    """A llama-architecture F16 model: 2048 wide, GQA 4, vocab 32000."""
    n_embd, n_ff, n_vocab, n_head, n_head_kv = 2048, 5632, 32000, 16, 4
    rng = np.random.default_rng(0)
    w = GGUFWriter(path, arch="llama")
    w.add_context_length(2048)
    w.add_embedding_length(n_embd)
    w.add_block_count(n_layer)
    w.add_feed_forward_length(n_ff)
    w.add_head_count(n_head)
    w.add_head_count_kv(n_head_kv)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_rope_dimension_count(n_embd // n_head)
    w.add_vocab_size(n_vocab)
    w.add_file_type(1)
    kv = n_embd // n_head * n_head_kv

    def mat(rows, cols):
        return (rng.standard_normal((rows, cols), dtype=np.float32) * 0.02).astype(np.float16)

    w.add_tensor("token_embd.weight", mat(n_vocab, n_embd))
    for i in range(n_layer):
        p = f"blk.{i}."
        w.add_tensor(p + "attn_norm.weight", np.ones(n_embd, dtype=np.float32))
        w.add_tensor(p + "attn_q.weight", mat(n_embd, n_embd))
        w.add_tensor(p + "attn_k.weight", mat(kv, n_embd))
        w.add_tensor(p + "attn_v.weight", mat(kv, n_embd))
        w.add_tensor(p + "attn_output.weight", mat(n_embd, n_embd))
        w.add_tensor(p + "ffn_norm.weight", np.ones(n_embd, dtype=np.float32))
        w.add_tensor(p + "ffn_gate.weight", mat(n_ff, n_embd))
        w.add_tensor(p + "ffn_up.weight", mat(n_ff, n_embd))
        w.add_tensor(p + "ffn_down.weight", mat(n_embd, n_ff))
    w.add_tensor("output_norm.weight", np.ones(n_embd, dtype=np.float32))
    w.add_tensor("output.weight", mat(n_vocab, n_embd))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def measure(cmd, out, env=None):
    return timing.measure(cmd, out, WORK, env)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--llama-quantize", required=True)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--layers", type=int, default=9)
    ap.add_argument("--types", default="Q8_0,Q4_K_M")
    ap.add_argument("--runs", type=int, default=3, help="runs per tool; the median wall time is reported")
    args = ap.parse_args()
    subprocess.run(["cargo", "build", "--release", "--quiet", "--bin", "modelconv"], cwd=ROOT, check=True)
    os.makedirs(WORK, exist_ok=True)
    src = os.path.join(WORK, f"llama-{args.layers}l-f16.gguf")
    if not os.path.exists(src):
        make_model(src, args.layers)
    with open(src, "rb") as f:
        while f.read(64 << 20):
            pass
    n_elem = int(subprocess.run([BIN, "inspect", "--json", src], capture_output=True, text=True, check=True).stdout.split('"parameters": ')[1].split(",")[0])
    print(f"input: {os.path.getsize(src) / 2**20:.0f} MiB F16 GGUF, {n_elem / 1e6:.0f} M elements, {args.threads} threads, median of {args.runs} runs\n")
    print("| type | tool | wall s | M elem/s | peak RSS MiB | × llama-quantize | identical output |")
    print("|---|---|---:|---:|---:|---:|---|")
    for label in args.types.split(","):
        t, *extras = label.split("+")
        ref_out, our_out = os.path.join(WORK, f"ref-{t}.gguf"), os.path.join(WORK, f"ours-{t}.gguf")
        im, env = [], None
        if "scalar" in extras:
            env = {**os.environ, "MODELCONV_SCALAR": "1"}
        if "imatrix" in extras:
            im = ["--imatrix", os.path.join(WORK, f"llama-{args.layers}l.imatrix.gguf")]
            if not os.path.exists(im[1]):
                synthetic_imatrix(src, im[1])
        ref_cmd = [args.llama_quantize, *im, src, ref_out, t, str(args.threads)]
        our_cmd = [BIN, "-q", "quantize", src, "-o", our_out, "--type", t, "--threads", str(args.threads), *im]
        ref_runs, our_runs = [], []
        for _ in range(args.runs):  # interleaved, so both see the same machine
            ref_runs.append(measure(ref_cmd, ref_out))
            our_runs.append(measure(our_cmd, our_out, env))
        median = lambda runs: (statistics.median(r[0] for r in runs), max(r[1] for r in runs))
        ref, ours = median(ref_runs), median(our_runs)
        same = "yes" if filecmp.cmp(ref_out, our_out, shallow=False) else "NO"
        for name, (wall, rss) in (("llama-quantize", ref), ("modelconv", ours)):
            ratio = wall / ref[0]
            print(f"| {label} | {name} | {wall:.2f} | {n_elem / wall / 1e6:.0f} | {rss:.0f} | {ratio:.2f} | {same} |")
        os.remove(ref_out)
        os.remove(our_out)


if __name__ == "__main__":
    main()
