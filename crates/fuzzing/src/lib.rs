//! The fuzz targets' bodies, one function per parser. Each takes arbitrary
//! bytes and must return: never panic, hang or allocate beyond the limits.
//! `fuzz/fuzz_targets/*.rs` wrap them for cargo-fuzz; `tests/replay.rs`
//! runs them over the fixtures and the saved corpus in plain `cargo test`.

use modelconv_ir::Model;
use modelconv_pickle::vm::{Framing, PersistentLoad, Vm};
use modelconv_pickle::Value;
use modelconv_pytorch::constructors::{StorageRef, TORCH};
use std::path::{Path, PathBuf};

/// A fuzz target's body.
pub type Target = fn(&[u8]);

/// The targets by name, as cargo-fuzz knows them.
pub const TARGETS: &[(&str, Target)] = &[
    ("pickle_vm", pickle_vm),
    ("scan", scan),
    ("torch", torch),
    ("zip", zip),
    ("safetensors", safetensors),
    ("gguf", gguf),
    ("onnx", onnx),
    ("hf_files", hf_files),
    ("numpy", numpy),
    ("flax", flax),
    ("paddle", paddle),
    ("tf", tf),
    ("hdf5", hdf5),
    ("jinja", jinja),
    ("joblib", joblib),
    ("torchscript", torchscript),
];

struct AnyStorage;
impl PersistentLoad for AnyStorage {
    fn load(&mut self, _pid: &Value) -> Result<Value, String> {
        Ok(Value::new_object(StorageRef {
            key: "0".into(),
            dtype: Some("float32".into()),
            view_offset: 0,
        }))
    }
}

/// The restricted VM in load mode and in both scan framings.
pub fn pickle_vm(data: &[u8]) {
    let mut ids = AnyStorage;
    // The caller of a load owns the result: as a Root, its cycles are freed.
    if let Ok(v) = Vm::new(data, Some(&mut ids), &TORCH).run() {
        drop(modelconv_pickle::value::Root(v));
    }
    let _ = Vm::scanner(data, &TORCH).run();
    let _ = Vm::scanner(data, &TORCH).with_framing(Framing::File).run();
}

/// `scan` of one file's bytes by every format's scanner: zip, tar, legacy,
/// npy, Keras configs and bare pickles.
pub fn scan(data: &[u8]) {
    let Some(f) = temp_input("fuzz", data) else { return };
    let _ = modelconv::registry::scan_bytes(&f.path, data);
}

/// Zip central directories and members, as scan reads them.
pub fn zip(data: &[u8]) {
    if let Some(entries) = modelconv_pickle::zipscan::entries(data) {
        let mut budget = modelconv_pickle::zipscan::inflation_budget(data.len() as u64);
        for e in &entries {
            let _ = e.content(data, &mut budget);
        }
    }
}

/// Chat templates: the jinja2 lexer and the judge, on any text.
pub fn jinja(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let _ = modelconv_jinja::judge(&text);
    if let Ok(config) = serde_json::from_slice::<serde_json::Value>(data) {
        let _ = modelconv_jinja::templates_in_config(&config);
    }
}

/// joblib's reading: array records skipped or scanned, and every
/// decompressor on the same bytes.
pub fn joblib(data: &[u8]) {
    let mut out = Vec::new();
    modelconv_pickle::scan::scan_joblib(data, "fuzz", &TORCH, &mut out);
    for kind in ["gzip", "zlib", "bz2", "xz", "lzma"] {
        let _ = modelconv_pickle::joblib::decompress(kind, data, 16 << 20);
    }
}

/// TorchScript archives: a small archive like torch.jit.save's (data.pkl,
/// one class in code/, constants.pkl) with the fuzzer's bytes as one
/// member (the first byte picks which): the reader and scan.
pub fn torchscript(data: &[u8]) {
    let Some(zip) = torchscript_archive(data) else { return };
    let Some(f) = temp_input("fuzz.pt", &zip) else { return };
    if let Ok(m) = modelconv_pytorch::open_with(&f.path, modelconv_pytorch::Selection::StateDict) {
        read_tensors(&m);
    }
    let _ = modelconv::registry::scan_bytes(&f.path, &zip);
}

/// The archive [`torchscript`] reads: `data`'s first byte picks the member
/// the rest of it replaces.
fn torchscript_archive(data: &[u8]) -> Option<Vec<u8>> {
    let (&pick, body) = data.split_first()?;
    let code = b"class M(Module):\n  __parameters__ = [\"w\", ]\n  __buffers__ = []\n  w : Tensor\n";
    let pkl: &[u8] = b"\x80\x02c__torch__\nM\n)\x81}X\x01\x00\x00\x00wctorch._utils\n_rebuild_tensor_v2\n((X\x07\x00\x00\x00storagectorch\nFloatStorage\nX\x01\x00\x00\x000X\x03\x00\x00\x00cpuK\x01tQK\x00K\x01\x85K\x01\x85\x89ccollections\nOrderedDict\n)RtRsb.";
    let mut members: Vec<(&str, &[u8])> = vec![
        ("m/data.pkl", pkl),
        ("m/code/__torch__.py", code),
        ("m/constants.pkl", b"\x80\x02).".as_slice()),
        ("m/data/0", &[0u8; 4]),
        ("m/version", b"3\n"),
    ];
    let slot = usize::from(pick) % 3;
    members[slot].1 = body;
    Some(stored_zip(&members))
}

/// A zip of stored members with their CRC-32s (what torch.jit.save writes,
/// less its alignment padding).
fn stored_zip(members: &[(&str, &[u8])]) -> Vec<u8> {
    let (mut out, mut central) = (Vec::new(), Vec::new());
    for (name, data) in members {
        let mut crc = flate2::Crc::new();
        crc.update(data);
        let offset = out.len() as u32;
        let head = |v: &mut Vec<u8>| {
            v.extend_from_slice(&[20, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
            v.extend_from_slice(&crc.sum().to_le_bytes());
            v.extend_from_slice(&(data.len() as u32).to_le_bytes());
            v.extend_from_slice(&(data.len() as u32).to_le_bytes());
            v.extend_from_slice(&(name.len() as u16).to_le_bytes());
            v.extend_from_slice(&[0, 0]);
        };
        out.extend_from_slice(b"PK\x03\x04");
        head(&mut out);
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(data);
        central.extend_from_slice(b"PK\x01\x02\x14\x00");
        head(&mut central);
        central.extend_from_slice(&[0; 10]);
        central.extend_from_slice(&offset.to_le_bytes());
        central.extend_from_slice(name.as_bytes());
    }
    let (at, n) = (out.len() as u32, members.len() as u16);
    let len = central.len() as u32;
    out.extend_from_slice(&central);
    out.extend_from_slice(b"PK\x05\x06\0\0\0\0");
    out.extend_from_slice(&n.to_le_bytes());
    out.extend_from_slice(&n.to_le_bytes());
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&at.to_le_bytes());
    out.extend_from_slice(&[0, 0]);
    out
}

/// The bytes in a file of the given name, in a private temp folder.
struct TempInput {
    _dir: tempfile::TempDir,
    path: PathBuf,
}

fn temp_input(name: &str, data: &[u8]) -> Option<TempInput> {
    let dir = tempfile::tempdir().ok()?;
    let path = dir.path().join(name);
    std::fs::write(&path, data).ok()?;
    Some(TempInput { _dir: dir, path })
}

/// Every tensor of a model that opened, read (small ones: the point is the
/// readers' bounds, not copying gigabytes a file claims).
fn read_tensors(model: &Model) {
    for t in &model.tensors {
        if t.info.byte_len <= 1 << 20 {
            let _ = t.read_all();
        }
    }
}

/// The checkpoint loader: torch zip, legacy and bare pickles.
pub fn torch(data: &[u8]) {
    let Some(f) = temp_input("fuzz.pt", data) else { return };
    for sel in [
        modelconv_pytorch::Selection::StateDict,
        modelconv_pytorch::Selection::All,
    ] {
        if let Ok(m) = modelconv_pytorch::open_with(&f.path, sel) {
            read_tensors(&m);
        }
    }
}

/// safetensors: the header parser on its own, then the file reader.
pub fn safetensors(data: &[u8]) {
    if data.len() >= 8 {
        let n = u64::from_le_bytes(data[..8].try_into().unwrap_or_default());
        if let Some(json) = usize::try_from(n)
            .ok()
            .and_then(|n| data.get(8..8usize.saturating_add(n)))
        {
            let _ = modelconv_safetensors::header::parse(json, (data.len() - 8 - json.len()) as u64);
        }
    }
    let Some(f) = temp_input("fuzz.safetensors", data) else {
        return;
    };
    if let Ok(m) = modelconv_safetensors::open(&f.path) {
        read_tensors(&m);
    }
}

/// GGUF: the header parser in memory, then the file reader.
pub fn gguf(data: &[u8]) {
    let _ = modelconv_gguf::parse(data, Path::new("fuzz.gguf"));
    let Some(f) = temp_input("fuzz.gguf", data) else { return };
    if let Ok(m) = modelconv_gguf::open(&f.path) {
        read_tensors(&m);
    }
}

/// NumPy: the .npy header literal, then the file reader (.npy and .npz,
/// stored and deflated members).
pub fn numpy(data: &[u8]) {
    let _ = modelconv_npy::literal(data);
    for name in ["fuzz.npy", "fuzz.npz"] {
        let Some(f) = temp_input(name, data) else { return };
        if let Ok(m) = modelconv_numpy::open(&f.path, Some(modelconv_ir::DType::BF16)) {
            read_tensors(&m);
        }
    }
}

/// Flax msgpack: the document reader and every array's data.
pub fn flax(data: &[u8]) {
    let Some(f) = temp_input("fuzz.msgpack", data) else {
        return;
    };
    if let Ok(m) = modelconv_flax::open(&f.path) {
        read_tensors(&m);
    }
}

/// TensorFlow bundles: the LevelDB-format index (blocks, restarts, snappy,
/// crcs) and the entries, over a data shard of the same bytes.
pub fn tf(data: &[u8]) {
    let Some(dir) = tempfile::tempdir().ok() else { return };
    let prefix = dir.path().join("ckpt");
    if std::fs::write(prefix.with_extension("index"), data).is_err()
        || std::fs::write(dir.path().join("ckpt.data-00000-of-00001"), data).is_err()
    {
        return;
    }
    if let Ok(m) = modelconv_tf::open(&prefix, false) {
        read_tensors(&m);
    }
}

/// HDF5: superblocks, object headers, groups, attributes, chunk indexes
/// and filters, as Keras weights, by path, and every dataset (`--all`).
pub fn hdf5(data: &[u8]) {
    let Some(f) = temp_input("fuzz.h5", data) else {
        return;
    };
    for (by_path, all) in [(false, false), (true, true)] {
        if let Ok(m) = modelconv_hdf5::open(&f.path, by_path, all) {
            read_tensors(&m);
        }
    }
}

/// Paddle .pdparams: the VM, Paddle's names and split parameters.
pub fn paddle(data: &[u8]) {
    let Some(f) = temp_input("fuzz.pdparams", data) else {
        return;
    };
    for param in [false, true] {
        if let Ok(m) = modelconv_paddle::open(&f.path, param) {
            read_tensors(&m);
        }
    }
}

/// ONNX: protobuf decode, tensor checks, data of every type, the fp16 and
/// quantization rewrites.
pub fn onnx(data: &[u8]) {
    use modelconv_onnx::{fp16, quant, OnnxFile};
    let Some(f) = temp_input("m.onnx", data) else { return };
    let Ok(file) = OnnxFile::open(&f.path) else { return };
    if let Ok((inits, _)) = file.tensors(true) {
        for i in inits {
            if i.tensor.info.byte_len < 1 << 20 {
                let _ = i.tensor.read_all();
            }
        }
    }
    let _ = modelconv_onnx::summary::summarize(&file, true);
    let _ = fp16::to_fp16(&file, &fp16::Fp16Options::default());
    let _ = quant::quantize(&file, &quant::QuantOptions::default());
}

/// A Hugging Face folder's side files: the bytes as a SentencePiece
/// `tokenizer.model`, as a model card's front matter, and as the
/// `config.json`, `tokenizer_config.json`, `generation_config.json` and
/// `adapter_config.json` of a folder whose architecture, special tokens,
/// `general.*` keys and adapter settings are read; and as a SentencePiece
/// model's trainer and normalizer specs.
pub fn hf_files(data: &[u8]) {
    let _ = modelconv_llama::spm::pieces(Path::new("fuzz"), data);
    let _ = modelconv_llama::spm::spec(Path::new("fuzz"), data);
    let _ = modelconv_llama::card::front_matter(&String::from_utf8_lossy(data));
    let Some(input) = temp_input("config.json", data) else {
        return;
    };
    let Some(dir) = input.path.parent() else { return };
    for name in [
        "tokenizer_config.json",
        "generation_config.json",
        "README.md",
        "adapter_config.json",
    ] {
        if std::fs::write(dir.join(name), data).is_err() {
            return;
        }
    }
    let _ =
        modelconv_llama::special::SpecialVocab::load(dir, true, modelconv_llama::special::DEFAULT_TYPES, Some(1 << 10));
    if let Ok(Some(folder)) = modelconv_llama::Folder::detect(dir, None, None) {
        let mut md = modelconv_ir::Metadata::new();
        let g = modelconv_llama::meta::General::for_folder(
            dir,
            &folder.hparams.map,
            &modelconv_llama::meta::Params {
                total: 1 << 20,
                shared: 1 << 20,
                ..Default::default()
            },
        );
        let _ = modelconv_llama::meta::write_general(&mut md, dir, &g);
    }
    // The same bytes as a PEFT adapter's config, the folder its own base.
    let _ = modelconv_llama::Folder::detect_adapter(dir, Some(dir), None, None);
}

#[cfg(test)]
mod tests {
    /// The harness's archive, with its own constants, is one the TorchScript
    /// reader opens (so the fuzzer starts from a working file).
    #[test]
    fn the_torchscript_harness_archive_opens() {
        let zip = super::torchscript_archive(b"\x02\x80\x02).").unwrap();
        let f = super::temp_input("t.pt", &zip).unwrap();
        let m = modelconv_pytorch::open_with(&f.path, modelconv_pytorch::Selection::StateDict).unwrap();
        assert_eq!(m.tensors.len(), 1);
        assert_eq!(m.tensors[0].info.name, "w");
    }
}
