//! SOPS files with age keys, read and written as the real `sops` does.
//!
//! Each store turns its format into a [`Node`] tree (several, for multi-document YAML) with
//! keys in file order and comments as items, and back. Values are `ENC[AES256_GCM,...]`
//! strings encrypted with AES-256-GCM (32-byte IV) under a data key that every age recipient
//! wraps; a SHA-512 MAC over the plaintext values, itself encrypted, guards the whole file.
//! The metadata block is handled as JSON.

pub mod stores;
pub mod tree;
pub mod yaml;

use std::io::Read;

use aes_gcm::aead::consts::U32;
use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::aes::Aes256;
use aes_gcm::{AesGcm, Nonce};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use regex::Regex;
use serde_json::{Map, Value};
use sha2::{Digest, Sha512};
use zeroize::Zeroizing;

use crate::secret::SecretBytes;
use tree::go_float;
pub use tree::{Entry, Node};

type SopsGcm = AesGcm<Aes256, U32>;

#[derive(Debug, thiserror::Error)]
pub enum SopsError {
    #[error("the file has no sops metadata")]
    NoMetadata,
    #[error("the sops metadata is invalid: {0}")]
    Metadata(String),
    #[error("no age identity could decrypt the data key; the file is encrypted to: {recipients}")]
    NoIdentity { recipients: String },
    #[error("the key groups gave {got} of the {needed} parts needed for the data key")]
    NotEnoughParts { got: usize, needed: usize },
    #[error("cannot decrypt the value at {path:?}")]
    Value { path: String },
    #[error("the value at {path:?} is not in ENC[...] form")]
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
    #[error("{0}")]
    Parse(String),
}

/// A parsed `ENC[AES256_GCM,data:...,iv:...,tag:...,type:...]` value.
struct Encrypted {
    data: Vec<u8>,
    iv: Vec<u8>,
    tag: Vec<u8>,
    kind: String,
}

fn parse_enc(text: &str) -> Option<Encrypted> {
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
struct Decrypted {
    plain: SecretBytes,
    kind: String,
    iv: [u8; 32],
}

/// Decrypt one value with `aad`.
fn decrypt_value(key: &[u8; 32], text: &str, aad: &str) -> Option<Decrypted> {
    let enc = parse_enc(text)?;
    let iv = <[u8; 32]>::try_from(enc.iv.as_slice()).ok()?;
    let cipher = SopsGcm::new_from_slice(key).ok()?;
    let mut sealed = enc.data;
    sealed.extend_from_slice(&enc.tag);
    let plain = cipher.decrypt(&Nonce::<U32>::from(iv), Payload { msg: &sealed, aad: aad.as_bytes() }).ok()?;
    Some(Decrypted { plain: SecretBytes::new(plain), kind: enc.kind, iv })
}

/// A decrypted value as a tree node, by its sops type.
fn typed(plain: SecretBytes, kind: &str) -> Option<Node> {
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
        _ => return None,
    })
}

/// `ToBytes` of a plaintext leaf, as sops feeds it to the MAC and the cipher, with its type.
fn plain_of(node: &Node) -> Option<(Zeroizing<Vec<u8>>, &'static str)> {
    let (bytes, kind) = match node {
        Node::Str(s) => (s.as_bytes().to_vec(), "str"),
        Node::Bytes(b) => (b.to_vec(), "str"),
        Node::Bool(true) => (b"True".to_vec(), "bool"),
        Node::Bool(false) => (b"False".to_vec(), "bool"),
        Node::Int(i) => (i.to_string().into_bytes(), "int"),
        Node::Float(f) => (go_float(*f).into_bytes(), "float"),
        Node::Time(t) => (t.clone().into_bytes(), "time"),
        Node::Comment(c) => (c.clone().into_bytes(), "comment"),
        Node::Null | Node::Map(_) | Node::List(_) => return None,
    };
    Some((Zeroizing::new(bytes), kind))
}

/// Which values sops encrypts: the selection rules of the metadata.
#[derive(Debug)]
struct Rules {
    unencrypted_suffix: Option<String>,
    encrypted_suffix: Option<String>,
    unencrypted_regex: Option<Regex>,
    encrypted_regex: Option<Regex>,
    unencrypted_comment_regex: Option<Regex>,
    encrypted_comment_regex: Option<Regex>,
    mac_only_encrypted: bool,
}

/// Where a leaf is: its path of mapping keys, the comments in force at each level, and
/// whether it is itself a comment.
struct Leaf<'a> {
    path: &'a [String],
    comments: &'a [Vec<String>],
    is_comment: bool,
}

impl Rules {
    fn from(meta: &Value) -> Result<Rules, SopsError> {
        let text = |k: &str| meta.get(k).and_then(Value::as_str).filter(|s| !s.is_empty()).map(str::to_owned);
        let regex =
            |k: &str| text(k).map(|r| Regex::new(&r).map_err(|e| SopsError::Metadata(format!("{k}: {e}")))).transpose();
        let mut rules = Rules {
            unencrypted_suffix: text("unencrypted_suffix"),
            encrypted_suffix: text("encrypted_suffix"),
            unencrypted_regex: regex("unencrypted_regex")?,
            encrypted_regex: regex("encrypted_regex")?,
            unencrypted_comment_regex: regex("unencrypted_comment_regex")?,
            encrypted_comment_regex: regex("encrypted_comment_regex")?,
            mac_only_encrypted: meta.get("mac_only_encrypted").is_some_and(|v| v == true || v == "true"),
        };
        let none_set = rules.unencrypted_suffix.is_none()
            && rules.encrypted_suffix.is_none()
            && rules.unencrypted_regex.is_none()
            && rules.encrypted_regex.is_none()
            && !rules.by_comment();
        if none_set {
            rules.unencrypted_suffix = Some("_unencrypted".to_owned());
        }
        Ok(rules)
    }

    fn by_comment(&self) -> bool {
        self.unencrypted_comment_regex.is_some() || self.encrypted_comment_regex.is_some()
    }

    /// Whether sops encrypts this leaf (`sops.go` `shouldBeEncrypted`, in its order).
    fn encrypts(&self, leaf: &Leaf<'_>) -> bool {
        let path = leaf.path;
        let mut encrypted = true;
        if let Some(s) = &self.unencrypted_suffix
            && path.iter().any(|k| k.ends_with(s.as_str()))
        {
            encrypted = false;
        }
        if let Some(s) = &self.encrypted_suffix {
            encrypted = path.iter().any(|k| k.ends_with(s.as_str()));
        }
        if let Some(r) = &self.unencrypted_regex
            && path.iter().any(|k| r.is_match(k))
        {
            encrypted = false;
        }
        if let Some(r) = &self.encrypted_regex {
            encrypted = path.iter().any(|k| r.is_match(k));
        }
        if let Some(r) = &self.unencrypted_comment_regex
            && leaf.comments.iter().flatten().any(|c| r.is_match(c))
        {
            encrypted = false;
        }
        if let Some(r) = &self.encrypted_comment_regex {
            // A marker comment does not encrypt itself.
            let last = leaf.comments.len().saturating_sub(1);
            encrypted = leaf.comments.iter().enumerate().any(|(level, comments)| {
                let upto =
                    if leaf.is_comment && level == last { comments.len().saturating_sub(1) } else { comments.len() };
                comments[..upto].iter().any(|c| r.is_match(c))
            });
        }
        encrypted
    }

    /// On decryption: with comment rules the choice depends on comments that may themselves be
    /// encrypted, so go by the value's form, as the result is the same.
    fn encrypted_on_decrypt(&self, leaf: &Leaf<'_>, node: &Node) -> bool {
        if self.by_comment() || leaf.is_comment {
            return matches!(node, Node::Str(s) if is_encrypted_value(s))
                || matches!(node, Node::Comment(c) if is_encrypted_value(c));
        }
        self.encrypts(leaf)
    }
}

/// What is done at each leaf.
type LeafVisitor<'a> = dyn FnMut(&Leaf<'_>, &mut Node) -> Result<(), SopsError> + 'a;

/// Visit every non-null leaf and comment depth-first in document order, with its path of
/// mapping keys (list indices are not part of a sops path) and the comments in force.
fn walk(
    node: &mut Node,
    path: &mut Vec<String>,
    comments: &mut Vec<Vec<String>>,
    visit: &mut LeafVisitor<'_>,
) -> Result<(), SopsError> {
    // A comment is visited with the path of the map or list it is in.
    let visit_comment =
        |text: &mut String, path: &[String], comments: &mut Vec<Vec<String>>, visit: &mut LeafVisitor<'_>| {
            if let Some(level) = comments.last_mut() {
                level.push(text.clone());
            }
            let mut leaf = Node::Comment(std::mem::take(text));
            let result = visit(&Leaf { path, comments, is_comment: true }, &mut leaf);
            if let Node::Comment(new) = leaf {
                *text = new;
            }
            result
        };
    match node {
        Node::Map(entries) => {
            comments.push(Vec::new());
            for entry in entries.iter_mut() {
                match entry {
                    Entry::Comment(text) => visit_comment(text, path, comments, visit)?,
                    Entry::Pair(k, v) => {
                        path.push(k.clone());
                        walk(v, path, comments, visit)?;
                        path.pop();
                        if let Some(level) = comments.last_mut() {
                            level.clear();
                        }
                    }
                }
            }
            comments.pop();
        }
        Node::List(items) => {
            comments.push(Vec::new());
            for item in items.iter_mut() {
                if let Node::Comment(text) = item {
                    visit_comment(text, path, comments, visit)?;
                } else {
                    walk(item, path, comments, visit)?;
                    if let Some(level) = comments.last_mut() {
                        level.clear();
                    }
                }
            }
            comments.pop();
        }
        Node::Null => {}
        leaf => visit(&Leaf { path, comments, is_comment: false }, leaf)?,
    }
    Ok(())
}

/// The AAD of a value: its path joined by `:`, plus a final `:`.
fn aad_of(path: &[String]) -> String {
    format!("{}:", path.join(":"))
}

/// IVs of the values as they were decrypted, by a hash of (AAD, type, plaintext): encrypting
/// an unchanged value again gives the same ciphertext, so diffs stay small. No plaintext is kept.
#[derive(Debug, Default)]
pub struct Stash(std::collections::HashMap<[u8; 32], [u8; 32]>);

impl Stash {
    fn slot(aad: &str, kind: &str, plain: &[u8]) -> [u8; 32] {
        let mut hash = sha2::Sha256::new();
        for part in [aad.as_bytes(), kind.as_bytes(), plain] {
            hash.update((part.len() as u64).to_be_bytes());
            hash.update(part);
        }
        hash.finalize().into()
    }

    /// The IV this plaintext had; a fresh encryption (empty stash) hashes nothing.
    fn iv_for(&self, aad: &str, kind: &str, plain: &[u8]) -> Option<[u8; 32]> {
        if self.0.is_empty() {
            return None;
        }
        self.0.get(&Stash::slot(aad, kind, plain)).copied()
    }

    fn keep(&mut self, aad: &str, value: &Decrypted) {
        self.0.insert(Stash::slot(aad, &value.kind, value.plain.expose()), value.iv);
    }
}

/// Decrypt one leaf if it is in an encrypted position, and hash it for the MAC.
fn decrypt_leaf(
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
        if let Node::Comment(text) = node
            && encrypted
            && let Some(value) = decrypt_value(key, text, &aad)
        {
            stash.keep(&aad, &value);
            *text = String::from_utf8_lossy(value.plain.expose()).into_owned();
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
    if (encrypted || !rules.mac_only_encrypted)
        && let Some((bytes, _)) = plain_of(node)
    {
        mac.update(&bytes);
    }
    Ok(())
}

/// An age recipient entry of the metadata.
struct AgeEntry {
    recipient: String,
    enc: String,
}

fn age_entries(group: &Value) -> Vec<AgeEntry> {
    group
        .get("age")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|e| {
            Some(AgeEntry {
                recipient: e.get("recipient")?.as_str()?.to_owned(),
                enc: e.get("enc")?.as_str()?.to_owned(),
            })
        })
        .collect()
}

/// The key groups: the top-level keys as one group, else `key_groups`.
fn key_groups(meta: &Value) -> Vec<Vec<AgeEntry>> {
    let top = age_entries(meta);
    if !top.is_empty() {
        return vec![top];
    }
    meta.get("key_groups").and_then(Value::as_array).into_iter().flatten().map(age_entries).collect()
}

fn unwrap_part(entry: &AgeEntry, identities: &[Box<dyn age::Identity + Send + Sync>]) -> Option<Zeroizing<Vec<u8>>> {
    let reader = age::armor::ArmoredReader::new(entry.enc.as_bytes());
    let decryptor = age::Decryptor::new(reader).ok()?;
    let mut out = Zeroizing::new(Vec::new());
    decryptor.decrypt(identities.iter().map(|i| i.as_ref() as &dyn age::Identity)).ok()?.read_to_end(&mut out).ok()?;
    Some(out)
}

/// GF(2^8) multiplication with the AES polynomial.
fn gf_mul(mut a: u8, mut b: u8) -> u8 {
    let mut p = 0u8;
    while b != 0 {
        if b & 1 != 0 {
            p ^= a;
        }
        let carry = a & 0x80;
        a <<= 1;
        if carry != 0 {
            a ^= 0x1b;
        }
        b >>= 1;
    }
    p
}

fn gf_inv(a: u8) -> u8 {
    // a^254 = a^-1 in GF(2^8).
    let mut result = 1u8;
    let mut base = a;
    let mut exp = 254u32;
    while exp > 0 {
        if exp & 1 == 1 {
            result = gf_mul(result, base);
        }
        base = gf_mul(base, base);
        exp >>= 1;
    }
    result
}

/// Combine Shamir shares (`y-bytes ‖ x`) by Lagrange interpolation at 0.
fn shamir_combine(parts: &[Zeroizing<Vec<u8>>]) -> Option<Zeroizing<Vec<u8>>> {
    let len = parts.first()?.len().checked_sub(1)?;
    if parts.iter().any(|p| p.len() != len + 1) {
        return None;
    }
    let xs: Vec<u8> = parts.iter().map(|p| p[len]).collect();
    let mut secret = Zeroizing::new(vec![0u8; len]);
    for (i, part) in parts.iter().enumerate() {
        // basis_i(0) = prod_{j != i} x_j / (x_j - x_i); subtraction is xor.
        let mut basis = 1u8;
        for (j, xj) in xs.iter().enumerate() {
            if i != j {
                basis = gf_mul(basis, gf_mul(*xj, gf_inv(xj ^ xs[i])));
            }
        }
        for (byte, y) in secret.iter_mut().zip(part.iter().take(len)) {
            *byte ^= gf_mul(*y, basis);
        }
    }
    Some(secret)
}

/// The data key, from any identity that opens enough key groups.
fn data_key(
    meta: &Value,
    identities: &[Box<dyn age::Identity + Send + Sync>],
) -> Result<Zeroizing<[u8; 32]>, SopsError> {
    let groups = key_groups(meta);
    if groups.is_empty() {
        return Err(SopsError::Metadata("no age keys found in the file".into()));
    }
    let parts: Vec<Zeroizing<Vec<u8>>> =
        groups.iter().filter_map(|group| group.iter().find_map(|e| unwrap_part(e, identities))).collect();
    let needed = if groups.len() == 1 {
        1
    } else {
        meta.get("shamir_threshold").and_then(Value::as_u64).map_or(groups.len(), |t| t as usize).max(1)
    };
    if parts.is_empty() {
        let recipients: Vec<String> = groups.iter().flatten().map(|e| e.recipient.clone()).collect();
        return Err(SopsError::NoIdentity { recipients: recipients.join(", ") });
    }
    if parts.len() < needed {
        return Err(SopsError::NotEnoughParts { got: parts.len(), needed });
    }
    let key = if groups.len() == 1 {
        parts.into_iter().next().unwrap_or_default()
    } else {
        shamir_combine(&parts).ok_or(SopsError::Metadata("the key group shares do not combine".into()))?
    };
    let mut out = Zeroizing::new([0u8; 32]);
    if key.len() != 32 {
        return Err(SopsError::Metadata(format!("the data key has {} bytes, not 32", key.len())));
    }
    out.copy_from_slice(&key);
    Ok(out)
}

/// `lastmodified` re-formatted as RFC 3339 in UTC with seconds (the MAC's AAD).
fn mac_aad(meta: &Value) -> Result<String, SopsError> {
    let raw = meta.get("lastmodified").and_then(Value::as_str).ok_or(SopsError::Metadata("no lastmodified".into()))?;
    let parsed = time::OffsetDateTime::parse(raw, &time::format_description::well_known::Rfc3339)
        .map_err(|_| SopsError::Metadata(format!("lastmodified {raw:?} is not RFC 3339")))?;
    lastmodified(parsed)
}

/// A time as sops writes `lastmodified`: RFC 3339 in UTC, whole seconds.
fn lastmodified(time: time::OffsetDateTime) -> Result<String, SopsError> {
    time.to_offset(time::UtcOffset::UTC)
        .format(time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z"))
        .map_err(|_| SopsError::Metadata("lastmodified".into()))
}

/// What decrypting a file gives besides the plaintext: its data key and the IV stash, so that
/// an edit can be encrypted again with unchanged values keeping their ciphertext.
#[derive(Debug)]
pub struct Opened {
    key: Zeroizing<[u8; 32]>,
    stash: Stash,
}

/// Decrypt the documents of one sops file in place. `meta` is the `sops` block (already taken
/// out of the documents). With `ignore_mac`, a wrong MAC is not an error.
pub fn decrypt_documents(
    docs: &mut [Node],
    meta: &Value,
    identities: &[Box<dyn age::Identity + Send + Sync>],
    ignore_mac: bool,
) -> Result<Opened, SopsError> {
    let key = data_key(meta, identities)?;
    let rules = Rules::from(meta)?;
    let mut mac = Sha512::new();
    if rules.mac_only_encrypted {
        mac.update(mac_only_prefix());
    }
    let mut stash = Stash::default();
    for doc in docs.iter_mut() {
        walk(doc, &mut Vec::new(), &mut Vec::new(), &mut |leaf, node| {
            decrypt_leaf(leaf, node, &key, &rules, &mut mac, &mut stash)
        })?;
    }
    let opened = Opened { key, stash };
    if ignore_mac {
        return Ok(opened);
    }
    let expected: String = mac.finalize().iter().map(|b| format!("{b:02X}")).collect();
    let stored = meta.get("mac").and_then(Value::as_str).ok_or(SopsError::MacUndecryptable)?;
    let stored = decrypt_value(&opened.key, stored, &mac_aad(meta)?).ok_or(SopsError::MacUndecryptable)?;
    if stored.plain.expose() != expected.as_bytes() {
        return Err(SopsError::MacMismatch);
    }
    Ok(opened)
}

/// `sha256("sops")`, which starts the MAC when `mac_only_encrypted` is set.
fn mac_only_prefix() -> Vec<u8> {
    sha2::Sha256::digest(b"sops").to_vec()
}

/// Take the `sops` block out of every document; the first one's is the file's.
pub fn take_metadata(docs: &mut [Node]) -> Result<Value, SopsError> {
    let mut meta = None;
    for doc in docs.iter_mut() {
        if let Some(m) = doc.remove("sops")
            && meta.is_none()
        {
            meta = Some(m.to_json());
        }
    }
    meta.filter(Value::is_object).ok_or(SopsError::NoMetadata)
}

/// Undo the dotenv flattening of metadata (`sops_age__list_0__map_enc` and the like).
pub fn unflatten(pairs: &[(String, String)]) -> Value {
    let mut root = Value::Object(Map::new());
    for (key, value) in pairs {
        let mut node = &mut root;
        let mut segments = key.split("__").peekable();
        while let Some(segment) = segments.next() {
            let last = segments.peek().is_none();
            let (is_list, name) = match (segment.strip_prefix("list_"), segment.strip_prefix("map_")) {
                (Some(i), _) => (true, i.to_owned()),
                (_, Some(k)) => (false, k.to_owned()),
                _ => (false, segment.to_owned()),
            };
            if is_list {
                let index: usize = name.parse().unwrap_or(0);
                if !node.is_array() {
                    *node = Value::Array(Vec::new());
                }
                let Value::Array(items) = node else { break };
                while items.len() <= index {
                    items.push(Value::Null);
                }
                node = &mut items[index];
            } else {
                if !node.is_object() {
                    *node = Value::Object(Map::new());
                }
                let Value::Object(map) = node else { break };
                node = map.entry(name).or_insert(Value::Null);
            }
            if last {
                *node = match value.as_str() {
                    "true" => Value::Bool(true),
                    "false" => Value::Bool(false),
                    v => v.parse::<i64>().map(Value::from).unwrap_or_else(|_| Value::String(v.to_owned())),
                };
            }
        }
    }
    root
}

/// The sops metadata layout we write (3.13's: keys sorted at every level).
pub const LAYOUT_VERSION: &str = "3.13.2";

/// Which values to encrypt; at most one rule, as in sops.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Selection {
    /// The default: everything except keys ending in `_unencrypted`.
    #[default]
    Default,
    UnencryptedSuffix(String),
    EncryptedSuffix(String),
    UnencryptedRegex(String),
    EncryptedRegex(String),
    UnencryptedCommentRegex(String),
    EncryptedCommentRegex(String),
}

impl Selection {
    /// The rule set among the fields sops uses for them (metadata, `.sops.yaml`, flags), where
    /// `field` gives a field's non-empty value.
    pub fn from_fields(field: impl Fn(&str) -> Option<String>) -> Option<Selection> {
        field("encrypted_regex")
            .map(Selection::EncryptedRegex)
            .or_else(|| field("unencrypted_regex").map(Selection::UnencryptedRegex))
            .or_else(|| field("encrypted_suffix").map(Selection::EncryptedSuffix))
            .or_else(|| field("unencrypted_suffix").map(Selection::UnencryptedSuffix))
            .or_else(|| field("encrypted_comment_regex").map(Selection::EncryptedCommentRegex))
            .or_else(|| field("unencrypted_comment_regex").map(Selection::UnencryptedCommentRegex))
    }

    fn metadata(&self) -> (&'static str, String) {
        match self {
            Selection::Default => ("unencrypted_suffix", "_unencrypted".to_owned()),
            Selection::UnencryptedSuffix(s) => ("unencrypted_suffix", s.clone()),
            Selection::EncryptedSuffix(s) => ("encrypted_suffix", s.clone()),
            Selection::UnencryptedRegex(r) => ("unencrypted_regex", r.clone()),
            Selection::EncryptedRegex(r) => ("encrypted_regex", r.clone()),
            Selection::UnencryptedCommentRegex(r) => ("unencrypted_comment_regex", r.clone()),
            Selection::EncryptedCommentRegex(r) => ("encrypted_comment_regex", r.clone()),
        }
    }
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

/// Encrypt one value; with the IV of the stash when this plaintext was there before.
fn encrypt_value<R: rand::CryptoRng + ?Sized>(
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
    let cipher = SopsGcm::new_from_slice(key).map_err(|_| SopsError::Metadata("data key".into()))?;
    let nonce = Nonce::<U32>::from(iv);
    let mut sealed = cipher
        .encrypt(&nonce, Payload { msg: plain, aad: aad.as_bytes() })
        .map_err(|_| SopsError::Metadata("cannot encrypt a value".into()))?;
    let tag = sealed.split_off(sealed.len().saturating_sub(16));
    Ok(format!(
        "ENC[AES256_GCM,data:{},iv:{},tag:{},type:{kind}]",
        STANDARD.encode(&sealed),
        STANDARD.encode(iv),
        STANDARD.encode(tag)
    ))
}

/// Hash one leaf for the MAC and encrypt it if it is in an encrypted position.
fn encrypt_leaf<R: rand::CryptoRng + ?Sized>(
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
                return Err(SopsError::Metadata(
                    "an encrypted comment would match unencrypted_comment_regex".to_owned(),
                ));
            }
            *node = Node::Comment(encrypt_value(rng, key, &bytes, kind, &aad, stash)?);
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
fn seal<R: rand::CryptoRng + ?Sized>(
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

/// Split `secret` into `n` Shamir shares (`y-bytes ‖ x`, x = 1..n) needing `threshold`.
fn shamir_split<R: rand::CryptoRng + ?Sized>(
    rng: &mut R,
    secret: &[u8],
    n: usize,
    threshold: usize,
) -> Vec<Zeroizing<Vec<u8>>> {
    let mut shares: Vec<Zeroizing<Vec<u8>>> =
        (1..=n).map(|_| Zeroizing::new(Vec::with_capacity(secret.len() + 1))).collect();
    let mut coefficients = Zeroizing::new(vec![0u8; threshold.saturating_sub(1)]);
    for byte in secret {
        rng.fill_bytes(&mut coefficients);
        for (i, share) in shares.iter_mut().enumerate() {
            let x = (i + 1) as u8;
            // Horner: ((a_{t-1} x + ...) x + a_1) x + secret.
            let mut y = 0u8;
            for c in coefficients.iter().rev() {
                y = gf_mul(y, x) ^ c;
            }
            share.push(gf_mul(y, x) ^ byte);
        }
    }
    for (i, share) in shares.iter_mut().enumerate() {
        share.push((i + 1) as u8);
    }
    shares
}

fn armored_age(recipient: &str, part: &[u8]) -> Result<String, SopsError> {
    use std::io::Write;
    let recipients = crate::backup::parse_recipients(&[recipient.to_owned()]).map_err(|_| {
        SopsError::Metadata(format!("{recipient:?} is not an age recipient (age1... or ssh-ed25519 ...)"))
    })?;
    let encryptor = age::Encryptor::with_recipients(recipients.iter().map(|r| r.as_ref() as &dyn age::Recipient))
        .map_err(|e| SopsError::Metadata(e.to_string()))?;
    let io = |e: std::io::Error| SopsError::Metadata(e.to_string());
    let armor = age::armor::ArmoredWriter::wrap_output(Vec::new(), age::armor::Format::AsciiArmor).map_err(io)?;
    let mut writer = encryptor.wrap_output(armor).map_err(io)?;
    writer.write_all(part).map_err(io)?;
    let out = writer.finish().map_err(io)?.finish().map_err(io)?;
    String::from_utf8(out).map_err(|_| SopsError::Metadata("armor".into()))
}

/// The age entries of the metadata for `key`: `age` for one group, else `key_groups` with
/// Shamir shares and `shamir_threshold`. An entry of `keep` (the file's own, one group only)
/// stays as it is for its recipient, and new entries follow its key order.
fn key_entries<R: rand::CryptoRng + ?Sized>(
    rng: &mut R,
    groups: &[Vec<String>],
    threshold: Option<usize>,
    key: &[u8; 32],
    keep: &[Value],
) -> Result<Vec<(String, Value)>, SopsError> {
    let groups: Vec<&Vec<String>> = groups.iter().filter(|g| !g.is_empty()).collect();
    if groups.is_empty() {
        return Err(SopsError::Metadata("no age recipients were given".into()));
    }
    let recipient_first =
        keep.first().and_then(Value::as_object).and_then(|o| o.keys().next()).is_some_and(|k| k == "recipient");
    let entries = |group: &Vec<String>, part: &[u8]| -> Result<Value, SopsError> {
        let list: Result<Vec<Value>, SopsError> = group
            .iter()
            .map(|r| {
                let r = r.trim();
                if let Some(kept) = keep.iter().find(|e| e.get("recipient").and_then(Value::as_str) == Some(r)) {
                    return Ok(kept.clone());
                }
                let enc = armored_age(r, part)?;
                Ok(if recipient_first {
                    serde_json::json!({ "recipient": r, "enc": enc })
                } else {
                    serde_json::json!({ "enc": enc, "recipient": r })
                })
            })
            .collect();
        Ok(Value::Array(list?))
    };
    if let [group] = groups.as_slice() {
        return Ok(vec![("age".to_owned(), entries(group, key)?)]);
    }
    let threshold = threshold.unwrap_or(groups.len()).clamp(2, groups.len());
    let parts = shamir_split(rng, key, groups.len(), threshold);
    let mut list = Vec::new();
    for (group, part) in groups.iter().zip(&parts) {
        list.push(serde_json::json!({ "age": entries(group, part)?, "hc_vault": [] }));
    }
    Ok(vec![("key_groups".to_owned(), Value::Array(list)), ("shamir_threshold".to_owned(), Value::from(threshold))])
}

/// Metadata fields in the 3.13 layout: keys sorted.
fn sorted(fields: impl IntoIterator<Item = (String, Value)>) -> Value {
    let sorted: std::collections::BTreeMap<String, Value> = fields.into_iter().collect();
    Value::Object(sorted.into_iter().collect())
}

/// Encrypt documents in place and return the `sops` block to append to each.
pub fn encrypt_documents<R: rand::CryptoRng + ?Sized>(
    rng: &mut R,
    docs: &mut [Node],
    options: &EncryptOptions,
    now: time::OffsetDateTime,
) -> Result<Value, SopsError> {
    if docs.iter().any(|d| d.get("sops").is_some()) {
        return Err(SopsError::Metadata("the file is already encrypted (it has a sops key)".into()));
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
    identities: &[Box<dyn age::Identity + Send + Sync>],
    groups: &[Vec<String>],
    shamir_threshold: Option<usize>,
) -> Result<Value, SopsError> {
    let key = data_key(meta, identities)?;
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

/// The key types of sops that sealant carries through but cannot wrap a data key for.
const OTHER_KEY_TYPES: [&str; 5] = ["pgp", "kms", "gcp_kms", "azure_kv", "hc_vault"];

/// The key types other than age that hold entries in `meta` (top level or any key group).
pub fn other_key_types(meta: &Value) -> Vec<&'static str> {
    let groups = meta.get("key_groups").and_then(Value::as_array).into_iter().flatten();
    OTHER_KEY_TYPES
        .into_iter()
        .filter(|kind| {
            std::iter::once(meta).chain(groups.clone()).any(|group| {
                group.get(*kind).is_some_and(|e| !e.is_null() && e.as_array().is_none_or(|a| !a.is_empty()))
            })
        })
        .collect()
}

/// Refuse to make a new data key or new Shamir shares when other key types hold the old one:
/// their entries would be dropped or left unable to open the file.
fn check_only_age(meta: &Value) -> Result<(), SopsError> {
    let others = other_key_types(meta);
    if others.is_empty() { Ok(()) } else { Err(SopsError::UnsupportedKeyType(others)) }
}

/// The recipients of each key group of a file.
pub fn recipients(meta: &Value) -> Vec<Vec<String>> {
    key_groups(meta).iter().map(|group| group.iter().map(|e| e.recipient.clone()).collect()).collect()
}

/// The options a file was encrypted with, read back from its metadata (for `rotate`, which
/// makes a new data key: refused when other key types hold the old one, as sealant cannot
/// wrap the new one for them and would otherwise drop them).
pub fn options_from_metadata(meta: &Value) -> Result<EncryptOptions, SopsError> {
    check_only_age(meta)?;
    Ok(rotate_options(meta))
}

fn rotate_options(meta: &Value) -> EncryptOptions {
    let selection =
        Selection::from_fields(|k| meta.get(k).and_then(Value::as_str).filter(|s| !s.is_empty()).map(str::to_owned))
            .unwrap_or_default();
    EncryptOptions {
        key_groups: recipients(meta),
        shamir_threshold: meta.get("shamir_threshold").and_then(Value::as_u64).map(|n| n as usize),
        selection,
        mac_only_encrypted: meta.get("mac_only_encrypted").is_some_and(|v| v == true || v == "true"),
    }
}

/// Flatten metadata for dotenv (`sops_` prefix): lists as `__list_<i>`, maps as `__map_<key>`.
pub fn flatten(meta: &Value, prefix: &str, out: &mut Vec<(String, String)>) {
    match meta {
        Value::Object(map) => {
            for (k, v) in map {
                let key = if prefix.is_empty() { k.clone() } else { format!("{prefix}__map_{k}") };
                flatten(v, &key, out);
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                flatten(v, &format!("{prefix}__list_{i}"), out);
            }
        }
        Value::String(s) => out.push((prefix.to_owned(), s.clone())),
        Value::Null => {}
        other => out.push((prefix.to_owned(), other.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
