//! Sealing through `.sealant.yaml` in a copy of the example repository (tests/envs): each file
//! for the cluster(s) its rule names, into the rule's output, opened only by that cluster's key;
//! byte for byte what `seal --cert` writes for the same certificate and scope (ciphertexts
//! aside); pins and `-w` refused where they cannot be right. (config explain and check: the
//! golden cases tests/cmd/envs-*.toml.)

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failed step should stop the test loudly

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

fn repo(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..").join(path)
}

/// A copy of the example repository (symbolic links kept) to seal into.
fn example() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let status = Command::new("cp").arg("-a").arg(repo("cli/tests/envs/.")).arg(dir.path()).status().unwrap();
    assert!(status.success());
    dir
}

fn sealant(cwd: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sealant")).args(args).current_dir(cwd).output().unwrap()
}

fn ok(cwd: &Path, args: &[&str]) -> String {
    let out = sealant(cwd, args);
    assert!(out.status.success(), "sealant {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// The `password` a sealed file opens to with `key` (a key Secret file).
fn unsealed_password(cwd: &Path, sealed: &str, key: &str) -> Option<String> {
    let out = sealant(cwd, &["unseal", "--private-key", repo(key).to_str().unwrap(), "-f", sealed, "-o", "json"]);
    out.status.success().then(|| {
        let secret: Value = serde_json::from_slice(&out.stdout).unwrap();
        let b64 = secret["data"]["password"].as_str().unwrap().to_owned();
        use base64::Engine as _;
        String::from_utf8(base64::engine::general_purpose::STANDARD.decode(b64).unwrap()).unwrap()
    })
}

/// A SealedSecret document without its ciphertexts.
fn without_ciphertexts(text: &str) -> Value {
    let mut doc = sealant_core::yaml::parse_documents(text).unwrap().remove(0);
    for (_, v) in doc["spec"]["encryptedData"].as_object_mut().unwrap() {
        *v = Value::String("<ciphertext>".into());
    }
    doc
}

const DEV_KEY: &str = "keys-example/demo.secret.yaml";
const STAGING_KEY: &str = "tests/fixtures/sealed-secrets/python-generated/keys/key-a.secret.yaml";
const PROD_KEY: &str = "tests/fixtures/sealed-secrets/python-generated/keys/key-b.secret.yaml";

#[test]
fn each_file_is_sealed_for_its_rules_clusters_into_its_output() {
    let repo_copy = example();
    let root = repo_copy.path();

    // The folder names the cluster: dev's key opens it, no other.
    assert_eq!(ok(root, &["seal", "-f", "clusters/dev/secrets/db.secret.yaml"]), "", "written to the rule's output");
    let dev = "clusters/dev/sealed/db.yaml";
    assert_eq!(unsealed_password(root, dev, DEV_KEY).as_deref(), Some("dev-password"));
    assert_eq!(unsealed_password(root, dev, PROD_KEY), None);

    // The same as `seal --cert` with that certificate and the rule's scope, ciphertexts aside.
    let by_flag = ok(
        root,
        &["seal", "--cert", "certs/dev.pem", "--scope", "strict", "-f", "clusters/dev/secrets/db.secret.yaml"],
    );
    let by_config = std::fs::read_to_string(root.join(dev)).unwrap();
    assert_eq!(without_ciphertexts(&by_config), without_ciphertexts(&by_flag));
    let strip = |t: &str| t.lines().filter(|l| !l.trim_start().starts_with("password:")).collect::<Vec<_>>().join("\n");
    assert_eq!(strip(&by_config), strip(&by_flag), "byte for byte but the ciphertext lines");

    // Rule order: prod's database takes rule 2, namespace-wide.
    ok(root, &["seal", "-f", "clusters/prod/secrets/db.secret.yaml"]);
    let prod = std::fs::read_to_string(root.join("clusters/prod/sealed/db.yaml")).unwrap();
    assert!(prod.contains("sealedsecrets.bitnami.com/namespace-wide: 'true'"), "{prod}");
    assert_eq!(unsealed_password(root, "clusters/prod/sealed/db.yaml", PROD_KEY).as_deref(), Some("prod-password"));

    // One secret for two clusters: each output opens with its own cluster's key only.
    ok(root, &["seal", "-f", "shared/registry.secret.yaml"]);
    for (cluster, key, other) in [("staging", STAGING_KEY, PROD_KEY), ("prod", PROD_KEY, STAGING_KEY)] {
        let out = format!("clusters/{cluster}/sealed/registry.yaml");
        assert_eq!(unsealed_password(root, &out, key).as_deref(), Some("shared-password"), "{out}");
        assert_eq!(unsealed_password(root, &out, other), None, "{out} opens only with {cluster}'s key");
    }

    // Through a symlinked folder: the folder it points to decides.
    std::fs::remove_file(root.join("clusters/prod/sealed/db.yaml")).unwrap();
    ok(root, &["seal", "-f", "envs/production/secrets/db.secret.yaml"]);
    assert!(root.join("clusters/prod/sealed/db.yaml").is_file());
}

#[test]
fn what_cannot_be_right_is_refused() {
    let repo_copy = example();
    let root = repo_copy.path();

    // No rule: an error naming the file and the config.
    let out = sealant(root, &["seal", "-f", "legacy/old.secret.yaml"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no rule of .sealant.yaml matches legacy/old.secret.yaml"));

    // -w names one file, the rule seals for two clusters.
    let out = sealant(root, &["seal", "-f", "shared/registry.secret.yaml", "-w", "out.yaml"]);
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(!root.join("out.yaml").exists());

    // A certificate that does not match its pin: nothing is written.
    std::fs::copy(root.join("certs/prod.pem"), root.join("certs/dev.pem")).unwrap();
    let out = sealant(root, &["seal", "-f", "clusters/dev/secrets/db.secret.yaml"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("but .sealant.yaml pins SHA256:UiPC"), "{stderr}");
    assert!(!root.join("clusters/dev/sealed").exists());
    let out = sealant(root, &["certs", "check", "--offline"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("is not the pinned"));

    // Input from standard input has no path: the config does not apply (the cluster would be asked).
    let out = Command::new(env!("CARGO_BIN_EXE_sealant"))
        .args(["config", "explain", "nowhere.yaml"])
        .current_dir(root)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn runbook_moving_a_folder_to_a_new_cluster_with_the_old_clusters_key_backup() {
    let repo_copy = example();
    let root = repo_copy.path();
    ok(root, &["seal", "-f", "clusters/dev/secrets/db.secret.yaml"]);
    ok(root, &["seal", "-f", "clusters/dev/secrets/team/payments/api.secret.yaml"]);
    let sealed = "clusters/dev/sealed/db.yaml";
    let mut text = std::fs::read_to_string(root.join(sealed)).unwrap();
    text.insert_str(0, "# owned by the payments team\n");
    std::fs::write(root.join(sealed), &text).unwrap();

    // README "Move to a new cluster": whoever holds dev's key backup re-seals dev's folders for
    // staging, offline, from the committed staging certificate. No controller is asked.
    let out = sealant(
        root,
        &[
            "reencrypt",
            "--private-key",
            repo(DEV_KEY).to_str().unwrap(),
            "--to",
            "staging",
            "clusters/dev/sealed",
            "clusters/dev/secrets/team/sealed",
        ],
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("2 of 2 file(s) re-encrypted to SHA256:SOgz"));
    let after = std::fs::read_to_string(root.join(sealed)).unwrap();
    assert!(after.starts_with("# owned by the payments team\n"), "the file's comments stay:\n{after}");
    assert!(after.contains("sealant.dev/sealing-key: SHA256:SOgz"), "{after}");
    assert_eq!(unsealed_password(root, sealed, STAGING_KEY).as_deref(), Some("dev-password"));
    assert_eq!(unsealed_password(root, sealed, DEV_KEY), None, "only the new cluster's key opens it");
    let moved = "clusters/dev/secrets/team/sealed/api.yaml";
    assert_eq!(unsealed_password(root, moved, STAGING_KEY).as_deref(), Some("nested-password"));

    // The wrong keys: nothing is written.
    let before = std::fs::read_to_string(root.join(sealed)).unwrap();
    let out = sealant(
        root,
        &["reencrypt", "--private-key", repo(PROD_KEY).to_str().unwrap(), "--to", "prod", "clusters/dev/sealed"],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot open db with the given keys"));
    assert_eq!(std::fs::read_to_string(root.join(sealed)).unwrap(), before);
}

#[test]
fn reencrypt_check_wants_every_sealed_file_sealed_to_a_committed_certificate() {
    let repo_copy = example();
    let root = repo_copy.path();
    ok(root, &["seal", "-f", "clusters/staging/secrets/db.secret.yaml"]);
    ok(root, &["seal", "-f", "clusters/dev/secrets/db.secret.yaml"]);
    assert_eq!(ok(root, &["reencrypt", "--check", "clusters"]), "", "no controller is asked");
    // validate checks the items against the committed certificate they were sealed to.
    assert_eq!(ok(root, &["validate", "clusters/dev/sealed", "clusters/staging/sealed"]), "");

    // staging's key was renewed and `certs fetch` committed the new certificate: what was sealed
    // to the old one is listed, and the check fails.
    std::fs::copy(repo("tests/fixtures/sealed-secrets/real-kubeseal-v0.14.1/tls.crt"), root.join("certs/staging.pem"))
        .unwrap();
    let out = sealant(root, &["reencrypt", "--check", "clusters"]);
    assert_eq!(out.status.code(), Some(1));
    let listed = String::from_utf8_lossy(&out.stdout);
    assert!(listed.contains("clusters/staging/sealed/db.yaml: db: sealed to SHA256:SOgz"), "{listed}");
    assert!(!listed.contains("clusters/dev/"), "{listed}");
}

#[test]
fn keys_usage_names_each_key_by_the_cluster_whose_certificate_is_committed() {
    let repo_copy = example();
    let root = repo_copy.path();
    ok(root, &["seal", "-f", "shared/registry.secret.yaml"]);
    ok(root, &["seal", "-f", "clusters/dev/secrets/db.secret.yaml"]);
    let out = Command::new(env!("CARGO_BIN_EXE_sealant"))
        .args(["keys", "usage", "clusters"])
        .current_dir(root)
        .env("KUBECONFIG", root.join("no-kubeconfig"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    for (cluster, file, sealed) in [
        ("dev", "certs/dev.pem", "clusters/dev/sealed/db.yaml"),
        ("staging", "certs/staging.pem", "clusters/staging/sealed/registry.yaml"),
        ("prod", "certs/prod.pem", "clusters/prod/sealed/registry.yaml"),
    ] {
        let heading = format!("(cluster {cluster}'s committed {file})\n  file {sealed}: ");
        assert!(text.contains(&heading), "{heading:?} in:\n{text}");
    }
}
