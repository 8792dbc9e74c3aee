//! Command-line flags: upstream's names and defaults, each also read from
//! `SEALED_SECRETS_<FLAG>` (the command line wins), plus ours for leader election.

use sealant_core::error::quoted;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgAction, Parser, ValueEnum};
pub use sealant_core::go::parse_duration as parse_go_duration;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Which time orders keys, to choose the one that seals.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum KeyOrderPriority {
    #[value(name = "CertNotBefore")]
    CertNotBefore,
    #[value(name = "SecretCreationTimestamp")]
    SecretCreationTimestamp,
}

/// The version, with the crypto provider and whether its FIPS module is in use.
static VERSION: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| sealant_core::provider::version_line(env!("CARGO_PKG_VERSION")));

/// klog's flags that take a value, which upstream's Deployments may pass; accepted and ignored.
const KLOG_VALUED: &[&str] =
    &["log_dir", "log_file", "log_file_max_size", "vmodule", "stderrthreshold", "log_backtrace_at"];
/// klog's boolean flags; accepted and ignored.
const KLOG_BOOLEAN: &[&str] = &["alsologtostderr", "skip_headers", "skip_log_headers", "add_dir_header", "one_output"];

/// The command line as Go's flag package reads it, made ours: `-flag` and `-flag=value` (one
/// dash) become `--flag...`, and klog's flags (see [`KLOG_VALUED`], [`KLOG_BOOLEAN`]) are
/// dropped, so an upstream Deployment's arguments never stop the controller.
pub fn go_style_args(args: impl IntoIterator<Item = std::ffi::OsString>) -> Vec<std::ffi::OsString> {
    let mut out = Vec::new();
    let mut args = args.into_iter();
    out.extend(args.next());
    while let Some(arg) = args.next() {
        let Some(text) = arg.to_str() else {
            out.push(arg);
            continue;
        };
        if text == "--" {
            out.push(arg);
            out.extend(args.by_ref());
            break;
        }
        let body = text.strip_prefix("--").or_else(|| text.strip_prefix('-')).unwrap_or(text);
        let (name, value) = body.split_once('=').map_or((body, None), |(n, v)| (n, Some(v)));
        if body.len() == text.len() {
            out.push(arg);
        } else if KLOG_BOOLEAN.contains(&name) {
            continue;
        } else if KLOG_VALUED.contains(&name) {
            if value.is_none() {
                args.next();
            }
        } else if !text.starts_with("--") && name.len() > 1 && name.starts_with(|c: char| c.is_ascii_alphabetic()) {
            out.push(format!("--{body}").into());
        } else {
            out.push(arg);
        }
    }
    out
}

/// Go's `:8080` means every interface.
pub fn parse_listen_addr(text: &str) -> Result<SocketAddr, String> {
    let full = if text.starts_with(':') { format!("0.0.0.0{text}") } else { text.to_owned() };
    full.parse().map_err(|_| format!("invalid listen address {} (examples: :8080, 127.0.0.1:8080)", quoted(text)))
}

#[derive(Clone, Debug, Parser)]
#[command(
    name = "sealant-controller",
    version = VERSION.as_str(),
    // As Go's flag package: a flag given twice takes the last value.
    args_override_self = true,
    about = "Turns SealedSecrets into Secrets; drop-in for the sealed-secrets controller",
    after_help = "Go-style flags work too: -flag, -flag=value, --flag=true|false. klog's flags (-v, \
                  --logtostderr, --alsologtostderr, --log_dir, --log_file, --log_file_max_size, --vmodule, \
                  --stderrthreshold, --skip_headers, --skip_log_headers, --add_dir_header, --one_output, \
                  --log_backtrace_at) are accepted and ignored: use --log-level and --log-format."
)]
pub struct Flags {
    /// Prefix (generateName) of key Secrets, and the name of the legacy key.
    #[arg(long, env = "SEALED_SECRETS_KEY_PREFIX", default_value = "sealed-secrets-key")]
    pub key_prefix: String,
    /// Size of generated RSA keys in bits.
    #[arg(long, env = "SEALED_SECRETS_KEY_SIZE", default_value_t = 4096)]
    pub key_size: usize,
    /// Validity of generated certificates.
    #[arg(long, env = "SEALED_SECRETS_KEY_TTL", default_value = "87600h0m0s", value_parser = parse_go_duration)]
    pub key_ttl: Duration,
    /// Common name of generated certificates.
    #[arg(long, env = "SEALED_SECRETS_MY_CN", default_value = "")]
    pub my_cn: String,
    /// Generate a new key this often (0 = never).
    #[arg(long, env = "SEALED_SECRETS_KEY_RENEW_PERIOD", default_value = "720h0m0s", value_parser = parse_go_duration)]
    pub key_renew_period: Duration,
    /// Deprecated alias of --key-renew-period.
    #[arg(long, env = "SEALED_SECRETS_ROTATE_PERIOD", value_parser = parse_go_duration, hide = true)]
    pub rotate_period: Option<Duration>,
    /// Which time orders keys to pick the sealing key.
    #[arg(long, env = "SEALED_SECRETS_KEY_ORDER_PRIORITY", value_enum, default_value = "CertNotBefore")]
    pub key_order_priority: KeyOrderPriority,
    /// Generate a key at start if the newest is older than this (RFC 1123 with numeric zone, `date -R`).
    #[arg(long, env = "SEALED_SECRETS_KEY_CUTOFF_TIME", default_value = "")]
    pub key_cutoff_time: String,
    /// Accept the deprecated v1 `spec.data` format.
    #[arg(long, env = "SEALED_SECRETS_ACCEPT_DEPRECATED_V1_DATA", default_value_t = true, action = ArgAction::Set, num_args = 0..=1, default_missing_value = "true", require_equals = true)]
    pub accept_deprecated_v1_data: bool,
    /// Watch every namespace (false: only the controller's).
    #[arg(long, env = "SEALED_SECRETS_ALL_NAMESPACES", default_value_t = true, action = ArgAction::Set, num_args = 0..=1, default_missing_value = "true", require_equals = true)]
    pub all_namespaces: bool,
    /// Comma-separated namespaces to watch besides the controller's (restricts the watch).
    #[arg(long, env = "SEALED_SECRETS_ADDITIONAL_NAMESPACES", default_value = "")]
    pub additional_namespaces: String,
    /// Only SealedSecrets matching this label selector.
    #[arg(long, env = "SEALED_SECRETS_LABEL_SELECTOR", default_value = "")]
    pub label_selector: String,
    /// /v1/verify and /v1/rotate requests per second per client.
    #[arg(long, env = "SEALED_SECRETS_RATE_LIMIT", default_value_t = 2)]
    pub rate_limit: u32,
    /// /v1/verify and /v1/rotate burst per client.
    #[arg(long, env = "SEALED_SECRETS_RATE_LIMIT_BURST", default_value_t = 2)]
    pub rate_limit_burst: u32,
    /// Addresses and CIDR blocks (comma-separated) whose `X-Forwarded-For` names the client for
    /// the rate limit, besides the API server's own addresses (read from the `kubernetes`
    /// EndpointSlice): set it where the API server reaches Pods through another address (a
    /// konnectivity agent, a node's bridge). Any other peer is keyed by its own address.
    #[arg(long, env = "SEALED_SECRETS_TRUSTED_PROXIES", default_value = "")]
    pub trusted_proxies: String,
    /// `k=v,k2=v2` annotations for generated key Secrets.
    #[arg(long, env = "SEALED_SECRETS_PRIVATEKEY_ANNOTATIONS", default_value = "")]
    pub privatekey_annotations: String,
    /// `k=v,k2=v2` labels for generated key Secrets.
    #[arg(long, env = "SEALED_SECRETS_PRIVATEKEY_LABELS", default_value = "")]
    pub privatekey_labels: String,
    /// Maintain `.status` of SealedSecrets.
    #[arg(long, env = "SEALED_SECRETS_UPDATE_STATUS", default_value_t = true, action = ArgAction::Set, num_args = 0..=1, default_missing_value = "true", require_equals = true)]
    pub update_status: bool,
    /// Do not export `sealed_secrets_controller_condition_info`, whose labels name every
    /// SealedSecret (namespace and name), for a metrics port that users who should not list
    /// them can reach (upstream's flag).
    #[arg(long, env = "SEALED_SECRETS_METRICS_OMIT_SECRET_LABELS", default_value_t = false, action = ArgAction::Set, num_args = 0..=1, default_missing_value = "true", require_equals = true)]
    pub metrics_omit_secret_labels: bool,
    /// Accepted for compatibility: key Secrets are always watched.
    #[arg(long, env = "SEALED_SECRETS_WATCH_FOR_SECRETS", default_value_t = false, action = ArgAction::Set, num_args = 0..=1, default_missing_value = "true", require_equals = true, hide = true)]
    pub watch_for_secrets: bool,
    /// Do not watch Secrets, so a deleted Secret is not recreated.
    #[arg(long, env = "SEALED_SECRETS_SKIP_RECREATE", default_value_t = false, action = ArgAction::Set, num_args = 0..=1, default_missing_value = "true", require_equals = true)]
    pub skip_recreate: bool,
    /// Accepted for compatibility: owned Secrets are deleted by garbage collection.
    #[arg(long, env = "SEALED_SECRETS_OLD_GC_BEHAVIOR", default_value_t = false, action = ArgAction::Set, num_args = 0..=1, default_missing_value = "true", require_equals = true, hide = true)]
    pub old_gc_behavior: bool,
    /// Info logs to stdout, warnings and errors to stderr.
    #[arg(long, env = "SEALED_SECRETS_LOG_INFO_STDOUT", default_value_t = true, action = ArgAction::Set, num_args = 0..=1, default_missing_value = "true", require_equals = true)]
    pub log_info_stdout: bool,
    /// Log level: DEBUG, INFO, WARN or ERROR.
    #[arg(long, env = "SEALED_SECRETS_LOG_LEVEL", default_value = "INFO")]
    pub log_level: String,
    /// Log format.
    #[arg(long, env = "SEALED_SECRETS_LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,
    /// Every SealedSecret is reconciled again this often (0: never): unchanged ones cost no
    /// decryption, and anything a fault made the controller miss is repaired.
    #[arg(long, env = "SEALED_SECRETS_RESYNC_PERIOD", default_value = "10m0s", value_parser = parse_go_duration)]
    pub resync_period: Duration,
    /// After a `template.data` template fails in a namespace, how long the next evaluation of a
    /// templated SealedSecret there waits; each evaluation doubles it, up to a day (so that
    /// templates cannot test a secret one status at a time; README's security model). 0: no
    /// wait.
    #[arg(long, env = "SEALANT_TEMPLATE_BACKOFF", default_value = "1m0s", value_parser = parse_go_duration)]
    pub template_backoff: Duration,
    /// Retries of a failing SealedSecret before waiting for its next change (API errors that
    /// time can fix are retried without limit and do not count).
    #[arg(long, env = "SEALED_SECRETS_MAX_UNSEAL_RETRIES", default_value_t = 5)]
    pub max_unseal_retries: u32,
    /// Accepted for compatibility.
    #[arg(long, env = "SEALED_SECRETS_KUBECLIENT_QPS", default_value_t = 5.0, hide = true)]
    pub kubeclient_qps: f32,
    /// Accepted for compatibility.
    #[arg(long, env = "SEALED_SECRETS_KUBECLIENT_BURST", default_value_t = 10, hide = true)]
    pub kubeclient_burst: u32,
    /// HTTP API address.
    #[arg(long, env = "SEALED_SECRETS_LISTEN_ADDR", default_value = ":8080", value_parser = parse_listen_addr)]
    pub listen_addr: SocketAddr,
    /// Metrics address.
    #[arg(long, env = "SEALED_SECRETS_LISTEN_METRICS_ADDR", default_value = ":8081", value_parser = parse_listen_addr)]
    pub listen_metrics_addr: SocketAddr,
    /// HTTP read timeout.
    #[arg(long, env = "SEALED_SECRETS_READ_TIMEOUT", default_value = "2m0s", value_parser = parse_go_duration)]
    pub read_timeout: Duration,
    /// HTTP write timeout.
    #[arg(long, env = "SEALED_SECRETS_WRITE_TIMEOUT", default_value = "2m0s", value_parser = parse_go_duration)]
    pub write_timeout: Duration,
    /// Kubeconfig, to run outside a cluster (default: in-cluster, then $KUBECONFIG).
    #[arg(long, env = "SEALED_SECRETS_KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,
    /// Elect a leader among replicas with a Lease; only the leader writes.
    #[arg(long, env = "SEALED_SECRETS_LEADER_ELECT", default_value_t = true, action = ArgAction::Set, num_args = 0..=1, default_missing_value = "true", require_equals = true)]
    pub leader_elect: bool,
    /// Name of the leader-election Lease.
    #[arg(long, env = "SEALED_SECRETS_LEADER_ELECT_LEASE_NAME", default_value = "sealed-secrets-controller")]
    pub leader_elect_lease_name: String,
    /// How long a leader's Lease lasts without renewal.
    #[arg(long, env = "SEALED_SECRETS_LEADER_ELECT_LEASE_DURATION", default_value = "15s", value_parser = parse_go_duration)]
    pub leader_elect_lease_duration: Duration,
    /// How often the leader renews, and followers retry.
    #[arg(long, env = "SEALED_SECRETS_LEADER_ELECT_RETRY_PERIOD", default_value = "2s", value_parser = parse_go_duration)]
    pub leader_elect_retry_period: Duration,
    /// age recipients (age1..., age1pq1... or ssh-ed25519, comma-separated; post-quantum and
    /// classic ones not mixed): after each key it generates, the controller
    /// writes every key Secret, encrypted to them, to the Secret `<key-prefix>-backup`.
    #[arg(long, env = "SEALED_SECRETS_BACKUP_AGE_RECIPIENTS", value_delimiter = ',')]
    pub backup_age_recipients: Vec<String>,
    /// The controller's namespace (default: $POD_NAMESPACE, the service account's, else default).
    #[arg(long, env = "SEALED_SECRETS_NAMESPACE")]
    pub namespace: Option<String>,
    /// Accepted for compatibility with klog flags.
    #[arg(long, hide = true, default_value_t = true, action = ArgAction::Set, num_args = 0..=1, default_missing_value = "true", require_equals = true)]
    pub logtostderr: bool,
    /// Accepted for compatibility with klog flags.
    #[arg(short = 'v', long = "v", hide = true)]
    pub verbosity: Option<u32>,
}

impl Flags {
    /// The renewal period, honouring the deprecated alias.
    pub fn renew_period(&self) -> Duration {
        self.rotate_period.unwrap_or(self.key_renew_period)
    }

    /// The cutoff time, if set.
    pub fn cutoff(&self) -> Result<Option<time::OffsetDateTime>, String> {
        if self.key_cutoff_time.is_empty() {
            return Ok(None);
        }
        // RFC 1123 with a numeric zone: "Mon, 02 Jan 2006 15:04:05 -0700".
        let format = time::macros::format_description!(
            "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] [offset_hour sign:mandatory][offset_minute]"
        );
        time::OffsetDateTime::parse(&self.key_cutoff_time, format).map(Some).map_err(|e| {
            format!("invalid --key-cutoff-time {} (use `date -R` format): {e}", quoted(&self.key_cutoff_time))
        })
    }

    /// `k=v,k2=v2` into pairs.
    pub fn pairs(text: &str) -> Vec<(String, String)> {
        text.split(',')
            .filter(|p| !p.trim().is_empty())
            .filter_map(|p| p.split_once('=').map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned())))
            .collect()
    }

    pub fn namespaces(&self) -> Vec<String> {
        self.additional_namespaces.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_deployment_arguments_with_klog_flags_parse() {
        let args = [
            "controller",
            "-v=2",
            "--logtostderr",
            "-alsologtostderr",
            "--vmodule",
            "x=3",
            "--log_dir=/tmp",
            "-stderrthreshold",
            "INFO",
            "--skip_headers",
            "-key-prefix=legacy",
            "--update-status",
            "-v",
            "4",
        ];
        let flags = Flags::try_parse_from(go_style_args(args.map(std::ffi::OsString::from))).unwrap();
        assert_eq!(flags.key_prefix, "legacy");
        assert!(flags.update_status);
        assert_eq!(flags.verbosity, Some(4));
    }

    #[test]
    fn go_listen_addresses() {
        assert_eq!(parse_listen_addr(":8080").map(|a| a.port()), Ok(8080));
        assert!(parse_listen_addr("127.0.0.1:9").is_ok());
        assert!(parse_listen_addr("nope").is_err());
    }

    #[test]
    fn go_style_booleans_and_env() {
        let flags = Flags::try_parse_from(["c", "--update-status=false", "--leader-elect"]).unwrap();
        assert!(!flags.update_status);
        assert!(flags.leader_elect);
        assert!(flags.accept_deprecated_v1_data);
    }

    #[test]
    fn cutoff_time_is_rfc1123z() {
        let flags = Flags::try_parse_from(["c", "--key-cutoff-time", "Mon, 02 Jan 2006 15:04:05 -0700"]).unwrap();
        assert_eq!(flags.cutoff().unwrap().map(|t| t.unix_timestamp()), Some(1136239445));
    }
}
