//! `sealant keys`: the key runbook as commands, one file each (generate, list, rotate, backup,
//! restore, usage, retire), and what they share: the key Secrets of the cluster.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};
use rand::RngExt;
use sealant_core::age_keys;
use sealant_core::cert::{self, DEFAULT_KEY_BITS};
use sealant_core::{Certificate, PrivateKey, Scope, hybrid::single_decrypt, yaml};
use sealant_crds::keys::{KeyName, backup_list, key_secret};
use sealant_crds::{SEALING_KEY_ANNOTATION, SealedSecret};
use serde_json::{Value, json};
use time::OffsetDateTime;

use crate::cluster::{ClusterArgs, cluster_client};
use crate::commands::unseal::load_keys;
use crate::commands::validate::sealed_secret_files;
use crate::error::{CliError, CliResult, Context, Hint};
use crate::io::{self, Format, Privacy};
use crate::render;

pub use sealant_crds::keys::KEY_LABEL;

mod backup;
mod generate;
mod list;
mod restore;
mod retire;
mod rotate;
mod usage;

pub use backup::{BackupCommand, backup, backup_bundle};
pub use generate::{GenerateCommand, generate};
pub use list::list;
pub use restore::{RestoreCommand, restore};
pub use retire::{RetireCommand, retire};
pub use rotate::{RotateCommand, rotate};
pub use usage::{Usage, UsageArgs, collect_usage, usage};

#[derive(Debug, clap::Subcommand)]
pub enum KeysCommand {
    /// Generate a key Secret (and its certificate) shaped like the controller's own.
    Generate(GenerateCommand),
    /// List the controller's keys: fingerprint, created, NotAfter, state, which one seals.
    List,
    /// Make a new sealing key now (the controller picks it up without a restart).
    Rotate(RotateCommand),
    /// Back up every key Secret, encrypted to age recipients.
    Backup(BackupCommand),
    /// Put backed-up keys back into the cluster.
    Restore(RestoreCommand),
    /// Which files and in-cluster SealedSecrets depend on each key.
    Usage(UsageArgs),
    /// Stop the controller from using a key (refused while something depends on it).
    Retire(RetireCommand),
}

/// The controller's `--key-prefix` default: generateName of keys and the legacy key's name.
const KEY_PREFIX: &str = "sealed-secrets-key";

/// One key Secret in the cluster, described without its private key.
#[derive(Debug)]
pub struct ClusterKey {
    pub secret: Secret,
    pub fingerprint: String,
    pub state: String,
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339).unwrap_or_else(|_| t.to_string())
}

/// Every key Secret in the controller's namespace (any label state, and the legacy key).
pub async fn cluster_keys(client: &Client, namespace: &str) -> CliResult<Vec<ClusterKey>> {
    let api = Api::<Secret>::namespaced(client.clone(), namespace);
    let mut secrets = api
        .list(&ListParams::default().labels(KEY_LABEL))
        .await
        .context(format!("cannot list the key Secrets in {namespace}"))
        .hint("you need permission to list Secrets in the controller's namespace (--controller-namespace)")?
        .items;
    if let Ok(Some(legacy)) = api.get_opt(KEY_PREFIX).await {
        secrets.push(legacy);
    }
    let mut keys = Vec::new();
    for secret in secrets {
        let Some(pem) = secret.data.as_ref().and_then(|d| d.get("tls.crt")) else {
            continue;
        };
        let Ok(certificate) = Certificate::from_pem(&String::from_utf8_lossy(&pem.0)) else {
            continue;
        };
        let state = secret.labels().get(KEY_LABEL).cloned().unwrap_or_else(|| "legacy".to_owned());
        keys.push(ClusterKey {
            fingerprint: certificate.public_key().fingerprint(),
            state,
            not_before: certificate.not_before(),
            not_after: certificate.not_after(),
            secret,
        });
    }
    keys.sort_by_key(|k| k.not_before);
    Ok(keys)
}

/// The key the controller seals with (default `--key-order-priority`): the newest loadable one.
pub fn sealing_key(keys: &[ClusterKey]) -> Option<&ClusterKey> {
    keys.iter().filter(|k| k.state == "active" || k.state == "legacy").max_by_key(|k| k.not_before)
}
