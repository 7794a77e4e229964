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
use crate::export::{blocks_as_f32, decoder_config, take_pair_member, Export, Facts, Hparams};
use crate::mxfp4;
use modelconv_ir::view::{strided, Concat, RowGather};
use modelconv_ir::{DType, Error, Metadata, Model, Result, Tensor, TensorInfo};
use serde_json::{json, Map, Value as Json};
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

/// The way back only: the experts joined back under transformers' names
/// ([`join_experts`] makes these GGUF-side names; modify_tensors handles
/// the experts before any lookup on the way in).
const EXPERTS_BACK: Table = &[
    (
        "model.layers.{bid}.mlp.experts.gate_up_proj",
        "blk.{bid}.ffn_gate_up_exps",
    ),
    ("model.layers.{bid}.mlp.experts.down_proj", "blk.{bid}.ffn_down_exps"),
];

/// GPT-OSS's way back, as transformers saves it: float experts `[experts,
/// in, out]` with gate and up interleaved, the sinks as parameters.
static EXPORT: Export = Export {
    config: gpt_oss_config,
    computed: join_experts,
    fix: parameter_names,
    ..Export::decoder("GptOssForCausalLM", "gpt_oss")
};

/// GptOssConfig from the GGUF: the decoder's keys, the experts, the
/// sliding window on every other layer (llama.cpp's pattern of 2: even
/// layers slide), Yarn's rope parameters.
fn gpt_oss_config(h: &Hparams, facts: &Facts) -> Result<Map<String, Json>> {
    let mut c = decoder_config(h, facts)?;
    let layers = h.uint("block_count")?;
    c.insert("intermediate_size".into(), json!(h.uint("expert_feed_forward_length")?));
    c.insert("num_local_experts".into(), json!(h.uint("expert_count")?));
    c.insert("num_experts_per_tok".into(), json!(h.uint("expert_used_count")?));
    c.insert("sliding_window".into(), json!(h.uint("attention.sliding_window")?));
    let types: Vec<&str> = (0..layers)
        .map(|i| {
            if i % 2 == 0 {
                "sliding_attention"
            } else {
                "full_attention"
            }
        })
        .collect();
    c.insert("layer_types".into(), json!(types));
    c.insert("attention_bias".into(), json!(true));
    c.insert("swiglu_limit".into(), json!(7.0));
    if let Some(yarn) = crate::export::yarn_parameters(h)? {
        c.insert("rope_parameters".into(), yarn);
    }
    Ok(c)
}

/// Per block, the inverse of modify_tensors' expert views: `ffn_gate_exps`
/// and `ffn_up_exps` (`[e, f, in]`) transposed and interleaved into
/// `gate_up_proj` (`[e, in, 2f]`), their biases interleaved into
/// `gate_up_proj_bias`, `ffn_down_exps` (`[e, out, f]`) transposed back.
/// Block types (MXFP4, K-quants) are dequantized first: these views move
/// single elements.
fn join_experts(model: &mut Model, _: &Hparams, _: &mut Map<String, Json>) -> Result<()> {
    for block in crate::export::blocks_having(model, ".ffn_gate_exps.weight") {
        let mut take = |stem: &str| -> Result<Tensor> {
            let mut t = take_pair_member(model, &format!("{block}.{stem}"))?;
            blocks_as_f32(&mut t)?;
            Ok(t)
        };
        let (gate, up) = (take("ffn_gate_exps.weight")?, take("ffn_up_exps.weight")?);
        let (gate_b, up_b) = (take("ffn_gate_exps.bias")?, take("ffn_up_exps.bias")?);
        let down = take("ffn_down_exps.weight")?;
        model.tensors.push(interleaved_transposed(
            &gate,
            &up,
            format!("{block}.ffn_gate_up_exps.weight"),
        )?);
        model.tensors.push(interleaved_bias(
            &gate_b,
            &up_b,
            format!("{block}.ffn_gate_up_exps.bias"),
        )?);
        let [e, out, f] = dims3(&down)?;
        model.tensors.push(float_view(
            &down,
            format!("{block}.ffn_down_exps.weight"),
            vec![e, f, out],
            0,
            &[out * f, 1, f],
        )?);
    }
    Ok(())
}

/// Same-type halves `[e, f, in]` as `[e, in, 2f]` with element `(x, i,
/// 2j + k)` from half `k`'s `(x, j, i)`.
fn interleaved_transposed(gate: &Tensor, up: &Tensor, name: String) -> Result<Tensor> {
    let [e, f, h] = dims3(gate)?;
    same_halves(gate, up)?;
    let es = gate.info.dtype.type_size();
    let column = |t: &Tensor| strided(t.data.clone(), es, 0, &[e, h, f, 1], &[f * h, 1, h, 1]);
    let parts = vec![(column(gate)?, vec![e, h, f, 1]), (column(up)?, vec![e, h, f, 1])];
    let (data, _) = Concat::new(parts, es, 3)?;
    Tensor::new(
        TensorInfo::new(name, gate.info.dtype, vec![e, h, 2 * f])?,
        Arc::new(data),
    )
}

/// Same-type biases `[e, f]` as `[e, 2f]`, gate's at even places.
fn interleaved_bias(gate: &Tensor, up: &Tensor, name: String) -> Result<Tensor> {
    same_halves(gate, up)?;
    let &[e, f] = gate.info.shape.as_slice() else {
        return Err(Error::invalid(format!(
            "tensor '{}' {:?}: expected [experts, ff]",
            gate.info.name, gate.info.shape
        )));
    };
    let es = gate.info.dtype.type_size();
    let parts = vec![(gate.data.clone(), vec![e, f, 1]), (up.data.clone(), vec![e, f, 1])];
    let (data, _) = Concat::new(parts, es, 2)?;
    Tensor::new(TensorInfo::new(name, gate.info.dtype, vec![e, 2 * f])?, Arc::new(data))
}

fn same_halves(a: &Tensor, b: &Tensor) -> Result<()> {
    if a.info.dtype != b.info.dtype || a.info.shape != b.info.shape {
        return Err(Error::invalid(format!(
            "'{}' ({} {:?}) and '{}' ({} {:?}) are not gate and up of one block",
            a.info.name, a.info.dtype, a.info.shape, b.info.name, b.info.dtype, b.info.shape
        )));
    }
    Ok(())
}

/// transformers' parameter names, which have no `.weight`: the sinks,
/// the experts' matrices and their `_bias`es.
fn parameter_names(_: &Hparams, hf: &str, t: &mut Tensor) -> Result<()> {
    let name = if let Some(stem) = hf.strip_suffix(".sinks.weight") {
        format!("{stem}.sinks")
    } else if let Some(stem) = hf.strip_suffix("_proj.weight").filter(|_| hf.contains(EXPERTS)) {
        format!("{stem}_proj")
    } else if let Some(stem) = hf.strip_suffix("_proj.bias").filter(|_| hf.contains(EXPERTS)) {
        format!("{stem}_proj_bias")
    } else {
        return Ok(());
    };
    t.info = TensorInfo::new(name, t.info.dtype, t.info.shape.clone())?;
    Ok(())
}

impl Architecture for GptOss {
    fn hf_classes(&self) -> &'static [&'static str] {
        &["GptOssForCausalLM"]
    }
    fn name(&self) -> &'static str {
        "gpt-oss"
    }
    fn tables(&self) -> &'static [Table] {
        &[TENSORS, LM_HEAD, EXPERTS_BACK]
    }
    fn export(&self) -> Option<&'static Export> {
        Some(&EXPORT)
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
