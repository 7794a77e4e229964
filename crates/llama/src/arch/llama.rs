//! LLaMA, Mistral and Mixtral (LlamaModel in convert_hf_to_gguf.py): the
//! decoder tables, Q/K rows permuted to llama.cpp's rotary order, Llama
//! 3.1's `rope_freqs`, and Mixtral's experts stacked into 3-D tensors.

use super::tables::{with_model_prefix, DECODER, FFN_NORM, LM_HEAD, MOE_ROUTER};
use super::{
    block_of, join_halves, mapped, permute_qk, put_u32, split_halves, stack_expert, text_parameters, with_hparams,
    Architecture, Computed, Ctx, Held, Table, Vocab, BLOCK_SPARSE_EXPERTS,
};
use crate::config::u32_of;
use crate::export::{take_pair_member, Export, Hparams};
use modelconv_ir::{Error, Metadata, Model, Result, Tensor, Value};
use serde_json::{Map, Value as Json};

/// LlamaModel, and its subclasses that rename the architecture (and for
/// Granite add its multipliers).
pub struct Llama {
    classes: &'static [&'static str],
    name: &'static str,
    kind: Kind,
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Plain,
    Granite,
    /// Granite with fused experts (`block_sparse_moe.input_linear`) and a
    /// fused shared MLP.
    GraniteMoe,
}

static LLAMA_EXPORT: Export = Export {
    unpermute_qk: true,
    moe: Some(&MIXTRAL_EXPORT),
    computed: crate::export::llama3_rope,
    ..Export::decoder("LlamaForCausalLM", "llama")
};

/// A `llama` GGUF with experts: Mixtral's per-expert `w1`/`w2`/`w3`.
static MIXTRAL_EXPORT: Export = Export {
    unpermute_qk: true,
    experts: Some(&BLOCK_SPARSE_EXPERTS),
    extra: mixtral_config,
    ..Export::decoder("MixtralForCausalLM", "mixtral")
};

/// Granite: LLaMA's layout and its four multipliers.
static GRANITE_EXPORT: Export = Export {
    unpermute_qk: true,
    extra: granite_config,
    ..Export::decoder("GraniteForCausalLM", "granite")
};

/// SmolLM3: LLaMA's layout; llama.cpp leaves out RoPE on every fourth
/// layer whatever the config said, so the interval written is 4.
static SMOLLM3_EXPORT: Export = Export {
    unpermute_qk: true,
    computed: crate::export::llama3_rope,
    extra: smollm3_config,
    ..Export::decoder("SmolLM3ForCausalLM", "smollm3")
};

fn smollm3_config(_: &Hparams, c: &mut Map<String, Json>) -> Result<()> {
    c.insert("no_rope_layer_interval".into(), Json::from(4));
    c.insert("use_sliding_window".into(), Json::from(false));
    Ok(())
}

/// Granite-MoE: Granite's layout with the experts' and the shared MLP's
/// gate and up joined back into their `input_linear`; with a shared MLP it
/// is GraniteMoeShared.
static GRANITE_MOE_EXPORT: Export = Export {
    unpermute_qk: true,
    extra: granite_moe_config,
    computed: join_granite_moe_inputs,
    ..Export::decoder("GraniteMoeForCausalLM", "granitemoe")
};

fn granite_moe_config(h: &Hparams, c: &mut Map<String, Json>) -> Result<()> {
    granite_config(h, c)?;
    mixtral_config(h, c)?;
    if let Some(n) = h.opt_uint("expert_shared_feed_forward_length")? {
        c.insert("shared_intermediate_size".into(), Json::from(n));
        c.insert("model_type".into(), Json::from("granitemoeshared"));
        c.insert(
            "architectures".into(),
            serde_json::json!(["GraniteMoeSharedForCausalLM"]),
        );
    }
    Ok(())
}

/// The inverse of [`granite_moe_fused`]: each block's gate and up halves
/// (`ffn_gate_exps` + `ffn_up_exps`, `ffn_gate_shexp` + `ffn_up_shexp`)
/// joined into the `input_linear` GRANITE_MOE_TABLE names. A Granite-MoE
/// without experts (its shared MLP as the plain FFN) is refused.
fn join_granite_moe_inputs(model: &mut Model, h: &Hparams, _: &mut Map<String, Json>) -> Result<()> {
    if h.opt_uint("expert_count")?.unwrap_or(0) == 0 {
        return Err(Error::unsupported(format!(
            "{}: a Granite-MoE GGUF without experts has no way back in this build",
            model.path.display()
        )));
    }
    for (gate, up, joined) in [
        ("ffn_gate_exps", "ffn_up_exps", "ffn_gate_up_exps"),
        ("ffn_gate_shexp", "ffn_up_shexp", "ffn_gate_up_shexp"),
    ] {
        for block in crate::export::blocks_having(model, &format!(".{gate}.weight")) {
            let g = take_pair_member(model, &format!("{block}.{gate}.weight"))?;
            let u = take_pair_member(model, &format!("{block}.{up}.weight"))?;
            model
                .tensors
                .push(join_halves(g, u, format!("{block}.{joined}.weight"))?);
        }
    }
    Ok(())
}

/// GraniteConfig's multipliers, from the keys the conversion wrote them
/// to (absent: the config's default).
fn granite_config(h: &Hparams, c: &mut Map<String, Json>) -> Result<()> {
    for (key, hf) in [
        ("attention.scale", "attention_multiplier"),
        ("embedding_scale", "embedding_multiplier"),
        ("residual_scale", "residual_multiplier"),
        ("logit_scale", "logits_scaling"),
    ] {
        if let Some(v) = h.float(key)? {
            c.insert(hf.into(), v);
        }
    }
    Ok(())
}

/// MixtralConfig's expert counts.
fn mixtral_config(h: &Hparams, c: &mut Map<String, Json>) -> Result<()> {
    c.insert("num_local_experts".into(), Json::from(h.uint("expert_count")?));
    c.insert("num_experts_per_tok".into(), Json::from(h.uint("expert_used_count")?));
    Ok(())
}

pub static LLAMA: Llama = Llama {
    classes: &[
        "LlamaForCausalLM",
        "LLaMAForCausalLM",
        "MistralForCausalLM",
        "MixtralForCausalLM",
        "LlamaModel",
    ],
    name: "llama",
    kind: Kind::Plain,
};

/// SmolLM3Model: LlamaModel as `smollm3` (its no-RoPE layers are
/// llama.cpp's fixed pattern, not a key).
pub static SMOLLM3: Llama = Llama {
    classes: &["SmolLM3ForCausalLM"],
    name: "smollm3",
    kind: Kind::Plain,
};

/// GraniteModel: LlamaModel without `head_dim` (it pops it before the
/// shared keys), then the four multipliers as `attention.scale`,
/// `embedding_scale`, `residual_scale` and `logit_scale`.
pub static GRANITE: Llama = Llama {
    classes: &["GraniteForCausalLM"],
    name: "granite",
    kind: Kind::Granite,
};

/// GraniteMoeModel: Granite's keys plus the shared expert's width; its
/// fused expert and shared-MLP matrices split into gate and up.
pub static GRANITE_MOE: Llama = Llama {
    classes: &["GraniteMoeForCausalLM", "GraniteMoeSharedForCausalLM"],
    name: "granitemoe",
    kind: Kind::GraniteMoe,
};

/// GraniteMoe's router and the down matrices it keeps apart.
const GRANITE_MOE_TABLE: Table = &[
    (
        "model.layers.{bid}.block_sparse_moe.router.layer",
        "blk.{bid}.ffn_gate_inp",
    ),
    (
        "model.layers.{bid}.block_sparse_moe.output_linear",
        "blk.{bid}.ffn_down_exps",
    ),
    (
        "model.layers.{bid}.shared_mlp.output_linear",
        "blk.{bid}.ffn_down_shexp",
    ),
    // The way back only: modify_tensors splits these before any lookup.
    (
        "model.layers.{bid}.block_sparse_moe.input_linear",
        "blk.{bid}.ffn_gate_up_exps",
    ),
    (
        "model.layers.{bid}.shared_mlp.input_linear",
        "blk.{bid}.ffn_gate_up_shexp",
    ),
];

impl Architecture for Llama {
    fn hf_classes(&self) -> &'static [&'static str] {
        self.classes
    }
    fn name(&self) -> &'static str {
        self.name
    }
    fn tables(&self) -> &'static [Table] {
        match self.kind {
            Kind::GraniteMoe => &[DECODER, LM_HEAD, FFN_NORM, GRANITE_MOE_TABLE],
            _ => &[DECODER, LM_HEAD, FFN_NORM, MOE_ROUTER],
        }
    }
    fn vocab(&self) -> &'static [Vocab] {
        &[Vocab::SentencePiece, Vocab::Bpe]
    }
    fn reads_add_prefix_space(&self) -> bool {
        true
    }
    fn export(&self) -> Option<&'static Export> {
        // LLaMA itself (Mistral is the same layout), Mixtral, SmolLM3,
        // Granite and Granite-MoE.
        match self.name {
            "llama" => Some(&LLAMA_EXPORT),
            "smollm3" => Some(&SMOLLM3_EXPORT),
            "granite" => Some(&GRANITE_EXPORT),
            "granitemoe" => Some(&GRANITE_MOE_EXPORT),
            _ => None,
        }
    }
    fn filter(&self, name: &str) -> Option<String> {
        Some(name.replace("language_model.", "").replace("text_model.", ""))
    }
    fn canonical(&self, hf_class: &str, name: String) -> String {
        with_model_prefix(&["LlamaModel"], hf_class, name)
    }
    fn set_gguf_parameters(&self, cx: &Ctx, md: &mut Metadata, ft: u32) -> Result<()> {
        if self.kind == Kind::Plain {
            return self.llama_parameters(cx, md, ft);
        }
        with_hparams(
            cx,
            |map| {
                map.remove("head_dim");
            },
            |without| self.llama_parameters(without, md, ft),
        )?;
        let h = &cx.folder.hparams;
        for (hf, key) in [
            ("attention_multiplier", "attention.scale"),
            ("embedding_multiplier", "embedding_scale"),
            ("residual_multiplier", "residual_scale"),
            ("logits_scaling", "logit_scale"),
        ] {
            // Python's `if x := hparams.get(...)`: absent, null and 0 are skipped.
            if let Some(v) = h.opt_f64(&[hf])?.filter(|v| *v != 0.0) {
                md.set(format!("{}.{key}", self.name), Value::F32(v as f32));
            }
        }
        if self.kind == Kind::GraniteMoe {
            if let Some(n) = h.opt_uint(&["shared_intermediate_size"])?.filter(|n| *n != 0) {
                put_u32(md, self.name, "expert_shared_feed_forward_length", n)?;
            }
        }
        Ok(())
    }
    fn extra_tensors(&self, cx: &Ctx, _: &mut Metadata) -> Result<Vec<Computed>> {
        llama3_rope(cx, 8.0)
    }
    fn modify_tensors(&self, cx: &Ctx, hf: &str, t: Tensor, held: &mut Held) -> Result<Vec<Tensor>> {
        if let Some(expert) = BLOCK_SPARSE_EXPERTS.parse(hf) {
            return stack_expert(cx, expert, &["num_local_experts"], t, held);
        }
        if self.kind == Kind::GraniteMoe {
            if let Some(split) = granite_moe_fused(cx, hf, &t)? {
                return Ok(split);
            }
        }
        let mut t = mapped(cx, self, hf, t)?;
        permute_qk(cx, hf, &mut t)?;
        Ok(vec![t])
    }
}

/// GraniteMoeModel.modify_tensors: the experts' `input_linear` split
/// into `ffn_gate_exps` and `ffn_up_exps` (halves of intermediate_size),
/// the shared MLP's into the shared-expert gate and up (or, in a model
/// without experts, the plain FFN, with its `output_linear` as
/// `ffn_down`); None for any other tensor.
fn granite_moe_fused(cx: &Ctx, hf: &str, t: &Tensor) -> Result<Option<Vec<Tensor>>> {
    let h = &cx.folder.hparams;
    let experts = h.opt_uint(&["num_local_experts"])?.is_some_and(|n| n != 0);
    let names = |gate: &str, up: &str| -> Result<(String, String)> {
        let bid = block_of(cx, hf)?;
        Ok((format!("blk.{bid}.{gate}.weight"), format!("blk.{bid}.{up}.weight")))
    };
    if hf.ends_with("block_sparse_moe.input_linear.weight") {
        let (g, u) = names("ffn_gate_exps", "ffn_up_exps")?;
        return split_halves(t, h.uint(&["intermediate_size"])?, g, u).map(Some);
    }
    if hf.ends_with("shared_mlp.input_linear.weight") {
        let (g, u) = if experts {
            names("ffn_gate_shexp", "ffn_up_shexp")?
        } else {
            names("ffn_gate", "ffn_up")?
        };
        return split_halves(t, h.uint(&["shared_intermediate_size"])?, g, u).map(Some);
    }
    if !experts && hf.ends_with("shared_mlp.output_linear.weight") {
        let bid = block_of(cx, hf)?;
        let mut t = t.clone();
        t.info =
            modelconv_ir::TensorInfo::new(format!("blk.{bid}.ffn_down.weight"), t.info.dtype, t.info.shape.clone())?;
        return Ok(Some(vec![t]));
    }
    Ok(None)
}

impl Llama {
    /// LlamaModel.set_gguf_parameters: the shared keys, the vocabulary
    /// size and the rotary dimension (`head_dim`, else hidden / heads).
    fn llama_parameters(&self, cx: &Ctx, md: &mut Metadata, ft: u32) -> Result<()> {
        text_parameters(cx, self.name(), md, ft)?;
        let h = &cx.folder.hparams;
        md.set(
            format!("{}.vocab_size", self.name),
            Value::U32(u32_of("vocab_size", h.uint(&["vocab_size"])?)?),
        );
        let rope_dim = match h.opt_uint(&["head_dim"])? {
            Some(d) => d,
            None => {
                let heads = h.uint(&["num_attention_heads"])?.max(1);
                h.uint(&["hidden_size"])? / heads
            }
        };
        md.set(
            format!("{}.rope.dimension_count", self.name),
            Value::U32(u32_of("head_dim", rope_dim)?),
        );
        Ok(())
    }
}

/// Llama 3.1+'s `rope_type: llama3`: per rotary frequency a scaling
/// factor (`rope_freqs`), computed in f32 step by step as PyTorch does for
/// LlamaModel.generate_extra_tensors (scalars rounded to f32 first);
/// `default_factor` where the config gives none (LLaMA 8, EXAONE 4 16).
pub(super) fn llama3_rope(cx: &Ctx, default_factor: f64) -> Result<Vec<Computed>> {
    let h = &cx.folder.hparams;
    let rope = crate::rope_parameters(h);
    let rope = rope
        .get("full_attention")
        .and_then(Json::as_object)
        .cloned()
        .unwrap_or(rope);
    let is_llama3 = rope
        .get("rope_type")
        .and_then(Json::as_str)
        .is_some_and(|t| t.eq_ignore_ascii_case("llama3"));
    if !is_llama3 {
        return Ok(Vec::new());
    }
    let num = |k: &str, d: f64| rope.get(k).and_then(Json::as_f64).unwrap_or(d);
    let base = num("rope_theta", 10000.0);
    let dim = match h.opt_uint(&["head_dim"])? {
        Some(d) => d,
        None => h.uint(&["hidden_size"])? / h.uint(&["num_attention_heads"])?.max(1),
    };
    if dim == 0 || dim > 1 << 16 {
        return Err(Error::invalid(format!(
            "config.json: rotary dimension {dim} for rope_freqs"
        )));
    }
    let scaling = Llama3Rope {
        factor: num("factor", default_factor),
        low: num("low_freq_factor", 1.0),
        high: num("high_freq_factor", 4.0),
        old_ctx: num("original_max_position_embeddings", 8192.0),
    };
    Ok(vec![("rope_freqs.weight".into(), scaling.factors(base, dim))])
}

/// Llama 3's rope scaling parameters (`rope_parameters` of type llama3).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Llama3Rope {
    pub factor: f64,
    pub low: f64,
    pub high: f64,
    pub old_ctx: f64,
}

impl Llama3Rope {
    /// The `rope_freqs` values for rotary dimension `dim` and base `base`.
    pub fn factors(&self, base: f64, dim: u64) -> Vec<f32> {
        let (low_wavelen, high_wavelen) = (self.old_ctx / self.low, self.old_ctx / self.high);
        let f32_ = |x: f64| x as f32;
        let mut out = Vec::new();
        for i in (0..dim).step_by(2) {
            let e = i as f32 / dim as f32;
            let freq = 1.0f32 / f32_(base).powf(e);
            let wavelen = f32_(2.0 * std::f64::consts::PI) / freq;
            let v = if wavelen < f32_(high_wavelen) {
                1.0
            } else if wavelen > f32_(low_wavelen) {
                f32_(self.factor)
            } else {
                let smooth = (f32_(self.old_ctx) / wavelen - f32_(self.low)) / f32_(self.high - self.low);
                1.0f32 / ((1.0f32 - smooth) / f32_(self.factor) + smooth)
            };
            out.push(v);
        }
        out
    }

    /// The parameters that give `values` exactly, searched over the
    /// values released models use (low 1, 2; high 2, 4, 8; an original
    /// context a power of two from 256 to 1M), the factor being the
    /// largest value: rope_freqs keeps only the factors, config.json
    /// needs the parameters back.
    pub fn recover(values: &[f32], base: f64, dim: u64) -> Option<Llama3Rope> {
        let factor = f64::from(values.iter().copied().fold(f32::MIN, f32::max));
        let lows = [1.0, 2.0, 0.5];
        let highs = [4.0, 2.0, 8.0, 16.0];
        for &low in &lows {
            for &high in highs.iter().filter(|&&h| h > low) {
                for k in 8..=20 {
                    let p = Llama3Rope {
                        factor,
                        low,
                        high,
                        old_ctx: f64::from(1u32 << k),
                    };
                    if p.factors(base, dim) == values {
                        return Some(p);
                    }
                }
            }
        }
        None
    }
}
