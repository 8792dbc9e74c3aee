//! The `bitnami.com/v1alpha1` `SealedSecret` API: types, the CRD generated from them, and the
//! two operations every part of Sealant shares: sealing a Secret and unsealing a SealedSecret.
#![forbid(unsafe_code)]

pub mod crd;
pub mod keys;
mod lenient;
pub mod seal;
pub mod types;
pub mod unseal;

pub use seal::{SealError, SealOptions, seal_secret};
pub use types::{SealedSecret, SealedSecretCondition, SealedSecretSpec, SealedSecretStatus, SecretTemplateSpec};
pub use unseal::{UnsealError, UnsealOptions, open_items, reseal, unseal};

/// Annotation our CLI adds to a SealedSecret: the fingerprint of the key it was sealed to, so
/// the controller can try that key first and `sealant keys usage` can tell who depends on a key.
pub const SEALING_KEY_ANNOTATION: &str = "sealant.dev/sealing-key";
/// On `spec.template.metadata`: do not give the Secret an ownerReference.
pub const SKIP_SET_OWNER_REFERENCES_ANNOTATION: &str = "sealedsecrets.bitnami.com/skip-set-owner-references";
/// On an existing Secret: the SealedSecret may take it over.
pub const MANAGED_ANNOTATION: &str = "sealedsecrets.bitnami.com/managed";
/// On an existing Secret: merge into it instead of replacing it.
pub const PATCH_ANNOTATION: &str = "sealedsecrets.bitnami.com/patch";
