//! The aws-lc-rs path against an independent sealer and opener built on the `rsa` and
//! `aes-gcm` crates (RustCrypto), the path this project used before: items sealed by either
//! open with the other, for every scope, and a wrong label or key fails the same way in both.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failed step should stop the test loudly

use std::path::PathBuf;

use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce};
use proptest::prelude::*;
use rsa::Oaep;
use sealant_core::keys::parse_private_keys;
use sealant_core::{HybridError, PrivateKey, Scope, hybrid_decrypt, hybrid_encrypt};
use sha2::Sha256;

fn key(path: &str) -> PrivateKey {
    let file = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..").join(path);
    parse_private_keys(&std::fs::read(file).unwrap()).unwrap().remove(0)
}

fn demo_key() -> PrivateKey {
    key("keys-example/demo.tls.key")
}

fn other_key() -> PrivateKey {
    key("tests/fixtures/sealed-secrets/python-generated/keys/key-b.tls.key")
}

/// The format, sealed with RustCrypto alone.
fn reference_seal(key: &PrivateKey, plaintext: &[u8], label: &[u8], session_key: [u8; 32]) -> Vec<u8> {
    let wrapped =
        key.public().rsa().encrypt(&mut rand::rng(), Oaep::<Sha256>::new_with_label(label), &session_key).unwrap();
    let sealed = Aes256Gcm::new_from_slice(&session_key).unwrap().encrypt(&Nonce::from([0; 12]), plaintext).unwrap();
    let mut out = (wrapped.len() as u16).to_be_bytes().to_vec();
    out.extend_from_slice(&wrapped);
    out.extend_from_slice(&sealed);
    out
}

/// The format, opened with RustCrypto alone; `None` for a wrong key or label.
fn reference_open(key: &PrivateKey, item: &[u8], label: &[u8]) -> Option<Vec<u8>> {
    let len = usize::from(u16::from_be_bytes([item[0], item[1]]));
    let (wrapped, sealed) = item[2..].split_at(len);
    let session_key = key.rsa().decrypt(Oaep::<Sha256>::new_with_label(label), wrapped).ok()?;
    Aes256Gcm::new_from_slice(&session_key).ok()?.decrypt(&Nonce::from([0; 12]), sealed).ok()
}

fn scope() -> impl Strategy<Value = Scope> {
    prop::sample::select(Scope::ALL.to_vec())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn rustcrypto_sealed_items_open_with_aws_lc(
        value in prop::collection::vec(any::<u8>(), 0..3000),
        scope in scope(),
        namespace in "[a-z0-9-]{1,20}",
        name in "[a-z0-9.-]{1,30}",
        session_key in any::<[u8; 32]>(),
    ) {
        let key = demo_key();
        let label = scope.label(&namespace, &name);
        let item = reference_seal(&key, &value, &label, session_key);
        let opened = hybrid_decrypt([&key], &item, &label).unwrap();
        prop_assert_eq!(opened.expose(), value.as_slice());

        // A label of another scope or object, and another key, fail as "no key could decrypt".
        let wrong = [b"elsewhere/other".to_vec(), b"elsewhere".to_vec(), Vec::new()];
        for wrong_label in wrong.iter().filter(|l| **l != label) {
            prop_assert!(matches!(hybrid_decrypt([&key], &item, wrong_label), Err(HybridError::NoKeyCouldDecrypt)));
            prop_assert!(reference_open(&key, &item, wrong_label).is_none());
        }
        prop_assert!(matches!(hybrid_decrypt([&other_key()], &item, &label), Err(HybridError::NoKeyCouldDecrypt)));
        prop_assert!(reference_open(&other_key(), &item, &label).is_none());
    }

    #[test]
    fn aws_lc_sealed_items_open_with_rustcrypto(
        value in prop::collection::vec(any::<u8>(), 0..3000),
        scope in scope(),
        namespace in "[a-z0-9-]{1,20}",
        name in "[a-z0-9.-]{1,30}",
    ) {
        let key = demo_key();
        let label = scope.label(&namespace, &name);
        let item = hybrid_encrypt(&mut rand::rng(), key.public(), &value, &label).unwrap();
        prop_assert_eq!(reference_open(&key, &item, &label), Some(value));
        prop_assert!(reference_open(&other_key(), &item, &label).is_none());
    }

    /// A flipped bit anywhere fails in both paths alike (never a panic, never other bytes).
    #[test]
    fn tampered_items_fail_alike(position in any::<prop::sample::Index>(), bit in 0u8..8) {
        let key = demo_key();
        let label = Scope::Strict.label("ns", "name");
        let mut item = reference_seal(&key, b"hunter2", &label, [7; 32]);
        let at = position.index(item.len());
        item[at] ^= 1 << bit;
        let ours = hybrid_decrypt([&key], &item, &label);
        let theirs = if at < 2 { None } else { reference_open(&key, &item, &label) };
        prop_assert!(theirs.is_none());
        prop_assert!(matches!(ours, Err(HybridError::NoKeyCouldDecrypt | HybridError::TooShort)));
    }
}

/// Keys aws-lc does not take (under 2048 bits) still seal and open, through `rsa`, as upstream
/// never limited key sizes; a FIPS build refuses them instead.
#[test]
fn small_keys_fall_back_outside_fips() {
    let rsa_key = rsa::PrivateKey::new(&mut rand::rng(), 1024).unwrap();
    let result = PrivateKey::from_rsa(rsa_key);
    if cfg!(feature = "fips") {
        assert!(result.is_err());
        return;
    }
    let key = result.unwrap();
    let label = Scope::Strict.label("ns", "name");
    let item = hybrid_encrypt(&mut rand::rng(), key.public(), b"value", &label).unwrap();
    assert_eq!(hybrid_decrypt([&key], &item, &label).unwrap().expose(), b"value");
    assert_eq!(reference_open(&key, &item, &label).as_deref(), Some(&b"value"[..]));
}
