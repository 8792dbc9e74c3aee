//! Key groups and recipients: age (X25519 and ssh-ed25519) wrapping of the data key, and the key
//! types of sops that sealant carries through untouched but cannot wrap for.

use serde_json::Value;
use zeroize::Zeroizing;

use crate::SopsError;
use crate::metadata::Metadata;
use crate::shamir::{shamir_combine, shamir_split};

use sealant_core::age_keys::{self, Encoding, Identity};

/// An age recipient entry of the metadata.
#[derive(Debug, Clone)]
pub struct AgeEntry {
    /// `age1...` or an `ssh-ed25519` public key line.
    pub recipient: String,
    /// The data key (or this group's Shamir part), age-encrypted and armored.
    pub enc: String,
}

pub(crate) fn age_entries(group: &Value) -> Vec<AgeEntry> {
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
pub(crate) fn key_groups(meta: &Value) -> Vec<Vec<AgeEntry>> {
    let top = age_entries(meta);
    if !top.is_empty() {
        return vec![top];
    }
    meta.get("key_groups").and_then(Value::as_array).into_iter().flatten().map(age_entries).collect()
}

pub(crate) fn unwrap_part(entry: &AgeEntry, identities: &[Identity]) -> Option<Zeroizing<Vec<u8>>> {
    let part = age_keys::decrypt(identities, entry.enc.as_bytes(), Encoding::Armored).ok()?;
    Some(Zeroizing::new(part.expose().to_vec()))
}

/// The data key, from any identity that opens enough key groups.
pub(crate) fn data_key(meta: &Metadata, identities: &[Identity]) -> Result<Zeroizing<[u8; 32]>, SopsError> {
    let groups = &meta.key_groups;
    if groups.is_empty() {
        return Err(SopsError::NoAgeKeys);
    }
    let parts: Vec<Zeroizing<Vec<u8>>> =
        groups.iter().filter_map(|group| group.iter().find_map(|e| unwrap_part(e, identities))).collect();
    let needed = meta.threshold;
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
        shamir_combine(&parts).ok_or(SopsError::InvalidMetadata("the key group shares do not combine".into()))?
    };
    let mut out = Zeroizing::new([0u8; 32]);
    if key.len() != 32 {
        return Err(SopsError::InvalidMetadata(format!("the data key has {} bytes, not 32", key.len())));
    }
    out.copy_from_slice(&key);
    Ok(out)
}

/// `lastmodified` re-formatted as RFC 3339 in UTC with seconds (the MAC's AAD).
pub(crate) fn armored_age(recipient: &str, part: &[u8]) -> Result<String, SopsError> {
    let recipient =
        age_keys::parse_recipient(recipient).map_err(|_| SopsError::InvalidRecipient(recipient.to_owned()))?;
    let armored = age_keys::encrypt(&[recipient], part, true)
        .map_err(|_| SopsError::Encrypt("cannot wrap the data key with age"))?;
    String::from_utf8(armored).map_err(|_| SopsError::Encrypt("age armor is not text"))
}

/// The age entries of the metadata for `key`: `age` for one group, else `key_groups` with
/// Shamir shares and `shamir_threshold`. An entry of `keep` (the file's own, one group only)
/// stays as it is for its recipient, and new entries follow its key order.
pub(crate) fn key_entries<R: rand::CryptoRng + ?Sized>(
    rng: &mut R,
    groups: &[Vec<String>],
    threshold: Option<usize>,
    key: &[u8; 32],
    keep: &[Value],
) -> Result<Vec<(String, Value)>, SopsError> {
    let groups: Vec<&Vec<String>> = groups.iter().filter(|g| !g.is_empty()).collect();
    if groups.is_empty() {
        return Err(SopsError::NoRecipients);
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

/// The key types of sops that sealant carries through but cannot wrap a data key for.
pub(crate) const OTHER_KEY_TYPES: [&str; 5] = ["pgp", "kms", "gcp_kms", "azure_kv", "hc_vault"];

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
pub(crate) fn check_only_age(meta: &Value) -> Result<(), SopsError> {
    let others = other_key_types(meta);
    if others.is_empty() { Ok(()) } else { Err(SopsError::UnsupportedKeyType(others)) }
}

/// The recipients of each key group of a file.
pub fn recipients(meta: &Value) -> Vec<Vec<String>> {
    key_groups(meta).iter().map(|group| group.iter().map(|e| e.recipient.clone()).collect()).collect()
}
