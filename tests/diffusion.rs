//! Diffusion and video checkpoints → GGUF as ComfyUI-GGUF writes them,
//! against its own tools (fixtures/diffusion/reference.json, made by
//! fixtures/diffusion/reference.py): tiny Flux-, SD1-, SDXL- and
//! Wan-shaped checkpoints (fixtures/diffusion/models.json: the real key
//! names and a fixed fill) rebuilt here; `convert` writes the very file
//! tools/convert.py (+ fix_5d_tensors.py for Wan's 5-D weight) writes, and
//! `quantize` gives every tensor the type lcpp.patch's rules give it.
//! diffusers loading the result is the interop suite's.

mod common;
use common::*;
use serde_json::Value as Json;
use std::path::{Path, PathBuf};

fn reference() -> Json {
    serde_json::from_slice(&std::fs::read(fixture("diffusion/reference.json")).unwrap()).unwrap()
}

/// Element k of tensor j, as make_models.py fills it, in the model's type.
fn element(j: u64, k: u64, dtype: &str) -> Vec<u8> {
    let n = ((k * 7919 + j * 104729 + 13) % 255) as f32 - 127.0;
    match dtype {
        "BF16" => (((n / 1024.0).to_bits() >> 16) as u16).to_le_bytes().to_vec(),
        "F16" => half::f16::from_f32(n / 1000.0).to_le_bytes().to_vec(),
        _ => (n / 1000.0).to_le_bytes().to_vec(),
    }
}

/// models.json's model `name` written as a safetensors file in `dir`;
/// `extra` adds tensors (name, shape) after its own.
fn checkpoint(dir: &Path, name: &str, extra: &[(&str, Vec<u64>)]) -> PathBuf {
    let doc: Json = serde_json::from_slice(&std::fs::read(fixture("diffusion/models.json")).unwrap()).unwrap();
    let m = &doc[name];
    let dtype = m["dtype"].as_str().unwrap();
    let mut tensors: Vec<(String, Vec<u64>)> = m["tensors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            let shape = t[1].as_array().unwrap().iter().map(|d| d.as_u64().unwrap()).collect();
            (t[0].as_str().unwrap().to_string(), shape)
        })
        .collect();
    tensors.extend(extra.iter().map(|(n, s)| (n.to_string(), s.clone())));
    let (mut header, mut data) = (serde_json::Map::new(), Vec::new());
    for (j, (tname, shape)) in tensors.iter().enumerate() {
        let start = data.len();
        for k in 0..shape.iter().product::<u64>() {
            data.extend(element(j as u64, k, dtype));
        }
        header.insert(
            tname.clone(),
            serde_json::json!({"dtype": dtype, "shape": shape, "data_offsets": [start, data.len()]}),
        );
    }
    let mut head = serde_json::to_vec(&Json::Object(header)).unwrap();
    while !head.len().is_multiple_of(8) {
        head.push(b' ');
    }
    let path = dir.join(format!("{name}.safetensors"));
    let mut bytes = (head.len() as u64).to_le_bytes().to_vec();
    bytes.extend(head);
    bytes.extend(data);
    std::fs::write(&path, bytes).unwrap();
    path
}

/// Every architecture convert.py detects: the first four as whole tiny
/// models, the others by the keys their rules name.
const MODELS: [&str; 11] = [
    "flux", "sd1", "sdxl", "wan", "sd3", "aura", "hidream", "cosmos", "ltxv", "hyvid", "lumina2",
];

#[test]
fn convert_writes_the_file_convert_py_writes() {
    let dir = tempfile::tempdir().unwrap();
    let want = reference();
    for m in MODELS {
        let src = checkpoint(dir.path(), m, &[]);
        let out = dir.path().join(format!("{m}.gguf"));
        ok(&["-q", "convert", p(&src), p(&out)]);
        let got = sha256_hex(&std::fs::read(&out).unwrap());
        assert_eq!(
            got,
            want["convert_py"][m]["sha256"].as_str().unwrap(),
            "{m}: not convert.py's bytes"
        );
    }
}

/// Names, types and stored shapes of a GGUF's tensors, in file order.
fn types_of(path: &Path) -> Vec<(String, String, Json)> {
    inspect_json(path)["tensors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            let name = t["name"].as_str().unwrap().into();
            (name, t["dtype"].as_str().unwrap().into(), t["shape"].clone())
        })
        .collect()
}

#[test]
fn quantize_gives_each_tensor_the_type_the_patched_llama_quantize_gives() {
    let dir = tempfile::tempdir().unwrap();
    let want = reference();
    for m in MODELS {
        let src = checkpoint(dir.path(), m, &[]);
        let names: Vec<String> = want["convert_py"][m]["tensors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t[0].as_str().unwrap().to_string())
            .collect();
        let shapes = want["lcpp_shapes"][m].as_array().unwrap();
        for (ft, types) in want["lcpp"][m].as_object().unwrap() {
            let out = dir.path().join(format!("{m}-{ft}.gguf"));
            ok(&["-q", "quantize", p(&src), "-o", p(&out), "--type", ft]);
            let expected: Vec<(String, String, Json)> = names
                .iter()
                .zip(types.as_array().unwrap())
                .zip(shapes)
                .map(|((n, t), s)| (n.clone(), t.as_str().unwrap().to_string(), s.clone()))
                .collect();
            assert_eq!(types_of(&out), expected, "{m} {ft}");
        }
    }
}

#[test]
fn a_quantized_sd_file_keeps_its_logical_shapes_and_architecture() {
    let dir = tempfile::tempdir().unwrap();
    let src = checkpoint(dir.path(), "sd1", &[]);
    let out = dir.path().join("sd1.gguf");
    // The per-tensor report, in the documented schema.
    let report = json_doc(
        &["quantize", p(&src), "-o", p(&out), "--type", "Q4_K", "--json"],
        0,
        "quantize",
    );
    assert_eq!(report["mix"], "ComfyUI-GGUF");
    assert!(report["tensors"]
        .as_array()
        .unwrap()
        .iter()
        .any(|t| t["to"] == "Q6_K" && t["name"].as_str().unwrap().ends_with("to_v.weight")));
    let doc = inspect_json(&out);
    assert_eq!(doc["metadata"]["general.architecture"]["value"], "sd1");
    assert_eq!(doc["metadata"]["general.file_type"]["value"], 15);
    let t = doc["tensors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "input_blocks.1.0.in_layers.2.weight")
        .unwrap();
    assert_eq!(t["shape"], serde_json::json!([36, 256]));
    assert_eq!(t["logical_shape"], serde_json::json!([32, 32, 3, 3]));
    assert!(ok(&["inspect", p(&out)]).contains("[32, 32, 3, 3] as [36, 256]"));
    // The prefix and the VAE and text-encoder keys are gone.
    assert!(doc["tensors"]
        .as_array()
        .unwrap()
        .iter()
        .all(|t| !t["name"].as_str().unwrap().contains("model.")));
}

#[test]
fn what_comfyui_gguf_refuses_is_refused_without_output() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("x.gguf");
    // The diffusers layout of Flux (convert.py's keys_banned).
    let diffusers = checkpoint(
        dir.path(),
        "flux",
        &[("transformer_blocks.0.attn.norm_added_k.weight", vec![128])],
    );
    let err = exit_2(&["quantize", p(&diffusers), "-o", p(&out), "--type", "Q8_0"]);
    assert!(
        err.contains("diffusers layout") && err.contains("norm_added_k"),
        "{err}"
    );
    // A name past the 127 bytes ComfyUI's loader takes.
    let long = format!("double_blocks.0.{}.weight", "x".repeat(120));
    let src = checkpoint(dir.path(), "flux", &[(&long, vec![256, 256])]);
    let err = exit_2(&["convert", p(&src), p(&out)]);
    assert!(err.contains("longer than 127") && err.contains(&long), "{err}");
    // A 5-D tensor where convert.py handles none (Flux).
    let src = checkpoint(dir.path(), "flux", &[("img_in3d.weight", vec![4, 4, 1, 2, 2])]);
    let err = exit_2(&["convert", p(&src), p(&out)]);
    assert!(err.contains("img_in3d.weight") && err.contains("5 dimensions"), "{err}");
    // The i-quants, which the patched llama-quantize refuses for image models.
    let src = checkpoint(dir.path(), "sd1", &[]);
    let err = exit_2(&["quantize", p(&src), "-o", p(&out), "--type", "IQ4_XS"]);
    assert!(err.contains("IQ4_XS") && err.contains("image model"), "{err}");
    // convert takes no other type than convert.py's.
    let err = exit_2(&["convert", p(&src), p(&out), "--dtype", "Q8_0"]);
    assert!(err.contains("modelconv quantize --type"), "{err}");
    assert!(!out.exists());
}

/// A convert.py F16/BF16 GGUF quantizes as the patched llama-quantize
/// quantizes it: the same file as quantizing the checkpoint in one step.
#[test]
fn quantizing_convert_py_s_gguf_equals_the_one_step() {
    let dir = tempfile::tempdir().unwrap();
    let src = checkpoint(dir.path(), "sdxl", &[]);
    let (f16, one, two) = (
        dir.path().join("f16.gguf"),
        dir.path().join("one.gguf"),
        dir.path().join("two.gguf"),
    );
    ok(&["-q", "convert", p(&src), p(&f16)]);
    ok(&["-q", "quantize", p(&src), "-o", p(&one), "--type", "Q5_K_M"]);
    ok(&["-q", "quantize", p(&f16), "-o", p(&two), "--type", "Q5_K_M"]);
    assert_eq!(std::fs::read(&one).unwrap(), std::fs::read(&two).unwrap());
}

/// `--target sd.cpp`: stable-diffusion.cpp's convert — names as they are
/// (the prefix too), no metadata, biases, scales, embedders and rows that
/// do not fill a block kept in their loaded type, a 5-D weight as 4-D.
#[test]
fn the_sd_cpp_target_follows_stable_diffusion_cpp_s_convert() {
    let dir = tempfile::tempdir().unwrap();
    let types = |m: &str| -> std::collections::HashMap<String, (String, Json)> {
        let src = checkpoint(dir.path(), m, &[]);
        let out = dir.path().join(format!("{m}-sdcpp.gguf"));
        ok(&[
            "-q",
            "quantize",
            p(&src),
            "-o",
            p(&out),
            "--type",
            "Q4_0",
            "--target",
            "sd.cpp",
        ]);
        let doc = inspect_json(&out);
        assert_eq!(doc["metadata"], serde_json::json!({}), "{m}: sd.cpp writes no metadata");
        doc["tensors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| {
                let name = t["name"].as_str().unwrap().to_string();
                (name, (t["dtype"].as_str().unwrap().to_string(), t["shape"].clone()))
            })
            .collect()
    };
    let wan = types("wan");
    let q = |n: &str| wan[n].0.clone();
    assert_eq!(q("blocks.0.self_attn.q.weight"), "Q4_0");
    assert_eq!(q("blocks.0.self_attn.q.bias"), "BF16");
    assert_eq!(q("blocks.0.self_attn.norm_q.weight"), "Q4_0");
    assert_eq!(q("text_embedding.0.weight"), "BF16");
    assert_eq!(wan["patch_embedding.weight"].1, serde_json::json!([4096, 1, 2, 2]));
    assert_eq!(wan["patch_embedding.weight"].0, "BF16"); // rows of 2
    assert_eq!(wan["blocks.0.modulation"].1, serde_json::json!([6, 256]));
    let flux = types("flux");
    assert_eq!(flux["img_in.weight"].0, "BF16");
    assert_eq!(flux["double_blocks.0.img_attn.qkv.weight"].0, "Q4_0");
    let sd1 = types("sd1");
    assert!(sd1.contains_key("model.diffusion_model.input_blocks.3.0.op.weight"));
    assert!(sd1.contains_key("first_stage_model.decoder.conv_in.weight"));
    assert_eq!(sd1["model.diffusion_model.time_embed.0.weight"].0, "F32");
}

/// The same checkpoint sharded (an index and its files) or as a PyTorch
/// file quantizes to the same GGUF as the single safetensors file.
#[test]
fn sharded_and_pytorch_checkpoints_quantize_alike() {
    let dir = tempfile::tempdir().unwrap();
    let src = checkpoint(dir.path(), "sd1", &[]);
    let shards = dir.path().join("shards");
    std::fs::create_dir(&shards).unwrap();
    ok(&[
        "-q",
        "convert",
        p(&src),
        p(&shards.join("model.safetensors")),
        "--max-shard-size",
        "1MB",
    ]);
    assert!(shards.join("model.safetensors.index.json").exists());
    let pt = dir.path().join("sd1.pt");
    ok(&["-q", "convert", p(&src), p(&pt)]);
    let quantized = |input: &Path, name: &str| {
        let out = dir.path().join(name);
        ok(&["-q", "quantize", p(input), "-o", p(&out), "--type", "Q6_K"]);
        std::fs::read(out).unwrap()
    };
    let one = quantized(&src, "one.gguf");
    assert_eq!(quantized(&shards, "sharded.gguf"), one);
    assert_eq!(quantized(&pt, "pt.gguf"), one);
}
