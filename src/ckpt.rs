//! `modelconv ckpt-to-safetensors`: the everyday conversion of a PyTorch
//! checkpoint into safetensors, reading it without running any code. A
//! preset of `convert` (`--from` the checkpoint reader, `--to`
//! safetensors): the same code path, so the same bytes.

use crate::convert::{self, Preset};
use crate::registry;
use anyhow::{anyhow, Result};
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

pub fn run(args: Args, quiet: bool) -> Result<u8> {
    let output = match args.output {
        Some(o) => o,
        None if args.input.as_os_str() == modelconv_ir::STDIO => {
            return Err(anyhow!(
                "standard input has no name to derive the output's from; give -o FILE (or -o - for standard output)"
            ))
        }
        // A model folder: model.safetensors inside it, where transformers looks.
        None if args.input.is_dir() => args.input.join("model.safetensors"),
        None => args.input.with_extension("safetensors"),
    };
    let preset = Preset {
        command: "ckpt-to-safetensors",
        accepts: Some(registry::is_checkpoint),
        input_kind: "a PyTorch checkpoint",
        require_tensors: true,
        verbose: args.verbose,
    };
    let convert = convert::Args {
        input: args.input,
        output,
        from: Some(registry::checkpoint_format().name().into()),
        to: Some(registry::safetensors_format().name().into()),
        open: args.open,
        dedupe: args.dedupe,
        no_fsync: args.no_fsync,
        json: args.json,
        ..Default::default()
    };
    convert::run_as(convert, quiet, &preset)
}
