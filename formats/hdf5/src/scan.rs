//! `scan` for Keras: its model configs say which layers Keras builds. A
//! `Lambda` layer carries marshalled Python bytecode that Keras runs when
//! it loads the model unless `safe_mode` is on (CVE-2024-3660), and a
//! custom object names a module Keras imports to build it. Read from a
//! `.keras` archive's `config.json`, and from the JSON string attributes
//! (`model_config`, `training_config`) an `.h5` model keeps on its root
//! group and on `model_weights/`, as the HDF5 reader parses them. A
//! `.keras` archive's other members are scanned as torch.load would read
//! them (pickles under any name).

use crate::source::Slice;
use crate::{keras_rules, pyjson};
use modelconv_ir::scan::{Finding, Scanned, Scanner, Stream, Verdict};
use modelconv_npy::pickled::NUMPY;
use modelconv_pickle::scan::{scan_entries, OwnScan, ZipMembers};
use modelconv_pickle::zipscan::{entries, Entry};
use modelconv_pickle::{Chain, Constructors, PYTHON};
use serde_json::Value as Json;
use std::collections::HashSet;
use std::path::Path;
use std::sync::{Arc, Mutex};

/// Largest config parsed (Python's json takes any size; the bytes are
/// already in memory, and the parsed tree costs a few times as much).
const MAX_CONFIG: usize = 512 << 20;

/// A stream for one config (none when it names nothing to flag): each
/// thing named once, with how often.
fn stream(config: &Json, part: String) -> Option<Stream> {
    let mut globals: Vec<Finding> = Vec::new();
    // Hashed: a hostile config may name a million distinct things.
    let mut at: std::collections::HashMap<(String, String), usize> = std::collections::HashMap::new();
    for f in keras_rules::findings(config) {
        match at.entry((f.module.clone(), f.name.clone())) {
            std::collections::hash_map::Entry::Occupied(i) => globals[*i.get()].uses += 1,
            std::collections::hash_map::Entry::Vacant(slot) => {
                slot.insert(globals.len());
                globals.push(f);
            }
        }
    }
    (!globals.is_empty()).then(|| Stream::of_findings(part, globals))
}

/// A `.keras` archive's `config.json`.
fn scan_config(bytes: &[u8], part: &str, out: &mut Vec<Stream>) {
    if bytes.len() > MAX_CONFIG {
        return out.push(Stream::unreadable(
            part,
            format!("a model config of {} bytes", bytes.len()),
        ));
    }
    match pyjson::loads_bytes(bytes) {
        Ok(v) => out.extend(stream(&v, format!("{part} (Keras model config)"))),
        Err(e) => out.push(Stream::unreadable(
            part,
            format!("a model config that is not JSON: {e}"),
        )),
    }
}

/// The Keras configs an HDF5 model keeps as JSON string attributes of its
/// root group and of `model_weights/`. A file the HDF5 reader cannot
/// parse is reported as not inspected, never as safe.
fn scan_h5(path: &Path, len: u64, out: &mut Vec<Stream>) {
    if let Err(why) = h5_configs(path, len, out) {
        out.push(Stream::unreadable("HDF5 attributes", why));
    }
}

fn h5_configs(path: &Path, len: u64, out: &mut Vec<Stream>) -> Result<(), String> {
    let file = modelconv_ir::SharedFile::open(path).map_err(|e| e.to_string())?;
    let storage = Arc::new(Slice { file, start: 0, len });
    let links = Arc::new(LinkRecorder::default());
    let options = hdf5_reader::OpenOptions::default().with_external_link_resolver(links.clone());
    let h5 = hdf5_reader::Hdf5File::from_storage_with_options(storage, options).map_err(|e| format!("HDF5: {e}"))?;
    let root = h5.root_group().map_err(|e| format!("HDF5 root group: {e}"))?;
    let mut walk = Walk {
        h5: &h5,
        seen: HashSet::new(),
        raw_files: Vec::new(),
        virtual_in: Vec::new(),
    };
    walk.group(&root, 0).map_err(|e| format!("HDF5 groups: {e}"))?;
    let names = std::mem::take(&mut *links.0.lock().unwrap_or_else(|p| p.into_inner()));
    let found: Vec<Finding> = names.into_iter().map(|name| external_link(path, name)).collect();
    if !found.is_empty() {
        out.push(Stream::of_findings("HDF5 external links".into(), found));
    }
    let raw: Vec<Finding> = walk
        .raw_files
        .into_iter()
        .map(|(ds, file)| external_raw(path, ds, file))
        .collect();
    if !raw.is_empty() {
        out.push(Stream::of_findings("HDF5 external raw data".into(), raw));
    }
    let virtual_: Vec<Finding> = walk.virtual_in.into_iter().map(virtual_dataset).collect();
    if !virtual_.is_empty() {
        out.push(Stream::of_findings("HDF5 virtual datasets".into(), virtual_));
    }
    let groups = [
        Some(("/", root.clone())),
        root.group("model_weights").ok().map(|g| ("/model_weights", g)),
    ];
    for (gpath, g) in groups.into_iter().flatten() {
        let attrs = g.attributes().map_err(|e| format!("attributes of {gpath}: {e}"))?;
        for a in attrs {
            // Keras reads these two by name; any other JSON-looking
            // attribute (a decoy, a copy) is read too.
            let by_name = matches!(a.name.as_str(), "model_config" | "training_config");
            let part = format!("attribute {} of {gpath} (Keras model config)", a.name);
            let text = match a.read_string() {
                Ok(t) => t,
                Err(e) if by_name => {
                    out.push(Stream::unreadable(&part, format!("not a string attribute: {e}")));
                    continue;
                }
                Err(_) => continue,
            };
            if !by_name && !text.trim_start().starts_with('{') {
                continue;
            }
            if text.len() > MAX_CONFIG {
                out.push(Stream::unreadable(&part, format!("a config of {} bytes", text.len())));
                continue;
            }
            match pyjson::loads_str(&text) {
                Ok(v) => out.extend(stream(&v, part)),
                Err(e) => out.push(Stream::unreadable(&part, format!("not JSON: {e}"))),
            }
        }
    }
    Ok(())
}

/// Records the file each external link names and opens none: h5py opens
/// them (relative to the working directory, the file's folder or
/// HDF5_EXT_PREFIX) when Keras reads the linked group.
#[derive(Default)]
struct LinkRecorder(Mutex<Vec<String>>);

impl hdf5_reader::ExternalLinkResolver for LinkRecorder {
    fn resolve_external_link(&self, filename: &str) -> hdf5_reader::error::Result<Option<hdf5_reader::Hdf5File>> {
        let mut names = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if names.len() < MAX_LINKS && !names.iter().any(|n| n == filename) {
            names.push(filename.to_string());
        }
        Ok(None)
    }
}

/// Distinct external link targets reported (more are not listed).
const MAX_LINKS: usize = 1024;
/// Groups visited at most, and how deep: a file past either is not
/// inspected whole, so it is reported unreadable.
const MAX_GROUPS: usize = 1 << 20;
const MAX_GROUP_DEPTH: usize = 256;

/// The walk of every group once (hard links may form cycles), so that
/// every external link is resolved (and so recorded), with what datasets
/// name outside the file: external raw data files (the External Data
/// Files message, whose names sit in a local heap) and virtual datasets
/// (layout class 3, which the reader does not parse: the group holding
/// one is reported and its other members are not walked).
struct Walk<'h> {
    h5: &'h hdf5_reader::Hdf5File,
    seen: HashSet<u64>,
    /// (dataset, file its raw data is read from).
    raw_files: Vec<(String, String)>,
    /// Groups holding a virtual dataset.
    virtual_in: Vec<String>,
}

impl Walk<'_> {
    fn group(&mut self, g: &hdf5_reader::group::Group, depth: usize) -> Result<(), String> {
        if depth > MAX_GROUP_DEPTH || self.seen.len() >= MAX_GROUPS {
            return Err(format!(
                "more than {MAX_GROUPS} groups or deeper than {MAX_GROUP_DEPTH}"
            ));
        }
        if !self.seen.insert(g.address()) {
            return Ok(());
        }
        let (groups, datasets) = match g.members() {
            Ok(m) => m,
            Err(e) if e.to_string().contains("unsupported layout class 3") => {
                self.virtual_in.push(g.name().to_string());
                return Ok(());
            }
            Err(e) => return Err(format!("{}: {e}", g.name())),
        };
        for ds in &datasets {
            self.external_files(ds)?;
        }
        for child in groups {
            self.group(&child, depth + 1)?;
        }
        Ok(())
    }

    /// The files an External Data Files message names for `ds`.
    fn external_files(&mut self, ds: &hdf5_reader::Dataset) -> Result<(), String> {
        let header = self
            .h5
            .get_or_parse_header(ds.address())
            .map_err(|e| format!("{}: {e}", ds.name()))?;
        let sb = self.h5.superblock();
        for m in &header.messages {
            let hdf5_reader::messages::HdfMessage::ExternalFiles(efl) = m else {
                continue;
            };
            let heap = hdf5_reader::local_heap::LocalHeap::parse_at_storage(
                self.h5.storage(),
                efl.heap_address,
                sb.offset_size,
                sb.length_size,
            )
            .map_err(|e| format!("{}: external file names: {e}", ds.name()))?;
            for slot in efl.slots.iter().take(MAX_LINKS) {
                let name = heap
                    .get_string_storage(slot.name_offset, self.h5.storage())
                    .map_err(|e| format!("{}: external file name: {e}", ds.name()))?;
                if self.raw_files.len() < MAX_LINKS && !self.raw_files.iter().any(|(_, n)| *n == name) {
                    self.raw_files.push((ds.name().to_string(), name));
                }
            }
        }
        Ok(())
    }
}

const RAW: &str = "external raw data: h5py reads the dataset's bytes from the named file (relative to the working directory or HDF5_EXTFILE_PREFIX)";
const VIRTUAL: &str =
    "a virtual dataset: h5py reads its data from the source files its mapping names (not decoded here)";

/// A file a dataset's raw data is read from.
fn external_raw(model: &Path, dataset: String, file: String) -> Finding {
    file_named(model, format!("HDF5 external raw data of {dataset}"), file, RAW)
}

fn virtual_dataset(group: String) -> Finding {
    Finding {
        module: "HDF5 virtual dataset in group".into(),
        name: group,
        offset: 0,
        uses: 1,
        verdict: Verdict::Suspicious,
        reason: VIRTUAL,
        separator: Finding::LABELLED,
    }
}

const LINK: &str = "an HDF5 external link: h5py opens the named file (relative to the working directory or the model's folder) when the group is read";

fn external_link(model: &Path, name: String) -> Finding {
    file_named(model, "HDF5 external link".into(), name, LINK)
}

/// A file the model makes h5py open: dangerous outside the model's folder,
/// suspicious (for `beside`'s reason) within it.
fn file_named(model: &Path, what: String, file: String, beside: &'static str) -> Finding {
    let outside = modelconv_ir::scan::path_leaves_folder(model, &file);
    Finding {
        module: what,
        name: file,
        offset: 0,
        uses: 1,
        verdict: if outside.is_some() {
            Verdict::Dangerous
        } else {
            Verdict::Suspicious
        },
        reason: outside.unwrap_or(beside),
        separator: Finding::LABELLED,
    }
}

const HDF5_MAGIC: &[u8] = b"\x89HDF\r\n\x1a\n";

/// A `.keras` archive: `config.json` read as Keras reads it, every other
/// member as torch.load would read it.
struct KerasZip;

impl ZipMembers for KerasZip {
    fn data(&self) -> &'static dyn Constructors {
        &MEMBER_DATA
    }
    fn own(&self, name: &str) -> Option<&OwnScan> {
        let read_as = as_python_names_it(name);
        if read_as == crate::KERAS_CONFIG {
            Some(&keras_config)
        } else if read_as.ends_with(".npz") {
            Some(&npz_weights)
        } else {
            None
        }
    }
    fn embedded(&self, head: &[u8]) -> Option<Option<(usize, &'static str)>> {
        modelconv_npy::pickled::embedded_pickle(head)
    }
}

/// A member's name as Python's `zipfile` reads it (cut at the first NUL),
/// and without a byte-order mark, so that `config.json\0x` and a
/// BOM-prefixed name are read as the config they may stand for.
fn as_python_names_it(name: &str) -> &str {
    let cut = name.split('\0').next().unwrap_or(name);
    cut.strip_prefix('\u{feff}').unwrap_or(cut)
}

fn keras_config(bytes: &[u8], out: &mut Vec<Stream>) {
    scan_config(bytes, crate::KERAS_CONFIG, out)
}

/// Weights Keras 3 keeps as `model.weights.npz`: `np.load(allow_pickle=True)`
/// unpickles any object array in it.
fn npz_weights(bytes: &[u8], out: &mut Vec<Stream>) {
    modelconv_pickle::scan::scan_zip(bytes, &NpzInKeras, out)
}

/// The members of an `.npz` inside a `.keras` archive (no further nesting).
struct NpzInKeras;

impl ZipMembers for NpzInKeras {
    fn data(&self) -> &'static dyn Constructors {
        &MEMBER_DATA
    }
    fn embedded(&self, head: &[u8]) -> Option<Option<(usize, &'static str)>> {
        modelconv_npy::pickled::embedded_pickle(head)
    }
}

/// What a pickle in a `.keras` archive builds as data: Python's containers
/// and numpy's arrays.
static MEMBER_DATA: Chain = Chain(&[&PYTHON, &NUMPY]);

/// Whether a zip's central directory names a `.keras` archive's members.
fn is_keras_zip(entries: &[Entry]) -> bool {
    entries
        .iter()
        .map(|e| as_python_names_it(&e.name))
        .any(|n| n == "metadata.json" || n == crate::KERAS_CONFIG || n.starts_with("model.weights."))
}

pub struct KerasScanner;

impl Scanner for KerasScanner {
    fn container(&self, path: &Path, bytes: &[u8]) -> Option<Scanned> {
        let mut streams = Vec::new();
        let (kind, read_whole_too) = if has_hdf5_superblock(bytes) {
            scan_h5(path, bytes.len() as u64, &mut streams);
            ("HDF5", true)
        } else if bytes.starts_with(b"PK\x03\x04") {
            // A zip whose directory cannot be read is the generic zip scan's to report.
            let entries = entries(bytes).filter(|es| is_keras_zip(es))?;
            scan_entries(bytes, &entries, &KerasZip, &mut streams);
            ("zip", false)
        } else if path.file_name().is_some_and(|n| n == crate::KERAS_CONFIG) {
            // The Keras directory format: a folder whose config.json is
            // a model config (a top-level class_name, as Keras needs).
            let config = pyjson::loads_bytes(bytes).ok()?;
            config.get("class_name")?;
            streams.extend(stream(&config, "Keras model config".into()));
            ("Keras model config", true)
        } else {
            return None;
        };
        Some(Scanned::new(kind, streams, read_whole_too))
    }
}

/// Whether the HDF5 signature starts the file or follows a user block
/// (at 512, 1024, 2048, … bytes, where libhdf5 looks for it).
fn has_hdf5_superblock(bytes: &[u8]) -> bool {
    std::iter::once(0)
        .chain(std::iter::successors(Some(512usize), |o| o.checked_mul(2)))
        .take_while(|&o| o < bytes.len())
        .any(|o| bytes[o..].starts_with(HDF5_MAGIC))
}
