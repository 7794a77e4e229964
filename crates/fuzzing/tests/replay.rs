//! Every fuzz target over its seed corpus (the fixtures, whole and cut in
//! half) and every input committed under `fuzz/regressions/<target>/`
//! (findings stay fixed), plus, where a local fuzzing run left them,
//! `fuzz/corpus/<target>/` and `fuzz/artifacts/<target>/`: plain
//! `cargo test`, no fuzzer needed.

use std::path::{Path, PathBuf};

fn files_under(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else { return };
    let mut entries: Vec<PathBuf> = rd.filter_map(|e| e.ok().map(|e| e.path())).collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            files_under(&p, out);
        } else if p.is_file() {
            out.push(p);
        }
    }
}

#[test]
fn every_target_survives_its_corpus() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut seeds = Vec::new();
    files_under(&root.join("fixtures"), &mut seeds);
    seeds.retain(|p| std::fs::metadata(p).is_ok_and(|m| m.len() <= 4 << 20));
    assert!(seeds.len() > 50, "{}", seeds.len());
    for (name, target) in modelconv_fuzzing::TARGETS {
        let mut inputs = seeds.clone();
        files_under(&root.join("fuzz/regressions").join(name), &mut inputs);
        files_under(&root.join("fuzz/corpus").join(name), &mut inputs);
        files_under(&root.join("fuzz/artifacts").join(name), &mut inputs);
        for input in &inputs {
            // A local fuzzing run may remove corpus files meanwhile.
            let data = match std::fs::read(input) {
                Ok(d) => d,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => panic!("{}: {e}", input.display()),
            };
            target(&data);
            // Cut in half too: truncations reach other paths.
            target(&data[..data.len() / 2]);
        }
    }
}
