"""Hugging Face folder → GGUF, checked against llama.cpp: our F16 GGUF is
the file convert_hf_to_gguf.py writes; our Q4_K_M is convert_hf_to_gguf.py
(outtype = the weights' own float type) + llama-quantize; llama.cpp runs
ours (llama-simple generates, llama-embedding agrees with
sentence-transformers, llama-tokenize gives the ids in llama.cpp's
ggml-vocab-*.gguf.out files).

    python hf_gguf.py LLAMA_CPP_SRC LLAMA_CPP_BIN MODELS_DIR

MODELS_DIR holds the folders hf_models.py builds. Prints one line per check
and 'hf-gguf: N passed, M failed'; exits 1 if anything failed.
"""
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from harness import check, finish

SRC, BIN, MODELS = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
MC = os.environ["MODELCONV"]
TMP = Path(tempfile.mkdtemp(prefix="modelconv-hf-gguf-"))
HERE = Path(__file__).parent
# folder, the weights' float type (convert_hf_to_gguf.py --outtype)
MODELS_TYPES = [
    ("llama-spm", "f32"), ("llama-spm-bf16", "bf16"), ("llama-sharded", "f32"), ("llama-bin", "f32"),
    ("llama3-rope", "bf16"), ("qwen2-bpe", "bf16"), ("qwen3-bpe", "f32"), ("gpt2-bpe", "f32"),
    ("gemma2-spm", "bf16"), ("gemma2-spm-f16", "f16"), ("gemma3-spm", "bf16"), ("gemma3-mm", "bf16"),
    ("phi3-spm", "f32"),
    ("phi3-longrope", "f32"), ("bert-wordpiece", "f32"), ("mixtral-spm", "bf16"), ("granitemoe-spm", "bf16"), ("phimoe-spm", "bf16"), ("smollm3-spm", "bf16"), ("granite-spm", "bf16"),
    ("qwen2moe-bpe", "bf16"), ("qwen3moe-bpe", "bf16"), ("olmo2-bpe", "bf16"), ("starcoder2-bpe", "bf16"), ("olmoe-bpe", "bf16"), ("cohere-bpe", "bf16"), ("stablelm-bpe", "bf16"), ("falcon-bpe", "bf16"),
]


def run(*args, stdin=None):
    p = subprocess.run([str(a) for a in args], capture_output=True, text=stdin is not None or None, input=stdin)
    out = p.stdout if isinstance(p.stdout, str) else p.stdout.decode("utf-8", "replace")
    err = p.stderr if isinstance(p.stderr, str) else p.stderr.decode("utf-8", "replace")
    assert p.returncode == 0, f"{args}: exit {p.returncode}\n{out[-2000:]}\n{err[-4000:]}"
    return out


def reference(model, outtype):
    """convert_hf_to_gguf.py's output (cached per run)."""
    out = TMP / f"ref-{model}-{outtype}.gguf"
    if not out.exists():
        run(sys.executable, SRC / "convert_hf_to_gguf.py", MODELS / model, "--outtype", outtype, "--outfile", out)
    return out


def same_file(ours, ref):
    if Path(ours).read_bytes() != Path(ref).read_bytes():
        diff = subprocess.run([sys.executable, HERE / "gguf_compare.py", ours, ref], capture_output=True, text=True)
        raise AssertionError(f"{ours} differs from {ref}:\n{diff.stdout[-3000:]}")


@check
def f16_gguf_is_the_file_convert_hf_to_gguf_writes():
    for model, _ in MODELS_TYPES:
        ours = TMP / f"ours-{model}-f16.gguf"
        run(MC, "convert", MODELS / model, ours, "--dtype", "F16")
        same_file(ours, reference(model, "f16"))


@check
def every_outtype_matches_convert_hf_to_gguf():
    for dtype in ["F32", "BF16", "Q8_0"]:
        ours = TMP / f"ours-llama-spm-bf16-{dtype}.gguf"
        run(MC, "convert", MODELS / "llama-spm-bf16", ours, "--dtype", dtype)
        same_file(ours, reference("llama-spm-bf16", dtype.lower()))


def q4_k_m_reference(model, outtype):
    out = TMP / f"ref-{model}-Q4_K_M.gguf"
    run(BIN / "llama-quantize", reference(model, outtype), out, "Q4_K_M")
    return out


@check
def q4_k_m_is_convert_hf_to_gguf_then_llama_quantize_byte_for_byte():
    for model, outtype in MODELS_TYPES:
        ours = TMP / f"ours-{model}-Q4_K_M.gguf"
        run(MC, "quantize", MODELS / model, "--q4_k", "-o", ours)
        same_file(ours, q4_k_m_reference(model, outtype))


@check
def llama_simple_generates_from_our_q4_k_m():
    ours = TMP / "ours-llama-spm-Q4_K_M.gguf"
    if not ours.exists():
        run(MC, "quantize", MODELS / "llama-spm", "--q4_k", "-o", ours)
    out = run(BIN / "llama-simple", "-m", ours, "-n", "16", "Hello my name is")
    assert "Hello my name is" in out, out
    assert len(out.split("Hello my name is", 1)[1].strip()) > 0, f"nothing generated: {out!r}"


@check
def gguf_through_safetensors_and_back_is_the_same_file_and_runs():
    """GGUF -> safetensors -> GGUF: metadata types and values survive the
    string-only safetensors header; llama-simple runs on the result."""
    src = reference("llama-spm", "f32")
    st, back = TMP / "roundtrip.safetensors", TMP / "roundtrip.gguf"
    run(MC, "-q", "convert", src, st)
    run(MC, "-q", "convert", st, back)
    same_file(back, src)
    import gguf
    assert gguf.GGUFReader(back).fields["llama.block_count"].types == [gguf.GGUFValueType.UINT32]
    out = run(BIN / "llama-simple", "-m", back, "-n", "8", "Hello my name is")
    assert len(out.split("Hello my name is", 1)[1].strip()) > 0, f"nothing generated: {out!r}"


SENTENCES = ["The cat sits on the mat.", "A quick brown fox jumps over the lazy dog.",
             "llama.cpp runs models converted by modelconv.", "Paris is the capital of France."]


@check
def llama_embedding_agrees_with_sentence_transformers():
    from sentence_transformers import SentenceTransformer
    ours = TMP / "ours-bert-wordpiece-f16.gguf"
    if not ours.exists():
        run(MC, "convert", MODELS / "bert-wordpiece", ours, "--dtype", "F16")
    st = SentenceTransformer(str(MODELS / "bert-wordpiece"), device="cpu")
    want = st.encode(SENTENCES, normalize_embeddings=True)
    for s, w in zip(SENTENCES, want):
        out = run(BIN / "llama-embedding", "-m", ours, "-p", s, "--embd-normalize", "2",
                  "--embd-output-format", "array", "--no-warmup")
        got = np.array(json.loads(out[out.index("["):out.rindex("]") + 1]), dtype=np.float64).reshape(-1)
        cos = float(np.dot(got, w) / np.linalg.norm(got) / np.linalg.norm(w))
        assert cos >= 0.999, f"{s!r}: cosine {cos}"


def vocab_tests(name):
    sep = "\n__ggml_vocab_test__\n"
    inp = (SRC / "models" / f"ggml-vocab-{name}.gguf.inp").read_text(encoding="utf-8").split(sep)
    out = (SRC / "models" / f"ggml-vocab-{name}.gguf.out").read_text(encoding="utf-8").split("\n")
    return list(zip(inp, out))


@check
def llama_tokenize_on_our_gguf_gives_llama_cpps_test_ids():
    for model, vocab in [("llama-spm", "llama-spm"), ("qwen2-bpe", "qwen2"), ("gpt2-bpe", "gpt-2"),
                         ("bert-wordpiece", "bert-bge")]:
        ours = TMP / f"ours-{model}-f16.gguf"
        if not ours.exists():
            run(MC, "convert", MODELS / model, ours, "--dtype", "F16")
        tests = vocab_tests(vocab)
        assert len(tests) > 10, vocab
        for text, ids in tests:
            want = [int(x) for x in ids.split()]
            out = run(BIN / "llama-tokenize", "-m", ours, "--stdin", "--no-escape", "--no-bos", "--ids", "--log-disable",
                      stdin=text)
            got = json.loads(out.strip().splitlines()[-1]) if out.strip() else []
            assert got == want, f"{vocab}: {text!r}: llama.cpp gives {got} on our GGUF, the test file says {want}"


status = finish("hf-gguf")
# The scratch folder holds GBs of models by the end; kept only to debug a failure.
if status == 0:
    import shutil
    shutil.rmtree(TMP, ignore_errors=True)
sys.exit(status)
