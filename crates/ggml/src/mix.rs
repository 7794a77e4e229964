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

/// The file types this build can produce, as llama-quantize spells them
/// (tools/quantize/quantize.cpp's QUANT_OPTIONS, ids from llama.h).
pub const FILE_TYPES: &[FileType] = &[
    FileType::new("F32", 0, DType::F32),
    FileType::new("F16", 1, DType::F16),
    FileType::new("BF16", 32, DType::BF16),
    FileType::new("Q1_0", 40, DType::Q1_0),
    FileType::new("Q2_0", 41, DType::Q2_0),
    FileType::new("Q4_0", 2, DType::Q4_0),
    FileType::new("Q4_1", 3, DType::Q4_1),
    FileType::new("MXFP4_MOE", 38, DType::MXFP4),
    FileType::new("Q5_0", 8, DType::Q5_0),
    FileType::new("Q5_1", 9, DType::Q5_1),
    FileType::new("Q8_0", 7, DType::Q8_0),
    FileType::new("TQ1_0", 36, DType::TQ1_0),
    FileType::new("TQ2_0", 37, DType::TQ2_0),
    FileType::new("IQ2_XXS", 19, DType::IQ2_XXS),
    FileType::new("IQ2_XS", 20, DType::IQ2_XS),
    FileType::new("IQ2_S", 28, DType::IQ2_XS),
    FileType::new("IQ2_M", 29, DType::IQ2_S),
    FileType::new("IQ1_S", 24, DType::IQ1_S),
    FileType::new("IQ1_M", 31, DType::IQ1_M),
    FileType::new("Q2_K", 10, DType::Q2_K),
    FileType::new("Q2_K_S", 21, DType::Q2_K),
    FileType::new("Q3_K_S", 11, DType::Q3_K),
    FileType::new("Q3_K_M", 12, DType::Q3_K),
    FileType::new("Q3_K_L", 13, DType::Q3_K),
    FileType::new("IQ3_XXS", 23, DType::IQ3_XXS),
    FileType::new("IQ3_S", 26, DType::IQ3_S),
    FileType::new("IQ3_M", 27, DType::IQ3_S),
    FileType::new("IQ3_XS", 22, DType::IQ3_S),
    FileType::new("IQ4_NL", 25, DType::IQ4_NL),
    FileType::new("IQ4_XS", 30, DType::IQ4_XS),
    FileType::new("Q4_K_S", 14, DType::Q4_K),
    FileType::new("Q4_K_M", 15, DType::Q4_K),
    FileType::new("Q5_K_S", 16, DType::Q5_K),
    FileType::new("Q5_K_M", 17, DType::Q5_K),
    FileType::new("Q6_K", 18, DType::Q6_K),
    // After F32 so that id 0 finds F32, as llama-quantize's table has it.
    COPY,
];

/// `COPY`: every tensor copied as it is, only the metadata rewritten, and
/// `general.file_type` the input's (llama-quantize's `only_copy`).
pub const COPY: FileType = FileType::new("COPY", 0, DType::F32);

/// llama.h's LLAMA_FTYPE_GUESSED: marks a file type the loader inferred
/// from the tensors' types, no `general.file_type` being present.
const FTYPE_GUESSED: u32 = 1024;

impl FileType {
    const fn new(name: &'static str, id: u32, default: DType) -> Self {
        FileType { name, id, default }
    }

    /// Whether this is `COPY` (no tensor changes type).
    pub fn is_copy(&self) -> bool {
        *self == COPY
    }

    /// The file type whose name is `t`'s (what `--dtype T` means), or one
    /// of that default type with no name of its own.
    pub fn default_of(t: DType) -> FileType {
        file_type(t.name()).unwrap_or(FileType::new("", 0, t))
    }
}

/// The file type llama.cpp's model loader gives a file: its
/// `general.file_type` when present, else the file type of the most common
/// tensor type (counted in llama.cpp's tensor order, the first to reach the
/// maximum winning; llama_model_loader's switch, ALL_F32 for a type it
/// does not list) marked LLAMA_FTYPE_GUESSED. What `COPY` writes.
pub fn loader_file_type(metadata: &Metadata, tensors: &[TensorDesc]) -> u32 {
    if let Some(id) = metadata.get("general.file_type").and_then(Value::as_u64) {
        return id as u32;
    }
    let mut counts: Vec<(DType, u32)> = Vec::new();
    let mut most = (DType::F32, 0u32);
    for t in tensors {
        let n = match counts.iter_mut().find(|(d, _)| *d == t.dtype) {
            Some((_, n)) => {
                *n += 1;
                *n
            }
            None => {
                counts.push((t.dtype, 1));
                1
            }
        };
        if n > most.1 {
            most = (t.dtype, n);
        }
    }
    let id = match most.0 {
        DType::Q3_K => 12, // Q3_K_M
        DType::Q4_K => 15, // Q4_K_M
        DType::Q5_K => 17, // Q5_K_M
        DType::NVFP4 => 39,
        // MXFP4 is not in the loader's switch: ALL_F32.
        DType::MXFP4 => 0,
        t => FILE_TYPES.iter().find(|f| f.name == t.name()).map_or(0, |f| f.id),
    };
    id | FTYPE_GUESSED
}

/// The file types whose every tensor must be quantized under an
/// importance matrix (`tensor_requires_imatrix`): the IQ1/IQ2/IQ3_XXS
/// tensors and the Q2_K tensors of a Q2_K_S file, except the token
/// embeddings and the output.
pub fn requires_imatrix(name: &str, to: DType, ft: FileType) -> bool {
    if name == "token_embd.weight" || name == "per_layer_token_embd.weight" || name == "output.weight" {
        return false;
    }
    use DType::*;
    match to {
        IQ3_XXS | IQ2_XXS | IQ2_XS | IQ2_S | IQ1_M | IQ1_S => true,
        Q2_K => ft.name == "Q2_K_S",
        _ => false,
    }
}

/// Tensors llama.cpp keeps in F32 whatever the file's type: 1-D tensors
/// (norms, biases, scales) and `*_norm.weight` (convert_hf_to_gguf.py's
/// rule; its ggml kernels take them as F32).
pub fn stays_f32(name: &str, n_dims: usize) -> bool {
    n_dims <= 1 || name.ends_with("_norm.weight")
}

/// Finds a file type by name, case-insensitively, with llama-quantize's
/// aliases (Q3_K → Q3_K_M, Q4_K → Q4_K_M, Q5_K → Q5_K_M), or by its id
/// in llama.h (`15` is Q4_K_M), as llama-quantize takes either.
pub fn file_type(name: &str) -> Option<FileType> {
    if let Ok(id) = name.parse::<u32>() {
        return FILE_TYPES.iter().copied().find(|f| f.id == id);
    }
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
    /// An importance matrix is given (some rules choose differently then).
    pub has_imatrix: bool,
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
    tensors.iter().map(|t| tensor_type(&mut st, &hp, ft, opts, t)).collect()
}

/// `llama_tensor_get_type`: eligibility, the --token-embedding-type and
/// --output-tensor-type options, --tensor-type patterns, the mix rules,
/// then the fallback for rows that do not divide into blocks.
fn tensor_type(st: &mut State, hp: &Hparams, ft: FileType, opts: &MixOptions, t: &TensorDesc) -> Result<DType> {
    // tensor_allows_quantization: nothing is, for COPY.
    if ft.is_copy() || !allows_quantization(&t.name, &t.ne, opts.leave_output_tensor) {
        return Ok(t.dtype);
    }
    let c = category(&t.name);
    let manual = opts
        .overrides
        .iter()
        .find(|(re, _)| re.is_match(&t.name))
        .map(|(_, d)| *d);
    if let (Some(ty), Category::TokenEmbd) = (opts.token_embedding_type, c) {
        // per_layer_token_embd follows the option unless a pattern names it.
        if t.name != "per_layer_token_embd.weight" || manual.is_none() {
            return Ok(ty);
        }
    }
    if let (Some(ty), Category::Output) = (opts.output_tensor_type, c) {
        return Ok(ty);
    }
    let mut ty = ft.default;
    if !ty.is_quantized() {
        return Ok(ty);
    }
    if let Some(m) = manual {
        ty = m;
    } else if !opts.pure {
        ty = standard_type(st, hp, ft, opts, t, c, ty)?;
    }
    fallback(t, ty)
}

/// The file types of the IQ1/IQ2 family, which share most rules.
fn is_iq1_iq2(f: &str) -> bool {
    matches!(f, "IQ2_XXS" | "IQ2_XS" | "IQ1_S" | "IQ2_S" | "IQ2_M" | "IQ1_M")
}

/// `llama_tensor_get_type_impl`, rule for rule, in its order.
fn standard_type(
    st: &mut State,
    hp: &Hparams,
    ft: FileType,
    opts: &MixOptions,
    t: &TensorDesc,
    c: Category,
    ty: DType,
) -> Result<DType> {
    use DType::*;
    let f = ft.name;
    if hp.arch == "glm5-next"
        && ["attn_q_a", "attn_q_b", "nextn.eh_proj"]
            .iter()
            .any(|s| t.name.contains(s))
        && !matches!(ty, F32 | BF16 | F16)
    {
        return Ok(Q8_0);
    }
    Ok(
        if c == Category::Output || (st.tied_embeddings && c == Category::TokenEmbd) {
            output_type(hp, f, opts, t, ty)
        } else if f == "MXFP4_MOE" {
            let expert_role = matches!(c, Category::FfnUp | Category::FfnGate | Category::FfnDown);
            let experts = t.ne.get(2).copied().unwrap_or(1) > 1;
            if experts && (hp.arch != "bailingmoe3" || expert_role) {
                MXFP4
            } else {
                Q8_0
            }
        } else if c == Category::TokenEmbd {
            token_embd_type(f, opts, ty)
        } else if is_iq1_iq2(f) {
            iq1_iq2_type(st, hp, f, c, ty)
        } else {
            match c {
                _ if is_attn_v(c) => attn_v_type(st, hp, f, opts, ty),
                Category::AttnK => match f {
                    _ if hp.n_expert == 8 => Q8_0,
                    "IQ3_XS" => IQ3_XXS,
                    "IQ3_XXS" => IQ2_S,
                    _ => ty,
                },
                Category::AttnQ => match f {
                    "IQ3_XS" => IQ3_XXS,
                    "IQ3_XXS" => IQ2_S,
                    _ => ty,
                },
                Category::FfnDown => ffn_down_type(st, hp, f, opts, t, ty)?,
                Category::AttnOutput => attn_output_type(hp, f, ty),
                Category::AttnQkv => match f {
                    "Q3_K_M" | "Q3_K_L" | "IQ3_M" => Q4_K,
                    "Q4_K_M" => Q5_K,
                    "Q5_K_M" => Q6_K,
                    _ => ty,
                },
                Category::FfnGate | Category::FfnUp => {
                    let counter = if c == Category::FfnGate {
                        &mut st.i_ffn_gate
                    } else {
                        &mut st.i_ffn_up
                    };
                    let (i, n) = layer_info(hp, *counter, &t.name)?;
                    *counter += 1;
                    if f == "IQ3_XS" && i >= n / 8 && i < 7 * n / 8 {
                        IQ3_XXS
                    } else {
                        ty
                    }
                }
                _ => ty,
            }
        },
    )
}

/// The layer a rule counts with: the running counter, or for a model
/// with experts (whose tensors are not in layer order) the name's layer.
fn layer_info(hp: &Hparams, counter: i64, name: &str) -> Result<(i64, i64)> {
    if hp.n_expert <= 1 {
        return Ok((counter, hp.n_layer));
    }
    let i = layer_of(name);
    if i < 0 || i >= hp.n_layer {
        return Err(Error::invalid(format!(
            "tensor '{name}': its layer is not in [0, {}) (llama.cpp needs blk.N. names for a model with experts)",
            hp.n_layer
        )));
    }
    Ok((i, hp.n_layer))
}

/// output.weight (and a tied token_embd.weight).
fn output_type(hp: &Hparams, f: &str, opts: &MixOptions, t: &TensorDesc, ty: DType) -> DType {
    use DType::*;
    if let Some(o) = opts.output_tensor_type {
        return o;
    }
    let nx = t.ne.first().copied().unwrap_or(0);
    if f == "MXFP4_MOE" || hp.falcon() || nx % ty.block_size() != 0 {
        Q8_0
    } else if matches!(
        f,
        "IQ2_XXS" | "IQ2_XS" | "IQ3_XXS" | "IQ1_S" | "IQ2_S" | "IQ2_M" | "IQ1_M"
    ) {
        Q5_K
    } else if ty != Q8_0 {
        Q6_K
    } else {
        ty
    }
}

fn token_embd_type(f: &str, opts: &MixOptions, ty: DType) -> DType {
    use DType::*;
    if let Some(e) = opts.token_embedding_type {
        return e;
    }
    match f {
        "IQ2_XXS" | "IQ2_XS" | "IQ1_S" | "IQ1_M" => Q2_K,
        "IQ2_S" | "IQ2_M" | "IQ3_XXS" => IQ3_S,
        "TQ1_0" | "TQ2_0" | "Q2_0" => Q4_K,
        _ => ty,
    }
}

fn iq1_iq2_type(st: &mut State, hp: &Hparams, f: &str, c: Category, ty: DType) -> DType {
    use DType::*;
    let iq2_s = matches!(f, "IQ2_S" | "IQ2_M");
    if is_attn_v(c) {
        st.i_attention_wv += 1;
        if hp.n_gqa() >= 4 || hp.n_expert >= 4 {
            Q4_K
        } else if iq2_s {
            IQ3_S
        } else {
            Q2_K
        }
    } else if hp.n_expert == 8 && c == Category::AttnK {
        Q4_K
    } else if c == Category::FfnDown {
        let early = st.i_ffn_down < hp.n_layer / 8;
        st.i_ffn_down += 1;
        match (early, iq2_s) {
            (true, true) => IQ3_S,
            (true, false) => Q2_K,
            _ => ty,
        }
    } else if c == Category::AttnOutput {
        if hp.n_expert == 8 {
            Q5_K
        } else if matches!(f, "IQ1_S" | "IQ1_M") {
            IQ2_XXS
        } else if iq2_s {
            IQ3_S
        } else {
            ty
        }
    } else {
        ty
    }
}

fn attn_v_type(st: &mut State, hp: &Hparams, f: &str, opts: &MixOptions, mut ty: DType) -> DType {
    use DType::*;
    let gqa4 = hp.n_gqa() >= 4;
    match f {
        "Q2_K" => ty = if gqa4 { Q4_K } else { Q3_K },
        "Q2_K_S" if gqa4 => ty = Q4_K,
        "IQ3_XXS" => {
            ty = if gqa4 {
                Q4_K
            } else if !opts.has_imatrix {
                IQ3_S
            } else {
                IQ3_XXS
            }
        }
        "IQ3_XS" | "IQ3_S" if gqa4 => ty = Q4_K,
        "IQ3_M" => ty = Q4_K,
        "Q3_K_M" => ty = if st.i_attention_wv < 2 { Q5_K } else { Q4_K },
        "Q3_K_L" => ty = Q5_K,
        "IQ4_NL" | "IQ4_XS" if gqa4 => ty = Q5_K,
        "Q4_K_M" | "Q5_K_M" if use_more_bits(st.i_attention_wv, st.n_attention_wv) => ty = Q6_K,
        "Q4_K_S" if st.i_attention_wv < 4 => ty = Q5_K,
        _ => {}
    }
    if hp.is_70b() && (ty == Q3_K || ty == Q4_K) {
        ty = Q5_K;
    }
    if hp.n_expert == 8 {
        ty = Q8_0;
    }
    st.i_attention_wv += 1;
    ty
}

fn ffn_down_type(st: &mut State, hp: &Hparams, f: &str, opts: &MixOptions, t: &TensorDesc, ty: DType) -> Result<DType> {
    use DType::*;
    let (i, n) = layer_info(hp, st.i_ffn_down, &t.name)?;
    st.i_ffn_down += 1;
    let falcon = hp.falcon();
    Ok(match f {
        "Q2_K" => Q3_K,
        "Q2_K_S" if i < n / 8 => Q4_K,
        "IQ3_XXS" if !opts.has_imatrix => {
            if i < n / 8 {
                Q4_K
            } else {
                Q3_K
            }
        }
        "Q3_K_M" => {
            if i < n / 16 {
                Q5_K
            } else if !falcon || use_more_bits(i, n) {
                Q4_K
            } else {
                Q3_K
            }
        }
        "IQ3_M" if i < n / 8 || (hp.n_expert == 8 && use_more_bits(i, n)) => Q4_K,
        "Q3_K_L" => {
            if falcon {
                Q4_K
            } else {
                Q5_K
            }
        }
        "Q4_K_M" if falcon => {
            if i < n / 16 {
                Q6_K
            } else if use_more_bits(i, n) {
                Q5_K
            } else {
                Q4_K
            }
        }
        "Q4_K_M" if use_more_bits(i, n) => Q6_K,
        "IQ4_NL" | "IQ4_XS" if i < n / 8 && !opts.has_imatrix => Q5_K,
        "Q5_K_M" if use_more_bits(i, n) => Q6_K,
        "Q4_K_S" if !falcon && i < n / 8 => Q5_K,
        // With an imatrix only, so that a file without one is what it was.
        "Q4_0" if opts.has_imatrix && i < n / 8 => Q4_1,
        "Q5_0" if opts.has_imatrix && i < n / 8 => Q5_1,
        _ => ty,
    })
}

fn attn_output_type(hp: &Hparams, f: &str, ty: DType) -> DType {
    use DType::*;
    if hp.falcon() {
        return if f == "Q3_K_L" { Q4_K } else { ty };
    }
    if hp.n_expert == 8 {
        let raised = [
            "Q2_K", "IQ3_XS", "IQ3_XXS", "Q3_K_S", "Q3_K_M", "IQ4_NL", "Q4_K_S", "Q4_K_M", "IQ3_S", "IQ3_M", "IQ4_XS",
        ];
        return if raised.contains(&f) { Q5_K } else { ty };
    }
    match f {
        "Q2_K" => Q3_K,
        "IQ3_XXS" => IQ3_S,
        "Q3_K_M" | "IQ3_M" => Q4_K,
        "Q3_K_L" => Q5_K,
        _ => ty,
    }
}

/// A type whose block does not divide the row length falls back
/// (`tensor_type_fallback`): the 256-value IQ types to IQ4_NL, Q2_0,
/// Q2_K, Q3_K, TQ1_0 and TQ2_0 to Q4_0, Q4_K → Q5_0, Q5_K → Q5_1,
/// Q6_K → Q8_0, a type of ≤ 32-value blocks stays; and to F16 when even
/// that does not fit.
fn fallback(t: &TensorDesc, ty: DType) -> Result<DType> {
    use DType::*;
    let ncols = t.ne.first().copied().unwrap_or(0);
    if ncols % ty.block_size() == 0 {
        return Ok(ty);
    }
    let fb = match ty {
        IQ1_S | IQ1_M | IQ2_XXS | IQ2_XS | IQ2_S | IQ3_XXS | IQ3_S | IQ4_XS => IQ4_NL,
        Q2_0 | Q2_K | Q3_K | TQ1_0 | TQ2_0 => Q4_0,
        Q4_K => Q5_0,
        Q5_K => Q5_1,
        Q6_K => Q8_0,
        other if other.block_size() <= 32 => other,
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
