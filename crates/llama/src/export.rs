//! The way back: a GGUF in llama.cpp's conventions → a Hugging Face model
//! folder (`convert model.gguf OUTDIR --to hf`). The architecture is
//! `general.architecture`, looked up among the modules that declare an
//! [`Export`]; tensor names are the module's tables read backwards, the
//! conversion's transforms undone as views (LLaMA's Q/K rows permuted
//! back); `config.json` is rebuilt from the hyper-parameter keys and the
//! tokenizer from `tokenizer.ggml.*` (a SentencePiece `tokenizer.model`
//! for `llama` vocabularies, a `tokenizer.json` for byte-level BPE).
//! Dequantizing and writing the weights are the pipeline's.

use crate::arch::llama::Llama3Rope;
use crate::arch::{self, permute_rows, Architecture};
use modelconv_ir::view::RowGather;
use modelconv_ir::{Array, DType, Error, Metadata, Model, Result, Tensor, Value};
use serde_json::{json, Map, Value as Json};
use std::sync::Arc;

/// What an architecture module says about its way back.
pub struct Export {
    /// The class written to `architectures`.
    pub hf_class: &'static str,
    pub model_type: &'static str,
    /// Q/K rows were permuted to llama.cpp's rotary order (LLaMA).
    pub unpermute_qk: bool,
    /// Keys this family's config has beyond the decoder's.
    pub extra: fn(&Hparams, &mut Map<String, Json>) -> Result<()>,
}

/// The files of a Hugging Face folder besides the weights, by name.
pub type SideFiles = Vec<(String, Vec<u8>)>;

/// `model` (a GGUF in llama.cpp's conventions) renamed and transformed to
/// Hugging Face's layout in place; returns config.json, the tokenizer
/// files and tokenizer_config.json. `cast`: the float type the weights
/// will be written in (`None`: their own, block types as F32).
pub fn to_hf(model: &mut Model, cast: Option<DType>) -> Result<SideFiles> {
    let md = &model.metadata;
    let name = md
        .get("general.architecture")
        .and_then(Value::as_str)
        .ok_or_else(|| {
            Error::malformed(
                &model.path,
                "no general.architecture: not a GGUF in llama.cpp's conventions, so there is no Hugging Face layout to go back to",
            )
        })?
        .to_string();
    let (a, export) = find(&name).ok_or_else(|| {
        Error::unsupported(format!(
            "{}: GGUF architecture '{name}' has no way back to a Hugging Face folder in this build (supported: {})",
            model.path.display(),
            supported().join(", ")
        ))
    })?;
    // The GGUF's keys move into config.json and the tokenizer files (not
    // copied: a vocabulary's arrays are megabytes); the weights carry what
    // transformers' save_pretrained writes.
    let mut kept = Metadata::new();
    kept.set("format", Value::String("pt".into()));
    let h = Hparams {
        md: std::mem::replace(&mut model.metadata, kept),
        arch: name,
    };
    let rope = llama3_rope(model, &h)?;
    let tied = !model.tensors.iter().any(|t| t.info.name == "output.weight");
    let has_bias = model.tensors.iter().any(|t| t.info.name.ends_with("attn_q.bias"));
    for t in &mut model.tensors {
        rename_back(a, export, &h, t).map_err(|e| Error::invalid(format!("{}: {e}", model.path.display())))?;
    }
    let dtype = weights_dtype(model, cast);
    let mut config = config(export, &h, tied, has_bias, dtype)?;
    if let (Some(p), Json::Object(c)) = (rope, &mut config) {
        let theta = c.get("rope_theta").cloned().unwrap_or(json!(10000.0));
        c.insert("rope_parameters".into(), json!({"rope_type": "llama3", "rope_theta": theta, "factor": p.factor,
            "low_freq_factor": p.low, "high_freq_factor": p.high, "original_max_position_embeddings": p.old_ctx as u64}));
    }
    let mut files = vec![("config.json".to_string(), pretty(&config)?)];
    files.extend(crate::export_vocab::tokenizer_files(&h, &model.path)?);
    Ok(files)
}

/// The GGUF architecture names this build writes back.
pub fn supported() -> Vec<&'static str> {
    arch::ARCHES
        .iter()
        .filter(|a| a.export().is_some())
        .map(|a| a.name())
        .collect()
}

fn find(name: &str) -> Option<(&'static dyn Architecture, &'static Export)> {
    arch::ARCHES
        .iter()
        .find(|a| a.name() == name)
        .and_then(|a| a.export().map(|e| (*a, e)))
}

/// A GGUF's metadata read as an architecture's hyper-parameters
/// (`{arch}.key`) and tokenizer keys.
pub struct Hparams {
    pub md: Metadata,
    pub arch: String,
}

impl Hparams {
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.md.get(&format!("{}.{key}", self.arch))
    }
    pub fn uint(&self, key: &str) -> Result<u64> {
        self.opt_uint(key)?
            .ok_or_else(|| Error::invalid(format!("GGUF: no {}.{key}, which config.json needs", self.arch)))
    }
    pub fn opt_uint(&self, key: &str) -> Result<Option<u64>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v
                .as_u64()
                .map(Some)
                .ok_or_else(|| Error::invalid(format!("GGUF: {}.{key} is not an unsigned integer", self.arch))),
        }
    }
    /// A float key as JSON: the shortest decimal that reads back as the
    /// stored f32 (1e-05, not 9.999999747378752e-06), as the HF config
    /// that made it most likely spelled it.
    pub fn float(&self, key: &str) -> Result<Option<Json>> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::F32(f)) => Ok(Some(short_float(*f))),
            Some(Value::F64(f)) => Ok(Some(json!(f))),
            Some(_) => Err(Error::invalid(format!("GGUF: {}.{key} is not a float", self.arch))),
        }
    }
    pub fn token_id(&self, which: &str) -> Option<u64> {
        self.md
            .get(&format!("tokenizer.ggml.{which}_token_id"))
            .and_then(Value::as_u64)
    }
    pub fn flag(&self, key: &str) -> Option<bool> {
        match self.md.get(key) {
            Some(Value::Bool(b)) => Some(*b),
            _ => None,
        }
    }
    pub fn strings(&self, key: &str) -> Option<&modelconv_ir::Strings> {
        match self.md.get(key) {
            Some(Value::Array(Array::String(s))) => Some(s),
            _ => None,
        }
    }
}

pub(crate) fn short_float(f: f32) -> Json {
    f.to_string().parse::<f64>().map(|v| json!(v)).unwrap_or(Json::Null)
}

/// Llama 3.1's `rope_freqs` (per-frequency factors the conversion
/// computed from `rope_parameters`) taken out of `model` and turned back
/// into the parameters that give exactly those factors; a tensor no
/// parameters reproduce is refused rather than dropped.
fn llama3_rope(model: &mut Model, h: &Hparams) -> Result<Option<Llama3Rope>> {
    let Some(i) = model.tensors.iter().position(|t| t.info.name == "rope_freqs.weight") else {
        return Ok(None);
    };
    let t = &model.tensors[i];
    let bytes = if t.info.dtype == DType::F32 && t.info.byte_len <= 1 << 20 {
        t.read_all()?
    } else {
        return Err(Error::invalid(format!(
            "{}: rope_freqs.weight is {} of {} bytes, not a small F32 vector",
            model.path.display(),
            t.info.dtype,
            t.info.byte_len
        )));
    };
    let values: Vec<f32> = bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    let base = match h.get("rope.freq_base") {
        Some(Value::F32(f)) => f64::from(*f),
        _ => 10000.0,
    };
    let heads = h.uint("attention.head_count")?.max(1);
    let dim = match h.opt_uint("rope.dimension_count")? {
        Some(d) => d,
        None => h.uint("embedding_length")? / heads,
    };
    let p = Llama3Rope::recover(&values, base, dim).ok_or_else(|| {
        Error::unsupported(format!(
            "{}: rope_freqs.weight matches no Llama 3 rope scaling (factor, low/high frequency factors, original \
             context) this build searches; config.json could not say what it does",
            model.path.display()
        ))
    })?;
    model.tensors.remove(i);
    Ok(Some(p))
}

/// config.json's `dtype`: the type the token embedding will be written
/// in, as save_pretrained records the model's.
fn weights_dtype(model: &Model, cast: Option<DType>) -> &'static str {
    let embd = model
        .tensors
        .iter()
        .find(|t| t.info.name.ends_with("embed_tokens.weight"));
    match cast.or(embd.map(|t| t.info.dtype)) {
        Some(DType::F16) => "float16",
        Some(DType::BF16) => "bfloat16",
        _ => "float32",
    }
}

/// `t` under its Hugging Face name, with the conversion's row permutation
/// undone. A tensor the tables do not place is refused by name (rather
/// than a folder transformers would load with it missing or misplaced).
fn rename_back(a: &dyn Architecture, export: &Export, h: &Hparams, t: &mut Tensor) -> Result<()> {
    let gguf = t.info.name.clone();
    let hf = arch::unmap_name(a.tables(), &gguf).ok_or_else(|| {
        Error::unsupported(format!(
            "tensor '{gguf}' has no Hugging Face name in this build's {} layout (computed or stacked \
             tensors such as rope_freqs or ffn_*_exps are not written back yet)",
            a.name()
        ))
    })?;
    if export.unpermute_qk {
        let heads = h.uint("attention.head_count")?;
        let kv = h.opt_uint("attention.head_count_kv")?.unwrap_or(heads);
        let n = if gguf.contains(".attn_q.") {
            Some(heads)
        } else if gguf.contains(".attn_k.") {
            Some(kv)
        } else {
            None
        };
        if let Some(n) = n {
            unpermute_rows(t, n)?;
        }
    }
    t.info.name = hf;
    Ok(())
}

/// The inverse of [`arch::permute_qk`]'s row order: row `order[i]` of the
/// Hugging Face tensor was row `i` of the GGUF one. Rows are whole blocks
/// in every ggml type, so a quantized tensor is permuted before it is
/// dequantized.
fn unpermute_rows(t: &mut Tensor, n_head: u64) -> Result<()> {
    let rows = t.info.shape.first().copied().unwrap_or(0);
    let order = permute_rows(rows, n_head)?;
    let mut back = vec![0u64; order.len()];
    for (i, &o) in order.iter().enumerate() {
        if let Some(slot) = usize::try_from(o).ok().and_then(|o| back.get_mut(o)) {
            *slot = i as u64;
        }
    }
    let row_bytes = t.info.byte_len / rows.max(1);
    t.data = Arc::new(RowGather::new(t.data.clone(), row_bytes, back)?);
    t.location = None;
    Ok(())
}

/// config.json: the decoder's keys as transformers' configs name them,
/// then the family's own.
fn config(export: &Export, h: &Hparams, tied: bool, has_bias: bool, dtype: &str) -> Result<Json> {
    let heads = h.uint("attention.head_count")?;
    let hidden = h.uint("embedding_length")?;
    let vocab = match h.strings("tokenizer.ggml.tokens") {
        Some(t) => t.len() as u64,
        None => h.uint("vocab_size")?,
    };
    let mut c = Map::new();
    c.insert("architectures".into(), json!([export.hf_class]));
    c.insert("model_type".into(), json!(export.model_type));
    c.insert("vocab_size".into(), json!(vocab));
    c.insert("hidden_size".into(), json!(hidden));
    c.insert("intermediate_size".into(), json!(h.uint("feed_forward_length")?));
    c.insert("num_hidden_layers".into(), json!(h.uint("block_count")?));
    c.insert("num_attention_heads".into(), json!(heads));
    let kv = h.opt_uint("attention.head_count_kv")?.unwrap_or(heads);
    c.insert("num_key_value_heads".into(), json!(kv));
    let head_dim = h.opt_uint("attention.key_length")?.unwrap_or(hidden / heads.max(1));
    c.insert("head_dim".into(), json!(head_dim));
    c.insert("max_position_embeddings".into(), json!(h.uint("context_length")?));
    if let Some(eps) = h.float("attention.layer_norm_rms_epsilon")? {
        c.insert("rms_norm_eps".into(), eps);
    }
    let theta = h.float("rope.freq_base")?.unwrap_or(json!(10000.0));
    c.insert("rope_theta".into(), theta.clone());
    c.insert(
        "rope_parameters".into(),
        json!({"rope_type": "default", "rope_theta": theta}),
    );
    c.insert("hidden_act".into(), json!("silu"));
    c.insert("attention_bias".into(), json!(has_bias));
    c.insert("tie_word_embeddings".into(), json!(tied));
    c.insert("dtype".into(), json!(dtype));
    for (key, which) in [
        ("bos_token_id", "bos"),
        ("eos_token_id", "eos"),
        ("pad_token_id", "padding"),
    ] {
        if let Some(id) = h.token_id(which) {
            c.insert(key.into(), json!(id));
        }
    }
    (export.extra)(h, &mut c)?;
    Ok(Json::Object(c))
}

/// No keys beyond the decoder's.
pub fn no_extra(_: &Hparams, _: &mut Map<String, Json>) -> Result<()> {
    Ok(())
}

pub(crate) fn pretty(v: &Json) -> Result<Vec<u8>> {
    let mut s = serde_json::to_vec_pretty(v).map_err(|e| Error::internal(format!("JSON: {e}")))?;
    s.push(b'\n');
    Ok(s)
}
