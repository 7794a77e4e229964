//! Zip entries for `scan`, read the way Python's loaders see them: every
//! record of the central directory (duplicate names included: torch's
//! reader and numpy's `zipfile` may each take a different one), no cap on
//! the number of entries (each record takes 46 bytes of the file, which
//! bounds them), extra fields skipped whatever they hold, zip64 sizes and
//! offsets followed. Stored, deflated, bzip2 and LZMA members (what numpy
//! and Python's zipfile read) are returned inflated, bounded by their
//! declared size, a ratio and a budget per file; members in other methods
//! are reported.

use std::io::Read;

/// Largest member inflated for scanning.
pub const MAX_INFLATED: u64 = 1 << 30;
/// Largest inflated-to-compressed ratio believed (deflate tops out near 1032).
pub const MAX_RATIO: u64 = 1100;

/// Most bytes all the members of one zip may inflate to, together: the
/// larger of 1 GiB and 4 times the file (overlapping entries can share one
/// deflate stream; each would otherwise inflate it again). Only members
/// that may be pickles are inflated whole; the others, their first bytes.
pub fn inflation_budget(file_len: u64) -> u64 {
    (1u64 << 30).max(file_len.saturating_mul(4))
}

pub enum Content<'a> {
    Stored(&'a [u8]),
    Inflated(Vec<u8>),
    /// Could not be read: why.
    Unreadable(String),
}

/// A central-directory record: where its member lies and how it is stored.
pub struct Entry {
    pub name: String,
    method: u16,
    local: u64,
    csize: u64,
    usize_: u64,
}

impl Entry {
    /// The member's bytes (inflated, bounded by its declared size, the
    /// ratio cap and what is left of `budget`, which it spends).
    pub fn content<'a>(&self, b: &'a [u8], budget: &mut u64) -> Content<'a> {
        member(b, self, budget, u64::MAX)
    }

    /// At most the first `n` bytes of the member (spending them from `budget`).
    pub fn head<'a>(&self, b: &'a [u8], n: u64, budget: &mut u64) -> Content<'a> {
        match member(b, self, budget, n) {
            Content::Stored(d) => Content::Stored(&d[..d.len().min(usize::try_from(n).unwrap_or(usize::MAX))]),
            other => other,
        }
    }

    /// The size the member declares once inflated.
    pub fn size(&self) -> u64 {
        if self.method == 0 {
            self.csize
        } else {
            self.usize_
        }
    }
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at.checked_add(2)?)?.try_into().ok()?))
}
fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at.checked_add(4)?)?.try_into().ok()?))
}
fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(at..at.checked_add(8)?)?.try_into().ok()?))
}

/// One reading of where the central directory lies: its first record,
/// how many records (a count, or a byte size that records fill), and the
/// shift added to every local-header offset.
struct Reading {
    at: usize,
    records: Records,
    shift: u64,
}

enum Records {
    Count(u64),
    Bytes(u64),
}

/// The end of central directory record: the last signature in the final
/// 64 KiB + 22 bytes (where a comment may hide it).
fn end_record(b: &[u8]) -> Option<usize> {
    let from = b.len().saturating_sub(22 + 65535);
    (from..=b.len().checked_sub(22)?)
        .rev()
        .find(|&i| b[i..].starts_with(b"PK\x05\x06"))
}

/// The reading of libzip/miniz (torch's reader): the record count and
/// offset of the end record, replaced by the zip64 end record that the
/// locator points at when a field is saturated.
fn counted_reading(b: &[u8], eocd: usize) -> Option<Reading> {
    let mut count = u64::from(u16_at(b, eocd + 10)?);
    let mut offset = u64::from(u32_at(b, eocd + 16)?);
    if count == 0xffff || offset == 0xffff_ffff {
        let loc = eocd.checked_sub(20)?;
        if b.get(loc..loc + 4)? == b"PK\x06\x07" {
            let z = usize::try_from(u64_at(b, loc + 8)?).ok()?;
            if b.get(z..z.checked_add(4)?)? == b"PK\x06\x06" {
                count = u64_at(b, z + 32)?;
                offset = u64_at(b, z + 48)?;
            }
        }
    }
    Some(Reading {
        at: usize::try_from(offset).ok()?,
        records: Records::Count(count),
        shift: 0,
    })
}

/// The reading of CPython's `zipfile` (3.11, `_EndRecData64` and
/// `_RealGetContents`): a zip64 end record is the 56 bytes right before a
/// locator (whatever offset the locator holds) and then always wins; the
/// record count is ignored, records are read until the directory's byte
/// size is used up; and every offset is shifted by the bytes found before
/// the directory beyond what it declares (`concat`: data prepended to the
/// archive), which Python adds to the directory's offset and to each
/// member's.
fn python_reading(b: &[u8], eocd: usize) -> Option<Reading> {
    let mut size = u64::from(u32_at(b, eocd + 12)?);
    let mut offset = u64::from(u32_at(b, eocd + 16)?);
    let mut end = eocd as u64;
    if let Some(loc) = eocd.checked_sub(20).filter(|&l| b.get(l..l + 4) == Some(b"PK\x06\x07")) {
        if let Some(z) = loc.checked_sub(56).filter(|&z| b.get(z..z + 4) == Some(b"PK\x06\x06")) {
            size = u64_at(b, z + 40)?;
            offset = u64_at(b, z + 48)?;
            end = z as u64;
        }
    }
    let shift = end.checked_sub(size)?.checked_sub(offset)?;
    Some(Reading {
        at: usize::try_from(offset.checked_add(shift)?).ok()?,
        records: Records::Bytes(size),
        shift,
    })
}

/// Zip64 extended information: replaces the fields saturated at 0xFFFFFFFF.
fn zip64_fields(extra: &[u8], mut usize_: u64, mut csize: u64, mut local: u64) -> (u64, u64, u64) {
    let mut i = 0;
    while let (Some(id), Some(len)) = (u16_at(extra, i), u16_at(extra, i + 2)) {
        let body = i + 4;
        if id == 1 {
            let mut at = body;
            for field in [&mut usize_, &mut csize, &mut local] {
                if *field == 0xffff_ffff {
                    if let Some(v) = u64_at(extra, at) {
                        *field = v;
                        at += 8;
                    }
                }
            }
        }
        i = body + usize::from(len);
    }
    (usize_, csize, local)
}

/// At most `cap` bytes of a member compressed with `method` (8 deflate,
/// 12 bzip2, 14 LZMA as zip stores it: version, properties size, properties,
/// then the raw stream), as numpy's and Python's zipfile read them.
fn decompress(method: u16, data: &[u8], cap: u64, declared: u64) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    match method {
        8 => {
            flate2::read::DeflateDecoder::new(data)
                .take(cap)
                .read_to_end(&mut out)
                .map_err(|e| format!("deflate: {e}"))?;
        }
        12 => {
            bzip2::read::BzDecoder::new(data)
                .take(cap)
                .read_to_end(&mut out)
                .map_err(|e| format!("bzip2: {e}"))?;
        }
        _ => {
            let props_len = usize::from(u16_at(data, 2).ok_or("LZMA: no header")?);
            let stream = data.get(4..).ok_or("LZMA: no header")?;
            if props_len != 5 {
                return Err(format!("LZMA: {props_len}-byte properties, expected 5"));
            }
            let opts = lzma_rs::decompress::Options {
                unpacked_size: lzma_rs::decompress::UnpackedSize::UseProvided(Some(declared.min(cap))),
                // The dictionary size comes from the file: bound what it may allocate.
                memlimit: Some(64 << 20),
                allow_incomplete: true,
            };
            let mut w = CappedWriter::new(&mut out, cap);
            lzma_rs::lzma_decompress_with_options(&mut std::io::BufReader::new(stream), &mut w, &opts)
                .map_err(|e| format!("LZMA: {e}"))?;
        }
    }
    Ok(out)
}

/// A writer that takes at most `left` bytes: past them it drops the rest
/// (the decoder stops on its own at a declared size) or, made
/// [`CappedWriter::strict`], fails the write so the decoder stops.
pub struct CappedWriter<'a> {
    out: &'a mut Vec<u8>,
    left: u64,
    strict: bool,
}

impl<'a> CappedWriter<'a> {
    pub fn new(out: &'a mut Vec<u8>, left: u64) -> Self {
        CappedWriter {
            out,
            left,
            strict: false,
        }
    }

    /// Fails the write that would pass the cap.
    pub fn strict(out: &'a mut Vec<u8>, left: u64) -> Self {
        CappedWriter {
            out,
            left,
            strict: true,
        }
    }
}

impl std::io::Write for CappedWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = buf.len().min(usize::try_from(self.left).unwrap_or(usize::MAX));
        self.out.extend_from_slice(&buf[..n]);
        self.left -= n as u64;
        if self.strict && n < buf.len() {
            return Err(std::io::Error::other("past the size limit"));
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Every entry of the central directory, in order, under every reading
/// of it that a loader makes (see [`counted_reading`], [`python_reading`]):
/// where they differ (an understated count, a zip64 locator pointing at
/// another directory, data prepended to the archive), the entries only one
/// reading finds follow the others. None when `b` has no end record.
pub fn entries(b: &[u8]) -> Option<Vec<Entry>> {
    let eocd = end_record(b)?;
    let mut out = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for reading in [counted_reading(b, eocd), python_reading(b, eocd)]
        .into_iter()
        .flatten()
    {
        for e in records(b, &reading) {
            if seen.insert((e.name.clone(), e.local, e.method, e.csize, e.usize_)) {
                out.push(e);
            }
        }
    }
    Some(out)
}

/// When torch's reader (miniz) and CPython's `zipfile` list different
/// members (a tampered directory: only a tool that reads both sees all
/// of them), how many each finds.
pub fn readings_differ(b: &[u8]) -> Option<(usize, usize)> {
    let eocd = end_record(b)?;
    let key = |r: Option<Reading>| -> Vec<(String, u64)> {
        r.map(|r| records(b, &r).into_iter().map(|e| (e.name, e.local)).collect())
            .unwrap_or_default()
    };
    let (counted, python) = (key(counted_reading(b, eocd)), key(python_reading(b, eocd)));
    (counted != python).then_some((counted.len(), python.len()))
}

/// The central-directory records of one reading, up to the first that
/// does not parse.
fn records(b: &[u8], reading: &Reading) -> Vec<Entry> {
    let mut out = Vec::new();
    let mut at = reading.at;
    let (mut left_count, mut left_bytes) = match reading.records {
        Records::Count(n) => (n, u64::MAX),
        Records::Bytes(n) => (u64::MAX, n),
    };
    while left_count > 0 && left_bytes > 0 {
        let Some((e, len)) = record(b, at, reading.shift) else {
            break;
        };
        out.push(e);
        at += len;
        left_count -= 1;
        left_bytes = left_bytes.saturating_sub(len as u64);
    }
    out
}

/// The central-directory record at `at` and its length in bytes.
fn record(b: &[u8], at: usize, shift: u64) -> Option<(Entry, usize)> {
    if b.get(at..at.checked_add(4)?)? != b"PK\x01\x02" {
        return None;
    }
    let method = u16_at(b, at + 10)?;
    let csize = u64::from(u32_at(b, at + 20)?);
    let usize_ = u64::from(u32_at(b, at + 24)?);
    let (nlen, xlen, clen) = (
        usize::from(u16_at(b, at + 28)?),
        usize::from(u16_at(b, at + 30)?),
        usize::from(u16_at(b, at + 32)?),
    );
    let local = u64::from(u32_at(b, at + 42)?);
    let name_at = at + 46;
    let name = String::from_utf8_lossy(b.get(name_at..name_at + nlen)?).into_owned();
    let extra = b.get(name_at + nlen..name_at + nlen + xlen).unwrap_or_default();
    let (usize_, csize, local) = zip64_fields(extra, usize_, csize, local);
    let entry = Entry {
        name,
        method,
        local: local.checked_add(shift)?,
        csize,
        usize_,
    };
    Some((entry, 46 + nlen + xlen + clen))
}

fn member<'a>(b: &'a [u8], e: &Entry, budget: &mut u64, limit: u64) -> Content<'a> {
    let (method, csize, usize_) = (e.method, e.csize, e.usize_);
    let data = (|| {
        let l = usize::try_from(e.local).ok()?;
        if b.get(l..l.checked_add(4)?)? != b"PK\x03\x04" {
            return None;
        }
        let start = l + 30 + usize::from(u16_at(b, l + 26)?) + usize::from(u16_at(b, l + 28)?);
        let end = start.checked_add(usize::try_from(csize).ok()?)?;
        b.get(start..end)
    })();
    let Some(data) = data else {
        return Content::Unreadable("its local header or data lie outside the file".into());
    };
    match method {
        0 => Content::Stored(data),
        8 | 12 | 14 => {
            // Deflate tops out near 1032:1; bzip2 and LZMA can go far beyond,
            // so for them the declared size and the budget are the bounds.
            let ratio = if method == 8 { MAX_RATIO } else { u64::MAX };
            let cap = usize_
                .min(MAX_INFLATED)
                .min((csize.max(1)).saturating_mul(ratio))
                .min(limit);
            if cap > *budget {
                return Content::Unreadable(format!(
                    "inflating it would pass the {} bytes this file may inflate to (entries overlapping one stream?)",
                    *budget
                ));
            }
            match decompress(method, data, cap, usize_) {
                Ok(out) => {
                    *budget -= out.len() as u64;
                    Content::Inflated(out)
                }
                Err(e) => Content::Unreadable(e),
            }
        }
        93 => Content::Unreadable("compressed with zstd (Python 3.14's zipfile reads it; not inspected)".into()),
        m => Content::Unreadable(format!("compression method {m}")),
    }
}
