//! `meta`: metadata printed and edited without touching tensor data. An
//! edit in place (the header ends where it did) gives the same bytes as a
//! full rewrite; a growing header is a copy renamed over the file; a
//! SIGKILL during that copy leaves the original as it was.

mod common;
use common::*;
use std::path::{Path, PathBuf};

fn read(p: &Path) -> Vec<u8> {
    std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn copy_to(dir: &Path, rel: &str, name: &str) -> PathBuf {
    let dest = dir.join(name);
    std::fs::copy(fixture(rel), &dest).unwrap();
    dest
}

fn meta_json(args: &[&str]) -> serde_json::Value {
    let mut a = vec!["meta"];
    a.extend_from_slice(args);
    a.push("--json");
    json_doc(&a, 0, "meta")
}

/// The tensors as inspect lists them, without their offsets (which move
/// when a header grows).
fn tensors_of(path: &Path) -> Vec<String> {
    let v = inspect_json(path);
    let keys = ["name", "dtype", "shape", "bytes"];
    v["tensors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| keys.map(|k| t[k].to_string()).join(" "))
        .collect()
}

#[test]
fn without_edits_meta_prints_the_metadata_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let f = copy_to(dir.path(), "gguf/pure-Q2_K.gguf", "m.gguf");
    let before = read(&f);
    let text = ok(&["meta", p(&f)]);
    assert!(text.contains("llama.block_count = 2"), "{text}");
    let v = meta_json(&[p(&f)]);
    assert_eq!(v["metadata"]["llama.block_count"]["type"], "u32");
    assert_eq!(v["in_place"], serde_json::Value::Null);
    assert!(read(&f) == before);
}

#[test]
fn an_edit_that_fits_rewrites_the_header_in_place_as_a_full_rewrite_would() {
    let dir = tempfile::tempdir().unwrap();
    let f = copy_to(dir.path(), "gguf/pure-Q2_K.gguf", "m.gguf");
    let set = [
        "--set",
        "llama.context_length=4096",
        "--set",
        "general.architecture=llama",
    ];
    let out = dir.path().join("copy.gguf");
    let mut a = vec![p(&f), "-o", p(&out)];
    a.extend(set);
    assert_eq!(meta_json(&a)["in_place"], false);
    let mut a = vec![p(&f)];
    a.extend(set);
    let v = meta_json(&a);
    assert_eq!(v["in_place"], true, "{v}");
    assert_eq!(
        v["changed"],
        serde_json::json!(["llama.context_length", "general.architecture"])
    );
    assert!(read(&f) == read(&out), "in place differs from the full rewrite");
    assert_eq!(
        v["metadata"]["llama.context_length"],
        serde_json::json!({"type": "u32", "value": 4096})
    );
    assert_eq!(tensors_of(&f), tensors_of(&fixture("gguf/pure-Q2_K.gguf")));
    let original = read(&fixture("gguf/pure-Q2_K.gguf"));
    assert_eq!(read(&f).len(), original.len());
}

#[test]
fn a_growing_header_is_a_copy_with_the_same_data_and_permissions() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let f = copy_to(dir.path(), "gguf/pure-Q2_K.gguf", "m.gguf");
    std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o640)).unwrap();
    let template = dir.path().join("t.jinja");
    std::fs::write(&template, "{% for m in messages %}{{ m.content }}{% endfor %}").unwrap();
    let v = meta_json(&[
        p(&f),
        "--set",
        "general.name=A model: with colons",
        "--set",
        "x.ratio=0.5:f32",
        "--set",
        "x.on=true:bool",
        "--set",
        "x.ids=[1,2,3]:array<i32>",
        "--chat-template-file",
        p(&template),
        "--remove",
        "llama.rope.dimension_count",
    ]);
    assert_eq!(v["in_place"], false);
    let md = &v["metadata"];
    assert_eq!(md["general.name"]["value"], "A model: with colons");
    assert_eq!(md["x.ratio"], serde_json::json!({"type": "f32", "value": 0.5}));
    assert_eq!(md["x.on"]["type"], "bool");
    assert_eq!(
        md["x.ids"],
        serde_json::json!({"type": "array<i32>", "value": [1, 2, 3]})
    );
    assert!(md.get("llama.rope.dimension_count").is_none());
    assert!(md["tokenizer.chat_template"]["value"]
        .as_str()
        .unwrap()
        .contains("m.content"));
    // What inspect reads back, and the data.
    let back = inspect_json(&f);
    assert_eq!(&back["metadata"], md);
    assert_eq!(tensors_of(&f), tensors_of(&fixture("gguf/pure-Q2_K.gguf")));
    ok(&[
        "diff",
        p(&f),
        p(&fixture("gguf/pure-Q2_K.gguf")),
        "--atol",
        "0",
        "--rtol",
        "0",
    ]);
    let mode = std::fs::metadata(&f).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o640);
    assert_eq!(
        dir_names(dir.path()).len(),
        2,
        "a temporary file was left: {:?}",
        dir_names(dir.path())
    );
}

#[test]
fn bad_edits_exit_2_and_leave_the_file_as_it_was() {
    let dir = tempfile::tempdir().unwrap();
    let f = copy_to(dir.path(), "gguf/pure-Q2_K.gguf", "m.gguf");
    let before = read(&f);
    for (args, says) in [
        (vec!["--remove", "no.such.key"], "no such key"),
        (vec!["--set", "llama.block_count=abc"], "u32"),
        (vec!["--set", "x=300:u8"], "u8"),
        (vec!["--set", "novalue"], "KEY=VALUE"),
        (vec!["--set", "general.alignment=64"], "alignment"),
    ] {
        let mut a = vec!["meta", p(&f)];
        a.extend(args.iter().copied());
        let (code, err) = stderr_of(&a);
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(err.contains(says), "{args:?}: {err}");
        assert!(read(&f) == before, "{args:?} changed the file");
    }
    let (code, err) = stderr_of(&["meta", p(&fixture("numpy/c.npz")), "--set", "a=b"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("it edits") && err.contains("gguf"), "{err}");
}

#[test]
fn a_symbolic_link_is_edited_at_its_target_only_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    let target = copy_to(dir.path(), "gguf/pure-Q2_K.gguf", "m.gguf");
    let link = dir.path().join("link.gguf");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let before = read(&target);
    let (code, err) = stderr_of(&["meta", p(&link), "--set", "general.name=Linked"]);
    assert_eq!(code, 2);
    assert!(
        err.contains("symbolic link") && err.contains("--follow-symlinks"),
        "{err}"
    );
    assert!(read(&target) == before);
    ok(&[
        "-q",
        "meta",
        p(&link),
        "--set",
        "general.name=Linked",
        "--follow-symlinks",
    ]);
    assert!(std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink());
    assert!(ok(&["meta", p(&target)]).contains("general.name = Linked"));
}

#[test]
fn safetensors_metadata_is_edited_in_place_when_it_fits() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("m.safetensors");
    ok(&["-q", "convert", p(&fixture("safetensors/floats.safetensors")), p(&f)]);
    let v = meta_json(&[p(&f), "--set", "format=pt-and-a-long-description-of-it"]);
    assert_eq!(v["in_place"], false);
    let grown = read(&f).len();
    let v = meta_json(&[p(&f), "--set", "format=pt"]);
    assert_eq!(v["in_place"], true, "a shorter value is padded into the old header");
    assert_eq!(read(&f).len(), grown);
    assert_eq!(inspect_json(&f)["metadata"]["format"]["value"], "pt");
    assert_eq!(tensors_of(&f), tensors_of(&fixture("safetensors/floats.safetensors")));
}

/// A GGUF of one I8 tensor of `len` bytes, its data a hole in a sparse file.
fn sparse_gguf(path: &Path, len: u64) {
    let mut h = Vec::new();
    h.extend_from_slice(b"GGUF");
    h.extend_from_slice(&3u32.to_le_bytes());
    h.extend_from_slice(&1u64.to_le_bytes());
    h.extend_from_slice(&1u64.to_le_bytes());
    let put_str = |h: &mut Vec<u8>, s: &str| {
        h.extend_from_slice(&(s.len() as u64).to_le_bytes());
        h.extend_from_slice(s.as_bytes());
    };
    put_str(&mut h, "general.architecture");
    h.extend_from_slice(&8u32.to_le_bytes());
    put_str(&mut h, "llama");
    put_str(&mut h, "big");
    h.extend_from_slice(&1u32.to_le_bytes());
    h.extend_from_slice(&len.to_le_bytes());
    h.extend_from_slice(&24u32.to_le_bytes()); // GGML_TYPE_I8
    h.extend_from_slice(&0u64.to_le_bytes());
    h.resize(h.len().div_ceil(32) * 32, 0);
    std::fs::write(path, &h).unwrap();
    let f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    f.set_len(h.len() as u64 + len).unwrap();
}

#[test]
fn a_sigkill_during_a_rewriting_edit_leaves_the_original_intact() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("big.gguf");
    sparse_gguf(&f, 1 << 30);
    let head = |p: &Path| {
        let b = std::fs::File::open(p).unwrap();
        let mut buf = vec![0u8; 4096];
        std::os::unix::fs::FileExt::read_at(&b, &mut buf, 0).unwrap();
        (buf, std::fs::metadata(p).unwrap().len())
    };
    let original = head(&f);
    let long_name = format!("general.name={}", "n".repeat(200));
    let mut interrupted = 0;
    for delay_ms in [0u64, 2, 5, 10, 20, 40, 80] {
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_modelconv"))
            .args(["-q", "meta", p(&f), "--set", &long_name])
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(delay_ms));
        let _ = child.kill(); // SIGKILL
        let status = child.wait().unwrap();
        let now = head(&f);
        if status.success() {
            assert!(now != original, "the edit completed but the file is unchanged");
            break;
        }
        assert!(now == original, "killed after {delay_ms} ms: the original changed");
        interrupted += 1;
    }
    assert!(interrupted > 0, "no kill landed during the edit");
}
