//! The commands of `.sealant.yaml` (README "Environments"): `config explain` and `config check`
//! say what the config decides and whether it holds together; `certs fetch` refreshes the
//! committed certificates from each cluster's controller and `certs check` (for CI) fails when
//! one is not the certificate its cluster seals with, does not match its pin, or expires soon.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use sealant_core::Certificate;
use time::OffsetDateTime;

use crate::cluster::{ClusterArgs, fetch_cert_from_cluster, fetch_url};
use crate::commands::cert::parse;
use crate::config::{ClusterEntry, Config, Decision, shown};
use crate::error::{CliError, CliResult};
use crate::io::{self, Privacy};

#[derive(Debug, clap::Subcommand)]
pub enum ConfigCommand {
    /// For each file: the rule that matches it, its cluster(s), certificate and fingerprint,
    /// scope and output path.
    Explain {
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
    },
    /// Check the .sealant.yaml found from DIR (default: the current directory) upwards.
    Check {
        #[arg(value_name = "DIR", default_value = ".")]
        dir: PathBuf,
    },
}

#[derive(Debug, clap::Subcommand)]
pub enum CertsCommand {
    /// Fetch each cluster's certificate from its controller (through its kubeconfig context) into
    /// the committed file, showing the fingerprint change.
    Fetch(CertsArgs),
    /// Fail when a committed certificate is not the one its cluster's controller seals with
    /// (online), does not match its pin, or expires soon.
    Check(CertsCheckArgs),
}

#[derive(Debug, clap::Args)]
pub struct CertsArgs {
    /// Clusters to work on (default: every cluster of the config).
    #[arg(value_name = "CLUSTER")]
    pub clusters: Vec<String>,
    /// Where to look for .sealant.yaml (from there upwards).
    #[arg(long, value_name = "DIR", default_value = ".")]
    pub config_dir: PathBuf,
}

#[derive(Debug, clap::Args)]
pub struct CertsCheckArgs {
    #[command(flatten)]
    pub certs: CertsArgs,
    /// Check only the files: present, parseable, their pins, their expiry.
    #[arg(long)]
    pub offline: bool,
    /// Fail when a certificate expires within this many days.
    #[arg(long, value_name = "DAYS", default_value_t = 30)]
    pub expiry_days: u32,
}

pub async fn config(command: &ConfigCommand) -> CliResult {
    match command {
        ConfigCommand::Explain { files } => explain(files),
        ConfigCommand::Check { dir } => check(dir),
    }
}

fn explain(files: &[PathBuf]) -> CliResult {
    let mut out = String::new();
    let mut failed = 0;
    for file in files {
        let config = match Config::for_file(file)? {
            Some(config) => config,
            None => {
                out.push_str(&format!(
                    "{}: no {} in its directory or above\n",
                    file.display(),
                    crate::config::FILE_NAME
                ));
                failed += 1;
                continue;
            }
        };
        match config.decide(file) {
            Ok(decision) => out.push_str(&describe(&config, file, &decision)),
            Err(e) => {
                out.push_str(&format!("{}: {e}\n", file.display()));
                failed += 1;
            }
        }
    }
    io::print(&out)?;
    match failed {
        0 => Ok(()),
        n => Err(CliError::new(format!("{n} of {} files have no rule", files.len()))),
    }
}

/// What the config decides for one file, as `config explain` prints it.
fn describe(config: &Config, file: &Path, decision: &Decision<'_>) -> String {
    let mut out = format!(
        "{}\n  config:  {}\n  rule:    {} (path_regex {})\n  scope:   {}\n",
        file.display(),
        shown(&config.path),
        decision.rule,
        decision.path_regex,
        decision.scope.map_or("from the Secret's annotations, else strict".to_owned(), |s| s.to_string())
    );
    for target in &decision.targets {
        let fingerprint =
            certificate_file(config, target.entry).map_or_else(|e| format!("({e})"), |c| c.public_key().fingerprint());
        out.push_str(&format!(
            "  cluster: {}\n    cert:   {} {fingerprint}\n    output: {}\n",
            target.cluster,
            target.entry.cert,
            target.output.as_deref().map_or("standard output".to_owned(), shown)
        ));
    }
    out
}

/// A cluster's committed certificate, parsed (a URL is not read here).
fn certificate_file(config: &Config, entry: &ClusterEntry) -> Result<Certificate, String> {
    let Some(path) = config.cert_file(entry) else {
        return Err(format!("fetched from {}", entry.cert));
    };
    let pem = std::fs::read_to_string(&path).map_err(|e| format!("cannot read {}: {e}", shown(&path)))?;
    Certificate::from_pem(&pem).map_err(|e| format!("{} is not a PEM certificate: {e}", shown(&path)))
}

fn check(dir: &Path) -> CliResult {
    let config = Config::from_dir(dir)?;
    let mut problems = Vec::new();
    for (name, entry) in &config.clusters {
        if config.cert_file(entry).is_some() {
            match certificate_file(&config, entry) {
                Ok(cert) => {
                    let fingerprint = cert.public_key().fingerprint();
                    if let Some(pin) = entry.fingerprint.as_deref().filter(|p| *p != fingerprint) {
                        problems.push(format!(
                            "cluster {name}: {} has fingerprint {fingerprint}, the pin is {pin}",
                            entry.cert
                        ));
                    }
                }
                Err(e) => problems.push(format!("cluster {name}: {e} (sealant certs fetch {name} writes it)")),
            }
        }
    }
    let captures = config.rules.iter().any(|r| r.clusters.is_empty());
    if !captures {
        let used: BTreeSet<&String> = config.rules.iter().flat_map(|r| &r.clusters).collect();
        for name in config.clusters.keys().filter(|n| !used.contains(n)) {
            problems.push(format!("cluster {name}: no rule uses it"));
        }
    }
    if config.rules.is_empty() {
        problems.push("no rules: no file would be sealed through this config".to_owned());
    }
    let mut out =
        format!("{}: {} clusters, {} rules\n", shown(&config.path), config.clusters.len(), config.rules.len());
    for p in &problems {
        out.push_str(&format!("  - {p}\n"));
    }
    io::print(&out)?;
    match problems.len() {
        0 => Ok(()),
        n => Err(CliError::new(format!("{n} problem{} in {}", if n == 1 { "" } else { "s" }, shown(&config.path)))),
    }
}

/// The config's clusters that `names` selects (all when empty); unknown names are an error.
fn selected<'a>(config: &'a Config, names: &[String]) -> CliResult<Vec<(&'a String, &'a ClusterEntry)>> {
    if names.is_empty() {
        return Ok(config.clusters.iter().collect());
    }
    names
        .iter()
        .map(|n| {
            config.clusters.get_key_value(n).ok_or_else(|| {
                CliError::usage(format!(
                    "{} defines no cluster {n} (it has: {})",
                    shown(&config.path),
                    config.clusters.keys().cloned().collect::<Vec<_>>().join(", ")
                ))
            })
        })
        .collect()
}

/// How to reach a cluster's controller: its context and controller, the global flags otherwise.
fn reach(global: &ClusterArgs, entry: &ClusterEntry) -> ClusterArgs {
    let mut args = global.clone();
    if let Some(context) = &entry.context {
        args.context = Some(context.clone());
    }
    if let Some(name) = &entry.controller_name {
        args.controller_name = name.clone();
    }
    if let Some(namespace) = &entry.controller_namespace {
        args.controller_namespace = namespace.clone();
    }
    args
}

/// The certificate the cluster's controller seals with now.
async fn current(global: &ClusterArgs, entry: &ClusterEntry) -> CliResult<String> {
    if entry.cert.starts_with("http://") || entry.cert.starts_with("https://") {
        return fetch_url(&entry.cert, global.client.request_timeout).await;
    }
    fetch_cert_from_cluster(&reach(global, entry)).await
}

pub async fn certs(command: &CertsCommand, global: &ClusterArgs) -> CliResult {
    match command {
        CertsCommand::Fetch(args) => fetch(args, global).await,
        CertsCommand::Check(args) => certs_check(args, global).await,
    }
}

async fn fetch(args: &CertsArgs, global: &ClusterArgs) -> CliResult {
    let config = Config::from_dir(&args.config_dir)?;
    let mut out = String::new();
    for (name, entry) in selected(&config, &args.clusters)? {
        let Some(path) = config.cert_file(entry) else {
            out.push_str(&format!("{name}: {} is a URL, nothing to write\n", entry.cert));
            continue;
        };
        let pem = current(global, entry).await?;
        let cert = parse(&pem)?;
        let fingerprint = cert.public_key().fingerprint();
        if let Some(pin) = entry.fingerprint.as_deref().filter(|p| *p != fingerprint) {
            return Err(CliError::new(format!(
                "cluster {name}: its controller serves {fingerprint}, but {} pins {pin}; nothing written",
                shown(&config.path)
            ))
            .hint(
                "if the key was rotated on purpose, update the pin (sealant cert --info prints it), then fetch again",
            ));
        }
        let before = certificate_file(&config, entry).ok().map(|c| c.public_key().fingerprint());
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| CliError::new(format!("cannot create {}", shown(dir))).source(e))?;
        }
        match before {
            Some(old) if old == fingerprint => out.push_str(&format!("{name}: {fingerprint} (unchanged)\n")),
            Some(old) => {
                io::write_atomic(&path, pem.as_bytes(), Privacy::Public)?;
                out.push_str(&format!("{name}: {old} -> {fingerprint} ({})\n", entry.cert));
            }
            None => {
                io::write_atomic(&path, pem.as_bytes(), Privacy::Public)?;
                out.push_str(&format!("{name}: {fingerprint} (new, {})\n", entry.cert));
            }
        }
    }
    io::print(&out)
}

async fn certs_check(args: &CertsCheckArgs, global: &ClusterArgs) -> CliResult {
    let config = Config::from_dir(&args.certs.config_dir)?;
    let now = OffsetDateTime::now_utc();
    let soon = now + time::Duration::days(i64::from(args.expiry_days));
    let mut out = String::new();
    let mut failed = 0;
    for (name, entry) in selected(&config, &args.certs.clusters)? {
        let mut problems = Vec::new();
        let committed = if config.cert_file(entry).is_some() {
            match certificate_file(&config, entry) {
                Ok(cert) => Some(cert),
                Err(e) => {
                    problems.push(e);
                    None
                }
            }
        } else {
            None
        };
        if let Some(cert) = &committed {
            let fingerprint = cert.public_key().fingerprint();
            if let Some(pin) = entry.fingerprint.as_deref().filter(|p| *p != fingerprint) {
                problems.push(format!("its fingerprint {fingerprint} is not the pinned {pin}"));
            }
            if cert.not_after() < soon {
                problems.push(format!("it expires {} (within {} days)", cert.not_after(), args.expiry_days));
            }
        }
        if !args.offline {
            match current(global, entry).await.and_then(|pem| parse(&pem)) {
                Ok(serving) => {
                    let serving_fp = serving.public_key().fingerprint();
                    match &committed {
                        Some(cert) if cert.public_key().fingerprint() != serving_fp => problems.push(format!(
                            "the controller seals with {serving_fp} now, not the committed {}: run sealant certs fetch {name}",
                            cert.public_key().fingerprint()
                        )),
                        _ => {}
                    }
                    if let Some(pin) = entry.fingerprint.as_deref().filter(|p| *p != serving_fp) {
                        problems.push(format!("the controller serves {serving_fp}, not the pinned {pin}"));
                    }
                }
                Err(e) => problems.push(format!("cannot reach its controller: {e}")),
            }
        }
        if problems.is_empty() {
            out.push_str(&format!("{name}: ok ({})\n", entry.cert));
        } else {
            failed += 1;
            for p in problems {
                out.push_str(&format!("{name}: {} {p}\n", entry.cert));
            }
        }
    }
    io::print(&out)?;
    match failed {
        0 => Ok(()),
        n => Err(CliError::new(format!("{n} cluster{} failed the check", if n == 1 { "" } else { "s" }))),
    }
}
