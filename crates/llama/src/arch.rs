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
    /// Byte-level BPE `tokenizer.json` → `gpt2`, with the pre-tokenizer name.
    Bpe,
    /// WordPiece `tokenizer.json` → `bert` (phantom-space tokens).
    WordPiece,
}

pub struct Arch {
    pub hf: &'static [&'static str],
    pub name: &'static str,
    pub tensors: &'static [(&'static str, &'static str)],
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
    /// The HF name as the table spells it (prefixes and old spellings
    /// removed), or `None` for a tensor the conversion drops.
    pub filter: fn(&str) -> Option<String>,
    /// Classes (the bare base model) whose tensor names lack the `model.`
    /// prefix the table is written with.
    pub bare: &'static [&'static str],
}

const LLAMA_TENSORS: &[(&str, &str)] = &[
    ("model.embed_tokens", "token_embd"),
    ("model.norm", "output_norm"),
    ("lm_head", "output"),
    ("model.layers.{bid}.input_layernorm", "blk.{bid}.attn_norm"),
    ("model.layers.{bid}.self_attn.q_proj", "blk.{bid}.attn_q"),
    ("model.layers.{bid}.self_attn.k_proj", "blk.{bid}.attn_k"),
    ("model.layers.{bid}.self_attn.v_proj", "blk.{bid}.attn_v"),
    ("model.layers.{bid}.self_attn.o_proj", "blk.{bid}.attn_output"),
    ("model.layers.{bid}.post_attention_layernorm", "blk.{bid}.ffn_norm"),
    ("model.layers.{bid}.mlp.gate_proj", "blk.{bid}.ffn_gate"),
    ("model.layers.{bid}.mlp.up_proj", "blk.{bid}.ffn_up"),
    ("model.layers.{bid}.mlp.down_proj", "blk.{bid}.ffn_down"),
];

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

const QWEN3_TENSORS: &[(&str, &str)] = &[
    ("model.embed_tokens", "token_embd"),
    ("model.norm", "output_norm"),
    ("lm_head", "output"),
    ("model.layers.{bid}.input_layernorm", "blk.{bid}.attn_norm"),
    ("model.layers.{bid}.self_attn.q_proj", "blk.{bid}.attn_q"),
    ("model.layers.{bid}.self_attn.k_proj", "blk.{bid}.attn_k"),
    ("model.layers.{bid}.self_attn.v_proj", "blk.{bid}.attn_v"),
    ("model.layers.{bid}.self_attn.o_proj", "blk.{bid}.attn_output"),
    ("model.layers.{bid}.self_attn.q_norm", "blk.{bid}.attn_q_norm"),
    ("model.layers.{bid}.self_attn.k_norm", "blk.{bid}.attn_k_norm"),
    ("model.layers.{bid}.post_attention_layernorm", "blk.{bid}.ffn_norm"),
    ("model.layers.{bid}.mlp.gate_proj", "blk.{bid}.ffn_gate"),
    ("model.layers.{bid}.mlp.up_proj", "blk.{bid}.ffn_up"),
    ("model.layers.{bid}.mlp.down_proj", "blk.{bid}.ffn_down"),
];

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
    let u = |md: &mut Metadata, key: &str, v: u64| -> Result<()> {
        md.set(format!("gpt2.{key}"), Value::U32(u32_of(key, v)?));
        Ok(())
    };
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

const GEMMA2_TENSORS: &[(&str, &str)] = &[
    ("model.embed_tokens", "token_embd"),
    ("model.norm", "output_norm"),
    ("model.layers.{bid}.input_layernorm", "blk.{bid}.attn_norm"),
    ("model.layers.{bid}.self_attn.q_proj", "blk.{bid}.attn_q"),
    ("model.layers.{bid}.self_attn.k_proj", "blk.{bid}.attn_k"),
    ("model.layers.{bid}.self_attn.v_proj", "blk.{bid}.attn_v"),
    ("model.layers.{bid}.self_attn.o_proj", "blk.{bid}.attn_output"),
    (
        "model.layers.{bid}.post_attention_layernorm",
        "blk.{bid}.post_attention_norm",
    ),
    ("model.layers.{bid}.pre_feedforward_layernorm", "blk.{bid}.ffn_norm"),
    (
        "model.layers.{bid}.post_feedforward_layernorm",
        "blk.{bid}.post_ffw_norm",
    ),
    ("model.layers.{bid}.mlp.gate_proj", "blk.{bid}.ffn_gate"),
    ("model.layers.{bid}.mlp.up_proj", "blk.{bid}.ffn_up"),
    ("model.layers.{bid}.mlp.down_proj", "blk.{bid}.ffn_down"),
];

/// Gemma 2's own hyper-parameter set (Gemma2Model.set_gguf_parameters).
fn gemma2_params(f: &Folder, md: &mut Metadata, ft: u32) -> Result<()> {
    let h = &f.hparams;
    let u = |md: &mut Metadata, key: &str, v: u64| -> Result<()> {
        md.set(format!("gemma2.{key}"), Value::U32(u32_of(key, v)?));
        Ok(())
    };
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

pub static ARCHES: &[Arch] = &[
    Arch {
        hf: &[
            "LlamaForCausalLM",
            "LLaMAForCausalLM",
            "MistralForCausalLM",
            "LlamaModel",
        ],
        name: "llama",
        tensors: LLAMA_TENSORS,
        transform: Transform::PermuteQk,
        vocab: &[Vocab::SentencePiece, Vocab::Bpe],
        params: llama_params,
        filter: |n| Some(n.replace("language_model.", "").replace("text_model.", "")),
        bare: &["LlamaModel"],
        own_params: false,
    },
    Arch {
        hf: &["Qwen2ForCausalLM", "Qwen2Model"],
        name: "qwen2",
        tensors: LLAMA_TENSORS,
        transform: Transform::None,
        vocab: &[Vocab::SentencePiece, Vocab::Bpe],
        params: pooling,
        filter: |n| Some(n.replace("language_model.", "")),
        bare: &["Qwen2Model"],
        own_params: false,
    },
    Arch {
        hf: &["Qwen3ForCausalLM", "Qwen3Model"],
        name: "qwen3",
        tensors: QWEN3_TENSORS,
        transform: Transform::None,
        vocab: &[Vocab::SentencePiece, Vocab::Bpe],
        params: pooling,
        filter: |n| Some(n.replace("language_model.", "")),
        bare: &["Qwen3Model"],
        own_params: false,
    },
    Arch {
        hf: &["BertModel", "BertForMaskedLM"],
        name: "bert",
        tensors: BERT_TENSORS,
        transform: Transform::None,
        vocab: &[Vocab::WordPiece],
        params: bert_params,
        filter: bert_filter,
        bare: &[],
        own_params: false,
    },
    Arch {
        hf: &["GPT2LMHeadModel"],
        name: "gpt2",
        tensors: GPT2_TENSORS,
        transform: Transform::Transpose(&[".c_attn.weight", ".c_proj.weight", ".c_fc.weight"]),
        vocab: &[Vocab::Bpe],
        params: gpt2_params,
        filter: |n| Some(n.replace("language_model.", "")),
        bare: &[],
        own_params: true,
    },
    Arch {
        hf: &["Gemma2ForCausalLM"],
        name: "gemma2",
        tensors: GEMMA2_TENSORS,
        transform: Transform::NormPlusOne,
        vocab: &[Vocab::SentencePieceNoSpacePrefix],
        params: gemma2_params,
        // lm_head is the embedding (tied); an extra copy (AWQ) is dropped.
        filter: |n| (n != "lm_head.weight").then(|| n.replace("language_model.", "")),
        bare: &[],
        own_params: true,
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
        let (_, to) = self.tensors.iter().find(|(from, _)| *from == key)?;
        let to = match bid {
            Some(i) => to.replace("{bid}", parts[i]),
            None => to.to_string(),
        };
        Some(to + suffix)
    }
}
