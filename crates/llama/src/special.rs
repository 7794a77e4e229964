//! Special tokens, add-token flags, merges and chat template, found the way
//! gguf-py's `SpecialVocab` finds them: `tokenizer.json` (added tokens,
//! post-processor template, merges, normalizer), `tokenizer_config.json`
//! (`*_token`, `add_*_token`, `chat_template`), `chat_template.jinja` /
//! `chat_template.json`, then `config.json`'s `*_token_id`.

use crate::config::{read_json, read_limited, MAX_JSON};
use modelconv_ir::{Array, Error, Metadata, Result, Strings, Value};
use serde_json::{Map, Value as Json};
use std::path::Path;

/// The token kinds looked up unless a caller names others.
pub const DEFAULT_TYPES: &[&str] = &["bos", "eos", "unk", "sep", "pad", "cls", "mask"];

/// A chat template: one, or named ones (`default` among them).
#[derive(Debug, Clone, PartialEq)]
pub enum ChatTemplate {
    One(String),
    Named(Vec<(String, String)>),
}

#[derive(Debug, Default)]
pub struct SpecialVocab {
    pub types: Vec<String>,
    pub merges: Vec<String>,
    /// Kind → id, in the order found.
    pub ids: Vec<(String, u32)>,
    /// Kind → add it when tokenizing, in the order found.
    pub add: Vec<(String, bool)>,
    pub chat_template: Option<ChatTemplate>,
    pub lowercase: Option<bool>,
    pub strip_accents: Option<bool>,
    n_vocab: Option<usize>,
}

fn s(v: Option<&Json>) -> Option<String> {
    v.and_then(Json::as_str).filter(|s| !s.is_empty()).map(str::to_string)
}

impl SpecialVocab {
    pub fn load(dir: &Path, load_merges: bool, types: &[&str], n_vocab: Option<usize>) -> Result<Self> {
        let mut sv = SpecialVocab {
            types: types.iter().map(|t| t.to_string()).collect(),
            n_vocab,
            ..Default::default()
        };
        sv.read_tokenizer_json(dir, load_merges)?;
        sv.read_config_json(dir)?;
        if load_merges && sv.merges.is_empty() {
            sv.merges_txt(dir)?;
        }
        Ok(sv)
    }

    fn set_add(&mut self, typ: &str, v: bool, overwrite: bool) {
        match self.add.iter_mut().find(|(t, _)| t == typ) {
            Some(slot) if overwrite => slot.1 = v,
            Some(_) => {}
            None => self.add.push((typ.to_string(), v)),
        }
    }

    /// `_set_special_token`: `typ`'s id unless one was found already (or
    /// the id is past the vocabulary).
    pub fn set_id(&mut self, typ: &str, id: Option<&Json>) -> Result<()> {
        let Some(id) = id else { return Ok(()) };
        // Python's isinstance(tid, int) also takes booleans; JSON ids are plain numbers.
        let Some(n) = id.as_i64() else { return Ok(()) };
        if n < 0 {
            return Err(Error::invalid(format!(
                "invalid value for special token type {typ}: {n}"
            )));
        }
        let in_range = self.n_vocab.is_none_or(|v| (n as u64) < v as u64);
        if in_range && !self.ids.iter().any(|(t, _)| t == typ) {
            let id = u32::try_from(n).map_err(|_| Error::invalid(format!("special token {typ} id {n} too large")))?;
            self.ids.push((typ.to_string(), id));
        }
        Ok(())
    }

    fn normalizer(&mut self, n: &Json) {
        match n.get("type").and_then(Json::as_str) {
            Some("Lowercase") => self.lowercase = Some(true),
            Some("StripAccents") => self.strip_accents = Some(true),
            Some("BertNormalizer") => {
                if let Some(v) = n.get("lowercase") {
                    self.lowercase = v.as_bool().or(self.lowercase);
                }
                if let Some(v) = n.get("strip_accents") {
                    self.strip_accents = v.as_bool();
                }
            }
            Some("Sequence") => {
                for m in n.get("normalizers").and_then(Json::as_array).into_iter().flatten() {
                    self.normalizer(m);
                }
            }
            _ => {}
        }
    }

    fn merges_from(&mut self, merges: &Json) -> Result<()> {
        let Some(list) = merges.as_array().filter(|l| !l.is_empty()) else {
            return Ok(());
        };
        if list[0].is_string() {
            self.merges = list.iter().filter_map(|m| m.as_str().map(str::to_string)).collect();
        } else if list[0].as_array().is_some_and(|p| p.len() == 2 && p[0].is_string()) {
            // [a, b] pairs (transformers ≥ 4.45): spaces inside written as U+0120.
            let enc = |s: &str| {
                s.chars()
                    .map(|c| if c == ' ' { '\u{120}' } else { c })
                    .collect::<String>()
            };
            self.merges = list
                .iter()
                .filter_map(|p| {
                    let p = p.as_array()?;
                    Some(
                        p.iter()
                            .filter_map(|x| x.as_str().map(enc))
                            .collect::<Vec<_>>()
                            .join(" "),
                    )
                })
                .collect();
        } else {
            return Err(Error::invalid("tokenizer.json: unknown merges format"));
        }
        Ok(())
    }

    fn read_tokenizer_json(&mut self, dir: &Path, load_merges: bool) -> Result<()> {
        let tokenizer = read_json(&dir.join("tokenizer.json"))?;
        let mut added: Vec<Json> = Vec::new();
        if let Some(tok) = &tokenizer {
            if load_merges {
                if let Some(m) = tok.get("model").and_then(|m| m.get("merges")) {
                    self.merges_from(m)?;
                }
            }
            if let Some(n) = tok.get("normalizer").filter(|n| !n.is_null()) {
                self.normalizer(n);
            }
            added = tok
                .get("added_tokens")
                .and_then(Json::as_array)
                .cloned()
                .unwrap_or_default();
        }
        let mut config: Option<Map<String, Json>> = match read_json(&dir.join("tokenizer_config.json"))? {
            Some(Json::Object(m)) => Some(m),
            _ => None,
        };
        // Python treats an empty dict as "no config".
        if config.as_ref().is_some_and(|c| c.is_empty()) {
            config = None;
        }
        if let Some(tok) = &tokenizer {
            self.post_processor(tok, &mut config);
        }
        let Some(config) = config else { return Ok(()) };
        self.chat_template = chat_template(dir, &config)?;
        for typ in self.types.clone() {
            if let Some(Json::Bool(b)) = config.get(&format!("add_{typ}_token")) {
                self.set_add(&typ, *b, false);
            }
            let content = match config.get(&format!("{typ}_token")) {
                Some(Json::String(s)) => s.clone(),
                Some(Json::Object(o)) => match o.get("content") {
                    Some(Json::String(s)) => s.clone(),
                    _ => continue,
                },
                _ => continue,
            };
            let id = added
                .iter()
                .find(|a| a.get("content").and_then(Json::as_str) == Some(content.as_str()))
                .and_then(|a| a.get("id"))
                .cloned();
            self.set_id(&typ, id.as_ref())?;
        }
        Ok(())
    }

    /// What the tokenizer's post-processor says about added special tokens.
    fn post_processor(&mut self, tok: &Json, config: &mut Option<Map<String, Json>>) {
        let get = |c: &Option<Map<String, Json>>, k: &str| c.as_ref().and_then(|c| s(c.get(k)));
        let mut bos = get(config, "bos_token");
        let mut cls = get(config, "cls_token");
        let mut eos = get(config, "eos_token");
        let mut sep = get(config, "sep_token");
        let set = |c: &mut Option<Map<String, Json>>, k: &str, v: &Option<String>| {
            if let (Some(c), Some(v)) = (c.as_mut(), v) {
                c.insert(k.to_string(), Json::String(v.clone()));
            }
        };
        if bos.is_none() && cls.is_some() && config.is_some() {
            bos = cls.clone();
            set(config, "bos_token", &bos);
        }
        if eos.is_none() && sep.is_some() && config.is_some() {
            eos = sep.clone();
            set(config, "eos_token", &eos);
        }
        let Some(pp) = tok.get("post_processor").filter(|p| !p.is_null()) else {
            return;
        };
        let procs: Vec<&Json> = match pp.get("processors").and_then(Json::as_array) {
            Some(list) => list.iter().collect(),
            None => vec![pp],
        };
        let special_id = |x: &Json| s(x.get("SpecialToken").and_then(|t| t.get("id")));
        for p in procs {
            match p.get("type").and_then(Json::as_str) {
                Some("ByteLevel") => {
                    self.set_add("bos", false, false);
                    self.set_add("eos", false, false);
                }
                Some("RobertaProcessing") => {
                    for t in ["bos", "eos", "sep"] {
                        self.set_add(t, true, true);
                    }
                    if cls.is_none() && config.is_some() {
                        cls = p.get("cls").and_then(|c| s(c.get(0))).or(bos.clone());
                        set(config, "cls_token", &cls);
                    }
                    if sep.is_none() && config.is_some() {
                        sep = p.get("sep").and_then(|c| s(c.get(0))).or(eos.clone());
                        set(config, "sep_token", &sep);
                    }
                }
                Some("TemplateProcessing") => {
                    let single: Vec<Json> = p.get("single").and_then(Json::as_array).cloned().unwrap_or_default();
                    let pair: Vec<Json> = p.get("pair").and_then(Json::as_array).cloned().unwrap_or_default();
                    let mut first = None;
                    let mut last = None;
                    if single.len() > 1 {
                        first = special_id(&single[0]);
                        if let Some(f) = &first {
                            if config.is_none() {
                                bos = Some(f.clone());
                            } else if Some(f) != bos.as_ref() && Some(f) != cls.as_ref() {
                                if bos.is_none() {
                                    bos = Some(f.clone());
                                    set(config, "bos_token", &bos);
                                }
                                if cls.is_none() {
                                    cls = Some(f.clone());
                                    set(config, "cls_token", &cls);
                                }
                            }
                            let hit = Some(f) == bos.as_ref() || Some(f) == cls.as_ref();
                            self.set_add("bos", hit, true);
                        }
                        last = special_id(&single[single.len() - 1]);
                        if let Some(l) = &last {
                            if config.is_none() {
                                eos = Some(l.clone());
                            } else if Some(l) != eos.as_ref() {
                                if !self.types.iter().any(|t| t == "eot") {
                                    self.types.push("eot".into());
                                    set(config, "eot_token", &eos);
                                } else if !self.types.iter().any(|t| t == "eom") {
                                    self.types.push("eom".into());
                                    set(config, "eom_token", &eos);
                                }
                                eos = Some(l.clone());
                                set(config, "eos_token", &eos);
                            }
                            let hit = Some(l) == eos.as_ref();
                            self.set_add("eos", hit, true);
                        }
                    }
                    if !pair.is_empty() {
                        let start = usize::from(first.is_some() && special_id(&pair[0]) == first);
                        let stop_cut = last.is_some() && special_id(&pair[pair.len() - 1]) == last;
                        let end = if stop_cut { pair.len() - 1 } else { pair.len() };
                        let mid = if start < end { &pair[start..end] } else { &pair[0..0] };
                        if !mid.is_empty() {
                            let seq = |x: &Json| s(x.get("Sequence").and_then(|t| t.get("id")));
                            let a = seq(&mid[0]);
                            let b = seq(&mid[mid.len() - 1]);
                            if a.as_deref() == Some("A") && b.as_deref() == Some("B") && mid.len() > 2 {
                                let inner = &mid[1..mid.len() - 1];
                                let mut add_sep = false;
                                if let Some(e) = special_id(&inner[0]) {
                                    if (Some(&e) == sep.as_ref() || Some(&e) == eos.as_ref()) && last.is_none() {
                                        add_sep = true;
                                    }
                                }
                                if inner.len() == 2 {
                                    if let Some(e) = special_id(&inner[1]) {
                                        if Some(&e) == sep.as_ref() || Some(&e) == eos.as_ref() {
                                            add_sep = true;
                                        }
                                    }
                                }
                                self.set_add("sep", add_sep, true);
                                if add_sep && sep.is_none() && config.is_some() {
                                    set(config, "sep_token", &eos);
                                }
                            }
                        }
                    }
                }
                _ => {}
            }
        }
    }

    fn read_config_json(&mut self, dir: &Path) -> Result<()> {
        let Some(config) = read_json(&dir.join("config.json"))? else {
            return Ok(());
        };
        for typ in self.types.clone() {
            let key = format!("{typ}_token_id");
            let id = config
                .get(&key)
                .filter(|v| !v.is_null())
                .or_else(|| config.get("text_config").and_then(|t| t.get(&key)))
                .cloned();
            self.set_id(&typ, id.as_ref())?;
        }
        Ok(())
    }

    fn merges_txt(&mut self, dir: &Path) -> Result<()> {
        let path = dir.join("merges.txt");
        if !path.is_file() {
            return Ok(());
        }
        let bytes = read_limited(&path, MAX_JSON)?;
        let text = String::from_utf8(bytes).map_err(|_| Error::malformed(&path, "not UTF-8"))?;
        let mut lines = text.lines().peekable();
        if lines.peek().is_some_and(|l| l.trim().starts_with('#')) {
            lines.next();
        }
        self.merges = lines
            .filter_map(|l| {
                let parts: Vec<&str> = l.split_whitespace().collect();
                (parts.len() == 2).then(|| format!("{} {}", parts[0], parts[1]))
            })
            .collect();
        Ok(())
    }

    /// Writes what was found, in gguf-py's order and spelling.
    pub fn add_to(&self, md: &mut Metadata) {
        if !self.merges.is_empty() {
            md.set(
                "tokenizer.ggml.merges",
                Value::Array(Array::String(self.merges.iter().collect::<Strings>())),
            );
        }
        for (typ, id) in &self.ids {
            let key = match typ.as_str() {
                "bos" => "bos_token_id",
                "eos" => "eos_token_id",
                "unk" => "unknown_token_id",
                "sep" => "seperator_token_id",
                "pad" => "padding_token_id",
                "mask" => "mask_token_id",
                "eot" => "eot_token_id",
                "eom" => "eom_token_id",
                _ => continue, // no GGUF key (cls, …)
            };
            md.set(format!("tokenizer.ggml.{key}"), Value::U32(*id));
        }
        for (typ, v) in &self.add {
            if matches!(typ.as_str(), "bos" | "eos" | "sep") {
                md.set(format!("tokenizer.ggml.add_{typ}_token"), Value::Bool(*v));
            }
        }
        match &self.chat_template {
            // gguf-py's add_string writes nothing for an empty template.
            Some(ChatTemplate::One(t)) if t.is_empty() => {}
            Some(ChatTemplate::One(t)) => md.set("tokenizer.chat_template", Value::String(t.clone())),
            Some(ChatTemplate::Named(list)) => {
                let mut names = Vec::new();
                let mut default = None;
                for (name, t) in list {
                    let name: String = name
                        .chars()
                        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
                        .collect();
                    if name == "default" {
                        default = Some(t.clone());
                    } else if !name.is_empty() {
                        if !t.is_empty() {
                            md.set(format!("tokenizer.chat_template.{name}"), Value::String(t.clone()));
                        }
                        if !names.contains(&name) {
                            names.push(name);
                        }
                    }
                }
                if !names.is_empty() {
                    md.set(
                        "tokenizer.chat_templates",
                        Value::Array(Array::String(names.iter().collect())),
                    );
                }
                if let Some(t) = default.filter(|t| !t.is_empty()) {
                    md.set("tokenizer.chat_template", Value::String(t));
                }
            }
            None => {}
        }
        if let Some(v) = self.lowercase {
            md.set("tokenizer.ggml.normalizer.lowercase", Value::Bool(v));
        }
        if let Some(v) = self.strip_accents {
            md.set("tokenizer.ggml.normalizer.strip_accents", Value::Bool(v));
        }
    }
}

fn template_list(v: &Json) -> Option<ChatTemplate> {
    match v {
        Json::String(s) => Some(ChatTemplate::One(s.clone())),
        Json::Array(items) => Some(ChatTemplate::Named(
            items
                .iter()
                .filter_map(|c| {
                    let t = c.get("template")?.as_str()?;
                    let n = c.get("name").and_then(Json::as_str).unwrap_or("");
                    Some((n.to_string(), t.to_string()))
                })
                .collect(),
        )),
        _ => None,
    }
}

/// `chat_template` of the tokenizer config, else `chat_template.jinja`
/// (with `additional_chat_templates/*.jinja`), else `chat_template.json`.
fn chat_template(dir: &Path, config: &Map<String, Json>) -> Result<Option<ChatTemplate>> {
    let jinja = dir.join("chat_template.jinja");
    let mut alt = None;
    if jinja.is_file() {
        let text =
            String::from_utf8(read_limited(&jinja, MAX_JSON)?).map_err(|_| Error::malformed(&jinja, "not UTF-8"))?;
        let extra_dir = dir.join("additional_chat_templates");
        let mut extra: Vec<std::path::PathBuf> = std::fs::read_dir(&extra_dir)
            .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
            .unwrap_or_default();
        extra.retain(|p| p.extension().is_some_and(|e| e == "jinja"));
        extra.sort();
        if extra.is_empty() {
            alt = Some(ChatTemplate::One(text));
        } else {
            let mut list = vec![("default".to_string(), text)];
            for p in extra {
                let t =
                    String::from_utf8(read_limited(&p, MAX_JSON)?).map_err(|_| Error::malformed(&p, "not UTF-8"))?;
                let stem = p
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_default();
                list.push((stem, t));
            }
            alt = Some(ChatTemplate::Named(list));
        }
    } else if let Some(j) = read_json(&dir.join("chat_template.json"))? {
        alt = j.get("chat_template").and_then(template_list);
    }
    Ok(match config.get("chat_template") {
        Some(v) => template_list(v),
        None => alt,
    })
}
