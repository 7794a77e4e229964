//! Every fixture truncated at many lengths and with bit flips: the reader
//! returns an error or a model whose every tensor reads back, never panics.

use std::path::{Path, PathBuf};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures/gguf")
        .join(name)
}

/// Parses `bytes` as a GGUF header; if accepted, every tensor must lie in range.
fn check(bytes: &[u8]) {
    if let Ok(parsed) = modelconv_gguf::parse(bytes, Path::new("mem.gguf")) {
        for (info, off) in &parsed.tensors {
            assert!(
                parsed.data_start + off + info.byte_len <= bytes.len() as u64,
                "{}",
                info.name
            );
        }
    }
}

#[test]
fn truncations_and_bit_flips_never_panic() {
    for name in ["gguf_py_types.gguf", "mix-Q4_K_M.gguf", "pure-Q6_K.gguf"] {
        let bytes = std::fs::read(fixture(name)).unwrap();
        let header_len = modelconv_gguf::parse(&bytes, Path::new(name)).unwrap().data_start as usize;
        // Every cut in the header, then strides through the data.
        let cuts = (0..=header_len).chain((header_len..bytes.len()).step_by(997));
        for cut in cuts {
            check(&bytes[..cut]);
        }
        let mut flipped = bytes.clone();
        for i in 0..header_len {
            for bit in 0..8 {
                flipped[i] ^= 1 << bit;
                check(&flipped);
                flipped[i] ^= 1 << bit;
            }
        }
    }
}

#[test]
fn truncated_files_open_with_errors_not_panics() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(fixture("gguf_py_types.gguf")).unwrap();
    let parsed = modelconv_gguf::parse(&bytes, Path::new("x")).unwrap();
    // Past the last tensor there is only padding, which may be cut.
    let end = parsed
        .tensors
        .iter()
        .map(|(i, o)| parsed.data_start + o + i.byte_len)
        .max()
        .unwrap();
    for cut in 0..end as usize {
        let path = dir.path().join("t.gguf");
        std::fs::write(&path, &bytes[..cut]).unwrap();
        let err = modelconv_gguf::open(&path).expect_err("a cut file is incomplete");
        assert!(err.to_string().contains("t.gguf"), "{err}");
        // Named by its variant, with where the missing part starts.
        match err {
            modelconv_ir::Error::Truncated { offset, .. } => assert!(offset <= end, "cut {cut}: offset {offset}"),
            other => panic!("cut at {cut}: expected Truncated, got {other:?}"),
        }
    }
}
