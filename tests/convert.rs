//! End-to-end conversions between safetensors and GGUF, checked against
//! files written by the real tools (safetensors, gguf-py, llama.cpp).

mod common;
use common::*;
use modelconv_ir::Model;

fn tensor_bytes(m: &Model) -> Vec<(String, String, Vec<u64>, Vec<u8>)> {
    m.tensors
        .iter()
        .map(|t| {
            (
                t.info.name.clone(),
                t.info.dtype.name().to_string(),
                t.info.shape.clone(),
                t.read_all().unwrap(),
            )
        })
        .collect()
}

#[test]
fn safetensors_copy_is_byte_identical_to_the_reference_writer() {
    let dir = tempfile::tempdir().unwrap();
    let src = fixture("safetensors/all_dtypes.safetensors");
    let out = dir.path().join("a.safetensors");
    ok(&["convert", p(&src), p(&out)]);
    assert_eq!(std::fs::read(&src).unwrap(), std::fs::read(&out).unwrap());
}

#[test]
fn gguf_copies_are_byte_identical_to_gguf_py_and_llama_cpp() {
    let dir = tempfile::tempdir().unwrap();
    for name in [
        "gguf_py_types.gguf",
        "in-f32.gguf",
        "mix-Q4_K_M.gguf",
        "pure-Q2_K.gguf",
        "pure-Q6_K.gguf",
        // No tensors: it ends with its header, unpadded.
        "vocab-only-bert-bge.gguf",
    ] {
        let src = fixture(&format!("gguf/{name}"));
        let out = dir.path().join(name);
        ok(&["convert", p(&src), p(&out)]);
        assert_eq!(std::fs::read(&src).unwrap(), std::fs::read(&out).unwrap(), "{name}");
    }
}

#[test]
fn float_types_round_trip_safetensors_gguf_safetensors_bit_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let src = fixture("safetensors/floats.safetensors");
    let g = dir.path().join("m.gguf");
    let back = dir.path().join("back.safetensors");
    ok(&["convert", p(&src), p(&g)]);
    ok(&["convert", p(&g), p(&back)]);
    let a = modelconv_safetensors::open(&src).unwrap();
    let b = modelconv_safetensors::open(&back).unwrap();
    assert_eq!(tensor_bytes(&a), tensor_bytes(&b));
    // The GGUF holds the shapes innermost-first, as ggml does.
    let gm = modelconv_gguf::open(&g).unwrap();
    assert_eq!(tensor_bytes(&a), tensor_bytes(&gm));
    // Metadata strings survive both ways.
    assert_eq!(b.metadata.get("format").and_then(|v| v.as_str()), Some("pt"));
}

#[test]
fn every_gguf_type_round_trips_through_safetensors_where_it_can() {
    let dir = tempfile::tempdir().unwrap();
    let src = fixture("gguf/gguf_py_types.gguf");
    let st = dir.path().join("t.safetensors");
    let back = dir.path().join("back.gguf");
    ok(&["convert", p(&src), p(&st)]);
    ok(&["convert", p(&st), p(&back)]);
    let a = modelconv_gguf::open(&src).unwrap();
    let b = modelconv_gguf::open(&back).unwrap();
    assert_eq!(tensor_bytes(&a), tensor_bytes(&b));
    // Typed metadata is text in the safetensors header, and typed again when read.
    let bytes = std::fs::read(&st).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    assert_eq!(header["__metadata__"]["t.u64"], "9223372036854775809");
    assert_eq!(
        header["__metadata__"]["t.arr_nested"],
        r#"[{"type":"array<i32>","value":[1,2]},{"type":"array<i32>","value":[3]}]"#
    );
    let s = modelconv_safetensors::open(&st).unwrap();
    assert_eq!(s.metadata, a.metadata);
}

#[test]
fn converting_twice_gives_identical_files() {
    let dir = tempfile::tempdir().unwrap();
    let src = fixture("safetensors/floats.safetensors");
    for (ext, extra) in [("gguf", vec![]), ("safetensors", vec!["--dtype", "BF16"])] {
        let a = dir.path().join(format!("1.{ext}"));
        let b = dir.path().join(format!("2.{ext}"));
        for out in [&a, &b] {
            let mut args = vec!["convert", p(&src), p(out)];
            args.extend(&extra);
            ok(&args);
        }
        assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
    }
}

#[test]
fn types_gguf_cannot_hold_are_refused_before_writing() {
    let dir = tempfile::tempdir().unwrap();
    let src = fixture("safetensors/all_dtypes.safetensors");
    let out = dir.path().join("x.gguf");
    let (code, err) = stderr_of(&["convert", p(&src), p(&out)]);
    assert_eq!(code, 2);
    // Every type GGUF lacks, in one error.
    for d in ["U64", "U32", "U16", "U8", "BOOL", "F8_E4M3", "F8_E5M2"] {
        assert!(
            err.contains(&format!("no {d} type (tensor '{}')", d.to_lowercase())),
            "{d}: {err}"
        );
    }
    assert_eq!(err.matches("modelconv: error:").count(), 1, "{err}");
    assert!(dir_names(dir.path()).is_empty(), "left {:?}", dir_names(dir.path()));
    // Leaving them out works, and the rest is exact.
    ok(&["convert", p(&src), p(&out), "--exclude", "^(u\\d+|bool|f8_.*)$"]);
    let m = modelconv_gguf::open(&out).unwrap();
    let names: Vec<_> = m.tensors.iter().map(|t| t.info.name.as_str()).collect();
    assert!(names.contains(&"scalar") && names.contains(&"empty") && names.contains(&"bf16"));
    assert_eq!(m.tensor("scalar").unwrap().info.shape, Vec::<u64>::new());
    assert_eq!(m.tensor("empty").unwrap().info.shape, vec![0, 4]);
}

#[test]
fn cast_rounds_like_torch_and_keeps_integers() {
    let dir = tempfile::tempdir().unwrap();
    let src = fixture("safetensors/all_dtypes.safetensors");
    let out = dir.path().join("h.safetensors");
    ok(&["convert", p(&src), p(&out), "--dtype", "F16"]);
    let a = modelconv_safetensors::open(&src).unwrap();
    let b = modelconv_safetensors::open(&out).unwrap();
    for (ta, tb) in a.tensors.iter().zip(&b.tensors) {
        assert_eq!(ta.info.name, tb.info.name);
        assert_eq!(ta.info.shape, tb.info.shape);
        let want = if ta.info.dtype.is_float() {
            "F16"
        } else {
            ta.info.dtype.name()
        };
        assert_eq!(tb.info.dtype.name(), want, "{}", ta.info.name);
    }
    // f32 → f16 by round-to-nearest-even, checked element by element.
    let f32s: Vec<f32> = a
        .tensor("f32")
        .unwrap()
        .read_all()
        .unwrap()
        .chunks(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    let f16s = b.tensor("f32").unwrap().read_all().unwrap();
    for (x, h) in f32s.iter().zip(f16s.chunks(2)) {
        assert_eq!(half::f16::from_f32(*x).to_bits(), u16::from_le_bytes([h[0], h[1]]));
    }
    // diff: not identical, but within f16 precision.
    expect_code(&["diff", p(&src), p(&out)], 1);
    ok(&["diff", p(&src), p(&out), "--rtol", "1e-3", "--atol", "1e-7"]);
}

#[test]
fn select_and_rename() {
    let dir = tempfile::tempdir().unwrap();
    let src = fixture("safetensors/all_dtypes.safetensors");
    let out = dir.path().join("s.safetensors");
    ok(&[
        "convert",
        p(&src),
        p(&out),
        "--include",
        "^(f32|i8|model\\..*)$",
        "--exclude",
        "^i8$",
        "--rename",
        "^model\\.layers\\.(\\d+)\\.=blk.$1.",
    ]);
    let m = modelconv_safetensors::open(&out).unwrap();
    let names: Vec<_> = m.tensors.iter().map(|t| t.info.name.as_str()).collect();
    assert_eq!(names, ["f32", "blk.0.attn.q_proj.weight"]);
    let (code, err) = stderr_of(&["convert", p(&src), p(&out), "--rename", ".*=same"]);
    assert_eq!(code, 2);
    assert!(err.contains("appears twice"), "{err}");
}

#[test]
fn sharded_input_and_output() {
    let dir = tempfile::tempdir().unwrap();
    let shards = fixture("safetensors/sharded");
    let via_dir = inspect_json(&shards);
    let via_index = inspect_json(&shards.join("model.safetensors.index.json"));
    assert_eq!(via_dir["tensors"].as_array().unwrap().len(), 4);
    assert_eq!(via_dir["tensors"], via_index["tensors"]);

    let out = dir.path().join("model.safetensors");
    ok(&["convert", p(&shards), p(&out), "--max-shard-size", "200B"]);
    let names = dir_names(dir.path());
    // 160 B | 64 + 32 B | 160 B: a shard closes when the next tensor would pass 200 B.
    assert_eq!(names.len(), 4, "{names:?}");
    assert!(names.contains(&"model-00002-of-00003.safetensors".to_string()));
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("model.safetensors.index.json")).unwrap()).unwrap();
    assert_eq!(index["metadata"]["total_size"], via_dir["bytes"]);
    assert_eq!(
        index["weight_map"]["lm_head.weight"],
        "model-00003-of-00003.safetensors"
    );
    // Reading the written shards back gives the same tensors.
    let a = modelconv_safetensors::open(&shards).unwrap();
    let b = modelconv_safetensors::open(dir.path()).unwrap();
    assert_eq!(tensor_bytes(&a), tensor_bytes(&b));
    ok(&["diff", p(&shards), p(dir.path())]);
}

#[test]
fn inspect_json_fields() {
    let v = inspect_json(&fixture("gguf/mix-Q4_K_M.gguf"));
    assert_eq!(v["format"], "gguf");
    let t = &v["tensors"][0];
    assert_eq!(t["name"], "output.weight");
    assert_eq!(t["dtype"], "Q6_K");
    assert_eq!(t["shape"], serde_json::json!([512, 256]));
    assert_eq!(t["bytes"], 512 * 256 / 256 * 210);
    assert!(t["offset"].is_u64());
    assert_eq!(
        v["metadata"]["general.file_type"],
        serde_json::json!({"type": "u32", "value": 15})
    );
    let s = inspect_json(&fixture("safetensors/all_dtypes.safetensors"));
    assert_eq!(s["parameters"], 201);
    assert_eq!(s["metadata"]["format"]["value"], "pt");
    let dtypes: Vec<&str> = s["tensors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["dtype"].as_str().unwrap())
        .collect();
    for d in ["F8_E4M3", "F8_E5M2", "BOOL", "BF16", "U64"] {
        assert!(dtypes.contains(&d), "{d}");
    }
}

#[test]
fn diff_reports_missing_and_changed_tensors() {
    let dir = tempfile::tempdir().unwrap();
    let src = fixture("safetensors/floats.safetensors");
    let part = dir.path().join("part.safetensors");
    ok(&["convert", p(&src), p(&part), "--exclude", "ids"]);
    let out = expect_code(&["diff", p(&src), p(&part), "--json"], 1);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["only_in_a"], serde_json::json!(["ids"]));
    assert_eq!(v["ok"], false);
    let same = ok(&["diff", p(&src), p(&src), "--json"]);
    let v: serde_json::Value = serde_json::from_str(&same).unwrap();
    for t in v["tensors"].as_array().unwrap() {
        assert_eq!(t["max_abs"], 0.0);
        assert_eq!(t["cosine"], 1.0);
    }
    // Across formats: the GGUF copy equals the source.
    let g = dir.path().join("m.gguf");
    ok(&["convert", p(&src), p(&g)]);
    ok(&["diff", p(&src), p(&g)]);
}

#[test]
fn dtype_takes_the_spellings_users_type() {
    let dir = tempfile::tempdir().unwrap();
    let input = fixture("safetensors/floats.safetensors");
    let want = dir.path().join("want.safetensors");
    ok(&["-q", "convert", p(&input), p(&want), "--dtype", "F16"]);
    for spelling in ["fp16", "float16", "half", "f16"] {
        let out = dir.path().join(format!("{spelling}.safetensors"));
        ok(&["-q", "convert", p(&input), p(&out), "--dtype", spelling]);
        assert_eq!(
            std::fs::read(&out).unwrap(),
            std::fs::read(&want).unwrap(),
            "{spelling}"
        );
    }
    ok(&[
        "-q",
        "convert",
        p(&input),
        p(&dir.path().join("b.safetensors")),
        "--dtype",
        "bfloat16",
    ]);
    let (code, err) = stderr_of(&[
        "convert",
        p(&input),
        p(&dir.path().join("x.safetensors")),
        "--dtype",
        "fp17",
    ]);
    assert_eq!(code, 2);
    assert!(err.contains("--dtype fp17"), "{err}");
}

#[test]
fn casts_to_gguf_keep_what_llama_cpp_keeps_f32_and_set_the_file_type() {
    let dir = tempfile::tempdir().unwrap();
    let input = fixture("gguf/in-f32.gguf");
    for (dtype, id) in [("F16", 1u64), ("BF16", 32)] {
        let out = dir.path().join(format!("{dtype}.gguf"));
        ok(&["-q", "convert", p(&input), p(&out), "--dtype", dtype]);
        let j = inspect_json(&out);
        for t in j["tensors"].as_array().unwrap() {
            let (name, dims) = (t["name"].as_str().unwrap(), t["shape"].as_array().unwrap().len());
            let want = if dims <= 1 || name.ends_with("_norm.weight") {
                "F32"
            } else {
                dtype
            };
            assert_eq!(t["dtype"], want, "{name}");
        }
        let md = modelconv_gguf::open(&out).unwrap().metadata;
        assert_eq!(md.get("general.file_type").and_then(|v| v.as_u64()), Some(id));
        assert_eq!(md.get("general.quantization_version").and_then(|v| v.as_u64()), Some(2));
    }
    // Other outputs cast every float tensor.
    let st = dir.path().join("f16.safetensors");
    ok(&["-q", "convert", p(&input), p(&st), "--dtype", "F16"]);
    let m = modelconv_safetensors::open(&st).unwrap();
    assert!(m.tensors.iter().all(|t| t.info.dtype.name() == "F16"));
}

#[test]
fn to_and_an_extension_naming_another_format_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let input = fixture("safetensors/floats.safetensors");
    let out = dir.path().join("out.gguf");
    let (code, err) = stderr_of(&["convert", p(&input), p(&out), "--to", "safetensors"]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("extension names gguf") && err.contains("safetensors"),
        "{err}"
    );
    assert!(!out.exists());
    // An extension no format claims: --to decides.
    let plain = dir.path().join("weights.data");
    ok(&["-q", "convert", p(&input), p(&plain), "--to", "safetensors"]);
    assert!(modelconv_safetensors::open(&plain).is_ok());
    // Agreeing is fine.
    ok(&["-q", "convert", p(&input), p(&out), "--to", "gguf"]);
}

/// GGUF → safetensors → GGUF gives the same file: the typed metadata
/// travels through `__metadata__` (strings only) in the documented
/// encoding, in order, and comes back with its types.
#[test]
fn gguf_metadata_survives_safetensors_with_its_types() {
    let dir = tempfile::tempdir().unwrap();
    for name in [
        "gguf/gguf_py_types.gguf",
        "hf/tiny-llama.F16.gguf",
        "hf/tiny-llama.BF16.gguf",
    ] {
        let src = fixture(name);
        let st = dir.path().join("m.safetensors");
        let back = dir.path().join("back.gguf");
        ok(&["convert", p(&src), p(&st)]);
        ok(&["convert", p(&st), p(&back)]);
        assert_eq!(std::fs::read(&src).unwrap(), std::fs::read(&back).unwrap(), "{name}");
    }
    // What other tools see: plain strings, and one entry naming the types.
    let st = dir.path().join("m.safetensors");
    let bytes = std::fs::read(&st).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    let md = &header["__metadata__"];
    assert_eq!(md["llama.block_count"], "1");
    assert_eq!(md["general.architecture"], "llama");
    let types: serde_json::Value = serde_json::from_str(md["modelconv.metadata_types"].as_str().unwrap()).unwrap();
    assert_eq!(types["llama.block_count"], "u32");
    assert_eq!(types["tokenizer.ggml.tokens"], "array<string>");
    assert!(types.get("general.architecture").is_none());
    // inspect shows them typed again.
    let j = inspect_json(&st);
    assert_eq!(
        j["metadata"]["llama.block_count"],
        serde_json::json!({"type": "u32", "value": 1})
    );
}
