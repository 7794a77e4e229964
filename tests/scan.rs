//! `modelconv scan`: every malicious fixture is flagged, no benign file is,
//! and attack patterns beyond the fixtures are found by content.

mod common;
use common::*;
use std::io::Write;
use std::path::Path;

fn scan_json(args: &[&str], code: i32) -> serde_json::Value {
    let mut a = vec!["scan", "--json"];
    a.extend_from_slice(args);
    serde_json::from_str(&expect_code(&a, code)).unwrap()
}

/// protocol-2 pickle: GLOBAL os system, ('echo',), REDUCE, STOP.
fn os_system_pickle() -> Vec<u8> {
    let mut v = vec![0x80, 2];
    v.extend_from_slice(b"cos\nsystem\n");
    v.extend_from_slice(b"X\x04\x00\x00\x00echo\x85R.");
    v
}

#[test]
fn malicious_fixtures_are_dangerous() {
    let r = scan_json(&[p(&fixture("malicious"))], 1);
    for f in r["files"].as_array().unwrap() {
        let path = f["path"].as_str().unwrap();
        if path.ends_with(".json") || path.ends_with(".py") {
            continue;
        }
        assert_eq!(f["verdict"], "dangerous", "{path}");
    }
    assert!(r["summary"]["dangerous"].as_u64().unwrap() >= 12);
}

#[test]
fn benign_files_are_safe() {
    let dir = tempfile::tempdir().unwrap();
    for sub in ["torch", "gguf", "safetensors"] {
        for e in std::fs::read_dir(fixture(sub)).unwrap() {
            let f = e.unwrap().path();
            if f.is_file() && !f.file_name().unwrap().to_string_lossy().starts_with("whole_module") {
                std::fs::copy(
                    &f,
                    dir.path()
                        .join(format!("{sub}-{}", f.file_name().unwrap().to_string_lossy())),
                )
                .unwrap();
            }
        }
    }
    let r = scan_json(&[p(dir.path())], 0);
    assert_eq!(r["summary"]["suspicious"], 0);
    assert_eq!(r["summary"]["dangerous"], 0);
    // A pickled class is not dangerous by name, but it is code: suspicious.
    let out = expect_code(&["scan", p(&fixture("torch/whole_module_7.pt"))], 1);
    assert!(out.contains("suspicious") && out.contains("__main__.Net"), "{out}");
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

#[test]
fn attacks_beyond_the_fixtures() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // A pickle wearing another format's extension.
    write(d, "model.safetensors", &os_system_pickle());
    // A pickle inside a zip under an innocent name, stored and deflated.
    {
        let f = std::fs::File::create(d.join("bundle.zip")).unwrap();
        let mut z = zip::ZipWriter::new(f);
        let stored = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
        z.start_file("assets/weights.dat", stored).unwrap();
        z.write_all(&os_system_pickle()).unwrap();
        z.finish().unwrap();
    }
    // An .npy object array: header, then a pickle.
    let header = "{'descr': '|O', 'fortran_order': False, 'shape': (1,), }";
    let mut npy = b"\x93NUMPY\x01\x00".to_vec();
    let padded = format!("{header:<118}\n");
    npy.extend_from_slice(&(padded.len() as u16).to_le_bytes());
    npy.extend_from_slice(padded.as_bytes());
    npy.extend_from_slice(&os_system_pickle());
    write(d, "array.npy", &npy);
    // EXT opcode (code from the extension registry by number).
    write(d, "ext.pkl", &[0x80, 2, 0x82, 7, b')', b'R', b'.']);
    // Protocol 0 without a STOP: pickle.load would still call os.system first.
    write(d, "nostop.pkl", b"cos\nsystem\n(S'echo'\ntR");
    // A harmless pickle followed by a second one.
    let mut two = vec![0x80, 2, b'N', b'.'];
    two.extend_from_slice(&os_system_pickle());
    write(d, "two.bin", &two);
    let r = scan_json(&["-r", p(d)], 1);
    for f in r["files"].as_array().unwrap() {
        assert_eq!(f["verdict"], "dangerous", "{}", f);
    }
    assert_eq!(r["files"].as_array().unwrap().len(), 6);
}

#[test]
fn missing_paths_exit_2() {
    let (code, err) = stderr_of(&["scan", "/nonexistent/model.pt"]);
    assert_eq!(code, 2);
    assert!(err.contains("/nonexistent/model.pt"), "{err}");
}

#[test]
fn control_characters_in_names_are_escaped() {
    // A global whose name carries terminal escapes (cursor up, erase line)
    // cannot rewrite the report; the same for tensor names in inspect.
    let dir = tempfile::tempdir().unwrap();
    let evil = write(dir.path(), "evil.pkl", b"cos\x1b[1A\x1b[2K\nsystem\n(S'id'\ntR.");
    let out = run(&["scan", p(&evil)]);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!text.contains('\x1b'), "{text}");
    assert!(text.contains("os\\u{1b}[1A\\u{1b}[2K.system"), "{text}");
    let header = r#"{"a\u001b[2Kb\u202e":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#;
    let mut st = (header.len() as u64).to_le_bytes().to_vec();
    st.extend_from_slice(header.as_bytes());
    st.extend_from_slice(&[0; 4]);
    let f = write(dir.path(), "n.safetensors", &st);
    let text = ok(&["inspect", p(&f)]);
    assert!(!text.contains('\x1b') && !text.contains('\u{202e}'), "{text}");
    assert!(text.contains("a\\u{1b}[2Kb\\u{202e}"), "{text}");
}
