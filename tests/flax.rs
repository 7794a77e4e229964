//! Flax msgpack: the fixtures (one written by flax itself) read to what
//! msgpack_restore returns (fixtures/flax/manifest.json); flax's file is
//! written back byte for byte; conversions are bit-exact; truncated or
//! lying documents end in exit 2.

mod common;
use common::*;

fn ir_dtype(numpy: &str) -> &'static str {
    match numpy {
        "float32" => "F32",
        "float16" => "F16",
        "bfloat16" => "BF16",
        "int32" => "I32",
        "int64" => "I64",
        other => panic!("unexpected {other}"),
    }
}

#[test]
fn fixtures_read_as_msgpack_restore_returns_them() {
    let m: serde_json::Value = serde_json::from_slice(&std::fs::read(fixture("flax/manifest.json")).unwrap()).unwrap();
    let mut arrays = 0;
    for (file, entries) in m["files"].as_object().unwrap() {
        let model = modelconv_flax::open(&fixture(&format!("flax/{file}"))).unwrap();
        for (name, want) in entries.as_object().unwrap() {
            match model.tensor(name) {
                Some(t) => {
                    assert_eq!(
                        t.info.dtype.name(),
                        ir_dtype(want["dtype"].as_str().unwrap()),
                        "{file} {name}"
                    );
                    assert_eq!(serde_json::json!(t.info.shape), want["shape"], "{file} {name}");
                    assert_eq!(sha256_hex(&t.read_all().unwrap()), want["sha256"], "{file} {name}");
                    arrays += 1;
                }
                // Other leaves are metadata (the complex number as [real, imag]).
                None => assert_eq!(
                    model.metadata.get(name).unwrap().to_json(),
                    want["value"],
                    "{file} {name}"
                ),
            }
        }
        let want_arrays = entries
            .as_object()
            .unwrap()
            .values()
            .filter(|e| e.get("sha256").is_some())
            .count();
        assert_eq!(model.tensors.len(), want_arrays, "{file}");
    }
    assert_eq!(arrays, 10);
}

/// flax 0.12.8 writing with a 64-byte chunk size (fixtures/flax/chunked.py):
/// the `__msgpack_chunked_array__` maps read joined, as msgpack_restore
/// (flax's own, chunked.json) returns them. (Written back byte for byte:
/// the flax crate's unit test.)
#[test]
fn chunked_arrays_read_as_flax_restores_them() {
    let want: serde_json::Value =
        serde_json::from_slice(&std::fs::read(fixture("flax/chunked.json")).unwrap()).unwrap();
    let model = modelconv_flax::open(&fixture("flax/chunked.msgpack")).unwrap();
    assert_eq!(model.tensors.len(), want.as_object().unwrap().len());
    for t in &model.tensors {
        let w = &want[&t.info.name];
        assert_eq!(
            t.info.dtype.name(),
            ir_dtype(w["dtype"].as_str().unwrap()),
            "{}",
            t.info.name
        );
        assert_eq!(serde_json::json!(t.info.shape), w["shape"], "{}", t.info.name);
        assert_eq!(sha256_hex(&t.read_all().unwrap()), w["sha256"], "{}", t.info.name);
    }
}

#[test]
fn flax_files_are_written_back_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    let src = fixture("flax/flax_sample.msgpack");
    let out = dir.path().join("same.msgpack");
    ok(&["-q", "convert", p(&src), p(&out)]);
    assert_eq!(std::fs::read(&out).unwrap(), std::fs::read(&src).unwrap());
    // Through safetensors and back: the arrays bit-exact, the same layout.
    let st = dir.path().join("f.safetensors");
    let back = dir.path().join("back.msgpack");
    ok(&["-q", "convert", p(&src), p(&st)]);
    ok(&["-q", "convert", p(&st), p(&back)]);
    assert_eq!(std::fs::read(&back).unwrap(), std::fs::read(&src).unwrap());
    // Names that cannot nest are refused, naming the tensor.
    let header = serde_json::json!({
        "a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]},
        "a.b": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]},
    })
    .to_string();
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(header.as_bytes());
    bytes.extend_from_slice(&[0; 8]);
    let clash = dir.path().join("clash.safetensors");
    std::fs::write(&clash, bytes).unwrap();
    let (code, err) = stderr_of(&["convert", p(&clash), p(&dir.path().join("c.msgpack"))]);
    assert_eq!(code, 2);
    assert!(err.contains("both an array and a group"), "{err}");
}

#[test]
fn hostile_msgpack_ends_in_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let src = std::fs::read(fixture("flax/flax_sample.msgpack")).unwrap();
    for cut in [1, 10, 60, src.len() - 1] {
        let f = dir.path().join(format!("cut{cut}.msgpack"));
        std::fs::write(&f, &src[..cut]).unwrap();
        let code = run_bounded(&["inspect", "--from", "flax", p(&f)], std::time::Duration::from_secs(5));
        assert_eq!(code, Some(2), "cut at {cut}");
    }
    let (_, err) = stderr_of(&["inspect", "--from", "flax", p(&dir.path().join("cut60.msgpack"))]);
    assert!(err.contains("cut60.msgpack") && err.contains("msgpack"), "{err}");
    // A map claiming 2^32-1 entries in a few bytes: refused at once.
    let f = dir.path().join("huge.msgpack");
    std::fs::write(&f, [0xdf, 0xff, 0xff, 0xff, 0xff, 0xa1, b'a']).unwrap();
    assert_eq!(
        run_bounded(&["inspect", "--from", "flax", p(&f)], std::time::Duration::from_secs(5)),
        Some(2)
    );
    // An array whose shape needs more bytes than it holds.
    let mut lying = src.clone();
    let at = lying.windows(2).position(|w| w == [0x92, 0x02]).unwrap(); // kernel shape [2, 3]
    lying[at + 1] = 0x7f;
    let f = dir.path().join("lying.msgpack");
    std::fs::write(&f, lying).unwrap();
    let (code, err) = stderr_of(&["inspect", p(&f)]);
    assert_eq!(code, 2);
    assert!(err.contains("needs") && err.contains("params.Dense_0.kernel"), "{err}");
}

/// A bare pickle is never taken for msgpack: its protocol byte 0x80 is an
/// empty map to msgpack, and its bytes may hold flax's ndarray pattern.
#[test]
fn pickles_are_not_claimed_as_msgpack() {
    let dir = tempfile::tempdir().unwrap();
    // protocol 2, an empty dict, a short binbytes holding 0x01 0x93, STOP.
    let pickle = b"\x80\x02}q\x00(X\x01\x00\x00\x00aC\x02\x01\x93u.";
    let f = dir.path().join("x.bin");
    std::fs::write(&f, pickle).unwrap();
    let j = inspect_json(&f);
    assert_eq!(j["format"], "pytorch");
}
