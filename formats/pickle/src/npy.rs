//! The `.npy` header, for `scan`: does numpy unpickle what follows it?
//! numpy reads the header with `ast.literal_eval` and builds
//! `numpy.dtype(descr)`; the data is a pickle exactly when that dtype holds
//! Python objects (`dtype.hasobject`). The header is parsed as the Python
//! literal it is (`modelconv-npy`), and `descr` is walked whatever its
//! spelling: `'O'`, `"|O8"`, `'object'`, a structured list with an object
//! field at any depth.

/// For a `.npy` file: Some(offset of the data) when numpy would unpickle
/// the data (object dtype), or when the header cannot be read as numpy
/// reads it (then the data is scanned to be sure). None for plain arrays
/// and files that are not `.npy`.
pub fn pickled_data(b: &[u8]) -> Option<usize> {
    let f = modelconv_npy::framing(b).ok()?;
    let end = f.data_start.min(b.len());
    let header = b.get(f.header_start..end)?;
    match modelconv_npy::header(header) {
        Ok(h) if !modelconv_npy::descr_has_object(&h.descr) => None,
        _ => Some(end),
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
