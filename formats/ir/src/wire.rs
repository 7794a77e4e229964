//! Protobuf's wire format, the little of it readers decode by hand: varints
//! and a message's fields, every length checked against the bytes there
//! are (ONNX's counts before decoding, TensorFlow's bundle entries).

/// A varint at `b[*pos..]`, advancing `pos`; `None` when it runs out or
/// is longer than 10 bytes.
pub fn varint(b: &[u8], pos: &mut usize) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *b.get(*pos)?;
        *pos += 1;
        v |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

/// A protobuf field's value.
pub enum Wire<'a> {
    Varint(u64),
    Fixed64,
    Bytes(&'a [u8]),
    Fixed32(u32),
}

/// The fields of a protobuf message: (number, value), in order.
pub fn fields(b: &[u8]) -> Result<Vec<(u64, Wire<'_>)>, String> {
    let mut out = Vec::new();
    let mut pos = 0usize;
    while pos < b.len() {
        let tag = varint(b, &mut pos).ok_or("a field tag that runs out")?;
        let (num, wire) = (tag >> 3, tag & 7);
        let v = match wire {
            0 => Wire::Varint(varint(b, &mut pos).ok_or("a varint that runs out")?),
            1 => {
                let s = b.get(pos..pos + 8).ok_or("a fixed64 that runs out")?;
                pos += 8;
                let _ = s;
                Wire::Fixed64
            }
            2 => {
                let n = varint(b, &mut pos).ok_or("a length that runs out")? as usize;
                let end = pos
                    .checked_add(n)
                    .filter(|&e| e <= b.len())
                    .ok_or("a field running past its message")?;
                let s = &b[pos..end];
                pos = end;
                Wire::Bytes(s)
            }
            5 => {
                let s = b.get(pos..pos + 4).ok_or("a fixed32 that runs out")?;
                pos += 4;
                Wire::Fixed32(u32::from_le_bytes(s.try_into().map_err(|_| "fixed32")?))
            }
            w => return Err(format!("wire type {w}")),
        };
        out.push((num, v));
    }
    Ok(out)
}
