//! Output files: written to a temporary file beside the destination, synced,
//! and renamed into place only after success. Dropping an uncommitted
//! [`OutputFile`] deletes the temporary file, so a failure never leaves a
//! partial output behind.

use crate::{DataSource, Error, Progress, Result, SharedFile, WriteOptions};
use rayon::prelude::*;
use std::io::Write;
use std::os::unix::io::{AsFd, AsRawFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// Temporary files being written now, so that an interrupt that cannot wait
/// for the writer to notice can still remove them ([`remove_live_temps`]).
static LIVE_TEMPS: std::sync::Mutex<Vec<PathBuf>> = std::sync::Mutex::new(Vec::new());

/// Removes every temporary output file still being written (for an
/// interrupt that ends the process without unwinding).
pub fn remove_live_temps() {
    let list = match LIVE_TEMPS.try_lock() {
        Ok(l) => l.clone(),
        Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner().clone(),
        Err(std::sync::TryLockError::WouldBlock) => return,
    };
    for p in list {
        let _ = std::fs::remove_file(p);
    }
}

/// Keeps a temporary file's path in [`LIVE_TEMPS`] while it lives.
struct LiveTemp(PathBuf);

impl LiveTemp {
    fn new(path: &Path) -> Self {
        if let Ok(mut l) = LIVE_TEMPS.lock() {
            l.push(path.to_path_buf());
        }
        LiveTemp(path.to_path_buf())
    }
}

impl Drop for LiveTemp {
    fn drop(&mut self) {
        if let Ok(mut l) = LIVE_TEMPS.lock() {
            l.retain(|p| *p != self.0);
        }
    }
}

/// Asks every running write to stop at its next chunk (called from the
/// binary's Ctrl-C handler; only touches an atomic, so it is signal-safe).
pub fn request_interrupt() {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// Returns [`Error::Interrupted`] once an interrupt was requested.
pub fn check_interrupt() -> Result<()> {
    if INTERRUPTED.load(Ordering::Relaxed) {
        Err(Error::Interrupted)
    } else {
        Ok(())
    }
}

const BUF_LEN: usize = 1 << 20;
/// Chunk of tensor data pulled from a source at a time.
const CHUNK: u64 = 4 << 20;
/// Smallest chunk a source without a preferred chunk is pulled in.
const MIN_CHUNK: u64 = 256 << 10;
/// copy_file_range runs at cp's speed only from and to offsets on this
/// boundary (the page cache's large folios): measured on ext4, a 1 GB copy
/// at 4 KiB-aligned offsets takes 1.3x one at 64 KiB-aligned offsets.
const COPY_ALIGN: u64 = 64 << 10;

/// Where an output's bytes go.
enum Sink {
    /// A temporary file beside the destination, renamed into place at the end.
    Temp(tempfile::NamedTempFile, LiveTemp),
    /// Standard output, a FIFO or a character device, written in order
    /// (what is written is gone: a failure cannot take it back).
    Stream(std::fs::File),
}

/// The path that means standard output (and standard input).
pub const STDIO: &str = "-";

/// Whether writing to `dest` streams to it: `-` (standard output), or an
/// existing FIFO or character device, reached directly or through
/// symbolic links (`/dev/stdout`). Such a destination is never replaced.
pub fn is_stream(dest: &Path) -> bool {
    use std::os::unix::fs::FileTypeExt;
    if is_stdout(dest) {
        return true;
    }
    std::fs::metadata(dest).is_ok_and(|m| m.file_type().is_fifo() || m.file_type().is_char_device())
}

/// `-`, and the names of descriptor 1 (`/dev/stdout`): written through our
/// own standard output, whatever it is (a pipe, a terminal, or a regular
/// file the shell opened), never opened or replaced by name.
fn is_stdout(dest: &Path) -> bool {
    dest.as_os_str() == STDIO
        || [
            Path::new("/dev/stdout"),
            Path::new("/dev/fd/1"),
            Path::new("/proc/self/fd/1"),
        ]
        .contains(&dest)
}

/// A file being written; becomes `dest` on [`OutputFile::commit`].
pub struct OutputFile {
    dest: PathBuf,
    sink: Sink,
    buf: Vec<u8>,
    pos: u64,
    /// Bytes up to here are flushed and their writeback has been started.
    writeback_from: u64,
    fsync: bool,
    /// A kernel copy not issued yet, so that byte ranges that follow each
    /// other in the input and the output become one large copy.
    pending: Option<PendingCopy>,
}

struct PendingCopy {
    source: Arc<SharedFile>,
    offset: u64,
    len: u64,
}

/// Start disk writeback every this many bytes, so the final fsync overlaps
/// with the copy instead of following it.
const WRITEBACK_STEP: u64 = 8 << 20;

/// Refuses a destination that exists and is not a regular file: a device,
/// FIFO, socket, folder or symbolic link is never unlinked or replaced
/// (as root, replacing `/dev/null` would break the machine).
pub fn check_replaceable(dest: &Path) -> Result<()> {
    use std::os::unix::fs::FileTypeExt;
    let t = match std::fs::symlink_metadata(dest) {
        Ok(m) => m.file_type(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io(dest, e)),
    };
    let what = if t.is_file() {
        return Ok(());
    } else if t.is_dir() {
        "a folder"
    } else if t.is_symlink() {
        "a symbolic link"
    } else if t.is_char_device() {
        "a character device"
    } else if t.is_block_device() {
        "a block device"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_socket() {
        "a socket"
    } else {
        "not a regular file"
    };
    Err(Error::invalid(format!(
        "{}: the output exists and is {what}; only a regular file is ever replaced (choose another path)",
        dest.display()
    )))
}

impl OutputFile {
    /// Creates the temporary file in `dest`'s directory. A destination that
    /// exists and is not a regular file is refused ([`check_replaceable`]).
    pub fn create(dest: &Path, opts: &WriteOptions) -> Result<Self> {
        if is_stream(dest) {
            return Self::stream(dest);
        }
        check_replaceable(dest)?;
        let dir = match dest.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        let name = dest
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let tmp = tempfile::Builder::new()
            .prefix(&format!(".{name}."))
            .suffix(".tmp")
            // What any new file gets (0666 less the umask), not tempfile's 0600.
            .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o666))
            .tempfile_in(dir)
            .map_err(|e| Error::io(dest, e))?;
        let live = LiveTemp::new(tmp.path());
        Ok(OutputFile {
            dest: dest.to_path_buf(),
            sink: Sink::Temp(tmp, live),
            buf: Vec::with_capacity(BUF_LEN),
            pos: 0,
            writeback_from: 0,
            fsync: !opts.no_fsync,
            pending: None,
        })
    }

    /// Writes to standard output (`-`), or to the FIFO or character device
    /// `dest` is, in order, without a temporary file ([`is_stream`]).
    fn stream(dest: &Path) -> Result<Self> {
        let file = if is_stdout(dest) {
            // A duplicate of descriptor 1: closing it leaves stdout open.
            std::io::stdout()
                .as_fd()
                .try_clone_to_owned()
                .map(std::fs::File::from)
                .map_err(|e| Error::io(dest, e))?
        } else {
            use std::os::unix::fs::OpenOptionsExt;
            // Never created or truncated: it exists, and is not a regular
            // file. Non-blocking open: a FIFO nobody reads is an error
            // (ENXIO), not a hang; then writes block as usual.
            let f = std::fs::OpenOptions::new()
                .write(true)
                .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
                .open(dest)
                .map_err(|e| match e.raw_os_error() {
                    Some(libc::ENXIO) => Error::invalid(format!(
                        "{}: the FIFO has no reader; start the reading side first",
                        dest.display()
                    )),
                    _ => Error::io(dest, e),
                })?;
            // SAFETY: fcntl on a descriptor we own, with integer arguments.
            unsafe {
                let flags = libc::fcntl(f.as_raw_fd(), libc::F_GETFL);
                if flags >= 0 {
                    libc::fcntl(f.as_raw_fd(), libc::F_SETFL, flags & !libc::O_NONBLOCK);
                }
            }
            f
        };
        Ok(OutputFile {
            dest: dest.to_path_buf(),
            sink: Sink::Stream(file),
            buf: Vec::with_capacity(BUF_LEN),
            pos: 0,
            writeback_from: 0,
            fsync: false,
            pending: None,
        })
    }

    /// The open file the bytes go to.
    fn file(&self) -> &std::fs::File {
        match &self.sink {
            Sink::Temp(t, _) => t.as_file(),
            Sink::Stream(f) => f,
        }
    }

    pub fn dest(&self) -> &Path {
        &self.dest
    }

    /// Bytes written so far.
    pub fn position(&self) -> u64 {
        self.pos
    }

    pub fn write_all(&mut self, bytes: &[u8]) -> Result<()> {
        if bytes.is_empty() {
            return Ok(());
        }
        if self.pending.is_some() {
            self.flush_pending()?;
        }
        if self.buf.len() + bytes.len() > BUF_LEN {
            self.flush()?;
        }
        if bytes.len() >= BUF_LEN {
            self.file().write_all(bytes).map_err(|e| Error::io(&self.dest, e))?;
        } else {
            self.buf.extend_from_slice(bytes);
        }
        self.pos += bytes.len() as u64;
        Ok(())
    }

    /// Writes zero bytes until the position is a multiple of `align`.
    pub fn pad_to(&mut self, align: u64) -> Result<()> {
        let pad = padding(self.pos, align);
        self.write_all(&vec![0u8; pad as usize])
    }

    fn flush(&mut self) -> Result<()> {
        self.flush_pending()?;
        if !self.buf.is_empty() {
            self.file().write_all(&self.buf).map_err(|e| Error::io(&self.dest, e))?;
            self.buf.clear();
        }
        self.start_writeback(self.pos);
        Ok(())
    }

    /// Asks the kernel to begin writing what is flushed so far to disk,
    /// without waiting, so that the fsync in [`OutputFile::commit`] overlaps
    /// with the copy instead of following it. Only an optimisation: write
    /// errors are still reported by that fsync.
    fn start_writeback(&mut self, flushed: u64) {
        if !self.fsync || flushed - self.writeback_from < WRITEBACK_STEP {
            return;
        }
        let (Ok(from), Ok(len)) = (
            libc::off64_t::try_from(self.writeback_from),
            libc::off64_t::try_from(flushed - self.writeback_from),
        ) else {
            return;
        };
        // SAFETY: a plain syscall on an open descriptor, no pointers.
        unsafe {
            libc::sync_file_range(self.file().as_raw_fd(), from, len, libc::SYNC_FILE_RANGE_WRITE);
        }
        self.writeback_from = flushed;
    }

    /// Streams all of `src` into the file: the kernel copies byte ranges of
    /// input files; computed sources are produced in parallel chunks, a few
    /// at a time, so memory stays bounded.
    pub fn write_source(&mut self, src: &dyn DataSource, progress: &dyn Progress) -> Result<()> {
        let len = src.len();
        if let Some((file, offset)) = src.file_range() {
            let next = self
                .pending
                .as_mut()
                .filter(|p| Arc::ptr_eq(&p.source, &file) && p.offset + p.len == offset);
            // A small range that continues the pending copy joins it (a
            // norm between two matrices must not split one kernel copy in
            // three); a small range on its own goes through the buffer.
            if next.is_some() || len >= BUF_LEN as u64 {
                if let Some(p) = next {
                    p.len += len;
                } else {
                    self.flush()?;
                    self.pending = Some(PendingCopy {
                        source: file,
                        offset,
                        len,
                    });
                }
                self.pos += len;
                progress.advance(len);
                return Ok(());
            }
        }
        self.write_chunks(src, progress, &mut |_| {})
    }

    /// Like [`OutputFile::write_source`], showing every byte to `inspect`
    /// on its way (for checksums); never a kernel copy.
    pub fn write_source_inspected(
        &mut self,
        src: &dyn DataSource,
        progress: &dyn Progress,
        inspect: &mut dyn FnMut(&[u8]),
    ) -> Result<()> {
        self.write_chunks(src, progress, inspect)
    }

    /// Pulls `src` in parallel chunks, a window at a time, and writes them in order.
    fn write_chunks(
        &mut self,
        src: &dyn DataSource,
        progress: &dyn Progress,
        inspect: &mut dyn FnMut(&[u8]),
    ) -> Result<()> {
        let len = src.len();
        let granule = src.granule().max(1);
        let window = (rayon::current_num_threads() as u64 * 2).max(2);
        // Without a preference, a tensor is pulled in at least four windows
        // (chunks of 256 KiB to 4 MiB), so the buffers are reused within it
        // rather than all fresh pages.
        let want = src
            .preferred_chunk()
            .unwrap_or_else(|| (len / (window * 4)).clamp(MIN_CHUNK, CHUNK));
        let chunk = (want / granule).max(1) * granule;
        // Buffers reused from window to window (no fresh zeroed memory per chunk).
        let mut pool: Vec<Vec<u8>> = Vec::new();
        let mut start = 0u64;
        while start < len {
            check_interrupt()?;
            let ranges: Vec<(u64, u64)> = (0..window)
                .map(|i| start + i * chunk)
                .take_while(|&s| s < len)
                .map(|s| (s, chunk.min(len - s)))
                .collect();
            pool.resize_with(ranges.len().max(pool.len()), Vec::new);
            ranges
                .par_iter()
                .zip(pool.par_iter_mut())
                .try_for_each(|(&(s, n), b)| {
                    b.resize(n as usize, 0);
                    src.read_at(s, b)
                })?;
            for b in &pool[..ranges.len()] {
                inspect(b);
                self.write_all(b)?;
                progress.advance(b.len() as u64);
            }
            start = ranges.last().map_or(len, |&(s, n)| s + n);
        }
        Ok(())
    }

    /// Issues the pending kernel copy (or, where the kernel cannot, copies
    /// through a buffer).
    fn flush_pending(&mut self) -> Result<()> {
        let Some(p) = self.pending.take() else { return Ok(()) };
        // The pending copy is the last thing queued: it ends at `pos`.
        let base = self.pos - p.len;
        // Where source and destination sit alike on the copy boundary, the
        // bytes before it go through the buffer and the kernel copies from
        // the boundary on.
        let skew = p.offset % COPY_ALIGN;
        let head = if skew != 0 && skew == base % COPY_ALIGN && p.len > COPY_ALIGN * 16 {
            COPY_ALIGN - skew
        } else {
            0
        };
        // Out of phase, copy_file_range costs 1.33x cp (measured on ext4);
        // writing from a prefaulted mapping of the source costs what cp does.
        if skew != base % COPY_ALIGN && p.len > COPY_ALIGN * 16 {
            return self.mapped_copy(&p.source, p.offset, base, p.len);
        }
        self.buffered_copy(&p.source, p.offset, head)?;
        let done = head + self.kernel_copy(&p.source, p.offset + head, base + head, p.len - head)?;
        self.buffered_copy(&p.source, p.offset + done, p.len - done)
    }

    /// `len` bytes of `source` from `offset` written from read-only
    /// mappings of it, one window at a time (each prefaulted in one call,
    /// unmapped before the next, so memory stays bounded), to output
    /// offset `base`. A range past the file's end is refused before any
    /// mapping (a mapping past it would fault).
    fn mapped_copy(&mut self, source: &SharedFile, offset: u64, base: u64, len: u64) -> Result<()> {
        const WINDOW: u64 = 32 << 20;
        let page = COPY_ALIGN;
        let end = offset.checked_add(len).filter(|&e| e <= source.len).ok_or_else(|| {
            Error::malformed(
                &source.path,
                format!("cannot read {len} bytes at offset {offset}: the file ended early"),
            )
        })?;
        let mut at = offset;
        while at < end {
            check_interrupt()?;
            let n = (end - at).min(WINDOW);
            // The length now, not at open: a file cut short since would
            // fault where mapped, so it is refused by name instead.
            let now = source.file.metadata().map_err(|e| Error::io(&source.path, e))?.len();
            if now < at + n {
                return Err(Error::malformed(
                    &source.path,
                    format!("cannot read {} bytes at offset {at}: the file ended early", end - at),
                ));
            }
            let start = at / page * page;
            let lead = (at - start) as usize;
            // SAFETY: a read-only private view of a regular file we hold
            // open, within its length as checked above; the slice lives
            // only for this write.
            let map = unsafe {
                memmap2::MmapOptions::new()
                    .offset(start)
                    .len(lead + n as usize)
                    .populate()
                    .map(&source.file)
            };
            let map = match map {
                Ok(m) => m,
                // Where the system will not map it, the kernel copies.
                Err(_) => {
                    let copied = self.kernel_copy(source, at, base + (at - offset), end - at)?;
                    return self.buffered_copy(source, at + copied, end - at - copied);
                }
            };
            self.file()
                .write_all(&map[lead..lead + n as usize])
                .map_err(|e| Error::io(&self.dest, e))?;
            at += n;
            self.start_writeback(base + (at - offset));
        }
        Ok(())
    }

    /// `len` bytes of `source` from `offset` written through a buffer.
    fn buffered_copy(&mut self, source: &SharedFile, offset: u64, len: u64) -> Result<()> {
        let mut buf = vec![0u8; CHUNK.min(len) as usize];
        let mut done = 0u64;
        while done < len {
            check_interrupt()?;
            let n = (len - done).min(buf.len() as u64) as usize;
            source.read_exact_at(offset + done, &mut buf[..n])?;
            self.file().write_all(&buf[..n]).map_err(|e| Error::io(&self.dest, e))?;
            done += n as u64;
        }
        Ok(())
    }

    /// copy_file_range of `len` bytes from `file` at `offset` to the file
    /// position (output offset `base`); the bytes copied, short of `len`
    /// only when the kernel or file system cannot copy at all (nothing
    /// written by it then).
    fn kernel_copy(&mut self, source: &SharedFile, offset: u64, base: u64, len: u64) -> Result<u64> {
        let mut done = 0u64;
        while done < len {
            check_interrupt()?;
            let mut off_in = libc::loff_t::try_from(offset + done).map_err(|_| Error::invalid("offset too large"))?;
            // Durable outputs copy in steps, so writeback can start behind
            // each one; otherwise large calls cost the fewest syscalls.
            let step = if self.fsync { CHUNK * 4 } else { CHUNK * 64 };
            let want = (len - done).min(step) as usize;
            // SAFETY: both descriptors are open for the duration of the call;
            // off_in points to a live local; a null off_out uses the file position.
            let n = unsafe {
                libc::copy_file_range(
                    source.file.as_raw_fd(),
                    &mut off_in,
                    self.file().as_raw_fd(),
                    std::ptr::null_mut(),
                    want,
                    0,
                )
            };
            if n < 0 {
                let err = std::io::Error::last_os_error();
                let fallback = matches!(
                    err.raw_os_error(),
                    Some(libc::EXDEV | libc::ENOSYS | libc::EINVAL | libc::EOPNOTSUPP | libc::EBADF)
                );
                if done == 0 && fallback {
                    return Ok(0);
                }
                return Err(Error::io(&self.dest, err));
            }
            if n == 0 {
                return Err(Error::malformed(
                    &source.path,
                    format!(
                        "cannot read {} bytes at offset {}: the file ended early",
                        len - done,
                        offset + done
                    ),
                ));
            }
            done += n as u64;
            self.start_writeback(base + done);
        }
        Ok(done)
    }

    /// Writes out what is buffered and frees the buffer: for a plan that
    /// holds many finished files open until all are committed.
    pub fn finish(&mut self) -> Result<()> {
        self.flush()?;
        self.buf = Vec::new();
        Ok(())
    }

    /// Flushes, syncs (unless asked not to) and renames the file into place.
    pub fn commit(mut self) -> Result<()> {
        self.flush()?;
        if self.fsync {
            self.file().sync_all().map_err(|e| Error::io(&self.dest, e))?;
        }
        let dest = self.dest.clone();
        match self.sink {
            Sink::Stream(_) => Ok(()),
            Sink::Temp(tmp, _live) => {
                // Again, just before the rename: the path may have changed meanwhile.
                check_replaceable(&dest)?;
                tmp.persist(&dest).map_err(|e| Error::io(&dest, e.error))?;
                Ok(())
            }
        }
    }
}

/// Commits several outputs once all of them are complete.
pub fn commit_all(files: Vec<OutputFile>) -> Result<()> {
    for f in files {
        f.commit()?;
    }
    Ok(())
}

/// Bytes of padding that bring `pos` to a multiple of `align`.
pub fn padding(pos: u64, align: u64) -> u64 {
    if align <= 1 {
        0
    } else {
        (align - pos % align) % align
    }
}

/// What writes one file's bytes, in order, into its [`OutputFile`].
pub type FileBody = Box<dyn FnOnce(&mut OutputFile, &dyn Progress) -> Result<()>>;

/// The plan of a format whose output is one file written front to back:
/// the format fixes the layout at plan time and hands over the body that
/// writes it; creating, committing and the plan's accounting are here, once.
pub struct OneFilePlan {
    dest: PathBuf,
    opts: WriteOptions,
    data_bytes: u64,
    streamable: bool,
    body: FileBody,
    /// The file's length, when the format knows it at plan time.
    size: Option<u64>,
}

impl OneFilePlan {
    /// `streamable`: the body never seeks back, so `dest` may be standard
    /// output or a FIFO.
    pub fn boxed(
        dest: &Path,
        opts: &WriteOptions,
        data_bytes: u64,
        streamable: bool,
        body: impl FnOnce(&mut OutputFile, &dyn Progress) -> Result<()> + 'static,
    ) -> Box<dyn crate::WritePlan> {
        Self::planned(dest, opts, (data_bytes, None), streamable, Box::new(body))
    }

    /// [`OneFilePlan::boxed`], for a format that knows the file's length.
    pub fn boxed_sized(
        dest: &Path,
        opts: &WriteOptions,
        (data_bytes, size): (u64, u64),
        streamable: bool,
        body: impl FnOnce(&mut OutputFile, &dyn Progress) -> Result<()> + 'static,
    ) -> Box<dyn crate::WritePlan> {
        Self::planned(dest, opts, (data_bytes, Some(size)), streamable, Box::new(body))
    }

    fn planned(
        dest: &Path,
        opts: &WriteOptions,
        (data_bytes, size): (u64, Option<u64>),
        streamable: bool,
        body: FileBody,
    ) -> Box<dyn crate::WritePlan> {
        Box::new(OneFilePlan {
            dest: dest.to_path_buf(),
            opts: opts.clone(),
            data_bytes,
            streamable,
            body,
            size,
        })
    }
}

impl crate::WritePlan for OneFilePlan {
    fn outputs(&self) -> Vec<PathBuf> {
        vec![self.dest.clone()]
    }
    fn data_bytes(&self) -> u64 {
        self.data_bytes
    }
    fn streamable(&self) -> bool {
        self.streamable
    }
    fn sizes(&self) -> Option<Vec<u64>> {
        self.size.map(|s| vec![s])
    }
    fn write(self: Box<Self>, progress: &dyn Progress) -> Result<()> {
        let mut out = OutputFile::create(&self.dest, &self.opts)?;
        (self.body)(&mut out, progress)?;
        out.commit()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{FileRange, MemSource, NoProgress, SharedFile};

    #[test]
    fn only_regular_files_are_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: a valid NUL-terminated path in a private temp folder.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(dir.path().join("target"), &link).unwrap();
        for dest in [&fifo, &link, &dir.path().to_path_buf()] {
            let err = OutputFile::create(dest, &WriteOptions::default())
                .err()
                .expect("refused");
            assert!(matches!(err, Error::Invalid(_)), "{err}");
        }
        use std::os::unix::fs::FileTypeExt;
        assert!(std::fs::symlink_metadata(&fifo).unwrap().file_type().is_fifo());
        assert!(std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink());
        // A regular file is replaced.
        let file = dir.path().join("f");
        std::fs::write(&file, b"old").unwrap();
        let mut f = OutputFile::create(&file, &WriteOptions::default()).unwrap();
        f.write_all(b"new").unwrap();
        f.commit().unwrap();
        assert_eq!(std::fs::read(&file).unwrap(), b"new");
    }

    #[test]
    fn no_file_until_commit_and_none_after_drop() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("out.bin");
        let mut f = OutputFile::create(&dest, &WriteOptions::default()).unwrap();
        f.write_all(b"abc").unwrap();
        assert!(!dest.exists());
        drop(f);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);

        let mut f = OutputFile::create(&dest, &WriteOptions::default()).unwrap();
        f.write_all(b"abc").unwrap();
        f.pad_to(8).unwrap();
        f.commit().unwrap();
        assert_eq!(std::fs::read(&dest).unwrap(), b"abc\0\0\0\0\0");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    /// `in.bin` of `len` bytes `i * mul % modulo` in `dir`, opened.
    fn patterned_input(dir: &Path, len: usize, mul: usize, modulo: usize) -> (Vec<u8>, Arc<SharedFile>) {
        let input = dir.join("in.bin");
        let data: Vec<u8> = (0..len).map(|i| (i * mul % modulo) as u8).collect();
        std::fs::write(&input, &data).unwrap();
        (data, SharedFile::open(&input).unwrap())
    }

    fn file_range(file: &Arc<SharedFile>, offset: usize, len: usize) -> FileRange {
        FileRange {
            file: file.clone(),
            offset: offset as u64,
            len: len as u64,
        }
    }

    #[test]
    fn adjacent_ranges_merge_and_keep_order_with_other_writes() {
        let dir = tempfile::tempdir().unwrap();
        let (data, file) = patterned_input(dir.path(), 5 << 20, 13, 241);
        let range = |o: usize, n: usize| file_range(&file, o, n);
        let dest = dir.path().join("out.bin");
        let mut f = OutputFile::create(&dest, &WriteOptions::default()).unwrap();
        f.write_source(&range(0, 2 << 20), &NoProgress).unwrap();
        f.write_source(&range(2 << 20, 1 << 20), &NoProgress).unwrap(); // merges with the first
        f.pad_to(1 << 10).unwrap(); // flushes the copy, then pads (nothing: aligned)
        f.write_all(b"mid").unwrap();
        f.write_source(&range(1 << 20, 2 << 20), &NoProgress).unwrap(); // not adjacent: a new copy
        assert_eq!(f.position(), (3 << 20) + 3 + (2 << 20));
        f.commit().unwrap();
        let out = std::fs::read(&dest).unwrap();
        assert_eq!(&out[..3 << 20], &data[..3 << 20]);
        assert_eq!(&out[(3 << 20)..(3 << 20) + 3], b"mid");
        assert_eq!(&out[(3 << 20) + 3..], &data[1 << 20..3 << 20]);
    }

    /// Copies whose source and destination share their offset within the
    /// copy boundary (a header rewritten at its own length) have their
    /// head buffered and the rest kernel-copied; small ranges that continue
    /// a pending copy join it. The bytes are the same either way.
    #[test]
    fn realigned_and_joined_copies_keep_every_byte() {
        let dir = tempfile::tempdir().unwrap();
        let (data, file) = patterned_input(dir.path(), 6 << 20, 7, 251);
        let range = |o: usize, n: usize| file_range(&file, o, n);
        for header in [7392usize, 4096, 65536, 100] {
            let dest = dir.path().join(format!("out-{header}.bin"));
            let mut f = OutputFile::create(&dest, &WriteOptions::default()).unwrap();
            f.write_all(&data[..header]).unwrap();
            f.write_source(&range(header, 2 << 20), &NoProgress).unwrap();
            f.write_source(&range(header + (2 << 20), 300), &NoProgress).unwrap(); // small: joins
            let rest = data.len() - header - (2 << 20) - 300;
            f.write_source(&range(header + (2 << 20) + 300, rest), &NoProgress)
                .unwrap();
            f.commit().unwrap();
            assert!(std::fs::read(&dest).unwrap() == data, "header {header}");
        }
    }

    /// Ranges whose source and destination offsets differ in phase (a
    /// split's shard headers) are written from mappings of the source; a
    /// source cut short meanwhile is named, not faulted on.
    #[test]
    fn out_of_phase_copies_keep_every_byte_and_name_a_short_file() {
        let dir = tempfile::tempdir().unwrap();
        let (data, file) = patterned_input(dir.path(), 6 << 20, 5, 239);
        let dest = dir.path().join("out.bin");
        let mut f = OutputFile::create(&dest, &WriteOptions::default()).unwrap();
        let header = b"a header of 36 bytes, not 7392 ones";
        f.write_all(header).unwrap();
        f.write_source(&file_range(&file, 7392, (5 << 20) + 11), &NoProgress)
            .unwrap();
        f.commit().unwrap();
        let out = std::fs::read(&dest).unwrap();
        assert!(out[header.len()..] == data[7392..7392 + (5 << 20) + 11], "bytes differ");
        std::fs::OpenOptions::new()
            .write(true)
            .open(&file.path)
            .unwrap()
            .set_len(3 << 20)
            .unwrap();
        let mut f = OutputFile::create(&dir.path().join("short.bin"), &WriteOptions::default()).unwrap();
        f.write_all(b"x").unwrap();
        let err = f
            .write_source(&file_range(&file, 7392, 5 << 20), &NoProgress)
            .and_then(|_| f.flush())
            .unwrap_err();
        assert!(err.to_string().contains("ended early"), "{err}");
    }

    #[test]
    fn a_file_that_shrinks_under_a_copy_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("in.bin");
        std::fs::write(&input, vec![7u8; 4 << 20]).unwrap();
        let file = SharedFile::open(&input).unwrap();
        std::fs::OpenOptions::new()
            .write(true)
            .open(&input)
            .unwrap()
            .set_len(1 << 20)
            .unwrap();
        let dest = dir.path().join("out.bin");
        let mut f = OutputFile::create(&dest, &WriteOptions::default()).unwrap();
        f.write_source(
            &FileRange {
                file,
                offset: 0,
                len: 4 << 20,
            },
            &NoProgress,
        )
        .unwrap();
        let err = f.commit().unwrap_err().to_string();
        assert!(err.contains("in.bin") && err.contains("ended early"), "{err}");
        assert!(!dest.exists());
    }

    #[test]
    fn streams_file_ranges_and_memory() {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("in.bin");
        let data: Vec<u8> = (0..(3usize << 20) + 17).map(|i| (i * 7 % 251) as u8).collect();
        std::fs::write(&input, &data).unwrap();
        let file = SharedFile::open(&input).unwrap();
        let dest = dir.path().join("out.bin");
        let mut f = OutputFile::create(&dest, &WriteOptions::default()).unwrap();
        f.write_all(b"hd").unwrap();
        f.write_source(
            &FileRange {
                file: file.clone(),
                offset: 5,
                len: data.len() as u64 - 5,
            },
            &NoProgress,
        )
        .unwrap();
        f.write_source(&MemSource::new(data[..10].to_vec()), &NoProgress)
            .unwrap();
        f.commit().unwrap();
        let out = std::fs::read(&dest).unwrap();
        assert_eq!(&out[..2], b"hd");
        assert_eq!(&out[2..data.len() - 3], &data[5..]);
        assert_eq!(&out[data.len() - 3..], &data[..10]);
    }
}
