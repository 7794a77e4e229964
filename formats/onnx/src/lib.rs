//! # modelconv-onnx
//!
//! ONNX models for modelconv. The protobuf types are generated at build time
//! from the vendored `proto/onnx.proto` (protox + prost-build, no `protoc`);
//! `bytes` fields are `Bytes`, so `raw_data` borrows from the memory map.
//!
//! - [`OnnxFile`]: reads a model; initializers of every data type (raw,
//!   typed fields, external data confined to the model's folder) become
//!   lazy IR tensors.
//! - [`write`]: streams a model out, with optional external data.
//! - [`fill`]: a template graph with its weights replaced by name.
//! - [`fp16`]: the float32 → float16 rewrite.
//! - [`quant`]: weight-only INT8/INT4 quantization with DequantizeLinear
//!   (or `com.microsoft.MatMulNBits`).
//! - [`summary`]: what `inspect` shows.

pub mod proto {
    #![allow(clippy::all, missing_docs, rustdoc::all)]
    include!(concat!(env!("OUT_DIR"), "/onnx.rs"));
}

mod fill;
pub mod fp16;
mod graph;
pub mod quant;
mod read;
pub mod summary;
pub mod tensor;
pub mod write;

pub use fill::fill;
pub use read::{constant_values, Initializer, OnnxFile};

use modelconv_ir::{Error, Format, Metadata, Model, Result, Value, WriteOptions, WritePlan, Writer};
use std::path::{Path, PathBuf};

pub const NAME: &str = "onnx";

pub struct Onnx;
pub static FORMAT: Onnx = Onnx;

/// Opens `path`; with `constants`, the tensors of `Constant` nodes are
/// listed after the initializers.
pub fn open_with(path: &Path, constants: bool) -> Result<Model> {
    model_of(&OnnxFile::open(path)?, constants)
}

/// The IR model of an opened file (see [`open_with`]).
pub fn model_of(f: &OnnxFile, constants: bool) -> Result<Model> {
    let path = f.path.as_path();
    let (inits, _skipped) = f.tensors(constants)?;
    let m = &f.model;
    let mut metadata = Metadata::new();
    if let Some(v) = m.ir_version {
        metadata.set("onnx.ir_version", Value::I64(v));
    }
    for (k, v) in [
        ("onnx.producer_name", &m.producer_name),
        ("onnx.producer_version", &m.producer_version),
    ] {
        if let Some(v) = v {
            metadata.set(k, Value::String(v.clone()));
        }
    }
    let opsets: Vec<String> = m
        .opset_import
        .iter()
        .map(|o| {
            format!(
                "{}:{}",
                summary::domain_name(o.domain.as_deref()),
                o.version.unwrap_or(0)
            )
        })
        .collect();
    metadata.set("onnx.opset_import", Value::String(opsets.join(",")));
    for p in &m.metadata_props {
        if let (Some(k), Some(v)) = (&p.key, &p.value) {
            metadata.set(k.clone(), Value::String(v.clone()));
        }
    }
    let model = Model {
        format: NAME,
        path: path.to_path_buf(),
        metadata,
        tensors: inits.into_iter().map(|i| i.tensor).collect(),
    };
    model.check_unique_names().map_err(|e| e.in_file(path))?;
    Ok(model)
}

impl Format for Onnx {
    fn name(&self) -> &'static str {
        NAME
    }
    fn description(&self) -> &'static str {
        "ONNX models: initializers (raw, typed, external data); write = a graph filled with weights (--template)"
    }
    fn extensions(&self) -> &'static [&'static str] {
        &["onnx"]
    }
    fn score(&self, head: &[u8], path: &Path) -> u8 {
        // No magic: a ModelProto normally opens with ir_version (field 1,
        // varint, 3..=20) followed by another ModelProto field key.
        let keys = [0x12, 0x1a, 0x22, 0x28, 0x32, 0x3a, 0x42, 0x72];
        match head {
            [0x08, v, k, ..] if (3..=20).contains(v) && keys.contains(k) => 45,
            _ if path.extension().is_some_and(|e| e.eq_ignore_ascii_case("onnx")) && !path.is_dir() => 5,
            _ => 0,
        }
    }
    fn open(&self, path: &Path) -> Result<Model> {
        open_with(path, false)
    }
    fn writer(&self) -> Option<&dyn Writer> {
        Some(&OnnxWriter)
    }
}

struct OnnxWriter;

/// The template of an ONNX output: `--template`, else the input itself
/// when it is ONNX.
pub fn template_of(model: &Model, opts: &WriteOptions) -> Result<PathBuf> {
    match (&opts.template, model.format) {
        (Some(t), _) => Ok(t.clone()),
        (None, NAME) => Ok(model.path.clone()),
        (None, _) => Err(Error::invalid(
            "ONNX output needs a graph: pass --template model.onnx (its initializers are replaced by name)",
        )),
    }
}

impl Writer for OnnxWriter {
    fn plan(&self, model: &Model, dest: &Path, opts: &WriteOptions) -> Result<Box<dyn WritePlan>> {
        let template = OnnxFile::open(&template_of(model, opts)?)?;
        let out = fill(&template, model, opts.allow_missing)?;
        Ok(Box::new(write::plan(out, dest, opts.external_data, opts)?))
    }
}
