//! # modelconv-pickle
//!
//! PyTorch checkpoints (`.pt`, `.pth`, `.bin`, `.ckpt`) read without running
//! any code: a restricted pickle VM ([`vm`]) interprets the stream as data,
//! resolves globals to names only, and builds tensors, dicts and numpy
//! arrays through a fixed allowlist of constructors. Any other global is
//! refused with its name. Tensors are lazy views of the checkpoint's
//! storages (zip entries or legacy storage blocks), strided views included.

pub mod scan;
pub mod torch;
pub mod value;
pub mod vm;
mod write;

pub use write::PtWriter;

use modelconv_ir::{Error, Format, Model, Result, Writer};
use std::path::Path;
use torch::{collect, Checkpoint, Found};
use value::Value;

pub const NAME: &str = "pytorch";

/// Keys under which checkpoints keep their state dict.
const STATE_DICT_KEYS: &[&str] = &["state_dict", "model", "module", "model_state_dict"];

/// Which tensors to take from the unpickled object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Selection {
    /// The state dict: the top-level tensors, or those under `state_dict`,
    /// `model`, `module` or `model_state_dict`.
    StateDict,
    /// Every tensor reachable, named by its dotted path.
    All,
}

/// Tensors found, and the key the state dict was taken from (if any).
pub fn select(root: &Value, sel: Selection) -> Result<(Option<&'static str>, Vec<(String, Found)>)> {
    if sel == Selection::All {
        return Ok((None, collect(root, "")?));
    }
    if let Value::Dict(d) = root {
        let d = d.borrow();
        let mut direct = Vec::new();
        for (k, v) in d.iter() {
            if let (Some(k), Value::Tensor(_) | Value::NdArray(_)) = (k.as_str(), v) {
                direct.extend(collect(v, k)?);
            }
        }
        if !direct.is_empty() {
            return Ok((None, direct));
        }
        for key in STATE_DICT_KEYS {
            if let Some((_, v)) = d.iter().find(|(k, _)| k.as_str() == Some(key)) {
                let found = collect(v, "")?;
                if !found.is_empty() {
                    return Ok((Some(key), found));
                }
            }
        }
    }
    Ok((None, collect(root, "")?))
}

/// Largest index json accepted.
const MAX_INDEX: u64 = 64 << 20;

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

/// A sharded checkpoint: `{"weight_map": {tensor: shard file}}`; the
/// shards are read in name order, keeping the tensors the map lists.
fn open_index(index: &Path, sel: Selection) -> Result<(Model, Option<&'static str>)> {
    let meta = std::fs::metadata(index).map_err(|e| Error::io(index, e))?;
    if meta.len() > MAX_INDEX {
        return Err(Error::malformed(
            index,
            format!("index is {} bytes, over the limit", meta.len()),
        ));
    }
    let text = std::fs::read(index).map_err(|e| Error::io(index, e))?;
    let json: serde_json::Value =
        serde_json::from_slice(&text).map_err(|e| Error::malformed(index, format!("index JSON: {e}")))?;
    let map = json
        .get("weight_map")
        .and_then(|m| m.as_object())
        .ok_or_else(|| Error::malformed(index, "no \"weight_map\" object"))?;
    let mut shards: std::collections::BTreeMap<&str, std::collections::HashSet<&str>> = Default::default();
    for (name, shard) in map {
        let shard = shard.as_str().filter(|s| {
            let p = Path::new(s);
            p.components().count() == 1 && matches!(p.components().next(), Some(std::path::Component::Normal(_)))
        });
        let shard = shard.ok_or_else(|| {
            Error::malformed(
                index,
                format!("weight_map entry '{name}' is not a plain file name beside the index"),
            )
        })?;
        shards.entry(shard).or_default().insert(name.as_str());
    }
    let dir = index.parent().unwrap_or(Path::new("."));
    let mut model = Model {
        format: NAME,
        path: index.to_path_buf(),
        metadata: Default::default(),
        tensors: Vec::new(),
    };
    let mut key = None;
    for (shard, names) in shards {
        let (m, k) = open_file(&dir.join(shard), sel)?;
        key = key.or(k);
        for n in &names {
            if m.tensor(n).is_none() {
                return Err(Error::malformed(
                    index,
                    format!("weight_map puts '{n}' in {shard}, which has no such tensor"),
                ));
            }
        }
        model
            .tensors
            .extend(m.tensors.into_iter().filter(|t| names.contains(t.info.name.as_str())));
    }
    model.check_unique_names().map_err(|e| e.in_file(index))?;
    Ok((model, key))
}

/// Opens a checkpoint file, a sharded checkpoint's index json, or a folder
/// holding one, taking the tensors `sel` picks.
pub fn open_with(path: &Path, sel: Selection) -> Result<(Model, Option<&'static str>)> {
    if path.is_dir() {
        let index =
            folder_index(path).ok_or_else(|| Error::malformed(path, "holds no pytorch_model.bin.index.json"))?;
        return open_index(&index, sel);
    }
    if is_index(path) {
        return open_index(path, sel);
    }
    open_file(path, sel)
}

fn open_file(path: &Path, sel: Selection) -> Result<(Model, Option<&'static str>)> {
    let ckpt = Checkpoint::open(path)?;
    let (key, found) = select(&ckpt.root, sel)?;
    let tensors = found
        .iter()
        .map(|(name, f)| ckpt.tensor(name, f))
        .collect::<Result<Vec<_>>>()?;
    let model = Model {
        format: NAME,
        path: path.to_path_buf(),
        metadata: Default::default(),
        tensors,
    };
    model.check_unique_names().map_err(|e| e.in_file(path))?;
    Ok((model, key))
}

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
    fn score(&self, head: &[u8], path: &Path) -> u8 {
        if path.is_dir() {
            // Below safetensors (50): a folder with both is read as safetensors.
            return if folder_index(path).is_some() { 40 } else { 0 };
        }
        if is_index(path) && head.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{') {
            return 90;
        }
        if torch::is_legacy(head) {
            100
        } else if head.first() == Some(&0x80) && head.get(1).is_some_and(|&p| (2..=5).contains(&p)) {
            40
        } else if head.starts_with(b"PK\x03\x04") {
            // A zip; the registry's extension tie-break and open() decide.
            50
        } else {
            0
        }
    }
    fn open(&self, path: &Path) -> Result<Model> {
        open_with(path, Selection::StateDict).map(|(m, _)| m)
    }
    fn writer(&self) -> Option<&dyn Writer> {
        Some(&PtWriter)
    }
}

/// A refused global, for callers that want to say more (exit code 2 either way).
pub fn is_refusal(e: &Error) -> bool {
    matches!(e, Error::Unsupported(m) if m.contains("refusing global"))
}

/// A short description of a value: its kind, and what it holds.
fn summary(v: &Value) -> Result<String> {
    let found = collect(v, "")?;
    Ok(match v {
        Value::Dict(d) => format!("dict of {} ({} tensors)", d.borrow().len(), found.len()),
        Value::List(_) | Value::Tuple(_) => format!(
            "{} of {} ({} tensors)",
            v.kind(),
            v.items().map_or(0, |i| i.len()),
            found.len()
        ),
        Value::Tensor(t) => format!("tensor {} {:?}", t.dtype, t.size),
        Value::Int(i) => format!("int {i}"),
        Value::Float(f) => format!("float {f}"),
        Value::Bool(b) => format!("bool {b}"),
        Value::Str(s) if s.chars().count() <= 60 => format!("str {s:?}"),
        Value::Global(g) => format!("global {}.{}", g.0, g.1),
        Value::Opaque(g) => format!("object {}.{}", g.0, g.1),
        other => other.kind().to_string(),
    })
}

/// The top level of a checkpoint: each key of its top dict (or the root
/// itself) with a summary. Reads only the pickle, never tensor data.
pub fn structure(path: &Path) -> Result<Vec<(String, String)>> {
    let ckpt = Checkpoint::open(path)?;
    match &ckpt.root {
        Value::Dict(d) => d
            .borrow()
            .iter()
            .map(|(k, v)| Ok((k.as_str().map_or_else(|| format!("{k:?}"), str::to_string), summary(v)?)))
            .collect(),
        other => Ok(vec![("(root)".to_string(), summary(other)?)]),
    }
}

/// Values that are not tensors (epoch counters, hyperparameters, …), by
/// dotted path: what a conversion leaves out.
pub fn non_tensor_values(path: &Path) -> Result<Vec<(String, String)>> {
    let ckpt = Checkpoint::open(path)?;
    let mut out = Vec::new();
    torch::walk(&ckpt.root, "", |p, v| {
        let leaf = !matches!(
            v,
            Value::Tensor(_) | Value::NdArray(_) | Value::Dict(_) | Value::List(_) | Value::Tuple(_)
        );
        if leaf && out.len() < 10_000 {
            // Kinds only: a leaf's summary never walks further.
            out.push((p.to_string(), summary(v).unwrap_or_else(|_| v.kind().to_string())));
        }
    })?;
    Ok(out)
}
