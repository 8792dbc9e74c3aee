//! Files written by the real sops (3.7.1 and a 3.11 build) decrypt to what sops printed.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failed step should stop the test loudly

use std::path::PathBuf;

use sealant_core::sops::{decrypt_documents, take_metadata};
use sealant_core::yaml;
use serde_json::Value;

fn fixture(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/sops").join(path)
}

fn identities(file: &str) -> Vec<Box<dyn age::Identity + Send + Sync>> {
    let bytes = std::fs::read(fixture(file)).unwrap();
    if file.starts_with("ssh") {
        let text = String::from_utf8(bytes).unwrap();
        vec![Box::new(sealant_core::age_ssh::SshEd25519Identity::from_openssh(&text).unwrap())]
    } else {
        age::IdentityFile::from_buffer(bytes.as_slice()).unwrap().into_identities().unwrap()
    }
}

fn open(file: &str, keys: &str) -> Result<Vec<Value>, sealant_core::sops::SopsError> {
    let text = std::fs::read_to_string(fixture(file)).unwrap();
    let mut docs = yaml::parse_documents(&text).unwrap();
    let meta = take_metadata(&mut docs)?;
    decrypt_documents(&mut docs, &meta, &identities(keys), false)?;
    Ok(docs)
}

/// Compare numbers by value (sops prints `1` for 1.0).
fn normalise(v: &Value) -> Value {
    match v {
        Value::Number(n) => n.as_f64().map(Value::from).unwrap_or_else(|| v.clone()),
        Value::Array(a) => Value::Array(a.iter().map(normalise).collect()),
        Value::Object(m) => Value::Object(m.iter().map(|(k, v)| (k.clone(), normalise(v))).collect()),
        other => other.clone(),
    }
}

#[test]
fn json_and_yaml_files_decrypt_to_what_sops_printed() {
    let cases = [
        ("v3.11.0-generated/basic.enc.json", "v3.11.0-generated/expected/basic.dec.json", "age-keys.txt"),
        ("v3.11.0-generated/basic.enc.yaml", "v3.11.0-generated/expected/basic.dec.yaml", "age-keys.txt"),
        (
            "v3.11.0-generated/basic.ssh-ed25519.enc.yaml",
            "v3.11.0-generated/expected/basic.ssh-ed25519.dec.yaml",
            "ssh_ed25519",
        ),
        ("v3.11.0-generated/multidoc.enc.yaml", "v3.11.0-generated/expected/multidoc.dec.yaml", "age-keys.txt"),
        (
            "v3.11.0-generated/k8s-secret.encrypted_regex.enc.yaml",
            "v3.11.0-generated/expected/k8s-secret.encrypted_regex.dec.yaml",
            "age-keys.txt",
        ),
        (
            "v3.11.0-generated/k8s-secret.mac_only_encrypted.enc.yaml",
            "v3.11.0-generated/expected/k8s-secret.mac_only_encrypted.dec.yaml",
            "age-keys.txt",
        ),
        (
            "v3.11.0-generated/suffix.encrypted_suffix.enc.yaml",
            "v3.11.0-generated/expected/suffix.encrypted_suffix.dec.yaml",
            "age-keys.txt",
        ),
        (
            "v3.11.0-generated/suffix.unencrypted_regex.enc.yaml",
            "v3.11.0-generated/expected/suffix.unencrypted_regex.dec.yaml",
            "age-keys.txt",
        ),
        ("v3.11.0-generated/shamir-2of2.enc.yaml", "v3.11.0-generated/expected/shamir-2of2.dec.yaml", "age-keys.txt"),
        ("v3.11.0-generated/shamir-2of2.enc.json", "v3.11.0-generated/expected/shamir-2of2.dec.json", "age-keys.txt"),
        (
            "v3.11.0-generated/comments.encrypted_comment_regex.enc.yaml",
            "v3.11.0-generated/expected/comments.encrypted_comment_regex.dec.yaml",
            "age-keys.txt",
        ),
        (
            "v3.11.0-generated/comments.unencrypted_comment_regex.enc.yaml",
            "v3.11.0-generated/expected/comments.unencrypted_comment_regex.dec.yaml",
            "age-keys.txt",
        ),
        ("v3.7.1-pr1031/example.enc.json", "v3.7.1-pr1031/expected/example.dec.json", "age-keys.txt"),
        ("v3.7.1-pr1031/example.enc.yaml", "v3.7.1-pr1031/expected/example.dec.yaml", "age-keys.txt"),
    ];
    for (file, expected, keys) in cases {
        let got = open(file, keys).unwrap_or_else(|e| panic!("{file}: {e}"));
        let want = yaml::parse_documents(&std::fs::read_to_string(fixture(expected)).unwrap()).unwrap();
        let got: Vec<Value> = got.iter().map(normalise).collect();
        let want: Vec<Value> = want.iter().map(normalise).collect();
        assert_eq!(got, want, "{file}");
    }
}

#[test]
fn a_tampered_file_fails_the_mac_and_a_missing_identity_is_clear() {
    let text = std::fs::read_to_string(fixture("v3.11.0-generated/basic.enc.yaml")).unwrap();
    let mut docs = yaml::parse_documents(&text).unwrap();
    let meta = take_metadata(&mut docs).unwrap();
    // Swap two encrypted values with the same path: each decrypts, the MAC does not match.
    let list = docs[0].pointer_mut("/nested/inner/list").and_then(Value::as_array_mut).unwrap();
    list.swap(0, 1);
    let ids = identities("age-keys.txt");
    let err = decrypt_documents(&mut docs, &meta, &ids, false).unwrap_err().to_string();
    assert!(err.contains("MAC mismatch"), "{err}");

    let mut docs = yaml::parse_documents(&text).unwrap();
    let meta = take_metadata(&mut docs).unwrap();
    let err = decrypt_documents(&mut docs, &meta, &identities("ssh_ed25519"), false).unwrap_err().to_string();
    assert!(
        err.contains("age1yt3tfqlfrwdwx0z0ynwplcr6qxcxfaqycuprpmy89nr83ltx74tqdpszlw"),
        "names the recipients: {err}"
    );
}
