//! RSA keys: parsing PEM and key Secrets, and the SSH-style fingerprint used as the key id.

use crate::error::quoted;
use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use rsa::pkcs1::{DecodeRsaPrivateKey, EncodeRsaPrivateKey};
use rsa::pkcs8::{DecodePrivateKey, EncodePrivateKey, EncodePublicKey};
use rsa::traits::PublicKeyParts;
use serde_json::Value;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::provider::{Decryptor, Encryptor};
use crate::secret::SecretBytes;
use crate::yaml;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    #[error("no PEM private key or key Secret found")]
    NoKey,
    #[error("the private key is not an RSA key (PEM type {})", quoted(.0))]
    NotRsa(String),
    #[error("cannot parse the {0} private key")]
    Pem(&'static str, #[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("cannot parse the key document")]
    Document(#[source] yaml::YamlError),
    #[error("the key Secret {} has no data \"tls.key\"", quoted(.0))]
    MissingTlsKey(String),
    #[error("the key Secret {} has data \"tls.key\" that is not valid base64", quoted(.0))]
    Base64(String),
    #[error("cannot encode the private key")]
    Encode,
    #[error("cannot parse the public key")]
    PublicKey(#[source] rsa::pkcs8::spki::Error),
    #[error("the FIPS build takes RSA keys of 2048 to 8192 bits only; this key has {0}")]
    FipsKeySize(usize),
    #[error("the RSA key has {0} bits; keys of {min} to {max} bits are supported", min = MIN_BITS, max = MAX_BITS)]
    Size(usize),
}

/// RSA modulus sizes a certificate may have: what the `rsa` crate takes at least (sealed-secrets
/// never limited sizes, and no controller makes keys under 2048 bits), and, above aws-lc's
/// 8192, up to twice that through the `rsa` crate.
pub const MIN_BITS: usize = 1024;
pub const MAX_BITS: usize = 16384;

/// The RSA key of a SubjectPublicKeyInfo, of [`MIN_BITS`] to [`MAX_BITS`] (the `rsa` crate's own
/// decoder stops at 8192).
fn rsa_public_key(der: &[u8]) -> Result<rsa::PublicKey, KeyError> {
    use rsa::pkcs1::der::Decode as _;
    let malformed = || KeyError::PublicKey(rsa::pkcs8::spki::Error::KeyMalformed);
    let spki = rsa::pkcs8::SubjectPublicKeyInfoRef::from_der(der).map_err(|_| malformed())?;
    if spki.algorithm.oid != rsa::pkcs1::ALGORITHM_OID {
        return Err(KeyError::PublicKey(rsa::pkcs8::spki::Error::OidUnknown { oid: spki.algorithm.oid }));
    }
    let bytes = spki.subject_public_key.as_bytes().ok_or_else(malformed)?;
    let key = rsa::pkcs1::RsaPublicKeyRef::from_der(bytes).map_err(|_| malformed())?;
    let uint = |b: &[u8]| {
        let bits = u32::try_from(b.len() * 8).map_err(|_| malformed())?;
        rsa::BoxedUint::from_be_slice(b, bits).map_err(|_| malformed())
    };
    let n = uint(key.modulus.as_bytes())?;
    let bits = n.bit_width_vartime() as usize;
    if !(MIN_BITS..=MAX_BITS).contains(&bits) {
        return Err(KeyError::Size(bits));
    }
    rsa::PublicKey::new_with_size_limits(n, uint(key.public_exponent.as_bytes())?, MIN_BITS..=MAX_BITS)
        .map_err(|_| malformed())
}

/// An RSA public key, as taken from a certificate.
#[derive(Clone)]
pub struct PublicKey {
    key: rsa::PublicKey,
    /// aws-lc's copy; `None` for a size it does not take (see [`crate::provider`]).
    encryptor: Option<Encryptor>,
}

impl PartialEq for PublicKey {
    fn eq(&self, other: &Self) -> bool {
        self.key == other.key
    }
}

impl Eq for PublicKey {}

impl PublicKey {
    pub fn from_rsa(key: rsa::PublicKey) -> Result<Self, KeyError> {
        let der = key.to_public_key_der().map_err(KeyError::PublicKey)?;
        let encryptor = Encryptor::from_spki_der(der.as_bytes());
        let public = Self { key, encryptor };
        public.check_fips()?;
        Ok(public)
    }

    /// From a DER `SubjectPublicKeyInfo`.
    pub fn from_spki_der(der: &[u8]) -> Result<Self, KeyError> {
        let key = rsa_public_key(der)?;
        let public = Self { key, encryptor: Encryptor::from_spki_der(der) };
        public.check_fips()?;
        Ok(public)
    }

    /// A FIPS build never falls back to the `rsa` crate.
    fn check_fips(&self) -> Result<(), KeyError> {
        if cfg!(feature = "fips") && self.encryptor.is_none() {
            return Err(KeyError::FipsKeySize(self.bits()));
        }
        Ok(())
    }

    pub fn to_spki_der(&self) -> Result<Vec<u8>, KeyError> {
        Ok(self.key.to_public_key_der().map_err(KeyError::PublicKey)?.into_vec())
    }

    pub fn rsa(&self) -> &rsa::PublicKey {
        &self.key
    }

    /// Modulus size in bytes: the length of the RSA block in every item sealed to this key.
    pub fn size_bytes(&self) -> usize {
        self.key.size()
    }

    pub fn bits(&self) -> usize {
        self.key.n().bit_width() as usize
    }

    /// `SHA256:<base64>` of the SSH wire encoding, the id sealed-secrets logs for a key.
    pub fn fingerprint(&self) -> String {
        fingerprint(self)
    }

    /// RSA-OAEP (SHA-256, MGF1-SHA-256) with `label`; `None` if the plaintext does not fit.
    pub(crate) fn oaep_encrypt<R: rand::CryptoRng + ?Sized>(
        &self,
        rng: &mut R,
        plaintext: &[u8],
        label: &[u8],
    ) -> Option<Vec<u8>> {
        match &self.encryptor {
            Some(encryptor) => encryptor.encrypt(plaintext, label),
            None => self.key.encrypt(rng, rsa::Oaep::<Sha256>::new_with_label(label), plaintext).ok(),
        }
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({} bits, {})", self.bits(), self.fingerprint())
    }
}

/// An RSA private key. Both inner copies are wiped on drop (the `rsa` crate zeroizes its key;
/// aws-lc cleanses every allocation it frees); `Debug` shows only the fingerprint.
#[derive(Clone)]
pub struct PrivateKey {
    /// Kept for encoding (`tls.key`, backups) and for signing a new key's certificate.
    key: rsa::PrivateKey,
    /// aws-lc's copy, which unseals; `None` for a size it does not take (see [`crate::provider`]).
    decryptor: Option<Decryptor>,
    public: PublicKey,
    /// Computed once: keys are looked up by fingerprint on every unseal.
    fingerprint: String,
}

impl PrivateKey {
    pub fn from_rsa(key: rsa::PrivateKey) -> Result<Self, KeyError> {
        let public = PublicKey::from_rsa(key.to_public_key())?;
        // The DER copy handed to aws-lc is a zeroizing document.
        let der = key.to_pkcs8_der().map_err(|_| KeyError::Encode)?;
        let decryptor = Decryptor::from_pkcs8_der(der.as_bytes());
        if cfg!(feature = "fips") && decryptor.is_none() {
            return Err(KeyError::FipsKeySize(public.bits()));
        }
        let fingerprint = public.fingerprint();
        Ok(Self { key, decryptor, public, fingerprint })
    }

    pub fn rsa(&self) -> &rsa::PrivateKey {
        &self.key
    }

    pub fn public(&self) -> &PublicKey {
        &self.public
    }

    /// The public key's `SHA256:` fingerprint.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// RSA-OAEP (SHA-256) decryption with `label`; `None` when the block is not for this key
    /// or this label (the two are one failure, as OAEP requires).
    pub(crate) fn oaep_decrypt(&self, wrapped: &[u8], label: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
        match &self.decryptor {
            Some(decryptor) => decryptor.decrypt(wrapped, label),
            None => self.key.decrypt(rsa::Oaep::<Sha256>::new_with_label(label), wrapped).ok().map(Zeroizing::new),
        }
    }

    /// PKCS#1 `RSA PRIVATE KEY` PEM, the form the controller stores in `tls.key`.
    pub fn to_pkcs1_pem(&self) -> Result<SecretBytes, KeyError> {
        let pem = self.key.to_pkcs1_pem(rsa::pkcs8::LineEnding::LF).map_err(|_| KeyError::Encode)?;
        Ok(SecretBytes::from(pem.as_bytes()))
    }

    /// One PEM block: PKCS#1 (`RSA PRIVATE KEY`) or PKCS#8 (`PRIVATE KEY`).
    pub fn from_pem(pem: &str) -> Result<Self, KeyError> {
        let label = pem_label(pem).ok_or(KeyError::NoKey)?;
        let key = match label {
            "RSA PRIVATE KEY" => {
                rsa::PrivateKey::from_pkcs1_pem(pem).map_err(|e| KeyError::Pem("PKCS#1", Box::new(e)))?
            }
            "PRIVATE KEY" => rsa::PrivateKey::from_pkcs8_pem(pem).map_err(|e| match e {
                rsa::pkcs8::Error::KeyMalformed(_) | rsa::pkcs8::Error::PublicKey(_) => KeyError::NotRsa(label.into()),
                e => KeyError::Pem("PKCS#8", Box::new(e)),
            })?,
            other => return Err(KeyError::NotRsa(other.to_owned())),
        };
        Self::from_rsa(key)
    }
}

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PrivateKey([REDACTED], {})", self.fingerprint)
    }
}

/// The label of the first PEM block in `text`, e.g. `RSA PRIVATE KEY`.
fn pem_label(text: &str) -> Option<&str> {
    let start = text.find("-----BEGIN ")? + "-----BEGIN ".len();
    let end = text[start..].find("-----")?;
    Some(&text[start..start + end])
}

/// Every `-----BEGIN ...-----` block in `text`, with its label.
pub fn pem_blocks(text: &str) -> Vec<(&str, &str)> {
    let mut blocks = Vec::new();
    let mut rest = text;
    while let Some(begin) = rest.find("-----BEGIN ") {
        let block = &rest[begin..];
        let Some(label) = pem_label(block) else { break };
        let end_marker = format!("-----END {label}-----");
        let Some(end) = block.find(&end_marker) else {
            break;
        };
        let len = end + end_marker.len();
        blocks.push((label, &block[..len]));
        rest = &block[len..];
    }
    blocks
}

/// Private keys from a file's contents, in any form kubeseal's `--recovery-private-key` takes:
/// PEM (PKCS#1 or PKCS#8, one or more blocks), a `kubernetes.io/tls` key Secret in YAML or
/// JSON (several documents allowed), or a `v1 List` of key Secrets.
pub fn parse_private_keys(contents: &[u8]) -> Result<Vec<PrivateKey>, KeyError> {
    let text = String::from_utf8_lossy(contents);
    let key_blocks: Vec<_> =
        pem_blocks(&text).into_iter().filter(|(label, _)| label.ends_with("PRIVATE KEY")).collect();
    if !key_blocks.is_empty() {
        return key_blocks.into_iter().map(|(_, pem)| PrivateKey::from_pem(pem)).collect();
    }
    let mut keys = Vec::new();
    for doc in yaml::parse_documents(&text).map_err(KeyError::Document)? {
        collect_secret_keys(&doc, &mut keys)?;
    }
    if keys.is_empty() { Err(KeyError::NoKey) } else { Ok(keys) }
}

fn collect_secret_keys(doc: &Value, keys: &mut Vec<PrivateKey>) -> Result<(), KeyError> {
    if let Some(items) = doc.get("items").and_then(Value::as_array) {
        for item in items {
            collect_secret_keys(item, keys)?;
        }
        return Ok(());
    }
    if !doc.is_object() {
        return Ok(());
    }
    let name = doc.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("<unnamed>").to_owned();
    let pem = if let Some(encoded) = doc.pointer("/data/tls.key").and_then(Value::as_str) {
        let bytes = STANDARD.decode(encoded.trim()).map_err(|_| KeyError::Base64(name.clone()))?;
        SecretBytes::new(bytes)
    } else if let Some(plain) = doc.pointer("/stringData/tls.key").and_then(Value::as_str) {
        SecretBytes::from(plain.as_bytes())
    } else {
        return Err(KeyError::MissingTlsKey(name));
    };
    let text = String::from_utf8_lossy(pem.expose()).into_owned();
    let text = Zeroizing::new(text);
    keys.push(PrivateKey::from_pem(&text)?);
    Ok(())
}

/// `SHA256:` + unpadded base64 of SHA-256 over the SSH `ssh-rsa` public key blob.
pub fn fingerprint(key: &PublicKey) -> String {
    fn put_string(out: &mut Vec<u8>, bytes: &[u8]) {
        out.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
        out.extend_from_slice(bytes);
    }
    fn put_mpint(out: &mut Vec<u8>, be: &[u8]) {
        let trimmed: &[u8] = match be.iter().position(|b| *b != 0) {
            Some(i) => &be[i..],
            None => &[],
        };
        if trimmed.first().is_some_and(|b| b & 0x80 != 0) {
            let mut padded = Vec::with_capacity(trimmed.len() + 1);
            padded.push(0);
            padded.extend_from_slice(trimmed);
            put_string(out, &padded);
        } else {
            put_string(out, trimmed);
        }
    }
    let mut blob = Vec::new();
    put_string(&mut blob, b"ssh-rsa");
    put_mpint(&mut blob, &key.rsa().e_bytes());
    put_mpint(&mut blob, &key.rsa().n_bytes());
    format!("SHA256:{}", STANDARD_NO_PAD.encode(Sha256::digest(&blob)))
}
