//! The plugin contract. Each format crate exports one [`Format`] value; the
//! binary lists them in one registry and picks a reader by magic bytes.

use crate::{Model, Result};
use std::path::{Path, PathBuf};

/// How many leading bytes of a file the registry hands to [`Format::score`].
pub const HEAD_LEN: usize = 64;

/// A file format: how to recognise it, read it, and (optionally) write it.
pub trait Format: Sync {
    /// Short name used by `--from/--to` and in output (`safetensors`, `gguf`).
    fn name(&self) -> &'static str;
    /// One line for `modelconv formats`.
    fn description(&self) -> &'static str;
    /// File extensions, without the dot. Used only to break ties and to
    /// pick an output format.
    fn extensions(&self) -> &'static [&'static str];
    /// Confidence 0..=100 that `path` (whose first bytes are `head`, empty
    /// for a directory) is in this format. 0 means "not mine".
    fn score(&self, head: &[u8], path: &Path) -> u8;
    /// Reads the headers and returns a model whose tensors are lazy.
    fn open(&self, path: &Path) -> Result<Model>;
    /// The writer, if this format can be written.
    fn writer(&self) -> Option<&dyn Writer> {
        None
    }
}

/// Options every writer understands.
#[derive(Debug, Clone, Default)]
pub struct WriteOptions {
    /// Split the output into shards of at most this many bytes of tensor
    /// data (formats that support sharding).
    pub max_shard_size: Option<u64>,
    /// Skip the fsync before the rename: the output still appears only when
    /// complete, but may not survive a power loss (what `cp` does).
    pub no_fsync: bool,
    /// A model whose structure the output takes, its weights replaced by
    /// name (ONNX: the graph of this `.onnx`).
    pub template: Option<PathBuf>,
    /// With a template: keep the template's values for tensors the input
    /// lacks instead of refusing.
    pub allow_missing: bool,
    /// Formats that can keep tensor data in a side file (ONNX external
    /// data) put it there.
    pub external_data: bool,
}

/// The writing side of a format.
pub trait Writer: Sync {
    /// Checks that `model` can be written and fixes the whole layout, before
    /// any byte is written.
    fn plan(&self, model: &Model, dest: &Path, opts: &WriteOptions) -> Result<Box<dyn WritePlan>>;
}

/// A fully planned output.
pub trait WritePlan {
    /// Every file this plan will create.
    fn outputs(&self) -> Vec<PathBuf>;
    /// Tensor bytes to be written (for progress).
    fn data_bytes(&self) -> u64;
    /// Writes all outputs to temporary files and renames them into place
    /// only when every one of them is complete and synced.
    fn write(self: Box<Self>, progress: &dyn Progress) -> Result<()>;
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
