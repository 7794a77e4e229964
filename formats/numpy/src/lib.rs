//! # modelconv-numpy
//!
//! NumPy's `.npy` (one array) and `.npz` (a zip of `NAME.npy` members), as
//! `np.save`/`np.savez`/`np.savez_compressed` write them and `np.load`
//! reads them: headers of versions 1 to 3, every numeric dtype in either
//! byte order, C and Fortran order, stored and deflated members. ml_dtypes'
//! bfloat16 and float8 arrays lose their type name in `.npy` (`|V2`,
//! `|V1`; ml_dtypes 0.6 writes float8_e5m2 as `<f1`, which numpy cannot
//! load back): `--dtype-hint` says which they are. Object arrays are pickles:
//! refused here, reported by `scan`.
//!
//! Written: `.npy` (one tensor, named by the file) and `.npz` (stored
//! members, which `np.load` maps without copying).

mod read;
mod write;

pub use read::{open, MAX_HEADER, MAX_RATIO};

mod scan;
use modelconv_ir::{Format, FormatOption, Model, OpenOptions, OptionValue, Probe, Result, Stage, Writer};
use std::path::Path;

pub const NAME: &str = "numpy";

/// The open option naming the type of opaque `|V2`/`|V1` arrays.
pub const HINT_OPTION: &str = "dtype-hint";

pub struct Numpy;
pub static FORMAT: Numpy = Numpy;

const OPTIONS: &[FormatOption] = &[FormatOption {
    name: HINT_OPTION,
    stages: &[Stage::Open],
    value: OptionValue::Value("TYPE"),
    help: "the type of opaque |V2 / |V1 arrays, as ml_dtypes' bfloat16 and float8 arrays are saved (BF16, F8_E4M3 or F8_E5M2)",
}];

impl Format for Numpy {
    fn name(&self) -> &'static str {
        NAME
    }
    fn description(&self) -> &'static str {
        "NumPy .npy / .npz (stored or deflated); read + write"
    }
    fn extensions(&self) -> &'static [&'static str] {
        &["npy", "npz"]
    }
    fn score(&self, probe: &Probe) -> u8 {
        if probe.head.starts_with(b"\x93NUMPY") {
            100
        } else if !probe.zip_entries.is_empty() && probe.zip_entries.iter().any(|e| e.ends_with(".npy")) {
            // A zip whose members are arrays (torch's zips hold data.pkl).
            if probe.zip_entries.iter().any(|e| e.ends_with("data.pkl")) {
                0
            } else {
                90
            }
        } else {
            0
        }
    }
    fn open(&self, path: &Path, opts: &OpenOptions) -> Result<Model> {
        open(path, read::hint(opts)?)
    }
    fn options(&self) -> &'static [FormatOption] {
        OPTIONS
    }
    fn writer(&self) -> Option<&dyn Writer> {
        Some(&write::NumpyWriter)
    }
    fn scanner(&self) -> Option<&dyn modelconv_ir::scan::Scanner> {
        Some(&scan::NpyScanner)
    }
}
