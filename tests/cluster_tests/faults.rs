//! Faults of the API server the controller must outlive (issue 14): every SealedSecret ends
//! with its Secret exactly right, without a restart of the controller.

use std::time::Instant;

use sealant_tests::cluster::http;

use super::controller::{apply_sealed, controller_with_demo_key, demo_sealed, secret, synced};
use super::*;

/// Secret writes fail with 500 (a validating webhook that cannot be reached, failurePolicy
/// Fail) while SealedSecrets arrive, for longer than `--max-unseal-retries` would last; once the
/// webhook goes, every Secret appears, with no change to any object and no restart.
#[tokio::test]
async fn secrets_appear_after_writes_failed_for_a_while() {
    let client = admin_client().await;
    let (ns, controller) = controller_with_demo_key(&client, "webhook", &["--max-unseal-retries=2"]).await;
    let n = ns.name.as_str();
    let label = json!({"metadata": {"labels": {"sealant-fault": n}}});
    Api::<k8s_openapi::api::core::v1::Namespace>::all(client.clone())
        .patch(n, &PatchParams::default(), &Patch::Merge(&label))
        .await
        .unwrap();
    let webhook_name = format!("sealant-fault-{n}");
    let webhook = json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": webhook_name},
        "webhooks": [{
            "name": "refuse.sealant.test",
            "clientConfig": {"url": "https://127.0.0.1:1/refuse"},
            "rules": [{"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE", "UPDATE"], "resources": ["secrets"]}],
            "namespaceSelector": {"matchLabels": {"sealant-fault": n}},
            "failurePolicy": "Fail",
            "sideEffects": "None",
            "admissionReviewVersions": ["v1"],
            "timeoutSeconds": 1,
        }],
    });
    let out = kubectl(&["apply", "-f", "-"], Some(&webhook.to_string()));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    let count = 40;
    let api = Api::<SealedSecret>::namespaced(client.clone(), n);
    for i in 0..count {
        let mut doc = demo_sealed(n, &format!("s{i}"), json!({}));
        doc["metadata"]["namespace"] = json!(n);
        api.create(&PostParams::default(), &serde_json::from_value(doc).unwrap()).await.unwrap();
    }
    // Long enough for the old policy to give up on every one of them (2 retries: 1.5 s).
    tokio::time::sleep(Duration::from_secs(20)).await;
    assert!(secret(&client, n, "s0").await.is_none(), "the webhook refused the writes");
    let failed = api.get("s0").await.unwrap().status.unwrap();
    assert_eq!(failed.conditions[0].reason.as_deref(), Some("UpdateFailed"));
    let log = controller.log_text();
    assert!(log.contains(&format!("{n}/s0")) && log.contains("code=500") && log.contains("verb=\"create\""), "{log}");

    let out = kubectl(&["delete", "validatingwebhookconfiguration", &webhook_name], None);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let removed = Instant::now();
    let secrets = Api::<Secret>::namespaced(client.clone(), n);
    let all = eventually(Duration::from_secs(120), || async {
        let list = secrets.list(&Default::default()).await.ok()?;
        let ours = |name: &str| name.strip_prefix('s').is_some_and(|i| i.parse::<usize>().is_ok());
        let made = list.items.iter().filter(|s| s.metadata.name.as_deref().is_some_and(ours)).count();
        (made >= count).then_some(())
    })
    .await;
    assert!(
        all.is_some(),
        "not every Secret appeared within 120 s of the webhook's removal:\n{}",
        controller.log_text()
    );
    println!("every Secret appeared {:.1?} after the webhook was removed", removed.elapsed());
    for i in 0..count {
        let data = secret(&client, n, &format!("s{i}")).await.unwrap().data.unwrap();
        assert_eq!(data["password"].0, b"hunter2");
        assert_eq!(data["user"].0, b"app");
    }
    let (code, _) = http(&format!("{}/healthz", controller.url), "GET", b"").unwrap();
    assert_eq!(code, 200);
}

/// SIGTERM while reconciles (RSA-4096 decryptions) are in flight: the process exits within
/// 10 s, 20 times in a row, and the next start finishes the work.
#[tokio::test]
async fn sigterm_under_load_exits_promptly() {
    let client = admin_client().await;
    let (ns, first) = controller_with_demo_key(&client, "sigterm", &[]).await;
    drop(first);
    let n = ns.name.as_str();
    let api = Api::<SealedSecret>::namespaced(client.clone(), n);
    for i in 0..60 {
        let doc = demo_sealed(n, &format!("load{i}"), json!({}));
        api.create(&PostParams::default(), &serde_json::from_value(doc).unwrap()).await.unwrap();
    }
    let secrets = Api::<Secret>::namespaced(client.clone(), n);
    for round in 0..20 {
        // Take the Secrets away, so that the next controller must decrypt them all again.
        let params = kube::api::ListParams::default().fields("type=Opaque");
        let _ = secrets.delete_collection(&Default::default(), &params).await;
        let mut controller = sealant_tests::cluster::RunningController::start(n, &[], &[]);
        controller.ready().await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let pid = controller.process.child.id().to_string();
        let signalled = Instant::now();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let mut exited = false;
        while signalled.elapsed() < Duration::from_secs(10) {
            if matches!(controller.process.child.try_wait(), Ok(Some(_))) {
                exited = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(exited, "round {round}: still running 10 s after SIGTERM:\n{}", controller.log_text());
    }
    let controller = sealant_tests::cluster::RunningController::start(n, &[], &[]);
    controller.ready().await;
    let all = eventually(Duration::from_secs(120), || async {
        let list = secrets.list(&kube::api::ListParams::default().fields("type=Opaque")).await.ok()?;
        (list.items.len() >= 60).then_some(())
    })
    .await;
    assert!(all.is_some(), "the work was finished after the restarts");
}

/// SealedSecrets `f<from>`... `f<from + count - 1>`, each with its own password; returns how many
/// exist from `f0` on. The API server may be going away: what it refuses is simply not counted.
async fn add(api: &Api<SealedSecret>, n: &str, from: usize, count: usize) -> usize {
    for i in from..from + count {
        let doc = demo_sealed(n, &format!("f{i}"), json!({"stringData": {"password": format!("pw-{i}")}}));
        match api.create(&PostParams::default(), &serde_json::from_value(doc).unwrap()).await {
            // Made before the API server went away, its answer lost.
            Ok(_) | Err(kube::Error::Api(_)) if exists(api, &format!("f{i}")).await => {}
            Ok(_) => {}
            Err(_) => return i,
        }
    }
    from + count
}

async fn exists(api: &Api<SealedSecret>, name: &str) -> bool {
    matches!(api.get_opt(name).await, Ok(Some(_)))
}

/// On a control plane of its own, with SealedSecrets in flight each time: the API server frozen
/// (SIGSTOP) for 45 s, the API server killed and started again after 60 s, etcd restarted, and
/// the controller killed (SIGKILL) and started again. After each, every Secret is exactly
/// right, with no restart of the controller (but the one it was given) and one key only.
#[tokio::test]
async fn converges_after_api_server_etcd_and_controller_faults() {
    use sealant_tests::cluster::{Component, PrivatePlane, RunningController, client_from};
    let plane = PrivatePlane::start("faults");
    let client = client_from(&plane.kubeconfig).await;
    let crd = std::fs::read_to_string(repo().join(sealant_crds::crd::CRD_FILE)).unwrap();
    let mut apply = sealant_tests::cluster::kubectl_command()
        .args(["apply", "--server-side", "-f", "-"])
        .env("KUBECONFIG", &plane.kubeconfig)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut apply.stdin.take().unwrap(), crd.as_bytes()).unwrap();
    assert!(apply.wait().unwrap().success());
    let ns = TestNamespace::create(&client, "faults").await;
    let n = ns.name.clone();
    tokio::time::sleep(Duration::from_secs(2)).await;
    super::controller::install_keys(
        &client,
        &n,
        &std::fs::read_to_string(repo().join("keys-example/demo.secret.yaml")).unwrap(),
    )
    .await;
    let mut controller = RunningController::start_as(&plane.kubeconfig, &n, &[], &["--key-renew-period=0"]);
    controller.ready().await;

    let api = Api::<SealedSecret>::namespaced(client.clone(), &n);
    let secrets = Api::<Secret>::namespaced(client.clone(), &n);
    let mut made = 0usize;
    let all_right = async |made: usize, phase: &str, since: Instant| {
        let done = eventually(Duration::from_secs(240), || async {
            for i in 0..made {
                let s = secrets.get_opt(&format!("f{i}")).await.ok()??;
                if s.data?.get("password")?.0 != format!("pw-{i}").into_bytes() {
                    return None;
                }
            }
            Some(())
        })
        .await;
        assert!(done.is_some(), "{phase}: not every Secret is right");
        println!("{phase}: all {made} Secrets right {:.1?} after the fault ended", since.elapsed());
    };

    made = add(&api, &n, made, 60).await;
    plane.signal(Component::ApiServer, "STOP");
    tokio::time::sleep(Duration::from_secs(45)).await;
    plane.signal(Component::ApiServer, "CONT");
    all_right(made, "API server frozen 45 s", Instant::now()).await;

    made = add(&api, &n, made, 60).await;
    plane.restart(Component::ApiServer, Duration::from_secs(60)).await;
    let back = Instant::now();
    made = add(&api, &n, made, 20).await;
    all_right(made, "API server killed, back after 60 s", back).await;

    made = add(&api, &n, made, 40).await;
    plane.restart(Component::Etcd, Duration::from_secs(5)).await;
    let back = Instant::now();
    all_right(made, "etcd restarted", back).await;

    made = add(&api, &n, made, 60).await;
    controller.process.kill();
    let controller = RunningController::start_as(&plane.kubeconfig, &n, &[], &["--key-renew-period=0"]);
    controller.ready().await;
    all_right(made, "controller killed mid-reconcile", Instant::now()).await;

    let keys = secrets
        .list(&kube::api::ListParams::default().labels("sealedsecrets.bitnami.com/sealed-secrets-key"))
        .await
        .unwrap();
    assert_eq!(keys.items.len(), 1, "no second key was made");
    assert!(made >= 200, "only {made} SealedSecrets were created");
    let (code, _) = http(&format!("{}/healthz", controller.url), "GET", b"").unwrap();
    assert_eq!(code, 200);
}

/// Two replicas; the leader is frozen (SIGSTOP): the other takes over within the lease
/// duration, and the frozen one, once resumed, writes nothing (its lease is stale).
#[tokio::test]
async fn a_frozen_leader_is_replaced_and_writes_nothing_when_it_wakes() {
    use sealant_tests::cluster::RunningController;
    let client = admin_client().await;
    let (ns, leader, follower) = super::controller::two_replicas(&client, "frozen").await;
    let n = ns.name.clone();
    let is_leader = |c: &RunningController| c.metric("sealant_leader") == Some(1.0);
    let pid = leader.process.child.id().to_string();

    let _ = Command::new("kill").args(["-STOP", &pid]).status();
    let frozen = Instant::now();
    let took_over = eventually(Duration::from_secs(30), || async { is_leader(&follower).then_some(()) }).await;
    assert!(took_over.is_some(), "the follower did not take over");
    println!("the follower leads {:.1?} after the leader froze (lease 4 s)", frozen.elapsed());
    apply_sealed(&client, &n, demo_sealed(&n, "during", json!({}))).await;
    synced(&client, &n, "during", "True").await;

    let _ = Command::new("kill").args(["-CONT", &pid]).status();
    for i in 0..5 {
        apply_sealed(&client, &n, demo_sealed(&n, &format!("woken{i}"), json!({}))).await;
    }
    for i in 0..5 {
        synced(&client, &n, &format!("woken{i}"), "True").await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let log = leader.log_text();
    for i in 0..5 {
        let wrote = log.lines().any(|l| l.contains(&format!("{n}/woken{i}")) && l.contains("unsealed"));
        assert!(!wrote, "the resumed leader wrote woken{i}:\n{log}");
    }
    assert!(!is_leader(&leader), "the resumed replica stepped down");
}
