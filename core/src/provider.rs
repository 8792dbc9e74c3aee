//! The primitives of the hybrid format, RSA-OAEP (SHA-256) and AES-256-GCM, through aws-lc-rs.
//!
//! aws-lc-rs does the RSA private-key operation about three times as fast as the `rsa` crate's
//! constant-time bigint, and it has a FIPS 140-3 validated build (the `fips` feature). It takes
//! RSA keys of 2048 to 8192 bits; sealed-secrets never limited key sizes, so a key outside that
//! range still works through the `rsa` crate, except in a FIPS build, where only the validated
//! module may touch a key and such a key is refused.

use std::sync::Arc;

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use aws_lc_rs::rsa::{
    OAEP_SHA256_MGF1SHA256, OaepPrivateDecryptingKey, OaepPublicEncryptingKey, PrivateDecryptingKey,
    PublicEncryptingKey,
};
use zeroize::{Zeroize, Zeroizing};

use crate::secret::SecretBytes;

/// Whether the crypto provider runs as the FIPS 140-3 validated module.
pub fn fips_mode() -> bool {
    aws_lc_rs::try_fips_mode().is_ok()
}

/// `VERSION (crypto: ...)`, what `--version` prints after the program's name.
pub fn version_line(version: &str) -> String {
    let module = if fips_mode() { "in use" } else { "not in use" };
    format!("{version} (crypto: aws-lc-rs; FIPS 140-3 module: {module})")
}

/// RSA-OAEP encryption with one public key.
#[derive(Clone)]
pub(crate) struct Encryptor(Arc<OaepPublicEncryptingKey>);

impl Encryptor {
    /// From a DER `SubjectPublicKeyInfo`; `None` when aws-lc does not take the key (its size).
    pub(crate) fn from_spki_der(der: &[u8]) -> Option<Self> {
        let key = PublicEncryptingKey::from_der(der).ok()?;
        OaepPublicEncryptingKey::new(key).ok().map(|k| Self(Arc::new(k)))
    }

    pub(crate) fn encrypt(&self, plaintext: &[u8], label: &[u8]) -> Option<Vec<u8>> {
        let mut out = vec![0u8; self.0.ciphertext_size()];
        let len = self.0.encrypt(&OAEP_SHA256_MGF1SHA256, plaintext, &mut out, Some(label)).ok()?.len();
        out.truncate(len);
        Some(out)
    }
}

/// RSA-OAEP decryption with one private key.
#[derive(Clone)]
pub(crate) struct Decryptor(Arc<OaepPrivateDecryptingKey>);

impl Decryptor {
    /// From a DER PKCS#8 private key; `None` when aws-lc does not take the key (its size).
    pub(crate) fn from_pkcs8_der(der: &[u8]) -> Option<Self> {
        let key = PrivateDecryptingKey::from_pkcs8(der).ok()?;
        OaepPrivateDecryptingKey::new(key).ok().map(|k| Self(Arc::new(k)))
    }

    /// `None` when the block does not open with this key and label.
    pub(crate) fn decrypt(&self, wrapped: &[u8], label: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
        let mut out = Zeroizing::new(vec![0u8; self.0.min_output_size()]);
        let len = self.0.decrypt(&OAEP_SHA256_MGF1SHA256, wrapped, &mut out, Some(label)).ok()?.len();
        out.truncate(len);
        Some(out)
    }
}

/// The format uses each AES key once, so the all-zero nonce is safe.
fn zero_nonce() -> Nonce {
    Nonce::assume_unique_for_key([0; 12])
}

/// AES-256-GCM with the zero nonce: `plaintext` is appended to `out` and sealed there.
pub(crate) fn aes_gcm_seal_into(key: &[u8], plaintext: &[u8], out: &mut Vec<u8>) -> Option<()> {
    let cipher = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, key).ok()?);
    let start = out.len();
    out.extend_from_slice(plaintext);
    match cipher.seal_in_place_separate_tag(zero_nonce(), Aad::empty(), &mut out[start..]) {
        Ok(tag) => {
            out.extend_from_slice(tag.as_ref());
            Some(())
        }
        Err(_) => {
            // Never leave the plaintext copy behind in the caller's buffer.
            out[start..].zeroize();
            out.truncate(start);
            None
        }
    }
}

/// Open AES-256-GCM with the zero nonce; `None` when the key or the tag does not fit.
pub(crate) fn aes_gcm_open(key: &[u8], sealed: &[u8]) -> Option<SecretBytes> {
    let cipher = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, key).ok()?);
    let mut buf = Zeroizing::new(sealed.to_vec());
    let len = cipher.open_in_place(zero_nonce(), Aad::empty(), buf.as_mut_slice()).ok()?.len();
    buf.truncate(len);
    Some(SecretBytes::new(std::mem::take(&mut *buf)))
}
