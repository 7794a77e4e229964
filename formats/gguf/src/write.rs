//! Writing GGUF v3: metadata in model order, tensor infos, each tensor's data
//! aligned to `general.alignment` (default 32) and padded after; a file
//! with no tensors ends where its header does, as gguf-py writes one.

use crate::types::{ggml_id, value_type_id};
use crate::{DEFAULT_ALIGNMENT, MAGIC, MAX_DIMS_WRITE};
use modelconv_ir::{padding, Array, Error, Model, OneFilePlan, Result, Value, WriteOptions, WritePlan, Writer};
use std::path::Path;

pub struct GgufWriter;

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u64).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn put_value(out: &mut Vec<u8>, v: &Value) {
    match v {
        Value::U8(x) => out.push(*x),
        Value::I8(x) => out.push(*x as u8),
        Value::U16(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::I16(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::U32(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::I32(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::F32(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::U64(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::I64(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::F64(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::Bool(x) => out.push(u8::from(*x)),
        Value::String(s) => put_str(out, s),
        Value::Array(a) => {
            out.extend_from_slice(&value_type_id(a.element_type()).to_le_bytes());
            out.extend_from_slice(&(a.len() as u64).to_le_bytes());
            match a {
                Array::U8(v) => out.extend_from_slice(v),
                Array::I8(v) => out.extend(v.iter().map(|&x| x as u8)),
                Array::U16(v) => v.iter().for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
                Array::I16(v) => v.iter().for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
                Array::U32(v) => v.iter().for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
                Array::I32(v) => v.iter().for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
                Array::F32(v) => v.iter().for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
                Array::U64(v) => v.iter().for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
                Array::I64(v) => v.iter().for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
                Array::F64(v) => v.iter().for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
                Array::Bool(v) => out.extend(v.iter().map(|&b| u8::from(b))),
                Array::String(v) => v.iter().for_each(|s| put_str(out, s)),
                Array::Array(v) => {
                    for inner in v {
                        put_value(out, &Value::Array(inner.clone()));
                    }
                }
            }
        }
    }
}

impl Writer for GgufWriter {
    fn llama_conventions(&self) -> bool {
        true
    }

    fn plan(&self, model: &Model, dest: &Path, opts: &WriteOptions) -> Result<Box<dyn WritePlan>> {
        if opts.max_shard_size.is_some() {
            return Err(Error::unsupported("--max-shard-size is not supported for GGUF output"));
        }
        model.check_unique_names()?;
        let alignment = match model.metadata.get("general.alignment") {
            None => DEFAULT_ALIGNMENT,
            Some(Value::U32(a)) if *a != 0 && a.is_power_of_two() => u64::from(*a),
            Some(v) => {
                return Err(Error::invalid(format!(
                    "general.alignment is {v:?}; GGUF needs a power of two as u32"
                )))
            }
        };
        let mut h = Vec::new();
        h.extend_from_slice(MAGIC);
        h.extend_from_slice(&3u32.to_le_bytes());
        h.extend_from_slice(&(model.tensors.len() as u64).to_le_bytes());
        h.extend_from_slice(&(model.metadata.len() as u64).to_le_bytes());
        for (k, v) in model.metadata.iter() {
            put_str(&mut h, k);
            h.extend_from_slice(&value_type_id(v.value_type()).to_le_bytes());
            put_value(&mut h, v);
        }
        model.refuse_types(
            "GGUF",
            |d| ggml_id(d).is_some(),
            |bad| {
                if bad.iter().any(|d| d.is_float()) {
                    "cast floats with --dtype F16 (or F32, BF16), or leave them out with --exclude".into()
                } else {
                    "leave them out with --exclude".into()
                }
            },
        )?;
        let mut offset = 0u64;
        for t in &model.tensors {
            let info = &t.info;
            let id = ggml_id(info.dtype).ok_or_else(|| {
                Error::unsupported(format!("GGUF has no {} type (tensor '{}')", info.dtype, info.name))
            })?;
            if info.shape.len() > MAX_DIMS_WRITE {
                return Err(Error::unsupported(format!(
                    "tensor '{}' has {} dimensions; GGUF (ggml) holds at most {MAX_DIMS_WRITE}",
                    info.name,
                    info.shape.len()
                )));
            }
            if let Some(&row) = info.shape.last() {
                if row % info.dtype.block_size() != 0 {
                    return Err(Error::invalid(format!(
                        "tensor '{}': row length {row} is not a multiple of the {} block size",
                        info.name, info.dtype
                    )));
                }
            }
            put_str(&mut h, &info.name);
            h.extend_from_slice(&(info.shape.len() as u32).to_le_bytes());
            for d in info.shape.iter().rev() {
                h.extend_from_slice(&d.to_le_bytes());
            }
            h.extend_from_slice(&id.to_le_bytes());
            h.extend_from_slice(&offset.to_le_bytes());
            offset = offset
                .checked_add(info.byte_len)
                .map(|o| o + padding(o, alignment))
                .ok_or_else(|| Error::invalid("total tensor data overflows u64"))?;
        }
        // The data section starts aligned; a file with no tensors has none,
        // and ends with its last tensor info as gguf-py writes it (the
        // vocab-only files in llama.cpp's models/), so a copy is exact.
        if !model.tensors.is_empty() {
            let pad = padding(h.len() as u64, alignment) as usize;
            h.resize(h.len() + pad, 0);
        }
        // The header holds every offset, so the file is written in one pass.
        let tensors = model.tensors.clone();
        Ok(OneFilePlan::boxed(
            dest,
            opts,
            model.data_bytes(),
            true,
            move |out, progress| {
                out.write_all(&h)?;
                for t in &tensors {
                    out.write_source(t.data.as_ref(), progress)
                        .map_err(|e| e.for_tensor(&t.info.name))?;
                    out.pad_to(alignment)?;
                }
                Ok(())
            },
        ))
    }
}
