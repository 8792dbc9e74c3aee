//! The tree of a SOPS document: ordered maps, lists, typed scalars and comments.
//!
//! Comments are items of the map or list they appear in, as in sops, so that they can be
//! encrypted and written back where they were. Plaintext strings live in zeroizing buffers.

use serde_json::{Map, Value};
use zeroize::Zeroizing;

/// One node of a document.
#[derive(Clone, Debug, PartialEq)]
pub enum Node {
    Map(Vec<Entry>),
    List(Vec<Node>),
    Str(Zeroizing<String>),
    /// Bytes that are not UTF-8: a binary file's `data`, or a decrypted value that is not text.
    Bytes(Zeroizing<Vec<u8>>),
    Int(i64),
    Float(f64),
    Bool(bool),
    /// A timestamp, as RFC 3339 text with nanoseconds trimmed (Go's `MarshalText`).
    Time(String),
    Null,
    /// A comment inside a list.
    Comment(Comment),
}

/// One item of a map: a key and its value, or a comment.
#[derive(Clone, Debug, PartialEq)]
pub enum Entry {
    Pair(String, Node),
    Comment(Comment),
}

/// A comment: what follows the `#`, placed before the key or item it belongs to. An inline one
/// (`key: value # text`) trailed that key's line, and sops 3.13 writes it there again in an
/// encrypted file (3.11 and 3.12 moved it to a line of its own; decrypted output does too).
#[derive(Clone, Debug, PartialEq)]
pub struct Comment {
    pub text: String,
    pub inline: bool,
}

impl Comment {
    /// A comment on a line of its own.
    pub fn line(text: impl Into<String>) -> Comment {
        Comment { text: text.into(), inline: false }
    }
}

impl Node {
    pub fn str(text: impl Into<String>) -> Node {
        Node::Str(Zeroizing::new(text.into()))
    }

    /// The value under `key` of a map.
    pub fn get(&self, key: &str) -> Option<&Node> {
        match self {
            Node::Map(entries) => entries.iter().find_map(|e| match e {
                Entry::Pair(k, v) if k == key => Some(v),
                _ => None,
            }),
            _ => None,
        }
    }

    pub fn get_mut(&mut self, key: &str) -> Option<&mut Node> {
        match self {
            Node::Map(entries) => entries.iter_mut().find_map(|e| match e {
                Entry::Pair(k, v) if k == key => Some(v),
                _ => None,
            }),
            _ => None,
        }
    }

    /// Set `key` of a map (in place if present, else appended). Does nothing on other nodes.
    pub fn insert(&mut self, key: &str, value: Node) {
        if let Some(slot) = self.get_mut(key) {
            *slot = value;
        } else if let Node::Map(entries) = self {
            entries.push(Entry::Pair(key.to_owned(), value));
        }
    }

    /// Remove `key` of a map; the removed value.
    pub fn remove(&mut self, key: &str) -> Option<Node> {
        let Node::Map(entries) = self else { return None };
        let at = entries.iter().position(|e| matches!(e, Entry::Pair(k, _) if k == key))?;
        match entries.remove(at) {
            Entry::Pair(_, v) => Some(v),
            Entry::Comment(_) => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Node::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The tree as JSON, without its comments (metadata, the JSON store, `--extract`).
    pub fn to_json(&self) -> Value {
        match self {
            Node::Map(entries) => Value::Object(
                entries
                    .iter()
                    .filter_map(|e| match e {
                        Entry::Pair(k, v) => Some((k.clone(), v.to_json())),
                        Entry::Comment(_) => None,
                    })
                    .collect::<Map<String, Value>>(),
            ),
            Node::List(items) => {
                Value::Array(items.iter().filter(|n| !matches!(n, Node::Comment(_))).map(Node::to_json).collect())
            }
            Node::Str(s) => Value::String(s.to_string()),
            Node::Bytes(b) => Value::String(String::from_utf8_lossy(b).into_owned()),
            Node::Int(i) => Value::from(*i),
            // A whole float is written without a fraction, as Go's encoders do.
            Node::Float(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => Value::from(*f as i64),
            Node::Float(f) => serde_json::Number::from_f64(*f).map_or(Value::Null, Value::Number),
            Node::Bool(b) => Value::Bool(*b),
            Node::Time(t) => Value::String(t.clone()),
            Node::Null | Node::Comment(_) => Value::Null,
        }
    }

    /// A tree from JSON: integers that fit in i64 are `Int`, other numbers `Float` (sops 3.13.2).
    pub fn from_json(value: &Value) -> Node {
        match value {
            Value::Object(map) => {
                Node::Map(map.iter().map(|(k, v)| Entry::Pair(k.clone(), Node::from_json(v))).collect())
            }
            Value::Array(items) => Node::List(items.iter().map(Node::from_json).collect()),
            Value::String(s) => Node::str(s.clone()),
            Value::Number(n) => match n.as_i64() {
                Some(i) => Node::Int(i),
                None => Node::Float(n.as_f64().unwrap_or_default()),
            },
            Value::Bool(b) => Node::Bool(*b),
            Value::Null => Node::Null,
        }
    }
}

/// Go's `strconv.FormatFloat(f, 'f', -1, 64)`: shortest digits, never an exponent.
pub fn go_float(f: f64) -> String {
    if f.is_nan() {
        "NaN".into()
    } else if f.is_infinite() {
        if f > 0.0 { "+Inf".into() } else { "-Inf".into() }
    } else {
        format!("{f}")
    }
}

/// Go's `strconv.FormatFloat(f, 'g', -1, 64)`, as yaml.v3 writes floats (`1.5e+20`, `3.14`, `1`).
pub fn go_float_g(f: f64) -> String {
    if !f.is_finite() {
        return go_float(f);
    }
    // Shortest digits in exponent form; Go uses it below 1e-4 and from 1e6 on.
    let text = format!("{f:e}");
    let (mantissa, exponent) = text.split_once('e').unwrap_or((&text, "0"));
    let exp: i32 = exponent.parse().unwrap_or_default();
    if (-4..6).contains(&exp) {
        return go_float(f);
    }
    let (sign, digits) = exponent.strip_prefix('-').map_or(("+", exponent), |d| ("-", d));
    format!("{mantissa}e{sign}{digits:0>2}")
}

// Paths into a tree, as `sops set`, `unset` and `decrypt --extract` take them.

/// One step of a `["key"][0]` path.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    Key(String),
    Index(usize),
}

impl std::fmt::Display for Step {
    /// As the path spells it: `["key"]` or `[0]`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Step::Key(key) => write!(f, "[{}]", sealant_core::error::quoted(key)),
            Step::Index(i) => write!(f, "[{i}]"),
        }
    }
}

/// Parse a path as sops spells it, `["a"]["b"][0]`; `None` when it is not one.
pub fn parse_path(path: &str) -> Option<Vec<Step>> {
    let mut steps = Vec::new();
    let mut rest = path.trim();
    while !rest.is_empty() {
        let inner = rest.strip_prefix('[')?;
        let end = match inner.strip_prefix('"') {
            Some(quoted) => quoted.find('"').map(|i| i + 2),
            None => inner.find(']'),
        }?;
        let (segment, after) = inner.split_at(end);
        rest = after.strip_prefix(']')?;
        steps.push(match segment.strip_prefix('"').and_then(|s| s.strip_suffix('"')) {
            Some(key) => Step::Key(key.to_owned()),
            None => Step::Index(segment.trim().parse().ok()?),
        });
    }
    (!steps.is_empty()).then_some(steps)
}

/// The items of a list without its comments, as indices count them.
fn list_item(items: &mut [Node], index: usize) -> Option<&mut Node> {
    items.iter_mut().filter(|n| !matches!(n, Node::Comment(_))).nth(index)
}

/// The node one step below `node`, if it has one there.
pub fn step_into<'a>(node: &'a mut Node, step: &Step) -> Option<&'a mut Node> {
    match (node, step) {
        (node @ Node::Map(_), Step::Key(key)) => node.get_mut(key),
        (Node::List(items), Step::Index(i)) => list_item(items, *i),
        _ => None,
    }
}

/// Put `value` at `steps`, creating maps on the way (and appending to a list at its end).
pub fn set_path(node: &mut Node, steps: &[Step], value: Node) -> Result<(), String> {
    let Some((step, rest)) = steps.split_first() else {
        *node = value;
        return Ok(());
    };
    if let Node::Map(_) = node
        && let Step::Key(key) = step
        && node.get(key).is_none()
    {
        node.insert(key, Node::Map(Vec::new()));
    }
    if let (Node::List(items), Step::Index(i)) = (&mut *node, step)
        && items.iter().filter(|n| !matches!(n, Node::Comment(_))).count() == *i
    {
        items.push(Node::Null);
    }
    match step_into(node, step) {
        Some(next) => set_path(next, rest, value),
        None => Err(format!("{step} does not fit the value there")),
    }
}

/// Remove what `steps` point at; whether it was there.
pub fn unset_path(node: &mut Node, steps: &[Step]) -> bool {
    match steps {
        [] => false,
        [Step::Key(key)] => node.remove(key).is_some(),
        [Step::Index(i)] => match node {
            Node::List(items) => {
                let at =
                    items.iter().enumerate().filter(|(_, n)| !matches!(n, Node::Comment(_))).nth(*i).map(|(at, _)| at);
                at.map(|at| items.remove(at)).is_some()
            }
            _ => false,
        },
        [step, rest @ ..] => step_into(node, step).is_some_and(|next| unset_path(next, rest)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_print_like_go() {
        assert_eq!(go_float(1.5e20), "150000000000000000000");
        assert_eq!(go_float(2.75), "2.75");
        assert_eq!(go_float(0.0000001), "0.0000001");
        assert_eq!(go_float_g(1.5e20), "1.5e+20");
        assert_eq!(go_float_g(2.75), "2.75");
        assert_eq!(go_float_g(1.0), "1");
        assert_eq!(go_float_g(1234567.0), "1.234567e+06");
        assert_eq!(go_float_g(0.00001), "1e-05");
        assert_eq!(go_float_g(0.0001), "0.0001");
    }

    #[test]
    fn json_round_trip_drops_comments() {
        let tree = Node::Map(vec![
            Entry::Comment(Comment::line(" c")),
            Entry::Pair(
                "a".into(),
                Node::List(vec![Node::Int(1), Node::Comment(Comment::line("x")), Node::Float(2.5)]),
            ),
        ]);
        let json = tree.to_json();
        assert_eq!(json, serde_json::json!({"a": [1, 2.5]}));
        assert_eq!(Node::from_json(&json).to_json(), json);
    }

    #[test]
    fn paths_parse_as_sops_spells_them() {
        assert_eq!(
            parse_path(r#"["a"]["b c"][2]"#),
            Some(vec![Step::Key("a".into()), Step::Key("b c".into()), Step::Index(2)])
        );
        for bad in ["", "a.b", r#"["a""#, "[x]", r#"["a"]b"#] {
            assert_eq!(parse_path(bad), None, "{bad}");
        }
    }

    #[test]
    fn set_creates_maps_and_unset_removes() {
        let mut doc = Node::Map(Vec::new());
        let path = parse_path(r#"["a"]["b"]"#).unwrap();
        set_path(&mut doc, &path, Node::Null).unwrap();
        assert!(doc.get("a").and_then(|a| a.get("b")).is_some());
        assert!(unset_path(&mut doc, &path));
        assert!(!unset_path(&mut doc, &path), "gone");
        assert_eq!(set_path(&mut doc, &[Step::Index(0)], Node::Null).unwrap_err(), "[0] does not fit the value there");
    }
}
