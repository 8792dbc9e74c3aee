//! SOPS files with age keys: reading and decrypting what the real `sops` writes.
//!
//! The tree is a `serde_json::Value` with keys in file order; each store turns its format into
//! one (or several, for multi-document YAML) and back. Values are `ENC[AES256_GCM,...]` strings
//! encrypted with AES-256-GCM (32-byte IV) under a data key that every age recipient wraps;
//! a SHA-512 MAC over the plaintext values, itself encrypted, guards the whole file.

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

type SopsGcm = AesGcm<Aes256, U32>;

#[derive(Debug, thiserror::Error)]
pub enum SopsError {
    #[error("the file has no sops metadata")]
    NoMetadata,
    #[error("the sops metadata is invalid: {0}")]
    Metadata(String),
    #[error("no age identity could decrypt the data key (tried {tried}); the file is encrypted to: {recipients}")]
    NoIdentity { tried: String, recipients: String },
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

/// Decrypt one value with `aad`; the plaintext bytes and the `type:`.
fn decrypt_value(key: &[u8; 32], text: &str, aad: &str) -> Option<(SecretBytes, String)> {
    let enc = parse_enc(text)?;
    if enc.iv.len() != 32 {
        return None;
    }
    let cipher = SopsGcm::new_from_slice(key).ok()?;
    let mut sealed = enc.data.clone();
    sealed.extend_from_slice(&enc.tag);
    let nonce = Nonce::<U32>::try_from(enc.iv.as_slice()).ok()?;
    let plain = cipher.decrypt(&nonce, Payload { msg: &sealed, aad: aad.as_bytes() }).ok()?;
    Some((SecretBytes::new(plain), enc.kind))
}

/// Go's `strconv.FormatFloat(f, 'f', -1, 64)`: shortest digits, never an exponent.
fn go_float(f: f64) -> String {
    if f.is_nan() {
        "NaN".into()
    } else if f.is_infinite() {
        if f > 0.0 { "+Inf".into() } else { "-Inf".into() }
    } else {
        format!("{f}")
    }
}

/// A decrypted value as a tree value, by its sops type.
fn typed(plain: &[u8], kind: &str) -> Option<Value> {
    let text = std::str::from_utf8(plain).ok();
    Some(match kind {
        "str" | "bytes" => Value::String(String::from_utf8_lossy(plain).into_owned()),
        "int" => Value::from(text?.parse::<i64>().ok()?),
        "float" => {
            let f: f64 = text?.parse().ok()?;
            // A whole float prints without a fraction in sops' output (Go's json/yaml).
            if f.fract() == 0.0 && f.abs() < 9.0e15 { Value::from(f as i64) } else { Value::from(f) }
        }
        "bool" => Value::Bool(matches!(text?, "1" | "t" | "T" | "TRUE" | "true" | "True")),
        "time" => Value::String(text?.to_owned()),
        _ => return None,
    })
}

/// `ToBytes` of a plaintext tree value, as sops feeds it to the MAC.
fn mac_bytes(value: &Value) -> Option<Vec<u8>> {
    Some(match value {
        Value::Null | Value::Array(_) | Value::Object(_) => return None,
        Value::String(s) => s.as_bytes().to_vec(),
        Value::Bool(true) => b"True".to_vec(),
        Value::Bool(false) => b"False".to_vec(),
        Value::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => i.to_string().into_bytes(),
            (None, Some(u)) => u.to_string().into_bytes(),
            _ => go_float(n.as_f64().unwrap_or_default()).into_bytes(),
        },
    })
}

/// Which values sops encrypted: the selection rules of the metadata.
#[derive(Debug)]
struct Rules {
    unencrypted_suffix: Option<String>,
    encrypted_suffix: Option<String>,
    unencrypted_regex: Option<Regex>,
    encrypted_regex: Option<Regex>,
    /// With comment regexes the choice depends on comments: go by the value's form.
    by_comment: bool,
    mac_only_encrypted: bool,
}

impl Rules {
    fn from(meta: &Value) -> Result<Rules, SopsError> {
        let text = |k: &str| meta.get(k).and_then(Value::as_str).filter(|s| !s.is_empty()).map(str::to_owned);
        let regex =
            |k: &str| text(k).map(|r| Regex::new(&r).map_err(|e| SopsError::Metadata(format!("{k}: {e}")))).transpose();
        let by_comment = text("unencrypted_comment_regex").is_some() || text("encrypted_comment_regex").is_some();
        let mut rules = Rules {
            unencrypted_suffix: text("unencrypted_suffix"),
            encrypted_suffix: text("encrypted_suffix"),
            unencrypted_regex: regex("unencrypted_regex")?,
            encrypted_regex: regex("encrypted_regex")?,
            by_comment,
            mac_only_encrypted: meta.get("mac_only_encrypted").is_some_and(|v| v == true || v == "true"),
        };
        let none_set = rules.unencrypted_suffix.is_none()
            && rules.encrypted_suffix.is_none()
            && rules.unencrypted_regex.is_none()
            && rules.encrypted_regex.is_none()
            && !by_comment;
        if none_set {
            rules.unencrypted_suffix = Some("_unencrypted".to_owned());
        }
        Ok(rules)
    }

    fn encrypts(&self, path: &[String], value: &Value) -> bool {
        if self.by_comment {
            return value.as_str().is_some_and(is_encrypted_value);
        }
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
        encrypted
    }
}

/// Walk leaves depth-first in document order, decrypting selected ones and hashing for the MAC.
/// The raw plaintext of a top-level `data` string is kept aside in `raw_data`: the binary store
/// holds arbitrary bytes there, which a JSON string cannot.
fn walk(
    value: &mut Value,
    path: &mut Vec<String>,
    key: &[u8; 32],
    rules: &Rules,
    mac: &mut Sha512,
    raw_data: &mut Option<SecretBytes>,
) -> Result<(), SopsError> {
    match value {
        Value::Object(map) => {
            for (k, v) in map.iter_mut() {
                path.push(k.clone());
                walk(v, path, key, rules, mac, raw_data)?;
                path.pop();
            }
        }
        // List indices are not part of the path.
        Value::Array(items) => {
            for v in items.iter_mut() {
                walk(v, path, key, rules, mac, raw_data)?;
            }
        }
        Value::Null => {}
        leaf => {
            let encrypted = rules.encrypts(path, leaf);
            if encrypted {
                let aad = format!("{}:", path.join(":"));
                let shown = path.join(".");
                let Value::String(text) = leaf else {
                    return Err(SopsError::NotEncrypted { path: shown });
                };
                if !text.is_empty() {
                    let (plain, kind) =
                        decrypt_value(key, text, &aad).ok_or_else(|| SopsError::Value { path: shown.clone() })?;
                    *leaf = typed(plain.expose(), &kind).ok_or(SopsError::Value { path: shown })?;
                    // Strings are hashed as the bytes they are, which need not be UTF-8.
                    if kind == "str" || kind == "bytes" {
                        mac.update(plain.expose());
                        if path.len() == 1 && path[0] == "data" {
                            *raw_data = Some(plain);
                        }
                        return Ok(());
                    }
                }
            }
            if (encrypted || !rules.mac_only_encrypted)
                && let Some(bytes) = mac_bytes(leaf)
            {
                mac.update(&bytes);
            }
        }
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
        return Err(SopsError::NoIdentity { tried: String::new(), recipients: recipients.join(", ") });
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
    let utc = parsed.to_offset(time::UtcOffset::UTC);
    utc.format(time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z"))
        .map_err(|_| SopsError::Metadata("lastmodified".into()))
}

/// Decrypt the documents of one sops file in place. `meta` is the `sops` block (already taken
/// out of the documents). With `ignore_mac`, a wrong MAC is not an error. Returns the raw bytes
/// of a top-level encrypted `data` string (the binary store's payload), if there is one.
pub fn decrypt_documents(
    docs: &mut [Value],
    meta: &Value,
    identities: &[Box<dyn age::Identity + Send + Sync>],
    ignore_mac: bool,
) -> Result<Option<SecretBytes>, SopsError> {
    let key = data_key(meta, identities)?;
    let rules = Rules::from(meta)?;
    let mut mac = Sha512::new();
    if rules.mac_only_encrypted {
        mac.update(Sha256Sops::prefix());
    }
    let mut raw_data = None;
    for doc in docs.iter_mut() {
        walk(doc, &mut Vec::new(), &key, &rules, &mut mac, &mut raw_data)?;
    }
    if ignore_mac {
        return Ok(raw_data);
    }
    let expected: String = mac.finalize().iter().map(|b| format!("{b:02X}")).collect();
    let stored = meta.get("mac").and_then(Value::as_str).ok_or(SopsError::MacUndecryptable)?;
    let (plain, _) = decrypt_value(&key, stored, &mac_aad(meta)?).ok_or(SopsError::MacUndecryptable)?;
    if plain.expose() != expected.as_bytes() {
        return Err(SopsError::MacMismatch);
    }
    Ok(raw_data)
}

/// `sha256("sops")`, which starts the MAC when `mac_only_encrypted` is set.
struct Sha256Sops;

impl Sha256Sops {
    fn prefix() -> Vec<u8> {
        use sha2::Sha256;
        Sha256::digest(b"sops").to_vec()
    }
}

/// Take the `sops` block out of every document; the first one's is the file's.
pub fn take_metadata(docs: &mut [Value]) -> Result<Value, SopsError> {
    let mut meta = None;
    for doc in docs.iter_mut() {
        if let Value::Object(map) = doc
            && let Some(m) = map.shift_remove("sops")
            && meta.is_none()
        {
            meta = Some(m);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shamir_two_of_two_recombines() {
        // Shares of the secret [7, 9] for x = 1, 2 on the polynomial s + 3x.
        let share = |x: u8| -> Zeroizing<Vec<u8>> { Zeroizing::new(vec![7 ^ gf_mul(3, x), 9 ^ gf_mul(3, x), x]) };
        assert_eq!(shamir_combine(&[share(1), share(2)]).unwrap().as_slice(), &[7, 9]);
        assert_eq!(gf_mul(gf_inv(0x53), 0x53), 1);
    }

    #[test]
    fn floats_print_like_go() {
        assert_eq!(go_float(1.5e20), "150000000000000000000");
        assert_eq!(go_float(2.75), "2.75");
        assert_eq!(go_float(0.0000001), "0.0000001");
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
