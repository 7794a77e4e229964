//! Qwen2-MoE and Qwen3-MoE (Qwen2MoeModel, Qwen3MoeModel) and OLMoE
//! (OlmoeModel, "copied from Qwen2MoeModel"): the decoder tables with a
//! router, a shared expert (Qwen2-MoE) and the per-expert matrices stacked
//! into 3-D tensors (down, gate, up, as the converter yields them), Q/K
//! norms (Qwen3-MoE, OLMoE), transformers' fused 3-D expert layout too;
//! byte-level BPE only (the classes keep
//! TextModel's set_vocab).

use super::tables::{DECODER, FFN_NORM, LM_HEAD, QK_NORM};
use super::{
    block_of, mapped, put_u32, split_halves, stack_expert, text_parameters, Architecture, Ctx, Held, Table, Vocab,
    MLP_EXPERTS,
};
use modelconv_ir::{DType, Error, Metadata, Result, Tensor, TensorInfo, Value};

pub struct QwenMoe {
    classes: &'static [&'static str],
    name: &'static str,
    tables: &'static [Table],
    /// OLMoE: no expert widths, and the RMS norm epsilon fixed at 1e-5.
    olmoe: bool,
}

/// The router and the shared expert of a Qwen MoE block.
const MOE: Table = &[
    ("model.layers.{bid}.mlp.gate", "blk.{bid}.ffn_gate_inp"),
    (
        "model.layers.{bid}.mlp.shared_expert_gate",
        "blk.{bid}.ffn_gate_inp_shexp",
    ),
    (
        "model.layers.{bid}.mlp.shared_expert.gate_proj",
        "blk.{bid}.ffn_gate_shexp",
    ),
    ("model.layers.{bid}.mlp.shared_expert.up_proj", "blk.{bid}.ffn_up_shexp"),
    (
        "model.layers.{bid}.mlp.shared_expert.down_proj",
        "blk.{bid}.ffn_down_shexp",
    ),
];

pub static QWEN2MOE: QwenMoe = QwenMoe {
    classes: &["Qwen2MoeForCausalLM"],
    name: "qwen2moe",
    tables: &[DECODER, LM_HEAD, FFN_NORM, MOE],
    olmoe: false,
};

pub static QWEN3MOE: QwenMoe = QwenMoe {
    classes: &["Qwen3MoeForCausalLM"],
    name: "qwen3moe",
    tables: &[DECODER, LM_HEAD, FFN_NORM, QK_NORM, MOE],
    olmoe: false,
};

pub static OLMOE: QwenMoe = QwenMoe {
    classes: &["OlmoeForCausalLM"],
    name: "olmoe",
    tables: &[DECODER, LM_HEAD, FFN_NORM, QK_NORM, MOE],
    olmoe: true,
};

impl Architecture for QwenMoe {
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
        &[Vocab::Bpe]
    }
    /// TextModel's keys, then the expert and shared-expert FFN widths
    /// (OLMoE: the epsilon set again to 1e-5, in its place).
    fn set_gguf_parameters(&self, cx: &Ctx, md: &mut Metadata, ft: u32) -> Result<()> {
        text_parameters(cx, self.name, md, ft)?;
        if self.olmoe {
            md.set(
                format!("{}.attention.layer_norm_rms_epsilon", self.name),
                Value::F32(1e-5),
            );
            return Ok(());
        }
        let h = &cx.folder.hparams;
        if let Some(n) = h.opt_uint(&["moe_intermediate_size"])? {
            put_u32(md, self.name, "expert_feed_forward_length", n)?;
        }
        if let Some(n) = h.opt_uint(&["shared_expert_intermediate_size"])? {
            put_u32(md, self.name, "expert_shared_feed_forward_length", n)?;
        }
        Ok(())
    }
    fn modify_tensors(&self, cx: &Ctx, hf: &str, t: Tensor, held: &mut Held) -> Result<Vec<Tensor>> {
        // (OlmoeModel copies only the per-expert path: a fused OLMoE has no
        // place, as in the reference.)
        if !self.olmoe {
            if let Some(fused) = fused_experts(cx, hf, &t)? {
                return Ok(fused);
            }
        }
        match MLP_EXPERTS.parse(hf) {
            Some(e) => stack_expert(cx, e, &["num_local_experts", "num_experts"], t, held),
            None => Ok(vec![mapped(cx, self, hf, t)?]),
        }
    }
}

/// The fused 3-D layout (transformers' `mlp.experts.gate_up_proj`,
/// `[experts, 2 x ff, embd]`, and `mlp.experts.down_proj`, with or
/// without `.weight`), as Qwen2MoeModel reads it: gate_up split on its
/// second-to-last axis into the gate and up stacks (views), down taken
/// as the down stack. None for any other tensor.
fn fused_experts(cx: &Ctx, hf: &str, t: &Tensor) -> Result<Option<Vec<Tensor>>> {
    let base = hf.strip_suffix(".weight").unwrap_or(hf);
    let stem = if base.ends_with("mlp.experts.gate_up_proj") {
        "gate_up"
    } else if base.ends_with("mlp.experts.down_proj") {
        "down"
    } else {
        return Ok(None);
    };
    let bid = block_of(cx, hf)?;
    let shape = &t.info.shape;
    if shape.len() < 3 {
        return Err(Error::invalid(format!(
            "tensor '{hf}' {shape:?}: fused experts are 3-D"
        )));
    }
    if !matches!(t.info.dtype, DType::F32 | DType::F16 | DType::BF16) {
        return Err(Error::unsupported(format!(
            "tensor '{hf}' is {}; GGUF conversion takes F32, F16 and BF16 weights",
            t.info.dtype
        )));
    }
    let name = |s: &str| format!("blk.{bid}.{s}.weight");
    if stem == "down" {
        let mut t = t.clone();
        t.info = TensorInfo::new(name("ffn_down_exps"), t.info.dtype, t.info.shape.clone())?;
        return Ok(Some(vec![t]));
    }
    let half = shape[shape.len() - 2] / 2;
    split_halves(t, half, name("ffn_gate_exps"), name("ffn_up_exps")).map(Some)
}
