//! Small helpers shared by the commands.

use anyhow::{anyhow, bail, Result};
use modelconv_ir::Model;
use modelconv_ir::{Format, WriteOptions, WritePlan};
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

/// Writes `v` as pretty JSON on stdout, streamed (never built as one
/// string). A closed pipe ends the output quietly.
pub fn print_json<T: serde::Serialize + ?Sized>(v: &T) {
    use std::io::Write;
    let mut out = std::io::BufWriter::with_capacity(1 << 16, std::io::stdout().lock());
    if serde_json::to_writer_pretty(&mut out, v).is_ok() {
        let _ = writeln!(out);
        let _ = out.flush();
    }
}

pub use modelconv_ir::{float_json as json_f64, human_bytes, printable};

/// `one` for 1, else `many`.
pub fn plural<'a>(n: usize, one: &'a str, many: &'a str) -> &'a str {
    if n == 1 {
        one
    } else {
        many
    }
}

/// One line per reason for the tensors a cast or quantization left as
/// they were: how many, the first few names, and why.
pub fn unchanged_summary(kept: &[modelconv_ir::KeptTensor]) -> Vec<String> {
    let mut reasons: Vec<(&str, Vec<&str>)> = Vec::new();
    for k in kept {
        match reasons.iter_mut().find(|(r, _)| *r == k.reason) {
            Some((_, names)) => names.push(&k.name),
            None => reasons.push((&k.reason, vec![&k.name])),
        }
    }
    reasons
        .into_iter()
        .map(|(why, names)| {
            let shown: Vec<&str> = names.iter().copied().filter(|n| !n.is_empty()).take(4).collect();
            let more = names.len().saturating_sub(shown.len().max(1));
            let list = if shown.is_empty() {
                String::new()
            } else if more > 0 {
                format!(" ({}, and {more} more)", shown.join(", "))
            } else {
                format!(" ({})", shown.join(", "))
            };
            format!(
                "unchanged: {} {}{list}: {why}",
                names.len(),
                plural(names.len(), "tensor", "tensors")
            )
        })
        .collect()
}

/// A path as text, made safe for a terminal ([`printable`]).
pub fn shown(p: &std::path::Path) -> String {
    printable(&p.display().to_string()).into_owned()
}

/// `5GB`, `500MB`, `2GiB`, `123` (bytes). Decimal units are powers of 1000,
/// binary ones of 1024, as Hugging Face reads them.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let mult: u64 = match unit.trim().to_ascii_uppercase().as_str() {
        "" | "B" => 1,
        "KB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        "TB" => 1_000_000_000_000,
        "KIB" => 1 << 10,
        "MIB" => 1 << 20,
        "GIB" => 1 << 30,
        "TIB" => 1 << 40,
        u => return Err(format!("unknown size unit '{u}' (use B, KB, MB, GB, KiB, MiB, GiB)")),
    };
    let n: f64 = num.parse().map_err(|_| format!("'{s}' is not a size like 5GB"))?;
    let bytes = n * mult as f64;
    if !(bytes >= 1.0 && bytes < u64::MAX as f64) {
        return Err(format!("size '{s}' out of range"));
    }
    Ok(bytes as u64)
}

/// Every input file a model was read from.
pub fn input_files(model: &Model) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = model
        .tensors
        .iter()
        .filter_map(|t| t.location.as_ref().map(|l| l.file.clone()))
        .collect();
    if model.path.is_file() {
        v.push(model.path.clone());
    }
    v.sort();
    v.dedup();
    v
}

/// Refuses to write over any input: same path after resolving links, or
/// the same file under another name (hard link).
pub fn refuse_overwriting_inputs(inputs: &[PathBuf], outputs: &[PathBuf]) -> Result<()> {
    let ids: Vec<(u64, u64)> = inputs
        .iter()
        .filter_map(|p| std::fs::metadata(p).ok())
        .map(|m| (m.dev(), m.ino()))
        .collect();
    for out in outputs {
        if let Ok(m) = std::fs::metadata(out) {
            if ids.contains(&(m.dev(), m.ino())) {
                bail!(
                    "{}: the output is one of the input files; refusing to overwrite it",
                    out.display()
                );
            }
        }
    }
    Ok(())
}

/// Creates the missing folders above `outputs` (as Hugging Face's
/// save_pretrained does); returns those it created, outermost first.
fn create_parents(outputs: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut created = Vec::new();
    for out in outputs {
        let Some(parent) = out.parent().filter(|p| !p.as_os_str().is_empty()) else {
            continue;
        };
        let mut missing: Vec<&std::path::Path> = parent
            .ancestors()
            .take_while(|a| !a.as_os_str().is_empty() && !a.exists())
            .collect();
        missing.reverse();
        for dir in missing {
            match std::fs::create_dir(dir) {
                Ok(()) => created.push(dir.to_path_buf()),
                // Another process (a worker writing another shard) made it meanwhile.
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && dir.is_dir() => {}
                Err(e) => return Err(modelconv_ir::Error::io(dir, e).into()),
            }
        }
    }
    Ok(created)
}

/// Removes the folders [`create_parents`] made, when they are still empty.
fn remove_created(created: &[PathBuf]) {
    for dir in created.iter().rev() {
        let _ = std::fs::remove_dir(dir);
    }
}

/// Plans `model` for `format`, refuses to overwrite any of `inputs`, and
/// writes it with a progress bar. Returns the files written.
pub fn write_model(
    format: &dyn Format,
    model: &Model,
    dest: &std::path::Path,
    opts: &WriteOptions,
    inputs: &[PathBuf],
    quiet: bool,
) -> Result<Vec<PathBuf>> {
    let writer = format
        .writer()
        .ok_or_else(|| anyhow!("format {} cannot be written", format.name()))?;
    write_plan(writer.plan(model, dest, opts)?, inputs, quiet)
}

/// Plans `model` for `format` as [`write_model`] would and writes nothing:
/// the files it would write, with their lengths where the plan knows them
/// (`--dry-run`; a scheduler learns the shard count from it).
pub fn dry_run(
    format: &dyn Format,
    model: &Model,
    dest: &std::path::Path,
    opts: &WriteOptions,
) -> Result<Vec<Planned>> {
    let writer = format
        .writer()
        .ok_or_else(|| anyhow!("format {} cannot be written", format.name()))?;
    Ok(planned(writer.plan(model, dest, opts)?.as_ref()))
}

/// A file a plan would write, and its length if known.
pub type Planned = (PathBuf, Option<u64>);

/// The files of `plan`, with their planned lengths where known.
pub fn planned(plan: &dyn WritePlan) -> Vec<Planned> {
    let sizes = plan.sizes();
    plan.outputs()
        .into_iter()
        .enumerate()
        .map(|(i, p)| (p, sizes.as_ref().and_then(|s| s.get(i).copied())))
        .collect()
}

/// `--dry-run` for people: each file that would be written.
pub fn print_planned(planned: &[Planned]) {
    for (p, size) in planned {
        let size = size.map_or(String::new(), |b| format!(" ({b} bytes)"));
        println!("would write {}{size}", printable(&p.display().to_string()));
    }
}

/// Refuses to overwrite any of `inputs`, then writes `plan` with a
/// progress bar. Returns the files written.
pub fn write_plan(plan: Box<dyn WritePlan>, inputs: &[PathBuf], quiet: bool) -> Result<Vec<PathBuf>> {
    let outputs = plan.outputs();
    if let Some(stream) = outputs.iter().find(|o| modelconv_ir::is_stream(o)) {
        if outputs.len() != 1 || !plan.streamable() {
            return Err(modelconv_ir::Error::invalid(format!(
                "{}: a stream (standard output, a FIFO or a device) takes one file written in order; this output {} (safetensors in one file and GGUF stream; write to a file instead)",
                stream.display(),
                if outputs.len() != 1 {
                    format!("is {} files", outputs.len())
                } else {
                    "cannot be written in one pass".to_string()
                }
            ))
            .into());
        }
    }
    let mut inputs = inputs.to_vec();
    inputs.extend(plan.inputs());
    refuse_overwriting_inputs(&inputs, &outputs)?;
    // SAFETY: isatty only looks at the descriptor.
    let stdout_names = [modelconv_ir::STDIO, "/dev/stdout", "/dev/fd/1", "/proc/self/fd/1"];
    if outputs.iter().any(|o| stdout_names.iter().any(|n| o.as_os_str() == *n)) && unsafe { libc::isatty(1) } == 1 {
        bail!("standard output is a terminal; redirect it (`> file`, `| modelconv inspect -`) to write a model there");
    }
    let created = create_parents(&outputs)?;
    let bar = crate::progress::Bar::new(plan.data_bytes(), quiet);
    if let Err(e) = plan.write(&bar) {
        remove_created(&created);
        return Err(e.into());
    }
    bar.finish();
    Ok(outputs)
}

/// An input path; `-` is standard input, copied to a temporary file first
/// (readers need random access). The copy lives as long as this value.
pub struct Input {
    pub path: PathBuf,
    _copy: Option<tempfile::TempPath>,
}

impl Input {
    pub fn new(path: &std::path::Path) -> Result<Input> {
        if path.as_os_str() != modelconv_ir::STDIO {
            return Ok(Input {
                path: path.to_path_buf(),
                _copy: None,
            });
        }
        let mut tmp = tempfile::Builder::new()
            .prefix(".modelconv-stdin.")
            .tempfile()
            .map_err(|e| anyhow!("standard input: cannot make a temporary copy: {e}"))?;
        let mut stdin = std::io::stdin().lock();
        std::io::copy(&mut stdin, tmp.as_file_mut()).map_err(|e| anyhow!("standard input: {e}"))?;
        let copy = tmp.into_temp_path();
        Ok(Input {
            path: copy.to_path_buf(),
            _copy: Some(copy),
        })
    }
}

/// Refuses `--json` with standard output as the output: both want stdout.
pub fn check_stdout_free(json: bool, output: &std::path::Path) -> Result<()> {
    if json && output.as_os_str() == modelconv_ir::STDIO {
        bail!("--json prints on standard output, which the output `-` takes too; write the model to a file");
    }
    Ok(())
}

/// How a Hugging Face model is named on the command line (convert and
/// quantize share these flags).
#[derive(clap::Args, Debug, Default)]
pub struct HfArgs {
    /// GGUF output: the Hugging Face config.json describing the input (a single weights file; tokenizer
    /// files are read beside it). A model folder with config.json needs none.
    #[arg(long, value_name = "config.json")]
    pub config: Option<PathBuf>,
    /// GGUF output: the model class, as in config.json's "architectures" (e.g. LlamaForCausalLM),
    /// overriding it; for a weights file, the config.json beside it is read.
    #[arg(long, value_name = "CLASS")]
    pub arch: Option<String>,
    /// GGUF LoRA adapter output: the base model's folder (its config.json is enough, no weights) when
    /// the input is a PEFT adapter folder (adapter_config.json) whose base_model_name_or_path is not
    /// a local folder.
    #[arg(long, value_name = "DIR")]
    pub base: Option<PathBuf>,
    /// GGUF output: a multimodal model folder's vision projector (its vision tower and projector, for
    /// llama.cpp's mtmd / --mmproj) instead of its text model, as `convert_hf_to_gguf.py --mmproj`.
    #[arg(long)]
    pub mmproj: bool,
    /// GGUF output: the pre-tokenizer (`tokenizer.ggml.pre`, e.g. llama-bpe, qwen2) of a tokenizer.json
    /// whose check hash llama.cpp's converter does not know, when you know which it is.
    #[arg(long, value_name = "NAME")]
    pub vocab_pre: Option<String>,
}

/// The Hugging Face model `input` is, when the output format follows
/// llama.cpp's conventions (a folder with config.json, or a weights file
/// with `--config`/`--arch`); `None` keeps tensor names as they are.
pub fn hf_model(
    input: &std::path::Path,
    hf: &HfArgs,
    out: &dyn Format,
) -> anyhow::Result<Option<modelconv_llama::Folder>> {
    if !out.writer().is_some_and(|w| w.llama_conventions()) {
        if hf.config.is_some() || hf.arch.is_some() || hf.base.is_some() || hf.mmproj || hf.vocab_pre.is_some() {
            anyhow::bail!(
                "--config, --arch, --base, --mmproj and --vocab-pre map a Hugging Face model to llama.cpp's \
                 conventions: GGUF output only"
            );
        }
        return Ok(None);
    }
    let folder = hf_folder(input, hf)?;
    if let Some(name) = &hf.vocab_pre {
        match &folder {
            Some(f) if f.adapter.is_none() && !f.mmproj => {}
            _ => anyhow::bail!(
                "--vocab-pre {name}: {} writes no vocabulary (only a Hugging Face model folder does; not a LoRA \
                 adapter or a vision projector)",
                input.display()
            ),
        }
    }
    Ok(folder.map(|f| modelconv_llama::Folder {
        vocab_pre: hf.vocab_pre.clone(),
        ..f
    }))
}

/// [`hf_model`]'s folder, adapter or projector, before `--vocab-pre`.
fn hf_folder(input: &std::path::Path, hf: &HfArgs) -> anyhow::Result<Option<modelconv_llama::Folder>> {
    if hf.mmproj {
        if hf.base.is_some() {
            anyhow::bail!("--mmproj and --base: a vision projector is not a LoRA adapter");
        }
        let folder = modelconv_llama::Folder::detect_projector(input, hf.config.as_deref(), hf.arch.as_deref())?;
        return Ok(Some(folder));
    }
    let adapter =
        modelconv_llama::Folder::detect_adapter(input, hf.base.as_deref(), hf.config.as_deref(), hf.arch.as_deref())?;
    if adapter.is_some() {
        return Ok(adapter);
    }
    Ok(modelconv_llama::Folder::detect(
        input,
        hf.config.as_deref(),
        hf.arch.as_deref(),
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("5GB").unwrap(), 5_000_000_000);
        assert_eq!(parse_size("2GiB").unwrap(), 2 << 30);
        assert_eq!(parse_size("1.5MB").unwrap(), 1_500_000);
        assert_eq!(parse_size("100").unwrap(), 100);
        assert!(parse_size("5XB").is_err());
        assert!(parse_size("0").is_err());
    }
}
