//! Reading an ONNX file: the protobuf is decoded from a memory map, so
//! `raw_data` fields borrow from it; initializers become lazy IR tensors.

use crate::proto::{tensor_proto, GraphProto, ModelProto, NodeProto, TensorProto};
use crate::tensor::{self, dt, Storage};
use bytes::Bytes;
use modelconv_ir::wire::varint;
use modelconv_ir::{DataSource, Error, FileRange, Location, Result, SharedFile, Tensor, TensorInfo};
use prost::Message;
use std::collections::HashMap;
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex};

/// A tensor whose type the IR cannot hold (STRING): its name and ONNX type.
pub type Unread = (String, i32);

/// An opened ONNX model.
pub struct OnnxFile {
    pub path: PathBuf,
    /// The folder external data paths are relative to.
    pub dir: PathBuf,
    pub model: ModelProto,
    file: Arc<SharedFile>,
    /// The whole file; `raw_data` fields are slices of it.
    bytes: Bytes,
    external: Mutex<HashMap<PathBuf, Arc<SharedFile>>>,
}

/// One tensor held by the model: where it is declared and its data.
pub struct Initializer {
    pub tensor: Tensor,
    /// Where in the model the tensor is.
    pub origin: Origin,
    /// The bytes as `raw_data` holds them (packed for INT4, …).
    pub stored: Arc<dyn DataSource>,
    /// The ONNX data type.
    pub data_type: i32,
    /// Where the data lives: `raw_data`, a typed field, or external.
    pub storage: &'static str,
}

/// Most initializers (dense and sparse, in the main graph) a model may
/// have: decoding costs about a kilobyte each whatever their size, so a
/// small file of empty initializers could otherwise take gigabytes.
pub const MAX_INITIALIZERS: u64 = 1 << 16;

/// Calls `f(field, bytes)` for each length-delimited field of a message
/// (other wire types skipped); stops at the first malformed field (the
/// decoder then says what is wrong).
fn for_each_bytes_field<'a>(b: &'a [u8], mut f: impl FnMut(u64, &'a [u8])) {
    let mut i = 0;
    while i < b.len() {
        let Some(key) = varint(b, &mut i) else { return };
        let ok = match key & 7 {
            0 => varint(b, &mut i).is_some(),
            1 => {
                i += 8;
                true
            }
            5 => {
                i += 4;
                true
            }
            2 => match varint(b, &mut i)
                .and_then(|n| usize::try_from(n).ok())
                .and_then(|n| b.get(i..i.checked_add(n)?))
            {
                Some(body) => {
                    i += body.len();
                    f(key >> 3, body);
                    true
                }
                None => false,
            },
            _ => false,
        };
        if !ok {
            return;
        }
    }
}

/// Initializers (GraphProto fields 5 and 15) of the model's graph
/// (ModelProto field 7), counted without decoding them.
fn count_initializers(model: &[u8]) -> u64 {
    let mut n = 0u64;
    for_each_bytes_field(model, |field, graph| {
        if field == 7 {
            for_each_bytes_field(graph, |f, _| n += u64::from(f == 5 || f == 15));
        }
    });
    n
}

impl OnnxFile {
    pub fn open(path: &Path) -> Result<OnnxFile> {
        let file = SharedFile::open(path)?;
        let bytes = if file.len == 0 {
            Bytes::new()
        } else {
            // SAFETY: the map is read-only; as with every mmap-based reader, a
            // file truncated by another process while we read it faults.
            let map = unsafe { memmap2::Mmap::map(&file.file) }.map_err(|e| Error::io(path, e))?;
            Bytes::from_owner(map)
        };
        let n = count_initializers(&bytes);
        if n > MAX_INITIALIZERS {
            return Err(Error::limit(
                path,
                format!("{n} initializers, over the limit of {MAX_INITIALIZERS} (each costs memory to decode)"),
            ));
        }
        let model = ModelProto::decode(bytes.clone())
            .map_err(|e| Error::malformed(path, format!("not a valid ONNX protobuf (ModelProto): {e}")))?;
        if model.graph.is_none() {
            return Err(Error::malformed(path, "ONNX model has no graph"));
        }
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        Ok(OnnxFile {
            path: path.to_path_buf(),
            dir,
            model,
            file,
            bytes,
            external: Mutex::new(HashMap::new()),
        })
    }

    /// The model file and the external data files opened so far.
    pub fn input_files(&self) -> Vec<PathBuf> {
        let mut v = vec![self.path.clone()];
        v.extend(self.external.lock().unwrap_or_else(|p| p.into_inner()).keys().cloned());
        v
    }

    pub fn graph(&self) -> &crate::proto::GraphProto {
        // `open` refuses a model without a graph.
        static EMPTY: std::sync::OnceLock<crate::proto::GraphProto> = std::sync::OnceLock::new();
        self.model
            .graph
            .as_ref()
            .unwrap_or_else(|| EMPTY.get_or_init(Default::default))
    }

    /// Every initializer of the main graph whose type the IR can hold, in
    /// file order, plus (with `constants`) the tensors of `Constant` nodes
    /// and those of the subgraphs (`If` branches, `Loop` and `Scan`
    /// bodies): their initializers and Constant nodes. Tensors of other
    /// types (STRING) are returned in the second list.
    pub fn tensors(&self, constants: bool) -> Result<(Vec<Initializer>, Vec<Unread>)> {
        let mut out = Vec::new();
        let mut skipped = Vec::new();
        let g = self.graph();
        let mut take = |t: &TensorProto, name: String, origin: Origin| -> Result<()> {
            match self.tensor(t, &name)? {
                Some(mut init) => {
                    init.origin = origin;
                    out.push(init);
                }
                None => skipped.push((name, t.data_type.unwrap_or(0))),
            }
            Ok(())
        };
        for t in &g.initializer {
            take(t, t.name.clone().unwrap_or_default(), Origin::Initializer)?;
        }
        if constants {
            for n in &g.node {
                for (name, t) in constant_values(n)? {
                    take(&t, name, Origin::Constant)?;
                }
            }
            for sub in subgraphs(g) {
                for t in &sub.initializer {
                    take(t, t.name.clone().unwrap_or_default(), Origin::SubgraphInitializer)?;
                }
                for n in &sub.node {
                    for (name, t) in constant_values(n)? {
                        take(&t, name, Origin::SubgraphConstant)?;
                    }
                }
            }
        }
        Ok((out, skipped))
    }

    /// Whether the model keeps weights outside the main graph's
    /// initializers: a Constant node (anywhere) or a subgraph initializer
    /// holding a floating-point tensor of more than one element.
    pub fn has_constant_weights(&self) -> Result<bool> {
        let weight = |t: &TensorProto| {
            matches!(
                t.data_type.unwrap_or(0),
                dt::FLOAT | dt::FLOAT16 | dt::BFLOAT16 | dt::DOUBLE
            ) && t.dims.iter().product::<i64>() > 1
        };
        let g = self.graph();
        for graph in std::iter::once(g).chain(subgraphs(g)) {
            let is_sub = !std::ptr::eq(graph, g);
            if is_sub && graph.initializer.iter().any(weight) {
                return Ok(true);
            }
            for n in &graph.node {
                if constant_values(n)?.iter().any(|(_, t)| weight(t)) {
                    return Ok(true);
                }
            }
        }
        Ok(false)
    }

    /// The IR tensor of one TensorProto, named `name`; `None` for types the
    /// IR has no place for (STRING, UNDEFINED).
    pub fn tensor(&self, t: &TensorProto, name: &str) -> Result<Option<Initializer>> {
        let ctx = |e: Error| e.for_tensor(name).in_file(&self.path);
        let data_type = t.data_type.unwrap_or(0);
        let Some(storage) = Storage::of(data_type) else {
            return Ok(None);
        };
        if t.segment.is_some() {
            return Err(ctx(Error::unsupported(
                "segmented tensors (TensorProto.segment) are not supported",
            )));
        }
        let mut shape = Vec::with_capacity(t.dims.len() + 1);
        for &d in &t.dims {
            shape.push(u64::try_from(d).map_err(|_| ctx(Error::invalid(format!("negative dimension {d}"))))?);
        }
        let numel = shape
            .iter()
            .try_fold(1u64, |a, &d| a.checked_mul(d))
            .ok_or_else(|| ctx(Error::invalid(format!("shape {shape:?} overflows"))))?;
        let stored_len = storage
            .stored_len(numel)
            .ok_or_else(|| ctx(Error::invalid(format!("shape {shape:?} overflows"))))?;
        let external = t.data_location == Some(tensor_proto::DataLocation::External as i32);
        let (stored, where_, location): (Arc<dyn DataSource>, _, _) = if external {
            let r = self.external_range(t, stored_len).map_err(ctx)?;
            let loc = Location {
                file: r.file.path.clone(),
                offset: r.offset,
            };
            (Arc::new(r), "external", Some(loc))
        } else if let Some(raw) = &t.raw_data {
            if raw.len() as u64 != stored_len {
                return Err(ctx(Error::invalid(format!(
                    "raw_data holds {} bytes, a {} tensor of shape {shape:?} needs {stored_len}",
                    raw.len(),
                    tensor::type_name(data_type)
                ))));
            }
            match self.offset_of(raw) {
                Some(offset) => {
                    let r = FileRange {
                        file: self.file.clone(),
                        offset,
                        len: stored_len,
                    };
                    let loc = Location {
                        file: self.path.clone(),
                        offset,
                    };
                    (Arc::new(r), "raw_data", Some(loc))
                }
                None => (tensor::mem(raw.to_vec()), "raw_data", None),
            }
        } else {
            match tensor::typed_field_bytes(t, data_type, stored_len).map_err(ctx)? {
                Some(b) => (tensor::mem(b), "typed field", None),
                None if stored_len == 0 => (tensor::mem(Vec::new()), "typed field", None),
                None => {
                    return Err(ctx(Error::invalid(
                        "the tensor holds no data (no raw_data, typed field or external data)",
                    )))
                }
            }
        };
        if let Storage::Complex(_) = storage {
            shape.push(2);
        }
        let info = TensorInfo::new(name, storage.ir_dtype(), shape).map_err(ctx)?;
        let mut tensor = Tensor::new(info, storage.source(stored.clone(), numel)).map_err(ctx)?;
        tensor.location = location;
        Ok(Some(Initializer {
            origin: Origin::Initializer,
            tensor,
            stored,
            data_type,
            storage: where_,
        }))
    }

    /// Where `raw` lies in the file, when it is a slice of the map.
    fn offset_of(&self, raw: &Bytes) -> Option<u64> {
        let (base, p) = (self.bytes.as_ptr() as usize, raw.as_ptr() as usize);
        let off = p.checked_sub(base)?;
        (off.checked_add(raw.len())? <= self.bytes.len()).then_some(off as u64)
    }

    /// The byte range named by a tensor's `external_data`, after checking
    /// that the path stays inside the model's folder.
    fn external_range(&self, t: &TensorProto, stored_len: u64) -> Result<FileRange> {
        let mut location = None;
        let (mut offset, mut length) = (0u64, None);
        for e in &t.external_data {
            let (k, v) = (e.key.as_deref().unwrap_or(""), e.value.as_deref().unwrap_or(""));
            let num = || {
                v.parse::<u64>()
                    .map_err(|_| Error::invalid(format!("external_data {k} '{v}' is not a byte count")))
            };
            match k {
                "location" => location = Some(v),
                "offset" => offset = num()?,
                "length" => length = Some(num()?),
                _ => {}
            }
        }
        let loc = location.ok_or_else(|| Error::invalid("external data without a 'location'"))?;
        let file = self.external_file(loc)?;
        let length = length.unwrap_or(file.len.saturating_sub(offset));
        if length != stored_len {
            return Err(Error::invalid(format!(
                "external data '{loc}' gives {length} bytes, the tensor's type and shape need {stored_len}"
            )));
        }
        if offset.checked_add(length).is_none_or(|end| end > file.len) {
            return Err(Error::invalid(format!(
                "external data '{loc}': bytes {offset}..{} lie past the end of the {}-byte file",
                offset.saturating_add(length),
                file.len
            )));
        }
        Ok(FileRange {
            file,
            offset,
            len: length,
        })
    }

    /// Opens an external data file, refusing paths that leave the model's
    /// folder: absolute ones, `..`, and symlinks that resolve outside.
    fn external_file(&self, loc: &str) -> Result<Arc<SharedFile>> {
        let rel = Path::new(loc);
        if loc.is_empty() || loc.contains('\0') {
            return Err(Error::invalid(format!(
                "external data location '{loc}' is not a file name"
            )));
        }
        if rel.is_absolute()
            || !rel
                .components()
                .all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
        {
            return Err(Error::invalid(format!(
                "external data location '{loc}' leaves the model's folder (absolute paths and '..' are refused)"
            )));
        }
        let joined = self.dir.join(rel);
        let mut cache = self.external.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(f) = cache.get(&joined) {
            return Ok(f.clone());
        }
        let io = |p: &Path, e| Error::invalid(format!("external data '{loc}': {}: {e}", p.display()));
        let root = self.dir.canonicalize().map_err(|e| io(&self.dir, e))?;
        let real = joined.canonicalize().map_err(|e| io(&joined, e))?;
        if !real.starts_with(&root) {
            return Err(Error::invalid(format!(
                "external data location '{loc}' resolves to {}, outside the model's folder {}",
                real.display(),
                root.display()
            )));
        }
        let f = SharedFile::open(&joined).map_err(|e| Error::invalid(format!("external data '{loc}': {e}")))?;
        cache.insert(joined, f.clone());
        Ok(f)
    }
}

/// Where a tensor was found in the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    Initializer,
    Constant,
    SubgraphInitializer,
    SubgraphConstant,
}

impl Origin {
    pub fn describe(self) -> &'static str {
        match self {
            Origin::Initializer => "initializer",
            Origin::Constant => "Constant node",
            Origin::SubgraphInitializer => "subgraph initializer",
            Origin::SubgraphConstant => "subgraph Constant node",
        }
    }
}

/// Most subgraphs walked (a hostile file could nest deeply; prost already
/// bounds the nesting depth while decoding).
const MAX_SUBGRAPHS: usize = 1 << 16;

/// Every subgraph below `g` (attributes `g` and `graphs` of its nodes, and
/// theirs), depth first, in file order. The depth is bounded by prost's
/// decoding limit.
pub fn subgraphs(g: &GraphProto) -> Vec<&GraphProto> {
    fn walk<'a>(g: &'a GraphProto, out: &mut Vec<&'a GraphProto>) {
        for a in g.node.iter().flat_map(|n| &n.attribute) {
            for sub in a.g.iter().chain(&a.graphs) {
                if out.len() >= MAX_SUBGRAPHS {
                    return;
                }
                out.push(sub);
                walk(sub, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(g, &mut out);
    out
}

/// The tensors a `Constant` node holds, named by its output.
pub fn constant_values(n: &NodeProto) -> Result<Vec<(String, TensorProto)>> {
    if n.op_type.as_deref() != Some("Constant") || n.domain.as_deref().is_some_and(|d| !d.is_empty()) {
        return Ok(Vec::new());
    }
    let Some(out) = n.output.first() else {
        return Ok(Vec::new());
    };
    let mut v = Vec::new();
    for a in &n.attribute {
        let t = match (a.name.as_deref().unwrap_or(""), a.r#type) {
            ("value", _) => a.t.clone(),
            ("value_float", _) => a.f.map(|f| scalar(dt::FLOAT, vec![], f.to_le_bytes().to_vec())),
            ("value_floats", _) => Some(scalar(
                dt::FLOAT,
                vec![a.floats.len() as i64],
                a.floats.iter().flat_map(|f| f.to_le_bytes()).collect(),
            )),
            ("value_int", _) => a.i.map(|i| scalar(dt::INT64, vec![], i.to_le_bytes().to_vec())),
            ("value_ints", _) => Some(scalar(
                dt::INT64,
                vec![a.ints.len() as i64],
                a.ints.iter().flat_map(|i| i.to_le_bytes()).collect(),
            )),
            _ => None,
        };
        if let Some(t) = t {
            v.push((out.clone(), t));
        }
    }
    Ok(v)
}

fn scalar(data_type: i32, dims: Vec<i64>, raw: Vec<u8>) -> TensorProto {
    TensorProto {
        dims,
        data_type: Some(data_type),
        raw_data: Some(Bytes::from(raw)),
        ..Default::default()
    }
}
