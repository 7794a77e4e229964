//! GGUF and safetensors header parsers on arbitrary bytes.
//! Run: cargo +nightly fuzz run headers  (seed corpus: fixtures/gguf, fixtures/safetensors)
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = modelconv_gguf::parse(data, std::path::Path::new("fuzz.gguf"));
    if data.len() >= 8 {
        let n = u64::from_le_bytes(data[..8].try_into().unwrap_or_default()) as usize;
        if let Some(json) = data.get(8..8usize.saturating_add(n)) {
            let _ = modelconv_safetensors::header::parse(json, (data.len() - 8 - json.len()) as u64);
        }
    }
});
