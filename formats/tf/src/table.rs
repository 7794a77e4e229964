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
            // Snappy's densest element, a 3-byte copy of 64 bytes, bounds what
            // a block can inflate to: a larger claim is refused before any
            // allocation.
            if n as u64 > (size + 1) * 22 {
                return bad(
                    offset,
                    format!("a {size}-byte snappy block claiming {n} bytes, more than snappy can encode"),
                );
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

#[cfg(test)]
mod tests {
    use super::*;

    fn put_varint(out: &mut Vec<u8>, mut v: u64) {
        while v >= 0x80 {
            out.push((v as u8) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }

    fn mask(crc: u32) -> u32 {
        crc.rotate_right(15).wrapping_add(0xa282_ead8)
    }

    /// A block of entries as LevelDB's block builder lays it out (keys
    /// prefix-compressed against the previous one, a restart every
    /// `interval` entries), then its trailer; returns its handle.
    fn write_block(out: &mut Vec<u8>, entries: &[(Vec<u8>, Vec<u8>)], interval: usize, snappy: bool) -> (u64, u64) {
        let mut b = Vec::new();
        let mut restarts = Vec::new();
        let mut prev: &[u8] = &[];
        for (i, (k, v)) in entries.iter().enumerate() {
            let shared = if i % interval == 0 {
                restarts.push(b.len() as u32);
                0
            } else {
                k.iter().zip(prev).take_while(|(a, b)| a == b).count()
            };
            put_varint(&mut b, shared as u64);
            put_varint(&mut b, (k.len() - shared) as u64);
            put_varint(&mut b, v.len() as u64);
            b.extend_from_slice(&k[shared..]);
            b.extend_from_slice(v);
            prev = k;
        }
        if restarts.is_empty() {
            restarts.push(0);
        }
        for r in &restarts {
            b.extend_from_slice(&r.to_le_bytes());
        }
        b.extend_from_slice(&(restarts.len() as u32).to_le_bytes());
        let (data, kind) = if snappy {
            (snap::raw::Encoder::new().compress_vec(&b).unwrap(), 1u8)
        } else {
            (b, 0u8)
        };
        let handle = (out.len() as u64, data.len() as u64);
        out.extend_from_slice(&data);
        out.push(kind);
        let crc = crc32c::crc32c_append(crc32c::crc32c(&data), &[kind]);
        out.extend_from_slice(&mask(crc).to_le_bytes());
        handle
    }

    /// A whole table: data blocks of `per_block` entries, an empty
    /// metaindex, the index block, the footer.
    fn write_table(entries: &[(Vec<u8>, Vec<u8>)], per_block: usize, snappy: bool) -> Vec<u8> {
        let mut out = Vec::new();
        let mut index = Vec::new();
        for chunk in entries.chunks(per_block) {
            let (o, s) = write_block(&mut out, chunk, 16, snappy);
            let mut h = Vec::new();
            put_varint(&mut h, o);
            put_varint(&mut h, s);
            index.push((chunk[chunk.len() - 1].0.clone(), h));
        }
        let meta = write_block(&mut out, &[], 16, false);
        let idx = write_block(&mut out, &index, 1, snappy);
        let mut footer = Vec::new();
        for v in [meta.0, meta.1, idx.0, idx.1] {
            put_varint(&mut footer, v);
        }
        footer.resize(40, 0);
        footer.extend_from_slice(&MAGIC.to_le_bytes());
        out.extend_from_slice(&footer);
        out
    }

    /// TensorFlow writes its bundles uncompressed; LevelDB's snappy blocks
    /// (and restart intervals, several data blocks) are read the same: the
    /// entries of a real bundle index, rewritten that way, read back equal.
    #[test]
    fn snappy_blocks_and_restarts_read_back() {
        let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/tf/ckpt/big.index");
        let original = read(&std::fs::read(fixture).unwrap()).unwrap();
        assert!(original.len() > 300);
        for (per_block, snappy) in [(7, true), (1000, true), (5, false)] {
            let table = write_table(&original, per_block, snappy);
            assert_eq!(read(&table).unwrap(), original, "{per_block} {snappy}");
        }
    }

    /// A snappy block whose crc is right but whose bytes do not decode, and
    /// one that claims to inflate past the limit: errors at the block.
    #[test]
    fn bad_snappy_blocks_are_errors() {
        for (data, says) in [
            (&[0x05u8, 0xff, 0xff, 0xff][..], "snappy"),
            (&[0xff, 0xff, 0x7f][..], "more than snappy can encode"),
            (&[0x80, 0x80, 0x80, 0x80, 0x02][..], "limit"),
        ] {
            let mut table = data.to_vec();
            table.push(1);
            let crc = crc32c::crc32c_append(crc32c::crc32c(data), &[1]);
            table.extend_from_slice(&mask(crc).to_le_bytes());
            let mut footer = Vec::new();
            for v in [0, 0, 0, data.len() as u64] {
                put_varint(&mut footer, v);
            }
            footer.resize(40, 0);
            footer.extend_from_slice(&MAGIC.to_le_bytes());
            table.extend_from_slice(&footer);
            let err = read(&table).unwrap_err();
            assert!(err.msg.contains(says), "{}", err.msg);
            assert_eq!(err.offset, 0);
        }
    }
}
