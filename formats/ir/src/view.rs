//! Lazy views: tensors whose bytes are not laid out where the output wants
//! them. Each view is a [`DataSource`] over other sources and reads whole
//! contiguous runs, never an element at a time:
//!
//! - [`SubRange`]: a byte range of another source.
//! - [`Strided`]: elements gathered by (non-negative, possibly zero)
//!   strides: transposed torch storages, Fortran-order arrays, slices
//!   ([`slice`]), broadcast (stride-0) views.
//! - [`Concat`]: sources joined along an axis (split shards, QKV merge, MoE
//!   experts stacked into one tensor).
//! - [`RowGather`]: rows picked or permuted along the first axis (Q/K row
//!   permutation, QKV split).
//! - [`ByteSwap`]: big-endian elements read as little-endian.
//! - [`AnyAlignment`]: a computed source (whole blocks at a time) read at
//!   any byte offset, for a view that gathers elements from it.
//!
//! Views check their geometry when built (every element they can reach lies
//! inside their inner sources, with overflow-checked arithmetic), so a read
//! never goes out of bounds.

use crate::{numel, DataSource, Error, Result, SharedFile};
use std::sync::Arc;

/// Most bytes of an inner source a strided read pulls into memory at once
/// to gather from, when the inner source is not memory-mapped.
const GATHER_WINDOW: u64 = 64 << 20;
/// Runs at least this long are read one by one instead of through a window.
const LONG_RUN: u64 = 64 << 10;

fn oob(what: &str) -> Error {
    Error::invalid(format!("{what}: read past the end of the view"))
}

/// Checks `offset..offset + n` lies in `0..len`.
fn check_range(offset: u64, n: usize, len: u64, what: &str) -> Result<()> {
    match offset.checked_add(n as u64) {
        Some(end) if end <= len => Ok(()),
        _ => Err(oob(what)),
    }
}

/// Row-major element count of `shape`, with overflow checked.
fn count(shape: &[u64]) -> Result<u64> {
    numel(shape).map_err(|e| Error::invalid(e.to_string()))
}

/// A byte range of another source.
pub struct SubRange {
    inner: Arc<dyn DataSource>,
    start: u64,
    len: u64,
}

impl SubRange {
    pub fn new(inner: Arc<dyn DataSource>, start: u64, len: u64) -> Result<Self> {
        if start.checked_add(len).is_none_or(|e| e > inner.len()) {
            return Err(Error::invalid(format!(
                "range of {len} bytes at {start} past the end of a {}-byte source",
                inner.len()
            )));
        }
        Ok(SubRange { inner, start, len })
    }
}

impl DataSource for SubRange {
    fn len(&self) -> u64 {
        self.len
    }
    fn granule(&self) -> u64 {
        self.inner.granule()
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        check_range(offset, buf.len(), self.len, "sub-range")?;
        self.inner.read_at(self.start + offset, buf)
    }
    fn file_range(&self) -> Option<(Arc<SharedFile>, u64)> {
        self.inner.file_range().map(|(f, o)| (f, o + self.start))
    }
}

/// Most a strided view may repeat its storage (stride 0, overlapping
/// strides), beyond the first GiB: a broadcast of a row to a batch is a
/// few times, not millions.
pub const MAX_EXPANSION: u64 = 64;

/// Output rows gathered together by a blocked strided copy.
const ROW_BLOCK: usize = 16;
/// Units per row in one tile of a blocked strided copy.
const TILE_UNITS: usize = 256;
/// Runs up to this many bytes are gathered by the blocked copy.
const BLOCKED_UNIT: u64 = 64;

/// A tile of a blocked strided copy: units `cols` of output rows whose
/// unit `j` of row `r` is at `src[bases[r] + j * step..]`.
struct Tile<'a> {
    src: &'a [u8],
    bases: &'a [usize],
    step: usize,
    row_bytes: usize,
    cols: std::ops::Range<usize>,
}

impl Tile<'_> {
    /// Copies the tile into `out` (its rows, `row_bytes` apart), units of
    /// `unit` bytes. The loop runs over units, then rows, so reads of
    /// neighbouring rows share cache lines. Always inlined, so a constant
    /// `unit` becomes a fixed-size move.
    #[inline(always)]
    fn copy(&self, unit: usize, out: &mut [u8]) {
        for j in self.cols.clone() {
            let off = j * self.step;
            for (r, &base) in self.bases.iter().enumerate() {
                let (s, t) = (base + off, r * self.row_bytes + j * unit);
                out[t..t + unit].copy_from_slice(&self.src[s..s + unit]);
            }
        }
    }
}

/// Copies `k` elements of `es` bytes from element `at` of `src` to element `to` of `buf`.
fn copy_elems(buf: &mut [u8], src: &[u8], es: u64, at: u64, to: u64, k: u64) {
    let (s, t, l) = ((at * es) as usize, (to * es) as usize, (k * es) as usize);
    buf[t..t + l].copy_from_slice(&src[s..s + l]);
}

/// Elements of `es` bytes gathered from `inner` by strides (in elements):
/// element `[i0, i1, …]` of the view is inner element `offset + Σ ik·stride[k]`.
pub struct Strided {
    inner: Arc<dyn DataSource>,
    es: u64,
    offset: u64,
    shape: Vec<u64>,
    stride: Vec<u64>,
    /// Elements in one contiguous run (the trailing dims that are contiguous).
    run: u64,
    /// Dims above the run.
    outer: usize,
    len: u64,
}

impl Strided {
    /// A strided view; checks every element it can reach lies inside `inner`.
    pub fn new(inner: Arc<dyn DataSource>, es: u64, offset: u64, shape: &[u64], stride: &[u64]) -> Result<Self> {
        if es == 0 || shape.len() != stride.len() {
            return Err(Error::internal("strided view: shape and strides differ in rank"));
        }
        let n = count(shape)?;
        let len = n
            .checked_mul(es)
            .ok_or_else(|| Error::invalid("strided view: size overflows"))?;
        if n > 0 {
            let mut last = offset;
            for (d, s) in shape.iter().zip(stride) {
                last = (d - 1)
                    .checked_mul(*s)
                    .and_then(|x| last.checked_add(x))
                    .ok_or_else(|| Error::invalid("strided view: offset overflows"))?;
            }
            let have = inner.len() / es;
            if last >= have {
                return Err(Error::invalid(format!(
                    "view reaches element {last} of a storage of {have}"
                )));
            }
            // Repeating strides (0, or overlapping) can claim far more bytes
            // than the storage holds: a few bytes would expand to terabytes.
            let bound = inner
                .len()
                .saturating_mul(MAX_EXPANSION)
                .max(inner.len().saturating_add(1 << 30));
            if len > bound {
                return Err(Error::invalid(format!(
                    "view of {len} bytes over a storage of {} bytes repeats it more than the {MAX_EXPANSION}x limit (plus 1 GiB)",
                    inner.len()
                )));
            }
        }
        // Merge the trailing dims that are contiguous into one run.
        let mut run = 1u64;
        let mut outer = shape.len();
        while outer > 0 {
            let d = outer - 1;
            if shape[d] == 1 || stride[d] == run {
                run *= shape[d];
                outer = d;
            } else {
                break;
            }
        }
        Ok(Strided {
            inner,
            es,
            offset,
            shape: shape.to_vec(),
            stride: stride.to_vec(),
            run: run.max(1),
            outer,
            len,
        })
    }

    /// True when the view is one contiguous range of its inner source.
    pub fn is_contiguous(&self) -> bool {
        self.outer == 0 || self.shape[..self.outer].iter().all(|&d| d == 1)
    }

    /// Inner element index of run number `r` (runs in row-major order).
    fn run_start(&self, mut r: u64) -> u64 {
        let mut at = self.offset;
        for d in (0..self.outer).rev() {
            let n = self.shape[d].max(1);
            at += (r % n) * self.stride[d];
            r /= n;
        }
        at
    }

    /// Gathers view elements `first..first + n` from `src`, the whole inner
    /// source in memory. Short runs (a transpose, a Fortran-order array)
    /// are copied a block of rows at a time, so every source cache line
    /// serves as many output rows as it holds runs; the partial rows at
    /// either end, and long runs, are copied run by run.
    fn gather_mapped(&self, src: &[u8], first: u64, n: u64, buf: &mut [u8]) -> Result<()> {
        let es = self.es;
        let by_runs = |buf: &mut [u8], first: u64, n: u64| {
            self.pieces(first, n, |at, to, k| {
                copy_elems(buf, src, es, at, to, k);
                Ok(())
            })
        };
        let unit = self.run * es;
        if self.outer == 0 || unit > BLOCKED_UNIT {
            return by_runs(buf, first, n);
        }
        // Whole rows (a row: the runs along the last dim above the run).
        let row = self.run * self.shape[self.outer - 1];
        let (a, b) = (first.div_ceil(row) * row, (first + n) / row * row);
        if a >= b {
            return by_runs(buf, first, n);
        }
        let (head, rest) = buf.split_at_mut(((a - first) * es) as usize);
        let (mid, tail) = rest.split_at_mut(((b - a) * es) as usize);
        by_runs(head, first, a - first)?;
        self.gather_rows(src, a / row, mid);
        by_runs(tail, b, first + n - b)
    }

    /// Copies whole rows from row `row0` on into `out`, in tiles of
    /// `ROW_BLOCK` rows by `TILE_UNITS` units: a tile's source lines and
    /// pages are few enough to stay in cache and TLB while it is copied.
    fn gather_rows(&self, src: &[u8], row0: u64, out: &mut [u8]) {
        let d = self.outer - 1;
        let runs = self.shape[d] as usize;
        let unit = (self.run * self.es) as usize;
        let step = (self.stride[d] * self.es) as usize;
        let row_bytes = runs * unit;
        if row_bytes == 0 {
            return;
        }
        let bases: Vec<usize> = (0..(out.len() / row_bytes) as u64)
            .map(|r| (self.run_start((row0 + r) * runs as u64) * self.es) as usize)
            .collect();
        for j0 in (0..runs).step_by(TILE_UNITS) {
            let cols = j0..(j0 + TILE_UNITS).min(runs);
            for (block, rows) in out.chunks_mut(row_bytes * ROW_BLOCK).zip(bases.chunks(ROW_BLOCK)) {
                let tile = Tile {
                    src,
                    bases: rows,
                    step,
                    row_bytes,
                    cols: cols.clone(),
                };
                match unit {
                    1 => tile.copy(1, block),
                    2 => tile.copy(2, block),
                    4 => tile.copy(4, block),
                    8 => tile.copy(8, block),
                    16 => tile.copy(16, block),
                    _ => tile.copy(unit, block),
                }
            }
        }
    }

    /// Calls `f(inner element, view element, elements)` for every piece of
    /// contiguous run that view elements `first..first + n` touch.
    fn pieces(&self, first: u64, n: u64, mut f: impl FnMut(u64, u64, u64) -> Result<()>) -> Result<()> {
        let mut e = first;
        let end = first + n;
        while e < end {
            let (r, within) = (e / self.run, e % self.run);
            let take = (self.run - within).min(end - e);
            f(self.run_start(r) + within, e - first, take)?;
            e += take;
        }
        Ok(())
    }
}

impl DataSource for Strided {
    fn len(&self) -> u64 {
        self.len
    }
    fn granule(&self) -> u64 {
        self.es
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        check_range(offset, buf.len(), self.len, "strided view")?;
        let es = self.es;
        if !offset.is_multiple_of(es) || !(buf.len() as u64).is_multiple_of(es) {
            return Err(Error::internal("strided read not aligned to elements"));
        }
        let (first, n) = (offset / es, buf.len() as u64 / es);
        if n == 0 {
            return Ok(());
        }
        // Memory-mapped inner file: gather straight from the mapping.
        if let Some((file, base)) = self.inner.file_range() {
            // (Refused mappings fall through to reads.)
            if let Ok(map) = file.mapped() {
                let start = usize::try_from(base).map_err(|_| oob("strided view"))?;
                let src = map
                    .get(start..)
                    .filter(|s| s.len() as u64 >= self.inner.len())
                    .ok_or_else(|| oob("strided view"))?;
                return self.gather_mapped(src, first, n, buf);
            }
        }
        // Long runs: one read each.
        if self.run * es >= LONG_RUN {
            return self.pieces(first, n, |at, to, k| {
                let t = (to * es) as usize;
                self.inner.read_at(at * es, &mut buf[t..t + (k * es) as usize])
            });
        }
        // Short runs: read the span they cover once and gather from it.
        let (mut lo, mut hi) = (u64::MAX, 0u64);
        self.pieces(first, n, |at, _, k| {
            lo = lo.min(at);
            hi = hi.max(at + k);
            Ok(())
        })?;
        let span = (hi - lo) * es;
        if span <= GATHER_WINDOW.max(buf.len() as u64 * 4) {
            let mut window = vec![0u8; span as usize];
            self.inner.read_at(lo * es, &mut window)?;
            return self.pieces(first, n, |at, to, k| {
                copy_elems(buf, &window, es, at - lo, to, k);
                Ok(())
            });
        }
        // A very sparse request: halve it until each half fits a window.
        let half = n / 2;
        if half == 0 {
            return self.inner.read_at(lo * es, buf);
        }
        let (a, b) = buf.split_at_mut((half * es) as usize);
        self.read_at(offset, a)?;
        self.read_at(offset + half * es, b)
    }
    fn file_range(&self) -> Option<(Arc<SharedFile>, u64)> {
        if self.is_contiguous() {
            self.inner.file_range().map(|(f, o)| (f, o + self.offset * self.es))
        } else {
            None
        }
    }
}

/// Row-major strides (in elements) of a contiguous array of `shape`.
pub fn contiguous_strides(shape: &[u64]) -> Vec<u64> {
    let mut stride = vec![0u64; shape.len()];
    let mut acc = 1u64;
    for d in (0..shape.len()).rev() {
        stride[d] = acc;
        acc = acc.saturating_mul(shape[d]);
    }
    stride
}

/// A view of `inner` (elements of `es` bytes, at `offset` elements, laid out
/// by `stride`) as a contiguous tensor of `shape`: a plain [`SubRange`] when
/// the layout is already contiguous, a [`Strided`] gather otherwise.
pub fn strided(
    inner: Arc<dyn DataSource>,
    es: u64,
    offset: u64,
    shape: &[u64],
    stride: &[u64],
) -> Result<Arc<dyn DataSource>> {
    let view = Strided::new(inner, es, offset, shape, stride)?;
    if view.len == 0 {
        return Ok(Arc::new(crate::MemSource::new(Vec::new())));
    }
    if view.is_contiguous() {
        let start = offset * es; // checked: offset lies inside inner
        return Ok(Arc::new(SubRange::new(view.inner, start, view.len)?));
    }
    Ok(Arc::new(view))
}

/// Elements `start..start + len` along `axis` of a contiguous tensor of
/// `shape` (elements of `es` bytes).
pub fn slice(
    inner: Arc<dyn DataSource>,
    es: u64,
    shape: &[u64],
    axis: usize,
    start: u64,
    len: u64,
) -> Result<Arc<dyn DataSource>> {
    let dim = *shape
        .get(axis)
        .ok_or_else(|| Error::invalid(format!("slice along axis {axis} of a {}-d tensor", shape.len())))?;
    if start.checked_add(len).is_none_or(|e| e > dim) {
        return Err(Error::invalid(format!(
            "slice {start}..{} of a dimension of {dim}",
            start.saturating_add(len)
        )));
    }
    let stride = contiguous_strides(shape);
    let mut sub = shape.to_vec();
    sub[axis] = len;
    strided(inner, es, start * stride[axis], &sub, &stride)
}

/// Sources of one element size joined along `axis`: each part has the same
/// shape except along `axis`.
pub struct Concat {
    parts: Vec<Arc<dyn DataSource>>,
    /// Bytes each part contributes per outer index (its extent along the
    /// axis times the inner block).
    part_block: Vec<u64>,
    /// Sum of `part_block`: bytes per outer index of the result.
    row: u64,
    len: u64,
    granule: u64,
}

impl Concat {
    /// Joins `parts` (each with its shape) along `axis`; returns the view and
    /// the shape of the result.
    pub fn new(parts: Vec<(Arc<dyn DataSource>, Vec<u64>)>, es: u64, axis: usize) -> Result<(Self, Vec<u64>)> {
        let first = parts
            .first()
            .map(|(_, s)| s.clone())
            .ok_or_else(|| Error::internal("concatenating no tensors"))?;
        if axis >= first.len() {
            return Err(Error::invalid(format!(
                "concatenating {}-d tensors along axis {axis}",
                first.len()
            )));
        }
        let inner_block = count(&first[axis + 1..])?
            .checked_mul(es)
            .ok_or_else(|| Error::invalid("concat: size overflows"))?;
        let mut shape = first.clone();
        shape[axis] = 0;
        let mut part_block = Vec::with_capacity(parts.len());
        for (src, s) in &parts {
            let same =
                s.len() == first.len() && s.iter().zip(&first).enumerate().all(|(d, (a, b))| d == axis || a == b);
            if !same {
                return Err(Error::invalid(format!(
                    "concatenating shapes {first:?} and {s:?} along axis {axis}"
                )));
            }
            let want = count(s)?
                .checked_mul(es)
                .ok_or_else(|| Error::invalid("concat: size overflows"))?;
            if src.len() != want {
                return Err(Error::invalid(format!(
                    "concat: a part of shape {s:?} holds {} bytes, expected {want}",
                    src.len()
                )));
            }
            shape[axis] = shape[axis]
                .checked_add(s[axis])
                .ok_or_else(|| Error::invalid("concat: size overflows"))?;
            part_block.push(s[axis] * inner_block);
        }
        let row: u64 = part_block.iter().sum();
        let len = count(&shape)?
            .checked_mul(es)
            .ok_or_else(|| Error::invalid("concat: size overflows"))?;
        let granule = parts.iter().map(|(p, _)| p.granule()).max().unwrap_or(1).max(es);
        Ok((
            Concat {
                parts: parts.into_iter().map(|(p, _)| p).collect(),
                part_block,
                row,
                len,
                granule,
            },
            shape,
        ))
    }
}

impl DataSource for Concat {
    fn len(&self) -> u64 {
        self.len
    }
    fn granule(&self) -> u64 {
        self.granule
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        check_range(offset, buf.len(), self.len, "concatenation")?;
        let mut pos = offset;
        let mut done = 0usize;
        while done < buf.len() {
            let (outer, mut within) = (pos / self.row, pos % self.row);
            let mut p = 0;
            while within >= self.part_block[p] {
                within -= self.part_block[p];
                p += 1;
            }
            let take = ((self.part_block[p] - within) as usize).min(buf.len() - done);
            let at = outer * self.part_block[p] + within;
            self.parts[p].read_at(at, &mut buf[done..done + take])?;
            done += take;
            pos += take as u64;
        }
        Ok(())
    }
}

/// Rows of `inner` (a tensor whose first axis has `rows.len()`-independent
/// rows of `row_bytes` each) picked in the order `rows` gives: row `i` of
/// the view is row `rows[i]` of the source. A permutation, a selection
/// (QKV split) or a repetition.
pub struct RowGather {
    inner: Arc<dyn DataSource>,
    rows: Vec<u64>,
    row_bytes: u64,
}

impl RowGather {
    pub fn new(inner: Arc<dyn DataSource>, row_bytes: u64, rows: Vec<u64>) -> Result<Self> {
        if row_bytes == 0 {
            return Err(Error::internal("row gather of empty rows"));
        }
        let have = inner.len() / row_bytes;
        if let Some(bad) = rows.iter().find(|&&r| r >= have) {
            return Err(Error::invalid(format!("row {bad} of a source with {have} rows")));
        }
        (rows.len() as u64)
            .checked_mul(row_bytes)
            .ok_or_else(|| Error::invalid("row gather: size overflows"))?;
        Ok(RowGather { inner, rows, row_bytes })
    }
}

impl DataSource for RowGather {
    fn len(&self) -> u64 {
        self.rows.len() as u64 * self.row_bytes
    }
    fn granule(&self) -> u64 {
        self.inner.granule()
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        check_range(offset, buf.len(), self.len(), "row gather")?;
        let mut pos = offset;
        let mut done = 0usize;
        while done < buf.len() {
            let (r, within) = (pos / self.row_bytes, pos % self.row_bytes);
            // Rows that follow each other in the source are read at once.
            let mut last = r;
            let mut take = (self.row_bytes - within) as usize;
            while done + take < buf.len()
                && (last as usize + 1) < self.rows.len()
                && self.rows[last as usize + 1] == self.rows[last as usize] + 1
            {
                last += 1;
                take += self.row_bytes as usize;
            }
            let take = take.min(buf.len() - done);
            let at = self.rows[r as usize] * self.row_bytes + within;
            self.inner.read_at(at, &mut buf[done..done + take])?;
            done += take;
            pos += take as u64;
        }
        Ok(())
    }
}

/// Elements of `es` bytes stored big-endian, read as little-endian.
pub struct ByteSwap {
    inner: Arc<dyn DataSource>,
    es: u64,
}

impl ByteSwap {
    pub fn new(inner: Arc<dyn DataSource>, es: u64) -> Result<Self> {
        if es == 0 || !inner.len().is_multiple_of(es) {
            return Err(Error::invalid(format!(
                "{} bytes are not whole {es}-byte elements",
                inner.len()
            )));
        }
        Ok(ByteSwap { inner, es })
    }
}

impl DataSource for ByteSwap {
    fn len(&self) -> u64 {
        self.inner.len()
    }
    fn granule(&self) -> u64 {
        self.es.max(self.inner.granule())
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        if !offset.is_multiple_of(self.es) || !(buf.len() as u64).is_multiple_of(self.es) {
            return Err(Error::internal("big-endian read not aligned to elements"));
        }
        self.inner.read_at(offset, buf)?;
        if self.es > 1 {
            buf.chunks_exact_mut(self.es as usize).for_each(<[u8]>::reverse);
        }
        Ok(())
    }
}

/// A source whose reads must cover whole granules (a dequantizer's
/// blocks) read at any offset and length: each read pulls the granules it
/// touches and copies out the bytes asked for.
pub struct AnyAlignment {
    inner: Arc<dyn DataSource>,
}

impl AnyAlignment {
    pub fn new(inner: Arc<dyn DataSource>) -> Self {
        AnyAlignment { inner }
    }
}

impl DataSource for AnyAlignment {
    fn len(&self) -> u64 {
        self.inner.len()
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        check_range(offset, buf.len(), self.inner.len(), "realigned source")?;
        let g = self.inner.granule().max(1);
        let (lo, end) = (offset / g * g, offset + buf.len() as u64);
        // (A source's length is whole granules, so the rounded end fits.)
        let hi = end.div_ceil(g).saturating_mul(g).min(self.inner.len());
        if lo == offset && hi == end {
            return self.inner.read_at(offset, buf);
        }
        let span = usize::try_from(hi - lo).map_err(|_| oob("realigned source"))?;
        let mut whole = vec![0u8; span];
        self.inner.read_at(lo, &mut whole)?;
        let at = (offset - lo) as usize;
        buf.copy_from_slice(&whole[at..at + buf.len()]);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MemSource;

    fn src(n: u32) -> Arc<dyn DataSource> {
        Arc::new(MemSource::new(
            (0..n).flat_map(|i| i.to_le_bytes()).collect::<Vec<u8>>(),
        ))
    }

    fn elems(s: &dyn DataSource) -> Vec<u32> {
        let mut b = vec![0u8; s.len() as usize];
        s.read_at(0, &mut b).unwrap();
        b.chunks_exact(4)
            .map(|c| u32::from_le_bytes(c.try_into().unwrap()))
            .collect()
    }

    /// Reads `s` in pieces of `step` elements and checks they agree with one read.
    fn chunked(s: &dyn DataSource, step: usize) -> Vec<u32> {
        let mut out = Vec::new();
        let n = s.len() as usize / 4;
        let mut i = 0;
        while i < n {
            let k = step.min(n - i);
            let mut b = vec![0u8; k * 4];
            s.read_at(i as u64 * 4, &mut b).unwrap();
            out.extend(b.chunks_exact(4).map(|c| u32::from_le_bytes(c.try_into().unwrap())));
            i += k;
        }
        out
    }

    #[test]
    fn transpose_slice_and_broadcast() {
        // 3x4 row-major, viewed transposed as 4x3.
        let t = strided(src(12), 4, 0, &[4, 3], &[1, 4]).unwrap();
        let want = vec![0, 4, 8, 1, 5, 9, 2, 6, 10, 3, 7, 11];
        assert_eq!(elems(t.as_ref()), want);
        for step in 1..7 {
            assert_eq!(chunked(t.as_ref(), step), want);
        }
        // Columns 1..3 of the 3x4.
        let s = slice(src(12), 4, &[3, 4], 1, 1, 2).unwrap();
        assert_eq!(elems(s.as_ref()), vec![1, 2, 5, 6, 9, 10]);
        // Rows 1..3: contiguous, so a plain range.
        let r = slice(src(12), 4, &[3, 4], 0, 1, 2).unwrap();
        assert_eq!(elems(r.as_ref()), (4..12).collect::<Vec<_>>());
        // Stride 0: one row repeated.
        let b = strided(src(3), 4, 0, &[2, 3], &[0, 1]).unwrap();
        assert_eq!(elems(b.as_ref()), vec![0, 1, 2, 0, 1, 2]);
        // Out of bounds views are refused when built.
        assert!(strided(src(12), 4, 0, &[4, 4], &[1, 4]).is_err());
        assert!(strided(src(12), 4, 1, &[12], &[1]).is_err());
        assert!(slice(src(12), 4, &[3, 4], 1, 3, 2).is_err());
    }

    #[test]
    fn concat_gather_swap() {
        let (c, shape) = Concat::new(vec![(src(6), vec![2, 3]), (src(4), vec![2, 2])], 4, 1).unwrap();
        assert_eq!(shape, vec![2, 5]);
        let want = vec![0, 1, 2, 0, 1, 3, 4, 5, 2, 3];
        assert_eq!(elems(&c), want);
        for step in 1..6 {
            assert_eq!(chunked(&c, step), want);
        }
        let (c0, shape) = Concat::new(vec![(src(6), vec![2, 3]), (src(3), vec![1, 3])], 4, 0).unwrap();
        assert_eq!(shape, vec![3, 3]);
        assert_eq!(elems(&c0), vec![0, 1, 2, 3, 4, 5, 0, 1, 2]);
        assert!(Concat::new(vec![(src(6), vec![2, 3]), (src(4), vec![2, 2])], 4, 0).is_err());

        let g = RowGather::new(src(8), 8, vec![3, 0, 1, 1]).unwrap();
        assert_eq!(elems(&g), vec![6, 7, 0, 1, 2, 3, 2, 3]);
        assert_eq!(chunked(&g, 3), vec![6, 7, 0, 1, 2, 3, 2, 3]);
        assert!(RowGather::new(src(8), 8, vec![4]).is_err());

        let s = ByteSwap::new(src(2), 4).unwrap();
        assert_eq!(elems(&s), vec![0, 1u32.swap_bytes()]);
    }

    /// Element-by-element reference for a strided view over `0..n` u32 values.
    fn reference(offset: u64, shape: &[u64], stride: &[u64]) -> Vec<u32> {
        let mut out = Vec::new();
        let total: u64 = shape.iter().product();
        for mut i in 0..total {
            let mut at = offset;
            for d in (0..shape.len()).rev() {
                at += (i % shape[d]) * stride[d];
                i /= shape[d];
            }
            out.push(at as u32);
        }
        out
    }

    #[test]
    fn mapped_gather_matches_reference() {
        // Over a memory-mapped file the gather copies blocks of rows; check
        // it against the plain definition for transposes, 3-d permutations,
        // short runs, broadcasts and reads that start or end inside a row.
        let n = 7 * 9 * 11u32;
        let mut f = tempfile::NamedTempFile::new().unwrap();
        std::io::Write::write_all(&mut f, &(0..n).flat_map(|i| i.to_le_bytes()).collect::<Vec<u8>>()).unwrap();
        let file = SharedFile::open(f.path()).unwrap();
        assert!(file.mapped().is_ok_and(|m| !m.is_empty()));
        let inner: Arc<dyn DataSource> = Arc::new(crate::FileRange {
            file,
            offset: 0,
            len: n as u64 * 4,
        });
        let cases: &[(u64, &[u64], &[u64])] = &[
            (0, &[63, 11], &[1, 63]),
            (0, &[11, 9, 7], &[1, 11, 99]),
            (0, &[9, 7, 11], &[11, 99, 1]),
            (0, &[7, 11, 9], &[99, 1, 11]),
            (1, &[20, 3, 2], &[2, 60, 1]),
            (5, &[40, 17], &[0, 3]),
            (0, &[33, 21, 1], &[21, 1, 5]),
        ];
        for &(offset, shape, stride) in cases {
            let v = strided(inner.clone(), 4, offset, shape, stride).unwrap();
            let want = reference(offset, shape, stride);
            assert_eq!(elems(v.as_ref()), want, "{shape:?} {stride:?}");
            for step in [1, 5, 17, 64, 200, 1000] {
                assert_eq!(chunked(v.as_ref(), step), want, "{shape:?} {stride:?} by {step}");
            }
        }
        // Two-byte and sixteen-byte units, and a unit size with no fast case.
        for (es, shape, stride) in [
            (2u64, [30u64, 40], [1u64, 30]),
            (16, [10, 12], [1, 10]),
            (12, [10, 12], [1, 10]),
        ] {
            let v = strided(inner.clone(), es, 0, &shape, &stride).unwrap();
            let mut got = vec![0u8; v.len() as usize];
            v.read_at(0, &mut got).unwrap();
            let mut all = vec![0u8; n as usize * 4];
            inner.read_at(0, &mut all).unwrap();
            let want: Vec<u8> = reference(0, &shape, &stride)
                .into_iter()
                .flat_map(|e| all[(e as u64 * es) as usize..((e as u64 + 1) * es) as usize].to_vec())
                .collect();
            assert_eq!(got, want, "element size {es}");
        }
    }

    #[test]
    fn sparse_reads_split() {
        // A column of a tall matrix through a window smaller than its span.
        let rows = 40_000u64;
        let t = strided(src((rows * 512) as u32), 4, 7, &[rows], &[512]).unwrap();
        let got = chunked(t.as_ref(), 50_000);
        assert!(got.iter().enumerate().all(|(i, &v)| v as u64 == i as u64 * 512 + 7));
    }

    #[test]
    fn any_alignment_reads_inside_granules() {
        // ByteSwap of 4-byte elements refuses unaligned reads; through
        // AnyAlignment every byte range reads what the whole read has.
        let swapped: Arc<dyn DataSource> = Arc::new(ByteSwap::new(src(16), 4).unwrap());
        let mut all = vec![0u8; 64];
        swapped.read_at(0, &mut all).unwrap();
        assert!(swapped.read_at(1, &mut [0u8; 5]).is_err());
        let any = AnyAlignment::new(swapped);
        for (offset, n) in [(0usize, 64usize), (1, 5), (3, 1), (4, 4), (61, 3), (7, 50)] {
            let mut got = vec![0u8; n];
            any.read_at(offset as u64, &mut got).unwrap();
            assert_eq!(got, all[offset..offset + n], "{offset}+{n}");
        }
        assert!(any.read_at(62, &mut [0u8; 3]).is_err());
    }
}
