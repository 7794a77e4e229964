//! Importance matrices, as llama-imatrix writes them and llama-quantize
//! reads them (common/imatrix-loader.cpp, tools/quantize/quantize.cpp):
//!
//! - **GGUF** (`general.type = imatrix`): per weight `<name>.in_sum2` (Σx²
//!   of the activations per column, per expert) and `<name>.counts` (tokens
//!   per expert), both F32; `imatrix.datasets`, `imatrix.chunk_count`,
//!   `imatrix.chunk_size`. A value is `in_sum2 / round(count)`, or 1 where
//!   an expert saw no token.
//! - **legacy `.dat`**: i32 entry count; per entry an i32 name length, the
//!   name, i32 call count, i32 value count, the f32 values (already
//!   averaged per call and multiplied by the call count); then optionally
//!   an i32 chunk count and an i32-length dataset name. A value is
//!   `value / calls` (as stored where calls is 0).
//!
//! Every length and count is checked against the bytes left before
//! anything is allocated.

use modelconv_ir::{DType, Error, Metadata, Model, Result, Value};
use std::collections::BTreeMap;
use std::sync::Arc;

/// An importance matrix ready for quantization: per weight, the values
/// llama-quantize passes to ggml (`n_per_row` per expert matrix).
#[derive(Debug, Clone, Default)]
pub struct Imatrix {
    /// Values by tensor name.
    pub entries: BTreeMap<String, Arc<[f32]>>,
    /// Calibration datasets, as the file names them.
    pub datasets: Vec<String>,
    /// Chunks the statistics were gathered over (0 when not recorded).
    pub chunk_count: i32,
}

/// The GGUF keys llama-imatrix writes.
const KEY_DATASETS: &str = "imatrix.datasets";
const KEY_CHUNK_COUNT: &str = "imatrix.chunk_count";
const KEY_CHUNK_SIZE: &str = "imatrix.chunk_size";

impl Imatrix {
    /// Whether `bytes` start like a GGUF file (otherwise the legacy form).
    pub fn is_gguf(bytes: &[u8]) -> bool {
        bytes.starts_with(b"GGUF")
    }

    /// Parses the legacy `.dat` form.
    pub fn from_legacy(bytes: &[u8]) -> Result<Self> {
        let mut r = Reader { bytes, at: 0 };
        let n_entries = r.i32("the entry count")?;
        if n_entries < 1 {
            return Err(Error::invalid(format!(
                "no data: the entry count at byte 0 is {n_entries} (llama-imatrix writes at least one)"
            )));
        }
        let mut m = Imatrix::default();
        for i in 0..n_entries {
            let (name, values) = r.legacy_entry(i)?;
            m.entries.insert(name, values.into());
        }
        if r.at < bytes.len() {
            m.chunk_count = r.i32("the chunk count after the entries")?;
            if r.at < bytes.len() {
                let len = r.i32("the dataset name's length")?;
                if len > 0 {
                    let name = r.bytes(len as usize, "the dataset name")?;
                    m.datasets.push(c_string(name));
                }
            }
        }
        Ok(m)
    }

    /// Reads the GGUF form from a model opened by the GGUF reader.
    pub fn from_gguf(model: &Model) -> Result<Self> {
        if model.tensors.is_empty() {
            return Err(Error::invalid("no data: the imatrix GGUF holds no tensors"));
        }
        let md = &model.metadata;
        if [KEY_DATASETS, KEY_CHUNK_COUNT, KEY_CHUNK_SIZE]
            .iter()
            .any(|k| md.get(k).is_none())
        {
            return Err(Error::invalid(format!(
                "missing imatrix metadata: {KEY_DATASETS}, {KEY_CHUNK_COUNT} and {KEY_CHUNK_SIZE} are all required"
            )));
        }
        let mut m = Imatrix {
            datasets: datasets(md),
            chunk_count: md.get(KEY_CHUNK_COUNT).and_then(Value::as_u64).unwrap_or(0) as i32,
            ..Default::default()
        };
        let mut pairs: BTreeMap<&str, (Option<usize>, Option<usize>)> = BTreeMap::new();
        for (i, t) in model.tensors.iter().enumerate() {
            if let Some(base) = t.info.name.strip_suffix(".in_sum2").filter(|b| !b.is_empty()) {
                pairs.entry(base).or_default().0 = Some(i);
            } else if let Some(base) = t.info.name.strip_suffix(".counts").filter(|b| !b.is_empty()) {
                pairs.entry(base).or_default().1 = Some(i);
            }
        }
        for (name, pair) in pairs {
            let (Some(s), Some(c)) = pair else {
                return Err(Error::invalid(format!("mismatched sums and counts for {name}")));
            };
            let sums = read_f32(model, s, name)?;
            let counts = read_f32(model, c, name)?;
            m.entries
                .insert(name.to_string(), normalize(name, &sums, &counts)?.into());
        }
        Ok(m)
    }

    /// `--include-weights` / `--exclude-weights`: keeps the entries whose
    /// name contains one of `include` (all when empty), then drops those
    /// containing one of `exclude`, as llama-quantize matches them.
    pub fn select(&mut self, include: &[String], exclude: &[String]) {
        self.entries.retain(|name, _| {
            (include.is_empty() || include.iter().any(|s| name.contains(s.as_str())))
                && !exclude.iter().any(|s| name.contains(s.as_str()))
        });
    }

    /// The first non-finite value, which llama-quantize refuses.
    pub fn first_non_finite(&self) -> Option<(&str, f32)> {
        self.entries
            .iter()
            .find_map(|(n, v)| v.iter().find(|x| !x.is_finite()).map(|x| (n.as_str(), *x)))
    }
}

/// `imatrix.datasets`, an array of strings.
fn datasets(md: &Metadata) -> Vec<String> {
    match md.get(KEY_DATASETS) {
        Some(Value::Array(a)) => (0..a.len())
            .filter_map(|i| a.get(i).and_then(|v| v.as_str().map(str::to_string)))
            .collect(),
        _ => Vec::new(),
    }
}

/// A tensor of the imatrix file as f32 values (it must be F32).
fn read_f32(model: &Model, i: usize, name: &str) -> Result<Vec<f32>> {
    let t = &model.tensors[i];
    if t.info.dtype != DType::F32 {
        return Err(Error::invalid(format!(
            "sums and counts for {name} must be F32; '{}' is {}",
            t.info.name, t.info.dtype
        )));
    }
    let n = usize::try_from(t.info.byte_len).map_err(|_| Error::invalid("imatrix tensor too large"))?;
    let mut buf = vec![0u8; n];
    t.data.read_at(0, &mut buf)?;
    Ok(buf
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect())
}

/// Σx² per column divided by each expert's token count (counts rounded to
/// integers as the loader rounds them; 1 where an expert saw none).
fn normalize(name: &str, sums: &[f32], counts: &[f32]) -> Result<Vec<f32>> {
    if counts.is_empty() || !sums.len().is_multiple_of(counts.len()) {
        return Err(Error::invalid(format!(
            "{name}: {} sums do not divide among {} counts",
            sums.len(),
            counts.len()
        )));
    }
    let ne0 = sums.len() / counts.len();
    let mut out = vec![1f32; sums.len()];
    for (j, &c) in counts.iter().enumerate() {
        let count = c.round() as i64 as f32;
        if count > 0.0 {
            for i in 0..ne0 {
                out[j * ne0 + i] = sums[j * ne0 + i] / count;
            }
        }
    }
    Ok(out)
}

/// A C string as `std::string(data)` reads it: up to the first NUL.
fn c_string(b: &[u8]) -> String {
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    String::from_utf8_lossy(&b[..end]).into_owned()
}

/// A bounds-checked cursor over the legacy file.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn bytes(&mut self, n: usize, what: &str) -> Result<&[u8]> {
        let end = self
            .at
            .checked_add(n)
            .filter(|&e| e <= self.bytes.len())
            .ok_or_else(|| {
                Error::invalid(format!(
                    "{what}: {n} bytes at byte {} run past the end of the file ({} bytes)",
                    self.at,
                    self.bytes.len()
                ))
            })?;
        let s = &self.bytes[self.at..end];
        self.at = end;
        Ok(s)
    }

    fn i32(&mut self, what: &str) -> Result<i32> {
        let b = self.bytes(4, what)?;
        Ok(i32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// Entry `i`: its name and its values divided by its call count.
    fn legacy_entry(&mut self, i: i32) -> Result<(String, Vec<f32>)> {
        let at = self.at;
        let len = self.i32("an entry's name length")?;
        if len < 0 {
            return Err(Error::invalid(format!("entry {i} at byte {at}: name length {len}")));
        }
        let name = c_string(self.bytes(len as usize, "an entry's name")?);
        let ncall = self.i32("an entry's call count")?;
        let nval = self.i32("an entry's value count")?;
        if nval < 1 {
            return Err(Error::invalid(format!("entry {i} ('{name}'): {nval} values")));
        }
        let n = (nval as usize)
            .checked_mul(4)
            .ok_or_else(|| Error::invalid("value count overflows"))?;
        let raw = self.bytes(n, &format!("the values of '{name}'"))?;
        let values = raw
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .map(|v| if ncall > 0 { v / ncall as f32 } else { v })
            .collect();
        Ok((name, values))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn legacy(entries: &[(&str, i32, &[f32])], trailer: Option<(i32, &str)>) -> Vec<u8> {
        let mut b = (entries.len() as i32).to_le_bytes().to_vec();
        for (name, ncall, vals) in entries {
            b.extend((name.len() as i32).to_le_bytes());
            b.extend(name.as_bytes());
            b.extend(ncall.to_le_bytes());
            b.extend((vals.len() as i32).to_le_bytes());
            vals.iter().for_each(|v| b.extend(v.to_le_bytes()));
        }
        if let Some((chunks, ds)) = trailer {
            b.extend(chunks.to_le_bytes());
            b.extend((ds.len() as i32).to_le_bytes());
            b.extend(ds.as_bytes());
        }
        b
    }

    #[test]
    fn legacy_values_are_divided_by_calls() {
        let b = legacy(
            &[("blk.0.attn_q.weight", 4, &[8.0, 2.0]), ("x", 0, &[3.0])],
            Some((7, "wiki.txt")),
        );
        let m = Imatrix::from_legacy(&b).unwrap();
        assert_eq!(&*m.entries["blk.0.attn_q.weight"], &[2.0, 0.5]);
        assert_eq!(&*m.entries["x"], &[3.0]);
        assert_eq!(
            (m.chunk_count, m.datasets.as_slice()),
            (7, &["wiki.txt".to_string()][..])
        );
        let plain = Imatrix::from_legacy(&legacy(&[("a", 1, &[1.0])], None)).unwrap();
        assert_eq!((plain.chunk_count, plain.datasets.len()), (0, 0));
    }

    #[test]
    fn truncated_or_lying_legacy_files_are_refused() {
        let b = legacy(&[("a", 1, &[1.0, 2.0])], None);
        for cut in 0..b.len() {
            assert!(Imatrix::from_legacy(&b[..cut]).is_err(), "cut at {cut}");
        }
        let mut huge = b.clone();
        huge[4..8].copy_from_slice(&i32::MAX.to_le_bytes());
        assert!(Imatrix::from_legacy(&huge).is_err());
        let mut negative = b.clone();
        negative[10..14].copy_from_slice(&(-1i32).to_le_bytes());
        assert!(Imatrix::from_legacy(&negative).is_err());
        assert!(Imatrix::from_legacy(&0i32.to_le_bytes()).is_err());
    }

    #[test]
    fn counts_are_rounded_and_empty_experts_get_ones() {
        let v = normalize("e", &[4.0, 6.0, 5.0, 5.0], &[1.6, 0.2]).unwrap();
        assert_eq!(v, [2.0, 3.0, 1.0, 1.0]);
        assert!(normalize("e", &[1.0, 2.0, 3.0], &[1.0, 1.0]).is_err());
    }

    #[test]
    fn include_then_exclude_by_substring() {
        let mut m = Imatrix::default();
        for n in ["blk.0.ffn_down.weight", "blk.0.attn_q.weight", "blk.1.ffn_down.weight"] {
            m.entries.insert(n.into(), vec![1.0].into());
        }
        m.select(&["ffn_down".into()], &["blk.1.".into()]);
        assert_eq!(m.entries.keys().collect::<Vec<_>>(), ["blk.0.ffn_down.weight"]);
    }
}
