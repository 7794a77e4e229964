//! Helpers for editing graphs: element types of values, unique names,
//! attributes and node construction.

use crate::proto::{
    attribute_proto::AttributeType, type_proto, AttributeProto, GraphProto, NodeProto, TensorProto, TypeProto,
    ValueInfoProto,
};
use crate::tensor::dt;
use std::collections::{HashMap, HashSet};

pub fn attr<'a>(n: &'a NodeProto, name: &str) -> Option<&'a AttributeProto> {
    n.attribute.iter().find(|a| a.name.as_deref() == Some(name))
}

pub fn attr_i(n: &NodeProto, name: &str) -> Option<i64> {
    attr(n, name).and_then(|a| a.i)
}

pub fn attr_int(name: &str, v: i64) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        r#type: Some(AttributeType::Int as i32),
        i: Some(v),
        ..Default::default()
    }
}

pub fn attr_tensor(name: &str, t: TensorProto) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        r#type: Some(AttributeType::Tensor as i32),
        t: Some(t),
        ..Default::default()
    }
}

pub fn node(op: &str, domain: &str, name: String, inputs: Vec<String>, outputs: Vec<String>) -> NodeProto {
    NodeProto {
        input: inputs,
        output: outputs,
        name: Some(name),
        op_type: Some(op.into()),
        domain: (!domain.is_empty()).then(|| domain.to_string()),
        ..Default::default()
    }
}

pub fn is_default_domain(n: &NodeProto) -> bool {
    matches!(n.domain.as_deref(), None | Some("") | Some("ai.onnx"))
}

pub fn op(n: &NodeProto) -> &str {
    n.op_type.as_deref().unwrap_or("")
}

/// The element type of a tensor-typed value.
pub fn elem_type(v: &ValueInfoProto) -> Option<i32> {
    match v.r#type.as_ref()?.value.as_ref()? {
        type_proto::Value::TensorType(t) => t.elem_type,
        _ => None,
    }
}

/// Changes every tensor element type `from` inside `t` (sequences, maps,
/// optionals included) to `to`.
pub fn retype(t: &mut TypeProto, from: i32, to: i32) {
    match t.value.as_mut() {
        Some(type_proto::Value::TensorType(tt)) if tt.elem_type == Some(from) => tt.elem_type = Some(to),
        Some(type_proto::Value::SparseTensorType(tt)) if tt.elem_type == Some(from) => tt.elem_type = Some(to),
        Some(type_proto::Value::SequenceType(s)) => {
            if let Some(e) = s.elem_type.as_deref_mut() {
                retype(e, from, to)
            }
        }
        Some(type_proto::Value::OptionalType(s)) => {
            if let Some(e) = s.elem_type.as_deref_mut() {
                retype(e, from, to)
            }
        }
        Some(type_proto::Value::MapType(m)) => {
            if let Some(e) = m.value_type.as_deref_mut() {
                retype(e, from, to)
            }
        }
        _ => {}
    }
}

/// Hands out names not yet used anywhere in a graph (or its subgraphs).
pub struct Names(HashSet<String>);

impl Names {
    pub fn of(g: &GraphProto) -> Names {
        let mut s = HashSet::new();
        collect_names(g, &mut s);
        Names(s)
    }
    pub fn fresh(&mut self, base: &str) -> String {
        let mut name = base.to_string();
        let mut i = 1;
        while self.0.contains(&name) {
            name = format!("{base}_{i}");
            i += 1;
        }
        self.0.insert(name.clone());
        name
    }
}

fn collect_names(g: &GraphProto, s: &mut HashSet<String>) {
    s.extend(g.initializer.iter().filter_map(|t| t.name.clone()));
    s.extend(
        g.input
            .iter()
            .chain(&g.output)
            .chain(&g.value_info)
            .filter_map(|v| v.name.clone()),
    );
    for n in &g.node {
        s.extend(n.input.iter().chain(&n.output).cloned());
        s.extend(n.name.clone());
        for a in &n.attribute {
            for sub in a.g.iter().chain(&a.graphs) {
                collect_names(sub, s);
            }
        }
    }
}

/// Element types of the values of a graph: declared ones (inputs,
/// initializers, value_info, outputs) and, for the rest, what each op
/// produces, by the op's type rules.
pub fn value_types(g: &GraphProto, outer: &HashMap<String, i32>) -> HashMap<String, i32> {
    let mut types = outer.clone();
    for t in &g.initializer {
        if let (Some(n), Some(d)) = (&t.name, t.data_type) {
            types.insert(n.clone(), d);
        }
    }
    for v in g.input.iter().chain(&g.value_info).chain(&g.output) {
        if let (Some(n), Some(d)) = (&v.name, elem_type(v)) {
            types.insert(n.clone(), d);
        }
    }
    for n in &g.node {
        let inferred = infer(n, &types);
        for (i, out) in n.output.iter().enumerate() {
            if out.is_empty() || types.contains_key(out) {
                continue;
            }
            if let Some(Some(t)) = inferred.get(i) {
                types.insert(out.clone(), *t);
            }
        }
    }
    types
}

/// The output element types of `n`, where its op's rules tell.
fn infer(n: &NodeProto, types: &HashMap<String, i32>) -> Vec<Option<i32>> {
    let input = |i: usize| n.input.get(i).and_then(|x| types.get(x)).copied();
    let k = n.output.len();
    let all = |t: Option<i32>| vec![t; k];
    let dtype_attr = |default: Option<i32>| attr_i(n, "dtype").map(|v| v as i32).or(default);
    if !is_default_domain(n) {
        return all(input(0));
    }
    match op(n) {
        "Shape" | "Size" | "NonZero" | "ArgMax" | "ArgMin" | "NonMaxSuppression" => all(Some(dt::INT64)),
        "Cast" => all(attr_i(n, "to").map(|v| v as i32)),
        "CastLike" => all(input(1)),
        "Equal" | "Greater" | "GreaterOrEqual" | "Less" | "LessOrEqual" | "And" | "Or" | "Xor" | "Not" | "IsNaN"
        | "IsInf" => all(Some(dt::BOOL)),
        "ConstantOfShape" => all(Some(
            attr(n, "value")
                .and_then(|a| a.t.as_ref())
                .and_then(|t| t.data_type)
                .unwrap_or(dt::FLOAT),
        )),
        "Constant" => all(n.attribute.first().and_then(|a| match a.name.as_deref() {
            Some("value") => a.t.as_ref().and_then(|t| t.data_type),
            Some("value_float" | "value_floats") => Some(dt::FLOAT),
            Some("value_int" | "value_ints") => Some(dt::INT64),
            Some("value_string" | "value_strings") => Some(dt::STRING),
            _ => None,
        })),
        "EyeLike" | "RandomNormalLike" | "RandomUniformLike" => all(dtype_attr(input(0))),
        "RandomNormal" | "RandomUniform" => all(dtype_attr(Some(dt::FLOAT))),
        "Multinomial" => all(dtype_attr(Some(dt::INT32))),
        "Where" => all(input(1)),
        "TopK" => vec![input(0), Some(dt::INT64)],
        "Unique" => vec![input(0), Some(dt::INT64), Some(dt::INT64), Some(dt::INT64)],
        "QuantizeLinear" => all(input(2)
            .or(attr_i(n, "output_dtype").filter(|&v| v != 0).map(|v| v as i32))
            .or(Some(dt::UINT8))),
        "DequantizeLinear" => all(input(1)),
        "DynamicQuantizeLinear" => vec![Some(dt::UINT8), Some(dt::FLOAT), Some(dt::UINT8)],
        "MatMulInteger" | "ConvInteger" => all(Some(dt::INT32)),
        // An If's outputs are its branches' outputs.
        "If" => attr(n, "then_branch")
            .and_then(|a| a.g.as_ref())
            .map(|g| g.output.iter().map(elem_type).collect())
            .unwrap_or_else(|| all(None)),
        "Loop" | "Scan" | "SequenceConstruct" | "SequenceEmpty" | "SplitToSequence" => all(None),
        _ => all(input(0)),
    }
}
