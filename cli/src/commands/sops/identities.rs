//! The age identities `sealant sops` decrypts with, gathered from every source sops 3.13 reads:
//! `SOPS_AGE_SSH_PRIVATE_KEY_FILE`, `SOPS_AGE_SSH_PRIVATE_KEY_CMD`, `~/.ssh/id_ed25519`,
//! `SOPS_AGE_KEY` (several keys to a line), `SOPS_AGE_KEY_FILE`, `SOPS_AGE_KEY_CMD` and the
//! default keys file; X25519, post-quantum and ssh-ed25519 identities. Described by their public
//! keys in messages, never by the private key.

use sealant_core::age_keys::{Identity, parse_identities, same_recipient};

use super::*;

pub(super) type Identities = Vec<Identity>;

/// What has been gathered: the identities, and a description of each for messages.
#[derive(Default)]
struct Gathered {
    identities: Identities,
    tried: Vec<String>,
}

impl Gathered {
    /// Add the identities of `text`, read from `origin`; whether one of them is `recipient`'s.
    fn add(&mut self, text: &str, origin: &str, recipient: Option<&str>) -> CliResult<bool> {
        let parsed = parse_identities(text).map_err(|e| CliError::new(format!("cannot use {origin}")).source(e))?;
        let mut matched = false;
        for (identity, public) in parsed {
            matched |= recipient.is_some_and(|r| same_recipient(r, &public));
            self.identities.push(identity);
            self.tried.push(public);
        }
        Ok(matched)
    }
}

/// The output of a key command (`SOPS_AGE_KEY_CMD`, `SOPS_AGE_SSH_PRIVATE_KEY_CMD`), split as
/// a shell would and run with `SOPS_AGE_RECIPIENT` naming the recipient it is asked for.
fn run_key_command(variable: &str, command: &str, recipient: &str) -> CliResult<zeroize::Zeroizing<String>> {
    let words = shlex::split(command)
        .filter(|w| !w.is_empty())
        .ok_or_else(|| CliError::new(format!("{variable} is not a command sops could run")))?;
    let out = std::process::Command::new(&words[0])
        .args(&words[1..])
        .env("SOPS_AGE_RECIPIENT", recipient)
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::inherit())
        .output()
        .map_err(|e| CliError::new(format!("cannot run {variable} {}", quoted(&words[0]))).source(e))?;
    let text = zeroize::Zeroizing::new(String::from_utf8_lossy(&out.stdout).into_owned());
    if !out.status.success() {
        return Err(CliError::new(format!("{variable} {} failed ({})", quoted(&words[0]), out.status)));
    }
    Ok(text)
}

/// Identities gathered as sops does, all sources combined, for a file whose age recipients are
/// `recipients`; with a description of each (its public key) for messages.
pub(super) fn gather_identities(recipients: &[String]) -> CliResult<(Identities, Vec<String>)> {
    let mut gathered = Gathered::default();
    let home = std::env::var_os("HOME").map(PathBuf::from);
    if let Some(path) = std::env::var_os("SOPS_AGE_SSH_PRIVATE_KEY_FILE") {
        let path = PathBuf::from(path);
        let text = zeroize::Zeroizing::new(std::fs::read_to_string(&path).map_err(|e| {
            CliError::new(format!("cannot read SOPS_AGE_SSH_PRIVATE_KEY_FILE {}", path.display())).source(e)
        })?);
        gathered.add(&text, &path.display().to_string(), None)?;
    }
    // Key commands run as sops runs them: once for a recipient of the file, with
    // SOPS_AGE_RECIPIENT naming it, and again for the next one only while what they gave is not
    // the identity of the one asked for.
    let ask_for: Vec<&str> =
        if recipients.is_empty() { vec![""] } else { recipients.iter().map(String::as_str).collect() };
    for variable in ["SOPS_AGE_SSH_PRIVATE_KEY_CMD", "SOPS_AGE_KEY_CMD"] {
        let Ok(command) = std::env::var(variable) else { continue };
        for recipient in &ask_for {
            let text = run_key_command(variable, &command, recipient)?;
            if gathered.add(&text, &format!("what {variable} printed"), Some(recipient))? {
                break;
            }
        }
    }
    if let Some(default) = home.as_ref().map(|h| h.join(".ssh/id_ed25519"))
        && let Ok(text) = std::fs::read_to_string(&default)
    {
        // sops reads it too, but skips it quietly when it is not a key age can use.
        let text = zeroize::Zeroizing::new(text);
        let _ = gathered.add(&text, &default.display().to_string(), None);
    }
    if let Ok(inline) = std::env::var("SOPS_AGE_KEY") {
        let inline = zeroize::Zeroizing::new(inline);
        gathered.add(&inline, "SOPS_AGE_KEY", None)?;
    }
    if let Some(path) = std::env::var_os("SOPS_AGE_KEY_FILE") {
        let text = zeroize::Zeroizing::new(io::read_file(Path::new(&path))?);
        gathered.add(&text, "SOPS_AGE_KEY_FILE", None)?;
    }
    let config = std::env::var_os("XDG_CONFIG_HOME").map(PathBuf::from).or_else(|| home.map(|h| h.join(".config")));
    if let Some(default) = config.map(|c| c.join("sops/age/keys.txt"))
        && let Ok(text) = std::fs::read_to_string(&default)
    {
        let text = zeroize::Zeroizing::new(text);
        gathered.add(&text, &default.display().to_string(), None)?;
    }
    Ok((gathered.identities, gathered.tried))
}
