//! GLM-4 (Glm4Model in conversion/glm.py): the decoder with Q/K/V biases,
//! a fused gate/up weight kept whole as `ffn_up`, norms after attention and
//! after the FFN, partial rotary (`rope.dimension_count` = head size ×
//! `partial_rotary_factor`, 0.5 by default); byte-level BPE with GLM's
//! special tokens. The M-RoPE variant (GLM-4V's text model) is refused.

use super::tables::{DECODER, FFN_NORM, LM_HEAD};
use super::{mapped, put_u32, text_parameters, Architecture, Ctx, Held, Table, Vocab};
use crate::export::{Export, Hparams};
use modelconv_ir::{Error, Metadata, Result, Tensor};
use serde_json::{Map, Value as Json};

pub struct Glm4;

static EXPORT: Export = Export {
    extra: glm4_config,
    ..Export::decoder("Glm4ForCausalLM", "glm4")
};

/// Glm4Config's partial rotary factor: `rope.dimension_count` over the
/// head width.
fn glm4_config(h: &Hparams, c: &mut Map<String, Json>) -> Result<()> {
    let head = match h.opt_uint("attention.key_length")? {
        Some(d) => d,
        None => h.uint("embedding_length")? / h.uint("attention.head_count")?.max(1),
    };
    let fraction = h.uint("rope.dimension_count")? as f64 / head.max(1) as f64;
    if let Some(Json::Object(rope)) = c.get_mut("rope_parameters") {
        rope.insert("partial_rotary_factor".into(), Json::from(fraction));
    }
    Ok(())
}

const GLM: Table = &[
    ("model.layers.{bid}.mlp.gate_up_proj", "blk.{bid}.ffn_up"),
    (
        "model.layers.{bid}.post_self_attn_layernorm",
        "blk.{bid}.post_attention_norm",
    ),
    ("model.layers.{bid}.post_mlp_layernorm", "blk.{bid}.post_ffw_norm"),
];

impl Architecture for Glm4 {
    fn hf_classes(&self) -> &'static [&'static str] {
        &["Glm4ForCausalLM"]
    }
    fn name(&self) -> &'static str {
        "glm4"
    }
    fn tables(&self) -> &'static [Table] {
        &[DECODER, LM_HEAD, FFN_NORM, GLM]
    }
    fn vocab(&self) -> &'static [Vocab] {
        &[Vocab::BpeGlm4]
    }
    fn export(&self) -> Option<&'static Export> {
        Some(&EXPORT)
    }
    fn set_gguf_parameters(&self, cx: &Ctx, md: &mut Metadata, ft: u32) -> Result<()> {
        text_parameters(cx, self.name(), md, ft)?;
        let h = &cx.folder.hparams;
        let head = match h.opt_uint(&["head_dim"])? {
            Some(d) => d,
            None => h.uint(&["hidden_size"])? / h.uint(&["num_attention_heads"])?.max(1),
        };
        let rope = crate::rope_parameters(h);
        let partial = rope.get("partial_rotary_factor").and_then(Json::as_f64).unwrap_or(0.5);
        // Python's int(): toward zero.
        put_u32(md, self.name(), "rope.dimension_count", (head as f64 * partial) as u64)
    }
    fn modify_tensors(&self, cx: &Ctx, hf: &str, t: Tensor, _: &mut Held) -> Result<Vec<Tensor>> {
        if crate::rope_parameters(&cx.folder.hparams).contains_key("mrope_section") {
            return Err(Error::unsupported(
                "config.json: GLM-4 with M-RoPE (mrope_section): its Q/K permutation is not converted by this build",
            ));
        }
        Ok(vec![mapped(cx, self, hf, t)?])
    }
}
