//! `sealant status` against a fake API server (tower-test behind a real kube Client), golden:
//! a healthy cluster; one with a failing SealedSecret, a stale backup, an expired Lease, an
//! overdue renewal and a certificate no longer held; and one without the controller. The text
//! and JSON outputs are in tests/status/; `BLESS=1 cargo test -p sealant --test status` rewrites
//! them after a deliberate change (then read the diff).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failed step should stop the test loudly

use std::path::PathBuf;

use http::{Request, Response, StatusCode};
use kube::Client;
use kube::client::Body;
use sealant::cluster::ClusterArgs;
use sealant::commands::status::collect;
use sealant_core::Certificate;
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::macros::datetime;

fn repo(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..").join(path)
}

/// The demo key Secret (keys-example), as the API server lists it.
fn demo_key() -> Value {
    let text = std::fs::read_to_string(repo("keys-example/demo.secret.yaml")).unwrap();
    sealant_core::yaml::parse_documents(&text).unwrap().remove(0)
}

fn list(kind: &str, items: Vec<Value>) -> Value {
    json!({"apiVersion": "v1", "kind": format!("{kind}List"), "metadata": {"resourceVersion": "1"}, "items": items})
}

fn not_found() -> (u16, Value) {
    (404, json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404}))
}

fn sealed_secret(namespace: &str, name: &str, condition: Option<(&str, &str, &str)>) -> Value {
    let mut ss = json!({
        "apiVersion": "bitnami.com/v1alpha1", "kind": "SealedSecret",
        "metadata": {"name": name, "namespace": namespace, "generation": 1},
        "spec": {"encryptedData": {"password": "AgA="}},
    });
    if let Some((status, reason, message)) = condition {
        ss["status"] = json!({"observedGeneration": 1, "conditions": [{
            "type": "Synced", "status": status, "reason": reason, "message": message,
            "lastTransitionTime": "2026-12-05T11:30:00Z",
        }]});
    }
    ss
}

/// The cluster the fake API server shows.
struct Cluster {
    deployment: Option<Value>,
    lease_renewed: &'static str,
    backup_keys: &'static str,
    /// The backup Secret's ownerReferences (a SealedSecret's, when one squats its name).
    backup_owners: Value,
    sealed_secrets: Vec<Value>,
}

impl Cluster {
    fn healthy() -> Cluster {
        Cluster {
            deployment: Some(json!({
                "apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": "sealed-secrets-controller", "namespace": "kube-system"},
                "spec": {
                    "replicas": 2,
                    "selector": {"matchLabels": {"name": "sealed-secrets-controller"}},
                    "template": {"spec": {"containers": [{
                        "name": "sealed-secrets-controller",
                        "image": "ghcr.io/sealant-dev/sealant-controller:0.1.0",
                        "args": ["--backup-age-recipients=age1qyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqs3290gq"],
                    }]}},
                },
                "status": {"replicas": 2, "readyReplicas": 2},
            })),
            lease_renewed: "2026-12-05T11:59:58.000000Z",
            backup_keys: "sealed-secrets-keydemo1",
            backup_owners: json!([]),
            sealed_secrets: vec![
                sealed_secret("apps", "db", Some(("True", "", ""))),
                sealed_secret("apps", "web", Some(("True", "", ""))),
                sealed_secret("web", "tls", Some(("True", "", ""))),
            ],
        }
    }

    /// The API server's answer to a GET of `path` (query ignored).
    fn answer(&self, path: &str) -> (u16, Value) {
        let pod = |n: &str| {
            json!({"metadata": {"name": format!("sealed-secrets-controller-5d9f-{n}"), "namespace": "kube-system"},
                   "spec": {"containers": [{"name": "c", "image": "ghcr.io/sealant-dev/sealant-controller:0.1.0"}]}})
        };
        match path {
            "/apis/apps/v1/namespaces/kube-system/deployments/sealed-secrets-controller" => {
                self.deployment.clone().map_or_else(not_found, |d| (200, d))
            }
            "/api/v1/namespaces/kube-system/pods" => {
                (200, list("Pod", if self.deployment.is_some() { vec![pod("a"), pod("b")] } else { vec![] }))
            }
            "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/sealed-secrets-controller" => (
                200,
                json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                       "metadata": {"name": "sealed-secrets-controller", "namespace": "kube-system"},
                       "spec": {"holderIdentity": "sealed-secrets-controller-5d9f-a_4f2a9c", "leaseDurationSeconds": 15,
                                "renewTime": self.lease_renewed}}),
            ),
            "/api/v1/namespaces/kube-system/secrets" => (200, list("Secret", vec![demo_key()])),
            "/api/v1/namespaces/kube-system/secrets/sealed-secrets-key-backup" => (
                200,
                json!({"apiVersion": "v1", "kind": "Secret",
                       "metadata": {"name": "sealed-secrets-key-backup", "namespace": "kube-system",
                           "ownerReferences": self.backup_owners, "annotations": {
                           "sealant.dev/backup-keys": self.backup_keys,
                           "sealant.dev/backup-written-at": "2026-12-05T10:00:00Z"}}}),
            ),
            "/apis/bitnami.com/v1alpha1/sealedsecrets" => (200, list("SealedSecret", self.sealed_secrets.clone())),
            _ => not_found(),
        }
    }
}

fn fake_api(cluster: Cluster) -> Client {
    let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    tokio::spawn(async move {
        while let Some((request, send)) = handle.next_request().await {
            assert_eq!(request.method(), http::Method::GET, "status only reads: {}", request.uri());
            let (code, body) = cluster.answer(request.uri().path());
            send.send_response(
                Response::builder()
                    .status(StatusCode::from_u16(code).unwrap())
                    .body(Body::from(serde_json::to_vec(&body).unwrap()))
                    .unwrap(),
            );
        }
    });
    Client::new(service, "default")
}

fn cluster_args() -> ClusterArgs {
    ClusterArgs {
        controller_name: "sealed-secrets-controller".into(),
        controller_namespace: "kube-system".into(),
        ..Default::default()
    }
}

/// Compare with tests/status/NAME, or rewrite it under BLESS=1.
fn golden(name: &str, actual: &str) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/status").join(name);
    if std::env::var_os("BLESS").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, actual).unwrap();
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        expected == actual,
        "{name} differs (BLESS=1 rewrites it):\n--- expected\n{expected}\n--- actual\n{actual}"
    );
}

fn certificate(path: &str) -> (String, String) {
    let cert = Certificate::from_pem(&std::fs::read_to_string(repo(path)).unwrap()).unwrap();
    (path.to_owned(), cert.public_key().fingerprint())
}

async fn status(cluster: Cluster, cert: Option<&str>, now: OffsetDateTime) -> sealant::commands::status::Status {
    collect(&fake_api(cluster), &cluster_args(), None, cert.map(certificate), now).await.unwrap()
}

#[tokio::test]
async fn a_healthy_cluster() {
    let now = datetime!(2026-12-05 12:00:00 UTC);
    let status = status(Cluster::healthy(), Some("keys-example/demo.tls.crt"), now).await;
    assert!(status.problems.is_empty(), "{:?}", status.problems);
    golden("healthy.txt", &status.text(now));
}

#[tokio::test]
async fn failing_secrets_a_stale_backup_no_leader_an_overdue_key_and_a_foreign_certificate() {
    let mut cluster = Cluster::healthy();
    cluster.lease_renewed = "2026-12-05T09:00:00.000000Z";
    cluster.backup_keys = "sealed-secrets-key-older";
    cluster.sealed_secrets.push(sealed_secret(
        "apps",
        "payments",
        Some(("False", "ErrUnsealFailed", "no key could decrypt the secret (sealed for another cluster?)")),
    ));
    cluster.sealed_secrets.push(sealed_secret("new", "pending", None));
    // A month and a half after the demo key was made: its renewal (30 days) is overdue.
    let now = datetime!(2027-01-10 12:00:00 UTC);
    let status = status(cluster, Some("tests/fixtures/sealed-secrets/python-generated/keys/key-a.tls.crt"), now).await;
    assert_eq!(status.problems.len(), 5, "{:#?}", status.problems);
    golden("unhealthy.txt", &status.text(now));
    golden("unhealthy.json", &(serde_json::to_string_pretty(&status).unwrap() + "\n"));
}

#[tokio::test]
async fn a_backup_made_by_a_sealed_secret_and_control_characters_are_not_believed() {
    let mut cluster = Cluster::healthy();
    cluster.backup_owners = json!([{"apiVersion": "bitnami.com/v1alpha1", "kind": "SealedSecret",
        "name": "sealed-secrets-key-backup", "uid": "u", "controller": true}]);
    cluster.sealed_secrets.push(sealed_secret(
        "tenant",
        "forged",
        Some(("False", "DecryptFailed", "no key could decrypt secret (a\u{1b}]52;c;aGk=\u{7}\u{1b}[2K)")),
    ));
    let now = datetime!(2026-12-05 12:00:00 UTC);
    let status = status(cluster, None, now).await;
    assert!(!status.backup.found && status.backup.made_by_sealed_secret, "{:?}", status.backup);
    assert!(status.problems.iter().any(|p| p.contains("was made by a SealedSecret")), "{:#?}", status.problems);
    let text = status.text(now);
    assert!(!text.chars().any(|c| c.is_control() && c != '\n'), "{text:?}");
    assert!(text.contains(r"(a\u{1b}]52;c;aGk=\u{7}\u{1b}[2K)"), "{text}");
}

#[tokio::test]
async fn no_controller_installed() {
    let cluster = Cluster { deployment: None, ..Cluster::healthy() };
    let now = datetime!(2026-12-05 12:00:00 UTC);
    let status = status(cluster, None, now).await;
    golden("not-installed.txt", &status.text(now));
}
