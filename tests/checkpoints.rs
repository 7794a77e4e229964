//! PyTorch checkpoints through the CLI: `ckpt-to-safetensors` and `convert`
//! on real torch.save output, and refusal of everything that holds code.

mod common;
use common::*;

fn names(path: &std::path::Path) -> Vec<String> {
    let mut v: Vec<String> = modelconv_safetensors::open(path)
        .unwrap()
        .tensors
        .iter()
        .map(|t| t.info.name.clone())
        .collect();
    v.sort();
    v
}

#[test]
fn ckpt_to_safetensors_writes_exactly_the_state_dict() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("l.safetensors");
    ok(&[
        "ckpt-to-safetensors",
        p(&fixture("torch/lightning_7.ckpt")),
        "-o",
        p(&out),
    ]);
    assert_eq!(names(&out), ["model.enc7.bias", "model.enc7.weight"]);
    let sd = dir.path().join("sd.safetensors");
    ok(&["ckpt-to-safetensors", p(&fixture("torch/sdlike_7.ckpt")), "-o", p(&sd)]);
    assert_eq!(
        names(&sd),
        [
            "first_stage_model.decoder.conv_in.weight",
            "model.diffusion_model.out.7.weight"
        ]
    );
    let meta = modelconv_safetensors::open(&sd).unwrap().metadata;
    assert_eq!(meta.get("format").and_then(|v| v.as_str()), Some("pt"));
    // --all: optimizer state too, by dotted path.
    let all = dir.path().join("all.safetensors");
    ok(&[
        "ckpt-to-safetensors",
        p(&fixture("torch/lightning_7.ckpt")),
        "-o",
        p(&all),
        "--all",
    ]);
    assert!(names(&all).contains(&"optimizer_states.0.state.0.exp_avg".to_string()));
    // Default output name beside the input.
    let copy = dir.path().join("m.pt");
    std::fs::copy(fixture("torch/simple_f32_7_legacy.pt"), &copy).unwrap();
    ok(&["-q", "ckpt-to-safetensors", p(&copy)]);
    assert!(dir.path().join("m.safetensors").exists());
}

#[test]
fn zip_legacy_and_big_endian_give_the_same_tensors() {
    for (a, b) in [
        ("views_7.pt", "views_7_legacy.pt"),
        ("simple_f32_7.pt", "simple_f32_7_legacy.pt"),
        ("sdlike_7.ckpt", "sdlike_7_legacy.ckpt"),
    ] {
        ok(&[
            "diff",
            p(&fixture(&format!("torch/{a}"))),
            p(&fixture(&format!("torch/{b}"))),
        ]);
    }
}

#[test]
fn code_is_refused_and_never_run() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("o.safetensors");
    let (code, err) = stderr_of(&["convert", p(&fixture("torch/whole_module_7.pt")), p(&out)]);
    assert_eq!(code, 2);
    assert!(err.contains("__main__.Net") && err.contains("holds code"), "{err}");
    for e in std::fs::read_dir(fixture("malicious")).unwrap() {
        let f = e.unwrap().path();
        if f.extension().is_some_and(|x| x == "json" || x == "py") {
            continue;
        }
        let (code, err) = stderr_of(&["convert", p(&f), p(&out), "--from", "pytorch"]);
        assert_eq!(code, 2, "{}: {err}", f.display());
        assert!(!err.contains("panicked"), "{err}");
        let (code, _) = stderr_of(&["ckpt-to-safetensors", p(&f), "-o", p(&out)]);
        assert_eq!(code, 2);
    }
    assert!(dir_names(dir.path()).is_empty());
    let canary = std::path::Path::new("/tmp/modelconv-canary");
    assert!(!canary.exists() || std::fs::read_dir(canary).unwrap().next().is_none());
}

#[test]
fn numpy_arrays_become_tensors() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("n.safetensors");
    ok(&["convert", p(&fixture("torch/with_numpy_7.pt")), p(&out)]);
    let m = modelconv_safetensors::open(&out).unwrap();
    let np = m.tensor("np").unwrap();
    assert_eq!(np.info.shape, vec![2, 3]);
    assert_eq!(np.info.dtype.name(), "F32");
}

#[test]
fn sharded_checkpoints_and_tied_weights() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("s.safetensors");
    ok(&["ckpt-to-safetensors", p(&fixture("torch/sharded_7")), "-o", p(&out)]);
    assert_eq!(names(&out), ["layers.0.w", "layers.1.w", "layers.2.w", "layers.3.w"]);
    ok(&[
        "diff",
        p(&fixture("torch/sharded_7/pytorch_model.bin.index.json")),
        p(&out),
    ]);
    // tied_7.bin: lm_head.weight and model.embed_tokens.weight share a storage.
    let all = dir.path().join("t.safetensors");
    ok(&["ckpt-to-safetensors", p(&fixture("torch/tied_7.bin")), "-o", p(&all)]);
    assert_eq!(names(&all).len(), 3);
    let once = dir.path().join("d.safetensors");
    let out = run(&[
        "ckpt-to-safetensors",
        p(&fixture("torch/tied_7.bin")),
        "-o",
        p(&once),
        "--dedupe",
        "-v",
    ]);
    assert_eq!(out.status.code(), Some(0));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("dropped") && err.contains("same storage as"), "{err}");
    assert_eq!(names(&once).len(), 2);
}

#[test]
fn pt_output_round_trips_aligned_and_deterministic() {
    let dir = tempfile::tempdir().unwrap();
    let src = fixture("safetensors/all_dtypes.safetensors");
    let pt = dir.path().join("m.pt");
    let pt2 = dir.path().join("m2.pt");
    ok(&["convert", p(&src), p(&pt)]);
    ok(&["convert", p(&src), p(&pt2)]);
    // Same content apart from the archive's name (torch names it after the file).
    let b = std::fs::read(&pt2).unwrap();
    ok(&["convert", p(&src), p(&pt2)]);
    assert_eq!(
        std::fs::read(&pt2).unwrap(),
        b,
        "converting twice gives identical files"
    );
    // Our reader gets every tensor back bit for bit.
    ok(&["diff", p(&src), p(&pt)]);
    let back = dir.path().join("back.safetensors");
    ok(&["ckpt-to-safetensors", p(&pt), "-o", p(&back)]);
    let (x, y) = (
        modelconv_safetensors::open(&src).unwrap(),
        modelconv_safetensors::open(&back).unwrap(),
    );
    for t in &x.tensors {
        assert_eq!(
            t.read_all().unwrap(),
            y.tensor(&t.info.name).unwrap().read_all().unwrap(),
            "{}",
            t.info.name
        );
    }
    // Storage data starts on 64-byte boundaries, as torch writes it.
    let m = modelconv_pytorch::open_with(&pt, modelconv_pytorch::Selection::All).unwrap();
    for t in &m.tensors {
        if let Some(loc) = &t.location {
            assert_eq!(loc.offset % 64, 0, "{}", t.info.name);
        }
    }
}

#[test]
fn inspect_shows_the_top_level_and_verbose_lists_what_is_left_out() {
    let v = inspect_json(&fixture("torch/lightning_7.ckpt"));
    assert_eq!(v["format"], "pytorch");
    assert_eq!(v["details"]["kind"], "checkpoint");
    let top = v["details"]["value"]["top_level"].as_array().unwrap();
    let entry = |k: &str| top.iter().find(|e| e["key"] == k).unwrap().clone();
    assert_eq!(
        entry("epoch"),
        serde_json::json!({"key": "epoch", "kind": "int", "value": 3})
    );
    assert_eq!(
        entry("state_dict"),
        serde_json::json!({"key": "state_dict", "kind": "dict", "len": 2, "tensors": 2})
    );
    assert_eq!(v["tensors"].as_array().unwrap().len(), 2);
    let dir = tempfile::tempdir().unwrap();
    let out = run(&[
        "ckpt-to-safetensors",
        p(&fixture("torch/lightning_7.ckpt")),
        "-o",
        p(&dir.path().join("x.safetensors")),
        "-v",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("left out: global_step = int 1200"), "{err}");
}
