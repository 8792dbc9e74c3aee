//! Faults of the API server the controller must outlive (issue 14): every SealedSecret ends
//! with its Secret exactly right, without a restart of the controller.

use std::time::Instant;

use sealant_tests::cluster::http;

use super::controller::{controller_with_demo_key, demo_sealed, secret};
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
