//! Dequantizers for ggml types we read but do not produce: IQ4_NL, IQ4_XS,
//! TQ1_0, TQ2_0, MXFP4 (identical to ggml's `dequantize_row_*`). Types
//! that need ggml's large lookup grids (IQ1/IQ2/IQ3) are not covered.

use super::f16_value;

/// The 16 non-linear levels of IQ4_NL and IQ4_XS.
const KVALUES_IQ4NL: [i8; 16] = [-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113];
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
