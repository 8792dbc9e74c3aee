//! `sealant keys usage`: which files and in-cluster SealedSecrets depend on each key.

use super::*;

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

/// In a repository with a .sealant.yaml: each committed certificate's fingerprint, with its
/// cluster and file, so that keys are named by the cluster they belong to.
fn committed_certificates(start: Option<&PathBuf>) -> BTreeMap<String, (String, String)> {
    let start = start.map_or(std::path::Path::new("."), PathBuf::as_path);
    let Some(config) = crate::config::Config::near(start).ok().flatten() else {
        return BTreeMap::new();
    };
    config
        .committed_certificates()
        .into_iter()
        .map(|(name, entry, cert)| (cert.public_key().fingerprint(), (name.to_owned(), entry.cert.clone())))
        .collect()
}

pub async fn usage(args: &UsageArgs, cluster: &ClusterArgs) -> CliResult {
    let client = cluster_client(cluster).await.ok();
    let cluster_keys = match &client {
        Some(c) => cluster_keys(c, &cluster.controller_namespace).await.unwrap_or_default(),
        None => Vec::new(),
    };
    let usage = collect_usage(args, cluster, client.as_ref()).await?;
    let committed = committed_certificates(args.paths.first());
    let named = |fingerprint: &str| {
        committed
            .get(fingerprint)
            .map(|(name, file)| format!(", cluster {name}'s committed {file}"))
            .unwrap_or_default()
    };
    let mut out = String::new();
    let mut shown: Vec<&String> = Vec::new();
    for key in &cluster_keys {
        out.push_str(&format!(
            "{} ({}, {}{})\n",
            key.fingerprint,
            key.secret.name_any(),
            key.state,
            named(&key.fingerprint)
        ));
        match usage.by_key.get(&key.fingerprint) {
            Some(places) => places.iter().for_each(|p| out.push_str(&format!("  {p}\n"))),
            None => out.push_str("  no dependents\n"),
        }
        shown.push(&key.fingerprint);
    }
    for (fp, places) in usage.by_key.iter().filter(|(fp, _)| !shown.contains(fp)) {
        match committed.get(fp) {
            Some((name, file)) => out.push_str(&format!("{fp} (cluster {name}'s committed {file})\n")),
            None => out.push_str(&format!("{fp} (not in the cluster)\n")),
        }
        places.iter().for_each(|p| out.push_str(&format!("  {p}\n")));
    }
    if !usage.unknown.is_empty() {
        out.push_str("unknown key (no sealant.dev/sealing-key annotation; pass --private-key to tell)\n");
        usage.unknown.iter().for_each(|p| out.push_str(&format!("  {p}\n")));
    }
    io::print(&out)
}
