//! Writing `.pt` files that `torch.load(path, weights_only=True)` reads:
//! a zip of stored entries (`<name>/data.pkl`, `.format_version`,
//! `.storage_alignment`, `byteorder`, `data/<key>`, `version`), each
//! storage's data aligned to 64 bytes as torch writes it, and a protocol 2
//! pickle of an `OrderedDict` of `_rebuild_tensor_v2` calls (`_v3` over an
//! `UntypedStorage` for the dtypes without a legacy storage class).

use modelconv_ir::{DType, Error, Model, OutputFile, Progress, Result, Tensor, WriteOptions, WritePlan, Writer};
use std::path::{Path, PathBuf};

pub struct PtWriter;

/// torch's storage class (v2) or dtype name (v3) for a dtype.
fn torch_type(d: DType) -> Option<(Option<&'static str>, &'static str)> {
    Some(match d {
        DType::F32 => (Some("FloatStorage"), "float32"),
        DType::F64 => (Some("DoubleStorage"), "float64"),
        DType::F16 => (Some("HalfStorage"), "float16"),
        DType::BF16 => (Some("BFloat16Storage"), "bfloat16"),
        DType::I64 => (Some("LongStorage"), "int64"),
        DType::I32 => (Some("IntStorage"), "int32"),
        DType::I16 => (Some("ShortStorage"), "int16"),
        DType::I8 => (Some("CharStorage"), "int8"),
        DType::U8 => (Some("ByteStorage"), "uint8"),
        DType::Bool => (Some("BoolStorage"), "bool"),
        DType::F8_E4M3 => (None, "float8_e4m3fn"),
        DType::F8_E5M2 => (None, "float8_e5m2"),
        DType::U16 => (None, "uint16"),
        DType::U32 => (None, "uint32"),
        DType::U64 => (None, "uint64"),
        _ => return None,
    })
}

/// A protocol 2 pickle, written opcode by opcode.
#[derive(Default)]
struct Pickler(Vec<u8>);

impl Pickler {
    fn op(&mut self, b: u8) {
        self.0.push(b);
    }
    fn global(&mut self, module: &str, name: &str) {
        self.0.push(b'c');
        self.0.extend_from_slice(format!("{module}\n{name}\n").as_bytes());
    }
    fn str(&mut self, s: &str) {
        self.0.push(b'X');
        self.0.extend_from_slice(&(s.len() as u32).to_le_bytes());
        self.0.extend_from_slice(s.as_bytes());
    }
    fn int(&mut self, v: u64) {
        if v < 256 {
            self.0.extend_from_slice(&[b'K', v as u8]);
        } else if v < 65536 {
            self.0.push(b'M');
            self.0.extend_from_slice(&(v as u16).to_le_bytes());
        } else if v < (1 << 31) {
            self.0.push(b'J');
            self.0.extend_from_slice(&(v as u32).to_le_bytes());
        } else {
            // LONG1: little-endian two's complement (a ninth byte keeps it positive).
            let n = if v < (1 << 63) { 8 } else { 9 };
            self.0.extend_from_slice(&[0x8a, n]);
            self.0.extend_from_slice(&v.to_le_bytes());
            if n == 9 {
                self.0.push(0);
            }
        }
    }
    fn int_tuple(&mut self, vals: &[u64]) {
        match vals.len() {
            0 => self.op(b')'),
            1..=3 => {
                vals.iter().for_each(|&v| self.int(v));
                self.op(0x84 + vals.len() as u8);
            }
            _ => {
                self.op(b'(');
                vals.iter().for_each(|&v| self.int(v));
                self.op(b't');
            }
        }
    }
    fn ordered_dict(&mut self) {
        self.global("collections", "OrderedDict");
        self.op(b')');
        self.op(b'R');
    }
}

/// The state dict pickle: name → `_rebuild_tensor_v2/v3(storage i, ...)`.
fn state_dict_pickle(tensors: &[Tensor]) -> Result<Vec<u8>> {
    let mut p = Pickler::default();
    p.0.extend_from_slice(&[0x80, 2]);
    p.ordered_dict();
    p.op(b'(');
    for (i, t) in tensors.iter().enumerate() {
        let (class, dtype) = torch_type(t.info.dtype).ok_or_else(|| {
            Error::unsupported(format!(
                "a .pt file cannot hold {} (tensor '{}')",
                t.info.dtype, t.info.name
            ))
        })?;
        p.str(&t.info.name);
        p.global(
            "torch._utils",
            if class.is_some() {
                "_rebuild_tensor_v2"
            } else {
                "_rebuild_tensor_v3"
            },
        );
        p.op(b'(');
        // Persistent id: ('storage', type, key, 'cpu', elements or bytes).
        p.op(b'(');
        p.str("storage");
        match class {
            Some(c) => p.global("torch", c),
            None => p.global("torch.storage", "UntypedStorage"),
        }
        p.str(&i.to_string());
        p.str("cpu");
        p.int(if class.is_some() {
            t.info.numel()
        } else {
            t.info.byte_len
        });
        p.op(b't');
        p.op(b'Q');
        p.int(0);
        p.int_tuple(&t.info.shape);
        let mut stride = vec![1u64; t.info.shape.len()];
        for d in (0..t.info.shape.len().saturating_sub(1)).rev() {
            stride[d] = stride[d + 1] * t.info.shape[d + 1].max(1);
        }
        p.int_tuple(&stride);
        p.op(0x89);
        p.ordered_dict();
        if class.is_none() {
            p.global("torch", dtype);
        }
        p.op(b't');
        p.op(b'R');
    }
    p.op(b'u');
    p.op(b'.');
    Ok(p.0)
}

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

struct Plan {
    dest: PathBuf,
    prefix: String,
    pickle: Vec<u8>,
    tensors: Vec<Tensor>,
    opts: WriteOptions,
    data_bytes: u64,
}

/// torch names the archive's top folder after the file.
fn archive_name(dest: &Path) -> String {
    let stem = dest
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let clean: String = stem
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if clean.is_empty() {
        "archive".into()
    } else {
        clean
    }
}

impl Writer for PtWriter {
    fn plan(&self, model: &Model, dest: &Path, opts: &WriteOptions) -> Result<Box<dyn WritePlan>> {
        if opts.max_shard_size.is_some() {
            return Err(Error::unsupported("--max-shard-size is not supported for .pt output"));
        }
        model.check_unique_names()?;
        model.refuse_types(
            "a .pt file",
            |d| torch_type(d).is_some(),
            |_| "convert with --dtype F32, F16 or BF16, or leave them out with --exclude".into(),
        )?;
        let pickle = state_dict_pickle(&model.tensors)?;
        Ok(Box::new(Plan {
            dest: dest.to_path_buf(),
            prefix: archive_name(dest),
            pickle,
            tensors: model.tensors.clone(),
            opts: opts.clone(),
            data_bytes: model.data_bytes(),
        }))
    }
}

impl Plan {
    fn small_entry(&self, out: &mut OutputFile, entries: &mut Vec<Entry>, name: &str, data: &[u8]) -> Result<()> {
        let name = format!("{}/{name}", self.prefix);
        let offset = out.position();
        let crc = crc32fast::hash(data);
        out.write_all(&local_header(&name, offset, data.len() as u64, crc, false))?;
        out.write_all(data)?;
        entries.push(Entry {
            name,
            offset,
            size: data.len() as u64,
            crc,
            descriptor: false,
        });
        Ok(())
    }
}

impl WritePlan for Plan {
    fn outputs(&self) -> Vec<PathBuf> {
        vec![self.dest.clone()]
    }
    fn data_bytes(&self) -> u64 {
        self.data_bytes
    }
    fn write(self: Box<Self>, progress: &dyn Progress) -> Result<()> {
        let mut out = OutputFile::create(&self.dest, &self.opts)?;
        let mut entries = Vec::new();
        self.small_entry(&mut out, &mut entries, "data.pkl", &self.pickle)?;
        self.small_entry(&mut out, &mut entries, ".format_version", b"1")?;
        self.small_entry(&mut out, &mut entries, ".storage_alignment", b"64")?;
        self.small_entry(&mut out, &mut entries, "byteorder", b"little")?;
        for (i, t) in self.tensors.iter().enumerate() {
            let name = format!("{}/data/{i}", self.prefix);
            let offset = out.position();
            let size = t.info.byte_len;
            out.write_all(&local_header(&name, offset, size, 0, true))?;
            let mut crc = crc32fast::Hasher::new();
            out.write_source_inspected(t.data.as_ref(), progress, &mut |b| crc.update(b))
                .map_err(|e| e.for_tensor(&t.info.name))?;
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
            entries.push(Entry {
                name,
                offset,
                size,
                crc,
                descriptor: true,
            });
        }
        self.small_entry(&mut out, &mut entries, "version", b"3\n")?;
        let cd_offset = out.position();
        out.write_all(&central_directory(&entries, cd_offset))?;
        out.commit()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ints_use_the_smallest_opcode_and_read_back() {
        for v in [0u64, 255, 256, 65535, 65536, (1 << 31) - 1, 1 << 31, u64::MAX >> 1] {
            let mut p = Pickler::default();
            p.0.extend_from_slice(&[0x80, 2]);
            p.int(v);
            p.op(b'.');
            let got = crate::vm::Vm::new(&p.0, None).run().unwrap().as_int().unwrap();
            assert_eq!(got as u64, v);
        }
    }
}
