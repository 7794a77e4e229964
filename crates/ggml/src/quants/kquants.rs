//! The K-quants: 256-element super-blocks of 16 or 32-element sub-blocks
//! with quantized scales (Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, Q8_K).
//!
//! These reproduce ggml's reference quantizers bit for bit: the same scale
//! searches (`make_qx_quants`, `make_q3_quants`, `make_qkx2_quants`) with the
//! same parameters per type, the same f32 operations in the same order,
//! `nearest_int`'s round-half-to-even through the 1.5·2²³ trick, and the
//! same C integer conversions (truncation to 8 bits where ggml stores into
//! an `int8_t`/`uint8_t`).

// Index loops here follow ggml's block layouts position by position.
#![allow(clippy::needless_range_loop)]

use super::lanes::{make_qkx2_quants_x8, make_qx_quants_x8, Qkx2, LANES};
use super::{f16_bits, f16_value};

pub const QK_K: usize = 256;
/// Below this magnitude a group counts as all zero.
pub(crate) const GROUP_MAX_EPS: f32 = 1e-15;

/// Round to nearest, ties to even, for |v| < 2²²: adding 1.5·2²³ leaves the
/// rounded integer in the low mantissa bits.
#[inline]
pub fn nearest_int(v: f32) -> i32 {
    let t = v + 12_582_912.0;
    (t.to_bits() & 0x007f_ffff) as i32 - 0x0040_0000
}

/// The value of largest magnitude (first on ties) and the magnitude.
fn signed_absmax(x: &[f32]) -> (f32, f32) {
    let (mut max, mut amax) = (0.0f32, 0.0f32);
    for &v in x {
        if v.abs() > amax {
            amax = v.abs();
            max = v;
        }
    }
    (max, amax)
}

/// Symmetric quantization of `x` to `l + nmax` with l in [-nmax, nmax-1],
/// fitted under weights `w` (x² without an importance matrix, ggml's
/// rmse_type 1), searching 18 scales around -nmax/max for the best
/// weighted fit (`make_qx_quants`). Returns the scale.
pub(crate) fn make_qx_quants<const N: usize>(nmax: i32, x: &[f32; N], w: &[f32; N], ls: &mut [i8; N]) -> f32 {
    let (max, amax) = signed_absmax(x);
    if amax < GROUP_MAX_EPS {
        *ls = [0; N];
        return 0.0;
    }
    let level = |iscale: f32, v: f32| nearest_int(iscale * v).clamp(-nmax, nmax - 1) as f32;
    let nmaxf = nmax as f32;
    let mut iscale = -nmaxf / max;
    let mut lf = [0f32; N];
    let sums = |iscale: f32, lf: &mut [f32; N]| {
        for i in 0..N {
            lf[i] = level(iscale, x[i]);
        }
        let (mut sumlx, mut suml2) = (0.0f32, 0.0f32);
        for i in 0..N {
            // ggml's w*x*l and w*l*l, in its order.
            sumlx += w[i] * x[i] * lf[i];
            suml2 += w[i] * lf[i] * lf[i];
        }
        (sumlx, suml2)
    };
    let (sumlx, suml2) = sums(iscale, &mut lf);
    for i in 0..N {
        ls[i] = (lf[i] as i32 + nmax) as i8;
    }
    let mut scale = if suml2 != 0.0 { sumlx / suml2 } else { 0.0 };
    let mut best = scale * sumlx;
    for is in -9..=9 {
        if is == 0 {
            continue;
        }
        iscale = -(nmaxf + 0.1 * is as f32) / max;
        let (sumlx, suml2) = sums(iscale, &mut lf);
        if suml2 > 0.0 && sumlx * sumlx > best * suml2 {
            for i in 0..N {
                ls[i] = (lf[i] as i32 + nmax) as i8;
            }
            scale = sumlx / suml2;
            best = scale * sumlx;
        }
    }
    scale
}

/// x² for every element: the weights of the searches without an importance matrix.
fn squares<const N: usize>(x: &[f32; N]) -> [f32; N] {
    let mut w = [0f32; N];
    for i in 0..N {
        w[i] = x[i] * x[i];
    }
    w
}

/// `make_qx_quants` on a super-block's sixteen 16-element sub-blocks,
/// eight per SIMD lane batch: the scales and the levels in block order.
fn qx_sub_blocks(nmax: i32, xs: &[[f32; 16]; 16], w: &[[f32; 16]; 16]) -> ([f32; 16], [i8; QK_K]) {
    let (mut scales, mut l) = ([0f32; 16], [0i8; QK_K]);
    for batch in 0..16 / LANES {
        let part = |a: &[[f32; 16]; 16]| -> [[f32; 16]; LANES] { std::array::from_fn(|k| a[LANES * batch + k]) };
        let mut l8 = [[0i8; 16]; LANES];
        let s8 = make_qx_quants_x8(nmax, &part(xs), &part(w), &mut l8);
        for k in 0..LANES {
            let j = LANES * batch + k;
            scales[j] = s8[k];
            l[16 * j..16 * j + 16].copy_from_slice(&l8[k]);
        }
    }
    (scales, l)
}

/// The first super-block of `x` as `NB` sub-blocks of `N` values.
fn sub_blocks<const N: usize, const NB: usize>(x: &[f32]) -> [[f32; N]; NB] {
    std::array::from_fn(|j| std::array::from_fn(|i| x[N * j + i]))
}

/// `make_qkx2_quants` on a super-block's `NB` sub-blocks of `N` values,
/// eight per SIMD lane batch: scales, mins (ggml's -min) and the levels in
/// block order.
fn qkx2_sub_blocks<const N: usize, const NB: usize>(
    search: Qkx2,
    xs: &[[f32; N]; NB],
    w: &[[f32; N]; NB],
) -> ([f32; NB], [f32; NB], [u8; QK_K]) {
    let (mut scales, mut mins, mut l) = ([0f32; NB], [0f32; NB], [0u8; QK_K]);
    for batch in 0..NB / LANES {
        let part = |a: &[[f32; N]; NB]| -> [[f32; N]; LANES] { std::array::from_fn(|k| a[LANES * batch + k]) };
        let mut l8 = [[0u8; N]; LANES];
        let (s8, m8) = make_qkx2_quants_x8(search, &part(xs), &part(w), &mut l8);
        for k in 0..LANES {
            let j = LANES * batch + k;
            (scales[j], mins[j]) = (s8[k], m8[k]);
            l[N * j..N * j + N].copy_from_slice(&l8[k]);
        }
    }
    (scales, mins, l)
}

/// Quantization of non-negative values (sub-block scales or mins) to
/// [0, nmax] under weights `qw` (`make_qp_quants`): a scale from nine
/// candidates around nmax/max, then up to five passes moving single levels
/// while the weighted fit improves. Levels are stored as C stores an `int`
/// into a `uint8_t` (modulo 256). Returns the scale.
pub(crate) fn make_qp_quants<const N: usize>(nmax: i32, x: &[f32; N], ls: &mut [u8; N], qw: &[f32; N]) -> f32 {
    let mut max = 0.0f32;
    for &v in x {
        max = if max > v { max } else { v };
    }
    if max < GROUP_MAX_EPS {
        *ls = [0; N];
        return 0.0;
    }
    let nmaxf = nmax as f32;
    let mut iscale = nmaxf / max;
    for i in 0..N {
        ls[i] = nearest_int(iscale * x[i]) as u8;
    }
    let scale = 1.0 / iscale;
    let mut best_mse = 0.0f32;
    for i in 0..N {
        let diff = x[i] - scale * ls[i] as f32;
        best_mse += qw[i] * diff * diff;
    }
    for is in -4..=4 {
        if is == 0 {
            continue;
        }
        let iscale_is = (0.1 * is as f32 + nmaxf) / max;
        let scale_is = 1.0 / iscale_is;
        let mut mse = 0.0f32;
        for i in 0..N {
            let l = nearest_int(iscale_is * x[i]).min(nmax);
            let diff = x[i] - scale_is * l as f32;
            mse += qw[i] * diff * diff;
        }
        if mse < best_mse {
            best_mse = mse;
            iscale = iscale_is;
        }
    }
    let (mut sumlx, mut suml2) = (0.0f32, 0.0f32);
    for i in 0..N {
        let l = nearest_int(iscale * x[i]).min(nmax);
        ls[i] = l as u8;
        sumlx += qw[i] * x[i] * l as f32;
        suml2 += qw[i] * l as f32 * l as f32;
    }
    for _ in 0..5 {
        let mut changed = 0;
        for i in 0..N {
            let (w, li) = (qw[i], ls[i] as f32);
            let mut slx = sumlx - w * x[i] * li;
            let mut sl2 = suml2 - w * li * li;
            if slx > 0.0 && sl2 > 0.0 {
                let new_l = nearest_int(x[i] * sl2 / slx).min(nmax);
                if new_l != ls[i] as i32 {
                    slx += w * x[i] * new_l as f32;
                    sl2 += w * new_l as f32 * new_l as f32;
                    if slx * slx * suml2 > sumlx * sumlx * sl2 {
                        ls[i] = new_l as u8;
                        sumlx = slx;
                        suml2 = sl2;
                        changed += 1;
                    }
                }
            }
        }
        if changed == 0 {
            break;
        }
    }
    if suml2 > 0.0 {
        sumlx / suml2
    } else {
        0.0
    }
}

/// The weights of the importance-matrix searches: qw · sqrt(sigma2 + x²).
pub(crate) fn importance<const N: usize>(x: &[f32; N], qw: &[f32], sigma2: f32) -> [f32; N] {
    let mut w = [0f32; N];
    for i in 0..N {
        w[i] = qw[i] * (sigma2 + x[i] * x[i]).sqrt();
    }
    w
}

/// Σx² over a super-block, in ggml's order.
fn sum_sq(x: &[f32]) -> f32 {
    x.iter().fold(0.0f32, |s, v| s + v * v)
}

/// Sequential sum, in ggml's order.
fn sum(x: &[f32]) -> f32 {
    x.iter().fold(0.0f32, |s, v| s + v)
}

/// Q3_K's sub-block search: start from -nmax/max, then up to five passes
/// moving single levels while the x²-weighted fit improves.
fn make_q3_quants(nmax: i32, x: &[f32], ls: &mut [i8]) -> f32 {
    let (max, amax) = signed_absmax(x);
    if amax < GROUP_MAX_EPS {
        ls.iter_mut().for_each(|l| *l = 0);
        return 0.0;
    }
    let clamp = |l: i32| l.clamp(-nmax, nmax - 1);
    let iscale = -(nmax as f32) / max;
    let (mut sumlx, mut suml2) = (0.0f32, 0.0f32);
    for (l_out, &xi) in ls.iter_mut().zip(x) {
        let l = clamp(nearest_int(iscale * xi));
        *l_out = l as i8;
        let w = xi * xi;
        sumlx += w * xi * l as f32;
        suml2 += w * l as f32 * l as f32;
    }
    for _ in 0..5 {
        let mut changed = 0;
        for (i, &xi) in x.iter().enumerate() {
            let w = xi * xi;
            let li = ls[i] as f32;
            let mut slx = sumlx - w * xi * li;
            if slx > 0.0 {
                let mut sl2 = suml2 - w * li * li;
                let new_l = clamp(nearest_int(xi * sl2 / slx));
                if new_l != ls[i] as i32 {
                    slx += w * xi * new_l as f32;
                    sl2 += w * new_l as f32 * new_l as f32;
                    if sl2 > 0.0 && slx * slx * suml2 > sumlx * sumlx * sl2 {
                        ls[i] = new_l as i8;
                        sumlx = slx;
                        suml2 = sl2;
                        changed += 1;
                    }
                }
            }
        }
        if changed == 0 {
            break;
        }
    }
    for l in ls.iter_mut() {
        *l += nmax as i8;
    }
    if suml2 > 0.0 {
        sumlx / suml2
    } else {
        0.0
    }
}

/// Asymmetric quantization to [0, nmax] with a min: a grid of `nstep + 1`
/// candidate scales, each refined by weighted least squares for scale and
/// min, keeping the one with the least weighted error (absolute when
/// `use_mad`, squared otherwise). Returns (scale, -min).
///
/// This is the hot loop of Q2_K/Q4_K/Q5_K. The sums must run in ggml's
/// order to give its bytes, so they stay sequential; the rest works on
/// fixed-size arrays (no bounds checks) and keeps levels as f32.
#[allow(clippy::too_many_arguments)]
pub(crate) fn make_qkx2_quants<const N: usize>(
    nmax: i32,
    x: &[f32; N],
    weights: &[f32; N],
    ls: &mut [u8; N],
    rmin: f32,
    rdelta: f32,
    nstep: i32,
    use_mad: bool,
) -> (f32, f32) {
    let (mut min, mut max) = (x[0], x[0]);
    let mut sum_w = weights[0];
    let mut sum_x = sum_w * x[0];
    for i in 1..N {
        if x[i] < min {
            min = x[i];
        }
        if x[i] > max {
            max = x[i];
        }
        let w = weights[i];
        sum_w += w;
        sum_x += w * x[i];
    }
    if min > 0.0 {
        min = 0.0;
    }
    if max == min {
        *ls = [0; N];
        return (0.0, -min);
    }
    let nmaxf = nmax as f32;
    let err = |d: f32| if use_mad { d.abs() } else { d * d };
    let level = |iscale: f32, v: f32, min: f32| nearest_int(iscale * (v - min)).clamp(0, nmax) as f32;
    let mut iscale = nmaxf / (max - min);
    let mut scale = 1.0 / iscale;
    let mut best_error = 0.0f32;
    for i in 0..N {
        let l = level(iscale, x[i], min);
        ls[i] = l as u8;
        best_error += weights[i] * err(scale * l + min - x[i]);
    }
    if nstep < 1 {
        return (scale, -min);
    }
    let mut laux = [0f32; N];
    for is in 0..=nstep {
        iscale = (rmin + rdelta * is as f32 + nmaxf) / (max - min);
        for i in 0..N {
            laux[i] = level(iscale, x[i], min);
        }
        let (mut sum_l, mut sum_l2, mut sum_xl) = (0.0f32, 0.0f32, 0.0f32);
        for i in 0..N {
            // ggml's w*l, w*l*l and w*l*x share the product w*l.
            let wl = weights[i] * laux[i];
            sum_l += wl;
            sum_l2 += wl * laux[i];
            sum_xl += wl * x[i];
        }
        let d = sum_w * sum_l2 - sum_l * sum_l;
        if d > 0.0 {
            let mut this_scale = (sum_w * sum_xl - sum_x * sum_l) / d;
            let mut this_min = (sum_l2 * sum_x - sum_l * sum_xl) / d;
            if this_min > 0.0 {
                this_min = 0.0;
                this_scale = sum_xl / sum_l2;
            }
            let mut cur_error = 0.0f32;
            for i in 0..N {
                cur_error += weights[i] * err(this_scale * laux[i] + this_min - x[i]);
            }
            if cur_error < best_error {
                for i in 0..N {
                    ls[i] = laux[i] as u8;
                }
                best_error = cur_error;
                scale = this_scale;
                min = this_min;
            }
        }
    }
    (scale, -min)
}

/// Packs four 2-bit planes of 32 values each into 32 bytes per 128 values.
fn pack2(l: &[u8; QK_K], qs: &mut [u8]) {
    for j in (0..QK_K).step_by(128) {
        for k in 0..32 {
            qs[j / 4 + k] = l[j + k] | (l[j + k + 32] << 2) | (l[j + k + 64] << 4) | (l[j + k + 96] << 6);
        }
    }
}

// ---------------------------------------------------------------- Q2_K
// scales[16] (low nibble scale, high nibble min) | qs[64] | d f16 | dmin f16

pub fn quantize_q2_k(x: &[f32], out: &mut [u8]) {
    let xs = sub_blocks::<16, 16>(x);
    let weights = xs.map(|b| b.map(f32::abs));
    let (scales, mins, mut l) = qkx2_sub_blocks(Qkx2::new(3, -0.5, 0.1, 15, true), &xs, &weights);
    let (mut max_scale, mut max_min) = (0.0f32, 0.0f32);
    for (&s, &m) in scales.iter().zip(&mins) {
        max_scale = max_scale.max(s);
        if m > max_min {
            max_min = m;
        }
    }
    let (sc, rest) = out.split_at_mut(16);
    if max_scale > 0.0 {
        let iscale = 15.0 / max_scale;
        for j in 0..16 {
            sc[j] = nearest_int(iscale * scales[j]) as u8;
        }
        rest[64..66].copy_from_slice(&f16_bits(max_scale / 15.0).to_le_bytes());
    } else {
        sc.iter_mut().for_each(|s| *s = 0);
        rest[64..66].copy_from_slice(&f16_bits(0.0).to_le_bytes());
    }
    if max_min > 0.0 {
        let iscale = 15.0 / max_min;
        for j in 0..16 {
            sc[j] |= (nearest_int(iscale * mins[j]) << 4) as u8;
        }
        rest[66..68].copy_from_slice(&f16_bits(max_min / 15.0).to_le_bytes());
    } else {
        rest[66..68].copy_from_slice(&f16_bits(0.0).to_le_bytes());
    }
    finish_q2_k(x, &mut l, out);
}

/// Q2_K under an importance matrix (`quantize_row_q2_K_impl`): sub-blocks
/// fitted by `make_qkx3_quants` under qw·sqrt(σ² + x²), their scales and
/// mins quantized by `make_qp_quants` weighted by each sub-block's total.
pub fn quantize_q2_k_weighted(x: &[f32], qw: &[f32], _row_sigma2: f32, out: &mut [u8]) {
    let sigma2 = sum_sq(x) / QK_K as f32;
    let xs = sub_blocks::<16, 16>(x);
    let w: [[f32; 16]; 16] = std::array::from_fn(|j| importance(&xs[j], &qw[16 * j..], sigma2));
    let sw = w.map(|b| sum(&b));
    let (scales, mins, mut l) = qkx2_sub_blocks(Qkx2::new(3, -0.9, 0.05, 36, false), &xs, &w);
    let (mut ls, mut lm) = ([0u8; 16], [0u8; 16]);
    let dm = make_qp_quants(15, &scales, &mut ls, &sw);
    let mm = make_qp_quants(15, &mins, &mut lm, &sw);
    out[80..82].copy_from_slice(&f16_bits(dm).to_le_bytes());
    out[82..84].copy_from_slice(&f16_bits(mm).to_le_bytes());
    for j in 0..16 {
        out[j] = ls[j] | (lm[j] << 4);
    }
    finish_q2_k(x, &mut l, out);
}

/// Q2_K's last step, shared by both searches: every sub-block with a
/// non-zero scale requantized with the stored scale and min, then packed.
fn finish_q2_k(x: &[f32], l: &mut [u8; QK_K], out: &mut [u8]) {
    let (sc, rest) = out.split_at_mut(16);
    let (dall, dmin) = (f16_value(rest, 64), f16_value(rest, 66));
    for j in 0..16 {
        let d = dall * (sc[j] & 0xf) as f32;
        if d == 0.0 {
            continue;
        }
        let dm = dmin * (sc[j] >> 4) as f32;
        for ii in 0..16 {
            l[16 * j + ii] = nearest_int((x[16 * j + ii] + dm) / d).clamp(0, 3) as u8;
        }
    }
    pack2(l, &mut rest[..64]);
}

pub fn dequantize_q2_k(b: &[u8], y: &mut [f32]) {
    let (sc, qs) = (&b[..16], &b[16..80]);
    let (d, min) = (f16_value(b, 80), f16_value(b, 82));
    let mut is = 0;
    for n in 0..2 {
        let q = &qs[32 * n..32 * n + 32];
        for shift in [0, 2, 4, 6] {
            for half in 0..2 {
                let s = sc[is];
                is += 1;
                let (dl, ml) = (d * (s & 0xf) as f32, min * (s >> 4) as f32);
                let base = 128 * n + 32 * (shift / 2) + 16 * half;
                for k in 0..16 {
                    y[base + k] = dl * ((q[16 * half + k] >> shift) & 3) as f32 - ml;
                }
            }
        }
    }
}

// ---------------------------------------------------------------- Q3_K
// hmask[32] | qs[64] | scales[12] (16 six-bit scales) | d f16

/// The j-th 6-bit scale of Q3_K's packed 12 bytes, minus its offset 32.
fn q3_scale(scales: &[u8], j: usize) -> i8 {
    let low = if j < 8 { scales[j] & 0xf } else { scales[j - 8] >> 4 };
    ((low | (((scales[8 + j % 4] >> (2 * (j / 4))) & 3) << 4)) as i8).wrapping_sub(32)
}

pub fn quantize_q3_k(x: &[f32], out: &mut [u8]) {
    let mut l = [0i8; QK_K];
    let mut scales = [0f32; 16];
    let (mut max_scale, mut amax) = (0.0f32, 0.0f32);
    for j in 0..16 {
        scales[j] = make_q3_quants(4, &x[16 * j..16 * j + 16], &mut l[16 * j..16 * j + 16]);
        if scales[j].abs() > amax {
            amax = scales[j].abs();
            max_scale = scales[j];
        }
    }
    out.iter_mut().for_each(|b| *b = 0);
    let sc = &mut out[96..108];
    if max_scale != 0.0 {
        let iscale = -32.0 / max_scale;
        for j in 0..16 {
            let v = (nearest_int(iscale * scales[j]) as i8 as i32).clamp(-32, 31) + 32;
            pack_q3_scale(sc, j, v);
        }
        out[108..110].copy_from_slice(&f16_bits(1.0 / iscale).to_le_bytes());
    } else {
        out[108..110].copy_from_slice(&f16_bits(0.0).to_le_bytes());
    }
    finish_q3_k(x, &mut l, out);
}

/// Q3_K under an importance matrix (`quantize_row_q3_K_impl`): sub-blocks
/// fitted by `make_qx_quants` under qw·sqrt(2σ² + x²), their scales by
/// `make_qx_quants` weighted by each sub-block's total.
pub fn quantize_q3_k_weighted(x: &[f32], qw: &[f32], _row_sigma2: f32, out: &mut [u8]) {
    let sigma2 = 2.0 * sum_sq(x) / QK_K as f32;
    let xs = sub_blocks::<16, 16>(x);
    let w: [[f32; 16]; 16] = std::array::from_fn(|j| importance(&xs[j], &qw[16 * j..], sigma2));
    let sw = w.map(|b| sum(&b));
    let (scales, mut l) = qx_sub_blocks(4, &xs, &w);
    out.iter_mut().for_each(|b| *b = 0);
    let mut lsc = [0i8; 16];
    let d_block = make_qx_quants(32, &scales, &sw, &mut lsc);
    for (j, &v) in lsc.iter().enumerate() {
        pack_q3_scale(&mut out[96..108], j, i32::from(v));
    }
    out[108..110].copy_from_slice(&f16_bits(d_block).to_le_bytes());
    finish_q3_k(x, &mut l, out);
}

/// Stores the j-th 6-bit scale `v` (offset 32 included) into Q3_K's 12 bytes.
fn pack_q3_scale(sc: &mut [u8], j: usize, v: i32) {
    if j < 8 {
        sc[j] = (v & 0xf) as u8;
    } else {
        sc[j - 8] |= ((v & 0xf) << 4) as u8;
    }
    sc[j % 4 + 8] |= ((v >> 4) << (2 * (j / 4))) as u8;
}

/// Q3_K's last step: requantize with the stored scales, then the high bits
/// into `hmask` and the low two into `qs` (the block was zeroed first).
fn finish_q3_k(x: &[f32], l: &mut [i8; QK_K], out: &mut [u8]) {
    let (hmask, rest) = out.split_at_mut(32);
    let (qs, rest) = rest.split_at_mut(64);
    let (sc, dbytes) = rest.split_at_mut(12);
    let dall = f16_value(dbytes, 0);
    for j in 0..16 {
        let d = dall * q3_scale(sc, j) as f32;
        if d == 0.0 {
            continue;
        }
        for ii in 0..16 {
            l[16 * j + ii] = (nearest_int(x[16 * j + ii] / d).clamp(-4, 3) + 4) as i8;
        }
    }
    let mut lu = [0u8; QK_K];
    let (mut m, mut hm) = (0usize, 1u8);
    for j in 0..QK_K {
        let mut v = l[j] as u8;
        if v > 3 {
            hmask[m] |= hm;
            v -= 4;
        }
        lu[j] = v;
        m += 1;
        if m == QK_K / 8 {
            m = 0;
            hm <<= 1;
        }
    }
    pack2(&lu, qs);
}

pub fn dequantize_q3_k(b: &[u8], y: &mut [f32]) {
    let (hmask, qs, sc) = (&b[..32], &b[32..96], &b[96..108]);
    let d_all = f16_value(b, 108);
    let mut is = 0;
    let mut m = 1u8;
    for n in 0..2 {
        let q = &qs[32 * n..32 * n + 32];
        for shift in [0, 2, 4, 6] {
            for half in 0..2 {
                let dl = d_all * q3_scale(sc, is) as f32;
                is += 1;
                let base = 128 * n + 32 * (shift / 2) + 16 * half;
                for k in 0..16 {
                    let idx = 16 * half + k;
                    let low = ((q[idx] >> shift) & 3) as i32;
                    let high = if hmask[idx] & m != 0 { 0 } else { 4 };
                    y[base + k] = dl * (low - high) as f32;
                }
            }
            m <<= 1;
        }
    }
}

// ---------------------------------------------------------------- Q4_K / Q5_K
// d f16 | dmin f16 | scales[12] (8 six-bit scales + 8 six-bit mins) | [qh[32]] | qs[128]

/// The j-th (scale, min) pair of the packed 12 bytes of Q4_K/Q5_K.
pub fn scale_min_k4(j: usize, q: &[u8]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        (
            (q[j + 4] & 0xf) | ((q[j - 4] >> 6) << 4),
            (q[j + 4] >> 4) | ((q[j] >> 6) << 4),
        )
    }
}

/// The reference search of Q4_K and Q5_K: eight 32-element sub-blocks,
/// levels in [0, nmax], weights mean|x| + |x|; the scales and mins
/// quantized against their maxima. Writes d, dmin and the packed scales
/// into `head` (16 bytes) and returns the levels.
fn quantize_k4_levels(x: &[f32], nmax: i32, rmin: f32, nstep: i32, head: &mut [u8]) -> [u8; QK_K] {
    let xs = sub_blocks::<32, 8>(x);
    let weights = xs.map(|b| {
        let av_x = (sum_sq(&b) / 32.0).sqrt();
        b.map(|v| av_x + v.abs())
    });
    let (scales, mins, mut l) = qkx2_sub_blocks(Qkx2::new(nmax, rmin, 0.1, nstep, false), &xs, &weights);
    let (mut max_scale, mut max_min) = (0.0f32, 0.0f32);
    for j in 0..8 {
        let (s, m) = (scales[j], mins[j]);
        if s > max_scale {
            max_scale = s;
        }
        if m > max_min {
            max_min = m;
        }
    }
    let inv_scale = if max_scale > 0.0 { 63.0 / max_scale } else { 0.0 };
    let inv_min = if max_min > 0.0 { 63.0 / max_min } else { 0.0 };
    let (mut ls, mut lm) = ([0u8; 8], [0u8; 8]);
    for j in 0..8 {
        ls[j] = (nearest_int(inv_scale * scales[j]) as u8).min(63);
        lm[j] = (nearest_int(inv_min * mins[j]) as u8).min(63);
    }
    pack_k4_scales(&ls, &lm, &mut head[4..16]);
    head[0..2].copy_from_slice(&f16_bits(max_scale / 63.0).to_le_bytes());
    head[2..4].copy_from_slice(&f16_bits(max_min / 63.0).to_le_bytes());
    k4_levels(x, nmax, head, &mut l);
    l
}

/// The importance-matrix search of Q4_K and Q5_K
/// (`quantize_row_q4_K_impl` / `quantize_row_q5_K_impl`): sub-blocks fitted
/// by `make_qkx3_quants` under qw·sqrt(2σ² + x²), scales and mins by
/// `make_qp_quants` weighted by each sub-block's total. Q5_K caps the
/// 6-bit codes at 63 where Q4_K does not (`cap`).
fn quantize_k4_levels_weighted(x: &[f32], qw: &[f32], nmax: i32, cap: bool, head: &mut [u8]) -> [u8; QK_K] {
    let sigma2 = 2.0 * sum_sq(x) / QK_K as f32;
    let xs = sub_blocks::<32, 8>(x);
    let w: [[f32; 32]; 8] = std::array::from_fn(|j| importance(&xs[j], &qw[32 * j..], sigma2));
    let sw = w.map(|b| sum(&b));
    let (scales, mins, mut l) = qkx2_sub_blocks(Qkx2::new(nmax, -0.9, 0.05, 36, false), &xs, &w);
    let (mut ls, mut lm) = ([0u8; 8], [0u8; 8]);
    let d_block = make_qp_quants(63, &scales, &mut ls, &sw);
    let m_block = make_qp_quants(63, &mins, &mut lm, &sw);
    if cap {
        ls.iter_mut().chain(lm.iter_mut()).for_each(|v| *v = (*v).min(63));
    }
    pack_k4_scales(&ls, &lm, &mut head[4..16]);
    head[0..2].copy_from_slice(&f16_bits(d_block).to_le_bytes());
    head[2..4].copy_from_slice(&f16_bits(m_block).to_le_bytes());
    k4_levels(x, nmax, head, &mut l);
    l
}

/// Packs eight 6-bit scales and mins into Q4_K/Q5_K's 12 bytes.
fn pack_k4_scales(ls: &[u8; 8], lm: &[u8; 8], sc: &mut [u8]) {
    sc.iter_mut().for_each(|b| *b = 0);
    for j in 0..8 {
        if j < 4 {
            sc[j] = ls[j];
            sc[j + 4] = lm[j];
        } else {
            sc[j + 4] = (ls[j] & 0xf) | ((lm[j] & 0xf) << 4);
            sc[j - 4] |= (ls[j] >> 4) << 6;
            sc[j] |= (lm[j] >> 4) << 6;
        }
    }
}

/// Requantizes every sub-block with a non-zero scale against the stored
/// d, dmin and 6-bit codes of `head`.
fn k4_levels(x: &[f32], nmax: i32, head: &[u8], l: &mut [u8; QK_K]) {
    let (dall, dmin) = (f16_value(head, 0), f16_value(head, 2));
    for j in 0..8 {
        let (s, m) = scale_min_k4(j, &head[4..16]);
        let d = dall * s as f32;
        if d == 0.0 {
            continue;
        }
        let dm = dmin * m as f32;
        for ii in 0..32 {
            l[32 * j + ii] = nearest_int((x[32 * j + ii] + dm) / d).clamp(0, nmax) as u8;
        }
    }
}

fn pack_q4_k(l: &[u8; QK_K], qs: &mut [u8]) {
    for (c, j) in (0..QK_K).step_by(64).enumerate() {
        for k in 0..32 {
            qs[32 * c + k] = l[j + k] | (l[j + k + 32] << 4);
        }
    }
}

pub fn quantize_q4_k(x: &[f32], out: &mut [u8]) {
    let l = quantize_k4_levels(x, 15, -1.0, 20, &mut out[..16]);
    pack_q4_k(&l, &mut out[16..144]);
}

pub fn quantize_q4_k_weighted(x: &[f32], qw: &[f32], _row_sigma2: f32, out: &mut [u8]) {
    let l = quantize_k4_levels_weighted(x, qw, 15, false, &mut out[..16]);
    pack_q4_k(&l, &mut out[16..144]);
}

pub fn quantize_q5_k(x: &[f32], out: &mut [u8]) {
    let l = quantize_k4_levels(x, 31, -0.5, 15, &mut out[..16]);
    pack_q5_k(&l, &mut out[16..176]);
}

pub fn quantize_q5_k_weighted(x: &[f32], qw: &[f32], _row_sigma2: f32, out: &mut [u8]) {
    let l = quantize_k4_levels_weighted(x, qw, 31, true, &mut out[..16]);
    pack_q5_k(&l, &mut out[16..176]);
}

fn pack_q5_k(l: &[u8; QK_K], out: &mut [u8]) {
    let (qh, ql) = out.split_at_mut(32);
    qh.iter_mut().for_each(|b| *b = 0);
    let (mut m1, mut m2) = (1u8, 2u8);
    for (c, n) in (0..QK_K).step_by(64).enumerate() {
        for j in 0..32 {
            let mut l1 = l[n + j];
            if l1 > 15 {
                l1 -= 16;
                qh[j] |= m1;
            }
            let mut l2 = l[n + j + 32];
            if l2 > 15 {
                l2 -= 16;
                qh[j] |= m2;
            }
            ql[32 * c + j] = l1 | (l2 << 4);
        }
        m1 <<= 2;
        m2 <<= 2;
    }
}

fn dequantize_k4(b: &[u8], y: &mut [f32], qh: Option<&[u8]>, qs: &[u8]) {
    let (d, min) = (f16_value(b, 0), f16_value(b, 2));
    let sc = &b[4..16];
    for c in 0..4 {
        let (s1, m1) = scale_min_k4(2 * c, sc);
        let (s2, m2) = scale_min_k4(2 * c + 1, sc);
        let (d1, mn1, d2, mn2) = (d * s1 as f32, min * m1 as f32, d * s2 as f32, min * m2 as f32);
        let q = &qs[32 * c..32 * c + 32];
        let (u1, u2) = (1u8 << (2 * c), 2u8 << (2 * c));
        for k in 0..32 {
            let (h1, h2) = match qh {
                Some(h) => (if h[k] & u1 != 0 { 16 } else { 0 }, if h[k] & u2 != 0 { 16 } else { 0 }),
                None => (0, 0),
            };
            y[64 * c + k] = d1 * ((q[k] & 0xf) + h1) as f32 - mn1;
            y[64 * c + 32 + k] = d2 * ((q[k] >> 4) + h2) as f32 - mn2;
        }
    }
}

pub fn dequantize_q4_k(b: &[u8], y: &mut [f32]) {
    dequantize_k4(b, y, None, &b[16..144]);
}

pub fn dequantize_q5_k(b: &[u8], y: &mut [f32]) {
    dequantize_k4(b, y, Some(&b[16..48]), &b[48..176]);
}

// ---------------------------------------------------------------- Q6_K
// ql[128] | qh[64] | scales[16] (i8) | d f16

pub fn quantize_q6_k(x: &[f32], out: &mut [u8]) {
    quantize_q6_k_with(x, None, out);
}

/// Q6_K under an importance matrix (`quantize_row_q6_K_impl`): the
/// sub-block search weighted by the matrix's values as they are.
pub fn quantize_q6_k_weighted(x: &[f32], qw: &[f32], _row_sigma2: f32, out: &mut [u8]) {
    quantize_q6_k_with(x, Some(qw), out);
}

fn quantize_q6_k_with(x: &[f32], qw: Option<&[f32]>, out: &mut [u8]) {
    let xs = sub_blocks::<16, 16>(x);
    let w = match qw {
        Some(q) => sub_blocks::<16, 16>(q),
        None => xs.map(|b| squares(&b)),
    };
    let (scales, mut l) = qx_sub_blocks(32, &xs, &w);
    let (mut max_scale, mut max_abs) = (0.0f32, 0.0f32);
    for &s in &scales {
        if s.abs() > max_abs {
            max_abs = s.abs();
            max_scale = s;
        }
    }
    out.iter_mut().for_each(|b| *b = 0);
    if max_abs < GROUP_MAX_EPS {
        return;
    }
    let iscale = -128.0 / max_scale;
    out[208..210].copy_from_slice(&f16_bits(1.0 / iscale).to_le_bytes());
    let dall = f16_value(out, 208);
    for ib in 0..16 {
        out[192 + ib] = nearest_int(iscale * scales[ib]).min(127) as i8 as u8;
    }
    for j in 0..16 {
        let d = dall * (out[192 + j] as i8) as f32;
        if d == 0.0 {
            continue;
        }
        for ii in 0..16 {
            l[16 * j + ii] = (nearest_int(x[16 * j + ii] / d).clamp(-32, 31) + 32) as i8;
        }
    }
    let (ql, rest) = out.split_at_mut(128);
    let qh = &mut rest[..64];
    for (c, j) in (0..QK_K).step_by(128).enumerate() {
        for k in 0..32 {
            let v = |o: usize| l[j + k + o] as u8;
            ql[64 * c + k] = (v(0) & 0xf) | ((v(64) & 0xf) << 4);
            ql[64 * c + k + 32] = (v(32) & 0xf) | ((v(96) & 0xf) << 4);
            qh[32 * c + k] = (v(0) >> 4) | ((v(32) >> 4) << 2) | ((v(64) >> 4) << 4) | ((v(96) >> 4) << 6);
        }
    }
}

pub fn dequantize_q6_k(b: &[u8], y: &mut [f32]) {
    let d = f16_value(b, 208);
    for c in 0..2 {
        let (ql, qh, sc) = (
            &b[64 * c..64 * c + 64],
            &b[128 + 32 * c..160 + 32 * c],
            &b[192 + 8 * c..200 + 8 * c],
        );
        for k in 0..32 {
            let is = k / 16;
            let q1 = ((ql[k] & 0xf) | ((qh[k] & 3) << 4)) as i32 - 32;
            let q2 = ((ql[k + 32] & 0xf) | (((qh[k] >> 2) & 3) << 4)) as i32 - 32;
            let q3 = ((ql[k] >> 4) | (((qh[k] >> 4) & 3) << 4)) as i32 - 32;
            let q4 = ((ql[k + 32] >> 4) | (((qh[k] >> 6) & 3) << 4)) as i32 - 32;
            let s = |o: usize| (sc[is + o] as i8) as f32;
            let yb = &mut y[128 * c..];
            yb[k] = d * s(0) * q1 as f32;
            yb[k + 32] = d * s(2) * q2 as f32;
            yb[k + 64] = d * s(4) * q3 as f32;
            yb[k + 96] = d * s(6) * q4 as f32;
        }
    }
}

// ---------------------------------------------------------------- Q8_K
// d f32 | qs[256] i8 | bsums[16] i16

pub fn quantize_q8_k(x: &[f32], out: &mut [u8]) {
    let (max, amax) = signed_absmax(x);
    out.iter_mut().for_each(|b| *b = 0);
    if amax == 0.0 {
        return;
    }
    let iscale = -127.0 / max;
    let mut q = [0i8; QK_K];
    for (qi, &v) in q.iter_mut().zip(x) {
        *qi = nearest_int(iscale * v).min(127) as i8;
    }
    out[0..4].copy_from_slice(&(1.0 / iscale).to_le_bytes());
    for (o, &v) in out[4..260].iter_mut().zip(&q) {
        *o = v as u8;
    }
    for j in 0..16 {
        let s: i32 = q[16 * j..16 * j + 16].iter().map(|&v| v as i32).sum();
        out[260 + 2 * j..262 + 2 * j].copy_from_slice(&(s as i16).to_le_bytes());
    }
}

pub fn dequantize_q8_k(b: &[u8], y: &mut [f32]) {
    let d = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    for (o, &q) in y.iter_mut().zip(&b[4..260]) {
        *o = d * (q as i8) as f32;
    }
}
