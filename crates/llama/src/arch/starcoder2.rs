//! StarCoder2 (StarCoder2Model, a plain TextModel): the decoder with
//! LayerNorms and biases, a two-matrix MLP (`c_fc`, `c_proj`), no Q/K
//! permutation; byte-level BPE.

use super::tables::{DECODER, FFN_NORM, LM_HEAD};
use super::{Architecture, Table, Vocab};

pub struct StarCoder2;

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
}
