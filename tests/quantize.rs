//! `modelconv quantize` against llama-quantize's own outputs (fixtures/gguf,
//! made by llama.cpp 0c1e57098): whole files byte for byte, per-tensor type
//! choices for every file type in the manifest, and the guards.

mod common;
use common::*;
use modelconv_ir::{Format, MemSource, Model, Tensor};
use std::sync::Arc;

fn quantize_json(args: &[&str]) -> serde_json::Value {
    let mut a = vec!["quantize", "--json"];
    a.extend_from_slice(args);
    serde_json::from_str(&ok(&a)).expect("quantize --json prints JSON")
}

#[test]
fn outputs_are_byte_identical_to_llama_quantize() {
    let dir = tempfile::tempdir().unwrap();
    let input = fixture("gguf/in-f32.gguf");
    let mut runs: Vec<(String, Vec<&str>)> = vec![
        ("mix-Q4_K_M.gguf".into(), vec!["--type", "Q4_K_M"]),
        ("mix-Q4_K_M.gguf".into(), vec!["--q4_k"]),
        ("mix-Q2_K.gguf".into(), vec!["--q2_k"]),
    ];
    for t in [
        "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q2_K", "Q3_K_S", "Q4_K_S", "Q5_K_S", "Q6_K",
    ] {
        runs.push((format!("pure-{t}.gguf"), vec!["--type", t, "--pure"]));
    }
    for (golden, flags) in runs {
        let out = dir.path().join("out.gguf");
        let mut args = vec!["-q", "quantize", p(&input), "-o", p(&out)];
        args.extend(&flags);
        ok(&args);
        assert!(
            std::fs::read(&out).unwrap() == std::fs::read(fixture(&format!("gguf/{golden}"))).unwrap(),
            "{golden} {flags:?}"
        );
    }
}

#[test]
fn every_manifest_file_type_picks_llama_cpps_tensor_types() {
    let dir = tempfile::tempdir().unwrap();
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(fixture("gguf/manifest.json")).unwrap()).unwrap();
    let input = fixture("gguf/in-f32.gguf");
    for (kind, pure) in [("mix", false), ("pure", true)] {
        for (ft, expected) in manifest[kind].as_object().unwrap() {
            let out = dir.path().join("o.gguf");
            let mut args = vec![p(&input), "-o", p(&out), "--type", ft.as_str()];
            if pure {
                args.push("--pure");
            }
            let report = quantize_json(&args);
            for t in report["tensors"].as_array().unwrap() {
                let name = t["name"].as_str().unwrap();
                assert_eq!(t["to"], expected[name], "{kind} {ft} {name}");
            }
            // The file holds what the report says.
            let m = modelconv_gguf::open(&out).unwrap();
            for t in &m.tensors {
                assert_eq!(
                    t.info.dtype.name(),
                    expected[&t.info.name],
                    "{kind} {ft} {}",
                    t.info.name
                );
            }
        }
    }
}

#[test]
fn report_has_sizes_errors_and_bits_per_weight() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("o.gguf");
    let r = quantize_json(&[p(&fixture("gguf/in-f32.gguf")), "-o", p(&out), "--q8_0"]);
    assert_eq!(
        (r["type"].as_str(), r["requested_type"].as_str()),
        (Some("Q8_0"), Some("Q8_0"))
    );
    let bpw = r["bits_per_weight"].as_f64().unwrap();
    assert!((8.4..8.6).contains(&bpw), "{bpw}");
    let q = r["tensors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "blk.0.attn_q.weight")
        .unwrap();
    let e = q["relative_rmse"].as_f64().unwrap();
    assert!(e > 0.0 && e < 0.01, "{e}");
    // Norms stay F32, and the report says so and why.
    let norm = r["unchanged"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "output_norm.weight")
        .unwrap();
    assert_eq!(norm["dtype"], "F32");
    assert!(norm["reason"].as_str().unwrap().starts_with("1-D"), "{norm}");
    assert!(r["tensors"].as_array().unwrap().iter().all(|t| t["to"] == "Q8_0"));
    let written = modelconv_gguf::open(&out).unwrap();
    let quantized: Vec<_> = written
        .tensors
        .iter()
        .filter(|t| t.info.dtype.name() == "Q8_0")
        .collect();
    assert_eq!(
        r["bytes_after"].as_u64().unwrap(),
        quantized.iter().map(|t| t.info.byte_len).sum::<u64>()
    );
    assert_eq!(
        r["parameters"].as_u64().unwrap(),
        quantized.iter().map(|t| t.info.numel()).sum::<u64>()
    );
    assert_eq!(
        r["file_bytes_after"].as_u64().unwrap(),
        std::fs::metadata(&out).unwrap().len()
    );
}

#[test]
fn overrides_and_output_options() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("o.gguf");
    let input = fixture("gguf/in-f32.gguf");
    let types = |args: &[&str]| -> serde_json::Value {
        let r = quantize_json(args);
        r["tensors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| (t["name"].as_str().unwrap().to_string(), t["to"].clone()))
            .collect()
    };
    let t = types(&[
        p(&input),
        "-o",
        p(&out),
        "--q4_k",
        "--tensor-type",
        "attn_v=Q8_0",
        "--tensor-type",
        "ffn_.*=Q5_0",
    ]);
    assert_eq!(t["blk.1.attn_v.weight"], "Q8_0");
    assert_eq!(t["blk.0.ffn_down.weight"], "Q5_0");
    assert_eq!(t["blk.0.attn_q.weight"], "Q4_K");
    let t = types(&[
        p(&input),
        "-o",
        p(&out),
        "--q4_k",
        "--output-tensor-type",
        "Q8_0",
        "--token-embedding-type",
        "Q4_0",
    ]);
    assert_eq!(t["output.weight"], "Q8_0");
    assert_eq!(t["token_embd.weight"], "Q4_0");
    let t = types(&[p(&input), "-o", p(&out), "--q4_k", "--leave-output-tensor"]);
    assert!(t.get("output.weight").is_none(), "only changed tensors are listed");
    let r = quantize_json(&[p(&input), "-o", p(&out), "--q4_k", "--leave-output-tensor"]);
    let kept = r["unchanged"].as_array().unwrap();
    assert!(kept
        .iter()
        .any(|k| k["name"] == "output.weight" && k["reason"] == "--leave-output-tensor"));
    let (code, err) = stderr_of(&["quantize", p(&input), "-o", p(&out), "--type", "Q9_K"]);
    assert_eq!(code, 2);
    assert!(err.contains("unknown type 'Q9_K'"), "{err}");
}

#[test]
fn requantizing_needs_consent() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("o.gguf");
    let (code, err) = stderr_of(&["quantize", p(&fixture("gguf/pure-Q4_0.gguf")), "-o", p(&out), "--q8_0"]);
    assert_eq!(code, 2);
    assert!(
        err.contains("already Q4_0") && err.contains("--allow-requantize"),
        "{err}"
    );
    assert!(!out.exists());
    ok(&[
        "-q",
        "quantize",
        p(&fixture("gguf/pure-Q4_0.gguf")),
        "-o",
        p(&out),
        "--q8_0",
        "--allow-requantize",
    ]);
    let m = modelconv_gguf::open(&out).unwrap();
    assert_eq!(m.tensor("blk.0.attn_q.weight").unwrap().info.dtype.name(), "Q8_0");
}

/// in-f32.gguf with one value of one tensor replaced.
fn with_value(dir: &std::path::Path, tensor: &str, index: usize, v: f32) -> std::path::PathBuf {
    let mut m: Model = modelconv_gguf::open(&fixture("gguf/in-f32.gguf")).unwrap();
    let t = m.tensors.iter_mut().find(|t| t.info.name == tensor).unwrap();
    let mut bytes = t.read_all().unwrap();
    bytes[index * 4..index * 4 + 4].copy_from_slice(&v.to_le_bytes());
    *t = Tensor::new(t.info.clone(), Arc::new(MemSource::new(bytes))).unwrap();
    let path = dir.join("bad.gguf");
    let plan = modelconv_gguf::FORMAT
        .writer()
        .unwrap()
        .plan(&m, &path, &Default::default())
        .unwrap();
    plan.write(&modelconv_ir::NoProgress).unwrap();
    path
}

#[test]
fn non_finite_weights_are_refused_unless_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("out");
    std::fs::create_dir(&out_dir).unwrap();
    let out = out_dir.join("o.gguf");
    let bad = with_value(dir.path(), "blk.1.attn_k.weight", 1000, f32::NAN);
    let (code, err) = stderr_of(&["quantize", p(&bad), "-o", p(&out), "--q4_k"]);
    assert_eq!(code, 2);
    assert!(
        err.contains("blk.1.attn_k.weight") && err.contains("element 1000") && err.contains("block 3"),
        "{err}"
    );
    assert!(dir_names(&out_dir).is_empty());
    ok(&["-q", "quantize", p(&bad), "-o", p(&out), "--q4_k", "--allow-nonfinite"]);
    // A value too large for an f16 scale.
    let huge = with_value(dir.path(), "blk.0.attn_q.weight", 5, 3.0e38);
    let (code, err) = stderr_of(&["quantize", p(&huge), "-o", p(&out_dir.join("h.gguf")), "--q8_0"]);
    assert_eq!(code, 2);
    assert!(
        err.contains("blk.0.attn_q.weight") && err.contains("block 0") && err.contains("overflows"),
        "{err}"
    );
}

#[test]
fn safetensors_input_keeps_names_and_convert_quantizes_too() {
    let dir = tempfile::tempdir().unwrap();
    let st = dir.path().join("m.safetensors");
    ok(&["convert", p(&fixture("gguf/in-f32.gguf")), p(&st)]);
    let q = dir.path().join("q.gguf");
    ok(&["-q", "quantize", p(&st), "-o", p(&q), "--q8_0", "--pure"]);
    // Same quantized bytes as llama.cpp's, tensor by tensor.
    let ours = modelconv_gguf::open(&q).unwrap();
    let theirs = modelconv_gguf::open(&fixture("gguf/pure-Q8_0.gguf")).unwrap();
    for t in &theirs.tensors {
        assert_eq!(
            ours.tensor(&t.info.name).unwrap().read_all().unwrap(),
            t.read_all().unwrap(),
            "{}",
            t.info.name
        );
    }
    // convert --dtype Q8_0: every 2-D float tensor, same bytes again; 1-D stay F32.
    let c = dir.path().join("c.gguf");
    ok(&["convert", p(&st), p(&c), "--dtype", "Q8_0"]);
    let conv = modelconv_gguf::open(&c).unwrap();
    for t in &theirs.tensors {
        assert_eq!(
            conv.tensor(&t.info.name).unwrap().read_all().unwrap(),
            t.read_all().unwrap(),
            "{}",
            t.info.name
        );
    }
    // safetensors cannot hold Q8_0.
    let (code, err) = stderr_of(&[
        "convert",
        p(&st),
        p(&dir.path().join("x.safetensors")),
        "--dtype",
        "Q8_0",
    ]);
    assert_eq!(code, 2);
    assert!(err.contains("safetensors has no Q8_0 type"), "{err}");
}

#[test]
fn dequantized_output_matches_and_diff_orders_the_errors() {
    let dir = tempfile::tempdir().unwrap();
    let mix = fixture("gguf/mix-Q4_K_M.gguf");
    let f32 = dir.path().join("deq.safetensors");
    ok(&["convert", p(&mix), p(&f32), "--dtype", "F32"]);
    // Dequantizing is exact: the F32 file and the quantized one do not differ.
    ok(&["diff", p(&f32), p(&mix)]);
    let rmse = |golden: &str| -> f64 {
        let out = expect_code(
            &["diff", "--json", p(&fixture("gguf/in-f32.gguf")), p(&fixture(golden))],
            1,
        );
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        let r: Vec<f64> = v["tensors"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|t| t["dtype_b"] != "F32")
            .map(|t| t["rmse"].as_f64().unwrap())
            .collect();
        r.iter().sum::<f64>() / r.len() as f64
    };
    let (q8, q4, q2) = (
        rmse("gguf/pure-Q8_0.gguf"),
        rmse("gguf/mix-Q4_K_M.gguf"),
        rmse("gguf/pure-Q2_K.gguf"),
    );
    assert!(q8 * 4.0 < q4 && q4 * 1.5 < q2, "Q8_0 {q8}, Q4_K_M {q4}, Q2_K {q2}");
}

/// A cast or quantization that changes nothing is exit 2 (with the reason),
/// unless `--allow-unchanged`; then the report's type says what the file is.
#[test]
fn no_silent_no_ops() {
    let dir = tempfile::tempdir().unwrap();
    // Names that are not llama.cpp's (no `.weight` suffix) and a 1-D
    // tensor: nothing llama.cpp would quantize.
    let header = serde_json::json!({
        "model.embed": {"dtype": "F32", "shape": [8, 256], "data_offsets": [0, 8192]},
        "model.norm": {"dtype": "F32", "shape": [256], "data_offsets": [8192, 9216]},
    })
    .to_string();
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(header.as_bytes());
    bytes.resize(bytes.len() + 9216, 0x3f);
    let src = dir.path().join("hf.safetensors");
    std::fs::write(&src, bytes).unwrap();
    let out = dir.path().join("q.gguf");
    let (code, err) = stderr_of(&["quantize", p(&src), "-o", p(&out), "--q4_k"]);
    assert_eq!(code, 2);
    assert!(
        err.contains("no tensor can be quantized") && err.contains("--allow-unchanged"),
        "{err}"
    );
    assert!(!out.exists());
    let r = quantize_json(&[p(&src), "-o", p(&out), "--q4_k", "--allow-unchanged"]);
    assert_eq!(r["type"], "F32 (nothing quantized)");
    assert_eq!(r["requested_type"], "Q4_K_M");
    assert_eq!(r["tensors"], serde_json::json!([]));
    let why: Vec<&str> = r["unchanged"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["reason"].as_str().unwrap())
        .collect();
    assert!(why.iter().any(|w| w.contains("not a '*.weight'")), "{why:?}");
    assert!(why.iter().any(|w| w.starts_with("1-D")), "{why:?}");
    // The file does not claim a type it does not have.
    let m = modelconv_gguf::open(&out).unwrap();
    assert!(m.metadata.get("general.file_type").is_none());

    // convert --dtype: the same rule for casts and ggml types.
    let f16 = dir.path().join("f16.safetensors");
    ok(&["-q", "convert", p(&src), p(&f16), "--dtype", "F16"]);
    let again = dir.path().join("again.safetensors");
    let (code, err) = stderr_of(&["convert", p(&f16), p(&again), "--dtype", "float16"]);
    assert_eq!(code, 2);
    assert!(err.contains("changes nothing") && err.contains("already F16"), "{err}");
    assert!(!again.exists());
    ok(&[
        "-q",
        "convert",
        p(&f16),
        p(&again),
        "--dtype",
        "F16",
        "--allow-unchanged",
    ]);
    let (code, err) = stderr_of(&["convert", p(&src), p(&out), "--dtype", "Q4_K"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("no tensor can be quantized to Q4_K"), "{err}");
}

/// Weights so small that Q8_0 flushes them to zero: the report says the
/// error is total (relative RMSE 1, computed in f64), and diff says cosine 0.
#[test]
fn a_tensor_flushed_to_zero_shows_its_whole_error() {
    let dir = tempfile::tempdir().unwrap();
    let header =
        serde_json::json!({"w.weight": {"dtype": "F32", "shape": [32, 32], "data_offsets": [0, 4096]}}).to_string();
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(header.as_bytes());
    bytes.extend((0..1024).flat_map(|i| (if i % 2 == 0 { 1e-38f32 } else { -1e-38 }).to_le_bytes()));
    let src = dir.path().join("tiny.safetensors");
    std::fs::write(&src, bytes).unwrap();
    let out = dir.path().join("q.gguf");
    let r = quantize_json(&[p(&src), "-o", p(&out), "--q8_0"]);
    let e = r["tensors"][0]["relative_rmse"].as_f64().unwrap();
    assert!((e - 1.0).abs() < 1e-9, "{e}");
    let text = ok(&["quantize", p(&src), "-o", p(&out), "--q8_0"]);
    assert!(text.contains("1.00000"), "{text}");
    let d: serde_json::Value = serde_json::from_str(&expect_code(&["diff", "--json", p(&src), p(&out)], 1)).unwrap();
    assert_eq!(d["tensors"][0]["cosine"], 0.0);
}

/// Makes input `name` of fixtures/gguf/layout.json in `dir` as
/// gen_layout.py made it, checking every file against its recorded sha256;
/// returns the path to pass to quantize.
fn layout_input(spec: &serde_json::Value, name: &str, dir: &std::path::Path) -> std::path::PathBuf {
    let input = &spec["inputs"][name];
    let src = fixture(&format!("gguf/{}", input["from"].as_str().unwrap()));
    let files: Vec<std::path::PathBuf> = input["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| dir.join(f["name"].as_str().unwrap()))
        .collect();
    match input["make"].as_str().unwrap() {
        "as is" => return src,
        "meta --remove general.file_type" => {
            ok(&["meta", p(&src), "--remove", "general.file_type", "-o", p(&files[0])]);
        }
        // Our split equals llama-gguf-split's (tests/gguf_split.rs); checked again below.
        "llama-gguf-split --split --split-max-tensors 10" => {
            let out = dir.join("tiny-llama.gguf");
            ok(&["-q", "convert", p(&src), p(&out), "--split-max-tensors", "10"]);
        }
        other => panic!("unknown input recipe {other}"),
    }
    for (f, want) in files.iter().zip(input["files"].as_array().unwrap()) {
        assert_eq!(
            sha256_hex(&std::fs::read(f).unwrap()),
            want["sha256"].as_str().unwrap(),
            "input {name}: {} is not the file llama-quantize was given",
            f.display()
        );
    }
    files[0].clone()
}

/// COPY (tensors as they are, the loader's file type, guessed when the
/// input has none) and --keep-split (the input's shards, file order, one
/// shard named -00001-of-00001) equal llama-quantize's files byte for byte.
#[test]
fn copy_and_keep_split_equal_llama_quantize() {
    let spec: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("gguf/layout.json")).unwrap()).unwrap();
    let inputs = tempfile::tempdir().unwrap();
    for r in spec["runs"].as_array().unwrap() {
        let name = r["name"].as_str().unwrap();
        let input = layout_input(&spec, r["input"].as_str().unwrap(), inputs.path());
        let out = tempfile::tempdir().unwrap();
        let mut args = vec![
            "-q".to_string(),
            "quantize".into(),
            input.display().to_string(),
            "-o".into(),
            out.path().join("out.gguf").display().to_string(),
            "--type".into(),
            r["type"].as_str().unwrap().into(),
        ];
        args.extend(
            r["args"]
                .as_array()
                .unwrap()
                .iter()
                .map(|a| a.as_str().unwrap().to_string()),
        );
        let o = std::process::Command::new(env!("CARGO_BIN_EXE_modelconv"))
            .current_dir(fixture("gguf"))
            .args(&args)
            .output()
            .unwrap();
        assert!(o.status.success(), "{name}: {}", String::from_utf8_lossy(&o.stderr));
        let want: Vec<(String, String)> = r["outputs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| {
                (
                    f["name"].as_str().unwrap().to_string(),
                    f["sha256"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        let got: Vec<(String, String)> = dir_names(out.path())
            .into_iter()
            .map(|f| {
                let sha = sha256_hex(&std::fs::read(out.path().join(&f)).unwrap());
                (f, sha)
            })
            .collect();
        assert_eq!(got, want, "{name}");
    }
}

/// A dry run of a type that needs an importance matrix, without one,
/// succeeds with a warning, as llama-quantize's does; the run itself is
/// refused.
#[test]
fn a_dry_run_without_a_needed_imatrix_warns_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.gguf");
    let input = fixture("hf/tiny-llama.F16.gguf");
    let (code, err) = stderr_of(&["quantize", p(&input), "-o", p(&out), "--type", "IQ2_XXS", "--dry-run"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("dry run completed, but") && err.contains("importance matrix"),
        "{err}"
    );
    assert!(!out.exists());
    exit_2(&["quantize", p(&input), "-o", p(&out), "--type", "IQ2_XXS"]);
    assert!(!out.exists());
}
