//! Reading: one `.safetensors` file, a Hugging Face index
//! (`model.safetensors.index.json`), or a folder of shards.

use crate::header::{self, MAX_HEADER_SIZE};
use modelconv_ir::{hf_index, Error, FileRange, Location, Metadata, Model, Result, SharedFile, Tensor, TensorInfo};
use std::path::Path;
use std::sync::Arc;

/// Opens a file, an index json, or a folder.
pub fn open(path: &Path) -> Result<Model> {
    let mut model = if path.is_dir() {
        open_dir(path)?
    } else if is_index_name(path) {
        open_index(path)?
    } else {
        let (metadata, tensors) = read_file(path)?;
        Model {
            format: crate::NAME,
            path: path.to_path_buf(),
            metadata,
            tensors,
            ..Default::default()
        }
    };
    model.path = path.to_path_buf();
    Ok(model)
}

pub(crate) fn is_index_name(path: &Path) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.ends_with(".safetensors.index.json"))
}

/// Reads and validates one file's header; tensors are lazy ranges of it.
pub fn read_file(path: &Path) -> Result<(Metadata, Vec<Tensor>)> {
    let (file, header, data_start) = read_header(path)?;
    // Typed values written by us come back typed (Metadata::to_strings).
    let metadata =
        Metadata::from_strings(header.metadata).map_err(|e| Error::malformed(path, format!("__metadata__: {e}")))?;
    let tensors = header
        .entries
        .into_iter()
        .map(|e| {
            let info = TensorInfo::new(e.name, e.dtype, e.shape).map_err(|err| err.in_file(path))?;
            let range = FileRange {
                file: file.clone(),
                offset: data_start + e.begin,
                len: e.end - e.begin,
            };
            let mut t = Tensor::new(info, Arc::new(range)).map_err(|err| err.in_file(path))?;
            t.location = Some(Location {
                file: path.to_path_buf(),
                offset: data_start + e.begin,
            });
            Ok(t)
        })
        .collect::<Result<Vec<_>>>()?;
    Ok((metadata, tensors))
}

/// One file's validated header, and where its data section starts: the
/// 8-byte length (at most [`MAX_HEADER_SIZE`], inside the file), then the
/// JSON, whose offsets must lie inside the data section.
pub fn read_header(path: &Path) -> Result<(Arc<SharedFile>, header::Header, u64)> {
    let file = SharedFile::open(path)?;
    if file.len < 8 {
        return Err(Error::truncated(
            path,
            0,
            format!(
                "file is {} bytes; a safetensors file starts with an 8-byte header length",
                file.len
            ),
        ));
    }
    let mut len_bytes = [0u8; 8];
    file.read_exact_at(0, &mut len_bytes)?;
    let n = u64::from_le_bytes(len_bytes);
    if n > MAX_HEADER_SIZE {
        return Err(Error::limit(
            path,
            format!("header length {n} exceeds the limit of {MAX_HEADER_SIZE} bytes"),
        ));
    }
    if n > file.len - 8 {
        return Err(Error::truncated(
            path,
            8,
            format!(
                "header length {n} runs past the end of the file ({} bytes after the length field)",
                file.len - 8
            ),
        ));
    }
    let mut json = vec![0u8; n as usize];
    file.read_exact_at(8, &mut json)?;
    let data_start = 8 + n;
    let header = header::parse(&json, file.len - data_start).map_err(|e| match e {
        Error::Truncated { offset, msg, .. } => Error::truncated(path, data_start + offset, msg),
        Error::LimitExceeded { msg, .. } => Error::limit(path, msg),
        e => e.in_file(path),
    })?;
    Ok((file, header, data_start))
}

/// A folder is one model: its index json if it has one, otherwise the
/// files with the standard names ([`modelconv_ir::folder::pick`]).
fn open_dir(dir: &Path) -> Result<Model> {
    let mut indexes = Vec::new();
    let rd = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
    for entry in rd {
        let p = entry.map_err(|e| Error::io(dir, e))?.path();
        if is_index_name(&p) {
            indexes.push(p);
        }
    }
    indexes.sort();
    let preferred = dir.join("model.safetensors.index.json");
    if indexes.contains(&preferred) {
        return open_index(&preferred);
    }
    match indexes.len() {
        1 => return open_index(&indexes[0]),
        n if n > 1 => {
            return Err(Error::malformed(
                dir,
                format!("holds {n} index files; name the one to read"),
            ));
        }
        _ => {}
    }
    let picked = modelconv_ir::folder::pick(dir, "safetensors", &["model", "diffusion_pytorch_model"])?
        .ok_or_else(|| Error::malformed(dir, "holds no .safetensors files and no model.safetensors.index.json"))?;
    let mut model = Model {
        format: crate::NAME,
        path: dir.to_path_buf(),
        notes: picked.note().into_iter().collect(),
        ..Default::default()
    };
    for (i, shard) in picked.files.iter().enumerate() {
        let (metadata, tensors) = read_file(shard)?;
        if i == 0 {
            model.metadata = metadata;
        }
        model.tensors.extend(tensors);
    }
    model.check_unique_names().map_err(|e| e.in_file(dir))?;
    Ok(model)
}

/// A Hugging Face index: `{"metadata": {...}, "weight_map": {tensor: shard file}}`.
fn open_index(index: &Path) -> Result<Model> {
    hf_index::open_sharded(index, crate::NAME, |shard| {
        let (metadata, tensors) = read_file(shard)?;
        Ok(Model {
            format: crate::NAME,
            path: shard.to_path_buf(),
            metadata,
            tensors,
            ..Default::default()
        })
    })
}
