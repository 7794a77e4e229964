//! The YAML front matter of a model card (`README.md` between `---` lines),
//! read into JSON values for gguf-py's model-card heuristics. The subset
//! model cards use: top-level `key: value`, block and flow sequences of
//! scalars, sequences of one-level mappings, `|`/`>` block scalars, and
//! YAML 1.1 scalars as PyYAML's safe_load types them (`yes`/`no` booleans,
//! numbers, `null`). What falls outside it is skipped, never guessed.

use serde_json::{Map, Value};

fn indent(l: &str) -> usize {
    l.len() - l.trim_start_matches(' ').len()
}

/// Cuts a ` #` comment off a plain scalar.
fn uncomment(s: &str) -> &str {
    match s.find(" #") {
        Some(i) => s[..i].trim_end(),
        None => s.trim_end(),
    }
}

/// A scalar, typed as YAML 1.1 (PyYAML) would.
pub fn scalar(raw: &str) -> Value {
    let s = raw.trim();
    if let Some(q) = s.strip_prefix('"').and_then(|r| r.strip_suffix('"')) {
        let mut out = String::new();
        let mut chars = q.chars();
        while let Some(c) = chars.next() {
            if c == '\\' {
                match chars.next() {
                    Some('n') => out.push('\n'),
                    Some('t') => out.push('\t'),
                    Some(o) => out.push(o),
                    None => {}
                }
            } else {
                out.push(c);
            }
        }
        return Value::String(out);
    }
    if let Some(q) = s.strip_prefix('\'').and_then(|r| r.strip_suffix('\'')) {
        return Value::String(q.replace("''", "'"));
    }
    let s = uncomment(s);
    match s {
        "" | "~" | "null" | "Null" | "NULL" => return Value::Null,
        "true" | "True" | "TRUE" | "yes" | "Yes" | "YES" | "on" | "On" | "ON" => return Value::Bool(true),
        "false" | "False" | "FALSE" | "no" | "No" | "NO" | "off" | "Off" | "OFF" => return Value::Bool(false),
        _ => {}
    }
    let digits = s.strip_prefix(['-', '+']).unwrap_or(s);
    if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        if let Ok(i) = s.parse::<i64>() {
            return Value::from(i);
        }
    }
    let float_like = !digits.is_empty()
        && digits
            .bytes()
            .all(|b| b.is_ascii_digit() || b == b'.' || b == b'e' || b == b'E' || b == b'-' || b == b'+')
        && digits.contains('.')
        && digits.bytes().next().is_some_and(|b| b.is_ascii_digit() || b == b'.');
    if float_like {
        if let Ok(f) = s.parse::<f64>() {
            return Value::from(f);
        }
    }
    Value::String(s.to_string())
}

fn flow_list(s: &str) -> Option<Value> {
    let inner = s.trim().strip_prefix('[')?.strip_suffix(']')?;
    if inner.trim().is_empty() {
        return Some(Value::Array(Vec::new()));
    }
    // Items split at commas outside quotes.
    let mut items = Vec::new();
    let (mut cur, mut quote) = (String::new(), None);
    for c in inner.chars() {
        match (c, quote) {
            ('"' | '\'', None) => {
                quote = Some(c);
                cur.push(c);
            }
            (q, Some(open)) if q == open => {
                quote = None;
                cur.push(c);
            }
            (',', None) => items.push(scalar(&std::mem::take(&mut cur))),
            _ => cur.push(c),
        }
    }
    items.push(scalar(&cur));
    Some(Value::Array(items))
}

/// `key: rest` of a line, when it is a mapping entry.
fn entry(line: &str) -> Option<(&str, &str)> {
    let t = line.trim_start();
    let (k, rest) = t.split_once(':')?;
    if k.is_empty() || k.starts_with(['-', '#', '[', '{']) || !(rest.is_empty() || rest.starts_with(' ')) {
        return None;
    }
    let k = k.trim();
    let k = k
        .strip_prefix('"')
        .and_then(|x| x.strip_suffix('"'))
        .or_else(|| k.strip_prefix('\'').and_then(|x| x.strip_suffix('\'')))
        .unwrap_or(k);
    Some((k, rest.trim()))
}

/// The front matter of `text`, or an empty map.
pub fn front_matter(text: &str) -> Map<String, Value> {
    let mut lines: Vec<&str> = text.lines().collect();
    if lines.first() != Some(&"---") {
        return Map::new();
    }
    lines.remove(0);
    let end = lines.iter().position(|l| *l == "---").unwrap_or(lines.len());
    // As gguf-py: tabs count as two spaces, and a list item `- no` is the
    // string "no" (Norway), not false.
    let owned: Vec<String> = lines[..end]
        .iter()
        .map(|l| {
            let l = l.replace('\t', "  ");
            match l.strip_suffix("- no") {
                Some(head) => format!("{head}- \"no\""),
                None => l,
            }
        })
        .collect();
    let lines: Vec<&str> = owned
        .iter()
        .map(String::as_str)
        .filter(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        .collect();
    let mut map = Map::new();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        i += 1;
        if indent(line) != 0 {
            continue;
        }
        let Some((key, rest)) = entry(line) else { continue };
        // The block under this key: the more-indented lines, or "- " items at the same indent.
        let start = i;
        while i < lines.len() && (indent(lines[i]) > 0 || lines[i].starts_with("- ") || lines[i] == "-") {
            i += 1;
        }
        let block = &lines[start..i];
        let value = if rest.is_empty() {
            block_value(block)
        } else if rest.starts_with('[') {
            flow_list(rest)
        } else if rest.starts_with('|') || rest.starts_with('>') {
            let text: Vec<&str> = block.iter().map(|l| l.trim()).collect();
            let joined = if rest.starts_with('|') {
                text.join("\n")
            } else {
                text.join(" ")
            };
            Some(Value::String(if rest.contains('-') { joined } else { joined + "\n" }))
        } else if rest.starts_with('{') {
            None
        } else {
            Some(scalar(rest))
        };
        if let Some(v) = value {
            map.insert(key.to_string(), v);
        }
    }
    map
}

/// A block sequence (of scalars, or of one-level mappings).
fn block_value(block: &[&str]) -> Option<Value> {
    let first = block.first()?;
    if !first.trim_start().starts_with('-') {
        return None; // a nested mapping: not used by the heuristics
    }
    let item_indent = indent(first);
    let mut items = Vec::new();
    let mut i = 0;
    while i < block.len() {
        let l = block[i];
        i += 1;
        let t = l.trim_start();
        if indent(l) != item_indent || !t.starts_with('-') {
            continue;
        }
        let body = t[1..].trim_start();
        match entry(body) {
            Some((k, v)) if !body.starts_with(['"', '\'']) => {
                let mut m = Map::new();
                m.insert(k.to_string(), scalar(v));
                while i < block.len() && indent(block[i]) > item_indent {
                    if let Some((k, v)) = entry(block[i]) {
                        m.insert(k.to_string(), scalar(v));
                    }
                    i += 1;
                }
                items.push(Value::Object(m));
            }
            _ => items.push(scalar(body)),
        }
    }
    Some(Value::Array(items))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_the_subset_model_cards_use() {
        let card = "---\nlicense: apache-2.0\nlanguage:\n- en\n- no\ntags: [text-generation, 'a, b']\nbase_model:\n  - Qwen/Qwen2.5-0.5B\ndatasets:\n- name: x\n  url: https://e.org # site\npipeline_tag: text-generation\nversion: 1.5\nthumbnail: \"a\\\"b\"\nwidget:\n  key: v\n---\n# Title\n";
        let m = front_matter(card);
        assert_eq!(m["license"], json!("apache-2.0"));
        assert_eq!(m["language"], json!(["en", "no"]));
        assert_eq!(m["tags"], json!(["text-generation", "a, b"]));
        assert_eq!(m["base_model"], json!(["Qwen/Qwen2.5-0.5B"]));
        assert_eq!(m["datasets"], json!([{"name": "x", "url": "https://e.org"}]));
        assert_eq!(m["version"], json!(1.5));
        assert_eq!(m["thumbnail"], json!("a\"b"));
        assert!(!m.contains_key("widget"));
        assert!(front_matter("# no front matter\n").is_empty());
    }
}
