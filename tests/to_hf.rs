//! GGUF → Hugging Face folder (`convert x.gguf DIR --to hf`) against the
//! folder transformers saved and llama.cpp's converter made the GGUF of
//! (fixtures/hf/tiny-llama and tiny-llama.BF16.gguf): the weights come back
//! equal to transformers' own, and the folder converts back to the GGUF's
//! hyper-parameters and tokenizer. transformers loading such folders is
//! the interop suite's (tests/interop/hf_gguf.py).

mod common;
use common::*;

/// `meta --json`'s keys that a round trip must keep: the architecture's,
/// the tokenizer's, and the model card's (license, base model, tags,
/// languages; general.name comes from the folder's name).
fn kept_keys(path: &std::path::Path) -> serde_json::Map<String, serde_json::Value> {
    let doc: serde_json::Value = serde_json::from_str(&ok(&["meta", p(path), "--json"])).unwrap();
    let md = doc["metadata"].as_object().unwrap();
    let card = [
        "general.license",
        "general.base_model.",
        "general.tags",
        "general.languages",
    ];
    md.iter()
        .filter(|(k, _)| {
            k.starts_with("llama.") || k.starts_with("tokenizer.") || card.iter().any(|c| k.starts_with(c))
        })
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
            "README.md",
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
    // And back: the same hyper-parameters, tokenizer and model-card keys
    // as the GGUF (the card is README.md's front matter).
    let again = dir.path().join("again.gguf");
    ok(&["-q", "convert", p(&out), p(&again)]);
    let kept = kept_keys(&gguf);
    assert!(
        [
            "general.license",
            "general.base_model.0.repo_url",
            "general.tags",
            "general.languages"
        ]
        .iter()
        .all(|k| kept.contains_key(*k)),
        "{kept:?}"
    );
    assert_eq!(kept_keys(&again), kept);
    ok(&["-q", "diff", p(&again), p(&gguf)]);
}

/// `family`'s golden (llama.cpp's converter on fixtures/hf/arch/NAME,
/// written F16) back as a folder in `dir`, checked against the folder it
/// was made from: every tensor under its transformers name and shape
/// within F16's rounding, none missing but those the conversion drops
/// (`dropped`, by name prefix), none different but `differs` (values the
/// conversion dropped, put back as zeros), and config.json naming the
/// original's class, model type, depth and vocabulary.
fn assert_comes_back(dir: &std::path::Path, family: &str, dropped: &[&str], differs: &[&str]) -> std::path::PathBuf {
    let out = dir.join(family);
    let gguf = fixture(&format!("hf/arch/{family}.F16.gguf"));
    ok(&["-q", "convert", p(&gguf), p(&out), "--to", "hf"]);
    let original = fixture(&format!("hf/arch/{family}"));
    // diff exits 1 where tensors are missing; its document says which.
    let report = run(&[
        "diff",
        "--json",
        p(&out.join("model.safetensors")),
        p(&original.join("model.safetensors")),
        "--atol",
        "0.002",
        "--rtol",
        "0.002",
    ]);
    let doc: serde_json::Value = serde_json::from_slice(&report.stdout).unwrap();
    assert_eq!(doc["only_in_a"], serde_json::json!([]), "{family}");
    for name in doc["only_in_b"].as_array().unwrap() {
        let name = name.as_str().unwrap();
        assert!(
            dropped.iter().any(|d| name.starts_with(d)),
            "{family}: {name} did not come back"
        );
    }
    let bad: Vec<&serde_json::Value> = doc["tensors"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["status"] != "ok" && !differs.iter().any(|d| t["name"] == *d))
        .collect();
    assert!(bad.is_empty(), "{family}: {bad:?}");
    let read = |d: &std::path::Path| -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(d.join("config.json")).unwrap()).unwrap()
    };
    let (ours, theirs) = (read(&out), read(&original));
    for key in ["architectures", "model_type", "num_hidden_layers", "vocab_size"] {
        assert_eq!(ours[key], theirs[key], "{family}: config.json {key}");
    }
    out
}

/// Every family with a way back: Gemma's norms shifted back, GPT-2's
/// Conv1D weights transposed back, stacked experts split per expert,
/// fused QKV rows regrouped, halves joined — BERT without the pooler the
/// conversion drops.
#[test]
fn every_family_with_a_way_back_returns_its_folder() {
    let dir = tempfile::tempdir().unwrap();
    for family in [
        "gemma2",
        "gemma3",
        "mixtral",
        "qwen2",
        "qwen3",
        "qwen2moe",
        "qwen3moe",
        "phi3",
        "gpt2",
        "starcoder2",
        "stablelm",
        "olmo2",
        "granite",
        "olmoe",
        "cohere",
        "smollm3",
        "phimoe",
        "falcon",
        "falcon40b",
        "gptneox",
        "glm4",
        "exaone4",
        "granitemoe",
        "granitemoeshared",
        "deepseek2",
        "gptoss",
        "modernbert",
    ] {
        assert_comes_back(dir.path(), family, &[], &[]);
    }
    let bert = assert_comes_back(dir.path(), "bert", &["pooler."], &[]);
    let names = dir_names(&bert);
    for name in ["tokenizer.json", "modules.json", "1_Pooling"] {
        assert!(names.contains(&name.to_string()), "{names:?}");
    }
    // The GGUF's mean pooling as sentence-transformers' module config.
    let pooling: serde_json::Value =
        serde_json::from_slice(&std::fs::read(bert.join("1_Pooling/config.json")).unwrap()).unwrap();
    assert_eq!(pooling["pooling_mode_mean_tokens"], true);
    assert_eq!(pooling["pooling_mode_cls_token"], false);
    assert_eq!(pooling["word_embedding_dimension"], 16);
    // XLM-RoBERTa shares BERT's architecture name: its unigram vocabulary
    // as tokenizer.json, the two position rows before its first position
    // (which the conversion drops) back as zeros.
    let xlmr = assert_comes_back(
        dir.path(),
        "xlmr",
        &["pooler."],
        &["embeddings.position_embeddings.weight"],
    );
    let config: serde_json::Value = serde_json::from_slice(&std::fs::read(xlmr.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["max_position_embeddings"], 514);
    let tokenizer: serde_json::Value =
        serde_json::from_slice(&std::fs::read(xlmr.join("tokenizer.json")).unwrap()).unwrap();
    assert_eq!(tokenizer["model"]["type"], "Unigram");
}

/// DeepSeek-V3 comes back but for its multi-token-prediction layer, which
/// the conversion drops (llama.cpp does not run it): `kv_b_proj` rebuilt
/// from `attn_k_b` and `attn_v_b`, the router bias under its own name,
/// config.json V3's.
#[test]
fn deepseek_v3_comes_back_without_the_layer_the_conversion_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let out = assert_comes_back(dir.path(), "deepseek3", &["model.layers.2."], &[]);
    let original = fixture("hf/arch/deepseek3");
    let config: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("config.json")).unwrap()).unwrap();
    let theirs: serde_json::Value =
        serde_json::from_slice(&std::fs::read(original.join("config.json")).unwrap()).unwrap();
    for key in [
        "q_lora_rank",
        "kv_lora_rank",
        "qk_nope_head_dim",
        "v_head_dim",
        "n_group",
        "topk_group",
        "scoring_func",
        "routed_scaling_factor",
        "norm_topk_prob",
        "rope_parameters",
    ] {
        assert_eq!(config[key], theirs[key], "config.json {key}");
    }
}

/// A quantized Conv1D weight cannot be transposed block-wise: it is
/// dequantized, then transposed, and comes back within Q8_0's error.
#[test]
fn quantized_gpt2_weights_are_transposed_after_dequantizing() {
    let dir = tempfile::tempdir().unwrap();
    let q8 = dir.path().join("gpt2.Q8_0.gguf");
    let golden = fixture("hf/arch/gpt2.F16.gguf");
    ok(&["-q", "quantize", p(&golden), "-o", p(&q8), "--type", "Q8_0", "--pure"]);
    let out = dir.path().join("gpt2");
    ok(&["-q", "convert", p(&q8), p(&out), "--to", "hf"]);
    ok(&[
        "-q",
        "diff",
        p(&out.join("model.safetensors")),
        p(&fixture("hf/arch/gpt2/model.safetensors")),
        "--atol",
        "0.02",
        "--rtol",
        "0.05",
    ]);
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
    let err = exit_2(&[
        "convert",
        p(&fixture("hf/mmproj/gemma3.F16.gguf")),
        p(&out),
        "--to",
        "hf",
    ]);
    assert!(
        err.contains("'clip'") && err.contains("llama") && err.contains("gemma2"),
        "{err}"
    );
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
