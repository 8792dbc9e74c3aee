//! The alerting rules and the dashboard (deploy/monitoring) checked by the real tools: promtool
//! (Debian's Prometheus) checks the rules and runs their unit tests, every alert is tested firing
//! and not firing and says what to do, the copies in the PrometheusRule and the Helm chart are
//! the same rules, the dashboard satisfies Grafana's published schema (@grafana/schema's types,
//! through the TypeScript compiler) and each of its queries is PromQL promtool accepts. The
//! real Prometheus scraping the real controller is in cluster_tests/monitoring.rs.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failed step should stop the test loudly

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use sealant_tests::chart::documents;
use sealant_tests::cluster::{grafana_schema, repo};
use sealant_tests::monitoring::{alerts, dashboard_queries, groups, read};
use serde_json::Value;

fn promtool(args: &[&str], dir: &Path) -> String {
    let out =
        Command::new("promtool").args(args).current_dir(dir).output().expect("promtool (tests/setup installs it)");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "promtool {args:?}:\n{text}");
    text
}

#[test]
fn promtool_checks_the_rules_and_passes_their_unit_tests() {
    let dir = repo().join("deploy/monitoring");
    let checked = promtool(&["check", "rules", "rules.yaml"], &dir);
    assert!(checked.contains("SUCCESS"), "{checked}");
    let tested = promtool(&["test", "rules", "rules.test.yaml"], &dir);
    assert!(tested.contains("SUCCESS"), "{tested}");
}

#[test]
fn every_alert_is_tested_firing_and_quiet_and_says_what_to_do() {
    let tests = documents(&read("deploy/monitoring/rules.test.yaml")).remove(0);
    let cases: Vec<&Value> =
        tests["tests"].as_array().unwrap().iter().flat_map(|t| t["alert_rule_test"].as_array().unwrap()).collect();
    let readme = read("README.md");
    for alert in alerts() {
        let name = alert["alert"].as_str().unwrap();
        let firing = cases.iter().any(|c| c["alertname"] == name && !c["exp_alerts"].as_array().unwrap().is_empty());
        let quiet = cases.iter().any(|c| c["alertname"] == name && c["exp_alerts"].as_array().unwrap().is_empty());
        assert!(firing && quiet, "{name}: a unit test where it fires ({firing}) and one where it must not ({quiet})");
        let severity = alert["labels"]["severity"].as_str().unwrap_or_default();
        assert!(["critical", "warning", "info"].contains(&severity), "{name}: severity {severity:?}");
        for field in ["summary", "description", "runbook_url"] {
            assert!(alert["annotations"][field].as_str().is_some_and(|s| !s.is_empty()), "{name}: no {field}");
        }
        // The runbook is a README section of the alert's name.
        let anchor = alert["annotations"]["runbook_url"].as_str().unwrap().rsplit_once('#').unwrap().1.to_owned();
        assert_eq!(anchor, name.to_lowercase(), "{name}: the runbook anchor");
        assert!(readme.contains(&format!("#### {name}\n")), "{name}: README has no section for it");
    }
}

#[test]
fn the_prometheusrule_and_the_charts_copy_hold_the_same_rules() {
    let rule = documents(&read("deploy/monitoring/prometheusrule.yaml")).remove(0);
    assert_eq!(
        rule["spec"]["groups"],
        Value::Array(groups()),
        "prometheusrule.yaml: copy rules.yaml's groups into spec"
    );
    for (copy, original) in [
        ("deploy/chart/files/rules.yaml", "deploy/monitoring/rules.yaml"),
        ("deploy/chart/files/dashboard.json", "deploy/monitoring/dashboard.json"),
    ] {
        assert!(read(copy) == read(original), "{copy} differs from {original}: copy it");
    }
}

#[test]
fn every_dashboard_query_is_promql_that_promtool_accepts() {
    // promtool parses recording rules' expressions: one per query.
    let rules: Vec<Value> = dashboard_queries()
        .iter()
        .enumerate()
        .map(|(i, (_, expr))| serde_json::json!({"record": format!("dashboard:query_{i}"), "expr": expr}))
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let file = serde_json::json!({"groups": [{"name": "dashboard", "rules": rules}]});
    std::fs::write(dir.path().join("queries.json"), file.to_string()).unwrap();
    promtool(&["check", "rules", "queries.json"], dir.path());
}

#[test]
fn the_dashboard_satisfies_grafanas_published_schema() {
    let dashboard = read("deploy/monitoring/dashboard.json");
    let parsed: Value = serde_json::from_str(&dashboard).unwrap();
    // A datasource variable and no hard-coded data source or dashboard links.
    let variables: Vec<&str> =
        parsed["templating"]["list"].as_array().unwrap().iter().map(|v| v["type"].as_str().unwrap()).collect();
    assert!(variables.contains(&"datasource"), "{variables:?}");
    let mut uids = BTreeSet::new();
    collect_datasource_uids(&parsed, &mut uids);
    assert_eq!(uids, BTreeSet::from(["${datasource}".to_owned()]), "every query uses the datasource variable");

    // The TypeScript compiler checks the dashboard as an object literal against @grafana/schema's
    // `Dashboard` (excess properties are errors), with enums as the JSON values they stand for.
    let schema = grafana_schema();
    let check = schema.join(format!("check-{}.ts", std::process::id()));
    let source = format!(
        "import type {{ Dashboard }} from '@grafana/schema';\n\
         type Json<T> = T extends string ? `${{T}}` : T extends number ? T | number : T extends boolean ? boolean\n  \
         : T extends Array<infer U> ? Array<Json<U>> : T extends object ? {{ [K in keyof T]: Json<T[K]> }} : T;\n\
         export const dashboard = {} satisfies Json<Dashboard>;\n",
        dashboard.trim_end()
    );
    std::fs::write(&check, source).unwrap();
    let out = Command::new("node")
        .arg(schema.join("node_modules/typescript/bin/tsc"))
        .args(["--noEmit", "--strict", "--module", "nodenext", "--moduleResolution", "nodenext", "--target", "es2022"])
        .arg(&check)
        .current_dir(&schema)
        .output()
        .expect("node");
    std::fs::remove_file(&check).unwrap();
    assert!(
        out.status.success(),
        "dashboard.json does not satisfy @grafana/schema's Dashboard:\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

fn collect_datasource_uids(value: &Value, uids: &mut BTreeSet<String>) {
    match value {
        Value::Object(map) => {
            if let Some(uid) = map.get("datasource").and_then(|d| d["uid"].as_str()) {
                uids.insert(uid.to_owned());
            }
            map.values().for_each(|v| collect_datasource_uids(v, uids));
        }
        Value::Array(items) => items.iter().for_each(|v| collect_datasource_uids(v, uids)),
        _ => {}
    }
}
