//! age's `ssh-ed25519` recipients and identities, written here because age's `ssh` feature
//! also brings `ssh-rsa` and with it an `rsa` generation with a known timing attack.
//!
//! The construction is age's: the file key is wrapped with ChaCha20-Poly1305 under a key from
//! HKDF-SHA256 over an X25519 exchange with the Ed25519 key's Montgomery form, tweaked by a
//! scalar derived from the SSH public key.

use std::collections::HashSet;
use std::fmt;
use std::str::FromStr;

use age::secrecy::ExposeSecret;
use age_core::format::{FileKey, Stanza};
use age_core::primitives::{aead_decrypt, aead_encrypt, hkdf};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use curve25519_dalek::edwards::CompressedEdwardsY;
use rand::CryptoRng;
use sha2::{Digest, Sha256, Sha512};
use x25519_dalek::{PublicKey, StaticSecret};
use zeroize::Zeroizing;

const TAG: &str = "ssh-ed25519";
const LABEL: &[u8] = b"age-encryption.org/v1/ssh-ed25519";
const FILE_KEY_BYTES: usize = 16;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SshKeyError {
    #[error("not an ssh-ed25519 public key")]
    NotEd25519,
    #[error("the SSH key is malformed")]
    Malformed,
    #[error("the OpenSSH private key is protected by a passphrase, which is not supported")]
    Encrypted,
}

/// Read an SSH wire `string` (u32 length + bytes).
fn take_string<'a>(input: &mut &'a [u8]) -> Result<&'a [u8], SshKeyError> {
    let (len, rest) = input.split_first_chunk::<4>().ok_or(SshKeyError::Malformed)?;
    let len = u32::from_be_bytes(*len) as usize;
    if rest.len() < len {
        return Err(SshKeyError::Malformed);
    }
    let (value, rest) = rest.split_at(len);
    *input = rest;
    Ok(value)
}

/// The Ed25519 public key inside an `ssh-ed25519` wire blob.
fn ed25519_from_blob(blob: &[u8]) -> Result<[u8; 32], SshKeyError> {
    let mut rest = blob;
    if take_string(&mut rest)? != TAG.as_bytes() {
        return Err(SshKeyError::NotEd25519);
    }
    take_string(&mut rest)?.try_into().map_err(|_| SshKeyError::Malformed)
}

fn montgomery(ed25519: &[u8; 32]) -> Result<[u8; 32], SshKeyError> {
    let point = CompressedEdwardsY(*ed25519).decompress().ok_or(SshKeyError::Malformed)?;
    Ok(point.to_montgomery().to_bytes())
}

fn tag_of(blob: &[u8]) -> String {
    STANDARD_NO_PAD.encode(&Sha256::digest(blob)[..4])
}

fn tweak(blob: &[u8]) -> StaticSecret {
    StaticSecret::from(hkdf(blob, LABEL, &[]))
}

/// An `ssh-ed25519 AAAA... [comment]` public key as an age recipient.
#[derive(Clone)]
pub struct SshEd25519Recipient {
    blob: Vec<u8>,
    x25519: [u8; 32],
}

impl fmt::Debug for SshEd25519Recipient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SshEd25519Recipient({})", tag_of(&self.blob))
    }
}

impl FromStr for SshEd25519Recipient {
    type Err = SshKeyError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut parts = s.split_whitespace();
        if parts.next() != Some(TAG) {
            return Err(SshKeyError::NotEd25519);
        }
        let blob = STANDARD.decode(parts.next().ok_or(SshKeyError::Malformed)?).map_err(|_| SshKeyError::Malformed)?;
        let x25519 = montgomery(&ed25519_from_blob(&blob)?)?;
        Ok(Self { blob, x25519 })
    }
}

fn ephemeral(rng: &mut (impl CryptoRng + ?Sized)) -> StaticSecret {
    let mut bytes = Zeroizing::new([0u8; 32]);
    rng.fill_bytes(bytes.as_mut());
    StaticSecret::from(*bytes)
}

impl age::Recipient for SshEd25519Recipient {
    fn wrap_file_key(&self, file_key: &FileKey) -> Result<(Vec<Stanza>, HashSet<String>), age::EncryptError> {
        // age's trait gives no randomness source; like age itself, use the OS-seeded one.
        let esk = ephemeral(&mut rand::rng());
        let epk = PublicKey::from(&esk);
        let pk = PublicKey::from(self.x25519);
        let shared = tweak(&self.blob).diffie_hellman(&PublicKey::from(*esk.diffie_hellman(&pk).as_bytes()));
        let mut salt = [0u8; 64];
        salt[..32].copy_from_slice(epk.as_bytes());
        salt[32..].copy_from_slice(pk.as_bytes());
        let key = Zeroizing::new(hkdf(&salt, LABEL, shared.as_bytes()));
        let body = aead_encrypt(&key, file_key.expose_secret());
        let stanza = Stanza {
            tag: TAG.to_owned(),
            args: vec![tag_of(&self.blob), STANDARD_NO_PAD.encode(epk.as_bytes())],
            body,
        };
        Ok((vec![stanza], HashSet::new()))
    }
}

/// An unencrypted OpenSSH `ssh-ed25519` private key as an age identity.
pub struct SshEd25519Identity {
    blob: Vec<u8>,
    secret: StaticSecret,
}

impl fmt::Debug for SshEd25519Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SshEd25519Identity([REDACTED], {})", tag_of(&self.blob))
    }
}

impl SshEd25519Identity {
    /// From an `-----BEGIN OPENSSH PRIVATE KEY-----` file without a passphrase.
    pub fn from_openssh(text: &str) -> Result<Self, SshKeyError> {
        let body: String = text
            .lines()
            .skip_while(|l| !l.starts_with("-----BEGIN OPENSSH PRIVATE KEY-----"))
            .skip(1)
            .take_while(|l| !l.starts_with("-----END"))
            .collect();
        let raw = Zeroizing::new(STANDARD.decode(body.trim()).map_err(|_| SshKeyError::Malformed)?);
        let mut rest: &[u8] = raw.strip_prefix(b"openssh-key-v1\0").ok_or(SshKeyError::Malformed)?;
        let cipher = take_string(&mut rest)?;
        let _kdf = take_string(&mut rest)?;
        let _kdf_options = take_string(&mut rest)?;
        if cipher != b"none" {
            return Err(SshKeyError::Encrypted);
        }
        let (count, after) = rest.split_first_chunk::<4>().ok_or(SshKeyError::Malformed)?;
        if u32::from_be_bytes(*count) != 1 {
            return Err(SshKeyError::Malformed);
        }
        rest = after;
        let blob = take_string(&mut rest)?.to_vec();
        ed25519_from_blob(&blob)?;
        let mut private = take_string(&mut rest)?;
        let (checks, after) = private.split_at_checked(8).ok_or(SshKeyError::Malformed)?;
        if checks[..4] != checks[4..] {
            return Err(SshKeyError::Encrypted);
        }
        private = after;
        if take_string(&mut private)? != TAG.as_bytes() {
            return Err(SshKeyError::NotEd25519);
        }
        let _public = take_string(&mut private)?;
        let keypair = take_string(&mut private)?;
        let seed = keypair.get(..32).ok_or(SshKeyError::Malformed)?;
        let hashed = Sha512::digest(seed);
        let mut scalar = Zeroizing::new([0u8; 32]);
        scalar.copy_from_slice(&hashed[..32]);
        Ok(Self { blob, secret: StaticSecret::from(*scalar) })
    }
}

impl SshEd25519Identity {
    /// Its public key, `ssh-ed25519 AAAA...`, as a recipient is written.
    pub fn public_line(&self) -> String {
        format!("{TAG} {}", STANDARD.encode(&self.blob))
    }
}

impl age::Identity for SshEd25519Identity {
    fn unwrap_stanza(&self, stanza: &Stanza) -> Option<Result<FileKey, age::DecryptError>> {
        if stanza.tag != TAG || stanza.args.first()? != &tag_of(&self.blob) {
            return None;
        }
        let epk: [u8; 32] = STANDARD_NO_PAD.decode(stanza.args.get(1)?).ok()?.try_into().ok()?;
        let epk = PublicKey::from(epk);
        let pk = PublicKey::from(&self.secret);
        let shared = tweak(&self.blob).diffie_hellman(&PublicKey::from(*self.secret.diffie_hellman(&epk).as_bytes()));
        let mut salt = [0u8; 64];
        salt[..32].copy_from_slice(epk.as_bytes());
        salt[32..].copy_from_slice(pk.as_bytes());
        let key = Zeroizing::new(hkdf(&salt, LABEL, shared.as_bytes()));
        let result = aead_decrypt(&key, FILE_KEY_BYTES, &stanza.body)
            .map_err(|_| age::DecryptError::DecryptionFailed)
            .and_then(|plain| {
                let plain = Zeroizing::new(plain);
                FileKey::try_init_with_mut(|k| {
                    if plain.len() != k.len() {
                        return Err(age::DecryptError::DecryptionFailed);
                    }
                    k.copy_from_slice(&plain);
                    Ok(())
                })
            });
        Some(result)
    }
}
