//! cargo-fuzz target `hf_files`: the body is `modelconv_fuzzing::hf_files`
//! (shared with the corpus-replay test). See fuzz/README.md.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| modelconv_fuzzing::hf_files(data));
