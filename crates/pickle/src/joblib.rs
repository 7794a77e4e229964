//! joblib's files as `joblib.load` reads them (joblib 1.x,
//! `numpy_pickle.py`): one pickle stream read from a file, in which each
//! numpy array is a `joblib.numpy_pickle.NumpyArrayWrapper` whose BUILD is
//! followed, in the file and outside any frame, by the array itself: for
//! an object dtype a whole second pickle (read by a plain unpickler), for
//! other dtypes an optional alignment (one length byte, then that many
//! pad bytes, when the wrapper's state has `numpy_array_alignment_bytes`)
//! and `prod(shape) × itemsize` raw bytes. The whole file may be
//! compressed (zlib, gzip, bz2, xz, lzma) as `joblib.dump(compress=…)`
//! writes it; [`decompress`] undoes that.

use crate::value::{Object, Value};
use std::cell::Cell;
use std::io::Read;

/// The global joblib pickles each array as.
pub const WRAPPER: (&str, &str) = ("joblib.numpy_pickle", "NumpyArrayWrapper");
/// The global an array's dtype is pickled as.
pub const DTYPE: (&str, &str) = ("numpy", "dtype");

/// A `numpy.dtype(code, align, copy)` the stream built, with what its
/// BUILD state says: the item size of flexible and structured dtypes,
/// and whether a field holds Python objects.
#[derive(Debug)]
pub struct Dtype {
    code: String,
    elsize: Cell<i64>,
    object_field: Cell<bool>,
}

impl Object for Dtype {
    fn kind(&self) -> &'static str {
        "dtype"
    }
}

impl Dtype {
    /// `numpy.dtype`'s arguments: the type code first.
    pub fn value_of(args: &[Value]) -> Option<Value> {
        let code = args.first()?.as_str()?.to_string();
        Some(Value::new_object(Dtype {
            code,
            elsize: Cell::new(-1),
            object_field: Cell::new(false),
        }))
    }

    /// numpy's dtype state: `(version, byteorder, subarray, names, fields,
    /// elsize, alignment, flags)`; `fields` maps a name to `(dtype, offset)`.
    pub fn set_state(&self, state: &Value) {
        let Some(items) = state.items() else { return };
        if let Some(e) = items.get(5).and_then(Value::as_int) {
            self.elsize.set(e);
        }
        if let Some(Value::Dict(fields)) = items.get(4) {
            let holds_objects = fields.borrow().iter().any(|(_, f)| {
                f.items()
                    .and_then(|t| t.first().and_then(|d| d.object::<Dtype>().map(Dtype::has_object)))
                    .unwrap_or(false)
            });
            self.object_field.set(holds_objects);
        }
        if let Some(sub) = items.get(2).and_then(Value::items) {
            if sub
                .first()
                .and_then(|d| d.object::<Dtype>())
                .is_some_and(Dtype::has_object)
            {
                self.object_field.set(true);
            }
        }
    }

    /// numpy's `dtype.hasobject`.
    pub fn has_object(&self) -> bool {
        self.code.trim_start_matches(['<', '>', '|', '=']).starts_with('O') || self.object_field.get()
    }

    /// Bytes per item: the state's elsize where it gives one, else the
    /// size in the type code (`f4`, `i8`, `c16`, `M8`, `b1`).
    pub fn itemsize(&self) -> Option<u64> {
        if let Ok(e) = u64::try_from(self.elsize.get()) {
            if e > 0 {
                return Some(e);
            }
        }
        let code = self.code.trim_start_matches(['<', '>', '|', '=']);
        match code {
            "?" | "b" | "B" => return Some(1),
            _ => {}
        }
        let digits: String = code.chars().skip_while(|c| c.is_ascii_alphabetic()).collect();
        digits.parse().ok().filter(|&n| n > 0)
    }
}

/// What follows a wrapper's BUILD in the file.
pub enum Array {
    /// An object array: a pickle of its own starts here.
    Pickle,
    /// Raw data: `align` says whether a padding-length byte comes first.
    Raw { align: bool, bytes: u64 },
}

/// Reads a wrapper's state (`shape`, `dtype`, `numpy_array_alignment_bytes`).
pub fn array_of(state: &Value) -> Result<Array, String> {
    let Value::Dict(entries) = state else {
        return Err(format!(
            "NumpyArrayWrapper state is a {}, expected a dict",
            state.kind()
        ));
    };
    let entries = entries.borrow();
    let get = |key: &str| {
        entries
            .iter()
            .rev()
            .find(|(k, _)| k.as_str() == Some(key))
            .map(|(_, v)| v.clone())
    };
    let dtype = get("dtype").ok_or("NumpyArrayWrapper state without a dtype")?;
    let dtype = dtype
        .object::<Dtype>()
        .ok_or("NumpyArrayWrapper dtype is not a numpy.dtype the stream built")?;
    if dtype.has_object() {
        return Ok(Array::Pickle);
    }
    let shape = get("shape")
        .and_then(|s| s.items())
        .ok_or("NumpyArrayWrapper state without a shape tuple")?;
    let mut count = 1u64;
    for d in &shape {
        let d = d
            .as_int()
            .and_then(|d| u64::try_from(d).ok())
            .ok_or("NumpyArrayWrapper shape holds a negative or non-integer dimension")?;
        count = count.checked_mul(d).ok_or("NumpyArrayWrapper shape overflows")?;
    }
    let itemsize = dtype
        .itemsize()
        .ok_or_else(|| format!("NumpyArrayWrapper dtype '{}' has no item size we know", dtype.code))?;
    let bytes = count
        .checked_mul(itemsize)
        .ok_or("NumpyArrayWrapper array size overflows")?;
    let align = get("numpy_array_alignment_bytes").is_some_and(|v| !matches!(v, Value::None));
    Ok(Array::Raw { align, bytes })
}

/// Most bytes a compressed joblib file is decompressed to for scanning:
/// 16 times the file (arrays compress a few times, not more), at least
/// 64 MiB, at most 1 GiB. Past it the file is reported, not read on (a
/// bomb costs what this cap allows, not what it claims).
pub fn decompression_cap(file_len: u64) -> u64 {
    file_len.saturating_mul(16).clamp(64 << 20, 1 << 30)
}

/// The compressors `joblib.dump(compress=…)` writes, by the magic bytes
/// joblib's `_detect_compressor` looks for.
pub fn compressor(b: &[u8]) -> Option<&'static str> {
    if b.starts_with(b"\x1f\x8b") {
        Some("gzip")
    } else if b.starts_with(b"BZh") {
        Some("bz2")
    } else if b.starts_with(b"\xfd7zXZ\x00") {
        Some("xz")
    } else if b.starts_with(b"\x5d\x00\x00") {
        Some("lzma")
    } else if b.starts_with(b"\x04\x22\x4d\x18") {
        Some("lz4")
    } else if b.len() >= 2 && b[0] == 0x78 && (u16::from(b[0]) << 8 | u16::from(b[1])) % 31 == 0 {
        Some("zlib")
    } else {
        None
    }
}

/// The file's bytes once decompressed, at most `cap` of them, and why
/// the rest could not be (a stream cut short or corrupt, more than `cap`):
/// what was decompressed before the failure is returned with it.
pub fn decompress(kind: &str, b: &[u8], cap: u64) -> (Vec<u8>, Option<String>) {
    let mut out = Vec::new();
    let result = match kind {
        "gzip" => read_capped(&mut flate2::read::MultiGzDecoder::new(b), cap, &mut out),
        "zlib" => read_capped(&mut flate2::read::ZlibDecoder::new(b), cap, &mut out),
        "bz2" => read_capped(&mut bzip2::read::MultiBzDecoder::new(b), cap, &mut out),
        "xz" | "lzma" => {
            let mut w = crate::zipscan::CappedWriter::strict(&mut out, cap.saturating_add(1));
            let mut input = std::io::BufReader::new(b);
            let r = if kind == "xz" {
                lzma_rs::xz_decompress(&mut input, &mut w)
            } else {
                let opts = lzma_rs::decompress::Options {
                    memlimit: Some(64 << 20),
                    ..Default::default()
                };
                lzma_rs::lzma_decompress_with_options(&mut input, &mut w, &opts)
            };
            r.map_err(|e| e.to_string())
        }
        other => Err(format!("compressed with {other}, which we do not read")),
    };
    let why = if out.len() as u64 > cap {
        out.truncate(usize::try_from(cap).unwrap_or(usize::MAX));
        Some(format!("{kind}: decompresses past the {cap}-byte limit"))
    } else {
        result.err().map(|e| format!("{kind}: {e}"))
    };
    (out, why)
}

/// Reads `r` to its end or to `cap` bytes and one (which says it is longer).
fn read_capped(r: &mut dyn Read, cap: u64, out: &mut Vec<u8>) -> Result<(), String> {
    r.take(cap.saturating_add(1))
        .read_to_end(out)
        .map(|_| ())
        .map_err(|e| e.to_string())
}
