//! The CustomResourceDefinition for `SealedSecret`, built in code beside the types so the two
//! cannot drift apart: `crds/sealedsecrets.bitnami.com.yaml` and the Helm chart's copy are this
//! function's output, and the tests check those files and that every field the types write is in
//! the schema.

use serde_json::{Value, json};

use crate::types::{GROUP, KIND, PLURAL, VERSION};

/// Path of the checked-in CRD, relative to the workspace root.
pub const CRD_FILE: &str = "crds/sealedsecrets.bitnami.com.yaml";

/// The same, in the Helm chart (Helm reads CRDs only from the chart's own `crds/`).
pub const CHART_CRD_FILE: &str = "deploy/chart/crds/sealedsecrets.bitnami.com.yaml";

fn string(description: &str) -> Value {
    json!({ "description": description, "type": "string" })
}

fn time(description: &str) -> Value {
    json!({ "description": description, "format": "date-time", "type": "string" })
}

/// The OpenAPI v3 schema of `SealedSecret`, the same as upstream's.
pub fn schema() -> Value {
    let condition = json!({
        "description": "SealedSecretCondition describes the state of a sealed secret at a certain point.",
        "properties": {
            "lastTransitionTime": time("Last time the condition transitioned from one status to another."),
            "lastUpdateTime": time("The last time this condition was updated."),
            "message": string("A human readable message indicating details about the transition."),
            "reason": string("The reason for the condition's last transition."),
            "status": string("Status of the condition for a sealed secret. Valid values for \"Synced\": \"True\", \"False\", or \"Unknown\"."),
            "type": string("Type of condition for a sealed secret. Valid value: \"Synced\""),
        },
        "required": ["status", "type"],
        "type": "object",
    });
    json!({
        "description": "SealedSecret is the K8s representation of a \"sealed Secret\" - a regular k8s Secret that has been sealed (encrypted) using the controller's key.",
        "properties": {
            "apiVersion": string("APIVersion defines the versioned schema of this representation of an object. Servers should convert recognized schemas to the latest internal value, and may reject unrecognized values. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#resources"),
            "kind": string("Kind is a string value representing the REST resource this object represents. Servers may infer this from the endpoint the client submits requests to. Cannot be updated. In CamelCase. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#types-kinds"),
            "metadata": { "type": "object" },
            "spec": {
                "description": "SealedSecretSpec is the specification of a SealedSecret.",
                "properties": {
                    "data": {
                        "description": "Data is deprecated and will be removed eventually. Use per-value EncryptedData instead.",
                        "format": "byte",
                        "type": "string",
                    },
                    "encryptedData": {
                        "additionalProperties": { "type": "string" },
                        "type": "object",
                        "x-kubernetes-preserve-unknown-fields": true,
                    },
                    "template": {
                        "description": "Template defines the structure of the Secret that will be created from this sealed secret.",
                        "properties": {
                            "data": {
                                "additionalProperties": { "type": "string" },
                                "description": "Keys that should be templated using decrypted data. Set a key with the same name as in `encryptedData` to `null` to omit the unsealed data from the final secret.",
                                "nullable": true,
                                "type": "object",
                            },
                            "immutable": {
                                "description": "Immutable, if set to true, ensures that data stored in the Secret cannot be updated (only object metadata can be modified). If not set to true, the field can be modified at any time. Defaulted to nil.",
                                "type": "boolean",
                            },
                            "metadata": {
                                "description": "Standard object's metadata. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata",
                                "nullable": true,
                                "properties": {
                                    "annotations": { "additionalProperties": { "type": "string" }, "type": "object" },
                                    "finalizers": { "items": { "type": "string" }, "type": "array" },
                                    "labels": { "additionalProperties": { "type": "string" }, "type": "object" },
                                    "name": { "type": "string" },
                                    "namespace": { "type": "string" },
                                },
                                "type": "object",
                                "x-kubernetes-preserve-unknown-fields": true,
                            },
                            "type": string("Used to facilitate programmatic handling of secret data. More info: https://kubernetes.io/docs/concepts/configuration/secret/#secret-types"),
                        },
                        "type": "object",
                    },
                },
                "required": ["encryptedData"],
                "type": "object",
            },
            "status": {
                "description": "SealedSecretStatus is the most recently observed status of the SealedSecret.",
                "properties": {
                    "conditions": {
                        "description": "Represents the latest available observations of a sealed secret's current state.",
                        "items": condition,
                        "type": "array",
                    },
                    "observedGeneration": {
                        "description": "ObservedGeneration reflects the generation most recently observed by the sealed-secrets controller.",
                        "format": "int64",
                        "type": "integer",
                    },
                },
                "type": "object",
            },
        },
        "required": ["spec"],
        "type": "object",
    })
}

/// The whole CustomResourceDefinition object.
pub fn crd() -> Value {
    json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": { "name": format!("{PLURAL}.{GROUP}") },
        "spec": {
            "group": GROUP,
            "names": {
                "kind": KIND,
                "listKind": format!("{KIND}List"),
                "plural": PLURAL,
                "singular": KIND.to_lowercase(),
            },
            "scope": "Namespaced",
            "versions": [{
                "additionalPrinterColumns": [
                    { "jsonPath": ".status.conditions[0].message", "name": "Status", "type": "string" },
                    { "jsonPath": ".status.conditions[0].status", "name": "Synced", "type": "string" },
                    { "jsonPath": ".metadata.creationTimestamp", "name": "Age", "type": "date" },
                ],
                "name": VERSION,
                "schema": { "openAPIV3Schema": schema() },
                "served": true,
                "storage": true,
                "subresources": { "status": {} },
            }],
        },
    })
}

/// The CRD as the YAML we check in and install.
pub fn crd_yaml() -> Result<String, sealant_core::yaml::YamlError> {
    let body = sealant_core::yaml::to_yaml_document(&crd())?;
    Ok(format!("# Generated by `cargo run -p sealant-crds --example crd-yaml`; do not edit.\n{body}"))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};

    use super::*;
    use crate::types::*;

    #[test]
    fn checked_in_yaml_is_current() {
        for file in [CRD_FILE, CHART_CRD_FILE] {
            let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(file);
            let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
            assert!(
                on_disk == crd_yaml().unwrap(),
                "{file} is stale: run `cargo run -p sealant-crds --example crd-yaml > {file}`"
            );
        }
    }

    #[test]
    fn crd_is_a_valid_custom_resource_definition() {
        let parsed: CustomResourceDefinition = serde_json::from_value(crd()).unwrap();
        assert_eq!(parsed.spec.versions.len(), 1);
    }

    /// Every property a fully populated object writes must be declared by the schema.
    fn assert_covered(path: &str, value: &Value, schema: &Value) {
        if schema.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true))
            && schema.get("properties").is_none()
        {
            return;
        }
        match value {
            Value::Object(map) => {
                assert_eq!(schema["type"], "object", "{path} is an object in the types");
                for (k, v) in map {
                    let child =
                        schema.get("properties").and_then(|p| p.get(k)).or_else(|| schema.get("additionalProperties"));
                    match child {
                        Some(child) => assert_covered(&format!("{path}.{k}"), v, child),
                        None if path == ".metadata" || path.ends_with(".metadata") => {}
                        None => panic!("{path}.{k} is written by the types but not in the schema"),
                    }
                }
            }
            Value::Array(items) => items.iter().for_each(|v| assert_covered(path, v, &schema["items"])),
            Value::String(_) => assert_eq!(schema["type"], "string", "{path}"),
            Value::Bool(_) => assert_eq!(schema["type"], "boolean", "{path}"),
            Value::Number(_) => assert_eq!(schema["type"], "integer", "{path}"),
            Value::Null => {}
        }
    }

    #[test]
    fn types_do_not_drift_from_schema() {
        let now = Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH);
        let full = SealedSecret {
            kind: KIND.into(),
            api_version: API_VERSION.into(),
            metadata: ObjectMeta { name: Some("n".into()), ..Default::default() },
            spec: SealedSecretSpec {
                template: SecretTemplateSpec {
                    metadata: ObjectMeta {
                        name: Some("n".into()),
                        labels: Some(BTreeMap::from([("a".into(), "b".into())])),
                        ..Default::default()
                    },
                    type_: Some("Opaque".into()),
                    immutable: Some(true),
                    data: Some(BTreeMap::from([("k".into(), Some("{{ .x }}".into())), ("x".into(), None)])),
                },
                data: Some("AAAA".into()),
                encrypted_data: BTreeMap::from([("x".into(), "AgA=".into())]),
                invalid: None,
            },
            status: Some(SealedSecretStatus {
                observed_generation: Some(1),
                conditions: vec![SealedSecretCondition {
                    type_: "Synced".into(),
                    status: "True".into(),
                    last_update_time: Some(now.clone()),
                    last_transition_time: Some(now),
                    reason: Some("Unsealed".into()),
                    message: Some(String::new()),
                }],
            }),
        };
        let value = serde_json::to_value(&full).unwrap();
        assert_covered("", &value, &schema());
    }
}
