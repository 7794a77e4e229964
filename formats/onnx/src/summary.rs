//! What `inspect` shows of an ONNX model beyond its tensors.

use crate::graph;
use crate::proto::{tensor_shape_proto::dimension, type_proto, ValueInfoProto};
use crate::read::OnnxFile;
use crate::tensor::{dt, type_name};
use modelconv_ir::Result;
use std::collections::BTreeMap;

/// The name of an opset domain ("" is the default domain, `ai.onnx`).
pub fn domain_name(d: Option<&str>) -> &str {
    match d {
        None | Some("") => "ai.onnx",
        Some(d) => d,
    }
}

/// A graph input or output.
#[derive(Debug, Clone)]
pub struct Io {
    pub name: String,
    /// `FLOAT`, `INT64`, … or the kind of a non-tensor type.
    pub elem_type: String,
    /// Dimensions: numbers, symbolic names, or `?`; `None` when unknown rank.
    pub shape: Option<Vec<String>>,
}

/// One row of the initializer table.
#[derive(Debug, Clone)]
pub struct InitRow {
    pub name: String,
    pub data_type: String,
    pub dims: Vec<i64>,
    /// raw_data, typed field, external, or Constant node.
    pub storage: String,
    pub bytes: u64,
}

#[derive(Debug, Clone)]
pub struct Summary {
    pub ir_version: Option<i64>,
    pub producer: String,
    pub opsets: Vec<(String, i64)>,
    pub inputs: Vec<Io>,
    pub outputs: Vec<Io>,
    pub nodes: usize,
    /// Node count per op type (`domain.Op` outside the default domain).
    pub ops: BTreeMap<String, usize>,
    pub initializers: Vec<InitRow>,
}

fn io(v: &ValueInfoProto) -> Io {
    let name = v.name.clone().unwrap_or_default();
    match v.r#type.as_ref().and_then(|t| t.value.as_ref()) {
        Some(type_proto::Value::TensorType(t)) => Io {
            name,
            elem_type: type_name(t.elem_type.unwrap_or(0)),
            shape: t.shape.as_ref().map(|s| {
                s.dim
                    .iter()
                    .map(|d| match &d.value {
                        Some(dimension::Value::DimValue(v)) => v.to_string(),
                        Some(dimension::Value::DimParam(p)) => p.clone(),
                        None => "?".into(),
                    })
                    .collect()
            }),
        },
        Some(type_proto::Value::SequenceType(_)) => Io {
            name,
            elem_type: "sequence".into(),
            shape: None,
        },
        Some(type_proto::Value::MapType(_)) => Io {
            name,
            elem_type: "map".into(),
            shape: None,
        },
        Some(type_proto::Value::OptionalType(_)) => Io {
            name,
            elem_type: "optional".into(),
            shape: None,
        },
        Some(type_proto::Value::SparseTensorType(_)) => Io {
            name,
            elem_type: "sparse tensor".into(),
            shape: None,
        },
        _ => Io {
            name,
            elem_type: "?".into(),
            shape: None,
        },
    }
}

/// Reads the summary of `f`; with `constants`, Constant-node values are
/// listed with the initializers.
pub fn summarize(f: &OnnxFile, constants: bool) -> Result<Summary> {
    let m = &f.model;
    let g = f.graph();
    let init_names: std::collections::HashSet<&str> = g.initializer.iter().filter_map(|t| t.name.as_deref()).collect();
    let mut ops = BTreeMap::new();
    count_ops(g, &mut ops);
    let mut initializers = Vec::new();
    // As the reader does: a model without initializers shows its Constant weights.
    let constants = constants || (g.initializer.is_empty() && f.has_constant_weights()?);
    let (inits, skipped) = f.tensors(constants)?;
    for init in &inits {
        initializers.push(InitRow {
            name: init.tensor.info.name.clone(),
            data_type: type_name(init.data_type),
            dims: {
                let mut d: Vec<i64> = init.tensor.info.shape.iter().map(|&d| d as i64).collect();
                if matches!(init.data_type, dt::COMPLEX64 | dt::COMPLEX128) {
                    d.pop(); // the IR's trailing (real, imaginary) pair
                }
                d
            },
            storage: match init.origin {
                crate::read::Origin::Initializer => init.storage.to_string(),
                other => other.describe().to_string(),
            },
            bytes: init.stored.len(),
        });
    }
    for (name, t) in skipped {
        initializers.push(InitRow {
            name,
            data_type: type_name(t),
            dims: vec![],
            storage: "not read".into(),
            bytes: 0,
        });
    }
    Ok(Summary {
        ir_version: m.ir_version,
        producer: [m.producer_name.as_deref(), m.producer_version.as_deref()]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(" "),
        opsets: m
            .opset_import
            .iter()
            .map(|o| (domain_name(o.domain.as_deref()).to_string(), o.version.unwrap_or(0)))
            .collect(),
        inputs: g
            .input
            .iter()
            .filter(|v| !v.name.as_deref().is_some_and(|n| init_names.contains(n)))
            .map(io)
            .collect(),
        outputs: g.output.iter().map(io).collect(),
        nodes: ops.values().sum(),
        ops,
        initializers,
    })
}

fn count_ops(g: &crate::proto::GraphProto, ops: &mut BTreeMap<String, usize>) {
    for n in &g.node {
        let key = if graph::is_default_domain(n) {
            graph::op(n).to_string()
        } else {
            format!("{}.{}", n.domain.as_deref().unwrap_or(""), graph::op(n))
        };
        *ops.entry(key).or_default() += 1;
        for a in &n.attribute {
            for sub in a.g.iter().chain(&a.graphs) {
                count_ops(sub, ops);
            }
        }
    }
}
