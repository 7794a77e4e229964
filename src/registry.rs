//! The one place that lists the formats. Readers are picked by magic bytes;
//! the extension only breaks ties (or names the format of a file too damaged
//! to recognise, so that its reader can say what is wrong).

use anyhow::{anyhow, bail, Result};
use modelconv_ir::{Format, Model, HEAD_LEN};
use std::io::Read;
use std::path::Path;

pub static FORMATS: &[&dyn Format] = &[
    &modelconv_safetensors::FORMAT,
    &modelconv_gguf::FORMAT,
    &modelconv_pickle::FORMAT,
    &modelconv_onnx::FORMAT,
];

pub fn by_name(name: &str) -> Result<&'static dyn Format> {
    FORMATS
        .iter()
        .copied()
        .find(|f| f.name().eq_ignore_ascii_case(name))
        .ok_or_else(|| anyhow!("unknown format '{name}' (known: {})", names()))
}

pub fn names() -> String {
    FORMATS.iter().map(|f| f.name()).collect::<Vec<_>>().join(", ")
}

fn ext_matches(f: &dyn Format, path: &Path) -> bool {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    f.extensions().iter().any(|e| name.ends_with(&format!(".{e}")))
}

/// The first bytes of a file (empty for a directory).
fn head(path: &Path) -> Result<Vec<u8>> {
    if path.is_dir() {
        return Ok(Vec::new());
    }
    let mut f = std::fs::File::open(path).map_err(|e| anyhow!("{}: {e}", path.display()))?;
    let mut buf = Vec::with_capacity(HEAD_LEN);
    f.by_ref()
        .take(HEAD_LEN as u64)
        .read_to_end(&mut buf)
        .map_err(|e| anyhow!("{}: {e}", path.display()))?;
    Ok(buf)
}

/// Picks the reader for `path`.
pub fn detect(path: &Path) -> Result<&'static dyn Format> {
    let head = head(path)?;
    let mut best: Option<(u8, bool, &'static dyn Format)> = None;
    for &f in FORMATS {
        let s = f.score(&head, path);
        let e = ext_matches(f, path);
        if s > 0 && best.is_none_or(|(bs, be, _)| (s, e) > (bs, be)) {
            best = Some((s, e, f));
        }
    }
    if let Some((_, _, f)) = best {
        return Ok(f);
    }
    if let Some(&f) = FORMATS.iter().find(|f| ext_matches(**f, path)) {
        return Ok(f);
    }
    if path.is_dir() {
        bail!(
            "{}: no model files recognised in this folder (known formats: {})",
            path.display(),
            names()
        );
    }
    bail!(
        "{}: not a recognised model file (first bytes {:02x?}; known formats: {})",
        path.display(),
        &head[..head.len().min(16)],
        names()
    )
}

/// The format of `path`: `--from` if given, else by detection.
pub fn input_format(path: &Path, from: Option<&str>) -> Result<&'static dyn Format> {
    match from {
        Some(name) => by_name(name),
        None => detect(path),
    }
}

/// Opens `path` with `--from` if given, else by detection.
pub fn open(path: &Path, from: Option<&str>) -> Result<Model> {
    Ok(input_format(path, from)?.open(path)?)
}

/// The format to write `dest` in: `--to`, else its extension.
pub fn output_format(dest: &Path, to: Option<&str>) -> Result<&'static dyn Format> {
    let f = match to {
        Some(name) => by_name(name)?,
        None => FORMATS.iter().copied().find(|f| ext_matches(*f, dest)).ok_or_else(|| {
            anyhow!(
                "{}: cannot tell the output format from the extension; use --to ({})",
                dest.display(),
                names()
            )
        })?,
    };
    if f.writer().is_none() {
        bail!("format {} can be read but not written", f.name());
    }
    Ok(f)
}
