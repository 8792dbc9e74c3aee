//! The alerting rules and the dashboard of deploy/monitoring, read as the tests need them.

use serde_json::Value;

use crate::chart::documents;
use crate::cluster::repo;

pub fn read(path: &str) -> String {
    std::fs::read_to_string(repo().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The rules file's groups.
pub fn groups() -> Vec<Value> {
    documents(&read("deploy/monitoring/rules.yaml")).remove(0)["groups"].as_array().expect("groups").clone()
}

/// The alerting rules of every group.
pub fn alerts() -> Vec<Value> {
    groups()
        .iter()
        .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
        .filter(|r| r["alert"].is_string())
        .collect()
}

/// Every query of the dashboard with its panel's title, Grafana's variables given values
/// Prometheus accepts (`$job`: every job, `$__rate_interval`: 1m).
pub fn dashboard_queries() -> Vec<(String, String)> {
    let dashboard: Value = serde_json::from_str(&read("deploy/monitoring/dashboard.json")).expect("dashboard JSON");
    let mut queries = Vec::new();
    for panel in dashboard["panels"].as_array().into_iter().flatten() {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr =
                target["expr"].as_str().unwrap_or_default().replace("$__rate_interval", "1m").replace("$job", ".*");
            queries.push((panel["title"].as_str().unwrap_or_default().to_owned(), expr));
        }
    }
    queries
}
