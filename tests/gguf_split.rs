//! Split GGUF output and merged input, against files llama-gguf-split made
//! (fixtures/gguf/gen_split.sh): by tensor count, by size with a
//! metadata-only first shard, one shard at a time (`--split-only`), and a
//! merge; bad split requests are refused before anything is written.

mod common;
use common::*;
use std::path::{Path, PathBuf};

fn read(p: &Path) -> Vec<u8> {
    std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn shard_names(stem: &str, n: usize) -> Vec<String> {
    (1..=n).map(|i| format!("{stem}-{i:05}-of-{n:05}.gguf")).collect()
}

/// Each of `names` in `got` equals the same name in `want`, and `got` holds nothing else.
fn assert_same_files(got: &Path, want: &Path, names: &[String]) {
    let mut present = dir_names(got);
    present.sort();
    let mut expected = names.to_vec();
    expected.sort();
    assert_eq!(present, expected, "files in {}", got.display());
    for n in names {
        assert!(
            read(&got.join(n)) == read(&want.join(n)),
            "{n} differs from llama-gguf-split's"
        );
    }
}

#[test]
fn split_by_tensor_count_is_llama_gguf_splits() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("pure-Q2_K.gguf");
    let v = json_doc(
        &[
            "convert",
            p(&fixture("gguf/pure-Q2_K.gguf")),
            p(&out),
            "--split-max-tensors",
            "8",
            "--json",
        ],
        0,
        "convert",
    );
    let names = shard_names("pure-Q2_K", 3);
    assert_same_files(dir.path(), &fixture("gguf/split"), &names);
    let outputs = v["outputs"].as_array().unwrap();
    assert_eq!(outputs.len(), 3);
    for (o, n) in outputs.iter().zip(&names) {
        let bytes = read(&fixture(&format!("gguf/split/{n}")));
        assert!(o["path"].as_str().unwrap().ends_with(n.as_str()), "{o}");
        assert_eq!(o["bytes"], bytes.len() as u64);
        assert_eq!(o["sha256"], sha256_hex(&bytes));
    }
}

#[test]
fn split_by_size_with_a_metadata_only_first_shard_is_llama_gguf_splits() {
    let dir = tempfile::tempdir().unwrap();
    ok(&[
        "-q",
        "convert",
        p(&fixture("gguf/pure-Q8_0.gguf")),
        p(&dir.path().join("pure-Q8_0.gguf")),
        "--split-max-size",
        "1M",
        "--no-tensor-first-split",
    ]);
    assert_same_files(dir.path(), &fixture("gguf/split-size"), &shard_names("pure-Q8_0", 3));
}

#[test]
fn split_only_writes_one_shard_equal_to_the_whole_runs() {
    let dir = tempfile::tempdir().unwrap();
    let names = shard_names("pure-Q2_K", 3);
    for (k, name) in names.iter().enumerate() {
        let d = dir.path().join(format!("worker{k}"));
        std::fs::create_dir(&d).unwrap();
        ok(&[
            "-q",
            "convert",
            p(&fixture("gguf/pure-Q2_K.gguf")),
            p(&d.join("pure-Q2_K.gguf")),
            "--split-max-tensors",
            "8",
            "--split-only",
            &(k + 1).to_string(),
        ]);
        assert_same_files(&d, &fixture("gguf/split"), std::slice::from_ref(name));
    }
    let d = dir.path().join("past");
    std::fs::create_dir(&d).unwrap();
    let (code, err) = stderr_of(&[
        "convert",
        p(&fixture("gguf/pure-Q2_K.gguf")),
        p(&d.join("pure-Q2_K.gguf")),
        "--split-max-tensors",
        "8",
        "--split-only",
        "4",
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("this split has 3 shards"), "{err}");
    assert!(dir_names(&d).is_empty());
}

#[test]
fn any_shard_reads_as_the_whole_model_and_merges_as_llama_gguf_split_does() {
    let merged = read(&fixture("gguf/pure-Q2_K-merged.gguf"));
    let dir = tempfile::tempdir().unwrap();
    let inputs: Vec<PathBuf> = std::iter::once(fixture("gguf/split"))
        .chain(
            shard_names("pure-Q2_K", 3)
                .iter()
                .map(|n| fixture(&format!("gguf/split/{n}"))),
        )
        .collect();
    for (i, input) in inputs.iter().enumerate() {
        let out = dir.path().join(format!("merged{i}.gguf"));
        ok(&["-q", "convert", p(input), p(&out)]);
        assert!(
            read(&out) == merged,
            "{}: not llama-gguf-split --merge's file",
            input.display()
        );
    }
    let v = inspect_json(&fixture("gguf/split/pure-Q2_K-00002-of-00003.gguf"));
    let whole = inspect_json(&fixture("gguf/pure-Q2_K.gguf"));
    assert_eq!(v["tensor_count"], whole["tensor_count"]);
    let described = |v: &serde_json::Value| -> Vec<String> {
        let keys = ["name", "dtype", "shape", "bytes"];
        let t = v["tensors"].as_array().unwrap();
        t.iter().map(|t| keys.map(|k| t[k].to_string()).join(" ")).collect()
    };
    assert_eq!(described(&v), described(&whole));
    assert_eq!(v["metadata"]["split.count"]["value"], 3);
    assert_eq!(v["details"]["kind"], "split");
    let shards = v["details"]["value"]["shards"].as_array().unwrap();
    assert_eq!(shards.len(), 3);
    let counted: u64 = shards.iter().map(|s| s["tensors"].as_u64().unwrap()).sum();
    assert_eq!(counted, whole["tensor_count"].as_u64().unwrap());
    let text = ok(&["inspect", p(&fixture("gguf/split"))]);
    assert!(text.contains("split: 3 shards"), "{text}");
}

#[test]
fn bad_split_requests_are_refused_before_writing() {
    let dir = tempfile::tempdir().unwrap();
    let input = fixture("gguf/pure-Q8_0.gguf");
    let out = dir.path().join("o.gguf");
    for (args, says) in [
        (
            vec!["--split-max-size", "1M", "--split-max-tensors", "4"],
            "give one or the other",
        ),
        (vec!["--split-max-size", "1MB"], "whole number of M"),
        (vec!["--split-max-size", "0G"], "positive"),
        (vec!["--split-max-tensors", "0"], "positive number of tensors"),
        (
            vec!["--split-max-size", "1M", "--split-only", "0"],
            "shard number from 1",
        ),
    ] {
        let mut a = vec!["convert", p(&input), p(&out)];
        a.extend(args.iter().copied());
        let (code, err) = stderr_of(&a);
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(err.contains(says), "{args:?}: {err}");
        assert!(dir_names(dir.path()).is_empty(), "{args:?} wrote something");
    }
    let (code, err) = stderr_of(&["convert", p(&input), p(&out), "--max-shard-size", "1MB"]);
    assert_eq!(code, 2);
    assert!(err.contains("--split-max-size"), "{err}");
}

#[test]
fn quantize_splits_its_output_as_convert_splits_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let input = fixture("gguf/in-f32.gguf");
    let whole = dir.path().join("whole.gguf");
    ok(&["-q", "quantize", p(&input), "--type", "Q8_0", "-o", p(&whole)]);
    let from_whole = dir.path().join("a");
    ok(&[
        "-q",
        "convert",
        p(&whole),
        p(&from_whole.join("m.gguf")),
        "--split-max-size",
        "1M",
    ]);
    let direct = dir.path().join("b");
    ok(&[
        "-q",
        "quantize",
        p(&input),
        "--type",
        "Q8_0",
        "-o",
        p(&direct.join("m.gguf")),
        "--split-max-size",
        "1M",
    ]);
    let names = dir_names(&from_whole);
    assert!(names.len() > 1, "{names:?}");
    assert_same_files(&direct, &from_whole, &names);
}

/// docs/scale-out/shard.sh, run as a scheduler runs it: one process per
/// shard, all at once, the shard number from the scheduler's variable.
fn run_array(dir: &Path, var: &str, first: usize, n: usize, args: &[&str]) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/scale-out/shard.sh");
    let children: Vec<_> = (first..first + n)
        .map(|index| {
            std::process::Command::new("sh")
                .arg(&script)
                .args(args)
                .env("MODELCONV", env!("CARGO_BIN_EXE_modelconv"))
                .env("REPORT_DIR", dir.join("reports"))
                .env(var, index.to_string())
                .spawn()
                .unwrap()
        })
        .collect();
    for mut c in children {
        assert!(c.wait().unwrap().success(), "a {var} task failed");
    }
}

#[test]
fn the_scale_out_script_makes_a_single_runs_shards_as_a_slurm_array_and_an_indexed_job() {
    let dir = tempfile::tempdir().unwrap();
    let input = fixture("gguf/in-f32.gguf");
    let single = dir.path().join("single");
    let q = |out: &Path| {
        vec![
            "quantize".to_string(),
            p(&input).to_string(),
            "--type".into(),
            "Q4_K_M".into(),
            "-o".into(),
            p(&out.join("m.gguf")).to_string(),
            "--split-max-tensors".into(),
            "6".into(),
        ]
    };
    let args: Vec<String> = q(&single)
        .into_iter()
        .chain(["--dry-run".into(), "--json".into()])
        .collect();
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    let n = json_doc(&a, 0, "quantize")["outputs"].as_array().unwrap().len();
    assert_eq!(n, 4, "21 tensors, 6 per shard");
    assert!(!single.exists(), "--dry-run wrote something");
    let args = q(&single);
    let mut a: Vec<&str> = vec!["-q"];
    a.extend(args.iter().map(String::as_str));
    ok(&a);
    let names = shard_names("m", n);
    for (var, first) in [("SLURM_ARRAY_TASK_ID", 1), ("JOB_COMPLETION_INDEX", 0)] {
        let d = dir.path().join(var);
        let args = q(&d);
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        run_array(&d, var, first, n, &a);
        for (k, name) in names.iter().enumerate() {
            let bytes = read(&d.join(name));
            assert!(
                bytes == read(&single.join(name)),
                "{var}: {name} differs from the single run's"
            );
            let report: serde_json::Value =
                serde_json::from_slice(&read(&d.join(format!("reports/shard-{}.json", k + 1)))).unwrap();
            assert_eq!(
                report["outputs"][0]["sha256"],
                sha256_hex(&bytes),
                "{var}: shard {}",
                k + 1
            );
        }
    }
}
