//! ONNX end to end: extraction, template fill, external data and its
//! escapes, the fp16 rewrite, weight-only quantization, inspect.

mod common;
use common::*;
use modelconv_onnx::proto::{tensor_proto, ModelProto, StringStringEntryProto};
use modelconv_onnx::OnnxFile;
use prost::Message;
use std::path::Path;

fn model_proto(path: &Path) -> ModelProto {
    ModelProto::decode(std::fs::read(path).unwrap().as_slice()).unwrap()
}

#[test]
fn extracted_weights_fill_the_template_back_byte_for_byte() {
    let tmp = tempfile::tempdir().unwrap();
    let gpt = fixture("onnx/gpt_tiny.onnx");
    let w = tmp.path().join("w.safetensors");
    ok(&["convert", p(&gpt), p(&w)]);
    let j = inspect_json(&w);
    assert_eq!(j["tensors"].as_array().unwrap().len(), 21);
    let out = tmp.path().join("filled.onnx");
    ok(&["convert", p(&w), p(&out), "--template", p(&gpt)]);
    assert_eq!(std::fs::read(&out).unwrap(), std::fs::read(&gpt).unwrap());
    // Through GGUF and .pt too (lossless paths).
    for ext in ["gguf", "pt"] {
        let mid = tmp.path().join(format!("w.{ext}"));
        ok(&["convert", p(&w), p(&mid)]);
        let back = tmp.path().join(format!("from_{ext}.onnx"));
        ok(&["convert", p(&mid), p(&back), "--template", p(&gpt)]);
        assert_eq!(std::fs::read(&back).unwrap(), std::fs::read(&gpt).unwrap(), "{ext}");
    }
}

/// Initializers a template keeps in typed fields (float_data, int32_data,
/// int64_data, double_data, uint64_data; fixtures/onnx/types.onnx, every
/// type both ways) get the weights written back there: filling the
/// template with its own extracted values gives its bytes. The 8- and
/// 4-bit floats (read as F32) are left out and kept by --allow-missing.
#[test]
fn a_template_keeps_each_initializers_encoding() {
    let tmp = tempfile::tempdir().unwrap();
    let types = fixture("onnx/types.onnx");
    let w = tmp.path().join("w.safetensors");
    ok(&["-q", "convert", p(&types), p(&w), "--exclude", "float8|float4"]);
    let out = tmp.path().join("filled.onnx");
    ok(&[
        "-q",
        "convert",
        p(&w),
        p(&out),
        "--template",
        p(&types),
        "--allow-missing",
    ]);
    assert_eq!(std::fs::read(&out).unwrap(), std::fs::read(&types).unwrap());
}

#[test]
fn template_mismatches_are_listed_and_nothing_is_written() {
    let tmp = tempfile::tempdir().unwrap();
    let fp32 = fixture("onnx/fp32.onnx");
    let out = tmp.path().join("out.onnx");
    let (code, err) = stderr_of(&[
        "convert",
        p(&fixture("onnx/fp16_kio1.onnx")),
        p(&out),
        "--template",
        p(&fp32),
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("2 with another dtype or shape") && err.contains("'W': template F32 [256, 256]"),
        "{err}"
    );
    assert!(err.contains("'bias'"), "{err}");
    // Missing tensors: refused, or kept from the template with --allow-missing.
    let w = tmp.path().join("w.safetensors");
    ok(&["convert", p(&fp32), p(&w), "--exclude", "bias"]);
    let (code, err) = stderr_of(&["convert", p(&w), p(&out), "--template", p(&fp32)]);
    assert_eq!(code, 2);
    assert!(
        err.contains("1 missing from the weights") && err.contains("'bias'"),
        "{err}"
    );
    assert!(!out.exists());
    ok(&["convert", p(&w), p(&out), "--template", p(&fp32), "--allow-missing"]);
    assert_eq!(std::fs::read(&out).unwrap(), std::fs::read(&fp32).unwrap());
    // Tensors the template has no place for.
    let g = tmp.path().join("g.safetensors");
    ok(&["convert", p(&fixture("onnx/gpt_tiny.onnx")), p(&g)]);
    let (code, err) = stderr_of(&["convert", p(&g), p(&tmp.path().join("x.onnx")), "--template", p(&fp32)]);
    assert_eq!(code, 2);
    assert!(
        err.contains("not in the template") && err.contains("'wte.weight'"),
        "{err}"
    );
    // ONNX-only flags elsewhere are a usage error.
    let (code, err) = stderr_of(&["convert", p(&w), p(&tmp.path().join("z.gguf")), "--template", p(&fp32)]);
    assert_eq!(code, 2);
    assert!(err.contains("--template applies to onnx output"), "{err}");
    // No template, no graph.
    let (code, err) = stderr_of(&["convert", p(&w), p(&tmp.path().join("y.onnx"))]);
    assert_eq!(code, 2);
    assert!(err.contains("--template"), "{err}");
    assert_eq!(dir_names(tmp.path()), ["g.safetensors", "out.onnx", "w.safetensors"]);
}

/// fp32.onnx with W moved to external data at `location`.
fn with_external(dir: &Path, location: &str, offset: u64, length: u64) -> std::path::PathBuf {
    let mut m = model_proto(&fixture("onnx/fp32.onnx"));
    let w = &mut m.graph.as_mut().unwrap().initializer[0];
    w.raw_data = None;
    let kv = |k: &str, v: String| StringStringEntryProto {
        key: Some(k.into()),
        value: Some(v),
    };
    w.external_data = vec![
        kv("location", location.into()),
        kv("offset", offset.to_string()),
        kv("length", length.to_string()),
    ];
    w.data_location = Some(tensor_proto::DataLocation::External as i32);
    let path = dir.join("model.onnx");
    std::fs::write(&path, m.encode_to_vec()).unwrap();
    path
}

#[test]
fn external_data_paths_cannot_leave_the_model_folder() {
    let tmp = tempfile::tempdir().unwrap();
    let outside = tmp.path().join("outside.bin");
    std::fs::write(&outside, vec![0u8; 262144 + 8192]).unwrap();
    let models = tmp.path().join("models");
    std::fs::create_dir(&models).unwrap();
    std::fs::write(models.join("w.bin"), vec![0u8; 262144 + 4096]).unwrap();
    std::os::unix::fs::symlink(&outside, models.join("link.bin")).unwrap();
    let abs = outside.to_str().unwrap().to_string();
    let cases: [(&str, u64, &str); 6] = [
        ("../outside.bin", 0, "leaves the model's folder"),
        (&abs, 0, "leaves the model's folder"),
        ("sub/../../outside.bin", 0, "leaves the model's folder"),
        ("link.bin", 0, "outside the model's folder"),
        ("w.bin", 8192, "past the end"),
        ("missing.bin", 0, "missing.bin"),
    ];
    for (loc, offset, msg) in cases {
        let m = with_external(&models, loc, offset, 262144);
        for cmd in [
            vec!["inspect", p(&m)],
            vec!["convert", p(&m), p(&tmp.path().join("o.safetensors"))],
        ] {
            let (code, err) = stderr_of(&cmd);
            assert_eq!(code, 2, "{loc}: {err}");
            assert!(err.contains(msg) && err.contains("model.onnx"), "{loc}: {err}");
        }
        assert!(!tmp.path().join("o.safetensors").exists());
    }
    // Inside the folder, at an offset: read.
    let m = with_external(&models, "w.bin", 4096, 262144);
    ok(&["convert", p(&m), p(&tmp.path().join("o.safetensors"))]);
    let (code, err) = stderr_of(&["inspect", p(&with_external(&models, "w.bin", 0, 1000))]);
    assert_eq!(code, 2);
    assert!(err.contains("gives 1000 bytes") && err.contains("'W'"), "{err}");
}

#[test]
fn external_data_output_is_beside_the_model_and_aligned() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("m.onnx");
    ok(&["convert", p(&fixture("onnx/gpt_tiny.onnx")), p(&out), "--external-data"]);
    assert_eq!(dir_names(tmp.path()), ["m.onnx", "m.onnx.data"]);
    let j = inspect_json(&out);
    let rows = j["details"]["value"]["initializers"].as_array().unwrap();
    for r in rows {
        let big = r["bytes"].as_u64().unwrap() >= 1024;
        assert_eq!(r["storage"], if big { "external" } else { "raw_data" }, "{r}");
    }
    for t in j["tensors"].as_array().unwrap() {
        if t["bytes"].as_u64().unwrap() >= 1024 {
            assert_eq!(t["offset"].as_u64().unwrap() % 4096, 0, "{t}");
        }
    }
    // Embedded again, it is the original file.
    let back = tmp.path().join("back.onnx");
    ok(&["convert", p(&out), p(&back)]);
    assert_eq!(
        std::fs::read(&back).unwrap(),
        std::fs::read(fixture("onnx/gpt_tiny.onnx")).unwrap()
    );
}

#[test]
fn fp16_rewrite_keeps_io_types_and_clamps() {
    let tmp = tempfile::tempdir().unwrap();
    // fp32.onnx with values outside float16's range.
    let mut m = model_proto(&fixture("onnx/fp32.onnx"));
    let w = &mut m.graph.as_mut().unwrap().initializer[0];
    let mut raw = w.raw_data.clone().unwrap().to_vec();
    raw[0..4].copy_from_slice(&1e6f32.to_le_bytes());
    raw[4..8].copy_from_slice(&(-7e4f32).to_le_bytes());
    raw[8..12].copy_from_slice(&1e-9f32.to_le_bytes());
    w.raw_data = Some(raw.into());
    let src = tmp.path().join("big.onnx");
    std::fs::write(&src, m.encode_to_vec()).unwrap();
    let out = tmp.path().join("h.onnx");
    let (code, err) = stderr_of(&["convert", p(&src), p(&out), "--dtype", "F16"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("3 values clamped") && err.contains("2 overflowed") && err.contains("1 below"),
        "{err}"
    );
    let f = OnnxFile::open(&out).unwrap();
    let g = f.graph();
    let io_type = |v: &modelconv_onnx::proto::ValueInfoProto| match v.r#type.as_ref().unwrap().value.as_ref().unwrap() {
        modelconv_onnx::proto::type_proto::Value::TensorType(t) => t.elem_type.unwrap(),
        _ => 0,
    };
    assert_eq!(io_type(&g.input[0]), 1);
    assert_eq!(io_type(&g.output[0]), 1);
    let ops: Vec<&str> = g.node.iter().map(|n| n.op_type.as_deref().unwrap()).collect();
    assert_eq!(ops, ["Cast", "MatMul", "Add", "Cast"]);
    assert_eq!(g.node[3].output[0], "Y");
    let (inits, _) = f.tensors(false).unwrap();
    assert!(inits.iter().all(|i| i.data_type == 10));
    let w = inits[0].tensor.read_all().unwrap();
    let h = |i: usize| half::f16::from_le_bytes([w[2 * i], w[2 * i + 1]]).to_f32();
    assert_eq!((h(0), h(1), h(2)), (65504.0, -65504.0, 5.9604645e-8));
    // Without keep-io-types the graph's inputs are float16 too.
    let out2 = tmp.path().join("h2.onnx");
    ok(&["convert", p(&src), p(&out2), "--dtype", "F16", "--keep-io-types=false"]);
    let f2 = OnnxFile::open(&out2).unwrap();
    assert_eq!(io_type(&f2.graph().input[0]), 10);
    assert_eq!(f2.graph().node.len(), 2);
    // Other casts to ONNX are refused with a pointer to what works.
    let (code, err) = stderr_of(&["convert", p(&src), p(&tmp.path().join("b.onnx")), "--dtype", "BF16"]);
    assert_eq!(code, 2);
    assert!(err.contains("--dtype F16") && err.contains("quantize"), "{err}");
}

#[test]
fn fp16_rewrite_wraps_float32_only_ops_in_casts() {
    let tmp = tempfile::tempdir().unwrap();
    // X -> TopK(K) -> values (float) -> Add(bias) -> Y
    let mut m = model_proto(&fixture("onnx/fp32.onnx"));
    let g = m.graph.as_mut().unwrap();
    let mut k = g.initializer[1].clone();
    k.name = Some("K".into());
    k.data_type = Some(7);
    k.dims = vec![1];
    k.raw_data = Some(256i64.to_le_bytes().to_vec().into());
    g.initializer.push(k);
    g.node[0].op_type = Some("TopK".into());
    g.node[0].input = vec!["X".into(), "K".into()];
    g.node[0].output = vec!["XW".into(), "idx".into()];
    let src = tmp.path().join("topk.onnx");
    std::fs::write(&src, m.encode_to_vec()).unwrap();
    let out = tmp.path().join("h.onnx");
    ok(&["convert", p(&src), p(&out), "--dtype", "F16"]);
    let f = OnnxFile::open(&out).unwrap();
    let nodes: Vec<(String, Vec<String>, Vec<String>)> = f
        .graph()
        .node
        .iter()
        .map(|n| (n.op_type.clone().unwrap(), n.input.clone(), n.output.clone()))
        .collect();
    let topk = nodes.iter().position(|n| n.0 == "TopK").unwrap();
    // Its float input comes from a Cast to float32, its float output goes back through a Cast to float16.
    let cast_in = nodes.iter().find(|n| n.2[0] == nodes[topk].1[0]).unwrap();
    assert_eq!(cast_in.0, "Cast");
    assert_eq!(nodes[topk].1[1], "K");
    let cast_out = &nodes[topk + 1];
    assert_eq!(
        (cast_out.0.as_str(), &cast_out.1[0], &cast_out.2[0]),
        ("Cast", &nodes[topk].2[0], &"XW".to_string())
    );
}

#[test]
fn onnx_quantization_shrinks_the_model_and_says_how() {
    let tmp = tempfile::tempdir().unwrap();
    let gpt = fixture("onnx/gpt_tiny.onnx");
    let out = tmp.path().join("q8.onnx");
    let j: serde_json::Value =
        serde_json::from_str(&ok(&["quantize", p(&gpt), "-o", p(&out), "--type", "INT8", "--json"])).unwrap();
    assert_eq!(
        (
            j["details"]["opset_before"].as_i64(),
            j["details"]["opset_after"].as_i64()
        ),
        (Some(17), Some(21))
    );
    // MatMul weights, and the Gather tables (token and position embeddings) by default.
    let rows = j["tensors"].as_array().unwrap();
    assert_eq!(rows.len(), 11);
    assert_eq!(rows.iter().filter(|r| r["op"] == "Gather").count(), 2);
    assert!(
        rows.iter().all(|r| r["scheme"]
            == if r["op"] == "Gather" {
                "DequantizeLinear axis=1 block_size=32"
            } else {
                "DequantizeLinear axis=0 block_size=32"
            }),
        "{rows:?}"
    );
    assert_eq!((j["type"].as_str(), j["mix"].as_str()), (Some("INT8"), Some("onnx")));
    let plain = tmp.path().join("q8-plain.onnx");
    let jp: serde_json::Value = serde_json::from_str(&ok(&[
        "quantize",
        p(&gpt),
        "-o",
        p(&plain),
        "--type",
        "INT8",
        "--no-embeddings",
        "--json",
    ]))
    .unwrap();
    assert_eq!(jp["tensors"].as_array().unwrap().len(), 9);
    assert!(jp["file_bytes_after"].as_u64() > j["file_bytes_after"].as_u64());
    assert!(rows.iter().all(|r| r["relative_rmse"].as_f64().unwrap() < 0.01));
    assert!(j["file_bytes_after"].as_u64().unwrap() * 10 < j["file_bytes_before"].as_u64().unwrap() * 6);
    let s = inspect_json(&out);
    assert_eq!(s["details"]["value"]["ops"]["DequantizeLinear"], 11);
    assert_eq!(s["details"]["value"]["ir_version"], 10);

    // Kept at opset 17: per-channel INT8, MatMulNBits INT4.
    let out4 = tmp.path().join("q4.onnx");
    let j: serde_json::Value = serde_json::from_str(&ok(&[
        "quantize",
        p(&gpt),
        "-o",
        p(&out4),
        "--type",
        "INT4",
        "--keep-opset",
        "--embeddings",
        "--json",
    ]))
    .unwrap();
    assert_eq!(j["details"]["opset_after"], 17);
    let rows = j["tensors"].as_array().unwrap();
    assert!(
        rows.iter().all(|r| r["scheme"] == "MatMulNBits bits=4 block_size=32"),
        "{rows:?}"
    );
    let skipped = j["unchanged"].as_array().unwrap();
    assert!(skipped
        .iter()
        .any(|s| s["name"] == "wte.weight" && s["reason"].as_str().unwrap().contains("opset 21")));
    let s = inspect_json(&out4);
    assert_eq!(s["details"]["value"]["ops"]["com.microsoft.MatMulNBits"], 9);
    assert!(s["details"]["value"]["opsets"]
        .as_array()
        .unwrap()
        .iter()
        .any(|o| o["domain"] == "com.microsoft"));

    let j: serde_json::Value = serde_json::from_str(&ok(&[
        "quantize",
        p(&gpt),
        "-o",
        p(&tmp.path().join("pc.onnx")),
        "--type",
        "INT8",
        "--block-size",
        "0",
        "--json",
    ]))
    .unwrap();
    assert!(j["tensors"].as_array().unwrap().iter().all(|r| r["scheme"]
        == if r["op"] == "Gather" {
            "DequantizeLinear per-channel axis=0"
        } else {
            "DequantizeLinear per-channel axis=1"
        }));
    assert_eq!(j["details"]["opset_after"], 17);

    // Per-channel INT4 needs opset 21 (MatMulNBits is blocked only).
    let x = tmp.path().join("x.onnx");
    let args = [
        "quantize",
        p(&gpt),
        "-o",
        p(&x),
        "--type",
        "INT4",
        "--block-size",
        "0",
        "--keep-opset",
    ];
    let (code, err) = stderr_of(&args);
    assert_eq!(code, 2);
    assert!(err.contains("INT4 for MatMul needs opset 21"), "{err}");
    assert!(!x.exists());
    let (code, err) = stderr_of(&[
        "quantize",
        p(&gpt),
        "-o",
        p(&tmp.path().join("x.onnx")),
        "--type",
        "INT4",
        "--block-size",
        "24",
    ]);
    assert_eq!(code, 2);
    assert!(err.contains("power of two"), "{err}");
    // A llama.cpp type is not an ONNX rewrite: the initializers go to GGUF
    // through the generic pipeline.
    let g = tmp.path().join("gpt-q4.gguf");
    ok(&["quantize", p(&gpt), "--type", "Q4_K_M", "-o", p(&g)]);
    assert_eq!(&std::fs::read(&g).unwrap()[..4], b"GGUF");
}

#[test]
fn inspect_shows_the_graph() {
    let j = inspect_json(&fixture("onnx/gpt_tiny.onnx"));
    let o = &j["details"]["value"];
    assert_eq!(o["ir_version"], 8);
    assert_eq!(o["producer"], "pytorch 2.15.0");
    assert_eq!(o["opsets"][0]["version"], 17);
    assert_eq!(o["inputs"][0]["name"], "idx");
    assert_eq!(o["inputs"][0]["type"], "INT64");
    assert_eq!(o["inputs"][0]["shape"], serde_json::json!(["b", "t"]));
    assert_eq!(o["outputs"][0]["shape"], serde_json::json!(["b", "t", "256"]));
    assert_eq!(o["ops"]["MatMul"], 13);
    assert_eq!(o["initializers"].as_array().unwrap().len(), 21);
    let text = ok(&["inspect", p(&fixture("onnx/gpt_tiny.onnx"))]);
    assert!(
        text.contains("opsets: ai.onnx 17") && text.contains("LayerNormalization 5"),
        "{text}"
    );
    // --all adds the Constant nodes' values.
    let all = ok(&["inspect", "--all", "--json", p(&fixture("onnx/types.onnx"))]);
    let all: serde_json::Value = serde_json::from_str(&all).unwrap();
    let rows = all["details"]["value"]["initializers"].as_array().unwrap();
    assert!(rows
        .iter()
        .any(|r| r["name"] == "c_floats" && r["storage"] == "Constant node"));
    assert!(rows
        .iter()
        .any(|r| r["name"] == "typed_complex64" && r["dims"] == serde_json::json!([3, 5])));
}

#[test]
fn outputs_get_the_usual_permissions() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("w.safetensors");
    ok(&["convert", p(&fixture("onnx/fp32.onnx")), p(&out)]);
    use std::os::unix::fs::PermissionsExt;
    // SAFETY: umask only reads and restores the process's file mode mask.
    let mask = unsafe {
        let m = libc::umask(0o022);
        libc::umask(m);
        m
    };
    let mode = std::fs::metadata(&out).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o666 & !(mask as u32));
}

#[test]
fn a_fifo_named_as_external_data_is_refused_without_blocking() {
    let tmp = tempfile::tempdir().unwrap();
    let fifo = tmp.path().join("weights.bin");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: a valid NUL-terminated path in a private temp folder.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let m = with_external(tmp.path(), "weights.bin", 0, 262144);
    let out = tmp.path().join("o.safetensors");
    for args in [vec!["inspect", p(&m)], vec!["convert", p(&m), p(&out)]] {
        let code = run_bounded(&args, std::time::Duration::from_secs(5));
        assert_eq!(code, Some(2), "{args:?}");
    }
    assert!(!out.exists());
}

/// A model whose weights are Constant nodes, some inside If branches
/// (fixtures/onnx/gen_constants.py, made with the onnx helper): convert
/// takes them by default and says so; INT8 quantizes the main graph's
/// and names the subgraph's it leaves; below opset 13 with the opset
/// kept, one scale per tensor (DequantizeLinear as opset 10 has it).
#[test]
fn constant_node_weights_are_weights() {
    let tmp = tempfile::tempdir().unwrap();
    let src = fixture("onnx/constants.onnx");
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(fixture("onnx/manifest_constants.json")).unwrap()).unwrap();
    let out = tmp.path().join("w.safetensors");
    let j: serde_json::Value = serde_json::from_str(&ok(&["convert", "--json", p(&src), p(&out)])).unwrap();
    assert!(j["notes"].to_string().contains("no initializers"), "{}", j["notes"]);
    assert!(
        j["notes"].to_string().contains("2 subgraph Constant nodes"),
        "{}",
        j["notes"]
    );
    let m = modelconv_safetensors::open(&out).unwrap();
    let want = manifest["tensors"].as_object().unwrap();
    assert_eq!(m.tensors.len(), want.len());
    for t in &m.tensors {
        let w = &want[&t.info.name];
        assert_eq!(serde_json::json!(t.info.shape), w["shape"], "{}", t.info.name);
        let bytes = t.read_all().unwrap();
        assert_eq!(
            common::sha256_hex(&bytes),
            w["sha256"].as_str().unwrap(),
            "{}",
            t.info.name
        );
    }
    let rows = inspect_json(&src)["details"]["value"]["initializers"].clone();
    assert!(rows
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["name"] == "then.weight" && r["storage"] == "subgraph Constant node"));

    for (extra, scheme) in [
        (None, "DequantizeLinear axis=0 block_size=32"),
        (Some("--keep-opset"), "DequantizeLinear per-tensor"),
    ] {
        let q = tmp.path().join("q.onnx");
        let mut args = vec!["quantize", "--json", p(&src), "-o", p(&q), "--type", "INT8"];
        args.extend(extra);
        let r: serde_json::Value = serde_json::from_str(&ok(&args)).unwrap();
        let rows = r["tensors"].as_array().unwrap();
        assert_eq!(rows.len(), 1, "{rows:?}");
        assert_eq!(
            (rows[0]["name"].as_str(), rows[0]["scheme"].as_str()),
            (Some("fc.weight"), Some(scheme))
        );
        let kept: Vec<&str> = r["unchanged"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|u| u["reason"].as_str().unwrap().contains("subgraph"))
            .map(|u| u["name"].as_str().unwrap())
            .collect();
        assert_eq!(
            kept,
            ["else.weight", "then.weight"],
            "file order (the helper sorts attributes)"
        );
        let mp = model_proto(&q);
        let g = mp.graph.unwrap();
        assert!(g
            .initializer
            .iter()
            .any(|i| i.name.as_deref() == Some("fc.weight_quantized")));
        let dq = g
            .node
            .iter()
            .find(|n| n.op_type.as_deref() == Some("DequantizeLinear"))
            .unwrap();
        if extra.is_some() {
            assert!(dq.attribute.is_empty(), "opset 11's DequantizeLinear has no axis");
            assert_eq!(mp.opset_import[0].version, Some(11));
        }
    }
}

/// An opset-9 model (fixtures/onnx/gen_opset9.py) whose Softmax keeps it
/// from opset 21: INT8 moves it to opset 11 as onnxruntime's quantizer
/// does (opset9_ort.json), one scale per tensor; with a Pad whose pads
/// are an attribute it cannot move and the refusal names Pad.
#[test]
fn opset_9_int8_moves_to_opset_11_where_the_ops_allow() {
    let tmp = tempfile::tempdir().unwrap();
    let q = tmp.path().join("q.onnx");
    let src = fixture("onnx/opset9_mlp.onnx");
    let r: serde_json::Value =
        serde_json::from_str(&ok(&["quantize", "--json", p(&src), "-o", p(&q), "--type", "INT8"])).unwrap();
    assert_eq!(
        (
            r["details"]["opset_before"].as_i64(),
            r["details"]["opset_after"].as_i64()
        ),
        (Some(9), Some(11))
    );
    let ort: serde_json::Value =
        serde_json::from_slice(&std::fs::read(fixture("onnx/opset9_ort.json")).unwrap()).unwrap();
    assert_eq!(ort["opset9_mlp"]["opset_after"], 11);
    let mp = model_proto(&q);
    assert_eq!((mp.opset_import[0].version, mp.ir_version), (Some(11), Some(6)));
    let g = mp.graph.unwrap();
    let dq: Vec<_> = g
        .node
        .iter()
        .filter(|n| n.op_type.as_deref() == Some("DequantizeLinear"))
        .collect();
    assert_eq!(dq.len(), 2);
    assert!(dq.iter().all(|n| n.attribute.is_empty()), "per tensor at opset 11");
    let (code, err) = stderr_of(&[
        "quantize",
        p(&fixture("onnx/opset9_pad.onnx")),
        "-o",
        p(&q),
        "--type",
        "INT8",
    ]);
    assert_eq!(code, 2);
    assert!(
        err.contains("nor to 11 (Pad changed meaning at opset 11, after 9)"),
        "{err}"
    );
    let (code, err) = stderr_of(&["quantize", p(&src), "-o", p(&q), "--type", "INT8", "--keep-opset"]);
    assert_eq!(code, 2, "{err}");
}
