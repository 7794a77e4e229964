//! Bad input: exit code 2, a message naming the file and the problem, no
//! panic, no output file, no temp file, input untouched.

mod common;
use common::*;
use std::path::Path;

/// Asserts `args` fails with exit 2, mentions every `want`, and leaves
/// `out_dir` as it was.
fn refused(args: &[&str], wants: &[&str], out_dir: &Path) {
    let before = dir_names(out_dir);
    let (code, err) = stderr_of(args);
    assert_eq!(code, 2, "{args:?}: {err}");
    assert!(!err.contains("panicked"), "{err}");
    for w in wants {
        assert!(err.contains(w), "{args:?}: stderr lacks '{w}':\n{err}");
    }
    assert_eq!(dir_names(out_dir), before, "output folder changed");
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

fn safetensors_bytes(header: &str, data_len: usize) -> Vec<u8> {
    let mut v = (header.len() as u64).to_le_bytes().to_vec();
    v.extend_from_slice(header.as_bytes());
    v.resize(v.len() + data_len, 0);
    v
}

#[test]
fn random_bytes_and_empty_files() {
    let dir = tempfile::tempdir().unwrap();
    let mut x: u64 = 0x9e3779b97f4a7c15;
    let noise: Vec<u8> = (0..4096)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    let out = dir.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let o = out.join("o.safetensors");
    for name in ["noise.bin", "noise.safetensors", "noise.gguf"] {
        let f = write(dir.path(), name, &noise);
        refused(&["inspect", p(&f)], &[name], &out);
        refused(&["convert", p(&f), p(&o)], &[name], &out);
    }
    let empty = write(dir.path(), "empty.safetensors", b"");
    refused(&["inspect", p(&empty)], &["empty.safetensors", "0 bytes"], &out);
    let empty = write(dir.path(), "empty.gguf", b"");
    refused(&["inspect", p(&empty)], &["empty.gguf", "too short"], &out);
    refused(
        &["inspect", p(&dir.path().join("missing.gguf"))],
        &["missing.gguf"],
        &out,
    );
}

#[test]
fn lying_safetensors_headers() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let o = out.join("o.gguf");
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "huge_len",
            {
                let mut v = u64::MAX.to_le_bytes().to_vec();
                v.extend_from_slice(b"{}");
                v
            },
            "exceeds the limit",
        ),
        (
            "len_past_eof",
            {
                let mut v = 1000u64.to_le_bytes().to_vec();
                v.extend_from_slice(b"{}");
                v
            },
            "runs past the end",
        ),
        (
            "past_eof",
            safetensors_bytes(r#"{"a":{"dtype":"F32","shape":[1000],"data_offsets":[0,4000]}}"#, 16),
            "tensors cover 4000 bytes",
        ),
        (
            "huge_shape",
            safetensors_bytes(
                r#"{"a":{"dtype":"F32","shape":[4294967296,4294967296,4294967296],"data_offsets":[0,16]}}"#,
                16,
            ),
            "tensor 'a'",
        ),
        (
            "overlap",
            safetensors_bytes(
                r#"{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},"b":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}}"#,
                16,
            ),
            "overlaps",
        ),
        (
            "bad_json",
            safetensors_bytes(r#"{"a":{"dtype":"F32","#, 0),
            "header JSON",
        ),
        (
            "dup",
            safetensors_bytes(
                r#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#,
                8,
            ),
            "appears twice",
        ),
    ];
    for (name, bytes, want) in cases {
        let f = write(dir.path(), &format!("{name}.safetensors"), &bytes);
        refused(&["inspect", p(&f)], &[&format!("{name}.safetensors"), want], &out);
        refused(&["convert", p(&f), p(&o)], &[want], &out);
    }
}

fn gguf_str(v: &mut Vec<u8>, s: &str) {
    v.extend_from_slice(&(s.len() as u64).to_le_bytes());
    v.extend_from_slice(s.as_bytes());
}

/// A GGUF with one tensor info (name "t", the given ne, type, offset) and `data` data bytes.
fn gguf_bytes(n_tensors: u64, ne: &[u64], ggml_type: u32, offset: u64, data: usize) -> Vec<u8> {
    let mut v = b"GGUF".to_vec();
    v.extend_from_slice(&3u32.to_le_bytes());
    v.extend_from_slice(&n_tensors.to_le_bytes());
    v.extend_from_slice(&0u64.to_le_bytes());
    gguf_str(&mut v, "t");
    v.extend_from_slice(&(ne.len() as u32).to_le_bytes());
    for d in ne {
        v.extend_from_slice(&d.to_le_bytes());
    }
    v.extend_from_slice(&ggml_type.to_le_bytes());
    v.extend_from_slice(&offset.to_le_bytes());
    v.resize(v.len().div_ceil(32) * 32 + data, 0);
    v
}

#[test]
fn lying_gguf_headers() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let o = out.join("o.safetensors");
    let mut huge_string = b"GGUF".to_vec();
    huge_string.extend_from_slice(&3u32.to_le_bytes());
    huge_string.extend_from_slice(&0u64.to_le_bytes());
    huge_string.extend_from_slice(&1u64.to_le_bytes());
    huge_string.extend_from_slice(&u64::MAX.to_le_bytes());
    huge_string.resize(64, b'a');
    let mut huge_array = b"GGUF".to_vec();
    huge_array.extend_from_slice(&3u32.to_le_bytes());
    huge_array.extend_from_slice(&0u64.to_le_bytes());
    huge_array.extend_from_slice(&1u64.to_le_bytes());
    gguf_str(&mut huge_array, "k");
    huge_array.extend_from_slice(&9u32.to_le_bytes());
    huge_array.extend_from_slice(&4u32.to_le_bytes());
    huge_array.extend_from_slice(&(1u64 << 60).to_le_bytes());
    huge_array.resize(96, 0);
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "many_tensors",
            gguf_bytes(u64::MAX, &[4], 0, 0, 16),
            "tensor infos cannot fit",
        ),
        ("past_eof", gguf_bytes(1, &[1024], 0, 0, 16), "run past the end"),
        ("huge_dims", gguf_bytes(1, &[1 << 40, 1 << 40], 0, 0, 16), "tensor 't'"),
        ("bad_type", gguf_bytes(1, &[4], 4, 0, 16), "unknown ggml type 4"),
        (
            "misaligned",
            gguf_bytes(1, &[4], 0, 3, 32),
            "not a multiple of the alignment",
        ),
        (
            "bad_block",
            gguf_bytes(1, &[100], 12, 0, 4096),
            "not a multiple of the Q4_K block size",
        ),
        ("huge_string", huge_string, "remain in the file"),
        ("huge_array", huge_array, "does not fit"),
    ];
    for (name, bytes, want) in cases {
        let f = write(dir.path(), &format!("{name}.gguf"), &bytes);
        refused(&["inspect", p(&f)], &[&format!("{name}.gguf"), want], &out);
        refused(&["convert", p(&f), p(&o)], &[want], &out);
    }
}

#[test]
fn truncated_fixtures_are_refused_without_output() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    std::fs::create_dir(&out).unwrap();
    for (name, o) in [
        ("safetensors/all_dtypes.safetensors", "o.gguf"),
        ("gguf/mix-Q4_K_M.gguf", "o.safetensors"),
    ] {
        let bytes = std::fs::read(fixture(name)).unwrap();
        for cut in [3, 20, bytes.len() / 2, bytes.len() - 1] {
            let f = write(
                dir.path(),
                &format!("cut.{}", name.rsplit('.').next().unwrap()),
                &bytes[..cut],
            );
            refused(&["convert", p(&f), p(&out.join(o))], &["cut."], &out);
        }
    }
}

#[test]
fn output_may_not_be_an_input_and_input_is_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("m.safetensors");
    std::fs::copy(fixture("safetensors/floats.safetensors"), &src).unwrap();
    let before = std::fs::read(&src).unwrap();
    refused(&["convert", p(&src), p(&src)], &["one of the input files"], dir.path());
    refused(
        &["convert", p(&src), p(&src), "--dtype", "F16"],
        &["one of the input files"],
        dir.path(),
    );
    let link = dir.path().join("link.safetensors");
    std::fs::hard_link(&src, &link).unwrap();
    refused(&["convert", p(&src), p(&link)], &["one of the input files"], dir.path());
    assert_eq!(std::fs::read(&src).unwrap(), before);
}

#[test]
fn data_that_vanishes_after_the_header_leaves_no_output() {
    // Open, then truncate the file under the reader: the write fails while
    // pulling data, and no output or temp file remains.
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("m.safetensors");
    std::fs::copy(fixture("safetensors/floats.safetensors"), &src).unwrap();
    let model = modelconv_safetensors::open(&src).unwrap();
    let f = std::fs::OpenOptions::new().write(true).open(&src).unwrap();
    f.set_len(200).unwrap();
    let out = dir.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let dest = out.join("o.gguf");
    let plan = modelconv_ir::Format::writer(&modelconv_gguf::FORMAT)
        .unwrap()
        .plan(&model, &dest, &Default::default())
        .unwrap();
    let err = plan.write(&modelconv_ir::NoProgress).unwrap_err().to_string();
    assert!(err.contains("m.safetensors") && err.contains("cannot read"), "{err}");
    assert!(dir_names(&out).is_empty());
}

#[test]
fn usage_errors_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let src = fixture("safetensors/floats.safetensors");
    refused(
        &["convert", p(&src), p(&dir.path().join("x.unknown"))],
        &["--to"],
        dir.path(),
    );
    refused(
        &["convert", p(&src), p(&dir.path().join("x.gguf")), "--dtype", "IQ2_XXS"],
        &["only under an importance matrix", "--imatrix"],
        dir.path(),
    );
    refused(
        &["convert", p(&src), p(&dir.path().join("x.gguf")), "--dtype", "NVFP4"],
        &["quantizing to NVFP4 is not supported"],
        dir.path(),
    );
    refused(
        &["convert", p(&src), p(&dir.path().join("x.gguf")), "--dtype", "I8"],
        &["F32, F16, BF16"],
        dir.path(),
    );
    refused(
        &[
            "convert",
            p(&src),
            p(&dir.path().join("x.gguf")),
            "--max-shard-size",
            "1MB",
        ],
        &["GGUF splits as llama-gguf-split does with --split-max-size"],
        dir.path(),
    );
    // An output into a new folder creates it, but a failure leaves none behind.
    refused(
        &[
            "convert",
            p(&src),
            p(&dir.path().join("nodir/deeper/x.gguf")),
            "--include",
            "nothing-matches",
        ],
        &["--include matched no tensor"],
        dir.path(),
    );
    refused(
        &["convert", p(&src), p(&dir.path().join("x.gguf")), "--include", "("],
        &["regex"],
        dir.path(),
    );
    refused(&["nonsense"], &[], dir.path());
}

/// Makes a character device `major:minor` at `path` (1:3 is like
/// /dev/null, 1:7 like /dev/full), privately; false when not permitted
/// (not root). Never touches the real /dev.
fn private_char_device(path: &Path, minor: u32) -> bool {
    let c = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
    // SAFETY: a valid NUL-terminated path in a private temp folder.
    unsafe { libc::mknod(c.as_ptr(), libc::S_IFCHR | 0o666, libc::makedev(1, minor)) == 0 }
}

/// FIFOs, devices and standard output are streamed to, never replaced; a
/// write that fails there is exit 2 and leaves no temporary file.
#[test]
fn special_outputs_are_streamed_to_never_replaced() {
    use std::os::unix::fs::FileTypeExt;
    let dir = tempfile::tempdir().unwrap();
    let input = fixture("safetensors/floats.safetensors");
    let reference = dir.path().join("ref.gguf");
    ok(&["-q", "convert", p(&input), p(&reference)]);
    let want = std::fs::read(&reference).unwrap();
    std::fs::remove_file(&reference).unwrap();

    // A FIFO nobody reads: refused at once, not a hang.
    let fifo = dir.path().join("out.gguf");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: as above.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    refused(
        &["convert", p(&input), p(&fifo)],
        &["FIFO has no reader", "out.gguf"],
        dir.path(),
    );
    // With a reader, the model streams through it.
    let reader = {
        let fifo = fifo.clone();
        std::thread::spawn(move || std::fs::read(fifo).unwrap())
    };
    // The reader opens first (a writer would otherwise find no reader).
    std::thread::sleep(std::time::Duration::from_millis(200));
    ok(&["-q", "convert", p(&input), p(&fifo)]);
    assert_eq!(reader.join().unwrap(), want);
    assert!(std::fs::symlink_metadata(&fifo).unwrap().file_type().is_fifo());

    // /dev/stdout and `-` are our standard output, whatever it is.
    for name in ["/dev/stdout", "-"] {
        let out = run(&["-q", "convert", p(&input), name, "--to", "gguf"]);
        assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(out.stdout, want, "{name}");
    }
    // Formats that cannot stream say so.
    refused(
        &["convert", p(&input), "-", "--to", "pytorch"],
        &["cannot be written in one pass"],
        dir.path(),
    );
    refused(
        &["convert", p(&input), "-", "--to", "gguf", "--json"],
        &["--json"],
        dir.path(),
    );

    let null = dir.path().join("null.gguf");
    let full = dir.path().join("full.gguf");
    if private_char_device(&null, 3) && private_char_device(&full, 7) {
        ok(&["-q", "convert", p(&input), p(&null)]);
        ok(&[
            "-q",
            "quantize",
            p(&fixture("gguf/in-f32.gguf")),
            "-o",
            p(&null),
            "--type",
            "Q8_0",
        ]);
        assert!(std::fs::symlink_metadata(&null).unwrap().file_type().is_char_device());
        // A full device: exit 2, the error named, no temporary file left.
        refused(
            &["convert", p(&input), p(&full)],
            &["full.gguf", "No space left"],
            dir.path(),
        );
        assert!(std::fs::symlink_metadata(&full).unwrap().file_type().is_char_device());
    } else {
        eprintln!("not root: the character-device cases are skipped (the FIFO cases ran)");
    }
}

/// `-` reads standard input: `convert m - --to gguf | modelconv inspect -`.
#[test]
fn standard_input_and_output_chain() {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let input = fixture("safetensors/floats.safetensors");
    let first = run(&["-q", "convert", p(&input), "-", "--to", "gguf"]);
    assert_eq!(first.status.code(), Some(0));
    let mut child = Command::new(env!("CARGO_BIN_EXE_modelconv"))
        .args(["inspect", "--json", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(&first.stdout).unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!((j["format"].as_str(), j["path"].as_str()), (Some("gguf"), Some("-")));
    assert_eq!(j["tensor_count"], 5);
    // No name to derive an output from.
    let (code, err) = stderr_of(&["ckpt-to-safetensors", "-"]);
    assert_eq!(code, 2);
    assert!(err.contains("give -o"), "{err}");
}

#[test]
fn files_of_formats_we_do_not_read_are_named_not_fed_to_a_reader() {
    let dir = tempfile::tempdir().unwrap();
    // Core ML's weight blob: a count, version 2, padding, then the first
    // blob's 0xDEADBEEF sentinel at byte 64.
    let mut coreml = [3u8, 0, 0, 0, 2, 0, 0, 0].to_vec();
    coreml.resize(64, 0);
    coreml.extend_from_slice(&0xDEAD_BEEFu32.to_le_bytes());
    coreml.resize(128, 0);
    let cases: [(&str, &[u8], &str); 4] = [
        ("weight.bin", &coreml, "Core ML"),
        ("ggml.bin", b"lmgg\x01\x00\x00\x00abcdefgh", "legacy GGML"),
        ("ggjt.bin", b"tjgg\x03\x00\x00\x00abcdefgh", "legacy GGML"),
        ("m.tflite", b"\x1c\x00\x00\x00TFL3\x00\x00\x00\x00", "TensorFlow Lite"),
    ];
    for (name, bytes, what) in cases {
        let f = dir.path().join(name);
        std::fs::write(&f, bytes).unwrap();
        let (code, err) = stderr_of(&["inspect", p(&f)]);
        assert_eq!(code, 2, "{name}");
        assert!(
            err.contains("not recognised") && err.contains(what) && !err.contains("pickle"),
            "{name}: {err}"
        );
    }
    // ckpt-to-safetensors given another format says which and what to use.
    let st = fixture("safetensors/floats.safetensors");
    let out = dir.path().join("x.safetensors");
    let (code, err) = stderr_of(&["ckpt-to-safetensors", p(&st), "-o", p(&out)]);
    assert_eq!(code, 2);
    assert!(
        err.contains("safetensors file") && err.contains("convert") && !err.contains("pickle"),
        "{err}"
    );
    assert!(!out.exists());
}

/// Messages: usage errors start like every error; llama-quantize's
/// positional form gets the form to use.
#[test]
fn usage_messages_say_what_to_type() {
    let (code, err) = stderr_of(&["inspect", "--bogus"]);
    assert_eq!(code, 2);
    assert!(
        err.starts_with("modelconv: error: unexpected argument '--bogus'"),
        "{err}"
    );
    let (code, err) = stderr_of(&["quantize", "in.gguf", "out.gguf", "Q4_K_M"]);
    assert_eq!(code, 2);
    assert!(
        err.contains("`modelconv quantize in.gguf -o out.gguf --type Q4_K_M`"),
        "{err}"
    );
}

/// Shell completions and man pages come from the same definition as --help.
#[test]
fn completions_and_man_pages() {
    for shell in ["bash", "zsh", "fish"] {
        let out = ok(&["completions", shell]);
        for cmd in ["inspect", "convert", "quantize", "ckpt-to-safetensors", "scan", "diff"] {
            assert!(out.contains(cmd), "{shell}: {cmd}");
        }
        assert!(out.contains("allow-unchanged"), "{shell}");
    }
    let man = ok(&["man"]);
    assert!(
        man.contains(".TH modelconv 1") && man.contains("ckpt\\-to\\-safetensors"),
        "{man}"
    );
    let man = ok(&["man", "quantize"]);
    assert!(
        man.contains(".TH modelconv-quantize 1") && man.contains("\\-\\-no\\-embeddings"),
        "{man}"
    );
    let (code, _) = stderr_of(&["man", "nonsense"]);
    assert_eq!(code, 2);
}

/// `formats` is a table: every column starts at the same place.
#[test]
fn formats_table_is_aligned() {
    let out = ok(&["formats"]);
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines.len() >= 5);
    let header = lines[0];
    for col in ["SUPPORT", "EXTENSIONS", "DESCRIPTION"] {
        let at = header.find(col).unwrap();
        for l in &lines[1..] {
            let before = &l[..at];
            assert!(before.ends_with("  ") && !l[at..].starts_with(' '), "{col}: {l}");
        }
    }
}
