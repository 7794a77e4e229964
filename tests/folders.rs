//! A folder is one model: its index's files, or the standard names; what
//! is left out is listed, ambiguous folders are refused, GGUF split sets
//! read as one model, and outputs into a new folder create it.

mod common;
use common::*;
use std::path::Path;

fn copy(from: &Path, to: &Path) {
    std::fs::copy(from, to).unwrap();
}

fn notes(v: &serde_json::Value) -> String {
    v["notes"].to_string()
}

#[test]
fn a_safetensors_folder_is_its_standard_files() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    copy(&fixture("safetensors/floats.safetensors"), &d.join("model.safetensors"));
    copy(
        &fixture("safetensors/all_dtypes.safetensors"),
        &d.join("adapter_model.safetensors"),
    );
    let v = inspect_json(d);
    let want = inspect_json(&fixture("safetensors/floats.safetensors"));
    assert_eq!(v["tensor_count"], want["tensor_count"], "the adapter is not merged in");
    assert!(notes(&v).contains("adapter_model.safetensors"), "{}", notes(&v));
    // Without a standard name, two files are two models: refused, both named.
    std::fs::rename(d.join("model.safetensors"), d.join("other.safetensors")).unwrap();
    let (code, err) = stderr_of(&["inspect", p(d)]);
    assert_eq!(code, 2);
    assert!(
        err.contains("holds 2 models")
            && err.contains("adapter_model.safetensors")
            && err.contains("other.safetensors"),
        "{err}"
    );
    // A single model file and a shard set of the same name: two copies.
    let s = tempfile::tempdir().unwrap();
    for f in ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"] {
        copy(&fixture(&format!("safetensors/sharded/{f}")), &s.path().join(f));
    }
    ok(&["inspect", p(s.path())]);
    copy(
        &fixture("safetensors/floats.safetensors"),
        &s.path().join("model.safetensors"),
    );
    let (code, err) = stderr_of(&["inspect", p(s.path())]);
    assert_eq!(code, 2);
    assert!(err.contains("two copies"), "{err}");
    std::fs::remove_file(s.path().join("model-00002-of-00002.safetensors")).unwrap();
    std::fs::remove_file(s.path().join("model.safetensors")).unwrap();
    let (code, err) = stderr_of(&["inspect", p(s.path())]);
    assert_eq!(code, 2);
    assert!(err.contains("model-00002-of-00002.safetensors is missing"), "{err}");
}

#[test]
fn a_pytorch_folder_without_an_index_is_its_standard_files() {
    let dir = tempfile::tempdir().unwrap();
    for f in ["pytorch_model-00001-of-00002.bin", "pytorch_model-00002-of-00002.bin"] {
        copy(&fixture(&format!("torch/sharded_7/{f}")), &dir.path().join(f));
    }
    copy(&fixture("torch/simple_f32_7.pt"), &dir.path().join("training_args.bin"));
    let v = inspect_json(dir.path());
    let want = inspect_json(&fixture("torch/sharded_7"));
    let names = sorted_names;
    assert_eq!(names(&v), names(&want));
    assert!(notes(&v).contains("training_args.bin"), "{}", notes(&v));
    // ckpt-to-safetensors DIR writes model.safetensors inside it.
    ok(&["-q", "ckpt-to-safetensors", p(dir.path())]);
    assert_eq!(
        names(&inspect_json(&dir.path().join("model.safetensors"))),
        names(&want)
    );
}

#[test]
fn gguf_split_files_read_as_one_model() {
    // llama-gguf-split --split-max-tensors 8 of pure-Q2_K.gguf, and its --merge (fixtures/README.md).
    let whole = std::fs::read(fixture("gguf/pure-Q2_K-merged.gguf")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    for input in [
        fixture("gguf/split"),
        fixture("gguf/split/pure-Q2_K-00001-of-00003.gguf"),
    ] {
        let out = dir.path().join("joined.gguf");
        ok(&["-q", "convert", p(&input), p(&out)]);
        assert!(std::fs::read(&out).unwrap() == whole, "{}", input.display());
    }
    let v = inspect_json(&fixture("gguf/split"));
    assert!(notes(&v).contains("3 files read as one model"), "{}", notes(&v));
    assert_eq!(v["metadata"]["split.count"]["value"], 3, "the first file's metadata");

    // Incomplete or mixed folders say what is there.
    let d = dir.path().join("two");
    std::fs::create_dir(&d).unwrap();
    for i in [1, 3] {
        let f = format!("pure-Q2_K-{i:05}-of-00003.gguf");
        copy(&fixture(&format!("gguf/split/{f}")), &d.join(f));
    }
    let (code, err) = stderr_of(&["inspect", p(&d)]);
    assert_eq!(code, 2);
    assert!(err.contains("pure-Q2_K-00002-of-00003.gguf is missing"), "{err}");
    let m = dir.path().join("mixed");
    std::fs::create_dir(&m).unwrap();
    copy(&fixture("gguf/pure-Q2_K.gguf"), &m.join("a.gguf"));
    copy(&fixture("gguf/pure-Q4_0.gguf"), &m.join("b.gguf"));
    let (code, err) = stderr_of(&["inspect", p(&m)]);
    assert_eq!(code, 2);
    assert!(
        err.contains("holds 2 models") && err.contains("a.gguf") && err.contains("b.gguf"),
        "{err}"
    );
}

#[test]
fn outputs_into_a_new_folder_create_it_and_failures_remove_it() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("new/deeper/model.safetensors");
    ok(&[
        "-q",
        "convert",
        p(&fixture("safetensors/sharded")),
        p(&out),
        "--max-shard-size",
        "300B",
    ]);
    assert!(dir.path().join("new/deeper/model.safetensors.index.json").is_file());
    // A write that fails leaves no folder it made.
    let header =
        serde_json::json!({"w.weight": {"dtype": "F32", "shape": [32, 32], "data_offsets": [0, 4096]}}).to_string();
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(header.as_bytes());
    bytes.extend((0..1024).flat_map(|i| if i == 5 { f32::NAN } else { 0.5f32 }.to_le_bytes()));
    let nan = dir.path().join("nan.safetensors");
    std::fs::write(&nan, bytes).unwrap();
    let (code, err) = stderr_of(&["quantize", p(&nan), "-o", p(&dir.path().join("q/r/x.gguf")), "--q8_0"]);
    assert_eq!(code, 2, "{err}");
    assert!(!dir.path().join("q").exists());
}
