//! Qwen2 and Qwen3 (Qwen2Model, Qwen3Model): the decoder tables as they
//! are (no Q/K permutation), Qwen3 with Q/K norms; embedding models carry
//! their sentence-transformers pooling. One conversion, two sets of names.

use super::tables::{with_model_prefix, DECODER, FFN_NORM, LM_HEAD, QK_NORM};
use super::{pooling, text_parameters, Architecture, Ctx, Table, Vocab};
use modelconv_ir::{Metadata, Result};

pub struct Qwen {
    classes: &'static [&'static str],
    name: &'static str,
    tables: &'static [Table],
    /// The bare base model, whose names lack `model.`.
    base: &'static str,
}

pub static QWEN2: Qwen = Qwen {
    classes: &["Qwen2ForCausalLM", "Qwen2Model"],
    name: "qwen2",
    tables: &[DECODER, LM_HEAD, FFN_NORM],
    base: "Qwen2Model",
};

pub static QWEN3: Qwen = Qwen {
    classes: &["Qwen3ForCausalLM", "Qwen3Model"],
    name: "qwen3",
    tables: &[DECODER, LM_HEAD, FFN_NORM, QK_NORM],
    base: "Qwen3Model",
};

impl Architecture for Qwen {
    fn hf_classes(&self) -> &'static [&'static str] {
        self.classes
    }
    fn name(&self) -> &'static str {
        self.name
    }
    fn tables(&self) -> &'static [Table] {
        self.tables
    }
    fn vocab(&self) -> &'static [Vocab] {
        &[Vocab::SentencePiece, Vocab::Bpe]
    }
    fn canonical(&self, hf_class: &str, name: String) -> String {
        with_model_prefix(&[self.base], hf_class, name)
    }
    fn set_gguf_parameters(&self, cx: &Ctx, md: &mut Metadata, ft: u32) -> Result<()> {
        text_parameters(cx, self.name, md, ft)?;
        pooling(cx, self.name, md)
    }
}
