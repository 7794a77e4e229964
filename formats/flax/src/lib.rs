//! # modelconv-flax
//!
//! Flax's msgpack checkpoints, as `flax.serialization.msgpack_serialize`
//! writes them: nested string-keyed maps (tensor names are the dotted key
//! paths), arrays as ext type 1 (`[shape, dtype name, C-order bytes]`),
//! numpy scalars as ext 3 (0-d tensors), Python complex numbers as ext 2,
//! and arrays over 2^30 bytes split into `__msgpack_chunked_array__` maps.
//! Arrays are read as ranges of the file (chunks joined by a concat view);
//! other leaves (ints, floats, strings, booleans) become typed metadata by
//! dotted path. The writer produces the bytes flax writes for the same dict
//! of arrays, so `msgpack_restore` reads ours.

mod msgpack;

use modelconv_ir::view::{Concat, SubRange};
use modelconv_ir::{
    Array, DType, DataSource, Error, FileRange, Format, Location, Metadata, Model, OneFilePlan, OpenOptions, Probe,
    Result, SharedFile, Tensor, TensorInfo, Value, WriteOptions, WritePlan, Writer,
};
use msgpack::{enc, Msg, Reader};
use std::path::Path;
use std::sync::Arc;

pub const NAME: &str = "flax";

/// Arrays larger than this many bytes are chunked (flax's MAX_CHUNK_SIZE).
pub const MAX_CHUNK_SIZE: u64 = 1 << 30;

const CHUNKED: &str = "__msgpack_chunked_array__";

/// Metadata naming the 0-d tensors that were numpy scalars (ext 3), so
/// that they are written back as such.
pub const SCALARS_KEY: &str = "flax.numpy_scalars";

pub struct Flax;
pub static FORMAT: Flax = Flax;

impl Format for Flax {
    fn name(&self) -> &'static str {
        NAME
    }
    fn description(&self) -> &'static str {
        "Flax msgpack (flax.serialization); read + write"
    }
    fn extensions(&self) -> &'static [&'static str] {
        &["msgpack", "flax"]
    }
    fn score(&self, probe: &Probe) -> u8 {
        // A non-empty map whose first key is a string (a pickle's 0x80
        // protocol byte would be an empty fixmap).
        let map = matches!(probe.head.first(), Some(0x81..=0x8f))
            && matches!(probe.head.get(1), Some(0xa0..=0xbf | 0xd9))
            || matches!(probe.head.first(), Some(0xde | 0xdf));
        // An ndarray ext (type 1) holding a 3-item array: [shape, dtype, bytes].
        let ndarray = probe.head.windows(2).any(|w| w == [0x01, 0x93]);
        match (map, ndarray) {
            (true, true) => 70,
            (true, false) if probe.path.extension().is_some_and(|e| e == "msgpack") => 40,
            _ => 0,
        }
    }
    fn open(&self, path: &Path, _opts: &OpenOptions) -> Result<Model> {
        open(path)
    }
    fn writer(&self) -> Option<&dyn Writer> {
        Some(&FlaxWriter)
    }
}

/// The IR type of a numpy dtype name as flax stores it.
fn dtype_of(name: &str) -> Option<DType> {
    modelconv_npy::dtype_from_name(name)
}

fn dtype_name(d: DType) -> Option<&'static str> {
    modelconv_npy::name_of(d)
}

struct Ctx<'a> {
    path: &'a Path,
    file: Arc<SharedFile>,
    bytes: &'a [u8],
    model: Model,
    scalars: Vec<String>,
}

impl Ctx<'_> {
    fn bad(&self, name: &str, msg: impl std::fmt::Display) -> Error {
        Error::malformed(self.path, format!("'{name}': {msg}"))
    }

    fn decode(&self, at: usize, end: usize) -> Result<Msg> {
        let mut r = Reader::new(&self.bytes[..end], at);
        let v = r.value().map_err(|e| decode_error(self.path, e))?;
        if r.pos != end {
            return Err(Error::malformed(
                self.path,
                format!("byte {at}: the value ends at byte {}, its container at {end}", r.pos),
            ));
        }
        Ok(v)
    }

    /// An ndarray ext payload: its type, shape and the range of its bytes.
    fn ndarray(&self, name: &str, offset: usize, len: usize) -> Result<(DType, Vec<u64>, u64, u64)> {
        let Msg::Array(items) = self.decode(offset, offset + len)? else {
            return Err(self.bad(name, "an ndarray ext that is not [shape, dtype, bytes]"));
        };
        let [Msg::Array(dims), Msg::Str(dt), Msg::Bin { offset: at, len: n }] = items.as_slice() else {
            return Err(self.bad(name, "an ndarray ext that is not [shape, dtype, bytes]"));
        };
        let shape = dims
            .iter()
            .map(|d| match d {
                Msg::Int(v) => u64::try_from(*v).map_err(|_| self.bad(name, format!("dimension {v}"))),
                other => Err(self.bad(name, format!("dimension {other:?}"))),
            })
            .collect::<Result<Vec<u64>>>()?;
        let dtype = dtype_of(dt).ok_or_else(|| self.bad(name, format!("dtype '{dt}' is not supported")))?;
        Ok((dtype, shape, *at as u64, *n as u64))
    }

    fn tensor(&self, name: &str, dtype: DType, shape: Vec<u64>, data: Arc<dyn DataSource>) -> Result<Tensor> {
        let info = TensorInfo::new(name, dtype, shape).map_err(|e| e.in_file(self.path))?;
        if info.byte_len != data.len() {
            return Err(self.bad(
                name,
                format!(
                    "shape {:?} of {dtype} needs {} bytes, the array holds {}",
                    info.shape,
                    info.byte_len,
                    data.len()
                ),
            ));
        }
        Tensor::new(info, data).map_err(|e| e.in_file(self.path))
    }

    fn range(&self, offset: u64, len: u64) -> Arc<dyn DataSource> {
        Arc::new(FileRange {
            file: self.file.clone(),
            offset,
            len,
        })
    }

    fn leaf(&mut self, name: String, v: &Msg) -> Result<()> {
        match v {
            Msg::Map(items) if is_chunked(items) => self.chunked(&name, items),
            Msg::Map(items) => self.walk(&name, items),
            Msg::Array(items) => {
                let indexed: Vec<(Msg, Msg)> = items
                    .iter()
                    .enumerate()
                    .map(|(i, v)| (Msg::Str(i.to_string()), v.clone()))
                    .collect();
                self.walk(&name, &indexed)
            }
            Msg::Ext {
                code: code @ (1 | 3),
                offset,
                len,
            } => {
                let (dtype, shape, at, n) = self.ndarray(&name, *offset, *len)?;
                if *code == 3 {
                    self.scalars.push(name.clone());
                }
                let mut t = self.tensor(&name, dtype, shape, self.range(at, n))?;
                t.location = Some(Location {
                    file: self.path.to_path_buf(),
                    offset: at,
                });
                self.model.tensors.push(t);
                Ok(())
            }
            Msg::Ext { code: 2, offset, len } => {
                match self.decode(*offset, offset + len)? {
                    Msg::Array(parts) if parts.len() == 2 => {
                        let f = |m: &Msg| match m {
                            Msg::Float(x) => *x,
                            Msg::Int(i) => *i as f64,
                            _ => f64::NAN,
                        };
                        let v = Value::Array(Array::F64(vec![f(&parts[0]), f(&parts[1])]));
                        self.model.metadata.set(name, v);
                    }
                    _ => return Err(self.bad(&name, "a complex ext that is not [real, imag]")),
                }
                Ok(())
            }
            Msg::Ext { code, .. } => Err(self.bad(&name, format!("ext type {code} is not one flax writes"))),
            Msg::Int(i) => {
                let v = i64::try_from(*i)
                    .map(Value::I64)
                    .or_else(|_| u64::try_from(*i).map(Value::U64));
                self.model.metadata.set(name, v.unwrap_or(Value::String(i.to_string())));
                Ok(())
            }
            Msg::Float(x) => {
                self.model.metadata.set(name, Value::F64(*x));
                Ok(())
            }
            Msg::Str(s) => {
                self.model.metadata.set(name, Value::String(s.clone()));
                Ok(())
            }
            Msg::Bool(b) => {
                self.model.metadata.set(name, Value::Bool(*b));
                Ok(())
            }
            Msg::Nil | Msg::Bin { .. } => {
                self.model.notes.push(format!("'{name}': a {} leaf, left out", kind(v)));
                Ok(())
            }
        }
    }

    fn walk(&mut self, prefix: &str, items: &[(Msg, Msg)]) -> Result<()> {
        for (k, v) in items {
            modelconv_ir::check_interrupt()?;
            let key = match k {
                Msg::Str(s) => s.clone(),
                Msg::Int(i) => i.to_string(),
                other => return Err(self.bad(prefix, format!("a {} key", kind(other)))),
            };
            let name = if prefix.is_empty() {
                key
            } else {
                format!("{prefix}.{key}")
            };
            self.leaf(name, v)?;
        }
        Ok(())
    }

    /// `{"__msgpack_chunked_array__": true, "shape": {"0": d0, …}, "chunks": {"0": ext, …}}`.
    fn chunked(&mut self, name: &str, items: &[(Msg, Msg)]) -> Result<()> {
        let get = |k: &str| items.iter().find(|(key, _)| *key == Msg::Str(k.into())).map(|(_, v)| v);
        let indexed = |v: Option<&Msg>, what: &str| -> Result<Vec<Msg>> {
            let Some(Msg::Map(m)) = v else {
                return Err(self.bad(name, format!("chunked array without its '{what}' map")));
            };
            (0..m.len())
                .map(|i| {
                    m.iter()
                        .find(|(k, _)| *k == Msg::Str(i.to_string()))
                        .map(|(_, v)| v.clone())
                        .ok_or_else(|| self.bad(name, format!("chunked array's '{what}' has no '{i}'")))
                })
                .collect()
        };
        let shape = indexed(get("shape"), "shape")?
            .iter()
            .map(|d| match d {
                Msg::Int(v) => u64::try_from(*v).map_err(|_| self.bad(name, format!("dimension {v}"))),
                other => Err(self.bad(name, format!("dimension {other:?}"))),
            })
            .collect::<Result<Vec<u64>>>()?;
        let mut parts = Vec::new();
        let mut dtype = None;
        for c in indexed(get("chunks"), "chunks")? {
            let Msg::Ext { code: 1, offset, len } = c else {
                return Err(self.bad(name, "a chunk that is not an ndarray"));
            };
            let (d, s, at, n) = self.ndarray(name, offset, len)?;
            if s.len() != 1 || dtype.is_some_and(|x| x != d) {
                return Err(self.bad(name, "chunks must be 1-D arrays of one dtype"));
            }
            dtype = Some(d);
            parts.push((self.range(at, n), s));
        }
        let dtype = dtype.ok_or_else(|| self.bad(name, "a chunked array without chunks"))?;
        let (joined, _) = Concat::new(parts, dtype.type_size(), 0)?;
        let t = self.tensor(name, dtype, shape, Arc::new(joined))?;
        self.model.tensors.push(t);
        Ok(())
    }
}

fn kind(m: &Msg) -> &'static str {
    match m {
        Msg::Nil => "nil",
        Msg::Bool(_) => "bool",
        Msg::Int(_) => "int",
        Msg::Float(_) => "float",
        Msg::Str(_) => "string",
        Msg::Bin { .. } => "bytes",
        Msg::Array(_) => "array",
        Msg::Map(_) => "map",
        Msg::Ext { .. } => "ext",
    }
}

fn is_chunked(items: &[(Msg, Msg)]) -> bool {
    items
        .iter()
        .any(|(k, v)| *k == Msg::Str(CHUNKED.into()) && *v == Msg::Bool(true))
}

fn decode_error(path: &Path, e: msgpack::DecodeError) -> Error {
    if e.truncated {
        Error::truncated(path, e.offset as u64, format!("msgpack: {}", e.msg))
    } else {
        Error::malformed(path, format!("msgpack byte {}: {}", e.offset, e.msg))
    }
}

/// Opens a Flax msgpack file; arrays are ranges of it.
pub fn open(path: &Path) -> Result<Model> {
    let file = SharedFile::open(path)?;
    let bytes = file.mapped()?;
    if bytes.is_empty() {
        return Err(Error::truncated(path, 0, "an empty file is not a msgpack document"));
    }
    let mut r = Reader::new(bytes, 0);
    let root = r.value().map_err(|e| decode_error(path, e))?;
    if r.pos != bytes.len() {
        return Err(Error::malformed(
            path,
            format!(
                "{} bytes follow the msgpack document (ending at byte {})",
                bytes.len() - r.pos,
                r.pos
            ),
        ));
    }
    let Msg::Map(items) = root else {
        return Err(Error::malformed(
            path,
            format!("the document is a {}, not a map of arrays", kind(&root)),
        ));
    };
    let mut ctx = Ctx {
        path,
        file: file.clone(),
        bytes,
        model: Model {
            format: NAME,
            path: path.to_path_buf(),
            metadata: Metadata::new(),
            declared_order: true,
            ..Default::default()
        },
        scalars: Vec::new(),
    };
    if is_chunked(&items) {
        ctx.chunked("", &items)?;
    } else {
        ctx.walk("", &items)?;
    }
    if !ctx.scalars.is_empty() {
        let names = ctx.scalars.iter().collect();
        ctx.model.metadata.set(SCALARS_KEY, Value::Array(Array::String(names)));
    }
    ctx.model.check_unique_names().map_err(|e| e.in_file(path))?;
    Ok(ctx.model)
}

struct FlaxWriter;

/// The dict of arrays, nested by dotted names, in first-seen order.
enum Node {
    Leaf(usize),
    Map(Vec<(String, Node)>),
}

fn insert(map: &mut Vec<(String, Node)>, parts: &[&str], index: usize, name: &str) -> Result<()> {
    let (first, rest) = parts
        .split_first()
        .ok_or_else(|| Error::invalid(format!("tensor '{name}': an empty name")))?;
    let pos = map.iter().position(|(k, _)| k == first);
    match (rest.is_empty(), pos) {
        (true, None) => map.push((first.to_string(), Node::Leaf(index))),
        (false, None) => {
            let mut sub = Vec::new();
            insert(&mut sub, rest, index, name)?;
            map.push((first.to_string(), Node::Map(sub)));
        }
        (false, Some(i)) => match &mut map[i].1 {
            Node::Map(sub) => insert(sub, rest, index, name)?,
            Node::Leaf(_) => {
                return Err(Error::invalid(format!(
                    "tensor '{name}': '{first}' is both an array and a group in the nested dict"
                )))
            }
        },
        (true, Some(_)) => {
            return Err(Error::invalid(format!(
                "tensor '{name}': '{first}' is both an array and a group in the nested dict"
            )))
        }
    }
    Ok(())
}

/// What the writer emits: bytes it makes, or a range of a tensor's data.
enum Piece {
    Bytes(Vec<u8>),
    Data(Arc<dyn DataSource>),
}

/// The ndarray ext (`code` 1, or 3 for a numpy scalar) of `n` data bytes:
/// its headers (the data follows).
fn ndarray_head(code: i8, shape: &[u64], dtype: &str, n: u64) -> Vec<u8> {
    let mut inner = Vec::new();
    enc::array_header(&mut inner, 3);
    enc::array_header(&mut inner, shape.len());
    for d in shape {
        enc::uint(&mut inner, *d);
    }
    enc::str(&mut inner, dtype);
    enc::bin_header(&mut inner, n);
    let mut out = Vec::new();
    enc::ext_header(&mut out, code, inner.len() as u64 + n);
    out.extend_from_slice(&inner);
    out
}

/// The pieces of one map of the tree; arrays over `max_chunk` bytes chunked.
fn emit(
    node: &[(String, Node)],
    tensors: &[Tensor],
    scalars: &[&str],
    max_chunk: u64,
    out: &mut Vec<Piece>,
) -> Result<()> {
    let mut head = Vec::new();
    enc::map_header(&mut head, node.len());
    push_bytes(out, head);
    for (k, v) in node {
        let mut key = Vec::new();
        enc::str(&mut key, k);
        push_bytes(out, key);
        match v {
            Node::Map(sub) => emit(sub, tensors, scalars, max_chunk, out)?,
            Node::Leaf(i) => {
                let t = &tensors[*i];
                let dt = dtype_name(t.info.dtype).ok_or_else(|| Error::invalid(format!("{}", t.info.dtype)))?;
                if t.info.byte_len > max_chunk {
                    chunked(t, dt, max_chunk, out)?;
                } else {
                    let scalar = t.info.shape.is_empty() && scalars.contains(&t.info.name.as_str());
                    let code = if scalar { 3 } else { 1 };
                    push_bytes(out, ndarray_head(code, &t.info.shape, dt, t.info.byte_len));
                    out.push(Piece::Data(t.data.clone()));
                }
            }
        }
    }
    Ok(())
}

/// flax's `_chunk`: the flattened array in chunks of `max_chunk` (2^30)
/// bytes' worth of elements.
fn chunked(t: &Tensor, dt: &str, max_chunk: u64, out: &mut Vec<Piece>) -> Result<()> {
    let es = t.info.dtype.type_size();
    let per = (max_chunk / es).max(1);
    let numel = t.info.numel();
    let mut h = Vec::new();
    enc::map_header(&mut h, 3);
    enc::str(&mut h, CHUNKED);
    h.push(0xc3);
    enc::str(&mut h, "shape");
    enc::map_header(&mut h, t.info.shape.len());
    for (i, d) in t.info.shape.iter().enumerate() {
        enc::str(&mut h, &i.to_string());
        enc::uint(&mut h, *d);
    }
    enc::str(&mut h, "chunks");
    enc::map_header(&mut h, numel.div_ceil(per) as usize);
    push_bytes(out, h);
    let mut start = 0u64;
    let mut i = 0usize;
    while start < numel {
        let n = per.min(numel - start);
        let mut k = Vec::new();
        enc::str(&mut k, &i.to_string());
        k.extend_from_slice(&ndarray_head(1, &[n], dt, n * es));
        push_bytes(out, k);
        out.push(Piece::Data(Arc::new(SubRange::new(
            t.data.clone(),
            start * es,
            n * es,
        )?)));
        start += n;
        i += 1;
    }
    Ok(())
}

fn push_bytes(out: &mut Vec<Piece>, b: Vec<u8>) {
    if let Some(Piece::Bytes(last)) = out.last_mut() {
        last.extend_from_slice(&b);
    } else {
        out.push(Piece::Bytes(b));
    }
}

impl Writer for FlaxWriter {
    fn plan(&self, model: &Model, dest: &Path, opts: &WriteOptions) -> Result<Box<dyn WritePlan>> {
        if opts.max_shard_size.is_some() {
            return Err(Error::unsupported(
                "--max-shard-size is not supported for Flax msgpack output",
            ));
        }
        model.check_unique_names()?;
        model.refuse_types(
            "Flax msgpack",
            |d| dtype_name(d).is_some(),
            |_| "convert with --dtype F32, F16 or BF16, or leave them out with --exclude".into(),
        )?;
        // Every length is known before its data: one pass.
        let pieces = pieces(model, MAX_CHUNK_SIZE)?;
        Ok(OneFilePlan::boxed(
            dest,
            opts,
            model.data_bytes(),
            true,
            move |out, progress| {
                for p in &pieces {
                    match p {
                        Piece::Bytes(b) => out.write_all(b)?,
                        Piece::Data(d) => out.write_source(d.as_ref(), progress)?,
                    }
                }
                Ok(())
            },
        ))
    }
}

/// The file as pieces: the tree of dotted names, arrays over `max_chunk`
/// bytes chunked as flax chunks them.
fn pieces(model: &Model, max_chunk: u64) -> Result<Vec<Piece>> {
    let mut root = Vec::new();
    for (i, t) in model.tensors.iter().enumerate() {
        let parts: Vec<&str> = t.info.name.split('.').collect();
        insert(&mut root, &parts, i, &t.info.name)?;
    }
    let scalars: Vec<String> = match model.metadata.get(SCALARS_KEY) {
        Some(Value::Array(Array::String(s))) => s.iter().map(str::to_string).collect(),
        _ => Vec::new(),
    };
    let scalars: Vec<&str> = scalars.iter().map(String::as_str).collect();
    let mut out = Vec::new();
    emit(&root, &model.tensors, &scalars, max_chunk, &mut out)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// flax 0.12.8 with its chunk size set to 64 bytes wrote
    /// fixtures/flax/chunked.msgpack (chunked.py): read, then written with
    /// the same chunk size, it is the same file byte for byte, so the
    /// chunking is flax's (which applies it at 2^30 bytes).
    #[test]
    fn chunked_arrays_are_written_as_flax_writes_them() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/flax/chunked.msgpack");
        let want = std::fs::read(&path).unwrap();
        let model = open(&path).unwrap();
        let mut got = Vec::new();
        for p in pieces(&model, 64).unwrap() {
            match p {
                Piece::Bytes(b) => got.extend_from_slice(&b),
                Piece::Data(d) => {
                    let mut buf = vec![0u8; d.len() as usize];
                    d.read_at(0, &mut buf).unwrap();
                    got.extend_from_slice(&buf);
                }
            }
        }
        assert_eq!(got, want);
        // At flax's own size nothing here is chunked, and the file differs.
        assert_ne!(
            pieces(&model, MAX_CHUNK_SIZE).unwrap().len(),
            pieces(&model, 64).unwrap().len()
        );
    }
}
