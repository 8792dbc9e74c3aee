//! `.sops.yaml`: the creation rule that applies to a file, as sops picks it (the first whose
//! `path_regex` matches the path relative to the config file's directory).

use serde_json::Value;

use crate::Selection;

/// A creation rule's settings for one file.
#[derive(Debug, Default)]
pub struct Rule {
    /// Age recipients per key group (one group when the rule has no `key_groups`).
    pub key_groups: Vec<Vec<String>>,
    pub shamir_threshold: Option<usize>,
    pub selection: Option<Selection>,
    pub mac_only_encrypted: bool,
}

/// Why a `.sops.yaml` cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    #[error("it is not YAML")]
    Parse(#[source] sealant_core::yaml::YamlError),
    #[error("invalid path_regex {}: {}", sealant_core::error::quoted(.0), .1)]
    PathRegex(String, String),
}

/// Recipients written as `a,b` or as a list.
pub fn split_keys(value: Option<&Value>) -> Vec<String> {
    match value {
        Some(Value::String(s)) => s.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect(),
        Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).map(|s| s.trim().to_owned()).collect(),
        _ => Vec::new(),
    }
}

/// The first creation rule of `config` (a `.sops.yaml`'s text) whose `path_regex` matches
/// `relative`, the file's path relative to the config's directory.
pub fn creation_rule(config: &str, relative: &str) -> Result<Option<Rule>, ConfigError> {
    let docs = sealant_core::yaml::parse_documents(config).map_err(ConfigError::Parse)?;
    let rules =
        docs.first().and_then(|d| d.get("creation_rules")).and_then(Value::as_array).cloned().unwrap_or_default();
    for rule in rules {
        if let Some(pattern) = rule.get("path_regex").and_then(Value::as_str) {
            let regex = crate::rules::bounded_regex(pattern)
                .map_err(|e| ConfigError::PathRegex(pattern.to_owned(), crate::rules::regex_problem(&e)))?;
            if !regex.is_match(relative) {
                continue;
            }
        }
        let mut key_groups: Vec<Vec<String>> = rule
            .get("key_groups")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(|g| split_keys(g.get("age")))
            .collect();
        if key_groups.is_empty() {
            key_groups.push(split_keys(rule.get("age")));
        }
        let selection = Selection::from_fields(|k| rule.get(k).and_then(Value::as_str).map(str::to_owned));
        return Ok(Some(Rule {
            key_groups,
            shamir_threshold: rule.get("shamir_threshold").and_then(Value::as_u64).map(|n| n as usize),
            selection,
            mac_only_encrypted: rule.get("mac_only_encrypted").and_then(Value::as_bool).unwrap_or(false),
        }));
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: &str = "creation_rules:\n  - path_regex: ^prod/.*\\.yaml$\n    key_groups:\n      - age: [age1a, age1b]\n      - age: age1c\n    shamir_threshold: 2\n  - path_regex: \\.yaml$\n    age: age1d, age1e\n    encrypted_regex: ^data$\n";

    #[test]
    fn the_first_matching_rule_applies() {
        let prod = creation_rule(CONFIG, "prod/db.yaml").unwrap().unwrap();
        assert_eq!(prod.key_groups, [vec!["age1a", "age1b"], vec!["age1c"]]);
        assert_eq!(prod.shamir_threshold, Some(2));
        let dev = creation_rule(CONFIG, "dev/db.yaml").unwrap().unwrap();
        assert_eq!(dev.key_groups, [vec!["age1d", "age1e"]]);
        assert_eq!(dev.selection, Some(Selection::EncryptedRegex("^data$".into())));
        assert!(creation_rule(CONFIG, "dev/db.json").unwrap().is_none());
    }

    #[test]
    fn a_bad_path_regex_is_named() {
        let err = creation_rule("creation_rules:\n  - path_regex: '('\n", "a.yaml").unwrap_err();
        assert!(err.to_string().starts_with(r#"invalid path_regex "(""#), "{err}");
    }
}
