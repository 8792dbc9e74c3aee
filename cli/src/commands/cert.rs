//! `sealant cert`: where the sealing certificate comes from, and printing it.

use std::path::Path;

use sealant_core::Certificate;
use time::OffsetDateTime;

use crate::cluster::{self, ClusterArgs};
use crate::error::{CliError, CliResult, Hint};
use crate::io;

/// Where to take the certificate from; the cluster when neither is given.
#[derive(Clone, Debug, Default, clap::Args)]
pub struct CertArgs {
    /// Certificate file, or an http(s):// or file:// URL.
    #[arg(long, value_name = "PATH|URL", env = "SEALED_SECRETS_CERT")]
    pub cert: Option<String>,
    /// The controller's own URL, reached directly instead of through the API server.
    #[arg(long, value_name = "URL", env = "SEALED_SECRETS_CONTROLLER_URL", conflicts_with = "cert")]
    pub controller_url: Option<String>,
}

#[derive(Debug, clap::Args)]
pub struct CertCommand {
    #[command(flatten)]
    pub source: CertArgs,
    /// Print the fingerprint, key size and validity instead of the PEM.
    #[arg(long)]
    pub info: bool,
}

/// The certificate's PEM text, from wherever `args` say.
pub async fn load_pem(args: &CertArgs, cluster_args: &ClusterArgs) -> CliResult<String> {
    if let Some(url) = &args.controller_url {
        return cluster::fetch_cert_from_controller(url).await;
    }
    match args.cert.as_deref() {
        Some(url) if url.starts_with("http://") || url.starts_with("https://") => {
            cluster::fetch_url(url, cluster_args.client.request_timeout).await
        }
        Some(path) => io::read_file(Path::new(path.strip_prefix("file://").unwrap_or(path))),
        None => cluster::fetch_cert_from_cluster(cluster_args).await,
    }
}

pub fn parse(pem: &str) -> CliResult<Certificate> {
    Certificate::from_pem(pem)
        .map_err(|e| CliError::new("cannot read the certificate").source(e))
        .hint("give the controller's certificate (sealant cert > cert.pem) with --cert")
}

/// A certificate fit for sealing: parsed and not expired. A weak key, or one not valid yet, is
/// sealed to (kubeseal does, and a pipeline must not break) with a warning on stderr.
pub async fn sealing_certificate(args: &CertArgs, cluster_args: &ClusterArgs) -> CliResult<Certificate> {
    let cert = parse(&load_pem(args, cluster_args).await?)?;
    let now = OffsetDateTime::now_utc();
    cert.check_not_expired(now)
        .map_err(|e| CliError::new("cannot seal with this certificate").source(e))
        .hint("fetch the controller's current certificate (sealant cert), or renew the key in the cluster")?;
    for warning in sealing_warnings(&cert, now) {
        eprintln!("warning: {warning}");
    }
    Ok(cert)
}

/// What is wrong, but not fatal, with sealing to `cert` at `now`.
fn sealing_warnings(cert: &Certificate, now: OffsetDateTime) -> Vec<String> {
    let mut warnings = Vec::new();
    let bits = cert.public_key().bits();
    if bits < 2048 {
        warnings.push(format!(
            "the certificate's RSA key has {bits} bits, too few to keep a secret (controllers make 4096): \
             renew the key in the cluster (sealant keys rotate)"
        ));
    }
    if cert.not_before() > now {
        warnings.push(format!(
            "the certificate is not valid before {}: this machine's clock may be behind, or the \
             certificate is not the controller's",
            cert.not_before()
        ));
    }
    warnings
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339).unwrap_or_else(|_| t.to_string())
}

pub async fn run(command: &CertCommand, cluster_args: &ClusterArgs) -> CliResult {
    let pem = load_pem(&command.source, cluster_args).await?;
    let cert = parse(&pem)?;
    if !command.info {
        return io::print(cert.pem());
    }
    let expired = if OffsetDateTime::now_utc() > cert.not_after() { " (expired)" } else { "" };
    io::print(&format!(
        "fingerprint: {}\nkey size:    {} bits\nnot before:  {}\nnot after:   {}{expired}\n",
        cert.public_key().fingerprint(),
        cert.public_key().bits(),
        rfc3339(cert.not_before()),
        rfc3339(cert.not_after()),
    ))
}
