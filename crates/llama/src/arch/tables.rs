//! Tensor-name table fragments the decoder architectures combine.

use super::Table;

/// The LLaMA-style decoder every `*ForCausalLM` here starts from.
pub const DECODER: Table = &[
    ("model.embed_tokens", "token_embd"),
    ("model.norm", "output_norm"),
    ("model.layers.{bid}.input_layernorm", "blk.{bid}.attn_norm"),
    ("model.layers.{bid}.self_attn.q_proj", "blk.{bid}.attn_q"),
    ("model.layers.{bid}.self_attn.k_proj", "blk.{bid}.attn_k"),
    ("model.layers.{bid}.self_attn.v_proj", "blk.{bid}.attn_v"),
    ("model.layers.{bid}.self_attn.o_proj", "blk.{bid}.attn_output"),
    ("model.layers.{bid}.mlp.gate_proj", "blk.{bid}.ffn_gate"),
    ("model.layers.{bid}.mlp.up_proj", "blk.{bid}.ffn_up"),
    ("model.layers.{bid}.mlp.down_proj", "blk.{bid}.ffn_down"),
];
pub const LM_HEAD: Table = &[("lm_head", "output")];
/// Mixtral's router (its experts are stacked by the module).
pub const MOE_ROUTER: Table = &[("model.layers.{bid}.block_sparse_moe.gate", "blk.{bid}.ffn_gate_inp")];
pub const FFN_NORM: Table = &[("model.layers.{bid}.post_attention_layernorm", "blk.{bid}.ffn_norm")];
pub const QK_NORM: Table = &[
    ("model.layers.{bid}.self_attn.q_norm", "blk.{bid}.attn_q_norm"),
    ("model.layers.{bid}.self_attn.k_norm", "blk.{bid}.attn_k_norm"),
];
/// Gemma's four norms per block (with the decoder's input norm).
pub const GEMMA_NORMS: Table = &[
    (
        "model.layers.{bid}.post_attention_layernorm",
        "blk.{bid}.post_attention_norm",
    ),
    ("model.layers.{bid}.pre_feedforward_layernorm", "blk.{bid}.ffn_norm"),
    (
        "model.layers.{bid}.post_feedforward_layernorm",
        "blk.{bid}.post_ffw_norm",
    ),
];

/// The `model.` prefix a bare base model (`LlamaModel`, `Qwen2Model`)
/// lacks, for the decoder tables.
pub fn with_model_prefix(bare: &[&str], hf_class: &str, name: String) -> String {
    if bare.contains(&hf_class) {
        format!("model.{name}")
    } else {
        name
    }
}
