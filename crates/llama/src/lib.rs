//! # modelconv-llama
//!
//! A Hugging Face model folder in llama.cpp's conventions, as
//! `convert_hf_to_gguf.py` writes it: tensor names (`token_embd`,
//! `blk.N.attn_q`, …), the weight transforms llama.cpp expects as lazy
//! views (LLaMA's Q/K row permutation), the tensor types it picks (norms
//! and 1-D tensors F32, the rest the output type), and the metadata:
//! `general.*`, the architecture's hyper-parameters, the tokenizer and its
//! special tokens. [`apply`] rewrites a [`Model`] opened from the folder's
//! weights; no tensor data is read.
//!
//! One table per architecture lives in [`arch`]; tokenizers in [`spm`] and
//! [`special`]; `general.*` heuristics in [`meta`].

pub mod arch;
pub mod bpe;
pub mod card;
pub mod config;
pub mod export;
mod export_card;
mod export_vocab;
mod fp8;
pub mod lora;
pub mod meta;
pub mod mmproj;
mod mxfp4;
mod shift;
pub mod special;
pub mod spm;

use arch::{Architecture, Ctx, Held, Vocab};
use config::{read_json, read_limited, u32_of, Hparams};
use modelconv_ir::{Array, CastSource, DType, Error, Metadata, Model, Result, Strings, Tensor, TensorInfo, Value};
use serde_json::Value as Json;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A Hugging Face model: the folder its side files are in, its
/// hyper-parameters and the architecture table that covers it.
pub struct Folder {
    pub dir: PathBuf,
    pub hparams: Hparams,
    pub arch: &'static dyn Architecture,
    pub hf_arch: String,
    /// A PEFT LoRA adapter for this model, converted instead of its weights.
    pub adapter: Option<lora::Adapter>,
    /// Whether `arch` is a vision projector ([`arch::PROJECTORS`]): the
    /// folder's vision tower and projector are converted, not its text
    /// model (`convert_hf_to_gguf.py --mmproj`).
    pub mmproj: bool,
    /// `tokenizer.ggml.pre` as the user names it (`--vocab-pre`), in place
    /// of the name the check-text hash finds: for a tokenizer.json whose
    /// hash llama.cpp's table lacks but whose pre-tokenizer the user knows.
    pub vocab_pre: Option<String>,
}

impl std::fmt::Debug for Folder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Folder")
            .field("dir", &self.dir)
            .field("hf_arch", &self.hf_arch)
            .field("arch", &self.arch.name())
            .finish()
    }
}

impl Folder {
    /// The model `input` is, when it is a folder with a `config.json`, or
    /// when `config` names one (its folder holds the tokenizer files), or
    /// when `arch` names the model class (the config is then the one in the
    /// input's folder, or beside the weights file). `arch` overrides the
    /// config's `architectures`. `Ok(None)`: not a Hugging Face model (names
    /// are kept as they are).
    pub fn detect(input: &Path, config: Option<&Path>, arch: Option<&str>) -> Result<Option<Folder>> {
        Folder::detect_in(input, config, arch, false)
    }

    /// The vision projector of the multimodal model `input` is, found as
    /// [`Folder::detect`] finds a model, its class looked up in
    /// [`arch::PROJECTORS`]. Unlike [`Folder::detect`], a folder is
    /// required: `--mmproj` on anything else is an error.
    pub fn detect_projector(input: &Path, config: Option<&Path>, arch: Option<&str>) -> Result<Folder> {
        Folder::detect_in(input, config, arch, true)?.ok_or_else(|| {
            Error::invalid(format!(
                "--mmproj: {} is not a Hugging Face model folder (no config.json)",
                input.display()
            ))
        })
    }

    fn detect_in(input: &Path, config: Option<&Path>, arch: Option<&str>, mmproj: bool) -> Result<Option<Folder>> {
        let beside = if input.is_dir() {
            input.join("config.json")
        } else {
            input.parent().unwrap_or(Path::new(".")).join("config.json")
        };
        let config_path = match (config, arch) {
            (Some(c), _) => c.to_path_buf(),
            (None, _) if input.is_dir() && beside.is_file() => beside,
            (None, Some(a)) => {
                if !beside.is_file() {
                    return Err(Error::invalid(format!(
                        "--arch {a}: no config.json beside {} (give one with --config)",
                        input.display()
                    )));
                }
                beside
            }
            (None, None) => return Ok(None),
        };
        let json = read_json(&config_path)?
            .ok_or_else(|| Error::invalid(format!("{}: no such file", config_path.display())))?;
        let hparams = Hparams::from_json(&config_path, json)?;
        let hf_arch = arch.or(hparams.architecture()).map(str::to_string).ok_or_else(|| {
            Error::malformed(
                &config_path,
                "no \"architectures\" list naming the model class (give one with --arch)",
            )
        })?;
        let found = if mmproj {
            arch::find_projector(&hf_arch)
        } else {
            arch::find(&hf_arch)
        };
        let arch = found.ok_or_else(|| {
            let (what, supported) = if mmproj {
                ("has no vision projector conversion", arch::supported_projectors())
            } else {
                ("is not supported for GGUF conversion", arch::supported())
            };
            let hint = arch::closest(&hf_arch, &supported)
                .map(|c| format!("closest known: {c}; "))
                .unwrap_or_default();
            Error::unsupported(format!(
                "{}: architecture {hf_arch} {what} ({hint}supported: {})",
                config_path.display(),
                supported.join(", ")
            ))
        })?;
        let dir = config_path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        Ok(Some(Folder {
            dir,
            hparams,
            arch,
            hf_arch,
            adapter: None,
            mmproj,
            vocab_pre: None,
        }))
    }

    /// The PEFT LoRA adapter `input` is (a folder with an
    /// `adapter_config.json`) for the base model in `base` (or the local
    /// folder the adapter names), its config read as [`Folder::detect`]
    /// reads a model's (`config` and `arch` override it). `Ok(None)`: not an
    /// adapter, and no `base` given.
    pub fn detect_adapter(
        input: &Path,
        base: Option<&Path>,
        config: Option<&Path>,
        arch: Option<&str>,
    ) -> Result<Option<Folder>> {
        let Some(adapter) = lora::Adapter::detect(input)? else {
            return match base {
                Some(_) => Err(Error::invalid(format!(
                    "--base: {} is not a PEFT adapter folder (no adapter_config.json)",
                    input.display()
                ))),
                None => Ok(None),
            };
        };
        let base_dir = adapter.base_dir(base)?;
        let config = config
            .map(Path::to_path_buf)
            .unwrap_or_else(|| base_dir.join("config.json"));
        if !config.is_file() {
            return Err(Error::invalid(format!(
                "{}: no config.json in the base model's folder {}",
                adapter.dir.display(),
                base_dir.display()
            )));
        }
        let mut folder = Folder::detect(&base_dir, Some(&config), arch)?
            .ok_or_else(|| Error::invalid(format!("{}: not a Hugging Face model", base_dir.display())))?;
        folder.adapter = Some(adapter);
        Ok(Some(folder))
    }
}

/// The tensor type of the output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutType {
    /// Each weight in its own float type (F32, F16 or BF16), as
    /// `convert_hf_to_gguf.py --outtype` matching the weights does.
    Source,
    /// One of `convert_hf_to_gguf.py`'s output types: F32, F16, BF16, Q8_0.
    Type(DType),
}

/// The output types `convert_hf_to_gguf.py` offers.
pub const OUT_TYPES: &[DType] = &[DType::F32, DType::F16, DType::BF16, DType::Q8_0];

/// llama.cpp's file type id of an output type.
pub(crate) fn file_type_id(d: DType) -> u32 {
    match d {
        DType::F32 => 0,
        DType::BF16 => 32,
        DType::Q8_0 => 7,
        _ => 1,
    }
}

/// Names `convert_hf_to_gguf.py` drops before mapping: buffers, and the
/// vision/audio towers of multimodal checkpoints (TextModel.filter_tensors).
pub(crate) fn skipped(name: &str) -> bool {
    const PREFIXES: &[&str] = &[
        "mlp",
        "vit.",
        "vpm.",
        "siglip2.",
        "conformer.",
        "merger.",
        "resampler.",
        "sound_encoder.",
        "sound_projection.",
        "speech_embeddings.",
    ];
    const PARTS: &[&str] = &[
        "visual.",
        "vision.",
        "audio.",
        "talker.",
        "vision_",
        "audio_",
        "token2wav.",
        "code2wav.",
        "projector.",
        "pre_mm_projector_norm",
        "image_newline",
        "view_seperator",
        "patch_embed",
        "patch_embedding",
        "patch_merger.",
        "patch_merge_mlp.",
        "model.connector.",
    ];
    is_buffer(name) || PREFIXES.iter().any(|p| name.starts_with(p)) || PARTS.iter().any(|p| name.contains(p))
}

/// Buffers every conversion drops (prepare_tensors: "we don't need these").
pub(crate) fn is_buffer(name: &str) -> bool {
    [".attention.masked_bias", ".attention.bias", ".rotary_emb.inv_freq"]
        .iter()
        .any(|s| name.ends_with(s))
}

/// Whether `name` is a weight gguf-py may write in the output type
/// (`.weight`, `.lora_a`, `.lora_b`); anything else is kept F32.
pub(crate) fn weight_like(name: &str) -> bool {
    [".weight", ".lora_a", ".lora_b"].iter().any(|s| name.ends_with(s))
}

/// The folder's SentencePiece model, when it has one: its path, its pieces,
/// and the vocabulary size the conversion pads to (`vocab_size`, else the
/// piece count).
fn spm_vocab(f: &Folder) -> Result<Option<(PathBuf, Vec<spm::Piece>, u64)>> {
    let path = f.dir.join("tokenizer.model");
    if !path.is_file() {
        return Ok(None);
    }
    let pieces = spm::pieces(&path, &read_limited(&path, spm::MAX_MODEL)?)?;
    let vocab_size = match f.hparams.opt_uint(&["vocab_size_per_layer_input", "vocab_size"])? {
        Some(0) | None => pieces.len() as u64,
        Some(v) => v,
    };
    Ok(Some((path, pieces, vocab_size)))
}

/// The tokenizer's token count as Gemma 3's conversion counts it: the
/// SentencePiece vocabulary (padded to `vocab_size`), or tokenizer.json's
/// vocab plus its added tokens.
fn tokenizer_len(f: &Folder) -> Result<Option<u64>> {
    if let Some((_, _, vocab_size)) = spm_vocab(f)? {
        return Ok(Some(vocab_size));
    }
    let json_path = f.dir.join("tokenizer.json");
    let Some(j) = read_json(&json_path)? else {
        return Ok(None);
    };
    let count = |v: Option<&Json>| match v {
        Some(Json::Object(m)) => m.len() as u64,
        Some(Json::Array(a)) => a.len() as u64,
        _ => 0,
    };
    Ok(Some(
        count(j.get("model").and_then(|m| m.get("vocab"))) + count(j.get("added_tokens")),
    ))
}

/// Drops embedding rows past the tokenizer's last token (a row slice view).
pub(crate) fn trim_rows(f: &Folder, t: &mut Tensor) -> Result<()> {
    let Some(n) = tokenizer_len(f)? else { return Ok(()) };
    let rows = t.info.shape.first().copied().unwrap_or(0);
    if n < rows {
        let es = t.info.dtype.type_size();
        t.data = modelconv_ir::view::slice(t.data.clone(), es, &t.info.shape, 0, 0, n)?;
        t.info.shape[0] = n;
        t.info = TensorInfo::new(t.info.name.clone(), t.info.dtype, t.info.shape.clone())?;
        t.location = None;
    }
    Ok(())
}

/// The type `convert_hf_to_gguf.py` gives tensor `name`: F32 for 1-D
/// tensors, norms, biases and the tensors llama.cpp keeps in F32; `out`
/// otherwise.
fn tensor_type(name: &str, n_dims: usize, out: DType) -> DType {
    const F32_ALWAYS: &[&str] = &["position_embd.weight", "token_types.weight"];
    if modelconv_ggml::mix::stays_f32(name, n_dims)
        || !weight_like(name)
        || F32_ALWAYS.contains(&name)
        || name.ends_with(".ffn_gate_inp.weight")
        || name.ends_with(".ffn_gate_inp_shexp.weight")
    {
        DType::F32
    } else {
        out
    }
}

/// convert_hf_to_gguf.py's tensor order: files in order; in each, the
/// order the file declares (a state dict's), else (safetensors) sorted by
/// name (safetensors' `keys()`, which `load_file` follows too).
pub(crate) fn sort_as_converter(model: &mut Model) {
    let mut files: Vec<Option<PathBuf>> = Vec::new();
    for t in &model.tensors {
        let file = t.location.as_ref().map(|l| l.file.clone());
        if !files.contains(&file) {
            files.push(file);
        }
    }
    let file_index = |t: &Tensor| {
        let file = t.location.as_ref().map(|l| l.file.clone());
        files.iter().position(|x| *x == file).unwrap_or(0)
    };
    if model.declared_order {
        model.tensors.sort_by_key(|t| file_index(t));
    } else {
        model
            .tensors
            .sort_by(|a, b| (file_index(a), &a.info.name).cmp(&(file_index(b), &b.info.name)));
    }
}

/// The output type `out` names, or when it follows the weights the first
/// 2-D F16/BF16 tensor's (F32 if none); types the converter cannot write
/// are refused.
pub(crate) fn output_type(model: &Model, out: OutType) -> Result<DType> {
    let source_type = model
        .tensors
        .iter()
        .find(|t| t.info.shape.len() >= 2 && matches!(t.info.dtype, DType::F16 | DType::BF16))
        .map_or(DType::F32, |t| t.info.dtype);
    match out {
        OutType::Source => Ok(source_type),
        OutType::Type(d) if OUT_TYPES.contains(&d) => Ok(d),
        OutType::Type(d) => Err(Error::unsupported(format!(
            "{d}: a Hugging Face model converts to F32, F16, BF16 or Q8_0 (other types: quantize)"
        ))),
    }
}

/// Rewrites `model` (opened from the folder's weights) into llama.cpp's
/// conventions. Its notes say what it was read as.
pub fn apply(model: &mut Model, f: &Folder, out: OutType) -> Result<()> {
    if let Some(adapter) = &f.adapter {
        return lora::apply(model, f, adapter, out);
    }
    if f.mmproj {
        return mmproj::apply(model, f, out);
    }
    let block_count = f
        .hparams
        .uint(&["n_layers", "num_hidden_layers", "n_layer", "num_layers"])?;
    sort_as_converter(model);
    // After the sort: a dequantized weight is no longer a range of its file.
    let mxfp4 = fp8::dequantize(model, &f.hparams, f.arch.reads_mxfp4())?;
    let out_type = output_type(model, out)?;
    let mut md = Metadata::new();
    md.set("general.architecture", Value::String(f.arch.name().into()));
    let cx = Ctx { folder: f, block_count };
    let mut tensors = Vec::with_capacity(model.tensors.len());
    for (name, values) in f.arch.extra_tensors(&cx, &mut md)? {
        let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        let info = TensorInfo::new(name, DType::F32, vec![values.len() as u64])?;
        tensors.push(Tensor::new(info, Arc::new(modelconv_ir::MemSource::new(bytes)))?);
    }
    tensors.extend(f.arch.repacked(&cx, &model.tensors)?);
    let mut held = Held::default();
    for t in std::mem::take(&mut model.tensors) {
        let Some(hf) = f.arch.filter(&t.info.name) else {
            continue;
        };
        if skipped(&hf) {
            continue;
        }
        let hf = f.arch.canonical(&f.hf_arch, hf);
        for t in f.arch.modify_tensors(&cx, &hf, t, &mut held)? {
            tensors.push(typed(t, out_type)?);
        }
    }
    held.check_empty()?;
    model.tensors = tensors;
    model.check_unique_names()?;
    let general = general_of(f, &model.tensors);
    meta::write_general(&mut md, &f.dir, &general)?;
    let ft = match out_type {
        // An MXFP4 checkpoint's float conversion is MOSTLY_MXFP4_MOE.
        DType::F32 | DType::F16 | DType::BF16 if mxfp4 => 38,
        _ => file_type_id(out_type),
    };
    f.arch.set_gguf_parameters(&cx, &mut md, ft)?;
    md.set("general.quantization_version", Value::U32(2));
    vocab(f, &mut md)?;
    let n_tokens = md
        .get("tokenizer.ggml.tokens")
        .and_then(|v| match v {
            Value::Array(a) => Some(a.len()),
            _ => None,
        })
        .unwrap_or(0);
    let tokenizer = md.get("tokenizer.ggml.model").and_then(Value::as_str).unwrap_or("?");
    model.notes = vec![format!(
        "Hugging Face {} → llama.cpp '{}': {} tensors, {tokenizer} tokenizer of {n_tokens} tokens",
        f.hf_arch,
        f.arch.name(),
        model.tensors.len()
    )];
    model.metadata = md;
    Ok(())
}

/// gguf-py's `general.*` heuristics for the folder, its parameters
/// counted over the converted `tensors`.
pub(crate) fn general_of(f: &Folder, tensors: &[Tensor]) -> meta::General {
    let params = meta::Params::of(tensors.iter().map(|t| (t.info.name.as_str(), t.info.shape.as_slice())));
    meta::General::for_folder(&f.dir, &f.hparams.map, &params)
}

/// `t` in the type `convert_hf_to_gguf.py` writes it in ([`tensor_type`]),
/// cast or quantized lazily.
pub(crate) fn typed(t: Tensor, out_type: DType) -> Result<Tensor> {
    let to = tensor_type(&t.info.name, t.info.shape.len(), out_type);
    into_type(t, to)
}

/// `t` as type `to`, cast or quantized lazily.
pub(crate) fn into_type(mut t: Tensor, mut to: DType) -> Result<Tensor> {
    // gguf-py's Q8_0 needs whole 32-element rows; others fall back to F16.
    if to == DType::Q8_0 && !t.info.shape.last().is_some_and(|c| c.is_multiple_of(32)) {
        to = DType::F16;
    }
    if to.is_quantized() {
        let q = modelconv_ggml::quants::QuantizeSource::new(t.data.clone(), t.info.dtype, to, false)
            .map_err(|e| e.for_tensor(&t.info.name))?;
        t.data = Arc::new(q);
        t.location = None;
    } else if to != t.info.dtype {
        t.data = Arc::new(CastSource::new(t.data.clone(), t.info.dtype, to)?);
        t.location = None;
    }
    t.info = TensorInfo::new(t.info.name.clone(), to, t.info.shape.clone())?;
    Ok(t)
}

/// `rope_parameters` (or `rope_scaling`) with the top-level rope keys
/// mirrored in, as TextModel's constructor does.
pub(crate) fn rope_parameters(h: &Hparams) -> serde_json::Map<String, Json> {
    let mut rope = match h.get("rope_parameters").or_else(|| h.get("rope_scaling")) {
        Some(Json::Object(m)) => m.clone(),
        _ => serde_json::Map::new(),
    };
    if !rope.contains_key("full_attention") && !rope.contains_key("sliding_attention") {
        let find = |keys: &[&str]| h.find(keys).filter(|v| !v.is_null()).cloned();
        if let Some(local) = find(&[
            "local_rope_theta",
            "rope_local_theta",
            "rope_theta_local",
            "swa_rope_theta",
            "rope_local_base_freq",
        ]) {
            rope.insert("sliding_attention".into(), serde_json::json!({ "rope_theta": local }));
        }
        if !rope.contains_key("rope_theta") {
            if let Some(t) = find(&[
                "global_rope_theta",
                "rope_global_theta",
                "rope_theta_global",
                "rope_theta",
                "rotary_emb_base",
            ]) {
                rope.insert("rope_theta".into(), t);
            }
        }
        if !rope.contains_key("rope_type") {
            if let Some(t) = rope.get("type").cloned() {
                rope.insert("rope_type".into(), t);
            }
        }
        if !rope.contains_key("partial_rotary_factor") {
            if let Some(p) = find(&["partial_rotary_factor", "rope_pct", "rope_percent"]) {
                rope.insert("partial_rotary_factor".into(), p);
            }
        }
        if !rope.contains_key("original_max_position_embeddings") {
            if let Some(p) = find(&["original_max_position_embeddings"]) {
                rope.insert("original_max_position_embeddings".into(), p);
            }
        }
    }
    rope
}

fn f32_value(what: &str, v: &Json) -> Result<Value> {
    v.as_f64()
        .map(|x| Value::F32(x as f32))
        .ok_or_else(|| Error::invalid(format!("config.json: {what} is {v}, expected a number")))
}

/// The hyper-parameters every text model writes (TextModel.set_gguf_parameters).
pub(crate) fn common_params(f: &Folder, a: &str, block_count: u64, md: &mut Metadata) -> Result<()> {
    let h = &f.hparams;
    let u = |md: &mut Metadata, key: &str, v: u64| arch::put_u32(md, a, key, v);
    u(md, "block_count", block_count)?;
    let lookups: [(&str, &[&str]); 5] = [
        (
            "context_length",
            &[
                "max_position_embeddings",
                "n_ctx",
                "n_positions",
                "max_length",
                "max_sequence_length",
                "model_max_length",
            ],
        ),
        ("embedding_length", &["hidden_size", "n_embd", "dim"]),
        (
            "feed_forward_length",
            &[
                "prefix_dense_intermediate_size",
                "dense_intermediate_size",
                "intermediate_size",
                "n_inner",
                "hidden_dim",
            ],
        ),
        ("attention.head_count", &["num_attention_heads", "n_head", "n_heads"]),
        ("attention.head_count_kv", &["num_key_value_heads", "n_kv_heads"]),
    ];
    for (key, names) in lookups {
        if let Some(v) = h.opt_uint(names)? {
            u(md, key, v)?;
        }
    }
    if h.map.get("is_causal") == Some(&Json::Bool(false)) {
        md.set(format!("{a}.attention.causal"), Value::Bool(false));
    }
    let rope_all = rope_parameters(h);
    let rope = match rope_all.get("full_attention") {
        Some(Json::Object(m)) => m.clone(),
        _ => rope_all.clone(),
    };
    if let Some(ty) = rope.get("rope_type").and_then(Json::as_str) {
        let factor = rope.get("factor").filter(|v| !v.is_null());
        match (ty, factor) {
            ("linear", Some(fac)) => {
                md.set(format!("{a}.rope.scaling.type"), Value::String("linear".into()));
                md.set(format!("{a}.rope.scaling.factor"), f32_value("rope factor", fac)?);
            }
            ("yarn", Some(fac)) => {
                md.set(format!("{a}.rope.scaling.type"), Value::String("yarn".into()));
                md.set(format!("{a}.rope.scaling.factor"), f32_value("rope factor", fac)?);
                let orig = rope
                    .get("original_max_position_embeddings")
                    .and_then(Json::as_u64)
                    .ok_or_else(|| Error::invalid("config.json: yarn rope without original_max_position_embeddings"))?;
                u(md, "rope.scaling.original_context_length", orig)?;
                for (key, names) in [
                    ("rope.scaling.yarn_ext_factor", &["extrapolation_factor"][..]),
                    (
                        "rope.scaling.yarn_attn_factor",
                        &["attention_factor", "attn_factor"][..],
                    ),
                    ("rope.scaling.yarn_beta_fast", &["beta_fast"][..]),
                    ("rope.scaling.yarn_beta_slow", &["beta_slow"][..]),
                ] {
                    if let Some(v) = names.iter().find_map(|n| rope.get(*n).filter(|v| !v.is_null())) {
                        md.set(format!("{a}.{key}"), f32_value(key, v)?);
                    }
                }
            }
            ("su" | "longrope", _) => {
                md.set(format!("{a}.rope.scaling.type"), Value::String("longrope".into()));
            }
            _ => {}
        }
    }
    if let Some(Json::Array(sections)) = rope_all.get("mrope_section") {
        let mut s: Vec<i32> = sections.iter().filter_map(|v| v.as_i64().map(|x| x as i32)).collect();
        s.resize(4.max(s.len()), 0);
        s.truncate(4);
        md.set(format!("{a}.rope.dimension_sections"), Value::Array(Array::I32(s)));
    }
    if let Some(theta) = rope.get("rope_theta").filter(|v| !v.is_null()) {
        md.set(format!("{a}.rope.freq_base"), f32_value("rope_theta", theta)?);
    }
    if let Some(Json::Object(swa)) = rope_all.get("sliding_attention") {
        if let Some(theta) = swa.get("rope_theta").filter(|v| !v.is_null()) {
            md.set(format!("{a}.rope.freq_base_swa"), f32_value("rope_theta", theta)?);
        }
    }
    if let Some(eps) = h.opt_f64(&["rms_norm_eps", "norm_eps"])? {
        md.set(format!("{a}.attention.layer_norm_rms_epsilon"), Value::F32(eps as f32));
    }
    if let Some(eps) = h.opt_f64(&["layer_norm_eps", "layer_norm_epsilon", "norm_epsilon"])? {
        md.set(format!("{a}.attention.layer_norm_epsilon"), Value::F32(eps as f32));
    }
    if let Some(n) = h.opt_uint(&["num_local_experts", "num_experts", "n_routed_experts"])? {
        u(md, "expert_count", n)?;
    }
    if let Some(n) = h.opt_uint(&["num_experts_per_tok", "num_experts_per_token", "top_k_experts"])? {
        u(md, "expert_used_count", n)?;
    }
    if let Some(n) = h.opt_uint(&["n_group"])? {
        u(md, "expert_group_count", n)?;
    }
    if let Some(n) = h.opt_uint(&["topk_group"])? {
        u(md, "expert_group_used_count", n)?;
    }
    let score_keys = [
        "score_function",
        "scoring_func",
        "score_func",
        "moe_router_activation",
        "moe_router_activation_func",
        "expert_selection_fn",
    ];
    if let Some(func) = h.find(&score_keys).filter(|v| !v.is_null()) {
        // gguf-py's ExpertGatingFuncType.
        let id = match func.as_str() {
            Some("softmax") => 1,
            Some("sigmoid") => 2,
            Some("sqrtsoftplus") => 4,
            _ => {
                return Err(Error::unsupported(format!(
                    "config.json: expert score gating function {func} (llama.cpp has softmax, sigmoid, sqrtsoftplus)"
                )))
            }
        };
        u(md, "expert_gating_func", id)?;
    }
    if let Some(d) = h.opt_uint(&["head_dim"])? {
        u(md, "attention.key_length", d)?;
        u(md, "attention.value_length", d)?;
    }
    Ok(())
}

/// The tokenizer keys.
fn vocab(f: &Folder, md: &mut Metadata) -> Result<()> {
    if f.arch.reads_add_prefix_space() {
        if let Some(Json::Object(tc)) = read_json(&f.dir.join("tokenizer_config.json"))? {
            if let Some(Json::Bool(b)) = tc.get("add_prefix_space") {
                md.set("tokenizer.ggml.add_space_prefix", Value::Bool(*b));
            }
        }
    }
    for v in f.arch.vocab() {
        let done = match v {
            Vocab::SentencePiece => sentencepiece(f, md)?,
            Vocab::SentencePieceNoSpacePrefix => {
                let done = sentencepiece(f, md)?;
                if done {
                    md.set("tokenizer.ggml.add_space_prefix", Value::Bool(false));
                }
                done
            }
            Vocab::Bpe => gpt2(f, md)?,
            Vocab::Phi3 => phi3_vocab(f, md)?,
            Vocab::WordPiece => wordpiece(f, md)?,
            Vocab::XlmRobertaUnigram => xlmr_unigram(f, md)?,
            Vocab::BpeGlm4 => glm4_vocab(f, md)?,
            Vocab::BpeAddingSpecials => {
                for k in ["add_bos_token", "add_eos_token", "add_sep_token"] {
                    md.set(format!("tokenizer.ggml.{k}"), Value::Bool(true));
                }
                gpt2(f, md)?
            }
        };
        if done {
            return vocab_pre_was_used(f, md);
        }
    }
    Err(Error::unsupported(format!(
        "{}: no tokenizer this build converts for {} (looked for {})",
        f.dir.display(),
        f.hf_arch,
        f.arch
            .vocab()
            .iter()
            .map(|v| match v {
                Vocab::SentencePiece | Vocab::SentencePieceNoSpacePrefix | Vocab::Phi3 => "tokenizer.model",
                Vocab::Bpe => "tokenizer.json (BPE)",
                Vocab::WordPiece => "tokenizer.json (WordPiece)",
                Vocab::XlmRobertaUnigram => "sentencepiece.bpe.model",
                Vocab::BpeAddingSpecials | Vocab::BpeGlm4 => "tokenizer.json (BPE)",
            })
            .collect::<Vec<_>>()
            .join(", ")
    )))
}

/// `--vocab-pre` names the pre-tokenizer of a hashed (tokenizer.json)
/// vocabulary; on another (SentencePiece: `default`) it would be ignored,
/// which is refused rather than done silently.
fn vocab_pre_was_used(f: &Folder, md: &Metadata) -> Result<()> {
    let Some(want) = f.vocab_pre.as_deref() else {
        return Ok(());
    };
    match md.get("tokenizer.ggml.pre") {
        Some(Value::String(got)) if got == want => Ok(()),
        _ => Err(Error::invalid(format!(
            "--vocab-pre {want}: {}'s vocabulary is not a tokenizer.json one, whose pre-tokenizer is found by hash",
            f.dir.display()
        ))),
    }
}

/// The tokenizer keys every vocabulary writes, in gguf-py's order.
fn put_vocab(md: &mut Metadata, model: &str, pre: &str, tokens: Strings, scores: Option<Vec<f32>>, types: Vec<i32>) {
    md.set("tokenizer.ggml.model", Value::String(model.into()));
    md.set("tokenizer.ggml.pre", Value::String(pre.into()));
    md.set("tokenizer.ggml.tokens", Value::Array(Array::String(tokens)));
    if let Some(s) = scores {
        md.set("tokenizer.ggml.scores", Value::Array(Array::F32(s)));
    }
    md.set("tokenizer.ggml.token_type", Value::Array(Array::I32(types)));
}

/// `tokenizer.json` loaded with HF's tokenizer and its base vocabulary,
/// when the folder has one.
fn hf_vocab(f: &Folder) -> Result<Option<bpe::Bpe>> {
    let path = f.dir.join("tokenizer.json");
    if !path.is_file() {
        return Ok(None);
    }
    let tok = bpe::load(&path)?;
    let pre = bpe::pre_name(&path, &tok, f.vocab_pre.as_deref())?;
    Ok(Some(bpe::vocab(
        &path,
        &tok,
        f.hparams.opt_uint(&["vocab_size"])?,
        pre,
    )?))
}

/// A byte-level BPE `tokenizer.json` as llama.cpp's `gpt2` model
/// (`_set_vocab_gpt2`). `false` when the folder has none.
fn gpt2(f: &Folder, md: &mut Metadata) -> Result<bool> {
    let Some(v) = hf_vocab(f)? else { return Ok(false) };
    put_vocab(md, "gpt2", &v.pre, v.tokens.iter().collect(), None, v.types);
    let sv = special::SpecialVocab::load(&f.dir, true, special::DEFAULT_TYPES, None)?;
    sv.add_to(md);
    Ok(true)
}

/// GLM-4's vocabulary (Glm4Model.set_vocab): byte-level BPE, then EOS,
/// EOT, UNK and BOS from the added tokens (transformers'
/// `get_added_vocab`: tokenizer.json's `added_tokens`, then the tokenizer
/// config's `added_tokens_decoder`) where the special-token files left them
/// unset.
fn glm4_vocab(f: &Folder, md: &mut Metadata) -> Result<bool> {
    let Some(v) = hf_vocab(f)? else { return Ok(false) };
    let mut added: Vec<(String, u64)> = Vec::new();
    if let Some(Json::Array(list)) =
        read_json(&f.dir.join("tokenizer.json"))?.and_then(|j| j.get("added_tokens").cloned())
    {
        for t in list {
            if let (Some(c), Some(id)) = (
                t.get("content").and_then(Json::as_str),
                t.get("id").and_then(Json::as_u64),
            ) {
                added.push((c.to_string(), id));
            }
        }
    }
    if let Some(Json::Object(dec)) =
        read_json(&f.dir.join("tokenizer_config.json"))?.and_then(|j| j.get("added_tokens_decoder").cloned())
    {
        for (id, t) in dec {
            if let (Some(c), Ok(id)) = (t.get("content").and_then(Json::as_str), id.parse::<u64>()) {
                added.push((c.to_string(), id));
            }
        }
    }
    let id_of = |content: &str| {
        added
            .iter()
            .rev()
            .find(|(c, _)| c == content)
            .map(|(_, id)| *id)
            .ok_or_else(|| {
                Error::unsupported(format!(
                    "{}: GLM-4's tokenizer has no added token {content}",
                    f.dir.join("tokenizer.json").display()
                ))
            })
    };
    let (end, user) = (id_of("<|endoftext|>")?, id_of("<|user|>")?);
    put_vocab(md, "gpt2", &v.pre, v.tokens.iter().collect(), None, v.types);
    let mut sv = special::SpecialVocab::load(&f.dir, true, special::DEFAULT_TYPES, None)?;
    for (typ, id) in [("eos", end), ("eot", user), ("unk", end), ("bos", end)] {
        sv.set_id(typ, Some(&Json::from(id)))?;
    }
    sv.add_to(md);
    Ok(true)
}

/// A WordPiece `tokenizer.json` as llama.cpp's `bert` model: word-initial
/// tokens marked with a phantom space (U+2581), `##` continuations bare.
fn wordpiece(f: &Folder, md: &mut Metadata) -> Result<bool> {
    let Some(v) = hf_vocab(f)? else { return Ok(false) };
    let type_count = f.hparams.opt_uint(&["type_vocab_size"])?.unwrap_or(1);
    md.set(
        "tokenizer.ggml.token_type_count",
        Value::U32(u32_of("type_vocab_size", type_count)?),
    );
    let tokens: Strings = v
        .tokens
        .iter()
        .zip(&v.types)
        .map(|(t, &ty)| match t.strip_prefix("##") {
            _ if ty == bpe::CONTROL => t.clone(),
            Some(rest) => rest.to_string(),
            None => format!("\u{2581}{t}"),
        })
        .collect();
    let n = tokens.len();
    put_vocab(md, "bert", &v.pre, tokens, None, v.types);
    let sv = special::SpecialVocab::load(&f.dir, false, special::DEFAULT_TYPES, Some(n))?;
    sv.add_to(md);
    Ok(true)
}

/// The first `n` tokens of a SentencePiece vocabulary as the converter
/// lists them: `[PAD{i}]` (score -10000, unused) past the pieces, piece
/// types other than unknown, control, unused and byte read as normal.
fn padded_pieces(pieces: &[spm::Piece], n: usize) -> (Vec<String>, Vec<f32>, Vec<i32>) {
    let mut tokens: Vec<String> = (0..n).map(|i| format!("[PAD{i}]")).collect();
    let mut scores = vec![-10000.0f32; n];
    let mut types = vec![spm::UNUSED; n];
    for (id, p) in pieces.iter().enumerate().take(n) {
        tokens[id] = p.piece.clone();
        scores[id] = p.score;
        types[id] = match p.kind {
            spm::UNKNOWN | spm::CONTROL | spm::UNUSED | spm::BYTE => p.kind,
            _ => spm::NORMAL,
        };
    }
    (tokens, scores, types)
}

/// XLM-RoBERTa's vocabulary (`_xlmroberta_set_vocab`, its
/// `sentencepiece.bpe.model` path) as llama.cpp's `t5` model: the pieces
/// padded to `vocab_size`, then fairseq's layout (`<s> <pad> </s> <unk>`
/// in front of the pieces from id 3, the last entry dropped), and the
/// model's normalizer settings. `false` when the folder has no model file.
fn xlmr_unigram(f: &Folder, md: &mut Metadata) -> Result<bool> {
    let path = f.dir.join("sentencepiece.bpe.model");
    if !path.is_file() {
        if f.dir.join("tokenizer.json").is_file() {
            return Err(Error::unsupported(format!(
                "{}: an XLM-RoBERTa tokenizer given by tokenizer.json alone (the converter reads it through \
                 transformers); this build reads sentencepiece.bpe.model",
                f.dir.display()
            )));
        }
        return Ok(false);
    }
    let bytes = read_limited(&path, spm::MAX_MODEL)?;
    let spec = spm::spec(&path, &bytes)?;
    if spec.model_type != spm::UNIGRAM {
        return Err(Error::malformed(
            &path,
            format!(
                "SentencePiece model type {}, XLM-RoBERTa's is unigram (1)",
                spec.model_type
            ),
        ));
    }
    let pieces = spm::pieces(&path, &bytes)?;
    let n = f
        .hparams
        .opt_uint(&["vocab_size"])?
        .unwrap_or(0)
        .max(pieces.len() as u64);
    let n = usize::try_from(n)
        .ok()
        .filter(|&n| n >= 4 && n <= pieces.len().saturating_add(1 << 20))
        .ok_or_else(|| Error::limit(&path, format!("vocab_size {n} against {} pieces", pieces.len())))?;
    let (mut tokens, scores, types) = padded_pieces(&pieces, n);
    let front = ["<s>", "<pad>", "</s>", "<unk>"];
    let tokens: Vec<String> = front
        .iter()
        .map(|t| t.to_string())
        .chain(tokens.drain(3..n - 1))
        .collect();
    let scores: Vec<f32> = [0.0; 4].into_iter().chain(scores[3..n - 1].iter().copied()).collect();
    let front_types = [spm::CONTROL, spm::CONTROL, spm::CONTROL, spm::UNKNOWN];
    let types: Vec<i32> = front_types.into_iter().chain(types[3..n - 1].iter().copied()).collect();
    put_vocab(md, "t5", "default", tokens.iter().collect(), Some(scores), types);
    md.set("tokenizer.ggml.add_space_prefix", Value::Bool(spec.add_dummy_prefix));
    let type_count = f.hparams.opt_uint(&["type_vocab_size"])?.unwrap_or(1);
    md.set(
        "tokenizer.ggml.token_type_count",
        Value::U32(u32_of("type_vocab_size", type_count)?),
    );
    md.set(
        "tokenizer.ggml.remove_extra_whitespaces",
        Value::Bool(spec.remove_extra_whitespaces),
    );
    if !spec.precompiled_charsmap.is_empty() {
        md.set(
            "tokenizer.ggml.precompiled_charsmap",
            Value::Array(Array::U8(spec.precompiled_charsmap)),
        );
    }
    let sv = special::SpecialVocab::load(&f.dir, false, special::DEFAULT_TYPES, Some(tokens.len()))?;
    sv.add_to(md);
    Ok(true)
}

/// A SentencePiece vocabulary (`tokenizer.model`) with added tokens and
/// padding, as `_create_vocab_sentencepiece` builds it. `false` when the
/// folder has none.
fn sentencepiece(f: &Folder, md: &mut Metadata) -> Result<bool> {
    sentencepiece_as(f, md, false)
}

/// Phi-3's vocabulary: a `GPT2Tokenizer` class is byte-level BPE (Phi-4);
/// otherwise SentencePiece with the added tokens of the tokenizer config
/// and tokenizer.json taken as they are (user-defined, or control when
/// special).
fn phi3_vocab(f: &Folder, md: &mut Metadata) -> Result<bool> {
    if let Some(Json::Object(tc)) = read_json(&f.dir.join("tokenizer_config.json"))? {
        if tc.get("tokenizer_class").and_then(Json::as_str) == Some("GPT2Tokenizer") {
            return gpt2(f, md);
        }
    }
    sentencepiece_as(f, md, true)
}

fn sentencepiece_as(f: &Folder, md: &mut Metadata, phi3: bool) -> Result<bool> {
    let Some((path, pieces, vocab_size)) = spm_vocab(f)? else {
        return Ok(false);
    };
    let n = usize::try_from(vocab_size)
        .ok()
        .filter(|&n| n <= pieces.len().saturating_add(1 << 20))
        .ok_or_else(|| {
            Error::limit(
                &path,
                format!("vocab_size {vocab_size} is far beyond the {} pieces", pieces.len()),
            )
        })?;
    let (mut tokens, mut scores, mut types) = padded_pieces(&pieces, n);
    if let Some(Json::Object(added)) = read_json(&f.dir.join("added_tokens.json"))? {
        for (text, id) in added {
            let Some(id) = id.as_u64().map(|i| i as usize).filter(|&i| i < n) else {
                continue;
            };
            tokens[id] = text.clone();
            scores[id] = -1000.0;
            types[id] = spm::USER_DEFINED;
        }
    }
    // Added tokens: the tokenizer config's (by id), then for Phi-3 tokenizer.json's.
    let mut added: Vec<(String, Json)> = Vec::new();
    if let Some(Json::Object(tc)) = read_json(&f.dir.join("tokenizer_config.json"))? {
        if let Some(Json::Object(dec)) = tc.get("added_tokens_decoder") {
            added.extend(dec.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
    }
    if phi3 {
        if let Some(Json::Array(list)) =
            read_json(&f.dir.join("tokenizer.json"))?.and_then(|j| j.get("added_tokens").cloned())
        {
            added.extend(
                list.into_iter()
                    .map(|t| (t.get("id").map(|i| i.to_string()).unwrap_or_default(), t)),
            );
        }
    }
    for (id, data) in &added {
        let Some(id) = id.parse::<usize>().ok().filter(|&i| i < n) else {
            continue;
        };
        let Some(content) = data.get("content").and_then(Json::as_str) else {
            continue;
        };
        let special = data.get("special").and_then(Json::as_bool).unwrap_or(false);
        if phi3 {
            types[id] = if special { spm::CONTROL } else { spm::USER_DEFINED };
            tokens[id] = content.to_string();
        } else if special || bpe::looks_special(content) {
            types[id] = spm::CONTROL;
            tokens[id] = content.to_string();
        } else {
            types[id] = spm::USER_DEFINED;
            tokens[id] = content.replace('\u{2581}', " ");
        }
        scores[id] = -1000.0;
    }
    put_vocab(md, "llama", "default", tokens.iter().collect(), Some(scores), types);
    let sv = special::SpecialVocab::load(&f.dir, false, special::DEFAULT_TYPES, Some(n))?;
    sv.add_to(md);
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permutation_interleaves_rotary_halves_per_head() {
        // 2 heads of 4 rows: halves (0,1 | 2,3) interleave to 0,2,1,3.
        assert_eq!(arch::permute_rows(8, 2).unwrap(), vec![0, 2, 1, 3, 4, 6, 5, 7]);
        assert!(arch::permute_rows(6, 2).is_err());
        assert!(arch::permute_rows(8, 0).is_err());
    }

    #[test]
    fn names_map_through_the_table() {
        let a = arch::find("LlamaForCausalLM").unwrap().tables();
        assert_eq!(
            arch::map_name(a, "model.layers.11.self_attn.q_proj.weight").as_deref(),
            Some("blk.11.attn_q.weight")
        );
        assert_eq!(arch::map_name(a, "lm_head.weight").as_deref(), Some("output.weight"));
        assert_eq!(arch::map_name(a, "model.layers.0.mlp.experts.0.w1.weight"), None);
        assert_eq!(tensor_type("blk.0.attn_norm.weight", 1, DType::F16), DType::F32);
        assert_eq!(tensor_type("blk.0.attn_q.weight", 2, DType::F16), DType::F16);
        assert_eq!(tensor_type("blk.0.attn_q.bias", 1, DType::F16), DType::F32);
    }
}
