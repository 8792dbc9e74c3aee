//! The key runbook as commands: list, rotate, backup, restore, usage and retire.

use std::collections::BTreeMap;
use std::path::PathBuf;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};
use sealant_core::{Certificate, PrivateKey, Scope, backup, cert, hybrid::single_decrypt, yaml};
use sealant_crds::keys::{KeyName, backup_list, key_secret};
use sealant_crds::{SEALING_KEY_ANNOTATION, SealedSecret};
use serde_json::{Value, json};
use time::OffsetDateTime;

use crate::cluster::{ClusterArgs, cluster_client};
use crate::commands::keys::KEY_LABEL;
use crate::commands::unseal::load_keys;
use crate::commands::validate::sealed_secret_files;
use crate::error::{CliError, CliResult, Context, Hint};
use crate::io::{self, Privacy};
use crate::render;

/// The controller's `--key-prefix` default: generateName of keys and the legacy key's name.
const KEY_PREFIX: &str = "sealed-secrets-key";

/// One key Secret in the cluster, described without its private key.
#[derive(Debug)]
pub struct ClusterKey {
    pub secret: Secret,
    pub fingerprint: String,
    pub state: String,
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339).unwrap_or_else(|_| t.to_string())
}

/// Every key Secret in the controller's namespace (any label state, and the legacy key).
pub async fn cluster_keys(client: &Client, namespace: &str) -> CliResult<Vec<ClusterKey>> {
    let api = Api::<Secret>::namespaced(client.clone(), namespace);
    let mut secrets = api
        .list(&ListParams::default().labels(KEY_LABEL))
        .await
        .context(format!("cannot list the key Secrets in {namespace}"))
        .hint("you need permission to list Secrets in the controller's namespace (--controller-namespace)")?
        .items;
    if let Ok(Some(legacy)) = api.get_opt(KEY_PREFIX).await {
        secrets.push(legacy);
    }
    let mut keys = Vec::new();
    for secret in secrets {
        let Some(pem) = secret.data.as_ref().and_then(|d| d.get("tls.crt")) else {
            continue;
        };
        let Ok(certificate) = Certificate::from_pem(&String::from_utf8_lossy(&pem.0)) else {
            continue;
        };
        let state = secret.labels().get(KEY_LABEL).cloned().unwrap_or_else(|| "legacy".to_owned());
        keys.push(ClusterKey {
            fingerprint: certificate.public_key().fingerprint(),
            state,
            not_before: certificate.not_before(),
            not_after: certificate.not_after(),
            secret,
        });
    }
    keys.sort_by_key(|k| k.not_before);
    Ok(keys)
}

/// The key the controller seals with (default `--key-order-priority`): the newest loadable one.
fn sealing_key(keys: &[ClusterKey]) -> Option<&ClusterKey> {
    keys.iter().filter(|k| k.state == "active" || k.state == "legacy").max_by_key(|k| k.not_before)
}

pub async fn list(cluster: &ClusterArgs) -> CliResult {
    let client = cluster_client(cluster).await?;
    let keys = cluster_keys(&client, &cluster.controller_namespace).await?;
    let sealing = sealing_key(&keys).map(|k| k.fingerprint.clone());
    let mut out =
        format!("{:<52} {:<28} {:<21} {:<21} {:<12} SEALS\n", "FINGERPRINT", "SECRET", "CREATED", "NOT AFTER", "STATE");
    for key in &keys {
        let created = key
            .secret
            .metadata
            .creation_timestamp
            .as_ref()
            .map(|t| t.0.to_string())
            .unwrap_or_else(|| rfc3339(key.not_before));
        out.push_str(&format!(
            "{:<52} {:<28} {:<21} {:<21} {:<12} {}\n",
            key.fingerprint,
            key.secret.name_any(),
            created.get(..20).unwrap_or(&created),
            rfc3339(key.not_after),
            key.state,
            if Some(&key.fingerprint) == sealing.as_ref() { "yes" } else { "" }
        ));
    }
    io::print(&out)
}

#[derive(Debug, clap::Args)]
pub struct RotateCommand {
    /// RSA key size in bits.
    #[arg(long, default_value_t = 4096, value_parser = clap::value_parser!(u16).range(2048..=16384))]
    pub bits: u16,
    /// Certificate validity in days.
    #[arg(long, default_value_t = 3650)]
    pub days: u32,
}

/// A new key Secret, labelled active: the controller picks it up and seals with it.
pub async fn rotate(command: &RotateCommand, cluster: &ClusterArgs) -> CliResult {
    let client = cluster_client(cluster).await?;
    let ns = &cluster.controller_namespace;
    let valid_for = std::time::Duration::from_secs(u64::from(command.days) * 24 * 3600);
    let newest = cluster_keys(&client, ns).await?.iter().map(|k| k.not_before).max();
    let not_before = cert::next_not_before(OffsetDateTime::now_utc(), newest);
    let generated = cert::generate(&mut rand::rng(), usize::from(command.bits), valid_for, "", not_before)
        .map_err(|e| CliError::new("cannot generate the key").source(e))?;
    let secret =
        key_secret(&generated, KeyName::GenerateName(KEY_PREFIX.to_owned()), ns, BTreeMap::new(), BTreeMap::new());
    let created = Api::<Secret>::namespaced(client, ns)
        .create(&PostParams::default(), &secret)
        .await
        .context(format!("cannot create the key Secret in {ns}"))
        .hint("you need permission to create Secrets in the controller's namespace")?;
    io::print(&format!("{} {}\n", created.name_any(), generated.key.public().fingerprint()))
}

#[derive(Debug, clap::Args)]
pub struct BackupCommand {
    /// An age recipient (age1...) who may restore the backup. Repeatable.
    #[arg(long = "age-recipient", value_name = "RECIPIENT", required = true)]
    pub recipients: Vec<String>,
    /// The encrypted backup file to write.
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    pub output: PathBuf,
}

/// The key Secrets as a `v1 List`, encrypted to age recipients.
pub async fn backup_bundle(client: &Client, namespace: &str, recipients: &[String]) -> CliResult<(usize, Vec<u8>)> {
    let recipients = backup::parse_recipients(recipients)
        .map_err(|e| CliError::usage("cannot use the age recipients").source(e))
        .hint("give age recipients: age1... (as `age-keygen -y` prints) or ssh-ed25519 public keys")?;
    let keys = cluster_keys(client, namespace).await?;
    let list = backup_list(keys.iter().map(|k| &k.secret));
    let plain = zeroize::Zeroizing::new(render::documents(&[list], crate::io::Format::Yaml)?);
    let sealed = backup::encrypt(&recipients, plain.as_bytes())
        .map_err(|e| CliError::new("cannot encrypt the backup").source(e))?;
    Ok((keys.len(), sealed))
}

pub async fn backup(command: &BackupCommand, cluster: &ClusterArgs) -> CliResult {
    let client = cluster_client(cluster).await?;
    let (count, sealed) = backup_bundle(&client, &cluster.controller_namespace, &command.recipients).await?;
    io::write_atomic(&command.output, &sealed, Privacy::Private)?;
    eprintln!(
        "{count} key(s) backed up to {}, encrypted to {} recipient(s)",
        command.output.display(),
        command.recipients.len()
    );
    Ok(())
}

#[derive(Debug, clap::Args)]
pub struct RestoreCommand {
    /// The encrypted backup file.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    /// An age identity file (AGE-SECRET-KEY-1...) of one of the backup's recipients.
    #[arg(short = 'i', long = "identity", value_name = "FILE", required = true)]
    pub identity: PathBuf,
}

pub async fn restore(command: &RestoreCommand, cluster: &ClusterArgs) -> CliResult {
    let sealed = io::read_bytes(&command.file)?;
    let identity = zeroize::Zeroizing::new(io::read_bytes(&command.identity)?);
    let plain = backup::decrypt(&identity, &sealed)
        .map_err(|e| CliError::new(format!("cannot decrypt {}", command.file.display())).source(e))
        .hint("give the identity (-i) of one of the recipients the backup was made for")?;
    let text = zeroize::Zeroizing::new(String::from_utf8_lossy(plain.expose()).into_owned());
    let docs =
        yaml::parse_documents(&text).map_err(|e| CliError::new("the backup does not hold key Secrets").source(e))?;
    let items: Vec<Value> = docs
        .into_iter()
        .flat_map(|d| d.get("items").and_then(Value::as_array).cloned().unwrap_or_else(|| vec![d]))
        .collect();
    let client = cluster_client(cluster).await?;
    let ns = &cluster.controller_namespace;
    let api = Api::<Secret>::namespaced(client, ns);
    let (mut created, mut present) = (0, 0);
    for mut item in items {
        item["metadata"]["namespace"] = json!(ns);
        let secret: Secret =
            serde_json::from_value(item).map_err(|e| CliError::new("the backup holds an invalid Secret").source(e))?;
        match api.create(&PostParams::default(), &secret).await {
            Ok(_) => created += 1,
            Err(kube::Error::Api(s)) if s.code == 409 => present += 1,
            Err(e) => {
                return Err(CliError::new(format!("cannot restore {}", secret.name_any()))
                    .source(e)
                    .hint("you need permission to create Secrets in the controller's namespace"));
            }
        }
    }
    eprintln!("{created} key(s) restored into {ns}, {present} already there");
    Ok(())
}

/// Who depends on which key.
#[derive(Debug, Default)]
pub struct Usage {
    /// fingerprint → places (`file: ns/name` or `cluster: ns/name`).
    pub by_key: BTreeMap<String, Vec<String>>,
    /// Places whose key could not be told.
    pub unknown: Vec<String>,
}

fn annotated_keys(ss: &SealedSecret) -> Vec<String> {
    ss.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(SEALING_KEY_ANNOTATION))
        .map(|v| v.split(',').map(|s| s.trim().to_owned()).filter(|s| !s.is_empty()).collect())
        .unwrap_or_default()
}

/// The keys that open the items of `ss`, by trying each private key.
fn keys_by_trial(ss: &SealedSecret, keys: &[PrivateKey]) -> Vec<String> {
    let ns = ss.metadata.namespace.clone().unwrap_or_default();
    let name = ss.metadata.name.clone().unwrap_or_default();
    let label = Scope::from_annotations(ss.metadata.annotations.as_ref()).label(&ns, &name);
    let mut found: Vec<String> = Vec::new();
    for item in ss.spec.encrypted_data.values() {
        let Ok(bytes) = STANDARD.decode(item) else { continue };
        if let Some(key) = keys.iter().find(|k| matches!(single_decrypt(k, &bytes, &label), Ok(Some(_)))) {
            let fp = key.fingerprint().to_owned();
            if !found.contains(&fp) {
                found.push(fp);
            }
        }
    }
    found
}

impl Usage {
    fn add(&mut self, ss: &SealedSecret, place: String, keys: &[PrivateKey]) {
        let mut fingerprints = annotated_keys(ss);
        if fingerprints.is_empty() && !keys.is_empty() {
            fingerprints = keys_by_trial(ss, keys);
        }
        if fingerprints.is_empty() {
            self.unknown.push(place);
            return;
        }
        for fp in fingerprints {
            self.by_key.entry(fp).or_default().push(place.clone());
        }
    }
}

#[derive(Debug, clap::Args)]
pub struct UsageArgs {
    /// SealedSecret files and directories to look through.
    #[arg(value_name = "PATH")]
    pub paths: Vec<PathBuf>,
    /// Private keys to attribute files without our annotation by trial (repeatable).
    #[arg(long = "private-key", value_name = "FILE", value_delimiter = ',')]
    pub private_keys: Vec<PathBuf>,
    /// Also look at the SealedSecrets in the cluster (the default when no PATH is given).
    #[arg(long)]
    pub cluster: bool,
    /// Look at the cluster's SealedSecrets in these namespaces only (default: all). Repeatable.
    #[arg(long = "in-namespace", value_name = "NAMESPACE")]
    pub in_namespaces: Vec<String>,
}

pub async fn collect_usage(args: &UsageArgs, cluster: &ClusterArgs, client: Option<&Client>) -> CliResult<Usage> {
    let keys = if args.private_keys.is_empty() { Vec::new() } else { load_keys(&args.private_keys)? };
    let mut usage = Usage::default();
    for (path, _) in sealed_secret_files(&args.paths)? {
        let Ok(Ok(text)) = io::read_document(&path).map(String::from_utf8) else {
            continue;
        };
        let Ok(docs) = yaml::parse_documents(&text) else {
            continue;
        };
        for doc in docs.into_iter().filter(|d| d.get("kind").and_then(Value::as_str) == Some("SealedSecret")) {
            let Ok(ss) = serde_json::from_value::<SealedSecret>(doc) else {
                continue;
            };
            let place = format!("file {}: {}/{}", path.display(), ss.namespace().unwrap_or_default(), ss.name_any());
            usage.add(&ss, place, &keys);
        }
    }
    if args.cluster || args.paths.is_empty() {
        let owned;
        let client = match client {
            Some(c) => c,
            None => {
                owned = cluster_client(cluster).await?;
                &owned
            }
        };
        let mut items = Vec::new();
        let scopes: Vec<Api<SealedSecret>> = if args.in_namespaces.is_empty() {
            vec![Api::all(client.clone())]
        } else {
            args.in_namespaces.iter().map(|ns| Api::namespaced(client.clone(), ns)).collect()
        };
        for api in scopes {
            let listed =
                api.list(&ListParams::default()).await.context("cannot list the SealedSecrets in the cluster").hint(
                    "you need permission to list SealedSecrets (narrow with --in-namespace), or give only PATHs",
                )?;
            items.extend(listed.items);
        }
        for ss in items {
            let place = format!("cluster: {}/{}", ss.namespace().unwrap_or_default(), ss.name_any());
            usage.add(&ss, place, &keys);
        }
    }
    Ok(usage)
}

pub async fn usage(args: &UsageArgs, cluster: &ClusterArgs) -> CliResult {
    let client = cluster_client(cluster).await.ok();
    let cluster_keys = match &client {
        Some(c) => cluster_keys(c, &cluster.controller_namespace).await.unwrap_or_default(),
        None => Vec::new(),
    };
    let usage = collect_usage(args, cluster, client.as_ref()).await?;
    let mut out = String::new();
    let mut shown: Vec<&String> = Vec::new();
    for key in &cluster_keys {
        out.push_str(&format!("{} ({}, {})\n", key.fingerprint, key.secret.name_any(), key.state));
        match usage.by_key.get(&key.fingerprint) {
            Some(places) => places.iter().for_each(|p| out.push_str(&format!("  {p}\n"))),
            None => out.push_str("  no dependents\n"),
        }
        shown.push(&key.fingerprint);
    }
    for (fp, places) in usage.by_key.iter().filter(|(fp, _)| !shown.contains(fp)) {
        out.push_str(&format!("{fp} (not in the cluster)\n"));
        places.iter().for_each(|p| out.push_str(&format!("  {p}\n")));
    }
    if !usage.unknown.is_empty() {
        out.push_str("unknown key (no sealant.dev/sealing-key annotation; pass --private-key to tell)\n");
        usage.unknown.iter().for_each(|p| out.push_str(&format!("  {p}\n")));
    }
    io::print(&out)
}

#[derive(Debug, clap::Args)]
pub struct RetireCommand {
    /// Fingerprint (SHA256:...) of the key to retire.
    #[arg(value_name = "FINGERPRINT")]
    pub fingerprint: String,
    #[command(flatten)]
    pub usage: UsageArgs,
    /// Retire even if files or objects may still depend on the key (e.g. it has leaked).
    #[arg(long)]
    pub force: bool,
    /// The label value to set: the controller loads only `active` keys.
    #[arg(long, default_value = "retired", value_parser = ["retired", "compromised"])]
    pub state: String,
}

pub async fn retire(command: &RetireCommand, cluster: &ClusterArgs) -> CliResult {
    let client = cluster_client(cluster).await?;
    let ns = &cluster.controller_namespace;
    let keys = cluster_keys(&client, ns).await?;
    let Some(key) = keys.iter().find(|k| k.fingerprint == command.fingerprint) else {
        return Err(CliError::new(format!("no key Secret in {ns} has fingerprint {}", command.fingerprint))
            .hint("see the fingerprints with `sealant keys list`"));
    };
    if !command.force {
        if sealing_key(&keys).is_some_and(|k| k.fingerprint == key.fingerprint) {
            return Err(CliError::new(format!("{} is the key the controller seals with", key.fingerprint))
                .hint("run `sealant keys rotate` first, then `sealant reencrypt` your files"));
        }
        let args = UsageArgs {
            paths: command.usage.paths.clone(),
            private_keys: command.usage.private_keys.clone(),
            cluster: true,
            in_namespaces: command.usage.in_namespaces.clone(),
        };
        let usage = collect_usage(&args, cluster, Some(&client)).await?;
        let dependents = usage.by_key.get(&key.fingerprint).map_or(0, Vec::len);
        if dependents > 0 || !usage.unknown.is_empty() {
            let mut places: Vec<String> = usage.by_key.get(&key.fingerprint).cloned().unwrap_or_default();
            places.extend(usage.unknown.iter().map(|p| format!("{p} (unknown key)")));
            eprintln!("{}", places.iter().map(|p| format!("  {p}")).collect::<Vec<_>>().join("\n"));
            return Err(CliError::new(format!(
                "{} SealedSecret(s) may still depend on {}",
                places.len(),
                key.fingerprint
            ))
            .hint("re-encrypt them (`sealant reencrypt`) and apply them, pass --private-key to attribute unknown ones, or --force"));
        }
    }
    let patch = json!({"metadata": {"labels": {KEY_LABEL: command.state}}});
    Api::<Secret>::namespaced(client, ns)
        .patch(&key.secret.name_any(), &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .context(format!("cannot relabel {}", key.secret.name_any()))
        .hint("you need permission to patch Secrets in the controller's namespace")?;
    eprintln!(
        "{} ({}) is now {}: the controller no longer uses it",
        key.fingerprint,
        key.secret.name_any(),
        command.state
    );
    Ok(())
}
