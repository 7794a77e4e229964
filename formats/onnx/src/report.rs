//! What the ONNX plugin tells the CLI: its `inspect` section, and the
//! reports of the fp16 and INT8/INT4 rewrites (text and JSON).

use crate::fp16::Fp16Report;
use crate::quant::QuantReport;
use crate::summary::{self, Summary};
use modelconv_ir::{human_bytes, ChangedTensor, KeptTensor};
use serde_json::json;
use std::fmt::Write as _;
use std::sync::atomic::Ordering;

pub fn summary_json(s: &Summary) -> serde_json::Value {
    let io = |v: &[summary::Io]| -> Vec<serde_json::Value> {
        v.iter()
            .map(|i| json!({"name": i.name, "type": i.elem_type, "shape": i.shape}))
            .collect()
    };
    json!({
        "ir_version": s.ir_version,
        "producer": s.producer,
        "opsets": s.opsets.iter().map(|(d, v)| json!({"domain": d, "version": v})).collect::<Vec<_>>(),
        "inputs": io(&s.inputs),
        "outputs": io(&s.outputs),
        "nodes": s.nodes,
        "ops": s.ops,
        "initializers": s.initializers.iter().map(|r| json!({
            "name": r.name, "data_type": r.data_type, "dims": r.dims, "storage": r.storage, "bytes": r.bytes,
        })).collect::<Vec<_>>(),
    })
}

pub fn summary_text(path: &std::path::Path, s: &Summary) -> String {
    let mut o = String::new();
    let opsets: Vec<String> = s.opsets.iter().map(|(d, v)| format!("{d} {v}")).collect();
    let _ = writeln!(o, "{}: onnx", path.display());
    let _ = writeln!(
        o,
        "  ir_version {}, opsets: {}, producer: {}",
        s.ir_version.map_or("?".into(), |v| v.to_string()),
        opsets.join(", "),
        if s.producer.is_empty() { "-" } else { &s.producer }
    );
    let mut io = |label: &str, v: &[summary::Io]| {
        let _ = writeln!(o, "{label}:");
        for i in v {
            let shape = i
                .shape
                .as_ref()
                .map_or("?".to_string(), |d| format!("[{}]", d.join(", ")));
            let _ = writeln!(o, "  {:<24} {:<8} {shape}", i.name, i.elem_type);
        }
    };
    io("inputs", &s.inputs);
    io("outputs", &s.outputs);
    let ops: Vec<String> = s.ops.iter().map(|(op, n)| format!("{op} {n}")).collect();
    let _ = writeln!(o, "nodes: {} ({})", s.nodes, ops.join(", "));
    let total: u64 = s.initializers.iter().map(|r| r.bytes).sum();
    let _ = writeln!(o, "initializers: {} ({})", s.initializers.len(), human_bytes(total));
    let w = s
        .initializers
        .iter()
        .map(|r| r.name.len())
        .max()
        .unwrap_or(4)
        .clamp(4, 60);
    let _ = writeln!(
        o,
        "  {:<w$}  {:<14} {:<20} {:>12}  STORAGE",
        "NAME", "TYPE", "DIMS", "BYTES"
    );
    for r in &s.initializers {
        let _ = writeln!(
            o,
            "  {:<w$}  {:<14} {:<20} {:>12}  {}",
            r.name,
            r.data_type,
            format!("{:?}", r.dims),
            r.bytes,
            r.storage
        );
    }
    o
}

/// The fp16 rewrite's report, once its data is written (clamps are counted
/// while values stream).
pub fn fp16_report(report: &Fp16Report, forced_external: bool) -> modelconv_ir::Report {
    let c = &report.clamps;
    let (over, under) = (c.overflow.load(Ordering::Relaxed), c.underflow.load(Ordering::Relaxed));
    let mut notes = Vec::new();
    if forced_external {
        notes.push("note: the model passes 2 GiB, so its tensors went to external data".to_string());
    }
    notes.push(format!(
        "fp16: {} initializers and {} constants converted, {} ops kept in float32 ({} Cast nodes added); {} values clamped to the float16 range ({over} overflowed ±65504, {under} below 2^-24)",
        report.converted_initializers,
        report.converted_constants,
        report.blocked_nodes,
        report.casts_added,
        c.total(),
    ));
    modelconv_ir::Report {
        type_label: "F16".into(),
        tensors: Vec::new(),
        unchanged: Vec::new(),
        details: json!({
            "rewrite": "fp16",
            "converted_initializers": report.converted_initializers,
            "converted_constants": report.converted_constants,
            "blocked_nodes": report.blocked_nodes,
            "casts_added": report.casts_added,
            "clamped": {"overflow": over, "underflow": under},
        }),
        text: String::new(),
        notes,
    }
}

/// The INT8/INT4 quantization's report.
pub fn quant_report(report: &QuantReport, ty: &str) -> modelconv_ir::Report {
    let before: u64 = report.rows.iter().map(|r| r.bytes_before).sum();
    let after: u64 = report.rows.iter().map(|r| r.bytes_after).sum();
    let tensors = report
        .rows
        .iter()
        .map(|r| ChangedTensor {
            name: r.name.clone(),
            from: r.from.clone(),
            to: ty.to_string(),
            shape: r.shape.clone(),
            bytes_before: r.bytes_before,
            bytes_after: r.bytes_after,
            relative_rmse: r.relative_rmse(),
            scheme: Some(r.scheme.clone()),
            op: Some(r.consumer.clone()),
        })
        .collect();
    let unchanged = report
        .skipped
        .iter()
        .map(|(n, why)| KeptTensor {
            name: n.clone(),
            dtype: None,
            reason: why.clone(),
        })
        .collect();
    let details = json!({
        "opset_before": report.opset_before,
        "opset_after": report.opset_after,
    });
    let mut o = String::new();
    let w = report.rows.iter().map(|r| r.name.len()).max().unwrap_or(4).clamp(4, 48);
    let _ = writeln!(
        o,
        "{:<w$}  {:<7} {:<14} {:<42} {:>10}  REL.RMSE",
        "NAME", "OP", "SHAPE", "SCHEME", "BYTES"
    );
    for r in &report.rows {
        let _ = writeln!(
            o,
            "{:<w$}  {:<7} {:<14} {:<42} {:>10}  {:.5}",
            r.name,
            r.consumer,
            format!("{:?}", r.shape),
            r.scheme,
            r.bytes_after,
            r.relative_rmse().unwrap_or(f64::NAN)
        );
    }
    for (n, why) in &report.skipped {
        if n.is_empty() {
            let _ = writeln!(o, "note: {why}");
        } else {
            let _ = writeln!(o, "skipped {n}: {why}");
        }
    }
    if report.opset_after != report.opset_before {
        let _ = writeln!(
            o,
            "opset {} → {} (every op in the model means the same there)",
            report.opset_before, report.opset_after
        );
    }
    let _ = writeln!(o, "{ty} weights {} → {}", human_bytes(before), human_bytes(after));
    modelconv_ir::Report {
        type_label: ty.to_string(),
        tensors,
        unchanged,
        details,
        text: o,
        notes: Vec::new(),
    }
}
