//! SealedSecret → Secret, exactly as the controller builds it (also used by `sealant unseal`).

use std::collections::BTreeMap;
use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use sealant_core::template::{self, RenderError};
use sealant_core::{HybridError, PrivateKey, Scope, SecretBytes, hybrid_decrypt};

use crate::types::{API_VERSION, KIND, SealedSecret, SealedSecretSpec};
use crate::{SEALING_KEY_ANNOTATION, SKIP_SET_OWNER_REFERENCES_ANNOTATION};

#[derive(Clone, Copy, Debug)]
pub struct UnsealOptions {
    /// Accept the deprecated v1 `spec.data` (the controller's default is yes).
    pub accept_v1_data: bool,
}

impl Default for UnsealOptions {
    fn default() -> Self {
        Self { accept_v1_data: true }
    }
}

/// Why one `encryptedData` item could not be opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ItemError {
    #[error("not valid base64")]
    Base64,
    #[error(transparent)]
    Decrypt(#[from] HybridError),
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UnsealError {
    /// One or more items failed; all of them are listed, as upstream's multierror does.
    #[error("{}", ItemList(.0))]
    Items(Vec<(String, ItemError)>),
    #[error(transparent)]
    Template(#[from] RenderError),
    #[error("the SealedSecret uses the deprecated 'data' field, which is not accepted")]
    V1DataRefused,
    #[error("the SealedSecret has both 'data' and 'encryptedData'")]
    BothDataAndEncryptedData,
    #[error("the deprecated 'data' field does not hold a Secret")]
    V1NotASecret,
    /// A value of the wrong type where the API server kept one ([`SealedSecretSpec::invalid`]).
    #[error("{0}")]
    Malformed(String),
    #[error(
        "spec.template.metadata.finalizers is not allowed: the API server's garbage collector could \
         never delete the Secret"
    )]
    TemplateFinalizers,
}

impl UnsealError {
    /// A PascalCase reason for status conditions, events and metric labels.
    pub fn category(&self) -> &'static str {
        match self {
            UnsealError::Items(_) | UnsealError::V1NotASecret => "DecryptFailed",
            UnsealError::Template(_) => "TemplateError",
            UnsealError::V1DataRefused
            | UnsealError::BothDataAndEncryptedData
            | UnsealError::TemplateFinalizers
            | UnsealError::Malformed(_) => "InvalidSpec",
        }
    }
}

struct ItemList<'a>(&'a [(String, ItemError)]);

/// Items a message names before it says how many more failed.
const LISTED_ITEMS: usize = 5;

/// How one item's failure reads, in upstream's words where it has them.
fn item_text(err: &ItemError) -> String {
    match err {
        ItemError::Decrypt(sealant_core::hybrid::HybridError::NoKeyCouldDecrypt) => {
            "no key could decrypt secret".into()
        }
        other => other.to_string(),
    }
}

/// As upstream's multierror words it: the items that failed the same way after their error,
/// `no key could decrypt secret (a, b); not valid base64 (c)`; at most [`LISTED_ITEMS`] keys
/// named in all, then how many more.
impl fmt::Display for ItemList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut groups: Vec<(String, Vec<&str>)> = Vec::new();
        for (key, err) in self.0 {
            let text = item_text(err);
            match groups.iter_mut().find(|(t, _)| *t == text) {
                Some((_, keys)) => keys.push(key),
                None => groups.push((text, vec![key])),
            }
        }
        let mut named = 0;
        for (i, (text, keys)) in groups.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{text} (")?;
            let shown = keys.len().min(LISTED_ITEMS.saturating_sub(named).max(1));
            for (j, key) in keys.iter().take(shown).enumerate() {
                if j > 0 {
                    f.write_str(", ")?;
                }
                f.write_str(&sealant_core::error::bounded(sealant_core::error::printable(key).into_owned(), 64))?;
            }
            named += shown;
            if keys.len() > shown {
                write!(f, " and {} more", keys.len() - shown)?;
            }
            f.write_str(")")?;
        }
        Ok(())
    }
}

fn well_formed(spec: &SealedSecretSpec) -> Result<(), UnsealError> {
    spec.invalid.as_ref().map_or(Ok(()), |reason| Err(UnsealError::Malformed(reason.clone())))
}

/// Keys in the order to try them: those named by our sealing-key annotation (a comma-separated
/// list of fingerprints) first.
fn ordered_keys<'a>(ss: &SealedSecret, keys: &'a [PrivateKey]) -> Vec<&'a PrivateKey> {
    let preferred: Vec<&str> = ss
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(SEALING_KEY_ANNOTATION))
        .map(|v| v.split(',').map(str::trim).collect())
        .unwrap_or_default();
    let mut ordered: Vec<&PrivateKey> = keys.iter().collect();
    if !preferred.is_empty() {
        // A stable sort: named keys first, the rest in their given order.
        ordered.sort_by_key(|k| !preferred.contains(&k.fingerprint()));
    }
    ordered
}

/// Open every item of `ss` with `keys`, without rendering templates or reading the plaintext:
/// what `/v1/verify` answers. The deprecated `data` field counts as one item.
pub fn open_items(ss: &SealedSecret, keys: &[PrivateKey], options: UnsealOptions) -> Result<(), UnsealError> {
    well_formed(&ss.spec)?;
    let name = ss.metadata.name.clone().unwrap_or_default();
    let namespace = ss.metadata.namespace.clone().unwrap_or_default();
    let label = Scope::from_annotations(ss.metadata.annotations.as_ref()).label(&namespace, &name);
    let keys = ordered_keys(ss, keys);
    let open = |encoded: &str| -> Result<(), ItemError> {
        let item = STANDARD.decode(encoded).map_err(|_| ItemError::Base64)?;
        hybrid_decrypt(keys.iter().copied(), &item, &label)?;
        Ok(())
    };
    if let Some(v1) = &ss.spec.data {
        if !options.accept_v1_data {
            return Err(UnsealError::V1DataRefused);
        }
        if !ss.spec.encrypted_data.is_empty() {
            return Err(UnsealError::BothDataAndEncryptedData);
        }
        return open(v1).map_err(|e| UnsealError::Items(vec![("data".to_owned(), e)]));
    }
    let errors: Vec<_> = ss
        .spec
        .encrypted_data
        .iter()
        .filter_map(|(key, encoded)| open(encoded).err().map(|e| (key.clone(), e)))
        .collect();
    if errors.is_empty() { Ok(()) } else { Err(UnsealError::Items(errors)) }
}

/// The Secret the controller would write for `ss`, decrypted with `keys`.
pub fn unseal(ss: &SealedSecret, keys: &[PrivateKey], options: UnsealOptions) -> Result<Secret, UnsealError> {
    well_formed(&ss.spec)?;
    let name = ss.metadata.name.clone().unwrap_or_default();
    let namespace = ss.metadata.namespace.clone().unwrap_or_default();
    let scope = Scope::from_annotations(ss.metadata.annotations.as_ref());
    let label = scope.label(&namespace, &name);
    let keys = ordered_keys(ss, keys);
    if ss.spec.template.metadata.finalizers.as_ref().is_some_and(|f| !f.is_empty()) {
        return Err(UnsealError::TemplateFinalizers);
    }

    let mut secret = if let Some(v1) = &ss.spec.data {
        if !options.accept_v1_data {
            return Err(UnsealError::V1DataRefused);
        }
        if !ss.spec.encrypted_data.is_empty() {
            return Err(UnsealError::BothDataAndEncryptedData);
        }
        let opened = STANDARD
            .decode(v1)
            .map_err(|_| ItemError::Base64)
            .and_then(|item| Ok(hybrid_decrypt(keys.iter().copied(), &item, &label)?))
            .map_err(|e| UnsealError::Items(vec![("data".to_owned(), e)]))?;
        serde_json::from_slice::<Secret>(opened.expose()).map_err(|_| UnsealError::V1NotASecret)?
    } else {
        let template = &ss.spec.template;
        let mut errors = Vec::new();
        let mut items = BTreeMap::new();
        for (key, encoded) in &ss.spec.encrypted_data {
            let opened = STANDARD
                .decode(encoded)
                .map_err(|_| ItemError::Base64)
                .and_then(|item| Ok(hybrid_decrypt(keys.iter().copied(), &item, &label)?));
            match opened {
                Ok(plain) => {
                    items.insert(key.clone(), plain);
                }
                Err(e) => errors.push((key.clone(), e)),
            }
        }
        if !errors.is_empty() {
            return Err(UnsealError::Items(errors));
        }
        let mut data: BTreeMap<String, SecretBytes> = items.clone();
        if let Some(templates) = &template.data {
            let rendered = template::render_all(templates, &items)?;
            // As upstream v0.40: a `null` template leaves its item out; a rendered template
            // never replaces an item of the same key (it is rendered, and may fail, all the same).
            data.retain(|key, _| !matches!(templates.get(key), Some(None)));
            data.extend(rendered.into_iter().filter(|(key, _)| !ss.spec.encrypted_data.contains_key(key)));
        }
        Secret {
            metadata: template.metadata.clone(),
            type_: template.type_.clone(),
            immutable: template.immutable,
            data: Some(data.into_iter().map(|(k, v)| (k, ByteString(v.expose().to_vec()))).collect()),
            ..Default::default()
        }
    };

    // What the API server sets: kept from a template, they make every create fail (a
    // resourceVersion) or mean nothing; from the deprecated `data` field's Secret, finalizers
    // too, which no one could see before decrypting.
    let meta = &mut secret.metadata;
    (meta.resource_version, meta.uid, meta.generation, meta.generate_name) = (None, None, None, None);
    (meta.creation_timestamp, meta.deletion_timestamp, meta.deletion_grace_period_seconds) = (None, None, None);
    (meta.managed_fields, meta.finalizers, meta.self_link) = (None, None, None);
    secret.metadata.name = ss.metadata.name.clone();
    secret.metadata.namespace = ss.metadata.namespace.clone();
    let skip_owner = ss
        .spec
        .template
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(SKIP_SET_OWNER_REFERENCES_ANNOTATION))
        .is_some_and(|v| v == "true");
    secret.metadata.owner_references = if skip_owner {
        None
    } else {
        Some(vec![OwnerReference {
            api_version: API_VERSION.to_owned(),
            kind: KIND.to_owned(),
            name,
            uid: ss.metadata.uid.clone().unwrap_or_default(),
            controller: Some(true),
            block_owner_deletion: None,
        }])
    };
    Ok(secret)
}

/// `ss` with every item opened with `keys` and sealed again to `to`, under the same scope: what
/// the controller's `/v1/rotate` does, for whoever holds the keys (moving SealedSecrets to a new
/// cluster from the old cluster's key backup). Nothing else changes but our sealing-key annotation.
pub fn reseal<R: rand::CryptoRng + ?Sized>(
    rng: &mut R,
    ss: &SealedSecret,
    keys: &[PrivateKey],
    to: &sealant_core::PublicKey,
) -> Result<SealedSecret, UnsealError> {
    well_formed(&ss.spec)?;
    let name = ss.metadata.name.clone().unwrap_or_default();
    let namespace = ss.metadata.namespace.clone().unwrap_or_default();
    let label = Scope::from_annotations(ss.metadata.annotations.as_ref()).label(&namespace, &name);
    let keys = ordered_keys(ss, keys);
    let mut again = |encoded: &str| -> Result<String, ItemError> {
        let item = STANDARD.decode(encoded).map_err(|_| ItemError::Base64)?;
        let plain = hybrid_decrypt(keys.iter().copied(), &item, &label)?;
        let sealed = sealant_core::hybrid_encrypt(rng, to, plain.expose(), &label)?;
        Ok(STANDARD.encode(sealed))
    };
    let mut out = ss.clone();
    if let Some(v1) = &ss.spec.data {
        out.spec.data = Some(again(v1).map_err(|e| UnsealError::Items(vec![("data".to_owned(), e)]))?);
    }
    let mut errors = Vec::new();
    for (key, encoded) in &ss.spec.encrypted_data {
        match again(encoded) {
            Ok(item) => {
                out.spec.encrypted_data.insert(key.clone(), item);
            }
            Err(e) => errors.push((key.clone(), e)),
        }
    }
    if !errors.is_empty() {
        return Err(UnsealError::Items(errors));
    }
    out.metadata.annotations.get_or_insert_default().insert(SEALING_KEY_ANNOTATION.to_owned(), to.fingerprint());
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_items_read_as_upstreams_grouped_and_bounded() {
        let no_key = || ItemError::Decrypt(sealant_core::hybrid::HybridError::NoKeyCouldDecrypt);
        let one = UnsealError::Items(vec![("password".into(), no_key())]);
        assert_eq!(one.to_string(), "no key could decrypt secret (password)");
        let mut many: Vec<(String, ItemError)> = (0..7).map(|i| (format!("k{i}"), no_key())).collect();
        many.insert(2, ("b".into(), ItemError::Base64));
        let hostile = UnsealError::Items(vec![("a\u{1b}[2K\nforged".into(), no_key())]);
        assert_eq!(hostile.to_string(), r"no key could decrypt secret (a\u{1b}[2K\nforged)");
        assert_eq!(
            UnsealError::Items(many).to_string(),
            "no key could decrypt secret (k0, k1, k2, k3, k4 and 2 more); not valid base64 (b)"
        );
    }
}
