#!/usr/bin/env python3
"""ONNX benchmark: the fp16 rewrite and weight-only quantization of a
~500 MB GPT-2-shaped ONNX model (exported here by torch.onnx.export),
against the Python tools users run for the same jobs, in the same run:

- fp16: onnxconverter-common `convert_float_to_float16(keep_io_types=True)`
  + onnx.save, vs `modelconv convert --dtype F16`;
- INT4: onnxruntime.quantization `MatMulNBitsQuantizer` (symmetric,
  block 32, RTN), vs `modelconv quantize --type INT4 --keep-opset` (the
  same MatMulNBits output) and `--type INT4` (blocked DequantizeLinear);
- INT8: onnxruntime.quantization `quantize_dynamic(weight_type=QInt8)`
  (per-channel INT8 weights + dynamic activation quantization: the common
  INT8 route; no weight-only INT8 tool ships with onnxruntime), vs
  `modelconv quantize --type INT8`.

Prints a Markdown table: wall seconds (median), peak RSS (GNU time), output
size, and cosine of the outputs against fp32 in onnxruntime.

Usage: python3 bench/onnx.py [--layers 5] [--runs 3]
Needs tests/interop/run.sh to have made target/interop-venv (torch, onnx,
onnxruntime); installs onnxconverter-common==1.16.0 and onnx-ir==1.1.0
(which onnxruntime 1.32's MatMulNBitsQuantizer imports) there.
"""
import argparse
import os
import statistics
import subprocess
import sys

import timing  # bench/timing.py

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORK = os.path.join(ROOT, "target", "bench-onnx")
BIN = os.path.join(ROOT, "target", "release", "modelconv")
PY = os.path.join(ROOT, "target", "interop-venv", "bin", "python")

EXPORT = r'''
import sys, warnings, torch, torch.nn as nn
warnings.filterwarnings("ignore")
V, D, L, H = 32000, 1024, int(sys.argv[2]), 16
class Block(nn.Module):
    def __init__(s):
        super().__init__(); s.ln1, s.ln2 = nn.LayerNorm(D), nn.LayerNorm(D)
        s.qkv, s.proj, s.fc, s.out = nn.Linear(D, 3*D), nn.Linear(D, D), nn.Linear(D, 4*D), nn.Linear(4*D, D)
    def forward(s, x):
        B, T, _ = x.shape
        q, k, v = (z.view(B, T, H, D//H).transpose(1, 2) for z in s.qkv(s.ln1(x)).split(D, dim=2))
        a = ((q @ k.transpose(-2, -1)) / (D//H)**0.5).masked_fill(~torch.tril(torch.ones(T, T, dtype=torch.bool)), float("-inf")).softmax(-1)
        x = x + s.proj((a @ v).transpose(1, 2).reshape(B, T, D))
        return x + s.out(nn.functional.gelu(s.fc(s.ln2(x)), approximate="tanh"))
class GPT(nn.Module):
    def __init__(s):
        super().__init__(); s.wte, s.wpe = nn.Embedding(V, D), nn.Embedding(512, D)
        s.blocks = nn.ModuleList([Block() for _ in range(L)]); s.lnf, s.head = nn.LayerNorm(D), nn.Linear(D, V, bias=False)
    def forward(s, idx):
        x = s.wte(idx) + s.wpe(torch.arange(idx.shape[1]))
        for b in s.blocks: x = b(x)
        return s.head(s.lnf(x))
torch.manual_seed(0)
with torch.no_grad():
    torch.onnx.export(GPT().eval(), (torch.randint(0, V, (1, 8)),), sys.argv[1], input_names=["idx"], output_names=["logits"],
                      dynamic_axes={"idx": {0: "b", 1: "t"}, "logits": {0: "b", 1: "t"}}, opset_version=17, dynamo=False)
'''

OCC_FP16 = r'''
import sys, warnings, onnx
warnings.filterwarnings("ignore")
from onnxconverter_common import float16
onnx.save(float16.convert_float_to_float16(onnx.load(sys.argv[1]), keep_io_types=True), sys.argv[2])
'''

ORT_INT4 = r'''
import sys, onnx, logging
logging.disable(logging.WARNING)
from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer
q = MatMulNBitsQuantizer(onnx.load(sys.argv[1]), bits=4, block_size=32, is_symmetric=True)
q.process()
q.model.save_model_to_file(sys.argv[2], use_external_data_format=False)
'''

ORT_INT8 = r'''
import sys, logging
logging.disable(logging.WARNING)
from onnxruntime.quantization import quantize_dynamic, QuantType
quantize_dynamic(sys.argv[1], sys.argv[2], weight_type=QuantType.QInt8, per_channel=True)
'''

COSINE = r'''
import sys, numpy as np, onnxruntime as ort
idx = np.random.default_rng(0).integers(0, 32000, (1, 32)).astype(np.int64)
def run(p):
    so = ort.SessionOptions(); so.add_session_config_entry("session.qdq_matmulnbits_accuracy_level", "0")
    return ort.InferenceSession(p, so, providers=["CPUExecutionProvider"]).run(None, {"idx": idx})[0].astype(np.float64).ravel()
ref = run(sys.argv[1])
for p in sys.argv[2:]:
    y = run(p); print(p, float(y @ ref / np.linalg.norm(y) / np.linalg.norm(ref)))
'''


def measure(cmd, out):
    return timing.measure(cmd, out, WORK)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--layers", type=int, default=5)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    if not os.path.exists(PY):
        sys.exit("run tests/interop/run.sh first (it makes target/interop-venv)")
    subprocess.run([PY, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "onnxconverter-common==1.16.0", "onnx-ir==1.1.0"], check=True)
    subprocess.run(["cargo", "build", "--release", "--quiet", "--bin", "modelconv"], cwd=ROOT, check=True)
    os.makedirs(WORK, exist_ok=True)
    src = os.path.join(WORK, f"gpt-{args.layers}l.onnx")
    if not os.path.exists(src):
        subprocess.run([PY, "-c", EXPORT, src, str(args.layers)], check=True)
    size = os.path.getsize(src)
    o = lambda name: os.path.join(WORK, name)
    jobs = [
        ("fp16", "onnxconverter-common convert_float_to_float16", [PY, "-c", OCC_FP16, src, o("occ16.onnx")], o("occ16.onnx")),
        ("fp16", "modelconv convert --dtype F16", [BIN, "-q", "convert", src, o("mc16.onnx"), "--dtype", "F16"], o("mc16.onnx")),
        ("INT8", "onnxruntime quantize_dynamic (QInt8, per-channel)", [PY, "-c", ORT_INT8, src, o("ort8.onnx")], o("ort8.onnx")),
        ("INT8", "modelconv quantize --type INT8 (blocked 32, opset 21)", [BIN, "-q", "quantize", src, "-o", o("mc8.onnx"), "--type", "INT8"], o("mc8.onnx")),
        ("INT8", "modelconv quantize --type INT8 --embeddings (Gather too, as quantize_dynamic does)", [BIN, "-q", "quantize", src, "-o", o("mc8e.onnx"), "--type", "INT8", "--embeddings"], o("mc8e.onnx")),
        ("INT4", "onnxruntime MatMulNBitsQuantizer (4 bit, block 32, symmetric)", [PY, "-c", ORT_INT4, src, o("ort4.onnx")], o("ort4.onnx")),
        ("INT4", "modelconv quantize --type INT4 --keep-opset (MatMulNBits)", [BIN, "-q", "quantize", src, "-o", o("mc4k.onnx"), "--type", "INT4", "--keep-opset"], o("mc4k.onnx")),
        ("INT4", "modelconv quantize --type INT4 (blocked DequantizeLinear, opset 21)", [BIN, "-q", "quantize", src, "-o", o("mc4.onnx"), "--type", "INT4"], o("mc4.onnx")),
    ]
    results = []
    for group, name, cmd, out in jobs:
        runs = [measure(cmd, out) for _ in range(args.runs)]
        results.append((group, name, statistics.median(r[0] for r in runs), max(r[1] for r in runs), os.path.getsize(out), out))
    cos = subprocess.run([PY, "-c", COSINE, src, *[r[5] for r in results]], capture_output=True, text=True, check=True).stdout
    cosines = dict(line.rsplit(" ", 1) for line in cos.strip().splitlines())
    print(f"input: {src} ({size / 1e6:.0f} MB, {args.layers} layers, opset 17), {os.cpu_count()} cores, median of {args.runs} runs\n")
    print("| job | tool | wall s | × reference | peak RSS MiB | output MB | cosine vs fp32 |")
    print("|---|---|---:|---:|---:|---:|---:|")
    ref = {}
    for group, name, wall, rss, out_size, out in results:
        ref.setdefault(group, wall)
        print(f"| {group} | {name} | {wall:.2f} | {wall / ref[group]:.2f} | {rss:.0f} | {out_size / 1e6:.0f} | {float(cosines[out]):.5f} |")


if __name__ == "__main__":
    main()
