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
            // (A pickled class and a TorchScript archive carry code: tested below and in torchscript.rs.)
            let name = f.file_name().unwrap().to_string_lossy().into_owned();
            if f.is_file() && !name.starts_with("whole_module") && !name.starts_with("scripted") {
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

/// CRC-32 (zip's), bit by bit: test data only.
fn crc32(data: &[u8]) -> u32 {
    let mut c = !0u32;
    for &b in data {
        c ^= u32::from(b);
        for _ in 0..8 {
            c = if c & 1 != 0 { (c >> 1) ^ 0xedb8_8320 } else { c >> 1 };
        }
    }
    !c
}

/// A zip of stored entries, written by hand so that names may repeat and
/// each entry may carry an extra field of any id.
fn stored_zip(entries: &[(&str, &[u8], &[u8])]) -> Vec<u8> {
    let (mut out, mut central) = (Vec::new(), Vec::new());
    for (name, data, extra) in entries {
        let offset = out.len() as u32;
        let (crc, n) = (crc32(data), data.len() as u32);
        let common = |v: &mut Vec<u8>| {
            v.extend_from_slice(&[20, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
            v.extend_from_slice(&crc.to_le_bytes());
            v.extend_from_slice(&n.to_le_bytes());
            v.extend_from_slice(&n.to_le_bytes());
            v.extend_from_slice(&(name.len() as u16).to_le_bytes());
            v.extend_from_slice(&(extra.len() as u16).to_le_bytes());
        };
        out.extend_from_slice(b"PK\x03\x04");
        common(&mut out);
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(extra);
        out.extend_from_slice(data);
        central.extend_from_slice(b"PK\x01\x02\x14\x00");
        common(&mut central);
        central.extend_from_slice(&[0; 10]);
        central.extend_from_slice(&offset.to_le_bytes());
        central.extend_from_slice(name.as_bytes());
        central.extend_from_slice(extra);
    }
    let (at, len, n) = (out.len() as u32, central.len() as u32, entries.len() as u16);
    out.extend_from_slice(&central);
    out.extend_from_slice(b"PK\x05\x06\0\0\0\0");
    out.extend_from_slice(&n.to_le_bytes());
    out.extend_from_slice(&n.to_le_bytes());
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&at.to_le_bytes());
    out.extend_from_slice(&[0, 0]);
    out
}

/// One tar member in a ustar archive.
fn tar_member(name: &str, data: &[u8]) -> Vec<u8> {
    let mut h = vec![0u8; 512];
    h[..name.len()].copy_from_slice(name.as_bytes());
    h[100..107].copy_from_slice(b"0000644");
    h[124..135].copy_from_slice(format!("{:011o}", data.len()).as_bytes());
    h[156] = b'0';
    h[257..263].copy_from_slice(b"ustar\0");
    h[148..156].copy_from_slice(b"        ");
    let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
    h[148..155].copy_from_slice(format!("{sum:06o}\0").as_bytes());
    h.extend_from_slice(data);
    h.resize(h.len().div_ceil(512) * 512, 0);
    h
}

const TAIL: &[u8] = b"(S'id'\ntR.";

#[test]
fn every_differential_class_is_found() {
    // Each file runs os.system (or another dangerous call) under Python's
    // loaders; each must be reported dangerous, naming it.
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let payload = [b"cos\nsystem\n".as_slice(), TAIL].concat();
    let mut files: Vec<(&str, Vec<u8>)> = Vec::new();
    // Text-protocol arguments CPython parses and a strict parser rejects.
    for (name, prefix) in [
        ("int_hex.pkl", b"I0x10\n0".as_slice()),
        ("int_underscore.pkl", b"I1_000\n0"),
        ("int_long.pkl", b"I99999999999999999999999999999999\n0"),
        ("int_nul.pkl", b"I12\x00\xff\n0"),
        ("long_prefix.pkl", b"L0o17L\n0"),
        ("float_forms.pkl", b"F1.e5\n0F-Infinity\n0"),
        ("put_underscore.pkl", b"Np1_0\n0g1_0\n0"),
    ] {
        files.push((name, [prefix, &payload].concat()));
    }
    // Names spelled with escapes, assembled by STACK_GLOBAL.
    files.push((
        "s_escapes.pkl",
        b"\x80\x04S'o\\x73'\nS'sys\\164em'\n\x93(S'id'\ntR.".to_vec(),
    ));
    files.push((
        "v_escapes.pkl",
        b"\x80\x04Vo\\u0073\nVsyst\\u0065m\n\x93(Vid\ntR.".to_vec(),
    ));
    files.push(("binstring.pkl", b"\x80\x02U\x02osU\x06system\x93(U\x02idtR.".to_vec()));
    // Protocol-4 attribute chains and newer dangerous entries.
    files.push((
        "dotted.pkl",
        b"\x80\x04\x8c\x05torch\x8c\x17serialization.os.system\x93(Vid\ntR.".to_vec(),
    ));
    files.push((
        "load_from_bytes.pkl",
        [b"ctorch.storage\n_load_from_bytes\n".as_slice(), TAIL].concat(),
    ));
    files.push(("timeit.pkl", [b"ctimeit\ntimeit\n".as_slice(), TAIL].concat()));
    // A file that starts like GGUF is still a pickle to torch.load.
    files.push((
        "fake.gguf",
        [b"GGUF\x03\x00\x00\x00\x000".as_slice(), &payload].concat(),
    ));
    // Old torch's tar container.
    let mut tar = tar_member("sys_info", b"\x80\x02}q\x00.");
    tar.extend(tar_member("pickle", &payload));
    tar.resize(tar.len() + 1024, 0);
    files.push(("old.tar", tar));
    // A frame Python reads whole: the next pickle.load starts after it.
    let mut framed = b"\x80\x04\x95".to_vec();
    let inner = [b"K\x07.".as_slice(), &[0xff; 40]].concat();
    framed.extend_from_slice(&(inner.len() as u64).to_le_bytes());
    framed.extend_from_slice(&inner);
    framed.extend_from_slice(&payload);
    files.push(("frame.pt", framed));
    // Zips: duplicate names (torch takes the first), an unknown extra field,
    // a top-level data.pkl beside archive/data.pkl.
    let benign: &[u8] = b"\x80\x02}q\x00.";
    files.push((
        "dup.pt",
        stored_zip(&[("archive/data.pkl", &payload, b""), ("archive/data.pkl", benign, b"")]),
    ));
    files.push((
        "extra.pt",
        stored_zip(&[("archive/data.pkl", &payload, b"\xfe\xca\x04\x00abcd")]),
    ));
    files.push((
        "shadow.pt",
        stored_zip(&[("data.pkl", &payload, b""), ("archive/data.pkl", benign, b"")]),
    ));
    // .npy object arrays in other spellings numpy accepts.
    for (name, descr) in [
        ("dq.npy", "\"|O\""),
        ("o8.npy", "'|O8'"),
        ("object.npy", "'object'"),
        ("struct.npy", "[('a', '<f4'), ('b', '|O')]"),
    ] {
        let h = format!("{{'descr': {descr}, 'fortran_order': False, 'shape': (1,), }}");
        let mut npy = b"\x93NUMPY\x01\x00".to_vec();
        npy.extend_from_slice(&(h.len() as u16).to_le_bytes());
        npy.extend_from_slice(h.as_bytes());
        npy.extend_from_slice(&payload);
        files.push((name, npy));
    }
    for (name, bytes) in &files {
        write(d, name, bytes);
    }
    let r = scan_json(&[p(d)], 1);
    let found = r["files"].as_array().unwrap();
    assert_eq!(found.len(), files.len());
    for f in found {
        assert_eq!(f["verdict"], "dangerous", "{f:#}");
    }
    // A member that claims LZMA but cannot be inflated is never safe (the
    // npz fixtures in fixtures/malicious cover deflate, bzip2 and LZMA that do).
    let mut lzma = stored_zip(&[("arr.npy", &payload, b"")]);
    for sig in [b"PK\x03\x04".as_slice(), b"PK\x01\x02"] {
        let at = lzma.windows(4).position(|w| w == sig).unwrap();
        let method_at = at + if sig == b"PK\x03\x04" { 8 } else { 10 };
        lzma[method_at] = 14;
    }
    let z = write(d, "lzma.npz", &lzma);
    let r = scan_json(&[p(&z)], 1);
    assert_eq!(r["verdict"], "suspicious", "{r:#}");
}

#[test]
fn benign_torch_globals_are_safe() {
    // What torch.load(weights_only=True) accepts: sparse layouts, quantized
    // tensors, devices, every dtype.
    let dir = tempfile::tempdir().unwrap();
    let mut p4 = b"\x80\x02".to_vec();
    for (m, n) in [
        ("torch.serialization", "_get_layout"),
        ("torch._utils", "_rebuild_sparse_tensor"),
        ("torch._utils", "_rebuild_qtensor"),
        ("torch", "device"),
        ("torch", "float8_e4m3fnuz"),
        ("torch", "float8_e5m2fnuz"),
        ("torch", "per_channel_affine"),
        ("torch", "QUInt8Storage"),
        ("collections", "Counter"),
    ] {
        p4.extend_from_slice(format!("c{m}\n{n}\n0").as_bytes());
    }
    p4.extend_from_slice(b"N.");
    let f = write(dir.path(), "benign.pkl", &p4);
    let r = scan_json(&[p(&f)], 0);
    assert_eq!(r["verdict"], "safe", "{r:#}");
}

/// Files of formats without pickles are named, not called "no pickle".
#[test]
fn other_formats_are_named() {
    let dir = tempfile::tempdir().unwrap();
    for (name, bytes, kind) in [
        (
            "old.bin",
            &b"lmgg\x01\x00\x00\x00abcdefgh"[..],
            "legacy GGML/GGMF/GGJT weights",
        ),
        (
            "m.tflite",
            &b"\x1c\x00\x00\x00TFL3\x00\x00\x00\x00"[..],
            "TensorFlow Lite (flatbuffer)",
        ),
    ] {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        let r = scan_json(&[p(&path)], 0);
        assert_eq!(r["files"][0]["kind"], kind);
        assert_eq!(r["verdict"], "safe");
    }
}

/// `scan -` reads standard input, and reports it as `-`.
#[test]
fn standard_input_is_scanned() {
    use std::process::{Command, Stdio};
    let mut child = Command::new(env!("CARGO_BIN_EXE_modelconv"))
        .args(["scan", "--json", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(&os_system_pickle()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (r["files"][0]["path"].as_str(), r["verdict"].as_str()),
        (Some("-"), Some("dangerous"))
    );
}

/// Keras models made by Keras 3.15 (fixtures/keras/gen_scan.py): a Lambda
/// layer (bytecode Keras runs on load, CVE-2024-3660) is dangerous, in a
/// .keras archive and in an .h5's model_config, naming the layer; a custom
/// layer class is suspicious; the same model without them passes.
#[test]
fn keras_lambda_layers_and_custom_objects() {
    for (file, verdict, global) in [
        (
            "keras/lambda.keras",
            "dangerous",
            Some(("keras.layers.Lambda", "double")),
        ),
        ("keras/lambda.h5", "dangerous", Some(("keras.layers.Lambda", "double"))),
        ("keras/custom.keras", "suspicious", Some(("my_pkg", "Scale"))),
        ("keras/plain.keras", "safe", None),
        ("keras/plain.h5", "safe", None),
    ] {
        let code = if verdict == "safe" { 0 } else { 1 };
        let r = scan_json(&[p(&fixture(file))], code);
        assert_eq!(r["verdict"], verdict, "{file}");
        if let Some((module, name)) = global {
            let g = &r["files"][0]["streams"][0]["globals"][0];
            assert_eq!(
                (g["module"].as_str(), g["name"].as_str()),
                (Some(module), Some(name)),
                "{file}"
            );
        }
    }
}

/// Keras gadgets beyond Lambda and configs read the way Keras reads them
/// (fixtures/keras/gen_gadgets.py, Keras 3.15 + h5py 3.16): each names
/// what Keras would run, import or read, nested at any depth.
#[test]
fn keras_gadgets_and_configs_read_as_keras_reads_them() {
    let lambda = ("keras.layers.Lambda", "double");
    for (file, verdict, (module, name)) in [
        ("fn_os_system.keras", "dangerous", ("os", "system")),
        ("get_file.keras", "dangerous", ("keras.utils", "get_file")),
        (
            "unsafe_switch.keras",
            "dangerous",
            ("keras.config", "enable_unsafe_deserialization"),
        ),
        (
            "torch_wrapper.keras",
            "dangerous",
            ("keras.layers.TorchModuleWrapper", "wrapped"),
        ),
        ("tfsm.keras", "dangerous", ("keras.layers.TFSMLayer", "tfsm")),
        (
            "vocab_path.keras",
            "suspicious",
            ("Keras vocabulary file", "../../etc/passwd"),
        ),
        ("nested_lambda.keras", "dangerous", ("keras.layers.Lambda", "deep")),
        ("bom_config.keras", "dangerous", lambda),
        ("utf16_config.keras", "dangerous", lambda),
        ("nan_config.keras", "dangerous", lambda),
        ("nul_name.keras", "dangerous", lambda),
        ("config_only.keras", "dangerous", lambda),
        ("big_config.keras", "dangerous", lambda),
        ("npz_weights.keras", "dangerous", ("posix", "system")),
        ("dir_format/config.json", "dangerous", lambda),
        ("userblock.h5", "dangerous", lambda),
        ("decoy.h5", "dangerous", lambda),
        ("escaped.h5", "dangerous", lambda),
    ] {
        let path = fixture(&format!("keras/gadgets/{file}"));
        let r = scan_json(&[p(&path)], 1);
        assert_eq!(r["verdict"], verdict, "{file}: {r}");
        let named = r["files"][0]["streams"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|s| s["globals"].as_array().unwrap().iter())
            .any(|g| g["module"] == module && g["name"] == name);
        assert!(named, "{file}: {module} {name} not in {r}");
    }
}

/// A pickle that runs `os.system` and then carries ~600 MB of bytes: the
/// file is sparse, so it costs no disk, but it cannot be mapped under a
/// 400 MB address-space limit.
fn big_os_system_pickle(dir: &Path) -> std::path::PathBuf {
    const PAYLOAD: u64 = 600 << 20;
    let path = dir.join("big.pkl");
    let mut f = std::fs::File::create(&path).unwrap();
    f.write_all(b"\x80\x04cos\nsystem\nX\x04\x00\x00\x00echo\x85R\x8e")
        .unwrap();
    f.write_all(&PAYLOAD.to_le_bytes()).unwrap();
    let head = f.metadata().unwrap().len();
    f.set_len(head + PAYLOAD).unwrap();
    use std::io::{Seek, SeekFrom};
    f.seek(SeekFrom::End(0)).unwrap();
    f.write_all(b"0.").unwrap();
    path
}

#[test]
fn a_file_too_big_to_map_under_ulimit_is_never_safe() {
    let dir = tempfile::tempdir().unwrap();
    let big = big_os_system_pickle(dir.path());
    let limit = std::time::Duration::from_secs(60);
    // Unlimited, the payload is read and the call is found.
    let free = scan_json(&[p(&big)], 1);
    assert_eq!(free["verdict"], "dangerous");
    // Under `ulimit -v 400000` the file cannot be mapped: not "safe", exit 2.
    let (code, out, err) = run_under_rlimit(&["scan", "--json", p(&big)], 400_000 << 10, limit);
    assert!(matches!(code, Some(1) | Some(2)), "exit {code:?}: {err}");
    let doc: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_ne!(doc["verdict"], "safe", "{out}");
    let (code, out, err) = run_under_rlimit(&["scan", p(&big)], 400_000 << 10, limit);
    assert!(matches!(code, Some(1) | Some(2)), "exit {code:?}: {err}");
    assert!(!out.contains("safe"), "{out}");
}

#[test]
fn an_unreadable_file_fails_the_scan_in_text_and_json() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ok.pkl"), b"\x80\x02K\x01.").unwrap();
    let missing = dir.path().join("gone.pkl");
    let doc = scan_json(&[p(dir.path()), p(&missing)], 2);
    assert_eq!(doc["verdict"], "unreadable");
    assert_eq!(doc["summary"]["unreadable"], 1);
    let text = expect_code(&["scan", p(&missing)], 2);
    assert!(text.contains("unreadable"), "{text}");
}

/// ONNX external data outside the model's folder (onnx's path traversal
/// advisories): every place onnx.load resolves a tensor is looked at, a
/// symlink out of the folder counts, and data beside the model is safe.
#[test]
fn onnx_external_data_outside_the_folder_is_dangerous() {
    for name in ["climb", "absolute", "subgraph", "backslash"] {
        let f = fixture(&format!("onnx/traversal/{name}.onnx"));
        let r = scan_json(&[p(&f)], 1);
        let file = &r["files"][0];
        assert_eq!(file["kind"], "onnx", "{name}");
        assert_eq!(file["verdict"], "dangerous", "{name}");
        let g = &file["streams"][0]["globals"][0];
        assert_eq!(g["module"], "external data of tensor w", "{name}");
        assert!(g["offset"].as_u64().unwrap() > 0, "{name}");
        // The reader refuses the same files (exit 2), before opening any.
        expect_code(&["inspect", p(&f)], 2);
    }
    // Two branches of one If: each is reported.
    let r = scan_json(&[p(&fixture("onnx/traversal/subgraph.onnx"))], 1);
    assert_eq!(r["files"][0]["streams"][0]["globals"].as_array().unwrap().len(), 2);
    scan_json(&[p(&fixture("onnx/external/fp32_ext.onnx"))], 0);

    // The same benign model, its data file a symlink to a file outside.
    let outside = tempfile::tempdir().unwrap();
    let secret = write(outside.path(), "secret.bin", &[0u8; 4096]);
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(fixture("onnx/external/fp32_ext.onnx"), dir.path().join("m.onnx")).unwrap();
    std::os::unix::fs::symlink(&secret, dir.path().join("w.bin")).unwrap();
    let r = scan_json(&[p(&dir.path().join("m.onnx"))], 1);
    let g = &r["files"][0]["streams"][0]["globals"][0];
    assert_eq!(g["verdict"], "dangerous");
    assert!(g["reason"].as_str().unwrap().contains("symlink"), "{g}");

    // A model that stops being a protobuf part-way is never safe.
    let bytes = std::fs::read(fixture("onnx/traversal/subgraph.onnx")).unwrap();
    let cut = write(dir.path(), "cut.onnx", &bytes[..bytes.len() - 40]);
    let r = scan_json(&[p(&cut)], 1);
    assert_eq!(r["files"][0]["verdict"], "suspicious");
}

/// HDF5 external links (h5py opens the linked file when Keras reads the
/// group): out of the folder is dangerous, beside it suspicious; found
/// however deep the link sits.
#[test]
fn hdf5_external_links_are_reported() {
    for (name, verdict, target) in [
        ("ext_absolute", "dangerous", "/etc/hostname"),
        ("ext_climb", "dangerous", "../../secret.h5"),
        ("ext_beside", "suspicious", "part2.h5"),
    ] {
        let r = scan_json(&[p(&fixture(&format!("hdf5/{name}.h5")))], 1);
        let file = &r["files"][0];
        assert_eq!(file["verdict"], verdict, "{name}");
        let g = &file["streams"][0]["globals"][0];
        assert_eq!(
            (g["module"].as_str(), g["name"].as_str()),
            (Some("HDF5 external link"), Some(target))
        );
    }
    // A group linked into itself is walked once.
    scan_json(&[p(&fixture("hdf5/links.h5"))], 0);
    // External raw storage and virtual datasets (gen_external.py; h5py read
    // the named files, external_liveness.json): reported, never opened.
    for (name, verdict, module, target) in [
        (
            "efl_absolute",
            "dangerous",
            "HDF5 external raw data of w",
            "/etc/hostname",
        ),
        (
            "efl_beside",
            "suspicious",
            "HDF5 external raw data of w",
            "efl_beside.bin",
        ),
        ("vds_absolute", "suspicious", "HDF5 virtual dataset in group", "/"),
    ] {
        let r = scan_json(&[p(&fixture(&format!("hdf5/{name}.h5")))], 1);
        let file = &r["files"][0];
        assert_eq!(file["verdict"], verdict, "{name}: {r:#}");
        let g = &file["streams"][0]["globals"][0];
        assert_eq!(
            (g["module"].as_str(), g["name"].as_str()),
            (Some(module), Some(target)),
            "{name}"
        );
    }
    let (code, err) = stderr_of(&["inspect", p(&fixture("hdf5/efl_absolute.h5"))]);
    assert_eq!(code, 2);
    assert!(err.contains("external files, which are never opened"), "{err}");
}

/// Two of the last red team's "safe" payloads (both run `echo` under
/// CPython 3.11's pickle.loads): a BINUNICODE holding a UTF-8-encoded
/// surrogate (decoded with surrogatepass) before the payload, and more
/// than 2^20 pushes dropped by POP_MARK before it, our stack limit, not
/// CPython's: the scan reads on past the limit, opcode by opcode, and
/// finds GLOBAL and STACK_GLOBAL (through the memo) alike.
#[test]
fn payloads_after_a_surrogate_or_past_our_stack_limit_are_found() {
    let dir = tempfile::tempdir().unwrap();
    let payload = b"cos\nsystem\n(S'echo x'\ntR.";
    let mut surrogate = b"\x80\x02X\x03\x00\x00\x00\xed\xa0\x800".to_vec();
    surrogate.extend_from_slice(payload);
    let stack_global = b"\x8c\x02os\x94\x8c\x06system\x94h\x00h\x01\x93\x8c\x04echo\x85R.";
    for (name, tail) in [("global", &payload[..]), ("stack_global", &stack_global[..])] {
        let mut deep = b"\x80\x04(".to_vec();
        deep.resize(deep.len() + (1 << 20) + 10, b'N');
        deep.push(b'1');
        deep.extend_from_slice(tail);
        let f = write(dir.path(), &format!("deep_{name}.pkl"), &deep);
        let r = scan_json(&[p(&f)], 1);
        assert_eq!(r["files"][0]["verdict"], "dangerous", "{name}: {r}");
        assert_eq!(r["files"][0]["streams"][0]["globals"][0]["name"], "system", "{name}");
    }
    let f = write(dir.path(), "surrogate.pkl", &surrogate);
    let r = scan_json(&[p(&f)], 1);
    assert_eq!(r["files"][0]["verdict"], "dangerous", "{r}");
}

#[test]
fn zip_and_pickle_tricks_made_by_torch_and_numpy_are_dangerous() {
    // fixtures/malicious/zip_tricks (gen_zip_tricks.py): each ran its
    // payload under the loader liveness.json names, or (flag bits) is
    // refused by torch 2.15's miniz but not by older readers.
    let dir = fixture("malicious/zip_tricks");
    let live: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("liveness.json")).unwrap()).unwrap();
    let cases = live.as_object().unwrap();
    assert_eq!(cases.len(), 12);
    for (name, how) in cases {
        let flagged = name.starts_with("flag_");
        assert_eq!(how["payload_ran"], !flagged, "{name}: {how}");
        let r = scan_json(&[p(&dir.join(name))], 1);
        assert_eq!(r["verdict"], "dangerous", "{name}: {r:#}");
    }
    // The archives whose directory Python's zipfile reads differently from
    // torch's miniz say so.
    for name in ["understated.npz", "prepended.npz", "zip64_redirect.npz"] {
        let out = expect_code(&["scan", p(&dir.join(name))], 1);
        assert!(out.contains("read differently by torch's reader"), "{out}");
        assert!(out.contains("b.npy (npy object array)"), "{out}");
        // Reading it, we would not read what numpy.load reads: refused.
        let (code, err) = stderr_of(&["inspect", p(&dir.join(name))]);
        assert_eq!(code, 2);
        assert!(err.contains("a tampered archive"), "{err}");
    }
    let benign = expect_code(&["scan", p(&fixture("torch/simple_f32_7.pt"))], 0);
    assert!(!benign.contains("read differently"), "{benign}");
}

#[test]
fn joblib_files_are_read_as_joblib_load_reads_them() {
    // fixtures/joblib (gen_joblib.py): arrays' bytes sit between pickle
    // opcodes, the whole file may be compressed; the payloads come after
    // the arrays or inside an object array, and joblib.load ran each.
    let dir = fixture("joblib");
    let live: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("liveness.json")).unwrap()).unwrap();
    let cases = live.as_object().unwrap();
    assert_eq!(cases.len(), 13);
    for (name, how) in cases {
        let payload = name.starts_with("payload_");
        assert_eq!(how["payload_ran"], payload, "{name}");
        let r = scan_json(&[p(&dir.join(name))], if payload { 1 } else { 0 });
        let verdict = if payload { "dangerous" } else { "safe" };
        assert_eq!(r["verdict"], verdict, "{name}: {r:#}");
        if payload {
            assert!(r.to_string().contains("\"posix\""), "{name}: {r:#}");
        }
    }
    // Cut short, a compressed file is never safe.
    let tmp = tempfile::tempdir().unwrap();
    let gz = std::fs::read(dir.join("benign_gzip.joblib")).unwrap();
    let cut = write(tmp.path(), "cut.joblib", &gz[..gz.len() - 40]);
    let r = scan_json(&[p(&cut)], 1);
    assert_eq!(r["verdict"], "suspicious", "{r:#}");
    // An array record claiming more bytes than the file holds is never safe.
    let plain = std::fs::read(dir.join("benign_plain.joblib")).unwrap();
    let short = write(tmp.path(), "short.joblib", &plain[..plain.len() / 2]);
    let r = scan_json(&[p(&short)], 1);
    assert_eq!(r["verdict"], "suspicious", "{r:#}");
}

#[test]
fn chat_templates_that_escape_jinja_are_dangerous_and_real_ones_safe() {
    // fixtures/chat_templates/hostile (gen_hostile.py): each template ran
    // its payload under a plain jinja2.Environment and was refused by
    // transformers' sandbox; the GGUF, tokenizer_config.json and
    // safetensors carry them where their loaders look.
    let dir = fixture("chat_templates/hostile");
    let live: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("liveness.json")).unwrap()).unwrap();
    let cases = live.as_object().unwrap();
    assert_eq!(cases.len(), 12);
    let mut files = std::collections::BTreeSet::new();
    for (case, how) in cases {
        assert_eq!(how["plain_jinja2_ran"], true, "{case}");
        files.insert(case.split(' ').next().unwrap().to_string());
    }
    assert_eq!(files.len(), 11);
    for name in &files {
        let r = scan_json(&[p(&dir.join(name))], 1);
        assert_eq!(r["verdict"], "dangerous", "{name}: {r:#}");
    }
    // Both of the GGUF's templates, the named one too.
    let out = expect_code(&["scan", p(&dir.join("model.gguf"))], 1);
    assert!(
        out.contains("tokenizer.chat_template.tool_use (chat template)"),
        "{out}"
    );
    assert!(out.contains("attribute __subclasses__"), "{out}");
    // Every template llama.cpp ships (models/templates at the reference
    // commit) and the tokenizer configs of our HF fixtures are safe.
    let r = scan_json(&["-r", p(&fixture("chat_templates/llama.cpp")), p(&fixture("hf"))], 0);
    let templates = r["files"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["kind"] == "chat template")
        .count();
    assert_eq!(templates, 70);
}
