//! # modelconv-npy
//!
//! The `.npy` header: magic `\x93NUMPY`, a version, a little-endian length
//! (2 bytes in version 1, 4 in 2 and 3), and a Python dict literal that
//! numpy reads with `ast.literal_eval`: `{'descr': '<f4', 'fortran_order':
//! False, 'shape': (3, 4), }`. Parsed here as the literal it is, bounded in
//! depth, for the NumPy reader (`formats/numpy`) and for `scan` (which asks
//! whether the data is a pickle). Also numpy's dtype names and `descr`
//! strings as IR types, for every reader of numpy data (NumPy files, numpy
//! arrays in checkpoints, Flax's msgpack).

pub mod pickled;

use modelconv_ir::DType;

/// A Python literal of the kinds a header holds.
#[derive(Debug, Clone, PartialEq)]
pub enum Lit {
    Str(String),
    /// A number, as written.
    Num(String),
    /// `True`, `False` or `None`.
    Const(&'static str),
    /// A tuple or a list.
    Seq(Vec<Lit>),
    Dict(Vec<(Lit, Lit)>),
}

/// Deepest nesting accepted.
const MAX_DEPTH: usize = 64;

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
    depth: usize,
}

impl Parser<'_> {
    fn ws(&mut self) {
        while self.s.get(self.i).is_some_and(|c| c.is_ascii_whitespace()) {
            self.i += 1;
        }
    }
    fn eat(&mut self, c: u8) -> bool {
        self.ws();
        if self.s.get(self.i) == Some(&c) {
            self.i += 1;
            true
        } else {
            false
        }
    }
    /// Items up to `close`, comma-separated, a trailing comma allowed.
    fn items(&mut self, close: u8, mut item: impl FnMut(&mut Self) -> Option<()>) -> Option<()> {
        while !self.eat(close) {
            item(self)?;
            if !self.eat(b',') && !self.eat(close) {
                return None;
            } else if self.s.get(self.i - 1) == Some(&close) {
                break;
            }
        }
        Some(())
    }
    fn value(&mut self) -> Option<Lit> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return None;
        }
        self.ws();
        let v = match *self.s.get(self.i)? {
            b'\'' | b'"' => Lit::Str(self.strings(false)?),
            b'r' | b'R' | b'u' | b'U' | b'b' | b'B' if matches!(self.s.get(self.i + 1), Some(b'\'' | b'"')) => {
                let raw = matches!(self.s[self.i], b'r' | b'R');
                self.i += 1;
                Lit::Str(self.strings(raw)?)
            }
            b'(' | b'[' => {
                let close = if self.s[self.i] == b'(' { b')' } else { b']' };
                self.i += 1;
                let mut items = Vec::new();
                self.items(close, |p| {
                    items.push(p.value()?);
                    Some(())
                })?;
                Lit::Seq(items)
            }
            b'{' => {
                self.i += 1;
                let mut items = Vec::new();
                self.items(b'}', |p| {
                    let k = p.value()?;
                    if !p.eat(b':') {
                        return None;
                    }
                    items.push((k, p.value()?));
                    Some(())
                })?;
                Lit::Dict(items)
            }
            c if c.is_ascii_digit() || c == b'-' || c == b'+' => {
                let start = self.i;
                while self
                    .s
                    .get(self.i)
                    .is_some_and(|c| c.is_ascii_alphanumeric() || b"+-._".contains(c))
                {
                    self.i += 1;
                }
                Lit::Num(String::from_utf8_lossy(&self.s[start..self.i]).into_owned())
            }
            c if c.is_ascii_alphabetic() => {
                let start = self.i;
                while self.s.get(self.i).is_some_and(u8::is_ascii_alphanumeric) {
                    self.i += 1;
                }
                match &self.s[start..self.i] {
                    b"True" => Lit::Const("True"),
                    b"False" => Lit::Const("False"),
                    b"None" => Lit::Const("None"),
                    _ => return None,
                }
            }
            _ => return None,
        };
        self.depth -= 1;
        Some(v)
    }
}

impl Parser<'_> {
    /// A string literal and the ones written right after it, joined as
    /// Python joins adjacent literals; escapes decoded as
    /// `ast.literal_eval` decodes them (`'\\x4f'` is `'O'`) unless `raw`.
    fn strings(&mut self, raw: bool) -> Option<String> {
        let mut text = self.one_string(raw)?;
        loop {
            let at = self.i;
            self.ws();
            match self.s.get(self.i) {
                Some(b'\'' | b'"') => text.push_str(&self.one_string(false)?),
                _ => {
                    self.i = at;
                    return Some(text);
                }
            }
        }
    }
    fn one_string(&mut self, raw: bool) -> Option<String> {
        let q = *self.s.get(self.i)?;
        self.i += 1;
        let start = self.i;
        while *self.s.get(self.i)? != q {
            self.i += if self.s[self.i] == b'\\' { 2 } else { 1 };
        }
        let body = std::str::from_utf8(self.s.get(start..self.i)?).ok()?;
        self.i += 1;
        if raw {
            Some(body.to_string())
        } else {
            unescape(body)
        }
    }
}

/// Python's string escapes: `\\ \' \" \a \b \f \n \r \t \v`, octal,
/// `\xhh`, `\uXXXX`, `\UXXXXXXXX`, a backslash-newline continuation;
/// an unknown escape stays as written. `\N{name}` is refused (`None`).
fn unescape(s: &str) -> Option<String> {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        let e = chars.next()?;
        let simple = match e {
            '\\' | '\'' | '"' => Some(e),
            'a' => Some('\u{7}'),
            'b' => Some('\u{8}'),
            'f' => Some('\u{c}'),
            'n' => Some('\n'),
            'r' => Some('\r'),
            't' => Some('\t'),
            'v' => Some('\u{b}'),
            _ => None,
        };
        if let Some(c) = simple {
            out.push(c);
            continue;
        }
        let hex = |chars: &mut std::iter::Peekable<std::str::Chars>, n: usize| -> Option<char> {
            let digits: String = (0..n).map(|_| chars.next()).collect::<Option<_>>()?;
            char::from_u32(u32::from_str_radix(&digits, 16).ok()?)
        };
        match e {
            'x' => out.push(hex(&mut chars, 2)?),
            'u' => out.push(hex(&mut chars, 4)?),
            'U' => out.push(hex(&mut chars, 8)?),
            '0'..='7' => {
                let mut v = e.to_digit(8)?;
                for _ in 0..2 {
                    match chars.peek().and_then(|c| c.to_digit(8)) {
                        Some(d) => {
                            v = v * 8 + d;
                            chars.next();
                        }
                        None => break,
                    }
                }
                out.push(char::from_u32(v)?);
            }
            '\n' => {}
            'N' => return None,
            other => {
                out.push('\\');
                out.push(other);
            }
        }
    }
    Some(out)
}

/// Parses one Python literal (trailing whitespace allowed).
pub fn literal(s: &[u8]) -> Option<Lit> {
    let mut p = Parser { s, i: 0, depth: 0 };
    let v = p.value()?;
    p.ws();
    (p.i == s.len()).then_some(v)
}

/// Where a `.npy` file's header is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Framing {
    /// Format version (1, 2 or 3; 3 allows UTF-8 in the header).
    pub major: u8,
    /// The header literal's byte range.
    pub header_start: usize,
    /// Where the array data starts (the end of the header).
    pub data_start: usize,
}

/// The magic and length of a `.npy` file: `Err` says what is wrong;
/// `header_start..data_start` may run past `len` (the caller checks).
pub fn framing(head: &[u8]) -> Result<Framing, String> {
    if !head.starts_with(b"\x93NUMPY") {
        return Err("not a .npy file (no \\x93NUMPY magic)".into());
    }
    let major = *head.get(6).ok_or("the file ends inside the magic")?;
    let b = |i: usize| head.get(i).copied().ok_or("the file ends inside the header length");
    let (len, start) = match major {
        1 => (u64::from(u16::from_le_bytes([b(8)?, b(9)?])), 10usize),
        2 | 3 => (u64::from(u32::from_le_bytes([b(8)?, b(9)?, b(10)?, b(11)?])), 12),
        v => return Err(format!("unknown .npy format version {v} (numpy writes 1, 2 and 3)")),
    };
    let len = usize::try_from(len).map_err(|_| "header length too large".to_string())?;
    Ok(Framing {
        major,
        header_start: start,
        data_start: start + len,
    })
}

/// A parsed header.
#[derive(Debug, Clone, PartialEq)]
pub struct Header {
    pub descr: Lit,
    pub fortran_order: bool,
    pub shape: Vec<u64>,
}

/// Reads the header dict numpy writes: `descr`, `fortran_order`, `shape`.
pub fn header(text: &[u8]) -> Result<Header, String> {
    let Some(Lit::Dict(items)) = literal(text) else {
        return Err("the header is not a Python dict literal".into());
    };
    let get = |key: &str| {
        items
            .iter()
            .find(|(k, _)| *k == Lit::Str(key.into()))
            .map(|(_, v)| v)
            .ok_or_else(|| format!("the header has no '{key}'"))
    };
    let descr = get("descr")?.clone();
    let fortran_order = match get("fortran_order")? {
        Lit::Const("True") => true,
        Lit::Const("False") => false,
        other => return Err(format!("fortran_order is {other:?}, not True or False")),
    };
    let shape = match get("shape")? {
        Lit::Seq(dims) => dims
            .iter()
            .map(|d| match d {
                Lit::Num(n) => n.parse::<u64>().map_err(|_| format!("shape has {n}, not a size")),
                other => Err(format!("shape has {other:?}, not a size")),
            })
            .collect::<Result<Vec<_>, _>>()?,
        other => return Err(format!("shape is {other:?}, not a tuple")),
    };
    Ok(Header {
        descr,
        fortran_order,
        shape,
    })
}

/// True when a dtype string names Python objects (`O`, `|O8`, `object`…).
fn str_has_object(s: &str) -> bool {
    let t = s.trim().trim_start_matches(['<', '>', '|', '=', '!']);
    let t = t.trim_end_matches(|c: char| c.is_ascii_digit());
    matches!(t, "O" | "object" | "object_" | "object0") || t.starts_with("O,") || t.contains(",O")
}

/// True when a `descr` literal holds Python objects anywhere (then numpy
/// unpickles the data).
pub fn descr_has_object(d: &Lit) -> bool {
    match d {
        Lit::Str(s) => str_has_object(s),
        // A structured dtype: fields (name, dtype[, shape]); or a (base, shape) pair.
        Lit::Seq(items) => items.iter().any(descr_has_object),
        Lit::Dict(items) => items.iter().any(|(_, v)| descr_has_object(v)),
        _ => false,
    }
}

/// numpy's (and torch's) dtype names, as IR types.
const NAMES: &[(&str, DType)] = &[
    ("float16", DType::F16),
    ("float32", DType::F32),
    ("float64", DType::F64),
    ("bfloat16", DType::BF16),
    ("float8_e4m3fn", DType::F8_E4M3),
    ("float8_e5m2", DType::F8_E5M2),
    ("int8", DType::I8),
    ("int16", DType::I16),
    ("int32", DType::I32),
    ("int64", DType::I64),
    ("uint8", DType::U8),
    ("uint16", DType::U16),
    ("uint32", DType::U32),
    ("uint64", DType::U64),
    ("bool", DType::Bool),
];

/// The IR type of a dtype name (`float32`, `bfloat16`, …).
pub fn dtype_from_name(name: &str) -> Option<DType> {
    NAMES.iter().find(|(n, _)| *n == name).map(|(_, d)| *d)
}

/// The dtype name of an IR type, where numpy (with ml_dtypes) has one.
pub fn name_of(d: DType) -> Option<&'static str> {
    NAMES.iter().find(|(_, x)| *x == d).map(|(n, _)| *n)
}

/// The IR types `.npy` stores as opaque `|V<size>` (ml_dtypes' types lose
/// their names there).
pub fn void_types(size: u64) -> &'static [DType] {
    match size {
        2 => &[DType::BF16],
        1 => &[DType::F8_E4M3, DType::F8_E5M2],
        _ => &[],
    }
}

/// The IR type of a `descr` string (`<f4`, `>i8`, `|b1`, `|V2` with
/// `hint`) and whether its data is big-endian.
pub fn dtype_from_descr(descr: &str, hint: Option<DType>) -> Result<(DType, bool), String> {
    let (order, rest) = match descr.as_bytes().first() {
        Some(b'<' | b'|' | b'=') => (false, &descr[1..]),
        Some(b'>') => (true, &descr[1..]),
        _ => (false, descr),
    };
    let kind = rest.chars().next().unwrap_or(' ');
    let size: u64 = rest.get(1..).and_then(|s| s.parse().ok()).unwrap_or(0);
    let t = match (kind, size) {
        ('f', 2) => DType::F16,
        ('f', 4) => DType::F32,
        ('f', 8) => DType::F64,
        ('i', 1) => DType::I8,
        ('i', 2) => DType::I16,
        ('i', 4) => DType::I32,
        ('i', 8) => DType::I64,
        ('u', 1) => DType::U8,
        ('u', 2) => DType::U16,
        ('u', 4) => DType::U32,
        ('u', 8) => DType::U64,
        ('b', 1) => DType::Bool,
        // ml_dtypes 0.6 saves float8_e5m2 as `<f1`, a type numpy itself
        // has not (np.load refuses it): a 1-byte float, like `|V1`.
        ('V', n) | ('f', n @ 1) if !void_types(n).is_empty() => match hint {
            Some(h) if void_types(n).contains(&h) => h,
            Some(h) => return Err(format!("'{descr}' holds {n}-byte elements; --dtype-hint {h} does not fit")),
            None => {
                let names: Vec<&str> = void_types(n).iter().map(|d| d.name()).collect();
                let what = if kind == 'f' {
                    "a 1-byte float numpy has no type for (ml_dtypes saves float8_e5m2 so)".to_string()
                } else {
                    format!(
                        "opaque {n}-byte data: ml_dtypes' {} arrays lose their type name in .npy",
                        if n == 2 { "bfloat16" } else { "float8" }
                    )
                };
                return Err(format!("'{descr}' is {what}; say which with --dtype-hint {}", names.join("|")));
            }
        },
        ('O', _) => {
            return Err("an object array: its data is a pickle, which convert does not run (`modelconv scan` shows what it would call)".into())
        }
        ('c', _) => return Err(format!("complex dtype '{descr}' is not supported")),
        ('U' | 'S' | 'a', _) => return Err(format!("string dtype '{descr}' is not a tensor")),
        _ => return Err(format!("dtype '{descr}' is not supported")),
    };
    Ok((t, order && t.type_size() > 1))
}

/// The header numpy writes for a C-order array: version 1, padded with
/// spaces and a newline so that the data starts at a multiple of 64.
pub fn write_header(descr: &str, shape: &[u64]) -> Vec<u8> {
    let dims: Vec<String> = shape.iter().map(u64::to_string).collect();
    let shape = match dims.len() {
        1 => format!("({},)", dims[0]),
        _ => format!("({})", dims.join(", ")),
    };
    let mut dict = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
    let total = 10 + dict.len() + 1;
    dict.push_str(&" ".repeat(total.next_multiple_of(64) - total));
    dict.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&(dict.len() as u16).to_le_bytes());
    out.extend_from_slice(dict.as_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descrs_and_names() {
        assert_eq!(dtype_from_descr("<f4", None), Ok((DType::F32, false)));
        assert_eq!(dtype_from_descr(">i8", None), Ok((DType::I64, true)));
        assert_eq!(dtype_from_descr(">u1", None), Ok((DType::U8, false)));
        assert_eq!(dtype_from_descr("|V2", Some(DType::BF16)), Ok((DType::BF16, false)));
        assert!(dtype_from_descr("|V2", None).unwrap_err().contains("--dtype-hint BF16"));
        assert!(dtype_from_descr("|O", None).unwrap_err().contains("pickle"));
        for (n, d) in NAMES {
            assert_eq!((dtype_from_name(n), name_of(*d)), (Some(*d), Some(*n)));
        }
    }

    #[test]
    fn headers_numpy_writes() {
        let h = header(b"{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }          \n").unwrap();
        assert_eq!(h.descr, Lit::Str("<f4".into()));
        assert_eq!((h.fortran_order, h.shape), (false, vec![3, 4]));
        assert_eq!(
            header(b"{'descr': '|u1', 'fortran_order': True, 'shape': (), }")
                .unwrap()
                .shape,
            Vec::<u64>::new()
        );
        assert_eq!(
            header(b"{'descr': '<i8', 'fortran_order': False, 'shape': (5,), }")
                .unwrap()
                .shape,
            vec![5]
        );
        for bad in [
            &b"{'descr': '<f4', 'shape': (3,), }"[..],
            b"{'descr': '<f4', 'fortran_order': 1, 'shape': (3,), }",
            b"{'descr': '<f4', 'fortran_order': False, 'shape': (-3,), }",
            b"{'descr': '<f4', 'fortran_order': False, 'shape': (3,)",
            b"[1, 2]",
        ] {
            assert!(header(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn written_headers_align_and_read_back() {
        for shape in [vec![], vec![7], vec![2, 3, 4]] {
            let b = write_header("<f4", &shape);
            assert_eq!(b.len() % 64, 0);
            let f = framing(&b).unwrap();
            assert_eq!(f.data_start, b.len());
            let h = header(&b[f.header_start..f.data_start]).unwrap();
            assert_eq!(h.shape, shape);
        }
    }

    #[test]
    fn object_dtypes_in_every_spelling() {
        let descr = |d: &str| literal(d.as_bytes()).unwrap();
        for d in [
            "'|O'",
            "\"|O\"",
            "'O'",
            "'|O8'",
            "'object'",
            "[('a', '<f4'), ('b', '|O')]",
            "[('a', [('x', '<i4'), ('y', 'O')])]",
            "[(('title', 'a'), '|O', (2,))]",
        ] {
            assert!(descr_has_object(&descr(d)), "{d}");
        }
        for d in ["'<f4'", "'|u1'", "[('a', '<f4'), ('b', '<i8', (2, 3))]", "'<U5'"] {
            assert!(!descr_has_object(&descr(d)), "{d}");
        }
    }

    /// `ast.literal_eval` decodes escapes and joins adjacent literals, so
    /// numpy reads each of these as the object dtype.
    #[test]
    fn descr_spelled_with_escapes_is_the_object_dtype() {
        for d in [r"'|\x4f'", r"'|\117'", r"'|\u004f'", r"'|' 'O'", r"u'|O'"] {
            let text = format!("{{'descr': {d}, 'fortran_order': False, 'shape': (1,), }}");
            let lit = literal(text.as_bytes()).unwrap_or_else(|| panic!("{d}"));
            let Lit::Dict(items) = lit else { panic!("{d}") };
            let descr = &items[0].1;
            assert_eq!(descr, &Lit::Str("|O".into()), "{d}");
            assert!(descr_has_object(descr), "{d}");
        }
        assert_eq!(literal(br"'\N{LATIN CAPITAL LETTER O}'"), None);
    }
}
