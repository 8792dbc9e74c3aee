//! Key renewal, by the leader: a first key when there is none, then one every renewal period
//! or on SIGUSR1, named alike on every replica so that two never make two; and the key backup
//! written whenever the set of keys changes.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::api::PostParams;
use kube::{Api, Client};
use sealant_core::cert;
use sealant_crds::keys::{KeyName, key_secret};
use time::OffsetDateTime;
use tokio::sync::{Notify, watch};

use crate::api::answered;
use crate::error::{Error, Result};
use crate::flags::Flags;
use crate::keys::backup::write_backup;
use crate::keys::keyring::{KEY_LABEL, Keyring};
use crate::serve::metrics::Metrics;

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
) -> Result<Option<String>> {
    let api = Api::<Secret>::namespaced(client.clone(), namespace);
    let retired = kube::api::ListParams::default().labels(&format!("{KEY_LABEL},{KEY_LABEL}!=active"));
    let retired = answered(api.list_metadata(&retired)).await?.items.len();
    let name = next_key_name(&flags.key_prefix, newest, retired);
    if let Some(existing) = answered(api.get_opt(&name)).await? {
        // Another replica's key carries the key label; anything else took the name, and no key
        // can be made under it until it goes: a failure, counted and alerted on.
        if !existing.metadata.labels.as_ref().is_some_and(|l| l.contains_key(KEY_LABEL)) {
            return Err(Error::KeyNameTaken(name));
        }
        tracing::info!(secret = %name, "the next key already exists (made by another replica)");
        return Ok(None);
    }
    let (bits, ttl, cn) = (flags.key_size, flags.key_ttl, flags.my_cn.clone());
    let not_before = cert::next_not_before(OffsetDateTime::now_utc(), newest);
    let generated = tokio::task::spawn_blocking(move || cert::generate(&mut rand::rng(), bits, ttl, &cn, not_before))
        .await?
        .map_err(Error::Generate)?;
    let fingerprint = generated.key.public().fingerprint();
    let secret = key_secret(
        &generated,
        KeyName::Name(name.clone()),
        namespace,
        Flags::pairs(&flags.privatekey_labels).into_iter().collect(),
        Flags::pairs(&flags.privatekey_annotations).into_iter().collect(),
    );
    match answered(api.create(&PostParams::default(), &secret)).await {
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
) -> Result<()> {
    ready.wait_for(|r| *r).await?;
    let cutoff = flags.cutoff().map_err(Error::Flag)?;
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
                Err(e) => tracing::warn!(error = %e.one_line(), "cannot write the key backup"),
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
            Ok(Err(error)) => tracing::warn!(error = %error.one_line(), retry_in = ?delay, "cannot make a new key"),
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
