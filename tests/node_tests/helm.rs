//! Our Helm chart installed, upgraded and rolled back by the real helm, as README tells users:
//! into kube-system under the restricted Pod Security level, both replicas Ready, the kubeseal
//! path through the Service, an upgrade to a new image tag and a rollback that never stop
//! answering the certificate, and `helm uninstall` leaving every key and Secret in place.

use sealant_tests::chart::{RELEASE, helm_command, template};

use super::install::Restricted;
use super::*;

/// `helm` against the node, which must succeed; its standard output.
pub(super) fn helm(node: &Node, args: &[&str]) -> String {
    let out = helm_command(&node.kubeconfig, &node.dir.join("helm")).args(args).output().unwrap();
    assert!(out.status.success(), "helm {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The release name of upstream's chart in the migration test.
const UPSTREAM_RELEASE: &str = "sealed-secrets";

/// Removes the releases (if any) and what [`uninstall`] removes, also when the test fails.
pub(super) struct HelmUninstall(pub(super) &'static Node);

impl Drop for HelmUninstall {
    fn drop(&mut self) {
        for release in [RELEASE, UPSTREAM_RELEASE] {
            let _ = helm_command(&self.0.kubeconfig, &self.0.dir.join("helm"))
                .args(["uninstall", release, "--namespace", NS, "--ignore-not-found", "--wait"])
                .output();
        }
        drop(Uninstall(self.0));
    }
}

/// The chart's values for one of the images the node has (`localhost/sealant-controller:TAG`).
pub(super) fn image_values(image: &str) -> [String; 1] {
    let (repository, tag) = image.rsplit_once(':').unwrap();
    let (registry, repository) = repository.split_once('/').unwrap();
    [format!("--set=image.registry={registry},image.repository={repository},image.tag={tag}")]
}

#[test]
fn helm_installs_upgrades_rolls_back_and_uninstalls_without_losing_a_key() {
    let node = node();
    let image = node.controller_image("helm-a");
    let next_image = node.controller_image("helm-b");
    uninstall(node);
    // Objects another install left under the chart's names would stop helm from owning them.
    let rendered = template(NS, &[]).unwrap();
    node.kubectl_ok(&["delete", "--ignore-not-found", "--wait=true", "-f", "-"], Some(&rendered));
    let _cleanup = HelmUninstall(node);
    let _restricted = Restricted::enforce(node);
    let chart = repo_abs().join("deploy/chart");
    let chart = chart.to_str().unwrap();

    // Install, and wait for both replicas under `restricted`.
    let started = Instant::now();
    let mut install = vec!["install", RELEASE, chart, "--namespace", NS];
    let values = image_values(&image);
    install.extend(values.iter().map(String::as_str));
    let said = helm(node, &install);
    assert!(said.contains("STATUS: deployed"), "{said}");
    wait_rolled_out(node, 2, Duration::from_secs(180), "both replicas Ready after helm install", || {
        all_run(node, &image)
    });
    let installed = started.elapsed().as_secs_f64();
    let pods = controller_pods(node, "name=sealed-secrets-controller");
    let rss = check_security_context(node, &pods);
    leader_among(node, &pods);

    // The kubeseal path as an ordinary user, and a Secret unsealed.
    let cert = fetch_cert(node).expect("the certificate through the service proxy");
    assert!(cert.starts_with("-----BEGIN CERTIFICATE-----"), "a PEM certificate: {cert}");
    node.kubectl_ok(&["create", "namespace", "helm-apps"], None);
    let value = seal_and_apply(node, "helm-apps", "installed");
    assert_eq!(unsealed_password(node, "helm-apps", "installed", Duration::from_secs(60)), value);

    // Upgrade to a new image tag: rolling, the certificate answers throughout.
    let values = image_values(&next_image);
    let mut upgrade = vec!["upgrade", RELEASE, chart, "--namespace", NS];
    upgrade.extend(values.iter().map(String::as_str));
    let (upgraded, upgrade_answers) =
        without_a_failed_fetch(node, &cert, &next_image, "helm upgrade", || drop(helm(node, &upgrade)));
    let value = seal_and_apply(node, "helm-apps", "upgraded");
    assert_eq!(unsealed_password(node, "helm-apps", "upgraded", Duration::from_secs(60)), value);

    // Roll back to the first revision: the first image again, the same key, no failed fetch.
    let (rolled_back, rollback_answers) = without_a_failed_fetch(node, &cert, &image, "helm rollback", || {
        drop(helm(node, &["rollback", RELEASE, "1", "--namespace", NS]))
    });
    assert_eq!(fetch_cert(node).unwrap(), cert, "the same sealing key after the rollback");
    let value = seal_and_apply(node, "helm-apps", "rolled-back");
    assert_eq!(unsealed_password(node, "helm-apps", "rolled-back", Duration::from_secs(60)), value);
    let history = helm(node, &["history", RELEASE, "--namespace", NS, "-o", "json"]);
    let history: Value = serde_json::from_str(&history).unwrap();
    assert_eq!(history.as_array().unwrap().len(), 3, "install, upgrade, rollback: {history}");

    // Uninstall: the chart's objects go; the keys, the CRD, the SealedSecrets and the Secrets stay.
    let keys_before = node.get_json(&["secrets", "-n", NS, "-l", "sealedsecrets.bitnami.com/sealed-secrets-key"]);
    helm(node, &["uninstall", RELEASE, "--namespace", NS, "--wait"]);
    let keys_after = node.get_json(&["secrets", "-n", NS, "-l", "sealedsecrets.bitnami.com/sealed-secrets-key"]);
    let uids = |list: &Value| -> Vec<String> {
        list["items"].as_array().unwrap().iter().map(|s| s["metadata"]["uid"].as_str().unwrap().to_owned()).collect()
    };
    assert!(!uids(&keys_before).is_empty());
    assert_eq!(uids(&keys_after), uids(&keys_before), "every key Secret is still there");
    assert!(
        node.get_json(&["deployment", "-n", NS, "-l", "app.kubernetes.io/instance=sealant"])["items"]
            .as_array()
            .is_none_or(Vec::is_empty)
    );
    node.kubectl_ok(&["get", "crd", "sealedsecrets.bitnami.com"], None);
    for name in ["installed", "upgraded", "rolled-back"] {
        node.kubectl_ok(&["get", "sealedsecret,secret", "-n", "helm-apps", name], None);
    }
    eprintln!(
        "node figures: helm install to both replicas Ready {installed:.1} s; helm upgrade to a new tag {upgraded:.1} s ({upgrade_answers} certificate fetches, none failed); helm rollback {rolled_back:.1} s ({rollback_answers} fetches, none failed); RSS per Pod (node's view) {rss:?} KiB"
    );
    node.kubectl_ok(&["delete", "namespace", "helm-apps", "--wait=false"], None);
}

#[test]
fn from_upstreams_real_chart_to_ours_keeps_the_key_and_every_secret() {
    let node = node();
    let upstream = upstream_image(node);
    let ours = node.controller_image("helm-migrate");
    uninstall(node);
    let rendered = template(NS, &[]).unwrap();
    node.kubectl_ok(&["delete", "--ignore-not-found", "--wait=true", "-f", "-"], Some(&rendered));
    let _cleanup = HelmUninstall(node);
    let chart = repo_abs().join("deploy/chart");
    let upstream_chart = sealant_tests::cluster::upstream_chart();

    // Upstream's chart v2.19 as its README installs it for kubeseal's defaults, running
    // upstream's controller v0.40.0; it makes its key, and unseals what our CLI sealed.
    let [values] = image_values(&upstream);
    helm(
        node,
        &[
            "install",
            UPSTREAM_RELEASE,
            upstream_chart.to_str().unwrap(),
            "--namespace",
            NS,
            "--set=fullnameOverride=sealed-secrets-controller",
            &values,
        ],
    );
    let upstream_selector = "app.kubernetes.io/name=sealed-secrets";
    wait_for(Duration::from_secs(180), "upstream's controller Ready", || {
        let pods = controller_pods(node, upstream_selector);
        let ready = |p: &Value| p["status"]["containerStatuses"][0]["ready"] == true;
        (pods.len() == 1 && pods.iter().all(ready)).then_some(())
    });
    let cert = wait_for(Duration::from_secs(60), "upstream's certificate", || fetch_cert(node).ok());
    node.kubectl_ok(&["create", "namespace", "migrate"], None);
    let value = seal_and_apply(node, "migrate", "before");
    assert_eq!(unsealed_password(node, "migrate", "before", Duration::from_secs(60)), value);
    let before = node.get_json(&["secret", "-n", "migrate", "before"]);

    // README's path: uninstall upstream's release (its key is the controller's, not the chart's),
    // install ours.
    let keys = |node: &Node| {
        let list = node.get_json(&["secrets", "-n", NS, "-l", "sealedsecrets.bitnami.com/sealed-secrets-key"]);
        list["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["metadata"]["uid"].as_str().unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    let upstream_keys = keys(node);
    assert_eq!(upstream_keys.len(), 1, "upstream made one key");
    helm(node, &["uninstall", UPSTREAM_RELEASE, "--namespace", NS, "--wait"]);
    assert_eq!(keys(node), upstream_keys, "helm uninstall of upstream's chart keeps its key");
    let started = Instant::now();
    let [values] = image_values(&ours);
    helm(node, &["install", RELEASE, chart.to_str().unwrap(), "--namespace", NS, &values]);
    wait_rolled_out(node, 2, Duration::from_secs(180), "ours Ready after upstream's chart", || all_run(node, &ours));
    let moved = started.elapsed().as_secs_f64();

    // The same key serves, the Secret upstream made is untouched, new SealedSecrets unseal.
    assert_eq!(fetch_cert(node).unwrap(), cert, "upstream's key, now served by ours");
    assert_eq!(keys(node), upstream_keys, "no new key");
    let value = seal_and_apply(node, "migrate", "after");
    assert_eq!(unsealed_password(node, "migrate", "after", Duration::from_secs(60)), value);
    let still = node.get_json(&["secret", "-n", "migrate", "before"]);
    assert_eq!(still["data"], before["data"]);
    assert_eq!(still["metadata"]["resourceVersion"], before["metadata"]["resourceVersion"], "not rewritten");
    eprintln!("node figures: from upstream's chart to ours, helm install to both replicas Ready {moved:.1} s");
    node.kubectl_ok(&["delete", "namespace", "migrate", "--wait=false"], None);
}
