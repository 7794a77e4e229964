//! `modelconv ckpt-to-safetensors`: the everyday conversion of a PyTorch
//! checkpoint into safetensors, reading it without running any code.

use crate::util;
use anyhow::{anyhow, Result};
use modelconv_ir::{Value, WriteOptions};
use modelconv_pickle::{open_with, Selection};
use std::collections::HashMap;
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    /// The checkpoint (.pt, .pth, .bin, .ckpt), zip or legacy format.
    input: PathBuf,
    /// Output file [default: the input with .safetensors].
    #[arg(short, long)]
    output: Option<PathBuf>,
    /// Every tensor reachable (optimizer state too), named by dotted path,
    /// instead of just the state dict.
    #[arg(long)]
    all: bool,
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
    let sel = if args.all { Selection::All } else { Selection::StateDict };
    let (mut model, key) = open_with(&args.input, sel)?;
    if model.tensors.is_empty() {
        return Err(anyhow!("{}: no tensors found", args.input.display()));
    }
    if !quiet {
        match key {
            Some(k) => eprintln!("state dict: the tensors under '{k}'"),
            None if !args.all => eprintln!("state dict: the top-level tensors"),
            None => {}
        }
    }
    if args.verbose && !quiet {
        for (path, what) in modelconv_pickle::non_tensor_values(&args.input).unwrap_or_default() {
            eprintln!("  not a tensor, left out: {path} = {what}");
        }
    }
    if args.dedupe {
        // Same file bytes, same dtype and shape: one tensor under two names.
        let mut first: HashMap<(PathBuf, u64, &'static str, Vec<u64>), String> = HashMap::new();
        let mut dropped = Vec::new();
        model.tensors.retain(|t| {
            let Some(loc) = &t.location else { return true };
            let id = (loc.file.clone(), loc.offset, t.info.dtype.name(), t.info.shape.clone());
            match first.get(&id) {
                Some(kept) => {
                    dropped.push(format!("{} (same storage as {kept})", t.info.name));
                    false
                }
                None => {
                    first.insert(id, t.info.name.clone());
                    true
                }
            }
        });
        if !quiet && !dropped.is_empty() {
            eprintln!("--dedupe: {} tied tensor(s) written once", dropped.len());
            if args.verbose {
                for d in &dropped {
                    eprintln!("  dropped {d}");
                }
            }
        }
    }
    // transformers reads safetensors made from PyTorch weights by this key.
    model.metadata.set("format", Value::String("pt".into()));
    let output = args
        .output
        .clone()
        .unwrap_or_else(|| args.input.with_extension("safetensors"));
    let inputs = util::input_files(&model);
    let opts = WriteOptions {
        max_shard_size: None,
        no_fsync: args.no_fsync,
        ..Default::default()
    };
    util::write_model(&modelconv_safetensors::FORMAT, &model, &output, &opts, &inputs, quiet)?;
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
