//! A PEFT LoRA adapter as `convert_lora_to_gguf.py` writes it: the base
//! model's architecture (its config.json only; no base weights), each
//! `lora_A`/`lora_B` pair renamed to the GGUF name of the weight it adapts
//! with `.lora_a`/`.lora_b` appended, `general.type = adapter`,
//! `adapter.type = lora`, `adapter.lora.alpha`, no hyper-parameters and no
//! vocabulary.
//!
//! The delta of a pair is `B · A` (B: out × rank, A: rank × in). The
//! converter runs the base architecture's tensor transforms on the pair as
//! one tensor (its `LoraTorchTensor`): a transform of the weight's rows
//! (LLaMA's Q/K permutation, a row split of a fused tensor) is the same
//! transform of B's rows, A unchanged. So each pair's B goes through the
//! architecture's [`modify_tensors`](crate::arch::Architecture::modify_tensors) as the weight would, and
//! every tensor it yields is paired with the same A. Architectures whose
//! transforms are not row views (GPT-2's transposes) are refused, as are
//! results that are not `out' × rank`.

use crate::arch::{transpose, Ctx, Held};
use crate::config::read_json;
use crate::{meta, skipped, sort_as_converter, typed, Folder, OutType, OUT_TYPES};
use modelconv_ir::{Array, CastSource, DType, Error, Metadata, Model, Result, Tensor, TensorInfo, Value};
use serde_json::Value as Json;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A PEFT adapter folder: where it is and its `adapter_config.json`.
#[derive(Debug, Clone)]
pub struct Adapter {
    pub dir: PathBuf,
    pub config: serde_json::Map<String, Json>,
}

impl Adapter {
    /// The adapter `dir` is, when it holds an `adapter_config.json`.
    pub fn detect(dir: &Path) -> Result<Option<Adapter>> {
        let path = dir.join("adapter_config.json");
        if !dir.is_dir() || !path.is_file() {
            return Ok(None);
        }
        let Some(Json::Object(config)) = read_json(&path)? else {
            return Err(Error::malformed(&path, "expected a JSON object"));
        };
        let kind = config.get("peft_type").and_then(Json::as_str).unwrap_or("LORA");
        if !kind.eq_ignore_ascii_case("lora") {
            return Err(Error::unsupported(format!(
                "{}: peft_type {kind}; GGUF adapters are LoRA (convert_lora_to_gguf.py converts LoRA only)",
                path.display()
            )));
        }
        if config.get("use_dora") == Some(&Json::Bool(true)) {
            return Err(Error::unsupported(format!(
                "{}: a DoRA adapter (use_dora): llama.cpp's LoRA adapters have no magnitude vectors",
                path.display()
            )));
        }
        Ok(Some(Adapter {
            dir: dir.to_path_buf(),
            config,
        }))
    }

    /// The base model's folder: `base` when given, else the adapter's
    /// `base_model_name_or_path` when that is a local folder with a
    /// config.json (the converter would fetch a hub id; we do not).
    pub fn base_dir(&self, base: Option<&Path>) -> Result<PathBuf> {
        if let Some(b) = base {
            return Ok(b.to_path_buf());
        }
        let named = self.config.get("base_model_name_or_path").and_then(Json::as_str);
        match named {
            Some(n) if Path::new(n).join("config.json").is_file() => Ok(PathBuf::from(n)),
            Some(n) => Err(Error::invalid(format!(
                "{}: the adapter's base model is '{n}', which is not a local folder with a config.json; \
                 give the base model's folder (its config.json is enough) with --base",
                self.dir.display()
            ))),
            None => Err(Error::invalid(format!(
                "{}: adapter_config.json names no base model; give its folder with --base",
                self.dir.display()
            ))),
        }
    }

    fn alpha(&self) -> Result<f32> {
        self.config
            .get("lora_alpha")
            .and_then(Json::as_f64)
            .map(|a| a as f32)
            .ok_or_else(|| {
                Error::malformed(
                    &self.dir.join("adapter_config.json"),
                    "no numeric lora_alpha (the adapter's scale is alpha / rank)",
                )
            })
    }

    /// `alora_invocation_tokens`, when the adapter is an activated LoRA.
    fn invocation_tokens(&self) -> Result<Option<Vec<u32>>> {
        let path = self.dir.join("adapter_config.json");
        match self.config.get("alora_invocation_tokens") {
            Some(Json::Array(ids)) if !ids.is_empty() => ids
                .iter()
                .map(|v| v.as_u64().and_then(|x| u32::try_from(x).ok()))
                .collect::<Option<Vec<u32>>>()
                .map(Some)
                .ok_or_else(|| Error::malformed(&path, "alora_invocation_tokens: expected token ids")),
            _ if self
                .config
                .get("invocation_string")
                .is_some_and(|s| s.as_str().is_some_and(|s| !s.is_empty())) =>
            {
                Err(Error::unsupported(format!(
                    "{}: an activated LoRA given by invocation_string only; tokenizing it needs the base \
                     model's tokenizer: add its ids as alora_invocation_tokens",
                    path.display()
                )))
            }
            _ => Ok(None),
        }
    }
}

/// The base-model name of an adapter tensor (`get_base_tensor_name`).
fn base_name(name: &str) -> String {
    name.replace("base_model.model.", "")
        .replace(".lora_A.weight", ".weight")
        .replace(".lora_B.weight", ".weight")
        .replace(".lora_embedding_A", ".weight")
        .replace(".lora_embedding_B", ".weight")
}

/// One adapted weight: its canonical HF name and the two halves.
struct Pair {
    hf: String,
    a: Option<Tensor>,
    b: Option<Tensor>,
}

/// What the adapter's tensors are, in the converter's order.
struct AdapterTensors {
    /// The norms mergekit-extract-lora adds, with their canonical HF
    /// names, as they came (the converter yields them at once).
    norms: Vec<(String, Tensor)>,
    /// The pairs, in the order their first half came.
    pairs: Vec<Pair>,
}

fn collect(f: &Folder, model: &mut Model) -> Result<AdapterTensors> {
    let (mut norms, mut pairs) = (Vec::new(), Vec::<Pair>::new());
    for t in std::mem::take(&mut model.tensors) {
        let name = t.info.name.clone();
        let Some(hf) = f.arch.filter(&base_name(&name)) else {
            continue;
        };
        if skipped(&hf) {
            continue;
        }
        let hf = f.arch.canonical(&f.hf_arch, hf);
        let is_a = name.contains(".lora_A.weight") || name.contains(".lora_embedding_A");
        let is_b = name.contains(".lora_B.weight") || name.contains(".lora_embedding_B");
        if !is_a && !is_b {
            if name.contains(".base_layer.weight") {
                continue;
            }
            if name.contains("_layernorm") || name.contains(".norm") {
                norms.push((hf, t));
                continue;
            }
            let hint = if name.contains(".embed_tokens.weight") || name.contains(".lm_head.weight") {
                " (embeddings in an adapter: tokens added during fine-tuning, which a GGUF adapter cannot carry)"
            } else {
                ""
            };
            return Err(Error::unsupported(format!(
                "{}: tensor '{name}' is neither a lora_A nor a lora_B tensor{hint}",
                model.path.display()
            )));
        }
        let at = match pairs.iter().position(|p| p.hf == hf) {
            Some(i) => i,
            None => {
                pairs.push(Pair { hf, a: None, b: None });
                pairs.len() - 1
            }
        };
        let slot = if is_a { &mut pairs[at].a } else { &mut pairs[at].b };
        *slot = Some(t);
    }
    Ok(AdapterTensors { norms, pairs })
}

/// `t` as F32 (a lazy cast) unless it already is.
fn as_f32(t: Tensor) -> Result<Tensor> {
    if t.info.dtype == DType::F32 {
        return Ok(t);
    }
    let info = TensorInfo::new(t.info.name.clone(), DType::F32, t.info.shape.clone())?;
    Tensor::new(
        info,
        Arc::new(CastSource::new(t.data.clone(), t.info.dtype, DType::F32)?),
    )
}

/// The two halves in the types the converter computes in: both F32 when
/// they differ or either is not F16/F32, as they are otherwise.
fn unified(a: Tensor, b: Tensor) -> Result<(Tensor, Tensor)> {
    let plain = |d: DType| matches!(d, DType::F16 | DType::F32);
    if a.info.dtype == b.info.dtype && plain(a.info.dtype) {
        return Ok((a, b));
    }
    Ok((as_f32(a)?, as_f32(b)?))
}

/// One pair's GGUF tensors: `NAME.lora_a`, `NAME.lora_b` for each weight
/// the architecture makes of it.
fn pair_tensors(cx: &Ctx, p: Pair, held: &mut Held) -> Result<Vec<Tensor>> {
    let half = |t: &Option<Tensor>, which| {
        t.clone()
            .ok_or_else(|| Error::invalid(format!("adapter weight '{}' has no {which} tensor", p.hf)))
    };
    let (a, b) = (half(&p.a, "lora_A")?, half(&p.b, "lora_B")?);
    let (ra, rb) = (&a.info.shape, &b.info.shape);
    if ra.len() != 2 || rb.len() != 2 || ra[0] != rb[1] {
        return Err(Error::invalid(format!(
            "adapter weight '{}': lora_A {ra:?} and lora_B {rb:?} are not rank x in and out x rank",
            p.hf
        )));
    }
    let rank = ra[0];
    let (a, b) = unified(a, b)?;
    let arch = cx.folder.arch;
    let dest = arch.modify_tensors(cx, &p.hf, b, held)?;
    if dest.is_empty() && p.hf == "lm_head.weight" {
        return Err(Error::unsupported(
            "lm_head is in the adapter, but the base model's conversion drops it (tied embeddings)",
        ));
    }
    let mut out = Vec::with_capacity(2 * dest.len());
    for b in dest {
        if b.info.shape.len() != 2 || b.info.shape[1] != rank {
            return Err(Error::unsupported(format!(
                "adapter weight '{}': llama.cpp's {} conversion reshapes it into {} {:?}, which a LoRA pair cannot follow",
                p.hf,
                arch.name(),
                b.info.name,
                b.info.shape
            )));
        }
        let name = b.info.name.clone();
        let mut lora_a = a.clone();
        // llm_build_inp_embd multiplies by token_embd's A transposed.
        if name == "token_embd.weight" {
            transpose(&mut lora_a)?;
        }
        lora_a.info = TensorInfo::new(format!("{name}.lora_a"), lora_a.info.dtype, lora_a.info.shape.clone())?;
        let mut lora_b = b;
        lora_b.info = TensorInfo::new(format!("{name}.lora_b"), lora_b.info.dtype, lora_b.info.shape.clone())?;
        out.push(lora_a);
        out.push(lora_b);
    }
    Ok(out)
}

/// The parameter count gguf-py gives an adapter: each `lora_b` counted as
/// the out × in delta it makes with the `lora_a` before it, negated (the
/// sign that says "an adapter" to the name heuristics).
fn adapter_params(tensors: &[Tensor]) -> i64 {
    let mut total = 0u64;
    let mut last_a: Option<&Tensor> = None;
    for t in tensors {
        let name = t.info.name.as_str();
        let size = if name.ends_with(".lora_a") {
            last_a = Some(t);
            continue;
        } else if name.ends_with(".lora_b") {
            let cols = last_a.and_then(|a| a.info.shape.last()).copied().unwrap_or(0);
            t.info.shape.first().copied().unwrap_or(0).saturating_mul(cols)
        } else {
            t.info.shape.iter().product()
        };
        total = total.saturating_add(size);
    }
    let total = i64::try_from(total).unwrap_or(i64::MAX);
    if last_a.is_some() {
        -total
    } else {
        total
    }
}

/// Rewrites the adapter `model` (opened from its folder) into a GGUF LoRA
/// adapter for the base model `f`.
pub(crate) fn apply(model: &mut Model, f: &Folder, adapter: &Adapter, out: OutType) -> Result<()> {
    if !f.arch.lora_follows_rows() {
        return Err(Error::unsupported(format!(
            "{}: llama.cpp's {} conversion transposes weights, which a LoRA pair cannot follow",
            adapter.dir.display(),
            f.arch.name()
        )));
    }
    // convert_lora_to_gguf.py's default output type is F32.
    let out_type = match out {
        OutType::Source => DType::F32,
        OutType::Type(d) if OUT_TYPES.contains(&d) => d,
        OutType::Type(d) => {
            return Err(Error::unsupported(format!(
                "{d}: a LoRA adapter converts to F32, F16, BF16 or Q8_0"
            )))
        }
    };
    let block_count = f
        .hparams
        .uint(&["n_layers", "num_hidden_layers", "n_layer", "num_layers"])?;
    sort_as_converter(model);
    let AdapterTensors { norms, pairs } = collect(f, model)?;
    let cx = Ctx { folder: f, block_count };
    let mut held = Held::default();
    let mut tensors = Vec::new();
    for (hf, t) in norms {
        for t in f.arch.modify_tensors(&cx, &hf, t, &mut held)? {
            tensors.push(typed(t, out_type)?);
        }
    }
    // A malformed pair names the adapter's folder.
    for p in pairs {
        for t in pair_tensors(&cx, p, &mut held).map_err(|e| e.in_file(&adapter.dir))? {
            tensors.push(typed(t, out_type)?);
        }
    }
    held.check_empty()
        .map_err(|e| Error::unsupported(format!("LoRA on expert tensors, which this build does not stack: {e}")))?;
    model.tensors = tensors;
    model.check_unique_names()?;
    model.metadata = adapter_metadata(f, adapter, adapter_params(&model.tensors))?;
    model.notes = vec![format!(
        "PEFT LoRA adapter for Hugging Face {} → llama.cpp '{}' adapter: {} tensors",
        f.hf_arch,
        f.arch.name(),
        model.tensors.len()
    )];
    Ok(())
}

/// The adapter's keys in the converter's order: the architecture, the
/// type keys (LoraModel.set_type), the model card's `general.*` (read from
/// the adapter's folder), alpha and invocation tokens.
fn adapter_metadata(f: &Folder, adapter: &Adapter, total_params: i64) -> Result<Metadata> {
    let mut md = Metadata::new();
    md.set("general.architecture", Value::String(f.arch.name().into()));
    let general = meta::General::for_adapter(&adapter.dir, &f.dir, total_params);
    let type_keys = [
        ("general.type", Value::String("adapter".into())),
        ("adapter.type", Value::String("lora".into())),
    ];
    meta::write_general_as(&mut md, &adapter.dir, &general, type_keys)?;
    md.set("adapter.lora.alpha", Value::F32(adapter.alpha()?));
    if let Some(ids) = adapter.invocation_tokens()? {
        md.set("adapter.alora.invocation_tokens", Value::Array(Array::U32(ids)));
    }
    md.set("general.quantization_version", Value::U32(2));
    Ok(md)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_names_drop_the_peft_wrapping() {
        assert_eq!(
            base_name("base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight"),
            "model.layers.0.self_attn.q_proj.weight"
        );
        assert_eq!(
            base_name("base_model.model.model.embed_tokens.lora_embedding_B"),
            "model.embed_tokens.weight"
        );
    }
}
