//! One module per Hugging Face architecture, each an [`Architecture`]: the
//! classes it covers, llama.cpp's name for it, its tensor-name table, and
//! hooks in the spirit of `convert_hf_to_gguf.py`'s classes
//! (`set_gguf_parameters`, `modify_tensors`, `generate_extra_tensors`,
//! `set_vocab`). Behaviour several architectures share (LLaMA's Q/K
//! permutation, Gemma's norm shift, GPT-2's transposed Conv1D weights, the
//! text-model hyper-parameters) is a function here that a hook calls, not
//! a flag. Adding an architecture is one file and one line in [`ARCHES`]
//! (docs/ARCHITECTURE.md walks through Mixtral).

mod bert;
mod cohere;
mod deepseek;
mod exaone4;
mod falcon;
mod gemma2;
mod gemma3;
mod gemma3_vision;
mod glm4;
mod gpt2;
mod gpt_oss;
mod gptneox;
pub(crate) mod llama;
mod olmo2;
mod phi3;
mod qwen;
mod qwen_moe;
mod smolvlm;
mod stablelm;
mod starcoder2;
mod tables;

use crate::config::{read_json, u32_of};
use crate::Folder;
use modelconv_ir::view::{Concat, RowGather};
use modelconv_ir::{DType, Error, Metadata, Result, Tensor, TensorInfo, Value};
use serde_json::Value as Json;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Every architecture this build converts, in the order they are tried.
pub static ARCHES: &[&dyn Architecture] = &[
    &llama::LLAMA,
    &llama::SMOLLM3,
    &llama::GRANITE,
    &llama::GRANITE_MOE,
    &qwen::QWEN2,
    &qwen::QWEN3,
    &bert::Bert,
    &bert::XlmRoberta,
    &bert::ModernBert,
    &gpt2::Gpt2,
    &gemma2::Gemma2,
    &phi3::PHI3,
    &phi3::PHIMOE,
    &gemma3::Gemma3,
    &qwen_moe::QWEN2MOE,
    &qwen_moe::QWEN3MOE,
    &qwen_moe::OLMOE,
    &olmo2::Olmo2,
    &starcoder2::StarCoder2,
    &cohere::CommandR,
    &stablelm::StableLm,
    &falcon::Falcon,
    &deepseek::DeepseekV2,
    &gpt_oss::GptOss,
    &exaone4::Exaone4,
    &glm4::Glm4,
    &gptneox::GptNeoX,
];

/// Every vision projector this build converts (`--mmproj`): the
/// reference's `MmprojModel` subclasses, each found by its HF class.
pub static PROJECTORS: &[&dyn Architecture] = &[&gemma3_vision::Gemma3Vision, &smolvlm::SmolVlm];

/// A tensor-name table: HF stem → GGUF stem; `{bid}` is the block number,
/// `.weight`/`.bias` are carried over.
pub type Table = &'static [(&'static str, &'static str)];

/// A tensor the conversion computes: its GGUF name and F32 values.
pub type Computed = (String, Vec<f32>);

/// How the vocabulary is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Vocab {
    /// SentencePiece `tokenizer.model` → `llama`.
    SentencePiece,
    /// The same, then `add_space_prefix = false` (Gemma).
    SentencePieceNoSpacePrefix,
    /// Phi-3's reading of a SentencePiece model: added tokens from the
    /// tokenizer config and tokenizer.json marked user-defined (control when
    /// special); a `GPT2Tokenizer` class means byte-level BPE instead (Phi-4).
    Phi3,
    /// Byte-level BPE `tokenizer.json` → `gpt2`, with the pre-tokenizer name.
    Bpe,
    /// WordPiece `tokenizer.json` → `bert` (phantom-space tokens).
    WordPiece,
    /// XLM-RoBERTa's SentencePiece unigram `sentencepiece.bpe.model` →
    /// `t5`, with fairseq's four specials in front.
    XlmRobertaUnigram,
    /// ModernBERT's: BOS, EOS and SEP added to every input, then byte-level
    /// BPE.
    BpeAddingSpecials,
    /// GLM-4's: byte-level BPE, then EOS, EOT, UNK and BOS taken from the
    /// added tokens `<|endoftext|>` and `<|user|>` where not already set.
    BpeGlm4,
}

/// What a hook sees of the conversion: the folder and the block count.
pub struct Ctx<'a> {
    pub folder: &'a Folder,
    pub block_count: u64,
}

/// One Hugging Face architecture's conversion. Only the first four are
/// required; the hooks default to what a plain text model does.
pub trait Architecture: Sync {
    /// The Hugging Face classes (config.json `architectures`) it covers.
    fn hf_classes(&self) -> &'static [&'static str];
    /// llama.cpp's architecture name (`general.architecture`).
    fn name(&self) -> &'static str;
    /// Its tensor-name table, in fragments ([`tables`]).
    fn tables(&self) -> &'static [Table];
    /// Tokenizers tried in order; the first whose file is present is used.
    fn vocab(&self) -> &'static [Vocab];
    /// Whether `tokenizer_config.json`'s `add_prefix_space` becomes
    /// `tokenizer.ggml.add_space_prefix`, before the vocabulary: only
    /// LlamaModel's `set_vocab` reads it (conversion/llama.py, at the
    /// reference commit); the other classes never write the key.
    fn reads_add_prefix_space(&self) -> bool {
        false
    }
    /// Whether a LoRA pair follows this conversion by running B through
    /// [`Architecture::modify_tensors`] (every transform a view of the
    /// weight's rows); not so where the conversion transposes (GPT-2).
    fn lora_follows_rows(&self) -> bool {
        true
    }

    /// The HF name as the table spells it (prefixes and old spellings
    /// removed), or `None` for a tensor the conversion drops. Runs before
    /// the shared multimodal filter; [`Architecture::canonical`] after it.
    fn filter(&self, name: &str) -> Option<String> {
        default_filter(name)
    }
    /// The name after the shared filter (a bare base model's names gain
    /// the `model.` prefix the table is written with).
    fn canonical(&self, _hf_class: &str, name: String) -> String {
        name
    }
    /// Every hyper-parameter key and `general.file_type` (id `file_type`),
    /// where the architecture puts them. Written after the general keys.
    fn set_gguf_parameters(&self, cx: &Ctx, md: &mut Metadata, file_type: u32) -> Result<()> {
        text_parameters(cx, self.name(), md, file_type)
    }
    /// Tensors the conversion computes (F32, 1-D, written first), and the
    /// keys that come with them (written right after the architecture).
    fn extra_tensors(&self, _cx: &Ctx, _md: &mut Metadata) -> Result<Vec<Computed>> {
        Ok(Vec::new())
    }
    /// Tensors made from the checkpoint's own bytes before the others are
    /// mapped, written after [`Architecture::extra_tensors`] in the type
    /// they come in (GPT-OSS's MXFP4 experts, which its
    /// generate_extra_tensors adds first); their sources are dropped by
    /// [`Architecture::modify_tensors`]. `tensors`: the model's, in order.
    fn repacked(&self, _cx: &Ctx, _tensors: &[Tensor]) -> Result<Vec<Tensor>> {
        Ok(Vec::new())
    }
    /// Whether a `quantization_config` of method `mxfp4` is read as it is
    /// (GPT-OSS); the other classes refuse it, as the converter's
    /// dequant_model does.
    fn reads_mxfp4(&self) -> bool {
        false
    }
    /// One HF tensor (`hf` its canonical name) to none, one or several
    /// GGUF tensors, each a lazy view of the input, named as llama.cpp
    /// names them. Several HF tensors become one by holding them in `held`
    /// until the last arrives ([`Held::stack`]).
    fn modify_tensors(&self, cx: &Ctx, hf: &str, t: Tensor, held: &mut Held) -> Result<Vec<Tensor>> {
        let _ = held;
        Ok(vec![mapped(cx, self, hf, t)?])
    }
    /// `tensor_force_quant`: the type GGUF tensor `gguf` (HF `hf`) is
    /// written in whatever the output type `out`, where the class decides
    /// it. Vision projectors only; a text model's types follow
    /// [`tensor_type`](crate) alone.
    fn forced_type(&self, _hf: &str, _gguf: &str, _out: DType) -> Option<DType> {
        None
    }
    /// The way back to a Hugging Face folder (`convert x.gguf DIR --to
    /// hf`), where this build has it.
    fn export(&self) -> Option<&'static crate::export::Export> {
        None
    }
}

/// ModelBase.filter_tensors: DeepSeek-V3's router bias spelled as a bias,
/// the multimodal wrapper's `language_model.` dropped.
pub fn default_filter(name: &str) -> Option<String> {
    let name = match name.strip_suffix("e_score_correction_bias") {
        Some(stem) => format!("{stem}e_score_correction.bias"),
        None => name.to_string(),
    };
    Some(name.replace("language_model.", ""))
}

/// The architecture covering a Hugging Face class.
pub fn find(hf: &str) -> Option<&'static dyn Architecture> {
    ARCHES.iter().copied().find(|a| a.hf_classes().contains(&hf))
}

/// Every class name supported, for error messages.
pub fn supported() -> Vec<&'static str> {
    ARCHES.iter().flat_map(|a| a.hf_classes().iter().copied()).collect()
}

/// The class in `known` most like `hf`, for an error's hint: the longest
/// shared prefix, ignoring case (a family's classes share their stem:
/// `Qwen2_5…` → `Qwen2…`), then the fewest single-character edits.
pub fn closest(hf: &str, known: &[&'static str]) -> Option<&'static str> {
    let hf = hf.to_ascii_lowercase();
    known.iter().copied().min_by_key(|k| {
        let k = k.to_ascii_lowercase();
        let prefix = hf.bytes().zip(k.bytes()).take_while(|(a, b)| a == b).count();
        (std::cmp::Reverse(prefix), edit_distance(&hf, &k))
    })
}

/// Levenshtein distance over bytes (class names are ASCII), one row kept.
fn edit_distance(a: &str, b: &str) -> usize {
    let b = b.as_bytes();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.bytes().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let substitute = diagonal + usize::from(ca != cb);
            diagonal = row[j + 1];
            row[j + 1] = substitute.min(row[j] + 1).min(diagonal + 1);
        }
    }
    row[b.len()]
}

/// The vision projector of a Hugging Face multimodal class.
pub fn find_projector(hf: &str) -> Option<&'static dyn Architecture> {
    PROJECTORS.iter().copied().find(|a| a.hf_classes().contains(&hf))
}

/// Every multimodal class whose projector converts, for error messages.
pub fn supported_projectors() -> Vec<&'static str> {
    PROJECTORS.iter().flat_map(|a| a.hf_classes().iter().copied()).collect()
}

/// The GGUF name of HF tensor `name` in `tables`, or `None` when it has no
/// place. The first all-digit part of the name is the block number.
pub fn map_name(tables: &[Table], name: &str) -> Option<String> {
    translate(tables, name, false)
}

/// The Hugging Face name of GGUF tensor `name`: the tables read backwards.
/// A later table wins over an earlier one (a family's own fragment, listed
/// after the shared decoder, renames what the decoder also names:
/// StarCoder2's `c_fc` over `up_proj`); within a table the first entry
/// wins (where two HF names share one, as Falcon-40B's norms do, the
/// first is the family's usual one).
pub fn unmap_name(tables: &[Table], name: &str) -> Option<String> {
    translate(tables, name, true)
}

fn translate(tables: &[Table], name: &str, backwards: bool) -> Option<String> {
    let (stem, suffix) = [".weight", ".bias"]
        .iter()
        .find_map(|s| name.strip_suffix(s).map(|stem| (stem, *s)))?;
    let parts: Vec<&str> = stem.split('.').collect();
    let bid = parts
        .iter()
        .position(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    let key = match bid {
        Some(i) => {
            let mut p = parts.clone();
            p[i] = "{bid}";
            p.join(".")
        }
        None => stem.to_string(),
    };
    let find = |t: &Table| {
        t.iter()
            .map(|&(hf, gguf)| if backwards { (gguf, hf) } else { (hf, gguf) })
            .find(|(from, _)| *from == key)
    };
    let (_, to) = if backwards {
        tables.iter().rev().find_map(find)?
    } else {
        tables.iter().find_map(find)?
    };
    let to = match bid {
        Some(i) => to.replace("{bid}", parts[i]),
        None => to.to_string(),
    };
    Some(to + suffix)
}

/// `t` renamed to its GGUF name (blocks past the block count have none),
/// refusing a tensor with no place or of a type the conversion does not
/// take: the default [`Architecture::modify_tensors`].
pub fn mapped<A: Architecture + ?Sized>(cx: &Ctx, arch: &A, hf: &str, t: Tensor) -> Result<Tensor> {
    renamed(cx, arch, map_name(arch.tables(), hf), t)
}

/// `t` renamed to `name`, the GGUF name a table gave it, refusing a
/// tensor with none, one in a block (`blk.N`, `v.blk.N`) past the block
/// count, or one of a type the conversion does not take.
pub fn renamed<A: Architecture + ?Sized>(cx: &Ctx, arch: &A, name: Option<String>, mut t: Tensor) -> Result<Tensor> {
    let in_range = |n: &String| {
        let parts: Vec<&str> = n.split('.').collect();
        let block = parts.iter().position(|p| *p == "blk").and_then(|i| parts.get(i + 1));
        block
            .and_then(|b| b.parse::<u64>().ok())
            .is_none_or(|b| b < cx.block_count)
    };
    let name = name.filter(in_range).ok_or_else(|| {
        Error::unsupported(format!(
            "tensor '{}' has no place in llama.cpp's {} architecture",
            t.info.name,
            arch.name()
        ))
    })?;
    if !matches!(t.info.dtype, DType::F32 | DType::F16 | DType::BF16) {
        return Err(Error::unsupported(format!(
            "tensor '{}' is {}; GGUF conversion takes F32, F16 and BF16 weights",
            t.info.name, t.info.dtype
        )));
    }
    t.info = TensorInfo::new(name, t.info.dtype, t.info.shape.clone())?;
    Ok(t)
}

/// Tensors held back until the last of a group arrives (MoE experts,
/// stacked into one tensor), keyed by the GGUF name they will have.
#[derive(Default)]
pub struct Held {
    groups: BTreeMap<String, Vec<Option<Tensor>>>,
}

impl Held {
    /// Holds `t` as member `index` of the `count` that make `key`; once all
    /// are in, returns them stacked along a new first axis (a lazy
    /// concatenation, members in index order) named `key`.
    pub fn stack(&mut self, key: &str, index: usize, count: usize, t: Tensor) -> Result<Option<Tensor>> {
        if index >= count {
            return Err(Error::invalid(format!("'{}': member {index} of {count}", t.info.name)));
        }
        let group = self.groups.entry(key.to_string()).or_insert_with(|| vec![None; count]);
        if group.len() != count || group[index].is_some() {
            return Err(Error::invalid(format!(
                "'{}': {key} member {index} given twice",
                t.info.name
            )));
        }
        group[index] = Some(t);
        if group.iter().any(Option::is_none) {
            return Ok(None);
        }
        let members: Vec<Tensor> = self
            .groups
            .remove(key)
            .unwrap_or_default()
            .into_iter()
            .flatten()
            .collect();
        stacked(key, members).map(Some)
    }

    /// Fails when a group is still incomplete at the end (an expert missing).
    pub fn check_empty(&self) -> Result<()> {
        match self.groups.iter().next() {
            None => Ok(()),
            Some((key, g)) => Err(Error::invalid(format!(
                "{key}: {} of {} members present",
                g.iter().flatten().count(),
                g.len()
            ))),
        }
    }
}

/// Same-shape, same-type tensors as one with a new first axis.
fn stacked(name: &str, members: Vec<Tensor>) -> Result<Tensor> {
    let first = members
        .first()
        .ok_or_else(|| Error::invalid(format!("{name}: nothing to stack")))?;
    let (dtype, shape) = (first.info.dtype, first.info.shape.clone());
    if let Some(m) = members.iter().find(|m| m.info.dtype != dtype || m.info.shape != shape) {
        return Err(Error::invalid(format!(
            "{name}: '{}' is {} {:?}, the others {dtype} {shape:?}",
            m.info.name, m.info.dtype, m.info.shape
        )));
    }
    let mut one = vec![1];
    one.extend_from_slice(&shape);
    let parts = members.iter().map(|m| (m.data.clone(), one.clone())).collect();
    let (data, out_shape) = Concat::new(parts, dtype.type_size(), 0)?;
    let info = TensorInfo::new(name.to_string(), dtype, out_shape)?;
    Tensor::new(info, Arc::new(data))
}

/// How an architecture names its per-expert matrices:
/// `model.layers.{bid}.{infix}{xid}.{suffix}`, each suffix joining the
/// stack of a GGUF stem.
pub struct ExpertNames {
    pub infix: &'static str,
    pub stems: &'static [(&'static str, &'static str)],
}

/// Mixtral's and PhiMoE's
/// `model.layers.{bid}.block_sparse_moe.experts.{xid}.{w1|w2|w3}.weight`.
pub const BLOCK_SPARSE_EXPERTS: ExpertNames = ExpertNames {
    infix: "block_sparse_moe.experts.",
    stems: &[
        ("w1.weight", "ffn_gate_exps"),
        ("w2.weight", "ffn_down_exps"),
        ("w3.weight", "ffn_up_exps"),
    ],
};

/// The Qwen MoE and DeepSeek
/// `model.layers.{bid}.mlp.experts.{xid}.{gate|up|down}_proj.weight`.
pub const MLP_EXPERTS: ExpertNames = ExpertNames {
    infix: "mlp.experts.",
    stems: &[
        ("gate_proj.weight", "ffn_gate_exps"),
        ("up_proj.weight", "ffn_up_exps"),
        ("down_proj.weight", "ffn_down_exps"),
    ],
};

impl ExpertNames {
    /// (bid, xid, stem) of an expert matrix, None for any other tensor.
    pub fn parse(&self, hf: &str) -> Option<(u64, usize, &'static str)> {
        let (bid, rest) = hf.strip_prefix("model.layers.")?.split_once('.')?;
        let (xid, suffix) = rest.strip_prefix(self.infix)?.split_once('.')?;
        let stem = self.stems.iter().find(|(s, _)| *s == suffix)?.1;
        Some((bid.parse().ok()?, xid.parse().ok()?, stem))
    }
}

/// The two halves of a fused `[…, 2 × half, cols]` tensor (gate then up)
/// along its second-to-last axis, named `first` and `second`: row views
/// of it, no copy, as `tensor.split(half, dim=-2)` gives them.
/// The inverse of [`split_halves`]: `first` and `second` (the same type
/// and shape `[…, half, cols]`) joined along their second-to-last axis as
/// whole rows (so in any ggml type) into `[…, 2 × half, cols]`.
pub fn join_halves(first: Tensor, second: Tensor, name: String) -> Result<Tensor> {
    let (dtype, shape) = (first.info.dtype, first.info.shape.clone());
    let n = shape.len();
    if n < 2 || second.info.dtype != dtype || second.info.shape != shape {
        return Err(Error::invalid(format!(
            "'{}' ({} {:?}) and '{}' ({} {:?}) are not two halves of one matrix",
            first.info.name, dtype, shape, second.info.name, second.info.dtype, second.info.shape
        )));
    }
    let outer: u64 = shape[..n - 2].iter().product();
    let rows = outer.saturating_mul(shape[n - 2]).max(1);
    let row_bytes = first.info.byte_len / rows;
    let part = vec![outer, shape[n - 2], 1];
    let (data, _) = Concat::new(
        vec![(first.data.clone(), part.clone()), (second.data.clone(), part)],
        row_bytes,
        1,
    )?;
    let mut out_shape = shape;
    out_shape[n - 2] *= 2;
    Tensor::new(TensorInfo::new(name, dtype, out_shape)?, Arc::new(data))
}

pub fn split_halves(t: &Tensor, half: u64, first: String, second: String) -> Result<Vec<Tensor>> {
    let shape = &t.info.shape;
    let n = shape.len();
    if n < 2 || half == 0 || shape[n - 2] != half.saturating_mul(2) {
        return Err(Error::invalid(format!(
            "tensor '{}' {shape:?}: expected its second-to-last axis to be 2 x {half}",
            t.info.name
        )));
    }
    if !matches!(t.info.dtype, DType::F32 | DType::F16 | DType::BF16) {
        return Err(Error::unsupported(format!(
            "tensor '{}' is {}; GGUF conversion takes F32, F16 and BF16 weights",
            t.info.name, t.info.dtype
        )));
    }
    let outer: u64 = shape[..n - 2].iter().product();
    let rows = outer.saturating_mul(2 * half).max(1);
    let row_bytes = t.info.byte_len / rows;
    let mut out_shape = shape.clone();
    out_shape[n - 2] = half;
    [(first, 0), (second, half)]
        .into_iter()
        .map(|(name, skip)| {
            let order = (0..outer)
                .flat_map(|o| (0..half).map(move |r| o * 2 * half + skip + r))
                .collect();
            let data = RowGather::new(t.data.clone(), row_bytes, order)?;
            Tensor::new(TensorInfo::new(name, t.info.dtype, out_shape.clone())?, Arc::new(data))
        })
        .collect()
}

/// The block number of `model.layers.{bid}.…`, checked against the block
/// count.
pub fn block_of(cx: &Ctx, hf: &str) -> Result<u64> {
    let bid = hf
        .strip_prefix("model.layers.")
        .and_then(|r| r.split('.').next())
        .and_then(|b| b.parse::<u64>().ok())
        .ok_or_else(|| Error::invalid(format!("tensor '{hf}': no block number")))?;
    if bid >= cx.block_count {
        return Err(Error::unsupported(format!(
            "tensor '{hf}': block {bid} past the {} blocks of the config",
            cx.block_count
        )));
    }
    Ok(bid)
}

/// Holds expert `xid`'s matrix of block `bid` until the block's experts
/// of its kind (as many as the first of `count_keys` in the config says)
/// are all in, then gives them stacked into `blk.{bid}.{stem}.weight`
/// (a view over the HF tensors, experts in index order), as the
/// converter's `torch.stack(datas, dim=0)` does.
pub fn stack_expert(
    cx: &Ctx,
    (bid, xid, stem): (u64, usize, &'static str),
    count_keys: &[&str],
    t: Tensor,
    held: &mut Held,
) -> Result<Vec<Tensor>> {
    if bid >= cx.block_count {
        return Err(Error::unsupported(format!(
            "tensor '{}': block {bid} past the {} blocks of the config",
            t.info.name, cx.block_count
        )));
    }
    let n = cx.folder.hparams.uint(count_keys)?;
    let n = usize::try_from(n).map_err(|_| Error::invalid(format!("{}: {n} experts", count_keys[0])))?;
    Ok(held
        .stack(&format!("blk.{bid}.{stem}.weight"), xid, n, t)?
        .into_iter()
        .collect())
}

/// Runs `f` on a copy of the conversion whose config.json is changed by
/// `edit` (a converter class that pops or overrides hparams before the
/// shared keys are written: Granite's `head_dim`, Command-R's context).
pub fn with_hparams<T>(
    cx: &Ctx,
    edit: impl FnOnce(&mut serde_json::Map<String, Json>),
    f: impl FnOnce(&Ctx) -> Result<T>,
) -> Result<T> {
    let mut map = cx.folder.hparams.map.clone();
    edit(&mut map);
    let folder = crate::Folder {
        dir: cx.folder.dir.clone(),
        hparams: crate::config::Hparams { map },
        arch: cx.folder.arch,
        hf_arch: cx.folder.hf_arch.clone(),
        adapter: cx.folder.adapter.clone(),
        mmproj: cx.folder.mmproj,
        vocab_pre: cx.folder.vocab_pre.clone(),
    };
    f(&Ctx {
        folder: &folder,
        block_count: cx.block_count,
    })
}

/// Sets `{arch}.{key}` to `v` as a u32, refusing what does not fit.
pub fn put_u32(md: &mut Metadata, arch: &str, key: &str, v: u64) -> Result<()> {
    md.set(format!("{arch}.{key}"), Value::U32(u32_of(key, v)?));
    Ok(())
}

/// The keys every text model writes (TextModel.set_gguf_parameters), then
/// `general.file_type`.
pub fn text_parameters(cx: &Ctx, arch: &str, md: &mut Metadata, file_type: u32) -> Result<()> {
    crate::common_params(cx.folder, arch, cx.block_count, md)?;
    md.set("general.file_type", Value::U32(file_type));
    Ok(())
}

/// LLaMA's rotary layout: Q and K rows (weights and biases) permuted per
/// head, HF storing the two rotary halves apart and llama.cpp interleaved.
pub fn permute_qk(cx: &Ctx, hf: &str, t: &mut Tensor) -> Result<()> {
    let h = &cx.folder.hparams;
    let n_head = h.uint(&["n_heads", "num_attention_heads"])?;
    let heads = if hf.ends_with("q_proj.weight") || hf.ends_with("q_proj.bias") {
        n_head
    } else if hf.ends_with("k_proj.weight") || hf.ends_with("k_proj.bias") {
        h.opt_uint(&["n_kv_heads", "num_key_value_heads"])?.unwrap_or(n_head)
    } else {
        return Ok(());
    };
    let rows = t.info.shape.first().copied().unwrap_or(0);
    let order = permute_rows(rows, heads).map_err(|e| e.for_tensor(hf))?;
    let row_bytes = t.info.byte_len / rows.max(1);
    t.data = Arc::new(RowGather::new(t.data.clone(), row_bytes, order)?);
    t.location = None;
    Ok(())
}

/// Rows `0..rows` of a Q or K weight in llama.cpp's rotary order: per head,
/// the two halves interleaved (`reshape(n_head, 2, d/2, …).swapaxes(1, 2)`).
pub(crate) fn permute_rows(rows: u64, n_head: u64) -> Result<Vec<u64>> {
    if n_head == 0 || n_head > rows || !rows.is_multiple_of(2 * n_head) {
        return Err(Error::invalid(format!(
            "{rows} rows do not split into {n_head} heads of two rotary halves"
        )));
    }
    let half = rows / n_head / 2;
    let mut out = Vec::with_capacity(rows as usize);
    for h in 0..n_head {
        for i in 0..half {
            for j in 0..2 {
                out.push(h * 2 * half + j * half + i);
            }
        }
    }
    Ok(out)
}

/// A 2-D weight stored (in, out), as GPT-2's Conv1D does: transposed (a
/// strided view).
pub fn transpose(t: &mut Tensor) -> Result<()> {
    if let &[rows, cols] = &t.info.shape[..] {
        let es = t.info.dtype.type_size();
        t.data = modelconv_ir::view::strided(t.data.clone(), es, 0, &[cols, rows], &[1, cols])?;
        t.info.shape = vec![cols, rows];
        t.info = TensorInfo::new(t.info.name.clone(), t.info.dtype, t.info.shape.clone())?;
        t.location = None;
    }
    Ok(())
}

/// Gemma's norm weights, stored as `w - 1`, written as `w` (F32).
pub fn norm_plus_one(hf: &str, t: &mut Tensor) -> Result<()> {
    norm_shift(hf, t, 1.0)
}

/// The way back: a GGUF's Gemma norm `w` written as `w - 1` (F32).
pub fn norm_minus_one(_: &crate::export::Hparams, hf: &str, t: &mut Tensor) -> Result<()> {
    norm_shift(hf, t, -1.0)
}

fn norm_shift(hf: &str, t: &mut Tensor, delta: f32) -> Result<()> {
    if hf.ends_with("norm.weight") {
        t.data = Arc::new(crate::shift::NormShift::new(t.data.clone(), t.info.dtype, delta)?);
        t.info = TensorInfo::new(t.info.name.clone(), DType::F32, t.info.shape.clone())?;
        t.location = None;
    }
    Ok(())
}

/// `pooling_type` from a sentence-transformers `modules.json` pooling
/// module, when there is one (`_try_set_pooling_type`).
pub fn pooling(cx: &Ctx, arch: &str, md: &mut Metadata) -> Result<()> {
    if let Some(ty) = sentence_pooling(cx)? {
        md.set(format!("{arch}.pooling_type"), Value::U32(ty));
    }
    // The pooling before a classification head (ModernBERT's).
    if let Some(p) = cx.folder.hparams.get("classifier_pooling").filter(|v| !v.is_null()) {
        let ty = match p.as_str() {
            Some("mean") => 1,
            Some("cls") => 2,
            _ => {
                return Err(Error::unsupported(format!(
                    "config.json: classifier_pooling {p} (llama.cpp has cls and mean)"
                )))
            }
        };
        md.set(format!("{arch}.classifier.pooling_type"), Value::U32(ty));
    }
    Ok(())
}

/// llama.cpp's pooling type (1 mean, 2 cls, 3 last) of the
/// sentence-transformers pooling module, when the folder has one.
fn sentence_pooling(cx: &Ctx) -> Result<Option<u32>> {
    let f = cx.folder;
    let Some(Json::Array(modules)) = read_json(&f.dir.join("modules.json"))? else {
        return Ok(None);
    };
    let Some(path) = modules
        .iter()
        .find(|m| {
            m.get("type")
                .and_then(Json::as_str)
                .is_some_and(|t| t.ends_with("Pooling"))
        })
        .and_then(|m| m.get("path").and_then(Json::as_str))
    else {
        return Ok(None);
    };
    let cfg_path = f.dir.join(path).join("config.json");
    let cfg = read_json(&cfg_path)?.unwrap_or(Json::Null);
    let on = |k: &str| cfg.get(k).and_then(Json::as_bool).unwrap_or(false);
    let ty = if on("pooling_mode_mean_tokens") {
        1
    } else if on("pooling_mode_cls_token") {
        2
    } else if on("pooling_mode_lasttoken") {
        3
    } else {
        match cfg.get("pooling_mode").and_then(Json::as_str) {
            Some("mean") => 1,
            Some("cls") => 2,
            Some("lasttoken") => 3,
            _ => {
                return Err(Error::unsupported(format!(
                    "{}: only mean, cls and last-token pooling are supported",
                    cfg_path.display()
                )))
            }
        }
    };
    Ok(Some(ty))
}

#[cfg(test)]
mod tests {
    use super::*;
    use modelconv_ir::MemSource;

    fn f32_tensor(name: &str, values: &[f32]) -> Tensor {
        let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        let info = TensorInfo::new(name.to_string(), DType::F32, vec![values.len() as u64]).unwrap();
        Tensor::new(info, Arc::new(MemSource::new(bytes))).unwrap()
    }

    #[test]
    fn held_members_stack_in_index_order_once_all_are_in() {
        let mut held = Held::default();
        let key = "blk.0.ffn_up_exps.weight";
        assert!(held.stack(key, 1, 2, f32_tensor("e1", &[3.0, 4.0])).unwrap().is_none());
        assert!(
            held.check_empty().is_err(),
            "an incomplete group is an error at the end"
        );
        let t = held.stack(key, 0, 2, f32_tensor("e0", &[1.0, 2.0])).unwrap().unwrap();
        assert_eq!(t.info.name, key);
        assert_eq!(t.info.shape, vec![2, 2]);
        let bytes = t.read_all().unwrap();
        let values: Vec<f32> = bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        assert_eq!(values, vec![1.0, 2.0, 3.0, 4.0]);
        assert!(held.check_empty().is_ok());
    }

    #[test]
    fn held_refuses_duplicates_and_mismatched_members() {
        let mut held = Held::default();
        assert!(held.stack("k", 2, 2, f32_tensor("e2", &[1.0])).is_err());
        held.stack("k", 0, 3, f32_tensor("e0", &[1.0])).unwrap();
        assert!(held.stack("k", 0, 3, f32_tensor("again", &[1.0])).is_err());
        held.stack("k", 1, 3, f32_tensor("e1", &[1.0])).unwrap();
        assert!(held.stack("k", 2, 3, f32_tensor("wide", &[1.0, 2.0])).is_err());
    }

    #[test]
    fn the_closest_class_shares_the_longest_stem_then_the_fewest_edits() {
        let known = supported();
        assert_eq!(
            closest("Qwen2_5_VLForConditionalGeneration", &known),
            Some("Qwen2ForCausalLM")
        );
        assert_eq!(
            closest("LlamaForSequenceClassification", &known),
            Some("LlamaForCausalLM")
        );
        assert_eq!(
            closest("GPTNeoXJapaneseForCausalLM", &known),
            Some("GPTNeoXForCausalLM")
        );
        assert_eq!(
            closest("MistralForTokenClassification", &known),
            Some("MistralForCausalLM")
        );
        assert_eq!(closest("x", &[]), None);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }

    #[test]
    fn every_class_has_one_architecture() {
        let classes = supported();
        for c in &classes {
            assert_eq!(ARCHES.iter().filter(|a| a.hf_classes().contains(c)).count(), 1, "{c}");
        }
        assert!(classes.len() >= 14);
    }
}
