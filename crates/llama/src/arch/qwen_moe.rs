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
use crate::export::{bias_named, Export, Hparams};
use modelconv_ir::{DType, Error, Metadata, Result, Tensor, TensorInfo, Value};
use serde_json::{Map, Value as Json};

pub struct QwenMoe {
    classes: &'static [&'static str],
    name: &'static str,
    tables: &'static [Table],
    /// OLMoE: no expert widths, and the RMS norm epsilon fixed at 1e-5.
    olmoe: bool,
    export: Option<Export>,
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
    export: Some(Export {
        experts: Some(&MLP_EXPERTS),
        extra: qwen2moe_config,
        fix: shared_gate_as_matrix,
        ..Export::decoder("Qwen2MoeForCausalLM", "qwen2_moe")
    }),
};

pub static QWEN3MOE: QwenMoe = QwenMoe {
    classes: &["Qwen3MoeForCausalLM"],
    name: "qwen3moe",
    tables: &[DECODER, LM_HEAD, FFN_NORM, QK_NORM, MOE],
    olmoe: false,
    export: Some(Export {
        experts: Some(&MLP_EXPERTS),
        extra: qwen3moe_config,
        ..Export::decoder("Qwen3MoeForCausalLM", "qwen3_moe")
    }),
};

pub static OLMOE: QwenMoe = QwenMoe {
    classes: &["OlmoeForCausalLM"],
    name: "olmoe",
    tables: &[DECODER, LM_HEAD, FFN_NORM, QK_NORM, MOE],
    olmoe: true,
    export: Some(Export {
        experts: Some(&MLP_EXPERTS),
        extra: olmoe_config,
        ..Export::decoder("OlmoeForCausalLM", "olmoe")
    }),
};

/// OlmoeConfig's expert keys (its experts are `intermediate_size` wide);
/// llama.cpp's olmoe.cpp builds them with `norm_w = false`; no Q/K/V
/// clipping (the GGUF carries none).
fn olmoe_config(h: &Hparams, c: &mut Map<String, Json>) -> Result<()> {
    c.insert("num_experts".into(), Json::from(h.uint("expert_count")?));
    c.insert("num_experts_per_tok".into(), Json::from(h.uint("expert_used_count")?));
    c.insert("norm_topk_prob".into(), Json::Bool(false));
    c.insert("clip_qkv".into(), Json::Null);
    Ok(())
}

/// The expert keys both Qwen MoE configs have; `norm_topk_prob` as
/// llama.cpp's graph decides it (qwen2moe.cpp builds its experts with
/// `norm_w = false`, qwen3moe.cpp with `true`), which the GGUF does not
/// record.
fn qwen_moe_config(h: &Hparams, c: &mut Map<String, Json>, norm_topk_prob: bool) -> Result<()> {
    c.insert("num_experts".into(), Json::from(h.uint("expert_count")?));
    c.insert("num_experts_per_tok".into(), Json::from(h.uint("expert_used_count")?));
    c.insert(
        "moe_intermediate_size".into(),
        Json::from(h.uint("expert_feed_forward_length")?),
    );
    c.insert("norm_topk_prob".into(), Json::Bool(norm_topk_prob));
    // Every block sparse, as llama.cpp builds every block.
    c.insert("decoder_sparse_step".into(), Json::from(1));
    c.insert("mlp_only_layers".into(), Json::Array(Vec::new()));
    c.insert("use_sliding_window".into(), Json::Bool(false));
    Ok(())
}

fn qwen2moe_config(h: &Hparams, c: &mut Map<String, Json>) -> Result<()> {
    qwen_moe_config(h, c, false)?;
    c.insert(
        "shared_expert_intermediate_size".into(),
        Json::from(h.uint("expert_shared_feed_forward_length")?),
    );
    // Qwen2-MoE names its Q/K/V biases `qkv_bias`.
    bias_named(c, "qkv_bias");
    Ok(())
}

/// The shared-expert gate, a `[1, hidden]` Linear weight, which ggml
/// writes 1-D (`ggml_n_dims` drops trailing ones, so a llama-quantize
/// output has `[hidden]`), back as the matrix transformers expects.
fn shared_gate_as_matrix(_: &Hparams, hf: &str, t: &mut Tensor) -> Result<()> {
    crate::export::one_row_as_matrix(hf, "shared_expert_gate.weight", t)
}

fn qwen3moe_config(h: &Hparams, c: &mut Map<String, Json>) -> Result<()> {
    qwen_moe_config(h, c, true)
}

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
    fn export(&self) -> Option<&'static Export> {
        // (Statics only, as in qwen.rs: these live for the whole program.)
        [&QWEN2MOE, &QWEN3MOE, &OLMOE]
            .into_iter()
            .find(|q| q.name == self.name)
            .and_then(|q| q.export.as_ref())
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
