//! Writing GGUF v3: metadata in model order, tensor infos, each tensor's data
//! aligned to `general.alignment` (default 32) and padded after; a file
//! with no tensors ends where its header does, as gguf-py writes one. Split
//! output follows llama-gguf-split ([`crate::split`]).

use crate::split::{self, Split, SPLIT_ALIGNMENT};
use crate::types::{ggml_id, value_type_id};
use crate::{DEFAULT_ALIGNMENT, MAGIC, MAX_DIMS_READ, MAX_DIMS_WRITE};
use modelconv_ir::{
    commit_all, padding, Array, Error, Metadata, Model, OneFilePlan, OutputFile, Progress, Result, Tensor, Value,
    WriteOptions, WritePlan, Writer,
};
use std::path::{Path, PathBuf};

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
            return Err(Error::unsupported(
                "--max-shard-size is for Hugging Face shards; GGUF splits as llama-gguf-split does with \
                 --split-max-size N(M|G) or --split-max-tensors N",
            ));
        }
        model.check_unique_names()?;
        let alignment = alignment_of(&model.metadata)?;
        check_tensors(model)?;
        match (Split::from_options(&opts.options)?, &model.output_shards) {
            (None, None) => one_file(model, dest, opts, alignment),
            (Some(split), None) => split_plan(model, dest, opts, &split, alignment),
            (None, Some(counts)) => kept_split_plan(model, dest, opts, counts, alignment),
            (Some(_), Some(_)) => Err(Error::invalid(
                "--keep-split keeps the input's shards; it does not combine with --split-max-size/--split-max-tensors",
            )),
        }
    }
}

/// `general.alignment` (a power of two as u32), or GGUF's default 32.
pub(crate) fn alignment_of(metadata: &Metadata) -> Result<u64> {
    match metadata.get("general.alignment") {
        None => Ok(DEFAULT_ALIGNMENT),
        Some(Value::U32(a)) if *a != 0 && a.is_power_of_two() => Ok(u64::from(*a)),
        Some(v) => Err(Error::invalid(format!(
            "general.alignment is {v:?}; GGUF needs a power of two as u32"
        ))),
    }
}

/// Every tensor has a ggml type, at most ggml's 4 dimensions, and rows
/// that its type's blocks divide.
fn check_tensors(model: &Model) -> Result<()> {
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
    for t in &model.tensors {
        let info = &t.info;
        // ggml loads at most 4 dimensions; gguf-py (and ComfyUI-GGUF, whose
        // fix_5d_tensors.py writes 5-D F32 weights) reads more, so float
        // tensors may have up to what the reader takes.
        let most = if info.dtype.is_quantized() {
            MAX_DIMS_WRITE
        } else {
            MAX_DIMS_READ
        };
        if info.shape.len() > most {
            return Err(Error::unsupported(format!(
                "tensor '{}' has {} dimensions; GGUF holds at most {most} for {} (ggml at most {MAX_DIMS_WRITE})",
                info.name,
                info.shape.len(),
                info.dtype
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
    }
    Ok(())
}

/// How a header lays itself out: the writer it must equal.
#[derive(Clone, Copy)]
struct Layout {
    alignment: u64,
    /// Dimensions as ggml's `ggml_n_dims` counts them (trailing size-1
    /// dimensions in ggml order dropped, at least one), as gguf.cpp writes
    /// them; otherwise as many as the tensor has, as gguf-py writes them.
    ggml_dims: bool,
    /// Pad the header to the alignment even with no tensors (gguf.cpp);
    /// gguf-py ends a tensor-less file with its header.
    pad_empty: bool,
}

/// Magic, version 3, counts, metadata, tensor infos with their offsets in
/// the data section (each tensor padded to the alignment), padding.
fn header(metadata: &Metadata, tensors: &[Tensor], layout: Layout) -> Result<Vec<u8>> {
    let mut h = preamble_and_metadata(3, tensors.len() as u64, metadata);
    let mut offset = 0u64;
    for t in tensors {
        let info = &t.info;
        let id = ggml_id(info.dtype)
            .ok_or_else(|| Error::unsupported(format!("GGUF has no {} type (tensor '{}')", info.dtype, info.name)))?;
        let ne = if layout.ggml_dims {
            ggml_ne(&info.shape)
        } else {
            info.shape.iter().rev().copied().collect()
        };
        put_str(&mut h, &info.name);
        h.extend_from_slice(&(ne.len() as u32).to_le_bytes());
        for d in &ne {
            h.extend_from_slice(&d.to_le_bytes());
        }
        h.extend_from_slice(&id.to_le_bytes());
        h.extend_from_slice(&offset.to_le_bytes());
        offset = offset
            .checked_add(info.byte_len)
            .map(|o| o + padding(o, layout.alignment))
            .ok_or_else(|| Error::invalid("total tensor data overflows u64"))?;
    }
    if !tensors.is_empty() || layout.pad_empty {
        let pad = padding(h.len() as u64, layout.alignment) as usize;
        h.resize(h.len() + pad, 0);
    }
    Ok(h)
}

/// Magic, `version`, the tensor and metadata counts, and every key/value
/// pair in order: the header up to the tensor infos.
pub(crate) fn preamble_and_metadata(version: u32, n_tensors: u64, metadata: &Metadata) -> Vec<u8> {
    let mut h = Vec::new();
    h.extend_from_slice(MAGIC);
    h.extend_from_slice(&version.to_le_bytes());
    h.extend_from_slice(&n_tensors.to_le_bytes());
    h.extend_from_slice(&(metadata.len() as u64).to_le_bytes());
    for (k, v) in metadata.iter() {
        put_str(&mut h, k);
        h.extend_from_slice(&value_type_id(v.value_type()).to_le_bytes());
        put_value(&mut h, v);
    }
    h
}

/// The dimensions gguf.cpp writes for a shape given outermost first:
/// innermost first, up to the last that is not 1 (`ggml_n_dims`), at
/// least one.
fn ggml_ne(shape: &[u64]) -> Vec<u64> {
    let mut ne: Vec<u64> = shape.iter().rev().copied().collect();
    while ne.len() > 1 && ne.last() == Some(&1) {
        ne.pop();
    }
    if ne.is_empty() {
        ne.push(1);
    }
    ne
}

/// Writes `tensors` after `header`, each padded to the alignment.
fn write_body(
    out: &mut OutputFile,
    header: &[u8],
    tensors: &[Tensor],
    alignment: u64,
    progress: &dyn Progress,
) -> Result<()> {
    out.write_all(header)?;
    for t in tensors {
        out.write_source(t.data.as_ref(), progress)
            .map_err(|e| e.for_tensor(&t.info.name))?;
        out.pad_to(alignment)?;
    }
    Ok(())
}

/// One file, as gguf-py writes it. A model read from a split GGUF keeps
/// its metadata with `split.count` set to 0 ([`split::merged_metadata`]).
fn one_file(model: &Model, dest: &Path, opts: &WriteOptions, alignment: u64) -> Result<Box<dyn WritePlan>> {
    let merged = split::merged_metadata(&model.metadata);
    let layout = Layout {
        alignment,
        ggml_dims: false,
        pad_empty: false,
    };
    let header = header(merged.as_ref().unwrap_or(&model.metadata), &model.tensors, layout)?;
    let size = file_size(&header, &model.tensors, alignment);
    // The header holds every offset, so the file is written in one pass.
    let tensors = model.tensors.clone();
    Ok(OneFilePlan::boxed_sized(
        dest,
        opts,
        (model.data_bytes(), size),
        true,
        move |out, progress| write_body(out, &header, &tensors, alignment, progress),
    ))
}

/// The length of a file of `header` and `tensors`, each padded.
fn file_size(header: &[u8], tensors: &[Tensor], alignment: u64) -> u64 {
    tensors.iter().fold(header.len() as u64, |n, t| {
        let end = n.saturating_add(t.info.byte_len);
        end.saturating_add(padding(end, alignment))
    })
}

/// One shard of a split: its path, header and tensors.
struct Shard {
    path: PathBuf,
    header: Vec<u8>,
    tensors: Vec<Tensor>,
}

/// The shards of a split (or the one asked for), written as llama-gguf-split
/// writes them: gguf.cpp's header, tensors padded to 32 bytes.
struct SplitPlan {
    shards: Vec<Shard>,
    opts: WriteOptions,
}

fn split_plan(
    model: &Model,
    dest: &Path,
    opts: &WriteOptions,
    split: &Split,
    alignment: u64,
) -> Result<Box<dyn WritePlan>> {
    if alignment != SPLIT_ALIGNMENT {
        return Err(Error::unsupported(format!(
            "general.alignment is {alignment}; llama-gguf-split writes shards aligned to {SPLIT_ALIGNMENT} only"
        )));
    }
    let ranges = split.shards(&model.tensors)?;
    let n = ranges.len();
    let total = model.tensors.len();
    let metadata = |i: usize| split::shard_metadata(&model.metadata, i, n, total);
    let wanted: Vec<usize> = match split.only {
        None => (0..n).collect(),
        Some(k) if k < n => vec![k],
        Some(k) => {
            return Err(Error::invalid(format!(
                "--split-only {}: this split has {n} shard{}",
                k + 1,
                if n == 1 { "" } else { "s" }
            )))
        }
    };
    shards_plan(model, dest, opts, &ranges, &wanted, metadata, alignment)
}

/// `quantize --keep-split`: the input's shards, as llama-quantize writes
/// them (src/llama-quant.cpp, keep_split): `DEST-0000k-of-0000N.gguf` even
/// for one, the split keys after the rest in shard 0 and alone in the
/// others, and none when there is one shard.
fn kept_split_plan(
    model: &Model,
    dest: &Path,
    opts: &WriteOptions,
    counts: &[usize],
    alignment: u64,
) -> Result<Box<dyn WritePlan>> {
    if alignment != SPLIT_ALIGNMENT {
        return Err(Error::unsupported(format!(
            "general.alignment is {alignment}; --keep-split writes shards aligned to {SPLIT_ALIGNMENT} only"
        )));
    }
    let mut ranges = Vec::with_capacity(counts.len());
    let mut start = 0usize;
    for &c in counts {
        let end = start.saturating_add(c);
        ranges.push(start..end);
        start = end;
    }
    if start != model.tensors.len() || counts.contains(&0) {
        return Err(Error::invalid(format!(
            "--keep-split: the shards hold {start} tensors ({counts:?} each), the model {}; every shard must keep at least one",
            model.tensors.len()
        )));
    }
    let (n, total) = (counts.len(), model.tensors.len());
    let metadata = |i: usize| split::kept_shard_metadata(&model.metadata, i, n, total);
    let wanted: Vec<usize> = (0..n).collect();
    shards_plan(model, dest, opts, &ranges, &wanted, metadata, alignment)
}

/// The shards `wanted` of a split into `ranges`, each with the metadata
/// `metadata(i)` and gguf.cpp's header.
fn shards_plan(
    model: &Model,
    dest: &Path,
    opts: &WriteOptions,
    ranges: &[std::ops::Range<usize>],
    wanted: &[usize],
    metadata: impl Fn(usize) -> Result<Metadata>,
    alignment: u64,
) -> Result<Box<dyn WritePlan>> {
    let layout = Layout {
        alignment,
        ggml_dims: true,
        pad_empty: true,
    };
    let n = ranges.len();
    let mut shards = Vec::with_capacity(wanted.len());
    for &i in wanted {
        let tensors = model.tensors[ranges[i].clone()].to_vec();
        shards.push(Shard {
            path: split::shard_path(dest, i, n),
            header: header(&metadata(i)?, &tensors, layout)?,
            tensors,
        });
    }
    Ok(Box::new(SplitPlan {
        shards,
        opts: opts.clone(),
    }))
}

impl WritePlan for SplitPlan {
    fn outputs(&self) -> Vec<PathBuf> {
        self.shards.iter().map(|s| s.path.clone()).collect()
    }

    fn data_bytes(&self) -> u64 {
        self.shards
            .iter()
            .flat_map(|s| &s.tensors)
            .map(|t| t.info.byte_len)
            .fold(0, u64::saturating_add)
    }

    fn sizes(&self) -> Option<Vec<u64>> {
        Some(
            self.shards
                .iter()
                .map(|s| file_size(&s.header, &s.tensors, SPLIT_ALIGNMENT))
                .collect(),
        )
    }

    fn write(self: Box<Self>, progress: &dyn Progress) -> Result<()> {
        let mut files = Vec::with_capacity(self.shards.len());
        for shard in &self.shards {
            let mut out = OutputFile::create(&shard.path, &self.opts)?;
            write_body(&mut out, &shard.header, &shard.tensors, SPLIT_ALIGNMENT, progress)?;
            out.finish()?;
            files.push(out);
        }
        commit_all(files)
    }
}
