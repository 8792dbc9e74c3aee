//! `sealant keys restore`: backed-up keys back into the cluster.
//!
//! An age file needs only its recipient's public key to make, so a backup proves nothing about
//! who wrote it: whoever can hand an operator a file could slip in a key of their own (the
//! controller would then seal to it) or any other Secret. So only key Secrets are restored (a
//! `kubernetes.io/tls` Secret whose private key matches its certificate, with its name, labels
//! and annotations and nothing else), and only keys the operator expects: the committed
//! certificate or the fingerprint a pin holds (`--expect`), each fingerprint shown.

use super::*;

#[derive(Debug, clap::Args)]
pub struct RestoreCommand {
    /// The encrypted backup file.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    /// An age identity file (AGE-SECRET-KEY-1... or AGE-SECRET-KEY-PQ-1...) or an OpenSSH
    /// ed25519 key of one of the backup's recipients.
    #[arg(short = 'i', long = "identity", value_name = "FILE", required = true)]
    pub identity: PathBuf,
    /// A key the backup must hold, and the only ones restored: a certificate file (the one
    /// committed beside your SealedSecrets) or a fingerprint (`SHA256:...`, as `sealant cert
    /// --info` prints it). Repeatable.
    #[arg(long = "expect", value_name = "CERT_OR_FINGERPRINT", required_unless_present = "trust_backup")]
    pub expect: Vec<String>,
    /// Restore every key the backup holds without checking them against --expect: only for a
    /// backup you made yourself and kept where no one else could write.
    #[arg(long = "trust-backup", conflicts_with = "expect")]
    pub trust_backup: bool,
}

/// `--expect`'s values as fingerprints.
fn expected(values: &[String]) -> CliResult<Vec<String>> {
    values
        .iter()
        .map(|v| {
            if v.starts_with("SHA256:") {
                return Ok(v.clone());
            }
            let pem = io::read_input(Some(std::path::Path::new(v)), "certificate")?;
            let cert = Certificate::from_pem(&pem)
                .map_err(|e| CliError::new(format!("{v} is not a certificate")).source(e))
                .hint("give --expect a PEM certificate file or a SHA256:... fingerprint")?;
            Ok(cert.public_key().fingerprint())
        })
        .collect()
}

/// The key Secret `item` of the backup holds, rebuilt from its key material, its name, labels
/// and annotations, with its fingerprint; an error for anything that is not one.
fn key_secret_of(item: &Value, namespace: &str) -> CliResult<(Secret, String)> {
    let name = item["metadata"]["name"].as_str().unwrap_or_default().to_owned();
    let not_a_key = |why: &str| {
        CliError::new(format!("the backup holds {}, which is not a key Secret: {why}", sealant_core::error::quoted(&name)))
            .hint("a backup that holds anything but keys was not written by `sealant keys backup` or the controller: do not restore it")
    };
    if item["type"] != "kubernetes.io/tls" {
        return Err(not_a_key("its type is not kubernetes.io/tls"));
    }
    let field = |k: &str| {
        item["data"][k].as_str().and_then(|b| STANDARD.decode(b).ok()).ok_or_else(|| not_a_key(&format!("no {k}")))
    };
    let (key_pem, cert_pem) = (zeroize::Zeroizing::new(field("tls.key")?), field("tls.crt")?);
    let key = PrivateKey::from_pem(&String::from_utf8_lossy(&key_pem))
        .map_err(|_| not_a_key("tls.key is not a private key"))?;
    let cert = Certificate::from_pem(&String::from_utf8_lossy(&cert_pem))
        .map_err(|_| not_a_key("tls.crt is not a certificate"))?;
    if cert.public_key().fingerprint() != key.fingerprint() {
        return Err(not_a_key("its certificate is not its key's"));
    }
    let strings = |field: &str| -> Option<BTreeMap<String, String>> {
        serde_json::from_value(item["metadata"][field].clone())
            .ok()
            .filter(|m: &BTreeMap<String, String>| !m.is_empty())
    };
    let secret = Secret {
        metadata: kube::api::ObjectMeta {
            name: Some(name),
            namespace: Some(namespace.to_owned()),
            labels: strings("labels"),
            annotations: strings("annotations"),
            ..Default::default()
        },
        type_: Some("kubernetes.io/tls".to_owned()),
        data: Some(BTreeMap::from([
            ("tls.crt".to_owned(), k8s_openapi::ByteString(cert_pem)),
            ("tls.key".to_owned(), k8s_openapi::ByteString(key_pem.to_vec())),
        ])),
        ..Default::default()
    };
    Ok((secret, key.fingerprint().to_owned()))
}

pub async fn restore(command: &RestoreCommand, cluster: &ClusterArgs) -> CliResult {
    let expect = expected(&command.expect)?;
    let sealed = io::read_bytes(&command.file)?;
    let identity = zeroize::Zeroizing::new(io::read_bytes(&command.identity)?);
    let plain = age_keys::decrypt_with_file(&identity, &sealed)
        .map_err(|e| CliError::new(format!("cannot decrypt {}", command.file.display())).source(e))
        .hint("give the identity (-i) of one of the recipients the backup was made for")?;
    let text = zeroize::Zeroizing::new(String::from_utf8_lossy(plain.expose()).into_owned());
    let docs =
        yaml::parse_documents(&text).map_err(|e| CliError::new("the backup does not hold key Secrets").source(e))?;
    let items: Vec<Value> = docs
        .into_iter()
        .flat_map(|d| d.get("items").and_then(Value::as_array).cloned().unwrap_or_else(|| vec![d]))
        .collect();
    let ns = &cluster.controller_namespace;
    // Every item checked before anything is written.
    let keys = items.iter().map(|item| key_secret_of(item, ns)).collect::<CliResult<Vec<_>>>()?;
    for (secret, fingerprint) in &keys {
        eprintln!("{fingerprint}  {}", secret.name_any());
    }
    if !command.trust_backup {
        if let Some((secret, fingerprint)) = keys.iter().find(|(_, f)| !expect.contains(f)) {
            return Err(CliError::new(format!(
                "the backup holds the key {} ({fingerprint}), which --expect does not name: nothing restored",
                secret.name_any()
            ))
            .hint("compare the fingerprints above with your committed certificates; give each key to restore with --expect"));
        }
        if let Some(missing) = expect.iter().find(|f| !keys.iter().any(|(_, k)| k == *f)) {
            return Err(CliError::new(format!(
                "the backup does not hold the expected key {missing}: nothing restored"
            ))
            .hint("is this the backup of the cluster whose certificate you gave?"));
        }
    }
    let client = cluster_client(cluster).await?;
    let api = Api::<Secret>::namespaced(client, ns);
    let (mut created, mut present) = (0, 0);
    for (secret, _) in keys {
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
