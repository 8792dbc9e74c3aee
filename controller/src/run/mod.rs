//! Startup and supervision: the runtime, the kube client, the replica's identity, leader
//! election (`leader`), the allocator (`memory`), and every task of the three planes started,
//! watched and stopped in one place.

pub mod leader;
pub mod memory;

use std::sync::{Arc, Mutex};

use futures::FutureExt;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use sealant_crds::UnsealOptions;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::error::{Error, Result};
use crate::flags::Flags;
use crate::keys::keyring::{KeySecrets, Keyring};
use crate::keys::{renewal, watch as key_watch};
use crate::serve::metrics::Metrics;
use crate::serve::{http, proxies};
use crate::unseal::{self, events, reconcile, seats, template_guard, turns};

/// Reconciles that may hold a turn at the RSA work at once: two a core, so that one's API calls
/// (reading the whole object, writing the Secret) overlap another's decryption. One a core left
/// the cores idle during those calls: 228 decryptions a second at 10,000 objects, against 339 to
/// 477 before turns (controller-load).
fn decrypt_turns() -> usize {
    2 * std::thread::available_parallelism().map_or(2, |n| n.get())
}

/// Run until SIGTERM or SIGINT.
pub fn run(flags: Flags) -> Result<()> {
    memory::configure();
    // Decryption (RSA) and parsing run on the blocking pool: CPU work, for which threads beyond
    // the cores add memory (a stack and buffers each), not speed. Tokio's default is 512.
    // Reconciling takes at most its turns' threads; the HTTP API's decryptions have
    // their own, so a flood of SealedSecrets never starves /v1/verify; one more for the rest
    // (key generation, giving memory back).
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .max_blocking_threads(decrypt_turns() + http::HEAVY_REQUESTS + 1)
        .build()
        .map_err(Error::Io)?;
    let result = runtime.block_on(run_async(flags));
    // Decryptions still running on the blocking pool must not hold the exit (SIGTERM has a
    // grace period, and their results are no longer wanted).
    runtime.shutdown_timeout(std::time::Duration::from_secs(2));
    result
}

async fn client(flags: &Flags) -> Result<Client> {
    let config = match &flags.kubeconfig {
        Some(path) => {
            let unreadable = |source| Error::Kubeconfig { path: path.clone(), source };
            let kubeconfig = Kubeconfig::read_from(path).map_err(unreadable)?;
            Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await.map_err(unreadable)?
        }
        None => Config::infer().await.map_err(Error::NoCluster)?,
    };
    Client::try_from(config).map_err(Error::Client)
}

/// `--namespace`, then $POD_NAMESPACE, then the service account's, then `default`.
fn controller_namespace(flags: &Flags) -> String {
    flags
        .namespace
        .clone()
        .or_else(|| std::env::var("POD_NAMESPACE").ok())
        .or_else(|| std::fs::read_to_string("/var/run/secrets/kubernetes.io/serviceaccount/namespace").ok())
        .map(|ns| ns.trim().to_owned())
        .filter(|ns| !ns.is_empty())
        .unwrap_or_else(|| "default".to_owned())
}

/// This replica's one name, in the Lease, its Events and its logs: the Pod's name where there is
/// one (unique among live Pods, and what `kubectl get pods` shows; a restarted container is the
/// same replica); elsewhere the host's name and a random suffix, so that processes on one host
/// differ. The same for the life of the process.
fn identity() -> String {
    static IDENTITY: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        if let Some(pod) = var("POD_NAME") {
            return pod;
        }
        let host = var("HOSTNAME")
            .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok().map(|h| h.trim().to_owned()))
            .unwrap_or_else(|| "sealant".to_owned());
        // In a Pod (upstream's chart sets no POD_NAME) the host's name is the Pod's.
        if var("KUBERNETES_SERVICE_HOST").is_some() {
            return host;
        }
        format!("{host}_{:08x}", rand::random::<u32>())
    });
    IDENTITY.clone()
}

/// What the leader works with.
struct Leader {
    client: Client,
    namespace: String,
    flags: Arc<Flags>,
    metrics: Arc<Metrics>,
    keyring: watch::Receiver<Arc<Keyring>>,
    ready: watch::Receiver<bool>,
    renew_now: Arc<Notify>,
    /// With leader election: whether the lease is fresh enough to write.
    fence: Option<leader::Fence>,
}

/// What the leader does until `stop` is cancelled (leadership lost, or shutting down): renew
/// keys and reconcile. Ends early, with an error, if one of its tasks does.
async fn lead(leader: Leader, stop: CancellationToken) -> Result<()> {
    let Leader { client, namespace, flags, metrics, keyring, ready, renew_now, fence } = leader;
    let mut tasks = JoinSet::new();
    let renewal = renewal::manage_keys(
        client.clone(),
        namespace.clone(),
        flags.clone(),
        metrics.clone(),
        keyring.clone(),
        ready.clone(),
        renew_now,
    );
    tasks.spawn(stop.clone().run_until_cancelled_owned(renewal).map(|ended| ended.unwrap_or(Ok(()))));
    let mut ready_wait = ready.clone();
    tokio::select! {
        ready = ready_wait.wait_for(|r| *r) => { ready?; }
        () = stop.cancelled() => return Ok(()),
    }

    let context = Arc::new(reconcile::Context {
        client: client.clone(),
        keyring: keyring.clone(),
        metrics,
        events: events::Events::new(client.clone(), identity()),
        unseal_options: UnsealOptions { accept_v1_data: flags.accept_deprecated_v1_data },
        key_secrets: KeySecrets { namespace: namespace.clone(), legacy_name: flags.key_prefix.clone() },
        seats: seats::Seats::new(unseal::RECONCILE_CONCURRENCY.into()),
        turns: turns::FairTurns::new(decrypt_turns()),
        template_guard: template_guard::TemplateGuard::new(flags.template_backoff),
        update_status: flags.update_status,
        omit_secret_labels: flags.metrics_omit_secret_labels,
        max_retries: flags.max_unseal_retries,
        state: Default::default(),
        fence,
    });
    // The backstop of reconciles deferred to other namespaces' turns (wakes lost).
    tasks.spawn(stop.clone().run_until_cancelled_owned(context.seats.clone().sweep()).map(|_| Ok(())));
    // Asked where the first controller watches: RBAC may allow nothing wider.
    let lists = unseal::lists(&client, unseal::scopes(&flags, &namespace)[0].as_deref()).await;
    for controller in unseal::controllers(&client, &flags, lists, &namespace, &keyring, &context, &stop) {
        tasks.spawn(controller);
    }
    // Every task runs until `stop`; one that ends before is an error of the leader.
    while let Some(done) = tasks.join_next().await {
        match done {
            Ok(Ok(())) if stop.is_cancelled() => {}
            Ok(Ok(())) => return Err(Error::Stopped("a task of the leader")),
            Ok(Err(e)) => return Err(e),
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// How long the leader's work may take to stop (reconciles in flight finishing) before it is
/// aborted: well within the Pod's grace period and the lease duration.
const STOP_LEADING: std::time::Duration = std::time::Duration::from_secs(10);

/// Stop the leader's work: cancel it, let reconciles in flight finish, abort what is left.
async fn stop_leading((stop, mut task): (CancellationToken, tokio::task::JoinHandle<Result<()>>)) {
    stop.cancel();
    if tokio::time::timeout(STOP_LEADING, &mut task).await.is_err() {
        tracing::warn!(after = ?STOP_LEADING, "the leader's work did not stop in time; aborting it");
        task.abort();
    }
}

async fn run_async(flags: Flags) -> Result<()> {
    let flags = Arc::new(flags);
    flags.cutoff().map_err(Error::Flag)?;
    if !flags.backup_age_recipients.is_empty() {
        sealant_core::age_keys::parse_recipients(&flags.backup_age_recipients).map_err(Error::BackupRecipients)?;
    }
    let client = client(&flags).await?;
    let namespace = controller_namespace(&flags);
    let metrics = Arc::new(Metrics::new());
    metrics.renewal_period.set(flags.renew_period().as_secs_f64());
    metrics.backup_recipients.set(i64::try_from(flags.backup_age_recipients.len()).unwrap_or(i64::MAX));
    let (keyring_tx, keyring_rx) = watch::channel(Arc::new(Keyring::default()));
    let (ready_tx, ready_rx) = watch::channel(false);
    let renew_now = Arc::new(Notify::new());
    tracing::info!(namespace = %namespace, version = env!("CARGO_PKG_VERSION"), replica = %identity(), "starting");

    let mut background = JoinSet::new();
    background.spawn(key_watch::watch_keys(
        client.clone(),
        namespace.clone(),
        flags.clone(),
        metrics.clone(),
        keyring_tx,
        ready_tx,
    ));
    let (forbidden_tx, forbidden_rx) = watch::channel(false);
    let trusted_proxies = Arc::new(
        proxies::TrustedProxies::parse(&flags.trusted_proxies)
            .map_err(|e| Error::Flag(format!("invalid --trusted-proxies: {e}")))?,
    );
    background.spawn(trusted_proxies.clone().follow_api_servers(client.clone()));
    let api_state = http::ApiState {
        keyring: keyring_rx.clone(),
        ready: ready_rx.clone(),
        metrics: metrics.clone(),
        limiter: Arc::new(Mutex::new(http::RateLimiter::new(flags.rate_limit, flags.rate_limit_burst))),
        unseal_options: UnsealOptions { accept_v1_data: flags.accept_deprecated_v1_data },
        heavy: Arc::new(tokio::sync::Semaphore::new(http::HEAVY_REQUESTS)),
        uploads: Arc::new(tokio::sync::Semaphore::new(http::UPLOADS)),
        election_forbidden: forbidden_rx.clone(),
        trusted_proxies,
    };
    let timeouts = http::Timeouts { read: flags.read_timeout, write: flags.write_timeout };
    background.spawn(http::serve(flags.listen_addr, http::api_router(api_state), timeouts));
    background.spawn(http::serve(flags.listen_metrics_addr, http::metrics_router(metrics.clone()), timeouts));
    let work = metrics.unseal_requests.clone();
    background.spawn(async move {
        memory::release_when_idle(work).await;
        Ok(())
    });

    let (leading_tx, mut leading_rx) = watch::channel(!flags.leader_elect);
    let elector = flags.leader_elect.then(|| {
        leader::Elector::new(
            client.clone(),
            &namespace,
            &flags.leader_elect_lease_name,
            identity(),
            flags.leader_elect_lease_duration,
            flags.leader_elect_retry_period,
        )
    });
    if let Some(elector) = elector.clone() {
        background.spawn(async move {
            elector.run(leading_tx, forbidden_tx).await;
            Ok(())
        });
        let (metrics, mut forbidden) = (metrics.clone(), forbidden_rx.clone());
        background.spawn(async move {
            while forbidden.changed().await.is_ok() {
                metrics.election_forbidden.set(i64::from(*forbidden.borrow()));
            }
            // The elector is gone: its own task reports that.
            std::future::pending().await
        });
    } else {
        drop(leading_tx);
    }

    let mut terminate = signal(SignalKind::terminate()).map_err(Error::Io)?;
    let mut interrupt = signal(SignalKind::interrupt()).map_err(Error::Io)?;
    let mut usr1 = signal(SignalKind::user_defined1()).map_err(Error::Io)?;
    // While leading: the token that stops the leader's work, and its task.
    let mut leading: Option<(CancellationToken, tokio::task::JoinHandle<Result<()>>)> = None;
    let start_leading = |leading: &mut Option<(CancellationToken, tokio::task::JoinHandle<Result<()>>)>| {
        metrics.is_leader.set(1);
        let stop = CancellationToken::new();
        let leader = Leader {
            client: client.clone(),
            namespace: namespace.clone(),
            flags: flags.clone(),
            metrics: metrics.clone(),
            keyring: keyring_rx.clone(),
            ready: ready_rx.clone(),
            renew_now: renew_now.clone(),
            fence: elector.as_ref().map(|e| e.fence.clone()),
        };
        *leading = Some((stop.clone(), tokio::spawn(lead(leader, stop))));
    };
    if *leading_rx.borrow() {
        start_leading(&mut leading);
    }
    let outcome: Result<()> = loop {
        tokio::select! {
            _ = terminate.recv() => break Ok(()),
            _ = interrupt.recv() => break Ok(()),
            _ = usr1.recv() => {
                if leading.is_some() {
                    renew_now.notify_one();
                } else {
                    tracing::warn!("SIGUSR1 ignored: only the leader renews keys; send it to the leader");
                }
            }
            changed = leading_rx.changed(), if elector.is_some() => {
                if changed.is_err() { break Err(Error::Stopped("the leader elector")); }
                let now_leading = *leading_rx.borrow();
                match (now_leading, leading.take()) {
                    (true, None) => start_leading(&mut leading),
                    (false, Some(work)) => {
                        stop_leading(work).await;
                        metrics.is_leader.set(0);
                    }
                    (_, work) => leading = work,
                }
            }
            done = async { match leading.as_mut() { Some((_, task)) => task.await, None => std::future::pending().await } } => {
                leading = None;
                break match done {
                    Ok(Ok(())) => Err(Error::Stopped("the controller")),
                    Ok(Err(e)) => Err(e),
                    Err(e) => Err(e.into()),
                };
            }
            done = background.join_next() => {
                break match done {
                    Some(Ok(Err(e))) => Err(e),
                    Some(Err(e)) => Err(e.into()),
                    _ => Err(Error::Stopped("a background task")),
                };
            }
        }
    };
    if let Some(work) = leading.take() {
        stop_leading(work).await;
    }
    if let Some(elector) = &elector {
        // Hand the lease over if the API server answers soon; else it expires by itself.
        let release = async {
            elector.release().await;
            Ok::<(), std::convert::Infallible>(())
        };
        if crate::api::bounded(std::time::Duration::from_secs(3), release).await.is_err() {
            tracing::warn!("could not hand the leader lease over in time; it expires by itself");
        }
    }
    tracing::info!("stopped");
    outcome
}
