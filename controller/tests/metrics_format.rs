//! `/metrics` as dashboards and alerts read it: parsed by an independent Prometheus text parser
//! (the Python `prometheus-client`, installed by tests/setup), every upstream metric has
//! upstream's name, type and labels, bucket bounds are written as Go writes them, and the
//! standard `process_*` metrics are there.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failed step should stop the test loudly

use std::io::Write as _;
use std::process::{Command, Stdio};

use sealant_controller::serve::metrics::{ConditionLabels, ErrorLabels, HttpDurationLabels, HttpLabels, Metrics};
use serde_json::Value;

const PARSE: &str = r#"
import json, sys
from prometheus_client.parser import text_string_to_metric_families
families = {}
for family in text_string_to_metric_families(sys.stdin.read()):
    families[family.name] = {
        "type": family.type,
        "samples": [{"name": s.name, "labels": s.labels} for s in family.samples],
    }
print(json.dumps(families))
"#;

fn parsed(text: &str) -> Value {
    let mut child = Command::new("python3")
        .args(["-c", PARSE])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 runs");
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "the parser refused the text:\n{}\n{text}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn label_names(family: &Value) -> Vec<String> {
    let mut names: Vec<String> = family["samples"][0]["labels"].as_object().unwrap().keys().cloned().collect();
    names.sort();
    names
}

#[test]
fn upstream_names_types_and_labels_parse() {
    let metrics = Metrics::new();
    metrics.unseal_requests.inc();
    metrics.unseal_errors.get_or_create(&ErrorLabels { reason: "unseal".into(), namespace: "ns".into() }).inc();
    metrics
        .http_requests
        .get_or_create(&HttpLabels { path: "/v1/verify".into(), code: "200".into(), method: "post".into() })
        .inc();
    metrics
        .http_duration
        .get_or_create(&HttpDurationLabels { path: "/v1/verify".into(), method: "post".into() })
        .observe(0.2);
    metrics
        .condition_info
        .get_or_create(&ConditionLabels {
            namespace: "ns".into(),
            name: "s".into(),
            condition: "Synced".into(),
            ss_app_kubernetes_io_instance: String::new(),
        })
        .set(1);
    let text = metrics.encode();
    assert!(!text.contains("# EOF") && !text.contains("le=\"1.0\""), "{text}");
    let families = parsed(&text);

    let expect = |name: &str, kind: &str, labels: &[&str]| {
        let family = &families[name];
        assert_eq!(family["type"], kind, "{name}: {family}");
        let mut want: Vec<String> = labels.iter().map(|l| l.to_string()).collect();
        want.sort();
        let got = label_names(family);
        assert!(want.iter().all(|l| got.contains(l)), "{name}: labels {got:?}, want {want:?}");
    };
    expect("sealed_secrets_controller_build_info", "gauge", &["revision"]);
    expect("sealed_secrets_controller_unseal_requests", "counter", &[]);
    expect("sealed_secrets_controller_unseal_errors", "counter", &["reason", "namespace"]);
    expect("sealed_secrets_controller_condition_info", "gauge", &["namespace", "name", "condition"]);
    expect("sealed_secrets_controller_http_requests", "counter", &["path", "code", "method"]);
    expect("sealed_secrets_controller_http_request_duration_seconds", "histogram", &["path", "method"]);
    assert_eq!(
        families["sealed_secrets_controller_unseal_requests"]["samples"][0]["name"],
        "sealed_secrets_controller_unseal_requests_total"
    );

    // Go's DefBuckets, as Go writes them.
    let bounds: Vec<String> = families["sealed_secrets_controller_http_request_duration_seconds"]["samples"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s["labels"]["le"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(bounds, ["0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "+Inf"]);

    for name in [
        "process_cpu_seconds",
        "process_open_fds",
        "process_max_fds",
        "process_resident_memory_bytes",
        "process_start_time_seconds",
        "process_virtual_memory_bytes",
    ] {
        assert!(families.get(name).is_some(), "{name} is missing");
    }
    assert_eq!(families["process_cpu_seconds"]["type"], "counter");
}
