//! `modelconv quantize`: llama.cpp's quantization, byte-identical to
//! llama-quantize, from GGUF or any other format this build reads.

use crate::report::{self, QuantizeDoc};
use crate::{registry, util};
use anyhow::{anyhow, bail, Result};
use modelconv_ggml::imatrix::Imatrix;
use modelconv_ggml::mix::{self, FileType, MixOptions};
use modelconv_ggml::quants::can_quantize;
use modelconv_ir::ChangedTensor;
use modelconv_ir::{DType, OpenOptions, RewriteRequest, Stage, Value, WriteOptions};
use modelconv_pipeline::{Quantization, Request, Row, TypeOptions};
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(clap::Args)]
#[command(group(clap::ArgGroup::new("ftype").args([
    "ty", "q4_k", "q5_k", "q3_k", "q2_k", "q6_k", "q8_0", "q4_0", "q4_1", "q5_0", "q5_1"
])))]
pub struct Args {
    /// Input model: GGUF, safetensors, … (tensor names are kept).
    input: PathBuf,
    /// llama-quantize's positional OUTPUT TYPE: answered with the form this command takes.
    #[arg(hide = true)]
    positional: Vec<String>,
    /// Output GGUF file [default: INPUT-TYPE.gguf beside the input].
    #[arg(short, long)]
    output: Option<PathBuf>,
    /// llama.cpp file type (name or llama.h id): Q4_K_M, Q4_K_S, Q5_K_M, Q5_K_S, Q3_K_S/M/L, Q2_K, Q2_K_S, Q6_K, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, IQ4_NL, IQ4_XS, IQ3_S, IQ3_M, TQ1_0, TQ2_0, MXFP4_MOE, Q1_0, Q2_0, F16, BF16, F32, COPY (tensors copied as they are); with --imatrix also IQ3_XXS, IQ3_XS, IQ2_XXS, IQ2_XS, IQ2_S, IQ2_M, IQ1_S, IQ1_M, Q2_K_S (Q3_K, Q4_K, Q5_K mean the _M mixes).
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
    /// A file of REGEX=TYPE overrides separated by spaces or newlines (after those of --tensor-type).
    #[arg(long = "tensor-type-file", value_name = "FILE")]
    tensor_type_file: Option<PathBuf>,
    /// Importance matrix made by llama-imatrix (its GGUF form or the legacy .dat).
    #[arg(long, value_name = "FILE")]
    imatrix: Option<PathBuf>,
    /// Use the importance matrix only for tensors whose name contains NAME (repeatable).
    #[arg(long = "include-weights", value_name = "NAME", conflicts_with = "exclude_weights")]
    include_weights: Vec<String>,
    /// Do not use the importance matrix for tensors whose name contains NAME (repeatable).
    #[arg(long = "exclude-weights", value_name = "NAME")]
    exclude_weights: Vec<String>,
    /// Set a metadata key in the output, KEY=TYPE:VALUE with TYPE int (written as u32, as llama-quantize does), float, bool or str (repeatable).
    #[arg(long = "override-kv", value_name = "KEY=TYPE:VALUE")]
    override_kv: Vec<String>,
    /// Drop these layers (comma-separated numbers) and renumber the rest.
    #[arg(long = "prune-layers", value_name = "L0,L1,…")]
    prune_layers: Option<String>,
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
    #[command(flatten)]
    hf: util::HfArgs,
    /// Print the report as one JSON document on stdout.
    #[arg(long)]
    json: bool,
    /// Do not fsync the output before renaming it into place.
    #[arg(long)]
    no_fsync: bool,
    /// Print the per-tensor plan (types, bytes) and the files it would write, writing nothing.
    #[arg(long)]
    dry_run: bool,
    /// Write the output in as many files as the input has (a split GGUF's shards, or one file named
    /// OUT-00001-of-00001.gguf), tensors in file order, as llama-quantize --keep-split does.
    #[arg(long)]
    keep_split: bool,
    /// Write the output even when no tensor is quantized (otherwise exit 2).
    #[arg(long)]
    allow_unchanged: bool,
    /// For a diffusion or video checkpoint: the loader the GGUF is for — `comfyui` (ComfyUI-GGUF's
    /// convert.py and patched llama-quantize) or `sd.cpp` (stable-diffusion.cpp's convert: names as
    /// they are, no metadata, its own never-quantize rules).
    #[arg(long, value_name = "LOADER", default_value = "comfyui")]
    target: String,
    /// The options of a format's own quantization (declared by the formats).
    #[command(flatten)]
    format: registry::FormatFlags<{ Stage::Quantize.bit() }>,
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
    let d = DType::from_user(s).ok_or_else(|| anyhow!("unknown tensor type '{s}'"))?;
    if !(can_quantize(d) && d != DType::Q8_K || matches!(d, DType::F32 | DType::F16 | DType::BF16)) {
        bail!(
            "tensor type {d} cannot be produced (use Q2_K…Q6_K, Q4_0…Q8_0, IQ1_S…IQ4_XS, TQ1_0, TQ2_0, MXFP4, Q1_0, Q2_0, F16, BF16 or F32)"
        );
    }
    Ok(d)
}

/// A rewrite the input's own format offers (ONNX INT8/INT4), if it takes this type.
fn try_rewrite(args: &Args, given: &Path, wopts: &WriteOptions, quiet: bool) -> Result<Option<u8>> {
    let (Some(ty), Ok(format)) = (&args.ty, registry::input_format(&args.input, args.from.as_deref())) else {
        return Ok(None);
    };
    let Some(rw) = format.rewriter() else { return Ok(None) };
    let request = RewriteRequest::Quantize(ty.clone());
    let Some(rewrite) = rw.rewrite(&args.input, &request, args.output.as_deref(), wopts)? else {
        return Ok(None);
    };
    registry::check_options(&wopts.options, format, &[Stage::Quantize], "input", &args.input)?;
    let inputs = rewrite.plan.inputs();
    let outputs = util::write_plan(rewrite.plan, std::slice::from_ref(&args.input), quiet)?;
    let r = (rewrite.report)();
    let (before, after) = (report::file_bytes(&inputs), report::file_bytes(&outputs));
    if args.json {
        let (parameters, bytes_before, bytes_after, bits_per_weight) = QuantizeDoc::totals(&r.tensors);
        report::emit(
            "quantize",
            &QuantizeDoc {
                input: report::path_text(given),
                outputs: report::written(&outputs),
                requested_type: ty.to_ascii_uppercase(),
                type_label: r.type_label.clone(),
                mix: "onnx",
                tensors: r.tensors,
                unchanged: r.unchanged,
                parameters,
                bytes_before,
                bytes_after,
                bits_per_weight,
                file_bytes_before: before,
                file_bytes_after: after,
                details: Some(&r.details),
                notes: &r.notes,
            },
        );
    } else {
        print!("{}", r.text);
        println!(
            "{}: file {} → {} ({:.0}%)",
            outputs.first().map_or(String::new(), |p| p.display().to_string()),
            util::human_bytes(before),
            util::human_bytes(after),
            100.0 * after as f64 / before.max(1) as f64
        );
    }
    if !quiet {
        for n in &r.notes {
            eprintln!("{}", util::printable(n));
        }
        for p in &outputs {
            eprintln!("wrote {}", p.display());
        }
    }
    Ok(Some(0))
}

pub fn run(mut args: Args, quiet: bool) -> Result<u8> {
    refuse_positional(&args)?;
    let given = args.input.clone();
    if let Some(o) = &args.output {
        util::check_stdout_free(args.json, o)?;
    } else if given.as_os_str() == modelconv_ir::STDIO {
        bail!("standard input has no name to derive the output's from; give -o FILE (or -o - for standard output)");
    }
    let stdin = util::Input::new(&args.input)?;
    args.input = stdin.path.clone();
    let wopts = WriteOptions {
        max_shard_size: None,
        no_fsync: args.no_fsync,
        options: args.format.options.clone(),
    };
    if let Some(code) = try_rewrite(&args, &given, &wopts, quiet)? {
        return Ok(code);
    }
    let gguf = registry::llama_format()?;
    registry::check_options(&wopts.options, gguf, &[Stage::Write], "input", &args.input)?;
    let ft = args.file_type()?;
    if let Some(n) = args.threads {
        rayon::ThreadPoolBuilder::new()
            .num_threads(n.max(1))
            .build_global()
            .ok();
    }
    let mix = mix_options(&args)?;
    let output = output_path(&args, ft, gguf)?;
    let hf = util::hf_model(&args.input, &args.hf, gguf)?;
    if hf.as_ref().is_some_and(|f| f.adapter.is_some()) {
        bail!(
            "{}: a LoRA adapter is not quantized (llama-quantize takes models); `modelconv convert` writes it \
             as F32, F16, BF16 or Q8_0 (--dtype)",
            args.input.display()
        );
    }
    if hf.as_ref().is_some_and(|f| f.mmproj) {
        bail!(
            "{}: a vision projector is not quantized (llama-quantize takes language models); `modelconv convert \
             --mmproj` writes it as F32, F16, BF16 or Q8_0 (--dtype)",
            args.input.display()
        );
    }
    let types = TypeOptions {
        allow_requantize: args.allow_requantize,
        allow_nonfinite: args.allow_nonfinite,
    };
    let mut quantization = Quantization::new(ft, mix, types);
    quantization.overrides = args
        .override_kv
        .iter()
        .map(|s| parse_override(s))
        .collect::<Result<_>>()?;
    quantization.prune_layers = prune_list(args.prune_layers.as_deref())?;
    quantization.plan_only = args.dry_run;
    quantization.keep_split = args.keep_split;
    if let Some(path) = &args.imatrix {
        let (m, keys) = load_imatrix(path, &args.include_weights, &args.exclude_weights, gguf)?;
        quantization.imatrix = m;
        quantization.overrides.extend(keys);
    }
    let (_, mut model) = registry::open(&args.input, args.from.as_deref(), &OpenOptions::default())?;
    let source_bytes = model.data_bytes();
    let inputs = util::input_files(&model);
    let diffusion = match hf {
        Some(_) => None,
        None => modelconv_diffusion::recognize(&model)?,
    };
    let diffusion_target = match args.target.as_str() {
        "comfyui" => modelconv_diffusion::Target::ComfyUi,
        "sd.cpp" => modelconv_diffusion::Target::SdCpp,
        other => bail!("--target {other}: expected comfyui or sd.cpp"),
    };
    if diffusion.is_none() && diffusion_target != modelconv_diffusion::Target::ComfyUi {
        bail!(
            "--target {}: {} is not a diffusion or video checkpoint this build recognizes (Flux, SD 1.x/SDXL, SD3, \
             AuraFlow, HiDream, Cosmos, LTX-Video, HunyuanVideo, Wan, Lumina 2)",
            args.target,
            args.input.display()
        );
    }
    if diffusion.is_some() && (args.pure || !quantization.mix.overrides.is_empty()) {
        bail!(
            "{}: an image model takes ComfyUI-GGUF's per-tensor rules; --pure and --tensor-type are for llama.cpp's",
            args.input.display()
        );
    }
    let request = Request {
        hf: hf.map(|f| (f, modelconv_llama::OutType::Source)),
        allow_unchanged: args.allow_unchanged,
        quantize: Some(quantization),
        diffusion,
        diffusion_target,
        ..Default::default()
    };
    let mut outcome = request.apply(&mut model)?;
    let mut notes = std::mem::take(&mut model.notes);
    notes.extend(util::unchanged_summary(&outcome.unchanged));
    model.format = gguf.name();
    model.path = output.clone();
    let planned = if args.dry_run {
        // Nothing is quantized, so no error is measured.
        outcome.rows.iter_mut().for_each(|r| r.stats = None);
        util::dry_run(gguf, &model, &output, &wopts)?
    } else {
        Vec::new()
    };
    let outputs = if args.dry_run {
        Vec::new()
    } else {
        util::write_model(gguf, &model, &output, &wopts, &inputs, quiet)?
    };
    let changed: Vec<ChangedTensor> = outcome
        .rows
        .iter()
        .filter(|r| r.to != r.from)
        .map(|r| r.changed())
        .collect();
    let label = type_label(&model, &changed, ft);
    let (parameters, bytes_before, bytes_after, bits_per_weight) = QuantizeDoc::totals(&changed);
    let doc = QuantizeDoc {
        input: report::path_text(&given),
        outputs: if args.dry_run {
            report::planned(&planned)
        } else {
            report::written(&outputs)
        },
        requested_type: ft.name.to_string(),
        type_label: label,
        mix: if diffusion.is_some() && diffusion_target == modelconv_diffusion::Target::SdCpp {
            "sd.cpp"
        } else if diffusion.is_some() {
            "ComfyUI-GGUF"
        } else if args.pure {
            "pure"
        } else {
            "llama.cpp"
        },
        tensors: changed,
        unchanged: outcome.unchanged,
        parameters,
        bytes_before,
        bytes_after,
        bits_per_weight,
        file_bytes_before: report::file_bytes(&inputs),
        file_bytes_after: if args.dry_run {
            planned.iter().filter_map(|(_, s)| *s).sum()
        } else {
            report::file_bytes(&outputs)
        },
        details: None,
        notes: &notes,
    };
    if args.json {
        report::emit("quantize", &doc);
    } else {
        print_text(&outcome.rows, source_bytes, model.data_bytes(), &doc);
        util::print_planned(&planned);
    }
    if !quiet {
        for n in &notes {
            eprintln!("{}", util::printable(n));
        }
        for o in &outputs {
            eprintln!("wrote {}", o.display());
        }
    }
    Ok(0)
}

/// llama-quantize's positional `IN OUT TYPE` is refused with the spelling
/// that means the same here.
fn refuse_positional(args: &Args) -> Result<()> {
    if !args.positional.is_empty() {
        let out = args.positional.first().map_or("OUT.gguf", String::as_str);
        let ty = args.positional.get(1).map_or("Q4_K_M", String::as_str);
        bail!(
            "unexpected argument '{}': the output is -o and the type --type (llama-quantize's `IN OUT TYPE` is `modelconv quantize {} -o {out} --type {ty}`)",
            args.positional.join(" "),
            args.input.display()
        );
    }
    Ok(())
}

/// The per-tensor rule options: --pure, --leave-output-tensor, the output
/// and embedding types, and each --tensor-type REGEX=TYPE.
fn mix_options(args: &Args) -> Result<MixOptions> {
    let mut mix = MixOptions {
        pure: args.pure,
        leave_output_tensor: args.leave_output_tensor,
        output_tensor_type: args.output_tensor_type.as_deref().map(tensor_type).transpose()?,
        token_embedding_type: args.token_embedding_type.as_deref().map(tensor_type).transpose()?,
        ..Default::default()
    };
    let mut specs: Vec<String> = args.tensor_type.clone();
    if let Some(f) = &args.tensor_type_file {
        let text = std::fs::read_to_string(f).map_err(|e| anyhow!("--tensor-type-file {}: {e}", f.display()))?;
        specs.extend(text.split_whitespace().map(str::to_string));
    }
    for spec in &specs {
        let (re, ty) = spec
            .split_once('=')
            .filter(|(re, ty)| !re.is_empty() && !ty.is_empty())
            .ok_or_else(|| anyhow!("--tensor-type '{spec}': expected REGEX=TYPE"))?;
        // llama-quantize lowercases the pattern (tensor names are lowercase).
        let re = regex::Regex::new(&re.to_lowercase()).map_err(|e| anyhow!("--tensor-type '{spec}': {e}"))?;
        mix.overrides.push((re, tensor_type(ty)?));
    }
    Ok(mix)
}

/// `--override-kv KEY=TYPE:VALUE` as llama.cpp's string_parse_kv_override
/// reads it, with the GGUF type llama-quantize writes: int as u32 (of the
/// absolute value), float as f32, bool, str of at most 127 bytes.
fn parse_override(spec: &str) -> Result<(String, Value)> {
    let bad = |why: &str| {
        anyhow!("--override-kv '{spec}': {why} (expected KEY=TYPE:VALUE, TYPE one of int, float, bool, str)")
    };
    let (key, rest) = spec.split_once('=').ok_or_else(|| bad("no '='"))?;
    if key.is_empty() || key.len() >= 128 {
        return Err(bad("the key must be 1 to 127 bytes"));
    }
    let (ty, v) = rest.split_once(':').ok_or_else(|| bad("no TYPE:"))?;
    let value = match ty {
        "int" => {
            let n: i64 = v.trim().parse().map_err(|_| bad("not an integer"))?;
            Value::U32(u32::try_from(n.unsigned_abs()).map_err(|_| bad("does not fit the u32 llama-quantize writes"))?)
        }
        "float" => Value::F32(v.trim().parse::<f64>().map_err(|_| bad("not a number"))? as f32),
        "bool" => match v {
            "true" => Value::Bool(true),
            "false" => Value::Bool(false),
            _ => return Err(bad("a bool is true or false")),
        },
        "str" if v.len() > 127 => return Err(bad("the value cannot exceed 127 bytes")),
        "str" => Value::String(v.to_string()),
        _ => return Err(bad("unknown TYPE")),
    };
    Ok((key.to_string(), value))
}

/// `--prune-layers 0,3,7`: layer numbers, sorted and without repeats.
fn prune_list(spec: Option<&str>) -> Result<Vec<u32>> {
    let Some(spec) = spec else { return Ok(Vec::new()) };
    let mut v = spec
        .split(',')
        .map(|s| {
            s.trim()
                .parse::<u32>()
                .map_err(|_| anyhow!("--prune-layers: invalid layer id '{s}'"))
        })
        .collect::<Result<Vec<u32>>>()?;
    v.sort_unstable();
    v.dedup();
    Ok(v)
}

/// A key and value to set in the output.
type MetadataKey = (String, Value);

/// The importance matrix of `--imatrix`, filtered by --include-weights /
/// --exclude-weights, and the `quantize.imatrix.*` keys llama-quantize
/// records (none when no entry is left, as then no matrix is used).
fn load_imatrix(
    path: &Path,
    include: &[String],
    exclude: &[String],
    gguf: &dyn modelconv_ir::Format,
) -> Result<(Option<Arc<Imatrix>>, Vec<MetadataKey>)> {
    let named = |e: modelconv_ir::Error| anyhow!("--imatrix {}: {e}", path.display());
    let bytes = read_bounded(path)?;
    let mut m = if Imatrix::is_gguf(&bytes) {
        drop(bytes);
        let model = registry::open_as(gguf, path, &OpenOptions::default())?;
        Imatrix::from_gguf(&model).map_err(named)?
    } else {
        Imatrix::from_legacy(&bytes).map_err(named)?
    };
    if let Some((name, v)) = m.first_non_finite() {
        bail!(
            "--imatrix {}: entry '{name}' holds the non-finite value {v}",
            path.display()
        );
    }
    m.select(include, exclude);
    if m.entries.is_empty() {
        return Ok((None, Vec::new()));
    }
    let mut keys = vec![(
        "quantize.imatrix.file".to_string(),
        Value::String(c_field(&path.to_string_lossy())),
    )];
    if let Some(ds) = m.datasets.first() {
        keys.push(("quantize.imatrix.dataset".to_string(), Value::String(c_field(ds))));
    }
    keys.push((
        "quantize.imatrix.entries_count".to_string(),
        Value::U32(m.entries.len() as u32),
    ));
    if m.chunk_count > 0 {
        keys.push((
            "quantize.imatrix.chunks_count".to_string(),
            Value::U32(m.chunk_count as u32),
        ));
    }
    Ok((Some(Arc::new(m)), keys))
}

/// A string as llama-quantize stores it in a 128-byte field: at most 127
/// bytes (cut at a character boundary).
fn c_field(s: &str) -> String {
    let mut end = s.len().min(127);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

/// The whole imatrix file, refused past 4 GiB (a 671B model's is ~100 MB).
fn read_bounded(path: &Path) -> Result<Vec<u8>> {
    const LIMIT: u64 = 4 << 30;
    let f = std::fs::File::open(path).map_err(|e| anyhow!("--imatrix {}: {e}", path.display()))?;
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    if len > LIMIT {
        bail!(
            "--imatrix {}: {len} bytes is more than an importance matrix can be (4 GiB)",
            path.display()
        );
    }
    let mut bytes = Vec::with_capacity(len as usize);
    std::io::Read::read_to_end(&mut std::io::Read::take(f, LIMIT + 1), &mut bytes)
        .map_err(|e| anyhow!("--imatrix {}: {e}", path.display()))?;
    Ok(bytes)
}

/// -o, or `<stem>-<TYPE>.gguf` beside the input; GGUF whatever is given.
fn output_path(args: &Args, ft: FileType, gguf: &dyn modelconv_ir::Format) -> Result<PathBuf> {
    let output = args.output.clone().unwrap_or_else(|| {
        let stem = args
            .input
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "model".into());
        args.input.with_file_name(format!("{stem}-{}.gguf", ft.name))
    });
    if !modelconv_ir::is_stream(&output)
        && registry::output_format(&output, None).ok().map(|f| f.name()) != Some(gguf.name())
    {
        bail!(
            "{}: quantize writes GGUF (llama.cpp's format); give -o a .gguf name",
            output.display()
        );
    }
    Ok(output)
}

/// What the file now is: the requested type when some tensor was
/// quantized to one of its types, else the type most bytes have.
fn type_label(model: &modelconv_ir::Model, changed: &[ChangedTensor], ft: FileType) -> String {
    if changed.iter().any(|c| c.to != "F32" && c.to != "F16" && c.to != "BF16")
        || !ft.default.is_quantized() && !changed.is_empty()
    {
        return ft.name.to_string();
    }
    let mut by_type: Vec<(DType, u64)> = Vec::new();
    for t in &model.tensors {
        match by_type.iter_mut().find(|(d, _)| *d == t.info.dtype) {
            Some((_, n)) => *n += t.info.byte_len,
            None => by_type.push((t.info.dtype, t.info.byte_len)),
        }
    }
    let main = by_type
        .iter()
        .max_by_key(|(_, n)| *n)
        .map_or("empty", |(d, _)| d.name());
    format!("{main} (nothing quantized)")
}

fn print_text(rows: &[Row], source_bytes: u64, out_bytes: u64, doc: &QuantizeDoc) {
    let w = rows.iter().map(|r| r.name.len()).max().unwrap_or(4).clamp(4, 48);
    println!(
        "{:<w$}  {:<7} {:<20} {:>12}  REL.RMSE",
        "NAME", "TYPE", "SHAPE", "BYTES"
    );
    for r in rows {
        let e = r.relative_rmse().map_or("-".to_string(), |v| format!("{v:.5}"));
        println!(
            "{:<w$}  {:<7} {:<20} {:>12}  {e}",
            util::printable(&r.name),
            r.to.name(),
            format!("{:?}", r.shape),
            r.bytes
        );
    }
    let bpw = doc
        .bits_per_weight
        .map_or(String::new(), |b| format!(", {b:.2} bits per weight quantized"));
    println!(
        "{}: {} ({}), {} → {}{bpw}",
        doc.outputs.first().map_or("", |o| o.path.as_str()),
        doc.type_label,
        match doc.mix {
            "pure" => "pure",
            "ComfyUI-GGUF" => "ComfyUI-GGUF's rules",
            "sd.cpp" => "stable-diffusion.cpp's rules",
            _ => "llama.cpp mix",
        },
        util::human_bytes(source_bytes),
        util::human_bytes(out_bytes)
    );
}
