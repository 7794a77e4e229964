//! BERT (BertModel): an encoder; TF-era `gamma`/`beta` names, the pooler
//! and pre-training heads dropped; sentence-transformers pooling. And
//! XLM-RoBERTa (XLMRobertaModel, a BertModel): `roberta.` prefix off, the
//! position rows before `pad_token_id + 1` dropped (and the context length
//! with them), the unigram vocabulary.

use super::{mapped, pooling, text_parameters, with_hparams, Architecture, Ctx, Held, Table, Vocab};
use crate::export::{common_config, Export, Facts, Hparams};
use modelconv_ir::{view, Error, Metadata, Model, Result, Tensor, TensorInfo, Value};
use serde_json::{json, Map, Value as Json};

pub struct Bert;

/// BERT's way back (BertModel: the encoder and embeddings; the pooler the
/// conversion dropped is not there). XLM-RoBERTa's GGUFs share the
/// architecture name and are refused by their vocabulary.
static EXPORT: Export = Export {
    config: bert_config,
    computed: xlmr_positions,
    fix: one_type_as_matrix,
    ..Export::decoder("BertModel", "bert")
};

/// A single token-type row (XLM-RoBERTa's) back as a matrix.
fn one_type_as_matrix(_: &Hparams, hf: &str, t: &mut Tensor) -> Result<()> {
    crate::export::one_row_as_matrix(hf, "token_type_embeddings.weight", t)
}

/// BertConfig from the GGUF's keys.
fn bert_config(h: &Hparams, facts: &Facts) -> Result<Map<String, Json>> {
    let mut c = common_config(h, facts)?;
    for (key, v) in [
        ("hidden_size", h.uint("embedding_length")?),
        ("intermediate_size", h.uint("feed_forward_length")?),
        ("num_hidden_layers", h.uint("block_count")?),
        ("num_attention_heads", h.uint("attention.head_count")?),
        ("max_position_embeddings", h.uint("context_length")?),
    ] {
        c.insert(key.into(), json!(v));
    }
    let types =
        h.md.get("tokenizer.ggml.token_type_count")
            .and_then(Value::as_u64)
            .unwrap_or(2);
    c.insert("type_vocab_size".into(), json!(types));
    if let Some(eps) = h.float("attention.layer_norm_epsilon")? {
        c.insert("layer_norm_eps".into(), eps);
    }
    c.insert("hidden_act".into(), json!("gelu"));
    c.insert("position_embedding_type".into(), json!("absolute"));
    if h.md.get("tokenizer.ggml.model").and_then(Value::as_str) == Some("t5") {
        // XLM-RoBERTa: its positions start after the padding id.
        c.insert("architectures".into(), json!(["XLMRobertaModel"]));
        c.insert("model_type".into(), json!("xlm-roberta"));
        c.insert(
            "max_position_embeddings".into(),
            json!(h.uint("context_length")? + xlmr_offset(h)),
        );
    } else {
        // BERT's GGUF names no BOS/EOS of its own: those keys are its CLS and SEP.
        c.remove("bos_token_id");
        c.remove("eos_token_id");
    }
    Ok(c)
}

/// XLM-RoBERTa's GGUF (`bert` with a unigram `t5` vocabulary): the
/// position rows the conversion dropped (those before `pad_token_id + 1`,
/// which its position ids never reach) put back as zeros. Any other
/// vocabulary than BERT's WordPiece or this is refused.
fn xlmr_positions(model: &mut Model, h: &Hparams, _: &mut Map<String, Json>) -> Result<()> {
    match h.md.get("tokenizer.ggml.model").and_then(Value::as_str) {
        Some("bert") => return Ok(()),
        Some("t5") => {}
        other => {
            return Err(Error::unsupported(format!(
                "{}: a bert GGUF with a '{}' vocabulary has no way back in this build (BERT's WordPiece and \
                 XLM-RoBERTa's unigram have)",
                model.path.display(),
                other.unwrap_or("missing")
            )))
        }
    }
    let offset = xlmr_offset(h);
    let Some(t) = model.tensors.iter_mut().find(|t| t.info.name == "position_embd.weight") else {
        return Ok(());
    };
    let &[rows, width] = t.info.shape.as_slice() else {
        return Err(Error::invalid(format!(
            "position_embd.weight {:?}: expected 2-D",
            t.info.shape
        )));
    };
    let es = t.info.dtype.type_size();
    let zeros: std::sync::Arc<dyn modelconv_ir::DataSource> = std::sync::Arc::new(modelconv_ir::MemSource::new(vec![
            0u8;
            usize::try_from(offset * width * es)
                .map_err(|_| Error::invalid(
                "position rows too large"
            ))?
        ]));
    let (data, shape) = view::Concat::new(
        vec![(zeros, vec![offset, width]), (t.data.clone(), vec![rows, width])],
        es,
        0,
    )?;
    t.info = TensorInfo::new(t.info.name.clone(), t.info.dtype, shape)?;
    t.data = std::sync::Arc::new(data);
    t.location = None;
    Ok(())
}

/// The position rows XLM-RoBERTa's conversion dropped: `pad_token_id + 1`.
fn xlmr_offset(h: &Hparams) -> u64 {
    h.token_id("padding").unwrap_or(1) + 1
}

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
        bert_parameters(cx, "bert", md, ft)
    }
    fn export(&self) -> Option<&'static Export> {
        Some(&EXPORT)
    }
}

/// BertModel.set_gguf_parameters.
fn bert_parameters(cx: &Ctx, arch: &str, md: &mut Metadata, ft: u32) -> Result<()> {
    text_parameters(cx, arch, md, ft)?;
    md.set(format!("{arch}.attention.causal"), Value::Bool(false));
    pooling(cx, arch, md)
}

pub struct XlmRoberta;

impl XlmRoberta {
    /// Where XLM-RoBERTa's positions start: after the padding id.
    fn position_offset(cx: &Ctx) -> Result<Option<u64>> {
        Ok(cx
            .folder
            .hparams
            .opt_uint(&["pad_token_id"])?
            .map(|p| p.saturating_add(1)))
    }
}

impl Architecture for XlmRoberta {
    fn hf_classes(&self) -> &'static [&'static str] {
        &["XLMRobertaModel"]
    }
    fn name(&self) -> &'static str {
        "bert"
    }
    fn tables(&self) -> &'static [Table] {
        &[TENSORS]
    }
    fn vocab(&self) -> &'static [Vocab] {
        &[Vocab::XlmRobertaUnigram]
    }
    fn filter(&self, name: &str) -> Option<String> {
        Bert.filter(name.strip_prefix("roberta.").unwrap_or(name))
    }
    /// BERT's keys with the context shortened by the position offset.
    fn set_gguf_parameters(&self, cx: &Ctx, md: &mut Metadata, ft: u32) -> Result<()> {
        if cx.folder.hparams.get("lora_adaptations").is_some() {
            return Err(Error::unsupported(
                "config.json: lora_adaptations (jina-embeddings-v3's task adapters): not converted by this build",
            ));
        }
        let offset = XlmRoberta::position_offset(cx)?;
        let edit = |m: &mut serde_json::Map<String, serde_json::Value>| {
            if let (Some(off), Some(n)) = (offset, m.get("max_position_embeddings").and_then(|v| v.as_u64())) {
                m.insert("max_position_embeddings".into(), n.saturating_sub(off).into());
            }
        };
        with_hparams(cx, edit, |cx| bert_parameters(cx, "bert", md, ft))
    }
    fn modify_tensors(&self, cx: &Ctx, hf: &str, t: Tensor, _: &mut Held) -> Result<Vec<Tensor>> {
        let mut t = mapped(cx, self, hf, t)?;
        if hf == "embeddings.position_embeddings.weight" {
            if let Some(off) = XlmRoberta::position_offset(cx)? {
                let rows = t.info.shape.first().copied().unwrap_or(0);
                if off > rows {
                    return Err(Error::invalid(format!(
                        "tensor '{hf}': {rows} positions, fewer than the padding offset {off}"
                    )));
                }
                let es = t.info.dtype.type_size();
                t.data = view::slice(t.data.clone(), es, &t.info.shape, 0, off, rows - off)?;
                t.info.shape[0] = rows - off;
                t.info = TensorInfo::new(t.info.name.clone(), t.info.dtype, t.info.shape.clone())?;
                t.location = None;
            }
        }
        Ok(vec![t])
    }
}

/// ModernBERT (ModernBertModel, a BertModel): `model.` prefix off, fused
/// QKV and gated FFN weights as they are, alternating local and global
/// attention, byte-level BPE with BOS, EOS and SEP added. `norm_eps` is
/// written as `layer_norm_rms_epsilon`, as the reference's TextModel does,
/// though llama.cpp's modern-bert loader reads `layer_norm_epsilon` (the
/// reference's bytes kept; README says how to add the key).
pub struct ModernBert;

/// ModernBERT's way back (ModernBertModel; its first layer has no
/// attention norm, as the original has none).
static MODERN_EXPORT: Export = Export {
    config: modern_bert_config,
    ..Export::decoder("ModernBertModel", "modernbert")
};

/// ModernBertConfig from the GGUF: the window and its every-n-th global
/// layer (`layer_types`), the two rope bases, the pooling as
/// `classifier_pooling`, the vocabulary size as the conversion wrote it.
fn modern_bert_config(h: &Hparams, facts: &Facts) -> Result<Map<String, Json>> {
    let mut c = common_config(h, facts)?;
    let layers = h.uint("block_count")?;
    for (key, v) in [
        ("vocab_size", h.uint("vocab_size")?),
        ("hidden_size", h.uint("embedding_length")?),
        ("intermediate_size", h.uint("feed_forward_length")?),
        ("num_hidden_layers", layers),
        ("num_attention_heads", h.uint("attention.head_count")?),
        ("max_position_embeddings", h.uint("context_length")?),
        ("local_attention", h.uint("attention.sliding_window")?),
    ] {
        c.insert(key.into(), json!(v));
    }
    let every = h.opt_uint("attention.sliding_window_pattern")?.unwrap_or(1).max(1);
    c.insert("global_attn_every_n_layers".into(), json!(every));
    let types: Vec<&str> = (0..layers)
        .map(|i| {
            if i % every == 0 {
                "full_attention"
            } else {
                "sliding_attention"
            }
        })
        .collect();
    c.insert("layer_types".into(), json!(types));
    let theta = |key: &str, default: f64| -> Result<Json> { Ok(h.float(key)?.unwrap_or(json!(default))) };
    c.insert(
        "rope_parameters".into(),
        json!({"full_attention": {"rope_type": "default", "rope_theta": theta("rope.freq_base", 160000.0)?},
               "sliding_attention": {"rope_type": "default", "rope_theta": theta("rope.freq_base_swa", 10000.0)?}}),
    );
    if let Some(eps) = h.float("attention.layer_norm_rms_epsilon")? {
        c.insert("norm_eps".into(), eps);
    }
    if let Some(act) = h.get("hidden_activation").and_then(Value::as_str) {
        c.insert("hidden_activation".into(), json!(act));
    }
    let pooling = match h.opt_uint("classifier.pooling_type")?.or(h.opt_uint("pooling_type")?) {
        Some(1) => Some("mean"),
        Some(2) => Some("cls"),
        _ => None,
    };
    if let Some(p) = pooling {
        c.insert("classifier_pooling".into(), json!(p));
    }
    if let Some(sep) = h.token_id("seperator") {
        c.insert("sep_token_id".into(), json!(sep));
    }
    for key in ["attention_bias", "mlp_bias", "norm_bias"] {
        c.insert(key.into(), json!(facts.has_bias));
    }
    Ok(c)
}

const MODERN: Table = &[
    ("embeddings.tok_embeddings", "token_embd"),
    ("embeddings.norm", "token_embd_norm"),
    ("final_norm", "output_norm"),
    ("layers.{bid}.attn_norm", "blk.{bid}.attn_norm"),
    ("layers.{bid}.attn.Wqkv", "blk.{bid}.attn_qkv"),
    ("layers.{bid}.attn.Wo", "blk.{bid}.attn_output"),
    ("layers.{bid}.mlp_norm", "blk.{bid}.ffn_norm"),
    ("layers.{bid}.mlp.Wi", "blk.{bid}.ffn_up"),
    ("layers.{bid}.mlp.Wo", "blk.{bid}.ffn_down"),
];

impl Architecture for ModernBert {
    fn hf_classes(&self) -> &'static [&'static str] {
        &["ModernBertModel"]
    }
    fn name(&self) -> &'static str {
        "modern-bert"
    }
    fn tables(&self) -> &'static [Table] {
        &[MODERN]
    }
    fn vocab(&self) -> &'static [Vocab] {
        &[Vocab::BpeAddingSpecials]
    }
    fn filter(&self, name: &str) -> Option<String> {
        Bert.filter(name.strip_prefix("model.").unwrap_or(name))
    }
    fn export(&self) -> Option<&'static Export> {
        Some(&MODERN_EXPORT)
    }
    /// BertModel's keys, then the local window and its pattern, no rope
    /// scaling, the vocabulary size and the activation.
    fn set_gguf_parameters(&self, cx: &Ctx, md: &mut Metadata, ft: u32) -> Result<()> {
        let a = self.name();
        bert_parameters(cx, a, md, ft)?;
        let h = &cx.folder.hparams;
        super::put_u32(md, a, "attention.sliding_window", h.uint(&["local_attention"])?)?;
        if let Some(n) = h.opt_uint(&["global_attn_every_n_layers"])? {
            super::put_u32(md, a, "attention.sliding_window_pattern", n)?;
        }
        md.set(format!("{a}.rope.scaling.type"), Value::String("none".into()));
        super::put_u32(md, a, "vocab_size", h.uint(&["vocab_size"])?)?;
        if let Some(act) = h
            .get("hidden_activation")
            .and_then(|v| v.as_str())
            .filter(|s| !s.is_empty())
        {
            md.set(format!("{a}.hidden_activation"), Value::String(act.into()));
        }
        Ok(())
    }
}
