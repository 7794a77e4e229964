//! `scan` for `.npy` files: numpy unpickles the data of an array whose
//! dtype holds Python objects (`allow_pickle=True`); that pickle is read
//! by the pickle engine with numpy's and Python's builders as data.

use modelconv_ir::scan::{Scanned, Scanner};
use modelconv_npy::pickled::{pickled_data, NUMPY};
use modelconv_pickle::{Chain, PYTHON};
use std::path::Path;

/// What an object array's pickle builds as data.
static OBJECT_ARRAY_DATA: Chain = Chain(&[&PYTHON, &NUMPY]);

pub struct NpyScanner;

impl Scanner for NpyScanner {
    fn container(&self, _path: &Path, bytes: &[u8]) -> Option<Scanned> {
        if !bytes.starts_with(b"\x93NUMPY") {
            return None;
        }
        let mut streams = Vec::new();
        if let Some(at) = pickled_data(bytes) {
            let data = bytes.get(at..).unwrap_or_default();
            modelconv_pickle::scan::scan_pickle(data, "npy object array", &OBJECT_ARRAY_DATA, &mut streams);
        }
        Some(Scanned::new("npy", streams, true))
    }
}
