//! `modelconv quantize`: llama.cpp's quantization, byte-identical to
//! llama-quantize, from GGUF or any other format this build reads.

use crate::{registry, util};
use anyhow::{anyhow, bail, Result};
use modelconv_gguf::mix::{self, FileType, MixOptions, TensorDesc};
use modelconv_gguf::quants::{can_quantize, DequantizeSource, ErrorStats, QuantizeSource};
use modelconv_ir::{can_cast, CastSource, DType, DataSource, Model, Tensor, TensorInfo, Value, WriteOptions};
use serde_json::json;
use std::path::PathBuf;
use std::sync::Arc;

#[derive(clap::Args)]
#[command(group(clap::ArgGroup::new("ftype").args([
    "ty", "q4_k", "q5_k", "q3_k", "q2_k", "q6_k", "q8_0", "q4_0", "q4_1", "q5_0", "q5_1"
])))]
pub struct Args {
    /// Input model: GGUF, safetensors, … (tensor names are kept).
    input: PathBuf,
    /// Output GGUF file [default: INPUT-TYPE.gguf beside the input].
    #[arg(short, long)]
    output: Option<PathBuf>,
    /// llama.cpp file type: Q4_K_M, Q4_K_S, Q5_K_M, Q5_K_S, Q3_K_S/M/L, Q2_K, Q6_K, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, F16, BF16, F32 (Q3_K, Q4_K, Q5_K mean the _M mixes).
    #[arg(long = "type", value_name = "TYPE")]
    ty: Option<String>,
    /// = --type Q4_K_M
    #[arg(long = "q4_k")]
    q4_k: bool,
    /// = --type Q5_K_M
    #[arg(long = "q5_k")]
    q5_k: bool,
    /// = --type Q3_K_M
    #[arg(long = "q3_k")]
    q3_k: bool,
    /// = --type Q2_K
    #[arg(long = "q2_k")]
    q2_k: bool,
    /// = --type Q6_K
    #[arg(long = "q6_k")]
    q6_k: bool,
    /// = --type Q8_0
    #[arg(long = "q8_0")]
    q8_0: bool,
    /// = --type Q4_0
    #[arg(long = "q4_0")]
    q4_0: bool,
    /// = --type Q4_1
    #[arg(long = "q4_1")]
    q4_1: bool,
    /// = --type Q5_0
    #[arg(long = "q5_0")]
    q5_0: bool,
    /// = --type Q5_1
    #[arg(long = "q5_1")]
    q5_1: bool,
    /// Quantize every eligible tensor to the type's base type (no mix rules).
    #[arg(long)]
    pure: bool,
    /// Per-tensor override REGEX=TYPE (repeatable; the first match wins), e.g. 'attn_v=Q8_0'.
    #[arg(long = "tensor-type", value_name = "REGEX=TYPE")]
    tensor_type: Vec<String>,
    /// Type for output.weight.
    #[arg(long, value_name = "TYPE")]
    output_tensor_type: Option<String>,
    /// Type for token_embd.weight.
    #[arg(long, value_name = "TYPE")]
    token_embedding_type: Option<String>,
    /// Leave output.weight as it is.
    #[arg(long)]
    leave_output_tensor: bool,
    /// Allow quantizing tensors that are already quantized (the errors add up).
    #[arg(long)]
    allow_requantize: bool,
    /// Quantize NaN/Inf values and overflowing scales instead of refusing.
    #[arg(long)]
    allow_nonfinite: bool,
    /// Worker threads [default: all cores].
    #[arg(long, value_name = "N")]
    threads: Option<usize>,
    /// Read the input as this format instead of detecting it.
    #[arg(long, value_name = "FORMAT")]
    from: Option<String>,
    /// Print the report as one JSON document on stdout.
    #[arg(long)]
    json: bool,
    /// Do not fsync the output before renaming it into place.
    #[arg(long)]
    no_fsync: bool,
    /// ONNX (--type INT8|INT4): elements per scale along the reduction axis (a power of two ≥ 16), or 0 for
    /// one scale per output channel.
    #[arg(long, value_name = "N", default_value_t = 32)]
    block_size: u64,
    /// ONNX: also quantize Gather data (embedding tables).
    #[arg(long)]
    embeddings: bool,
    /// ONNX: never move the model to opset 21 (INT8 then uses per-channel scales, INT4 com.microsoft.MatMulNBits).
    #[arg(long)]
    keep_opset: bool,
    /// ONNX: put tensors of 1 KiB or more in OUTPUT.data beside the model (always when it would pass 2 GiB).
    #[arg(long)]
    external_data: bool,
}

impl Args {
    fn file_type(&self) -> Result<FileType> {
        let shorthand = [
            (self.q4_k, "Q4_K_M"),
            (self.q5_k, "Q5_K_M"),
            (self.q3_k, "Q3_K_M"),
            (self.q2_k, "Q2_K"),
            (self.q6_k, "Q6_K"),
            (self.q8_0, "Q8_0"),
            (self.q4_0, "Q4_0"),
            (self.q4_1, "Q4_1"),
            (self.q5_0, "Q5_0"),
            (self.q5_1, "Q5_1"),
        ];
        let name = match (&self.ty, shorthand.iter().find(|(on, _)| *on)) {
            (Some(t), _) => t.as_str(),
            (None, Some((_, n))) => n,
            (None, None) => bail!("say which type: --type Q4_K_M (or --q4_k, --q8_0, …)"),
        };
        let known: Vec<&str> = mix::FILE_TYPES.iter().map(|f| f.name).collect();
        mix::file_type(name).ok_or_else(|| anyhow!("unknown type '{name}' (known: {})", known.join(", ")))
    }
}

/// A tensor type named on the command line: a quantized type we can write, or a float.
fn tensor_type(s: &str) -> Result<DType> {
    let d = DType::from_name(s).ok_or_else(|| anyhow!("unknown tensor type '{s}'"))?;
    if !(can_quantize(d) && d != DType::Q8_K || matches!(d, DType::F32 | DType::F16 | DType::BF16)) {
        bail!("tensor type {d} cannot be produced (use Q2_K…Q6_K, Q4_0…Q8_0, F16, BF16 or F32)");
    }
    Ok(d)
}

struct Row {
    name: String,
    from: DType,
    to: DType,
    shape: Vec<u64>,
    bytes: u64,
    stats: Option<Arc<ErrorStats>>,
}

/// The source of `t` converted to `to`: quantized, cast, or dequantized first.
fn convert_source(t: &Tensor, to: DType, args: &Args, stats: &Option<Arc<ErrorStats>>) -> Result<Arc<dyn DataSource>> {
    let from = t.info.dtype;
    let mut src = t.data.clone();
    let mut cur = from;
    if from.is_quantized() {
        if !args.allow_requantize {
            bail!(
                "tensor '{}' is already {from}; quantizing it again to {to} compounds the error of both. Start from F32/F16/BF16 weights, or pass --allow-requantize",
                t.info.name
            );
        }
        src = Arc::new(DequantizeSource::new(src, from)?);
        cur = DType::F32;
    }
    if to.is_quantized() {
        let mut q = QuantizeSource::new(src, cur, to, args.allow_nonfinite)
            .map_err(|e| anyhow!("tensor '{}': {e}", t.info.name))?;
        if let Some(s) = stats {
            q = q.with_stats(s.clone());
        }
        return Ok(Arc::new(q));
    }
    if cur == to {
        return Ok(src);
    }
    if !can_cast(cur, to) {
        bail!("tensor '{}': cannot convert {from} to {to}", t.info.name);
    }
    Ok(Arc::new(CastSource::new(src, cur, to)?))
}

pub fn run(args: Args, quiet: bool) -> Result<u8> {
    let onnx_input =
        registry::input_format(&args.input, args.from.as_deref()).is_ok_and(|f| f.name() == modelconv_onnx::NAME);
    if onnx_input {
        let ty = args
            .ty
            .clone()
            .ok_or_else(|| anyhow!("say which type: --type INT8 or --type INT4 (ONNX weight-only quantization)"))?;
        if args.output.as_ref().is_some_and(|o| !crate::onnx::is_onnx_path(o)) {
            bail!("an ONNX model is quantized to ONNX: give -o a .onnx name");
        }
        return crate::onnx::quantize(
            crate::onnx::QuantArgs {
                input: args.input,
                output: args.output,
                ty,
                block_size: args.block_size,
                embeddings: args.embeddings,
                keep_opset: args.keep_opset,
                external_data: args.external_data,
                json: args.json,
                no_fsync: args.no_fsync,
            },
            quiet,
        );
    }
    let ft = args.file_type()?;
    if let Some(n) = args.threads {
        rayon::ThreadPoolBuilder::new()
            .num_threads(n.max(1))
            .build_global()
            .ok();
    }
    let mut opts = MixOptions {
        pure: args.pure,
        leave_output_tensor: args.leave_output_tensor,
        output_tensor_type: args.output_tensor_type.as_deref().map(tensor_type).transpose()?,
        token_embedding_type: args.token_embedding_type.as_deref().map(tensor_type).transpose()?,
        ..Default::default()
    };
    for spec in &args.tensor_type {
        let (re, ty) = spec
            .split_once('=')
            .ok_or_else(|| anyhow!("--tensor-type '{spec}': expected REGEX=TYPE"))?;
        let re = regex::Regex::new(re).map_err(|e| anyhow!("--tensor-type '{spec}': {e}"))?;
        opts.overrides.push((re, tensor_type(ty)?));
    }
    let model = registry::open(&args.input, args.from.as_deref())?;
    let inputs = util::input_files(&model);
    let output = args.output.clone().unwrap_or_else(|| {
        let stem = args
            .input
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "model".into());
        args.input.with_file_name(format!("{stem}-{}.gguf", ft.name))
    });

    // llama-quantize visits and writes tensors by layer, then name.
    let mut tensors = model.tensors.clone();
    tensors.sort_by(|a, b| mix::llama_order(&a.info.name, &b.info.name));
    let descs: Vec<TensorDesc> = tensors.iter().map(|t| TensorDesc::of(&t.info)).collect();
    let types = mix::choose_types(ft, &opts, &model.metadata, &descs)?;

    let mut out = Model {
        format: modelconv_gguf::NAME,
        path: output.clone(),
        metadata: model.metadata.clone(),
        tensors: Vec::new(),
    };
    // As llama.cpp's gguf_set_val: an existing key is removed and appended.
    for (key, value) in [("general.quantization_version", 2), ("general.file_type", ft.id)] {
        out.metadata.remove(key);
        out.metadata.set(key, Value::U32(value));
    }
    let mut rows = Vec::new();
    for (t, &to) in tensors.iter().zip(&types) {
        let stats = to.is_quantized().then(|| Arc::new(ErrorStats::default()));
        let data = if to == t.info.dtype {
            t.data.clone()
        } else {
            convert_source(t, to, &args, &stats)?
        };
        let info = TensorInfo::new(t.info.name.clone(), to, t.info.shape.clone())?;
        rows.push(Row {
            name: info.name.clone(),
            from: t.info.dtype,
            to,
            shape: info.shape.clone(),
            bytes: info.byte_len,
            stats,
        });
        out.tensors.push(Tensor::new(info, data)?);
    }

    let opts = WriteOptions {
        max_shard_size: None,
        no_fsync: args.no_fsync,
        ..Default::default()
    };
    util::write_model(&modelconv_gguf::FORMAT, &out, &output, &opts, &inputs, quiet)?;
    report(&rows, &model, &output, ft, &args, quiet);
    Ok(0)
}

fn report(rows: &[Row], source: &Model, output: &std::path::Path, ft: FileType, args: &Args, quiet: bool) {
    let params: u64 = rows.iter().map(|r| r.shape.iter().product::<u64>()).sum();
    let bytes: u64 = rows.iter().map(|r| r.bytes).sum();
    let bpw = if params > 0 {
        bytes as f64 * 8.0 / params as f64
    } else {
        0.0
    };
    let rmse = |r: &Row| r.stats.as_ref().map(|s| s.relative_rmse());
    if args.json {
        let tensors: Vec<_> = rows
            .iter()
            .map(|r| {
                json!({
                    "name": r.name, "from": r.from.name(), "type": r.to.name(), "shape": r.shape,
                    "bytes": r.bytes, "relative_rmse": rmse(r).map(util::json_f64),
                })
            })
            .collect();
        util::print_json(&json!({
            "input": source.path.display().to_string(),
            "output": output.display().to_string(),
            "file_type": ft.name,
            "pure": args.pure,
            "tensors": tensors,
            "parameters": params,
            "bytes": bytes,
            "source_bytes": source.data_bytes(),
            "bits_per_weight": bpw,
        }));
        return;
    }
    let w = rows.iter().map(|r| r.name.len()).max().unwrap_or(4).clamp(4, 48);
    println!(
        "{:<w$}  {:<6} {:<20} {:>12}  REL.RMSE",
        "NAME", "TYPE", "SHAPE", "BYTES"
    );
    for r in rows {
        let e = rmse(r).map_or("-".to_string(), |v| format!("{v:.5}"));
        println!(
            "{:<w$}  {:<6} {:<20} {:>12}  {e}",
            r.name,
            r.to.name(),
            format!("{:?}", r.shape),
            r.bytes
        );
    }
    println!(
        "{}: {} ({}), {} → {}, {bpw:.2} bits per weight",
        output.display(),
        ft.name,
        if args.pure { "pure" } else { "llama.cpp mix" },
        util::human_bytes(source.data_bytes()),
        util::human_bytes(bytes)
    );
    if !quiet {
        eprintln!("wrote {}", output.display());
    }
}
