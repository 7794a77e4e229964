//! # modelconv-ggml
//!
//! ggml's tensor blocks, apart from any container (as ggml is apart from
//! GGUF in llama.cpp):
//!
//! - [`quants`]: quantizers byte-identical to what `ggml_quantize_chunk`
//!   writes (the `quantize_row_*_ref` paths, and with an importance matrix
//!   the weighted `quantize_row_*_impl` ones), for every type
//!   llama-quantize offers; dequantizers identical to `dequantize_row_*`;
//!   lazy sources that apply them chunk by chunk while a writer pulls.
//! - [`imatrix`]: importance matrices in both of llama-imatrix's forms.
//! - [`mix`]: llama.cpp's quantization file types and per-tensor rules
//!   (`llama_tensor_get_type`), tensor order and fallbacks.

pub mod imatrix;
pub mod mix;
pub mod quants;
