//! Key Secrets: watched by every replica (so keys added, relabelled or deleted take effect without
//! a restart), and generated and renewed by the leader.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::PostParams;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client, ResourceExt};
use sealant_core::cert;
use sealant_crds::keys::{BACKUP_KEYS_ANNOTATION, BACKUP_WRITTEN_ANNOTATION, KeyName, backup_list, key_secret};
use time::OffsetDateTime;
use tokio::sync::{Notify, watch};

use crate::flags::Flags;
use crate::keyring::{KEY_LABEL, Keyring};
use crate::metrics::Metrics;

/// One watched set of key Secrets: the ones served, and a relist in progress.
#[derive(Debug, Default)]
struct Watched {
    current: BTreeMap<String, Secret>,
    pending: BTreeMap<String, Secret>,
    listed: bool,
}

impl Watched {
    /// Take one watch event; whether the served set may have changed.
    fn apply(&mut self, event: Event<Secret>) -> bool {
        let name = |s: &Secret| s.metadata.name.clone().unwrap_or_default();
        match event {
            // A (re)list begins: keep serving the current keys until it is complete.
            Event::Init => {
                self.pending.clear();
                return false;
            }
            Event::InitApply(s) => {
                self.pending.insert(name(&s), s);
                return false;
            }
            Event::InitDone => {
                self.current = std::mem::take(&mut self.pending);
                self.listed = true;
            }
            Event::Apply(s) => {
                self.current.insert(name(&s), s);
            }
            Event::Delete(s) => {
                self.current.remove(&name(&s));
            }
        }
        true
    }
}

/// Keep the published keyring in step with the key Secrets in `namespace`: the labelled ones,
/// and the legacy key (the Secret named after the key prefix, label or not), both watched so
/// that any change takes effect without a restart. The keyring is first published, and `ready`
/// set, once both have been listed.
pub async fn watch_keys(
    client: Client,
    namespace: String,
    flags: Arc<Flags>,
    metrics: Arc<Metrics>,
    keyring: watch::Sender<Arc<Keyring>>,
    ready: watch::Sender<bool>,
) -> anyhow::Result<()> {
    let api = Api::<Secret>::namespaced(client, &namespace);
    let labelled = watcher::watcher(api.clone(), watcher::Config::default().labels(KEY_LABEL))
        .default_backoff()
        .map_ok(|event| (false, event));
    let legacy_config = watcher::Config::default().fields(&format!("metadata.name={}", flags.key_prefix));
    let legacy = watcher::watcher(api, legacy_config).default_backoff().map_ok(|event| (true, event));
    let mut events = std::pin::pin!(futures::stream::select(labelled, legacy));
    let (mut keys, mut legacy_key) = (Watched::default(), Watched::default());
    while let Some(item) = events.next().await {
        let (is_legacy, event) = match item {
            Ok(tagged) => tagged,
            Err(e) => {
                // The watcher backs off and tries again; the current keys stay in use.
                tracing::warn!(error = %e, "watching key Secrets failed; retrying");
                continue;
            }
        };
        let watched = if is_legacy { &mut legacy_key } else { &mut keys };
        let changed = watched.apply(event);
        if !(changed && keys.listed && legacy_key.listed) {
            continue;
        }
        // A legacy key that is also labelled is in both sets: count it once.
        let unlabelled =
            legacy_key.current.iter().filter(|(name, _)| !keys.current.contains_key(*name)).map(|(_, s)| s);
        let ring =
            Keyring::from_secrets(keys.current.values().chain(unlabelled), flags.key_order_priority, &flags.key_prefix);
        publish(ring, &metrics, &keyring);
        ready.send_replace(true);
    }
    Ok(())
}

fn publish(ring: Keyring, metrics: &Metrics, keyring: &watch::Sender<Arc<Keyring>>) {
    let before: Vec<String> = keyring.borrow().entries().iter().map(|e| e.fingerprint.clone()).collect();
    let after: Vec<String> = ring.entries().iter().map(|e| e.fingerprint.clone()).collect();
    // Once per Secret and reason, not at every change of the keys.
    for rejected in ring.rejected.iter().filter(|r| !keyring.borrow().rejected.contains(r)) {
        tracing::warn!(secret = %rejected.secret_name, reason = %rejected.reason, "ignoring a key Secret that cannot be used");
    }
    metrics.rejected_keys.set(ring.rejected.len() as i64);
    if before != after {
        tracing::info!(
            keys = ring.len(),
            sealing_key = ring.newest().map(|e| e.fingerprint.as_str()).unwrap_or("none"),
            "keys changed"
        );
    }
    metrics.keys.set(ring.len() as i64);
    metrics.newest_key_created.set(ring.newest().map(|e| e.order_time.unix_timestamp() as f64).unwrap_or(0.0));
    keyring.send_if_modified(|current| {
        let changed = before != after || current.rejected != ring.rejected;
        *current = Arc::new(ring);
        changed
    });
}

/// The name of the key that follows the newest active one (made at `newest`, or none yet) when
/// `retired` key Secrets carry the label with another value than `active` (`compromised`, say):
/// the same on every replica that sees the same keys, so that two of them renewing at once
/// (several replicas without a Lease) create one key between them, never two. Counting the
/// retired keys makes a new name after a key is relabelled, whose own name would otherwise come
/// back; the new key of the other replica is active, so it changes nothing.
pub fn next_key_name(prefix: &str, newest: Option<OffsetDateTime>, retired: usize) -> String {
    format!("{prefix}-{:x}-{retired}", newest.map_or(0, |t| t.unix_timestamp().max(0)))
}

/// Generate and store the key that follows `newest` (leader only). `None` when another replica
/// already made it: the key watch brings it.
async fn generate_key(
    client: &Client,
    namespace: &str,
    flags: &Flags,
    newest: Option<OffsetDateTime>,
) -> anyhow::Result<Option<String>> {
    let api = Api::<Secret>::namespaced(client.clone(), namespace);
    let retired = kube::api::ListParams::default().labels(&format!("{KEY_LABEL},{KEY_LABEL}!=active"));
    let retired = api.list_metadata(&retired).await?.items.len();
    let name = next_key_name(&flags.key_prefix, newest, retired);
    if api.get_opt(&name).await?.is_some() {
        tracing::info!(secret = %name, "the next key already exists (made by another replica)");
        return Ok(None);
    }
    let (bits, ttl, cn) = (flags.key_size, flags.key_ttl, flags.my_cn.clone());
    let not_before = cert::next_not_before(OffsetDateTime::now_utc(), newest);
    let generated =
        tokio::task::spawn_blocking(move || cert::generate(&mut rand::rng(), bits, ttl, &cn, not_before)).await??;
    let fingerprint = generated.key.public().fingerprint();
    let secret = key_secret(
        &generated,
        KeyName::Name(name.clone()),
        namespace,
        Flags::pairs(&flags.privatekey_labels).into_iter().collect(),
        Flags::pairs(&flags.privatekey_annotations).into_iter().collect(),
    );
    match api.create(&PostParams::default(), &secret).await {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 409 => {
            tracing::info!(secret = %name, "the next key was made by another replica meanwhile; keeping theirs");
            return Ok(None);
        }
        Err(e) => return Err(e.into()),
    }
    tracing::info!(
        secret = %name,
        fingerprint = %fingerprint,
        certificate = %generated.certificate.pem(),
        "generated a new sealing key"
    );
    Ok(Some(fingerprint))
}

/// Name of the Secret holding the encrypted key backup.
pub fn backup_secret_name(flags: &Flags) -> String {
    format!("{}-backup", flags.key_prefix)
}

fn rfc3339_now() -> String {
    OffsetDateTime::now_utc().format(&time::format_description::well_known::Rfc3339).unwrap_or_default()
}

/// Write every key Secret, encrypted to the backup recipients, to the backup Secret.
async fn write_backup(client: &Client, namespace: &str, flags: &Flags, metrics: &Metrics) -> anyhow::Result<()> {
    if flags.backup_age_recipients.is_empty() {
        return Ok(());
    }
    let recipients = sealant_core::age_keys::parse_recipients(&flags.backup_age_recipients)?;
    let api = Api::<Secret>::namespaced(client.clone(), namespace);
    let mut keys = api.list(&kube::api::ListParams::default().labels(KEY_LABEL)).await?;
    // The legacy key (named after --key-prefix, perhaps without the label) opens SealedSecrets
    // too, as the keyring loads it: a backup without it would not restore them.
    if !keys.items.iter().any(|k| k.metadata.name.as_deref() == Some(flags.key_prefix.as_str()))
        && let Some(legacy) = api.get_opt(&flags.key_prefix).await?
    {
        keys.items.push(legacy);
    }
    let list = backup_list(&keys.items);
    let plain = zeroize::Zeroizing::new(serde_json::to_vec(&list)?);
    let sealed = sealant_core::age_keys::encrypt(&recipients, &plain, false)?;
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
    match api.get_opt(&name).await? {
        Some(existing) => {
            let mut replaced = secret;
            replaced.metadata.resource_version = existing.metadata.resource_version;
            api.replace(&name, &PostParams::default(), &replaced).await?;
        }
        None => {
            api.create(&PostParams::default(), &secret).await?;
        }
    }
    metrics.last_backup.set(OffsetDateTime::now_utc().unix_timestamp() as f64);
    tracing::info!(secret = %name, keys = keys.items.len(), recipients = flags.backup_age_recipients.len(), "wrote the encrypted key backup");
    Ok(())
}

/// Wait until the keyring holds `fingerprint` (the watcher has seen our new key).
async fn wait_for_key(keyring: &mut watch::Receiver<Arc<Keyring>>, fingerprint: &str) {
    let seen = keyring.wait_for(|ring| ring.entries().iter().any(|e| e.fingerprint == fingerprint));
    if tokio::time::timeout(Duration::from_secs(30), seen).await.is_err() {
        tracing::warn!(%fingerprint, "the new key has not appeared in the watch yet");
    }
}

/// The leader's key duties: a first key when there is none (or the newest is older than the
/// cutoff), then one every renewal period, and one whenever `renew_now` is notified (SIGUSR1).
pub async fn manage_keys(
    client: Client,
    namespace: String,
    flags: Arc<Flags>,
    metrics: Arc<Metrics>,
    mut keyring: watch::Receiver<Arc<Keyring>>,
    mut ready: watch::Receiver<bool>,
    renew_now: Arc<Notify>,
) -> anyhow::Result<()> {
    ready.wait_for(|r| *r).await?;
    let cutoff = flags.cutoff().map_err(anyhow::Error::msg)?;
    let needs_first = {
        let ring = keyring.borrow();
        match ring.newest() {
            None => true,
            Some(newest) => cutoff.is_some_and(|c| newest.order_time < c),
        }
    };
    if needs_first {
        make_next_key(&client, &namespace, &flags, &metrics, &mut keyring).await;
    }
    // The backup holds every key: written when this replica starts leading (keys added by hand
    // included), and again whenever the set of keys changes (renewal, a key restored or rotated
    // by hand); a failed write is tried again at the next change.
    let fingerprints =
        |ring: &Keyring| -> Vec<String> { ring.entries().iter().map(|e| e.fingerprint.clone()).collect() };
    let mut backed_up = None;
    let period = flags.renew_period();
    loop {
        let now_held = fingerprints(&keyring.borrow());
        if backed_up.as_ref() != Some(&now_held) && !flags.backup_age_recipients.is_empty() {
            match write_backup(&client, &namespace, &flags, &metrics).await {
                Ok(()) => backed_up = Some(now_held),
                Err(e) => tracing::warn!(error = %e, "cannot write the key backup"),
            }
        }
        let due = if period.is_zero() {
            None
        } else {
            let newest = keyring.borrow().newest().map(|e| e.order_time);
            Some(match newest {
                Some(t) => {
                    let age = (OffsetDateTime::now_utc() - t).unsigned_abs();
                    period.saturating_sub(age)
                }
                None => Duration::ZERO,
            })
        };
        let renew = async {
            match due {
                Some(d) => tokio::time::sleep(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = renew => {}
            () = renew_now.notified() => tracing::info!("renewing the sealing key now (SIGUSR1)"),
            changed = keyring.changed() => {
                changed?;
                continue;
            }
        }
        make_next_key(&client, &namespace, &flags, &metrics, &mut keyring).await;
    }
}

/// Make the next key, trying until it exists: a failure (the API server down, RBAC, a slow
/// key generation) is logged and counted, and never ends the process.
async fn make_next_key(
    client: &Client,
    namespace: &str,
    flags: &Flags,
    metrics: &Metrics,
    keyring: &mut watch::Receiver<Arc<Keyring>>,
) {
    let mut delay = Duration::from_secs(5);
    loop {
        let newest = keyring.borrow().entries().iter().map(|e| e.certificate.not_before()).max();
        let made = tokio::time::timeout(Duration::from_secs(300), generate_key(client, namespace, flags, newest)).await;
        match made {
            Ok(Ok(Some(fp))) => return wait_for_key(keyring, &fp).await,
            // Another replica's key: give the watch time to bring it rather than ask again at once.
            Ok(Ok(None)) => {
                let _ = tokio::time::timeout(Duration::from_secs(30), keyring.changed()).await;
                return;
            }
            Ok(Err(error)) => tracing::warn!(error = %format!("{error:#}"), retry_in = ?delay, "cannot make a new key"),
            Err(_) => tracing::warn!(retry_in = ?delay, "making a new key took over 5 minutes"),
        }
        metrics.key_renewal_failures.inc();
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(600));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replicas_that_see_the_same_keys_name_the_next_key_alike() {
        let t = time::macros::datetime!(2026-01-01 0:00 UTC);
        assert_eq!(next_key_name("sealed-secrets-key", Some(t), 2), next_key_name("sealed-secrets-key", Some(t), 2));
        assert_ne!(next_key_name("sealed-secrets-key", Some(t), 2), next_key_name("sealed-secrets-key", Some(t), 3));
        assert_eq!(next_key_name("sealed-secrets-key", None, 0), "sealed-secrets-key-0-0");
    }
}
