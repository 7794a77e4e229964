#!/usr/bin/env python3
"""Hugging Face folder → Q4_K_M GGUF in one step, against llama.cpp's two:
convert_hf_to_gguf.py --outtype bf16 then llama-quantize Q4_K_M, on the
same ~1 GB BF16 safetensors LLaMA folder (random weights, 2048 wide, GQA 4,
vocab 32000, SentencePiece tokenizer from llama.cpp's llama-spm vocab),
same machine, same run. Prints a Markdown table (wall time, peak RSS,
ratio to llama.cpp's pipeline) and whether the outputs are byte-identical.
With --moe, a ~1 GB Mixtral-shaped folder instead (1024 wide, 8 experts of
FFN 2048 stored per expert, as transformers saves them): the stacked
expert tensors are views, so memory stays bounded.

Usage: target/interop-venv/bin/python bench/hf_gguf.py [--layers 8] [--moe]
Needs the interop venv and llama.cpp built by tests/interop/llama_cpp.sh.
"""
import argparse
import filecmp
import os
import subprocess
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

import timing  # bench/timing.py

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "target" / "bench"
BIN = ROOT / "target" / "release" / "modelconv"
sys.path.insert(0, str(ROOT / "tests" / "interop"))
import hf_models  # noqa: E402


def random_decoder(folder, config, n_layer, n_embd, n_head, n_head_kv, n_vocab, llama_cpp, ffn):
    """A LLaMA-style folder: the llama-spm tokenizer, `config` saved, seeded
    random BF16 weights; `ffn(t, prefix, mat)` adds each block's FFN."""
    folder.mkdir(parents=True, exist_ok=True)
    hf_models.LLAMA_CPP = llama_cpp
    hf_models.spm_model_from_gguf("llama-spm", folder / "tokenizer.model")
    config.save_pretrained(folder)
    g = torch.Generator().manual_seed(0)
    kv = n_embd // n_head * n_head_kv

    def mat(rows, cols):
        return (torch.randn((rows, cols), generator=g) * 0.02).to(torch.bfloat16)

    t = {"model.embed_tokens.weight": mat(n_vocab, n_embd), "lm_head.weight": mat(n_vocab, n_embd),
         "model.norm.weight": torch.ones(n_embd, dtype=torch.bfloat16)}
    for i in range(n_layer):
        p = f"model.layers.{i}."
        t[p + "input_layernorm.weight"] = torch.ones(n_embd, dtype=torch.bfloat16)
        t[p + "post_attention_layernorm.weight"] = torch.ones(n_embd, dtype=torch.bfloat16)
        t[p + "self_attn.q_proj.weight"] = mat(n_embd, n_embd)
        t[p + "self_attn.k_proj.weight"] = mat(kv, n_embd)
        t[p + "self_attn.v_proj.weight"] = mat(kv, n_embd)
        t[p + "self_attn.o_proj.weight"] = mat(n_embd, n_embd)
        ffn(t, p, mat)
    save_file(t, str(folder / "model.safetensors"), metadata={"format": "pt"})


def make_model(folder, n_layer, llama_cpp):
    from transformers import LlamaConfig
    n_embd, n_ff, n_vocab, n_head, n_head_kv = 2048, 5632, 32000, 16, 4
    config = LlamaConfig(vocab_size=n_vocab, hidden_size=n_embd, intermediate_size=n_ff, num_hidden_layers=n_layer,
                         num_attention_heads=n_head, num_key_value_heads=n_head_kv, max_position_embeddings=4096,
                         rms_norm_eps=1e-5, torch_dtype="bfloat16", architectures=["LlamaForCausalLM"])

    def ffn(t, p, mat):
        t[p + "mlp.gate_proj.weight"] = mat(n_ff, n_embd)
        t[p + "mlp.up_proj.weight"] = mat(n_ff, n_embd)
        t[p + "mlp.down_proj.weight"] = mat(n_embd, n_ff)

    random_decoder(folder, config, n_layer, n_embd, n_head, n_head_kv, n_vocab, llama_cpp, ffn)


def make_moe(folder, n_layer, llama_cpp):
    from transformers import MixtralConfig
    n_embd, n_ff, n_vocab, n_head, n_head_kv, n_expert = 1024, 2048, 32000, 8, 2, 8
    config = MixtralConfig(vocab_size=n_vocab, hidden_size=n_embd, intermediate_size=n_ff, num_hidden_layers=n_layer,
                           num_attention_heads=n_head, num_key_value_heads=n_head_kv, num_local_experts=n_expert,
                           num_experts_per_tok=2, max_position_embeddings=4096, rms_norm_eps=1e-5,
                           torch_dtype="bfloat16", architectures=["MixtralForCausalLM"])

    def ffn(t, p, mat):
        t[p + "block_sparse_moe.gate.weight"] = mat(n_expert, n_embd)
        for e in range(n_expert):
            q = f"{p}block_sparse_moe.experts.{e}."
            t[q + "w1.weight"] = mat(n_ff, n_embd)
            t[q + "w2.weight"] = mat(n_embd, n_ff)
            t[q + "w3.weight"] = mat(n_ff, n_embd)

    random_decoder(folder, config, n_layer, n_embd, n_head, n_head_kv, n_vocab, llama_cpp, ffn)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--layers", type=int, default=8)
    ap.add_argument("--moe", action="store_true")
    args = ap.parse_args()
    llama = Path(subprocess.run(["bash", str(ROOT / "tests/interop/llama_cpp.sh")], check=True,
                                capture_output=True, text=True).stdout.strip())
    quantize = llama.parent.parent.parent / "build" / "bin" / "llama-quantize"
    subprocess.run(["cargo", "build", "--release", "--quiet", "--bin", "modelconv"], cwd=ROOT, check=True)
    WORK.mkdir(parents=True, exist_ok=True)
    folder = WORK / (f"hf-mixtral-{args.layers}l" if args.moe else f"hf-llama-{args.layers}l")
    if not (folder / "model.safetensors").exists():
        (make_moe if args.moe else make_model)(folder, args.layers, llama)
    size = (folder / "model.safetensors").stat().st_size
    ours, mid, ref = WORK / "hf-ours.gguf", WORK / "hf-ref-bf16.gguf", WORK / "hf-ref-Q4_K_M.gguf"
    rows = []
    w, r = timing.measure([str(BIN), "-q", "quantize", str(folder), "--q4_k", "-o", str(ours)], str(ours), str(WORK))
    rows.append(("modelconv quantize DIR --q4_k", w, r))
    w1, r1 = timing.measure([sys.executable, str(llama / "convert_hf_to_gguf.py"), str(folder), "--outtype", "bf16",
                             "--outfile", str(mid)], str(mid), str(WORK))
    rows.append(("convert_hf_to_gguf.py --outtype bf16", w1, r1))
    w2, r2 = timing.measure([str(quantize), str(mid), str(ref), "Q4_K_M"], str(ref), str(WORK))
    rows.append(("llama-quantize Q4_K_M", w2, r2))
    rows.append(("llama.cpp pipeline (both steps)", w1 + w2, max(r1, r2)))
    base = w1 + w2
    print(f"\ninput: {folder.name}, {size / 1e9:.2f} GB BF16 safetensors, {os.cpu_count()} cores\n")
    print("| job | wall s | × llama.cpp pipeline | peak RSS MiB |")
    print("|---|---|---|---|")
    for name, w, r in rows:
        print(f"| {name} | {w:.2f} | {w / base:.2f} | {r:.0f} |")
    print(f"\noutputs byte-identical: {'yes' if filecmp.cmp(ours, ref, shallow=False) else 'NO'}")


if __name__ == "__main__":
    main()
