//! numpy in pickles: the arrays and dtypes a pickle builds through
//! numpy's constructors ([`NUMPY`], plugged into the pickle VM by every
//! reader of pickles that hold numpy data), and, for `scan`, whether a
//! `.npy` file's data is a pickle ([`pickled_data`]).
//!
//! The `.npy` header, for `scan`: does numpy unpickle what follows it?
//! numpy reads the header with `ast.literal_eval` and builds
//! `numpy.dtype(descr)`; the data is a pickle exactly when that dtype holds
//! Python objects (`dtype.hasobject`). The header is parsed as the Python
//! literal it is (`modelconv-npy`), and `descr` is walked whatever its
//! spelling: `'O'`, `"|O8"`, `'object'`, a structured list with an object
//! field at any depth.

use modelconv_ir::{view, DType, DataSource, Error, MemSource, Tensor, TensorInfo};
use modelconv_pickle::{Constructors, Object, Value};
use std::cell::RefCell;
use std::collections::HashMap;
use std::path::Path;
use std::rc::Rc;
use std::sync::Arc;

/// For a `.npy` file: Some(offset of the data) when numpy would unpickle
/// the data (object dtype), or when the header cannot be read as numpy
/// reads it (then the data is scanned to be sure). None for plain arrays
/// and files that are not `.npy`.
pub fn pickled_data(b: &[u8]) -> Option<usize> {
    let f = crate::framing(b).ok()?;
    let end = f.data_start.min(b.len());
    let header = b.get(f.header_start..end)?;
    match crate::header(header) {
        Ok(h) if !crate::descr_has_object(&h.descr) => None,
        _ => Some(end),
    }
}

/// For a member of a zip: whether it is a `.npy` (`Some`), and if so
/// where the pickle numpy would unpickle starts in it, labelled.
pub fn embedded_pickle(head: &[u8]) -> Option<Option<(usize, &'static str)>> {
    head.starts_with(b"\x93NUMPY")
        .then(|| pickled_data(head).map(|at| (at, "npy object array")))
}

/// A numpy array pickled inline (dtype descriptor, shape, Fortran order, bytes).
#[derive(Debug, Clone, PartialEq)]
pub struct NdArray {
    pub descr: String,
    pub shape: Vec<u64>,
    pub fortran: bool,
    pub data: Rc<Vec<u8>>,
}

/// An array as the pickle builds it: `_reconstruct` makes it empty, BUILD
/// fills it in (shared through the memo meanwhile).
#[derive(Debug, Default)]
pub struct PickledArray(pub RefCell<Option<NdArray>>);

impl Object for PickledArray {
    fn kind(&self) -> &'static str {
        "ndarray"
    }
}

/// A numpy dtype under construction: its type code, and the byte order
/// BUILD gives it (`|` until then).
#[derive(Debug)]
pub struct PickledDtype(pub RefCell<(String, String)>);

impl Object for PickledDtype {
    fn kind(&self) -> &'static str {
        "numpy dtype"
    }
}

/// The array a value holds, once built.
pub fn array_of(v: &Value) -> Option<std::cell::Ref<'_, Option<NdArray>>> {
    v.object::<PickledArray>().map(|a| a.0.borrow())
}

/// Whether a value is a pickled numpy array.
pub fn is_array(v: &Value) -> bool {
    v.object::<PickledArray>().is_some()
}

/// numpy's builders: `numpy.dtype`, `numpy.ndarray` (named by
/// `_reconstruct`), `numpy.core.multiarray._reconstruct` and `.scalar`
/// (also under numpy 2's `numpy._core`).
pub struct Numpy;

/// [`Numpy`]'s builders.
pub static NUMPY: Numpy = Numpy;

fn is_multiarray(module: &str) -> bool {
    module == "numpy.core.multiarray" || module == "numpy._core.multiarray"
}

impl Constructors for Numpy {
    fn allows(&self, module: &str, name: &str) -> bool {
        (module == "numpy" && matches!(name, "dtype" | "ndarray"))
            || (is_multiarray(module) && matches!(name, "_reconstruct" | "scalar"))
    }

    fn call(&self, module: &str, name: &str, args: &[Value]) -> Option<Result<Value, String>> {
        match (module, name) {
            ("numpy", "dtype") => Some(match args.first().and_then(Value::as_str) {
                Some(descr) => Ok(Value::new_object(PickledDtype(RefCell::new((
                    descr.to_string(),
                    "|".to_string(),
                ))))),
                None => Err("numpy.dtype needs a type code".into()),
            }),
            (m, "_reconstruct") if is_multiarray(m) => Some(Ok(Value::new_object(PickledArray::default()))),
            (m, "scalar") if is_multiarray(m) => Some(scalar(args)),
            _ => None,
        }
    }

    fn build(&self, target: &Value, state: &Value) -> Option<Result<(), String>> {
        if let Some(array) = target.object::<PickledArray>() {
            return Some(array_state(state).map(|a| *array.0.borrow_mut() = Some(a)));
        }
        let dtype = target.object::<PickledDtype>()?;
        if let Some(Value::Str(order)) = state.items().as_deref().and_then(|i| i.get(1)) {
            dtype.0.borrow_mut().1 = order.to_string();
        }
        Some(Ok(()))
    }
}

/// `scalar(dtype, bytes)`: a 0-d array.
fn scalar(args: &[Value]) -> Result<Value, String> {
    let (Some(d), Some(Value::Bytes(b))) = (args.first().and_then(|d| d.object::<PickledDtype>()), args.get(1)) else {
        return Err("numpy scalar needs (dtype, bytes)".into());
    };
    let (descr, order) = d.0.borrow().clone();
    let array = NdArray {
        descr: format!("{order}{descr}"),
        shape: Vec::new(),
        fortran: false,
        data: b.clone(),
    };
    Ok(Value::new_object(PickledArray(RefCell::new(Some(array)))))
}

/// An array's BUILD state: `(version, shape, dtype, fortran, data)`; the
/// data as bytes (or a latin-1 string, from Python 2). An array of Python
/// objects is refused.
fn array_state(state: &Value) -> Result<NdArray, String> {
    let st = state.items().ok_or("ndarray state is not a tuple")?;
    let [_, shape, dtype, fortran, raw] = st.as_slice() else {
        return Err("ndarray state is not (version, shape, dtype, fortran, data)".into());
    };
    let shape: Vec<u64> = shape
        .items()
        .and_then(|v| {
            v.iter()
                .map(|d| d.as_int().and_then(|d| u64::try_from(d).ok()))
                .collect()
        })
        .ok_or("bad ndarray shape")?;
    let Some(d) = dtype.object::<PickledDtype>() else {
        return Err(format!("ndarray dtype: unexpected {}", dtype.kind()));
    };
    let (descr, order) = d.0.borrow().clone();
    let data = match raw {
        Value::Bytes(b) => b.clone(),
        Value::Str(s) => Rc::new(s.chars().map(|c| c as u32 as u8).collect()),
        other => return Err(format!("ndarray of Python objects ({}); refused", other.kind())),
    };
    let fortran = matches!(fortran, Value::Bool(true)) || fortran.as_int() == Some(1);
    Ok(NdArray {
        descr: format!("{order}{descr}"),
        shape,
        fortran,
        data,
    })
}

/// A numpy type descriptor (`<f4`, `|b1`, …) as a dtype; big-endian is refused.
fn array_dtype(descr: &str) -> Result<DType, String> {
    match crate::dtype_from_descr(descr, None)? {
        (_, true) => Err(format!("big-endian numpy array ({descr}) is not supported yet")),
        (d, false) => Ok(d),
    }
}

/// Tensors made from pickled arrays: each array's bytes are put in memory
/// once, however many names share it through the memo, so every name gets
/// the same data source (and `--dedupe` ties them).
#[derive(Default)]
pub struct ArrayTensors {
    by_identity: RefCell<HashMap<usize, Arc<dyn DataSource>>>,
}

impl ArrayTensors {
    /// The IR tensor `name` for array `a` of the file at `path`.
    pub fn tensor(&self, path: &Path, name: &str, a: &NdArray) -> modelconv_ir::Result<Tensor> {
        let bad = |msg: String| Error::malformed(path, format!("tensor '{name}': {msg}"));
        let dtype = array_dtype(&a.descr).map_err(bad)?;
        let key = Rc::as_ptr(&a.data) as usize;
        let cached = self.by_identity.borrow().get(&key).cloned();
        let data = match cached {
            Some(d) => d,
            None => {
                let mem: Arc<dyn DataSource> = Arc::new(MemSource::new(a.data.as_ref().clone()));
                // Fortran order: the strides of the transposed layout.
                let stride = if a.fortran {
                    let rev: Vec<u64> = a.shape.iter().rev().copied().collect();
                    view::contiguous_strides(&rev).into_iter().rev().collect()
                } else {
                    view::contiguous_strides(&a.shape)
                };
                let d = view::strided(mem, dtype.type_size(), 0, &a.shape, &stride).map_err(|e| bad(e.to_string()))?;
                self.by_identity.borrow_mut().insert(key, d.clone());
                d
            }
        };
        let info = TensorInfo::new(name, dtype, a.shape.clone()).map_err(|e| e.in_file(path))?;
        Tensor::new(info, data).map_err(|e| e.in_file(path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn npy(header: &str) -> Vec<u8> {
        let mut b = b"\x93NUMPY\x01\x00".to_vec();
        b.extend_from_slice(&(header.len() as u16).to_le_bytes());
        b.extend_from_slice(header.as_bytes());
        b
    }

    #[test]
    fn object_arrays_are_pickles() {
        let h = |d: &str| format!("{{'descr': {d}, 'fortran_order': False, 'shape': (3,), }}");
        assert!(pickled_data(&npy(&h("'|O'"))).is_some());
        assert!(pickled_data(&npy(&h("[('a', '<f4'), ('b', '|O')]"))).is_some());
        assert_eq!(pickled_data(&npy(&h("'<f4'"))), None);
        // Unreadable headers are scanned to be sure.
        assert!(pickled_data(&npy("{'descr': ")).is_some());
        assert_eq!(pickled_data(b"not npy"), None);
    }
}
