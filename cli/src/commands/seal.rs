//! `sealant seal`: Secrets in, SealedSecrets out; `--raw` for one value; `--merge-into`.

use sealant_core::error::quoted;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use k8s_openapi::api::core::v1::Secret;
use sealant_core::{Certificate, Scope, SecretBytes, hybrid_encrypt, yaml};
use sealant_crds::{SEALING_KEY_ANNOTATION, SealOptions, SealedSecret, seal_secret};
use serde_json::Value;

use crate::cluster::{ClusterArgs, kubeconfig_namespace, kubeconfig_readable};
use crate::commands::cert::{CertArgs, sealing_certificate};
use crate::config::Config;
use crate::error::{CliError, CliResult, Hint};
use crate::io::{self, Format, Privacy};
use crate::render;

#[derive(Debug, clap::Args)]
pub struct SealCommand {
    /// Input Secret(s): multi-document YAML or a JSON stream (default: standard input).
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value = "yaml")]
    pub format: Format,
    /// Write to FILE atomically instead of standard output; a .json/.yaml extension sets the format.
    #[arg(short = 'w', long = "write", value_name = "FILE")]
    pub write: Option<PathBuf>,
    #[command(flatten)]
    pub cert: CertArgs,
    /// Scope to seal for (default: from the Secret's annotations, else strict).
    #[arg(long, value_parser = parse_scope)]
    pub scope: Option<Scope>,
    /// Override the Secret's name (with --raw: the name to seal for).
    #[arg(long)]
    pub name: Option<String>,
    /// The namespace to seal for; must agree with the Secret's own.
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,
    /// Allow Secrets with neither data nor stringData.
    #[arg(long)]
    pub allow_empty_data: bool,
    /// Add the sealed items to this existing SealedSecret file, keeping its format and scope.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["write", "raw"])]
    pub merge_into: Option<PathBuf>,
    /// Seal one value (from --from-file or standard input) and print the item's base64.
    #[arg(long)]
    pub raw: bool,
    /// A data item from a file (`key=path`, or `path` for its file name as the key); with --raw,
    /// the value to seal. Repeatable.
    #[arg(long, value_name = "[KEY=]PATH")]
    pub from_file: Vec<String>,
    /// A data item given literally (`key=value`). Repeatable. Values typed on a command line
    /// end up in shell history: prefer --from-env-var in CI.
    #[arg(long, value_name = "KEY=VALUE")]
    pub from_literal: Vec<String>,
    /// A data item from an environment variable (`key=VARIABLE`). Repeatable.
    #[arg(long, value_name = "KEY=VARIABLE")]
    pub from_env_var: Vec<String>,
    /// The Secret's type when it is built from --from-* (default Opaque).
    #[arg(long = "type", value_name = "TYPE")]
    pub type_: Option<String>,
}

pub fn parse_scope(s: &str) -> Result<Scope, String> {
    s.parse::<Scope>().map_err(|e| e.to_string())
}

/// One sealing job, from either command line.
#[derive(Debug, Default)]
pub struct SealRequest {
    pub file: Option<PathBuf>,
    pub format: Option<Format>,
    pub default_format: Option<Format>,
    pub write: Option<PathBuf>,
    pub cert: CertArgs,
    pub scope: Option<Scope>,
    pub name: Option<String>,
    pub namespace: Option<String>,
    pub allow_empty_data: bool,
    pub merge_into: Option<PathBuf>,
    pub raw: bool,
    pub from_file: Vec<String>,
    pub from_literal: Vec<String>,
    pub from_env_var: Vec<String>,
    pub type_: Option<String>,
    /// kubeseal's habits: a missing namespace means "default"; `--raw` prints no newline.
    pub kubeseal: bool,
}

impl From<&SealCommand> for SealRequest {
    fn from(c: &SealCommand) -> Self {
        SealRequest {
            file: c.file.clone(),
            format: Some(c.format),
            default_format: None,
            write: c.write.clone(),
            cert: c.cert.clone(),
            scope: c.scope,
            name: c.name.clone(),
            namespace: c.namespace.clone(),
            allow_empty_data: c.allow_empty_data,
            merge_into: c.merge_into.clone(),
            raw: c.raw,
            from_file: c.from_file.clone(),
            from_literal: c.from_literal.clone(),
            from_env_var: c.from_env_var.clone(),
            type_: c.type_.clone(),
            kubeseal: false,
        }
    }
}

/// The namespace to use when neither the input nor `-n` names one: the kubeconfig context's.
/// As kubeseal (client-go) does it: the context's, else `default`; but without a kubeconfig to
/// read, none, and sealing fails rather than guess.
fn fallback_namespace(req: &SealRequest, cluster: &ClusterArgs) -> Option<String> {
    if !req.kubeseal {
        return kubeconfig_namespace(cluster);
    }
    kubeconfig_readable(cluster).then(|| kubeconfig_namespace(cluster).unwrap_or_else(|| "default".to_owned()))
}

/// The Secrets in an input text; every document must be a Secret.
pub fn parse_secrets(text: &str, origin: &str) -> CliResult<Vec<Secret>> {
    let docs = yaml::parse_documents(text)
        .map_err(|e| CliError::new(format!("cannot parse {origin}")).source(e))
        .hint("the input must be Secret manifests in YAML or JSON")?;
    if docs.is_empty() {
        return Err(CliError::new(format!("no secrets found in {origin}"))
            .hint("the input must hold at least one Secret in YAML or JSON, UTF-8 encoded"));
    }
    docs.into_iter()
        .enumerate()
        .map(|(i, doc)| {
            let kind = doc.get("kind").and_then(Value::as_str).unwrap_or("Secret");
            if kind != "Secret" || !doc.is_object() {
                return Err(CliError::new(format!("document {} of {origin} is a {kind}, not a Secret", i + 1))
                    .hint("seal takes plain Secret manifests (kind: Secret)"));
            }
            serde_json::from_value::<Secret>(doc)
                .map_err(|e| CliError::new(format!("document {} of {origin} is not a valid Secret", i + 1)).source(e))
                .hint("data values must be base64 strings and stringData values plain strings")
        })
        .collect()
}

pub async fn run(req: SealRequest, cluster: &ClusterArgs) -> CliResult {
    if !req.from_file.is_empty() && !req.raw && req.kubeseal {
        return Err(CliError::usage("--from-file requires --raw"));
    }
    if req.raw {
        if !req.from_literal.is_empty() || !req.from_env_var.is_empty() {
            return Err(CliError::usage("--raw takes its value from --from-file or standard input only"));
        }
        return seal_raw(&req, cluster).await;
    }
    let built = !(req.from_file.is_empty() && req.from_literal.is_empty() && req.from_env_var.is_empty());
    let secrets = if built {
        vec![secret_from_items(&req)?]
    } else {
        let origin = req.file.as_deref().map_or("standard input".to_owned(), |p| p.display().to_string());
        parse_secrets(&io::read_input(req.file.as_deref(), "Secret")?, &origin)?
    };
    // A file in a repository with a .sealant.yaml: its rule says for which cluster(s), unless a
    // certificate is given (flag or SEALED_SECRETS_CERT) or the command is kubeseal's.
    if req.cert.cert.is_none()
        && req.cert.controller_url.is_none()
        && !req.kubeseal
        && req.merge_into.is_none()
        && let Some(file) = &req.file
        && let Some(config) = Config::for_file(file)?
    {
        return seal_by_config(&req, &secrets, &config, file, cluster).await;
    }
    let cert = sealing_certificate(&req.cert, cluster).await?;
    if let Some(target) = &req.merge_into {
        return merge_into(&req, &cert, &secrets, target);
    }
    let text = seal_documents(&req, &cert, &secrets, req.scope, req.write.as_deref(), cluster)?;
    match &req.write {
        Some(path) => io::write_atomic(path, text.as_bytes(), Privacy::Public),
        None => io::print(&text),
    }
}

/// Seal `secrets` for every cluster the config's rule for `file` names, each into its output.
async fn seal_by_config(
    req: &SealRequest,
    secrets: &[Secret],
    config: &Config,
    file: &Path,
    cluster: &ClusterArgs,
) -> CliResult {
    let decision = config.decide(file)?;
    if decision.targets.len() > 1 && req.write.is_some() {
        return Err(CliError::usage(format!(
            "-w names one file, but rule {} of {} seals {} for {} clusters",
            decision.rule,
            crate::config::shown(&config.path),
            decision.relative,
            decision.targets.len()
        ))
        .hint("leave -w out: each cluster's output goes where the rule's output pattern says"));
    }
    let scope = req.scope.or(decision.scope);
    for target in &decision.targets {
        let source = CertArgs { cert: Some(config.cert_source(target.entry)), controller_url: None };
        let cert = sealing_certificate(&source, cluster).await?;
        let fingerprint = cert.public_key().fingerprint();
        if let Some(pin) = target.entry.fingerprint.as_deref().filter(|p| *p != fingerprint) {
            return Err(CliError::new(format!(
                "the certificate of cluster {} ({}) has fingerprint {fingerprint}, but {} pins {pin}",
                target.cluster,
                target.entry.cert,
                crate::config::shown(&config.path)
            ))
            .hint("fetch the right certificate (sealant certs fetch), or update the pin if the key was rotated on purpose"));
        }
        let output = req.write.as_deref().or(target.output.as_deref());
        let text = seal_documents(req, &cert, secrets, scope, output, cluster)?;
        match output {
            Some(path) => {
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir)
                        .map_err(|e| CliError::new(format!("cannot create {}", dir.display())).source(e))?;
                }
                io::write_atomic(path, text.as_bytes(), Privacy::Public)?;
            }
            None => io::print(&text)?,
        }
    }
    Ok(())
}

/// `secrets` sealed to `cert` as the text of the output (its format from `write`'s extension,
/// else -o, else YAML).
fn seal_documents(
    req: &SealRequest,
    cert: &Certificate,
    secrets: &[Secret],
    scope: Option<Scope>,
    write: Option<&Path>,
    cluster: &ClusterArgs,
) -> CliResult<String> {
    let needs_fallback = secrets.iter().any(|s| s.metadata.namespace.as_deref().unwrap_or_default().is_empty());
    let options = SealOptions {
        scope,
        name: req.name.clone(),
        namespace: req.namespace.clone(),
        default_namespace: if needs_fallback && req.namespace.is_none() {
            fallback_namespace(req, cluster)
        } else {
            None
        },
        allow_empty_data: req.allow_empty_data,
    };
    let mut rng = rand::rng();
    let mut values = Vec::with_capacity(secrets.len());
    for secret in secrets {
        let sealed = seal_secret(&mut rng, cert, secret, &options).map_err(|e| {
            let hint = seal_hint(&e);
            CliError::new(format!("cannot seal Secret {}", quoted(secret.metadata.name.as_deref().unwrap_or_default())))
                .source(e)
                .hint(hint)
        })?;
        values.push(render::to_value(&sealed)?);
    }
    let format = write.and_then(Format::from_extension).or(req.format).or(req.default_format).unwrap_or(Format::Yaml);
    render::documents(&values, format)
}

/// A Secret built in memory from --from-literal, --from-env-var and --from-file: nothing
/// plaintext is written anywhere.
fn secret_from_items(req: &SealRequest) -> CliResult<Secret> {
    let name = req.name.clone().ok_or_else(|| {
        CliError::usage("--from-literal, --from-env-var and --from-file need --name")
            .hint("pass --name NAME (and -n NAMESPACE)")
    })?;
    let split = |spec: &str, flag: &str| -> CliResult<(String, String)> {
        spec.split_once('=').filter(|(k, _)| !k.is_empty()).map(|(k, v)| (k.to_owned(), v.to_owned())).ok_or_else(
            || {
                CliError::usage(format!(
                    "{flag} expects KEY=..., got {}",
                    quoted(spec.split('=').next().unwrap_or_default())
                ))
            },
        )
    };
    let mut data: std::collections::BTreeMap<String, k8s_openapi::ByteString> = Default::default();
    let mut add = |key: String, value: Vec<u8>| -> CliResult {
        if data.insert(key.clone(), k8s_openapi::ByteString(value)).is_some() {
            return Err(CliError::usage(format!("the key {} is given twice", quoted(&key))));
        }
        Ok(())
    };
    for spec in &req.from_literal {
        let (key, value) = split(spec, "--from-literal")?;
        add(key, value.into_bytes())?;
    }
    for spec in &req.from_env_var {
        let (key, variable) = split(spec, "--from-env-var")?;
        let value = std::env::var_os(&variable).ok_or_else(|| {
            CliError::new(format!("the environment variable {variable} is not set"))
                .hint("export it, or check its name")
        })?;
        add(key, value.into_encoded_bytes())?;
    }
    for spec in &req.from_file {
        let (key, path) = match spec.split_once('=') {
            Some((k, p)) => (k.to_owned(), p.to_owned()),
            None => {
                let key = Path::new(spec).file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
                (key, spec.clone())
            }
        };
        add(key, io::read_bytes(Path::new(&path))?)?;
    }
    Ok(Secret {
        metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
            name: Some(name),
            namespace: req.namespace.clone(),
            ..Default::default()
        },
        type_: Some(req.type_.clone().unwrap_or_else(|| "Opaque".to_owned())),
        data: Some(data),
        ..Default::default()
    })
}

fn seal_hint(e: &sealant_crds::SealError) -> &'static str {
    use sealant_crds::SealError::*;
    match e {
        EmptyData(_) => "add data or stringData to the Secret, or pass --allow-empty-data",
        MissingName => "set metadata.name in the Secret, or pass --name",
        NamespaceMismatch { .. } => "drop -n, or change the Secret's metadata.namespace",
        MissingNamespace(..) => {
            "set metadata.namespace in the Secret or pass -n NAMESPACE (or seal --scope cluster-wide)"
        }
        Encrypt { .. } => "check that the certificate holds an RSA key of at least 2048 bits",
        _ => "check the Secret",
    }
}

async fn seal_raw(req: &SealRequest, cluster: &ClusterArgs) -> CliResult {
    if req.from_file.len() > 1 {
        return Err(CliError::usage("must provide only one --from-file when encrypting a single item with --raw"));
    }
    let scope = req.scope.unwrap_or_default();
    let namespace = match (&req.namespace, scope.needs_namespace()) {
        (Some(ns), _) => ns.clone(),
        (None, false) => String::new(),
        (None, true) => fallback_namespace(req, cluster).ok_or_else(|| {
            CliError::usage(format!("must provide the --namespace flag with --raw and --scope {scope}"))
                .hint("pass -n NAMESPACE, or --scope cluster-wide")
        })?,
    };
    let name = match (&req.name, scope.needs_name()) {
        (Some(name), _) => name.clone(),
        (None, false) => String::new(),
        (None, true) => {
            return Err(CliError::usage("must provide the --name flag with --raw and --scope strict")
                .hint("pass --name NAME, or --scope namespace-wide or cluster-wide"));
        }
    };
    let value = match req.from_file.first() {
        Some(spec) => {
            let path = spec.split_once('=').map_or(spec.as_str(), |(_, path)| path);
            SecretBytes::new(io::read_bytes(Path::new(path))?)
        }
        None => {
            use std::io::Read;
            let mut bytes = Vec::new();
            std::io::stdin()
                .lock()
                .read_to_end(&mut bytes)
                .map_err(|e| CliError::new("cannot read standard input").source(e))?;
            SecretBytes::new(bytes)
        }
    };
    let cert = sealing_certificate(&req.cert, cluster).await?;
    let item = hybrid_encrypt(&mut rand::rng(), cert.public_key(), value.expose(), &scope.label(&namespace, &name))
        .map_err(|e| CliError::new("cannot seal the value").source(e))?;
    let mut out = STANDARD.encode(item);
    if !req.kubeseal {
        out.push('\n');
    }
    io::print(&out)
}

/// Seal `secrets` into the one SealedSecret in `target`, with its name, namespace and scope, and
/// rewrite it in its own format.
fn merge_into(req: &SealRequest, cert: &Certificate, secrets: &[Secret], target: &Path) -> CliResult {
    let text = io::read_file(target)?;
    let origin = target.display().to_string();
    let docs = yaml::parse_documents(&text)
        .map_err(|e| CliError::new(format!("cannot parse {origin}")).source(e))
        .hint("--merge-into needs a file holding one SealedSecret")?;
    let [doc] = docs.as_slice() else {
        return Err(CliError::new(format!("{origin} holds {} documents, not one SealedSecret", docs.len()))
            .hint("--merge-into needs a file holding exactly one SealedSecret"));
    };
    let mut existing: SealedSecret = serde_json::from_value(doc.clone())
        .map_err(|e| CliError::new(format!("{origin} is not a SealedSecret")).source(e))
        .hint("--merge-into needs a file holding exactly one SealedSecret")?;
    let scope = Scope::from_annotations(existing.metadata.annotations.as_ref());
    if let Some(asked) = req.scope.filter(|s| *s != scope) {
        return Err(CliError::usage(format!("{origin} is sealed with scope {scope}, not {asked}"))
            .hint("drop --scope: merged items always take the file's scope"));
    }
    let options = SealOptions {
        scope: Some(scope),
        name: existing.metadata.name.clone(),
        namespace: None,
        default_namespace: existing.metadata.namespace.clone(),
        allow_empty_data: req.allow_empty_data,
    };
    let mut rng = rand::rng();
    for secret in secrets {
        let mut secret = secret.clone();
        secret.metadata.namespace = existing.metadata.namespace.clone();
        let sealed = seal_secret(&mut rng, cert, &secret, &options)
            .map_err(|e| CliError::new(format!("cannot seal into {origin}")).source(e))?;
        existing.spec.encrypted_data.extend(sealed.spec.encrypted_data);
        let template = &mut existing.spec.template.metadata;
        let new_template = sealed.spec.template.metadata;
        merge_map(&mut template.labels, new_template.labels);
        merge_map(&mut template.annotations, new_template.annotations);
    }
    let fingerprint = cert.public_key().fingerprint();
    let annotations = existing.metadata.annotations.get_or_insert_with(BTreeMap::new);
    let mut fingerprints: Vec<String> =
        annotations.get(SEALING_KEY_ANNOTATION).map(|v| v.split(',').map(str::to_owned).collect()).unwrap_or_default();
    if !fingerprints.contains(&fingerprint) {
        fingerprints.push(fingerprint);
    }
    annotations.insert(SEALING_KEY_ANNOTATION.to_owned(), fingerprints.join(","));

    let text = render::documents(&[render::to_value(&existing)?], Format::of_text(&text))?;
    io::write_atomic(target, text.as_bytes(), Privacy::Public)
}

fn merge_map(into: &mut Option<BTreeMap<String, String>>, from: Option<BTreeMap<String, String>>) {
    if let Some(from) = from.filter(|m| !m.is_empty()) {
        into.get_or_insert_with(BTreeMap::new).extend(from);
    }
}
