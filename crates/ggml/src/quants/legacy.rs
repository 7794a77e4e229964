//! The 32-element block types: Q4_0, Q4_1, Q5_0, Q5_1, Q8_0.
//!
//! Each function quantizes or dequantizes one block, reproducing ggml's
//! reference quantizers (`quantize_row_*_ref`) operation for operation, so
//! that the bytes match: same f32 arithmetic in the same order, the same
//! truncating float→int conversions, f16 scales rounded to nearest even.

use super::kquants::{importance, make_qkx2_quants, make_qx_quants};
use super::{f16_bits, f16_value};

pub const QK: usize = 32;

/// The value of largest magnitude (the first one, on ties), and that magnitude.
fn signed_absmax(x: &[f32]) -> (f32, f32) {
    let (mut amax, mut max) = (0.0f32, 0.0f32);
    for &v in x {
        if amax < v.abs() {
            amax = v.abs();
            max = v;
        }
    }
    (max, amax)
}

fn min_max(x: &[f32]) -> (f32, f32) {
    let (mut min, mut max) = (f32::MAX, -f32::MAX);
    for &v in x {
        if v < min {
            min = v;
        }
        if v > max {
            max = v;
        }
    }
    (min, max)
}

fn inverse(d: f32) -> f32 {
    if d != 0.0 {
        1.0 / d
    } else {
        0.0
    }
}

/// C's float → int conversion as x86 performs it (`cvttss2si`): truncation
/// toward zero, and 0x80000000 for NaN or out-of-range values (a block of
/// denormals gives an infinite inverse scale). Rust's `as` would saturate.
pub(crate) fn cvtt(v: f32) -> i32 {
    if v.is_nan() || !(-2_147_483_648.0..2_147_483_648.0).contains(&v) {
        i32::MIN
    } else {
        v as i32
    }
}

/// `cvtt(roundf(v))`: round half away from zero, then convert, without a
/// libm call. For |v| < 2³¹, v - trunc(v) is exact, so comparing it with
/// ±0.5 decides exactly as roundf does.
fn round_cvtt(v: f32) -> i32 {
    if !(-2_147_483_648.0..2_147_483_648.0).contains(&v) {
        return i32::MIN;
    }
    let t = v as i32;
    let frac = v - t as f32;
    if frac >= 0.5 {
        t + 1
    } else if frac <= -0.5 {
        t - 1
    } else {
        t
    }
}

/// C's `(int8_t)(float)`: the 32-bit conversion, then the low 8 bits.
fn trunc_i8(v: f32) -> i32 {
    cvtt(v) as i8 as i32
}

pub fn quantize_q4_0(x: &[f32], out: &mut [u8]) {
    let (max, _) = signed_absmax(x);
    let d = max / -8.0;
    let id = inverse(d);
    out[0..2].copy_from_slice(&f16_bits(d).to_le_bytes());
    for j in 0..QK / 2 {
        let x0 = x[j] * id;
        let x1 = x[QK / 2 + j] * id;
        let q0 = 15.min(trunc_i8(x0 + 8.5)) as u8;
        let q1 = 15.min(trunc_i8(x1 + 8.5)) as u8;
        out[2 + j] = q0 | (q1 << 4);
    }
}

pub fn dequantize_q4_0(b: &[u8], y: &mut [f32]) {
    let d = f16_value(b, 0);
    for j in 0..QK / 2 {
        y[j] = ((b[2 + j] & 0x0f) as i32 - 8) as f32 * d;
        y[j + QK / 2] = ((b[2 + j] >> 4) as i32 - 8) as f32 * d;
    }
}

pub fn quantize_q4_1(x: &[f32], out: &mut [u8]) {
    let (min, max) = min_max(x);
    let d = (max - min) / 15.0;
    let id = inverse(d);
    out[0..2].copy_from_slice(&f16_bits(d).to_le_bytes());
    out[2..4].copy_from_slice(&f16_bits(min).to_le_bytes());
    for j in 0..QK / 2 {
        let x0 = (x[j] - min) * id;
        let x1 = (x[QK / 2 + j] - min) * id;
        let q0 = 15.min(trunc_i8(x0 + 0.5)) as u8;
        let q1 = 15.min(trunc_i8(x1 + 0.5)) as u8;
        out[4 + j] = q0 | (q1 << 4);
    }
}

pub fn dequantize_q4_1(b: &[u8], y: &mut [f32]) {
    let (d, m) = (f16_value(b, 0), f16_value(b, 2));
    for j in 0..QK / 2 {
        y[j] = (b[4 + j] & 0x0f) as f32 * d + m;
        y[j + QK / 2] = (b[4 + j] >> 4) as f32 * d + m;
    }
}

/// Packs 32 five-bit values: low nibbles pairwise, fifth bits into `qh`.
fn pack5(q: &[u8; QK], qs: &mut [u8]) -> u32 {
    let mut qh = 0u32;
    for j in 0..QK / 2 {
        let (a, b) = (q[j], q[QK / 2 + j]);
        qs[j] = (a & 0x0f) | ((b & 0x0f) << 4);
        qh |= u32::from((a & 0x10) >> 4) << j;
        qh |= u32::from((b & 0x10) >> 4) << (j + QK / 2);
    }
    qh
}

fn unpack5(qh: u32, qs: &[u8], j: usize) -> (i32, i32) {
    let h0 = (((qh >> j) << 4) & 0x10) as u8;
    let h1 = ((qh >> (j + 12)) & 0x10) as u8;
    (((qs[j] & 0x0f) | h0) as i32, ((qs[j] >> 4) | h1) as i32)
}

pub fn quantize_q5_0(x: &[f32], out: &mut [u8]) {
    let (max, _) = signed_absmax(x);
    let d = max / -16.0;
    let id = inverse(d);
    let mut q = [0u8; QK];
    for (qi, &v) in q.iter_mut().zip(x) {
        *qi = 31.min(trunc_i8(v * id + 16.5)) as u8;
    }
    out[0..2].copy_from_slice(&f16_bits(d).to_le_bytes());
    let qh = pack5(&q, &mut out[6..22]);
    out[2..6].copy_from_slice(&qh.to_le_bytes());
}

pub fn dequantize_q5_0(b: &[u8], y: &mut [f32]) {
    let d = f16_value(b, 0);
    let qh = u32::from_le_bytes([b[2], b[3], b[4], b[5]]);
    for j in 0..QK / 2 {
        let (a, c) = unpack5(qh, &b[6..22], j);
        y[j] = (a - 16) as f32 * d;
        y[j + QK / 2] = (c - 16) as f32 * d;
    }
}

pub fn quantize_q5_1(x: &[f32], out: &mut [u8]) {
    let (min, max) = min_max(x);
    let d = (max - min) / 31.0;
    let id = inverse(d);
    let mut q = [0u8; QK];
    for (qi, &v) in q.iter_mut().zip(x) {
        *qi = cvtt((v - min) * id + 0.5) as u8;
    }
    out[0..2].copy_from_slice(&f16_bits(d).to_le_bytes());
    out[2..4].copy_from_slice(&f16_bits(min).to_le_bytes());
    let qh = pack5(&q, &mut out[8..24]);
    out[4..8].copy_from_slice(&qh.to_le_bytes());
}

pub fn dequantize_q5_1(b: &[u8], y: &mut [f32]) {
    let (d, m) = (f16_value(b, 0), f16_value(b, 2));
    let qh = u32::from_le_bytes([b[4], b[5], b[6], b[7]]);
    for j in 0..QK / 2 {
        let (a, c) = unpack5(qh, &b[8..24], j);
        y[j] = a as f32 * d + m;
        y[j + QK / 2] = c as f32 * d + m;
    }
}

pub fn quantize_q8_0(x: &[f32], out: &mut [u8]) {
    let amax = x.iter().fold(0.0f32, |a, v| if v.abs() > a { v.abs() } else { a });
    let d = amax / 127.0;
    let id = inverse(d);
    out[0..2].copy_from_slice(&f16_bits(d).to_le_bytes());
    for (o, &v) in out[2..34].iter_mut().zip(x) {
        // roundf: halves away from zero.
        *o = round_cvtt(v * id) as u8;
    }
}

pub fn dequantize_q8_0(b: &[u8], y: &mut [f32]) {
    let d = f16_value(b, 0);
    for (o, &q) in y.iter_mut().zip(&b[2..34]) {
        *o = f32::from(q as i8) * d;
    }
}

// ------------------------------------------------ with an importance matrix
// `quantize_row_q4_0_impl` … `quantize_row_q5_1_impl`: each block fitted
// under qw·sqrt(σ² + x²), σ² the mean square of the whole row.

fn block_array(x: &[f32]) -> [f32; QK] {
    let mut a = [0f32; QK];
    a.copy_from_slice(&x[..QK]);
    a
}

/// Symmetric levels (`make_qx_quants`), as unsigned codes.
fn symmetric_levels(x: &[f32], qw: &[f32], row_sigma2: f32, nmax: i32) -> (f32, [u8; QK]) {
    let xb = block_array(x);
    let mut l = [0i8; QK];
    let d = make_qx_quants(nmax, &xb, &importance(&xb, qw, row_sigma2), &mut l);
    (d, l.map(|v| v as u8))
}

/// Levels with a min (`make_qkx3_quants`): (scale, min, codes).
fn affine_levels(x: &[f32], qw: &[f32], row_sigma2: f32, nmax: i32) -> (f32, f32, [u8; QK]) {
    let xb = block_array(x);
    let mut l = [0u8; QK];
    let (d, the_min) = make_qkx2_quants(
        nmax,
        &xb,
        &importance(&xb, qw, row_sigma2),
        &mut l,
        -0.9,
        0.05,
        36,
        false,
    );
    (d, -the_min, l)
}

fn pack4(l: &[u8; QK], qs: &mut [u8]) {
    for j in 0..QK / 2 {
        qs[j] = l[j] | (l[j + QK / 2] << 4);
    }
}

pub fn quantize_q4_0_weighted(x: &[f32], qw: &[f32], row_sigma2: f32, out: &mut [u8]) {
    let (d, l) = symmetric_levels(x, qw, row_sigma2, 8);
    out[0..2].copy_from_slice(&f16_bits(d).to_le_bytes());
    pack4(&l, &mut out[2..18]);
}

pub fn quantize_q4_1_weighted(x: &[f32], qw: &[f32], row_sigma2: f32, out: &mut [u8]) {
    let (d, m, l) = affine_levels(x, qw, row_sigma2, 15);
    out[0..2].copy_from_slice(&f16_bits(d).to_le_bytes());
    out[2..4].copy_from_slice(&f16_bits(m).to_le_bytes());
    pack4(&l, &mut out[4..20]);
}

pub fn quantize_q5_0_weighted(x: &[f32], qw: &[f32], row_sigma2: f32, out: &mut [u8]) {
    let (d, l) = symmetric_levels(x, qw, row_sigma2, 16);
    out[0..2].copy_from_slice(&f16_bits(d).to_le_bytes());
    let qh = pack5(&l, &mut out[6..22]);
    out[2..6].copy_from_slice(&qh.to_le_bytes());
}

pub fn quantize_q5_1_weighted(x: &[f32], qw: &[f32], row_sigma2: f32, out: &mut [u8]) {
    let (d, m, l) = affine_levels(x, qw, row_sigma2, 31);
    out[0..2].copy_from_slice(&f16_bits(d).to_le_bytes());
    out[2..4].copy_from_slice(&f16_bits(m).to_le_bytes());
    let qh = pack5(&l, &mut out[8..24]);
    out[4..8].copy_from_slice(&qh.to_le_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_cvtt_matches_roundf_then_cvtt() {
        let mut v = -140.0f32;
        while v < 140.0 {
            for x in [
                v,
                v + 0.5,
                v - 0.5,
                f32::from_bits(v.to_bits() + 1),
                f32::from_bits(v.to_bits().saturating_sub(1)),
            ] {
                assert_eq!(round_cvtt(x), cvtt(x.round()), "{x}");
            }
            v += 0.123;
        }
        for x in [
            f32::NAN,
            f32::INFINITY,
            -f32::INFINITY,
            3e9,
            -3e9,
            0.49999997,
            -0.49999997,
        ] {
            assert_eq!(round_cvtt(x), cvtt(x.round()), "{x}");
        }
    }
}
