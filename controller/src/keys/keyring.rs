//! The controller's keys, built from key Secrets: which decrypt, which seals, and the MAC keys
//! that let a restart trust Secrets it wrote before.

use std::collections::BTreeMap;
use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD_NO_PAD;
use hmac::{Hmac, KeyInit, Mac};
use k8s_openapi::api::core::v1::Secret;
use rsa::pkcs1::EncodeRsaPrivateKey;
use sealant_core::{Certificate, PrivateKey};
use sha2::Sha256;
use time::OffsetDateTime;
use zeroize::Zeroizing;

use crate::flags::KeyOrderPriority;
use crate::unseal::plan::{DATA_MAC_ANNOTATION, SOURCE_DIGEST_ANNOTATION};

pub use sealant_crds::keys::KEY_LABEL;

/// One usable key.
pub struct KeyEntry {
    pub fingerprint: String,
    pub certificate: Certificate,
    pub secret_name: String,
    pub created: Option<OffsetDateTime>,
    /// What `--key-order-priority` orders by.
    pub order_time: OffsetDateTime,
    mac_key: Zeroizing<[u8; 32]>,
}

impl fmt::Debug for KeyEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyEntry")
            .field("fingerprint", &self.fingerprint)
            .field("secret_name", &self.secret_name)
            .field("order_time", &self.order_time)
            .finish_non_exhaustive()
    }
}

/// A key Secret that could not be used, and why (never its content).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RejectedKey {
    pub secret_name: String,
    pub reason: String,
}

/// All loaded keys, oldest first by ordering time.
#[derive(Debug, Default)]
pub struct Keyring {
    entries: Vec<KeyEntry>,
    keys: Vec<PrivateKey>,
    pub rejected: Vec<RejectedKey>,
}

type HmacSha256 = Hmac<Sha256>;

fn mac_key_for(key: &PrivateKey) -> Option<Zeroizing<[u8; 32]>> {
    let der = key.rsa().to_pkcs1_der().ok()?;
    let mut mac = <HmacSha256 as KeyInit>::new_from_slice(der.as_bytes()).ok()?;
    mac.update(b"sealant secret data MAC v1");
    let mut out = Zeroizing::new([0u8; 32]);
    out.copy_from_slice(&mac.finalize().into_bytes());
    Some(out)
}

/// Whether a Secret is one the controller loads as a key.
pub fn is_loadable_key(secret: &Secret, legacy_name: &str) -> bool {
    let labelled = secret.metadata.labels.as_ref().and_then(|l| l.get(KEY_LABEL)).is_some_and(|v| v == "active");
    labelled || secret.metadata.name.as_deref() == Some(legacy_name)
}

/// Whether a SealedSecret made this Secret: an owner reference to one, or the bookkeeping
/// annotations the controller writes on every Secret it unseals. Such a Secret holds what a
/// SealedSecret's author chose, so it is never a key, whatever its name or labels say.
pub fn made_by_sealed_secret(secret: &Secret) -> bool {
    let owned = secret.metadata.owner_references.iter().flatten().any(|o| o.kind == sealant_crds::types::KIND);
    let annotated = secret
        .metadata
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key(SOURCE_DIGEST_ANNOTATION) || a.contains_key(DATA_MAC_ANNOTATION));
    owned || annotated
}

/// Where the controller finds its key Secrets, and by what: the Secrets no SealedSecret may
/// produce.
#[derive(Clone, Debug)]
pub struct KeySecrets {
    /// The controller's namespace.
    pub namespace: String,
    /// `--key-prefix`: the legacy key's name, loaded with or without the label.
    pub legacy_name: String,
}

impl KeySecrets {
    /// Whether a Secret with this namespace, name and labels would be watched as a key (any
    /// value of the key label counts: a retired key's label changes how the next is named), or
    /// takes a name the controller keeps for its own Secrets: the key prefix and every name
    /// under it (`<prefix>-<hex time>-<n>` for keys, which anyone can tell from the served
    /// certificate, and `<prefix>-backup`).
    pub fn would_watch(&self, namespace: &str, name: &str, labels: Option<&BTreeMap<String, String>>) -> bool {
        let reserved =
            name.strip_prefix(self.legacy_name.as_str()).is_some_and(|rest| rest.is_empty() || rest.starts_with('-'));
        namespace == self.namespace && (reserved || labels.is_some_and(|l| l.contains_key(KEY_LABEL)))
    }
}

impl Keyring {
    /// Build from key Secrets (those not loadable are ignored; broken ones are listed in
    /// `rejected`).
    pub fn from_secrets<'a>(
        secrets: impl IntoIterator<Item = &'a Secret>,
        priority: KeyOrderPriority,
        legacy_name: &str,
    ) -> Keyring {
        let mut ring = Keyring::default();
        let mut loaded: Vec<(KeyEntry, PrivateKey)> = Vec::new();
        for secret in secrets {
            if !is_loadable_key(secret, legacy_name) {
                continue;
            }
            let name = secret.metadata.name.clone().unwrap_or_default();
            if made_by_sealed_secret(secret) {
                ring.rejected.push(RejectedKey { secret_name: name, reason: "a SealedSecret made it".into() });
                continue;
            }
            match parse_key_secret(secret) {
                Ok((key, certificate)) => {
                    let Some(mac_key) = mac_key_for(&key) else {
                        ring.rejected.push(RejectedKey { secret_name: name, reason: "cannot encode the key".into() });
                        continue;
                    };
                    let created = secret
                        .metadata
                        .creation_timestamp
                        .as_ref()
                        .and_then(|t| OffsetDateTime::from_unix_timestamp(t.0.as_second()).ok());
                    let order_time = match priority {
                        KeyOrderPriority::CertNotBefore => certificate.not_before(),
                        KeyOrderPriority::SecretCreationTimestamp => created.unwrap_or(certificate.not_before()),
                    };
                    let entry = KeyEntry {
                        fingerprint: key.fingerprint().to_owned(),
                        certificate,
                        secret_name: name,
                        created,
                        order_time,
                        mac_key,
                    };
                    if loaded.iter().any(|(e, _)| e.fingerprint == entry.fingerprint) {
                        continue;
                    }
                    loaded.push((entry, key));
                }
                Err(reason) => ring.rejected.push(RejectedKey { secret_name: name, reason: reason.to_string() }),
            }
        }
        loaded.sort_by_key(|(e, _)| (e.order_time, e.created));
        for (entry, key) in loaded {
            ring.entries.push(entry);
            ring.keys.push(key);
        }
        ring
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Every private key, for decryption.
    pub fn keys(&self) -> &[PrivateKey] {
        &self.keys
    }

    pub fn entries(&self) -> &[KeyEntry] {
        &self.entries
    }

    /// The sealing key: the newest by ordering time.
    pub fn newest(&self) -> Option<&KeyEntry> {
        self.entries.last()
    }

    /// `<fingerprint> <base64 MAC>` of `message` with the newest key's MAC key.
    pub fn mac(&self, message: &[u8]) -> Option<String> {
        let entry = self.newest()?;
        Some(format!("{} {}", entry.fingerprint, compute_mac(&entry.mac_key, message)))
    }

    /// Whether `annotation` is a MAC of `message` by any of our keys.
    pub fn verify_mac(&self, annotation: &str, message: &[u8]) -> bool {
        let Some((fingerprint, mac)) = annotation.split_once(' ') else {
            return false;
        };
        let Some(entry) = self.entries.iter().find(|e| e.fingerprint == fingerprint) else {
            return false;
        };
        let Ok(given) = STANDARD_NO_PAD.decode(mac) else {
            return false;
        };
        let Ok(mut check) = <HmacSha256 as KeyInit>::new_from_slice(entry.mac_key.as_ref()) else {
            return false;
        };
        check.update(message);
        check.verify_slice(&given).is_ok()
    }
}

fn compute_mac(key: &[u8; 32], message: &[u8]) -> String {
    match <HmacSha256 as KeyInit>::new_from_slice(key) {
        Ok(mut mac) => {
            mac.update(message);
            STANDARD_NO_PAD.encode(mac.finalize().into_bytes())
        }
        Err(_) => String::new(),
    }
}

/// Why a key Secret cannot be used: said in the log and kept in [`RejectedKey::reason`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeySecretError {
    #[error("no data")]
    NoData,
    #[error("no tls.key")]
    NoKey,
    #[error("no tls.crt")]
    NoCertificate,
    #[error("tls.key is not PEM text")]
    KeyNotText,
    #[error(transparent)]
    Key(sealant_core::KeyError),
    #[error(transparent)]
    Certificate(sealant_core::CertError),
    #[error("tls.crt does not match tls.key")]
    Mismatch,
}

/// The private key and certificate of a `kubernetes.io/tls` key Secret.
fn parse_key_secret(secret: &Secret) -> Result<(PrivateKey, Certificate), KeySecretError> {
    let data = secret.data.as_ref().ok_or(KeySecretError::NoData)?;
    let key_pem = data.get("tls.key").ok_or(KeySecretError::NoKey)?;
    let cert_pem = data.get("tls.crt").ok_or(KeySecretError::NoCertificate)?;
    let key_text = Zeroizing::new(String::from_utf8(key_pem.0.clone()).map_err(|_| KeySecretError::KeyNotText)?);
    let key = PrivateKey::from_pem(&key_text).map_err(KeySecretError::Key)?;
    let cert_text = String::from_utf8_lossy(&cert_pem.0);
    let certificate = Certificate::from_pem(&cert_text).map_err(KeySecretError::Certificate)?;
    if certificate.public_key() != key.public() {
        return Err(KeySecretError::Mismatch);
    }
    Ok((key, certificate))
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

    use super::*;

    fn demo_key() -> Secret {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../keys-example/demo.secret.yaml");
        let doc = sealant_core::yaml::parse_documents(&std::fs::read_to_string(path).unwrap()).unwrap().remove(0);
        serde_json::from_value(doc).unwrap()
    }

    /// Issue 26, finding 1: a key Secret that a SealedSecret produced is never loaded, whatever
    /// its name and labels, and the reason is kept for the log and the metric.
    #[test]
    fn a_secret_a_sealed_secret_made_is_never_a_key() {
        let load =
            |secret: &Secret| Keyring::from_secrets([secret], KeyOrderPriority::CertNotBefore, "sealed-secrets-key");
        assert_eq!(load(&demo_key()).len(), 1, "an operator's key Secret loads");

        let mut owned = demo_key();
        owned.metadata.owner_references = Some(vec![OwnerReference {
            api_version: "bitnami.com/v1alpha1".into(),
            kind: "SealedSecret".into(),
            name: "planted".into(),
            uid: "uid-1".into(),
            controller: Some(true),
            block_owner_deletion: None,
        }]);
        let ring = load(&owned);
        assert!(ring.is_empty(), "owned by a SealedSecret");
        assert_eq!(ring.rejected[0].reason, "a SealedSecret made it");

        let mut annotated = demo_key();
        annotated.metadata.annotations.get_or_insert_default().insert(SOURCE_DIGEST_ANNOTATION.into(), "x".into());
        assert!(load(&annotated).is_empty(), "written by the controller from a SealedSecret");
    }
}
