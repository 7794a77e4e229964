//! Paddle .pdparams (fixtures made by paddle.save 3.3, and a split-parameter
//! layout written by gen_split.py): names, dtypes, shapes and bytes as
//! pickle.load gives them (fixtures/paddle/manifest.json); --names param;
//! conversion end to end; scan treats them as the pickles they are.

mod common;
use common::*;

fn numpy_str(d: &str) -> &'static str {
    match d {
        "F32" => "<f4",
        "F16" => "<f2",
        "BF16" => "<u2", // paddle saves bfloat16 as uint16
        other => panic!("unexpected {other}"),
    }
}

#[test]
fn fixtures_read_as_pickle_load_gives_them() {
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(fixture("paddle/manifest.json")).unwrap()).unwrap();
    let mut checked = 0;
    for (file, want) in m["files"].as_object().unwrap() {
        let path = fixture(&format!("paddle/{file}"));
        for param in [false, true] {
            let model = modelconv_paddle::open(&path, param).unwrap();
            let arrays: Vec<(&String, &serde_json::Value)> = want
                .as_object()
                .unwrap()
                .iter()
                .filter(|(k, _)| !k.starts_with('@'))
                .collect();
            assert_eq!(model.tensors.len(), arrays.len(), "{file}");
            for (name, w) in arrays {
                let structured = &want["@structured"][name];
                let expect = match (param, w["param"].as_str(), structured.as_str()) {
                    (true, Some(p), _) | (true, None, Some(p)) => p.to_string(),
                    _ => name.clone(),
                };
                let t = model.tensor(&expect).unwrap_or_else(|| panic!("{file}: no '{expect}'"));
                assert_eq!(numpy_str(t.info.dtype.name()), w["dtype"], "{file} {name}");
                assert_eq!(serde_json::json!(t.info.shape), w["shape"], "{file} {name}");
                assert_eq!(sha256_hex(&t.read_all().unwrap()), w["sha256"], "{file} {name}");
                checked += 1;
            }
        }
    }
    assert_eq!(checked, 26);
}

#[test]
fn pdparams_convert_and_scan() {
    let dir = tempfile::tempdir().unwrap();
    let src = fixture("paddle/lin.pdparams");
    let out = dir.path().join("q.gguf");
    ok(&["-q", "convert", p(&src), p(&out), "--dtype", "F16"]);
    let g = modelconv_gguf::open(&out).unwrap();
    assert_eq!(g.tensor("weight").unwrap().info.dtype.name(), "F16");
    let st = dir.path().join("p.safetensors");
    ok(&[
        "-q",
        "convert",
        p(&fixture("paddle/split.pdparams")),
        p(&st),
        "--names",
        "param",
    ]);
    let s = modelconv_safetensors::open(&st).unwrap();
    assert_eq!(s.tensor("embedding_0.w_0").unwrap().info.shape, [4, 5]);
    let (code, err) = stderr_of(&["inspect", p(&src), "--names", "nonsense"]);
    assert_eq!(code, 2);
    assert!(err.contains("structured or param"), "{err}");
    // A pickle like any other to scan: numpy's reconstruction is safe.
    let r: serde_json::Value = serde_json::from_str(&ok(&["scan", "--json", p(&src)])).unwrap();
    assert_eq!(r["verdict"], "safe");
    let j = inspect_json(&src);
    assert_eq!(j["format"], "paddle");
}
