//! GPT-NeoX (GPTNeoXModel, for GPTNeoXForCausalLM: Pythia, Dolly v2):
//! its own hyper-parameter keys (context, width, blocks, FFN, the partial
//! rotary dimension, heads, parallel residual, LayerNorm epsilon; neither
//! KV heads nor a file type, which the reference class does not write),
//! and the fused QKV rows (weight and bias) regrouped from per-head
//! `[q, k, v]` to all Q, all K, all V (a row view); byte-level BPE.

use super::{mapped, put_u32, Architecture, Ctx, Held, Table, Vocab};
use crate::export::{common_config, ungather_rows, Export, Facts, Hparams};
use modelconv_ir::view::RowGather;
use modelconv_ir::{Error, Metadata, Result, Tensor, Value};
use serde_json::{json, Map, Value as Json};
use std::sync::Arc;

pub struct GptNeoX;

static EXPORT: Export = Export {
    config: gptneox_config,
    fix: qkv_back,
    ..Export::decoder("GPTNeoXForCausalLM", "gpt_neox")
};

/// GPTNeoXConfig from the GGUF: the rotated fraction is
/// `rope.dimension_count` over the head width (written both as
/// transformers 5 reads it and as `rotary_pct`).
fn gptneox_config(h: &Hparams, facts: &Facts) -> Result<Map<String, Json>> {
    let heads = h.uint("attention.head_count")?;
    let hidden = h.uint("embedding_length")?;
    let head_dim = (hidden / heads.max(1)).max(1);
    let fraction = h.uint("rope.dimension_count")? as f64 / head_dim as f64;
    let mut c = common_config(h, facts)?;
    c.insert("hidden_size".into(), json!(hidden));
    c.insert("intermediate_size".into(), json!(h.uint("feed_forward_length")?));
    c.insert("num_hidden_layers".into(), json!(h.uint("block_count")?));
    c.insert("num_attention_heads".into(), json!(heads));
    c.insert("max_position_embeddings".into(), json!(h.uint("context_length")?));
    let parallel = h.flag("gptneox.use_parallel_residual").unwrap_or(true);
    c.insert("use_parallel_residual".into(), json!(parallel));
    c.insert("attention_bias".into(), json!(facts.has_bias));
    c.insert("hidden_act".into(), json!("gelu"));
    if let Some(eps) = h.float("attention.layer_norm_epsilon")? {
        c.insert("layer_norm_eps".into(), eps);
    }
    let theta = h.float("rope.freq_base")?.unwrap_or(json!(10000.0));
    c.insert("rotary_pct".into(), json!(fraction));
    c.insert(
        "rope_parameters".into(),
        json!({"rope_type": "default", "rope_theta": theta, "partial_rotary_factor": fraction}),
    );
    Ok(c)
}

/// The fused QKV rows (weight and bias) regrouped back to per-head
/// `[q, k, v]`.
fn qkv_back(h: &Hparams, hf: &str, t: &mut Tensor) -> Result<()> {
    if !hf.contains(".query_key_value.") {
        return Ok(());
    }
    let rows = t.info.shape.first().copied().unwrap_or(0);
    let heads = h.uint("attention.head_count")?;
    ungather_rows(t, &qkv_rows(rows, heads).map_err(|e| e.for_tensor(hf))?)
}

const TENSORS: Table = &[
    ("gpt_neox.embed_in", "token_embd"),
    ("gpt_neox.final_layer_norm", "output_norm"),
    ("embed_out", "output"),
    ("gpt_neox.layers.{bid}.input_layernorm", "blk.{bid}.attn_norm"),
    ("gpt_neox.layers.{bid}.attention.query_key_value", "blk.{bid}.attn_qkv"),
    ("gpt_neox.layers.{bid}.attention.dense", "blk.{bid}.attn_output"),
    ("gpt_neox.layers.{bid}.post_attention_layernorm", "blk.{bid}.ffn_norm"),
    ("gpt_neox.layers.{bid}.mlp.dense_h_to_4h", "blk.{bid}.ffn_up"),
    ("gpt_neox.layers.{bid}.mlp.dense_4h_to_h", "blk.{bid}.ffn_down"),
];

impl Architecture for GptNeoX {
    fn hf_classes(&self) -> &'static [&'static str] {
        &["GPTNeoXForCausalLM"]
    }
    fn name(&self) -> &'static str {
        "gptneox"
    }
    fn tables(&self) -> &'static [Table] {
        &[TENSORS]
    }
    fn vocab(&self) -> &'static [Vocab] {
        &[Vocab::Bpe]
    }
    fn export(&self) -> Option<&'static Export> {
        Some(&EXPORT)
    }
    fn set_gguf_parameters(&self, cx: &Ctx, md: &mut Metadata, _file_type: u32) -> Result<()> {
        let style = NeoXStyle {
            arch: self.name(),
            class: "GPT-NeoX",
            rotary_fraction: rotary_fraction(cx)?,
            head_count_kv: None,
            eps_keys: &["layer_norm_eps"],
        };
        style.write(cx, md)
    }
    fn modify_tensors(&self, cx: &Ctx, hf: &str, t: Tensor, _: &mut Held) -> Result<Vec<Tensor>> {
        let mut t = mapped(cx, self, hf, t)?;
        if hf.contains("attention.query_key_value") {
            let heads = cx.folder.hparams.uint(&["num_attention_heads"])?;
            let rows = t.info.shape.first().copied().unwrap_or(0);
            let order = qkv_rows(rows, heads).map_err(|e| e.for_tensor(hf))?;
            let row_bytes = t.info.byte_len / rows.max(1);
            t.data = Arc::new(RowGather::new(t.data.clone(), row_bytes, order)?);
            t.location = None;
        }
        Ok(vec![t])
    }
}

/// The hyper-parameters GPT-NeoX's converter class writes, which
/// StableLM's repeats with KV heads between: context, width, blocks, FFN,
/// the partial rotary dimension, heads, parallel residual, LayerNorm
/// epsilon.
pub(super) struct NeoXStyle {
    pub arch: &'static str,
    /// For error messages.
    pub class: &'static str,
    pub rotary_fraction: f64,
    pub head_count_kv: Option<u64>,
    pub eps_keys: &'static [&'static str],
}

impl NeoXStyle {
    pub fn write(&self, cx: &Ctx, md: &mut Metadata) -> Result<()> {
        let (h, a) = (&cx.folder.hparams, self.arch);
        put_u32(md, a, "context_length", h.uint(&["max_position_embeddings"])?)?;
        let hidden = h.uint(&["hidden_size"])?;
        put_u32(md, a, "embedding_length", hidden)?;
        put_u32(md, a, "block_count", cx.block_count)?;
        put_u32(md, a, "feed_forward_length", h.uint(&["intermediate_size"])?)?;
        let heads = h.uint(&["num_attention_heads"])?;
        // Python's int(fraction * (hidden // heads)): truncation.
        let rope = (self.rotary_fraction * (hidden / heads.max(1)) as f64) as u64;
        put_u32(md, a, "rope.dimension_count", rope)?;
        put_u32(md, a, "attention.head_count", heads)?;
        if let Some(kv) = self.head_count_kv {
            put_u32(md, a, "attention.head_count_kv", kv)?;
        }
        let parallel = h
            .get("use_parallel_residual")
            .and_then(serde_json::Value::as_bool)
            .unwrap_or(true);
        md.set(format!("{a}.use_parallel_residual"), Value::Bool(parallel));
        let eps = h
            .opt_f64(self.eps_keys)?
            .ok_or_else(|| Error::invalid(format!("config.json: {} needs {}", self.class, self.eps_keys[0])))?;
        md.set(format!("{a}.attention.layer_norm_epsilon"), Value::F32(eps as f32));
        Ok(())
    }
}

/// The rotated fraction of each head: Pythia's `rotary_pct`, which the
/// reference reads; transformers 5 saves it as
/// `rope_parameters.partial_rotary_factor` only, where the reference fails
/// (KeyError) and this reads the same number from there.
fn rotary_fraction(cx: &Ctx) -> Result<f64> {
    let h = &cx.folder.hparams;
    if let Some(pct) = h.opt_f64(&["rotary_pct"])? {
        return Ok(pct);
    }
    crate::rope_parameters(h)
        .get("partial_rotary_factor")
        .and_then(serde_json::Value::as_f64)
        .ok_or_else(|| {
            Error::invalid("config.json: GPT-NeoX needs rotary_pct (or rope_parameters.partial_rotary_factor)")
        })
}

/// QKV rows stored per head as `[q, k, v]` (each `hidden / heads` rows),
/// in the order all Q heads, then all K, then all V, as
/// `reshape(n_head, 3, head_dim, …)` then concatenating the three slices.
fn qkv_rows(rows: u64, heads: u64) -> Result<Vec<u64>> {
    if heads == 0 || !rows.is_multiple_of(heads * 3) {
        return Err(Error::invalid(format!(
            "{rows} QKV rows do not split into {heads} heads of Q, K and V"
        )));
    }
    let d = rows / (heads * 3);
    let part = |p: u64| (0..heads).flat_map(move |head| (0..d).map(move |i| (head * 3 + p) * d + i));
    Ok(part(0).chain(part(1)).chain(part(2)).collect())
}

#[cfg(test)]
mod tests {
    use super::qkv_rows;

    #[test]
    fn qkv_rows_take_each_heads_slice_in_turn() {
        // Two heads of one row: [q0 k0 v0 q1 k1 v1] → [q0 q1 k0 k1 v0 v1].
        assert_eq!(qkv_rows(6, 2).ok(), Some(vec![0, 3, 1, 4, 2, 5]));
        assert!(qkv_rows(7, 2).is_err());
        assert!(qkv_rows(6, 0).is_err());
    }
}
