//! The real `kubeseal` of today (upstream's, at the version tests/peers pins) against our
//! controller through the API server's service proxy, as users run it: the certificate, sealing
//! in every scope and both formats, `--raw`, `--merge-into`, `--validate`, `--re-encrypt`, and
//! `--recovery-unseal` with our key Secret and with our key backup. What it seals, our controller
//! opens (issue 20).

use sealant_tests::cluster::upstream_binary;

use super::kubeseal_path::behind_the_proxy;
use super::*;

fn kubeseal(n: &str, args: &[&str], stdin: &str) -> std::process::Output {
    let mut command = Command::new(upstream_binary("kubeseal"));
    command.args(["--controller-namespace", n]).args(args).env("KUBECONFIG", &control_plane().kubeconfig);
    sealant_tests::cluster::output_with_stdin(command, stdin)
}

fn ok(what: &str, out: std::process::Output) -> String {
    assert!(out.status.success(), "kubeseal {what}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

async fn unsealed(client: &Client, n: &str, name: &str) -> Secret {
    eventually(Duration::from_secs(60), || async {
        Api::<Secret>::namespaced(client.clone(), n).get_opt(name).await.ok().flatten()
    })
    .await
    .unwrap_or_else(|| panic!("our controller did not unseal {n}/{name}"))
}

#[tokio::test]
async fn the_real_kubeseal_works_with_our_controller() {
    let client = admin_client().await;
    install_crd(&client).await;
    let ns = TestNamespace::create(&client, "real-kubeseal").await;
    let n = ns.name.clone();
    let proxied = behind_the_proxy(&client, &n).await;

    let version = ok("--version", kubeseal(&n, &["--version"], ""));
    assert!(version.starts_with("kubeseal version: v0."), "{version}");
    let cert = ok("--fetch-cert", kubeseal(&n, &["--fetch-cert"], ""));
    assert_eq!(cert.as_bytes(), proxied.served, "the certificate through the proxy");

    // Every scope, YAML and JSON: our controller opens what the real kubeseal seals.
    let sealed_secrets = Api::<SealedSecret>::namespaced(client.clone(), &n);
    for (scope, format) in [("strict", "yaml"), ("namespace-wide", "json"), ("cluster-wide", "yaml")] {
        let name = format!("real-{scope}");
        let secret = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": n},
            "stringData": {"password": format!("from-real-kubeseal-{scope}")}});
        let out = ok(scope, kubeseal(&n, &["--scope", scope, "-o", format], &secret.to_string()));
        let doc = sealant_core::yaml::parse_documents(&out).unwrap().remove(0);
        if format == "json" {
            serde_json::from_str::<Value>(&out).expect("-o json is JSON");
        }
        sealed_secrets.create(&PostParams::default(), &serde_json::from_value(doc).unwrap()).await.unwrap();
        let opened = unsealed(&client, &n, &name).await;
        assert_eq!(opened.data.unwrap()["password"].0, format!("from-real-kubeseal-{scope}").as_bytes());
    }

    // --merge-into adds a key to an existing file; --raw seals one value for a template.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("merged.json");
    let first = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "merged", "namespace": n},
        "stringData": {"user": "app"}});
    std::fs::write(&file, ok("first", kubeseal(&n, &["-o", "json"], &first.to_string()))).unwrap();
    let second = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "merged", "namespace": n},
        "stringData": {"password": "merged-in"}});
    ok("--merge-into", kubeseal(&n, &["--merge-into", file.to_str().unwrap()], &second.to_string()));
    let merged: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    let mut with_raw = merged.clone();
    let raw = ok(
        "--raw",
        kubeseal(&n, &["--raw", "--namespace", &n, "--name", "merged", "--from-file", "/dev/stdin"], "raw-value"),
    );
    with_raw["spec"]["encryptedData"]["raw"] = json!(raw.trim());
    sealed_secrets.create(&PostParams::default(), &serde_json::from_value(with_raw).unwrap()).await.unwrap();
    let opened = unsealed(&client, &n, "merged").await.data.unwrap();
    assert_eq!(opened["user"].0, b"app");
    assert_eq!(opened["password"].0, b"merged-in");
    assert_eq!(opened["raw"].0, b"raw-value");

    // --validate and --re-encrypt go to our /v1/verify and /v1/rotate.
    ok("--validate", kubeseal(&n, &["--validate", "-f", file.to_str().unwrap()], ""));
    let mut moved = merged.clone();
    moved["metadata"]["name"] = json!("renamed");
    let moved_file = dir.path().join("renamed.json");
    std::fs::write(&moved_file, moved.to_string()).unwrap();
    let refused = kubeseal(&n, &["--validate", "-f", moved_file.to_str().unwrap()], "");
    assert!(!refused.status.success(), "a strict SealedSecret under another name does not validate");
    // kubeseal rewrites the file in place (as ours does as `kubeseal`).
    ok("--re-encrypt", kubeseal(&n, &["--re-encrypt", "-f", file.to_str().unwrap()], ""));
    let rotated: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    assert_ne!(rotated["spec"]["encryptedData"], merged["spec"]["encryptedData"], "re-encrypted");
    ok("--validate after --re-encrypt", kubeseal(&n, &["--validate", "-f", file.to_str().unwrap()], ""));

    // --recovery-unseal with our key, as a PEM file and as the key Secret that holds it.
    for key in ["keys-example/demo.tls.key", "keys-example/demo.secret.yaml"] {
        let key = repo().join(key);
        let out = ok(
            "--recovery-unseal",
            kubeseal(
                &n,
                &["--recovery-unseal", "--recovery-private-key", key.to_str().unwrap(), "-f", file.to_str().unwrap()],
                "",
            ),
        );
        assert!(out.contains("bWVyZ2VkLWlu"), "{}: the Secret with password merged-in: {out}", key.display());
    }

    // --recovery-unseal with what `sealant keys backup` wrote, once opened with `age -d`.
    let work = tempfile::tempdir().unwrap();
    let keygen = Command::new("age-keygen").arg("-o").arg(work.path().join("id.txt")).output().unwrap();
    assert!(keygen.status.success());
    let recipient = String::from_utf8_lossy(&keygen.stderr).trim().trim_start_matches("Public key: ").to_owned();
    let backup = Command::new(sealant_tests::cluster::built_binary("sealant"))
        .args(["keys", "backup", "--controller-namespace", &n, "--age-recipient", &recipient, "-o"])
        .arg(work.path().join("keys.age"))
        .env("KUBECONFIG", &control_plane().kubeconfig)
        .output()
        .unwrap();
    assert!(backup.status.success(), "{}", String::from_utf8_lossy(&backup.stderr));
    let opened = Command::new("age")
        .arg("-d")
        .arg("-i")
        .arg(work.path().join("id.txt"))
        .arg("-o")
        .arg(work.path().join("keys.yaml"))
        .arg(work.path().join("keys.age"))
        .output()
        .unwrap();
    assert!(opened.status.success(), "{}", String::from_utf8_lossy(&opened.stderr));
    let keys = work.path().join("keys.yaml");
    let out = ok(
        "--recovery-unseal with a key backup",
        kubeseal(
            &n,
            &["--recovery-unseal", "--recovery-private-key", keys.to_str().unwrap(), "-f", file.to_str().unwrap()],
            "",
        ),
    );
    assert!(out.contains("bWVyZ2VkLWlu"), "the backup's keys open it: {out}");
}
