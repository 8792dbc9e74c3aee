//! Key renewal across the two controllers on one cluster's keys (issue 20). Upstream's
//! controller v0.40.0 runs as its chart installs it; ours runs beside it as a process with the
//! same key namespace (it reconciles only kube-system, which holds no SealedSecrets, so the two
//! never write the same object). Upstream renews its key (SIGUSR1, its manual renewal): ours
//! loads the new key at once, serves its certificate and opens what is sealed to it. Ours
//! renews (SIGUSR1 too): upstream reads keys only when it starts, so after its Pod restarts it
//! serves our new certificate and unseals what is sealed to it (README, "where we differ").

use sealant_tests::cluster::{RunningController, http};

use super::*;

fn served(controller: &RunningController) -> Option<String> {
    let (code, body) = http(&format!("{}/v1/cert.pem", controller.url), "GET", b"").ok()?;
    (code == 200).then(|| String::from_utf8(body).unwrap())
}

fn signal(pid: u32, what: &str) {
    let out = Command::new("kill").args(["-USR1", &pid.to_string()]).output().unwrap();
    assert!(out.status.success(), "SIGUSR1 to {what}: {}", String::from_utf8_lossy(&out.stderr));
}

/// The host pid of upstream's running controller.
fn upstream_pid(node: &Node) -> u32 {
    let pods = node.get_json(&["pods", "-n", NS, "-l", "app.kubernetes.io/name=sealed-secrets"]);
    let running = pods["items"].as_array().unwrap().iter().find(|p| p["status"]["phase"] == "Running").unwrap();
    node.container_pid(running["status"]["containerStatuses"][0]["containerID"].as_str().unwrap())
}

/// `sealed` (JSON) posted to `/v1/verify` of our controller: whether one of its keys opens it.
fn ours_opens(controller: &RunningController, sealed: &str) -> bool {
    matches!(http(&format!("{}/v1/verify", controller.url), "POST", sealed.as_bytes()), Ok((200, _)))
}

#[test]
fn a_key_either_controller_renews_is_used_by_the_other() {
    let node = node();
    let upstream = upstream_image(node);
    uninstall(node);
    let _cleanup = Uninstall(node);
    let (rbac, controller) = install_upstream_chart(node, Some(&upstream));
    wait_rolled_out(node, 1, Duration::from_secs(180), "upstream's controller", || fetch_cert(node).is_ok());
    let first = fetch_cert(node).unwrap();

    let ours = RunningController::start_as(&node.kubeconfig, NS, &[], &["--key-renew-period=0"]);
    tokio::runtime::Runtime::new().unwrap().block_on(ours.ready());
    assert_eq!(served(&ours).as_deref(), Some(first.as_str()), "ours serves upstream's key");

    // Upstream renews: ours has the new key at once, without a restart.
    signal(upstream_pid(node), "upstream's controller");
    let renewed =
        wait_for(Duration::from_secs(60), "upstream's new key", || fetch_cert(node).ok().filter(|c| *c != first));
    wait_for(Duration::from_secs(30), "ours to serve upstream's new key", || served(&ours).filter(|c| *c == renewed));
    let dir = tempfile::tempdir().unwrap();
    let cert = dir.path().join("renewed.pem");
    std::fs::write(&cert, &renewed).unwrap();
    let secret = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "renewed", "namespace": "apps"},
        "stringData": {"password": "sealed-to-upstreams-new-key"}});
    let sealed = sealant_as_user(
        node,
        &built_binary("sealant"),
        &["seal", "-o", "json", "--cert", cert.to_str().unwrap()],
        &secret.to_string(),
    );
    assert!(ours_opens(&ours, &sealed), "ours opens what is sealed to upstream's new key");

    // Ours renews: upstream takes keys only when it starts.
    signal(ours.process.child.id(), "our controller");
    let ours_new =
        wait_for(Duration::from_secs(60), "our new key", || served(&ours).filter(|c| *c != renewed && *c != first));
    assert_eq!(fetch_cert(node).unwrap(), renewed, "upstream serves its own key until it restarts");
    node.kubectl_ok(&["rollout", "restart", "-n", NS, &format!("deployment/{DEPLOYMENT}")], None);
    wait_rolled_out(node, 1, Duration::from_secs(180), "upstream's controller restarted", || {
        fetch_cert(node).is_ok_and(|c| c == ours_new)
    });
    node.kubectl_ok(&["create", "namespace", "apps"], None);
    let value = seal_and_apply(node, "apps", "to-our-key");
    assert_eq!(unsealed_password(node, "apps", "to-our-key", Duration::from_secs(60)), value);
    // And the keys ours and upstream made before still open what was sealed to them.
    node.kubectl_ok(&["apply", "-f", "-"], Some(&sealed));
    assert_eq!(unsealed_password(node, "apps", "renewed", Duration::from_secs(60)), "sealed-to-upstreams-new-key");
    let logs = node.kubectl_ok(&["logs", "-n", NS, &format!("deployment/{DEPLOYMENT}")], None);
    assert!(!logs.contains("panic"), "upstream with our key:\n{logs}");

    drop(ours);
    node.kubectl_ok(&["delete", "namespace", "apps", "--wait=false"], None);
    node.kubectl_ok(&["delete", "-f", "-", "--ignore-not-found"], Some(&controller));
    node.kubectl_ok(&["delete", "-f", "-", "--ignore-not-found"], Some(&rbac));
}
