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
pub struct KindLabels {
    pub kind: String,
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
    pub rejected_keys: Gauge,
    pub newest_key_created: Gauge<f64, AtomicU64>,
    pub decryptions: Counter,
    pub deferred_reconciles: Counter,
    pub reconcile_duration: Histogram,
    pub is_leader: Gauge,
    /// 1 when the Lease may not be read or written, so this replica runs as the single writer.
    pub election_forbidden: Gauge,
    pub key_renewal_failures: Counter,
    pub last_backup: Gauge<f64, AtomicU64>,
    /// `--key-renew-period` in seconds (0: renewal off), for the alert on a key not renewed.
    pub renewal_period: Gauge<f64, AtomicU64>,
    /// How many age recipients the keys are backed up to (0: no backup), for the stale-backup alert.
    pub backup_recipients: Gauge,
    /// What kube-runtime's controller reported besides reconciles, by kind (watch, reconcile,
    /// not_found, runner).
    pub controller_errors: Family<KindLabels, Counter>,
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
        let rejected_keys = Gauge::default();
        registry.register(
            "sealant_rejected_key_secrets",
            "Key Secrets that are not loaded (broken, or made by a SealedSecret); the log says why",
            rejected_keys.clone(),
        );
        let newest_key_created = Gauge::<f64, AtomicU64>::default();
        registry.register(
            "sealant_newest_key_created_timestamp_seconds",
            "Ordering time of the sealing key, Unix seconds",
            newest_key_created.clone(),
        );
        let decryptions = Counter::default();
        registry.register("sealant_decryptions", "Items decrypted while reconciling", decryptions.clone());
        let deferred_reconciles = Counter::default();
        registry.register(
            "sealant_deferred_reconciles",
            "Reconciles put off because their namespace held its share of the reconcile slots",
            deferred_reconciles.clone(),
        );
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
        let key_renewal_failures = Counter::default();
        registry.register(
            "sealant_key_renewal_failures",
            "Failed attempts to make a new key (each is retried)",
            key_renewal_failures.clone(),
        );
        let last_backup = Gauge::<f64, AtomicU64>::default();
        registry.register(
            "sealant_last_key_backup_timestamp_seconds",
            "When the encrypted key backup Secret was last written, Unix seconds (0: never)",
            last_backup.clone(),
        );
        let renewal_period = Gauge::<f64, AtomicU64>::default();
        registry.register(
            "sealant_key_renewal_period_seconds",
            "How often a new sealing key is made (--key-renew-period), seconds; 0: never",
            renewal_period.clone(),
        );
        let backup_recipients = Gauge::default();
        registry.register(
            "sealant_key_backup_recipients",
            "Number of age recipients the keys are backed up to (0: no backup configured)",
            backup_recipients.clone(),
        );
        let controller_errors = Family::<KindLabels, Counter>::default();
        // Every kind from the start at 0: an alert's increase() sees the first error.
        for kind in ["watch", "reconcile", "not_found", "runner"] {
            drop(controller_errors.get_or_create(&KindLabels { kind: kind.into() }));
        }
        registry.register(
            "sealant_controller_errors",
            "Errors kube-runtime's controller reported, by kind (watch: a list or watch failed)",
            controller_errors.clone(),
        );
        Metrics {
            last_backup,
            renewal_period,
            backup_recipients,
            controller_errors,
            registry,
            unseal_requests,
            unseal_errors,
            condition_info,
            http_requests,
            http_duration,
            keys,
            rejected_keys,
            newest_key_created,
            decryptions,
            deferred_reconciles,
            reconcile_duration,
            is_leader,
            election_forbidden,
            key_renewal_failures,
        }
    }

    /// The Prometheus text exposition format 0.0.4, as upstream's Go client writes it, followed
    /// by the standard `process_*` metrics.
    pub fn encode(&self) -> String {
        let mut open_metrics = String::new();
        if prometheus_client::encoding::text::encode(&mut open_metrics, &self.registry).is_err() {
            return String::new();
        }
        let process = process_metrics();
        let mut out = to_prometheus_text(&open_metrics, process.len());
        drop(open_metrics);
        out.push_str(&process);
        out
    }
}

/// OpenMetrics text (what prometheus-client writes) as Prometheus text 0.0.4: a counter's
/// family is named with its `_total`, there is no `# EOF` or `# UNIT`, OpenMetrics-only types
/// become gauges or untyped, and bucket bounds are written as Go writes floats (`le="1"`).
/// `spare` is room left at the end for what the caller appends.
///
/// Ours because prometheus-client writes OpenMetrics only, and upstream's dashboards and
/// alerts, and scrapers that do not negotiate OpenMetrics, read the 0.0.4 text with upstream's
/// names; the `prometheus` crate writes it but would be a second metrics library beside the one
/// the metrics are defined with (tested by controller/tests/metrics_format.rs).
pub fn to_prometheus_text(open_metrics: &str, spare: usize) -> String {
    let counters: std::collections::HashSet<&str> = open_metrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|rest| rest.split_once(' '))
        .filter(|(_, kind)| *kind == "counter")
        .map(|(name, _)| name)
        .collect();
    let family = |name: &str| if counters.contains(name) { format!("{name}_total") } else { name.to_owned() };
    let mut out = String::with_capacity(open_metrics.len() + spare);
    for line in open_metrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        if let Some((name, help)) = line.strip_prefix("# HELP ").and_then(|r| r.split_once(' ')) {
            out.push_str(&format!("# HELP {} {help}\n", family(name)));
        } else if let Some((name, kind)) = line.strip_prefix("# TYPE ").and_then(|r| r.split_once(' ')) {
            let kind = match kind {
                "info" | "stateset" | "gaugehistogram" => "gauge",
                "unknown" => "untyped",
                other => other,
            };
            out.push_str(&format!("# TYPE {} {kind}\n", family(name)));
        } else if counters.iter().any(|c| line.starts_with(&format!("{c}_created"))) {
            continue;
        } else {
            out.push_str(&go_bucket_bound(line));
            out.push('\n');
        }
    }
    out
}

/// `le="1.0"` as Go writes it, `le="1"`.
fn go_bucket_bound(line: &str) -> String {
    let Some(start) = line.find("le=\"").map(|i| i + 4) else {
        return line.to_owned();
    };
    let Some(len) = line[start..].find('"') else {
        return line.to_owned();
    };
    match line[start..start + len].parse::<f64>() {
        Ok(bound) if bound.is_finite() => format!("{}{bound}{}", &line[..start], &line[start + len..]),
        _ => line.to_owned(),
    }
}

/// The standard `process_*` metrics of Prometheus clients, read from /proc (Linux).
fn process_metrics() -> String {
    // /proc reports times in USER_HZ, which is 100 on Linux whatever the kernel's own HZ.
    const TICKS_PER_SECOND: f64 = 100.0;
    let mut out = String::new();
    let mut metric = |name: &str, kind: &str, help: &str, value: f64| {
        out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n"));
    };
    // prometheus-client has no process collector (the Go client's `process_*`), so the few
    // series upstream exports are read from /proc here.
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which may hold spaces), from field 3 on.
    let fields: Vec<&str> =
        stat.rsplit_once(')').map(|(_, rest)| rest.split_whitespace().collect()).unwrap_or_default();
    let field = |n: usize| fields.get(n - 3).and_then(|f| f.parse::<f64>().ok());
    if let (Some(user), Some(system)) = (field(14), field(15)) {
        metric(
            "process_cpu_seconds_total",
            "counter",
            "Total user and system CPU time spent in seconds.",
            (user + system) / TICKS_PER_SECOND,
        );
    }
    if let Ok(entries) = std::fs::read_dir("/proc/self/fd") {
        metric("process_open_fds", "gauge", "Number of open file descriptors.", entries.count() as f64);
    }
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
    let limit = |prefix: &str| {
        limits
            .lines()
            .find(|l| l.starts_with(prefix))
            .and_then(|l| l[prefix.len()..].split_whitespace().next())
            .map(|soft| if soft == "unlimited" { -1.0 } else { soft.parse::<f64>().unwrap_or(-1.0) })
    };
    if let Some(max) = limit("Max open files") {
        metric("process_max_fds", "gauge", "Maximum number of open file descriptors.", max);
    }
    if let Some(vsize) = field(23) {
        metric("process_virtual_memory_bytes", "gauge", "Virtual memory size in bytes.", vsize);
    }
    if let Some(max) = limit("Max address space") {
        metric(
            "process_virtual_memory_max_bytes",
            "gauge",
            "Maximum amount of virtual memory available in bytes.",
            max,
        );
    }
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let rss_kib = status.lines().find_map(|l| l.strip_prefix("VmRSS:")).and_then(|v| v.split_whitespace().next());
    if let Some(rss) = rss_kib.and_then(|v| v.parse::<f64>().ok()) {
        metric("process_resident_memory_bytes", "gauge", "Resident memory size in bytes.", rss * 1024.0);
    }
    let boot = std::fs::read_to_string("/proc/stat")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("btime ").and_then(|v| v.trim().parse::<f64>().ok()));
    if let (Some(boot), Some(start)) = (boot, field(22)) {
        metric(
            "process_start_time_seconds",
            "gauge",
            "Start time of the process since unix epoch in seconds.",
            boot + start / TICKS_PER_SECOND,
        );
    }
    out
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
