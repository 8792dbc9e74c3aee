//! `spec.template.data` as upstream v0.40 reads it: plain values seen by sibling templates, an
//! item winning on a shared key (in the data and in the Secret), `null` leaving an item out of
//! the Secret while siblings still read it; and hostile shapes of it refused in bounded time.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failed step should stop the test loudly

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use rand::SeedableRng;
use rand::rngs::StdRng;
use sealant_core::keys::parse_private_keys;
use sealant_core::{Certificate, PrivateKey};
use sealant_crds::{SealOptions, SealedSecret, UnsealError, UnsealOptions, seal_secret, unseal};

fn repo(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..").join(path)
}

fn demo_key() -> Vec<PrivateKey> {
    parse_private_keys(&std::fs::read(repo("keys-example/demo.tls.key")).unwrap()).unwrap()
}

/// `items` sealed to the demo key, with `templates` as `spec.template.data`.
fn sealed(items: &[(&str, &str)], templates: &[(&str, Option<&str>)]) -> SealedSecret {
    let cert = Certificate::from_pem(&std::fs::read_to_string(repo("keys-example/demo.tls.crt")).unwrap()).unwrap();
    let secret = Secret {
        metadata: ObjectMeta { name: Some("db".into()), namespace: Some("app".into()), ..Default::default() },
        data: Some(items.iter().map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec()))).collect()),
        ..Default::default()
    };
    let options = SealOptions { allow_empty_data: true, ..Default::default() };
    let mut ss = seal_secret(&mut StdRng::seed_from_u64(7), &cert, &secret, &options).unwrap();
    ss.spec.template.data = Some(templates.iter().map(|(k, v)| (k.to_string(), v.map(str::to_owned))).collect());
    ss
}

fn data(ss: &SealedSecret) -> BTreeMap<String, String> {
    let secret = unseal(ss, &demo_key(), UnsealOptions::default()).unwrap_or_else(|e| panic!("{e}"));
    secret.data.unwrap_or_default().into_iter().map(|(k, v)| (k, String::from_utf8(v.0).unwrap())).collect()
}

fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

#[test]
fn a_plain_value_is_seen_by_its_siblings_and_written() {
    let ss = sealed(&[("password", "pw")], &[("host", Some("db.local")), ("dsn", Some("{{ .host }}:{{ .password }}"))]);
    assert_eq!(data(&ss), map(&[("dsn", "db.local:pw"), ("host", "db.local"), ("password", "pw")]));
}

#[test]
fn an_item_wins_over_a_template_of_the_same_key() {
    // In the data the templates see, and in the Secret: the template is rendered but not written.
    let ss = sealed(&[("password", "pw")], &[("password", Some("plain")), ("copy", Some("{{ .password }}"))]);
    assert_eq!(data(&ss), map(&[("copy", "pw"), ("password", "pw")]));
    // Its failure still fails the whole, as upstream's.
    let ss = sealed(&[("password", "pw")], &[("password", Some("{{ nosuchfunction }}"))]);
    assert!(matches!(unseal(&ss, &demo_key(), UnsealOptions::default()), Err(UnsealError::Template(_))));
}

#[test]
fn null_leaves_an_item_out_and_siblings_still_read_it() {
    let ss = sealed(
        &[("user", "u"), ("password", "pw")],
        &[("password", None), ("dsn", Some("{{ .user }}:{{ .password }}"))],
    );
    assert_eq!(data(&ss), map(&[("dsn", "u:pw"), ("user", "u")]));
}

#[test]
fn null_for_a_key_no_item_has_changes_nothing() {
    let ss = sealed(&[("password", "pw")], &[("nothing", None), ("t", Some("[{{ .nothing }}]"))]);
    assert_eq!(data(&ss), map(&[("password", "pw"), ("t", "[<no value>]")]));
}

#[test]
fn every_item_null_makes_an_empty_secret() {
    let ss = sealed(&[("password", "pw")], &[("password", None)]);
    assert_eq!(data(&ss), BTreeMap::new());
}

/// 2,000 plain values, each seen by every template: bounded by the render budget, not a panic.
#[test]
fn two_thousand_plain_values_render_in_bounded_time() {
    let keys: Vec<String> = (0..2000).map(|i| format!("k{i}")).collect();
    let templates: Vec<(&str, Option<&str>)> =
        keys.iter().map(|k| (k.as_str(), Some("{{ .k0 }}{{ .k1999 }}{{ .password }}"))).collect();
    let ss = sealed(&[("password", "pw")], &templates);
    let started = Instant::now();
    let out = data(&ss);
    assert_eq!(out.len(), 2001);
    assert_eq!(out["k5"], "{{ .k0 }}{{ .k1999 }}{{ .password }}{{ .k0 }}{{ .k1999 }}{{ .password }}pw");
    eprintln!("2,000 plain values rendered in {:?}", started.elapsed());
}
