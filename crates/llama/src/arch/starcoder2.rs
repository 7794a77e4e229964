//! StarCoder2 (StarCoder2Model, a plain TextModel): the decoder with
//! LayerNorms and biases, a two-matrix MLP (`c_fc`, `c_proj`), no Q/K
//! permutation; byte-level BPE.

use super::tables::{DECODER, FFN_NORM, LM_HEAD};
use super::{Architecture, Table, Vocab};
use crate::export::{bias_named, Export, Hparams};
use modelconv_ir::Result;
use serde_json::{Map, Value as Json};

pub struct StarCoder2;

static EXPORT: Export = Export {
    extra: starcoder2_config,
    ..Export::decoder("Starcoder2ForCausalLM", "starcoder2")
};

/// Starcoder2Config's names: `norm_epsilon` for its LayerNorms, `use_bias`
/// for every projection's bias, the tanh GELU; no sliding window (the GGUF
/// carries none, and llama.cpp's starcoder2 graph has none).
fn starcoder2_config(h: &Hparams, c: &mut Map<String, Json>) -> Result<()> {
    if let Some(eps) = h.float("attention.layer_norm_epsilon")? {
        c.insert("norm_epsilon".into(), eps);
    }
    bias_named(c, "use_bias");
    c.insert("hidden_act".into(), Json::from("gelu_pytorch_tanh"));
    c.insert("sliding_window".into(), Json::Null);
    Ok(())
}

/// StarCoder2's MLP.
const MLP: Table = &[
    ("model.layers.{bid}.mlp.c_fc", "blk.{bid}.ffn_up"),
    ("model.layers.{bid}.mlp.c_proj", "blk.{bid}.ffn_down"),
];

impl Architecture for StarCoder2 {
    fn hf_classes(&self) -> &'static [&'static str] {
        &["Starcoder2ForCausalLM"]
    }
    fn name(&self) -> &'static str {
        "starcoder2"
    }
    fn tables(&self) -> &'static [Table] {
        &[DECODER, LM_HEAD, FFN_NORM, MLP]
    }
    fn vocab(&self) -> &'static [Vocab] {
        &[Vocab::Bpe]
    }
    fn export(&self) -> Option<&'static Export> {
        Some(&EXPORT)
    }
}
