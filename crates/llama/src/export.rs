//! The way back: a GGUF in llama.cpp's conventions → a Hugging Face model
//! folder (`convert model.gguf OUTDIR --to hf`). The architecture is
//! `general.architecture`, looked up among the modules that declare an
//! [`Export`]; tensor names are the module's tables read backwards, the
//! conversion's transforms undone as views (the module's [`Export`] says
//! which: Q/K rows permuted back, stacked experts split, norms shifted,
//! Conv1D weights transposed); `config.json` is rebuilt from the
//! hyper-parameter keys, the tokenizer from `tokenizer.ggml.*` (a
//! SentencePiece `tokenizer.model` for `llama` vocabularies, a
//! `tokenizer.json` for byte-level BPE) and the model card from
//! `general.*`. Dequantizing and writing the weights are the pipeline's.

use crate::arch::llama::Llama3Rope;
use crate::arch::{self, permute_rows, Architecture, ExpertNames};
use modelconv_ir::view::RowGather;
use modelconv_ir::view::SubRange;
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
    /// The per-expert matrices the conversion stacked into `ffn_*_exps`,
    /// written back one tensor per expert under these names.
    pub experts: Option<&'static ExpertNames>,
    /// The family's mixture-of-experts sibling, used instead when the GGUF
    /// has experts (a `llama` GGUF with experts is a Mixtral).
    pub moe: Option<&'static Export>,
    /// config.json's keys: the decoder's ([`decoder_config`]) or the
    /// family's own (GPT-2's).
    pub config: fn(&Hparams, &Facts) -> Result<Map<String, Json>>,
    /// Keys this family's config has beyond (or instead of) those.
    pub extra: fn(&Hparams, &mut Map<String, Json>) -> Result<()>,
    /// Tensors the conversion computed from config.json, taken out of the
    /// model and turned back into the config keys they came from (Llama
    /// 3.1's `rope_freqs`, Phi-3's long-context factors).
    pub computed: fn(&mut Model, &Hparams, &mut Map<String, Json>) -> Result<()>,
    /// A tensor's transform back, by its Hugging Face name, after the
    /// rename (Gemma's norm shift, GPT-2's Conv1D transposes).
    pub fix: fn(&Hparams, hf: &str, &mut Tensor) -> Result<()>,
}

impl Export {
    /// A LLaMA-style decoder's way back: the decoder's config keys, no
    /// transforms.
    pub const fn decoder(hf_class: &'static str, model_type: &'static str) -> Export {
        Export {
            hf_class,
            model_type,
            unpermute_qk: false,
            experts: None,
            moe: None,
            config: decoder_config,
            extra: no_extra,
            computed: no_computed,
            fix: no_fix,
        }
    }
}

/// What the tensors say about the model beyond its keys.
pub struct Facts {
    /// No `output.weight`: the head is the embedding.
    pub tied: bool,
    /// The attention projections have biases.
    pub has_bias: bool,
    /// The head has a bias (`output.bias`).
    pub head_bias: bool,
    /// config.json's `dtype`.
    pub dtype: &'static str,
}

/// The files of a Hugging Face folder besides the weights, by name.
pub type SideFiles = Vec<(String, Vec<u8>)>;

/// `model` (a GGUF in llama.cpp's conventions) renamed and transformed to
/// Hugging Face's layout in place; returns config.json, the tokenizer
/// files, tokenizer_config.json and README.md (the model card). `cast`:
/// the float type the weights will be written in (`None`: their own,
/// block types as F32).
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
        tensors: model.tensors.iter().map(|t| t.info.name.clone()).collect(),
    };
    let export = match export.moe {
        Some(moe) if h.opt_uint("expert_count")?.is_some_and(|n| n > 0) => moe,
        _ => export,
    };
    let mut computed = Map::new();
    (export.computed)(model, &h, &mut computed)?;
    let facts = Facts {
        tied: !model.tensors.iter().any(|t| t.info.name == "output.weight"),
        has_bias: model
            .tensors
            .iter()
            .any(|t| t.info.name.ends_with("attn_q.bias") || t.info.name.ends_with("attn_qkv.bias")),
        head_bias: model.tensors.iter().any(|t| t.info.name == "output.bias"),
        dtype: "float32",
    };
    let path = model.path.clone();
    let at = |e: Error| Error::invalid(format!("{}: {e}", path.display()));
    let mut back = Vec::with_capacity(model.tensors.len());
    for t in std::mem::take(&mut model.tensors) {
        match export
            .experts
            .map(|e| unstack_experts(e, &t))
            .transpose()
            .map_err(at)?
            .flatten()
        {
            Some(experts) => back.extend(experts),
            None => back.push(rename_back(a, export, &h, t).map_err(at)?),
        }
    }
    model.tensors = back;
    let facts = Facts {
        dtype: weights_dtype(model, cast),
        ..facts
    };
    let mut config = Map::new();
    config.insert("architectures".into(), json!([export.hf_class]));
    config.insert("model_type".into(), json!(export.model_type));
    config.extend((export.config)(&h, &facts)?);
    (export.extra)(&h, &mut config)?;
    config.extend(computed);
    let mut files = vec![("config.json".to_string(), pretty(&Json::Object(config))?)];
    files.extend(crate::export_vocab::tokenizer_files(&h, &model.path)?);
    files.push(("README.md".into(), crate::export_card::model_card(&h, &model.path)));
    files.extend(sentence_transformers_files(&h)?);
    Ok(files)
}

/// An embedding model's sentence-transformers files, from `{arch}.pooling_type`
/// (llama.h's LLAMA_POOLING_TYPE: 1 mean, 2 CLS, 3 last token; none
/// without a key or for 0): modules.json (the transformer, then pooling)
/// and 1_Pooling/config.json, in the layout sentence-transformers has
/// read since its first versions.
fn sentence_transformers_files(h: &Hparams) -> Result<SideFiles> {
    let mode = match h.opt_uint("pooling_type")? {
        Some(1) => "pooling_mode_mean_tokens",
        Some(2) => "pooling_mode_cls_token",
        Some(3) => "pooling_mode_lasttoken",
        _ => return Ok(Vec::new()),
    };
    let modules = json!([
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
    ]);
    let mut pooling = Map::new();
    pooling.insert("word_embedding_dimension".into(), json!(h.uint("embedding_length")?));
    for m in [
        "pooling_mode_cls_token",
        "pooling_mode_mean_tokens",
        "pooling_mode_max_tokens",
        "pooling_mode_mean_sqrt_len_tokens",
        "pooling_mode_weightedmean_tokens",
        "pooling_mode_lasttoken",
    ] {
        pooling.insert(m.into(), json!(m == mode));
    }
    pooling.insert("include_prompt".into(), json!(true));
    Ok(vec![
        ("modules.json".into(), pretty(&modules)?),
        ("1_Pooling/config.json".into(), pretty(&Json::Object(pooling))?),
    ])
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
/// (`{arch}.key`) and tokenizer keys, and its tensors' names (where a
/// layout is told apart by the tensors it has, as llama.cpp tells it).
pub struct Hparams {
    pub md: Metadata,
    pub arch: String,
    pub tensors: Vec<String>,
}

impl Hparams {
    /// Some tensor's GGUF name contains `fragment`.
    pub fn has_tensor(&self, fragment: &str) -> bool {
        self.tensors.iter().any(|n| n.contains(fragment))
    }
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

/// The F32 vector tensor `name` taken out of `model` (None where there is
/// none): the small tensors a conversion computes from config.json.
pub fn take_f32(model: &mut Model, name: &str) -> Result<Option<Vec<f32>>> {
    let Some(i) = model.tensors.iter().position(|t| t.info.name == name) else {
        return Ok(None);
    };
    let t = &model.tensors[i];
    if t.info.dtype != DType::F32 || t.info.byte_len > 1 << 20 {
        return Err(Error::invalid(format!(
            "{}: {name} is {} of {} bytes, not a small F32 vector",
            model.path.display(),
            t.info.dtype,
            t.info.byte_len
        )));
    }
    let values = t
        .read_all()?
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    model.tensors.remove(i);
    Ok(Some(values))
}

/// Llama 3.1's `rope_freqs` (per-frequency factors the conversion
/// computed from `rope_parameters`) taken out of `model` and turned back
/// into the `rope_parameters` that give exactly those factors; a tensor
/// no parameters reproduce is refused rather than dropped.
pub fn llama3_rope(model: &mut Model, h: &Hparams, config: &mut Map<String, Json>) -> Result<()> {
    let Some(values) = take_f32(model, "rope_freqs.weight")? else {
        return Ok(());
    };
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
    let theta = h.float("rope.freq_base")?.unwrap_or(json!(10000.0));
    config.insert(
        "rope_parameters".into(),
        json!({"rope_type": "llama3", "rope_theta": theta, "factor": p.factor,
        "low_freq_factor": p.low, "high_freq_factor": p.high, "original_max_position_embeddings": p.old_ctx as u64}),
    );
    Ok(())
}

/// Yarn's `rope_parameters` from `rope.scaling.*`; `mscale_all_dim` is
/// `yarn_log_multiplier` / 0.1 (the conversion's 0.1 × mscale_all_dim),
/// `mscale` the same (as DeepSeek's configs have them).
pub fn yarn_parameters(h: &Hparams) -> Result<Option<Json>> {
    if h.get("rope.scaling.type").and_then(Value::as_str) != Some("yarn") {
        return Ok(None);
    }
    let theta = h.float("rope.freq_base")?.unwrap_or(json!(10000.0));
    let mut p = json!({"rope_type": "yarn", "rope_theta": theta});
    for (key, hf) in [
        ("rope.scaling.factor", "factor"),
        ("rope.scaling.yarn_beta_fast", "beta_fast"),
        ("rope.scaling.yarn_beta_slow", "beta_slow"),
    ] {
        if let Some(v) = h.float(key)? {
            p[hf] = v;
        }
    }
    if let Some(n) = h.opt_uint("rope.scaling.original_context_length")? {
        p["original_max_position_embeddings"] = json!(n);
    }
    if let Some(Value::F32(m)) = h.get("rope.scaling.yarn_log_multiplier") {
        let all = short_float(m / 0.1);
        p["mscale_all_dim"] = all.clone();
        p["mscale"] = all;
    }
    Ok(Some(p))
}

/// No computed tensors.
pub fn no_computed(_: &mut Model, _: &Hparams, _: &mut Map<String, Json>) -> Result<()> {
    Ok(())
}

/// No transform beyond the rename.
pub fn no_fix(_: &Hparams, _: &str, _: &mut Tensor) -> Result<()> {
    Ok(())
}

/// A stacked expert tensor `blk.N.ffn_*_exps.weight` (`[experts, rows,
/// cols]`) as one `[rows, cols]` tensor per expert under `names`, each a
/// byte range of it (an expert's rows are whole blocks in every ggml
/// type); None for any other tensor.
fn unstack_experts(names: &ExpertNames, t: &Tensor) -> Result<Option<Vec<Tensor>>> {
    let Some((bid, stem)) = t
        .info
        .name
        .strip_prefix("blk.")
        .and_then(|r| r.strip_suffix(".weight"))
        .and_then(|r| r.split_once('.'))
    else {
        return Ok(None);
    };
    let Some(&(suffix, _)) = names.stems.iter().find(|(_, gguf)| *gguf == stem) else {
        return Ok(None);
    };
    let &[n, rows, cols] = &t.info.shape[..] else {
        return Err(Error::invalid(format!(
            "tensor '{}' {:?}: stacked experts are 3-D",
            t.info.name, t.info.shape
        )));
    };
    let each = t.info.byte_len / n.max(1);
    (0..n)
        .map(|x| {
            let name = format!("model.layers.{bid}.{}{x}.{suffix}", names.infix);
            let info = modelconv_ir::TensorInfo::new(name, t.info.dtype, vec![rows, cols])?;
            Tensor::new(info, Arc::new(SubRange::new(t.data.clone(), x * each, each)?))
        })
        .collect::<Result<Vec<_>>>()
        .map(Some)
}

/// config.json's `dtype`: the type the token embedding will be written
/// in, as save_pretrained records the model's.
fn weights_dtype(model: &Model, cast: Option<DType>) -> &'static str {
    // The token embedding under each family's name.
    let embd = model.tensors.iter().find(|t| {
        [
            "embed_tokens.weight",
            "word_embeddings.weight",
            "tok_embeddings.weight",
            ".wte.weight",
            "embed_in.weight",
        ]
        .iter()
        .any(|n| t.info.name.ends_with(n))
    });
    match cast.or(embd.map(|t| t.info.dtype)) {
        Some(DType::F16) => "float16",
        Some(DType::BF16) => "bfloat16",
        _ => "float32",
    }
}

/// `t` under its Hugging Face name, with the conversion's transforms
/// undone. A tensor the tables do not place is refused by name (rather
/// than a folder transformers would load with it missing or misplaced).
fn rename_back(a: &dyn Architecture, export: &Export, h: &Hparams, mut t: Tensor) -> Result<Tensor> {
    let gguf = t.info.name.clone();
    let hf = arch::unmap_name(a.tables(), &gguf).ok_or_else(|| {
        Error::unsupported(format!(
            "tensor '{gguf}' has no Hugging Face name in this build's {} layout",
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
            unpermute_rows(&mut t, n)?;
        }
    }
    t.info = modelconv_ir::TensorInfo::new(hf.clone(), t.info.dtype, t.info.shape.clone())?;
    (export.fix)(h, &hf, &mut t)?;
    Ok(t)
}

/// The inverse of [`arch::permute_qk`]'s row order.
fn unpermute_rows(t: &mut Tensor, n_head: u64) -> Result<()> {
    let rows = t.info.shape.first().copied().unwrap_or(0);
    ungather_rows(t, &permute_rows(rows, n_head)?)
}

/// The block prefixes (`blk.N`) of `model`'s tensors named
/// `blk.N{suffix}`: the blocks a join works through.
pub fn blocks_having(model: &Model, suffix: &str) -> Vec<String> {
    model
        .tensors
        .iter()
        .filter_map(|t| t.info.name.strip_suffix(suffix).map(str::to_string))
        .collect()
}

/// The tensor `name` taken out of `model`, for joining with its pair
/// (Granite-MoE's halves, DeepSeek's k_b and v_b); missing, it is refused
/// by name.
pub fn take_pair_member(model: &mut Model, name: &str) -> Result<Tensor> {
    let i = model.tensors.iter().position(|t| t.info.name == name).ok_or_else(|| {
        Error::invalid(format!(
            "{}: {name} is missing (its pair is there)",
            model.path.display()
        ))
    })?;
    Ok(model.tensors.remove(i))
}

/// A one-row matrix that ggml writes 1-D (`ggml_n_dims` drops the outer 1,
/// so llama-quantize's output has `[n]`) back as the `[1, n]` transformers
/// expects, where `hf` ends with `suffix`.
pub fn one_row_as_matrix(hf: &str, suffix: &str, t: &mut Tensor) -> Result<()> {
    if let (true, &[n]) = (hf.ends_with(suffix), &t.info.shape[..]) {
        t.info = modelconv_ir::TensorInfo::new(t.info.name.clone(), t.info.dtype, vec![1, n])?;
    }
    Ok(())
}

/// A block-quantized `t` dequantized to F32 (a transform that moves single
/// elements, as a transpose does, cannot move blocks); others as they are.
pub fn blocks_as_f32(t: &mut Tensor) -> Result<()> {
    if t.info.dtype.is_quantized() {
        let f32s = modelconv_ggml::quants::DequantizeSource::new(t.data.clone(), t.info.dtype)?;
        t.data = Arc::new(modelconv_ir::view::AnyAlignment::new(Arc::new(f32s)));
        t.info = modelconv_ir::TensorInfo::new(t.info.name.clone(), DType::F32, t.info.shape.clone())?;
        t.location = None;
    }
    Ok(())
}

/// `t`'s rows put back where a conversion's row view took them from:
/// row `order[i]` of the Hugging Face tensor was row `i` of the GGUF one.
/// Rows are whole blocks in every ggml type, so a quantized tensor is
/// regrouped before it is dequantized; a 1-D tensor (a bias) has rows of
/// one element.
pub fn ungather_rows(t: &mut Tensor, order: &[u64]) -> Result<()> {
    let rows = t.info.shape.first().copied().unwrap_or(0);
    if order.len() as u64 != rows {
        return Err(Error::invalid(format!(
            "tensor '{}' {:?}: {} rows, the layout has {}",
            t.info.name,
            t.info.shape,
            rows,
            order.len()
        )));
    }
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

/// config.json's keys of a LLaMA-style decoder, as transformers' configs
/// name them.
pub fn decoder_config(h: &Hparams, facts: &Facts) -> Result<Map<String, Json>> {
    let heads = h.uint("attention.head_count")?;
    let hidden = h.uint("embedding_length")?;
    let mut c = common_config(h, facts)?;
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
    c.insert("attention_bias".into(), json!(facts.has_bias));
    Ok(c)
}

/// The keys every family's config has: the vocabulary's size and special
/// tokens, the tied head, the weights' type.
pub fn common_config(h: &Hparams, facts: &Facts) -> Result<Map<String, Json>> {
    let vocab = match h.strings("tokenizer.ggml.tokens") {
        Some(t) => t.len() as u64,
        None => h.uint("vocab_size")?,
    };
    let mut c = Map::new();
    c.insert("vocab_size".into(), json!(vocab));
    c.insert("tie_word_embeddings".into(), json!(facts.tied));
    c.insert("dtype".into(), json!(facts.dtype));
    for (key, which) in [
        ("bos_token_id", "bos"),
        ("eos_token_id", "eos"),
        ("pad_token_id", "padding"),
    ] {
        if let Some(id) = h.token_id(which) {
            c.insert(key.into(), json!(id));
        }
    }
    Ok(c)
}

/// The decoder's `attention_bias` under the name a family's config gives
/// it (`qkv_bias`, `use_bias`, …).
pub fn bias_named(c: &mut Map<String, Json>, key: &str) {
    let bias = c.get("attention_bias").cloned().unwrap_or(Json::Bool(false));
    c.insert(key.into(), bias);
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
