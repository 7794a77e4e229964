//! Qwen2 and Qwen3 (Qwen2Model, Qwen3Model): the decoder tables as they
//! are (no Q/K permutation), Qwen3 with Q/K norms; embedding models carry
//! their sentence-transformers pooling (Qwen3-Embedding: last token); a
//! Qwen3 reranker is refused. One conversion, two sets of names.

use super::tables::{with_model_prefix, DECODER, FFN_NORM, LM_HEAD, QK_NORM};
use super::{pooling, text_parameters, Architecture, Ctx, Table, Vocab};
use crate::export::{Export, Hparams};
use modelconv_ir::{Error, Metadata, Result};

pub struct Qwen {
    classes: &'static [&'static str],
    name: &'static str,
    tables: &'static [Table],
    /// The bare base model, whose names lack `model.`.
    base: &'static str,
    export: Export,
}

pub static QWEN2: Qwen = Qwen {
    classes: &["Qwen2ForCausalLM", "Qwen2Model"],
    name: "qwen2",
    tables: &[DECODER, LM_HEAD, FFN_NORM],
    base: "Qwen2Model",
    export: Export {
        extra: no_sliding_window,
        ..Export::decoder("Qwen2ForCausalLM", "qwen2")
    },
};

pub static QWEN3: Qwen = Qwen {
    classes: &["Qwen3ForCausalLM", "Qwen3Model"],
    name: "qwen3",
    tables: &[DECODER, LM_HEAD, FFN_NORM, QK_NORM],
    base: "Qwen3Model",
    export: Export {
        extra: no_sliding_window,
        ..Export::decoder("Qwen3ForCausalLM", "qwen3")
    },
};

/// Qwen2/Qwen3 configs name sliding-window attention, which the
/// conversion does not carry: off, as the released models ship it.
fn no_sliding_window(_: &Hparams, c: &mut serde_json::Map<String, serde_json::Value>) -> Result<()> {
    c.insert("use_sliding_window".into(), serde_json::Value::Bool(false));
    Ok(())
}

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
    fn export(&self) -> Option<&'static Export> {
        // (Statics only: QWEN2 and QWEN3 live for the whole program.)
        [&QWEN2, &QWEN3]
            .into_iter()
            .find(|q| q.name == self.name)
            .map(|q| &q.export)
    }
    fn set_gguf_parameters(&self, cx: &Ctx, md: &mut Metadata, ft: u32) -> Result<()> {
        if self.name == "qwen3" && is_qwen3_reranker(cx)? {
            return Err(Error::unsupported(format!(
                "{}: a Qwen3 reranker (rank pooling and a yes/no classifier head cut from the output): \
                 not converted by this build",
                cx.folder.dir.display()
            )));
        }
        text_parameters(cx, self.name, md, ft)?;
        pooling(cx, self.name, md)
    }
}

/// Qwen3Model._is_qwen3_reranker: the model card's title, or the folder,
/// `_name_or_path`, model type or class naming a Qwen3 reranker.
fn is_qwen3_reranker(cx: &Ctx) -> Result<bool> {
    const NAMES: [&str; 2] = ["qwen3-reranker", "qwen3-vl-reranker"];
    let f = cx.folder;
    let card = f.dir.join("README.md");
    if card.is_file() {
        let text =
            String::from_utf8_lossy(&crate::config::read_limited(&card, crate::config::MAX_JSON)?).to_lowercase();
        if NAMES.iter().any(|n| text.contains(&format!("# {n}"))) {
            return Ok(true);
        }
    }
    let dir_name = f
        .dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let text = |k: &str| f.hparams.get(k).and_then(|v| v.as_str()).unwrap_or("").to_string();
    let hints = [dir_name, text("_name_or_path"), text("model_type"), f.hf_arch.clone()];
    Ok(hints.iter().any(|h| {
        let h = h.to_lowercase();
        NAMES.iter().any(|n| h.contains(n))
    }) || f.hf_arch.to_lowercase().contains("sequenceclassification"))
}
