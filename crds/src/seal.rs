//! Secret → SealedSecret, as kubeseal builds it, plus our sealing-key annotation.

use sealant_core::error::quoted;
use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use rand::CryptoRng;
use sealant_core::{Certificate, HybridError, Scope, hybrid_encrypt};

use crate::SEALING_KEY_ANNOTATION;
use crate::types::{API_VERSION, KIND, SealedSecret, SealedSecretSpec, SecretTemplateSpec};

/// Annotations kubectl and kubecfg leave on objects that would carry the plaintext along.
const LAST_APPLIED_ANNOTATIONS: [&str; 2] =
    ["kubectl.kubernetes.io/last-applied-configuration", "kubecfg.ksonnet.io/last-applied-configuration"];

#[derive(Clone, Debug, Default)]
pub struct SealOptions {
    /// `--scope`: overrides the scope the Secret's annotations declare.
    pub scope: Option<Scope>,
    /// `--name`: overrides the Secret's name.
    pub name: Option<String>,
    /// `-n` given explicitly: the Secret's namespace must agree with it.
    pub namespace: Option<String>,
    /// Namespace for a Secret that declares none (kubeconfig's, as kubeseal does).
    pub default_namespace: Option<String>,
    /// `--allow-empty-data`.
    pub allow_empty_data: bool,
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SealError {
    #[error("the Secret {} has no data and no stringData", quoted(.0))]
    EmptyData(String),
    #[error("missing metadata.name in input Secret")]
    MissingName,
    #[error("namespace mismatch: input secret is in namespace {} but {} was specified", quoted(.secret), quoted(.flag))]
    NamespaceMismatch { secret: String, flag: String },
    #[error("the Secret {} must declare a namespace for scope {}", quoted(.0), .1)]
    MissingNamespace(String, Scope),
    #[error("cannot seal item {}", quoted(.key))]
    Encrypt {
        key: String,
        #[source]
        source: HybridError,
    },
}

/// Seal every `data` and `stringData` value of `secret` to `cert`.
pub fn seal_secret<R: CryptoRng + ?Sized>(
    rng: &mut R,
    cert: &Certificate,
    secret: &Secret,
    options: &SealOptions,
) -> Result<SealedSecret, SealError> {
    let mut meta = secret.metadata.clone();
    if let Some(name) = &options.name {
        meta.name = Some(name.clone());
    }
    let name = meta.name.clone().filter(|n| !n.is_empty()).ok_or(SealError::MissingName)?;
    let is_empty = secret.data.as_ref().is_none_or(BTreeMap::is_empty)
        && secret.string_data.as_ref().is_none_or(BTreeMap::is_empty);
    if is_empty && !options.allow_empty_data {
        return Err(SealError::EmptyData(name));
    }

    let mut annotations = meta.annotations.take().unwrap_or_default();
    if let Some(scope) = options.scope {
        scope.apply_to(&mut annotations);
    }
    for key in LAST_APPLIED_ANNOTATIONS {
        annotations.remove(key);
    }
    let scope = Scope::from_annotations(Some(&annotations));

    if scope.needs_namespace() {
        match (meta.namespace.as_deref().filter(|n| !n.is_empty()), options.namespace.as_deref()) {
            (Some(declared), Some(flag)) if declared != flag => {
                return Err(SealError::NamespaceMismatch { secret: declared.to_owned(), flag: flag.to_owned() });
            }
            (Some(_), _) => {}
            (None, Some(flag)) => meta.namespace = Some(flag.to_owned()),
            (None, None) => meta.namespace = options.default_namespace.clone().filter(|n| !n.is_empty()),
        }
        if meta.namespace.is_none() {
            return Err(SealError::MissingNamespace(name, scope));
        }
    }
    let namespace = meta.namespace.clone().unwrap_or_default();

    // What the API server adds is not part of what the user declared.
    meta.self_link = None;
    meta.uid = None;
    meta.resource_version = None;
    meta.generation = None;
    meta.creation_timestamp = None;
    meta.deletion_timestamp = None;
    meta.deletion_grace_period_seconds = None;
    meta.managed_fields = None;
    meta.owner_references = None;
    meta.annotations = (!annotations.is_empty()).then(|| annotations.clone());

    let label = scope.label(&namespace, &name);
    let mut encrypted_data = BTreeMap::new();
    let plain_items = secret
        .data
        .iter()
        .flatten()
        .map(|(k, v)| (k, v.0.as_slice()))
        .chain(secret.string_data.iter().flatten().map(|(k, v)| (k, v.as_bytes())));
    for (key, value) in plain_items {
        let item = hybrid_encrypt(rng, cert.public_key(), value, &label)
            .map_err(|source| SealError::Encrypt { key: key.clone(), source })?;
        encrypted_data.insert(key.clone(), STANDARD.encode(item));
    }

    let mut top_annotations = BTreeMap::new();
    scope.apply_to(&mut top_annotations);
    top_annotations.insert(SEALING_KEY_ANNOTATION.to_owned(), cert.public_key().fingerprint());

    Ok(SealedSecret {
        kind: KIND.to_owned(),
        api_version: API_VERSION.to_owned(),
        metadata: ObjectMeta {
            name: Some(name),
            namespace: meta.namespace.clone(),
            annotations: Some(top_annotations),
            ..Default::default()
        },
        spec: SealedSecretSpec {
            template: SecretTemplateSpec {
                metadata: meta,
                type_: secret.type_.clone(),
                immutable: secret.immutable,
                data: None,
            },
            data: None,
            encrypted_data,
            invalid: None,
        },
        status: None,
    })
}
