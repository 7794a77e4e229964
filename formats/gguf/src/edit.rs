//! `meta` on a GGUF: the metadata replaced, the tensor infos and data kept
//! byte for byte (offsets are relative to the data section, which starts
//! at the header's end padded to the alignment).

use crate::read::parse;
use crate::write::{alignment_of, preamble_and_metadata};
use modelconv_ir::{padding, Error, HeaderEdit, Metadata, MetadataEditor, Result, SharedFile};
use std::path::Path;

pub struct GgufEditor;

/// Runs `f` on the file mapped read-only, with its length.
fn with_map<T>(path: &Path, f: impl FnOnce(&[u8], u64) -> Result<T>) -> Result<T> {
    let file = SharedFile::open(path)?;
    // SAFETY: read-only map, dropped before returning; every read of it is
    // bounds-checked against its length.
    let map = unsafe { memmap2::Mmap::map(&file.file) }.map_err(|e| Error::io(path, e))?;
    f(&map, file.len)
}

impl MetadataEditor for GgufEditor {
    fn metadata(&self, path: &Path) -> Result<Metadata> {
        with_map(path, |buf, _| Ok(parse(buf, path)?.metadata))
    }

    /// The new metadata, then the tensor infos as the file has them, padded
    /// to the alignment (a file with no tensors ends with its header, as
    /// gguf-py writes one). `general.alignment` cannot change: every
    /// tensor's offset would.
    fn new_header(&self, path: &Path, metadata: &Metadata) -> Result<HeaderEdit> {
        with_map(path, |buf, len| {
            let parsed = parse(buf, path)?;
            let alignment = alignment_of(metadata)?;
            if alignment != parsed.alignment {
                return Err(Error::invalid(format!(
                    "{}: general.alignment {} → {alignment} would move every tensor; convert the file to realign it",
                    path.display(),
                    parsed.alignment
                )));
            }
            let n_tensors = parsed.tensors.len() as u64;
            let mut header = preamble_and_metadata(parsed.version, n_tensors, metadata);
            header.extend_from_slice(&buf[parsed.infos.clone()]);
            let data_start = if n_tensors == 0 {
                len
            } else {
                let pad = padding(header.len() as u64, alignment) as usize;
                header.resize(header.len() + pad, 0);
                parsed.data_start
            };
            Ok(HeaderEdit { header, data_start })
        })
    }
}
