//! PyTorch checkpoint containers: the zip format (`<prefix>/data.pkl` +
//! stored `<prefix>/data/<key>` entries) and the legacy format (five
//! pickles, then each storage's element count and bytes). Tensors become
//! lazy views of storages; nothing is read until a writer asks.

use crate::constructors::{torch_dtype, StorageRef, TensorRef, TORCH, TORCHSCRIPT};
use crate::tree::{walk, Found};
use modelconv_ir::{view, DType, DataSource, Error, FileRange, Location, Result, SharedFile, Tensor, TensorInfo};
use modelconv_npy::pickled::ArrayTensors;
use modelconv_pickle::value::{Root, Value};
use modelconv_pickle::vm::{PersistentLoad, Vm};
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

/// The legacy format's magic number (the first pickle's value).
const LEGACY_MAGIC: [u8; 10] = [0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19];
/// Largest pickle read into memory.
const MAX_PICKLE: u64 = 1 << 30;

/// The IR type of a torch dtype name (`float32`, `bfloat16`, …: numpy's names).
pub fn dtype_of(torch: &str) -> Option<DType> {
    modelconv_npy::dtype_from_name(torch)
}

/// Storages as persistent ids name them: (`storage`, type, key, location, size[, view]).
struct StorageIds;

impl PersistentLoad for StorageIds {
    fn load(&mut self, pid: &Value) -> std::result::Result<Value, String> {
        let items = pid.items().ok_or("persistent id is not a tuple")?;
        if items.first().and_then(Value::as_str) != Some("storage") {
            return Err("persistent id is not a storage".into());
        }
        let ty = match items.get(1) {
            Some(Value::Global(g)) => g.clone(),
            _ => return Err("storage type is not a global".into()),
        };
        let dtype = if ty.1 == "UntypedStorage" {
            None
        } else {
            Some(
                torch_dtype(&ty.1)
                    .ok_or(format!("unknown storage type torch.{}", ty.1))?
                    .to_string(),
            )
        };
        let key = match items.get(2) {
            Some(Value::Str(s)) => s.to_string(),
            Some(Value::Int(i)) => i.to_string(),
            _ => return Err("storage key is not a string".into()),
        };
        // Legacy views: (view_key, offset, size) as the sixth item.
        let view_offset = match items.get(5).and_then(Value::items).as_deref() {
            Some([_, off, _]) => off
                .as_int()
                .and_then(|o| u64::try_from(o).ok())
                .ok_or("bad view offset")?,
            _ => 0,
        };
        Ok(Value::new_object(StorageRef {
            key,
            dtype,
            view_offset,
        }))
    }
}

/// Where each storage's bytes lie in the file.
type StorageMap = HashMap<String, (u64, u64)>;

/// Reads a zip checkpoint: the pickle and the byte ranges of its storages.
/// A zip checkpoint's pickle, storages, byte order, and for a TorchScript
/// archive the parameter and buffer names its classes declare.
type ZipRead = (Value, StorageMap, bool, Option<crate::torchscript::Classes>);

fn read_zip(file: &SharedFile) -> Result<ZipRead> {
    let path = &file.path;
    let mut zip = zip::ZipArchive::new(&file.file).map_err(|e| Error::malformed(path, format!("zip: {e}")))?;
    let names: Vec<String> = zip.file_names().map(str::to_string).collect();
    let pkl = names
        .iter()
        .filter(|n| n.ends_with("data.pkl"))
        .min_by_key(|n| n.len())
        .ok_or_else(|| Error::malformed(path, "zip holds no data.pkl: not a PyTorch checkpoint"))?
        .clone();
    let prefix = pkl.trim_end_matches("data.pkl").to_string();
    let mut big_endian = false;
    if let Some(bo) = names.iter().find(|n| **n == format!("{prefix}byteorder")) {
        let mut e = zip
            .by_name(bo)
            .map_err(|e| Error::malformed(path, format!("zip: {e}")))?;
        let mut s = String::new();
        std::io::Read::read_to_string(&mut std::io::Read::take(&mut e, 16), &mut s).ok();
        big_endian = match s.trim() {
            "little" => false,
            "big" => true,
            other => {
                return Err(Error::malformed(
                    path,
                    format!("byteorder is '{other}', expected little or big"),
                ))
            }
        };
    }
    let mut storages = StorageMap::new();
    let data_prefix = format!("{prefix}data/");
    for i in 0..zip.len() {
        let e = zip
            .by_index_raw(i)
            .map_err(|e| Error::malformed(path, format!("zip entry {i}: {e}")))?;
        let name = e.name().to_string();
        if let Some(key) = name.strip_prefix(&data_prefix) {
            if e.compression() != zip::CompressionMethod::Stored {
                return Err(Error::unsupported(format!(
                    "{}: storage {name} is compressed; torch writes them stored",
                    path.display()
                )));
            }
            let start = e.data_start();
            let end = start.checked_add(e.size()).filter(|&end| end <= file.len);
            if end.is_none() {
                return Err(Error::truncated(
                    path,
                    start,
                    format!(
                        "zip entry {name}: {} bytes at byte {start} run past the end of the {}-byte file",
                        e.size(),
                        file.len
                    ),
                ));
            }
            storages.insert(key.to_string(), (start, e.size()));
        }
    }
    let mut e = zip
        .by_name(&pkl)
        .map_err(|e| Error::malformed(path, format!("zip: {e}")))?;
    if e.size() > MAX_PICKLE.min(file.len) {
        return Err(Error::limit(
            path,
            format!(
                "{pkl} claims {} bytes, over the file's size or the {MAX_PICKLE}-byte pickle limit",
                e.size()
            ),
        ));
    }
    // Inflate no more than the declared size (bounded above by the file's
    // length) and one byte: a member that inflates past it (a deflate bomb
    // under a small declared size) is refused there, not followed.
    let declared = e.size();
    let mut data = Vec::with_capacity(declared as usize);
    std::io::Read::read_to_end(&mut std::io::Read::take(&mut e, declared + 1), &mut data)
        .map_err(|err| Error::malformed(path, format!("{pkl}: {err}")))?;
    if data.len() as u64 > declared {
        return Err(Error::malformed(
            path,
            format!("{pkl} inflates past the {declared} bytes its zip header declares"),
        ));
    }
    drop(e);
    // TorchScript (torch.jit.save): code/ beside data.pkl. Its classes are
    // records; the code is read only for their parameter and buffer names.
    let code_prefix = format!("{prefix}code/");
    let classes = if names.iter().any(|n| n.starts_with(&code_prefix)) {
        Some(crate::torchscript::classes(&mut zip, &code_prefix, path)?)
    } else {
        None
    };
    let mut ids = StorageIds;
    let constructors = if classes.is_some() { &TORCHSCRIPT } else { &TORCH };
    let value = modelconv_pickle::load_whole(path, &pkl, &data, Some(&mut ids), constructors)?;
    Ok((value.into_inner(), storages, big_endian, classes))
}

/// True when the file starts like a legacy torch checkpoint.
pub fn is_legacy(head: &[u8]) -> bool {
    head.len() >= 14 && head[0] == 0x80 && head[2] == 0x8a && head[3] == 10 && head[4..14] == LEGACY_MAGIC
}

/// Reads a legacy checkpoint.
fn read_legacy(
    file: &SharedFile,
    bytes: &[u8],
    dtypes: &dyn Fn(&Value) -> Result<HashMap<String, String>>,
) -> Result<(Value, StorageMap, bool)> {
    let path = &file.path;
    let mut pos = 0usize;
    let mut next = |ids: Option<&mut dyn PersistentLoad>, what: &str| -> Result<Root> {
        let mut vm = Vm::new(&bytes[pos..], ids, &TORCH);
        let v = vm.run().map_err(|e| e.into_error(path, what))?;
        pos += vm.position();
        Ok(Root(v))
    };
    let magic = next(None, "magic number")?;
    if !matches!(*magic, Value::BigInt(_)) {
        return Err(Error::malformed(path, "legacy magic number missing"));
    }
    if next(None, "protocol version")?.as_int() != Some(1001) {
        return Err(Error::malformed(path, "legacy protocol version is not 1001"));
    }
    let sys_info = next(None, "sys_info")?;
    let big_endian = match &*sys_info {
        Value::Dict(d) => d
            .borrow()
            .iter()
            .any(|(k, v)| k.as_str() == Some("little_endian") && matches!(v, Value::Bool(false))),
        _ => false,
    };
    let mut ids = StorageIds;
    let value = next(Some(&mut ids), "data pickle")?;
    let keys = next(None, "storage keys")?;
    let keys: Vec<String> = keys
        .items()
        .ok_or_else(|| Error::malformed(path, "storage key list is not a list"))?
        .iter()
        .map(|k| {
            k.as_str()
                .map(str::to_string)
                .ok_or_else(|| Error::malformed(path, "storage key is not a string"))
        })
        .collect::<Result<_>>()?;
    let types = dtypes(&value)?;
    let mut storages = StorageMap::new();
    let mut off = pos as u64;
    for key in keys {
        let count_end = off.checked_add(8).filter(|&e| e <= file.len).ok_or_else(|| {
            Error::truncated(
                path,
                off,
                format!("storage {key}: size header at byte {off} past the end"),
            )
        })?;
        let mut n = [0u8; 8];
        n.copy_from_slice(&bytes[off as usize..count_end as usize]);
        let count = u64::from_le_bytes(n);
        let es = types.get(&key).and_then(|t| dtype_of(t)).map_or(1, |d| d.type_size());
        let len = count
            .checked_mul(es)
            .ok_or_else(|| Error::malformed(path, format!("storage {key}: size overflows")))?;
        let end = count_end.checked_add(len).filter(|&e| e <= file.len).ok_or_else(|| {
            Error::truncated(
                path,
                count_end,
                format!("storage {key}: {len} bytes at byte {count_end} run past the end of the file"),
            )
        })?;
        storages.insert(key, (count_end, len));
        off = end;
    }
    Ok((value.into_inner(), storages, big_endian))
}

/// dtype of every storage, from the tensors that use it (legacy files store
/// element counts, so the element size must be known).
fn storage_dtypes(v: &Value) -> Result<HashMap<String, String>> {
    let mut types = HashMap::new();
    walk(v, "", |_, x| {
        if let Some(t) = x.object::<TensorRef>() {
            types.insert(t.storage.key.clone(), t.dtype.clone());
        }
    })?;
    Ok(types)
}

/// A view of `storage` (elements of `es` bytes) by torch's offset, size and
/// strides, through the IR's strided view; checks the view stays inside.
fn view(
    storage: Arc<dyn DataSource>,
    es: u64,
    offset: u64,
    size: &[u64],
    stride: &[i64],
) -> std::result::Result<Arc<dyn DataSource>, String> {
    let stride: Vec<u64> = stride
        .iter()
        .map(|&s| u64::try_from(s).map_err(|_| "negative stride".to_string()))
        .collect::<std::result::Result<_, _>>()?;
    view::strided(storage, es, offset, size, &stride).map_err(|e| e.to_string())
}

/// Opens a checkpoint: the unpickled object, and a function that turns a
/// found tensor into an IR tensor.
pub struct Checkpoint {
    pub file: Arc<SharedFile>,
    pub root: Root,
    storages: StorageMap,
    /// Storages hold big-endian elements (converted on read).
    pub big_endian: bool,
    /// A TorchScript archive: its classes' parameter and buffer names.
    pub torchscript: Option<crate::torchscript::Classes>,
    /// numpy arrays from the pickle, in memory once each (by identity).
    arrays: ArrayTensors,
}

impl Checkpoint {
    pub fn open(path: &Path) -> Result<Self> {
        let file = SharedFile::open(path)?;
        let mut head = [0u8; 14];
        let n = file.len.min(14) as usize;
        file.read_exact_at(0, &mut head[..n])?;
        let (root, storages, big_endian, torchscript) = if head.starts_with(b"PK\x03\x04") {
            read_zip(&file)?
        } else if is_legacy(&head[..n]) {
            // Mapped, not read: only the pickles' pages are touched.
            let bytes = file.mapped()?;
            let (root, storages, big_endian) = read_legacy(&file, bytes, &storage_dtypes)?;
            (root, storages, big_endian, None)
        } else {
            // Anything else is tried as a bare pickle stream (any protocol):
            // data only, no storages; the VM says where it is not one.
            let root = modelconv_pickle::load_whole(path, "pickle", file.mapped()?, None, &TORCH)?;
            (root.into_inner(), StorageMap::new(), false, None)
        };
        Ok(Checkpoint {
            file,
            root: Root(root),
            storages,
            big_endian,
            torchscript,
            arrays: Default::default(),
        })
    }

    /// The IR tensor for a found tensor or array.
    pub fn tensor(&self, name: &str, found: &Found) -> Result<Tensor> {
        let path = &self.file.path;
        let bad = |msg: String| Error::malformed(path, format!("tensor '{name}': {msg}"));
        match found {
            Found::Tensor(t) => {
                let dtype = dtype_of(&t.dtype)
                    .ok_or_else(|| bad(format!("dtype {} has no safetensors equivalent", t.dtype)))?;
                let (start, len) = *self
                    .storages
                    .get(&t.storage.key)
                    .ok_or_else(|| bad(format!("storage '{}' is missing", t.storage.key)))?;
                let storage: Arc<dyn DataSource> = Arc::new(FileRange {
                    file: self.file.clone(),
                    offset: start,
                    len,
                });
                let mut data = view(storage, dtype.type_size(), t.offset, &t.size, &t.stride).map_err(bad)?;
                // Swapped after the gather, so the gather can read the file's mapping.
                if self.big_endian && dtype.type_size() > 1 {
                    data = Arc::new(view::ByteSwap::new(data, dtype.type_size()).map_err(|e| bad(e.to_string()))?);
                }
                let info = TensorInfo::new(name, dtype, t.size.clone()).map_err(|e| e.in_file(path))?;
                let location = data.file_range().filter(|_| !self.big_endian).map(|(_, o)| Location {
                    file: path.clone(),
                    offset: o,
                });
                let mut tensor = Tensor::new(info, data).map_err(|e| e.in_file(path))?;
                tensor.location = location;
                Ok(tensor)
            }
            Found::Array(a) => self.arrays.tensor(path, name, a),
        }
    }
}
