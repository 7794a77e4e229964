//! Helpers for the end-to-end tests: run the built binary, find fixtures.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

pub fn fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures").join(rel)
}

pub fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_modelconv"))
        .args(args)
        .output()
        .expect("run modelconv")
}

pub fn p(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

/// Runs and asserts the exit code, returning stdout.
pub fn ok(args: &[&str]) -> String {
    expect_code(args, 0)
}

pub fn expect_code(args: &[&str], code: i32) -> String {
    let out = run(args);
    assert_eq!(
        out.status.code(),
        Some(code),
        "modelconv {args:?}\nstdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn stderr_of(args: &[&str]) -> (i32, String) {
    let out = run(args);
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

pub fn inspect_json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&ok(&["inspect", "--json", p(path)])).expect("inspect --json prints JSON")
}

/// Names of everything in a folder (to check that nothing was left behind).
pub fn dir_names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// Runs modelconv, killing it if it has not finished in `limit` (a guard
/// against hangs, not a timing assertion).
pub fn run_bounded(args: &[&str], limit: Duration) -> Option<i32> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_modelconv"))
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_bounded(&mut child, limit)
}

/// [`run_bounded`] under a 1 GiB address-space limit (so that an input
/// that makes it allocate without bound fails instead), with its stderr.
pub fn run_limited(args: &[&str], limit: Duration) -> (Option<i32>, String) {
    let (code, _, err) = run_under_rlimit(args, 1 << 30, limit);
    (code, err)
}

/// Runs modelconv with its address space capped at `bytes` (as `ulimit -v`
/// does on a CI runner) and killed after `limit`: exit code, stdout, stderr.
/// Both outputs are read after exit, so they must stay small (one pipe).
pub fn run_under_rlimit(args: &[&str], bytes: u64, limit: Duration) -> (Option<i32>, String, String) {
    use std::os::unix::process::CommandExt;
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_modelconv"));
    cmd.args(args).stdout(Stdio::piped()).stderr(Stdio::piped());
    // SAFETY: setrlimit is async-signal-safe; nothing else runs in the child.
    unsafe {
        cmd.pre_exec(move || {
            let lim = libc::rlimit {
                rlim_cur: bytes,
                rlim_max: bytes,
            };
            if libc::setrlimit(libc::RLIMIT_AS, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().unwrap();
    let code = wait_bounded(&mut child, limit);
    let (mut out, mut err) = (String::new(), String::new());
    if code.is_some() {
        std::io::Read::read_to_string(&mut child.stdout.take().unwrap(), &mut out).unwrap();
        std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    }
    (code, out, err)
}

/// The child's exit code, or `None` once it has run past `limit` (killed).
fn wait_bounded(child: &mut std::process::Child, limit: Duration) -> Option<i32> {
    let start = Instant::now();
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s.code();
        }
        if start.elapsed() > limit {
            child.kill().unwrap();
            child.wait().unwrap();
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The documented JSON schema (docs/json-schema.json).
pub fn json_schema() -> serde_json::Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/json-schema.json");
    serde_json::from_slice(&std::fs::read(path).expect("docs/json-schema.json")).expect("the schema is JSON")
}

/// Checks `v` against `schema` (the subset of JSON Schema the documented
/// schema uses: $ref, allOf, oneOf, type, required, properties,
/// additionalProperties, items, enum, const, minimum, pattern). Returns
/// the first violation, with its JSON path. The interop suite checks the
/// same documents with the `jsonschema` package.
pub fn schema_violation(
    root: &serde_json::Value,
    schema: &serde_json::Value,
    v: &serde_json::Value,
    at: &str,
) -> Option<String> {
    use serde_json::Value as J;
    if let Some(r) = schema.get("$ref").and_then(J::as_str) {
        let name = r.strip_prefix("#/$defs/").expect("local $ref");
        return schema_violation(root, &root["$defs"][name], v, at);
    }
    if let Some(all) = schema.get("allOf").and_then(J::as_array) {
        for s in all {
            if let Some(e) = schema_violation(root, s, v, at) {
                return Some(e);
            }
        }
    }
    if let Some(one) = schema.get("oneOf").and_then(J::as_array) {
        let matching = one
            .iter()
            .filter(|s| schema_violation(root, s, v, at).is_none())
            .count();
        if matching != 1 {
            return Some(format!("{at}: matches {matching} of oneOf"));
        }
    }
    if let Some(t) = schema.get("type") {
        let types: Vec<&str> = match t {
            J::String(s) => vec![s.as_str()],
            J::Array(a) => a.iter().filter_map(J::as_str).collect(),
            _ => vec![],
        };
        let ok = types.iter().any(|t| match *t {
            "object" => v.is_object(),
            "array" => v.is_array(),
            "string" => v.is_string(),
            "number" => v.is_number(),
            "integer" => v.is_i64() || v.is_u64(),
            "boolean" => v.is_boolean(),
            "null" => v.is_null(),
            _ => false,
        });
        if !ok {
            return Some(format!("{at}: {v} is not {types:?}"));
        }
    }
    if let Some(c) = schema.get("const") {
        if c != v {
            return Some(format!("{at}: {v} is not {c}"));
        }
    }
    if let Some(e) = schema.get("enum").and_then(J::as_array) {
        if !e.contains(v) {
            return Some(format!("{at}: {v} is not one of {e:?}"));
        }
    }
    if let (Some(min), Some(n)) = (schema.get("minimum").and_then(J::as_f64), v.as_f64()) {
        if n < min {
            return Some(format!("{at}: {n} < {min}"));
        }
    }
    if let (Some(p), Some(s)) = (schema.get("pattern").and_then(J::as_str), v.as_str()) {
        if !regex::Regex::new(p).unwrap().is_match(s) {
            return Some(format!("{at}: '{s}' does not match {p}"));
        }
    }
    if let Some(o) = v.as_object() {
        for r in schema.get("required").and_then(J::as_array).into_iter().flatten() {
            let k = r.as_str().unwrap();
            if !o.contains_key(k) {
                return Some(format!("{at}: missing '{k}'"));
            }
        }
        let props = schema.get("properties").and_then(J::as_object);
        for (k, x) in o {
            let sub = props.and_then(|p| p.get(k));
            let e = match (sub, schema.get("additionalProperties")) {
                (Some(s), _) => schema_violation(root, s, x, &format!("{at}.{k}")),
                (None, Some(J::Bool(false))) => Some(format!("{at}: unexpected '{k}'")),
                (None, Some(s @ J::Object(_))) => schema_violation(root, s, x, &format!("{at}.{k}")),
                _ => None,
            };
            if e.is_some() {
                return e;
            }
        }
    }
    if let (Some(items), Some(a)) = (schema.get("items"), v.as_array()) {
        for (i, x) in a.iter().enumerate() {
            if let Some(e) = schema_violation(root, items, x, &format!("{at}[{i}]")) {
                return Some(e);
            }
        }
    }
    None
}

/// Runs `args` (which include `--json`), expects `code`, and checks that
/// stdout is one document valid against the schema's `def`.
pub fn json_doc(args: &[&str], code: i32, def: &str) -> serde_json::Value {
    let out = run(args);
    assert_eq!(
        out.status.code(),
        Some(code),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{args:?}: stdout is not one JSON document: {e}"));
    let root = json_schema();
    if let Some(e) = schema_violation(&root, &root["$defs"][def], &v, "$") {
        panic!("{args:?}: not a valid '{def}' document: {e}\n{v:#}");
    }
    if let Some(e) = schema_violation(&root, &root, &v, "$") {
        panic!("{args:?}: not a valid document: {e}");
    }
    v
}

/// The tensor names of an `inspect --json` document, sorted.
pub fn sorted_names(v: &serde_json::Value) -> Vec<String> {
    let mut n: Vec<String> = v["tensors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_string())
        .collect();
    n.sort();
    n
}

/// The SHA-256 of `bytes`, in hex (as the fixture manifests give it).
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// Exit 2 (bad input, refused) and the message on stderr.
pub fn exit_2(args: &[&str]) -> String {
    let (code, err) = stderr_of(args);
    assert_eq!(code, 2, "{args:?}: {err}");
    err
}
