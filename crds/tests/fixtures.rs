//! Interop: files written by kubeseal, by Go's standard library and by an independent Python
//! implementation (tests/fixtures/sealed-secrets) unseal to their recorded plaintexts.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failed step should stop the test loudly

use std::collections::BTreeMap;
use std::path::PathBuf;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use rsa::traits::PublicKeyParts;
use sealant_core::keys::parse_private_keys;
use sealant_core::{Certificate, PrivateKey, hybrid_decrypt, yaml};
use sealant_crds::{SealedSecret, UnsealError, UnsealOptions, unseal};
use serde_json::Value;

fn fixture(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/sealed-secrets").join(path)
}

fn read(path: &str) -> String {
    std::fs::read_to_string(fixture(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn json(path: &str) -> Value {
    serde_json::from_str(&read(path)).unwrap()
}

fn keys(path: &str) -> Vec<PrivateKey> {
    parse_private_keys(read(path).as_bytes()).unwrap()
}

fn both_keys() -> Vec<PrivateKey> {
    keys("python-generated/keys/keys-backup.list.yaml")
}

fn sealed(path: &str) -> Vec<SealedSecret> {
    yaml::parse_documents(&read(path)).unwrap().into_iter().map(|doc| serde_json::from_value(doc).unwrap()).collect()
}

fn data_base64(secret: &k8s_openapi::api::core::v1::Secret) -> BTreeMap<String, String> {
    secret.data.iter().flatten().map(|(k, v)| (k.clone(), STANDARD.encode(&v.0))).collect()
}

fn expected_data(expected: &Value) -> BTreeMap<String, String> {
    serde_json::from_value(expected["data_base64"].clone()).unwrap()
}

#[test]
fn fingerprints_match_what_the_controller_logs() {
    let cases = [
        ("python-generated/keys/key-a.tls.key", "SHA256:SOgzoKSbyk2id5y1tlbLtfgvyzX2u+gClW5kKPs5hg4"),
        ("python-generated/keys/key-b.tls.key", "SHA256:Kj1PByUvQoqvWzzcjl7q/8uCtUu3RzKPYzgGH4FYslA"),
        ("real-kubeseal-v0.14.1/tls.key", "SHA256:s5na5hZp9IkC+KhFz2q8VYlmbvcGZ8S2wgmgh5ncIdU"),
    ];
    for (path, want) in cases {
        assert_eq!(keys(path)[0].public().fingerprint(), want, "{path}");
    }
}

#[test]
fn real_kubeseal_output_unseals() {
    let key = keys("real-kubeseal-v0.14.1/sealed-secrets-keynvpcz.secret.yaml");
    let expected = json("real-kubeseal-v0.14.1/expected.json");
    for ss in sealed("real-kubeseal-v0.14.1/credentials.sealedsecret.yaml") {
        let secret = unseal(&ss, &key, UnsealOptions::default()).unwrap();
        assert_eq!(data_base64(&secret), expected_data(&expected));
    }
}

#[test]
fn python_generated_files_unseal_in_yaml_and_json() {
    let keys = both_keys();
    let cases = [
        ("strict.yaml", "strict.json"),
        ("strict.json", "strict.json"),
        ("namespace-wide.yaml", "namespace-wide.json"),
        ("namespace-wide.json", "namespace-wide.json"),
        ("cluster-wide.yaml", "cluster-wide.json"),
        ("cluster-wide.json", "cluster-wide.json"),
        ("cluster-wide-no-namespace.yaml", "cluster-wide-no-namespace.json"),
        ("large-value.yaml", "large-value.json"),
        ("mixed-keys.yaml", "mixed-keys.json"),
    ];
    for (file, expected) in cases {
        let expected = json(&format!("python-generated/expected/{expected}"));
        for ss in sealed(&format!("python-generated/sealed/{file}")) {
            let secret = unseal(&ss, &keys, UnsealOptions::default()).unwrap_or_else(|e| panic!("{file}: {e}"));
            assert_eq!(data_base64(&secret), expected_data(&expected), "{file}");
            assert_eq!(secret.metadata.name.as_deref(), expected["name"].as_str(), "{file}");
        }
    }
}

#[test]
fn multi_document_file_unseals_every_document() {
    let docs = sealed("python-generated/sealed/multi-doc.yaml");
    assert_eq!(docs.len(), 3);
    let expected = expected_data(&json("python-generated/expected/strict.json"));
    for ss in docs {
        let secret = unseal(&ss, &both_keys(), UnsealOptions::default()).unwrap();
        assert_eq!(data_base64(&secret), expected);
    }
}

#[test]
fn mixed_keys_need_every_key() {
    let ss = &sealed("python-generated/sealed/mixed-keys.yaml")[0];
    let only_a = keys("python-generated/keys/key-a.secret.yaml");
    let err = unseal(ss, &only_a, UnsealOptions::default()).unwrap_err();
    assert!(matches!(&err, UnsealError::Items(items) if items.len() == 1 && items[0].0 == "new-item"), "{err}");
}

#[test]
fn template_data_renders_like_the_controller() {
    let ss = &sealed("python-generated/sealed/template-data.yaml")[0];
    let expected = json("python-generated/expected/template-data.json");
    let secret = unseal(ss, &both_keys(), UnsealOptions::default()).unwrap();
    let rendered: BTreeMap<String, String> =
        secret.data.iter().flatten().map(|(k, v)| (k.clone(), String::from_utf8(v.0.clone()).unwrap())).collect();
    let want: BTreeMap<String, String> = serde_json::from_value(expected["rendered_secret_data_utf8"].clone()).unwrap();
    assert_eq!(rendered, want);
    let shape = &expected["rendered_secret"];
    assert_eq!(secret.type_.as_deref(), shape["type"].as_str());
    assert_eq!(secret.immutable, shape["immutable"].as_bool());
    assert_eq!(serde_json::to_value(&secret.metadata.labels).unwrap(), shape["labels"]);
    assert_eq!(serde_json::to_value(&secret.metadata.annotations).unwrap(), shape["annotations"]);
    let owner = &secret.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!((owner.kind.as_str(), owner.name.as_str(), owner.controller), ("SealedSecret", "templated", Some(true)));
    assert_eq!(owner.api_version, "bitnami.com/v1alpha1");
}

#[test]
fn raw_values_and_go_vectors_decrypt() {
    let keys = both_keys();
    let raw = json("python-generated/sealed/raw-values.json");
    let go = json("go-stdlib-crosscheck/vectors.json");
    let rows = raw.as_array().unwrap().iter().chain(go["vectors"].as_array().unwrap());
    let mut count = 0;
    for row in rows {
        let item = STANDARD.decode(row["ciphertext_base64"].as_str().unwrap()).unwrap();
        let label = row["oaep_label"].as_str().unwrap();
        let plain = hybrid_decrypt(&keys, &item, label.as_bytes()).unwrap();
        assert_eq!(STANDARD.encode(plain.expose()), row["plaintext_base64"].as_str().unwrap());
        count += 1;
    }
    assert_eq!(count, 24);
}

#[test]
fn every_negative_vector_is_refused() {
    let keys = both_keys();
    for row in json("python-generated/sealed/negative.json").as_array().unwrap() {
        let item = STANDARD.decode(row["ciphertext_base64"].as_str().unwrap()).unwrap();
        let result = hybrid_decrypt(&keys, &item, row["oaep_label"].as_str().unwrap().as_bytes());
        assert!(result.is_err(), "{} decrypted", row["why"]);
    }
}

#[test]
fn scope_semantics_follow_the_top_level_annotations() {
    let keys = both_keys();
    let rename = |ss: &mut SealedSecret| ss.metadata.name = Some("renamed".into());
    let move_ns = |ss: &mut SealedSecret| ss.metadata.namespace = Some("elsewhere".into());
    // (file, survives rename, survives namespace move)
    for (file, rename_ok, move_ok) in
        [("strict.yaml", false, false), ("namespace-wide.yaml", true, false), ("cluster-wide.yaml", true, true)]
    {
        let original = sealed(&format!("python-generated/sealed/{file}")).remove(0);
        let mut renamed = original.clone();
        rename(&mut renamed);
        let mut moved = original.clone();
        move_ns(&mut moved);
        assert_eq!(unseal(&renamed, &keys, UnsealOptions::default()).is_ok(), rename_ok, "{file} renamed");
        assert_eq!(unseal(&moved, &keys, UnsealOptions::default()).is_ok(), move_ok, "{file} moved");
    }
    // The controller reads the scope from the top-level annotations, not the template's.
    let mut stripped = sealed("python-generated/sealed/namespace-wide.yaml").remove(0);
    stripped.metadata.annotations = None;
    assert!(unseal(&stripped, &keys, UnsealOptions::default()).is_err());
}

#[test]
fn key_files_in_every_shape() {
    for (path, count) in [
        ("python-generated/keys/keys-backup.list.yaml", 2),
        ("python-generated/keys/key-a.secret.yaml", 1),
        ("python-generated/keys/key-b.tls.key", 1),
        ("real-kubeseal-v0.14.1/sealed-secrets-keynvpcz.secret.yaml", 1),
    ] {
        assert_eq!(keys(path).len(), count, "{path}");
    }
    let pkcs8 =
        std::fs::read(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../keys-example/demo.pkcs8.key")).unwrap();
    let pkcs1 = std::fs::read(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../keys-example/demo.tls.key")).unwrap();
    assert_eq!(
        parse_private_keys(&pkcs8).unwrap()[0].public().fingerprint(),
        parse_private_keys(&pkcs1).unwrap()[0].public().fingerprint()
    );
}

#[test]
fn certificates_parse_leniently_and_expiry_is_checked() {
    let expected = json("upstream-test-cert/expected.json");
    let cert = Certificate::from_pem(&read("upstream-test-cert/kubeseal_test.testCert.pem")).unwrap();
    assert_eq!(cert.public_key().bits(), 4096);
    let modulus = cert.public_key().rsa().n().to_string_radix_vartime(10);
    assert_eq!(modulus, expected["modulus_decimal"].as_str().unwrap());
    assert_eq!(cert.not_after().to_string(), "2027-06-18 4:32:45.0 +00:00:00");
    let before = time::macros::datetime!(2027-06-18 04:00 UTC);
    let after = time::macros::datetime!(2027-06-19 00:00 UTC);
    assert!(cert.check_not_expired(before).is_ok());
    let err = cert.check_not_expired(after).unwrap_err().to_string();
    assert_eq!(err, "the certificate expired on June 18, 2027");

    let real = Certificate::from_pem(&read("real-kubeseal-v0.14.1/tls.crt")).unwrap();
    assert_eq!(real.public_key().fingerprint(), "SHA256:s5na5hZp9IkC+KhFz2q8VYlmbvcGZ8S2wgmgh5ncIdU");
}
