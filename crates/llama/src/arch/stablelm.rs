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
use modelconv_ir::{Error, Metadata, Result, Tensor, Value};

pub struct StableLm;

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
