//! The restricted pickle VM, in load mode and scan mode, on arbitrary bytes:
//! it must return (a value or an error), never panic, hang or blow memory.
//! Run: cargo +nightly fuzz run pickle_vm  (seed corpus: fixtures/torch, fixtures/malicious)
#![no_main]

use libfuzzer_sys::fuzz_target;
use modelconv_pickle::value::{StorageRef, Value};
use modelconv_pickle::vm::{PersistentLoad, Vm};

struct AnyStorage;
impl PersistentLoad for AnyStorage {
    fn load(&mut self, _pid: &Value) -> Result<Value, String> {
        Ok(Value::Storage(std::rc::Rc::new(StorageRef { key: "0".into(), dtype: Some("float32".into()), view_offset: 0 })))
    }
}

fuzz_target!(|data: &[u8]| {
    let mut ids = AnyStorage;
    let _ = Vm::new(data, Some(&mut ids)).run();
    let _ = Vm::scanner(data).run();
    let _ = modelconv_pickle::scan::scan_bytes(std::path::Path::new("fuzz"), data);
});
