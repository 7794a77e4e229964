//! The K-quants' hot search, eight sub-blocks at once: `make_qkx2_quants`
//! (and `make_qkx3_quants`, the same search) with one sub-block per SIMD
//! lane. Each lane performs exactly the scalar function's f32 operations in
//! its order (no fused multiply-add, no reassociated sums; comparisons
//! become selects), so the bytes equal the scalar reference's, which stays
//! in kquants.rs and is what the tests compare against.
//!
//! The body is plain lane arrays that LLVM vectorizes; on x86-64 it is
//! compiled a second time with AVX2 enabled and chosen at run time
//! (`is_x86_feature_detected!`). `MODELCONV_SCALAR=1` forces the scalar
//! reference (for the benchmark's scalar rows).

// Lane loops index several arrays in step.
#![allow(clippy::needless_range_loop)]

use super::kquants::{make_qkx2_quants, nearest_int};
use std::sync::OnceLock;

/// Sub-blocks searched together.
pub const LANES: usize = 8;

type L = [f32; LANES];

/// Whether the scalar reference is forced.
fn scalar_forced() -> bool {
    static S: OnceLock<bool> = OnceLock::new();
    *S.get_or_init(|| std::env::var_os("MODELCONV_SCALAR").is_some_and(|v| v == "1"))
}

/// The parameters of one `make_qkx2_quants` search: levels [0, nmax],
/// candidate inverse scales (rmin + rdelta·is + nmax)/(max - min) for is in
/// 0..=nstep, absolute (`use_mad`) or squared error.
#[derive(Clone, Copy)]
pub struct Qkx2 {
    pub nmax: i32,
    pub rmin: f32,
    pub rdelta: f32,
    pub nstep: i32,
    pub use_mad: bool,
}

/// `make_qkx2_quants` on eight sub-blocks of `N` values: returns each
/// lane's (scale, -min) and writes its levels into `ls[lane]`.
pub fn make_qkx2_quants_x8<const N: usize>(
    q: Qkx2,
    x: &[[f32; N]; LANES],
    w: &[[f32; N]; LANES],
    ls: &mut [[u8; N]; LANES],
) -> (L, L) {
    let Qkx2 {
        nmax,
        rmin,
        rdelta,
        nstep,
        use_mad,
    } = q;
    if scalar_forced() {
        let mut out = ([0f32; LANES], [0f32; LANES]);
        for k in 0..LANES {
            (out.0[k], out.1[k]) = make_qkx2_quants(nmax, &x[k], &w[k], &mut ls[k], rmin, rdelta, nstep, use_mad);
        }
        return out;
    }
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU supports AVX2 (checked just above).
            return unsafe { search_avx2(q, x, w, ls) };
        }
    }
    search(q, x, w, ls)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn search_avx2<const N: usize>(
    q: Qkx2,
    x: &[[f32; N]; LANES],
    w: &[[f32; N]; LANES],
    ls: &mut [[u8; N]; LANES],
) -> (L, L) {
    search(q, x, w, ls)
}

/// The levels clamp(nearest_int(iscale·(x - min)), 0, nmax), per lane.
#[inline(always)]
fn level(iscale: &L, xi: &L, min: &L, nmax: i32) -> L {
    std::array::from_fn(|k| nearest_int(iscale[k] * (xi[k] - min[k])).clamp(0, nmax) as f32)
}

/// The error term w·|d| or w·d², per lane.
#[inline(always)]
fn err(d: f32, use_mad: bool) -> f32 {
    if use_mad {
        d.abs()
    } else {
        d * d
    }
}

#[inline(always)]
fn search<const N: usize>(q: Qkx2, x: &[[f32; N]; LANES], w: &[[f32; N]; LANES], ls: &mut [[u8; N]; LANES]) -> (L, L) {
    let Qkx2 {
        nmax,
        rmin,
        rdelta,
        nstep,
        use_mad,
    } = q;
    // Values by position, lanes inner: xt[i][k] is lane k's x[i].
    let xt: [L; N] = std::array::from_fn(|i| std::array::from_fn(|k| x[k][i]));
    let wt: [L; N] = std::array::from_fn(|i| std::array::from_fn(|k| w[k][i]));
    let (mut min, mut max) = (xt[0], xt[0]);
    let mut sum_w = wt[0];
    let mut sum_x: L = std::array::from_fn(|k| sum_w[k] * xt[0][k]);
    for i in 1..N {
        for k in 0..LANES {
            if xt[i][k] < min[k] {
                min[k] = xt[i][k];
            }
            if xt[i][k] > max[k] {
                max[k] = xt[i][k];
            }
            sum_w[k] += wt[i][k];
            sum_x[k] += wt[i][k] * xt[i][k];
        }
    }
    for k in 0..LANES {
        if min[k] > 0.0 {
            min[k] = 0.0;
        }
    }
    let flat: [bool; LANES] = std::array::from_fn(|k| max[k] == min[k]);
    let nmaxf = nmax as f32;
    let range: L = std::array::from_fn(|k| max[k] - min[k]);
    let iscale: L = std::array::from_fn(|k| nmaxf / range[k]);
    let mut scale: L = std::array::from_fn(|k| 1.0 / iscale[k]);
    let mut best_error = [0f32; LANES];
    let mut lt = [[0f32; LANES]; N];
    for i in 0..N {
        lt[i] = level(&iscale, &xt[i], &min, nmax);
        for k in 0..LANES {
            best_error[k] += wt[i][k] * err(scale[k] * lt[i][k] + min[k] - xt[i][k], use_mad);
        }
    }
    if nstep >= 1 {
        let mut laux = [[0f32; LANES]; N];
        for is in 0..=nstep {
            // (max - min) with the min of the best fit so far, as ggml has it.
            let iscale: L = std::array::from_fn(|k| (rmin + rdelta * is as f32 + nmaxf) / (max[k] - min[k]));
            let (mut sum_l, mut sum_l2, mut sum_xl) = ([0f32; LANES], [0f32; LANES], [0f32; LANES]);
            for i in 0..N {
                laux[i] = level(&iscale, &xt[i], &min, nmax);
                for k in 0..LANES {
                    let wl = wt[i][k] * laux[i][k];
                    sum_l[k] += wl;
                    sum_l2[k] += wl * laux[i][k];
                    sum_xl[k] += wl * xt[i][k];
                }
            }
            let mut this_scale = [0f32; LANES];
            let mut this_min = [0f32; LANES];
            let mut fits = [false; LANES];
            for k in 0..LANES {
                let d = sum_w[k] * sum_l2[k] - sum_l[k] * sum_l[k];
                fits[k] = d > 0.0;
                this_scale[k] = (sum_w[k] * sum_xl[k] - sum_x[k] * sum_l[k]) / d;
                this_min[k] = (sum_l2[k] * sum_x[k] - sum_l[k] * sum_xl[k]) / d;
                if this_min[k] > 0.0 {
                    this_min[k] = 0.0;
                    this_scale[k] = sum_xl[k] / sum_l2[k];
                }
            }
            let mut cur_error = [0f32; LANES];
            for i in 0..N {
                for k in 0..LANES {
                    cur_error[k] += wt[i][k] * err(this_scale[k] * laux[i][k] + this_min[k] - xt[i][k], use_mad);
                }
            }
            let better: [bool; LANES] = std::array::from_fn(|k| !flat[k] && fits[k] && cur_error[k] < best_error[k]);
            for k in 0..LANES {
                if better[k] {
                    best_error[k] = cur_error[k];
                    scale[k] = this_scale[k];
                    min[k] = this_min[k];
                }
            }
            for i in 0..N {
                for k in 0..LANES {
                    if better[k] {
                        lt[i][k] = laux[i][k];
                    }
                }
            }
        }
    }
    let mut out = ([0f32; LANES], [0f32; LANES]);
    for k in 0..LANES {
        for i in 0..N {
            ls[k][i] = if flat[k] { 0 } else { lt[i][k] as u8 };
        }
        out.0[k] = if flat[k] { 0.0 } else { scale[k] };
        out.1[k] = -min[k];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Lane search equals the scalar reference on awkward data: zero,
    /// constant, one-sided, tiny and huge sub-blocks side by side.
    #[test]
    fn lanes_equal_the_scalar_search_bit_for_bit() {
        let mut seed = 0x2545_f491u32;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            (seed >> 8) as f32 / (1u32 << 24) as f32 - 0.5
        };
        for round in 0..200 {
            let mut x = [[0f32; 32]; LANES];
            let mut w = [[0f32; 32]; LANES];
            for k in 0..LANES {
                let kind = (round + k) % 6;
                for i in 0..32 {
                    x[k][i] = match kind {
                        0 => 0.0,
                        1 => 0.25,
                        2 => next().abs() + 0.1,
                        3 => next() * 1e-30,
                        4 => next() * 3e3,
                        _ => next(),
                    };
                    w[k][i] = next().abs() + x[k][i].abs();
                }
            }
            for (nmax, rmin, rdelta, nstep, mad) in [
                (15, -1.0, 0.1, 20, false),
                (31, -0.5, 0.1, 15, false),
                (15, -0.9, 0.05, 36, false),
            ] {
                let mut ls = [[0u8; 32]; LANES];
                let q = Qkx2 {
                    nmax,
                    rmin,
                    rdelta,
                    nstep,
                    use_mad: mad,
                };
                let (s, m) = search(q, &x, &w, &mut ls);
                for k in 0..LANES {
                    let mut l1 = [0u8; 32];
                    let (s1, m1) = make_qkx2_quants(nmax, &x[k], &w[k], &mut l1, rmin, rdelta, nstep, mad);
                    assert_eq!(
                        (s[k].to_bits(), m[k].to_bits(), ls[k]),
                        (s1.to_bits(), m1.to_bits(), l1),
                        "round {round} lane {k}"
                    );
                }
            }
        }
    }
}
