//! Tensors: what is known before any data is read ([`TensorInfo`]) and a lazy
//! [`DataSource`] the writer pulls bytes from, chunk by chunk.

use crate::{numel, DType, Error, Result};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

/// Everything about a tensor except its data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorInfo {
    pub name: String,
    pub dtype: DType,
    /// Outermost dimension first (safetensors/torch/numpy order), for every format.
    pub shape: Vec<u64>,
    /// Bytes of the data, `dtype.byte_len(numel(shape))`.
    pub byte_len: u64,
}

impl TensorInfo {
    /// Builds an info, checking that the shape and type agree on a size.
    pub fn new(name: impl Into<String>, dtype: DType, shape: Vec<u64>) -> Result<Self> {
        let name = name.into();
        let byte_len = numel(&shape)
            .and_then(|n| dtype.byte_len(n))
            .map_err(|e| Error::invalid(format!("tensor '{name}': {e}")))?;
        Ok(TensorInfo {
            name,
            dtype,
            shape,
            byte_len,
        })
    }

    pub fn numel(&self) -> u64 {
        // Checked when the info was built.
        self.shape.iter().product()
    }
}

/// Where a tensor's bytes come from. Sources are shared between threads; a
/// reader may be asked for any range, in any order.
pub trait DataSource: Send + Sync {
    /// Bytes this source yields.
    fn len(&self) -> u64;

    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Reads must start and end on multiples of this many bytes (an element
    /// or block of a computed source); 1 for raw bytes.
    fn granule(&self) -> u64 {
        1
    }

    /// Bytes a writer should pull at a time, when the source knows better
    /// than the default (a quantizer's output is small but costly to make).
    /// A multiple of [`DataSource::granule`].
    fn preferred_chunk(&self) -> Option<u64> {
        None
    }

    /// Fills `buf` with the bytes at `offset..offset + buf.len()`.
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()>;

    /// When the bytes lie unchanged in a file: the file and the offset there,
    /// so that writers can let the kernel copy them.
    fn file_range(&self) -> Option<(Arc<SharedFile>, u64)> {
        None
    }
}

/// An open input file shared by the tensors that live in it.
#[derive(Debug)]
pub struct SharedFile {
    pub file: File,
    pub path: PathBuf,
    pub len: u64,
    /// A read-only mapping, made the first time it is asked for: `None`
    /// for an empty file, or why the system refused to map it.
    map: OnceLock<std::result::Result<Option<memmap2::Mmap>, String>>,
}

impl SharedFile {
    pub fn open(path: &Path) -> Result<Arc<Self>> {
        let file = open_regular(path)?;
        let meta = file.metadata().map_err(|e| Error::io(path, e))?;
        if meta.is_dir() {
            return Err(Error::malformed(path, "is a directory, expected a file"));
        }
        if !meta.is_file() {
            return Err(Error::malformed(
                path,
                "is not a regular file (a device, FIFO or socket is never read as a model)",
            ));
        }
        Ok(Arc::new(SharedFile {
            file,
            path: path.to_path_buf(),
            len: meta.len(),
            map: OnceLock::new(),
        }))
    }

    /// The whole file mapped read-only (an empty slice for an empty file).
    /// Pages are read on first touch, so a mapping costs address space, not
    /// memory. When the system refuses (an address-space limit below the
    /// file's size, a file that changed size) the error names the file and
    /// why: a caller either reads with [`SharedFile::read_exact_at`] or
    /// fails; it never goes on as if the file were empty.
    pub fn mapped(&self) -> Result<&[u8]> {
        match self.map.get_or_init(|| self.map_whole()) {
            Ok(Some(map)) => Ok(map),
            Ok(None) => Ok(&[]),
            Err(why) => Err(Error::Unreadable {
                path: self.path.clone(),
                msg: format!("cannot be memory-mapped ({why}), so it was not read"),
            }),
        }
    }

    fn map_whole(&self) -> std::result::Result<Option<memmap2::Mmap>, String> {
        if self.len == 0 {
            return Ok(None);
        }
        // SAFETY: the file is opened read-only; like every mmap-based
        // reader we rely on inputs not being truncated while we run.
        let map = unsafe { memmap2::Mmap::map(&self.file) }.map_err(|e| e.to_string())?;
        if map.len() as u64 != self.len {
            return Err(format!(
                "its size changed from {} to {} bytes while it was opened",
                self.len,
                map.len()
            ));
        }
        Ok(Some(map))
    }

    /// The whole of a small side file (an index, a config, a tokenizer),
    /// refused before any allocation when it is over `limit` bytes.
    pub fn read_whole(path: &Path, limit: u64) -> Result<Vec<u8>> {
        let file = SharedFile::open(path)?;
        if file.len > limit {
            return Err(Error::limit(
                path,
                format!("{} bytes, over the {limit}-byte limit for this file", file.len),
            ));
        }
        let mut buf = vec![0u8; file.len as usize];
        file.read_exact_at(0, &mut buf)?;
        Ok(buf)
    }

    /// Reads exactly `buf.len()` bytes at `offset`, naming the file and
    /// offset when the file is shorter.
    pub fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        self.file.read_exact_at(buf, offset).map_err(|e| {
            Error::malformed(
                &self.path,
                format!("cannot read {} bytes at offset {offset}: {e}", buf.len()),
            )
        })
    }
}

/// Opens `path` for reading, refusing anything but a regular file or a
/// folder before it can block: a FIFO or device named as a model (or as a
/// shard, or external data) would otherwise hang in `open` or be read forever.
pub fn open_regular(path: &Path) -> Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
    if !(meta.is_file() || meta.is_dir()) {
        return Err(Error::malformed(
            path,
            "is not a regular file (a device, FIFO or socket is never read as a model)",
        ));
    }
    // O_NONBLOCK: should the path become a FIFO after the check, open still returns.
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| Error::io(path, e))?;
    // The opened file again: still not a device, and not a kernel
    // pseudo-file (/proc, /sys: their sizes say nothing of what reads return).
    let meta = file.metadata().map_err(|e| Error::io(path, e))?;
    if !(meta.is_file() || meta.is_dir()) || on_pseudo_fs(&file) {
        return Err(Error::malformed(
            path,
            "is not a regular file on disk (a device, FIFO, socket or /proc, /sys entry is never read as a model)",
        ));
    }
    Ok(file)
}

/// True for files of the kernel's pseudo file systems (proc, sysfs,
/// debugfs, tracefs, securityfs, cgroup, bpf, devpts).
fn on_pseudo_fs(file: &File) -> bool {
    use std::os::fd::AsRawFd;
    const PSEUDO: [i64; 10] = [
        0x9fa0,      // proc
        0x6265_6572, // sysfs
        0x6462_6720, // debugfs
        0x7472_6163, // tracefs
        0x7363_6673, // securityfs
        0x0027_e0eb, // cgroup
        0x6367_7270, // cgroup2
        0xcafe_4a11, // bpf
        0x1cd1,      // devpts
        0x4249_4e4d, // binfmt_misc
    ];
    // SAFETY: fstatfs fills the zeroed struct for an open descriptor.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::fstatfs(file.as_raw_fd(), &mut st) };
    #[allow(clippy::unnecessary_cast, clippy::useless_conversion)]
    let kind = i64::from(st.f_type as i64);
    rc == 0 && PSEUDO.contains(&kind)
}

/// A byte range of an input file.
#[derive(Debug, Clone)]
pub struct FileRange {
    pub file: Arc<SharedFile>,
    pub offset: u64,
    pub len: u64,
}

impl DataSource for FileRange {
    fn len(&self) -> u64 {
        self.len
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        let end = offset.checked_add(buf.len() as u64);
        if end.is_none_or(|e| e > self.len) {
            return Err(Error::invalid(format!(
                "read of {} bytes at {offset} past the end of a {}-byte tensor",
                buf.len(),
                self.len
            )));
        }
        self.file.read_exact_at(self.offset + offset, buf)
    }
    fn file_range(&self) -> Option<(Arc<SharedFile>, u64)> {
        Some((self.file.clone(), self.offset))
    }
}

/// Bytes held in memory.
#[derive(Debug, Clone)]
pub struct MemSource(pub Arc<[u8]>);

impl MemSource {
    pub fn new(bytes: impl Into<Arc<[u8]>>) -> Self {
        MemSource(bytes.into())
    }
}

impl DataSource for MemSource {
    fn len(&self) -> u64 {
        self.0.len() as u64
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        let start = usize::try_from(offset).map_err(|_| Error::invalid("offset out of range"))?;
        let src = start
            .checked_add(buf.len())
            .and_then(|end| self.0.get(start..end))
            .ok_or_else(|| Error::internal("read past the end of an in-memory tensor"))?;
        buf.copy_from_slice(src);
        Ok(())
    }
}

/// A tensor of a model: its info, where its data comes from, and where it
/// lies in the input file (for `inspect`).
#[derive(Clone)]
pub struct Tensor {
    pub info: TensorInfo,
    pub data: Arc<dyn DataSource>,
    pub location: Option<Location>,
}

impl std::fmt::Debug for Tensor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tensor")
            .field("info", &self.info)
            .field("location", &self.location)
            .finish()
    }
}

/// A tensor's place in its input file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    pub file: PathBuf,
    pub offset: u64,
}

impl Tensor {
    pub fn new(info: TensorInfo, data: Arc<dyn DataSource>) -> Result<Self> {
        if data.len() != info.byte_len {
            return Err(Error::invalid(format!(
                "tensor '{}': data holds {} bytes, its dtype and shape need {}",
                info.name,
                data.len(),
                info.byte_len
            )));
        }
        Ok(Tensor {
            info,
            data,
            location: None,
        })
    }

    /// Reads the whole tensor into memory (for small tensors and tests).
    pub fn read_all(&self) -> Result<Vec<u8>> {
        let len = usize::try_from(self.info.byte_len)
            .map_err(|_| Error::invalid(format!("tensor '{}' is too large for memory", self.info.name)))?;
        let mut buf = vec![0u8; len];
        self.data.read_at(0, &mut buf)?;
        Ok(buf)
    }
}
