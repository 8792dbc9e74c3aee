//! Objects to text the way kubectl and kubeseal print them: YAML with sorted keys, or JSON
//! indented by two spaces in Go's field order.

use serde::Serialize;
use serde_json::{Map, Value};

use crate::error::{CliError, CliResult};
use crate::io::Format;

/// Go's `ObjectMeta` field order.
const META_ORDER: &[&str] = &[
    "name",
    "generateName",
    "namespace",
    "selfLink",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "labels",
    "annotations",
    "ownerReferences",
    "finalizers",
    "managedFields",
];
/// Go's `v1.Secret` field order.
const SECRET_ORDER: &[&str] = &["kind", "apiVersion", "metadata", "immutable", "data", "stringData", "type"];
const OWNER_ORDER: &[&str] = &["apiVersion", "kind", "name", "uid", "controller", "blockOwnerDeletion"];

fn reorder(map: &Map<String, Value>, order: &[&str]) -> Map<String, Value> {
    let mut out = Map::new();
    for key in order {
        if let Some(v) = map.get(*key) {
            out.insert((*key).to_owned(), v.clone());
        }
    }
    for (k, v) in map {
        if !out.contains_key(k) {
            out.insert(k.clone(), v.clone());
        }
    }
    out
}

fn go_order_meta(meta: &mut Value) {
    if let Value::Object(map) = meta {
        let mut ordered = reorder(map, META_ORDER);
        if let Some(Value::Array(owners)) = ordered.get_mut("ownerReferences") {
            for owner in owners.iter_mut() {
                if let Value::Object(o) = owner {
                    *o = reorder(o, OWNER_ORDER);
                }
            }
        }
        *map = ordered;
    }
}

/// Put every `metadata` object (top level and templates) in Go's order.
fn go_order(value: &mut Value) {
    if let Value::Object(map) = value {
        for (k, v) in map.iter_mut() {
            if k == "metadata" {
                go_order_meta(v);
            } else {
                go_order(v);
            }
        }
    }
}

pub fn to_value(object: &impl Serialize) -> CliResult<Value> {
    serde_json::to_value(object).map_err(|e| CliError::new("cannot encode the object").source(e))
}

/// A Secret as JSON in Go's field order.
pub fn secret_value(secret: &k8s_openapi::api::core::v1::Secret) -> CliResult<Value> {
    let mut value = to_value(secret)?;
    if let Value::Object(map) = &mut value {
        map.insert("kind".into(), "Secret".into());
        map.insert("apiVersion".into(), "v1".into());
        *map = reorder(map, SECRET_ORDER);
    }
    Ok(value)
}

/// Several documents as one text.
pub fn documents(values: &[Value], format: Format) -> CliResult<String> {
    let mut out = String::new();
    for value in values {
        match format {
            Format::Yaml => {
                let doc = sealant_core::yaml::to_yaml_document(value)
                    .map_err(|e| CliError::new("cannot encode YAML").source(e))?;
                out.push_str(&doc);
            }
            Format::Json => {
                let mut ordered = value.clone();
                go_order(&mut ordered);
                let doc = serde_json::to_string_pretty(&ordered)
                    .map_err(|e| CliError::new("cannot encode JSON").source(e))?;
                out.push_str(&doc);
                out.push('\n');
            }
        }
    }
    Ok(out)
}
