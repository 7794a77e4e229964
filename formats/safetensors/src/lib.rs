//! # modelconv-safetensors
//!
//! The [safetensors](https://github.com/huggingface/safetensors) format for
//! modelconv: an 8-byte little-endian header length, a JSON header, then the
//! tensors' bytes back to back.
//!
//! Reading validates every rule of the `safetensors` crate (header size limit,
//! UTF-8 JSON object, known dtypes, `data_offsets` that agree with dtype and
//! shape and cover the data exactly with no gap or overlap, string-only
//! `__metadata__`) and also refuses duplicate keys. Data stays in the file
//! and is read lazily.
//!
//! Writing is deterministic: tensor order preserved, metadata keys sorted,
//! header padded with spaces so the data starts 8-byte aligned. With a
//! shard size it writes the Hugging Face layout
//! (`model-00001-of-0000N.safetensors` + `model.safetensors.index.json`).

mod edit;
pub mod header;
mod read;
mod write;

use modelconv_ir::{Format, Model, OpenOptions, Probe, Result, Writer};
use std::path::Path;

pub use read::{open, read_file};
pub use write::SafetensorsWriter;

pub const NAME: &str = "safetensors";

/// The format descriptor the registry lists.
pub struct Safetensors;

pub static FORMAT: Safetensors = Safetensors;

impl Format for Safetensors {
    fn name(&self) -> &'static str {
        NAME
    }
    fn description(&self) -> &'static str {
        "Hugging Face safetensors (single file, sharded folder or index json); read + write"
    }
    fn extensions(&self) -> &'static [&'static str] {
        &["safetensors"]
    }
    fn score(&self, probe: &Probe) -> u8 {
        let (head, path) = (probe.head, probe.path);
        if probe.is_dir {
            return if has_safetensors(path) { 50 } else { 0 };
        }
        if read::is_index_name(path) && head.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{') {
            return 90;
        }
        if head.len() >= 9 {
            let mut n = [0u8; 8];
            n.copy_from_slice(&head[..8]);
            let n = u64::from_le_bytes(n);
            if (2..=header::MAX_HEADER_SIZE).contains(&n) && head[8] == b'{' {
                return 95;
            }
        }
        0
    }
    fn open(&self, path: &Path, _opts: &OpenOptions) -> Result<Model> {
        open(path)
    }
    fn metadata_editor(&self) -> Option<&dyn modelconv_ir::MetadataEditor> {
        Some(&edit::SafetensorsEditor)
    }
    fn writer(&self) -> Option<&dyn Writer> {
        Some(&SafetensorsWriter)
    }
    fn scanner(&self) -> Option<&dyn modelconv_ir::scan::Scanner> {
        Some(&SCANNER)
    }
}

fn has_safetensors(dir: &Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|rd| {
        rd.flatten().any(|e| {
            let p = e.path();
            p.extension().is_some_and(|x| x == "safetensors") || read::is_index_name(&p)
        })
    })
}

/// `scan` names safetensors files (an 8-byte header length, then `{`)
/// and reads the chat templates in `__metadata__`: a value under a key
/// naming `chat_template`, or any value holding Jinja's `{{` or `{%`.
static SCANNER: SafetensorsScanner = SafetensorsScanner;

struct SafetensorsScanner;

impl modelconv_ir::scan::Scanner for SafetensorsScanner {
    fn container(&self, _path: &Path, b: &[u8]) -> Option<modelconv_ir::scan::Scanned> {
        let len = b.get(..8).and_then(|l| l.try_into().ok()).map(u64::from_le_bytes)?;
        if b.get(8) != Some(&b'{') || len >= 100_000_000 {
            return None;
        }
        let header = usize::try_from(len).ok().and_then(|l| b.get(8..8usize.checked_add(l)?));
        let streams = header.map(metadata_templates).unwrap_or_default();
        Some(modelconv_ir::scan::Scanned::new("safetensors", streams, true))
    }
}

/// The findings of the templates in a header's `__metadata__` (none when
/// the header is not JSON: the safetensors library refuses such a file).
fn metadata_templates(header: &[u8]) -> Vec<modelconv_ir::scan::Stream> {
    /// The header's `__metadata__` alone (tensor entries are skipped
    /// unparsed, so memory follows the metadata, not the tensor count).
    #[derive(serde::Deserialize)]
    struct Head {
        #[serde(rename = "__metadata__")]
        metadata: Option<std::collections::BTreeMap<String, serde_json::Value>>,
    }
    let holds = |pat: &[u8]| header.windows(pat.len()).any(|w| w == pat);
    if !(holds(b"chat_template") || holds(b"{{") || holds(b"{%")) {
        return Vec::new();
    }
    let Ok(Head { metadata: Some(meta) }) = serde_json::from_slice::<Head>(header) else {
        return Vec::new();
    };
    meta.iter()
        .filter_map(|(k, v)| Some((k, v.as_str()?)))
        .filter(|(k, v)| k.contains("chat_template") || v.contains("{{") || v.contains("{%"))
        .filter_map(|(k, v)| modelconv_jinja::scan_template(&format!("__metadata__ {k}"), v))
        .collect()
}
