//! The only module that writes unsealed Secrets and status: runs `plan` against the API server.

use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::PostParams;
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use kube::{Api, Client, Resource, ResourceExt};
use sealant_crds::{SealedSecret, UnsealOptions};
use tokio::sync::watch;

use crate::api::{self, API_TIMEOUT, answered};
use crate::keys::keyring::{KeySecrets, Keyring};
use crate::serve::metrics::{ConditionLabels, ErrorLabels, Metrics};
use crate::unseal::cache::{Cached, INSTANCE_LABEL};
use crate::unseal::events::{EventType, Events};
use crate::unseal::plan::{Plan, PlanError, Reasons, UPDATE_FAILED, plan, up_to_date};
use crate::unseal::seats::Seats;
use crate::unseal::state::ObjectStates;
use crate::unseal::status::{Outcome, SYNCED, next_status};
use crate::unseal::template_guard::TemplateGuard;
use crate::unseal::turns::FairTurns;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReconcileError {
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error("cannot read the Secret")]
    Fetch(#[source] kube::Error),
    #[error("cannot read the SealedSecret")]
    FetchSealed(#[source] kube::Error),
    #[error("cannot {verb} the Secret")]
    Write {
        verb: &'static str,
        #[source]
        source: kube::Error,
    },
    /// Any API call of a reconcile (reading the SealedSecret, the Secret, writing either) that
    /// got no answer within [`API_TIMEOUT`].
    #[error("the API server did not answer the {verb} of the {resource} within {}s", API_TIMEOUT.as_secs())]
    Timeout { verb: &'static str, resource: &'static str },
    #[error("the unsealing task stopped unexpectedly")]
    Internal,
    #[error("this replica has not renewed its leader lease in time, so it does not write")]
    NotLeading,
    #[error(
        "a template failed in this namespace: templates here are evaluated again in {} s (after a \
         failure, template evaluations wait, doubling up to a day, so that templates cannot test a \
         secret quickly)",
        .0.as_secs().max(1)
    )]
    TemplateWait(Duration),
}

/// What a failure means for retrying it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Retry {
    /// Time can fix it (the API server was down, slow, overloaded or raced us): retry without
    /// limit, with capped backoff, and never count it.
    Transient,
    /// Only a change can fix it (a key, a template, the spec): counts toward
    /// `--max-unseal-retries`.
    Counted,
    /// Nothing but a change of the SealedSecret can fix it: wait for one.
    AwaitChange,
    /// Try again after this long, and not before.
    After(Duration),
}

/// Whether an API error is one that time fixes: connection trouble, timeouts, 429, 5xx and
/// conflicts (someone else wrote first).
pub fn is_transient(e: &kube::Error) -> bool {
    match e {
        kube::Error::Api(s) => s.code == 409 || s.code == 429 || s.code >= 500,
        kube::Error::HyperError(_) | kube::Error::Service(_) | kube::Error::ReadEvents(_) => true,
        _ => false,
    }
}

impl ReconcileError {
    /// How it is reported (see [`Reasons`]): a failure of the API calls around the plan is an
    /// update failure to upstream's Events and metric.
    fn reasons(&self) -> Reasons {
        match self {
            ReconcileError::Plan(e) => e.reasons(),
            ReconcileError::Fetch(_) | ReconcileError::FetchSealed(_) => {
                Reasons::new("FetchFailed", UPDATE_FAILED, "fetch")
            }
            ReconcileError::Write { source, .. } if is_immutable(source) => {
                Reasons::new("SecretImmutable", UPDATE_FAILED, "update")
            }
            ReconcileError::Write { .. } | ReconcileError::Timeout { .. } => {
                Reasons::new("UpdateFailed", UPDATE_FAILED, "update")
            }
            ReconcileError::Internal => Reasons::new("InternalError", UPDATE_FAILED, "update"),
            ReconcileError::NotLeading => Reasons::new("NotLeading", UPDATE_FAILED, "update"),
            ReconcileError::TemplateWait(_) => Reasons::new("TemplateBackoff", UPDATE_FAILED, "template_backoff"),
        }
    }

    fn category(&self) -> &'static str {
        self.reasons().category
    }

    /// The verb, resource and status code of a failed API call, for the log line.
    fn api_call(&self) -> Option<(&'static str, &'static str, u16)> {
        let code = |e: &kube::Error| if let kube::Error::Api(s) = e { s.code } else { 0 };
        match self {
            ReconcileError::Fetch(e) => Some(("get", "secrets", code(e))),
            ReconcileError::FetchSealed(e) => Some(("get", "sealedsecrets", code(e))),
            ReconcileError::Write { verb, source } => Some((verb, "secrets", code(source))),
            ReconcileError::Timeout { verb, resource: "SealedSecret" } => Some((verb, "sealedsecrets", 0)),
            ReconcileError::Timeout { verb, .. } => Some((verb, "secrets", 0)),
            _ => None,
        }
    }

    pub fn retry(&self) -> Retry {
        match self {
            ReconcileError::Plan(
                PlanError::Immutable | PlanError::ForeignType(_) | PlanError::KeySecret | PlanError::Contested,
            ) => Retry::AwaitChange,
            // Keys arriving reconcile everything again; until then, keep asking.
            ReconcileError::Plan(PlanError::NoKeys) => Retry::Transient,
            ReconcileError::Plan(_) | ReconcileError::Internal => Retry::Counted,
            ReconcileError::Write { source, .. } if is_immutable(source) => Retry::AwaitChange,
            ReconcileError::Fetch(e) | ReconcileError::FetchSealed(e) | ReconcileError::Write { source: e, .. }
                if is_transient(e) =>
            {
                Retry::Transient
            }
            ReconcileError::Fetch(_) | ReconcileError::FetchSealed(_) | ReconcileError::Write { .. } => Retry::Counted,
            ReconcileError::Timeout { .. } | ReconcileError::NotLeading => Retry::Transient,
            ReconcileError::TemplateWait(wait) => Retry::After(*wait),
        }
    }
}

/// An API call bounded by [`API_TIMEOUT`].
async fn bounded<T>(
    verb: &'static str,
    resource: &'static str,
    call: impl std::future::Future<Output = Result<T, kube::Error>>,
) -> Result<Result<T, kube::Error>, ReconcileError> {
    api::bounded(API_TIMEOUT, call).await.map_err(|_| ReconcileError::Timeout { verb, resource })
}

/// Failures of one SealedSecret so far, for the version of it (and of the keys) they were for.
#[derive(Debug, Default)]
pub struct RetryState {
    version: String,
    counted: u32,
    transient: u32,
}

/// The backoff before attempt `n` (1-based): 0.5 s doubling, at most 5 minutes, with ±20% jitter
/// (`jitter` in 0..1) so that a fault does not bring every object back at the same instant.
/// A pure function of the attempt rather than a backoff object (kube-runtime's, `backon`):
/// the count lives in the per-object state, so one is needed per object, and this one is
/// tested as it is.
pub fn backoff(n: u32, jitter: f64) -> Duration {
    let base = Duration::from_millis(500u64 << n.saturating_sub(1).min(10)).min(Duration::from_secs(300));
    base.mul_f64(0.8 + 0.4 * jitter.clamp(0.0, 1.0))
}

/// What to do after a failure, given the failures before it: the upstream work queue's rules,
/// except that what time can fix is retried for ever, and counts start again whenever the
/// object or the keys change (`version`) and after giving up.
pub fn next_action(
    state: &mut RetryState,
    version: &str,
    retry: Retry,
    max_retries: u32,
    jitter: f64,
) -> Option<Duration> {
    if state.version != version {
        *state = RetryState { version: version.to_owned(), ..Default::default() };
    }
    match retry {
        Retry::AwaitChange => None,
        Retry::After(wait) => Some(wait),
        Retry::Transient => {
            state.transient = state.transient.saturating_add(1);
            Some(backoff(state.transient, jitter))
        }
        Retry::Counted => {
            state.counted += 1;
            if state.counted > max_retries {
                *state = RetryState { version: version.to_owned(), ..Default::default() };
                return None;
            }
            Some(backoff(state.counted, jitter))
        }
    }
}

/// Longest error text a log line, an Event or a status condition carries.
const MAX_MESSAGE: usize = 1024;

/// The error and its causes on one line, each cause once, at most [`MAX_MESSAGE`] bytes.
fn describe(e: &(dyn std::error::Error + 'static)) -> String {
    sealant_core::error::bounded(sealant_core::error::one_line(e.to_string(), e.source()), MAX_MESSAGE)
}

/// A write refused because the Secret is immutable: the API server says 422 Invalid with a
/// `FieldValueForbidden` cause on `data`, `stringData` or `immutable` (checked on 1.37).
fn is_immutable(e: &kube::Error) -> bool {
    let kube::Error::Api(status) = e else { return false };
    status.code == 422
        && status.details.as_ref().is_some_and(|details| {
            details.causes.iter().any(|cause| {
                cause.reason == "FieldValueForbidden"
                    && matches!(cause.field.as_str(), "data" | "stringData" | "immutable")
            })
        })
}

/// What every reconcile shares.
pub struct Context {
    pub client: Client,
    pub keyring: watch::Receiver<Arc<Keyring>>,
    pub metrics: Arc<Metrics>,
    pub events: Events,
    pub unseal_options: UnsealOptions,
    /// The Secrets read as keys, which no SealedSecret may produce.
    pub key_secrets: KeySecrets,
    /// Reconcile slots, shared between namespaces.
    pub seats: Arc<Seats>,
    /// Turns at decrypting, shared fairly between namespaces.
    pub turns: Arc<FairTurns>,
    /// Template evaluations held back after failures, per namespace.
    pub template_guard: TemplateGuard,
    pub update_status: bool,
    /// `--metrics-omit-secret-labels`: no per-SealedSecret condition series.
    pub omit_secret_labels: bool,
    pub max_retries: u32,
    /// Failures, writes and verified Secrets, per SealedSecret. A Secret that another writer
    /// (upstream's controller) made and that was found, by decrypting, to hold what its
    /// SealedSecret says is left unchanged and not decrypted again until either changes; a
    /// restart checks it once more.
    pub state: ObjectStates,
    /// With leader election: whether this replica's lease is fresh enough to write.
    pub fence: Option<crate::run::leader::Fence>,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context").field("max_retries", &self.max_retries).finish_non_exhaustive()
    }
}

pub(crate) fn key(ss: &impl Resource) -> String {
    format!("{}/{}", ss.namespace().unwrap_or_default(), ss.name_any())
}

async fn publish(ctx: &Context, ss: &Cached, type_: EventType, reason: &str, note: String) {
    if let Err(e) = answered(ctx.events.publish(&ss.metadata, type_, reason, note)).await {
        tracing::warn!(error = %e, sealedsecret = %key(ss), "cannot publish an event");
    }
}

async fn apply(ss: &Cached, ctx: &Context) -> Result<bool, ReconcileError> {
    let namespace = ss.namespace().unwrap_or_default();
    let name = ss.name_any();
    let object = ObjectRef::from_obj(ss);
    let secrets = Api::<Secret>::namespaced(ctx.client.clone(), &namespace);
    let existing = bounded("get", "Secret", secrets.get_opt(&name)).await?.map_err(ReconcileError::Fetch)?;
    let keyring = ctx.keyring.borrow().clone();
    let options = ctx.unseal_options;
    // The cache holds SealedSecrets without their items, with their digest: an unchanged one
    // is settled here; only one to decrypt is read whole.
    if up_to_date(&ss.metadata, ss.shape(), &ss.digest, existing.as_ref(), &keyring, &ctx.key_secrets)? {
        return Ok(false);
    }
    let version = existing.as_ref().and_then(|e| e.metadata.resource_version.clone());
    if let Some(version) = &version
        && ctx.state.is_verified(&object, &ss.digest, version)
    {
        return Ok(false);
    }
    // A turn at the RSA work, fairly among namespaces, before the whole object is read: one
    // waiting holds no items in memory.
    let _turn = ctx.turns.take(&namespace).await;
    let sealed = Api::<SealedSecret>::namespaced(ctx.client.clone(), &namespace);
    let Some(whole) =
        bounded("get", "SealedSecret", sealed.get_opt(&name)).await?.map_err(ReconcileError::FetchSealed)?
    else {
        // Deleted meanwhile: nothing to do.
        return Ok(false);
    };
    let templated = whole.spec.template.data.as_ref().is_some_and(|d| !d.is_empty());
    if templated && let Some(wait) = ctx.template_guard.wait(&namespace, Instant::now()) {
        return Err(ReconcileError::TemplateWait(wait));
    }
    // RSA decryption is CPU work: keep it off the async workers.
    let keys = ctx.key_secrets.clone();
    let decided = tokio::task::spawn_blocking(move || plan(&whole, existing.as_ref(), &keyring, options, &keys))
        .await
        .map_err(|_| ReconcileError::Internal)?;
    // A template was rendered (or failed to): count it for the namespace's guard. Every outcome
    // decided after a render can depend on the rendered content, so every failure after one is
    // a failure for the guard, not only the template's own: an immutable Secret refusing other
    // data, a write the API server refuses (too large, not JSON, an admission webhook).
    let rendered = match &decided {
        Ok(Plan::Matches { .. } | Plan::UpToDate) => Some(false),
        // Counted once the API server has answered the write.
        Ok(Plan::Write { .. }) => None,
        Err(PlanError::Unseal(sealant_crds::unseal::UnsealError::Template(_)))
        | Err(PlanError::Immutable | PlanError::Contested) => Some(true),
        _ => None,
    };
    let guarded = |failed: bool| {
        if templated {
            ctx.template_guard.evaluated(&namespace, failed, Instant::now());
        }
    };
    if let Some(failed) = rendered {
        guarded(failed);
    }
    match decided? {
        Plan::UpToDate => Ok(false),
        Plan::Matches { decrypted, digest } => {
            ctx.metrics.decryptions.inc_by(decrypted as u64);
            if let Some(version) = version {
                ctx.state.verified(object, digest, version);
            }
            Ok(false)
        }
        Plan::Write { secret, create, decrypted } => {
            ctx.metrics.decryptions.inc_by(decrypted as u64);
            if !ctx.state.may_write(&object, ss.metadata.generation, Instant::now()) {
                return Err(PlanError::Contested.into());
            }
            if ctx.fence.as_ref().is_some_and(|f| !f.may_write()) {
                return Err(ReconcileError::NotLeading);
            }
            let (verb, result) = if create {
                ("create", bounded("create", "Secret", secrets.create(&PostParams::default(), &secret)).await?)
            } else {
                ("update", bounded("update", "Secret", secrets.replace(&name, &PostParams::default(), &secret)).await?)
            };
            if result.is_ok() {
                ctx.state.wrote(&object, ss.metadata.generation, Instant::now());
            }
            // A refusal may depend on the content (too large, not JSON, an admission webhook's
            // word); no answer, a conflict, throttling or a server error does not.
            guarded(
                matches!(&result, Err(kube::Error::Api(s)) if (400..500).contains(&s.code) && ![408, 409, 429].contains(&s.code)),
            );
            result.map(|_| true).map_err(|source| ReconcileError::Write { verb, source })
        }
    }
}

/// Reconcile one SealedSecret.
pub async fn reconcile(ss: Arc<Cached>, ctx: Arc<Context>) -> Result<Action, ReconcileError> {
    let start = Instant::now();
    let id = key(&*ss);
    if ss.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    // Its namespace holds its share of the reconcile slots: this one's goes to another
    // namespace, and the SealedSecret waits in `seats`, out of kube-runtime's queue, until one
    // of its namespace's reconciles ends and wakes it.
    let Some(_seat) = ctx.seats.take(&ss.namespace().unwrap_or_default(), &ss.name_any()) else {
        tracing::debug!(sealedsecret = %id, "deferred: its namespace holds its share of reconciles");
        ctx.metrics.deferred_reconciles.inc();
        return Ok(Action::await_change());
    };
    ctx.metrics.unseal_requests.inc();
    let result = apply(&ss, &ctx).await;
    if let Err(ReconcileError::NotLeading) = &result {
        // Not ours to report either: events and status are writes too.
        tracing::debug!(sealedsecret = %id, "not writing: the leader lease is not fresh");
        return result.map(|_| Action::await_change());
    }
    if let Err(ReconcileError::TemplateWait(_)) = &result
        && template_failed_at_this_generation(&ss)
    {
        // A retry of the same template that already failed: its status says so; keep it.
        tracing::debug!(sealedsecret = %id, "template evaluations wait in this namespace");
        return result.map(|_| Action::await_change());
    }
    let outcome = match &result {
        Ok(wrote) => {
            if *wrote {
                tracing::info!(sealedsecret = %id, "unsealed");
                publish(&ctx, &ss, EventType::Normal, "Unsealed", "SealedSecret unsealed successfully".into()).await;
            }
            Outcome::unsealed()
        }
        Err(e) => {
            let message = describe(e);
            match e.api_call() {
                Some((verb, resource, code)) => tracing::warn!(
                    sealedsecret = %id, reason = e.category(), verb, resource, code,
                    error = %message, "cannot unseal"
                ),
                None => {
                    tracing::warn!(sealedsecret = %id, reason = e.category(), error = %message, "cannot unseal")
                }
            }
            ctx.metrics
                .unseal_errors
                .get_or_create(&ErrorLabels {
                    reason: e.reasons().metric.into(),
                    namespace: ss.namespace().unwrap_or_default(),
                })
                .inc();
            let note = match e {
                ReconcileError::Plan(PlanError::Unseal(_) | PlanError::NoKeys) => {
                    format!("Failed to unseal: {message}")
                }
                _ => message.clone(),
            };
            publish(&ctx, &ss, EventType::Warning, e.reasons().event, note).await;
            Outcome::failed(e.category(), message)
        }
    };
    if ctx.update_status {
        update_status(&ss, &outcome, &ctx).await;
    }
    if !ctx.omit_secret_labels {
        ctx.metrics.condition_info.get_or_create(&condition_labels(&ss)).set(if outcome.ok { 1 } else { -1 });
    }
    ctx.metrics.reconcile_duration.observe(start.elapsed().as_secs_f64());
    match result {
        Ok(_) => {
            ctx.state.settled(&ObjectRef::from_obj(&*ss));
            Ok(Action::await_change())
        }
        Err(e) => Err(e),
    }
}

/// Whether the status already reports a template failure of this very generation.
fn template_failed_at_this_generation(ss: &Cached) -> bool {
    ss.status.as_ref().is_some_and(|status| {
        status.observed_generation == ss.metadata.generation
            && status.conditions.iter().any(|c| c.type_ == SYNCED && c.reason.as_deref() == Some("TemplateError"))
    })
}

/// The labels of a SealedSecret's condition metric.
fn condition_labels(ss: &Cached) -> ConditionLabels {
    ConditionLabels {
        namespace: ss.namespace().unwrap_or_default(),
        name: ss.name_any(),
        condition: SYNCED.into(),
        ss_app_kubernetes_io_instance: ss.labels().get(INSTANCE_LABEL).cloned().unwrap_or_default(),
    }
}

/// A SealedSecret was deleted: drop its condition metric (an alert on it would otherwise fire
/// forever) and its retry count.
pub fn forget(ctx: &Context, ss: &Cached) {
    ctx.metrics.condition_info.remove(&condition_labels(ss));
    ctx.state.forget(&ObjectRef::from_obj(ss));
    ctx.seats.forget(&ss.namespace().unwrap_or_default(), &ss.name_any());
}

/// Write the status with an update of the status subresource, as upstream does (its Helm chart
/// grants `update` on `sealedsecrets/status`, not `patch`); on a conflict, once more on the
/// object as it is now.
async fn update_status(ss: &Cached, outcome: &Outcome, ctx: &Context) {
    let Some(status) = next_status(&ss.for_status(), outcome, Time(k8s_openapi::jiff::Timestamp::now())) else {
        return;
    };
    if ctx.fence.as_ref().is_some_and(|f| !f.may_write()) {
        return;
    }
    let api = Api::<SealedSecret>::namespaced(ctx.client.clone(), &ss.namespace().unwrap_or_default());
    let name = ss.name_any();
    let put = |mut object: SealedSecret| {
        object.status = Some(status.clone());
        object.metadata.managed_fields = None;
        let api = api.clone();
        let name = name.clone();
        async move { answered(api.replace_status(&name, &PostParams::default(), &object)).await.map(|_| ()) }
    };
    let mut result = put(ss.for_status()).await;
    if let Err(kube::Error::Api(s)) = &result
        && s.code == 409
    {
        result = match answered(api.get(&name)).await {
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

/// Retry as [`next_action`] decides: transient failures without limit, the others up to
/// `--max-unseal-retries`, then wait for a change of the object or the keys (or the resync).
pub fn error_policy(ss: Arc<Cached>, error: &ReconcileError, ctx: Arc<Context>) -> Action {
    let keys: Vec<String> = ctx.keyring.borrow().entries().iter().map(|e| e.fingerprint.clone()).collect();
    let version = format!("{} {}", ss.digest, keys.join(","));
    let next = ctx.state.next_action(
        ObjectRef::from_obj(&*ss),
        &version,
        error.retry(),
        ctx.max_retries,
        rand::random::<f64>(),
    );
    match next {
        Some(delay) => Action::requeue(delay),
        None => Action::await_change(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(code: u16) -> kube::Error {
        kube::Error::Api(Box::new(kube::core::Status { code, ..Default::default() }))
    }

    /// The answer of a 1.37 API server to a change of an immutable Secret's data, and a 422 of
    /// another kind.
    #[test]
    fn an_immutable_secret_is_told_by_the_status_cause_not_its_text() {
        let answer = r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"Secret \"imm\" is invalid: data: Forbidden: field is immutable when `immutable` is set","reason":"Invalid","details":{"name":"imm","kind":"Secret","causes":[{"reason":"FieldValueForbidden","message":"Forbidden: field is immutable when `immutable` is set","field":"data"}]},"code":422}"#;
        let status: kube::core::Status = serde_json::from_str(answer).unwrap();
        let immutable = ReconcileError::Write { verb: "update", source: kube::Error::Api(Box::new(status)) };
        assert_eq!((immutable.category(), immutable.retry()), ("SecretImmutable", Retry::AwaitChange));
        let other =
            kube::core::Status { code: 422, message: "immutable in the text only".into(), ..Default::default() };
        let other = ReconcileError::Write { verb: "update", source: kube::Error::Api(Box::new(other)) };
        assert_eq!(other.category(), "UpdateFailed");
    }

    #[test]
    fn api_trouble_is_retried_without_limit_and_never_counted() {
        for code in [409, 429, 500, 503, 504] {
            assert_eq!(ReconcileError::Write { verb: "update", source: api(code) }.retry(), Retry::Transient);
        }
        assert_eq!(ReconcileError::Timeout { verb: "get", resource: "Secret" }.retry(), Retry::Transient);
        assert_eq!(ReconcileError::Fetch(api(403)).retry(), Retry::Counted);
        assert_eq!(ReconcileError::Plan(PlanError::Contested).retry(), Retry::AwaitChange);

        let mut state = RetryState::default();
        for _ in 0..1000 {
            assert!(next_action(&mut state, "v1", Retry::Transient, 5, 0.5).is_some());
        }
        assert_eq!(state.counted, 0, "transient failures do not count");
        assert!(next_action(&mut state, "v1", Retry::Transient, 5, 0.5).unwrap() <= Duration::from_secs(360));
    }

    #[test]
    fn counted_failures_give_up_then_start_again() {
        let mut state = RetryState::default();
        let delays: Vec<_> = (0..6).map(|_| next_action(&mut state, "v1", Retry::Counted, 5, 0.5)).collect();
        assert!(delays[..5].iter().all(Option::is_some) && delays[5].is_none(), "{delays:?}");
        assert_eq!(state.counted, 0, "reset after giving up");
        assert!(
            next_action(&mut state, "v1", Retry::Counted, 5, 0.5).is_some(),
            "the resync or a change can try again"
        );
        for _ in 0..3 {
            next_action(&mut state, "v1", Retry::Counted, 5, 0.5);
        }
        next_action(&mut state, "v2", Retry::Counted, 5, 0.5);
        assert_eq!(state.counted, 1, "a change of the object or the keys starts the count again");
    }

    #[test]
    fn backoff_is_capped_and_jittered() {
        assert_eq!(backoff(1, 0.5), Duration::from_millis(500));
        assert_eq!(backoff(30, 0.5), Duration::from_secs(300));
        assert!(backoff(3, 0.0) < backoff(3, 1.0));
    }
}
