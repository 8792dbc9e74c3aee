//! `sealant sops encrypt`: a plaintext file encrypted to age recipients, readable by the real sops.

use super::*;

#[derive(Debug, clap::Args)]
pub struct EncryptCommand {
    /// The plaintext file.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    /// age recipients, comma-separated (`age1...` or `ssh-ed25519 ...`); else from .sops.yaml.
    #[arg(long, env = "SOPS_AGE_RECIPIENTS", value_name = "RECIPIENTS")]
    pub age: Option<String>,
    /// Encrypt only values under keys matching this regex (Kubernetes Secrets: `^(data|stringData)$`).
    #[arg(long, group = "selection")]
    pub encrypted_regex: Option<String>,
    /// Leave values under keys matching this regex in clear text.
    #[arg(long, group = "selection")]
    pub unencrypted_regex: Option<String>,
    /// Encrypt only values under keys ending with this suffix.
    #[arg(long, group = "selection")]
    pub encrypted_suffix: Option<String>,
    /// Leave values under keys ending with this suffix in clear text (default `_unencrypted`).
    #[arg(long, group = "selection")]
    pub unencrypted_suffix: Option<String>,
    /// Encrypt only values after a comment matching this regex (the comment stays readable).
    #[arg(long, group = "selection")]
    pub encrypted_comment_regex: Option<String>,
    /// Leave values after a comment matching this regex in clear text.
    #[arg(long, group = "selection")]
    pub unencrypted_comment_regex: Option<String>,
    /// Let the MAC cover only the encrypted values.
    #[arg(long)]
    pub mac_only_encrypted: bool,
    /// The file's format (default: from its extension; anything else is binary).
    #[arg(long, value_enum)]
    pub input_type: Option<Store>,
    /// The output format (default: the input's).
    #[arg(long, value_enum)]
    pub output_type: Option<Store>,
    /// Match creation rules and pick the format by this path instead of FILE's (as sops does).
    #[arg(long, value_name = "PATH")]
    pub filename_override: Option<PathBuf>,
    /// Write the encrypted file over the plaintext instead of printing it.
    #[arg(short = 'i', long)]
    pub in_place: bool,
    /// The sops configuration to use instead of the `.sops.yaml` found from the working directory up.
    #[arg(long, env = "SOPS_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
}

pub fn encrypt(command: &EncryptCommand) -> CliResult {
    must_exist(&command.file, 100)?;
    let origin = command.file.display().to_string();
    let input = io::read_bytes(&command.file)?;
    let named = command.filename_override.as_deref().unwrap_or(&command.file);
    let store = store_for(command.input_type, named);
    let mut docs = store.read_plain(&input).map_err(|e| {
        CliError::new(format!("cannot read {origin} as {store}")).exit(2).source(e).hint("set --input-type")
    })?;
    if docs.is_empty() {
        return Err(CliError::new(format!("{origin} is empty: there is nothing to encrypt")));
    }
    let rule = creation_rule(named, command.config.as_deref())?.unwrap_or_default();
    let key_groups = match &command.age {
        Some(list) => vec![split_keys(Some(&Value::String(list.clone())))],
        None => rule.key_groups.clone(),
    };
    if key_groups.iter().all(Vec::is_empty) {
        return Err(CliError::usage("no age recipients")
            .hint("pass --age age1... (or SOPS_AGE_RECIPIENTS), or add a creation rule to .sops.yaml"));
    }
    let flag_selection = Selection::from_fields(|k| match k {
        "encrypted_regex" => command.encrypted_regex.clone(),
        "unencrypted_regex" => command.unencrypted_regex.clone(),
        "encrypted_suffix" => command.encrypted_suffix.clone(),
        "unencrypted_suffix" => command.unencrypted_suffix.clone(),
        "encrypted_comment_regex" => command.encrypted_comment_regex.clone(),
        "unencrypted_comment_regex" => command.unencrypted_comment_regex.clone(),
        _ => None,
    });
    // A Kubernetes Secret with no rule saying otherwise: encrypt only its data.
    let is_secret = docs.iter().any(|d| d.get("kind").and_then(Node::as_str) == Some("Secret"));
    let selection = flag_selection.or(rule.selection).unwrap_or(if is_secret && store != CoreStore::Binary {
        Selection::EncryptedRegex("^(data|stringData)$".into())
    } else {
        Selection::Default
    });
    let options = EncryptOptions {
        key_groups,
        shamir_threshold: rule.shamir_threshold,
        selection,
        mac_only_encrypted: command.mac_only_encrypted || rule.mac_only_encrypted,
    };
    let meta = encrypt_documents(&mut rand::rng(), &mut docs, &options, time::OffsetDateTime::now_utc())
        .map_err(|e| failed(format!("cannot encrypt {origin}"), e))?;
    let output = command.output_type.map_or(store, CoreStore::from);
    let text = output.write_encrypted(&docs, &meta).map_err(|e| sops_error(&origin, &[], e))?;
    if command.in_place {
        return io::write_atomic(&command.file, &text, Privacy::Public);
    }
    io::print_bytes(&text)
}
