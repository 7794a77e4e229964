//! Phi-3 (Phi3ForCausalLM): fused qkv and gate_up weights as they are,
//! its own hyper-parameter set, and long-context rope factors as tensors;
//! PhiMoE (PhiMoeModel, a Phi3MiniModel): the same keys then the expert
//! counts, separate Q/K/V, LayerNorms with biases, Mixtral's experts
//! stacked.

use super::tables::{DECODER, FFN_NORM, LM_HEAD, MOE_ROUTER};
use super::{mapped, put_u32, stack_expert, Architecture, Computed, Ctx, Held, Table, Vocab, BLOCK_SPARSE_EXPERTS};
use crate::export::{decoder_config, short_float, take_f32, Export, Facts, Hparams};
use crate::Folder;
use modelconv_ir::{Error, Metadata, Model, Result, Tensor, Value};
use serde_json::{Map, Value as Json};

pub struct Phi3 {
    /// The way back (Phi-3 only).
    export: Option<Export>,
    classes: &'static [&'static str],
    name: &'static str,
    tables: &'static [Table],
    moe: bool,
}

pub static PHI3: Phi3 = Phi3 {
    export: Some(Export {
        extra: phi3_config,
        computed: phi3_long_rope,
        ..Export::decoder("Phi3ForCausalLM", "phi3")
    }),
    classes: &["Phi3ForCausalLM"],
    name: "phi3",
    tables: &[TENSORS],
    moe: false,
};

/// PhiMoE: the converter registers the hub's `PhiMoEForCausalLM`;
/// transformers names the class `PhimoeForCausalLM` (the same model, found
/// by `model_type`); the way back writes the hub's name.
pub static PHIMOE: Phi3 = Phi3 {
    export: Some(Export {
        experts: Some(&BLOCK_SPARSE_EXPERTS),
        config: phimoe_config,
        extra: phi3_config,
        computed: phi3_long_rope,
        ..Export::decoder("PhiMoEForCausalLM", "phimoe")
    }),
    classes: &["PhiMoEForCausalLM", "PhimoeForCausalLM"],
    name: "phimoe",
    tables: &[DECODER, LM_HEAD, FFN_NORM, MOE_ROUTER],
    moe: true,
};

impl Architecture for Phi3 {
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
        &[Vocab::Phi3]
    }
    fn set_gguf_parameters(&self, cx: &Ctx, md: &mut Metadata, ft: u32) -> Result<()> {
        phi3_params(cx.folder, self.name, md, ft)?;
        if self.moe {
            let h = &cx.folder.hparams;
            put_u32(
                md,
                self.name,
                "expert_used_count",
                h.uint(&["num_experts_per_tok", "num_experts_per_token"])?,
            )?;
            put_u32(
                md,
                self.name,
                "expert_count",
                h.uint(&["num_local_experts", "num_experts"])?,
            )?;
        }
        Ok(())
    }
    fn extra_tensors(&self, cx: &Ctx, md: &mut Metadata) -> Result<Vec<Computed>> {
        phi3_extra(cx.folder, self.name, md)
    }
    fn export(&self) -> Option<&'static Export> {
        // (Statics only, as in qwen.rs.)
        [&PHI3, &PHIMOE]
            .into_iter()
            .find(|p| p.name == self.name)
            .and_then(|p| p.export.as_ref())
    }
    fn modify_tensors(&self, cx: &Ctx, hf: &str, t: Tensor, held: &mut Held) -> Result<Vec<Tensor>> {
        if let Some(expert) = BLOCK_SPARSE_EXPERTS.parse(hf).filter(|_| self.moe) {
            return stack_expert(cx, expert, &["num_local_experts", "num_experts"], t, held);
        }
        Ok(vec![mapped(cx, self, hf, t)?])
    }
}

const TENSORS: Table = &[
    ("model.embed_tokens", "token_embd"),
    ("model.norm", "output_norm"),
    ("lm_head", "output"),
    ("model.layers.{bid}.input_layernorm", "blk.{bid}.attn_norm"),
    ("model.layers.{bid}.self_attn.qkv_proj", "blk.{bid}.attn_qkv"),
    ("model.layers.{bid}.self_attn.o_proj", "blk.{bid}.attn_output"),
    ("model.layers.{bid}.post_attention_layernorm", "blk.{bid}.ffn_norm"),
    ("model.layers.{bid}.mlp.gate_up_proj", "blk.{bid}.ffn_up"),
    ("model.layers.{bid}.mlp.down_proj", "blk.{bid}.ffn_down"),
];

/// Phi3Config's keys from the GGUF: the original context, the rotary
/// fraction (`rope.dimension_count` per head of the width), the sliding
/// window (0: none).
fn phi3_config(h: &Hparams, c: &mut Map<String, Json>) -> Result<()> {
    c.insert(
        "original_max_position_embeddings".into(),
        Json::from(h.uint("rope.scaling.original_context_length")?),
    );
    let window = h.opt_uint("attention.sliding_window")?.filter(|w| *w > 0);
    c.insert("sliding_window".into(), window.map_or(Json::Null, Json::from));
    if let Some(Json::Object(rope)) = c.get_mut("rope_parameters") {
        rope.insert("partial_rotary_factor".into(), partial_rotary_factor(h)?);
    }
    Ok(())
}

/// PhimoeConfig's keys: Phi-3's, the expert counts, and the biases its
/// LayerNorm model has on the head (`output.bias`; the attention's are
/// the decoder's `attention_bias`).
fn phimoe_config(h: &Hparams, facts: &Facts) -> Result<Map<String, Json>> {
    let mut c = decoder_config(h, facts)?;
    c.insert("lm_head_bias".into(), Json::from(facts.head_bias));
    c.insert("num_local_experts".into(), Json::from(h.uint("expert_count")?));
    c.insert("num_experts_per_tok".into(), Json::from(h.uint("expert_used_count")?));
    Ok(c)
}

fn partial_rotary_factor(h: &Hparams) -> Result<Json> {
    let heads = h.uint("attention.head_count")?;
    let hidden = h.uint("embedding_length")?.max(1);
    let dims = h.opt_uint("rope.dimension_count")?.unwrap_or(hidden / heads.max(1));
    Ok(Json::from(dims.saturating_mul(heads) as f64 / hidden as f64))
}

/// Phi-3's `rope_factors_long`/`_short` tensors taken back into a
/// `longrope` `rope_parameters` (transformers recomputes the attention
/// factor from the two context lengths, as the conversion computed it).
fn phi3_long_rope(model: &mut Model, h: &Hparams, c: &mut Map<String, Json>) -> Result<()> {
    let long = take_f32(model, "rope_factors_long.weight")?;
    let short = take_f32(model, "rope_factors_short.weight")?;
    let (Some(long), Some(short)) = (long, short) else {
        return Ok(());
    };
    let list = |v: Vec<f32>| Json::Array(v.into_iter().map(short_float).collect());
    let theta = h.float("rope.freq_base")?.unwrap_or(Json::from(10000.0));
    c.insert(
        "rope_parameters".into(),
        serde_json::json!({"rope_type": "longrope", "rope_theta": theta,
            "partial_rotary_factor": partial_rotary_factor(h)?,
            "long_factor": list(long), "short_factor": list(short)}),
    );
    Ok(())
}

/// Phi-3's rotary dimensions: `partial_rotary_factor` of the width, per head.
fn phi3_rope(f: &Folder) -> Result<(serde_json::Map<String, Json>, u64, u64, u64)> {
    let h = &f.hparams;
    let rope = crate::rope_parameters(h);
    let n_embd = h.uint(&["hidden_size", "n_embd"])?;
    let n_head = h.uint(&["num_attention_heads", "n_head"])?.max(1);
    let pct = rope.get("partial_rotary_factor").and_then(Json::as_f64).unwrap_or(1.0);
    let rope_dims = (pct * n_embd as f64) as u64 / n_head;
    let orig = rope
        .get("original_max_position_embeddings")
        .and_then(Json::as_u64)
        .ok_or_else(|| Error::invalid("config.json: original_max_position_embeddings is not given"))?;
    Ok((rope, rope_dims, orig, n_head))
}

/// Phi-3's own hyper-parameter set (Phi3MiniModel.set_gguf_parameters).
fn phi3_params(f: &Folder, arch: &str, md: &mut Metadata, ft: u32) -> Result<()> {
    let h = &f.hparams;
    let (rope, rope_dims, orig, n_head) = phi3_rope(f)?;
    let u = |md: &mut Metadata, key: &str, v: u64| put_u32(md, arch, key, v);
    u(
        md,
        "context_length",
        h.uint(&["n_positions", "max_position_embeddings"])?,
    )?;
    u(md, "rope.scaling.original_context_length", orig)?;
    u(md, "embedding_length", h.uint(&["hidden_size", "n_embd"])?)?;
    u(md, "feed_forward_length", h.uint(&["intermediate_size"])?)?;
    u(
        md,
        "block_count",
        h.uint(&["n_layers", "num_hidden_layers", "n_layer", "num_layers"])?,
    )?;
    u(md, "attention.head_count", n_head)?;
    u(
        md,
        "attention.head_count_kv",
        h.uint(&["num_key_value_heads", "n_head_kv"])?,
    )?;
    let eps = h
        .opt_f64(&["rms_norm_eps"])?
        .ok_or_else(|| Error::invalid("config.json: rms_norm_eps is not given"))?;
    md.set(
        format!("{arch}.attention.layer_norm_rms_epsilon"),
        Value::F32(eps as f32),
    );
    u(md, "rope.dimension_count", rope_dims)?;
    let full = rope.get("full_attention").and_then(Json::as_object).unwrap_or(&rope);
    let theta = full
        .get("rope_theta")
        .and_then(Json::as_f64)
        .ok_or_else(|| Error::invalid("config.json: rope_theta is not given"))?;
    md.set(format!("{arch}.rope.freq_base"), Value::F32(theta as f32));
    md.set("general.file_type", Value::U32(ft));
    u(
        md,
        "attention.sliding_window",
        h.opt_uint(&["sliding_window"])?.unwrap_or(0),
    )?;
    Ok(())
}

/// Phi-3's long-context rope factors, as tensors, and the attention factor.
fn phi3_extra(f: &Folder, arch: &str, md: &mut Metadata) -> Result<Vec<Computed>> {
    let (rope, rope_dims, orig, _) = phi3_rope(f)?;
    let floats = |k: &str| -> Option<Vec<f32>> {
        let a = rope.get(k)?.as_array()?;
        a.iter().map(|v| v.as_f64().map(|x| x as f32)).collect()
    };
    let Some(long) = floats("long_factor").filter(|l| !l.is_empty()) else {
        return Ok(Vec::new());
    };
    let max_pos = f.hparams.uint(&["n_positions", "max_position_embeddings"])? as f64;
    let scale = max_pos / orig as f64;
    let ty = rope
        .get("rope_type")
        .and_then(Json::as_str)
        .unwrap_or("")
        .to_lowercase();
    let attn = match ty.as_str() {
        "su" | "longrope" if scale > 1.0 => (1.0 + scale.ln() / (orig as f64).ln()).sqrt(),
        "yarn" if scale > 1.0 => 0.1 * scale.ln() + 1.0,
        "su" | "longrope" | "yarn" => 1.0,
        "" => return Err(Error::invalid("config.json: rope scaling without a type")),
        other => return Err(Error::unsupported(format!("config.json: rope scaling type {other}"))),
    };
    md.set(format!("{arch}.rope.scaling.attn_factor"), Value::F32(attn as f32));
    let short =
        floats("short_factor").ok_or_else(|| Error::invalid("config.json: long_factor without short_factor"))?;
    if long.len() != short.len() || long.len() as u64 * 2 != rope_dims {
        return Err(Error::invalid(format!(
            "config.json: rope long and short factors must have {} entries (have {} and {})",
            rope_dims / 2,
            long.len(),
            short.len()
        )));
    }
    Ok(vec![
        ("rope_factors_long.weight".into(), long),
        ("rope_factors_short.weight".into(), short),
    ])
}
