//! cargo-fuzz target `hdf5`: the body is `modelconv_fuzzing::hdf5` (shared
//! with the corpus-replay test). See fuzz/README.md.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| modelconv_fuzzing::hdf5(data));
