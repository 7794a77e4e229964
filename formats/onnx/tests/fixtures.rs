//! The ONNX reader and writer against files made by onnx / onnxruntime /
//! onnxconverter-common (fixtures/onnx, see its README).

use modelconv_ir::{NoProgress, WriteOptions, WritePlan};
use modelconv_onnx::fp16;
use modelconv_onnx::quant::{self, QType, QuantOptions};
use modelconv_onnx::{fill, open_with, write, OnnxFile};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/onnx")
}

fn fixtures() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "onnx"))
        .collect();
    v.sort();
    assert!(v.len() >= 8, "{v:?}");
    v
}

fn write_to(out: write::OnnxOut, dest: &Path, external: bool) {
    let opts = WriteOptions {
        no_fsync: true,
        ..Default::default()
    };
    Box::new(write::plan(out, dest, external, &opts).unwrap())
        .write(&NoProgress)
        .unwrap();
}

#[test]
fn every_initializer_matches_numpy_helper_to_array() {
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir().join("manifest.json")).unwrap()).unwrap();
    let want = manifest.as_object().unwrap();
    let model = open_with(&dir().join("types.onnx"), true).unwrap();
    let mut names: Vec<&str> = model.tensors.iter().map(|t| t.info.name.as_str()).collect();
    names.sort();
    let mut want_names: Vec<&str> = want.keys().map(String::as_str).collect();
    want_names.sort();
    assert_eq!(names, want_names);
    for t in &model.tensors {
        let w = &want[&t.info.name];
        assert_eq!(t.info.dtype.name(), w["dtype"].as_str().unwrap(), "{}", t.info.name);
        let shape: Vec<u64> = w["shape"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d.as_u64().unwrap())
            .collect();
        assert_eq!(t.info.shape, shape, "{}", t.info.name);
        let hex: String = Sha256::digest(t.read_all().unwrap())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(hex, w["sha256"].as_str().unwrap(), "{}", t.info.name);
    }
}

#[test]
fn unchanged_models_re_encode_byte_for_byte() {
    let tmp = tempfile::tempdir().unwrap();
    for path in fixtures() {
        let f = OnnxFile::open(&path).unwrap();
        let model = open_with(&path, false).unwrap();
        let dest = tmp.path().join(path.file_name().unwrap());
        write_to(fill(&f, &model, false).unwrap(), &dest, false);
        let same = std::fs::read(&dest).unwrap() == std::fs::read(&path).unwrap();
        assert!(same, "{} changed in a round trip", path.display());
    }
}

#[test]
fn external_data_is_read_and_written_page_aligned() {
    let ext = dir().join("external/fp32_ext.onnx");
    let m = open_with(&ext, false).unwrap();
    let plain = open_with(&dir().join("fp32.onnx"), false).unwrap();
    for (a, b) in m.tensors.iter().zip(&plain.tensors) {
        assert_eq!(a.read_all().unwrap(), b.read_all().unwrap());
        assert!(a.location.as_ref().unwrap().file.ends_with("w.bin"));
    }
    // Re-embedded, it is fp32.onnx again.
    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("back.onnx");
    write_to(fill(&OnnxFile::open(&ext).unwrap(), &m, false).unwrap(), &dest, false);
    assert_eq!(
        std::fs::read(&dest).unwrap(),
        std::fs::read(dir().join("fp32.onnx")).unwrap()
    );
    // Written external: tensors of 1 KiB or more at 4096-aligned offsets.
    let dest = tmp.path().join("ext.onnx");
    write_to(fill(&OnnxFile::open(&ext).unwrap(), &m, false).unwrap(), &dest, true);
    let f = OnnxFile::open(&dest).unwrap();
    let (inits, _) = f.tensors(false).unwrap();
    for i in &inits {
        let big = i.tensor.info.byte_len >= 1024;
        assert_eq!(
            i.storage,
            if big { "external" } else { "raw_data" },
            "{}",
            i.tensor.info.name
        );
        if big {
            assert_eq!(i.tensor.location.as_ref().unwrap().offset % 4096, 0);
            assert!(i.tensor.location.as_ref().unwrap().file.ends_with("ext.onnx.data"));
        }
    }
    for (a, b) in inits.iter().zip(&plain.tensors) {
        assert_eq!(a.tensor.read_all().unwrap(), b.read_all().unwrap());
    }
}

/// build.py made dq_int8/dq_int4.onnx with symmetric blocked quantization
/// (scale = max|w| / qmax, round half to even); ours is the same recipe.
#[test]
fn quantized_weights_match_the_blocked_fixtures() {
    let src = OnnxFile::open(&dir().join("fp32.onnx")).unwrap();
    for (ty, golden) in [(QType::Int8, "dq_int8.onnx"), (QType::Int4, "dq_int4.onnx")] {
        let opts = QuantOptions {
            ty,
            ..Default::default()
        };
        let (out, report) = quant::quantize(&src, &opts).unwrap();
        assert_eq!(report.rows.len(), 1);
        let g = OnnxFile::open(&dir().join(golden)).unwrap();
        let stored = |f: &OnnxFile, name: &str| {
            let p = f
                .graph()
                .initializer
                .iter()
                .find(|t| t.name.as_deref() == Some(name))
                .unwrap();
            let i = f.tensor(p, name).unwrap().unwrap();
            (p.data_type, i.stored.len(), {
                let mut b = vec![0u8; i.stored.len() as usize];
                i.stored.read_at(0, &mut b).unwrap();
                b
            })
        };
        let ours = |name: &str| {
            let i = out.inits.iter().find(|i| i.name() == name).unwrap();
            let d = i.data.as_ref().unwrap();
            let mut b = vec![0u8; d.len() as usize];
            d.read_at(0, &mut b).unwrap();
            (i.proto.data_type, d.len(), b)
        };
        assert_eq!(ours("W_quantized"), stored(&g, "W_q"), "{golden}");
        assert_eq!(ours("W_scale"), stored(&g, "W_scale"), "{golden}");
    }
}

#[test]
fn truncated_and_bit_flipped_models_are_errors_not_panics() {
    let tmp = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(dir().join("types.onnx")).unwrap();
    let p = tmp.path().join("t.onnx");
    let mut errors = 0;
    let try_open = |data: &[u8]| {
        std::fs::write(&p, data).unwrap();
        match OnnxFile::open(&p) {
            Ok(f) => f.tensors(true).map(|(inits, _)| {
                for i in inits {
                    let _ = i.tensor.read_all();
                }
            }),
            Err(e) => Err(e),
        }
    };
    for cut in 0..bytes.len() {
        if try_open(&bytes[..cut]).is_err() {
            errors += 1;
        }
    }
    assert!(errors > bytes.len() / 2, "{errors}");
    for i in (0..bytes.len()).step_by(3) {
        let mut b = bytes.clone();
        b[i] ^= 1 << (i % 8);
        let _ = try_open(&b);
    }
}

/// The graph rewrites and the writer on damaged models: errors, never panics.
/// Most single-bit flips leave a model that still opens (a flipped weight
/// byte, a renamed node), and those must reach the rewrites: the test counts
/// them, so that a reader refusing every damaged file cannot pass it unread.
#[test]
fn rewrites_of_damaged_models_are_errors_not_panics() {
    let tmp = tempfile::tempdir().unwrap();
    let p = tmp.path().join("g.onnx");
    let dest = tmp.path().join("out.onnx");
    let (mut tried, mut opened, mut rewritten) = (0, 0, 0);
    for fixture in ["gpt_tiny.onnx", "fp32.onnx", "types.onnx"] {
        let bytes = std::fs::read(dir().join(fixture)).unwrap();
        let step = (bytes.len() / 150).max(1);
        for i in (0..bytes.len()).step_by(step) {
            let mut b = bytes.clone();
            b[i] ^= 1 << (i % 8);
            if i % 2 == 1 {
                b.truncate(bytes.len() - i / 2);
            }
            std::fs::write(&p, &b).unwrap();
            tried += 1;
            let Ok(f) = OnnxFile::open(&p) else { continue };
            opened += 1;
            let opts = WriteOptions {
                no_fsync: true,
                ..Default::default()
            };
            if let Ok((out, _)) = fp16::to_fp16(&f, &Default::default()) {
                if let Ok(plan) = write::plan(out, &dest, false, &opts) {
                    let _ = Box::new(plan).write(&NoProgress);
                }
            }
            for ty in [QType::Int8, QType::Int4] {
                let q = QuantOptions {
                    ty,
                    upgrade_opset: i % 3 == 0,
                    ..Default::default()
                };
                if let Ok((out, _)) = quant::quantize(&f, &q) {
                    if let Ok(plan) = write::plan(out, &dest, i % 5 == 0, &opts) {
                        rewritten += usize::from(Box::new(plan).write(&NoProgress).is_ok());
                    }
                }
            }
        }
    }
    eprintln!("{tried} damaged models, {opened} opened, {rewritten} quantized and written");
    assert!(opened * 4 > tried, "only {opened} of {tried} damaged models opened");
    assert!(rewritten > 0, "no damaged model reached the writer");
}
