//! Falcon (FalconModel, for FalconForCausalLM and RWForCausalLM): its own
//! keys (context fixed at 2048, the "jploski" QKV data layout, FFN 4 x
//! width, heads, KV heads, LayerNorm epsilon, file type), and the fused
//! QKV rows regrouped from per-KV-group `[q…, k, v]` to all Q, all K,
//! all V (a row view); byte-level BPE.

use super::{mapped, put_u32, Architecture, Ctx, Held, Table, Vocab};
use crate::export::{common_config, ungather_rows, Export, Facts, Hparams};
use modelconv_ir::view::RowGather;
use modelconv_ir::{Error, Metadata, Result, Tensor, TensorInfo, Value};
use serde_json::{json, Map, Value as Json};
use std::sync::Arc;

pub struct Falcon;

/// Falcon's layout back: the original decoder (one norm per block,
/// Falcon-7B) or the new one (`ln_attn` and `ln_mlp`, Falcon-40B/180B),
/// told apart as llama.cpp tells them, by `attn_norm_2`.
static EXPORT: Export = Export {
    config: falcon_config,
    fix: falcon_back,
    ..Export::decoder("FalconForCausalLM", "falcon")
};

/// FalconConfig from the GGUF. In the original decoder one KV head is
/// `multi_query` and as many as the heads is plain attention; other
/// counts exist only in the new decoder architecture.
fn falcon_config(h: &Hparams, facts: &Facts) -> Result<Map<String, Json>> {
    let (heads, kv) = gguf_heads(h)?;
    let new_arch = h.has_tensor(".attn_norm_2.");
    if !new_arch && kv != 1 && kv != heads {
        return Err(Error::invalid(format!(
            "Falcon with one norm per block and {kv} KV heads of {heads}: the original decoder has 1 or all"
        )));
    }
    let mut c = common_config(h, facts)?;
    c.insert("hidden_size".into(), json!(h.uint("embedding_length")?));
    c.insert("ffn_hidden_size".into(), json!(h.uint("feed_forward_length")?));
    c.insert("num_hidden_layers".into(), json!(h.uint("block_count")?));
    c.insert("num_attention_heads".into(), json!(heads));
    c.insert("num_kv_heads".into(), json!(kv));
    c.insert("multi_query".into(), json!(kv == 1 || new_arch));
    c.insert("new_decoder_architecture".into(), json!(new_arch));
    if new_arch {
        c.insert("num_ln_in_parallel_attn".into(), json!(2));
    }
    c.insert("parallel_attn".into(), json!(true));
    c.insert("alibi".into(), json!(false));
    c.insert("bias".into(), json!(facts.has_bias));
    c.insert("activation".into(), json!("gelu"));
    c.insert("max_position_embeddings".into(), json!(h.uint("context_length")?));
    if let Some(eps) = h.float("attention.layer_norm_epsilon")? {
        c.insert("layer_norm_epsilon".into(), eps);
    }
    let theta = h.float("rope.freq_base")?.unwrap_or(json!(10000.0));
    c.insert(
        "rope_parameters".into(),
        json!({"rope_type": "default", "rope_theta": theta}),
    );
    Ok(c)
}

fn gguf_heads(h: &Hparams) -> Result<(u64, u64)> {
    let heads = h.uint("attention.head_count")?;
    Ok((heads, h.opt_uint("attention.head_count_kv")?.unwrap_or(1)))
}

/// The fused QKV regrouped back ([`qkv_back`]); in the new decoder
/// `attn_norm` is `ln_mlp`, which the table, read backwards, gives the
/// original decoder's name.
fn falcon_back(h: &Hparams, hf: &str, t: &mut Tensor) -> Result<()> {
    if h.has_tensor(".attn_norm_2.") {
        if let Some((block, suffix)) = hf.split_once(".input_layernorm.") {
            t.info = TensorInfo::new(format!("{block}.ln_mlp.{suffix}"), t.info.dtype, t.info.shape.clone())?;
        }
    }
    qkv_back(h, hf, t)
}

/// The fused QKV rows (weight and bias) regrouped back from all Q, K, V
/// to Falcon's per-KV-group `[q…, k, v]`.
fn qkv_back(h: &Hparams, hf: &str, t: &mut Tensor) -> Result<()> {
    if !hf.contains(".query_key_value.") {
        return Ok(());
    }
    let (heads, kv) = gguf_heads(h)?;
    let rows = t.info.shape.first().copied().unwrap_or(0);
    ungather_rows(t, &jploski_rows(rows, heads, kv).map_err(|e| e.for_tensor(hf))?)
}

const TENSORS: Table = &[
    ("transformer.word_embeddings", "token_embd"),
    ("transformer.ln_f", "output_norm"),
    ("lm_head", "output"),
    ("transformer.h.{bid}.input_layernorm", "blk.{bid}.attn_norm"),
    // Falcon-40B's two norms, as gguf-py maps them (ln_mlp is attn_norm).
    ("transformer.h.{bid}.ln_mlp", "blk.{bid}.attn_norm"),
    ("transformer.h.{bid}.ln_attn", "blk.{bid}.attn_norm_2"),
    (
        "transformer.h.{bid}.self_attention.query_key_value",
        "blk.{bid}.attn_qkv",
    ),
    ("transformer.h.{bid}.self_attention.dense", "blk.{bid}.attn_output"),
    ("transformer.h.{bid}.mlp.dense_h_to_4h", "blk.{bid}.ffn_up"),
    ("transformer.h.{bid}.mlp.dense_4h_to_h", "blk.{bid}.ffn_down"),
];

impl Architecture for Falcon {
    fn hf_classes(&self) -> &'static [&'static str] {
        &["FalconForCausalLM", "RWForCausalLM"]
    }
    fn name(&self) -> &'static str {
        "falcon"
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
    fn set_gguf_parameters(&self, cx: &Ctx, md: &mut Metadata, ft: u32) -> Result<()> {
        let h = &cx.folder.hparams;
        let a = self.name();
        let (heads, kv) = heads(cx)?;
        put_u32(md, a, "context_length", 2048)?;
        md.set(format!("{a}.tensor_data_layout"), Value::String("jploski".into()));
        let hidden = h.uint(&["hidden_size"])?;
        put_u32(md, a, "embedding_length", hidden)?;
        put_u32(md, a, "feed_forward_length", hidden.saturating_mul(4))?;
        put_u32(md, a, "block_count", cx.block_count)?;
        put_u32(md, a, "attention.head_count", heads)?;
        put_u32(md, a, "attention.head_count_kv", kv)?;
        let eps = h
            .opt_f64(&["layer_norm_epsilon"])?
            .ok_or_else(|| Error::invalid("config.json: Falcon needs layer_norm_epsilon"))?;
        md.set(format!("{a}.attention.layer_norm_epsilon"), Value::F32(eps as f32));
        md.set("general.file_type", Value::U32(ft));
        Ok(())
    }
    fn modify_tensors(&self, cx: &Ctx, hf: &str, t: Tensor, _: &mut Held) -> Result<Vec<Tensor>> {
        let mut t = mapped(cx, self, hf, t)?;
        if hf.contains("query_key_value") {
            let (heads, kv) = heads(cx)?;
            let rows = t.info.shape.first().copied().unwrap_or(0);
            let order = jploski_rows(rows, heads, kv).map_err(|e| e.for_tensor(hf))?;
            let row_bytes = t.info.byte_len / rows.max(1);
            t.data = Arc::new(RowGather::new(t.data.clone(), row_bytes, order)?);
            t.location = None;
        }
        Ok(vec![t])
    }
}

/// Heads and KV heads as FalconModel reads them (old names too; one KV
/// head when none is given).
fn heads(cx: &Ctx) -> Result<(u64, u64)> {
    let h = &cx.folder.hparams;
    let heads = h.uint(&["num_attention_heads", "n_head"])?;
    let kv = h
        .opt_uint(&["num_kv_heads", "n_head_kv"])?
        .filter(|&n| n != 0)
        .unwrap_or(1);
    Ok((heads, kv))
}

/// QKV rows stored as `n_kv` groups of `heads / n_kv` query heads then one
/// key and one value head, in the order all Q, then K, then V (the
/// "jploski" layout llama.cpp's falcon reads).
fn jploski_rows(rows: u64, heads: u64, kv: u64) -> Result<Vec<u64>> {
    if heads == 0 || kv == 0 || !heads.is_multiple_of(kv) {
        return Err(Error::invalid(format!("{heads} heads in {kv} KV groups")));
    }
    let per = heads / kv + 2;
    if !rows.is_multiple_of(kv * per) {
        return Err(Error::invalid(format!(
            "{rows} QKV rows do not split into {kv} groups of {per} heads"
        )));
    }
    let d = rows / (kv * per);
    let head = |g: u64, j: u64| (0..d).map(move |i| (g * per + j) * d + i);
    let q = (0..kv).flat_map(|g| (0..per - 2).flat_map(move |j| head(g, j)));
    let k = (0..kv).flat_map(|g| head(g, per - 2));
    let v = (0..kv).flat_map(|g| head(g, per - 1));
    Ok(q.chain(k).chain(v).collect())
}
