"""Dequantizes every block-quantized tensor of a GGUF with gguf-py and
compares it with the F32 safetensors modelconv made of the same GGUF.

    PYTHONPATH=LLAMA_CPP/gguf-py python dequant_compare.py MODEL.gguf MODEL.safetensors

(the gguf-py of the reference llama.cpp: PyPI's lacks its newest types).
Exits 1 naming the tensors that differ."""
import sys

import gguf
import numpy as np
from safetensors.numpy import load_file

ours = load_file(sys.argv[2])
bad = []
for t in gguf.GGUFReader(sys.argv[1]).tensors:
    if t.tensor_type.name in ("F32", "F16", "BF16"):
        continue
    want = gguf.quants.dequantize(t.data, t.tensor_type).reshape(-1).astype(np.float32)
    got = ours[t.name].reshape(-1)
    if not np.array_equal(want, got):
        bad.append(f"{t.name} ({t.tensor_type.name}): max |Δ| {np.abs(want - got).max()}")
print("\n".join(bad) or "same")
sys.exit(1 if bad else 0)
