//! `meta` on a safetensors file: `__metadata__` replaced (string values;
//! typed ones in the documented encoding, [`Metadata::to_strings`]), the
//! tensor entries and data kept.

use crate::header::{self, MAX_HEADER_SIZE};
use crate::read::{read_file, read_header};
use modelconv_ir::{Error, HeaderEdit, Metadata, MetadataEditor, Result};
use std::path::Path;

pub struct SafetensorsEditor;

impl MetadataEditor for SafetensorsEditor {
    fn metadata(&self, path: &Path) -> Result<Metadata> {
        Ok(read_file(path)?.0)
    }

    /// The JSON re-serialized with the new `__metadata__`; when it is no
    /// longer than the old one it is padded with spaces to the old length
    /// (the format allows trailing whitespace), so the data stays in place.
    fn new_header(&self, path: &Path, metadata: &Metadata) -> Result<HeaderEdit> {
        let (_, old, data_start) = read_header(path)?;
        let mut json = header::serialize(&metadata.to_strings(), &old.entries);
        let old_len = data_start - 8;
        if json.len() as u64 <= old_len {
            json.resize(old_len as usize, b' ');
        }
        if json.len() as u64 > MAX_HEADER_SIZE {
            return Err(Error::limit(
                path,
                format!(
                    "the new header is {} bytes, over safetensors' limit of {MAX_HEADER_SIZE}",
                    json.len()
                ),
            ));
        }
        let mut bytes = (json.len() as u64).to_le_bytes().to_vec();
        bytes.extend_from_slice(&json);
        Ok(HeaderEdit {
            header: bytes,
            data_start,
        })
    }
}
