//! Every checkpoint fixture truncated at each byte, and every bit of each
//! fixture's pickle flipped: an error or a
//! model whose tensors all read back; never a panic or a hang.

use modelconv_pickle::value::Value;
use modelconv_pickle::vm::{PersistentLoad, Vm};
use modelconv_pytorch::constructors::{StorageRef, TORCH};
use modelconv_pytorch::{open_with, Selection};
use std::path::{Path, PathBuf};

fn fixtures() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures");
    let mut v = Vec::new();
    for d in ["torch", "malicious"] {
        for e in std::fs::read_dir(root.join(d)).unwrap() {
            let p = e.unwrap().path();
            if p.is_file() && !p.extension().is_some_and(|x| x == "json" || x == "py") {
                v.push(p);
            }
        }
    }
    v.sort();
    v
}

fn open_and_read(path: &Path) {
    if let Ok(m) = open_with(path, Selection::All) {
        for t in &m.tensors {
            let _ = t.read_all();
        }
    }
}

#[test]
fn truncated_files_never_panic() {
    let dir = tempfile::tempdir().unwrap();
    for f in fixtures() {
        let bytes = std::fs::read(&f).unwrap();
        for cut in 0..bytes.len() {
            let p = dir.path().join(f.file_name().unwrap());
            std::fs::write(&p, &bytes[..cut]).unwrap();
            open_and_read(&p);
        }
    }
}

#[test]
fn truncated_legacy_checkpoints_are_named_truncated() {
    // A legacy checkpoint cut anywhere: the pickles or the storages end
    // early, and the error says so by its variant.
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/torch");
    let dir = tempfile::tempdir().unwrap();
    for name in ["simple_f32_7_legacy.pt", "dtypes_7_legacy.pth", "views_7_legacy.pt"] {
        let bytes = std::fs::read(root.join(name)).unwrap();
        // From byte 2 on the file starts like a pickle (a cut before is not recognizably one).
        for cut in 2..bytes.len() {
            let p = dir.path().join(name);
            std::fs::write(&p, &bytes[..cut]).unwrap();
            match open_with(&p, Selection::All) {
                Err(modelconv_ir::Error::Truncated { .. }) => {}
                other => panic!("{name} cut at {cut}: expected Truncated, got {:?}", other.err()),
            }
        }
    }
}

/// Resolves every persistent id to a storage, so flipped pickles get far.
struct AnyStorage;
impl PersistentLoad for AnyStorage {
    fn load(&mut self, _pid: &Value) -> Result<Value, String> {
        Ok(Value::new_object(StorageRef {
            key: "0".into(),
            dtype: Some("float32".into()),
            view_offset: 0,
        }))
    }
}

#[test]
fn bit_flips_in_pickles_never_panic() {
    for f in fixtures() {
        let bytes = std::fs::read(&f).unwrap();
        // The pickle itself: data.pkl of a torch zip, or the whole file
        // (other zips, such as the npz fixtures, are the scanner's).
        let pkl = match zip::ZipArchive::new(std::io::Cursor::new(&bytes)) {
            Ok(mut z) => {
                let Some(name) = z.file_names().find(|n| n.ends_with("data.pkl")).map(str::to_string) else {
                    continue;
                };
                let mut e = z.by_name(&name).unwrap();
                let mut v = Vec::new();
                std::io::Read::read_to_end(&mut e, &mut v).unwrap();
                v
            }
            Err(_) => bytes.clone(),
        };
        let mut flipped = pkl.clone();
        for i in 0..pkl.len() {
            for bit in 0..8 {
                flipped[i] ^= 1 << bit;
                let mut ids = AnyStorage;
                let _ = Vm::new(&flipped, Some(&mut ids), &TORCH).run();
                flipped[i] ^= 1 << bit;
            }
        }
    }
}

#[test]
fn hostile_lengths_and_depth_are_bounded() {
    // BINUNICODE8 claiming 2^62 bytes; LONG4 claiming 2^31; deep nesting of MARKs and lists.
    let mut huge = vec![0x80, 4, 0x8d];
    huge.extend_from_slice(&(1u64 << 62).to_le_bytes());
    assert!(Vm::new(&huge, None, &TORCH).run().unwrap_err().msg.contains("remain"));
    let long4 = [0x80, 2, 0x8b, 0xff, 0xff, 0xff, 0x7f, b'.'];
    assert!(Vm::new(&long4, None, &TORCH).run().is_err());
    let mut deep = vec![0x80, 2];
    deep.extend(std::iter::repeat_n(b']', 3_000_000));
    deep.push(b'.');
    // Three million lists: past the limit on lists made (before the stack's).
    let err = Vm::new(&deep, None, &TORCH).run().unwrap_err();
    assert_eq!(err.kind, modelconv_pickle::vm::PickleErrorKind::Limit, "{err}");
    let mut items = vec![0x80, 2];
    items.extend(std::iter::repeat_n(b'N', 3_000_000));
    items.push(b'.');
    assert!(Vm::new(&items, None, &TORCH)
        .run()
        .unwrap_err()
        .msg
        .contains("stack deeper"));
    // Half a million nested lists: built within the limits, dropped without recursion.
    let n = 500_000;
    let mut nested = vec![0x80, 2];
    nested.extend(std::iter::repeat_n(b']', n));
    nested.extend(std::iter::repeat_n(b'a', n - 1));
    nested.push(b'.');
    let v = Vm::new(&nested, None, &TORCH).run().unwrap();
    drop(v);
    assert!(Vm::scanner(&nested, &TORCH).run().is_ok());
    let memo = [0x80, 2, b'h', 7, b'.'];
    assert!(Vm::new(&memo, None, &TORCH)
        .run()
        .unwrap_err()
        .msg
        .contains("never stored"));
}
