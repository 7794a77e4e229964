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
pub mod report;
mod scan;
pub mod summary;
pub mod tensor;
pub mod write;

pub use fill::fill;
pub use read::{constant_values, Initializer, OnnxFile};

use modelconv_ir::{
    DType, Details, Error, Format, FormatOption, Metadata, Model, OpenOptions, OptionValue, Probe, Progress, Result,
    Rewrite, RewriteRequest, Rewriter, Stage, Value, WriteOptions, WritePlan, Writer,
};
use std::path::{Path, PathBuf};

pub const NAME: &str = "onnx";

pub struct Onnx;
pub static FORMAT: Onnx = Onnx;

/// Opens `path`; with `constants`, the tensors of `Constant` nodes are
/// listed after the initializers.
pub fn open_with(path: &Path, constants: bool) -> Result<Model> {
    let f = std::sync::Arc::new(OnnxFile::open(path)?);
    let mut model = model_of(&f, constants)?;
    model.source = Some(f);
    Ok(model)
}

/// Where the tensors were taken from: `tensors: 21 initializers, 3 Constant nodes`.
fn weights_note(inits: &[read::Initializer]) -> String {
    use read::Origin::*;
    let parts: Vec<String> = [Initializer, Constant, SubgraphInitializer, SubgraphConstant]
        .into_iter()
        .filter_map(|o| {
            let n = inits.iter().filter(|i| i.origin == o).count();
            let what = o.describe();
            (n > 0).then(|| format!("{n} {what}{}", if n == 1 { "" } else { "s" }))
        })
        .collect();
    if parts.is_empty() {
        "tensors: none (no initializers or Constant nodes of a type the IR holds)".to_string()
    } else {
        format!("tensors from {}", parts.join(", "))
    }
}

/// The IR model of an opened file (see [`open_with`]).
pub fn model_of(f: &OnnxFile, constants: bool) -> Result<Model> {
    let path = f.path.as_path();
    let (mut inits, _skipped) = f.tensors(constants)?;
    let mut notes = Vec::new();
    // A model whose weights are all Constant nodes (exporters that fold
    // them, PP-OCR, silero-vad) gives them by default: its initializers
    // alone would be an empty conversion.
    if !constants && inits.is_empty() && f.has_constant_weights()? {
        inits = f.tensors(true)?.0;
        notes.push(
            "this model has no initializers: its weights are Constant nodes, taken as --all takes them".to_string(),
        );
    }
    notes.push(weights_note(&inits));
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
        declared_order: true,
        notes,
        ..Default::default()
    };
    model.check_unique_names().map_err(|e| e.in_file(path))?;
    Ok(model)
}

/// `--template`: the graph the output takes.
const TEMPLATE: &str = "template";
/// `--external-data`: tensors of 1 KiB or more in a side file.
const EXTERNAL_DATA: &str = "external-data";
/// `--embeddings` / `--no-embeddings`: whether Gather data is quantized.
const EMBEDDINGS: &str = "embeddings";

/// The options the ONNX plugin takes (`--NAME` on the command line).
const OPTIONS: &[FormatOption] = &[
    FormatOption {
        name: TEMPLATE,
        stages: &[Stage::Write],
        value: OptionValue::Value("MODEL.onnx"),
        help: "the model whose graph the output takes; its initializers are replaced by name from the input (same dtype and shape)",
    },
    FormatOption {
        name: "allow-missing",
        stages: &[Stage::Write],
        value: OptionValue::Flag,
        help: "with --template: keep the template's value for initializers the input lacks",
    },
    FormatOption {
        name: EXTERNAL_DATA,
        stages: &[Stage::Write, Stage::Quantize],
        value: OptionValue::Flag,
        help: "put tensors of 1 KiB or more in OUTPUT.data beside it, at 4096-byte aligned offsets (always done when the model would pass protobuf's 2 GiB limit)",
    },
    FormatOption {
        name: "keep-io-types",
        stages: &[Stage::Cast],
        value: OptionValue::Bool,
        help: "with --dtype F16: keep FLOAT graph inputs and outputs, with Cast nodes at the edges [default: true]",
    },
    FormatOption {
        name: "block-size",
        stages: &[Stage::Quantize],
        value: OptionValue::Value("N"),
        help: "--type INT8|INT4: elements per scale along the reduction axis (a power of two ≥ 16), or 0 for one scale per output channel [default: 32]",
    },
    FormatOption {
        name: EMBEDDINGS,
        stages: &[Stage::Quantize],
        value: OptionValue::Switch("no-embeddings"),
        help: "also quantize Gather data (embedding tables), the default, as onnxruntime's quantize_dynamic does; --no-embeddings leaves them as they are",
    },
    FormatOption {
        name: "keep-opset",
        stages: &[Stage::Quantize],
        value: OptionValue::Flag,
        help: "never move the model to opset 21 (INT8 then uses per-channel scales, INT4 com.microsoft.MatMulNBits)",
    },
];

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
    fn score(&self, probe: &Probe) -> u8 {
        match probe.head {
            head if looks_like_model_proto(head) => 45,
            _ if probe.extension().as_deref() == Some("onnx") && probe.is_file => 5,
            _ => 0,
        }
    }
    fn open(&self, path: &Path, opts: &OpenOptions) -> Result<Model> {
        open_with(path, opts.all)
    }
    fn options(&self) -> &'static [FormatOption] {
        OPTIONS
    }
    fn details(&self, model: &Model, opts: &OpenOptions) -> Result<Option<Details>> {
        let Some(f) = model.source.as_ref().and_then(|s| s.downcast_ref::<OnnxFile>()) else {
            return Ok(None);
        };
        let s = summary::summarize(f, opts.all)?;
        Ok(Some(Details {
            key: NAME,
            json: report::summary_json(&s),
            text: report::summary_text(&model.path, &s),
            replaces_table: true,
        }))
    }
    fn writer(&self) -> Option<&dyn Writer> {
        Some(&OnnxWriter)
    }
    fn rewriter(&self) -> Option<&dyn Rewriter> {
        Some(&OnnxRewriter)
    }
    fn scanner(&self) -> Option<&dyn modelconv_ir::scan::Scanner> {
        Some(&scan::SCANNER)
    }
}

/// No magic: a ModelProto normally opens with ir_version (field 1,
/// varint, 3..=20) followed by another ModelProto field's key.
fn looks_like_model_proto(head: &[u8]) -> bool {
    let keys = [0x12, 0x1a, 0x22, 0x28, 0x32, 0x3a, 0x42, 0x72];
    matches!(head, [0x08, v, k, ..] if (3..=20).contains(v) && keys.contains(k))
}

struct OnnxWriter;

/// The template of an ONNX output: `--template`, else the input itself
/// when it is ONNX.
pub fn template_of(model: &Model, opts: &WriteOptions) -> Result<PathBuf> {
    match (opts.options.get(TEMPLATE), model.format) {
        (Some(t), _) => Ok(PathBuf::from(t)),
        (None, NAME) => Ok(model.path.clone()),
        (None, _) => Err(Error::invalid(
            "ONNX output needs a graph: pass --template model.onnx (its initializers are replaced by name)",
        )),
    }
}

/// A plan that also names the files it reads (template, external data).
struct WithInputs {
    plan: write::OnnxPlan,
    inputs: Vec<PathBuf>,
}

impl WritePlan for WithInputs {
    fn outputs(&self) -> Vec<PathBuf> {
        self.plan.outputs()
    }
    fn inputs(&self) -> Vec<PathBuf> {
        self.inputs.clone()
    }
    fn data_bytes(&self) -> u64 {
        self.plan.data_bytes()
    }
    fn write(self: Box<Self>, progress: &dyn Progress) -> Result<()> {
        Box::new(self.plan).write(progress)
    }
}

impl Writer for OnnxWriter {
    fn plan(&self, model: &Model, dest: &Path, opts: &WriteOptions) -> Result<Box<dyn WritePlan>> {
        let template = OnnxFile::open(&template_of(model, opts)?)?;
        let out = fill(&template, model, opts.options.flag("allow-missing"))?;
        let plan = write::plan(out, dest, opts.options.flag(EXTERNAL_DATA), opts)?;
        Ok(Box::new(WithInputs {
            plan,
            inputs: template.input_files(),
        }))
    }
}

struct OnnxRewriter;

fn is_onnx_path(p: &Path) -> bool {
    p.extension().is_some_and(|e| e.eq_ignore_ascii_case("onnx"))
}

impl Rewriter for OnnxRewriter {
    fn rewrite(
        &self,
        input: &Path,
        request: &RewriteRequest,
        dest: Option<&Path>,
        opts: &WriteOptions,
    ) -> Result<Option<Rewrite>> {
        let o = &opts.options;
        match request {
            // The output is the template's graph: the writer fills it with
            // the input's tensors, cast by the pipeline.
            RewriteRequest::Cast(_) if o.get(TEMPLATE).is_some() => Ok(None),
            RewriteRequest::Cast(DType::F16) => {
                let dest = dest.ok_or_else(|| Error::internal("the fp16 rewrite needs an output path"))?;
                let f = OnnxFile::open(input)?;
                let fo = fp16::Fp16Options {
                    keep_io_types: o.get("keep-io-types") != Some("false"),
                    ..Default::default()
                };
                let (out, report) = fp16::to_fp16(&f, &fo)?;
                let plan = write::plan(out, dest, o.flag(EXTERNAL_DATA), opts)?;
                let forced = plan.forced_external;
                Ok(Some(Rewrite {
                    plan: Box::new(WithInputs {
                        plan,
                        inputs: f.input_files(),
                    }),
                    report: Box::new(move || report::fp16_report(&report, forced)),
                }))
            }
            RewriteRequest::Cast(other) => Err(Error::invalid(format!(
                "an ONNX graph is typed: --dtype F16 is its fp16 rewrite; {other} is not offered (weight-only INT8/INT4 is `modelconv quantize MODEL.onnx --type INT8`)"
            ))),
            RewriteRequest::Quantize(ty) => {
                let qty = match ty.to_ascii_uppercase().as_str() {
                    "INT8" | "Q8" => quant::QType::Int8,
                    "INT4" | "Q4" => quant::QType::Int4,
                    _ => return Ok(None),
                };
                if dest.is_some_and(|d| !is_onnx_path(d)) {
                    return Err(Error::invalid("an ONNX model is quantized to ONNX: give -o a .onnx name"));
                }
                let block_size = match o.get("block-size") {
                    Some(v) => v
                        .parse()
                        .map_err(|_| Error::invalid(format!("--block-size {v}: expected a number")))?,
                    None => 32,
                };
                let f = OnnxFile::open(input)?;
                let qo = quant::QuantOptions {
                    ty: qty,
                    block_size,
                    // Gather tables too, as onnxruntime's quantize_dynamic does.
                    embeddings: o.get(EMBEDDINGS) != Some("false"),
                    upgrade_opset: !o.flag("keep-opset"),
                    ..Default::default()
                };
                let (out, report) = quant::quantize(&f, &qo)?;
                if report.rows.is_empty() {
                    let why: String = report
                        .skipped
                        .iter()
                        .map(|(n, why)| if n.is_empty() { format!("\n  {why}") } else { format!("\n  {n}: {why}") })
                        .collect();
                    return Err(Error::invalid(format!(
                        "{}: no MatMul/Gemm weight initializer to quantize{}{why}",
                        input.display(),
                        if qo.embeddings { " (nor Gather data)" } else { "" },
                    )));
                }
                let dest = dest.map_or_else(
                    || {
                        let stem = input
                            .file_stem()
                            .map(|s| s.to_string_lossy().into_owned())
                            .unwrap_or_else(|| "model".into());
                        input.with_file_name(format!("{stem}-{}.onnx", qty.name().to_ascii_lowercase()))
                    },
                    Path::to_path_buf,
                );
                let plan = write::plan(out, &dest, o.flag(EXTERNAL_DATA), opts)?;
                let name = qty.name();
                Ok(Some(Rewrite {
                    plan: Box::new(WithInputs {
                        plan,
                        inputs: f.input_files(),
                    }),
                    report: Box::new(move || report::quant_report(&report, name)),
                }))
            }
        }
    }
}
