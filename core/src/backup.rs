//! Key backups encrypted to age recipients, so that a backup file is safe to store anywhere.

use crate::error::quoted;
use std::io::{Read, Write};
use std::str::FromStr;

use crate::age_ssh::{SshEd25519Identity, SshEd25519Recipient};
use crate::secret::SecretBytes;

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("{} is not an age recipient (age1... or ssh-ed25519 ...)", quoted(.0))]
    Recipient(String),
    #[error("no recipients were given")]
    NoRecipients,
    #[error("cannot encrypt the backup")]
    Encrypt(#[source] age::EncryptError),
    #[error("cannot decrypt the backup")]
    Decrypt(#[source] age::DecryptError),
    #[error("cannot read the identities")]
    Identities(#[source] std::io::Error),
    #[error("the identity file holds no identity")]
    NoIdentities,
    #[error("cannot use the SSH identity")]
    SshKey(#[source] crate::age_ssh::SshKeyError),
    #[error("cannot write the backup")]
    Io(#[source] std::io::Error),
}

/// An age recipient: X25519 (`age1...`) or SSH (`ssh-ed25519 AAAA...`).
pub type Recipient = Box<dyn age::Recipient + Send + Sync>;

/// Parse age recipients.
pub fn parse_recipients(texts: &[String]) -> Result<Vec<Recipient>, BackupError> {
    if texts.is_empty() {
        return Err(BackupError::NoRecipients);
    }
    texts
        .iter()
        .map(|t| {
            let t = t.trim();
            if t.starts_with("ssh-") {
                SshEd25519Recipient::from_str(t)
                    .map(|r| Box::new(r) as Recipient)
                    .map_err(|_| BackupError::Recipient(t.to_owned()))
            } else {
                age::x25519::Recipient::from_str(t)
                    .map(|r| Box::new(r) as Recipient)
                    .map_err(|_| BackupError::Recipient(t.to_owned()))
            }
        })
        .collect()
}

/// Encrypt `plaintext` to every recipient: any one of their identities opens it.
pub fn encrypt(recipients: &[Recipient], plaintext: &[u8]) -> Result<Vec<u8>, BackupError> {
    let encryptor = age::Encryptor::with_recipients(recipients.iter().map(|r| r.as_ref() as &dyn age::Recipient))
        .map_err(BackupError::Encrypt)?;
    let mut out = Vec::with_capacity(plaintext.len() + 512);
    let mut writer = encryptor.wrap_output(&mut out).map_err(BackupError::Io)?;
    writer.write_all(plaintext).map_err(BackupError::Io)?;
    writer.finish().map_err(BackupError::Io)?;
    Ok(out)
}

/// Decrypt with an identity file: age identities (`AGE-SECRET-KEY-1...` lines) or an
/// unencrypted OpenSSH ed25519 private key.
pub fn decrypt(identity_file: &[u8], ciphertext: &[u8]) -> Result<SecretBytes, BackupError> {
    let text = String::from_utf8_lossy(identity_file);
    let identities: Vec<Box<dyn age::Identity + Send + Sync>> = if text.contains("-----BEGIN OPENSSH PRIVATE KEY-----")
    {
        vec![Box::new(SshEd25519Identity::from_openssh(&text).map_err(BackupError::SshKey)?)]
    } else {
        age::IdentityFile::from_buffer(identity_file)
            .map_err(BackupError::Identities)?
            .into_identities()
            .map_err(BackupError::Decrypt)?
    };
    if identities.is_empty() {
        return Err(BackupError::NoIdentities);
    }
    let decryptor = age::Decryptor::new(ciphertext).map_err(BackupError::Decrypt)?;
    let mut reader =
        decryptor.decrypt(identities.iter().map(|i| i.as_ref() as &dyn age::Identity)).map_err(BackupError::Decrypt)?;
    let mut plain = zeroize::Zeroizing::new(Vec::new());
    reader.read_to_end(&mut plain).map_err(BackupError::Io)?;
    Ok(SecretBytes::new(std::mem::take(&mut *plain)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_wrong_identity() {
        let identity = age::x25519::Identity::generate();
        let other = age::x25519::Identity::generate();
        let recipients = parse_recipients(&[identity.to_public().to_string()]).unwrap();
        let sealed = encrypt(&recipients, b"key material").unwrap();
        assert!(!sealed.windows(12).any(|w| w == b"key material"));
        use age::secrecy::ExposeSecret;
        let file = format!("# test\n{}\n", identity.to_string().expose_secret());
        assert_eq!(decrypt(file.as_bytes(), &sealed).unwrap().expose(), b"key material");
        let wrong = format!("{}\n", other.to_string().expose_secret());
        assert!(decrypt(wrong.as_bytes(), &sealed).is_err());
        assert!(parse_recipients(&["ssh-ed25519 AAAA".into()]).is_err());
        assert!(parse_recipients(&["ssh-rsa AAAAB3NzaC1yc2E".into()]).is_err(), "ssh-rsa is not supported");
    }
}
