//! cargo-fuzz target `pickle_vm`: the body is `modelconv_fuzzing::pickle_vm` (shared
//! with the corpus-replay test). See fuzz/README.md.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| modelconv_fuzzing::pickle_vm(data));
