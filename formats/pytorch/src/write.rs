//! Writing `.pt` files that `torch.load(path, weights_only=True)` reads:
//! a zip of stored entries (`<name>/data.pkl`, `.format_version`,
//! `.storage_alignment`, `byteorder`, `data/<key>`, `version`), each
//! storage's data aligned to 64 bytes as torch writes it, and a protocol 2
//! pickle of an `OrderedDict` of `_rebuild_tensor_v2` calls (`_v3` over an
//! `UntypedStorage` for the dtypes without a legacy storage class).

use modelconv_ir::{DType, Error, Model, OneFilePlan, Result, Tensor, WriteOptions, WritePlan, Writer};
use modelconv_zipout::ZipOut;
use std::path::Path;

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
        let (p, tensors) = (archive_name(dest), model.tensors.clone());
        Ok(OneFilePlan::boxed(
            dest,
            opts,
            model.data_bytes(),
            false,
            move |out, progress| {
                let mut zip = ZipOut::new();
                zip.small(out, &format!("{p}/data.pkl"), &pickle)?;
                zip.small(out, &format!("{p}/.format_version"), b"1")?;
                zip.small(out, &format!("{p}/.storage_alignment"), b"64")?;
                zip.small(out, &format!("{p}/byteorder"), b"little")?;
                for (i, t) in tensors.iter().enumerate() {
                    zip.streamed(out, &format!("{p}/data/{i}"), &[], t.data.as_ref(), progress)
                        .map_err(|e| e.for_tensor(&t.info.name))?;
                }
                zip.small(out, &format!("{p}/version"), b"3\n")?;
                zip.finish(out)
            },
        ))
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
            let got = modelconv_pickle::vm::Vm::new(&p.0, None, &crate::constructors::TORCH)
                .run()
                .unwrap()
                .as_int()
                .unwrap();
            assert_eq!(got as u64, v);
        }
    }
}
