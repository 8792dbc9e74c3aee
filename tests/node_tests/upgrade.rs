//! Upgrade from Bitnami, literally: upstream's chart objects (tests/fixtures/upstream-chart)
//! with a key Secret and a SealedSecret made by the real kubeseal v0.14.1, and the Secret
//! upstream's controller made from it; then only the Deployment's image is switched to ours.

use super::*;

const FIXTURES: &str = "tests/fixtures/sealed-secrets/real-kubeseal-v0.14.1";

/// A fixture document as JSON, without the fields the API server sets.
fn fixture(path: &str) -> Value {
    let text = std::fs::read_to_string(repo().join(path)).unwrap();
    let mut doc = sealant_core::yaml::parse_documents(&text).unwrap().remove(0);
    let meta = doc["metadata"].as_object_mut().unwrap();
    for field in ["resourceVersion", "uid", "selfLink", "creationTimestamp", "generateName"] {
        meta.remove(field);
    }
    doc
}

fn resource_version(node: &Node, args: &[&str]) -> (String, Value) {
    let obj = node.get_json(args);
    (obj["metadata"]["resourceVersion"].as_str().unwrap().to_owned(), obj["data"].clone())
}

#[test]
fn switching_upstreams_deployment_to_our_image_keeps_every_secret_and_unseals_new_ones() {
    let node = node();
    let image = node.controller_image("upgrade");
    uninstall(node);
    let _cleanup = Uninstall(node);

    // What a cluster running upstream's chart has: the CRD, the chart's ServiceAccount, RBAC,
    // Service and Deployment, the controller's key, a SealedSecret and the Secret made from it.
    let (rbac, controller) = install_upstream_chart(node, None);
    let key = fixture(&format!("{FIXTURES}/sealed-secrets-keynvpcz.secret.yaml"));
    node.kubectl_ok(&["create", "-f", "-"], Some(&key.to_string()));
    node.kubectl_ok(&["create", "namespace", "foo"], None);
    let sealed = fixture(&format!("{FIXTURES}/credentials.sealedsecret.yaml"));
    node.kubectl_ok(&["create", "-f", "-"], Some(&sealed.to_string()));
    let uid =
        node.get_json(&["sealedsecret", "-n", "foo", "credentials"])["metadata"]["uid"].as_str().unwrap().to_owned();
    let expected: Value =
        serde_json::from_str(&std::fs::read_to_string(repo().join(format!("{FIXTURES}/expected.json"))).unwrap())
            .unwrap();
    // The Secret as upstream's controller writes it: the template, the data, owned by the
    // SealedSecret through metav1.NewControllerRef (controller and blockOwnerDeletion).
    let made_by_upstream = json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {
            "name": "credentials", "namespace": "foo",
            "ownerReferences": [{
                "apiVersion": "bitnami.com/v1alpha1", "kind": "SealedSecret", "name": "credentials",
                "uid": uid, "controller": true, "blockOwnerDeletion": true,
            }],
        },
        "type": "Opaque",
        "data": expected["data_base64"],
    });
    node.kubectl_ok(&["create", "-f", "-"], Some(&made_by_upstream.to_string()));
    let secret_before = resource_version(node, &["secret", "-n", "foo", "credentials"]);
    let key_before = resource_version(node, &["secret", "-n", NS, "sealed-secrets-keynvpcz"]);

    // The upgrade: only the image changes.
    node.kubectl_ok(
        &["set", "image", "-n", NS, &format!("deployment/{DEPLOYMENT}"), &format!("controller={image}")],
        None,
    );
    wait_rolled_out(node, 1, Duration::from_secs(180), "our controller to roll out", || true);

    // It took over: the existing SealedSecret is reported synced, with the same Secret.
    wait_for(Duration::from_secs(60), "the existing SealedSecret to be Synced", || {
        let ss = node.get_json(&["sealedsecret", "-n", "foo", "credentials"]);
        let conditions = ss["status"]["conditions"].as_array()?.clone();
        conditions.iter().any(|c| c["type"] == "Synced" && c["status"] == "True").then_some(())
    });
    assert_eq!(
        resource_version(node, &["secret", "-n", "foo", "credentials"]),
        secret_before,
        "the Secret upstream made is untouched"
    );
    assert_eq!(
        resource_version(node, &["secret", "-n", NS, "sealed-secrets-keynvpcz"]),
        key_before,
        "the key Secret is untouched"
    );

    // New SealedSecrets, sealed through the chart's Service as kubeseal does, unseal.
    let cert = fetch_cert(node).expect("the certificate through upstream's Service");
    // The fixture's key dates from 2021, older than the 30-day renewal period, so our controller
    // adds a new key at once, as upstream's does (it orders keys by certificate NotBefore): the
    // served certificate is the newest key Secret's, and the old key stays to open old items.
    let keys = node.get_json(&["secret", "-n", NS, "-l", "sealedsecrets.bitnami.com/sealed-secrets-key"]);
    let served_by_a_key = keys["items"].as_array().unwrap().iter().any(|k| {
        k["data"]["tls.crt"]
            .as_str()
            .is_some_and(|c| String::from_utf8(base64_decode(c)).unwrap().trim() == cert.trim())
    });
    assert!(served_by_a_key, "the served certificate is one of the key Secrets'");
    let value = seal_and_apply(node, "foo", "after-upgrade");
    assert_eq!(unsealed_password(node, "foo", "after-upgrade", Duration::from_secs(60)), value);

    node.kubectl_ok(&["delete", "namespace", "foo", "--wait=false"], None);
    node.kubectl_ok(&["delete", "-f", "-", "--ignore-not-found"], Some(&controller));
    node.kubectl_ok(&["delete", "-f", "-", "--ignore-not-found"], Some(&rbac));
}

/// Upstream's release manifest (`controller.yaml`) with `image`, rendered from its jsonnet as its
/// Makefile does, by the real go-jsonnet; kubecfg's one function it calls, `parseYaml`, is stood
/// in for by jsonnet's own. The objects as a `List`.
fn upstream_release_manifest(image: &str) -> Value {
    let stub = tempfile::tempdir().unwrap();
    std::fs::write(
        stub.path().join("kubecfg.libsonnet"),
        "{ parseYaml(text):: local docs = std.parseYaml(text); if std.isArray(docs) then docs else [docs] }\n",
    )
    .unwrap();
    let source = upstream_file("controller.jsonnet");
    let out = Command::new(jsonnet_binary())
        .arg("-J")
        .arg(source.parent().unwrap())
        .arg("-J")
        .arg(stub.path())
        .args(["--ext-str", &format!("CONTROLLER_IMAGE={image}"), "--ext-str", "IMAGE_PULL_POLICY=IfNotPresent"])
        .arg(&source)
        .output()
        .unwrap();
    assert!(out.status.success(), "jsonnet: {}", String::from_utf8_lossy(&out.stderr));
    let rendered: Value = serde_json::from_slice(&out.stdout).unwrap();
    // kubecfg shows every object of the tree: here they are the top level's fields.
    let items: Vec<Value> =
        rendered.as_object().unwrap().values().filter(|v| v.get("kind").is_some()).cloned().collect();
    json!({"apiVersion": "v1", "kind": "List", "items": items})
}

#[test]
fn deploy_applied_with_kustomize_over_upstreams_release_manifest_takes_over() {
    let node = node();
    let ours = node.controller_image("over-release");
    let upstream = upstream_image(node);
    uninstall(node);
    let _cleanup = Uninstall(node);

    let manifest = upstream_release_manifest(&upstream);
    assert!(manifest["items"].as_array().unwrap().len() >= 10, "{manifest}");
    node.kubectl_ok(&["apply", "-f", "-"], Some(&manifest.to_string()));
    // Its Service's port has no name: the proxy path is `http:sealed-secrets-controller:`,
    // which kubeseal and ours derive from the Service.
    let cert_as_user = || {
        let out = Command::new(built_binary("sealant"))
            .arg("cert")
            .env("KUBECONFIG", &node.user_kubeconfig)
            .output()
            .unwrap();
        out.status.success().then(|| String::from_utf8(out.stdout).unwrap())
    };
    wait_rolled_out(node, 1, Duration::from_secs(180), "upstream's release manifest", || cert_as_user().is_some());
    let cert = cert_as_user().unwrap();
    node.kubectl_ok(&["create", "namespace", "over-release"], None);
    let value = seal_and_apply(node, "over-release", "by-upstream");
    assert_eq!(unsealed_password(node, "over-release", "by-upstream", Duration::from_secs(60)), value);
    let kept = resource_version(node, &["secret", "-n", "over-release", "by-upstream"]);

    // deploy/ over it, as kustomize users apply it; only the image is swapped.
    let overlay = overlay(&repo_abs().join("deploy"), &ours);
    node.kubectl_ok(&["apply", "-k", overlay.path().to_str().unwrap()], None);
    wait_rolled_out(node, 2, Duration::from_secs(240), "ours over upstream's release manifest", || {
        all_run(node, &ours)
    });
    assert_eq!(cert_as_user(), Some(cert), "the key upstream made is the one served");
    assert_eq!(
        resource_version(node, &["secret", "-n", "over-release", "by-upstream"]),
        kept,
        "upstream's Secret kept"
    );
    let value = seal_and_apply(node, "over-release", "by-ours");
    assert_eq!(unsealed_password(node, "over-release", "by-ours", Duration::from_secs(60)), value);

    node.kubectl_ok(&["delete", "namespace", "over-release", "--wait=false"], None);
    node.kubectl_ok(&["delete", "-k", overlay.path().to_str().unwrap(), "--ignore-not-found", "--wait=true"], None);
    // Upstream's objects that deploy/ does not name (its RBAC's names); the CRD is deploy/'s too.
    let mut rest = manifest;
    rest["items"].as_array_mut().unwrap().retain(|item| item["kind"] != "CustomResourceDefinition");
    node.kubectl_ok(&["delete", "-f", "-", "--ignore-not-found"], Some(&rest.to_string()));
}
