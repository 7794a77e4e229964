//! # modelconv-zipout
//!
//! Zip archives of stored (uncompressed) entries, written in one pass
//! through an [`OutputFile`]: each entry's data starts 64-byte aligned (as
//! torch writes its checkpoints, so readers can map it), big entries carry
//! their CRC in a data descriptor computed while the data streams, and
//! zip64 records are used past 4 GiB or 65 535 entries. The `.pt` and
//! `.npz` writers share it.

use modelconv_ir::{DataSource, OutputFile, Progress, Result};

const ALIGN: u64 = 64;
const U32_MAX: u64 = 0xFFFF_FFFF;

/// An entry's central-directory facts.
struct Entry {
    name: String,
    offset: u64,
    size: u64,
    crc: u32,
    descriptor: bool,
}

fn put16(v: &mut Vec<u8>, x: u16) {
    v.extend_from_slice(&x.to_le_bytes());
}
fn put32(v: &mut Vec<u8>, x: u32) {
    v.extend_from_slice(&x.to_le_bytes());
}
fn put64(v: &mut Vec<u8>, x: u64) {
    v.extend_from_slice(&x.to_le_bytes());
}

/// A local file header whose data starts 64-byte aligned. With a
/// descriptor the CRC follows the data.
fn local_header(name: &str, offset: u64, size: u64, crc: u32, descriptor: bool) -> Vec<u8> {
    let zip64 = size >= U32_MAX;
    let mut h = Vec::new();
    put32(&mut h, 0x0403_4b50);
    put16(&mut h, if zip64 { 45 } else { 20 });
    put16(&mut h, if descriptor { 0x0808 } else { 0x0800 });
    put16(&mut h, 0); // stored
    put16(&mut h, 0); // time
    put16(&mut h, 0x21); // 1980-01-01: fixed, so output is reproducible
    put32(&mut h, crc);
    let s32 = if zip64 { U32_MAX as u32 } else { size as u32 };
    put32(&mut h, s32);
    put32(&mut h, s32);
    let z64_len = if zip64 { 20 } else { 0 };
    let base = offset + 30 + name.len() as u64 + z64_len + 4;
    let pad = (ALIGN - base % ALIGN) % ALIGN;
    put16(&mut h, name.len() as u16);
    put16(&mut h, (z64_len + 4 + pad) as u16);
    h.extend_from_slice(name.as_bytes());
    if zip64 {
        put16(&mut h, 1);
        put16(&mut h, 16);
        put64(&mut h, size);
        put64(&mut h, size);
    }
    // Padding, in an extra field of its own (id "FB", as torch's writer uses).
    put16(&mut h, 0x4246);
    put16(&mut h, pad as u16);
    h.resize(h.len() + pad as usize, 0);
    h
}

fn central_directory(entries: &[Entry], cd_offset: u64) -> Vec<u8> {
    let mut cd = Vec::new();
    for e in entries {
        let big_size = e.size >= U32_MAX;
        let big_off = e.offset >= U32_MAX;
        let mut extra = Vec::new();
        if big_size || big_off {
            put16(&mut extra, 1);
            put16(
                &mut extra,
                (if big_size { 16 } else { 0 }) + if big_off { 8 } else { 0 },
            );
            if big_size {
                put64(&mut extra, e.size);
                put64(&mut extra, e.size);
            }
            if big_off {
                put64(&mut extra, e.offset);
            }
        }
        put32(&mut cd, 0x0201_4b50);
        put16(&mut cd, 45);
        put16(&mut cd, if big_size || big_off { 45 } else { 20 });
        put16(&mut cd, if e.descriptor { 0x0808 } else { 0x0800 });
        put16(&mut cd, 0);
        put16(&mut cd, 0);
        put16(&mut cd, 0x21);
        put32(&mut cd, e.crc);
        let s32 = if big_size { U32_MAX as u32 } else { e.size as u32 };
        put32(&mut cd, s32);
        put32(&mut cd, s32);
        put16(&mut cd, e.name.len() as u16);
        put16(&mut cd, extra.len() as u16);
        put16(&mut cd, 0);
        put16(&mut cd, 0);
        put16(&mut cd, 0);
        put32(&mut cd, 0);
        put32(&mut cd, if big_off { U32_MAX as u32 } else { e.offset as u32 });
        cd.extend_from_slice(e.name.as_bytes());
        cd.extend_from_slice(&extra);
    }
    let cd_size = cd.len() as u64;
    let n = entries.len() as u64;
    if cd_offset >= U32_MAX || n >= 0xFFFF {
        let z64_at = cd_offset + cd_size;
        put32(&mut cd, 0x0606_4b50);
        put64(&mut cd, 44);
        put16(&mut cd, 45);
        put16(&mut cd, 45);
        put32(&mut cd, 0);
        put32(&mut cd, 0);
        put64(&mut cd, n);
        put64(&mut cd, n);
        put64(&mut cd, cd_size);
        put64(&mut cd, cd_offset);
        put32(&mut cd, 0x0706_4b50);
        put32(&mut cd, 0);
        put64(&mut cd, z64_at);
        put32(&mut cd, 1);
    }
    put32(&mut cd, 0x0605_4b50);
    put16(&mut cd, 0);
    put16(&mut cd, 0);
    put16(&mut cd, n.min(0xFFFF) as u16);
    put16(&mut cd, n.min(0xFFFF) as u16);
    put32(&mut cd, cd_size.min(U32_MAX) as u32);
    put32(&mut cd, cd_offset.min(U32_MAX) as u32);
    put16(&mut cd, 0);
    cd
}

/// An archive being written: the entries so far.
#[derive(Default)]
pub struct ZipOut {
    entries: Vec<Entry>,
}

impl ZipOut {
    pub fn new() -> Self {
        Self::default()
    }

    /// A small entry held in memory (its CRC goes in the local header).
    pub fn small(&mut self, out: &mut OutputFile, name: &str, data: &[u8]) -> Result<()> {
        let offset = out.position();
        let crc = crc32fast::hash(data);
        out.write_all(&local_header(name, offset, data.len() as u64, crc, false))?;
        out.write_all(data)?;
        self.entries.push(Entry {
            name: name.to_string(),
            offset,
            size: data.len() as u64,
            crc,
            descriptor: false,
        });
        Ok(())
    }

    /// An entry of `head` followed by all of `src`, streamed; the CRC
    /// follows in a data descriptor.
    pub fn streamed(
        &mut self,
        out: &mut OutputFile,
        name: &str,
        head: &[u8],
        src: &dyn DataSource,
        progress: &dyn Progress,
    ) -> Result<()> {
        let offset = out.position();
        let size = head.len() as u64 + src.len();
        out.write_all(&local_header(name, offset, size, 0, true))?;
        let mut crc = crc32fast::Hasher::new();
        crc.update(head);
        out.write_all(head)?;
        out.write_source_inspected(src, progress, &mut |b| crc.update(b))?;
        let crc = crc.finalize();
        let mut d = Vec::new();
        put32(&mut d, 0x0807_4b50);
        put32(&mut d, crc);
        if size >= U32_MAX {
            put64(&mut d, size);
            put64(&mut d, size);
        } else {
            put32(&mut d, size as u32);
            put32(&mut d, size as u32);
        }
        out.write_all(&d)?;
        self.entries.push(Entry {
            name: name.to_string(),
            offset,
            size,
            crc,
            descriptor: true,
        });
        Ok(())
    }

    /// The central directory, after the last entry.
    pub fn finish(self, out: &mut OutputFile) -> Result<()> {
        let cd_offset = out.position();
        out.write_all(&central_directory(&self.entries, cd_offset))
    }
}
