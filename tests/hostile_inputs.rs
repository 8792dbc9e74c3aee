//! Every parser and template rendering against input an attacker writes: the committed corpus
//! of known attacks (tests/fixtures/hostile), then generated inputs built from the tokens that
//! make parsers and templates expensive. Nothing may panic, abort or grow without bound; a
//! template's output stays within its bound and its errors never carry the plaintext.
//!
//! More cases for a longer run: `PROPTEST_CASES=20000 cargo test -p sealant-core --test hostile_inputs`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failed step should stop the test loudly

use std::collections::BTreeMap;
use std::path::PathBuf;

use proptest::prelude::*;
use sealant_core::template::{MAX_OUTPUT_BYTES, render_all};
use sealant_core::{Certificate, SecretBytes, hybrid_decrypt, keys, yaml};
use sealant_sops::stores::Store;

const PASSWORD: &str = "Zq7#Xv9kWm";

fn corpus() -> Vec<(String, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/hostile");
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e != "md"))
        .map(|p| (p.file_name().unwrap().to_string_lossy().into_owned(), std::fs::read(&p).unwrap()))
        .collect();
    files.sort();
    files
}

/// Every parser that takes untrusted bytes.
fn parse_everything(bytes: &[u8]) {
    let text = String::from_utf8_lossy(bytes);
    let _ = yaml::parse_documents(&text);
    let _ = yaml::parse_documents_bounded(&text, 4096);
    for store in [Store::Yaml, Store::Json, Store::Dotenv, Store::Ini, Store::Binary] {
        let _ = store.read_encrypted(bytes);
        let _ = store.read_plain(bytes);
    }
    let _ = keys::parse_private_keys(bytes);
    let _ = Certificate::from_pem(&text);
}

/// Render `template` over the password; check the bounds and that no error carries it.
fn render_checked(template: &str) {
    let items = BTreeMap::from([("password".to_owned(), SecretBytes::from(PASSWORD.as_bytes()))]);
    let templates = BTreeMap::from([("t".to_owned(), Some(template.to_owned()))]);
    match render_all(&templates, &items) {
        Ok(out) => assert!(out["t"].len() <= MAX_OUTPUT_BYTES, "{template}: output over the bound"),
        Err(e) => {
            let message = e.to_string();
            for piece in PASSWORD.as_bytes().windows(3) {
                let piece = std::str::from_utf8(piece).unwrap();
                assert!(!message.contains(piece), "{template}: {message:?} holds {piece:?}");
            }
        }
    }
}

#[test]
fn the_corpus_is_refused_or_bounded() {
    let corpus = corpus();
    assert!(corpus.len() >= 15, "the corpus is committed");
    for (name, bytes) in &corpus {
        parse_everything(bytes);
        if name.ends_with(".tmpl") {
            render_checked(&String::from_utf8_lossy(bytes));
        }
    }
    let laughs = &corpus.iter().find(|(n, _)| n == "billion-laughs.yaml").unwrap().1;
    let refused = Store::Yaml.read_plain(laughs).unwrap_err().to_string();
    assert!(refused.contains("excessive aliasing"), "{refused}");
    let deep = &corpus.iter().find(|(n, _)| n == "deep-flow.yaml").unwrap().1;
    assert!(yaml::parse_documents(std::str::from_utf8(deep).unwrap()).is_err());
    // Round 3: what the controller's HTTP API parses is counted before a tree is built.
    let text = |name: &str| String::from_utf8(corpus.iter().find(|(n, _)| n == name).unwrap().1.clone()).unwrap();
    let tiny = yaml::parse_documents_bounded(&text("tiny-items.yaml"), 4096).unwrap_err();
    assert!(matches!(tiny, yaml::YamlError::TooManyNodes(4096)), "{tiny}");
    assert!(yaml::parse_documents_bounded(&text("flow-alias.yaml"), 4096).is_err(), "an alias in flow style");
    assert_eq!(yaml::parse_documents(&text("flow-alias.yaml")).unwrap()[0]["kind"], "SealedSecret", "flow YAML reads");
}

const YAML_TOKENS: &[&str] = &[
    "[",
    "]",
    "{",
    "}",
    ":",
    ": ",
    " ",
    "  ",
    "\n",
    "- ",
    "&a ",
    "*a",
    "&b ",
    "*b",
    "'",
    "\"",
    "# c",
    "a",
    "k",
    "1",
    "0x1F",
    "? ",
    "|\n",
    ">-\n",
    "!!str ",
    "!!binary ",
    "---\n",
    "...\n",
    "k: ",
    "\t",
    "\\",
    ",",
    "<<: ",
    "ENC[AES256_GCM,data:",
    "]",
    "=",
    "[s]\n",
    "sops:\n",
    "  mac: ",
    "~",
    "null",
    "true",
    "1e400",
    "\u{feff}",
    "\u{0}",
    "é",
];

const TEMPLATE_TOKENS: &[&str] = &[
    "{{ ",
    " }}",
    "{{- ",
    " -}}",
    "repeat ",
    "indent ",
    "nindent ",
    "printf ",
    "print ",
    "println ",
    "\"%99999d\" ",
    "\"%[1]65535s\" ",
    "cat ",
    "$x ",
    "$x := ",
    "$x = ",
    "range ",
    "end",
    "if ",
    "else ",
    "with ",
    ".password ",
    "index ",
    "slice ",
    "| ",
    "(",
    ")",
    "1000000 ",
    "999999999999 ",
    "-1 ",
    "0 ",
    "3 ",
    "\"a\" ",
    "\"\" ",
    "html ",
    "js ",
    "urlquery ",
    "b64dec ",
    "b64enc ",
    "len ",
    "eq ",
    "lt ",
    "and ",
    "not ",
    "replace ",
    "\"\" ",
    "quote ",
    "toJson ",
    "trunc ",
    "upper ",
    "title ",
    "sha256sum ",
    "default ",
    "call ",
    "define ",
    "template ",
    "block ",
    ". ",
    "$ ",
    "text ",
    "\n",
    "nil ",
    "true ",
];

fn soup(tokens: &'static [&'static str], max: usize) -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(tokens), 0..max).prop_map(|parts| parts.concat())
}

proptest! {
    #[test]
    fn generated_documents_never_panic(text in soup(YAML_TOKENS, 4000)) {
        parse_everything(text.as_bytes());
    }

    #[test]
    fn generated_templates_stay_bounded_and_quiet(template in soup(TEMPLATE_TOKENS, 60)) {
        render_checked(&template);
    }

    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..20_000)) {
        parse_everything(&bytes);
        let keys = keys::parse_private_keys(&std::fs::read(
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../keys-example/demo.tls.key")).unwrap()).unwrap();
        let _ = hybrid_decrypt(&keys, &bytes, b"ns/name");
    }
}
