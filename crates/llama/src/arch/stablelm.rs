//! StableLM (StableLMModel): its own hyper-parameter keys (not
//! TextModel's: context, width, blocks, FFN, the partial rotary
//! dimension, heads, parallel residual, LayerNorm epsilon, file type),
//! LayerNorms with biases; byte-level BPE. Per-head Q/K LayerNorms
//! (StableLM 2 12B) are refused: at the reference commit StableLMModel's
//! modify_tensors `return`s the stacked norms from a generator, so they
//! are dropped and its conversion fails ("Unprocessed norms").

use super::tables::{DECODER, FFN_NORM, LM_HEAD};
use super::{mapped, put_u32, Architecture, Ctx, Held, Table, Vocab};
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
        let a = self.name();
        put_u32(md, a, "context_length", h.uint(&["max_position_embeddings"])?)?;
        let hidden = h.uint(&["hidden_size"])?;
        put_u32(md, a, "embedding_length", hidden)?;
        put_u32(md, a, "block_count", cx.block_count)?;
        put_u32(md, a, "feed_forward_length", h.uint(&["intermediate_size"])?)?;
        let heads = h.uint(&["num_attention_heads"])?;
        let factor = crate::rope_parameters(h)
            .get("partial_rotary_factor")
            .and_then(serde_json::Value::as_f64)
            .ok_or_else(|| Error::invalid("config.json: StableLM needs partial_rotary_factor"))?;
        // Python's int(factor * (hidden // heads)): truncation.
        let rope = (factor * (hidden / heads.max(1)) as f64) as u64;
        put_u32(md, a, "rope.dimension_count", rope)?;
        put_u32(md, a, "attention.head_count", heads)?;
        put_u32(md, a, "attention.head_count_kv", h.uint(&["num_key_value_heads"])?)?;
        let parallel = h
            .get("use_parallel_residual")
            .and_then(serde_json::Value::as_bool)
            .unwrap_or(true);
        md.set(format!("{a}.use_parallel_residual"), Value::Bool(parallel));
        let eps = h
            .opt_f64(&["layer_norm_eps", "norm_eps"])?
            .ok_or_else(|| Error::invalid("config.json: StableLM needs layer_norm_eps"))?;
        md.set(format!("{a}.attention.layer_norm_epsilon"), Value::F32(eps as f32));
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
