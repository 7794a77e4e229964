//! [`F32x8`] on AVX2 (`std::arch::x86_64`), and the searches compiled
//! with AVX2 enabled. An [`Avx2`] value exists only inside those entry
//! points, which the dispatcher calls after `is_x86_feature_detected!`.

use super::ops::F32x8;
use super::{iq4_search, qkx2_search, qx_search, Qkx2, L, LANES};
use std::arch::x86_64::*;

#[derive(Clone, Copy)]
struct Avx2(__m256);

// SAFETY (every `unsafe` block below): an `Avx2` is only made inside the
// `#[target_feature(enable = "avx2")]` entry points at the end of this
// file, which run only on CPUs with AVX2.
impl F32x8 for Avx2 {
    #[inline(always)]
    fn splat(v: f32) -> Self {
        Avx2(unsafe { _mm256_set1_ps(v) })
    }
    #[inline(always)]
    fn from_array(a: [f32; 8]) -> Self {
        Avx2(unsafe { _mm256_loadu_ps(a.as_ptr()) })
    }
    #[inline(always)]
    fn to_array(self) -> [f32; 8] {
        let mut a = [0f32; 8];
        unsafe { _mm256_storeu_ps(a.as_mut_ptr(), self.0) };
        a
    }
    #[inline(always)]
    fn add(self, o: Self) -> Self {
        Avx2(unsafe { _mm256_add_ps(self.0, o.0) })
    }
    #[inline(always)]
    fn sub(self, o: Self) -> Self {
        Avx2(unsafe { _mm256_sub_ps(self.0, o.0) })
    }
    #[inline(always)]
    fn mul(self, o: Self) -> Self {
        Avx2(unsafe { _mm256_mul_ps(self.0, o.0) })
    }
    #[inline(always)]
    fn div(self, o: Self) -> Self {
        Avx2(unsafe { _mm256_div_ps(self.0, o.0) })
    }
    #[inline(always)]
    fn abs(self) -> Self {
        Avx2(unsafe { _mm256_and_ps(self.0, _mm256_castsi256_ps(_mm256_set1_epi32(0x7fff_ffff))) })
    }
    #[inline(always)]
    fn neg(self) -> Self {
        Avx2(unsafe { _mm256_xor_ps(self.0, _mm256_set1_ps(-0.0)) })
    }
    #[inline(always)]
    fn gt(self, o: Self) -> Self {
        Avx2(unsafe { _mm256_cmp_ps::<_CMP_GT_OQ>(self.0, o.0) })
    }
    #[inline(always)]
    fn lt(self, o: Self) -> Self {
        Avx2(unsafe { _mm256_cmp_ps::<_CMP_LT_OQ>(self.0, o.0) })
    }
    #[inline(always)]
    fn ge(self, o: Self) -> Self {
        Avx2(unsafe { _mm256_cmp_ps::<_CMP_GE_OQ>(self.0, o.0) })
    }
    #[inline(always)]
    fn le(self, o: Self) -> Self {
        Avx2(unsafe { _mm256_cmp_ps::<_CMP_LE_OQ>(self.0, o.0) })
    }
    #[inline(always)]
    fn eq(self, o: Self) -> Self {
        Avx2(unsafe { _mm256_cmp_ps::<_CMP_EQ_OQ>(self.0, o.0) })
    }
    #[inline(always)]
    fn ne(self, o: Self) -> Self {
        Avx2(unsafe { _mm256_cmp_ps::<_CMP_NEQ_UQ>(self.0, o.0) })
    }
    #[inline(always)]
    fn not_lt(self, o: Self) -> Self {
        Avx2(unsafe { _mm256_cmp_ps::<_CMP_NLT_UQ>(self.0, o.0) })
    }
    #[inline(always)]
    fn and(self, o: Self) -> Self {
        Avx2(unsafe { _mm256_and_ps(self.0, o.0) })
    }
    #[inline(always)]
    fn and_not(self, m: Self) -> Self {
        Avx2(unsafe { _mm256_andnot_ps(m.0, self.0) })
    }
    #[inline(always)]
    fn select(m: Self, a: Self, b: Self) -> Self {
        Avx2(unsafe { _mm256_blendv_ps(b.0, a.0, m.0) })
    }
    #[inline(always)]
    fn any(self) -> bool {
        unsafe { _mm256_movemask_ps(self.0) != 0 }
    }
    #[inline(always)]
    fn nearest_clamped(self, lo: i32, hi: i32) -> Self {
        unsafe {
            let t = _mm256_castps_si256(_mm256_add_ps(self.0, _mm256_set1_ps(12_582_912.0)));
            let l = _mm256_sub_epi32(
                _mm256_and_si256(t, _mm256_set1_epi32(0x007f_ffff)),
                _mm256_set1_epi32(0x0040_0000),
            );
            let c = _mm256_min_epi32(_mm256_max_epi32(l, _mm256_set1_epi32(lo)), _mm256_set1_epi32(hi));
            Avx2(_mm256_cvtepi32_ps(c))
        }
    }
}

/// `make_qkx2_quants` on AVX2 lanes.
///
/// # Safety
/// The CPU must support AVX2.
#[target_feature(enable = "avx2")]
pub unsafe fn qkx2<const N: usize>(
    q: Qkx2,
    x: &[[f32; N]; LANES],
    w: &[[f32; N]; LANES],
    ls: &mut [[u8; N]; LANES],
) -> (L, L) {
    qkx2_search::<Avx2, N>(q, x, w, ls)
}

/// `make_qx_quants` on AVX2 lanes.
///
/// # Safety
/// The CPU must support AVX2.
#[target_feature(enable = "avx2")]
pub unsafe fn qx<const N: usize>(
    nmax: i32,
    x: &[[f32; N]; LANES],
    w: &[[f32; N]; LANES],
    ls: &mut [[i8; N]; LANES],
) -> L {
    qx_search::<Avx2, N>(nmax, x, w, ls)
}

/// IQ4's scale search on AVX2 lanes.
///
/// # Safety
/// The CPU must support AVX2.
#[target_feature(enable = "avx2")]
pub unsafe fn iq4(x: &[[f32; 32]; LANES], w: &[[f32; 32]; LANES]) -> L {
    iq4_search::<Avx2>(x, w)
}
