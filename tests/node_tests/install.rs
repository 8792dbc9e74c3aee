//! `kubectl apply -k deploy/` with only the image swapped, as the README tells users: two
//! replicas under the declared securityContext, one leader, the kubeseal path through the
//! Service, failover, and a rolling update that never stops answering.

use super::*;

/// Pod Security admission at the level `deploy/` claims to meet, enforced where it installs.
const RESTRICTED: [&str; 2] =
    ["pod-security.kubernetes.io/enforce=restricted", "pod-security.kubernetes.io/warn=restricted"];

#[test]
fn deploy_runs_as_pods_serves_the_kubeseal_path_fails_over_and_rolls() {
    let node = node();
    let image = node.controller_image("test-a");
    let next_image = node.controller_image("test-b");
    uninstall(node);
    let _cleanup = Uninstall(node);
    let _restricted = Restricted::enforce(node);
    // Only the image is swapped, as README tells users to do (it is not published yet).
    let overlay = overlay(&repo_abs().join("deploy"), &image);
    let selector = "name=sealed-secrets-controller";

    // Install as is (policy/v1 PDB and all) under `restricted`, and wait for both replicas:
    // Pods that break the policy would never be created.
    let applied = Instant::now();
    let out = node.kubectl(&["apply", "-k", overlay.path().to_str().unwrap()], None);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "kubectl apply -k deploy/: {stderr}");
    assert!(!stderr.contains("PodSecurity"), "deploy/ breaks the restricted Pod Security level: {stderr}");
    wait_rolled_out(node, 2, Duration::from_secs(180), "both replicas Ready", || true);
    let ready_after = applied.elapsed();
    let pods = controller_pods(node, selector);
    assert_eq!(pods.len(), 2, "two replicas");
    for pod in &pods {
        let image_in_pod = pod["spec"]["containers"][0]["image"].as_str().unwrap();
        assert_eq!(image_in_pod, image, "kustomize swapped only the image");
    }

    // The securityContext deploy/ declares, read from the node.
    let rss = check_security_context(node, &pods);

    // Exactly one leader, and it is one of the two.
    let leader = leader_among(node, &pods);

    // The kubeseal path as an ordinary user: the certificate through the Service proxy, the
    // same from `sealant cert` and from the kubeseal name; sealing with it, without --cert.
    let cert = fetch_cert(node).expect("the certificate through the service proxy");
    assert!(cert.starts_with("-----BEGIN CERTIFICATE-----"), "a PEM certificate: {cert}");
    assert_eq!(sealant_as_user(node, &built_binary("sealant"), &["cert"], ""), cert);
    let bin = tempfile::tempdir().unwrap();
    let kubeseal = bin.path().join("kubeseal");
    std::os::unix::fs::symlink(built_binary("sealant"), &kubeseal).unwrap();
    assert_eq!(sealant_as_user(node, &kubeseal, &["--fetch-cert"], ""), cert);
    node.kubectl_ok(&["create", "namespace", "apps"], None);
    let value = seal_and_apply(node, "apps", "first");
    assert_eq!(unsealed_password(node, "apps", "first", Duration::from_secs(60)), value);

    // Failover: delete the leader Pod while a new SealedSecret arrives; the other replica
    // takes the Lease and nothing stays sealed.
    let deleted = Instant::now();
    node.kubectl_ok(&["delete", "pod", "-n", NS, &leader, "--wait=false"], None);
    let during = seal_and_apply(node, "apps", "during-failover");
    // The other replica, or the Pod that replaces the deleted one, whichever is first.
    let new_leader = wait_for(Duration::from_secs(60), "a new leader", || {
        lease_holder(node).filter(|h| h != &leader && !h.is_empty())
    });
    let failover = deleted.elapsed();
    assert_eq!(unsealed_password(node, "apps", "during-failover", Duration::from_secs(60)), during);
    let after = seal_and_apply(node, "apps", "after-failover");
    assert_eq!(unsealed_password(node, "apps", "after-failover", Duration::from_secs(60)), after);
    wait_rolled_out(node, 2, Duration::from_secs(120), "the Deployment to replace the deleted Pod", || true);

    // A rolling update to a new tag: the certificate answers through the Service throughout.
    let (roll_time, answers) = without_a_failed_fetch(node, &cert, &next_image, "the rolling update", || {
        node.kubectl_ok(
            &["set", "image", "-n", NS, &format!("deployment/{DEPLOYMENT}"), &format!("{DEPLOYMENT}={next_image}")],
            None,
        );
    });
    let value = seal_and_apply(node, "apps", "after-update");
    assert_eq!(unsealed_password(node, "apps", "after-update", Duration::from_secs(60)), value);

    let rss_after: Vec<u64> = check_security_context(node, &controller_pods(node, selector));
    eprintln!(
        "node figures: both replicas Ready {:.1} s after kubectl apply -k; failover (leader Pod deleted -> {new_leader} holds the Lease) {:.1} s; rolling update {:.1} s with {answers} certificate fetches, none failed; RSS per Pod (node's view) {rss:?} KiB after install, {rss_after:?} KiB after the update",
        ready_after.as_secs_f64(),
        failover.as_secs_f64(),
        roll_time,
    );
    node.kubectl_ok(&["delete", "namespace", "apps", "--wait=false"], None);
    node.kubectl_ok(&["delete", "-k", overlay.path().to_str().unwrap(), "--ignore-not-found", "--wait=true"], None);
}

/// `kube-system` labelled for the restricted Pod Security level while it lives.
pub(super) struct Restricted(&'static Node);

impl Restricted {
    pub(super) fn enforce(node: &'static Node) -> Restricted {
        let mut args = vec!["label", "namespace", NS, "--overwrite"];
        args.extend(RESTRICTED);
        node.kubectl_ok(&args, None);
        Restricted(node)
    }
}

impl Drop for Restricted {
    fn drop(&mut self) {
        let _ = self.0.kubectl(
            &["label", "namespace", NS, "pod-security.kubernetes.io/enforce-", "pod-security.kubernetes.io/warn-"],
            None,
        );
    }
}
