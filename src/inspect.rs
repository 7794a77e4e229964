//! `modelconv inspect`: headers only, never tensor data.

use crate::{registry, util};
use anyhow::Result;
use modelconv_ir::{Details, Model, Value};
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
    #[command(flatten)]
    open: registry::OpenArgs,
}

pub fn run(args: Args) -> Result<u8> {
    let opts = args.open.options();
    let (format, model) = registry::open(&args.path, args.from.as_deref(), &opts)?;
    let details = format.details(&model, &opts)?;
    if args.json {
        util::print_json(&Doc {
            model: &model,
            details: details.as_ref(),
        });
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

/// The `inspect --json` document, serialized as it is written: metadata
/// arrays stream element by element (a tokenizer's million strings never
/// become a JSON tree in memory).
struct Doc<'a> {
    model: &'a Model,
    details: Option<&'a Details>,
}

impl serde::Serialize for Doc<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let m = self.model;
        let mut map = s.serialize_map(None)?;
        map.serialize_entry("format", m.format)?;
        map.serialize_entry("path", &m.path.display().to_string())?;
        map.serialize_entry("metadata", &m.metadata)?;
        map.serialize_entry("tensors", &tensors_json(m))?;
        map.serialize_entry("parameters", &m.parameters())?;
        map.serialize_entry("bytes", &m.data_bytes())?;
        if let Some(d) = self.details {
            map.serialize_entry(d.key, &d.json)?;
        }
        map.end()
    }
}

fn tensors_json(model: &Model) -> Vec<serde_json::Value> {
    let sharded = util::input_files(model).len() > 1;
    model
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
        .collect()
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
    for t in &model.tensors {
        let shape = format!("{:?}", t.info.shape);
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
