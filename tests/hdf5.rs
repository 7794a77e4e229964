//! HDF5: Keras weight files made by Keras 3.15 and tf_keras 2.21 read as
//! Keras returns them (fixtures/keras/manifest.json, from
//! `model.get_weights()`); h5py files with chunked, gzip+shuffle data and
//! looping links (fixtures/hdf5/gen.py); damaged files end in exit 2 with
//! bounded memory.

mod common;
use common::*;
use std::time::Duration;

fn ir(dtype: &str) -> &'static str {
    match dtype {
        "float32" => "F32",
        "bfloat16" => "BF16",
        other => panic!("unexpected {other}"),
    }
}

fn names(j: &serde_json::Value) -> Vec<String> {
    j["tensors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn keras_files_read_as_keras_returns_them() {
    let m: serde_json::Value = serde_json::from_slice(&std::fs::read(fixture("keras/manifest.json")).unwrap()).unwrap();
    let mut checked = 0;
    for (file, want) in m.as_object().unwrap() {
        let model = modelconv_hdf5::open(&fixture(&format!("keras/{file}")), false, false).unwrap();
        let want = want.as_array().unwrap();
        assert_eq!(model.tensors.len(), want.len(), "{file}");
        // In get_weights() order.
        for (t, w) in model.tensors.iter().zip(want) {
            let what = format!("{file} {} (Keras: {})", t.info.name, w["keras_path"]);
            assert_eq!(t.info.dtype.name(), ir(w["dtype"].as_str().unwrap()), "{what}");
            assert_eq!(serde_json::json!(t.info.shape), w["shape"], "{what}");
            assert_eq!(sha256_hex(&t.read_all().unwrap()), w["sha256"], "{what}");
            checked += 1;
        }
    }
    assert_eq!(checked, 8 + 8 + 8 + 2 + 4 + 4);
}

#[test]
fn keras_names_and_options() {
    // Keras 2: the weight names; Keras 3: <layer>/vars/N, the layer named
    // from the file (or the .keras config), in the model's order.
    let j = inspect_json(&fixture("keras/tfk2.h5"));
    assert_eq!(j["format"], "hdf5");
    assert_eq!(names(&j), ["d1/kernel:0", "d1/bias:0", "d2/kernel:0", "d2/bias:0"]);
    assert_eq!(j["metadata"]["keras.keras_version"]["value"], "2.21.0");
    let j = inspect_json(&fixture("keras/k3.keras"));
    assert_eq!(
        names(&j)[..3],
        ["d1/vars/0".to_string(), "d1/vars/1".into(), "bn/vars/0".into()]
    );
    assert!(j["metadata"]["keras.config"]["value"]
        .as_str()
        .unwrap()
        .contains("\"Sequential\""));
    // Contiguous datasets are ranges of the archive.
    assert!(j["tensors"][0]["offset"].as_u64().unwrap() > 0);
    let by_path: serde_json::Value = serde_json::from_str(&ok(&[
        "inspect",
        "--json",
        "--names",
        "path",
        p(&fixture("keras/k3.weights.h5")),
    ]))
    .unwrap();
    assert_eq!(names(&by_path)[0], "layers/dense/vars/0");
    let all: serde_json::Value =
        serde_json::from_str(&ok(&["inspect", "--json", "--all", p(&fixture("keras/legacy.h5"))])).unwrap();
    assert!(names(&all).contains(&"model_weights/d1/sequential/d1/kernel".to_string()));
    let (code, err) = stderr_of(&["inspect", "--names", "param", p(&fixture("keras/tfk2.h5"))]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("use keras or path"), "{err}");
}

#[test]
fn keras_weights_convert_even_with_a_lambda_layer() {
    // scan flags the Lambda layer (tests/scan.rs); its weights are data.
    let dir = tempfile::tempdir().unwrap();
    for f in ["lambda.keras", "lambda.h5", "k3bf16.weights.h5"] {
        let out = dir.path().join(format!("{f}.safetensors"));
        ok(&["-q", "convert", p(&fixture(&format!("keras/{f}"))), p(&out)]);
        let src = modelconv_hdf5::open(&fixture(&format!("keras/{f}")), false, false).unwrap();
        let back = inspect_json(&out);
        assert_eq!(names(&back).len(), src.tensors.len(), "{f}");
    }
}

#[test]
fn h5py_chunks_and_links() {
    // gzip + shuffle over 16x10 chunks of a 40x25 array (edge chunks clipped).
    let m = modelconv_hdf5::open(&fixture("hdf5/chunked.h5"), false, false).unwrap();
    let c = m.tensor("c").unwrap();
    let want: Vec<u8> = (0..1000).flat_map(|i| (i as f32).to_le_bytes()).collect();
    assert_eq!(c.read_all().unwrap(), want);
    assert!(c.location.is_none(), "decoded, not a file range");
    // A group linked into itself and a dataset linked twice: each object once,
    // under the first name in h5py's order.
    let m = modelconv_hdf5::open(&fixture("hdf5/links.h5"), false, false).unwrap();
    let got: Vec<&str> = m.tensors.iter().map(|t| t.info.name.as_str()).collect();
    assert_eq!(got, ["again"]);
}

#[test]
fn damaged_hdf5_ends_in_exit_2_in_bounded_memory() {
    let dir = tempfile::tempdir().unwrap();
    for (file, inspect_fails, says) in [
        // The root object header's continuation points back at itself.
        ("header_loop.h5", true, "cycle"),
        // The chunk index (a B-tree) lies past the end of the file.
        ("chunk_index_past_end.h5", true, "end of data"),
        // A chunk lies past the end; found when the data is read.
        ("chunk_past_end.h5", false, "end of data"),
        ("bad_deflate.h5", false, "DEFLATE"),
        ("huge_dims.h5", true, "more elements than fit"),
        ("truncated.h5", true, "past the end of the file"),
    ] {
        let input = fixture(&format!("hdf5/{file}"));
        let out = dir.path().join("out.safetensors");
        let (code, err) = run_limited(&["convert", p(&input), p(&out)], Duration::from_secs(20));
        assert_eq!(code, Some(2), "{file}: {err}");
        assert!(err.contains(file) && err.contains(says), "{file}: {err}");
        assert!(dir_names(dir.path()).is_empty(), "{file}: no output left");
        let (code, err) = run_limited(&["inspect", p(&input)], Duration::from_secs(20));
        assert_eq!(code, Some(if inspect_fails { 2 } else { 0 }), "{file}: {err}");
    }
}

/// Bytes of an h5py file and a Keras file flipped in turn: each open
/// and read ends in a value or an error, never a panic (the fuzz target
/// explores further; this pins the whole of two real files).
#[test]
fn every_byte_flipped_is_an_error_or_a_value_never_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let mut opened = 0;
    for src in ["hdf5/chunked.h5", "keras/k3.weights.h5"] {
        let bytes = std::fs::read(fixture(src)).unwrap();
        let f = dir.path().join("flipped.h5");
        // Every fifth byte (a debug build parses a few thousand files a second).
        for i in (0..bytes.len()).step_by(5) {
            let mut b = bytes.clone();
            b[i] ^= 0xff;
            std::fs::write(&f, &b).unwrap();
            for (by_path, all) in [(false, false), (true, true)] {
                if let Ok(m) = modelconv_hdf5::open(&f, by_path, all) {
                    opened += 1;
                    // A flipped dimension may make a (valid, sparse) huge dataset: read small ones.
                    for t in m.tensors.iter().filter(|t| t.info.byte_len <= 1 << 20) {
                        let _ = t.read_all();
                    }
                }
            }
        }
    }
    assert!(opened > 0);
}
