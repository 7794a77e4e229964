//! StableLM (StableLMModel): its own hyper-parameter keys (not
//! TextModel's: context, width, blocks, FFN, the partial rotary
//! dimension, heads, parallel residual, LayerNorm epsilon, file type),
//! LayerNorms with biases; byte-level BPE. Per-head Q/K LayerNorms
//! (StableLM 2 12B) are refused: at the reference commit StableLMModel's
//! modify_tensors `return`s the stacked norms from a generator, so they
//! are dropped and its conversion fails ("Unprocessed norms").

use super::gptneox::NeoXStyle;
use super::tables::{DECODER, FFN_NORM, LM_HEAD};
use super::{mapped, Architecture, Ctx, Held, Table, Vocab};
use crate::export::{bias_named, Export, Hparams};
use modelconv_ir::{Error, Metadata, Result, Tensor, Value};
use serde_json::{Map, Value as Json};

pub struct StableLm;

static EXPORT: Export = Export {
    extra: stablelm_config,
    ..Export::decoder("StableLmForCausalLM", "stablelm")
};

/// StableLmConfig's names: the LayerNorm epsilon, the rotary fraction
/// (`rope.dimension_count` of a head), the parallel residual, the Q/K/V
/// biases; no per-head Q/K norms (refused on the way in).
fn stablelm_config(h: &Hparams, c: &mut Map<String, Json>) -> Result<()> {
    if let Some(eps) = h.float("attention.layer_norm_epsilon")? {
        c.insert("layer_norm_eps".into(), eps);
    }
    let head = c.get("head_dim").and_then(Json::as_u64).unwrap_or(1).max(1);
    let rotary = h.opt_uint("rope.dimension_count")?.unwrap_or(head);
    if let Some(Json::Object(rope)) = c.get_mut("rope_parameters") {
        rope.insert("partial_rotary_factor".into(), Json::from(rotary as f64 / head as f64));
    }
    let parallel = matches!(h.get("use_parallel_residual"), Some(Value::Bool(true)));
    c.insert("use_parallel_residual".into(), Json::Bool(parallel));
    bias_named(c, "use_qkv_bias");
    c.insert("qk_layernorm".into(), Json::Bool(false));
    Ok(())
}

impl Architecture for StableLm {
    fn hf_classes(&self) -> &'static [&'static str] {
        &["StableLmForCausalLM", "StableLMEpochForCausalLM"]
    }
    fn name(&self) -> &'static str {
        "stablelm"
    }
    fn tables(&self) -> &'static [Table] {
        &[DECODER, LM_HEAD, FFN_NORM]
    }
    fn vocab(&self) -> &'static [Vocab] {
        &[Vocab::Bpe]
    }
    fn export(&self) -> Option<&'static Export> {
        Some(&EXPORT)
    }
    fn set_gguf_parameters(&self, cx: &Ctx, md: &mut Metadata, ft: u32) -> Result<()> {
        let h = &cx.folder.hparams;
        let rotary_fraction = crate::rope_parameters(h)
            .get("partial_rotary_factor")
            .and_then(serde_json::Value::as_f64)
            .ok_or_else(|| Error::invalid("config.json: StableLM needs partial_rotary_factor"))?;
        let style = NeoXStyle {
            arch: self.name(),
            class: "StableLM",
            rotary_fraction,
            head_count_kv: Some(h.uint(&["num_key_value_heads"])?),
            eps_keys: &["layer_norm_eps", "norm_eps"],
        };
        style.write(cx, md)?;
        md.set("general.file_type", Value::U32(ft));
        Ok(())
    }
    fn modify_tensors(&self, cx: &Ctx, hf: &str, t: Tensor, _: &mut Held) -> Result<Vec<Tensor>> {
        if hf.contains("_layernorm.norms.") {
            return Err(Error::unsupported(format!(
                "tensor '{hf}': per-head Q/K LayerNorms; convert_hf_to_gguf.py at the reference commit fails on them too (\"Unprocessed norms\")"
            )));
        }
        Ok(vec![mapped(cx, self, hf, t)?])
    }
}
