//! TorchScript archives (torch.jit.save): the parameters and buffers, named
//! and ordered as torch.jit.load(f).state_dict() gives them
//! (fixtures/torch/torchscript_manifest.json), without running the code;
//! scan calls the archive suspicious for its code, not dangerous.

mod common;
use common::*;

fn torch_name(d: &str) -> &'static str {
    match d {
        "F32" => "float32",
        "I64" => "int64",
        other => panic!("unexpected {other}"),
    }
}

#[test]
fn scripted_module_reads_as_its_state_dict() {
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(fixture("torch/torchscript_manifest.json")).unwrap()).unwrap();
    let want = m["tensors"].as_array().unwrap();
    let src = fixture("torch/scripted_7.pt");
    let model = modelconv_pytorch::open_with(&src, modelconv_pytorch::Selection::StateDict).unwrap();
    assert_eq!(model.format, "torchscript");
    let names: Vec<&str> = model.tensors.iter().map(|t| t.info.name.as_str()).collect();
    let want_names: Vec<&str> = want.iter().map(|w| w["name"].as_str().unwrap()).collect();
    assert_eq!(names, want_names, "the state dict's names and order");
    for (t, w) in model.tensors.iter().zip(want) {
        assert_eq!(torch_name(t.info.dtype.name()), w["dtype"], "{}", t.info.name);
        assert_eq!(serde_json::json!(t.info.shape), w["shape"], "{}", t.info.name);
        assert_eq!(sha256_hex(&t.read_all().unwrap()), w["sha256"], "{}", t.info.name);
    }
    // --all adds the attributes that are not state (offset).
    let all = modelconv_pytorch::open_with(&src, modelconv_pytorch::Selection::All).unwrap();
    assert!(all.tensor("offset").is_some());

    let j = inspect_json(&src);
    assert_eq!(j["format"], "torchscript");
    assert!(j["notes"].to_string().contains("TorchScript"), "{}", j["notes"]);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("s.safetensors");
    ok(&["-q", "ckpt-to-safetensors", p(&src), "-o", p(&out)]);
    assert_eq!(modelconv_safetensors::open(&out).unwrap().tensors.len(), want.len());
}

#[test]
fn scan_reports_the_code_a_torchscript_archive_carries() {
    let r: serde_json::Value =
        serde_json::from_str(&expect_code(&["scan", "--json", p(&fixture("torch/scripted_7.pt"))], 1)).unwrap();
    assert_eq!(r["verdict"], "suspicious");
    let parts: Vec<&str> = r["files"][0]["streams"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["part"].as_str().unwrap())
        .collect();
    assert!(parts.iter().any(|p| p.starts_with("TorchScript code")), "{parts:?}");
    // Each program is listed, with the weights_only bypass of torch <= 2.5.
    let code = &r["files"][0]["streams"][0];
    let programs: Vec<&str> = code["globals"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["name"].as_str().unwrap())
        .collect();
    assert!(programs.contains(&"scripted_7/code/__torch__.py"), "{programs:?}");
    assert!(code.to_string().contains("CVE-2025-32434"), "{code}");
    assert!(
        !parts.iter().any(|p| p.ends_with(".py")),
        "code is not parsed as pickles: {parts:?}"
    );
}
