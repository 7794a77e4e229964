//! llama.cpp's quantization mixes: which tensors get quantized, and to
//! which type, for each file type (`llama_tensor_get_type` in
//! llama.cpp's src/llama-quant.cpp), including the order in which
//! llama-quantize visits (and writes) tensors, since its per-layer
//! counters depend on it.

use modelconv_ir::{DType, Error, Metadata, Result, Value};
use std::cmp::Ordering;

/// A llama.cpp file type (`llama_ftype`): name, id stored in
/// `general.file_type`, and the default tensor type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileType {
    pub name: &'static str,
    pub id: u32,
    pub default: DType,
}

/// The file types this build can produce, as llama-quantize spells them.
pub const FILE_TYPES: &[FileType] = &[
    FileType {
        name: "F32",
        id: 0,
        default: DType::F32,
    },
    FileType {
        name: "F16",
        id: 1,
        default: DType::F16,
    },
    FileType {
        name: "BF16",
        id: 32,
        default: DType::BF16,
    },
    FileType {
        name: "Q4_0",
        id: 2,
        default: DType::Q4_0,
    },
    FileType {
        name: "Q4_1",
        id: 3,
        default: DType::Q4_1,
    },
    FileType {
        name: "Q5_0",
        id: 8,
        default: DType::Q5_0,
    },
    FileType {
        name: "Q5_1",
        id: 9,
        default: DType::Q5_1,
    },
    FileType {
        name: "Q8_0",
        id: 7,
        default: DType::Q8_0,
    },
    FileType {
        name: "Q2_K",
        id: 10,
        default: DType::Q2_K,
    },
    FileType {
        name: "Q3_K_S",
        id: 11,
        default: DType::Q3_K,
    },
    FileType {
        name: "Q3_K_M",
        id: 12,
        default: DType::Q3_K,
    },
    FileType {
        name: "Q3_K_L",
        id: 13,
        default: DType::Q3_K,
    },
    FileType {
        name: "Q4_K_S",
        id: 14,
        default: DType::Q4_K,
    },
    FileType {
        name: "Q4_K_M",
        id: 15,
        default: DType::Q4_K,
    },
    FileType {
        name: "Q5_K_S",
        id: 16,
        default: DType::Q5_K,
    },
    FileType {
        name: "Q5_K_M",
        id: 17,
        default: DType::Q5_K,
    },
    FileType {
        name: "Q6_K",
        id: 18,
        default: DType::Q6_K,
    },
];

/// Tensors llama.cpp keeps in F32 whatever the file's type: 1-D tensors
/// (norms, biases, scales) and `*_norm.weight` (convert_hf_to_gguf.py's
/// rule; its ggml kernels take them as F32).
pub fn stays_f32(name: &str, n_dims: usize) -> bool {
    n_dims <= 1 || name.ends_with("_norm.weight")
}

/// Finds a file type by name, case-insensitively, with llama-quantize's
/// aliases (Q3_K → Q3_K_M, Q4_K → Q4_K_M, Q5_K → Q5_K_M).
pub fn file_type(name: &str) -> Option<FileType> {
    let up = name.to_ascii_uppercase();
    let canonical = match up.as_str() {
        "Q3_K" => "Q3_K_M",
        "Q4_K" => "Q4_K_M",
        "Q5_K" => "Q5_K_M",
        other => other,
    };
    FILE_TYPES.iter().copied().find(|f| f.name == canonical)
}

/// What the user asked for besides the file type.
#[derive(Debug, Clone, Default)]
pub struct MixOptions {
    /// Every quantizable tensor gets the file type's default type.
    pub pure: bool,
    /// `--tensor-type REGEX=TYPE`: first matching pattern wins.
    pub overrides: Vec<(regex::Regex, DType)>,
    pub output_tensor_type: Option<DType>,
    pub token_embedding_type: Option<DType>,
    /// `--leave-output-tensor`: do not quantize output.weight.
    pub leave_output_tensor: bool,
}

/// A tensor as the mix rules see it: name, ggml dims (innermost first), type.
#[derive(Debug, Clone)]
pub struct TensorDesc {
    pub name: String,
    pub ne: Vec<u64>,
    pub dtype: DType,
}

impl TensorDesc {
    /// A tensor's description, with its shape in ggml order.
    pub fn of(info: &modelconv_ir::TensorInfo) -> Self {
        TensorDesc {
            name: info.name.clone(),
            ne: info.shape.iter().rev().copied().collect(),
            dtype: info.dtype,
        }
    }
}

/// The layer of a `blk.N.` tensor, -1 for others.
fn layer_of(name: &str) -> i64 {
    name.strip_prefix("blk.")
        .and_then(|r| r.split('.').next())
        .and_then(|n| n.parse::<i64>().ok())
        .unwrap_or(-1)
}

/// llama.cpp's tensor order: by layer (non-layer tensors first), then name.
pub fn llama_order(a: &str, b: &str) -> Ordering {
    layer_of(a)
        .cmp(&layer_of(b))
        .then_with(|| a.as_bytes().cmp(b.as_bytes()))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Category {
    TokenEmbd,
    AttnQ,
    AttnV,
    AttnK,
    AttnQkv,
    AttnKvB,
    AttnOutput,
    FfnUp,
    FfnGate,
    FfnDown,
    Output,
    Other,
}

fn category(name: &str) -> Category {
    use Category::*;
    if name == "output.weight" {
        return Output;
    }
    if name == "token_embd.weight" || name == "per_layer_token_embd.weight" {
        return TokenEmbd;
    }
    let table = [
        ("attn_qkv.weight", AttnQkv),
        ("attn_kv_b.weight", AttnKvB),
        ("attn_v.weight", AttnV),
        ("attn_k.weight", AttnK),
        ("attn_q.weight", AttnQ),
        ("attn_output.weight", AttnOutput),
        ("ffn_up", FfnUp),
        ("ffn_gate", FfnGate),
        ("ffn_down", FfnDown),
    ];
    table.iter().find(|(s, _)| name.contains(s)).map_or(Other, |(_, c)| *c)
}

fn is_attn_v(c: Category) -> bool {
    matches!(c, Category::AttnV | Category::AttnQkv | Category::AttnKvB)
}

/// Number of dimensions as ggml counts them (trailing 1s do not count).
fn n_dims(ne: &[u64]) -> usize {
    ne.iter().rposition(|&d| d > 1).map_or(1, |i| i + 1)
}

/// Name fragments of tensors llama.cpp never quantizes.
const NEVER_QUANTIZED: &[&str] = &[
    "_norm.weight",
    "ffn_gate_inp.weight",
    "ffn_gate_tid2eid.weight",
    "altup",
    "laurel",
    "per_layer_model_proj",
    "ssm_conv1d",
    "shortconv.conv.weight",
    "indexer.k_proj.weight",
    "indexer.q_proj.weight",
    "time_mix_first.weight",
    "time_mix_w0.weight",
    "time_mix_w1.weight",
    "time_mix_w2.weight",
    "time_mix_v0.weight",
    "time_mix_v1.weight",
    "time_mix_v2.weight",
    "time_mix_a0.weight",
    "time_mix_a1.weight",
    "time_mix_a2.weight",
    "time_mix_g1.weight",
    "time_mix_g2.weight",
    "time_mix_decay_w1.weight",
    "time_mix_decay_w2.weight",
    "time_mix_lerp_fused.weight",
    "attn_rel_b.weight",
    ".position_embd",
    "sam.pos_embd",
    "sam.neck.",
    "sam.net_",
    ".rel_pos",
    ".patch_embd",
    ".patch_merger",
    "a.rvq.codebook",
    "mm.a.code_embd",
];

/// Whether llama.cpp would quantize this tensor at all: 2-D or more
/// `*weight`, not a norm, position/token-type embedding or the other small
/// tensors it leaves alone.
pub fn allows_quantization(name: &str, ne: &[u64], leave_output: bool) -> bool {
    n_dims(ne) >= 2
        && name.ends_with("weight")
        && !(leave_output && name == "output.weight")
        && name != "position_embd.weight"
        && name != "token_types.weight"
        && !NEVER_QUANTIZED.iter().any(|s| name.contains(s))
}

/// Why a quantization to `ft` left this tensor as it was (type `from`,
/// chosen type `to`), in llama.cpp's terms; `None` when it changed.
pub fn kept_reason(name: &str, ne: &[u64], from: DType, to: DType, leave_output: bool) -> Option<String> {
    if to != from {
        return None;
    }
    Some(if n_dims(ne) < 2 {
        "1-D: llama.cpp quantizes only 2-D and larger weights".to_string()
    } else if !name.ends_with("weight") {
        "not a '*.weight' tensor: llama.cpp quantizes only those (llama.cpp names: use a Hugging Face folder or --config)".to_string()
    } else if leave_output && name == "output.weight" {
        "--leave-output-tensor".to_string()
    } else if !allows_quantization(name, ne, leave_output) {
        "llama.cpp never quantizes this tensor (norms, position and token-type embeddings, …)".to_string()
    } else {
        format!("already {from}")
    })
}

/// Model facts the rules look at, read from GGUF metadata.
struct Hparams {
    arch: String,
    n_layer: i64,
    n_head: u64,
    n_head_kv: u64,
    n_expert: u64,
}

impl Hparams {
    fn from_metadata(m: &Metadata, tensors: &[TensorDesc]) -> Self {
        let arch = m
            .get("general.architecture")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let get = |k: &str| {
            m.get(&format!("{arch}.{k}"))
                .and_then(|v| v.as_u64().or_else(|| first_u64(v)))
        };
        let n_layer = get("block_count")
            .map(|v| v as i64)
            .unwrap_or_else(|| tensors.iter().map(|t| layer_of(&t.name)).max().map_or(0, |l| l + 1));
        let n_head = get("attention.head_count").unwrap_or(0);
        let n_head_kv = get("attention.head_count_kv").unwrap_or(n_head);
        let n_expert = get("expert_count").unwrap_or(0);
        Hparams {
            arch,
            n_layer,
            n_head,
            n_head_kv,
            n_expert,
        }
    }
    fn n_gqa(&self) -> u64 {
        self.n_head.checked_div(self.n_head_kv).unwrap_or(0)
    }
    fn is_70b(&self) -> bool {
        self.arch == "llama" && self.n_layer == 80 && self.n_head != self.n_head_kv
    }
    fn falcon(&self) -> bool {
        self.arch == "falcon"
    }
}

/// Per-layer arrays store the first layer's value.
fn first_u64(v: &Value) -> Option<u64> {
    match v {
        Value::Array(a) => a.get(0).as_ref().and_then(Value::as_u64),
        _ => None,
    }
}

fn use_more_bits(i: i64, n: i64) -> bool {
    i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2
}

/// The counters llama-quantize keeps while it walks tensors in order.
#[derive(Default)]
struct State {
    n_attention_wv: i64,
    i_attention_wv: i64,
    i_ffn_down: i64,
    i_ffn_gate: i64,
    i_ffn_up: i64,
    tied_embeddings: bool,
}

/// Picks the type of every tensor (given in llama.cpp order) for file type
/// `ft`. Tensors that are not quantized keep their type.
pub fn choose_types(
    ft: FileType,
    opts: &MixOptions,
    metadata: &Metadata,
    tensors: &[TensorDesc],
) -> Result<Vec<DType>> {
    let hp = Hparams::from_metadata(metadata, tensors);
    let mut st = State {
        tied_embeddings: true,
        ..Default::default()
    };
    for t in tensors {
        let c = category(&t.name);
        if is_attn_v(c) {
            st.n_attention_wv += 1;
        }
        if c == Category::Output {
            st.tied_embeddings = false;
        }
    }
    tensors
        .iter()
        .map(|t| {
            if !allows_quantization(&t.name, &t.ne, opts.leave_output_tensor) {
                return Ok(t.dtype);
            }
            let c = category(&t.name);
            if let (Some(ty), Category::TokenEmbd) = (opts.token_embedding_type, c) {
                return Ok(ty);
            }
            if let (Some(ty), Category::Output) = (opts.output_tensor_type, c) {
                return Ok(ty);
            }
            let mut ty = ft.default;
            if !ty.is_quantized() {
                return Ok(ty);
            }
            let manual = opts
                .overrides
                .iter()
                .find(|(re, _)| re.is_match(&t.name))
                .map(|(_, d)| *d);
            if let Some(m) = manual {
                ty = m;
            } else if !opts.pure {
                ty = standard_type(&mut st, &hp, ft, opts, t, c, ty);
            }
            fallback(t, ty)
        })
        .collect()
}

/// `llama_tensor_get_type_impl` for the file types of [`FILE_TYPES`].
fn standard_type(
    st: &mut State,
    hp: &Hparams,
    ft: FileType,
    opts: &MixOptions,
    t: &TensorDesc,
    c: Category,
    mut ty: DType,
) -> DType {
    use DType::*;
    let f = ft.name;
    let n_expert = hp.n_expert;
    let layer = |counter: i64| -> (i64, i64) {
        if n_expert > 1 {
            (layer_of(&t.name), hp.n_layer)
        } else {
            (counter, hp.n_layer)
        }
    };
    if c == Category::Output || (st.tied_embeddings && c == Category::TokenEmbd) {
        if let Some(o) = opts.output_tensor_type {
            return o;
        }
        let nx = t.ne.first().copied().unwrap_or(0);
        if hp.falcon() || nx % ty.block_size() != 0 {
            ty = Q8_0;
        } else if ty != Q8_0 {
            ty = Q6_K;
        }
    } else if c == Category::TokenEmbd {
        if let Some(e) = opts.token_embedding_type {
            ty = e;
        }
    } else if is_attn_v(c) {
        match f {
            "Q2_K" => ty = if hp.n_gqa() >= 4 { Q4_K } else { Q3_K },
            "Q3_K_M" => ty = if st.i_attention_wv < 2 { Q5_K } else { Q4_K },
            "Q3_K_L" => ty = Q5_K,
            "Q4_K_M" | "Q5_K_M" if use_more_bits(st.i_attention_wv, st.n_attention_wv) => ty = Q6_K,
            "Q4_K_S" if st.i_attention_wv < 4 => ty = Q5_K,
            _ => {}
        }
        if hp.is_70b() && (ty == Q3_K || ty == Q4_K) {
            ty = Q5_K;
        }
        if n_expert == 8 {
            ty = Q8_0;
        }
        st.i_attention_wv += 1;
    } else if c == Category::AttnK {
        if n_expert == 8 {
            ty = Q8_0;
        }
    } else if c == Category::FfnDown {
        let (i, n) = layer(st.i_ffn_down);
        match f {
            "Q2_K" => ty = Q3_K,
            "Q3_K_M" => {
                ty = if i < n / 16 {
                    Q5_K
                } else if !hp.falcon() || use_more_bits(i, n) {
                    Q4_K
                } else {
                    Q3_K
                }
            }
            "Q3_K_L" => ty = if hp.falcon() { Q4_K } else { Q5_K },
            "Q4_K_M" => {
                if hp.falcon() {
                    ty = if i < n / 16 {
                        Q6_K
                    } else if use_more_bits(i, n) {
                        Q5_K
                    } else {
                        Q4_K
                    };
                } else if use_more_bits(i, n) {
                    ty = Q6_K;
                }
            }
            "Q5_K_M" if use_more_bits(i, n) => ty = Q6_K,
            "Q4_K_S" if !hp.falcon() && i < n / 8 => ty = Q5_K,
            _ => {}
        }
        st.i_ffn_down += 1;
    } else if c == Category::AttnOutput {
        if !hp.falcon() {
            if n_expert == 8 {
                if matches!(f, "Q2_K" | "Q3_K_S" | "Q3_K_M" | "Q4_K_S" | "Q4_K_M") {
                    ty = Q5_K;
                }
            } else {
                match f {
                    "Q2_K" => ty = Q3_K,
                    "Q3_K_M" => ty = Q4_K,
                    "Q3_K_L" => ty = Q5_K,
                    _ => {}
                }
            }
        } else if f == "Q3_K_L" {
            ty = Q4_K;
        }
    } else if c == Category::AttnQkv {
        match f {
            "Q3_K_M" | "Q3_K_L" => ty = Q4_K,
            "Q4_K_M" => ty = Q5_K,
            "Q5_K_M" => ty = Q6_K,
            _ => {}
        }
    } else if c == Category::FfnGate {
        st.i_ffn_gate += 1;
    } else if c == Category::FfnUp {
        st.i_ffn_up += 1;
    }
    ty
}

/// A type whose block does not divide the row length falls back to one
/// that does (Q2_K/Q3_K → Q4_0, Q4_K → Q5_0, Q5_K → Q5_1, Q6_K → Q8_0),
/// and to F16 when even that does not fit.
fn fallback(t: &TensorDesc, ty: DType) -> Result<DType> {
    use DType::*;
    let ncols = t.ne.first().copied().unwrap_or(0);
    if ncols % ty.block_size() == 0 {
        return Ok(ty);
    }
    let fb = match ty {
        Q2_K | Q3_K => Q4_0,
        Q4_K => Q5_0,
        Q5_K => Q5_1,
        Q6_K => Q8_0,
        other => {
            return Err(Error::unsupported(format!(
                "tensor '{}': rows of {ncols} do not fit {other} blocks of {}, and llama.cpp defines no fallback for {other}",
                t.name,
                other.block_size()
            )))
        }
    };
    Ok(if ncols % fb.block_size() == 0 { fb } else { F16 })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_is_by_layer_then_name() {
        let mut v = vec!["blk.10.a", "output.weight", "blk.2.b", "blk.2.a", "token_embd.weight"];
        v.sort_by(|a, b| llama_order(a, b));
        assert_eq!(
            v,
            ["output.weight", "token_embd.weight", "blk.2.a", "blk.2.b", "blk.10.a"]
        );
    }

    #[test]
    fn more_bits_pattern() {
        let picks: Vec<i64> = (0..32).filter(|&i| use_more_bits(i, 32)).collect();
        assert_eq!(picks, [0, 1, 2, 3, 6, 9, 12, 15, 18, 21, 24, 27, 28, 29, 30, 31]);
    }

    #[test]
    fn fallbacks() {
        let t = |n| TensorDesc {
            name: "x".into(),
            ne: vec![n, 4],
            dtype: DType::F32,
        };
        assert_eq!(fallback(&t(96), DType::Q4_K).unwrap(), DType::Q5_0);
        assert_eq!(fallback(&t(96), DType::Q6_K).unwrap(), DType::Q8_0);
        assert_eq!(fallback(&t(100), DType::Q3_K).unwrap(), DType::F16);
        assert_eq!(fallback(&t(256), DType::Q3_K).unwrap(), DType::Q3_K);
    }
}
