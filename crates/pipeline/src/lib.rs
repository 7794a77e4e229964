//! # modelconv-pipeline
//!
//! The transforms between a reader and a writer, as `Model → Model` stages
//! every command that writes or compares models uses: [`select`],
//! [`rename`], [`dedupe`], [`cast`] (floats to F32/F16/BF16/F64, block
//! types dequantized first), [`quantize`] (llama.cpp's file types, mixes,
//! eligibility rules and tensor order, byte-identical to llama-quantize),
//! and [`source_as`], the one chain dequantize → cast → quantize they share.
//! Stages only wrap lazy sources; no tensor data is read until a writer
//! pulls it.

use modelconv_ggml::imatrix::Imatrix;
use modelconv_ggml::mix::{self, FileType, MixOptions, TensorDesc};
use modelconv_ggml::quants::{self, DequantizeSource, ErrorStats, QuantizeSource};
use modelconv_ir::{
    can_cast, decoded, CastSource, ChangedTensor, DType, DataSource, Error, KeptTensor, Model, Result, Tensor,
    TensorInfo, Value,
};
use regex::Regex;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

/// Keeps the tensors whose name matches any of `include` (all when empty)
/// and none of `exclude`.
pub fn select(model: &mut Model, include: &[Regex], exclude: &[Regex]) {
    model.tensors.retain(|t| {
        let name = &t.info.name;
        (include.is_empty() || include.iter().any(|r| r.is_match(name))) && !exclude.iter().any(|r| r.is_match(name))
    });
}

/// Applies `REGEX → REPLACEMENT` rules in order to every name; refuses a
/// result where two tensors share a name.
pub fn rename(model: &mut Model, rules: &[(Regex, String)]) -> Result<()> {
    for t in &mut model.tensors {
        for (re, to) in rules {
            t.info.name = re.replace_all(&t.info.name, to.as_str()).into_owned();
        }
    }
    model
        .check_unique_names()
        .map_err(|e| Error::invalid(format!("after renaming: {e}")))
}

/// Parses `REGEX=REPLACEMENT` rename rules.
pub fn parse_renames(specs: &[String]) -> Result<Vec<(Regex, String)>> {
    specs
        .iter()
        .map(|s| {
            let (from, to) = s
                .split_once('=')
                .ok_or_else(|| Error::invalid(format!("--rename '{s}': expected REGEX=REPLACEMENT")))?;
            let re = Regex::new(from).map_err(|e| Error::invalid(format!("--rename '{s}': {e}")))?;
            Ok((re, to.to_string()))
        })
        .collect()
}

/// Drops tensors that are another name for bytes already kept (tied
/// weights: same file, offset, dtype and shape). Returns `(dropped, kept)`.
pub fn dedupe(model: &mut Model) -> Vec<(String, String)> {
    // Tied: the same bytes of the same file, or (data held in memory, such
    // as a numpy array shared through a pickle's memo) the same source.
    #[derive(PartialEq, Eq, Hash)]
    enum Place {
        File(PathBuf, u64),
        Source(usize),
    }
    let mut first: HashMap<(Place, DType, Vec<u64>), String> = HashMap::new();
    let mut dropped = Vec::new();
    model.tensors.retain(|t| {
        let place = match &t.location {
            Some(loc) => Place::File(loc.file.clone(), loc.offset),
            None => Place::Source(Arc::as_ptr(&t.data).cast::<()>() as usize),
        };
        let id = (place, t.info.dtype, t.info.shape.clone());
        match first.get(&id) {
            Some(kept) => {
                dropped.push((t.info.name.clone(), kept.clone()));
                false
            }
            None => {
                first.insert(id, t.info.name.clone());
                true
            }
        }
    });
    dropped
}

/// How a stage that changes types treats what it meets.
#[derive(Debug, Clone, Copy, Default)]
pub struct TypeOptions {
    /// Quantize tensors that are already quantized (dequantized first).
    pub allow_requantize: bool,
    /// Quantize NaN/Inf values and overflowing scales instead of refusing.
    pub allow_nonfinite: bool,
}

/// The one chain every command uses to turn a tensor's data into `to`:
/// block types are dequantized to F32, floats cast, and the result
/// quantized when `to` is a block type. `stats` gathers the quantization
/// error.
pub fn source_as(
    t: &Tensor,
    to: DType,
    opts: TypeOptions,
    stats: Option<Arc<ErrorStats>>,
) -> Result<Arc<dyn DataSource>> {
    source_as_weighted(t, to, opts, stats, None)
}

/// [`source_as`], quantizing under an importance matrix's values for this
/// tensor (`n_per_row` per expert matrix) when the type has such a path.
pub fn source_as_weighted(
    t: &Tensor,
    to: DType,
    opts: TypeOptions,
    stats: Option<Arc<ErrorStats>>,
    importance: Option<Arc<[f32]>>,
) -> Result<Arc<dyn DataSource>> {
    let name = &t.info.name;
    let from = t.info.dtype;
    if from == to {
        return Ok(t.data.clone());
    }
    let mut src = t.data.clone();
    let mut cur = from;
    if from.is_quantized() {
        if to.is_quantized() && !opts.allow_requantize {
            return Err(Error::invalid(format!(
                "tensor '{name}' is already {from}; quantizing it again to {to} compounds the error of both. Start from F32/F16/BF16 weights, or pass --allow-requantize"
            )));
        }
        src = Arc::new(DequantizeSource::new(src, from).map_err(|e| e.for_tensor(name))?);
        cur = DType::F32;
    }
    if to.is_quantized() {
        let mut q = QuantizeSource::new(src, cur, to, opts.allow_nonfinite).map_err(|e| e.for_tensor(name))?;
        if let Some(s) = stats {
            q = q.with_stats(s);
        }
        if let Some(values) = importance.filter(|_| quants::uses_importance(to)) {
            let (n_per_row, rows) = matrix_dims(&t.info.shape);
            q = q
                .with_importance(values, n_per_row, rows)
                .map_err(|e| e.for_tensor(name))?;
        }
        return Ok(Arc::new(q));
    }
    if cur == to {
        return Ok(src);
    }
    if !can_cast(cur, to) {
        return Err(Error::unsupported(format!(
            "tensor '{name}': cannot convert {from} to {to}"
        )));
    }
    Ok(Arc::new(CastSource::new(src, cur, to)?))
}

/// (ne0, ne1) of a row-major shape: the row length and the rows of one
/// matrix (one expert's, for a stacked 3-D tensor).
fn matrix_dims(shape: &[u64]) -> (u64, u64) {
    let n = shape.len();
    let ne0 = shape.last().copied().unwrap_or(1);
    let ne1 = if n >= 2 { shape[n - 2] } else { 1 };
    (ne0, ne1)
}

/// The matrices a tensor stacks (ggml's ne2: experts), 1 for a 2-D tensor.
fn matrix_count(shape: &[u64]) -> u64 {
    let n = shape.len();
    if n >= 3 {
        shape[n - 3]
    } else {
        1
    }
}

/// The shape as llama-quantize writes it: gguf_add_tensor stores
/// ggml_n_dims dimensions, so trailing 1s of ggml's `ne` (leading 1s of
/// our row-major shape) are dropped, down to one dimension (a `[1, 256]`
/// shared-expert gate becomes `[256]`; a 0 is kept, so the size stays).
fn ggml_dims(t: &mut Tensor) -> Result<()> {
    let keep = t
        .info
        .shape
        .iter()
        .position(|&d| d != 1)
        .unwrap_or(t.info.shape.len().saturating_sub(1));
    let keep = keep.min(t.info.shape.len().saturating_sub(1));
    if keep > 0 {
        let shape = t.info.shape[keep..].to_vec();
        t.info = TensorInfo::new(t.info.name.clone(), t.info.dtype, shape)?;
    }
    Ok(())
}

/// Replaces `t`'s type and data.
fn retype(t: &mut Tensor, to: DType, data: Arc<dyn DataSource>) -> Result<()> {
    t.info = TensorInfo::new(t.info.name.clone(), to, t.info.shape.clone())?;
    t.data = data;
    t.location = None;
    Ok(())
}

/// Casts every floating-point tensor to `to` (F32, F16, BF16 or F64);
/// block-quantized tensors are dequantized; integer tensors are kept.
pub fn cast(model: &mut Model, to: DType) -> Result<()> {
    cast_as(model, to, false).map(|_| ())
}

/// What a cast did: the tensors it changed, and the ones it left as they
/// were although they are not of the requested type, with the reason.
#[derive(Debug, Default)]
pub struct CastOutcome {
    pub changed: Vec<ChangedTensor>,
    pub unchanged: Vec<KeptTensor>,
}

/// [`cast`], for llama.cpp's format when `llama` is set: the tensors
/// llama.cpp keeps in F32 ([`mix::stays_f32`]) go to F32, and
/// `general.file_type` and `general.quantization_version` are set as
/// llama-quantize sets them.
pub fn cast_as(model: &mut Model, to: DType, llama: bool) -> Result<CastOutcome> {
    if !matches!(to, DType::F32 | DType::F16 | DType::BF16 | DType::F64) {
        return Err(Error::invalid(format!("casts go to F32, F16, BF16 or F64, not {to}")));
    }
    let mut out = CastOutcome::default();
    for t in &mut model.tensors {
        let from = t.info.dtype;
        let keeps_f32 = llama && mix::stays_f32(&t.info.name, t.info.shape.len());
        let target = if keeps_f32 { DType::F32 } else { to };
        if from != target && (from.is_quantized() || can_cast(from, target)) {
            let before = t.info.byte_len;
            let data = source_as(t, target, TypeOptions::default(), None)?;
            retype(t, target, data)?;
            out.changed.push(ChangedTensor {
                name: t.info.name.clone(),
                from: from.name().to_string(),
                to: target.name().to_string(),
                shape: t.info.shape.clone(),
                bytes_before: before,
                bytes_after: t.info.byte_len,
                relative_rmse: None,
                scheme: None,
                op: None,
            });
        } else if t.info.dtype != to {
            let reason = if keeps_f32 {
                "llama.cpp keeps 1-D tensors and norms in F32".to_string()
            } else if from.is_float() {
                format!("{from} cannot be cast to {to}")
            } else {
                "not floating point: integer and boolean tensors keep their type".to_string()
            };
            out.unchanged.push(KeptTensor {
                name: t.info.name.clone(),
                dtype: Some(from.name().to_string()),
                reason,
            });
        }
    }
    if let (true, Some(ft)) = (llama, mix::file_type(to.name())) {
        set_file_type(model, ft);
    }
    Ok(out)
}

/// `general.quantization_version` and `general.file_type`, as llama.cpp's
/// gguf_set_val writes them: an existing key is removed and appended; then
/// a split input's `split.*` keys removed, as llama-quantize removes them
/// (src/llama-quant.cpp, "Remove split metadata").
fn set_file_type(model: &mut Model, ft: FileType) {
    for (key, value) in [("general.quantization_version", 2), ("general.file_type", ft.id)] {
        model.metadata.remove(key);
        model.metadata.set(key, Value::U32(value));
    }
    for key in ["split.no", "split.count", "split.tensors.count"] {
        model.metadata.remove(key);
    }
}

/// The llama.cpp file type of a plain quantization to `ty` (what
/// `quantize --type TY --pure` means), if `ty` is a type we quantize to.
pub fn file_type_for(ty: DType) -> Option<FileType> {
    mix::file_type(ty.name()).filter(|f| f.default == ty && quants::can_quantize(ty) && ty != DType::Q8_K)
}

/// One tensor of a quantization, for the report.
#[derive(Debug, Clone)]
pub struct Row {
    pub name: String,
    pub from: DType,
    pub to: DType,
    pub shape: Vec<u64>,
    /// Bytes before and after.
    pub bytes_before: u64,
    pub bytes: u64,
    /// The quantization error against the source, once the data was written.
    pub stats: Option<Arc<ErrorStats>>,
}

impl Row {
    pub fn relative_rmse(&self) -> Option<f64> {
        self.stats.as_ref().map(|s| s.relative_rmse())
    }

    /// The row for a report (its error as measured so far).
    pub fn changed(&self) -> ChangedTensor {
        ChangedTensor {
            name: self.name.clone(),
            from: self.from.name().to_string(),
            to: self.to.name().to_string(),
            shape: self.shape.clone(),
            bytes_before: self.bytes_before,
            bytes_after: self.bytes,
            relative_rmse: self.relative_rmse(),
            scheme: None,
            op: None,
        }
    }
}

/// A quantization request: a llama.cpp file type and its options.
#[derive(Debug, Clone)]
pub struct Quantization {
    pub file_type: FileType,
    pub mix: MixOptions,
    pub types: TypeOptions,
    /// `--imatrix` (after `--include-weights` / `--exclude-weights`; `None`
    /// when nothing is left, as llama-quantize then uses none).
    pub imatrix: Option<Arc<Imatrix>>,
    /// Keys set after the file type, in order (`--override-kv`, then the
    /// `quantize.imatrix.*` keys), each removed and appended as
    /// llama.cpp's gguf_set_val does.
    pub overrides: Vec<(String, Value)>,
    /// `--prune-layers`: layers dropped, the rest renumbered.
    pub prune_layers: Vec<u32>,
    /// `--keep-split`: tensors in file order and written back into as
    /// many files as the input had ([`Model::output_shards`]).
    pub keep_split: bool,
    /// `--dry-run`: nothing will be read, so a missing or ill-fitting
    /// importance matrix is noted instead of refused.
    pub plan_only: bool,
}

impl Quantization {
    /// A quantization to `file_type` with the given rules and nothing else.
    pub fn new(file_type: FileType, mix: MixOptions, types: TypeOptions) -> Self {
        Quantization {
            file_type,
            mix,
            types,
            imatrix: None,
            overrides: Vec::new(),
            prune_layers: Vec::new(),
            keep_split: false,
            plan_only: false,
        }
    }
}

/// Quantizes `model` as llama-quantize does: tensors in llama.cpp's order,
/// each given the type the mix rules choose (eligibility, fallbacks,
/// overrides), `general.quantization_version` and `general.file_type`
/// set. Fails when the request would change no tensor.
pub fn quantize(model: &mut Model, q: &Quantization) -> Result<Vec<Row>> {
    quantize_allowing(model, q, false)
}

/// [`quantize`]; with `allow_unchanged`, a request that quantizes no
/// tensor is carried out (the file keeps its types and its file type).
pub fn quantize_allowing(model: &mut Model, q: &Quantization, allow_unchanged: bool) -> Result<Vec<Row>> {
    // COPY keeps the file type the loader sees in the input, before pruning.
    let copied_file_type = q.file_type.is_copy().then(|| {
        let mut descs: Vec<TensorDesc> = model.tensors.iter().map(|t| TensorDesc::of(&t.info)).collect();
        descs.sort_by(|a, b| mix::llama_order(&a.name, &b.name));
        mix::loader_file_type(&model.metadata, &descs)
    });
    let shard_of = q.keep_split.then(|| shard_index(model)).transpose()?;
    let original_names = prune_layers(model, &q.prune_layers)?;
    // llama-quantize walks (and writes) tensors in its loader's order, or
    // with --keep-split in file order, shard by shard.
    if shard_of.is_none() {
        model
            .tensors
            .sort_by(|a, b| mix::llama_order(&a.info.name, &b.info.name));
    }
    let descs: Vec<TensorDesc> = model.tensors.iter().map(|t| TensorDesc::of(&t.info)).collect();
    let mut rules = q.mix.clone();
    rules.has_imatrix = q.imatrix.is_some();
    let types = if q.overrides.is_empty() {
        mix::choose_types(q.file_type, &rules, &model.metadata, &descs)?
    } else {
        // llama.cpp reads the hyper-parameters with the overrides applied.
        let mut seen = model.metadata.clone();
        for (key, value) in &q.overrides {
            seen.remove(key);
            seen.set(key, value.clone());
        }
        mix::choose_types(q.file_type, &rules, &seen, &descs)?
    };
    let wants_blocks = q.file_type.default.is_quantized();
    let none = !types.iter().zip(&model.tensors).any(|(to, t)| {
        if wants_blocks {
            to.is_quantized() && *to != t.info.dtype
        } else {
            *to != t.info.dtype
        }
    });
    if none && !allow_unchanged && !q.file_type.is_copy() {
        let rule = if wants_blocks {
            "llama.cpp quantizes 2-D '*.weight' tensors (not norms or position embeddings) whose rows fill whole blocks"
        } else {
            "every eligible tensor already has that type"
        };
        return Err(Error::invalid(format!(
            "no tensor can be quantized to {}: {rule}; {} tensors, none eligible (--allow-unchanged writes the file anyway)",
            q.file_type.name,
            model.tensors.len()
        )));
    }
    let importance = match importance_per_tensor(model, &types, q, &original_names) {
        Ok(v) => v,
        // llama-quantize's dry run checks no matrix: it warns at the end.
        Err(e) if q.plan_only => {
            model.notes.push(format!(
                "dry run completed, but the quantization itself would fail: {e}"
            ));
            vec![None; types.len()]
        }
        Err(e) => return Err(e),
    };
    if let Some(id) = copied_file_type {
        set_file_type(model, FileType { id, ..q.file_type });
    } else if !none {
        set_file_type(model, q.file_type);
    }
    for (key, value) in &q.overrides {
        model.metadata.remove(key);
        model.metadata.set(key, value.clone());
    }
    if let Some(kept) = original_names.kept_layers {
        set_block_count(model, kept);
    }
    if let Some(shard_of) = shard_of {
        model.output_shards = Some(kept_shards(model, &shard_of, &original_names)?);
    }
    let mut rows = Vec::with_capacity(model.tensors.len());
    for ((t, &to), weights) in model.tensors.iter_mut().zip(&types).zip(importance) {
        modelconv_ir::check_interrupt()?;
        let (from, bytes_before) = (t.info.dtype, t.info.byte_len);
        let stats = convert_to(t, to, q.types, weights)?;
        ggml_dims(t)?;
        rows.push(Row {
            name: t.info.name.clone(),
            from,
            to,
            shape: t.info.shape.clone(),
            bytes_before,
            bytes: t.info.byte_len,
            stats,
        });
    }
    Ok(rows)
}

/// The input file (0-based) of every tensor, by name: the model's shards,
/// or one file when it was read from one.
fn shard_index(model: &Model) -> Result<HashMap<String, usize>> {
    let counts = if model.input_shards.is_empty() {
        vec![model.tensors.len()]
    } else {
        model.input_shards.clone()
    };
    if counts.iter().sum::<usize>() != model.tensors.len() {
        return Err(Error::invalid(format!(
            "--keep-split: the input's files held {} tensors, the model to quantize has {}",
            counts.iter().sum::<usize>(),
            model.tensors.len()
        )));
    }
    let shards = counts.iter().enumerate().flat_map(|(i, &c)| std::iter::repeat_n(i, c));
    Ok(model.tensors.iter().map(|t| t.info.name.clone()).zip(shards).collect())
}

/// How many tensors of each input file are left (after --prune-layers),
/// for writing them as files of their own; a file left empty is an error.
fn kept_shards(model: &Model, shard_of: &HashMap<String, usize>, names: &PrunedNames) -> Result<Vec<usize>> {
    let n = shard_of.values().max().map_or(1, |m| m + 1);
    let mut counts = vec![0usize; n];
    for t in &model.tensors {
        let name = names.original.get(&t.info.name).unwrap_or(&t.info.name);
        if let Some(&i) = shard_of.get(name) {
            counts[i] += 1;
        }
    }
    if let Some(empty) = counts.iter().position(|&c| c == 0) {
        return Err(Error::invalid(format!(
            "--keep-split: shard {} of {n} would hold no tensors once --prune-layers has removed its layers",
            empty + 1
        )));
    }
    Ok(counts)
}

/// The importance values each tensor is quantized under, checked as
/// llama-quantize checks them: a type that needs a matrix refuses a tensor
/// without one (before anything is written), and a matrix whose size is
/// not the tensor's row length × experts is an error (ignored for the
/// token embeddings, which a matrix never fits).
fn importance_per_tensor(
    model: &Model,
    types: &[DType],
    q: &Quantization,
    names: &PrunedNames,
) -> Result<Vec<Option<Arc<[f32]>>>> {
    let mut out = Vec::with_capacity(types.len());
    for (t, &to) in model.tensors.iter().zip(types) {
        let name = &t.info.name;
        if to == t.info.dtype || !to.is_quantized() {
            out.push(None);
            continue;
        }
        let lookup = names.original.get(name).unwrap_or(name);
        let mut values = q.imatrix.as_ref().and_then(|m| m.entries.get(lookup).cloned());
        if let Some(v) = &values {
            let (ne0, _) = matrix_dims(&t.info.shape);
            let expected = ne0.saturating_mul(matrix_count(&t.info.shape));
            if v.len() as u64 != expected {
                if name != "token_embd.weight" && name != "per_layer_token_embd.weight" {
                    return Err(Error::invalid(format!(
                        "tensor '{name}': the importance matrix has {} values for it, the tensor's rows × experts are {expected}",
                        v.len()
                    )));
                }
                values = None;
            }
        }
        if values.is_none() && quants::needs_importance(to) {
            return Err(Error::invalid(format!(
                "tensor '{name}' would be {to}, which is made only under an importance matrix, and {}",
                if q.imatrix.is_some() {
                    "the matrix has no entry of its size for it"
                } else {
                    "none was given (--imatrix FILE)"
                }
            )));
        }
        if values.is_none() && mix::requires_imatrix(name, to, q.file_type) {
            let why = if q.imatrix.is_some() {
                "the importance matrix has no entry for it"
            } else {
                "give an importance matrix with --imatrix FILE (llama-imatrix makes one)"
            };
            return Err(Error::invalid(format!(
                "this quantization requires an importance matrix: tensor '{name}' would be {to} ({}), and {why}",
                q.file_type.name
            )));
        }
        out.push(values);
    }
    Ok(out)
}

/// What `--prune-layers` did: the original name of every renamed tensor
/// (the importance matrix is keyed by those), and the layers kept.
#[derive(Default)]
struct PrunedNames {
    original: HashMap<String, String>,
    kept_layers: Option<u32>,
}

/// Drops the `blk.N.` tensors of the pruned layers and renumbers the
/// others as llama-quantize's remap_layer does: tensors visited in
/// llama.cpp's order, layers below the first pruned one keep their number,
/// later ones take the next free number.
fn prune_layers(model: &mut Model, prune: &[u32]) -> Result<PrunedNames> {
    let mut out = PrunedNames::default();
    if prune.is_empty() {
        return Ok(out);
    }
    let mut prune = prune.to_vec();
    prune.sort_unstable();
    prune.dedup();
    model
        .tensors
        .sort_by(|a, b| mix::llama_order(&a.info.name, &b.info.name));
    let mut mapped: HashMap<u32, Option<u32>> = HashMap::new();
    let mut next_id = 0u32;
    let mut kept = Vec::with_capacity(model.tensors.len());
    for mut t in std::mem::take(&mut model.tensors) {
        let Some((at, blk, len)) = layer_number(&t.info.name) else {
            kept.push(t);
            continue;
        };
        let to = *mapped.entry(blk).or_insert_with(|| {
            if prune.binary_search(&blk).is_ok() {
                None
            } else if blk < prune[0] {
                next_id = blk + 1;
                Some(blk)
            } else {
                next_id += 1;
                Some(next_id - 1)
            }
        });
        let Some(to) = to else { continue };
        let name = &t.info.name;
        let renamed = format!("{}{to}{}", &name[..at], &name[at + len..]);
        if renamed != t.info.name {
            out.original.insert(renamed.clone(), t.info.name.clone());
            t.info = TensorInfo::new(renamed, t.info.dtype, t.info.shape.clone())?;
        }
        kept.push(t);
    }
    model.tensors = kept;
    out.kept_layers = Some(next_id);
    Ok(out)
}

/// The first `blk.N.` in a name (llama.cpp's regex `blk\.(\d+)\.`):
/// where N starts, N, and its length in bytes.
fn layer_number(name: &str) -> Option<(usize, u32, usize)> {
    let mut from = 0;
    while let Some(i) = name[from..].find("blk.") {
        let at = from + i + 4;
        let digits = name[at..].bytes().take_while(u8::is_ascii_digit).count();
        if digits > 0 && name[at + digits..].starts_with('.') {
            return Some((at, name[at..at + digits].parse().ok()?, digits));
        }
        from = at;
    }
    None
}

/// `{arch}.block_count` after pruning, set as gguf_set_val_u32 sets it.
fn set_block_count(model: &mut Model, n: u32) {
    let arch = model
        .metadata
        .get("general.architecture")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let key = format!("{arch}.block_count");
    model.metadata.remove(&key);
    model.metadata.set(&key, Value::U32(n));
}

/// What a command asks of the pipeline; stages run in this order.
#[derive(Debug, Default)]
pub struct Request {
    /// A Hugging Face model to llama.cpp's names, keys and tokenizer, with
    /// its output type ([`modelconv_llama::apply`]): `convert` and
    /// `quantize` of a model folder to GGUF.
    pub hf: Option<(modelconv_llama::Folder, modelconv_llama::OutType)>,
    /// The way back: a GGUF in llama.cpp's conventions to a Hugging Face
    /// folder's names and layout ([`modelconv_llama::export::to_hf`]), its
    /// block-quantized tensors dequantized to F32 unless `cast` says
    /// otherwise; the folder's other files come back in [`Outcome::files`].
    pub to_hf: bool,
    pub include: Vec<Regex>,
    pub exclude: Vec<Regex>,
    pub rename: Vec<(Regex, String)>,
    pub dedupe: bool,
    /// Carry out a cast or quantization that changes no tensor (otherwise
    /// an error: a silent no-op surprises scripts).
    pub allow_unchanged: bool,
    /// Cast floats to this type (`None`: keep types).
    pub cast: Option<DType>,
    /// The output is llama.cpp's (GGUF): a cast keeps norms and 1-D
    /// tensors F32 and sets the file-type keys ([`cast_as`]).
    pub llama: bool,
    /// Quantize with llama.cpp's rules.
    pub quantize: Option<Quantization>,
    /// A diffusion or video model to GGUF as ComfyUI-GGUF writes it
    /// ([`diffusion_gguf`]); `quantize` then takes its patched
    /// llama-quantize's rules instead of llama.cpp's, and `cast` is unused.
    pub diffusion: Option<modelconv_diffusion::Source>,
    /// The loader `diffusion` is written for.
    pub diffusion_target: modelconv_diffusion::Target,
}

/// What the pipeline did besides transforming the model.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Tensors dropped by `dedupe`, with the name they were kept under.
    pub deduped: Vec<(String, String)>,
    /// Per-tensor rows of a quantization.
    pub rows: Vec<Row>,
    /// The tensors a cast changed.
    pub cast: Vec<ChangedTensor>,
    /// Tensors a cast or quantization left as they were although they are
    /// not of the requested type, with the reason.
    pub unchanged: Vec<KeptTensor>,
    /// Files to write beside the weights (`to_hf`: config.json, tokenizer).
    pub files: modelconv_llama::export::SideFiles,
}

impl Request {
    /// A request to convert everything to `dtype`: a cast for float types,
    /// for block types the quantization `quantize --type DTYPE --pure` does.
    pub fn to_dtype(&mut self, dtype: DType, types: TypeOptions) -> Result<()> {
        if dtype.is_quantized() {
            if quants::needs_importance(dtype) || mix::requires_imatrix("", dtype, mix::FileType::default_of(dtype)) {
                return Err(Error::invalid(format!(
                    "{dtype} is made only under an importance matrix: `modelconv quantize --type {dtype} --imatrix FILE`"
                )));
            }
            let file_type = file_type_for(dtype).ok_or_else(|| {
                Error::unsupported(format!(
                    "quantizing to {dtype} is not supported (every type llama-quantize offers is: Q4_0…Q8_0, Q2_K…Q6_K, IQ4_NL, IQ4_XS, IQ3_S, TQ1_0, TQ2_0, Q1_0, Q2_0 here; the other i-quants with quantize --imatrix)"
                ))
            })?;
            let mix = MixOptions {
                pure: true,
                ..Default::default()
            };
            self.quantize = Some(Quantization::new(file_type, mix, types));
        } else {
            if !matches!(dtype, DType::F32 | DType::F16 | DType::BF16 | DType::F64) {
                return Err(Error::invalid(format!(
                    "--dtype {dtype}: casts go to F32, F16, BF16 or F64"
                )));
            }
            self.cast = Some(dtype);
        }
        Ok(())
    }

    /// Runs the stages on `model`.
    pub fn apply(&self, model: &mut Model) -> Result<Outcome> {
        let mut out = Outcome::default();
        if let Some((folder, ty)) = &self.hf {
            modelconv_llama::apply(model, folder, *ty)?;
        }
        if self.to_hf {
            out.files = modelconv_llama::export::to_hf(model, self.cast)?;
            if self.cast.is_none() {
                dequantize_blocks(model)?;
            }
        }
        let had = model.tensors.len();
        select(model, &self.include, &self.exclude);
        if model.tensors.is_empty() && had > 0 && !self.include.is_empty() {
            return Err(Error::invalid(format!(
                "--include matched no tensor of {}",
                model.path.display()
            )));
        }
        rename(model, &self.rename)?;
        if self.dedupe {
            out.deduped = dedupe(model);
        }
        if let Some(source) = self.diffusion {
            out.rows = match self.diffusion_target {
                modelconv_diffusion::Target::ComfyUi => diffusion_gguf(model, source, self.quantize.as_ref())?,
                modelconv_diffusion::Target::SdCpp => sd_cpp_gguf(model, source, self.quantize.as_ref())?,
            };
            return Ok(out);
        }
        if let Some(to) = self.cast {
            let c = cast_as(model, to, self.llama)?;
            if c.changed.is_empty() && !self.allow_unchanged && !model.tensors.is_empty() {
                let why = if c.unchanged.is_empty() {
                    format!("every tensor is already {to}")
                } else {
                    format!(
                        "no tensor could be cast ({})",
                        c.unchanged.first().map_or(String::new(), |k| k.reason.clone())
                    )
                };
                return Err(Error::invalid(format!(
                    "--dtype {to} changes nothing in {}: {why} (--allow-unchanged writes the file anyway)",
                    model.path.display()
                )));
            }
            out.cast = c.changed;
            out.unchanged = c.unchanged;
        }
        if let Some(q) = &self.quantize {
            out.rows = quantize_allowing(model, q, self.allow_unchanged)?;
            let leave = q.mix.leave_output_tensor;
            out.unchanged.extend(out.rows.iter().filter_map(|r| {
                mix::kept_reason(
                    &r.name,
                    &r.shape.iter().rev().copied().collect::<Vec<_>>(),
                    r.from,
                    r.to,
                    leave,
                )
                .map(|reason| KeptTensor {
                    name: r.name.clone(),
                    dtype: Some(r.from.name().to_string()),
                    reason,
                })
            }));
        }
        Ok(out)
    }
}

/// A diffusion model as ComfyUI-GGUF's tool chain writes it: from a
/// checkpoint, convert.py's step (prefix stripped, its F16/BF16/F32 types,
/// SD's reshape with `comfy.gguf.orig_shape.*`, its metadata); with `q`,
/// then its patched llama-quantize's (the file type's types by lcpp.patch's
/// rules, tensors in the loader's order, shapes as ggml writes them); 5-D
/// tensors F32 where fix_5d_tensors.py puts them. Rows: each tensor's
/// source type and final type.
pub fn diffusion_gguf(
    model: &mut Model,
    source: modelconv_diffusion::Source,
    q: Option<&Quantization>,
) -> Result<Vec<Row>> {
    use modelconv_diffusion as d;
    let a = source.arch();
    if let Some(q) = q {
        d::check_file_type(q.file_type)?;
    }
    refuse_language_model_options(q)?;
    if let d::Source::Checkpoint(_) = source {
        d::prepare(model, a)?;
    }
    if q.is_some() {
        // llama-quantize's loader order (by name: these have no blk.N).
        model
            .tensors
            .sort_by(|x, y| mix::llama_order(&x.info.name, &y.info.name));
    }
    let before: Vec<(DType, u64)> = model.tensors.iter().map(|t| (t.info.dtype, t.info.byte_len)).collect();
    if let d::Source::Checkpoint(_) = source {
        convert_py_step(model, a)?;
    }
    let five_d: Vec<bool> = model.tensors.iter().map(|t| t.info.shape.len() > 4).collect();
    let mut stats = vec![None; model.tensors.len()];
    if let Some(q) = q {
        let mut counters = d::Counters::default();
        for (i, t) in model.tensors.iter_mut().enumerate() {
            modelconv_ir::check_interrupt()?;
            if five_d[i] {
                continue;
            }
            let ne: Vec<u64> = t.info.shape.iter().rev().copied().collect();
            let to = d::quant_type(a, q.file_type, &t.info.name, &ne, t.info.dtype, &mut counters)?;
            if to != t.info.dtype {
                stats[i] = convert_to(t, to, q.types, None)?;
            }
            let shape = d::written_shape(a, &t.info.name, &t.info.shape);
            t.info = TensorInfo::new(t.info.name.clone(), t.info.dtype, shape)?;
        }
        model.metadata.set("general.file_type", Value::U32(q.file_type.id));
    }
    let names: Vec<String> = model.tensors.iter().map(|t| t.info.name.clone()).collect();
    let order = d::five_d_order(&names, &five_d);
    let mut slots: Vec<Option<Tensor>> = std::mem::take(&mut model.tensors).into_iter().map(Some).collect();
    let mut rows = Vec::with_capacity(order.len());
    for i in order {
        let Some(t) = slots[i].take() else { continue };
        rows.push(Row {
            name: t.info.name.clone(),
            from: before[i].0,
            to: t.info.dtype,
            shape: t.info.shape.clone(),
            bytes_before: before[i].1,
            bytes: t.info.byte_len,
            stats: stats[i].take(),
        });
        model.tensors.push(t);
    }
    Ok(rows)
}

/// A diffusion checkpoint as stable-diffusion.cpp's `sd-cli -M convert
/// --type T` writes it: names as they are, in name order, no metadata,
/// each tensor `T` unless its rules keep it ([`modelconv_diffusion::sd_cpp_type`]),
/// 5-D tensors as 4-D. Without `q`: every tensor in its loaded type.
pub fn sd_cpp_gguf(
    model: &mut Model,
    source: modelconv_diffusion::Source,
    q: Option<&Quantization>,
) -> Result<Vec<Row>> {
    use modelconv_diffusion as d;
    if let d::Source::Gguf(a) = source {
        return Err(Error::unsupported(format!(
            "{}: a GGUF written for ComfyUI ({}); stable-diffusion.cpp's file is made from the checkpoint",
            model.path.display(),
            a.name
        )));
    }
    refuse_language_model_options(q)?;
    model.tensors.sort_by(|x, y| x.info.name.cmp(&y.info.name));
    model.metadata = modelconv_ir::Metadata::new();
    let mut rows = Vec::with_capacity(model.tensors.len());
    for t in &mut model.tensors {
        modelconv_ir::check_interrupt()?;
        let (from, bytes_before) = (t.info.dtype, t.info.byte_len);
        let shape = d::sd_cpp_shape(&t.info.shape);
        t.info = TensorInfo::new(t.info.name.clone(), from, shape)?;
        let ne: Vec<u64> = t.info.shape.iter().rev().copied().collect();
        let wanted = q.map_or(from, |q| q.file_type.default);
        let to = d::sd_cpp_type(&t.info.name, &ne, from, wanted)?;
        let stats = convert_to(t, to, q.map_or(TypeOptions::default(), |q| q.types), None)?;
        rows.push(Row {
            name: t.info.name.clone(),
            from,
            to,
            shape: t.info.shape.clone(),
            bytes_before,
            bytes: t.info.byte_len,
            stats,
        });
    }
    Ok(rows)
}

/// `t` turned into `to` (a cast, a quantization, or nothing when it is
/// already `to`), under `importance` where given; the error statistics a
/// quantization to `to` gathers.
fn convert_to(
    t: &mut Tensor,
    to: DType,
    types: TypeOptions,
    importance: Option<Arc<[f32]>>,
) -> Result<Option<Arc<ErrorStats>>> {
    let stats = to.is_quantized().then(|| Arc::new(ErrorStats::default()));
    if to != t.info.dtype {
        let data = source_as_weighted(t, to, types, stats.clone(), importance)?;
        retype(t, to, data)?;
    }
    Ok(stats)
}

/// A diffusion model is quantized without llama.cpp's language-model
/// options.
fn refuse_language_model_options(q: Option<&Quantization>) -> Result<()> {
    match q {
        Some(q) if q.imatrix.is_some() || !q.prune_layers.is_empty() || q.keep_split => Err(Error::unsupported(
            "--imatrix, --prune-layers and --keep-split are llama.cpp's, for language models; an image model is quantized without them",
        )),
        _ => Ok(()),
    }
}

/// convert.py's types, reshapes and metadata on a prepared checkpoint.
fn convert_py_step(model: &mut Model, a: &modelconv_diffusion::Arch) -> Result<()> {
    use modelconv_diffusion as d;
    let sources: Vec<DType> = model.tensors.iter().map(|t| t.info.dtype).collect();
    let mut md = d::base_metadata(a, &sources);
    for t in &mut model.tensors {
        let name = t.info.name.clone();
        let base = d::base_type(a, &name, t.info.dtype, &t.info.shape)?;
        if let Some(shape) = d::reshaped(a, &t.info.shape) {
            md.set(format!("{}{name}", d::ORIG_SHAPE), d::orig_shape_value(&t.info.shape)?);
            // Row-major data is the same bytes under the new shape.
            t.info = TensorInfo::new(name.clone(), t.info.dtype, shape)?;
        }
        if base != t.info.dtype {
            let data = source_as(t, base, TypeOptions::default(), None)?;
            retype(t, base, data)?;
        }
    }
    model.metadata = md;
    Ok(())
}

/// Every block-quantized tensor of `model` as F32 (what a Hugging Face
/// folder holds of a quantized GGUF); float and integer tensors kept.
fn dequantize_blocks(model: &mut Model) -> Result<()> {
    for t in &mut model.tensors {
        if t.info.dtype.is_quantized() {
            let data = source_as(t, DType::F32, TypeOptions::default(), None)?;
            retype(t, DType::F32, data)?;
        }
    }
    Ok(())
}

/// Whether `t`'s elements can be read as numbers (floats, integers, and
/// block types this build dequantizes).
pub fn readable_as_numbers(dtype: DType) -> bool {
    !dtype.is_quantized() || quants::can_dequantize(dtype)
}

/// Elements `start..start + n` of `t` as f64 (block types dequantized;
/// `start` and `n` are multiples of the block size).
pub fn read_f64(t: &Tensor, start: u64, n: u64) -> Result<Vec<f64>> {
    let d = t.info.dtype;
    let (bs, ts) = (d.block_size(), d.type_size());
    let bytes = usize::try_from(n / bs * ts).map_err(|_| Error::invalid("chunk too large"))?;
    let mut buf = vec![0u8; bytes];
    t.data.read_at(start / bs * ts, &mut buf)?;
    if d.is_quantized() {
        let mut y = vec![0f32; n as usize];
        quants::dequantize(d, &buf, &mut y)?;
        Ok(y.into_iter().map(f64::from).collect())
    } else {
        Ok(decoded(d, &buf).collect())
    }
}
