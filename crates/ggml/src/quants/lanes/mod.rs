//! The quantizers' hot searches, eight sub-blocks at once:
//! `make_qkx2_quants` (and `make_qkx3_quants`, the same search),
//! `make_qx_quants` and IQ4's scale search with one sub-block per SIMD
//! lane. Each lane performs exactly the scalar function's f32 operations in
//! its order (no fused multiply-add, no reassociated sums; branches become
//! selects), so the bytes equal the scalar reference's, which stays in
//! kquants.rs/extra.rs and is what the tests compare against.
//!
//! The searches are written once over [`ops::F32x8`]; its implementations
//! are AVX2 (x86-64, chosen at run time with `is_x86_feature_detected!`),
//! NEON (AArch64, where it is always present) and plain arrays (anywhere
//! else). `MODELCONV_SCALAR=1` forces the scalar reference (for the
//! benchmark's scalar rows).

// Lane loops index several arrays in step.
#![allow(clippy::needless_range_loop)]

#[cfg(target_arch = "aarch64")]
mod neon;
mod ops;
#[cfg(target_arch = "x86_64")]
mod x86;

use super::extra::{iq4_sub_block_scale, IQ4_NTRY, KVALUES_IQ4NL};
use super::kquants::{make_qkx2_quants, make_qx_quants, GROUP_MAX_EPS};
use ops::{column, F32x8, Portable};
use std::sync::OnceLock;

/// Sub-blocks searched together.
pub const LANES: usize = 8;

type L = [f32; LANES];

/// Which implementation the searches run on this machine.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Scalar,
    #[cfg(target_arch = "x86_64")]
    Avx2,
    #[cfg(target_arch = "aarch64")]
    Neon,
    #[cfg_attr(target_arch = "aarch64", allow(dead_code))]
    Portable,
}

fn kind() -> Kind {
    static K: OnceLock<Kind> = OnceLock::new();
    *K.get_or_init(|| {
        if std::env::var_os("MODELCONV_SCALAR").is_some_and(|v| v == "1") {
            return Kind::Scalar;
        }
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") {
            return Kind::Avx2;
        }
        #[cfg(target_arch = "aarch64")]
        return Kind::Neon;
        #[allow(unreachable_code)]
        Kind::Portable
    })
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
    match kind() {
        Kind::Scalar => {
            let mut out = ([0f32; LANES], [0f32; LANES]);
            for k in 0..LANES {
                (out.0[k], out.1[k]) =
                    make_qkx2_quants(q.nmax, &x[k], &w[k], &mut ls[k], q.rmin, q.rdelta, q.nstep, q.use_mad);
            }
            out
        }
        // SAFETY: Avx2 is chosen only where the CPU has AVX2.
        #[cfg(target_arch = "x86_64")]
        Kind::Avx2 => unsafe { x86::qkx2(q, x, w, ls) },
        #[cfg(target_arch = "aarch64")]
        Kind::Neon => qkx2_search::<neon::Neon, N>(q, x, w, ls),
        Kind::Portable => qkx2_search::<Portable, N>(q, x, w, ls),
    }
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
    match kind() {
        Kind::Scalar => std::array::from_fn(|k| make_qx_quants(nmax, &x[k], &w[k], &mut ls[k])),
        // SAFETY: Avx2 is chosen only where the CPU has AVX2.
        #[cfg(target_arch = "x86_64")]
        Kind::Avx2 => unsafe { x86::qx(nmax, x, w, ls) },
        #[cfg(target_arch = "aarch64")]
        Kind::Neon => qx_search::<neon::Neon, N>(nmax, x, w, ls),
        Kind::Portable => qx_search::<Portable, N>(nmax, x, w, ls),
    }
}

/// IQ4_NL/IQ4_XS's sub-block scale search (`iq4_sub_block_scale`) on eight
/// 32-value sub-blocks.
pub fn iq4_scales_x8(x: &[[f32; 32]; LANES], w: &[[f32; 32]; LANES]) -> L {
    match kind() {
        Kind::Scalar => std::array::from_fn(|k| iq4_sub_block_scale(&x[k], &w[k])),
        // SAFETY: Avx2 is chosen only where the CPU has AVX2.
        #[cfg(target_arch = "x86_64")]
        Kind::Avx2 => unsafe { x86::iq4(x, w) },
        #[cfg(target_arch = "aarch64")]
        Kind::Neon => iq4_search::<neon::Neon>(x, w),
        Kind::Portable => iq4_search::<Portable>(x, w),
    }
}

/// Eight sub-blocks by position: `out[i]` holds x[k][i] for the lanes k.
/// (Loops, not closures, throughout: a closure is compiled without the
/// AVX2 entry point's target feature, and its intrinsics then stay calls.)
#[inline(always)]
fn columns<V: F32x8, const N: usize>(x: &[[f32; N]; LANES]) -> [V; N] {
    let mut out = [V::splat(0.0); N];
    for i in 0..N {
        out[i] = column(x, i);
    }
    out
}

/// The value of largest magnitude of each lane's sub-block (the first on
/// ties) and that magnitude.
#[inline(always)]
fn signed_absmax<V: F32x8, const N: usize>(xv: &[V; N]) -> (V, V) {
    let (mut max, mut amax) = (V::splat(0.0), V::splat(0.0));
    for &xi in xv {
        let ax = xi.abs();
        let gt = ax.gt(amax);
        amax = V::select(gt, ax, amax);
        max = V::select(gt, xi, max);
    }
    (max, amax)
}

/// Lane k's levels (`lt`, as f32) back in sub-block order, plus `offset`,
/// each as C stores an `int` into an 8-bit type; zero in lanes of `flat`.
#[inline(always)]
fn store_levels<V: F32x8, T: Copy, const N: usize>(
    lt: &[V; N],
    flat: V,
    offset: i32,
    cast: impl Fn(i32) -> T,
    ls: &mut [[T; N]; LANES],
) {
    let flat = flat.to_array();
    for i in 0..N {
        let l = lt[i].to_array();
        for k in 0..LANES {
            let code = if flat[k].to_bits() != 0 {
                0
            } else {
                l[k] as i32 + offset
            };
            ls[k][i] = cast(code);
        }
    }
}

/// Levels clamp(nearest_int(iscale·(x - min)), 0, nmax).
#[inline(always)]
fn offset_levels<V: F32x8, const N: usize>(xv: &[V; N], iscale: V, min: V, nmax: i32, lt: &mut [V; N]) {
    for i in 0..N {
        lt[i] = iscale.mul(xv[i].sub(min)).nearest_clamped(0, nmax);
    }
}

/// Σ w·err(scale·l + min - x), err = |d| (`use_mad`) or d².
#[inline(always)]
fn fit_error<V: F32x8, const N: usize>(xv: &[V; N], wv: &[V; N], scale: V, min: V, lt: &[V; N], use_mad: bool) -> V {
    let mut e = V::splat(0.0);
    for i in 0..N {
        let d = scale.mul(lt[i]).add(min).sub(xv[i]);
        e = e.add(wv[i].mul(if use_mad { d.abs() } else { d.mul(d) }));
    }
    e
}

/// `make_qkx2_quants`: see kquants.rs for the scalar reference.
#[inline(always)]
fn qkx2_search<V: F32x8, const N: usize>(
    q: Qkx2,
    x: &[[f32; N]; LANES],
    w: &[[f32; N]; LANES],
    ls: &mut [[u8; N]; LANES],
) -> (L, L) {
    let (xv, wv) = (columns::<V, N>(x), columns::<V, N>(w));
    let zero = V::splat(0.0);
    let (mut min, mut max, mut sum_w) = (xv[0], xv[0], wv[0]);
    let mut sum_x = sum_w.mul(xv[0]);
    for i in 1..N {
        min = V::select(xv[i].lt(min), xv[i], min);
        max = V::select(xv[i].gt(max), xv[i], max);
        sum_w = sum_w.add(wv[i]);
        sum_x = sum_x.add(wv[i].mul(xv[i]));
    }
    min = V::select(min.gt(zero), zero, min);
    let flat = max.eq(min);
    let nmaxf = q.nmax as f32;
    let iscale = V::splat(nmaxf).div(max.sub(min));
    let mut scale = V::splat(1.0).div(iscale);
    let (mut lt, mut laux) = ([zero; N], [zero; N]);
    offset_levels(&xv, iscale, min, q.nmax, &mut lt);
    let mut best_error = fit_error(&xv, &wv, scale, min, &lt, q.use_mad);
    // ggml searches only when nstep ≥ 1.
    for is in (0..=q.nstep).filter(|_| q.nstep >= 1) {
        let num = V::splat(q.rmin + q.rdelta * is as f32 + nmaxf);
        offset_levels(&xv, num.div(max.sub(min)), min, q.nmax, &mut laux);
        let (mut sum_l, mut sum_l2, mut sum_xl) = (zero, zero, zero);
        for i in 0..N {
            let wl = wv[i].mul(laux[i]);
            sum_l = sum_l.add(wl);
            sum_l2 = sum_l2.add(wl.mul(laux[i]));
            sum_xl = sum_xl.add(wl.mul(xv[i]));
        }
        let d = sum_w.mul(sum_l2).sub(sum_l.mul(sum_l));
        let fits = d.gt(zero);
        let mut this_scale = sum_w.mul(sum_xl).sub(sum_x.mul(sum_l)).div(d);
        let mut this_min = sum_l2.mul(sum_x).sub(sum_l.mul(sum_xl)).div(d);
        let positive = this_min.gt(zero);
        this_min = V::select(positive, zero, this_min);
        this_scale = V::select(positive, sum_xl.div(sum_l2), this_scale);
        let cur_error = fit_error(&xv, &wv, this_scale, this_min, &laux, q.use_mad);
        let better = fits.and(cur_error.lt(best_error)).and_not(flat);
        if !better.any() {
            continue;
        }
        best_error = V::select(better, cur_error, best_error);
        scale = V::select(better, this_scale, scale);
        min = V::select(better, this_min, min);
        for i in 0..N {
            lt[i] = V::select(better, laux[i], lt[i]);
        }
    }
    store_levels(&lt, flat, 0, |c| c as u8, ls);
    (scale.and_not(flat).to_array(), min.neg().to_array())
}

/// Σ(w·x)·l and Σ(w·l)·l for the levels clamp(nearest_int(iscale·x),
/// -nmax, nmax-1), and the levels.
#[inline(always)]
fn qx_sums<V: F32x8, const N: usize>(xv: &[V; N], wv: &[V; N], iscale: V, nmax: i32, lt: &mut [V; N]) -> (V, V) {
    let zero = V::splat(0.0);
    let (mut sumlx, mut suml2) = (zero, zero);
    for i in 0..N {
        lt[i] = iscale.mul(xv[i]).nearest_clamped(-nmax, nmax - 1);
        sumlx = sumlx.add(wv[i].mul(xv[i]).mul(lt[i]));
        suml2 = suml2.add(wv[i].mul(lt[i]).mul(lt[i]));
    }
    (sumlx, suml2)
}

/// `make_qx_quants`: see kquants.rs for the scalar reference.
#[inline(always)]
fn qx_search<V: F32x8, const N: usize>(
    nmax: i32,
    x: &[[f32; N]; LANES],
    w: &[[f32; N]; LANES],
    ls: &mut [[i8; N]; LANES],
) -> L {
    let (xv, wv) = (columns::<V, N>(x), columns::<V, N>(w));
    let (max, amax) = signed_absmax(&xv);
    let nmaxf = nmax as f32;
    let zero = V::splat(0.0);
    let (mut best_l, mut lt) = ([zero; N], [zero; N]);
    let (sumlx, suml2) = qx_sums(&xv, &wv, V::splat(-nmaxf).div(max), nmax, &mut best_l);
    let mut scale = sumlx.div(suml2).and(suml2.ne(zero));
    let mut best = scale.mul(sumlx);
    for is in (-9..=9).filter(|&is| is != 0) {
        let (sumlx, suml2) = qx_sums(&xv, &wv, V::splat(-(nmaxf + 0.1 * is as f32)).div(max), nmax, &mut lt);
        let better = suml2.gt(zero).and(sumlx.mul(sumlx).gt(best.mul(suml2)));
        if !better.any() {
            continue;
        }
        let this_scale = sumlx.div(suml2);
        scale = V::select(better, this_scale, scale);
        best = V::select(better, this_scale.mul(sumlx), best);
        for i in 0..N {
            best_l[i] = V::select(better, lt[i], best_l[i]);
        }
    }
    let flat = amax.lt(V::splat(GROUP_MAX_EPS));
    store_levels(&best_l, flat, nmax, |c| c as i8, ls);
    scale.and_not(flat).to_array()
}

/// `best_index_int8`'s level for eight values `al` in IQ4's ascending
/// table `vf`: the bisection's bracket vf[m] ≤ al < vf[m+1] (the last of
/// levels 1..=14 that al is not below, so NaN lands on 14..15 as there)
/// and its nearer end, ties to the upper; vf[0] at or below it, vf[15] at
/// or above.
#[inline(always)]
fn iq4_level<V: F32x8>(al: V, vf: &[f32; 16]) -> V {
    let (mut below, mut above) = (V::splat(vf[0]), V::splat(vf[1]));
    for m in 1..15 {
        let past = al.not_lt(V::splat(vf[m]));
        below = V::select(past, V::splat(vf[m]), below);
        above = V::select(past, V::splat(vf[m + 1]), above);
    }
    let lower = al.sub(below).lt(above.sub(al));
    let q = V::select(lower, below, above);
    let q = V::select(al.ge(V::splat(vf[15])), V::splat(vf[15]), q);
    V::select(al.le(V::splat(vf[0])), V::splat(vf[0]), q)
}

/// Σ(w·q)·x and Σ(w·q)·q for the levels nearest id·x.
#[inline(always)]
fn iq4_fit<V: F32x8>(xv: &[V; 32], wv: &[V; 32], id: V, vf: &[f32; 16]) -> (V, V) {
    let zero = V::splat(0.0);
    let (mut sumqx, mut sumq2) = (zero, zero);
    for j in 0..32 {
        let q = iq4_level(id.mul(xv[j]), vf);
        let wq = wv[j].mul(q);
        sumqx = sumqx.add(wq.mul(xv[j]));
        sumq2 = sumq2.add(wq.mul(q));
    }
    (sumqx, sumq2)
}

/// IQ4's scale search: see `iq4_sub_block_scale` in extra.rs.
#[inline(always)]
fn iq4_search<V: F32x8>(x: &[[f32; 32]; LANES], w: &[[f32; 32]; LANES]) -> L {
    let vf: [f32; 16] = KVALUES_IQ4NL.map(f32::from);
    let (xv, wv) = (columns::<V, 32>(x), columns::<V, 32>(w));
    let (max, amax) = signed_absmax(&xv);
    let zero = V::splat(0.0);
    let (sumqx, sumq2) = iq4_fit(&xv, &wv, V::splat(1.0).div(max.neg().div(V::splat(vf[0]))), &vf);
    let mut d = sumqx.div(sumq2).and(sumq2.gt(zero));
    let mut best = d.mul(sumqx);
    for itry in -IQ4_NTRY..=IQ4_NTRY {
        let (sumqx, sumq2) = iq4_fit(
            &xv,
            &wv,
            V::splat((itry + i32::from(KVALUES_IQ4NL[0])) as f32).div(max),
            &vf,
        );
        let better = sumq2.gt(zero).and(sumqx.mul(sumqx).gt(best.mul(sumq2)));
        let this_d = sumqx.div(sumq2);
        d = V::select(better, this_d, d);
        best = V::select(better, this_d.mul(sumqx), best);
    }
    d.and_not(amax.lt(V::splat(GROUP_MAX_EPS))).to_array()
}

/// Each test compares the dispatched implementation (AVX2 here, NEON on
/// AArch64) and the portable one with the scalar reference.
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
                let (mut ls, mut lp) = ([[0i8; 16]; LANES], [[0i8; 16]; LANES]);
                let s = make_qx_quants_x8(nmax, &x, &w, &mut ls);
                let sp = qx_search::<Portable, 16>(nmax, &x, &w, &mut lp);
                assert_eq!((s.map(f32::to_bits), ls), (sp.map(f32::to_bits), lp), "round {round}");
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
            let sp = iq4_search::<Portable>(&x, &w);
            assert_eq!(s.map(f32::to_bits), sp.map(f32::to_bits), "round {round}");
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
                let mut lp = [[0u8; 32]; LANES];
                let (sp, mp) = qkx2_search::<Portable, 32>(q, &x, &w, &mut lp);
                assert_eq!(
                    (s.map(f32::to_bits), m.map(f32::to_bits), ls),
                    (sp.map(f32::to_bits), mp.map(f32::to_bits), lp),
                    "round {round}"
                );
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
