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

use modelconv_ir::{Error, Format, Model, Result};
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
pub fn select(root: &Value, sel: Selection) -> (Option<&'static str>, Vec<(String, Found)>) {
    let mut all = Vec::new();
    if sel == Selection::All {
        collect(root, "", &mut all, 0);
        return (None, all);
    }
    if let Value::Dict(d) = root {
        let d = d.borrow();
        let direct: Vec<(String, Found)> = d
            .iter()
            .filter(|(_, v)| matches!(v, Value::Tensor(_) | Value::NdArray(_)))
            .filter_map(|(k, v)| {
                let mut one = Vec::new();
                collect(v, k.as_str()?, &mut one, 0);
                one.pop()
            })
            .collect();
        if !direct.is_empty() {
            return (None, direct);
        }
        for key in STATE_DICT_KEYS {
            if let Some((_, v)) = d.iter().find(|(k, _)| k.as_str() == Some(key)) {
                let mut found = Vec::new();
                collect(v, "", &mut found, 0);
                if !found.is_empty() {
                    return (Some(key), found);
                }
            }
        }
    }
    collect(root, "", &mut all, 0);
    (None, all)
}

/// Opens a checkpoint, taking the tensors `sel` picks.
pub fn open_with(path: &Path, sel: Selection) -> Result<(Model, Option<&'static str>)> {
    let ckpt = Checkpoint::open(path)?;
    let (key, found) = select(&ckpt.root, sel);
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
        "PyTorch checkpoints, zip and legacy (.pt .pth .bin .ckpt); read without running code"
    }
    fn extensions(&self) -> &'static [&'static str] {
        &["pt", "pth", "bin", "ckpt", "pkl", "pickle"]
    }
    fn score(&self, head: &[u8], _path: &Path) -> u8 {
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
}

/// A refused global, for callers that want to say more (exit code 2 either way).
pub fn is_refusal(e: &Error) -> bool {
    matches!(e, Error::Unsupported(m) if m.contains("refusing global"))
}
