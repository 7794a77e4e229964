//! BERT (BertModel): an encoder; TF-era `gamma`/`beta` names, the pooler
//! and pre-training heads dropped; sentence-transformers pooling.

use super::{pooling, text_parameters, Architecture, Ctx, Table, Vocab};
use modelconv_ir::{Metadata, Result, Value};

pub struct Bert;

const TENSORS: Table = &[
    ("embeddings.word_embeddings", "token_embd"),
    ("embeddings.position_embeddings", "position_embd"),
    ("embeddings.token_type_embeddings", "token_types"),
    ("embeddings.LayerNorm", "token_embd_norm"),
    ("encoder.layer.{bid}.attention.self.query", "blk.{bid}.attn_q"),
    ("encoder.layer.{bid}.attention.self.key", "blk.{bid}.attn_k"),
    ("encoder.layer.{bid}.attention.self.value", "blk.{bid}.attn_v"),
    ("encoder.layer.{bid}.attention.output.dense", "blk.{bid}.attn_output"),
    (
        "encoder.layer.{bid}.attention.output.LayerNorm",
        "blk.{bid}.attn_output_norm",
    ),
    ("encoder.layer.{bid}.intermediate.dense", "blk.{bid}.ffn_up"),
    ("encoder.layer.{bid}.output.dense", "blk.{bid}.ffn_down"),
    ("encoder.layer.{bid}.output.LayerNorm", "blk.{bid}.layer_output_norm"),
];

impl Architecture for Bert {
    fn hf_classes(&self) -> &'static [&'static str] {
        &["BertModel", "BertForMaskedLM"]
    }
    fn name(&self) -> &'static str {
        "bert"
    }
    fn tables(&self) -> &'static [Table] {
        &[TENSORS]
    }
    fn vocab(&self) -> &'static [Vocab] {
        &[Vocab::WordPiece]
    }
    /// `bert.` prefix off, `gamma`/`beta` renamed, the pooler and the
    /// pre-training heads dropped (embeddings only).
    fn filter(&self, name: &str) -> Option<String> {
        let mut n = name.strip_prefix("bert.").unwrap_or(name).to_string();
        if let Some(stem) = n.strip_suffix(".gamma") {
            n = format!("{stem}.weight");
        } else if let Some(stem) = n.strip_suffix(".beta") {
            n = format!("{stem}.bias");
        }
        let dropped = matches!(
            n.as_str(),
            "embeddings.position_ids" | "pooler.dense.weight" | "pooler.dense.bias"
        ) || n.starts_with("cls.predictions")
            || n.starts_with("cls.seq_relationship");
        (!dropped).then(|| n.replace("language_model.", ""))
    }
    fn set_gguf_parameters(&self, cx: &Ctx, md: &mut Metadata, ft: u32) -> Result<()> {
        text_parameters(cx, self.name(), md, ft)?;
        md.set("bert.attention.causal", Value::Bool(false));
        pooling(cx, self.name(), md)
    }
}
