//! `modelconv ckpt-to-safetensors`: the everyday conversion of a PyTorch
//! checkpoint into safetensors, reading it without running any code.

use crate::{registry, report, util};
use anyhow::{anyhow, Result};
use modelconv_ir::WriteOptions;
use modelconv_pipeline::Request;
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    /// The checkpoint (.pt, .pth, .bin, .ckpt), zip or legacy format.
    input: PathBuf,
    /// Output file [default: the input with .safetensors; for a folder, model.safetensors in it].
    #[arg(short, long)]
    output: Option<PathBuf>,
    #[command(flatten)]
    open: registry::OpenArgs,
    /// Write tied weights (names sharing one storage region) once, under
    /// the first name, instead of under every name.
    #[arg(long)]
    dedupe: bool,
    /// List what is left out: non-tensor values, and aliases dropped by --dedupe.
    #[arg(short, long)]
    verbose: bool,
    /// Do not fsync the output before renaming it into place.
    #[arg(long)]
    no_fsync: bool,
    /// Print one JSON document on stdout (docs/json.md; the same document as `convert --json`).
    #[arg(long)]
    json: bool,
}

pub fn run(mut args: Args, quiet: bool) -> Result<u8> {
    let given = args.input.clone();
    if let Some(o) = &args.output {
        util::check_stdout_free(args.json, o)?;
    } else if given.as_os_str() == modelconv_ir::STDIO {
        return Err(anyhow!(
            "standard input has no name to derive the output's from; give -o FILE (or -o - for standard output)"
        ));
    }
    let stdin = util::Input::new(&args.input)?;
    args.input = stdin.path.clone();
    let format = registry::checkpoint_format();
    if let Some(other) = registry::claimed_by(&args.input).filter(|f| !registry::is_checkpoint(*f)) {
        return Err(anyhow!(
            "{}: this is a {} file, not a PyTorch checkpoint; `modelconv convert` converts it",
            args.input.display(),
            other.name()
        ));
    }
    let mut model = registry::open_as(format, &args.input, &args.open.options())?;
    if model.tensors.is_empty() {
        return Err(anyhow!("{}: no tensors found", args.input.display()));
    }
    let mut notes = std::mem::take(&mut model.notes);
    if args.verbose {
        for (path, what) in registry::checkpoint_leaves(&args.input) {
            notes.push(format!("  not a tensor, left out: {path} = {what}"));
        }
    }
    let request = Request {
        dedupe: args.dedupe,
        ..Default::default()
    };
    let inputs = util::input_files(&model);
    let outcome = request.apply(&mut model)?;
    if !outcome.deduped.is_empty() {
        let n = outcome.deduped.len();
        notes.push(format!(
            "--dedupe: {n} tied {} written once",
            util::plural(n, "tensor", "tensors")
        ));
        if args.verbose {
            for (dropped, kept) in &outcome.deduped {
                notes.push(format!("  dropped {dropped} (same storage as {kept})"));
            }
        }
    }
    if !quiet {
        for n in &notes {
            eprintln!("{}", util::printable(n));
        }
    }
    let output = match args.output.clone() {
        Some(o) => o,
        // A model folder: model.safetensors inside it, where transformers looks.
        None if args.input.is_dir() => args.input.join("model.safetensors"),
        None => args.input.with_extension("safetensors"),
    };
    let wopts = WriteOptions {
        no_fsync: args.no_fsync,
        ..Default::default()
    };
    let st = registry::safetensors_format();
    let outputs = util::write_model(st, &model, &output, &wopts, &inputs, quiet)?;
    let n = model.tensors.len();
    if args.json {
        let formats = (format.name(), st.name());
        let doc = report::ConvertDoc::of(&given, formats, &outputs, &model, &notes).with_deduped(outcome.deduped);
        report::emit("ckpt-to-safetensors", &doc);
    }
    if !quiet {
        eprintln!(
            "wrote {} ({n} {}, {})",
            output.display(),
            util::plural(n, "tensor", "tensors"),
            util::human_bytes(model.data_bytes())
        );
    }
    Ok(0)
}
