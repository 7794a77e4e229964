//! # modelconv-ir
//!
//! The common tensor IR of modelconv and the contract every format plugin
//! implements. It has no knowledge of any format.
//!
//! - [`DType`]: plain element types and ggml block types with their sizes.
//! - [`TensorInfo`], [`Tensor`], [`DataSource`]: tensors are known by their
//!   headers; their bytes are pulled lazily, chunk by chunk.
//! - [`Metadata`], [`Value`]: ordered, typed metadata.
//! - [`Model`]: metadata + ordered tensors.
//! - [`Format`], [`Writer`], [`WritePlan`]: detect / open / plan / write.
//! - [`OutputFile`]: atomic output (temp file, fsync, rename).

mod cast;
mod dtype;
mod error;
pub mod folder;
mod format;
pub mod hf_index;
mod metadata;
mod model;
mod output;
pub mod scan;
mod tensor;
pub mod view;
pub mod wire;

pub use cast::{can_cast, convert, decoded, f8_e4m3_to_f32, f8_e5m2_to_f32, CastSource};
pub use dtype::{numel, DType, ALL_DTYPES};
pub use error::{Error, Result};
pub use format::{
    ChangedTensor, Details, Format, FormatOption, HeaderEdit, KeptTensor, MetadataEditor, NoProgress, OpenOptions,
    OptionValue, Options, Probe, Progress, Report, Rewrite, RewriteRequest, Rewriter, Stage, WriteOptions, WritePlan,
    Writer, HEAD_LEN,
};
pub use metadata::{
    float_json, human_bytes, printable, Array, Metadata, Strings, Typed, TypedMetadata, Value, ValueType,
    MAX_METADATA_ENTRIES, TYPES_KEY,
};
pub use model::Model;
pub use output::{
    check_interrupt, check_replaceable, commit_all, is_stream, padding, remove_live_temps, request_interrupt, FileBody,
    OneFilePlan, OutputFile, STDIO,
};
pub use tensor::{open_regular, DataSource, FileRange, Location, MemSource, SharedFile, Tensor, TensorInfo};
