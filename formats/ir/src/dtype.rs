//! Element types: the plain numeric types every format shares, and ggml's
//! block-quantized types, which store `block_size` elements in
//! `type_size` bytes.

use crate::Error;
use std::fmt;

/// An element type of a tensor.
///
/// Plain types are spelled as safetensors spells them (`F32`, `BF16`,
/// `F8_E4M3`, `BOOL`, …); ggml block types by their ggml names (`Q4_K`, …).
#[allow(non_camel_case_types)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DType {
    F64,
    F32,
    F16,
    BF16,
    F8_E4M3,
    F8_E5M2,
    I64,
    I32,
    I16,
    I8,
    U64,
    U32,
    U16,
    U8,
    Bool,
    // ggml block types
    Q4_0,
    Q4_1,
    Q5_0,
    Q5_1,
    Q8_0,
    Q8_1,
    Q2_K,
    Q3_K,
    Q4_K,
    Q5_K,
    Q6_K,
    Q8_K,
    IQ2_XXS,
    IQ2_XS,
    IQ3_XXS,
    IQ1_S,
    IQ4_NL,
    IQ3_S,
    IQ2_S,
    IQ4_XS,
    IQ1_M,
    TQ1_0,
    TQ2_0,
    MXFP4,
    NVFP4,
    Q1_0,
    Q2_0,
}

/// Every type, in declaration order.
pub const ALL_DTYPES: &[DType] = &[
    DType::F64,
    DType::F32,
    DType::F16,
    DType::BF16,
    DType::F8_E4M3,
    DType::F8_E5M2,
    DType::I64,
    DType::I32,
    DType::I16,
    DType::I8,
    DType::U64,
    DType::U32,
    DType::U16,
    DType::U8,
    DType::Bool,
    DType::Q4_0,
    DType::Q4_1,
    DType::Q5_0,
    DType::Q5_1,
    DType::Q8_0,
    DType::Q8_1,
    DType::Q2_K,
    DType::Q3_K,
    DType::Q4_K,
    DType::Q5_K,
    DType::Q6_K,
    DType::Q8_K,
    DType::IQ2_XXS,
    DType::IQ2_XS,
    DType::IQ3_XXS,
    DType::IQ1_S,
    DType::IQ4_NL,
    DType::IQ3_S,
    DType::IQ2_S,
    DType::IQ4_XS,
    DType::IQ1_M,
    DType::TQ1_0,
    DType::TQ2_0,
    DType::MXFP4,
    DType::NVFP4,
    DType::Q1_0,
    DType::Q2_0,
];

impl DType {
    /// The canonical spelling (safetensors names for plain types, ggml names
    /// for block types).
    pub fn name(self) -> &'static str {
        use DType::*;
        match self {
            F64 => "F64",
            F32 => "F32",
            F16 => "F16",
            BF16 => "BF16",
            F8_E4M3 => "F8_E4M3",
            F8_E5M2 => "F8_E5M2",
            I64 => "I64",
            I32 => "I32",
            I16 => "I16",
            I8 => "I8",
            U64 => "U64",
            U32 => "U32",
            U16 => "U16",
            U8 => "U8",
            Bool => "BOOL",
            Q4_0 => "Q4_0",
            Q4_1 => "Q4_1",
            Q5_0 => "Q5_0",
            Q5_1 => "Q5_1",
            Q8_0 => "Q8_0",
            Q8_1 => "Q8_1",
            Q2_K => "Q2_K",
            Q3_K => "Q3_K",
            Q4_K => "Q4_K",
            Q5_K => "Q5_K",
            Q6_K => "Q6_K",
            Q8_K => "Q8_K",
            IQ2_XXS => "IQ2_XXS",
            IQ2_XS => "IQ2_XS",
            IQ3_XXS => "IQ3_XXS",
            IQ1_S => "IQ1_S",
            IQ4_NL => "IQ4_NL",
            IQ3_S => "IQ3_S",
            IQ2_S => "IQ2_S",
            IQ4_XS => "IQ4_XS",
            IQ1_M => "IQ1_M",
            TQ1_0 => "TQ1_0",
            TQ2_0 => "TQ2_0",
            MXFP4 => "MXFP4",
            NVFP4 => "NVFP4",
            Q1_0 => "Q1_0",
            Q2_0 => "Q2_0",
        }
    }

    /// Parses a type name, case-insensitively (`f16`, `BF16`, `q4_k`, `bool`).
    pub fn from_name(s: &str) -> Option<DType> {
        let up = s.to_ascii_uppercase();
        ALL_DTYPES.iter().copied().find(|d| d.name() == up)
    }

    /// A type as people type it on a command line: a name [`from_name`]
    /// takes, or a usual spelling of a float type (`fp16`, `float16`,
    /// `half`, `bfloat16`, `fp32`, `float32`, `float`, `fp64`, `double`).
    ///
    /// [`from_name`]: DType::from_name
    pub fn from_user(s: &str) -> Option<DType> {
        let alias = match s.to_ascii_lowercase().as_str() {
            "fp16" | "float16" | "half" => Some(DType::F16),
            "bfloat16" => Some(DType::BF16),
            "fp32" | "float32" | "float" => Some(DType::F32),
            "fp64" | "float64" | "double" => Some(DType::F64),
            _ => None,
        };
        alias.or_else(|| DType::from_name(s))
    }

    /// Number of elements stored in one block (1 for plain types).
    pub fn block_size(self) -> u64 {
        use DType::*;
        match self {
            Q4_0 | Q4_1 | Q5_0 | Q5_1 | Q8_0 | Q8_1 | IQ4_NL | MXFP4 => 32,
            Q2_K | Q3_K | Q4_K | Q5_K | Q6_K | Q8_K | IQ2_XXS | IQ2_XS | IQ3_XXS | IQ1_S | IQ3_S | IQ2_S | IQ4_XS
            | IQ1_M | TQ1_0 | TQ2_0 => 256,
            NVFP4 | Q2_0 => 64,
            Q1_0 => 128,
            _ => 1,
        }
    }

    /// Bytes of one block (the element size for plain types).
    pub fn type_size(self) -> u64 {
        use DType::*;
        match self {
            F64 | I64 | U64 => 8,
            F32 | I32 | U32 => 4,
            F16 | BF16 | I16 | U16 => 2,
            F8_E4M3 | F8_E5M2 | I8 | U8 | Bool => 1,
            Q4_0 => 18,
            Q4_1 => 20,
            Q5_0 => 22,
            Q5_1 => 24,
            Q8_0 => 34,
            Q8_1 => 36,
            Q2_K => 84,
            Q3_K => 110,
            Q4_K => 144,
            Q5_K => 176,
            Q6_K => 210,
            Q8_K => 292,
            IQ2_XXS => 66,
            IQ2_XS => 74,
            IQ3_XXS => 98,
            IQ1_S => 50,
            IQ4_NL => 18,
            IQ3_S => 110,
            IQ2_S => 82,
            IQ4_XS => 136,
            IQ1_M => 56,
            TQ1_0 => 54,
            TQ2_0 => 66,
            MXFP4 => 17,
            NVFP4 => 36,
            Q1_0 | Q2_0 => 18,
        }
    }

    /// True for ggml block types.
    pub fn is_quantized(self) -> bool {
        self.block_size() > 1
    }

    /// True for floating-point plain types (the ones a cast applies to).
    pub fn is_float(self) -> bool {
        matches!(
            self,
            DType::F64 | DType::F32 | DType::F16 | DType::BF16 | DType::F8_E4M3 | DType::F8_E5M2
        )
    }

    /// Bytes needed for `n_elements` elements of this type, checked: the
    /// count must fill whole blocks and the product must not overflow.
    pub fn byte_len(self, n_elements: u64) -> Result<u64, Error> {
        let bs = self.block_size();
        if !n_elements.is_multiple_of(bs) {
            return Err(Error::invalid(format!(
                "{n_elements} elements is not a whole number of {} blocks of {bs}",
                self.name()
            )));
        }
        (n_elements / bs)
            .checked_mul(self.type_size())
            .ok_or_else(|| Error::invalid(format!("{n_elements} elements of {self} overflow u64")))
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Number of elements of a shape, overflow-checked. A 0-d shape has one.
pub fn numel(shape: &[u64]) -> Result<u64, Error> {
    shape.iter().try_fold(1u64, |acc, &d| {
        acc.checked_mul(d)
            .ok_or_else(|| Error::invalid(format!("shape {shape:?} has more elements than fit in u64")))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for &d in ALL_DTYPES {
            assert_eq!(DType::from_name(d.name()), Some(d));
            assert_eq!(DType::from_name(&d.name().to_lowercase()), Some(d));
        }
        assert_eq!(DType::from_name("nope"), None);
    }

    #[test]
    fn sizes() {
        assert_eq!(DType::Q4_K.byte_len(512).unwrap(), 288);
        assert_eq!(DType::F32.byte_len(3).unwrap(), 12);
        assert!(DType::Q8_0.byte_len(33).is_err());
        assert!(DType::F64.byte_len(u64::MAX).is_err());
        assert_eq!(numel(&[]).unwrap(), 1);
        assert_eq!(numel(&[3, 0, 5]).unwrap(), 0);
        assert!(numel(&[u64::MAX, 2]).is_err());
    }
}
