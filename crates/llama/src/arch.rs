//! One table per architecture: the Hugging Face class names it covers, the
//! GGUF architecture name, tensor names (HF stem → GGUF stem; `{bid}` is
//! the block number, `.weight`/`.bias` carried over), the weight transform
//! and the architecture's own hyper-parameter keys. Adding an architecture
//! is adding one `Arch` value to [`ARCHES`].

use crate::config::{read_json, u32_of};
use crate::Folder;
use modelconv_ir::Error;
use modelconv_ir::{Metadata, Result, Value};
use serde_json::Value as Json;

/// Sets `{arch}.{key}` to `v` as a u32, refusing what does not fit.
pub fn put_u32(md: &mut Metadata, arch: &str, key: &str, v: u64) -> Result<()> {
    md.set(format!("{arch}.{key}"), Value::U32(u32_of(key, v)?));
    Ok(())
}

/// A tensor the conversion computes: its GGUF name and F32 values.
pub type Computed = (String, Vec<f32>);

/// How an architecture's weights differ from what llama.cpp expects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transform {
    None,
    /// LLaMA's rotary layout: Q and K rows permuted per head (HF stores
    /// the two rotary halves apart, llama.cpp interleaved).
    PermuteQk,
    /// GPT-2's Conv1D weights are stored (in, out): transposed, for the
    /// tensors whose names end so.
    Transpose(&'static [&'static str]),
    /// Gemma: norm weights stored as `w - 1`, written as `w`.
    NormPlusOne,
}

/// How the vocabulary is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Vocab {
    /// SentencePiece `tokenizer.model` → `llama`.
    SentencePiece,
    /// The same, then `add_space_prefix = false` (Gemma).
    SentencePieceNoSpacePrefix,
    /// Phi-3's reading of a SentencePiece model: added tokens from the
    /// tokenizer config and tokenizer.json marked user-defined (control when
    /// special); a `GPT2Tokenizer` class means byte-level BPE instead (Phi-4).
    Phi3,
    /// Byte-level BPE `tokenizer.json` → `gpt2`, with the pre-tokenizer name.
    Bpe,
    /// WordPiece `tokenizer.json` → `bert` (phantom-space tokens).
    WordPiece,
}

pub struct Arch {
    /// The Hugging Face classes (config.json `architectures`) it covers.
    pub hf: &'static [&'static str],
    /// llama.cpp's architecture name (`general.architecture`).
    pub name: &'static str,
    /// HF stem → GGUF stem tables, combined from shared fragments.
    pub tensors: &'static [&'static [(&'static str, &'static str)]],
    pub transform: Transform,
    /// Tokenizers tried in order; the first whose file is present is used.
    pub vocab: &'static [Vocab],
    /// Keys written after the common ones and `general.file_type`; or,
    /// with `own_params`, every hyper-parameter key and `general.file_type`
    /// (its id is the third argument) where the architecture puts it.
    pub params: fn(&Folder, &mut Metadata, u32) -> Result<()>,
    /// The architecture writes its hyper-parameters itself instead of the
    /// common text-model set.
    pub own_params: bool,
    /// Embedding rows past the tokenizer's tokens are dropped (Gemma 3).
    pub trim_embeddings: bool,
    /// Tensors the conversion computes (F32, 1-D, written first), and the
    /// keys that come with them (written right after the architecture).
    pub extra: fn(&Folder, &mut Metadata) -> Result<Vec<Computed>>,
    /// The HF name as the table spells it (prefixes and old spellings
    /// removed), or `None` for a tensor the conversion drops.
    pub filter: fn(&str) -> Option<String>,
    /// Classes (the bare base model) whose tensor names lack the `model.`
    /// prefix the table is written with.
    pub bare: &'static [&'static str],
}

fn llama_params(f: &Folder, md: &mut Metadata, _: u32) -> Result<()> {
    let h = &f.hparams;
    md.set(
        "llama.vocab_size",
        Value::U32(u32_of("vocab_size", h.uint(&["vocab_size"])?)?),
    );
    let rope_dim = match h.opt_uint(&["head_dim"])? {
        Some(d) => d,
        None => {
            let heads = h.uint(&["num_attention_heads"])?.max(1);
            h.uint(&["hidden_size"])? / heads
        }
    };
    md.set("llama.rope.dimension_count", Value::U32(u32_of("head_dim", rope_dim)?));
    Ok(())
}

/// `pooling_type` from a sentence-transformers `modules.json` pooling
/// module, when there is one (`_try_set_pooling_type`).
fn pooling(f: &Folder, md: &mut Metadata, _: u32) -> Result<()> {
    let Some(Json::Array(modules)) = read_json(&f.dir.join("modules.json"))? else {
        return Ok(());
    };
    let Some(path) = modules
        .iter()
        .find(|m| {
            m.get("type")
                .and_then(Json::as_str)
                .is_some_and(|t| t.ends_with("Pooling"))
        })
        .and_then(|m| m.get("path").and_then(Json::as_str))
    else {
        return Ok(());
    };
    let cfg_path = f.dir.join(path).join("config.json");
    let cfg = read_json(&cfg_path)?.unwrap_or(Json::Null);
    let on = |k: &str| cfg.get(k).and_then(Json::as_bool).unwrap_or(false);
    // llama.cpp's pooling types: 1 mean, 2 cls, 3 last.
    let ty = if on("pooling_mode_mean_tokens") {
        1
    } else if on("pooling_mode_cls_token") {
        2
    } else if on("pooling_mode_lasttoken") {
        3
    } else {
        match cfg.get("pooling_mode").and_then(Json::as_str) {
            Some("mean") => 1,
            Some("cls") => 2,
            Some("lasttoken") => 3,
            _ => {
                return Err(Error::unsupported(format!(
                    "{}: only mean, cls and last-token pooling are supported",
                    cfg_path.display()
                )))
            }
        }
    };
    md.set(format!("{}.pooling_type", f.arch.name), Value::U32(ty));
    Ok(())
}

/// Tensor-name tables, in fragments the architectures combine.
const DECODER: &[(&str, &str)] = &[
    ("model.embed_tokens", "token_embd"),
    ("model.norm", "output_norm"),
    ("model.layers.{bid}.input_layernorm", "blk.{bid}.attn_norm"),
    ("model.layers.{bid}.self_attn.q_proj", "blk.{bid}.attn_q"),
    ("model.layers.{bid}.self_attn.k_proj", "blk.{bid}.attn_k"),
    ("model.layers.{bid}.self_attn.v_proj", "blk.{bid}.attn_v"),
    ("model.layers.{bid}.self_attn.o_proj", "blk.{bid}.attn_output"),
    ("model.layers.{bid}.mlp.gate_proj", "blk.{bid}.ffn_gate"),
    ("model.layers.{bid}.mlp.up_proj", "blk.{bid}.ffn_up"),
    ("model.layers.{bid}.mlp.down_proj", "blk.{bid}.ffn_down"),
];
const LM_HEAD: &[(&str, &str)] = &[("lm_head", "output")];
const FFN_NORM: &[(&str, &str)] = &[("model.layers.{bid}.post_attention_layernorm", "blk.{bid}.ffn_norm")];
const QK_NORM: &[(&str, &str)] = &[
    ("model.layers.{bid}.self_attn.q_norm", "blk.{bid}.attn_q_norm"),
    ("model.layers.{bid}.self_attn.k_norm", "blk.{bid}.attn_k_norm"),
];
/// Gemma's four norms per block.
const GEMMA_NORMS: &[(&str, &str)] = &[
    (
        "model.layers.{bid}.post_attention_layernorm",
        "blk.{bid}.post_attention_norm",
    ),
    ("model.layers.{bid}.pre_feedforward_layernorm", "blk.{bid}.ffn_norm"),
    (
        "model.layers.{bid}.post_feedforward_layernorm",
        "blk.{bid}.post_ffw_norm",
    ),
];

const BERT_TENSORS: &[(&str, &str)] = &[
    ("embeddings.word_embeddings", "token_embd"),
    ("embeddings.position_embeddings", "position_embd"),
    ("embeddings.token_type_embeddings", "token_types"),
    ("embeddings.LayerNorm", "token_embd_norm"),
    ("encoder.layer.{bid}.attention.self.query", "blk.{bid}.attn_q"),
    ("encoder.layer.{bid}.attention.self.key", "blk.{bid}.attn_k"),
    ("encoder.layer.{bid}.attention.self.value", "blk.{bid}.attn_v"),
    ("encoder.layer.{bid}.attention.output.dense", "blk.{bid}.attn_output"),
    (
        "encoder.layer.{bid}.attention.output.LayerNorm",
        "blk.{bid}.attn_output_norm",
    ),
    ("encoder.layer.{bid}.intermediate.dense", "blk.{bid}.ffn_up"),
    ("encoder.layer.{bid}.output.dense", "blk.{bid}.ffn_down"),
    ("encoder.layer.{bid}.output.LayerNorm", "blk.{bid}.layer_output_norm"),
];

/// BERT names: `bert.` prefix off, TF-era `gamma`/`beta` renamed, the
/// pooler and pre-training heads dropped (embeddings only).
fn bert_filter(name: &str) -> Option<String> {
    let mut n = name.strip_prefix("bert.").unwrap_or(name).to_string();
    if let Some(stem) = n.strip_suffix(".gamma") {
        n = format!("{stem}.weight");
    } else if let Some(stem) = n.strip_suffix(".beta") {
        n = format!("{stem}.bias");
    }
    let dropped = matches!(
        n.as_str(),
        "embeddings.position_ids" | "pooler.dense.weight" | "pooler.dense.bias"
    ) || n.starts_with("cls.predictions")
        || n.starts_with("cls.seq_relationship");
    (!dropped).then(|| n.replace("language_model.", ""))
}

fn bert_params(f: &Folder, md: &mut Metadata, ft: u32) -> Result<()> {
    md.set("bert.attention.causal", Value::Bool(false));
    pooling(f, md, ft)
}

const GPT2_TENSORS: &[(&str, &str)] = &[
    ("transformer.wte", "token_embd"),
    ("transformer.wpe", "position_embd"),
    ("transformer.ln_f", "output_norm"),
    ("lm_head", "output"),
    ("transformer.h.{bid}.ln_1", "blk.{bid}.attn_norm"),
    ("transformer.h.{bid}.attn.c_attn", "blk.{bid}.attn_qkv"),
    ("transformer.h.{bid}.attn.c_proj", "blk.{bid}.attn_output"),
    ("transformer.h.{bid}.ln_2", "blk.{bid}.ffn_norm"),
    ("transformer.h.{bid}.mlp.c_fc", "blk.{bid}.ffn_up"),
    ("transformer.h.{bid}.mlp.c_proj", "blk.{bid}.ffn_down"),
];

/// GPT-2's own hyper-parameter set (GPT2Model.set_gguf_parameters).
fn gpt2_params(f: &Folder, md: &mut Metadata, ft: u32) -> Result<()> {
    let h = &f.hparams;
    let u = |md: &mut Metadata, key: &str, v: u64| put_u32(md, "gpt2", key, v);
    u(md, "block_count", h.uint(&["n_layer"])?)?;
    u(md, "context_length", h.uint(&["n_ctx"])?)?;
    let n_embd = h.uint(&["n_embd"])?;
    u(md, "embedding_length", n_embd)?;
    u(md, "feed_forward_length", n_embd.saturating_mul(4))?;
    u(md, "attention.head_count", h.uint(&["n_head"])?)?;
    let eps = h
        .opt_f64(&["layer_norm_epsilon"])?
        .ok_or_else(|| Error::invalid("config.json: layer_norm_epsilon is not given"))?;
    md.set("gpt2.attention.layer_norm_epsilon", Value::F32(eps as f32));
    md.set("general.file_type", Value::U32(ft));
    Ok(())
}

/// Gemma 3's keys over the common set (Gemma3Model.set_gguf_parameters:
/// defaults for what its configs leave out).
fn gemma3_params(f: &Folder, md: &mut Metadata, _: u32) -> Result<()> {
    let h = &f.hparams;
    let u = |md: &mut Metadata, key: &str, v: u64| put_u32(md, "gemma3", key, v);
    u(
        md,
        "context_length",
        h.opt_uint(&["max_position_embeddings"])?.unwrap_or(131072),
    )?;
    u(
        md,
        "attention.head_count",
        h.opt_uint(&["num_attention_heads"])?.unwrap_or(8),
    )?;
    let eps = h.opt_f64(&["rms_norm_eps"])?.unwrap_or(1e-6);
    md.set("gemma3.attention.layer_norm_rms_epsilon", Value::F32(eps as f32));
    let head_dim = h.opt_uint(&["head_dim"])?.unwrap_or(256);
    u(md, "attention.key_length", head_dim)?;
    u(md, "attention.value_length", head_dim)?;
    let rope = crate::rope_parameters(h);
    let full = rope.get("full_attention").and_then(Json::as_object).unwrap_or(&rope);
    let theta = full.get("rope_theta").and_then(Json::as_f64).unwrap_or(1_000_000.0);
    md.set("gemma3.rope.freq_base", Value::F32(theta as f32));
    if h.get("attn_logit_softcapping").is_some() {
        return Err(Error::unsupported("config.json: Gemma 3 with attn_logit_softcapping"));
    }
    if let Some(cap) = h.opt_f64(&["final_logit_softcapping"])?.filter(|c| *c != 0.0) {
        md.set("gemma3.final_logit_softcapping", Value::F32(cap as f32));
    }
    if h.get("sliding_window_pattern").and_then(Json::as_u64) != Some(1) {
        u(md, "attention.sliding_window", h.uint(&["sliding_window"])?)?;
    }
    u(
        md,
        "attention.head_count_kv",
        h.opt_uint(&["num_key_value_heads"])?.unwrap_or(4),
    )?;
    Ok(())
}

/// Gemma 2's own hyper-parameter set (Gemma2Model.set_gguf_parameters).
fn gemma2_params(f: &Folder, md: &mut Metadata, ft: u32) -> Result<()> {
    let h = &f.hparams;
    let u = |md: &mut Metadata, key: &str, v: u64| put_u32(md, "gemma2", key, v);
    let num = |k: &str| -> Result<f64> {
        h.opt_f64(&[k])?
            .ok_or_else(|| Error::invalid(format!("config.json: {k} is not given")))
    };
    u(md, "context_length", h.uint(&["max_position_embeddings"])?)?;
    u(md, "embedding_length", h.uint(&["hidden_size"])?)?;
    u(md, "block_count", h.uint(&["num_hidden_layers"])?)?;
    u(md, "feed_forward_length", h.uint(&["intermediate_size"])?)?;
    let heads = h.uint(&["num_attention_heads"])?;
    u(md, "attention.head_count", heads)?;
    u(
        md,
        "attention.head_count_kv",
        h.opt_uint(&["num_key_value_heads"])?.unwrap_or(heads),
    )?;
    md.set(
        "gemma2.attention.layer_norm_rms_epsilon",
        Value::F32(num("rms_norm_eps")? as f32),
    );
    let head_dim = h.uint(&["head_dim"])?;
    u(md, "attention.key_length", head_dim)?;
    u(md, "attention.value_length", head_dim)?;
    md.set("general.file_type", Value::U32(ft));
    md.set(
        "gemma2.attn_logit_softcapping",
        Value::F32(num("attn_logit_softcapping")? as f32),
    );
    md.set(
        "gemma2.final_logit_softcapping",
        Value::F32(num("final_logit_softcapping")? as f32),
    );
    u(md, "attention.sliding_window", h.uint(&["sliding_window"])?)?;
    Ok(())
}

fn no_extra(_: &Folder, _: &mut Metadata) -> Result<Vec<Computed>> {
    Ok(Vec::new())
}

/// Llama 3.1+'s `rope_type: llama3`: per rotary frequency a scaling
/// factor (`rope_freqs`), computed in f32 step by step as PyTorch does for
/// LlamaModel.generate_extra_tensors (scalars rounded to f32 first).
fn llama3_rope(f: &Folder, _: &mut Metadata) -> Result<Vec<Computed>> {
    let h = &f.hparams;
    let rope = crate::rope_parameters(h);
    let rope = rope
        .get("full_attention")
        .and_then(Json::as_object)
        .cloned()
        .unwrap_or(rope);
    let is_llama3 = rope
        .get("rope_type")
        .and_then(Json::as_str)
        .is_some_and(|t| t.eq_ignore_ascii_case("llama3"));
    if !is_llama3 {
        return Ok(Vec::new());
    }
    let num = |k: &str, d: f64| rope.get(k).and_then(Json::as_f64).unwrap_or(d);
    let base = num("rope_theta", 10000.0);
    let dim = match h.opt_uint(&["head_dim"])? {
        Some(d) => d,
        None => h.uint(&["hidden_size"])? / h.uint(&["num_attention_heads"])?.max(1),
    };
    if dim == 0 || dim > 1 << 16 {
        return Err(Error::invalid(format!(
            "config.json: rotary dimension {dim} for rope_freqs"
        )));
    }
    let factor = num("factor", 8.0);
    let low = num("low_freq_factor", 1.0);
    let high = num("high_freq_factor", 4.0);
    let old_ctx = num("original_max_position_embeddings", 8192.0);
    let (low_wavelen, high_wavelen) = (old_ctx / low, old_ctx / high);
    let f32_ = |x: f64| x as f32;
    let mut out = Vec::new();
    for i in (0..dim).step_by(2) {
        let e = i as f32 / dim as f32;
        let freq = 1.0f32 / f32_(base).powf(e);
        let wavelen = f32_(2.0 * std::f64::consts::PI) / freq;
        let v = if wavelen < f32_(high_wavelen) {
            1.0
        } else if wavelen > f32_(low_wavelen) {
            f32_(factor)
        } else {
            let smooth = (f32_(old_ctx) / wavelen - f32_(low)) / f32_(high - low);
            1.0f32 / ((1.0f32 - smooth) / f32_(factor) + smooth)
        };
        out.push(v);
    }
    Ok(vec![("rope_freqs.weight".into(), out)])
}

const PHI3_TENSORS: &[(&str, &str)] = &[
    ("model.embed_tokens", "token_embd"),
    ("model.norm", "output_norm"),
    ("lm_head", "output"),
    ("model.layers.{bid}.input_layernorm", "blk.{bid}.attn_norm"),
    ("model.layers.{bid}.self_attn.qkv_proj", "blk.{bid}.attn_qkv"),
    ("model.layers.{bid}.self_attn.o_proj", "blk.{bid}.attn_output"),
    ("model.layers.{bid}.post_attention_layernorm", "blk.{bid}.ffn_norm"),
    ("model.layers.{bid}.mlp.gate_up_proj", "blk.{bid}.ffn_up"),
    ("model.layers.{bid}.mlp.down_proj", "blk.{bid}.ffn_down"),
];

/// Phi-3's rotary dimensions: `partial_rotary_factor` of the width, per head.
fn phi3_rope(f: &Folder) -> Result<(serde_json::Map<String, Json>, u64, u64, u64)> {
    let h = &f.hparams;
    let rope = crate::rope_parameters(h);
    let n_embd = h.uint(&["hidden_size", "n_embd"])?;
    let n_head = h.uint(&["num_attention_heads", "n_head"])?.max(1);
    let pct = rope.get("partial_rotary_factor").and_then(Json::as_f64).unwrap_or(1.0);
    let rope_dims = (pct * n_embd as f64) as u64 / n_head;
    let orig = rope
        .get("original_max_position_embeddings")
        .and_then(Json::as_u64)
        .ok_or_else(|| Error::invalid("config.json: original_max_position_embeddings is not given"))?;
    Ok((rope, rope_dims, orig, n_head))
}

/// Phi-3's own hyper-parameter set (Phi3MiniModel.set_gguf_parameters).
fn phi3_params(f: &Folder, md: &mut Metadata, ft: u32) -> Result<()> {
    let h = &f.hparams;
    let (rope, rope_dims, orig, n_head) = phi3_rope(f)?;
    let u = |md: &mut Metadata, key: &str, v: u64| put_u32(md, "phi3", key, v);
    u(
        md,
        "context_length",
        h.uint(&["n_positions", "max_position_embeddings"])?,
    )?;
    u(md, "rope.scaling.original_context_length", orig)?;
    u(md, "embedding_length", h.uint(&["hidden_size", "n_embd"])?)?;
    u(md, "feed_forward_length", h.uint(&["intermediate_size"])?)?;
    u(
        md,
        "block_count",
        h.uint(&["n_layers", "num_hidden_layers", "n_layer", "num_layers"])?,
    )?;
    u(md, "attention.head_count", n_head)?;
    u(
        md,
        "attention.head_count_kv",
        h.uint(&["num_key_value_heads", "n_head_kv"])?,
    )?;
    let eps = h
        .opt_f64(&["rms_norm_eps"])?
        .ok_or_else(|| Error::invalid("config.json: rms_norm_eps is not given"))?;
    md.set("phi3.attention.layer_norm_rms_epsilon", Value::F32(eps as f32));
    u(md, "rope.dimension_count", rope_dims)?;
    let full = rope.get("full_attention").and_then(Json::as_object).unwrap_or(&rope);
    let theta = full
        .get("rope_theta")
        .and_then(Json::as_f64)
        .ok_or_else(|| Error::invalid("config.json: rope_theta is not given"))?;
    md.set("phi3.rope.freq_base", Value::F32(theta as f32));
    md.set("general.file_type", Value::U32(ft));
    u(
        md,
        "attention.sliding_window",
        h.opt_uint(&["sliding_window"])?.unwrap_or(0),
    )?;
    Ok(())
}

/// Phi-3's long-context rope factors, as tensors, and the attention factor.
fn phi3_extra(f: &Folder, md: &mut Metadata) -> Result<Vec<Computed>> {
    let (rope, rope_dims, orig, _) = phi3_rope(f)?;
    let floats = |k: &str| -> Option<Vec<f32>> {
        let a = rope.get(k)?.as_array()?;
        a.iter().map(|v| v.as_f64().map(|x| x as f32)).collect()
    };
    let Some(long) = floats("long_factor").filter(|l| !l.is_empty()) else {
        return Ok(Vec::new());
    };
    let max_pos = f.hparams.uint(&["n_positions", "max_position_embeddings"])? as f64;
    let scale = max_pos / orig as f64;
    let ty = rope
        .get("rope_type")
        .and_then(Json::as_str)
        .unwrap_or("")
        .to_lowercase();
    let attn = match ty.as_str() {
        "su" | "longrope" if scale > 1.0 => (1.0 + scale.ln() / (orig as f64).ln()).sqrt(),
        "yarn" if scale > 1.0 => 0.1 * scale.ln() + 1.0,
        "su" | "longrope" | "yarn" => 1.0,
        "" => return Err(Error::invalid("config.json: rope scaling without a type")),
        other => return Err(Error::unsupported(format!("config.json: rope scaling type {other}"))),
    };
    md.set("phi3.rope.scaling.attn_factor", Value::F32(attn as f32));
    let short =
        floats("short_factor").ok_or_else(|| Error::invalid("config.json: long_factor without short_factor"))?;
    if long.len() != short.len() || long.len() as u64 * 2 != rope_dims {
        return Err(Error::invalid(format!(
            "config.json: rope long and short factors must have {} entries (have {} and {})",
            rope_dims / 2,
            long.len(),
            short.len()
        )));
    }
    Ok(vec![
        ("rope_factors_long.weight".into(), long),
        ("rope_factors_short.weight".into(), short),
    ])
}

pub static ARCHES: &[Arch] = &[
    Arch {
        hf: &[
            "LlamaForCausalLM",
            "LLaMAForCausalLM",
            "MistralForCausalLM",
            "LlamaModel",
        ],
        name: "llama",
        tensors: &[DECODER, LM_HEAD, FFN_NORM],
        transform: Transform::PermuteQk,
        vocab: &[Vocab::SentencePiece, Vocab::Bpe],
        params: llama_params,
        filter: |n| Some(n.replace("language_model.", "").replace("text_model.", "")),
        bare: &["LlamaModel"],
        own_params: false,
        trim_embeddings: false,
        extra: llama3_rope,
    },
    Arch {
        hf: &["Qwen2ForCausalLM", "Qwen2Model"],
        name: "qwen2",
        tensors: &[DECODER, LM_HEAD, FFN_NORM],
        transform: Transform::None,
        vocab: &[Vocab::SentencePiece, Vocab::Bpe],
        params: pooling,
        filter: |n| Some(n.replace("language_model.", "")),
        bare: &["Qwen2Model"],
        own_params: false,
        trim_embeddings: false,
        extra: no_extra,
    },
    Arch {
        hf: &["Qwen3ForCausalLM", "Qwen3Model"],
        name: "qwen3",
        tensors: &[DECODER, LM_HEAD, FFN_NORM, QK_NORM],
        transform: Transform::None,
        vocab: &[Vocab::SentencePiece, Vocab::Bpe],
        params: pooling,
        filter: |n| Some(n.replace("language_model.", "")),
        bare: &["Qwen3Model"],
        own_params: false,
        trim_embeddings: false,
        extra: no_extra,
    },
    Arch {
        hf: &["BertModel", "BertForMaskedLM"],
        name: "bert",
        tensors: &[BERT_TENSORS],
        transform: Transform::None,
        vocab: &[Vocab::WordPiece],
        params: bert_params,
        filter: bert_filter,
        bare: &[],
        own_params: false,
        trim_embeddings: false,
        extra: no_extra,
    },
    Arch {
        hf: &["GPT2LMHeadModel"],
        name: "gpt2",
        tensors: &[GPT2_TENSORS],
        transform: Transform::Transpose(&[".c_attn.weight", ".c_proj.weight", ".c_fc.weight"]),
        vocab: &[Vocab::Bpe],
        params: gpt2_params,
        filter: |n| Some(n.replace("language_model.", "")),
        bare: &[],
        own_params: true,
        trim_embeddings: false,
        extra: no_extra,
    },
    Arch {
        hf: &["Gemma2ForCausalLM"],
        name: "gemma2",
        tensors: &[DECODER, GEMMA_NORMS],
        transform: Transform::NormPlusOne,
        vocab: &[Vocab::SentencePieceNoSpacePrefix],
        params: gemma2_params,
        // lm_head is the embedding (tied); an extra copy (AWQ) is dropped.
        filter: |n| (n != "lm_head.weight").then(|| n.replace("language_model.", "")),
        bare: &[],
        own_params: true,
        trim_embeddings: false,
        extra: no_extra,
    },
    Arch {
        hf: &["Phi3ForCausalLM"],
        name: "phi3",
        tensors: &[PHI3_TENSORS],
        transform: Transform::None,
        vocab: &[Vocab::Phi3],
        params: phi3_params,
        filter: |n| Some(n.replace("language_model.", "")),
        bare: &[],
        own_params: true,
        trim_embeddings: false,
        extra: phi3_extra,
    },
    Arch {
        hf: &["Gemma3ForCausalLM", "Gemma3ForConditionalGeneration"],
        name: "gemma3",
        tensors: &[DECODER, GEMMA_NORMS, QK_NORM],
        transform: Transform::NormPlusOne,
        vocab: &[Vocab::SentencePieceNoSpacePrefix, Vocab::Bpe],
        params: gemma3_params,
        filter: |n| Some(n.replace("language_model.", "")),
        bare: &[],
        own_params: false,
        trim_embeddings: true,
        extra: no_extra,
    },
];

/// The table for a Hugging Face architecture class.
pub fn find(hf: &str) -> Option<&'static Arch> {
    ARCHES.iter().find(|a| a.hf.contains(&hf))
}

/// Every class name supported, for error messages.
pub fn supported() -> Vec<&'static str> {
    ARCHES.iter().flat_map(|a| a.hf.iter().copied()).collect()
}

impl Arch {
    /// The GGUF name of HF tensor `name`, or `None` when it has no place.
    pub fn map(&self, name: &str) -> Option<String> {
        let (stem, suffix) = [".weight", ".bias"]
            .iter()
            .find_map(|s| name.strip_suffix(s).map(|stem| (stem, *s)))?;
        // The first all-digit part is the block number.
        let parts: Vec<&str> = stem.split('.').collect();
        let bid = parts
            .iter()
            .position(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
        let key = match bid {
            Some(i) => {
                let mut p = parts.clone();
                p[i] = "{bid}";
                p.join(".")
            }
            None => stem.to_string(),
        };
        let (_, to) = self
            .tensors
            .iter()
            .flat_map(|t| t.iter())
            .find(|(from, _)| *from == key)?;
        let to = match bid {
            Some(i) => to.replace("{bid}", parts[i]),
            None => to.to_string(),
        };
        Some(to + suffix)
    }
}
