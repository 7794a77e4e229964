//! A folder is one model. Without an index json naming its files, the
//! files are picked by the names the tools that write them use: a lone
//! `STEM.EXT`, or a complete `STEM-0000i-of-0000n.EXT` set, the first of
//! the standard stems (`model`, …) winning; everything else is listed as
//! left out, and a folder whose files are several models is refused.

use crate::{Error, Result};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Most shards a set may have (the 5-digit counter's range).
const MAX_SHARDS: u32 = 99_999;

/// `STEM-00001-of-00003.EXT` → (`STEM`, 1, 3).
pub fn shard_parts<'a>(name: &'a str, ext: &str) -> Option<(&'a str, u32, u32)> {
    let base = name.strip_suffix(ext)?.strip_suffix('.')?;
    let (rest, n) = base.rsplit_once("-of-")?;
    let (stem, i) = rest.rsplit_once('-')?;
    let digits = |s: &str| s.len() >= 5 && s.bytes().all(|b| b.is_ascii_digit());
    if !(digits(i) && digits(n)) || stem.is_empty() {
        return None;
    }
    let (i, n): (u32, u32) = (i.parse().ok()?, n.parse().ok()?);
    (1..=n).contains(&i).then_some((stem, i, n)).filter(|_| n <= MAX_SHARDS)
}

/// The files of one model in a folder, and the others of the same kind.
#[derive(Debug, Default)]
pub struct Picked {
    /// In shard order.
    pub files: Vec<PathBuf>,
    pub left_out: Vec<PathBuf>,
}

impl Picked {
    /// A note naming what was left out, if anything was.
    pub fn note(&self) -> Option<String> {
        if self.left_out.is_empty() {
            return None;
        }
        let names: Vec<String> = self
            .left_out
            .iter()
            .map(|p| {
                p.file_name()
                    .map_or(String::new(), |n| n.to_string_lossy().into_owned())
            })
            .collect();
        Some(format!(
            "left out of the folder's model (not its standard file names): {}",
            names.join(", ")
        ))
    }
}

/// One candidate model: a lone file or a shard set.
#[derive(Default)]
struct Group {
    lone: Option<PathBuf>,
    /// Shard number → file, and the count the names give.
    shards: BTreeMap<u32, PathBuf>,
    counts: Vec<u32>,
}

/// Picks the model among `dir`'s `*.EXT` files (see the module docs).
/// `Ok(None)`: the folder holds no such file.
pub fn pick(dir: &Path, ext: &str, preferred: &[&str]) -> Result<Option<Picked>> {
    let mut groups: BTreeMap<String, Group> = BTreeMap::new();
    let rd = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
    for entry in rd {
        let p = entry.map_err(|e| Error::io(dir, e))?.path();
        let Some(name) = p.file_name().and_then(|n| n.to_str()).map(str::to_string) else {
            continue;
        };
        if !p.is_file() || name.starts_with('.') {
            continue;
        }
        if let Some((stem, i, n)) = shard_parts(&name, ext) {
            let g = groups.entry(stem.to_string()).or_default();
            g.shards.insert(i, p);
            g.counts.push(n);
        } else if let Some(stem) = name.strip_suffix(ext).and_then(|s| s.strip_suffix('.')) {
            groups.entry(stem.to_string()).or_default().lone = Some(p);
        }
    }
    if groups.is_empty() {
        return Ok(None);
    }
    let describe = |stem: &str, g: &Group| match (&g.lone, g.shards.len()) {
        (Some(_), 0) => format!("{stem}.{ext}"),
        (None, n) => format!("{stem}-*-of-*.{ext} ({n} shards)"),
        (Some(_), n) => format!("{stem}.{ext} and {n} {stem}-*-of-* shards"),
    };
    let chosen = match preferred.iter().find(|s| groups.contains_key(**s)) {
        Some(s) => s.to_string(),
        None if groups.len() == 1 => groups.keys().next().cloned().unwrap_or_default(),
        None => {
            let list: Vec<String> = groups.iter().map(|(s, g)| describe(s, g)).collect();
            return Err(Error::malformed(
                dir,
                format!(
                    "holds {} models ({}) and no index json saying which is the model; name the file to read",
                    groups.len(),
                    list.join(", ")
                ),
            ));
        }
    };
    let g = groups.remove(&chosen).unwrap_or_default();
    let files = match (g.lone, g.shards.is_empty()) {
        (Some(lone), true) => vec![lone],
        (Some(_), false) => {
            return Err(Error::malformed(
                dir,
                format!(
                    "holds both {chosen}.{ext} and {chosen}-*-of-*.{ext} shards: two copies of the model; name the one to read"
                ),
            ))
        }
        (None, _) => {
            let n = g.counts.first().copied().unwrap_or(0);
            if g.counts.iter().any(|&c| c != n) {
                return Err(Error::malformed(
                    dir,
                    format!("the {chosen}-*-of-*.{ext} shards disagree on how many there are"),
                ));
            }
            if let Some(missing) = (1..=n).find(|i| !g.shards.contains_key(i)) {
                return Err(Error::malformed(
                    dir,
                    format!("{chosen}-{missing:05}-of-{n:05}.{ext} is missing ({} of {n} shards present)", g.shards.len()),
                ));
            }
            g.shards.into_values().collect()
        }
    };
    let left_out = groups
        .into_values()
        .flat_map(|g| g.lone.into_iter().chain(g.shards.into_values()))
        .collect();
    Ok(Some(Picked { files, left_out }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn folder(names: &[&str]) -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        for n in names {
            std::fs::write(d.path().join(n), b"x").unwrap();
        }
        d
    }

    fn names(v: &[PathBuf]) -> Vec<String> {
        v.iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn shard_names() {
        assert_eq!(
            shard_parts("model-00002-of-00003.safetensors", "safetensors"),
            Some(("model", 2, 3))
        );
        assert_eq!(shard_parts("a-b-00001-of-00001.gguf", "gguf"), Some(("a-b", 1, 1)));
        assert_eq!(shard_parts("model-00004-of-00003.safetensors", "safetensors"), None);
        assert_eq!(shard_parts("model-1-of-3.safetensors", "safetensors"), None);
        assert_eq!(shard_parts("model.safetensors", "safetensors"), None);
    }

    #[test]
    fn standard_names_win_and_the_rest_is_listed() {
        let d = folder(&[
            "model.safetensors",
            "adapter_model.safetensors",
            "consolidated.safetensors",
            "x.bin",
        ]);
        let p = pick(d.path(), "safetensors", &["model"]).unwrap().unwrap();
        assert_eq!(names(&p.files), ["model.safetensors"]);
        assert_eq!(
            names(&p.left_out),
            ["adapter_model.safetensors", "consolidated.safetensors"]
        );
        assert!(p.note().unwrap().contains("adapter_model.safetensors"));
        let d = folder(&["model-00002-of-00002.safetensors", "model-00001-of-00002.safetensors"]);
        let p = pick(d.path(), "safetensors", &["model"]).unwrap().unwrap();
        assert_eq!(
            names(&p.files),
            ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"]
        );
        // One model under another name is read; none at all is None.
        let d = folder(&["diffusion_pytorch_model.safetensors"]);
        assert_eq!(
            pick(d.path(), "safetensors", &["model"]).unwrap().unwrap().files.len(),
            1
        );
        assert!(pick(d.path(), "gguf", &[]).unwrap().is_none());
    }

    #[test]
    fn ambiguous_or_incomplete_folders_are_refused() {
        for (files, why) in [
            (&["a.safetensors", "b.safetensors"][..], "holds 2 models"),
            (
                &["model.safetensors", "model-00001-of-00001.safetensors"][..],
                "two copies",
            ),
            (
                &["model-00001-of-00003.safetensors", "model-00003-of-00003.safetensors"][..],
                "00002-of-00003",
            ),
            (
                &["model-00001-of-00002.safetensors", "model-00002-of-00003.safetensors"][..],
                "disagree",
            ),
        ] {
            let d = folder(files);
            let e = pick(d.path(), "safetensors", &["model"]).unwrap_err().to_string();
            assert!(e.contains(why), "{files:?}: {e}");
        }
    }
}
