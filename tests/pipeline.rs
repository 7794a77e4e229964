//! The architecture's promises, end to end: one pipeline (convert and
//! quantize agree), one meaning of `--all`, linear pickle walks, and
//! interrupts that end any phase and leave nothing behind.

mod common;
use common::*;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::sorted_names as names;

#[test]
fn convert_dtype_equals_quantize_pure() {
    let tmp = tempfile::tempdir().unwrap();
    let gguf = fixture("gguf/in-f32.gguf");
    let st = tmp.path().join("in.safetensors");
    ok(&["convert", p(&gguf), p(&st)]);
    for input in [&gguf, &st] {
        for ty in ["Q4_K", "Q8_0", "Q6_K"] {
            let a = tmp.path().join(format!("c-{ty}.gguf"));
            let b = tmp.path().join(format!("q-{ty}.gguf"));
            ok(&["-q", "convert", p(input), p(&a), "--dtype", ty]);
            ok(&["-q", "quantize", p(input), "-o", p(&b), "--type", ty, "--pure"]);
            assert!(
                std::fs::read(&a).unwrap() == std::fs::read(&b).unwrap(),
                "{ty} from {}",
                input.display()
            );
        }
    }
}

#[test]
fn all_means_the_same_in_every_command() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = fixture("torch");
    let mut checked = 0;
    for e in std::fs::read_dir(&dir).unwrap() {
        let path = e.unwrap().path();
        let ext = path.extension().and_then(|x| x.to_str()).unwrap_or("");
        if !["pt", "pth", "bin", "ckpt"].contains(&ext) {
            continue;
        }
        for all in [true, false] {
            let flag: &[&str] = if all { &["--all"] } else { &[] };
            let mut args = vec!["inspect", "--json", p(&path)];
            args.extend(flag);
            let out = run(&args);
            if !out.status.success() {
                // Refused (a pickled class): every command refuses it.
                let mut c = vec!["convert", p(&path), "x.safetensors"];
                c.extend(flag);
                assert_eq!(run(&c).status.code(), Some(2), "{}", path.display());
                continue;
            }
            let inspected = names(&serde_json::from_slice(&out.stdout).unwrap());
            let conv = tmp.path().join("c.safetensors");
            let mut c = vec!["-q", "convert", p(&path), p(&conv)];
            c.extend(flag);
            ok(&c);
            let converted = inspect_json(&conv);
            assert_eq!(names(&converted), inspected, "convert {} all={all}", path.display());
            let ckpt = tmp.path().join("k.safetensors");
            let mut k = vec!["-q", "ckpt-to-safetensors", p(&path), "-o", p(&ckpt)];
            k.extend(flag);
            ok(&k);
            let from_ckpt = inspect_json(&ckpt);
            assert_eq!(
                names(&from_ckpt),
                inspected,
                "ckpt-to-safetensors {} all={all}",
                path.display()
            );
            // The same checkpoint metadata from both commands.
            assert_eq!(converted["metadata"], from_ckpt["metadata"], "{}", path.display());
            assert_eq!(converted["metadata"]["format"]["value"], "pt");
            checked += 1;
        }
    }
    assert!(checked >= 20, "{checked}");
}

#[test]
fn state_dict_key_is_an_open_option() {
    // --state-dict picks a sub-tree by the dotted path --all names it by;
    // the names are relative to it, the same in inspect, convert and
    // ckpt-to-safetensors.
    let tmp = tempfile::tempdir().unwrap();
    let ckpt = fixture("torch/lightning_7.ckpt");
    let all = names(&serde_json::from_slice(&run(&["inspect", "--json", "--all", p(&ckpt)]).stdout).unwrap());
    let key = "optimizer_states.0";
    let want: Vec<String> = all
        .iter()
        .filter_map(|n| n.strip_prefix(&format!("{key}.")).map(str::to_string))
        .collect();
    assert_eq!(want.len(), 2, "{all:?}");
    let out = run(&["inspect", "--json", "--state-dict", key, p(&ckpt)]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(names(&serde_json::from_slice(&out.stdout).unwrap()), want);
    let conv = tmp.path().join("c.safetensors");
    ok(&["-q", "convert", p(&ckpt), p(&conv), "--state-dict", key]);
    assert_eq!(names(&inspect_json(&conv)), want);
    let k = tmp.path().join("k.safetensors");
    ok(&["-q", "ckpt-to-safetensors", p(&ckpt), "-o", p(&k), "--state-dict", key]);
    assert_eq!(names(&inspect_json(&k)), want);
    // A key that is not there names what is; a key without tensors, a
    // format without the option and --all with it are refused, nothing written.
    let missing = run(&["inspect", "--state-dict", "nope", p(&ckpt)]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("optimizer_states"));
    assert_eq!(
        run(&["inspect", "--state-dict", "epoch", p(&ckpt)]).status.code(),
        Some(2)
    );
    let gguf = fixture("gguf/in-f32.gguf");
    let refused = tmp.path().join("r.safetensors");
    assert_eq!(
        run(&["convert", p(&gguf), p(&refused), "--state-dict", "x"])
            .status
            .code(),
        Some(2)
    );
    assert!(!refused.exists());
    assert_eq!(
        run(&["inspect", "--all", "--state-dict", key, p(&ckpt)]).status.code(),
        Some(2)
    );
}

/// A pickle that shares one tuple through the memo 64 levels deep: 2^64
/// paths, a few hundred bytes.
fn memo_bomb() -> Vec<u8> {
    let mut b = b"\x80\x02]q\x00".to_vec();
    for _ in 0..64 {
        b.extend_from_slice(b"h\x00h\x00\x86q\x00");
    }
    b.push(b'.');
    b
}

#[test]
fn shared_memo_pickles_end() {
    let tmp = tempfile::tempdir().unwrap();
    let bare = tmp.path().join("bomb.pkl");
    std::fs::write(&bare, memo_bomb()).unwrap();
    let zipped = tmp.path().join("bomb.pt");
    {
        let mut z = zip::ZipWriter::new(std::fs::File::create(&zipped).unwrap());
        let o = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
        z.start_file("bomb/data.pkl", o).unwrap();
        z.write_all(&memo_bomb()).unwrap();
        z.start_file("bomb/version", o).unwrap();
        z.write_all(b"3\n").unwrap();
        z.finish().unwrap();
    }
    let out = tmp.path().join("out.safetensors");
    for f in [&bare, &zipped] {
        for args in [
            vec!["inspect", p(f)],
            vec!["inspect", "--all", p(f)],
            vec!["convert", "--all", p(f), p(&out)],
            vec!["ckpt-to-safetensors", "--all", p(f), "-o", p(&out)],
            vec!["scan", p(f)],
        ] {
            let code = run_bounded(&args, Duration::from_secs(20));
            assert!(matches!(code, Some(0..=2)), "{args:?}: {code:?}");
        }
    }
}

/// A 1 GiB F32 safetensors file that is all holes: quantizing it takes
/// long enough to be interrupted.
fn sparse_model(path: &Path) {
    let rows = 16384u64;
    let header = format!(
        r#"{{"blk.0.ffn_up.weight":{{"dtype":"F32","shape":[{rows},{rows}],"data_offsets":[0,{}]}}}}"#,
        rows * rows * 4
    );
    let mut h = header.into_bytes();
    while h.len() % 8 != 0 {
        h.push(b' ');
    }
    let mut f = std::fs::File::create(path).unwrap();
    f.write_all(&(h.len() as u64).to_le_bytes()).unwrap();
    f.write_all(&h).unwrap();
    f.set_len(8 + h.len() as u64 + rows * rows * 4).unwrap();
}

#[test]
fn sigterm_ends_a_quantization_and_leaves_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("big.safetensors");
    sparse_model(&model);
    let out_dir = tmp.path().join("out");
    std::fs::create_dir(&out_dir).unwrap();
    let out = out_dir.join("big-Q4_K.gguf");
    for (sig, code) in [(libc::SIGTERM, 143), (libc::SIGINT, 130)] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_modelconv"))
            .args([
                "-q",
                "quantize",
                p(&model),
                "-o",
                p(&out),
                "--type",
                "Q4_K_M",
                "--no-fsync",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(700));
        // SAFETY: a plain kill(2) of our own child.
        unsafe { libc::kill(child.id() as libc::pid_t, sig) };
        let start = Instant::now();
        let status = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break Some(s);
            }
            if start.elapsed() > Duration::from_secs(20) {
                child.kill().unwrap();
                break None;
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        let status = status.expect("modelconv did not stop on the signal");
        assert_eq!(status.code(), Some(code));
        assert!(dir_names(&out_dir).is_empty(), "{:?}", dir_names(&out_dir));
    }
}
