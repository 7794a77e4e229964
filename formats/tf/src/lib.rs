//! # modelconv-tf
//!
//! TensorFlow's tensor bundles, as `tf.train.Checkpoint.write` and
//! `tf.saved_model.save` (`variables/variables`) leave them, read without
//! TensorFlow:
//! - `PREFIX.index` is a table in LevelDB's format: a footer (two block
//!   handles and a magic number), blocks of prefix-compressed entries with
//!   restart arrays, each block followed by its compression type (none or
//!   snappy) and a masked crc32c; an index block points at the data blocks.
//! - Its entries map tensor names to `BundleEntryProto`s (dtype, shape,
//!   shard, offset, size, crc32c); the empty key holds the
//!   `BundleHeaderProto` (number of shards, endianness).
//! - `PREFIX.data-0000i-of-0000n` are the shards; every tensor's bytes are
//!   checked against its crc32c when read.
//!
//! Names are kept as TensorFlow gives them
//! (`layer/kernel/.ATTRIBUTES/VARIABLE_VALUE`); the `short-names` option
//! drops the `/.ATTRIBUTES/VARIABLE_VALUE` suffix. String tensors and the
//! `_CHECKPOINTABLE_OBJECT_GRAPH` are not tensors: the object graph is kept
//! as metadata (its serialized bytes).

mod scan;
mod table;

use modelconv_ir::wire;
use modelconv_ir::{
    Array, DType, DataSource, Error, FileRange, Format, FormatOption, Location, Metadata, Model, OpenOptions,
    OptionValue, Probe, Result, SharedFile, Stage, Tensor, TensorInfo, Value,
};
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub const NAME: &str = "tf";
/// The open option dropping `/.ATTRIBUTES/VARIABLE_VALUE` from names.
pub const SHORT_NAMES: &str = "short-names";
const SUFFIX: &str = "/.ATTRIBUTES/VARIABLE_VALUE";
const OBJECT_GRAPH: &str = "_CHECKPOINTABLE_OBJECT_GRAPH";
/// Most shards a bundle may name.
const MAX_SHARDS: u64 = 1 << 16;
/// Largest string tensor kept (the object graph).
const MAX_GRAPH: u64 = 64 << 20;

pub struct Tf;
pub static FORMAT: Tf = Tf;

const OPTIONS: &[FormatOption] = &[FormatOption {
    name: SHORT_NAMES,
    stages: &[Stage::Open],
    value: OptionValue::Flag,
    help: "drop /.ATTRIBUTES/VARIABLE_VALUE from tensor names",
}];

impl Format for Tf {
    fn name(&self) -> &'static str {
        NAME
    }
    fn description(&self) -> &'static str {
        "TensorFlow checkpoints (PREFIX.index + .data shards) and SavedModel variables; read"
    }
    fn extensions(&self) -> &'static [&'static str] {
        &["index"]
    }
    fn score(&self, probe: &Probe) -> u8 {
        match bundle_index(probe.path) {
            Some(index) if index.as_path() == probe.path && probe.tail.ends_with(&table::MAGIC.to_le_bytes()) => 90,
            Some(index) if index.as_path() == probe.path => 0,
            // A prefix naming no file, or a SavedModel folder.
            Some(_) if !probe.is_file => 80,
            _ => 0,
        }
    }
    fn open(&self, path: &Path, opts: &OpenOptions) -> Result<Model> {
        open(path, opts.options.flag(SHORT_NAMES))
    }
    fn options(&self) -> &'static [FormatOption] {
        OPTIONS
    }
    fn scanner(&self) -> Option<&dyn modelconv_ir::scan::Scanner> {
        Some(&SCANNER)
    }
}

/// The `.index` file a path names: itself, `PREFIX.index` for a prefix, or
/// `variables/variables.index` in a SavedModel folder.
fn bundle_index(path: &Path) -> Option<PathBuf> {
    if path.extension().is_some_and(|e| e == "index") && path.is_file() {
        return Some(path.to_path_buf());
    }
    if path.is_dir() {
        let v = path.join("variables").join("variables.index");
        return v.is_file().then_some(v);
    }
    let mut with = path.as_os_str().to_os_string();
    with.push(".index");
    let p = PathBuf::from(with);
    p.is_file().then_some(p)
}

/// TF's DataType numbers as IR types (strings, resources and quantized
/// types are not tensors here).
fn dtype_of(dt: u64) -> Option<DType> {
    Some(match dt {
        1 => DType::F32,
        2 => DType::F64,
        3 => DType::I32,
        4 => DType::U8,
        5 => DType::I16,
        6 => DType::I8,
        9 => DType::I64,
        10 => DType::Bool,
        14 => DType::BF16,
        17 => DType::U16,
        19 => DType::F16,
        22 => DType::U32,
        23 => DType::U64,
        24 => DType::F8_E5M2,
        25 => DType::F8_E4M3,
        _ => return None,
    })
}

/// A `BundleEntryProto`, decoded.
#[derive(Debug, Default)]
struct Entry {
    dtype: u64,
    shape: Vec<u64>,
    shard: u64,
    offset: u64,
    size: u64,
    crc32c: u32,
    sliced: bool,
}

fn entry(b: &[u8]) -> std::result::Result<Entry, String> {
    let mut e = Entry::default();
    for field in wire::fields(b)? {
        match field {
            (1, wire::Wire::Varint(v)) => e.dtype = v,
            (2, wire::Wire::Bytes(shape)) => {
                for f in wire::fields(shape)? {
                    if let (2, wire::Wire::Bytes(dim)) = f {
                        for d in wire::fields(dim)? {
                            if let (1, wire::Wire::Varint(size)) = d {
                                let size = size as i64;
                                e.shape
                                    .push(u64::try_from(size).map_err(|_| format!("dimension {size}"))?);
                            }
                        }
                    }
                }
            }
            (3, wire::Wire::Varint(v)) => e.shard = v,
            (4, wire::Wire::Varint(v)) => e.offset = v,
            (5, wire::Wire::Varint(v)) => e.size = v,
            (6, wire::Wire::Fixed32(v)) => e.crc32c = v,
            (7, _) => e.sliced = true,
            _ => {}
        }
    }
    Ok(e)
}

/// A tensor's bytes in a shard, checked against the bundle's crc32c when read.
struct Checked {
    range: FileRange,
    crc: u32,
    name: String,
    verified: std::sync::OnceLock<std::result::Result<(), String>>,
}

impl Checked {
    fn verify(&self) -> Result<()> {
        let r = self.verified.get_or_init(|| {
            let mut crc = 0u32;
            let mut buf = vec![0u8; (4 << 20).min(self.range.len as usize)];
            let mut done = 0u64;
            while done < self.range.len {
                let n = (self.range.len - done).min(buf.len() as u64) as usize;
                if let Err(e) = self.range.read_at(done, &mut buf[..n]) {
                    return Err(e.to_string());
                }
                crc = crc32c::crc32c_append(crc, &buf[..n]);
                done += n as u64;
            }
            // The bundle stores it masked, as LevelDB masks its block crcs.
            if table::unmask(self.crc) == crc {
                Ok(())
            } else {
                Err(format!(
                    "tensor '{}': crc32c {crc:08x} of its {} bytes, the index says {:08x}",
                    self.name,
                    self.range.len,
                    table::unmask(self.crc)
                ))
            }
        });
        r.clone().map_err(|m| Error::malformed(&self.range.file.path, m))
    }
}

impl DataSource for Checked {
    fn len(&self) -> u64 {
        self.range.len
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        self.verify()?;
        self.range.read_at(offset, buf)
    }
    fn file_range(&self) -> Option<(Arc<SharedFile>, u64)> {
        // Copies check first, then let the kernel copy.
        self.verify().ok()?;
        self.range.file_range()
    }
}

/// Opens a bundle: an `.index` file, its prefix, or a SavedModel folder.
pub fn open(path: &Path, short_names: bool) -> Result<Model> {
    let index = bundle_index(path).ok_or_else(|| {
        Error::malformed(
            path,
            "no PREFIX.index here (a checkpoint prefix, its .index, or a SavedModel folder)",
        )
    })?;
    let file = SharedFile::open(&index)?;
    let bytes = file.mapped()?;
    if bytes.is_empty() {
        return Err(Error::truncated(&index, 0, "an empty .index file"));
    }
    let entries = table::read(bytes).map_err(|e| e.at(&index))?;
    let prefix = index.with_extension("");
    let mut header_shards = 1u64;
    let mut model = Model {
        format: NAME,
        path: path.to_path_buf(),
        metadata: Metadata::new(),
        declared_order: true,
        ..Default::default()
    };
    let mut shards: std::collections::HashMap<u64, Arc<SharedFile>> = Default::default();
    let mut skipped = Vec::new();
    for (key, value) in &entries {
        if key.is_empty() {
            for f in wire::fields(value).map_err(|m| Error::malformed(&index, format!("bundle header: {m}")))? {
                if let (1, wire::Wire::Varint(n)) = f {
                    header_shards = n;
                }
            }
            if header_shards == 0 || header_shards > MAX_SHARDS {
                return Err(Error::malformed(
                    &index,
                    format!("the header names {header_shards} shards"),
                ));
            }
            continue;
        }
        let name = String::from_utf8_lossy(key).into_owned();
        let e = entry(value).map_err(|m| Error::malformed(&index, format!("entry '{name}': {m}")))?;
        if e.sliced {
            return Err(Error::unsupported(format!(
                "{}: '{name}' is saved in slices (a partitioned variable), which this build does not join",
                index.display()
            )));
        }
        if e.shard >= header_shards {
            return Err(Error::malformed(
                &index,
                format!("entry '{name}': shard {} of {header_shards}", e.shard),
            ));
        }
        let shard = match shards.get(&e.shard) {
            Some(f) => f.clone(),
            None => {
                let mut p = prefix.as_os_str().to_os_string();
                p.push(format!(".data-{:05}-of-{:05}", e.shard, header_shards));
                let f = SharedFile::open(Path::new(&p))?;
                shards.insert(e.shard, f.clone());
                f
            }
        };
        if e.offset.checked_add(e.size).is_none_or(|end| end > shard.len) {
            return Err(Error::truncated(
                &shard.path,
                shard.len,
                format!(
                    "'{name}': {} bytes at {} run past the end of the shard",
                    e.size, e.offset
                ),
            ));
        }
        let range = FileRange {
            file: shard.clone(),
            offset: e.offset,
            len: e.size,
        };
        let Some(dtype) = dtype_of(e.dtype) else {
            if name == OBJECT_GRAPH && e.dtype == 7 && e.size <= MAX_GRAPH {
                // A DT_STRING scalar: its varint length, the bytes, a crc.
                let mut raw = vec![0u8; e.size as usize];
                range.read_at(0, &mut raw)?;
                model
                    .metadata
                    .set("tf.checkpointable_object_graph", Value::Array(Array::U8(raw)));
            } else {
                skipped.push(format!("{name} (dtype {})", e.dtype));
            }
            continue;
        };
        let shown = if short_names {
            name.strip_suffix(SUFFIX).unwrap_or(&name).to_string()
        } else {
            name.clone()
        };
        let info = TensorInfo::new(shown, dtype, e.shape).map_err(|err| err.in_file(&index))?;
        if info.byte_len != e.size {
            return Err(Error::malformed(
                &index,
                format!(
                    "entry '{name}': shape {:?} of {dtype} needs {} bytes, the entry says {}",
                    info.shape, info.byte_len, e.size
                ),
            ));
        }
        let data = Checked {
            range,
            crc: e.crc32c,
            name: name.clone(),
            verified: Default::default(),
        };
        let mut t = Tensor::new(info, Arc::new(data)).map_err(|err| err.in_file(&index))?;
        t.location = Some(Location {
            file: shard.path.clone(),
            offset: e.offset,
        });
        model.tensors.push(t);
    }
    if !skipped.is_empty() {
        model
            .notes
            .push(format!("not tensors, left out: {}", skipped.join(", ")));
    }
    model.check_unique_names().map_err(|e| e.in_file(&index))?;
    Ok(model)
}

/// `scan` names TensorFlow Lite flatbuffers (`TFL3` at byte 4) and reads
/// SavedModel graphs for file and Python ops (see [`scan`]).
static SCANNER: scan::TfScanner = scan::TfScanner;
