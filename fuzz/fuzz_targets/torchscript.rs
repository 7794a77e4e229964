//! cargo-fuzz target `torchscript`: the body is `modelconv_fuzzing::torchscript`
//! (shared with the corpus-replay test). See fuzz/README.md.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| modelconv_fuzzing::torchscript(data));
