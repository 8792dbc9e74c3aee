//! The Helm chart against the real API server: what `helm template` renders with the values
//! users set most is accepted (`--dry-run=server`), and for the same settings it is what
//! `deploy/` installs through kustomize, field by field after the API server's defaulting; the
//! real `helm install` then runs our controller under the chart's own RBAC (cluster-wide and
//! namespaced Roles), and `helm uninstall` leaves keys and Secrets in place.

use std::collections::BTreeMap;

use sealant_tests::chart::{RELEASE, documents, helm_command, render};
use sealant_tests::cluster::{RunningController, prometheus_operator_crds};

use super::controller::{apply_sealed, demo_sealed, install_keys, synced};
use super::upstream_chart::service_account_kubeconfig;
use super::*;

/// The labels Helm's chart adds and kustomize's install has no reason to.
const HELM_LABELS: [&str; 4] =
    ["app.kubernetes.io/instance", "app.kubernetes.io/managed-by", "app.kubernetes.io/version", "helm.sh/chart"];

/// A backup recipient (age1…) for the settings below.
const RECIPIENT: &str = "age1qyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqs3290gq";

/// `objects` as the API server would store them (`kubectl apply --server-side --dry-run=server`), in
/// `namespace`, without what the server makes up (uid, times, cluster IPs, status) and without
/// Helm's own labels; keyed by kind and name. Conflicts are forced: other tests apply deploy/'s
/// cluster-wide objects with kubectl, and a dry run changes nothing. The CRD is left out (both install the same file,
/// checked by sealant-crds' drift test), and so is any object kubectl refuses: that fails.
fn as_stored(objects: &[Value]) -> BTreeMap<(String, String, String), Value> {
    let list = json!({"apiVersion": "v1", "kind": "List", "items": objects.iter()
        .filter(|o| o["kind"] != "CustomResourceDefinition").collect::<Vec<_>>()});
    let out = kubectl(
        &[
            "apply",
            "--server-side",
            "--force-conflicts",
            "--field-manager=sealant-tests",
            "--dry-run=server",
            "-o",
            "json",
            "-f",
            "-",
        ],
        Some(&list.to_string()),
    );
    assert!(out.status.success(), "the API server refuses: {}", String::from_utf8_lossy(&out.stderr));
    let stored: Value = serde_json::from_slice(&out.stdout).unwrap();
    let items = match stored["kind"].as_str() {
        Some("List") => stored["items"].as_array().unwrap().clone(),
        _ => vec![stored],
    };
    items
        .into_iter()
        .map(|mut o| {
            let meta = o["metadata"].as_object_mut().unwrap();
            for field in ["uid", "creationTimestamp", "resourceVersion", "generation", "managedFields"] {
                meta.remove(field);
            }
            if let Some(labels) = meta.get_mut("labels").and_then(Value::as_object_mut) {
                labels.retain(|k, _| !HELM_LABELS.contains(&k.as_str()));
            }
            if let Some(annotations) = meta.get_mut("annotations").and_then(Value::as_object_mut) {
                annotations.remove("kubectl.kubernetes.io/last-applied-configuration");
                if annotations.is_empty() {
                    meta.remove("annotations");
                }
            }
            let object = o.as_object_mut().unwrap();
            object.remove("status");
            if let Some(spec) = object.get_mut("spec").and_then(Value::as_object_mut) {
                spec.remove("clusterIP");
                spec.remove("clusterIPs");
            }
            let key = (
                o["kind"].as_str().unwrap().to_owned(),
                o["metadata"]["namespace"].as_str().unwrap_or_default().to_owned(),
                o["metadata"]["name"].as_str().unwrap().to_owned(),
            );
            (key, o)
        })
        .collect()
}

/// `kubectl kustomize` of an overlay of deploy/ in a temporary directory: into `namespace`,
/// with `extra` lines (images, replicas, patches, components) added to its kustomization.
fn kustomize(namespace: &str, extra: &str) -> Vec<Value> {
    let dir = tempfile::tempdir().unwrap();
    let deploy = repo().canonicalize().unwrap().join("deploy");
    // kustomize wants paths relative to the overlay.
    let up: std::path::PathBuf = std::iter::repeat_n("..", dir.path().components().count() - 1).collect();
    let base = up.join(deploy.strip_prefix("/").unwrap());
    let text = format!(
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nnamespace: {namespace}\nresources:\n  - {}\n{}",
        base.display(),
        extra.replace("DEPLOY", &base.display().to_string())
    );
    std::fs::write(dir.path().join("kustomization.yaml"), text).unwrap();
    let out = kubectl(&["kustomize", dir.path().to_str().unwrap()], None);
    assert!(out.status.success(), "kubectl kustomize: {}", String::from_utf8_lossy(&out.stderr));
    documents(&String::from_utf8(out.stdout).unwrap())
}

/// The first difference between two sets of stored objects, or None.
fn difference(
    chart: &BTreeMap<(String, String, String), Value>,
    deploy: &BTreeMap<(String, String, String), Value>,
) -> Option<String> {
    let (a, b): (BTreeSet<_>, BTreeSet<_>) = (chart.keys().collect(), deploy.keys().collect());
    if a != b {
        return Some(format!("only the chart: {:?}; only deploy/: {:?}", a.difference(&b), b.difference(&a)));
    }
    chart.iter().find_map(|(k, v)| first_difference(v, &deploy[k], String::new()).map(|d| format!("{k:?} at {d}")))
}

/// Where two JSON values first differ: the path and both sides.
fn first_difference(chart: &Value, deploy: &Value, path: String) -> Option<String> {
    match (chart, deploy) {
        (Value::Object(a), Value::Object(b)) => {
            let keys: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
            keys.into_iter().find_map(|k| {
                first_difference(
                    a.get(k).unwrap_or(&Value::Null),
                    b.get(k).unwrap_or(&Value::Null),
                    format!("{path}/{k}"),
                )
            })
        }
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => {
            a.iter().zip(b).enumerate().find_map(|(i, (x, y))| first_difference(x, y, format!("{path}/{i}")))
        }
        _ => (chart != deploy).then(|| format!("{path}: the chart has {chart}, deploy/ has {deploy}")),
    }
}

#[tokio::test]
async fn the_chart_renders_what_deploy_installs_for_the_same_settings() {
    let client = admin_client().await;
    install_crd(&client).await;
    let ns = TestNamespace::create(&client, "chart-same").await;
    let n = ns.name.as_str();
    // Each case: what it shows, the chart's values, the same settings in a kustomization.
    let recipients = format!("--set-json=backupRecipients=[\"{RECIPIENT}\"]");
    let cases: [(&str, Vec<&str>, String); 4] = [
        ("the defaults", vec![], String::new()),
        (
            "image, replicas and resources",
            vec![
                "--set=image.registry=registry.example,image.repository=platform/sealant,image.tag=1.2.3",
                "--set=replicaCount=3,resources.limits.memory=512Mi,resources.requests.cpu=100m",
            ],
            "images:\n  - name: ghcr.io/sealant-dev/sealant-controller\n    newName: registry.example/platform/sealant\n    newTag: \"1.2.3\"\n\
             replicas:\n  - name: sealed-secrets-controller\n    count: 3\n\
             patches:\n  - target: {kind: Deployment, name: sealed-secrets-controller}\n    patch: |-\n\
             \x20     - {op: replace, path: /spec/template/spec/containers/0/resources/limits/memory, value: 512Mi}\n\
             \x20     - {op: replace, path: /spec/template/spec/containers/0/resources/requests/cpu, value: 100m}\n"
                .to_owned(),
        ),
        (
            "the network policy",
            vec!["--set=networkPolicy.enabled=true"],
            "components:\n  - DEPLOY/network-policy\n".to_owned(),
        ),
        (
            "watched namespaces, key renewal and backup recipients, as flags",
            vec![
                "--set=allNamespaces=false,keyrenewperiod=168h",
                "--set-json=additionalNamespaces=[\"apps\",\"web\"]",
                &recipients,
            ],
            format!(
                "patches:\n  - target: {{kind: Deployment, name: sealed-secrets-controller}}\n    patch: |-\n\
                 \x20     - op: add\n        path: /spec/template/spec/containers/0/args\n        value: [--key-renew-period=168h, --all-namespaces=false, \"--additional-namespaces=apps,web\", --backup-age-recipients={RECIPIENT}]\n"
            ),
        ),
    ];
    for (what, values, kustomization) in cases {
        let chart = as_stored(&render(n, &values));
        let deploy = as_stored(&kustomize(n, &kustomization));
        if let Some(diff) = difference(&chart, &deploy) {
            panic!("{what}: the chart and deploy/ differ: {diff}");
        }
    }
}

#[tokio::test]
async fn every_option_renders_objects_the_api_server_accepts() {
    let client = admin_client().await;
    install_crd(&client).await;
    let ns = TestNamespace::create(&client, "chart-options").await;
    // The Prometheus Operator's own CRDs, so that the API server checks the ServiceMonitor and
    // the PrometheusRule against their real schemas.
    for crd in prometheus_operator_crds() {
        let out = kubectl(&["apply", "--server-side", "-f", crd.to_str().unwrap()], None);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    let out = kubectl(
        &[
            "wait",
            "--for=condition=Established",
            "crd/servicemonitors.monitoring.coreos.com",
            "crd/prometheusrules.monitoring.coreos.com",
            "--timeout=60s",
        ],
        None,
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let upstream_values = sealant_tests::cluster::upstream_chart().join("values.yaml");
    // deploy/monitoring's component, as kustomize renders it.
    let component = as_stored(&kustomize(&ns.name, "components:\n  - DEPLOY/monitoring\n"));
    assert!(component.keys().any(|(kind, _, _)| kind == "PrometheusRule"));
    assert!(component.keys().any(|(kind, _, _)| kind == "ServiceMonitor"));
    for values in [
        &[
            "--set=metrics.serviceMonitor.enabled=true,metrics.prometheusRule.enabled=true,metrics.dashboards.create=true",
            "--set=metrics.prometheusRule.overrides.SealantSealedSecretNotSynced.for=30m",
        ][..],
        &["--set=metrics.enabled=false,pdb.create=false,networkPolicy.enabled=true,startupProbe.enabled=true"],
        &[
            "--set=rbac.clusterRole=false,rbac.namespacedRoles=true,allNamespaces=false",
            "--set-json=additionalNamespaces=[\"default\"]",
        ],
        &[
            "--set=fullnameOverride=sealant,service.type=NodePort,metrics.service.type=NodePort,pdb.maxUnavailable=1",
            "--set=podSecurityContext.enabled=false,containerSecurityContext.enabled=false,preStopSleepSeconds=0",
            "--set=commonLabels.team=platform,commonAnnotations.owner=platform,serviceAccount.annotations.a=b",
            "--set-json=tolerations=[{\"key\":\"dedicated\",\"operator\":\"Exists\"}]",
            "--set-json=extraEnv=[{\"name\":\"RUST_BACKTRACE\",\"value\":\"1\"}]",
            "--set-json=topologySpreadConstraints=[{\"maxSkew\":1,\"topologyKey\":\"kubernetes.io/hostname\",\"whenUnsatisfiable\":\"ScheduleAnyway\",\"labelSelector\":{\"matchLabels\":{\"name\":\"sealant\"}}}]",
        ],
        &["--set=createController=false"],
        &["--values", upstream_values.to_str().unwrap()],
    ] {
        let stored = as_stored(&render(&ns.name, values));
        assert!(!stored.is_empty(), "{values:?} rendered nothing");
    }
}

/// `helm` against the test control plane.
fn helm(args: &[&str]) -> std::process::Output {
    let plane = control_plane();
    let out = helm_command(&plane.kubeconfig, &plane.dir.join("helm")).args(args).output().unwrap();
    assert!(out.status.success(), "helm {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    out
}

#[tokio::test]
async fn helm_install_gives_the_controller_all_the_rights_it_needs_and_uninstall_keeps_the_keys() {
    let client = admin_client().await;
    install_crd(&client).await;
    let home = TestNamespace::create(&client, "chart-home").await;
    let apps = TestNamespace::create(&client, "chart-apps").await;
    let (h, a) = (home.name.as_str(), apps.name.as_str());
    // Namespaced Roles only: the controller may touch nothing outside its own namespace and the
    // one it watches. No Pod runs here (no node): the controller runs beside the test, with the
    // chart's ServiceAccount's token. The release and the names it gives objects outside its
    // namespace (a Role in `default`) are this test's own: other tests render the defaults.
    let release = format!("{RELEASE}-{}", &h[h.len() - 6..]);
    let watched = format!("--set-json=additionalNamespaces=[\"{a}\"]");
    let name = format!("--set=fullnameOverride={release}");
    let values = [
        "--set=rbac.clusterRole=false,rbac.namespacedRoles=true,allNamespaces=false",
        &watched,
        &name,
        "--set=replicaCount=0",
    ];
    let chart = repo().join("deploy/chart");
    let mut install = vec!["install", &release, chart.to_str().unwrap(), "--namespace", h];
    install.extend(values);
    helm(&install);
    // The chart made no key Secret; the demo key stands for the one the controller would make.
    install_keys(&client, h, &std::fs::read_to_string(repo().join("keys-example/demo.secret.yaml")).unwrap()).await;
    let kubeconfig = service_account_kubeconfig(&client, h, &release).await;
    // The chart's arguments for this name.
    let lease = format!("--leader-elect-lease-name={release}");
    let controller = RunningController::start_as(&kubeconfig, h, &[a], &[&lease]);
    controller.ready().await;
    apply_sealed(&client, a, demo_sealed(a, "demo", json!({}))).await;
    synced(&client, a, "demo", "True").await;
    let secret = Api::<Secret>::namespaced(client.clone(), a).get("demo").await.unwrap();
    assert_eq!(secret.data.unwrap()["password"].0, b"hunter2");
    // Leader election, events, the API server's addresses: nothing the controller does is
    // forbidden under the chart's Roles.
    let log = controller.log_text();
    let forbidden: Vec<&str> = log.lines().filter(|l| l.contains("forbidden")).collect();
    assert!(forbidden.is_empty(), "the chart's RBAC forbade:\n{}", forbidden.join("\n"));
    assert_eq!(controller.metric("sealant_leader_election_forbidden"), Some(0.0));
    assert_eq!(controller.metric("sealant_leader"), Some(1.0));

    // helm uninstall removes the chart's objects, not the keys nor the Secrets made with them.
    drop(controller);
    helm(&["uninstall", &release, "--namespace", h, "--wait"]);
    let keys = Api::<Secret>::namespaced(client.clone(), h)
        .list(&kube::api::ListParams::default().labels("sealedsecrets.bitnami.com/sealed-secrets-key"))
        .await
        .unwrap();
    assert!(!keys.items.is_empty(), "the key Secrets stay after helm uninstall");
    assert!(Api::<Secret>::namespaced(client.clone(), a).get("demo").await.is_ok(), "the unsealed Secret stays");
    let gone = kubectl(
        &["get", "deployment,role,rolebinding", "-n", h, "-l", "app.kubernetes.io/managed-by=Helm", "-o", "name"],
        None,
    );
    assert_eq!(String::from_utf8_lossy(&gone.stdout).trim(), "", "the chart's objects are gone");
}
