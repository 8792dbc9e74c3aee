//! `sealant status` as the operator runs it, through the real kubectl as a plugin
//! (`kubectl sealant status`), against the chart installed as Pods with a key backup: healthy
//! (exit 0), then a SealedSecret that cannot be decrypted, a certificate the controller does not
//! hold and a backup Secret that was deleted, each reported with exit 1; a key added by hand is
//! backed up by the controller at once.

use sealant_tests::chart::RELEASE;
use sealant_tests::cluster::kubectl_command;

use super::helm::{HelmUninstall, helm, image_values};
use super::*;

/// `kubectl sealant status ARGS` with the admin kubeconfig: (exit code, stdout).
fn kubectl_sealant_status(node: &Node, args: &[&str]) -> (i32, String) {
    let plugins = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(built_binary("sealant"), plugins.path().join("kubectl-sealant")).unwrap();
    let path = format!("{}:{}", plugins.path().display(), std::env::var("PATH").unwrap_or_default());
    let out = kubectl_command()
        .args(["sealant", "status"])
        .args(args)
        .env("KUBECONFIG", &node.kubeconfig)
        .env("PATH", path)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    eprintln!("$ kubectl sealant status {}\n{stdout}{}", args.join(" "), String::from_utf8_lossy(&out.stderr));
    (out.status.code().unwrap_or(-1), stdout)
}

#[test]
fn status_tells_a_healthy_install_from_each_failure() {
    let node = node();
    let image = node.controller_image("status");
    uninstall(node);
    let rendered = sealant_tests::chart::template(NS, &[]).unwrap();
    node.kubectl_ok(&["delete", "--ignore-not-found", "--wait=true", "-f", "-"], Some(&rendered));
    let _cleanup = HelmUninstall(node);
    let keygen = Command::new("age-keygen").output().expect("age-keygen (Debian's age)");
    let identity = String::from_utf8(keygen.stdout).unwrap();
    let recipient = identity.lines().find_map(|l| l.strip_prefix("# public key: ")).unwrap().to_owned();
    let chart = repo_abs().join("deploy/chart");
    let [values] = image_values(&image);
    let backup = format!("--set-json=backupRecipients=[\"{recipient}\"]");
    helm(node, &["install", RELEASE, chart.to_str().unwrap(), "--namespace", NS, &values, &backup]);
    wait_rolled_out(node, 2, Duration::from_secs(180), "both replicas Ready", || all_run(node, &image));
    wait_for(Duration::from_secs(60), "the key backup", || {
        node.kubectl(&["get", "secret", "-n", NS, "sealed-secrets-key-backup"], None).status.success().then_some(())
    });
    node.kubectl_ok(&["create", "namespace", "status-apps"], None);
    let value = seal_and_apply(node, "status-apps", "fine");
    assert_eq!(unsealed_password(node, "status-apps", "fine", Duration::from_secs(60)), value);

    // Healthy, with the certificate users commit. (Namespace status-apps: other node tests leave
    // namespaces behind them terminating, with SealedSecrets of keys long gone.)
    let dir = tempfile::tempdir().unwrap();
    let cert = dir.path().join("cert.pem");
    std::fs::write(&cert, fetch_cert(node).unwrap()).unwrap();
    let cert = cert.to_str().unwrap();
    let (code, text) = kubectl_sealant_status(node, &["-n", "status-apps", "--cert", cert]);
    assert_eq!(code, 0, "healthy:\n{text}");
    assert!(text.contains("2/2 replicas ready"), "{text}");
    assert!(text.contains("held, and new secrets are sealed to it"), "{text}");
    assert!(text.contains("Healthy."), "{text}");

    // A SealedSecret no key opens: listed, exit 1; JSON for scripts.
    let broken = json!({"apiVersion": "bitnami.com/v1alpha1", "kind": "SealedSecret",
        "metadata": {"name": "broken", "namespace": "status-apps"},
        "spec": {"encryptedData": {"password": "AgBrokenData=="}, "template": {"metadata": {"name": "broken"}}}});
    node.kubectl_ok(&["apply", "-f", "-"], Some(&broken.to_string()));
    let failing = wait_for(Duration::from_secs(60), "status to see the failing SealedSecret", || {
        let (code, json) = kubectl_sealant_status(node, &["-n", "status-apps", "-o", "json"]);
        let json: Value = serde_json::from_str(&json).ok()?;
        (code == 1 && json["sealedSecrets"]["failing"] == 1).then_some(json)
    });
    assert_eq!(failing["sealedSecrets"]["failures"][0]["name"], "broken");
    assert_eq!(failing["sealedSecrets"]["synced"], 1);
    node.kubectl_ok(&["delete", "sealedsecret", "-n", "status-apps", "broken"], None);

    // A certificate the controller does not hold.
    let foreign = repo().join("tests/fixtures/sealed-secrets/python-generated/keys/key-a.tls.crt");
    let (code, text) = kubectl_sealant_status(node, &["-n", "status-apps", "--cert", foreign.to_str().unwrap()]);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("NOT held by the controller"), "{text}");

    // A key added by hand: the controller backs it up too (the backup follows the set of keys).
    let out = Command::new(built_binary("sealant"))
        .args(["keys", "rotate", "--bits", "2048"])
        .env("KUBECONFIG", &node.kubeconfig)
        .output()
        .unwrap();
    assert!(out.status.success(), "sealant keys rotate: {}", String::from_utf8_lossy(&out.stderr));
    let text = wait_for(Duration::from_secs(60), "the backup to hold the new key", || {
        let (code, text) = kubectl_sealant_status(node, &["-n", "status-apps"]);
        (code == 0 && text.contains("holds 2 keys")).then_some(text)
    });
    assert!(text.contains("Keys           2"), "{text}");

    // The backup Secret deleted: configured but missing, exit 1.
    node.kubectl_ok(&["delete", "secret", "-n", NS, "sealed-secrets-key-backup"], None);
    let (code, text) = kubectl_sealant_status(node, &["-n", "status-apps"]);
    assert_eq!(code, 1, "{text}");
    assert!(
        text.contains("key backup is configured but the Secret sealed-secrets-key-backup does not exist"),
        "{text}"
    );
    node.kubectl_ok(&["delete", "namespace", "status-apps", "--wait=false"], None);
}
