//! `modelconv meta`: print or edit a file's metadata without touching its
//! tensor data, through the format's [`MetadataEditor`]. In place when the
//! new header ends where the old one did (only the header is rewritten);
//! otherwise a streaming copy to a temporary file renamed over the
//! original. Either way an interrupted edit leaves the original as it was.

use crate::report::{self, Written};
use crate::{registry, util};
use anyhow::{anyhow, bail, Context, Result};
use modelconv_ir::{FileRange, HeaderEdit, Metadata, MetadataEditor, OutputFile, TypedMetadata, Value, WriteOptions};
use serde::Serialize;
use std::path::{Path, PathBuf};

#[derive(clap::Args)]
pub struct Args {
    /// The file (one GGUF, or one shard of a split; one safetensors file).
    file: PathBuf,
    /// Set KEY to VALUE; TYPE (u8, i8, u16, i16, u32, i32, u64, i64, f32, f64, bool, str, array<T> with a
    /// JSON list) defaults to the key's present type, or str for a new key (repeatable, applied in order).
    #[arg(long, value_name = "KEY=VALUE[:TYPE]")]
    set: Vec<String>,
    /// Remove KEY (repeatable).
    #[arg(long, value_name = "KEY")]
    remove: Vec<String>,
    /// Set tokenizer.chat_template to the contents of this file.
    #[arg(long, value_name = "FILE")]
    chat_template_file: Option<PathBuf>,
    /// Write the edited file here instead of editing FILE.
    #[arg(short, long, value_name = "OUT")]
    output: Option<PathBuf>,
    /// FILE may be a symbolic link: edit the file it points to.
    #[arg(long)]
    follow_symlinks: bool,
    /// Read FILE as this format instead of detecting it.
    #[arg(long, value_name = "FORMAT")]
    from: Option<String>,
    /// Print one JSON document on stdout (docs/json.md).
    #[arg(long)]
    json: bool,
}

#[derive(Serialize)]
struct MetaDoc<'a> {
    path: String,
    format: &'static str,
    /// The metadata after the edits, typed, in file order.
    metadata: TypedMetadata<'a>,
    /// Keys set or removed, in the order given.
    changed: Vec<String>,
    /// `true`: only the header was rewritten; `false`: the file was copied;
    /// `null`: nothing was edited.
    in_place: Option<bool>,
    outputs: Vec<Written>,
}

pub fn run(args: Args, quiet: bool) -> Result<u8> {
    let format = registry::input_format(&args.file, args.from.as_deref())?;
    let editors: Vec<&str> = registry::FORMATS
        .iter()
        .filter(|f| f.metadata_editor().is_some())
        .map(|f| f.name())
        .collect();
    let editor = format.metadata_editor().ok_or_else(|| {
        anyhow!(
            "{}: {} files keep no metadata header that meta edits (it edits {})",
            args.file.display(),
            format.name(),
            editors.join(", ")
        )
    })?;
    if args.file.is_dir() {
        bail!(
            "{}: a folder; meta edits one file (for a split GGUF, its first shard)",
            args.file.display()
        );
    }
    let mut metadata = editor.metadata(&args.file)?;
    let changed = apply_edits(&args, &mut metadata)?;
    let (in_place, outputs) = if changed.is_empty() {
        (None, Vec::new())
    } else {
        let (in_place, written) = write_edit(&args, editor, &metadata)?;
        (Some(in_place), report::written(std::slice::from_ref(&written)))
    };
    let n_changed = changed.len();
    let edited = outputs.first().map(|o| o.path.clone());
    if args.json {
        let doc = MetaDoc {
            path: report::path_text(&args.file),
            format: format.name(),
            metadata: TypedMetadata(&metadata),
            changed,
            in_place,
            outputs,
        };
        report::emit("meta", &doc);
    } else if in_place.is_none() {
        for (k, v) in metadata.iter() {
            println!("{} = {}", util::printable(k), util::printable(&v.to_text()));
        }
    }
    if let (false, Some(in_place), Some(path)) = (quiet, in_place, edited) {
        let how = if in_place {
            "the header rewritten in place"
        } else {
            "copied with the new header"
        };
        let keys = util::plural(n_changed, "key", "keys");
        eprintln!("edited {path}: {n_changed} {keys} changed, {how}");
    }
    Ok(0)
}

/// Applies --remove, --set and --chat-template-file, in that order; returns the keys changed.
fn apply_edits(args: &Args, metadata: &mut Metadata) -> Result<Vec<String>> {
    let mut changed = Vec::new();
    for key in &args.remove {
        if metadata.remove(key).is_none() {
            bail!("--remove {key}: {} has no such key", args.file.display());
        }
        changed.push(key.clone());
    }
    for spec in &args.set {
        let (key, value) = parse_set(spec, metadata)?;
        metadata.set(key.clone(), value);
        changed.push(key);
    }
    if let Some(f) = &args.chat_template_file {
        let text = std::fs::read_to_string(f).with_context(|| format!("--chat-template-file {}", f.display()))?;
        metadata.set("tokenizer.chat_template", Value::String(text));
        changed.push("tokenizer.chat_template".into());
    }
    Ok(changed)
}

/// `KEY=VALUE[:TYPE]`: TYPE is taken from after the last `:` only when it
/// names a type, so a value may hold colons.
fn parse_set(spec: &str, metadata: &Metadata) -> Result<(String, Value)> {
    let (key, rest) = spec
        .split_once('=')
        .ok_or_else(|| anyhow!("--set '{spec}': expected KEY=VALUE[:TYPE]"))?;
    if key.is_empty() {
        bail!("--set '{spec}': the key is empty");
    }
    let (text, ty) = match rest.rsplit_once(':') {
        Some((v, t)) if is_type_name(t) => (v, t.to_string()),
        _ => match metadata.get(key) {
            Some(existing) => (rest, existing.type_name()),
            None => (rest, "string".to_string()),
        },
    };
    let value = parse_value(text, &ty).map_err(|e| anyhow!("--set '{spec}': {e}"))?;
    Ok((key.to_string(), value))
}

fn is_type_name(t: &str) -> bool {
    const SCALARS: [&str; 13] = [
        "u8", "i8", "u16", "i16", "u32", "i32", "u64", "i64", "f32", "f64", "bool", "str", "string",
    ];
    let inner = t.strip_prefix("array<").and_then(|t| t.strip_suffix('>'));
    SCALARS.contains(&t) || inner.is_some_and(|i| SCALARS.contains(&i) && i != "str")
}

/// A value of type `ty` from the command line: strings as given, anything
/// else read as JSON (numbers, `true`/`false`, lists for arrays).
fn parse_value(text: &str, ty: &str) -> Result<Value, String> {
    let ty = if ty == "str" { "string" } else { ty };
    if ty == "string" {
        return Ok(Value::String(text.to_string()));
    }
    let json = serde_json::from_str(text).unwrap_or_else(|_| serde_json::Value::String(text.to_string()));
    Value::from_typed(ty, &json)
}

/// Writes the edit: to `--output`, over the header in place when it ends
/// where the old one did, or as a copy renamed over the file. Returns
/// whether it was in place, and the file written.
fn write_edit(args: &Args, editor: &dyn MetadataEditor, metadata: &Metadata) -> Result<(bool, PathBuf)> {
    let edit = editor.new_header(&args.file, metadata)?;
    if let Some(out) = &args.output {
        if !same_file(out, &args.file) {
            copy_with_header(&args.file, &edit, out)?;
            return Ok((false, out.clone()));
        }
    }
    let target = edit_target(&args.file, args.follow_symlinks)?;
    if edit.fits_in_place() {
        overwrite_header(&target, &edit.header)?;
        return Ok((true, target));
    }
    let mode = std::fs::metadata(&target).map(|m| m.permissions())?;
    copy_with_header(&target, &edit, &target)?;
    // The copy is a new file: it takes the original's permissions.
    std::fs::set_permissions(&target, mode).with_context(|| format!("{}: setting permissions", target.display()))?;
    Ok((false, target))
}

/// The file an in-place edit changes: FILE, or with --follow-symlinks what
/// it points to; a symbolic link is never replaced by a file.
fn edit_target(file: &Path, follow: bool) -> Result<PathBuf> {
    let link = std::fs::symlink_metadata(file)
        .with_context(|| file.display().to_string())?
        .file_type()
        .is_symlink();
    if !link {
        return Ok(file.to_path_buf());
    }
    if !follow {
        bail!(
            "{} is a symbolic link; --follow-symlinks edits the file it points to, -o OUT writes a new file",
            file.display()
        );
    }
    std::fs::canonicalize(file).with_context(|| file.display().to_string())
}

fn same_file(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(x), Ok(y)) => x.dev() == y.dev() && x.ino() == y.ino(),
        _ => false,
    }
}

/// Writes `edit.header` over the start of `path` and syncs it. The header
/// ends where the old one did, so nothing after it moves.
fn overwrite_header(path: &Path, header: &[u8]) -> Result<()> {
    use std::os::unix::fs::FileExt;
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .with_context(|| format!("{}: opening for the edit", path.display()))?;
    f.write_all_at(header, 0)
        .and_then(|()| f.sync_all())
        .with_context(|| format!("{}: writing the header", path.display()))
}

/// `dest` = the new header, then `src` from the old data section on: a
/// temporary file, renamed into place once complete and synced.
fn copy_with_header(src: &Path, edit: &HeaderEdit, dest: &Path) -> Result<()> {
    let file = modelconv_ir::SharedFile::open(src)?;
    let rest = FileRange {
        len: file.len.saturating_sub(edit.data_start),
        offset: edit.data_start.min(file.len),
        file,
    };
    let mut out = OutputFile::create(dest, &WriteOptions::default())?;
    out.write_all(&edit.header)?;
    out.write_source(&rest, &modelconv_ir::NoProgress)?;
    out.commit()?;
    Ok(())
}
