//! Reconcile against a fake API server (tower-test's mock service behind a real kube Client),
//! for the error paths a healthy cluster never shows: 5xx on writes, conflicts on status, RBAC
//! refusals, requests that never answer, and a replica whose lease is stale. The fast tier:
//! no cluster, paused time.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failed step should stop the test loudly

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{Method, Request, Response, StatusCode};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Client;
use kube::client::Body;
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use sealant_controller::flags::KeyOrderPriority;
use sealant_controller::keys::keyring::{KeySecrets, Keyring};
use sealant_controller::run::leader::Fence;
use sealant_controller::serve::metrics::Metrics;
use sealant_controller::unseal::cache::Cached;
use sealant_controller::unseal::events::Events;
use sealant_controller::unseal::reconcile::{Context, ReconcileError, Retry, error_policy, reconcile};
use sealant_controller::unseal::seats::Seats;
use sealant_controller::unseal::turns::FairTurns;
use sealant_controller::unseal::{Lists, lists};
use sealant_core::Certificate;
use sealant_crds::{SealOptions, SealedSecret, UnsealOptions, seal_secret};
use serde_json::{Value, json};

fn repo(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..").join(path)
}

fn keyring() -> Keyring {
    let text = std::fs::read_to_string(repo("keys-example/demo.secret.yaml")).unwrap();
    let doc = sealant_core::yaml::parse_documents(&text).unwrap().remove(0);
    let secret: Secret = serde_json::from_value(doc).unwrap();
    Keyring::from_secrets([&secret], KeyOrderPriority::CertNotBefore, "sealed-secrets-key")
}

/// A SealedSecret `ns/s` sealed to the demo key, as the API server would return it.
fn sealed() -> SealedSecret {
    let cert = Certificate::from_pem(&std::fs::read_to_string(repo("keys-example/demo.tls.crt")).unwrap()).unwrap();
    let secret = Secret {
        metadata: ObjectMeta { name: Some("s".into()), namespace: Some("ns".into()), ..Default::default() },
        string_data: Some(BTreeMap::from([("password".into(), "hunter2".into())])),
        ..Default::default()
    };
    let mut ss = seal_secret(&mut rand::rng(), &cert, &secret, &SealOptions::default()).unwrap();
    ss.metadata.uid = Some("uid-1".into());
    ss.metadata.resource_version = Some("10".into());
    ss.metadata.generation = Some(1);
    ss
}

fn status(code: u16, reason: &str, message: &str) -> (u16, Value) {
    (
        code,
        json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": code, "reason": reason, "message": message}),
    )
}

/// What the fake API server saw: method and path of each request, with the body of writes.
#[derive(Clone, Default)]
struct Seen(Arc<Mutex<Vec<(Method, String, Value)>>>);

impl Seen {
    fn calls(&self) -> Vec<String> {
        self.0.lock().unwrap().iter().map(|(m, p, _)| format!("{m} {p}")).collect()
    }

    fn writes(&self) -> Vec<String> {
        self.calls().into_iter().filter(|c| !c.starts_with("GET")).collect()
    }

    fn bodies(&self, prefix: &str) -> Vec<Value> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter(|(m, p, _)| format!("{m} {p}").starts_with(prefix))
            .map(|(_, _, b)| b.clone())
            .collect()
    }
}

/// A client whose every request `answer` decides: Some((status, body)), or None to never answer.
fn fake_api(answer: impl Fn(&Method, &str, &Value) -> Option<(u16, Value)> + Send + 'static) -> (Client, Seen) {
    let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let seen = Seen::default();
    let record = seen.clone();
    tokio::spawn(async move {
        while let Some((request, send)) = handle.next_request().await {
            let (parts, body) = request.into_parts();
            let bytes = body.collect_bytes().await.unwrap_or_default();
            let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            let path = parts.uri.path().to_owned();
            record.0.lock().unwrap().push((parts.method.clone(), path.clone(), body.clone()));
            match answer(&parts.method, &path, &body) {
                Some((code, value)) => send.send_response(
                    Response::builder()
                        .status(StatusCode::from_u16(code).unwrap())
                        .body(Body::from(serde_json::to_vec(&value).unwrap()))
                        .unwrap(),
                ),
                // Keep the responder alive without answering: the request hangs.
                None => std::mem::forget(send),
            }
        }
    });
    (Client::new(service, "default"), seen)
}

/// The same context (its guard, seats and state) against another fake API server.
fn against(ctx: Arc<Context>, client: Client) -> Arc<Context> {
    Arc::new(Context {
        client: client.clone(),
        events: Events::new(client, "test".into()),
        ..Arc::into_inner(ctx).unwrap()
    })
}

fn context(client: Client, fence: Option<Fence>) -> Arc<Context> {
    let (_tx, keyring) = tokio::sync::watch::channel(Arc::new(keyring()));
    Arc::new(Context {
        client: client.clone(),
        keyring,
        metrics: Arc::new(Metrics::new()),
        events: Events::new(client, "test".into()),
        unseal_options: UnsealOptions::default(),
        key_secrets: KeySecrets { namespace: "kube-system".into(), legacy_name: "sealed-secrets-key".into() },
        seats: Seats::new(32),
        turns: FairTurns::new(2),
        template_guard: Default::default(),
        update_status: true,
        omit_secret_labels: false,
        max_retries: 5,
        state: Default::default(),
        fence,
    })
}

/// The SealedSecret as the controller's cache holds it.
fn cache(ss: &SealedSecret) -> Arc<Cached> {
    Arc::new(Cached::from(ss.clone()))
}

/// The API server's answers for a healthy cluster where `ns/s` has no Secret yet; `secret_write`
/// overrides the answer to creating the Secret.
fn healthy(
    ss: &SealedSecret,
    secret_write: Option<(u16, Value)>,
) -> impl Fn(&Method, &str, &Value) -> Option<(u16, Value)> + Send + use<> {
    let whole = serde_json::to_value(ss).unwrap();
    move |method, path, body| match (method.as_str(), path) {
        ("GET", "/api/v1/namespaces/ns/secrets/s") => Some(status(404, "NotFound", "secrets \"s\" not found")),
        ("GET", "/apis/bitnami.com/v1alpha1/namespaces/ns/sealedsecrets/s") => Some((200, whole.clone())),
        ("POST", "/api/v1/namespaces/ns/secrets") => Some(secret_write.clone().unwrap_or((201, body.clone()))),
        ("POST", "/api/v1/namespaces/ns/events") => Some((201, body.clone())),
        ("PUT", "/apis/bitnami.com/v1alpha1/namespaces/ns/sealedsecrets/s/status") => Some((200, body.clone())),
        _ => Some(status(404, "NotFound", "not in the fake")),
    }
}

fn synced(seen: &Seen) -> Vec<(String, String)> {
    seen.bodies("PUT /apis/bitnami.com/v1alpha1/namespaces/ns/sealedsecrets/s/status")
        .iter()
        .filter_map(|b| {
            let c = b["status"]["conditions"].as_array()?.iter().find(|c| c["type"] == "Synced")?.clone();
            Some((c["status"].as_str()?.to_owned(), c["reason"].as_str().unwrap_or_default().to_owned()))
        })
        .collect()
}

#[tokio::test]
async fn a_healthy_api_gets_the_secret_an_event_and_a_synced_status() {
    let ss = sealed();
    let (client, seen) = fake_api(healthy(&ss, None));
    let ctx = context(client, None);
    let action = reconcile(cache(&ss), ctx).await.unwrap();
    assert_eq!(action, Action::await_change());
    let created = seen.bodies("POST /api/v1/namespaces/ns/secrets");
    assert_eq!(created.len(), 1);
    assert_eq!(created[0]["data"]["password"], "aHVudGVyMg==", "the Secret holds the plaintext");
    assert_eq!(created[0]["metadata"]["ownerReferences"][0]["uid"], "uid-1");
    let statuses = synced(&seen);
    assert_eq!(statuses.len(), 1);
    assert_eq!(statuses[0].0, "True");
    assert!(seen.writes().iter().any(|w| w == "POST /api/v1/namespaces/ns/events"), "an Unsealed event");
}

#[tokio::test]
async fn metrics_omit_secret_labels_exports_no_series_that_names_a_sealed_secret() {
    let ss = sealed();
    for omit in [false, true] {
        let (client, _seen) = fake_api(healthy(&ss, None));
        let mut ctx = Arc::into_inner(context(client, None)).unwrap();
        ctx.omit_secret_labels = omit;
        let ctx = Arc::new(ctx);
        reconcile(cache(&ss), ctx.clone()).await.unwrap();
        let named = ctx.metrics.encode().lines().any(|l| !l.starts_with('#') && l.contains("name=\"s\""));
        assert_eq!(named, !omit, "--metrics-omit-secret-labels={omit}");
    }
}

#[tokio::test]
async fn a_5xx_on_the_secret_write_is_retried_without_limit_and_named_in_the_status() {
    let ss = sealed();
    let webhook = status(500, "InternalError", "Internal error occurred: failed calling webhook \"deny.example\"");
    let (client, seen) = fake_api(healthy(&ss, Some(webhook)));
    let ctx = context(client, None);
    let ss = Arc::new(ss);
    for attempt in 0..20 {
        let error = reconcile(cache(&ss), ctx.clone()).await.unwrap_err();
        assert!(matches!(error, ReconcileError::Write { verb: "create", .. }), "attempt {attempt}: {error}");
        assert_eq!(error.retry(), Retry::Transient);
        let action = error_policy(cache(&ss), &error, ctx.clone());
        assert_ne!(action, Action::await_change(), "attempt {attempt}: a transient failure is never given up");
    }
    let statuses = synced(&seen);
    assert_eq!(statuses.len(), 20);
    assert!(statuses.iter().all(|(s, _)| s == "False"), "{statuses:?}");
    assert!(!format!("{statuses:?}").contains("hunter2"));
}

/// Finding 7 of issue 26: after a template fails in a namespace, a changed template is not
/// evaluated at once (a probe that would render is held back as well), and the status says why
/// without depending on the plaintext.
#[tokio::test]
async fn after_a_template_failure_changed_templates_wait() {
    let mut failing = sealed();
    failing.spec.template.data = Some(BTreeMap::from([("x".into(), Some("{{ nosuchfunction }}".into()))]));
    let (client, seen) = fake_api(healthy(&failing, None));
    let ctx = context(client, None);
    let error = reconcile(cache(&failing), ctx.clone()).await.unwrap_err();
    assert!(error.to_string().contains("template"), "{error}");
    assert!(seen.bodies("POST /api/v1/namespaces/ns/secrets").is_empty());

    let mut probe = sealed();
    probe.spec.template.data = Some(BTreeMap::from([("x".into(), Some("{{ index . \"password\" }}".into()))]));
    probe.metadata.generation = Some(2);
    let (client, seen) = fake_api(healthy(&probe, None));
    let ctx = against(ctx, client);
    let error = reconcile(cache(&probe), ctx.clone()).await.unwrap_err();
    assert!(matches!(error, ReconcileError::TemplateWait(_)), "{error}");
    assert!(matches!(error.retry(), Retry::After(wait) if wait <= Duration::from_secs(60)));
    assert!(seen.bodies("POST /api/v1/namespaces/ns/secrets").is_empty(), "not evaluated, not written");
    let statuses = synced(&seen);
    assert_eq!(statuses, [("False".to_owned(), "TemplateBackoff".to_owned())]);

    // Plain SealedSecrets of the namespace are not held back.
    let plain = sealed();
    let (client, seen) = fake_api(healthy(&plain, None));
    let ctx = against(ctx, client);
    reconcile(cache(&plain), ctx).await.unwrap();
    assert_eq!(seen.bodies("POST /api/v1/namespaces/ns/secrets").len(), 1);
}

/// Finding 1 of issue 34: a rendered template whose write the API server refuses (a Secret over
/// 1 MiB, say, which a template can make depend on the plaintext) is a failure for the guard
/// too: the next changed template in the namespace waits.
#[tokio::test]
async fn a_write_refused_after_a_render_holds_the_namespace_back_like_a_template_failure() {
    let mut big = sealed();
    big.spec.template.data = Some(BTreeMap::from([(
        "x".into(),
        Some("{{ if eq .password \"guess\" }}{{ repeat 1048576 \"x\" }}{{ end }}".into()),
    )]));
    let too_large = status(422, "Invalid", "Secret \"s\" is invalid: data: Too long: must have at most 1048576 bytes");
    let (client, _seen) = fake_api(healthy(&big, Some(too_large)));
    let ctx = context(client, None);
    let error = reconcile(cache(&big), ctx.clone()).await.unwrap_err();
    assert!(matches!(error, ReconcileError::Write { .. }), "{error}");

    let mut probe = sealed();
    probe.spec.template.data = Some(BTreeMap::from([("x".into(), Some("{{ .password }}".into()))]));
    probe.metadata.generation = Some(2);
    let (client, seen) = fake_api(healthy(&probe, None));
    let ctx = against(ctx, client);
    let error = reconcile(cache(&probe), ctx).await.unwrap_err();
    assert!(matches!(error, ReconcileError::TemplateWait(_)), "{error}");
    assert!(seen.bodies("POST /api/v1/namespaces/ns/secrets").is_empty(), "not evaluated, not written");
}

#[tokio::test]
async fn a_refused_write_counts_toward_max_unseal_retries_and_success_resets_the_count() {
    let ss = Arc::new(sealed());
    let forbidden = status(403, "Forbidden", "secrets is forbidden: User cannot create resource");
    let (client, _seen) = fake_api(healthy(&ss, Some(forbidden)));
    let ctx = context(client, None);
    let mut actions = Vec::new();
    for _ in 0..6 {
        let error = reconcile(cache(&ss), ctx.clone()).await.unwrap_err();
        assert_eq!(error.retry(), Retry::Counted, "{error}");
        actions.push(error_policy(cache(&ss), &error, ctx.clone()));
    }
    assert!(actions[..5].iter().all(|a| *a != Action::await_change()), "retried up to --max-unseal-retries");
    assert_eq!(actions[5], Action::await_change(), "then it waits for a change (or the resync)");

    // The same object against a healthy API: unsealed, and the count starts again.
    let (client, _seen) = fake_api(healthy(&ss, None));
    let healthy_ctx = context(client, None);
    healthy_ctx.state.adopt(&ctx.state);
    let object = ObjectRef::from_obj(&*cache(&ss));
    assert!(healthy_ctx.state.has_failures(&object));
    reconcile(cache(&ss), healthy_ctx.clone()).await.unwrap();
    assert!(!healthy_ctx.state.has_failures(&object), "success resets the count");
}

#[tokio::test]
async fn a_conflict_on_the_status_is_written_once_more_on_the_fresh_object() {
    let ss = sealed();
    let whole = serde_json::to_value(&ss).unwrap();
    let puts = Arc::new(Mutex::new(0));
    let counter = puts.clone();
    let base = healthy(&ss, None);
    let (client, seen) = fake_api(move |method, path, body| {
        if method == Method::PUT && path.ends_with("/status") {
            let mut n = counter.lock().unwrap();
            *n += 1;
            if *n == 1 {
                return Some(status(409, "Conflict", "the object has been modified"));
            }
        }
        if method == Method::GET && path.ends_with("/sealedsecrets/s") {
            let mut fresh = whole.clone();
            fresh["metadata"]["resourceVersion"] = json!("11");
            return Some((200, fresh));
        }
        base(method, path, body)
    });
    reconcile(cache(&ss), context(client, None)).await.unwrap();
    let bodies = seen.bodies("PUT /apis/bitnami.com/v1alpha1/namespaces/ns/sealedsecrets/s/status");
    assert_eq!(bodies.len(), 2, "{:?}", seen.calls());
    assert_eq!(bodies[1]["metadata"]["resourceVersion"], "11", "the second write is on the object as it is now");
}

#[tokio::test(start_paused = true)]
async fn a_request_that_never_answers_times_out_and_is_transient() {
    let ss = Arc::new(sealed());
    let (client, seen) = fake_api(|method, path, body| {
        if method == Method::GET && path == "/api/v1/namespaces/ns/secrets/s" {
            return None;
        }
        Some((200, body.clone()))
    });
    let ctx = context(client, None);
    let started = tokio::time::Instant::now();
    let error = reconcile(cache(&ss), ctx.clone()).await.unwrap_err();
    assert!(matches!(error, ReconcileError::Timeout { verb: "get", .. }), "{error}");
    assert_eq!(error.retry(), Retry::Transient);
    assert!(started.elapsed() <= Duration::from_secs(61), "bounded: {:?}", started.elapsed());
    assert!(seen.writes().iter().all(|w| !w.contains("/secrets")), "no write after a failed read");
}

#[tokio::test]
async fn a_replica_whose_lease_is_not_fresh_writes_nothing() {
    let ss = Arc::new(sealed());
    let (client, seen) = fake_api(healthy(&ss, None));
    let ctx = context(client, Some(Fence::new(Duration::from_secs(15))));
    let result = reconcile(cache(&ss), ctx).await;
    assert!(matches!(result, Err(ReconcileError::NotLeading)), "{result:?}");
    assert_eq!(seen.writes(), Vec::<String>::new(), "no Secret, event or status: {:?}", seen.calls());
}

/// A SealedSecret of the cache, named `namespace/name` (its items are not read here).
fn cached_as(namespace: &str, name: &str) -> Arc<Cached> {
    let mut ss = sealed();
    ss.metadata.namespace = Some(namespace.into());
    ss.metadata.name = Some(name.into());
    cache(&ss)
}

#[tokio::test]
async fn a_namespace_beyond_its_share_of_reconcile_slots_gives_the_slot_back_before_any_call() {
    // Every request of namespace `busy` hangs: its reconciles hold their slots.
    let (client, seen) = fake_api(|_, path, body| {
        if path.contains("/namespaces/busy/") {
            return None;
        }
        Some(if path.ends_with("/secrets/s") { status(404, "NotFound", "no Secret") } else { (200, body.clone()) })
    });
    let mut ctx = Arc::into_inner(context(client, None)).unwrap();
    // Four slots: one namespace alone may hold two.
    ctx.seats = Seats::new(4);
    let ctx = Arc::new(ctx);
    let held = ["a", "b"].map(|name| tokio::spawn(reconcile(cached_as("busy", name), ctx.clone())));
    while seen.calls().len() < 2 {
        tokio::task::yield_now().await;
    }
    let deferred = reconcile(cached_as("busy", "c"), ctx.clone()).await.unwrap();
    assert_eq!(deferred, Action::await_change(), "woken by its namespace, not queued again in kube-runtime");
    assert!(!seen.calls().iter().any(|c| c.contains("/busy/secrets/c")), "no call for a deferred reconcile");
    assert!(ctx.metrics.encode().contains("sealant_deferred_reconciles_total 1"));
    // Another namespace still reconciles.
    let _ = reconcile(cached_as("other", "s"), ctx.clone()).await;
    assert!(seen.calls().iter().any(|c| c == "GET /api/v1/namespaces/other/secrets/s"), "{:?}", seen.calls());
    for task in held {
        task.abort();
    }
}

#[tokio::test]
async fn lists_are_streamed_where_the_api_server_sends_the_initial_events_bookmark() {
    let bookmark = json!({"type": "BOOKMARK", "object": {"apiVersion": "bitnami.com/v1alpha1", "kind": "SealedSecret",
        "metadata": {"resourceVersion": "218", "annotations": {"k8s.io/initial-events-end": "true"}}}});
    let (client, seen) = fake_api(move |_, _, _| Some((200, bookmark.clone())));
    assert_eq!(lists(&client, None).await, Lists::Streamed);
    assert_eq!(seen.calls(), ["GET /apis/bitnami.com/v1alpha1/sealedsecrets"]);
    // The WatchList feature gate off: the parameters are refused, and pages are read.
    let (client, _) = fake_api(|_, _, _| {
        Some(status(
            422,
            "Invalid",
            "sendInitialEvents is forbidden for watch unless the WatchList feature gate is enabled",
        ))
    });
    assert_eq!(lists(&client, Some("ns")).await, Lists::Paged);
    // An older server that ignores the parameters and just watches: no bookmark, pages.
    let (client, _) =
        fake_api(|_, _, _| Some((200, json!({"type": "ADDED", "object": serde_json::to_value(sealed()).unwrap()}))));
    assert_eq!(lists(&client, None).await, Lists::Paged);
}
