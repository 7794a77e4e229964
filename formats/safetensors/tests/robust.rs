//! Every fixture truncated at each byte and with bit flips in its header:
//! an error or a fully readable model, never a panic.

use std::path::{Path, PathBuf};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures/safetensors")
        .join(name)
}

fn open_and_read(path: &Path) {
    if let Ok(m) = modelconv_safetensors::open(path) {
        for t in &m.tensors {
            t.read_all().unwrap();
        }
    }
}

#[test]
fn truncations_never_panic_and_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["all_dtypes.safetensors", "floats.safetensors"] {
        let bytes = std::fs::read(fixture(name)).unwrap();
        for cut in 0..bytes.len() {
            let path = dir.path().join("t.safetensors");
            std::fs::write(&path, &bytes[..cut]).unwrap();
            let err = modelconv_safetensors::open(&path).expect_err("a cut file is incomplete");
            assert!(err.to_string().contains("t.safetensors"), "{err}");
            match err {
                modelconv_ir::Error::Truncated { offset, .. } => assert!(offset <= cut as u64, "cut {cut}: {offset}"),
                other => panic!("{name} cut at {cut}: expected Truncated, got {other:?}"),
            }
        }
    }
}

#[test]
fn header_bit_flips_never_panic() {
    let bytes = std::fs::read(fixture("all_dtypes.safetensors")).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let data_len = (bytes.len() - 8 - n) as u64;
    let mut header = bytes[8..8 + n].to_vec();
    for i in 0..n {
        for bit in 0..8 {
            header[i] ^= 1 << bit;
            if let Ok(h) = modelconv_safetensors::header::parse(&header, data_len) {
                assert!(h.entries.iter().all(|e| e.end <= data_len));
            }
            header[i] ^= 1 << bit;
        }
    }
    // The length field too, through the file reader.
    let dir = tempfile::tempdir().unwrap();
    for i in 0..8 {
        for bit in 0..8 {
            let mut b = bytes.clone();
            b[i] ^= 1 << bit;
            let path = dir.path().join("f.safetensors");
            std::fs::write(&path, &b).unwrap();
            open_and_read(&path);
        }
    }
}
