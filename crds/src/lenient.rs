//! How a SealedSecret's spec and status are read: never failing on what the API server stored.
//!
//! A watch or a list is read whole, so one object our types could not read would stop every
//! other object of it (a list page fails; a watch backs off at each such event). Upstream's CRD
//! lets the API server keep more than our types took: `null` (which Go reads as absent) and,
//! under `encryptedData`'s `x-kubernetes-preserve-unknown-fields`, anything. So a spec is read as
//! JSON and taken field by field as Go would take it: `null` is absent, and a value of the wrong
//! type leaves the object marked invalid ([`SealedSecretSpec::invalid`]) instead of failing the
//! read. Every operation on an invalid spec refuses it with that reason.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use sealant_core::error::{bounded, quoted};
use serde::{Deserialize, Deserializer};
use serde_json::{Map, Value};

use crate::types::{SealedSecretSpec, SealedSecretStatus, SecretTemplateSpec};

/// Longest key a reason names, after quoting.
const NAMED_KEY: usize = 64;

impl<'de> Deserialize<'de> for SealedSecretSpec {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(spec(Value::deserialize(deserializer)?))
    }
}

/// A status that cannot be read is no status: the controller writes a new one.
pub(crate) fn status<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<SealedSecretStatus>, D::Error> {
    Ok(serde_json::from_value(Value::deserialize(deserializer)?).ok())
}

/// The first problem found, as the reason the spec is refused.
#[derive(Default)]
struct Reader {
    invalid: Option<String>,
}

impl Reader {
    fn wrong(&mut self, path: &str, expected: &str) {
        self.invalid.get_or_insert_with(|| format!("{path} is not {expected}"));
    }

    /// The object at `path`; `null` and absent are empty.
    fn object(&mut self, value: Option<Value>, path: &str) -> Map<String, Value> {
        match value {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(map)) => map,
            Some(_) => {
                self.wrong(path, "an object");
                Map::new()
            }
        }
    }

    fn string(&mut self, value: Option<Value>, path: &str) -> Option<String> {
        match value {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s),
            Some(_) => {
                self.wrong(path, "a string");
                None
            }
        }
    }

    /// A map of strings; `null_kept`: a `null` value is kept as `None` (`template.data`).
    fn strings(&mut self, value: Option<Value>, path: &str, null_kept: bool) -> BTreeMap<String, Option<String>> {
        let mut out = BTreeMap::new();
        for (key, value) in self.object(value, path) {
            match value {
                Value::String(s) => {
                    out.insert(key, Some(s));
                }
                Value::Null if null_kept => {
                    out.insert(key, None);
                }
                _ => self.wrong(&format!("{path}[{}]", bounded(quoted(&key), NAMED_KEY)), "a string"),
            }
        }
        out
    }
}

fn spec(value: Value) -> SealedSecretSpec {
    let mut reader = Reader::default();
    let mut spec = reader.object(Some(value), "spec");
    let mut template = reader.object(spec.remove("template"), "spec.template");
    let metadata = match template.remove("metadata") {
        None | Some(Value::Null) => ObjectMeta::default(),
        Some(value) => serde_json::from_value(value).unwrap_or_else(|_| {
            reader.wrong("spec.template.metadata", "object metadata");
            ObjectMeta::default()
        }),
    };
    let type_ = reader.string(template.remove("type"), "spec.template.type");
    let immutable = match template.remove("immutable") {
        None | Some(Value::Null) => None,
        Some(Value::Bool(b)) => Some(b),
        Some(_) => {
            reader.wrong("spec.template.immutable", "a boolean");
            None
        }
    };
    let data = match template.remove("data") {
        None | Some(Value::Null) => None,
        value => Some(reader.strings(value, "spec.template.data", true)),
    };
    let v1_data = reader.string(spec.remove("data"), "spec.data");
    let encrypted_data = reader
        .strings(spec.remove("encryptedData"), "spec.encryptedData", false)
        .into_iter()
        .filter_map(|(k, v)| Some((k, v?)))
        .collect();
    SealedSecretSpec {
        template: SecretTemplateSpec { metadata, type_, immutable, data },
        data: v1_data,
        encrypted_data,
        invalid: reader.invalid,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn read(value: Value) -> SealedSecretSpec {
        serde_json::from_value(value).unwrap_or_default()
    }

    #[test]
    fn null_is_absent_as_in_go() {
        let spec = read(json!({
            "template": {"metadata": null, "type": null, "immutable": null, "data": null},
            "data": null,
            "encryptedData": null,
        }));
        assert_eq!(spec, SealedSecretSpec::default());
        assert_eq!(read(json!({"template": null})), SealedSecretSpec::default());
    }

    #[test]
    fn null_template_values_are_kept() {
        let spec = read(json!({"template": {"data": {"a": null, "b": "{{ .a }}"}}, "encryptedData": {"a": "AgA="}}));
        let data = spec.template.data.unwrap_or_default();
        assert_eq!(data.get("a"), Some(&None));
        assert_eq!(data.get("b"), Some(&Some("{{ .a }}".to_owned())));
        assert_eq!(spec.invalid, None);
    }

    #[test]
    fn a_wrong_type_marks_the_spec_invalid_and_never_fails_the_read() {
        let cases = [
            (json!({"encryptedData": {"a": 5}}), r#"spec.encryptedData["a"] is not a string"#),
            (json!({"encryptedData": {"a": null}}), r#"spec.encryptedData["a"] is not a string"#),
            (json!({"encryptedData": {"a\u{1b}]52": {"x": 1}}}), r#"spec.encryptedData["a\u{1b}]52"] is not a string"#),
            (json!({"encryptedData": ["a"]}), "spec.encryptedData is not an object"),
            (json!({"template": {"data": {"a": 1}}}), r#"spec.template.data["a"] is not a string"#),
            (json!({"template": {"metadata": {"labels": 3}}}), "spec.template.metadata is not object metadata"),
            (json!({"template": {"immutable": "yes"}}), "spec.template.immutable is not a boolean"),
            (json!({"template": 7}), "spec.template is not an object"),
            (json!({"data": 7}), "spec.data is not a string"),
            (json!("spec"), "spec is not an object"),
        ];
        for (value, reason) in cases {
            assert_eq!(read(value.clone()).invalid.as_deref(), Some(reason), "{value}");
        }
    }

    /// A page of a list, as kube reads it whole: one odd object does not fail the others.
    #[test]
    fn a_list_page_with_an_odd_object_is_read_whole() {
        let page = json!({"apiVersion": "bitnami.com/v1alpha1", "kind": "SealedSecretList", "metadata": {"resourceVersion": "7"},
        "items": [
            {"metadata": {"name": "a"}, "spec": {"encryptedData": {"x": 5}, "template": {"metadata": null}}},
            {"metadata": {"name": "b"}, "spec": {"encryptedData": {"x": "AgA="}}, "status": {"conditions": "odd"}},
        ]});
        let list: kube::core::ObjectList<crate::SealedSecret> = serde_json::from_value(page).unwrap();
        assert_eq!(list.items.len(), 2);
        assert!(list.items[0].spec.invalid.is_some());
        assert_eq!((list.items[1].spec.invalid.as_ref(), list.items[1].status.as_ref()), (None, None));
    }

    proptest::proptest! {
        /// Whatever JSON a spec holds, it is read.
        #[test]
        fn any_spec_is_read(spec in json_value()) {
            let read: Result<SealedSecretSpec, _> = serde_json::from_value(spec);
            proptest::prop_assert!(read.is_ok());
        }
    }

    fn json_value() -> impl proptest::strategy::Strategy<Value = Value> {
        use proptest::prelude::*;
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            "[a-z{}. ]{0,8}".prop_map(Value::from),
        ];
        leaf.prop_recursive(4, 32, 6, |inner| {
            let keys = prop_oneof![
                Just("template".to_owned()),
                Just("data".to_owned()),
                Just("encryptedData".to_owned()),
                Just("metadata".to_owned()),
                Just("type".to_owned()),
                Just("immutable".to_owned()),
                "[a-z]{1,3}",
            ];
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
                proptest::collection::btree_map(keys, inner, 0..5).prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    #[test]
    fn unknown_fields_are_ignored() {
        let spec = read(json!({"encryptedData": {"a": "AgA="}, "extra": {"x": 1}, "template": {"extra": 1}}));
        assert_eq!(spec.invalid, None);
        assert_eq!(spec.encrypted_data.len(), 1);
    }
}
