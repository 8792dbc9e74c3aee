//! What `sealant seal` writes is opened by an independent implementation: a Python decryptor on
//! pyca/cryptography (tests/oracle), which shares no code with us.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failed step should stop the test loudly

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

fn repo() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

fn oracle(sealed_json: &Path) -> Vec<serde_json::Value> {
    let out = Command::new("python3")
        .arg(repo().join("tests/oracle/sealed_secrets_oracle.py"))
        .arg("--key")
        .arg(repo().join("keys-example/demo.tls.key"))
        .arg(sealed_json)
        .output()
        .expect("python3 must be installed (.ci/run installs it with tests/oracle/requirements.txt)");
    assert!(
        out.status.success(),
        "the Python oracle failed (is `pip install -r tests/oracle/requirements.txt` done?): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

fn sealant(bin: &Path, args: &[&str], stdin: &[u8]) -> Vec<u8> {
    let mut child = Command::new(bin)
        .current_dir(repo())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    out.stdout
}

const SECRET: &str = r#"{"apiVersion":"v1","kind":"Secret","metadata":{"name":"app","namespace":"prod"},
"data":{"binary":"AAEC/f7/","empty":""},
"stringData":{"unicode":"héllo ✓ 日本語","multi":"a\nb\n"}}"#;

fn expected() -> serde_json::Value {
    serde_json::json!({
        "binary": "AAEC/f7/",
        "empty": "",
        "unicode": "aMOpbGxvIOKckyDml6XmnKzoqp4=",
        "multi": "YQpiCg==",
    })
}

#[test]
fn python_oracle_opens_every_scope() {
    let dir = tempfile::tempdir().unwrap();
    for scope in ["strict", "namespace-wide", "cluster-wide"] {
        let out = sealant(
            Path::new(env!("CARGO_BIN_EXE_sealant")),
            &["seal", "--cert", "keys-example/demo.tls.crt", "-o", "json", "--scope", scope],
            SECRET.as_bytes(),
        );
        let file = dir.path().join(format!("{scope}.json"));
        std::fs::write(&file, out).unwrap();
        assert_eq!(oracle(&file), vec![expected()], "scope {scope}");
    }
}

#[test]
fn python_oracle_opens_kubeseal_name_output_and_raw_items() {
    let dir = tempfile::tempdir().unwrap();
    let kubeseal = dir.path().join("kubeseal");
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_sealant"), &kubeseal).unwrap();
    let out = sealant(&kubeseal, &["--cert", "keys-example/demo.tls.crt"], SECRET.as_bytes());
    let file = dir.path().join("kubeseal.json");
    std::fs::write(&file, out).unwrap();
    assert_eq!(oracle(&file), vec![expected()]);

    // A --raw item, wrapped in the SealedSecret it was sealed for.
    let large: Vec<u8> = (0..100_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let item = sealant(
        &kubeseal,
        &["--raw", "--cert", "keys-example/demo.tls.crt", "-n", "prod", "--name", "app", "--from-file", "/dev/stdin"],
        &large,
    );
    let doc = serde_json::json!({
        "apiVersion": "bitnami.com/v1alpha1", "kind": "SealedSecret",
        "metadata": {"name": "app", "namespace": "prod"},
        "spec": {"encryptedData": {"large": String::from_utf8(item).unwrap()}},
    });
    let file = dir.path().join("raw.json");
    std::fs::write(&file, doc.to_string()).unwrap();
    use base64::Engine as _;
    let want = base64::engine::general_purpose::STANDARD.encode(&large);
    assert_eq!(oracle(&file), vec![serde_json::json!({ "large": want })]);
}
