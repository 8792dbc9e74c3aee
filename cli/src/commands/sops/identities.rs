//! The age identities `sealant sops` decrypts with, gathered from every source sops reads:
//! `SOPS_AGE_KEY`, `SOPS_AGE_KEY_FILE`, `SOPS_AGE_KEY_CMD`, `SOPS_AGE_SSH_PRIVATE_KEY_FILE` and
//! the default files. Described by their public keys in messages, never by the private key.

use super::*;

pub(super) type Identities = Vec<Box<dyn age::Identity + Send + Sync>>;

/// Identities gathered as sops does, all sources combined; with a description of each (its
/// public key) for error messages, never the private key.
pub(super) fn gather_identities() -> CliResult<(Identities, Vec<String>)> {
    let mut identities: Identities = Vec::new();
    let mut tried = Vec::new();
    let add_keys_text = |text: &str, origin: &str, identities: &mut Identities, tried: &mut Vec<String>| -> CliResult {
        for token in text.lines().filter(|l| !l.starts_with('#')).flat_map(str::split_whitespace) {
            if let Ok(identity) = token.parse::<age::x25519::Identity>() {
                tried.push(identity.to_public().to_string());
                identities.push(Box::new(identity));
            } else if token.starts_with("AGE-") {
                return Err(CliError::new(format!("{origin} holds an identity that is not an X25519 age key"))
                    .hint("plugin and post-quantum identities are not supported yet"));
            }
        }
        Ok(())
    };
    let home = std::env::var_os("HOME").map(PathBuf::from);
    let mut ssh_files: Vec<PathBuf> =
        std::env::var_os("SOPS_AGE_SSH_PRIVATE_KEY_FILE").map(PathBuf::from).into_iter().collect();
    if let Some(home) = &home {
        ssh_files.push(home.join(".ssh/id_ed25519"));
    }
    for (i, path) in ssh_files.iter().enumerate() {
        let Ok(text) = std::fs::read_to_string(path) else {
            if i == 0 && std::env::var_os("SOPS_AGE_SSH_PRIVATE_KEY_FILE").is_some() {
                return Err(CliError::new(format!("cannot read SOPS_AGE_SSH_PRIVATE_KEY_FILE {}", path.display())));
            }
            continue;
        };
        match SshEd25519Identity::from_openssh(&text) {
            Ok(identity) => {
                tried.push(format!("ssh key {}", path.display()));
                identities.push(Box::new(identity));
            }
            Err(e) if i == 0 && std::env::var_os("SOPS_AGE_SSH_PRIVATE_KEY_FILE").is_some() => {
                return Err(CliError::new(format!("cannot use {}", path.display())).source(e));
            }
            Err(_) => {}
        }
    }
    if let Ok(inline) = std::env::var("SOPS_AGE_KEY") {
        add_keys_text(&inline, "SOPS_AGE_KEY", &mut identities, &mut tried)?;
    }
    if let Some(path) = std::env::var_os("SOPS_AGE_KEY_FILE") {
        let text = zeroize::Zeroizing::new(io::read_file(Path::new(&path))?);
        add_keys_text(&text, "SOPS_AGE_KEY_FILE", &mut identities, &mut tried)?;
    }
    if let Ok(command) = std::env::var("SOPS_AGE_KEY_CMD") {
        let mut words = command.split_whitespace();
        let program = words.next().unwrap_or_default();
        let out = std::process::Command::new(program)
            .args(words)
            .output()
            .map_err(|e| CliError::new(format!("cannot run SOPS_AGE_KEY_CMD {}", quoted(program))).source(e))?;
        if !out.status.success() {
            return Err(CliError::new(format!("SOPS_AGE_KEY_CMD {} failed ({})", quoted(program), out.status)));
        }
        let text = zeroize::Zeroizing::new(String::from_utf8_lossy(&out.stdout).into_owned());
        add_keys_text(&text, "SOPS_AGE_KEY_CMD", &mut identities, &mut tried)?;
    }
    let config = std::env::var_os("XDG_CONFIG_HOME").map(PathBuf::from).or_else(|| home.map(|h| h.join(".config")));
    if let Some(default) = config.map(|c| c.join("sops/age/keys.txt"))
        && let Ok(text) = std::fs::read_to_string(&default)
    {
        let text = zeroize::Zeroizing::new(text);
        add_keys_text(&text, &default.display().to_string(), &mut identities, &mut tried)?;
    }
    Ok((identities, tried))
}
