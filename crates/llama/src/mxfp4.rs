//! OpenAI's MXFP4 expert weights (GPT-OSS checkpoints: `*_blocks`, uint8
//! `[experts, rows, blocks, 16]`, and `*_scales`, uint8 `[experts, rows,
//! blocks]`) repacked into ggml's `block_mxfp4` without dequantizing, as
//! GptOssModel.repack_mxfp4 does: per block of 32 values, the E8M0 scale
//! byte, then 16 bytes where byte `j` holds value `j` in its low nibble and
//! value `j + 16` in its high one (the checkpoint packs values `2k` and
//! `2k + 1` into byte `k`). The codes index the same FP4 table on both
//! sides, so only bits move.

use modelconv_ir::{DataSource, Error, Result};
use std::sync::Arc;

/// Bytes of one checkpoint block's codes, and of one ggml block.
pub const CODES: u64 = 16;
pub const BLOCK: u64 = 17;

/// A checkpoint block's 16 code bytes in ggml's order.
pub fn repack_codes(x: &[u8; 16]) -> [u8; 16] {
    let mut out = [0u8; 16];
    for i in 0..8 {
        let (a, b) = (x[i], x[i + 8]);
        out[2 * i] = (a & 0x0F) | (b << 4);
        out[2 * i + 1] = (a >> 4) | (b & 0xF0);
    }
    out
}

/// `n` blocks of codes (`codes`, 16 bytes each) and their scales
/// (`scales`, one byte each) as ggml MXFP4 blocks, computed as read.
pub struct Repack {
    codes: Arc<dyn DataSource>,
    scales: Arc<dyn DataSource>,
    blocks: u64,
}

impl Repack {
    pub fn new(codes: Arc<dyn DataSource>, scales: Arc<dyn DataSource>) -> Result<Repack> {
        let blocks = scales.len();
        if blocks.checked_mul(CODES) != Some(codes.len()) {
            return Err(Error::invalid(format!(
                "MXFP4: {} code bytes for {blocks} scales (16 per block)",
                codes.len()
            )));
        }
        Ok(Repack { codes, scales, blocks })
    }
}

impl DataSource for Repack {
    fn len(&self) -> u64 {
        self.blocks * BLOCK
    }
    fn granule(&self) -> u64 {
        BLOCK
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        if !offset.is_multiple_of(BLOCK) || !(buf.len() as u64).is_multiple_of(BLOCK) {
            return Err(Error::internal("MXFP4 repack read not aligned to blocks"));
        }
        let (first, n) = (offset / BLOCK, buf.len() / BLOCK as usize);
        let mut codes = vec![0u8; n * CODES as usize];
        let mut scales = vec![0u8; n];
        self.codes.read_at(first * CODES, &mut codes)?;
        self.scales.read_at(first, &mut scales)?;
        for ((out, code), scale) in buf
            .chunks_exact_mut(BLOCK as usize)
            .zip(codes.chunks_exact(16))
            .zip(scales)
        {
            out[0] = scale;
            let mut x = [0u8; 16];
            x.copy_from_slice(code);
            out[1..].copy_from_slice(&repack_codes(&x));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_two_k_and_two_k_plus_one_become_j_and_j_plus_16() {
        // Checkpoint: value v in byte v / 2, low nibble when even.
        let values: Vec<u8> = (0..32).map(|v| v % 16).collect();
        let mut x = [0u8; 16];
        for (k, byte) in x.iter_mut().enumerate() {
            *byte = values[2 * k] | (values[2 * k + 1] << 4);
        }
        let out = repack_codes(&x);
        for j in 0..16 {
            assert_eq!(out[j] & 0x0F, values[j], "value {j}");
            assert_eq!(out[j] >> 4, values[j + 16], "value {}", j + 16);
        }
    }
}
