//! The sealed-secrets hybrid format: RSA-OAEP wraps a one-time AES-256-GCM key.
//!
//! ```text
//! item = u16be(len(R)) || R || AES-256-GCM_K(nonce = 0^96, aad = none)(plaintext) || tag
//! R    = RSA-OAEP(SHA-256, MGF1-SHA-256, label)(K),   K = 32 random bytes
//! ```

use rand::CryptoRng;
use zeroize::Zeroizing;

use crate::keys::{PrivateKey, PublicKey};
use crate::provider;
use crate::secret::SecretBytes;

const SESSION_KEY_LEN: usize = 32;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HybridError {
    #[error("sealed data is too short")]
    TooShort,
    #[error("no key could decrypt the sealed data")]
    NoKeyCouldDecrypt,
    #[error("cannot encrypt the session key")]
    Encrypt,
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
    let wrapped = key.oaep_encrypt(rng, session_key.as_ref(), label).ok_or(HybridError::Encrypt)?;
    let wrapped_len = u16::try_from(wrapped.len()).map_err(|_| HybridError::Encrypt)?;

    let mut out = Vec::with_capacity(2 + wrapped.len() + plaintext.len() + 16);
    out.extend_from_slice(&wrapped_len.to_be_bytes());
    out.extend_from_slice(&wrapped);
    provider::aes_gcm_seal_into(session_key.as_ref(), plaintext, &mut out).ok_or(HybridError::Aead)?;
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
    let Some(session_key) = key.oaep_decrypt(wrapped, label) else {
        return Ok(None);
    };
    // Go's aes.NewCipher accepts 16, 24 and 32-byte keys; a sealer that follows the format
    // always sends 32, and any other length cannot be a key we wrote.
    if session_key.len() != SESSION_KEY_LEN {
        return Ok(None);
    }
    Ok(provider::aes_gcm_open(&session_key, sealed))
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
