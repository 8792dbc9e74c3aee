//! Key Secrets, watched by every replica: keys added, relabelled or deleted take effect without
//! a restart. Publishes the keyring the rest of the controller reads.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Secret;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client};
use tokio::sync::watch;

use crate::error::Result;
use crate::flags::Flags;
use crate::keys::keyring::{KEY_LABEL, Keyring};
use crate::serve::metrics::Metrics;

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
) -> Result<()> {
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
