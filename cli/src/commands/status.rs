//! `sealant status`: is sealing healthy in this cluster, and what is failing? The controller's
//! replicas, leader and version, its keys, renewal and backup, the SealedSecrets by condition
//! with the failing ones listed, and whether a certificate is one the controller holds. Exit 1
//! with the reasons when something needs an operator, for CI and cron.
//!
//! [`collect`] reads the cluster, [`Status::problems`] judges it, [`Status::text`] shows it: the
//! last two are pure, so the golden tests give them a fixed time.

use std::path::PathBuf;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Container, Pod, Secret};
use kube::api::ListParams;
use kube::{Api, Client, ResourceExt};
use sealant_core::Certificate;
use sealant_crds::SealedSecret;
use sealant_crds::keys::{BACKUP_KEYS_ANNOTATION, BACKUP_WRITTEN_ANNOTATION};
use serde::Serialize;
use time::OffsetDateTime;

use crate::cluster::{ClusterArgs, cluster_client};
use crate::commands::keys::{ClusterKey, cluster_keys, sealing_key};
use crate::error::{CliError, CliResult, Context};
use crate::io;

/// How many failing SealedSecrets are listed (all are counted).
const LISTED: usize = 50;
/// How far past its renewal the newest key may be before it is a problem.
const RENEWAL_MARGIN: Duration = Duration::from_secs(24 * 3600);
/// The controller's defaults, for a Deployment that sets neither.
const DEFAULT_RENEW_PERIOD: &str = "720h0m0s";
const DEFAULT_KEY_PREFIX: &str = "sealed-secrets-key";

#[derive(Debug, clap::Args)]
pub struct StatusCommand {
    /// Only the SealedSecrets of this namespace (default: every namespace).
    #[arg(short = 'n', long, value_name = "NS")]
    pub namespace: Option<String>,
    /// Also say whether this certificate (a committed cert.pem) is one the controller holds.
    #[arg(long, value_name = "FILE")]
    pub cert: Option<PathBuf>,
    /// text, or json for scripts.
    #[arg(short = 'o', long, value_name = "FORMAT", default_value = "text", value_parser = ["text", "json"])]
    pub output: String,
}

/// What `sealant status` found.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    pub controller: Controller,
    pub keys: Vec<Key>,
    pub renewal: Renewal,
    pub backup: Backup,
    pub sealed_secrets: SealedSecrets,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub certificate: Option<CertificateCheck>,
    /// Why the exit status is not 0 (empty when healthy).
    pub problems: Vec<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Controller {
    pub namespace: String,
    pub name: String,
    pub found: bool,
    pub replicas: i32,
    pub ready: i32,
    /// The image tags (or digests) the controller's Pods run.
    pub versions: Vec<String>,
    /// The Pod that holds the Lease, when it is current.
    pub leader: Option<String>,
    /// The Lease's holder and whether it expired; None without a Lease.
    pub lease: Option<LeaseState>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LeaseState {
    pub holder: String,
    #[serde(with = "time::serde::rfc3339::option")]
    pub renewed: Option<OffsetDateTime>,
    pub expired: bool,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Key {
    pub fingerprint: String,
    pub secret: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub not_after: OffsetDateTime,
    /// active, compromised, legacy (no label), or another label value.
    pub state: String,
    pub seals: bool,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Renewal {
    /// Seconds; 0 when renewal is off.
    pub period_seconds: u64,
    #[serde(with = "time::serde::rfc3339::option")]
    pub next: Option<OffsetDateTime>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Backup {
    pub recipients: usize,
    pub secret: String,
    pub found: bool,
    /// The Secret of that name was made by a SealedSecret (whose template chose the name and
    /// the annotations read here): not the controller's backup, and nothing of it is believed.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub made_by_sealed_secret: bool,
    #[serde(with = "time::serde::rfc3339::option")]
    pub written: Option<OffsetDateTime>,
    /// Key Secrets the backup holds.
    pub keys: Vec<String>,
}

#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SealedSecrets {
    /// The namespace looked at, or None for every namespace.
    pub namespace: Option<String>,
    pub synced: usize,
    pub failing: usize,
    /// No Synced condition for their current generation yet.
    pub pending: usize,
    /// The first failing ones (at most 50).
    pub failures: Vec<Failure>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Failure {
    pub namespace: String,
    pub name: String,
    pub reason: String,
    pub message: String,
    #[serde(with = "time::serde::rfc3339::option")]
    pub since: Option<OffsetDateTime>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CertificateCheck {
    pub file: String,
    pub fingerprint: String,
    pub held: bool,
    pub seals: bool,
}

pub async fn run(command: &StatusCommand, cluster: &ClusterArgs) -> CliResult {
    let client = cluster_client(cluster).await?;
    let certificate = match &command.cert {
        Some(path) => {
            let pem = std::fs::read_to_string(path).context(format!("cannot read {}", path.display()))?;
            let cert = Certificate::from_pem(&pem).context(format!("{} is not a PEM certificate", path.display()))?;
            Some((path.display().to_string(), cert.public_key().fingerprint()))
        }
        None => None,
    };
    let status =
        collect(&client, cluster, command.namespace.as_deref(), certificate, OffsetDateTime::now_utc()).await?;
    let out = if command.output == "json" {
        let mut json = serde_json::to_string_pretty(&status).context("cannot write JSON")?;
        json.push('\n');
        json
    } else {
        status.text(OffsetDateTime::now_utc())
    };
    io::print(&out)?;
    match status.problems.len() {
        0 => Ok(()),
        n => Err(CliError::new(format!("{n} problem{} (above)", if n == 1 { "" } else { "s" }))),
    }
}

/// Read what the status shows from the cluster; `certificate` is (file, fingerprint).
pub async fn collect(
    client: &Client,
    cluster: &ClusterArgs,
    namespace: Option<&str>,
    certificate: Option<(String, String)>,
    now: OffsetDateTime,
) -> CliResult<Status> {
    let home = cluster.controller_namespace.as_str();
    let name = cluster.controller_name.as_str();
    let deployment = Api::<Deployment>::namespaced(client.clone(), home)
        .get_opt(name)
        .await
        .context(format!("cannot read the Deployment {home}/{name}"))?;
    let container = deployment
        .as_ref()
        .and_then(|d| d.spec.as_ref()?.template.spec.as_ref()?.containers.first().cloned())
        .unwrap_or_default();
    let mut controller = Controller {
        namespace: home.to_owned(),
        name: name.to_owned(),
        found: deployment.is_some(),
        replicas: deployment.as_ref().and_then(|d| d.spec.as_ref()?.replicas).unwrap_or(0),
        ready: deployment.as_ref().and_then(|d| d.status.as_ref()?.ready_replicas).unwrap_or(0),
        versions: Vec::new(),
        leader: None,
        lease: None,
    };
    if let Some(selector) = deployment.as_ref().and_then(|d| d.spec.as_ref()?.selector.match_labels.clone()) {
        let selector: Vec<String> = selector.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let pods = Api::<Pod>::namespaced(client.clone(), home)
            .list(&ListParams::default().labels(&selector.join(",")))
            .await
            .context(format!("cannot list the controller's Pods in {home}"))?;
        let mut versions: Vec<String> = pods
            .items
            .iter()
            .filter_map(|p| p.spec.as_ref()?.containers.first()?.image.clone())
            .map(|image| version_of(&image))
            .collect();
        versions.sort();
        versions.dedup();
        controller.versions = versions;
    }
    if let Some(lease) = Api::<Lease>::namespaced(client.clone(), home).get_opt(name).await.ok().flatten() {
        let spec = lease.spec.unwrap_or_default();
        let holder = spec.holder_identity.unwrap_or_default();
        let renewed = spec.renew_time.and_then(|t| offset(t.0));
        let duration = i64::from(spec.lease_duration_seconds.unwrap_or(15));
        let expired = holder.is_empty() || renewed.is_none_or(|r| (r + time::Duration::seconds(duration)) < now);
        if !expired {
            controller.leader = Some(holder.rsplit_once('_').map_or(holder.as_str(), |(pod, _)| pod).to_owned());
        }
        controller.lease = Some(LeaseState { holder, renewed, expired });
    }

    let cluster_keys = cluster_keys(client, home).await?;
    let sealing = sealing_key(&cluster_keys).map(|k| k.fingerprint.clone());
    let keys: Vec<Key> = cluster_keys.iter().map(|k| key(k, sealing.as_deref())).collect();

    let period = flag(&container, "key-renew-period", "SEALED_SECRETS_KEY_RENEW_PERIOD")
        .or_else(|| flag(&container, "rotate-period", "SEALED_SECRETS_ROTATE_PERIOD"))
        .unwrap_or_else(|| DEFAULT_RENEW_PERIOD.to_owned());
    let period = sealant_core::go::parse_duration(&period).unwrap_or_default();
    let newest = cluster_keys.iter().map(|k| k.not_before).max();
    let renewal =
        Renewal { period_seconds: period.as_secs(), next: newest.filter(|_| !period.is_zero()).map(|n| n + period) };

    let prefix =
        flag(&container, "key-prefix", "SEALED_SECRETS_KEY_PREFIX").unwrap_or_else(|| DEFAULT_KEY_PREFIX.to_owned());
    let recipients = flag(&container, "backup-age-recipients", "SEALED_SECRETS_BACKUP_AGE_RECIPIENTS")
        .map(|r| r.split(',').filter(|r| !r.trim().is_empty()).count())
        .unwrap_or(0);
    let backup_name = format!("{prefix}-backup");
    let backup_secret = Api::<Secret>::namespaced(client.clone(), home).get_opt(&backup_name).await.ok().flatten();
    let made_by_sealed_secret =
        backup_secret.as_ref().is_some_and(|s| s.owner_references().iter().any(|o| o.kind == "SealedSecret"));
    let backup_secret = backup_secret.filter(|_| !made_by_sealed_secret);
    let annotations = backup_secret.as_ref().map(|s| s.annotations().clone()).unwrap_or_default();
    let backup = Backup {
        recipients,
        secret: backup_name,
        found: backup_secret.is_some(),
        made_by_sealed_secret,
        written: annotations
            .get(BACKUP_WRITTEN_ANNOTATION)
            .and_then(|t| OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).ok()),
        keys: annotations
            .get(BACKUP_KEYS_ANNOTATION)
            .map(|k| k.split(',').filter(|k| !k.is_empty()).map(str::to_owned).collect())
            .unwrap_or_default(),
    };

    let sealed_secrets = sealed_secrets(client, namespace).await?;
    let certificate = certificate.map(|(file, fingerprint)| CertificateCheck {
        held: keys.iter().any(|k| k.fingerprint == fingerprint),
        seals: sealing.as_deref() == Some(fingerprint.as_str()),
        file,
        fingerprint,
    });
    let mut status = Status { controller, keys, renewal, backup, sealed_secrets, certificate, problems: Vec::new() };
    status.problems = status.judge(now);
    Ok(status)
}

fn key(k: &ClusterKey, sealing: Option<&str>) -> Key {
    Key {
        fingerprint: k.fingerprint.clone(),
        secret: k.secret.name_any(),
        created: k.not_before,
        not_after: k.not_after,
        state: k.state.clone(),
        seals: sealing == Some(k.fingerprint.as_str()),
    }
}

/// The SealedSecrets of `namespace` (or all), counted by their Synced condition, a page at a time.
async fn sealed_secrets(client: &Client, namespace: Option<&str>) -> CliResult<SealedSecrets> {
    let api = match namespace {
        Some(ns) => Api::<SealedSecret>::namespaced(client.clone(), ns),
        None => Api::<SealedSecret>::all(client.clone()),
    };
    let mut counts = SealedSecrets { namespace: namespace.map(str::to_owned), ..Default::default() };
    // A SealedSecret may hold 1.5 MB and a page is read whole: 50 of them cost at most about
    // 75 MB, where kube's 500 cost 750 MB.
    let mut params = ListParams::default().limit(50);
    loop {
        let page = api.list(&params).await.context("cannot list SealedSecrets")?;
        for ss in &page.items {
            let status = ss.status.as_ref();
            let current = status
                .is_some_and(|s| s.observed_generation.is_none() || s.observed_generation == ss.metadata.generation);
            let synced = status.and_then(|s| s.conditions.iter().find(|c| c.type_ == "Synced")).filter(|_| current);
            match synced {
                Some(c) if c.status == "True" => counts.synced += 1,
                Some(c) if c.status == "False" => {
                    counts.failing += 1;
                    if counts.failures.len() < LISTED {
                        counts.failures.push(Failure {
                            namespace: ss.namespace().unwrap_or_default(),
                            name: ss.name_any(),
                            reason: c.reason.clone().unwrap_or_default(),
                            message: c.message.clone().unwrap_or_default(),
                            since: c.last_transition_time.as_ref().and_then(|t| offset(t.0)),
                        });
                    }
                }
                _ => counts.pending += 1,
            }
        }
        match page.metadata.continue_.filter(|c| !c.is_empty()) {
            Some(token) => params = params.continue_token(&token),
            None => break,
        }
    }
    Ok(counts)
}

/// The value of a controller flag in the container's arguments (`--name=v`, `--name v`, Go's
/// `-name=v`), else its environment variable.
fn flag(container: &Container, name: &str, env: &str) -> Option<String> {
    let args: Vec<&str> = container.command.iter().chain(container.args.iter()).flatten().map(String::as_str).collect();
    let mut found = None;
    for (i, arg) in args.iter().enumerate() {
        let bare = arg.trim_start_matches('-');
        if !arg.starts_with('-') {
            continue;
        }
        if let Some(value) = bare.strip_prefix(name).and_then(|rest| rest.strip_prefix('=')) {
            found = Some(value.to_owned());
        } else if bare == name {
            found = args.get(i + 1).map(|v| (*v).to_owned());
        }
    }
    found.or_else(|| container.env.iter().flatten().find(|e| e.name == env).and_then(|e| e.value.clone()))
}

/// The tag or digest of an image reference.
fn version_of(image: &str) -> String {
    if let Some((_, digest)) = image.split_once('@') {
        return digest.to_owned();
    }
    let last = image.rsplit('/').next().unwrap_or(image);
    last.split_once(':').map_or("latest", |(_, tag)| tag).to_owned()
}

impl Status {
    /// What needs an operator, each with what to do; empty when healthy.
    pub fn judge(&self, now: OffsetDateTime) -> Vec<String> {
        let mut problems = Vec::new();
        let c = &self.controller;
        if !c.found {
            problems.push(format!(
                "no Deployment {}/{}: is the controller installed there (--controller-namespace, --controller-name)?",
                c.namespace, c.name
            ));
        } else if c.ready == 0 {
            problems.push(format!(
                "no replica of {}/{} is ready: kubectl -n {} describe pods",
                c.namespace, c.name, c.namespace
            ));
        } else if c.ready < c.replicas {
            problems.push(format!("{} of {} replicas ready", c.ready, c.replicas));
        }
        if c.found && c.ready > 0 {
            match &c.lease {
                Some(lease) if lease.expired => problems.push(format!(
                    "no leader: the Lease {}/{} held by {:?} expired; nothing unseals or renews keys",
                    c.namespace, c.name, lease.holder
                )),
                None if c.replicas > 1 => problems.push(format!(
                    "no Lease {}/{} with {} replicas: leader election is forbidden (grant the Lease) or off",
                    c.namespace, c.name, c.replicas
                )),
                _ => {}
            }
        }
        if self.keys.is_empty() {
            problems.push(format!("no sealing key in {}: the controller makes one when it starts", c.namespace));
        }
        if let (Some(next), Some(newest)) = (self.renewal.next, self.keys.iter().map(|k| k.created).max())
            && now > next + RENEWAL_MARGIN
        {
            problems.push(format!(
                "the newest key ({}) is {} past its renewal: is a leader renewing keys?",
                rfc3339(newest),
                human(now - next)
            ));
        }
        if self.backup.recipients > 0 {
            let newest = self.keys.iter().max_by_key(|k| k.created).map(|k| k.secret.as_str());
            if self.backup.made_by_sealed_secret {
                problems.push(format!(
                    "the Secret {} was made by a SealedSecret, not by the controller: no backup can be written \
                     until it is deleted",
                    self.backup.secret
                ));
            } else if !self.backup.found {
                problems.push(format!("key backup is configured but the Secret {} does not exist", self.backup.secret));
            } else if let Some(newest) = newest.filter(|n| !self.backup.keys.iter().any(|k| k == n)) {
                problems.push(format!(
                    "the key backup {} does not hold the newest key {newest}: the controller's log says why",
                    self.backup.secret
                ));
            }
        }
        let s = &self.sealed_secrets;
        if s.failing > 0 {
            problems.push(format!(
                "{} SealedSecret{} failing (listed above)",
                s.failing,
                if s.failing == 1 { "" } else { "s" }
            ));
        }
        if let Some(cert) = &self.certificate
            && !cert.held
        {
            problems.push(format!(
                "{} is not a certificate the controller holds: fetch the current one (sealant cert)",
                cert.file
            ));
        }
        problems
    }

    /// The status as text for a terminal, times relative to `now`.
    pub fn text(&self, now: OffsetDateTime) -> String {
        let c = &self.controller;
        let mut out = String::new();
        let replicas = if c.found {
            format!("{}/{} replicas ready, version {}", c.ready, c.replicas, list_or(&c.versions, "unknown"))
        } else {
            "not found".to_owned()
        };
        out.push_str(&format!("Controller     {}/{}: {replicas}\n", c.namespace, c.name));
        let leader = match (&c.leader, &c.lease) {
            (Some(pod), Some(lease)) => {
                format!("{pod} (renewed {} ago)", lease.renewed.map_or("never".to_owned(), |r| human(now - r)))
            }
            (None, Some(lease)) => format!("none: the Lease held by {:?} expired", lease.holder),
            (_, None) => "no Lease (one replica writes alone, or election is off)".to_owned(),
        };
        out.push_str(&format!("Leader         {leader}\n"));
        out.push_str(&format!("Keys           {}\n", self.keys.len()));
        if !self.keys.is_empty() {
            out.push_str(&format!(
                "  {:<52} {:<28} {:<20} {:<10} SEALS\n",
                "FINGERPRINT", "SECRET", "CREATED", "STATE"
            ));
            for k in &self.keys {
                out.push_str(&format!(
                    "  {:<52} {:<28} {:<20} {:<10} {}\n",
                    k.fingerprint,
                    k.secret,
                    rfc3339(k.created),
                    k.state,
                    if k.seals { "yes" } else { "" }
                ));
            }
        }
        let renewal = match self.renewal.next {
            Some(next) if next > now => format!(
                "every {}, next {} (in {})",
                human_secs(self.renewal.period_seconds),
                rfc3339(next),
                human(next - now)
            ),
            Some(next) => format!(
                "every {}, due since {} ({} ago)",
                human_secs(self.renewal.period_seconds),
                rfc3339(next),
                human(now - next)
            ),
            None if self.renewal.period_seconds == 0 => "off".to_owned(),
            None => format!("every {}", human_secs(self.renewal.period_seconds)),
        };
        out.push_str(&format!("Renewal        {renewal}\n"));
        let b = &self.backup;
        let backup = match (b.recipients, b.found, b.written) {
            (0, _, _) => "not configured (--backup-age-recipients); back up with `sealant keys backup`".to_owned(),
            (n, false, _) => format!("to {n} recipient{}, Secret {} missing", plural(n), b.secret),
            (n, true, written) => format!(
                "to {n} recipient{}, {} written {}, holds {} key{}",
                plural(n),
                b.secret,
                written.map_or("at an unknown time".to_owned(), |w| format!("{} ago", human(now - w))),
                b.keys.len(),
                plural(b.keys.len())
            ),
        };
        out.push_str(&format!("Backup         {backup}\n"));
        let s = &self.sealed_secrets;
        out.push_str(&format!(
            "SealedSecrets  {}: {} synced, {} failing, {} pending\n",
            s.namespace.as_deref().map_or("every namespace".to_owned(), |n| format!("namespace {n}")),
            s.synced,
            s.failing,
            s.pending
        ));
        if !s.failures.is_empty() {
            out.push_str(&format!("  {:<40} {:<18} {:<10} MESSAGE\n", "NAMESPACE/NAME", "REASON", "SINCE"));
            for f in &s.failures {
                out.push_str(&format!(
                    "  {:<40} {:<18} {:<10} {}\n",
                    format!("{}/{}", f.namespace, f.name),
                    sealant_core::error::printable(&f.reason),
                    f.since.map_or("-".to_owned(), |t| human(now - t)),
                    // Written by a controller from what a tenant chose (item keys): never raw
                    // to a terminal, whichever controller wrote it.
                    sealant_core::error::printable(f.message.lines().next().unwrap_or_default())
                ));
            }
            if s.failing > s.failures.len() {
                out.push_str(&format!("  ... and {} more\n", s.failing - s.failures.len()));
            }
        }
        if let Some(cert) = &self.certificate {
            let verdict = match (cert.held, cert.seals) {
                (true, true) => "held, and new secrets are sealed to it",
                (true, false) => "held, but not the newest key: `sealant cert` gives the current one",
                (false, _) => "NOT held by the controller",
            };
            out.push_str(&format!("Certificate    {} ({}): {verdict}\n", cert.file, cert.fingerprint));
        }
        if self.problems.is_empty() {
            out.push_str("\nHealthy.\n");
        } else {
            out.push_str("\nProblems:\n");
            for p in &self.problems {
                out.push_str(&format!("  - {p}\n"));
            }
        }
        out
    }
}

/// The API server's time (jiff) as `time`'s, to the second.
fn offset(t: k8s_openapi::jiff::Timestamp) -> Option<OffsetDateTime> {
    OffsetDateTime::from_unix_timestamp(t.as_second()).ok()
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.replace_nanosecond(0)
        .unwrap_or(t)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| t.to_string())
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

fn list_or(items: &[String], empty: &str) -> String {
    if items.is_empty() { empty.to_owned() } else { items.join(", ") }
}

/// A duration as kubectl prints ages: 42s, 5m, 3h, 12d.
fn human(d: time::Duration) -> String {
    human_secs(d.whole_seconds().unsigned_abs())
}

fn human_secs(s: u64) -> String {
    match s {
        s if s < 120 => format!("{s}s"),
        s if s < 2 * 3600 => format!("{}m", s / 60),
        s if s < 2 * 86400 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn container(args: &[&str], env: &[(&str, &str)]) -> Container {
        serde_json::from_value(serde_json::json!({
            "name": "c",
            "args": args,
            "env": env.iter().map(|(n, v)| serde_json::json!({"name": n, "value": v})).collect::<Vec<_>>(),
        }))
        .unwrap()
    }

    #[test]
    fn flags_are_read_in_every_form_the_controller_takes() {
        let c = container(
            &["--key-renew-period=24h", "-key-prefix", "mykeys", "--backup-age-recipients", "age1a,age1b"],
            &[],
        );
        assert_eq!(flag(&c, "key-renew-period", "X").as_deref(), Some("24h"));
        assert_eq!(flag(&c, "key-prefix", "X").as_deref(), Some("mykeys"));
        assert_eq!(flag(&c, "backup-age-recipients", "X").as_deref(), Some("age1a,age1b"));
        let c = container(&[], &[("SEALED_SECRETS_KEY_RENEW_PERIOD", "0")]);
        assert_eq!(flag(&c, "key-renew-period", "SEALED_SECRETS_KEY_RENEW_PERIOD").as_deref(), Some("0"));
        assert_eq!(flag(&c, "key-prefix", "SEALED_SECRETS_KEY_PREFIX"), None);
        // A flag whose name starts like another is not it.
        let c = container(&["--key-renew-period-x=1h"], &[]);
        assert_eq!(flag(&c, "key-renew-period", "X"), None);
    }

    #[test]
    fn versions_are_tags_or_digests() {
        assert_eq!(version_of("ghcr.io/sealant-dev/sealant-controller:0.1.0"), "0.1.0");
        assert_eq!(version_of("localhost:5000/sealant"), "latest");
        assert_eq!(version_of("r.example/s@sha256:abc"), "sha256:abc");
    }

    #[test]
    fn ages_read_like_kubectls() {
        assert_eq!(human_secs(5), "5s");
        assert_eq!(human_secs(600), "10m");
        assert_eq!(human_secs(3 * 3600), "3h");
        assert_eq!(human_secs(30 * 86400), "30d");
    }
}
