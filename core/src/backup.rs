//! Key backups encrypted to age recipients, so that a backup file is safe to store anywhere.

use std::io::{Read, Write};
use std::str::FromStr;

use crate::secret::SecretBytes;

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("{0:?} is not an age X25519 recipient (age1...)")]
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
    #[error("cannot write the backup")]
    Io(#[source] std::io::Error),
}

/// Parse age recipients (`age1...`).
pub fn parse_recipients(texts: &[String]) -> Result<Vec<age::x25519::Recipient>, BackupError> {
    if texts.is_empty() {
        return Err(BackupError::NoRecipients);
    }
    texts
        .iter()
        .map(|t| age::x25519::Recipient::from_str(t.trim()).map_err(|_| BackupError::Recipient(t.clone())))
        .collect()
}

/// Encrypt `plaintext` to every recipient: any one of their identities opens it.
pub fn encrypt(recipients: &[age::x25519::Recipient], plaintext: &[u8]) -> Result<Vec<u8>, BackupError> {
    let encryptor = age::Encryptor::with_recipients(recipients.iter().map(|r| r as &dyn age::Recipient))
        .map_err(BackupError::Encrypt)?;
    let mut out = Vec::with_capacity(plaintext.len() + 512);
    let mut writer = encryptor.wrap_output(&mut out).map_err(BackupError::Io)?;
    writer.write_all(plaintext).map_err(BackupError::Io)?;
    writer.finish().map_err(BackupError::Io)?;
    Ok(out)
}

/// Decrypt with the identities in an age identity file's text (`AGE-SECRET-KEY-1...` lines).
pub fn decrypt(identity_file: &[u8], ciphertext: &[u8]) -> Result<SecretBytes, BackupError> {
    let identities = age::IdentityFile::from_buffer(identity_file)
        .map_err(BackupError::Identities)?
        .into_identities()
        .map_err(BackupError::Decrypt)?;
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
    }
}
