//! `sealant keys backup`: every key Secret, encrypted to age recipients.

use super::*;

#[derive(Debug, clap::Args)]
pub struct BackupCommand {
    /// An age recipient who may restore the backup: age1..., post-quantum age1pq1... (not mixed
    /// with classic ones) or an ssh-ed25519 public key. Repeatable.
    #[arg(long = "age-recipient", value_name = "RECIPIENT", required = true)]
    pub recipients: Vec<String>,
    /// The encrypted backup file to write.
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    pub output: PathBuf,
}

/// The key Secrets as a `v1 List`, encrypted to age recipients.
pub async fn backup_bundle(client: &Client, namespace: &str, recipients: &[String]) -> CliResult<(usize, Vec<u8>)> {
    let recipients = age_keys::parse_recipients(recipients)
        .map_err(|e| CliError::usage("cannot use the age recipients").source(e))
        .hint("give age recipients: age1... or age1pq1... (as `age-keygen -y` prints; not both kinds) or ssh-ed25519 public keys")?;
    let keys = cluster_keys(client, namespace).await?;
    let list = backup_list(keys.iter().map(|k| &k.secret));
    let plain = zeroize::Zeroizing::new(render::documents(&[list], crate::io::Format::Yaml)?);
    let sealed = age_keys::encrypt(&recipients, plain.as_bytes(), false)
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
