"""Hugging Face folder → GGUF, checked against llama.cpp: our F16 GGUF is
the file convert_hf_to_gguf.py writes; our Q4_K_M is convert_hf_to_gguf.py
(outtype = the weights' own float type) + llama-quantize; llama.cpp runs
every Q4_K_M we write (llama-simple generates, llama-embedding embeds) and
ours (llama-simple generates, llama-embedding agrees with
sentence-transformers (BERT, XLM-RoBERTa, Qwen3 embedding), llama-tokenize gives the ids in llama.cpp's
ggml-vocab-*.gguf.out files). PEFT LoRA adapters (made here by peft): ours
is the file convert_lora_to_gguf.py writes at every output type, and
llama-export-lora merges it into the base as peft's merge_and_unload does,
and llama-completion with `--lora` generates what the merged model does.
Vision projectors: ours is the file `convert_hf_to_gguf.py --mmproj` writes,
and llama-mtmd-cli encodes an image with our Gemma 3 projector. Split GGUFs:
ours are llama-gguf-split's (by size, by tensor count, merged; each shard
also written alone by its own process), split conversions and
quantizations are the reference tools chained, and llama.cpp loads them.
Metadata edits: byte-identical to gguf_set_metadata.py in place, read back
by gguf-py as gguf_new_metadata.py writes them, and by safetensors.

    python hf_gguf.py LLAMA_CPP_SRC LLAMA_CPP_BIN MODELS_DIR

MODELS_DIR holds the folders hf_models.py builds. Prints one line per check
and 'hf-gguf: N passed, M failed'; exits 1 if anything failed.
"""
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

import harness
from harness import check, finish
from synthetic_imatrix import synthetic_imatrix

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
    ("phi3-longrope", "f32"), ("bert-wordpiece", "f32"), ("xlmr-unigram", "f32"), ("qwen3-embedding", "f32"), ("mixtral-spm", "bf16"), ("granitemoe-spm", "bf16"), ("phimoe-spm", "bf16"), ("smollm3-spm", "bf16"), ("granite-spm", "bf16"),
    ("qwen2moe-bpe", "bf16"), ("qwen3moe-bpe", "bf16"), ("olmo2-bpe", "bf16"), ("starcoder2-bpe", "bf16"), ("olmoe-bpe", "bf16"), ("cohere-bpe", "bf16"), ("stablelm-bpe", "bf16"), ("falcon-bpe", "bf16"),
    ("deepseek2-bpe", "bf16"), ("deepseek3-bpe", "bf16"), ("deepseek3-fp8", "bf16"), ("gptoss-bpe", "bf16"), ("exaone4-bpe", "bf16"), ("glm4-bpe", "bf16"),
    ("gptneox-bpe", "f16"), ("modernbert-bpe", "f32"),
]

# INTEROP_MODELS=a,b keeps only those folders in the per-model loops (while developing).
if os.environ.get("INTEROP_MODELS"):
    MODELS_TYPES = [m for m in MODELS_TYPES if m[0] in os.environ["INTEROP_MODELS"].split(",")]

# Converted at float types only: their experts stay MXFP4 (llama-quantize
# refuses to requantize them, and so do we).
FLOAT_ONLY = ["gptoss-mxfp4"]


def run(*args, stdin=None, env=None):
    p = subprocess.run([str(a) for a in args], capture_output=True, text=stdin is not None or None, input=stdin,
                       env=env)
    out = p.stdout if isinstance(p.stdout, str) else p.stdout.decode("utf-8", "replace")
    err = p.stderr if isinstance(p.stderr, str) else p.stderr.decode("utf-8", "replace")
    assert p.returncode == 0, f"{args}: exit {p.returncode}\n{out[-2000:]}\n{err[-4000:]}"
    return out


# Folders the converter reads only under the transformers it pins
# (reference-tf-requirements.txt): GPTNeoXModel needs config["rotary_pct"].
PINNED_TRANSFORMERS = {"gptneox-bpe"}


def reference_env(model):
    if model not in PINNED_TRANSFORMERS:
        return None
    return {**os.environ, "PYTHONPATH": os.environ["REFERENCE_TF"]}


# What outlives a check in TMP: convert_hf_to_gguf.py's and llama-imatrix's
# outputs (slow to redo) and our Q4_K_M of each model (small; four checks
# run them). Everything else is made again where a later check asks:
# together the checks write tens of GBs, more than a CI machine's disk has
# free.
KEEP = re.compile(r"ref-.+-(f32|f16|bf16)\.gguf|.+\.imatrix\.(gguf|dat)|ours-.+-Q4_K_M\.gguf")


def remove(path):
    if Path(path).is_dir():
        shutil.rmtree(path)
    else:
        Path(path).unlink()


def prune_scratch():
    for p in TMP.iterdir():
        if not KEEP.fullmatch(p.name):
            remove(p)


harness.after_each.append(prune_scratch)


def each_pruned(items):
    """The items, with the scratch pruned after each: for the loops whose
    every model writes folders of its own."""
    for item in items:
        yield item
        prune_scratch()


def reference(model, outtype):
    """convert_hf_to_gguf.py's output (cached per run)."""
    out = TMP / f"ref-{model}-{outtype}.gguf"
    if not out.exists():
        run(sys.executable, SRC / "convert_hf_to_gguf.py", MODELS / model, "--outtype", outtype, "--outfile", out,
            env=reference_env(model))
    return out


def same_file(ours, ref):
    if Path(ours).read_bytes() != Path(ref).read_bytes():
        diff = subprocess.run([sys.executable, HERE / "gguf_compare.py", ours, ref], capture_output=True, text=True)
        raise AssertionError(f"{ours} differs from {ref}:\n{diff.stdout[-3000:]}")


@check
def f16_gguf_is_the_file_convert_hf_to_gguf_writes():
    for model in [m for m, _ in MODELS_TYPES] + FLOAT_ONLY:
        ours = TMP / f"ours-{model}-f16.gguf"
        run(MC, "convert", MODELS / model, ours, "--dtype", "F16")
        same_file(ours, reference(model, "f16"))


@check
def every_outtype_matches_convert_hf_to_gguf():
    for dtype in ["F32", "BF16", "Q8_0"]:
        ours = TMP / f"ours-llama-spm-bf16-{dtype}.gguf"
        run(MC, "convert", MODELS / "llama-spm-bf16", ours, "--dtype", dtype)
        same_file(ours, reference("llama-spm-bf16", dtype.lower()))


# Keys llama.cpp's loader needs that the converter does not write: it
# writes ModernBERT's `norm_eps` as layer_norm_rms_epsilon, the modern-bert
# loader requires layer_norm_epsilon. Neither its file nor ours (the same
# bytes) loads, or quantizes, until `modelconv meta` adds the key.
LOADER_FIXES = {"modernbert-bpe": {"modern-bert.attention.layer_norm_epsilon": "1e-05:f32"}}


def loadable(model, path):
    """`path` as llama.cpp loads it: itself, or a copy with LOADER_FIXES."""
    fixes = LOADER_FIXES.get(model)
    if not fixes:
        return path
    out = Path(path).with_name(Path(path).stem + "-loadable.gguf")
    if not out.exists():
        run(MC, "meta", path, *[a for k, v in fixes.items() for a in ("--set", f"{k}={v}")], "-o", out)
    return out


def without_loader_fixes(model, path):
    """`path` with LOADER_FIXES' keys removed again (llama-quantize's output
    of a loadable input, to compare with what the converter's chain gives)."""
    fixes = LOADER_FIXES.get(model)
    if not fixes:
        return path
    out = Path(path).with_name(Path(path).stem + "-unfixed.gguf")
    run(MC, "meta", path, *[a for k in fixes for a in ("--remove", k)], "-o", out)
    return out


def q4_k_m_reference(model, outtype):
    out = TMP / f"ref-{model}-Q4_K_M.gguf"
    run(BIN / "llama-quantize", loadable(model, reference(model, outtype)), out, "Q4_K_M")
    return out


@check
def q4_k_m_is_convert_hf_to_gguf_then_llama_quantize_byte_for_byte():
    for model, outtype in MODELS_TYPES:
        ours = TMP / f"ours-{model}-Q4_K_M.gguf"
        run(MC, "quantize", MODELS / model, "--q4_k", "-o", ours)
        same_file(ours, without_loader_fixes(model, q4_k_m_reference(model, outtype)))


# Encoders: llama-embedding runs them (llama-simple generates from the others).
EMBEDDING = {"bert-wordpiece", "xlmr-unigram", "qwen3-embedding", "modernbert-bpe"}


def ours_q4_k_m(model):
    ours = TMP / f"ours-{model}-Q4_K_M.gguf"
    if not ours.exists():
        run(MC, "quantize", MODELS / model, "--q4_k", "-o", ours)
    return loadable(model, ours)


def llama_simple(model_file, n=8, prompt="Hello my name is"):
    """llama-simple's text and the number of tokens it says it decoded."""
    p = subprocess.run([str(BIN / "llama-simple"), "-m", str(model_file), "-n", str(n), prompt],
                       capture_output=True, text=True, errors="replace")
    assert p.returncode == 0, f"llama-simple {model_file}: exit {p.returncode}\n{p.stderr[-3000:]}"
    decoded = [int(w) for line in p.stderr.splitlines() if "decoded" in line
               for w in line.split("decoded", 1)[1].split()[:1] if w.isdigit()]
    assert prompt in p.stdout, p.stdout
    return p.stdout, (decoded or [0])[0]


@check
def llama_simple_generates_from_our_mxfp4_experts():
    """GPT-OSS as the hub ships it: the MXFP4 experts repacked, not
    dequantized (the file type says MXFP4_MOE), and llama.cpp runs it."""
    import gguf
    for model in FLOAT_ONLY:
        ours = TMP / f"ours-{model}-f16.gguf"
        if not ours.exists():
            run(MC, "convert", MODELS / model, ours, "--dtype", "F16")
        r = gguf.GGUFReader(ours)
        assert r.fields["general.file_type"].contents() == 38, r.fields["general.file_type"].contents()
        assert any(t.tensor_type == gguf.GGMLQuantizationType.MXFP4 for t in r.tensors)
        out = run(BIN / "llama-simple", "-m", ours, "-n", "8", "Hello my name is")
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


def llama_embedding(model, text):
    """llama-embedding's normalized embedding of `text`. It prints through
    llama.cpp's asynchronous log, which can lose the end of the array when
    the process exits first: such a run is repeated."""
    for _ in range(5):
        out = run(BIN / "llama-embedding", "-m", model, "-p", text, "--embd-normalize", "2",
                  "--embd-output-format", "array", "--no-warmup")
        if "[" in out and out.rstrip().endswith("]"):
            return np.array(json.loads(out[out.index("["):out.rindex("]") + 1]), dtype=np.float64).reshape(-1)
    raise AssertionError(f"llama-embedding printed no whole array for {text!r}: {out[-300:]!r}")


@check
def llama_embedding_agrees_with_sentence_transformers():
    from sentence_transformers import SentenceTransformer
    for model in ["bert-wordpiece", "xlmr-unigram", "qwen3-embedding", "modernbert-bpe"]:
        ours = TMP / f"ours-{model}-f16.gguf"
        if not ours.exists():
            run(MC, "convert", MODELS / model, ours, "--dtype", "F16")
        st = SentenceTransformer(str(MODELS / model), device="cpu")
        want = st.encode(SENTENCES, normalize_embeddings=True)
        for s, w in zip(SENTENCES, want):
            got = llama_embedding(loadable(model, ours), s)
            cos = float(np.dot(got, w) / np.linalg.norm(got) / np.linalg.norm(w))
            assert cos >= 0.999, f"{model}: {s!r}: cosine {cos}"


@check
def llama_cpp_runs_every_q4_k_m_we_write():
    """Every model's Q4_K_M: llama-simple loads it and decodes the prompt and
    new tokens (generative models), llama-embedding gives a finite unit
    vector (encoders)."""
    for model, _ in MODELS_TYPES:
        ours = ours_q4_k_m(model)
        if model in EMBEDDING:
            v = llama_embedding(ours, SENTENCES[0])
            assert np.isfinite(v).all() and abs(np.linalg.norm(v) - 1) < 1e-3, f"{model}: {v[:8]}"
        else:
            _, decoded = llama_simple(ours)
            assert decoded > 0, f"{model}: llama-simple decoded no tokens"


TEXTS = SENTENCES + ["  two leading spaces", "tabs\tand 12345 numbers", "Ünïcödé, emoji 🦙 and\n\nnewlines"]


def causal_logits(ids, folder, gguf_file=None, config=None):
    """transformers' F32 logits on token `ids`: of a Hugging Face folder,
    or of a GGUF as transformers reads one (gguf_file), optionally under a
    given config (`config`: a folder whose config.json to use)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM
    kw = {"gguf_file": gguf_file} if gguf_file else {}
    if config is not None:
        kw["config"] = AutoConfig.from_pretrained(config)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32, **kw)
    with torch.no_grad():
        return model(torch.tensor([ids])).logits[0].numpy()


def gguf_to_hf(gguf, *args):
    out = TMP / (Path(gguf).stem + "-hf" + "".join(a.strip("-") for a in args))
    if not out.exists():
        run(MC, "convert", gguf, out, "--to", "hf", *args)
    return out


def gguf_py_dequantized(src):
    """An F32 copy of GGUF `src` made by gguf-py alone (its reader, its
    dequantizers, its writer): the reference for a quantized file where
    transformers cannot read the GGUF itself."""
    import gguf
    dst = TMP / (Path(src).stem + "-gguf-py-f32.gguf")
    if dst.exists():
        return dst
    r = gguf.GGUFReader(src)
    arch = r.fields["general.architecture"].contents()
    w = gguf.GGUFWriter(dst, arch)
    for name, f in r.fields.items():
        if name.startswith("GGUF.") or name == "general.architecture":
            continue
        sub = f.types[-1] if f.types[0] == gguf.GGUFValueType.ARRAY else None
        w.add_key_value(name, f.contents(), f.types[0], sub)
    for t in r.tensors:
        x = gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float32)
        w.add_tensor(t.name, x.reshape(tuple(int(d) for d in reversed(t.shape))))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return dst


# How each model's folder is checked (see the check's docstring):
#   "gguf": against transformers' reading of the GGUF;
#   "gguf+config": the same under our config.json, for keys transformers'
#     GGUF reader drops (Gemma's soft caps and query scale, the MoE widths,
#     Phi-3's long-rope factors) — the config itself is compared with the
#     original folder's below;
#   "original": transformers cannot read this GGUF (a `llama` GGUF with
#     experts; Qwen2-MoE's 3-D shared-expert gate; OLMo 2, Granite, OLMoE
#     and Command-R, which its GGUF reader does not know): against the original
#     folder at the weights' type and gguf-py's dequantization at Q4_K_M.
TO_HF = {"llama-spm": "gguf", "qwen2-bpe": "gguf", "qwen3-bpe": "gguf", "llama3-rope": "original",
         "gpt2-bpe": "gguf", "phi3-spm": "gguf", "phi3-longrope": "gguf+config", "gemma2-spm": "gguf+config",
         "gemma3-spm": "gguf+config", "qwen3moe-bpe": "gguf+config", "mixtral-spm": "original",
         "qwen2moe-bpe": "original", "starcoder2-bpe": "gguf", "stablelm-bpe": "gguf", "olmo2-bpe": "original",
         "granite-spm": "original", "olmoe-bpe": "original", "cohere-bpe": "original",
         "smollm3-spm": "original", "phimoe-spm": "original", "falcon-bpe": "original", "gptneox-bpe": "original",
         "glm4-bpe": "original", "exaone4-bpe": "original", "granitemoe-spm": "original",
         "deepseek2-bpe": "original", "deepseek3-bpe": "original", "gptoss-bpe": "original",
         "gptoss-mxfp4": "original"}
if os.environ.get("INTEROP_MODELS"):
    TO_HF = {m: how for m, how in TO_HF.items() if m in os.environ["INTEROP_MODELS"].split(",")}
# config.json keys where the GGUF, as llama.cpp runs it, means something
# else than the original folder said (so these folders' logits differ from
# the original's): llama.cpp scales Gemma's queries by 1/sqrt(head_dim)
# whatever query_pre_attn_scalar was (gemma2.cpp/gemma3.cpp), and always
# normalizes Qwen3-MoE's top-k weights (qwen3moe.cpp), which our tiny
# random configs set otherwise; and convert_hf_to_gguf.py writes Falcon's
# context as 2048 whatever the config said.
LLAMA_CPP_MEANS = {"gemma2-spm": {"query_pre_attn_scalar": 128}, "gemma3-spm": {"query_pre_attn_scalar": 128},
                   "qwen3moe-bpe": {"norm_topk_prob": True}, "falcon-bpe": {"max_position_embeddings": 2048}}


def assert_config_carries(model, out):
    """Our config.json says what the original's does for every key both
    have, except LLAMA_CPP_MEANS's (and keys the original leaves null,
    such as a pad token the GGUF's tokenizer names)."""
    ours, orig = (json.loads((d / "config.json").read_text()) for d in (out, MODELS / model))
    skip = {"transformers_version", "dtype", "torch_dtype", "architectures", "use_cache", "initializer_range"}
    for key in sorted(set(ours) & set(orig) - skip):
        want = LLAMA_CPP_MEANS.get(model, {}).get(key, orig[key])
        a, b = ours[key], want
        if b is None:
            continue
        if isinstance(a, float) or isinstance(b, float):
            assert abs(a - b) <= 1e-6 * max(1, abs(b)), f"{model}: {key} = {a}, original {b}"
        elif key != "rope_parameters":
            assert a == b, f"{model}: config {key} = {a!r}, original {b!r}"


def spm_normalizes(folder):
    """Whether the folder's trained SentencePiece model normalizes text
    (NFKC rules that turn a tab into a space, `remove_extra_whitespaces`
    collapsing runs of spaces): rules a GGUF does not carry and llama.cpp
    does not apply."""
    path = folder / "tokenizer.model"
    if not path.exists():
        return False
    from sentencepiece import sentencepiece_model_pb2
    m = sentencepiece_model_pb2.ModelProto()
    m.ParseFromString(path.read_bytes())
    n = m.normalizer_spec
    return n.remove_extra_whitespaces or n.name not in ("", "identity")


@check
def gguf_back_to_a_hugging_face_folder_is_what_transformers_reads_of_the_gguf():
    """convert x.gguf OUT --to hf for LLaMA, Mixtral, Qwen2/3, Qwen2/3-MoE,
    Gemma 2/3, Phi-3 (with long rope), GPT-2, StarCoder2, StableLM, OLMo 2,
    Granite, OLMoE and Command-R: transformers loads OUT;
    its logits equal transformers' own reading of the GGUF
    (from_pretrained(gguf_file=…)) within 1e-4, at the weights' type and
    at Q4_K_M (dequantized), sharded too — under our config.json where
    transformers' GGUF reader drops keys, and against the original folder
    and gguf-py's dequantization where it cannot read the GGUF (TO_HF);
    config.json carries the original's keys (LLAMA_CPP_MEANS: where
    llama.cpp runs the GGUF otherwise); where llama.cpp means what the
    original did, the logits also equal the original folder's. Its
    tokenizer gives the ids the original folder's does in transformers,
    and its tokenizer.model (sentencepiece) or tokenizer.json those
    llama-tokenize gives on the GGUF (transformers' own GGUF tokenizer
    differs from both on leading spaces, so it is not the reference here;
    nor is the original folder's beyond plain sentences where its trained
    SentencePiece model normalizes text, rules a GGUF does not carry and
    llama.cpp does not apply). Llama 3.1's rope_freqs come
    back as the rope_parameters they were made from (transformers' GGUF
    reader drops them)."""
    from transformers import AutoTokenizer
    for model, how in each_pruned(TO_HF.items()):
        own = TMP / f"ours-{model}.gguf"
        if not own.exists():
            run(MC, "convert", MODELS / model, own)
        # gptoss-mxfp4's own GGUF is the quantized case (MXFP4 experts, which
        # llama-quantize does not quantize again).
        quantized = [] if model == "gptoss-mxfp4" else [(ours_q4_k_m(model), ("--max-shard-size", "20MB"))]
        for gguf, args in [(own, ())] + quantized:
            out = gguf_to_hf(gguf, *args)
            prompt = AutoTokenizer.from_pretrained(out).encode(SENTENCES[0])
            got = causal_logits(prompt, out)
            if how == "original":
                want = [causal_logits(prompt, MODELS / model) if gguf == own else
                        causal_logits(prompt, gguf_to_hf(gguf_py_dequantized(gguf)))]
            else:
                want = [causal_logits(prompt, str(Path(gguf).parent), Path(gguf).name,
                                      config=out if how == "gguf+config" else None)]
                if gguf == own and model not in LLAMA_CPP_MEANS:
                    want.append(causal_logits(prompt, MODELS / model))
            for w in want:
                diff = float(np.abs(got - w).max())
                assert diff <= 1e-4, f"{model} {gguf.name}: logits differ by {diff}"
            assert_config_carries(model, out)
            ours_tok, original = AutoTokenizer.from_pretrained(out), AutoTokenizer.from_pretrained(MODELS / model)
            plain_only = spm_normalizes(MODELS / model)
            for text in TEXTS:
                ids = ours_tok.encode(text)
                if text in SENTENCES or not plain_only:
                    # (Whether BOS is added is llama.cpp's rule, checked against llama-tokenize below.)
                    a, b = (x[1:] if x[:1] == [ours_tok.bos_token_id] else x for x in (ids, original.encode(text)))
                    assert a == b, f"{model}: {text!r}: {ids}, the original folder's {original.encode(text)}"
                if (MODELS / model / "tokenizer.model").exists():
                    import sentencepiece
                    sp = sentencepiece.SentencePieceProcessor(model_file=str(out / "tokenizer.model"))
                    bos = [ours_tok.bos_token_id] if getattr(ours_tok, "add_bos_token", True) else []
                    ids = bos + sp.encode(text)
                lt = run(BIN / "llama-tokenize", "-m", gguf, "--stdin", "--no-escape", "--ids", "--log-disable",
                         stdin=text)
                assert ids == json.loads(lt.strip().splitlines()[-1]), f"{model}: {text!r}: {ids}, llama-tokenize {lt!r}"


# Encoders whose folders come back: whether their tokenizer's ids equal the
# original folder's (ModernBERT's zoo folder carries GPT-2's tokenizer files,
# which add no separator; its GGUF says llama.cpp adds one, as the real
# ModernBERT tokenizer does, so only llama-tokenize is its reference).
ENCODERS_BACK = {"bert-wordpiece": True, "modernbert-bpe": False, "xlmr-unigram": True}


@check
def an_encoder_gguf_back_to_a_folder_is_the_original_encoder():
    """BERT, ModernBERT and XLM-RoBERTa: our GGUF, and its Q4_K_M, back to a folder whose
    model gives the original folder's hidden states on the same ids (within
    F16's rounding; Q4_K_M within its error), whose sentence-transformers
    files give its sentence embeddings, and whose tokenizer gives
    llama-tokenize's ids (and the original's, ENCODERS_BACK)."""
    import torch
    from sentence_transformers import SentenceTransformer
    from transformers import AutoModel, AutoTokenizer
    wanted = os.environ.get("INTEROP_MODELS", "").split(",")
    for model, same_ids in each_pruned(ENCODERS_BACK.items()):
        if wanted != [""] and model not in wanted:
            continue
        own = TMP / f"ours-{model}.gguf"
        if not own.exists():
            run(MC, "convert", MODELS / model, own)
        original = AutoTokenizer.from_pretrained(MODELS / model)
        x = original(SENTENCES[1], return_tensors="pt")

        def hidden(folder):
            m = AutoModel.from_pretrained(folder, dtype=torch.float32)
            with torch.no_grad():
                return m(**x).last_hidden_state[0].numpy()
        want = hidden(MODELS / model)
        for gguf, limit in [(own, 2e-2), (ours_q4_k_m(model), 0.25)]:
            out = gguf_to_hf(gguf)
            diff = float(np.abs(hidden(out) - want).max())
            print(f"        {model} {gguf.name}: hidden states within {diff:.2e} of the original's")
            assert diff <= limit, f"{model} {gguf.name}: hidden states differ by {diff}"
            assert_config_carries(model, out)
            if (out / "modules.json").exists():
                kw = {"device": "cpu", "model_kwargs": {"dtype": torch.float32}}
                got, exp = (SentenceTransformer(str(f), **kw).encode(SENTENCES) for f in (out, MODELS / model))
                diff = float(np.abs(got - exp).max())
                assert diff <= limit, f"{model} {gguf.name}: sentence embeddings differ by {diff}"
            ours_tok = AutoTokenizer.from_pretrained(out)
            for text in TEXTS:
                ids = ours_tok.encode(text)
                if same_ids:
                    assert ids == original.encode(text), f"{model}: {text!r}: {ids}, the original's {original.encode(text)}"
                lt = run(BIN / "llama-tokenize", "-m", gguf, "--stdin", "--no-escape", "--ids", "--log-disable",
                         stdin=text)
                assert ids == json.loads(lt.strip().splitlines()[-1]), f"{model}: {text!r}: {ids}, llama-tokenize {lt!r}"


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


LORA_MODELS = ["llama-spm", "qwen2-bpe", "phi3-spm"]


def peft_adapter(model):
    """A PEFT LoRA (rank 8, alpha 16, every linear layer, B not zero) on
    MODELS/model, and the model with it merged by peft (its folder: the
    merged weights and the base folder's other files)."""
    import peft
    import shutil
    import torch
    import transformers
    out, merged = TMP / f"lora-{model}", TMP / f"lora-{model}-merged"
    if out.exists():
        return out, merged
    torch.manual_seed(7)
    base = transformers.AutoModelForCausalLM.from_pretrained(MODELS / model, dtype=torch.float32)
    config = peft.LoraConfig(r=8, lora_alpha=16, target_modules="all-linear", init_lora_weights=False)
    lora = peft.get_peft_model(base, config)
    lora.save_pretrained(out)
    lora.merge_and_unload().save_pretrained(merged)
    for f in (MODELS / model).iterdir():
        if not (merged / f.name).exists() and not f.name.endswith((".safetensors", ".bin", ".json")) \
                or f.name.startswith(("tokenizer", "special_tokens", "added_tokens")):
            shutil.copy(f, merged)
    return out, merged


@check
def lora_adapter_is_the_file_convert_lora_to_gguf_writes():
    for model in LORA_MODELS:
        adapter, _ = peft_adapter(model)
        for outtype in ["f32", "f16", "bf16", "q8_0"]:
            ref, ours = TMP / f"ref-lora-{model}-{outtype}.gguf", TMP / f"ours-lora-{model}-{outtype}.gguf"
            run(sys.executable, SRC / "convert_lora_to_gguf.py", adapter, "--base", MODELS / model,
                "--outtype", outtype, "--outfile", ref)
            run(MC, "convert", adapter, ours, "--base", MODELS / model, "--dtype", outtype.upper())
            same_file(ours, ref)


@check
def llama_export_lora_merges_our_adapter_as_peft_merges_it():
    """llama.cpp loads our adapter and applies it: llama-export-lora's merge
    into the F32 base equals peft's merge_and_unload, converted."""
    import gguf
    for model in LORA_MODELS:
        adapter, merged = peft_adapter(model)
        ours = TMP / f"ours-lora-{model}-f32.gguf"
        if not ours.exists():
            run(MC, "convert", adapter, ours, "--base", MODELS / model, "--dtype", "F32")
        by_llama = TMP / f"lora-{model}-by-llama.gguf"
        run(BIN / "llama-export-lora", "-m", reference(model, "f32"), "--lora", ours, "-o", by_llama)
        by_peft = TMP / f"lora-{model}-by-peft.gguf"
        run(sys.executable, SRC / "convert_hf_to_gguf.py", merged, "--outtype", "f32", "--outfile", by_peft)
        want = {t.name: np.asarray(t.data) for t in gguf.GGUFReader(by_peft).tensors}
        got = {t.name: np.asarray(t.data) for t in gguf.GGUFReader(by_llama).tensors}
        assert set(got) == set(want), f"{model}: tensors {sorted(set(got) ^ set(want))}"
        changed = 0
        for name, w in want.items():
            base = next(t for t in gguf.GGUFReader(reference(model, "f32")).tensors if t.name == name)
            changed += not np.array_equal(np.asarray(base.data), w)
            assert np.allclose(got[name], w, rtol=1e-4, atol=1e-5), \
                f"{model}: {name}: llama.cpp's merge differs from peft's by {np.abs(got[name] - w).max()}"
        assert changed >= 4, f"{model}: only {changed} tensors changed by the adapter"


@check
def mmproj_is_the_file_convert_hf_to_gguf_mmproj_writes():
    """Vision projectors (the fixtures' tiny Gemma 3 and SmolVLM folders):
    ours is the file `convert_hf_to_gguf.py --mmproj` writes now, at every
    output type."""
    for family in ["gemma3", "smolvlm"]:
        folder = HERE.parent.parent / "fixtures" / "hf" / "mmproj" / family
        for outtype in ["f16", "f32", "bf16", "q8_0"]:
            ref, ours = TMP / f"ref-mmproj-{family}-{outtype}.gguf", TMP / f"ours-mmproj-{family}-{outtype}.gguf"
            run(sys.executable, SRC / "convert_hf_to_gguf.py", folder, "--mmproj", "--outtype", outtype,
                "--outfile", ref)
            run(MC, "-q", "convert", folder, ours, "--mmproj", "--dtype", outtype.upper())
            same_file(ours, ref)


@check
def llama_mtmd_cli_encodes_an_image_with_our_gemma3_projector():
    """llama.cpp's multimodal CLI loads our Gemma 3 projector beside our
    conversion of the same folder's text model (tiny-llama's 512-piece
    SentencePiece model as its tokenizer), encodes an image through it and
    generates."""
    import shutil
    fixtures = HERE.parent.parent / "fixtures" / "hf"
    folder = TMP / "gemma3-vlm"
    shutil.copytree(fixtures / "mmproj" / "gemma3", folder)
    shutil.copy(fixtures / "tiny-llama" / "tokenizer.model", folder)
    text, mmproj, image = TMP / "gemma3-vlm.gguf", TMP / "gemma3-vlm-mmproj.gguf", TMP / "noise.ppm"
    run(MC, "-q", "convert", folder, text, "--dtype", "F32")
    run(MC, "-q", "convert", folder, mmproj, "--mmproj", "--dtype", "F16")
    rng = np.random.default_rng(0)
    image.write_bytes(b"P6\n32 32\n255\n" + rng.integers(0, 256, 32 * 32 * 3, dtype=np.uint8).tobytes())
    p = subprocess.run([str(BIN / "llama-mtmd-cli"), "-m", str(text), "--mmproj", str(mmproj), "--image", str(image),
                        "-p", "what is this", "-n", "4", "--temp", "0", "-t", "2", "--chat-template", "gemma"],
                       capture_output=True)
    log = (p.stdout + p.stderr).decode("utf-8", "replace")
    assert p.returncode == 0, f"llama-mtmd-cli: exit {p.returncode}\n{log[-3000:]}"
    assert "batch encoding done" in log, f"no image was encoded:\n{log[-3000:]}"


def completion(*args):
    """llama-completion's greedy continuation of a fixed prompt. It prints
    through llama.cpp's asynchronous log, which can lose the end of the
    text when the process exits first (one full-suite run saw it): the
    text two runs in a row agree on."""
    def once():
        return run(BIN / "llama-completion", *args, "-p", "hello world", "-n", "12", "--temp", "0", "-t", "2",
                   "-no-cnv", "--no-warmup")
    last = once()
    for _ in range(5):
        now = once()
        if now == last:
            return now
        last = now
    raise AssertionError(f"llama-completion {args}: no two runs printed the same text")


@check
def llama_completion_generates_with_our_lora_as_with_it_merged():
    """llama.cpp runs our adapter with `--lora` (the fixtures' tiny-llama
    and its PEFT adapter): the greedy text equals that of the base with the
    adapter merged by llama-export-lora, and differs from the base's."""
    fixtures = HERE.parent.parent / "fixtures" / "hf"
    base, adapter, merged = TMP / "tl-base.gguf", TMP / "tl-lora.gguf", TMP / "tl-merged.gguf"
    run(MC, "-q", "convert", fixtures / "tiny-llama", base, "--dtype", "F32")
    run(MC, "-q", "convert", fixtures / "lora" / "llama", adapter, "--base", fixtures / "tiny-llama")
    run(BIN / "llama-export-lora", "-m", base, "--lora", adapter, "-o", merged)
    with_lora = completion("-m", base, "--lora", adapter)
    assert with_lora == completion("-m", merged), "--lora and the merged model generate differently"
    assert with_lora != completion("-m", base), "the adapter changed nothing"



def big_gguf():
    """A ~300 MB GGUF written by gguf-py: 40 F16 matrices of ~7 MB, and
    between them small tensors whose sizes are not multiples of 32 bytes,
    one shaped (1, 37), whose leading 1 gguf.cpp's writer drops."""
    import gguf
    out = TMP / "big.gguf"
    if out.exists():
        return out
    rng = np.random.default_rng(0)
    w = gguf.GGUFWriter(out, "llama")
    w.add_block_count(40)
    w.add_string("general.name", "split test")
    for i in range(40):
        w.add_tensor(f"blk.{i}.ffn_up.weight", rng.standard_normal((1024, 3584 + i), dtype=np.float32).astype(np.float16))
        w.add_tensor(f"blk.{i}.odd", rng.standard_normal((3, 37 + i), dtype=np.float32).astype(np.float16))
    w.add_tensor("row", rng.standard_normal((1, 37), dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return out


def same_folder(ours, ref):
    names = sorted(p.name for p in Path(ref).iterdir())
    assert sorted(p.name for p in Path(ours).iterdir()) == names, (sorted(os.listdir(ours)), names)
    assert len(names) > 1, names
    for n in names:
        same_file(Path(ours) / n, Path(ref) / n)


def gguf_split(*args, out_dir, stem):
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    run(BIN / "llama-gguf-split", *args, Path(out_dir) / stem)
    return out_dir


@check
def gguf_split_by_size_and_by_tensors_is_llama_gguf_splits_and_merges_as_it_does():
    """On a ~300 MB GGUF: split by size, by tensor count with a metadata-only
    first shard; our merge of llama-gguf-split's shards and of ours is its
    --merge; every shard written alone by a separate process (--split-only)
    is the whole run's."""
    big = big_gguf()
    cases = [(["--split-max-size", "100M"], "size"), (["--split-max-tensors", "7", "--no-tensor-first-split"], "tensors")]
    for opts, label in cases:
        ref = gguf_split("--split", *opts, big, out_dir=TMP / f"ref-split-{label}", stem="big")
        ours = TMP / f"ours-split-{label}"
        run(MC, "-q", "convert", big, ours / "big.gguf", *opts)
        same_folder(ours, ref)
        n = len(os.listdir(ref))
        merged_ref = TMP / f"ref-merged-{label}.gguf"
        run(BIN / "llama-gguf-split", "--merge", Path(ref) / f"big-00001-of-{n:05}.gguf", merged_ref)
        for shards in (ref, ours):
            merged = TMP / f"ours-merged-{label}-{Path(shards).name}.gguf"
            run(MC, "-q", "convert", Path(shards) / f"big-00001-of-{n:05}.gguf", merged)
            same_file(merged, merged_ref)
        workers = TMP / f"workers-{label}"
        procs = [subprocess.Popen([MC, "-q", "convert", str(big), str(workers / f"w{k}" / "big.gguf"), *opts,
                                   "--split-only", str(k)]) for k in range(1, n + 1)]
        assert all(p.wait() == 0 for p in procs), "a --split-only worker failed"
        for k in range(1, n + 1):
            name = f"big-{k:05}-of-{n:05}.gguf"
            assert os.listdir(workers / f"w{k}") == [name], os.listdir(workers / f"w{k}")
            same_file(workers / f"w{k}" / name, Path(ref) / name)
        # Each case writes the model six times over.
        for p in (ref, ours, workers, merged_ref, *TMP.glob(f"ours-merged-{label}-*")):
            remove(p)


@check
def split_conversion_and_quantization_are_llama_cpps_tools_chained_and_llama_cpp_loads_them():
    """HF → GGUF F16 split = convert_hf_to_gguf.py + llama-gguf-split;
    quantize --q4_k split = convert_hf_to_gguf.py + llama-quantize +
    llama-gguf-split; llama-simple runs from our first shard."""
    opts = ["--split-max-tensors", "5"]
    ref = gguf_split("--split", *opts, reference("llama-spm", "f16"), out_dir=TMP / "ref-hf-split", stem="m")
    ours = TMP / "ours-hf-split"
    run(MC, "-q", "convert", MODELS / "llama-spm", ours / "m.gguf", "--dtype", "F16", *opts)
    same_folder(ours, ref)
    ref = gguf_split("--split", *opts, q4_k_m_reference("llama-spm", "f32"), out_dir=TMP / "ref-q-split", stem="m")
    ours = TMP / "ours-q-split"
    run(MC, "-q", "quantize", MODELS / "llama-spm", "--q4_k", "-o", ours / "m.gguf", *opts)
    same_folder(ours, ref)
    n = len(os.listdir(ours))
    _, decoded = llama_simple(ours / f"m-00001-of-{n:05}.gguf")
    assert decoded > 0, "llama-simple decoded no tokens from our shards"



def gguf_fields(path):
    """Every metadata field as gguf-py reads it: name → (types, contents)."""
    import gguf
    r = gguf.GGUFReader(path)
    return {k: (f.types, f.contents()) for k, f in r.fields.items() if not k.startswith("GGUF.")}


def tensor_bytes(path):
    import gguf
    return {t.name: bytes(t.data.tobytes()) for t in gguf.GGUFReader(path).tensors}


@check
def meta_edits_read_back_as_gguf_py_s_own_editors_write_them():
    """gguf_set_metadata.py's in-place change of a number gives our in-place
    edit's bytes; gguf_new_metadata.py's new name, chat template, special
    token and removed key read back (gguf-py) as ours do, tensors equal; the
    safetensors library reads our edited __metadata__."""
    src = reference("llama-spm", "f32")
    scripts = SRC / "gguf-py" / "gguf" / "scripts"
    env = dict(os.environ, PYTHONPATH=str(SRC / "gguf-py"))
    theirs, ours = TMP / "meta-set-ref.gguf", TMP / "meta-set-ours.gguf"
    theirs.write_bytes(src.read_bytes())
    ours.write_bytes(src.read_bytes())
    subprocess.run([sys.executable, scripts / "gguf_set_metadata.py", theirs, "llama.context_length", "4096", "--force"],
                   check=True, capture_output=True, env=env)
    out = json.loads(run(MC, "meta", ours, "--set", "llama.context_length=4096", "--json"))
    assert out["in_place"] is True, out["in_place"]
    same_file(ours, theirs)

    template = TMP / "template.jinja"
    template.write_text("{% for m in messages %}<|{{ m.role }}|>{{ m.content }}{% endfor %}")
    theirs, ours = TMP / "meta-new-ref.gguf", TMP / "meta-new-ours.gguf"
    subprocess.run([sys.executable, scripts / "gguf_new_metadata.py", src, theirs, "--general-name", "Renamed model",
                    "--chat-template-file", template, "--special-token-by-id", "eos", "3",
                    "--remove-metadata", "tokenizer.ggml.add_bos_token", "--force"], check=True, capture_output=True, env=env)
    run(MC, "-q", "meta", src, "-o", ours, "--set", "general.name=Renamed model", "--chat-template-file", template,
        "--set", "tokenizer.ggml.eos_token_id=3", "--remove", "tokenizer.ggml.add_bos_token")
    want, got = gguf_fields(theirs), gguf_fields(ours)
    assert sorted(want) == sorted(got), (sorted(set(want) ^ set(got)))
    for k in want:
        assert want[k][0] == got[k][0] and want[k][1] == got[k][1], f"{k}: {want[k]} vs {got[k]}"
    assert tensor_bytes(theirs) == tensor_bytes(ours)

    from safetensors import safe_open
    st = TMP / "meta.safetensors"
    run(MC, "-q", "convert", MODELS / "llama-spm" / "model.safetensors", st)
    run(MC, "-q", "meta", st, "--set", "format=pt", "--set", "note=edited by modelconv: ok")
    with safe_open(str(st), "np") as f:
        md = f.metadata()
        assert md.get("format") == "pt" and md.get("note") == "edited by modelconv: ok", md
        names = list(f.keys())
    assert names, "no tensors"


# Every file type we produce (llama-quantize's names), and those that
# quantize differently from before without an importance matrix.
QUANT_TYPES = ["Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q2_K", "Q2_K_S", "Q3_K_S", "Q3_K_M", "Q3_K_L", "Q4_K_S",
               "Q4_K_M", "Q5_K_S", "Q5_K_M", "Q6_K", "IQ4_NL", "IQ4_XS", "TQ1_0", "TQ2_0", "MXFP4_MOE", "Q1_0", "Q2_0",
               "IQ2_XXS", "IQ2_XS", "IQ2_S", "IQ2_M", "IQ3_XXS", "IQ3_XS", "IQ3_S", "IQ3_M", "IQ1_S", "IQ1_M"]
DAT_TYPES = ["Q4_0", "Q3_K_M", "IQ4_XS", "IQ2_XXS", "IQ1_M"]
NEW_TYPES = ["IQ4_NL", "IQ4_XS", "TQ1_0", "TQ2_0", "MXFP4_MOE", "Q1_0", "Q2_0", "IQ3_S", "IQ3_M"]
# A dense model and two with experts (stacked 3-D experts, per-expert slices of the matrix).
IMATRIX_MODELS = {"llama-spm": "f32", "mixtral-spm": "bf16", "qwen3moe-bpe": "bf16"}
CALIBRATION = HERE.parent.parent / "fixtures" / "imatrix" / "calibration.txt"


def llama_imatrix(model):
    """llama-imatrix's matrix of the reference GGUF, in both of its forms."""
    src = loadable(model, reference(model, IMATRIX_MODELS[model]))
    out = {}
    for form in ("gguf", "dat"):
        out[form] = TMP / f"{model}.imatrix.{form}"
        if not out[form].exists():
            run(BIN / "llama-imatrix", "-m", src, "-f", CALIBRATION, "-c", "64", "--chunks", "6",
                "--process-output", "--output-format", form, "-o", out[form])
    return src, out


def quantized_alike(src, name, ftype, *args):
    """llama-quantize's output and ours for the same input and options."""
    ref, ours = TMP / f"q-ref-{name}.gguf", TMP / f"q-ours-{name}.gguf"
    run(BIN / "llama-quantize", *args, src, ref, ftype)
    run(MC, "-q", "quantize", src, "-o", ours, "--type", ftype, *args)
    same_file(ours, ref)
    ref.unlink()
    return ours


@check
def quantize_under_llama_imatrixs_matrices_is_llama_quantize_byte_for_byte_for_every_type():
    for model in IMATRIX_MODELS:
        if MODELS_TYPES and model not in [m for m, _ in MODELS_TYPES]:
            continue
        src, imatrix = llama_imatrix(model)
        # Every type under the GGUF form; the legacy .dat form, which only
        # changes how the matrix is read, on the dense model under one type
        # of each family that weighs by it.
        passes = [("gguf", QUANT_TYPES)] + ([("dat", DAT_TYPES)] if model == "llama-spm" else [])
        for form, types in passes:
            for t in types:
                quantized_alike(src, f"{model}-{t}-{form}", t, "--imatrix", imatrix[form]).unlink()
        for t in NEW_TYPES:
            quantized_alike(src, f"{model}-{t}", t).unlink()


@check
def quantize_under_a_synthetic_matrix_of_hard_cases_is_llama_quantize_byte_for_byte():
    """fixtures/gguf/in-f32.gguf (zero, constant, tiny, huge and one-sided
    blocks) and a MoE model under a matrix with zero columns and an expert
    that saw no token."""
    models = [HERE.parent.parent / "fixtures" / "gguf" / "in-f32.gguf"]
    if not MODELS_TYPES or "qwen2moe-bpe" in [m for m, _ in MODELS_TYPES]:
        models.append(reference("qwen2moe-bpe", "bf16"))
    for src in models:
        im = TMP / f"{Path(src).stem}.synthetic.imatrix.gguf"
        synthetic_imatrix(src, im)
        for t in QUANT_TYPES:
            quantized_alike(src, f"{Path(src).stem}-{t}-synthetic", t, "--imatrix", im).unlink()
        for t in NEW_TYPES:
            quantized_alike(src, f"{Path(src).stem}-{t}", t).unlink()


@check
def llama_quantizes_options_mean_the_same_here():
    """--tensor-type, --tensor-type-file, --output-tensor-type,
    --token-embedding-type, --leave-output-tensor, --pure, --prune-layers,
    --override-kv, --include-weights/--exclude-weights, --allow-requantize,
    COPY, --keep-split and --dry-run, each against llama-quantize with the
    same options."""
    src, imatrix = llama_imatrix("llama-spm")
    types_file = TMP / "tensor-types.txt"
    types_file.write_text("attn_v=q8_0 ffn_down=q6_k\nblk\\.1\\.ffn_up=iq4_nl\n")
    im = ["--imatrix", imatrix["gguf"]]
    cases = [
        ("Q4_K_M", "--tensor-type", "attn_q=iq4_xs", "--tensor-type", "ffn_gate=q5_0"),
        ("Q4_K_M", "--tensor-type-file", types_file),
        ("Q5_K_S", "--output-tensor-type", "q8_0", "--token-embedding-type", "iq4_nl"),
        ("Q3_K_M", "--leave-output-tensor", *im),
        ("IQ4_XS", "--pure", *im),
        ("Q4_K_M", "--prune-layers", "0", *im),
        ("Q6_K", "--override-kv", "general.name=str:overridden", "--override-kv", "llama.context_length=int:-77",
         "--override-kv", "general.flag=bool:true", "--override-kv", "general.ratio=float:0.3"),
        ("Q4_K_S", "--include-weights", "ffn", "--include-weights", "attn_v", *im),
        ("Q4_0", "--exclude-weights", "blk.0.", *im),
        ("23", *im),  # a file type by its llama.h id (IQ3_XXS)
        ("IQ2_M", "--tensor-type", "ffn_down=iq1_m", *im),
    ]
    for i, (ftype, *args) in enumerate(cases):
        quantized_alike(src, f"options-{i}", ftype, *args).unlink()
    # A type that needs a matrix, without one: both refuse.
    ours, ref = TMP / "q-ours-refused.gguf", TMP / "q-ref-refused.gguf"
    p = subprocess.run([MC, "quantize", src, "-o", ours, "--type", "IQ2_XXS"], capture_output=True)
    r = subprocess.run([BIN / "llama-quantize", src, ref, "IQ2_XXS"], capture_output=True)
    assert p.returncode == 2 and not ours.exists() and r.returncode != 0, (p.stderr, r.returncode)
    # A dry run of it: both succeed, write nothing and warn.
    p = subprocess.run([MC, "quantize", src, "-o", ours, "--type", "IQ2_XXS", "--dry-run"], capture_output=True)
    r = subprocess.run([BIN / "llama-quantize", "--dry-run", src, "IQ2_XXS"], capture_output=True)
    assert p.returncode == 0 == r.returncode and not ours.exists(), (p.stderr, r.returncode)
    assert b"importance matrix" in p.stderr and b"require an imatrix" in r.stderr, (p.stderr, r.stderr)
    q8 = quantized_alike(src, "q8-input", "Q8_0")
    quantized_alike(q8, "requantized", "Q4_K_M", "--allow-requantize").unlink()
    quantized_alike(q8, "copied", "COPY").unlink()
    # --keep-split of a split made by llama-gguf-split: the same shards.
    shards = TMP / "keep-split-in"
    shards.mkdir(exist_ok=True)
    run(BIN / "llama-gguf-split", "--split", "--split-max-tensors", "7", src, shards / "in")
    first = sorted(shards.glob("in-*.gguf"))[0]
    for tool in ("ours", "ref"):
        (shards / tool).mkdir(exist_ok=True)
    run(MC, "-q", "quantize", first, "-o", shards / "ours" / "out.gguf", "--type", "Q4_K_M", "--keep-split", *im)
    run(BIN / "llama-quantize", "--keep-split", *im, first, shards / "ref" / "out.gguf", "Q4_K_M")
    names = sorted(f.name for f in (shards / "ref").iterdir())
    assert len(names) > 1 and names == sorted(f.name for f in (shards / "ours").iterdir()), names
    for n in names:
        same_file(shards / "ours" / n, shards / "ref" / n)


@check
def llama_cpp_runs_our_i_quants_and_gguf_py_dequantizes_them_as_we_do():
    """llama-simple generates from our IQ2_XXS, IQ1_S, IQ3_XXS, IQ4_XS,
    IQ4_NL, TQ1_0, TQ2_0 and MXFP4 files; gguf-py (of the same llama.cpp)
    dequantizes every tensor of them to what our dequantizers give."""
    src, imatrix = llama_imatrix("llama-spm")
    im = ["--imatrix", imatrix["gguf"]]
    for t, args in [("IQ2_XXS", im), ("IQ2_XS", im), ("IQ2_S", im), ("IQ1_S", im), ("IQ1_M", im), ("IQ3_XXS", im),
                    ("IQ3_S", []), ("IQ4_XS", im), ("IQ4_NL", []), ("TQ2_0", []), ("TQ1_0", [])]:
        # (gguf-py has no Q1_0/Q2_0 dequantizer yet; their bytes are checked above.)
        ours = TMP / f"run-{t}.gguf"
        run(MC, "-q", "quantize", src, "-o", ours, "--type", t, *args)
        if t in ("IQ2_XXS", "IQ1_S", "IQ3_XXS", "IQ4_XS", "IQ4_NL", "TQ1_0", "TQ2_0"):
            text, decoded = llama_simple(ours)
            assert decoded > 0, text
        back = TMP / f"run-{t}.safetensors"
        run(MC, "-q", "convert", ours, back, "--dtype", "F32")
        run(sys.executable, HERE / "dequant_compare.py", ours, back,
            env={**os.environ, "PYTHONPATH": str(SRC / "gguf-py")})
    moe = TMP / "run-MXFP4_MOE.gguf"
    run(MC, "-q", "quantize", reference("mixtral-spm", "bf16"), "-o", moe, "--type", "MXFP4_MOE")
    text, decoded = llama_simple(moe)
    assert decoded > 0, text


status = finish("hf-gguf")
harness.remove_scratch(TMP)
sys.exit(status)
