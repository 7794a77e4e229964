//! The K-quants' hot searches, eight sub-blocks at once: `make_qkx2_quants`
//! (and `make_qkx3_quants`, the same search) and `make_qx_quants` with one
//! sub-block per SIMD lane. Each lane performs exactly the scalar function's f32 operations in
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

use super::extra::iq4_sub_block_scale;
use super::kquants::{make_qkx2_quants, make_qx_quants, nearest_int, GROUP_MAX_EPS};
use std::sync::OnceLock;

/// Sub-blocks searched together.
pub const LANES: usize = 8;

type L = [f32; LANES];

/// Whether the scalar reference is forced.
fn scalar_forced() -> bool {
    static S: OnceLock<bool> = OnceLock::new();
    *S.get_or_init(|| std::env::var_os("MODELCONV_SCALAR").is_some_and(|v| v == "1"))
}

/// Runs `$scalar` when the scalar reference is forced, else the lane body
/// `$lanes`, compiled with AVX2 where the CPU has it.
macro_rules! dispatch {
    ($scalar:expr, $lanes:ident, $avx2:ident, ($($arg:expr),*)) => {{
        if scalar_forced() {
            return $scalar;
        }
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx2") {
                // SAFETY: the CPU supports AVX2 (checked just above).
                return unsafe { $avx2($($arg),*) };
            }
        }
        $lanes($($arg),*)
    }};
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

impl Qkx2 {
    pub fn new(nmax: i32, rmin: f32, rdelta: f32, nstep: i32, use_mad: bool) -> Self {
        Qkx2 {
            nmax,
            rmin,
            rdelta,
            nstep,
            use_mad,
        }
    }
}

/// `make_qkx2_quants` on eight sub-blocks of `N` values: returns each
/// lane's (scale, -min) and writes its levels into `ls[lane]`.
pub fn make_qkx2_quants_x8<const N: usize>(
    q: Qkx2,
    x: &[[f32; N]; LANES],
    w: &[[f32; N]; LANES],
    ls: &mut [[u8; N]; LANES],
) -> (L, L) {
    dispatch!(qkx2_scalar(q, x, w, ls), search, search_avx2, (q, x, w, ls))
}

/// The scalar reference, lane by lane.
fn qkx2_scalar<const N: usize>(
    q: Qkx2,
    x: &[[f32; N]; LANES],
    w: &[[f32; N]; LANES],
    ls: &mut [[u8; N]; LANES],
) -> (L, L) {
    let mut out = ([0f32; LANES], [0f32; LANES]);
    for k in 0..LANES {
        (out.0[k], out.1[k]) = make_qkx2_quants(q.nmax, &x[k], &w[k], &mut ls[k], q.rmin, q.rdelta, q.nstep, q.use_mad);
    }
    out
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

/// `make_qx_quants` (rmse_type 1, or the matrix's weights) on eight
/// sub-blocks of `N` values: returns each lane's scale and writes its levels
/// (l + nmax) into `ls[lane]`.
pub fn make_qx_quants_x8<const N: usize>(
    nmax: i32,
    x: &[[f32; N]; LANES],
    w: &[[f32; N]; LANES],
    ls: &mut [[i8; N]; LANES],
) -> L {
    dispatch!(qx_scalar(nmax, x, w, ls), qx_search, qx_search_avx2, (nmax, x, w, ls))
}

/// The scalar reference, lane by lane.
fn qx_scalar<const N: usize>(nmax: i32, x: &[[f32; N]; LANES], w: &[[f32; N]; LANES], ls: &mut [[i8; N]; LANES]) -> L {
    std::array::from_fn(|k| make_qx_quants(nmax, &x[k], &w[k], &mut ls[k]))
}

#[cfg(target_arch = "x86_64")]
use x86::{iq4_scales_avx2, qx_search_avx2, search_avx2};

/// IQ4_XS's sub-block scale search (`iq4_sub_block_scale`) on the eight
/// 32-value sub-blocks of a super-block. Outside x86-64 the scalar search
/// runs lane by lane (the table look-up does not vectorize portably).
pub fn iq4_scales_x8(x: &[[f32; 32]; LANES], w: &[[f32; 32]; LANES]) -> L {
    dispatch!(iq4_scalar(x, w), iq4_scalar, iq4_scales_avx2, (x, w))
}

/// The scalar reference, lane by lane.
fn iq4_scalar(x: &[[f32; 32]; LANES], w: &[[f32; 32]; LANES]) -> L {
    std::array::from_fn(|k| iq4_sub_block_scale(&x[k], &w[k]))
}

/// The lane searches written with AVX2 intrinsics where LLVM's
/// vectorization of the portable lane code falls short. Each `_mm256_*`
/// step is the scalar f32 operation on eight lanes (no FMA); comparisons
/// are ordered (false on NaN) as Rust's `<`/`>` are, `!=` unordered.
#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{Qkx2, L, LANES};
    use crate::quants::kquants::GROUP_MAX_EPS;
    use std::arch::x86_64::*;

    /// Lanes by position: `out[i]` holds x[k][i] for the eight lanes k.
    #[inline(always)]
    fn transpose<const N: usize>(x: &[[f32; N]; LANES]) -> [L; N] {
        std::array::from_fn(|i| std::array::from_fn(|k| x[k][i]))
    }

    /// `nearest_int(v)` on eight lanes, clamped to [lo, hi].
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn nearest_clamped(v: __m256, lo: __m256i, hi: __m256i) -> __m256i {
        let t = _mm256_castps_si256(_mm256_add_ps(v, _mm256_set1_ps(12_582_912.0)));
        let l = _mm256_sub_epi32(
            _mm256_and_si256(t, _mm256_set1_epi32(0x007f_ffff)),
            _mm256_set1_epi32(0x0040_0000),
        );
        _mm256_min_epi32(_mm256_max_epi32(l, lo), hi)
    }

    /// The error term w·|d| or w·d², eight lanes.
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn weighted_err(w: __m256, d: __m256, use_mad: bool) -> __m256 {
        let e = if use_mad {
            _mm256_and_ps(d, _mm256_castsi256_ps(_mm256_set1_epi32(0x7fff_ffff)))
        } else {
            _mm256_mul_ps(d, d)
        };
        _mm256_mul_ps(w, e)
    }

    /// See `super::make_qkx2_quants_x8`.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn search_avx2<const N: usize>(
        q: Qkx2,
        x: &[[f32; N]; LANES],
        w: &[[f32; N]; LANES],
        ls: &mut [[u8; N]; LANES],
    ) -> (L, L) {
        let (xt, wt) = (transpose(x), transpose(w));
        let xv: [__m256; N] = std::array::from_fn(|i| _mm256_loadu_ps(xt[i].as_ptr()));
        let wv: [__m256; N] = std::array::from_fn(|i| _mm256_loadu_ps(wt[i].as_ptr()));
        let zero = _mm256_setzero_ps();
        let (mut min, mut max, mut sum_w) = (xv[0], xv[0], wv[0]);
        let mut sum_x = _mm256_mul_ps(sum_w, xv[0]);
        for i in 1..N {
            min = _mm256_blendv_ps(min, xv[i], _mm256_cmp_ps::<_CMP_LT_OQ>(xv[i], min));
            max = _mm256_blendv_ps(max, xv[i], _mm256_cmp_ps::<_CMP_GT_OQ>(xv[i], max));
            sum_w = _mm256_add_ps(sum_w, wv[i]);
            sum_x = _mm256_add_ps(sum_x, _mm256_mul_ps(wv[i], xv[i]));
        }
        min = _mm256_blendv_ps(min, zero, _mm256_cmp_ps::<_CMP_GT_OQ>(min, zero));
        let flat = _mm256_cmp_ps::<_CMP_EQ_OQ>(max, min);
        let (lo, hi) = (_mm256_setzero_si256(), _mm256_set1_epi32(q.nmax));
        // Levels clamp(nearest_int(iscale·(x - min)), 0, nmax) into `lt`.
        let levels = |iscale: __m256, min: __m256, lt: &mut [__m256; N]| {
            for i in 0..N {
                let v = _mm256_mul_ps(iscale, _mm256_sub_ps(xv[i], min));
                lt[i] = _mm256_cvtepi32_ps(nearest_clamped(v, lo, hi));
            }
        };
        // Σ w·err(scale·l + min - x).
        let error = |scale: __m256, min: __m256, lt: &[__m256; N]| {
            let mut e = zero;
            for i in 0..N {
                let d = _mm256_sub_ps(_mm256_add_ps(_mm256_mul_ps(scale, lt[i]), min), xv[i]);
                e = _mm256_add_ps(e, weighted_err(wv[i], d, q.use_mad));
            }
            e
        };
        let nmaxf = q.nmax as f32;
        let iscale = _mm256_div_ps(_mm256_set1_ps(nmaxf), _mm256_sub_ps(max, min));
        let mut scale = _mm256_div_ps(_mm256_set1_ps(1.0), iscale);
        let mut lt = [zero; N];
        levels(iscale, min, &mut lt);
        let mut best_error = error(scale, min, &lt);
        let mut laux = [zero; N];
        // ggml searches only when nstep ≥ 1.
        for is in (0..=q.nstep).filter(|_| q.nstep >= 1) {
            let num = _mm256_set1_ps(q.rmin + q.rdelta * is as f32 + nmaxf);
            levels(_mm256_div_ps(num, _mm256_sub_ps(max, min)), min, &mut laux);
            let (mut sum_l, mut sum_l2, mut sum_xl) = (zero, zero, zero);
            for i in 0..N {
                let wl = _mm256_mul_ps(wv[i], laux[i]);
                sum_l = _mm256_add_ps(sum_l, wl);
                sum_l2 = _mm256_add_ps(sum_l2, _mm256_mul_ps(wl, laux[i]));
                sum_xl = _mm256_add_ps(sum_xl, _mm256_mul_ps(wl, xv[i]));
            }
            let d = _mm256_sub_ps(_mm256_mul_ps(sum_w, sum_l2), _mm256_mul_ps(sum_l, sum_l));
            let fits = _mm256_cmp_ps::<_CMP_GT_OQ>(d, zero);
            let mut this_scale = _mm256_div_ps(
                _mm256_sub_ps(_mm256_mul_ps(sum_w, sum_xl), _mm256_mul_ps(sum_x, sum_l)),
                d,
            );
            let mut this_min = _mm256_div_ps(
                _mm256_sub_ps(_mm256_mul_ps(sum_l2, sum_x), _mm256_mul_ps(sum_l, sum_xl)),
                d,
            );
            let positive = _mm256_cmp_ps::<_CMP_GT_OQ>(this_min, zero);
            this_min = _mm256_blendv_ps(this_min, zero, positive);
            this_scale = _mm256_blendv_ps(this_scale, _mm256_div_ps(sum_xl, sum_l2), positive);
            let cur_error = error(this_scale, this_min, &laux);
            let better = _mm256_andnot_ps(
                flat,
                _mm256_and_ps(fits, _mm256_cmp_ps::<_CMP_LT_OQ>(cur_error, best_error)),
            );
            if _mm256_movemask_ps(better) == 0 {
                continue;
            }
            best_error = _mm256_blendv_ps(best_error, cur_error, better);
            scale = _mm256_blendv_ps(scale, this_scale, better);
            min = _mm256_blendv_ps(min, this_min, better);
            for i in 0..N {
                lt[i] = _mm256_blendv_ps(lt[i], laux[i], better);
            }
        }
        for i in 0..N {
            let mut codes = [0i32; LANES];
            let v = _mm256_castps_si256(_mm256_andnot_ps(flat, _mm256_castsi256_ps(_mm256_cvtps_epi32(lt[i]))));
            _mm256_storeu_si256(codes.as_mut_ptr().cast(), v);
            for k in 0..LANES {
                ls[k][i] = codes[k] as u8;
            }
        }
        let (mut out_scale, mut out_min) = ([0f32; LANES], [0f32; LANES]);
        _mm256_storeu_ps(out_scale.as_mut_ptr(), _mm256_andnot_ps(flat, scale));
        // -min flips the sign bit (so -0 where min is 0).
        _mm256_storeu_ps(out_min.as_mut_ptr(), _mm256_xor_ps(min, _mm256_set1_ps(-0.0)));
        (out_scale, out_min)
    }

    /// `best_index_int8`'s level for eight values `al` in the ascending
    /// table `vf`: 0 at or below vf[0], 15 at or above vf[15], else the
    /// bisection's bracket vf[ml] ≤ al < vf[ml+1] (ml counts the levels
    /// 1..=14 that al is not below, so NaN lands on 15 as there) and the
    /// nearer end, ties to the upper.
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn iq4_level(al: __m256, vf: &[f32; 16], lo_tab: __m256, hi_tab: __m256) -> __m256 {
        let mut ml = _mm256_setzero_si256();
        for &v in &vf[1..15] {
            ml = _mm256_sub_epi32(
                ml,
                _mm256_castps_si256(_mm256_cmp_ps::<_CMP_NLT_UQ>(al, _mm256_set1_ps(v))),
            );
        }
        let lookup = |idx: __m256i| {
            let upper = _mm256_castsi256_ps(_mm256_cmpgt_epi32(idx, _mm256_set1_epi32(7)));
            _mm256_blendv_ps(
                _mm256_permutevar8x32_ps(lo_tab, idx),
                _mm256_permutevar8x32_ps(hi_tab, idx),
                upper,
            )
        };
        let (below, above) = (lookup(ml), lookup(_mm256_add_epi32(ml, _mm256_set1_epi32(1))));
        let lower = _mm256_cmp_ps::<_CMP_LT_OQ>(_mm256_sub_ps(al, below), _mm256_sub_ps(above, al));
        let mut q = _mm256_blendv_ps(above, below, lower);
        q = _mm256_blendv_ps(
            q,
            _mm256_set1_ps(vf[15]),
            _mm256_cmp_ps::<_CMP_GE_OQ>(al, _mm256_set1_ps(vf[15])),
        );
        _mm256_blendv_ps(
            q,
            _mm256_set1_ps(vf[0]),
            _mm256_cmp_ps::<_CMP_LE_OQ>(al, _mm256_set1_ps(vf[0])),
        )
    }

    /// See `super::iq4_scales_x8`.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn iq4_scales_avx2(x: &[[f32; 32]; LANES], w: &[[f32; 32]; LANES]) -> L {
        use crate::quants::extra::{IQ4_NTRY, KVALUES_IQ4NL};
        let vf: [f32; 16] = std::array::from_fn(|i| f32::from(KVALUES_IQ4NL[i]));
        let (lo_tab, hi_tab) = (_mm256_loadu_ps(vf.as_ptr()), _mm256_loadu_ps(vf[8..].as_ptr()));
        let (xt, wt) = (transpose(x), transpose(w));
        let xv: [__m256; 32] = std::array::from_fn(|i| _mm256_loadu_ps(xt[i].as_ptr()));
        let wv: [__m256; 32] = std::array::from_fn(|i| _mm256_loadu_ps(wt[i].as_ptr()));
        let abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fff_ffff));
        let (mut max, mut amax) = (_mm256_setzero_ps(), _mm256_setzero_ps());
        for xi in xv {
            let ax = _mm256_and_ps(xi, abs_mask);
            let gt = _mm256_cmp_ps::<_CMP_GT_OQ>(ax, amax);
            amax = _mm256_blendv_ps(amax, ax, gt);
            max = _mm256_blendv_ps(max, xi, gt);
        }
        // Σ(w·q)·x and Σ(w·q)·q for the levels nearest id·x.
        let fit = |id: __m256| {
            let (mut sumqx, mut sumq2) = (_mm256_setzero_ps(), _mm256_setzero_ps());
            for j in 0..32 {
                let q = iq4_level(_mm256_mul_ps(id, xv[j]), &vf, lo_tab, hi_tab);
                let wq = _mm256_mul_ps(wv[j], q);
                sumqx = _mm256_add_ps(sumqx, _mm256_mul_ps(wq, xv[j]));
                sumq2 = _mm256_add_ps(sumq2, _mm256_mul_ps(wq, q));
            }
            (sumqx, sumq2)
        };
        let zero = _mm256_setzero_ps();
        let neg_max = _mm256_xor_ps(max, _mm256_set1_ps(-0.0));
        let first = _mm256_div_ps(_mm256_set1_ps(1.0), _mm256_div_ps(neg_max, _mm256_set1_ps(vf[0])));
        let (sumqx, sumq2) = fit(first);
        let mut d = _mm256_and_ps(_mm256_div_ps(sumqx, sumq2), _mm256_cmp_ps::<_CMP_GT_OQ>(sumq2, zero));
        let mut best = _mm256_mul_ps(d, sumqx);
        for itry in -IQ4_NTRY..=IQ4_NTRY {
            let num = _mm256_set1_ps((itry + i32::from(KVALUES_IQ4NL[0])) as f32);
            let (sumqx, sumq2) = fit(_mm256_div_ps(num, max));
            let fits = _mm256_cmp_ps::<_CMP_GT_OQ>(sumq2, zero);
            let gain = _mm256_cmp_ps::<_CMP_GT_OQ>(_mm256_mul_ps(sumqx, sumqx), _mm256_mul_ps(best, sumq2));
            let better = _mm256_and_ps(fits, gain);
            let this_d = _mm256_div_ps(sumqx, sumq2);
            d = _mm256_blendv_ps(d, this_d, better);
            best = _mm256_blendv_ps(best, _mm256_mul_ps(this_d, sumqx), better);
        }
        let flat = _mm256_cmp_ps::<_CMP_LT_OQ>(amax, _mm256_set1_ps(GROUP_MAX_EPS));
        let mut out = [0f32; LANES];
        _mm256_storeu_ps(out.as_mut_ptr(), _mm256_andnot_ps(flat, d));
        out
    }

    /// See `super::make_qx_quants_x8`.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn qx_search_avx2<const N: usize>(
        nmax: i32,
        x: &[[f32; N]; LANES],
        w: &[[f32; N]; LANES],
        ls: &mut [[i8; N]; LANES],
    ) -> L {
        let (xt, wt) = (transpose(x), transpose(w));
        let xv: [__m256; N] = std::array::from_fn(|i| _mm256_loadu_ps(xt[i].as_ptr()));
        let wv: [__m256; N] = std::array::from_fn(|i| _mm256_loadu_ps(wt[i].as_ptr()));
        let abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fff_ffff));
        let (mut max, mut amax) = (_mm256_setzero_ps(), _mm256_setzero_ps());
        for xi in xv {
            let ax = _mm256_and_ps(xi, abs_mask);
            let gt = _mm256_cmp_ps::<_CMP_GT_OQ>(ax, amax);
            amax = _mm256_blendv_ps(amax, ax, gt);
            max = _mm256_blendv_ps(max, xi, gt);
        }
        let (lo, hi) = (_mm256_set1_epi32(-nmax), _mm256_set1_epi32(nmax - 1));
        // Σ(w·x)·l and Σ(w·l)·l at one inverse scale, the levels into `lt`.
        let sums = |iscale: __m256, lt: &mut [__m256i; N]| {
            let (mut sumlx, mut suml2) = (_mm256_setzero_ps(), _mm256_setzero_ps());
            for i in 0..N {
                lt[i] = nearest_clamped(_mm256_mul_ps(iscale, xv[i]), lo, hi);
                let lf = _mm256_cvtepi32_ps(lt[i]);
                sumlx = _mm256_add_ps(sumlx, _mm256_mul_ps(_mm256_mul_ps(wv[i], xv[i]), lf));
                suml2 = _mm256_add_ps(suml2, _mm256_mul_ps(_mm256_mul_ps(wv[i], lf), lf));
            }
            (sumlx, suml2)
        };
        let nmaxf = nmax as f32;
        let zero = _mm256_setzero_ps();
        let mut best_l = [_mm256_setzero_si256(); N];
        let (sumlx, suml2) = sums(_mm256_div_ps(_mm256_set1_ps(-nmaxf), max), &mut best_l);
        let nonzero = _mm256_cmp_ps::<_CMP_NEQ_UQ>(suml2, zero);
        let mut scale = _mm256_and_ps(_mm256_div_ps(sumlx, suml2), nonzero);
        let mut best = _mm256_mul_ps(scale, sumlx);
        let mut lt = [_mm256_setzero_si256(); N];
        for is in (-9..=9).filter(|&is| is != 0) {
            let num = _mm256_set1_ps(-(nmaxf + 0.1 * is as f32));
            let (sumlx, suml2) = sums(_mm256_div_ps(num, max), &mut lt);
            let fits = _mm256_cmp_ps::<_CMP_GT_OQ>(suml2, zero);
            let gain = _mm256_cmp_ps::<_CMP_GT_OQ>(_mm256_mul_ps(sumlx, sumlx), _mm256_mul_ps(best, suml2));
            let better = _mm256_and_ps(fits, gain);
            if _mm256_movemask_ps(better) == 0 {
                continue;
            }
            let this_scale = _mm256_div_ps(sumlx, suml2);
            scale = _mm256_blendv_ps(scale, this_scale, better);
            best = _mm256_blendv_ps(best, _mm256_mul_ps(this_scale, sumlx), better);
            let bi = _mm256_castps_si256(better);
            for i in 0..N {
                best_l[i] = _mm256_blendv_epi8(best_l[i], lt[i], bi);
            }
        }
        let flat = _mm256_cmp_ps::<_CMP_LT_OQ>(amax, _mm256_set1_ps(GROUP_MAX_EPS));
        let keep = _mm256_castps_si256(_mm256_andnot_ps(flat, _mm256_castsi256_ps(_mm256_set1_epi32(-1))));
        let offset = _mm256_set1_epi32(nmax);
        for i in 0..N {
            let mut codes = [0i32; LANES];
            let v = _mm256_and_si256(_mm256_add_epi32(best_l[i], offset), keep);
            _mm256_storeu_si256(codes.as_mut_ptr().cast(), v);
            for k in 0..LANES {
                ls[k][i] = codes[k] as i8;
            }
        }
        let mut out = [0f32; LANES];
        _mm256_storeu_ps(out.as_mut_ptr(), _mm256_andnot_ps(flat, scale));
        out
    }
}

/// Lane k's weighted sums Σw·x·l and Σw·l·l for the levels at `iscale`,
/// written into `lt`, in ggml's order ((w·x)·l and (w·l)·l).
#[inline(always)]
fn qx_sums<const N: usize>(iscale: &L, xt: &[L; N], wt: &[L; N], nmax: i32, lt: &mut [L; N]) -> (L, L) {
    let (mut sumlx, mut suml2) = ([0f32; LANES], [0f32; LANES]);
    for i in 0..N {
        lt[i] = std::array::from_fn(|k| nearest_int(iscale[k] * xt[i][k]).clamp(-nmax, nmax - 1) as f32);
        for k in 0..LANES {
            sumlx[k] += wt[i][k] * xt[i][k] * lt[i][k];
            suml2[k] += wt[i][k] * lt[i][k] * lt[i][k];
        }
    }
    (sumlx, suml2)
}

#[inline(always)]
fn qx_search<const N: usize>(nmax: i32, x: &[[f32; N]; LANES], w: &[[f32; N]; LANES], ls: &mut [[i8; N]; LANES]) -> L {
    let xt: [L; N] = std::array::from_fn(|i| std::array::from_fn(|k| x[k][i]));
    let wt: [L; N] = std::array::from_fn(|i| std::array::from_fn(|k| w[k][i]));
    // The value of largest magnitude, first on ties.
    let (mut max, mut amax) = ([0f32; LANES], [0f32; LANES]);
    for i in 0..N {
        for k in 0..LANES {
            let ax = xt[i][k].abs();
            if ax > amax[k] {
                amax[k] = ax;
                max[k] = xt[i][k];
            }
        }
    }
    let nmaxf = nmax as f32;
    let iscale: L = std::array::from_fn(|k| -nmaxf / max[k]);
    let mut best_l = [[0f32; LANES]; N];
    let (sumlx, suml2) = qx_sums(&iscale, &xt, &wt, nmax, &mut best_l);
    let mut scale: L = std::array::from_fn(|k| if suml2[k] != 0.0 { sumlx[k] / suml2[k] } else { 0.0 });
    let mut best: L = std::array::from_fn(|k| scale[k] * sumlx[k]);
    let mut lt = [[0f32; LANES]; N];
    for is in (-9..=9).filter(|&is| is != 0) {
        let iscale: L = std::array::from_fn(|k| -(nmaxf + 0.1 * is as f32) / max[k]);
        let (sumlx, suml2) = qx_sums(&iscale, &xt, &wt, nmax, &mut lt);
        let better: [bool; LANES] = std::array::from_fn(|k| suml2[k] > 0.0 && sumlx[k] * sumlx[k] > best[k] * suml2[k]);
        for k in 0..LANES {
            if better[k] {
                scale[k] = sumlx[k] / suml2[k];
                best[k] = scale[k] * sumlx[k];
            }
        }
        for i in 0..N {
            for k in 0..LANES {
                if better[k] {
                    best_l[i][k] = lt[i][k];
                }
            }
        }
    }
    let zero: [bool; LANES] = std::array::from_fn(|k| amax[k] < GROUP_MAX_EPS);
    for k in 0..LANES {
        for i in 0..N {
            ls[k][i] = if zero[k] { 0 } else { (best_l[i][k] as i32 + nmax) as i8 };
        }
    }
    std::array::from_fn(|k| if zero[k] { 0.0 } else { scale[k] })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `make_qx_quants` in lanes equals the scalar reference on the same
    /// awkward sub-blocks, at Q6_K's and Q3_K's level counts.
    #[test]
    fn qx_lanes_equal_the_scalar_search_bit_for_bit() {
        let mut next = noise(0x9e37_79b9);
        for round in 0..300 {
            let mut x = [[0f32; 16]; LANES];
            let mut w = [[0f32; 16]; LANES];
            for k in 0..LANES {
                for i in 0..16 {
                    x[k][i] = awkward((round + k) % 7, &mut next);
                    w[k][i] = if round % 2 == 0 {
                        x[k][i] * x[k][i]
                    } else {
                        next().abs()
                    };
                }
            }
            for nmax in [32, 4] {
                let mut ls = [[0i8; 16]; LANES];
                let s = make_qx_quants_x8(nmax, &x, &w, &mut ls);
                for k in 0..LANES {
                    let mut l1 = [0i8; 16];
                    let s1 = make_qx_quants(nmax, &x[k], &w[k], &mut l1);
                    assert_eq!(
                        (s[k].to_bits(), ls[k]),
                        (s1.to_bits(), l1),
                        "round {round} lane {k} nmax {nmax}"
                    );
                }
            }
        }
    }

    /// IQ4_XS's scale search in lanes equals the scalar search, including
    /// sub-blocks whose scaled values land on level midpoints.
    #[test]
    fn iq4_lanes_equal_the_scalar_search_bit_for_bit() {
        let mut next = noise(0x1234_5678);
        for round in 0..300 {
            let mut x = [[0f32; 32]; LANES];
            let mut w = [[0f32; 32]; LANES];
            for k in 0..LANES {
                for i in 0..32 {
                    x[k][i] = awkward((round + k) % 7, &mut next);
                    w[k][i] = if round % 3 == 0 {
                        x[k][i] * x[k][i]
                    } else {
                        next().abs()
                    };
                }
            }
            let s = iq4_scales_x8(&x, &w);
            for k in 0..LANES {
                let s1 = iq4_sub_block_scale(&x[k], &w[k]);
                assert_eq!(s[k].to_bits(), s1.to_bits(), "round {round} lane {k}");
            }
        }
    }

    /// A xorshift source of values in [-0.5, 0.5).
    fn noise(mut seed: u32) -> impl FnMut() -> f32 {
        move || {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            (seed >> 8) as f32 / (1u32 << 24) as f32 - 0.5
        }
    }

    /// One value of a sub-block of the given kind: zero, constant,
    /// one-sided, tiny, huge, plain noise, or noise with exact ties.
    fn awkward(kind: usize, next: &mut impl FnMut() -> f32) -> f32 {
        match kind {
            0 => 0.0,
            1 => 0.25,
            2 => next().abs() + 0.1,
            3 => next() * 1e-30,
            4 => next() * 3e3,
            5 => (next() * 8.0).round() / 8.0,
            _ => next(),
        }
    }

    /// Lane search equals the scalar reference on awkward data: zero,
    /// constant, one-sided, tiny and huge sub-blocks side by side.
    #[test]
    fn lanes_equal_the_scalar_search_bit_for_bit() {
        let mut next = noise(0x2545_f491);
        for round in 0..200 {
            let mut x = [[0f32; 32]; LANES];
            let mut w = [[0f32; 32]; LANES];
            for k in 0..LANES {
                for i in 0..32 {
                    x[k][i] = awkward((round + k) % 6, &mut next);
                    w[k][i] = next().abs() + x[k][i].abs();
                }
            }
            for (nmax, rmin, rdelta, nstep, mad) in [
                (15, -1.0, 0.1, 20, false),
                (31, -0.5, 0.1, 15, false),
                (15, -0.9, 0.05, 36, false),
                (3, -0.5, 0.1, 15, true),
                (3, -0.9, 0.05, 36, false),
            ] {
                let mut ls = [[0u8; 32]; LANES];
                let q = Qkx2 {
                    nmax,
                    rmin,
                    rdelta,
                    nstep,
                    use_mad: mad,
                };
                let (s, m) = make_qkx2_quants_x8(q, &x, &w, &mut ls);
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
