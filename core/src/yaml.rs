//! The one place that knows which YAML crate we use (serde_yaml_ng): documents in, documents out.

use serde_json::Value;

#[derive(Debug, thiserror::Error)]
pub enum YamlError {
    #[error("invalid YAML: {0}")]
    Yaml(String),
    #[error("invalid JSON: {0}")]
    Json(String),
    #[error("cannot write YAML: {0}")]
    Emit(String),
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
    if looks_like_json(text) {
        let mut docs = Vec::new();
        for doc in serde_json::Deserializer::from_str(text).into_iter::<Value>() {
            let doc = doc.map_err(|e| YamlError::Json(format!("line {} column {}", e.line(), e.column())))?;
            if !doc.is_null() {
                docs.push(doc);
            }
        }
        return Ok(docs);
    }
    let mut docs = Vec::new();
    for de in serde_yaml_ng::Deserializer::from_str(text) {
        let doc = <Value as serde::Deserialize>::deserialize(de).map_err(|e| YamlError::Yaml(describe(&e)))?;
        if !doc.is_null() {
            docs.push(doc);
        }
    }
    Ok(docs)
}

fn describe(e: &serde_yaml_ng::Error) -> String {
    match e.location() {
        Some(at) => format!("line {} column {}", at.line(), at.column()),
        None => "the document is not valid".to_owned(),
    }
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
    fn multi_document_yaml_skips_empty_documents() {
        let docs = parse_documents("---\na: 1\n---\n---\nb: 2\n").unwrap();
        assert_eq!(docs.len(), 2);
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
