//! Upgrade and rollback with the real upstream (issue 20): upstream's controller v0.40.0, in an
//! image made the way ours is, runs under its chart's objects and makes its own key; it unseals
//! one SealedSecret and fails another. The Deployment's image is switched to ours, then back to
//! upstream's, as a user who rolls back would: at each step the Secrets keep their data (and,
//! but for one rewrite of ours by upstream, their resourceVersion), the failing one fails the
//! same way, and new SealedSecrets unseal. Our CLI works against upstream's controller too.

use super::*;

fn version_and_data(node: &Node, namespace: &str, name: &str) -> (String, Value) {
    let secret = node.get_json(&["secret", "-n", namespace, name]);
    (secret["metadata"]["resourceVersion"].as_str().unwrap().to_owned(), secret["data"].clone())
}

/// The Synced condition's status and reason.
fn synced(node: &Node, namespace: &str, name: &str) -> Option<(String, String)> {
    let ss = node.get_json(&["sealedsecret", "-n", namespace, name]);
    let condition = ss["status"]["conditions"].as_array()?.iter().find(|c| c["type"] == "Synced")?.clone();
    Some((condition["status"].as_str()?.to_owned(), condition["reason"].as_str().unwrap_or_default().to_owned()))
}

fn switch_to(node: &Node, image: &str, what: &str) {
    node.kubectl_ok(
        &["set", "image", "-n", NS, &format!("deployment/{DEPLOYMENT}"), &format!("controller={image}")],
        None,
    );
    wait_rolled_out(node, 1, Duration::from_secs(180), what, || true);
}

/// `sealant` against upstream's controller, through the Service as an ordinary user: `validate
/// --online` (its /v1/verify), `--re-encrypt` (its /v1/rotate), and `unseal` with its key Secrets.
fn our_cli_against_upstream(node: &Node) {
    let sealant = built_binary("sealant");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("cli.yaml");
    let secret = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "cli", "namespace": "apps"},
        "stringData": {"password": "checked-by-upstream"}});
    std::fs::write(&file, sealant_as_user(node, &sealant, &["seal"], &secret.to_string())).unwrap();
    let path = file.to_str().unwrap();
    sealant_as_user(node, &sealant, &["validate", "--online", path], "");
    // `sealant reencrypt` leaves a file already sealed to the newest key alone; the kubeseal
    // name re-seals always, through the controller's /v1/rotate.
    let before = std::fs::read_to_string(&file).unwrap();
    sealant_as_user(node, &sealant, &["reencrypt", path], "");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), before, "already sealed to upstream's newest key");
    let kubeseal = dir.path().join("kubeseal");
    std::os::unix::fs::symlink(&sealant, &kubeseal).unwrap();
    sealant_as_user(node, &kubeseal, &["--re-encrypt", "-f", path], "");
    let rotated = std::fs::read_to_string(&file).unwrap();
    assert_ne!(rotated, before, "re-sealed through upstream's /v1/rotate");
    let valid = Command::new(&sealant)
        .args(["validate", "--online", path])
        .env("KUBECONFIG", &node.user_kubeconfig)
        .output()
        .unwrap();
    assert!(
        valid.status.success(),
        "{}{}\n{rotated}",
        String::from_utf8_lossy(&valid.stdout),
        String::from_utf8_lossy(&valid.stderr)
    );
    let keys = node.kubectl_ok(
        &["get", "secret", "-n", NS, "-l", "sealedsecrets.bitnami.com/sealed-secrets-key", "-o", "json"],
        None,
    );
    let key_file = dir.path().join("upstream-keys.json");
    std::fs::write(&key_file, keys).unwrap();
    let opened =
        sealant_as_user(node, &sealant, &["unseal", "--private-key", key_file.to_str().unwrap(), "-f", path], "");
    assert!(opened.contains("Y2hlY2tlZC1ieS11cHN0cmVhbQ=="), "unsealed with upstream's key: {opened}");
}

#[test]
fn upstream_to_ours_and_back_keeps_every_secret() {
    let node = node();
    let ours = node.controller_image("rollback");
    let upstream = upstream_image(node);
    uninstall(node);
    let _cleanup = Uninstall(node);

    // Upstream as its chart installs it, from its own image.
    let (rbac, controller) = install_upstream_chart(node, Some(&upstream));
    wait_rolled_out(node, 1, Duration::from_secs(180), "upstream's controller", || fetch_cert(node).is_ok());

    node.kubectl_ok(&["create", "namespace", "apps"], None);
    let value = seal_and_apply(node, "apps", "by-upstream");
    assert_eq!(unsealed_password(node, "apps", "by-upstream", Duration::from_secs(60)), value);
    // One that no key opens: sealed to the demo certificate, which no controller here holds.
    let secret = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "unopenable", "namespace": "apps"},
        "stringData": {"password": "x"}});
    let demo = repo().join("keys-example/demo.tls.crt");
    let sealed = sealant_as_user(
        node,
        &built_binary("sealant"),
        &["seal", "--cert", demo.to_str().unwrap()],
        &secret.to_string(),
    );
    node.kubectl_ok(&["apply", "-f", "-"], Some(&sealed));
    let failing = wait_for(Duration::from_secs(60), "upstream to report the unopenable one", || {
        synced(node, "apps", "unopenable").filter(|(status, _)| status == "False")
    });
    let kept = version_and_data(node, "apps", "by-upstream");
    our_cli_against_upstream(node);

    // To ours: the image only.
    switch_to(node, &ours, "our controller");
    let value = seal_and_apply(node, "apps", "by-ours");
    assert_eq!(unsealed_password(node, "apps", "by-ours", Duration::from_secs(60)), value);
    assert_eq!(version_and_data(node, "apps", "by-upstream"), kept, "ours left upstream's Secret alone");
    wait_for(Duration::from_secs(60), "ours to report the unopenable one", || {
        synced(node, "apps", "unopenable").filter(|(status, _)| status == "False")
    });
    let kept_ours = version_and_data(node, "apps", "by-ours");

    // And back, as a user who rolls back: upstream takes every key and Secret as they are.
    switch_to(node, &upstream, "upstream's controller again");
    let value = seal_and_apply(node, "apps", "after-rollback");
    assert_eq!(unsealed_password(node, "apps", "after-rollback", Duration::from_secs(60)), value);
    assert_eq!(version_and_data(node, "apps", "by-upstream"), kept);
    // Upstream rewrites a Secret ours made once, to its own form: it sets the annotations to the
    // template's (dropping our digest and MAC) and its owner reference (with
    // blockOwnerDeletion). The data stays; and it stays put after that (README, "where we differ").
    let rewritten = version_and_data(node, "apps", "by-ours");
    assert_eq!(rewritten.1, kept_ours.1, "upstream kept the data of our Secret");
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(version_and_data(node, "apps", "by-ours"), rewritten, "and rewrote it only once");
    let after = wait_for(Duration::from_secs(60), "upstream to report the unopenable one again", || {
        synced(node, "apps", "unopenable").filter(|(status, _)| status == "False")
    });
    // Upstream writes Synced=False with no reason; it updates status and message only, so the
    // reason ours wrote (DecryptFailed) stays after a rollback, still true.
    assert_eq!((after.0.as_str(), failing.1.as_str()), ("False", ""), "the failing one fails as it did");
    assert!(["", "DecryptFailed"].contains(&after.1.as_str()), "{after:?}");
    let logs = node.kubectl_ok(&["logs", "-n", NS, &format!("deployment/{DEPLOYMENT}")], None);
    assert!(!logs.contains("panic"), "upstream after the rollback:\n{logs}");

    node.kubectl_ok(&["delete", "namespace", "apps", "--wait=false"], None);
    node.kubectl_ok(&["delete", "-f", "-", "--ignore-not-found"], Some(&controller));
    node.kubectl_ok(&["delete", "-f", "-", "--ignore-not-found"], Some(&rbac));
}
