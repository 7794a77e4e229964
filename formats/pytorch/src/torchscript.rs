//! TorchScript archives (`torch.jit.save`): a zip like a checkpoint's, whose
//! `data.pkl` pickles the module as `__torch__.*` objects and whose `code/`
//! holds the classes as TorchScript source. Nothing is interpreted: the
//! objects are records (their pickled attributes), and the source is read
//! only for each class's `__parameters__ = [...]` and `__buffers__ = [...]`
//! lines. The state dict is then named as `torch.jit.load(f).state_dict()`
//! names it: per module its parameters, then its buffers, then its
//! submodules in attribute order, by dotted attribute path.

use crate::constructors::{TensorRef, TORCHSCRIPT_CLASS};
use crate::tree::{dotted, Found};
use modelconv_ir::{Error, Result};
use modelconv_pickle::Value;
use std::collections::HashMap;
use std::io::Read;
use std::path::Path;

pub const NAME: &str = "torchscript";

/// Class (`__torch__.a.b.Name`) → (parameter names, buffer names).
pub type Classes = HashMap<String, (Vec<String>, Vec<String>)>;

/// Largest code file read, and all of them together.
const MAX_CODE_FILE: u64 = 16 << 20;
const MAX_CODE_TOTAL: u64 = 256 << 20;

/// The names a `NAME = ["a", "b", ]` line lists (TorchScript's own
/// printing: double-quoted, comma-separated).
fn list_of(rest: &str) -> Option<Vec<String>> {
    let inner = rest.trim().strip_prefix('[')?.strip_suffix(']')?;
    Some(
        inner
            .split(',')
            .map(|s| s.trim().trim_matches('"').to_string())
            .filter(|s| !s.is_empty())
            .collect(),
    )
}

/// Reads every class's parameter and buffer names from `code/`.
pub fn classes<R: Read + std::io::Seek>(zip: &mut zip::ZipArchive<R>, code: &str, path: &Path) -> Result<Classes> {
    let mut out = Classes::new();
    let mut total = 0u64;
    let files: Vec<String> = zip
        .file_names()
        .filter(|n| n.starts_with(code) && n.ends_with(".py"))
        .map(str::to_string)
        .collect();
    for f in files {
        let mut e = zip
            .by_name(&f)
            .map_err(|e| Error::malformed(path, format!("zip: {e}")))?;
        total = total.saturating_add(e.size());
        if e.size() > MAX_CODE_FILE || total > MAX_CODE_TOTAL {
            return Err(Error::limit(
                path,
                format!("{f}: TorchScript code over the size limits"),
            ));
        }
        let mut text = String::new();
        (&mut e)
            .take(MAX_CODE_FILE)
            .read_to_string(&mut text)
            .map_err(|err| Error::malformed(path, format!("{f}: {err}")))?;
        // code/__torch__/a/b.py holds the classes of module __torch__.a.b.
        let module = f[code.len()..].trim_end_matches(".py").replace('/', ".");
        let mut class: Option<String> = None;
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("class ") {
                let name = rest.split(['(', ':']).next().unwrap_or("").trim();
                class = Some(format!("{module}.{name}"));
                out.entry(format!("{module}.{name}")).or_default();
            } else if let (Some(c), Some(rest)) = (&class, line.strip_prefix("  __parameters__ =")) {
                out.entry(c.clone()).or_default().0 = list_of(rest).unwrap_or_default();
            } else if let (Some(c), Some(rest)) = (&class, line.strip_prefix("  __buffers__ =")) {
                out.entry(c.clone()).or_default().1 = list_of(rest).unwrap_or_default();
            }
        }
    }
    Ok(out)
}

/// The record's class name, when `v` is a TorchScript object.
fn class_of(v: &Value) -> Option<String> {
    let Value::Dict(d) = v else { return None };
    d.borrow()
        .iter()
        .find(|(k, _)| k.as_str() == Some(TORCHSCRIPT_CLASS))
        .and_then(|(_, c)| c.as_str().map(str::to_string))
}

fn attr(v: &Value, name: &str) -> Option<Value> {
    let Value::Dict(d) = v else { return None };
    d.borrow()
        .iter()
        .find(|(k, _)| k.as_str() == Some(name))
        .map(|(_, x)| x.clone())
}

/// The module's state dict, as `state_dict()` names it.
pub fn state_dict(root: &Value, classes: &Classes) -> Result<Vec<(String, Found)>> {
    let mut out = Vec::new();
    let mut stack: Vec<(String, Value, usize)> = vec![(String::new(), root.clone(), 0)];
    let mut seen = std::collections::HashSet::new();
    while let Some((prefix, module, depth)) = stack.pop() {
        modelconv_ir::check_interrupt()?;
        if depth > 256 {
            return Err(Error::invalid("modules nested deeper than 256"));
        }
        let Some(class) = class_of(&module) else { continue };
        if let Value::Dict(d) = &module {
            if !seen.insert(std::rc::Rc::as_ptr(d) as usize) {
                continue;
            }
        }
        let (params, buffers) = classes.get(&class).cloned().unwrap_or_default();
        for name in params.iter().chain(&buffers) {
            let v = attr(&module, name);
            if let Some(t) = v.as_ref().and_then(|v| v.object::<TensorRef>()) {
                out.push((dotted(&prefix, name), Found::Tensor(t.clone())));
            }
        }
        // Submodules: attributes that are modules (they have `training`), in
        // attribute order (pushed reversed so they pop in order).
        let Value::Dict(d) = &module else { continue };
        let subs: Vec<(String, Value)> = d
            .borrow()
            .iter()
            .filter_map(|(k, v)| {
                let k = k.as_str()?;
                (class_of(v).is_some() && attr(v, "training").is_some()).then(|| (k.to_string(), v.clone()))
            })
            .collect();
        for (k, v) in subs.into_iter().rev() {
            stack.push((dotted(&prefix, &k), v, depth + 1));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn declaration_lines() {
        assert_eq!(
            list_of(r#" ["weight", "bias", ]"#),
            Some(vec!["weight".to_string(), "bias".into()])
        );
        assert_eq!(list_of(" []"), Some(vec![]));
        assert_eq!(list_of(" weight"), None);
    }
}
