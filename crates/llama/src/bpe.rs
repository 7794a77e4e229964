//! A `tokenizer.json` BPE vocabulary as llama.cpp's `gpt2` tokenizer model:
//! tokens in id order (gaps padded), token types from the added tokens, the
//! merges, and the pre-tokenizer name `convert_hf_to_gguf.py` picks, found
//! the same way: the SHA-256 of the token ids HF's tokenizer gives a fixed
//! check text, looked up in llama.cpp's table (`data/bpe_pre.json`).

use crate::config::read_limited;
use modelconv_ir::{Error, Result};
use sha2::Digest;
use std::collections::HashMap;
use std::path::Path;
use tokenizers::Tokenizer;

/// Largest tokenizer.json read.
pub const MAX_TOKENIZER: u64 = 256 << 20;

const TABLE: &str = include_str!("../data/bpe_pre.json");

/// GGUF token types.
pub const NORMAL: i32 = 1;
pub const CONTROL: i32 = 3;
pub const USER_DEFINED: i32 = 4;
pub const UNUSED: i32 = 5;

pub struct Bpe {
    pub tokens: Vec<String>,
    pub types: Vec<i32>,
    pub pre: String,
}

/// Loads `tokenizer.json` with HF's tokenizer, as transformers' encode()
/// uses it: without the truncation and padding the file may carry
/// (sentence-transformers exports: max_length 128, fixed padding), which
/// transformers turns off unless a call asks for them.
pub fn load(path: &Path) -> Result<Tokenizer> {
    let bytes = read_limited(path, MAX_TOKENIZER)?;
    let mut tok = Tokenizer::from_bytes(&bytes).map_err(|e| Error::malformed(path, format!("tokenizer.json: {e}")))?;
    tok.with_truncation(None)
        .map_err(|e| Error::malformed(path, format!("tokenizer.json truncation: {e}")))?;
    tok.with_padding(None);
    Ok(tok)
}

/// The `tokenizer.ggml.pre` name of `tok`: by the check-text hash, the
/// last entry of the table with that hash winning (two hashes appear twice
/// in the converter's if-chain, whose last match stands); or `named`, the
/// user's choice (`--vocab-pre`), which must be a name the table has.
pub fn pre_name(path: &Path, tok: &Tokenizer, named: Option<&str>) -> Result<String> {
    let table: serde_json::Value =
        serde_json::from_str(TABLE).map_err(|e| Error::invalid(format!("built-in BPE table: {e}")))?;
    let entries = table["hashes"].as_array().map(Vec::as_slice).unwrap_or_default();
    let names = || entries.iter().filter_map(|e| e[1].as_str());
    if let Some(want) = named {
        if names().any(|n| n == want) {
            return Ok(want.to_string());
        }
        let mut known: Vec<&str> = names().collect();
        known.sort_unstable();
        known.dedup();
        return Err(Error::invalid(format!(
            "--vocab-pre {want}: not a pre-tokenizer name llama.cpp's converter knows (known: {})",
            known.join(", ")
        )));
    }
    let chktxt = table["chktxt"].as_str().unwrap_or_default();
    let enc = tok
        .encode(chktxt, true)
        .map_err(|e| Error::malformed(path, format!("tokenizing the check text: {e}")))?;
    // Python's str() of a list of ints.
    let ids: Vec<String> = enc.get_ids().iter().map(u32::to_string).collect();
    let digest = sha2::Sha256::digest(format!("[{}]", ids.join(", ")).as_bytes());
    let hash: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    let name = entries
        .iter()
        .filter(|e| e[0].as_str() == Some(hash.as_str()))
        .filter_map(|e| e[1].as_str())
        .next_back();
    name.map(str::to_string).ok_or_else(|| {
        Error::unsupported(format!(
            "{}: this BPE pre-tokenizer is not one llama.cpp knows (check hash {hash}); convert_hf_to_gguf.py \
             refuses it too; if you know which it is, name it with --vocab-pre NAME",
            path.display()
        ))
    })
}

/// Whether an added token looks special though not marked so.
pub fn looks_special(t: &str) -> bool {
    matches!(t, "<pad>" | "<mask>" | "<2mass>" | "[@BOS@]")
        || (t.starts_with("<|") && t.ends_with("|>"))
        || (t.starts_with("<\u{ff5c}") && t.ends_with("\u{ff5c}>"))
        || (t.starts_with("<unused") && t.ends_with('>'))
}

/// Tokens and types for ids `0..vocab_size` (`get_vocab_base`).
pub fn vocab(path: &Path, tok: &Tokenizer, vocab_size: Option<u64>, pre: String) -> Result<Bpe> {
    let vocab: HashMap<String, u32> = tok.get_vocab(true);
    let max_id = vocab.values().copied().max().unwrap_or(0);
    let n = vocab_size.unwrap_or(vocab.len() as u64);
    if u64::from(max_id) >= n {
        return Err(Error::malformed(
            path,
            format!("token id {max_id} is not below the vocabulary size {n}"),
        ));
    }
    let n = usize::try_from(n)
        .ok()
        .filter(|&n| n <= vocab.len().saturating_add(1 << 20))
        .ok_or_else(|| Error::limit(path, format!("vocab_size {n} is far beyond the {} tokens", vocab.len())))?;
    let mut reverse: Vec<Option<&str>> = vec![None; n];
    // Two strings for one id (a malformed file): the same one every run.
    let mut entries: Vec<(&String, &u32)> = vocab.iter().collect();
    entries.sort();
    for (t, &id) in entries {
        reverse[id as usize] = Some(t);
    }
    let added = tok.get_added_tokens_decoder();
    let mut tokens = Vec::with_capacity(n);
    let mut types = Vec::with_capacity(n);
    for (i, t) in reverse.iter().enumerate() {
        let Some(t) = t else {
            tokens.push(format!("[PAD{i}]"));
            types.push(UNUSED);
            continue;
        };
        let mut token = t.to_string();
        match added.get(&(i as u32)).filter(|a| a.content == *t) {
            Some(a) => {
                if !a.normalized {
                    // Pre-normalized as llama.cpp expects: encoded and decoded back.
                    let enc = tok
                        .encode(token.as_str(), false)
                        .map_err(|e| Error::malformed(path, format!("token {i}: {e}")))?;
                    token = tok
                        .decode(enc.get_ids(), false)
                        .map_err(|e| Error::malformed(path, format!("token {i}: {e}")))?;
                }
                if a.special || looks_special(&token) {
                    types.push(CONTROL);
                } else {
                    token = token.replace('\u{2581}', " ");
                    types.push(USER_DEFINED);
                }
            }
            None => types.push(NORMAL),
        }
        tokens.push(token);
    }
    Ok(Bpe { tokens, types, pre })
}
