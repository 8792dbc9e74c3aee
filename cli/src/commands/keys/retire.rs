//! `sealant keys retire`: stop the controller from using a key, refused while something depends on it.

use super::*;

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
