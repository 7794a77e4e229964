//! `modelconv convert`: reader → select/rename/cast → writer plan → write.

use crate::report::{self, ConvertDoc};
use crate::{registry, util};
use anyhow::{anyhow, bail, Result};
use modelconv_ir::{DType, RewriteRequest, Stage, WriteOptions};
use modelconv_pipeline::{self as pipeline, Outcome, Request, TypeOptions};
use regex::Regex;
use std::path::PathBuf;

#[derive(clap::Args, Default)]
pub struct Args {
    /// Input: a model file, an index json, or a folder of shards.
    pub(crate) input: PathBuf,
    /// Output file; its extension picks the format unless --to is given.
    pub(crate) output: PathBuf,
    /// Output format (see `modelconv formats`), or `hf`: a GGUF back to a Hugging Face model folder
    /// (config.json, tokenizer, safetensors weights; OUTPUT is the folder).
    #[arg(long, value_name = "FORMAT")]
    pub(crate) to: Option<String>,
    /// Read the input as this format instead of detecting it.
    #[arg(long, value_name = "FORMAT")]
    pub(crate) from: Option<String>,
    /// Cast floating-point tensors to F32, F16, BF16 or F64 (also fp16, float16, bfloat16, fp32…; round to nearest even; integer tensors are
    /// kept; quantized tensors are dequantized), or quantize them to a ggml type (Q8_0, Q4_K, …: exactly
    /// `quantize --type TYPE --pure`, llama.cpp's eligibility rules; GGUF output only).
    #[arg(long, value_name = "TYPE")]
    pub(crate) dtype: Option<String>,
    /// Keep only tensors whose name matches (repeatable; any match keeps).
    #[arg(long, value_name = "REGEX")]
    pub(crate) include: Vec<Regex>,
    /// Drop tensors whose name matches (repeatable; applied after --include).
    #[arg(long, value_name = "REGEX")]
    pub(crate) exclude: Vec<Regex>,
    /// Rename tensors: REGEX=REPLACEMENT, with $1 for groups (repeatable, applied in order).
    #[arg(long, value_name = "REGEX=REPLACEMENT")]
    pub(crate) rename: Vec<String>,
    /// Split the output into shards of at most this size (e.g. 5GB, 500MB, 2GiB): Hugging Face layout with an index json.
    #[arg(long, value_name = "SIZE", value_parser = util::parse_size)]
    pub(crate) max_shard_size: Option<u64>,
    /// Do not fsync the output before renaming it into place: faster, still
    /// never a partial file, but not guaranteed to survive a power loss.
    #[arg(long)]
    pub(crate) no_fsync: bool,
    #[command(flatten)]
    pub(crate) hf: util::HfArgs,
    #[command(flatten)]
    pub(crate) open: registry::OpenArgs,
    /// The output format's options and those of its own cast (declared by the formats).
    #[command(flatten)]
    pub(crate) format: registry::FormatFlags<{ Stage::Write.bit() | Stage::Cast.bit() }>,
    /// Write tied weights (names sharing one storage region) once, under the first name.
    #[arg(long)]
    pub(crate) dedupe: bool,
    /// With a ggml --dtype: quantize tensors that are already quantized (dequantized first).
    #[arg(long)]
    pub(crate) allow_requantize: bool,
    /// With a ggml --dtype: quantize NaN/Inf values and overflowing scales instead of refusing.
    #[arg(long)]
    pub(crate) allow_nonfinite: bool,
    /// With --dtype: write the output even when the cast or quantization changes no tensor
    /// (otherwise exit 2).
    #[arg(long)]
    pub(crate) allow_unchanged: bool,
    /// Plan the output and list the files it would write (with their sizes where known), writing nothing.
    #[arg(long)]
    pub(crate) dry_run: bool,
    /// Print one JSON document on stdout (docs/json.md).
    #[arg(long)]
    pub(crate) json: bool,
}

pub fn parse_dtype(s: &str) -> Result<DType> {
    DType::from_user(s).ok_or_else(|| anyhow!("--dtype {s}: unknown type (use F32, F16, BF16, F64 or a ggml type)"))
}

/// What a command that is a preset of `convert` adds to it
/// (`ckpt-to-safetensors`): the same code path, so the same bytes.
pub(crate) struct Preset {
    /// The `command` of its JSON document.
    pub command: &'static str,
    /// The input formats it takes (`None`: all of them).
    pub accepts: Option<fn(&dyn modelconv_ir::Format) -> bool>,
    /// What to call them when refusing another.
    pub input_kind: &'static str,
    /// A model with no tensors is an error.
    pub require_tensors: bool,
    /// List what is left out: non-tensor values, aliases dropped by --dedupe.
    pub verbose: bool,
}

impl Preset {
    const CONVERT: Preset = Preset {
        command: "convert",
        accepts: None,
        input_kind: "a model",
        require_tensors: false,
        verbose: false,
    };
}

pub fn run(args: Args, quiet: bool) -> Result<u8> {
    run_as(args, quiet, &Preset::CONVERT)
}

pub(crate) fn run_as(mut args: Args, quiet: bool, preset: &Preset) -> Result<u8> {
    util::check_stdout_free(args.json, &args.output)?;
    let given = args.input.clone();
    let stdin = util::Input::new(&args.input)?;
    args.input = stdin.path.clone();
    refuse_other_inputs(&args.input, preset)?;
    let dtype = args.dtype.as_deref().map(parse_dtype).transpose()?;
    let folder = HfFolderOut::of(&args, dtype)?;
    let (out_format, weights) = match &folder {
        Some(f) => (f.format, f.weights.clone()),
        None => (
            registry::output_format(&args.output, args.to.as_deref())?,
            args.output.clone(),
        ),
    };
    let in_format = registry::input_format(&args.input, args.from.as_deref())?;
    let opts = WriteOptions {
        max_shard_size: args.max_shard_size,
        no_fsync: args.no_fsync,
        options: args.format.options.clone(),
    };
    // A format that rewrites its own graph for this dtype (ONNX fp16), when
    // input and output are the same format (the same registry entry).
    if let (Some(dtype), Some(rw)) = (dtype, out_format.rewriter()) {
        if std::ptr::addr_eq(in_format, out_format) {
            registry::check_options(
                &opts.options,
                out_format,
                &[Stage::Write, Stage::Cast],
                "output",
                &args.output,
            )?;
            if let Some(rewrite) = rw.rewrite(&args.input, &RewriteRequest::Cast(dtype), Some(&args.output), &opts)? {
                return write_rewrite(&args, &given, (in_format, out_format), dtype, rewrite, quiet);
            }
        }
    }
    registry::check_options(&opts.options, out_format, &[Stage::Write], "output", &args.output)?;
    let hf = util::hf_model(&args.input, &args.hf, out_format)?;
    let llama = out_format.writer().is_some_and(|w| w.llama_conventions());
    let mut request = conversion_request(&mut args, dtype, hf, llama)?;
    request.to_hf = folder.is_some();
    let mut model = registry::open_as(in_format, &args.input, &args.open.options())?;
    if preset.require_tensors && model.tensors.is_empty() {
        bail!("{}: no tensors found", args.input.display());
    }
    let inputs = util::input_files(&model);
    if llama && request.hf.is_none() && !request.to_hf {
        // A diffusion checkpoint to GGUF is convert.py's F16/BF16 file.
        request.diffusion = match modelconv_diffusion::recognize(&model)? {
            Some(modelconv_diffusion::Source::Checkpoint(a)) => {
                if dtype.is_some() {
                    bail!(
                        "{}: a {} model converts to ComfyUI-GGUF's F16/BF16 GGUF; other types are `modelconv quantize --type`",
                        args.input.display(),
                        a.name
                    );
                }
                Some(modelconv_diffusion::Source::Checkpoint(a))
            }
            _ => None,
        };
    }
    let outcome = request.apply(&mut model)?;
    let notes = conversion_notes(std::mem::take(&mut model.notes), &outcome, preset, &args.input);
    if !quiet {
        for n in &notes {
            eprintln!("{}", util::printable(n));
        }
    }
    if args.dry_run {
        let mut planned = util::dry_run(out_format, &model, &weights, &opts)?;
        if let Some(f) = &folder {
            planned.extend(
                outcome
                    .files
                    .iter()
                    .map(|(name, b)| (f.dir.join(name), Some(b.len() as u64))),
            );
        }
        if args.json {
            let formats = (in_format.name(), out_format.name());
            let mut doc = ConvertDoc::of(&given, formats, &[], &model, &notes);
            doc.outputs = report::planned(&planned);
            doc.dtype = dtype.map(|d| d.name().to_string());
            report::emit(preset.command, &doc);
        } else {
            util::print_planned(&planned);
        }
        return Ok(0);
    }
    if let Some(f) = &folder {
        f.create()?;
    }
    let mut outputs = util::write_model(out_format, &model, &weights, &opts, &inputs, quiet)?;
    if let Some(f) = &folder {
        outputs.extend(f.write_files(&outcome.files, &opts)?);
    }
    let (n, bytes) = (model.tensors.len(), model.data_bytes());
    if args.json {
        let mut changed = outcome.cast;
        changed.extend(outcome.rows.iter().filter(|r| r.to != r.from).map(|r| r.changed()));
        let formats = (in_format.name(), out_format.name());
        let mut doc = ConvertDoc::of(&given, formats, &outputs, &model, &notes).with_deduped(outcome.deduped);
        doc.dtype = dtype.map(|d| d.name().to_string());
        doc.changed = changed;
        doc.unchanged = outcome.unchanged;
        report::emit(preset.command, &doc);
    }
    if !quiet {
        for o in &outputs {
            eprintln!("wrote {}", o.display());
        }
        eprintln!(
            "{n} {}, {} ({})",
            util::plural(n, "tensor", "tensors"),
            util::human_bytes(bytes),
            out_format.name()
        );
    }
    Ok(0)
}

/// `--to hf`: the output is a Hugging Face model folder, its weights
/// written by the format such folders hold, its config and tokenizer files
/// (the pipeline's [`pipeline::Outcome::files`]) beside them.
struct HfFolderOut {
    dir: std::path::PathBuf,
    format: &'static dyn modelconv_ir::Format,
    weights: std::path::PathBuf,
}

impl HfFolderOut {
    fn of(args: &Args, dtype: Option<DType>) -> Result<Option<HfFolderOut>> {
        if !args
            .to
            .as_deref()
            .is_some_and(|t| t.eq_ignore_ascii_case(registry::HF_FOLDER))
        {
            return Ok(None);
        }
        let dir = args.output.clone();
        if dir.as_os_str() == modelconv_ir::STDIO {
            bail!("--to hf writes a folder, not a stream: name one");
        }
        if let Some(d) = dtype.filter(|d| !matches!(d, DType::F32 | DType::F16 | DType::BF16)) {
            bail!("--to hf: --dtype {d}: a Hugging Face folder holds F32, F16 or BF16 weights");
        }
        let occupied = match std::fs::read_dir(&dir) {
            Ok(mut entries) => entries.next().is_some(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
            Err(e) => bail!("{}: {e} (--to hf needs a new or empty folder)", dir.display()),
        };
        if occupied || (dir.exists() && !dir.is_dir()) {
            bail!(
                "{}: exists and is not an empty folder; --to hf writes a new folder",
                dir.display()
            );
        }
        let (format, file) = registry::hf_folder_format()?;
        Ok(Some(HfFolderOut {
            weights: dir.join(file),
            dir,
            format,
        }))
    }

    fn create(&self) -> Result<()> {
        std::fs::create_dir_all(&self.dir).map_err(|e| anyhow::anyhow!("{}: {e}", self.dir.display()))
    }

    /// The side files, each written whole and renamed into place.
    fn write_files(
        &self,
        files: &[(String, Vec<u8>)],
        opts: &modelconv_ir::WriteOptions,
    ) -> Result<Vec<std::path::PathBuf>> {
        let mut written = Vec::new();
        for (name, bytes) in files {
            let dest = self.dir.join(name);
            // Names are ours (`1_Pooling/config.json`), never a file's.
            if let Some(parent) = dest.parent().filter(|p| *p != self.dir) {
                std::fs::create_dir_all(parent).map_err(|e| anyhow::anyhow!("{}: {e}", parent.display()))?;
            }
            let mut out = modelconv_ir::OutputFile::create(&dest, opts)?;
            out.write_all(bytes)?;
            out.commit()?;
            written.push(dest);
        }
        Ok(written)
    }
}

/// A preset that takes one kind of input (ckpt-to-safetensors: PyTorch
/// checkpoints) refuses a file another format claims, naming `convert`.
fn refuse_other_inputs(input: &std::path::Path, preset: &Preset) -> Result<()> {
    if let Some(accepts) = preset.accepts {
        if let Some(other) = registry::claimed_by(input).filter(|f| !accepts(*f)) {
            bail!(
                "{}: this is a {} file, not {}; `modelconv convert` converts it",
                input.display(),
                other.name(),
                preset.input_kind
            );
        }
    }
    Ok(())
}

/// The pipeline request of the flags: selection, renames, dedupe, the
/// output's conventions, and the dtype (per tensor as convert_hf_to_gguf.py
/// gives it for a Hugging Face model, else a cast or a pure quantization).
fn conversion_request(
    args: &mut Args,
    dtype: Option<DType>,
    hf: Option<modelconv_llama::Folder>,
    llama: bool,
) -> Result<Request> {
    let mut request = Request {
        include: std::mem::take(&mut args.include),
        exclude: std::mem::take(&mut args.exclude),
        rename: pipeline::parse_renames(&args.rename)?,
        dedupe: args.dedupe,
        allow_unchanged: args.allow_unchanged,
        llama,
        ..Default::default()
    };
    // A Hugging Face model takes its type per tensor, as convert_hf_to_gguf.py
    // gives it (F32, F16, BF16, Q8_0); other ggml types are a pure quantization.
    let mut hf_type = modelconv_llama::OutType::Source;
    if let Some(d) = dtype.filter(|d| hf.is_some() && modelconv_llama::OUT_TYPES.contains(d)) {
        hf_type = modelconv_llama::OutType::Type(d);
    } else if let Some(d) = dtype {
        let types = TypeOptions {
            allow_requantize: args.allow_requantize,
            allow_nonfinite: args.allow_nonfinite,
        };
        request.to_dtype(d, types)?;
    }
    request.hf = hf.map(|f| (f, hf_type));
    Ok(request)
}

/// The notes a conversion prints: the model's own, non-tensor values
/// (--verbose), tied tensors written once, tensors left unchanged.
fn conversion_notes(
    mut notes: Vec<String>,
    outcome: &Outcome,
    preset: &Preset,
    input: &std::path::Path,
) -> Vec<String> {
    if preset.verbose {
        for (path, what) in registry::checkpoint_leaves(input) {
            notes.push(format!("  not a tensor, left out: {path} = {what}"));
        }
    }
    if !outcome.deduped.is_empty() {
        notes.push(format!(
            "--dedupe: {} tied {} written once",
            outcome.deduped.len(),
            util::plural(outcome.deduped.len(), "tensor", "tensors")
        ));
        if preset.verbose {
            for (dropped, kept) in &outcome.deduped {
                notes.push(format!("  dropped {dropped} (same storage as {kept})"));
            }
        }
    }
    notes.extend(util::unchanged_summary(&outcome.unchanged));
    notes
}

/// Writes a format's own rewrite (ONNX fp16) and reports it as `convert`.
fn write_rewrite(
    args: &Args,
    given: &std::path::Path,
    (in_format, out_format): (&dyn modelconv_ir::Format, &dyn modelconv_ir::Format),
    dtype: DType,
    rewrite: modelconv_ir::Rewrite,
    quiet: bool,
) -> Result<u8> {
    if !(args.include.is_empty() && args.exclude.is_empty() && args.rename.is_empty()) {
        bail!(
            "the {} rewrite keeps every tensor: --include/--exclude/--rename do not apply",
            out_format.name()
        );
    }
    if args.dry_run {
        // The rewrite's report counts what the data showed while it streamed.
        util::print_planned(&util::planned(rewrite.plan.as_ref()));
        return Ok(0);
    }
    let written = util::write_plan(rewrite.plan, std::slice::from_ref(&args.input), quiet)?;
    let r = (rewrite.report)();
    if args.json {
        let model = registry::open_as(out_format, &args.output, &Default::default())?;
        let formats = (in_format.name(), out_format.name());
        let mut doc = ConvertDoc::of(given, formats, &written, &model, &r.notes);
        doc.dtype = Some(dtype.name().to_string());
        doc.changed = r.tensors;
        doc.unchanged = r.unchanged;
        doc.details = Some(&r.details);
        report::emit("convert", &doc);
    } else {
        print!("{}", r.text);
    }
    if !quiet {
        for o in &written {
            eprintln!("wrote {}", o.display());
        }
        for n in &r.notes {
            eprintln!("{}", util::printable(n));
        }
    }
    Ok(0)
}
