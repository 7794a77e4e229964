//! `scan` as a capability of each format: a format that can carry code
//! (pickles, Keras configs, TorchScript programs) reports what its own
//! container names as [`Finding`]s grouped in [`Stream`]s; this module
//! turns them into verdicts, one [`FileReport`] per file. The registry
//! lists the scanners; the `scan` command asks it, like every command.
//!
//! The rule every scanner keeps: a part it could not read is never safe
//! ([`Stream::unreadable`] is suspicious), and a file that cannot be read
//! at all is the caller's error, never an empty (safe) file.

use std::path::{Component, Path, PathBuf};

/// How bad a finding is, ordered: a file's verdict is its worst.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Verdict {
    Safe,
    Suspicious,
    Dangerous,
}

impl Verdict {
    /// The name used in text and JSON (`safe`, `suspicious`, `dangerous`).
    pub fn name(self) -> &'static str {
        match self {
            Verdict::Safe => "safe",
            Verdict::Suspicious => "suspicious",
            Verdict::Dangerous => "dangerous",
        }
    }
}

/// One thing a stream names that a loader would call, import or run
/// (a pickle global, a Keras layer class, TorchScript code), with its
/// verdict and why.
#[derive(Debug, Clone)]
pub struct Finding {
    pub module: String,
    pub name: String,
    /// Byte offset of the first use.
    pub offset: usize,
    /// How many times the stream names it.
    pub uses: u64,
    pub verdict: Verdict,
    pub reason: &'static str,
    /// Between module and name in text: [`Finding::DOTTED`] for what
    /// Python imports, [`Finding::LABELLED`] for a file a loader opens.
    pub separator: &'static str,
}

impl Finding {
    /// `os.system`: a global as Python spells it.
    pub const DOTTED: &'static str = ".";
    /// `external data of tensor w: ../../etc/passwd`: a description, then what it names.
    pub const LABELLED: &'static str = ": ";
}

/// Counts of opcodes of note in a pickle stream (zero for other streams).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Opcodes {
    /// Calls: REDUCE, NEWOBJ, NEWOBJ_EX, INST, OBJ.
    pub calls: u64,
    pub builds: u64,
    pub persistent_ids: u64,
    /// EXT1/2/4: code by number from the extension registry.
    pub ext: u64,
    /// Out-of-band buffers (NEXT_BUFFER).
    pub buffers: u64,
    /// FRAME opcodes executed.
    pub frames: u64,
}

/// One part of a file a loader reads as code-carrying data: a pickle
/// stream, a model config, a program.
#[derive(Debug, Clone)]
pub struct Stream {
    /// Where it is: `data.pkl`, `config.json (Keras model config)`, ….
    pub part: String,
    /// What it names, in order of first use.
    pub globals: Vec<Finding>,
    pub opcodes: Opcodes,
    /// Why the part could not be read to its end, if it could not.
    pub error: Option<String>,
    /// The bytes ended before the stream did (it may go on past them).
    pub ended_early: bool,
    pub verdict: Verdict,
}

impl Stream {
    /// A part the scanner could not look at: never safe.
    pub fn unreadable(part: &str, why: String) -> Stream {
        Stream {
            part: part.to_string(),
            globals: Vec::new(),
            opcodes: Opcodes::default(),
            error: Some(format!("not inspected: {why}")),
            ended_early: false,
            verdict: Verdict::Suspicious,
        }
    }

    /// A part read whole whose verdict is its worst finding.
    pub fn of_findings(part: String, globals: Vec<Finding>) -> Stream {
        Stream {
            part,
            verdict: worst(globals.iter().map(|g| g.verdict)),
            globals,
            opcodes: Opcodes::default(),
            error: None,
            ended_early: false,
        }
    }
}

/// The worst of some verdicts (safe for none).
pub fn worst(verdicts: impl IntoIterator<Item = Verdict>) -> Verdict {
    verdicts.into_iter().max().unwrap_or(Verdict::Safe)
}

/// One file's findings.
#[derive(Debug, Clone)]
pub struct FileReport {
    pub path: PathBuf,
    /// What the file is: `zip`, `pytorch-legacy`, `npy`, `gguf`, `pickle`,
    /// `no pickle`, or a container that is also a pickle to Python
    /// (`gguf, and a pickle to Python`).
    pub kind: String,
    pub streams: Vec<Stream>,
    pub verdict: Verdict,
}

impl FileReport {
    pub fn new(path: &Path, kind: String, streams: Vec<Stream>) -> FileReport {
        FileReport {
            path: path.to_path_buf(),
            kind,
            verdict: worst(streams.iter().map(|s| s.verdict)),
            streams,
        }
    }
}

/// What a scanner found in a file that is its container.
#[derive(Debug, Clone)]
pub struct Scanned {
    /// The container's name in the report (`zip`, `npy`, `gguf`).
    pub kind: String,
    pub streams: Vec<Stream>,
    /// Whether a loader may still read the whole file as something else
    /// (torch.load unpickles any file that is not a zip): then every
    /// scanner's [`Scanner::whole_file`] runs too.
    pub read_whole_too: bool,
}

impl Scanned {
    pub fn new(kind: &str, streams: Vec<Stream>, read_whole_too: bool) -> Scanned {
        Scanned {
            kind: kind.to_string(),
            streams,
            read_whole_too,
        }
    }
}

/// A format's scan capability.
pub trait Scanner: Sync {
    /// Findings for `bytes` when they are this format's container (by
    /// content, never by extension); `None` when they are not.
    fn container(&self, path: &Path, bytes: &[u8]) -> Option<Scanned>;

    /// Findings that hold for a file whatever its container, because a
    /// loader reads any such file this way (torch.load and pickle.load
    /// unpickle any file that is not a zip). `container` is the kind a
    /// container scan gave, if any; the result is the file's kind and what
    /// was found, or `None` when this reading finds nothing to report.
    fn whole_file(&self, _container: Option<&str>, _bytes: &[u8]) -> Option<(String, Vec<Stream>)> {
        None
    }

    /// The kind of a file no scanner claims and no whole-file reading finds
    /// anything in.
    fn nothing_found(&self) -> Option<&'static str> {
        None
    }
}

/// Scans one file with `scanners`, in order: the first whose container it
/// is reports it; unless that container excludes it, every whole-file
/// reading runs too.
pub fn scan_file(path: &Path, bytes: &[u8], scanners: &[&dyn Scanner]) -> FileReport {
    let claimed = scanners.iter().find_map(|s| s.container(path, bytes));
    let (container, mut streams, whole) = match claimed {
        Some(c) => (Some(c.kind), c.streams, c.read_whole_too),
        None => (None, Vec::new(), true),
    };
    let mut kind = container.clone();
    if whole {
        for s in scanners {
            if let Some((k, found)) = s.whole_file(container.as_deref(), bytes) {
                kind = Some(k);
                streams.extend(found);
            }
        }
    }
    let kind = kind
        .or_else(|| scanners.iter().find_map(|s| s.nothing_found()).map(str::to_string))
        .unwrap_or_else(|| "nothing to scan".to_string());
    FileReport::new(path, kind, streams)
}

/// The scanner of a container that carries no code of its own (GGUF
/// chat templates aside): it names the container (`gguf`, `safetensors`)
/// when the function says the bytes are one, finds nothing in it, and
/// leaves the whole-file readings to run.
pub struct Labelled(pub fn(&[u8]) -> Option<&'static str>);

impl Scanner for Labelled {
    fn container(&self, _path: &Path, bytes: &[u8]) -> Option<Scanned> {
        (self.0)(bytes).map(|kind| Scanned::new(kind, Vec::new(), true))
    }
}

/// Why a loader that opens `loc` beside `model` (ONNX external data, an
/// HDF5 external link) reads outside the model's folder, if it does.
/// Backslashes and drive letters count too: onnxruntime on Windows reads
/// them as separators and roots.
pub fn path_leaves_folder(model: &Path, loc: &str) -> Option<&'static str> {
    let dir = model
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let climbs = loc.split(['/', '\\']).any(|c| c == "..");
    let rooted = loc.starts_with(['/', '\\']) || loc.as_bytes().get(1) == Some(&b':');
    if climbs
        || rooted
        || Path::new(loc)
            .components()
            .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
    {
        return Some("names a file outside the model's folder (absolute, '..' or a drive): the loader reads any file named (path traversal)");
    }
    // A symlink on the way, inside the folder, may point out of it.
    let (Ok(root), Ok(real)) = (dir.canonicalize(), dir.join(loc).canonicalize()) else {
        return None;
    };
    (!real.starts_with(root)).then_some("names a file that resolves through a symlink outside the model's folder")
}
