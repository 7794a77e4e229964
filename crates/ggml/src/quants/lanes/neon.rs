//! [`F32x8`] on NEON (`std::arch::aarch64`, part of every AArch64 CPU), as
//! two 4-lane registers.

use super::ops::F32x8;
use std::arch::aarch64::*;

#[derive(Clone, Copy)]
pub struct Neon([float32x4_t; 2]);

impl Neon {
    #[inline(always)]
    fn each(self, o: Self, f: impl Fn(float32x4_t, float32x4_t) -> float32x4_t) -> Self {
        Neon([f(self.0[0], o.0[0]), f(self.0[1], o.0[1])])
    }
    #[inline(always)]
    fn test(self, o: Self, f: impl Fn(float32x4_t, float32x4_t) -> uint32x4_t) -> Self {
        // SAFETY: NEON is part of the AArch64 base architecture.
        self.each(o, |a, b| unsafe { vreinterpretq_f32_u32(f(a, b)) })
    }
    #[inline(always)]
    fn bits(self, o: Self, f: impl Fn(uint32x4_t, uint32x4_t) -> uint32x4_t) -> Self {
        // SAFETY: as above.
        self.each(o, |a, b| unsafe {
            vreinterpretq_f32_u32(f(vreinterpretq_u32_f32(a), vreinterpretq_u32_f32(b)))
        })
    }
}

// SAFETY (every `unsafe` block below): NEON is part of the AArch64 base
// architecture, so its intrinsics run on every CPU this code is built for.
impl F32x8 for Neon {
    #[inline(always)]
    fn splat(v: f32) -> Self {
        let r = unsafe { vdupq_n_f32(v) };
        Neon([r, r])
    }
    #[inline(always)]
    fn from_array(a: [f32; 8]) -> Self {
        unsafe { Neon([vld1q_f32(a.as_ptr()), vld1q_f32(a[4..].as_ptr())]) }
    }
    #[inline(always)]
    fn to_array(self) -> [f32; 8] {
        let mut a = [0f32; 8];
        unsafe {
            vst1q_f32(a.as_mut_ptr(), self.0[0]);
            vst1q_f32(a[4..].as_mut_ptr(), self.0[1]);
        }
        a
    }
    #[inline(always)]
    fn add(self, o: Self) -> Self {
        self.each(o, |a, b| unsafe { vaddq_f32(a, b) })
    }
    #[inline(always)]
    fn sub(self, o: Self) -> Self {
        self.each(o, |a, b| unsafe { vsubq_f32(a, b) })
    }
    #[inline(always)]
    fn mul(self, o: Self) -> Self {
        self.each(o, |a, b| unsafe { vmulq_f32(a, b) })
    }
    #[inline(always)]
    fn div(self, o: Self) -> Self {
        self.each(o, |a, b| unsafe { vdivq_f32(a, b) })
    }
    #[inline(always)]
    fn abs(self) -> Self {
        self.each(self, |a, _| unsafe { vabsq_f32(a) })
    }
    #[inline(always)]
    fn neg(self) -> Self {
        self.each(self, |a, _| unsafe { vnegq_f32(a) })
    }
    #[inline(always)]
    fn gt(self, o: Self) -> Self {
        self.test(o, |a, b| unsafe { vcgtq_f32(a, b) })
    }
    #[inline(always)]
    fn lt(self, o: Self) -> Self {
        self.test(o, |a, b| unsafe { vcltq_f32(a, b) })
    }
    #[inline(always)]
    fn ge(self, o: Self) -> Self {
        self.test(o, |a, b| unsafe { vcgeq_f32(a, b) })
    }
    #[inline(always)]
    fn le(self, o: Self) -> Self {
        self.test(o, |a, b| unsafe { vcleq_f32(a, b) })
    }
    #[inline(always)]
    fn eq(self, o: Self) -> Self {
        self.test(o, |a, b| unsafe { vceqq_f32(a, b) })
    }
    #[inline(always)]
    fn ne(self, o: Self) -> Self {
        self.test(o, |a, b| unsafe { vmvnq_u32(vceqq_f32(a, b)) })
    }
    #[inline(always)]
    fn not_lt(self, o: Self) -> Self {
        self.test(o, |a, b| unsafe { vmvnq_u32(vcltq_f32(a, b)) })
    }
    #[inline(always)]
    fn and(self, o: Self) -> Self {
        self.bits(o, |a, b| unsafe { vandq_u32(a, b) })
    }
    #[inline(always)]
    fn and_not(self, m: Self) -> Self {
        self.bits(m, |a, b| unsafe { vbicq_u32(a, b) })
    }
    #[inline(always)]
    fn select(m: Self, a: Self, b: Self) -> Self {
        unsafe {
            let pick = |i: usize| vbslq_f32(vreinterpretq_u32_f32(m.0[i]), a.0[i], b.0[i]);
            Neon([pick(0), pick(1)])
        }
    }
    #[inline(always)]
    fn any(self) -> bool {
        unsafe {
            vmaxvq_u32(vorrq_u32(
                vreinterpretq_u32_f32(self.0[0]),
                vreinterpretq_u32_f32(self.0[1]),
            )) != 0
        }
    }
    #[inline(always)]
    fn nearest_clamped(self, lo: i32, hi: i32) -> Self {
        self.each(self, |v, _| unsafe {
            let t = vreinterpretq_s32_f32(vaddq_f32(v, vdupq_n_f32(12_582_912.0)));
            let l = vsubq_s32(vandq_s32(t, vdupq_n_s32(0x007f_ffff)), vdupq_n_s32(0x0040_0000));
            vcvtq_f32_s32(vminq_s32(vmaxq_s32(l, vdupq_n_s32(lo)), vdupq_n_s32(hi)))
        })
    }
}
