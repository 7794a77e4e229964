//! TensorFlow tensor bundles (fixtures made by tensorflow-cpu 2.21): every
//! tensor as tf.train.load_checkpoint returns it (fixtures/tf/manifest.json),
//! by prefix, .index or SavedModel folder; corrupted bundles end in exit 2.

mod common;
use common::*;

fn ir(dtype: &str) -> &'static str {
    match dtype {
        "float32" => "F32",
        "float16" => "F16",
        "bfloat16" => "BF16",
        "int64" => "I64",
        other => panic!("unexpected {other}"),
    }
}

#[test]
fn bundles_read_as_tensorflow_returns_them() {
    let m: serde_json::Value = serde_json::from_slice(&std::fs::read(fixture("tf/manifest.json")).unwrap()).unwrap();
    let mut checked = 0;
    for (bundle, want) in m.as_object().unwrap() {
        let model = modelconv_tf::open(&fixture(&format!("tf/{bundle}")), false).unwrap();
        let want = want.as_object().unwrap();
        assert_eq!(model.tensors.len(), want.len(), "{bundle}");
        for t in &model.tensors {
            let w = &want[&t.info.name];
            assert_eq!(
                t.info.dtype.name(),
                ir(w["dtype"].as_str().unwrap()),
                "{bundle} {}",
                t.info.name
            );
            assert_eq!(serde_json::json!(t.info.shape), w["shape"], "{bundle} {}", t.info.name);
            assert_eq!(
                sha256_hex(&t.read_all().unwrap()),
                w["sha256"],
                "{bundle} {}",
                t.info.name
            );
            checked += 1;
        }
        // The object graph is metadata, not a tensor; the string variable is left out, said so.
        assert!(
            model.metadata.get("tf.checkpointable_object_graph").is_some(),
            "{bundle}"
        );
    }
    assert_eq!(checked, 305);
    let j = inspect_json(&fixture("tf/ckpt/model.index"));
    assert_eq!(j["format"], "tf");
    assert!(
        j["notes"].to_string().contains("s/.ATTRIBUTES/VARIABLE_VALUE"),
        "{}",
        j["notes"]
    );
    let short: serde_json::Value =
        serde_json::from_str(&ok(&["inspect", "--json", "--short-names", p(&fixture("tf/sm"))])).unwrap();
    assert_eq!(short["tensors"][0]["name"], "w");
    let dir = tempfile::tempdir().unwrap();
    ok(&[
        "-q",
        "convert",
        p(&fixture("tf/ckpt/model")),
        p(&dir.path().join("m.safetensors")),
        "--short-names",
    ]);
}

/// How long a damaged bundle may take; `run_limited` also caps it at 1 GiB
/// of address space (bounded memory).
const LIMIT: std::time::Duration = std::time::Duration::from_secs(20);

#[test]
fn corrupted_bundles_end_in_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let copy = |name: &str| {
        for ext in ["index", "data-00000-of-00001"] {
            std::fs::copy(
                fixture(&format!("tf/ckpt/model.{ext}")),
                dir.path().join(format!("{name}.{ext}")),
            )
            .unwrap();
        }
        dir.path().join(name)
    };
    // A flipped byte in a tensor's data: its crc32c says so, naming it.
    let bad = copy("badcrc");
    let data = bad.with_extension("data-00000-of-00001");
    let mut d = std::fs::read(&data).unwrap();
    d[45] ^= 0xff; // inside w (offset 41)
    std::fs::write(&data, d).unwrap();
    let out = dir.path().join("o.safetensors");
    let (code, err) = run_limited(&["convert", p(&bad), p(&out)], LIMIT);
    assert_eq!(code, Some(2));
    assert!(err.contains("crc32c") && err.contains("w/.ATTRIBUTES"), "{err}");
    assert!(!out.exists());
    // A truncated index.
    let cut = copy("cut");
    let idx = cut.with_extension("index");
    let b = std::fs::read(&idx).unwrap();
    std::fs::write(&idx, &b[..b.len() - 20]).unwrap();
    assert_eq!(run_limited(&["inspect", p(&idx)], LIMIT).0, Some(2));
    // A block handle past the end: the footer's index handle made huge.
    let far = copy("far");
    let idx = far.with_extension("index");
    let mut b = std::fs::read(&idx).unwrap();
    let f = b.len() - 48;
    let mut pos = f;
    while b[pos] & 0x80 != 0 {
        pos += 1;
    }
    pos += 1; // past the metaindex offset
    while b[pos] & 0x80 != 0 {
        pos += 1;
    }
    pos += 1; // past its size: the index handle's offset
    b[pos] = 0xff;
    b[pos + 1] = 0x7f;
    std::fs::write(&idx, b).unwrap();
    let (code, err) = run_limited(&["inspect", p(&idx)], LIMIT);
    assert_eq!(code, Some(2));
    assert!(err.contains("far.index"), "{err}");
    // A missing shard is named.
    let gone = copy("gone");
    std::fs::remove_file(gone.with_extension("data-00000-of-00001")).unwrap();
    let (code, err) = stderr_of(&["inspect", p(&gone)]);
    assert_eq!(code, 2);
    assert!(err.contains("gone.data-00000-of-00001"), "{err}");
}

#[test]
fn savedmodel_ops_that_touch_files_or_run_python_are_suspicious() {
    // fixtures/tf/hostile (gen_hostile.py, tensorflow-cpu 2.21): each op
    // sits in a tf.function, so in the graph's function library; called
    // after tf.saved_model.load, each did what liveness.json says.
    let dir = fixture("tf/hostile");
    let live: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("liveness.json")).unwrap()).unwrap();
    for (case, op) in [
        ("read_file", "ReadFile"),
        ("write_file", "WriteFile"),
        ("matching_files", "MatchingFiles"),
        ("py_function", "EagerPyFunc"),
    ] {
        assert_eq!(live[case]["did_what_its_op_says"], case != "py_function", "{case}");
        let out = expect_code(&["scan", p(&dir.join(case).join("saved_model.pb"))], 1);
        assert!(
            out.starts_with("suspicious") && out.contains(&format!("TensorFlow op: {op}")),
            "{out}"
        );
    }
    let out = expect_code(&["scan", "-r", p(&dir.join("benign")), p(&fixture("tf/sm"))], 0);
    assert!(out.contains("(TensorFlow SavedModel)"), "{out}");
}
