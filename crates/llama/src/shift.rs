//! Gemma's norm weights are stored as `w - 1` (its RMSNorm multiplies by
//! `1 + w`); llama.cpp wants `w`. A computed source: the F32 values `x +
//! delta` (1 on the way to GGUF, -1 on the way back), added in the type
//! PyTorch adds in for `convert_hf_to_gguf.py` (F16 stays F16 and rounds
//! there; BF16 is widened to F32 first; F32 adds in F32).

use modelconv_ir::{convert, DType, DataSource, Error, Result};
use std::sync::Arc;

pub struct NormShift {
    inner: Arc<dyn DataSource>,
    from: DType,
    delta: f32,
    n: u64,
}

impl NormShift {
    pub fn new(inner: Arc<dyn DataSource>, from: DType, delta: f32) -> Result<Self> {
        if !matches!(from, DType::F32 | DType::F16 | DType::BF16) {
            return Err(Error::unsupported(format!("norm shift of {from} weights")));
        }
        let n = inner.len() / from.type_size();
        Ok(NormShift { inner, from, delta, n })
    }
}

impl DataSource for NormShift {
    fn len(&self) -> u64 {
        self.n * 4
    }
    fn granule(&self) -> u64 {
        4
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        if !offset.is_multiple_of(4) || !buf.len().is_multiple_of(4) {
            return Err(Error::internal("norm shift read not aligned to elements"));
        }
        let es = self.from.type_size() as usize;
        let mut src = vec![0u8; buf.len() / 4 * es];
        self.inner.read_at(offset / 4 * es as u64, &mut src)?;
        convert(self.from, &src, DType::F32, buf);
        for c in buf.chunks_exact_mut(4) {
            let v = f32::from_le_bytes([c[0], c[1], c[2], c[3]]) + self.delta;
            c.copy_from_slice(&v.to_le_bytes());
        }
        if self.from == DType::F16 {
            let mut half = vec![0u8; buf.len() / 2];
            convert(DType::F32, buf, DType::F16, &mut half);
            convert(DType::F16, &half, DType::F32, buf);
        }
        Ok(())
    }
}
