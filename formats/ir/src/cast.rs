//! Element conversions: casts between float types (round to nearest even,
//! NaN kept a NaN, as torch does) and decoding any plain type to f64 for
//! comparisons.

use crate::{DType, DataSource, Error, Result};
use half::slice::HalfFloatSliceExt;
use half::{bf16, f16};
use std::sync::Arc;

/// Whether [`CastSource`] converts `from` to `to`.
pub fn can_cast(from: DType, to: DType) -> bool {
    from.is_float() && matches!(to, DType::F64 | DType::F32 | DType::F16 | DType::BF16)
}

/// A computed source: another source's elements converted to `to`.
pub struct CastSource {
    inner: Arc<dyn DataSource>,
    from: DType,
    to: DType,
    len: u64,
}

impl CastSource {
    /// `inner` holds elements of `from`; the result holds them as `to`.
    pub fn new(inner: Arc<dyn DataSource>, from: DType, to: DType) -> Result<Self> {
        if !can_cast(from, to) {
            return Err(Error::unsupported(format!("cannot cast {from} to {to}")));
        }
        let n = inner.len() / from.type_size();
        let len = n
            .checked_mul(to.type_size())
            .ok_or_else(|| Error::invalid("cast result overflows u64"))?;
        Ok(CastSource { inner, from, to, len })
    }
}

impl DataSource for CastSource {
    fn len(&self) -> u64 {
        self.len
    }
    fn granule(&self) -> u64 {
        self.to.type_size()
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        let (fs, ts) = (self.from.type_size(), self.to.type_size());
        if !offset.is_multiple_of(ts) || !(buf.len() as u64).is_multiple_of(ts) {
            return Err(Error::internal("cast read not aligned to elements"));
        }
        let n_bytes = buf.len() / ts as usize * fs as usize;
        // Taken out of the thread's slot while in use: a cast reading
        // through another cast (a view chain) gets a buffer of its own.
        let mut scratch = SCRATCH.with_borrow_mut(std::mem::take);
        // u64 words keep the source bytes aligned for any element type.
        scratch.resize(n_bytes.div_ceil(8), 0);
        let src = &mut bytemuck::cast_slice_mut::<u64, u8>(&mut scratch)[..n_bytes];
        let r = self.inner.read_at(offset / ts * fs, src);
        if r.is_ok() {
            convert(self.from, src, self.to, buf);
        }
        SCRATCH.with_borrow_mut(|slot| {
            if slot.capacity() < scratch.capacity() {
                *slot = scratch;
            }
        });
        r
    }
}

thread_local! {
    /// Per-thread buffer for the source bytes of a cast chunk, reused so
    /// that chunks do not allocate (and fault in) fresh memory each time.
    static SCRATCH: std::cell::RefCell<Vec<u64>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Converts elements of `from` in `src` to elements of `to` in `dst`
/// (little-endian bytes; `dst` holds exactly as many elements).
pub fn convert(from: DType, src: &[u8], to: DType, dst: &mut [u8]) {
    match (from, to) {
        (a, b) if a == b => dst.copy_from_slice(src),
        (DType::F32, DType::F16) => with_f32(src, |x| with_u16_out(dst, |o: &mut [f16]| o.convert_from_f32_slice(x))),
        (DType::F32, DType::BF16) => with_f32(src, |x| with_u16_out(dst, |o: &mut [bf16]| o.convert_from_f32_slice(x))),
        (DType::F16, DType::F32) => with_u16_in::<f16>(src, |x| with_f32_out(dst, |o| x.convert_to_f32_slice(o))),
        (DType::BF16, DType::F32) => with_u16_in::<bf16>(src, |x| with_f32_out(dst, |o| x.convert_to_f32_slice(o))),
        (DType::F64, DType::F16) => put_u16(dst, f64s(src).map(|v| f16::from_f64(v).to_bits())),
        (DType::F64, DType::BF16) => put_u16(dst, f64s(src).map(|v| bf16::from_f64(v).to_bits())),
        (DType::F64, DType::F32) => put_f32(dst, f64s(src).map(|v| v as f32)),
        // Every other source widens exactly to f32 first, so one rounding happens.
        (_, DType::F64) => {
            for (o, v) in dst.chunks_exact_mut(8).zip(decoded(from, src)) {
                o.copy_from_slice(&v.to_le_bytes());
            }
        }
        (_, DType::F32) => put_f32(dst, decoded(from, src).map(|v| v as f32)),
        (_, DType::F16) => put_u16(dst, decoded(from, src).map(|v| f16::from_f32(v as f32).to_bits())),
        (_, DType::BF16) => put_u16(dst, decoded(from, src).map(|v| bf16::from_f32(v as f32).to_bits())),
        _ => unreachable!("can_cast() was checked by the caller"),
    }
}

/// `src` as f32s: borrowed when aligned, copied otherwise.
fn with_f32(src: &[u8], f: impl FnOnce(&[f32])) {
    match bytemuck::try_cast_slice::<u8, f32>(src) {
        Ok(x) => f(x),
        Err(_) => {
            let x: Vec<f32> = src
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
            f(&x)
        }
    }
}

/// `src` as 16-bit floats: borrowed when aligned, copied otherwise.
fn with_u16_in<T: bytemuck::Pod>(src: &[u8], f: impl FnOnce(&[T])) {
    match bytemuck::try_cast_slice::<u8, T>(src) {
        Ok(x) => f(x),
        Err(_) => f(&src
            .chunks_exact(2)
            .map(bytemuck::pod_read_unaligned)
            .collect::<Vec<T>>()),
    }
}

/// Lets `f` fill `dst` as f32s: in place when aligned, through a copy otherwise.
fn with_f32_out(dst: &mut [u8], f: impl FnOnce(&mut [f32])) {
    match bytemuck::try_cast_slice_mut::<u8, f32>(dst) {
        Ok(o) => f(o),
        Err(_) => {
            let mut tmp = vec![0f32; dst.len() / 4];
            f(&mut tmp);
            dst.copy_from_slice(bytemuck::cast_slice(&tmp));
        }
    }
}

/// Lets `f` fill `dst` as 16-bit floats: in place when aligned, through a
/// copy otherwise.
fn with_u16_out<T: bytemuck::Pod + Default>(dst: &mut [u8], f: impl FnOnce(&mut [T])) {
    match bytemuck::try_cast_slice_mut::<u8, T>(dst) {
        Ok(o) => f(o),
        Err(_) => {
            let mut tmp = vec![T::default(); dst.len() / 2];
            f(&mut tmp);
            dst.copy_from_slice(bytemuck::cast_slice(&tmp));
        }
    }
}

fn f64s(src: &[u8]) -> impl Iterator<Item = f64> + '_ {
    src.chunks_exact(8).map(|c| {
        let mut b = [0u8; 8];
        b.copy_from_slice(c);
        f64::from_le_bytes(b)
    })
}

fn put_u16(dst: &mut [u8], vals: impl Iterator<Item = u16>) {
    for (o, v) in dst.chunks_exact_mut(2).zip(vals) {
        o.copy_from_slice(&v.to_le_bytes());
    }
}

fn put_f32(dst: &mut [u8], vals: impl Iterator<Item = f32>) {
    for (o, v) in dst.chunks_exact_mut(4).zip(vals) {
        o.copy_from_slice(&v.to_le_bytes());
    }
}

/// float8 e4m3fn: bias 7, no infinities, S.1111.111 is NaN.
pub fn f8_e4m3_to_f32(b: u8) -> f32 {
    let sign = if b & 0x80 != 0 { -1.0 } else { 1.0 };
    let exp = i32::from((b >> 3) & 0x0f);
    let man = f32::from(b & 0x07);
    if exp == 15 && b & 0x07 == 7 {
        return f32::NAN;
    }
    if exp == 0 {
        sign * man / 8.0 * 2f32.powi(-6)
    } else {
        sign * (1.0 + man / 8.0) * 2f32.powi(exp - 7)
    }
}

/// float8 e5m2 is the upper byte of an IEEE half.
pub fn f8_e5m2_to_f32(b: u8) -> f32 {
    f16::from_bits(u16::from(b) << 8).to_f32()
}

/// Decodes plain elements to f64 (exactly; 64-bit integers round).
/// Quantized types are not plain elements and give an empty iterator.
pub fn decoded(dtype: DType, src: &[u8]) -> Box<dyn Iterator<Item = f64> + '_> {
    fn le<const N: usize>(c: &[u8]) -> [u8; N] {
        let mut b = [0u8; N];
        b.copy_from_slice(c);
        b
    }
    match dtype {
        DType::F64 => Box::new(f64s(src)),
        DType::F32 => Box::new(src.chunks_exact(4).map(|c| f64::from(f32::from_le_bytes(le(c))))),
        DType::F16 => Box::new(src.chunks_exact(2).map(|c| f16::from_le_bytes(le(c)).to_f64())),
        DType::BF16 => Box::new(src.chunks_exact(2).map(|c| bf16::from_le_bytes(le(c)).to_f64())),
        DType::F8_E4M3 => Box::new(src.iter().map(|&b| f64::from(f8_e4m3_to_f32(b)))),
        DType::F8_E5M2 => Box::new(src.iter().map(|&b| f64::from(f8_e5m2_to_f32(b)))),
        DType::I64 => Box::new(src.chunks_exact(8).map(|c| i64::from_le_bytes(le(c)) as f64)),
        DType::I32 => Box::new(src.chunks_exact(4).map(|c| f64::from(i32::from_le_bytes(le(c))))),
        DType::I16 => Box::new(src.chunks_exact(2).map(|c| f64::from(i16::from_le_bytes(le(c))))),
        DType::I8 => Box::new(src.iter().map(|&b| f64::from(b as i8))),
        DType::U64 => Box::new(src.chunks_exact(8).map(|c| u64::from_le_bytes(le(c)) as f64)),
        DType::U32 => Box::new(src.chunks_exact(4).map(|c| f64::from(u32::from_le_bytes(le(c))))),
        DType::U16 => Box::new(src.chunks_exact(2).map(|c| f64::from(u16::from_le_bytes(le(c))))),
        DType::U8 | DType::Bool => Box::new(src.iter().map(|&b| f64::from(b))),
        _ => Box::new(std::iter::empty()),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_cast_reads_through_another_cast() {
        let v: Vec<u8> = [1.5f32, -2.25, 3.0, 65504.0]
            .iter()
            .flat_map(|x| x.to_le_bytes())
            .collect();
        let inner = CastSource::new(Arc::new(MemSource::new(v)), DType::F32, DType::BF16).unwrap();
        let outer = CastSource::new(Arc::new(inner), DType::BF16, DType::F64).unwrap();
        let mut buf = vec![0u8; 32];
        outer.read_at(0, &mut buf).unwrap();
        let got: Vec<f64> = buf
            .chunks(8)
            .map(|c| f64::from_le_bytes(c.try_into().unwrap()))
            .collect();
        assert_eq!(got, vec![1.5, -2.25, 3.0, 65536.0]);
    }

    use super::*;
    use crate::MemSource;

    fn cast(from: DType, to: DType, src: &[u8]) -> Vec<u8> {
        let s = CastSource::new(Arc::new(MemSource::new(src.to_vec())), from, to).unwrap();
        let mut out = vec![0u8; s.len() as usize];
        s.read_at(0, &mut out).unwrap();
        out
    }

    #[test]
    fn f32_to_f16_rounds_to_even_and_keeps_nan() {
        // 1 + 2^-11 is halfway between two halves: ties go to the even one (1.0).
        let vals = [
            1.0f32 + 2f32.powi(-11),
            1.0 + 3.0 * 2f32.powi(-11),
            f32::NAN,
            -0.0,
            70000.0,
        ];
        let src: Vec<u8> = vals.iter().flat_map(|v| v.to_le_bytes()).collect();
        let out = cast(DType::F32, DType::F16, &src);
        let h: Vec<f16> = out.chunks(2).map(|c| f16::from_le_bytes([c[0], c[1]])).collect();
        assert_eq!(h[0], f16::from_f32(1.0));
        assert_eq!(h[1].to_f32(), 1.0 + 4.0 * 2f32.powi(-11));
        assert!(h[2].is_nan());
        assert_eq!(h[3].to_bits(), 0x8000);
        assert!(h[4].is_infinite());
    }

    #[test]
    fn bf16_widening_is_exact() {
        let src: Vec<u8> = [0x3f80u16, 0xc049, 0x7fc0]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let wide = cast(DType::BF16, DType::F32, &src);
        let back = cast(DType::F32, DType::BF16, &wide);
        assert_eq!(back, src);
    }

    #[test]
    fn f8_decoding() {
        assert_eq!(f8_e4m3_to_f32(0x38), 1.0);
        assert_eq!(f8_e4m3_to_f32(0x7e), 448.0);
        assert!(f8_e4m3_to_f32(0x7f).is_nan());
        assert_eq!(f8_e4m3_to_f32(0x01), 2f32.powi(-9));
        assert_eq!(f8_e5m2_to_f32(0x3c), 1.0);
        assert!(f8_e5m2_to_f32(0x7c).is_infinite());
    }
}
