//! The README's runbooks, command by command, against the real control plane: rotate keys,
//! recover from a lost cluster, and a leaked key.

use std::path::Path;

use kube::ResourceExt;
use sealant_tests::cluster::{RunningController, age_binary, http};

use super::controller::{apply_sealed, install_keys, run_sealant, secret, synced};
use super::*;

/// `sealant ...` with the admin kubeconfig and the test namespace as the controller namespace.
fn sealant_in(dir: &Path, ns: &str, args: &[&str]) -> std::process::Output {
    Command::new(sealant_tests::cluster::built_binary("sealant"))
        .current_dir(dir)
        .args(args)
        .args(["--controller-namespace", ns])
        .env("KUBECONFIG", &control_plane().kubeconfig)
        .env_remove("SEALED_SECRETS_CERT")
        .output()
        .unwrap()
}

fn ok(out: &std::process::Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A controller in `n` that writes its encrypted key backup for `recipient`, once it has.
async fn controller_with_backup(n: &str, recipient: &str) -> RunningController {
    let backup_flag = format!("--backup-age-recipients={recipient}");
    let controller = RunningController::start(n, &[], &["--key-renew-period=0", &backup_flag]);
    controller.ready().await;
    let written = eventually(Duration::from_secs(30), || async {
        (controller.metric("sealant_last_key_backup_timestamp_seconds")? > 0.0).then_some(())
    })
    .await;
    assert!(written.is_some(), "the controller wrote its backup:\n{}", controller.log_text());
    controller
}

/// A new age identity in `dir/identity.txt` (Debian's age-keygen); its recipient.
fn age_identity(dir: &Path) -> String {
    let keygen =
        Command::new("age-keygen").arg("-o").arg(dir.join("identity.txt")).output().expect("age-keygen (Debian's age)");
    assert!(keygen.status.success());
    String::from_utf8_lossy(&keygen.stderr).trim().trim_start_matches("Public key: ").to_owned()
}

fn write_secret(dir: &Path, ns: &str, name: &str) -> std::path::PathBuf {
    let path = dir.join(format!("{name}.secret.json"));
    let secret = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": ns}, "stringData": {"value": format!("secret-of-{name}")}});
    std::fs::write(&path, secret.to_string()).unwrap();
    path
}

async fn served_cert(controller: &RunningController) -> String {
    let (_, body) = http(&format!("{}/v1/cert.pem", controller.url), "GET", b"").unwrap();
    String::from_utf8_lossy(&body).into_owned()
}

async fn cert_changes(controller: &RunningController, from: &str) -> String {
    eventually(Duration::from_secs(30), || async {
        let now = served_cert(controller).await;
        (now != from && now.contains("BEGIN CERTIFICATE")).then_some(now)
    })
    .await
    .expect("the controller serves the new key")
}

fn apply_dir(dir: &Path, ns: &str) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.to_string_lossy().contains(".sealed.") {
            let out = kubectl(&["apply", "-n", ns, "-f", path.to_str().unwrap()], None);
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        }
    }
}

#[tokio::test]
async fn rotate_keys_runbook() {
    let client = admin_client().await;
    install_crd(&client).await;
    let ns = TestNamespace::create(&client, "rotate").await;
    let n = ns.name.as_str();
    let work = tempfile::tempdir().unwrap();
    let repo_dir = work.path().join("repo");
    std::fs::create_dir(&repo_dir).unwrap();
    // The old key, and three files sealed to it and applied.
    ok(
        &run_sealant(
            &[
                "keys",
                "generate",
                "--bits",
                "2048",
                "--name",
                "old-key",
                "-n",
                n,
                "-w",
                "old.yaml",
                "--cert-out",
                "old.crt",
            ],
            work.path(),
        ),
        "keys generate",
    );
    install_keys(&client, n, &std::fs::read_to_string(work.path().join("old.yaml")).unwrap()).await;
    let controller = RunningController::start(n, &[], &["--key-renew-period=0"]);
    controller.ready().await;
    for (name, out) in [("a", "repo/a.sealed.yaml"), ("b", "repo/b.sealed.yaml"), ("c", "repo/c.sealed.json")] {
        let secret = write_secret(work.path(), n, name);
        ok(
            &run_sealant(&["seal", "--cert", "old.crt", "-f", secret.to_str().unwrap(), "-w", out], work.path()),
            "seal",
        );
    }
    apply_dir(&repo_dir, n);
    for name in ["a", "b", "c"] {
        synced(&client, n, name, "True").await;
    }
    let old_fp = ok(&run_sealant(&["cert", "--cert", "old.crt", "--info"], work.path()), "cert --info")
        .lines()
        .find_map(|l| l.strip_prefix("fingerprint: ").map(str::to_owned))
        .unwrap();
    let old_pem = served_cert(&controller).await;

    // 1. keys rotate: a new key that the controller serves and seals with.
    let rotated = ok(&sealant_in(work.path(), n, &["keys", "rotate", "--bits", "2048"]), "keys rotate");
    let new_fp = rotated.split_whitespace().nth(1).unwrap().to_owned();
    cert_changes(&controller, &old_pem).await;
    let listed = ok(&sealant_in(work.path(), n, &["keys", "list"]), "keys list");
    assert!(listed.lines().any(|l| l.starts_with(&new_fp) && l.trim_end().ends_with("yes")), "{listed}");
    let fresh = write_secret(work.path(), n, "fresh");
    let sealed = ok(
        &run_sealant(&["seal", "--controller-url", &controller.url, "-f", fresh.to_str().unwrap()], work.path()),
        "seal",
    );
    assert!(sealed.contains(&new_fp), "new seals use the new key");

    // 2. reencrypt the repository, apply it, and check.
    let check = run_sealant(&["reencrypt", "--check", "--controller-url", &controller.url, "repo"], work.path());
    assert_eq!(check.status.code(), Some(1), "stale files are reported before re-encryption");
    ok(&run_sealant(&["reencrypt", "--controller-url", &controller.url, "repo"], work.path()), "reencrypt");
    ok(
        &run_sealant(&["reencrypt", "--check", "--controller-url", &controller.url, "repo"], work.path()),
        "reencrypt --check",
    );
    apply_dir(&repo_dir, n);
    let api = Api::<SealedSecret>::namespaced(client.clone(), n);
    for name in ["a", "b", "c"] {
        let done = eventually(Duration::from_secs(30), || async {
            let ss = api.get(name).await.ok()?;
            let status = ss.status.clone()?;
            (ss.metadata.generation == Some(2)
                && status.observed_generation == Some(2)
                && status.conditions[0].status == "True")
                .then_some(())
        })
        .await;
        assert!(done.is_some(), "{name} re-applied and synced");
    }

    // 3. usage: nothing depends on the old key any more; 4. retire it.
    let usage =
        ok(&sealant_in(work.path(), n, &["keys", "usage", "repo", "--cluster", "--in-namespace", n]), "keys usage");
    let old_block: Vec<&str> = usage.lines().skip_while(|l| !l.starts_with(&old_fp)).take(2).collect();
    assert_eq!(old_block.get(1).map(|l| l.trim()), Some("no dependents"), "{usage}");
    ok(&sealant_in(work.path(), n, &["keys", "retire", &old_fp, "repo", "--in-namespace", n]), "keys retire");
    let listed = ok(&sealant_in(work.path(), n, &["keys", "list"]), "keys list");
    assert!(listed.lines().any(|l| l.starts_with(&old_fp) && l.contains("retired")), "{listed}");

    // Everything still unseals: delete the Secrets, they come back.
    let secrets = Api::<Secret>::namespaced(client.clone(), n);
    for name in ["a", "b", "c"] {
        let before = secret(&client, n, name).await.unwrap();
        secrets.delete(name, &DeleteParams::default()).await.unwrap();
        let back = eventually(Duration::from_secs(30), || async {
            secret(&client, n, name).await.filter(|s| s.metadata.uid != before.metadata.uid)
        })
        .await;
        assert_eq!(back.map(|s| s.data), Some(before.data), "{name} unseals with the new key alone");
    }
}

#[tokio::test]
async fn recover_from_a_lost_cluster_runbook() {
    let client = admin_client().await;
    install_crd(&client).await;
    let ns = TestNamespace::create(&client, "recover").await;
    let n = ns.name.as_str();
    let work = tempfile::tempdir().unwrap();
    let recipient = age_identity(work.path());

    // A controller that also keeps its own encrypted backup.
    let controller = controller_with_backup(n, &recipient).await;
    for name in ["x", "y"] {
        let secret = write_secret(work.path(), n, name);
        let out = format!("{name}.sealed.yaml");
        ok(
            &run_sealant(
                &["seal", "--controller-url", &controller.url, "-f", secret.to_str().unwrap(), "-w", &out],
                work.path(),
            ),
            "seal",
        );
        let doc = sealant_core::yaml::parse_documents(&std::fs::read_to_string(work.path().join(&out)).unwrap())
            .unwrap()
            .remove(0);
        apply_sealed(&client, n, doc).await;
        synced(&client, n, name, "True").await;
    }

    // keys backup: no plaintext key bytes anywhere in the file.
    ok(
        &sealant_in(work.path(), n, &["keys", "backup", "--age-recipient", &recipient, "-o", "keys.age"]),
        "keys backup",
    );
    let backup = std::fs::read(work.path().join("keys.age")).unwrap();
    let secrets = Api::<Secret>::namespaced(client.clone(), n);
    let keys = secrets
        .list(&kube::api::ListParams::default().labels("sealedsecrets.bitnami.com/sealed-secrets-key"))
        .await
        .unwrap()
        .items;
    assert_eq!(keys.len(), 1);
    let key_pem = keys[0].data.as_ref().unwrap()["tls.key"].0.clone();
    let engine = base64::engine::general_purpose::STANDARD;
    use base64::Engine as _;
    let body_line = String::from_utf8_lossy(&key_pem).lines().nth(3).unwrap().to_owned();
    for needle in [b"PRIVATE KEY".to_vec(), engine.encode(&key_pem).as_bytes()[..40].to_vec(), body_line.into_bytes()] {
        assert!(!backup.windows(needle.len()).any(|w| w == needle.as_slice()), "the backup holds plaintext key bytes");
    }
    // The controller's own backup Secret opens with the same identity (checked with `age`).
    let own = secrets.get("sealed-secrets-key-backup").await.unwrap().data.unwrap()["keys.age"].0.clone();
    std::fs::write(work.path().join("own.age"), &own).unwrap();
    let opened = Command::new("age")
        .args(["-d", "-i"])
        .arg(work.path().join("identity.txt"))
        .arg(work.path().join("own.age"))
        .output()
        .unwrap();
    assert!(opened.status.success() && String::from_utf8_lossy(&opened.stdout).contains(&keys[0].name_any()));

    // Lose everything: the controller, its keys, its backup Secret and the Secrets.
    drop(controller);
    for s in secrets.list(&Default::default()).await.unwrap().items {
        if s.type_.as_deref() != Some("kubernetes.io/service-account-token") {
            secrets.delete(&s.name_any(), &DeleteParams::default()).await.unwrap();
        }
    }

    // keys restore, then a new controller: every SealedSecret unseals again with the old key.
    // The committed certificate says which key to expect.
    std::fs::write(work.path().join("cert.pem"), &keys[0].data.as_ref().unwrap()["tls.crt"].0).unwrap();
    let restore = ["keys", "restore", "keys.age", "-i", "identity.txt", "--expect", "cert.pem"];
    ok(&sealant_in(work.path(), n, &restore), "keys restore");
    let controller = RunningController::start(n, &[], &["--key-renew-period=0"]);
    controller.ready().await;
    for name in ["x", "y"] {
        let back = eventually(Duration::from_secs(30), || async { secret(&client, n, name).await }).await;
        assert_eq!(back.unwrap().data.unwrap()["value"].0, format!("secret-of-{name}").into_bytes());
    }
    let keys_after = secrets
        .list(&kube::api::ListParams::default().labels("sealedsecrets.bitnami.com/sealed-secrets-key"))
        .await
        .unwrap()
        .items;
    assert_eq!(keys_after.len(), 1, "no new key was generated: the restored one is used");
}

/// A post-quantum backup: the controller, given an `age1pq1...` recipient that the real
/// `age-keygen -pq` (age 1.3) made, writes its backup Secret; the real `age -d` opens it, and
/// `sealant keys restore -i` with that identity puts the key back, which a new controller uses.
#[tokio::test]
async fn a_post_quantum_backup_is_restored_with_the_identity_age_keygen_pq_made() {
    let client = admin_client().await;
    install_crd(&client).await;
    let ns = TestNamespace::create(&client, "pq-backup").await;
    let n = ns.name.as_str();
    let work = tempfile::tempdir().unwrap();
    let identity = work.path().join("pq.txt");
    let keygen = Command::new(age_binary("age-keygen")).arg("-pq").arg("-o").arg(&identity).output().unwrap();
    assert!(keygen.status.success(), "{}", String::from_utf8_lossy(&keygen.stderr));
    let public = Command::new(age_binary("age-keygen")).arg("-y").arg(&identity).output().unwrap();
    let recipient = String::from_utf8(public.stdout).unwrap().trim().to_owned();
    assert!(recipient.starts_with("age1pq1"), "{recipient}");

    let controller = controller_with_backup(n, &recipient).await;
    let secrets = Api::<Secret>::namespaced(client.clone(), n);
    let key_selector = kube::api::ListParams::default().labels("sealedsecrets.bitnami.com/sealed-secrets-key");
    let keys = secrets.list(&key_selector).await.unwrap().items;
    assert_eq!(keys.len(), 1);
    let own = secrets.get("sealed-secrets-key-backup").await.unwrap().data.unwrap()["keys.age"].0.clone();
    assert!(own.windows(14).any(|w| w == b"mlkem768x25519"), "a post-quantum stanza");
    std::fs::write(work.path().join("own.age"), &own).unwrap();
    let opened = Command::new(age_binary("age"))
        .arg("-d")
        .arg("-i")
        .arg(&identity)
        .arg(work.path().join("own.age"))
        .output()
        .unwrap();
    assert!(opened.status.success(), "age 1.3 opens it: {}", String::from_utf8_lossy(&opened.stderr));
    assert!(String::from_utf8_lossy(&opened.stdout).contains(&keys[0].name_any()));

    // Lose the key and the controller; restore with the post-quantum identity.
    drop(controller);
    for key in &keys {
        secrets.delete(&key.name_any(), &DeleteParams::default()).await.unwrap();
    }
    std::fs::write(work.path().join("cert.pem"), &keys[0].data.as_ref().unwrap()["tls.crt"].0).unwrap();
    ok(
        &sealant_in(work.path(), n, &["keys", "restore", "own.age", "-i", "pq.txt", "--expect", "cert.pem"]),
        "keys restore",
    );
    let restored = secrets.list(&key_selector).await.unwrap().items;
    assert_eq!(restored.len(), 1);
    assert_eq!(restored[0].data.as_ref().unwrap()["tls.crt"], keys[0].data.as_ref().unwrap()["tls.crt"]);
    let controller = RunningController::start(n, &[], &["--key-renew-period=0"]);
    controller.ready().await;
    let served = http(&format!("{}/v1/cert.pem", controller.url), "GET", b"").unwrap().1;
    assert_eq!(served, keys[0].data.as_ref().unwrap()["tls.crt"].0, "the restored key seals again");
}

#[tokio::test]
async fn leaked_key_runbook() {
    let client = admin_client().await;
    install_crd(&client).await;
    let ns = TestNamespace::create(&client, "leak").await;
    let n = ns.name.as_str();
    let work = tempfile::tempdir().unwrap();
    let controller = RunningController::start(n, &[], &["--key-renew-period=0"]);
    controller.ready().await;
    let secret = write_secret(work.path(), n, "exposed");
    let sealed = ok(
        &run_sealant(
            &["seal", "--controller-url", &controller.url, "-o", "json", "-f", secret.to_str().unwrap()],
            work.path(),
        ),
        "seal",
    );
    let doc: Value = serde_json::from_str(&sealed).unwrap();
    let leaked = doc["metadata"]["annotations"]["sealant.dev/sealing-key"].as_str().unwrap().to_owned();
    let verify =
        |body: &Value| http(&format!("{}/v1/verify", controller.url), "POST", body.to_string().as_bytes()).unwrap().0;
    assert_eq!(verify(&doc), 200);

    let old_pem = served_cert(&controller).await;
    ok(&sealant_in(work.path(), n, &["keys", "rotate", "--bits", "2048"]), "keys rotate");
    cert_changes(&controller, &old_pem).await;
    // Retiring the sealing key is refused; the leaked one, with --force, is not.
    ok(
        &sealant_in(work.path(), n, &["keys", "retire", "--force", "--state", "compromised", &leaked]),
        "keys retire --force",
    );
    let stopped = eventually(Duration::from_secs(30), || async { (verify(&doc) == 409).then_some(()) }).await;
    assert!(stopped.is_some(), "the leaked key no longer opens anything");
    let listed = ok(&sealant_in(work.path(), n, &["keys", "list"]), "keys list");
    assert!(listed.lines().any(|l| l.starts_with(&leaked) && l.contains("compromised")), "{listed}");
}

/// The legacy key (named after --key-prefix, without the label), which the controller loads
/// and unseals with, is in its encrypted backup too.
#[tokio::test]
async fn the_backup_holds_the_legacy_key() {
    let client = admin_client().await;
    install_crd(&client).await;
    let ns = TestNamespace::create(&client, "legacy-backup").await;
    let n = ns.name.as_str();
    let work = tempfile::tempdir().unwrap();
    let recipient = age_identity(work.path());
    let demo = std::fs::read_to_string(repo().join("keys-example/demo.secret.yaml")).unwrap();
    let mut legacy = sealant_core::yaml::parse_documents(&demo).unwrap().remove(0);
    legacy["metadata"]["name"] = json!("sealed-secrets-key");
    legacy["metadata"].as_object_mut().unwrap().remove("labels");
    install_keys(&client, n, &legacy.to_string()).await;

    let _controller = controller_with_backup(n, &recipient).await;
    let own = Api::<Secret>::namespaced(client.clone(), n).get("sealed-secrets-key-backup").await.unwrap();
    std::fs::write(work.path().join("own.age"), &own.data.unwrap()["keys.age"].0).unwrap();
    let opened = Command::new("age")
        .args(["-d", "-i"])
        .arg(work.path().join("identity.txt"))
        .arg(work.path().join("own.age"))
        .output()
        .unwrap();
    assert!(opened.status.success());
    let list: Value = serde_json::from_slice(&opened.stdout).unwrap();
    let names: Vec<&str> =
        list["items"].as_array().unwrap().iter().filter_map(|i| i["metadata"]["name"].as_str()).collect();
    assert!(names.contains(&"sealed-secrets-key"), "the legacy key is in the backup: {names:?}");
}
