//! `scan` of ONNX models: the files a model makes its loader read.
//!
//! ONNX carries no code, but a tensor whose `data_location` is EXTERNAL
//! names a file by its `location` entry, and `onnx.load` /
//! onnxruntime open it relative to the model's folder. A location that is
//! absolute, climbs with `..`, names a drive, or resolves through a
//! symlink outside the folder makes the loader read any file the user can
//! (onnx's path traversal advisories, CVE-2022-25882 and CVE-2024-27318):
//! the weights then carry `/etc/shadow` or an SSH key to whoever gets the
//! converted model. Every tensor is visited where a loader finds one: the
//! graph's initializers and sparse initializers, node attributes (tensors
//! and subgraphs, recursively), functions and training graphs.

use modelconv_ir::scan::{path_leaves_folder, Finding, Scanned, Scanner, Stream, Verdict};
use modelconv_ir::wire::{fields, Wire};
use std::path::Path;

/// Graphs nest through node attributes; a loader recurses, so do we, to
/// this depth (real models nest a handful of levels).
const MAX_DEPTH: usize = 64;

/// TensorProto.DataLocation.EXTERNAL.
const EXTERNAL: u64 = 1;

pub(crate) static SCANNER: OnnxScanner = OnnxScanner;

pub(crate) struct OnnxScanner;

impl Scanner for OnnxScanner {
    fn container(&self, path: &Path, bytes: &[u8]) -> Option<Scanned> {
        if !crate::looks_like_model_proto(bytes) {
            return None;
        }
        let part = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut walk = Walk {
            file: bytes,
            model: path,
            found: Vec::new(),
        };
        let stream = match walk.message(bytes, Kind::Model, 0) {
            Ok(()) => Stream::of_findings(part, walk.found),
            Err(why) => Stream::unreadable(&part, format!("not a readable ONNX protobuf: {why}")),
        };
        Some(Scanned::new("onnx", vec![stream], true))
    }
}

/// The protobuf messages on the way to a TensorProto, with the fields of
/// each that lead on (field numbers from onnx.proto).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Model,
    Graph,
    Node,
    Attribute,
    Tensor,
    SparseTensor,
    Function,
    TrainingInfo,
    StringEntry,
}

impl Kind {
    fn child(self, field: u64) -> Option<Kind> {
        use Kind::*;
        Some(match (self, field) {
            (Model, 7) => Graph,
            (Model, 20) => TrainingInfo,
            (Model, 25) => Function,
            (TrainingInfo, 1 | 3) => Graph,
            (Graph, 1) | (Function, 7) => Node,
            (Graph, 5) | (Attribute, 5 | 10) | (SparseTensor, 1 | 2) => Tensor,
            (Graph, 15) | (Attribute, 22 | 23) => SparseTensor,
            (Attribute, 6 | 11) => Graph,
            (Node, 5) => Attribute,
            (Tensor, 13) => StringEntry,
            _ => return None,
        })
    }
}

struct Walk<'p> {
    /// The whole file: findings name their tensor's byte offset in it.
    file: &'p [u8],
    model: &'p Path,
    found: Vec<Finding>,
}

impl Walk<'_> {
    fn message(&mut self, b: &[u8], kind: Kind, depth: usize) -> Result<(), String> {
        if depth > MAX_DEPTH {
            return Err(format!("messages nest deeper than {MAX_DEPTH} levels"));
        }
        if kind == Kind::Tensor {
            return self.tensor(b);
        }
        for (n, value) in fields(b)? {
            if let (Wire::Bytes(body), Some(child)) = (value, kind.child(n)) {
                self.message(body, child, depth + 1)?;
            }
        }
        Ok(())
    }

    /// A TensorProto: its name, whether its data is external, and where.
    fn tensor(&mut self, b: &[u8]) -> Result<(), String> {
        let (mut name, mut external, mut location) = (String::new(), false, None);
        for field in fields(b)? {
            match field {
                (8, Wire::Bytes(v)) => name = String::from_utf8_lossy(v).into_owned(),
                (14, Wire::Varint(v)) => external = v == EXTERNAL,
                (13, Wire::Bytes(entry)) => {
                    if let Some(loc) = location_entry(entry)? {
                        location = Some(loc);
                    }
                }
                _ => {}
            }
        }
        if let (true, Some(loc)) = (external, location) {
            if let Some(reason) = path_leaves_folder(self.model, &loc) {
                self.found.push(Finding {
                    module: format!("external data of tensor {name}"),
                    name: loc,
                    offset: b.as_ptr() as usize - self.file.as_ptr() as usize,
                    uses: 1,
                    verdict: Verdict::Dangerous,
                    reason,
                    separator: Finding::LABELLED,
                });
            }
        }
        Ok(())
    }
}

/// The value of a `location` key/value entry (StringStringEntryProto).
fn location_entry(b: &[u8]) -> Result<Option<String>, String> {
    let (mut key, mut value) = (None, None);
    for field in fields(b)? {
        match field {
            (1, Wire::Bytes(k)) => key = Some(k),
            (2, Wire::Bytes(v)) => value = Some(String::from_utf8_lossy(v).into_owned()),
            _ => {}
        }
    }
    Ok(if key == Some(b"location") { value } else { None })
}
