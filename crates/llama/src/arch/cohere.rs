//! Command-R (CommandR2Model, for CohereForCausalLM): a TextModel whose
//! context length is `model_max_length` when the config has one (the
//! converter overrides `max_position_embeddings` with it), LayerNorms
//! without bias, tied embeddings, optional Q/K norms, then `logit_scale`
//! and rope scaling type `none`; byte-level BPE.

use super::tables::{DECODER, QK_NORM};
use super::{text_parameters, with_hparams, Architecture, Ctx, Table, Vocab};
use crate::export::{Export, Hparams};
use modelconv_ir::{Metadata, Result, Value};
use serde_json::{Map, Value as Json};

pub struct CommandR;

static EXPORT: Export = Export {
    extra: cohere_config,
    computed: has_qk_norm,
    ..Export::decoder("CohereForCausalLM", "cohere")
};

/// CohereConfig's names: the LayerNorm epsilon, the logit scale, Q/K
/// norms where the GGUF has them.
fn cohere_config(h: &Hparams, c: &mut Map<String, Json>) -> Result<()> {
    if let Some(eps) = h.float("attention.layer_norm_epsilon")? {
        c.insert("layer_norm_eps".into(), eps);
    }
    if let Some(scale) = h.float("logit_scale")? {
        c.insert("logit_scale".into(), scale);
    }
    Ok(())
}

/// Whether the GGUF's blocks have Q/K norms (Command-R+), as the config's
/// `use_qk_norm` (no tensor taken out: a `computed` hook that only looks).
fn has_qk_norm(model: &mut modelconv_ir::Model, _: &Hparams, c: &mut Map<String, Json>) -> Result<()> {
    let qk = model
        .tensors
        .iter()
        .any(|t| t.info.name.ends_with("attn_q_norm.weight"));
    c.insert("use_qk_norm".into(), Json::Bool(qk));
    Ok(())
}

impl Architecture for CommandR {
    fn hf_classes(&self) -> &'static [&'static str] {
        &["CohereForCausalLM"]
    }
    fn name(&self) -> &'static str {
        "command-r"
    }
    fn tables(&self) -> &'static [Table] {
        &[DECODER, QK_NORM]
    }
    fn vocab(&self) -> &'static [Vocab] {
        &[Vocab::Bpe]
    }
    fn export(&self) -> Option<&'static Export> {
        Some(&EXPORT)
    }
    fn set_gguf_parameters(&self, cx: &Ctx, md: &mut Metadata, ft: u32) -> Result<()> {
        let h = &cx.folder.hparams;
        let context = h.opt_uint(&["model_max_length", "max_position_embeddings"])?;
        with_hparams(
            cx,
            |map| {
                if let Some(c) = context {
                    map.insert("max_position_embeddings".into(), c.into());
                }
            },
            |cx| text_parameters(cx, self.name(), md, ft),
        )?;
        let scale = h
            .opt_f64(&["logit_scale"])?
            .ok_or_else(|| modelconv_ir::Error::invalid("config.json: Command-R needs logit_scale"))?;
        md.set(format!("{}.logit_scale", self.name()), Value::F32(scale as f32));
        md.set(
            format!("{}.rope.scaling.type", self.name()),
            Value::String("none".into()),
        );
        Ok(())
    }
}
