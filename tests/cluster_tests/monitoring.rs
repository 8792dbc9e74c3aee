//! The alerting rules and the dashboard against a real Prometheus (Debian's) scraping the real
//! controller: a SealedSecret that cannot be decrypted fires the not-synced and unseal-error
//! alerts and fixing it resolves them; a leader that stops (SIGSTOP, its Lease still valid)
//! fires the no-leader alert; no controller at all fires the controller-down alert. Every
//! metric the rules and the dashboard name is one the controller exports, and every dashboard
//! query runs. Figures (fault to firing) are printed for the notes.
//!
//! The rules are deploy/monitoring/rules.yaml with its thresholds shortened, as a user would set
//! them (the `for:` durations to 2 s, the unseal-error window to 20 s): what is tested is that
//! each expression sees the fault in what the controller really exports.

use std::collections::BTreeMap;
use std::time::Instant;

use sealant_tests::cluster::{ProcessGuard, RunningController, free_port, http};
use sealant_tests::monitoring::{dashboard_queries, groups, read};

use super::controller::{apply_sealed, demo_sealed, install_keys};
use super::*;

/// A Prometheus server on a loopback port, scraping `targets` (host:port) every second as job
/// `sealant`, with the rules loaded and evaluated every second.
struct Prometheus {
    _process: ProcessGuard,
    url: String,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    fn start(targets: &[&str]) -> Prometheus {
        let dir = tempfile::tempdir().unwrap();
        let rules = read("deploy/monitoring/rules.yaml");
        let mut short = String::new();
        for line in rules.lines() {
            let line = match line.trim_start().strip_prefix("for: ") {
                Some(_) => format!("{}for: 2s", &line[..line.len() - line.trim_start().len()]),
                None => line.replace(
                    "sealed_secrets_controller_unseal_errors_total[10m]",
                    "sealed_secrets_controller_unseal_errors_total[20s]",
                ),
            };
            short.push_str(&line);
            short.push('\n');
        }
        std::fs::write(dir.path().join("rules.yaml"), short).unwrap();
        let targets: Vec<String> = targets.iter().map(|t| format!("'{t}'")).collect();
        std::fs::write(
            dir.path().join("prometheus.yml"),
            format!(
                "global: {{scrape_interval: 1s, scrape_timeout: 1s, evaluation_interval: 1s}}\n\
                 rule_files: [rules.yaml]\n\
                 scrape_configs:\n  - job_name: sealant\n    honor_labels: true\n    static_configs: [{{targets: [{}]}}]\n",
                targets.join(", ")
            ),
        )
        .unwrap();
        let port = free_port();
        let mut command = Command::new("prometheus");
        command
            .arg(format!("--config.file={}", dir.path().join("prometheus.yml").display()))
            .arg(format!("--storage.tsdb.path={}", dir.path().join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("prometheus.log")).unwrap());
        let process = ProcessGuard::spawn(command);
        let url = format!("http://127.0.0.1:{port}");
        let ready = (0..300).any(|_| {
            std::thread::sleep(Duration::from_millis(100));
            http(&format!("{url}/-/ready"), "GET", b"").is_ok_and(|(code, _)| code == 200)
        });
        assert!(
            ready,
            "Prometheus did not start: {}",
            std::fs::read_to_string(dir.path().join("prometheus.log")).unwrap_or_default()
        );
        Prometheus { _process: process, url, _dir: dir }
    }

    fn get(&self, path: &str) -> Value {
        let (code, body) = http(&format!("{}{path}", self.url), "GET", b"").unwrap();
        let json: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        assert_eq!(code, 200, "GET {path}: {json}");
        json
    }

    /// The result of an instant query (Prometheus must accept it).
    fn query(&self, promql: &str) -> Vec<Value> {
        let answer = self.get(&format!("/api/v1/query?query={}", encode(promql)));
        assert_eq!(answer["status"], "success", "{promql}: {answer}");
        answer["data"]["result"].as_array().cloned().unwrap_or_default()
    }

    /// The firing alerts of `name`, by their labels.
    fn firing(&self, name: &str) -> Vec<BTreeMap<String, String>> {
        let alerts = self.get("/api/v1/alerts");
        alerts["data"]["alerts"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|a| a["labels"]["alertname"] == name && a["state"] == "firing")
            .map(|a| serde_json::from_value(a["labels"].clone()).unwrap())
            .collect()
    }

    /// Wait until `name` fires with these labels among its own; the time it took from `since`.
    fn wait_firing(&self, name: &str, labels: &[(&str, &str)], since: Instant, timeout: Duration) -> Duration {
        let deadline = Instant::now() + timeout;
        loop {
            let hit =
                self.firing(name).iter().any(|l| labels.iter().all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v)));
            if hit {
                return since.elapsed();
            }
            assert!(
                Instant::now() < deadline,
                "{name} {labels:?} did not fire in {timeout:?}; alerts: {}",
                self.get("/api/v1/alerts")
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    fn wait_resolved(&self, name: &str, since: Instant, timeout: Duration) -> Duration {
        let deadline = Instant::now() + timeout;
        while !self.firing(name).is_empty() {
            assert!(Instant::now() < deadline, "{name} still fires after {timeout:?}: {}", self.get("/api/v1/alerts"));
            std::thread::sleep(Duration::from_millis(250));
        }
        since.elapsed()
    }

    /// Wait until every target has been scraped.
    fn wait_scraped(&self, targets: usize) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.query("up == 1").len() < targets {
            assert!(Instant::now() < deadline, "targets: {}", self.get("/api/v1/targets"));
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

/// Percent-encoding of a query parameter.
fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// host:port of a controller's metrics endpoint.
fn target(controller: &RunningController) -> String {
    controller.metrics_url.trim_start_matches("http://").trim_end_matches("/metrics").to_owned()
}

/// The metric names a PromQL expression uses: identifiers with our families' prefixes, outside
/// quoted strings (label names and functions have none of them).
fn metric_names(promql: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for (i, outside) in promql.split('"').enumerate() {
        if i % 2 == 1 {
            continue; // a quoted label value
        }
        for word in outside.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':')) {
            if ["sealed_secrets_", "sealant_", "sealant:", "process_"].iter().any(|p| word.starts_with(p)) {
                names.insert(word.to_owned());
            }
        }
    }
    names
}

#[tokio::test]
async fn an_undecryptable_sealed_secret_fires_and_fixing_it_resolves_and_every_name_and_query_is_real() {
    let client = admin_client().await;
    install_crd(&client).await;
    let ns = TestNamespace::create(&client, "alerts").await;
    let n = ns.name.as_str();
    install_keys(&client, n, &std::fs::read_to_string(repo().join("keys-example/demo.secret.yaml")).unwrap()).await;
    let controller = RunningController::start(n, &[], &[]);
    controller.ready().await;
    apply_sealed(&client, n, demo_sealed(n, "fine", json!({}))).await;
    let prometheus = Prometheus::start(&[&target(&controller)]);
    prometheus.wait_scraped(1);
    let (code, _) = http(&format!("{}/v1/cert.pem", controller.url), "GET", b"").unwrap();
    assert_eq!(code, 200, "kubeseal's certificate fetch");

    // A SealedSecret no key opens: not synced, and unseal errors in its namespace.
    let mut broken = demo_sealed(n, "broken", json!({}));
    broken["spec"]["encryptedData"]["password"] = json!("AgBrokenData==");
    let applied = Instant::now();
    apply_sealed(&client, n, broken).await;
    let not_synced = prometheus.wait_firing(
        "SealantSealedSecretNotSynced",
        &[("namespace", n), ("name", "broken")],
        applied,
        Duration::from_secs(60),
    );
    let errors = prometheus.wait_firing(
        "SealantUnsealErrors",
        &[("namespace", n), ("reason", "unseal")],
        applied,
        Duration::from_secs(60),
    );
    assert!(
        prometheus.firing("SealantSealedSecretNotSynced").iter().all(|l| l["name"] == "broken"),
        "only the broken one"
    );

    // Every metric the rules and the dashboard name is one the real controller exports (or a
    // recording rule of ours); histogram series by their family. A family shows once it has a
    // series: after an unseal error (above) and a request to the HTTP API (kubeseal's fetch).
    let (_, body) = http(&controller.metrics_url, "GET", b"").unwrap();
    let exposition = String::from_utf8(body).unwrap();
    let exported: BTreeSet<&str> = exposition
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE ").and_then(|r| r.split_whitespace().next()))
        .collect();
    let rules: Vec<Value> = groups().iter().flat_map(|g| g["rules"].as_array().unwrap().clone()).collect();
    let records: BTreeSet<&str> = rules.iter().filter_map(|r| r["record"].as_str()).collect();
    let mut used = BTreeSet::new();
    for rule in &rules {
        used.extend(metric_names(rule["expr"].as_str().unwrap()));
    }
    for (_, query) in dashboard_queries() {
        used.extend(metric_names(&query));
    }
    for name in &used {
        let family = name.strip_suffix("_bucket").unwrap_or(name);
        assert!(
            exported.contains(name.as_str()) || exported.contains(family) || records.contains(name.as_str()),
            "{name} is used by the rules or the dashboard but the controller does not export it"
        );
    }
    assert!(used.len() >= 15, "the name scan found the names: {used:?}");

    // Every dashboard query runs; those about what exists here have data.
    let mut empty = Vec::new();
    for (title, query) in dashboard_queries() {
        if prometheus.query(&query).is_empty() {
            empty.push(title);
        }
    }
    for must in [
        "SealedSecrets synced",
        "SealedSecrets not synced",
        "Failing SealedSecrets",
        "Keys",
        "Leader by replica",
        "Replicas up",
        "Memory",
        "CPU",
        "Requests by path and code",
        "Latency",
    ] {
        assert!(!empty.iter().any(|t| t == must), "the dashboard's {must:?} shows nothing");
    }

    // Fixed: sealed again with the right key, the alerts resolve.
    let good = demo_sealed(n, "broken", json!({}));
    let api = Api::<SealedSecret>::namespaced(client.clone(), n);
    let fix = json!({"spec": {"encryptedData": good["spec"]["encryptedData"]}});
    let fixed = Instant::now();
    api.patch("broken", &PatchParams::default(), &Patch::Merge(&fix)).await.unwrap();
    let resolved = prometheus.wait_resolved("SealantSealedSecretNotSynced", fixed, Duration::from_secs(60));
    let errors_resolved = prometheus.wait_resolved("SealantUnsealErrors", fixed, Duration::from_secs(90));
    for quiet in [
        "SealantControllerDown",
        "SealantNoLeader",
        "SealantKeySecretRejected",
        "SealantKeyBackupStale",
        "SealantHTTPErrors",
    ] {
        assert!(prometheus.firing(quiet).is_empty(), "{quiet} fires: {}", prometheus.get("/api/v1/alerts"));
    }
    eprintln!(
        "alert figures: undecryptable SealedSecret applied -> SealantSealedSecretNotSynced firing {:.1} s, SealantUnsealErrors {:.1} s (for: 2 s, scrape and evaluation every 1 s); fixed -> resolved {:.1} s and {:.1} s (error window 20 s); dashboard: {} queries, {} empty here ({:?})",
        not_synced.as_secs_f64(),
        errors.as_secs_f64(),
        resolved.as_secs_f64(),
        errors_resolved.as_secs_f64(),
        dashboard_queries().len(),
        empty.len(),
        empty
    );
}

#[tokio::test]
async fn a_stopped_leader_fires_no_leader_and_no_controller_fires_controller_down() {
    let client = admin_client().await;
    install_crd(&client).await;
    let ns = TestNamespace::create(&client, "alerts-leader").await;
    let n = ns.name.as_str();
    install_keys(&client, n, &std::fs::read_to_string(repo().join("keys-example/demo.secret.yaml")).unwrap()).await;
    // A Lease that outlives the stop: the follower cannot take over while it is valid.
    let lease = ["--leader-elect-lease-duration=5m"];
    let mut first = RunningController::start(n, &[], &lease);
    first.ready().await;
    eventually(Duration::from_secs(30), || async { (first.metric("sealant_leader") == Some(1.0)).then_some(()) })
        .await
        .expect("the first replica leads");
    let mut second = RunningController::start(n, &[], &lease);
    second.ready().await;
    let prometheus = Prometheus::start(&[&target(&first), &target(&second)]);
    prometheus.wait_scraped(2);
    assert!(prometheus.firing("SealantNoLeader").is_empty());

    let pid = first.process.child.id().to_string();
    let stopped = Instant::now();
    let status = Command::new("kill").args(["-STOP", &pid]).status().unwrap();
    assert!(status.success());
    let no_leader = prometheus.wait_firing("SealantNoLeader", &[("job", "sealant")], stopped, Duration::from_secs(60));
    let replica = prometheus.wait_firing(
        "SealantControllerReplicaDown",
        &[("instance", &target(&first))],
        stopped,
        Duration::from_secs(60),
    );
    let resumed = Instant::now();
    Command::new("kill").args(["-CONT", &pid]).status().unwrap();
    let back = prometheus.wait_resolved("SealantNoLeader", resumed, Duration::from_secs(60));

    // Both gone: nothing is scraped from any controller.
    first.process.terminate();
    second.process.terminate();
    let gone = Instant::now();
    let down = prometheus.wait_firing("SealantControllerDown", &[], gone, Duration::from_secs(60));
    eprintln!(
        "alert figures: leader SIGSTOPped -> SealantNoLeader firing {:.1} s, SealantControllerReplicaDown {:.1} s; resumed -> resolved {:.1} s; every controller stopped -> SealantControllerDown {:.1} s",
        no_leader.as_secs_f64(),
        replica.as_secs_f64(),
        back.as_secs_f64(),
        down.as_secs_f64()
    );
}

#[tokio::test]
async fn a_watch_the_controller_may_not_make_is_logged_and_counted() {
    let client = admin_client().await;
    install_crd(&client).await;
    let ns = TestNamespace::create(&client, "alerts-blind").await;
    let n = ns.name.as_str();
    // Its keys and its Lease, but not SealedSecrets: RBAC as a broken chart change would leave it.
    let rbac = json!({"apiVersion": "v1", "kind": "List", "items": [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "blind", "namespace": n}},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": "blind", "namespace": n},
         "rules": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "list", "watch", "create", "update"]},
                   {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["get", "create", "update"]}]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": {"name": "blind", "namespace": n},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "blind"},
         "subjects": [{"kind": "ServiceAccount", "name": "blind", "namespace": n}]},
    ]});
    let out = kubectl(&["apply", "-f", "-"], Some(&rbac.to_string()));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    install_keys(&client, n, &std::fs::read_to_string(repo().join("keys-example/demo.secret.yaml")).unwrap()).await;
    let kubeconfig = super::upstream_chart::service_account_kubeconfig(&client, n, "blind").await;
    let controller = RunningController::start_as(&kubeconfig, n, &[], &[]);
    let counted = eventually(Duration::from_secs(60), || async {
        controller.metric("sealant_controller_errors_total{kind=\"watch\"}").filter(|v| *v > 0.0)
    })
    .await;
    assert!(counted.is_some(), "no watch error counted; log:\n{}", controller.log_text());
    let log = controller.log_text();
    assert!(log.contains("cannot list or watch") && log.contains("forbidden"), "{log}");
}
