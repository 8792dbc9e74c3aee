//! `sealant keys rotate`: a new sealing key now.

use super::*;

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
