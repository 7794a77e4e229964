//! `scan`: what every pickle stream in a file names and calls, with a
//! verdict, found by content (never by extension): bare pickles, PyTorch
//! zip and legacy checkpoints, pickles inside any zip under any name,
//! `.npy` object arrays, and streams hidden after a STOP.

use crate::torch::is_legacy;
use crate::vm::{is_allowed_global, ScanLog, Vm};
use std::io::Read;
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

/// Modules whose globals run code or reach the system.
const DANGEROUS_MODULES: &[&str] = &[
    "os",
    "posix",
    "nt",
    "subprocess",
    "_posixsubprocess",
    "runpy",
    "pty",
    "socket",
    "shutil",
    "ctypes",
    "importlib",
    "pickle",
    "_pickle",
    "cPickle",
    "webbrowser",
    "pip",
    "sys",
    "marshal",
    "code",
    "codeop",
    "multiprocessing",
    "asyncio",
    "signal",
    "commands",
    "platform",
    "tempfile",
    "glob",
    "requests",
    "urllib",
    "http",
    "ftplib",
    "smtplib",
    "telnetlib",
    "zipimport",
    "imp",
];
/// Names in builtins that evaluate, import, open or reach attributes.
const DANGEROUS_BUILTINS: &[&str] = &[
    "eval",
    "exec",
    "execfile",
    "compile",
    "getattr",
    "setattr",
    "delattr",
    "__import__",
    "open",
    "apply",
    "globals",
    "locals",
    "vars",
    "input",
    "breakpoint",
    "memoryview",
];

/// The verdict for one global.
pub fn classify(module: &str, name: &str) -> Verdict {
    if is_allowed_global(module, name) {
        return Verdict::Safe;
    }
    let root = module.split('.').next().unwrap_or(module);
    let dangerous = DANGEROUS_MODULES.contains(&root)
        || (matches!(module, "builtins" | "__builtin__") && DANGEROUS_BUILTINS.contains(&name))
        || (module == "operator" && matches!(name, "attrgetter" | "methodcaller"))
        || module.starts_with("torch.hub")
        || (module == "torch" && matches!(name, "load" | "hub"))
        || module == "torch.serialization"
        || (root == "numpy" && (name == "load" || module.contains("npyio")))
        || (module == "functools" && name == "partial");
    if dangerous {
        Verdict::Dangerous
    } else {
        Verdict::Suspicious
    }
}

/// One pickle stream's findings.
#[derive(Debug, Clone)]
pub struct Stream {
    /// Where it is: `data.pkl`, `pickle 4 of the legacy file`, `after STOP at byte N`.
    pub part: String,
    pub globals: Vec<(String, String, usize, Verdict)>,
    pub log: ScanLog,
    /// Why the stream could not be read to its STOP, if it could not.
    pub error: Option<String>,
    pub verdict: Verdict,
}

#[derive(Debug, Clone)]
pub struct FileReport {
    pub path: PathBuf,
    pub kind: &'static str,
    pub streams: Vec<Stream>,
    pub verdict: Verdict,
}

/// Scans one stream; returns it and where it stopped (None on error).
fn scan_stream(bytes: &[u8], part: String) -> (Stream, Option<usize>) {
    let mut vm = Vm::scanner(bytes);
    let result = vm.run();
    let log = vm.log.take().unwrap_or_default();
    let globals: Vec<_> = log
        .globals
        .iter()
        .map(|(m, n, at)| (m.clone(), n.clone(), *at, classify(m, n)))
        .collect();
    let mut verdict = globals.iter().map(|g| g.3).max().unwrap_or(Verdict::Safe);
    if log.ext > 0 {
        verdict = Verdict::Dangerous;
    }
    let (error, end) = match result {
        Ok(_) => (None, Some(vm.position())),
        Err(e) => {
            verdict = verdict.max(Verdict::Suspicious);
            (Some(e.to_string()), None)
        }
    };
    (
        Stream {
            part,
            globals,
            log,
            error,
            verdict,
        },
        end,
    )
}

/// Scans a pickle and whatever follows its STOP (up to 16 streams).
fn scan_pickle(bytes: &[u8], part: &str, out: &mut Vec<Stream>) {
    let mut start = 0usize;
    for i in 0..16 {
        let name = if i == 0 {
            part.to_string()
        } else {
            format!("{part}: bytes after STOP at byte {start}")
        };
        let (mut s, end) = scan_stream(&bytes[start..], name);
        if i > 0 {
            // Python never reads past STOP: data there is hidden on purpose.
            s.verdict = s.verdict.max(Verdict::Suspicious);
            s.error.get_or_insert_with(|| "data after the pickle's STOP".into());
        }
        out.push(s);
        match end {
            Some(e) if start + e < bytes.len() => start += e,
            _ => return,
        }
    }
}

/// True when a stream starts like a pickle (protocol 2+ header).
fn looks_like_pickle(b: &[u8]) -> bool {
    b.len() >= 2 && b[0] == 0x80 && (2..=5).contains(&b[1])
}

/// A `.npy` holding Python objects: its pickle starts after the header.
fn npy_pickle(b: &[u8]) -> Option<&[u8]> {
    if !b.starts_with(b"\x93NUMPY") || b.len() < 10 {
        return None;
    }
    let (hlen, hstart) = if b[6] == 1 {
        (u16::from_le_bytes([b[8], b[9]]) as usize, 10usize)
    } else {
        (
            u32::from_le_bytes([*b.get(8)?, *b.get(9)?, *b.get(10)?, *b.get(11)?]) as usize,
            12,
        )
    };
    let header = b.get(hstart..hstart.checked_add(hlen)?)?;
    let text = String::from_utf8_lossy(header);
    (text.contains("'|O'") || text.contains("'O'")).then(|| &b[hstart + hlen..])
}

/// Scans one file's bytes.
pub fn scan_bytes(path: &Path, bytes: &[u8]) -> FileReport {
    let mut streams = Vec::new();
    let kind = if bytes.starts_with(b"PK\x03\x04") || bytes.starts_with(b"PK\x05\x06") {
        scan_zip(bytes, &mut streams);
        "zip"
    } else if is_legacy(bytes) {
        let mut start = 0usize;
        for i in 0..5 {
            let (s, end) = scan_stream(&bytes[start..], format!("legacy pickle {} of 5", i + 1));
            streams.push(s);
            match end {
                Some(e) => start += e,
                None => break,
            }
        }
        "pytorch-legacy"
    } else if let Some(p) = npy_pickle(bytes) {
        scan_pickle(p, "npy object array", &mut streams);
        "npy"
    } else if bytes.starts_with(b"\x93NUMPY") || bytes.starts_with(b"GGUF") || is_safetensors(bytes) {
        "no pickle"
    } else {
        // Maybe a pickle of any protocol: it is one if it reads to STOP or names globals.
        let mut s = Vec::new();
        scan_pickle(bytes, "pickle", &mut s);
        // (A text file that happens to start with an opcode letter names no
        // identifier-like global and does not reach a STOP.)
        let identifier = |t: &str| {
            !t.is_empty()
                && t.split('.')
                    .all(|p| !p.is_empty() && p.chars().all(|c| c.is_alphanumeric() || c == '_'))
        };
        let is_pickle = looks_like_pickle(bytes)
            || s.first()
                .is_some_and(|f| f.error.is_none() || f.globals.iter().any(|g| identifier(&g.0) && identifier(&g.1)));
        if is_pickle {
            streams = s;
            "pickle"
        } else {
            "no pickle"
        }
    };
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

/// Every pickle in a zip: entries named `*.pkl` or starting like a pickle,
/// and `.npy` object arrays, except PyTorch's raw storages under `data/`.
fn scan_zip(bytes: &[u8], out: &mut Vec<Stream>) {
    let mut zip = match zip::ZipArchive::new(std::io::Cursor::new(bytes)) {
        Ok(z) => z,
        Err(e) => {
            out.push(Stream {
                part: "zip".into(),
                globals: Vec::new(),
                log: ScanLog::default(),
                error: Some(format!("unreadable zip: {e}")),
                verdict: Verdict::Suspicious,
            });
            return;
        }
    };
    let torch_prefix = zip
        .file_names()
        .find(|n| n.ends_with("data.pkl"))
        .map(|n| n.trim_end_matches("data.pkl").to_string());
    for i in 0..zip.len().min(100_000) {
        let Ok(mut e) = zip.by_index(i) else { continue };
        let name = e.name().to_string();
        if torch_prefix
            .as_ref()
            .is_some_and(|p| name.starts_with(&format!("{p}data/")))
        {
            continue;
        }
        let mut data = Vec::new();
        if let Err(err) = e.by_ref().take(1 << 30).read_to_end(&mut data) {
            out.push(Stream {
                part: name,
                globals: Vec::new(),
                log: ScanLog::default(),
                error: Some(format!("unreadable entry: {err}")),
                verdict: Verdict::Suspicious,
            });
            continue;
        }
        if name.ends_with(".pkl") || looks_like_pickle(&data) {
            scan_pickle(&data, &name, out);
        } else if let Some(p) = npy_pickle(&data) {
            scan_pickle(p, &format!("{name} (npy object array)"), out);
        }
    }
}

/// Files to scan under `path` (folders: their files; `recursive`: all below).
pub fn files(path: &Path, recursive: bool, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    let meta = std::fs::metadata(path)?;
    if !meta.is_dir() {
        out.push(path.to_path_buf());
        return Ok(());
    }
    let mut entries: Vec<PathBuf> = std::fs::read_dir(path)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    entries.sort();
    for p in entries {
        let Ok(m) = std::fs::symlink_metadata(&p) else { continue };
        if m.is_dir() {
            if recursive {
                files(&p, true, out)?;
            }
        } else if m.is_file() || (m.file_type().is_symlink() && p.is_file()) {
            out.push(p);
        }
    }
    Ok(())
}
