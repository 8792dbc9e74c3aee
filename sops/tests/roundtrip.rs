//! Property tests for every store: a tree written and read back is itself, and a tree
//! encrypted, written, read and decrypted gives back the same plaintext, MAC included.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failed step should stop the test loudly

use proptest::prelude::*;
use sealant_sops::stores::Store;
use sealant_sops::{
    Comment, EncryptOptions, Entry, Node, Selection, decrypt_documents, encrypt_documents, take_metadata,
};

fn scalar() -> impl Strategy<Value = Node> {
    prop_oneof![
        any::<String>().prop_map(Node::str),
        "[a-z0-9 :#-]{0,12}".prop_map(Node::str),
        "[a-z ]{1,10}(\n[a-z ]{0,10}){1,3}\n{0,2}".prop_map(Node::str),
        any::<i64>().prop_map(Node::Int),
        // A whole float is written as an integer, as sops does, so keep a fraction.
        (-1.0e12f64..1.0e12).prop_map(|f| Node::Float(f.trunc() + 0.25)),
        any::<bool>().prop_map(Node::Bool),
        Just(Node::Time("2024-01-02T03:04:05Z".into())),
        Just(Node::Null),
    ]
}

fn comment() -> impl Strategy<Value = String> {
    "[ -~é✓]{0,16}".prop_map(|c| c.trim_end().to_owned())
}

fn key() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9_ .<>:#-]{1,10}"
}

/// A YAML tree: comments come before the item they describe, as in a file.
fn yaml_tree() -> impl Strategy<Value = Node> {
    scalar().prop_recursive(3, 32, 4, |inner| {
        let item = || (proptest::option::weighted(0.2, comment()), inner.clone());
        prop_oneof![
            proptest::collection::vec(item(), 0..4).prop_map(|items| {
                Node::List(
                    items
                        .into_iter()
                        .flat_map(|(c, n)| {
                            c.map(|c| Node::Comment(Comment::line(c))).into_iter().chain(std::iter::once(n))
                        })
                        .collect(),
                )
            }),
            proptest::collection::btree_map(key(), item(), 0..4).prop_map(|map| {
                Node::Map(
                    map.into_iter()
                        .flat_map(|(k, (c, n))| {
                            c.map(|c| Entry::Comment(Comment::line(c)))
                                .into_iter()
                                .chain(std::iter::once(Entry::Pair(k, n)))
                        })
                        .collect(),
                )
            }),
        ]
    })
}

fn yaml_document() -> impl Strategy<Value = Node> {
    (proptest::collection::btree_map(key(), yaml_tree(), 1..5), proptest::option::of(comment())).prop_map(
        |(map, head)| {
            let mut entries: Vec<Entry> = head.map(|c| Entry::Comment(Comment::line(c))).into_iter().collect();
            entries.extend(map.into_iter().filter(|(k, _)| k != "sops").map(|(k, v)| Entry::Pair(k, v)));
            Node::Map(entries)
        },
    )
}

/// JSON: no comments and no timestamps.
fn json_document() -> impl Strategy<Value = Node> {
    let leaf = prop_oneof![
        any::<String>().prop_map(Node::str),
        any::<i64>().prop_map(Node::Int),
        (-1.0e12f64..1.0e12).prop_map(|f| Node::Float(f.trunc() + 0.25)),
        any::<bool>().prop_map(Node::Bool),
        Just(Node::Null),
    ];
    let tree = leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Node::List),
            proptest::collection::btree_map(key(), inner, 0..4)
                .prop_map(|m| Node::Map(m.into_iter().map(|(k, v)| Entry::Pair(k, v)).collect())),
        ]
    });
    proptest::collection::btree_map(key(), tree, 1..5)
        .prop_map(|m| Node::Map(m.into_iter().filter(|(k, _)| k != "sops").map(|(k, v)| Entry::Pair(k, v)).collect()))
}

/// dotenv: flat strings (no backslashes: `\n` is how a newline is written) and `#` comments.
fn dotenv_document() -> impl Strategy<Value = Node> {
    let value = "[^\\\\\r]{0,20}";
    proptest::collection::btree_map("[A-Z_][A-Z0-9_]{0,10}", (proptest::option::weighted(0.2, comment()), value), 1..6)
        .prop_map(|map| {
            Node::Map(
                map.into_iter()
                    .filter(|(k, _)| !k.starts_with("sops_"))
                    .flat_map(|(k, (c, v))| {
                        c.map(|c| Entry::Comment(Comment::line(c)))
                            .into_iter()
                            .chain(std::iter::once(Entry::Pair(k, Node::str(v))))
                    })
                    .collect(),
            )
        })
}

/// INI: sections of strings, comments before keys.
fn ini_document() -> impl Strategy<Value = Node> {
    let value = "[a-zA-Z0-9 #;=:'\"._-]{0,20}";
    let ini_comment = "[a-zA-Z0-9][a-zA-Z0-9 ]{0,10}[a-zA-Z0-9]";
    let section = proptest::collection::btree_map(
        "[a-z][a-z0-9_]{0,8}",
        (proptest::option::weighted(0.2, ini_comment), value),
        1..4,
    )
    .prop_map(|map| {
        Node::Map(
            map.into_iter()
                .flat_map(|(k, (c, v))| {
                    c.map(|c| Entry::Comment(Comment::line(c)))
                        .into_iter()
                        .chain(std::iter::once(Entry::Pair(k, Node::str(v))))
                })
                .collect(),
        )
    });
    proptest::collection::btree_map("[a-z][a-z0-9]{0,8}", section, 1..4)
        .prop_map(|m| Node::Map(m.into_iter().filter(|(k, _)| k != "sops").map(|(k, v)| Entry::Pair(k, v)).collect()))
}

/// Encrypt, write, read, decrypt: the plaintext written by the store is what it was.
fn through_encryption(store: Store, docs: &[Node], mac_only: bool, regex: bool) -> Result<(), TestCaseError> {
    let identity = age::x25519::Identity::generate();
    let selection = if regex { Selection::EncryptedRegex("^[a-m]".into()) } else { Selection::Default };
    let options = EncryptOptions {
        key_groups: vec![vec![identity.to_public().to_string()]],
        shamir_threshold: None,
        selection,
        mac_only_encrypted: mac_only,
    };
    let mut encrypted = docs.to_vec();
    let meta = encrypt_documents(&mut rand::rng(), &mut encrypted, &options, time::OffsetDateTime::now_utc()).unwrap();
    let file = store.write_encrypted(&encrypted, &meta).unwrap();
    let mut read = store.read_encrypted(&file).unwrap();
    let meta = take_metadata(&mut read).unwrap();
    let ids: Vec<Box<dyn age::Identity + Send + Sync>> = vec![Box::new(identity)];
    decrypt_documents(&mut read, &meta, &ids, false).unwrap();
    let (got, want) = (store.write_plain(&read).unwrap(), store.write_plain(docs).unwrap());
    prop_assert_eq!(String::from_utf8_lossy(&got), String::from_utf8_lossy(&want));
    Ok(())
}

/// Written and read back by the store without encryption: the same values, written again to
/// the same text. (The tree itself may differ where yaml.v3 moves a comment: one that starts a
/// list inside a list is printed before its dash, and read back as the outer list's.)
fn through_store(store: Store, docs: &[Node]) -> Result<(), TestCaseError> {
    let written = store.write_plain(docs).unwrap();
    let read = store.read_plain(&written).unwrap_or_else(|e| panic!("{e}:\n{}", String::from_utf8_lossy(&written)));
    let json = |docs: &[Node]| docs.iter().map(Node::to_json).collect::<Vec<_>>();
    prop_assert_eq!(json(&read), json(docs), "{}", String::from_utf8_lossy(&written));
    let again = store.write_plain(&read).unwrap();
    prop_assert_eq!(String::from_utf8_lossy(&again), String::from_utf8_lossy(&written));
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn yaml(docs in proptest::collection::vec(yaml_document(), 1..3), mac_only in any::<bool>(), regex in any::<bool>()) {
        through_store(Store::Yaml, &docs)?;
        through_encryption(Store::Yaml, &docs, mac_only, regex)?;
    }

    #[test]
    fn json(doc in json_document(), mac_only in any::<bool>(), regex in any::<bool>()) {
        through_store(Store::Json, std::slice::from_ref(&doc))?;
        through_encryption(Store::Json, &[doc], mac_only, regex)?;
    }

    #[test]
    fn dotenv(doc in dotenv_document(), mac_only in any::<bool>()) {
        through_store(Store::Dotenv, std::slice::from_ref(&doc))?;
        through_encryption(Store::Dotenv, &[doc], mac_only, false)?;
    }

    #[test]
    fn ini(doc in ini_document(), mac_only in any::<bool>(), regex in any::<bool>()) {
        through_store(Store::Ini, std::slice::from_ref(&doc))?;
        through_encryption(Store::Ini, &[doc], mac_only, regex)?;
    }

    #[test]
    fn binary(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        let docs = Store::Binary.read_plain(&bytes).unwrap();
        prop_assert_eq!(Store::Binary.write_plain(&docs).unwrap(), bytes.clone());
        through_encryption(Store::Binary, &docs, false, false)?;
    }
}
