//! Gemma 3 (Gemma3ForCausalLM, and the text model of
//! Gemma3ForConditionalGeneration): Gemma's norms with Q/K norms, defaults
//! for what its configs leave out, embedding rows past the tokenizer's
//! last token dropped.

use super::gemma2::gemma_config;
use super::tables::{DECODER, GEMMA_NORMS, QK_NORM};
use super::{mapped, norm_minus_one, norm_plus_one, put_u32, text_parameters, Architecture, Ctx, Held, Table, Vocab};
use crate::export::{Export, Hparams};
use modelconv_ir::{Error, Metadata, Result, Tensor, Value};
use serde_json::{json, Map, Value as Json};

pub struct Gemma3;

static EXPORT: Export = Export {
    extra: gemma3_config,
    fix: norm_minus_one,
    ..Export::decoder("Gemma3ForCausalLM", "gemma3_text")
};

/// Gemma3TextConfig's own keys, as llama.cpp's gemma3.cpp reads the GGUF:
/// with a sliding window, every sixth layer full attention and the others
/// sliding with their own rope base (`rope.freq_base_swa`, 10000 where
/// absent); without one, every layer full; a linear rope scaling on the
/// full-attention layers only; the final soft cap where the file has one.
fn gemma3_config(h: &Hparams, c: &mut Map<String, Json>) -> Result<()> {
    gemma_config(h, c, 62)?;
    let blocks = h.uint("block_count")?;
    let window = h.opt_uint("attention.sliding_window")?.filter(|w| *w > 0);
    let pattern = h.opt_uint("attention.sliding_window_pattern")?.unwrap_or(6).max(1);
    let layers: Vec<Json> = (0..blocks)
        .map(|i| match window {
            Some(_) if (i + 1) % pattern != 0 => json!("sliding_attention"),
            _ => json!("full_attention"),
        })
        .collect();
    c.insert("layer_types".into(), Json::Array(layers));
    c.insert("sliding_window".into(), window.map_or(Json::Null, Json::from));
    let theta = h.float("rope.freq_base")?.unwrap_or(json!(1_000_000.0));
    let mut full = json!({"rope_type": "default", "rope_theta": theta});
    if h.get("rope.scaling.type").and_then(Value::as_str) == Some("linear") {
        if let Some(factor) = h.float("rope.scaling.factor")? {
            full = json!({"rope_type": "linear", "factor": factor, "rope_theta": theta});
        }
    }
    let swa_theta = h.float("rope.freq_base_swa")?.unwrap_or(json!(10000.0));
    c.insert(
        "rope_parameters".into(),
        json!({"full_attention": full, "sliding_attention": {"rope_type": "default", "rope_theta": swa_theta}}),
    );
    c.remove("rope_theta");
    if let Some(cap) = h.float("final_logit_softcapping")? {
        c.insert("final_logit_softcapping".into(), cap);
    }
    Ok(())
}

impl Architecture for Gemma3 {
    fn hf_classes(&self) -> &'static [&'static str] {
        &["Gemma3ForCausalLM", "Gemma3ForConditionalGeneration"]
    }
    fn name(&self) -> &'static str {
        "gemma3"
    }
    fn tables(&self) -> &'static [Table] {
        &[DECODER, GEMMA_NORMS, QK_NORM]
    }
    fn vocab(&self) -> &'static [Vocab] {
        &[Vocab::SentencePieceNoSpacePrefix, Vocab::Bpe]
    }
    /// The text-model set, then Gemma3Model.set_gguf_parameters' keys.
    fn set_gguf_parameters(&self, cx: &Ctx, md: &mut Metadata, ft: u32) -> Result<()> {
        text_parameters(cx, self.name(), md, ft)?;
        let h = &cx.folder.hparams;
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
    fn export(&self) -> Option<&'static Export> {
        Some(&EXPORT)
    }
    fn modify_tensors(&self, cx: &Ctx, hf: &str, t: Tensor, _: &mut Held) -> Result<Vec<Tensor>> {
        let mut t = mapped(cx, self, hf, t)?;
        norm_plus_one(hf, &mut t)?;
        if hf.ends_with("embed_tokens.weight") {
            crate::trim_rows(cx.folder, &mut t)?;
        }
        Ok(vec![t])
    }
}
