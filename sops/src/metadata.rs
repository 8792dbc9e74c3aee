//! The `sops` metadata block: taking it out of the documents, the MAC's AAD, `lastmodified`,
//! the 3.13 layout, the options a file was encrypted with, and dotenv's flattened form.

use sealant_core::error::quoted;
use serde_json::{Map, Value};

use crate::keys::{AgeEntry, check_only_age, key_groups, other_key_types, recipients};
use crate::rules::{Rules, Selection};
use crate::tree::Node;
use crate::{EncryptOptions, SopsError};

/// The `sops` block as sealant uses it, read and checked once (sops' `ToInternal`): the
/// modification time the MAC is bound to, the MAC, the age key groups, the Shamir threshold,
/// the selection rules and the key types sealant carries but cannot wrap for. The raw block stays
/// the source for writing, so that what is not modelled here is written back as it was.
#[derive(Debug)]
pub struct Metadata {
    /// `lastmodified` as sops formats it for the MAC's AAD.
    pub lastmodified: String,
    pub mac: Option<String>,
    /// Age recipients and their wrapped data-key parts, per key group.
    pub key_groups: Vec<Vec<AgeEntry>>,
    /// Parts needed for the data key: 1 for one group, else `shamir_threshold` (default: all).
    pub threshold: usize,
    pub(crate) rules: Rules,
    /// Key types other than age that hold entries (pgp, kms, ...).
    pub other_key_types: Vec<&'static str>,
}

impl Metadata {
    /// Read and check `meta`: every field sealant uses has the type sops gives it (numbers and
    /// booleans may be strings, as the dotenv and INI stores keep them), regexes compile, and
    /// `lastmodified` is a time.
    pub fn parse(meta: &Value) -> Result<Metadata, SopsError> {
        if !meta.is_object() {
            return Err(SopsError::NoMetadata);
        }
        let invalid = |what: String| SopsError::InvalidMetadata(what);
        let mac = match meta.get("mac") {
            None | Some(Value::Null) => None,
            Some(Value::String(m)) => Some(m.clone()),
            Some(_) => return Err(invalid("mac is not a string".into())),
        };
        for group in std::iter::once(meta).chain(meta.get("key_groups").and_then(Value::as_array).into_iter().flatten())
        {
            match group.get("age") {
                None | Some(Value::Null) => {}
                Some(Value::Array(entries)) => {
                    if entries.iter().any(|e| {
                        !e.get("recipient").is_some_and(Value::is_string) || !e.get("enc").is_some_and(Value::is_string)
                    }) {
                        return Err(invalid("an age entry needs a recipient and an enc string".into()));
                    }
                }
                Some(_) => return Err(invalid("age is not a list".into())),
            }
        }
        if meta.get("key_groups").is_some_and(|g| !g.is_array() && !g.is_null()) {
            return Err(invalid("key_groups is not a list".into()));
        }
        let key_groups = key_groups(meta);
        let threshold = match meta.get("shamir_threshold") {
            None | Some(Value::Null) => key_groups.len(),
            Some(Value::Number(n)) => {
                n.as_u64().map(|n| n as usize).ok_or_else(|| invalid("shamir_threshold is not a count".into()))?
            }
            Some(Value::String(n)) => {
                n.parse().map_err(|_| invalid(format!("shamir_threshold {} is not a count", quoted(n))))?
            }
            Some(_) => return Err(invalid("shamir_threshold is not a count".into())),
        };
        let threshold = if key_groups.len() <= 1 { 1 } else { threshold.max(1) };
        Ok(Metadata {
            lastmodified: mac_aad(meta)?,
            mac,
            key_groups,
            threshold,
            rules: Rules::from(meta)?,
            other_key_types: other_key_types(meta),
        })
    }
}

pub(crate) fn mac_aad(meta: &Value) -> Result<String, SopsError> {
    let raw =
        meta.get("lastmodified").and_then(Value::as_str).ok_or(SopsError::InvalidMetadata("no lastmodified".into()))?;
    let parsed = time::OffsetDateTime::parse(raw, &time::format_description::well_known::Rfc3339)
        .map_err(|_| SopsError::InvalidMetadata(format!("lastmodified {} is not RFC 3339", quoted(raw))))?;
    lastmodified(parsed)
}

/// A time as sops writes `lastmodified`: RFC 3339 in UTC, whole seconds.
pub(crate) fn lastmodified(time: time::OffsetDateTime) -> Result<String, SopsError> {
    time.to_offset(time::UtcOffset::UTC)
        .format(time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z"))
        .map_err(|_| SopsError::InvalidMetadata("lastmodified cannot be written".into()))
}

/// Take the `sops` block out of every document; the first one's is the file's.
pub fn take_metadata(docs: &mut [Node]) -> Result<Value, SopsError> {
    let mut meta = None;
    for doc in docs.iter_mut() {
        if let Some(m) = doc.remove("sops")
            && meta.is_none()
        {
            meta = Some(m.to_json());
        }
    }
    meta.filter(Value::is_object).ok_or(SopsError::NoMetadata)
}

/// Undo the dotenv flattening of metadata (`sops_age__list_0__map_enc` and the like).
pub fn unflatten(pairs: &[(String, String)]) -> Value {
    let mut root = Value::Object(Map::new());
    for (key, value) in pairs {
        let mut node = &mut root;
        let mut segments = key.split("__").peekable();
        while let Some(segment) = segments.next() {
            let last = segments.peek().is_none();
            let (is_list, name) = match (segment.strip_prefix("list_"), segment.strip_prefix("map_")) {
                (Some(i), _) => (true, i.to_owned()),
                (_, Some(k)) => (false, k.to_owned()),
                _ => (false, segment.to_owned()),
            };
            if is_list {
                let index: usize = name.parse().unwrap_or(0);
                if !node.is_array() {
                    *node = Value::Array(Vec::new());
                }
                let Value::Array(items) = node else { break };
                while items.len() <= index {
                    items.push(Value::Null);
                }
                node = &mut items[index];
            } else {
                if !node.is_object() {
                    *node = Value::Object(Map::new());
                }
                let Value::Object(map) = node else { break };
                node = map.entry(name).or_insert(Value::Null);
            }
            if last {
                *node = match value.as_str() {
                    "true" => Value::Bool(true),
                    "false" => Value::Bool(false),
                    v => v.parse::<i64>().map(Value::from).unwrap_or_else(|_| Value::String(v.to_owned())),
                };
            }
        }
    }
    root
}

/// The sops metadata layout we write (3.13's: keys sorted at every level).
pub const LAYOUT_VERSION: &str = "3.13.3";

/// Metadata fields in the 3.13 layout: keys sorted.
pub(crate) fn sorted(fields: impl IntoIterator<Item = (String, Value)>) -> Value {
    let sorted: std::collections::BTreeMap<String, Value> = fields.into_iter().collect();
    Value::Object(sorted.into_iter().collect())
}

/// The options a file was encrypted with, read back from its metadata (for `rotate`, which
/// makes a new data key: refused when other key types hold the old one, as sealant cannot
/// wrap the new one for them and would otherwise drop them).
pub fn options_from_metadata(meta: &Value) -> Result<EncryptOptions, SopsError> {
    check_only_age(meta)?;
    Ok(rotate_options(meta))
}

pub(crate) fn rotate_options(meta: &Value) -> EncryptOptions {
    let selection =
        Selection::from_fields(|k| meta.get(k).and_then(Value::as_str).filter(|s| !s.is_empty()).map(str::to_owned))
            .unwrap_or_default();
    EncryptOptions {
        key_groups: recipients(meta),
        shamir_threshold: meta.get("shamir_threshold").and_then(Value::as_u64).map(|n| n as usize),
        selection,
        mac_only_encrypted: meta.get("mac_only_encrypted").is_some_and(|v| v == true || v == "true"),
    }
}

/// Flatten metadata for dotenv (`sops_` prefix): lists as `__list_<i>`, maps as `__map_<key>`.
pub fn flatten(meta: &Value, prefix: &str, out: &mut Vec<(String, String)>) {
    match meta {
        Value::Object(map) => {
            for (k, v) in map {
                let key = if prefix.is_empty() { k.clone() } else { format!("{prefix}__map_{k}") };
                flatten(v, &key, out);
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                flatten(v, &format!("{prefix}__list_{i}"), out);
            }
        }
        Value::String(s) => out.push((prefix.to_owned(), s.clone())),
        Value::Null => {}
        other => out.push((prefix.to_owned(), other.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(extra: Value) -> Value {
        let mut m = serde_json::json!({
            "lastmodified": "2025-01-02T03:04:05Z",
            "mac": "ENC[AES256_GCM,data:x,iv:y,tag:z,type:str]",
            "key_groups": [
                {"age": [{"recipient": "age1a", "enc": "A"}]},
                {"age": [{"recipient": "age1b", "enc": "B"}]},
                {"age": [{"recipient": "age1c", "enc": "C"}]},
            ],
            "version": "3.11.0",
        });
        m.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        m
    }

    #[test]
    fn read_once_with_the_types_sops_gives() {
        let parsed = Metadata::parse(&meta(serde_json::json!({"shamir_threshold": 2}))).unwrap();
        assert_eq!(parsed.threshold, 2);
        assert_eq!(parsed.key_groups.len(), 3);
        assert_eq!(parsed.lastmodified, "2025-01-02T03:04:05Z");
        // The dotenv and INI stores keep numbers as strings.
        let dotenv = Metadata::parse(&meta(serde_json::json!({"shamir_threshold": "2"}))).unwrap();
        assert_eq!(dotenv.threshold, 2);
        assert_eq!(Metadata::parse(&meta(serde_json::json!({}))).unwrap().threshold, 3, "default: every group");
    }

    #[test]
    fn wrong_types_are_refused_with_what_is_wrong() {
        for (extra, says) in [
            (serde_json::json!({"shamir_threshold": "two"}), "shamir_threshold"),
            (serde_json::json!({"mac": 5}), "mac is not a string"),
            (serde_json::json!({"key_groups": "x"}), "key_groups is not a list"),
            (serde_json::json!({"key_groups": [{"age": [{"recipient": "age1a"}]}]}), "needs a recipient and an enc"),
            (serde_json::json!({"lastmodified": "yesterday"}), "lastmodified"),
            (serde_json::json!({"encrypted_regex": "("}), "encrypted_regex"),
        ] {
            let err = Metadata::parse(&meta(extra.clone())).unwrap_err().to_string();
            assert!(err.contains(says), "{extra}: {err}");
        }
    }
}
