//! `general.*` metadata as gguf-py's `Metadata` heuristics make it for a
//! local folder: name, organization, basename, finetune, version and size
//! label from `config.json`'s `_name_or_path` (a hub id) or the folder's
//! name, a size label from the parameter count, sampling defaults from
//! `generation_config.json`, and the model card's front matter (`README.md`:
//! names, license, tags, languages, base models, datasets).

use crate::config::read_json;
use modelconv_ir::{Array, Metadata, Result, Value};
use regex::Regex;
use serde_json::Value as Json;
use std::path::Path;

#[derive(Debug, Default, Clone, PartialEq)]
pub struct General {
    pub name: Option<String>,
    pub author: Option<String>,
    pub organization: Option<String>,
    pub basename: Option<String>,
    pub finetune: Option<String>,
    pub version: Option<String>,
    pub description: Option<String>,
    pub size_label: Option<String>,
    pub license: Option<String>,
    pub license_name: Option<String>,
    pub license_link: Option<String>,
    pub source_url: Option<String>,
    pub source_doi: Option<String>,
    pub source_uuid: Option<String>,
    pub source_repo_url: Option<String>,
    /// Base models and datasets: field → value, in gguf-py's field order.
    pub base_models: Option<Vec<Vec<(String, String)>>>,
    pub datasets: Option<Vec<Vec<(String, String)>>>,
    pub tags: Option<Vec<String>>,
    pub languages: Option<Vec<String>>,
}

/// Python's str() of a card value.
fn text(v: &Json) -> String {
    match v {
        Json::String(s) => s.clone(),
        Json::Bool(b) => if *b { "True" } else { "False" }.to_string(),
        Json::Null => "None".into(),
        other => other.to_string(),
    }
}

const SOURCE_FIELDS: [&str; 9] = [
    "name",
    "author",
    "version",
    "organization",
    "description",
    "url",
    "doi",
    "uuid",
    "repo_url",
];

/// A base model or dataset entry of the card: a hub id, a URL, or a mapping.
fn source_entry(v: &Json, total_params: i64) -> Vec<(String, String)> {
    let mut e: Vec<(String, String)> = Vec::new();
    match v {
        Json::String(id) if id.starts_with("http://") || id.starts_with("https://") || id.starts_with("ssh://") => {
            e.push(("repo_url".into(), id.clone()));
            let hub = Regex::new(r"^https?://huggingface.co/([^/]+/[^/]+)$").ok();
            if let Some(c) = hub.and_then(|r| r.captures(id)) {
                let (name, org, g) = id_components(&c[1], total_params);
                e.push(("name".into(), id_to_title(&name)));
                if let Some(o) = org {
                    e.push(("organization".into(), id_to_title(&o)));
                }
                if let Some(v) = g.version {
                    e.push(("version".into(), v));
                }
            }
        }
        Json::String(id) => {
            let (name, org, g) = id_components(id, total_params);
            e.push(("name".into(), id_to_title(&name)));
            if let Some(o) = &org {
                e.push(("organization".into(), id_to_title(o)));
            }
            if let Some(v) = g.version {
                e.push(("version".into(), v));
            }
            if let Some(o) = org {
                e.push(("repo_url".into(), format!("https://huggingface.co/{o}/{name}")));
            }
        }
        Json::Object(m) => {
            for f in SOURCE_FIELDS {
                if let Some(v) = m.get(f) {
                    e.push((f.to_string(), text(v)));
                }
            }
        }
        _ => {}
    }
    // Written in gguf-py's field order.
    e.sort_by_key(|(k, _)| SOURCE_FIELDS.iter().position(|f| f == k));
    e
}

/// Python's `str.title()`: a letter after a cased letter is lowered, any
/// other letter raised.
fn title(w: &str) -> String {
    let mut out = String::with_capacity(w.len());
    let mut prev_cased = false;
    for c in w.chars() {
        let cased = c.is_lowercase() || c.is_uppercase();
        if cased {
            if prev_cased {
                out.extend(c.to_lowercase());
            } else {
                out.extend(c.to_uppercase());
            }
        } else {
            out.push(c);
        }
        prev_cased = cased;
    }
    out
}

/// Python's `str.islower()`: some cased character, none upper case.
fn is_lower(w: &str) -> bool {
    w.chars().any(|c| c.is_lowercase()) && !w.chars().any(|c| c.is_uppercase())
}

/// A model id as a title: lower-case words title-cased unless a version or
/// a number.
pub fn id_to_title(s: &str) -> String {
    let keep = Regex::new(r"^(v\d+(?:\.\d+)*|\d.*)$").ok();
    s.trim()
        .replace('-', " ")
        .split_whitespace()
        .map(|w| {
            if is_lower(w) && !keep.as_ref().is_some_and(|r| r.is_match(w)) {
                title(w)
            } else {
                w.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn full(re: &str) -> Regex {
    Regex::new(&format!("(?i)^(?:{re})$")).unwrap_or_else(|_| unreachable!("constant pattern"))
}

/// The parts of a model id `org/name-size-finetune-version`:
/// (full name, org, basename, finetune, version, size label).
pub fn id_components(id: &str, total_params: i64) -> (String, Option<String>, General) {
    let mut g = General::default();
    if id.contains(' ') {
        return (id.to_string(), None, g);
    }
    let (mut org, name) = match id.split_once('/') {
        Some((o, n)) => (Some(o.to_string()), n.to_string()),
        None => (None, id.to_string()),
    };
    if org.as_deref().is_some_and(|o| o.starts_with('.')) {
        org = None;
    }
    let mut parts: Vec<String> = name.split('-').filter(|p| !p.is_empty()).map(str::to_string).collect();
    let mut kinds: Vec<Vec<&str>> = vec![Vec::new(); parts.len()];
    let version = full(r"(v|iter)?\d+([.]\d+)*");
    let qtype = full(r"i?q\d(_\w)*|b?fp?(16|32)");
    let size = full(r"(([A]|\d+[x])?\d+([._]\d+)?[KMBT][\d]?|small|mini|medium|large|x?xl)");
    let tune = full(r"chat|instruct|vision|lora");
    for i in 0..parts.len() {
        let part = parts[i].clone();
        if version.is_match(&part) {
            kinds[i].push("version");
        } else if qtype.is_match(&part) {
            kinds[i].push("type");
            parts[i] = part.to_uppercase();
        } else if i > 0 && size.is_match(&part) {
            let mut p = part.replace('_', ".");
            let chars: Vec<char> = p.chars().collect();
            if chars.last().is_some_and(|c| c.is_ascii_digit()) && chars.len() >= 2 {
                // bloom-7b1 → 7.1b
                let n = chars.len();
                p = format!(
                    "{}.{}{}",
                    chars[..n - 2].iter().collect::<String>(),
                    chars[n - 1],
                    chars[n - 2]
                );
            }
            let chars: Vec<char> = p.chars().collect();
            if chars.len() > 1 && chars[chars.len() - 2].is_ascii_digit() && "kmbt".contains(chars[chars.len() - 1]) {
                p = format!(
                    "{}{}",
                    chars[..chars.len() - 1].iter().collect::<String>(),
                    chars[chars.len() - 1].to_ascii_uppercase()
                );
            }
            if total_params != 0 {
                let chars: Vec<char> = p.chars().collect();
                let (num, unit) = (
                    chars[..chars.len() - 1].iter().collect::<String>(),
                    chars[chars.len() - 1],
                );
                if let (Ok(n), Some(scale)) = (num.parse::<f64>(), " KMBT".find(unit)) {
                    let label = n * 1000f64.powi(scale as i32);
                    let far = if total_params < 0 {
                        label < (total_params.unsigned_abs() / 8) as f64
                    } else {
                        (label - total_params as f64).abs() > (7 * total_params / 8) as f64
                    };
                    if far {
                        kinds[i].push("finetune");
                        p = format!("{num}{}", unit.to_ascii_lowercase());
                    }
                }
            }
            if kinds[i].is_empty() {
                kinds[i].push("size_label");
            }
            parts[i] = p;
        } else if i > 0 && tune.is_match(&part) {
            if total_params < 0 && part.eq_ignore_ascii_case("lora") {
                kinds[i].push("type");
            } else {
                kinds[i].push("finetune");
            }
        }
    }
    let numeric_size = parts
        .iter()
        .zip(&kinds)
        .any(|(p, k)| k.contains(&"size_label") && p.chars().any(|c| c.is_ascii_digit()));
    if numeric_size {
        for (p, k) in parts.iter().zip(kinds.iter_mut()) {
            if k.contains(&"size_label") && p.chars().all(|c| c.is_alphabetic()) {
                k.retain(|x| *x != "size_label");
            }
        }
    }
    let mut at_start = true;
    for (p, k) in parts.iter().zip(kinds.iter_mut()) {
        let alpha_first = p.chars().next().is_some_and(|c| c.is_alphabetic());
        if at_start && ((k.is_empty() && alpha_first) || k.contains(&"version")) {
            k.push("basename");
        } else {
            at_start = false;
            if k.is_empty() {
                k.push("finetune");
            }
        }
    }
    for k in kinds.iter_mut().rev() {
        if k.contains(&"basename") && k.len() > 1 {
            k.retain(|x| *x != "basename");
        } else {
            break;
        }
    }
    let join = |f: &dyn Fn(&Vec<&str>) -> bool| -> Option<String> {
        let mut seen: Vec<&str> = Vec::new();
        for (p, k) in parts.iter().zip(&kinds) {
            if f(k) && !seen.contains(&p.as_str()) {
                seen.push(p);
            }
        }
        (!seen.is_empty()).then(|| seen.join("-"))
    };
    let join_all = |f: &dyn Fn(&Vec<&str>) -> bool| -> Option<String> {
        let v: Vec<&str> = parts
            .iter()
            .zip(&kinds)
            .filter(|(_, k)| f(k))
            .map(|(p, _)| p.as_str())
            .collect();
        (!v.is_empty()).then(|| v.join("-"))
    };
    g.basename = join_all(&|k| k.contains(&"basename"));
    g.size_label = join(&|k| k.contains(&"size_label"));
    g.finetune = join_all(&|k| k.contains(&"finetune"));
    g.version = join_all(&|k| k.contains(&"version") && !k.contains(&"basename"));
    if g.size_label.is_none() && g.finetune.is_none() && g.version.is_none() {
        g.basename = None;
    }
    (name, org, g)
}

/// A model's parameters as GGUFWriter.get_total_parameter_count counts
/// them: a tensor named `*_exps.*` of 3 or more dimensions holds
/// `shape[-3]` experts (`shape[-2]` for a bias), each of `size / experts`
/// parameters; everything else is shared.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct Params {
    pub total: u64,
    pub shared: u64,
    pub expert: u64,
    /// The mean expert count over the expert tensors (0: not a MoE).
    pub expert_count: u64,
}

impl Params {
    pub fn of<'a>(tensors: impl IntoIterator<Item = (&'a str, &'a [u64])>) -> Params {
        let mut p = Params::default();
        let (mut expert_sum, mut expert_tensors) = (0u64, 0u64);
        for (name, shape) in tensors {
            let size = shape.iter().product::<u64>();
            p.total = p.total.saturating_add(size);
            let axis = if name.contains(".bias") { 2 } else { 3 };
            match shape.len().checked_sub(axis).map(|i| shape[i]) {
                Some(n) if name.contains("_exps.") && shape.len() >= 3 && n > 0 => {
                    p.expert = p.expert.saturating_add(size / n);
                    expert_sum = expert_sum.saturating_add(n);
                    expert_tensors += 1;
                }
                _ => p.shared = p.shared.saturating_add(size),
            }
        }
        p.expert_count = expert_sum.checked_div(expert_tensors).unwrap_or(0);
        p
    }

    /// gguf-py's `size_label`: `8x7B` for a MoE (experts × the parameters
    /// one token's path holds: shared plus one of each expert), else the
    /// total (`18M`).
    pub fn size_label(&self) -> String {
        if self.expert_count > 0 {
            format!("{}x{}", self.expert_count, size_label(self.shared + self.expert))
        } else {
            size_label(self.total)
        }
    }
}

/// gguf-py's rounded parameter count: `18M`, `0.5B`, `1.1B`.
pub fn size_label(total_params: u64) -> String {
    let p = total_params as f64;
    let (scaled, suffix) = if p > 1e12 {
        (p * 1e-12, "T")
    } else if p > 1e9 {
        (p * 1e-9, "B")
    } else if p > 1e6 {
        (p * 1e-6, "M")
    } else {
        (p * 1e-3, "K")
    };
    let whole = (scaled.round_ties_even() as u64).to_string();
    let digits = whole.trim_start_matches('0').len();
    let fix = 2usize.saturating_sub(digits);
    format!("{scaled:.fix$}{suffix}")
}

impl General {
    fn fill(&mut self, id: &str, total_params: i64) {
        let (name, org, g) = id_components(id, total_params);
        self.name.get_or_insert_with(|| id_to_title(&name));
        if let Some(o) = org {
            self.organization.get_or_insert_with(|| id_to_title(&o));
        }
        for (mine, theirs) in [
            (&mut self.basename, g.basename),
            (&mut self.finetune, g.finetune),
            (&mut self.version, g.version),
            (&mut self.size_label, g.size_label),
        ] {
            if mine.is_none() {
                *mine = theirs;
            }
        }
    }

    /// The model card's fields (`apply_metadata_heuristic`'s first part).
    fn read_card(&mut self, card: &serde_json::Map<String, Json>, total_params: i64) {
        let take = |slot: &mut Option<String>, key: &str| {
            if slot.is_none() {
                if let Some(v) = card.get(key) {
                    *slot = Some(text(v));
                }
            }
        };
        for prefix in ["", "model_"] {
            take(&mut self.name, &format!("{prefix}name"));
            take(&mut self.author, &format!("{prefix}author"));
            take(&mut self.version, &format!("{prefix}version"));
            take(&mut self.organization, &format!("{prefix}organization"));
            take(&mut self.description, &format!("{prefix}description"));
            take(&mut self.finetune, &format!("{prefix}finetune"));
            take(&mut self.basename, &format!("{prefix}basename"));
            take(&mut self.size_label, &format!("{prefix}size_label"));
            take(&mut self.source_url, &format!("{prefix}url"));
            take(&mut self.source_doi, &format!("{prefix}doi"));
            take(&mut self.source_uuid, &format!("{prefix}uuid"));
            take(&mut self.source_repo_url, &format!("{prefix}repo_url"));
        }
        take(&mut self.author, "model_creator");
        take(&mut self.basename, "model_type");
        let list = |v: Option<&Json>| -> Vec<Json> {
            match v {
                Some(Json::Array(a)) => a.clone(),
                Some(Json::Null) | None => Vec::new(),
                Some(one) => vec![one.clone()],
            }
        };
        for (keys, slot) in [
            (
                ["base_model", "base_models", "base_model_sources"],
                &mut self.base_models,
            ),
            (["datasets", "dataset", "dataset_sources"], &mut self.datasets),
        ] {
            if keys.iter().any(|k| card.contains_key(*k)) {
                let v = keys.iter().find_map(|k| card.get(*k));
                let entries = slot.get_or_insert_with(Vec::new);
                for item in list(v) {
                    entries.push(source_entry(&item, total_params));
                }
            }
        }
        let take_list = |slot: &mut Option<String>, key: &str| {
            if slot.is_none() {
                if let Some(v) = card.get(key) {
                    *slot = Some(match v {
                        Json::Array(a) => a.iter().map(text).collect::<Vec<_>>().join(","),
                        other => text(other),
                    });
                }
            }
        };
        take_list(&mut self.license, "license");
        take(&mut self.license_name, "license_name");
        take(&mut self.license_link, "license_link");
        let append = |slot: &mut Option<Vec<String>>, key: &str| match card.get(key) {
            Some(Json::Array(a)) => slot.get_or_insert_with(Vec::new).extend(a.iter().map(text)),
            Some(Json::String(s)) => slot.get_or_insert_with(Vec::new).push(s.clone()),
            _ => {}
        };
        append(&mut self.tags, "tags");
        append(&mut self.tags, "pipeline_tag");
        append(&mut self.languages, "languages");
        append(&mut self.languages, "language");
    }

    /// What gguf-py's heuristics give for the folder `dir`, whose tensors
    /// count `params`.
    pub fn for_folder(dir: &Path, config: &serde_json::Map<String, Json>, params: &Params) -> General {
        let total_params = params.total;
        let mut g = General::heuristics(dir, config, i64::try_from(total_params).unwrap_or(i64::MAX));
        if g.size_label.is_none() && total_params > 0 {
            g.size_label = Some(params.size_label());
        }
        g
    }

    /// What gguf-py's heuristics give for the adapter folder `dir` (its
    /// model card, and a config.json there if any), whose parameter count
    /// is `total` (negative: an adapter has no size label of its own); the
    /// name falls back to the base folder's (`ModelBase.prepare_metadata`).
    pub fn for_adapter(dir: &Path, base_dir: &Path, total: i64) -> General {
        let config = match crate::config::read_json(&dir.join("config.json")) {
            Ok(Some(Json::Object(m))) => m,
            _ => serde_json::Map::new(),
        };
        let mut g = General::heuristics(dir, &config, total);
        if g.name.as_deref().is_none_or(str::is_empty) {
            g.name = base_dir.file_name().map(|n| n.to_string_lossy().into_owned());
        }
        g
    }

    /// `apply_metadata_heuristic`: the model card, `_name_or_path`, then
    /// the folder's name.
    fn heuristics(dir: &Path, config: &serde_json::Map<String, Json>, total: i64) -> General {
        let mut g = General::default();
        let readme = dir.join("README.md");
        if let Ok(bytes) = crate::config::read_limited(&readme, crate::config::MAX_JSON) {
            if let Ok(text) = String::from_utf8(bytes) {
                g.read_card(&crate::card::front_matter(&text), total);
            }
        }
        if let Some(id) = config.get("_name_or_path").and_then(Json::as_str) {
            if id.matches('/').count() <= 1 {
                g.fill(id, total);
            }
        }
        let dir_name = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        g.fill(&dir_name, total);
        g
    }
}

/// `key = v`, unless `v` is empty: gguf-py's `add_string` writes nothing
/// for an empty string (a base model named by a local path has an empty
/// organization).
fn set_string(md: &mut Metadata, key: &str, v: &str) {
    if !v.is_empty() {
        md.set(key, Value::String(v.into()));
    }
}

/// Writes `general.type`, sampling defaults, and `g`, in gguf-py's order.
pub fn write_general(md: &mut Metadata, dir: &Path, g: &General) -> Result<()> {
    write_general_as(md, dir, g, [("general.type", Value::String("model".into()))])
}

/// [`write_general`] with the keys `set_type` writes in place of
/// `general.type = model` (an adapter's `general.type` and `adapter.type`).
pub fn write_general_as<const N: usize>(
    md: &mut Metadata,
    dir: &Path,
    g: &General,
    type_keys: [(&str, Value); N],
) -> Result<()> {
    for (k, v) in type_keys {
        md.set(k, v);
    }
    // A generation config that does not parse is ignored, as gguf-py does.
    let gen = read_json(&dir.join("generation_config.json")).ok().flatten();
    if let Some(gen) = gen.as_ref().and_then(Json::as_object) {
        let f32_of = |k: &str| gen.get(k).and_then(Json::as_f64).map(|v| Value::F32(v as f32));
        let i32_of = |k: &str| {
            gen.get(k)
                .and_then(Json::as_i64)
                .and_then(|v| i32::try_from(v).ok())
                .map(Value::I32)
        };
        let entries = [
            (
                "sequence",
                gen.get("sequence")
                    .and_then(Json::as_str)
                    .map(|s| Value::String(s.into())),
            ),
            ("top_k", i32_of("top_k")),
            ("top_p", f32_of("top_p")),
            ("min_p", f32_of("min_p")),
            ("xtc_probability", f32_of("xtc_probability")),
            ("xtc_threshold", f32_of("xtc_threshold")),
            ("temp", f32_of("temperature")),
            ("penalty_last_n", i32_of("penalty_last_n")),
            (
                "penalty_repeat",
                f32_of("penalty_repeat").or_else(|| f32_of("repetition_penalty")),
            ),
            ("mirostat", i32_of("mirostat")),
            ("mirostat_tau", f32_of("mirostat_tau")),
            ("mirostat_eta", f32_of("mirostat_eta")),
        ];
        for (k, v) in entries {
            if let Some(v) = v {
                md.set(format!("general.sampling.{k}"), v);
            }
        }
    }
    set_string(md, "general.name", g.name.as_deref().unwrap_or_default());
    for (k, v) in [
        ("author", &g.author),
        ("version", &g.version),
        ("organization", &g.organization),
        ("finetune", &g.finetune),
        ("basename", &g.basename),
        ("description", &g.description),
        ("size_label", &g.size_label),
        ("license", &g.license),
        ("license.name", &g.license_name),
        ("license.link", &g.license_link),
        ("source.url", &g.source_url),
        ("source.doi", &g.source_doi),
        ("source.uuid", &g.source_uuid),
        ("source.repo_url", &g.source_repo_url),
    ] {
        if let Some(v) = v {
            set_string(md, &format!("general.{k}"), v);
        }
    }
    for (what, list) in [("base_model", &g.base_models), ("dataset", &g.datasets)] {
        if let Some(list) = list {
            md.set(format!("general.{what}.count"), Value::U32(list.len() as u32));
            for (i, entry) in list.iter().enumerate() {
                for (k, v) in entry {
                    set_string(md, &format!("general.{what}.{i}.{k}"), v);
                }
            }
        }
    }
    for (key, list) in [("tags", &g.tags), ("languages", &g.languages)] {
        if let Some(list) = list {
            md.set(
                format!("general.{key}"),
                Value::Array(Array::String(list.iter().collect())),
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_strings_are_not_written() {
        // peft's model card names the base by its local path: "/work/x" has
        // an empty organization, which gguf-py's add_string leaves out.
        let card = serde_json::json!({ "base_model": "/work/x" });
        let mut g = General::default();
        g.read_card(card.as_object().unwrap(), -1000);
        let mut md = Metadata::new();
        write_general(&mut md, Path::new("/nonexistent"), &g).unwrap();
        assert!(md.get("general.base_model.0.name").is_some());
        assert!(md.get("general.base_model.0.organization").is_none());
        assert!(md.get("general.base_model.0.repo_url").is_some());
    }

    #[test]
    fn hub_ids_split_as_gguf_py_does() {
        // What gguf-py 0.19 (llama-cpp-python 0.3.36) computes for these ids.
        let (name, org, g) = id_components("Mixtral-8x7B-Instruct-v0.1", 0);
        assert_eq!((name.as_str(), org), ("Mixtral-8x7B-Instruct-v0.1", None));
        assert_eq!(g.basename.as_deref(), Some("Mixtral"));
        assert_eq!(g.size_label.as_deref(), Some("8x7B"));
        assert_eq!(g.finetune.as_deref(), Some("Instruct"));
        assert_eq!(g.version.as_deref(), Some("v0.1"));
        let (_, org, g) = id_components("Qwen/Qwen2.5-0.5B-Instruct", 0);
        assert_eq!(org.as_deref(), Some("Qwen"));
        assert_eq!(
            (g.basename.as_deref(), g.size_label.as_deref()),
            (Some("Qwen2.5"), Some("0.5B"))
        );
        let (_, _, g) = id_components("bloom-7b1-petals", 0);
        assert_eq!(g.size_label.as_deref(), Some("7.1B"));
        assert_eq!(id_to_title("llama-spm"), "Llama Spm");
        assert_eq!(id_to_title("all-MiniLM-L6-v2"), "All MiniLM L6 v2");
    }

    #[test]
    fn size_labels_round_as_gguf_py() {
        assert_eq!(size_label(17_958_144), "18M");
        assert_eq!(size_label(494_032_768), "494M");
        assert_eq!(size_label(1_100_048_384), "1.1B");
        assert_eq!(size_label(22_713_216), "23M");
        assert_eq!(size_label(5_300_000), "5.3M");
    }
}
