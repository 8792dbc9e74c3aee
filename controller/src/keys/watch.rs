//! Key Secrets, watched by every replica: keys added, relabelled or deleted take effect without
//! a restart. Publishes the keyring the rest of the controller reads.

use std::sync::Arc;

use futures::{FutureExt, StreamExt};
use k8s_openapi::api::core::v1::Secret;
use kube::runtime::WatchStreamExt;
use kube::runtime::reflector;
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client};
use tokio::sync::watch;

use crate::error::Result;
use crate::flags::Flags;
use crate::keys::keyring::{KEY_LABEL, Keyring};
use crate::serve::metrics::Metrics;

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
) -> Result<()> {
    let api = Api::<Secret>::namespaced(client, &namespace);
    // kube-runtime's reflector keeps serving the keys it has while a relist is in progress, and
    // swaps in the new set once it is complete, which is what the keyring needs.
    let (labelled, labelled_writer) = reflector::store::<Secret>();
    let (legacy, legacy_writer) = reflector::store::<Secret>();
    let labelled_events = watcher::watcher(api.clone(), watcher::Config::default().labels(KEY_LABEL))
        .default_backoff()
        .reflect(labelled_writer);
    let legacy_config = watcher::Config::default().fields(&format!("metadata.name={}", flags.key_prefix));
    let legacy_events = watcher::watcher(api, legacy_config).default_backoff().reflect(legacy_writer);
    let mut events = std::pin::pin!(futures::stream::select(labelled_events, legacy_events));
    let listed = |store: &reflector::Store<Secret>| store.wait_until_ready().now_or_never().is_some_and(|r| r.is_ok());
    while let Some(event) = events.next().await {
        match event {
            // A relist in progress: the stores still hold the keys served.
            Ok(Event::Init | Event::InitApply(_)) => continue,
            Ok(_) => {}
            Err(e) => {
                // The watcher backs off and tries again; the current keys stay in use.
                tracing::warn!(error = %e, "watching key Secrets failed; retrying");
                continue;
            }
        }
        if !(listed(&labelled) && listed(&legacy)) {
            continue;
        }
        // A legacy key that is also labelled is in both sets: count it once. By name, so that
        // every replica builds the same keyring.
        let mut secrets = labelled.state();
        secrets.extend(legacy.state());
        secrets.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
        secrets.dedup_by(|a, b| a.metadata.name == b.metadata.name);
        let ring =
            Keyring::from_secrets(secrets.iter().map(|s| s.as_ref()), flags.key_order_priority, &flags.key_prefix);
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
