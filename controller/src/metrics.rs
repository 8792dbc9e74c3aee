//! Prometheus metrics with upstream's names, plus Sealant's own.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    pub reason: String,
    pub namespace: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ConditionLabels {
    pub namespace: String,
    pub name: String,
    pub condition: String,
    pub ss_app_kubernetes_io_instance: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    pub path: String,
    pub code: String,
    pub method: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpDurationLabels {
    pub path: String,
    pub method: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BuildLabels {
    pub revision: String,
}

/// Every metric the controller exports.
#[derive(Debug)]
pub struct Metrics {
    pub registry: Registry,
    pub unseal_requests: Counter,
    pub unseal_errors: Family<ErrorLabels, Counter>,
    pub condition_info: Family<ConditionLabels, Gauge>,
    pub http_requests: Family<HttpLabels, Counter>,
    pub http_duration: Family<HttpDurationLabels, Histogram>,
    pub keys: Gauge,
    pub newest_key_created: Gauge<f64, AtomicU64>,
    pub decryptions: Counter,
    pub reconcile_duration: Histogram,
    pub is_leader: Gauge,
    /// 1 when the Lease may not be read or written, so this replica runs as the single writer.
    pub election_forbidden: Gauge,
    pub last_backup: Gauge<f64, AtomicU64>,
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::default();
        let build_info = Family::<BuildLabels, Gauge>::default();
        build_info.get_or_create(&BuildLabels { revision: env!("CARGO_PKG_VERSION").into() }).set(0);
        registry.register(
            "sealed_secrets_controller_build_info",
            "Build information (always 0, as upstream)",
            build_info,
        );
        let unseal_requests = Counter::default();
        registry.register(
            "sealed_secrets_controller_unseal_requests",
            "Total number of sealed secret unseal requests",
            unseal_requests.clone(),
        );
        let unseal_errors = Family::<ErrorLabels, Counter>::default();
        registry.register(
            "sealed_secrets_controller_unseal_errors",
            "Total number of sealed secret unseal errors by reason",
            unseal_errors.clone(),
        );
        let condition_info = Family::<ConditionLabels, Gauge>::default();
        registry.register(
            "sealed_secrets_controller_condition_info",
            "Current SealedSecret condition status: -1 False, 0 Unknown, 1 True",
            condition_info.clone(),
        );
        let http_requests = Family::<HttpLabels, Counter>::default();
        registry.register(
            "sealed_secrets_controller_http_requests",
            "Total number of HTTP requests by path, code and method",
            http_requests.clone(),
        );
        let http_duration = Family::<HttpDurationLabels, Histogram>::new_with_constructor(|| {
            Histogram::new([0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0])
        });
        registry.register(
            "sealed_secrets_controller_http_request_duration_seconds",
            "HTTP request latencies in seconds",
            http_duration.clone(),
        );
        let keys = Gauge::default();
        registry.register("sealant_keys", "Number of loaded private keys", keys.clone());
        let newest_key_created = Gauge::<f64, AtomicU64>::default();
        registry.register(
            "sealant_newest_key_created_timestamp_seconds",
            "Ordering time of the sealing key, Unix seconds",
            newest_key_created.clone(),
        );
        let decryptions = Counter::default();
        registry.register("sealant_decryptions", "Items decrypted while reconciling", decryptions.clone());
        let reconcile_duration = Histogram::new(exponential_buckets(0.001, 2.0, 14));
        registry.register(
            "sealant_reconcile_duration_seconds",
            "Time to reconcile one SealedSecret",
            reconcile_duration.clone(),
        );
        let is_leader = Gauge::default();
        registry.register("sealant_leader", "1 while this replica is the leader", is_leader.clone());
        let election_forbidden = Gauge::default();
        registry.register(
            "sealant_leader_election_forbidden",
            "1 when RBAC forbids the leader Lease, so this replica writes as the only one",
            election_forbidden.clone(),
        );
        let last_backup = Gauge::<f64, AtomicU64>::default();
        registry.register(
            "sealant_last_key_backup_timestamp_seconds",
            "When the encrypted key backup Secret was last written, Unix seconds (0: never)",
            last_backup.clone(),
        );
        Metrics {
            last_backup,
            registry,
            unseal_requests,
            unseal_errors,
            condition_info,
            http_requests,
            http_duration,
            keys,
            newest_key_created,
            decryptions,
            reconcile_duration,
            is_leader,
            election_forbidden,
        }
    }

    /// The text exposition format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
