//! GPT-2 (GPT2LMHeadModel): its own hyper-parameter set, and Conv1D
//! weights stored (in, out), transposed.

use super::{mapped, put_u32, transpose, Architecture, Ctx, Held, Table, Vocab};
use crate::export::{common_config, Export, Facts, Hparams};
use modelconv_ir::{Error, Metadata, Result, Tensor, Value};
use serde_json::{Map, Value as Json};

pub struct Gpt2;

static EXPORT: Export = Export {
    config: gpt2_config,
    fix: conv1d_back,
    ..Export::decoder("GPT2LMHeadModel", "gpt2")
};

/// GPT2Config from the GGUF: its own key names; `n_inner` only where the
/// FFN is not the default four times the width.
fn gpt2_config(h: &Hparams, facts: &Facts) -> Result<Map<String, Json>> {
    let mut c = common_config(h, facts)?;
    let n_embd = h.uint("embedding_length")?;
    let ctx = h.uint("context_length")?;
    c.insert("n_embd".into(), Json::from(n_embd));
    c.insert("n_layer".into(), Json::from(h.uint("block_count")?));
    c.insert("n_head".into(), Json::from(h.uint("attention.head_count")?));
    c.insert("n_ctx".into(), Json::from(ctx));
    c.insert("n_positions".into(), Json::from(ctx));
    let ff = h.uint("feed_forward_length")?;
    let inner = (ff != n_embd.saturating_mul(4)).then_some(ff);
    c.insert("n_inner".into(), inner.map_or(Json::Null, Json::from));
    c.insert("activation_function".into(), Json::from("gelu_new"));
    if let Some(eps) = h.float("attention.layer_norm_epsilon")? {
        c.insert("layer_norm_epsilon".into(), eps);
    }
    Ok(c)
}

/// The Conv1D weights transposed back to (in, out); a block-quantized one
/// dequantized first (a transpose moves single elements, which blocks
/// cannot), so it comes back F32.
fn conv1d_back(_: &Hparams, hf: &str, t: &mut Tensor) -> Result<()> {
    if !CONV1D.iter().any(|s| hf.ends_with(s)) {
        return Ok(());
    }
    crate::export::blocks_as_f32(t)?;
    transpose(t)
}

const TENSORS: Table = &[
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

/// The Conv1D weights (the others are stored as llama.cpp reads them).
const CONV1D: &[&str] = &[".c_attn.weight", ".c_proj.weight", ".c_fc.weight"];

impl Architecture for Gpt2 {
    fn hf_classes(&self) -> &'static [&'static str] {
        &["GPT2LMHeadModel"]
    }
    fn name(&self) -> &'static str {
        "gpt2"
    }
    fn tables(&self) -> &'static [Table] {
        &[TENSORS]
    }
    fn vocab(&self) -> &'static [Vocab] {
        &[Vocab::Bpe]
    }
    /// Its Conv1D weights are transposed, which B's rows cannot express
    /// (convert_lora_to_gguf.py writes pairs llama.cpp refuses to load).
    fn lora_follows_rows(&self) -> bool {
        false
    }
    fn export(&self) -> Option<&'static Export> {
        Some(&EXPORT)
    }
    /// GPT2Model.set_gguf_parameters (not the text-model set).
    fn set_gguf_parameters(&self, cx: &Ctx, md: &mut Metadata, ft: u32) -> Result<()> {
        let h = &cx.folder.hparams;
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
    fn modify_tensors(&self, cx: &Ctx, hf: &str, t: Tensor, _: &mut Held) -> Result<Vec<Tensor>> {
        let mut t = mapped(cx, self, hf, t)?;
        if CONV1D.iter().any(|s| hf.ends_with(s)) {
            transpose(&mut t)?;
        }
        Ok(vec![t])
    }
}
