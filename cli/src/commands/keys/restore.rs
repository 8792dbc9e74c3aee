//! `sealant keys restore`: backed-up keys back into the cluster.

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
}

pub async fn restore(command: &RestoreCommand, cluster: &ClusterArgs) -> CliResult {
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
