//! Command-R (CommandR2Model, for CohereForCausalLM): a TextModel whose
//! context length is `model_max_length` when the config has one (the
//! converter overrides `max_position_embeddings` with it), LayerNorms
//! without bias, tied embeddings, optional Q/K norms, then `logit_scale`
//! and rope scaling type `none`; byte-level BPE.

use super::tables::{DECODER, QK_NORM};
use super::{text_parameters, with_hparams, Architecture, Ctx, Table, Vocab};
use modelconv_ir::{Metadata, Result, Value};

pub struct CommandR;

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
