//! Key Secrets as the controller stores them: `kubernetes.io/tls`, labelled active.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use sealant_core::GeneratedKey;

/// Label that marks key Secrets; only the value `active` is loaded.
pub const KEY_LABEL: &str = "sealedsecrets.bitnami.com/sealed-secrets-key";

/// The backup Secret's annotation naming the key Secrets it holds (comma-separated): what
/// `sealant status` reads to tell whether the backup holds the newest key.
pub const BACKUP_KEYS_ANNOTATION: &str = "sealant.dev/backup-keys";

/// The backup Secret's annotation with the time the controller wrote it (RFC 3339).
pub const BACKUP_WRITTEN_ANNOTATION: &str = "sealant.dev/backup-written-at";

/// How a new key Secret is named.
#[derive(Clone, Debug)]
pub enum KeyName {
    /// Exactly this name.
    Name(String),
    /// A name the API server completes from this prefix (the controller's `--key-prefix`).
    GenerateName(String),
}

/// The key Secret for `key`, labelled `active` on top of `labels`.
pub fn key_secret(
    key: &GeneratedKey,
    name: KeyName,
    namespace: &str,
    mut labels: BTreeMap<String, String>,
    annotations: BTreeMap<String, String>,
) -> Secret {
    labels.insert(KEY_LABEL.to_owned(), "active".to_owned());
    let (name, generate_name) = match name {
        KeyName::Name(n) => (Some(n), None),
        KeyName::GenerateName(p) => (None, Some(p)),
    };
    Secret {
        metadata: ObjectMeta {
            name,
            generate_name,
            namespace: Some(namespace.to_owned()),
            labels: Some(labels),
            annotations: (!annotations.is_empty()).then_some(annotations),
            ..Default::default()
        },
        type_: Some("kubernetes.io/tls".to_owned()),
        data: Some(BTreeMap::from([
            ("tls.crt".to_owned(), ByteString(key.certificate.pem().as_bytes().to_vec())),
            ("tls.key".to_owned(), ByteString(key.key_pem.expose().to_vec())),
        ])),
        ..Default::default()
    }
}

/// Key Secrets as a `v1 List` that can be created again in any cluster: only name, labels,
/// annotations, type and data are kept (the form of a key backup).
pub fn backup_list<'a>(secrets: impl IntoIterator<Item = &'a Secret>) -> serde_json::Value {
    let items: Vec<serde_json::Value> = secrets
        .into_iter()
        .map(|s| {
            serde_json::json!({
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": s.metadata.name, "labels": s.metadata.labels, "annotations": s.metadata.annotations},
                "type": s.type_,
                "data": s.data,
            })
        })
        .collect();
    serde_json::json!({"apiVersion": "v1", "kind": "List", "items": items})
}
