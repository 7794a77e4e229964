//! GPT-OSS (GptOssModel in conversion/gpt_oss.py): attention with biases
//! and per-head sinks, a router with a bias, and the experts in one of two
//! layouts. As the hub ships them, MXFP4 (`*_blocks`, `*_scales`): repacked
//! into ggml MXFP4 without dequantizing ([`crate::mxfp4`]), gate and up
//! taken from the interleaved rows of `gate_up_proj`, written before every
//! other tensor (the converter's generate_extra_tensors adds them first),
//! and the file type MXFP4_MOE. As transformers saves them, float
//! `[experts, in, out]` parameters: transposed, gate and up de-interleaved
//! (even and odd columns), as strided views. Byte-level BPE.

use super::tables::LM_HEAD;
use super::{mapped, put_u32, text_parameters, Architecture, Ctx, Held, Table, Vocab};
use crate::mxfp4;
use modelconv_ir::view::{strided, RowGather};
use modelconv_ir::{DType, Error, Metadata, Result, Tensor, TensorInfo};
use std::sync::Arc;

pub struct GptOss;

const TENSORS: Table = &[
    ("model.embed_tokens", "token_embd"),
    ("model.norm", "output_norm"),
    ("model.layers.{bid}.input_layernorm", "blk.{bid}.attn_norm"),
    (
        "model.layers.{bid}.post_attention_layernorm",
        "blk.{bid}.post_attention_norm",
    ),
    ("model.layers.{bid}.self_attn.q_proj", "blk.{bid}.attn_q"),
    ("model.layers.{bid}.self_attn.k_proj", "blk.{bid}.attn_k"),
    ("model.layers.{bid}.self_attn.v_proj", "blk.{bid}.attn_v"),
    ("model.layers.{bid}.self_attn.o_proj", "blk.{bid}.attn_output"),
    ("model.layers.{bid}.self_attn.sinks", "blk.{bid}.attn_sinks"),
    ("model.layers.{bid}.mlp.router", "blk.{bid}.ffn_gate_inp"),
];

const EXPERTS: &str = ".mlp.experts.";

impl Architecture for GptOss {
    fn hf_classes(&self) -> &'static [&'static str] {
        &["GptOssForCausalLM"]
    }
    fn name(&self) -> &'static str {
        "gpt-oss"
    }
    fn tables(&self) -> &'static [Table] {
        &[TENSORS, LM_HEAD]
    }
    fn vocab(&self) -> &'static [Vocab] {
        &[Vocab::Bpe]
    }
    fn reads_mxfp4(&self) -> bool {
        true
    }
    /// The sinks are named as weights (GptOssModel.filter_tensors).
    fn filter(&self, name: &str) -> Option<String> {
        let name = if name.contains("sinks") {
            format!("{name}.weight")
        } else {
            name.to_string()
        };
        super::default_filter(&name)
    }
    fn set_gguf_parameters(&self, cx: &Ctx, md: &mut Metadata, ft: u32) -> Result<()> {
        text_parameters(cx, self.name(), md, ft)?;
        let h = &cx.folder.hparams;
        put_u32(
            md,
            self.name(),
            "attention.sliding_window",
            h.uint(&["sliding_window"])?,
        )?;
        put_u32(
            md,
            self.name(),
            "expert_feed_forward_length",
            h.uint(&["intermediate_size"])?,
        )
    }
    fn repacked(&self, _cx: &Ctx, tensors: &[Tensor]) -> Result<Vec<Tensor>> {
        repack_experts(tensors)
    }
    fn modify_tensors(&self, cx: &Ctx, hf: &str, t: Tensor, _: &mut Held) -> Result<Vec<Tensor>> {
        let Some((_, part)) = hf.split_once(EXPERTS) else {
            return Ok(vec![mapped(cx, self, hf, t)?]);
        };
        let bid = super::block_of(cx, hf)?;
        let name = |stem: &str, suffix: &str| format!("blk.{bid}.{stem}.{suffix}");
        match part {
            // Repacked before the loop (repacked).
            p if p.ends_with("_blocks") || p.ends_with("_scales") => Ok(Vec::new()),
            "down_proj_bias" => Ok(vec![renamed(t, name("ffn_down_exps", "bias"))?]),
            "down_proj" => Ok(vec![transposed(&t, name("ffn_down_exps", "weight"))?]),
            "gate_up_proj_bias" => Ok(vec![
                every_other(&t, 0, name("ffn_gate_exps", "bias"))?,
                every_other(&t, 1, name("ffn_up_exps", "bias"))?,
            ]),
            "gate_up_proj" => Ok(vec![
                deinterleaved(&t, 0, name("ffn_gate_exps", "weight"))?,
                deinterleaved(&t, 1, name("ffn_up_exps", "weight"))?,
            ]),
            _ => Err(Error::unsupported(format!(
                "tensor '{hf}' has no place in llama.cpp's gpt-oss architecture"
            ))),
        }
    }
}

/// Refuses a tensor that is not F32, F16 or BF16.
fn check_float(t: &Tensor) -> Result<()> {
    if !matches!(t.info.dtype, DType::F32 | DType::F16 | DType::BF16) {
        return Err(Error::unsupported(format!(
            "tensor '{}' is {}; GGUF conversion takes F32, F16 and BF16 weights",
            t.info.name, t.info.dtype
        )));
    }
    Ok(())
}

/// A view of float tensor `t` named `name` of `shape`.
fn float_view(t: &Tensor, name: String, shape: Vec<u64>, offset: u64, stride: &[u64]) -> Result<Tensor> {
    check_float(t)?;
    let data = strided(t.data.clone(), t.info.dtype.type_size(), offset, &shape, stride)?;
    Tensor::new(TensorInfo::new(name, t.info.dtype, shape)?, data)
}

fn dims3(t: &Tensor) -> Result<[u64; 3]> {
    match t.info.shape.as_slice() {
        &[e, a, b] => Ok([e, a, b]),
        s => Err(Error::invalid(format!(
            "tensor '{}' {s:?}: expected [experts, in, out]",
            t.info.name
        ))),
    }
}

fn renamed(mut t: Tensor, name: String) -> Result<Tensor> {
    check_float(&t)?;
    t.info = TensorInfo::new(name, t.info.dtype, t.info.shape.clone())?;
    Ok(t)
}

/// `[e, a, b]` as `[e, b, a]` (`transpose(-1, -2)`).
fn transposed(t: &Tensor, name: String) -> Result<Tensor> {
    let [e, a, b] = dims3(t)?;
    float_view(t, name, vec![e, b, a], 0, &[a * b, 1, b])
}

/// `[e, in, 2f]` transposed, then its rows `start::2`: `[e, f, in]`.
fn deinterleaved(t: &Tensor, start: u64, name: String) -> Result<Tensor> {
    let [e, h, two_f] = dims3(t)?;
    if !two_f.is_multiple_of(2) {
        return Err(Error::invalid(format!(
            "tensor '{}': odd gate/up width {two_f}",
            t.info.name
        )));
    }
    float_view(t, name, vec![e, two_f / 2, h], start, &[h * two_f, 2, two_f])
}

/// `[e, 2f]`'s columns `start::2`: `[e, f]`.
fn every_other(t: &Tensor, start: u64, name: String) -> Result<Tensor> {
    let &[e, two_f] = t.info.shape.as_slice() else {
        return Err(Error::invalid(format!(
            "tensor '{}' {:?}: expected [experts, 2 x ff]",
            t.info.name, t.info.shape
        )));
    };
    if !two_f.is_multiple_of(2) {
        return Err(Error::invalid(format!(
            "tensor '{}': odd gate/up width {two_f}",
            t.info.name
        )));
    }
    float_view(t, name, vec![e, two_f / 2], start, &[two_f, 2])
}

/// The MXFP4 expert tensors, in the order their scales come: each layer's
/// `down_proj` as `ffn_down_exps`, its `gate_up_proj` as `ffn_gate_exps`
/// (even rows) and `ffn_up_exps` (odd rows).
fn repack_experts(tensors: &[Tensor]) -> Result<Vec<Tensor>> {
    let find = |name: &str| tensors.iter().find(|t| t.info.name == name);
    let mut out = Vec::new();
    for scales in tensors {
        let Some(stem) = scales.info.name.strip_suffix("_scales") else {
            continue;
        };
        let Some(rest) = stem.strip_prefix("model.layers.") else {
            continue;
        };
        let (bid, part) = match rest.split_once(EXPERTS) {
            Some((b, p)) if b.bytes().all(|c| c.is_ascii_digit()) => (b, p),
            _ => continue,
        };
        let blocks_name = format!("{stem}_blocks");
        let blocks = find(&blocks_name).ok_or_else(|| {
            Error::invalid(format!(
                "tensor '{}' has no '{blocks_name}' beside it",
                scales.info.name
            ))
        })?;
        match part {
            "down_proj" => out.push(repacked(
                blocks,
                scales,
                None,
                format!("blk.{bid}.ffn_down_exps.weight"),
            )?),
            "gate_up_proj" => {
                out.push(repacked(
                    blocks,
                    scales,
                    Some(0),
                    format!("blk.{bid}.ffn_gate_exps.weight"),
                )?);
                out.push(repacked(
                    blocks,
                    scales,
                    Some(1),
                    format!("blk.{bid}.ffn_up_exps.weight"),
                )?);
            }
            _ => {
                return Err(Error::unsupported(format!(
                    "tensor '{}': MXFP4 expert weights other than down_proj and gate_up_proj",
                    scales.info.name
                )))
            }
        }
    }
    Ok(out)
}

/// One MXFP4 expert tensor `[e, rows, nb × 32]` from `blocks` `[e, rows',
/// nb, 16]` and `scales` `[e, rows', nb]`, all rows or (`rows`) every
/// other one from `start`.
fn repacked(blocks: &Tensor, scales: &Tensor, rows: Option<u64>, name: String) -> Result<Tensor> {
    let (bs, ss) = (&blocks.info.shape, &scales.info.shape);
    let shaped = blocks.info.dtype == DType::U8
        && scales.info.dtype == DType::U8
        && bs.len() == 4
        && bs[3] == mxfp4::CODES
        && ss.as_slice() == &bs[..3];
    if !shaped {
        return Err(Error::invalid(format!(
            "tensors '{}' {} {bs:?} and '{}' {} {ss:?}: expected U8 [experts, rows, blocks, 16] and [experts, rows, blocks]",
            blocks.info.name, blocks.info.dtype, scales.info.name, scales.info.dtype
        )));
    }
    let (e, r, nb) = (bs[0], bs[1], bs[2]);
    let (codes, scale, out_rows) = match rows {
        None => (blocks.data.clone(), scales.data.clone(), r),
        Some(start) => {
            if !r.is_multiple_of(2) {
                return Err(Error::invalid(format!(
                    "tensor '{}': odd gate/up row count {r}",
                    blocks.info.name
                )));
            }
            let order: Vec<u64> = (0..e)
                .flat_map(|x| (0..r / 2).map(move |i| x * r + 2 * i + start))
                .collect();
            let codes: Arc<dyn modelconv_ir::DataSource> =
                Arc::new(RowGather::new(blocks.data.clone(), nb * mxfp4::CODES, order.clone())?);
            let scale: Arc<dyn modelconv_ir::DataSource> = Arc::new(RowGather::new(scales.data.clone(), nb, order)?);
            (codes, scale, r / 2)
        }
    };
    let info = TensorInfo::new(name, DType::MXFP4, vec![e, out_rows, nb * 32])?;
    Tensor::new(info, Arc::new(mxfp4::Repack::new(codes, scale)?))
}
