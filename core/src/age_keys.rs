//! age, as key backups and SOPS files use it: the recipients and identities Sealant reads
//! (X25519, post-quantum ML-KEM-768 + X25519, and ssh-ed25519), and files encrypted to them.
//! One decryption path for both, armored or binary, tested against C2SP's vectors.

use std::io::{Read, Write};
use std::str::FromStr;

use crate::age_pq::{HybridIdentity, HybridRecipient};
use crate::age_ssh::{SshEd25519Identity, SshEd25519Recipient};
use crate::error::quoted;
use crate::secret::SecretBytes;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AgeError {
    #[error("{} is not an age recipient (age1..., age1pq1... or ssh-ed25519 ...)", quoted(.0))]
    Recipient(String),
    #[error("no recipients were given")]
    NoRecipients,
    #[error(
        "post-quantum recipients (age1pq1...) cannot be mixed with classic ones: the file would be only as safe as the classic one"
    )]
    MixedRecipients,
    #[error("cannot encrypt")]
    Encrypt(#[source] age::EncryptError),
    #[error("cannot decrypt")]
    Decrypt(#[source] age::DecryptError),
    #[error("line {line} is not an age identity (AGE-SECRET-KEY-1... or AGE-SECRET-KEY-PQ-1...)")]
    Identity { line: usize },
    #[error("line {line} holds an age plugin identity, which Sealant does not run")]
    PluginIdentity { line: usize },
    #[error("no identity was given")]
    NoIdentities,
    #[error("cannot use the SSH identity")]
    SshKey(#[source] crate::age_ssh::SshKeyError),
    #[error("cannot read or write the age file")]
    Io(#[source] std::io::Error),
    #[error("the age file's armor is malformed")]
    Armor(#[source] std::io::Error),
}

/// An age recipient of any kind Sealant writes to.
pub type Recipient = Box<dyn age::Recipient + Send + Sync>;
/// An age identity of any kind Sealant reads with.
pub type Identity = Box<dyn age::Identity + Send + Sync>;

/// One recipient: `age1...` (X25519), `age1pq1...` (post-quantum) or `ssh-ed25519 AAAA...`.
pub fn parse_recipient(text: &str) -> Result<Recipient, AgeError> {
    let t = text.trim();
    let parsed = if t.starts_with("ssh-") {
        SshEd25519Recipient::from_str(t).ok().map(|r| Box::new(r) as Recipient)
    } else if t.starts_with("age1pq1") {
        HybridRecipient::from_str(t).ok().map(|r| Box::new(r) as Recipient)
    } else {
        age::x25519::Recipient::from_str(t).ok().map(|r| Box::new(r) as Recipient)
    };
    parsed.ok_or_else(|| AgeError::Recipient(t.to_owned()))
}

/// Recipients for one file: at least one, and post-quantum ones not mixed with classic ones.
pub fn parse_recipients(texts: &[String]) -> Result<Vec<Recipient>, AgeError> {
    if texts.is_empty() {
        return Err(AgeError::NoRecipients);
    }
    let post_quantum = texts.iter().filter(|t| t.trim().starts_with("age1pq1")).count();
    if post_quantum != 0 && post_quantum != texts.len() {
        return Err(AgeError::MixedRecipients);
    }
    texts.iter().map(|t| parse_recipient(t)).collect()
}

/// Whether `recipient` (as a file names it: an ssh key may carry a comment) is the public key
/// `public` of an identity.
pub fn same_recipient(recipient: &str, public: &str) -> bool {
    recipient.split_whitespace().take(2).eq(public.split_whitespace().take(2))
}

/// The identities of a text: an unencrypted OpenSSH ed25519 private key, or age identity lines
/// (`AGE-SECRET-KEY-1...`, `AGE-SECRET-KEY-PQ-1...`, several to a line allowed, `#` comments),
/// each with its public key for messages. Errors name a line, never its content.
pub fn parse_identities(text: &str) -> Result<Vec<(Identity, String)>, AgeError> {
    if text.contains("-----BEGIN OPENSSH PRIVATE KEY-----") {
        let identity = SshEd25519Identity::from_openssh(text).map_err(AgeError::SshKey)?;
        let public = identity.public_line();
        return Ok(vec![(Box::new(identity), public)]);
    }
    let mut identities = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let line_number = index + 1;
        if line.trim_start().starts_with('#') {
            continue;
        }
        for token in line.split_whitespace() {
            if token.starts_with("AGE-PLUGIN-") {
                return Err(AgeError::PluginIdentity { line: line_number });
            }
            if let Ok(identity) = HybridIdentity::from_str(token) {
                let public = identity.to_public().to_string();
                identities.push((Box::new(identity) as Identity, public));
            } else if let Ok(identity) = age::x25519::Identity::from_str(token) {
                let public = identity.to_public().to_string();
                identities.push((Box::new(identity) as Identity, public));
            } else {
                return Err(AgeError::Identity { line: line_number });
            }
        }
    }
    Ok(identities)
}

/// Encrypt `plaintext` to every recipient, armored (as SOPS stores it) or binary (as key
/// backups are): any one of their identities opens it.
pub fn encrypt(recipients: &[Recipient], plaintext: &[u8], armor: bool) -> Result<Vec<u8>, AgeError> {
    let encryptor = age::Encryptor::with_recipients(recipients.iter().map(|r| r.as_ref() as &dyn age::Recipient))
        .map_err(|e| match e {
            age::EncryptError::IncompatibleRecipients { .. } => AgeError::MixedRecipients,
            e => AgeError::Encrypt(e),
        })?;
    let format = if armor { age::armor::Format::AsciiArmor } else { age::armor::Format::Binary };
    let out = Vec::with_capacity(plaintext.len() + 512);
    let armored = age::armor::ArmoredWriter::wrap_output(out, format).map_err(AgeError::Io)?;
    let mut writer = encryptor.wrap_output(armored).map_err(AgeError::Io)?;
    writer.write_all(plaintext).map_err(AgeError::Io)?;
    writer.finish().and_then(|armored| armored.finish()).map_err(AgeError::Io)
}

/// How an age file is encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encoding {
    /// ASCII armor (`-----BEGIN AGE ENCRYPTED FILE-----`), as SOPS stores the data key.
    Armored,
    /// Either: armored when it starts, after whitespace, with `-----`; binary otherwise.
    Detect,
}

const ARMOR_BEGIN: &[u8] = b"-----BEGIN AGE ENCRYPTED FILE-----";

/// The binary age file: armor removed (leading and trailing whitespace allowed, as age's
/// armor allows; the armor checked by the `age` crate's reader) or the bytes as they are.
fn binary(ciphertext: &[u8], encoding: Encoding) -> Result<std::borrow::Cow<'_, [u8]>, AgeError> {
    let start = ciphertext.iter().position(|b| !b.is_ascii_whitespace()).unwrap_or(ciphertext.len());
    let text = &ciphertext[start..];
    let armored = match encoding {
        Encoding::Armored => true,
        Encoding::Detect => text.starts_with(b"-----"),
    };
    if !armored {
        return Ok(ciphertext.into());
    }
    if !text.starts_with(ARMOR_BEGIN) {
        return Err(AgeError::Armor(std::io::Error::other("the file does not begin with the age armor's first line")));
    }
    let mut file = Vec::with_capacity(text.len());
    age::armor::ArmoredReader::new(text).read_to_end(&mut file).map_err(AgeError::Armor)?;
    Ok(file.into())
}

/// Every stanza ends with a body line shorter than 64 columns, possibly empty (age's rule, and
/// Go's; the `age` crate accepts a header without it, the MAC covering it either way).
fn check_stanza_bodies(file: &[u8]) -> Result<(), AgeError> {
    let invalid = || AgeError::Decrypt(age::DecryptError::InvalidHeader);
    let mut in_body = false;
    for line in file.split(|b| *b == b'\n') {
        if in_body {
            // Base64 has no '-': a line starting with one is the next stanza or the MAC.
            if line.first() == Some(&b'-') {
                return Err(invalid());
            }
            in_body = line.len() == 64;
        } else if line.starts_with(b"-> ") {
            in_body = true;
        } else if line.starts_with(b"---") {
            break;
        }
    }
    Ok(())
}

/// Decrypt an age file with any of `identities`.
pub fn decrypt(identities: &[Identity], ciphertext: &[u8], encoding: Encoding) -> Result<SecretBytes, AgeError> {
    if identities.is_empty() {
        return Err(AgeError::NoIdentities);
    }
    let file = binary(ciphertext, encoding)?;
    check_stanza_bodies(&file)?;
    let decryptor = age::Decryptor::new(file.as_ref()).map_err(AgeError::Decrypt)?;
    let mut reader =
        decryptor.decrypt(identities.iter().map(|i| i.as_ref() as &dyn age::Identity)).map_err(AgeError::Decrypt)?;
    let mut plain = zeroize::Zeroizing::new(Vec::new());
    reader.read_to_end(&mut plain).map_err(AgeError::Io)?;
    Ok(SecretBytes::new(std::mem::take(&mut *plain)))
}

/// Decrypt with the identities of an identity file's text (see [`parse_identities`]).
pub fn decrypt_with_file(identity_file: &[u8], ciphertext: &[u8]) -> Result<SecretBytes, AgeError> {
    let text = zeroize::Zeroizing::new(String::from_utf8_lossy(identity_file).into_owned());
    let identities: Vec<Identity> = parse_identities(&text)?.into_iter().map(|(identity, _)| identity).collect();
    decrypt(&identities, ciphertext, Encoding::Detect)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::age_pq::HybridIdentity;
    use age::secrecy::ExposeSecret;

    #[test]
    fn round_trip_and_wrong_identity() {
        let identity = age::x25519::Identity::generate();
        let other = age::x25519::Identity::generate();
        let recipients = parse_recipients(&[identity.to_public().to_string()]).unwrap();
        let sealed = encrypt(&recipients, b"key material", false).unwrap();
        assert!(!sealed.windows(12).any(|w| w == b"key material"));
        let file = format!("# test\n{}\n", identity.to_string().expose_secret());
        assert_eq!(decrypt_with_file(file.as_bytes(), &sealed).unwrap().expose(), b"key material");
        let wrong = format!("{}\n", other.to_string().expose_secret());
        assert!(decrypt_with_file(wrong.as_bytes(), &sealed).is_err());
        assert!(parse_recipients(&["ssh-ed25519 AAAA".into()]).is_err());
        assert!(parse_recipients(&["ssh-rsa AAAAB3NzaC1yc2E".into()]).is_err(), "ssh-rsa is not supported");
    }

    #[test]
    fn post_quantum_round_trip_armored_and_never_mixed() {
        let identity = HybridIdentity::generate(&mut rand::rng());
        let pq = identity.to_public().to_string();
        let sealed = encrypt(&parse_recipients(std::slice::from_ref(&pq)).unwrap(), b"key material", true).unwrap();
        assert!(sealed.starts_with(b"-----BEGIN AGE ENCRYPTED FILE-----"));
        let file = format!("# public key: {pq}\n{}\n", *identity.to_secret_string());
        assert_eq!(decrypt_with_file(file.as_bytes(), &sealed).unwrap().expose(), b"key material");
        let classic = age::x25519::Identity::generate().to_public().to_string();
        assert!(matches!(parse_recipients(&[pq, classic]), Err(AgeError::MixedRecipients)));
    }

    #[test]
    fn identity_errors_name_the_line_not_the_key() {
        let text = "# created\nAGE-SECRET-KEY-1QQQQ-not-a-key\n";
        let err = parse_identities(text).err().unwrap().to_string();
        assert_eq!(err, "line 2 is not an age identity (AGE-SECRET-KEY-1... or AGE-SECRET-KEY-PQ-1...)");
        assert!(matches!(parse_identities("AGE-PLUGIN-YUBIKEY-1QQQ"), Err(AgeError::PluginIdentity { line: 1 })));
    }
}
