//! The sealed-secrets hybrid format: RSA-OAEP wraps a one-time AES-256-GCM key.
//!
//! ```text
//! item = u16be(len(R)) || R || AES-256-GCM_K(nonce = 0^96, aad = none)(plaintext) || tag
//! R    = RSA-OAEP(SHA-256, MGF1-SHA-256, label)(K),   K = 32 random bytes
//! ```

use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce};
use rand::CryptoRng;
use rsa::Oaep;
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::keys::{PrivateKey, PublicKey};
use crate::secret::SecretBytes;

const SESSION_KEY_LEN: usize = 32;
const ZERO_NONCE: [u8; 12] = [0; 12];

#[derive(Debug, thiserror::Error)]
pub enum HybridError {
    #[error("sealed data is too short")]
    TooShort,
    #[error("no key could decrypt the sealed data")]
    NoKeyCouldDecrypt,
    #[error("cannot encrypt the session key")]
    Encrypt(#[source] rsa::Error),
    #[error("cannot encrypt the value")]
    Aead,
}

/// Seal `plaintext` to `key`, bound to `label` (see [`crate::Scope::label`]).
pub fn hybrid_encrypt<R: CryptoRng + ?Sized>(
    rng: &mut R,
    key: &PublicKey,
    plaintext: &[u8],
    label: &[u8],
) -> Result<Vec<u8>, HybridError> {
    let mut session_key = Zeroizing::new([0u8; SESSION_KEY_LEN]);
    rng.fill_bytes(session_key.as_mut());
    let wrapped = key
        .rsa()
        .encrypt(rng, Oaep::<Sha256>::new_with_label(label), session_key.as_ref())
        .map_err(HybridError::Encrypt)?;
    let wrapped_len = u16::try_from(wrapped.len()).map_err(|_| HybridError::Aead)?;

    let cipher = Aes256Gcm::new_from_slice(session_key.as_ref()).map_err(|_| HybridError::Aead)?;
    let sealed = cipher.encrypt(&Nonce::from(ZERO_NONCE), plaintext).map_err(|_| HybridError::Aead)?;

    let mut out = Vec::with_capacity(2 + wrapped.len() + sealed.len());
    out.extend_from_slice(&wrapped_len.to_be_bytes());
    out.extend_from_slice(&wrapped);
    out.extend_from_slice(&sealed);
    Ok(out)
}

/// Open an item with one key. `None` means this key (or this label) does not fit.
pub fn single_decrypt(key: &PrivateKey, item: &[u8], label: &[u8]) -> Result<Option<SecretBytes>, HybridError> {
    let (len_bytes, rest) = item.split_first_chunk::<2>().ok_or(HybridError::TooShort)?;
    let wrapped_len = usize::from(u16::from_be_bytes(*len_bytes));
    if rest.len() < wrapped_len {
        return Err(HybridError::TooShort);
    }
    let (wrapped, sealed) = rest.split_at(wrapped_len);
    let Ok(session_key) = key.rsa().decrypt(Oaep::<Sha256>::new_with_label(label), wrapped) else {
        return Ok(None);
    };
    let session_key = Zeroizing::new(session_key);
    // Go's aes.NewCipher accepts 16, 24 and 32-byte keys; a sealer that follows the format
    // always sends 32, and any other length cannot be a key we wrote.
    if session_key.len() != SESSION_KEY_LEN {
        return Ok(None);
    }
    let Ok(cipher) = Aes256Gcm::new_from_slice(&session_key) else {
        return Ok(None);
    };
    Ok(cipher.decrypt(&Nonce::from(ZERO_NONCE), sealed).ok().map(SecretBytes::new))
}

/// Open an item with the first of `keys` that fits, as the controller does.
pub fn hybrid_decrypt<'a>(
    keys: impl IntoIterator<Item = &'a PrivateKey>,
    item: &[u8],
    label: &[u8],
) -> Result<SecretBytes, HybridError> {
    let (len_bytes, rest) = item.split_first_chunk::<2>().ok_or(HybridError::TooShort)?;
    if rest.len() < usize::from(u16::from_be_bytes(*len_bytes)) {
        return Err(HybridError::TooShort);
    }
    for key in keys {
        // An item shorter than this key's RSA block cannot be for this key.
        if item.len() < key.public().size_bytes() + 2 {
            continue;
        }
        if let Some(plain) = single_decrypt(key, item, label)? {
            return Ok(plain);
        }
    }
    Err(HybridError::NoKeyCouldDecrypt)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_byte_is_too_short() {
        let keys: [&PrivateKey; 0] = [];
        assert!(matches!(hybrid_decrypt(keys, &[2], b""), Err(HybridError::TooShort)));
    }
}
