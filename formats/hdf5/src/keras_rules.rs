//! What a Keras model config makes Keras import or run when it loads the
//! model, found by walking the whole config (layers nested in Sequential,
//! Functional and sub-models, and every argument: an activation or an
//! initializer is a serialized object too), the way
//! `keras.saving.deserialize_keras_object` reads each
//! `{"module", "class_name", "config", "registered_name"}` record:
//!
//! - **dangerous**: layers that run code or load other code when built —
//!   `Lambda` and serialized `__lambda__` functions (marshalled bytecode,
//!   CVE-2024-3660; ignored `safe_mode` in `.h5`, CVE-2025-9905),
//!   `TorchModuleWrapper` (calls `torch.load(weights_only=False)` on bytes
//!   in the config, CVE-2025-49655), `TFSMLayer` (loads and runs an
//!   external SavedModel); keras functions that fetch files or load other
//!   models or switch safe mode off (`get_file`, CVE-2025-8747;
//!   `load_model`, `enable_unsafe_deserialization`, CVE-2025-9906); a
//!   module's function from outside keras that runs code (`os.system`, …:
//!   CVE-2025-1550), as the pickle verdicts judge it;
//! - **suspicious**: any other class or function from outside keras (Keras
//!   imports its module, which runs its code), and a lookup layer whose
//!   `vocabulary` is a file path (Keras reads whatever file it names).

use modelconv_ir::scan::{Finding, Verdict};
use modelconv_pickle::{classify, PYTHON};
use serde_json::Value as Json;

/// Layer classes whose building runs or loads code, with why.
const CODE_LAYERS: &[(&str, &str)] = &[
    ("Lambda", "a Lambda layer: Keras runs its marshalled Python bytecode when it loads the model, unless safe_mode is on (and always from .h5: CVE-2024-3660, CVE-2025-9905)"),
    ("__lambda__", "a serialized lambda: Keras runs its marshalled Python bytecode when it loads the model, unless safe_mode is on"),
    ("TorchModuleWrapper", "a TorchModuleWrapper layer: Keras calls torch.load(weights_only=False) on the module bytes in its config, which runs any pickle (CVE-2025-49655)"),
    ("TFSMLayer", "a TFSMLayer: Keras loads the TensorFlow SavedModel it names and runs its graph, which may read and write files or run Python"),
];

/// Keras functions that fetch files, load further models or turn safe
/// mode off, reached as a serialized function or class by any keras module.
const KERAS_GADGETS: &[(&str, &str)] = &[
    (
        "get_file",
        "keras.utils.get_file: downloads a URL and writes (or extracts) it anywhere, even in safe mode (CVE-2025-8747)",
    ),
    (
        "load_model",
        "loads another model, which may run code with safe mode off (CVE-2025-9906)",
    ),
    ("load_weights", "loads weights from another file the config names"),
    (
        "enable_unsafe_deserialization",
        "turns Keras safe mode off for what is loaded next, so Lambda bytecode runs (CVE-2025-9906)",
    ),
];

/// Lookup layers that read their `vocabulary` from a file when it is a path.
const VOCABULARY_LAYERS: &[&str] = &["StringLookup", "IntegerLookup", "TextVectorization"];

const CUSTOM: &str = "a custom object: Keras imports this module and runs its code to build it";
const VOCABULARY: &str =
    "a vocabulary file: Keras reads the file it names (any path, outside the model too) when it builds the layer";

/// Deepest config walked (deeper ones fail to parse first, see pyjson).
const MAX_DEPTH: usize = crate::pyjson::MAX_DEPTH + 1;

/// Every record the config names that Keras would run, import or read.
pub fn findings(config: &Json) -> Vec<Finding> {
    let mut out = Vec::new();
    walk(config, &mut out, 0);
    out
}

fn walk(v: &Json, out: &mut Vec<Finding>, depth: usize) {
    if depth > MAX_DEPTH {
        return;
    }
    match v {
        Json::Object(o) => {
            if let Some(class) = o.get("class_name").and_then(Json::as_str) {
                record(o, class, out);
            }
            o.values().for_each(|x| walk(x, out, depth + 1));
        }
        Json::Array(a) => a.iter().for_each(|x| walk(x, out, depth + 1)),
        _ => {}
    }
}

fn finding(module: String, name: String, verdict: Verdict, reason: &'static str) -> Finding {
    Finding {
        module,
        name,
        offset: 0,
        uses: 1,
        verdict,
        reason,
        separator: Finding::DOTTED,
    }
}

fn is_keras(module: &str) -> bool {
    module == "keras" || module.starts_with("keras.") || module.starts_with("keras>")
}

/// One `{"class_name": …}` record.
fn record(o: &serde_json::Map<String, Json>, class: &str, out: &mut Vec<Finding>) {
    let config = o.get("config");
    let module = o.get("module").and_then(Json::as_str);
    let registered = o.get("registered_name").and_then(Json::as_str);
    // A registered name `package>Name` says which class Keras looks up.
    let registered_class = registered.map(|r| r.rsplit('>').next().unwrap_or(r));
    let layer = config.and_then(|c| c.get("name")).and_then(Json::as_str).unwrap_or("?");
    for c in [Some(class), registered_class].into_iter().flatten() {
        if let Some((_, why)) = CODE_LAYERS.iter().find(|(n, _)| *n == c) {
            return out.push(finding(
                format!("keras.layers.{c}"),
                layer.into(),
                Verdict::Dangerous,
                why,
            ));
        }
    }
    // A serialized function names its function in `config`.
    let name = match (class, config.and_then(Json::as_str)) {
        ("function", Some(f)) => f,
        _ => class,
    };
    if VOCABULARY_LAYERS.contains(&class) {
        if let Some(path) = config.and_then(|c| c.get("vocabulary")).and_then(Json::as_str) {
            let mut f = finding(
                "Keras vocabulary file".into(),
                path.into(),
                Verdict::Suspicious,
                VOCABULARY,
            );
            f.separator = Finding::LABELLED;
            out.push(f);
        }
    }
    let origin = module.or(registered
        .filter(|r| r.contains('>'))
        .map(|r| r.split('>').next().unwrap_or(r)));
    match origin {
        Some(m) if !is_keras(m) => out.extend(outside_keras(m, name)),
        _ => {
            if let Some((_, why)) = KERAS_GADGETS.iter().find(|(n, _)| *n == name) {
                out.push(finding(
                    origin.unwrap_or("keras").into(),
                    name.into(),
                    Verdict::Dangerous,
                    why,
                ));
            }
        }
    }
}

/// A class or function Keras imports from a module outside keras: what
/// the pickle verdicts say of the same global (data stays silent).
fn outside_keras(module: &str, name: &str) -> Option<Finding> {
    let (verdict, why) = classify(module, name, &PYTHON);
    match verdict {
        Verdict::Safe => None,
        Verdict::Dangerous => Some(finding(module.into(), name.into(), verdict, why)),
        Verdict::Suspicious => Some(finding(module.into(), name.into(), verdict, CUSTOM)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verdicts(config: &str) -> Vec<(String, String, Verdict)> {
        let v = crate::pyjson::loads_str(config).unwrap();
        findings(&v)
            .into_iter()
            .map(|f| (f.module, f.name, f.verdict))
            .collect()
    }

    #[test]
    fn records_are_judged_as_keras_builds_them() {
        let d = Verdict::Dangerous;
        let s = Verdict::Suspicious;
        let f = |m: &str, n: &str, v| vec![(m.to_string(), n.to_string(), v)];
        assert_eq!(
            verdicts(r#"{"class_name": "function", "module": "os", "config": "system"}"#),
            f("os", "system", d)
        );
        assert_eq!(
            verdicts(r#"{"class_name": "function", "module": "builtins", "config": "exec"}"#),
            f("builtins", "exec", d)
        );
        assert_eq!(
            verdicts(r#"{"class_name": "function", "module": "keras.utils", "config": "get_file"}"#),
            f("keras.utils", "get_file", d)
        );
        assert_eq!(
            verdicts(r#"{"class_name": "Thing", "module": "mylib.layers"}"#),
            f("mylib.layers", "Thing", s)
        );
        assert_eq!(
            verdicts(r#"{"class_name": "X", "registered_name": "pkg>TFSMLayer", "config": {"name": "t"}}"#),
            f("keras.layers.TFSMLayer", "t", d)
        );
        assert_eq!(
            verdicts(
                r#"{"class_name": "StringLookup", "module": "keras.layers", "config": {"vocabulary": "../../etc/passwd"}}"#
            ),
            f("Keras vocabulary file", "../../etc/passwd", s)
        );
        assert!(verdicts(
            r#"{"class_name": "StringLookup", "module": "keras.layers", "config": {"vocabulary": ["a", "b"]}}"#
        )
        .is_empty());
        assert!(verdicts(
            r#"{"class_name": "function", "module": "keras.src.activations.activations", "config": "relu"}"#
        )
        .is_empty());
        assert!(verdicts(r#"{"class_name": "dict", "module": "builtins", "config": {}}"#).is_empty());
    }
}
