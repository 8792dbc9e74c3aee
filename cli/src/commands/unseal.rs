//! `sealant unseal`: offline recovery of Secrets with the controller's private keys.

use std::path::PathBuf;

use sealant_core::keys::parse_private_keys;
use sealant_core::{PrivateKey, yaml};
use sealant_crds::{SealedSecret, UnsealOptions, unseal};
use serde_json::Value;

use crate::error::{CliError, CliResult, Hint};
use crate::io::{self, Format};
use crate::render;

#[derive(Debug, clap::Args)]
pub struct UnsealCommand {
    /// SealedSecret(s) to open (default: standard input).
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// A private key: PEM (PKCS#1 or PKCS#8), a key Secret, or a List of them. Repeatable.
    #[arg(long = "private-key", value_name = "FILE", required = true, value_delimiter = ',')]
    pub private_keys: Vec<PathBuf>,
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value = "yaml")]
    pub format: Format,
}

pub fn load_keys(paths: &[PathBuf]) -> CliResult<Vec<PrivateKey>> {
    let mut keys = Vec::new();
    for path in paths {
        let bytes = zeroize::Zeroizing::new(io::read_bytes(path)?);
        let found = parse_private_keys(&bytes)
            .map_err(|e| CliError::new(format!("cannot read a private key from {}", path.display())).source(e))
            .hint("give a PEM private key, a kubernetes.io/tls key Secret, or a List of them (the controller's key backup)")?;
        keys.extend(found);
    }
    Ok(keys)
}

pub fn parse_sealed_secrets(text: &str, origin: &str) -> CliResult<Vec<SealedSecret>> {
    let docs = yaml::parse_documents(text)
        .map_err(|e| CliError::new(format!("cannot parse {origin}")).source(e))
        .hint("the input must be SealedSecret manifests in YAML or JSON")?;
    if docs.is_empty() {
        return Err(
            CliError::new(format!("no SealedSecret found in {origin}")).hint("give a SealedSecret in YAML or JSON")
        );
    }
    docs.into_iter()
        .enumerate()
        .map(|(i, doc)| {
            let kind = doc.get("kind").and_then(Value::as_str).unwrap_or_default();
            if kind != "SealedSecret" {
                return Err(CliError::new(format!("document {} of {origin} is not a SealedSecret", i + 1))
                    .hint("unseal takes SealedSecret manifests (kind: SealedSecret)"));
            }
            serde_json::from_value(doc)
                .map_err(|e| {
                    CliError::new(format!("document {} of {origin} is not a valid SealedSecret", i + 1)).source(e)
                })
                .hint("check the file with `sealant validate`")
        })
        .collect()
}

/// Print the Secrets, or write them to `output` (private: they hold plaintext).
pub fn run(
    file: Option<&std::path::Path>,
    key_paths: &[PathBuf],
    format: Format,
    output: Option<&std::path::Path>,
) -> CliResult {
    let keys = load_keys(key_paths)?;
    let origin = file.map_or("standard input".to_owned(), |p| p.display().to_string());
    let sealed = parse_sealed_secrets(&io::read_input(file, "SealedSecret")?, &origin)?;
    let mut values = Vec::with_capacity(sealed.len());
    for ss in &sealed {
        let secret = unseal(ss, &keys, UnsealOptions::default()).map_err(|e| {
            CliError::new(format!(
                "cannot unseal {}/{}",
                ss.metadata.namespace.as_deref().unwrap_or_default(),
                ss.metadata.name.as_deref().unwrap_or_default()
            ))
            .source(e)
            .hint("it was sealed to a key not given with --private-key, or for another name, namespace or scope")
        })?;
        values.push(render::secret_value(&secret)?);
    }
    let text = zeroize::Zeroizing::new(render::documents(&values, format)?);
    match output {
        Some(path) => io::write_atomic(path, text.as_bytes(), io::Privacy::Private),
        None => io::print(&text),
    }
}
