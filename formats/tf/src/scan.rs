//! `scan` of TensorFlow files: a TFLite flatbuffer is named; a SavedModel's
//! `saved_model.pb` is read for the ops that touch files or run Python
//! when its graph runs (`ReadFile`, `WriteFile`, `MatchingFiles`,
//! `PyFunc`, …), in the main graph of every meta graph and in every
//! function of its library (where TF2's `tf.function`s live).
//!
//! Proto layout read (tensorflow/core/protobuf/saved_model.proto,
//! meta_graph.proto, framework/graph.proto, function.proto, node_def.proto):
//! `SavedModel { 1: schema_version, 2: repeated MetaGraphDef }`,
//! `MetaGraphDef { 2: GraphDef }`, `GraphDef { 1: repeated NodeDef,
//! 2: FunctionDefLibrary }`, `FunctionDefLibrary { 1: repeated FunctionDef }`,
//! `FunctionDef { 1: OpDef signature (1: name), 3: repeated NodeDef }`,
//! `NodeDef { 1: name, 2: op }`.

use modelconv_ir::scan::{Finding, Scanned, Scanner, Stream, Verdict};
use modelconv_ir::wire::{fields, Wire};
use std::path::Path;

/// Ops that read, list or write files outside the model's own checkpoint
/// (the saver's SaveV2/RestoreV2 are not: every SavedModel has them).
const FILE_OPS: &[&str] = &[
    "ReadFile",
    "WriteFile",
    "MatchingFiles",
    "WholeFileReader",
    "WholeFileReaderV2",
    "ImmutableConst",
    "CreateSummaryFileWriter",
    "CreateSummaryDbWriter",
    "DebugIdentityV2",
    "PrintV2",
];

/// Ops that call a Python function registered in the loading process.
const PYTHON_OPS: &[&str] = &["PyFunc", "PyFuncStateless", "EagerPyFunc"];

pub struct TfScanner;

impl Scanner for TfScanner {
    fn container(&self, _path: &Path, b: &[u8]) -> Option<Scanned> {
        if b.get(4..8) == Some(b"TFL3") {
            return Some(Scanned::new("TensorFlow Lite (flatbuffer)", Vec::new(), true));
        }
        let ops = saved_model_ops(b)?;
        let mut findings: Vec<Finding> = Vec::new();
        for (op, at) in ops {
            let Some((verdict, reason)) = judge(&op) else { continue };
            match findings.iter_mut().find(|f| f.name == op) {
                Some(f) => f.uses += 1,
                None => findings.push(Finding {
                    module: "TensorFlow op".into(),
                    name: op,
                    offset: at,
                    uses: 1,
                    verdict,
                    reason,
                    separator: Finding::LABELLED,
                }),
            }
        }
        let streams = if findings.is_empty() {
            Vec::new()
        } else {
            vec![Stream::of_findings("graph and function library".into(), findings)]
        };
        Some(Scanned::new("TensorFlow SavedModel", streams, true))
    }
}

fn judge(op: &str) -> Option<(Verdict, &'static str)> {
    if PYTHON_OPS.contains(&op) {
        Some((
            Verdict::Suspicious,
            "runs a Python function the loading process registers",
        ))
    } else if FILE_OPS.contains(&op) {
        Some((Verdict::Suspicious, "reads, lists or writes files when the graph runs"))
    } else {
        None
    }
}

fn bytes_of<'a, 'f>(fs: &'f [(u64, Wire<'a>)], num: u64) -> impl Iterator<Item = &'a [u8]> + 'f {
    fs.iter().filter_map(move |(n, w)| match w {
        Wire::Bytes(b) if *n == num => Some(*b),
        _ => None,
    })
}

/// Every op of a SavedModel (with the byte offset of its node in the
/// file), or None when `b` is not one:
/// a schema version, at least one meta graph, every graph and node parsing.
fn saved_model_ops(b: &[u8]) -> Option<Vec<(String, usize)>> {
    let top = fields(b).ok()?;
    if !top.iter().any(|(n, w)| *n == 1 && matches!(w, Wire::Varint(_))) {
        return None;
    }
    let mut ops = Vec::new();
    let mut graphs = 0;
    for mg in bytes_of(&top, 2) {
        let mg = fields(mg).ok()?;
        for g in bytes_of(&mg, 2) {
            graphs += 1;
            let g = fields(g).ok()?;
            for node in bytes_of(&g, 1) {
                ops.push((node_op(node)?, offset_in(b, node)));
            }
            for lib in bytes_of(&g, 2) {
                let lib = fields(lib).ok()?;
                for f in bytes_of(&lib, 1) {
                    let f = fields(f).ok()?;
                    for node in bytes_of(&f, 3) {
                        ops.push((node_op(node)?, offset_in(b, node)));
                    }
                }
            }
        }
    }
    (graphs > 0).then_some(ops)
}

/// A NodeDef's op (field 2), which it must have.
fn node_op(node: &[u8]) -> Option<String> {
    let f = fields(node).ok()?;
    let op = bytes_of(&f, 2).next()?;
    std::str::from_utf8(op).ok().map(str::to_string)
}

/// Where a sub-slice of `whole` starts in it.
fn offset_in(whole: &[u8], part: &[u8]) -> usize {
    (part.as_ptr() as usize).saturating_sub(whole.as_ptr() as usize)
}
