//! Hugging Face folder → GGUF against llama.cpp's own outputs
//! (fixtures/hf, made by convert_hf_to_gguf.py and llama-quantize from the
//! llama.cpp in llama-cpp-python 0.3.36): whole files byte for byte, and
//! the refusals (unknown architecture, broken tokenizer, stray flags).

mod common;
use common::*;
use std::path::Path;

fn same(a: &Path, golden: &str) {
    assert!(
        std::fs::read(a).unwrap() == std::fs::read(fixture(golden)).unwrap(),
        "{} differs from {golden}",
        a.display()
    );
}

/// Exit 2 and the message on stderr.
/// A copy of fixtures/hf/arch/`arch` in `dir` (sub-folders too), with the
/// tokenizer files it takes at conversion: tiny-llama's SentencePiece
/// model, or GPT-2's tokenizer for the BPE-only classes.
fn arch_folder(dir: &Path, arch: &str) -> std::path::PathBuf {
    arch_folder_as(dir, arch, arch)
}

/// [`arch_folder`] of fixture `arch`, copied as `dir/name` (the folder's
/// name is the model's `general.name`).
fn arch_folder_as(dir: &Path, arch: &str, name: &str) -> std::path::PathBuf {
    fn copy_tree(from: &Path, to: &Path) {
        std::fs::create_dir_all(to).unwrap();
        for e in std::fs::read_dir(from).unwrap() {
            let e = e.unwrap();
            if e.path().is_dir() {
                copy_tree(&e.path(), &to.join(e.file_name()));
            } else {
                std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
            }
        }
    }
    let model = dir.join(name);
    copy_tree(&fixture(&format!("hf/arch/{arch}")), &model);
    // gen_arch.py's MODELS take the SentencePiece model; its folders with
    // their own tokenizer (GPT-2, BERT, XLM-RoBERTa) nothing; the BPE-only classes GPT-2's.
    let extra: &[&str] = match arch {
        "gemma2" | "gemma3" | "phi3" | "qwen2" | "qwen3" | "mixtral" | "smollm3" | "granite" | "granitemoe"
        | "granitemoeshared" | "phimoe" => &["tiny-llama/tokenizer.model"],
        "gpt2" | "bert" | "xlmr" => &[],
        _ => &["arch/gpt2/tokenizer.json", "arch/gpt2/tokenizer_config.json"],
    };
    for f in extra {
        let name = Path::new(f).file_name().unwrap();
        // A folder's own file is kept (phi4's tokenizer config).
        if !model.join(name).exists() {
            std::fs::copy(fixture(&format!("hf/{f}")), model.join(name)).unwrap();
        }
    }
    model
}

/// A copy of the tiny LLaMA folder to break.
fn copy_model(dir: &Path) -> std::path::PathBuf {
    let to = dir.join("tiny-llama");
    std::fs::create_dir(&to).unwrap();
    for e in std::fs::read_dir(fixture("hf/tiny-llama")).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
    to
}

#[test]
fn folder_converts_to_the_file_convert_hf_to_gguf_writes() {
    let dir = tempfile::tempdir().unwrap();
    let model = fixture("hf/tiny-llama");
    for (flags, golden) in [
        (vec!["--dtype", "F16"], "hf/tiny-llama.F16.gguf"),
        (vec!["--dtype", "BF16"], "hf/tiny-llama.BF16.gguf"),
        (vec!["--dtype", "Q8_0"], "hf/tiny-llama.Q8_0.gguf"),
        // No --dtype: the weights' own type, as --outtype auto picks for BF16 weights.
        (vec![], "hf/tiny-llama.BF16.gguf"),
    ] {
        let out = dir.path().join("out.gguf");
        let mut args = vec!["-q", "convert", p(&model), p(&out)];
        args.extend(&flags);
        ok(&args);
        same(&out, golden);
    }
}

#[test]
fn q4_k_m_equals_convert_then_llama_quantize() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("q.gguf");
    let model = fixture("hf/tiny-llama");
    ok(&["-q", "quantize", p(&model), "--q4_k", "-o", p(&out)]);
    same(&out, "hf/tiny-llama.Q4_K_M.gguf");
    // The mix rules saw llama.cpp's names: attn_v and ffn_down are raised to Q6_K.
    let j = inspect_json(&out);
    let ty = |n: &str| {
        j["tensors"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["name"] == n)
            .map(|t| t["dtype"].as_str().unwrap().to_string())
    };
    assert_eq!(ty("blk.0.attn_v.weight").as_deref(), Some("Q6_K"));
    assert_eq!(ty("blk.0.attn_q.weight").as_deref(), Some("Q4_K"));
}

#[test]
fn a_weights_file_with_config_converts_like_its_folder() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.gguf");
    let weights = fixture("hf/tiny-llama/model.safetensors");
    let config = fixture("hf/tiny-llama/config.json");
    ok(&[
        "-q",
        "convert",
        p(&weights),
        p(&out),
        "--config",
        p(&config),
        "--dtype",
        "F16",
    ]);
    same(&out, "hf/tiny-llama.F16.gguf");
    // --arch: the class named, the config beside the weights.
    ok(&[
        "-q",
        "convert",
        p(&weights),
        p(&out),
        "--arch",
        "LlamaForCausalLM",
        "--dtype",
        "F16",
    ]);
    same(&out, "hf/tiny-llama.F16.gguf");
    let err = exit_2(&["convert", p(&weights), p(&out), "--arch", "NopeForCausalLM"]);
    assert!(
        err.contains("NopeForCausalLM") && err.contains("Qwen2ForCausalLM"),
        "{err}"
    );
    // Without --config or --arch the file keeps its names.
    ok(&["-q", "convert", p(&weights), p(&out)]);
    let j = inspect_json(&out);
    assert!(j["tensors"]
        .as_array()
        .unwrap()
        .iter()
        .any(|t| t["name"] == "model.norm.weight"));
    // --config means nothing for other outputs.
    let st = dir.path().join("out.safetensors");
    let err = exit_2(&["convert", p(&weights), p(&st), "--config", p(&config)]);
    assert!(err.contains("GGUF output only"), "{err}");
    let err = exit_2(&["convert", p(&weights), p(&st), "--arch", "LlamaForCausalLM"]);
    assert!(err.contains("GGUF output only"), "{err}");
    assert!(!st.exists());
}

#[test]
fn unknown_architectures_are_refused_listing_the_supported_ones() {
    let dir = tempfile::tempdir().unwrap();
    let model = copy_model(dir.path());
    let cfg = std::fs::read_to_string(model.join("config.json")).unwrap();
    std::fs::write(
        model.join("config.json"),
        cfg.replace("LlamaForCausalLM", "MambaForCausalLM"),
    )
    .unwrap();
    let out = dir.path().join("out.gguf");
    let err = exit_2(&["convert", p(&model), p(&out)]);
    assert!(
        err.contains("MambaForCausalLM") && err.contains("LlamaForCausalLM") && err.contains("BertModel"),
        "{err}"
    );
    assert!(!out.exists());
    // A class of a known family is pointed at its nearest supported one.
    std::fs::write(
        model.join("config.json"),
        cfg.replace("LlamaForCausalLM", "LlamaForSequenceClassification"),
    )
    .unwrap();
    let err = exit_2(&["convert", p(&model), p(&out)]);
    assert!(err.contains("closest known: LlamaForCausalLM;"), "{err}");
    // Safetensors output is still a plain copy with HF names.
    let st = dir.path().join("out.safetensors");
    ok(&["-q", "convert", p(&model), p(&st)]);
}

#[test]
fn broken_tokenizers_are_refused_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let model = copy_model(dir.path());
    let spm = std::fs::read(model.join("tokenizer.model")).unwrap();
    let out = dir.path().join("out.gguf");
    for cut in [1usize, 7, spm.len() / 2, spm.len() - 1] {
        std::fs::write(model.join("tokenizer.model"), &spm[..cut]).unwrap();
        let err = exit_2(&["convert", p(&model), p(&out)]);
        assert!(err.contains("tokenizer.model"), "cut {cut}: {err}");
        assert!(!out.exists());
    }
    std::fs::remove_file(model.join("tokenizer.model")).unwrap();
    let err = exit_2(&["quantize", p(&model), "--q4_k", "-o", p(&out)]);
    assert!(err.contains("tokenizer"), "{err}");
    assert!(!out.exists());
    std::fs::write(
        model.join("config.json"),
        b"{\"architectures\": [\"LlamaForCausalLM\"], ",
    )
    .unwrap();
    let err = exit_2(&["convert", p(&model), p(&out)]);
    assert!(err.contains("config.json"), "{err}");
}

#[test]
fn hostile_configs_are_refused_quickly() {
    let dir = tempfile::tempdir().unwrap();
    let model = copy_model(dir.path());
    let good = std::fs::read_to_string(model.join("config.json")).unwrap();
    let mut cfg: serde_json::Value = serde_json::from_str(&good).unwrap();
    let out = dir.path().join("out.gguf");
    let cases: Vec<(&str, serde_json::Value)> = vec![
        ("num_attention_heads", serde_json::json!(0)),
        ("num_attention_heads", serde_json::json!(1u64 << 62)),
        ("num_key_value_heads", serde_json::json!(u64::MAX)),
        ("vocab_size", serde_json::json!(1u64 << 40)),
        ("num_hidden_layers", serde_json::json!(1u64 << 40)),
        ("architectures", serde_json::json!([])),
        ("head_dim", serde_json::json!(1_000_000_000_000u64)),
    ];
    for (key, value) in cases {
        cfg[key] = value.clone();
        if key == "head_dim" {
            cfg["rope_parameters"] = serde_json::json!({"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0});
        }
        std::fs::write(model.join("config.json"), serde_json::to_string(&cfg).unwrap()).unwrap();
        let code = run_bounded(
            &["convert", p(&model), p(&out), "--dtype", "F16"],
            std::time::Duration::from_secs(20),
        );
        assert_eq!(code, Some(2), "{key} = {value}");
        assert!(!out.exists(), "{key} = {value}");
        cfg = serde_json::from_str(&good).unwrap();
    }
}

/// One tiny model per architecture module beside LLaMA (fixtures/hf/arch,
/// made by gen_arch.py): our conversion equals convert_hf_to_gguf.py's
/// `--outtype f16` file byte for byte, for every golden in the folder. The
/// SentencePiece folders share tiny-llama's model and the BPE-only ones
/// GPT-2's tokenizer, copied in here ([`arch_folder`]); GPT-2 and BERT
/// carry the real vocabularies their pre-tokenizer hashes need.
#[test]
fn every_architecture_converts_to_the_file_convert_hf_to_gguf_writes() {
    let dir = tempfile::tempdir().unwrap();
    // Every golden there is: a folder added with its golden is tested.
    let mut goldens: Vec<String> = std::fs::read_dir(fixture("hf/arch"))
        .unwrap()
        .filter_map(|e| {
            e.unwrap()
                .file_name()
                .to_str()?
                .strip_suffix(".F16.gguf")
                .map(str::to_string)
        })
        .collect();
    goldens.sort();
    assert!(goldens.len() >= 25, "{goldens:?}");
    for arch in &goldens {
        let model = arch_folder(dir.path(), arch);
        let out = dir.path().join(format!("{arch}.gguf"));
        ok(&["-q", "convert", p(&model), p(&out), "--dtype", "F16"]);
        same(&out, &format!("hf/arch/{arch}.F16.gguf"));
    }
    // transformers' fused 3-D expert layout converts to the same file (the
    // converter's did, gen_arch.py checks).
    std::fs::create_dir(dir.path().join("fused")).unwrap();
    let fused = arch_folder_as(&dir.path().join("fused"), "qwen3moe-fused", "qwen3moe");
    let out = dir.path().join("fused.gguf");
    ok(&["-q", "convert", p(&fused), p(&out), "--dtype", "F16"]);
    same(&out, "hf/arch/qwen3moe.F16.gguf");
}

/// A tokenizer.json that carries truncation and padding (as most
/// sentence-transformers exports do: max_length 128, fixed padding)
/// hashes as convert_hf_to_gguf hashes it (transformers' encode turns
/// both off): the BERT folder so edited converts to the same file.
#[test]
fn a_tokenizer_with_truncation_and_padding_hashes_as_the_converter_does() {
    let dir = tempfile::tempdir().unwrap();
    let model = arch_folder(dir.path(), "bert");
    let path = model.join("tokenizer.json");
    let mut tok: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    tok["truncation"] =
        serde_json::json!({"direction": "Right", "max_length": 128, "strategy": "LongestFirst", "stride": 0});
    tok["padding"] = serde_json::json!({"strategy": {"Fixed": 128}, "direction": "Right", "pad_to_multiple_of": null,
        "pad_id": 0, "pad_type_id": 0, "pad_token": "[PAD]"});
    std::fs::write(&path, serde_json::to_vec(&tok).unwrap()).unwrap();
    let out = dir.path().join("bert.gguf");
    ok(&["-q", "convert", p(&model), p(&out), "--dtype", "F16"]);
    same(&out, "hf/arch/bert.F16.gguf");
}

/// `add_prefix_space` in tokenizer_config.json becomes
/// `tokenizer.ggml.add_space_prefix` for LlamaModel only; GPT-2's
/// converter class never writes the key: the folder with it converts to
/// the same file.
#[test]
fn add_prefix_space_is_written_only_where_the_converter_writes_it() {
    let dir = tempfile::tempdir().unwrap();
    let model = arch_folder(dir.path(), "gpt2");
    let path = model.join("tokenizer_config.json");
    let mut tc: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    tc["add_prefix_space"] = serde_json::json!(true);
    std::fs::write(&path, serde_json::to_vec(&tc).unwrap()).unwrap();
    let out = dir.path().join("gpt2.gguf");
    ok(&["-q", "convert", p(&model), p(&out), "--dtype", "F16"]);
    same(&out, "hf/arch/gpt2.F16.gguf");
}

/// A tokenizer.json whose check hash llama.cpp's table lacks is refused
/// naming the hash and `--vocab-pre`; `--vocab-pre NAME` writes NAME (GPT-2's
/// tokenizer with `add_prefix_space` in its pre-tokenizer, named `gpt-2`,
/// converts to the golden of the unedited folder), a name the table lacks
/// and a vocabulary that is not hashed are refused.
#[test]
fn vocab_pre_names_a_pre_tokenizer_the_hash_table_lacks() {
    let dir = tempfile::tempdir().unwrap();
    let model = arch_folder(dir.path(), "gpt2");
    let path = model.join("tokenizer.json");
    let mut tok: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    tok["pre_tokenizer"]["add_prefix_space"] = serde_json::json!(true);
    std::fs::write(&path, serde_json::to_vec(&tok).unwrap()).unwrap();
    let out = dir.path().join("gpt2.gguf");
    let err = exit_2(&["convert", p(&model), p(&out), "--dtype", "F16"]);
    assert!(
        err.contains("tokenizer.json") && err.contains("check hash") && err.contains("--vocab-pre"),
        "{err}"
    );
    assert!(!out.exists());
    ok(&[
        "-q",
        "convert",
        p(&model),
        p(&out),
        "--dtype",
        "F16",
        "--vocab-pre",
        "gpt-2",
    ]);
    same(&out, "hf/arch/gpt2.F16.gguf");
    let err = exit_2(&["convert", p(&model), p(&out), "--vocab-pre", "gpt-3"]);
    assert!(err.contains("--vocab-pre gpt-3") && err.contains("llama-bpe"), "{err}");
    let spm = copy_model(dir.path());
    let out = dir.path().join("spm.gguf");
    let err = exit_2(&["convert", p(&spm), p(&out), "--vocab-pre", "gpt-2"]);
    assert!(err.contains("not a tokenizer.json one"), "{err}");
    assert!(!out.exists());
}

/// llama-quantize writes ggml_n_dims dimensions: Qwen2-MoE's `[1, n_embd]`
/// shared-expert gate is 2-D in convert_hf_to_gguf's file and 1-D after
/// llama-quantize (measured on the interop suite's qwen2moe-bpe, whose
/// Q4_K_M is then byte-identical); `quantize` writes it so too.
#[test]
fn quantize_writes_dimensions_as_llama_quantize_counts_them() {
    let dir = tempfile::tempdir().unwrap();
    let model = arch_folder(dir.path(), "qwen2moe");
    let shape_of = |path: &Path| {
        let j = inspect_json(path);
        let t = j["tensors"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["name"] == "blk.0.ffn_gate_inp_shexp.weight")
            .cloned();
        t.unwrap()["shape"].clone()
    };
    let f16 = dir.path().join("f16.gguf");
    ok(&["-q", "convert", p(&model), p(&f16), "--dtype", "F16"]);
    assert_eq!(shape_of(&f16), serde_json::json!([1, 16]));
    let q = dir.path().join("bf16.gguf");
    ok(&["-q", "quantize", p(&f16), "-o", p(&q), "--type", "BF16"]);
    assert_eq!(shape_of(&q), serde_json::json!([16]));
}

/// PEFT LoRA adapters (fixtures/hf/lora, made by peft and
/// convert_lora_to_gguf.py: gen_lora.py) convert to the converter's files:
/// LLaMA's Q/K permutation on B, Phi-3's fused tensors, a `.bin` adapter,
/// BF16 halves read as F32, the F32 default; the base folder's config.json
/// is all that is read of it.
#[test]
fn lora_adapters_are_the_files_convert_lora_to_gguf_writes() {
    let dir = tempfile::tempdir().unwrap();
    for (name, base, dtype) in [
        ("llama", "hf/tiny-llama", Some("F16")),
        ("phi3", "hf/arch/phi3", None),
        ("qwen2", "hf/arch/qwen2", Some("BF16")),
    ] {
        let config_only = dir.path().join(format!("base-{name}"));
        std::fs::create_dir(&config_only).unwrap();
        std::fs::copy(fixture(&format!("{base}/config.json")), config_only.join("config.json")).unwrap();
        let out = dir.path().join(format!("{name}.gguf"));
        let adapter = fixture(&format!("hf/lora/{name}"));
        let mut args = vec!["-q", "convert", p(&adapter), p(&out), "--base", p(&config_only)];
        if let Some(d) = dtype {
            args.extend(["--dtype", d]);
        }
        ok(&args);
        same(&out, &format!("hf/lora/{name}.{}.gguf", dtype.unwrap_or("F32")));
    }
}

/// What a LoRA conversion cannot do is refused before anything is written.
#[test]
fn lora_conversions_refuse_what_they_cannot_write() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("x.gguf");
    let adapter = fixture("hf/lora/llama");
    // The adapter names a hub id, which is never fetched.
    let msg = exit_2(&["convert", p(&adapter), p(&out)]);
    assert!(msg.contains("modelconv/tiny-llama") && msg.contains("--base"), "{msg}");
    // --base on a model that is not an adapter.
    let msg = exit_2(&[
        "convert",
        p(&fixture("hf/tiny-llama")),
        p(&out),
        "--base",
        p(&fixture("hf/tiny-llama")),
    ]);
    assert!(msg.contains("not a PEFT adapter"), "{msg}");
    // A base whose conversion transposes (GPT-2's Conv1D weights).
    let msg = exit_2(&["convert", p(&adapter), p(&out), "--base", p(&fixture("hf/arch/gpt2"))]);
    assert!(msg.contains("transposes"), "{msg}");
    // Adapters are converted, not quantized.
    let base = fixture("hf/tiny-llama");
    let msg = exit_2(&["quantize", p(&adapter), "--base", p(&base), "--q4_k", "-o", p(&out)]);
    assert!(msg.contains("not quantized"), "{msg}");
    // Not LoRA, DoRA, or a pair missing its half.
    for (edit, want) in [(r#""peft_type": "IA3""#, "LoRA only"), (r#""use_dora": true"#, "DoRA")] {
        let copy = dir.path().join(format!("edited-{}", want.len()));
        std::fs::create_dir(&copy).unwrap();
        for f in ["adapter_model.safetensors", "README.md"] {
            std::fs::copy(adapter.join(f), copy.join(f)).unwrap();
        }
        let config = std::fs::read_to_string(adapter.join("adapter_config.json")).unwrap();
        let key = edit.split(':').next().unwrap();
        let edited: String = config
            .lines()
            .map(|l| {
                if l.trim_start().starts_with(key) {
                    format!("  {edit},")
                } else {
                    l.to_string()
                }
            })
            .collect::<Vec<_>>()
            .join("\n");
        std::fs::write(copy.join("adapter_config.json"), edited).unwrap();
        let msg = exit_2(&["convert", p(&copy), p(&out), "--base", p(&base)]);
        assert!(msg.contains(want), "{msg}");
    }
    assert!(!out.exists());
}

/// A Qwen3 reranker (named so by its folder, as the converter detects it)
/// would need rank pooling and a classifier head cut from the output: it
/// is refused rather than written as a plain model.
#[test]
fn a_qwen3_reranker_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let model = arch_folder_as(dir.path(), "qwen3", "Qwen3-Reranker-0.6B");
    let out = dir.path().join("x.gguf");
    let msg = exit_2(&["convert", p(&model), p(&out)]);
    assert!(msg.contains("reranker"), "{msg}");
    assert!(!out.exists());
}

/// Vision projectors (fixtures/hf/mmproj, made by transformers and
/// `convert_hf_to_gguf.py --mmproj`: gen_mmproj.py) convert to the
/// converter's files in every output type: Gemma 3's (BF16 weights, the
/// +1 soft-embedding norm, the input projection forced to F16, the
/// pooling head dropped) and SmolVLM's (F32 weights, the connector).
#[test]
fn vision_projectors_are_the_files_convert_hf_to_gguf_mmproj_writes() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["gemma3", "smolvlm"] {
        for dtype in ["F16", "F32", "BF16", "Q8_0"] {
            let out = dir.path().join(format!("{name}.{dtype}.gguf"));
            let folder = fixture(&format!("hf/mmproj/{name}"));
            ok(&["-q", "convert", p(&folder), p(&out), "--mmproj", "--dtype", dtype]);
            same(&out, &format!("hf/mmproj/{name}.{dtype}.gguf"));
        }
    }
}

/// What a projector conversion cannot do is refused, nothing written.
#[test]
fn vision_projector_conversions_refuse_what_they_cannot_write() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("x.gguf");
    // A text-only class has no projector; the message lists those that do.
    let msg = exit_2(&["convert", p(&fixture("hf/tiny-llama")), p(&out), "--mmproj"]);
    assert!(
        msg.contains("no vision projector") && msg.contains("SmolVLMForConditionalGeneration"),
        "{msg}"
    );
    // Not GGUF output, or quantized.
    let folder = fixture("hf/mmproj/smolvlm");
    let st = dir.path().join("x.safetensors");
    let msg = exit_2(&["convert", p(&folder), p(&st), "--mmproj"]);
    assert!(msg.contains("GGUF output only"), "{msg}");
    let msg = exit_2(&["quantize", p(&folder), "--mmproj", "--q4_k", "-o", p(&out)]);
    assert!(msg.contains("not quantized"), "{msg}");
    // No image normalisation.
    let copy = dir.path().join("smolvlm");
    std::fs::create_dir(&copy).unwrap();
    for f in ["config.json", "model.safetensors"] {
        std::fs::copy(folder.join(f), copy.join(f)).unwrap();
    }
    std::fs::write(
        copy.join("preprocessor_config.json"),
        r#"{"image_std": [0.5, 0.5, 0.5]}"#,
    )
    .unwrap();
    let msg = exit_2(&["convert", p(&copy), p(&out), "--mmproj"]);
    assert!(
        msg.contains("image_mean") && msg.contains("preprocessor_config.json"),
        "{msg}"
    );
    assert!(!out.exists() && !st.exists());
}
