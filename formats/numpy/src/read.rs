//! Reading `.npy` arrays and `.npz` archives. An array is a lazy view of
//! the file: a plain range for little-endian C-order data, a byte-swap view
//! for big-endian data, a transposing (strided) view for Fortran order. A
//! deflated `.npz` member is inflated, once, when its data is first read,
//! into a temporary file, never past its declared size.

use modelconv_ir::view::{self, ByteSwap};
use modelconv_ir::{
    DType, DataSource, Error, FileRange, Location, Metadata, Model, Result, SharedFile, Tensor, TensorInfo,
};
use std::io::Read;
use std::path::Path;
use std::sync::{Arc, Mutex};

/// Largest header accepted (numpy's own default limit is 10 000 bytes).
pub const MAX_HEADER: usize = 1 << 20;
/// Most members an `.npz` may have.
const MAX_MEMBERS: usize = 1 << 20;
/// Deflate cannot expand data more than about 1032 times; a member that
/// claims more is a bomb.
pub const MAX_RATIO: u64 = 1100;

/// One array: its header read from `src` (a file or an npz member) and
/// its data as a view of `src`.
/// `peek` reads the header bytes (a deflated member inflates only its start).
fn array(
    src: Arc<dyn DataSource>,
    peek: &dyn Fn(u64, &mut [u8]) -> Result<()>,
    name: &str,
    path: &Path,
    hint: Option<DType>,
    location: Option<(u64, &Path)>,
) -> Result<Tensor> {
    let at = |msg: String| Error::malformed(path, format!("array '{name}': {msg}"));
    let mut head = vec![0u8; 12.min(src.len() as usize)];
    peek(0, &mut head)?;
    let f = modelconv_npy::framing(&head).map_err(at)?;
    if f.data_start > MAX_HEADER {
        return Err(Error::limit(
            path,
            format!(
                "array '{name}': a {}-byte header, over the limit of {MAX_HEADER}",
                f.data_start
            ),
        ));
    }
    if f.data_start as u64 > src.len() {
        return Err(Error::truncated(
            path,
            src.len(),
            format!("array '{name}': the header runs to byte {}, past the end", f.data_start),
        ));
    }
    let mut text = vec![0u8; f.data_start - f.header_start];
    peek(f.header_start as u64, &mut text)?;
    let h = modelconv_npy::header(&text).map_err(at)?;
    let descr = match &h.descr {
        modelconv_npy::Lit::Str(s) => s.clone(),
        other if modelconv_npy::descr_has_object(other) => {
            return Err(at("a structured array with object fields: its data is a pickle, which convert does not run (`modelconv scan` shows what it would call)".into()))
        }
        _ => return Err(at("a structured (record) array is not a tensor".into())),
    };
    let (dtype, big_endian) = modelconv_npy::dtype_from_descr(&descr, hint).map_err(at)?;
    let info = TensorInfo::new(name, dtype, h.shape.clone()).map_err(|e| e.in_file(path))?;
    let data_start = f.data_start as u64;
    let available = src.len() - data_start;
    if info.byte_len > available {
        return Err(Error::truncated(
            path,
            location.map_or(0, |(o, _)| o) + src.len(),
            format!(
                "array '{name}': shape {:?} of {descr} needs {} bytes, the data holds {available}",
                h.shape, info.byte_len
            ),
        ));
    }
    let es = dtype.type_size();
    let mut data: Arc<dyn DataSource> = Arc::new(view::SubRange::new(src, data_start, info.byte_len)?);
    if big_endian {
        data = Arc::new(ByteSwap::new(data, es)?);
    }
    if h.fortran_order && h.shape.len() > 1 {
        // Element (i0, i1, …) lies at i0 + i1·d0 + i2·d0·d1 + …
        let mut stride = Vec::with_capacity(h.shape.len());
        let mut acc = 1u64;
        for d in &h.shape {
            stride.push(acc);
            acc = acc.saturating_mul(*d);
        }
        data = view::strided(data, es, 0, &h.shape, &stride)?;
    }
    let mut t = Tensor::new(info, data).map_err(|e| e.in_file(path))?;
    if let (Some((offset, file)), false, false) = (location, big_endian, h.fortran_order && h.shape.len() > 1) {
        t.location = Some(Location {
            file: file.to_path_buf(),
            offset: offset + data_start,
        });
    }
    Ok(t)
}

/// The data type `--dtype-hint` names, if given.
pub fn hint(opts: &modelconv_ir::OpenOptions) -> Result<Option<DType>> {
    opts.options
        .get(crate::HINT_OPTION)
        .map(|h| {
            DType::from_user(h)
                .filter(|d| modelconv_npy::void_types(2).contains(d) || modelconv_npy::void_types(1).contains(d))
                .ok_or_else(|| Error::invalid(format!("--dtype-hint {h}: use BF16, F8_E4M3 or F8_E5M2")))
        })
        .transpose()
}

/// Opens a `.npy` file (one tensor, named after the file) or an `.npz`
/// archive (one tensor per `NAME.npy` member).
pub fn open(path: &Path, hint: Option<DType>) -> Result<Model> {
    let file = SharedFile::open(path)?;
    let mut magic = [0u8; 6];
    let n = magic.len().min(file.len as usize);
    file.read_exact_at(0, &mut magic[..n])?;
    let mut model = Model {
        format: crate::NAME,
        path: path.to_path_buf(),
        metadata: Metadata::new(),
        declared_order: true,
        ..Default::default()
    };
    if magic.starts_with(b"\x93NUMPY") {
        let name = path
            .file_stem()
            .map_or_else(|| "array".to_string(), |s| s.to_string_lossy().into_owned());
        let len = file.len;
        let src: Arc<dyn DataSource> = Arc::new(FileRange {
            file: file.clone(),
            offset: 0,
            len,
        });
        let peek = |o: u64, b: &mut [u8]| src.read_at(o, b);
        model
            .tensors
            .push(array(src.clone(), &peek, &name, path, hint, Some((0, path)))?);
        return Ok(model);
    }
    // numpy.load reads the directory with CPython's zipfile; when that
    // reading lists other members than ours (a tampered archive), what we
    // would read is not what numpy loads. (A file too big to map under an
    // address-space limit is read by ranges, without this check.)
    let differ = file.mapped().ok().and_then(modelconv_pickle::zipscan::readings_differ);
    if let Some((ours, python)) = differ {
        return Err(Error::malformed(
            path,
            format!(
                "the zip directory lists {ours} members as most readers read it and {python} as Python's zipfile (numpy.load) reads it: a tampered archive"
            ),
        ));
    }
    let mut zip = zip::ZipArchive::new(&file.file).map_err(|e| Error::malformed(path, format!("zip: {e}")))?;
    if zip.len() > MAX_MEMBERS {
        return Err(Error::limit(
            path,
            format!("{} members, over the limit of {MAX_MEMBERS}", zip.len()),
        ));
    }
    let mut left_out = Vec::new();
    for i in 0..zip.len() {
        modelconv_ir::check_interrupt()?;
        let e = zip
            .by_index_raw(i)
            .map_err(|e| Error::malformed(path, format!("zip entry {i}: {e}")))?;
        let member = e.name().to_string();
        let Some(name) = member.strip_suffix(".npy") else {
            if !e.is_dir() {
                left_out.push(member);
            }
            continue;
        };
        let start = e.data_start();
        let (csize, size) = (e.compressed_size(), e.size());
        if start.checked_add(csize).is_none_or(|end| end > file.len) {
            return Err(Error::truncated(
                path,
                file.len,
                format!("member {member}: {csize} bytes at byte {start} run past the end of the file"),
            ));
        }
        let crc = e.crc32();
        let stored = e.compression() == zip::CompressionMethod::Stored;
        let loc = stored.then_some((start, path));
        match e.compression() {
            zip::CompressionMethod::Stored => {
                let src: Arc<dyn DataSource> = Arc::new(FileRange {
                    file: file.clone(),
                    offset: start,
                    len: size.min(csize),
                });
                let peek = |o: u64, b: &mut [u8]| src.read_at(o, b);
                model.tensors.push(array(src.clone(), &peek, name, path, hint, loc)?);
            }
            zip::CompressionMethod::Deflated => {
                if size > csize.saturating_mul(MAX_RATIO).max(1 << 16) {
                    return Err(Error::limit(
                        path,
                        format!(
                            "member {member} claims {size} bytes from {csize} compressed: more than deflate can expand (×{MAX_RATIO}); a zip bomb"
                        ),
                    ));
                }
                let src = Arc::new(Inflated {
                    file: file.clone(),
                    member: member.clone(),
                    offset: start,
                    compressed: csize,
                    len: size,
                    crc,
                    copy: Mutex::new(None),
                });
                let peek = |o: u64, b: &mut [u8]| src.peek(o, b);
                model.tensors.push(array(src.clone(), &peek, name, path, hint, loc)?);
            }
            other => {
                return Err(Error::unsupported(format!(
                    "{}: member {member} is compressed with {other}; numpy writes stored or deflated members",
                    path.display()
                )))
            }
        }
    }
    if !left_out.is_empty() {
        model
            .notes
            .push(format!("not arrays, left out: {}", left_out.join(", ")));
    }
    model.check_unique_names().map_err(|e| e.in_file(path))?;
    Ok(model)
}

/// A deflated `.npz` member, inflated into a temporary file the first time
/// its data is read (its header is read by inflating just the start).
struct Inflated {
    file: Arc<SharedFile>,
    member: String,
    offset: u64,
    compressed: u64,
    /// The declared size: never inflated past it, and it must be reached.
    len: u64,
    /// The archive's CRC-32 of the inflated bytes.
    crc: u32,
    copy: Mutex<Option<Arc<std::fs::File>>>,
}

impl Inflated {
    fn decoder(&self) -> flate2::read::DeflateDecoder<std::io::Take<FileReader>> {
        let r = FileReader {
            file: self.file.clone(),
            pos: self.offset,
        };
        flate2::read::DeflateDecoder::new(r.take(self.compressed))
    }

    fn bad(&self, msg: String) -> Error {
        Error::malformed(&self.file.path, format!("member {}: {msg}", self.member))
    }

    /// The whole member, inflated into a temporary file (once).
    fn copy(&self) -> Result<Arc<std::fs::File>> {
        let mut slot = self.copy.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(f) = slot.as_ref() {
            return Ok(f.clone());
        }
        let mut tmp = tempfile::tempfile().map_err(|e| Error::io(&self.file.path, e))?;
        let mut dec = Crc {
            inner: self.decoder().take(self.len + 1),
            crc: crc32fast::Hasher::new(),
        };
        let n = std::io::copy(&mut dec, &mut tmp).map_err(|e| self.bad(format!("inflate: {e}")))?;
        if n != self.len {
            return Err(self.bad(format!("inflates to {n} bytes, the archive says {}", self.len)));
        }
        let crc = dec.crc.finalize();
        if crc != self.crc {
            return Err(self.bad(format!("CRC-32 {crc:08x}, the archive says {:08x}", self.crc)));
        }
        let f = Arc::new(tmp);
        *slot = Some(f.clone());
        Ok(f)
    }
}

impl Inflated {
    /// Bytes of the start (the header), inflating only that far.
    fn peek(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        self.check(offset, buf.len())?;
        let mut head = vec![0u8; (offset as usize) + buf.len()];
        self.decoder()
            .read_exact(&mut head)
            .map_err(|e| self.bad(format!("inflate: {e}")))?;
        buf.copy_from_slice(&head[offset as usize..]);
        Ok(())
    }

    fn check(&self, offset: u64, n: usize) -> Result<()> {
        match offset.checked_add(n as u64) {
            Some(end) if end <= self.len => Ok(()),
            _ => Err(self.bad(format!("read of {n} bytes at {offset} past its {} bytes", self.len))),
        }
    }
}

/// A reader that hashes what passes through it.
struct Crc<R> {
    inner: R,
    crc: crc32fast::Hasher,
}

impl<R: Read> Read for Crc<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.crc.update(&buf[..n]);
        Ok(n)
    }
}

impl DataSource for Inflated {
    fn len(&self) -> u64 {
        self.len
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        self.check(offset, buf.len())?;
        let f = self.copy()?;
        std::os::unix::fs::FileExt::read_exact_at(&*f, buf, offset).map_err(|e| Error::io(&self.file.path, e))
    }
}

/// Sequential reads of a shared file from a position.
struct FileReader {
    file: Arc<SharedFile>,
    pos: u64,
}

impl Read for FileReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = std::os::unix::fs::FileExt::read_at(&self.file.file, buf, self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}
