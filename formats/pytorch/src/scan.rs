//! `scan` for what torch.load reads: any zip (the pickles in it under any
//! name, `.npy` object arrays, a TorchScript archive's code), the legacy
//! format's five pickles, the tar format, and every other file as a bare
//! pickle (torch.load and pickle.load unpickle any file that is not a zip,
//! whatever it starts like; the legacy magic number is itself a pickle).

use crate::constructors::TORCH;
use crate::tar;
use crate::torch::is_legacy;
use modelconv_ir::scan::{Finding, Scanned, Scanner, Stream, Verdict};
use modelconv_pickle::scan::{
    is_pickle, looks_like_pickle, names_joblib_arrays, scan_entries, scan_joblib, scan_pickle, scan_pickles, OwnScan,
    ZipMembers,
};
use modelconv_pickle::{zipscan, Constructors};
use std::path::Path;

pub struct TorchScanner;

/// True for the bytes of a zip (a local header or an empty archive's end record).
pub fn is_zip(bytes: &[u8]) -> bool {
    bytes.starts_with(b"PK\x03\x04") || bytes.starts_with(b"PK\x05\x06")
}

impl Scanner for TorchScanner {
    fn container(&self, _path: &Path, bytes: &[u8]) -> Option<Scanned> {
        let mut streams = Vec::new();
        let (kind, read_whole_too) = if is_zip(bytes) {
            scan_torch_zip(bytes, &mut streams);
            ("zip", false)
        } else if is_legacy(bytes) {
            // The magic number, protocol, sys_info, the data and the storage keys.
            scan_pickles(bytes, "legacy pickle", 5, false, &TORCH, &mut streams);
            ("pytorch-legacy", false)
        } else if let Some(members) = tar::members(bytes) {
            for (name, data) in members {
                scan_pickle(data, &format!("tar member {name}"), &TORCH, &mut streams);
            }
            ("tar", true)
        } else if let Some(kind) = joblib_compressed(bytes, &mut streams) {
            (kind, false)
        } else {
            return None;
        };
        Some(Scanned::new(kind, streams, read_whole_too))
    }

    fn whole_file(&self, container: Option<&str>, bytes: &[u8]) -> Option<(String, Vec<Stream>)> {
        let mut bare = Vec::new();
        scan_pickle(
            bytes,
            "pickle (as torch.load and pickle.load read the file)",
            &TORCH,
            &mut bare,
        );
        // A file another format reads whose bytes only start like a pickle
        // (a safetensors header length of 0x580 reads as PROTO 5) is no
        // pickle to Python when its unpickler fails before it names or
        // calls anything: nothing can have run.
        let harmless =
            |s: &Stream| s.error.is_some() && s.globals.is_empty() && s.opcodes.calls == 0 && s.opcodes.ext == 0;
        if !is_pickle(bytes, &bare) || (container.is_some() && bare.first().is_some_and(harmless)) {
            return None;
        }
        if names_joblib_arrays(&bare) {
            // joblib.dump's file: arrays written between pickle opcodes.
            let mut streams = Vec::new();
            scan_joblib(bytes, "pickle", &TORCH, &mut streams);
            return Some((
                container.map_or("joblib".into(), |c| format!("{c}, and joblib to Python")),
                streams,
            ));
        }
        let kind = match container {
            Some(c) => format!("{c}, and a pickle to Python"),
            None => "pickle".into(),
        };
        Some((kind, bare))
    }

    fn nothing_found(&self) -> Option<&'static str> {
        Some("no pickle")
    }
}

/// A file `joblib.dump(compress=…)` wrote: what it decompresses to, read
/// as `joblib.load` reads it. None when the bytes do not start like one
/// of joblib's compressors or decompress to something that is not a
/// pickle; a pickle that cannot be decompressed whole is reported, never
/// passed as safe.
fn joblib_compressed(bytes: &[u8], streams: &mut Vec<Stream>) -> Option<&'static str> {
    let kind = modelconv_pickle::joblib::compressor(bytes)?;
    // Its first bytes say whether it is a pickle; only then is all of it
    // decompressed (a .gz of anything else is not ours).
    if !looks_like_pickle(&modelconv_pickle::joblib::decompress(kind, bytes, 16).0) {
        return None;
    }
    let cap = modelconv_pickle::joblib::decompression_cap(bytes.len() as u64);
    let (plain, why) = modelconv_pickle::joblib::decompress(kind, bytes, cap);
    let part = format!("pickle ({kind}-compressed)");
    scan_joblib(&plain, &part, &TORCH, streams);
    if let Some(why) = why {
        streams.push(Stream::unreadable(&part, why));
    }
    Some(match kind {
        "gzip" => "joblib (gzip)",
        "zlib" => "joblib (zlib)",
        "bz2" => "joblib (bz2)",
        "xz" => "joblib (xz)",
        _ => "joblib (lzma)",
    })
}

/// Whether a zip member is TorchScript source (`code/…py`).
fn is_code(name: &str) -> bool {
    (name.contains("/code/") || name.starts_with("code/")) && name.ends_with(".py")
}

/// What torch.load reads in a zip: pickles (a `.npy` member's object
/// array too); a TorchScript archive's code/ is source text torch.jit.load
/// compiles and runs, reported once as code and never parsed as pickles.
struct TorchZip {
    torchscript: bool,
}

impl ZipMembers for TorchZip {
    fn data(&self) -> &'static dyn Constructors {
        &TORCH
    }
    fn own(&self, name: &str) -> Option<&OwnScan> {
        (self.torchscript && is_code(name)).then_some(&reported_as_code)
    }
    fn embedded(&self, head: &[u8]) -> Option<Option<(usize, &'static str)>> {
        modelconv_npy::pickled::embedded_pickle(head)
    }
}

/// TorchScript source: reported once for the archive (see [`scan_torch_zip`]).
fn reported_as_code(_: &[u8], _: &mut Vec<Stream>) {}

fn scan_torch_zip(bytes: &[u8], out: &mut Vec<Stream>) {
    let Some(entries) = zipscan::entries(bytes) else {
        return out.push(Stream::unreadable("zip", "no readable central directory".into()));
    };
    let torchscript = entries.iter().any(|e| e.name.ends_with("data.pkl"));
    // Each program listed: torch.jit.load compiles and runs them all.
    let code: Vec<Finding> = entries
        .iter()
        .filter(|e| torchscript && is_code(&e.name))
        .map(|e| Finding {
            module: "TorchScript program".into(),
            name: e.name.clone(),
            offset: 0,
            uses: 1,
            verdict: Verdict::Suspicious,
            reason: "code torch.jit.load compiles and runs (torch.load hands it the archive; torch 2.5 and \
                     older did so even under weights_only=True: CVE-2025-32434)",
            separator: Finding::LABELLED,
        })
        .collect();
    if !code.is_empty() {
        out.push(Stream::of_findings(
            format!("TorchScript code ({} files under code/)", code.len()),
            code,
        ));
    }
    scan_entries(bytes, &entries, &TorchZip { torchscript }, out);
}
