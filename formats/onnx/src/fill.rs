//! The initializers of a template graph, each taken from a weights model
//! by name (or kept, when the template's own values are wanted).

use crate::read::{constant_values, OnnxFile};
use crate::tensor::{self, Storage};
use crate::write::{OnnxOut, OutInit};
use modelconv_ir::{Error, Model, Result};
use std::collections::{HashMap, HashSet};

/// The template's graph with its initializers replaced by the tensors of
/// `weights` of the same name, which must have the same IR dtype and shape.
/// Missing tensors are an error unless `allow_missing`; so are tensors of
/// `weights` the template has no place for.
pub fn fill(template: &OnnxFile, weights: &Model, allow_missing: bool) -> Result<OnnxOut> {
    let by_name: HashMap<&str, &modelconv_ir::Tensor> =
        weights.tensors.iter().map(|t| (t.info.name.as_str(), t)).collect();
    let (mut mismatched, mut missing, mut used) = (Vec::new(), Vec::new(), HashSet::new());
    let mut inits = Vec::new();
    // Tensors read from the template itself, unchanged (an ONNX → ONNX
    // convert): kept exactly as stored, typed fields included.
    let same_file = weights.format == crate::NAME
        && matches!((weights.path.canonicalize(), template.path.canonicalize()), (Ok(a), Ok(b)) if a == b);
    for proto in &template.graph().initializer {
        let name = proto.name.clone().unwrap_or_default();
        let Some(orig) = template.tensor(proto, &name)? else {
            // STRING and other types outside the IR stay as they are.
            inits.push(OutInit {
                proto: proto.clone(),
                data: None,
            });
            continue;
        };
        let data = match by_name.get(name.as_str()) {
            Some(w) => {
                used.insert(name.as_str().to_string());
                let (oi, wi) = (&orig.tensor.info, &w.info);
                if oi.dtype != wi.dtype || oi.shape != wi.shape {
                    mismatched.push(format!(
                        "'{name}': template {} {:?} ({}), weights {} {:?}",
                        oi.dtype,
                        oi.shape,
                        tensor::type_name(orig.data_type),
                        wi.dtype,
                        wi.shape
                    ));
                    continue;
                }
                let storage = Storage::of(orig.data_type).ok_or_else(|| Error::internal("unreachable type"))?;
                let numel = orig.tensor.info.numel();
                let unchanged = (same_file && w.info == orig.tensor.info)
                    || (w.location.is_some() && w.location == orig.tensor.location);
                if unchanged && orig.storage == "typed field" {
                    inits.push(OutInit {
                        proto: proto.clone(),
                        data: None,
                    });
                    continue;
                }
                match storage.stored_from_ir(w.data.clone(), numel) {
                    _ if unchanged => orig.stored.clone(),
                    Some(s) => s,
                    None => {
                        return Err(Error::unsupported(format!(
                            "tensor '{name}': writing new values into a {} initializer is not supported",
                            tensor::type_name(orig.data_type)
                        )))
                    }
                }
            }
            None if allow_missing => orig.stored.clone(),
            None => {
                missing.push(name.clone());
                continue;
            }
        };
        inits.push(OutInit {
            proto: proto.clone(),
            data: Some(data),
        });
    }
    // Names a weights file extracted with `--all` carries for Constant
    // nodes and subgraph values (kept as the template has them).
    let g = template.graph();
    let mut constants: HashSet<String> = HashSet::new();
    for graph in std::iter::once(g).chain(crate::read::subgraphs(g)) {
        if !std::ptr::eq(graph, g) {
            constants.extend(graph.initializer.iter().filter_map(|t| t.name.clone()));
        }
        for n in &graph.node {
            constants.extend(constant_values(n)?.into_iter().map(|(n, _)| n));
        }
    }
    let unknown: Vec<&str> = weights
        .tensors
        .iter()
        .map(|t| t.info.name.as_str())
        .filter(|n| !used.contains(*n) && !constants.contains(*n))
        .collect();
    if !(mismatched.is_empty() && missing.is_empty() && unknown.is_empty()) {
        let mut msg = format!(
            "{} does not fit the template {}:",
            weights.path.display(),
            template.path.display()
        );
        let mut section = |title: &str, items: &[String], hint: &str| {
            if !items.is_empty() {
                msg.push_str(&format!("\n  {} {title}{hint}:", items.len()));
                for i in items.iter().take(20) {
                    msg.push_str(&format!("\n    {i}"));
                }
                if items.len() > 20 {
                    msg.push_str(&format!("\n    … and {} more", items.len() - 20));
                }
            }
        };
        section("with another dtype or shape", &mismatched, "");
        section(
            "missing from the weights",
            &missing.iter().map(|n| format!("'{n}'")).collect::<Vec<_>>(),
            " (--allow-missing keeps the template's values)",
        );
        section(
            "not in the template",
            &unknown.iter().map(|n| format!("'{n}'")).collect::<Vec<_>>(),
            " (drop them with --exclude)",
        );
        return Err(Error::invalid(msg));
    }
    Ok(OnnxOut {
        model: template.model.clone(),
        inits,
    })
}
