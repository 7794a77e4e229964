//! The safetensors header: an 8-byte little-endian length, then a JSON object
//! mapping tensor names to `{dtype, shape, data_offsets}` plus an optional
//! `__metadata__` string map. Each rule below is checked with a message that
//! names the file, the tensor and what was expected.

use modelconv_ir::{numel, DType, Error, Result, ALL_DTYPES};
use serde::de::{Deserializer, MapAccess, Visitor};
use serde_json::Value as Json;
use std::fmt;

/// Largest header accepted (the `safetensors` crate's limit).
pub const MAX_HEADER_SIZE: u64 = 100_000_000;

/// One tensor entry of the header.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub name: String,
    pub dtype: DType,
    pub shape: Vec<u64>,
    /// Byte range within the data section (after the header).
    pub begin: u64,
    pub end: u64,
}

/// A parsed and validated header.
#[derive(Debug, Clone, Default)]
pub struct Header {
    /// `__metadata__`, in file order.
    pub metadata: Vec<(String, String)>,
    /// Tensors in data order (by offset; ties keep header order).
    pub entries: Vec<Entry>,
}

/// A JSON object as its entries in file order, refusing duplicate keys
/// (serde_json's own maps silently keep the last one). `__metadata__`'s
/// own entries are kept in file order too ([`Slot::Object`]).
struct OrderedObject(Vec<(String, Slot)>);

/// A value of the top-level object: a tensor entry as JSON, or the
/// metadata object as its ordered entries.
enum Slot {
    Json(Json),
    Object(Vec<(String, Json)>),
}

/// `__metadata__`: `null`, or an object read in file order.
struct MetadataValue(Option<Vec<(String, Json)>>);

impl<'de> serde::Deserialize<'de> for MetadataValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = MetadataValue;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("__metadata__ as an object of strings")
            }
            fn visit_unit<E: serde::de::Error>(self) -> std::result::Result<MetadataValue, E> {
                Ok(MetadataValue(None))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> std::result::Result<MetadataValue, A::Error> {
                let mut out: Vec<(String, Json)> = Vec::new();
                let mut seen = std::collections::HashSet::new();
                while let Some((k, v)) = map.next_entry::<String, Json>()? {
                    if !seen.insert(k.clone()) {
                        return Err(serde::de::Error::custom(format!(
                            "__metadata__ key '{k}' appears twice"
                        )));
                    }
                    if out.len() as u64 >= modelconv_ir::MAX_METADATA_ENTRIES {
                        return Err(serde::de::Error::custom(format!(
                            "__metadata__ has more than {} entries",
                            modelconv_ir::MAX_METADATA_ENTRIES
                        )));
                    }
                    out.push((k, v));
                }
                Ok(MetadataValue(Some(out)))
            }
        }
        d.deserialize_any(V)
    }
}

impl<'de> serde::Deserialize<'de> for OrderedObject {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = OrderedObject;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> std::result::Result<OrderedObject, A::Error> {
                let mut out: Vec<(String, Slot)> = Vec::new();
                let mut seen = std::collections::HashSet::new();
                while let Some(k) = map.next_key::<String>()? {
                    if !seen.insert(k.clone()) {
                        return Err(serde::de::Error::custom(format!("key '{k}' appears twice")));
                    }
                    let v = if k == "__metadata__" {
                        match map.next_value::<MetadataValue>()?.0 {
                            Some(entries) => Slot::Object(entries),
                            None => Slot::Json(Json::Null),
                        }
                    } else {
                        Slot::Json(map.next_value::<Json>()?)
                    };
                    out.push((k, v));
                }
                Ok(OrderedObject(out))
            }
        }
        d.deserialize_map(V)
    }
}

/// The safetensors spelling of a plain dtype.
pub fn dtype_from_str(s: &str) -> Option<DType> {
    ALL_DTYPES.iter().copied().find(|d| !d.is_quantized() && d.name() == s)
}

fn u64_of(v: &Json) -> Option<u64> {
    v.as_u64()
}

/// Parses and validates the JSON header. `data_len` is the number of bytes
/// after the header; the tensors must cover it exactly, without gaps or
/// overlaps. Errors carry no path (the caller adds it).
pub fn parse(json: &[u8], data_len: u64) -> Result<Header> {
    let text = std::str::from_utf8(json).map_err(|e| {
        Error::invalid(format!(
            "header is not valid UTF-8 (byte {} of the header)",
            e.valid_up_to()
        ))
    })?;
    if !text.starts_with('{') {
        return Err(Error::invalid("header does not start with '{'"));
    }
    let obj: OrderedObject =
        serde_json::from_str(text.trim_end_matches(' ')).map_err(|e| Error::invalid(format!("header JSON: {e}")))?;
    let mut header = Header::default();
    for (name, value) in obj.0 {
        match value {
            Slot::Object(entries) => header.metadata = parse_metadata(entries)?,
            Slot::Json(Json::Null) if name == "__metadata__" => {}
            Slot::Json(value) => header.entries.push(parse_entry(&name, &value)?),
        }
    }
    header.entries.sort_by_key(|e| (e.begin, e.end));
    let mut expected = 0u64;
    for e in &header.entries {
        if e.begin != expected {
            let what = if e.begin < expected {
                "overlaps the previous tensor"
            } else {
                "leaves a gap"
            };
            return Err(Error::invalid(format!(
                "tensor '{}': data_offsets start at {} but the previous tensor ends at {expected} ({what})",
                e.name, e.begin
            )));
        }
        expected = e.end;
    }
    if expected > data_len {
        // The file ends inside the data: offset counted from the data's start.
        return Err(Error::Truncated {
            path: Default::default(),
            offset: data_len,
            msg: format!("tensors cover {expected} bytes of data but the file holds {data_len} bytes after the header"),
        });
    }
    if expected != data_len {
        return Err(Error::invalid(format!(
            "tensors cover {expected} bytes of data but the file holds {data_len} bytes after the header"
        )));
    }
    Ok(header)
}

fn parse_metadata(entries: Vec<(String, Json)>) -> Result<Vec<(String, String)>> {
    entries
        .into_iter()
        .map(|(k, v)| match v {
            Json::String(s) => Ok((k, s)),
            other => Err(Error::invalid(format!(
                "__metadata__ value of '{k}' is {other}, expected a string"
            ))),
        })
        .collect()
}

fn parse_entry(name: &str, value: &Json) -> Result<Entry> {
    let bad = |what: &str| Error::invalid(format!("tensor '{name}': {what}"));
    let obj = value.as_object().ok_or_else(|| bad("entry is not an object"))?;
    let dtype_s = obj
        .get("dtype")
        .and_then(Json::as_str)
        .ok_or_else(|| bad("missing string 'dtype'"))?;
    let dtype = dtype_from_str(dtype_s).ok_or_else(|| bad(&format!("unknown dtype '{dtype_s}'")))?;
    let shape = obj
        .get("shape")
        .and_then(Json::as_array)
        .ok_or_else(|| bad("missing array 'shape'"))?
        .iter()
        .map(|d| u64_of(d).ok_or_else(|| bad(&format!("shape dimension {d} is not a non-negative integer"))))
        .collect::<Result<Vec<u64>>>()?;
    let offs = obj
        .get("data_offsets")
        .and_then(Json::as_array)
        .filter(|a| a.len() == 2)
        .ok_or_else(|| bad("missing 'data_offsets' [begin, end]"))?;
    let (begin, end) = match (u64_of(&offs[0]), u64_of(&offs[1])) {
        (Some(b), Some(e)) if b <= e => (b, e),
        _ => {
            return Err(bad(&format!(
                "data_offsets {:?} is not [begin, end] with begin <= end",
                offs
            )))
        }
    };
    let n = numel(&shape).map_err(|e| bad(&e.to_string()))?;
    let need = dtype.byte_len(n).map_err(|e| bad(&e.to_string()))?;
    if end - begin != need {
        return Err(bad(&format!(
            "{dtype} {shape:?} needs {need} bytes but data_offsets [{begin}, {end}] span {}",
            end - begin
        )));
    }
    Ok(Entry {
        name: name.to_string(),
        dtype,
        shape,
        begin,
        end,
    })
}

/// Serializes a header: metadata (keys sorted) first, then the tensors in the
/// given order, compact JSON, padded with spaces so that the data starts at
/// a multiple of 8 bytes in the file.
pub fn serialize(metadata: &[(String, String)], entries: &[Entry]) -> Vec<u8> {
    let mut out = String::from("{");
    let mut first = true;
    let mut sep = |out: &mut String| {
        if !first {
            out.push(',');
        }
        first = false;
    };
    if !metadata.is_empty() {
        sep(&mut out);
        // In the model's order (a GGUF's keys come back in theirs).
        out.push_str("\"__metadata__\":{");
        for (i, (k, v)) in metadata.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(&Json::from(k.as_str()).to_string());
            out.push(':');
            out.push_str(&Json::from(v.as_str()).to_string());
        }
        out.push('}');
    }
    for e in entries {
        sep(&mut out);
        out.push_str(&Json::from(e.name.as_str()).to_string());
        let shape: Vec<String> = e.shape.iter().map(u64::to_string).collect();
        out.push_str(&format!(
            ":{{\"dtype\":\"{}\",\"shape\":[{}],\"data_offsets\":[{},{}]}}",
            e.dtype.name(),
            shape.join(","),
            e.begin,
            e.end
        ));
    }
    out.push('}');
    let mut bytes = out.into_bytes();
    let pad = (8 - (8 + bytes.len()) % 8) % 8;
    bytes.resize(bytes.len() + pad, b' ');
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: &str, b: u64, e: u64) -> Entry {
        Entry {
            name: name.into(),
            dtype: DType::F32,
            shape: vec![(e - b) / 4],
            begin: b,
            end: e,
        }
    }

    #[test]
    fn round_trip_and_alignment() {
        let meta = vec![
            ("z".to_string(), "1".to_string()),
            ("a".to_string(), "\"q\"".to_string()),
        ];
        let entries = vec![entry("w", 0, 8), entry("b\u{e9}", 8, 12)];
        let bytes = serialize(&meta, &entries);
        assert_eq!((8 + bytes.len()) % 8, 0);
        let h = parse(&bytes, 12).unwrap();
        assert_eq!(h.entries, entries);
        assert_eq!(h.metadata, meta, "__metadata__ keeps file order");
    }

    #[test]
    fn rejects_lies() {
        let cases: &[(&str, u64, &str)] = &[
            (
                r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"a":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}}"#,
                16,
                "twice",
            ),
            (
                r#"{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}"#,
                8,
                "needs 12 bytes",
            ),
            (
                r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}"#,
                12,
                "overlaps",
            ),
            (
                r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#,
                9,
                "cover 8 bytes",
            ),
            (r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}}"#, 16, "gap"),
            (
                r#"{"a":{"dtype":"F31","shape":[2],"data_offsets":[0,8]}}"#,
                8,
                "unknown dtype",
            ),
            (
                r#"{"a":{"dtype":"F32","shape":[4294967296,4294967296,4294967296],"data_offsets":[0,8]}}"#,
                8,
                "more elements",
            ),
            (
                r#"{"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,8]}}"#,
                8,
                "non-negative",
            ),
            (r#"{"__metadata__":{"k":1}}"#, 0, "expected a string"),
            (r#"[1]"#, 0, "start with"),
        ];
        for (json, len, want) in cases {
            let err = parse(json.as_bytes(), *len).unwrap_err().to_string();
            assert!(err.contains(want), "{json}: {err}");
        }
    }
}
