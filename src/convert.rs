//! `modelconv convert`: reader → select/rename/cast → writer plan → write.

use crate::{registry, util};
use anyhow::{anyhow, bail, Result};
use modelconv_gguf::quants::{self, DequantizeSource, QuantizeSource};
use modelconv_ir::{can_cast, CastSource, DType, DataSource, Model, Tensor, TensorInfo, WriteOptions};
use regex::Regex;
use std::path::PathBuf;
use std::sync::Arc;

#[derive(clap::Args)]
pub struct Args {
    /// Input: a model file, an index json, or a folder of shards.
    input: PathBuf,
    /// Output file; its extension picks the format unless --to is given.
    output: PathBuf,
    /// Output format (see `modelconv formats`).
    #[arg(long, value_name = "FORMAT")]
    to: Option<String>,
    /// Read the input as this format instead of detecting it.
    #[arg(long, value_name = "FORMAT")]
    from: Option<String>,
    /// Cast floating-point tensors to F32, F16, BF16 or F64 (round to nearest even; integer tensors are
    /// kept; quantized tensors are dequantized), or quantize them to a ggml type (Q8_0, Q4_K, …: tensors of
    /// 2+ dimensions whose rows fill whole blocks; GGUF output only).
    #[arg(long, value_name = "TYPE")]
    dtype: Option<String>,
    /// Keep only tensors whose name matches (repeatable; any match keeps).
    #[arg(long, value_name = "REGEX")]
    include: Vec<Regex>,
    /// Drop tensors whose name matches (repeatable; applied after --include).
    #[arg(long, value_name = "REGEX")]
    exclude: Vec<Regex>,
    /// Rename tensors: REGEX=REPLACEMENT, with $1 for groups (repeatable, applied in order).
    #[arg(long, value_name = "REGEX=REPLACEMENT")]
    rename: Vec<String>,
    /// Split the output into shards of at most this size (e.g. 5GB, 500MB, 2GiB): Hugging Face layout with an index json.
    #[arg(long, value_name = "SIZE", value_parser = util::parse_size)]
    max_shard_size: Option<u64>,
    /// Do not fsync the output before renaming it into place: faster, still
    /// never a partial file, but not guaranteed to survive a power loss.
    #[arg(long)]
    no_fsync: bool,
    /// ONNX output: the model whose graph the output takes; its initializers are replaced by name from the
    /// input (same dtype and shape).
    #[arg(long, value_name = "MODEL.onnx")]
    template: Option<PathBuf>,
    /// With --template: keep the template's value for initializers the input lacks.
    #[arg(long)]
    allow_missing: bool,
    /// ONNX output: put tensors of 1 KiB or more in OUTPUT.data beside it, at 4096-byte aligned offsets
    /// (always done when the model would pass protobuf's 2 GiB limit).
    #[arg(long)]
    external_data: bool,
    /// ONNX input: also take the values of Constant nodes (named by their output).
    #[arg(long)]
    all: bool,
    /// ONNX output with --dtype F16: keep FLOAT graph inputs and outputs, with Cast nodes at the edges.
    #[arg(long, value_name = "BOOL", default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    keep_io_types: bool,
}

/// Selection, renaming and casting shared by the commands that write models.
#[derive(Default)]
pub struct Transforms {
    pub include: Vec<Regex>,
    pub exclude: Vec<Regex>,
    pub rename: Vec<(Regex, String)>,
    pub dtype: Option<DType>,
}

pub fn parse_renames(specs: &[String]) -> Result<Vec<(Regex, String)>> {
    specs
        .iter()
        .map(|s| {
            let (from, to) = s
                .split_once('=')
                .ok_or_else(|| anyhow!("--rename '{s}': expected REGEX=REPLACEMENT"))?;
            let re = Regex::new(from).map_err(|e| anyhow!("--rename '{s}': {e}"))?;
            Ok((re, to.to_string()))
        })
        .collect()
}

pub fn parse_cast_dtype(s: &str) -> Result<DType> {
    let d = DType::from_name(s)
        .ok_or_else(|| anyhow!("--dtype {s}: unknown type (use F32, F16, BF16, F64 or a ggml type)"))?;
    if d.is_quantized() && !(quants::can_quantize(d) && d != DType::Q8_K) {
        bail!("--dtype {s}: quantizing to {d} is not supported (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K…Q6_K are)");
    }
    if !d.is_quantized() && !matches!(d, DType::F32 | DType::F16 | DType::BF16 | DType::F64) {
        bail!("--dtype {s}: casts go to F32, F16, BF16 or F64");
    }
    Ok(d)
}

/// The source of `t` converted to `to`, or `None` when `t` stays as it is
/// (integer tensors; tensors too small or oddly shaped to quantize).
fn converted(t: &Tensor, to: DType) -> Result<Option<Arc<dyn DataSource>>> {
    let from = t.info.dtype;
    if from == to {
        return Ok(None);
    }
    if from.is_quantized() {
        if to.is_quantized() {
            bail!(
                "tensor '{}' is {from}; requantizing is done by `modelconv quantize --allow-requantize`",
                t.info.name
            );
        }
        let f32s: Arc<dyn DataSource> = Arc::new(DequantizeSource::new(t.data.clone(), from)?);
        return Ok(Some(if to == DType::F32 {
            f32s
        } else {
            Arc::new(CastSource::new(f32s, DType::F32, to)?)
        }));
    }
    if to.is_quantized() {
        let row = t.info.shape.last().copied().unwrap_or(0);
        let quantizable = t.info.shape.iter().filter(|&&d| d > 1).count() >= 2 && row % to.block_size() == 0;
        if !quantizable || !can_cast(from, DType::F32) {
            return Ok(None);
        }
        return Ok(Some(Arc::new(QuantizeSource::new(t.data.clone(), from, to, false)?)));
    }
    if !can_cast(from, to) {
        return Ok(None);
    }
    Ok(Some(Arc::new(CastSource::new(t.data.clone(), from, to)?)))
}

impl Transforms {
    pub fn apply(&self, model: &mut Model) -> Result<()> {
        model.tensors.retain(|t| {
            let name = &t.info.name;
            (self.include.is_empty() || self.include.iter().any(|r| r.is_match(name)))
                && !self.exclude.iter().any(|r| r.is_match(name))
        });
        for t in &mut model.tensors {
            for (re, to) in &self.rename {
                t.info.name = re.replace_all(&t.info.name, to.as_str()).into_owned();
            }
            if let Some(to) = self.dtype {
                if let Some(src) = converted(t, to)? {
                    t.info = TensorInfo::new(t.info.name.clone(), to, t.info.shape.clone())?;
                    t.data = src;
                    t.location = None;
                }
            }
        }
        model.check_unique_names().map_err(|e| anyhow!("after renaming: {e}"))?;
        Ok(())
    }
}

pub fn run(args: Args, quiet: bool) -> Result<u8> {
    let transforms = Transforms {
        include: args.include,
        exclude: args.exclude,
        rename: parse_renames(&args.rename)?,
        dtype: args.dtype.as_deref().map(parse_cast_dtype).transpose()?,
    };
    let out_format = registry::output_format(&args.output, args.to.as_deref())?;
    let opts = WriteOptions {
        max_shard_size: args.max_shard_size,
        no_fsync: args.no_fsync,
        template: args.template.clone(),
        allow_missing: args.allow_missing,
        external_data: args.external_data,
    };
    if out_format.name() != modelconv_onnx::NAME {
        for (set, flag) in [
            (args.template.is_some(), "--template"),
            (args.allow_missing, "--allow-missing"),
            (args.external_data, "--external-data"),
        ] {
            if set {
                bail!(
                    "{flag} applies to ONNX output; {} is {}",
                    args.output.display(),
                    out_format.name()
                );
            }
        }
    }
    if out_format.name() == modelconv_onnx::NAME && transforms.dtype.is_some() {
        // An ONNX graph is typed: a cast is the fp16 rewrite of the graph.
        if transforms.dtype != Some(DType::F16) || args.template.is_some() {
            bail!("ONNX output takes --dtype F16 (the fp16 rewrite of an ONNX input) only; weight-only INT8/INT4 is `modelconv quantize MODEL.onnx --type INT8`");
        }
        let input_format = registry::input_format(&args.input, args.from.as_deref())?.name();
        if input_format != modelconv_onnx::NAME {
            bail!(
                "--dtype F16 to ONNX rewrites an ONNX model; {} is {input_format}",
                args.input.display()
            );
        }
        if !(transforms.include.is_empty() && transforms.exclude.is_empty() && transforms.rename.is_empty()) {
            bail!("the fp16 rewrite keeps every initializer: --include/--exclude/--rename do not apply");
        }
        return crate::onnx::fp16(&args.input, &args.output, args.keep_io_types, &opts, quiet);
    }
    let mut model = if args.all {
        let from = registry::input_format(&args.input, args.from.as_deref())?.name();
        if from != modelconv_onnx::NAME {
            bail!(
                "--all takes Constant values of an ONNX input; {} is {from}",
                args.input.display()
            );
        }
        modelconv_onnx::open_with(&args.input, true)?
    } else {
        registry::open(&args.input, args.from.as_deref())?
    };
    let mut inputs = util::input_files(&model);
    inputs.extend(args.template.iter().cloned());
    transforms.apply(&mut model)?;
    if model.tensors.is_empty() && !transforms.include.is_empty() {
        bail!("--include matched no tensor of {}", args.input.display());
    }
    let (n, bytes) = (model.tensors.len(), model.data_bytes());
    let outputs = util::write_model(out_format, &model, &args.output, &opts, &inputs, quiet)?;
    if !quiet {
        for o in &outputs {
            eprintln!("wrote {}", o.display());
        }
        eprintln!("{n} tensors, {} ({})", util::human_bytes(bytes), out_format.name());
    }
    Ok(0)
}
