//! The tar container of torch's oldest checkpoints (`storages`, `tensors`,
//! `pickle` members, each read with `pickle.load`): just enough of the
//! format to list members and their bytes, as Python's `tarfile` finds them
//! (ustar, GNU and V7 headers, each validated by its checksum; GNU long
//! names and pax headers are followed). Every size is checked against the
//! bytes that remain.

const BLOCK: usize = 512;

/// A header field as a number: octal text, or GNU base-256 (high bit set).
fn number(field: &[u8]) -> Option<u64> {
    if field.first().is_some_and(|&b| b & 0x80 != 0) {
        let mut v: u64 = u64::from(field[0] & 0x7f);
        for &b in &field[1..] {
            v = v.checked_mul(256)?.checked_add(u64::from(b))?;
        }
        return Some(v);
    }
    let text: Vec<u8> = field
        .iter()
        .copied()
        .skip_while(|&b| b == b' ')
        .take_while(|&b| (b'0'..=b'7').contains(&b))
        .collect();
    if text.is_empty() {
        return Some(0);
    }
    u64::from_str_radix(std::str::from_utf8(&text).ok()?, 8).ok()
}

/// True when `h` is a tar header whose checksum holds (as tarfile checks:
/// the unsigned or the signed byte sum).
fn valid_header(h: &[u8]) -> bool {
    let Some(stored) = number(&h[148..156]) else {
        return false;
    };
    let mut unsigned = 0u64;
    let mut signed = 0i64;
    for (i, &b) in h.iter().enumerate() {
        let b = if (148..156).contains(&i) { b' ' } else { b };
        unsigned += u64::from(b);
        signed += i64::from(b as i8);
    }
    stored == unsigned || i64::try_from(stored).is_ok_and(|s| s == signed)
}

fn text(field: &[u8]) -> String {
    let end = field.iter().position(|&b| b == 0).unwrap_or(field.len());
    String::from_utf8_lossy(&field[..end]).into_owned()
}

/// The regular members of a tar archive (name, bytes), or None when
/// `bytes` does not start with a valid tar header.
pub fn members(bytes: &[u8]) -> Option<Vec<(String, &[u8])>> {
    let first = bytes.get(..BLOCK)?;
    if first.iter().all(|&b| b == 0) || !valid_header(first) {
        return None;
    }
    let mut out = Vec::new();
    let mut pos = 0usize;
    let mut long_name: Option<String> = None;
    while let Some(h) = bytes.get(pos..pos.checked_add(BLOCK)?) {
        if h.iter().all(|&b| b == 0) || !valid_header(h) {
            break;
        }
        let size = usize::try_from(number(&h[124..136])?).ok()?;
        let data_start = pos + BLOCK;
        let data = bytes
            .get(data_start..data_start.checked_add(size)?)
            .unwrap_or(&bytes[data_start.min(bytes.len())..]);
        let mut name = text(&h[..100]);
        if &h[257..262] == b"ustar" {
            let prefix = text(&h[345..500]);
            if !prefix.is_empty() {
                name = format!("{prefix}/{name}");
            }
        }
        match h[156] {
            b'L' => long_name = Some(text(data)),
            b'x' | b'g' => {}
            b'0' | 0 | b'7' => out.push((long_name.take().unwrap_or(name), data)),
            _ => long_name = None,
        }
        let blocks = size.div_ceil(BLOCK).checked_mul(BLOCK)?;
        pos = data_start.checked_add(blocks)?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(name: &str, size: usize) -> Vec<u8> {
        let mut h = vec![0u8; BLOCK];
        h[..name.len()].copy_from_slice(name.as_bytes());
        h[100..107].copy_from_slice(b"0000644");
        h[124..135].copy_from_slice(format!("{size:011o}").as_bytes());
        h[156] = b'0';
        h[257..263].copy_from_slice(b"ustar\0");
        h[148..156].copy_from_slice(b"        ");
        let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
        h[148..155].copy_from_slice(format!("{sum:06o}\0").as_bytes());
        h
    }

    #[test]
    fn lists_members_and_refuses_non_tars() {
        let mut t = header("pickle", 3);
        t.extend_from_slice(b"abc");
        t.resize(2 * BLOCK, 0);
        t.extend(header("tensors", 0));
        t.resize(5 * BLOCK, 0);
        let m = members(&t).unwrap();
        assert_eq!(
            m,
            vec![("pickle".to_string(), &b"abc"[..]), ("tensors".to_string(), &b""[..])]
        );
        assert!(members(b"\x80\x02N.").is_none());
        let mut bad = t.clone();
        bad[0] ^= 1;
        assert!(members(&bad).is_none());
        // A size past the end gives what is there.
        let mut cut = header("p", 10_000);
        cut.extend_from_slice(b"xy");
        assert_eq!(members(&cut).unwrap()[0].1, b"xy");
    }
}
