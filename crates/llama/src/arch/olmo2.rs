//! OLMo 2 (Olmo2Model in convert_hf_to_gguf.py, a plain TextModel): the
//! decoder with Q/K norms and norms after attention and after the FFN
//! (none before them), and no Q/K permutation; byte-level BPE.

use super::tables::{DECODER, LM_HEAD, QK_NORM};
use super::{text_parameters, Architecture, Ctx, Table, Vocab};
use crate::export::Export;
use modelconv_ir::{Metadata, Result};

pub struct Olmo2;

/// The decoder's config keys are Olmo2Config's.
static EXPORT: Export = Export::decoder("Olmo2ForCausalLM", "olmo2");

/// The post-norms llama.cpp's olmo2 (and exaone4) names.
pub(super) const POST_NORMS: Table = &[
    (
        "model.layers.{bid}.post_attention_layernorm",
        "blk.{bid}.post_attention_norm",
    ),
    (
        "model.layers.{bid}.post_feedforward_layernorm",
        "blk.{bid}.post_ffw_norm",
    ),
];

impl Architecture for Olmo2 {
    fn hf_classes(&self) -> &'static [&'static str] {
        &["Olmo2ForCausalLM"]
    }
    fn name(&self) -> &'static str {
        "olmo2"
    }
    fn tables(&self) -> &'static [Table] {
        &[DECODER, LM_HEAD, QK_NORM, POST_NORMS]
    }
    fn vocab(&self) -> &'static [Vocab] {
        &[Vocab::Bpe]
    }
    fn export(&self) -> Option<&'static Export> {
        Some(&EXPORT)
    }
    /// TextModel's keys; a sliding window (OLMo 3) with its per-layer
    /// pattern is not converted yet.
    fn set_gguf_parameters(&self, cx: &Ctx, md: &mut Metadata, ft: u32) -> Result<()> {
        text_parameters(cx, self.name(), md, ft)?;
        if cx.folder.hparams.opt_uint(&["sliding_window"])?.is_some() {
            return Err(modelconv_ir::Error::unsupported(
                "an OLMo 3 sliding-window pattern (config.json sliding_window): not converted by this build",
            ));
        }
        Ok(())
    }
}
