//! Keras model configs, for `scan`: a `Lambda` layer carries marshalled
//! Python bytecode that Keras runs when it loads the model unless
//! `safe_mode` is on (CVE-2024-3660), and a custom object names a module
//! Keras imports to build it. Read from a `.keras` archive's `config.json`,
//! and from the JSON an `.h5` model keeps in its `model_config` attribute
//! (found in the file's bytes, where HDF5 stores attribute strings whole).

use crate::scan::{Global, Stream, Verdict};
use crate::vm::ScanLog;
use serde_json::Value as Json;

/// Largest config parsed.
const MAX_CONFIG: usize = 64 << 20;
/// Most candidate JSON starts tried in an HDF5 file.
const MAX_TRIES: usize = 256;

const LAMBDA: &str = "a Lambda layer: Keras runs its marshalled Python bytecode when it loads the model, unless safe_mode is on (CVE-2024-3660)";
const CUSTOM: &str = "a custom object: Keras imports this module and runs its code to build it";

/// What a config names: (module, name, verdict, reason), walked whole.
fn findings(v: &Json, out: &mut Vec<(String, String, Verdict, &'static str)>, depth: usize) {
    if depth > 512 {
        return;
    }
    match v {
        Json::Object(o) => {
            let class = o.get("class_name").and_then(Json::as_str);
            let layer = o
                .get("config")
                .and_then(|c| c.get("name"))
                .and_then(Json::as_str)
                .unwrap_or("?");
            if class == Some("Lambda") {
                out.push(("keras.layers.Lambda".into(), layer.into(), Verdict::Dangerous, LAMBDA));
            }
            // A class from outside keras: by module, or by the name it was
            // registered under (`package>Class`; keras' own say `keras…`).
            let module = o.get("module").and_then(Json::as_str);
            let registered = o.get("registered_name").and_then(Json::as_str);
            let outside =
                |m: &str| !(m == "keras" || m.starts_with("keras.") || m.starts_with("keras>") || m == "builtins");
            if let Some(c) = class {
                if let Some(m) = module.filter(|m| outside(m)) {
                    out.push((m.to_string(), c.to_string(), Verdict::Suspicious, CUSTOM));
                } else if let Some(r) = registered.filter(|r| r.contains('>') && outside(r)) {
                    let package = r.split('>').next().unwrap_or(r);
                    out.push((package.to_string(), c.to_string(), Verdict::Suspicious, CUSTOM));
                }
            }
            for x in o.values() {
                findings(x, out, depth + 1);
            }
        }
        Json::Array(a) => {
            for x in a {
                findings(x, out, depth + 1);
            }
        }
        _ => {}
    }
}

/// A stream for one config (none when it names nothing to flag).
fn stream(config: &Json, part: String, offset: usize) -> Option<Stream> {
    let mut found = Vec::new();
    findings(config, &mut found, 0);
    if found.is_empty() {
        return None;
    }
    let mut globals: Vec<Global> = Vec::new();
    for (module, name, verdict, reason) in found {
        match globals.iter_mut().find(|g| g.module == module && g.name == name) {
            Some(g) => g.uses += 1,
            None => globals.push(Global {
                module,
                name,
                offset,
                uses: 1,
                verdict,
                reason,
            }),
        }
    }
    let verdict = globals.iter().map(|g| g.verdict).max().unwrap_or(Verdict::Safe);
    Some(Stream {
        part,
        globals,
        log: ScanLog::default(),
        error: None,
        ended_early: false,
        verdict,
    })
}

/// A `.keras` archive's `config.json`.
pub fn scan_config(bytes: &[u8], part: &str, out: &mut Vec<Stream>) {
    if bytes.len() > MAX_CONFIG {
        return;
    }
    if let Ok(v) = serde_json::from_slice::<Json>(bytes) {
        out.extend(stream(&v, format!("{part} (Keras model config)"), 0));
    }
}

/// The model configs an HDF5 file holds as JSON text (`model_config`).
pub fn scan_h5(bytes: &[u8], out: &mut Vec<Stream>) {
    let mut tries = 0;
    let mut at = 0;
    while let Some(i) = find(&bytes[at..], b"{\"").map(|i| i + at) {
        at = i + 2;
        // Only objects that name a class soon after they open.
        let window = &bytes[i..bytes.len().min(i + 256)];
        if find(window, b"\"class_name\"").is_none() {
            continue;
        }
        tries += 1;
        if tries > MAX_TRIES {
            break;
        }
        let end = bytes.len().min(i + MAX_CONFIG);
        let mut it = serde_json::Deserializer::from_slice(&bytes[i..end]).into_iter::<Json>();
        if let Some(Ok(v)) = it.next() {
            let len = it.byte_offset();
            out.extend(stream(
                &v,
                format!("model config JSON at byte {i} (Keras HDF5 attribute)"),
                i,
            ));
            at = i + len.max(2);
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}
