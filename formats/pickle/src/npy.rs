//! The `.npy` header, for `scan`: does numpy unpickle what follows it?
//! numpy reads the header with `ast.literal_eval` and builds
//! `numpy.dtype(descr)`; the data is a pickle exactly when that dtype holds
//! Python objects (`dtype.hasobject`). The header is parsed as the Python
//! literal it is, and `descr` is walked whatever its spelling: `'O'`,
//! `"|O8"`, `'object'`, a structured list with an object field at any depth.

/// A Python literal of the kinds a header holds.
#[derive(Debug, Clone, PartialEq)]
enum Lit {
    Str(String),
    Num,
    Const,
    Seq(Vec<Lit>),
    Dict(Vec<(Lit, Lit)>),
}

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
    fn value(&mut self) -> Option<Lit> {
        self.depth += 1;
        if self.depth > 64 {
            return None;
        }
        self.ws();
        let v = match *self.s.get(self.i)? {
            q @ (b'\'' | b'"') => {
                self.i += 1;
                let start = self.i;
                while *self.s.get(self.i)? != q {
                    self.i += if self.s[self.i] == b'\\' { 2 } else { 1 };
                }
                let text = String::from_utf8_lossy(self.s.get(start..self.i)?).into_owned();
                self.i += 1;
                Lit::Str(text)
            }
            b'(' | b'[' => {
                let close = if self.s[self.i] == b'(' { b')' } else { b']' };
                self.i += 1;
                let mut items = Vec::new();
                while !self.eat(close) {
                    items.push(self.value()?);
                    if !self.eat(b',') && !self.eat(close) {
                        return None;
                    } else if self.s.get(self.i - 1) == Some(&close) {
                        break;
                    }
                }
                Lit::Seq(items)
            }
            b'{' => {
                self.i += 1;
                let mut items = Vec::new();
                while !self.eat(b'}') {
                    let k = self.value()?;
                    if !self.eat(b':') {
                        return None;
                    }
                    items.push((k, self.value()?));
                    if !self.eat(b',') && !self.eat(b'}') {
                        return None;
                    } else if self.s.get(self.i - 1) == Some(&b'}') {
                        break;
                    }
                }
                Lit::Dict(items)
            }
            c if c.is_ascii_digit() || c == b'-' || c == b'+' => {
                while self
                    .s
                    .get(self.i)
                    .is_some_and(|c| c.is_ascii_alphanumeric() || b"+-._".contains(c))
                {
                    self.i += 1;
                }
                Lit::Num
            }
            c if c.is_ascii_alphabetic() => {
                let start = self.i;
                while self.s.get(self.i).is_some_and(u8::is_ascii_alphanumeric) {
                    self.i += 1;
                }
                match &self.s[start..self.i] {
                    b"True" | b"False" | b"None" => Lit::Const,
                    _ => return None,
                }
            }
            _ => return None,
        };
        self.depth -= 1;
        Some(v)
    }
}

/// True when a dtype string names Python objects (`O`, `|O8`, `object`…).
fn str_has_object(s: &str) -> bool {
    let t = s.trim().trim_start_matches(['<', '>', '|', '=', '!']);
    let t = t.trim_end_matches(|c: char| c.is_ascii_digit());
    matches!(t, "O" | "object" | "object_" | "object0") || t.starts_with("O,") || t.contains(",O")
}

/// True when a `descr` literal holds Python objects anywhere.
fn descr_has_object(d: &Lit) -> bool {
    match d {
        Lit::Str(s) => str_has_object(s),
        // A structured dtype: fields (name, dtype[, shape]); or a (base, shape) pair.
        Lit::Seq(items) => items.iter().any(descr_has_object),
        Lit::Dict(items) => items.iter().any(|(_, v)| descr_has_object(v)),
        _ => false,
    }
}

/// For a `.npy` file: Some(offset of the data) when numpy would unpickle
/// the data (object dtype), or when the header cannot be read as numpy
/// reads it (then the data is scanned to be sure). None for plain arrays
/// and files that are not `.npy`.
pub fn pickled_data(b: &[u8]) -> Option<usize> {
    if !b.starts_with(b"\x93NUMPY") || b.len() < 10 {
        return None;
    }
    let (hlen, hstart) = match b[6] {
        1 => (usize::from(u16::from_le_bytes([b[8], b[9]])), 10usize),
        _ => (
            usize::try_from(u32::from_le_bytes([*b.get(8)?, *b.get(9)?, *b.get(10)?, *b.get(11)?])).ok()?,
            12,
        ),
    };
    let end = hstart.checked_add(hlen)?.min(b.len());
    let header = &b[hstart..end];
    let mut p = Parser {
        s: header,
        i: 0,
        depth: 0,
    };
    let descr = match p.value() {
        Some(Lit::Dict(items)) => items
            .into_iter()
            .find(|(k, _)| *k == Lit::Str("descr".into()))
            .map(|(_, v)| v),
        _ => None,
    };
    match descr {
        Some(d) if !descr_has_object(&d) => None,
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
    fn object_dtypes_in_every_spelling() {
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
            let h = format!("{{'descr': {d}, 'fortran_order': False, 'shape': (3,), }}");
            assert!(pickled_data(&npy(&h)).is_some(), "{d}");
        }
        for d in ["'<f4'", "'|u1'", "[('a', '<f4'), ('b', '<i8', (2, 3))]", "'<U5'"] {
            let h = format!("{{'descr': {d}, 'fortran_order': False, 'shape': (3,), }}");
            assert_eq!(pickled_data(&npy(&h)), None, "{d}");
        }
        // Unreadable headers are scanned to be sure.
        assert!(pickled_data(&npy("{'descr': ")).is_some());
    }
}
