//! # modelconv-pytorch
//!
//! PyTorch checkpoints (`.pt`, `.pth`, `.bin`, `.ckpt`) read without running
//! any code: the restricted pickle VM (`modelconv-pickle`) interprets the
//! stream as data, resolves globals to names only, and builds tensors,
//! dicts and numpy arrays through the constructors this crate plugs in
//! ([`constructors`]). Any other global is refused with its name.
//! Tensors are lazy views of the checkpoint's storages (zip entries or legacy storage blocks), strided views included.

pub mod constructors;
mod scan;
mod tar;
pub mod torch;
pub mod torchscript;
pub mod tree;
mod write;

pub use write::PtWriter;

use constructors::{is_tensor_like, TensorRef};
use modelconv_ir::{
    hf_index, Details, Error, Format, FormatOption, Metadata, Model, OpenOptions, OptionValue, Probe, Result, Stage,
    Value as MetaValue, Writer,
};
use modelconv_pickle::Value;
use std::path::Path;
use std::sync::Arc;
use torch::Checkpoint;
use tree::{collect, Found};

pub const NAME: &str = "pytorch";

/// Keys under which checkpoints keep their state dict.
const STATE_DICT_KEYS: &[&str] = &["state_dict", "model", "module", "model_state_dict"];

/// Which tensors to take from the unpickled object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Selection<'a> {
    /// The state dict: the top-level tensors, or those under `state_dict`,
    /// `model`, `module` or `model_state_dict`.
    StateDict,
    /// Every tensor reachable, named by its dotted path.
    All,
    /// The tensors under this dotted path (as `All` names them: e.g.
    /// `state_dict_ema`, `optimizer.state`), named relative to it.
    Key(&'a str),
}

/// The format option that picks [`Selection::Key`].
pub const STATE_DICT_OPTION: &str = "state-dict";

/// Tensors found by dotted path.
pub type FoundTensors = Vec<(String, Found)>;

/// Tensors found, and the key the state dict was taken from (if any).
pub fn select(root: &Value, sel: Selection) -> Result<(Option<String>, FoundTensors)> {
    match sel {
        Selection::All => return Ok((None, collect(root, "")?)),
        Selection::Key(key) => {
            let mut hit = None;
            tree::walk(root, "", |path, v| {
                if hit.is_none() && path == key {
                    hit = Some(v.clone());
                }
            })?;
            let v = hit.ok_or_else(|| {
                Error::invalid(format!(
                    "no value at '{key}' (the top level holds: {})",
                    top_keys(root).join(", ")
                ))
            })?;
            let found = collect(&v, "")?;
            if found.is_empty() {
                return Err(Error::invalid(format!("'{key}' holds no tensors ({})", v.kind())));
            }
            return Ok((Some(key.to_string()), found));
        }
        Selection::StateDict => {}
    }
    if let Value::Dict(d) = root {
        let d = d.borrow();
        let mut direct = Vec::new();
        for (k, v) in d.iter() {
            if let (Some(k), true) = (k.as_str(), is_tensor_like(v)) {
                direct.extend(collect(v, k)?);
            }
        }
        if !direct.is_empty() {
            return Ok((None, direct));
        }
        drop(d);
        if let Some(found) = under_state_dict_keys(root, "", 0)? {
            return Ok(found);
        }
    }
    Ok((None, collect(root, "")?))
}

/// How many `model`/`state_dict`/`module` levels the finder descends.
const MAX_STATE_DICT_DEPTH: usize = 4;

/// The state dict under a chain of [`STATE_DICT_KEYS`] (`model`,
/// `model.state_dict`, `module.model`, …): the first dict along it that
/// holds tensors directly, else everything under the first key that holds
/// any; named by the dotted path taken.
fn under_state_dict_keys(v: &Value, path: &str, depth: usize) -> Result<Option<(Option<String>, FoundTensors)>> {
    let Value::Dict(d) = v else { return Ok(None) };
    let d = d.borrow();
    for key in STATE_DICT_KEYS {
        let Some((_, inner)) = d.iter().find(|(k, _)| k.as_str() == Some(key)) else {
            continue;
        };
        let here = if path.is_empty() {
            key.to_string()
        } else {
            format!("{path}.{key}")
        };
        if let Value::Dict(id) = inner {
            let direct = id
                .borrow()
                .iter()
                .any(|(k, v)| k.as_str().is_some() && is_tensor_like(v));
            if !direct && depth + 1 < MAX_STATE_DICT_DEPTH {
                if let Some(found) = under_state_dict_keys(inner, &here, depth + 1)? {
                    return Ok(Some(found));
                }
            }
        }
        let found = collect(inner, "")?;
        if !found.is_empty() {
            return Ok(Some((Some(here), found)));
        }
    }
    Ok(None)
}

/// The keys of a top-level dict, for messages.
fn top_keys(root: &Value) -> Vec<String> {
    match root {
        Value::Dict(d) => d
            .borrow()
            .iter()
            .filter_map(|(k, _)| k.as_str().map(str::to_string))
            .collect(),
        other => vec![format!("no keys: a {}", other.kind())],
    }
}

fn is_index(path: &Path) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.ends_with(".bin.index.json") || n.ends_with(".pt.index.json"))
}

/// The index json of a Hugging Face sharded checkpoint folder, if it has one.
fn folder_index(dir: &Path) -> Option<std::path::PathBuf> {
    let mut found: Vec<_> = std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .filter(|p| is_index(p))
        .collect();
    found.sort();
    found.into_iter().next()
}

/// Opens a checkpoint file, a sharded checkpoint's index json, or a folder
/// holding one, taking the tensors `sel` picks. The model's notes say which
/// state dict was taken; its metadata has `format: pt`, the key
/// transformers reads safetensors made from PyTorch weights by.
pub fn open_with(path: &Path, sel: Selection) -> Result<Model> {
    let index = if path.is_dir() {
        match folder_index(path) {
            Some(index) => Some(index),
            None => return open_folder(path, sel),
        }
    } else {
        is_index(path).then(|| path.to_path_buf())
    };
    let mut model = match index {
        Some(index) => hf_index::open_sharded(&index, NAME, |shard| open_file(shard, sel))?,
        None => open_file(path, sel)?,
    };
    model.path = path.to_path_buf();
    Ok(model)
}

/// The names a Hugging Face folder's `.bin` weights have: a model's, and
/// a PEFT adapter's (`adapter_model.bin`).
const MODEL_STEMS: &[&str] = &["pytorch_model", "adapter_model"];

/// A folder without an index: `pytorch_model.bin`, or a complete
/// `pytorch_model-0000i-of-0000n.bin` set, as one model.
fn open_folder(dir: &Path, sel: Selection) -> Result<Model> {
    let picked = modelconv_ir::folder::pick(dir, "bin", MODEL_STEMS)?
        .ok_or_else(|| Error::malformed(dir, "holds no pytorch_model.bin.index.json and no .bin checkpoint"))?;
    let mut model = Model {
        format: NAME,
        path: dir.to_path_buf(),
        declared_order: true,
        ..Default::default()
    };
    for (i, file) in picked.files.iter().enumerate() {
        let m = open_file(file, sel)?;
        if i == 0 {
            model.metadata = m.metadata;
            model.notes = m.notes;
        }
        model.tensors.extend(m.tensors);
    }
    model.notes.extend(picked.note());
    model.check_unique_names().map_err(|e| e.in_file(dir))?;
    Ok(model)
}

fn open_file(path: &Path, sel: Selection) -> Result<Model> {
    let ckpt = Checkpoint::open(path)?;
    let (key, found) = match (&ckpt.torchscript, sel) {
        (Some(classes), Selection::StateDict) => (None, torchscript::state_dict(&ckpt.root, classes)?),
        _ => select(&ckpt.root, sel).map_err(|e| e.in_file(path))?,
    };
    let tensors = found
        .iter()
        .map(|(name, f)| ckpt.tensor(name, f))
        .collect::<Result<Vec<_>>>()?;
    let mut metadata = Metadata::new();
    metadata.set("format", MetaValue::String("pt".into()));
    let notes = match (sel, key) {
        _ if ckpt.torchscript.is_some() && sel == Selection::StateDict => vec![
            "TorchScript (torch.jit.save): its parameters and buffers, named as state_dict() names them; its code is never run".to_string(),
        ],
        (Selection::All, _) => vec!["every tensor the checkpoint holds, by dotted path".to_string()],
        (_, Some(k)) => vec![format!("state dict: the tensors under '{k}'")],
        (_, None) => vec!["state dict: the top-level tensors".to_string()],
    };
    let model = Model {
        format: if ckpt.torchscript.is_some() {
            torchscript::NAME
        } else {
            NAME
        },
        path: path.to_path_buf(),
        metadata,
        tensors,
        notes,
        source: Some(Arc::new(Structure(structure_typed(&ckpt)?))),
        declared_order: true,
        ..Default::default()
    };
    model.check_unique_names().map_err(|e| e.in_file(path))?;
    Ok(model)
}

/// The top level of a single checkpoint file, kept for `inspect`.
struct Structure(TopLevel);

pub struct PyTorch;

pub static FORMAT: PyTorch = PyTorch;

impl Format for PyTorch {
    fn name(&self) -> &'static str {
        NAME
    }
    fn description(&self) -> &'static str {
        "PyTorch checkpoints, zip and legacy (.pt .pth .bin .ckpt); read without running code, write zip .pt"
    }
    fn extensions(&self) -> &'static [&'static str] {
        &["pt", "pth", "bin", "ckpt", "pkl", "pickle"]
    }
    fn score(&self, probe: &Probe) -> u8 {
        let (head, path) = (probe.head, probe.path);
        if probe.is_dir {
            // Below safetensors (50): a folder with both is read as safetensors.
            let has_bin = || {
                std::fs::read_dir(path).is_ok_and(|rd| {
                    rd.flatten().any(|e| {
                        let n = e.file_name();
                        let n = n.to_string_lossy();
                        MODEL_STEMS.iter().any(|s| n.starts_with(s)) && n.ends_with(".bin")
                    })
                })
            };
            return if folder_index(path).is_some() || has_bin() {
                40
            } else {
                0
            };
        }
        if is_index(path) && head.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{') {
            return 90;
        }
        if torch::is_legacy(head) {
            100
        } else if head.first() == Some(&0x80) && head.get(1).is_some_and(|&p| (2..=5).contains(&p)) {
            40
        } else if probe.zip_entries.iter().any(|e| e.ends_with("data.pkl")) {
            // torch.save's zip (any archive name); other zips are not ours.
            95
        } else {
            0
        }
    }
    fn open(&self, path: &Path, opts: &OpenOptions) -> Result<Model> {
        let sel = match (opts.all, opts.options.get(STATE_DICT_OPTION)) {
            (true, Some(_)) => {
                return Err(Error::invalid(
                    "--all takes every tensor; it does not combine with a state dict key",
                ))
            }
            (true, None) => Selection::All,
            (false, Some(key)) => Selection::Key(key),
            (false, None) => Selection::StateDict,
        };
        open_with(path, sel)
    }
    fn options(&self) -> &'static [FormatOption] {
        &[FormatOption {
            name: STATE_DICT_OPTION,
            stages: &[Stage::Open],
            value: OptionValue::Value("KEY"),
            help: "take the tensors under this key instead of the detected state dict, named relative to it (a dotted path as --all names it, e.g. state_dict_ema)",
        }]
    }
    fn details(&self, model: &Model, _opts: &OpenOptions) -> Result<Option<Details>> {
        // A single checkpoint: what its pickle holds besides tensors.
        let Some(Structure(structure)) = model.source.as_ref().and_then(|s| s.downcast_ref::<Structure>()) else {
            return Ok(None);
        };
        let (structure, total) = structure;
        let mut text = format!("{}: top level\n", model.path.display());
        for (k, (s, _)) in structure {
            text.push_str(&format!("  {k}: {s}\n"));
        }
        let more = total - structure.len();
        if more > 0 {
            text.push_str(&format!("  … and {more} more\n"));
        }
        let json: Vec<serde_json::Value> = structure
            .iter()
            .map(|(k, (_, v))| {
                let mut v = v.clone();
                if let Some(o) = v.as_object_mut() {
                    o.insert("key".into(), serde_json::Value::String(k.clone()));
                }
                v
            })
            .collect();
        Ok(Some(Details {
            key: "checkpoint",
            json: serde_json::json!({ "top_level": json, "more": more }),
            text,
            replaces_table: false,
        }))
    }
    fn writer(&self) -> Option<&dyn Writer> {
        Some(&PtWriter)
    }
    fn scanner(&self) -> Option<&dyn modelconv_ir::scan::Scanner> {
        Some(&scan::TorchScanner)
    }
}

/// TorchScript archives (`torch.jit.save`): the PyTorch reader, with the
/// module's classes as records ([`torchscript`]).
pub struct TorchScript;
pub static TORCHSCRIPT: TorchScript = TorchScript;

impl Format for TorchScript {
    fn name(&self) -> &'static str {
        torchscript::NAME
    }
    fn description(&self) -> &'static str {
        "TorchScript archives (torch.jit.save): parameters and buffers, read without running the code they carry"
    }
    fn extensions(&self) -> &'static [&'static str] {
        &["pt", "jit", "ptl"]
    }
    fn score(&self, probe: &Probe) -> u8 {
        let data = probe.zip_entries.iter().any(|e| e.ends_with("data.pkl"));
        let code = probe
            .zip_entries
            .iter()
            .any(|e| e.contains("/code/") || e.starts_with("code/"));
        if data && code {
            97
        } else {
            0
        }
    }
    fn open(&self, path: &Path, opts: &OpenOptions) -> Result<Model> {
        FORMAT.open(path, opts)
    }
    fn options(&self) -> &'static [FormatOption] {
        FORMAT.options()
    }
    fn details(&self, model: &Model, opts: &OpenOptions) -> Result<Option<Details>> {
        FORMAT.details(model, opts)
    }
}

/// Whether `format` names one of the PyTorch readers (checkpoints and
/// TorchScript archives), for `ckpt-to-safetensors`.
pub fn is_torch_format(format: &str) -> bool {
    format == NAME || format == torchscript::NAME
}

/// A refused global, for callers that want to say more (exit code 2 either way).
pub fn is_refusal(e: &Error) -> bool {
    matches!(e, Error::RefusedGlobal { .. })
}

/// A short description of a value: its kind, and what it holds.
fn summary(v: &Value) -> Result<String> {
    Ok(summary_typed(v)?.0)
}

/// [`summary`], and the same as JSON: `{"kind": "int", "value": 3}`,
/// `{"kind": "dict", "len": 4, "tensors": 2}`, `{"kind": "tensor",
/// "dtype": "F32", "shape": [2]}`.
fn summary_typed(v: &Value) -> Result<(String, serde_json::Value)> {
    use serde_json::json;
    let found = collect(v, "")?;
    Ok(match v {
        Value::Dict(d) => {
            let n = d.borrow().len();
            (
                format!("dict of {n} ({} tensors)", found.len()),
                json!({"kind": "dict", "len": n, "tensors": found.len()}),
            )
        }
        Value::List(_) | Value::Tuple(_) => {
            let n = v.items().map_or(0, |i| i.len());
            (
                format!("{} of {n} ({} tensors)", v.kind(), found.len()),
                json!({"kind": v.kind(), "len": n, "tensors": found.len()}),
            )
        }
        v if v.object::<TensorRef>().is_some() => {
            let t = v
                .object::<TensorRef>()
                .map(|t| (t.dtype.clone(), t.size.clone()))
                .unwrap_or_default();
            (
                format!("tensor {} {:?}", t.0, t.1),
                json!({"kind": "tensor", "dtype": t.0, "shape": t.1}),
            )
        }
        Value::Int(i) => (
            format!("int {i}"),
            json!({"kind": "int", "value": i.to_string().parse::<serde_json::Number>().ok()}),
        ),
        Value::Float(f) => (
            format!("float {f}"),
            json!({"kind": "float", "value": modelconv_ir::float_json(*f)}),
        ),
        Value::Bool(b) => (format!("bool {b}"), json!({"kind": "bool", "value": b})),
        Value::Str(s) if s.chars().count() <= 60 => {
            (format!("str {s:?}"), json!({"kind": "str", "value": s.to_string()}))
        }
        Value::Str(s) => ("str".to_string(), json!({"kind": "str", "len": s.chars().count()})),
        Value::Global(g) => (
            format!("global {}.{}", g.0, g.1),
            json!({"kind": "global", "value": format!("{}.{}", g.0, g.1)}),
        ),
        Value::Opaque(g) => (
            format!("object {}.{}", g.0, g.1),
            json!({"kind": "object", "class": format!("{}.{}", g.0, g.1)}),
        ),
        other => (other.kind().to_string(), json!({"kind": other.kind()})),
    })
}

/// The top level of a checkpoint: each key of its top dict (or the root
/// itself) with a summary. Reads only the pickle, never tensor data.
pub fn structure(path: &Path) -> Result<Vec<(String, String)>> {
    structure_of(&Checkpoint::open(path)?)
}

fn structure_of(ckpt: &Checkpoint) -> Result<Vec<(String, String)>> {
    Ok(structure_typed(ckpt)?
        .0
        .into_iter()
        .map(|(k, (text, _))| (k, text))
        .collect())
}

/// Top-level entries summarised (a state dict saved bare has one per tensor).
const MAX_TOP_LEVEL: usize = 1000;

/// The first [`MAX_TOP_LEVEL`] top-level entries, summarised, and how
/// many there are in all.
type TopLevel = (Vec<(String, (String, serde_json::Value))>, usize);

fn structure_typed(ckpt: &Checkpoint) -> Result<TopLevel> {
    match &*ckpt.root {
        Value::Dict(d) => {
            let d = d.borrow();
            let entries = d
                .iter()
                .take(MAX_TOP_LEVEL)
                .map(|(k, v)| {
                    // Never the key's Debug form: a key can nest 100 000 tuples deep.
                    let key = match k {
                        Value::Str(s) => s.to_string(),
                        Value::Int(i) => i.to_string(),
                        other => format!("({} key)", other.kind()),
                    };
                    Ok((key, summary_typed(v)?))
                })
                .collect::<Result<_>>()?;
            Ok((entries, d.len()))
        }
        other => Ok((vec![("(root)".to_string(), summary_typed(other)?)], 1)),
    }
}

/// Values that are not tensors (epoch counters, hyperparameters, …), by
/// dotted path: what a conversion leaves out.
pub fn non_tensor_values(path: &Path) -> Result<Vec<(String, String)>> {
    let ckpt = Checkpoint::open(path)?;
    let mut out = Vec::new();
    tree::walk(&ckpt.root, "", |p, v| {
        let leaf = !(is_tensor_like(v) || matches!(v, Value::Dict(_) | Value::List(_) | Value::Tuple(_)));
        if leaf && out.len() < 10_000 {
            // Kinds only: a leaf's summary never walks further.
            out.push((p.to_string(), summary(v).unwrap_or_else(|_| v.kind().to_string())));
        }
    })?;
    Ok(out)
}
