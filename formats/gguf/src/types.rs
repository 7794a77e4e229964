//! ggml type ids as GGUF stores them, and GGUF metadata value type ids.

use modelconv_ir::{DType, ValueType};

/// ggml's `enum ggml_type`, for the types that can appear in a GGUF file.
/// (Ids 4, 5, 31–33 and 36–38 were removed from ggml and are not valid.)
const GGML_TYPES: &[(u32, DType)] = &[
    (0, DType::F32),
    (1, DType::F16),
    (2, DType::Q4_0),
    (3, DType::Q4_1),
    (6, DType::Q5_0),
    (7, DType::Q5_1),
    (8, DType::Q8_0),
    (9, DType::Q8_1),
    (10, DType::Q2_K),
    (11, DType::Q3_K),
    (12, DType::Q4_K),
    (13, DType::Q5_K),
    (14, DType::Q6_K),
    (15, DType::Q8_K),
    (16, DType::IQ2_XXS),
    (17, DType::IQ2_XS),
    (18, DType::IQ3_XXS),
    (19, DType::IQ1_S),
    (20, DType::IQ4_NL),
    (21, DType::IQ3_S),
    (22, DType::IQ2_S),
    (23, DType::IQ4_XS),
    (24, DType::I8),
    (25, DType::I16),
    (26, DType::I32),
    (27, DType::I64),
    (28, DType::F64),
    (29, DType::IQ1_M),
    (30, DType::BF16),
    (34, DType::TQ1_0),
    (35, DType::TQ2_0),
    (39, DType::MXFP4),
    (40, DType::NVFP4),
    (41, DType::Q1_0),
    (42, DType::Q2_0),
];

pub fn dtype_from_ggml(id: u32) -> Option<DType> {
    GGML_TYPES.iter().find(|(i, _)| *i == id).map(|(_, d)| *d)
}

/// The ggml id of a dtype; `None` for types GGUF cannot hold (unsigned
/// integers, bool, float8).
pub fn ggml_id(dtype: DType) -> Option<u32> {
    GGML_TYPES.iter().find(|(_, d)| *d == dtype).map(|(i, _)| *i)
}

/// GGUF metadata value type ids (`gguf_type`).
const VALUE_TYPES: &[(u32, ValueType)] = &[
    (0, ValueType::U8),
    (1, ValueType::I8),
    (2, ValueType::U16),
    (3, ValueType::I16),
    (4, ValueType::U32),
    (5, ValueType::I32),
    (6, ValueType::F32),
    (7, ValueType::Bool),
    (8, ValueType::String),
    (9, ValueType::Array),
    (10, ValueType::U64),
    (11, ValueType::I64),
    (12, ValueType::F64),
];

pub fn value_type_from_id(id: u32) -> Option<ValueType> {
    VALUE_TYPES.iter().find(|(i, _)| *i == id).map(|(_, t)| *t)
}

pub fn value_type_id(t: ValueType) -> u32 {
    VALUE_TYPES.iter().find(|(_, v)| *v == t).map_or(0, |(i, _)| *i)
}

/// Smallest encoded size of one value of a type (for bounding counts read
/// from a file before allocating).
pub fn min_value_size(t: ValueType) -> u64 {
    match t {
        ValueType::U8 | ValueType::I8 | ValueType::Bool => 1,
        ValueType::U16 | ValueType::I16 => 2,
        ValueType::U32 | ValueType::I32 | ValueType::F32 => 4,
        ValueType::U64 | ValueType::I64 | ValueType::F64 | ValueType::String => 8,
        ValueType::Array => 12,
    }
}
