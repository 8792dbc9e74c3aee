//! C2SP's age test vectors (core/tests/cctv/, 143 cases, 19 post-quantum) through Sealant's one
//! age decryption path, the one key backups and SOPS files share: identities read as an
//! identity file is, armored files as SOPS reads them, the others as key backups are. Every case must give the outcome it names:
//! success with the payload's SHA-256, or failure of the named kind. Cases for a feature Sealant
//! does not offer (passphrases, i.e. scrypt) are skipped and counted; the counts are printed.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failed step should stop the test loudly

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

use sealant_core::age_keys::{AgeError, Encoding, decrypt, parse_identities};
use sha2::{Digest, Sha256};

/// One vector: its header fields (repeated ones, like `identity`, kept in order) and the file.
struct Vector {
    fields: Vec<(String, String)>,
    file: Vec<u8>,
}

impl Vector {
    fn read(path: &Path) -> Vector {
        let bytes = std::fs::read(path).unwrap();
        let end = bytes.windows(2).position(|w| w == b"\n\n").expect("a header and an empty line");
        let fields = String::from_utf8(bytes[..end].to_vec())
            .expect("a text header")
            .lines()
            .map(|l| {
                let (k, v) = l.split_once(": ").unwrap_or((l, ""));
                (k.to_owned(), v.to_owned())
            })
            .collect();
        let mut vector = Vector { fields, file: bytes[end + 2..].to_vec() };
        if vector.field("compressed") == Some("zlib") {
            let mut file = Vec::new();
            flate2::read::ZlibDecoder::new(vector.file.as_slice()).read_to_end(&mut file).unwrap();
            vector.file = file;
        }
        vector
    }

    fn field(&self, name: &str) -> Option<&str> {
        self.fields.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    fn all(&self, name: &str) -> Vec<&str> {
        self.fields.iter().filter(|(k, _)| k == name).map(|(_, v)| v.as_str()).collect()
    }
}

/// The kind of outcome, in the vectors' words.
fn outcome(result: &Result<sealant_core::SecretBytes, AgeError>) -> String {
    use age::DecryptError as E;
    match result {
        Ok(plain) => format!("success {}", hex(&Sha256::digest(plain.expose()))),
        Err(AgeError::Decrypt(E::NoMatchingKeys)) => "no match".into(),
        Err(AgeError::Decrypt(E::InvalidMac)) => "HMAC failure".into(),
        Err(AgeError::Armor(_)) => "armor failure".into(),
        Err(AgeError::Decrypt(_)) => "header failure".into(),
        // Reading the payload: a bad chunk, a missing or extra final chunk, trailing data.
        Err(AgeError::Io(_)) => "payload failure".into(),
        Err(other) => format!("unexpected error: {other}"),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn every_c2sp_vector_gives_the_outcome_it_names() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cctv");
    let mut names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n != "README.md")
        .collect();
    names.sort();
    assert_eq!(names.len(), 143, "the C2SP age vectors, all of them");

    let (mut passed, mut failed) = (Vec::new(), Vec::new());
    let mut skipped: BTreeMap<&str, usize> = BTreeMap::new();
    for name in &names {
        let vector = Vector::read(&dir.join(name));
        if vector.field("passphrase").is_some() {
            *skipped.entry("scrypt (passphrases: Sealant takes none)").or_default() += 1;
            continue;
        }
        let mut identities = vector.all("identity").join("\n");
        if identities.is_empty() {
            // A file that fails before any identity is tried (e.g. `empty`): any identity will do.
            use age::secrecy::ExposeSecret;
            identities = age::x25519::Identity::generate().to_string().expose_secret().to_owned();
        }
        let identities: Vec<_> =
            parse_identities(&identities).unwrap().into_iter().map(|(identity, _)| identity).collect();
        let expect = vector.field("expect").expect("every vector names its outcome");
        let want = match expect {
            "success" => format!("success {}", vector.field("payload").expect("a success names its payload")),
            other => other.to_owned(),
        };
        // Armored files go the way SOPS's data keys do; the others the way key backups do.
        let encoding = if vector.field("armored") == Some("yes") { Encoding::Armored } else { Encoding::Detect };
        let got = outcome(&decrypt(&identities, &vector.file, encoding));
        if got == want { passed.push(name) } else { failed.push(format!("{name}: expected {want}, got {got}")) }
    }
    let post_quantum = passed.iter().filter(|n| n.contains("hybrid")).count();
    println!(
        "C2SP age vectors: {} passed ({post_quantum} post-quantum), {} failed, {} skipped {skipped:?}",
        passed.len(),
        failed.len(),
        skipped.values().sum::<usize>()
    );
    assert!(failed.is_empty(), "vectors that gave another outcome:\n{}", failed.join("\n"));
    assert_eq!(post_quantum, 19, "every post-quantum vector runs");
}
