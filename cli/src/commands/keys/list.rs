//! `sealant keys list`: the controller's keys, their dates and state, and which one seals.

use super::*;

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
