//! `modelconv inspect`: headers only, never tensor data.

use crate::{registry, report, util};
use anyhow::Result;
use modelconv_ir::{Model, TypedMetadata, Value};
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
    #[command(flatten)]
    open: registry::OpenArgs,
}

pub fn run(args: Args) -> Result<u8> {
    let opts = args.open.options();
    let input = util::Input::new(&args.path)?;
    let (format, mut model) = registry::open(&input.path, args.from.as_deref(), &opts)?;
    if input.path != args.path {
        model.path = args.path.clone();
    }
    let details = format.details(&model, &opts)?;
    if args.json {
        report::emit(
            "inspect",
            &report::InspectDoc {
                path: report::path_text(&model.path),
                format: model.format,
                metadata: TypedMetadata(&model.metadata),
                tensors: report::tensors(&model),
                tensor_count: model.tensors.len(),
                parameters: model.parameters(),
                bytes: model.data_bytes(),
                details: details.as_ref().map(|d| report::FormatDetails {
                    kind: d.key,
                    value: &d.json,
                }),
                notes: &model.notes,
            },
        );
    } else {
        if let Some(d) = &details {
            for line in d.text.lines() {
                println!("{}", util::printable(line));
            }
            if d.replaces_table {
                return Ok(0);
            }
        }
        print_text(&model);
    }
    Ok(0)
}

/// Metadata values for people: long arrays shortened.
fn short_value(v: &Value) -> String {
    match v {
        Value::Array(a) if a.len() > 8 => {
            let head: Vec<String> = a.iter().take(4).map(|v| short_value(&v)).collect();
            format!("[{}, ... ] ({} × {:?})", head.join(", "), a.len(), a.element_type())
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
    println!("{}: {}", util::shown(&model.path), model.format);
    println!(
        "  {} tensors, {} parameters, {}",
        model.tensors.len(),
        model.parameters(),
        util::human_bytes(model.data_bytes())
    );
    if !model.metadata.is_empty() {
        println!("metadata:");
        for (k, v) in model.metadata.iter() {
            println!("  {} = {}", util::printable(k), util::printable(&short_value(v)));
        }
    }
    if model.tensors.is_empty() {
        return;
    }
    let name_w = model
        .tensors
        .iter()
        .map(|t| util::printable(&t.info.name).chars().count())
        .max()
        .unwrap_or(4)
        .clamp(4, 60);
    println!("tensors:");
    println!(
        "  {:<name_w$}  {:<8} {:<20} {:>12}  {:>12}",
        "NAME", "DTYPE", "SHAPE", "BYTES", "OFFSET"
    );
    let logical = modelconv_diffusion::logical_shapes(&model.metadata);
    for t in &model.tensors {
        // A reshaped tensor shows the shape it stands for, then how it is stored.
        let shape = match logical.iter().find(|(n, _)| *n == t.info.name) {
            Some((_, s)) => format!("{s:?} as {:?}", t.info.shape),
            None => format!("{:?}", t.info.shape),
        };
        let off = t.location.as_ref().map_or(String::new(), |l| l.offset.to_string());
        println!(
            "  {:<name_w$}  {:<8} {:<20} {:>12}  {:>12}",
            util::printable(&t.info.name),
            t.info.dtype.name(),
            shape,
            t.info.byte_len,
            off
        );
    }
}
