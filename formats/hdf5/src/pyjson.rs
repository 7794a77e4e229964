//! JSON read the way Python's `json.loads` reads a Keras config, so that a
//! config Keras loads is never one `scan` cannot parse:
//!
//! - bytes are decoded as `json.detect_encoding` says: a UTF-32, UTF-16 or
//!   UTF-8 byte-order mark, else UTF-16/32 from where the first four bytes
//!   have zeros, else UTF-8 (undecodable bytes are kept as U+FFFD: reading
//!   more than Python does can only add findings);
//! - `NaN`, `Infinity` and `-Infinity` are numbers;
//! - a `\uXXXX` escape of a lone surrogate is a character;
//! - nesting as deep as Python's recursion limit allows (about 1000);
//! - a key given twice keeps its last value.

use serde_json::Value;

/// Deepest nesting parsed: CPython's scanner stops near its recursion
/// limit of 1000, so no config Keras loads is deeper.
pub const MAX_DEPTH: usize = 1100;

/// `json.loads(bytes)`.
pub fn loads_bytes(b: &[u8]) -> Result<Value, String> {
    loads_str(&decode(b))
}

/// `json.loads(str)`: a str may not start with a byte-order mark.
pub fn loads_str(s: &str) -> Result<Value, String> {
    if s.starts_with('\u{feff}') {
        return Err("starts with a byte-order mark, which json.loads refuses in a str".into());
    }
    let text = python_tokens_as_json(s)?;
    let mut de = serde_json::Deserializer::from_str(&text);
    de.disable_recursion_limit();
    let v = serde::Deserialize::deserialize(&mut de).map_err(|e| e.to_string())?;
    de.end().map_err(|e| e.to_string())?;
    Ok(v)
}

/// The text of `b` in the encoding `json.detect_encoding` picks.
fn decode(b: &[u8]) -> String {
    let utf32 = |b: &[u8], be: bool| -> String {
        b.chunks_exact(4)
            .map(|c| {
                let a = [c[0], c[1], c[2], c[3]];
                let u = if be {
                    u32::from_be_bytes(a)
                } else {
                    u32::from_le_bytes(a)
                };
                char::from_u32(u).unwrap_or('\u{fffd}')
            })
            .collect()
    };
    let utf16 = |b: &[u8], be: bool| -> String {
        let units = b.chunks_exact(2).map(|c| {
            let a = [c[0], c[1]];
            if be {
                u16::from_be_bytes(a)
            } else {
                u16::from_le_bytes(a)
            }
        });
        char::decode_utf16(units).map(|c| c.unwrap_or('\u{fffd}')).collect()
    };
    if let Some(rest) = b.strip_prefix(b"\xff\xfe\x00\x00") {
        return utf32(rest, false);
    }
    if let Some(rest) = b.strip_prefix(b"\x00\x00\xfe\xff") {
        return utf32(rest, true);
    }
    if let Some(rest) = b.strip_prefix(b"\xff\xfe") {
        return utf16(rest, false);
    }
    if let Some(rest) = b.strip_prefix(b"\xfe\xff") {
        return utf16(rest, true);
    }
    if let Some(rest) = b.strip_prefix(b"\xef\xbb\xbf") {
        return String::from_utf8_lossy(rest).into_owned();
    }
    match b {
        [0, 0, _, _, ..] => utf32(b, true),
        [0, _, _, _, ..] | [0, _] => utf16(b, true),
        [_, 0, 0, 0, ..] => utf32(b, false),
        [_, 0, _, _, ..] | [_, 0] => utf16(b, false),
        _ => String::from_utf8_lossy(b).into_owned(),
    }
}

/// `s` with Python's extensions spelled as strict JSON, byte for byte the
/// same length outside escapes: `NaN` and `Infinity` become zeros, a lone
/// surrogate escape becomes `\ufffd`. Nesting deeper than [`MAX_DEPTH`]
/// is an error (Python's scanner fails there too).
fn python_tokens_as_json(s: &str) -> Result<String, String> {
    let b = s.as_bytes();
    let mut out = String::with_capacity(s.len());
    let (mut i, mut start, mut depth) = (0, 0, 0usize);
    let mut in_string = false;
    while i < b.len() {
        let c = b[i];
        if in_string {
            match c {
                b'"' => in_string = false,
                b'\\' if b.get(i + 1) == Some(&b'u') => {
                    match surrogates(b, i) {
                        Escape::Lone => {
                            out.push_str(&s[start..i]);
                            out.push_str("\\ufffd");
                            start = i + 6;
                        }
                        Escape::Pair => i += 6,
                        Escape::Other => {}
                    }
                    i += 6;
                    continue;
                }
                b'\\' => i += 1,
                _ => {}
            }
            i += 1;
            continue;
        }
        let swap: Option<(&str, &str)> = match c {
            b'"' => {
                in_string = true;
                None
            }
            b'[' | b'{' => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return Err(format!("nested deeper than {MAX_DEPTH} levels"));
                }
                None
            }
            b']' | b'}' => {
                depth = depth.saturating_sub(1);
                None
            }
            b'N' if b[i..].starts_with(b"NaN") => Some(("NaN", "0.0")),
            b'I' if b[i..].starts_with(b"Infinity") => Some(("Infinity", "0.000000")),
            _ => None,
        };
        if let Some((from, to)) = swap {
            out.push_str(&s[start..i]);
            out.push_str(to);
            i += from.len();
            start = i;
            continue;
        }
        i += 1;
    }
    out.push_str(&s[start..]);
    Ok(out)
}

enum Escape {
    /// A surrogate strict JSON refuses (Python keeps it).
    Lone,
    /// A high and a low surrogate: one character.
    Pair,
    /// Anything else (a short or bad escape is left to the parser).
    Other,
}

/// What the `\u` escape at `b[i..]` spells.
fn surrogates(b: &[u8], i: usize) -> Escape {
    let unit = |at: usize| -> Option<u16> {
        if b.get(at..at.checked_add(2)?)? != b"\\u" {
            return None;
        }
        let hex = b.get(at + 2..at + 6)?;
        u16::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()
    };
    match unit(i) {
        Some(0xd800..=0xdbff) => match unit(i + 6) {
            Some(0xdc00..=0xdfff) => Escape::Pair,
            _ => Escape::Lone,
        },
        Some(0xdc00..=0xdfff) => Escape::Lone,
        _ => Escape::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_what_python_json_reads() {
        let v = loads_bytes(b"\xef\xbb\xbf{\"a\": NaN, \"b\": [-Infinity, Infinity], \"c\": \"\\ud800x\"}").unwrap();
        assert_eq!(v["c"], "\u{fffd}x");
        assert!(v["b"].is_array());
        let utf16: Vec<u8> = "\u{feff}{\"k\": \"Lambda\"}"
            .encode_utf16()
            .flat_map(u16::to_le_bytes)
            .collect();
        assert_eq!(loads_bytes(&utf16).unwrap()["k"], "Lambda");
        let bare16: Vec<u8> = "{\"k\": 1}".encode_utf16().flat_map(u16::to_be_bytes).collect();
        assert_eq!(loads_bytes(&bare16).unwrap()["k"], 1);
        let utf32: Vec<u8> = "{\"k\": 2}".chars().flat_map(|c| (c as u32).to_le_bytes()).collect();
        assert_eq!(loads_bytes(&utf32).unwrap()["k"], 2);
        assert_eq!(loads_str("{\"k\": 1, \"k\": 2}").unwrap()["k"], 2);
        assert_eq!(
            loads_str("{\"s\": \"NaN \\\" Infinity\"}").unwrap()["s"],
            "NaN \" Infinity"
        );
        assert_eq!(loads_str("{\"p\": \"\\ud83d\\ude00\"}").unwrap()["p"], "\u{1f600}");
        assert!(loads_str("\u{feff}{}").is_err());
        let deep = format!("{}{}", "[".repeat(1000), "]".repeat(1000));
        assert!(loads_str(&deep).is_ok());
        assert!(loads_str(&"[".repeat(5000)).is_err());
    }
}
