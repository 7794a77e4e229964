//! `modelconv ckpt-to-safetensors`: the everyday conversion of a PyTorch
//! checkpoint into safetensors, reading it without running any code.

use crate::util;
use anyhow::{anyhow, Result};
use modelconv_ir::{Format, WriteOptions};
use modelconv_pipeline::Request;
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    /// The checkpoint (.pt, .pth, .bin, .ckpt), zip or legacy format.
    input: PathBuf,
    /// Output file [default: the input with .safetensors].
    #[arg(short, long)]
    output: Option<PathBuf>,
    #[command(flatten)]
    open: crate::registry::OpenArgs,
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
}

pub fn run(args: Args, quiet: bool) -> Result<u8> {
    let format: &dyn Format = &modelconv_pickle::FORMAT;
    if let Some(other) = crate::registry::claimed_by(&args.input).filter(|f| f.name() != format.name()) {
        return Err(anyhow!(
            "{}: this is a {} file, not a PyTorch checkpoint; `modelconv convert` converts it",
            args.input.display(),
            other.name()
        ));
    }
    let mut model = crate::registry::open_as(format, &args.input, &args.open.options())?;
    if model.tensors.is_empty() {
        return Err(anyhow!("{}: no tensors found", args.input.display()));
    }
    if !quiet {
        for n in &model.notes {
            eprintln!("{}", util::printable(n));
        }
    }
    if args.verbose && !quiet {
        for (path, what) in modelconv_pickle::non_tensor_values(&args.input).unwrap_or_default() {
            eprintln!("  not a tensor, left out: {path} = {what}");
        }
    }
    let request = Request {
        dedupe: args.dedupe,
        ..Default::default()
    };
    let inputs = util::input_files(&model);
    let outcome = request.apply(&mut model)?;
    if !quiet && !outcome.deduped.is_empty() {
        eprintln!("--dedupe: {} tied tensor(s) written once", outcome.deduped.len());
        if args.verbose {
            for (dropped, kept) in &outcome.deduped {
                eprintln!("  dropped {dropped} (same storage as {kept})");
            }
        }
    }
    let output = args
        .output
        .clone()
        .unwrap_or_else(|| args.input.with_extension("safetensors"));
    let wopts = WriteOptions {
        no_fsync: args.no_fsync,
        ..Default::default()
    };
    util::write_model(&modelconv_safetensors::FORMAT, &model, &output, &wopts, &inputs, quiet)?;
    if !quiet {
        eprintln!(
            "wrote {} ({} tensors, {})",
            output.display(),
            model.tensors.len(),
            util::human_bytes(model.data_bytes())
        );
    }
    Ok(0)
}
