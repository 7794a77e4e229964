//! # modelconv-gguf
//!
//! The GGUF container (llama.cpp / ggml): magic `GGUF`, version (2 or 3 read,
//! 3 written), tensor and metadata counts, typed key/value metadata (13 value
//! types, nested arrays), tensor infos (name, dimensions innermost first,
//! ggml type, offset), then the data section aligned to `general.alignment`.
//!
//! Every ggml type's shape and size is read, so any GGUF can be inspected;
//! data of every type is copied as it is. Counts, lengths and offsets are
//! checked against the file length before anything is allocated.

mod edit;
mod read;
pub mod split;
mod types;
mod write;

use modelconv_ir::{Format, Model, OpenOptions, Probe, Result, Writer};
use std::path::Path;

pub use read::{open, parse, Parsed};
pub use types::{dtype_from_ggml, ggml_id};
pub use write::GgufWriter;

pub const NAME: &str = "gguf";
pub const MAGIC: &[u8; 4] = b"GGUF";
/// Data alignment when `general.alignment` is absent.
pub const DEFAULT_ALIGNMENT: u64 = 32;
/// ggml's GGML_MAX_DIMS: the most dimensions written.
pub const MAX_DIMS_WRITE: usize = 4;
/// The most dimensions accepted when reading (other writers are laxer).
pub const MAX_DIMS_READ: usize = 8;

pub struct Gguf;

pub static FORMAT: Gguf = Gguf;

impl Format for Gguf {
    fn name(&self) -> &'static str {
        NAME
    }
    fn description(&self) -> &'static str {
        "GGUF v2/v3 (llama.cpp); read any ggml type, write F32/F16/BF16/F64/int and existing blocks"
    }
    fn extensions(&self) -> &'static [&'static str] {
        &["gguf"]
    }
    fn score(&self, probe: &Probe) -> u8 {
        if probe.is_dir {
            // Below safetensors (50), above pytorch (40).
            let has_gguf = std::fs::read_dir(probe.path)
                .is_ok_and(|rd| rd.flatten().any(|e| e.path().extension().is_some_and(|x| x == "gguf")));
            return if has_gguf { 45 } else { 0 };
        }
        if probe.head.starts_with(MAGIC) {
            100
        } else {
            0
        }
    }
    fn open(&self, path: &Path, _opts: &OpenOptions) -> Result<Model> {
        open(path)
    }
    fn writer(&self) -> Option<&dyn Writer> {
        Some(&GgufWriter)
    }
    fn options(&self) -> &'static [modelconv_ir::FormatOption] {
        split::OPTIONS
    }
    fn metadata_editor(&self) -> Option<&dyn modelconv_ir::MetadataEditor> {
        Some(&edit::GgufEditor)
    }
    fn details(&self, model: &Model, _opts: &OpenOptions) -> Result<Option<modelconv_ir::Details>> {
        Ok(model
            .source
            .as_ref()
            .and_then(|s| s.downcast_ref::<read::SplitLayout>())
            .map(split_details))
    }
    fn scanner(&self) -> Option<&dyn modelconv_ir::scan::Scanner> {
        Some(&SCANNER)
    }
}

/// `inspect`'s section for a split model: each shard's file, tensors and size.
fn split_details(layout: &read::SplitLayout) -> modelconv_ir::Details {
    let n = layout.shards.len();
    let mut text = format!("split: {n} shards\n");
    let mut shards = Vec::with_capacity(n);
    for (i, (path, tensors, bytes)) in layout.shards.iter().enumerate() {
        text.push_str(&format!(
            "  {:>5}  {}  {tensors} tensors, {bytes} bytes\n",
            i + 1,
            path.display()
        ));
        shards.push(serde_json::json!({ "path": path.display().to_string(), "tensors": tensors, "bytes": bytes }));
    }
    modelconv_ir::Details {
        key: "split",
        json: serde_json::json!({ "count": n, "shards": shards }),
        text,
        replaces_table: false,
    }
}

/// `scan` names GGUF files and the GGML/GGMF/GGJT files before them, and
/// reads a GGUF's chat templates (`tokenizer.chat_template` and
/// `tokenizer.chat_template.<name>`, which llama.cpp and
/// llama-cpp-python render with Jinja).
static SCANNER: GgufScanner = GgufScanner;

struct GgufScanner;

impl modelconv_ir::scan::Scanner for GgufScanner {
    fn container(&self, path: &std::path::Path, b: &[u8]) -> Option<modelconv_ir::scan::Scanned> {
        use modelconv_ir::scan::{Scanned, Stream};
        if [b"lmgg", b"fmgg", b"tjgg"].iter().any(|m| b.starts_with(*m)) {
            return Some(Scanned::new("legacy GGML/GGMF/GGJT weights", Vec::new(), true));
        }
        if !b.starts_with(b"GGUF") {
            return None;
        }
        let streams = match read::metadata_of(b, path) {
            Ok(metadata) => chat_templates(&metadata),
            Err(e) => vec![Stream::unreadable(
                "GGUF metadata",
                format!("{e}: its chat templates are not checked"),
            )],
        };
        Some(Scanned::new("gguf", streams, true))
    }
}

/// The findings of every chat template in a GGUF's metadata.
fn chat_templates(metadata: &modelconv_ir::Metadata) -> Vec<modelconv_ir::scan::Stream> {
    metadata
        .iter()
        .filter(|(k, _)| *k == "tokenizer.chat_template" || k.starts_with("tokenizer.chat_template."))
        .filter_map(|(k, v)| match v {
            modelconv_ir::Value::String(t) => modelconv_jinja::scan_template(k, t),
            _ => None,
        })
        .collect()
}
