//! Property tests: whatever is sealed unseals to the same bytes, and only under the same key,
//! scope, name and namespace.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failed step should stop the test loudly

use std::collections::BTreeMap;
use std::path::PathBuf;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use proptest::prelude::*;
use rand::SeedableRng;
use rand::rngs::StdRng;
use sealant_core::keys::parse_private_keys;
use sealant_core::{Certificate, PrivateKey, Scope};
use sealant_crds::{SealOptions, UnsealOptions, seal_secret, unseal};

fn repo(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..").join(path)
}

fn demo_key() -> Vec<PrivateKey> {
    parse_private_keys(&std::fs::read(repo("keys-example/demo.tls.key")).unwrap()).unwrap()
}

fn other_key() -> Vec<PrivateKey> {
    parse_private_keys(
        &std::fs::read(repo("tests/fixtures/sealed-secrets/python-generated/keys/key-a.tls.key")).unwrap(),
    )
    .unwrap()
}

fn demo_cert() -> Certificate {
    Certificate::from_pem(&std::fs::read_to_string(repo("keys-example/demo.tls.crt")).unwrap()).unwrap()
}

fn dns_label() -> impl Strategy<Value = String> {
    "[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?"
}

fn scope() -> impl Strategy<Value = Scope> {
    prop_oneof![Just(Scope::Strict), Just(Scope::NamespaceWide), Just(Scope::ClusterWide)]
}

fn secret(name: &str, namespace: &str, data: BTreeMap<String, Vec<u8>>) -> Secret {
    Secret {
        metadata: ObjectMeta { name: Some(name.into()), namespace: Some(namespace.into()), ..Default::default() },
        data: Some(data.into_iter().map(|(k, v)| (k, ByteString(v))).collect()),
        ..Default::default()
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn sealed_data_unseals_to_the_same_bytes(
        name in dns_label(),
        namespace in dns_label(),
        scope in scope(),
        data in proptest::collection::btree_map("[A-Za-z0-9._-]{1,20}", proptest::collection::vec(any::<u8>(), 0..300), 1..4),
        seed in any::<u64>(),
    ) {
        let mut rng = StdRng::seed_from_u64(seed);
        let options = SealOptions { scope: Some(scope), ..Default::default() };
        let sealed = seal_secret(&mut rng, &demo_cert(), &secret(&name, &namespace, data.clone()), &options).unwrap();
        let opened = unseal(&sealed, &demo_key(), UnsealOptions::default()).unwrap();
        let opened: BTreeMap<String, Vec<u8>> = opened.data.unwrap().into_iter().map(|(k, v)| (k, v.0)).collect();
        prop_assert_eq!(opened, data);
    }

    #[test]
    fn wrong_scope_name_namespace_or_key_never_decrypts(
        name in dns_label(),
        namespace in dns_label(),
        other in dns_label(),
        scope in scope(),
        value in proptest::collection::vec(any::<u8>(), 0..64),
        seed in any::<u64>(),
    ) {
        prop_assume!(other != name && other != namespace);
        let mut rng = StdRng::seed_from_u64(seed);
        let data = BTreeMap::from([("k".to_string(), value)]);
        let options = SealOptions { scope: Some(scope), ..Default::default() };
        let sealed = seal_secret(&mut rng, &demo_cert(), &secret(&name, &namespace, data), &options).unwrap();

        prop_assert!(unseal(&sealed, &other_key(), UnsealOptions::default()).is_err());

        let mut renamed = sealed.clone();
        renamed.metadata.name = Some(other.clone());
        prop_assert_eq!(unseal(&renamed, &demo_key(), UnsealOptions::default()).is_ok(), scope != Scope::Strict);

        let mut moved = sealed.clone();
        moved.metadata.namespace = Some(other.clone());
        prop_assert_eq!(unseal(&moved, &demo_key(), UnsealOptions::default()).is_ok(), scope == Scope::ClusterWide);

        for wrong in Scope::ALL.into_iter().filter(|s| *s != scope) {
            let mut rescoped = sealed.clone();
            let annotations = rescoped.metadata.annotations.get_or_insert_with(BTreeMap::new);
            wrong.apply_to(annotations);
            // Only a label that happens to be equal could decrypt: a cluster-wide label is
            // empty, and no namespace-wide label equals a strict "ns/name".
            prop_assert!(unseal(&rescoped, &demo_key(), UnsealOptions::default()).is_err(), "{} read as {}", scope, wrong);
        }
    }
}

/// The deprecated v1 format: a whole Secret's JSON sealed as one item in `spec.data`.
#[test]
fn legacy_v1_data_is_accepted_only_when_allowed() {
    use base64::Engine as _;
    use sealant_crds::{SealedSecret, UnsealError};
    let whole = serde_json::json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "old"}, "data": {"k": "dmFsdWU="}});
    let item = sealant_core::hybrid_encrypt(
        &mut StdRng::seed_from_u64(1),
        demo_cert().public_key(),
        whole.to_string().as_bytes(),
        &Scope::Strict.label("ns", "old"),
    )
    .unwrap();
    let mut ss = SealedSecret::default();
    ss.metadata.name = Some("old".into());
    ss.metadata.namespace = Some("ns".into());
    ss.spec.data = Some(base64::engine::general_purpose::STANDARD.encode(item));

    let secret = unseal(&ss, &demo_key(), UnsealOptions { accept_v1_data: true }).unwrap();
    assert_eq!(secret.data.unwrap()["k"].0, b"value");
    assert_eq!(secret.metadata.namespace.as_deref(), Some("ns"), "name and namespace are forced");
    assert!(matches!(
        unseal(&ss, &demo_key(), UnsealOptions { accept_v1_data: false }),
        Err(UnsealError::V1DataRefused)
    ));
    ss.spec.encrypted_data.insert("x".into(), "AgA=".into());
    assert!(matches!(unseal(&ss, &demo_key(), UnsealOptions::default()), Err(UnsealError::BothDataAndEncryptedData)));
}
