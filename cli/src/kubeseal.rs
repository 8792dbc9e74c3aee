//! The `kubeseal` command line: the same flags, defaults and modes, mapped onto our commands.

use sealant_core::error::quoted;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use clap::error::{ContextKind, ContextValue};
use sealant_core::Scope;

use crate::cluster::{ClientFlags, ClusterArgs, ControllerApi};
use crate::commands::cert::{CertArgs, CertCommand};
use crate::commands::seal::{SealRequest, parse_scope};
use crate::commands::{cert, reencrypt, seal, unseal};
use crate::error::{CliError, CliResult};
use crate::io::{self, Format, Privacy};
use crate::render;

fn parse_format(s: &str) -> Result<Format, String> {
    match s.to_ascii_lowercase().as_str() {
        "json" => Ok(Format::Json),
        "yaml" => Ok(Format::Yaml),
        other => Err(format!("unsupported output format: {other}")),
    }
}

/// kubeseal-compatible flags. Each can also be set as SEALED_SECRETS_<FLAG>.
#[derive(Debug, Parser)]
#[command(name = "kubeseal", version = crate::VERSION.as_str(), about = "kubeseal-compatible interface of sealant")]
pub struct KubesealArgs {
    /// Certificate file or URL; overrides --controller-*.
    #[arg(long, env = "SEALED_SECRETS_CERT", value_name = "PATH|URL")]
    pub cert: Option<String>,
    #[arg(long, env = "SEALED_SECRETS_CONTROLLER_NAMESPACE", default_value = "kube-system")]
    pub controller_namespace: String,
    #[arg(long, env = "SEALED_SECRETS_CONTROLLER_NAME", default_value = "sealed-secrets-controller")]
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
    #[arg(long, env = "SEALED_SECRETS_FETCH_CERT", action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true", require_equals = true, default_value = "false", value_parser = go_bool)]
    pub fetch_cert: bool,
    #[arg(long, env = "SEALED_SECRETS_ALLOW_EMPTY_DATA", action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true", require_equals = true, default_value = "false", value_parser = go_bool)]
    pub allow_empty_data: bool,
    /// Merge into an existing SealedSecret file in place.
    #[arg(long, env = "SEALED_SECRETS_MERGE_INTO")]
    pub merge_into: Option<PathBuf>,
    /// Encrypt one value (from --from-file or standard input).
    #[arg(long, env = "SEALED_SECRETS_RAW", action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true", require_equals = true, default_value = "false", value_parser = go_bool)]
    pub raw: bool,
    #[arg(long, env = "SEALED_SECRETS_NAME")]
    pub name: Option<String>,
    #[arg(short = 'n', long, env = "SEALED_SECRETS_NAMESPACE", value_parser = parse_namespace)]
    pub namespace: Option<String>,
    #[arg(long, env = "SEALED_SECRETS_FROM_FILE")]
    pub from_file: Vec<String>,
    #[arg(long, env = "SEALED_SECRETS_SCOPE", value_parser = parse_scope)]
    pub scope: Option<Scope>,
    /// Decrypt offline with --recovery-private-key.
    #[arg(long, env = "SEALED_SECRETS_RECOVERY_UNSEAL", action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true", require_equals = true, default_value = "false", value_parser = go_bool)]
    pub recovery_unseal: bool,
    #[arg(long, env = "SEALED_SECRETS_RECOVERY_PRIVATE_KEY", value_delimiter = ',')]
    pub recovery_private_key: Vec<PathBuf>,
    #[arg(long, env = "SEALED_SECRETS_KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,
    #[arg(long, env = "SEALED_SECRETS_CONTEXT")]
    pub context: Option<String>,
    /// Ask the controller whether it can decrypt the input SealedSecret(s).
    #[arg(long, env = "SEALED_SECRETS_VALIDATE", action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true", require_equals = true, default_value = "false", value_parser = go_bool)]
    pub validate: bool,
    /// Re-seal the input SealedSecret(s) to the controller's newest key.
    #[arg(long = "re-encrypt", alias = "rotate", env = "SEALED_SECRETS_RE_ENCRYPT", action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true", require_equals = true, default_value = "false", value_parser = go_bool)]
    pub re_encrypt: bool,
    #[command(flatten)]
    pub client: ClientFlags,
    #[command(flatten)]
    pub klog: KlogFlags,
}

/// klog's flags, which upstream's kubeseal registers (scripts pass `-v 5` or `--logtostderr`):
/// accepted and ignored, since sealant writes no log files and says what it does on stderr.
#[derive(Debug, clap::Args)]
pub struct KlogFlags {
    /// `-v 5`, `--v=2`, as often as given (the last one counts in klog).
    #[arg(short = 'v', long = "v", hide = true, value_name = "LEVEL", action = clap::ArgAction::Append)]
    pub verbosity: Vec<String>,
    #[arg(long, hide = true, value_name = "PATTERN=N")]
    pub vmodule: Option<String>,
    #[arg(long = "log_dir", hide = true)]
    pub log_dir: Option<String>,
    #[arg(long = "log_file", hide = true)]
    pub log_file: Option<String>,
    #[arg(long = "log_file_max_size", hide = true)]
    pub log_file_max_size: Option<String>,
    #[arg(long = "log_backtrace_at", hide = true)]
    pub log_backtrace_at: Option<String>,
    #[arg(long, hide = true)]
    pub stderrthreshold: Option<String>,
    #[arg(long, hide = true)]
    pub alsologtostderrthreshold: Option<String>,
    #[arg(long = "add_dir_header", hide = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true", require_equals = true, default_value = "false", value_parser = go_bool)]
    pub add_dir_header: bool,
    #[arg(long, hide = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true", require_equals = true, default_value = "false", value_parser = go_bool)]
    pub alsologtostderr: bool,
    #[arg(long, hide = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true", require_equals = true, default_value = "true", value_parser = go_bool)]
    pub logtostderr: bool,
    #[arg(long = "legacy_stderr_threshold_behavior", hide = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true", require_equals = true, default_value = "true", value_parser = go_bool)]
    pub legacy_stderr_threshold_behavior: bool,
    #[arg(long = "one_output", hide = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true", require_equals = true, default_value = "false", value_parser = go_bool)]
    pub one_output: bool,
    #[arg(long = "skip_headers", hide = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true", require_equals = true, default_value = "false", value_parser = go_bool)]
    pub skip_headers: bool,
    #[arg(long = "skip_log_headers", hide = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true", require_equals = true, default_value = "false", value_parser = go_bool)]
    pub skip_log_headers: bool,
}

/// A boolean as Go's strconv.ParseBool (and so pflag) reads it.
fn go_bool(text: &str) -> Result<bool, String> {
    match text {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(false),
        _ => Err(format!("invalid boolean {} (true or false)", quoted(text))),
    }
}

/// `-n`: a namespace, with the `ns/`, `namespace/` or `namespaces/` prefix client-go strips.
fn parse_namespace(text: &str) -> Result<String, String> {
    let name = ["ns/", "namespace/", "namespaces/"].iter().find_map(|p| text.strip_prefix(p)).unwrap_or(text);
    if name.is_empty() || name.contains('/') {
        return Err(format!("invalid namespace {}", quoted(text)));
    }
    Ok(name.to_owned())
}

/// A command line clap refused, with kubeseal's exit status: its flag library refuses unknown
/// flags and values of typed flags (booleans, durations) with 2, and it checks `--format` and
/// `--namespace` itself afterwards, failing with 1.
pub fn clap_exit(e: clap::Error) -> ExitCode {
    let checked_later = matches!(
        e.get(ContextKind::InvalidArg),
        Some(ContextValue::String(arg)) if arg.starts_with("--format") || arg.starts_with("--namespace")
    );
    if !checked_later {
        return crate::clap_exit(e);
    }
    let _ = e.print();
    ExitCode::from(crate::error::EXIT_FAILURE)
}

pub async fn run(args: KubesealArgs) -> CliResult {
    let cluster = ClusterArgs {
        kubeconfig: args.kubeconfig.clone(),
        context: args.context.clone(),
        controller_name: args.controller_name.clone(),
        controller_namespace: args.controller_namespace.clone(),
        client: args.client.clone(),
    };
    let cert_args = CertArgs { cert: args.cert.clone(), controller_url: None };
    if !args.from_file.is_empty() && !args.raw {
        return Err(CliError::usage("--from-file requires --raw"));
    }
    if args.recovery_unseal {
        if args.recovery_private_key.is_empty() {
            return Err(CliError::usage("--recovery-unseal requires --recovery-private-key"));
        }
        // kubeseal writes the recovered Secrets to -w when given.
        return unseal::run(
            args.secret_file.as_deref(),
            &args.recovery_private_key,
            args.format,
            args.sealed_secret_file.as_deref(),
        );
    }
    if args.validate || args.re_encrypt {
        return validate_or_re_encrypt(&args, &cluster).await;
    }
    if args.fetch_cert {
        return cert::run(&CertCommand { source: cert_args, info: false }, &cluster).await;
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
        from_literal: Vec::new(),
        from_env_var: Vec::new(),
        type_: None,
        kubeseal: true,
    };
    seal::run(request, &cluster).await
}

/// `--validate` and `--re-encrypt`: each SealedSecret of the input goes to the controller.
async fn validate_or_re_encrypt(args: &KubesealArgs, cluster: &ClusterArgs) -> CliResult {
    let origin = args.secret_file.as_deref().map_or("standard input".to_owned(), |p| p.display().to_string());
    let text = io::read_input(args.secret_file.as_deref(), "SealedSecret")?;
    let docs = sealant_core::yaml::parse_documents(&text)
        .map_err(|e| CliError::new(format!("cannot parse {origin}")).source(e))?;
    if docs.is_empty() {
        return Err(CliError::new(format!("no SealedSecret found in {origin}")));
    }
    let api = ControllerApi::connect(None, cluster).await?;
    if args.validate {
        for doc in &docs {
            let name = doc.pointer("/metadata/name").and_then(serde_json::Value::as_str).unwrap_or_default();
            let (code, body) = api.post_patiently("/v1/verify", doc.to_string().into_bytes()).await?;
            match code {
                200 => {}
                409 => return Err(CliError::new(format!("unable to decrypt sealed secret: {name}"))),
                _ => return Err(CliError::new(format!("cannot validate sealed secret: {}", body.trim()))),
            }
        }
        return Ok(());
    }
    let mut rotated = Vec::with_capacity(docs.len());
    for doc in &docs {
        let mut fresh = reencrypt::rotate(&api, doc).await?;
        if let Some(meta) = fresh.get_mut("metadata").and_then(serde_json::Value::as_object_mut) {
            for field in ["creationTimestamp", "deletionTimestamp", "generation"] {
                meta.remove(field);
            }
        }
        rotated.push(fresh);
    }
    let format = match (&args.sealed_secret_file, &args.secret_file) {
        (Some(out), _) => Format::from_extension(out).filter(|f| *f == Format::Yaml).unwrap_or(args.format),
        _ => args.format,
    };
    let text = render::documents(&rotated, format)?;
    match (&args.sealed_secret_file, &args.secret_file) {
        (Some(out), _) => io::write_atomic(out, text.as_bytes(), Privacy::Public),
        (None, Some(input)) => io::write_atomic(input, text.as_bytes(), Privacy::Public),
        (None, None) => io::print(&text),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaces_as_client_go_reads_them() {
        for given in ["demo", "ns/demo", "namespace/demo", "namespaces/demo"] {
            assert_eq!(parse_namespace(given).as_deref(), Ok("demo"), "{given}");
        }
        assert!(parse_namespace("pods/demo").is_err());
        assert!(parse_namespace("ns/").is_err());
    }

    #[test]
    fn booleans_as_pflag_reads_them() {
        let args = KubesealArgs::try_parse_from(["kubeseal", "--raw=T", "--validate=0", "--fetch-cert"]);
        let args = args.unwrap_or_else(|e| panic!("{e}"));
        assert!(args.raw && !args.validate && args.fetch_cert);
    }
}
