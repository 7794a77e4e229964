//! The ONNX-specific paths of the commands: inspect's graph summary, the
//! fp16 rewrite of `convert --dtype F16`, and `quantize --type INT8|INT4`.

use crate::util;
use anyhow::{bail, Result};
use modelconv_ir::WriteOptions;
use modelconv_onnx::fp16::{self, Fp16Options};
use modelconv_onnx::quant::{self, QType, QuantOptions};
use modelconv_onnx::summary::{self, Summary};
use modelconv_onnx::{write, OnnxFile};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

pub fn is_onnx_path(p: &Path) -> bool {
    p.extension().is_some_and(|e| e.eq_ignore_ascii_case("onnx"))
}

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

pub fn print_summary(path: &Path, s: &Summary) {
    let opsets: Vec<String> = s.opsets.iter().map(|(d, v)| format!("{d} {v}")).collect();
    println!("{}: onnx", path.display());
    println!(
        "  ir_version {}, opsets: {}, producer: {}",
        s.ir_version.map_or("?".into(), |v| v.to_string()),
        opsets.join(", "),
        if s.producer.is_empty() { "-" } else { &s.producer }
    );
    let io = |label: &str, v: &[summary::Io]| {
        println!("{label}:");
        for i in v {
            let shape = i
                .shape
                .as_ref()
                .map_or("?".to_string(), |d| format!("[{}]", d.join(", ")));
            println!("  {:<24} {:<8} {shape}", i.name, i.elem_type);
        }
    };
    io("inputs", &s.inputs);
    io("outputs", &s.outputs);
    let ops: Vec<String> = s.ops.iter().map(|(o, n)| format!("{o} {n}")).collect();
    println!("nodes: {} ({})", s.nodes, ops.join(", "));
    let total: u64 = s.initializers.iter().map(|r| r.bytes).sum();
    println!("initializers: {} ({})", s.initializers.len(), util::human_bytes(total));
    let w = s
        .initializers
        .iter()
        .map(|r| r.name.len())
        .max()
        .unwrap_or(4)
        .clamp(4, 60);
    println!(
        "  {:<w$}  {:<14} {:<20} {:>12}  STORAGE",
        "NAME", "TYPE", "DIMS", "BYTES"
    );
    for r in &s.initializers {
        println!(
            "  {:<w$}  {:<14} {:<20} {:>12}  {}",
            r.name,
            r.data_type,
            format!("{:?}", r.dims),
            r.bytes,
            r.storage
        );
    }
}

fn write_out(
    out: write::OnnxOut,
    inputs: &[PathBuf],
    output: &Path,
    opts: &WriteOptions,
    quiet: bool,
) -> Result<(Vec<PathBuf>, bool)> {
    let plan = write::plan(out, output, opts.external_data, opts)?;
    let forced = plan.forced_external;
    Ok((util::write_plan(Box::new(plan), inputs, quiet)?, forced))
}

/// `convert model.onnx out.onnx --dtype F16`.
pub fn fp16(input: &Path, output: &Path, keep_io_types: bool, opts: &WriteOptions, quiet: bool) -> Result<u8> {
    let f = OnnxFile::open(input)?;
    let o = Fp16Options {
        keep_io_types,
        ..Default::default()
    };
    let (out, report) = fp16::to_fp16(&f, &o)?;
    let (outputs, forced) = write_out(out, &f.input_files(), output, opts, quiet)?;
    if !quiet {
        for p in &outputs {
            eprintln!("wrote {}", p.display());
        }
        if forced {
            eprintln!("note: the model passes 2 GiB, so its tensors went to external data");
        }
        let c = &report.clamps;
        eprintln!(
            "fp16: {} initializers and {} constants converted, {} ops kept in float32 ({} Cast nodes added); {} values clamped to the float16 range ({} overflowed ±65504, {} below 2^-24)",
            report.converted_initializers,
            report.converted_constants,
            report.blocked_nodes,
            report.casts_added,
            c.total(),
            c.overflow.load(Ordering::Relaxed),
            c.underflow.load(Ordering::Relaxed)
        );
    }
    Ok(0)
}

/// What `quantize` was asked for an ONNX input.
pub struct QuantArgs {
    pub input: PathBuf,
    pub output: Option<PathBuf>,
    pub ty: String,
    pub block_size: u64,
    pub embeddings: bool,
    pub keep_opset: bool,
    pub external_data: bool,
    pub json: bool,
    pub no_fsync: bool,
}

/// `quantize model.onnx --type INT8|INT4`.
pub fn quantize(a: QuantArgs, quiet: bool) -> Result<u8> {
    let ty = match a.ty.to_ascii_uppercase().as_str() {
        "INT8" | "Q8" => QType::Int8,
        "INT4" | "Q4" => QType::Int4,
        other => bail!("--type {other}: ONNX models are quantized to INT8 or INT4"),
    };
    let f = OnnxFile::open(&a.input)?;
    let opts = QuantOptions {
        ty,
        block_size: a.block_size,
        embeddings: a.embeddings,
        upgrade_opset: !a.keep_opset,
        ..Default::default()
    };
    let (out, report) = quant::quantize(&f, &opts)?;
    if report.rows.is_empty() {
        let why: Vec<String> = report
            .skipped
            .iter()
            .map(|(n, why)| {
                if n.is_empty() {
                    format!("\n  {why}")
                } else {
                    format!("\n  {n}: {why}")
                }
            })
            .collect();
        bail!(
            "{}: no MatMul/Gemm weight initializer to quantize{}{}",
            a.input.display(),
            if a.embeddings { " (nor Gather data)" } else { "" },
            why.concat()
        );
    }
    let output = a.output.clone().unwrap_or_else(|| {
        let stem = a
            .input
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "model".into());
        a.input
            .with_file_name(format!("{stem}-{}.onnx", ty.name().to_ascii_lowercase()))
    });
    let wopts = WriteOptions {
        no_fsync: a.no_fsync,
        external_data: a.external_data,
        ..Default::default()
    };
    let inputs = f.input_files();
    let (outputs, _) = write_out(out, &inputs, &output, &wopts, quiet)?;
    let before: u64 = report.rows.iter().map(|r| r.bytes_before).sum();
    let after: u64 = report.rows.iter().map(|r| r.bytes_after).sum();
    let file_before: u64 = inputs
        .iter()
        .filter_map(|p| std::fs::metadata(p).ok())
        .map(|m| m.len())
        .sum();
    let file_after: u64 = outputs
        .iter()
        .filter_map(|p| std::fs::metadata(p).ok())
        .map(|m| m.len())
        .sum();
    if a.json {
        util::print_json(&json!({
            "input": a.input.display().to_string(),
            "outputs": outputs.iter().map(|p| p.display().to_string()).collect::<Vec<_>>(),
            "type": ty.name(),
            "opset_before": report.opset_before,
            "opset_after": report.opset_after,
            "tensors": report.rows.iter().map(|r| json!({
                "name": r.name, "consumer": r.consumer, "shape": r.shape, "scheme": r.scheme,
                "bytes_before": r.bytes_before, "bytes_after": r.bytes_after,
                "relative_rmse": r.relative_rmse().map(util::json_f64),
            })).collect::<Vec<_>>(),
            "skipped": report.skipped.iter().map(|(n, why)| json!({"name": n, "reason": why})).collect::<Vec<_>>(),
            "weight_bytes_before": before,
            "weight_bytes_after": after,
            "file_bytes_before": file_before,
            "file_bytes_after": file_after,
        }));
        return Ok(0);
    }
    let w = report.rows.iter().map(|r| r.name.len()).max().unwrap_or(4).clamp(4, 48);
    println!(
        "{:<w$}  {:<7} {:<14} {:<42} {:>10}  REL.RMSE",
        "NAME", "OP", "SHAPE", "SCHEME", "BYTES"
    );
    for r in &report.rows {
        println!(
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
            println!("note: {why}");
        } else {
            println!("skipped {n}: {why}");
        }
    }
    if report.opset_after != report.opset_before {
        println!(
            "opset {} → {} (every op in the model means the same there)",
            report.opset_before, report.opset_after
        );
    }
    println!(
        "{}: {} weights {} → {}; file {} → {} ({:.0}%)",
        output.display(),
        ty.name(),
        util::human_bytes(before),
        util::human_bytes(after),
        util::human_bytes(file_before),
        util::human_bytes(file_after),
        100.0 * file_after as f64 / file_before.max(1) as f64
    );
    if !quiet {
        for p in &outputs {
            eprintln!("wrote {}", p.display());
        }
    }
    Ok(0)
}
