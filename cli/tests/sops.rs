//! `sealant sops decrypt` on files written by the real sops, with identities found the way
//! sops finds them.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failed step should stop the test loudly

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

fn fixtures() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures/sops"))
}

/// Run with a clean environment: no HOME keys, no SOPS_* variables but `env`.
fn sealant(args: &[&str], env: &[(&str, &Path)]) -> Output {
    let home = tempfile::tempdir().unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_sealant"));
    command.env_clear().env("HOME", home.path()).args(args);
    for (k, v) in env {
        command.env(k, v);
    }
    command.output().unwrap()
}

fn keys() -> PathBuf {
    fixtures().join("age-keys.txt")
}

fn semantic(bytes: &[u8]) -> Vec<Value> {
    let normalise = |v: &Value| -> Value {
        fn walk(v: &Value) -> Value {
            match v {
                Value::Number(n) => n.as_f64().map(Value::from).unwrap_or_else(|| v.clone()),
                Value::Array(a) => Value::Array(a.iter().map(walk).collect()),
                Value::Object(m) => Value::Object(m.iter().map(|(k, v)| (k.clone(), walk(v))).collect()),
                other => other.clone(),
            }
        }
        walk(v)
    };
    sealant_core::yaml::parse_documents(std::str::from_utf8(bytes).unwrap()).unwrap().iter().map(normalise).collect()
}

#[test]
fn every_format_decrypts_to_what_sops_printed() {
    let base = fixtures();
    let cases: &[(&str, &str, &[&str])] = &[
        ("v3.11.0-generated/basic.enc.yaml", "v3.11.0-generated/expected/basic.dec.yaml", &[]),
        ("v3.11.0-generated/basic.enc.json", "v3.11.0-generated/expected/basic.dec.json", &[]),
        ("v3.11.0-generated/multidoc.enc.yaml", "v3.11.0-generated/expected/multidoc.dec.yaml", &[]),
        ("v3.11.0-generated/shamir-2of2.enc.json", "v3.11.0-generated/expected/shamir-2of2.dec.json", &[]),
        (
            "v3.11.0-generated/k8s-secret.mac_only_encrypted.enc.yaml",
            "v3.11.0-generated/expected/k8s-secret.mac_only_encrypted.dec.yaml",
            &[],
        ),
        ("v3.7.1-pr1031/example.enc.yaml", "v3.7.1-pr1031/expected/example.dec.yaml", &[]),
        ("v3.7.1-pr1031/example.enc.json", "v3.7.1-pr1031/expected/example.dec.json", &[]),
    ];
    for (file, expected, extra) in cases {
        let mut args = vec!["sops", "decrypt"];
        args.extend_from_slice(extra);
        let path = base.join(file);
        args.push(path.to_str().unwrap());
        let out = sealant(&args, &[("SOPS_AGE_KEY_FILE", &keys())]);
        assert!(out.status.success(), "{file}: {}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(semantic(&out.stdout), semantic(&std::fs::read(base.join(expected)).unwrap()), "{file}");
    }
    // dotenv and binary: the bytes sops printed (dotenv comments are not kept yet).
    for (file, expected, extra) in [
        ("v3.11.0-generated/basic.enc.env", "v3.11.0-generated/expected/basic.dec.env", None),
        ("v3.11.0-generated/shamir-2of2.enc.env", "v3.11.0-generated/expected/shamir-2of2.dec.env", None),
        ("v3.11.0-generated/blob.bin.enc.json", "v3.11.0-generated/expected/blob.bin.dec", Some("binary")),
    ] {
        let path = base.join(file);
        let mut args = vec!["sops", "decrypt"];
        if let Some(t) = extra {
            args.extend(["--input-type", t]);
        }
        args.push(path.to_str().unwrap());
        let out = sealant(&args, &[("SOPS_AGE_KEY_FILE", &keys())]);
        assert!(out.status.success(), "{file}: {}", String::from_utf8_lossy(&out.stderr));
        let want: Vec<u8> = std::fs::read(base.join(expected))
            .unwrap()
            .split_inclusive(|b| *b == b'\n')
            .filter(|l| extra.is_some() || !l.starts_with(b"#"))
            .flatten()
            .copied()
            .collect();
        assert_eq!(out.stdout, want, "{file}");
    }
}

#[test]
fn identities_come_from_every_sops_source() {
    let base = fixtures();
    let file = base.join("v3.11.0-generated/basic.enc.yaml");
    let file = file.to_str().unwrap();
    let config = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(config.path().join("sops/age")).unwrap();
    std::fs::copy(keys(), config.path().join("sops/age/keys.txt")).unwrap();
    let ssh = base.join("v3.11.0-generated/basic.ssh-ed25519.enc.yaml");
    let cases: Vec<(&str, Vec<(&str, PathBuf)>)> = vec![
        (file, vec![("XDG_CONFIG_HOME", config.path().to_path_buf())]),
        (ssh.to_str().unwrap(), vec![("SOPS_AGE_SSH_PRIVATE_KEY_FILE", base.join("ssh_ed25519"))]),
    ];
    for (target, env) in cases {
        let env: Vec<(&str, &Path)> = env.iter().map(|(k, v)| (*k, v.as_path())).collect();
        let out = sealant(&["sops", "decrypt", "--extract", r#"["nested"]["inner"]["key"]"#, target], &env);
        assert!(out.status.success(), "{target}: {}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(out.stdout, b"value");
    }
    // SOPS_AGE_KEY and SOPS_AGE_KEY_CMD.
    let inline = std::fs::read_to_string(keys()).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_sealant"))
        .env_clear()
        .env("SOPS_AGE_KEY", inline.lines().filter(|l| !l.starts_with('#')).collect::<Vec<_>>().join(" "))
        .args(["sops", "decrypt", "--extract", r#"["string"]"#, file])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = Command::new(env!("CARGO_BIN_EXE_sealant"))
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap())
        .env("SOPS_AGE_KEY_CMD", format!("cat {}", keys().display()))
        .args(["sops", "decrypt", "--extract", r#"["string"]"#, file])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.stdout, b"hello world");
}

#[test]
fn tampering_and_missing_keys_fail_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let original = std::fs::read_to_string(fixtures().join("v3.11.0-generated/basic.enc.yaml")).unwrap();
    // Swap the first two items of a list: each decrypts (same path), the MAC does not match.
    let lines: Vec<&str> = original.lines().collect();
    let first = lines.iter().position(|l| l.trim_start().starts_with("- ENC[")).unwrap();
    let mut swapped: Vec<&str> = lines.clone();
    swapped.swap(first, first + 1);
    let tampered = dir.path().join("tampered.yaml");
    std::fs::write(&tampered, swapped.join("\n") + "\n").unwrap();
    let out = sealant(&["sops", "decrypt", tampered.to_str().unwrap()], &[("SOPS_AGE_KEY_FILE", &keys())]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("MAC mismatch") && stderr.contains("hint:"), "{stderr}");
    let out =
        sealant(&["sops", "decrypt", "--ignore-mac", tampered.to_str().unwrap()], &[("SOPS_AGE_KEY_FILE", &keys())]);
    assert!(out.status.success());

    let out = sealant(&["sops", "decrypt", fixtures().join("v3.11.0-generated/basic.enc.yaml").to_str().unwrap()], &[]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("age1yt3tfqlfrwdwx0z0ynwplcr6qxcxfaqycuprpmy89nr83ltx74tqdpszlw"), "{stderr}");
    assert!(!stderr.contains("AGE-SECRET-KEY"), "never print a private key");

    let plain = dir.path().join("plain.yaml");
    std::fs::write(&plain, "a: b\n").unwrap();
    let out = sealant(&["sops", "decrypt", plain.to_str().unwrap()], &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not a SOPS file"));
}

#[test]
fn in_place_replaces_the_file_with_its_plaintext() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("secrets.json");
    std::fs::copy(fixtures().join("v3.11.0-generated/shamir-2of2.enc.json"), &file).unwrap();
    let out = sealant(&["sops", "decrypt", "-i", file.to_str().unwrap()], &[("SOPS_AGE_KEY_FILE", &keys())]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = std::fs::read(&file).unwrap();
    assert_eq!(
        semantic(&text),
        semantic(&std::fs::read(fixtures().join("v3.11.0-generated/expected/shamir-2of2.dec.json")).unwrap())
    );
}
