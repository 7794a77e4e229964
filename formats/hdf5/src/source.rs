//! Where a dataset's bytes come from: a range of the input file when the
//! dataset is contiguous, else decoded (chunks inflated, unshuffled and
//! placed) into a temporary file the first time they are read, one chunk
//! in memory at a time.

use hdf5_reader::storage::{Storage, StorageBuffer};
use hdf5_reader::Dataset;
use modelconv_ir::{DataSource, Error, Result, SharedFile};
use std::os::unix::fs::FileExt;
use std::sync::{Arc, Mutex};

/// The bytes of the input the HDF5 reader sees: the whole file, or a stored
/// `model.weights.h5` inside a `.keras` archive. Read with `pread` where
/// the reader asks (headers, B-tree nodes, one chunk at a time), never
/// mapped: a mapping's touched pages would count against the process
/// however large the file.
pub(crate) struct Slice {
    pub file: Arc<SharedFile>,
    pub start: u64,
    pub len: u64,
}

impl Storage for Slice {
    fn len(&self) -> u64 {
        self.len
    }

    fn read_range(&self, offset: u64, len: usize) -> hdf5_reader::error::Result<StorageBuffer> {
        let end = offset.checked_add(len as u64);
        if end.is_none_or(|e| e > self.len) {
            return Err(hdf5_reader::error::Error::UnexpectedEof {
                offset,
                needed: len as u64,
                available: self.len.saturating_sub(offset),
            });
        }
        let mut buf = vec![0u8; len];
        self.file
            .file
            .read_exact_at(&mut buf, self.start + offset)
            .map_err(hdf5_reader::error::Error::Io)?;
        Ok(StorageBuffer::from_vec(buf))
    }
}

/// How a dataset that is not one range of the file is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stored {
    /// Chunks, each filtered (gzip, shuffle, …) on its own.
    Chunked,
    /// In the object header (at most 64 KiB).
    Compact,
    /// Never written: every element is the fill value.
    Unwritten,
}

/// A dataset that is not one range of the file, decoded into a temporary
/// file once: the fill value first (where it is not zero), then each chunk
/// in its place, one chunk in memory at a time.
pub(crate) struct Decoded {
    pub ds: Dataset,
    pub stored: Stored,
    pub path: std::path::PathBuf,
    pub name: String,
    pub shape: Vec<u64>,
    pub elem: u64,
    pub len: u64,
    copy: Mutex<Option<Arc<std::fs::File>>>,
}

/// Bytes written at a time when filling.
const FILL_BLOCK: usize = 4 << 20;

impl Decoded {
    pub fn new(
        ds: Dataset,
        stored: Stored,
        path: &std::path::Path,
        name: &str,
        shape: Vec<u64>,
        elem: u64,
        len: u64,
    ) -> Self {
        Decoded {
            ds,
            stored,
            path: path.to_path_buf(),
            name: name.to_string(),
            shape,
            elem,
            len,
            copy: Mutex::new(None),
        }
    }

    fn bad(&self, msg: impl std::fmt::Display) -> Error {
        Error::malformed(&self.path, format!("dataset '{}': {msg}", self.name))
    }

    fn copy(&self) -> Result<Arc<std::fs::File>> {
        let mut slot = self.copy.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(f) = slot.as_ref() {
            return Ok(f.clone());
        }
        let io = |e| Error::io(&self.path, e);
        let tmp = tempfile::tempfile().map_err(io)?;
        tmp.set_len(self.len).map_err(io)?;
        self.fill(&tmp)?;
        match self.stored {
            Stored::Chunked => self.place_chunks(&tmp)?,
            Stored::Compact => {
                let bytes = self.ds.read_raw_bytes().map_err(|e| self.bad(e))?;
                if bytes.len() as u64 != self.len {
                    return Err(self.bad(format!("holds {} bytes, its shape needs {}", bytes.len(), self.len)));
                }
                tmp.write_all_at(&bytes, 0).map_err(io)?;
            }
            Stored::Unwritten => {}
        }
        let f = Arc::new(tmp);
        *slot = Some(f.clone());
        Ok(f)
    }

    /// Writes the fill value everywhere, when it is not zero (a temporary
    /// file's holes already read as zeros). Chunks never written keep it.
    fn fill(&self, out: &std::fs::File) -> Result<()> {
        let Some(value) = self.ds.fill_value().and_then(|f| f.value.as_ref()) else {
            return Ok(());
        };
        if value.iter().all(|&b| b == 0) || self.len == 0 {
            return Ok(());
        }
        if value.len() as u64 != self.elem {
            return Err(self.bad(format!(
                "a {}-byte fill value for {}-byte elements",
                value.len(),
                self.elem
            )));
        }
        let block: Vec<u8> = value
            .iter()
            .copied()
            .cycle()
            .take((FILL_BLOCK / value.len()).max(1) * value.len())
            .collect();
        let mut done = 0u64;
        while done < self.len {
            let n = (self.len - done).min(block.len() as u64) as usize;
            out.write_all_at(&block[..n], done)
                .map_err(|e| Error::io(&self.path, e))?;
            done += n as u64;
        }
        Ok(())
    }

    /// Writes each decoded chunk's rows where they belong in C order,
    /// clipped at the dataset's edge.
    fn place_chunks(&self, out: &std::fs::File) -> Result<()> {
        let nd = self.shape.len();
        let chunks = self.ds.iter_chunks().map_err(|e| self.bad(e))?;
        // Strides of the dataset, in bytes.
        let mut stride = vec![self.elem; nd];
        for d in (0..nd.saturating_sub(1)).rev() {
            stride[d] = stride[d + 1].saturating_mul(self.shape[d + 1]);
        }
        for chunk in chunks {
            let chunk = chunk.map_err(|e| self.bad(e))?;
            let (origin, cshape) = (chunk.offsets(), chunk.shape());
            if origin.len() != nd || cshape.len() != nd || nd == 0 {
                return Err(self.bad("a chunk's rank differs from the dataset's"));
            }
            let expected = cshape
                .iter()
                .try_fold(self.elem, |a, &d| a.checked_mul(d))
                .ok_or_else(|| self.bad("chunk size overflows"))?;
            let bytes = chunk.bytes();
            if bytes.len() as u64 != expected {
                return Err(self.bad(format!("a chunk decodes to {} bytes, expected {expected}", bytes.len())));
            }
            // The part of the chunk inside the dataset.
            let mut extent = Vec::with_capacity(nd);
            for d in 0..nd {
                if origin[d] >= self.shape[d] {
                    return Err(self.bad(format!("a chunk at {origin:?} lies outside the shape {:?}", self.shape)));
                }
                extent.push(cshape[d].min(self.shape[d] - origin[d]));
            }
            let row = extent[nd - 1] * self.elem;
            let crow = cshape[nd - 1] * self.elem;
            // Each row of the clipped chunk (every index but the last), in
            // mixed radix over the extent.
            let rows: u64 = extent[..nd - 1].iter().product();
            for r in 0..rows {
                let (mut rest, mut src, mut dst) = (r, 0u64, origin[nd - 1] * self.elem);
                let mut cstride = crow;
                for d in (0..nd - 1).rev() {
                    let i = rest % extent[d];
                    rest /= extent[d];
                    src += i * cstride;
                    cstride *= cshape[d];
                    dst += (origin[d] + i) * stride[d];
                }
                let s = src as usize;
                out.write_all_at(&bytes[s..s + row as usize], dst)
                    .map_err(|e| Error::io(&self.path, e))?;
            }
        }
        Ok(())
    }
}

impl DataSource for Decoded {
    fn len(&self) -> u64 {
        self.len
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        if offset.checked_add(buf.len() as u64).is_none_or(|e| e > self.len) {
            return Err(Error::invalid(format!(
                "read of {} bytes at {offset} past the end of a {}-byte tensor",
                buf.len(),
                self.len
            )));
        }
        let f = self.copy()?;
        f.read_exact_at(buf, offset).map_err(|e| Error::io(&self.path, e))
    }
}
