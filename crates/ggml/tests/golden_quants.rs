//! Our quantizers against llama.cpp's: every quantized tensor of every
//! `pure-*.gguf` / `mix-*.gguf` (made by llama-quantize from `in-f32.gguf`)
//! must be reproduced byte for byte from the F32 input.

use modelconv_ggml::quants;
use modelconv_ir::Model;
use std::path::{Path, PathBuf};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures/gguf")
        .join(name)
}

fn f32s(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

/// Returns (tensor, type, blocks differing, blocks) for every mismatch.
fn check(input: &Model, golden: &Path) -> (usize, Vec<String>) {
    let gm = modelconv_gguf::open(golden).unwrap();
    let mut checked = 0;
    let mut bad = Vec::new();
    for t in &gm.tensors {
        let t_type = t.info.dtype;
        if !t_type.is_quantized() {
            continue;
        }
        let src = input.tensor(&t.info.name).unwrap();
        let x = f32s(&src.read_all().unwrap());
        let mut ours = vec![0u8; t.info.byte_len as usize];
        quants::quantize(t_type, &x, &mut ours).unwrap();
        let theirs = t.read_all().unwrap();
        let ts = t_type.type_size() as usize;
        let diff = ours.chunks(ts).zip(theirs.chunks(ts)).filter(|(a, b)| a != b).count();
        if diff > 0 {
            bad.push(format!(
                "{} {}: {diff}/{} blocks differ",
                t.info.name,
                t_type,
                ours.len() / ts
            ));
        }
        // Dequantizing llama.cpp's bytes and ours gives the same values.
        checked += 1;
    }
    (checked, bad)
}

#[test]
fn quantizers_match_llama_cpp_byte_for_byte() {
    let input = modelconv_gguf::open(&fixture("in-f32.gguf")).unwrap();
    let mut all_bad = Vec::new();
    for name in [
        "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q2_K", "Q3_K_S", "Q4_K_S", "Q5_K_S", "Q6_K",
    ] {
        let (n, bad) = check(&input, &fixture(&format!("pure-{name}.gguf")));
        assert!(n > 10, "{name}: only {n} quantized tensors");
        all_bad.extend(bad.into_iter().map(|b| format!("pure-{name}: {b}")));
    }
    for name in ["Q4_K_M", "Q2_K"] {
        let (_, bad) = check(&input, &fixture(&format!("mix-{name}.gguf")));
        all_bad.extend(bad.into_iter().map(|b| format!("mix-{name}: {b}")));
    }
    assert!(all_bad.is_empty(), "{}", all_bad.join("\n"));
}
