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
    let mut unreadable = Vec::new();
    let mut list = Vec::new();
    let mut skipped = Vec::new();
    // `-`: standard input, scanned from a temporary copy, reported as `-`.
    let stdin = if args.paths.iter().any(|p| p.as_os_str() == modelconv_ir::STDIO) {
        Some(util::Input::new(std::path::Path::new(modelconv_ir::STDIO))?)
    } else {
        None
    };
    for p in &args.paths {
        if let (Some(input), true) = (&stdin, p.as_os_str() == modelconv_ir::STDIO) {
            list.push(input.path.clone());
        } else {
            walk(p, args.recursive, &mut list, &mut skipped, &mut unreadable);
        }
    }
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
    let worst = reports.iter().map(|r| r.verdict).max().unwrap_or(Verdict::Safe);
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

/// The files `path` names: itself, or a folder's files (everything below
/// it with `recursive`). What is left out is listed in `skipped` with why
/// (symbolic links to folders are not followed, so a link cannot loop or
/// leave the tree; devices, FIFOs and sockets are never read); what cannot
/// be looked at is `unreadable`, which fails the run.
fn walk(
    path: &Path,
    recursive: bool,
    out: &mut Vec<PathBuf>,
    skipped: &mut Vec<(PathBuf, &'static str)>,
    unreadable: &mut Vec<String>,
) {
    let entries = match std::fs::metadata(path) {
        Ok(meta) if !meta.is_dir() => return out.push(path.to_path_buf()),
        Ok(_) => std::fs::read_dir(path).and_then(|d| d.map(|e| e.map(|e| e.path())).collect()),
        Err(e) => Err(e),
    };
    let mut entries: Vec<PathBuf> = match entries {
        Ok(v) => v,
        Err(e) => return unreadable.push(format!("{}: {e}", path.display())),
    };
    entries.sort();
    for p in entries {
        let m = match std::fs::symlink_metadata(&p) {
            Ok(m) => m,
            Err(e) => {
                unreadable.push(format!("{}: {e}", p.display()));
                continue;
            }
        };
        if m.is_dir() {
            if recursive {
                walk(&p, true, out, skipped, unreadable);
            } else {
                skipped.push((p, "a folder (use -r)"));
            }
        } else if m.is_file() || (m.file_type().is_symlink() && p.is_file()) {
            out.push(p);
        } else if m.file_type().is_symlink() && p.is_dir() {
            skipped.push((p, "a symbolic link to a folder (not followed)"));
        } else if m.file_type().is_symlink() {
            skipped.push((p, "a symbolic link to no regular file"));
        } else {
            skipped.push((p, "not a regular file (device, FIFO or socket)"));
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
