//! The model card (`README.md`) of a folder made from a GGUF: the
//! `general.*` keys gguf-py's heuristics read from a card on the way in
//! (license, base models, datasets, tags, languages), written back as the
//! card's YAML front matter so that converting the folder again gives the
//! same keys; the name and description as its heading and text.

use crate::export::Hparams;
use modelconv_ir::Value;
use serde_json::Value as Json;
use std::fmt::Write;
use std::path::Path;

/// A YAML double-quoted scalar (a JSON string is one).
fn quoted(s: &str) -> String {
    Json::from(s).to_string()
}

/// `general.{what}.N` entries as the Hub ids a card lists: the repo id of
/// a huggingface.co URL, else `organization/name`, else the name.
fn hub_ids(h: &Hparams, what: &str) -> Vec<String> {
    let n =
        h.md.get(&format!("general.{what}.count"))
            .and_then(Value::as_u64)
            .unwrap_or(0);
    let text = |i: u64, k: &str| {
        h.md.get(&format!("general.{what}.{i}.{k}"))
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    (0..n.min(1024))
        .filter_map(|i| {
            let url = text(i, "repo_url");
            if let Some(id) = url.as_deref().and_then(|u| u.strip_prefix("https://huggingface.co/")) {
                return Some(id.trim_end_matches('/').to_string());
            }
            match (text(i, "organization"), text(i, "name")) {
                (Some(org), Some(name)) => Some(format!("{org}/{name}")),
                (None, name) => name,
                (Some(org), None) => Some(org),
            }
        })
        .collect()
}

fn list(out: &mut String, key: &str, items: &[String]) {
    if items.is_empty() {
        return;
    }
    let _ = writeln!(out, "{key}:");
    for i in items {
        let _ = writeln!(out, "- {}", quoted(i));
    }
}

/// README.md for the folder made from GGUF `source`.
pub fn model_card(h: &Hparams, source: &Path) -> Vec<u8> {
    let text = |k: &str| h.md.get(k).and_then(Value::as_str).map(str::to_string);
    let strings = |k: &str| -> Vec<String> {
        h.strings(k)
            .map(|s| s.iter().map(|x| x.to_string()).collect())
            .unwrap_or_default()
    };
    let mut y = String::from("---\n");
    for (key, gguf) in [
        ("license", "general.license"),
        ("license_name", "general.license.name"),
        ("license_link", "general.license.link"),
    ] {
        if let Some(v) = text(gguf) {
            let _ = writeln!(y, "{key}: {}", quoted(&v));
        }
    }
    list(&mut y, "base_model", &hub_ids(h, "base_model"));
    list(&mut y, "datasets", &hub_ids(h, "dataset"));
    list(&mut y, "language", &strings("general.languages"));
    list(&mut y, "tags", &strings("general.tags"));
    // (No pipeline_tag: gguf-py's heuristics append it to the tags, which
    // already hold the one the GGUF came with.)
    y.push_str("library_name: transformers\n---\n");
    let name = text("general.name").unwrap_or_else(|| "Model".into());
    let file = source
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default();
    let _ = writeln!(y, "# {name}\n");
    if let Some(d) = text("general.description") {
        let _ = writeln!(y, "{d}\n");
    }
    let _ = writeln!(
        y,
        "Converted back from the GGUF file `{file}` by modelconv (`modelconv convert {file} DIR --to hf`)."
    );
    y.into_bytes()
}
