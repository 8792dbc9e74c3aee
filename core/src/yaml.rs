//! Kubernetes documents in YAML or JSON (serde_yaml_ng, behind this module), with their bounds. SOPS
//! files, which need comments and key order kept, have their own reader in `sops::yaml`.

use serde_json::Value;

/// Deepest flow nesting (`[`, `{`) a document may have. Kubernetes objects stay far below it;
/// parsing cost grows with the square of the depth, so deeper input is refused before parsing.
pub const MAX_NESTING: usize = 100;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum YamlError {
    #[error("the document is nested deeper than {MAX_NESTING} levels")]
    TooDeep,
    #[error("invalid YAML: {0}")]
    Yaml(String),
    #[error("invalid JSON: {0}")]
    Json(String),
    #[error("cannot write YAML: {0}")]
    Emit(String),
    #[error("the document has more than {0} nodes")]
    TooManyNodes(usize),
    #[error("the document uses YAML aliases, which are not accepted here")]
    Alias,
}

/// Whether `text` looks like JSON (a stream of JSON values) rather than YAML.
pub fn looks_like_json(text: &str) -> bool {
    text.trim_start_matches('\u{feff}').trim_start().starts_with(['{', '['])
}

/// Every non-empty document of a multi-document YAML text or a JSON stream.
///
/// The error text carries the parser's position, never the document's content.
pub fn parse_documents(text: &str) -> Result<Vec<Value>, YamlError> {
    let text = text.trim_start_matches('\u{feff}');
    if flow_depth(text) > MAX_NESTING {
        return Err(YamlError::TooDeep);
    }
    if looks_like_json(text) {
        // YAML in flow style (`{kind: Secret, ...}`, which kustomize reads) looks like JSON too:
        // JSON first, then YAML, and JSON's error if neither reads it.
        return parse_json_stream(text).or_else(|json_error| parse_yaml_stream(text).map_err(|_| json_error));
    }
    parse_yaml_stream(text)
}

fn parse_json_stream(text: &str) -> Result<Vec<Value>, YamlError> {
    let mut docs = Vec::new();
    for doc in serde_json::Deserializer::from_str(text).into_iter::<Value>() {
        let doc = doc.map_err(|e| YamlError::Json(format!("line {} column {}", e.line(), e.column())))?;
        if !doc.is_null() {
            docs.push(doc);
        }
    }
    Ok(docs)
}

fn parse_yaml_stream(text: &str) -> Result<Vec<Value>, YamlError> {
    let mut docs = Vec::new();
    for de in serde_yaml_ng::Deserializer::from_str(text) {
        let doc = <Value as serde::Deserialize>::deserialize(de).map_err(|e| YamlError::Yaml(describe(&e)))?;
        if !doc.is_null() {
            docs.push(doc);
        }
    }
    Ok(docs)
}

/// Exactly like [`parse_documents`], for text from the network: refused, before any tree is
/// built, when it holds more than `max_nodes` nodes (scalars, sequences and mappings, counted by
/// a streaming pass that allocates nothing per node) or any YAML alias (whose expansion would
/// cost more than the text). The tree then costs a bounded multiple of the text's size plus
/// `max_nodes` small nodes.
pub fn parse_documents_bounded(text: &str, max_nodes: usize) -> Result<Vec<Value>, YamlError> {
    let text = text.trim_start_matches('\u{feff}');
    if flow_depth(text) > MAX_NESTING {
        return Err(YamlError::TooDeep);
    }
    if looks_like_json(text) {
        let count = std::cell::Cell::new(0usize);
        let mut stream = serde_json::Deserializer::from_str(text);
        loop {
            match serde::de::DeserializeSeed::deserialize(CountNodes { count: &count, max: max_nodes }, &mut stream) {
                Ok(()) => {}
                Err(_) if count.get() > max_nodes => return Err(YamlError::TooManyNodes(max_nodes)),
                Err(e) if e.is_eof() => break,
                Err(e) => return Err(YamlError::Json(format!("line {} column {}", e.line(), e.column()))),
            }
        }
    } else {
        let mut nodes = 0usize;
        for event in saphyr_parser::Parser::new_from_str(text) {
            let (event, _) = event.map_err(|e| YamlError::Yaml(format!("line {}", e.marker().line())))?;
            match event {
                saphyr_parser::Event::Alias(_) => return Err(YamlError::Alias),
                saphyr_parser::Event::Scalar(..)
                | saphyr_parser::Event::SequenceStart(..)
                | saphyr_parser::Event::MappingStart(..) => nodes += 1,
                _ => {}
            }
            if nodes > max_nodes {
                return Err(YamlError::TooManyNodes(max_nodes));
            }
        }
    }
    parse_documents(text)
}

/// Counts the nodes of one JSON value as serde reads it, keeping none of them; fails once there
/// are more than `max`.
struct CountNodes<'a> {
    count: &'a std::cell::Cell<usize>,
    max: usize,
}

impl CountNodes<'_> {
    fn one<E: serde::de::Error>(&self) -> Result<(), E> {
        self.count.set(self.count.get() + 1);
        if self.count.get() > self.max { Err(E::custom("too many nodes")) } else { Ok(()) }
    }

    fn again(&self) -> Self {
        CountNodes { count: self.count, max: self.max }
    }
}

impl<'de> serde::de::DeserializeSeed<'de> for CountNodes<'_> {
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for CountNodes<'_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E: serde::de::Error>(self, _: bool) -> Result<(), E> {
        self.one()
    }

    fn visit_i64<E: serde::de::Error>(self, _: i64) -> Result<(), E> {
        self.one()
    }

    fn visit_u64<E: serde::de::Error>(self, _: u64) -> Result<(), E> {
        self.one()
    }

    fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<(), E> {
        self.one()
    }

    fn visit_str<E: serde::de::Error>(self, _: &str) -> Result<(), E> {
        self.one()
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<(), E> {
        self.one()
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        self.one()?;
        while seq.next_element_seed(self.again())?.is_some() {}
        Ok(())
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        self.one()?;
        while map.next_key_seed(self.again())?.is_some() {
            map.next_value_seed(self.again())?;
        }
        Ok(())
    }
}

/// The deepest nesting of `[`/`{` in `text`, outside quoted scalars and comments: a linear
/// scan that errs towards counting too much (brackets in plain scalars count too).
pub fn flow_depth(text: &str) -> usize {
    let bytes = text.as_bytes();
    let (mut depth, mut deepest, mut i) = (0usize, 0usize, 0usize);
    // The last byte that was not a space: a quote after an indicator opens a quoted scalar,
    // one inside a word (`don't`) does not.
    let mut before = b'\n';
    while i < bytes.len() {
        let b = bytes[i];
        match b {
            b'[' | b'{' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            b'#' if i == 0 || matches!(bytes[i - 1], b' ' | b'\t' | b'\n') => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
                before = b'\n';
                continue;
            }
            b'"' | b'\'' if matches!(before, b'\n' | b':' | b',' | b'[' | b'{' | b'-' | b'?') => {
                i += 1;
                while i < bytes.len() {
                    match bytes[i] {
                        b'\\' if b == b'"' => i += 1,
                        b'\'' if b == b'\'' && bytes.get(i + 1) == Some(&b'\'') => i += 1,
                        c if c == b => break,
                        _ => {}
                    }
                    i += 1;
                }
            }
            _ => {}
        }
        if !matches!(b, b' ' | b'\t') {
            before = b;
        }
        i += 1;
    }
    deepest
}

fn describe(e: &serde_yaml_ng::Error) -> String {
    match e.location() {
        Some(at) => format!("line {} column {}", at.line(), at.column()),
        None => "the document is not valid".to_owned(),
    }
}

/// The texts of a YAML stream's documents, each with the line it starts on (1-based). A `---`
/// line goes with the document it opens; comments before the first document go with the first.
/// For edits that must keep everything else of a file exactly as it was.
pub fn split_documents(text: &str) -> Vec<(usize, String)> {
    let mut docs = vec![(1, String::new())];
    let mut has_content = false;
    for (i, line) in text.split_inclusive('\n').enumerate() {
        if line.starts_with("---") {
            if has_content {
                docs.push((i + 1, String::new()));
                has_content = false;
            }
        } else if !line.trim().is_empty() && !line.trim_start().starts_with('#') {
            has_content = true;
        }
        if let Some((_, doc)) = docs.last_mut() {
            doc.push_str(line);
        }
    }
    docs
}

/// One document as YAML with map keys sorted (what kubectl and kubeseal print), starting `---`.
pub fn to_yaml_document(value: &Value) -> Result<String, YamlError> {
    let body = serde_yaml_ng::to_string(&sorted(value)).map_err(|e| YamlError::Emit(e.to_string()))?;
    Ok(format!("---\n{body}"))
}

/// One document as YAML with keys in their given order (for files whose order matters).
pub fn to_yaml_in_order(value: &Value) -> Result<String, YamlError> {
    serde_yaml_ng::to_string(value).map_err(|e| YamlError::Emit(e.to_string()))
}

/// A copy of `value` with every map's keys in sorted order.
pub fn sorted(value: &Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<_> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            Value::Object(entries.into_iter().map(|(k, v)| (k.clone(), sorted(v))).collect())
        }
        Value::Array(items) => Value::Array(items.iter().map(sorted).collect()),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bounded_parse_refuses_many_tiny_nodes_before_building_a_tree() {
        let yaml = "- 0\n".repeat(10_000);
        assert!(matches!(parse_documents_bounded(&yaml, 1000), Err(YamlError::TooManyNodes(1000))));
        let json = format!("[{}0]", "0,".repeat(10_000));
        assert!(matches!(parse_documents_bounded(&json, 1000), Err(YamlError::TooManyNodes(1000))));
        assert!(matches!(parse_documents_bounded("a: &x [1]\nb: *x\n", 1000), Err(YamlError::Alias)));
        let doc = "{\"kind\": \"SealedSecret\", \"spec\": {\"encryptedData\": {\"a\": \"b\"}}}";
        assert_eq!(parse_documents_bounded(doc, 1000).unwrap(), parse_documents(doc).unwrap());
        let doc = "kind: SealedSecret\nspec:\n  encryptedData:\n    a: b\n";
        assert_eq!(parse_documents_bounded(doc, 9).unwrap(), parse_documents(doc).unwrap());
        assert!(parse_documents_bounded(doc, 8).is_err(), "three mappings and six scalars");
    }

    #[test]
    fn deep_nesting_is_refused_before_parsing() {
        let deep = format!("a: {}", "[".repeat(40_000));
        assert!(matches!(parse_documents(&deep), Err(YamlError::TooDeep)));
        let deep_json = format!("{}{}", "[".repeat(MAX_NESTING + 1), "]".repeat(MAX_NESTING + 1));
        assert!(matches!(parse_documents(&deep_json), Err(YamlError::TooDeep)));
        // Brackets inside quoted scalars and comments are text, and a word's apostrophe opens nothing.
        let quoted = format!("a: '{0}'\nb: \"{0}\" # {0}\nc: [\"{0}\", '{0}']\n", "[".repeat(500));
        assert_eq!(flow_depth(&quoted), 1);
        assert_eq!(flow_depth(&format!("a: don't {}", "[".repeat(200))), 200);
        assert_eq!(parse_documents("a: [[1], {b: [2]}]").map(|d| d.len()).ok(), Some(1));
    }

    #[test]
    fn multi_document_yaml_skips_empty_documents() {
        let docs = parse_documents("---\na: 1\n---\n---\nb: 2\n").unwrap();
        assert_eq!(docs.len(), 2);
    }

    #[test]
    fn documents_split_on_separators_with_their_lines() {
        let docs = split_documents("# head\n---\na: 1\n---\nb: 2\n");
        assert_eq!(docs, [(1, "# head\n---\na: 1\n".to_owned()), (4, "---\nb: 2\n".to_owned())]);
    }

    #[test]
    fn json_stream() {
        let docs = parse_documents("{\"a\":1}\n{\"b\":2}").unwrap();
        assert_eq!(docs.len(), 2);
    }

    #[test]
    fn errors_do_not_echo_content() {
        let err = parse_documents("a: [secret-value").unwrap_err().to_string();
        assert!(!err.contains("secret-value"), "{err}");
    }
}
