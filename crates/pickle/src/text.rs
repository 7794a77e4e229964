//! Arguments of the text-protocol opcodes, read by the rules of CPython's
//! `_pickle` unpickler (3.8–3.13), so that our VM accepts what Python accepts
//! and stops where Python stops. A scanner that rejected a byte sequence
//! Python reads would never see what follows it.
//!
//! - INT (`I`): C `strtol(s, &end, 0)` (leading white space, sign, `0x` hex,
//!   leading-`0` octal) that must end at the newline or a NUL; else
//!   `int(s, 0)` rules ([`py_int`]: underscores, `0o`/`0b`, surrounding white
//!   space). `00`/`01` are False/True.
//! - LONG (`L`): one trailing `L` dropped, then `int(s, 0)` rules.
//! - FLOAT (`F`): `PyOS_string_to_double`: no leading white space, decimal
//!   or inf/infinity/nan, ending at the newline or a NUL; overflow is an error.
//! - STRING (`S`): quoted with `'` or `"` (the same at both ends), then
//!   `bytes` escapes (`\x` needs two hex digits, a trailing `\` is an error).
//! - UNICODE (`V`): raw-unicode-escape (`\uXXXX`, `\UXXXXXXXX` after an odd
//!   run of backslashes; every other byte is its own code point).
//! - PUT/GET (`p`/`g`): `int(s, 10)` rules.
//!
//! Numeric arguments are C strings to Python: a NUL ends them.

/// An integer argument: small, or the digits of a larger one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PyInt {
    Small(i64),
    /// Sign and digits as written (`-0x1f…`), too large for i64.
    Big(String),
}

/// The bytes before the first NUL (how C reads a numeric argument).
fn c_str(b: &[u8]) -> &[u8] {
    b.iter().position(|&c| c == 0).map_or(b, |i| &b[..i])
}

fn is_c_space(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

fn digit(c: u8, base: u32) -> Option<u32> {
    (c as char).to_digit(base)
}

/// C `strtol(s, &end, 0)` over `s`; the value and where it stopped.
/// None for the value when it overflows a C long (Python then tries
/// [`py_int`]).
fn strtol0(s: &[u8]) -> (Option<i64>, usize) {
    let mut i = 0;
    while i < s.len() && is_c_space(s[i]) {
        i += 1;
    }
    let neg = match s.get(i) {
        Some(b'-') => {
            i += 1;
            true
        }
        Some(b'+') => {
            i += 1;
            false
        }
        _ => false,
    };
    let mut base = 10;
    if s.get(i) == Some(&b'0') {
        if matches!(s.get(i + 1), Some(b'x' | b'X')) && s.get(i + 2).is_some_and(|&c| digit(c, 16).is_some()) {
            base = 16;
            i += 2;
        } else {
            base = 8;
        }
    }
    let start = i;
    let mut v: Option<i64> = Some(0);
    while let Some(d) = s.get(i).and_then(|&c| digit(c, base)) {
        v = v
            .and_then(|v| v.checked_mul(i64::from(base)))
            .and_then(|v| v.checked_add(i64::from(d)));
        i += 1;
    }
    if i == start {
        return (Some(0), 0);
    }
    (v.map(|v| if neg { -v } else { v }), i)
}

/// `int(s, base)` (PyLong_FromString) over the whole of `s`: surrounding
/// white space, a sign, for base 0 a `0x`/`0o`/`0b` prefix (or only zeros
/// after a leading 0), single underscores between digits (and after a
/// prefix).
pub fn py_int(s: &[u8], base: u32) -> Option<PyInt> {
    let s = c_str(s);
    let text = std::str::from_utf8(s).ok()?;
    let t = text.trim_matches(|c: char| c.is_ascii() && is_c_space(c as u8));
    let (neg, t) = match t.as_bytes().first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    let lower = t.to_ascii_lowercase();
    let (radix, digits, prefixed) = if base == 0 {
        match lower.get(..2) {
            Some("0x") => (16, &t[2..], true),
            Some("0o") => (8, &t[2..], true),
            Some("0b") => (2, &t[2..], true),
            _ => (10, t, false),
        }
    } else {
        (base, t, false)
    };
    let b = digits.as_bytes();
    if b.is_empty() {
        return None;
    }
    // Underscores: after a prefix, or between two digits; never doubled or last.
    let mut clean = String::with_capacity(b.len());
    for (i, &c) in b.iter().enumerate() {
        if c == b'_' {
            let after_ok = i > 0 || prefixed;
            let before_ok = b.get(i + 1).is_some_and(|&n| digit(n, radix).is_some());
            if !(after_ok && before_ok) || (i > 0 && b[i - 1] == b'_') {
                return None;
            }
        } else if digit(c, radix).is_some() {
            clean.push(c as char);
        } else {
            return None;
        }
    }
    // Base 0 decimal: a leading zero only in a run of zeros ("00", "0_0").
    if base == 0 && !prefixed && clean.len() > 1 && clean.starts_with('0') && clean.bytes().any(|c| c != b'0') {
        return None;
    }
    Some(match i64::from_str_radix(&clean, radix) {
        Ok(v) => PyInt::Small(if neg { -v } else { v }),
        Err(_) => PyInt::Big(format!("{}{}", if neg { "-" } else { "" }, t)),
    })
}

/// The INT opcode's argument (the line without its newline), or None where
/// Python raises. `00`/`01` (booleans) are the caller's.
pub fn int_arg(line: &[u8]) -> Option<PyInt> {
    let s = c_str(line);
    let (v, end) = strtol0(s);
    if end > 0 && end == s.len() {
        if let Some(v) = v {
            return Some(PyInt::Small(v));
        }
    }
    py_int(s, 0)
}

/// The LONG opcode's argument (without its newline).
pub fn long_arg(line: &[u8]) -> Option<PyInt> {
    let s = line.strip_suffix(b"L").unwrap_or(line);
    py_int(s, 0)
}

/// The FLOAT opcode's argument (without its newline).
pub fn float_arg(line: &[u8]) -> Option<f64> {
    let s = c_str(line);
    let mut i = 0;
    if matches!(s.first(), Some(b'+' | b'-')) {
        i += 1;
    }
    let rest = s[i..].to_ascii_lowercase();
    let special = ["infinity", "inf", "nan"]
        .into_iter()
        .find(|w| rest.starts_with(w.as_bytes()));
    let end = if let Some(w) = special {
        i + w.len()
    } else {
        let digits = |i: &mut usize| {
            let from = *i;
            while s.get(*i).is_some_and(u8::is_ascii_digit) {
                *i += 1;
            }
            *i - from
        };
        let mut n = digits(&mut i);
        if s.get(i) == Some(&b'.') {
            i += 1;
            n += digits(&mut i);
        }
        if n == 0 {
            return None;
        }
        if matches!(s.get(i), Some(b'e' | b'E')) {
            let mut j = i + 1;
            if matches!(s.get(j), Some(b'+' | b'-')) {
                j += 1;
            }
            if digits(&mut j) > 0 {
                i = j;
            }
        }
        i
    };
    if end != s.len() {
        return None;
    }
    let text = std::str::from_utf8(&s[..end]).ok()?;
    let v: f64 = text.parse().ok()?;
    // Python raises OverflowError where a finite literal rounds to infinity.
    (special.is_some() || v.is_finite()).then_some(v)
}

/// The STRING opcode's argument (without its newline): quotes removed and
/// escapes decoded, as `bytes`.
pub fn string_arg(line: &[u8]) -> Option<Vec<u8>> {
    let (&q, rest) = line.split_first()?;
    if !(q == b'\'' || q == b'"') || rest.last() != Some(&q) {
        return None;
    }
    decode_escape(&rest[..rest.len() - 1])
}

/// `bytes` escape sequences (PyBytes_DecodeEscape).
fn decode_escape(s: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        let c = s[i];
        i += 1;
        if c != b'\\' {
            out.push(c);
            continue;
        }
        let e = *s.get(i)?;
        i += 1;
        match e {
            b'\n' => {}
            b'\\' | b'\'' | b'"' => out.push(e),
            b'a' => out.push(7),
            b'b' => out.push(8),
            b'f' => out.push(12),
            b'n' => out.push(b'\n'),
            b'r' => out.push(b'\r'),
            b't' => out.push(b'\t'),
            b'v' => out.push(11),
            b'0'..=b'7' => {
                let mut v = u32::from(e - b'0');
                for _ in 0..2 {
                    match s.get(i) {
                        Some(&d @ b'0'..=b'7') => {
                            v = v * 8 + u32::from(d - b'0');
                            i += 1;
                        }
                        _ => break,
                    }
                }
                out.push((v & 0xff) as u8);
            }
            b'x' => {
                let h = |k: usize| s.get(k).and_then(|&c| digit(c, 16));
                let v = h(i)? * 16 + h(i + 1)?;
                out.push(v as u8);
                i += 2;
            }
            // Unknown escapes stay as written (with a warning in Python).
            other => {
                out.push(b'\\');
                out.push(other);
            }
        }
    }
    Some(out)
}

/// The UNICODE opcode's argument (without its newline), raw-unicode-escape
/// decoded. Lone surrogates (which Python keeps) become U+FFFD.
pub fn unicode_arg(s: &[u8]) -> Option<String> {
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        if s[i] != b'\\' {
            out.push(char::from(s[i]));
            i += 1;
            continue;
        }
        let run_start = i;
        while s.get(i) == Some(&b'\\') {
            i += 1;
        }
        let run = i - run_start;
        let width = match s.get(i) {
            Some(b'u') if run % 2 == 1 => 4,
            Some(b'U') if run % 2 == 1 => 8,
            _ => {
                out.extend(std::iter::repeat_n('\\', run));
                continue;
            }
        };
        out.extend(std::iter::repeat_n('\\', run - 1));
        let hex = s.get(i + 1..i + 1 + width)?;
        let mut v = 0u32;
        for &c in hex {
            v = v * 16 + digit(c, 16)?;
        }
        if v > 0x10ffff {
            return None;
        }
        out.push(char::from_u32(v).unwrap_or('\u{fffd}'));
        i += 1 + width;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn int(s: &str) -> Option<PyInt> {
        int_arg(s.as_bytes())
    }

    #[test]
    fn ints_as_python_reads_them() {
        // Values checked with CPython 3.11's pickle.loads(b"I" + s + b"\n.").
        assert_eq!(int("12"), Some(PyInt::Small(12)));
        assert_eq!(int("  -12"), Some(PyInt::Small(-12)));
        assert_eq!(int("0x1f"), Some(PyInt::Small(31)));
        assert_eq!(int("010"), Some(PyInt::Small(8)));
        assert_eq!(int("1_000"), Some(PyInt::Small(1000)));
        assert_eq!(int("0b101"), Some(PyInt::Small(5)));
        assert_eq!(int("0o17 "), Some(PyInt::Small(15)));
        assert_eq!(int("12\0junk"), Some(PyInt::Small(12)));
        assert_eq!(
            int("123456789012345678901234567890"),
            Some(PyInt::Big("123456789012345678901234567890".into()))
        );
        for bad in ["", " ", "1__0", "_1", "1_", "0x", "12a", "1 2", "0_x1"] {
            assert_eq!(int(bad), None, "{bad:?}");
        }
        assert_eq!(long_arg(b"0x_fL"), Some(PyInt::Small(15)));
        assert_eq!(long_arg(b"012"), None);
        assert_eq!(py_int(b"1_2", 10), Some(PyInt::Small(12)));
    }

    #[test]
    fn floats_and_strings_as_python_reads_them() {
        assert_eq!(float_arg(b"1.5"), Some(1.5));
        assert_eq!(float_arg(b"-inf"), Some(f64::NEG_INFINITY));
        assert_eq!(float_arg(b"1e5\0x"), Some(1e5));
        assert!(float_arg(b"nan").is_some_and(f64::is_nan));
        assert_eq!(float_arg(b"1e"), None);
        assert_eq!(float_arg(b" 1"), None);
        assert_eq!(float_arg(b"1e999"), None);
        assert_eq!(float_arg(b"1_0"), None);
        assert_eq!(string_arg(b"'o\\x73'"), Some(b"os".to_vec()));
        assert_eq!(string_arg(b"\"\\157s\""), Some(b"os".to_vec()));
        assert_eq!(string_arg(b"'a\\qb'"), Some(b"a\\qb".to_vec()));
        assert_eq!(string_arg(b"'a\\x4'"), None);
        assert_eq!(string_arg(b"'a\\'"), None);
        assert_eq!(string_arg(b"'a\""), None);
        assert_eq!(unicode_arg(b"o\\u0073"), Some("os".into()));
        assert_eq!(unicode_arg(b"\\\\u0073"), Some("\\\\u0073".into()));
        assert_eq!(unicode_arg(b"\\\\\\u0073"), Some("\\\\s".into()));
        assert_eq!(unicode_arg(b"\\U0001F600\xe9"), Some("\u{1f600}\u{e9}".into()));
        assert_eq!(unicode_arg(b"\\ud800"), Some("\u{fffd}".into()));
        assert_eq!(unicode_arg(b"\\u12"), None);
        assert_eq!(unicode_arg(b"\\U00110000"), None);
    }
}
