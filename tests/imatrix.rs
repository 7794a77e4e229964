//! `quantize --imatrix` against llama-quantize: every run recorded in
//! fixtures/imatrix/golden.json (llama-quantize at llama.cpp 0c1e57098 on
//! fixtures/hf/tiny-llama.F16.gguf, with the importance matrices
//! llama-imatrix made from fixtures/imatrix/calibration.txt, and on the
//! hard cases of fixtures/gguf/in-f32.gguf under a synthetic matrix; see
//! gen_golden.py) must come out byte for byte: every file type we produce,
//! with the GGUF and the legacy .dat matrix, --pure, without a matrix for
//! the types new in this build, and --include-weights / --exclude-weights.

mod common;
use common::*;
use sha2::{Digest, Sha256};
use std::path::Path;
use std::process::Command;

fn sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// Runs modelconv in fixtures/imatrix (the golden runs name the matrix by
/// a path relative to it, and the path is recorded in the output).
fn quantize_in_fixture_dir(input: &str, args: &[String], out: &Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_modelconv"))
        .current_dir(fixture("imatrix"))
        .args(["quantize", input, "-o", p(out)])
        .args(args)
        .output()
        .expect("run modelconv")
}

/// One golden run: None when our bytes equal llama-quantize's, else what differs.
fn check_run(run: &serde_json::Value, dir: &Path) -> Option<String> {
    let name = run["name"].as_str().unwrap_or("?");
    let mut args = vec!["--type".to_string(), run["type"].as_str().unwrap_or("").to_string()];
    args.extend(
        run["args"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|a| a.as_str().map(str::to_string)),
    );
    let out = dir.join(format!("{name}.gguf"));
    let o = quantize_in_fixture_dir(run["input"].as_str().unwrap_or(""), &args, &out);
    if run["fails"].as_bool() == Some(true) {
        // llama-quantize refused (or asserted): exit 2 and no output here.
        return (o.status.code() != Some(2) || out.exists())
            .then(|| format!("{name}: llama-quantize refuses it; we exited {:?}", o.status.code()));
    }
    if !o.status.success() {
        return Some(format!(
            "{name}: exit {:?}: {}",
            o.status.code(),
            String::from_utf8_lossy(&o.stderr)
        ));
    }
    let bytes = std::fs::read(&out).unwrap();
    if sha256(&bytes) == run["sha256"].as_str().unwrap_or("") {
        return None;
    }
    let model = modelconv_gguf::open(&out).unwrap();
    let mut diffs = Vec::new();
    for t in &model.tensors {
        let want = &run["tensors"][&t.info.name];
        let got = (t.info.dtype.name(), sha256(&t.read_all().unwrap()));
        if want["type"].as_str() != Some(got.0) || want["sha256"].as_str() != Some(got.1.as_str()) {
            diffs.push(format!(
                "{} ({} vs llama-quantize's {})",
                t.info.name, got.0, want["type"]
            ));
        }
    }
    Some(format!(
        "{name}: differs in {}",
        if diffs.is_empty() {
            "metadata".to_string()
        } else {
            diffs.join(", ")
        }
    ))
}

#[test]
fn quantize_with_an_imatrix_equals_llama_quantize_byte_for_byte() {
    let golden: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("imatrix/golden.json")).unwrap()).unwrap();
    let runs = golden["runs"].as_array().unwrap();
    assert!(runs.len() >= 220, "{} runs", runs.len());
    let dir = tempfile::tempdir().unwrap();
    // Two workers: the runs are independent and each is short.
    let d = dir.path();
    let bad: Vec<String> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..2)
            .map(|w| {
                s.spawn(move || {
                    runs.iter()
                        .skip(w)
                        .step_by(2)
                        .filter_map(|r| check_run(r, d))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        workers.into_iter().flat_map(|h| h.join().unwrap()).collect()
    });
    assert!(
        bad.is_empty(),
        "{} of {} runs differ:\n{}",
        bad.len(),
        runs.len(),
        bad.join("\n")
    );
}

/// `quantize INPUT -o OUT ARGS…` must exit 2 and write nothing; returns stderr.
fn refused_quantize(input: &str, args: &[&str]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("o.gguf");
    let mut all = vec!["quantize", input, "-o", p(&out)];
    all.extend_from_slice(args);
    let (code, err) = stderr_of(&all);
    assert_eq!(code, 2, "{err}");
    assert!(!out.exists());
    err
}

#[test]
fn imatrix_only_types_are_refused_without_one() {
    let model = fixture("hf/tiny-llama.F16.gguf");
    let err = refused_quantize(p(&model), &["--type", "Q2_K_S"]);
    assert!(
        err.contains("requires an importance matrix") && err.contains("blk.0.attn_k.weight"),
        "{err}"
    );
    // An imatrix whose entries were all excluded is no imatrix.
    let im = fixture("imatrix/tiny-llama.imatrix.gguf");
    let err = refused_quantize(
        p(&model),
        &["--type", "Q2_K_S", "--imatrix", p(&im), "--exclude-weights", "blk."],
    );
    assert!(err.contains("requires an importance matrix"), "{err}");
}

/// A legacy .dat with one entry for `name` of `values`.
fn legacy_dat(entries: &[(&str, &[f32])]) -> Vec<u8> {
    let mut b = (entries.len() as i32).to_le_bytes().to_vec();
    for (name, values) in entries {
        b.extend((name.len() as i32).to_le_bytes());
        b.extend(name.as_bytes());
        b.extend(1i32.to_le_bytes());
        b.extend((values.len() as i32).to_le_bytes());
        values.iter().for_each(|v| b.extend(v.to_le_bytes()));
    }
    b
}

#[test]
fn bad_imatrices_are_refused_naming_the_file_and_the_entry() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("o.gguf");
    let model = fixture("hf/tiny-llama.F16.gguf");
    let try_with = |bytes: &[u8], ty: &str| {
        let im = dir.path().join("m.dat");
        std::fs::write(&im, bytes).unwrap();
        let r = stderr_of(&["quantize", p(&model), "-o", p(&out), "--type", ty, "--imatrix", p(&im)]);
        assert!(r.0 == 0 || !out.exists(), "{}", r.1);
        r
    };
    // Wrong length for the tensor's rows.
    let (code, err) = try_with(&legacy_dat(&[("blk.0.ffn_up.weight", &[1.0; 100])]), "Q4_K_M");
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("blk.0.ffn_up.weight") && err.contains("100"), "{err}");
    // Non-finite values.
    let mut v = vec![1.0f32; 256];
    v[7] = f32::NAN;
    let (code, err) = try_with(&legacy_dat(&[("blk.0.ffn_up.weight", &v)]), "Q4_K_M");
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("m.dat") && err.contains("non-finite"), "{err}");
    // Truncated, and a count that runs past the end.
    let good = legacy_dat(&[("blk.0.ffn_up.weight", &[1.0; 256])]);
    let (code, err) = try_with(&good[..good.len() - 3], "Q4_K_M");
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("m.dat") && err.contains("past the end"), "{err}");
    let mut lying = good.clone();
    let at = 4 + 4 + "blk.0.ffn_up.weight".len() + 4;
    lying[at..at + 4].copy_from_slice(&i32::MAX.to_le_bytes());
    let (code, _) = try_with(&lying, "Q4_K_M");
    assert_eq!(code, 2);
    // A matrix for one tensor quantizes (the others without one).
    let (code, err) = try_with(&good, "Q4_K_M");
    assert_eq!(code, 0, "{err}");
    let keys = inspect_json(&out);
    let md = &keys["metadata"];
    assert_eq!(md["quantize.imatrix.entries_count"]["value"], 1, "{md}");
    std::fs::remove_file(&out).unwrap();
}

#[test]
fn include_and_exclude_weights_cannot_be_combined() {
    let im = fixture("imatrix/tiny-llama.imatrix.gguf");
    let model = fixture("hf/tiny-llama.F16.gguf");
    refused_quantize(
        p(&model),
        &[
            "--type",
            "Q4_K_M",
            "--imatrix",
            p(&im),
            "--include-weights",
            "a",
            "--exclude-weights",
            "b",
        ],
    );
}

#[test]
fn mxfp4_blocks_llama_cpp_would_reject_are_refused() {
    // Blocks of values near 2^-126 get the E8M0 scale 0xFF, which
    // llama.cpp's row validation rejects (llama-quantize fails on them).
    let err = refused_quantize(p(&fixture("gguf/in-f32.gguf")), &["--type", "MXFP4_MOE", "--pure"]);
    assert!(
        err.contains("blk.0.ffn_gate.weight") && err.contains("block 65"),
        "{err}"
    );
}
