//! `scan`: what every pickle stream in a file names and calls, with a
//! verdict, found by content (never by extension): bare pickles, PyTorch
//! zip and legacy checkpoints, pickles inside any zip under any name,
//! `.npy` object arrays, and streams hidden after a STOP.

use crate::torch::is_legacy;
use crate::vm::{Framing, ScanLog, Vm};
use crate::{npy, tar, zipscan};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Verdict {
    Safe,
    Suspicious,
    Dangerous,
}

impl Verdict {
    pub fn name(self) -> &'static str {
        match self {
            Verdict::Safe => "safe",
            Verdict::Suspicious => "suspicious",
            Verdict::Dangerous => "dangerous",
        }
    }
}

pub use crate::verdicts::classify;

/// Bytes of a zip member inflated first, to tell whether it can be a pickle.
const HEAD_BYTES: u64 = 64 << 10;

/// A global a stream names, with its verdict.
#[derive(Debug, Clone)]
pub struct Global {
    pub module: String,
    pub name: String,
    /// Offset of the first use.
    pub offset: usize,
    /// How many times the stream names it.
    pub uses: u64,
    pub verdict: Verdict,
    pub reason: &'static str,
}

/// One pickle stream's findings.
#[derive(Debug, Clone)]
pub struct Stream {
    /// Where it is: `data.pkl`, `pickle 4 of the legacy file`, `after STOP at byte N`.
    pub part: String,
    /// Every global named: module, name, byte offset, verdict and why.
    pub globals: Vec<Global>,
    pub log: ScanLog,
    /// Why the stream could not be read to its STOP, if it could not.
    pub error: Option<String>,
    /// The bytes ended before the stream did (it may go on past them).
    pub ended_early: bool,
    pub verdict: Verdict,
}

#[derive(Debug, Clone)]
pub struct FileReport {
    pub path: PathBuf,
    /// What the file is: `zip`, `pytorch-legacy`, `tar`, `npy`, `gguf`,
    /// `safetensors`, `pickle`, `no pickle`, or a container that is also a
    /// pickle to Python (`gguf, and a pickle to Python`).
    pub kind: String,
    pub streams: Vec<Stream>,
    pub verdict: Verdict,
}

/// Scans one stream; returns it, where it stopped (None on error), and
/// where a file reader would stand after it if that differs (a STOP
/// inside a frame: Python read the whole frame).
fn scan_stream(bytes: &[u8], part: String) -> (Stream, Option<usize>, Option<usize>) {
    let mut vm = Vm::scanner(bytes);
    let result = vm.run();
    let mut log = vm.log.take().unwrap_or_default();
    let mut file_end = None;
    if log.frames > 0 {
        // Read from a file object (torch.load's BytesIO), frames change how
        // Python reads: the globals it reaches that way count too.
        let mut file = Vm::scanner(bytes).with_framing(Framing::File);
        if file.run().is_ok() {
            file_end = Some(file.file_position()).filter(|&e| Some(e) != result.as_ref().ok().map(|_| vm.position()));
        }
        let other = file.log.take().unwrap_or_default();
        for (m, n, at) in &other.globals {
            log.record(m, n, *at, 0);
        }
    }
    let globals: Vec<_> = log
        .globals
        .iter()
        .zip(&log.uses)
        .map(|((m, n, at), &uses)| {
            let (verdict, reason) = classify(m, n);
            Global {
                module: m.clone(),
                name: n.clone(),
                offset: *at,
                uses: uses.max(1),
                verdict,
                reason,
            }
        })
        .collect();
    let mut verdict = globals.iter().map(|g| g.verdict).max().unwrap_or(Verdict::Safe);
    if log.ext > 0 {
        verdict = Verdict::Dangerous;
    }
    let (error, end, ended_early) = match result {
        Ok(_) => (None, Some(vm.position()), false),
        Err(e) => {
            verdict = verdict.max(Verdict::Suspicious);
            (
                Some(e.to_string()),
                None,
                e.kind == crate::vm::PickleErrorKind::Truncated,
            )
        }
    };
    (
        Stream {
            part,
            globals,
            log,
            error,
            ended_early,
            verdict,
        },
        end,
        file_end,
    )
}

/// Scans a pickle and whatever follows its STOP (up to 16 streams).
fn scan_pickle(bytes: &[u8], part: &str, out: &mut Vec<Stream>) {
    scan_pickles(bytes, part, 1, true, out);
}

/// Scans the `expected` pickles a loader reads one after another (torch's
/// legacy format: five), and whatever follows them. Python reads the next
/// pickle from where the file stands: after the STOP, or past a frame it
/// read whole; both are followed. With `after`, streams past the expected
/// ones are scanned too: data Python never reads, hidden on purpose, so
/// suspicious (without it: what follows is not pickles, like the legacy
/// format's raw storages).
fn scan_pickles(bytes: &[u8], part: &str, expected: usize, after: bool, out: &mut Vec<Stream>) {
    let mut work = vec![(0usize, 0usize)];
    let mut seen = std::collections::HashSet::new();
    while let Some((start, i)) = work.pop() {
        if (i >= expected && !after) || !seen.insert(start) || seen.len() > 16 + expected {
            continue;
        }
        let name = match (i, expected) {
            (0, 1) => part.to_string(),
            (i, _) if i < expected => format!("{part} {} of {expected} (at byte {start})", i + 1),
            _ => format!("{part}: bytes after STOP at byte {start}"),
        };
        let (mut s, end, file_end) = scan_stream(&bytes[start..], name);
        if i >= expected {
            s.verdict = s.verdict.max(Verdict::Suspicious);
            s.error.get_or_insert_with(|| "data after the pickle's STOP".into());
        }
        out.push(s);
        for e in [file_end, end].into_iter().flatten() {
            if start + e < bytes.len() {
                work.push((start + e, i + 1));
            }
        }
    }
}

/// True when a stream starts like a pickle (protocol 2+ header).
fn looks_like_pickle(b: &[u8]) -> bool {
    b.len() >= 2 && b[0] == 0x80 && (2..=5).contains(&b[1])
}

/// A `.npy` whose data numpy unpickles: the bytes after its header.
fn npy_pickle(b: &[u8]) -> Option<&[u8]> {
    npy::pickled_data(b).map(|at| &b[at..])
}

/// What a pickle scan of a whole file found: a pickle to Python when the
/// stream reads to its STOP, names any global (Python would look it up), or
/// starts with a protocol header; otherwise Python's unpickler stops at
/// once with nothing run.
fn is_pickle(bytes: &[u8], streams: &[Stream]) -> bool {
    looks_like_pickle(bytes) || runs_as_pickle(streams)
}

/// The stream reads to its STOP, or names a global or calls something
/// before Python's unpickler would stop (a member of a zip whose bytes
/// only start like a pickle, such as a raw storage, is not one).
fn runs_as_pickle(streams: &[Stream]) -> bool {
    streams
        .first()
        .is_some_and(|f| f.error.is_none() || !f.globals.is_empty() || f.log.calls > 0)
}

/// Scans one file's bytes. Never by magic alone: `torch.load` unpickles
/// any file that is not a zip from its first byte (the legacy format's
/// magic number is itself a pickle), so every file but a zip is also read
/// as a pickle, whatever it starts like.
pub fn scan_bytes(path: &Path, bytes: &[u8]) -> FileReport {
    let mut streams = Vec::new();
    let container = if bytes.starts_with(b"PK\x03\x04") || bytes.starts_with(b"PK\x05\x06") {
        scan_zip(bytes, &mut streams);
        return report(path, "zip".into(), streams);
    } else if is_legacy(bytes) {
        // The magic number, protocol, sys_info, the data and the storage keys.
        scan_pickles(bytes, "legacy pickle", 5, false, &mut streams);
        return report(path, "pytorch-legacy".into(), streams);
    } else if let Some(members) = tar::members(bytes) {
        for (name, data) in members {
            scan_pickle(data, &format!("tar member {name}"), &mut streams);
        }
        "tar"
    } else if let Some(p) = npy_pickle(bytes) {
        scan_pickle(p, "npy object array", &mut streams);
        "npy"
    } else if bytes.starts_with(b"\x93NUMPY") {
        "npy"
    } else if bytes.starts_with(b"GGUF") {
        "gguf"
    } else if [b"lmgg", b"fmgg", b"tjgg"].iter().any(|m| bytes.starts_with(*m)) {
        "legacy GGML/GGMF/GGJT weights"
    } else if bytes.get(4..8) == Some(b"TFL3") {
        "TensorFlow Lite (flatbuffer)"
    } else if bytes.starts_with(b"\x89HDF\r\n\x1a\n") {
        crate::keras::scan_h5(bytes, &mut streams);
        "HDF5"
    } else if is_safetensors(bytes) {
        "safetensors"
    } else {
        ""
    };
    let mut bare = Vec::new();
    scan_pickle(bytes, "pickle (as torch.load and pickle.load read the file)", &mut bare);
    let pickle = is_pickle(bytes, &bare);
    let kind = match (pickle, container) {
        (true, "") => "pickle".to_string(),
        (true, c) => format!("{c}, and a pickle to Python"),
        (false, "") => "no pickle".to_string(),
        (false, c) => c.to_string(),
    };
    if pickle {
        streams.extend(bare);
    }
    report(path, kind, streams)
}

fn report(path: &Path, kind: String, streams: Vec<Stream>) -> FileReport {
    let verdict = streams.iter().map(|s| s.verdict).max().unwrap_or(Verdict::Safe);
    FileReport {
        path: path.to_path_buf(),
        kind,
        streams,
        verdict,
    }
}

fn is_safetensors(b: &[u8]) -> bool {
    b.len() >= 9 && b[8] == b'{' && u64::from_le_bytes(b[..8].try_into().unwrap_or([0xff; 8])) < 100_000_000
}

/// Every pickle in a zip, read as Python's loaders read zips: every
/// central-directory record (duplicates too), each member scanned as a
/// pickle when it is one to Python (`*.pkl`, any member that reads as a
/// pickle, `.npy` object arrays). A member that cannot be read (another
/// compression method, data outside the file) is reported, never skipped.
fn scan_zip(bytes: &[u8], out: &mut Vec<Stream>) {
    let Some(entries) = zipscan::entries(bytes) else {
        out.push(unreadable("zip", "no readable central directory".into()));
        return;
    };
    let mut budget = zipscan::inflation_budget(bytes.len() as u64);
    // A TorchScript archive's code/ is source text torch.jit.load compiles
    // and runs: reported once, as code, never parsed as pickles.
    let is_code = |n: &str| (n.contains("/code/") || n.starts_with("code/")) && n.ends_with(".py");
    let code: Vec<&str> = if entries.iter().any(|e| e.name.ends_with("data.pkl")) {
        entries.iter().map(|e| e.name.as_str()).filter(|n| is_code(n)).collect()
    } else {
        Vec::new()
    };
    if !code.is_empty() {
        out.push(Stream {
            part: format!("TorchScript code ({} files under code/)", code.len()),
            globals: vec![Global {
                module: "torch.jit".into(),
                name: "load".into(),
                offset: 0,
                uses: code.len() as u64,
                verdict: Verdict::Suspicious,
                reason: "TorchScript programs: torch.load hands the archive to torch.jit.load, which compiles and runs them",
            }],
            log: ScanLog::default(),
            error: None,
            ended_early: false,
            verdict: Verdict::Suspicious,
        });
    }
    // A .keras archive: its config.json says which layers Keras builds.
    let keras = entries
        .iter()
        .any(|e| e.name == "metadata.json" || e.name == "model.weights.h5");
    for (i, e) in entries.iter().enumerate() {
        if i % 256 == 0 && modelconv_ir::check_interrupt().is_err() {
            return;
        }
        if !code.is_empty() && is_code(&e.name) {
            continue;
        }
        if keras && e.name == "config.json" {
            match e.content(bytes, &mut budget) {
                zipscan::Content::Stored(d) => crate::keras::scan_config(d, &e.name, out),
                zipscan::Content::Inflated(d) => crate::keras::scan_config(&d, &e.name, out),
                zipscan::Content::Unreadable(why) => out.push(unreadable(&e.name, why)),
            }
            continue;
        }
        // The first bytes say whether the member can be a pickle to Python
        // (numpy reads a plain .npy as data; a stream that fails before its
        // first bytes end is no pickle): only then is all of it inflated.
        let head = e.head(bytes, HEAD_BYTES, &mut budget);
        let head_bytes: Option<&[u8]> = match &head {
            zipscan::Content::Stored(d) => Some(d),
            zipscan::Content::Inflated(d) => Some(d),
            zipscan::Content::Unreadable(_) => None,
        };
        let whole = match head_bytes {
            Some(d) if (d.len() as u64) < e.size() => {
                let may_be_pickle = if d.starts_with(b"\x93NUMPY") {
                    npy::pickled_data(d).is_some()
                } else {
                    let (s, _, _) = scan_stream(d, String::new());
                    e.name.ends_with(".pkl") || s.ended_early || runs_as_pickle(std::slice::from_ref(&s))
                };
                if !may_be_pickle {
                    continue;
                }
                e.content(bytes, &mut budget)
            }
            _ => head,
        };
        let content = whole;
        let data: &[u8] = match &content {
            zipscan::Content::Stored(d) => d,
            zipscan::Content::Inflated(d) => d,
            zipscan::Content::Unreadable(why) => {
                out.push(unreadable(&e.name, why.clone()));
                continue;
            }
        };
        if let Some(p) = npy_pickle(data) {
            scan_pickle(p, &format!("{} (npy object array)", e.name), out);
            continue;
        }
        let mut s = Vec::new();
        scan_pickle(data, &e.name, &mut s);
        if e.name.ends_with(".pkl") || runs_as_pickle(&s) {
            out.extend(s);
        }
    }
}

fn unreadable(part: &str, why: String) -> Stream {
    Stream {
        part: part.to_string(),
        globals: Vec::new(),
        log: ScanLog::default(),
        error: Some(format!("not inspected: {why}")),
        ended_early: false,
        verdict: Verdict::Suspicious,
    }
}
