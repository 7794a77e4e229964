//! llama.cpp's per-tensor type choice for every file type in the golden
//! manifest (recorded from llama-quantize runs on in-f32.gguf).

use modelconv_ggml::mix::{choose_types, file_type, llama_order, MixOptions, TensorDesc};
use std::path::Path;

#[test]
fn mixes_match_llama_quantize() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/gguf");
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap();
    let model = modelconv_gguf::open(&dir.join("in-f32.gguf")).unwrap();
    let mut tensors: Vec<TensorDesc> = model.tensors.iter().map(|t| TensorDesc::of(&t.info)).collect();
    tensors.sort_by(|a, b| llama_order(&a.name, &b.name));
    let mut failures = Vec::new();
    let mut checked = 0;
    for (kind, pure) in [("mix", false), ("pure", true)] {
        for (ft_name, expected) in manifest[kind].as_object().unwrap() {
            let ft = file_type(ft_name).unwrap_or_else(|| panic!("unknown file type {ft_name}"));
            let opts = MixOptions {
                pure,
                ..Default::default()
            };
            let types = choose_types(ft, &opts, &model.metadata, &tensors).unwrap();
            for (t, ty) in tensors.iter().zip(&types) {
                let want = expected[&t.name].as_str().unwrap();
                checked += 1;
                if ty.name() != want {
                    failures.push(format!("{kind} {ft_name}: {} is {ty}, llama.cpp chose {want}", t.name));
                }
            }
        }
    }
    assert!(checked > 400, "{checked}");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
