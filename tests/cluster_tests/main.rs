//! Cluster tests against the real control plane (tests/cluster/up): the CRD, the install
//! manifests and their RBAC, and the API server behaviour Sealant depends on.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failed step should stop the test loudly

use std::collections::BTreeSet;
use std::process::{Command, Stdio};
use std::time::Duration;

use k8s_openapi::api::authorization::v1::SubjectAccessReview;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use sealant_crds::SealedSecret;
use sealant_tests::cluster::{TestNamespace, admin_client, client_from, control_plane, eventually, repo};
use serde_json::{Value, json};

mod chart;
mod controller;
mod environments;
mod faults;
mod hostile;
mod kubeseal_path;
mod monitoring;
mod odd_objects;
mod runbooks;
mod upstream_chart;
mod upstream_kubeseal;

const CRD_NAME: &str = "sealedsecrets.bitnami.com";

fn kubectl(args: &[&str], stdin: Option<&str>) -> std::process::Output {
    let mut command = sealant_tests::cluster::kubectl_command();
    command.args(args).env("KUBECONFIG", &control_plane().kubeconfig);
    sealant_tests::cluster::output_with_stdin(command, stdin.unwrap_or_default())
}

/// Install the checked-in CRD (server-side apply) and wait until it is Established.
async fn install_crd(client: &Client) {
    let yaml = std::fs::read_to_string(repo().join(sealant_crds::crd::CRD_FILE)).unwrap();
    let doc = sealant_core::yaml::parse_documents(&yaml).unwrap().remove(0);
    let crd: CustomResourceDefinition = serde_json::from_value(doc).unwrap();
    let api = Api::<CustomResourceDefinition>::all(client.clone());
    api.patch(CRD_NAME, &PatchParams::apply("sealant-tests").force(), &Patch::Apply(&crd))
        .await
        .expect("the CRD applies");
    let established = eventually(Duration::from_secs(30), || async {
        let crd = api.get(CRD_NAME).await.ok()?;
        let conditions = crd.status?.conditions?;
        conditions.iter().any(|c| c.type_ == "Established" && c.status == "True").then_some(())
    })
    .await;
    assert!(established.is_some(), "the CRD did not become Established");
    // Established can come a moment before the API server serves the new resource.
    let served = eventually(Duration::from_secs(30), || async {
        Api::<SealedSecret>::namespaced(client.clone(), "default").list(&Default::default()).await.ok().map(|_| ())
    })
    .await;
    assert!(served.is_some(), "the API server does not serve SealedSecrets");
}

fn example_sealed_secret(namespace: &str) -> SealedSecret {
    let yaml = std::fs::read_to_string(repo().join("keys-example/example.sealedsecret.yaml")).unwrap();
    let mut ss: SealedSecret =
        serde_json::from_value(sealant_core::yaml::parse_documents(&yaml).unwrap().remove(0)).unwrap();
    ss.metadata.namespace = Some(namespace.to_owned());
    ss
}

#[tokio::test]
async fn crd_installs_and_is_established() {
    let client = admin_client().await;
    install_crd(&client).await;
    let crd = Api::<CustomResourceDefinition>::all(client).get(CRD_NAME).await.unwrap();
    let version = &crd.spec.versions[0];
    assert_eq!(version.name, "v1alpha1");
    assert!(version.subresources.as_ref().and_then(|s| s.status.as_ref()).is_some(), "status subresource");
    let columns: Vec<_> = version.additional_printer_columns.iter().flatten().map(|c| c.name.as_str()).collect();
    assert_eq!(columns, ["Status", "Synced", "Age"]);
}

#[tokio::test]
async fn sealed_secret_is_stored_and_read_back_unchanged() {
    let client = admin_client().await;
    install_crd(&client).await;
    let ns = TestNamespace::create(&client, "stored").await;
    let api = Api::<SealedSecret>::namespaced(client, &ns.name);
    let original = example_sealed_secret(&ns.name);
    api.create(&PostParams::default(), &original).await.expect("the example is accepted");
    let stored = api.get(original.metadata.name.as_deref().unwrap()).await.unwrap();
    assert_eq!(stored.spec, original.spec);
    assert_eq!(stored.metadata.annotations, original.metadata.annotations);
    assert_eq!(stored.metadata.generation, Some(1));
}

#[tokio::test]
async fn schema_violations_are_rejected_by_the_api_server() {
    let client = admin_client().await;
    install_crd(&client).await;
    let ns = TestNamespace::create(&client, "schema").await;
    let api: Api<kube::api::DynamicObject> =
        Api::namespaced_with(client, &ns.name, &kube::api::ApiResource::erase::<SealedSecret>(&()));
    let cases = [
        ("no spec", json!({})),
        ("no encryptedData", json!({"spec": {"template": {}}})),
        ("encryptedData is a list", json!({"spec": {"encryptedData": ["AgA="]}})),
        ("immutable is a string", json!({"spec": {"encryptedData": {}, "template": {"immutable": "yes"}}})),
        ("template data value is a number", json!({"spec": {"encryptedData": {}, "template": {"data": {"k": 1}}}})),
        (
            "status conditions without type",
            json!({"spec": {"encryptedData": {}}, "status": {"conditions": [{"status": "True"}]}}),
        ),
    ];
    for (i, (why, body)) in cases.into_iter().enumerate() {
        let mut object = body;
        object["apiVersion"] = json!("bitnami.com/v1alpha1");
        object["kind"] = json!("SealedSecret");
        object["metadata"] = json!({"name": format!("bad-{i}")});
        let object: kube::api::DynamicObject = serde_json::from_value(object).unwrap();
        let result = api.create(&PostParams::default(), &object).await;
        match result {
            Err(kube::Error::Api(status)) => assert_eq!(status.code, 422, "{why}: {status:?}"),
            Ok(_) if why.starts_with("status") => {
                // The status subresource ignores status on create; nothing invalid was stored.
            }
            other => panic!("{why}: expected 422 Invalid, got {other:?}"),
        }
    }
}

/// deploy/ as a user installs it, checked by the API server without changing anything.
#[tokio::test]
async fn deploy_applies_with_a_server_side_dry_run() {
    let deploy = repo().join("deploy");
    let built = sealant_tests::cluster::kubectl_command().arg("kustomize").arg(&deploy).output().unwrap();
    assert!(built.status.success(), "kustomize: {}", String::from_utf8_lossy(&built.stderr));
    let manifests = String::from_utf8(built.stdout).unwrap();
    let out = kubectl(&["apply", "--server-side", "--dry-run=server", "-f", "-"], Some(&manifests));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    for kind in ["customresourcedefinition", "deployment.apps", "service/", "poddisruptionbudget", "clusterrole."] {
        assert!(stdout.contains(kind), "{kind} was not applied:\n{stdout}");
    }
}

/// The optional NetworkPolicy component, used as README says: accepted by the API server, and
/// selecting exactly the controller's Pods on the ports they serve.
#[tokio::test]
async fn the_network_policy_component_applies_and_selects_the_controller() {
    // kustomize takes only relative paths: an overlay two levels under the repository.
    std::fs::create_dir_all(repo().join("target")).unwrap();
    let overlay = tempfile::tempdir_in(repo().join("target")).unwrap();
    std::fs::write(
        overlay.path().join("kustomization.yaml"),
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources: [../../deploy]\ncomponents: [../../deploy/network-policy]\n",
    )
    .unwrap();
    let built = sealant_tests::cluster::kubectl_command().arg("kustomize").arg(overlay.path()).output().unwrap();
    assert!(built.status.success(), "kustomize: {}", String::from_utf8_lossy(&built.stderr));
    let manifests = String::from_utf8(built.stdout).unwrap();
    let out = kubectl(&["apply", "--server-side", "--dry-run=server", "-f", "-"], Some(&manifests));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("networkpolicy.networking.k8s.io/sealed-secrets-controller"), "{stdout}");

    let docs = sealant_core::yaml::parse_documents(&manifests).unwrap();
    let of_kind = |kind: &str| docs.iter().find(|d| d["kind"] == kind).unwrap().clone();
    let (policy, deployment) = (of_kind("NetworkPolicy"), of_kind("Deployment"));
    let pod_labels = &deployment["spec"]["template"]["metadata"]["labels"];
    for (key, value) in policy["spec"]["podSelector"]["matchLabels"].as_object().unwrap() {
        assert_eq!(&pod_labels[key], value, "the policy selects the controller's Pods");
    }
    let ports: Vec<i64> = deployment["spec"]["template"]["spec"]["containers"][0]["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["containerPort"].as_i64().unwrap())
        .collect();
    let admitted: Vec<i64> = policy["spec"]["ingress"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|rule| rule["ports"].as_array().unwrap().iter().map(|p| p["port"].as_i64().unwrap()))
        .collect();
    assert_eq!(admitted, ports, "the API port and the metrics port, nothing else");
}

/// Apply deploy/'s ServiceAccount and RBAC for real (they are cluster objects, shared by tests).
fn install_rbac() {
    for file in ["serviceaccount.yaml", "rbac.yaml"] {
        let path = repo().join("deploy").join(file);
        let out = kubectl(&["apply", "--server-side", "--force-conflicts", "-f", path.to_str().unwrap()], None);
        assert!(out.status.success(), "{file}: {}", String::from_utf8_lossy(&out.stderr));
    }
}

async fn allowed(client: &Client, user: &str, groups: &[&str], attrs: Value) -> bool {
    let review: SubjectAccessReview = serde_json::from_value(json!({
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SubjectAccessReview",
        "spec": { "user": user, "groups": groups, "resourceAttributes": attrs },
    }))
    .unwrap();
    let api = Api::<SubjectAccessReview>::all(client.clone());
    let answer = api.create(&PostParams::default(), &review).await.expect("SubjectAccessReview");
    answer.status.is_some_and(|s| s.allowed)
}

const VERBS: [&str; 8] = ["get", "list", "watch", "create", "update", "patch", "delete", "deletecollection"];

#[tokio::test]
async fn controller_service_account_may_do_exactly_what_deploy_lists() {
    let client = admin_client().await;
    install_rbac();
    let sa = "system:serviceaccount:kube-system:sealed-secrets-controller";
    let groups = ["system:serviceaccounts", "system:serviceaccounts:kube-system", "system:authenticated"];
    // (group, resource) → verbs allowed in an application namespace and in kube-system.
    let resources: [(&str, &str, &[&str], &[&str]); 13] = [
        ("bitnami.com", "sealedsecrets", &["get", "list", "watch"], &["get", "list", "watch"]),
        ("bitnami.com", "sealedsecrets/status", &["update", "patch"], &["update", "patch"]),
        (
            "",
            "secrets",
            &["get", "list", "watch", "create", "update", "patch"],
            &["get", "list", "watch", "create", "update", "patch"],
        ),
        ("", "events", &["create", "patch"], &["create", "patch"]),
        ("events.k8s.io", "events", &["create", "patch"], &["create", "patch"]),
        ("coordination.k8s.io", "leases", &[], &["get", "create", "update"]),
        ("", "configmaps", &[], &[]),
        ("", "pods", &[], &[]),
        ("", "services", &[], &[]),
        ("", "namespaces", &[], &[]),
        ("apps", "deployments", &[], &[]),
        ("rbac.authorization.k8s.io", "roles", &[], &[]),
        ("rbac.authorization.k8s.io", "rolebindings", &[], &[]),
    ];
    let mut wrong = Vec::new();
    for (group, resource, in_app, in_system) in resources {
        let (resource, subresource) = resource.split_once('/').map_or((resource, ""), |(r, s)| (r, s));
        for (namespace, expected) in [("some-app", in_app), ("kube-system", in_system)] {
            for verb in VERBS {
                let attrs = json!({"namespace": namespace, "verb": verb, "group": group, "resource": resource, "subresource": subresource});
                let got = allowed(&client, sa, &groups, attrs).await;
                if got != expected.contains(&verb) {
                    wrong.push(format!("{verb} {group}/{resource}/{subresource} in {namespace}: allowed={got}"));
                }
            }
        }
    }
    for (verb, resource) in [
        ("escalate", "clusterroles"),
        ("bind", "clusterroles"),
        ("create", "clusterroles"),
        ("create", "clusterrolebindings"),
    ] {
        let attrs = json!({"verb": verb, "group": "rbac.authorization.k8s.io", "resource": resource});
        if allowed(&client, sa, &groups, attrs).await {
            wrong.push(format!("{verb} {resource}: allowed"));
        }
    }
    // The API server's EndpointSlice, by name only.
    for (name, verb, expected) in [("kubernetes", "get", true), ("other", "get", false), ("", "list", false)] {
        let attrs = json!({"namespace": "default", "verb": verb, "group": "discovery.k8s.io", "resource": "endpointslices", "name": name});
        if allowed(&client, sa, &groups, attrs).await != expected {
            wrong.push(format!("{verb} endpointslices {name:?} in default: allowed={}", !expected));
        }
    }
    let attrs = json!({"verb": "impersonate", "resource": "users"});
    if allowed(&client, sa, &groups, attrs).await {
        wrong.push("impersonate users: allowed".into());
    }
    assert!(wrong.is_empty(), "permissions differ from deploy/rbac.yaml's list:\n{}", wrong.join("\n"));
}

#[tokio::test]
async fn any_user_may_reach_only_the_controller_through_the_service_proxy() {
    let client = admin_client().await;
    install_rbac();
    let groups = ["developers", "system:authenticated"];
    let proxy = |name: &str, verb: &str, namespace: &str| json!({"namespace": namespace, "verb": verb, "resource": "services", "subresource": "proxy", "name": name});
    for name in ["http:sealed-secrets-controller:http", "http:sealed-secrets-controller:", "sealed-secrets-controller"]
    {
        for verb in ["get", "create"] {
            assert!(allowed(&client, "user", &groups, proxy(name, verb, "kube-system")).await, "{verb} {name}");
        }
    }
    assert!(!allowed(&client, "user", &groups, proxy("http:other:http", "get", "kube-system")).await);
    assert!(!allowed(&client, "user", &groups, proxy("http:sealed-secrets-controller:http", "get", "default")).await);
    assert!(
        !allowed(&client, "user", &groups, proxy("http:sealed-secrets-controller:http", "delete", "kube-system")).await
    );

    // The ordinary user's own token works, and may not read key Secrets.
    let user = client_from(&control_plane().user_kubeconfig).await;
    let secrets = Api::<Secret>::namespaced(user, "kube-system").list(&Default::default()).await;
    assert!(matches!(secrets, Err(kube::Error::Api(ref s)) if s.code == 403), "{secrets:?}");
}

#[tokio::test]
async fn deleting_the_owner_garbage_collects_its_secret() {
    let client = admin_client().await;
    install_crd(&client).await;
    let ns = TestNamespace::create(&client, "gc").await;
    let sealed_api = Api::<SealedSecret>::namespaced(client.clone(), &ns.name);
    let owner = sealed_api.create(&PostParams::default(), &example_sealed_secret(&ns.name)).await.unwrap();
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {
            "name": owner.metadata.name,
            "ownerReferences": [{
                "apiVersion": "bitnami.com/v1alpha1", "kind": "SealedSecret",
                "name": owner.metadata.name, "uid": owner.metadata.uid, "controller": true,
            }],
        },
        "stringData": {"k": "v"},
    }))
    .unwrap();
    let secrets = Api::<Secret>::namespaced(client, &ns.name);
    secrets.create(&PostParams::default(), &secret).await.unwrap();
    sealed_api.delete(owner.metadata.name.as_deref().unwrap(), &DeleteParams::default()).await.unwrap();
    // The garbage collector notices a new resource type on its 30 s discovery resync.
    let gone = eventually(Duration::from_secs(180), || async {
        secrets.get_opt("demo-credentials").await.ok().and_then(|s| s.is_none().then_some(()))
    })
    .await;
    assert!(gone.is_some(), "the owned Secret was not garbage-collected");

    let remaining: BTreeSet<_> =
        secrets.list(&Default::default()).await.unwrap().items.into_iter().filter_map(|s| s.metadata.name).collect();
    assert!(!remaining.contains("demo-credentials"));
}

/// The controller works with exactly deploy/'s RBAC: run it with its ServiceAccount's token.
#[tokio::test]
async fn the_controller_needs_no_more_than_deploy_grants() {
    let client = admin_client().await;
    install_crd(&client).await;
    install_rbac();
    let ns = TestNamespace::create(&client, "rbac-run").await;
    let system = Api::<Secret>::namespaced(client.clone(), "kube-system");
    let token_secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": "sealed-secrets-controller-test-token",
                     "annotations": {"kubernetes.io/service-account.name": "sealed-secrets-controller"}},
        "type": "kubernetes.io/service-account-token",
    }))
    .unwrap();
    let _ = system.create(&PostParams::default(), &token_secret).await;
    let token = eventually(Duration::from_secs(30), || async {
        let s = system.get("sealed-secrets-controller-test-token").await.ok()?;
        let token = s.data?.get("token")?.0.clone();
        String::from_utf8(token).ok()
    })
    .await
    .expect("the token controller filled in the ServiceAccount token");
    let admin = std::fs::read_to_string(&control_plane().kubeconfig).unwrap();
    let admin_token = control_plane().env.get("ADMIN_TOKEN").cloned().unwrap();
    let kubeconfig = control_plane().dir.join(format!("{}-sa.kubeconfig", ns.name));
    std::fs::write(&kubeconfig, admin.replace(&admin_token, &token)).unwrap();

    let controller = sealant_tests::cluster::RunningController::start_as(
        &kubeconfig,
        "kube-system",
        &[&ns.name],
        &["--key-renew-period=0"],
    );
    controller.ready().await;
    let (_, cert) = sealant_tests::cluster::http(&format!("{}/v1/cert.pem", controller.url), "GET", b"").unwrap();
    let cert = sealant_core::Certificate::from_pem(&String::from_utf8_lossy(&cert)).unwrap();
    let secret: Secret =
        serde_json::from_value(json!({"metadata": {"name": "app", "namespace": ns.name}, "stringData": {"k": "v"}}))
            .unwrap();
    let sealed = sealant_crds::seal_secret(&mut rand::rng(), &cert, &secret, &Default::default()).unwrap();
    Api::<SealedSecret>::namespaced(client.clone(), &ns.name).create(&PostParams::default(), &sealed).await.unwrap();
    let synced = eventually(Duration::from_secs(60), || async {
        let ss = Api::<SealedSecret>::namespaced(client.clone(), &ns.name).get("app").await.ok()?;
        (ss.status?.conditions.first()?.status == "True").then_some(())
    })
    .await;
    assert!(synced.is_some(), "not synced with the ServiceAccount's rights:\n{}", controller.log_text());
    let log = controller.log_text();
    assert!(!log.contains("forbidden"), "the controller hit RBAC limits:\n{log}");
}
