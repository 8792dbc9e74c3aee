//! SOPS files with age keys, read and written as the real `sops` does.
//!
//! Each store turns its format into a [`Node`] tree (several, for multi-document YAML) with
//! keys in file order and comments as items, and back. Values are `ENC[AES256_GCM,...]`
//! strings encrypted with AES-256-GCM (32-byte IV) under a data key that every age recipient
//! wraps; a SHA-512 MAC over the plaintext values, itself encrypted, guards the whole file.
//! The metadata block is handled as JSON.
#![forbid(unsafe_code)]

pub mod cipher;
pub mod config;
pub mod keys;
pub mod metadata;
pub mod rules;
pub mod shamir;
pub mod stores;
pub mod tree;
pub mod yaml;

use aes_gcm::AesGcm;
use aes_gcm::aead::consts::U32;
use aes_gcm::aes::Aes256;
use serde_json::Value;
use sha2::{Digest, Sha512};
use zeroize::Zeroizing;

pub use cipher::{Stash, is_encrypted_value};
pub use keys::AgeEntry;
pub use keys::{other_key_types, recipients};
pub use metadata::{LAYOUT_VERSION, Metadata, flatten, options_from_metadata, take_metadata, unflatten};
pub use rules::{Selection, unencrypted_values};
use sealant_core::error::quoted;
pub use tree::{Comment, Entry, Node};

use cipher::{aad_of, decrypt_value, encrypt_value, plain_of, typed};
use keys::{check_only_age, data_key, key_entries};
use metadata::{lastmodified, sorted};
use rules::{Leaf, Rules, walk};

pub(crate) type SopsGcm = AesGcm<Aes256, U32>;

/// What can go wrong with a SOPS file. Each variant has its own message and
/// [`SopsError::exit_code`], the code sops documents for the same failure (`cmd/sops/codes`).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SopsError {
    #[error("the file has no sops metadata")]
    NoMetadata,
    #[error("the file is already encrypted (it has a sops key)")]
    AlreadyEncrypted,
    #[error("{} is not an age recipient (age1... or ssh-ed25519 ...)", quoted(.0))]
    InvalidRecipient(String),
    #[error("no age recipients were given")]
    NoRecipients,
    #[error("the file has no age keys")]
    NoAgeKeys,
    #[error("the sops metadata is invalid: {0}")]
    InvalidMetadata(String),
    #[error("the sops metadata is invalid: {key}: {message}")]
    InvalidRegex { key: String, message: String },
    #[error("an encrypted comment would match unencrypted_comment_regex")]
    CommentMatchesUnencrypted,
    #[error("no age identity could decrypt the data key; the file is encrypted to: {recipients}")]
    NoIdentity { recipients: String },
    #[error("the key groups gave {got} of the {needed} parts needed for the data key")]
    NotEnoughParts { got: usize, needed: usize },
    #[error("cannot decrypt the value at {}", quoted(.path))]
    Value { path: String },
    #[error("the value at {} is not in ENC[...] form", quoted(.path))]
    NotEncrypted { path: String },
    #[error("MAC mismatch: the file was changed without its key, or is corrupt")]
    MacMismatch,
    #[error("cannot decrypt the MAC")]
    MacUndecryptable,
    #[error(
        "the file is also encrypted to {} keys, for which sealant cannot wrap a new data key",
        .0.join(", ")
    )]
    UnsupportedKeyType(Vec<&'static str>),
    #[error("cannot encrypt: {0}")]
    Encrypt(&'static str),
    #[error("{0}")]
    Parse(String),
}

impl SopsError {
    /// The exit status sops uses for this failure (its `cmd/sops/codes`); 2 for a recipient
    /// given wrong on the command line, which is a usage error.
    pub fn exit_code(&self) -> u8 {
        match self {
            SopsError::InvalidRecipient(_) => 2,
            SopsError::Parse(_) => 2, // CouldNotReadInputFile
            SopsError::Encrypt(_) | SopsError::CommentMatchesUnencrypted => 23, // ErrorEncryptingTree
            SopsError::MacUndecryptable => 24, // ErrorDecryptingMac
            SopsError::Value { .. } | SopsError::NotEncrypted { .. } => 25, // ErrorDecryptingTree
            SopsError::MacMismatch => 51, // MacMismatch
            SopsError::NoRecipients => 111, // NoEncryptionKeyFound
            SopsError::NoIdentity { .. } | SopsError::NotEnoughParts { .. } | SopsError::NoAgeKeys => 128, // CouldNotRetrieveKey
            SopsError::AlreadyEncrypted => 203, // FileAlreadyEncrypted
            SopsError::NoMetadata
            | SopsError::InvalidMetadata(_)
            | SopsError::InvalidRegex { .. }
            | SopsError::UnsupportedKeyType(_) => 1, // ErrorGeneric
        }
    }

    /// What to do about it, where there is something to say.
    pub fn hint(&self) -> Option<&'static str> {
        match self {
            SopsError::InvalidRecipient(_) => {
                Some("an age recipient starts with age1, or is an ssh-ed25519 public key line")
            }
            SopsError::NoRecipients => Some("give --age RECIPIENT, or a .sops.yaml creation rule with age keys"),
            SopsError::AlreadyEncrypted => {
                Some("to change its recipients use `sealant sops updatekeys`; to edit it, `sealant sops edit`")
            }
            SopsError::NoIdentity { .. } | SopsError::NotEnoughParts { .. } => {
                Some("set SOPS_AGE_KEY_FILE, SOPS_AGE_KEY or SOPS_AGE_KEY_CMD to an identity the file is encrypted to")
            }
            SopsError::MacMismatch => Some("the file was edited by hand or damaged; restore it from Git"),
            SopsError::UnsupportedKeyType(_) => {
                Some("remove those keys from the file's metadata with sops, or run this with sops itself")
            }
            _ => None,
        }
    }
}

/// Decrypt one leaf if it is in an encrypted position, and hash it for the MAC.
pub(crate) fn decrypt_leaf(
    leaf: &Leaf<'_>,
    node: &mut Node,
    key: &[u8; 32],
    rules: &Rules,
    mac: &mut Sha512,
    stash: &mut Stash,
) -> Result<(), SopsError> {
    let encrypted = rules.encrypted_on_decrypt(leaf, node);
    let shown = || leaf.path.join(".");
    if leaf.is_comment {
        // A comment that does not decrypt is kept as it is, as sops does.
        let aad = aad_of(leaf.path);
        if let Node::Comment(comment) = node
            && encrypted
            && let Some(value) = decrypt_value(key, &comment.text, &aad)
        {
            stash.keep(&aad, &value);
            comment.text = String::from_utf8_lossy(value.plain.expose()).into_owned();
        }
        return Ok(());
    }
    if encrypted {
        let Node::Str(text) = node else {
            return Err(SopsError::NotEncrypted { path: shown() });
        };
        if !text.is_empty() {
            let aad = aad_of(leaf.path);
            let value = decrypt_value(key, text, &aad).ok_or_else(|| SopsError::Value { path: shown() })?;
            stash.keep(&aad, &value);
            *node = typed(value.plain, &value.kind).ok_or_else(|| SopsError::Value { path: shown() })?;
        }
    }
    // A comment (an item 3.13 wrote for an inline one) is not part of the MAC.
    if (encrypted || !rules.mac_only_encrypted)
        && !matches!(node, Node::Comment(_))
        && let Some((bytes, _)) = plain_of(node)
    {
        mac.update(&bytes);
    }
    Ok(())
}

/// What decrypting a file gives besides the plaintext: its data key and the IV stash, so that
/// an edit can be encrypted again with unchanged values keeping their ciphertext.
#[derive(Debug)]
pub struct Opened {
    pub(crate) key: Zeroizing<[u8; 32]>,
    pub(crate) stash: Stash,
}

/// Decrypt the documents of one sops file in place. `meta` is the `sops` block (already taken
/// out of the documents). With `ignore_mac`, a wrong MAC is not an error.
pub fn decrypt_documents(
    docs: &mut [Node],
    meta: &Value,
    identities: &[sealant_core::age_keys::Identity],
    ignore_mac: bool,
) -> Result<Opened, SopsError> {
    let meta = Metadata::parse(meta)?;
    let key = data_key(&meta, identities)?;
    let rules = &meta.rules;
    let mut mac = Sha512::new();
    if rules.mac_only_encrypted {
        mac.update(mac_only_prefix());
    }
    let mut stash = Stash::default();
    for doc in docs.iter_mut() {
        walk(doc, &mut Vec::new(), &mut Vec::new(), &mut |leaf, node| {
            decrypt_leaf(leaf, node, &key, rules, &mut mac, &mut stash)
        })?;
    }
    let opened = Opened { key, stash };
    if ignore_mac {
        return Ok(opened);
    }
    let expected: String = mac.finalize().iter().map(|b| format!("{b:02X}")).collect();
    let stored = meta.mac.as_deref().ok_or(SopsError::MacUndecryptable)?;
    let stored = decrypt_value(&opened.key, stored, &meta.lastmodified).ok_or(SopsError::MacUndecryptable)?;
    if stored.plain.expose() != expected.as_bytes() {
        return Err(SopsError::MacMismatch);
    }
    Ok(opened)
}

/// `sha256("sops")`, which starts the MAC when `mac_only_encrypted` is set.
pub(crate) fn mac_only_prefix() -> Vec<u8> {
    sha2::Sha256::digest(b"sops").to_vec()
}

/// How to encrypt a file.
#[derive(Debug)]
pub struct EncryptOptions {
    /// Key groups of age recipients (`age1...` or `ssh-ed25519 ...`); one group is the usual case.
    pub key_groups: Vec<Vec<String>>,
    /// With several groups, how many are needed (default: all).
    pub shamir_threshold: Option<usize>,
    pub selection: Selection,
    pub mac_only_encrypted: bool,
}

/// Hash one leaf for the MAC and encrypt it if it is in an encrypted position.
pub(crate) fn encrypt_leaf<R: rand::CryptoRng + ?Sized>(
    rng: &mut R,
    leaf: &Leaf<'_>,
    node: &mut Node,
    key: &[u8; 32],
    rules: &Rules,
    mac: &mut Sha512,
    stash: &Stash,
) -> Result<(), SopsError> {
    let encrypted = rules.encrypts(leaf);
    let Some((bytes, kind)) = plain_of(node) else { return Ok(()) };
    let aad = aad_of(leaf.path);
    if leaf.is_comment {
        // sops leaves empty comments (a bare `#`) as they are.
        if encrypted && !bytes.is_empty() {
            if let Some(r) = &rules.unencrypted_comment_regex
                && r.is_match(&String::from_utf8_lossy(&bytes))
            {
                return Err(SopsError::CommentMatchesUnencrypted);
            }
            let text = encrypt_value(rng, key, &bytes, kind, &aad, stash)?;
            if let Node::Comment(comment) = node {
                comment.text = text;
            }
        }
        return Ok(());
    }
    if encrypted || !rules.mac_only_encrypted {
        mac.update(&bytes);
    }
    // sops leaves empty strings as they are.
    if encrypted && !(kind == "str" && bytes.is_empty()) {
        *node = Node::str(encrypt_value(rng, key, &bytes, kind, &aad, stash)?);
    }
    Ok(())
}

/// Encrypt every value of `docs` in place with `key`; the `lastmodified` and `mac` of the result.
pub(crate) fn seal<R: rand::CryptoRng + ?Sized>(
    rng: &mut R,
    docs: &mut [Node],
    key: &[u8; 32],
    rules: &Rules,
    stash: &Stash,
    now: time::OffsetDateTime,
) -> Result<(String, String), SopsError> {
    let mut mac = Sha512::new();
    if rules.mac_only_encrypted {
        mac.update(mac_only_prefix());
    }
    for doc in docs.iter_mut() {
        walk(doc, &mut Vec::new(), &mut Vec::new(), &mut |leaf, node| {
            encrypt_leaf(rng, leaf, node, key, rules, &mut mac, stash)
        })?;
    }
    let digest: String = mac.finalize().iter().map(|b| format!("{b:02X}")).collect();
    let lastmodified = lastmodified(now)?;
    let mac_value = encrypt_value(rng, key, digest.as_bytes(), "str", &lastmodified, &Stash::default())?;
    Ok((lastmodified, mac_value))
}

/// Encrypt documents in place and return the `sops` block to append to each.
pub fn encrypt_documents<R: rand::CryptoRng + ?Sized>(
    rng: &mut R,
    docs: &mut [Node],
    options: &EncryptOptions,
    now: time::OffsetDateTime,
) -> Result<Value, SopsError> {
    if docs.iter().any(|d| d.get("sops").is_some()) {
        return Err(SopsError::AlreadyEncrypted);
    }
    let mut key = Zeroizing::new([0u8; 32]);
    rng.fill_bytes(key.as_mut());
    let mut fields = key_entries(rng, &options.key_groups, options.shamir_threshold, &key, &[])?;
    let (rule_key, rule_value) = options.selection.metadata();
    fields.push((rule_key.to_owned(), Value::String(rule_value)));
    if options.mac_only_encrypted {
        fields.push(("mac_only_encrypted".to_owned(), Value::Bool(true)));
    }
    let rules = Rules::from(&sorted(fields.clone()))?;
    let (lastmodified, mac) = seal(rng, docs, &key, &rules, &Stash::default(), now)?;
    fields.push(("lastmodified".to_owned(), Value::String(lastmodified)));
    fields.push(("mac".to_owned(), Value::String(mac)));
    fields.push(("version".to_owned(), Value::String(LAYOUT_VERSION.into())));
    Ok(sorted(fields))
}

/// Encrypt edited documents again with the data key they were opened with: unchanged values
/// keep their ciphertext. The metadata gets a new `lastmodified` and `mac`, and nothing else
/// changes (not even `version`), so an edit shows in a diff as the lines it touched.
pub fn reencrypt_documents<R: rand::CryptoRng + ?Sized>(
    rng: &mut R,
    docs: &mut [Node],
    meta: &Value,
    opened: &Opened,
    now: time::OffsetDateTime,
) -> Result<Value, SopsError> {
    let rules = Rules::from(meta)?;
    let (lastmodified, mac) = seal(rng, docs, &opened.key, &rules, &opened.stash, now)?;
    // Everything else stays as it was, in its order, so that the diff is just these two lines.
    let mut meta = meta.clone();
    if let Value::Object(map) = &mut meta {
        map.insert("lastmodified".to_owned(), Value::String(lastmodified));
        map.insert("mac".to_owned(), Value::String(mac));
    }
    Ok(meta)
}

/// The metadata with the data key wrapped for `groups` instead (sops `updatekeys`): the
/// values, `lastmodified` and `mac` are untouched. In a single group, recipients that stay
/// keep their entry as it was.
pub fn update_keys<R: rand::CryptoRng + ?Sized>(
    rng: &mut R,
    meta: &Value,
    identities: &[sealant_core::age_keys::Identity],
    groups: &[Vec<String>],
    shamir_threshold: Option<usize>,
) -> Result<Value, SopsError> {
    let key = data_key(&Metadata::parse(meta)?, identities)?;
    // One group to one group keeps the data key, so other key types' entries (kept as they
    // are) still open it; Shamir shares are made anew, which would leave theirs useless.
    let groups_after = groups.iter().filter(|g| !g.is_empty()).count();
    if meta.get("key_groups").is_some() || groups_after > 1 {
        check_only_age(meta)?;
    }
    let single_group = meta.get("age").and_then(Value::as_array).filter(|a| !a.is_empty());
    let keep: &[Value] = match single_group {
        Some(entries) if groups.iter().filter(|g| !g.is_empty()).count() == 1 => entries,
        _ => &[],
    };
    let threshold =
        shamir_threshold.or_else(|| meta.get("shamir_threshold").and_then(Value::as_u64).map(|n| n as usize));
    let new = key_entries(rng, groups, threshold, &key, keep)?;
    // Replace the key fields where they are, so that the rest of the block stays as it was.
    let mut meta = meta.clone();
    if let Value::Object(map) = &mut meta {
        for stale in ["age", "key_groups", "shamir_threshold"] {
            if !new.iter().any(|(k, _)| k == stale) {
                map.shift_remove(stale);
            }
        }
        for (k, v) in new {
            map.insert(k, v);
        }
    }
    Ok(meta)
}

#[cfg(test)]
mod tests {
    use sealant_core::SecretBytes;

    use super::*;
    use crate::shamir::{gf_inv, gf_mul, shamir_combine, shamir_split};

    #[test]
    fn empty_comments_stay_as_they_are() {
        let mut docs = stores::Store::Yaml.read_plain(b"#\n# note\na: 1\n").unwrap();
        let options = EncryptOptions {
            key_groups: vec![vec![age::x25519::Identity::generate().to_public().to_string()]],
            shamir_threshold: None,
            selection: Selection::default(),
            mac_only_encrypted: false,
        };
        encrypt_documents(&mut rand::rng(), &mut docs, &options, time::OffsetDateTime::UNIX_EPOCH).unwrap();
        let written = String::from_utf8(stores::Store::Yaml.write_plain(&docs).unwrap()).unwrap();
        assert!(written.starts_with("#\n#ENC[AES256_GCM,"), "{written}");
    }

    #[test]
    fn booleans_are_read_as_go_reads_them() {
        let bool_of = |text: &str| typed(SecretBytes::from(text.as_bytes()), "bool");
        assert_eq!(bool_of("True"), Some(Node::Bool(true)));
        assert_eq!(bool_of("0"), Some(Node::Bool(false)));
        assert_eq!(bool_of("yes"), None, "an unknown spelling is an error, not false");
    }

    #[test]
    fn other_key_types_are_found_and_kept_or_refused() {
        let top = serde_json::json!({"age": [{"recipient": "age1x", "enc": "e"}], "pgp": [{"fp": "ABC", "enc": "p"}], "kms": []});
        assert_eq!(other_key_types(&top), ["pgp"]);
        assert!(matches!(options_from_metadata(&top), Err(SopsError::UnsupportedKeyType(ref k)) if k == &["pgp"]));
        let grouped = serde_json::json!({"key_groups": [{"age": [], "hc_vault": [{"vault_address": "v"}]}]});
        assert_eq!(other_key_types(&grouped), ["hc_vault"]);
        assert!(check_only_age(&serde_json::json!({"age": [], "pgp": [], "kms": null})).is_ok());
    }

    #[test]
    fn shamir_two_of_two_recombines() {
        // Shares of the secret [7, 9] for x = 1, 2 on the polynomial s + 3x.
        let share = |x: u8| -> Zeroizing<Vec<u8>> { Zeroizing::new(vec![7 ^ gf_mul(3, x), 9 ^ gf_mul(3, x), x]) };
        assert_eq!(shamir_combine(&[share(1), share(2)]).unwrap().as_slice(), &[7, 9]);
        assert_eq!(gf_mul(gf_inv(0x53), 0x53), 1);
    }

    #[test]
    fn shamir_split_then_combine() {
        let mut rng = rand::rng();
        let secret = [1u8, 2, 3, 250];
        let shares = shamir_split(&mut rng, &secret, 3, 2);
        assert_eq!(shamir_combine(&shares[1..]).unwrap().as_slice(), &secret);
        assert_eq!(shamir_combine(&[shares[0].clone(), shares[2].clone()]).unwrap().as_slice(), &secret);
    }

    #[test]
    fn encrypt_then_decrypt_with_groups_and_rules() {
        let a = age::x25519::Identity::generate();
        let b = age::x25519::Identity::generate();
        let doc = serde_json::json!({"s": "v", "n": 3, "f": 2.5, "t": true, "e": "", "z": null,
            "keep_unencrypted": "clear", "nested": {"list": ["x", {"y": 1}]}});
        for (groups, selection, mac_only) in [
            (vec![vec![a.to_public().to_string()]], Selection::Default, false),
            (
                vec![vec![a.to_public().to_string()], vec![b.to_public().to_string()]],
                Selection::EncryptedRegex("^(s|nested)$".into()),
                true,
            ),
        ] {
            let doc = Node::from_json(&doc);
            let mut docs = vec![doc.clone()];
            let options =
                EncryptOptions { key_groups: groups, shamir_threshold: None, selection, mac_only_encrypted: mac_only };
            let meta =
                encrypt_documents(&mut rand::rng(), &mut docs, &options, time::OffsetDateTime::now_utc()).unwrap();
            assert_ne!(docs[0], doc);
            let ids: Vec<Box<dyn age::Identity + Send + Sync>> = vec![Box::new(a.clone()), Box::new(b.clone())];
            decrypt_documents(&mut docs, &meta, &ids, false).unwrap();
            assert_eq!(docs[0], doc);
        }
    }

    #[test]
    fn dotenv_metadata_unflattens() {
        let pairs = vec![
            ("age__list_0__map_recipient".to_owned(), "age1x".to_owned()),
            ("shamir_threshold".to_owned(), "2".to_owned()),
            ("mac_only_encrypted".to_owned(), "true".to_owned()),
        ];
        let meta = unflatten(&pairs);
        assert_eq!(meta["age"][0]["recipient"], "age1x");
        assert_eq!(meta["shamir_threshold"], 2);
        assert_eq!(meta["mac_only_encrypted"], true);
    }
}
