//! Files written by the real sops (3.7.1 and a 3.11 build) decrypt to exactly what sops printed.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failed step should stop the test loudly

use std::path::{Path, PathBuf};

use sealant_sops::stores::Store;
use sealant_sops::{Node, decrypt_documents, take_metadata};

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

/// The store of a fixture: the binary ones hold `.bin`/`.txt` before `.enc.json`.
fn store_of(file: &str) -> Store {
    if file.contains(".bin.") || file.contains(".txt.") { Store::Binary } else { Store::from_path(Path::new(file)) }
}

fn open(file: &str, keys: &str) -> Result<Vec<Node>, sealant_sops::SopsError> {
    let bytes = std::fs::read(fixture(file)).unwrap();
    let mut docs = store_of(file).read_encrypted(&bytes)?;
    let meta = take_metadata(&mut docs)?;
    decrypt_documents(&mut docs, &meta, &identities(keys), false)?;
    Ok(docs)
}

/// Every file written by the real sops decrypts to exactly the bytes sops printed: all five
/// formats, comments, Shamir key groups, every selection rule, the SSH recipient, 3.7.1 and 3.11.
#[test]
fn every_fixture_decrypts_to_the_bytes_sops_printed() {
    let mut checked = 0;
    for dir in ["v3.11.0-generated", "v3.7.1-pr1031"] {
        for entry in std::fs::read_dir(fixture(dir)).unwrap() {
            let name = entry.unwrap().file_name().into_string().unwrap();
            if !name.contains(".enc.") {
                continue;
            }
            let file = format!("{dir}/{name}");
            let expected = match store_of(&name) {
                Store::Binary => name.replace(".enc.json", "").replace(".bin", ".bin.dec"),
                _ => name.replace(".enc.", ".dec."),
            };
            let keys = if name.contains("ssh-ed25519") { "ssh_ed25519" } else { "age-keys.txt" };
            let docs = open(&file, keys).unwrap_or_else(|e| panic!("{file}: {e}"));
            let got = store_of(&name).write_plain(&docs).unwrap();
            let want = std::fs::read(fixture(&format!("{dir}/expected/{expected}"))).unwrap();
            assert_eq!(String::from_utf8_lossy(&got), String::from_utf8_lossy(&want), "{file}");
            assert_eq!(got, want, "{file}");
            checked += 1;
        }
    }
    assert_eq!(checked, 20, "every fixture was read");
}

#[test]
fn a_tampered_file_fails_the_mac_and_a_missing_identity_is_clear() {
    let bytes = std::fs::read(fixture("v3.11.0-generated/basic.enc.yaml")).unwrap();
    let mut docs = Store::Yaml.read_encrypted(&bytes).unwrap();
    let meta = take_metadata(&mut docs).unwrap();
    // Swap two encrypted values with the same path: each decrypts, the MAC does not match.
    let Some(Node::List(list)) =
        docs[0].get_mut("nested").and_then(|n| n.get_mut("inner")).and_then(|n| n.get_mut("list"))
    else {
        panic!("the fixture has nested.inner.list");
    };
    list.swap(0, 1);
    let err = decrypt_documents(&mut docs, &meta, &identities("age-keys.txt"), false).unwrap_err().to_string();
    assert!(err.contains("MAC mismatch"), "{err}");

    let mut docs = Store::Yaml.read_encrypted(&bytes).unwrap();
    let meta = take_metadata(&mut docs).unwrap();
    let err = decrypt_documents(&mut docs, &meta, &identities("ssh_ed25519"), false).unwrap_err().to_string();
    assert!(
        err.contains("age1yt3tfqlfrwdwx0z0ynwplcr6qxcxfaqycuprpmy89nr83ltx74tqdpszlw"),
        "names the recipients: {err}"
    );
}
