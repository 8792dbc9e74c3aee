//! Sealant's core: the sealed-secrets ciphertext format, scopes, keys, certificates, templates
//! and age (key backups, SOPS). SOPS files are the `sealant-sops` crate's.
//!
//! Everything here works on bytes and values: no files, no network, no Kubernetes client.
//! Randomness is passed in by the caller so that tests can be deterministic.
#![forbid(unsafe_code)]

pub mod age_keys;
pub mod age_pq;
pub mod age_ssh;
pub mod cert;
pub mod error;
pub mod go;
pub mod hybrid;
pub mod keys;
pub mod provider;
pub mod scope;
pub mod secret;
pub mod template;
pub mod yaml;

pub use cert::{CertError, Certificate, GeneratedKey};
pub use hybrid::{HybridError, hybrid_decrypt, hybrid_encrypt};
pub use keys::{KeyError, PrivateKey, PublicKey, fingerprint};
pub use scope::Scope;
pub use secret::SecretBytes;
