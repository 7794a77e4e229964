//! ONNX element types and how their bytes become IR tensors.
//!
//! Types the IR has (FLOAT, FLOAT16, INT8, …) keep their bytes unchanged.
//! Packed sub-byte integers (INT4/UINT4/INT2/UINT2) are unpacked to one
//! byte per element, as `onnx.numpy_helper.to_array` does; float types the
//! IR lacks (FLOAT8 *FNUZ, FLOAT4E2M1, FLOAT8E8M0) are decoded exactly to
//! F32; complex numbers become a trailing dimension of 2.

use crate::proto::tensor_proto::DataType;
use crate::proto::TensorProto;
use modelconv_ir::{DType, DataSource, Error, MemSource, Result};
use std::sync::Arc;

/// `TensorProto.DataType` values.
pub mod dt {
    pub const UNDEFINED: i32 = 0;
    pub const FLOAT: i32 = 1;
    pub const UINT8: i32 = 2;
    pub const INT8: i32 = 3;
    pub const UINT16: i32 = 4;
    pub const INT16: i32 = 5;
    pub const INT32: i32 = 6;
    pub const INT64: i32 = 7;
    pub const STRING: i32 = 8;
    pub const BOOL: i32 = 9;
    pub const FLOAT16: i32 = 10;
    pub const DOUBLE: i32 = 11;
    pub const UINT32: i32 = 12;
    pub const UINT64: i32 = 13;
    pub const COMPLEX64: i32 = 14;
    pub const COMPLEX128: i32 = 15;
    pub const BFLOAT16: i32 = 16;
    pub const FLOAT8E4M3FN: i32 = 17;
    pub const FLOAT8E4M3FNUZ: i32 = 18;
    pub const FLOAT8E5M2: i32 = 19;
    pub const FLOAT8E5M2FNUZ: i32 = 20;
    pub const UINT4: i32 = 21;
    pub const INT4: i32 = 22;
    pub const FLOAT4E2M1: i32 = 23;
    pub const FLOAT8E8M0: i32 = 24;
    pub const UINT2: i32 = 25;
    pub const INT2: i32 = 26;
}

/// The ONNX name of a data type (`FLOAT`, `INT4`, …), from the generated enum.
pub fn type_name(t: i32) -> String {
    match DataType::try_from(t) {
        Ok(d) => d.as_str_name().to_string(),
        Err(_) => format!("type {t}"),
    }
}

/// The ONNX type whose bytes are exactly those of an IR type.
pub fn onnx_type_of(d: DType) -> Option<i32> {
    Some(match d {
        DType::F32 => dt::FLOAT,
        DType::F16 => dt::FLOAT16,
        DType::BF16 => dt::BFLOAT16,
        DType::F64 => dt::DOUBLE,
        DType::F8_E4M3 => dt::FLOAT8E4M3FN,
        DType::F8_E5M2 => dt::FLOAT8E5M2,
        DType::I64 => dt::INT64,
        DType::I32 => dt::INT32,
        DType::I16 => dt::INT16,
        DType::I8 => dt::INT8,
        DType::U64 => dt::UINT64,
        DType::U32 => dt::UINT32,
        DType::U16 => dt::UINT16,
        DType::U8 => dt::UINT8,
        DType::Bool => dt::BOOL,
        _ => return None,
    })
}

/// How the stored bytes of an ONNX type map to IR elements.
#[derive(Debug, Clone, Copy)]
pub enum Storage {
    /// Stored bytes are the IR bytes (`size` bytes per element).
    Plain(DType),
    /// `per_byte` packed integers per byte, widened to one byte each.
    Packed { per_byte: u8, signed: bool },
    /// One byte per element, decoded to F32 with this function.
    Decoded(fn(u8) -> f32),
    /// FLOAT4E2M1: two per byte, decoded to F32.
    Fp4,
    /// Complex: pairs of this plain type; the IR gets a trailing dim of 2.
    Complex(DType),
}

impl Storage {
    pub fn of(t: i32) -> Option<Storage> {
        Some(match t {
            dt::INT4 => Storage::Packed {
                per_byte: 2,
                signed: true,
            },
            dt::UINT4 => Storage::Packed {
                per_byte: 2,
                signed: false,
            },
            dt::INT2 => Storage::Packed {
                per_byte: 4,
                signed: true,
            },
            dt::UINT2 => Storage::Packed {
                per_byte: 4,
                signed: false,
            },
            dt::FLOAT8E4M3FNUZ => Storage::Decoded(f8_e4m3fnuz),
            dt::FLOAT8E5M2FNUZ => Storage::Decoded(f8_e5m2fnuz),
            dt::FLOAT8E8M0 => Storage::Decoded(f8_e8m0),
            dt::FLOAT4E2M1 => Storage::Fp4,
            dt::COMPLEX64 => Storage::Complex(DType::F32),
            dt::COMPLEX128 => Storage::Complex(DType::F64),
            _ => Storage::Plain(ir_plain(t)?),
        })
    }

    /// The IR type of the tensor users get.
    pub fn ir_dtype(self) -> DType {
        match self {
            Storage::Plain(d) | Storage::Complex(d) => d,
            Storage::Packed { signed: true, .. } => DType::I8,
            Storage::Packed { signed: false, .. } => DType::U8,
            Storage::Decoded(_) | Storage::Fp4 => DType::F32,
        }
    }

    /// Bytes `numel` elements take in `raw_data`.
    pub fn stored_len(self, numel: u64) -> Option<u64> {
        match self {
            Storage::Plain(d) => numel.checked_mul(d.type_size()),
            Storage::Complex(d) => numel.checked_mul(2 * d.type_size()),
            Storage::Packed { per_byte, .. } => Some(numel.div_ceil(per_byte as u64)),
            Storage::Fp4 => Some(numel.div_ceil(2)),
            Storage::Decoded(_) => Some(numel),
        }
    }

    /// Wraps the stored bytes into a source of IR bytes.
    pub fn source(self, stored: Arc<dyn DataSource>, numel: u64) -> Arc<dyn DataSource> {
        match self {
            Storage::Plain(_) | Storage::Complex(_) => stored,
            Storage::Packed { per_byte, signed } => Arc::new(Unpack {
                inner: stored,
                numel,
                per_byte,
                out_size: 1,
                decode: if signed { Decode::Signed } else { Decode::Unsigned },
            }),
            Storage::Decoded(f) => Arc::new(Unpack {
                inner: stored,
                numel,
                per_byte: 1,
                out_size: 4,
                decode: Decode::F32(f),
            }),
            Storage::Fp4 => Arc::new(Unpack {
                inner: stored,
                numel,
                per_byte: 2,
                out_size: 4,
                decode: Decode::F32(fp4_e2m1),
            }),
        }
    }
}

impl Storage {
    /// The inverse of [`Storage::source`]: stored bytes from IR bytes.
    /// `None` for the decoded float types, which are not re-encoded.
    pub fn stored_from_ir(self, ir: Arc<dyn DataSource>, numel: u64) -> Option<Arc<dyn DataSource>> {
        match self {
            Storage::Plain(_) | Storage::Complex(_) => Some(ir),
            Storage::Packed { per_byte, .. } => Some(Arc::new(Pack {
                inner: ir,
                numel,
                per_byte,
            })),
            Storage::Decoded(_) | Storage::Fp4 => None,
        }
    }
}

/// Packs one-byte integers `per_byte` to a byte, first element in the
/// low bits; values are truncated to the field width.
struct Pack {
    inner: Arc<dyn DataSource>,
    numel: u64,
    per_byte: u8,
}

impl DataSource for Pack {
    fn len(&self) -> u64 {
        self.numel.div_ceil(self.per_byte as u64)
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        if offset.checked_add(buf.len() as u64).is_none_or(|e| e > self.len()) {
            return Err(Error::invalid(format!(
                "read at {offset} past the end of a packed tensor"
            )));
        }
        let pb = self.per_byte as u64;
        let first = offset * pb;
        let last = ((offset + buf.len() as u64) * pb).min(self.numel);
        let mut ir = vec![0u8; (last - first) as usize];
        self.inner.read_at(first, &mut ir)?;
        let bits = 8 / self.per_byte as u32;
        let mask = ((1u16 << bits) - 1) as u8;
        buf.fill(0);
        for (i, v) in ir.iter().enumerate() {
            buf[i / pb as usize] |= (v & mask) << ((i as u64 % pb) as u32 * bits);
        }
        Ok(())
    }
}

fn ir_plain(t: i32) -> Option<DType> {
    Some(match t {
        dt::FLOAT => DType::F32,
        dt::UINT8 => DType::U8,
        dt::INT8 => DType::I8,
        dt::UINT16 => DType::U16,
        dt::INT16 => DType::I16,
        dt::INT32 => DType::I32,
        dt::INT64 => DType::I64,
        dt::BOOL => DType::Bool,
        dt::FLOAT16 => DType::F16,
        dt::DOUBLE => DType::F64,
        dt::UINT32 => DType::U32,
        dt::UINT64 => DType::U64,
        dt::BFLOAT16 => DType::BF16,
        dt::FLOAT8E4M3FN => DType::F8_E4M3,
        dt::FLOAT8E5M2 => DType::F8_E5M2,
        _ => return None,
    })
}

#[derive(Clone, Copy)]
enum Decode {
    Signed,
    Unsigned,
    F32(fn(u8) -> f32),
}

/// Unpacks `per_byte` codes per stored byte into `out_size`-byte elements.
struct Unpack {
    inner: Arc<dyn DataSource>,
    numel: u64,
    per_byte: u8,
    out_size: u64,
    decode: Decode,
}

impl DataSource for Unpack {
    fn len(&self) -> u64 {
        self.numel * self.out_size
    }
    fn granule(&self) -> u64 {
        self.out_size
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        let n = buf.len() as u64;
        if !offset.is_multiple_of(self.out_size)
            || !n.is_multiple_of(self.out_size)
            || offset.checked_add(n).is_none_or(|e| e > self.len())
        {
            return Err(Error::invalid(format!(
                "unaligned or out-of-range read at {offset} of an unpacked tensor"
            )));
        }
        let (first, count) = (offset / self.out_size, n / self.out_size);
        if count == 0 {
            return Ok(());
        }
        let pb = self.per_byte as u64;
        let (b0, b1) = (first / pb, (first + count).div_ceil(pb));
        let mut stored = vec![0u8; (b1 - b0) as usize];
        self.inner.read_at(b0, &mut stored)?;
        let bits = 8 / self.per_byte as u32;
        let mask = ((1u16 << bits) - 1) as u8;
        for (i, out) in buf.chunks_exact_mut(self.out_size as usize).enumerate() {
            let e = first + i as u64;
            let byte = stored[(e / pb - b0) as usize];
            let code = (byte >> ((e % pb) as u32 * bits)) & mask;
            match self.decode {
                Decode::Unsigned => out[0] = code,
                Decode::Signed => out[0] = (((code << (8 - bits)) as i8) >> (8 - bits)) as u8,
                Decode::F32(f) => out.copy_from_slice(&f(code).to_le_bytes()),
            }
        }
        Ok(())
    }
}

/// A float8 "FNUZ" byte (no infinities, no negative zero; 0x80 is NaN)
/// with `mbits` mantissa bits and exponent bias `bias`.
fn f8_fnuz(b: u8, mbits: u32, bias: i32) -> f32 {
    if b == 0x80 {
        return f32::NAN;
    }
    let sign = if b & 0x80 != 0 { -1.0 } else { 1.0 };
    let e = ((b & 0x7F) >> mbits) as i32;
    let m = (b & ((1 << mbits) - 1)) as f32 / (1 << mbits) as f32;
    sign * if e == 0 {
        m * 2f32.powi(1 - bias)
    } else {
        (1.0 + m) * 2f32.powi(e - bias)
    }
}

fn f8_e4m3fnuz(b: u8) -> f32 {
    f8_fnuz(b, 3, 8)
}

fn f8_e5m2fnuz(b: u8) -> f32 {
    f8_fnuz(b, 2, 16)
}

fn f8_e8m0(b: u8) -> f32 {
    if b == 0xFF {
        f32::NAN
    } else {
        2f32.powi(b as i32 - 127)
    }
}

fn fp4_e2m1(n: u8) -> f32 {
    let sign = if n & 8 != 0 { -1.0 } else { 1.0 };
    let (e, m) = (((n >> 1) & 3) as i32, (n & 1) as f32);
    sign * if e == 0 {
        m * 0.5
    } else {
        (1.0 + m / 2.0) * 2f32.powi(e - 1)
    }
}

/// The stored bytes of a tensor kept in its typed fields (`float_data`,
/// `int32_data`, …), laid out as `raw_data` would hold them. `None` when
/// the tensor has no typed data (then it is empty or uses raw/external).
pub fn typed_field_bytes(t: &TensorProto, data_type: i32, stored_len: u64) -> Result<Option<Vec<u8>>> {
    let count_err = |field: &str, got: usize, per: u64| {
        Error::invalid(format!(
            "{field} holds {got} values, the tensor's type and shape need {}",
            stored_len / per
        ))
    };
    // Grown as values are copied: the counts are checked against the
    // shape before anything is, so a lying shape allocates nothing.
    let mut out = Vec::new();
    match data_type {
        dt::FLOAT | dt::COMPLEX64 if !t.float_data.is_empty() => {
            if t.float_data.len() as u64 * 4 != stored_len {
                return Err(count_err("float_data", t.float_data.len(), 4));
            }
            t.float_data
                .iter()
                .for_each(|v| out.extend_from_slice(&v.to_le_bytes()));
        }
        dt::DOUBLE | dt::COMPLEX128 if !t.double_data.is_empty() => {
            if t.double_data.len() as u64 * 8 != stored_len {
                return Err(count_err("double_data", t.double_data.len(), 8));
            }
            t.double_data
                .iter()
                .for_each(|v| out.extend_from_slice(&v.to_le_bytes()));
        }
        dt::INT64 if !t.int64_data.is_empty() => {
            if t.int64_data.len() as u64 * 8 != stored_len {
                return Err(count_err("int64_data", t.int64_data.len(), 8));
            }
            t.int64_data
                .iter()
                .for_each(|v| out.extend_from_slice(&v.to_le_bytes()));
        }
        dt::UINT32 | dt::UINT64 if !t.uint64_data.is_empty() => {
            let size = if data_type == dt::UINT32 { 4 } else { 8 };
            if t.uint64_data.len() as u64 * size != stored_len {
                return Err(count_err("uint64_data", t.uint64_data.len(), size));
            }
            for &v in &t.uint64_data {
                out.extend_from_slice(&v.to_le_bytes()[..size as usize]);
            }
        }
        _ if !t.int32_data.is_empty() => {
            // One element per value, low bits first (a packed byte for the
            // 4- and 2-bit types); 4 bytes each for INT32 itself.
            let size: u64 = match data_type {
                dt::INT32 => 4,
                dt::INT16 | dt::UINT16 | dt::FLOAT16 | dt::BFLOAT16 => 2,
                dt::INT8
                | dt::UINT8
                | dt::BOOL
                | dt::FLOAT8E4M3FN
                | dt::FLOAT8E4M3FNUZ
                | dt::FLOAT8E5M2
                | dt::FLOAT8E5M2FNUZ
                | dt::FLOAT8E8M0
                | dt::INT4
                | dt::UINT4
                | dt::FLOAT4E2M1
                | dt::INT2
                | dt::UINT2 => 1,
                other => {
                    return Err(Error::invalid(format!(
                        "int32_data used for a {} tensor",
                        type_name(other)
                    )))
                }
            };
            if t.int32_data.len() as u64 * size != stored_len {
                return Err(count_err("int32_data", t.int32_data.len(), size));
            }
            for &v in &t.int32_data {
                out.extend_from_slice(&v.to_le_bytes()[..size as usize]);
            }
        }
        _ => return Ok(None),
    }
    Ok(Some(out))
}

/// A stored-bytes source held in memory.
pub fn mem(bytes: Vec<u8>) -> Arc<dyn DataSource> {
    Arc::new(MemSource::new(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unpacks_int4_low_nibble_first_with_sign() {
        let src = Storage::of(dt::INT4).unwrap().source(mem(vec![0x8F, 0x07]), 3);
        let mut out = [0u8; 3];
        src.read_at(0, &mut out).unwrap();
        assert_eq!(out.map(|b| b as i8), [-1, -8, 7]);
        let mut one = [0u8; 1];
        src.read_at(1, &mut one).unwrap();
        assert_eq!(one[0] as i8, -8);
    }

    #[test]
    fn packing_inverts_unpacking() {
        let s = Storage::of(dt::INT4).unwrap();
        let packed = vec![0x8F, 0x07, 0xA5];
        let ir = s.source(mem(packed.clone()), 6);
        let back = s.stored_from_ir(ir, 6).unwrap();
        let mut out = vec![0u8; 3];
        back.read_at(0, &mut out).unwrap();
        assert_eq!(out, packed);
        back.read_at(1, &mut out[..2]).unwrap();
        assert_eq!(out[..2], packed[1..]);
    }

    #[test]
    fn decodes_small_floats() {
        assert_eq!(fp4_e2m1(0b0111), 6.0);
        assert_eq!(fp4_e2m1(0b1001), -0.5);
        assert_eq!(f8_e8m0(127), 1.0);
        assert_eq!(f8_e4m3fnuz(0x40), 1.0);
        assert_eq!(f8_e5m2fnuz(0x40), 1.0);
        assert!(f8_e4m3fnuz(0x80).is_nan());
    }
}
