//! `tokenizer.ggml.*` back to Hugging Face tokenizer files: a `llama`
//! (SentencePiece) vocabulary as a `tokenizer.model` protobuf, which
//! transformers and sentencepiece both read; a `gpt2` (byte-level BPE) one
//! as a `tokenizer.json` with the pre-tokenizer llama.cpp's name stands
//! for; and tokenizer_config.json with the special tokens, the BOS/EOS
//! flags and the chat template.

use crate::export::{pretty, Hparams, SideFiles};
// GGUF token types are sentencepiece's piece types.
use crate::spm::{BYTE, CONTROL, UNKNOWN, USER_DEFINED};
use modelconv_ir::{Array, Error, Result, Value};
use serde_json::{json, Map, Value as Json};
use std::path::Path;

/// GPT-2's byte-level split, which `pre_tokenizers.ByteLevel(use_regex)`
/// applies itself: the names llama-vocab.cpp reads as
/// LLAMA_VOCAB_PRE_TYPE_GPT2, and OLMo's.
const BYTE_LEVEL: &[&str] = &[
    "gpt-2",
    "gpt2",
    "olmo",
    "phi-2",
    "jina-es",
    "jina-de",
    "gigachat",
    "jina-v2-es",
    "jina-v2-de",
    "a.x-4.0",
    "mellum",
    "modern-bert",
];
/// llama.cpp's LLAMA3 pre-tokenizer regex (llama-vocab.cpp), which
/// Llama 3's tokenizer.json splits with.
const LLAMA3_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// llama.cpp's QWEN2 pre-tokenizer regex.
const QWEN2_SPLIT: &str =
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// The tokenizer files and tokenizer_config.json of `h`'s vocabulary.
pub fn tokenizer_files(h: &Hparams, path: &Path) -> Result<SideFiles> {
    let v = Vocab::read(h, path)?;
    let mut files = match v.model.as_str() {
        "llama" => vec![("tokenizer.model".to_string(), sentencepiece_model(&v, h))],
        "gpt2" => vec![("tokenizer.json".to_string(), pretty(&bpe_json(&v, h, path)?)?)],
        "bert" => vec![("tokenizer.json".to_string(), pretty(&wordpiece_json(&v, h))?)],
        "t5" => vec![("tokenizer.json".to_string(), pretty(&unigram_json(&v, h))?)],
        other => {
            return Err(Error::unsupported(format!(
                "{}: tokenizer.ggml.model '{other}' is not written back to Hugging Face files by this build \
                 (llama, gpt2, bert and t5 are)",
                path.display()
            )))
        }
    };
    files.push(("tokenizer_config.json".to_string(), pretty(&tokenizer_config(&v, h))?));
    Ok(files)
}

struct Vocab {
    model: String,
    tokens: Vec<String>,
    scores: Vec<f32>,
    types: Vec<i32>,
}

impl Vocab {
    fn read(h: &Hparams, path: &Path) -> Result<Vocab> {
        let model = h
            .md
            .get("tokenizer.ggml.model")
            .and_then(Value::as_str)
            .ok_or_else(|| Error::malformed(path, "no tokenizer.ggml.model: a Hugging Face folder needs a tokenizer"))?
            .to_string();
        let tokens: Vec<String> = h
            .strings("tokenizer.ggml.tokens")
            .ok_or_else(|| Error::malformed(path, "no tokenizer.ggml.tokens"))?
            .iter()
            .map(str::to_string)
            .collect();
        let scores = match h.md.get("tokenizer.ggml.scores") {
            Some(Value::Array(Array::F32(s))) => s.clone(),
            _ => vec![0.0; tokens.len()],
        };
        let types = match h.md.get("tokenizer.ggml.token_type") {
            Some(Value::Array(Array::I32(t))) => t.clone(),
            _ => vec![1; tokens.len()],
        };
        if scores.len() != tokens.len() || types.len() != tokens.len() {
            return Err(Error::malformed(
                path,
                format!(
                    "{} tokens but {} scores and {} token types",
                    tokens.len(),
                    scores.len(),
                    types.len()
                ),
            ));
        }
        Ok(Vocab {
            model,
            tokens,
            scores,
            types,
        })
    }

    fn special(&self, h: &Hparams, which: &str) -> Option<&str> {
        let id = usize::try_from(h.token_id(which)?).ok()?;
        self.tokens.get(id).map(String::as_str)
    }
}

/// A protobuf writer for the few message shapes sentencepiece_model.proto
/// needs: varints, length-delimited fields, fixed32 floats.
#[derive(Default)]
struct Proto(Vec<u8>);

impl Proto {
    fn varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.0.push((v as u8) | 0x80);
            v >>= 7;
        }
        self.0.push(v as u8);
    }
    fn key(&mut self, field: u64, wire: u64) {
        self.varint(field << 3 | wire);
    }
    fn int(&mut self, field: u64, v: i64) {
        self.key(field, 0);
        // int32 fields: negative values as ten-byte two's complement.
        self.varint(v as u64);
    }
    fn bytes(&mut self, field: u64, b: &[u8]) {
        self.key(field, 2);
        self.varint(b.len() as u64);
        self.0.extend_from_slice(b);
    }
    fn float(&mut self, field: u64, f: f32) {
        self.key(field, 5);
        self.0.extend_from_slice(&f.to_le_bytes());
    }
}

/// `ModelProto`: the pieces (piece = 1, score = 2, type = 3), a
/// `TrainerSpec` (model_type = 3: BPE, which is how llama.cpp's SPM
/// tokenizer merges; vocab_size = 4; byte_fallback = 35 when there are
/// byte pieces; unk/bos/eos/pad ids = 40…43) and a `NormalizerSpec`
/// (name = 1 "identity", add_dummy_prefix = 3 from add_space_prefix,
/// remove_extra_whitespaces = 4 false, escape_whitespaces = 5 true).
fn sentencepiece_model(v: &Vocab, h: &Hparams) -> Vec<u8> {
    let mut m = Proto::default();
    for ((t, s), ty) in v.tokens.iter().zip(&v.scores).zip(&v.types) {
        let mut p = Proto::default();
        p.bytes(1, t.as_bytes());
        p.float(2, *s);
        p.int(3, i64::from(*ty));
        m.bytes(1, &p.0);
    }
    let id = |which: &str, default: i64| h.token_id(which).map_or(default, |i| i as i64);
    let mut trainer = Proto::default();
    trainer.int(3, 2);
    trainer.int(4, v.tokens.len() as i64);
    if v.types.contains(&BYTE) {
        trainer.int(35, 1);
    }
    let unk = v.types.iter().position(|&t| t == UNKNOWN).map_or(0, |i| i as i64);
    trainer.int(40, id("unknown", unk));
    trainer.int(41, id("bos", -1));
    trainer.int(42, id("eos", -1));
    trainer.int(43, id("padding", -1));
    m.bytes(2, &trainer.0);
    let mut norm = Proto::default();
    norm.bytes(1, b"identity");
    norm.int(3, i64::from(h.flag("tokenizer.ggml.add_space_prefix").unwrap_or(true)));
    norm.int(4, 0);
    norm.int(5, 1);
    m.bytes(3, &norm.0);
    m.0
}

/// GPT-2's byte ↔ printable character table (`bytes_to_unicode`).
fn byte_chars() -> [char; 256] {
    let mut table = ['\0'; 256];
    let mut next = 256u32;
    for b in 0..=255u8 {
        let printable = matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF);
        table[b as usize] = if printable {
            char::from(b)
        } else {
            let c = char::from_u32(next).unwrap_or('\0');
            next += 1;
            c
        };
    }
    table
}

/// The pre-tokenizer of llama.cpp's pre name: its split regex, then the
/// byte-level mapping.
fn pre_tokenizer(pre: &str, path: &Path) -> Result<Json> {
    let split = match pre {
        p if BYTE_LEVEL.contains(&p) => {
            return Ok(json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true}))
        }
        "llama-bpe" | "llama3" | "llama-v3" | "smaug-bpe" | "dbrx" => LLAMA3_SPLIT,
        "qwen2" | "deepseek-r1-qwen" | "megrez" => QWEN2_SPLIT,
        other => {
            return Err(Error::unsupported(format!(
                "{}: pre-tokenizer '{other}' is not written back by this build (gpt-2, olmo, llama-bpe and qwen2 are)",
                path.display()
            )))
        }
    };
    Ok(json!({"type": "Sequence", "pretokenizers": [
        {"type": "Split", "pattern": {"Regex": split}, "behavior": "Isolated", "invert": false},
        {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": false},
    ]}))
}

/// A byte-level BPE `tokenizer.json`: every token in the vocabulary (an
/// added token as its text, as tokenizers stores added tokens' pieces; any
/// other outside the byte alphabet spelled in it), the merges, control tokens as special added tokens and
/// user-defined ones as plain added tokens, BOS prepended when
/// `add_bos_token`.
fn bpe_json(v: &Vocab, h: &Hparams, path: &Path) -> Result<Json> {
    let chars = byte_chars();
    let alphabet: std::collections::HashSet<char> = chars.iter().copied().collect();
    let mut vocab = Map::new();
    let mut added = Vec::new();
    for (i, (t, ty)) in v.tokens.iter().zip(&v.types).enumerate() {
        // An added token's piece is its text (GPT-NeoX's runs of spaces
        // would collide with the byte-level "ĠĠ" of ordinary tokens).
        let is_added = *ty == CONTROL || *ty == USER_DEFINED;
        let piece: String = if is_added || t.chars().all(|c| alphabet.contains(&c)) {
            t.clone()
        } else {
            t.bytes().map(|b| chars[b as usize]).collect()
        };
        vocab.insert(piece, json!(i));
        if is_added {
            added.push(
                json!({"id": i, "content": t, "single_word": false, "lstrip": false, "rstrip": false,
                "normalized": false, "special": *ty == CONTROL}),
            );
        }
    }
    let merges: Vec<Json> = h
        .strings("tokenizer.ggml.merges")
        .ok_or_else(|| Error::malformed(path, "a gpt2 vocabulary with no tokenizer.ggml.merges"))?
        .iter()
        .map(|m| json!(m.split_once(' ').map_or([m, ""], |(a, b)| [a, b])))
        .collect();
    let pre =
        h.md.get("tokenizer.ggml.pre")
            .and_then(Value::as_str)
            .unwrap_or("gpt-2");
    let ignore_merges = matches!(pre, "llama-bpe" | "llama3" | "llama-v3");
    let byte_level = json!({"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": false, "use_regex": true});
    let post = special_template(v, h).unwrap_or_else(|| byte_level.clone());
    Ok(json!({
        "version": "1.0", "truncation": null, "padding": null,
        "added_tokens": added,
        "normalizer": null,
        "pre_tokenizer": pre_tokenizer(pre, path)?,
        "post_processor": post,
        "decoder": byte_level,
        "model": {"type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null,
            "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": false, "ignore_merges": ignore_merges,
            "vocab": vocab, "merges": merges},
    }))
}

/// tokenizer_config.json: the class, the special tokens by text, the
/// BOS/EOS flags and the chat template.
fn tokenizer_config(v: &Vocab, h: &Hparams) -> Json {
    let mut c = Map::new();
    let class = match v.model.as_str() {
        "llama" => "LlamaTokenizer",
        "bert" => "BertTokenizer",
        "t5" => "XLMRobertaTokenizer",
        _ => "PreTrainedTokenizerFast",
    };
    c.insert("tokenizer_class".into(), json!(class));
    if v.model == "bert" || v.model == "t5" {
        bert_tokens(v, h, &mut c);
        return Json::Object(c);
    }
    // LlamaTokenizer prepends "▁" unless told not to (Gemma's vocabulary
    // has no space prefix); it does not read tokenizer.model's flag.
    if v.model == "llama" && h.flag("tokenizer.ggml.add_space_prefix") == Some(false) {
        c.insert("add_prefix_space".into(), json!(false));
    }
    for (key, which) in [
        ("bos_token", "bos"),
        ("eos_token", "eos"),
        ("unk_token", "unknown"),
        ("pad_token", "padding"),
    ] {
        if let Some(t) = v.special(h, which) {
            c.insert(key.into(), json!(t));
        }
    }
    // Absent, llama.cpp adds BOS to a SentencePiece vocabulary's text
    // (llama-vocab.cpp's default for LLAMA_VOCAB_TYPE_SPM): say so.
    let bos = h
        .flag("tokenizer.ggml.add_bos_token")
        .or((v.model == "llama").then_some(true));
    let eos = h.flag("tokenizer.ggml.add_eos_token");
    for (key, b) in [("add_bos_token", bos), ("add_eos_token", eos)] {
        if let Some(b) = b {
            c.insert(key.into(), json!(b));
        }
    }
    if let Some(t) = h.md.get("tokenizer.chat_template").and_then(Value::as_str) {
        c.insert("chat_template".into(), json!(t));
    }
    if let Ok(n) = h.uint("context_length") {
        c.insert("model_max_length".into(), json!(n));
    }
    Json::Object(c)
}

/// A WordPiece vocabulary's token text as BERT's vocab.txt has it: the
/// conversion marked word-initial tokens with a phantom space (U+2581)
/// and stripped `##` from continuations; control tokens are as they were.
fn wordpiece_token(t: &str, ty: i32) -> String {
    if ty == CONTROL {
        return t.to_string();
    }
    match t.strip_prefix('\u{2581}') {
        Some(word) => word.to_string(),
        None => format!("##{t}"),
    }
}

/// BERT's `tokenizer.json`: a WordPiece model over the vocabulary, the
/// BERT normalizer (lowercasing as `tokenizer.ggml.normalizer.lowercase`
/// says, llama.cpp's WPM tokenizer lowercasing by default) and
/// pre-tokenizer, `[CLS] A [SEP]` (`B [SEP]` for pairs) around the text,
/// control tokens as special added tokens.
fn wordpiece_json(v: &Vocab, h: &Hparams) -> Json {
    let mut vocab = Map::new();
    let mut added = Vec::new();
    for (i, (t, &ty)) in v.tokens.iter().zip(&v.types).enumerate() {
        let piece = wordpiece_token(t, ty);
        if ty == CONTROL {
            added.push(json!({"id": i, "content": piece, "single_word": false, "lstrip": false,
                "rstrip": false, "normalized": false, "special": true}));
        }
        vocab.insert(piece, json!(i));
    }
    let lower = h.flag("tokenizer.ggml.normalizer.lowercase").unwrap_or(true);
    let token = |which: &str, default: &str| v.special(h, which).unwrap_or(default).to_string();
    let (cls, sep, unk) = (
        token("bos", "[CLS]"),
        token("seperator", "[SEP]"),
        token("unknown", "[UNK]"),
    );
    let id = |which: &str| h.token_id(which).unwrap_or(0);
    let special = |s: &str, t: u64| json!({"SpecialToken": {"id": s, "type_id": t}});
    let seq = |s: &str, t: u64| json!({"Sequence": {"id": s, "type_id": t}});
    let mut specials = Map::new();
    specials.insert(cls.clone(), json!({"id": cls, "ids": [id("bos")], "tokens": [cls]}));
    specials.insert(
        sep.clone(),
        json!({"id": sep, "ids": [id("seperator")], "tokens": [sep]}),
    );
    json!({
        "version": "1.0", "truncation": null, "padding": null,
        "added_tokens": added,
        "normalizer": {"type": "BertNormalizer", "clean_text": true, "handle_chinese_chars": true,
            "strip_accents": null, "lowercase": lower},
        "pre_tokenizer": {"type": "BertPreTokenizer"},
        "post_processor": {"type": "TemplateProcessing",
            "single": [special(&cls, 0), seq("A", 0), special(&sep, 0)],
            "pair": [special(&cls, 0), seq("A", 0), special(&sep, 0), seq("B", 1), special(&sep, 1)],
            "special_tokens": specials},
        "decoder": {"type": "WordPiece", "prefix": "##", "cleanup": true},
        "model": {"type": "WordPiece", "unk_token": unk, "continuing_subword_prefix": "##",
            "max_input_chars_per_word": 100, "vocab": vocab},
    })
}

/// An encoder tokenizer's keys in tokenizer_config.json: its special
/// tokens by the GGUF's ids (BOS is the CLS), the lowercasing (BERT's),
/// the context.
fn bert_tokens(v: &Vocab, h: &Hparams, c: &mut Map<String, Json>) {
    if v.model == "t5" {
        for (key, which) in [("bos_token", "bos"), ("eos_token", "eos")] {
            if let Some(t) = v.special(h, which) {
                c.insert(key.into(), json!(t));
            }
        }
    }
    for (key, which) in [
        ("cls_token", "bos"),
        ("sep_token", "seperator"),
        ("unk_token", "unknown"),
        ("pad_token", "padding"),
        ("mask_token", "mask"),
    ] {
        if let Some(t) = v.special(h, which) {
            c.insert(key.into(), json!(t));
        }
    }
    if v.model == "bert" {
        let lower = h.flag("tokenizer.ggml.normalizer.lowercase").unwrap_or(true);
        c.insert("do_lower_case".into(), json!(lower));
    }
    if let Ok(n) = h.uint("context_length") {
        c.insert("model_max_length".into(), json!(n));
    }
}

/// The special tokens llama.cpp adds around a BPE or UGM text, as a
/// TemplateProcessing: BOS before when `add_bos_token`, EOS then SEP after
/// when `add_eos_token` / `add_sep_token` (llama-vocab.cpp's order); None
/// when it adds none.
fn special_template(v: &Vocab, h: &Hparams) -> Option<Json> {
    let wanted = |flag: &str, which: &str| -> Option<(String, u64)> {
        if h.flag(&format!("tokenizer.ggml.{flag}")) != Some(true) {
            return None;
        }
        Some((v.special(h, which)?.to_string(), h.token_id(which)?))
    };
    let front: Vec<(String, u64)> = wanted("add_bos_token", "bos").into_iter().collect();
    // llama-vocab.cpp's UGM tokenizer appends EOS only, its BPE one SEP too.
    let sep = if v.model == "t5" {
        None
    } else {
        wanted("add_sep_token", "seperator")
    };
    let back: Vec<(String, u64)> = [wanted("add_eos_token", "eos"), sep].into_iter().flatten().collect();
    if front.is_empty() && back.is_empty() {
        return None;
    }
    let piece = |t: &str| json!({"SpecialToken": {"id": t, "type_id": 0}});
    let seq = |s: &str| json!({"Sequence": {"id": s, "type_id": 0}});
    let one = |s: &str| -> Vec<Json> {
        let mut out: Vec<Json> = front.iter().map(|(t, _)| piece(t)).collect();
        out.push(seq(s));
        out.extend(back.iter().map(|(t, _)| piece(t)));
        out
    };
    let mut specials = Map::new();
    for (t, id) in front.iter().chain(&back) {
        specials.insert(t.clone(), json!({"id": t, "ids": [id], "tokens": [t]}));
    }
    let mut pair = one("A");
    pair.extend(one("B"));
    Some(json!({"type": "TemplateProcessing", "single": one("A"), "pair": pair, "special_tokens": specials}))
}

/// A `t5` (SentencePiece unigram, llama.cpp's UGM) vocabulary's
/// `tokenizer.json`: a Unigram model over the pieces and their scores,
/// the precompiled character map as the normalizer, whitespace runs split
/// away (`remove_extra_whitespaces`) and a Metaspace prefix
/// (`add_space_prefix`), the BOS/EOS llama.cpp adds around a text, control
/// and user-defined tokens as added tokens.
fn unigram_json(v: &Vocab, h: &Hparams) -> Json {
    let vocab: Vec<Json> = v.tokens.iter().zip(&v.scores).map(|(t, s)| json!([t, s])).collect();
    let added: Vec<Json> = v
        .tokens
        .iter()
        .zip(&v.types)
        .enumerate()
        .filter(|(_, (_, ty))| **ty == CONTROL || **ty == USER_DEFINED)
        .map(|(i, (t, ty))| {
            json!({"id": i, "content": t, "single_word": false, "lstrip": false, "rstrip": false,
            "normalized": false, "special": *ty == CONTROL})
        })
        .collect();
    let normalizer = match h.md.get("tokenizer.ggml.precompiled_charsmap") {
        Some(Value::Array(Array::U8(map))) if !map.is_empty() => {
            json!({"type": "Precompiled", "precompiled_charsmap": base64(map)})
        }
        _ => Json::Null,
    };
    let prepend = if h.flag("tokenizer.ggml.add_space_prefix") == Some(false) {
        "never"
    } else {
        "always"
    };
    let metaspace = json!({"type": "Metaspace", "replacement": "\u{2581}", "prepend_scheme": prepend, "split": true});
    let pre = if h.flag("tokenizer.ggml.remove_extra_whitespaces") == Some(false) {
        metaspace.clone()
    } else {
        json!({"type": "Sequence", "pretokenizers": [{"type": "WhitespaceSplit"}, metaspace]})
    };
    json!({
        "version": "1.0", "truncation": null, "padding": null,
        "added_tokens": added,
        "normalizer": normalizer,
        "pre_tokenizer": pre,
        "post_processor": special_template(v, h),
        "decoder": metaspace,
        "model": {"type": "Unigram", "unk_id": h.token_id("unknown"), "vocab": vocab, "byte_fallback": false},
    })
}

/// Standard base64 with padding (RFC 4648), as tokenizers stores the
/// precompiled character map.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &b)| n | u32::from(b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn base64_is_rfc_4648() {
        assert_eq!(super::base64(b""), "");
        assert_eq!(super::base64(b"f"), "Zg==");
        assert_eq!(super::base64(b"fo"), "Zm8=");
        assert_eq!(super::base64(b"foobar"), "Zm9vYmFy");
    }
}
