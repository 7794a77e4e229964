//! Inputs built to hang, exhaust memory or confuse: each ends quickly with
//! exit 0, 1 or 2 (never a hang, never a crash), in every command that
//! reads it. Memory is measured by the benchmark, not here.

mod common;
use common::*;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

/// Every command that reads `path` ends within a bound with a clean code.
fn ends(path: &Path, out_dir: &Path) {
    let out = out_dir.join("out.safetensors");
    for args in [
        vec!["inspect", p(path)],
        vec!["inspect", "--json", "--all", p(path)],
        vec!["scan", "--json", p(path)],
        vec!["convert", p(path), p(&out)],
    ] {
        let code = run_bounded(&args, Duration::from_secs(5));
        assert!(matches!(code, Some(0..=2)), "{args:?}: {code:?}");
    }
    let _ = std::fs::remove_file(&out);
}

#[test]
fn small_pickles_that_explode_end() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut files = vec![
        // A list appended to itself; a dict holding itself.
        write(d, "selfref.pkl", b"\x80\x02]q\x00h\x00ah\x00a."),
        write(d, "selfdict.pkl", b"\x80\x02}q\x00X\x01\x00\x00\x00ah\x00s."),
        // A dict key nested 200 000 tuples deep (printing or dropping it recursively overflows).
        write(
            d,
            "deepkey.pkl",
            &[b"\x80\x02}".as_slice(), b")", &[0x85; 200_000], b"Ns."].concat(),
        ),
        // A list nested 200 000 deep.
        write(
            d,
            "deeplist.pkl",
            &[b"\x80\x02".as_slice(), b"]", &b"]\x85"[..].repeat(100_000), b"."].concat(),
        ),
    ];
    // A dict of 300 000 keys, and one key set 300 000 times.
    let mut many = b"\x80\x02}(".to_vec();
    let mut dup = many.clone();
    for i in 0..300_000 {
        let k = format!("k{i}");
        many.extend_from_slice(&[0x8c, k.len() as u8]);
        many.extend_from_slice(k.as_bytes());
        many.push(b'N');
        dup.extend_from_slice(b"\x8c\x01kN");
    }
    many.extend_from_slice(b"u.");
    dup.extend_from_slice(b"u.");
    files.push(write(d, "manykeys.pkl", &many));
    files.push(write(d, "dupkeys.pkl", &dup));
    // One tuple shared through the memo 64 levels deep: 2^64 paths.
    let mut dag = b"\x80\x02]q\x00".to_vec();
    for _ in 0..64 {
        dag.extend_from_slice(b"h\x00h\x00\x86q\x00");
    }
    dag.push(b'.');
    files.push(write(d, "dag.pkl", &dag));
    for f in &files {
        ends(f, d);
    }
}

#[test]
fn a_global_named_a_million_times_is_one_entry() {
    let dir = tempfile::tempdir().unwrap();
    let body = [b"\x80\x02".as_slice(), &b"cos\nsystem\n0"[..].repeat(1_000_000), b"N."].concat();
    let f = write(dir.path(), "many.pkl", &body);
    let r: serde_json::Value = serde_json::from_str(&expect_code(&["scan", "--json", p(&f)], 1)).unwrap();
    let globals = &r["files"][0]["streams"][0]["globals"];
    assert_eq!(globals.as_array().unwrap().len(), 1, "{globals}");
    assert_eq!(globals[0]["uses"], 1_000_000);
}

/// Keys just under the metadata limit (65,536) are all read, each run ending
/// in seconds: a reader quadratic in the key count (a lookup per insert in a
/// list, say) would take minutes here.
const MANY_KEYS: usize = 65_000;

fn safetensors_with_metadata_keys(n: usize) -> Vec<u8> {
    let meta: Vec<String> = (0..n).map(|i| format!("\"k{i}\":\"v\"")).collect();
    let h = format!(
        "{{\"__metadata__\":{{{}}},\"a\":{{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}}}",
        meta.join(",")
    );
    let mut st = (h.len() as u64).to_le_bytes().to_vec();
    st.extend_from_slice(h.as_bytes());
    st.extend_from_slice(&[0; 4]);
    st
}

fn gguf_with_metadata_keys(n: usize) -> Vec<u8> {
    let mut g = b"GGUF".to_vec();
    g.extend_from_slice(&3u32.to_le_bytes());
    g.extend_from_slice(&0u64.to_le_bytes());
    g.extend_from_slice(&(n as u64).to_le_bytes());
    for i in 0..n {
        let k = format!("k.{i}");
        g.extend_from_slice(&(k.len() as u64).to_le_bytes());
        g.extend_from_slice(k.as_bytes());
        g.extend_from_slice(&4u32.to_le_bytes()); // u32
        g.extend_from_slice(&7u32.to_le_bytes());
    }
    g
}

/// The fastest of three runs of `f`.
fn fastest(f: impl Fn()) -> Duration {
    (0..3)
        .map(|_| {
            let t = std::time::Instant::now();
            f();
            t.elapsed()
        })
        .min()
        .unwrap()
}

/// Eight times the keys cost about eight times the time (a duplicate check
/// that searches the keys read so far costs 64 times): both headers parsed
/// in process, below the entry limit, so the readers really read them.
#[test]
fn metadata_parse_time_grows_linearly_with_keys() {
    let path = Path::new("meta.gguf");
    let (small, large) = (MANY_KEYS / 8, MANY_KEYS);
    let gguf = |n| {
        let g = gguf_with_metadata_keys(n);
        fastest(|| assert!(modelconv_gguf::parse(&g, path).is_ok()))
    };
    let st = |n| {
        let b = safetensors_with_metadata_keys(n);
        let json = &b[8..b.len() - 4];
        fastest(|| assert!(modelconv_safetensors::header::parse(json, 4).is_ok()))
    };
    for (name, time) in [("gguf", &gguf as &dyn Fn(usize) -> Duration), ("safetensors", &st)] {
        let ratio = time(large).as_secs_f64() / time(small).as_secs_f64().max(1e-6);
        assert!(
            ratio < 24.0,
            "{name}: {large} keys take {ratio:.1}x the time of {small}"
        );
    }
}

#[test]
fn metadata_with_many_keys_is_read_whole_and_refused_past_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let st = write(d, "meta.safetensors", &safetensors_with_metadata_keys(MANY_KEYS));
    let gg = write(d, "meta.gguf", &gguf_with_metadata_keys(MANY_KEYS));
    for path in [&st, &gg] {
        for args in [vec!["inspect", "--json", "--all", p(path)], vec!["scan", p(path)]] {
            let code = run_bounded(&args, Duration::from_secs(20));
            assert_eq!(code, Some(0), "{args:?}");
        }
    }
    let doc: serde_json::Value = serde_json::from_str(&ok(&["inspect", "--json", "--all", p(&gg)])).unwrap();
    let kv = doc["metadata"].as_object().map_or(0, |m| m.len());
    assert!(kv >= MANY_KEYS, "{kv} metadata entries read of {MANY_KEYS}");
    // Past the limit, both refuse before reading the entries.
    let over = modelconv_ir::MAX_METADATA_ENTRIES as usize + 1;
    for (name, bytes) in [
        ("over.safetensors", safetensors_with_metadata_keys(over)),
        ("over.gguf", gguf_with_metadata_keys(over)),
    ] {
        let (code, err) = stderr_of(&["inspect", p(&write(d, name, &bytes))]);
        assert_eq!(code, 2, "{name}: {err}");
        assert!(err.contains("65536"), "{name}: {err}");
    }
}

#[test]
fn fifos_named_as_shards_or_external_data_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let fifo = d.join("model-00001-of-00001.safetensors");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: a valid NUL-terminated path in a private temp folder.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let index = write(
        d,
        "model.safetensors.index.json",
        br#"{"metadata":{},"weight_map":{"a":"model-00001-of-00001.safetensors"}}"#,
    );
    let code = run_bounded(&["inspect", p(&index)], Duration::from_secs(5));
    assert_eq!(code, Some(2));
    // The FIFO itself, named as input or scanned in a folder.
    assert_eq!(run_bounded(&["inspect", p(&fifo)], Duration::from_secs(5)), Some(2));
    let out = run(&["scan", "--json", p(d)]);
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(r["skipped"].to_string().contains("model-00001"), "{r}");
}

/// `scan -r` follows a link to a folder inside the scanned folder (once:
/// a link back up is a loop, skipped and listed); a link out of it is
/// listed as skipped and the run is not safe (exit 1), never silent.
#[test]
fn symlinked_folders_are_followed_inside_the_tree_and_reported_outside() {
    let dir = tempfile::tempdir().unwrap();
    let (tree, elsewhere) = (dir.path().join("tree"), dir.path().join("elsewhere"));
    for d in [&tree.join("sub"), &tree.join("real"), &elsewhere] {
        std::fs::create_dir_all(d).unwrap();
    }
    std::os::unix::fs::symlink(&tree, tree.join("sub/loop")).unwrap();
    std::os::unix::fs::symlink(tree.join("real"), tree.join("sub/inside")).unwrap();
    write(&tree.join("sub"), "a.pkl", b"\x80\x02N.");
    write(&tree.join("real"), "b.pkl", b"\x80\x02N.");
    write(&elsewhere, "c.pkl", b"\x80\x02N.");
    let scan = |code| {
        let out = run(&["scan", "-r", "--json", p(&tree)]);
        assert_eq!(
            out.status.code(),
            Some(code),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    let r = scan(0);
    // real/ is walked before sub/, so sub/inside leads to a folder already
    // scanned, as sub/loop does: each file is scanned once.
    assert_eq!(r["summary"]["files"], 2, "{r}");
    assert_eq!(r["verdict"], "safe");
    for (i, link) in ["inside", "loop"].iter().enumerate() {
        assert!(r["skipped"][i]["path"].as_str().unwrap().ends_with(link), "{r}");
        let why = r["skipped"][i]["why"].as_str().unwrap();
        assert!(why.contains("symbolic link to a folder already scanned"), "{r}");
    }
    // A link inside the tree to a folder not yet walked is followed.
    std::fs::rename(tree.join("real"), tree.join("sub/zreal")).unwrap();
    std::fs::remove_file(tree.join("sub/inside")).unwrap();
    std::os::unix::fs::symlink(tree.join("sub/zreal"), tree.join("sub/alias")).unwrap();
    let r = scan(0);
    assert!(r["files"].to_string().contains("sub/alias/b.pkl"), "{r}");
    assert_eq!(r["summary"]["files"], 2, "{r}");
    std::os::unix::fs::symlink(&elsewhere, tree.join("sub/out")).unwrap();
    let r = scan(1);
    assert_eq!(r["verdict"], "suspicious", "{r}");
    assert!(r["skipped"].to_string().contains("outside the scanned folder"), "{r}");
    let text = run(&["scan", "-r", p(&tree)]);
    assert!(String::from_utf8_lossy(&text.stderr).contains("not followed"));
}

#[test]
fn a_broadcast_view_cannot_expand_without_bound() {
    // A torch tensor of 2^40 elements with stride 0 over a 4-byte storage.
    let dir = tempfile::tempdir().unwrap();
    let mut pkl = b"\x80\x02}X\x01\x00\x00\x00wctorch._utils\n_rebuild_tensor_v2\n((X\x07\x00\x00\x00storagectorch\nFloatStorage\nX\x01\x00\x00\x000X\x03\x00\x00\x00cpuK\x01tQK\x00".to_vec();
    pkl.extend_from_slice(b"\x8a\x06\x00\x00\x00\x00\x00\x01\x85K\x00\x85\x89ccollections\nOrderedDict\n)RtRs.");
    let path = dir.path().join("bcast.pt");
    {
        let mut z = zip::ZipWriter::new(std::fs::File::create(&path).unwrap());
        let o = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
        z.start_file("bcast/data.pkl", o).unwrap();
        z.write_all(&pkl).unwrap();
        z.start_file("bcast/data/0", o).unwrap();
        z.write_all(&[0; 4]).unwrap();
        z.start_file("bcast/version", o).unwrap();
        z.write_all(b"3\n").unwrap();
        z.finish().unwrap();
    }
    let out = dir.path().join("o.safetensors");
    let (code, err) = stderr_of(&["convert", p(&path), p(&out)]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("limit") && err.contains("bcast.pt"), "{err}");
    assert!(!out.exists());
}

#[test]
fn one_array_named_many_times_is_held_once() {
    // An 8 MiB numpy array in a pickle, shared through the memo under 1000
    // names: held once (a copy per name would be 8 GiB).
    let n: u32 = 2 << 20;
    let mut b = b"\x80\x02}(X\x01\x00\x00\x00a".to_vec();
    b.extend_from_slice(b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85C\x01b\x87R(K\x01");
    b.extend_from_slice(b"J");
    b.extend_from_slice(&(n as i32).to_le_bytes());
    b.extend_from_slice(b"\x85cnumpy\ndtype\nX\x02\x00\x00\x00f4\x89\x88\x87R(K\x03X\x01\x00\x00\x00<NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb\x89B");
    b.extend_from_slice(&(n * 4).to_le_bytes());
    b.extend(std::iter::repeat_n(0u8, (n * 4) as usize));
    b.extend_from_slice(b"tbq\x01");
    for i in 0..1000 {
        let k = format!("b{i}");
        b.push(b'X');
        b.extend_from_slice(&(k.len() as u32).to_le_bytes());
        b.extend_from_slice(k.as_bytes());
        b.extend_from_slice(b"h\x01");
    }
    b.extend_from_slice(b"u.");
    let dir = tempfile::tempdir().unwrap();
    let f = write(dir.path(), "shared.pkl", &b);
    let out = run(&["inspect", "--json", p(&f)]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["tensors"].as_array().unwrap().len(), 1001);
    assert_eq!(run_bounded(&["inspect", p(&f)], Duration::from_secs(5)), Some(0));
    // --dedupe writes it once.
    let out = dir.path().join("o.safetensors");
    ok(&["-q", "convert", p(&f), p(&out), "--dedupe"]);
    assert_eq!(inspect_json(&out)["tensors"].as_array().unwrap().len(), 1);
}

#[test]
fn zip_entries_sharing_one_deflate_stream_are_bounded() {
    // 300 central-directory records pointing at one deflated member of
    // 8 MiB of zeros (a few KB): scan inflates each one's head, not 2.4 GB.
    let mut one = std::io::Cursor::new(Vec::new());
    {
        let mut z = zip::ZipWriter::new(&mut one);
        let o = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
        z.start_file("weights.bin", o).unwrap();
        z.write_all(&vec![0u8; 8 << 20]).unwrap();
        z.finish().unwrap();
    }
    let b = one.into_inner();
    let cd = b.windows(4).position(|w| w == b"PK\x01\x02").unwrap();
    let eocd = b.windows(4).rposition(|w| w == b"PK\x05\x06").unwrap();
    let record = b[cd..eocd].to_vec();
    let mut out = b[..cd].to_vec();
    for _ in 0..300 {
        out.extend_from_slice(&record);
    }
    let mut end = b[eocd..].to_vec();
    end[8..10].copy_from_slice(&300u16.to_le_bytes());
    end[10..12].copy_from_slice(&300u16.to_le_bytes());
    end[12..16].copy_from_slice(&((record.len() * 300) as u32).to_le_bytes());
    out.extend_from_slice(&end);
    let dir = tempfile::tempdir().unwrap();
    let f = write(dir.path(), "overlap.npz", &out);
    assert_eq!(run_bounded(&["scan", p(&f)], Duration::from_secs(5)), Some(0));
}

fn varint(mut v: u64, out: &mut Vec<u8>) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

#[test]
fn onnx_with_too_many_initializers_is_refused_before_decoding() {
    // 70 000 empty initializers: a 1 MB file that would decode into ~1 KB each.
    let mut graph = Vec::new();
    for i in 0..70_000 {
        let name = format!("t{i}");
        let mut t = vec![0x08, 0x00, 0x10, 0x01, 0x42];
        varint(name.len() as u64, &mut t);
        t.extend_from_slice(name.as_bytes());
        graph.push(0x2a);
        varint(t.len() as u64, &mut graph);
        graph.extend_from_slice(&t);
    }
    let mut model = vec![0x08, 0x08, 0x3a];
    varint(graph.len() as u64, &mut model);
    model.extend_from_slice(&graph);
    let dir = tempfile::tempdir().unwrap();
    let f = write(dir.path(), "many.onnx", &model);
    let (code, err) = stderr_of(&["inspect", p(&f)]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("over the limit of 65536") && err.contains("many.onnx"),
        "{err}"
    );
}

/// 4096 long keys, then 300 000 SETITEMs of the last one (Python loads it
/// in 0.1 s): dict inserts are hashed, so scan and inspect end at once,
/// where a search of the keys took more than 10 s.
#[test]
fn many_setitems_over_many_keys_stay_linear() {
    let mut b = b"\x80\x02}q\x00(".to_vec();
    for i in 0..4096u32 {
        let key = format!("{}{i:05}", "k".repeat(1000));
        b.push(b'X');
        b.extend_from_slice(&(key.len() as u32).to_le_bytes());
        b.extend_from_slice(key.as_bytes());
        if i == 4095 {
            b.extend_from_slice(b"q\x01");
        }
        b.extend_from_slice(b"K\x01");
    }
    b.push(b'u');
    for _ in 0..300_000 {
        b.extend_from_slice(b"h\x01K\x02s");
    }
    b.push(b'.');
    let dir = tempfile::tempdir().unwrap();
    let f = write(dir.path(), "keys.pkl", &b);
    // About 2 s each in a debug build (each SETITEM hashes a 1 KB key);
    // a search of the keys took minutes there.
    assert_eq!(run_bounded(&["scan", p(&f)], Duration::from_secs(20)), Some(0));
    let inspected = run_bounded(&["inspect", p(&f)], Duration::from_secs(20));
    assert!(matches!(inspected, Some(0) | Some(2)), "{inspected:?}");
}

/// A raw deflate stream of `n_mib` MiB of zeros made from one sync-flushed
/// segment repeated (each is byte-aligned and refers back only to zeros),
/// closed by an empty final block: ~1 KB per MiB inflated.
fn deflate_zeros(n_mib: usize) -> Vec<u8> {
    let mut c = flate2::Compress::new(flate2::Compression::best(), false);
    let mut seg = Vec::with_capacity(64 << 10);
    c.compress_vec(&vec![0u8; 1 << 20], &mut seg, flate2::FlushCompress::Sync)
        .unwrap();
    let mut out = seg.repeat(n_mib);
    out.extend_from_slice(b"\x03\x00");
    out
}

/// A one-member zip whose member is deflated (`data`) under a declared
/// inflated size of `declared` bytes.
fn deflated_zip(name: &str, data: &[u8], declared: u32) -> Vec<u8> {
    let header = |v: &mut Vec<u8>| {
        v.extend_from_slice(&[20, 0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        v.extend_from_slice(&(data.len() as u32).to_le_bytes());
        v.extend_from_slice(&declared.to_le_bytes());
        v.extend_from_slice(&(name.len() as u16).to_le_bytes());
        v.extend_from_slice(&[0, 0]);
    };
    let mut out = b"PK\x03\x04".to_vec();
    header(&mut out);
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(data);
    let cd_at = out.len() as u32;
    let mut cd = b"PK\x01\x02\x14\x00".to_vec();
    header(&mut cd);
    cd.extend_from_slice(&[0; 14]);
    cd.extend_from_slice(name.as_bytes());
    out.extend_from_slice(&cd);
    out.extend_from_slice(b"PK\x05\x06\0\0\0\0\x01\0\x01\0");
    out.extend_from_slice(&(cd.len() as u32).to_le_bytes());
    out.extend_from_slice(&cd_at.to_le_bytes());
    out.extend_from_slice(&[0, 0]);
    out
}

#[test]
fn a_deflate_bomb_under_a_small_declared_size_is_refused_in_bounded_memory() {
    // data.pkl declares 100 bytes and inflates to 1.5 GiB: inspect stops
    // one byte past the declared size, under a 512 MiB address-space cap.
    let dir = tempfile::tempdir().unwrap();
    let f = write(
        dir.path(),
        "bomb.pt",
        &deflated_zip("archive/data.pkl", &deflate_zeros(1536), 100),
    );
    for cmd in ["inspect", "scan"] {
        let (code, _, err) = run_under_rlimit(&[cmd, p(&f)], 512 << 20, Duration::from_secs(20));
        assert_ne!(code, None, "{cmd} hung");
        assert_ne!(code, Some(0), "{cmd}: {err}");
        if cmd == "inspect" {
            assert_eq!(code, Some(2), "{err}");
            assert!(err.contains("archive/data.pkl inflates past the 100 bytes"), "{err}");
        }
    }
}
