//! Every command's `--json` document, on success and on error, is valid
//! against the documented schema (docs/json-schema.json, docs/json.md),
//! and says what the text mode says.

mod common;
use common::*;
use serde_json::json;

fn write(dir: &std::path::Path, name: &str, bytes: &[u8]) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

/// A safetensors file of one F32 tensor `name` with `values`.
fn safetensors(dir: &std::path::Path, file: &str, name: &str, shape: &[u64], values: &[f32]) -> std::path::PathBuf {
    let header = json!({name: {"dtype": "F32", "shape": shape, "data_offsets": [0, values.len() * 4]}}).to_string();
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(header.as_bytes());
    for v in values {
        bytes.extend_from_slice(&v.to_le_bytes());
    }
    write(dir, file, &bytes)
}

#[test]
fn inspect_documents() {
    let v = json_doc(
        &["inspect", "--json", p(&fixture("gguf/gguf_py_types.gguf"))],
        0,
        "inspect",
    );
    // Typed, in file order; nested arrays typed inside.
    assert_eq!(
        v["metadata"]["t.u64"],
        json!({"type": "u64", "value": 9223372036854775809u64})
    );
    assert_eq!(v["metadata"]["t.arr_nested"]["type"], "array<array>");
    assert_eq!(v["metadata"]["t.arr_nested"]["value"][0]["type"], "array<i32>");
    // The file's order (as the text mode lists it), in the document's text.
    let raw = ok(&["inspect", "--json", p(&fixture("gguf/gguf_py_types.gguf"))]);
    let text = ok(&["inspect", p(&fixture("gguf/gguf_py_types.gguf"))]);
    let listed: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("  ")?.split_once(" = ").map(|(k, _)| k))
        .collect();
    assert_eq!(listed.len(), v["metadata"].as_object().unwrap().len());
    let at: Vec<usize> = listed
        .iter()
        .map(|k| raw.find(&format!("\"{k}\": {{")).unwrap())
        .collect();
    assert!(at.windows(2).all(|w| w[0] < w[1]), "{listed:?}");
    let ckpt = json_doc(
        &["inspect", "--json", p(&fixture("torch/lightning_7.ckpt"))],
        0,
        "inspect",
    );
    assert_eq!(ckpt["details"]["kind"], "checkpoint");
    let onnx = json_doc(&["inspect", "--json", p(&fixture("onnx/gpt_tiny.onnx"))], 0, "inspect");
    assert_eq!(onnx["details"]["kind"], "onnx");

    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("none.safetensors");
    let e = json_doc(&["inspect", "--json", p(&missing)], 2, "error");
    assert_eq!(e["error"]["kind"], "io");
    assert_eq!(e["error"]["path"], p(&missing));
    // A header that runs past the end: the offset is given.
    let cut = write(dir.path(), "cut.safetensors", &[64, 0, 0, 0, 0, 0, 0, 0, b'{']);
    let e = json_doc(&["inspect", "--json", p(&cut)], 2, "error");
    assert_eq!(
        (e["error"]["kind"].as_str(), e["error"]["offset"].as_u64()),
        (Some("truncated"), Some(8))
    );
    assert!(e["error"]["message"].as_str().unwrap().contains("cut.safetensors"));
    // Flags clap refuses are usage errors, as documents too.
    let e = json_doc(&["inspect", "--json", "--bogus", p(&cut)], 2, "error");
    assert_eq!(
        (e["command"].as_str(), e["error"]["kind"].as_str()),
        (Some("inspect"), Some("usage"))
    );
}

#[test]
fn convert_and_ckpt_documents() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("m.gguf");
    let v = json_doc(
        &[
            "convert",
            "--json",
            p(&fixture("safetensors/floats.safetensors")),
            p(&out),
            "--dtype",
            "fp16",
        ],
        0,
        "convert",
    );
    assert_eq!(
        (v["dtype"].as_str(), v["output_format"].as_str()),
        (Some("F16"), Some("gguf"))
    );
    assert_eq!(v["outputs"][0]["bytes"], std::fs::metadata(&out).unwrap().len());
    // What the cast left, and why: the integer tensor.
    assert!(v["unchanged"]
        .as_array()
        .unwrap()
        .iter()
        .any(|u| u["name"] == "ids" && u["reason"].as_str().unwrap().contains("integer")));
    assert!(v["changed"]
        .as_array()
        .unwrap()
        .iter()
        .all(|c| c["to"] == "F16" || c["to"] == "F32"));
    let e = json_doc(
        &[
            "convert",
            "--json",
            p(&out),
            p(&dir.path().join("x.gguf")),
            "--dtype",
            "F12",
        ],
        2,
        "error",
    );
    assert!(e["error"]["message"].as_str().unwrap().contains("F12"));

    let ck = json_doc(
        &[
            "ckpt-to-safetensors",
            "--json",
            p(&fixture("torch/simple_f32_7.pt")),
            "-o",
            p(&dir.path().join("s.safetensors")),
        ],
        0,
        "convert",
    );
    assert_eq!(ck["command"], "ckpt-to-safetensors");
    assert_eq!(ck["input_format"], "pytorch");
    let e = json_doc(
        &[
            "ckpt-to-safetensors",
            "--json",
            p(&fixture("safetensors/floats.safetensors")),
        ],
        2,
        "error",
    );
    assert!(
        e["error"]["message"].as_str().unwrap().contains("safetensors file"),
        "{e}"
    );
}

#[test]
fn quantize_documents_gguf_and_onnx() {
    let dir = tempfile::tempdir().unwrap();
    let q = json_doc(
        &[
            "quantize",
            "--json",
            p(&fixture("gguf/in-f32.gguf")),
            "-o",
            p(&dir.path().join("q.gguf")),
            "--type",
            "Q4_K_M",
        ],
        0,
        "quantize",
    );
    assert_eq!(
        (q["type"].as_str(), q["mix"].as_str()),
        (Some("Q4_K_M"), Some("llama.cpp"))
    );
    let o = json_doc(
        &[
            "quantize",
            "--json",
            p(&fixture("onnx/gpt_tiny.onnx")),
            "-o",
            p(&dir.path().join("q.onnx")),
            "--type",
            "INT8",
        ],
        0,
        "quantize",
    );
    assert_eq!((o["type"].as_str(), o["mix"].as_str()), (Some("INT8"), Some("onnx")));
    // The same fields in both.
    let keys = |v: &serde_json::Value| v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
    assert_eq!(keys(&q), keys(&o));
    // An error naming the tensor.
    let mut vals = vec![0.5f32; 32 * 32];
    vals[5] = f32::NAN;
    let nan = safetensors(dir.path(), "nan.safetensors", "w.weight", &[32, 32], &vals);
    let e = json_doc(
        &[
            "quantize",
            "--json",
            p(&nan),
            "-o",
            p(&dir.path().join("n.gguf")),
            "--q8_0",
        ],
        2,
        "error",
    );
    assert_eq!(e["error"]["tensor"], "w.weight");
    assert!(!dir.path().join("n.gguf").exists());
}

#[test]
fn diff_scan_and_formats_documents() {
    let dir = tempfile::tempdir().unwrap();
    let a = safetensors(dir.path(), "a.safetensors", "w", &[2], &[1.0, 2.0]);
    let b = safetensors(dir.path(), "b.safetensors", "w", &[2], &[1.0, 2.5]);
    let same = json_doc(&["diff", "--json", p(&a), p(&a)], 0, "diff");
    assert_eq!(same["ok"], true);
    let d = json_doc(&["diff", "--json", p(&a), p(&b)], 1, "diff");
    assert_eq!(
        (d["ok"].as_bool(), d["tensors"][0]["status"].as_str()),
        (Some(false), Some("over_tolerance"))
    );
    assert_eq!(d["tensors"][0]["max_abs"], 0.5);
    let e = json_doc(&["diff", "--json", p(&a), p(&dir.path().join("none"))], 2, "error");
    assert_eq!(e["error"]["kind"], "io");

    let s = json_doc(&["scan", "--json", p(&fixture("torch/simple_f32_7.pt"))], 0, "scan");
    assert_eq!(s["verdict"], "safe");
    let s = json_doc(
        &["scan", "--json", p(&fixture("malicious/reduce_os_system_p2.pkl"))],
        1,
        "scan",
    );
    assert_eq!(s["verdict"], "dangerous");
    let s = json_doc(&["scan", "--json", p(&dir.path().join("none"))], 2, "scan");
    assert_eq!(s["summary"]["unreadable"], 1);

    let f = json_doc(&["formats", "--json"], 0, "formats");
    assert!(f["formats"].as_array().unwrap().iter().any(|f| f["name"] == "gguf"));
}

/// The validator itself catches what it must (a test that cannot fail
/// proves nothing).
#[test]
fn the_schema_check_rejects_wrong_documents() {
    let root = json_schema();
    let good = json!({"schema_version": 1, "command": "formats", "formats": []});
    assert!(schema_violation(&root, &root, &good, "$").is_none());
    for bad in [
        json!({"schema_version": 2, "command": "formats", "formats": []}),
        json!({"schema_version": 1, "command": "formats"}),
        json!({"schema_version": 1, "command": "inspect", "error": {"kind": "nope", "message": "", "path": null, "tensor": null, "offset": null}}),
        json!({"schema_version": 1, "command": "inspect", "error": {"kind": "io", "message": ""}}),
    ] {
        assert!(schema_violation(&root, &root, &bad, "$").is_some(), "{bad}");
    }
}

/// The cause of an error is told by its `kind` (docs/json.md), one input
/// per kind: tests of a cause match the kind, not the message's words.
#[test]
fn each_cause_has_its_error_kind() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let evil = write(d, "evil.pkl", b"\x80\x02cos\nsystem\nX\x04\x00\x00\x00echo\x85R.");
    let mut many = b"GGUF".to_vec();
    for v in [
        3u32.to_le_bytes().to_vec(),
        0u64.to_le_bytes().to_vec(),
        70_000u64.to_le_bytes().to_vec(),
    ] {
        many.extend(v);
    }
    let many = write(d, "many.gguf", &many);
    let bad = write(d, "bad.safetensors", b"\x03\x00\x00\x00\x00\x00\x00\x00{x}");
    let st = fixture("safetensors/floats.safetensors");
    let gguf = fixture("hf/tiny-llama.F16.gguf");
    let out = |name: &str| d.join(name).to_string_lossy().into_owned();
    let cases: [(Vec<String>, &str); 5] = [
        (
            vec!["convert".into(), p(&evil).into(), out("o.safetensors")],
            "refused_global",
        ),
        (vec!["inspect".into(), p(&many).into()], "limit_exceeded"),
        (vec!["inspect".into(), p(&bad).into()], "malformed"),
        (
            vec![
                "quantize".into(),
                p(&gguf).into(),
                "-o".into(),
                out("q.safetensors"),
                "--q4_k".into(),
            ],
            "invalid",
        ),
        (
            vec![
                "convert".into(),
                p(&st).into(),
                out("o.gguf"),
                "--max-shard-size".into(),
                "1MB".into(),
            ],
            "unsupported",
        ),
    ];
    for (args, kind) in cases {
        let mut a: Vec<&str> = vec![&args[0], "--json"];
        a.extend(args[1..].iter().map(String::as_str));
        let e = json_doc(&a, 2, "error");
        assert_eq!(e["error"]["kind"], kind, "{a:?}: {e}");
    }
    assert!(dir_names(d)
        .iter()
        .all(|n| !n.starts_with("o.") && !n.starts_with("q.")));
}
