//! Migration from upstream's Helm chart: our controller, run with exactly the RBAC that chart
//! creates (tests/fixtures/upstream-chart), unseals, writes status and events, and says once
//! that leader election needs a Lease it may not use. Argo CD's health view of the results.

use k8s_openapi::api::core::v1::Event;
use sealant_tests::cluster::{RunningController, http};

use super::controller::{apply_sealed, demo_sealed, install_keys, synced};
use super::*;

/// Argo CD's health of a SealedSecret, as its built-in check decides it from the status.
fn argo_health(ss: &SealedSecret) -> (&'static str, String) {
    let synced = ss.status.as_ref().and_then(|s| {
        let current = s.observed_generation.is_none() || s.observed_generation == ss.metadata.generation;
        s.conditions.iter().find(|c| c.type_ == "Synced").filter(|_| current)
    });
    match synced {
        Some(c) if c.status == "True" => ("Healthy", c.message.clone().unwrap_or_default()),
        Some(c) if c.status == "False" => ("Degraded", c.message.clone().unwrap_or_default()),
        _ => ("Progressing", "Waiting for Sealed Secret to be decrypted".to_owned()),
    }
}

/// The chart's ServiceAccount and RBAC (tests/fixtures/upstream-chart/rbac.yaml) for `namespace`.
fn apply_chart_rbac(namespace: &str) {
    let rbac = std::fs::read_to_string(repo().join("tests/fixtures/upstream-chart/rbac.yaml")).unwrap();
    let out = kubectl(&["apply", "-f", "-"], Some(&rbac.replace("NAMESPACE", namespace)));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// A kubeconfig with the token of ServiceAccount `name` in `namespace`.
pub(super) async fn service_account_kubeconfig(client: &Client, namespace: &str, name: &str) -> std::path::PathBuf {
    let secrets = Api::<Secret>::namespaced(client.clone(), namespace);
    let token_secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": format!("{name}-token"), "annotations": {"kubernetes.io/service-account.name": name}},
        "type": "kubernetes.io/service-account-token",
    }))
    .unwrap();
    secrets.create(&PostParams::default(), &token_secret).await.unwrap();
    let token = eventually(Duration::from_secs(30), || async {
        let data = secrets.get(&format!("{name}-token")).await.ok()?.data?;
        String::from_utf8(data.get("token")?.0.clone()).ok()
    })
    .await
    .expect("the token controller filled in the ServiceAccount token");
    let admin = std::fs::read_to_string(&control_plane().kubeconfig).unwrap();
    let admin_token = control_plane().env.get("ADMIN_TOKEN").cloned().unwrap();
    let path = control_plane().dir.join(format!("{namespace}-{name}.kubeconfig"));
    std::fs::write(&path, admin.replace(&admin_token, &token)).unwrap();
    path
}

#[tokio::test]
async fn under_the_upstream_charts_rbac_everything_works() {
    let client = admin_client().await;
    install_crd(&client).await;
    let ns = TestNamespace::create(&client, "chart").await;
    let n = ns.name.as_str();
    apply_chart_rbac(n);
    install_keys(&client, n, &std::fs::read_to_string(repo().join("keys-example/demo.secret.yaml")).unwrap()).await;
    let kubeconfig = service_account_kubeconfig(&client, n, "sealed-secrets-controller").await;

    // The chart's Deployment arguments (leader election stays at its default: on).
    let controller =
        RunningController::start_as(&kubeconfig, n, &[], &["--update-status", "--key-prefix=sealed-secrets-key"]);
    controller.ready().await;

    apply_sealed(&client, n, demo_sealed(n, "good", json!({}))).await;
    let mut broken = demo_sealed(n, "broken", json!({}));
    broken["spec"]["encryptedData"]["password"] = json!("AgBrokenData==");
    apply_sealed(&client, n, broken).await;

    let good = synced(&client, n, "good", "True").await;
    assert_eq!(argo_health(&good).0, "Healthy");
    let secret = Api::<Secret>::namespaced(client.clone(), n).get("good").await.unwrap();
    assert_eq!(secret.data.unwrap()["password"].0, b"hunter2");
    let bad = synced(&client, n, "broken", "False").await;
    let (health, message) = argo_health(&bad);
    assert_eq!(health, "Degraded");
    assert!(message.contains("password"), "the message says what failed: {message}");

    // Events through the core API, which is what the chart grants.
    let events = Api::<Event>::namespaced(client.clone(), n);
    let unsealed = eventually(Duration::from_secs(30), || async {
        let list = events.list(&Default::default()).await.ok()?;
        list.items
            .iter()
            .any(|e| e.reason.as_deref() == Some("Unsealed") && e.involved_object.name.as_deref() == Some("good"))
            .then_some(())
    })
    .await;
    assert!(unsealed.is_some(), "no Unsealed event:\n{}", controller.log_text());

    // Leader election: said once, in the metric and in /readyz; the API server's addresses (which
    // the chart does not grant): said once; nothing else was forbidden.
    let log = controller.log_text();
    assert_eq!(log.matches("leader election needs").count(), 1, "{log}");
    assert_eq!(log.matches("cannot read the API server's addresses").count(), 1, "{log}");
    let forbidden: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("forbidden") && !l.contains("leader election needs"))
        .filter(|l| !l.contains("cannot read the API server's addresses"))
        .collect();
    assert!(forbidden.is_empty(), "the controller hit other RBAC limits:\n{}", forbidden.join("\n"));
    assert_eq!(controller.metric("sealant_leader_election_forbidden"), Some(1.0));
    assert_eq!(controller.metric("sealant_leader"), Some(1.0));
    let (code, body) = http(&format!("{}/readyz", controller.url), "GET", b"").unwrap();
    assert_eq!(code, 200);
    assert!(String::from_utf8_lossy(&body).contains("running as the only writer"));

    // A change the controller has not seen yet reads as Progressing, then Healthy again.
    drop(controller);
    let api = Api::<SealedSecret>::namespaced(client.clone(), n);
    let relabel = json!({"metadata": {"labels": {"team": "payments"}}, "spec": {"template": {"metadata": {"labels": {"team": "payments"}}}}});
    let changed = api.patch("good", &PatchParams::default(), &Patch::Merge(&relabel)).await.unwrap();
    assert_eq!(argo_health(&changed).0, "Progressing", "an old observedGeneration");
    let controller = RunningController::start_as(&kubeconfig, n, &[], &["--update-status"]);
    controller.ready().await;
    let good = eventually(Duration::from_secs(60), || async {
        let ss = api.get("good").await.ok()?;
        (argo_health(&ss).0 == "Healthy").then_some(ss)
    })
    .await;
    assert!(good.is_some(), "not Healthy again:\n{}", controller.log_text());

    // Every authenticated user may reach the controller through the Service, as kubeseal does.
    let proxy = |name: &str, verb: &str| json!({"namespace": n, "verb": verb, "resource": "services", "subresource": "proxy", "name": name});
    let user = ["system:authenticated"];
    assert!(allowed(&client, "user", &user, proxy("http:sealed-secrets-controller:", "get")).await);
    assert!(allowed(&client, "user", &user, proxy("http:sealed-secrets-controller:http", "create")).await);
    assert!(!allowed(&client, "user", &user, json!({"namespace": n, "verb": "get", "resource": "secrets"})).await);
}

/// Two replicas under the chart's RBAC (no Lease, so each writes): one first key between them,
/// and no fight over a Secret.
#[tokio::test]
async fn replicas_without_a_lease_make_one_key_and_agree() {
    let client = admin_client().await;
    install_crd(&client).await;
    let ns = TestNamespace::create(&client, "chart-ha").await;
    let n = ns.name.as_str();
    apply_chart_rbac(n);
    let kubeconfig = service_account_kubeconfig(&client, n, "sealed-secrets-controller").await;
    let replicas =
        [RunningController::start_as(&kubeconfig, n, &[], &[]), RunningController::start_as(&kubeconfig, n, &[], &[])];
    for replica in &replicas {
        replica.ready().await;
    }
    let keys = Api::<Secret>::namespaced(client.clone(), n)
        .list(&kube::api::ListParams::default().labels("sealedsecrets.bitnami.com/sealed-secrets-key"))
        .await
        .unwrap();
    assert_eq!(keys.items.len(), 1, "one first key between the replicas");

    let (_, cert) = http(&format!("{}/v1/cert.pem", replicas[0].url), "GET", b"").unwrap();
    let cert = sealant_core::Certificate::from_pem(&String::from_utf8_lossy(&cert)).unwrap();
    let secret: Secret =
        serde_json::from_value(json!({"metadata": {"name": "shared", "namespace": n}, "stringData": {"k": "v"}}))
            .unwrap();
    let sealed = sealant_crds::seal_secret(&mut rand::rng(), &cert, &secret, &Default::default()).unwrap();
    Api::<SealedSecret>::namespaced(client.clone(), n).create(&PostParams::default(), &sealed).await.unwrap();
    synced(&client, n, "shared", "True").await;
    let secrets = Api::<Secret>::namespaced(client.clone(), n);
    let version = |s: Secret| s.metadata.resource_version.unwrap_or_default();
    let first = version(secrets.get("shared").await.unwrap());
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(version(secrets.get("shared").await.unwrap()), first, "the replicas do not rewrite each other's Secret");
}
