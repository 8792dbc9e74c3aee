//! The value cipher: `ENC[AES256_GCM,data:...,iv:...,tag:...,type:...]` strings, AES-256-GCM
//! with sops' 32-byte IVs, the AAD of a value, and the IV stash that keeps unchanged values
//! byte for byte when a file is encrypted again.

use aes_gcm::Nonce;
use aes_gcm::aead::consts::U32;
use aes_gcm::aead::{Aead, KeyInit, Payload};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use sealant_core::SecretBytes;
use sha2::Digest as _;
use zeroize::Zeroizing;

use crate::tree::{Comment, Node, go_float};
use crate::{SopsError, SopsGcm};

/// A parsed `ENC[AES256_GCM,data:...,iv:...,tag:...,type:...]` value.
pub(crate) struct Encrypted {
    pub(crate) data: Vec<u8>,
    pub(crate) iv: Vec<u8>,
    pub(crate) tag: Vec<u8>,
    pub(crate) kind: String,
}

pub(crate) fn parse_enc(text: &str) -> Option<Encrypted> {
    let inner = text.strip_prefix("ENC[AES256_GCM,")?.strip_suffix(']')?;
    let mut fields = std::collections::HashMap::new();
    for part in inner.split(',') {
        let (k, v) = part.split_once(':')?;
        fields.insert(k, v);
    }
    let decode = |k: &str| STANDARD.decode(fields.get(k)?).ok();
    Some(Encrypted {
        data: decode("data")?,
        iv: decode("iv")?,
        tag: decode("tag")?,
        kind: (*fields.get("type")?).to_owned(),
    })
}

/// Whether a string is an encrypted sops value.
pub fn is_encrypted_value(text: &str) -> bool {
    text.starts_with("ENC[AES256_GCM,")
}

/// A decrypted value: its plaintext bytes, its `type:` and the IV it was encrypted with.
pub(crate) struct Decrypted {
    pub(crate) plain: SecretBytes,
    pub(crate) kind: String,
    pub(crate) iv: [u8; 32],
}

/// Decrypt one value with `aad`.
pub(crate) fn decrypt_value(key: &[u8; 32], text: &str, aad: &str) -> Option<Decrypted> {
    let enc = parse_enc(text)?;
    let iv = <[u8; 32]>::try_from(enc.iv.as_slice()).ok()?;
    let cipher = SopsGcm::new_from_slice(key).ok()?;
    let mut sealed = enc.data;
    sealed.extend_from_slice(&enc.tag);
    let plain = cipher.decrypt(&Nonce::<U32>::from(iv), Payload { msg: &sealed, aad: aad.as_bytes() }).ok()?;
    Some(Decrypted { plain: SecretBytes::new(plain), kind: enc.kind, iv })
}

/// A decrypted value as a tree node, by its sops type.
pub(crate) fn typed(plain: SecretBytes, kind: &str) -> Option<Node> {
    let text = std::str::from_utf8(plain.expose()).ok();
    Some(match kind {
        "str" | "bytes" => match String::from_utf8(plain.expose().to_vec()) {
            Ok(s) => Node::str(s),
            Err(e) => Node::Bytes(Zeroizing::new(e.into_bytes())),
        },
        "int" => Node::Int(text?.parse().ok()?),
        "float" => Node::Float(text?.parse().ok()?),
        // strconv.ParseBool, as sops: any other spelling is an error, not `false`.
        "bool" => Node::Bool(match text? {
            "1" | "t" | "T" | "TRUE" | "true" | "True" => true,
            "0" | "f" | "F" | "FALSE" | "false" | "False" => false,
            _ => return None,
        }),
        "time" => Node::Time(text?.to_owned()),
        // sops 3.13 writes a list item's inline comment as an item of its own (`- ENC[...]`).
        "comment" => {
            Node::Comment(Comment { text: String::from_utf8_lossy(plain.expose()).into_owned(), inline: true })
        }
        _ => return None,
    })
}

/// `ToBytes` of a plaintext leaf, as sops feeds it to the MAC and the cipher, with its type.
pub(crate) fn plain_of(node: &Node) -> Option<(Zeroizing<Vec<u8>>, &'static str)> {
    let (bytes, kind) = match node {
        Node::Str(s) => (s.as_bytes().to_vec(), "str"),
        Node::Bytes(b) => (b.to_vec(), "str"),
        Node::Bool(true) => (b"True".to_vec(), "bool"),
        Node::Bool(false) => (b"False".to_vec(), "bool"),
        Node::Int(i) => (i.to_string().into_bytes(), "int"),
        Node::Float(f) => (go_float(*f).into_bytes(), "float"),
        Node::Time(t) => (t.clone().into_bytes(), "time"),
        Node::Comment(c) => (c.text.clone().into_bytes(), "comment"),
        Node::Null | Node::Map(_) | Node::List(_) => return None,
    };
    Some((Zeroizing::new(bytes), kind))
}

/// The AAD of a value: its path joined by `:`, plus a final `:`.
pub(crate) fn aad_of(path: &[String]) -> String {
    format!("{}:", path.join(":"))
}

/// IVs of the values as they were decrypted, by a hash of (AAD, type, plaintext): encrypting
/// an unchanged value again gives the same ciphertext, so diffs stay small. No plaintext is kept.
#[derive(Debug, Default)]
pub struct Stash(pub(crate) std::collections::HashMap<[u8; 32], [u8; 32]>);

impl Stash {
    pub(crate) fn slot(aad: &str, kind: &str, plain: &[u8]) -> [u8; 32] {
        let mut hash = sha2::Sha256::new();
        for part in [aad.as_bytes(), kind.as_bytes(), plain] {
            hash.update((part.len() as u64).to_be_bytes());
            hash.update(part);
        }
        hash.finalize().into()
    }

    /// The IV this plaintext had; a fresh encryption (empty stash) hashes nothing.
    pub(crate) fn iv_for(&self, aad: &str, kind: &str, plain: &[u8]) -> Option<[u8; 32]> {
        if self.0.is_empty() {
            return None;
        }
        self.0.get(&Stash::slot(aad, kind, plain)).copied()
    }

    pub(crate) fn keep(&mut self, aad: &str, value: &Decrypted) {
        self.0.insert(Stash::slot(aad, &value.kind, value.plain.expose()), value.iv);
    }
}

/// Encrypt one value; with the IV of the stash when this plaintext was there before.
pub(crate) fn encrypt_value<R: rand::CryptoRng + ?Sized>(
    rng: &mut R,
    key: &[u8; 32],
    plain: &[u8],
    kind: &str,
    aad: &str,
    stash: &Stash,
) -> Result<String, SopsError> {
    let iv = match stash.iv_for(aad, kind, plain) {
        Some(iv) => iv,
        None => {
            let mut iv = [0u8; 32];
            rng.fill_bytes(&mut iv);
            iv
        }
    };
    let cipher = SopsGcm::new_from_slice(key).map_err(|_| SopsError::Encrypt("the data key is not 32 bytes"))?;
    let nonce = Nonce::<U32>::from(iv);
    let mut sealed = cipher
        .encrypt(&nonce, Payload { msg: plain, aad: aad.as_bytes() })
        .map_err(|_| SopsError::Encrypt("AES-GCM refused a value"))?;
    let tag = sealed.split_off(sealed.len().saturating_sub(16));
    Ok(format!(
        "ENC[AES256_GCM,data:{},iv:{},tag:{},type:{kind}]",
        STANDARD.encode(&sealed),
        STANDARD.encode(iv),
        STANDARD.encode(tag)
    ))
}
