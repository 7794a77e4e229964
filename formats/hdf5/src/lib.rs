//! # modelconv-hdf5
//!
//! HDF5 files read without libhdf5 (through the pure-Rust `hdf5-reader`
//! crate), as Keras and h5py leave them:
//! - **Keras 2** (`save_weights`, `model.save("x.h5")`, tf_keras and Keras 3's
//!   legacy writer): a `layer_names` attribute on the root or on
//!   `model_weights/`, a `weight_names` attribute on each layer's group, the
//!   weights at `LAYER/WEIGHT_NAME`. Attributes too large for one object
//!   header are split into `layer_names0`, `layer_names1`, …; they are joined.
//!   Tensors are named by their weight names (`d1/kernel:0`), in Keras's order.
//! - **Keras 3** (`.weights.h5`, and the `.keras` zip's `model.weights.h5`
//!   beside `config.json`): `layers/<path>/vars/N`. Tensors are named
//!   `<layer name>/vars/N`, the layer's name taken from its `vars` group's
//!   `name` attribute, else from the config; in the order Keras wrote them,
//!   which is `get_weights()`'s (else the config's). A compiled model's
//!   `optimizer/` state is left out, said so.
//! - **Anything else** h5py wrote: every numeric dataset, by its path.
//!
//! `--names path` names every tensor by its HDF5 path; `--all` reads every
//! dataset of the file (optimizer state too), by path.
//!
//! The file is read with `pread` where the parser asks, never mapped.
//! Contiguous datasets are ranges of the file (of the archive, for a
//! `.keras` whose member is stored). Chunked ones (gzip, shuffle, …) are
//! decoded once into a temporary file when first read. Floats are typed by
//! their bit layout (IEEE half, single, double, and bfloat16); Keras's
//! bfloat16 is an opaque 2-byte type with a `dtype` attribute `bfloat16`.

mod keras_rules;
mod pyjson;
mod scan;
mod source;

use hdf5_reader::group::Group;
use hdf5_reader::messages::HdfMessage;
use hdf5_reader::{ByteOrder, Datatype};
use hdf5_reader::{Dataset, Hdf5File};
use modelconv_ir::view::ByteSwap;
use modelconv_ir::{
    DType, DataSource, Error, FileRange, Format, FormatOption, Location, Metadata, Model, OpenOptions, OptionValue,
    Probe, Result, SharedFile, Stage, Tensor, TensorInfo, Value,
};
use source::{Decoded, Slice, Stored};
use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;

pub const NAME: &str = "hdf5";
/// The open option choosing tensor names: `keras` (default) or `path`.
pub const NAMES_OPTION: &str = "names";
const MAGIC: &[u8; 8] = b"\x89HDF\r\n\x1a\n";
/// The member of a `.keras` archive holding the weights.
pub(crate) const KERAS_WEIGHTS: &str = "model.weights.h5";
pub(crate) const KERAS_CONFIG: &str = "config.json";
/// Largest `config.json` / `metadata.json` read from a `.keras` archive.
const MAX_JSON: u64 = 64 << 20;
/// Groups deeper than this are refused (a loop of hard links is also caught
/// by the visited set).
const MAX_DEPTH: usize = 64;
/// Most objects (groups and datasets) walked in one file.
const MAX_OBJECTS: usize = 1 << 20;

/// The reader's chunk cache.
const CHUNK_CACHE: usize = 4 << 20;
/// Largest whole-dataset read (compact datasets live in a 64 KiB header).
const MAX_COMPACT: usize = 1 << 20;

pub struct Hdf5;
pub static FORMAT: Hdf5 = Hdf5;

const OPTIONS: &[FormatOption] = &[FormatOption {
    name: NAMES_OPTION,
    stages: &[Stage::Open],
    value: OptionValue::Value("keras|path"),
    help: "name tensors as Keras does (keras, the default) or by their HDF5 paths (path)",
}];

impl Format for Hdf5 {
    fn name(&self) -> &'static str {
        NAME
    }
    fn description(&self) -> &'static str {
        "HDF5: Keras 2/3 weights (.h5, .weights.h5), .keras archives, any h5py file's numeric datasets; read"
    }
    fn extensions(&self) -> &'static [&'static str] {
        &["h5", "hdf5", "keras"]
    }
    fn score(&self, probe: &Probe) -> u8 {
        if superblock_in(probe.head).is_some() {
            return 90;
        }
        if probe.zip_entries.iter().any(|e| e == KERAS_WEIGHTS) && probe.zip_entries.iter().any(|e| e == KERAS_CONFIG) {
            return 95;
        }
        0
    }
    fn open(&self, path: &Path, opts: &OpenOptions) -> Result<Model> {
        let by_path = match opts.options.get(NAMES_OPTION) {
            None | Some("keras") => false,
            Some("path") => true,
            Some(other) => return Err(Error::invalid(format!("--names {other}: use keras or path"))),
        };
        open(path, by_path || opts.all, opts.all)
    }
    fn options(&self) -> &'static [FormatOption] {
        OPTIONS
    }
    fn scanner(&self) -> Option<&dyn modelconv_ir::scan::Scanner> {
        Some(&scan::KerasScanner)
    }
}

/// Where the superblock signature is in `head`: at 0, 512, 1024, 2048, …
/// (after a user block).
fn superblock_in(head: &[u8]) -> Option<usize> {
    std::iter::once(0)
        .chain((9..32).map(|p| 1usize << p))
        .take_while(|&o| o < head.len())
        .find(|&o| head.get(o..o + 8) == Some(MAGIC))
}

/// One dataset found: its HDF5 path and the name its tensor gets.
struct Found {
    path: String,
    name: String,
    ds: Dataset,
}

/// Opens an HDF5 file or a `.keras` archive.
pub fn open(path: &Path, by_path: bool, all: bool) -> Result<Model> {
    let file = SharedFile::open(path)?;
    let mut model = Model {
        format: NAME,
        path: path.to_path_buf(),
        metadata: Metadata::new(),
        declared_order: true,
        ..Default::default()
    };
    let (start, len, config) = locate(&file, &mut model)?;
    let h5 = Hdf5File::from_storage_with_options(
        Arc::new(Slice {
            file: file.clone(),
            start,
            len,
        }),
        // Each chunk is decoded once, in order: no cache needed. Whole-dataset
        // reads are only of compact data (at most 64 KiB).
        hdf5_reader::OpenOptions::default()
            .with_chunk_cache_bytes(CHUNK_CACHE)
            .with_max_read_bytes(MAX_COMPACT),
    )
    .map_err(|e| bad(path, "", e))?;
    let base = start + h5.superblock().base_address;
    let root = h5.root_group().map_err(|e| bad(path, "/", e))?;

    let mut walk = Walk::new(path);
    let mut keras3 = false;
    let found = if all {
        walk.everything(&root, "")?
    } else if let Some((group, prefix, layers)) = keras2(path, &root)? {
        model.notes.push(format!(
            "Keras 2 weights{}: {} layers, named by their weight names",
            if prefix.is_empty() {
                String::new()
            } else {
                format!(" under {prefix}/")
            },
            layers.len()
        ));
        walk.keras2(&group, &prefix, &layers, by_path)?
    } else {
        let mut f = walk.everything(&root, "")?;
        if f.iter()
            .any(|f| f.path.contains("/vars/") || f.path.starts_with("vars/"))
        {
            // A compiled model's optimizer state is not among its weights
            // (get_weights()); --all reads it.
            let before = f.len();
            f.retain(|f| !f.path.starts_with("optimizer/"));
            if f.len() < before {
                model.notes.push(format!(
                    "optimizer state ({} tensors under optimizer/) left out; --all reads it",
                    before - f.len()
                ));
            }
            keras3_names(&mut f, &walk.vars_names, config.as_deref(), by_path);
            keras3 = true;
            model.notes.push(if by_path {
                "Keras 3 weights".into()
            } else {
                "Keras 3 weights: tensors named <layer>/vars/N as Keras saves them".into()
            });
        }
        f
    };
    let model_weights = root.group("model_weights").ok();
    for key in ["keras_version", "backend", "model_config", "training_config"] {
        for g in [Some(&root), model_weights.as_ref()].into_iter().flatten() {
            if let Some(v) = attr_text(g, key) {
                if model.metadata.get(&format!("keras.{key}")).is_none() {
                    model.metadata.set(format!("keras.{key}"), Value::String(v));
                }
            }
        }
    }
    if let Some(c) = config {
        model.metadata.set("keras.config", Value::String(c));
    }

    let mut left_out = Vec::new();
    for f in found {
        match tensor(path, &h5, &file, (base, start + len), &f)? {
            Some(t) => model.tensors.push(t),
            None => left_out.push(format!("{} ({})", f.path, describe(f.ds.dtype()))),
        }
    }
    if keras3 {
        keras3_order(&mut model.tensors);
    }
    if !left_out.is_empty() {
        model
            .notes
            .push(format!("not numeric tensors, left out: {}", left_out.join(", ")));
    }
    model.check_unique_names().map_err(|e| e.in_file(path))?;
    Ok(model)
}

/// The HDF5 bytes of the input: the whole file, or the stored
/// `model.weights.h5` of a `.keras` archive (whose `config.json` is
/// returned too).
fn locate(file: &Arc<SharedFile>, model: &mut Model) -> Result<(u64, u64, Option<String>)> {
    let path = &file.path;
    let mut magic = [0u8; 4];
    if file.len < 4 || file.read_exact_at(0, &mut magic).is_err() || &magic != b"PK\x03\x04" {
        return Ok((0, file.len, None));
    }
    let mut zip = zip::ZipArchive::new(&file.file).map_err(|e| Error::malformed(path, format!("zip: {e}")))?;
    let config = match zip.by_name(KERAS_CONFIG) {
        Ok(entry) => {
            if entry.size() > MAX_JSON {
                return Err(Error::limit(path, format!("{KERAS_CONFIG} of {} bytes", entry.size())));
            }
            let mut s = String::new();
            std::io::Read::read_to_string(&mut std::io::Read::take(entry, MAX_JSON), &mut s)
                .map_err(|e| Error::malformed(path, format!("{KERAS_CONFIG}: {e}")))?;
            Some(s)
        }
        Err(_) => None,
    };
    if let Ok(entry) = zip.by_name("metadata.json") {
        if entry.size() <= MAX_JSON {
            let mut s = String::new();
            if std::io::Read::read_to_string(&mut std::io::Read::take(entry, MAX_JSON), &mut s).is_ok() {
                model.metadata.set("keras.metadata", Value::String(s));
            }
        }
    }
    let entry = zip
        .by_name(KERAS_WEIGHTS)
        .map_err(|_| Error::malformed(path, format!("a zip without {KERAS_WEIGHTS} (not a .keras archive)")))?;
    if entry.compression() != zip::CompressionMethod::Stored {
        return Err(Error::unsupported(format!(
            "{}: {KERAS_WEIGHTS} is compressed ({}); Keras stores it uncompressed. Extract it (unzip) and read the .h5",
            path.display(),
            entry.compression()
        )));
    }
    let (start, size) = (entry.data_start(), entry.size());
    if start.checked_add(size).is_none_or(|e| e > file.len) {
        return Err(Error::truncated(
            path,
            file.len,
            format!("{KERAS_WEIGHTS}: {size} bytes at {start} run past the end of the archive"),
        ));
    }
    model
        .notes
        .push(format!("{KERAS_WEIGHTS} at byte {start} of the archive"));
    Ok((start, size, config))
}

/// A reader error, naming the file and the object.
fn bad(path: &Path, object: &str, e: hdf5_reader::error::Error) -> Error {
    if object.is_empty() {
        Error::malformed(path, format!("HDF5: {e}"))
    } else {
        Error::malformed(path, format!("HDF5 object '{object}': {e}"))
    }
}

/// A string attribute (fixed or variable length, one element).
fn attr_text(g: &Group, name: &str) -> Option<String> {
    let a = g.attribute(name).ok()?;
    a.read_string().ok()
}

/// A string-array attribute, as Keras writes `layer_names`/`weight_names`:
/// whole, or split into `NAME0`, `NAME1`, … when too large for one header.
fn attr_list(path: &Path, g: &Group, gpath: &str, name: &str) -> Result<Option<Vec<String>>> {
    let attrs = g.attributes().map_err(|e| bad(path, gpath, e))?;
    let read = |a: &hdf5_reader::Attribute| {
        // A layer without weights has `weight_names = []`, which numpy
        // saves as an empty float64 array.
        if a.num_elements().is_ok_and(|n| n == 0) {
            return Ok(Vec::new());
        }
        a.read_strings()
            .map_err(|e| Error::malformed(path, format!("attribute '{}' of '{gpath}': {e}", a.name)))
    };
    if let Some(a) = attrs.iter().find(|a| a.name == name) {
        return read(a).map(Some);
    }
    let mut out = Vec::new();
    let mut any = false;
    for i in 0.. {
        let Some(a) = attrs.iter().find(|a| a.name == format!("{name}{i}")) else {
            break;
        };
        out.extend(read(a)?);
        any = true;
    }
    Ok(any.then_some(out))
}

/// The group holding Keras 2 weights (the root, or `model_weights/` of a
/// whole-model save), and its layer names.
fn keras2(path: &Path, root: &Group) -> Result<Option<(Group, String, Vec<String>)>> {
    if let Some(layers) = attr_list(path, root, "/", "layer_names")? {
        return Ok(Some((root.clone(), String::new(), layers)));
    }
    if let Ok(g) = root.group("model_weights") {
        if let Some(layers) = attr_list(path, &g, "model_weights", "layer_names")? {
            return Ok(Some((g, "model_weights".into(), layers)));
        }
    }
    Ok(None)
}

/// A walk of the file's groups, refusing loops and runaway sizes.
struct Walk<'a> {
    path: &'a Path,
    visited: HashSet<u64>,
    objects: usize,
    /// `name` attributes of Keras 3 `vars` groups, by group path.
    vars_names: HashMap<String, String>,
}

fn join(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_string()
    } else {
        format!("{prefix}/{name}")
    }
}

/// Names sorted as Keras numbers its variables (`vars/2` before `vars/10`),
/// else by their bytes, as h5py lists them.
fn natural(a: &str, b: &str) -> std::cmp::Ordering {
    match (a.parse::<u64>(), b.parse::<u64>()) {
        (Ok(x), Ok(y)) => x.cmp(&y),
        (Ok(_), Err(_)) => std::cmp::Ordering::Less,
        (Err(_), Ok(_)) => std::cmp::Ordering::Greater,
        _ => a.cmp(b),
    }
}

impl<'a> Walk<'a> {
    fn new(path: &'a Path) -> Self {
        Walk {
            path,
            visited: HashSet::new(),
            objects: 0,
            vars_names: HashMap::new(),
        }
    }

    fn count(&mut self, n: usize) -> Result<()> {
        self.objects = self.objects.saturating_add(n);
        if self.objects > MAX_OBJECTS {
            return Err(Error::limit(self.path, format!("more than {MAX_OBJECTS} HDF5 objects")));
        }
        Ok(())
    }

    /// Whether to walk into `g`: each group once, as h5py's `visititems`
    /// does (hard links may make loops, or reach a group twice).
    fn enter(&mut self, g: &Group, gpath: &str, depth: usize) -> Result<bool> {
        if depth > MAX_DEPTH {
            return Err(Error::limit(
                self.path,
                format!("HDF5 groups nested deeper than {MAX_DEPTH} at '{gpath}'"),
            ));
        }
        Ok(self.visited.insert(g.address()))
    }

    /// Every dataset under `g`, depth first, names sorted.
    fn everything(&mut self, g: &Group, gpath: &str) -> Result<Vec<Found>> {
        let mut out = Vec::new();
        self.visit(g, gpath, 0, &mut out)?;
        Ok(out)
    }

    fn visit(&mut self, g: &Group, gpath: &str, depth: usize, out: &mut Vec<Found>) -> Result<()> {
        if !self.enter(g, gpath, depth)? {
            return Ok(());
        }
        let (mut groups, mut datasets) = g.members().map_err(|e| bad(self.path, gpath, e))?;
        self.count(groups.len() + datasets.len())?;
        if gpath == "vars" || gpath.ends_with("/vars") {
            if let Some(n) = attr_text(g, "name") {
                self.vars_names.insert(gpath.to_string(), n);
            }
        }
        // Keras 3's layer folders are named by class, so this is not the
        // model's order; `keras3_order` restores it.
        datasets.sort_by(|a, b| natural(a.name(), b.name()));
        groups.sort_by(|a, b| natural(a.name(), b.name()));
        for ds in datasets {
            if !self.visited.insert(ds.address()) {
                continue;
            }
            let p = join(gpath, ds.name());
            out.push(Found {
                name: p.clone(),
                path: p,
                ds,
            });
        }
        for sub in groups {
            let p = join(gpath, sub.name());
            self.visit(&sub, &p, depth + 1, out)?;
        }
        Ok(())
    }

    /// Keras 2: each layer's `weight_names`, found under the layer's group.
    fn keras2(&mut self, g: &Group, prefix: &str, layers: &[String], by_path: bool) -> Result<Vec<Found>> {
        self.count(layers.len())?;
        let mut out = Vec::new();
        for layer in layers {
            let lpath = join(prefix, layer);
            let lg = g.group(layer).map_err(|e| bad(self.path, &lpath, e))?;
            let weights = attr_list(self.path, &lg, &lpath, "weight_names")?.unwrap_or_default();
            self.count(weights.len())?;
            for w in weights {
                let ds = self.dataset(&lg, &lpath, &w)?;
                let p = join(&lpath, &w);
                out.push(Found {
                    name: if by_path { p.clone() } else { w },
                    path: p,
                    ds,
                });
            }
        }
        Ok(out)
    }

    /// The dataset at `rel` (slash-separated) under `g`.
    fn dataset(&mut self, g: &Group, gpath: &str, rel: &str) -> Result<Dataset> {
        let parts: Vec<&str> = rel.split('/').filter(|p| !p.is_empty()).collect();
        let Some((last, dirs)) = parts.split_last() else {
            return Err(Error::malformed(self.path, format!("'{gpath}' names an empty weight")));
        };
        if dirs.len() > MAX_DEPTH {
            return Err(Error::limit(self.path, format!("weight name '{rel}' too deep")));
        }
        let mut cur = g.clone();
        let mut cpath = gpath.to_string();
        for d in dirs {
            cpath = join(&cpath, d);
            cur = cur.group(d).map_err(|e| bad(self.path, &cpath, e))?;
        }
        cur.dataset(last).map_err(|e| bad(self.path, &join(&cpath, last), e))
    }
}

/// Keras 3 names: each `layers/<dir>` of a dataset's path becomes the
/// layer's name (its `vars` group's `name` attribute, else the config's for
/// a top-level layer, else the folder's), other parts stay:
/// `layers/sequential/layers/dense/vars/0` → `inner/inner_dense/vars/0`.
/// Without file offsets to order by (see [`keras3_order`]), layers follow
/// the config's order.
fn keras3_names(found: &mut [Found], vars_names: &HashMap<String, String>, config: Option<&str>, by_path: bool) {
    let order = config.map(config_layers).unwrap_or_default();
    let from_config: HashMap<&str, &str> = order.iter().map(|(d, n)| (d.as_str(), n.as_str())).collect();
    if !by_path {
        for f in found.iter_mut() {
            f.name = keras3_name(&f.path, vars_names, &from_config);
        }
    }
    if !order.is_empty() {
        let rank: HashMap<&str, usize> = order.iter().enumerate().map(|(i, (d, _))| (d.as_str(), i)).collect();
        let key = |f: &Found| {
            let dir = f.path.strip_prefix("layers/").and_then(|r| r.split('/').next());
            dir.and_then(|d| rank.get(d).copied()).unwrap_or(usize::MAX)
        };
        found.sort_by_key(key);
    }
}

/// One dataset's Keras 3 name (see [`keras3_names`]).
fn keras3_name(path: &str, vars_names: &HashMap<String, String>, from_config: &HashMap<&str, &str>) -> String {
    let parts: Vec<&str> = path.split('/').collect();
    let mut out: Vec<&str> = Vec::with_capacity(parts.len());
    let mut i = 0;
    while i < parts.len() {
        if parts[i] == "layers" && i + 2 < parts.len() {
            let dir = parts[i + 1];
            let vars = format!("{}/vars", parts[..i + 2].join("/"));
            let name = vars_names
                .get(&vars)
                .map(String::as_str)
                .or_else(|| (i == 0).then(|| from_config.get(dir).copied()).flatten())
                .unwrap_or(dir);
            out.push(name);
            i += 2;
        } else {
            out.push(parts[i]);
            i += 1;
        }
    }
    out.join("/")
}

/// Keras 3 writes each variable's data as it walks the model, in
/// `model.weights` order: when every tensor lies in the file, that order is
/// their offsets' (the folders are named by class, so names do not tell).
fn keras3_order(tensors: &mut [Tensor]) {
    if tensors.iter().all(|t| t.location.is_some()) {
        tensors.sort_by_key(|t| t.location.as_ref().map(|l| l.offset));
    }
}

/// The top-level layers of a Keras 3 config, as `(directory, name)`: the
/// directory is the class name in snake case, numbered from the second of
/// a class on (`dense`, `dense_1`), as Keras 3 saves them; input layers
/// have no weights and no directory.
fn config_layers(config: &str) -> Vec<(String, String)> {
    let Ok(v) = serde_json::from_str::<serde_json::Value>(config) else {
        return Vec::new();
    };
    let Some(layers) = v.pointer("/config/layers").and_then(|l| l.as_array()) else {
        return Vec::new();
    };
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut out = Vec::new();
    for l in layers {
        let class = l.get("class_name").and_then(|c| c.as_str()).unwrap_or("");
        let name = l.pointer("/config/name").and_then(|n| n.as_str()).unwrap_or("");
        let snake = snake_case(class);
        let n = seen.entry(snake.clone()).or_insert(0);
        let dir = if *n == 0 { snake.clone() } else { format!("{snake}_{n}") };
        *n += 1;
        out.push((dir, name.to_string()));
    }
    out
}

/// A class name as Keras's `to_snake_case` writes it: `BatchNormalization`
/// → `batch_normalization`, `Conv2D` → `conv2d`, `LSTM` → `lstm`. (An
/// underscore before each capital that starts a lowercase run, and between
/// a lowercase letter and a capital; then lowercase.)
fn snake_case(s: &str) -> String {
    let c: Vec<char> = s.chars().filter(|c| c.is_alphanumeric() || *c == '_').collect();
    let mut one = Vec::with_capacity(c.len() + 4);
    let mut i = 0;
    while i < c.len() {
        let starts_word = c.get(i + 1).is_some_and(|n| n.is_ascii_uppercase())
            && c.get(i + 2).is_some_and(|n| n.is_ascii_lowercase());
        if starts_word {
            one.extend([c[i], '_', c[i + 1]]);
            i += 2;
            while i < c.len() && c[i].is_ascii_lowercase() {
                one.push(c[i]);
                i += 1;
            }
        } else {
            one.push(c[i]);
            i += 1;
        }
    }
    let mut out = String::with_capacity(one.len() + 4);
    let mut i = 0;
    while i < one.len() {
        if one[i].is_ascii_lowercase() && one.get(i + 1).is_some_and(|n| n.is_ascii_uppercase()) {
            out.push(one[i]);
            out.push('_');
            out.push(one[i + 1]);
            i += 2;
        } else {
            out.push(one[i]);
            i += 1;
        }
    }
    out.to_lowercase()
}

/// The IR type of an HDF5 numeric type, and whether it is big-endian.
fn dtype_of(dt: &Datatype, ds: &Dataset) -> Option<(DType, bool)> {
    let big = |o: &ByteOrder| matches!(o, ByteOrder::BigEndian);
    Some(match dt {
        Datatype::FloatingPoint { size, byte_order } => (float_type(ds, *size)?, big(byte_order)),
        Datatype::FixedPoint {
            size,
            signed,
            byte_order,
        } => (
            match (size, signed) {
                (1, true) => DType::I8,
                (1, false) => DType::U8,
                (2, true) => DType::I16,
                (2, false) => DType::U16,
                (4, true) => DType::I32,
                (4, false) => DType::U32,
                (8, true) => DType::I64,
                (8, false) => DType::U64,
                _ => return None,
            },
            big(byte_order),
        ),
        // numpy's bool, as h5py stores it: an enum FALSE=0, TRUE=1 over int8.
        Datatype::Enum { base, members }
            if matches!(**base, Datatype::FixedPoint { size: 1, .. })
                && members.len() == 2
                && members.iter().any(|m| m.name == "FALSE")
                && members.iter().any(|m| m.name == "TRUE") =>
        {
            (DType::Bool, false)
        }
        // Keras 3's bfloat16: opaque 2 bytes, tagged by a `dtype` attribute.
        Datatype::Opaque { size: 2, .. } => {
            let tag = ds.attribute("dtype").ok().and_then(|a| a.read_string().ok());
            match tag.as_deref() {
                Some("bfloat16") => (DType::BF16, false),
                _ => return None,
            }
        }
        _ => return None,
    })
}

/// The IR type of an HDF5 float, from its bit layout (the parsed type
/// keeps only the size): IEEE half, single and double, and bfloat16
/// (8-bit exponent, 7-bit mantissa). Any other layout is not guessed at.
fn float_type(ds: &Dataset, size: u8) -> Option<DType> {
    let raw = ds.raw_datatype().ok()?;
    // Properties after the 8-byte type header: bit offset, precision,
    // exponent location and size, mantissa location and size, bias.
    let p = raw.get(8..20)?;
    let offset = u16::from_le_bytes([p[0], p[1]]);
    let precision = u16::from_le_bytes([p[2], p[3]]);
    let (exp, mant) = (p[5], p[7]);
    let bias = u32::from_le_bytes([p[8], p[9], p[10], p[11]]);
    if offset != 0 || u32::from(precision) != u32::from(size) * 8 {
        return None;
    }
    Some(match (size, exp, mant, bias) {
        (2, 5, 10, 15) => DType::F16,
        (2, 8, 7, 127) => DType::BF16,
        (4, 8, 23, 127) => DType::F32,
        (8, 11, 52, 1023) => DType::F64,
        _ => return None,
    })
}

fn describe(dt: &Datatype) -> String {
    match dt {
        Datatype::FloatingPoint { size, .. } => format!("a {size}-byte float of a layout other than IEEE or bfloat16"),
        Datatype::String { .. } | Datatype::VarLen { .. } => "strings".into(),
        Datatype::Compound { .. } => "a compound type".into(),
        Datatype::Opaque { size, tag } => format!("opaque {size}-byte '{tag}'"),
        Datatype::Reference { .. } => "references".into(),
        Datatype::Array { .. } => "an array type".into(),
        _ => "an unsupported type".into(),
    }
}

/// The tensor of one dataset, or `None` when it is not numeric.
/// `span` is the base address (where HDF5 addresses count from) and the
/// end of the HDF5 bytes in the file.
fn tensor(path: &Path, h5: &Hdf5File, file: &Arc<SharedFile>, span: (u64, u64), f: &Found) -> Result<Option<Tensor>> {
    let (base, limit) = span;
    let Some((dtype, big)) = dtype_of(f.ds.dtype(), &f.ds) else {
        return Ok(None);
    };
    let shape = f.ds.shape().to_vec();
    let info = TensorInfo::new(f.name.clone(), dtype, shape.clone()).map_err(|e| e.in_file(path))?;
    let len = info.byte_len;
    let header = h5
        .get_or_parse_header(f.ds.address())
        .map_err(|e| bad(path, &f.path, e))?;
    let contiguous = header.messages.iter().find_map(|m| match m {
        HdfMessage::DataLayout(l) => match l.layout {
            hdf5_reader::messages::layout::DataLayout::Contiguous { address, size } => Some((address, size)),
            _ => None,
        },
        _ => None,
    });
    let compact = header.messages.iter().any(|m| {
        matches!(m, HdfMessage::DataLayout(l)
            if matches!(l.layout, hdf5_reader::messages::layout::DataLayout::Compact { .. }))
    });
    let external = header
        .messages
        .iter()
        .any(|m| matches!(m, HdfMessage::ExternalFiles(_)));
    if external {
        return Err(Error::unsupported(format!(
            "{}: dataset '{}' keeps its data in external files, which are never opened",
            path.display(),
            f.path
        )));
    }
    if f.ds.chunks().is_some() {
        // The chunk index is walked now (not the chunks), so that a damaged
        // one is reported by inspect too, not only when the data is read.
        f.ds.iter_chunks().map_err(|e| bad(path, &f.path, e))?;
    }
    let mut location = None;
    let data: Arc<dyn DataSource> = match contiguous {
        // An undefined address (all ones, at the file's offset size): never written.
        Some((address, size))
            if !hdf5_reader::io::Cursor::is_undefined_offset(address, h5.superblock().offset_size) && len > 0 =>
        {
            if size < len {
                return Err(Error::malformed(
                    path,
                    format!(
                        "dataset '{}': {size} bytes stored, its shape {shape:?} of {dtype} needs {len}",
                        f.path
                    ),
                ));
            }
            let offset = base.checked_add(address);
            let end = offset.and_then(|o| o.checked_add(len));
            match (offset, end) {
                (Some(offset), Some(end)) if end <= limit => {
                    location = Some(Location {
                        file: file.path.clone(),
                        offset,
                    });
                    Arc::new(FileRange {
                        file: file.clone(),
                        offset,
                        len,
                    })
                }
                _ => {
                    return Err(Error::truncated(
                        path,
                        file.len,
                        format!(
                            "dataset '{}': {len} bytes at address {address} run past the end of the file",
                            f.path
                        ),
                    ))
                }
            }
        }
        _ => {
            let stored = if f.ds.chunks().is_some() {
                Stored::Chunked
            } else if compact {
                Stored::Compact
            } else {
                Stored::Unwritten
            };
            Arc::new(Decoded::new(
                f.ds.clone(),
                stored,
                path,
                &f.path,
                shape,
                dtype.type_size(),
                len,
            ))
        }
    };
    let data: Arc<dyn DataSource> = if big && dtype.type_size() > 1 {
        Arc::new(ByteSwap::new(data, dtype.type_size())?)
    } else {
        data
    };
    let mut t = Tensor::new(info, data).map_err(|e| e.in_file(path))?;
    t.location = location;
    Ok(Some(t))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snake_case_as_keras_writes_it() {
        for (class, dir) in [
            ("BatchNormalization", "batch_normalization"),
            ("Conv2D", "conv2d"),
            ("Conv2DTranspose", "conv2d_transpose"),
            ("LSTM", "lstm"),
            ("Dense", "dense"),
            ("GlobalAveragePooling2D", "global_average_pooling2d"),
            ("MultiHeadAttention", "multi_head_attention"),
            ("GRUCell", "gru_cell"),
        ] {
            assert_eq!(snake_case(class), dir, "{class}");
        }
    }

    #[test]
    fn keras3_names_from_the_file_else_the_config() {
        let vars: HashMap<String, String> = [
            ("layers/sequential/vars".to_string(), "inner".to_string()),
            ("layers/sequential/layers/dense/vars".into(), "inner_dense".into()),
        ]
        .into();
        let config: HashMap<&str, &str> = [("conv2d", "conv"), ("sequential", "ignored")].into();
        for (path, name) in [
            ("layers/sequential/layers/dense/vars/0", "inner/inner_dense/vars/0"),
            // Older Keras 3 files have no `name` attributes: the config's.
            ("layers/conv2d/vars/1", "conv/vars/1"),
            // Neither: the folder; nested layers are not in the top-level config.
            ("layers/dense_2/vars/0", "dense_2/vars/0"),
            ("layers/lstm/cell/vars/2", "lstm/cell/vars/2"),
            ("vars/0", "vars/0"),
            ("optimizer/vars/3", "optimizer/vars/3"),
        ] {
            assert_eq!(keras3_name(path, &vars, &config), name, "{path}");
        }
    }

    #[test]
    fn config_layers_number_repeated_classes() {
        let c = r#"{"config": {"layers": [{"class_name": "InputLayer", "config": {"name": "in"}},
            {"class_name": "Dense", "config": {"name": "a"}}, {"class_name": "Dense", "config": {"name": "b"}}]}}"#;
        let got = config_layers(c);
        assert_eq!(
            got[1..],
            [("dense".to_string(), "a".to_string()), ("dense_1".into(), "b".into())]
        );
    }
}
