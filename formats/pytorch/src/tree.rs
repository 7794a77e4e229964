//! The unpickled object as a tree: every value reachable by dotted path
//! (`model.layers.0.weight`), and the tensors and arrays in it.

use crate::constructors::TensorRef;
use modelconv_ir::Result;
use modelconv_npy::pickled::NdArray;
use modelconv_pickle::Value;

/// A tensor or array found in the object, by dotted path.
pub enum Found {
    Tensor(TensorRef),
    Array(NdArray),
}

/// `prefix.key`, or `key` at the top.
pub(crate) fn dotted(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_string()
    } else {
        format!("{prefix}.{key}")
    }
}

/// Containers nested deeper than this are not entered.
const MAX_WALK_DEPTH: usize = 64;

/// The key of a dict entry as a path segment (string and int keys only).
fn key_segment(k: &Value) -> Option<String> {
    match k {
        Value::Str(s) => Some(s.to_string()),
        Value::Int(i) => Some(i.to_string()),
        _ => None,
    }
}

/// Identity of a container, so that one shared through the memo is
/// entered once.
fn container_id(v: &Value) -> Option<*const ()> {
    match v {
        Value::Dict(d) => Some(std::rc::Rc::as_ptr(d).cast()),
        Value::List(l) => Some(std::rc::Rc::as_ptr(l).cast()),
        Value::Tuple(t) => Some(std::rc::Rc::as_ptr(t).cast()),
        _ => None,
    }
}

/// Visits `root` and everything reachable from it, depth first in order,
/// with its dotted path (`prefix` for the root). Linear in the size of the
/// pickle: a container shared through the memo is entered once (a pickle
/// can share one tuple 64 levels deep, 2^64 paths), no recursion, and an
/// interrupt ends it.
pub fn walk(root: &Value, prefix: &str, mut f: impl FnMut(&str, &Value)) -> Result<()> {
    let mut seen = std::collections::HashSet::new();
    let mut stack: Vec<(String, Value, usize)> = vec![(prefix.to_string(), root.clone(), 0)];
    let mut visits = 0u64;
    while let Some((path, v, depth)) = stack.pop() {
        visits += 1;
        if visits.is_multiple_of(4096) {
            modelconv_ir::check_interrupt()?;
        }
        f(&path, &v);
        if depth >= MAX_WALK_DEPTH || container_id(&v).is_some_and(|id| !seen.insert(id)) {
            continue;
        }
        let first = stack.len();
        match &v {
            Value::Dict(d) => {
                for (k, x) in d.borrow().iter() {
                    if let Some(key) = key_segment(k) {
                        stack.push((dotted(&path, &key), x.clone(), depth + 1));
                    }
                }
            }
            Value::List(l) => {
                for (i, x) in l.borrow().iter().enumerate() {
                    stack.push((dotted(&path, &i.to_string()), x.clone(), depth + 1));
                }
            }
            Value::Tuple(t) => {
                for (i, x) in t.iter().enumerate() {
                    stack.push((dotted(&path, &i.to_string()), x.clone(), depth + 1));
                }
            }
            _ => {}
        }
        stack[first..].reverse();
    }
    Ok(())
}

/// Every tensor reachable from `v`, named by dotted path.
pub fn collect(v: &Value, prefix: &str) -> Result<Vec<(String, Found)>> {
    let mut out = Vec::new();
    walk(v, prefix, |path, x| {
        if let Some(t) = x.object::<TensorRef>() {
            out.push((path.to_string(), Found::Tensor(t.clone())));
        } else if let Some(a) = modelconv_npy::pickled::array_of(x) {
            if let Some(a) = a.as_ref() {
                out.push((path.to_string(), Found::Array(a.clone())));
            }
        }
    })?;
    Ok(out)
}
