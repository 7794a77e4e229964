//! A bounded msgpack reader that keeps where each binary payload lies in
//! the input (so arrays are file ranges, never copies), and the encoder
//! functions msgpack-python's `packb` uses for the values flax writes.

/// A decoded value; `Bin` and `Ext` hold the payload's range in the input.
#[derive(Debug, Clone, PartialEq)]
pub enum Msg {
    Nil,
    Bool(bool),
    Int(i128),
    Float(f64),
    Str(String),
    Bin { offset: usize, len: usize },
    Array(Vec<Msg>),
    Map(Vec<(Msg, Msg)>),
    Ext { code: i8, offset: usize, len: usize },
}

/// Deepest nesting accepted.
const MAX_DEPTH: usize = 128;

pub struct Reader<'a> {
    b: &'a [u8],
    pub pos: usize,
}

/// A decoding failure at a byte offset.
#[derive(Debug)]
pub struct DecodeError {
    pub offset: usize,
    pub msg: String,
    /// The input ended where more was needed.
    pub truncated: bool,
}

type R<T> = Result<T, DecodeError>;

impl<'a> Reader<'a> {
    pub fn new(b: &'a [u8], pos: usize) -> Self {
        Reader { b, pos }
    }

    fn err<T>(&self, msg: impl Into<String>) -> R<T> {
        Err(DecodeError {
            offset: self.pos,
            msg: msg.into(),
            truncated: false,
        })
    }

    fn take(&mut self, n: usize) -> R<&'a [u8]> {
        match self.pos.checked_add(n).filter(|&e| e <= self.b.len()) {
            Some(end) => {
                let s = &self.b[self.pos..end];
                self.pos = end;
                Ok(s)
            }
            None => Err(DecodeError {
                offset: self.pos,
                msg: format!("{n} bytes needed, {} left", self.b.len() - self.pos),
                truncated: true,
            }),
        }
    }

    fn uint(&mut self, n: usize) -> R<u64> {
        Ok(self.take(n)?.iter().fold(0u64, |a, &x| (a << 8) | u64::from(x)))
    }

    /// A count or length: checked against the bytes left (each item takes
    /// at least one byte), so no allocation outgrows the input.
    fn count(&mut self, n: usize, per_item: usize) -> R<usize> {
        let v = self.uint(n)?;
        let left = (self.b.len() - self.pos) as u64;
        if v.saturating_mul(per_item as u64) > left {
            return Err(DecodeError {
                offset: self.pos,
                msg: format!("{v} items declared, only {left} bytes left"),
                truncated: true,
            });
        }
        Ok(v as usize)
    }

    fn payload(&mut self, len: usize) -> R<(usize, usize)> {
        let offset = self.pos;
        self.take(len)?;
        Ok((offset, len))
    }

    pub fn value(&mut self) -> R<Msg> {
        self.value_at(0)
    }

    fn value_at(&mut self, depth: usize) -> R<Msg> {
        if depth > MAX_DEPTH {
            return self.err(format!("nested deeper than {MAX_DEPTH}"));
        }
        let m = self.take(1)?[0];
        Ok(match m {
            0x00..=0x7f => Msg::Int(i128::from(m)),
            0xe0..=0xff => Msg::Int(i128::from(m as i8)),
            0x80..=0x8f => self.map((m & 0x0f) as usize, depth)?,
            0x90..=0x9f => self.array((m & 0x0f) as usize, depth)?,
            0xa0..=0xbf => self.str((m & 0x1f) as usize)?,
            0xc0 => Msg::Nil,
            0xc2 => Msg::Bool(false),
            0xc3 => Msg::Bool(true),
            0xc4..=0xc6 => {
                let n = self.count(1 << (m - 0xc4), 1)?;
                let (offset, len) = self.payload(n)?;
                Msg::Bin { offset, len }
            }
            0xc7..=0xc9 => {
                let n = self.count(1 << (m - 0xc7), 1)?;
                let code = self.take(1)?[0] as i8;
                let (offset, len) = self.payload(n)?;
                Msg::Ext { code, offset, len }
            }
            0xca => Msg::Float(f64::from(f32::from_bits(self.uint(4)? as u32))),
            0xcb => Msg::Float(f64::from_bits(self.uint(8)?)),
            0xcc..=0xcf => Msg::Int(i128::from(self.uint(1 << (m - 0xcc))?)),
            0xd0 => Msg::Int(i128::from(self.uint(1)? as u8 as i8)),
            0xd1 => Msg::Int(i128::from(self.uint(2)? as u16 as i16)),
            0xd2 => Msg::Int(i128::from(self.uint(4)? as u32 as i32)),
            0xd3 => Msg::Int(i128::from(self.uint(8)? as i64)),
            0xd4..=0xd8 => {
                let code = self.take(1)?[0] as i8;
                let (offset, len) = self.payload(1 << (m - 0xd4))?;
                Msg::Ext { code, offset, len }
            }
            0xd9..=0xdb => {
                let n = self.count(1 << (m - 0xd9), 1)?;
                self.str(n)?
            }
            0xdc | 0xdd => {
                let n = self.count(if m == 0xdc { 2 } else { 4 }, 1)?;
                self.array(n, depth)?
            }
            0xde | 0xdf => {
                let n = self.count(if m == 0xde { 2 } else { 4 }, 2)?;
                self.map(n, depth)?
            }
            0xc1 => return self.err("byte 0xc1 is never used in msgpack"),
        })
    }

    fn str(&mut self, n: usize) -> R<Msg> {
        let at = self.pos;
        let s = self.take(n)?;
        match std::str::from_utf8(s) {
            Ok(s) => Ok(Msg::Str(s.to_string())),
            Err(_) => {
                self.pos = at;
                self.err("a string that is not UTF-8")
            }
        }
    }

    fn array(&mut self, n: usize, depth: usize) -> R<Msg> {
        let mut v = Vec::with_capacity(n.min(1 << 16));
        for _ in 0..n {
            v.push(self.value_at(depth + 1)?);
        }
        Ok(Msg::Array(v))
    }

    fn map(&mut self, n: usize, depth: usize) -> R<Msg> {
        let mut v = Vec::with_capacity(n.min(1 << 16));
        for _ in 0..n {
            let k = self.value_at(depth + 1)?;
            let x = self.value_at(depth + 1)?;
            v.push((k, x));
        }
        Ok(Msg::Map(v))
    }
}

/// Encoders, as msgpack-python's `packb` (use_bin_type) writes each value.
pub mod enc {
    pub fn uint(out: &mut Vec<u8>, v: u64) {
        if v < 0x80 {
            out.push(v as u8);
        } else if v <= 0xff {
            out.extend_from_slice(&[0xcc, v as u8]);
        } else if v <= 0xffff {
            out.push(0xcd);
            out.extend_from_slice(&(v as u16).to_be_bytes());
        } else if v <= 0xffff_ffff {
            out.push(0xce);
            out.extend_from_slice(&(v as u32).to_be_bytes());
        } else {
            out.push(0xcf);
            out.extend_from_slice(&v.to_be_bytes());
        }
    }

    pub fn str(out: &mut Vec<u8>, s: &str) {
        let n = s.len();
        if n < 32 {
            out.push(0xa0 | n as u8);
        } else if n <= 0xff {
            out.extend_from_slice(&[0xd9, n as u8]);
        } else if n <= 0xffff {
            out.push(0xda);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        } else {
            out.push(0xdb);
            out.extend_from_slice(&(n as u32).to_be_bytes());
        }
        out.extend_from_slice(s.as_bytes());
    }

    /// The header of a bin of `n` bytes.
    pub fn bin_header(out: &mut Vec<u8>, n: u64) {
        if n <= 0xff {
            out.extend_from_slice(&[0xc4, n as u8]);
        } else if n <= 0xffff {
            out.push(0xc5);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        } else {
            out.push(0xc6);
            out.extend_from_slice(&(n as u32).to_be_bytes());
        }
    }

    fn container(out: &mut Vec<u8>, n: usize, fix: u8, m16: u8, m32: u8) {
        if n < 16 {
            out.push(fix | n as u8);
        } else if n <= 0xffff {
            out.push(m16);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        } else {
            out.push(m32);
            out.extend_from_slice(&(n as u32).to_be_bytes());
        }
    }

    pub fn array_header(out: &mut Vec<u8>, n: usize) {
        container(out, n, 0x90, 0xdc, 0xdd);
    }

    pub fn map_header(out: &mut Vec<u8>, n: usize) {
        container(out, n, 0x80, 0xde, 0xdf);
    }

    /// The header of an ext of `n` bytes with `code` (fixext where the
    /// length is 1, 2, 4, 8 or 16).
    pub fn ext_header(out: &mut Vec<u8>, code: i8, n: u64) {
        match n {
            1 => out.push(0xd4),
            2 => out.push(0xd5),
            4 => out.push(0xd6),
            8 => out.push(0xd7),
            16 => out.push(0xd8),
            n if n <= 0xff => out.extend_from_slice(&[0xc7, n as u8]),
            n if n <= 0xffff => {
                out.push(0xc8);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                out.push(0xc9);
                out.extend_from_slice(&(n as u32).to_be_bytes());
            }
        }
        out.push(code as u8);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_bounds() {
        let mut b = Vec::new();
        enc::map_header(&mut b, 2);
        enc::str(&mut b, "k");
        enc::uint(&mut b, 300);
        enc::str(&mut b, "x");
        enc::ext_header(&mut b, 1, 3);
        b.extend_from_slice(b"abc");
        let v = Reader::new(&b, 0).value().unwrap();
        assert_eq!(
            v,
            Msg::Map(vec![
                (Msg::Str("k".into()), Msg::Int(300)),
                (
                    Msg::Str("x".into()),
                    Msg::Ext {
                        code: 1,
                        offset: b.len() - 3,
                        len: 3
                    }
                )
            ])
        );
        // A map claiming a billion entries in a few bytes is refused at once.
        let e = Reader::new(&[0xdf, 0x40, 0, 0, 0], 0).value().unwrap_err();
        assert!(e.truncated && e.msg.contains("items declared"), "{}", e.msg);
        // Truncations say so, at their offset.
        let e = Reader::new(&b[..b.len() - 1], 0).value().unwrap_err();
        assert!(e.truncated);
        // Deep nesting is bounded.
        let deep = vec![0x91u8; 10_000];
        assert!(Reader::new(&deep, 0).value().unwrap_err().msg.contains("nested"));
    }
}
