//! Every torch.save fixture against what torch.load(weights_only=True)
//! returned (fixtures/torch/manifest.json): names, dtypes, shapes and the
//! sha256 of each tensor's contiguous bytes.

use modelconv_pytorch::{open_with, Selection};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/torch")
}

#[test]
fn every_fixture_matches_the_manifest() {
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir().join("manifest.json")).unwrap()).unwrap();
    let mut checked = 0;
    for (file, entry) in manifest.as_object().unwrap() {
        let path = dir().join(file);
        match entry["expect"].as_str().unwrap() {
            "refuse" => match open_with(&path, Selection::All).unwrap_err() {
                modelconv_ir::Error::RefusedGlobal { global, .. } => assert_eq!(global, "__main__.Net", "{file}"),
                other => panic!("{file}: {other}"),
            },
            "ok" | "numpy" => {
                let model = open_with(&path, Selection::All).unwrap_or_else(|e| panic!("{file}: {e}"));
                let want = entry["tensors"].as_object().unwrap();
                let names: Vec<&str> = model.tensors.iter().map(|t| t.info.name.as_str()).collect();
                let mut want_names: Vec<&str> = want.keys().map(String::as_str).collect();
                let mut got = names.clone();
                got.sort();
                want_names.sort();
                assert_eq!(got, want_names, "{file}");
                for t in &model.tensors {
                    let w = &want[&t.info.name];
                    let dt = modelconv_pytorch::torch::dtype_of(w["dtype"].as_str().unwrap()).unwrap();
                    assert_eq!(t.info.dtype, dt, "{file} {}", t.info.name);
                    let shape: Vec<u64> = w["shape"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|d| d.as_u64().unwrap())
                        .collect();
                    assert_eq!(t.info.shape, shape, "{file} {}", t.info.name);
                    let bytes = t.read_all().unwrap();
                    // (numpy arrays have no hash: torch's weights_only cannot load them.)
                    if let Some(want_sha) = w["sha256"].as_str() {
                        let hex: String = Sha256::digest(&bytes).iter().map(|b| format!("{b:02x}")).collect();
                        assert_eq!(hex, want_sha, "{file} {}", t.info.name);
                    }
                    checked += 1;
                }
            }
            other => panic!("unknown expectation {other}"),
        }
    }
    assert!(checked > 50, "{checked}");
}

#[test]
fn state_dict_selection() {
    let m = open_with(&dir().join("lightning_7.ckpt"), Selection::StateDict).unwrap();
    assert_eq!(m.notes, ["state dict: the tensors under 'state_dict'"]);
    let mut names: Vec<_> = m.tensors.iter().map(|t| t.info.name.clone()).collect();
    names.sort();
    assert_eq!(names, ["model.enc7.bias", "model.enc7.weight"]);
    let m = open_with(&dir().join("sdlike_7_legacy.ckpt"), Selection::StateDict).unwrap();
    assert_eq!(m.notes, ["state dict: the tensors under 'state_dict'"]);
    assert_eq!(m.tensors.len(), 2);
    let m = open_with(&dir().join("tied_7.bin"), Selection::StateDict).unwrap();
    assert_eq!(m.notes, ["state dict: the top-level tensors"]);
    assert_eq!(m.tensors.len(), 3);
}

#[test]
fn malicious_fixtures_are_refused_and_nothing_runs() {
    let mal = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/malicious");
    let canary = Path::new("/tmp/modelconv-canary");
    for entry in std::fs::read_dir(&mal).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "json" || e == "py") {
            continue;
        }
        let err = open_with(&path, Selection::All).expect_err(&format!("{} must be refused", path.display()));
        let msg = err.to_string();
        if path.extension().is_some_and(|e| e == "npz") {
            // numpy archives are no checkpoint (scan is what reads them).
            continue;
        }
        assert!(
            matches!(err, modelconv_ir::Error::RefusedGlobal { .. }) || msg.contains("after the pickle's STOP"),
            "{}: {msg}",
            path.display()
        );
    }
    assert!(!canary.exists() || std::fs::read_dir(canary).unwrap().next().is_none());
}

/// A state dict two levels down (`{"model": {"state_dict": …}}`, as chgnet
/// ships): found by the chain, named without a prefix, and the note says
/// which path was taken.
#[test]
fn nested_state_dict_is_found_through_the_key_chain() {
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir().join("nested_manifest.json")).unwrap()).unwrap();
    let model = open_with(&dir().join("nested_state_dict.pt"), Selection::StateDict).unwrap();
    let want = manifest["tensors"].as_object().unwrap();
    let mut names: Vec<&str> = model.tensors.iter().map(|t| t.info.name.as_str()).collect();
    names.sort();
    assert_eq!(names, want.keys().map(String::as_str).collect::<Vec<_>>());
    for t in &model.tensors {
        let hex: String = Sha256::digest(t.read_all().unwrap())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(hex, want[&t.info.name]["sha256"], "{}", t.info.name);
    }
    assert!(
        model.notes.iter().any(|n| n.contains("'model.state_dict'")),
        "{:?}",
        model.notes
    );
}
