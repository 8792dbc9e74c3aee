//! The `kubeseal` command line: the same flags, defaults and modes, mapped onto our commands.

use std::path::PathBuf;

use clap::Parser;
use sealant_core::Scope;

use crate::cluster::ClusterArgs;
use crate::commands::cert::{CertArgs, CertCommand};
use crate::commands::seal::{SealRequest, parse_scope};
use crate::commands::{cert, seal, unseal};
use crate::error::{CliError, CliResult};
use crate::io::Format;

fn parse_format(s: &str) -> Result<Format, String> {
    match s.to_ascii_lowercase().as_str() {
        "json" => Ok(Format::Json),
        "yaml" => Ok(Format::Yaml),
        other => Err(format!("unsupported output format: {other}")),
    }
}

/// kubeseal-compatible flags. Each can also be set as SEALED_SECRETS_<FLAG>.
#[derive(Debug, Parser)]
#[command(name = "kubeseal", version, about = "kubeseal-compatible interface of sealant")]
pub struct KubesealArgs {
    /// Certificate file or URL; overrides --controller-*.
    #[arg(long, env = "SEALED_SECRETS_CERT", value_name = "PATH|URL")]
    pub cert: Option<String>,
    #[arg(long, env = "SEALED_SECRETS_CONTROLLER_NAMESPACE", default_value = "kube-system")]
    pub controller_namespace: String,
    #[arg(
        long,
        env = "SEALED_SECRETS_CONTROLLER_NAME",
        default_value = "sealed-secrets-controller"
    )]
    pub controller_name: String,
    /// Output format: json or yaml.
    #[arg(short = 'o', long = "format", env = "SEALED_SECRETS_FORMAT", default_value = "json", value_parser = parse_format)]
    pub format: Format,
    /// Output file (a .yaml/.yml extension forces yaml).
    #[arg(short = 'w', long = "sealed-secret-file", env = "SEALED_SECRETS_SEALED_SECRET_FILE")]
    pub sealed_secret_file: Option<PathBuf>,
    /// Input file (default: standard input).
    #[arg(short = 'f', long = "secret-file", env = "SEALED_SECRETS_SECRET_FILE")]
    pub secret_file: Option<PathBuf>,
    /// Print the certificate and exit.
    #[arg(long, env = "SEALED_SECRETS_FETCH_CERT")]
    pub fetch_cert: bool,
    #[arg(long, env = "SEALED_SECRETS_ALLOW_EMPTY_DATA")]
    pub allow_empty_data: bool,
    /// Merge into an existing SealedSecret file in place.
    #[arg(long, env = "SEALED_SECRETS_MERGE_INTO")]
    pub merge_into: Option<PathBuf>,
    /// Encrypt one value (from --from-file or standard input).
    #[arg(long, env = "SEALED_SECRETS_RAW")]
    pub raw: bool,
    #[arg(long, env = "SEALED_SECRETS_NAME")]
    pub name: Option<String>,
    #[arg(short = 'n', long, env = "SEALED_SECRETS_NAMESPACE")]
    pub namespace: Option<String>,
    #[arg(long, env = "SEALED_SECRETS_FROM_FILE")]
    pub from_file: Vec<String>,
    #[arg(long, env = "SEALED_SECRETS_SCOPE", value_parser = parse_scope)]
    pub scope: Option<Scope>,
    /// Decrypt offline with --recovery-private-key.
    #[arg(long, env = "SEALED_SECRETS_RECOVERY_UNSEAL")]
    pub recovery_unseal: bool,
    #[arg(long, env = "SEALED_SECRETS_RECOVERY_PRIVATE_KEY", value_delimiter = ',')]
    pub recovery_private_key: Vec<PathBuf>,
    #[arg(long, env = "SEALED_SECRETS_KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,
    #[arg(long)]
    pub context: Option<String>,
    /// Not available yet: arrives with the controller.
    #[arg(long, hide = true)]
    pub validate: bool,
    #[arg(long = "re-encrypt", alias = "rotate", hide = true)]
    pub re_encrypt: bool,
}

pub async fn run(args: KubesealArgs) -> CliResult {
    let cluster = ClusterArgs {
        kubeconfig: args.kubeconfig.clone(),
        context: args.context.clone(),
        controller_name: args.controller_name.clone(),
        controller_namespace: args.controller_namespace.clone(),
    };
    let cert_args = CertArgs {
        cert: args.cert.clone(),
        controller_url: None,
    };
    if !args.from_file.is_empty() && !args.raw {
        return Err(CliError::usage("--from-file requires --raw"));
    }
    if args.recovery_unseal {
        if args.recovery_private_key.is_empty() {
            return Err(CliError::usage("--recovery-unseal requires --recovery-private-key"));
        }
        return unseal::run(args.secret_file.as_deref(), &args.recovery_private_key, args.format);
    }
    if args.validate || args.re_encrypt {
        return Err(CliError::usage(
            "--validate and --re-encrypt need the Sealant controller, which is not released yet",
        )
        .hint("use `sealant validate` for offline checks"));
    }
    if args.fetch_cert {
        return cert::run(
            &CertCommand {
                source: cert_args,
                info: false,
            },
            &cluster,
        )
        .await;
    }
    let request = SealRequest {
        file: args.secret_file,
        format: None,
        default_format: Some(args.format),
        write: args.sealed_secret_file,
        cert: cert_args,
        scope: args.scope,
        name: args.name,
        namespace: args.namespace,
        allow_empty_data: args.allow_empty_data,
        merge_into: args.merge_into,
        raw: args.raw,
        from_file: args.from_file,
        kubeseal: true,
    };
    seal::run(request, &cluster).await
}
