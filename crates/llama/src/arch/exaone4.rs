//! EXAONE 4 (Exaone4Model in conversion/exaone.py): OLMo 2's tensors (Q/K
//! norms, norms after attention and after the FFN only), the vocabulary
//! size, a sliding window with its per-layer pattern as a bool array, and
//! Llama 3.1's `rope_freqs` (a factor of 16 by default); byte-level BPE.

use super::olmo2::POST_NORMS;
use super::tables::{DECODER, LM_HEAD, QK_NORM};
use super::{put_u32, text_parameters, Architecture, Computed, Ctx, Table, Vocab};
use crate::export::{Export, Hparams};
use modelconv_ir::{Array, Metadata, Result, Value};
use serde_json::{json, Map, Value as Json};

pub struct Exaone4;

static EXPORT: Export = Export {
    extra: exaone4_config,
    computed: crate::export::llama3_rope,
    ..Export::decoder("Exaone4ForCausalLM", "exaone4")
};

/// Exaone4Config's sliding window and, from the per-layer bool pattern,
/// its `layer_types`.
fn exaone4_config(h: &Hparams, c: &mut Map<String, Json>) -> Result<()> {
    let window = h.opt_uint("attention.sliding_window")?;
    c.insert("sliding_window".into(), window.map_or(Json::Null, Json::from));
    if let Some(Value::Array(Array::Bool(pattern))) = h.get("attention.sliding_window_pattern") {
        let types: Vec<&str> = pattern
            .iter()
            .map(|&sliding| if sliding { "sliding_attention" } else { "full_attention" })
            .collect();
        c.insert("layer_types".into(), json!(types));
    }
    Ok(())
}

impl Architecture for Exaone4 {
    fn hf_classes(&self) -> &'static [&'static str] {
        &["Exaone4ForCausalLM"]
    }
    fn name(&self) -> &'static str {
        "exaone4"
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
    fn set_gguf_parameters(&self, cx: &Ctx, md: &mut Metadata, ft: u32) -> Result<()> {
        let a = self.name();
        text_parameters(cx, a, md, ft)?;
        let h = &cx.folder.hparams;
        put_u32(md, a, "vocab_size", h.uint(&["vocab_size"])?)?;
        let Some(window) = h.opt_uint(&["sliding_window"])? else {
            return Ok(());
        };
        put_u32(md, a, "attention.sliding_window", window)?;
        if let Some(pattern) = sliding_pattern(cx)? {
            md.set(
                format!("{a}.attention.sliding_window_pattern"),
                Value::Array(Array::Bool(pattern)),
            );
        }
        Ok(())
    }
    fn extra_tensors(&self, cx: &Ctx, _: &mut Metadata) -> Result<Vec<Computed>> {
        super::llama::llama3_rope(cx, 16.0)
    }
}

/// Which layers use the sliding window: `layer_types`, else
/// `sliding_window_pattern` as a string (`LLLG`, repeated) or a period
/// (every n-th layer global), kept only when it covers every layer.
fn sliding_pattern(cx: &Ctx) -> Result<Option<Vec<bool>>> {
    let h = &cx.folder.hparams;
    if let Some(Json::Array(types)) = h.get("layer_types") {
        return Ok(Some(
            types.iter().map(|t| t.as_str() == Some("sliding_attention")).collect(),
        ));
    }
    let n = h.uint(&["num_hidden_layers"])?;
    let pattern: Vec<bool> = match h.get("sliding_window_pattern") {
        Some(Json::String(p)) if !p.is_empty() => {
            let p: Vec<char> = p.chars().collect();
            (0..n).map(|i| p[(i % p.len() as u64) as usize] == 'L').collect()
        }
        Some(Json::Number(k)) => match k.as_u64().filter(|&k| k > 0) {
            Some(k) => (0..n).map(|i| (i + 1) % k != 0).collect(),
            None => Vec::new(),
        },
        _ => Vec::new(),
    };
    Ok((pattern.len() as u64 == n).then_some(pattern))
}
