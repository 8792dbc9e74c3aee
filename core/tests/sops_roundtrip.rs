//! Property test: any tree encrypts and decrypts back to itself, MAC included.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failed step should stop the test loudly

use proptest::prelude::*;
use sealant_core::sops::{EncryptOptions, Selection, decrypt_documents, encrypt_documents};
use serde_json::Value;

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<String>().prop_map(Value::String),
        any::<i64>().prop_map(Value::from),
        any::<bool>().prop_map(Value::Bool),
        // sops prints a whole float as an integer, so keep a fraction to compare exactly.
        (-1.0e12f64..1.0e12).prop_map(|f| Value::from(f.trunc() + 0.25)),
        Just(Value::Null),
    ]
}

fn tree() -> impl Strategy<Value = Value> {
    let key = "[a-zA-Z_][a-zA-Z0-9_]{0,12}";
    leaf().prop_recursive(3, 24, 4, move |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            proptest::collection::btree_map(key, inner, 0..4).prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn document() -> impl Strategy<Value = Value> {
    proptest::collection::btree_map("[a-zA-Z_][a-zA-Z0-9_]{0,12}", tree(), 1..5)
        .prop_map(|m| Value::Object(m.into_iter().collect()))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn encrypt_decrypt_round_trip(docs in proptest::collection::vec(document(), 1..3), mac_only in any::<bool>(), regex in any::<bool>()) {
        let identity = age::x25519::Identity::generate();
        let selection = if regex { Selection::EncryptedRegex("^[a-m]".into()) } else { Selection::Default };
        let options = EncryptOptions {
            key_groups: vec![vec![identity.to_public().to_string()]],
            shamir_threshold: None,
            selection,
            mac_only_encrypted: mac_only,
        };
        let mut encrypted = docs.clone();
        let meta = encrypt_documents(&mut rand::rng(), &mut encrypted, &options, time::OffsetDateTime::now_utc()).unwrap();
        // Through the file: the metadata travels as JSON text.
        let meta: Value = serde_json::from_str(&meta.to_string()).unwrap();
        let ids: Vec<Box<dyn age::Identity + Send + Sync>> = vec![Box::new(identity)];
        decrypt_documents(&mut encrypted, &meta, &ids, false).unwrap();
        prop_assert_eq!(encrypted, docs);
    }
}
