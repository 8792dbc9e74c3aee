//! The only module that writes unsealed Secrets and status: runs `plan` against the API server.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::PostParams;
use kube::runtime::controller::Action;
use kube::{Api, Client, ResourceExt};
use sealant_crds::{SealedSecret, UnsealOptions};
use tokio::sync::watch;

use crate::events::{EventType, Events};
use crate::keyring::Keyring;
use crate::metrics::{ConditionLabels, ErrorLabels, Metrics};
use crate::plan::{Plan, PlanError, WriteBudget, plan};
use crate::status::{Outcome, SYNCED, next_status};

#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error("cannot read the Secret")]
    Fetch(#[source] kube::Error),
    #[error("cannot write the Secret: {0}")]
    Write(#[source] kube::Error),
}

impl ReconcileError {
    fn category(&self) -> &'static str {
        match self {
            ReconcileError::Plan(e) => e.category(),
            ReconcileError::Fetch(_) => "FetchFailed",
            ReconcileError::Write(e) if is_immutable(e) => "SecretImmutable",
            ReconcileError::Write(_) => "UpdateFailed",
        }
    }

    fn event_reason(&self) -> &'static str {
        match self {
            ReconcileError::Plan(e) => e.event_reason(),
            ReconcileError::Fetch(_) | ReconcileError::Write(_) => "ErrUpdateFailed",
        }
    }

    fn metric_reason(&self) -> &'static str {
        match self {
            ReconcileError::Plan(e) => e.metric_reason(),
            ReconcileError::Fetch(_) => "fetch",
            ReconcileError::Write(_) => "update",
        }
    }

    /// Errors that retrying cannot fix until the object changes.
    fn is_permanent(&self) -> bool {
        match self {
            ReconcileError::Plan(PlanError::Immutable | PlanError::ForeignType(_) | PlanError::Contested) => true,
            ReconcileError::Write(e) => is_immutable(e),
            _ => false,
        }
    }
}

/// The error and its causes on one line, each cause once.
fn describe(e: &(dyn std::error::Error + 'static)) -> String {
    sealant_core::error::one_line(e.to_string(), e.source())
}

fn is_immutable(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 422 && s.message.contains("immutable"))
}

/// What every reconcile shares.
pub struct Context {
    pub client: Client,
    pub keyring: watch::Receiver<Arc<Keyring>>,
    pub metrics: Arc<Metrics>,
    pub events: Events,
    pub unseal_options: UnsealOptions,
    pub update_status: bool,
    pub max_retries: u32,
    pub retries: Mutex<HashMap<String, u32>>,
    /// Bounds the writes of a Secret that something else keeps changing.
    pub writes: Mutex<WriteBudget>,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context").field("max_retries", &self.max_retries).finish_non_exhaustive()
    }
}

fn key(ss: &SealedSecret) -> String {
    format!("{}/{}", ss.namespace().unwrap_or_default(), ss.name_any())
}

async fn publish(ctx: &Context, ss: &SealedSecret, type_: EventType, reason: &str, note: String) {
    if let Err(e) = ctx.events.publish(ss, type_, reason, note).await {
        tracing::warn!(error = %e, sealedsecret = %key(ss), "cannot publish an event");
    }
}

async fn apply(ss: &SealedSecret, ctx: &Context) -> Result<bool, ReconcileError> {
    let namespace = ss.namespace().unwrap_or_default();
    let name = ss.name_any();
    let secrets = Api::<Secret>::namespaced(ctx.client.clone(), &namespace);
    let existing = secrets.get_opt(&name).await.map_err(ReconcileError::Fetch)?;
    let keyring = ctx.keyring.borrow().clone();
    let options = ctx.unseal_options;
    let ss_owned = ss.clone();
    // RSA decryption is CPU work: keep it off the async workers.
    let decided = tokio::task::spawn_blocking(move || plan(&ss_owned, existing.as_ref(), &keyring, options))
        .await
        .map_err(|_| PlanError::NoKeys)?;
    match decided? {
        Plan::UpToDate => Ok(false),
        Plan::Write { secret, create, decrypted } => {
            ctx.metrics.decryptions.inc_by(decrypted as u64);
            let allowed = ctx
                .writes
                .lock()
                .map(|mut w| w.allow(&key(ss), ss.metadata.generation, Instant::now()))
                .unwrap_or(true);
            if !allowed {
                return Err(PlanError::Contested.into());
            }
            let result = if create {
                secrets.create(&PostParams::default(), &secret).await
            } else {
                secrets.replace(&name, &PostParams::default(), &secret).await
            };
            result.map(|_| true).map_err(ReconcileError::Write)
        }
    }
}

/// Reconcile one SealedSecret.
pub async fn reconcile(ss: Arc<SealedSecret>, ctx: Arc<Context>) -> Result<Action, ReconcileError> {
    let start = Instant::now();
    ctx.metrics.unseal_requests.inc();
    if ss.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let result = apply(&ss, &ctx).await;
    let outcome = match &result {
        Ok(wrote) => {
            if *wrote {
                tracing::info!(sealedsecret = %key(&ss), "unsealed");
                publish(&ctx, &ss, EventType::Normal, "Unsealed", "SealedSecret unsealed successfully".into()).await;
            }
            Outcome::unsealed()
        }
        Err(e) => {
            let message = describe(e);
            tracing::warn!(sealedsecret = %key(&ss), reason = e.category(), error = %message, "cannot unseal");
            ctx.metrics
                .unseal_errors
                .get_or_create(&ErrorLabels {
                    reason: e.metric_reason().into(),
                    namespace: ss.namespace().unwrap_or_default(),
                })
                .inc();
            let note = match e {
                ReconcileError::Plan(PlanError::Unseal(_) | PlanError::NoKeys) => {
                    format!("Failed to unseal: {message}")
                }
                _ => message.clone(),
            };
            publish(&ctx, &ss, EventType::Warning, e.event_reason(), note).await;
            Outcome::failed(e.category(), message)
        }
    };
    if ctx.update_status {
        update_status(&ss, &outcome, &ctx).await;
    }
    ctx.metrics.condition_info.get_or_create(&condition_labels(&ss)).set(if outcome.ok { 1 } else { -1 });
    ctx.metrics.reconcile_duration.observe(start.elapsed().as_secs_f64());
    match result {
        Ok(_) => {
            if let Ok(mut retries) = ctx.retries.lock() {
                retries.remove(&key(&ss));
            }
            Ok(Action::await_change())
        }
        Err(e) => Err(e),
    }
}

/// The labels of a SealedSecret's condition metric.
fn condition_labels(ss: &SealedSecret) -> ConditionLabels {
    ConditionLabels {
        namespace: ss.namespace().unwrap_or_default(),
        name: ss.name_any(),
        condition: SYNCED.into(),
        ss_app_kubernetes_io_instance: ss.labels().get("app.kubernetes.io/instance").cloned().unwrap_or_default(),
    }
}

/// A SealedSecret was deleted: drop its condition metric (an alert on it would otherwise fire
/// forever) and its retry count.
pub fn forget(ctx: &Context, ss: &SealedSecret) {
    ctx.metrics.condition_info.remove(&condition_labels(ss));
    if let Ok(mut retries) = ctx.retries.lock() {
        retries.remove(&key(ss));
    }
    if let Ok(mut writes) = ctx.writes.lock() {
        writes.forget(&key(ss));
    }
}

/// Write the status with an update of the status subresource, as upstream does (its Helm chart
/// grants `update` on `sealedsecrets/status`, not `patch`); on a conflict, once more on the
/// object as it is now.
async fn update_status(ss: &SealedSecret, outcome: &Outcome, ctx: &Context) {
    let Some(status) = next_status(ss, outcome, Time(k8s_openapi::jiff::Timestamp::now())) else {
        return;
    };
    let api = Api::<SealedSecret>::namespaced(ctx.client.clone(), &ss.namespace().unwrap_or_default());
    let name = ss.name_any();
    let put = |mut object: SealedSecret| {
        object.status = Some(status.clone());
        object.metadata.managed_fields = None;
        let api = api.clone();
        let name = name.clone();
        async move { api.replace_status(&name, &PostParams::default(), &object).await.map(|_| ()) }
    };
    let mut result = put(ss.clone()).await;
    if let Err(kube::Error::Api(s)) = &result
        && s.code == 409
    {
        result = match api.get(&name).await {
            Ok(fresh) if fresh.metadata.generation == ss.metadata.generation => put(fresh).await,
            // The object changed: its own reconcile writes the status that fits it.
            Ok(_) => Ok(()),
            Err(e) => Err(e),
        };
    }
    if let Err(e) = result {
        tracing::warn!(sealedsecret = %key(ss), error = %e, "cannot update status");
        ctx.metrics
            .unseal_errors
            .get_or_create(&ErrorLabels { reason: "status".into(), namespace: ss.namespace().unwrap_or_default() })
            .inc();
    }
}

/// Retry with exponential backoff, up to `--max-unseal-retries`; then wait for a change (or
/// for new keys, which trigger every SealedSecret again).
pub fn error_policy(ss: Arc<SealedSecret>, error: &ReconcileError, ctx: Arc<Context>) -> Action {
    if error.is_permanent() {
        return Action::await_change();
    }
    let attempts = match ctx.retries.lock() {
        Ok(mut retries) => {
            let n = retries.entry(key(&ss)).or_insert(0);
            *n += 1;
            *n
        }
        Err(_) => 1,
    };
    if attempts > ctx.max_retries {
        return Action::await_change();
    }
    Action::requeue(Duration::from_millis(500u64 << attempts.min(10)).min(Duration::from_secs(300)))
}
