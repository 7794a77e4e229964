//! The `--json` documents: one schema for every command (`docs/json.md`).
//! Each is a `#[derive(Serialize)]` type; [`emit`] adds the envelope
//! (`schema_version`, `command`) every document starts with.

use modelconv_ir::{ChangedTensor, KeptTensor, Model, TypedMetadata};
use serde::Serialize;
use std::path::{Path, PathBuf};

/// Raised when a field is removed or changes meaning; new fields may
/// appear in any version.
pub const SCHEMA_VERSION: u32 = 1;

#[derive(Serialize)]
struct Envelope<'a, T: Serialize> {
    schema_version: u32,
    command: &'a str,
    #[serde(flatten)]
    body: &'a T,
}

/// Prints `body` as `command`'s document on stdout.
pub fn emit<T: Serialize>(command: &str, body: &T) {
    crate::util::print_json(&Envelope {
        schema_version: SCHEMA_VERSION,
        command,
        body,
    });
}

pub fn path_text(p: &Path) -> String {
    p.display().to_string()
}

/// `{"error": {...}}`: what went wrong, for scripts.
#[derive(Serialize)]
pub struct ErrorDoc {
    pub error: ErrorBody,
}

#[derive(Serialize)]
pub struct ErrorBody {
    /// `usage`, `io`, `malformed`, `truncated`, `unreadable`,
    /// `limit_exceeded`, `invalid`, `unsupported`, `refused_global`,
    /// `interrupted`, `internal` (exit 3: a bug, not the input).
    pub kind: &'static str,
    /// The message the text mode prints after `modelconv: error: `.
    pub message: String,
    pub path: Option<String>,
    pub tensor: Option<String>,
    pub offset: Option<u64>,
}

impl ErrorBody {
    pub fn of(e: &anyhow::Error) -> ErrorBody {
        let message = format!("{e:#}");
        match e.chain().find_map(|c| c.downcast_ref::<modelconv_ir::Error>()) {
            Some(ir) => ErrorBody {
                kind: ir.kind(),
                message,
                path: ir.path().map(path_text),
                tensor: ir.tensor().map(str::to_string),
                offset: ir.offset(),
            },
            None => ErrorBody {
                kind: "invalid",
                message,
                path: None,
                tensor: None,
                offset: None,
            },
        }
    }
}

/// A tensor as `inspect` lists it.
#[derive(Serialize)]
pub struct TensorEntry {
    pub name: String,
    pub dtype: &'static str,
    pub shape: Vec<u64>,
    pub bytes: u64,
    /// Where its data starts in `file` (absent for computed tensors).
    pub offset: Option<u64>,
    /// The file holding it (sharded or multi-file inputs only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// The shape it stands for where it is stored reshaped (ComfyUI-GGUF's
    /// `comfy.gguf.orig_shape.<name>`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub logical_shape: Option<Vec<u64>>,
}

pub fn tensors(model: &Model) -> Vec<TensorEntry> {
    let sharded = crate::util::input_files(model).len() > 1;
    let logical = modelconv_diffusion::logical_shapes(&model.metadata);
    model
        .tensors
        .iter()
        .map(|t| TensorEntry {
            logical_shape: logical.iter().find(|(n, _)| *n == t.info.name).map(|(_, s)| s.clone()),
            name: t.info.name.clone(),
            dtype: t.info.dtype.name(),
            shape: t.info.shape.clone(),
            bytes: t.info.byte_len,
            offset: t.location.as_ref().map(|l| l.offset),
            file: t.location.as_ref().filter(|_| sharded).map(|l| path_text(&l.file)),
        })
        .collect()
}

/// `inspect`.
#[derive(Serialize)]
pub struct InspectDoc<'a> {
    pub path: String,
    pub format: &'static str,
    /// Typed, in file order: `{"key": {"type": "u32", "value": 2}}`.
    pub metadata: TypedMetadata<'a>,
    pub tensors: Vec<TensorEntry>,
    pub tensor_count: usize,
    pub parameters: u64,
    pub bytes: u64,
    /// What the format says besides tensors (ONNX graph summary,
    /// checkpoint structure), or `null`.
    pub details: Option<FormatDetails<'a>>,
    pub notes: &'a [String],
}

#[derive(Serialize)]
pub struct FormatDetails<'a> {
    /// Which section this is (`onnx`, `checkpoint`).
    pub kind: &'static str,
    pub value: &'a serde_json::Value,
}

/// A file written.
#[derive(Serialize)]
pub struct Written {
    pub path: String,
    pub bytes: u64,
    /// SHA-256 of the file as written, lowercase hex (`null` for a stream),
    /// so that a worker writing one shard can report what it made.
    pub sha256: Option<String>,
}

pub fn written(paths: &[PathBuf]) -> Vec<Written> {
    paths
        .iter()
        .map(|p| {
            // Streamed outputs (stdout, a FIFO) have no size or digest to ask for.
            let regular = std::fs::metadata(p).ok().filter(|m| m.is_file());
            Written {
                path: path_text(p),
                bytes: regular.as_ref().map_or(0, |m| m.len()),
                sha256: regular.and_then(|_| file_sha256(p).ok()),
            }
        })
        .collect()
}

/// The files a `--dry-run` would write: planned lengths (0 where unknown), no digest.
pub fn planned(planned: &[crate::util::Planned]) -> Vec<Written> {
    planned
        .iter()
        .map(|(p, size)| Written {
            path: path_text(p),
            bytes: size.unwrap_or(0),
            sha256: None,
        })
        .collect()
}

/// SHA-256 of a file, read in 1 MiB pieces.
fn file_sha256(path: &std::path::Path) -> std::io::Result<String> {
    use sha2::Digest;
    use std::io::Read;
    let mut f = std::fs::File::open(path)?;
    let mut hasher = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

#[derive(Serialize)]
pub struct Deduped {
    pub name: String,
    pub kept_as: String,
}

/// `convert` and `ckpt-to-safetensors`.
#[derive(Serialize)]
pub struct ConvertDoc<'a> {
    pub input: String,
    pub input_format: &'static str,
    pub output_format: &'static str,
    pub outputs: Vec<Written>,
    /// The requested `--dtype`, or `null`.
    pub dtype: Option<String>,
    /// The tensors written.
    pub tensors: Vec<TensorEntry>,
    pub tensor_count: usize,
    pub parameters: u64,
    pub bytes: u64,
    /// Tensors the cast or quantization changed.
    pub changed: Vec<ChangedTensor>,
    /// Tensors it left as they were, and why.
    pub unchanged: Vec<KeptTensor>,
    pub deduped: Vec<Deduped>,
    /// Format-specific facts of a rewrite (ONNX fp16), or `null`.
    pub details: Option<&'a serde_json::Value>,
    pub notes: &'a [String],
}

impl<'a> ConvertDoc<'a> {
    /// The document for `model`, written from `input` to `outputs`; the
    /// caller fills in what the request did (dtype, changed, …).
    pub fn of(
        input: &Path,
        formats: (&'static str, &'static str),
        outputs: &[PathBuf],
        model: &Model,
        notes: &'a [String],
    ) -> Self {
        ConvertDoc {
            input: path_text(input),
            input_format: formats.0,
            output_format: formats.1,
            outputs: written(outputs),
            dtype: None,
            tensors: tensors(model),
            tensor_count: model.tensors.len(),
            parameters: model.parameters(),
            bytes: model.data_bytes(),
            changed: Vec::new(),
            unchanged: Vec::new(),
            deduped: Vec::new(),
            details: None,
            notes,
        }
    }

    /// `--dedupe`'s pairs (dropped name, name kept).
    pub fn with_deduped(mut self, pairs: Vec<(String, String)>) -> Self {
        self.deduped = pairs
            .into_iter()
            .map(|(name, kept_as)| Deduped { name, kept_as })
            .collect();
        self
    }
}

/// `quantize`, GGUF and ONNX alike.
#[derive(Serialize)]
pub struct QuantizeDoc<'a> {
    pub input: String,
    pub outputs: Vec<Written>,
    /// The type asked for (`Q4_K_M`, `INT8`).
    pub requested_type: String,
    /// What the file now is: the requested type when any tensor was
    /// quantized to it, else the type most of its bytes have.
    #[serde(rename = "type")]
    pub type_label: String,
    /// `llama.cpp` (llama-quantize's mix), `pure`, or `onnx`.
    pub mix: &'static str,
    pub tensors: Vec<ChangedTensor>,
    pub unchanged: Vec<KeptTensor>,
    /// Elements of the changed tensors.
    pub parameters: u64,
    pub bytes_before: u64,
    pub bytes_after: u64,
    /// bytes_after × 8 / parameters, or `null`.
    pub bits_per_weight: Option<f64>,
    pub file_bytes_before: u64,
    pub file_bytes_after: u64,
    pub details: Option<&'a serde_json::Value>,
    pub notes: &'a [String],
}

impl QuantizeDoc<'_> {
    pub fn totals(tensors: &[ChangedTensor]) -> (u64, u64, u64, Option<f64>) {
        let params: u64 = tensors.iter().map(|t| t.shape.iter().product::<u64>()).sum();
        let before = tensors.iter().map(|t| t.bytes_before).sum();
        let after: u64 = tensors.iter().map(|t| t.bytes_after).sum();
        let bpw = (params > 0).then(|| after as f64 * 8.0 / params as f64);
        (params, before, after, bpw)
    }
}

/// Total size of files (those that are regular files).
pub fn file_bytes(files: &[PathBuf]) -> u64 {
    files
        .iter()
        .filter_map(|p| std::fs::metadata(p).ok())
        .filter(|m| m.is_file())
        .map(|m| m.len())
        .sum()
}

/// `formats`.
#[derive(Serialize)]
pub struct FormatsDoc {
    pub formats: Vec<FormatEntry>,
}

#[derive(Serialize)]
pub struct FormatEntry {
    pub name: &'static str,
    pub extensions: &'static [&'static str],
    pub read: bool,
    pub write: bool,
    pub description: &'static str,
    pub options: Vec<OptionEntry>,
}

/// A format's declared option, as `formats --json` lists it.
#[derive(Serialize)]
pub struct OptionEntry {
    /// `--NAME`.
    pub name: &'static str,
    /// `open`, `write`, `cast`, `quantize`.
    pub stages: Vec<&'static str>,
    /// `flag`, `bool`, `switch` or `value`.
    pub value: &'static str,
    /// The negation of a switch (`--no-NAME`), else null.
    pub negation: Option<&'static str>,
    pub help: &'static str,
}

impl OptionEntry {
    pub fn of(o: &modelconv_ir::FormatOption) -> OptionEntry {
        use modelconv_ir::{OptionValue, Stage};
        let stage = |s: &Stage| match s {
            Stage::Open => "open",
            Stage::Write => "write",
            Stage::Cast => "cast",
            Stage::Quantize => "quantize",
        };
        let (value, negation) = match o.value {
            OptionValue::Flag => ("flag", None),
            OptionValue::Bool => ("bool", None),
            OptionValue::Switch(off) => ("switch", Some(off)),
            OptionValue::Value(_) => ("value", None),
        };
        OptionEntry {
            name: o.name,
            stages: o.stages.iter().map(stage).collect(),
            value,
            negation,
            help: o.help,
        }
    }
}
