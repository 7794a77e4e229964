//! LevelDB's table format as TensorFlow writes it (`tensorflow/core/lib/io`
//! table builder). Every handle, length and count is checked against the bytes there are.

use modelconv_ir::wire::varint;
use modelconv_ir::Error;
use std::path::Path;

/// The table's magic number, the footer's last 8 bytes (little-endian).
pub const MAGIC: u64 = 0xdb47_7524_8b80_fb57;
const FOOTER: usize = 48;
/// Bytes after each block: its compression type and masked crc32c.
const TRAILER: usize = 5;
/// Largest block accepted (inflated size too).
const MAX_BLOCK: u64 = 256 << 20;
/// Most entries a table may hold.
const MAX_ENTRIES: usize = 1 << 24;

/// A failure at a byte offset of the index file.
#[derive(Debug)]
pub struct TableError {
    pub offset: u64,
    pub msg: String,
    pub truncated: bool,
}

impl TableError {
    pub fn at(self, path: &Path) -> Error {
        if self.truncated {
            Error::truncated(path, self.offset, self.msg)
        } else {
            Error::malformed(path, format!("byte {}: {}", self.offset, self.msg))
        }
    }
}

fn bad<T>(offset: u64, msg: impl Into<String>) -> Result<T, TableError> {
    Err(TableError {
        offset,
        msg: msg.into(),
        truncated: false,
    })
}

/// LevelDB's crc32c mask, undone.
pub fn unmask(masked: u32) -> u32 {
    let rot = masked.wrapping_sub(0xa282_ead8);
    rot.rotate_left(15)
}

/// A block handle: (offset, size).
fn handle(b: &[u8], pos: &mut usize) -> Option<(u64, u64)> {
    Some((varint(b, pos)?, varint(b, pos)?))
}

/// A block's contents: checked, decompressed.
fn block(file: &[u8], (offset, size): (u64, u64)) -> Result<Vec<u8>, TableError> {
    let end = offset
        .checked_add(size)
        .and_then(|e| e.checked_add(TRAILER as u64))
        .filter(|&e| e <= file.len() as u64);
    let Some(end) = end else {
        return Err(TableError {
            offset,
            msg: format!("a block of {size} bytes at {offset} runs past the end of the file"),
            truncated: true,
        });
    };
    if size > MAX_BLOCK {
        return bad(offset, format!("a block of {size} bytes, over the limit"));
    }
    let (o, s) = (offset as usize, size as usize);
    let data = &file[o..o + s];
    let kind = file[o + s];
    let stored = u32::from_le_bytes([file[o + s + 1], file[o + s + 2], file[o + s + 3], file[o + s + 4]]);
    let crc = crc32c::crc32c_append(crc32c::crc32c(data), &[kind]);
    if unmask(stored) != crc {
        return bad(
            end - 4,
            format!("block crc32c {crc:08x}, stored {:08x}", unmask(stored)),
        );
    }
    match kind {
        0 => Ok(data.to_vec()),
        1 => {
            let n = snap::raw::decompress_len(data).map_err(|e| TableError {
                offset,
                msg: format!("snappy: {e}"),
                truncated: false,
            })?;
            if n as u64 > MAX_BLOCK {
                return bad(offset, format!("a block inflating to {n} bytes, over the limit"));
            }
            snap::raw::Decoder::new().decompress_vec(data).map_err(|e| TableError {
                offset,
                msg: format!("snappy: {e}"),
                truncated: false,
            })
        }
        k => bad(
            offset + size,
            format!("block compression type {k} (0 none and 1 snappy exist)"),
        ),
    }
}

/// A block's entries: keys rebuilt from their shared prefixes.
fn entries(b: &[u8], at: u64, out: &mut Entries) -> Result<(), TableError> {
    if b.len() < 4 {
        return bad(at, "a block too short for its restart count");
    }
    let restarts = u32::from_le_bytes([b[b.len() - 4], b[b.len() - 3], b[b.len() - 2], b[b.len() - 1]]) as usize;
    let limit = restarts
        .checked_mul(4)
        .and_then(|r| r.checked_add(4))
        .and_then(|r| b.len().checked_sub(r))
        .ok_or(TableError {
            offset: at,
            msg: format!("{restarts} restarts do not fit the block"),
            truncated: false,
        })?;
    let mut pos = 0usize;
    let mut key: Vec<u8> = Vec::new();
    while pos < limit {
        let (Some(shared), Some(non_shared), Some(len)) =
            (varint(b, &mut pos), varint(b, &mut pos), varint(b, &mut pos))
        else {
            return bad(at + pos as u64, "an entry header that runs out");
        };
        let (shared, non_shared, len) = (shared as usize, non_shared as usize, len as usize);
        if shared > key.len() {
            return bad(
                at + pos as u64,
                format!("an entry sharing {shared} bytes of a {}-byte key", key.len()),
            );
        }
        let end = pos
            .checked_add(non_shared)
            .and_then(|e| e.checked_add(len))
            .filter(|&e| e <= limit);
        let Some(end) = end else {
            return bad(at + pos as u64, "an entry running past its block");
        };
        key.truncate(shared);
        key.extend_from_slice(&b[pos..pos + non_shared]);
        out.push((key.clone(), b[pos + non_shared..end].to_vec()));
        if out.len() > MAX_ENTRIES {
            return bad(at, "more entries than the limit");
        }
        pos = end;
    }
    Ok(())
}

/// A table's entries: (key, value), in key order.
pub type Entries = Vec<(Vec<u8>, Vec<u8>)>;

/// Every entry of the table, in key order.
pub fn read(file: &[u8]) -> Result<Entries, TableError> {
    if file.len() < FOOTER {
        return Err(TableError {
            offset: file.len() as u64,
            msg: format!("{} bytes, too short for the 48-byte footer", file.len()),
            truncated: true,
        });
    }
    let footer = &file[file.len() - FOOTER..];
    let at = (file.len() - FOOTER) as u64;
    if u64::from_le_bytes(footer[40..48].try_into().unwrap_or_default()) != MAGIC {
        return bad(at + 40, "no table magic number: not a TensorFlow checkpoint index");
    }
    let mut pos = 0;
    let (Some(_meta), Some(index)) = (handle(footer, &mut pos), handle(footer, &mut pos)) else {
        return bad(at, "the footer's block handles do not decode");
    };
    let index_block = block(file, index)?;
    let mut handles = Vec::new();
    entries(&index_block, index.0, &mut handles)?;
    let mut out = Vec::new();
    for (_, h) in handles {
        let mut p = 0;
        let Some(bh) = handle(&h, &mut p) else {
            return bad(index.0, "an index entry that is not a block handle");
        };
        let data = block(file, bh)?;
        entries(&data, bh.0, &mut out)?;
    }
    Ok(out)
}
