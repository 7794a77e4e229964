//! Gemma 2 (Gemma2ForCausalLM): its own hyper-parameter set, norms stored
//! as `w - 1`, the tied `lm_head` dropped.

use super::tables::{DECODER, GEMMA_NORMS};
use super::{mapped, norm_minus_one, norm_plus_one, put_u32, Architecture, Ctx, Held, Table, Vocab};
use crate::export::{Export, Hparams};
use modelconv_ir::{Error, Metadata, Result, Tensor, Value};
use serde_json::{Map, Value as Json};

pub struct Gemma2;

static EXPORT: Export = Export {
    extra: gemma2_config,
    fix: norm_minus_one,
    ..Export::decoder("Gemma2ForCausalLM", "gemma2")
};

/// Gemma2Config's own keys, as llama.cpp's gemma2.cpp reads the GGUF: the
/// soft caps where the file has them, the sliding window (4096 where it
/// has none), the query scale.
fn gemma2_config(h: &Hparams, c: &mut Map<String, Json>) -> Result<()> {
    gemma_config(h, c, 46)?;
    for key in ["attn_logit_softcapping", "final_logit_softcapping"] {
        if let Some(cap) = h.float(key)? {
            c.insert(key.into(), cap);
        }
    }
    c.insert(
        "sliding_window".into(),
        Json::from(h.opt_uint("attention.sliding_window")?.unwrap_or(4096)),
    );
    Ok(())
}

/// The keys Gemma 2 and 3 share: the tanh GELU, and
/// `query_pre_attn_scalar` from llama.cpp's `f_attention_scale` rule
/// (1/sqrt(head_dim), except the 27B model, identified by its block
/// count, which scales by 1/sqrt(hidden / heads)).
pub fn gemma_config(h: &Hparams, c: &mut Map<String, Json>, blocks_27b: u64) -> Result<()> {
    c.insert("hidden_activation".into(), Json::from("gelu_pytorch_tanh"));
    c.insert("hidden_act".into(), Json::from("gelu_pytorch_tanh"));
    let heads = h.uint("attention.head_count")?.max(1);
    let scalar = if h.uint("block_count")? == blocks_27b {
        h.uint("embedding_length")? / heads
    } else {
        match h.opt_uint("attention.key_length")? {
            Some(k) => k,
            None => h.uint("embedding_length")? / heads,
        }
    };
    c.insert("query_pre_attn_scalar".into(), Json::from(scalar));
    Ok(())
}

impl Architecture for Gemma2 {
    fn hf_classes(&self) -> &'static [&'static str] {
        &["Gemma2ForCausalLM"]
    }
    fn name(&self) -> &'static str {
        "gemma2"
    }
    fn tables(&self) -> &'static [Table] {
        &[DECODER, GEMMA_NORMS]
    }
    fn vocab(&self) -> &'static [Vocab] {
        &[Vocab::SentencePieceNoSpacePrefix]
    }
    /// lm_head is the embedding (tied); an extra copy (AWQ) is dropped.
    fn filter(&self, name: &str) -> Option<String> {
        (name != "lm_head.weight").then(|| name.replace("language_model.", ""))
    }
    /// Gemma2Model.set_gguf_parameters (not the text-model set).
    fn set_gguf_parameters(&self, cx: &Ctx, md: &mut Metadata, ft: u32) -> Result<()> {
        let h = &cx.folder.hparams;
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
    fn export(&self) -> Option<&'static Export> {
        Some(&EXPORT)
    }
    fn modify_tensors(&self, cx: &Ctx, hf: &str, t: Tensor, _: &mut Held) -> Result<Vec<Tensor>> {
        let mut t = mapped(cx, self, hf, t)?;
        norm_plus_one(hf, &mut t)?;
        Ok(vec![t])
    }
}
