//! The Helm chart (deploy/chart) rendered by the real helm (tests/peers/helm): `helm lint`, the
//! names kubeseal expects, the flags each value makes, values files written for upstream's
//! chart, and values that must be refused. That the API server accepts what it renders, and that
//! it is what `deploy/` installs for the same settings, is checked in the cluster tier
//! (cluster_tests/chart.rs); install, upgrade and rollback on the node (node_tests/helm.rs).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failed step should stop the test loudly

use std::process::Command;

use sealant_tests::chart::{objects_of_kind, render, render_err, the};
use sealant_tests::cluster::{helm_binary, repo};
use serde_json::{Value, json};

/// The container's arguments in a render.
fn args(objects: &[Value]) -> Vec<String> {
    let deployment = the(objects, "Deployment");
    deployment["spec"]["template"]["spec"]["containers"][0]["args"]
        .as_array()
        .map(|a| a.iter().map(|v| v.as_str().unwrap().to_owned()).collect())
        .unwrap_or_default()
}

#[test]
fn helm_lint_passes_strict_with_defaults_and_with_every_option_on() {
    for extra in [
        &[][..],
        &[
            "--set=networkPolicy.enabled=true",
            "--set=rbac.clusterRole=false,rbac.namespacedRoles=true,allNamespaces=false",
            "--set-json=additionalNamespaces=[\"apps\",\"web\"]",
            "--set=metrics.enabled=false,pdb.create=false,startupProbe.enabled=true",
        ],
    ] {
        let out = Command::new(helm_binary())
            .args(["lint", "--strict", "--namespace", "kube-system"])
            .arg(repo().join("deploy/chart"))
            .args(extra)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "helm lint --strict {extra:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn defaults_use_the_names_kubeseal_expects_and_no_flags() {
    // Whatever the release is called: kubeseal looks for sealed-secrets-controller.
    let objects = render("kube-system", &[]);
    let names: Vec<(String, String)> = objects
        .iter()
        .map(|o| (o["kind"].as_str().unwrap().to_owned(), o["metadata"]["name"].as_str().unwrap().to_owned()))
        .collect();
    for (kind, name) in [
        ("Deployment", "sealed-secrets-controller"),
        ("Service", "sealed-secrets-controller"),
        ("Service", "sealed-secrets-controller-metrics"),
        ("ServiceAccount", "sealed-secrets-controller"),
        ("PodDisruptionBudget", "sealed-secrets-controller"),
        ("ClusterRole", "secrets-unsealer"),
        ("ClusterRoleBinding", "sealed-secrets-controller"),
        ("Role", "sealed-secrets-key-admin"),
        ("RoleBinding", "sealed-secrets-controller"),
        ("Role", "sealed-secrets-service-proxier"),
        ("RoleBinding", "sealed-secrets-service-proxier"),
    ] {
        assert!(names.contains(&(kind.to_owned(), name.to_owned())), "{kind} {name} in {names:?}");
    }
    assert_eq!(names.len(), 11, "nothing else: {names:?}");
    // Key Secrets are the controller's, never the chart's: an upgrade or uninstall cannot touch them.
    assert!(objects_of_kind(&objects, "Secret").is_empty());
    for o in &objects {
        if o["kind"] != "ClusterRole" && o["kind"] != "ClusterRoleBinding" {
            assert_eq!(o["metadata"]["namespace"], "kube-system", "{}", o["metadata"]["name"]);
        }
    }
    let service =
        objects.iter().find(|o| o["metadata"]["name"] == "sealed-secrets-controller" && o["kind"] == "Service");
    assert_eq!(service.unwrap()["spec"]["ports"][0]["name"], "http", "kubeseal proxies to the port named http");
    assert_eq!(args(&objects), Vec::<String>::new(), "the controller's defaults, as deploy/ has");
    let deployment = the(&objects, "Deployment");
    assert_eq!(deployment["spec"]["replicas"], 2);
    assert_eq!(
        deployment["spec"]["template"]["spec"]["containers"][0]["image"],
        "ghcr.io/sealant-dev/sealant-controller:0.1.0",
        "the chart's appVersion"
    );
}

#[test]
fn values_users_set_most_become_the_right_fields_and_flags() {
    let objects = render(
        "security",
        &[
            "--set=image.registry=registry.example,image.repository=platform/sealant,image.tag=1.2.3",
            "--set=replicaCount=3",
            "--set=resources.limits.memory=512Mi,resources.requests.cpu=100m",
            "--set=allNamespaces=false",
            "--set-json=additionalNamespaces=[\"apps\",\"web\"]",
            "--set-json=backupRecipients=[\"age1qyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqs3290gq\"]",
            "--set=metrics.enabled=false",
            "--set=keyrenewperiod=0",
            "--set=secretName=my-keys",
            "--set=privateKeyLabels.team=platform",
            "--set-json=extraArgs=[\"--template-backoff=2m\"]",
        ],
    );
    let deployment = the(&objects, "Deployment");
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(container["image"], "registry.example/platform/sealant:1.2.3");
    assert_eq!(deployment["spec"]["replicas"], 3);
    assert_eq!(container["resources"]["limits"]["memory"], "512Mi");
    assert_eq!(container["resources"]["requests"]["cpu"], "100m");
    assert_eq!(container["resources"]["requests"]["memory"], "64Mi", "the rest of the defaults stay");
    assert_eq!(
        args(&objects),
        [
            "--key-renew-period=0",
            "--key-prefix=my-keys",
            "--all-namespaces=false",
            "--additional-namespaces=apps,web",
            "--privatekey-labels=team=platform",
            "--backup-age-recipients=age1qyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqs3290gq",
            "--listen-metrics-addr=127.0.0.1:8081",
            "--template-backoff=2m",
        ]
    );
    // Metrics off: no Service, no port; the controller keeps them on the Pod's loopback.
    assert!(!objects.iter().any(|o| o["metadata"]["name"] == "sealed-secrets-controller-metrics"));
    assert_eq!(container["ports"].as_array().unwrap().len(), 1);
    // Everything in the release's namespace, the ServiceAccount bound there.
    let binding = the(&objects, "ClusterRoleBinding");
    assert_eq!(
        binding["subjects"][0],
        json!({"kind": "ServiceAccount", "name": "sealed-secrets-controller", "namespace": "security"})
    );

    // Another name: its own Lease, so two releases in one namespace elect their own leaders.
    let objects = render("kube-system", &["--set=fullnameOverride=sealant"]);
    assert_eq!(args(&objects), ["--leader-elect-lease-name=sealant"]);
    assert_eq!(the(&objects, "Deployment")["metadata"]["name"], "sealant");

    // A digest wins over the tag.
    let digest = "sha256:5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03";
    let objects = render("kube-system", &[&format!("--set=image.digest={digest}")]);
    let image = &the(&objects, "Deployment")["spec"]["template"]["spec"]["containers"][0]["image"];
    assert_eq!(image.as_str().unwrap(), format!("ghcr.io/sealant-dev/sealant-controller@{digest}"));
}

#[test]
fn namespaced_roles_grant_only_the_watched_namespaces() {
    let objects = render(
        "sealing",
        &[
            "--set=rbac.clusterRole=false,rbac.namespacedRoles=true,allNamespaces=false",
            "--set-json=additionalNamespaces=[\"apps\",\"web\"]",
        ],
    );
    assert!(
        objects_of_kind(&objects, "ClusterRole").is_empty()
            && objects_of_kind(&objects, "ClusterRoleBinding").is_empty()
    );
    let unsealer: Vec<&str> = objects_of_kind(&objects, "Role")
        .iter()
        .filter(|r| r["metadata"]["name"] == "secrets-unsealer")
        .map(|r| r["metadata"]["namespace"].as_str().unwrap())
        .collect();
    assert_eq!(unsealer, ["sealing", "apps", "web"]);
    // The API server's EndpointSlice stays readable by name, from a Role in default.
    let endpoints =
        objects_of_kind(&objects, "Role").into_iter().find(|r| r["metadata"]["namespace"] == "default").unwrap();
    assert_eq!(endpoints["rules"][0]["resourceNames"], json!(["kubernetes"]));
}

#[test]
fn a_values_file_written_for_upstreams_chart_carries_over() {
    // The values most often set with upstream's chart (its README and issues), as users write
    // them: each means the same here. Values upstream has and this chart does not take
    // (ingress, PodSecurityPolicy) are ignored, as Helm ignores unknown values.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("upstream-values.yaml");
    std::fs::write(
        &file,
        "fullnameOverride: sealed-secrets-controller\n\
         image:\n  registry: quay.io\n  repository: mirror/sealant\n  tag: v1\n  pullSecrets: [regcred]\n\
         keyrenewperiod: \"720h\"\n\
         keyttl: 87600h\n\
         rateLimit: 4\n\
         rateLimitBurst: 8\n\
         updateStatus: true\n\
         skipRecreate: true\n\
         logLevel: WARN\n\
         logFormat: json\n\
         privateKeyAnnotations:\n  backup.velero.io/exclude: \"true\"\n\
         podLabels: {team: platform}\n\
         nodeSelector: {kubernetes.io/os: linux}\n\
         tolerations: [{key: dedicated, operator: Exists}]\n\
         priorityClassName: system-cluster-critical\n\
         service:\n  annotations: {a: b}\n\
         metrics:\n  service:\n    annotations: {prometheus.io/scrape: \"true\"}\n\
         pdb:\n  create: true\n  minAvailable: 1\n\
         ingress:\n  enabled: false\n\
         rbac:\n  pspEnabled: false\n",
    )
    .unwrap();
    let objects = render("kube-system", &["--values", file.to_str().unwrap()]);
    assert_eq!(
        args(&objects),
        [
            "--skip-recreate=true",
            "--key-renew-period=720h",
            "--key-ttl=87600h",
            "--rate-limit=4",
            "--rate-limit-burst=8",
            "--privatekey-annotations=backup.velero.io/exclude=true",
            "--log-level=WARN",
            "--log-format=json",
        ]
    );
    let pod = &the(&objects, "Deployment")["spec"]["template"];
    assert_eq!(pod["spec"]["containers"][0]["image"], "quay.io/mirror/sealant:v1");
    assert_eq!(pod["spec"]["imagePullSecrets"], json!([{"name": "regcred"}]));
    assert_eq!(pod["metadata"]["labels"]["team"], "platform");
    assert_eq!(pod["spec"]["nodeSelector"], json!({"kubernetes.io/os": "linux"}));
    assert_eq!(pod["spec"]["priorityClassName"], "system-cluster-critical");
    let metrics = objects.iter().find(|o| o["metadata"]["name"] == "sealed-secrets-controller-metrics").unwrap();
    assert_eq!(metrics["metadata"]["annotations"]["prometheus.io/scrape"], "true");
}

#[test]
fn host_users_is_taken_as_upstreams_chart_takes_it() {
    // Upstream's chart since v0.39.0 (#1978): `hostUsers` on the Pod only when it is a boolean.
    let host_users = |values: &[&str]| {
        let objects = render("kube-system", values);
        the(&objects, "Deployment")["spec"]["template"]["spec"].get("hostUsers").cloned()
    };
    assert_eq!(host_users(&[]), None);
    assert_eq!(host_users(&["--set=hostUsers=false"]), Some(json!(false)));
    assert_eq!(host_users(&["--set=hostUsers=true"]), Some(json!(true)));
    let err = render_err("kube-system", &["--set-string=hostUsers=no"]);
    assert!(err.contains("/hostUsers"), "{err}");
}

#[test]
fn values_that_cannot_work_are_refused_with_the_reason() {
    let err = render_err("kube-system", &["--set-json=privateKeyLabels={\"tier\":1}"]);
    assert!(err.contains("privateKeyLabels: the value of tier must be a string"), "{err}");
    // values.schema.json: types, enums and typos in the values this chart defines.
    for (values, says) in [
        ("--set=replicaCount=two", "/replicaCount"),
        ("--set=image.pullPolicy=Sometimes", "/image/pullPolicy"),
        ("--set=image.digest=sha256:short", "/image/digest"),
        ("--set-json=backupRecipients=[\"ssh-rsa AAAA\"]", "/backupRecipients/0"),
        ("--set=metrics.prometheusRule.overrides.SealantNoLeader.forr=1m", "forr"),
        ("--set=service.type=External", "/service/type"),
    ] {
        let err = render_err("kube-system", &[values]);
        assert!(err.contains("don't meet the specifications of the schema") && err.contains(says), "{values}: {err}");
    }
}

#[test]
fn upstreams_own_values_file_renders_our_objects_with_its_image() {
    // Upstream's chart's values.yaml as it is (v0.40.0's chart, copied by tests/peers/build):
    // every value it sets is one this chart takes or ignores.
    let upstream = sealant_tests::cluster::upstream_chart().join("values.yaml");
    let objects = render("kube-system", &["--values", upstream.to_str().unwrap()]);
    let defaults = render("kube-system", &[]);
    let kinds = |o: &[Value]| o.iter().map(|o| format!("{} {}", o["kind"], o["metadata"]["name"])).collect::<Vec<_>>();
    // Its `pdb.create: false` leaves the PodDisruptionBudget out; everything else is there.
    let without_pdb: Vec<Value> = defaults.into_iter().filter(|o| o["kind"] != "PodDisruptionBudget").collect();
    assert_eq!(kinds(&objects), kinds(&without_pdb));
    assert_eq!(
        the(&objects, "Deployment")["spec"]["template"]["spec"]["containers"][0]["image"],
        "docker.io/bitnami/sealed-secrets-controller:0.39.1"
    );
    assert_eq!(args(&objects), Vec::<String>::new());
}

#[test]
fn monitoring_options_render_our_rules_with_overrides_a_service_monitor_and_the_dashboard() {
    let objects = render(
        "kube-system",
        &[
            "--set=metrics.serviceMonitor.enabled=true,metrics.prometheusRule.enabled=true,metrics.dashboards.create=true",
            "--set=metrics.dashboards.namespace=grafana,metrics.serviceMonitor.interval=15s",
        ],
    );
    // The rules as deploy/monitoring has them, untouched without overrides.
    let rule = the(&objects, "PrometheusRule");
    assert_eq!(rule["spec"]["groups"], serde_json::Value::Array(sealant_tests::monitoring::groups()));
    let monitor = the(&objects, "ServiceMonitor");
    assert_eq!(monitor["spec"]["endpoints"][0]["port"], "metrics");
    assert_eq!(monitor["spec"]["endpoints"][0]["honorLabels"], true);
    assert_eq!(monitor["spec"]["endpoints"][0]["interval"], "15s");
    assert_eq!(monitor["spec"]["selector"]["matchLabels"], json!({"name": "sealed-secrets-controller"}));
    let dashboard = the(&objects, "ConfigMap");
    assert_eq!(dashboard["metadata"]["namespace"], "grafana");
    assert_eq!(dashboard["metadata"]["labels"]["grafana_dashboard"], "1");
    let json: Value = serde_json::from_str(dashboard["data"]["sealant.json"].as_str().unwrap()).unwrap();
    let file: Value =
        serde_json::from_str(&sealant_tests::monitoring::read("deploy/monitoring/dashboard.json")).unwrap();
    assert_eq!(json, file);

    // Overrides per alert: a threshold, a severity, one alert off; a name that is no alert fails.
    let objects = render(
        "kube-system",
        &[
            "--set=metrics.prometheusRule.enabled=true",
            "--set=metrics.prometheusRule.overrides.SealantSealedSecretNotSynced.for=30m",
            "--set=metrics.prometheusRule.overrides.SealantNoLeader.severity=page",
            "--set=metrics.prometheusRule.overrides.SealantHTTPRateLimited.enabled=false",
        ],
    );
    let alerts: Vec<Value> = the(&objects, "PrometheusRule")["spec"]["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_array().unwrap().clone())
        .filter(|r| r["alert"].is_string())
        .collect();
    let alert = |name: &str| alerts.iter().find(|a| a["alert"] == name).cloned();
    assert_eq!(alert("SealantSealedSecretNotSynced").unwrap()["for"], "30m");
    assert_eq!(alert("SealantNoLeader").unwrap()["labels"]["severity"], "page");
    assert!(alert("SealantHTTPRateLimited").is_none());
    assert_eq!(alerts.len(), sealant_tests::monitoring::alerts().len() - 1);
    let err = render_err(
        "kube-system",
        &["--set=metrics.prometheusRule.enabled=true,metrics.prometheusRule.overrides.SealantTypo.for=1m"],
    );
    assert!(err.contains("there is no alert SealantTypo"), "{err}");
}
