//! The plugin contract. Each format crate exports one [`Format`] value; the
//! binary lists them in one registry, probes every input with each
//! ([`Format::score`]) and drives the best through this trait. No command
//! knows a format by name: what is particular to a format arrives as
//! options ([`OpenOptions`], [`WriteOptions`]) the format declares
//! ([`Format::options`]), leaves as an inspect section ([`Details`]), or is a
//! rewrite of the format's own graph ([`Rewriter`]).

use crate::{DType, Model, Result};
use std::path::{Path, PathBuf};

/// How many leading (and trailing) bytes of a file the registry reads for
/// [`Format::score`].
pub const HEAD_LEN: usize = 4096;

/// What the registry knows of an input before choosing its reader.
#[derive(Debug)]
pub struct Probe<'a> {
    /// The path as given: a file, a folder, or a prefix naming no file
    /// (TF checkpoints: `model.ckpt` for `model.ckpt.index` + data shards).
    pub path: &'a Path,
    /// The path is a folder.
    pub is_dir: bool,
    /// The path names an existing regular file.
    pub is_file: bool,
    /// File length (0 for folders and prefixes).
    pub len: u64,
    /// The first bytes (up to [`HEAD_LEN`]).
    pub head: &'a [u8],
    /// The last bytes (up to [`HEAD_LEN`]; the same as `head` for short files).
    pub tail: &'a [u8],
    /// Entry names when the file is a zip archive (central directory order,
    /// at most a few thousand).
    pub zip_entries: &'a [String],
}

impl Probe<'_> {
    /// The file name's extension, lowercase.
    pub fn extension(&self) -> Option<String> {
        self.path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase)
    }
}

/// Where a format option applies. Each command drives some of these
/// stages and offers exactly the options declared for them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Reading (`open`): e.g. which tensors a file offers.
    Open,
    /// Writing (`plan`): layout choices of the output format.
    Write,
    /// The format's own cast of its graph ([`RewriteRequest::Cast`]).
    Cast,
    /// The format's own quantization of its graph ([`RewriteRequest::Quantize`]).
    Quantize,
}

impl Stage {
    /// The stage as one bit of a set (a command's stages, as a `u8`).
    pub const fn bit(self) -> u8 {
        1 << self as u8
    }
}

/// How a format option is written on the command line, and the values it
/// stores in [`Options`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OptionValue {
    /// `--NAME`: stored as `"true"` when given.
    Flag,
    /// `--NAME` or `--NAME=true|false`: stored as `"true"` or `"false"`.
    Bool,
    /// `--NAME` or its negation (the name given here), the last one given
    /// winning: stored as `"true"` or `"false"`.
    Switch(&'static str),
    /// `--NAME VALUE`, the placeholder shown in help; the format parses it.
    Value(&'static str),
}

/// An option a format understands, declared once: the CLI builds its flag
/// and help from this, passes the value through, and refuses it for a
/// format or stage that does not take it.
#[derive(Debug, Clone, Copy)]
pub struct FormatOption {
    /// `--NAME` on the command line, and the key in the options.
    pub name: &'static str,
    /// The stages it applies to.
    pub stages: &'static [Stage],
    pub value: OptionValue,
    /// One sentence for `--help`, without the format's name (the CLI adds it).
    pub help: &'static str,
}

impl FormatOption {
    /// Whether it applies at any stage of `set` (a union of [`Stage::bit`]s).
    pub fn at(&self, set: u8) -> bool {
        self.stages.iter().any(|s| s.bit() & set != 0)
    }
}

/// Format-specific options: `name → value` (`"true"` for flags), in the
/// order given.
#[derive(Debug, Clone, Default)]
pub struct Options(pub Vec<(String, String)>);

impl Options {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().rev().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
    /// A flag: set and not `false`.
    pub fn flag(&self, name: &str) -> bool {
        self.get(name).is_some_and(|v| v != "false")
    }
    pub fn set(&mut self, name: &str, value: impl Into<String>) {
        self.0.push((name.to_string(), value.into()));
    }
}

/// What a reader is asked at open.
#[derive(Debug, Clone, Default)]
pub struct OpenOptions {
    /// Every tensor the file holds, by dotted path (checkpoints: beyond the
    /// state dict, e.g. optimizer state; ONNX: Constant values too), not only
    /// the model's weights.
    pub all: bool,
    /// Options of the format ([`Stage::Open`]).
    pub options: Options,
}

/// A format's own section of `inspect`.
#[derive(Debug, Clone)]
pub struct Details {
    /// Key of the section in `inspect --json`.
    pub key: &'static str,
    pub json: serde_json::Value,
    /// Lines for people, printed before the tensor table.
    pub text: String,
    /// The text says everything the tensor table would (no table printed).
    pub replaces_table: bool,
}

/// A file format: how to recognise it, read it, and (optionally) write it.
pub trait Format: Sync {
    /// Short name used by `--from/--to` and in output (`safetensors`, `gguf`).
    fn name(&self) -> &'static str;
    /// One line for `modelconv formats`.
    fn description(&self) -> &'static str;
    /// File extensions, without the dot. Used only to break ties and to
    /// pick an output format.
    fn extensions(&self) -> &'static [&'static str];
    /// Confidence 0..=100 that the probed input is in this format. 0 means
    /// "not mine".
    fn score(&self, probe: &Probe) -> u8;
    /// Reads the headers and returns a model whose tensors are lazy.
    fn open(&self, path: &Path, opts: &OpenOptions) -> Result<Model>;
    /// Options this format understands.
    fn options(&self) -> &'static [FormatOption] {
        &[]
    }
    /// The format's own section of `inspect`, for a model it opened.
    fn details(&self, _model: &Model, _opts: &OpenOptions) -> Result<Option<Details>> {
        Ok(None)
    }
    /// The writer, if this format can be written.
    fn writer(&self) -> Option<&dyn Writer> {
        None
    }
    /// Rewrites of this format's own files that are more than a tensor
    /// pipeline (a typed graph: ONNX fp16, INT8/INT4).
    fn rewriter(&self) -> Option<&dyn Rewriter> {
        None
    }
    /// What `scan` reads in this format's files ([`crate::scan`]), if
    /// they can carry code.
    fn scanner(&self) -> Option<&dyn crate::scan::Scanner> {
        None
    }
    /// The editor of this format's metadata (`meta`), if its files keep
    /// metadata in a header before the tensor data.
    fn metadata_editor(&self) -> Option<&dyn MetadataEditor> {
        None
    }
}

/// Rewrites a file's metadata without touching its tensor data: the edited
/// file is [`HeaderEdit::header`] followed by the original file's bytes
/// from [`HeaderEdit::data_start`] on (tensor offsets are relative to the
/// data section, so they stay valid).
pub trait MetadataEditor: Sync {
    /// The metadata of this one file (a shard's own, not its model's).
    fn metadata(&self, path: &Path) -> Result<crate::Metadata>;
    /// The header of `path` with `metadata` in place of its own.
    fn new_header(&self, path: &Path, metadata: &crate::Metadata) -> Result<HeaderEdit>;
}

/// A new header, and where the data it is followed by begins in the old file.
#[derive(Debug, Clone)]
pub struct HeaderEdit {
    pub header: Vec<u8>,
    pub data_start: u64,
}

impl HeaderEdit {
    /// The file can be edited by writing the header over the old one: the
    /// data section starts where it did.
    pub fn fits_in_place(&self) -> bool {
        self.header.len() as u64 == self.data_start
    }
}

/// Options every writer understands, and the format's own.
#[derive(Debug, Clone, Default)]
pub struct WriteOptions {
    /// Split the output into shards of at most this many bytes of tensor
    /// data (formats that support sharding).
    pub max_shard_size: Option<u64>,
    /// Skip the fsync before the rename: the output still appears only when
    /// complete, but may not survive a power loss (what `cp` does).
    pub no_fsync: bool,
    /// Options of the format ([`Stage::Write`], [`Stage::Cast`], [`Stage::Quantize`]).
    pub options: Options,
}

/// The writing side of a format.
pub trait Writer: Sync {
    /// Checks that `model` can be written and fixes the whole layout, before
    /// any byte is written.
    fn plan(&self, model: &Model, dest: &Path, opts: &WriteOptions) -> Result<Box<dyn WritePlan>>;
    /// The format is llama.cpp's: a Hugging Face model written to it takes
    /// llama.cpp's tensor names, hyper-parameter keys and tokenizer.
    fn llama_conventions(&self) -> bool {
        false
    }
    /// The weights file of a Hugging Face model folder, when this is the
    /// format such folders hold (`convert x.gguf DIR --to hf` writes it
    /// there, its shards and index beside it).
    fn hf_weights_file(&self) -> Option<&'static str> {
        None
    }
}

/// A fully planned output.
pub trait WritePlan {
    /// Every file this plan will create.
    fn outputs(&self) -> Vec<PathBuf>;
    /// Files read besides the model's own (a template, external data),
    /// which the output must not replace.
    fn inputs(&self) -> Vec<PathBuf> {
        Vec::new()
    }
    /// Tensor bytes to be written (for progress).
    fn data_bytes(&self) -> u64;
    /// The length each of [`WritePlan::outputs`] will have, where the plan
    /// knows it before writing (for `--dry-run`).
    fn sizes(&self) -> Option<Vec<u64>> {
        None
    }
    /// Whether the output is one file written strictly in order, so that
    /// it can go to standard output, a FIFO or a device.
    fn streamable(&self) -> bool {
        false
    }
    /// Writes all outputs to temporary files and renames them into place
    /// only when every one of them is complete and synced.
    fn write(self: Box<Self>, progress: &dyn Progress) -> Result<()>;
}

/// A rewrite a format offers for its own files.
#[derive(Debug, Clone)]
pub enum RewriteRequest {
    /// Every float of the model to this type (`convert --dtype`).
    Cast(DType),
    /// Quantization to a type named by the user (`quantize --type`).
    Quantize(String),
}

/// A planned rewrite; its report is made once the plan is written (some
/// counts are gathered while the data streams).
pub struct Rewrite {
    pub plan: Box<dyn WritePlan>,
    pub report: Box<dyn FnOnce() -> Report>,
}

/// What a rewrite did. The CLI serializes it into the same documents as
/// its own pipeline's (`docs/json.md`).
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// What the output's weights now are (`INT8`, `F16`): the label the
    /// report gives the file.
    pub type_label: String,
    /// The tensors the rewrite changed.
    pub tensors: Vec<ChangedTensor>,
    /// Candidates it left as they were, with the reason.
    pub unchanged: Vec<KeptTensor>,
    /// Format-specific facts (opsets, counts), an object.
    pub details: serde_json::Value,
    /// The report for people (stdout).
    pub text: String,
    /// Informational lines (stderr, unless quiet).
    pub notes: Vec<String>,
}

/// One tensor a cast, quantization or rewrite changed.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ChangedTensor {
    pub name: String,
    /// Its type before (`F32`).
    pub from: String,
    /// Its type after (`Q4_K`, `INT8`).
    pub to: String,
    pub shape: Vec<u64>,
    pub bytes_before: u64,
    pub bytes_after: u64,
    /// ‖dequantized − original‖ / ‖original‖; `null` when not measured.
    pub relative_rmse: Option<f64>,
    /// How it is stored, where a format says more than the type
    /// (ONNX: `DequantizeLinear per-channel axis 1`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scheme: Option<String>,
    /// The op that reads it, where the format has ops (ONNX: `MatMul`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub op: Option<String>,
}

/// A tensor a request left as it was, and why.
#[derive(Debug, Clone, serde::Serialize)]
pub struct KeptTensor {
    /// Empty for a reason that concerns the whole model.
    pub name: String,
    /// Its type, when the report knows it.
    pub dtype: Option<String>,
    pub reason: String,
}

/// The rewriting side of a format.
pub trait Rewriter: Sync {
    /// Plans `request` on the model at `input`, written to `dest` (or a
    /// name the format derives from the input). `Ok(None)`: not a rewrite
    /// of this format; the generic pipeline handles the request.
    fn rewrite(
        &self,
        input: &Path,
        request: &RewriteRequest,
        dest: Option<&Path>,
        opts: &WriteOptions,
    ) -> Result<Option<Rewrite>>;
}

/// Receives progress in bytes of tensor data.
pub trait Progress: Sync {
    fn advance(&self, bytes: u64);
}

/// Progress that goes nowhere.
pub struct NoProgress;

impl Progress for NoProgress {
    fn advance(&self, _bytes: u64) {}
}
