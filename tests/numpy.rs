//! NumPy .npy/.npz: the fixtures numpy made read to what np.load returns
//! (fixtures/numpy/manifest.json); conversions round-trip bit-exactly;
//! hostile archives and headers end in exit 2.

mod common;
use common::*;
use std::io::Write;

fn manifest() -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(fixture("numpy/manifest.json")).unwrap()).unwrap()
}

/// numpy's `dtype.str` of an IR type as our reader gives it (bf16 as numpy
/// sees it: opaque `|V2`).
fn numpy_str(d: &str) -> &'static str {
    match d {
        "F16" => "<f2",
        "F32" => "<f4",
        "F64" => "<f8",
        "I64" => "<i8",
        "I32" => "<i4",
        "BF16" => "|V2",
        "F8_E4M3" => "|V1",
        // What ml_dtypes 0.6 writes for float8_e5m2 (numpy cannot load it).
        "F8_E5M2" => "<f1",
        other => panic!("unexpected {other}"),
    }
}

#[test]
fn every_fixture_reads_as_np_load_returns_it() {
    let m = manifest();
    let mut checked = 0;
    for (file, arrays) in m["files"].as_object().unwrap() {
        let path = fixture(&format!("numpy/{file}"));
        let mut opts = modelconv_ir::OpenOptions::default();
        // ml_dtypes' arrays are opaque to numpy: the hint says what they hold.
        let hint = match file.as_str() {
            "bf16.npy" => Some("BF16"),
            "f8_e4m3.npy" => Some("F8_E4M3"),
            "f8_e5m2.npy" => Some("F8_E5M2"),
            _ => None,
        };
        if let Some(h) = hint {
            opts.options.set("dtype-hint", h);
        }
        let model = modelconv_ir::Format::open(&modelconv_numpy::FORMAT, &path, &opts).unwrap();
        let want = arrays.as_object().unwrap();
        assert_eq!(model.tensors.len(), want.len(), "{file}");
        for t in &model.tensors {
            let w = &want[&t.info.name];
            assert_eq!(numpy_str(t.info.dtype.name()), w["dtype"], "{file} {}", t.info.name);
            assert_eq!(serde_json::json!(t.info.shape), w["shape"], "{file} {}", t.info.name);
            assert_eq!(
                sha256_hex(&t.read_all().unwrap()),
                w["sha256"],
                "{file} {}",
                t.info.name
            );
            checked += 1;
        }
    }
    assert_eq!(checked, 9);
}

#[test]
fn bfloat16_needs_its_name() {
    let (code, err) = stderr_of(&["inspect", p(&fixture("numpy/bf16.npy"))]);
    assert_eq!(code, 2);
    assert!(err.contains("--dtype-hint BF16") && err.contains("bfloat16"), "{err}");
    let j: serde_json::Value = serde_json::from_str(&ok(&[
        "inspect",
        "--json",
        "--dtype-hint",
        "bf16",
        p(&fixture("numpy/bf16.npy")),
    ]))
    .unwrap();
    assert_eq!(j["tensors"][0]["dtype"], "BF16");
}

#[test]
fn conversions_round_trip_bit_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let st = dir.path().join("s.safetensors");
    let back = dir.path().join("back.npz");
    ok(&["-q", "convert", p(&fixture("numpy/s.npz")), p(&st)]);
    ok(&["-q", "convert", p(&st), p(&back)]);
    let a = modelconv_numpy::open(&fixture("numpy/s.npz"), None).unwrap();
    let b = modelconv_numpy::open(&back, None).unwrap();
    for (x, y) in a.tensors.iter().zip(&b.tensors) {
        assert_eq!(
            (&x.info.name, x.info.dtype, &x.info.shape),
            (&y.info.name, y.info.dtype, &y.info.shape)
        );
        assert_eq!(x.read_all().unwrap(), y.read_all().unwrap());
    }
    // Fortran order comes out in C order with the same values.
    let f = dir.path().join("f.npy");
    ok(&["-q", "convert", p(&fixture("numpy/fort.npy")), p(&f)]);
    let want = modelconv_numpy::open(&fixture("numpy/fort.npy"), None).unwrap();
    let got = modelconv_numpy::open(&f, None).unwrap();
    assert_eq!(got.tensors[0].read_all().unwrap(), want.tensors[0].read_all().unwrap());
    assert!(got.tensors[0].location.is_some(), "C order: a plain range of the file");
    // Several tensors do not fit one .npy.
    let (code, err) = stderr_of(&["convert", p(&st), p(&dir.path().join("x.npy"))]);
    assert_eq!(code, 2);
    assert!(err.contains(".npz"), "{err}");
    // To GGUF through the pipeline, cast on the way.
    ok(&[
        "-q",
        "convert",
        p(&fixture("numpy/c.npz")),
        p(&dir.path().join("c.gguf")),
        "--dtype",
        "F16",
    ]);
}

fn npy(descr: &str, shape: &str, data: &[u8]) -> Vec<u8> {
    let h = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}\n");
    let mut b = b"\x93NUMPY\x01\x00".to_vec();
    b.extend_from_slice(&(h.len() as u16).to_le_bytes());
    b.extend_from_slice(h.as_bytes());
    b.extend_from_slice(data);
    b
}

/// A zip of one member, written with the given method and sizes.
fn zip_member(name: &str, data: &[u8], deflate: bool) -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    {
        let mut z = zip::ZipWriter::new(&mut out);
        let method = if deflate {
            zip::CompressionMethod::Deflated
        } else {
            zip::CompressionMethod::Stored
        };
        z.start_file(
            name,
            zip::write::SimpleFileOptions::default().compression_method(method),
        )
        .unwrap();
        z.write_all(data).unwrap();
        z.finish().unwrap();
    }
    out.into_inner()
}

#[test]
fn hostile_numpy_files_end_in_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, bytes: &[u8]| {
        let p = dir.path().join(name);
        std::fs::write(&p, bytes).unwrap();
        p
    };
    // A header whose shape needs more data than the file holds.
    let lying = write("lying.npy", &npy("<f4", "(1000000, 1000000)", &[0; 16]));
    let (code, err) = stderr_of(&["convert", p(&lying), p(&dir.path().join("o.safetensors"))]);
    assert_eq!(code, 2);
    assert!(err.contains("needs") && err.contains("lying.npy"), "{err}");
    // An object array: a pickle; convert refuses, scan flags it.
    let obj = write("obj.npy", &npy("|O", "(1,)", b"\x80\x02cos\nsystem\nq\x00."));
    let (code, err) = stderr_of(&["convert", p(&obj), p(&dir.path().join("o.safetensors"))]);
    assert_eq!(code, 2);
    assert!(err.contains("object array") && err.contains("scan"), "{err}");
    let s: serde_json::Value = serde_json::from_str(&expect_code(&["scan", "--json", p(&obj)], 1)).unwrap();
    assert_eq!(s["verdict"], "dangerous");
    // A deflate bomb: 1 GiB declared from a few KiB (more than deflate can
    // expand: refused before anything is inflated).
    let mut bomb = zip_member(
        "w.npy",
        &[npy("|u1", "(1073741824,)", &[]), vec![0u8; 4096]].concat(),
        true,
    );
    assert!(bomb.len() < 4096, "{}", bomb.len());
    let cd = bomb.windows(4).rposition(|w| w == b"PK\x01\x02").unwrap();
    bomb[cd + 24..cd + 28].copy_from_slice(&(1u32 << 30).to_le_bytes());
    bomb[22..26].copy_from_slice(&(1u32 << 30).to_le_bytes());
    let bomb_path = write("bomb.npz", &bomb);
    let code = run_bounded(
        &["convert", p(&bomb_path), p(&dir.path().join("o.safetensors"))],
        std::time::Duration::from_secs(10),
    );
    assert_eq!(code, Some(2));
    let (_, err) = stderr_of(&["inspect", p(&bomb_path)]);
    assert!(err.contains("zip bomb"), "{err}");
    // A member that inflates to less than it declares.
    let mut short = zip_member("w.npy", &npy("<f4", "(4,)", &[0; 16]), true);
    let cd = short.windows(4).rposition(|w| w == b"PK\x01\x02").unwrap();
    short[cd + 24..cd + 28].copy_from_slice(&200u32.to_le_bytes()); // uncompressed size
    let short_path = write("short.npz", &short);
    let (code, err) = stderr_of(&["convert", p(&short_path), p(&dir.path().join("o.safetensors"))]);
    assert_eq!(code, 2, "{err}");
    assert!(!dir.path().join("o.safetensors").exists());
}

#[test]
fn npz_members_as_numpy_stores_them() {
    let dir = tempfile::tempdir().unwrap();
    // A stored member reads as a range of the file; a deflated one inflates.
    for deflate in [false, true] {
        let z = zip_member(
            "x.npy",
            &npy("<i4", "(3,)", &[1, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0]),
            deflate,
        );
        let path = dir.path().join(format!("d{deflate}.npz"));
        std::fs::write(&path, z).unwrap();
        let m = modelconv_numpy::open(&path, None).unwrap();
        assert_eq!(m.tensors[0].info.name, "x");
        assert_eq!(m.tensors[0].read_all().unwrap(), [1, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0]);
        assert_eq!(m.tensors[0].location.is_some(), !deflate);
    }
}
