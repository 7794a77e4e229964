//! The layering the plugin contract promises (docs/ARCHITECTURE.md): a
//! format crate never depends on another format crate, `src/` reaches the
//! format crates only through its registry file, and no command spells a
//! format's option (the CLI builds those flags from the declarations).

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `cargo metadata` of the workspace (no dependencies outside it).
fn metadata() -> serde_json::Value {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = std::process::Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--no-deps", "--offline"])
        .current_dir(root())
        .output()
        .expect("run cargo metadata");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("cargo metadata prints JSON")
}

/// The format crates: every package under `formats/` but the IR.
fn format_crates(meta: &serde_json::Value) -> Vec<(String, Vec<String>)> {
    let formats = root().join("formats");
    let mut out = Vec::new();
    for pkg in meta["packages"].as_array().unwrap() {
        let manifest = Path::new(pkg["manifest_path"].as_str().unwrap());
        let dir = manifest.parent().unwrap();
        if dir.parent() != Some(formats.as_path()) || dir.ends_with("ir") {
            continue;
        }
        let deps = pkg["dependencies"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["name"].as_str().unwrap().to_string())
            .collect();
        out.push((pkg["name"].as_str().unwrap().to_string(), deps));
    }
    out
}

#[test]
fn no_format_crate_depends_on_another() {
    let crates = format_crates(&metadata());
    assert!(crates.len() >= 8, "found only {crates:?}");
    let names: Vec<&str> = crates.iter().map(|(n, _)| n.as_str()).collect();
    for (name, deps) in &crates {
        for d in deps {
            assert!(!names.contains(&d.as_str()), "{name} depends on the format crate {d}");
        }
    }
}

fn src_files() -> Vec<(PathBuf, String)> {
    let mut out = Vec::new();
    let mut dirs = vec![root().join("src")];
    while let Some(dir) = dirs.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                dirs.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") {
                let text = std::fs::read_to_string(&p).unwrap();
                out.push((p, text));
            }
        }
    }
    out
}

#[test]
fn src_uses_format_crates_only_in_the_registry() {
    let crates = format_crates(&metadata());
    let registry = root().join("src/registry.rs");
    let files = src_files();
    assert!(files.len() > 5);
    for (path, text) in &files {
        if *path == registry {
            continue;
        }
        for (name, _) in &crates {
            let ident = name.replace('-', "_");
            assert!(!text.contains(&ident), "{} uses {ident}", path.display());
        }
    }
    // And the registry does use them, so the check above is looking for the
    // right spelling.
    let reg = std::fs::read_to_string(&registry).unwrap();
    assert!(crates.iter().all(|(n, _)| reg.contains(&n.replace('-', "_"))));
}

/// Every option the formats declare, as `formats --json` lists them.
fn declared_options() -> Vec<serde_json::Value> {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_modelconv"))
        .args(["formats", "--json"])
        .output()
        .unwrap();
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let formats = doc["formats"].as_array().unwrap();
    assert!(formats.len() >= 10);
    let mut opts = Vec::new();
    for f in formats {
        for o in f["options"].as_array().unwrap() {
            let mut o = o.clone();
            o["format"] = f["name"].clone();
            opts.push(o);
        }
    }
    opts
}

#[test]
fn src_spells_no_format_option() {
    let opts = declared_options();
    let mut names: Vec<&str> = Vec::new();
    for o in &opts {
        names.push(o["name"].as_str().unwrap());
        if let Some(off) = o["negation"].as_str() {
            names.push(off);
        }
    }
    assert!(names.len() >= 10, "{names:?}");
    for (path, text) in src_files() {
        for n in &names {
            let (quoted, flag) = (format!("\"{n}\""), format!("--{n}"));
            assert!(
                !text.contains(&quoted) && !text.contains(&flag),
                "{} spells the format option {n}",
                path.display()
            );
            // A clap field for it (`--state-dict` from `state_dict: …`).
            let field = n.replace('-', "_");
            let declared = [format!("\n    {field}: "), format!("pub {field}: ")];
            assert!(
                !declared.iter().any(|d| text.contains(d)),
                "{} declares a field for {n}",
                path.display()
            );
        }
    }
}

#[test]
fn every_declared_option_is_a_flag_of_its_commands() {
    for o in declared_options() {
        let (name, format) = (o["name"].as_str().unwrap(), o["format"].as_str().unwrap());
        for stage in o["stages"].as_array().unwrap() {
            let command = match stage.as_str().unwrap() {
                "open" => "inspect",
                "write" | "cast" => "convert",
                _ => "quantize",
            };
            let out = std::process::Command::new(env!("CARGO_BIN_EXE_modelconv"))
                .args([command, "--help"])
                .output()
                .unwrap();
            let help = String::from_utf8(out.stdout).unwrap().replace('\n', " ");
            assert!(help.contains(&format!("--{name}")), "{command}: --{name} missing");
            assert!(help.contains(format), "{command} --help does not name {format}");
        }
    }
}

/// The string literals of Rust source, comments left out (enough for our
/// own files: no raw strings with quotes inside).
fn literals(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in text.lines() {
        let code = line.split("//").next().unwrap_or_default();
        let mut parts = code.split('"');
        parts.next();
        while let (Some(lit), _) = (parts.next(), parts.next()) {
            out.push(lit.to_string());
        }
    }
    out
}

#[test]
fn the_pickle_vm_names_no_library() {
    // The VM, its values and Python's own builders: whatever torch, numpy
    // or paddle may build is plugged in by the formats that read them.
    let dir = root().join("crates/pickle/src");
    for file in ["vm.rs", "value.rs", "constructors.rs", "text.rs", "lib.rs"] {
        let text = std::fs::read_to_string(dir.join(file)).unwrap();
        for lit in literals(&text) {
            for library in ["torch", "numpy", "paddle", "keras"] {
                assert!(
                    !lit.contains(library),
                    "crates/pickle/src/{file} names {library}: \"{lit}\""
                );
            }
        }
    }
}

/// `use crate::X` and `crate::X::` paths of a module's source.
fn crate_modules(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (i, _) in text.match_indices("crate::") {
        let rest = &text[i + 7..];
        let name: String = rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
        if rest[name.len()..].starts_with("::") || rest[name.len()..].starts_with(';') {
            out.push(name);
        }
    }
    out
}

#[test]
fn no_module_cycles_in_the_pickle_crates() {
    for dir in ["crates/pickle/src", "formats/pytorch/src", "formats/paddle/src"] {
        let dir = root().join(dir);
        let mut uses = std::collections::BTreeMap::new();
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            let module = p.file_stem().unwrap().to_string_lossy().to_string();
            if module == "lib" || p.extension().is_none_or(|x| x != "rs") {
                continue;
            }
            uses.insert(module, crate_modules(&std::fs::read_to_string(&p).unwrap()));
        }
        for (a, used) in &uses {
            for b in used {
                if let Some(back) = uses.get(b) {
                    assert!(
                        b == a || !back.contains(a),
                        "{}: modules {a} and {b} use each other",
                        dir.display()
                    );
                }
            }
        }
    }
}
