//! `modelconv inspect`: headers only, never tensor data.

use crate::{registry, util};
use anyhow::Result;
use modelconv_ir::{Model, Value};
use serde_json::json;
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    /// A model file, an index json, or a folder of shards.
    path: PathBuf,
    /// Print one JSON document on stdout.
    #[arg(long)]
    json: bool,
    /// Read as this format instead of detecting it.
    #[arg(long, value_name = "FORMAT")]
    from: Option<String>,
    /// ONNX: list the values of Constant nodes with the initializers.
    #[arg(long)]
    all: bool,
}

pub fn run(args: Args) -> Result<u8> {
    if registry::input_format(&args.path, args.from.as_deref())?.name() == modelconv_onnx::NAME {
        let f = modelconv_onnx::OnnxFile::open(&args.path)?;
        let model = modelconv_onnx::model_of(&f, args.all)?;
        let s = modelconv_onnx::summary::summarize(&f, args.all)?;
        if args.json {
            let mut v = to_json(&model);
            v["onnx"] = crate::onnx::summary_json(&s);
            util::print_json(&v);
        } else {
            crate::onnx::print_summary(&args.path, &s);
        }
        return Ok(0);
    }
    let model = registry::open(&args.path, args.from.as_deref())?;
    // Checkpoints: what the pickle holds besides the state dict.
    let structure = if model.format == modelconv_pickle::NAME && args.path.is_file() {
        modelconv_pickle::structure(&args.path)?
    } else {
        Vec::new()
    };
    if args.json {
        let mut v = to_json(&model);
        if !structure.is_empty() {
            v["structure"] = structure
                .iter()
                .map(|(k, s)| (k.clone(), json!(s)))
                .collect::<serde_json::Map<_, _>>()
                .into();
        }
        util::print_json(&v);
    } else {
        if !structure.is_empty() {
            println!("{}: top level", args.path.display());
            for (k, s) in &structure {
                println!("  {k}: {s}");
            }
        }
        print_text(&model);
    }
    Ok(0)
}

pub fn to_json(model: &Model) -> serde_json::Value {
    let sharded = util::input_files(model).len() > 1;
    let tensors: Vec<_> = model
        .tensors
        .iter()
        .map(|t| {
            let mut o = json!({
                "name": t.info.name,
                "dtype": t.info.dtype.name(),
                "shape": t.info.shape,
                "bytes": t.info.byte_len,
            });
            if let Some(loc) = &t.location {
                o["offset"] = json!(loc.offset);
                if sharded {
                    o["file"] = json!(loc.file.display().to_string());
                }
            }
            o
        })
        .collect();
    json!({
        "format": model.format,
        "path": model.path.display().to_string(),
        "metadata": model.metadata.to_json(),
        "tensors": tensors,
        "parameters": model.parameters(),
        "bytes": model.data_bytes(),
    })
}

/// Metadata values for people: long arrays shortened.
fn short_value(v: &Value) -> String {
    match v {
        Value::Array(t, items) if items.len() > 8 => {
            let head: Vec<String> = items.iter().take(4).map(short_value).collect();
            format!("[{}, ... ] ({} × {:?})", head.join(", "), items.len(), t)
        }
        Value::String(s) if s.chars().count() > 120 => {
            format!(
                "{:?}… ({} chars)",
                s.chars().take(100).collect::<String>(),
                s.chars().count()
            )
        }
        Value::String(s) => format!("{s:?}"),
        other => other.to_text(),
    }
}

fn print_text(model: &Model) {
    println!("{}: {}", model.path.display(), model.format);
    println!(
        "  {} tensors, {} parameters, {}",
        model.tensors.len(),
        model.parameters(),
        util::human_bytes(model.data_bytes())
    );
    if !model.metadata.is_empty() {
        println!("metadata:");
        for (k, v) in model.metadata.iter() {
            println!("  {k} = {}", short_value(v));
        }
    }
    if model.tensors.is_empty() {
        return;
    }
    let name_w = model
        .tensors
        .iter()
        .map(|t| t.info.name.len())
        .max()
        .unwrap_or(4)
        .clamp(4, 60);
    println!("tensors:");
    println!(
        "  {:<name_w$}  {:<8} {:<20} {:>12}  {:>12}",
        "NAME", "DTYPE", "SHAPE", "BYTES", "OFFSET"
    );
    for t in &model.tensors {
        let shape = format!("{:?}", t.info.shape);
        let off = t.location.as_ref().map_or(String::new(), |l| l.offset.to_string());
        println!(
            "  {:<name_w$}  {:<8} {:<20} {:>12}  {:>12}",
            t.info.name,
            t.info.dtype.name(),
            shape,
            t.info.byte_len,
            off
        );
    }
}
