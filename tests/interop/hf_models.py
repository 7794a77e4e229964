"""Builds tiny Hugging Face model folders with transformers (random weights),
for the HF → GGUF checks. Widths are multiples of 256 so K-quant blocks are
really used.

    python hf_models.py LLAMA_CPP_DIR OUT_DIR

llama-spm: LlamaForCausalLM, SentencePiece tokenizer.model rebuilt from
llama.cpp's models/ggml-vocab-llama-spm.gguf (pieces, scores, types), F32
weights; llama-spm-bf16: the same model saved as BF16.
llama-sharded, llama-bin: llama-spm as safetensors shards with an index, and
as torch.save shards (pytorch_model-*.bin + index) in a shuffled order.
qwen2-bpe: Qwen2ForCausalLM (tied embeddings, BF16), a byte-level BPE
tokenizer.json rebuilt with HF tokenizers from models/ggml-vocab-qwen2.gguf
(tokens, merges, control tokens) and Qwen2's pre-tokenizer split pattern.
gemma2-spm: Gemma2ForCausalLM (BF16; norms stored as w - 1), fixtures/hf's
trained SentencePiece model; gemma2-spm-f16: the same in F16.
gemma3-spm: Gemma3ForCausalLM (BF16, q/k norms, sliding window), the same
SentencePiece model; gemma3-mm: Gemma3ForConditionalGeneration (its text
model; the SigLIP tower and projector are left out).
llama3-rope: LlamaForCausalLM (BF16, tied) with Llama 3.1's rope scaling.
phi3-spm, phi3-longrope: Phi3ForCausalLM (F32, fused qkv and gate_up, Phi-3's two added tokens), the
same SentencePiece model; the second with long-context rope factors.
gpt2-bpe: GPT2LMHeadModel (F32, tied), GPT-2's byte-level BPE rebuilt from
models/ggml-vocab-gpt-2.gguf.
qwen3-bpe: Qwen3ForCausalLM (F32, untied, q/k norms), qwen2-bpe's tokenizer files.
granitemoe-spm: GraniteMoeSharedForCausalLM (BF16, fused experts and shared MLP).
phimoe-spm: PhimoeForCausalLM (BF16, 8 experts), saved under the hub's class name.
smollm3-spm, granite-spm: SmolLM3ForCausalLM and GraniteForCausalLM (BF16, with
Granite's multipliers), the SentencePiece model.
mixtral-spm: MixtralForCausalLM (BF16, 8 experts of which 2 are used, 2 layers), the
trained SentencePiece model: experts stacked into ffn_*_exps.
qwen2moe-bpe, qwen3moe-bpe, olmo2-bpe: Qwen2MoeForCausalLM (shared expert),
Qwen3MoeForCausalLM (BF16, 8 experts, 2 layers), Olmo2ForCausalLM,
Starcoder2ForCausalLM, OlmoeForCausalLM, CohereForCausalLM,
StableLmForCausalLM and FalconForCausalLM (new decoder, grouped QKV),
gpt2-bpe's tokenizer.
bert-wordpiece: BertModel (F32) as a sentence-transformers model (mean
pooling: modules.json, 1_Pooling/), a WordPiece tokenizer.json rebuilt from
models/ggml-vocab-bert-bge.gguf (phantom-space tokens turned back into
WordPiece: "\u2581word" → "word", "piece" → "##piece").
gptneox-bpe: GPTNeoXForCausalLM (F16) with GPT-NeoX's tokenizer rebuilt from
models/ggml-vocab-gpt-neox.gguf; modernbert-bpe: ModernBertModel (F32) as a
sentence-transformers model with ModernBERT's tokenizer rebuilt from the
same file and its specials (its hash is the converter's `modern-bert`).
"""
import json
import random
import shutil
import sys
from pathlib import Path

import torch

import gguf
from sentencepiece import sentencepiece_model_pb2 as spm_pb2

LLAMA_CPP = None  # the llama.cpp source folder (set by main or the caller)


def vocab_gguf(name):
    return gguf.GGUFReader(Path(LLAMA_CPP) / "models" / f"ggml-vocab-{name}.gguf")


def norms_uniform(model, low, high):
    """1-D weights (norms, biases) drawn from [low, high): not all ones, so a
    norm written wrong is seen."""
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 1:
                p.uniform_(low, high)


def spm_model_from_gguf(name, out):
    """A SentencePiece BPE model with the pieces, scores and types of a llama.cpp vocab."""
    r = vocab_gguf(name)
    tokens = r.fields["tokenizer.ggml.tokens"].contents()
    scores = r.fields["tokenizer.ggml.scores"].contents()
    types = r.fields["tokenizer.ggml.token_type"].contents()
    m = spm_pb2.ModelProto()
    m.trainer_spec.model_type = spm_pb2.TrainerSpec.BPE
    m.trainer_spec.vocab_size = len(tokens)
    m.trainer_spec.byte_fallback = True
    m.trainer_spec.unk_id = 0
    m.trainer_spec.bos_id = 1
    m.trainer_spec.eos_id = 2
    m.trainer_spec.pad_id = -1
    m.normalizer_spec.name = "identity"
    m.normalizer_spec.add_dummy_prefix = True
    m.normalizer_spec.remove_extra_whitespaces = False
    m.normalizer_spec.escape_whitespaces = True
    # gguf token types: 1 normal, 2 unknown, 3 control, 4 user defined, 5 unused, 6 byte
    to_spm = {1: spm_pb2.ModelProto.SentencePiece.NORMAL, 2: spm_pb2.ModelProto.SentencePiece.UNKNOWN,
              3: spm_pb2.ModelProto.SentencePiece.CONTROL, 4: spm_pb2.ModelProto.SentencePiece.USER_DEFINED,
              5: spm_pb2.ModelProto.SentencePiece.UNUSED, 6: spm_pb2.ModelProto.SentencePiece.BYTE}
    for t, s, ty in zip(tokens, scores, types):
        p = m.pieces.add()
        p.piece = t
        p.score = s
        p.type = to_spm[int(ty)]
    out.write_bytes(m.SerializeToString())
    return len(tokens)


def llama_spm(dtype, folder):
    folder.mkdir(parents=True, exist_ok=True)
    n_vocab = spm_model_from_gguf("llama-spm", folder / "tokenizer.model")
    from transformers import LlamaConfig, LlamaForCausalLM
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=n_vocab, hidden_size=256, intermediate_size=768, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                      rms_norm_eps=1e-5, bos_token_id=1, eos_token_id=2, tie_word_embeddings=False)
    model = LlamaForCausalLM(cfg).to(dtype)
    norms_uniform(model, 0.5, 1.5)
    model.save_pretrained(folder, safe_serialization=True)
    (folder / "tokenizer_config.json").write_text(json.dumps({
        "add_bos_token": True, "add_eos_token": False, "bos_token": "<s>", "eos_token": "</s>",
        "unk_token": "<unk>", "pad_token": None, "tokenizer_class": "LlamaTokenizer",
        "model_max_length": 512, "legacy": False,
        "chat_template": "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}",
    }, indent=2))
    (folder / "special_tokens_map.json").write_text(json.dumps({
        "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"}, indent=2))


QWEN2_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
               r"|\s*[\r\n]+|\s+(?!\S)|\s+")


def bpe_tokenizer_from_gguf(name, split):
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    r = vocab_gguf(name)
    tokens = r.fields["tokenizer.ggml.tokens"].contents()
    types = r.fields["tokenizer.ggml.token_type"].contents()
    merges = [tuple(m.split(" ")) for m in r.fields["tokenizer.ggml.merges"].contents()]
    vocab = {t: i for i, (t, ty) in enumerate(zip(tokens, types)) if int(ty) == 1}
    tk = Tokenizer(models.BPE(vocab=vocab, merges=merges, byte_fallback=False))
    if split is None:  # GPT-2: byte-level with its own split pattern
        tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    else:
        tk.normalizer = normalizers.NFC()
        tk.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(split), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tk.decoder = decoders.ByteLevel()
    tk.post_processor = processors.ByteLevel(trim_offsets=False)
    control = [(i, t) for i, (t, ty) in enumerate(zip(tokens, types)) if int(ty) == 3]
    tk.add_special_tokens([AddedToken(t, special=True, normalized=False) for _, t in control])
    for i, t in control:
        assert tk.token_to_id(t) == i, (t, tk.token_to_id(t), i)
    return tk


def sharded_copies(src, sharded, pickled):
    """`src` saved again as three safetensors shards with an index, and as
    two torch.save shards (pytorch_model-*.bin + index) whose state dicts
    are in a shuffled (not sorted) order."""
    from safetensors.torch import load_file
    from transformers import LlamaForCausalLM
    LlamaForCausalLM.from_pretrained(src).save_pretrained(sharded, max_shard_size="20MB")
    pickled.mkdir(parents=True, exist_ok=True)
    sd = {}
    for f in sorted(sharded.glob("model-*.safetensors")):
        sd.update(load_file(f))
    names = sorted(sd)
    random.Random(0).shuffle(names)
    weight_map = {}
    for i, part in enumerate([names[:10], names[10:]], 1):
        fn = f"pytorch_model-{i:05d}-of-00002.bin"
        torch.save({n: sd[n] for n in part}, pickled / fn)
        weight_map.update({n: fn for n in part})
    (pickled / "pytorch_model.bin.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    for d in (sharded, pickled):
        for f in ["config.json", "tokenizer.model", "tokenizer_config.json", "special_tokens_map.json",
                  "generation_config.json"]:
            shutil.copy(src / f, d / f)


def qwen2_bpe(folder):
    folder.mkdir(parents=True, exist_ok=True)
    from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM
    tk = bpe_tokenizer_from_gguf("qwen2", QWEN2_SPLIT)
    fast = PreTrainedTokenizerFast(tokenizer_object=tk, eos_token="<|endoftext|>", pad_token="<|endoftext|>",
                                   model_max_length=32768)
    fast.chat_template = vocab_gguf("qwen2").fields["tokenizer.chat_template"].contents()
    fast.save_pretrained(folder)
    torch.manual_seed(1)
    cfg = Qwen2Config(vocab_size=151936, hidden_size=256, intermediate_size=768, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=32768,
                      rms_norm_eps=1e-6, rope_theta=1000000.0, tie_word_embeddings=True,
                      bos_token_id=151643, eos_token_id=151643)
    model = Qwen2ForCausalLM(cfg).to(torch.bfloat16)
    norms_uniform(model, 0.5, 1.5)
    model.save_pretrained(folder, safe_serialization=True)


def gpt2_bpe(folder, n_embd=256, n_layer=2, n_head=4, dtype=torch.float32):
    folder.mkdir(parents=True, exist_ok=True)
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast
    tk = bpe_tokenizer_from_gguf("gpt-2", None)
    PreTrainedTokenizerFast(tokenizer_object=tk, bos_token="<|endoftext|>", eos_token="<|endoftext|>",
                            unk_token="<|endoftext|>", model_max_length=1024).save_pretrained(folder)
    torch.manual_seed(4)
    cfg = GPT2Config(vocab_size=50257, n_embd=n_embd, n_layer=n_layer, n_head=n_head, n_positions=1024, n_ctx=1024)
    model = GPT2LMHeadModel(cfg).to(dtype)
    norms_uniform(model, 0.5, 1.5)
    model.save_pretrained(folder, safe_serialization=True)


# DeepSeek's multi-head latent attention with the widths of a real one (per
# head: 128 + 64 for Q/K, 128 for V; a 256-wide KV latent), 8 experts.
MLA = dict(num_attention_heads=2, num_key_value_heads=2, first_k_dense_replace=1, n_routed_experts=8,
           n_shared_experts=1, num_experts_per_tok=2, moe_intermediate_size=256, kv_lora_rank=256,
           qk_nope_head_dim=128, qk_rope_head_dim=64, v_head_dim=128)


def fp8_blocks(src, dst, block):
    """dst: src's linear weights block-quantized to float8 e4m3 (block x
    block, scale = block amax / 448, the last blocks partial) and stored
    with weight_scale_inv, as DeepSeek-V3's checkpoints are; the config
    gains its quantization_config. The other files are copied."""
    from safetensors.torch import load_file, save_file
    dst.mkdir(parents=True, exist_ok=True)
    out = {}
    for k, w in load_file(src / "model.safetensors").items():
        if w.dim() != 2 or "embed_tokens" in k or "lm_head" in k or k.endswith("mlp.gate.weight"):
            out[k] = w
            continue
        rows, cols = w.shape
        br, bc = -(-rows // block), -(-cols // block)
        padded = torch.zeros(br * block, bc * block)
        padded[:rows, :cols] = w.float()
        scale = padded.reshape(br, block, bc, block).abs().amax(dim=(1, 3)).clamp(min=1e-12) / 448.0
        full = scale.repeat_interleave(block, 0).repeat_interleave(block, 1)[:rows, :cols]
        out[k] = (w.float() / full).to(torch.float8_e4m3fn)
        out[k + "_scale_inv"] = scale.float()
    save_file(out, dst / "model.safetensors", metadata={"format": "pt"})
    for f in src.iterdir():
        if f.name != "model.safetensors":
            shutil.copy(f, dst / f.name)
    cfg = json.loads((src / "config.json").read_text())
    cfg["quantization_config"] = {"activation_scheme": "dynamic", "fmt": "e4m3", "quant_method": "fp8",
                                  "weight_block_size": [block, block]}
    (dst / "config.json").write_text(json.dumps(cfg, indent=2))


def mxfp4_experts(src, dst, seed=5):
    """dst: src (a GPT-OSS folder) with its experts as the hub ships them,
    MXFP4: per layer `mlp.experts.{gate_up,down}_proj_blocks` (uint8
    [experts, out rows, in / 32, 16], random codes) and `_scales` (uint8
    E8M0 exponents, 2^-8 .. 2^-4), the biases kept, and the config's
    quantization_config (quant_method mxfp4)."""
    from safetensors.torch import load_file, save_file
    dst.mkdir(parents=True, exist_ok=True)
    g = torch.Generator().manual_seed(seed)
    out = {}
    for k, w in load_file(src / "model.safetensors").items():
        if k.endswith(("mlp.experts.gate_up_proj", "mlp.experts.down_proj")):
            e, n_in, n_out = w.shape  # transformers' [experts, in, out]
            out[k + "_blocks"] = torch.randint(0, 256, (e, n_out, n_in // 32, 16), generator=g, dtype=torch.uint8)
            out[k + "_scales"] = torch.randint(119, 124, (e, n_out, n_in // 32), generator=g, dtype=torch.uint8)
        else:
            out[k] = w
    save_file(out, dst / "model.safetensors", metadata={"format": "pt"})
    for f in src.iterdir():
        if f.name != "model.safetensors":
            shutil.copy(f, dst / f.name)
    cfg = json.loads((src / "config.json").read_text())
    cfg["quantization_config"] = {"quant_method": "mxfp4", "modules_to_not_convert": [
        "model.layers.*.self_attn", "model.layers.*.mlp.router", "model.embed_tokens", "lm_head"]}
    (dst / "config.json").write_text(json.dumps(cfg, indent=2))


def bpe_only(folder, which, tokenizer_from):
    """Classes whose converter reads byte-level BPE only, BF16, 2 layers,
    with gpt2-bpe's tokenizer files: Qwen2-MoE (shared expert), Qwen3-MoE
    (q/k norms; both 8 experts of which 2 are used), OLMo 2, StarCoder2, OLMoE, Command-R, StableLM, Falcon (grouped QKV),
    DeepSeek-V2 (MLA without a Q low rank), DeepSeek-V3 (Q low rank, router bias, expert groups) and GPT-OSS
    (sinks, biases, 8 experts in transformers' float layout), EXAONE 4 (sliding-window pattern, Llama 3.1 rope), GLM-4 (GLM's <|user|> added)."""
    folder.mkdir(parents=True, exist_ok=True)
    import transformers as tf
    for f in ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"]:
        if (tokenizer_from / f).exists():
            shutil.copy(tokenizer_from / f, folder / f)
    moe = dict(moe_intermediate_size=256, num_experts=8, num_experts_per_tok=2, decoder_sparse_step=1, mlp_only_layers=[])
    config, model_class, extra = {
        "qwen2moe": (tf.Qwen2MoeConfig, tf.Qwen2MoeForCausalLM, dict(moe, shared_expert_intermediate_size=512)),
        "qwen3moe": (tf.Qwen3MoeConfig, tf.Qwen3MoeForCausalLM, dict(moe, head_dim=128)),
        "olmo2": (tf.Olmo2Config, tf.Olmo2ForCausalLM, {}),
        "starcoder2": (tf.Starcoder2Config, tf.Starcoder2ForCausalLM, dict(use_bias=True)),
        # OLMoE's k_norm spans n_embd in llama.cpp: no grouped KV heads.
        "olmoe": (tf.OlmoeConfig, tf.OlmoeForCausalLM, dict(num_experts=8, num_experts_per_tok=2, num_key_value_heads=2)),
        "cohere": (tf.CohereConfig, tf.CohereForCausalLM, dict(logit_scale=0.0625, tie_word_embeddings=True)),
        "stablelm": (tf.StableLmConfig, tf.StableLmForCausalLM, dict(use_parallel_residual=False)),
        "falcon": (tf.FalconConfig, tf.FalconForCausalLM,
                   dict(intermediate_size=None, num_attention_heads=4, num_key_value_heads=None, num_kv_heads=2,
                        new_decoder_architecture=True, parallel_attn=True, bias=False)),
        "glm4": (tf.Glm4Config, tf.Glm4ForCausalLM, dict(vocab_size=50258, head_dim=128)),
        "exaone4": (tf.Exaone4Config, tf.Exaone4ForCausalLM,
                    dict(num_hidden_layers=4, head_dim=128, sliding_window=128, sliding_window_pattern=4,
                         rope_parameters=dict(rope_type="llama3", rope_theta=1e6, factor=16.0, low_freq_factor=1.0,
                                              high_freq_factor=4.0, original_max_position_embeddings=512))),
        "gptoss": (tf.GptOssConfig, tf.GptOssForCausalLM,
                   dict(num_attention_heads=4, head_dim=64, num_local_experts=8, num_experts_per_tok=2,
                        sliding_window=128)),
        "deepseek2": (tf.DeepseekV2Config, tf.DeepseekV2ForCausalLM, dict(MLA, q_lora_rank=None)),
        "deepseek3": (tf.DeepseekV3Config, tf.DeepseekV3ForCausalLM,
                      dict(MLA, q_lora_rank=256, n_group=2, topk_group=1, scoring_func="sigmoid", norm_topk_prob=True,
                           routed_scaling_factor=2.5)),
    }[which]
    if which == "glm4":  # GLM's <|user|>, which its converter's special tokens need
        tok = json.loads((folder / "tokenizer.json").read_text())
        tok["added_tokens"].append({"id": 50257, "content": "<|user|>", "single_word": False, "lstrip": False,
                                    "rstrip": False, "normalized": False, "special": True})
        (folder / "tokenizer.json").write_text(json.dumps(tok, ensure_ascii=False))
    torch.manual_seed(9)
    base = dict(vocab_size=50257, hidden_size=256, intermediate_size=512, num_hidden_layers=2, num_attention_heads=2,
                num_key_value_heads=1, max_position_embeddings=4096, bos_token_id=50256, eos_token_id=50256,
                pad_token_id=50256, tie_word_embeddings=False)
    cfg = config(**{k: v for k, v in {**base, **extra}.items() if v is not None})  # None: a key the class lacks
    model = model_class(cfg).to(torch.bfloat16)
    norms_uniform(model, 0.5, 1.5)
    model.save_pretrained(folder, safe_serialization=True)


def tiny_spm(folder, tokenizer_class):
    """fixtures/hf's trained SentencePiece model and a tokenizer config for it."""
    shutil.copy(Path(__file__).resolve().parents[2] / "fixtures/hf/tiny-llama/tokenizer.model", folder)
    (folder / "tokenizer_config.json").write_text(json.dumps({
        "add_bos_token": True, "add_eos_token": False, "bos_token": "<s>", "eos_token": "</s>",
        "unk_token": "<unk>", "pad_token": "<unk>", "tokenizer_class": tokenizer_class}, indent=2))


def gemma2_spm(folder, dtype=torch.bfloat16):
    folder.mkdir(parents=True, exist_ok=True)
    from transformers import Gemma2Config, Gemma2ForCausalLM
    tiny_spm(folder, "GemmaTokenizer")
    torch.manual_seed(5)
    cfg = Gemma2Config(vocab_size=512, hidden_size=256, intermediate_size=256, num_hidden_layers=2,
                       num_attention_heads=2, num_key_value_heads=1, head_dim=128, max_position_embeddings=512,
                       sliding_window=128, bos_token_id=1, eos_token_id=2, pad_token_id=0)
    model = Gemma2ForCausalLM(cfg).to(dtype)
    norms_uniform(model, -0.5, 0.5)
    model.save_pretrained(folder, safe_serialization=True)


def gemma3_spm(folder):
    folder.mkdir(parents=True, exist_ok=True)
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig
    tiny_spm(folder, "GemmaTokenizer")
    torch.manual_seed(6)
    cfg = Gemma3TextConfig(vocab_size=512, hidden_size=256, intermediate_size=256, num_hidden_layers=2,
                           num_attention_heads=2, num_key_value_heads=1, head_dim=128, max_position_embeddings=1024,
                           sliding_window=128, bos_token_id=1, eos_token_id=2, pad_token_id=0)
    model = Gemma3ForCausalLM(cfg).to(torch.bfloat16)
    norms_uniform(model, -0.5, 0.5)
    model.save_pretrained(folder, safe_serialization=True)


def mixtral_spm(folder):
    folder.mkdir(parents=True, exist_ok=True)
    from transformers import MixtralConfig, MixtralForCausalLM
    tiny_spm(folder, "LlamaTokenizer")
    torch.manual_seed(8)
    cfg = MixtralConfig(vocab_size=512, hidden_size=256, intermediate_size=512, num_hidden_layers=2,
                        num_attention_heads=2, num_key_value_heads=1, num_local_experts=8, num_experts_per_tok=2,
                        max_position_embeddings=4096, bos_token_id=1, eos_token_id=2, tie_word_embeddings=False)
    model = MixtralForCausalLM(cfg).to(torch.bfloat16)
    norms_uniform(model, 0.5, 1.5)
    model.save_pretrained(folder, safe_serialization=True)


def llama_subclass_spm(folder, which):
    """SmolLM3ForCausalLM or GraniteForCausalLM (BF16, 2 layers, LlamaModel's subclasses), the SentencePiece model."""
    folder.mkdir(parents=True, exist_ok=True)
    import transformers as tf
    tiny_spm(folder, "LlamaTokenizer")
    torch.manual_seed(11)
    config, model_class, extra = {
        "smollm3": (tf.SmolLM3Config, tf.SmolLM3ForCausalLM, {}),
        "granite": (tf.GraniteConfig, tf.GraniteForCausalLM,
                    dict(embedding_multiplier=12.0, residual_multiplier=0.22, attention_multiplier=0.0078125,
                         logits_scaling=8.0)),
    }[which]
    cfg = config(vocab_size=512, hidden_size=256, intermediate_size=512, num_hidden_layers=2, num_attention_heads=2,
                 num_key_value_heads=1, max_position_embeddings=4096, bos_token_id=1, eos_token_id=2, pad_token_id=0,
                 tie_word_embeddings=False, **extra)
    model = model_class(cfg).to(torch.bfloat16)
    norms_uniform(model, 0.5, 1.5)
    model.save_pretrained(folder, safe_serialization=True)


def phimoe_spm(folder):
    """PhimoeForCausalLM (BF16, 8 experts, 2 layers, LayerNorms), the SentencePiece model; config.json names
    the hub's class, PhiMoEForCausalLM, which the converter registers."""
    folder.mkdir(parents=True, exist_ok=True)
    from transformers import PhimoeConfig, PhimoeForCausalLM
    tiny_spm(folder, "LlamaTokenizer")
    torch.manual_seed(12)
    cfg = PhimoeConfig(vocab_size=512, hidden_size=256, intermediate_size=512, num_hidden_layers=2, num_attention_heads=2,
                       num_key_value_heads=1, num_local_experts=8, num_experts_per_tok=2, max_position_embeddings=4096,
                       original_max_position_embeddings=256, bos_token_id=1, eos_token_id=2, pad_token_id=0,
                       tie_word_embeddings=False, lm_head_bias=True,
                       attention_bias=True)  # llama.cpp's phimoe loads output and attention biases, as Phi-3.5-MoE has
    model = PhimoeForCausalLM(cfg).to(torch.bfloat16)
    norms_uniform(model, 0.5, 1.5)
    model.save_pretrained(folder, safe_serialization=True)
    c = json.loads((folder / "config.json").read_text())
    c["architectures"] = ["PhiMoEForCausalLM"]
    (folder / "config.json").write_text(json.dumps(c, indent=2))


def granite_moe_spm(folder):
    """GraniteMoeSharedForCausalLM (BF16, 8 fused experts and a fused shared MLP, 2 layers), the SentencePiece model."""
    folder.mkdir(parents=True, exist_ok=True)
    from transformers import GraniteMoeSharedConfig, GraniteMoeSharedForCausalLM
    tiny_spm(folder, "LlamaTokenizer")
    torch.manual_seed(10)
    cfg = GraniteMoeSharedConfig(vocab_size=512, hidden_size=256, intermediate_size=256, num_hidden_layers=2,
                                 num_attention_heads=2, num_key_value_heads=1, num_local_experts=8, num_experts_per_tok=2,
                                 shared_intermediate_size=512, max_position_embeddings=4096, bos_token_id=1, eos_token_id=2,
                                 pad_token_id=0, tie_word_embeddings=False, embedding_multiplier=12.0,
                                 residual_multiplier=0.22, attention_multiplier=0.0078125, logits_scaling=8.0)
    model = GraniteMoeSharedForCausalLM(cfg).to(torch.bfloat16)
    norms_uniform(model, 0.5, 1.5)
    model.save_pretrained(folder, safe_serialization=True)


def llama3_rope(folder):
    """Llama 3.1-style rope scaling (rope_type llama3): convert writes a rope_freqs tensor."""
    folder.mkdir(parents=True, exist_ok=True)
    from transformers import LlamaConfig, LlamaForCausalLM
    shutil.copy(Path(__file__).resolve().parents[2] / "fixtures/hf/tiny-llama/tokenizer.model", folder)
    torch.manual_seed(10)
    cfg = LlamaConfig(vocab_size=512, hidden_size=256, intermediate_size=256, num_hidden_layers=1,
                      num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=131072,
                      rope_parameters={"rope_type": "llama3", "rope_theta": 500000.0, "factor": 32.0,
                                       "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                                       "original_max_position_embeddings": 8192},
                      bos_token_id=1, eos_token_id=2, tie_word_embeddings=True)
    model = LlamaForCausalLM(cfg).to(torch.bfloat16)
    norms_uniform(model, 0.5, 1.5)
    model.save_pretrained(folder, safe_serialization=True)


def phi3_spm(folder, longrope):
    folder.mkdir(parents=True, exist_ok=True)
    from transformers import Phi3Config, Phi3ForCausalLM
    shutil.copy(Path(__file__).resolve().parents[2] / "fixtures/hf/tiny-llama/tokenizer.model", folder)
    (folder / "tokenizer_config.json").write_text(json.dumps({
        "add_bos_token": False, "add_eos_token": False, "bos_token": "<s>", "eos_token": "</s>",
        "unk_token": "<unk>", "pad_token": "<unk>", "tokenizer_class": "LlamaTokenizer",
        "added_tokens_decoder": {"0": {"content": "<unk>", "special": True}, "1": {"content": "<s>", "special": True},
                                 "2": {"content": "</s>", "special": False},
                                 # Phi-3's own added tokens past the SentencePiece model (ids 32000, 32007
                                 # there): llama.cpp's vocab loader looks <|endoftext|> up for any model
                                 # named phi3 and fails without it.
                                 "512": {"content": "<|endoftext|>", "special": True},
                                 "513": {"content": "<|end|>", "special": True}}}, indent=2))
    torch.manual_seed(8)
    head_dim = 128
    # Past the 512 pieces: the two added tokens, then [PAD514]… rows, as Phi-3's 32064 pads its 32011.
    kw = dict(vocab_size=520, hidden_size=256, intermediate_size=256, num_hidden_layers=2, num_attention_heads=2,
              num_key_value_heads=2, max_position_embeddings=1024, original_max_position_embeddings=256,
              bos_token_id=1, eos_token_id=2, pad_token_id=0, tie_word_embeddings=False)
    if longrope:
        g = torch.Generator().manual_seed(9)
        kw["rope_parameters"] = {"rope_type": "longrope", "rope_theta": 10000.0,
                                 "long_factor": (1 + torch.rand(head_dim // 2, generator=g) * 3).tolist(),
                                 "short_factor": (1 + torch.rand(head_dim // 2, generator=g) * 0.1).tolist()}
    model = Phi3ForCausalLM(Phi3Config(**kw))
    norms_uniform(model, 0.5, 1.5)
    model.save_pretrained(folder, safe_serialization=True)


def gemma3_multimodal(folder):
    """Gemma3ForConditionalGeneration: the text model under language_model,
    a SigLIP vision tower and projector that a text GGUF leaves out."""
    folder.mkdir(parents=True, exist_ok=True)
    from transformers import Gemma3Config, Gemma3ForConditionalGeneration, Gemma3TextConfig, SiglipVisionConfig
    tiny_spm(folder, "GemmaTokenizer")
    torch.manual_seed(11)
    text = Gemma3TextConfig(vocab_size=512, hidden_size=256, intermediate_size=256, num_hidden_layers=2,
                            num_attention_heads=2, num_key_value_heads=1, head_dim=128, max_position_embeddings=1024,
                            sliding_window=128, bos_token_id=1, eos_token_id=2, pad_token_id=0)
    vision = SiglipVisionConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=1, num_attention_heads=2,
                                image_size=32, patch_size=8)
    cfg = Gemma3Config(text_config=text, vision_config=vision, mm_tokens_per_image=4, image_token_index=3,
                       boi_token_index=4, eoi_token_index=5)
    model = Gemma3ForConditionalGeneration(cfg).to(torch.bfloat16)
    norms_uniform(model, -0.5, 0.5)
    model.save_pretrained(folder, safe_serialization=True)


def qwen3_bpe(folder, tokenizer_from):
    folder.mkdir(parents=True, exist_ok=True)
    from transformers import Qwen3Config, Qwen3ForCausalLM
    for f in ["tokenizer.json", "tokenizer_config.json", "chat_template.jinja"]:
        shutil.copy(tokenizer_from / f, folder / f)
    torch.manual_seed(3)
    cfg = Qwen3Config(vocab_size=151936, hidden_size=256, intermediate_size=512, num_hidden_layers=1,
                      num_attention_heads=2, num_key_value_heads=1, head_dim=128, max_position_embeddings=4096,
                      rms_norm_eps=1e-6, tie_word_embeddings=False, bos_token_id=151643, eos_token_id=151643)
    model = Qwen3ForCausalLM(cfg)
    norms_uniform(model, 0.5, 1.5)
    model.save_pretrained(folder, safe_serialization=True)


def qwen3_embedding(folder, tokenizer_from):
    """A Qwen3-Embedding-shaped sentence-transformers folder: the bare
    Qwen3Model (F32, 1 layer), last-token pooling, normalized, with
    qwen2-bpe's tokenizer."""
    from transformers import Qwen3Config, Qwen3Model
    from sentence_transformers import SentenceTransformer
    from sentence_transformers import models as st_models
    hf = folder / "hf"
    hf.mkdir(parents=True, exist_ok=True)
    for f in ["tokenizer.json", "tokenizer_config.json"]:
        shutil.copy(tokenizer_from / f, hf / f)
    torch.manual_seed(6)
    cfg = Qwen3Config(vocab_size=151936, hidden_size=128, intermediate_size=256, num_hidden_layers=1,
                      num_attention_heads=2, num_key_value_heads=1, head_dim=64, max_position_embeddings=4096,
                      rms_norm_eps=1e-6, bos_token_id=151643, eos_token_id=151643)
    model = Qwen3Model(cfg)
    norms_uniform(model, 0.5, 1.5)
    model.save_pretrained(hf, safe_serialization=True)
    word = st_models.Transformer(str(hf), max_seq_length=512)
    pool = st_models.Pooling(word.get_embedding_dimension(), pooling_mode="lasttoken")
    SentenceTransformer(modules=[word, pool, st_models.Normalize()]).save(str(folder))
    shutil.rmtree(hf)


def bert_wordpiece(folder, hidden=256, intermediate=1024, layers=2, heads=4, dtype=torch.float32):
    folder.mkdir(parents=True, exist_ok=True)
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from transformers import BertConfig, BertModel, BertTokenizerFast
    from sentence_transformers import SentenceTransformer
    from sentence_transformers import models as st_models
    r = vocab_gguf("bert-bge")
    tokens = r.fields["tokenizer.ggml.tokens"].contents()
    types = r.fields["tokenizer.ggml.token_type"].contents()
    vocab = {}
    for i, (t, ty) in enumerate(zip(tokens, types)):
        word = t if int(ty) == 3 else (t[1:] if t.startswith("\u2581") else "##" + t)
        vocab[word] = i
    tk = Tokenizer(models.WordPiece(vocab=vocab, unk_token="[UNK]", max_input_chars_per_word=100))
    tk.normalizer = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True, strip_accents=None,
                                               lowercase=True)
    tk.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tk.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])])
    tk.decoder = decoders.WordPiece(prefix="##")
    fast = BertTokenizerFast(tokenizer_object=tk, unk_token="[UNK]", sep_token="[SEP]", pad_token="[PAD]",
                             cls_token="[CLS]", mask_token="[MASK]", model_max_length=512)
    hf = folder / "hf"
    fast.save_pretrained(hf)
    torch.manual_seed(2)
    cfg = BertConfig(vocab_size=len(tokens), hidden_size=hidden, intermediate_size=intermediate,
                     num_hidden_layers=layers, num_attention_heads=heads, max_position_embeddings=512,
                     type_vocab_size=2, layer_norm_eps=1e-12, pad_token_id=0)
    BertModel(cfg, add_pooling_layer=True).to(dtype).save_pretrained(hf, safe_serialization=True)
    word = st_models.Transformer(str(hf), max_seq_length=512)
    pool = st_models.Pooling(word.get_embedding_dimension(), pooling_mode="mean")
    SentenceTransformer(modules=[word, pool]).save(str(folder))
    shutil.rmtree(hf)


def unigram_corpus():
    """Lines to train a tiny unigram model on: llama.cpp's tokenizer test
    inputs (several scripts) and the embedding check's sentences."""
    sep = "\n__ggml_vocab_test__\n"
    lines = []
    for name in ["bert-bge", "llama-spm", "phi-3", "command-r"]:
        lines += (LLAMA_CPP / "models" / f"ggml-vocab-{name}.gguf.inp").read_text(encoding="utf-8").split(sep)
    words = "the cat sits on the mat a quick brown fox jumps over lazy dog paris is capital of france".split()
    random.seed(3)
    lines += [" ".join(random.choice(words) for _ in range(12)) for _ in range(400)]
    return [l for l in lines if l.strip()]


def xlmr_unigram(folder, hidden=256, intermediate=1024, layers=2, heads=4, dtype=torch.float32):
    """XLMRobertaModel as a sentence-transformers folder (mean pooling) with
    a SentencePiece unigram model trained here (nmt_nfkc normalization, so
    it has a precompiled charsmap) as sentencepiece.bpe.model, and
    transformers' XLMRobertaTokenizer of it (fairseq's id offset)."""
    import sentencepiece as spm
    from transformers import XLMRobertaConfig, XLMRobertaModel, XLMRobertaTokenizer
    from sentence_transformers import SentenceTransformer
    from sentence_transformers import models as st_models
    folder.mkdir(parents=True, exist_ok=True)
    hf = folder / "hf"
    hf.mkdir(exist_ok=True)
    spm.SentencePieceTrainer.train(sentence_iterator=iter(unigram_corpus()), model_prefix=str(hf / "sp"),
                                   vocab_size=600, hard_vocab_limit=False, model_type="unigram", character_coverage=1.0,
                                   normalization_rule_name="nmt_nfkc", num_threads=1)
    (hf / "sp.model").rename(hf / "sentencepiece.bpe.model")
    (hf / "sp.vocab").unlink()
    # transformers 5 builds the tokenizer from the model file only through from_pretrained.
    (hf / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "XLMRobertaTokenizer",
                                                          "model_max_length": 512}))
    tok = XLMRobertaTokenizer.from_pretrained(hf)
    tok.save_pretrained(hf)
    torch.manual_seed(4)
    cfg = XLMRobertaConfig(vocab_size=len(tok), hidden_size=hidden, intermediate_size=intermediate,
                           num_hidden_layers=layers, num_attention_heads=heads, max_position_embeddings=514,
                           type_vocab_size=1, layer_norm_eps=1e-5, pad_token_id=1, bos_token_id=0, eos_token_id=2)
    XLMRobertaModel(cfg, add_pooling_layer=True).to(dtype).save_pretrained(hf, safe_serialization=True)
    word = st_models.Transformer(str(hf), max_seq_length=512)
    pool = st_models.Pooling(word.get_embedding_dimension(), pooling_mode="mean")
    SentenceTransformer(modules=[word, pool]).save(str(folder))
    shutil.copy(hf / "sentencepiece.bpe.model", folder)
    shutil.rmtree(hf)


def neox_tokenizer(olmo_pii=False):
    """GPT-NeoX-20B's byte-level BPE (the Pythia tokenizer) rebuilt from
    models/ggml-vocab-gpt-neox.gguf: its 50277 tokens (Pythia's [PAD…]
    rows are the converter's padding, not the tokenizer's), the runs of
    spaces as added (normalized, not special) tokens; the converter hashes
    it as `olmo`. `olmo_pii`: OLMo's variant, whose id 0 and 50277…50278
    are PII placeholders and <|endoftext|> 50279."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    r = vocab_gguf("gpt-neox")
    tokens = r.fields["tokenizer.ggml.tokens"].contents()
    types = [int(t) for t in r.fields["tokenizer.ggml.token_type"].contents()]
    merges = [tuple(m.split(" ")) for m in r.fields["tokenizer.ggml.merges"].contents()]
    n = 50277
    assert tokens[n - 1] == "  " and tokens[n].startswith("[PAD"), (tokens[n - 1], tokens[n])
    tokens, types = list(tokens[:n]), types[:n]
    if olmo_pii:
        tokens[0], types[0] = "|||IP_ADDRESS|||", 4
    tk = Tokenizer(models.BPE(vocab={t: i for i, t in enumerate(tokens)}, merges=merges, byte_fallback=False))
    tk.normalizer = normalizers.NFC()
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True)
    tk.decoder = decoders.ByteLevel()
    tk.post_processor = processors.ByteLevel(trim_offsets=False)
    tk.add_tokens([AddedToken(tokens[i], normalized=True, special=False) for i in range(n) if types[i] == 4])
    tk.add_special_tokens([AddedToken(tokens[i], normalized=False, special=True) for i in range(n) if types[i] == 3])
    if olmo_pii:
        tk.add_tokens([AddedToken(t, normalized=True, special=False)
                       for t in ["|||EMAIL_ADDRESS|||", "|||PHONE_NUMBER|||"]])
        tk.add_special_tokens([AddedToken("<|endoftext|>", normalized=False, special=True)])
    return tk


def gptneox_bpe(folder):
    """GPTNeoXForCausalLM (F16, as Pythia ships; parallel residual, a
    quarter of each head rotated) with the GPT-NeoX tokenizer, vocab padded
    to 50432 as Pythia's. config.json gains Pythia's `rotary_pct` (which
    transformers 5 folds into rope_parameters but the converter reads)."""
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM, PreTrainedTokenizerFast
    folder.mkdir(parents=True, exist_ok=True)
    tk = neox_tokenizer()
    PreTrainedTokenizerFast(tokenizer_object=tk, bos_token="<|endoftext|>", eos_token="<|endoftext|>",
                            unk_token="<|endoftext|>", model_max_length=2048).save_pretrained(folder)
    # Pythia's class, which the converter's pinned transformers 4 also reads.
    tc = json.loads((folder / "tokenizer_config.json").read_text())
    tc["tokenizer_class"] = "GPTNeoXTokenizerFast"
    (folder / "tokenizer_config.json").write_text(json.dumps(tc, indent=2))
    torch.manual_seed(11)
    cfg = GPTNeoXConfig(vocab_size=50432, hidden_size=256, intermediate_size=1024, num_hidden_layers=2,
                        num_attention_heads=4, max_position_embeddings=2048, layer_norm_eps=1e-5,
                        use_parallel_residual=True, tie_word_embeddings=False, bos_token_id=0, eos_token_id=0,
                        rope_parameters=dict(rope_type="default", rope_theta=10000.0, partial_rotary_factor=0.25))
    model = GPTNeoXForCausalLM(cfg).to(torch.float16)
    norms_uniform(model, 0.5, 1.5)
    model.save_pretrained(folder, safe_serialization=True)
    c = json.loads((folder / "config.json").read_text())
    c["rotary_pct"] = 0.25
    (folder / "config.json").write_text(json.dumps(c, indent=2))


def modernbert_bpe(folder):
    """ModernBertModel (F32, 3 layers: one global, two local) as a
    sentence-transformers folder (mean pooling) with ModernBERT's tokenizer
    rebuilt: GPT-NeoX's BPE with OLMo's PII tokens and ModernBERT's
    [UNK] [CLS] [SEP] [PAD] [MASK] (50280…50284) and [unusedN] up to 50368,
    `[CLS] $A [SEP]` added; the converter hashes it as `modern-bert`."""
    from tokenizers import AddedToken, processors
    from transformers import ModernBertConfig, ModernBertModel, PreTrainedTokenizerFast
    from sentence_transformers import SentenceTransformer
    from sentence_transformers import models as st_models
    folder.mkdir(parents=True, exist_ok=True)
    tk = neox_tokenizer(olmo_pii=True)
    tk.add_special_tokens([AddedToken(t, normalized=False, special=True)
                           for t in ["[UNK]", "[CLS]", "[SEP]", "[PAD]", "[MASK]"]])
    tk.add_tokens([AddedToken(f"[unused{i}]", normalized=True, special=False) for i in range(50368 - 50285)])
    assert tk.token_to_id("<|endoftext|>") == 50279 and tk.token_to_id("[CLS]") == 50281, tk.token_to_id("[CLS]")
    assert tk.get_vocab_size() == 50368, tk.get_vocab_size()
    tk.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B [SEP]", special_tokens=[("[CLS]", 50281), ("[SEP]", 50282)])
    fast = PreTrainedTokenizerFast(tokenizer_object=tk, unk_token="[UNK]", cls_token="[CLS]", sep_token="[SEP]",
                                   pad_token="[PAD]", mask_token="[MASK]", model_max_length=1024)
    hf = folder / "hf"
    fast.save_pretrained(hf)
    torch.manual_seed(12)
    cfg = ModernBertConfig(vocab_size=50368, hidden_size=256, intermediate_size=512, num_hidden_layers=3,
                           num_attention_heads=4, global_attn_every_n_layers=3, local_attention=128,
                           max_position_embeddings=1024, pad_token_id=50283, bos_token_id=50281,
                           eos_token_id=50282, cls_token_id=50281, sep_token_id=50282)
    model = ModernBertModel(cfg)
    norms_uniform(model, 0.5, 1.5)
    model.save_pretrained(hf, safe_serialization=True)
    word = st_models.Transformer(str(hf), max_seq_length=1024)
    pool = st_models.Pooling(word.get_embedding_dimension(), pooling_mode="mean")
    SentenceTransformer(modules=[word, pool]).save(str(folder))
    shutil.rmtree(hf)


if __name__ == "__main__":
    LLAMA_CPP, OUT = Path(sys.argv[1]), Path(sys.argv[2])
    OUT.mkdir(parents=True, exist_ok=True)
    llama_spm(torch.float32, OUT / "llama-spm")
    llama_spm(torch.bfloat16, OUT / "llama-spm-bf16")
    sharded_copies(OUT / "llama-spm", OUT / "llama-sharded", OUT / "llama-bin")
    qwen2_bpe(OUT / "qwen2-bpe")
    qwen3_bpe(OUT / "qwen3-bpe", OUT / "qwen2-bpe")
    gpt2_bpe(OUT / "gpt2-bpe")
    gemma2_spm(OUT / "gemma2-spm")
    gemma2_spm(OUT / "gemma2-spm-f16", torch.float16)
    gemma3_spm(OUT / "gemma3-spm")
    gemma3_multimodal(OUT / "gemma3-mm")
    llama3_rope(OUT / "llama3-rope")
    phi3_spm(OUT / "phi3-spm", False)
    phi3_spm(OUT / "phi3-longrope", True)
    bert_wordpiece(OUT / "bert-wordpiece")
    mixtral_spm(OUT / "mixtral-spm")
    granite_moe_spm(OUT / "granitemoe-spm")
    phimoe_spm(OUT / "phimoe-spm")
    llama_subclass_spm(OUT / "smollm3-spm", "smollm3")
    llama_subclass_spm(OUT / "granite-spm", "granite")
    bpe_only(OUT / "qwen2moe-bpe", "qwen2moe", OUT / "gpt2-bpe")
    bpe_only(OUT / "qwen3moe-bpe", "qwen3moe", OUT / "gpt2-bpe")
    bpe_only(OUT / "olmo2-bpe", "olmo2", OUT / "gpt2-bpe")
    bpe_only(OUT / "starcoder2-bpe", "starcoder2", OUT / "gpt2-bpe")
    bpe_only(OUT / "olmoe-bpe", "olmoe", OUT / "gpt2-bpe")
    bpe_only(OUT / "cohere-bpe", "cohere", OUT / "gpt2-bpe")
    bpe_only(OUT / "stablelm-bpe", "stablelm", OUT / "gpt2-bpe")
    bpe_only(OUT / "falcon-bpe", "falcon", OUT / "gpt2-bpe")
    bpe_only(OUT / "deepseek2-bpe", "deepseek2", OUT / "gpt2-bpe")
    bpe_only(OUT / "deepseek3-bpe", "deepseek3", OUT / "gpt2-bpe")
    fp8_blocks(OUT / "deepseek3-bpe", OUT / "deepseek3-fp8", 128)
    xlmr_unigram(OUT / "xlmr-unigram")
    qwen3_embedding(OUT / "qwen3-embedding", OUT / "qwen2-bpe")
    bpe_only(OUT / "gptoss-bpe", "gptoss", OUT / "gpt2-bpe")
    bpe_only(OUT / "exaone4-bpe", "exaone4", OUT / "gpt2-bpe")
    bpe_only(OUT / "glm4-bpe", "glm4", OUT / "gpt2-bpe")
    mxfp4_experts(OUT / "gptoss-bpe", OUT / "gptoss-mxfp4")
    gptneox_bpe(OUT / "gptneox-bpe")
    modernbert_bpe(OUT / "modernbert-bpe")
