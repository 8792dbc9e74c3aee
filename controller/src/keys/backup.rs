//! The key backup: every key Secret, encrypted to `--backup-age-recipients`, in the Secret
//! `<key-prefix>-backup`, with annotations that say which keys it holds and when it was written.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::PostParams;
use kube::{Api, Client, ResourceExt};
use sealant_crds::keys::{BACKUP_KEYS_ANNOTATION, BACKUP_WRITTEN_ANNOTATION, backup_list};
use time::OffsetDateTime;

use crate::api::answered;
use crate::error::{Error, Result};
use crate::flags::Flags;
use crate::keys::keyring::KEY_LABEL;
use crate::serve::metrics::Metrics;

/// Name of the Secret holding the encrypted key backup.
pub fn backup_secret_name(flags: &Flags) -> String {
    format!("{}-backup", flags.key_prefix)
}

fn rfc3339_now() -> String {
    OffsetDateTime::now_utc().format(&time::format_description::well_known::Rfc3339).unwrap_or_default()
}

/// Write every key Secret, encrypted to the backup recipients, to the backup Secret.
pub(crate) async fn write_backup(client: &Client, namespace: &str, flags: &Flags, metrics: &Metrics) -> Result<()> {
    if flags.backup_age_recipients.is_empty() {
        return Ok(());
    }
    let recipients =
        sealant_core::age_keys::parse_recipients(&flags.backup_age_recipients).map_err(Error::BackupRecipients)?;
    let api = Api::<Secret>::namespaced(client.clone(), namespace);
    let mut keys = answered(api.list(&kube::api::ListParams::default().labels(KEY_LABEL))).await?;
    // The legacy key (named after --key-prefix, perhaps without the label) opens SealedSecrets
    // too, as the keyring loads it: a backup without it would not restore them.
    if !keys.items.iter().any(|k| k.metadata.name.as_deref() == Some(flags.key_prefix.as_str()))
        && let Some(legacy) = answered(api.get_opt(&flags.key_prefix)).await?
    {
        keys.items.push(legacy);
    }
    let list = backup_list(&keys.items);
    let plain = zeroize::Zeroizing::new(serde_json::to_vec(&list).map_err(Error::Encode)?);
    let sealed = sealant_core::age_keys::encrypt(&recipients, &plain, false).map_err(Error::Backup)?;
    let name = backup_secret_name(flags);
    let secret = Secret {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            namespace: Some(namespace.to_owned()),
            annotations: Some(BTreeMap::from([
                (
                    "sealant.dev/backup".to_owned(),
                    "key Secrets as a v1 List, age-encrypted; restore with `sealant keys restore`".to_owned(),
                ),
                // What `sealant status` reads to tell whether the backup holds the newest key.
                (
                    BACKUP_KEYS_ANNOTATION.to_owned(),
                    keys.items.iter().map(|k| k.name_any()).collect::<Vec<_>>().join(","),
                ),
                (BACKUP_WRITTEN_ANNOTATION.to_owned(), rfc3339_now()),
            ])),
            ..Default::default()
        },
        type_: Some("Opaque".to_owned()),
        data: Some(BTreeMap::from([("keys.age".to_owned(), ByteString(sealed))])),
        ..Default::default()
    };
    match answered(api.get_opt(&name)).await? {
        Some(existing) => {
            let mut replaced = secret;
            replaced.metadata.resource_version = existing.metadata.resource_version;
            answered(api.replace(&name, &PostParams::default(), &replaced)).await?;
        }
        None => {
            answered(api.create(&PostParams::default(), &secret)).await?;
        }
    }
    metrics.last_backup.set(OffsetDateTime::now_utc().unix_timestamp() as f64);
    tracing::info!(secret = %name, keys = keys.items.len(), recipients = flags.backup_age_recipients.len(), "wrote the encrypted key backup");
    Ok(())
}
