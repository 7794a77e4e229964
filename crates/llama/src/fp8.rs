//! FP8 checkpoints (`quantization_config.quant_method = "fp8"`, DeepSeek-V3
//! and its descendants) as `ModelBase.dequant_model` reads them: each
//! `X.weight` stored as float8 with an `X.weight_scale_inv` beside it is
//! `weight.float() * scale`, the scale repeated over `weight_block_size`
//! blocks (the last, partial blocks cut to the weight's shape), or
//! broadcast per row / as a scalar when no block size is given; the scale
//! tensors and the unused activation scales are dropped. The product is
//! an F32 view computed as it is read, one multiplication per element in
//! f32 (torch's order), so memory stays bounded.

use crate::config::Hparams;
use modelconv_ir::{convert, DType, DataSource, Error, Model, Result, Tensor, TensorInfo};
use serde_json::Value as Json;
use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

/// Scales past this many bytes are not a block scale (a 128 × 128 block
/// scale of a 1 TB weight is 256 MiB).
const MAX_SCALE_BYTES: u64 = 256 << 20;

/// The block shape of an FP8 config, `Ok(None)` without one (or for
/// MXFP4 where `mxfp4_ok`); `Err` for a quantization method this build
/// does not read.
fn fp8_blocks(h: &Hparams, mxfp4_ok: bool) -> Result<Option<Option<(u64, u64)>>> {
    let Some(q) = h.get("quantization_config") else {
        return Ok(None);
    };
    let method = q.get("quant_method").and_then(Json::as_str).unwrap_or("");
    if method == "mxfp4" && mxfp4_ok {
        return Ok(None);
    }
    if method != "fp8" {
        return Err(Error::unsupported(format!(
            "config.json: weights pre-quantized with quant_method '{method}'; GGUF conversion dequantizes FP8 \
             (block-scaled) checkpoints and otherwise takes float weights"
        )));
    }
    match q.get("weight_block_size") {
        None | Some(Json::Null) => Ok(Some(None)),
        Some(Json::Array(b)) => match b.as_slice() {
            [r, c] => match (r.as_u64(), c.as_u64()) {
                (Some(r), Some(c)) if r > 0 && c > 0 => Ok(Some(Some((r, c)))),
                _ => Err(Error::invalid(
                    "config.json: weight_block_size must be two positive integers",
                )),
            },
            _ => Err(Error::unsupported(
                "config.json: weight_block_size of other than two dimensions",
            )),
        },
        Some(v) => Err(Error::invalid(format!(
            "config.json: weight_block_size is {v}, expected [rows, cols]"
        ))),
    }
}

/// Replaces each FP8 weight of `model` by its dequantized F32 view and
/// drops the scales, when the config says the checkpoint is FP8; an MXFP4
/// checkpoint is left as it is where `mxfp4_ok` (the architecture repacks
/// it). `Ok(true)`: the config says MXFP4.
pub fn dequantize(model: &mut Model, h: &Hparams, mxfp4_ok: bool) -> Result<bool> {
    let is_mxfp4 = h
        .get("quantization_config")
        .and_then(|q| q.get("quant_method"))
        .and_then(Json::as_str)
        == Some("mxfp4");
    let Some(block) = fp8_blocks(h, mxfp4_ok)? else {
        return Ok(is_mxfp4);
    };
    let mut scales: HashMap<String, Tensor> = HashMap::new();
    let mut kept = Vec::with_capacity(model.tensors.len());
    for t in std::mem::take(&mut model.tensors) {
        let name = t.info.name.as_str();
        if let Some(w) = name.strip_suffix("_scale_inv") {
            scales.insert(w.to_string(), t);
        } else if !(name.ends_with(".activation_scale") || name.ends_with("_activation_scale")) {
            kept.push(t);
        }
    }
    for t in &mut kept {
        if let Some(scale) = scales.remove(&t.info.name) {
            *t = scaled(t, &scale, block)?;
        }
    }
    if let Some(orphan) = scales.keys().next() {
        return Err(Error::invalid(format!(
            "tensor '{orphan}_scale_inv': no weight '{orphan}' beside it"
        )));
    }
    model.tensors = kept;
    Ok(false)
}

/// `w * scale` as an F32 tensor named as `w`.
fn scaled(w: &Tensor, scale: &Tensor, block: Option<(u64, u64)>) -> Result<Tensor> {
    let name = &w.info.name;
    let shape = &w.info.shape;
    let &[rows, cols] = shape.as_slice() else {
        return Err(Error::unsupported(format!(
            "tensor '{name}' {shape:?}: block-scaled FP8 weights are 2-D here"
        )));
    };
    let dequantizable = matches!(
        w.info.dtype,
        DType::F8_E4M3 | DType::F8_E5M2 | DType::BF16 | DType::F16 | DType::F32
    );
    if !dequantizable || !matches!(scale.info.dtype, DType::F32 | DType::BF16 | DType::F16) {
        return Err(Error::unsupported(format!(
            "tensor '{name}' is {} with a {} scale; FP8 dequantization takes float8 weights and float scales",
            w.info.dtype, scale.info.dtype
        )));
    }
    let (block_rows, block_cols, scale_cols) = match block {
        Some((br, bc)) => {
            let want = [rows.div_ceil(br), cols.div_ceil(bc)];
            if scale.info.shape != want {
                return Err(Error::invalid(format!(
                    "tensor '{name}_scale_inv' {:?}: a {rows} x {cols} weight in {br} x {bc} blocks has a {want:?} scale",
                    scale.info.shape
                )));
            }
            (br, bc, want[1])
        }
        None => match scale.info.shape.iter().product::<u64>() {
            1 => (rows.max(1), cols.max(1), 1),
            n if n == rows => (1, cols.max(1), 1),
            _ => {
                return Err(Error::invalid(format!(
                    "tensor '{name}_scale_inv' {:?}: without a block size the scale is one value or one per row",
                    scale.info.shape
                )))
            }
        },
    };
    if scale.info.byte_len > MAX_SCALE_BYTES {
        return Err(Error::invalid(format!(
            "tensor '{name}_scale_inv': {} bytes, past the {MAX_SCALE_BYTES} a block scale can need",
            scale.info.byte_len
        )));
    }
    let src = BlockScaled {
        weight: w.data.clone(),
        dtype: w.info.dtype,
        scale: scale.clone(),
        values: OnceLock::new(),
        cols,
        block_rows,
        block_cols,
        scale_cols,
        len: rows * cols * 4,
    };
    Tensor::new(TensorInfo::new(name.clone(), DType::F32, shape.clone())?, Arc::new(src))
}

/// A weight times its block scale, in F32.
struct BlockScaled {
    weight: Arc<dyn DataSource>,
    dtype: DType,
    scale: Tensor,
    /// The scale as f32, read on first use.
    values: OnceLock<Vec<f32>>,
    cols: u64,
    block_rows: u64,
    block_cols: u64,
    scale_cols: u64,
    len: u64,
}

impl BlockScaled {
    fn values(&self) -> Result<&[f32]> {
        if let Some(v) = self.values.get() {
            return Ok(v);
        }
        let raw = self.scale.read_all()?;
        let mut f32s = vec![0u8; raw.len() / self.scale.info.dtype.type_size() as usize * 4];
        convert(self.scale.info.dtype, &raw, DType::F32, &mut f32s);
        let v = f32s
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        Ok(self.values.get_or_init(|| v))
    }
}

impl DataSource for BlockScaled {
    fn len(&self) -> u64 {
        self.len
    }
    fn granule(&self) -> u64 {
        4
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        if !offset.is_multiple_of(4) || !buf.len().is_multiple_of(4) {
            return Err(Error::internal("FP8 dequantization read not aligned to elements"));
        }
        let scale = self.values()?;
        let es = self.dtype.type_size();
        let (first, n) = (offset / 4, buf.len() / 4);
        let mut raw = vec![0u8; n * es as usize];
        self.weight.read_at(first * es, &mut raw)?;
        convert(self.dtype, &raw, DType::F32, buf);
        for (i, out) in buf.chunks_exact_mut(4).enumerate() {
            let e = first + i as u64;
            let (r, c) = (e / self.cols, e % self.cols);
            let at = (r / self.block_rows) * self.scale_cols + c / self.block_cols;
            let s = scale.get(at as usize).copied().unwrap_or(f32::NAN);
            let v = f32::from_le_bytes([out[0], out[1], out[2], out[3]]) * s;
            out.copy_from_slice(&v.to_le_bytes());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use modelconv_ir::MemSource;

    fn tensor(name: &str, dtype: DType, shape: Vec<u64>, bytes: Vec<u8>) -> Tensor {
        Tensor::new(
            TensorInfo::new(name.to_string(), dtype, shape).unwrap(),
            Arc::new(MemSource::new(bytes)),
        )
        .unwrap()
    }

    #[test]
    fn blocks_repeat_the_scale_and_the_last_ones_are_cut() {
        // 3 x 3 weight of ones (0x38 is 1.0 in e4m3), 2 x 2 blocks: scale 2 x 2.
        let w = tensor("w", DType::F8_E4M3, vec![3, 3], vec![0x38; 9]);
        let s: Vec<u8> = [1.0f32, 2.0, 3.0, 4.0].iter().flat_map(|v| v.to_le_bytes()).collect();
        let s = tensor("w_scale_inv", DType::F32, vec![2, 2], s);
        let out = scaled(&w, &s, Some((2, 2))).unwrap().read_all().unwrap();
        let got: Vec<f32> = out
            .chunks(4)
            .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
            .collect();
        assert_eq!(got, vec![1.0, 1.0, 2.0, 1.0, 1.0, 2.0, 3.0, 3.0, 4.0]);
        let bad = tensor("w_scale_inv", DType::F32, vec![1, 2], vec![0; 8]);
        assert!(scaled(&w, &bad, Some((2, 2))).is_err());
    }
}
