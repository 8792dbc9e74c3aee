//! The unsealing plane: for each SealedSecret, what its Secret should be (`plan`, pure), the
//! reconcile that writes it (`reconcile`) and its status (`status`) and Events (`events`), the
//! small copy kept between reconciles (`cache`) and what is remembered of each object
//! (`state`: failures, writes, verified Secrets), and what keeps tenants fair and slow to probe:
//! reconcile slots (`seats`) and turns at the RSA work (`turns`) per namespace, and template
//! failures slowed down (`template_guard`). Here: the kube-runtime controllers that drive reconciles, one per
//! watched scope ([`controllers`]).

pub mod cache;
pub mod events;
pub mod plan;
pub mod reconcile;
pub mod seats;
pub mod state;
pub mod status;
pub mod template_guard;
pub mod turns;

use std::future::Future;
use std::sync::Arc;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Secret;
use kube::api::WatchParams;
use kube::core::{PartialObjectMeta, WatchEvent};
use kube::runtime::{Controller, WatchStreamExt, reflector, watcher};
use kube::{Api, Client};
use sealant_crds::SealedSecret;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::error::Result;
use crate::flags::Flags;
use crate::keys::keyring::Keyring;
use crate::serve::metrics::{self, Metrics};
use cache::Cached;

/// Objects per page of an initial list where lists are not streamed (kube's default is 500). A
/// SealedSecret may be close to the API server's 1.5 MB limit, and a page is held whole while it
/// is read: 20 of them cost at most about 30 MB, whatever tenants write; 10,000 small ones take
/// 500 list calls.
const LIST_PAGE: u32 = 20;

/// How the initial state of a watch is read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lists {
    /// A watch that sends the objects there are as events, one at a time, then a bookmark
    /// (Kubernetes' WatchList, on by default since 1.32): memory of one object, not of a page.
    Streamed,
    /// Lists in pages of [`LIST_PAGE`].
    Paged,
}

impl Lists {
    fn config(self) -> watcher::Config {
        match self {
            Lists::Streamed => watcher::Config::default().streaming_lists(),
            Lists::Paged => watcher::Config::default().page_size(LIST_PAGE),
        }
    }
}

/// Whether the API server streams lists, asked with a watch of SealedSecrets in `scope` that no
/// object matches: one that does answers with the bookmark that ends the initial events; one
/// whose WatchList feature gate is off refuses the parameters. Any other answer (none in time,
/// RBAC) keeps to pages, which every API server serves.
pub async fn lists(client: &Client, scope: Option<&str>) -> Lists {
    let api: Api<SealedSecret> = match scope {
        None => Api::all(client.clone()),
        Some(ns) => Api::namespaced(client.clone(), ns),
    };
    let params = WatchParams::streaming_lists().labels("sealant-probe,!sealant-probe").timeout(10);
    let answer = crate::api::bounded(crate::api::API_TIMEOUT, async {
        let mut events = api.watch(&params, "0").await?.boxed();
        while let Some(event) = events.try_next().await? {
            if let WatchEvent::Bookmark(bookmark) = event {
                return Ok(bookmark.metadata.annotations.contains_key("k8s.io/initial-events-end"));
            }
        }
        Ok::<_, kube::Error>(false)
    })
    .await;
    match answer {
        Ok(Ok(true)) => {
            tracing::info!("initial lists are streamed (WatchList)");
            Lists::Streamed
        }
        Ok(Ok(false)) => {
            tracing::info!(
                page = LIST_PAGE,
                "initial lists are read in pages: the API server sent no initial-events bookmark"
            );
            Lists::Paged
        }
        Ok(Err(e)) => {
            tracing::info!(page = LIST_PAGE, error = %e, "initial lists are read in pages: the API server does not stream them");
            Lists::Paged
        }
        Err(e) => {
            tracing::info!(page = LIST_PAGE, error = %e, "initial lists are read in pages");
            Lists::Paged
        }
    }
}

/// SealedSecrets reconciled at once.
pub(crate) const RECONCILE_CONCURRENCY: u16 = 32;

/// A watch event of SealedSecrets as the cache keeps them.
fn cached(event: watcher::Event<SealedSecret>) -> watcher::Event<Cached> {
    match event {
        watcher::Event::Apply(ss) => watcher::Event::Apply(ss.into()),
        watcher::Event::Delete(ss) => watcher::Event::Delete(ss.into()),
        watcher::Event::Init => watcher::Event::Init,
        watcher::Event::InitApply(ss) => watcher::Event::InitApply(ss.into()),
        watcher::Event::InitDone => watcher::Event::InitDone,
    }
}

/// What each controller watches: every namespace (`None`), or the controller's own first and
/// then `--additional-namespaces`.
pub(crate) fn scopes(flags: &Flags, namespace: &str) -> Vec<Option<String>> {
    let extra = flags.namespaces();
    if flags.all_namespaces && extra.is_empty() {
        return vec![None];
    }
    let mut scopes = vec![Some(namespace.to_owned())];
    scopes.extend(extra.into_iter().filter(|ns| ns != namespace).map(Some));
    scopes
}

/// The reconcilers of the leader: a kube-runtime `Controller` per watched scope (all namespaces,
/// or the controller's and `--additional-namespaces`), each running until `stop`, with the
/// reconciles in flight finishing first.
pub(crate) fn controllers(
    client: &Client,
    flags: &Flags,
    lists: Lists,
    namespace: &str,
    keyring: &watch::Receiver<Arc<Keyring>>,
    context: &Arc<reconcile::Context>,
    stop: &CancellationToken,
) -> Vec<impl Future<Output = Result<()>> + Send + 'static + use<>> {
    let mut controllers = Vec::new();
    for scope in scopes(flags, namespace) {
        let (sealed, secrets): (Api<SealedSecret>, Api<PartialObjectMeta<Secret>>) = match &scope {
            None => (Api::all(client.clone()), Api::all(client.clone())),
            Some(ns) => (Api::namespaced(client.clone(), ns), Api::namespaced(client.clone(), ns)),
        };
        let mut config = lists.config();
        if !flags.label_selector.is_empty() {
            config = config.labels(&flags.label_selector);
        }
        // New keys may open SealedSecrets that failed before: reconcile everything again; and
        // so every resync period, which repairs whatever a fault made us miss.
        let key_changes = futures::stream::unfold(keyring.clone(), |mut rx| async move {
            rx.changed().await.ok()?;
            Some(((), rx))
        });
        let period = flags.resync_period;
        let resyncs = futures::stream::unfold((), move |()| async move {
            if period.is_zero() {
                std::future::pending::<()>().await;
            }
            tokio::time::sleep(period).await;
            Some(((), ()))
        });
        let key_changes = futures::stream::select(key_changes, resyncs);
        // One list-and-watch of SealedSecrets serves the controller's cache (what `Cached`
        // keeps of each) and the deletions, which are not reconciled: they only take a
        // SealedSecret's metric and counters away.
        let (reader, writer) = reflector::store::<Cached>();
        let forget_context = context.clone();
        let sealed_stream = watcher(sealed, config)
            .default_backoff()
            .map_ok(cached)
            .reflect(writer)
            .inspect(move |event| {
                if let Ok(watcher::Event::Delete(ss)) = event {
                    reconcile::forget(&forget_context, ss);
                }
            })
            .applied_objects();
        // Reconciles at once: enough to keep the API server and every core busy; more would
        // only hold more objects, decrypted values and threads in memory.
        let mut controller = Controller::for_stream(sealed_stream, reader)
            .with_config(kube::runtime::controller::Config::default().concurrency(RECONCILE_CONCURRENCY))
            .reconcile_all_on(key_changes)
            .reconcile_on(context.seats.woken(scope.as_deref()));
        if !flags.skip_recreate {
            // Owned Secrets as metadata only: their ownerReferences are all the trigger needs, and
            // other Secrets in the cluster (Helm releases of 100 KB and more) cost next to nothing.
            let owned = watcher(secrets, lists.config())
                .default_backoff()
                .modify(|secret| {
                    secret.metadata.managed_fields = None;
                    secret.metadata.annotations = None;
                    secret.metadata.labels = None;
                })
                .touched_objects();
            controller = controller.owns_stream(owned);
        }
        let context = context.clone();
        let metrics = context.metrics.clone();
        // Reconciles in flight finish before it ends, when leadership is lost or on shutdown.
        let controller = controller.graceful_shutdown_on(stop.clone().cancelled_owned());
        controllers.push(async move {
            controller
                .run(reconcile::reconcile, reconcile::error_policy, context)
                .for_each(move |result| {
                    if let Err(e) = result {
                        report_controller_error(&e, &metrics);
                    }
                    futures::future::ready(())
                })
                .await;
            Ok(())
        });
    }
    controllers
}

/// What kube-runtime's controller reports besides reconciles: counted by kind, and said in the
/// log when nothing else says it (a failed reconcile has its event, status and metrics already;
/// a list or watch that fails, RBAC on SealedSecrets for one, has only this).
fn report_controller_error(
    error: &kube::runtime::controller::Error<reconcile::ReconcileError, kube::runtime::watcher::Error>,
    metrics: &Metrics,
) {
    use kube::runtime::controller::Error;
    let kind = match error {
        Error::ReconcilerFailed(..) => "reconcile",
        Error::QueueError(e) => {
            tracing::warn!(error = %e, "cannot list or watch (retried with backoff)");
            "watch"
        }
        Error::ObjectNotFound(obj) => {
            tracing::debug!(object = %obj, "a queued object was gone before its reconcile");
            "not_found"
        }
        Error::RunnerError(e) => {
            tracing::warn!(error = %e, "the reconcile runner failed");
            "runner"
        }
    };
    metrics.controller_errors.get_or_create(&metrics::KindLabels { kind: kind.into() }).inc();
}
