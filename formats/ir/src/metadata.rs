//! Ordered, typed model metadata. The value types are GGUF's (the richest of
//! the formats); formats with string-only metadata (safetensors) convert with
//! [`Value::to_text`].

use serde_json::json;

/// The type of a metadata value (GGUF numbering order).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueType {
    U8,
    I8,
    U16,
    I16,
    U32,
    I32,
    F32,
    Bool,
    String,
    Array,
    U64,
    I64,
    F64,
}

/// A typed metadata value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    F32(f32),
    Bool(bool),
    String(String),
    /// A homogeneous array, stored by element type (one byte per element
    /// for a `u8` array, not one `Value` each).
    Array(Array),
    U64(u64),
    I64(i64),
    F64(f64),
}

impl Value {
    pub fn value_type(&self) -> ValueType {
        match self {
            Value::U8(_) => ValueType::U8,
            Value::I8(_) => ValueType::I8,
            Value::U16(_) => ValueType::U16,
            Value::I16(_) => ValueType::I16,
            Value::U32(_) => ValueType::U32,
            Value::I32(_) => ValueType::I32,
            Value::F32(_) => ValueType::F32,
            Value::Bool(_) => ValueType::Bool,
            Value::String(_) => ValueType::String,
            Value::Array(..) => ValueType::Array,
            Value::U64(_) => ValueType::U64,
            Value::I64(_) => ValueType::I64,
            Value::F64(_) => ValueType::F64,
        }
    }

    /// The value as JSON (numbers, strings, booleans, arrays): what its
    /// [`serde::Serialize`] writes, built in memory. Streaming a large
    /// array through `Serialize` never builds it.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
    }

    /// The value as text: strings as they are, everything else as JSON.
    /// This is how typed metadata enters string-only formats.
    pub fn to_text(&self) -> String {
        match self {
            Value::String(s) => s.clone(),
            other => other.to_json().to_string(),
        }
    }

    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            Value::U8(v) => Some(v.into()),
            Value::U16(v) => Some(v.into()),
            Value::U32(v) => Some(v.into()),
            Value::U64(v) => Some(v),
            Value::I8(v) => u64::try_from(v).ok(),
            Value::I16(v) => u64::try_from(v).ok(),
            Value::I32(v) => u64::try_from(v).ok(),
            Value::I64(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }
}

/// Strings packed into one buffer: a million short strings cost their
/// bytes and one offset each.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Strings {
    bytes: String,
    ends: Vec<usize>,
}

impl Strings {
    pub fn push(&mut self, s: &str) {
        self.bytes.push_str(s);
        self.ends.push(self.bytes.len());
    }
    pub fn len(&self) -> usize {
        self.ends.len()
    }
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }
    pub fn get(&self, i: usize) -> Option<&str> {
        let end = *self.ends.get(i)?;
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        self.bytes.get(start..end)
    }
    pub fn iter(&self) -> impl Iterator<Item = &str> + '_ {
        (0..self.len()).filter_map(|i| self.get(i))
    }
}

impl<S: AsRef<str>> FromIterator<S> for Strings {
    fn from_iter<I: IntoIterator<Item = S>>(iter: I) -> Self {
        let mut s = Strings::default();
        for x in iter {
            s.push(x.as_ref());
        }
        s
    }
}

/// A homogeneous metadata array, one vector of its element type.
#[derive(Debug, Clone, PartialEq)]
pub enum Array {
    U8(Vec<u8>),
    I8(Vec<i8>),
    U16(Vec<u16>),
    I16(Vec<i16>),
    U32(Vec<u32>),
    I32(Vec<i32>),
    F32(Vec<f32>),
    Bool(Vec<bool>),
    String(Strings),
    /// Arrays of arrays (each inner array typed on its own).
    Array(Vec<Array>),
    U64(Vec<u64>),
    I64(Vec<i64>),
    F64(Vec<f64>),
}

impl Array {
    pub fn element_type(&self) -> ValueType {
        match self {
            Array::U8(_) => ValueType::U8,
            Array::I8(_) => ValueType::I8,
            Array::U16(_) => ValueType::U16,
            Array::I16(_) => ValueType::I16,
            Array::U32(_) => ValueType::U32,
            Array::I32(_) => ValueType::I32,
            Array::F32(_) => ValueType::F32,
            Array::Bool(_) => ValueType::Bool,
            Array::String(_) => ValueType::String,
            Array::Array(_) => ValueType::Array,
            Array::U64(_) => ValueType::U64,
            Array::I64(_) => ValueType::I64,
            Array::F64(_) => ValueType::F64,
        }
    }

    pub fn len(&self) -> usize {
        match self {
            Array::U8(v) => v.len(),
            Array::I8(v) => v.len(),
            Array::U16(v) => v.len(),
            Array::I16(v) => v.len(),
            Array::U32(v) => v.len(),
            Array::I32(v) => v.len(),
            Array::F32(v) => v.len(),
            Array::Bool(v) => v.len(),
            Array::String(v) => v.len(),
            Array::Array(v) => v.len(),
            Array::U64(v) => v.len(),
            Array::I64(v) => v.len(),
            Array::F64(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Element `i` as a value (made on demand).
    pub fn get(&self, i: usize) -> Option<Value> {
        Some(match self {
            Array::U8(v) => Value::U8(*v.get(i)?),
            Array::I8(v) => Value::I8(*v.get(i)?),
            Array::U16(v) => Value::U16(*v.get(i)?),
            Array::I16(v) => Value::I16(*v.get(i)?),
            Array::U32(v) => Value::U32(*v.get(i)?),
            Array::I32(v) => Value::I32(*v.get(i)?),
            Array::F32(v) => Value::F32(*v.get(i)?),
            Array::Bool(v) => Value::Bool(*v.get(i)?),
            Array::String(v) => Value::String(v.get(i)?.to_string()),
            Array::Array(v) => Value::Array(v.get(i)?.clone()),
            Array::U64(v) => Value::U64(*v.get(i)?),
            Array::I64(v) => Value::I64(*v.get(i)?),
            Array::F64(v) => Value::F64(*v.get(i)?),
        })
    }

    /// The elements as values, one at a time.
    pub fn iter(&self) -> impl Iterator<Item = Value> + '_ {
        (0..self.len()).filter_map(|i| self.get(i))
    }
}

impl ValueType {
    /// The name `--json` and the string encoding use (`u32`, `string`, …).
    pub fn name(self) -> &'static str {
        match self {
            ValueType::U8 => "u8",
            ValueType::I8 => "i8",
            ValueType::U16 => "u16",
            ValueType::I16 => "i16",
            ValueType::U32 => "u32",
            ValueType::I32 => "i32",
            ValueType::F32 => "f32",
            ValueType::Bool => "bool",
            ValueType::String => "string",
            ValueType::Array => "array",
            ValueType::U64 => "u64",
            ValueType::I64 => "i64",
            ValueType::F64 => "f64",
        }
    }

    fn from_name(s: &str) -> Option<ValueType> {
        use ValueType::*;
        [U8, I8, U16, I16, U32, I32, F32, Bool, String, Array, U64, I64, F64]
            .into_iter()
            .find(|t| t.name() == s)
    }
}

impl Value {
    /// The value's type as text: `u32`, `string`, `array<u32>`, and
    /// `array<array>` for arrays of arrays (whose elements carry their own).
    pub fn type_name(&self) -> String {
        match self {
            Value::Array(a) => format!("array<{}>", a.element_type().name()),
            other => other.value_type().name().to_string(),
        }
    }

    /// `{"type": "u32", "value": 2}`: the value with its type, the
    /// lossless JSON form (`docs/json.md`).
    pub fn typed(&self) -> Typed<'_> {
        Typed(self)
    }

    /// The value's typed JSON without the type: what [`Typed`] writes
    /// under `"value"` (an array of arrays holds typed arrays).
    fn serialize_bare<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Value::Array(a) => a.serialize_bare(s),
            other => serde::Serialize::serialize(other, s),
        }
    }

    /// Reads back what [`Value::typed`] writes: `ty` is [`Value::type_name`],
    /// `v` the JSON value.
    pub fn from_typed(ty: &str, v: &serde_json::Value) -> Result<Value, String> {
        if let Some(inner) = ty.strip_prefix("array<").and_then(|t| t.strip_suffix('>')) {
            let et = ValueType::from_name(inner).ok_or_else(|| format!("unknown element type '{inner}'"))?;
            let items = v
                .as_array()
                .ok_or_else(|| format!("expected an array for {ty}, got {v}"))?;
            return Ok(Value::Array(Array::from_typed(et, items)?));
        }
        let t = ValueType::from_name(ty)
            .filter(|t| *t != ValueType::Array)
            .ok_or_else(|| format!("unknown type '{ty}'"))?;
        scalar_from_json(t, v)
    }

    /// The text a string-only format stores: strings as they are, other
    /// values as the JSON [`Typed`] writes under `"value"`.
    pub fn to_typed_text(&self) -> String {
        match self {
            Value::String(s) => s.clone(),
            other => {
                let mut out = Vec::new();
                let mut ser = serde_json::Serializer::new(&mut out);
                match other.serialize_bare(&mut ser) {
                    Ok(()) => String::from_utf8(out).unwrap_or_default(),
                    Err(_) => String::new(),
                }
            }
        }
    }
}

/// One scalar of type `t` from JSON (floats also from `"NaN"`, `"inf"`, `"-inf"`).
fn scalar_from_json(t: ValueType, v: &serde_json::Value) -> Result<Value, String> {
    let bad = || format!("{v} is not a {}", t.name());
    let int = || {
        v.as_i64()
            .map(i128::from)
            .or_else(|| v.as_u64().map(i128::from))
            .ok_or_else(bad)
    };
    let float = || -> Result<f64, String> {
        match v {
            serde_json::Value::Number(n) => n.as_f64().ok_or_else(bad),
            serde_json::Value::String(s) => match s.as_str() {
                "NaN" => Ok(f64::NAN),
                "inf" => Ok(f64::INFINITY),
                "-inf" => Ok(f64::NEG_INFINITY),
                _ => Err(bad()),
            },
            _ => Err(bad()),
        }
    };
    macro_rules! narrow {
        ($variant:ident, $ty:ty) => {
            Value::$variant(<$ty>::try_from(int()?).map_err(|_| bad())?)
        };
    }
    Ok(match t {
        ValueType::U8 => narrow!(U8, u8),
        ValueType::I8 => narrow!(I8, i8),
        ValueType::U16 => narrow!(U16, u16),
        ValueType::I16 => narrow!(I16, i16),
        ValueType::U32 => narrow!(U32, u32),
        ValueType::I32 => narrow!(I32, i32),
        ValueType::U64 => narrow!(U64, u64),
        ValueType::I64 => narrow!(I64, i64),
        // The decimal was written as the shortest one that reads back as
        // this f32; read it as an f32, not through an f64.
        ValueType::F32 => match v {
            serde_json::Value::Number(n) => Value::F32(n.to_string().parse().map_err(|_| bad())?),
            _ => Value::F32(float()? as f32),
        },
        ValueType::F64 => Value::F64(float()?),
        ValueType::Bool => Value::Bool(v.as_bool().ok_or_else(bad)?),
        ValueType::String => Value::String(v.as_str().ok_or_else(bad)?.to_string()),
        ValueType::Array => return Err(bad()),
    })
}

impl Array {
    fn serialize_bare<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Array::Array(inner) => s.collect_seq(inner.iter().map(TypedArray)),
            other => serde::Serialize::serialize(other, s),
        }
    }

    fn from_typed(et: ValueType, items: &[serde_json::Value]) -> Result<Array, String> {
        let scalars = || {
            items
                .iter()
                .map(|v| scalar_from_json(et, v))
                .collect::<Result<Vec<_>, _>>()
        };
        macro_rules! collect {
            ($variant:ident) => {
                Array::$variant(
                    scalars()?
                        .into_iter()
                        .filter_map(|v| match v {
                            Value::$variant(x) => Some(x),
                            _ => None,
                        })
                        .collect(),
                )
            };
        }
        Ok(match et {
            ValueType::U8 => collect!(U8),
            ValueType::I8 => collect!(I8),
            ValueType::U16 => collect!(U16),
            ValueType::I16 => collect!(I16),
            ValueType::U32 => collect!(U32),
            ValueType::I32 => collect!(I32),
            ValueType::F32 => collect!(F32),
            ValueType::Bool => collect!(Bool),
            ValueType::U64 => collect!(U64),
            ValueType::I64 => collect!(I64),
            ValueType::F64 => collect!(F64),
            ValueType::String => Array::String(
                items
                    .iter()
                    .map(|v| v.as_str().ok_or_else(|| format!("{v} is not a string")))
                    .collect::<Result<Strings, _>>()?,
            ),
            ValueType::Array => Array::Array(
                items
                    .iter()
                    .map(|v| {
                        let ty = v.get("type").and_then(|t| t.as_str()).unwrap_or_default();
                        match Value::from_typed(ty, v.get("value").unwrap_or(&serde_json::Value::Null))? {
                            Value::Array(a) => Ok(a),
                            _ => Err(format!("an array of arrays holds {v}")),
                        }
                    })
                    .collect::<Result<_, String>>()?,
            ),
        })
    }
}

/// A value with its type: `{"type": "u32", "value": 2}` (see [`Value::typed`]).
pub struct Typed<'a>(&'a Value);

impl serde::Serialize for Typed<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(Some(2))?;
        m.serialize_entry("type", &self.0.type_name())?;
        m.serialize_entry("value", &Bare(self.0))?;
        m.end()
    }
}

struct Bare<'a>(&'a Value);

impl serde::Serialize for Bare<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize_bare(s)
    }
}

/// An inner array of an array of arrays, with its type.
struct TypedArray<'a>(&'a Array);

impl serde::Serialize for TypedArray<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(Some(2))?;
        m.serialize_entry("type", &format!("array<{}>", self.0.element_type().name()))?;
        m.serialize_entry("value", &BareArray(self.0))?;
        m.end()
    }
}

struct BareArray<'a>(&'a Array);

impl serde::Serialize for BareArray<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize_bare(s)
    }
}

/// The metadata as one JSON object of typed values, in order:
/// `{"key": {"type": "u32", "value": 2}, …}`.
pub struct TypedMetadata<'a>(pub &'a Metadata);

impl serde::Serialize for TypedMetadata<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.0.iter().map(|(k, v)| (k, v.typed())))
    }
}

/// The key under which [`Metadata::to_strings`] records the types of the
/// values that are not strings.
pub const TYPES_KEY: &str = "modelconv.metadata_types";

/// A float as JSON; JSON has no NaN or infinity: those become strings.
/// JSON: numbers, strings, booleans, arrays (non-finite floats as strings).
impl serde::Serialize for Value {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Value::U8(v) => s.serialize_u8(*v),
            Value::I8(v) => s.serialize_i8(*v),
            Value::U16(v) => s.serialize_u16(*v),
            Value::I16(v) => s.serialize_i16(*v),
            Value::U32(v) => s.serialize_u32(*v),
            Value::I32(v) => s.serialize_i32(*v),
            // The shortest decimal that reads back as this f32 (1e-5, not 9.99999974e-6).
            Value::F32(v) => float_json(v.to_string().parse().unwrap_or(f64::from(*v))).serialize(s),
            Value::Bool(v) => s.serialize_bool(*v),
            Value::String(v) => s.serialize_str(v),
            Value::Array(a) => a.serialize(s),
            Value::U64(v) => s.serialize_u64(*v),
            Value::I64(v) => s.serialize_i64(*v),
            Value::F64(v) => float_json(*v).serialize(s),
        }
    }
}

/// A JSON array, element by element.
impl serde::Serialize for Array {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.iter())
    }
}

/// One JSON object, in order.
impl serde::Serialize for Metadata {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.entries.iter().map(|(k, v)| (k, v)))
    }
}

pub fn float_json(v: f64) -> serde_json::Value {
    serde_json::Number::from_f64(v).map_or_else(|| json!(v.to_string()), serde_json::Value::Number)
}

/// Most metadata entries a reader accepts (GGUF key/values, safetensors
/// `__metadata__`): real files have tens; each entry costs a few hundred
/// bytes of memory whatever its size in the file.
pub const MAX_METADATA_ENTRIES: u64 = 1 << 16;

/// Ordered key → value metadata. Keys are unique; insertion order is kept;
/// look-ups and inserts are hashed (a file with a million keys is read in
/// linear time).
#[derive(Debug, Clone, Default)]
pub struct Metadata {
    entries: Vec<(String, Value)>,
    index: std::collections::HashMap<String, usize>,
}

impl PartialEq for Metadata {
    fn eq(&self, other: &Self) -> bool {
        self.entries == other.entries
    }
}

impl Metadata {
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets `key`, replacing an existing value in place (keeping its position).
    pub fn set(&mut self, key: impl Into<String>, value: Value) {
        let key = key.into();
        match self.index.get(&key) {
            Some(&i) => self.entries[i].1 = value,
            None => {
                self.index.insert(key.clone(), self.entries.len());
                self.entries.push((key, value));
            }
        }
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.index.get(key).map(|&i| &self.entries[i].1)
    }

    pub fn contains(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    pub fn remove(&mut self, key: &str) -> Option<Value> {
        let i = self.index.remove(key)?;
        let (_, v) = self.entries.remove(i);
        for slot in self.index.values_mut() {
            if *slot > i {
                *slot -= 1;
            }
        }
        Some(v)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.entries.iter().map(|(k, v)| (k.as_str(), v))
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The metadata for a format whose metadata is strings only
    /// (safetensors' `__metadata__`), losslessly: strings as they are,
    /// other values as their typed JSON value ([`Value::to_typed_text`]),
    /// and one more entry, [`TYPES_KEY`], a JSON object giving the type of
    /// each value that is not a string. [`Metadata::from_strings`] reads it back.
    pub fn to_strings(&self) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = Vec::with_capacity(self.len() + 1);
        let mut types = serde_json::Map::new();
        for (k, v) in self.iter() {
            if k == TYPES_KEY {
                continue;
            }
            if !matches!(v, Value::String(_)) {
                types.insert(k.to_string(), json!(v.type_name()));
            }
            out.push((k.to_string(), v.to_typed_text()));
        }
        if !types.is_empty() {
            // serde_json's map is sorted; the order of the types entry does not matter.
            out.push((TYPES_KEY.to_string(), serde_json::Value::Object(types).to_string()));
        }
        out
    }

    /// Reads what [`Metadata::to_strings`] writes: entries named in
    /// [`TYPES_KEY`] get their type back; all others stay strings. Files
    /// written by other tools (no such entry) read as strings.
    pub fn from_strings(entries: Vec<(String, String)>) -> Result<Metadata, String> {
        let types: serde_json::Map<String, serde_json::Value> = match entries.iter().find(|(k, _)| k == TYPES_KEY) {
            Some((_, text)) => match serde_json::from_str(text) {
                Ok(serde_json::Value::Object(m)) => m,
                _ => return Err(format!("{TYPES_KEY} is not a JSON object of type names")),
            },
            None => serde_json::Map::new(),
        };
        let mut md = Metadata::new();
        for (k, text) in entries {
            if k == TYPES_KEY {
                continue;
            }
            let value = match types.get(&k) {
                None => Value::String(text),
                Some(ty) => {
                    let ty = ty
                        .as_str()
                        .ok_or_else(|| format!("{TYPES_KEY}: the type of '{k}' is not a string"))?;
                    let v: serde_json::Value = serde_json::from_str(&text)
                        .map_err(|e| format!("'{k}' is typed {ty} but its value is not JSON: {e}"))?;
                    Value::from_typed(ty, &v).map_err(|e| format!("'{k}' ({ty}): {e}"))?
                }
            };
            md.set(k, value);
        }
        for k in types.keys() {
            if !md.contains(k) {
                return Err(format!("{TYPES_KEY} names '{k}', which is not in the metadata"));
            }
        }
        Ok(md)
    }

    /// The metadata as one JSON object, in order (see [`Value::to_json`]).
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
    }
}

/// Text from a file made safe for a terminal: control characters (C0, DEL,
/// C1) and the bidirectional overrides that can reorder or hide what
/// follows are shown escaped (`\u{1b}`), so a name cannot rewrite the
/// lines around it. Everything else is kept as it is.
pub fn printable(s: &str) -> std::borrow::Cow<'_, str> {
    let bad = |c: char| c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}');
    if !s.chars().any(bad) {
        return std::borrow::Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if bad(c) {
            out.extend(c.escape_unicode());
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

/// A byte count for people: `512 B`, `1.5 MiB`.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_keeps_position() {
        let mut m = Metadata::new();
        m.set("a", Value::U32(1));
        m.set("b", Value::Bool(true));
        m.set("a", Value::String("x".into()));
        let keys: Vec<_> = m.iter().map(|(k, _)| k).collect();
        assert_eq!(keys, ["a", "b"]);
        assert_eq!(m.get("a").unwrap().to_text(), "x");
        assert_eq!(Value::Array(Array::I32(vec![1, -2])).to_text(), "[1,-2]");
        assert_eq!(Value::F32(f32::NAN).to_json(), json!("NaN"));
    }

    fn every_type() -> Metadata {
        let mut m = Metadata::new();
        m.set("u8", Value::U8(255));
        m.set("i8", Value::I8(-128));
        m.set("u16", Value::U16(65535));
        m.set("i16", Value::I16(-3));
        m.set("u32", Value::U32(u32::MAX));
        m.set("i32", Value::I32(i32::MIN));
        m.set("f32", Value::F32(1e-5));
        m.set("f32 odd", Value::F32(f32::from_bits(0x3f80_0001)));
        m.set("nan", Value::F32(f32::NAN));
        m.set("inf", Value::F64(f64::NEG_INFINITY));
        m.set("bool", Value::Bool(true));
        m.set("string", Value::String("[1, 2] looks like JSON".into()));
        m.set("u64", Value::U64(u64::MAX));
        m.set("i64", Value::I64(i64::MIN));
        m.set("f64", Value::F64(0.1));
        m.set(
            "strings",
            Value::Array(Array::String(["a", "", "\"q\""].into_iter().collect())),
        );
        m.set("f32s", Value::Array(Array::F32(vec![0.5, -0.0, f32::INFINITY])));
        m.set("empty", Value::Array(Array::U8(Vec::new())));
        m.set(
            "nested",
            Value::Array(Array::Array(vec![
                Array::I32(vec![1, -2]),
                Array::String(["x"].into_iter().collect()),
            ])),
        );
        m
    }

    /// Bit-level equality (NaN == NaN, -0.0 != 0.0).
    fn same(a: &Metadata, b: &Metadata) -> bool {
        format!("{:?}", a.entries) == format!("{:?}", b.entries)
            && a.iter().zip(b.iter()).all(|((_, x), (_, y))| match (x, y) {
                (Value::F32(p), Value::F32(q)) => p.to_bits() == q.to_bits(),
                (Value::F64(p), Value::F64(q)) => p.to_bits() == q.to_bits(),
                _ => true,
            })
    }

    #[test]
    fn strings_round_trip_every_type() {
        let m = every_type();
        let strings = m.to_strings();
        assert_eq!(strings.len(), m.len() + 1);
        assert_eq!(strings[0], ("u8".to_string(), "255".to_string()));
        assert_eq!(
            strings[11],
            ("string".to_string(), "[1, 2] looks like JSON".to_string())
        );
        let back = Metadata::from_strings(strings).unwrap();
        assert!(same(&m, &back), "{back:?}");
        // Files from other tools stay strings.
        let plain = Metadata::from_strings(vec![("format".into(), "pt".into()), ("n".into(), "2".into())]).unwrap();
        assert_eq!(plain.get("n"), Some(&Value::String("2".into())));
    }

    #[test]
    fn typed_json_round_trips() {
        let m = every_type();
        let text = serde_json::to_string(&TypedMetadata(&m)).unwrap();
        assert!(text.starts_with(r#"{"u8":{"type":"u8","value":255},"#), "{text}");
        assert!(text.contains(r#""nested":{"type":"array<array>","value":[{"type":"array<i32>","value":[1,-2]},"#));
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        let mut back = Metadata::new();
        for (k, _) in m.iter() {
            let e = &v[k];
            back.set(k, Value::from_typed(e["type"].as_str().unwrap(), &e["value"]).unwrap());
        }
        assert!(same(&m, &back));
    }

    #[test]
    fn bad_typed_strings_are_errors() {
        let types = |t: &str| (TYPES_KEY.to_string(), t.to_string());
        for (entries, what) in [
            (vec![("a".into(), "300".into()), types(r#"{"a":"u8"}"#)], "not a u8"),
            (vec![("a".into(), "x".into()), types(r#"{"a":"u8"}"#)], "not JSON"),
            (
                vec![("a".into(), "1".into()), types(r#"{"a":"complex"}"#)],
                "unknown type",
            ),
            (
                vec![("a".into(), "1".into()), types(r#"{"b":"u8"}"#)],
                "not in the metadata",
            ),
            (vec![types("[]")], "not a JSON object"),
        ] {
            let e = Metadata::from_strings(entries).unwrap_err();
            assert!(e.contains(what), "{e}");
        }
    }
}
