//! SentencePiece `tokenizer.model`: a protobuf `ModelProto` whose field 1
//! repeats `SentencePiece { piece = 1 (string), score = 2 (float), type = 3
//! (enum, NORMAL when absent) }`. Only the pieces are read; every other
//! field is skipped by its wire type. Lengths are checked against the bytes
//! left before anything is taken.

use modelconv_ir::{Error, Result};
use std::path::Path;

/// Largest `tokenizer.model` read.
pub const MAX_MODEL: u64 = 256 << 20;

/// SentencePiece's piece types, numbered as in sentencepiece_model.proto
/// (the same numbers GGUF's token types use).
pub const NORMAL: i32 = 1;
pub const UNKNOWN: i32 = 2;
pub const CONTROL: i32 = 3;
pub const USER_DEFINED: i32 = 4;
pub const UNUSED: i32 = 5;
pub const BYTE: i32 = 6;

#[derive(Debug, Clone, PartialEq)]
pub struct Piece {
    pub piece: String,
    pub score: f32,
    pub kind: i32,
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    path: &'a Path,
}

impl<'a> Reader<'a> {
    fn err(&self, what: &str) -> Error {
        Error::malformed(self.path, format!("SentencePiece model, byte {}: {what}", self.pos))
    }

    fn varint(&mut self) -> Result<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = *self
                .buf
                .get(self.pos)
                .ok_or_else(|| self.err("varint runs past the end"))?;
            self.pos += 1;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(self.err("varint longer than 10 bytes"))
    }

    fn take(&mut self, n: u64) -> Result<&'a [u8]> {
        let left = (self.buf.len() - self.pos) as u64;
        if n > left {
            return Err(self.err(&format!("field of {n} bytes, only {left} left")));
        }
        let s = &self.buf[self.pos..self.pos + n as usize];
        self.pos += n as usize;
        Ok(s)
    }

    /// Skips a field of `wire` type.
    fn skip(&mut self, wire: u64) -> Result<()> {
        match wire {
            0 => self.varint().map(drop),
            1 => self.take(8).map(drop),
            2 => {
                let n = self.varint()?;
                self.take(n).map(drop)
            }
            5 => self.take(4).map(drop),
            _ => Err(self.err(&format!("unsupported wire type {wire}"))),
        }
    }
}

fn piece(path: &Path, buf: &[u8], base: usize) -> Result<Piece> {
    let mut r = Reader { buf, pos: 0, path };
    let mut p = Piece {
        piece: String::new(),
        score: 0.0,
        kind: NORMAL,
    };
    while r.pos < buf.len() {
        let key = r.varint()?;
        match (key >> 3, key & 7) {
            (1, 2) => {
                let n = r.varint()?;
                let s = r.take(n)?;
                p.piece = String::from_utf8(s.to_vec()).map_err(|_| {
                    Error::malformed(
                        path,
                        format!("SentencePiece model, byte {}: piece is not UTF-8", base + r.pos),
                    )
                })?;
            }
            (2, 5) => {
                let b = r.take(4)?;
                p.score = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            }
            (3, 0) => p.kind = r.varint()? as i32,
            (_, wire) => r.skip(wire)?,
        }
    }
    Ok(p)
}

/// The pieces of the SentencePiece model in `bytes`, in id order.
pub fn pieces(path: &Path, bytes: &[u8]) -> Result<Vec<Piece>> {
    let mut r = Reader {
        buf: bytes,
        pos: 0,
        path,
    };
    let mut out = Vec::new();
    while r.pos < bytes.len() {
        let key = r.varint()?;
        if key == (1 << 3) | 2 {
            let n = r.varint()?;
            let start = r.pos;
            let body = r.take(n)?;
            out.push(piece(path, body, start)?);
        } else {
            r.skip(key & 7)?;
        }
    }
    if out.is_empty() {
        return Err(Error::malformed(path, "SentencePiece model has no pieces"));
    }
    Ok(out)
}

/// What a SentencePiece model says about itself beside its pieces:
/// `trainer_spec.model_type` (field 2.3) and the normalizer
/// (`normalizer_spec`, field 3: `precompiled_charsmap` 2,
/// `add_dummy_prefix` 3, `remove_extra_whitespaces` 4), with the proto's
/// defaults where a field is absent.
#[derive(Debug, Clone, PartialEq)]
pub struct Spec {
    /// UNIGRAM = 1, BPE = 2, WORD = 3, CHAR = 4.
    pub model_type: u64,
    pub add_dummy_prefix: bool,
    pub remove_extra_whitespaces: bool,
    pub precompiled_charsmap: Vec<u8>,
}

pub const UNIGRAM: u64 = 1;

/// The [`Spec`] of the SentencePiece model in `bytes`.
pub fn spec(path: &Path, bytes: &[u8]) -> Result<Spec> {
    let mut s = Spec {
        model_type: UNIGRAM,
        add_dummy_prefix: true,
        remove_extra_whitespaces: true,
        precompiled_charsmap: Vec::new(),
    };
    let mut r = Reader {
        buf: bytes,
        pos: 0,
        path,
    };
    while r.pos < bytes.len() {
        let key = r.varint()?;
        match key {
            // trainer_spec, normalizer_spec
            0x12 | 0x1a => {
                let n = r.varint()?;
                let body = r.take(n)?;
                let mut inner = Reader {
                    buf: body,
                    pos: 0,
                    path,
                };
                while inner.pos < body.len() {
                    let k = inner.varint()?;
                    match (key, k) {
                        (0x12, 0x18) => s.model_type = inner.varint()?,
                        (0x1a, 0x12) => {
                            let n = inner.varint()?;
                            s.precompiled_charsmap = inner.take(n)?.to_vec();
                        }
                        (0x1a, 0x18) => s.add_dummy_prefix = inner.varint()? != 0,
                        (0x1a, 0x20) => s.remove_extra_whitespaces = inner.varint()? != 0,
                        (_, k) => inner.skip(k & 7)?,
                    }
                }
            }
            _ => r.skip(key & 7)?,
        }
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(n: u64, wire: u64, body: &[u8]) -> Vec<u8> {
        let mut v = vec![((n << 3) | wire) as u8];
        if wire == 2 {
            v.push(body.len() as u8);
        }
        v.extend_from_slice(body);
        v
    }

    #[test]
    fn reads_pieces_and_skips_other_fields() {
        let mut p1 = field(1, 2, b"<unk>");
        p1.extend(field(2, 5, &0f32.to_le_bytes()));
        p1.extend(field(3, 0, &[2]));
        let mut p2 = field(1, 2, "\u{2581}a".as_bytes());
        p2.extend(field(2, 5, &(-1.5f32).to_le_bytes()));
        let mut m = field(2, 2, &[8, 1]); // trainer_spec { model_type: 1 }
        m.extend(field(1, 2, &p1));
        m.extend(field(1, 2, &p2));
        let got = pieces(Path::new("t.model"), &m).unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!((got[0].piece.as_str(), got[0].kind), ("<unk>", UNKNOWN));
        assert_eq!(
            (got[1].piece.as_str(), got[1].score, got[1].kind),
            ("\u{2581}a", -1.5, NORMAL)
        );
    }

    #[test]
    fn reads_the_model_type_and_the_normalizer() {
        let mut m = field(2, 2, &[0x18, 2]); // trainer_spec { model_type: BPE }
        let mut norm = field(2, 2, b"map");
        norm.extend(field(3, 0, &[0]));
        m.extend(field(3, 2, &norm));
        let s = spec(Path::new("t.model"), &m).unwrap();
        assert_eq!(s.model_type, 2);
        assert!(!s.add_dummy_prefix && s.remove_extra_whitespaces);
        assert_eq!(s.precompiled_charsmap, b"map");
        let defaults = spec(Path::new("t.model"), &[]).unwrap();
        assert!(defaults.model_type == UNIGRAM && defaults.add_dummy_prefix);
    }

    #[test]
    fn truncated_and_overlong_fields_are_errors() {
        let m = field(1, 2, &field(1, 2, b"abc"));
        for cut in 1..m.len() {
            assert!(pieces(Path::new("t.model"), &m[..cut]).is_err(), "cut {cut}");
        }
        assert!(pieces(Path::new("t.model"), &[0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f]).is_err());
    }
}
