//! DeepSeek-V2 and DeepSeek-V3 (DeepseekV2Model in conversion/deepseek.py):
//! multi-head latent attention (the low-rank Q and KV projections and
//! their norms; `kv_b_proj` split per head into `attn_k_b`, transposed, and
//! `attn_v_b`, both 3-D views), a router with V3's score-correction bias,
//! shared experts, the routed experts stacked into 3-D tensors (down,
//! gate, up), multi-token-prediction layers past the block count dropped,
//! the tied output dropped; byte-level BPE. FP8 checkpoints are
//! dequantized before this module sees them ([`crate::fp8`]).

use super::tables::{DECODER, FFN_NORM, LM_HEAD};
use super::{
    block_of, mapped, put_u32, stack_expert, text_parameters, with_hparams, Architecture, Ctx, Held, Table, Vocab,
    MLP_EXPERTS,
};
use crate::export::{decoder_config, take_pair_member, Export, Facts, Hparams};
use modelconv_ir::{view, Error, Metadata, Model, Result, Tensor, TensorInfo, Value};
use serde_json::{json, Map, Value as Json};
use std::sync::Arc;

pub struct DeepseekV2;

/// DeepSeek-V2/V3's way back: the experts split per expert, `kv_b_proj`
/// rebuilt from `attn_k_b` and `attn_v_b`, the router bias renamed back;
/// V3 (sigmoid gating) told apart in config.json.
static EXPORT: Export = Export {
    experts: Some(&MLP_EXPERTS),
    config: deepseek_config,
    computed: join_kv_b,
    fix: router_bias_back,
    ..Export::decoder("DeepseekV2ForCausalLM", "deepseek_v2")
};

/// llama.h's LLAMA_EXPERT_GATING_FUNC_TYPE_SIGMOID (DeepSeek-V3's router).
const GATING_SIGMOID: u64 = 2;

/// DeepseekV2Config / DeepseekV3Config from the GGUF's MLA and MoE keys
/// (the inverse of [`mla_parameters`]): all heads are KV heads again (the
/// GGUF runs MLA as one), the head widths from the MLA key lengths, the
/// router's grouping and scoring, Yarn's rope parameters.
fn deepseek_config(h: &Hparams, facts: &Facts) -> Result<Map<String, Json>> {
    let mut c = decoder_config(h, facts)?;
    let heads = h.uint("attention.head_count")?;
    let rope = h.uint("rope.dimension_count")?;
    let qk = h.uint("attention.key_length_mla")?;
    let nope = qk.checked_sub(rope).ok_or_else(|| {
        Error::invalid(format!(
            "GGUF: MLA key length {qk} is shorter than the rotary part {rope}"
        ))
    })?;
    let opt = |key: &str| -> Result<Json> { Ok(h.opt_uint(key)?.map_or(Json::Null, Json::from)) };
    for (key, v) in [
        ("num_key_value_heads", json!(heads)),
        ("head_dim", json!(rope)),
        ("qk_rope_head_dim", json!(rope)),
        ("qk_nope_head_dim", json!(nope)),
        ("qk_head_dim", json!(qk)),
        ("v_head_dim", json!(h.uint("attention.value_length_mla")?)),
        ("kv_lora_rank", json!(h.uint("attention.kv_lora_rank")?)),
        ("q_lora_rank", opt("attention.q_lora_rank")?),
        ("moe_intermediate_size", json!(h.uint("expert_feed_forward_length")?)),
        ("n_routed_experts", opt("expert_count")?),
        ("num_experts_per_tok", opt("expert_used_count")?),
        (
            "n_shared_experts",
            json!(h.opt_uint("expert_shared_count")?.unwrap_or(0)),
        ),
        ("first_k_dense_replace", json!(h.uint("leading_dense_block_count")?)),
        (
            "routed_scaling_factor",
            h.float("expert_weights_scale")?.unwrap_or(json!(1.0)),
        ),
        (
            "norm_topk_prob",
            json!(h.flag(&format!("{}.expert_weights_norm", h.arch)).unwrap_or(false)),
        ),
        ("n_group", opt("expert_group_count")?),
        ("topk_group", opt("expert_group_used_count")?),
    ] {
        c.insert(key.into(), v);
    }
    let sigmoid = h.opt_uint("expert_gating_func")? == Some(GATING_SIGMOID) || h.has_tensor(".exp_probs_b.");
    if sigmoid {
        c.insert("architectures".into(), json!(["DeepseekV3ForCausalLM"]));
        c.insert("model_type".into(), json!("deepseek_v3"));
        c.insert("scoring_func".into(), json!("sigmoid"));
        c.insert("topk_method".into(), json!("noaux_tc"));
        c.insert("rope_interleave".into(), json!(true));
    } else {
        let grouped = h.opt_uint("expert_group_count")?.is_some_and(|g| g > 1);
        c.insert(
            "topk_method".into(),
            json!(if grouped { "group_limited_greedy" } else { "greedy" }),
        );
    }
    if let Some(yarn) = crate::export::yarn_parameters(h)? {
        c.insert("rope_parameters".into(), yarn);
    }
    Ok(c)
}

/// The inverse of [`split_kv_b`]: per block, `attn_k_b` (`[heads, rank,
/// nope]`) transposed back per head and `attn_v_b` (`[heads, v, rank]`)
/// joined into `attn_kv_b` (`[heads × (nope + v), rank]`), which the table
/// names `kv_b_proj`. Block types are dequantized first (a transpose moves
/// single elements).
fn join_kv_b(model: &mut Model, _: &Hparams, _: &mut Map<String, Json>) -> Result<()> {
    for block in crate::export::blocks_having(model, ".attn_k_b.weight") {
        let mut k = take_pair_member(model, &format!("{block}.attn_k_b.weight"))?;
        let mut v = take_pair_member(model, &format!("{block}.attn_v_b.weight"))?;
        if k.info.dtype != v.info.dtype || k.info.dtype.is_quantized() {
            crate::export::blocks_as_f32(&mut k)?;
            crate::export::blocks_as_f32(&mut v)?;
        }
        model.tensors.push(kv_b_of(&block, &k, &v)?);
    }
    Ok(())
}

fn kv_b_of(block: &str, k: &Tensor, v: &Tensor) -> Result<Tensor> {
    let (&[heads, rank, nope], &[vh, v_dim, vr]) = (&k.info.shape[..], &v.info.shape[..]) else {
        return Err(Error::invalid(format!(
            "'{}' {:?} and '{}' {:?}: MLA's k_b and v_b are 3-D",
            k.info.name, k.info.shape, v.info.name, v.info.shape
        )));
    };
    if vh != heads || vr != rank || k.info.dtype != v.info.dtype {
        return Err(Error::invalid(format!(
            "'{}' {:?} and '{}' {:?} are not one kv_b_proj's halves",
            k.info.name, k.info.shape, v.info.name, v.info.shape
        )));
    }
    let es = k.info.dtype.type_size();
    let k_rows = view::strided(k.data.clone(), es, 0, &[heads, nope, rank], &[rank * nope, 1, nope])?;
    let (joined, _) = view::Concat::new(
        vec![
            (k_rows, vec![heads, nope, rank]),
            (v.data.clone(), vec![heads, v_dim, rank]),
        ],
        es,
        1,
    )?;
    let info = TensorInfo::new(
        format!("{block}.attn_kv_b.weight"),
        k.info.dtype,
        vec![heads * (nope + v_dim), rank],
    )?;
    Tensor::new(info, Arc::new(joined))
}

/// V3's router bias, which the conversion spells as a bias, back under
/// its own name (`e_score_correction_bias`).
fn router_bias_back(_: &Hparams, hf: &str, t: &mut Tensor) -> Result<()> {
    if let Some(stem) = hf.strip_suffix("e_score_correction.bias") {
        t.info = TensorInfo::new(
            format!("{stem}e_score_correction_bias"),
            t.info.dtype,
            t.info.shape.clone(),
        )?;
    }
    Ok(())
}

/// Multi-head latent attention and the MoE block's router and shared experts.
const MLA_MOE: Table = &[
    ("model.layers.{bid}.self_attn.q_a_proj", "blk.{bid}.attn_q_a"),
    ("model.layers.{bid}.self_attn.q_a_layernorm", "blk.{bid}.attn_q_a_norm"),
    ("model.layers.{bid}.self_attn.q_b_proj", "blk.{bid}.attn_q_b"),
    (
        "model.layers.{bid}.self_attn.kv_a_proj_with_mqa",
        "blk.{bid}.attn_kv_a_mqa",
    ),
    (
        "model.layers.{bid}.self_attn.kv_a_layernorm",
        "blk.{bid}.attn_kv_a_norm",
    ),
    // Split into attn_k_b and attn_v_b (split_kv_b); never written whole.
    ("model.layers.{bid}.self_attn.kv_b_proj", "blk.{bid}.attn_kv_b"),
    ("model.layers.{bid}.mlp.gate", "blk.{bid}.ffn_gate_inp"),
    (
        "model.layers.{bid}.mlp.gate.e_score_correction",
        "blk.{bid}.exp_probs_b",
    ),
    (
        "model.layers.{bid}.mlp.shared_experts.gate_proj",
        "blk.{bid}.ffn_gate_shexp",
    ),
    (
        "model.layers.{bid}.mlp.shared_experts.up_proj",
        "blk.{bid}.ffn_up_shexp",
    ),
    (
        "model.layers.{bid}.mlp.shared_experts.down_proj",
        "blk.{bid}.ffn_down_shexp",
    ),
];

impl Architecture for DeepseekV2 {
    fn hf_classes(&self) -> &'static [&'static str] {
        &["DeepseekV2ForCausalLM", "DeepseekV3ForCausalLM"]
    }
    fn name(&self) -> &'static str {
        "deepseek2"
    }
    fn tables(&self) -> &'static [Table] {
        &[DECODER, LM_HEAD, FFN_NORM, MLA_MOE]
    }
    fn export(&self) -> Option<&'static Export> {
        Some(&EXPORT)
    }
    fn vocab(&self) -> &'static [Vocab] {
        &[Vocab::Bpe]
    }
    /// TextModel's keys with one KV head (MLA runs as multi-query) and the
    /// RMS epsilon defaulting to 1e-6, then the MLA and MoE keys.
    fn set_gguf_parameters(&self, cx: &Ctx, md: &mut Metadata, ft: u32) -> Result<()> {
        let edit = |m: &mut serde_json::Map<String, Json>| {
            m.insert("num_key_value_heads".into(), Json::from(1));
            if !m.contains_key("rms_norm_eps") {
                m.insert("rms_norm_eps".into(), Json::from(1e-6));
            }
        };
        with_hparams(cx, edit, |cx| text_parameters(cx, "deepseek2", md, ft))?;
        mla_parameters(cx, md)
    }
    fn modify_tensors(&self, cx: &Ctx, hf: &str, t: Tensor, held: &mut Held) -> Result<Vec<Tensor>> {
        let h = &cx.folder.hparams;
        if hf == "lm_head.weight" && h.get("tie_word_embeddings") == Some(&Json::Bool(true)) {
            return Ok(Vec::new());
        }
        // Multi-token-prediction layers (V3's `num_nextn_predict_layers`)
        // come after the last block; llama.cpp does not run them yet.
        let layer = hf.strip_prefix("model.layers.").and_then(|r| r.split('.').next());
        if layer
            .and_then(|b| b.parse::<u64>().ok())
            .is_some_and(|b| b >= cx.block_count)
        {
            return Ok(Vec::new());
        }
        if let Some(e) = MLP_EXPERTS.parse(hf) {
            return stack_expert(cx, e, &["n_routed_experts"], t, held);
        }
        if hf.ends_with("self_attn.kv_b_proj.weight") {
            // mapped: the type and block checks every weight gets.
            return split_kv_b(cx, hf, &mapped(cx, self, hf, t)?);
        }
        Ok(vec![mapped(cx, self, hf, t)?])
    }
}

/// The keys DeepseekV2Model adds after TextModel's, in its order.
fn mla_parameters(cx: &Ctx, md: &mut Metadata) -> Result<()> {
    let h = &cx.folder.hparams;
    let a = "deepseek2";
    let u = |md: &mut Metadata, key: &str, v: u64| put_u32(md, a, key, v);
    let has_moe = h.opt_uint(&["n_routed_experts"])?.is_some();
    let dense = match h.opt_uint(&["first_k_dense_replace"])? {
        Some(n) => n,
        None if has_moe => 0,
        None => h.uint(&["num_hidden_layers"])?,
    };
    u(md, "leading_dense_block_count", dense)?;
    let kv_lora_rank = h.opt_uint(&["kv_lora_rank"])?.unwrap_or(512);
    u(md, "vocab_size", h.uint(&["vocab_size"])?)?;
    if let Some(q) = h.opt_uint(&["q_lora_rank"])? {
        u(md, "attention.q_lora_rank", q)?;
    }
    let rope = h.uint(&["qk_rope_head_dim"])?;
    let nope = h.uint(&["qk_nope_head_dim"])?;
    u(md, "attention.kv_lora_rank", kv_lora_rank)?;
    u(md, "attention.key_length", kv_lora_rank.saturating_add(rope))?;
    u(md, "attention.value_length", kv_lora_rank)?;
    u(md, "attention.key_length_mla", nope.saturating_add(rope))?;
    u(md, "attention.value_length_mla", h.uint(&["v_head_dim"])?)?;
    u(
        md,
        "expert_feed_forward_length",
        h.uint(&["moe_intermediate_size", "intermediate_size"])?,
    )?;
    if let Some(n) = h.opt_uint(&["n_routed_experts"])? {
        u(md, "expert_count", n)?;
    }
    u(
        md,
        "expert_shared_count",
        h.opt_uint(&["n_shared_experts"])?.unwrap_or(0),
    )?;
    if let Some(s) = h.opt_f64(&["routed_scaling_factor"])? {
        md.set(format!("{a}.expert_weights_scale"), Value::F32(s as f32));
    }
    if h.get("norm_topk_prob").is_some_and(truthy) {
        md.set(format!("{a}.expert_weights_norm"), Value::Bool(true));
    }
    u(md, "rope.dimension_count", rope)?;
    if let Some(m) = crate::rope_parameters(h).get("mscale_all_dim").filter(|v| !v.is_null()) {
        let m = m
            .as_f64()
            .ok_or_else(|| Error::invalid(format!("config.json: mscale_all_dim is {m}, expected a number")))?;
        md.set(
            format!("{a}.rope.scaling.yarn_log_multiplier"),
            Value::F32((0.1 * m) as f32),
        );
    }
    Ok(())
}

/// Python truthiness of a config value.
fn truthy(v: &Json) -> bool {
    match v {
        Json::Null => false,
        Json::Bool(b) => *b,
        Json::Number(n) => n.as_f64().is_some_and(|x| x != 0.0),
        Json::String(s) => !s.is_empty(),
        Json::Array(a) => !a.is_empty(),
        Json::Object(o) => !o.is_empty(),
    }
}

/// `kv_b_proj` (`[heads × (nope + v), kv_lora_rank]`) as llama.cpp's MLA
/// absorption wants it: per head, the first `nope` rows transposed into
/// `attn_k_b` (`[heads, rank, nope]`) and the other `v` rows as
/// `attn_v_b` (`[heads, v, rank]`), both strided views.
fn split_kv_b(cx: &Ctx, hf: &str, t: &Tensor) -> Result<Vec<Tensor>> {
    let h = &cx.folder.hparams;
    let bid = block_of(cx, hf)?;
    let heads = h.uint(&["num_key_value_heads"])?;
    let v = h.uint(&["v_head_dim"])?;
    let nope = h.uint(&["qk_nope_head_dim"])?;
    let &[rows, rank] = t.info.shape.as_slice() else {
        return Err(Error::invalid(format!(
            "tensor '{hf}' {:?}: expected 2-D",
            t.info.shape
        )));
    };
    if heads.checked_mul(nope.saturating_add(v)) != Some(rows) {
        return Err(Error::invalid(format!(
            "tensor '{hf}': {rows} rows, not {heads} heads of {nope} + {v}"
        )));
    }
    let es = t.info.dtype.type_size();
    let head = (nope + v) * rank;
    let part = |name: &str, offset: u64, shape: [u64; 3], stride: [u64; 3]| -> Result<Tensor> {
        let data = view::strided(t.data.clone(), es, offset, &shape, &stride)?;
        let info = TensorInfo::new(format!("blk.{bid}.{name}.weight"), t.info.dtype, shape.to_vec())?;
        Tensor::new(info, Arc::clone(&data))
    };
    Ok(vec![
        part("attn_k_b", 0, [heads, rank, nope], [head, 1, rank])?,
        part("attn_v_b", nope * rank, [heads, v, rank], [head, rank, 1])?,
    ])
}
