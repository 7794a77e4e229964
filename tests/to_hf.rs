//! GGUF → Hugging Face folder (`convert x.gguf DIR --to hf`) against the
//! folder transformers saved and llama.cpp's converter made the GGUF of
//! (fixtures/hf/tiny-llama and tiny-llama.BF16.gguf): the weights come back
//! equal to transformers' own, and the folder converts back to the GGUF's
//! hyper-parameters and tokenizer. transformers loading such folders is
//! the interop suite's (tests/interop/hf_gguf.py).

mod common;
use common::*;

/// `meta --json`'s keys that a round trip must keep: the architecture's
/// and the tokenizer's (general.* comes from the folder's name and card).
fn kept_keys(path: &std::path::Path) -> serde_json::Map<String, serde_json::Value> {
    let doc: serde_json::Value = serde_json::from_str(&ok(&["meta", p(path), "--json"])).unwrap();
    let md = doc["metadata"].as_object().unwrap();
    md.iter()
        .filter(|(k, _)| k.starts_with("llama.") || k.starts_with("tokenizer."))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

#[test]
fn a_gguf_goes_back_to_the_folder_it_was_converted_from() {
    let dir = tempfile::tempdir().unwrap();
    let gguf = fixture("hf/tiny-llama.BF16.gguf");
    let out = dir.path().join("tiny-llama");
    ok(&["-q", "convert", p(&gguf), p(&out), "--to", "hf"]);
    let mut names = dir_names(&out);
    names.sort();
    assert_eq!(
        names,
        [
            "config.json",
            "model.safetensors",
            "tokenizer.model",
            "tokenizer_config.json"
        ]
    );
    // Every tensor equals transformers' (Q/K rows permuted back; norms,
    // which the GGUF holds in F32, with the same values).
    ok(&[
        "-q",
        "diff",
        p(&out.join("model.safetensors")),
        p(&fixture("hf/tiny-llama/model.safetensors")),
    ]);
    let config: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("config.json")).unwrap()).unwrap();
    let original: serde_json::Value =
        serde_json::from_slice(&std::fs::read(fixture("hf/tiny-llama/config.json")).unwrap()).unwrap();
    for key in [
        "architectures",
        "model_type",
        "vocab_size",
        "hidden_size",
        "intermediate_size",
        "num_hidden_layers",
        "num_attention_heads",
        "num_key_value_heads",
        "head_dim",
        "max_position_embeddings",
        "rms_norm_eps",
        "rope_parameters",
        "tie_word_embeddings",
        "bos_token_id",
        "eos_token_id",
        "dtype",
    ] {
        assert_eq!(config[key], original[key], "config.json {key}");
    }
    // And back: the same hyper-parameters and tokenizer keys as the GGUF.
    let again = dir.path().join("again.gguf");
    ok(&["-q", "convert", p(&out), p(&again)]);
    assert_eq!(kept_keys(&again), kept_keys(&gguf));
    ok(&["-q", "diff", p(&again), p(&gguf)]);
}

#[test]
fn quantized_tensors_are_dequantized_and_shards_get_an_index() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("q");
    ok(&[
        "-q",
        "convert",
        p(&fixture("hf/tiny-llama.Q4_K_M.gguf")),
        p(&out),
        "--to",
        "hf",
        "--max-shard-size",
        "400KB",
    ]);
    let names = dir_names(&out);
    assert!(names.iter().any(|n| n == "model.safetensors.index.json"), "{names:?}");
    assert!(
        names.iter().filter(|n| n.starts_with("model-0000")).count() > 1,
        "{names:?}"
    );
    let doc = inspect_json(&out.join("model.safetensors.index.json"));
    assert!(
        doc["tensors"].as_array().unwrap().iter().all(|t| t["dtype"] == "F32"),
        "{doc}"
    );
    // Within Q4_K's error of the weights it was quantized from.
    ok(&[
        "-q",
        "diff",
        p(&out.join("model.safetensors.index.json")),
        p(&fixture("hf/tiny-llama/model.safetensors")),
        "--atol",
        "0.05",
        "--rtol",
        "0.1",
    ]);
}

#[test]
fn what_cannot_go_back_is_refused_without_output() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("x");
    let gguf = fixture("hf/tiny-llama.F16.gguf");
    // An architecture without its way back, naming those with one.
    let err = exit_2(&["convert", p(&fixture("hf/arch/gpt2.F16.gguf")), p(&out), "--to", "hf"]);
    assert!(err.contains("'gpt2'") && err.contains("llama, qwen2, qwen3"), "{err}");
    assert!(!out.exists());
    // A GGUF without the vocabulary a folder needs.
    let err = exit_2(&["convert", p(&fixture("gguf/in-f32.gguf")), p(&out), "--to", "hf"]);
    assert!(err.contains("in-f32.gguf") && err.contains("tokenizer"), "{err}");
    // Weights types a folder does not hold.
    let err = exit_2(&["convert", p(&gguf), p(&out), "--to", "hf", "--dtype", "Q8_0"]);
    assert!(err.contains("F32, F16 or BF16"), "{err}");
    assert!(!out.exists());
    // A folder that already holds something is never written into.
    std::fs::create_dir(&out).unwrap();
    std::fs::write(out.join("keep.txt"), b"mine").unwrap();
    let err = exit_2(&["convert", p(&gguf), p(&out), "--to", "hf"]);
    assert!(err.contains("not an empty folder"), "{err}");
    assert_eq!(dir_names(&out), ["keep.txt"]);
}

#[test]
fn dtype_casts_every_weight_and_config_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("f16");
    ok(&[
        "-q",
        "convert",
        p(&fixture("hf/tiny-llama.BF16.gguf")),
        p(&out),
        "--to",
        "hf",
        "--dtype",
        "F16",
    ]);
    let config: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["dtype"], "float16");
    let doc = inspect_json(&out.join("model.safetensors"));
    assert!(
        doc["tensors"].as_array().unwrap().iter().all(|t| t["dtype"] == "F16"),
        "{doc}"
    );
}
