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
                let stored = match storage.stored_from_ir(w.data.clone(), numel) {
                    _ if unchanged => orig.stored.clone(),
                    Some(s) => s,
                    None => {
                        return Err(Error::unsupported(format!(
                            "tensor '{name}': writing new values into a {} initializer is not supported",
                            tensor::type_name(orig.data_type)
                        )))
                    }
                };
                // A template that keeps this initializer in its typed field
                // (float_data, int32_data, …) gets its new values there too.
                if orig.storage == "typed field" {
                    if let Some(typed) = in_typed_field(proto, orig.data_type, stored.as_ref())? {
                        inits.push(OutInit {
                            proto: typed,
                            data: None,
                        });
                        continue;
                    }
                }
                stored
            }
            // The template's own value, kept as the template stores it.
            None if allow_missing && orig.storage == "typed field" => {
                inits.push(OutInit {
                    proto: proto.clone(),
                    data: None,
                });
                continue;
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

/// `proto` with its typed field holding `stored` (the values as ONNX
/// stores them, little-endian), as the onnx helper writes each type:
/// FLOAT and COMPLEX64 in `float_data`, DOUBLE and COMPLEX128 in
/// `double_data`, INT64 in `int64_data`, UINT32 and UINT64 in
/// `uint64_data`, the narrower integers, BOOL, FLOAT16 and BFLOAT16 one
/// per `int32_data` element (16-bit floats as their bits; 4- and 2-bit
/// integers one packed byte per element, as the helper packs them). None for the
/// other types (they are written to raw_data).
fn in_typed_field(
    proto: &crate::proto::TensorProto,
    data_type: i32,
    stored: &dyn modelconv_ir::DataSource,
) -> Result<Option<crate::proto::TensorProto>> {
    use crate::tensor::dt;
    let width = match data_type {
        dt::FLOAT | dt::COMPLEX64 | dt::INT32 | dt::UINT32 => 4,
        dt::DOUBLE | dt::COMPLEX128 | dt::INT64 | dt::UINT64 => 8,
        dt::INT16 | dt::UINT16 | dt::FLOAT16 | dt::BFLOAT16 => 2,
        dt::INT8 | dt::UINT8 | dt::BOOL | dt::INT4 | dt::UINT4 | dt::INT2 | dt::UINT2 => 1,
        _ => return Ok(None),
    };
    let len = usize::try_from(stored.len()).map_err(|_| Error::internal("initializer too large"))?;
    let mut bytes = vec![0u8; len];
    stored.read_at(0, &mut bytes)?;
    let mut out = proto.clone();
    out.raw_data = None;
    let chunks = bytes.chunks_exact(width);
    match data_type {
        dt::FLOAT | dt::COMPLEX64 => {
            out.float_data = chunks.map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
        }
        dt::DOUBLE | dt::COMPLEX128 => {
            out.double_data = chunks
                .map(|c| f64::from_le_bytes(c.try_into().unwrap_or([0; 8])))
                .collect()
        }
        dt::INT64 => {
            out.int64_data = chunks
                .map(|c| i64::from_le_bytes(c.try_into().unwrap_or([0; 8])))
                .collect()
        }
        dt::UINT64 => {
            out.uint64_data = chunks
                .map(|c| u64::from_le_bytes(c.try_into().unwrap_or([0; 8])))
                .collect()
        }
        dt::UINT32 => {
            out.uint64_data = chunks
                .map(|c| u64::from(u32::from_le_bytes([c[0], c[1], c[2], c[3]])))
                .collect()
        }
        dt::INT32 => out.int32_data = chunks.map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect(),
        dt::INT16 => out.int32_data = chunks.map(|c| i32::from(i16::from_le_bytes([c[0], c[1]]))).collect(),
        dt::UINT16 | dt::FLOAT16 | dt::BFLOAT16 => {
            out.int32_data = chunks.map(|c| i32::from(u16::from_le_bytes([c[0], c[1]]))).collect()
        }
        dt::INT8 => out.int32_data = bytes.iter().map(|&b| i32::from(b as i8)).collect(),
        _ => out.int32_data = bytes.iter().map(|&b| i32::from(b)).collect(),
    }
    Ok(Some(out))
}
