//! The file formats sops reads and writes: YAML, JSON, dotenv, INI and binary. Each turns
//! bytes into documents (the metadata, when there is some, under a top-level `sops` key) and
//! documents back into bytes.

use serde_json::Value;
use zeroize::Zeroizing;

use super::tree::{Comment, Entry, Node};
use super::{SopsError, flatten, unflatten, yaml};

/// A file format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Store {
    Yaml,
    Json,
    Dotenv,
    Ini,
    Binary,
}

impl std::fmt::Display for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Store::Yaml => "YAML",
            Store::Json => "JSON",
            Store::Dotenv => "dotenv",
            Store::Ini => "INI",
            Store::Binary => "binary",
        })
    }
}

impl Store {
    /// The format sops picks by a file name: `.yaml`/`.yml`, `.json`, `.env`, `.ini`, else binary.
    pub fn from_path(path: &std::path::Path) -> Store {
        match path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).as_deref() {
            Some("yaml" | "yml") => Store::Yaml,
            Some("json") => Store::Json,
            Some("env") => Store::Dotenv,
            Some("ini") => Store::Ini,
            _ => Store::Binary,
        }
    }

    /// The documents of a plaintext file. A binary file is one document `{data: <the bytes>}`.
    pub fn read_plain(self, input: &[u8]) -> Result<Vec<Node>, SopsError> {
        if self == Store::Binary {
            let data = match String::from_utf8(input.to_vec()) {
                Ok(text) => Node::str(text),
                Err(e) => Node::Bytes(Zeroizing::new(e.into_bytes())),
            };
            return Ok(vec![Node::Map(vec![Entry::Pair("data".into(), data)])]);
        }
        self.read(input)
    }

    /// The documents of an encrypted file, with the metadata under `sops`.
    pub fn read_encrypted(self, input: &[u8]) -> Result<Vec<Node>, SopsError> {
        match self {
            Store::Binary => Store::Json.read(input),
            other => other.read(input),
        }
    }

    fn read(self, input: &[u8]) -> Result<Vec<Node>, SopsError> {
        let text = std::str::from_utf8(input).map_err(|_| SopsError::Parse("the file is not UTF-8 text".into()))?;
        match self {
            Store::Yaml => yaml::parse(text),
            Store::Json | Store::Binary => read_json(text),
            Store::Dotenv => read_dotenv(text),
            Store::Ini => read_ini(text),
        }
    }

    /// Plaintext documents in this format (a binary file: the bytes of `data`).
    pub fn write_plain(self, docs: &[Node]) -> Result<Vec<u8>, SopsError> {
        match self {
            Store::Yaml => Ok(yaml::write(docs).into_bytes()),
            Store::Json => write_json(docs),
            Store::Dotenv => write_dotenv(docs, &[]),
            Store::Ini => write_ini(docs, &[]),
            Store::Binary => match docs.first().and_then(|d| d.get("data")) {
                Some(Node::Str(s)) => Ok(s.as_bytes().to_vec()),
                Some(Node::Bytes(b)) => Ok(b.to_vec()),
                _ => Err(SopsError::Parse("the file has no binary `data`".into())),
            },
        }
    }

    /// Plaintext documents to edit: as `write_plain`, except that whole floats keep a
    /// fraction in YAML and JSON, so that they read back as floats.
    pub fn write_editable(self, docs: &[Node]) -> Result<Vec<u8>, SopsError> {
        match self {
            Store::Yaml => Ok(yaml::write_editable(docs).into_bytes()),
            Store::Json => Ok(write_json_with(docs, true)),
            other => other.write_plain(docs),
        }
    }

    /// Encrypted documents with their metadata in this format.
    pub fn write_encrypted(self, docs: &[Node], meta: &Value) -> Result<Vec<u8>, SopsError> {
        let with_meta = || -> Vec<Node> {
            docs.iter()
                .cloned()
                .map(|mut doc| {
                    doc.insert("sops", Node::from_json(meta));
                    doc
                })
                .collect()
        };
        match self {
            Store::Yaml => Ok(yaml::write_encrypted(&with_meta()).into_bytes()),
            Store::Json => write_json(&with_meta()),
            Store::Binary => {
                let data = docs.first().and_then(|d| d.get("data")).cloned().unwrap_or(Node::Null);
                let doc = Node::Map(vec![
                    Entry::Pair("data".into(), data),
                    Entry::Pair("sops".into(), Node::from_json(meta)),
                ]);
                write_json(&[doc])
            }
            Store::Dotenv | Store::Ini => {
                let mut flat = Vec::new();
                flatten(meta, "", &mut flat);
                if self == Store::Dotenv { write_dotenv(docs, &flat) } else { write_ini(docs, &flat) }
            }
        }
    }
}

fn read_json(text: &str) -> Result<Vec<Node>, SopsError> {
    let value: Value = serde_json::from_str(text).map_err(|e| SopsError::Parse(format!("invalid JSON: {e}")))?;
    if !value.is_object() {
        return Err(SopsError::Parse("the top level of a JSON file must be an object".into()));
    }
    Ok(vec![Node::from_json(&value)])
}

/// JSON as Go's `json.Marshal` and `json.Indent` with a tab write it: `<`, `>` and `&`
/// escaped, floats in ES6 form, comments left out.
fn write_json(docs: &[Node]) -> Result<Vec<u8>, SopsError> {
    Ok(write_json_with(docs, false))
}

fn write_json_with(docs: &[Node], exact: bool) -> Vec<u8> {
    let mut out = String::new();
    for doc in docs {
        json_node(doc, 0, exact, &mut out);
        out.push('\n');
    }
    out.into_bytes()
}

fn json_string(text: &str, out: &mut String) {
    out.push_str(&sealant_core::template::go_json_string(text));
}

/// Go's encoding/json float: `'f'` form from 1e-6 to 1e21, else `'e'` with a short exponent.
fn json_float(f: f64) -> String {
    if !f.is_finite() {
        return "null".to_owned();
    }
    let abs = f.abs();
    if abs == 0.0 || (1e-6..1e21).contains(&abs) {
        return super::tree::go_float(f);
    }
    let text = format!("{f:e}");
    let (mantissa, exponent) = text.split_once('e').unwrap_or((&text, "0"));
    let (sign, digits) = exponent.strip_prefix('-').map_or(("+", exponent), |d| ("-", d));
    format!("{mantissa}e{sign}{digits}")
}

fn json_node(node: &Node, depth: usize, exact: bool, out: &mut String) {
    let pad = |depth: usize, out: &mut String| {
        out.push('\n');
        out.extend(std::iter::repeat_n('\t', depth));
    };
    match node {
        Node::Map(entries) => {
            let pairs: Vec<(&String, &Node)> = entries
                .iter()
                .filter_map(|e| match e {
                    Entry::Pair(k, v) => Some((k, v)),
                    Entry::Comment(_) => None,
                })
                .collect();
            if pairs.is_empty() {
                out.push_str("{}");
                return;
            }
            out.push('{');
            for (i, (key, value)) in pairs.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                pad(depth + 1, out);
                json_string(key, out);
                out.push_str(": ");
                json_node(value, depth + 1, exact, out);
            }
            pad(depth, out);
            out.push('}');
        }
        Node::List(items) => {
            let items: Vec<&Node> = items.iter().filter(|n| !matches!(n, Node::Comment(_))).collect();
            if items.is_empty() {
                out.push_str("[]");
                return;
            }
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                pad(depth + 1, out);
                json_node(item, depth + 1, exact, out);
            }
            pad(depth, out);
            out.push(']');
        }
        Node::Str(s) => json_string(s, out),
        Node::Bytes(b) => json_string(&String::from_utf8_lossy(b), out),
        Node::Time(t) => json_string(t, out),
        Node::Int(i) => out.push_str(&i.to_string()),
        Node::Float(f) => {
            let text = json_float(*f);
            out.push_str(&text);
            if exact && !text.contains(['.', 'e', 'n']) {
                out.push_str(".0");
            }
        }
        Node::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Node::Null | Node::Comment(_) => out.push_str("null"),
    }
}

/// dotenv as sops reads it: `KEY=value` lines (no quote processing, `\n` is a newline),
/// `#` comments, empty lines skipped; `sops_` lines are the metadata.
fn read_dotenv(text: &str) -> Result<Vec<Node>, SopsError> {
    let mut entries = Vec::new();
    let mut meta = Vec::new();
    for (number, line) in text.split('\n').enumerate() {
        if line.is_empty() {
            continue;
        }
        if let Some(comment) = line.strip_prefix('#') {
            entries.push(Entry::Comment(Comment::line(comment)));
            continue;
        }
        let (key, value) = line
            .split_once('=')
            .ok_or_else(|| SopsError::Parse(format!("line {}: no '=' in a dotenv line", number + 1)))?;
        let value = value.replace("\\n", "\n");
        match key.strip_prefix("sops_") {
            Some(meta_key) => meta.push((meta_key.to_owned(), value)),
            None => entries.push(Entry::Pair(key.to_owned(), Node::str(value))),
        }
    }
    if !meta.is_empty() {
        entries.push(Entry::Pair("sops".into(), Node::from_json(&unflatten(&meta))));
    }
    Ok(vec![Node::Map(entries)])
}

/// A leaf as the text a flat format writes.
fn flat_text(key: &str, node: &Node) -> Result<String, SopsError> {
    Ok(match node {
        Node::Str(s) => s.to_string(),
        Node::Bytes(b) => String::from_utf8_lossy(b).into_owned(),
        Node::Map(_) | Node::List(_) => {
            return Err(SopsError::Parse(format!("{key} is nested: this format holds only flat values")));
        }
        Node::Null => String::new(),
        other => match other.to_json() {
            Value::String(s) => s,
            v => v.to_string(),
        },
    })
}

fn write_dotenv(docs: &[Node], meta: &[(String, String)]) -> Result<Vec<u8>, SopsError> {
    let mut out = String::new();
    for doc in docs {
        let Node::Map(entries) = doc else { continue };
        for entry in entries {
            match entry {
                Entry::Comment(c) => out.push_str(&format!("#{}\n", c.text)),
                Entry::Pair(key, value) => {
                    out.push_str(&format!("{key}={}\n", flat_text(key, value)?.replace('\n', "\\n")));
                }
            }
        }
    }
    for (key, value) in meta {
        out.push_str(&format!("sops_{key}={}\n", value.replace('\n', "\\n")));
    }
    Ok(out.into_bytes())
}

/// The section keys before the first header belong to.
const DEFAULT_SECTION: &str = "DEFAULT";

/// A value of an INI line: trimmed, and unquoted from `"..."`, `'...'` or `` `...` ``.
fn ini_value(raw: &str) -> String {
    let value = raw.trim();
    for quote in ["\"\"\"", "\"", "'", "`"] {
        if value.len() >= 2 * quote.len()
            && let Some(inner) = value.strip_prefix(quote).and_then(|v| v.strip_suffix(quote))
        {
            return inner.to_owned();
        }
    }
    value.to_owned()
}

/// INI as gopkg.in/ini.v1 reads it for sops: sections become top-level maps, keys before the
/// first header go to `DEFAULT`, `;`/`#` comment lines are items before the section or key
/// they precede. The `[sops]` section is the metadata.
fn read_ini(text: &str) -> Result<Vec<Node>, SopsError> {
    let mut sections: Vec<(String, Vec<Entry>)> = Vec::new();
    let mut pending: Vec<String> = Vec::new();
    for (number, raw) in text.split('\n').enumerate() {
        let line = raw.trim_end_matches('\r').trim();
        if line.is_empty() {
            continue;
        }
        if let Some(comment) = line.strip_prefix([';', '#']) {
            pending.push(comment.trim_start_matches(['#', ';', ' ']).to_owned());
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            // The comments before a header are the section's first items (AAD `section:`).
            sections
                .push((name.trim().to_owned(), pending.drain(..).map(|c| Entry::Comment(Comment::line(c))).collect()));
            continue;
        }
        let at = line.find(['=', ':']).ok_or_else(|| {
            SopsError::Parse(format!("line {}: neither a section, a comment nor key = value", number + 1))
        })?;
        if sections.is_empty() {
            sections.push((DEFAULT_SECTION.to_owned(), Vec::new()));
        }
        if let Some((_, entries)) = sections.last_mut() {
            entries.extend(pending.drain(..).map(|c| Entry::Comment(Comment::line(c))));
            entries.push(Entry::Pair(line[..at].trim().to_owned(), Node::str(ini_value(&line[at + 1..]))));
        }
    }
    let mut meta = None;
    let mut out = Vec::new();
    for (name, entries) in sections {
        if name == "sops" {
            let pairs: Vec<(String, String)> = entries
                .into_iter()
                .filter_map(|e| match e {
                    Entry::Pair(k, v) => Some((k, v.as_str().unwrap_or_default().replace("\\n", "\n"))),
                    Entry::Comment(_) => None,
                })
                .collect();
            meta = Some(Node::from_json(&unflatten(&pairs)));
        } else {
            out.push(Entry::Pair(name, Node::Map(entries)));
        }
    }
    out.extend(meta.map(|meta| Entry::Pair("sops".into(), meta)));
    Ok(vec![Node::Map(out)])
}

/// One INI section's lines, with `=` aligned as ini.v1 writes them.
fn ini_section(entries: &[Entry], out: &mut String) -> Result<(), SopsError> {
    let width = entries
        .iter()
        .filter_map(|e| match e {
            Entry::Pair(k, _) => Some(k.chars().count()),
            Entry::Comment(_) => None,
        })
        .max()
        .unwrap_or(0);
    for entry in entries {
        match entry {
            Entry::Comment(c) => out.push_str(&format!("; {}\n", c.text)),
            Entry::Pair(key, value) => {
                let mut text = flat_text(key, value)?;
                if text.contains(['#', ';', '\n']) || text != text.trim() || text.starts_with(['"', '\'', '`']) {
                    text = if text.contains('`') { format!("\"\"\"{text}\"\"\"") } else { format!("`{text}`") };
                }
                out.push_str(&format!("{key:<width$} = {text}\n"));
            }
        }
    }
    Ok(())
}

fn write_ini(docs: &[Node], meta: &[(String, String)]) -> Result<Vec<u8>, SopsError> {
    let mut out = String::new();
    for doc in docs {
        let Node::Map(entries) = doc else { continue };
        for entry in entries {
            match entry {
                Entry::Comment(c) => out.push_str(&format!("; {}\n", c.text)),
                Entry::Pair(name, Node::Map(section)) => {
                    // Leading comments go before the header, where sops writes them.
                    let lead = section.iter().take_while(|e| matches!(e, Entry::Comment(_))).count();
                    if name != DEFAULT_SECTION {
                        ini_section(&section[..lead], &mut out)?;
                        out.push_str(&format!("[{name}]\n"));
                        ini_section(&section[lead..], &mut out)?;
                    } else {
                        ini_section(section, &mut out)?;
                    }
                    out.push('\n');
                }
                Entry::Pair(name, _) => {
                    return Err(SopsError::Parse(format!("{name} is not a section: INI values must be in sections")));
                }
            }
        }
    }
    if !meta.is_empty() {
        out.push_str("[sops]\n");
        let pairs: Vec<Entry> =
            meta.iter().map(|(k, v)| Entry::Pair(k.clone(), Node::str(v.replace('\n', "\\n")))).collect();
        ini_section(&pairs, &mut out)?;
    }
    while out.ends_with("\n\n") {
        out.pop();
    }
    Ok(out.into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ini_sections_and_comments() {
        let docs =
            Store::Ini.read_plain(b"; top\nloose = 1\n[one]\n# about k\nk = v\n[two]\nq = \"quoted\"\n").unwrap();
        let Node::Map(entries) = &docs[0] else { panic!() };
        // A comment before a key is the key's, even in the implicit DEFAULT section.
        let Entry::Pair(name, Node::Map(default)) = &entries[0] else { panic!() };
        assert_eq!((name.as_str(), &default[0]), ("DEFAULT", &Entry::Comment(Comment::line("top"))));
        assert_eq!(docs[0].get("DEFAULT").and_then(|d| d.get("loose")), Some(&Node::str("1")));
        assert_eq!(docs[0].get("two").and_then(|d| d.get("q")), Some(&Node::str("quoted")));
        let written = String::from_utf8(Store::Ini.write_plain(&docs).unwrap()).unwrap();
        // A section's leading comments are written before its header, as sops writes them.
        assert_eq!(written, "; top\nloose = 1\n\n; about k\n[one]\nk = v\n\n[two]\nq = quoted\n");
    }

    #[test]
    fn dotenv_keeps_comments_and_values_verbatim() {
        let docs = Store::Dotenv.read_plain(b"# c\nA=\"q\" x\nB=l1\\nl2\n").unwrap();
        assert_eq!(docs[0].get("A"), Some(&Node::str("\"q\" x")));
        assert_eq!(docs[0].get("B"), Some(&Node::str("l1\nl2")));
        assert_eq!(Store::Dotenv.write_plain(&docs).unwrap(), b"# c\nA=\"q\" x\nB=l1\\nl2\n");
    }

    #[test]
    fn binary_keeps_any_bytes() {
        let bytes = [0u8, 159, 146, 150, 10];
        let docs = Store::Binary.read_plain(&bytes).unwrap();
        assert_eq!(Store::Binary.write_plain(&docs).unwrap(), bytes);
    }
}
