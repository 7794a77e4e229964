//! `modelconv scan`: is any pickle in these files dangerous? Reads every
//! pickle stream by content and reports the globals it names, with a verdict.

use crate::registry::{scan_bytes, FileReport, Verdict};
use crate::{report, util, EXIT_BAD_INPUT, EXIT_CHECK_FAILED};
use anyhow::Result;
use serde::Serialize;
use std::path::{Path, PathBuf};

#[derive(clap::Args)]
pub struct Args {
    /// Files or folders (a folder's files; with -r everything below it).
    #[arg(required = true)]
    paths: Vec<PathBuf>,
    /// Recurse into folders.
    #[arg(short, long)]
    recursive: bool,
    /// Print one JSON document on stdout.
    #[arg(long)]
    json: bool,
}

pub fn run(args: Args) -> Result<u8> {
    let mut walk = Walk::default();
    // `-`: standard input, scanned from a temporary copy, reported as `-`.
    let stdin = if args.paths.iter().any(|p| p.as_os_str() == modelconv_ir::STDIO) {
        Some(util::Input::new(std::path::Path::new(modelconv_ir::STDIO))?)
    } else {
        None
    };
    for p in &args.paths {
        if let (Some(input), true) = (&stdin, p.as_os_str() == modelconv_ir::STDIO) {
            walk.files.push(input.path.clone());
        } else {
            walk.path(p, args.recursive);
        }
    }
    let Walk {
        files: list,
        skipped,
        mut unreadable,
        left_tree,
        ..
    } = walk;
    let mut reports: Vec<FileReport> = Vec::new();
    for f in &list {
        modelconv_ir::check_interrupt()?;
        match scan_file(f) {
            Ok(mut r) => {
                if stdin.as_ref().is_some_and(|i| &i.path == f) {
                    r.path = modelconv_ir::STDIO.into();
                }
                reports.push(r);
            }
            Err(e) => unreadable.push(e.to_string()),
        }
    }
    let mut worst = reports.iter().map(|r| r.verdict).max().unwrap_or(Verdict::Safe);
    if left_tree {
        // Files behind a link out of the tree were not read: not safe.
        worst = worst.max(Verdict::Suspicious);
    }
    // A file not read is not safe: with one, the run's verdict says so.
    let verdict = if unreadable.is_empty() {
        worst.name()
    } else {
        UNREADABLE
    };
    if args.json {
        report::emit("scan", &ScanDoc::new(&reports, &unreadable, &skipped, verdict));
    } else {
        for r in &reports {
            print_report(r);
        }
        for u in &unreadable {
            println!("{UNREADABLE:<10} {}", util::printable(u));
        }
        for (p, why) in &skipped {
            eprintln!("skipped {}: {why}", util::shown(p));
        }
    }
    for u in &unreadable {
        eprintln!("modelconv: error: {}", util::printable(u));
    }
    Ok(if !unreadable.is_empty() {
        EXIT_BAD_INPUT
    } else if worst != Verdict::Safe {
        EXIT_CHECK_FAILED
    } else {
        0
    })
}

/// The verdict of a file that could not be read (and of a run with one).
const UNREADABLE: &str = "unreadable";

/// Scans one file through a read-only mapping: a multi-GB shard costs
/// address space, and only the pages the scanner looks at are read. A file
/// the system will not map is an error, never an empty (safe) file.
fn scan_file(path: &Path) -> modelconv_ir::Result<FileReport> {
    let file = modelconv_ir::SharedFile::open(path)?;
    Ok(scan_bytes(path, file.mapped()?))
}

/// What walking the named paths found.
#[derive(Default)]
struct Walk {
    files: Vec<PathBuf>,
    skipped: Vec<(PathBuf, &'static str)>,
    unreadable: Vec<String>,
    /// Folders walked, by their real path: a link back to one is a loop.
    seen: std::collections::HashSet<PathBuf>,
    /// A symbolic link led out of the folder being scanned: what it
    /// names was not read, so the run is not safe.
    left_tree: bool,
}

const LINK_OUTSIDE: &str =
    "a symbolic link to a folder outside the scanned folder (not followed: its files were not scanned)";
const LINK_LOOP: &str = "a symbolic link to a folder already scanned (not followed again)";

impl Walk {
    /// The files `path` names: itself, or a folder's files (everything
    /// below it with `recursive`). A symbolic link to a folder inside
    /// the scanned folder is followed once (never around a loop); one
    /// that leads outside is listed in `skipped` and fails the run, like
    /// what is never read (devices, FIFOs, sockets: skipped); what cannot
    /// be looked at is `unreadable`, which fails the run.
    fn path(&mut self, path: &Path, recursive: bool) {
        match std::fs::metadata(path) {
            Ok(meta) if !meta.is_dir() => self.files.push(path.to_path_buf()),
            Ok(_) => match path.canonicalize() {
                Ok(root) => self.folder(path, &root, recursive),
                Err(e) => self.unreadable.push(format!("{}: {e}", path.display())),
            },
            Err(e) => self.unreadable.push(format!("{}: {e}", path.display())),
        }
    }

    fn folder(&mut self, path: &Path, root: &Path, recursive: bool) {
        // A folder already walked through a link is not walked again.
        if let Ok(real) = path.canonicalize() {
            if !self.seen.insert(real) {
                return;
            }
        }
        let entries = std::fs::read_dir(path).and_then(|d| d.map(|e| e.map(|e| e.path())).collect());
        let mut entries: Vec<PathBuf> = match entries {
            Ok(v) => v,
            Err(e) => return self.unreadable.push(format!("{}: {e}", path.display())),
        };
        entries.sort();
        for p in entries {
            let m = match std::fs::symlink_metadata(&p) {
                Ok(m) => m,
                Err(e) => {
                    self.unreadable.push(format!("{}: {e}", p.display()));
                    continue;
                }
            };
            if m.is_dir() {
                if recursive {
                    self.folder(&p, root, true);
                } else {
                    self.skipped.push((p, "a folder (use -r)"));
                }
            } else if m.is_file() || (m.file_type().is_symlink() && p.is_file()) {
                self.files.push(p);
            } else if m.file_type().is_symlink() && p.is_dir() {
                self.linked_folder(p, root, recursive);
            } else if m.file_type().is_symlink() {
                self.skipped.push((p, "a symbolic link to no regular file"));
            } else {
                self.skipped.push((p, "not a regular file (device, FIFO or socket)"));
            }
        }
    }

    fn linked_folder(&mut self, p: PathBuf, root: &Path, recursive: bool) {
        if !recursive {
            return self.skipped.push((p, "a symbolic link to a folder (use -r)"));
        }
        match p.canonicalize() {
            Ok(real) if !real.starts_with(root) => {
                self.left_tree = true;
                self.skipped.push((p, LINK_OUTSIDE));
            }
            Ok(real) if self.seen.contains(&real) => self.skipped.push((p, LINK_LOOP)),
            Ok(_) => self.folder(&p, root, true),
            Err(e) => self.unreadable.push(format!("{}: {e}", p.display())),
        }
    }
}

/// `scan --json` (docs/json.md).
#[derive(Serialize)]
struct ScanDoc {
    files: Vec<ScanFile>,
    unreadable: Vec<String>,
    skipped: Vec<Skipped>,
    summary: Summary,
    /// The worst verdict of any file, or `unreadable` when a file could
    /// not be read.
    verdict: &'static str,
}

impl ScanDoc {
    fn new(
        reports: &[FileReport],
        unreadable: &[String],
        skipped: &[(PathBuf, &'static str)],
        verdict: &'static str,
    ) -> ScanDoc {
        let count = |v: Verdict| reports.iter().filter(|r| r.verdict == v).count();
        ScanDoc {
            files: reports.iter().map(ScanFile::of).collect(),
            unreadable: unreadable.to_vec(),
            skipped: skipped
                .iter()
                .map(|(p, why)| Skipped {
                    path: report::path_text(p),
                    why: why.to_string(),
                })
                .collect(),
            summary: Summary {
                files: reports.len(),
                safe: count(Verdict::Safe),
                suspicious: count(Verdict::Suspicious),
                dangerous: count(Verdict::Dangerous),
                unreadable: unreadable.len(),
            },
            verdict,
        }
    }
}

#[derive(Serialize)]
struct Skipped {
    path: String,
    why: String,
}

#[derive(Serialize)]
struct Summary {
    files: usize,
    safe: usize,
    suspicious: usize,
    dangerous: usize,
    unreadable: usize,
}

#[derive(Serialize)]
struct ScanFile {
    path: String,
    /// What the file is (`pytorch zip`, `safetensors`, `gguf`, …).
    kind: String,
    verdict: &'static str,
    streams: Vec<ScanStream>,
}

#[derive(Serialize)]
struct ScanStream {
    /// Where in the file the pickle is (`data.pkl`, `whole file`).
    part: String,
    verdict: &'static str,
    globals: Vec<ScanGlobal>,
    opcodes: Opcodes,
    error: Option<String>,
}

#[derive(Serialize)]
struct ScanGlobal {
    module: String,
    name: String,
    offset: u64,
    uses: u64,
    verdict: &'static str,
    reason: String,
}

#[derive(Serialize)]
struct Opcodes {
    calls: u64,
    builds: u64,
    persistent_ids: u64,
    ext: u64,
    buffers: u64,
}

impl ScanFile {
    fn of(r: &FileReport) -> ScanFile {
        ScanFile {
            path: report::path_text(&r.path),
            kind: r.kind.to_string(),
            verdict: r.verdict.name(),
            streams: r
                .streams
                .iter()
                .map(|s| ScanStream {
                    part: s.part.to_string(),
                    verdict: s.verdict.name(),
                    globals: s
                        .globals
                        .iter()
                        .map(|g| ScanGlobal {
                            module: g.module.to_string(),
                            name: g.name.to_string(),
                            offset: g.offset as u64,
                            uses: g.uses,
                            verdict: g.verdict.name(),
                            reason: g.reason.to_string(),
                        })
                        .collect(),
                    opcodes: Opcodes {
                        calls: s.opcodes.calls,
                        builds: s.opcodes.builds,
                        persistent_ids: s.opcodes.persistent_ids,
                        ext: s.opcodes.ext,
                        buffers: s.opcodes.buffers,
                    },
                    error: s.error.clone(),
                })
                .collect(),
        }
    }
}

fn print_report(r: &FileReport) {
    println!("{:<10} {} ({})", r.verdict.name(), util::shown(&r.path), r.kind);
    for s in &r.streams {
        let flagged: Vec<String> = s
            .globals
            .iter()
            .filter(|g| g.verdict != Verdict::Safe)
            .map(|g| {
                let times = if g.uses > 1 {
                    format!(", named {} times", g.uses)
                } else {
                    String::new()
                };
                format!(
                    "{} at byte {}{times} ({}: {})",
                    util::printable(&format!("{}{}{}", g.module, g.separator, g.name)),
                    g.offset,
                    g.verdict.name(),
                    g.reason
                )
            })
            .collect();
        if !flagged.is_empty() || s.error.is_some() || s.opcodes.ext > 0 {
            println!(
                "  {}: {} globals, {} calls",
                util::printable(&s.part),
                s.globals.len(),
                s.opcodes.calls
            );
            for f in flagged {
                println!("    {f}");
            }
            if s.opcodes.ext > 0 {
                println!("    {} EXT opcodes (extension registry: code by number)", s.opcodes.ext);
            }
            if let Some(e) = &s.error {
                println!("    {}", util::printable(e));
            }
        }
    }
}
