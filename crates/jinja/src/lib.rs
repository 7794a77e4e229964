//! # modelconv-jinja
//!
//! Chat templates read for `scan`. A model's chat template is a Jinja
//! program its runtime renders: transformers in an immutable sandbox,
//! but llama-cpp-python before 0.2.72 in a plain `jinja2.Environment`
//! (CVE-2024-34359), where `{{ x.__class__.__mro__[1].__subclasses__() }}`
//! runs anything. [`judge`] lexes a template as jinja2's lexer does (its
//! default delimiters, whitespace-control marks, comments, `raw` blocks,
//! strings decoded as Python's `unicode-escape` decodes them, brackets
//! balanced before a block may end) and reports what reaches past the data
//! a template is given:
//!
//! - dangerous: an attribute whose name starts with `_` (`__globals__`,
//!   `__class__`, `__subclasses__`, `__builtins__`, …) or names a code
//!   runner (`popen`, `system`, `eval`, …), reached by `.name`,
//!   `["name"]` (jinja2 falls back from item to attribute), `|attr("name")`
//!   or a filter's `attribute="name"`, escapes decoded; jinja2's globals
//!   that lead to Python's modules (`lipsum`, `cycler`, `joiner`) reached
//!   through an attribute, an item or a filter;
//! - suspicious: an attribute name computed (`|attr(x)`), a string in code
//!   holding `__` (a name assembled piece by piece?), a bare name of a
//!   Python module or an underscore name, a template that loads another
//!   (`import`, `include`, `extends`, `from`), a template that does not lex.
//!
//! Every real template in llama.cpp's `models/templates/` lexes and is safe.

use modelconv_ir::scan::{Finding, Stream, Verdict};

/// One thing a template reaches: where, what, how bad and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Concern {
    pub offset: usize,
    pub what: String,
    pub verdict: Verdict,
    pub reason: &'static str,
}

/// Attribute names that run code or reach modules without an underscore.
const CODE_ATTRIBUTES: &[&str] = &[
    "popen",
    "system",
    "subprocess",
    "os",
    "eval",
    "exec",
    "import_module",
    "builtins",
    "modules",
    "check_output",
    "getoutput",
    "getstatusoutput",
    "spawnv",
    "spawnl",
    "execv",
    "execl",
    "load_module",
    "func_globals",
    "gi_frame",
    "f_globals",
    "f_builtins",
];

/// jinja2's default globals whose attributes lead to Python's modules
/// (`lipsum.__globals__['os']`, `cycler.__init__.__globals__`).
const GADGET_GLOBALS: &[&str] = &["lipsum", "cycler", "joiner"];

/// Names of Python modules a template has no business naming.
const MODULE_NAMES: &[&str] = &[
    "os",
    "subprocess",
    "sys",
    "builtins",
    "importlib",
    "posix",
    "nt",
    "pty",
    "socket",
];

/// Statements that make jinja2 load another template through its loader.
const LOADING_STATEMENTS: &[&str] = &["import", "include", "extends", "from"];

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Name(String),
    Str(String),
    Op(String),
    Number,
}

/// One `{{ … }}` or `{% … %}`: its tokens with their byte offsets.
struct Block {
    statement: bool,
    tokens: Vec<(usize, Tok)>,
}

/// Why a template does not lex (jinja2 would refuse to compile it).
#[derive(Debug, Clone, PartialEq)]
pub struct LexError {
    pub offset: usize,
    pub msg: String,
}

/// Everything of note in `template` (in order of offset), or why it does
/// not lex.
pub fn judge(template: &str) -> Result<Vec<Concern>, LexError> {
    let mut out = Concerns::default();
    // Block by block: a template of a million blocks holds one at a time.
    lex(template, |b| judge_block(&b, &mut out))?;
    let mut all = out.kept;
    all.sort_by_key(|c| c.offset);
    Ok(all)
}

/// Concerns kept for the report: the first [`MAX_CONCERNS`], then only
/// those worse than every one kept (the verdict is never lost).
#[derive(Default)]
struct Concerns {
    kept: Vec<Concern>,
    worst: Option<Verdict>,
}

/// Concerns one template reports at most (beyond them, only worse ones).
pub const MAX_CONCERNS: usize = 4096;

/// A template's findings as a scan stream named `part` (None when it has
/// none): findings grouped by what they name, a template that does not
/// lex suspicious.
pub fn scan_template(part: &str, template: &str) -> Option<Stream> {
    let concerns = match judge(template) {
        Ok(c) if c.is_empty() => return None,
        Ok(c) => c,
        Err(e) => {
            let mut s = Stream::of_findings(format!("{part} (chat template)"), Vec::new());
            s.error = Some(format!(
                "template byte {}: {} (jinja2 would not compile it)",
                e.offset, e.msg
            ));
            s.verdict = Verdict::Suspicious;
            return Some(s);
        }
    };
    let mut findings: Vec<Finding> = Vec::new();
    // Grouped through an index: a template naming a million distinct
    // attributes stays linear.
    let mut index: std::collections::HashMap<(String, &'static str), usize> = std::collections::HashMap::new();
    for c in concerns {
        match index.get(&(c.what.clone(), c.reason)) {
            Some(&i) => findings[i].uses += 1,
            None => {
                index.insert((c.what.clone(), c.reason), findings.len());
                findings.push(Finding {
                    module: "jinja2 template".into(),
                    name: c.what,
                    offset: c.offset,
                    uses: 1,
                    verdict: c.verdict,
                    reason: c.reason,
                    separator: Finding::LABELLED,
                });
            }
        }
    }
    Some(Stream::of_findings(format!("{part} (chat template)"), findings))
}

/// The chat templates of an HF `tokenizer_config.json` (or a processor's
/// `chat_template.json`): `chat_template` as a string, or as a list of
/// `{"name", "template"}`; each with its name.
pub fn templates_in_config(config: &serde_json::Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    match config.get("chat_template") {
        Some(serde_json::Value::String(t)) => out.push(("chat_template".to_string(), t.clone())),
        Some(serde_json::Value::Array(list)) => {
            for (i, item) in list.iter().enumerate() {
                if let Some(t) = item.get("template").and_then(|t| t.as_str()) {
                    let name = item
                        .get("name")
                        .and_then(|n| n.as_str())
                        .map_or(i.to_string(), str::to_string);
                    out.push((format!("chat_template[{name}]"), t.to_string()));
                }
            }
        }
        _ => {}
    }
    out
}

/// `scan` of a Hugging Face folder's chat template files: a `*.jinja`
/// file (`chat_template.jinja`, which transformers renders), and a JSON
/// object with a `chat_template` (`tokenizer_config.json`, a processor's
/// `chat_template.json`). Other files are not its.
pub static SIDE_FILES: SideFiles = SideFiles;

pub struct SideFiles;

impl modelconv_ir::scan::Scanner for SideFiles {
    fn container(&self, path: &std::path::Path, bytes: &[u8]) -> Option<modelconv_ir::scan::Scanned> {
        use modelconv_ir::scan::Scanned;
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if name.ends_with(".jinja") {
            let streams = match std::str::from_utf8(bytes) {
                Ok(t) => scan_template(&name, t).into_iter().collect(),
                Err(e) => vec![Stream::unreadable(
                    &name,
                    format!("not UTF-8 at byte {}", e.valid_up_to()),
                )],
            };
            return Some(Scanned::new("chat template", streams, true));
        }
        let text = bytes.strip_prefix(b"\xef\xbb\xbf").unwrap_or(bytes);
        if text.trim_ascii_start().first() != Some(&b'{') || !contains(text, b"\"chat_template\"") {
            return None;
        }
        let config: serde_json::Value = serde_json::from_slice(text).ok()?;
        let streams = templates_in_config(&config)
            .iter()
            .filter_map(|(part, t)| scan_template(&format!("{name} {part}"), t))
            .collect();
        Some(Scanned::new("JSON with chat templates", streams, true))
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

fn concern(out: &mut Concerns, offset: usize, what: String, verdict: Verdict, reason: &'static str) {
    if out.kept.len() >= MAX_CONCERNS && out.worst.is_some_and(|w| verdict <= w) {
        return;
    }
    out.worst = out.worst.max(Some(verdict));
    out.kept.push(Concern {
        offset,
        what,
        verdict,
        reason,
    });
}

/// An attribute reached by name (`.n`, `["n"]`, `|attr("n")`, `attribute="n"`).
fn judge_attribute(name: &str, offset: usize, how: &str, out: &mut Concerns) {
    if name.starts_with('_') {
        let reason = "an underscore attribute: Python's internals, the way out of jinja2's sandbox (CVE-2024-34359)";
        concern(out, offset, format!("{how} {name}"), Verdict::Dangerous, reason);
    } else if CODE_ATTRIBUTES.contains(&name) {
        let reason = "an attribute that runs commands or reaches modules";
        concern(out, offset, format!("{how} {name}"), Verdict::Dangerous, reason);
    }
}

fn op(t: Option<&(usize, Tok)>, o: &str) -> bool {
    matches!(t, Some((_, Tok::Op(x))) if x == o)
}

fn judge_block(b: &Block, out: &mut Concerns) {
    let t = &b.tokens;
    if b.statement {
        if let Some((at, Tok::Name(first))) = t.first() {
            if LOADING_STATEMENTS.contains(&first.as_str()) {
                let reason = "loads another template through jinja2's loader";
                concern(out, *at, format!("{{% {first} %}}"), Verdict::Suspicious, reason);
            }
        }
    }
    let mut judged = std::collections::HashSet::new();
    for i in 0..t.len() {
        let (at, tok) = &t[i];
        let prev = i.checked_sub(1).and_then(|p| t.get(p));
        match tok {
            Tok::Name(n) if op(prev, ".") => judge_attribute(n, *at, "attribute", out),
            Tok::Name(n) if n == "attr" && op(prev, "|") => {
                if !op(t.get(i + 1), "(") {
                    continue;
                }
                match t.get(i + 2) {
                    Some((s_at, Tok::Str(s))) if op(t.get(i + 3), ")") || op(t.get(i + 3), ",") => {
                        judged.insert(i + 2);
                        judge_attribute(s, *s_at, "|attr", out);
                    }
                    _ => {
                        let reason = "an attribute whose name is computed: it may be any";
                        concern(out, *at, "|attr(…)".into(), Verdict::Suspicious, reason);
                    }
                }
            }
            Tok::Name(n) if n == "attribute" && op(t.get(i + 1), "=") => {
                if let Some((s_at, Tok::Str(s))) = t.get(i + 2) {
                    judged.insert(i + 2);
                    judge_attribute(s, *s_at, "attribute=", out);
                }
            }
            Tok::Name(n) if !op(prev, "|") && !matches!(prev, Some((_, Tok::Name(k))) if k == "is") => {
                let reaches = op(t.get(i + 1), ".") || op(t.get(i + 1), "[") || op(t.get(i + 1), "|");
                if GADGET_GLOBALS.contains(&n.as_str()) && reaches {
                    let reason = "a jinja2 global whose attributes lead to Python's modules";
                    concern(out, *at, n.clone(), Verdict::Dangerous, reason);
                } else if MODULE_NAMES.contains(&n.as_str()) || n.starts_with("__") {
                    let reason = "names a Python module or internal";
                    concern(out, *at, n.clone(), Verdict::Suspicious, reason);
                }
            }
            Tok::Str(s) if op(prev, "[") && op(t.get(i + 1), "]") => {
                judged.insert(i);
                judge_attribute(s, *at, "item", out);
            }
            _ => {}
        }
    }
    for (i, (at, tok)) in t.iter().enumerate() {
        if let Tok::Str(s) = tok {
            if s.contains("__") && !judged.contains(&i) {
                let reason = "a double underscore in a string: a name assembled to reach Python's internals?";
                concern(out, *at, format!("string {s:?}"), Verdict::Suspicious, reason);
            }
        }
    }
}

/// The blocks of a template, as jinja2's lexer finds them, each handed
/// to `each` in turn.
fn lex(src: &str, mut each: impl FnMut(Block)) -> Result<(), LexError> {
    let b = src.as_bytes();
    let mut at = 0;
    while let Some(rel) = find_start(&b[at..]) {
        let start = at + rel;
        let kind = b[start + 1];
        let mut body = start + 2;
        if matches!(b.get(body), Some(b'-' | b'+')) {
            body += 1;
        }
        match kind {
            b'#' => {
                let end = find(b, body, b"#}").ok_or_else(|| err(start, "a comment that never ends"))?;
                at = end + 2;
            }
            b'%' if is_raw(b, body) => {
                at = end_of_raw(b, body).ok_or_else(|| err(start, "a raw block without endraw"))?;
            }
            _ => {
                let statement = kind == b'%';
                let (tokens, end) = tokens(src, body, statement)?;
                each(Block { statement, tokens });
                at = end;
            }
        }
    }
    Ok(())
}

fn err(offset: usize, msg: &str) -> LexError {
    LexError {
        offset,
        msg: msg.to_string(),
    }
}

/// The next `{{`, `{%` or `{#`.
fn find_start(b: &[u8]) -> Option<usize> {
    (0..b.len().saturating_sub(1)).find(|&i| b[i] == b'{' && matches!(b[i + 1], b'{' | b'%' | b'#'))
}

fn find(b: &[u8], from: usize, pat: &[u8]) -> Option<usize> {
    b.get(from..)?
        .windows(pat.len())
        .position(|w| w == pat)
        .map(|p| from + p)
}

fn skip_space(b: &[u8], mut i: usize) -> usize {
    while b.get(i).is_some_and(|c| c.is_ascii_whitespace()) {
        i += 1;
    }
    i
}

/// `{% raw %}` (whitespace allowed, a `-` before `%}` too).
fn is_raw(b: &[u8], body: usize) -> bool {
    let i = skip_space(b, body);
    if !b[i..].starts_with(b"raw") {
        return false;
    }
    let j = skip_space(b, i + 3);
    b[j..].starts_with(b"%}") || b[j..].starts_with(b"-%}")
}

/// Past the `{% endraw %}` that closes a raw block.
fn end_of_raw(b: &[u8], mut from: usize) -> Option<usize> {
    loop {
        let start = find(b, from, b"{%")?;
        let mut i = start + 2;
        if matches!(b.get(i), Some(b'-' | b'+')) {
            i += 1;
        }
        i = skip_space(b, i);
        if b[i..].starts_with(b"endraw") {
            let j = skip_space(b, i + 6);
            let j = if b.get(j) == Some(&b'-') { j + 1 } else { j };
            if b[j..].starts_with(b"%}") {
                return Some(j + 2);
            }
        }
        from = start + 2;
    }
}

/// The tokens of one block from `i` to its end delimiter (`}}` or `%}`,
/// a `-` before it allowed), which counts only outside brackets.
fn tokens(src: &str, mut i: usize, statement: bool) -> Result<(Vec<(usize, Tok)>, usize), LexError> {
    let b = src.as_bytes();
    let close: &[u8] = if statement { b"%}" } else { b"}}" };
    let mut out = Vec::new();
    let mut depth = 0usize;
    loop {
        i = skip_space(b, i);
        let Some(&c) = b.get(i) else {
            return Err(err(i, "a block that never ends"));
        };
        if depth == 0 {
            if b[i..].starts_with(close) {
                return Ok((out, i + 2));
            }
            if c == b'-' && b[i + 1..].starts_with(close) {
                return Ok((out, i + 3));
            }
        }
        match c {
            b'\'' | b'"' => {
                let (s, end) = string(src, i)?;
                out.push((i, Tok::Str(s)));
                i = end;
            }
            b'0'..=b'9' => {
                out.push((i, Tok::Number));
                while b
                    .get(i)
                    .is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'_' || *c == b'.')
                {
                    i += 1;
                }
            }
            _ if c == b'_' || c.is_ascii_alphabetic() || c >= 0x80 => {
                let start = i;
                while let Some(ch) = src[i..].chars().next() {
                    if ch == '_' || ch.is_alphanumeric() {
                        i += ch.len_utf8();
                    } else {
                        break;
                    }
                }
                if i == start {
                    return Err(err(i, "a character jinja2 does not lex"));
                }
                out.push((start, Tok::Name(src[start..i].to_string())));
            }
            _ => {
                match c {
                    b'(' | b'[' | b'{' => depth += 1,
                    b')' | b']' | b'}' => depth = depth.saturating_sub(1),
                    _ => {}
                }
                out.push((i, Tok::Op((c as char).to_string())));
                i += 1;
            }
        }
    }
}

/// A string literal at `i` and the offset past it, decoded as jinja2
/// decodes it (Python's `unicode-escape`: `\x5f`, `\u005f`, `\137`,
/// `\N{LOW LINE}`, …); an escape that does not decode is kept as written.
fn string(src: &str, i: usize) -> Result<(String, usize), LexError> {
    let quote = src.as_bytes()[i] as char;
    let mut out = String::new();
    let mut chars = src[i + 1..].char_indices().peekable();
    while let Some((k, c)) = chars.next() {
        if c == quote {
            return Ok((out, i + 1 + k + 1));
        }
        if c != '\\' {
            out.push(c);
            continue;
        }
        let Some((_, e)) = chars.next() else { break };
        match e {
            'n' => out.push('\n'),
            't' => out.push('\t'),
            'r' => out.push('\r'),
            'a' => out.push('\x07'),
            'b' => out.push('\x08'),
            'f' => out.push('\x0c'),
            'v' => out.push('\x0b'),
            '\n' => {}
            'x' | 'u' | 'U' => {
                let n = match e {
                    'x' => 2,
                    'u' => 4,
                    _ => 8,
                };
                let digits: String = (0..n)
                    .filter_map(|_| chars.next_if(|(_, d)| d.is_ascii_hexdigit()))
                    .map(|(_, d)| d)
                    .collect();
                match u32::from_str_radix(&digits, 16)
                    .ok()
                    .filter(|_| digits.len() == n)
                    .and_then(char::from_u32)
                {
                    Some(ch) => out.push(ch),
                    None => {
                        out.push('\\');
                        out.push(e);
                        out.push_str(&digits);
                    }
                }
            }
            '0'..='7' => {
                let mut v = e.to_digit(8).unwrap_or(0);
                for _ in 0..2 {
                    match chars.next_if(|(_, d)| ('0'..='7').contains(d)) {
                        Some((_, d)) => v = v * 8 + d.to_digit(8).unwrap_or(0),
                        None => break,
                    }
                }
                out.push(char::from_u32(v).unwrap_or('\u{fffd}'));
            }
            'N' if chars.peek().is_some_and(|(_, d)| *d == '{') => {
                let name: String = chars.by_ref().map(|(_, d)| d).take_while(|d| *d != '}').collect();
                match name.trim_start_matches('{').to_ascii_uppercase().as_str() {
                    "LOW LINE" | "LOWLINE" => out.push('_'),
                    other => {
                        out.push_str("\\N");
                        out.push_str(other);
                    }
                }
            }
            other => {
                // \\ \' \" decode to themselves; any other escape stays as written.
                if !matches!(other, '\\' | '\'' | '"') {
                    out.push('\\');
                }
                out.push(other);
            }
        }
    }
    Err(err(i, "a string that never ends"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn worst(t: &str) -> Option<Verdict> {
        judge(t).unwrap().iter().map(|c| c.verdict).max()
    }

    #[test]
    fn sandbox_escapes_are_dangerous() {
        for t in [
            "{{ x.__class__.__mro__[1].__subclasses__() }}",
            "{{ self.__init__.__globals__.__builtins__ }}",
            "{% for c in ''['__class__'] %}{% endfor %}",
            "{{ x|attr('__class__') }}",
            "{{ x | attr ( \"\\x5f\\x5fglobals\\x5f\\x5f\" ) }}",
            "{{ x['\\u005f_dict__'] }}",
            "{{ x['\\137_class__'] }}",
            "{{ x['\\N{LOW LINE}_class__'] }}",
            "{{ lipsum.__globals__['os'].popen('id').read() }}",
            "{{ cycler.__init__ }}",
            "{{ joiner|attr('x') }}",
            "{{ namespace.__init__.__globals__.os.system('id') }}",
            "{{ messages|map(attribute='__class__')|list }}",
            "{%- set g = x.os -%}",
            "{{ {'a': x.__class__} }}",
        ] {
            assert_eq!(worst(t), Some(Verdict::Dangerous), "{t}");
        }
    }

    #[test]
    fn computed_names_and_loads_are_suspicious() {
        for t in [
            "{{ x|attr(name) }}",
            "{{ x|attr('__cla' ~ 'ss__') }}",
            "{% set n = '__cla' ~ 'ss__' %}",
            "{% include 'other.jinja' %}",
            "{% import 'm' as m %}",
            "{{ os }}",
        ] {
            assert_eq!(worst(t), Some(Verdict::Suspicious), "{t}");
        }
        assert!(judge("{{ unterminated").is_err());
        assert!(scan_template("t", "{% if x %}{{ 'a").is_some_and(|s| s.verdict == Verdict::Suspicious));
    }

    #[test]
    fn ordinary_templates_are_clean() {
        for t in [
            "{%- for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' }}{% endfor -%}",
            "{% set ns = namespace(found=false) %}{% set ns.found = true %}{{ ns.found }}",
            "{# {{ x.__class__ }} #}{{ bos_token }}",
            "{% raw %}{{ x.__class__ }}{% endraw %}",
            "{{ messages[0]['content']|trim }}{{ (a or b) }}{{ {'k': [1, 2]} }}",
            "{{- raise_exception('roles must alternate') }}{{ x is defined }}{{ loop.index0 }}",
            "text with {{ '}}' }} and {{ \"%}\" }}",
            "{{ range(3)|list }}{{ tools|tojson(indent=2) }}{{ x.content.split('</think>')[-1] }}",
        ] {
            assert_eq!(judge(t), Ok(vec![]), "{t}");
        }
    }
}
