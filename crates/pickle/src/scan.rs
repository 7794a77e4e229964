//! Pickle streams for `scan`: what every stream names and calls, each
//! global with a verdict ([`classify`]), streams hidden after a STOP, and
//! the pickles inside a zip as Python's loaders read zips. Which
//! constructors count as data, and which zip members a format reads
//! itself, the format says.

use crate::constructors::Constructors;
use crate::vm::{Framing, Vm};
use crate::zipscan;
use modelconv_ir::scan::{worst, Finding, Stream, Verdict};

pub use crate::verdicts::classify;

/// Bytes of a zip member inflated first, to tell whether it can be a pickle.
const HEAD_BYTES: u64 = 64 << 10;

/// Scans one stream; returns it, where it stopped (None on error), and
/// where a file reader would stand after it if that differs (a STOP
/// inside a frame: Python read the whole frame).
pub fn scan_stream(
    bytes: &[u8],
    part: String,
    data: &'static dyn Constructors,
) -> (Stream, Option<usize>, Option<usize>) {
    scan_stream_as(bytes, part, data, false)
}

/// [`scan_stream`], or with `joblib` as `joblib.load` reads the stream
/// from its file (see [`crate::joblib`]).
fn scan_stream_as(
    bytes: &[u8],
    part: String,
    data: &'static dyn Constructors,
    joblib: bool,
) -> (Stream, Option<usize>, Option<usize>) {
    let mut vm = if joblib {
        Vm::scanner(bytes, data).with_framing(Framing::File).with_joblib()
    } else {
        Vm::scanner(bytes, data)
    };
    let result = vm.run();
    let mut log = vm.log.take().unwrap_or_default();
    // A limit of ours, not CPython's: it goes on, and so does the scan,
    // opcode by opcode (the stream stays suspicious at least).
    let walked = match &result {
        Err(e) if e.kind == crate::vm::PickleErrorKind::Limit => {
            Some(crate::walk::walk(bytes, vm.position(), &mut log))
        }
        _ => None,
    };
    let mut file_end = None;
    if log.ops.frames > 0 && !joblib {
        // Read from a file object (torch.load's BytesIO), frames change how
        // Python reads: the globals it reaches that way count too.
        let mut file = Vm::scanner(bytes, data).with_framing(Framing::File);
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
            let (verdict, reason) = match (m.as_str(), n.as_str()) {
                // Its data was read past, or scanned as a pickle of its own.
                wrapper if joblib && wrapper == crate::joblib::WRAPPER => {
                    (Verdict::Safe, "joblib's array record, its data read")
                }
                _ => classify(m, n, data),
            };
            Finding {
                module: m.clone(),
                name: n.clone(),
                offset: *at,
                uses: uses.max(1),
                verdict,
                reason,
                separator: Finding::DOTTED,
            }
        })
        .collect();
    let mut verdict = worst(globals.iter().map(|g| g.verdict));
    if log.ops.ext > 0 {
        verdict = Verdict::Dangerous;
    }
    let (error, end, ended_early) = match result {
        Ok(_) => (None, Some(vm.position()), false),
        Err(e) => {
            verdict = verdict.max(Verdict::Suspicious);
            let rest = walked.map_or(String::new(), |end| {
                format!(" (read on opcode by opcode to byte {end}, as CPython would run it)")
            });
            (
                Some(format!("{e}{rest}")),
                None,
                e.kind == crate::vm::PickleErrorKind::Truncated,
            )
        }
    };
    (
        Stream {
            part,
            globals,
            opcodes: log.ops,
            error,
            ended_early,
            verdict,
        },
        end,
        file_end,
    )
}

/// Scans a pickle and whatever follows its STOP (up to 16 streams).
pub fn scan_pickle(bytes: &[u8], part: &str, data: &'static dyn Constructors, out: &mut Vec<Stream>) {
    scan_pickles(bytes, part, 1, true, data, out);
}

/// Scans the `expected` pickles a loader reads one after another (torch's
/// legacy format: five), and whatever follows them. Python reads the next
/// pickle from where the file stands: after the STOP, or past a frame it
/// read whole; both are followed. With `after`, streams past the expected
/// ones are scanned too: data Python never reads, hidden on purpose, so
/// suspicious (without it: what follows is not pickles, like the legacy
/// format's raw storages).
pub fn scan_pickles(
    bytes: &[u8],
    part: &str,
    expected: usize,
    after: bool,
    data: &'static dyn Constructors,
    out: &mut Vec<Stream>,
) {
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
        let (mut s, end, file_end) = scan_stream(&bytes[start..], name, data);
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

/// A file `joblib.load` reads (`bytes` decompressed already): one stream
/// with its arrays read past (see [`crate::joblib`]). When that reading
/// reaches the file's end, the globals `pickle.load` would reach before
/// the first array's bytes stop it join it; otherwise both readings are
/// reported as they are.
pub fn scan_joblib(bytes: &[u8], part: &str, data: &'static dyn Constructors, out: &mut Vec<Stream>) {
    let (mut joblib, end, _) = scan_stream_as(bytes, format!("{part} (as joblib.load reads it)"), data, true);
    let mut plain = Vec::new();
    scan_pickle(bytes, part, data, &mut plain);
    if end != Some(bytes.len()) {
        if end.is_some() {
            joblib.verdict = joblib.verdict.max(Verdict::Suspicious);
            joblib.error = Some("data after the pickle's STOP".into());
        }
        out.push(joblib);
        return out.extend(plain.into_iter().map(without_array_records));
    }
    for s in plain {
        for g in s.globals {
            let known = joblib.globals.iter().any(|k| k.module == g.module && k.name == g.name);
            if !known && (g.module.as_str(), g.name.as_str()) != crate::joblib::WRAPPER {
                joblib.verdict = joblib.verdict.max(g.verdict);
                joblib.globals.push(g);
            }
        }
    }
    out.push(joblib);
}

/// A plain reading of a joblib file, less joblib's array record: what it
/// makes joblib.load read is the joblib reading's to judge.
fn without_array_records(mut s: Stream) -> Stream {
    s.globals
        .retain(|g| (g.module.as_str(), g.name.as_str()) != crate::joblib::WRAPPER);
    s.verdict = worst(s.globals.iter().map(|g| g.verdict));
    if s.error.is_some() {
        s.verdict = s.verdict.max(Verdict::Suspicious);
    }
    if s.opcodes.ext > 0 {
        s.verdict = Verdict::Dangerous;
    }
    s
}

/// Whether a scan of a file as a pickle names joblib's array record.
pub fn names_joblib_arrays(streams: &[Stream]) -> bool {
    streams.iter().any(|s| {
        s.globals
            .iter()
            .any(|g| (g.module.as_str(), g.name.as_str()) == crate::joblib::WRAPPER)
    })
}

/// True when a stream starts like a pickle (protocol 2+ header).
pub fn looks_like_pickle(b: &[u8]) -> bool {
    b.len() >= 2 && b[0] == 0x80 && (2..=5).contains(&b[1])
}

/// What a pickle scan of a whole file found: a pickle to Python when the
/// stream reads to its STOP, names any global (Python would look it up), or
/// starts with a protocol header; otherwise Python's unpickler stops at
/// once with nothing run.
pub fn is_pickle(bytes: &[u8], streams: &[Stream]) -> bool {
    looks_like_pickle(bytes) || runs_as_pickle(streams)
}

/// The stream reads to its STOP, or names a global or calls something
/// before Python's unpickler would stop (a member of a zip whose bytes
/// only start like a pickle, such as a raw storage, is not one).
pub fn runs_as_pickle(streams: &[Stream]) -> bool {
    streams
        .first()
        .is_some_and(|f| f.error.is_none() || !f.globals.is_empty() || f.opcodes.calls > 0)
}

/// A member's own reading: its findings from its whole content.
pub type OwnScan = dyn Fn(&[u8], &mut Vec<Stream>);

/// What a format says about the members of a zip it scans.
pub trait ZipMembers {
    /// The constructors its pickles may call as data.
    fn data(&self) -> &'static dyn Constructors;
    /// A member the format reads itself (a config, source code) instead
    /// of as a pickle: its findings, from its whole content.
    fn own(&self, _name: &str) -> Option<&OwnScan> {
        None
    }
    /// A member that is a container of its own holding a pickle (a
    /// `.npy` object array): `Some((offset of the pickle, label))` when
    /// `head` starts one whose loader unpickles, `Some(None)` when it is
    /// such a container holding none, `None` when it is not one.
    fn embedded(&self, _head: &[u8]) -> Option<Option<(usize, &'static str)>> {
        None
    }
}

/// Every pickle in a zip, read as Python's loaders read zips: every
/// central-directory record (duplicates too), each member scanned as a
/// pickle when it is one to Python (`*.pkl`, any member that reads as a
/// pickle, pickles in members `members` says are containers of their
/// own). A member that cannot be read (another compression method, data
/// outside the file) is reported, never skipped.
pub fn scan_zip(bytes: &[u8], members: &dyn ZipMembers, out: &mut Vec<Stream>) {
    match zipscan::entries(bytes) {
        Some(entries) => scan_entries(bytes, &entries, members, out),
        None => out.push(Stream::unreadable("zip", "no readable central directory".into())),
    }
}

/// [`scan_zip`] of a zip whose central directory the caller has read.
pub fn scan_entries(bytes: &[u8], entries: &[zipscan::Entry], members: &dyn ZipMembers, out: &mut Vec<Stream>) {
    let mut budget = zipscan::inflation_budget(bytes.len() as u64);
    if let Some((miniz, python)) = zipscan::readings_differ(bytes) {
        out.push(Stream {
            part: "zip central directory".into(),
            globals: Vec::new(),
            opcodes: Default::default(),
            error: Some(format!(
                "read differently by torch's reader ({miniz} members) and by Python's zipfile ({python} members): \
                 a tampered archive; the members of both readings are scanned"
            )),
            ended_early: false,
            verdict: Verdict::Suspicious,
        });
    }
    for (i, e) in entries.iter().enumerate() {
        if i % 256 == 0 && modelconv_ir::check_interrupt().is_err() {
            return;
        }
        if let Some(own) = members.own(&e.name) {
            match e.content(bytes, &mut budget) {
                zipscan::Content::Stored(d) => own(d, out),
                zipscan::Content::Inflated(d) => own(&d, out),
                zipscan::Content::Unreadable(why) => out.push(Stream::unreadable(&e.name, why)),
            }
            continue;
        }
        scan_member(bytes, e, members, &mut budget, out);
    }
}

/// One member: its first bytes say whether it can be a pickle to Python
/// (a container that holds none, or a stream that fails before its first
/// bytes end, is no pickle); only then is all of it inflated.
fn scan_member(bytes: &[u8], e: &zipscan::Entry, members: &dyn ZipMembers, budget: &mut u64, out: &mut Vec<Stream>) {
    let data_set = members.data();
    let head = e.head(bytes, HEAD_BYTES, budget);
    let head_bytes: Option<&[u8]> = match &head {
        zipscan::Content::Stored(d) => Some(d),
        zipscan::Content::Inflated(d) => Some(d),
        zipscan::Content::Unreadable(_) => None,
    };
    let content = match head_bytes {
        Some(d) if (d.len() as u64) < e.size() => {
            let may_be_pickle = match members.embedded(d) {
                Some(inner) => inner.is_some(),
                None => {
                    let (s, _, _) = scan_stream(d, String::new(), data_set);
                    e.name.ends_with(".pkl") || s.ended_early || runs_as_pickle(std::slice::from_ref(&s))
                }
            };
            if !may_be_pickle {
                return;
            }
            e.content(bytes, budget)
        }
        _ => head,
    };
    let data: &[u8] = match &content {
        zipscan::Content::Stored(d) => d,
        zipscan::Content::Inflated(d) => d,
        zipscan::Content::Unreadable(why) => return out.push(Stream::unreadable(&e.name, why.clone())),
    };
    if let Some(Some((at, label))) = members.embedded(data) {
        let inner = data.get(at..).unwrap_or_default();
        return scan_pickle(inner, &format!("{} ({label})", e.name), data_set, out);
    }
    let mut s = Vec::new();
    scan_pickle(data, &e.name, data_set, &mut s);
    if e.name.ends_with(".pkl") || runs_as_pickle(&s) {
        out.extend(s);
    }
}
