#!/usr/bin/env python3
"""A ~1 GB Flux-shaped checkpoint → GGUF: modelconv in one streaming step
against ComfyUI-GGUF's tool chain. The input is
fixtures/diffusion/make_models.py's `write_full_width_flux` (FLUX.1's width,
one double and one single block, BF16, 1.07 GB). Jobs:

- ComfyUI-GGUF's tools/convert.py (the F16/BF16 step; it loads the whole
  state dict) — the reference. Its quantize step needs llama.cpp b3962
  patched with tools/lcpp.patch, which cannot be built here, so the
  reference chain costs at least what convert.py costs;
- modelconv convert (the same F16/BF16 file, byte-identical to convert.py's);
- modelconv quantize --type Q4_K and Q8_0 (both steps in one);
- cp, for what reading and writing the bytes costs.

Prints a Markdown table: median wall, peak RSS, ratio to convert.py.

Usage: target/interop-venv/bin/python bench/diffusion.py COMFYUI_GGUF_TOOLS_DIR [--runs 3]
(the tools folder of ComfyUI-GGUF 795e451: convert.py; needs the interop venv
and gguf-py from llama.cpp's tree on PYTHONPATH, as the interop suite has it).
"""
import argparse
import filecmp
import os
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "fixtures" / "diffusion"))
from timing import measure  # noqa: E402
import make_models  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "target" / "bench" / "diffusion"
BIN = ROOT / "target" / "release" / "modelconv"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("tools", type=Path)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    src = WORK / "flux-one-block.safetensors"
    if not src.exists():
        make_models.write_full_width_flux(src)
    out = lambda name: str(WORK / name)
    jobs = [
        ("ComfyUI-GGUF convert.py (reference)", [sys.executable, str(args.tools / "convert.py"), "--src", str(src),
                                                 "--dst", out("ref.gguf")], out("ref.gguf")),
        ("modelconv convert (convert.py's file)", [str(BIN), "-q", "convert", str(src), out("mc.gguf")], out("mc.gguf")),
        ("modelconv quantize --type Q4_K", [str(BIN), "-q", "quantize", str(src), "-o", out("q4k.gguf"), "--type",
                                            "Q4_K"], out("q4k.gguf")),
        ("modelconv quantize --type Q8_0", [str(BIN), "-q", "quantize", str(src), "-o", out("q8.gguf"), "--type",
                                            "Q8_0"], out("q8.gguf")),
        ("cp", ["cp", str(src), out("cp.safetensors")], out("cp.safetensors")),
    ]
    results = {name: [] for name, _, _ in jobs}
    for _ in range(args.runs):
        for name, cmd, dst in jobs:
            results[name].append(measure(cmd, dst, str(WORK)))
    assert filecmp.cmp(out("ref.gguf"), out("mc.gguf"), shallow=False), "modelconv convert is not convert.py's file"
    ref = statistics.median(w for w, _ in results[jobs[0][0]])
    size = src.stat().st_size / 1e9
    print(f"{size:.2f} GB Flux-shaped BF16 checkpoint, {args.runs} runs, median wall, {os.cpu_count()} cores\n")
    print("| job | wall s | × convert.py | peak RSS MiB |")
    print("|---|---:|---:|---:|")
    for name, _, _ in jobs:
        wall = statistics.median(w for w, _ in results[name])
        rss = max(r for _, r in results[name])
        print(f"| {name} | {wall:.2f} | {wall / ref:.2f} | {rss:.0f} |")
    for _, _, dst in jobs:
        Path(dst).unlink(missing_ok=True)


if __name__ == "__main__":
    main()
