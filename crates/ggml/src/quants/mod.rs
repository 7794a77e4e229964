//! ggml block quantization: quantizers byte-identical to ggml's (reference
//! paths, and the weighted paths under an importance matrix, row by row),
//! dequantizers identical to ggml's `dequantize_row_*`, and lazy
//! [`DataSource`]s that apply them chunk by chunk while a writer pulls.

mod extra;
mod iq;
mod kquants;
mod lanes;
mod legacy;

use modelconv_ir::{convert, DType, DataSource, Error, Result};
use std::sync::{Arc, Mutex};

pub use kquants::nearest_int;

/// f32 → IEEE half bits, round to nearest even (ggml's GGML_FP32_TO_FP16).
pub(crate) fn f16_bits(v: f32) -> u16 {
    half::f16::from_f32(v).to_bits()
}

/// The f16 stored at `b[at..at + 2]`, as f32.
pub(crate) fn f16_value(b: &[u8], at: usize) -> f32 {
    half::f16::from_bits(u16::from_le_bytes([b[at], b[at + 1]])).to_f32()
}

/// Elements quantized per chunk pulled by a writer.
const QUANT_CHUNK_ELEMS: u64 = 1 << 18;

type QuantFn = fn(&[f32], &mut [u8]);
type DequantFn = fn(&[u8], &mut [f32]);
/// A block quantized under an importance matrix: the block's values, the
/// matrix's values for its columns, and σ² of the whole row (the mean
/// square the 32-value types weigh by; the super-block types compute
/// their own).
type WeightedFn = fn(&[f32], &[f32], f32, &mut [u8]);

/// Dequantizers of the types produced only under an importance matrix
/// (ggml asserts one for them).
fn dequant_only(t: DType) -> Option<DequantFn> {
    use DType::*;
    Some(match t {
        IQ2_XXS => iq::dequantize_iq2_xxs,
        IQ2_XS => iq::dequantize_iq2_xs,
        IQ1_S => iq::dequantize_iq1_s,
        _ => return None,
    })
}

/// Whether `t` can be produced only under an importance matrix.
pub fn needs_importance(t: DType) -> bool {
    dequant_only(t).is_some() && weighted(t).is_some()
}

/// Types this build can dequantize (everything it quantizes, and more).
pub fn can_dequantize(t: DType) -> bool {
    codec(t).is_some() || dequant_only(t).is_some()
}

fn codec(t: DType) -> Option<(QuantFn, DequantFn)> {
    use DType::*;
    Some(match t {
        Q4_0 => (legacy::quantize_q4_0, legacy::dequantize_q4_0),
        Q4_1 => (legacy::quantize_q4_1, legacy::dequantize_q4_1),
        Q5_0 => (legacy::quantize_q5_0, legacy::dequantize_q5_0),
        Q5_1 => (legacy::quantize_q5_1, legacy::dequantize_q5_1),
        Q8_0 => (legacy::quantize_q8_0, legacy::dequantize_q8_0),
        Q2_K => (kquants::quantize_q2_k, kquants::dequantize_q2_k),
        Q3_K => (kquants::quantize_q3_k, kquants::dequantize_q3_k),
        Q4_K => (kquants::quantize_q4_k, kquants::dequantize_q4_k),
        Q5_K => (kquants::quantize_q5_k, kquants::dequantize_q5_k),
        Q6_K => (kquants::quantize_q6_k, kquants::dequantize_q6_k),
        Q8_K => (kquants::quantize_q8_k, kquants::dequantize_q8_k),
        IQ4_NL => (extra::quantize_iq4_nl, extra::dequantize_iq4_nl),
        IQ4_XS => (extra::quantize_iq4_xs, extra::dequantize_iq4_xs),
        TQ1_0 => (extra::quantize_tq1_0, extra::dequantize_tq1_0),
        TQ2_0 => (extra::quantize_tq2_0, extra::dequantize_tq2_0),
        MXFP4 => (extra::quantize_mxfp4, extra::dequantize_mxfp4),
        Q1_0 => (extra::quantize_q1_0, extra::dequantize_q1_0),
        Q2_0 => (extra::quantize_q2_0, extra::dequantize_q2_0),
        IQ3_XXS => (iq::quantize_iq3_xxs, iq::dequantize_iq3_xxs),
        IQ3_S => (iq::quantize_iq3_s, iq::dequantize_iq3_s),
        IQ2_S => (iq::quantize_iq2_s, iq::dequantize_iq2_s),
        IQ1_M => (iq::quantize_iq1_m, iq::dequantize_iq1_m),
        _ => return None,
    })
}

/// The importance-matrix path of a type, where ggml has one
/// (`quantize_row_*_impl`); the others (Q8_0, TQ1_0, TQ2_0, MXFP4, Q1_0,
/// Q2_0) ignore the matrix, as `ggml_quantize_chunk` does.
fn weighted(t: DType) -> Option<WeightedFn> {
    use DType::*;
    Some(match t {
        Q4_0 => legacy::quantize_q4_0_weighted,
        Q4_1 => legacy::quantize_q4_1_weighted,
        Q5_0 => legacy::quantize_q5_0_weighted,
        Q5_1 => legacy::quantize_q5_1_weighted,
        Q2_K => kquants::quantize_q2_k_weighted,
        Q3_K => kquants::quantize_q3_k_weighted,
        Q4_K => kquants::quantize_q4_k_weighted,
        Q5_K => kquants::quantize_q5_k_weighted,
        Q6_K => kquants::quantize_q6_k_weighted,
        IQ4_NL => extra::quantize_iq4_nl_weighted,
        IQ4_XS => extra::quantize_iq4_xs_weighted,
        IQ2_XXS => iq::quantize_iq2_xxs_weighted,
        IQ2_XS => iq::quantize_iq2_xs_weighted,
        IQ3_XXS => iq::quantize_iq3_xxs_weighted,
        IQ3_S => iq::quantize_iq3_s_weighted,
        IQ2_S => iq::quantize_iq2_s_weighted,
        IQ1_S => iq::quantize_iq1_s_weighted,
        IQ1_M => iq::quantize_iq1_m_weighted,
        _ => return None,
    })
}

/// Whether quantizing to `t` reads an importance matrix at all.
pub fn uses_importance(t: DType) -> bool {
    weighted(t).is_some()
}

/// Quantizes whole rows of `n_per_row` values. With `weights` (the
/// importance matrix's `n_per_row` values for this matrix) each row goes
/// through the type's weighted path; without, or for a type that has
/// none, this is [`quantize`].
pub fn quantize_rows(t: DType, x: &[f32], n_per_row: usize, weights: Option<&[f32]>, out: &mut [u8]) -> Result<()> {
    let (Some(qw), Some(q)) = (weights, weighted(t)) else {
        return quantize(t, x, out);
    };
    let (bs, ts) = (t.block_size() as usize, t.type_size() as usize);
    let row_bytes = n_per_row / bs.max(1) * ts;
    if n_per_row == 0
        || !n_per_row.is_multiple_of(bs)
        || !x.len().is_multiple_of(n_per_row)
        || qw.len() != n_per_row
        || out.len() != x.len() / n_per_row * row_bytes
    {
        return Err(Error::invalid(format!(
            "{} values in rows of {n_per_row} with {} importance values do not fill whole {t} rows",
            x.len(),
            qw.len()
        )));
    }
    for (row, orow) in x.chunks_exact(n_per_row).zip(out.chunks_exact_mut(row_bytes)) {
        // ggml's sum_x2/n_per_row, in its order.
        let sigma2 = row.iter().fold(0.0f32, |s, v| s + v * v) / n_per_row as f32;
        for ((xb, wb), ob) in row
            .chunks_exact(bs)
            .zip(qw.chunks_exact(bs))
            .zip(orow.chunks_exact_mut(ts))
        {
            q(xb, wb, sigma2, ob);
        }
    }
    Ok(())
}

/// Types this build can quantize to (and dequantize from); those of
/// [`needs_importance`] only under an importance matrix.
pub fn can_quantize(t: DType) -> bool {
    codec(t).is_some() || needs_importance(t)
}

/// Quantizes `x` (a whole number of blocks) into `out`.
pub fn quantize(t: DType, x: &[f32], out: &mut [u8]) -> Result<()> {
    if needs_importance(t) {
        return Err(Error::invalid(format!(
            "{t} is made only under an importance matrix (ggml has no {t} quantizer without one)"
        )));
    }
    let (q, _) = codec(t).ok_or_else(|| Error::unsupported(format!("quantizing to {t} is not supported")))?;
    let (bs, ts) = (t.block_size() as usize, t.type_size() as usize);
    if !x.len().is_multiple_of(bs) || out.len() != x.len() / bs * ts {
        return Err(Error::invalid(format!(
            "{} values do not fill whole {t} blocks",
            x.len()
        )));
    }
    for (xb, ob) in x.chunks_exact(bs).zip(out.chunks_exact_mut(ts)) {
        q(xb, ob);
    }
    Ok(())
}

/// Dequantizes whole blocks of `data` into `out`.
pub fn dequantize(t: DType, data: &[u8], out: &mut [f32]) -> Result<()> {
    let dq = codec(t)
        .map(|(_, dq)| dq)
        .or_else(|| dequant_only(t))
        .ok_or_else(|| Error::unsupported(format!("dequantizing {t} is not supported")))?;
    let (bs, ts) = (t.block_size() as usize, t.type_size() as usize);
    if !data.len().is_multiple_of(ts) || out.len() != data.len() / ts * bs {
        return Err(Error::invalid(format!("{} bytes are not whole {t} blocks", data.len())));
    }
    for (b, y) in data.chunks_exact(ts).zip(out.chunks_exact_mut(bs)) {
        dq(b, y);
    }
    Ok(())
}

/// Byte offsets of the f16 scales in one block (Q8_K's is an f32 at 0).
fn scale_offsets(t: DType) -> &'static [usize] {
    use DType::*;
    match t {
        Q4_0 | Q5_0 | Q8_0 | IQ4_NL | IQ4_XS | Q1_0 | Q2_0 | IQ2_XXS | IQ2_XS | IQ3_XXS | IQ3_S | IQ2_S | IQ1_S => &[0],
        Q4_1 | Q5_1 | Q4_K | Q5_K => &[0, 2],
        Q2_K => &[80, 82],
        Q3_K => &[108],
        Q6_K => &[208],
        TQ1_0 => &[52],
        TQ2_0 => &[64],
        _ => &[],
    }
}

/// The first block whose scale is not finite (an f16 scale overflows when
/// the values are too large for the type), as llama.cpp's row validation
/// would reject it.
pub fn first_bad_block(t: DType, data: &[u8]) -> Option<usize> {
    let ts = t.type_size() as usize;
    data.chunks_exact(ts).position(|b| {
        if t == DType::Q8_K {
            return !f32::from_le_bytes([b[0], b[1], b[2], b[3]]).is_finite();
        }
        if t == DType::MXFP4 {
            // E8M0 reserves 0xFF for NaN (a block of values near 2^-126).
            return b[0] == 0xff;
        }
        scale_offsets(t).iter().any(|&o| !f16_value(b, o).is_finite())
    })
}

/// Squared error of a quantization, gathered while it runs.
#[derive(Debug, Default)]
pub struct ErrorStats {
    sums: Mutex<(f64, f64)>,
}

impl ErrorStats {
    fn add(&self, err2: f64, ref2: f64) {
        if let Ok(mut s) = self.sums.lock() {
            s.0 += err2;
            s.1 += ref2;
        }
    }
    /// sqrt(Σ(x-q)² / Σx²); 0 for an all-zero source that stayed zero.
    pub fn relative_rmse(&self) -> f64 {
        let (e, r) = self.sums.lock().map(|s| *s).unwrap_or((0.0, 0.0));
        if r > 0.0 {
            (e / r).sqrt()
        } else if e > 0.0 {
            f64::INFINITY
        } else {
            0.0
        }
    }
}

/// Σ(x-y)² and Σx² in f64 (8 independent lanes, so it still vectorises):
/// squares of tiny weights (~1e-38) underflow in f32, which made a tensor
/// quantized to all zeros report no error.
fn squared_error(x: &[f32], y: &[f32]) -> (f64, f64) {
    let (mut el, mut rl) = ([0f64; 8], [0f64; 8]);
    let (xc, yc) = (x.chunks_exact(8), y.chunks_exact(8));
    for (&a, &b) in xc.remainder().iter().zip(yc.remainder()) {
        let (a, b) = (f64::from(a), f64::from(b));
        el[0] += (a - b) * (a - b);
        rl[0] += a * a;
    }
    for (a, b) in xc.zip(yc) {
        for k in 0..8 {
            let (a, b) = (f64::from(a[k]), f64::from(b[k]));
            el[k] += (a - b) * (a - b);
            rl[k] += a * a;
        }
    }
    (el.iter().sum(), rl.iter().sum())
}

/// The first non-finite value in `x`, if any: (index, value).
pub fn first_non_finite(x: &[f32]) -> Option<(usize, f32)> {
    x.iter().position(|v| !v.is_finite()).map(|i| (i, x[i]))
}

/// A computed source: a float source (F32, F16, BF16, F64) quantized to a
/// block type, block by block as the writer asks for bytes. F16/BF16 are
/// widened to f32 first, as llama.cpp does.
pub struct QuantizeSource {
    inner: Arc<dyn DataSource>,
    from: DType,
    to: DType,
    len: u64,
    allow_nonfinite: bool,
    stats: Option<Arc<ErrorStats>>,
    importance: Option<Importance>,
}

/// An importance matrix's values for one tensor: `n_per_row` per expert
/// matrix of `rows_per_expert` rows (one matrix for a 2-D tensor).
#[derive(Clone)]
struct Importance {
    values: Arc<[f32]>,
    n_per_row: u64,
    rows_per_expert: u64,
}

impl QuantizeSource {
    pub fn new(inner: Arc<dyn DataSource>, from: DType, to: DType, allow_nonfinite: bool) -> Result<Self> {
        if !can_quantize(to) || !modelconv_ir::can_cast(from, DType::F32) {
            return Err(Error::unsupported(format!("cannot quantize {from} to {to}")));
        }
        let n = inner.len() / from.type_size();
        let len = to.byte_len(n)?;
        Ok(QuantizeSource {
            inner,
            from,
            to,
            len,
            allow_nonfinite,
            stats: None,
            importance: None,
        })
    }

    /// Quantize under an importance matrix: `values` holds `n_per_row`
    /// values per expert matrix of `rows_per_expert` rows, as llama.cpp
    /// slices it (`imatrix + (row / nrows_per_expert) * n_per_row`).
    /// Reads then come in whole rows.
    pub fn with_importance(mut self, values: Arc<[f32]>, n_per_row: u64, rows_per_expert: u64) -> Result<Self> {
        let n = self.len / self.to.type_size() * self.to.block_size();
        let rows = n.checked_div(n_per_row).unwrap_or(0);
        let experts = rows.checked_div(rows_per_expert).unwrap_or(0);
        if n_per_row == 0
            || !n_per_row.is_multiple_of(self.to.block_size())
            || rows * n_per_row != n
            || experts * rows_per_expert != rows
            || Some(values.len() as u64) != experts.checked_mul(n_per_row)
        {
            return Err(Error::invalid(format!(
                "an importance matrix of {} values does not fit {experts} matrices of rows of {n_per_row}",
                values.len()
            )));
        }
        self.importance = Some(Importance {
            values,
            n_per_row,
            rows_per_expert,
        });
        Ok(self)
    }

    /// Bytes of one output row (the read unit under an importance matrix).
    fn row_bytes(&self) -> Option<u64> {
        let imp = self.importance.as_ref()?;
        Some(imp.n_per_row / self.to.block_size() * self.to.type_size())
    }

    /// Also measure the error against the source while quantizing.
    pub fn with_stats(mut self, stats: Arc<ErrorStats>) -> Self {
        self.stats = Some(stats);
        self
    }
}

impl DataSource for QuantizeSource {
    fn len(&self) -> u64 {
        self.len
    }
    fn granule(&self) -> u64 {
        self.row_bytes().unwrap_or(self.to.type_size())
    }
    fn preferred_chunk(&self) -> Option<u64> {
        // 256K elements: ~1 MiB of f32 in flight per worker, and enough
        // chunks that even small tensors keep every core busy.
        if let (Some(rb), Some(imp)) = (self.row_bytes(), &self.importance) {
            return Some((QUANT_CHUNK_ELEMS / imp.n_per_row).max(1) * rb);
        }
        Some(QUANT_CHUNK_ELEMS / self.to.block_size() * self.to.type_size())
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        let (bs, ts) = (self.to.block_size(), self.to.type_size());
        let g = self.granule();
        if !offset.is_multiple_of(g) || !(buf.len() as u64).is_multiple_of(g) {
            return Err(Error::internal("quantized read not aligned to blocks"));
        }
        let first = offset / ts * bs;
        let n = buf.len() as u64 / ts * bs;
        // Taken out of the thread's slot while in use, so that a chain of
        // computed sources never finds it borrowed.
        let mut sc = SCRATCH.with_borrow_mut(std::mem::take);
        let r = self.quantize_chunk(&mut sc, first, n as usize, offset, buf);
        SCRATCH.with_borrow_mut(|slot| *slot = sc);
        r
    }
}

/// Per-thread buffers reused from chunk to chunk (no fresh, zeroed memory
/// per chunk): raw source bytes, the f32 values, their dequantized copy.
#[derive(Default)]
struct Scratch {
    raw: Vec<u8>,
    x: Vec<f32>,
    y: Vec<f32>,
}

thread_local! {
    static SCRATCH: std::cell::RefCell<Scratch> = std::cell::RefCell::new(Scratch::default());
}

impl QuantizeSource {
    fn quantize_chunk(&self, sc: &mut Scratch, first: u64, n: usize, offset: u64, buf: &mut [u8]) -> Result<()> {
        let (bs, ts, fs) = (self.to.block_size(), self.to.type_size(), self.from.type_size());
        sc.x.resize(n, 0.0);
        let x = &mut sc.x;
        if self.from == DType::F32 {
            self.inner.read_at(first * fs, bytemuck_f32_mut(x))?;
        } else {
            sc.raw.resize(n * fs as usize, 0);
            self.inner.read_at(first * fs, &mut sc.raw)?;
            convert(self.from, &sc.raw, DType::F32, bytemuck_f32_mut(x));
        }
        if !self.allow_nonfinite {
            if let Some((i, v)) = first_non_finite(x) {
                let at = first + i as u64;
                return Err(Error::invalid(format!(
                    "value {v} at element {at} (block {}); llama.cpp refuses non-finite weights (use --allow-nonfinite to quantize anyway)",
                    at / bs
                )));
            }
        }
        self.quantize_values(x, first, buf)?;
        if !self.allow_nonfinite {
            if let Some(b) = first_bad_block(self.to, buf) {
                let block = offset / ts + b as u64;
                return Err(Error::invalid(format!(
                    "block {block}: its {} scale overflows (values too large for this type; use --allow-nonfinite to write it anyway)",
                    self.to
                )));
            }
        }
        if let Some(stats) = &self.stats {
            sc.y.resize(n, 0.0);
            dequantize(self.to, buf, &mut sc.y)?;
            let (e2, r2) = squared_error(&sc.x, &sc.y);
            stats.add(e2, r2);
        }
        Ok(())
    }
}

impl QuantizeSource {
    /// Quantizes `x` (starting at element `first`, whole rows under an
    /// importance matrix) into `buf`, each row with its expert's values.
    fn quantize_values(&self, x: &[f32], first: u64, buf: &mut [u8]) -> Result<()> {
        let Some(imp) = &self.importance else {
            return quantize(self.to, x, buf);
        };
        let n = imp.n_per_row as usize;
        let rb = buf.len() / (x.len() / n).max(1);
        let first_row = first / imp.n_per_row;
        for (i, (row, out)) in x.chunks_exact(n).zip(buf.chunks_exact_mut(rb)).enumerate() {
            let expert = ((first_row + i as u64) / imp.rows_per_expert) as usize;
            let w = &imp.values[expert * n..expert * n + n];
            quantize_rows(self.to, row, n, Some(w), out)?;
        }
        Ok(())
    }
}

/// A computed source: a block-quantized source as F32.
pub struct DequantizeSource {
    inner: Arc<dyn DataSource>,
    from: DType,
    len: u64,
}

impl DequantizeSource {
    pub fn new(inner: Arc<dyn DataSource>, from: DType) -> Result<Self> {
        if !can_dequantize(from) {
            return Err(Error::unsupported(format!("dequantizing {from} is not supported")));
        }
        let blocks = inner.len() / from.type_size();
        let len = blocks
            .checked_mul(from.block_size() * 4)
            .ok_or_else(|| Error::invalid("dequantized size overflows u64"))?;
        Ok(DequantizeSource { inner, from, len })
    }
}

impl DataSource for DequantizeSource {
    fn len(&self) -> u64 {
        self.len
    }
    fn granule(&self) -> u64 {
        self.from.block_size() * 4
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        let g = self.granule();
        if !offset.is_multiple_of(g) || !(buf.len() as u64).is_multiple_of(g) {
            return Err(Error::invalid("dequantized read not aligned to blocks"));
        }
        let ts = self.from.type_size();
        let mut raw = vec![0u8; (buf.len() as u64 / g * ts) as usize];
        self.inner.read_at(offset / g * ts, &mut raw)?;
        let mut y = vec![0f32; buf.len() / 4];
        dequantize(self.from, &raw, &mut y)?;
        for (o, v) in buf.chunks_exact_mut(4).zip(&y) {
            o.copy_from_slice(&v.to_le_bytes());
        }
        Ok(())
    }
}

/// A `&mut [f32]` as little-endian bytes (x86/ARM are little-endian).
fn bytemuck_f32_mut(x: &mut [f32]) -> &mut [u8] {
    // SAFETY: f32 has no padding or invalid bit patterns; the byte slice
    // covers exactly the same memory and lifetime.
    unsafe { std::slice::from_raw_parts_mut(x.as_mut_ptr().cast::<u8>(), std::mem::size_of_val(x)) }
}

#[cfg(test)]
mod tests {

    #[test]
    fn error_of_tiny_weights_flushed_to_zero_is_total() {
        let x = vec![1e-38f32; 300];
        let y = vec![0f32; 300];
        let (e, r) = squared_error(&x, &y);
        assert!(e > 0.0 && r > 0.0);
        let s = ErrorStats::default();
        s.add(e, r);
        assert!((s.relative_rmse() - 1.0).abs() < 1e-12);
    }
    use super::*;

    #[test]
    fn nearest_int_rounds_half_to_even() {
        assert_eq!(nearest_int(0.5), 0);
        assert_eq!(nearest_int(1.5), 2);
        assert_eq!(nearest_int(2.5), 2);
        assert_eq!(nearest_int(-0.5), 0);
        assert_eq!(nearest_int(-1.5), -2);
        assert_eq!(nearest_int(3.49), 3);
        assert_eq!(nearest_int(-7.6), -8);
    }

    #[test]
    fn zero_blocks_round_trip_to_zero() {
        for t in [
            DType::Q4_0,
            DType::Q4_1,
            DType::Q5_0,
            DType::Q5_1,
            DType::Q8_0,
            DType::Q2_K,
            DType::Q3_K,
            DType::Q4_K,
            DType::Q5_K,
            DType::Q6_K,
            DType::Q8_K,
        ] {
            let x = vec![0f32; 256];
            let mut q = vec![0u8; t.byte_len(256).unwrap() as usize];
            quantize(t, &x, &mut q).unwrap();
            let mut y = vec![1f32; 256];
            dequantize(t, &q, &mut y).unwrap();
            assert!(y.iter().all(|v| *v == 0.0), "{t}");
        }
    }
}
