//! Reading GGUF v2/v3: header, typed metadata, tensor infos; tensor data
//! stays in the file and is read lazily.

use crate::split::{SPLIT_COUNT, SPLIT_NO, SPLIT_TENSORS_COUNT};
use crate::types::{dtype_from_ggml, min_value_size, value_type_from_id};
use crate::{DEFAULT_ALIGNMENT, MAGIC, MAX_DIMS_READ};
use modelconv_ir::{
    numel, padding, Array, Error, FileRange, Location, Metadata, Model, Result, SharedFile, Strings, Tensor,
    TensorInfo, Value, ValueType,
};
use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;

/// Nesting depth of arrays of arrays accepted.
const MAX_ARRAY_DEPTH: u32 = 8;

/// A bounds-checked little-endian cursor over the mapped header.
struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
    path: &'a Path,
}

impl<'a> Cursor<'a> {
    fn err(&self, msg: impl std::fmt::Display) -> Error {
        Error::malformed(self.path, format!("at byte {}: {msg}", self.pos))
    }
    /// The file ends before what the header declares.
    fn short(&self, msg: impl std::fmt::Display) -> Error {
        Error::truncated(self.path, self.pos as u64, format!("at byte {}: {msg}", self.pos))
    }
    fn remaining(&self) -> u64 {
        (self.buf.len() - self.pos) as u64
    }
    fn take(&mut self, n: u64, what: &str) -> Result<&'a [u8]> {
        if n > self.remaining() {
            return Err(self.short(format!(
                "{what} needs {n} bytes but only {} remain in the file",
                self.remaining()
            )));
        }
        let s = &self.buf[self.pos..self.pos + n as usize];
        self.pos += n as usize;
        Ok(s)
    }
    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N]> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N as u64, what)?);
        Ok(a)
    }
    fn u32(&mut self, what: &str) -> Result<u32> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }
    fn u64(&mut self, what: &str) -> Result<u64> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }
    fn string(&mut self, what: &str) -> Result<String> {
        let start = self.pos;
        let n = self.u64(what)?;
        let bytes = self.take(n, what)?;
        String::from_utf8(bytes.to_vec())
            .map_err(|e| Error::malformed(self.path, format!("at byte {start}: {what} is not valid UTF-8 ({e})")))
    }
    /// `n` elements of type `et` (already checked to fit in what remains),
    /// stored by type: a u8 array costs one byte an element.
    fn array_of(&mut self, et: ValueType, n: u64, depth: u32, what: &str) -> Result<Array> {
        let n = usize::try_from(n).map_err(|_| self.err(format!("{what}: array too long")))?;
        macro_rules! fixed {
            ($variant:ident, $t:ty) => {{
                const SIZE: usize = std::mem::size_of::<$t>();
                let mut v = Vec::with_capacity(n);
                for i in 0..n {
                    if i % (1 << 20) == 0 {
                        modelconv_ir::check_interrupt()?;
                    }
                    v.push(<$t>::from_le_bytes(self.array::<SIZE>(what)?));
                }
                Array::$variant(v)
            }};
        }
        Ok(match et {
            ValueType::U8 => fixed!(U8, u8),
            ValueType::I8 => fixed!(I8, i8),
            ValueType::U16 => fixed!(U16, u16),
            ValueType::I16 => fixed!(I16, i16),
            ValueType::U32 => fixed!(U32, u32),
            ValueType::I32 => fixed!(I32, i32),
            ValueType::F32 => fixed!(F32, f32),
            ValueType::U64 => fixed!(U64, u64),
            ValueType::I64 => fixed!(I64, i64),
            ValueType::F64 => fixed!(F64, f64),
            ValueType::Bool => {
                let mut v = Vec::with_capacity(n);
                for _ in 0..n {
                    match self.value(ValueType::Bool, depth + 1, what)? {
                        Value::Bool(b) => v.push(b),
                        _ => return Err(self.err(format!("{what}: bad bool"))),
                    }
                }
                Array::Bool(v)
            }
            ValueType::String => {
                let mut v = Strings::default();
                for i in 0..n {
                    if i % (1 << 20) == 0 {
                        modelconv_ir::check_interrupt()?;
                    }
                    v.push(&self.string(what)?);
                }
                Array::String(v)
            }
            ValueType::Array => {
                let mut v = Vec::new();
                for _ in 0..n {
                    match self.value(ValueType::Array, depth + 1, what)? {
                        Value::Array(a) => v.push(a),
                        _ => return Err(self.err(format!("{what}: bad nested array"))),
                    }
                }
                Array::Array(v)
            }
        })
    }

    fn value(&mut self, t: ValueType, depth: u32, what: &str) -> Result<Value> {
        Ok(match t {
            ValueType::U8 => Value::U8(self.array::<1>(what)?[0]),
            ValueType::I8 => Value::I8(self.array::<1>(what)?[0] as i8),
            ValueType::U16 => Value::U16(u16::from_le_bytes(self.array(what)?)),
            ValueType::I16 => Value::I16(i16::from_le_bytes(self.array(what)?)),
            ValueType::U32 => Value::U32(self.u32(what)?),
            ValueType::I32 => Value::I32(i32::from_le_bytes(self.array(what)?)),
            ValueType::F32 => Value::F32(f32::from_le_bytes(self.array(what)?)),
            ValueType::U64 => Value::U64(self.u64(what)?),
            ValueType::I64 => Value::I64(i64::from_le_bytes(self.array(what)?)),
            ValueType::F64 => Value::F64(f64::from_le_bytes(self.array(what)?)),
            ValueType::Bool => match self.array::<1>(what)?[0] {
                0 => Value::Bool(false),
                1 => Value::Bool(true),
                b => return Err(self.err(format!("{what}: bool value {b}, expected 0 or 1"))),
            },
            ValueType::String => Value::String(self.string(what)?),
            ValueType::Array => {
                if depth >= MAX_ARRAY_DEPTH {
                    return Err(Error::limit(
                        self.path,
                        format!(
                            "at byte {}: {what}: arrays nested deeper than {MAX_ARRAY_DEPTH}",
                            self.pos
                        ),
                    ));
                }
                let id = self.u32(what)?;
                let et = value_type_from_id(id)
                    .ok_or_else(|| self.err(format!("{what}: unknown array element type {id}")))?;
                let n = self.u64(what)?;
                let need = n.checked_mul(min_value_size(et));
                if need.is_none_or(|b| b > self.remaining()) {
                    return Err(self.short(format!(
                        "{what}: array of {n} elements does not fit in the {} bytes that remain",
                        self.remaining()
                    )));
                }
                Value::Array(self.array_of(et, n, depth, what)?)
            }
        })
    }
}

/// What the header says, before tensors are attached to the file.
pub struct Parsed {
    pub version: u32,
    pub metadata: Metadata,
    pub alignment: u64,
    pub data_start: u64,
    /// Tensor info and offset relative to the data section.
    pub tensors: Vec<(TensorInfo, u64)>,
    /// Where the tensor infos lie in the file (after the metadata).
    pub infos: std::ops::Range<usize>,
}

/// Parses a whole GGUF header from `buf` (the mapped file).
pub fn parse(buf: &[u8], path: &Path) -> Result<Parsed> {
    let mut c = Cursor { buf, pos: 0, path };
    let (version, n_tensors, n_kv) = preamble(&mut c)?;
    let metadata = read_metadata(&mut c, n_kv)?;
    let alignment = alignment_of(&metadata, path)?;
    let infos_start = c.pos;
    let mut tensors = Vec::with_capacity(n_tensors as usize);
    let mut names = HashSet::new();
    for i in 0..n_tensors {
        let (info, offset) = tensor_info(&mut c, i, alignment)?;
        if !names.insert(info.name.clone()) {
            return Err(c.err(format!("tensor name '{}' appears twice", info.name)));
        }
        tensors.push((info, offset));
    }
    let header_end = c.pos as u64;
    let data_start = header_end + padding(header_end, alignment);
    check_data_spans(&tensors, data_start, buf.len() as u64, path)?;
    Ok(Parsed {
        version,
        metadata,
        alignment,
        data_start,
        tensors,
        infos: infos_start..c.pos,
    })
}

/// The metadata of a GGUF header in `buf`, read as [`parse`] reads it
/// (the tensor infos after it are not read).
pub fn metadata_of(buf: &[u8], path: &Path) -> Result<Metadata> {
    let mut c = Cursor { buf, pos: 0, path };
    let (_, _, n_kv) = preamble(&mut c)?;
    read_metadata(&mut c, n_kv)
}

/// Magic, version (2 or 3, little-endian), tensor and metadata counts,
/// each count checked against the limit and the bytes left before
/// anything is allocated for it.
fn preamble(c: &mut Cursor) -> Result<(u32, u64, u64)> {
    let (buf, path) = (c.buf, c.path);
    let magic = c.take(4, "magic").map_err(|_| {
        Error::truncated(
            path,
            0,
            format!("file is {} bytes, too short for a GGUF header", buf.len()),
        )
    })?;
    if magic != MAGIC {
        return Err(Error::malformed(path, format!("magic {magic:02x?} is not \"GGUF\"")));
    }
    let version = c.u32("version")?;
    match version {
        2 | 3 => {}
        1 => return Err(c.err("GGUF version 1 is obsolete and not supported (use v2 or v3)")),
        v if v.swap_bytes() <= 3 => return Err(c.err("big-endian GGUF files are not supported")),
        v => return Err(c.err(format!("GGUF version {v}, expected 2 or 3"))),
    }
    let n_tensors = c.u64("tensor count")?;
    let n_kv = c.u64("metadata count")?;
    if n_kv > modelconv_ir::MAX_METADATA_ENTRIES {
        return Err(Error::limit(
            path,
            format!(
                "{n_kv} metadata entries, over the limit of {}",
                modelconv_ir::MAX_METADATA_ENTRIES
            ),
        ));
    }
    // A key/value pair takes at least 13 bytes, a tensor info at least 24.
    if n_kv.checked_mul(13).is_none_or(|b| b > c.remaining()) {
        return Err(c.short(format!("{n_kv} metadata entries cannot fit in the file")));
    }
    if n_tensors.checked_mul(24).is_none_or(|b| b > c.remaining()) {
        return Err(c.short(format!("{n_tensors} tensor infos cannot fit in the file")));
    }
    Ok((version, n_tensors, n_kv))
}

/// The key/value section: known value types, each key once.
fn read_metadata(c: &mut Cursor, n_kv: u64) -> Result<Metadata> {
    let path = c.path;
    let mut metadata = Metadata::new();
    for _ in 0..n_kv {
        let at = c.pos;
        let key = c.string("metadata key")?;
        let id = c.u32("metadata value type")?;
        let t = value_type_from_id(id).ok_or_else(|| c.err(format!("key '{key}': unknown value type {id}")))?;
        let v = c.value(t, 0, &format!("value of '{key}'"))?;
        if metadata.contains(&key) {
            return Err(Error::malformed(
                path,
                format!("at byte {at}: metadata key '{key}' appears twice"),
            ));
        }
        metadata.set(key, v);
    }
    Ok(metadata)
}

/// `general.alignment` (a power of two as u32), or GGUF's default 32.
fn alignment_of(metadata: &Metadata, path: &Path) -> Result<u64> {
    Ok(match metadata.get("general.alignment") {
        None => DEFAULT_ALIGNMENT,
        Some(Value::U32(a)) if *a != 0 && a.is_power_of_two() => u64::from(*a),
        Some(v) => {
            return Err(Error::malformed(
                path,
                format!("general.alignment is {v:?}, expected a power of two as u32"),
            ))
        }
    })
}

/// One tensor info: name, dimensions (at most MAX_DIMS_READ, innermost
/// first in the file), a known ggml type whose blocks divide the rows,
/// and an aligned data offset.
fn tensor_info(c: &mut Cursor, i: u64, alignment: u64) -> Result<(TensorInfo, u64)> {
    let path = c.path;
    let name = c.string(&format!("name of tensor {i}"))?;
    let n_dims = c.u32("dimension count")?;
    if n_dims as usize > MAX_DIMS_READ {
        return Err(Error::limit(
            path,
            format!(
                "at byte {}: tensor '{name}' has {n_dims} dimensions, at most {MAX_DIMS_READ} are supported",
                c.pos
            ),
        ));
    }
    let mut ne = Vec::with_capacity(n_dims as usize);
    for _ in 0..n_dims {
        ne.push(c.u64("dimension")?);
    }
    let id = c.u32("tensor type")?;
    let dtype = dtype_from_ggml(id).ok_or_else(|| c.err(format!("tensor '{name}' has unknown ggml type {id}")))?;
    let offset = c.u64("tensor offset")?;
    if ne.first().is_some_and(|&n0| n0 % dtype.block_size() != 0) {
        return Err(c.err(format!(
            "tensor '{name}': row length {} is not a multiple of the {dtype} block size {}",
            ne[0],
            dtype.block_size()
        )));
    }
    if offset % alignment != 0 {
        return Err(c.err(format!(
            "tensor '{name}': offset {offset} is not a multiple of the alignment {alignment}"
        )));
    }
    numel(&ne).map_err(|e| c.err(format!("tensor '{name}': {e}")))?;
    // GGUF stores the innermost dimension first.
    ne.reverse();
    let info = TensorInfo::new(name, dtype, ne).map_err(|e| e.in_file(path))?;
    Ok((info, offset))
}

/// Every tensor's bytes lie inside the data section, and no two overlap.
fn check_data_spans(tensors: &[(TensorInfo, u64)], data_start: u64, file_len: u64, path: &Path) -> Result<()> {
    let data_len = file_len.saturating_sub(data_start);
    let mut spans: Vec<(u64, u64, &str)> = Vec::with_capacity(tensors.len());
    for (info, offset) in tensors {
        let end = offset.checked_add(info.byte_len);
        if end.is_none_or(|e| e > data_len) {
            return Err(Error::truncated(
                path,
                data_start.saturating_add(*offset),
                format!(
                    "tensor '{}': {} bytes at data offset {offset} run past the end of the file (data section is {data_len} bytes)",
                    info.name, info.byte_len
                ),
            ));
        }
        spans.push((*offset, offset + info.byte_len, &info.name));
    }
    spans.sort();
    for w in spans.windows(2) {
        if w[1].0 < w[0].1 {
            return Err(Error::malformed(
                path,
                format!("tensors '{}' and '{}' overlap in the data section", w[0].2, w[1].2),
            ));
        }
    }
    Ok(())
}

/// The files of a split model as it was read, for `inspect`.
#[derive(Debug, Clone)]
pub struct SplitLayout {
    /// Each shard: its path, tensor count and file length.
    pub shards: Vec<(std::path::PathBuf, usize, u64)>,
}

/// Opens a GGUF model: a file; any file of a split model
/// (`NAME-0000k-of-0000n.gguf`, with `split.count` = n), with the others
/// beside it, as one model; or a folder holding one model (one file, or one
/// split set).
pub fn open(path: &Path) -> Result<Model> {
    if path.is_dir() {
        let picked = modelconv_ir::folder::pick(path, "gguf", &[])?
            .ok_or_else(|| Error::malformed(path, "holds no .gguf file"))?;
        let mut model = join(path, &picked.files)?;
        model.notes.extend(picked.note());
        return Ok(model);
    }
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
    if let Some((stem, k, n)) = modelconv_ir::folder::shard_parts(name, "gguf").filter(|s| s.2 > 1) {
        let named = open_file(path)?;
        if named.metadata.get(SPLIT_COUNT).and_then(Value::as_u64) == Some(u64::from(n)) {
            let dir = path.parent().unwrap_or(Path::new(""));
            let files: Vec<_> = (1..=n)
                .map(|i| dir.join(format!("{stem}-{i:05}-of-{n:05}.gguf")))
                .collect();
            if let Some(missing) = files.iter().find(|f| !f.exists()) {
                return Err(Error::malformed(
                    path,
                    format!(
                        "is shard {k} of {n} of a split model, and {} is missing (all {n} are read as one model)",
                        missing.display()
                    ),
                ));
            }
            return join(path, &files);
        }
        return Ok(named);
    }
    open_file(path)
}

/// The files of a split model, in order, as one model: the first file's
/// metadata as it is (the split keys too: a writer of one file sets
/// `split.count` to 0 as llama-gguf-split --merge does, a quantization drops
/// them as llama-quantize does), every file's tensors.
fn join(path: &Path, files: &[std::path::PathBuf]) -> Result<Model> {
    let n = files.len();
    let mut model = Model {
        format: crate::NAME,
        path: path.to_path_buf(),
        declared_order: true,
        ..Default::default()
    };
    let mut layout = SplitLayout { shards: Vec::new() };
    for (i, f) in files.iter().enumerate() {
        modelconv_ir::check_interrupt()?;
        let m = open_file(f)?;
        let no = m.metadata.get(SPLIT_NO).and_then(Value::as_u64);
        let count = m.metadata.get(SPLIT_COUNT).and_then(Value::as_u64);
        if n > 1 && (no != Some(i as u64) || count != Some(n as u64)) {
            return Err(Error::malformed(
                f,
                format!(
                    "is file {} of {n} of a split model, but its split.no/split.count say {}/{}",
                    i + 1,
                    no.map_or("none".into(), |v| v.to_string()),
                    count.map_or("none".into(), |v| v.to_string())
                ),
            ));
        }
        let len = std::fs::metadata(f).map_err(|e| Error::io(f, e))?.len();
        layout.shards.push((f.clone(), m.tensors.len(), len));
        if i == 0 {
            model.metadata = m.metadata;
        }
        model.tensors.extend(m.tensors);
    }
    if n > 1 {
        let declared = model.metadata.get(SPLIT_TENSORS_COUNT).and_then(Value::as_u64);
        if declared.is_some_and(|d| d != model.tensors.len() as u64) {
            return Err(Error::malformed(
                path,
                format!(
                    "split.tensors.count says {} tensors, the {n} files hold {}",
                    declared.unwrap_or(0),
                    model.tensors.len()
                ),
            ));
        }
        model.notes.push(format!("a split GGUF: {n} files read as one model"));
        model.input_shards = layout.shards.iter().map(|s| s.1).collect();
        model.source = Some(std::sync::Arc::new(layout));
    }
    model.check_unique_names().map_err(|e| e.in_file(path))?;
    Ok(model)
}

/// Opens one GGUF file; tensors are lazy ranges of it.
fn open_file(path: &Path) -> Result<Model> {
    let file = SharedFile::open(path)?;
    if file.len < 24 {
        return Err(Error::truncated(
            path,
            0,
            format!("file is {} bytes, too short for a GGUF header (24 bytes)", file.len),
        ));
    }
    // SAFETY: the map is read-only and dropped before this function returns;
    // a file changed underneath us can give wrong values but every read is
    // bounds-checked against the map's length.
    let map = unsafe { memmap2::Mmap::map(&file.file) }.map_err(|e| Error::io(path, e))?;
    let parsed = parse(&map, path)?;
    drop(map);
    let tensors = parsed
        .tensors
        .into_iter()
        .map(|(info, offset)| {
            let abs = parsed.data_start + offset;
            let range = FileRange {
                file: file.clone(),
                offset: abs,
                len: info.byte_len,
            };
            let mut t = Tensor::new(info, Arc::new(range)).map_err(|e| e.in_file(path))?;
            t.location = Some(Location {
                file: path.to_path_buf(),
                offset: abs,
            });
            Ok(t)
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Model {
        format: crate::NAME,
        path: path.to_path_buf(),
        metadata: parsed.metadata,
        tensors,
        declared_order: true,
        ..Default::default()
    })
}
