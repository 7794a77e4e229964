//! The ggml types without the K-quants' scale searches: IQ4_NL and IQ4_XS
//! (a 16-level non-linear table), TQ1_0 and TQ2_0 (ternary), MXFP4 (E2M1
//! with an E8M0 scale), Q1_0 and Q2_0 (sign bits; 2-bit codes). Quantizers
//! as `ggml_quantize_chunk` runs them (IQ4_NL/IQ4_XS search 2·7 + 1 scales
//! with or without an importance matrix; the others take none), and
//! dequantizers identical to ggml's `dequantize_row_*`. Types that need
//! ggml's large lookup grids (IQ1/IQ2/IQ3) are not covered.

// Index loops here follow ggml's block layouts position by position.
#![allow(clippy::needless_range_loop)]

use super::kquants::nearest_int;
use super::legacy::cvtt;
use super::{f16_bits, f16_value};

/// Below this magnitude a group counts as all zero.
const GROUP_MAX_EPS: f32 = 1e-15;

/// The 16 non-linear levels of IQ4_NL and IQ4_XS.
pub(crate) const KVALUES_IQ4NL: [i8; 16] = [-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113];
/// E2M1 values, doubled (the scale carries the factor 1/2).
const KVALUES_MXFP4: [i8; 16] = [0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12];

/// IQ4_NL: d f16 | qs[16]; 32 values from a 16-level table.
pub fn dequantize_iq4_nl(b: &[u8], y: &mut [f32]) {
    let d = f16_value(b, 0);
    for j in 0..16 {
        y[j] = d * f32::from(KVALUES_IQ4NL[(b[2 + j] & 0xf) as usize]);
        y[j + 16] = d * f32::from(KVALUES_IQ4NL[(b[2 + j] >> 4) as usize]);
    }
}

/// IQ4_XS: d f16 | scales_h u16 | scales_l[4] | qs[128]; eight 32-value
/// sub-blocks with 6-bit scales (offset 32).
pub fn dequantize_iq4_xs(b: &[u8], y: &mut [f32]) {
    let d = f16_value(b, 0);
    let scales_h = u16::from_le_bytes([b[2], b[3]]);
    let (scales_l, qs) = (&b[4..8], &b[8..136]);
    for ib in 0..8 {
        let ls = ((scales_l[ib / 2] >> (4 * (ib % 2))) & 0xf) as i32 | ((((scales_h >> (2 * ib)) & 3) as i32) << 4);
        let dl = d * (ls - 32) as f32;
        let q = &qs[16 * ib..16 * ib + 16];
        for j in 0..16 {
            y[32 * ib + j] = dl * f32::from(KVALUES_IQ4NL[(q[j] & 0xf) as usize]);
            y[32 * ib + j + 16] = dl * f32::from(KVALUES_IQ4NL[(q[j] >> 4) as usize]);
        }
    }
}

/// One base-3 digit ("trit") of a packed byte, as ggml extracts it:
/// multiply by 3ⁿ (mod 256), then take the top of `q * 3`.
fn trit(byte: u8, n: usize) -> f32 {
    const POW3: [u8; 6] = [1, 3, 9, 27, 81, 243];
    let q = byte.wrapping_mul(POW3[n]);
    ((u16::from(q) * 3) >> 8) as f32 - 1.0
}

/// TQ1_0: qs[48] | qh[4] | d f16; ternary values, five per byte.
pub fn dequantize_tq1_0(b: &[u8], y: &mut [f32]) {
    let (qs, qh) = (&b[..48], &b[48..52]);
    let d = f16_value(b, 52);
    let mut k = 0;
    for n in 0..5 {
        for &byte in &qs[..32] {
            y[k] = trit(byte, n) * d;
            k += 1;
        }
    }
    for n in 0..5 {
        for &byte in &qs[32..48] {
            y[k] = trit(byte, n) * d;
            k += 1;
        }
    }
    for n in 0..4 {
        for &byte in qh {
            y[k] = trit(byte, n) * d;
            k += 1;
        }
    }
}

/// TQ2_0: qs[64] | d f16; ternary values, four 2-bit codes per byte.
pub fn dequantize_tq2_0(b: &[u8], y: &mut [f32]) {
    let d = f16_value(b, 64);
    let mut k = 0;
    for j in (0..64).step_by(32) {
        for l in 0..4 {
            for m in 0..32 {
                y[k] = (((b[j + m] >> (2 * l)) & 3) as i32 - 1) as f32 * d;
                k += 1;
            }
        }
    }
}

/// 2^(e-128) (the E8M0 scale, halved), built from its bit pattern.
fn e8m0_half(e: u8) -> f32 {
    if e < 2 {
        f32::from_bits(0x0020_0000 << e)
    } else {
        f32::from_bits(u32::from(e - 1) << 23)
    }
}

/// MXFP4: e (E8M0 scale) | qs[16]; 32 E2M1 values.
pub fn dequantize_mxfp4(b: &[u8], y: &mut [f32]) {
    let d = e8m0_half(b[0]);
    for j in 0..16 {
        y[j] = f32::from(KVALUES_MXFP4[(b[1 + j] & 0xf) as usize]) * d;
        y[j + 16] = f32::from(KVALUES_MXFP4[(b[1 + j] >> 4) as usize]) * d;
    }
}

/// The index of the level nearest `x` in the ascending table `v`
/// (`best_index_int8`: bisection, ties to the upper level).
fn best_index(v: &[i8; 16], x: f32) -> usize {
    if x <= f32::from(v[0]) {
        return 0;
    }
    if x >= f32::from(v[15]) {
        return 15;
    }
    let (mut ml, mut mu) = (0usize, 15usize);
    while mu - ml > 1 {
        let mav = (ml + mu) / 2;
        if x < f32::from(v[mav]) {
            mu = mav;
        } else {
            ml = mav;
        }
    }
    if x - f32::from(v[mu - 1]) < f32::from(v[mu]) - x {
        mu - 1
    } else {
        mu
    }
}

/// Scale search steps on either side of -max/127 (`ntry` = 7, what
/// `quantize_iq4_nl` / `quantize_iq4_xs` pass).
pub(crate) const IQ4_NTRY: i32 = 7;

/// One 32-value sub-block of IQ4: the best scale of 15 candidates for the
/// weighted fit to the 16 levels; 0 for an all-zero group.
pub(crate) fn iq4_sub_block_scale(xb: &[f32], weight: &[f32; 32]) -> f32 {
    let (mut amax, mut max) = (0.0f32, 0.0f32);
    for &v in xb {
        if v.abs() > amax {
            amax = v.abs();
            max = v;
        }
    }
    if amax < GROUP_MAX_EPS {
        return 0.0;
    }
    let v0 = f32::from(KVALUES_IQ4NL[0]);
    let fit = |id: f32| {
        let (mut sumqx, mut sumq2) = (0.0f32, 0.0f32);
        for j in 0..32 {
            let q = f32::from(KVALUES_IQ4NL[best_index(&KVALUES_IQ4NL, id * xb[j])]);
            sumqx += weight[j] * q * xb[j];
            sumq2 += weight[j] * q * q;
        }
        (sumqx, sumq2)
    };
    let (sumqx, sumq2) = fit(1.0 / (-max / v0));
    let mut d = if sumq2 > 0.0 { sumqx / sumq2 } else { 0.0 };
    let mut best = d * sumqx;
    for itry in -IQ4_NTRY..=IQ4_NTRY {
        let (sumqx, sumq2) = fit((itry + i32::from(KVALUES_IQ4NL[0])) as f32 / max);
        if sumq2 > 0.0 && sumqx * sumqx > best * sumq2 {
            d = sumqx / sumq2;
            best = d * sumqx;
        }
    }
    d
}

/// `quantize_row_iq4_nl_impl` for one super-block of `N` values in
/// 32-value sub-blocks: the weights (qw·sqrt(2σ²/N·… + x²) with an
/// importance matrix, x² without), each sub-block's scale, then for IQ4_XS
/// the scales to 6 bits under one f16 and the levels against them. Returns
/// (f16 bits of d, scales_h, scales_l, levels).
fn iq4_super_block<const N: usize>(x: &[f32], qw: Option<&[f32]>) -> (u16, u16, [u8; 4], [u8; N]) {
    let mut sigma2 = 0.0f32;
    for &v in &x[..N] {
        sigma2 += v * v;
    }
    sigma2 *= 2.0 / N as f32;
    let nb = N / 32;
    let (mut xs, mut weights) = ([[0f32; 32]; 8], [[0f32; 32]; 8]);
    for ib in 0..nb {
        let xb = &x[32 * ib..32 * ib + 32];
        xs[ib].copy_from_slice(xb);
        for j in 0..32 {
            weights[ib][j] = match qw {
                Some(q) => q[32 * ib + j] * (sigma2 + xb[j] * xb[j]).sqrt(),
                None => xb[j] * xb[j],
            };
        }
    }
    let scales = if nb == 8 {
        super::lanes::iq4_scales_x8(&xs, &weights)
    } else {
        std::array::from_fn(|ib| {
            if ib < nb {
                iq4_sub_block_scale(&xs[ib], &weights[ib])
            } else {
                0.0
            }
        })
    };
    let (mut max_scale, mut amax_scale) = (0.0f32, 0.0f32);
    for &d in &scales[..nb] {
        if d.abs() > amax_scale {
            amax_scale = d.abs();
            max_scale = d;
        }
    }
    let mut l = [0u8; N];
    let levels = |l: &mut [u8], xb: &[f32], id: f32| {
        for (o, &v) in l.iter_mut().zip(xb) {
            *o = best_index(&KVALUES_IQ4NL, id * v) as u8;
        }
    };
    if nb == 1 {
        let id = if scales[0] != 0.0 { 1.0 / scales[0] } else { 0.0 };
        levels(&mut l, &x[..N], id);
        return (f16_bits(scales[0]), 0, [0; 4], l);
    }
    let d = -max_scale / 32.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    let (mut scales_h, mut scales_l) = (0u16, [0u8; 4]);
    for ib in 0..nb {
        let ls = nearest_int(id * scales[ib]).clamp(-32, 31);
        let dl = d * ls as f32;
        let idl = if dl != 0.0 { 1.0 / dl } else { 0.0 };
        levels(&mut l[32 * ib..32 * ib + 32], &x[32 * ib..32 * ib + 32], idl);
        let code = (ls + 32) as u16;
        if ib % 2 == 0 {
            scales_l[ib / 2] = (code & 0xf) as u8;
        } else {
            scales_l[ib / 2] |= ((code & 0xf) << 4) as u8;
        }
        scales_h |= (code >> 4) << (2 * (ib % 8));
    }
    (f16_bits(d), scales_h, scales_l, l)
}

/// Two 16-value halves of each 32 levels, low and high nibbles.
fn pack_nibbles(l: &[u8], qs: &mut [u8]) {
    for i in 0..l.len() / 32 {
        for j in 0..16 {
            qs[16 * i + j] = l[32 * i + j] | (l[32 * i + 16 + j] << 4);
        }
    }
}

pub fn quantize_iq4_nl(x: &[f32], out: &mut [u8]) {
    iq4_nl_with(x, None, out);
}

pub fn quantize_iq4_nl_weighted(x: &[f32], qw: &[f32], _row_sigma2: f32, out: &mut [u8]) {
    iq4_nl_with(x, Some(qw), out);
}

fn iq4_nl_with(x: &[f32], qw: Option<&[f32]>, out: &mut [u8]) {
    let (d, _, _, l) = iq4_super_block::<32>(x, qw);
    out[0..2].copy_from_slice(&d.to_le_bytes());
    pack_nibbles(&l, &mut out[2..18]);
}

pub fn quantize_iq4_xs(x: &[f32], out: &mut [u8]) {
    iq4_xs_with(x, None, out);
}

pub fn quantize_iq4_xs_weighted(x: &[f32], qw: &[f32], _row_sigma2: f32, out: &mut [u8]) {
    iq4_xs_with(x, Some(qw), out);
}

fn iq4_xs_with(x: &[f32], qw: Option<&[f32]>, out: &mut [u8]) {
    let (d, scales_h, scales_l, l) = iq4_super_block::<256>(x, qw);
    out[0..2].copy_from_slice(&d.to_le_bytes());
    out[2..4].copy_from_slice(&scales_h.to_le_bytes());
    out[4..8].copy_from_slice(&scales_l);
    pack_nibbles(&l, &mut out[8..136]);
}

/// The largest magnitude, as ggml's `MAX(amax, fabsf(v))` keeps it.
fn abs_max(x: &[f32]) -> f32 {
    x.iter().fold(0.0f32, |a, v| if a > v.abs() { a } else { v.abs() })
}

/// A value scaled to [-1, 1] as a ternary code 0, 1, 2: C's
/// `int xi = lroundf(v * id) + 1`, where lroundf gives LONG_MIN for NaN
/// and ±inf (a denormal block's inverse scale is infinite) and the `int`
/// keeps the low 32 bits.
fn ternary(v: f32, id: f32) -> u8 {
    let x = v * id;
    let l = if x.is_nan() || x.abs() >= 9.223_372e18 {
        i64::MIN
    } else {
        x.round() as i64
    };
    (l.wrapping_add(1) as i32) as u8
}

/// Five (or four, then shifted) base-3 digits as one byte, scaled so that
/// `trit` reads them back: the ceiling of q·256/243.
fn pack_trits(digits: impl Iterator<Item = u8>) -> u8 {
    let q = digits.fold(0u8, |q, t| q.wrapping_mul(3).wrapping_add(t));
    (u16::from(q) * 256).div_ceil(243) as u8
}

/// TQ1_0 (`quantize_row_tq1_0_ref`): d = max|x|, values ±1/0, five per
/// byte across 32 then 16 bytes, four per byte (shifted up) in qh.
pub fn quantize_tq1_0(x: &[f32], out: &mut [u8]) {
    let d = abs_max(&x[..256]);
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    for m in 0..32 {
        out[m] = pack_trits((0..5).map(|n| ternary(x[m + 32 * n], id)));
    }
    for m in 0..16 {
        out[32 + m] = pack_trits((0..5).map(|n| ternary(x[160 + m + 16 * n], id)));
    }
    for j in 0..4 {
        let four = (0..4).map(|m| ternary(x[240 + j + 4 * m], id));
        out[48 + j] = pack_trits(four.chain(std::iter::once(0)));
    }
    out[52..54].copy_from_slice(&f16_bits(d).to_le_bytes());
}

/// TQ2_0 (`quantize_row_tq2_0_ref`): d = max|x|, values ±1/0 as 2-bit codes.
pub fn quantize_tq2_0(x: &[f32], out: &mut [u8]) {
    let d = abs_max(&x[..256]);
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    for j in (0..64).step_by(32) {
        for m in 0..32 {
            let mut q = 0u8;
            for n in 0..4 {
                q = q.wrapping_add((ternary(x[4 * j + m + 32 * n], id) & 3) << (2 * n));
            }
            out[j + m] = q;
        }
    }
    out[64..66].copy_from_slice(&f16_bits(d).to_le_bytes());
}

/// The nearest E2M1 level to `x` under scale `e` (`best_index_mxfp4`).
fn best_index_mxfp4(x: f32, e: f32) -> u8 {
    let mut best = (0u8, (f32::from(KVALUES_MXFP4[0]) * e - x).abs());
    for i in 1..16 {
        let err = (f32::from(KVALUES_MXFP4[i]) * e - x).abs();
        if err < best.1 {
            best = (i as u8, err);
        }
    }
    best.0
}

/// MXFP4 (`quantize_row_mxfp4_ref`): the E8M0 exponent floor(log2 max|x|)
/// - 2, stored as C converts a float to `uint8_t`; levels nearest by error.
pub fn quantize_mxfp4(x: &[f32], out: &mut [u8]) {
    let amax = x[..32]
        .iter()
        .fold(0.0f32, |a, v| if a < v.abs() { v.abs() } else { a });
    // Same libm log2f as ggml's build, so the floor agrees at powers of two.
    let e = if amax > 0.0 {
        (amax.log2().floor() - 2.0 + 127.0) as i32 as u8
    } else {
        0
    };
    let d = e8m0_half(e);
    out[0] = e;
    for j in 0..16 {
        out[1 + j] = best_index_mxfp4(x[j], d) | (best_index_mxfp4(x[16 + j], d) << 4);
    }
}

/// Q1_0 (`quantize_row_q1_0_ref`): d = mean |x| over 128 values, one sign
/// bit each (set for x ≥ 0).
pub fn quantize_q1_0(x: &[f32], out: &mut [u8]) {
    let sum_abs = x[..128].iter().fold(0.0f32, |s, v| s + v.abs());
    out[0..2].copy_from_slice(&f16_bits(sum_abs / 128.0).to_le_bytes());
    for (k, byte) in out[2..18].iter_mut().enumerate() {
        *byte = (0..8).fold(0u8, |b, bit| b | (u8::from(x[8 * k + bit] >= 0.0) << bit));
    }
}

pub fn dequantize_q1_0(b: &[u8], y: &mut [f32]) {
    let d = f16_value(b, 0);
    for j in 0..128 {
        y[j] = if (b[2 + j / 8] >> (j % 8)) & 1 != 0 { d } else { -d };
    }
}

/// Q2_0 (`quantize_row_q2_0_ref`): d = max|x| over 64 values, codes
/// round(x/d) + 1 clamped to 0…3 (−d, 0, d, 2d).
pub fn quantize_q2_0(x: &[f32], out: &mut [u8]) {
    let amax = x[..64]
        .iter()
        .fold(0.0f32, |a, v| if v.abs() > a { v.abs() } else { a });
    let id = if amax > 0.0 { 1.0 / amax } else { 0.0 };
    out[0..2].copy_from_slice(&f16_bits(amax).to_le_bytes());
    out[2..18].iter_mut().for_each(|b| *b = 0);
    for j in 0..64 {
        // (int)roundf(…) as x86 converts: 0x80000000 for NaN and ±inf.
        let q = cvtt((x[j] * id).round()).wrapping_add(1).clamp(0, 3) as u8;
        out[2 + j / 4] |= q << ((j % 4) * 2);
    }
}

pub fn dequantize_q2_0(b: &[u8], y: &mut [f32]) {
    let d = f16_value(b, 0);
    for j in 0..64 {
        let q = (b[2 + j / 4] >> ((j % 4) * 2)) & 3;
        y[j] = (i32::from(q) - 1) as f32 * d;
    }
}
