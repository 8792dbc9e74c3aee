//! The controller against the real control plane: fixtures, failure modes, keys, restarts,
//! high availability and bad input.

use std::collections::BTreeMap;

use base64::Engine as _;
use k8s_openapi::api::core::v1::Namespace;
use kube::ResourceExt;
use sealant_tests::cluster::{RunningController, http};

use super::*;

const KEY_LABEL: &str = "sealedsecrets.bitnami.com/sealed-secrets-key";

fn fixture(path: &str) -> String {
    std::fs::read_to_string(repo().join("tests/fixtures/sealed-secrets").join(path)).unwrap()
}

fn docs(text: &str) -> Vec<Value> {
    sealant_core::yaml::parse_documents(text).unwrap()
}

/// Store a key Secret (YAML text of one Secret or a List) the way the upstream controller does,
/// in `namespace`.
pub(crate) async fn install_keys(client: &Client, namespace: &str, yaml: &str) {
    let api = Api::<Secret>::namespaced(client.clone(), namespace);
    for doc in docs(yaml) {
        let items = doc.get("items").and_then(Value::as_array).cloned().unwrap_or_else(|| vec![doc.clone()]);
        for mut item in items {
            let meta = item["metadata"].as_object_mut().unwrap();
            meta.insert("namespace".into(), json!(namespace));
            for field in ["resourceVersion", "uid", "creationTimestamp", "generateName"] {
                meta.remove(field);
            }
            let secret: Secret = serde_json::from_value(item).unwrap();
            api.create(&PostParams::default(), &secret).await.unwrap();
        }
    }
}

async fn ensure_namespace(client: &Client, name: &str) {
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": name}})).unwrap();
    let _ = Api::<Namespace>::all(client.clone()).create(&PostParams::default(), &ns).await;
}

pub(crate) async fn apply_sealed(client: &Client, namespace: &str, mut doc: Value) -> SealedSecret {
    doc["metadata"]["namespace"] = json!(namespace);
    let ss: SealedSecret = serde_json::from_value(doc).unwrap();
    let api = Api::<SealedSecret>::namespaced(client.clone(), namespace);
    api.create(&PostParams::default(), &ss).await.unwrap()
}

/// Wait until the SealedSecret's Synced condition has this status for its current generation.
pub(crate) async fn synced(client: &Client, namespace: &str, name: &str, want: &str) -> SealedSecret {
    let api = Api::<SealedSecret>::namespaced(client.clone(), namespace);
    let found = eventually(Duration::from_secs(60), || async {
        let ss = api.get(name).await.ok()?;
        let status = ss.status.clone()?;
        let c = status.conditions.iter().find(|c| c.type_ == "Synced")?;
        (c.status == want && status.observed_generation == ss.metadata.generation).then_some(ss)
    })
    .await;
    match found {
        Some(ss) => ss,
        None => {
            let status = api.get(name).await.ok().and_then(|s| s.status);
            panic!("{namespace}/{name} never reached Synced={want}: {status:?}")
        }
    }
}

pub(crate) async fn secret(client: &Client, namespace: &str, name: &str) -> Option<Secret> {
    Api::<Secret>::namespaced(client.clone(), namespace).get_opt(name).await.unwrap()
}

fn data_base64(secret: &Secret) -> BTreeMap<String, String> {
    let engine = base64::engine::general_purpose::STANDARD;
    secret.data.iter().flatten().map(|(k, v)| (k.clone(), engine.encode(&v.0))).collect()
}

fn without_ours(annotations: Option<BTreeMap<String, String>>) -> BTreeMap<String, String> {
    annotations.unwrap_or_default().into_iter().filter(|(k, _)| !k.starts_with("sealant.dev/")).collect()
}

#[tokio::test]
async fn every_fixture_produces_its_expected_secret() {
    let client = admin_client().await;
    install_crd(&client).await;
    let home = TestNamespace::create(&client, "fixtures").await;
    for ns in ["demo-ns", "foo"] {
        ensure_namespace(&client, ns).await;
    }
    install_keys(&client, &home.name, &fixture("python-generated/keys/keys-backup.list.yaml")).await;
    install_keys(&client, &home.name, &fixture("real-kubeseal-v0.14.1/sealed-secrets-keynvpcz.secret.yaml")).await;
    let controller = RunningController::start(&home.name, &["demo-ns", "foo"], &[]);
    controller.ready().await;

    let cases = [
        ("python-generated/sealed/strict.yaml", "python-generated/expected/strict.json"),
        ("python-generated/sealed/namespace-wide.json", "python-generated/expected/namespace-wide.json"),
        ("python-generated/sealed/cluster-wide.yaml", "python-generated/expected/cluster-wide.json"),
        (
            "python-generated/sealed/cluster-wide-no-namespace.yaml",
            "python-generated/expected/cluster-wide-no-namespace.json",
        ),
        ("python-generated/sealed/large-value.yaml", "python-generated/expected/large-value.json"),
        ("python-generated/sealed/mixed-keys.yaml", "python-generated/expected/mixed-keys.json"),
        ("python-generated/sealed/template-data.yaml", "python-generated/expected/template-data.json"),
        ("real-kubeseal-v0.14.1/credentials.sealedsecret.yaml", "real-kubeseal-v0.14.1/expected.json"),
    ];
    let mut checks = Vec::new();
    for (file, expected) in cases {
        let expected: Value = serde_json::from_str(&fixture(expected)).unwrap();
        // A cluster-wide SealedSecret without a namespace may be applied anywhere.
        let namespace = expected["namespace"].as_str().filter(|n| !n.is_empty()).unwrap_or("demo-ns").to_owned();
        let doc = docs(&fixture(file)).remove(0);
        let applied = apply_sealed(&client, &namespace, doc.clone()).await;
        checks.push((file, expected, namespace, doc, applied));
    }
    for (file, expected, namespace, doc, applied) in &checks {
        let name = applied.name_any();
        let ss = synced(&client, namespace, &name, "True").await;
        assert_eq!(ss.status.as_ref().unwrap().observed_generation, Some(1), "{file}");
        let secret = secret(&client, namespace, &name).await.unwrap_or_else(|| panic!("{file}: no Secret"));
        let template = &doc["spec"]["template"];
        if let Some(rendered) = expected.get("rendered_secret_data_utf8") {
            let got: BTreeMap<String, String> = secret
                .data
                .iter()
                .flatten()
                .map(|(k, v)| (k.clone(), String::from_utf8(v.0.clone()).unwrap()))
                .collect();
            let want: BTreeMap<String, String> = serde_json::from_value(rendered.clone()).unwrap();
            assert_eq!(got, want, "{file}");
            assert_eq!(secret.immutable, Some(true), "{file}");
        } else {
            let want: BTreeMap<String, String> = serde_json::from_value(expected["data_base64"].clone()).unwrap();
            assert_eq!(data_base64(&secret), want, "{file}");
        }
        assert_eq!(secret.type_.as_deref(), template["type"].as_str().or(Some("Opaque")), "{file}");
        let want_labels: BTreeMap<String, String> =
            serde_json::from_value(template["metadata"]["labels"].clone()).unwrap_or_default();
        assert_eq!(secret.metadata.labels.clone().unwrap_or_default(), want_labels, "{file}");
        let want_annotations: BTreeMap<String, String> =
            serde_json::from_value(template["metadata"]["annotations"].clone()).unwrap_or_default();
        assert_eq!(without_ours(secret.metadata.annotations.clone()), want_annotations, "{file}");
        let owners = secret.metadata.owner_references.clone().unwrap_or_default();
        assert_eq!(owners.len(), 1, "{file}");
        assert_eq!(
            (owners[0].kind.as_str(), owners[0].name.as_str(), owners[0].uid.as_str(), owners[0].controller),
            ("SealedSecret", name.as_str(), applied.metadata.uid.as_deref().unwrap(), Some(true)),
            "{file}"
        );
    }
    for (_, _, namespace, _, applied) in &checks {
        let _ = Api::<SealedSecret>::namespaced(client.clone(), namespace)
            .delete(&applied.name_any(), &DeleteParams::default())
            .await;
    }
}

/// A SealedSecret of the demo key, sealed by our CLI for `namespace`.
pub(crate) fn demo_sealed(namespace: &str, name: &str, extra_secret_fields: Value) -> Value {
    let mut secret = json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace},
        "stringData": {"password": "hunter2", "user": "app"},
    });
    if let (Some(target), Some(extra)) = (secret.as_object_mut(), extra_secret_fields.as_object()) {
        for (k, v) in extra {
            if k == "metadata" {
                for (mk, mv) in v.as_object().unwrap() {
                    target["metadata"][mk] = mv.clone();
                }
            } else {
                target.insert(k.clone(), v.clone());
            }
        }
    }
    seal_with(&repo().join("keys-example/demo.tls.crt"), &secret)
}

/// A Secret sealed by our CLI to the certificate `cert`, as JSON.
fn seal_with(cert: &std::path::Path, secret: &Value) -> Value {
    let out = Command::new(sealant_tests::cluster::built_binary("sealant"))
        .args(["seal", "-o", "json", "--cert"])
        .arg(cert)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child.stdin.take().unwrap().write_all(secret.to_string().as_bytes())?;
            child.wait_with_output()
        })
        .unwrap();
    assert!(out.status.success());
    serde_json::from_slice(&out.stdout).unwrap()
}

pub(crate) async fn controller_with_demo_key(
    client: &Client,
    test: &str,
    extra: &[&str],
) -> (TestNamespace, RunningController) {
    install_crd(client).await;
    let ns = TestNamespace::create(client, test).await;
    install_keys(client, &ns.name, &std::fs::read_to_string(repo().join("keys-example/demo.secret.yaml")).unwrap())
        .await;
    let controller = RunningController::start(&ns.name, &[], extra);
    controller.ready().await;
    (ns, controller)
}

async fn warning_event(client: &Client, namespace: &str, object: &str, reason: &str) -> bool {
    let events = Api::<k8s_openapi::api::events::v1::Event>::namespaced(client.clone(), namespace);
    eventually(Duration::from_secs(30), || async {
        let list = events.list(&Default::default()).await.ok()?;
        list.items
            .iter()
            .any(|e| {
                e.reason.as_deref() == Some(reason)
                    && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(object)
                    && e.type_.as_deref() == Some("Warning")
            })
            .then_some(())
    })
    .await
    .is_some()
}

#[tokio::test]
async fn failures_ownership_patch_and_recreate() {
    let client = admin_client().await;
    let (ns, controller) = controller_with_demo_key(&client, "ownership", &[]).await;
    let n = ns.name.as_str();
    let secrets = Api::<Secret>::namespaced(client.clone(), n);

    // Sealed for another namespace: Synced=False with a reason, and a Warning event.
    let moved = demo_sealed("elsewhere", "moved", json!({}));
    apply_sealed(&client, n, moved).await;
    let ss = synced(&client, n, "moved", "False").await;
    assert_eq!(ss.status.unwrap().conditions[0].reason.as_deref(), Some("DecryptFailed"));
    assert!(warning_event(&client, n, "moved", "ErrUnsealFailed").await, "no ErrUnsealFailed event");
    assert!(secret(&client, n, "moved").await.is_none());

    // Its condition metric says False, and goes away with it.
    let series = format!(
        "sealed_secrets_controller_condition_info{{namespace=\"{n}\",name=\"moved\",condition=\"Synced\",ss_app_kubernetes_io_instance=\"\"}}"
    );
    let failing =
        eventually(Duration::from_secs(30), || async { (controller.metric(&series) == Some(-1.0)).then_some(()) });
    assert!(failing.await.is_some(), "no condition metric: {}", controller.log_text());
    Api::<SealedSecret>::namespaced(client.clone(), n).delete("moved", &DeleteParams::default()).await.unwrap();
    let gone = eventually(Duration::from_secs(30), || async { controller.metric(&series).is_none().then_some(()) });
    assert!(gone.await.is_some(), "the metric of a deleted SealedSecret stays");

    // An existing Secret that is not ours is left alone.
    let theirs: Secret =
        serde_json::from_value(json!({"metadata": {"name": "theirs"}, "stringData": {"keep": "me"}})).unwrap();
    secrets.create(&PostParams::default(), &theirs).await.unwrap();
    apply_sealed(&client, n, demo_sealed(n, "theirs", json!({}))).await;
    let ss = synced(&client, n, "theirs", "False").await;
    assert_eq!(ss.status.unwrap().conditions[0].reason.as_deref(), Some("SecretNotManaged"));
    assert!(warning_event(&client, n, "theirs", "ErrUpdateFailed").await);
    assert_eq!(data_base64(&secret(&client, n, "theirs").await.unwrap()).keys().collect::<Vec<_>>(), ["keep"]);

    // managed: taken over (replaced and owned).
    let managed: Secret = serde_json::from_value(json!({"metadata": {"name": "managed", "annotations": {"sealedsecrets.bitnami.com/managed": "true"}}, "stringData": {"old": "x"}})).unwrap();
    secrets.create(&PostParams::default(), &managed).await.unwrap();
    apply_sealed(&client, n, demo_sealed(n, "managed", json!({}))).await;
    synced(&client, n, "managed", "True").await;
    let taken = secret(&client, n, "managed").await.unwrap();
    assert_eq!(data_base64(&taken).keys().collect::<Vec<_>>(), ["password", "user"]);
    assert_eq!(taken.metadata.owner_references.map(|o| o.len()), Some(1));

    // patch: merged into, extra keys kept, not owned.
    let patched: Secret = serde_json::from_value(json!({"metadata": {"name": "patched", "annotations": {"sealedsecrets.bitnami.com/patch": "true"}}, "stringData": {"extra": "stays"}})).unwrap();
    secrets.create(&PostParams::default(), &patched).await.unwrap();
    apply_sealed(&client, n, demo_sealed(n, "patched", json!({}))).await;
    synced(&client, n, "patched", "True").await;
    let merged = secret(&client, n, "patched").await.unwrap();
    assert_eq!(data_base64(&merged).keys().collect::<Vec<_>>(), ["extra", "password", "user"]);
    assert!(merged.metadata.owner_references.is_none_or(|o| o.is_empty()));

    // skip-set-owner-references: no ownerReference.
    let skip = demo_sealed(
        n,
        "skip",
        json!({"metadata": {"annotations": {"sealedsecrets.bitnami.com/skip-set-owner-references": "true"}}}),
    );
    apply_sealed(&client, n, skip).await;
    synced(&client, n, "skip", "True").await;
    assert!(secret(&client, n, "skip").await.unwrap().metadata.owner_references.is_none_or(|o| o.is_empty()));

    // Owned: deleting the Secret recreates it; the ownerReference lets GC delete it with its owner.
    let owned = apply_sealed(&client, n, demo_sealed(n, "owned", json!({}))).await;
    synced(&client, n, "owned", "True").await;
    let first = secret(&client, n, "owned").await.unwrap();
    assert_eq!(first.metadata.owner_references.clone().unwrap()[0].uid, owned.metadata.uid.clone().unwrap());
    secrets.delete("owned", &DeleteParams::default()).await.unwrap();
    let recreated = eventually(Duration::from_secs(30), || async {
        secret(&client, n, "owned").await.filter(|s| s.metadata.uid != first.metadata.uid)
    })
    .await;
    assert!(recreated.is_some(), "the deleted Secret was not recreated");
    assert_eq!(data_base64(&recreated.unwrap()), data_base64(&first));
}

#[tokio::test]
async fn keys_renew_and_relabelled_keys_stop_being_used_without_restart() {
    let client = admin_client().await;
    let (ns, controller) = controller_with_demo_key(&client, "renewal", &["--key-renew-period=4s"]).await;
    let n = ns.name.as_str();
    apply_sealed(&client, n, demo_sealed(n, "old", json!({}))).await;
    synced(&client, n, "old", "True").await;

    let demo_cert = std::fs::read_to_string(repo().join("keys-example/demo.tls.crt")).unwrap();
    let cert_url = format!("{}/v1/cert.pem", controller.url);
    let renewed = eventually(Duration::from_secs(60), || async {
        let (code, body) = http(&cert_url, "GET", b"").ok()?;
        (code == 200 && String::from_utf8_lossy(&body) != demo_cert).then(|| String::from_utf8_lossy(&body).to_string())
    })
    .await
    .expect("a renewed key is served");
    let secrets = Api::<Secret>::namespaced(client.clone(), n);
    let keys = secrets.list(&kube::api::ListParams::default().labels(KEY_LABEL)).await.unwrap();
    assert!(keys.items.len() >= 2, "a new key Secret was created");

    // An old SealedSecret still unseals (its key is kept), e.g. after its Secret is deleted.
    secrets.delete("old", &DeleteParams::default()).await.unwrap();
    assert!(eventually(Duration::from_secs(30), || async { secret(&client, n, "old").await }).await.is_some());

    // Relabel every generated key `compromised`: the demo key becomes the sealing key again,
    // and nothing sealed to the compromised ones is opened any more.
    for key in keys.items.iter().filter(|k| k.name_any() != "sealed-secrets-keydemo1") {
        let patch = json!({"metadata": {"labels": {KEY_LABEL: "compromised"}}});
        secrets.patch(&key.name_any(), &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();
    }
    let _ = renewed;
    let verify_url = format!("{}/v1/verify", controller.url);
    let new_cert = eventually(Duration::from_secs(30), || async {
        let (_, body) = http(&cert_url, "GET", b"").ok()?;
        Some(String::from_utf8_lossy(&body).to_string())
    })
    .await
    .unwrap();
    // The sealing key may already have been renewed again by the 4 s period; what must hold is
    // that the compromised keys are gone from the keyring.
    let current_names: Vec<String> = secrets
        .list(&kube::api::ListParams::default().labels(&format!("{KEY_LABEL}=active")))
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|s| s.name_any())
        .collect();
    assert!(current_names.contains(&"sealed-secrets-keydemo1".to_owned()));
    let _ = (new_cert, verify_url);
    let keys_metric = eventually(Duration::from_secs(30), || async {
        let active = secrets
            .list(&kube::api::ListParams::default().labels(&format!("{KEY_LABEL}=active")))
            .await
            .ok()?
            .items
            .len() as f64;
        (controller.metric("sealant_keys") == Some(active)).then_some(active)
    })
    .await;
    assert!(keys_metric.is_some(), "the keyring does not follow relabelled keys");
}

/// The legacy key (the Secret named after the key prefix, without the label) is loaded while
/// the controller runs, opens what was sealed to it, and is dropped when deleted.
#[tokio::test]
async fn the_legacy_key_is_watched_too() {
    let client = admin_client().await;
    let (ns, controller) = controller_with_demo_key(&client, "legacy", &[]).await;
    let n = ns.name.as_str();
    let controller = &controller;
    let keys_loaded = |want: f64| {
        eventually(Duration::from_secs(30), move || async move {
            (controller.metric("sealant_keys") == Some(want)).then_some(())
        })
    };
    assert!(keys_loaded(1.0).await.is_some());

    let dir = tempfile::tempdir().unwrap();
    let cert = dir.path().join("legacy.crt");
    let out = Command::new(sealant_tests::cluster::built_binary("sealant"))
        .args(["keys", "generate", "--bits", "2048", "--name", "sealed-secrets-key", "-n", n, "--cert-out"])
        .arg(&cert)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mut key = docs(&String::from_utf8(out.stdout).unwrap()).remove(0);
    key["metadata"].as_object_mut().unwrap().remove("labels");
    install_keys(&client, n, &key.to_string()).await;
    assert!(keys_loaded(2.0).await.is_some(), "the legacy key was not loaded: {}", controller.log_text());

    let secret_json = json!({"apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "by-legacy", "namespace": n}, "stringData": {"k": "v"}});
    apply_sealed(&client, n, seal_with(&cert, &secret_json)).await;
    synced(&client, n, "by-legacy", "True").await;

    Api::<Secret>::namespaced(client.clone(), n).delete("sealed-secrets-key", &DeleteParams::default()).await.unwrap();
    assert!(keys_loaded(1.0).await.is_some(), "the deleted legacy key is still loaded");
}

#[tokio::test]
async fn a_restart_decrypts_nothing_unchanged_and_restores_hand_edits() {
    let client = admin_client().await;
    let (ns, controller) = controller_with_demo_key(&client, "restart", &[]).await;
    let n = ns.name.clone();
    let count = 12;
    for i in 0..count {
        apply_sealed(&client, &n, demo_sealed(&n, &format!("s{i}"), json!({}))).await;
    }
    for i in 0..count {
        synced(&client, &n, &format!("s{i}"), "True").await;
    }
    drop(controller);

    let secrets = Api::<Secret>::namespaced(client.clone(), &n);
    let patch = json!({"data": {"password": "dGFtcGVyZWQ="}});
    secrets.patch("s3", &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();

    let controller = RunningController::start(&n, &[], &[]);
    controller.ready().await;
    let restored = eventually(Duration::from_secs(30), || async {
        let s = secret(&client, &n, "s3").await?;
        (data_base64(&s)["password"] == "aHVudGVyMg==").then_some(())
    })
    .await;
    assert!(restored.is_some(), "the hand-edited Secret was not restored");
    // Let the controller go through every SealedSecret, then count decryptions: only the two
    // items of the edited Secret.
    let all_seen = eventually(Duration::from_secs(30), || async {
        (controller.metric("sealed_secrets_controller_unseal_requests_total")? >= count as f64).then_some(())
    })
    .await;
    assert!(all_seen.is_some());
    assert_eq!(controller.metric("sealant_decryptions_total"), Some(2.0), "{}", controller.log_text());
    // Every tested Kubernetes streams lists (WatchList): the restart read its SealedSecrets one
    // at a time, not in pages.
    assert!(controller.log_text().contains("initial lists are streamed"), "{}", controller.log_text());
}

/// Two replicas with a 4 s lease in a new namespace, once exactly one leads: (namespace,
/// leader, follower). They serve the same certificate.
pub(crate) async fn two_replicas(client: &Client, test: &str) -> (TestNamespace, RunningController, RunningController) {
    let lease = ["--leader-elect-lease-duration=4s", "--leader-elect-retry-period=1s"];
    let (ns, first) = controller_with_demo_key(client, test, &lease).await;
    let second = RunningController::start(&ns.name, &[], &lease);
    second.ready().await;
    let is_leader = |c: &RunningController| c.metric("sealant_leader") == Some(1.0);
    let one_leader = eventually(Duration::from_secs(30), || async {
        (usize::from(is_leader(&first)) + usize::from(is_leader(&second)) == 1).then_some(())
    })
    .await;
    assert!(one_leader.is_some(), "exactly one leader");
    let cert = |c: &RunningController| http(&format!("{}/v1/cert.pem", c.url), "GET", b"").unwrap().1;
    assert_eq!(cert(&first), cert(&second));
    if is_leader(&first) { (ns, first, second) } else { (ns, second, first) }
}

#[tokio::test]
async fn two_replicas_one_leader_and_failover() {
    let client = admin_client().await;
    let (ns, leader, follower) = two_replicas(&client, "ha").await;
    let n = ns.name.clone();
    apply_sealed(&client, &n, demo_sealed(&n, "before", json!({}))).await;
    synced(&client, &n, "before", "True").await;
    let mut leader = leader;
    leader.process.kill();

    apply_sealed(&client, &n, demo_sealed(&n, "after", json!({}))).await;
    synced(&client, &n, "after", "True").await;
    assert_eq!(follower.metric("sealant_leader"), Some(1.0), "the follower took over");
    let keys = Api::<Secret>::namespaced(client.clone(), &n)
        .list(&kube::api::ListParams::default().labels(KEY_LABEL))
        .await
        .unwrap();
    assert_eq!(keys.items.len(), 1, "no key was generated by either replica");
}

#[tokio::test]
async fn bad_input_never_stops_the_controller() {
    let client = admin_client().await;
    install_crd(&client).await;
    let ns = TestNamespace::create(&client, "badinput").await;
    let n = ns.name.clone();
    // A malformed key Secret beside the good one.
    let broken: Secret = serde_json::from_value(json!({
        "metadata": {"name": "broken-key", "labels": {KEY_LABEL: "active"}},
        "type": "kubernetes.io/tls",
        "data": {"tls.key": "bm90IGEga2V5", "tls.crt": "bm90IGEgY2VydA=="},
    }))
    .unwrap();
    Api::<Secret>::namespaced(client.clone(), &n).create(&PostParams::default(), &broken).await.unwrap();
    install_keys(&client, &n, &std::fs::read_to_string(repo().join("keys-example/demo.secret.yaml")).unwrap()).await;
    let controller = RunningController::start(&n, &[], &[]);
    controller.ready().await;

    let garbage = json!({"apiVersion": "bitnami.com/v1alpha1", "kind": "SealedSecret", "metadata": {"name": "garbage"},
        "spec": {"encryptedData": {"a": "AgBnYXJiYWdl", "b": "!!!"}}});
    apply_sealed(&client, &n, garbage).await;
    let big: String = (0..700_000u32).map(|i| char::from(b'a' + (i % 26) as u8)).collect();
    let huge = demo_sealed(&n, "huge", json!({"stringData": {"big": big}}));
    apply_sealed(&client, &n, huge).await;
    let binary = demo_sealed(&n, "binary", json!({"data": {"bin": "AAECAwT/" }}));
    apply_sealed(&client, &n, binary).await;
    let mut template = demo_sealed(&n, "template", json!({}));
    template["spec"]["template"]["data"] = json!({"bad": "{{ .password | nosuchfunction }}"});
    apply_sealed(&client, &n, template).await;

    let garbage = synced(&client, &n, "garbage", "False").await;
    assert_eq!(garbage.status.unwrap().conditions[0].reason.as_deref(), Some("DecryptFailed"));
    let tmpl = synced(&client, &n, "template", "False").await;
    assert_eq!(tmpl.status.unwrap().conditions[0].reason.as_deref(), Some("TemplateError"));
    synced(&client, &n, "huge", "True").await;
    synced(&client, &n, "binary", "True").await;
    assert_eq!(secret(&client, &n, "huge").await.unwrap().data.unwrap()["big"].0.len(), 700_000);
    assert!(controller.log_text().contains("broken-key"), "the broken key is reported");
    let (code, _) = http(&format!("{}/healthz", controller.url), "GET", b"").unwrap();
    assert_eq!(code, 200);
}

#[tokio::test]
async fn verify_and_rotate_endpoints() {
    let client = admin_client().await;
    let (ns, controller) =
        controller_with_demo_key(&client, "endpoints", &["--rate-limit=100", "--rate-limit-burst=100"]).await;
    let good = demo_sealed(&ns.name, "s", json!({}));
    let (code, _) = http(&format!("{}/v1/verify", controller.url), "POST", good.to_string().as_bytes()).unwrap();
    assert_eq!(code, 200);
    let mut moved = good.clone();
    moved["metadata"]["name"] = json!("renamed");
    let (code, _) = http(&format!("{}/v1/verify", controller.url), "POST", moved.to_string().as_bytes()).unwrap();
    assert_eq!(code, 409);
    let (code, _) = http(&format!("{}/v1/verify", controller.url), "POST", b"not a sealed secret").unwrap();
    assert_eq!(code, 500);
    let (code, body) = http(&format!("{}/v1/rotate", controller.url), "POST", good.to_string().as_bytes()).unwrap();
    assert_eq!(code, 200);
    let rotated: Value = serde_json::from_slice(&body).unwrap();
    assert_ne!(rotated["spec"]["encryptedData"]["password"], good["spec"]["encryptedData"]["password"]);
    let (code, _) = http(&format!("{}/v1/verify", controller.url), "POST", &body).unwrap();
    assert_eq!(code, 200, "the rotated object still verifies");
}

pub(crate) fn run_sealant(args: &[&str], dir: &std::path::Path) -> std::process::Output {
    Command::new(sealant_tests::cluster::built_binary("sealant"))
        .current_dir(dir)
        .args(args)
        .env("KUBECONFIG", "/nonexistent")
        .env_remove("SEALED_SECRETS_CERT")
        .output()
        .unwrap()
}

#[tokio::test]
async fn reencrypt_a_directory_and_validate_online() {
    let client = admin_client().await;
    let (ns, controller) = controller_with_demo_key(
        &client,
        "reencrypt",
        &["--key-renew-period=0", "--rate-limit=50", "--rate-limit-burst=50"],
    )
    .await;
    let n = ns.name.as_str();
    let dir = tempfile::tempdir().unwrap();
    // Plaintext inputs and the new private key stay out of the directory being re-encrypted.
    let private = tempfile::tempdir().unwrap();
    let repo = repo();
    let demo_cert = repo.join("keys-example/demo.tls.crt");
    let seal = |name: &str, out: &str, cert: &std::path::Path| {
        let secret = private.path().join(format!("{name}.secret.json"));
        std::fs::write(&secret, json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": n}, "stringData": {"k": format!("value-{name}")}}).to_string()).unwrap();
        let done = run_sealant(
            &["seal", "--cert", cert.to_str().unwrap(), "-f", secret.to_str().unwrap(), "-w", out],
            dir.path(),
        );
        assert!(done.status.success(), "{}", String::from_utf8_lossy(&done.stderr));
    };
    seal("a", "a.yaml", &demo_cert);
    seal("b", "b.json", &demo_cert);
    // A comment and a blank line that re-encryption must keep.
    let a = std::fs::read_to_string(dir.path().join("a.yaml")).unwrap();
    std::fs::write(dir.path().join("a.yaml"), format!("# owned by team x\n\n{a}")).unwrap();

    let online = run_sealant(&["validate", "--online", "--controller-url", &controller.url, "."], dir.path());
    assert!(
        online.status.success(),
        "{}{}",
        String::from_utf8_lossy(&online.stdout),
        String::from_utf8_lossy(&online.stderr)
    );

    // A file sealed to a key this controller does not have fails online validation only.
    let foreign = repo.join("tests/fixtures/sealed-secrets/python-generated/keys/key-a.tls.crt");
    seal("c", "c.yaml", &foreign);
    let online = run_sealant(&["validate", "--online", "--controller-url", &controller.url, "c.yaml"], dir.path());
    assert_eq!(online.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&online.stdout).contains("c: the controller cannot decrypt it"));
    std::fs::remove_file(dir.path().join("c.yaml")).unwrap();

    // A new key arrives (bring-your-own, generated by our CLI) and becomes the sealing key.
    let generated = run_sealant(
        &["keys", "generate", "--bits", "2048", "--name", "byok", "-n", n, "-w", "new-key.yaml"],
        dir.path(),
    );
    assert!(generated.status.success());
    let out = kubectl(&["create", "-f", dir.path().join("new-key.yaml").to_str().unwrap()], None);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let demo_pem = std::fs::read_to_string(&demo_cert).unwrap();
    let cert_url = format!("{}/v1/cert.pem", controller.url);
    let switched = eventually(Duration::from_secs(30), || async {
        let (_, body) = http(&cert_url, "GET", b"").ok()?;
        (String::from_utf8_lossy(&body) != demo_pem).then_some(())
    })
    .await;
    assert!(switched.is_some(), "the new key did not become the sealing key");
    std::fs::rename(dir.path().join("new-key.yaml"), private.path().join("new-key.yaml")).unwrap();

    let done = run_sealant(&["reencrypt", "--controller-url", &controller.url, "."], dir.path());
    assert!(done.status.success(), "{}", String::from_utf8_lossy(&done.stderr));
    assert!(
        String::from_utf8_lossy(&done.stderr).contains("2 of 2 file(s) re-encrypted"),
        "{}",
        String::from_utf8_lossy(&done.stderr)
    );
    let a_after = std::fs::read_to_string(dir.path().join("a.yaml")).unwrap();
    assert!(a_after.starts_with("# owned by team x\n\n---\n"), "layout kept:\n{a_after}");
    assert_ne!(a_after, format!("# owned by team x\n\n{a}"));
    assert!(std::fs::read_to_string(dir.path().join("b.json")).unwrap().starts_with("{\n  \"kind\": \"SealedSecret\""));

    // The new key alone opens both; running again changes nothing.
    let new_key = private.path().join("new-key.yaml");
    for (file, value) in [("a.yaml", "value-a"), ("b.json", "value-b")] {
        let opened =
            run_sealant(&["unseal", "-o", "json", "--private-key", new_key.to_str().unwrap(), "-f", file], dir.path());
        assert!(opened.status.success(), "{file}: {}", String::from_utf8_lossy(&opened.stderr));
        let secret: Value = serde_json::from_slice(&opened.stdout).unwrap();
        let engine = base64::engine::general_purpose::STANDARD;
        assert_eq!(secret["data"]["k"], engine.encode(value));
    }
    let again = run_sealant(&["reencrypt", "--controller-url", &controller.url, "."], dir.path());
    assert!(String::from_utf8_lossy(&again.stderr).contains("0 of 2 file(s) re-encrypted"));
    assert_eq!(std::fs::read_to_string(dir.path().join("a.yaml")).unwrap(), a_after, "idempotent");

    // An item written across lines cannot be replaced in place: refused, the file untouched
    // (before, the annotation named the new key while the item stayed sealed to the old one).
    seal("w", "w.yaml", &demo_cert);
    let sealed = std::fs::read_to_string(dir.path().join("w.yaml")).unwrap();
    let wrapped: String = sealed
        .lines()
        .map(|line| match line.trim_start().strip_prefix("k: ") {
            Some(item) => {
                let indent = &line[..line.len() - line.trim_start().len()];
                let (head, tail) = item.split_at(item.len() / 2);
                format!("{indent}k: \"{head}\\\n{indent}  {tail}\"\n")
            }
            None => format!("{line}\n"),
        })
        .collect();
    assert_ne!(wrapped, sealed);
    std::fs::write(dir.path().join("w.yaml"), &wrapped).unwrap();
    let refused = run_sealant(&["reencrypt", "--controller-url", &controller.url, "w.yaml"], dir.path());
    assert_eq!(refused.status.code(), Some(1), "{}", String::from_utf8_lossy(&refused.stderr));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("not written one per line"));
    assert_eq!(std::fs::read_to_string(dir.path().join("w.yaml")).unwrap(), wrapped, "left as it was");
}

#[tokio::test]
async fn sigusr1_and_the_cutoff_time_renew_the_key() {
    let client = admin_client().await;
    install_crd(&client).await;
    let ns = TestNamespace::create(&client, "usr1").await;
    let n = ns.name.as_str();
    install_keys(&client, n, &std::fs::read_to_string(repo().join("keys-example/demo.secret.yaml")).unwrap()).await;
    let demo = std::fs::read_to_string(repo().join("keys-example/demo.tls.crt")).unwrap();
    let keys = |client: Client| async move {
        Api::<Secret>::namespaced(client, n)
            .list(&kube::api::ListParams::default().labels(KEY_LABEL))
            .await
            .unwrap()
            .items
            .len()
    };

    // A cutoff after the demo key's NotBefore: a new key at start.
    let cutoff = time::OffsetDateTime::now_utc() + time::Duration::hours(1);
    let format = time::macros::format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] [offset_hour sign:mandatory][offset_minute]"
    );
    let cutoff_flag = format!("--key-cutoff-time={}", cutoff.format(&format).unwrap());
    let controller = RunningController::start(n, &[], &["--key-renew-period=0", &cutoff_flag]);
    controller.ready().await;
    let cert_url = format!("{}/v1/cert.pem", controller.url);
    let renewed = eventually(Duration::from_secs(30), || async {
        let (_, body) = http(&cert_url, "GET", b"").ok()?;
        (String::from_utf8_lossy(&body) != demo && keys(client.clone()).await == 2).then_some(body)
    })
    .await
    .expect("the cutoff time made a new key at start");
    drop(controller);

    // SIGUSR1 to the leader: one more key, now, even with renewal disabled.
    let controller = RunningController::start(n, &[], &["--key-renew-period=0"]);
    controller.ready().await;
    assert_eq!(keys(client.clone()).await, 2, "no key at start without a cutoff");
    let leading =
        eventually(Duration::from_secs(30), || async { (controller.metric("sealant_leader")? == 1.0).then_some(()) })
            .await;
    assert!(leading.is_some());
    let pid = controller.process.child.id().to_string();
    assert!(Command::new("kill").args(["-USR1", &pid]).status().unwrap().success());
    let second_cert_url = format!("{}/v1/cert.pem", controller.url);
    let after = eventually(Duration::from_secs(30), || async {
        let (_, body) = http(&second_cert_url, "GET", b"").ok()?;
        (body != renewed && keys(client.clone()).await == 3).then_some(())
    })
    .await;
    assert!(after.is_some(), "SIGUSR1 made a new key: {}", controller.log_text());
}
