//! Eight f32 lanes and the operations the searches are written in, with a
//! portable implementation (plain arrays) that every SIMD one must equal.

/// Eight f32 lanes. Every arithmetic operation is the scalar IEEE f32
/// operation in each lane (no fusing); a comparison gives a lane mask,
/// all bits set where it holds, and is ordered (false on NaN) as Rust's
/// `<`, `>`, `<=`, `>=`, `==` are, except `ne` and `not_lt`, which hold on
/// NaN as `!=` and `!(a < b)` do.
pub trait F32x8: Copy {
    fn splat(v: f32) -> Self;
    fn from_array(a: [f32; 8]) -> Self;
    fn to_array(self) -> [f32; 8];
    fn add(self, o: Self) -> Self;
    fn sub(self, o: Self) -> Self;
    fn mul(self, o: Self) -> Self;
    fn div(self, o: Self) -> Self;
    /// The sign bit cleared (`f32::abs`).
    fn abs(self) -> Self;
    /// The sign bit flipped (unary `-`).
    fn neg(self) -> Self;
    fn gt(self, o: Self) -> Self;
    fn lt(self, o: Self) -> Self;
    fn ge(self, o: Self) -> Self;
    fn le(self, o: Self) -> Self;
    fn eq(self, o: Self) -> Self;
    fn ne(self, o: Self) -> Self;
    fn not_lt(self, o: Self) -> Self;
    /// Bitwise and of two masks, or of a mask and values.
    fn and(self, o: Self) -> Self;
    /// `self`'s bits where mask `m` is clear, zero where it is set.
    fn and_not(self, m: Self) -> Self;
    /// `a` where mask `m` is set, else `b`.
    fn select(m: Self, a: Self, b: Self) -> Self;
    /// Whether mask `self` is set in any lane.
    fn any(self) -> bool;
    /// ggml's `nearest_int` (round half to even through 1.5·2²³, for
    /// |v| < 2²²; other values give what its bit arithmetic gives) clamped
    /// to [lo, hi], as f32.
    fn nearest_clamped(self, lo: i32, hi: i32) -> Self;
}

/// Lane k of column i of eight sub-blocks: `x[k][i]` for each lane k.
#[inline(always)]
pub fn column<V: F32x8, const N: usize>(x: &[[f32; N]; 8], i: usize) -> V {
    V::from_array(std::array::from_fn(|k| x[k][i]))
}

/// Plain arrays: the reference for the SIMD implementations, and what
/// other CPUs run (LLVM vectorizes part of it).
#[derive(Clone, Copy)]
pub struct Portable([f32; 8]);

const SET: f32 = f32::from_bits(u32::MAX);

impl Portable {
    #[inline(always)]
    fn map(self, f: impl Fn(f32) -> f32) -> Self {
        Portable(self.0.map(f))
    }
    #[inline(always)]
    fn zip(self, o: Self, f: impl Fn(f32, f32) -> f32) -> Self {
        Portable(std::array::from_fn(|k| f(self.0[k], o.0[k])))
    }
    #[inline(always)]
    fn test(self, o: Self, f: impl Fn(f32, f32) -> bool) -> Self {
        self.zip(o, |a, b| if f(a, b) { SET } else { 0.0 })
    }
    #[inline(always)]
    fn bits(self, o: Self, f: impl Fn(u32, u32) -> u32) -> Self {
        self.zip(o, |a, b| f32::from_bits(f(a.to_bits(), b.to_bits())))
    }
}

impl F32x8 for Portable {
    #[inline(always)]
    fn splat(v: f32) -> Self {
        Portable([v; 8])
    }
    #[inline(always)]
    fn from_array(a: [f32; 8]) -> Self {
        Portable(a)
    }
    #[inline(always)]
    fn to_array(self) -> [f32; 8] {
        self.0
    }
    #[inline(always)]
    fn add(self, o: Self) -> Self {
        self.zip(o, |a, b| a + b)
    }
    #[inline(always)]
    fn sub(self, o: Self) -> Self {
        self.zip(o, |a, b| a - b)
    }
    #[inline(always)]
    fn mul(self, o: Self) -> Self {
        self.zip(o, |a, b| a * b)
    }
    #[inline(always)]
    fn div(self, o: Self) -> Self {
        self.zip(o, |a, b| a / b)
    }
    #[inline(always)]
    fn abs(self) -> Self {
        self.map(f32::abs)
    }
    #[inline(always)]
    fn neg(self) -> Self {
        self.map(|a| -a)
    }
    #[inline(always)]
    fn gt(self, o: Self) -> Self {
        self.test(o, |a, b| a > b)
    }
    #[inline(always)]
    fn lt(self, o: Self) -> Self {
        self.test(o, |a, b| a < b)
    }
    #[inline(always)]
    fn ge(self, o: Self) -> Self {
        self.test(o, |a, b| a >= b)
    }
    #[inline(always)]
    fn le(self, o: Self) -> Self {
        self.test(o, |a, b| a <= b)
    }
    #[inline(always)]
    fn eq(self, o: Self) -> Self {
        self.test(o, |a, b| a == b)
    }
    #[inline(always)]
    fn ne(self, o: Self) -> Self {
        self.test(o, |a, b| a != b)
    }
    #[inline(always)]
    fn not_lt(self, o: Self) -> Self {
        // True where unordered too (NaN), as `_CMP_NLT_UQ` is.
        self.test(o, |a, b| a.partial_cmp(&b) != Some(std::cmp::Ordering::Less))
    }
    #[inline(always)]
    fn and(self, o: Self) -> Self {
        self.bits(o, |a, b| a & b)
    }
    #[inline(always)]
    fn and_not(self, m: Self) -> Self {
        self.bits(m, |a, b| a & !b)
    }
    #[inline(always)]
    fn select(m: Self, a: Self, b: Self) -> Self {
        Portable(std::array::from_fn(
            |k| if m.0[k].to_bits() != 0 { a.0[k] } else { b.0[k] },
        ))
    }
    #[inline(always)]
    fn any(self) -> bool {
        self.0.iter().any(|m| m.to_bits() != 0)
    }
    #[inline(always)]
    fn nearest_clamped(self, lo: i32, hi: i32) -> Self {
        self.map(|v| crate::quants::kquants::nearest_int(v).clamp(lo, hi) as f32)
    }
}
